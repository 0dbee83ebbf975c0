"""Slow, obvious reference for one expiry's Huber parity fit (numpy + scipy), used by the tests.

Same rules as :mod:`volfast.forward._numba` (quote usability, pairs, near-the-money window, spread floor),
written plainly; the minimiser is ``scipy.optimize.least_squares(loss="huber", f_scale=c)`` on the
residuals in units of the synthetic spread, which minimises exactly ``sum_i rho_c(u_i)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def reference_pairs(strike: Any, is_call: Any, bid: Any, ask: Any) -> dict[str, np.ndarray]:
    """Usable call/put pairs of one slice: strike, synthetic mid, synthetic bid/ask, straddle mid."""
    k = np.asarray(strike, float)
    c = np.asarray(is_call, bool)
    b = np.asarray(bid, float)
    a = np.asarray(ask, float)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(k) & (k > 0) & np.isfinite(b) & np.isfinite(a) & (b <= a) & (a > 0) & (b > 0)
    best: dict[tuple[float, bool], tuple[float, float]] = {}
    for i in np.flatnonzero(ok):
        key = (float(k[i]), bool(c[i]))
        if key not in best or a[i] - b[i] < best[key][1] - best[key][0]:
            best[key] = (float(b[i]), float(a[i]))
    ks = sorted({kk for kk, side in best if (kk, not side) in best})
    y, sb, sa, st = [], [], [], []
    for kk in ks:
        cb, ca = best[(kk, True)]
        pb, pa = best[(kk, False)]
        y.append((cb + ca) / 2 - (pb + pa) / 2)
        sb.append(cb - pa)
        sa.append(ca - pb)
        st.append((cb + ca) / 2 + (pb + pa) / 2)
    return {
        "strike": np.array(ks, float),
        "y": np.array(y, float),
        "syn_bid": np.array(sb, float),
        "syn_ask": np.array(sa, float),
        "straddle": np.array(st, float),
    }


def reference_fit(
    strike: Any,
    is_call: Any,
    bid: Any,
    ask: Any,
    *,
    discount_factor: float | None = None,
    window: float = 4.0,
    min_pairs: int = 3,
    huber_c: float = 0.25,
) -> dict[str, float] | None:
    """Huber parity fit of one slice; None when there are too few pairs."""
    from scipy.optimize import least_squares

    p = reference_pairs(strike, is_call, bid, ask)
    k, y = p["strike"], p["y"]
    n = k.size
    if n == 0 or n < min_pairs:
        return None
    d0 = 1.0 if discount_factor is None else float(discount_factor)
    j = int(np.argmin(np.abs(y)))
    f0 = k[j] + y[j] / d0
    st = max(p["straddle"][j] / (0.8 * d0 * f0), 1e-6)
    # the window: grow a strike range outward from j, nearer side first (ties go left)
    lo = hi = j
    while lo > 0 or hi < n - 1:
        dl = abs(math.log(k[lo - 1] / f0)) if lo > 0 else math.inf
        dr = abs(math.log(k[hi + 1] / f0)) if hi < n - 1 else math.inf
        grow_left = dl <= dr
        dist = dl if grow_left else dr
        if dist <= window * st or hi - lo + 1 < min_pairs:
            lo, hi = (lo - 1, hi) if grow_left else (lo, hi + 1)
        else:
            break
    sel = slice(lo, hi + 1)
    k, y, sb, sa = k[sel], y[sel], p["syn_bid"][sel], p["syn_ask"][sel]
    w = sa - sb
    pos = w[w > 0]
    floor = 0.5 * pos.min() if pos.size else 0.5e-8 * f0
    w = np.maximum(w, floor)
    if discount_factor is None:

        def res2(theta: np.ndarray) -> np.ndarray:
            return (y - theta[1] * (theta[0] - k)) / w

        sol = least_squares(
            res2, x0=[f0, d0], loss="huber", f_scale=huber_c, xtol=1e-15, ftol=1e-15, gtol=1e-15, method="trf"
        )
        f, d = float(sol.x[0]), float(sol.x[1])
    else:
        d = d0

        def res1(theta: np.ndarray) -> np.ndarray:
            return (y - d * (theta[0] - k)) / w

        sol = least_squares(res1, x0=[f0], loss="huber", f_scale=huber_c, xtol=1e-15, ftol=1e-15, gtol=1e-15)
        f = float(sol.x[0])
    dk = k[None, :] - k[:, None]
    upper = dk > 0
    box_lo = ((sb[:, None] - sa[None, :]) / np.where(upper, dk, np.nan))[upper]
    box_hi = ((sa[:, None] - sb[None, :]) / np.where(upper, dk, np.nan))[upper]
    return {
        "forward": f,
        "discount_factor": d,
        "forward_lo": float(np.max(k + sb / d)),
        "forward_hi": float(np.min(k + sa / d)),
        "discount_lo": float(box_lo.max()) if box_lo.size else -math.inf,
        "discount_hi": float(box_hi.min()) if box_hi.size else math.inf,
        "n_pairs": int(k.size),
        "rmse": float(np.sqrt(np.mean((y - d * (f - k)) ** 2))),
    }
