"""Day validity: is there enough of a surface on a day to rasterise it?

A day is valid when at least 3 expiries each quote far enough into both wings and have at least 6 strikes
quoted on both sides. "Far enough" is measured in standardised moneyness ``z = ln(K/F) / (sigma_ATM
sqrt(T))`` (the expiry's ATM standard deviation, from its SVI fit ``sqrt(w(0))``, else from the quotes
nearest the money): by default the lowest usable strike must reach ``z <= -1.5`` and the highest
``z >= 0.5``. A fixed ln(K/F) range cannot fit every expiry: -0.5 is 25 standard deviations for a one-week
index option and 1.5 for a two-year one, so the original rule (``moneyness="log"``: ln(K/F) down to -0.5
and up to 0.15) rejects typical liquid days with short expiries. "Quoted" here means usable for the smile
(:attr:`QuoteVols.use`: two-sided, positive, not crossed, with an implied vol, on the chosen side); with
``require_fit`` an expiry also needs an acceptable forward and SVI fit to count. Invalid days are kept
with the reason; they only get no grids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["DayValidity", "ValidityConfig", "atm_std_dev", "check_expiries", "expiry_coverage"]


@dataclasses.dataclass(frozen=True)
class ValidityConfig:
    """Thresholds of a valid day (defaults from the original research)."""

    min_expiries: int = 3  # expiries that must pass every check below
    # strike coverage measured in "standardised" k / (sigma_ATM sqrt T) or in "log" ln(K/F)
    moneyness: str = "standardised"
    max_min_std_moneyness: float = -1.5  # standardised: lowest usable z at most this ...
    min_max_std_moneyness: float = 0.5  # ... and highest at least this
    max_min_log_strike: float = -0.5  # log: an expiry's lowest usable ln(K/F) must be at most this ...
    min_max_log_strike: float = 0.15  # ... and its highest at least this
    min_two_sided: int = 6  # distinct strikes with a usable two-sided quote
    require_fit: bool = True  # count only expiries whose forward and SVI fit are acceptable

    def __post_init__(self) -> None:
        if self.min_expiries < 1 or self.min_two_sided < 1:
            raise ValueError("ValidityConfig: min_expiries and min_two_sided must be >= 1")
        if self.moneyness not in ("standardised", "log"):
            raise ValueError(f"ValidityConfig: moneyness must be standardised or log, got {self.moneyness!r}")
        if not self.max_min_log_strike < self.min_max_log_strike:
            raise ValueError("ValidityConfig: need max_min_log_strike < min_max_log_strike")
        if not self.max_min_std_moneyness < self.min_max_std_moneyness:
            raise ValueError("ValidityConfig: need max_min_std_moneyness < min_max_std_moneyness")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def expiry_coverage(
    log_moneyness: np.ndarray, strike: np.ndarray, use: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per slice: lowest and highest usable ``ln(K/F)`` (NaN when none) and the number of distinct strikes
    with a usable quote. Rows of slice ``i`` are ``offsets[i]:offsets[i+1]``."""
    n = len(offsets) - 1
    k_min = np.full(n, np.nan)
    k_max = np.full(n, np.nan)
    n_strikes = np.zeros(n, dtype=np.int64)
    for i in range(n):
        s = slice(int(offsets[i]), int(offsets[i + 1]))
        u = np.asarray(use[s], dtype=bool)
        if u.any():
            k = log_moneyness[s][u]
            k_min[i], k_max[i] = k.min(), k.max()
            n_strikes[i] = np.unique(strike[s][u]).size
    return k_min, k_max, n_strikes


def atm_std_dev(
    log_moneyness: np.ndarray,
    mid_iv: np.ndarray,
    use: np.ndarray,
    offsets: np.ndarray,
    expiry_years: np.ndarray,
    fitted_w0: np.ndarray | None = None,
) -> np.ndarray:
    """``sigma_ATM sqrt(T)`` per slice: ``sqrt(w(0))`` of the fit where ``fitted_w0`` is finite and positive,
    else the mid vol of the usable quote nearest ``ln(K/F) = 0`` times ``sqrt(T)``; NaN when neither."""
    n = len(offsets) - 1
    out = np.full(n, np.nan)
    for i in range(n):
        w0 = np.nan if fitted_w0 is None else float(fitted_w0[i])
        if np.isfinite(w0) and w0 > 0:
            out[i] = np.sqrt(w0)
            continue
        s = slice(int(offsets[i]), int(offsets[i + 1]))
        u = np.asarray(use[s], dtype=bool) & np.isfinite(mid_iv[s])
        if u.any() and expiry_years[i] > 0:
            j = int(np.argmin(np.abs(log_moneyness[s][u])))
            out[i] = float(mid_iv[s][u][j]) * np.sqrt(float(expiry_years[i]))
    return out


