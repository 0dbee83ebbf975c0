"""The latent day-to-day state of the synthetic market and its reproducible path.

Rule for reproducibility: the path starts at ``config.epoch`` (default 2020-01-02) at the long-run means
and steps once per trading day. The innovations of trading date ``d`` come only from
``numpy.random.SeedSequence([seed, yyyymmdd(d)])`` (its first spawned child), so the state on any date
depends on (seed, config, date) alone: generating day 3 alone gives exactly day 3 of a longer run, and
the order in which workers run days does not matter. Dates before the epoch are refused.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import numpy as np

from volfast.synth.calendar import is_trading_day, trading_days_between
from volfast.synth.config import SynthConfig

DT = 1.0 / 252.0  # one trading day, in years


@dataclasses.dataclass(frozen=True)
class DayState:
    """Latent market state at the cut of one trading date."""

    date: dt.date
    index: float  # cash-index level S; futures are S * exp((r - q) T_future)
    log_vol: float  # log of the short-dated ATM vol level
    skew: float  # atanh(-rho) of the SSVI correlation
    slope: float  # log(long-run ATM vol / short ATM vol)
    rate: float  # continuously compounded short rate (flat curve: D = exp(-r T))
    crash: bool  # a crash happened on this date

    @property
    def atm_vol(self) -> float:
        return math.exp(self.log_vol)

    @property
    def rho(self) -> float:
        return -math.tanh(self.skew)

    @property
    def long_vol(self) -> float:
        return math.exp(self.log_vol + self.slope)


def yyyymmdd(day: dt.date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def day_seed_sequences(seed: int, day: dt.date) -> list[np.random.SeedSequence]:
    """The three independent streams of a date: [state innovations, chain/noise, intraday quotes]."""
    return np.random.SeedSequence([int(seed), yyyymmdd(day)]).spawn(3)


def _initial(config: SynthConfig) -> DayState:
    return DayState(
        date=config.epoch,
        index=config.index_at_epoch,
        log_vol=math.log(config.vol_mean),
        skew=config.skew_mean,
        slope=config.slope_mean,
        rate=config.rate_start,
        crash=False,
    )


def _step(prev: DayState, day: dt.date, seed: int, config: SynthConfig) -> DayState:
    rng = np.random.default_rng(day_seed_sequences(seed, day)[0])
    z = rng.standard_normal(5)
    u = rng.random(4)
    c = config
    # correlated shocks: e_s (index), e_v (log vol), e_k (skew), e_l (slope)
    e_s = z[0]
    e_v = c.leverage * e_s + math.sqrt(1 - c.leverage**2) * z[1]
    e_k = c.skew_return_corr * e_s + math.sqrt(1 - c.skew_return_corr**2) * z[2]
    e_l = c.slope_level_corr * e_v + math.sqrt(1 - c.slope_level_corr**2) * z[3]
    crash = bool(u[0] < c.p_crash)
    sq = math.sqrt(DT)
    sigma = c.realized_to_implied * prev.atm_vol
    # compensate the crash jumps so that the expected index return stays equity_drift
    lo, hi = c.crash_return
    mean_jump = 0.5 * (lo + hi)  # E[exp(J) - 1] for a crash return uniform on [lo, hi]
    drift = c.equity_drift - c.p_crash / DT * mean_jump
    log_ret = (drift - 0.5 * sigma * sigma) * DT + sigma * sq * e_s
    log_vol = (
        prev.log_vol + c.vol_kappa * (math.log(c.vol_mean) - prev.log_vol) * DT + c.vol_of_vol * sq * e_v
    )
    skew = prev.skew + c.skew_kappa * (c.skew_mean - prev.skew) * DT + c.skew_vol * sq * e_k
    slope = prev.slope + c.slope_kappa * (c.slope_mean - prev.slope) * DT + c.slope_vol * sq * e_l
    rate = prev.rate + c.rate_kappa * (c.rate_mean - prev.rate) * DT + c.rate_vol * sq * z[4]
    if crash:
        lo, hi = c.crash_return
        log_ret += math.log1p(lo + (hi - lo) * u[1])
        lo, hi = c.crash_log_vol
        log_vol += lo + (hi - lo) * u[2]
        skew += c.crash_skew * (0.5 + u[3])
        slope += c.crash_slope
    # keep the state in a plausible box; the clips bind only in extreme paths
    log_vol = min(max(log_vol, math.log(0.06)), math.log(1.2))
    skew = min(max(skew, 0.1), 2.0)  # |rho| in [0.1, 0.96]
    slope = min(max(slope, -0.9), 0.6)
    return DayState(day, prev.index * math.exp(log_ret), log_vol, skew, slope, rate, crash)


def state_path(last: dt.date, seed: int, config: SynthConfig) -> dict[dt.date, DayState]:
    """States of every trading day from the epoch (inclusive) to ``last`` (inclusive)."""
    if last < config.epoch:
        raise ValueError(
            f"{last.isoformat()} is before the synthetic market's epoch {config.epoch.isoformat()}; "
            "pick a later date or a SynthConfig with an earlier epoch"
        )
    days = trading_days_between(config.epoch, last)
    state = _initial(config)
    out: dict[dt.date, DayState] = {}
    for i, day in enumerate(days):
        # the epoch day itself is the initial state (when it trades); later days step
        state = dataclasses.replace(state, date=day) if i == 0 else _step(state, day, seed, config)
        out[day] = state
    if not is_trading_day(last):
        raise ValueError(f"{last.isoformat()} is not a trading day")
    return out
