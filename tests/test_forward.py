"""Forwards and discount factors per expiry: synthetic ground truth, reference, properties, bad input, QQQ."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import volfast
from volfast.forward import ForwardStatus, implied_forward, option_chains
from volfast.forward._reference import reference_fit

QQQ = "derived_from_bentoclient/opra-pillar.QQQ.OPT.20250428T142952-143002Z.cbbo-1s.v3.dbn.zst"


def _truth_days(root: Path) -> list[tuple]:
    """(chains, true forward, true D) per generated day, matched on expiration."""
    import warnings

    import pyarrow.parquet as pq

    from volfast.io.dbn import IngestWarning, list_dates

    days = []
    for d in list_dates(root):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IngestWarning)
            snap = volfast.take_snapshot(data=root, date=d)
        ch = option_chains(snap.table, cut_ns=snap.cut_ns)
        tr = pq.read_table(root / "truth" / f"date={d}" / "part-0.parquet").to_pandas()
        ex = tr[tr.kind == "expiry"]
        exp = ex.expiration.dt.tz_convert(None).to_numpy().astype("datetime64[ns]")
        idx = [int(np.flatnonzero(exp == e)[0]) for e in ch.expiration]
        days.append((ch, ex.forward.to_numpy()[idx], ex.discount_factor.to_numpy()[idx]))
    return days


def _make_days(tmp_path_factory: pytest.TempPathFactory, name: str, **overrides: float) -> list[tuple]:
    from volfast.synth import generate_days
    from volfast.synth.config import SynthConfig

    cfg = SynthConfig.for_scale("small", **overrides)
    out = []
    for seed, start in ((5, dt.date(2024, 2, 5)), (9, dt.date(2024, 8, 5))):
        root = tmp_path_factory.mktemp(f"{name}{seed}")
        generate_days(start, 5, root, seed=seed, config=cfg)
        out += _truth_days(root)
    return out


@pytest.fixture(scope="module")
def synth_days(tmp_path_factory: pytest.TempPathFactory) -> list[tuple]:
    return _make_days(tmp_path_factory, "fwd")


def _errors(days: list[tuple], method: str, **kw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fe, re, tt = [], [], []
    for ch, f_true, d_true in days:
        fit = ch.implied_forward(method=method, **kw)
        fe.append(np.abs(fit.forward / f_true - 1) * 1e4)
        re.append(np.abs(fit.rate + np.log(d_true) / ch.expiry_years) * 1e4)
        tt.append(ch.expiry_years)
    return np.concatenate(fe), np.concatenate(re), np.concatenate(tt)


# -- ground truth --------------------------------------------------------------------------------------------
def test_synth_forward_and_rate_errors(synth_days: list[tuple]) -> None:
    fe, re, t = _errors(synth_days, "huber")
    ok = np.isfinite(fe)
    assert ok.mean() > 0.85  # failures are thin days / tiny chains, each with a status
    # the bars: 0.2 / 1 bp (median / 95th); benchmarks/bench_forward.py checks them over 50 days
    assert np.median(fe[ok]) <= 0.2 and np.quantile(fe[ok], 0.95) <= 1.0
    long = ok & (t >= 0.1)
    assert long.sum() >= 10 and np.median(re[long]) <= 6.0
    fe_naive, _, _ = _errors(synth_days, "naive")
    assert np.median(fe_naive[ok]) > 2 * np.median(fe[ok])  # the CBOE rule is noisier


def test_synth_bounds_contain_truth(synth_days: list[tuple]) -> None:
    inside_f, inside_d, n = 0, 0, 0
    for ch, f_true, d_true in synth_days:
        fit = ch.implied_forward()
        ok = fit.ok
        n += ok.sum()
        inside_f += ((fit.forward_lo <= f_true) & (f_true <= fit.forward_hi))[ok].sum()
        inside_d += ((fit.discount_lo <= d_true) & (d_true <= fit.discount_hi))[ok].sum()
        assert np.all((fit.forward_lo <= fit.forward) & (fit.forward <= fit.forward_hi) | ~ok)
        # short expiries take D from the pooled curve
        assert np.all(fit.status[ok & (ch.expiry_years < 0.02)] == ForwardStatus.POOLED_DISCOUNT)
    assert inside_f / n > 0.95 and inside_d / n > 0.9


def test_bayes_on_synth_and_determinism(synth_days: list[tuple]) -> None:
    fe, re, t = _errors(synth_days[:4], "bayes", n_iter=1500, burn=500)
    fh, rh, _ = _errors(synth_days[:4], "huber")
    ok = np.isfinite(fe)
    assert np.array_equal(ok, np.isfinite(fh))
    assert np.median(fe[ok]) <= 1.3 * np.median(fh[ok]) + 0.05
    ch = synth_days[0][0]
    a = ch.implied_forward(method="bayes", seed=3, n_iter=800, burn=200)
    b = ch.implied_forward(method="bayes", seed=3, n_iter=800, burn=200)
    c = ch.implied_forward(method="bayes", seed=4, n_iter=800, burn=200)
    np.testing.assert_array_equal(a.forward, b.forward)
    np.testing.assert_array_equal(a.forward_lo, b.forward_lo)
    assert not np.array_equal(a.forward_lo[a.ok], c.forward_lo[c.ok])
    ok = a.ok
    assert np.all((a.forward_lo < a.forward) & (a.forward < a.forward_hi) | ~ok)
    assert np.all((a.discount_lo <= a.discount_factor) & (a.discount_factor <= a.discount_hi) | ~ok)


def test_kernel_matches_reference(synth_days: list[tuple]) -> None:
    checked = 0
    for ch, _, d_true in synth_days[:4]:
        free = ch.implied_forward(pool_discount=False, rate_band=None)  # the regression, not the policy
        fixed = ch.implied_forward(discount_factor=d_true)
        for i in range(len(ch)):
            s = ch.slice(i)
            for fit, d in ((free, None), (fixed, float(d_true[i]))):
                ref = reference_fit(s["strike"], s["is_call"], s["bid"], s["ask"], discount_factor=d)
                if ref is None:
                    assert not fit.ok[i]
                    continue
                assert fit.ok[i] and fit.n_pairs[i] == ref["n_pairs"]
                for key in ("forward", "discount_factor", "forward_lo", "forward_hi"):
                    assert getattr(fit, key)[i] == pytest.approx(ref[key], rel=1e-9), key
                assert fit.rmse[i] == pytest.approx(ref["rmse"], rel=1e-6)
                if d is None:
                    assert fit.discount_lo[i] == pytest.approx(ref["discount_lo"], rel=1e-12)
                    assert fit.discount_hi[i] == pytest.approx(ref["discount_hi"], rel=1e-12)
                checked += 1
    assert checked > 40


# -- exact parity quotes -------------------------------------------------------------------------------------
def _q(strike, is_call, bid, ask) -> dict:
    """The quote arrays as implied_forward's keyword arguments."""
    return {"strike": strike, "is_call": is_call, "bid": bid, "ask": ask}


