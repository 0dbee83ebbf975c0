"""One synthetic ES trading day -> Databento DBN files + ground-truth Parquet; and the multi-day driver.

Per trading date ``YYYYMMDD`` in the output folder::

    glbx-mdp3-YYYYMMDD.definition.dbn.zst   futures + options definitions
    glbx-mdp3-YYYYMMDD.mbp-1.dbn.zst        top-of-book updates, futures and options, sorted by ts_recv
    glbx-mdp3-YYYYMMDD.bbo-1m.dbn.zst       BBO at each minute end, for instruments updated in that minute
    glbx-mdp3-YYYYMMDD.ohlcv-1m.dbn.zst     1-minute bars of the futures (minutes with volume)
    truth/date=YYYY-MM-DD/part-0.parquet    ground truth (schema: TRUTH_SCHEMA)

A file holds the CME trading date's Globex session (17:00 CT the evening before to 16:00 CT), not a UTC
day as Databento's ``split_duration='day'`` batches do; the metadata's start/end are the session bounds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import databento_dbn as dbn
import numpy as np
import pyarrow as pa

import volfast
from volfast.synth import calendar as cal
from volfast.synth import dbn as w
from volfast.synth.chain import Chain, build_chain, future_price
from volfast.synth.config import SynthConfig
from volfast.synth.state import DayState, day_seed_sequences, state_path
from volfast.synth.surface import SSVISurface

NS = cal.NS_PER_SECOND
FUT_TICK = 0.25
STALE_AFTER_NS = 3600 * NS  # a quote last updated more than an hour before the cut is flagged stale
CUT_REFRESH_NS = 2 * NS  # live quotes get a maker refresh (re-priced on the futures tick) just before the cut

# the date is not a column: it is the partition folder (truth/date=YYYY-MM-DD)
TRUTH_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),  # 'option' | 'expiry' | 'future' | 'state'
        ("cut_ts", pa.timestamp("ns", tz="UTC")),
        ("instrument_id", pa.uint32()),  # option / future rows
        ("raw_symbol", pa.string()),  # option / future rows; the series root on expiry rows
        ("underlying", pa.string()),  # option / expiry rows: the future's symbol
        ("expiration", pa.timestamp("ns", tz="UTC")),
        ("expiry_years", pa.float64()),  # ACT/365 from the cut
        ("strike", pa.float64()),
        ("is_call", pa.bool_()),
        ("forward", pa.float64()),  # true forward = true underlying futures price at the cut
        ("discount_factor", pa.float64()),  # exp(-r T)
        ("log_moneyness", pa.float64()),  # log(K / F)
        ("vol", pa.float64()),  # true Black-76 implied vol
        ("price", pa.float64()),  # true Black-76 price (index points)
        ("ssvi_theta", pa.float64()),
        ("ssvi_phi", pa.float64()),
        ("ssvi_rho", pa.float64()),
        ("ssvi_eta", pa.float64()),
        ("ssvi_gamma", pa.float64()),
        ("n_updates", pa.int64()),  # option / future rows: mbp-1 records in the session
        ("last_update_ts", pa.timestamp("ns", tz="UTC")),  # last ts_recv before the cut (null: none)
        ("missing", pa.bool_()),  # no quote before the cut
        ("stale", pa.bool_()),  # last quote more than an hour before the cut
        ("crossed", pa.bool_()),  # last quote before the cut has bid >= ask
        ("one_sided", pa.bool_()),  # last quote before the cut lacks a side
        ("atm_vol", pa.float64()),  # state row: short-dated ATM vol level
        ("long_vol", pa.float64()),  # state row: long-run ATM vol level
        ("term_slope", pa.float64()),  # state row: log(long_vol / atm_vol)
        ("skew", pa.float64()),  # state row: SSVI rho of the day
        ("rate", pa.float64()),  # state row: short rate (continuous, ACT/365)
        ("index", pa.float64()),  # state row: cash index level
        ("crash", pa.bool_()),  # state row
        ("thin_day", pa.bool_()),  # state row: too few quotes to build a surface
        ("front_future", pa.string()),  # state row
    ]
)


@dataclasses.dataclass(frozen=True)
class DayResult:
    """What :func:`generate_day` wrote."""

    date: dt.date
    paths: dict[str, Path]
    counts: dict[str, int]
    seconds: float
    thin_day: bool
    crash: bool


def file_names(day: dt.date) -> dict[str, str]:
    """The Databento-style file names of a date, by schema."""
    ymd = day.strftime("%Y%m%d")
    return {s: f"glbx-mdp3-{ymd}.{s}.dbn.zst" for s in ("definition", "mbp-1", "bbo-1m", "ohlcv-1m")}


def truth_path(out_dir: str | os.PathLike[str], day: dt.date) -> Path:
    return Path(out_dir) / "truth" / f"date={day.isoformat()}" / "part-0.parquet"


# --------------------------------------------------------------------------- price ladders


def option_tick(price: np.ndarray) -> np.ndarray:
    """ES option tick: 0.05 below 5.00 index points, 0.25 at and above."""
    return np.where(price < 5.0, 0.05, 0.25)


def round_down_tick(x: np.ndarray) -> np.ndarray:
    """Largest ladder price <= x (bids round down). The 1e-9 guards exact ladder prices."""
    t = option_tick(x)
    return np.floor(x / t + 1e-9) * t


def round_up_tick(x: np.ndarray) -> np.ndarray:
    """Smallest ladder price >= x, at least one 0.05 tick (asks round up)."""
    x = np.maximum(x, 0.05)
    t = np.where(x <= 5.0, 0.05, 0.25)
    return np.ceil(x / t - 1e-9) * t


# --------------------------------------------------------------------------- intraday


def _intensity(start_ns: int, n_sec: int, day: dt.date) -> np.ndarray:
    """Relative quote activity per second of the session: quiet overnight, busy in the US day session,
    busiest in the first and last half hours of it (U shape)."""
    t_ct = np.arange(n_sec, dtype=np.float64)
    rth_open = (cal.to_ns(dt.datetime.combine(day, dt.time(8, 30), tzinfo=cal.CHICAGO)) - start_ns) / NS
    rth_close = (cal.to_ns(dt.datetime.combine(day, dt.time(15, 15), tzinfo=cal.CHICAGO)) - start_ns) / NS
    lam = np.ones(n_sec)
    rth = (t_ct >= rth_open) & (t_ct < rth_close)
    lam[rth] = 5.0
    lam[rth & (t_ct < rth_open + 1800)] = 10.0
    lam[rth & (t_ct >= rth_close - 1800)] = 10.0
    return lam


def _sample_times(
    rng: np.random.Generator, cum: np.ndarray, counts: np.ndarray, lo_s: np.ndarray, hi_s: np.ndarray
) -> np.ndarray:
    """Update times (seconds from session start, float) for instruments with ``counts`` updates each,
    drawn from the activity profile ``cum`` (cumulative intensity per second) within ``[lo_s, hi_s)``."""
    owner = np.repeat(np.arange(counts.size), counts)
    c_lo = np.interp(lo_s, np.arange(cum.size), cum)[owner]
    c_hi = np.interp(hi_s, np.arange(cum.size), cum)[owner]
    u = c_lo + (c_hi - c_lo) * rng.random(owner.size)
    t = np.interp(u, cum, np.arange(cum.size, dtype=np.float64))
    return np.clip(t, lo_s[owner], np.nextafter(hi_s[owner], 0))


def _index_path(
    rng: np.random.Generator, prev: DayState, state: DayState, n_sec: int, cut_s: int, config: SynthConfig
) -> np.ndarray:
    """Log cash-index per second: a Brownian bridge from the previous cut's level to today's cut level,
    then free Brownian motion to the session end."""
    sigma = config.realized_to_implied * prev.atm_vol
    step = sigma * math.sqrt((1.0 / 252.0) / max(cut_s, 1))
    W = np.concatenate([[0.0], np.cumsum(rng.standard_normal(n_sec - 1) * step)])
    a, b = math.log(prev.index), math.log(state.index)
    s = np.arange(n_sec, dtype=np.float64)
    frac = np.minimum(s / cut_s, 1.0)
    x = a + (b - a) * frac + W - frac * W[cut_s]
    after = s > cut_s
    x[after] = b + W[after] - W[cut_s]
    return x


# --------------------------------------------------------------------------- the day


def generate_day(
    day: dt.date,
    out_dir: str | os.PathLike[str],
    *,
    seed: int,
    config: SynthConfig | None = None,
    states: dict[dt.date, DayState] | None = None,
) -> DayResult:
    """Write one trading date's DBN files and truth into ``out_dir`` (created if absent).

    Parameters
    ----------
    day : trading date (raises ``ValueError`` if it does not trade).
    out_dir : output folder; must not be an existing file.
    seed : master seed; the day's randomness is ``SeedSequence([seed, yyyymmdd])`` only.
    config : the market (default ``SynthConfig()``, the small scale).
    states : a precomputed state path covering ``day`` and the trading day before (an optimisation for
        multi-day runs; results are identical without it).
    """
    t0 = time.perf_counter()
    config = config or SynthConfig()
    if not cal.is_trading_day(day):
        raise ValueError(f"{day.isoformat()} is not a CME trading day (weekend or holiday)")
    out = _prepare_out_dir(out_dir)
    if states is None or day not in states:
        states = state_path(day, seed, config)
    state = states[day]
    prev_day = cal.previous_trading_day(day)
    prev = states.get(prev_day, state)
    _, ss_chain, ss_quotes = day_seed_sequences(seed, day)
    rng_c = np.random.default_rng(ss_chain)
    rng_q = np.random.default_rng(ss_quotes)

    start_ns, end_ns = cal.session_bounds_ns(day)
    cut_ns = cal.cut_time_ns(day)
    n_sec = (end_ns - start_ns) // NS
    cut_s = (cut_ns - start_ns) // NS
    carry = state.rate - config.dividend_yield
    chain = build_chain(day, config, index=state.index, carry=carry)
    surface = SSVISurface.from_state(state, config)
    thin = bool(rng_c.random() < config.p_thin_day)
    fy, fm = cal.front_future(day, config.roll_days)
    front_symbol = cal.future_symbol(fy, fm)

    log_s = _index_path(rng_q, prev, state, n_sec, cut_s, config)
    lam = _intensity(start_ns, n_sec, day)
    cum = np.concatenate([[0.0], np.cumsum(lam)])[:n_sec]

    # ---- truth at the cut
    fut_cut = np.array([future_price(f, index=state.index, carry=carry, at_ns=cut_ns) for f in chain.futures])
    exp_ns = np.array([e.expiration_ns for e in chain.expiries], dtype=np.int64)
    exp_T = (exp_ns - cut_ns) / cal.NS_PER_YEAR
    exp_F = fut_cut[[e.underlying for e in chain.expiries]]
    exp_D = np.exp(-state.rate * exp_T)
    e = chain.opt_expiry
    K = chain.opt_strike
    T_cut, F_cut, D_cut = exp_T[e], exp_F[e], exp_D[e]
    k_cut = np.log(K / F_cut)
    vol_cut = surface.implied_vol(k_cut, T_cut)
    price_cut = np.asarray(
        volfast.black76_price(
            forward=F_cut,
            strike=K,
            expiry_years=T_cut,
            vol=vol_cut,
            is_call=chain.opt_is_call,
            discount_factor=D_cut,
        )
    )

    # ---- option quote updates
    opt = _option_updates(
        rng_c,
        rng_q,
        chain,
        surface,
        state,
        config,
        thin,
        k_cut,
        vol_cut,
        T_cut,
        start_ns,
        cut_ns,
        end_ns,
        n_sec,
        cum,
        log_s,
        exp_ns,
    )
    fut = _future_updates(
        rng_q, chain, config, front_symbol, start_ns, end_ns, n_sec, cum, log_s, carry, cut_ns
    )
    mbp = _assemble_mbp1(rng_q, [opt, fut])

    # ---- files
    names = file_names(day)
    paths = {k: out / v for k, v in names.items()}
    sym_ids = [(f.raw_symbol, f.instrument_id) for f in chain.futures] + list(
        zip(chain.opt_symbol.tolist(), chain.opt_id.tolist(), strict=True)
    )
    parents = ["ES.FUT", "ES.OPT"]
    metadata = functools.partial(w.metadata, start_ns=start_ns, end_ns=end_ns, day=day)
    defs = _definitions(chain, fut_cut, start_ns)
    w.write_dbn_zst(
        paths["definition"],
        metadata(schema=dbn.Schema.DEFINITION, parents=parents, symbols_to_ids=sym_ids),
        defs,
        config.zstd_level,
    )
    w.write_dbn_zst(
        paths["mbp-1"],
        metadata(schema=dbn.Schema.MBP_1, parents=parents, symbols_to_ids=sym_ids),
        mbp.tobytes(),
        config.zstd_level,
    )
    bbo = _bbo_1m(mbp, start_ns)
    w.write_dbn_zst(
        paths["bbo-1m"],
        metadata(schema=dbn.Schema.BBO_1M, parents=parents, symbols_to_ids=sym_ids),
        bbo.tobytes(),
        config.zstd_level,
    )
    ohlcv = _ohlcv_1m(rng_q, chain, front_symbol, log_s, lam, carry, cut_ns, start_ns, n_sec)
    w.write_dbn_zst(
        paths["ohlcv-1m"],
        metadata(
            schema=dbn.Schema.OHLCV_1M,
            parents=["ES.FUT"],
            symbols_to_ids=[(f.raw_symbol, f.instrument_id) for f in chain.futures],
        ),
        ohlcv.tobytes(),
        config.zstd_level,
    )

    # ---- truth
    diag = _cut_diagnostics(mbp, chain, cut_ns)
    table = _truth_table(
        day,
        chain,
        state,
        surface,
        thin,
        front_symbol,
        cut_ns,
        exp_T,
        exp_F,
        exp_D,
        k_cut,
        vol_cut,
        price_cut,
        fut_cut,
        diag,
    )
    tpath = truth_path(out, day)
    tpath.parent.mkdir(parents=True, exist_ok=True)
    from volfast.io.output import write_parquet_atomic

    write_parquet_atomic(table, tpath)
    paths["truth"] = tpath

    counts = {
        "definition": len(chain.futures) + chain.n_options,
        "options": chain.n_options,
        "futures": len(chain.futures),
        "expiries": len(chain.expiries),
        "mbp-1": int(mbp.size),
        "bbo-1m": int(bbo.size),
        "ohlcv-1m": int(ohlcv.size),
    }
    return DayResult(day, paths, counts, time.perf_counter() - t0, thin, state.crash)


def _prepare_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output path {str(out)!r} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _option_updates(
    rng_c: np.random.Generator,
    rng_q: np.random.Generator,
    chain: Chain,
    surface: SSVISurface,
    state: DayState,
    config: SynthConfig,
    thin: bool,
    k_cut: np.ndarray,
    vol_cut: np.ndarray,
    T_cut: np.ndarray,
    start_ns: int,
    cut_ns: int,
    end_ns: int,
    n_sec: int,
    cum: np.ndarray,
    log_s: np.ndarray,
    exp_ns: np.ndarray,
) -> dict[str, np.ndarray]:
    n = chain.n_options
    z = np.abs(k_cut) / (vol_cut * np.sqrt(T_cut))  # standardised moneyness
    # per-instrument noise labels come from the chain stream, the times and prices from the quote stream
    missing = rng_c.random(n) < config.p_missing
    if thin:
        missing |= rng_c.random(n) >= config.thin_day_quoted
    stale = (rng_c.random(n) < config.p_stale * (1.0 + 0.5 * np.minimum(z, 4.0))) & ~missing
    crossed = (rng_c.random(n) < config.p_crossed) & ~missing & ~stale
    one_sided = (rng_c.random(n) < config.p_one_sided) & ~missing & ~crossed
    cut_s = (cut_ns - start_ns) / NS
    hi = np.full(n, float(n_sec - 1))
    hi[stale] = cut_s - rng_c.uniform(1.5 * 3600, 10 * 3600, stale.sum())
    lo = np.zeros(n)
    expiry_factor = 0.5 + 0.5 * np.exp(-T_cut / 0.25)
    lam = config.option_updates_atm * np.exp(-0.6 * np.minimum(z, 12.0)) * expiry_factor
    counts = rng_q.poisson(lam)
    counts[missing] = 0
    counts[stale] = np.maximum(counts[stale], 1)
    # live quotes: at least one maker refresh in the minutes before the cut
    live = ~missing & ~stale
    refresh = np.where(live, 1 + rng_q.poisson(2.0 * np.exp(-0.3 * np.minimum(z, 12.0))), 0)
    t_main = _sample_times(rng_q, cum, counts, lo, hi)
    own_main = np.repeat(np.arange(n), counts)
    r_lo = np.full(n, cut_s - CUT_REFRESH_NS / NS)
    r_hi = np.full(n, cut_s)
    t_ref = _sample_times(rng_q, cum, refresh, r_lo, r_hi)
    own = np.concatenate([own_main, np.repeat(np.arange(n), refresh)])
    t_s = np.concatenate([t_main, t_ref])
    ts_event = start_ns + np.floor(t_s * NS).astype(np.int64)
    ts_event = np.minimum(ts_event, end_ns - 10_000_000)

    # prices at each update: the surface is fixed in log-moneyness for the day, the forward moves
    e = chain.opt_expiry[own]
    K = chain.opt_strike[own]
    sec = np.clip((ts_event - start_ns) // NS, 0, n_sec - 1)
    # the maker refresh just before the cut is priced on the futures price at the cut, so the quotes that
    # the snapshot keeps and the truth (forward at the cut) describe one market: without this every day
    # carries a common 1-2 s index move (~0.3 bp) that no estimator could remove
    sec[own_main.size :] = min(int(cut_s), n_sec - 1)
    fut_mult = np.array(
        [
            math.exp(
                (state.rate - config.dividend_yield) * max(f.expiration_ns - cut_ns, 0) / cal.NS_PER_YEAR
            )
            for f in chain.futures
        ]
    )
    under = np.array([x.underlying for x in chain.expiries], dtype=np.int64)[e]
    F = np.exp(log_s[sec]) * fut_mult[under]
    T = (exp_ns[e] - ts_event) / cal.NS_PER_YEAR
    k = np.log(K / F)
    vol = surface.implied_vol(k, T)
    D = np.exp(-state.rate * T)
    is_call = chain.opt_is_call[own]
    P = np.asarray(
        volfast.black76_price(
            forward=F, strike=K, expiry_years=T, vol=vol, is_call=is_call, discount_factor=D
        )
    )
    vega = np.asarray(volfast.black76_vega(forward=F, strike=K, expiry_years=T, vol=vol, discount_factor=D))
    zz = np.abs(k) / (vol * np.sqrt(T))
    hs = np.maximum(0.05, config.spread_vol * vega * (1.0 + config.spread_moneyness * zz)) + 0.001 * P
    mid = P + config.mid_noise * hs * rng_q.standard_normal(P.size)
    bid = round_down_tick(mid - hs)
    ask = round_up_tick(mid + hs)
    ask = np.maximum(ask, bid + option_tick(bid))
    bid = np.where(bid < 0.05 - 1e-9, np.nan, bid)  # a zero bid is an empty bid side

    # noise at the cut: the last update before the cut of flagged instruments is crossed / one-sided
    order = np.lexsort((ts_event, own))
    pre = ts_event[order] < cut_ns
    last_pre = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last_pre, own[order][pre], np.flatnonzero(pre))
    idx = order[last_pre[crossed & (last_pre >= 0)]]
    bid[idx] = ask[idx] + option_tick(ask[idx])
    os_idx = order[last_pre[one_sided & (last_pre >= 0)]]
    drop_ask = rng_c.random(os_idx.size) < 0.5
    ask[os_idx[drop_ask]] = np.nan
    bid[os_idx[~drop_ask]] = np.nan
    size_scale = np.exp(-0.3 * np.minimum(zz, 8.0))
    return {
        "instrument_id": chain.opt_id[own],
        "ts_event": ts_event,
        "bid": bid,
        "ask": ask,
        "size_scale": size_scale * 60.0,
    }


def _future_updates(
    rng: np.random.Generator,
    chain: Chain,
    config: SynthConfig,
    front_symbol: str,
    start_ns: int,
    end_ns: int,
    n_sec: int,
    cum: np.ndarray,
    log_s: np.ndarray,
    carry: float,
    cut_ns: int,
) -> dict[str, np.ndarray]:
    nf = len(chain.futures)
    counts = np.array(
        [
            config.front_future_updates if f.raw_symbol == front_symbol else config.back_future_updates
            for f in chain.futures
        ]
    )
    counts = rng.poisson(counts)
    hi = np.array(
        [min(n_sec - 1, (f.expiration_ns - start_ns) / NS) for f in chain.futures], dtype=np.float64
    )
    alive = hi > 0
    counts[~alive] = 0
    hi = np.maximum(hi, 1.0)
    t_s = _sample_times(rng, cum, counts, np.zeros(nf), hi)
    own = np.repeat(np.arange(nf), counts)
    ts_event = start_ns + np.floor(t_s * NS).astype(np.int64)
    mult = np.array(
        [math.exp(carry * max(f.expiration_ns - cut_ns, 0) / cal.NS_PER_YEAR) for f in chain.futures]
    )
    F = np.exp(log_s[np.clip((ts_event - start_ns) // NS, 0, n_sec - 1)]) * mult[own]
    bid = np.floor(F / FUT_TICK) * FUT_TICK
    is_front = np.array([f.raw_symbol == front_symbol for f in chain.futures])[own]
    wide = ~is_front & (rng.random(own.size) < 0.3)
    ask = bid + FUT_TICK * (1 + wide)
    ids = np.array([f.instrument_id for f in chain.futures], dtype=np.uint32)
    return {
        "instrument_id": ids[own],
        "ts_event": ts_event,
        "bid": bid,
        "ask": ask,
        "size_scale": np.where(is_front, 150.0, 15.0),
    }


def _assemble_mbp1(rng: np.random.Generator, parts: list[dict[str, np.ndarray]]) -> np.ndarray:
    """Concatenate update sets, draw sizes, actions, latencies, sort by ts_recv and number them."""
    iid = np.concatenate([p["instrument_id"] for p in parts])
    ts_event = np.concatenate([p["ts_event"] for p in parts])
    bid = np.concatenate([p["bid"] for p in parts])
    ask = np.concatenate([p["ask"] for p in parts])
    scale = np.concatenate([p["size_scale"] for p in parts])
    n = iid.size
    # a few microseconds to milliseconds between the matching engine and Databento's capture
    latency = (rng.lognormal(math.log(2e5), 1.0, n)).astype(np.int64) + 5_000
    ts_recv = ts_event + latency
    order = np.lexsort((iid, ts_recv))
    iid, ts_event, ts_recv, bid, ask, scale = (a[order] for a in (iid, ts_event, ts_recv, bid, ask, scale))
    rec = w.new_records(w.MBP1_DTYPE, n, w.RTYPE_MBP1)
    rec["instrument_id"] = iid
    rec["ts_event"] = ts_event
    rec["ts_recv"] = ts_recv
    rec["ts_in_delta"] = rng.integers(12_000, 26_000, n)
    rec["sequence"] = 1_000_000 + np.cumsum(rng.integers(1, 40, n))
    rec["bid_px_00"] = w.to_fixed(bid)
    rec["ask_px_00"] = w.to_fixed(ask)
    has_bid, has_ask = np.isfinite(bid), np.isfinite(ask)
    bsz = 1 + rng.poisson(scale)
    asz = 1 + rng.poisson(scale)
    rec["bid_sz_00"] = np.where(has_bid, bsz, 0)
    rec["ask_sz_00"] = np.where(has_ask, asz, 0)
    rec["bid_ct_00"] = np.where(has_bid, 1 + rng.binomial(np.maximum(bsz - 1, 0), 0.1), 0)
    rec["ask_ct_00"] = np.where(has_ask, 1 + rng.binomial(np.maximum(asz - 1, 0), 0.1), 0)
    # which side changed and how: adds, cancels, modifies and a few trades (aggressor side)
    side_b = rng.random(n) < 0.5
    side_b = np.where(has_bid & ~has_ask, True, np.where(has_ask & ~has_bid, False, side_b))
    u = rng.random(n)
    action = np.where(u < 0.5, b"A", np.where(u < 0.8, b"C", np.where(u < 0.97, b"M", b"T")))
    trade = (action == b"T") & has_bid & has_ask
    action[(action == b"T") & ~trade] = b"M"
    side = np.where(side_b, b"B", b"A")
    price = np.where(side_b, rec["bid_px_00"], rec["ask_px_00"])
    # a buy aggressor (side B) lifts the ask; a sell aggressor hits the bid
    price = np.where(trade, np.where(side_b, rec["ask_px_00"], rec["bid_px_00"]), price)
    none = ~has_bid & ~has_ask
    side[none] = b"N"
    rec["action"] = action
    rec["side"] = side
    rec["price"] = price
    rec["size"] = np.where(
        trade, 1 + rng.poisson(2.0, n), np.where(side_b, rec["bid_sz_00"], rec["ask_sz_00"])
    )
    rec["flags"] = dbn.F_LAST
    return rec


def _bbo_1m(mbp: np.ndarray, start_ns: int) -> np.ndarray:
    """bbo-1m from the mbp-1 stream: one record per instrument and minute with at least one update,
    stamped at the minute's end (ts_recv), carrying the last book and the last trade in that minute."""
    minute = 60 * NS
    bucket = (mbp["ts_recv"].astype(np.int64) - start_ns) // minute + 1  # interval end index
    # mbp is sorted by ts_recv, so a stable sort by instrument leaves each instrument's minutes in order
    order = np.argsort(mbp["instrument_id"], kind="stable")
    b, iid = bucket[order], mbp["instrument_id"][order]
    last = np.flatnonzero(np.r_[(iid[1:] != iid[:-1]) | (b[1:] != b[:-1]), True])
    src = mbp[order[last]]
    rec = w.new_records(w.BBO_DTYPE, last.size, w.RTYPE_BBO_1M)
    for f in (
        "instrument_id",
        "ts_event",
        "sequence",
        "bid_px_00",
        "ask_px_00",
        "bid_sz_00",
        "ask_sz_00",
        "bid_ct_00",
        "ask_ct_00",
    ):
        rec[f] = src[f]
    rec["ts_recv"] = start_ns + b[last] * minute
    rec["flags"] = dbn.F_LAST
    rec["price"] = w.UNDEF_PRICE
    rec["side"] = b"N"
    # last trade per (instrument, minute)
    is_t = mbp["action"][order] == b"T"
    key = iid.astype(np.int64) * (1 << 32) + b
    tpos = np.flatnonzero(is_t)
    if tpos.size:
        tkey = key[tpos]
        tl = tpos[np.r_[tkey[1:] != tkey[:-1], True]]
        j = np.searchsorted(key[last], key[tl])
        src_t = mbp[order[tl]]
        rec["price"][j] = src_t["price"]
        rec["size"][j] = src_t["size"]
        rec["side"][j] = src_t["side"]
    order2 = np.lexsort((rec["instrument_id"], rec["ts_recv"]))
    return rec[order2]


