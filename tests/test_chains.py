"""Chains from anywhere (issue 19, items 4-9): ``volfast.surface.from_quotes`` and ``volfast surfaces
--quotes`` on the real SPX chain in ../shared/data/chains and on synthetic chains with known truth; rates,
honest discounts, zero bids, American exercise, the arbitrage setting and validity in standardised
moneyness."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import volfast
from volfast.cli import main
from volfast.errors import UsageError, VolfastError
from volfast.forward import ForwardStatus, implied_forward
from volfast.surface import SurfaceConfig, ValidityConfig
from volfast.surface.chain import ChainError, from_quotes
from volfast.surface.day import read_rate_curve

REPO = Path(__file__).resolve().parents[1]
SPX = REPO.parent / "shared" / "data" / "chains" / "spx_cboe_20251001" / "spx_20251001_close_chain_tidy.csv"
SPX_ASOF = "2025-10-01T16:00:00-04:00"


@pytest.fixture(scope="module")
def spx_csv() -> Path:
    if not SPX.is_file():
        pytest.skip(f"real SPX chain not found at {SPX}")
    return SPX


@pytest.fixture(scope="module")
def spx_day(spx_csv: Path):
    return from_quotes(spx_csv, asof=SPX_ASOF)


# -- an independent parity regression (plain OLS near the money), written here ------------------------------
def _ols_parity(g: pd.DataFrame, band: float = 0.05) -> tuple[float, float]:
    c = g[g.cp == "C"].set_index("strike")
    p = g[g.cp == "P"].set_index("strike")
    ks = c.index.intersection(p.index)
    y = ((c.bid + c.ask) / 2 - (p.bid + p.ask) / 2).loc[ks]
    k0 = y.abs().idxmin()
    f0 = k0 + y.loc[k0]
    sel = ks[np.abs(np.log(ks / f0)) < band]
    a = np.c_[np.ones(len(sel)), np.asarray(sel, float)]
    (c0, c1), *_ = np.linalg.lstsq(a, y.loc[sel].to_numpy(), rcond=None)
    d = -c1
    return c0 / d, d


# -- the real SPX chain ----------------------------------------------------------------------------------
def test_spx_chain_forwards_match_an_independent_parity_regression(spx_csv: Path, spx_day) -> None:
    raw = pd.read_csv(spx_csv)
    fw = spx_day.forwards.to_pandas()
    assert len(fw) == 13 and (fw.status == ForwardStatus.OK).all(), fw.reason.tolist()
    # slices are (root, expiry): SPX (AM, 09:30 New York) and SPXW (PM, 16:00) on the same dates differ
    assert set(fw.underlying) == {"SPX", "SPXW"}
    for (root, exp), g in raw.groupby(["root", "expiry"]):
        row = fw[(fw.underlying == root) & (fw.expiration.dt.strftime("%Y-%m-%d") == exp)]
        assert len(row) == 1, (root, exp)
        row = row.iloc[0]
        hour = row.expiration.tz_convert("America/New_York").strftime("%H:%M")
        assert hour == ("09:30" if root == "SPX" else "16:00")
        f_ols, d_ols = _ols_parity(g)
        assert row.forward == pytest.approx(f_ols, rel=0.5e-4), (root, exp)  # within 0.5 bp
        assert row.discount_factor == pytest.approx(d_ols, abs=2e-3)
    # SOURCES.md: rates 3.7-4.1% by a plain parity regression
    assert fw.rate.between(0.035, 0.043).all(), fw.rate.tolist()


def test_spx_chain_vols_agree_with_cboe_iv_and_the_day_is_valid(spx_csv: Path, spx_day) -> None:
    raw = pd.read_csv(spx_csv)
    q = spx_day.quotes.to_pandas()
    used = q[q.used].merge(raw[["option_symbol", "cboe_iv"]], left_on="raw_symbol", right_on="option_symbol")
    assert len(used) > 800
    diff = (used.mid_iv - used.cboe_iv) * 100  # vol points
    assert np.median(np.abs(diff)) < 0.2  # cboe_iv is Cboe's own (spot-based) model: a cross-check
    assert np.quantile(np.abs(diff), 0.95) < 1.0
    # a typical liquid index day is valid under the default validity rules
    assert spx_day.valid, spx_day.reason
    assert spx_day.counts["input"]["rows"] == 1976 and not spx_day.counts["input"]["rows_skipped"]
    # the old fixed ln(K/F) rule is still there on request, and says which rule failed
    old = from_quotes(spx_csv, asof=SPX_ASOF, config=SurfaceConfig(validity=ValidityConfig(moneyness="log")))
    why = old.svi.to_pandas().validity_reason
    assert any("max ln(K/F)" in w for w in why) and any("min ln(K/F)" in w for w in why)


def test_spx_chain_from_dataframe_arrow_and_parquet_agree(spx_csv: Path, spx_day, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = pd.read_csv(spx_csv)
    pq.write_table(pa.Table.from_pandas(df), tmp_path / "c.parquet")
    for src in (df, pa.Table.from_pandas(df), tmp_path / "c.parquet"):
        d = from_quotes(src, asof=SPX_ASOF)
        np.testing.assert_allclose(
            d.forwards.column("forward").to_numpy(), spx_day.forwards.column("forward").to_numpy(), rtol=1e-12
        )


def test_spx_chain_through_the_cli(spx_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "surf"
    r = CliRunner().invoke(
        main, ["surfaces", "--quotes", str(spx_csv), "--asof", SPX_ASOF, "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    man = json.loads((out / "days" / "date=2025-10-01" / "_manifest.json").read_text())
    assert (man["status"], man["valid"]) == ("complete", True), man.get("reason")
    for table in ("quotes", "forwards", "svi", "grids", "days"):
        assert (out / table / "date=2025-10-01" / "part-0.parquet").is_file(), table
    assert (out / "days" / "date=2025-10-01" / "_manifest.json").is_file()
    fw = volfast.surface.read_output(out, "forwards").to_pandas()
    assert len(fw) == 13 and fw.rate.between(0.035, 0.043).all()
    # with a rate: D = exp(-r T) exactly for every expiry
    out2 = tmp_path / "surf2"
    r = CliRunner().invoke(
        main,
        ["surfaces", "--quotes", str(spx_csv), "--asof", SPX_ASOF, "--out", str(out2), "--rate", "0.039"],
    )
    assert r.exit_code == 0, r.output
    fw2 = volfast.surface.read_output(out2, "forwards").to_pandas()
    np.testing.assert_array_equal(fw2.discount_factor, np.exp(-0.039 * fw2.expiry_years))


# -- errors: one line naming the column and row --------------------------------------------------------
def _tiny(**overrides: list) -> pd.DataFrame:
    d = {
        "expiration": ["2026-03-20", "2026-03-20"],
        "strike": [100.0, 100.0],
        "cp": ["C", "p"],
        "bid": [5.0, 4.0],
        "ask": [5.2, 4.2],
    }
    d.update(overrides)
    return pd.DataFrame(d)


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (_tiny().drop(columns=["strike"]), r"no 'strike' column .*found expiration, cp, bid, ask"),
        (_tiny(expiration=["2026-03-20", "next friday"]), r"column 'expiration', row 2: cannot parse"),
        (_tiny(cp=["C", "X"]), r"column 'cp', row 2: side 'X' is not C or P"),
    ],
)
def test_bad_chains_are_one_line_errors(frame: pd.DataFrame, match: str, tmp_path: Path) -> None:
    with pytest.raises(ChainError, match=match) as exc:
        from_quotes(frame, asof="2026-01-02T16:00:00-05:00")
    assert isinstance(exc.value, VolfastError) and "\n" not in str(exc.value)
    # the CLI: the same one line, exit code 1, no traceback; CSV rows also give the file's line
    csv = tmp_path / "bad.csv"
    frame.to_csv(csv, index=False)
    r = CliRunner().invoke(
        main, ["surfaces", "--quotes", str(csv), "--asof", "2026-01-02", "--out", str(tmp_path)]
    )
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert str(csv) in r.output and len(r.output.strip().splitlines()) == 1
    if "row 2" in match:
        assert "(line 3)" in r.output


def test_cli_usage_errors(tmp_path: Path) -> None:
    csv = tmp_path / "c.csv"
    _tiny().to_csv(csv, index=False)
    runner = CliRunner()
    r = runner.invoke(main, ["surfaces", "--quotes", str(csv), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--asof" in r.output
    r = runner.invoke(
        main, ["surfaces", "--quotes", str(csv), "--asof", "yesterday", "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 2 and r.output.startswith("Error: cannot parse 'yesterday'"), r.output  # usage
    assert r.output.rstrip().endswith("(asof)"), r.output
    r = runner.invoke(main, ["surfaces", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--snapshots DIR or --quotes FILE" in r.output
    curve = tmp_path / "curve.csv"
    curve.write_text("tenor_years,rate\n0.5,0.04\n1.0,abc\n")
    r = runner.invoke(
        main,
        [
            "surfaces",
            "--quotes",
            str(csv),
            "--asof",
            "2026-01-02",
            "--out",
            str(tmp_path / "o"),
            "--rate-curve",
            str(curve),
        ],
    )
    assert r.exit_code == 2 and "row 2" in r.output and "'abc'" in r.output and "Traceback" not in r.output


def test_bad_numbers_are_skipped_and_counted() -> None:
    f = _synthetic_chain(expiries=(0.25, 0.5, 1.0))
    f["strike"] = f["strike"].astype(object)
    f["bid"] = f["bid"].astype(object)
    f["ask"] = f["ask"].astype(object)
    f.loc[3, "strike"] = "n/a"
    f.loc[7, "bid"] = "--"
    f.loc[9, "ask"] = ""  # an empty cell is a missing side, not a bad row
    day = from_quotes(f, asof=ASOF, rate=R)
    inp = day.counts["input"]
    assert inp["rows"] == len(f) and inp["rows_used"] == len(f) - 2
    assert inp["rows_skipped"] == {"strike not a positive number": 1, "bid not a number": 1}
    assert any("rows skipped" in w for w in day.warnings)


def test_columns_mapping_and_expiry_times() -> None:
    f = _synthetic_chain(expiries=(0.5,)).rename(columns={"expiration": "ExpDate", "cp": "PutCall"})
    with pytest.raises(ChainError, match="no 'expiration' column"):
        from_quotes(f, asof=ASOF)
    day = from_quotes(f, asof=ASOF, columns={"expiration": "ExpDate", "cp": "PutCall"}, rate=R)
    assert day.forwards.num_rows == 1
    with pytest.raises(UsageError, match="unknown logical column"):
        from_quotes(f, asof=ASOF, columns={"expiry_date": "ExpDate"})
    # bare dates: 16:00 New York unless configured; AM settlement 09:30
    g = _synthetic_chain(expiries=(0.5,))
    t16 = from_quotes(g, asof=ASOF, rate=R).forwards.column("expiration")[0].as_py()
    t10 = from_quotes(g, asof=ASOF, rate=R, expiry_time="10:00").forwards.column("expiration")[0].as_py()
    assert (t16 - t10).total_seconds() == 6 * 3600
    g["settlement_style"] = "AM"
    t930 = from_quotes(g, asof=ASOF, rate=R).forwards.column("expiration")[0].as_py()
    assert (t16 - t930).total_seconds() == 6.5 * 3600


# -- synthetic chains with known truth ------------------------------------------------------------------
ASOF = "2026-01-02T16:00:00-05:00"
R = 0.04
S0 = 5000.0


def _expiry_date(t: float) -> str:
    base = pd.Timestamp(ASOF).tz_convert("America/New_York")
    return (base + pd.Timedelta(days=round(t * 365))).strftime("%Y-%m-%d")


def _synthetic_chain(
    expiries: tuple[float, ...] = (0.25, 0.5, 1.0),
    *,
    rate=R,
    div: float = 0.01,
    half_spread: float = 0.05,
    price=None,
) -> pd.DataFrame:
    """European (Black-76) calls and puts on a flat-ish smile at 21 strikes per expiry, with tiny spreads."""
    rows = []
    base = pd.Timestamp(ASOF)
    for t_nom in expiries:
        exp = _expiry_date(t_nom)
        t = (pd.Timestamp(exp + " 16:00").tz_localize("America/New_York") - base).total_seconds() / (
            365 * 86400
        )
        r_t = rate(t) if callable(rate) else rate
        f = S0 * math.exp((r_t - div) * t)
        d = math.exp(-r_t * t)
        for k in f * np.exp(np.linspace(-0.35, 0.2, 21) * math.sqrt(t)):
            k = round(float(k))
            vol = 0.2 - 0.1 * math.log(k / f)
            for call in (True, False):
                px = (
                    price(k=k, t=t, call=call)
                    if price is not None
                    else float(
                        volfast.black76_price(
                            forward=f, strike=k, expiry_years=t, vol=vol, is_call=call, discount_factor=d
                        )
                    )
                )
                rows.append(
                    {
                        "expiration": exp,
                        "strike": float(k),
                        "cp": "C" if call else "P",
                        "bid": round(max(px - half_spread, 0.0), 2),
                        "ask": round(px + half_spread, 2),
                        "vol": vol,
                        "F": f,
                        "D": d,
                        "T": t,
                    }
                )
    return pd.DataFrame(rows)


def test_given_rate_is_used_exactly_and_forwards_come_by_parity() -> None:
    f = _synthetic_chain()
    day = from_quotes(f, asof=ASOF, rate=R)
    fw = day.forwards.to_pandas()
    assert (fw.status == ForwardStatus.OK).all()
    np.testing.assert_array_equal(fw.discount_factor, np.exp(-R * fw.expiry_years))
    truth = f.groupby("expiration")[["F", "T"]].first().reset_index()
    np.testing.assert_allclose(fw.expiry_years, truth["T"], rtol=1e-12)
    np.testing.assert_allclose(fw.forward, truth["F"], rtol=2e-5)  # quotes rounded to 0.01 around the truth
    # a curve: linear in T between tenors, flat beyond (quotes priced on that curve)
    curve = ((0.1, 0.02), (0.6, 0.05))
    fcurve = _synthetic_chain(rate=lambda t: float(np.interp(t, [0.1, 0.6], [0.02, 0.05])))
    fc = from_quotes(fcurve, asof=ASOF, rate=curve).forwards.to_pandas()
    assert (fc.status == ForwardStatus.OK).all()
    np.testing.assert_allclose(fc.forward, fcurve.groupby("expiration").F.first(), rtol=2e-5)
    want_r = np.interp(fc.expiry_years, [0.1, 0.6], [0.02, 0.05])
    np.testing.assert_array_equal(fc.discount_factor, np.exp(-want_r * fc.expiry_years))
    # the config key is the same setting (TOML [surfaces] rate); given twice is an error
    cfg = SurfaceConfig.from_dict({"rate": R})
    np.testing.assert_array_equal(
        from_quotes(f, asof=ASOF, config=cfg).forwards.column("discount_factor"), fw.discount_factor
    )
    with pytest.raises(UsageError, match="rate or rate_curve"):
        SurfaceConfig(rate=0.04, rate_curve=((1.0, 0.04),))
    with pytest.raises(UsageError, match="fraction"):
        SurfaceConfig(rate=4.0)


def test_rate_curve_file(tmp_path: Path) -> None:
    p = tmp_path / "curve.csv"
    p.write_text("tenor_years,rate\n1.0,0.05\n0.25,0.04\n")
    assert read_rate_curve(p) == ((0.25, 0.04), (1.0, 0.05))
    p.write_text("tenor,rate\n1,0.05\n")
    with pytest.raises(UsageError, match="tenor_years and rate"):
        read_rate_curve(p)


def test_vols_recover_the_truth_without_a_rate() -> None:
    f = _synthetic_chain()
    day = from_quotes(f, asof=ASOF)
    fw = day.forwards.to_pandas()
    assert (fw.status == ForwardStatus.OK).all(), fw.reason.tolist()
    assert fw.rate.sub(R).abs().max() < 5e-4
    q = day.quotes.to_pandas()
    u = q[q.used]
    assert len(u) > 30
    truth = f.vol.to_numpy()[u.instrument_id.to_numpy()]  # instrument_id is the input row
    err = np.abs(u.mid_iv.to_numpy() - truth) * 100
    assert np.median(err) < 0.05 and err.max() < 0.5  # quotes rounded to 0.01 with 0.05 half-spreads


# -- honest discounts --------------------------------------------------------------------------------------
def _crr(
    *, s: float, k: float, t: float, r: float, q: float, vol: float, call: bool, american: bool, n: int = 400
) -> float:
    """Cox-Ross-Rubinstein binomial price (written here, the test's own pricer)."""
    dt = t / n
    u = math.exp(vol * math.sqrt(dt))
    dn = 1 / u
    p = (math.exp((r - q) * dt) - dn) / (u - dn)
    disc = math.exp(-r * dt)
    j = np.arange(n + 1)
    st = s * u ** (n - j) * dn**j
    v = np.maximum(st - k, 0.0) if call else np.maximum(k - st, 0.0)
    for i in range(n, 0, -1):
        st = st[:i] * dn  # the i nodes of step i - 1: s u^(i-1-j) d^j
        v = disc * (p * v[:i] + (1 - p) * v[1 : i + 1])
        if american:
            v = np.maximum(v, (st - k) if call else (k - st))
    return float(v[0])


def _american_chain(t: float = 0.12, s: float = 100.0, r: float = 0.045, vol: float = 0.25) -> pd.DataFrame:
    """One short expiry of American equity options (no dividend), $1 strikes, spreads 0.02."""
    rows = []
    exp = _expiry_date(t)
    base = pd.Timestamp(ASOF)
    tt = (pd.Timestamp(exp + " 16:00").tz_localize("America/New_York") - base).total_seconds() / (365 * 86400)
    for k in range(85, 116):
        for call in (True, False):
            px = _crr(s=s, k=k, t=tt, r=r, q=0.0, vol=vol, call=call, american=True)
            rows.append(
                {
                    "expiration": exp,
                    "strike": float(k),
                    "cp": "C" if call else "P",
                    "bid": max(px - 0.01, 0.0),
                    "ask": px + 0.01,
                    "T": tt,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def american() -> pd.DataFrame:
    return _american_chain()


def test_single_american_expiry_never_reports_its_own_rate_as_success(american: pd.DataFrame) -> None:
    day = from_quotes(american, asof=ASOF, config=SurfaceConfig(exercise="european"))
    fw = day.forwards.to_pandas().iloc[0]
    assert fw.status not in (ForwardStatus.OK, ForwardStatus.POOLED_DISCOUNT), fw.reason
    assert fw.status in (
        ForwardStatus.DISCOUNT_UNIDENTIFIED,
        ForwardStatus.RATE_OUT_OF_BAND,
        ForwardStatus.EMPTY_BOX_BOUNDS,
    )
    assert "give a rate" in fw.reason and math.isnan(fw.forward)
    # nothing fitted on a forward that is not there: no vol of 0.0 anywhere, no used quote
    q = day.quotes.to_pandas()
    assert not q.used.any()
    for col in ("bid_iv", "ask_iv", "mid_iv", "fit_iv"):
        assert not (q[col] == 0.0).any()


def test_unidentified_short_expiry_alone_is_flagged_and_pooled_with_others() -> None:
    # exact parity quotes, 5 strikes, 3 days: the rate's standard error is far above 10 bp
    t, f, d = 3 / 365, 100.0, math.exp(-0.04 * 3 / 365)
    k = np.array([98.0, 99.0, 100.0, 101.0, 102.0])
    tv = 0.8 * np.exp(-0.5 * ((k - f) / 2.0) ** 2) + 0.05
    c_mid = d * np.maximum(f - k, 0) + tv
    p_mid = c_mid - d * (f - k)
    strike = np.r_[k, k]
    is_call = np.r_[np.ones(5, bool), np.zeros(5, bool)]
    mid = np.r_[c_mid, p_mid]
    one = implied_forward(strike=strike, is_call=is_call, bid=mid - 0.05, ask=mid + 0.05, expiry_years=t, offsets=[0, 10])
    assert one.status[0] == ForwardStatus.DISCOUNT_UNIDENTIFIED and "no other expiry to pool" in one.reason[0]
    assert math.isnan(one.forward[0])
    # the same expiry with a long one beside it: the pooled curve of the other expiry
    t2, d2 = 1.0, math.exp(-0.04)
    k2 = np.linspace(80, 120, 21)
    c2 = d2 * np.maximum(f - k2, 0) + 3.0 * np.exp(-0.5 * ((k2 - f) / 10) ** 2) + 0.5
    p2 = c2 - d2 * (f - k2)
    both = implied_forward(
        strike=np.r_[strike, k2, k2],
        is_call=np.r_[is_call, np.ones(21, bool), np.zeros(21, bool)],
        bid=np.r_[mid - 0.05, c2 - 0.05, p2 - 0.05],
        ask=np.r_[mid + 0.05, c2 + 0.05, p2 + 0.05],
        expiry_years=[t, t2],
        offsets=[0, 10, 52],
    )
    assert both.status[1] == ForwardStatus.OK
    assert both.status[0] == ForwardStatus.POOLED_DISCOUNT and both.forward[0] == pytest.approx(f, rel=1e-6)


def test_rate_outside_the_band_falls_back_to_the_pool_or_is_flagged() -> None:
    f = _synthetic_chain(expiries=(0.25, 0.5, 1.0))
    # the first expiry's quotes imply a -30% rate: calls and puts shifted by the discount they imply
    short = f.expiration == f.expiration.iloc[0]
    day0 = from_quotes(f, asof=ASOF)
    t0 = float(f.loc[short, "T"].iloc[0])
    fake_d = math.exp(0.30 * t0)
    g = f.copy()
    g.loc[short, ["bid", "ask"]] = (g.loc[short, ["bid", "ask"]] * fake_d / math.exp(-R * t0)).round(2)
    fit = from_quotes(g, asof=ASOF).forwards.to_pandas()
    # the pooled D of the other two is tried, and does not fit these quotes: a failure that says so
    assert fit.status.iloc[0] == ForwardStatus.INFEASIBLE, fit.reason.iloc[0]
    assert "own rate -30.00% outside the band" in fit.reason.iloc[0]
    assert "pooled discount factor of the other expiries does not fit its quotes" in fit.reason.iloc[0]
    assert (fit.status.iloc[1:] == ForwardStatus.OK).all() and math.isnan(fit.forward.iloc[0])
    assert (day0.forwards.column("status").to_numpy() == 0).all()
    alone = from_quotes(g[short], asof=ASOF).forwards.to_pandas().iloc[0]
    assert alone.status == ForwardStatus.RATE_OUT_OF_BAND and "give a rate" in alone.reason
    # a wider band accepts it (the band is a setting)
    wide = from_quotes(g[short], asof=ASOF, config=SurfaceConfig(rate_band=(-0.5, 0.5))).forwards.to_pandas()
    assert wide.status.iloc[0] == ForwardStatus.OK


# -- zero bids -------------------------------------------------------------------------------------------
def test_zero_bids_mean_no_bid() -> None:
    f = _synthetic_chain(expiries=(0.25, 0.5, 1.0))
    far = f.expiration == f.expiration.iloc[-1]
    zero_rows = f.index[~far][::5]
    f.loc[zero_rows, "bid"] = 0.0
    f.loc[far, "bid"] = 0.0  # one expiry with no bids at all
    day = from_quotes(f, asof=ASOF, rate=R)
    q = day.quotes.to_pandas()
    zb = q.bid == 0.0
    assert zb.sum() == len(zero_rows) + far.sum()
    assert q.loc[zb, ["bid_iv", "mid", "mid_iv"]].isna().all().all()
    assert not q.loc[zb, "used"].any()
    for col in ("bid_iv", "ask_iv", "mid_iv", "fit_iv"):
        assert not (q[col] == 0.0).any(), col
    fw = day.forwards.to_pandas()
    last = fw.iloc[-1]
    assert (
        last.status != ForwardStatus.OK and "no bids" in last.reason and "zero or missing bid" in last.reason
    )
    sv = day.svi.to_pandas()
    assert sv.iloc[-1].reason.startswith("no forward") and sv.iloc[-1].n_quotes == 0
    assert (fw.status.iloc[:-1] == ForwardStatus.OK).all()


# -- American exercise ---------------------------------------------------------------------------------------
def test_american_chain_forward_near_the_money_and_otm_vols(american: pd.DataFrame) -> None:
    s, r, vol = 100.0, 0.045, 0.25
    t = float(american["T"].iloc[0])
    f_true = s * math.exp(r * t)
    am = from_quotes(american, asof=ASOF, rate=r, config=SurfaceConfig(exercise="american"))
    eu = from_quotes(american, asof=ASOF, rate=r, config=SurfaceConfig(exercise="european"))
    assert am.counts["exercise"] == "american" and eu.counts["exercise"] == "european"
    f_am = am.forwards.column("forward")[0].as_py()
    # European parity over 4 ATM standard deviations: American quotes miss one parity line (infeasible)
    assert eu.forwards.column("status")[0].as_py() == ForwardStatus.INFEASIBLE
    # the early-exercise premiums (the chain's own CRR tree above) come off before parity and vols: the
    # forward is within 0.1 bp and every vol, in or out of the money, within 0.05 vol points of the truth
    assert abs(f_am / f_true - 1) < 1e-5 and am.counts["deamericanise"]["converged"]
    q = am.quotes.to_pandas()
    u = q[q.used]
    assert ((u.is_call & (u.strike >= u.forward)) | (~u.is_call & (u.strike < u.forward))).all()
    itm = q[(q.status == 0) & ~q.on_side]
    assert len(itm) > 10 and (q.exercise_premium[~q.is_call] > 0).all()
    for side in (u, itm):
        err = (side.mid_iv - vol).abs() * 100
        assert err.median() < 0.03 and err.max() < 0.05
    # without it: early exercise makes American puts dearer, C - P understates D (F - K) and the forward
    # comes out low; near the money (1 ATM standard deviation) by about 5 bp on this 6-week chain (r 4.5%)
    plain = SurfaceConfig(exercise="american", deamericanise=False)
    f_plain = from_quotes(american, asof=ASOF, rate=r, config=plain).forwards.column("forward")[0].as_py()
    assert f_plain < f_true and 3e-4 < abs(f_plain / f_true - 1) < 7e-4
    # auto means american for OPRA datasets, european otherwise
    auto = from_quotes(american, asof=ASOF, rate=r, dataset="OPRA.PILLAR")
    assert auto.counts["exercise"] == "american"
    assert from_quotes(american, asof=ASOF, rate=r).counts["exercise"] == "european"


# -- the arbitrage setting ----------------------------------------------------------------------------
def test_arbitrage_modes(spx_csv: Path) -> None:
    res = {
        m: from_quotes(spx_csv, asof=SPX_ASOF, config=SurfaceConfig(arbitrage=m))
        for m in ("enforce", "check", "off")
    }
    off = res["off"].svi.to_pandas()
    assert off.butterfly_ok.isna().all() and off.calendar_ok.isna().all()
    assert "slices_butterfly_arbitrage" not in res["off"].counts
    chk = res["check"].svi.to_pandas()
    assert chk.butterfly_ok.notna().all()
    n_flagged = int((~chk.butterfly_ok.astype(bool)).sum() + (~chk.calendar_ok.astype(bool)).sum())
    c = res["check"].counts
    assert c["slices_butterfly_arbitrage"] + c["slices_calendar_arbitrage"] == n_flagged
    if n_flagged:
        assert any(w.startswith("arbitrage check:") for w in res["check"].warnings)
    # check and off fit the same (independent) slices; enforce reports what it enforced
    np.testing.assert_array_equal(chk.a, off.a)
    enf = res["enforce"].svi.to_pandas()
    assert enf.butterfly_ok.all() and enf.calendar_ok.all()
    # one setting: the old boolean maps onto it; TOML keys too; bad values are usage errors
    assert SurfaceConfig(arbitrage_free=False).arbitrage == "check"
    assert SurfaceConfig.from_dict({"arbitrage": "off"}).arbitrage == "off"
    assert "arbitrage_free" not in SurfaceConfig().to_dict()
    with pytest.raises(UsageError, match="arbitrage must be one of"):
        SurfaceConfig(arbitrage="sometimes")


# -- DBN files by their metadata, whatever their names ------------------------------------------------------
API_NAME = "opra-pillar.QQQ.OPT-exp20250502.20250428T142952-143002Z.cbbo-1s.v3.dbn.zst"


def test_dbn_files_are_found_by_metadata_not_by_name(shared_dbn: Path, tmp_path: Path) -> None:
    import shutil

    from volfast.io.dbn import find_day_files, list_dates, scan_folder

    data = tmp_path / "data"
    data.mkdir()
    qqq = (
        shared_dbn
        / "derived_from_bentoclient"
        / "opra-pillar.QQQ.OPT.20250428T142952-143002Z.cbbo-1s.v3.dbn.zst"
    )
    shutil.copy(qqq, data / API_NAME)  # the name the Databento API gives a download
    shutil.copy(
        shared_dbn / "databento-python" / "opra-pillar.AAPL250221C250.definition.v3.dbn.zst",
        data / "defs.bin",
    )
    (data / "notes.txt").write_text("not market data")
    # a file named like another day's batch file: its metadata (2025-02-20) decides, not its name
    shutil.copy(
        shared_dbn / "databento-python" / "opra-pillar.AAPL250221C250.cbbo-1m.v3.dbn.zst",
        data / "opra-pillar-20250428.cbbo-1m.dbn.zst",
    )
    import datetime as dt

    assert list_dates(data) == [dt.date(2025, 2, 20), dt.date(2025, 4, 28)]
    day = find_day_files(data, "2025-04-28")
    assert day.quotes() == ("cbbo-1s", [data / API_NAME])
    info = {i.path.name: i for i in scan_folder(data)}
    assert info["notes.txt"].problem and "not a DBN file" in info["notes.txt"].problem
    assert info["defs.bin"].schema == "definition" and info["defs.bin"].dataset == "OPRA.PILLAR"
    # volfast snapshot reads it under its API name (cut inside the file's 10 seconds)
    out = tmp_path / "snap"
    r = CliRunner().invoke(
        main, ["snapshot", "--data", str(data), "--out", str(out), "--date", "2025-04-28", "--cut", "10:30"]
    )
    assert r.exit_code == 0, r.output
    assert (out / "date=2025-04-28" / "part-0.parquet").is_file()
    import pyarrow.parquet as pq

    assert pq.read_table(out / "date=2025-04-28" / "part-0.parquet").num_rows > 0
    # volfast surfaces takes the dataset from the snapshot's manifest: OPRA -> American handling
    surf = tmp_path / "surf"
    r = CliRunner().invoke(main, ["surfaces", "--snapshots", str(out), "--out", str(surf)])
    assert r.exit_code == 0, r.output
    import json

    days = volfast.surface.read_output(surf, "days").to_pandas()
    assert json.loads(days.counts.iloc[0])["exercise"] == "american"


def test_a_folder_without_a_quote_file_says_what_it_found(shared_dbn: Path, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(
        shared_dbn / "databento-python" / "opra-pillar.AAPL250221C250.definition.v3.dbn.zst",
        data / "a.dbn.zst",
    )
    shutil.copy(
        shared_dbn / "databento-python" / "glbx-mdp3.live-stream-mixed.v3.dbn.zst", data / "b.dbn.zst"
    )
    (data / "c.dbn").write_bytes(b"garbage")
    r = CliRunner().invoke(
        main, ["snapshot", "--data", str(data), "--out", str(tmp_path / "o"), "--date", "2025-02-20"]
    )
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "no top-of-book file" in r.output
    assert "a.dbn.zst: definition (not top-of-book)" in r.output
    assert "b.dbn.zst: mixed-schema stream" in r.output and "c.dbn: not a DBN file" in r.output
    # build: no readable DBN file of any day -> one line naming what is there
    (data / "a.dbn.zst").unlink()
    r = CliRunner().invoke(main, ["build", "--data", str(data), "--out", str(tmp_path / "b"), "--quiet"])
    assert r.exit_code != 0 and "no readable DBN file" in r.output and "c.dbn: not a DBN file" in r.output


def test_surfaces_settings_in_the_build_toml_and_cli(tmp_path: Path) -> None:
    from volfast.io.output import config_hash
    from volfast.pipeline import load_config

    toml = tmp_path / "build.toml"
    toml.write_text(
        '[surfaces]\narbitrage = "check"\nrate = 0.04\nexercise = "american"\nrate_band = [-0.02, 0.1]\n'
    )
    cfg = load_config(toml)
    sc = SurfaceConfig.from_dict(cfg.surfaces_params())
    assert (sc.arbitrage, sc.rate, sc.exercise, sc.rate_band) == ("check", 0.04, "american", (-0.02, 0.1))
    base = config_hash(load_config(None).stage_config("surfaces"))
    assert config_hash(cfg.stage_config("surfaces")) != base  # the settings are hashed with the stage
    bad = tmp_path / "bad.toml"
    bad.write_text('[surfaces]\narbitrage = "maybe"\n')
    with pytest.raises(UsageError, match="arbitrage must be one of enforce, check, off"):
        SurfaceConfig.from_dict(load_config(bad).surfaces_params())
    # a bad setting stops volfast build at once, in one line naming the file
    r = CliRunner().invoke(
        main, ["build", "--data", str(tmp_path), "--out", str(tmp_path / "x"), "--config", str(bad)]
    )
    assert r.exit_code == 2 and str(bad) in r.output and "arbitrage must be one of" in r.output
    r = CliRunner().invoke(
        main, ["build", "--data", str(tmp_path), "--out", str(tmp_path / "x"), "--rate", "5"]
    )
    assert r.exit_code == 2 and "surfaces.rate must be a finite fraction" in r.output
    bad.write_text('[surfaces]\ndeamericanise = "no"\n')
    r = CliRunner().invoke(
        main, ["build", "--data", str(tmp_path), "--out", str(tmp_path / "x"), "--config", str(bad)]
    )
    assert r.exit_code == 2 and "surfaces.deamericanise must be true or false, got 'no'" in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "x").exists()
    # the CLI options land in the resolved build config
    synth = tmp_path / "synth"
    import datetime as dt

    from volfast.synth import generate_days

    generate_days(dt.date(2024, 3, 4), 1, synth, seed=5, scale="small")
    out = tmp_path / "out"
    r = CliRunner().invoke(
        main,
        [
            "build",
            "--data",
            str(synth),
            "--out",
            str(out),
            "--executor",
            "serial",
            "--quiet",
            "--arbitrage",
            "off",
            "--rate",
            "0.03",
        ],
    )
    assert r.exit_code == 0, r.output
    import json

    resolved = json.loads((out / "build-config.json").read_text())
    assert resolved["surfaces"]["arbitrage"] == "off" and resolved["surfaces"]["rate"] == 0.03
    fw = volfast.surface.read_output(out, "forwards").to_pandas()
    ok = fw.status == ForwardStatus.OK
    assert ok.any()
    np.testing.assert_array_equal(fw.discount_factor[ok], np.exp(-0.03 * fw.expiry_years[ok]))


def test_quick_metadata_agrees_with_the_databento_decoder(shared_dbn: Path) -> None:
    from volfast.io.dbn import DBNFile, DBNReadError, _quick_metadata

    n = 0
    for p in sorted(shared_dbn.rglob("*.dbn*")):
        try:
            f = DBNFile(p)
        except DBNReadError:
            with pytest.raises(DBNReadError):
                _quick_metadata(p)
            continue
        assert _quick_metadata(p) == (f.dataset, f.schema, f.start_ns, f.end_ns), p.name
        n += 1
    assert n > 50


def test_build_reads_api_named_opra_files(shared_dbn: Path, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    qqq = (
        shared_dbn
        / "derived_from_bentoclient"
        / "opra-pillar.QQQ.OPT.20250428T142952-143002Z.cbbo-1s.v3.dbn.zst"
    )
    shutil.copy(qqq, data / API_NAME)
    toml = tmp_path / "b.toml"
    toml.write_text('[snapshot]\ncut = "10:30"\n')
    out = tmp_path / "out"
    r = CliRunner().invoke(
        main,
        [
            "build",
            "--data",
            str(data),
            "--out",
            str(out),
            "--config",
            str(toml),
            "--executor",
            "serial",
            "--quiet",
        ],
    )
    assert r.exit_code == 0, r.output
    days = volfast.surface.read_output(out, "days").to_pandas()
    assert days.date.astype(str).tolist() == ["2025-04-28"]
    import json

    counts = json.loads(days.counts.iloc[0])
    assert counts["exercise"] == "american"  # OPRA metadata -> American handling (exercise = "auto")
    assert counts["expiries_with_forward"] >= 3


def test_csv_with_a_byte_order_mark_and_padded_headers(tmp_path: Path) -> None:
    f = _synthetic_chain(expiries=(0.5,))[["expiration", "strike", "cp", "bid", "ask"]]
    f.columns = [" Expiration", "STRIKE ", "CP", "Bid", "Ask"]
    p = tmp_path / "excel.csv"
    f.to_csv(p, index=False, encoding="utf-8-sig")
    day = from_quotes(p, asof=ASOF, rate=R)
    assert day.counts["input"]["rows_used"] == len(f) and day.forwards.num_rows == 1


def test_replace_keeps_the_arbitrage_setting() -> None:
    import dataclasses

    for mode in ("enforce", "check", "off"):
        c = dataclasses.replace(SurfaceConfig(arbitrage=mode), rate=0.01)
        assert c.arbitrage == mode and c.rate == 0.01
    assert dataclasses.replace(SurfaceConfig(arbitrage="off"), arbitrage="enforce").arbitrage == "enforce"


def test_is_call_column_and_several_underlyings() -> None:
    a = _synthetic_chain(expiries=(0.5, 1.0))
    b = a.copy()
    a["underlying"], b["underlying"] = "AAA", "BBB"
    both = pd.concat([a, b], ignore_index=True)
    both["is_call"] = both.pop("cp").eq("C")
    day = from_quotes(both, asof=ASOF, rate=R)
    fw = day.forwards.to_pandas()
    assert sorted(zip(fw.underlying, fw.expiry_years.round(3), strict=True)) == sorted(
        (u, round(t, 3)) for u in ("AAA", "BBB") for t in a["T"].unique()
    )
    assert (fw.status == ForwardStatus.OK).all()
    both["is_call"] = both["is_call"].map({True: "true", False: "false"})
    both.loc[5, "is_call"] = "maybe"
    with pytest.raises(ChainError, match=r"column 'is_call', row 6: 'maybe' is not a boolean"):
        from_quotes(both, asof=ASOF)