def _parity_chain(f, d, strikes, tv, half, rng):
    """Calls and puts priced exactly on C - P = D (F - K), with symmetric spreads around the true price."""
    k = np.asarray(strikes, float)
    put = np.maximum(d * (k - f), 0.0) + tv
    call = put + d * (f - k)
    h_c = half * rng.uniform(0.5, 2.0, k.size)
    h_p = half * rng.uniform(0.5, 2.0, k.size)
    strike = np.concatenate([k, k])
    is_call = np.concatenate([np.ones(k.size, bool), np.zeros(k.size, bool)])
    bid = np.concatenate([call - h_c, put - h_p])
    ask = np.concatenate([call + h_c, put + h_p])
    return strike, is_call, bid, ask


@settings(max_examples=40, deadline=None)
@given(
    f=st.floats(50.0, 5000.0),
    rate=st.floats(-0.02, 0.08),
    t=st.floats(0.02, 3.0),
    n=st.integers(3, 40),
    seed=st.integers(0, 2**31),
)
def test_exact_parity_quotes_recover_forward_and_discount(f, rate, t, n, seed) -> None:
    rng = np.random.default_rng(seed)
    d = float(np.exp(-rate * t))
    strikes = f * np.exp(np.linspace(-0.2, 0.2, n) * np.sqrt(t)) + rng.uniform(-1e-3, 1e-3, n) * f
    tv = f * 0.2 * np.sqrt(t) * 0.4 * np.exp(-0.5 * (np.log(strikes / f) / (0.2 * np.sqrt(t))) ** 2)
    s, c, b, a = _parity_chain(f, d, strikes, tv + 0.01, 0.002 * f, rng)
    perm = rng.permutation(s.size)  # any row order
    fit = implied_forward(
        strike=s[perm],
        is_call=c[perm],
        bid=b[perm],
        ask=a[perm],
        expiry_years=t,
        offsets=[0, s.size],
        window=100.0,
        pool_discount=False,
    )
    assert fit.status[0] == ForwardStatus.OK, fit.reason[0]
    assert fit.forward[0] == pytest.approx(f, rel=1e-9)
    assert fit.discount_factor[0] == pytest.approx(d, rel=1e-9, abs=1e-12)
    assert fit.forward_lo[0] <= f <= fit.forward_hi[0]
    assert fit.discount_lo[0] <= d * (1 + 1e-12) and d <= fit.discount_hi[0] * (1 + 1e-12)
    assert fit.rmse[0] < 1e-9 * f and fit.n_outside[0] == 0
    fixed = implied_forward(
        **_q(s, c, b, a), expiry_years=t, offsets=[0, s.size], discount_factor=d, window=100.0
    )
    assert fixed.forward[0] == pytest.approx(f, rel=1e-10) and fixed.discount_factor[0] == d
    # pool_discount=False: one expiry of 3 strikes may not pin D alone; this checks the sampler's interval
    bay = implied_forward(
        **_q(s, c, b, a), expiry_years=t, offsets=[0, s.size], method="bayes", n_iter=600, burn=200,
        pool_discount=False,
    )
    assert bay.forward_lo[0] - 1e-9 * f <= f <= bay.forward_hi[0] + 1e-9 * f