def _ohlcv_1m(
    rng: np.random.Generator,
    chain: Chain,
    front_symbol: str,
    log_s: np.ndarray,
    lam: np.ndarray,
    carry: float,
    cut_ns: int,
    start_ns: int,
    n_sec: int,
) -> np.ndarray:
    """1-minute bars of each live future from the tick-rounded price path; minutes without volume are
    not written (as Databento does)."""
    n_min = n_sec // 60
    s = np.exp(log_s[: n_min * 60]).reshape(n_min, 60)
    act = lam[: n_min * 60].reshape(n_min, 60).mean(axis=1)
    out = []
    for f in chain.futures:
        mult = math.exp(carry * max(f.expiration_ns - cut_ns, 0) / cal.NS_PER_YEAR)
        px = np.round(s * mult / FUT_TICK) * FUT_TICK
        base = 400.0 if f.raw_symbol == front_symbol else 4.0
        vol = rng.poisson(base * act)
        t_min = start_ns + np.arange(n_min, dtype=np.int64) * 60 * NS
        keep = (vol > 0) & (t_min < f.expiration_ns)
        rec = w.new_records(w.OHLCV_DTYPE, int(keep.sum()), w.RTYPE_OHLCV_1M)
        rec["instrument_id"] = f.instrument_id
        rec["ts_event"] = t_min[keep]
        rec["open"] = w.to_fixed(px[keep, 0])
        rec["high"] = w.to_fixed(px[keep].max(axis=1))
        rec["low"] = w.to_fixed(px[keep].min(axis=1))
        rec["close"] = w.to_fixed(px[keep, -1])
        rec["volume"] = vol[keep]
        out.append(rec)
    allrec = np.concatenate(out)
    return allrec[np.lexsort((allrec["instrument_id"], allrec["ts_event"]))]


