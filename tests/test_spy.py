"""The synthetic SPY market on OPRA: American prices against slow references written here, real DBN that the
databento client reads, a consolidated view consistent with its event stream, truth consistent with its own
dividends and curve, a full day's layout, and the pipeline on it (presets, accuracy, executors)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import volfast
from volfast.cli import main as cli
from volfast.io.definitions import parse_occ_symbol
from volfast.synth import calendar as cal
from volfast.synth.american import american_prices
from volfast.synth.spy import (
    VENUES,
    SpyConfig,
    build_spy_chain,
    expiration_ns,
    expiry_dates,
    generate_spy_day,
    occ_symbol,
    zero_rate,
)

DAY = dt.date(2024, 3, 4)
UNDEF = 2**63 - 1


# -- slow references -----------------------------------------------------------------------------------------
def slow_tree(S, K, T, vol, r, is_call, divs=(), steps=2000, escrowed=True):
    """A plain CRR tree, one numpy step at a time. ``divs``: (time, amount) pairs. Escrowed model: the lattice
    is on S - PV(dividends), the exercise value adds back the PV of those not yet paid (a textbook layout,
    independent of the Numba kernel's loops)."""
    dt_ = T / steps
    u = math.exp(vol * math.sqrt(dt_))
    d = 1 / u
    p = (math.exp(r * dt_) - d) / (u - d)
    disc = math.exp(-r * dt_)
    divs = [(t, a) for t, a in divs if 0 < t <= T]

    def pv(t):
        return sum(a * math.exp(-r * (ti - t)) for ti, a in divs if ti > t)

    s0 = S - pv(0.0)
    j = np.arange(steps + 1)
    st = s0 * u**j * d ** (steps - j)
    am = np.maximum(st - K if is_call else K - st, 0.0)
    eu = am.copy()
    for n in range(steps - 1, -1, -1):
        j = np.arange(n + 1)
        st = s0 * u**j * d ** (n - j) + pv(n * dt_)
        am = np.maximum(disc * (p * am[1:] + (1 - p) * am[:-1]), st - K if is_call else K - st)
        eu = disc * (p * eu[1:] + (1 - p) * eu[:-1])
    return am[0], eu[0]


def test_american_put_matches_the_published_value_and_a_slow_tree() -> None:
    # S = K = 100, T = 1, r = 5%, vol 20%: the American put is 6.0904 (binomial limit; e.g. Hull's examples)
    a = american_prices(
        spot=100.0,
        strike=np.array([100.0]),
        expiry_years=np.array([1.0]),
        vol=np.array([0.2]),
        is_call=np.array([False]),
        discount_factor=np.array([math.exp(-0.05)]),
    )
    assert a.american[0] == pytest.approx(6.0904, abs=3e-4)
    am, _ = slow_tree(100.0, 100.0, 1.0, 0.2, 0.05, False, steps=4000)
    assert a.american[0] == pytest.approx(am, abs=5e-4)


@pytest.mark.parametrize("is_call", [True, False])
def test_premiums_with_dividends_match_a_slow_tree(is_call: bool) -> None:
    # a call is worth exercising before an ex-date only when the dividend beats the interest on the strike
    # until expiry (500 x 4.5% / 4 ~ 5.6 a quarter): large dividends for the calls
    amount = 8.0 if is_call else 1.5
    divs = [(0.12, amount), (0.37, amount), (0.62, amount), (0.87, amount)]
    K = np.array([420.0, 480.0, 500.0, 520.0, 580.0])
    T, vol, r, S = 1.0, 0.22, 0.045, 500.0
    a = american_prices(
        spot=S,
        strike=K,
        expiry_years=np.full(K.size, T),
        vol=np.full(K.size, vol),
        is_call=np.full(K.size, is_call),
        discount_factor=np.full(K.size, math.exp(-r * T)),
        dividend_times=[t for t, _ in divs],
        dividend_amounts=[x for _, x in divs],
    )
    for i, k in enumerate(K):
        am, eu = slow_tree(S, k, T, vol, r, is_call, divs, steps=4000)
        assert a.premium[i] == pytest.approx(am - eu, abs=0.02, rel=3e-3), (k, a.premium[i], am - eu)
    assert (a.premium[:3] > 0.05).all() if is_call else (a.premium > 0).all()


def test_european_limit_is_black76_and_calls_without_dividends_have_no_premium() -> None:
    rng = np.random.default_rng(3)
    n = 200
    K = rng.uniform(300, 700, n)
    T = rng.uniform(0.002, 2.5, n)
    vol = rng.uniform(0.08, 0.6, n)
    D = np.exp(-0.04 * T)
    call = rng.random(n) < 0.5
    a = american_prices(
        spot=500.0, strike=K, expiry_years=T, vol=vol, is_call=call, discount_factor=D, n_steps=120
    )
    bl = volfast.black76_price(
        forward=500.0 / D, strike=K, expiry_years=T, vol=vol, is_call=call, discount_factor=D
    )
    np.testing.assert_allclose(a.european, bl, rtol=0, atol=1e-12)
    assert (a.premium[call] == 0).all()  # no dividend, r >= 0: never exercise a call early
    assert (a.premium[~call] >= 0).all() and a.premium[~call].max() > 1.0
    assert (a.american >= np.where(call, 500.0 - K, K - 500.0) - 1e-12).all()


def test_bad_lattice_input_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        american_prices(
            spot=1.0,
            strike=np.ones(1),
            expiry_years=np.zeros(1),
            vol=np.ones(1),
            is_call=np.ones(1, bool),
            discount_factor=np.ones(1),
        )
    with pytest.raises(ValueError, match="n_steps"):
        american_prices(
            spot=1.0,
            strike=np.ones(1),
            expiry_years=np.ones(1),
            vol=np.ones(1),
            is_call=np.ones(1, bool),
            discount_factor=np.ones(1),
            n_steps=5,
        )


# -- the full-scale layout (no files) ------------------------------------------------------------------------
def test_full_scale_chain_layout() -> None:
    cfg = SpyConfig.for_scale("full")
    for day in (DAY, dt.date(2024, 3, 15), dt.date(2025, 12, 24)):
        exps = expiry_dates(day, cfg)
        kinds = {k for _, k in exps}
        assert len(exps) >= 30 and kinds == {"daily", "weekly", "monthly", "quarterly", "leap"}
        assert exps[0][0] == day  # 0DTE
        assert (exps[-1][0] - day).days > 730  # LEAPS beyond two years
        T = np.array([(expiration_ns(d) - cal.cut_time_ns(day)) / cal.NS_PER_YEAR for d, _ in exps])
        for spot in (250.0, 500.0, 650.0):
            ch = build_spy_chain(day, cfg, np.full(len(exps), spot), T)
            assert 6000 <= ch.n_options <= 10_000, (day, spot, ch.n_options)
            steps = np.diff(np.unique(ch.opt_strike[ch.opt_expiry == len(exps) - 1]))
            assert set(np.round(steps, 6)) <= {1.0, 5.0} and 1.0 in steps and 5.0 in steps
    assert occ_symbol("SPY", dt.date(2024, 3, 15), True, 500.0) == "SPY   240315C00500000"
    assert occ_symbol("SPY", dt.date(2024, 3, 15), False, 512.5) == "SPY   240315P00512500"


# -- one small day on disk ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spy_day(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("spy")
    res = generate_spy_day(DAY, out, seed=11, schemas=("definition", "cbbo-1m", "cmbp-1"))
    return out, res


def _truth(res):
    """The truth table; on option rows the flag columns as plain bools (nulls elsewhere make them objects)."""
    import pyarrow.parquet as pq

    t = pq.read_table(res.paths["truth"]).to_pandas()
    opt = t.kind == "option"
    for c in ("is_call", "missing", "stale", "crossed", "one_sided"):
        t[c] = t[c].where(opt, False).astype(bool)
    return t


def test_files_are_real_opra_dbn(spy_day) -> None:
    import databento as db

    _, res = spy_day
    defs = db.DBNStore.from_bytes(res.paths["definition"].read_bytes())
    assert defs.metadata.dataset == "OPRA.PILLAR" and defs.metadata.symbols == ["SPY.OPT"]
    d = defs.to_ndarray()
    assert d.size == res.counts["options"]
    truth = _truth(res)
    opt = truth[truth.kind == "option"].set_index("instrument_id")
    for rec in d[:: max(1, d.size // 50)]:
        sym = rec["raw_symbol"].decode() if isinstance(rec["raw_symbol"], bytes) else str(rec["raw_symbol"])
        occ = parse_occ_symbol(sym)
        row = opt.loc[int(rec["instrument_id"])]
        assert occ is not None and occ.root == "SPY" and len(sym) == 21
        assert occ.strike == row.strike == rec["strike_price"] / 1e9
        assert occ.is_call == row.is_call == (rec["instrument_class"] in (b"C", "C"))
        assert occ.expiry == row.expiration.tz_convert("America/New_York").date()
    for schema in ("cbbo-1m", "cmbp-1"):
        store = db.DBNStore.from_bytes(res.paths[schema].read_bytes())
        assert store.metadata.dataset == "OPRA.PILLAR" and store.schema == schema
        assert len(store.to_ndarray()) == res.counts[schema] > 0


def test_consolidated_view_is_consistent(spy_day) -> None:
    import databento as db

    _, res = spy_day
    cb = db.DBNStore.from_bytes(res.paths["cbbo-1m"].read_bytes()).to_ndarray()
    mp = db.DBNStore.from_bytes(res.paths["cmbp-1"].read_bytes()).to_ndarray()
    for a in (cb, mp):
        assert (np.diff(a["ts_recv"].astype(np.int64)) >= 0).all()
        pubs = np.concatenate(
            [a["bid_pb_00"][a["bid_px_00"] != UNDEF], a["ask_pb_00"][a["ask_px_00"] != UNDEF]]
        )
        assert set(np.unique(pubs)) <= set(VENUES) and np.unique(pubs).size >= 2
    # most options are quoted best by more than one venue over the day
    per = {}
    for iid, pb in zip(cb["instrument_id"], cb["bid_pb_00"], strict=True):
        per.setdefault(int(iid), set()).add(int(pb))
    assert np.mean([len(v - {0}) >= 2 for v in per.values()]) > 0.5
    # cbbo-1m = the last cmbp-1 state of each (instrument, minute), stamped at the minute's end
    minute = 60 * 10**9
    start = int(cb["ts_recv"].min()) - minute
    key_m = mp["instrument_id"].astype(np.int64) * 10**6 + (mp["ts_recv"].astype(np.int64) - start) // minute
    order = np.lexsort((np.arange(mp.size), key_m))
    last = order[np.r_[key_m[order][1:] != key_m[order][:-1], True]]
    key_c = (
        cb["instrument_id"].astype(np.int64) * 10**6 + (cb["ts_recv"].astype(np.int64) - start) // minute - 1
    )
    m = dict(zip(key_m[last].tolist(), last.tolist(), strict=True))
    assert len(m) == cb.size
    idx = np.array([m[k] for k in key_c.tolist()])
    for f in ("bid_px_00", "ask_px_00", "bid_sz_00", "ask_sz_00", "bid_pb_00", "ask_pb_00", "ts_event"):
        np.testing.assert_array_equal(cb[f], mp[f][idx], err_msg=f)


def test_cbbo_does_not_depend_on_writing_cmbp(spy_day, tmp_path: Path) -> None:
    _, res = spy_day
    alone = generate_spy_day(DAY, tmp_path, seed=11, schemas=("definition", "cbbo-1m"))
    assert alone.paths["cbbo-1m"].read_bytes() == res.paths["cbbo-1m"].read_bytes()
    assert "cmbp-1" not in alone.paths


def test_truth_is_consistent_with_its_curve_dividends_and_surface(spy_day) -> None:
    _, res = spy_day
    t = _truth(res)
    opt, exp, div, state = (t[t.kind == k] for k in ("option", "expiry", "dividend", "state"))
    S, r0 = float(state.spot.iloc[0]), float(state.rate.iloc[0])
    assert len(div) >= 1 and (div.amount > 0).all()
    cfg = SpyConfig()
    cut = int(state.cut_ts.iloc[0].value)
    for _, e in exp.iterrows():
        T = e.expiry_years
        assert e.discount_factor == pytest.approx(math.exp(-zero_rate(T, r0=r0, config=cfg) * T), rel=1e-12)
        pv = 0.0
        for _, dv in div.iterrows():
            ex_ns = cal.to_ns(dt.datetime.combine(dv.ex_date, dt.time(9, 30), tzinfo=cal.NEW_YORK))
            if cut < ex_ns <= e.expiration.value:
                tt = (ex_ns - cut) / cal.NS_PER_YEAR
                pv += dv.amount * math.exp(-zero_rate(tt, r0=r0, config=cfg) * tt)
        assert e.dividend_pv == pytest.approx(pv, abs=1e-12)
        assert e.forward == pytest.approx((S - pv) / e.discount_factor, rel=1e-13)
    bl = volfast.black76_price(
        forward=opt.forward.values,
        strike=opt.strike.values,
        expiry_years=opt.expiry_years.values,
        vol=opt.vol.values,
        is_call=opt.is_call.values.astype(bool),
        discount_factor=opt.discount_factor.values,
    )
    np.testing.assert_allclose(opt.european_price, bl, atol=1e-10)
    intrinsic = np.where(opt.is_call.astype(bool), S - opt.strike, opt.strike - S)
    assert (opt.price >= opt.european_price - 1e-12).all() and (opt.price >= intrinsic - 1e-12).all()
    itm_put = ~opt.is_call & (opt.strike > 1.05 * opt.forward) & (opt.expiry_years > 0.2)
    assert (opt.early_exercise_premium[itm_put] > 0.01).all()


def test_quotes_at_the_cut_bracket_the_american_truth(spy_day) -> None:
    out, res = spy_day
    snap = volfast.take_snapshot(res.paths["cbbo-1m"], definitions=res.paths["definition"], cut="15:48", date=DAY)
    q = snap.table.to_pandas().set_index("instrument_id")
    t = _truth(res)
    opt = t[(t.kind == "option") & ~t.missing & ~t.stale & ~t.crossed & ~t.one_sided].set_index(
        "instrument_id"
    )
    q = q.loc[q.index.intersection(opt.index)]
    ok = q.bid.notna() & q.ask.notna()
    price = opt.loc[q.index[ok], "price"]
    inside = (q.bid[ok] - 0.011 <= price) & (price <= q.ask[ok] + 0.011)
    assert ok.sum() > 200 and inside.mean() > 0.95
    # the American quotes sit above the European prices for in-the-money puts
    itm = opt.loc[q.index[ok]]
    itm = itm[~itm.is_call & (itm.strike > 1.04 * itm.forward) & (itm.expiry_years > 0.2)]
    assert len(itm) and (q.loc[itm.index, "bid"] > itm.european_price).mean() > 0.8


def test_seed_and_date_make_the_day(spy_day, tmp_path: Path) -> None:
    _, res = spy_day
    again = generate_spy_day(DAY, tmp_path, seed=11)
    assert again.paths["truth"].read_bytes() == res.paths["truth"].read_bytes()
    other = generate_spy_day(DAY, tmp_path / "o", seed=12)
    assert other.paths["cbbo-1m"].read_bytes() != res.paths["cbbo-1m"].read_bytes()


def test_bad_days_and_schemas(tmp_path: Path) -> None:
    from volfast.errors import VolfastError

    with pytest.raises(VolfastError, match="not a trading day"):
        generate_spy_day(dt.date(2024, 3, 2), tmp_path, seed=0)
    with pytest.raises(ValueError, match="unknown schema"):
        generate_spy_day(DAY, tmp_path, seed=0, schemas=("cbbo-1s",))
    r = CliRunner().invoke(
        cli,
        ["synth", "--market", "spy", "--start", "2024-03-04", "--out", str(tmp_path), "--schema", "mbp-1"],
    )
    assert r.exit_code == 2 and "unknown schema(s) mbp-1" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(
        cli, ["synth", "--market", "nyse", "--start", "2024-03-04", "--out", str(tmp_path)]
    )
    assert r.exit_code == 2 and "Traceback" not in r.output
    es = ["synth", "--start", "2024-03-04", "--out", str(tmp_path / "es"), "--schema", "cmbp-1"]
    r = CliRunner().invoke(cli, es)
    assert r.exit_code == 2 and "applies to --market spy only" in r.output


def test_cli_writes_spy_days(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        cli, ["synth", "--market", "spy", "--start", "2024-03-02", "--days", "1", "--out", str(tmp_path)]
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "opra-pillar-20240304.cbbo-1m.dbn.zst").is_file()
    assert (tmp_path / "opra-pillar-20240304.definition.dbn.zst").is_file()
    assert '"market": "spy"' in (tmp_path / "synth-config.json").read_text()


# -- the pipeline on OPRA ---------------------------------------------------------------------------------
SPY_DAYS = [dt.date(2024, 3, 4), dt.date(2024, 3, 5), dt.date(2024, 3, 6)]


@pytest.fixture(scope="module")
def spy3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from volfast.synth.spy import generate_spy_days

    out = tmp_path_factory.mktemp("spy3")
    generate_spy_days(SPY_DAYS[0], len(SPY_DAYS), out, seed=5)
    return out


@pytest.fixture(scope="module")
def spy3_built(spy3: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from volfast.pipeline import BuildConfig, run_build

    out = tmp_path_factory.mktemp("spy3-build")
    s = run_build(spy3, out, config=BuildConfig().replace(executor={"kind": "serial"}), progress=False)
    assert [r["status"] for r in s.results] == ["ok"] * 3, s.results
    return out


def test_market_presets_fill_only_what_the_user_left_out() -> None:
    from volfast.pipeline.presets import market_preset, with_market_preset

    assert market_preset("GLBX.MDP3") == {} and market_preset(None) == {} and market_preset("XNAS.ITCH") == {}
    opra = market_preset("OPRA.PILLAR")
    assert opra["validity"]["max_min_log_strike"] == -0.10 and "forward_method" not in opra
    merged = with_market_preset({"validity": {"min_two_sided": 5}, "side": "both"}, "OPRA.PILLAR")
    assert merged["validity"] == {**opra["validity"], "min_two_sided": 5} and merged["side"] == "both"
    assert market_preset("OPRA.PILLAR") == opra  # callers cannot change the table through a result


def test_build_on_synthetic_spy_days_is_valid_and_accurate(spy3: Path, spy3_built: Path) -> None:
    import json

    import pyarrow.parquet as pq

    fwd_err, short_err, vol_err = [], [], []
    for day in SPY_DAYS:
        tag = f"date={day.isoformat()}"
        m = json.loads((spy3_built / "days" / tag / "_manifest.json").read_text())
        assert m["valid"] is True, m.get("reason")
        # the OPRA preset came from the data's dataset (no flag), and is what the manifest hashed
        assert m["config"]["surfaces_resolved"]["validity"]["max_min_log_strike"] == -0.10
        assert m["config"]["surfaces_resolved"]["forward_method"] == "huber"
        assert m["config"]["surfaces_resolved"]["deamericanise"] is True
        t = pq.read_table(spy3 / "truth" / tag / "part-0.parquet").to_pandas()
        opt = t[t.kind == "option"].set_index("raw_symbol")
        exp = t[t.kind == "expiry"].set_index("expiration")
        f = pq.read_table(spy3_built / "forwards" / tag / "part-0.parquet").to_pandas()
        f = f[np.isfinite(f.forward)]
        err = (f.forward.to_numpy() / exp.loc[f.expiration, "forward"].to_numpy() - 1) * 1e4
        fwd_err += list(np.abs(err))
        short_err += list(np.abs(err[f.expiry_years.to_numpy() < 0.05]))
        q = pq.read_table(spy3_built / "quotes" / tag / "part-0.parquet").to_pandas()
        u = q[q.used.astype(bool)]
        vol_err += list(np.abs(u.fit_iv.to_numpy() - opt.loc[u.raw_symbol, "vol"].to_numpy()) * 100)
    # fitted vols at the quotes used (out of the money: small early-exercise premiums) against the true
    # European vols, in vol points
    assert np.median(vol_err) < 0.5 and np.percentile(vol_err, 95) < 2.0
    # forwards (defaults: no rate given, the premiums removed, the discount from the forwards' growth) against
    # the true ones over every expiry of the three days; without the de-Americanisation these were 3 bp
    assert len(fwd_err) >= 25
    assert np.median(short_err) < 0.5 and np.median(fwd_err) < 1.0, (np.median(short_err), np.median(fwd_err))


def test_local_executor_gives_the_serial_outputs(spy3: Path, spy3_built: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from volfast.pipeline import BuildConfig, run_build

    s = run_build(
        spy3, tmp_path, config=BuildConfig().replace(executor={"kind": "local", "workers": 2}), progress=False
    )
    assert [r["status"] for r in s.results] == ["ok"] * 3
    for day in SPY_DAYS:
        for table in ("snapshots", "forwards", "svi"):
            a = pq.read_table(tmp_path / table / f"date={day.isoformat()}" / "part-0.parquet").to_pandas()
            b = pq.read_table(spy3_built / table / f"date={day.isoformat()}" / "part-0.parquet").to_pandas()
            assert a.equals(b), (day, table)  # NaN-aware, unlike pyarrow's Table.equals


@pytest.mark.slow
def test_dask_executor_builds_opra_days(spy3: Path, spy3_built: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    import pyarrow.parquet as pq

    from volfast.pipeline import BuildConfig, run_build

    cfg = BuildConfig().replace(executor={"kind": "dask", "workers": 2})
    s = run_build(spy3, tmp_path, config=cfg, progress=False)
    assert [r["status"] for r in s.results] == ["ok"] * 3
    for day in SPY_DAYS:
        a = pq.read_table(tmp_path / "svi" / f"date={day.isoformat()}" / "part-0.parquet").to_pandas()
        b = pq.read_table(spy3_built / "svi" / f"date={day.isoformat()}" / "part-0.parquet").to_pandas()
        assert a.equals(b)


def test_real_qqq_cbbo_1m_day_builds_with_the_opra_preset(shared_dbn: Path, tmp_path: Path) -> None:
    """The real QQQ cbbo-1m sample (2025-04-28 09:31-10:30 New York: 161 options, far out of the money, none
    quoted on both sides) saved under a batch name and built with no flag but the cut: definitions come from
    its OCC symbology, the preset from its metadata, and the day is a clean invalid day with its reason."""
    import json
    import shutil

    import pyarrow.parquet as pq

    from volfast.pipeline import BuildConfig, run_build

    src = shared_dbn / "derived_from_bentoclient/opra-pillar.QQQ.OPT.20250428T1331-1430Z.cbbo-1m.v3.dbn.zst"
    data = tmp_path / "dbn"
    data.mkdir()
    shutil.copy2(src, data / "opra-pillar-20250428.cbbo-1m.dbn.zst")
    cfg = BuildConfig().replace(executor={"kind": "serial"}, snapshot={"cut": "10:30"})
    s = run_build(data, tmp_path / "out", config=cfg, progress=False)
    assert [r["status"] for r in s.results] == ["invalid"]
    m = json.loads((tmp_path / "out/days/date=2025-04-28/_manifest.json").read_text())
    assert m["config"]["surfaces_resolved"]["validity"]["max_min_log_strike"] == -0.10
    assert "two-sided strikes" in m["reason"]
    snap = pq.read_table(tmp_path / "out/snapshots/date=2025-04-28/part-0.parquet").to_pandas()
    assert len(snap) == 161 and set(snap.underlying) == {"QQQ"}
    assert sorted(snap.expiration.dt.date.unique()) == [dt.date(2025, 4, d) for d in (28, 29, 30)] + [
        dt.date(2025, 5, 1)
    ]


def test_occ_symbols_round_trip_on_the_real_spy_symbology(shared_dbn: Path) -> None:
    """Every one of the 13,492 SPY option symbols in a real OPRA definition file's symbology is written back
    byte for byte by the generator's OCC formatter (root padded to 6, yymmdd, C/P, strike x 1000 in 8
    digits)."""
    import databento as db

    p = shared_dbn / "nautilus_trader/opra-pillar.SPY.OPT.definition.2rec+13492mappings.20230801.v1.dbn.zst"
    syms = list(db.DBNStore.from_bytes(p.read_bytes()).metadata.mappings)
    assert len(syms) == 13492
    strikes = set()
    for s in syms:
        occ = parse_occ_symbol(s)
        assert occ is not None and occ.root == "SPY"
        assert occ_symbol(occ.root, occ.expiry, occ.is_call, occ.strike) == s
        strikes.add(occ.strike)
    # the real chain lists the $1 / $5 grid the generator uses (and a few half-dollar strikes)
    whole = {k for k in strikes if k == int(k)}
    assert len(whole) / len(strikes) > 0.9


@pytest.mark.slow
def test_spy_days_go_through_build_train_and_the_report(tmp_path: Path) -> None:
    """20 synthetic SPY days as a user's own DBN folder: the demo's whole job (build, train, stress, hedge,
    backtest, report) runs on them with no OPRA-specific setting."""
    import io
    import json

    from rich.console import Console

    from volfast.demo import DemoConfig, run_pipeline
    from volfast.report import RunLayout
    from volfast.synth.spy import generate_spy_days

    data = tmp_path / "dbn"
    generate_spy_days(dt.date(2024, 1, 2), 20, data, seed=2)
    cfg = DemoConfig(data=str(data), seed=1, epochs=6, executor="serial", stress_steps=6, mc_scenarios=100)
    report = run_pipeline(tmp_path / "run", cfg, console=Console(file=io.StringIO(), width=160))
    lay = RunLayout.of(tmp_path / "run")
    assert report.is_file() and lay.missing() == []
    summary = json.loads((lay.build / "build-summary.json").read_text())
    assert summary["counts"]["ok"] == 20  # every day valid with defaults


# -- de-Americanisation ----------------------------------------------------------------------------------
def test_premium_model_matches_the_truths_american_minus_european(spy_day) -> None:
    """The pipeline's premium model (:func:`volfast.forward.american.lattice_premiums`, 101/51 steps, the
    dividends implied by the true forward curve, never the truth's own dividend rows) against the synthetic
    truth's American - European price per instrument (a 400/200-step lattice on the true dividends)."""
    from volfast.forward.american import implied_dividends, lattice_premiums

    _, res = spy_day
    t = _truth(res)
    opt, exp = t[t.kind == "option"], t[t.kind == "expiry"]
    times, amounts = implied_dividends(
        expiry_years=exp.expiry_years.to_numpy(),
        forward=exp.forward.to_numpy(),
        discount_factor=exp.discount_factor.to_numpy(),
    )
    div = t[t.kind == "dividend"]
    assert amounts.sum() == pytest.approx(div.amount.sum(), rel=0.02)  # every dividend found, none invented
    p = lattice_premiums(
        prepaid_forward=(opt.forward * opt.discount_factor).to_numpy(),
        strike=opt.strike.to_numpy(),
        expiry_years=opt.expiry_years.to_numpy(),
        vol=opt.vol.to_numpy(),
        is_call=opt.is_call.to_numpy(),
        discount_factor=opt.discount_factor.to_numpy(),
        dividend_times=times,
        dividend_amounts=amounts,
    )
    truth = (opt.price - opt.european_price).to_numpy()
    err_bp = np.abs(p - truth) / opt.forward.to_numpy() * 1e4
    near = np.abs(np.log(opt.strike / opt.forward)).to_numpy() < 0.05
    assert truth[near].max() / opt.forward.to_numpy()[near].min() * 1e4 > 5  # premiums worth removing
    assert np.median(err_bp) < 0.05 and np.percentile(err_bp[near], 95) < 1.0, np.percentile(err_bp[near], 95)


@pytest.fixture(scope="module")
def spy3_surfaces(spy3: Path, spy3_built: Path):
    """The three built days' snapshots through the surfaces stage with the market's zero curve given (the
    rates a user takes from the rates market; the truth's dividends stay unread), and the truth."""
    import pyarrow.parquet as pq

    from volfast.pipeline.presets import with_market_preset
    from volfast.surface import SurfaceConfig
    from volfast.surface.day import surface_day
    from volfast.surface.run import read_snapshot_day

    out = []
    for day in SPY_DAYS:
        tag = f"date={day.isoformat()}"
        table, cut, d = read_snapshot_day(spy3_built / "snapshots" / tag)
        t = pq.read_table(spy3 / "truth" / tag / "part-0.parquet").to_pandas()
        exp = t[t.kind == "expiry"]
        exp = exp[exp.expiry_years > 1e-3]
        curve = [
            [float(x), float(-math.log(dd) / x)]
            for x, dd in zip(exp.expiry_years, exp.discount_factor, strict=True)
        ]
        cfg = SurfaceConfig.from_dict(with_market_preset({"rate_curve": curve}, "OPRA.PILLAR"))
        out.append((surface_day(table, cut_ns=cut, date=d, config=cfg, dataset="OPRA.PILLAR"), t, table, cut))
    return out


def test_deamericanised_forwards_are_within_a_basis_point(spy3_surfaces) -> None:
    fwd_err, short_err, vol_err, itm_err = [], [], [], []
    for sd, t, _, _ in spy3_surfaces:
        assert sd.valid and sd.counts["deamericanise"]["quotes_with_premium"] > 100
        f = sd.forwards.to_pandas()
        tf = t[t.kind == "expiry"].set_index("expiration").forward
        err = np.abs(f.forward.to_numpy() / tf.loc[f.expiration].to_numpy() - 1) * 1e4
        fwd_err += list(err[np.isfinite(err)])
        short_err += list(err[np.isfinite(err) & (f.expiry_years.to_numpy() < 0.0575)])
        opt = t[t.kind == "option"].set_index("raw_symbol")
        q = sd.quotes.to_pandas()
        u = q[q.used]
        vol_err += list(np.abs(u.fit_iv.to_numpy() - opt.loc[u.raw_symbol, "vol"].to_numpy()) * 100)
        itm = q[(q.status == 0) & ~q.on_side & np.isfinite(q.mid_iv)]
        itm_err += list(np.abs(itm.mid_iv.to_numpy() - opt.loc[itm.raw_symbol, "vol"].to_numpy()) * 100)
        # the premium column is what came off the quotes: the vols are the European-equivalent prices'
        assert (q.exercise_premium >= 0).all() and (q.exercise_premium > 0).sum() > 100
    assert len(fwd_err) >= 25
    assert np.median(fwd_err) < 1.0 and np.median(short_err) < 0.5
    assert np.median(vol_err) < 0.5 and np.percentile(vol_err, 95) < 2.0
    # in-the-money quotes, inverted after the premium came off, read the true European vols
    assert np.median(itm_err) < 0.1


def test_european_exercise_leaves_the_quotes_alone(spy3_surfaces) -> None:
    from volfast.surface import SurfaceConfig
    from volfast.surface.day import surface_day

    sd, _, table, cut = spy3_surfaces[0]
    eu = surface_day(table, cut_ns=cut, config=SurfaceConfig(exercise="european"), dataset="OPRA.PILLAR")
    from volfast.errors import UsageError

    with pytest.raises(UsageError, match="surfaces.deamericanise must be true or false, got 'yes'"):
        SurfaceConfig(deamericanise="yes")
    plain = SurfaceConfig(exercise="american", deamericanise=False)
    off = surface_day(table, cut_ns=cut, config=plain, dataset="OPRA.PILLAR")
    for d in (eu, off):
        q = d.quotes.to_pandas()
        assert (q.exercise_premium == 0).all() and "deamericanise" not in d.counts
        np.testing.assert_array_equal(q.mid.to_numpy(), sd.quotes.column("mid").to_numpy())