def test_outlier_quote_is_downweighted() -> None:
    rng = np.random.default_rng(0)
    f, d = 100.0, 0.99
    k = np.arange(90.0, 111.0)
    s, c, b, a = _parity_chain(f, d, k, 1.0, 0.05, rng)
    b[3] += 3.0
    a[3] += 3.0  # one call 3 points rich: far outside its spread
    fit = implied_forward(**_q(s, c, b, a), expiry_years=0.5, offsets=[0, s.size], pool_discount=False)
    # the stray quote empties the box-spread bounds: the robust fit is kept, and flagged
    assert fit.status[0] == ForwardStatus.FLAGGED_BOX_BOUNDS and fit.n_outside[0] == 1
    assert fit.discount_lo[0] > fit.discount_hi[0] and "empty box-spread bounds" in fit.reason[0]
    assert fit.ok[0]
    assert fit.forward[0] == pytest.approx(f, abs=0.01) and fit.discount_factor[0] == pytest.approx(
        d, abs=1e-3
    )


# -- bad input: a status with a reason, the rest goes on -----------------------------------------------------
def _good(f=100.0, d=0.99, seed=0):
    return _parity_chain(f, d, np.arange(90.0, 111.0, 2.0), 1.0, 0.05, np.random.default_rng(seed))


def _stack(*slices):
    cols = [np.concatenate([s[i] for s in slices]) for i in range(4)]
    off = np.concatenate([[0], np.cumsum([len(s[0]) for s in slices])])
    return cols, off