def _definitions(chain: Chain, fut_cut: np.ndarray, start_ns: int) -> list[bytes]:
    """InstrumentDefMsg records (GLBX.MDP3 conventions as in real ES files), futures first.

    Options carry the ES option price ladder as ``tick_rule = 17`` (variable tick: 0.05 below 5.00,
    0.25 above) with ``min_price_increment`` the smallest step, 0.05."""
    P = w.PRICE_SCALE
    recs: list[bytes] = []
    ts_event = start_ns - 6 * 3600 * NS
    for f, price in zip(chain.futures, fut_cut, strict=True):
        band = round(price * 0.07 / FUT_TICK) * FUT_TICK
        rec = dbn.InstrumentDefMsg(
            publisher_id=w.PUBLISHER_GLBX,
            instrument_id=f.instrument_id,
            ts_event=ts_event,
            ts_recv=start_ns,
            min_price_increment=P // 4,
            display_factor=10_000_000,
            raw_symbol=f.raw_symbol,
            asset="ES",
            security_type="FUT",
            instrument_class=w.CLASS_FUTURE,
            security_update_action=w.UPDATE_ADD,
            expiration=f.expiration_ns,
            activation=f.expiration_ns - 640 * 86_400 * NS,
            high_limit_price=int(round((round(price / FUT_TICK) * FUT_TICK + band) * P)),
            low_limit_price=int(round((round(price / FUT_TICK) * FUT_TICK - band) * P)),
            max_price_variation=6 * P,
            unit_of_measure_qty=50 * P,
            min_price_increment_amount=125_000_000,
            raw_instrument_id=f.instrument_id,
            inst_attrib_value=270351,
            market_depth_implied=0,
            market_depth=10,
            market_segment_id=64,
            max_trade_vol=3000,
            min_trade_vol=1,
            appl_id=310,
            maturity_year=f.year,
            maturity_month=f.month,
            currency="USD",
            group="ES",
            exchange="XCME",
            cfi="FFIXSX",
            unit_of_measure="IPNT",
            user_defined_instrument=w.USER_DEFINED_NO,
            underlying_product=5,
        )
        recs.append(bytes(rec))
    for i in range(chain.n_options):
        e = chain.expiries[int(chain.opt_expiry[i])]
        fut = chain.futures[e.underlying]
        is_call = bool(chain.opt_is_call[i])
        rec = dbn.InstrumentDefMsg(
            publisher_id=w.PUBLISHER_GLBX,
            instrument_id=int(chain.opt_id[i]),
            ts_event=ts_event,
            ts_recv=start_ns,
            min_price_increment=P // 20,
            display_factor=10_000_000,
            raw_symbol=str(chain.opt_symbol[i]),
            asset="ES",
            security_type="OOF",
            instrument_class=w.CLASS_CALL if is_call else w.CLASS_PUT,
            security_update_action=w.UPDATE_ADD,
            expiration=e.expiration_ns,
            activation=e.expiration_ns - 400 * 86_400 * NS,
            low_limit_price=P // 20,
            unit_of_measure_qty=50 * P,
            min_price_increment_amount=0,
            strike_price=int(round(chain.opt_strike[i] * P)),
            raw_instrument_id=int(chain.opt_id[i]),
            inst_attrib_value=270339,
            underlying_id=fut.instrument_id,
            market_depth_implied=0,
            market_depth=3,
            market_segment_id=54,
            max_trade_vol=3000,
            min_trade_vol=1,
            appl_id=311,
            maturity_year=e.date.year,
            maturity_month=e.date.month,
            maturity_day=e.date.day,
            currency="USD",
            group="EW" if e.root.startswith("EW") else "ES",
            exchange="XCME",
            cfi="OCAFPS" if is_call else "OPAFPS",
            unit_of_measure="IPNT",
            underlying=fut.raw_symbol,
            strike_price_currency="USD",
            user_defined_instrument=w.USER_DEFINED_NO,
            underlying_product=5,
            tick_rule=17,
        )
        recs.append(bytes(rec))
    return recs


