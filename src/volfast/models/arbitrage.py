"""Static-arbitrage counts of decoded surfaces on their grid: Black call prices (forward 1, undiscounted)
decreasing and convex in strike along every row, total variance non-decreasing in tenor down every column.

What every model's decoded surface is checked with in ``volfast evaluate`` (reconstructions, LSTM and AR(1)
forecasts, latents drawn far outside the training range). Prices are computed in float64 from the vols
given; a violation is a difference beyond ``tol`` (prices in units of the forward; default 1e-9, far above
float32 vol rounding's effect on a price and far below a tick).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["arbitrage_counts", "call_prices"]


def call_prices(vols: np.ndarray, log_moneyness: np.ndarray, tenor_years: np.ndarray) -> np.ndarray:
    """Undiscounted Black call prices per unit forward, ``(..., R, K)`` from vols ``(..., R, K)``,
    ``k = ln(K/F)`` ``(K,)`` and tenors ``(..., R)`` in years (ACT/365)."""
    from scipy.special import ndtr  # here, not at import: importing scipy.special adds a warning filter

    v = np.asarray(vols, dtype=np.float64)
    k = np.asarray(log_moneyness, dtype=np.float64)
    t = np.asarray(tenor_years, dtype=np.float64)[..., None]
    s = v * np.sqrt(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = -k / s + 0.5 * s
    return ndtr(d1) - np.exp(k) * ndtr(d1 - s)


def arbitrage_counts(
    vols: np.ndarray, log_moneyness: np.ndarray, tenor_years: np.ndarray, *, tol: float = 1e-9
) -> dict[str, Any]:
    """Violations on the grid of surfaces ``vols (N, R, K)`` (rows: tenors ascending, columns: ``k``).

    Returns counts of node pairs where a call price rises with strike (``monotone``), node triples where
    the slope of the price in strike falls (``butterfly``, a negative divided second difference), node
    pairs where total variance falls from one tenor to the next (``calendar``), surfaces with any of them,
    and surfaces with a non-finite or non-positive vol (``invalid``).
    """
    v = np.asarray(vols, dtype=np.float64)
    if v.ndim == 2:
        v = v[None]
    k = np.asarray(log_moneyness, dtype=np.float64)
    t = np.broadcast_to(np.asarray(tenor_years, dtype=np.float64), v.shape[:2])
    invalid = ~(np.isfinite(v) & (v > 0)).reshape(v.shape[0], -1).all(axis=1)
    c = call_prices(v, k, t)  # (N, R, K)
    strikes = np.exp(k)
    dc = np.diff(c, axis=-1)  # (N, R, K - 1)
    mono = dc > tol
    slope = dc / np.diff(strikes)
    half_span = 0.5 * (strikes[2:] - strikes[:-2])
    fly = np.diff(slope, axis=-1) * half_span < -tol  # (N, R, K - 2)
    w = v * v * t[..., None]
    scale = np.maximum(np.abs(w[:, 1:]), 1.0)
    cal = np.diff(w, axis=1) < -tol * scale  # (N, R - 1, K)
    bad = mono.reshape(len(v), -1).any(1) | fly.reshape(len(v), -1).any(1) | cal.reshape(len(v), -1).any(1)
    return {
        "surfaces": int(v.shape[0]),
        "monotone": int(mono.sum()),
        "butterfly": int(fly.sum()),
        "calendar": int(cal.sum()),
        "surfaces_with_violation": int((bad | invalid).sum()),
        "invalid": int(invalid.sum()),
        "tol": tol,
    }