def test_bad_slices_get_status_and_reason() -> None:
    good = _good()
    few = tuple(x[[0, 11]] for x in _good())  # one strike: a call and a put
    calls_only = tuple(x[:11] for x in _good())
    crossed = list(_good())
    crossed[1] = crossed[1].copy()
    crossed[2], crossed[3] = crossed[3].copy() + 0.5, crossed[2].copy()  # every quote bid > ask
    crossed[2][:2] = _good()[2][:2]
    crossed[3][:2] = _good()[3][:2]
    nonpos = list(_good())
    nonpos[2] = nonpos[2] - 50.0
    nonpos[3] = np.where(np.arange(nonpos[3].size) % 2 == 0, -1.0, 0.0)  # ask <= 0: zero or negative mids
    one_sided = list(_good())
    one_sided[2] = np.full(one_sided[2].size, np.nan)  # no bids at all
    (s, c, b, a), off = _stack(good, few, calls_only, tuple(crossed), tuple(nonpos), tuple(one_sided), good)
    t = np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    fit = implied_forward(**_q(s, c, b, a), expiry_years=t, offsets=off, pool_discount=False)
    want = [
        ForwardStatus.OK,
        ForwardStatus.TOO_FEW_PAIRS,
        ForwardStatus.ONE_SIDED,
        ForwardStatus.CROSSED,
        ForwardStatus.INVALID_INPUT,
        ForwardStatus.ONE_SIDED,
        ForwardStatus.OK,
    ]
    assert [ForwardStatus(x) for x in fit.status] == want, list(fit.reason)
    assert np.isfinite(fit.forward[[0, 6]]).all() and np.isnan(fit.forward[1:6]).all()
    assert "1 call/put pairs" in fit.reason[1] and "only calls" in fit.reason[2]
    assert "crossed" in fit.reason[3] and "non-positive" in fit.reason[4] and "one-sided" in fit.reason[5]
    assert fit.forward[0] == pytest.approx(100.0, rel=1e-9)


def test_no_convergence_infeasible_and_invalid_parameters() -> None:
    good = _good()
    rng = np.random.default_rng(1)
    k = np.arange(90.0, 111.0, 2.0)
    s, c, b, a = _parity_chain(100.0, 0.99, k, 3.0, 0.01, rng)
    # calls scattered 1-2 points rich or cheap, spreads about 0.02: no line through most synthetics
    zig = rng.uniform(1.0, 2.0, k.size) * np.where(np.arange(k.size) % 2 == 0, 1.0, -1.0)
    b = b + np.concatenate([zig, np.zeros(k.size)])
    a = a + np.concatenate([zig, np.zeros(k.size)])
    (s2, c2, b2, a2), off = _stack(good, (s, c, b, a), good, good)
    fit = implied_forward(
        strike=s2,
        is_call=c2,
        bid=b2,
        ask=a2,
        expiry_years=[0.5, 0.5, -1.0, 0.5],
        offsets=off,
        discount_factor=[np.nan, np.nan, np.nan, 0.0],
        pool_discount=False,
    )
    assert fit.status[0] == ForwardStatus.OK
    assert fit.status[1] == ForwardStatus.INFEASIBLE and "outside the bid/ask" in fit.reason[1]
    assert fit.status[2] == ForwardStatus.INVALID_INPUT and "expiry_years" in fit.reason[2]
    assert fit.status[3] == ForwardStatus.INVALID_INPUT and "discount_factor" in fit.reason[3]
    slow = implied_forward(
        **_q(*good), expiry_years=0.5, offsets=[0, good[0].size], max_iter=1, pool_discount=False
    )
    assert slow.status[0] == ForwardStatus.NO_CONVERGENCE and "did not converge" in slow.reason[0]
    assert np.isnan(slow.forward[0])


