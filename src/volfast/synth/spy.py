"""A synthetic SPY options market on OPRA: one trading day -> OPRA.PILLAR DBN files + ground-truth Parquet.

Per trading date ``YYYYMMDD`` in the output folder::

    opra-pillar-YYYYMMDD.definition.dbn.zst   option definitions (OCC raw symbols, ``SPY   240315C00500000``)
    opra-pillar-YYYYMMDD.cbbo-1m.dbn.zst      consolidated top of book at each minute end (bid_pb/ask_pb name
                                              the venue at the best price), for options updated in that minute
    opra-pillar-YYYYMMDD.cmbp-1.dbn.zst       (``schemas`` includes it) every consolidated top-of-book change
    truth/date=YYYY-MM-DD/part-0.parquet      ground truth (schema: SPY_TRUTH_SCHEMA)

The market, at the 15:48 New York cut:

* the stock ``S`` follows the same latent state path as the ES market (:mod:`volfast.synth.state`), scaled to
  SPY's level; it pays discrete quarterly cash dividends (ex-dates on the third Friday of Mar/Jun/Sep/Dec);
* the zero curve is ``r(T) = r0 + (r_inf - r0) (1 - exp(-T / tau)) / (T / tau)`` (continuous, ACT/365) with
  ``r0`` the state's short rate; ``D(T) = exp(-r(T) T)``;
* the forward of an expiry is ``F = (S - sum_i A_i D(t_i)) / D(T)`` over the dividends ex in ``(now, T]``;
* the European surface is the day's arbitrage-free SSVI surface in ``k = ln(K / F)`` (Black-76 vols);
* quotes are American: Black-76 European price plus the early-exercise premium of an escrowed-dividend lattice
  (:mod:`volfast.synth.american`); quotes before the cut's refresh carry the cut's premium on their own
  European price;
* each option is quoted by several of the 17 OPRA venues, each with its own width; the consolidated quote is
  the best bid and best ask across them, ``bid_pb``/``ask_pb`` the venue at each.

Expiries (``full``): dailies for the next ``n_daily`` trading days including today (0DTE), Friday weeklies,
third-Friday monthlies, quarter-end quarterlies and January LEAPS beyond two years; strikes every $1 near the
money and every $5 further out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
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
from volfast.io.output import write_parquet_atomic
from volfast.synth import calendar as cal
from volfast.synth import dbn as w
from volfast.synth.american import american_prices
from volfast.synth.config import SynthConfig, SynthError
from volfast.synth.generate import _index_path, _prepare_out_dir, quote_state_at_cut, truth_path
from volfast.synth.state import DayState, state_path
from volfast.synth.surface import SSVISurface

NS = cal.NS_PER_SECOND
DATASET = "OPRA.PILLAR"
PUBLISHER_OPRA = 30  # OPRA.PILLAR.OPRA: the consolidated feed's publisher id
#: The 17 OPRA.PILLAR venue publisher ids (20..37 without 30): AMXO, XBOX, XCBO, EMLD, EDGO, GMNI, XISX, MCRY,
#: XMIO, ARCO, MPRL, XNDQ, XBXO, C2OX, XPHL, BATO, MXOP.
VENUES = tuple(p for p in range(20, 38) if p != PUBLISHER_OPRA)
RTYPE_CMBP1 = 0xB1
RTYPE_CBBO_1M = 0xC1
TICK = 0.01  # SPY is in the penny program: $0.01 at every price
CUT_REFRESH_NS = 2 * NS
STALE_AFTER_NS = 3600 * NS
SCHEMAS = ("definition", "cbbo-1m", "cmbp-1")


def _dtype(msg: Any) -> np.dtype:
    return np.dtype([(name, "<" + code if code[0] in "iuf" else code) for name, code in msg._dtypes])


CBBO_DTYPE = _dtype(dbn.CBBOMsg)
CMBP1_DTYPE = _dtype(dbn.CMBP1Msg)
assert CBBO_DTYPE.itemsize == 80 and CMBP1_DTYPE.itemsize == 80

SPY_TRUTH_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),  # 'option' | 'expiry' | 'dividend' | 'state'
        ("cut_ts", pa.timestamp("ns", tz="UTC")),
        ("instrument_id", pa.uint32()),
        ("raw_symbol", pa.string()),  # OCC symbol (options); the expiry's kind on expiry rows
        ("underlying", pa.string()),
        ("expiration", pa.timestamp("ns", tz="UTC")),  # 16:00 New York on the expiry date
        ("expiry_years", pa.float64()),  # ACT/365 from the cut
        ("strike", pa.float64()),
        ("is_call", pa.bool_()),
        ("spot", pa.float64()),  # stock price at the cut
        ("forward", pa.float64()),  # (S - PV(dividends to T)) / D(T)
        ("discount_factor", pa.float64()),  # D(T) from the zero curve
        ("zero_rate", pa.float64()),  # r(T), continuous ACT/365
        ("dividend_pv", pa.float64()),  # PV at the cut of the dividends ex in (cut, T]
        ("log_moneyness", pa.float64()),  # ln(K / F)
        ("vol", pa.float64()),  # true European (Black-76) implied vol
        ("european_price", pa.float64()),
        ("price", pa.float64()),  # true American price (what the quotes at the cut are built around)
        ("early_exercise_premium", pa.float64()),
        ("ssvi_theta", pa.float64()),
        ("ssvi_phi", pa.float64()),
        ("ssvi_rho", pa.float64()),
        ("ssvi_eta", pa.float64()),
        ("ssvi_gamma", pa.float64()),
        ("n_updates", pa.int64()),  # cbbo-1m records in the day
        ("last_update_ts", pa.timestamp("ns", tz="UTC")),  # last cbbo-1m ts_recv at or before the cut
        ("missing", pa.bool_()),
        ("stale", pa.bool_()),
        ("crossed", pa.bool_()),
        ("one_sided", pa.bool_()),
        ("ex_date", pa.date32()),  # dividend rows
        ("amount", pa.float64()),  # dividend rows: cash per share
        ("atm_vol", pa.float64()),  # state row
        ("long_vol", pa.float64()),
        ("skew", pa.float64()),
        ("rate", pa.float64()),  # short rate r0
        ("crash", pa.bool_()),
        ("thin_day", pa.bool_()),
    ]
)


@dataclasses.dataclass(frozen=True)
class SpyConfig:
    """Everything that shapes the synthetic SPY market except the seed and the dates (dollars, fractions)."""

    scale: str = "small"
    # --- chain layout
    n_daily: int = 3  # daily expiries from today (0DTE) on
    n_weekly: int = 2  # Friday weeklies after the dailies
    n_monthly: int = 4  # third-Friday monthlies
    n_quarterly: int = 2  # quarter-end expiries
    n_leaps: int = 1  # January LEAPS (the last is beyond two years out when n_leaps >= 3)
    fine_step: float = 1.0  # $1 strikes near the money
    coarse_step: float = 5.0  # $5 strikes further out
    fine_width: float = 1.0  # $1 strikes within F (1 +- fine_width * 0.2 sqrt(T)), at least 1.5% ...
    fine_cap: float = 0.08  # ... at most 8% of F
    put_wing: float = 0.35  # deepest put strike as a fraction below F (long expiries)
    call_wing: float = 0.2  # highest call strike as a fraction above F (long expiries)
    strike_ref: float = 350.0  # $: at this forward the widths above apply as they are (see build_spy_chain)
    # --- market
    spot_at_epoch: float = 325.0
    dividend_yield: float = 0.013  # annual cash dividends / spot, paid quarterly
    rate_term_spread: float = 0.004  # r_inf - r0
    rate_tau: float = 1.5  # years
    lattice_steps: int = 400
    # --- quotes
    venues_per_option: int = 4  # venues quoting each option (of the 17)
    updates_per_minute_atm: float = 6.0  # quote changes per minute, at the money, short expiry
    spread_vol: float = 0.0003  # half-spread as a vol fraction times vega
    spread_moneyness: float = 0.4
    mid_noise: float = 0.2  # mid noise as a fraction of the half-spread
    p_stale: float = 0.03
    p_missing: float = 0.02
    p_crossed: float = 0.005
    p_one_sided: float = 0.01
    zstd_level: int = 3

    @classmethod
    def for_scale(cls, scale: str, **overrides: Any) -> SpyConfig:
        """``small`` (tests: about 1,100 options over 11-12 expiries) or ``full`` (a real SPY day's size)."""
        if scale == "small":
            base = cls()
        elif scale == "full":
            base = cls(
                scale="full",
                n_daily=15,
                n_weekly=6,
                n_monthly=10,
                n_quarterly=6,
                n_leaps=3,
                fine_width=2.6,
                fine_cap=0.16,
                put_wing=0.55,
                call_wing=0.3,
            )
        else:
            raise SynthError(f"unknown scale {scale!r}; expected small or full")
        return dataclasses.replace(base, **overrides) if overrides else base

    def dynamics(self) -> SynthConfig:
        """The latent state dynamics (shared with the ES market), at SPY's price level."""
        return SynthConfig(index_at_epoch=self.spot_at_epoch, p_thin_day=0.0)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        blob = json.dumps(self.to_json(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class SpyDayResult:
    """What :func:`generate_spy_day` wrote."""

    date: dt.date
    paths: dict[str, Path]
    counts: dict[str, int]
    seconds: float
    thin_day: bool = False
    crash: bool = False


def spy_file_names(day: dt.date, schemas: tuple[str, ...] = SCHEMAS) -> dict[str, str]:
    """The Databento-style file names of a date, by schema."""
    ymd = day.strftime("%Y%m%d")
    return {s: f"opra-pillar-{ymd}.{s}.dbn.zst" for s in schemas}


def session_bounds_ns(day: dt.date) -> tuple[int, int]:
    """Regular options session 09:30-16:15 New York (SPY options trade to 16:15) in UTC ns."""
    a = dt.datetime.combine(day, dt.time(9, 30), tzinfo=cal.NEW_YORK)
    b = dt.datetime.combine(day, dt.time(16, 15), tzinfo=cal.NEW_YORK)
    return cal.to_ns(a), cal.to_ns(b)


def expiration_ns(day: dt.date) -> int:
    """PM-settled equity option expiry: 16:00 New York on the expiry date."""
    return cal.to_ns(dt.datetime.combine(day, dt.time(16, 0), tzinfo=cal.NEW_YORK))


def occ_symbol(root: str, expiry: dt.date, is_call: bool, strike: float) -> str:
    """``("SPY", 2024-03-15, True, 500.0)`` -> ``"SPY   240315C00500000"`` (21 characters)."""
    return f"{root:<6}{expiry:%y%m%d}{'C' if is_call else 'P'}{int(round(strike * 1000)):08d}"


# --------------------------------------------------------------------------- calendar of the chain


def expiry_dates(day: dt.date, config: SpyConfig) -> list[tuple[dt.date, str]]:
    """``(date, kind)`` of every listed expiry, sorted; kind in daily/weekly/monthly/quarterly/leap."""
    out: dict[dt.date, str] = {}
    d = day if cal.is_trading_day(day) else cal.next_trading_day(day)
    for _ in range(config.n_daily):
        out.setdefault(d, "daily")
        d = cal.next_trading_day(d + dt.timedelta(days=1))
    fri = d + dt.timedelta(days=(4 - d.weekday()) % 7)
    n = 0
    while n < config.n_weekly:
        e = cal._roll_back_to_trading_day(fri)
        if e not in out:
            out[e] = "weekly"
            n += 1
        fri += dt.timedelta(days=7)
    y, m, n = day.year, day.month, 0
    while n < config.n_monthly:
        e = cal._roll_back_to_trading_day(cal.nth_weekday(y, m, 4, 3))
        if e >= day and out.get(e) != "daily":
            out[e] = "monthly"
            n += 1
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    y, m, n = day.year, day.month, 0
    while n < config.n_quarterly:
        if m in (3, 6, 9, 12):
            e = cal.end_of_month_expiry(y, m)
            if e >= day:
                out[e] = "quarterly"
                n += 1
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    for i in range(config.n_leaps):
        e = cal._roll_back_to_trading_day(cal.nth_weekday(day.year + 1 + i, 1, 4, 3))
        out[e] = "leap"
    return sorted(out.items())


def dividend_schedule(day: dt.date, last: dt.date) -> list[dt.date]:
    """Ex-dividend dates after ``day`` up to ``last``: the third Friday of Mar/Jun/Sep/Dec (rolled back to a
    trading day)."""
    out = []
    y, m = day.year, day.month
    while True:
        if m in (3, 6, 9, 12):
            e = cal._roll_back_to_trading_day(cal.nth_weekday(y, m, 4, 3))
            if e > last:
                break
            if e > day:
                out.append(e)
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def zero_rate(T: np.ndarray | float, *, r0: float, config: SpyConfig) -> np.ndarray:
    """Continuous zero rate to ``T`` years (Nelson-Siegel level + slope)."""
    T = np.asarray(T, dtype=np.float64)
    x = np.maximum(T, 1e-12) / config.rate_tau
    return r0 + config.rate_term_spread * (1.0 - -np.expm1(-x) / x)


@dataclasses.dataclass(frozen=True)
class SpyChain:
    """Options listed on one date, one row per option."""

    expiry_dates: list[dt.date]
    expiry_kinds: list[str]
    opt_id: np.ndarray  # uint32
    opt_symbol: np.ndarray  # object
    opt_expiry: np.ndarray  # int64 index into expiry_dates
    opt_strike: np.ndarray
    opt_is_call: np.ndarray

    @property
    def n_options(self) -> int:
        return int(self.opt_id.size)


def build_spy_chain(day: dt.date, config: SpyConfig, forwards: np.ndarray, exp_T: np.ndarray) -> SpyChain:
    """Strikes per expiry around its forward: every ``fine_step`` near the money, ``coarse_step`` beyond."""
    exps = expiry_dates(day, config)
    syms, e_idx, strikes, calls = [], [], [], []
    for i, ((d, _), F, T) in enumerate(zip(exps, forwards, exp_T, strict=True)):
        # widths in moneyness shrink as the price rises (and grow as it falls), so the number of listed
        # strikes stays near a real SPY day's whatever level the simulated path has wandered to
        s = min(1.6, max(0.6, config.strike_ref / F))
        fine = min(config.fine_cap * s, max(0.015, config.fine_width * 0.2 * math.sqrt(T) * s))
        put_w = min(0.9, s * min(config.put_wing, 0.05 + 2.5 * 0.2 * math.sqrt(T)))
        call_w = s * min(config.call_wing, 0.03 + 1.0 * 0.2 * math.sqrt(T))
        c = config.coarse_step
        # the fine band starts and ends on the coarse grid, so the strikes step by exactly one or the other
        lo, hi = math.floor(F * (1 - fine) / c) * c, math.ceil(F * (1 + fine) / c) * c
        ks = set(np.arange(lo, hi + config.fine_step / 2, config.fine_step).tolist())
        ks |= set(np.arange(math.ceil(F * (1 - put_w) / c) * c, F * (1 + call_w), c).tolist())
        for K in sorted(ks):
            for is_call in (True, False):
                syms.append(occ_symbol("SPY", d, is_call, K))
                e_idx.append(i)
                strikes.append(float(K))
                calls.append(is_call)
    n = len(syms)
    # OPRA instrument ids are assigned per day; here a fixed base plus the row
    ids = (1 << 24) + np.arange(n, dtype=np.uint32)
    return SpyChain(
        [d for d, _ in exps],
        [k for _, k in exps],
        ids.astype(np.uint32),
        np.asarray(syms, dtype=object),
        np.asarray(e_idx, dtype=np.int64),
        np.asarray(strikes, dtype=np.float64),
        np.asarray(calls, dtype=bool),
    )


# --------------------------------------------------------------------------- the day


def generate_spy_day(
    day: dt.date,
    out_dir: str | os.PathLike[str],
    *,
    seed: int,
    config: SpyConfig | None = None,
    schemas: tuple[str, ...] = ("definition", "cbbo-1m"),
    states: dict[dt.date, DayState] | None = None,
) -> SpyDayResult:
    """Write one trading date's OPRA.PILLAR files and truth into ``out_dir``.

    Parameters
    ----------
    day : trading date (``ValueError`` if it does not trade).
    seed : master seed; the day's randomness is ``SeedSequence([seed, yyyymmdd])`` only.
    config : the market (default ``SpyConfig()``, the small scale).
    schemas : which of definition, cbbo-1m, cmbp-1 to write; cbbo-1m does not depend on whether cmbp-1 is
        written (the earlier in-minute changes come from their own stream).
    states : a precomputed state path covering ``day`` and the day before (results identical without it).
    """
    t0 = time.perf_counter()
    config = config or SpyConfig()
    unknown = sorted(set(schemas) - set(SCHEMAS))
    if unknown:
        raise SynthError(f"unknown schema(s) {', '.join(unknown)}; expected some of {', '.join(SCHEMAS)}")
    if not cal.is_trading_day(day):
        raise SynthError(f"{day.isoformat()} is not a trading day (weekend or holiday)")
    out = _prepare_out_dir(out_dir)
    dyn = config.dynamics()
    if states is None or day not in states:
        states = state_path(day, seed, dyn)
    state = states[day]
    prev = states.get(cal.previous_trading_day(day), state)
    # its own streams (a third entropy word), so the ES streams of the same (seed, date) stay untouched
    ss = np.random.SeedSequence([int(seed), day.year * 10_000 + day.month * 100 + day.day, 0x5B1])
    ss_chain, ss_quotes, ss_extra = ss.spawn(3)
    rng_c = np.random.default_rng(ss_chain)
    rng_q = np.random.default_rng(ss_quotes)

    start_ns, end_ns = session_bounds_ns(day)
    cut_ns = cal.cut_time_ns(day)
    n_sec = (end_ns - start_ns) // NS
    cut_s = (cut_ns - start_ns) // NS
    S = state.index
    surface = SSVISurface.from_state(state, dyn)

    # ---- expiries, rates, dividends at the cut
    exps = expiry_dates(day, config)
    exp_ns = np.array([expiration_ns(d) for d, _ in exps], dtype=np.int64)
    exp_T = (exp_ns - cut_ns) / cal.NS_PER_YEAR
    r0 = state.rate
    exp_r = zero_rate(exp_T, r0=r0, config=config)
    exp_D = np.exp(-exp_r * exp_T)
    div_amount = round(S * config.dividend_yield / 4.0, 4)
    div_dates = dividend_schedule(day, exps[-1][0])
    div_ns = np.array(
        [cal.to_ns(dt.datetime.combine(d, dt.time(9, 30), tzinfo=cal.NEW_YORK)) for d in div_dates],
        dtype=np.int64,
    )
    div_T = (div_ns - cut_ns) / cal.NS_PER_YEAR
    div_D = np.exp(-zero_rate(div_T, r0=r0, config=config) * div_T)
    exp_pv = np.array([float((div_amount * div_D * (div_ns <= x)).sum()) for x in exp_ns])
    exp_F = (S - exp_pv) / exp_D

    chain = build_spy_chain(day, config, exp_F, exp_T)
    e = chain.opt_expiry
    K = chain.opt_strike
    T_cut, F_cut, D_cut = exp_T[e], exp_F[e], exp_D[e]
    k_cut = np.log(K / F_cut)
    vol_cut = surface.implied_vol(k_cut, T_cut)
    # the lattice's flat rate r(T) also discounts the dividends, so its escrowed spot is S - PV_flat; the
    # European part is exact on the curve's forward and only the premium comes from the lattice
    am = american_prices(
        spot=S,
        strike=K,
        expiry_years=T_cut,
        vol=vol_cut,
        is_call=chain.opt_is_call,
        discount_factor=D_cut,
        dividend_times=div_T,
        dividend_amounts=np.full(div_T.size, div_amount),
        n_steps=config.lattice_steps,
    )
    euro_cut = np.asarray(
        volfast.black76_price(
            forward=F_cut,
            strike=K,
            expiry_years=T_cut,
            vol=vol_cut,
            is_call=chain.opt_is_call,
            discount_factor=D_cut,
        )
    )
    intrinsic = np.where(chain.opt_is_call, S - K, K - S)
    price_cut = np.maximum(euro_cut + am.premium, intrinsic)
    premium = price_cut - euro_cut

    log_s = _index_path(rng_q, prev, state, n_sec, cut_s, dyn)
    quotes = _quotes(
        rng_c,
        rng_q,
        np.random.default_rng(ss_extra) if "cmbp-1" in schemas else None,
        chain,
        config,
        surface,
        S,
        log_s,
        start_ns,
        end_ns,
        cut_ns,
        n_sec,
        exp_ns,
        exp_pv,
        r0,
        k_cut,
        vol_cut,
        T_cut,
        premium,
        price_cut,
    )
    cbbo = quotes["cbbo"]

    names = spy_file_names(day, tuple(s for s in SCHEMAS if s in schemas))
    paths = {k: out / v for k, v in names.items()}
    sym_ids = list(zip(chain.opt_symbol.tolist(), chain.opt_id.tolist(), strict=True))
    metadata = functools.partial(
        w.metadata,
        start_ns=start_ns,
        end_ns=end_ns,
        day=day,
        parents=["SPY.OPT"],
        symbols_to_ids=sym_ids,
        dataset=DATASET,
    )
    if "definition" in paths:
        w.write_dbn_zst(
            paths["definition"],
            metadata(schema=dbn.Schema.DEFINITION),
            _definitions(chain, start_ns),
            config.zstd_level,
        )
    if "cbbo-1m" in paths:
        w.write_dbn_zst(
            paths["cbbo-1m"], metadata(schema=dbn.Schema.CBBO_1M), _as_bytes(cbbo), config.zstd_level
        )
    if "cmbp-1" in paths:
        w.write_dbn_zst(
            paths["cmbp-1"], metadata(schema=dbn.Schema.CMBP_1), _as_bytes(quotes["cmbp"]), config.zstd_level
        )

    diag = _cut_diagnostics(cbbo, chain, cut_ns)
    table = _truth_table(
        chain,
        state,
        surface,
        cut_ns,
        S,
        exp_ns,
        exp_T,
        exp_F,
        exp_D,
        exp_r,
        exp_pv,
        exps,
        div_dates,
        div_amount,
        k_cut,
        vol_cut,
        euro_cut,
        price_cut,
        diag,
    )
    tpath = truth_path(out, day)
    write_parquet_atomic(table, tpath)
    paths["truth"] = tpath
    counts = {
        "options": chain.n_options,
        "expiries": len(exps),
        "definition": chain.n_options,
        "cbbo-1m": int(cbbo.size),
        "cmbp-1": int(quotes["cmbp"].size) if "cmbp" in quotes else 0,
        "dividends": len(div_dates),
    }
    return SpyDayResult(day, paths, counts, time.perf_counter() - t0, False, state.crash)


def _as_bytes(records: np.ndarray) -> memoryview:
    """The records' bytes without a copy (``tobytes()`` would double a full day's memory)."""
    return np.ascontiguousarray(records).view(np.uint8).data


def _minute_activity(n_min: int) -> np.ndarray:
    """Relative quote activity per minute (mean 1): busy at the open and into the close (U shape)."""
    m = np.arange(n_min, dtype=np.float64)
    act = 1.0 + 1.5 * np.exp(-m / 30.0) + 1.0 * np.exp(-(n_min - 15 - m).clip(0) / 30.0)
    return act / act.mean()


def _quotes(
    rng_c: np.random.Generator,
    rng_q: np.random.Generator,
    rng_x: np.random.Generator | None,
    chain: SpyChain,
    config: SpyConfig,
    surface: SSVISurface,
    S_cut: float,
    log_s: np.ndarray,
    start_ns: int,
    end_ns: int,
    cut_ns: int,
    n_sec: int,
    exp_ns: np.ndarray,
    exp_pv: np.ndarray,
    r0: float,
    k_cut: np.ndarray,
    vol_cut: np.ndarray,
    T_cut: np.ndarray,
    premium: np.ndarray,
    price_cut: np.ndarray,
) -> dict[str, np.ndarray]:
    """Consolidated quotes: one cbbo-1m record per (option, minute with a change), and optionally every
    change (cmbp-1), whose last in each minute is the cbbo-1m record."""
    n = chain.n_options
    n_min = int(n_sec // 60)
    cut_min = int((cut_ns - start_ns) // (60 * NS))  # minutes [cut_min - 1] ends exactly at the cut
    z = np.abs(k_cut) / (vol_cut * np.sqrt(T_cut))
    missing = rng_c.random(n) < config.p_missing
    stale = (rng_c.random(n) < config.p_stale * (1.0 + 0.5 * np.minimum(z, 4.0))) & ~missing
    crossed = (rng_c.random(n) < config.p_crossed) & ~missing & ~stale
    one_sided = (rng_c.random(n) < config.p_one_sided) & ~missing & ~crossed
    # last minute quoted: stale options stop 1.5-5 hours before the cut; the day's expiries stop at 16:00
    last_min = np.full(n, n_min - 1)
    last_min[stale] = cut_min - 1 - rng_c.integers(90, 300, int(stale.sum()))
    exp_min = (exp_ns[chain.opt_expiry] - start_ns) // (60 * NS)
    last_min = np.minimum(last_min, exp_min - 1)
    lam = (
        config.updates_per_minute_atm
        * np.exp(-0.35 * np.minimum(z, 12.0))
        * (0.4 + 0.6 * np.exp(-T_cut / 0.25))
    )
    act = _minute_activity(n_min)
    # (option, minute) cells with at least one change
    p = -np.expm1(-np.outer(lam, act))  # (n, n_min)
    hit = rng_q.random((n, n_min)) < p
    minutes = np.arange(n_min)
    hit &= minutes[None, :] <= last_min[:, None]
    hit[missing] = False
    live = ~missing & ~stale
    hit[live, cut_min - 1] = True  # the maker refresh just before the cut
    opt, mins = np.nonzero(hit)  # sorted by option, then minute
    m = opt.size
    refresh = live[opt] & (mins == cut_min - 1)
    # time of the minute's last change: uniform in the minute; the refresh within 2 s before the cut
    t_ns = start_ns + mins.astype(np.int64) * 60 * NS + (rng_q.random(m) * 60 * NS).astype(np.int64)
    t_ns[refresh] = cut_ns - 1 - (rng_q.random(int(refresh.sum())) * CUT_REFRESH_NS).astype(np.int64)
    venues = _venue_sets(rng_c, n, config)
    rec = _price_and_consolidate(
        rng_q,
        chain,
        config,
        surface,
        log_s,
        start_ns,
        n_sec,
        exp_ns,
        exp_pv,
        r0,
        premium,
        price_cut,
        opt,
        t_ns,
        refresh,
        venues,
    )
    bid, ask, bid_pb, ask_pb, bsz, asz = rec
    # noise at the cut: the last pre-cut record of a flagged option is crossed / one-sided
    pre = mins <= cut_min - 1
    last_pre = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last_pre, opt[pre], np.flatnonzero(pre))
    idx = last_pre[crossed & (last_pre >= 0)]
    bid[idx] = ask[idx] + TICK
    os_idx = last_pre[one_sided & (last_pre >= 0)]
    drop_ask = rng_c.random(os_idx.size) < 0.5
    ask[os_idx[drop_ask]] = np.nan
    bid[os_idx[~drop_ask]] = np.nan

    cbbo = w.new_records(CBBO_DTYPE, m, RTYPE_CBBO_1M)
    cbbo["publisher_id"] = PUBLISHER_OPRA
    cbbo["instrument_id"] = chain.opt_id[opt]
    cbbo["ts_event"] = t_ns
    cbbo["ts_recv"] = start_ns + (mins.astype(np.int64) + 1) * 60 * NS
    cbbo["price"] = w.UNDEF_PRICE
    cbbo["side"] = b"N"
    cbbo["flags"] = dbn.F_LAST | dbn.F_TOB
    _fill_book(cbbo, bid, ask, bsz, asz, bid_pb, ask_pb)
    order = np.lexsort((cbbo["instrument_id"], cbbo["ts_recv"]))
    out = {"cbbo": cbbo[order]}
    if rng_x is not None:
        out["cmbp"] = _cmbp(
            rng_x,
            chain,
            config,
            surface,
            log_s,
            start_ns,
            n_sec,
            exp_ns,
            exp_pv,
            r0,
            premium,
            price_cut,
            opt,
            mins,
            t_ns,
            lam,
            act,
            venues,
            cbbo,
        )
    return out


def _venue_sets(rng: np.random.Generator, n: int, config: SpyConfig) -> dict[str, np.ndarray]:
    """Per option the venues quoting it (``(n, v)`` publisher ids) and each one's width multiplier."""
    v = max(2, min(config.venues_per_option, len(VENUES)))
    keys = rng.random((n, len(VENUES)))
    pick = np.argsort(keys, axis=1)[:, :v]
    width = 1.0 + 1.5 * rng.random((1, len(VENUES)))  # a venue is wider or narrower on every option
    return {"pub": np.asarray(VENUES, dtype=np.uint16)[pick], "width": width[0][pick]}


def _price_and_consolidate(
    rng: np.random.Generator,
    chain: SpyChain,
    config: SpyConfig,
    surface: SSVISurface,
    log_s: np.ndarray,
    start_ns: int,
    n_sec: int,
    exp_ns: np.ndarray,
    exp_pv: np.ndarray,
    r0: float,
    premium: np.ndarray,
    price_cut: np.ndarray,
    opt: np.ndarray,
    t_ns: np.ndarray,
    exact: np.ndarray,
    venues: dict[str, np.ndarray],
) -> tuple[np.ndarray, ...]:
    """American prices at the change times, venue quotes around them, and the best bid / best ask."""
    e = chain.opt_expiry[opt]
    K = chain.opt_strike[opt]
    call = chain.opt_is_call[opt]
    sec = np.clip((t_ns - start_ns) // NS, 0, n_sec - 1)
    S = np.exp(log_s[sec])
    T = np.maximum((exp_ns[e] - t_ns) / cal.NS_PER_YEAR, 1e-9)
    D = np.exp(-zero_rate(T, r0=r0, config=config) * T)
    F = (S - exp_pv[e]) / D
    k = np.log(K / F)
    vol = surface.implied_vol(k, T)
    P = np.asarray(
        volfast.black76_price(forward=F, strike=K, expiry_years=T, vol=vol, is_call=call, discount_factor=D)
    )
    P = np.maximum(P + premium[opt], np.where(call, S - K, K - S))
    P[exact] = price_cut[opt[exact]]
    vega = np.asarray(volfast.black76_vega(forward=F, strike=K, expiry_years=T, vol=vol, discount_factor=D))
    zz = np.abs(k) / (vol * np.sqrt(T))
    hs = np.maximum(TICK, config.spread_vol * vega * (1.0 + config.spread_moneyness * zz)) + 0.002 * P
    mid = P + config.mid_noise * hs * rng.standard_normal(P.size)
    # each venue's half-spread: its width times a per-change jitter; the best venue has the narrowest
    half = hs[:, None] * venues["width"][opt] * (1.0 + 0.5 * rng.random((P.size, venues["width"].shape[1])))
    vb = np.floor((mid[:, None] - half) / TICK + 1e-9) * TICK
    va = np.ceil((mid[:, None] + half) / TICK - 1e-9) * TICK
    va = np.maximum(va, TICK)
    ib = np.argmax(vb, axis=1)
    ia = np.argmin(va, axis=1)
    rows = np.arange(P.size)
    bid = vb[rows, ib]
    ask = va[rows, ia]
    ask = np.maximum(ask, bid + TICK)
    bid = np.where(bid < TICK - 1e-9, np.nan, bid)  # no bid below a penny: an empty side
    pubs = venues["pub"][opt]
    scale = 20.0 * np.exp(-0.3 * np.minimum(zz, 8.0)) + 1.0
    return (
        bid,
        ask,
        pubs[rows, ib],
        pubs[rows, ia],
        1 + rng.poisson(scale),
        1 + rng.poisson(scale),
    )


def _fill_book(
    rec: np.ndarray,
    bid: np.ndarray,
    ask: np.ndarray,
    bsz: np.ndarray,
    asz: np.ndarray,
    bid_pb: np.ndarray,
    ask_pb: np.ndarray,
) -> None:
    has_b, has_a = np.isfinite(bid), np.isfinite(ask)
    rec["bid_px_00"] = w.to_fixed(bid)
    rec["ask_px_00"] = w.to_fixed(ask)
    rec["bid_sz_00"] = np.where(has_b, bsz, 0)
    rec["ask_sz_00"] = np.where(has_a, asz, 0)
    rec["bid_pb_00"] = np.where(has_b, bid_pb, 0)
    rec["ask_pb_00"] = np.where(has_a, ask_pb, 0)


def _cmbp(
    rng: np.random.Generator,
    chain: SpyChain,
    config: SpyConfig,
    surface: SSVISurface,
    log_s: np.ndarray,
    start_ns: int,
    n_sec: int,
    exp_ns: np.ndarray,
    exp_pv: np.ndarray,
    r0: float,
    premium: np.ndarray,
    price_cut: np.ndarray,
    opt: np.ndarray,
    mins: np.ndarray,
    t_last: np.ndarray,
    lam: np.ndarray,
    act: np.ndarray,
    venues: dict[str, np.ndarray],
    cbbo: np.ndarray,
) -> np.ndarray:
    """Every consolidated change: the minute's earlier changes (own stream) then its last one (= cbbo-1m)."""
    extra = rng.poisson(np.minimum(lam[opt] * act[mins], 20.0))
    own = np.repeat(np.arange(opt.size), extra)
    lo = start_ns + mins[own].astype(np.int64) * 60 * NS
    t = lo + (rng.random(own.size) * (t_last[own] - lo)).astype(np.int64)
    ex = w.new_records(CMBP1_DTYPE, own.size, RTYPE_CMBP1)
    ex["instrument_id"] = chain.opt_id[opt[own]]
    ex["ts_event"] = t
    block = 1 << 20  # priced a million changes at a time: the (changes x venues) temporaries stay small
    for lo_i in range(0, own.size, block):
        sl = slice(lo_i, min(own.size, lo_i + block))
        q = _price_and_consolidate(
            rng,
            chain,
            config,
            surface,
            log_s,
            start_ns,
            n_sec,
            exp_ns,
            exp_pv,
            r0,
            premium,
            price_cut,
            opt[own[sl]],
            t[sl],
            np.zeros(sl.stop - sl.start, dtype=bool),
            venues,
        )
        part = ex[sl]  # a view: filled in place
        _fill_book(part, q[0], q[1], q[4], q[5], q[2], q[3])
    last = w.new_records(CMBP1_DTYPE, cbbo.size, RTYPE_CMBP1)
    for f in (
        "instrument_id",
        "ts_event",
        "bid_px_00",
        "ask_px_00",
        "bid_sz_00",
        "ask_sz_00",
        "bid_pb_00",
        "ask_pb_00",
    ):
        last[f] = cbbo[f]
    latency = (rng.lognormal(math.log(3e5), 0.8, own.size + last.size)).astype(np.int64) + 10_000
    # the minute's last change keeps its minute (received before the minute ends), and the earlier changes
    # are received before it
    t_ev = last["ts_event"].astype(np.int64)
    end = (t_ev - start_ns) // (60 * NS) * 60 * NS + start_ns + 60 * NS - 1
    last["ts_recv"] = np.maximum(np.minimum(t_ev + latency[own.size :], end), t_ev)
    t_ex = ex["ts_event"].astype(np.int64)
    cap = last["ts_recv"].astype(np.int64)[own]
    ex["ts_recv"] = np.maximum(np.minimum(t_ex + latency[: own.size], cap), t_ex)
    rec = np.concatenate([ex, last])
    n_ex = ex.size
    del ex, last  # a full day's changes are ~800 MB: keep one copy alive at a time
    rec["publisher_id"] = PUBLISHER_OPRA
    rec["ts_in_delta"] = rng.integers(5_000, 40_000, rec.size)
    rec["action"] = b"A"
    side_b = rng.random(rec.size) < 0.5
    rec["side"] = np.where(side_b, b"B", b"A")
    rec["price"] = np.where(side_b, rec["bid_px_00"], rec["ask_px_00"])
    rec["size"] = np.where(side_b, rec["bid_sz_00"], rec["ask_sz_00"])
    rec["flags"] = dbn.F_LAST | dbn.F_TOB
    # within an instrument and minute the cbbo-1m record is last: order by (ts_recv, is-last)
    is_last = np.arange(rec.size) >= n_ex
    order = np.lexsort((is_last, rec["instrument_id"], rec["ts_recv"]))
    return rec[order]


def _definitions(chain: SpyChain, start_ns: int) -> list[bytes]:
    """InstrumentDefMsg records as OPRA.PILLAR carries them: OCC raw symbol, date-only expiration (midnight
    UTC), strike in dollars, underlying SPY, exchange OPRA; price fields OPRA leaves undefined stay so."""
    P = w.PRICE_SCALE
    ts_event = start_ns - 3 * 3600 * NS  # definitions are published before the open
    out = []
    for i in range(chain.n_options):
        d = chain.expiry_dates[int(chain.opt_expiry[i])]
        is_call = bool(chain.opt_is_call[i])
        midnight = cal.to_ns(dt.datetime.combine(d, dt.time(0), tzinfo=cal.UTC))
        rec = dbn.InstrumentDefMsg(
            publisher_id=PUBLISHER_OPRA,
            instrument_id=int(chain.opt_id[i]),
            ts_event=ts_event,
            ts_recv=ts_event + 200_000,
            min_price_increment=w.UNDEF_PRICE,
            display_factor=w.UNDEF_PRICE,
            raw_symbol=str(chain.opt_symbol[i]),
            asset="SPY",
            security_type="OPT",
            instrument_class=w.CLASS_CALL if is_call else w.CLASS_PUT,
            security_update_action=w.UPDATE_ADD,
            expiration=midnight,
            activation=w.UNDEF_PRICE,
            strike_price=int(round(chain.opt_strike[i] * P)),
            raw_instrument_id=int(chain.opt_id[i]),
            underlying_id=PUBLISHER_OPRA,
            channel_id=38,
            currency="USD",
            group="popra-38",
            exchange="OPRA",
            unit_of_measure="USD",
            underlying="SPY",
            strike_price_currency="USD",
            user_defined_instrument=w.USER_DEFINED_NO,
        )
        out.append(bytes(rec))
    return out


def _cut_diagnostics(cbbo: np.ndarray, chain: SpyChain, cut_ns: int) -> dict[str, np.ndarray]:
    """Per option: cbbo-1m records in the day and the last one at or before the cut."""
    row = cbbo["instrument_id"].astype(np.int64) - int(chain.opt_id[0])
    n = chain.n_options
    n_upd = np.bincount(row, minlength=n)
    pre = cbbo["ts_recv"].astype(np.int64) <= cut_ns
    return quote_state_at_cut(cbbo, row, pre, n_upd, cut_ns, STALE_AFTER_NS)


def _truth_table(
    chain: SpyChain,
    state: DayState,
    surface: SSVISurface,
    cut_ns: int,
    S: float,
    exp_ns: np.ndarray,
    exp_T: np.ndarray,
    exp_F: np.ndarray,
    exp_D: np.ndarray,
    exp_r: np.ndarray,
    exp_pv: np.ndarray,
    exps: list[tuple[dt.date, str]],
    div_dates: list[dt.date],
    div_amount: float,
    k_cut: np.ndarray,
    vol_cut: np.ndarray,
    euro_cut: np.ndarray,
    price_cut: np.ndarray,
    diag: dict[str, np.ndarray],
) -> pa.Table:
    n, ne, nd = chain.n_options, len(exps), len(div_dates)
    e = chain.opt_expiry
    prm = surface.params(exp_T)
    cols: dict[str, Any] = {name: [None] * (n + ne + nd + 1) for name in SPY_TRUTH_SCHEMA.names}

    def put(name: str, lo: int, values: Any) -> None:
        vals = values.tolist() if isinstance(values, np.ndarray) else list(values)
        cols[name][lo : lo + len(vals)] = vals

    put("kind", 0, ["option"] * n + ["expiry"] * ne + ["dividend"] * nd + ["state"])
    put("instrument_id", 0, chain.opt_id)
    put("raw_symbol", 0, chain.opt_symbol)
    put("raw_symbol", n, [k for _, k in exps])
    put("underlying", 0, ["SPY"] * (n + ne + nd))
    for lo, idx in ((0, e), (n, np.arange(ne))):
        put("expiration", lo, exp_ns[idx])
        put("expiry_years", lo, exp_T[idx])
        put("forward", lo, exp_F[idx])
        put("discount_factor", lo, exp_D[idx])
        put("zero_rate", lo, exp_r[idx])
        put("dividend_pv", lo, exp_pv[idx])
        for k, v in prm.items():
            put(k, lo, v[idx])
    put("spot", 0, [S] * (n + ne + nd + 1))
    put("strike", 0, chain.opt_strike)
    put("is_call", 0, chain.opt_is_call)
    put("log_moneyness", 0, k_cut)
    put("vol", 0, vol_cut)
    put("european_price", 0, euro_cut)
    put("price", 0, price_cut)
    put("early_exercise_premium", 0, price_cut - euro_cut)
    for k in ("n_updates", "missing", "stale", "crossed", "one_sided"):
        put(k, 0, diag[k])
    put("last_update_ts", 0, [None if t < 0 else int(t) for t in diag["last_update_ts"].tolist()])
    put("ex_date", n + ne, div_dates)
    put("amount", n + ne, [div_amount] * nd)
    s = n + ne + nd
    row: tuple[tuple[str, object], ...] = (
        ("atm_vol", state.atm_vol),
        ("long_vol", state.long_vol),
        ("skew", surface.rho),
        ("rate", state.rate),
        ("crash", state.crash),
        ("thin_day", False),
    )
    for k, val in row:
        cols[k][s] = val
    cols["cut_ts"] = [cut_ns] * (s + 1)
    return pa.table(
        {
            name: pa.array(cols[name], type=SPY_TRUTH_SCHEMA.field(name).type)
            for name in SPY_TRUTH_SCHEMA.names
        },
        schema=SPY_TRUTH_SCHEMA,
    )


def generate_spy_days(
    start: dt.date,
    days: int,
    out_dir: str | os.PathLike[str],
    *,
    seed: int,
    config: SpyConfig | None = None,
    scale: str | None = None,
    schemas: tuple[str, ...] = ("definition", "cbbo-1m"),
    progress: Any = None,
) -> list[SpyDayResult]:
    """Generate ``days`` consecutive trading days of the SPY market from ``start`` into ``out_dir``; also
    writes ``out_dir/synth-config.json`` (market ``spy``, the resolved config)."""
    if days < 1:
        raise SynthError(f"days must be at least 1, got {days}")
    if config is None:
        config = SpyConfig.for_scale(scale or "small")
    elif scale is not None and scale != config.scale:
        raise SynthError(f"scale {scale!r} conflicts with config.scale {config.scale!r}")
    if not cal.is_trading_day(start):
        raise SynthError(
            f"{start.isoformat()} is not a trading day; the next one is "
            f"{cal.next_trading_day(start).isoformat()}"
        )
    out = _prepare_out_dir(out_dir)
    dates = cal.trading_days(start, days)
    states = state_path(dates[-1], seed, config.dynamics())
    w.atomic_write_bytes(
        out / "synth-config.json",
        json.dumps(
            {"market": "spy", "seed": seed, "config": config.to_json(), "digest": config.digest()}, indent=2
        ).encode(),
    )
    results = []
    for day in dates:
        res = generate_spy_day(day, out, seed=seed, config=config, schemas=schemas, states=states)
        results.append(res)
        if progress is not None:
            progress(res)
    return results