def _cut_diagnostics(mbp: np.ndarray, chain: Chain, cut_ns: int) -> dict[str, np.ndarray]:
    """Per option: updates in the session, and the last quote before the cut (by ts_recv)."""
    ids = chain.opt_id
    order = np.argsort(ids)
    iid = mbp["instrument_id"]
    at = np.clip(np.searchsorted(ids[order], iid), 0, ids.size - 1)
    row = np.where(ids[order][at] == iid, order[at], -1)
    is_opt = row >= 0
    n_upd = np.bincount(row[is_opt], minlength=ids.size)
    pre = is_opt & (mbp["ts_recv"].astype(np.int64) < cut_ns)
    return quote_state_at_cut(mbp, row, pre, n_upd, cut_ns, STALE_AFTER_NS)


def quote_state_at_cut(
    records: np.ndarray, row: np.ndarray, pre: np.ndarray, n_upd: np.ndarray, cut_ns: int, stale_after_ns: int
) -> dict[str, np.ndarray]:
    """Per option (``n_upd.size`` of them): the last of ``records`` flagged ``pre`` (record ``i`` belongs to
    option ``row[i]``) and what the truth says of it at the cut (missing, stale, crossed, one-sided)."""
    last = np.full(n_upd.size, -1, dtype=np.int64)
    np.maximum.at(last, row[pre], np.flatnonzero(pre))
    has = last >= 0
    q = records[np.where(has, last, 0)]
    bid_ok = q["bid_px_00"] != w.UNDEF_PRICE
    ask_ok = q["ask_px_00"] != w.UNDEF_PRICE
    last_ts = np.where(has, q["ts_recv"].astype(np.int64), -1)
    return {
        "n_updates": n_upd.astype(np.int64),
        "last_update_ts": last_ts,
        "missing": ~has,
        "stale": has & (last_ts < cut_ns - stale_after_ns),
        "crossed": has & bid_ok & ask_ok & (q["bid_px_00"] >= q["ask_px_00"]),
        "one_sided": has & (bid_ok != ask_ok),
    }


