"""Which ES futures and options are listed on a trading date, their CME symbols and stable ids.

Option series (all on quarterly ES futures, multiplier 50):

- quarterly: third Friday of H/M/U/Z, symbol ``ESH4 C4800``, underlying the same quarter's future;
- end-of-month: last trading day of the month, ``EWF4 P4500``;
- Friday weeklies: the other Fridays, ``EW1F4 C4800`` (``EW<week of month>``), rolled to Thursday when
  the Friday is a holiday.

The underlying of a serial or weekly option is the first quarterly future expiring on or after it.
Instrument ids are a pure function of (series kind, expiry date, strike, call/put), so the same contract
has the same id on every day it is listed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import numpy as np

from volfast.synth import calendar as cal
from volfast.synth.config import SynthConfig

KIND_QUARTERLY, KIND_EOM, KIND_WEEKLY = 1, 2, 3
_ID_EPOCH = dt.date(2000, 1, 1)


@dataclasses.dataclass(frozen=True)
class Future:
    instrument_id: int
    raw_symbol: str
    year: int
    month: int
    expiration_ns: int
    expiry_date: dt.date


@dataclasses.dataclass(frozen=True)
class Expiry:
    date: dt.date
    kind: int
    root: str  # e.g. "ESH4", "EWF4", "EW1F4"
    expiration_ns: int
    underlying: int  # index into Chain.futures


@dataclasses.dataclass(frozen=True)
class Chain:
    """Instruments listed on one date. Option arrays share one index (one row per option)."""

    futures: list[Future]
    expiries: list[Expiry]
    opt_id: np.ndarray  # uint32
    opt_symbol: np.ndarray  # object (str)
    opt_expiry: np.ndarray  # int64 index into expiries
    opt_strike: np.ndarray  # float64, index points
    opt_is_call: np.ndarray  # bool

    @property
    def n_options(self) -> int:
        return int(self.opt_id.size)


def future_id(year: int, month: int) -> int:
    """Stable id of an ES quarterly future."""
    return 100_000 + (year - 2000) * 12 + month


def option_id(kind: int, expiry: dt.date, strike: float, is_call: bool) -> int:
    """Stable id: 2 bits series kind, 14 bits expiry day since 2000, 13 bits strike/5, 1 bit call."""
    day = (expiry - _ID_EPOCH).days
    units = int(round(strike / 5.0))
    if not (0 <= day < 1 << 14 and 0 < units < 1 << 13 and abs(units * 5.0 - strike) < 1e-9):
        raise ValueError(f"cannot encode option id for {expiry} strike {strike}")
    return (kind << 28) | (day << 14) | (units << 1) | int(bool(is_call))


def _option_expiries(day: dt.date, config: SynthConfig, futures: list[Future]) -> list[Expiry]:
    earliest = day + dt.timedelta(days=config.min_expiry_days)
    quarterly: list[tuple[dt.date, str]] = []
    for year, month in cal.quarterly_futures_after(earliest, config.n_quarterly_options):
        quarterly.append((cal.quarterly_expiry_date(year, month), cal.future_symbol(year, month)))
    eom: list[tuple[dt.date, str]] = []
    year, month = earliest.year, earliest.month
    while len(eom) < config.n_eom:
        d = cal.end_of_month_expiry(year, month)
        if d >= earliest:
            eom.append((d, f"EW{cal.MONTH_CODES[month - 1]}{year % 10}"))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    taken = {d for d, _ in quarterly} | {d for d, _ in eom}
    weekly: list[tuple[dt.date, str]] = []
    friday = earliest + dt.timedelta(days=(4 - earliest.weekday()) % 7)
    while len(weekly) < config.n_weeklies:
        d = friday
        while not cal.is_trading_day(d):
            d -= dt.timedelta(days=1)
        if d >= earliest and d not in taken:
            week = (friday.day - 1) // 7 + 1
            weekly.append((d, f"EW{week}{cal.MONTH_CODES[friday.month - 1]}{friday.year % 10}"))
        friday += dt.timedelta(days=7)
    out = []
    for kind, group in ((KIND_QUARTERLY, quarterly), (KIND_EOM, eom), (KIND_WEEKLY, weekly)):
        for d, root in group:
            under = next(i for i, f in enumerate(futures) if f.expiry_date >= d)
            out.append(Expiry(d, kind, root, cal.option_expiration_ns(d), under))
    out.sort(key=lambda e: (e.expiration_ns, e.kind))
    return out


def future_price(fut: Future, *, index: float, carry: float, at_ns: int) -> float:
    """Fair futures price: cash index carried at ``carry = r - q`` to the future's expiry (0 if expired)."""
    T = max(fut.expiration_ns - at_ns, 0) / cal.NS_PER_YEAR
    return index * math.exp(carry * T)


def build_chain(day: dt.date, config: SynthConfig, *, index: float, carry: float) -> Chain:
    """The chain listed on ``day``; strikes every ``config.strike_step`` points around each underlying's
    price at the cut (``index`` the cash level, ``carry = r - q``)."""
    n_fut = max(config.n_futures, config.n_quarterly_options + 1)
    futures = [
        Future(
            future_id(y, m),
            cal.future_symbol(y, m),
            y,
            m,
            cal.future_expiration_ns(y, m),
            cal.quarterly_expiry_date(y, m),
        )
        for y, m in cal.quarterly_futures_after(day, n_fut)
    ]
    expiries = _option_expiries(day, config, futures)
    ref_ns = cal.cut_time_ns(day)
    ids, syms, exp_idx, strikes, calls = [], [], [], [], []
    step = config.strike_step
    for e_i, e in enumerate(expiries):
        T = (e.expiration_ns - ref_ns) / cal.NS_PER_YEAR
        F = future_price(futures[e.underlying], index=index, carry=carry, at_ns=ref_ns)
        # strike range widens with sqrt(T): a 20%-vol yardstick, capped at the configured wings
        put_w = min(config.put_wing, 0.06 + 3.0 * 0.2 * math.sqrt(T))
        call_w = min(config.call_wing, 0.03 + 1.0 * 0.2 * math.sqrt(T))
        k_lo = math.ceil(F * (1 - put_w) / step) * step
        k_hi = math.floor(F * (1 + call_w) / step) * step
        ks = np.arange(k_lo, k_hi + step / 2, step)
        for K in ks:
            for is_call in (True, False):
                ids.append(option_id(e.kind, e.date, float(K), is_call))
                syms.append(f"{e.root} {'C' if is_call else 'P'}{int(K)}")
                exp_idx.append(e_i)
                strikes.append(float(K))
                calls.append(is_call)
    return Chain(
        futures=futures,
        expiries=expiries,
        opt_id=np.asarray(ids, dtype=np.uint32),
        opt_symbol=np.asarray(syms, dtype=object),
        opt_expiry=np.asarray(exp_idx, dtype=np.int64),
        opt_strike=np.asarray(strikes, dtype=np.float64),
        opt_is_call=np.asarray(calls, dtype=bool),
    )