def test_pooled_discount_rescues_a_failed_short_expiry() -> None:
    long = _good(d=float(np.exp(-0.04 * 1.0)), seed=2)
    short = _good(d=float(np.exp(-0.04 * 0.01)), seed=3)
    (s, c, b, a), off = _stack(long, short)
    fit = implied_forward(**_q(s, c, b, a), expiry_years=[1.0, 0.01], offsets=off)
    assert fit.status[0] == ForwardStatus.OK and fit.status[1] == ForwardStatus.POOLED_DISCOUNT
    assert fit.rate[1] == pytest.approx(0.04, abs=1e-6) and "pooled" in fit.reason[1]
    assert fit.forward[1] == pytest.approx(100.0, rel=1e-9) and fit.pooled_rate["kind"] == "flat"
    off_pool = implied_forward(**_q(s, c, b, a), expiry_years=[1.0, 0.01], offsets=off, pool_discount=False)
    assert off_pool.status[1] == ForwardStatus.OK


def test_structural_errors_raise() -> None:
    s, c, b, a = _good()
    with pytest.raises(ValueError, match="method"):
        implied_forward(
            strike=s, is_call=c, bid=b, ask=a, expiry_years=0.5, offsets=[0, s.size], method="magic"
        )
    with pytest.raises(ValueError, match="offsets"):
        implied_forward(**_q(s, c, b, a), expiry_years=0.5, offsets=[0, 3])
    with pytest.raises(ValueError, match="rows"):
        implied_forward(
            strike=s, is_call=c[:-1], bid=b, ask=a, expiry_years=0.5, offsets=[0, s.size]
        )
    with pytest.raises(ValueError, match="per slice"):
        implied_forward(
            strike=s, is_call=c, bid=b, ask=a, expiry_years=[0.5, 0.5], offsets=[0, s.size]
        )
    empty = implied_forward(strike=[], is_call=[], bid=[], ask=[], expiry_years=[], offsets=[0])
    assert len(empty) == 0


# -- chains from a snapshot ----------------------------------------------------------------------------------
def test_option_chains_from_table() -> None:
    import pyarrow as pa

    from volfast.snapshot import SNAPSHOT_SCHEMA

    cut = 1_700_000_000 * 10**9
    e1, e2 = cut + 86400 * 10**9, cut + 10 * 86400 * 10**9
    rows = [
        # instrument_id, underlying, is_call, strike, expiration, bid, ask
        (1, "B", True, 100.0, e2, 1.0, 1.1),
        (2, "A", False, 100.0, e1, 2.0, 2.1),
        (3, "A", True, 100.0, e1, 2.5, 2.6),
        (4, "A", True, 90.0, e1, 10.0, 10.2),
        (5, "A", None, float("nan"), e1, 99.0, 99.5),  # a future: dropped
        (6, "A", True, -5.0, e1, 1.0, 2.0),  # bad strike: dropped
        (7, "A", True, 100.0, cut - 1, 1.0, 2.0),  # expired: dropped
        (8, "B", False, 95.0, e2, None, 0.5),
    ]
    cols = {
        name: [r[i] for r in rows]
        for i, name in enumerate(
            ["instrument_id", "underlying", "is_call", "strike", "expiration", "bid", "ask"]
        )
    }
    n = len(rows)
    data = {f.name: pa.nulls(n, f.type) for f in SNAPSHOT_SCHEMA}
    data.update({k: pa.array(v, SNAPSHOT_SCHEMA.field(k).type) for k, v in cols.items()})
    data["multiplier"] = pa.array([100.0] * n)
    for k in ("has_quote", "crossed", "locked", "one_sided", "stale"):
        data[k] = pa.array([False] * n)
    data["definition_source"] = pa.array(["occ_symbol"] * n)
    table = pa.table([data[f.name] for f in SNAPSHOT_SCHEMA], schema=SNAPSHOT_SCHEMA)
    ch = option_chains(table, cut_ns=cut)
    assert len(ch) == 2 and list(ch.offsets) == [0, 3, 5]
    assert list(ch.underlying) == ["A", "B"]
    assert list(ch.instrument_id) == [4, 2, 3, 8, 1]  # by (strike, is_call) within a slice
    assert list(ch.row) == [3, 1, 2, 7, 0]
    np.testing.assert_allclose(ch.expiry_years, [1 / 365, 10 / 365])
    assert ch.expiration[0] == np.datetime64(e1, "ns") and np.isnan(ch.bid[3])
    assert ch.slice(1)["strike"].tolist() == [95.0, 100.0]


