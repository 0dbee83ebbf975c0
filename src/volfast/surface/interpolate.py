"""The day's fitted surface ``w(k, T)`` from its raw-SVI slices, with calendar order kept.

Between consecutive fitted expiries ``T_i < T_{i+1}`` the total variance is interpolated linearly in ``T`` at
fixed log-moneyness ``k = ln(K/F_T)``; linear interpolation keeps ``w`` non-decreasing in ``T`` whenever
the slices are. Slices that cross (``w_{i+1}(k) < w_i(k)`` at some ``k``, a calendar arbitrage of
independent fits) are first repaired by a running maximum over expiries at each ``k``
(``w~_i(k) = max_{j<=i} w_j(k)``), the smallest change that restores calendar order; where no slices cross
it changes nothing.

Outside the fitted expiries:

* before the first, ``w(k, T) = w(k, T_1) T / T_1`` (the first slice's vols held constant per ``k``; goes to
  0 with ``T``);
* after the last, ``"flat_forward"`` (default) continues the last segment's forward variance
  ``(w~_n(k) - w~_{n-1}(k)) / (T_n - T_{n-1})`` (>= 0 after the repair), ``"constant_vol"`` holds the last
  slice's vols per ``k``. Both are non-decreasing in ``T``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["EXTRAPOLATIONS", "FittedSurface", "svi_total_variance"]

EXTRAPOLATIONS = ("flat_forward", "constant_vol")


def svi_total_variance(k: Any, params: np.ndarray) -> np.ndarray:
    """Raw SVI ``a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2))``; ``params[..., :]`` = (a, b, rho, m,
    sigma) broadcast against ``k``."""
    p = np.asarray(params, dtype=np.float64)
    a, b, rho, m, sig = (p[..., i] for i in range(5))
    x = np.asarray(k, dtype=np.float64) - m
    out: np.ndarray = a + b * (rho * x + np.sqrt(x * x + sig * sig))
    return out


class FittedSurface:
    """Total variance ``w(k, T)`` of a day from raw-SVI slices at ``expiry_years`` (any order).

    Parameters
    ----------
    expiry_years : array_like, (n,)
        ACT/365 year fractions of the fitted slices, > 0, distinct.
    params : array_like, (n, 5)
        Raw SVI (a, b, rho, m, sigma) per slice, in total variance.
    extrapolation : {"flat_forward", "constant_vol"}
        Beyond the last expiry (see the module docstring).

    Calling the object, ``surface(k, T)``, broadcasts ``k`` against ``T`` like numpy operands and returns the
    total variance (the :data:`volfast.surface.grids.TotalVariance` signature).
    """

    def __init__(self, *, expiry_years: Any, params: Any, extrapolation: str = "flat_forward") -> None:
        t = np.asarray(expiry_years, dtype=np.float64).reshape(-1)
        p = np.asarray(params, dtype=np.float64).reshape(-1, 5)
        if t.size == 0:
            raise ValueError("FittedSurface: no slices")
        if p.shape[0] != t.size:
            raise ValueError(f"FittedSurface: {t.size} expiries but {p.shape[0]} parameter rows")
        if not (np.isfinite(t).all() and (t > 0).all()):
            raise ValueError("FittedSurface: expiry_years must be finite and > 0")
        if not np.isfinite(p).all():
            raise ValueError("FittedSurface: non-finite SVI parameters")
        if extrapolation not in EXTRAPOLATIONS:
            raise ValueError(f"extrapolation must be one of {EXTRAPOLATIONS}, got {extrapolation!r}")
        order = np.argsort(t, kind="stable")
        t, p = t[order], p[order]
        if (np.diff(t) <= 0).any():
            raise ValueError("FittedSurface: duplicate expiry_years")
        self.expiry_years = t
        self.params = p
        self.extrapolation = extrapolation

    def __len__(self) -> int:
        return int(self.expiry_years.size)

    def slice_variance(self, k: Any) -> np.ndarray:
        """The calendar-repaired slices at ``k``: shape ``(n, *k.shape)``."""
        k = np.asarray(k, dtype=np.float64)
        w = svi_total_variance(k[None, ...], self.params.reshape((-1,) + (1,) * k.ndim + (5,)))
        return np.maximum.accumulate(w, axis=0)

    def crossings(self, k: Any) -> int:
        """Adjacent slice pairs whose raw fits cross (``w_{i+1}(k) < w_i(k)`` at some ``k`` given)."""
        k = np.asarray(k, dtype=np.float64).reshape(-1)
        w = svi_total_variance(k[None, :], self.params[:, None, :])
        return int(np.count_nonzero((np.diff(w, axis=0) < 0).any(axis=1)))

    def __call__(self, k: Any, T: Any) -> np.ndarray:
        k, T = np.broadcast_arrays(np.asarray(k, dtype=np.float64), np.asarray(T, dtype=np.float64))
        shape = k.shape
        kf, Tf = k.reshape(-1), T.reshape(-1)
        W = self.slice_variance(kf)  # (n, m)
        t = self.expiry_years
        n = t.size
        out = np.full(kf.shape, np.nan)
        cols = np.arange(kf.size)
        before = Tf <= t[0]
        after = Tf >= t[-1]
        inside = ~before & ~after & np.isfinite(Tf)
        with np.errstate(invalid="ignore"):
            out[before] = W[0, before] * Tf[before] / t[0]
            if n == 1 or self.extrapolation == "constant_vol":
                out[after] = W[-1, after] * Tf[after] / t[-1]
            else:
                slope = (W[-1, after] - W[-2, after]) / (t[-1] - t[-2])
                out[after] = W[-1, after] + (Tf[after] - t[-1]) * slope
            if inside.any():
                j = np.searchsorted(t, Tf[inside], side="right")  # t[j-1] < T < t[j]
                c = cols[inside]
                lam = (Tf[inside] - t[j - 1]) / (t[j] - t[j - 1])
                out[inside] = (1.0 - lam) * W[j - 1, c] + lam * W[j, c]
        out[~np.isfinite(Tf) | (Tf <= 0)] = np.nan
        return out.reshape(shape)

    def implied_vol(self, k: Any, T: Any) -> np.ndarray:
        """``sqrt(w(k, T) / T)``; NaN where the variance is not positive."""
        w = self(k, T)
        with np.errstate(invalid="ignore", divide="ignore"):
            v = np.sqrt(w / np.asarray(T, dtype=np.float64))
        return np.where(np.isfinite(v) & (w > 0), v, np.nan)
