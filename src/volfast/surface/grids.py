"""Fixed grids that a day's surface is rasterised onto, the inputs of the world models.

Every grid is computed from one function, the day's total implied variance ``w(k, T)`` (``k = ln(K/F)``,
``T`` in ACT/365 years), so the fitted surface (:mod:`volfast.surface`) and the generator's true surface
(:func:`volfast.surface.truth_dataset`) go through the same code:

* ``image``: log-moneyness x tenor, default 32 x 32, ``k`` in [-0.5, 0.3], tenors log-spaced from 7 days to
  2 years (the conv VAE's input). Rows are tenors, columns log-moneyness.
* ``cvae``: the first 3 listed expiries at or beyond ``cvae_min_expiry_days`` x 11 log-strikes in [-0.5, 0.15]
  (the dense CVAE's input); the condition is those 3 year fractions.
* ``delta``: days x call delta in the style of OptionMetrics' volatility surface: days 30 ... 730, Black-76
  forward call deltas ``N(d1)`` 0.1 ... 0.9 (undiscounted, premium not included; futures options).

All grids hold implied vols (annualised fractions), float64; NaN where the surface gives no finite positive
variance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from statistics import NormalDist
from typing import Any

import numpy as np

__all__ = [
    "GRID_KINDS",
    "GridConfig",
    "TotalVariance",
    "cvae_grid",
    "delta_grid",
    "image_grid",
    "select_cvae_expiries",
]

#: ``w(k, T) -> total variance``; broadcasting numpy arrays in, an array of the broadcast shape out.
TotalVariance = Callable[[np.ndarray, np.ndarray], np.ndarray]

GRID_KINDS = ("image", "cvae", "delta")


@dataclasses.dataclass(frozen=True)
class GridConfig:
    """The three grids' axes. Defaults follow the original research (CVAE) and OptionMetrics (delta)."""

    image_k_min: float = -0.5  # log-moneyness ln(K/F) range of the image
    image_k_max: float = 0.3
    image_nk: int = 32
    image_tenor_min_days: float = 7.0  # ACT/365 calendar days; tenors are log-spaced in between
    image_tenor_max_days: float = 730.0
    image_nt: int = 32
    cvae_k_min: float = -0.5  # the CVAE's 11 log-strikes
    cvae_k_max: float = 0.15
    cvae_nk: int = 11
    cvae_n_expiries: int = 3  # the first listed expiries ...
    cvae_min_expiry_days: float = 7.0  # ... at or beyond this many calendar days
    delta_days: tuple[float, ...] = (30, 60, 91, 122, 152, 182, 273, 365, 547, 730)
    delta_calls: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

    def __post_init__(self) -> None:
        checks = [
            (self.image_k_min < self.image_k_max, "image_k_min < image_k_max"),
            (self.cvae_k_min < self.cvae_k_max, "cvae_k_min < cvae_k_max"),
            (0 < self.image_tenor_min_days < self.image_tenor_max_days, "0 < image tenor min < max"),
            (min(self.image_nk, self.image_nt, self.cvae_nk, self.cvae_n_expiries) >= 1, "grid sizes >= 1"),
            (all(d > 0 for d in self.delta_days), "delta_days > 0"),
            (all(0 < d < 1 for d in self.delta_calls), "0 < delta_calls < 1"),
        ]
        bad = [what for ok, what in checks if not ok]
        if bad:
            raise ValueError(f"GridConfig: need {', '.join(bad)}")

    @property
    def image_k(self) -> np.ndarray:
        return np.linspace(self.image_k_min, self.image_k_max, self.image_nk)

    @property
    def image_tenor_years(self) -> np.ndarray:
        lo, hi = np.log(self.image_tenor_min_days), np.log(self.image_tenor_max_days)
        return np.exp(np.linspace(lo, hi, self.image_nt)) / 365.0

    @property
    def cvae_k(self) -> np.ndarray:
        return np.linspace(self.cvae_k_min, self.cvae_k_max, self.cvae_nk)

    @property
    def delta_tenor_years(self) -> np.ndarray:
        return np.asarray(self.delta_days, dtype=np.float64) / 365.0

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GridConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"GridConfig: unknown keys {sorted(unknown)}")
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)


def _vol(w: np.ndarray, T: np.ndarray) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.sqrt(w / T)
    return np.where(np.isfinite(v) & (w > 0), v, np.nan)


def image_grid(w: TotalVariance, config: GridConfig | None = None) -> np.ndarray:
    """Implied vols on the (tenor, log-moneyness) image, shape ``(image_nt, image_nk)``."""
    cfg = config or GridConfig()
    T = cfg.image_tenor_years[:, None]
    k = cfg.image_k[None, :]
    return _vol(w(k, T), T)


def select_cvae_expiries(expiry_years: np.ndarray, config: GridConfig | None = None) -> np.ndarray:
    """Indices of the CVAE's expiries among ``expiry_years`` (ascending): the first ``cvae_n_expiries`` at or
    beyond ``cvae_min_expiry_days``. Fewer are returned when fewer exist."""
    cfg = config or GridConfig()
    t = np.asarray(expiry_years, dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(t) & (t * 365.0 >= cfg.cvae_min_expiry_days - 1e-9))
    return ok[np.argsort(t[ok], kind="stable")][: cfg.cvae_n_expiries]


def cvae_grid(w: TotalVariance, expiry_years: np.ndarray, config: GridConfig | None = None) -> np.ndarray:
    """Implied vols at the CVAE's log-strikes for the given expiries: ``(len(expiry_years), cvae_nk)``."""
    cfg = config or GridConfig()
    T = np.asarray(expiry_years, dtype=np.float64)[:, None]
    return _vol(w(cfg.cvae_k[None, :], T), T)


def delta_grid(
    w: TotalVariance, config: GridConfig | None = None, *, iterations: int = 80
) -> tuple[np.ndarray, np.ndarray]:
    """Implied vols on the (days, call delta) grid and the log-moneyness of each node.

    For each tenor ``T`` and call delta ``D`` solves ``N(d1(k)) = D`` with ``d1 = (-k + w/2) / sqrt(w)``,
    ``w = w(k, T)``, by bisection on ``k`` in [-5, 5] (d1 falls with k on any surface free of butterfly
    arbitrage). Returns ``(vols, k)``, both ``(n_days, n_deltas)``; NaN where no root lies in the bracket.
    """
    cfg = config or GridConfig()
    T = np.broadcast_to(cfg.delta_tenor_years[:, None], (len(cfg.delta_days), len(cfg.delta_calls)))
    target = np.broadcast_to(np.array([NormalDist().inv_cdf(d) for d in cfg.delta_calls])[None, :], T.shape)

    def excess(k: np.ndarray) -> np.ndarray:
        tv = np.asarray(w(k, T), dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.sqrt(tv)
            return (-k + 0.5 * tv) / s - target

    lo = np.full(T.shape, -5.0)
    hi = np.full(T.shape, 5.0)
    f_lo, f_hi = excess(lo), excess(hi)
    bracketed = (f_lo > 0) & (f_hi < 0)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        f = excess(mid)
        up = f > 0  # root lies above mid
        lo = np.where(up, mid, lo)
        hi = np.where(up, hi, mid)
    k = np.where(bracketed, 0.5 * (lo + hi), np.nan)
    return _vol(w(k, T), T), k