# -- real quotes ------------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_qqq_real_chain_forwards(shared_dbn: Path) -> None:
    snap = volfast.take_snapshot(shared_dbn / QQQ, cut="10:30", date="2025-04-28", lookback="10m")
    ch = option_chains(snap.table, cut_ns=snap.cut_ns)
    assert len(ch) == 4 and set(ch.underlying) == {"QQQ"}
    # OCC symbols carry dates only: the same-day (0DTE) expiry counts to 16:00 New York (20:00 UTC in April)
    assert ch.expiration[0] == np.datetime64("2025-04-28T20:00", "ns")
    assert ch.expiry_years[0] == pytest.approx(5.5 / 24 / 365)  # cut 10:30 New York
    for method in ("huber", "bayes"):
        fit = ch.implied_forward(method=method)
        assert fit.ok.all(), list(fit.reason)
        # one underlying a few days out: forwards agree across expiries to a few cents, near 471.6-472.0
        assert np.all((fit.forward > 471.4) & (fit.forward < 472.2)) and np.ptp(fit.forward) < 0.3
        assert np.all((fit.forward_lo <= fit.forward) & (fit.forward <= fit.forward_hi))
        assert np.all(fit.n_pairs >= 20) and np.all(fit.rmse < 0.5)
    fit = ch.implied_forward()
    # parity residuals inside the quoted synthetic bid/ask for most strikes (American options, real quotes)
    assert np.all(fit.n_outside <= 0.1 * fit.n_pairs)
    assert np.all(fit.forward_hi - fit.forward_lo < 0.3)
    for i in range(len(ch)):
        s = ch.slice(i)
        ref = reference_fit(
            s["strike"], s["is_call"], s["bid"], s["ask"], discount_factor=fit.discount_factor[i]
        )
        assert ref is not None and fit.forward[i] == pytest.approx(ref["forward"], rel=1e-9)


def test_is_call_as_c_p_strings_is_read_correctly_or_refused() -> None:
    """Issue 14: 'C'/'P' strings were all read as calls (NaN forwards, no error). Now strings, booleans and
    object arrays give the same fit; anything else raises naming the value."""
    from volfast.errors import UsageError

    rng = np.random.default_rng(0)
    f, d, t = 100.0, float(np.exp(-0.03 * 0.5)), 0.5
    strikes = np.linspace(80.0, 120.0, 9)
    s, c, b, a = _parity_chain(f, d, strikes, np.full(9, 2.0), 0.05, rng)
    want = implied_forward(**_q(s, c, b, a), expiry_years=t, offsets=[0, s.size])
    assert want.status[0] == ForwardStatus.OK
    letters = np.where(c, "C", "P")
    for form in (letters, letters.tolist(), np.where(c, "call", "PUT"), np.asarray(letters, dtype=object)):
        got = implied_forward(strike=s, is_call=form, bid=b, ask=a, expiry_years=t, offsets=[0, s.size])
        np.testing.assert_array_equal(got.forward, want.forward)
    for bad in (np.where(c, "C", "X"), np.where(c, "yes", "no"), np.where(c, 2, 0)):
        with pytest.raises(UsageError, match="is_call: expected booleans"):
            implied_forward(strike=s, is_call=bad, bid=b, ask=a, expiry_years=t, offsets=[0, s.size])
    with pytest.raises(TypeError):  # financial arguments are keyword-only
        implied_forward(s, c, b, a, expiry_years=t, offsets=[0, s.size])  # type: ignore[misc]
    import volfast

    iv_s = volfast.implied_vol(
        np.full(2, 5.0), forward=100.0, strike=100.0, expiry_years=0.5, is_call=np.array(["C", "P"])
    )
    iv_b = volfast.implied_vol(
        np.full(2, 5.0), forward=100.0, strike=100.0, expiry_years=0.5, is_call=np.array([True, False])
    )
    np.testing.assert_array_equal(iv_s.iv, iv_b.iv)
