"""Exact arbitrage checks of raw-SVI slices as continuous functions (Numba).

Raw SVI ``w(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2))``, parameter rows ``(a, b, rho, m, sigma)``.

Calendar (:func:`calendar_gap`): ``D(k) = w_hi(k) - w_lo(k) >= 0`` for every real ``k``. With
``L(k) = (a_h - a_l) + b_h rho_h (k - m_h) - b_l rho_l (k - m_l)`` and ``R(k) = sqrt((k - m)^2 + sigma^2)``,
``D = 0`` means ``L + b_h R_h = b_l R_l``; squaring twice gives the quartic
``P^2 - 4 b_h^2 L^2 R_h^2 = 0`` with ``P = b_l^2 R_l^2 - L^2 - b_h^2 R_h^2``, whose real roots contain every
crossing of the two slices (and spurious roots of the squared equations, which only subdivide further).
Between consecutive candidate roots ``D`` keeps its sign, so a bounded golden-section minimum of ``D`` on
each interval (and on each tail) decides the sign and gives the minimum; the asymptotic wing slopes
``b (1 +- rho)`` decide the limits. The answer is exact up to the accuracy of the roots (about 1e-8 in k
at a double root, where ``D`` dips by ~1e-16).

Butterfly (:func:`min_g`): Gatheral-Jacquier ``g(k) >= 0`` on an interval. In ``u`` with
``k - m = sigma sinh(u)``, ``w = a + b sigma (rho sinh u + cosh u)``, ``w' = b (rho + tanh u)``,
``w'' = b / (sigma cosh^3 u)``: ``g`` is smooth on an O(1) scale in ``u`` whatever ``sigma``, so a uniform
u-grid (step <= 0.05) with every local minimum refined by golden section finds its minimum reliably.
Beyond the interval, Lee's moment bound ``b (1 + |rho|) <= 2`` gives ``g -> 1/4 - slope^2/16 >= 0`` in the
wings.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_GOLD = 0.3819660112501051  # 2 - golden ratio
_U_STEP = 0.05  # u-grid step of the butterfly check
_MAX_U_POINTS = 4000


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def svi_w(k, a, b, rho, m, sig):
    x = k - m
    return a + b * (rho * x + math.sqrt(x * x + sig * sig))


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def g_scalar(k, a, b, rho, m, sig):
    """Gatheral-Jacquier g(k); NaN where w(k) <= 0 (g undefined)."""
    x = k - m
    r = math.sqrt(x * x + sig * sig)
    w = a + b * (rho * x + r)
    if not w > 0.0:
        return math.nan
    w1 = b * (rho + x / r)
    w2 = b * sig * sig / (r * r * r)
    t = 1.0 - k * w1 / (2.0 * w)
    return t * t - 0.25 * w1 * w1 * (1.0 / w + 0.25) + 0.5 * w2


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def g_of_u(u, a, b, rho, m, sig):
    """g at ``k = m + sigma sinh(u)``; -inf where w <= 0."""
    sh = math.sinh(u)
    ch = math.cosh(u)
    k = m + sig * sh
    w = a + b * sig * (rho * sh + ch)
    if not w > 0.0:
        return -math.inf
    th = sh / ch
    w1 = b * (rho + th)
    w2 = b / (sig * ch * ch * ch)
    t = 1.0 - k * w1 / (2.0 * w)
    return t * t - 0.25 * w1 * w1 * (1.0 / w + 0.25) + 0.5 * w2


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def min_variance(a, b, rho, sig):
    return a + b * sig * math.sqrt(max(1.0 - rho * rho, 0.0))


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def min_g(a, b, rho, m, sig, klo, khi, min_points):
    """Minimum of g on ``[klo, khi]`` and where it is reached: u-grid of step <= 0.05 (at least
    ``min_points`` points), each local minimum refined by golden section. Returns ``(-inf, k)`` when the
    slice's minimum total variance is not positive (w <= 0 somewhere on the real line)."""
    if not min_variance(a, b, rho, sig) > 0.0:
        return -math.inf, m - sig * rho / math.sqrt(max(1.0 - rho * rho, 1e-300))
    if not b > 0.0:
        return 1.0, 0.5 * (klo + khi)  # a flat slice: g = 1
    ulo = math.asinh((klo - m) / sig)
    uhi = math.asinh((khi - m) / sig)
    n = int(math.ceil((uhi - ulo) / _U_STEP)) + 1
    n = max(n, min_points, 3)
    n = min(n, _MAX_U_POINTS)
    h = (uhi - ulo) / (n - 1)
    g = np.empty(n)
    for j in range(n):
        g[j] = g_of_u(ulo + j * h, a, b, rho, m, sig)
    best = math.inf
    bu = ulo
    for j in range(n):
        left = g[j - 1] if j > 0 else math.inf
        right = g[j + 1] if j < n - 1 else math.inf
        if not (g[j] <= left and g[j] <= right):
            continue
        if g[j] < best:
            best = g[j]
            bu = ulo + j * h
        if best == -math.inf:
            break
        # golden section on the bracket around the grid minimum
        lo = ulo + max(j - 1, 0) * h
        hi = ulo + min(j + 1, n - 1) * h
        x1 = lo + _GOLD * (hi - lo)
        x2 = hi - _GOLD * (hi - lo)
        f1 = g_of_u(x1, a, b, rho, m, sig)
        f2 = g_of_u(x2, a, b, rho, m, sig)
        for _ in range(60):
            if hi - lo < 1e-12:
                break
            if f1 <= f2:
                hi = x2
                x2 = x1
                f2 = f1
                x1 = lo + _GOLD * (hi - lo)
                f1 = g_of_u(x1, a, b, rho, m, sig)
            else:
                lo = x1
                x1 = x2
                f1 = f2
                x2 = hi - _GOLD * (hi - lo)
                f2 = g_of_u(x2, a, b, rho, m, sig)
        if f1 < best:
            best = f1
            bu = x1
        if f2 < best:
            best = f2
            bu = x2
    return best, m + sig * math.sinh(bu)


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def min_g_coarse(a, b, rho, m, sig, klo, khi, npts, extra_k, n_extra):
    """Minimum of g over ``npts`` points uniform in u on ``[klo, khi]`` plus the points ``extra_k[:n_extra]``
    (no refinement: the penalty of the constrained search); -inf where w <= 0."""
    if not min_variance(a, b, rho, sig) > 0.0:
        return -math.inf
    ulo = math.asinh((klo - m) / sig)
    uhi = math.asinh((khi - m) / sig)
    h = (uhi - ulo) / (npts - 1)
    best = math.inf
    for j in range(npts):
        gj = g_of_u(ulo + j * h, a, b, rho, m, sig)
        if gj < best:
            best = gj
    for j in range(n_extra):
        gj = g_scalar(extra_k[j], a, b, rho, m, sig)
        if not gj == gj:
            return -math.inf
        if gj < best:
            best = gj
    return best