def _truth_table(
    day: dt.date,
    chain: Chain,
    state: DayState,
    surface: SSVISurface,
    thin: bool,
    front_symbol: str,
    cut_ns: int,
    exp_T: np.ndarray,
    exp_F: np.ndarray,
    exp_D: np.ndarray,
    k_cut: np.ndarray,
    vol_cut: np.ndarray,
    price_cut: np.ndarray,
    fut_cut: np.ndarray,
    diag: dict[str, np.ndarray],
) -> pa.Table:
    n, ne, nf = chain.n_options, len(chain.expiries), len(chain.futures)
    e = chain.opt_expiry
    exp_ns = np.array([x.expiration_ns for x in chain.expiries], dtype=np.int64)
    prm = surface.params(exp_T)
    under_sym = np.array([chain.futures[x.underlying].raw_symbol for x in chain.expiries], dtype=object)
    fut_T = np.array([(f.expiration_ns - cut_ns) / cal.NS_PER_YEAR for f in chain.futures])
    rows: dict[str, list[Any]] = {name: [] for name in TRUTH_SCHEMA.names}

    def col(name: str, values: Any, count: int) -> None:
        rows[name].extend(
            list(values) if not np.isscalar(values) and values is not None else [values] * count
        )

    def fill(count: int, given: dict[str, Any]) -> None:
        for name in TRUTH_SCHEMA.names:
            col(name, given.get(name), count)

    last_ts = diag["last_update_ts"]
    fill(
        n,
        {
            "kind": "option",
            "instrument_id": chain.opt_id.tolist(),
            "raw_symbol": chain.opt_symbol.tolist(),
            "underlying": under_sym[e].tolist(),
            "expiration": exp_ns[e].tolist(),
            "expiry_years": exp_T[e].tolist(),
            "strike": chain.opt_strike.tolist(),
            "is_call": chain.opt_is_call.tolist(),
            "forward": exp_F[e].tolist(),
            "discount_factor": exp_D[e].tolist(),
            "log_moneyness": k_cut.tolist(),
            "vol": vol_cut.tolist(),
            "price": price_cut.tolist(),
            **{k: v[e].tolist() for k, v in prm.items()},
            "n_updates": diag["n_updates"].tolist(),
            "last_update_ts": [None if t < 0 else int(t) for t in last_ts.tolist()],
            "missing": diag["missing"].tolist(),
            "stale": diag["stale"].tolist(),
            "crossed": diag["crossed"].tolist(),
            "one_sided": diag["one_sided"].tolist(),
        },
    )
    fill(
        ne,
        {
            "kind": "expiry",
            "raw_symbol": [x.root for x in chain.expiries],
            "underlying": under_sym.tolist(),
            "expiration": exp_ns.tolist(),
            "expiry_years": exp_T.tolist(),
            "forward": exp_F.tolist(),
            "discount_factor": exp_D.tolist(),
            **{k: v.tolist() for k, v in prm.items()},
        },
    )
    fill(
        nf,
        {
            "kind": "future",
            "instrument_id": [f.instrument_id for f in chain.futures],
            "raw_symbol": [f.raw_symbol for f in chain.futures],
            "expiration": [f.expiration_ns for f in chain.futures],
            "expiry_years": fut_T.tolist(),
            "forward": fut_cut.tolist(),
            "discount_factor": np.exp(-state.rate * np.maximum(fut_T, 0.0)).tolist(),
        },
    )
    fill(
        1,
        {
            "kind": "state",
            "atm_vol": state.atm_vol,
            "long_vol": state.long_vol,
            "term_slope": state.slope,
            "skew": surface.rho,
            "rate": state.rate,
            "index": state.index,
            "crash": state.crash,
            "thin_day": thin,
            "front_future": front_symbol,
        },
    )
    total = n + ne + nf + 1
    rows["cut_ts"] = [cut_ns] * total
    return pa.table(
        {name: pa.array(rows[name], type=TRUTH_SCHEMA.field(name).type) for name in TRUTH_SCHEMA.names},
        schema=TRUTH_SCHEMA,
    )


