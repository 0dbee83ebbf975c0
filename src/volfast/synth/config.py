"""Configuration of the synthetic ES market: one frozen dataclass, two presets (``small``, ``full``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from typing import Any

from volfast.errors import VolfastError

SCALES = ("small", "full")


class SynthError(VolfastError, ValueError):
    """A synthetic market that cannot be made as asked (a date that does not trade, an unknown schema or
    scale, lattice inputs out of their domain)."""


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """Everything that shapes the synthetic market except the seed and the dates.

    Rates and vols are annualised fractions; prices are in index points; times of day are exchange local.
    """

    scale: str = "small"
    # --- chain layout
    n_futures: int = 4  # listed quarterly futures (at least n_quarterly_options + 1 are listed)
    n_weeklies: int = 3  # Friday weeklies (not coinciding with an EOM or quarterly expiry)
    n_eom: int = 2  # end-of-month expiries
    n_quarterly_options: int = 5  # quarterly option expiries (to ~15 months: days need 3 wide expiries)
    strike_step: float = 50.0  # points; ES lists every 5 points, the small preset thins to every 50
    put_wing: float = 0.50  # deepest put strike as a fraction below F, for long expiries
    call_wing: float = 0.25  # highest call strike as a fraction above F, for long expiries
    min_expiry_days: int = 1  # expiries closer than this (calendar days, 0DTE) are not listed
    roll_days: int = 8  # the front future rolls this many calendar days before expiry
    # --- quote activity (updates per instrument per session)
    option_updates_atm: float = 100.0  # at the money, short expiry
    front_future_updates: int = 8000
    back_future_updates: int = 400
    # --- quote noise
    spread_vol: float = 0.0008  # half-spread as a vol fraction times vega (0.08 vol points)
    spread_moneyness: float = 0.6  # half-spread grows by this factor per unit of |standardised moneyness|
    mid_noise: float = 0.25  # mid noise as a fraction of the half-spread
    p_stale: float = 0.05  # instruments whose quotes stop hours before the cut
    p_missing: float = 0.03  # instruments never quoted on the day (missing strikes)
    p_crossed: float = 0.01  # instruments whose last quote before the cut is crossed
    p_one_sided: float = 0.02  # instruments whose last quote before the cut lost a side
    p_thin_day: float = 0.02  # days with almost no option quotes (no surface can be built)
    thin_day_quoted: float = 0.04  # fraction of options quoted on a thin day
    # --- latent dynamics (daily, dt = 1/252)
    epoch: dt.date = dt.date(2020, 1, 2)  # the state path starts here; see volfast.synth.state
    index_at_epoch: float = 3250.0
    equity_drift: float = 0.07
    dividend_yield: float = 0.015
    vol_mean: float = 0.16  # long-run short-dated ATM vol
    vol_kappa: float = 6.0
    vol_of_vol: float = 1.1  # of log ATM vol
    leverage: float = -0.7  # corr(index return, log-vol change)
    skew_mean: float = 0.85  # atanh(-rho): rho = -tanh(skew) ~ -0.69
    skew_kappa: float = 5.0
    skew_vol: float = 0.6
    skew_return_corr: float = -0.35
    slope_mean: float = 0.12  # log(long-run vol / short vol): contango
    slope_kappa: float = 4.0
    slope_vol: float = 0.5
    slope_level_corr: float = -0.6
    rate_start: float = 0.015
    rate_mean: float = 0.03
    rate_kappa: float = 0.5
    rate_vol: float = 0.008
    term_tau: float = 0.5  # years: decay of forward variance from short to long level
    ssvi_eta: float = 1.1
    ssvi_gamma: float = 0.45
    realized_to_implied: float = 0.85  # futures vol = this x short ATM vol (variance risk premium)
    p_crash: float = 0.004
    crash_return: tuple[float, float] = (-0.08, -0.03)
    crash_log_vol: tuple[float, float] = (0.35, 0.7)
    crash_skew: float = 0.3
    crash_slope: float = -0.35
    # --- output
    zstd_level: int = 3

    @classmethod
    def for_scale(cls, scale: str, **overrides: Any) -> SynthConfig:
        """The preset for ``scale`` ('small' for tests and demos, 'full' approaching a real ES day)."""
        if scale == "small":
            base = cls()
        elif scale == "full":
            base = cls(
                scale="full",
                n_futures=7,
                n_weeklies=5,
                n_eom=3,
                n_quarterly_options=5,
                strike_step=5.0,
                option_updates_atm=300.0,
                front_future_updates=400_000,
                back_future_updates=20_000,
            )
        else:
            raise ValueError(f"unknown scale {scale!r}; expected one of {', '.join(SCALES)}")
        return dataclasses.replace(base, **overrides) if overrides else base

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (dates as ISO strings)."""
        out = dataclasses.asdict(self)
        out["epoch"] = self.epoch.isoformat()
        return out

    def digest(self) -> str:
        """Short stable hash of the configuration (for manifests)."""
        blob = json.dumps(self.to_json(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