def check_expiries(
    k_min: np.ndarray,
    k_max: np.ndarray,
    n_strikes: np.ndarray,
    fit_ok: np.ndarray | None,
    config: ValidityConfig,
    atm_sd: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Which expiries pass, and for each the reason it does not ("" when it does); each reason names the
    rule that failed. ``atm_sd`` is ``sigma_ATM sqrt(T)`` per expiry (needed when ``moneyness`` is
    ``"standardised"``)."""
    cfg = config
    std = cfg.moneyness == "standardised"
    if std and atm_sd is None:
        raise ValueError("check_expiries: standardised moneyness needs atm_sd (sigma_ATM sqrt T per expiry)")
    n = len(k_min)
    ok = np.ones(n, dtype=bool)
    reasons: list[str] = []
    for i in range(n):
        why = []
        if cfg.require_fit and fit_ok is not None and not fit_ok[i]:
            why.append("no acceptable forward/SVI fit")
        if n_strikes[i] < cfg.min_two_sided:
            why.append(f"{int(n_strikes[i])} two-sided strikes < {cfg.min_two_sided}")
        if not np.isfinite(k_min[i]):
            why.append("no usable quotes")
        elif std:
            sd = float(atm_sd[i]) if atm_sd is not None else np.nan
            if not (np.isfinite(sd) and sd > 0):
                why.append("no ATM vol to standardise the strikes")
            else:
                if k_min[i] / sd > cfg.max_min_std_moneyness:
                    why.append(
                        f"strike coverage: lowest z = ln(K/F)/(sigma_ATM sqrt T) {k_min[i] / sd:.2f} > "
                        f"{cfg.max_min_std_moneyness:g}"
                    )
                if k_max[i] / sd < cfg.min_max_std_moneyness:
                    why.append(
                        f"strike coverage: highest z = ln(K/F)/(sigma_ATM sqrt T) {k_max[i] / sd:.2f} < "
                        f"{cfg.min_max_std_moneyness:g}"
                    )
        else:
            if k_min[i] > cfg.max_min_log_strike:
                why.append(f"min ln(K/F) {k_min[i]:.3f} > {cfg.max_min_log_strike:g}")
            if k_max[i] < cfg.min_max_log_strike:
                why.append(f"max ln(K/F) {k_max[i]:.3f} < {cfg.min_max_log_strike:g}")
        ok[i] = not why
        reasons.append("; ".join(why))
    return ok, reasons


@dataclasses.dataclass
class DayValidity:
    """The verdict on a day: ``valid``, the reason when not, and the per-expiry checks."""

    valid: bool
    reason: str
    expiry_ok: np.ndarray  # (n_expiries,) bool
    expiry_reasons: list[str]

    @classmethod
    def decide(
        cls,
        expiry_ok: np.ndarray,
        expiry_reasons: Sequence[str],
        labels: Sequence[str],
        config: ValidityConfig,
    ) -> DayValidity:
        n_ok = int(np.count_nonzero(expiry_ok))
        if n_ok >= config.min_expiries:
            return cls(True, "", np.asarray(expiry_ok, dtype=bool), list(expiry_reasons))
        failing = [
            f"{lab}: {why}" for lab, why, ok in zip(labels, expiry_reasons, expiry_ok, strict=True) if not ok
        ]
        head = f"{n_ok} of {len(expiry_ok)} expiries pass the validity checks (need {config.min_expiries})"
        reason = head + (" | " + " | ".join(failing) if failing else "")
        return cls(False, reason, np.asarray(expiry_ok, dtype=bool), list(expiry_reasons))