# --------------------------------------------------------------------------- many days


def generate_days(
    start: dt.date,
    days: int,
    out_dir: str | os.PathLike[str],
    *,
    seed: int,
    config: SynthConfig | None = None,
    scale: str | None = None,
    progress: Any = None,
) -> list[DayResult]:
    """Generate ``days`` consecutive trading days from ``start`` into ``out_dir``.

    ``start`` must be a trading day (see :func:`volfast.synth.calendar.next_trading_day` to move to one).
    ``scale`` picks a preset when ``config`` is not given. ``progress`` is an optional callable called with
    each finished :class:`DayResult`. Also writes ``out_dir/synth-config.json`` (the resolved config).
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if config is None:
        config = SynthConfig.for_scale(scale or "small")
    elif scale is not None and scale != config.scale:
        raise ValueError(f"scale {scale!r} conflicts with config.scale {config.scale!r}")
    if not cal.is_trading_day(start):
        raise ValueError(
            f"{start.isoformat()} is not a CME trading day; the next one is "
            f"{cal.next_trading_day(start).isoformat()}"
        )
    out = _prepare_out_dir(out_dir)
    dates = cal.trading_days(start, days)
    states = state_path(dates[-1], seed, config)
    w.atomic_write_bytes(
        out / "synth-config.json",
        json.dumps({"seed": seed, "config": config.to_json(), "digest": config.digest()}, indent=2).encode(),
    )
    results = []
    for day in dates:
        res = generate_day(day, out, seed=seed, config=config, states=states)
        results.append(res)
        if progress is not None:
            progress(res)
    return results
