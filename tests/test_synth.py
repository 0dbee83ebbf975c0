"""Tests of ``volfast.synth``: the synthetic ES market written as Databento DBN files, with ground truth.

Ground truth first: the files read back with ``databento``, the truth is arbitrage-free and agrees with the
quotes at the cut, and everything is a pure function of (seed, date).
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import warnings
from pathlib import Path

import databento as db
import databento_dbn as dbn
import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import volfast
from volfast.cli import main
from volfast.synth import calendar as cal
from volfast.synth.config import SynthConfig
from volfast.synth.dbn import BBO_DTYPE, MBP1_DTYPE, OHLCV_DTYPE, UNDEF_PRICE
from volfast.synth.generate import (
    TRUTH_SCHEMA,
    file_names,
    generate_day,
    generate_days,
    round_down_tick,
    round_up_tick,
    truth_path,
)
from volfast.synth.state import state_path
from volfast.synth.surface import SSVISurface

START = dt.date(2024, 1, 2)
SEED = 11
SCHEMAS = ("definition", "mbp-1", "bbo-1m", "ohlcv-1m")


@pytest.fixture(scope="module")
def five_days(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("synth5")
    return out, generate_days(START, 5, out, seed=SEED)


def _store(path: Path) -> db.DBNStore:
    """Read a DBN file with databento. ``DBNStore.from_file`` keeps its file open until garbage
    collection (a ResourceWarning, an error under this suite's warning filter), so tests read the bytes;
    ``test_files_read_back_with_databento`` covers ``from_file`` itself."""
    return db.DBNStore.from_bytes(path.read_bytes())


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _truth(out: Path, day: dt.date):
    return pq.read_table(truth_path(out, day)).to_pandas()


# --------------------------------------------------------------------------- DBN layout


def test_record_dtypes_match_databento_dbn_bytes() -> None:
    m = dbn.MBP1Msg(
        publisher_id=1,
        instrument_id=7,
        ts_event=11,
        price=4_800_250_000_000,
        size=3,
        action=dbn.Action.ADD,
        side=dbn.Side.BID,
        depth=0,
        ts_recv=13,
        flags=dbn.F_LAST,
        ts_in_delta=17,
        sequence=19,
        levels=dbn.BidAskPair(
            bid_px=4_800_250_000_000, ask_px=UNDEF_PRICE, bid_sz=5, ask_sz=0, bid_ct=2, ask_ct=0
        ),
    )
    rec = np.zeros(1, MBP1_DTYPE)
    for name, value in [
        ("length", 20),
        ("rtype", 1),
        ("publisher_id", 1),
        ("instrument_id", 7),
        ("ts_event", 11),
        ("price", 4_800_250_000_000),
        ("size", 3),
        ("action", b"A"),
        ("side", b"B"),
        ("flags", dbn.F_LAST),
        ("ts_recv", 13),
        ("ts_in_delta", 17),
        ("sequence", 19),
        ("bid_px_00", 4_800_250_000_000),
        ("ask_px_00", UNDEF_PRICE),
        ("bid_sz_00", 5),
        ("bid_ct_00", 2),
    ]:
        rec[name] = value
    assert rec.tobytes() == bytes(m)
    b = dbn.BBOMsg(
        rtype=dbn.RType.BBO_1M,
        publisher_id=1,
        instrument_id=7,
        ts_event=11,
        price=UNDEF_PRICE,
        size=0,
        side=dbn.Side.NONE,
        ts_recv=60,
        flags=dbn.F_LAST,
        sequence=3,
        levels=dbn.BidAskPair(bid_px=1, ask_px=2, bid_sz=3, ask_sz=4, bid_ct=5, ask_ct=6),
    )
    rb = np.zeros(1, BBO_DTYPE)
    for name, value in [
        ("length", 20),
        ("rtype", 196),
        ("publisher_id", 1),
        ("instrument_id", 7),
        ("ts_event", 11),
        ("price", UNDEF_PRICE),
        ("side", b"N"),
        ("flags", dbn.F_LAST),
        ("ts_recv", 60),
        ("sequence", 3),
        ("bid_px_00", 1),
        ("ask_px_00", 2),
        ("bid_sz_00", 3),
        ("ask_sz_00", 4),
        ("bid_ct_00", 5),
        ("ask_ct_00", 6),
    ]:
        rb[name] = value
    assert rb.tobytes() == bytes(b)
    o = dbn.OHLCVMsg(
        rtype=dbn.RType.OHLCV_1M,
        publisher_id=1,
        instrument_id=7,
        ts_event=60,
        open=1,
        high=4,
        low=0,
        close=2,
        volume=9,
    )
    ro = np.zeros(1, OHLCV_DTYPE)
    for name, value in [
        ("length", 14),
        ("rtype", 33),
        ("publisher_id", 1),
        ("instrument_id", 7),
        ("ts_event", 60),
        ("open", 1),
        ("high", 4),
        ("low", 0),
        ("close", 2),
        ("volume", 9),
    ]:
        ro[name] = value
    assert ro.tobytes() == bytes(o)


def test_files_read_back_with_databento(five_days: tuple[Path, list]) -> None:
    out, results = five_days
    day = results[0].date
    names = file_names(day)
    assert names["mbp-1"] == "glbx-mdp3-20240102.mbp-1.dbn.zst"
    start_ns, end_ns = cal.session_bounds_ns(day)
    expected_schema = {
        "definition": "definition",
        "mbp-1": "mbp-1",
        "bbo-1m": "bbo-1m",
        "ohlcv-1m": "ohlcv-1m",
    }
    for schema in SCHEMAS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            store = db.DBNStore.from_file(out / names[schema])
            meta = store.metadata
            del store
            gc.collect()
        assert meta.schema is not None
        store = _store(out / names[schema])
        assert store.metadata.version == 3
        assert store.metadata.dataset == "GLBX.MDP3"
        assert str(store.schema) == expected_schema[schema]
        arr = store.to_ndarray()
        assert len(arr) == results[0].counts[schema]
        assert arr.dtype.itemsize in (80, 56, 520)
        ts = arr["ts_recv"] if "ts_recv" in arr.dtype.names else arr["ts_event"]
        assert ts.min() >= start_ns and ts.max() <= end_ns + 60 * 10**9
        assert np.all(np.diff(ts.astype(np.int64)) >= 0), f"{schema} not sorted by time"
        df = store.to_df()
        assert df["symbol"].notna().all(), f"{schema}: symbology does not map every record"

    defs = _store(out / names["definition"]).to_df()
    fut = defs[defs.instrument_class == "F"]
    opt = defs[defs.instrument_class.isin(["C", "P"])]
    assert set(fut.raw_symbol) == {"ESH4", "ESM4", "ESU4", "ESZ4", "ESH5", "ESM5"}
    assert (fut.security_type == "FUT").all() and (opt.security_type == "OOF").all()
    assert fut.strike_price.isna().all()  # UNDEF strike on futures decodes to NaN
    assert (opt.strike_price % 25 == 0).all() and (opt.strike_price > 0).all()
    assert (
        (defs.unit_of_measure_qty == 50).all()
        and (defs.currency == "USD").all()
        and (defs.asset == "ES").all()
    )
    assert (fut.min_price_increment == 0.25).all() and (opt.min_price_increment == 0.05).all()
    assert set(opt.underlying) <= set(fut.raw_symbol)
    roots = {s.split()[0] for s in opt.raw_symbol}
    assert {"ESH4", "EWF4"} <= roots and any(r.startswith("EW1") for r in roots)
    assert opt.raw_symbol.str.fullmatch(r"(ES|EW\d?)[FGHJKMNQUVXZ]\d [CP]\d+").all()
    # quarterly futures expire 09:30 New York on the third Friday; options 15:00 Chicago
    esh4 = fut[fut.raw_symbol == "ESH4"].expiration.iloc[0]
    assert esh4.tz_convert("America/New_York").strftime("%Y-%m-%d %H:%M") == "2024-03-15 09:30"
    assert (opt.expiration.dt.tz_convert("America/Chicago").dt.strftime("%H:%M") == "15:00").all()

    raw = _store(out / names["mbp-1"]).to_ndarray()
    assert (raw["ask_px_00"] == UNDEF_PRICE).any() and (raw["bid_px_00"] == UNDEF_PRICE).any()
    assert np.all(raw["bid_sz_00"][raw["bid_px_00"] == UNDEF_PRICE] == 0)
    px = raw["bid_px_00"][raw["bid_px_00"] != UNDEF_PRICE]
    assert np.all(px % 50_000_000 == 0)  # fixed-point 1e-9 on the 0.05 ladder
    big = px[px >= 5_000_000_000 + 250_000_000]
    assert np.all(big % 250_000_000 == 0)  # 0.25 ticks above 5.00
    ohlcv = _store(out / names["ohlcv-1m"]).to_ndarray()
    assert np.all(ohlcv["low"] <= ohlcv["open"]) and np.all(ohlcv["open"] <= ohlcv["high"])
    assert np.all(ohlcv["volume"] > 0)


def test_instrument_ids_stable_across_days(five_days: tuple[Path, list]) -> None:
    out, results = five_days
    maps = []
    for r in results[:2]:
        defs = _store(out / file_names(r.date)["definition"]).to_ndarray()
        maps.append(dict(zip(defs["raw_symbol"].tolist(), defs["instrument_id"].tolist(), strict=True)))
    common = set(maps[0]) & set(maps[1])
    assert len(common) > 100
    assert all(maps[0][s] == maps[1][s] for s in common)
    assert len(set(maps[0].values())) == len(maps[0])


# --------------------------------------------------------------------------- determinism


def test_deterministic_and_sub_range_equal(five_days: tuple[Path, list], tmp_path: Path) -> None:
    out, results = five_days
    day3 = results[2].date
    generate_day(day3, tmp_path / "alone", seed=SEED)
    for name in file_names(day3).values():
        assert _sha(tmp_path / "alone" / name) == _sha(out / name), name
    assert _truth(tmp_path / "alone", day3).equals(_truth(out, day3))
    generate_day(day3, tmp_path / "other", seed=SEED + 1)
    name = file_names(day3)["mbp-1"]
    assert _sha(tmp_path / "other" / name) != _sha(out / name)


def test_state_path_independent_of_range() -> None:
    cfg = SynthConfig()
    long = state_path(dt.date(2024, 2, 1), SEED, cfg)
    short = state_path(dt.date(2024, 1, 10), SEED, cfg)
    assert all(long[d] == s for d, s in short.items())
    with pytest.raises(ValueError, match="epoch"):
        state_path(dt.date(2019, 6, 3), SEED, cfg)


# --------------------------------------------------------------------------- calendar


@pytest.mark.parametrize(
    ("day", "trades"),
    [
        (dt.date(2024, 1, 1), False),  # New Year
        (dt.date(2024, 1, 15), False),  # MLK
        (dt.date(2024, 2, 19), False),  # Presidents
        (dt.date(2024, 3, 29), False),  # Good Friday
        (dt.date(2024, 5, 27), False),  # Memorial
        (dt.date(2024, 6, 19), False),  # Juneteenth
        (dt.date(2024, 7, 4), False),
        (dt.date(2024, 9, 2), False),  # Labor
        (dt.date(2024, 11, 28), False),  # Thanksgiving
        (dt.date(2024, 12, 25), False),
        (dt.date(2021, 12, 24), False),  # Christmas on Saturday -> Friday
        (dt.date(2021, 12, 31), True),  # New Year on Saturday is not observed
        (dt.date(2022, 6, 20), False),  # Juneteenth on Sunday -> Monday
        (dt.date(2021, 6, 18), True),  # no Juneteenth before 2022
        (dt.date(2025, 4, 18), False),  # Good Friday 2025
        (dt.date(2024, 1, 6), False),  # Saturday
        (dt.date(2024, 3, 28), True),
    ],
)
def test_holidays(day: dt.date, trades: bool) -> None:
    assert cal.is_trading_day(day) is trades


def test_generated_days_skip_holidays(five_days: tuple[Path, list]) -> None:
    days = cal.trading_days(dt.date(2024, 1, 12), 3)
    assert days == [dt.date(2024, 1, 12), dt.date(2024, 1, 16), dt.date(2024, 1, 17)]
    _, results = five_days
    assert [r.date for r in results] == [dt.date(2024, 1, d) for d in (2, 3, 4, 5, 8)]


@given(st.integers(min_value=1990, max_value=2100))
def test_easter_is_a_sunday_in_spring(year: int) -> None:
    e = cal.easter_sunday(year)
    assert e.weekday() == 6 and dt.date(year, 3, 22) <= e <= dt.date(year, 4, 25)


def test_cut_time_across_dst() -> None:
    before, after = dt.date(2024, 3, 8), dt.date(2024, 3, 11)  # US DST starts 2024-03-10
    for day in (before, after):
        local = dt.datetime.fromtimestamp(cal.cut_time_ns(day) / 1e9, tz=cal.NEW_YORK)
        assert (local.hour, local.minute) == (15, 48)
    utc_b = dt.datetime.fromtimestamp(cal.cut_time_ns(before) / 1e9, tz=cal.UTC)
    utc_a = dt.datetime.fromtimestamp(cal.cut_time_ns(after) / 1e9, tz=cal.UTC)
    assert (utc_b.hour, utc_a.hour) == (20, 19)
    # the session opens 17:00 Chicago the evening before: 23:00 UTC in CST, 22:00 UTC in CDT; 23 hours long
    for day, open_utc in ((before, 23), (after, 22)):
        s, e = cal.session_bounds_ns(day)
        assert dt.datetime.fromtimestamp(s / 1e9, tz=cal.UTC).hour == open_utc
        assert (e - s) // 10**9 == 23 * 3600


def test_front_future_rolls_eight_days_before_expiry() -> None:
    assert cal.front_future(dt.date(2024, 3, 6)) == (2024, 3)  # 9 days before 2024-03-15
    assert cal.front_future(dt.date(2024, 3, 7)) == (2024, 6)


# --------------------------------------------------------------------------- true surface


@settings(max_examples=40, deadline=None)
@given(
    vol=st.floats(0.06, 1.2),
    slope=st.floats(-0.9, 0.6),
    skew=st.floats(0.1, 2.0),
    T=st.floats(1 / 365, 3.0),
)
def test_ssvi_free_of_static_arbitrage(vol: float, slope: float, skew: float, T: float) -> None:
    cfg = SynthConfig()
    surf = SSVISurface(
        vol,
        vol * np.exp(slope),
        cfg.term_tau,
        -np.tanh(skew),
        min(cfg.ssvi_eta, 1.98 / (1 + np.tanh(skew))),
        cfg.ssvi_gamma,
    )
    assert surf.eta * (1 + abs(surf.rho)) <= 2.0
    k = np.linspace(-1.5, 1.0, 801)
    assert surf.butterfly_g(k, T).min() >= -1e-6
    Ts = np.linspace(1 / 365, 3.0, 200)
    w = surf.total_variance(k[:, None], Ts[None, :])
    assert np.all(np.diff(w, axis=1) > 0)  # calendar: total variance increasing in T at every k


def test_truth_surfaces_arbitrage_free(five_days: tuple[Path, list]) -> None:
    out, results = five_days
    for r in results:
        t = _truth(out, r.date)
        e = t[t.kind == "expiry"].sort_values("expiry_years")
        assert (np.diff(e.ssvi_theta.to_numpy()) > 0).all()
        assert ((e.ssvi_eta * (1 + e.ssvi_rho.abs())) <= 2).all()
        assert ((e.ssvi_gamma > 0) & (e.ssvi_gamma <= 0.5)).all()
        o = t[t.kind == "option"]
        w_true = o.vol**2 * o.expiry_years
        for _, row in e.iterrows():
            sub = o[o.expiration == row.expiration]
            surf = SSVISurface(1, 1, 1, row.ssvi_rho, row.ssvi_eta, row.ssvi_gamma)
            p = row.ssvi_phi * sub.log_moneyness
            w = (
                0.5
                * row.ssvi_theta
                * (1 + row.ssvi_rho * p + np.sqrt((p + row.ssvi_rho) ** 2 + 1 - row.ssvi_rho**2))
            )
            np.testing.assert_allclose(w, w_true[sub.index], rtol=1e-12)
            assert surf.rho == row.ssvi_rho


def test_truth_schema_forward_and_prices(five_days: tuple[Path, list]) -> None:
    out, results = five_days
    table = pq.read_table(truth_path(out, results[0].date))
    assert table.schema.equals(TRUTH_SCHEMA)
    t = table.to_pandas()
    assert set(t.kind) == {"option", "expiry", "future", "state"}
    o, e, f = t[t.kind == "option"], t[t.kind == "expiry"], t[t.kind == "future"]
    # forward of an option = price of its underlying future; equal across options sharing it
    fwd = dict(zip(f.raw_symbol, f.forward, strict=True))
    np.testing.assert_allclose(o.forward, o.underlying.map(fwd), rtol=0, atol=0)
    np.testing.assert_allclose(e.discount_factor, np.exp(-t[t.kind == "state"].rate.iloc[0] * e.expiry_years))
    cut = cal.cut_time_ns(results[0].date)
    np.testing.assert_allclose(
        o.expiry_years, (o.expiration.astype("int64") - cut) / (365 * 86400e9), rtol=1e-12
    )
    price = volfast.black76_price(
        forward=o.forward.to_numpy(),
        strike=o.strike.to_numpy(),
        expiry_years=o.expiry_years.to_numpy(),
        vol=o.vol.to_numpy(),
        is_call=o.is_call.to_numpy(bool),
        discount_factor=o.discount_factor.to_numpy(),
    )
    np.testing.assert_allclose(o.price, price, rtol=1e-12)
    # put-call parity on the truth, strike by strike
    c = o[o.is_call.astype(bool)].set_index(["expiration", "strike"])
    p = o[~o.is_call.astype(bool)].set_index(["expiration", "strike"])
    j = c.join(p, lsuffix="_c", rsuffix="_p", how="inner")
    np.testing.assert_allclose(
        j.price_c - j.price_p, j.discount_factor_c * (j.forward_c - j.index.get_level_values(1)), atol=1e-8
    )


# --------------------------------------------------------------------------- truth vs quotes


def _last_quotes_at_cut(out: Path, day: dt.date):
    import pandas as pd

    raw = _store(out / file_names(day)["mbp-1"]).to_ndarray()
    pre = raw[raw["ts_recv"] < cal.cut_time_ns(day)]
    q = pd.DataFrame({k: pre[k] for k in ("instrument_id", "bid_px_00", "ask_px_00", "ts_recv")})
    return q.groupby("instrument_id").last()


def test_truth_consistent_with_quotes(five_days: tuple[Path, list]) -> None:
    out, results = five_days
    inside_all, errs = [], []
    for r in results:
        if r.thin_day:
            continue
        t = _truth(out, r.date)
        o = t[t.kind == "option"].set_index("instrument_id")
        j = o.join(_last_quotes_at_cut(out, r.date), how="inner")
        live = ~j.stale.astype(bool)
        two = live & (j.bid_px_00 != UNDEF_PRICE) & (j.ask_px_00 != UNDEF_PRICE) & (j.bid_px_00 < j.ask_px_00)
        bid, ask = j.bid_px_00[two] / 1e9, j.ask_px_00[two] / 1e9
        inside_all.append(((bid <= j.price[two] + 1e-9) & (j.price[two] <= ask + 1e-9)).to_numpy())
        mid = ((bid + ask) / 2).to_numpy()
        s = j[two]
        iv = volfast.implied_vol(
            mid,
            forward=s.forward.to_numpy(),
            strike=s.strike.to_numpy(),
            expiry_years=s.expiry_years.to_numpy(),
            is_call=s.is_call.to_numpy(bool),
            discount_factor=s.discount_factor.to_numpy(),
        ).iv
        near = (np.abs(s.log_moneyness) < 0.03).to_numpy() & (s.expiry_years > 0.02).to_numpy()
        errs.append(np.abs(iv[near] - s.vol.to_numpy()[near]))
    inside = np.concatenate(inside_all)
    err = np.concatenate(errs)
    assert inside.size > 500 and inside.mean() > 0.9
    assert err.size > 50 and np.median(err) < 0.003 and np.percentile(err, 90) < 0.01


def test_noise_features_present(five_days: tuple[Path, list]) -> None:
    out, results = five_days
    import pandas as pd

    t = pd.concat([_truth(out, r.date) for r in results])
    o = t[t.kind == "option"]
    for flag in ("missing", "stale", "crossed", "one_sided"):
        assert 0 < o[flag].astype(bool).sum() < 0.2 * len(o), flag
    # the labels describe the files: recompute them from the mbp-1 stream for one day
    day = results[1].date
    q = _last_quotes_at_cut(out, day)
    o1 = _truth(out, day)
    o1 = o1[o1.kind == "option"].set_index("instrument_id").join(q, how="left")
    crossed = (o1.bid_px_00 >= o1.ask_px_00) & (o1.bid_px_00 != UNDEF_PRICE) & (o1.ask_px_00 != UNDEF_PRICE)
    assert (crossed == o1.crossed.astype(bool)).all()
    assert (o1.bid_px_00.isna() == o1.missing.astype(bool)).all()
    stale = o1.ts_recv < cal.cut_time_ns(day) - 3600 * 10**9
    assert (stale.fillna(False) == o1.stale.astype(bool)).all()
    # options worth less than one 0.05 tick have no bid (an empty side); near-the-money ones have one
    quoted = o1.bid_px_00.notna() & ~o1.crossed.astype(bool) & ~o1.stale.astype(bool)
    cheap = o1[quoted & (o1.price < 0.04)]
    assert len(cheap) > 0 and (cheap.bid_px_00 == UNDEF_PRICE).all()
    atm = o1[quoted & ~o1.one_sided.astype(bool) & (o1.log_moneyness.abs() < 0.02)]
    assert len(atm) > 10 and (atm.bid_px_00 != UNDEF_PRICE).all()


def test_thin_day(tmp_path: Path) -> None:
    cfg = SynthConfig(p_thin_day=1.0)
    res = generate_day(START, tmp_path, seed=SEED, config=cfg)
    t = _truth(tmp_path, START)
    assert res.thin_day and bool(t[t.kind == "state"].thin_day.iloc[0])
    o = t[t.kind == "option"]
    assert o.missing.astype(bool).mean() > 0.9


@given(st.floats(0.0, 2000.0))
def test_tick_rounding(x: float) -> None:
    b, a = round_down_tick(np.array([x]))[0], round_up_tick(np.array([x]))[0]
    assert b <= x + 1e-9 and a >= x - 1e-9
    for p in (b, a):
        if p > 0:
            tick = 0.05 if p < 5.0 else 0.25
            assert abs(p / tick - round(p / tick)) < 1e-6


# --------------------------------------------------------------------------- bad input


def test_cli_bad_inputs(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["synth", "--start", "2024-01-02", "--days", "0", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--days" in r.output and "at least 1" in r.output
    r = runner.invoke(
        main, ["synth", "--start", "2024-01-02", "--out", str(tmp_path / "o"), "--scale", "huge"]
    )
    assert r.exit_code == 2 and "huge" in r.output
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    r = runner.invoke(main, ["synth", "--start", "2024-01-02", "--out", str(afile)])
    assert r.exit_code == 2 and "not a directory" in r.output
    assert afile.read_text() == "keep me"
    r = runner.invoke(main, ["synth", "--start", "2024-13-40", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "YYYY-MM-DD" in r.output
    r = runner.invoke(main, ["synth", "--start", "2019-06-03", "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "epoch" in r.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").glob("*.dbn.zst"))


def test_cli_non_trading_start_moves_forward(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        main, ["synth", "--start", "2024-01-01", "--days", "1", "--out", str(tmp_path), "--seed", "3"]
    )
    assert r.exit_code == 0, r.output
    # the first trading day after it (the files' names and the truth are the result, not the notice)
    assert sorted(p.name for p in tmp_path.glob("*.dbn.zst")) == sorted(file_names(START).values())
    assert truth_path(tmp_path, START).exists()


def test_api_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        generate_days(START, 0, tmp_path, seed=1)
    with pytest.raises(ValueError, match="unknown scale"):
        SynthConfig.for_scale("medium")
    with pytest.raises(ValueError, match="not a CME trading day"):
        generate_days(dt.date(2024, 1, 1), 1, tmp_path, seed=1)
    with pytest.raises(ValueError, match="not a CME trading day"):
        generate_day(dt.date(2024, 3, 29), tmp_path, seed=1)
    afile = tmp_path / "f"
    afile.write_bytes(b"x")
    with pytest.raises(NotADirectoryError):
        generate_day(START, afile, seed=1)