# ---- calendar: exact, through the quartic of crossings ----------------------------------------------------
@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _pmul(p, q):
    r = np.zeros(p.shape[0] + q.shape[0] - 1)
    for i in range(p.shape[0]):
        for j in range(q.shape[0]):
            r[i + j] += p[i] * q[j]
    return r


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def crossing_candidates(hi, lo, out):
    """Real candidates for the crossings of two raw-SVI slices (roots of the quartic above), written into
    ``out`` (length >= 4) in increasing order; returns how many. -1 when the quartic vanishes identically
    (the slices coincide, or differ by a shape without crossings the quartic cannot see)."""
    ah, bh, rh, mh, sh = hi[0], hi[1], hi[2], hi[3], hi[4]
    al, bl, rl, ml, sl = lo[0], lo[1], lo[2], lo[3], lo[4]
    L = np.empty(2)
    L[0] = ah - al - bh * rh * mh + bl * rl * ml
    L[1] = bh * rh - bl * rl
    Rh = np.empty(3)
    Rh[0] = mh * mh + sh * sh
    Rh[1] = -2.0 * mh
    Rh[2] = 1.0
    Rl = np.empty(3)
    Rl[0] = ml * ml + sl * sl
    Rl[1] = -2.0 * ml
    Rl[2] = 1.0
    LL = _pmul(L, L)
    P = np.empty(3)
    for i in range(3):
        P[i] = bl * bl * Rl[i] - LL[i] - bh * bh * Rh[i]
    Q = _pmul(P, P)
    T = _pmul(LL, Rh)
    for i in range(5):
        Q[i] -= 4.0 * bh * bh * T[i]
    scale = 0.0
    for i in range(5):
        scale = max(scale, abs(Q[i]))
    if not scale > 0.0:
        return -1
    deg = 4
    while deg > 0 and abs(Q[deg]) <= 1e-14 * scale:
        deg -= 1
    if deg == 0:
        return -1 if abs(Q[0]) <= 1e-14 * scale else 0
    c = np.empty(deg + 1, dtype=np.complex128)
    for i in range(deg + 1):
        c[i] = Q[deg - i] / scale
    r = np.roots(c)
    nr = 0
    for i in range(r.shape[0]):
        re = r[i].real
        if math.isfinite(re) and abs(r[i].imag) <= 1e-6 * (1.0 + abs(re)):
            out[nr] = re
            nr += 1
    # insertion sort
    for i in range(1, nr):
        x = out[i]
        j = i - 1
        while j >= 0 and out[j] > x:
            out[j + 1] = out[j]
            j -= 1
        out[j + 1] = x
    return nr


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _gap(k, hi, lo):
    return svi_w(k, hi[0], hi[1], hi[2], hi[3], hi[4]) - svi_w(k, lo[0], lo[1], lo[2], lo[3], lo[4])


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _golden_gap(x0, x1, hi, lo):
    """Bounded golden-section minimum of D on [x0, x1], the end points included; returns (D, k)."""
    bf = _gap(x0, hi, lo)
    bk = x0
    f = _gap(x1, hi, lo)
    if f < bf:
        bf = f
        bk = x1
    a_ = x0
    b_ = x1
    p1 = a_ + _GOLD * (b_ - a_)
    p2 = b_ - _GOLD * (b_ - a_)
    f1 = _gap(p1, hi, lo)
    f2 = _gap(p2, hi, lo)
    for _ in range(80):
        if b_ - a_ < 1e-12 * (1.0 + abs(a_)):
            break
        if f1 <= f2:
            b_ = p2
            p2 = p1
            f2 = f1
            p1 = a_ + _GOLD * (b_ - a_)
            f1 = _gap(p1, hi, lo)
        else:
            a_ = p1
            p1 = p2
            f1 = f2
            p2 = b_ - _GOLD * (b_ - a_)
            f2 = _gap(p2, hi, lo)
    if f1 < bf:
        bf = f1
        bk = p1
    if f2 < bf:
        bf = f2
        bk = p2
    return bf, bk


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def crossing_intervals(hi, lo, roots):
    """The crossing candidates of two slices into ``roots`` (length 4) and the search window around them:
    returns ``(n, left, right, centre)`` with ``n >= 0`` candidates; the intervals between ``left``,
    the candidates and ``right`` are where ``w_hi - w_lo`` keeps one sign at most once each (past the window
    the wings decide)."""
    nr = crossing_candidates(hi, lo, roots)
    span = 1.0 + 10.0 * max(hi[4], lo[4]) + abs(hi[3] - lo[3])
    centre = 0.5 * (hi[3] + lo[3])
    if nr <= 0:
        return 0, centre - span, centre + span, centre
    return nr, roots[0] - span, roots[nr - 1] + span, centre


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def calendar_gap(hi, lo):
    """``min_k w_hi(k) - w_lo(k)`` over the whole real line and a ``k`` where it is reached (the most
    violating crossing interval's minimum when negative). ``-inf`` when a wing of ``w_hi`` is less steep
    than ``w_lo``'s (the gap tends to -inf), with ``k = -+inf``."""
    sr = hi[1] * (1.0 + hi[2]) - lo[1] * (1.0 + lo[2])
    sl = hi[1] * (1.0 - hi[2]) - lo[1] * (1.0 - lo[2])
    tol = 1e-12 * (hi[1] + lo[1])
    if sr < -tol:
        return -math.inf, math.inf
    if sl < -tol:
        return -math.inf, -math.inf
    roots = np.empty(4)
    nr, left, right, centre = crossing_intervals(hi, lo, roots)
    best, bk = _golden_gap(left, roots[0] if nr > 0 else right, hi, lo)
    for i in range(nr):
        x1 = roots[i + 1] if i + 1 < nr else right
        f, kk = _golden_gap(roots[i], x1, hi, lo)
        if f < best:
            best = f
            bk = kk
    # far out in the wings (the tails keep their sign up to infinity; these points catch a negative limit
    # where a wing slope difference is 0)
    for far in (-1e6, 1e6):
        f = _gap(centre + far, hi, lo)
        if f < best:
            best = f
            bk = centre + far
    return best, bk
