"""Numba kernels for batched raw-SVI fits: the quasi-explicit method with an exact inner solve.

Raw SVI on total implied variance ``w(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2))``.

Quasi-explicit method (Zeliade 2009; De Marco and Martini): for fixed ``(m, sigma)`` put
``y = (k - m) / sigma``, ``z = sqrt(y^2 + 1)``, ``c = b sigma``, ``d = rho b sigma``; then
``w = a + d y + c z`` is linear in ``(a, d, c)`` and the weighted least-squares problem is a convex
3-parameter problem solved *exactly* here:

* ``a`` is free, so it is eliminated (weighted centring) and ``(d, c)`` minimise a 2x2 convex quadratic
  over the quadrilateral ``|d| <= rho_max c``, ``c + |d| <= S sigma`` (``|rho| < 1`` and the wing slope
  ``b (1 + |rho|) <= S``); the minimiser is the interior stationary point when feasible, else the best
  of the four edge minimisers (a convex quadratic has its constrained minimum on the boundary);
* the minimum total variance ``a + b sigma sqrt(1 - rho^2) = a + sqrt(c^2 - d^2) >= 0`` is a convex
  constraint; when the polyhedral solution violates it, the optimum lies on its boundary, parametrised as
  ``a = -q``, ``c = q cosh t``, ``d = q sinh t``: for fixed ``t`` the fit is a 1-D clipped linear
  least-squares problem in ``q`` whose sums follow in O(1) from the moments already formed, and ``t`` is
  searched on a grid then by golden section.

The outer 2-D problem over ``(m, log sigma)`` is not convex: a 5x5 grid picks starts and Nelder-Mead
polishes the best few. Numeric contract: the inner solve agrees with scipy SLSQP on the same constrained
problem to ~1e-10 relative objective (``tests/test_svi.py``); the outer search reaches within 1% of the
best objective found by scipy ``least_squares`` from several starts on >= 99% of SPX-like slices
(``benchmarks/bench_svi.py``).

Butterfly arbitrage: Gatheral-Jacquier ``g(k) = (1 - k w'/(2w))^2 - w'^2/4 (1/w + 1/4) + w''/2 >= 0``.
Calendar arbitrage: ``w(k, t2) >= w(k, t1)`` for ``t2 > t1``. Both are checked on a grid that extends
``margin`` beyond the quoted log-moneyness range. For fixed ``(m, sigma)`` the calendar check at the grid
points is linear in ``(a, d, c)``, so a slice that only fails it is refitted exactly: the same outer
search with a 3-variable QP inside (:func:`inner_solve_cal`, Goldfarb-Idnani :func:`qp3`). Butterfly
violations get a penalised 5-parameter refit; the last resort moves a slice along the straight line in
raw parameters towards an arbitrage-free SSVI target (see :func:`surface_targets`) just far enough to
pass every check (bisection on the line position).
"""

from __future__ import annotations

import math

import numba
import numpy as np

# status codes, mirrored by volfast.svi.core.SVIStatus
OK = 0
REPAIRED = 1
TOO_FEW_POINTS = 2
INVALID_INPUT = 3
NO_FIT = 4

_GOLD = 0.3819660112501051  # 2 - golden ratio
_N_M_GRID = 5
_N_S_GRID = 5
_N_T_GRID = 17
# the penalised refit aims a little inside the feasible set, so that a refit checked on a coarse grid
# also passes the full-grid checks
_G_MARGIN = 1e-3
_CAL_MARGIN = 1e-4
_N_MU = 7  # penalty stages of the constrained refit (weights x10 apart)
_N_COARSE = 101  # grid points of the checks while the refit searches


# ---- the inner (m, sigma fixed) problem -----------------------------------------------------------------
@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _edge(d0, c0, d1, c1, cyy, cyz, czz, cyv, czv):
    """Minimise the centred quadratic on the segment (d0, c0) -> (d1, c1); returns (value, d, c)."""
    dd = d1 - d0
    dc = c1 - c0
    # Q(d, c) = d^2 cyy + 2 d c cyz + c^2 czz - 2 (d cyv + c czv) (constant cvv dropped)
    qa = dd * dd * cyy + 2.0 * dd * dc * cyz + dc * dc * czz
    qb = 2.0 * (d0 * dd * cyy + (d0 * dc + c0 * dd) * cyz + c0 * dc * czz - dd * cyv - dc * czv)
    t = 0.0
    if qa > 0.0:
        t = -0.5 * qb / qa
        if t < 0.0:
            t = 0.0
        elif t > 1.0:
            t = 1.0
    elif qb < 0.0:
        t = 1.0
    d = d0 + t * dd
    c = c0 + t * dc
    val = d * d * cyy + 2.0 * d * c * cyz + c * c * czz - 2.0 * (d * cyv + c * czv)
    return val, d, c


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _fill_yz(k, v, wt, m, sig, y, z):
    """``y = (k - m) / sigma``, ``z = sqrt(y^2 + 1)`` into the scratch arrays; returns the weighted sums
    (sw, sy, sz, sv)."""
    sw = 0.0
    sy = 0.0
    sz = 0.0
    sv = 0.0
    for i in range(k.shape[0]):
        yi = (k[i] - m) / sig
        zi = math.sqrt(yi * yi + 1.0)
        y[i] = yi
        z[i] = zi
        sw += wt[i]
        sy += wt[i] * yi
        sz += wt[i] * zi
        sv += wt[i] * v[i]
    return sw, sy, sz, sv


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def inner_solve(k, v, wt, m, sig, slope, rho_max, y, z):
    """Exact constrained weighted least squares for fixed ``(m, sigma)``.

    Returns ``(objective, a, b, rho)`` with objective ``sum wt (w(k) - v)^2``. ``y`` and ``z`` are
    scratch arrays of the slice's length.
    """
    n = k.shape[0]
    sw, sy, sz, sv = _fill_yz(k, v, wt, m, sig, y, z)
    my = sy / sw
    mz = sz / sw
    mv = sv / sw
    cyy = 0.0
    cyz = 0.0
    czz = 0.0
    cyv = 0.0
    czv = 0.0
    cvv = 0.0
    for i in range(n):
        yc = y[i] - my
        zc = z[i] - mz
        vc = v[i] - mv
        w = wt[i]
        cyy += w * yc * yc
        cyz += w * yc * zc
        czz += w * zc * zc
        cyv += w * yc * vc
        czv += w * zc * vc
        cvv += w * vc * vc
    smax = slope * sig
    c1 = smax / (1.0 + rho_max)
    d1 = rho_max * c1
    best = math.inf
    bd = 0.0
    bc = 0.0
    det = cyy * czz - cyz * cyz
    if det > 1e-13 * (cyy * czz + 1e-300):
        d = (czz * cyv - cyz * czv) / det
        c = (cyy * czv - cyz * cyv) / det
        if abs(d) <= rho_max * c and c + abs(d) <= smax:
            best = d * d * cyy + 2.0 * d * c * cyz + c * c * czz - 2.0 * (d * cyv + c * czv)
            bd = d
            bc = c
    if best == math.inf:
        # the four edges of the feasible quadrilateral (0,0) -> (d1,c1) -> (0,smax) -> (-d1,c1) -> (0,0)
        val, d, c = _edge(0.0, 0.0, d1, c1, cyy, cyz, czz, cyv, czv)
        if val < best:
            best, bd, bc = val, d, c
        val, d, c = _edge(d1, c1, 0.0, smax, cyy, cyz, czz, cyv, czv)
        if val < best:
            best, bd, bc = val, d, c
        val, d, c = _edge(0.0, smax, -d1, c1, cyy, cyz, czz, cyv, czv)
        if val < best:
            best, bd, bc = val, d, c
        val, d, c = _edge(-d1, c1, 0.0, 0.0, cyy, cyz, czz, cyv, czv)
        if val < best:
            best, bd, bc = val, d, c
    a = mv - bd * my - bc * mz
    f = cvv + best
    disc = bc * bc - bd * bd
    if a + math.sqrt(disc if disc > 0.0 else 0.0) < 0.0:
        mom = np.empty(10)
        mom[0] = sw
        mom[1] = sy
        mom[2] = sz
        mom[3] = sv
        mom[4] = cyy + sw * my * my
        mom[5] = cyz + sw * my * mz
        mom[6] = czz + sw * mz * mz
        mom[7] = cyv + sw * my * mv
        mom[8] = czv + sw * mz * mv
        mom[9] = cvv + sw * mv * mv
        return _min_variance_face(mom, sig, slope, rho_max)
    if f < 0.0:
        f = 0.0
    b = bc / sig
    rho = bd / bc if bc > 0.0 else 0.0
    return f, a, b, rho


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _face_value(mom, t, sig, slope):
    """Objective and ``q`` on the minimum-variance face at ``t``, in O(1) from the raw weighted moments
    ``mom`` = (sw, sy, sz, sv, syy, syz, szz, syv, szv, svv) of ``y``, ``z``, ``v``."""
    sw, sy, sz, sv = mom[0], mom[1], mom[2], mom[3]
    syy, syz, szz = mom[4], mom[5], mom[6]
    syv, szv, svv = mom[7], mom[8], mom[9]
    sh = math.sinh(t)
    ch = math.cosh(t)
    # g = sh y + ch z - 1
    sgv = sh * syv + ch * szv - sv
    sgg = sh * sh * syy + ch * ch * szz + 2.0 * sh * ch * syz - 2.0 * sh * sy - 2.0 * ch * sz + sw
    q = sgv / sgg if sgg > 0.0 else 0.0
    qmax = slope * sig * math.exp(-abs(t))
    if q < 0.0:
        q = 0.0
    elif q > qmax:
        q = qmax
    f = svv - 2.0 * q * sgv + q * q * sgg
    return (f if f > 0.0 else 0.0), q


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _min_variance_face(mom, sig, slope, rho_max):
    """Best fit with the minimum total variance exactly 0: ``a = -q, c = q cosh t, d = q sinh t``."""
    tmax = math.atanh(rho_max)
    step = 2.0 * tmax / (_N_T_GRID - 1)
    bi = 0
    bf = math.inf
    for j in range(_N_T_GRID):
        f, q = _face_value(mom, -tmax + j * step, sig, slope)
        if f < bf:
            bf = f
            bi = j
    lo = -tmax + max(bi - 1, 0) * step
    hi = -tmax + min(bi + 1, _N_T_GRID - 1) * step
    x1 = lo + _GOLD * (hi - lo)
    x2 = hi - _GOLD * (hi - lo)
    f1, q1 = _face_value(mom, x1, sig, slope)
    f2, q2 = _face_value(mom, x2, sig, slope)
    for _ in range(80):
        if hi - lo < 1e-12:
            break
        if f1 <= f2:
            hi = x2
            x2 = x1
            f2 = f1
            x1 = lo + _GOLD * (hi - lo)
            f1, q1 = _face_value(mom, x1, sig, slope)
        else:
            lo = x1
            x1 = x2
            f1 = f2
            x2 = hi - _GOLD * (hi - lo)
            f2, q2 = _face_value(mom, x2, sig, slope)
    t = x1 if f1 <= f2 else x2
    f, q = _face_value(mom, t, sig, slope)
    b = q * math.cosh(t) / sig
    rho = math.tanh(t)
    return f, -q, b, rho


# ---- the inner problem under exact calendar bounds -------------------------------------------------------
_CAL_EPS = 1e-9  # relative slack of the exact calendar bounds over the check (rounding of raw <-> (a, d, c))
_QP_MAXIT = 60
_CAL_MAXIT = 200  # Nelder-Mead iterations per start of the calendar-exact refit


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _solve_small(A, b, q, x):
    """Solve the ``q`` x ``q`` system ``A x = b`` (q <= 3) by Gaussian elimination with partial pivoting;
    False when singular. ``A`` and ``b`` are overwritten."""
    for c in range(q):
        piv = c
        for r in range(c + 1, q):
            if abs(A[r, c]) > abs(A[piv, c]):
                piv = r
        if not abs(A[piv, c]) > 0.0:
            return False
        if piv != c:
            for j in range(q):
                A[c, j], A[piv, j] = A[piv, j], A[c, j]
            b[c], b[piv] = b[piv], b[c]
        for r in range(c + 1, q):
            f = A[r, c] / A[c, c]
            for j in range(c, q):
                A[r, j] -= f * A[c, j]
            b[r] -= f * b[c]
    for c in range(q - 1, -1, -1):
        t = b[c]
        for j in range(c + 1, q):
            t -= A[c, j] * x[j]
        x[c] = t / A[c, c]
    return True


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def qp3(G, g, C, cb, nc, x):
    """``min 1/2 x'Gx + g'x`` over ``x`` in R^3 subject to ``C[i] . x >= cb[i]`` for ``i < nc``, ``G``
    symmetric positive definite: the dual active-set method of Goldfarb and Idnani (1983). Starts at the
    unconstrained minimum and adds the most violated constraint (by distance) until none is violated,
    dropping constraints whose multiplier would turn negative. Writes ``x``; False when the constraints
    are inconsistent (or the iteration cap is hit)."""
    Gi = np.empty((3, 3))
    xc = np.empty(3)
    for col in range(3):
        e = np.zeros(3)
        e[col] = 1.0
        if not _solve_small(G.copy(), e, 3, xc):
            return False
        for r in range(3):
            Gi[r, col] = xc[r]
    for r in range(3):
        x[r] = -(Gi[r, 0] * g[0] + Gi[r, 1] * g[1] + Gi[r, 2] * g[2])
    act = np.empty(3, np.int64)
    u = np.zeros(4)
    up = np.zeros(4)
    q = 0
    wv = np.empty(3)
    zv = np.empty(3)
    GN = np.empty((3, 3))
    M = np.empty((3, 3))
    h = np.empty(3)
    r_ = np.empty(3)
    nrm = np.empty(nc)
    for i in range(nc):
        nrm[i] = math.sqrt(C[i, 0] * C[i, 0] + C[i, 1] * C[i, 1] + C[i, 2] * C[i, 2])
    for _ in range(_QP_MAXIT):
        xs = abs(x[0]) + abs(x[1]) + abs(x[2])
        p = -1
        worst = 0.0
        for i in range(nc):
            s = C[i, 0] * x[0] + C[i, 1] * x[1] + C[i, 2] * x[2] - cb[i]
            if s < -1e-13 * (abs(cb[i]) + nrm[i] * xs) and s / nrm[i] < worst:
                isact = False
                for j in range(q):
                    if act[j] == i:
                        isact = True
                if not isact:
                    worst = s / nrm[i]
                    p = i
        if p < 0:
            return True
        for j in range(q):
            up[j] = u[j]
        up[q] = 0.0
        added = False
        for _inner in range(_QP_MAXIT):
            # w = G^-1 n+, r = (N' G^-1 N)^-1 N' w, z = w - G^-1 N r
            for a_ in range(3):
                wv[a_] = Gi[a_, 0] * C[p, 0] + Gi[a_, 1] * C[p, 1] + Gi[a_, 2] * C[p, 2]
            for j in range(q):
                ia = act[j]
                for a_ in range(3):
                    GN[a_, j] = Gi[a_, 0] * C[ia, 0] + Gi[a_, 1] * C[ia, 1] + Gi[a_, 2] * C[ia, 2]
            for j in range(q):
                ia = act[j]
                h[j] = C[ia, 0] * wv[0] + C[ia, 1] * wv[1] + C[ia, 2] * wv[2]
                for l_ in range(q):
                    M[j, l_] = C[ia, 0] * GN[0, l_] + C[ia, 1] * GN[1, l_] + C[ia, 2] * GN[2, l_]
            if q > 0 and not _solve_small(M, h, q, r_):
                return False
            for a_ in range(3):
                t = wv[a_]
                for j in range(q):
                    t -= GN[a_, j] * r_[j]
                zv[a_] = t
            t1 = math.inf
            kk = -1
            for j in range(q):
                if r_[j] > 0.0:
                    ratio = up[j] / r_[j]
                    if ratio < t1:
                        t1 = ratio
                        kk = j
            zn = zv[0] * C[p, 0] + zv[1] * C[p, 1] + zv[2] * C[p, 2]
            wn = wv[0] * C[p, 0] + wv[1] * C[p, 1] + wv[2] * C[p, 2]
            sp = C[p, 0] * x[0] + C[p, 1] * x[1] + C[p, 2] * x[2] - cb[p]
            # with 3 active constraints z is 0 up to rounding: only a partial (dual) step is possible
            t2 = -sp / zn if q < 3 and zn > 1e-12 * wn else math.inf
            t = min(t1, t2)
            if t == math.inf:
                return False
            for j in range(q):
                up[j] -= t * r_[j]
            up[q] += t
            if t2 < math.inf:
                for a_ in range(3):
                    x[a_] += t * zv[a_]
            if t2 <= t1:
                act[q] = p
                for j in range(q + 1):
                    u[j] = up[j]
                q += 1
                added = True
                break
            # drop the blocking constraint kk (its multiplier reached zero) and take the step again
            for j in range(kk, q):
                act[j] = act[j + 1] if j + 1 < q else act[j]
                up[j] = up[j + 1]
            q -= 1
        if not added:
            return False
    return False


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _bound_rows(C, cb, r0, klo, khi, npts, ctx, at, sign, m, sig):
    """Rows ``r0..r0 + npts`` of ``C x >= cb``: ``sign * w(k_j) >= sign * w_b(k_j)`` (1: at or above, -1: at
    or below) at ``npts`` points of ``[klo, khi]``, ``w_b`` the raw SVI ``ctx[at:at + 5]``, with a relative
    slack ``_CAL_EPS`` towards the safe side; ``w(k_j) = a + d y_j + c z_j`` at ``(m, sigma)``."""
    hh = (khi - klo) / (npts - 1)
    for j in range(npts):
        kk = klo + j * hh
        wb = svi_w(kk, ctx[at], ctx[at + 1], ctx[at + 2], ctx[at + 3], ctx[at + 4])
        yj = (kk - m) / sig
        r = r0 + j
        C[r, 0], C[r, 1], C[r, 2] = sign, sign * yj, sign * math.sqrt(yj * yj + 1.0)
        cb[r] = sign * wb + _CAL_EPS * abs(wb)


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def inner_solve_cal(k, v, wt, m, sig, slope, rho_max, y, z, ctx):
    """:func:`inner_solve` with the calendar checks as exact linear constraints: for fixed ``(m, sigma)``,
    ``w(k_j) = a + d y_j + c z_j`` is linear in ``(a, d, c)``, so "at or above the previous slice at the
    check points" (``ctx[4] > 0``: ``ctx[3]`` points on ``[ctx[5], ctx[6]]``, previous slice
    ``ctx[8:13]``) and "at or below the next slice" (``ctx[13] > 0``: points on ``[ctx[19], ctx[20]]``,
    next slice ``ctx[14:19]``) join the wing-slope and ``|rho|`` bounds in a 3-variable convex QP
    (:func:`qp3`). Returns ``(objective, a, b, rho)``; objective inf where the bounds are inconsistent
    for this ``(m, sigma)`` or the solution has negative minimum total variance."""
    n = k.shape[0]
    npts = int(ctx[3])
    nlo = npts if ctx[4] > 0.0 else 0
    nhi = npts if ctx[13] > 0.0 else 0
    nc = 4 + nlo + nhi
    C = np.empty((nc, 3))
    cb = np.empty(nc)
    # |d| <= rho_max c and c + |d| <= slope sigma
    C[0, 0], C[0, 1], C[0, 2], cb[0] = 0.0, -1.0, rho_max, 0.0
    C[1, 0], C[1, 1], C[1, 2], cb[1] = 0.0, 1.0, rho_max, 0.0
    C[2, 0], C[2, 1], C[2, 2], cb[2] = 0.0, -1.0, -1.0, -slope * sig
    C[3, 0], C[3, 1], C[3, 2], cb[3] = 0.0, 1.0, -1.0, -slope * sig
    if nlo:
        _bound_rows(C, cb, 4, ctx[5], ctx[6], npts, ctx, 8, 1.0, m, sig)
    if nhi:
        _bound_rows(C, cb, 4 + nlo, ctx[19], ctx[20], npts, ctx, 14, -1.0, m, sig)
    sw, sy, sz, sv = _fill_yz(k, v, wt, m, sig, y, z)
    syy = 0.0
    syz = 0.0
    szz = 0.0
    syv = 0.0
    szv = 0.0
    for i in range(n):
        w = wt[i]
        syy += w * y[i] * y[i]
        syz += w * y[i] * z[i]
        szz += w * z[i] * z[i]
        syv += w * y[i] * v[i]
        szv += w * z[i] * v[i]
    G = np.empty((3, 3))
    G[0, 0], G[0, 1], G[0, 2] = sw / sw, sy / sw, sz / sw
    G[1, 0], G[1, 1], G[1, 2] = sy / sw, syy / sw, syz / sw
    G[2, 0], G[2, 1], G[2, 2] = sz / sw, syz / sw, szz / sw
    g = np.empty(3)
    g[0], g[1], g[2] = -sv / sw, -syv / sw, -szv / sw
    x = np.empty(3)
    if not qp3(G, g, C, cb, nc, x):
        return math.inf, 0.0, 0.0, 0.0
    a, d, c = x[0], x[1], x[2]
    disc = c * c - d * d
    if a + math.sqrt(disc if disc > 0.0 else 0.0) < 0.0:
        return math.inf, 0.0, 0.0, 0.0
    f = 0.0
    for i in range(n):
        e = a + d * y[i] + c * z[i] - v[i]
        f += wt[i] * e * e
    b = c / sig
    rho = d / c if c > 0.0 else 0.0
    return f, a, b, rho


# ---- the outer (m, log sigma) search --------------------------------------------------------------------
@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _outer(k, v, wt, x0, x1, lo0, hi0, lo1, hi1, fscale, slope, rho_max, y, z, res, ctx):
    """Objective at ``(m, log sigma)``, clamped to the box with a quadratic penalty outside it.
    ``res`` receives (a, b, rho, m, sigma) of the clamped point. With ``ctx[0] > 0`` an exact (L1)
    penalty on arbitrage is added (see :func:`_arb_penalty`)."""
    m = min(max(x0, lo0), hi0)
    ls = min(max(x1, lo1), hi1)
    sig = math.exp(ls)
    if ctx[0] > 1.5:
        f, a, b, rho = inner_solve_cal(k, v, wt, m, sig, slope, rho_max, y, z, ctx)
    else:
        f, a, b, rho = inner_solve(k, v, wt, m, sig, slope, rho_max, y, z)
    res[0] = a
    res[1] = b
    res[2] = rho
    res[3] = m
    res[4] = sig
    pen = (x0 - m) ** 2 + (x1 - ls) ** 2
    if 0.0 < ctx[0] < 1.5:
        f += ctx[7] * _arb_penalty(res, ctx)
    return f + fscale * pen


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _arb_penalty(p, ctx):
    """Mean shortfall of g below ``_G_MARGIN`` on the butterfly grid plus the mean shortfall of the
    relative calendar gap ``w / w_prev - 1`` below ``_CAL_MARGIN`` on the calendar grid.

    ``ctx`` = (on, klo, khi, npts, has_prev, cklo, ckhi, scale, prev a, b, rho, m, sigma, has_next,
    next a, b, rho, m, sigma, next cklo, next ckhi): with ``has_next`` the slice must also stay below
    the next one."""
    a, b, rho, m, sig = p[0], p[1], p[2], p[3], p[4]
    npts = int(ctx[3])
    pen = 0.0
    mv = a + b * sig * math.sqrt(max(1.0 - rho * rho, 0.0))
    if mv < 0.0:
        pen -= mv
    h = (ctx[2] - ctx[1]) / (npts - 1)
    for j in range(npts):
        g = g_scalar(ctx[1] + j * h, a, b, rho, m, sig)
        if not g == g:
            pen += 1.0 / npts
        elif g < _G_MARGIN:
            pen += (_G_MARGIN - g) / npts
    if ctx[4] > 0.0:  # at or above the previous slice ``ctx[8:13]`` on [ctx[5], ctx[6]]
        pen += _calendar_shortfall(p, 0, ctx, 8, ctx[5], ctx[6], npts)
    if ctx[13] > 0.0:  # at or below the next slice ``ctx[14:19]`` on [ctx[19], ctx[20]]
        pen += _calendar_shortfall(ctx, 14, p, 0, ctx[19], ctx[20], npts)
    return pen


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _calendar_shortfall(hi, ih, lo, il, klo, khi, npts):
    """Mean shortfall below ``_CAL_MARGIN`` of the relative gap ``w_hi / w_lo - 1`` at ``npts`` points of
    ``[klo, khi]``; ``w_hi`` the raw SVI ``hi[ih:ih + 5]``, ``w_lo`` ``lo[il:il + 5]`` (floored at 1e-12)."""
    pen = 0.0
    h = (khi - klo) / (npts - 1)
    for j in range(npts):
        kk = klo + j * h
        w0 = svi_w(kk, lo[il], lo[il + 1], lo[il + 2], lo[il + 3], lo[il + 4])
        w0 = w0 if w0 > 1e-12 else 1e-12
        gap = (svi_w(kk, hi[ih], hi[ih + 1], hi[ih + 2], hi[ih + 3], hi[ih + 4]) - w0) / w0
        if gap < _CAL_MARGIN:
            pen += (_CAL_MARGIN - gap) / npts
    return pen


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _nelder_mead(k, v, wt, sx0, sx1, h0, h1, lo0, hi0, lo1, hi1, fscale, slope, rho_max, y, z, maxit, ctx):
    """2-D Nelder-Mead from (sx0, sx1) with steps (h0, h1). Returns (f, m, log sigma, evaluations)."""
    res = np.empty(5)
    px = np.empty((3, 2))
    fv = np.empty(3)
    px[0, 0] = sx0
    px[0, 1] = sx1
    px[1, 0] = sx0 + h0
    px[1, 1] = sx1
    px[2, 0] = sx0
    px[2, 1] = sx1 + h1
    for j in range(3):
        fv[j] = _outer(
            k, v, wt, px[j, 0], px[j, 1], lo0, hi0, lo1, hi1, fscale, slope, rho_max, y, z, res, ctx
        )
    nev = 3
    for _ in range(maxit):
        # order: ib best, iw worst, im middle
        ib = 0
        iw = 0
        for j in range(1, 3):
            if fv[j] < fv[ib]:
                ib = j
            if fv[j] > fv[iw]:
                iw = j
        if ib == iw:
            iw = (ib + 1) % 3
        im = 3 - ib - iw
        fb = fv[ib]
        size = max(
            abs(px[iw, 0] - px[ib, 0]) + abs(px[iw, 1] - px[ib, 1]),
            abs(px[im, 0] - px[ib, 0]) + abs(px[im, 1] - px[ib, 1]),
        )
        if fv[iw] - fb <= 1e-10 * abs(fb) + 1e-300 and size < 1e-5:
            break
        if size < 1e-9:
            break
        c0 = 0.5 * (px[ib, 0] + px[im, 0])
        c1 = 0.5 * (px[ib, 1] + px[im, 1])
        r0 = 2.0 * c0 - px[iw, 0]
        r1 = 2.0 * c1 - px[iw, 1]
        fr = _outer(k, v, wt, r0, r1, lo0, hi0, lo1, hi1, fscale, slope, rho_max, y, z, res, ctx)
        nev += 1
        if fr < fb:
            e0 = 3.0 * c0 - 2.0 * px[iw, 0]
            e1 = 3.0 * c1 - 2.0 * px[iw, 1]
            fe = _outer(k, v, wt, e0, e1, lo0, hi0, lo1, hi1, fscale, slope, rho_max, y, z, res, ctx)
            nev += 1
            if fe < fr:
                px[iw, 0] = e0
                px[iw, 1] = e1
                fv[iw] = fe
            else:
                px[iw, 0] = r0
                px[iw, 1] = r1
                fv[iw] = fr
        elif fr < fv[im]:
            px[iw, 0] = r0
            px[iw, 1] = r1
            fv[iw] = fr
        else:
            if fr < fv[iw]:  # outside contraction
                q0 = c0 + 0.5 * (r0 - c0)
                q1 = c1 + 0.5 * (r1 - c1)
            else:  # inside contraction
                q0 = c0 + 0.5 * (px[iw, 0] - c0)
                q1 = c1 + 0.5 * (px[iw, 1] - c1)
            fq = _outer(k, v, wt, q0, q1, lo0, hi0, lo1, hi1, fscale, slope, rho_max, y, z, res, ctx)
            nev += 1
            if fq < min(fr, fv[iw]):
                px[iw, 0] = q0
                px[iw, 1] = q1
                fv[iw] = fq
            else:  # shrink towards the best
                for j in range(3):
                    if j != ib:
                        px[j, 0] = px[ib, 0] + 0.5 * (px[j, 0] - px[ib, 0])
                        px[j, 1] = px[ib, 1] + 0.5 * (px[j, 1] - px[ib, 1])
                        fv[j] = _outer(
                            k,
                            v,
                            wt,
                            px[j, 0],
                            px[j, 1],
                            lo0,
                            hi0,
                            lo1,
                            hi1,
                            fscale,
                            slope,
                            rho_max,
                            y,
                            z,
                            res,
                            ctx,
                        )
                        nev += 1
    ib = 0
    for j in range(1, 3):
        if fv[j] < fv[ib]:
            ib = j
    return fv[ib], px[ib, 0], px[ib, 1], nev


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _search(k, v, wt, slope, rho_max, n_starts, maxit, warm, wm, wls, y, z, out, ctx, m_out):
    """Global-ish search over (m, log sigma): grid, then Nelder-Mead from the best ``n_starts`` grid points
    (and from the warm start when ``warm``); ``m`` stays within the quoted range extended by ``m_out``
    times its width. Writes (a, b, rho, m, sigma) into ``out``; returns the
    objective."""
    n = k.shape[0]
    kmin = k[0]
    kmax = k[0]
    fscale = 0.0
    sw = 0.0
    for i in range(n):
        kmin = min(kmin, k[i])
        kmax = max(kmax, k[i])
        fscale += wt[i] * v[i] * v[i]
        sw += wt[i]
    fscale = fscale / sw + 1e-300
    rng = kmax - kmin
    if rng <= 0.0:
        rng = 1e-3
    lo0 = kmin - m_out * rng
    hi0 = kmax + m_out * rng
    lo1 = math.log(1e-3 * rng)
    hi1 = math.log(10.0 * rng)
    res = np.empty(5)
    gf = np.empty(_N_M_GRID * _N_S_GRID)
    g0 = np.empty(_N_M_GRID * _N_S_GRID)
    g1 = np.empty(_N_M_GRID * _N_S_GRID)
    hm = rng / (_N_M_GRID - 1)
    hs = math.log(64.0) / (_N_S_GRID - 1)  # sigma from 0.02 to 1.28 times the quoted k range
    for i in range(_N_M_GRID):
        for j in range(_N_S_GRID):
            x0 = kmin + i * hm
            x1 = math.log(0.02 * rng) + j * hs
            idx = i * _N_S_GRID + j
            gf[idx] = _outer(k, v, wt, x0, x1, lo0, hi0, lo1, hi1, fscale, slope, rho_max, y, z, res, ctx)
            g0[idx] = x0
            g1[idx] = x1
    order = np.argsort(gf)
    bf = math.inf
    bm = 0.0
    bls = 0.0
    for s in range(n_starts + (1 if warm else 0)):
        if s < n_starts:
            sx0 = g0[order[s]]
            sx1 = g1[order[s]]
            h0 = 0.5 * hm
            h1 = 0.5 * hs
        else:
            sx0 = wm
            sx1 = wls
            h0 = 0.1 * hm
            h1 = 0.1 * hs
        f, x0, x1, _ = _nelder_mead(
            k, v, wt, sx0, sx1, h0, h1, lo0, hi0, lo1, hi1, fscale, slope, rho_max, y, z, maxit, ctx
        )
        if f < bf:
            bf = f
            bm = x0
            bls = x1
    # restart once from the best point with a small simplex (Nelder-Mead can stall on kinks)
    f, x0, x1, _ = _nelder_mead(
        k, v, wt, bm, bls, 0.05 * hm, 0.05 * hs, lo0, hi0, lo1, hi1, fscale, slope, rho_max, y, z, maxit, ctx
    )
    if f < bf:
        bf = f
        bm = x0
        bls = x1
    fb = _outer(k, v, wt, bm, bls, lo0, hi0, lo1, hi1, fscale, slope, rho_max, y, z, res, ctx)
    for j in range(5):
        out[j] = res[j]
    return fb


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def svi_w(k, a, b, rho, m, sig):
    x = k - m
    return a + b * (rho * x + math.sqrt(x * x + sig * sig))


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def fit_slice(k, v, wt0, slope, rho_max, robust, huber_c, n_starts, maxit, out, m_out):
    """Fit one slice; ``out`` receives (a, b, rho, m, sigma). Returns the objective: weighted sum of
    squares, or with ``robust`` the Huber loss at the final IRLS scale."""
    n = k.shape[0]
    y = np.empty(n)
    z = np.empty(n)
    wt = wt0.copy()
    ctx = np.zeros(21)
    f = _search(k, v, wt, slope, rho_max, n_starts, maxit, False, 0.0, 0.0, y, z, out, ctx, m_out)
    if not robust:
        return f
    u = np.empty(n)
    scale = 0.0
    for _ in range(6):
        for i in range(n):
            r = svi_w(k[i], out[0], out[1], out[2], out[3], out[4]) - v[i]
            u[i] = math.sqrt(wt0[i]) * abs(r)
        scale = 1.4826 * np.median(u)
        if not scale > 0.0:
            break
        changed = 0.0
        for i in range(n):
            h = 1.0
            if u[i] > huber_c * scale:
                h = huber_c * scale / u[i]
            changed = max(changed, abs(wt0[i] * h - wt[i]) / wt0[i])
            wt[i] = wt0[i] * h
        if changed < 1e-3:
            break
        f = _search(k, v, wt, slope, rho_max, 1, maxit, True, out[3], math.log(out[4]), y, z, out, ctx, m_out)
    # Huber loss with the final scale
    loss = 0.0
    for i in range(n):
        r = svi_w(k[i], out[0], out[1], out[2], out[3], out[4]) - v[i]
        ui = math.sqrt(wt0[i]) * abs(r)
        if scale > 0.0 and ui > huber_c * scale:
            loss += 2.0 * huber_c * scale * ui - (huber_c * scale) ** 2
        else:
            loss += ui * ui
    return loss


@numba.njit(parallel=True, cache=True, fastmath=False, error_model="numpy")
def fit_batch(
    k, v, wt, offsets, todo, slope, rho_max, robust, huber_c, n_starts, maxit, params, objective, m_out
):
    """Fit every slice ``s`` with ``todo[s]`` (prange over slices). ``params`` (n, 5), ``objective`` (n)."""
    ns = offsets.shape[0] - 1
    for s in numba.prange(ns):
        if not todo[s]:
            continue
        lo = offsets[s]
        hi = offsets[s + 1]
        out = np.empty(5)
        objective[s] = fit_slice(
            k[lo:hi], v[lo:hi], wt[lo:hi], slope, rho_max, robust, huber_c, n_starts, maxit, out, m_out
        )
        for j in range(5):
            params[s, j] = out[j]


# ---- arbitrage checks ---------------------------------------------------------------------------------
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
def min_g_on(p, klo, khi, npts):
    """Minimum of g over ``npts`` evenly spaced points of [klo, khi]; -inf if w <= 0 at any of them or the
    minimum total variance is negative."""
    a, b, rho, m, sig = p[0], p[1], p[2], p[3], p[4]
    if a + b * sig * math.sqrt(max(1.0 - rho * rho, 0.0)) < 0.0:
        return -math.inf
    gmin = math.inf
    h = (khi - klo) / (npts - 1)
    for j in range(npts):
        g = g_scalar(klo + j * h, a, b, rho, m, sig)
        if not g == g:
            return -math.inf
        if g < gmin:
            gmin = g
    return gmin


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def min_calendar_gap(p_next, p_prev, klo, khi, npts):
    """min over the grid of w_next(k) - w_prev(k)."""
    h = (khi - klo) / (npts - 1)
    gap = math.inf
    for j in range(npts):
        kk = klo + j * h
        d = svi_w(kk, p_next[0], p_next[1], p_next[2], p_next[3], p_next[4]) - svi_w(
            kk, p_prev[0], p_prev[1], p_prev[2], p_prev[3], p_prev[4]
        )
        if d < gap:
            gap = d
    return gap


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _feasible(p, has_prev, pprev, klo, khi, cklo, ckhi, npts, g_tol, cal_tol):
    if min_g_on(p, klo, khi, npts) < g_tol:
        return False
    if has_prev and min_calendar_gap(p, pprev, cklo, ckhi, npts) < cal_tol:
        return False
    return True


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _sse(k, v, wt, p):
    f = 0.0
    for i in range(k.shape[0]):
        r = svi_w(k[i], p[0], p[1], p[2], p[3], p[4]) - v[i]
        f += wt[i] * r * r
    return f


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _bisect(start, tgt, lam_lo, has_prev, pprev, klo, khi, cklo, ckhi, npts, out):
    """Smallest lam in [lam_lo, 1] (to 1e-7) where start + lam (tgt - start) passes the checks, by
    bisection keeping the upper end feasible; writes the params into ``out``. -1 if lam = 1 fails."""
    for c in range(5):
        out[c] = start[c] + lam_lo * (tgt[c] - start[c])
    if _feasible(out, has_prev, pprev, klo, khi, cklo, ckhi, npts, 0.0, 0.0):
        return lam_lo
    for c in range(5):
        out[c] = tgt[c]
    if not _feasible(out, has_prev, pprev, klo, khi, cklo, ckhi, npts, 0.0, 0.0):
        return -1.0
    a_ = lam_lo
    b_ = 1.0
    for _ in range(40):
        mid = 0.5 * (a_ + b_)
        for c in range(5):
            out[c] = start[c] + mid * (tgt[c] - start[c])
        if _feasible(out, has_prev, pprev, klo, khi, cklo, ckhi, npts, 0.0, 0.0):
            b_ = mid
        else:
            a_ = mid
        if b_ - a_ < 1e-7:
            break
    for c in range(5):
        out[c] = start[c] + b_ * (tgt[c] - start[c])
    return b_


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def calendar_refit(k, v, wt, warm, slope, rho_max, ctx, out):
    """Best raw SVI under exact calendar bounds (``ctx`` as in :func:`inner_solve_cal`, ``ctx[0] = 2``):
    the quasi-explicit search over ``(m, log sigma)`` (grid, Nelder-Mead from the best grid point and
    from the warm start ``warm``), each point solved exactly by :func:`inner_solve_cal`; ``m`` stays in
    the quoted range. Writes ``out``; returns the objective (inf when no point satisfies the bounds)."""
    n = k.shape[0]
    y = np.empty(n)
    z = np.empty(n)
    ctx[0] = 2.0
    f = _search(
        k, v, wt, slope, rho_max, 1, _CAL_MAXIT, True, warm[3], math.log(warm[4]), y, z, out, ctx, 0.0
    )
    ctx[0] = 0.0
    return f


@numba.njit(parallel=True, cache=True, fastmath=False, error_model="numpy")
def repair_surfaces(
    k,
    v,
    wt,
    offsets,
    params,
    target,
    surf_offsets,
    order,
    kmin,
    kmax,
    margin,
    npts,
    slope,
    rho_max,
    maxev,
    lam,
    how,
):
    """Arbitrage repair, prange over surfaces. ``order`` lists the fitted slices surface by surface (CSR
    ``surf_offsets``), in increasing expiry; ``params`` is updated in place.

    Each slice in turn, given its final predecessor, passes when g >= 0 on its extended grid and
    w >= w_prev on the union grid. A slice that fails only the calendar check is refitted with the
    check as exact linear bounds (:func:`calendar_refit`; ``how = 1``) and, when that passes, kept
    (bar the alternative below). Otherwise it gets the best (lowest objective) of: (1) a refit with an
    exact L1 penalty on both violations (:func:`constrained_refit`; ``how = 1`` when it passes); (2) the
    smallest move on the straight line in raw parameters from its fit, or from the refit, towards
    ``target[s]`` that passes (bisection; ``how = 2``, ``lam[s]`` the position). The alternative, when
    the slice's own fit is free of butterfly arbitrage: keep it and refit the predecessor under it and
    above its own predecessor (calendar-exact, else penalised; ``how[prev] = 1``, ``how = 3``) if that
    costs the two slices less, relative to their scales. The targets are arbitrage-free together
    (:func:`surface_targets`, computed when first needed); when even the target fails the calendar check
    against a partly moved predecessor, the predecessor is set to its target and re-checked
    (backtracking), which terminates.
    """
    nsurf = surf_offsets.shape[0] - 1
    for si in numba.prange(nsurf):
        lo = surf_offsets[si]
        hi = surf_offsets[si + 1]
        nsl = hi - lo
        fit = np.empty((nsl, 5))
        refit = np.empty((nsl, 5))
        lower = np.zeros(nsl)
        refitted = np.zeros(nsl, dtype=np.bool_)
        for j in range(nsl):
            for c in range(5):
                fit[j, c] = params[order[lo + j], c]
        cand = np.empty(5)
        best = np.empty(5)
        starts = np.empty((2, 5))
        candb = np.empty(5)
        candp = np.empty(5)
        zero5 = np.zeros(5)
        ctx = np.zeros(21)
        have_target = False
        j = 0
        while j < nsl:
            s = order[lo + j]
            a0 = offsets[s]
            a1 = offsets[s + 1]
            has_prev = j > 0
            sp = order[lo + j - 1] if has_prev else s
            klo = kmin[s] - margin[s]
            khi = kmax[s] + margin[s]
            cklo = min(kmin[s] - margin[s], kmin[sp] - margin[sp])
            ckhi = max(kmax[s] + margin[s], kmax[sp] + margin[sp])
            pprev = params[sp]
            lam0 = lower[j]
            if lam0 == 0.0 and _feasible(fit[j], has_prev, pprev, klo, khi, cklo, ckhi, npts, 0.0, 0.0):
                lam[s] = 0.0
                how[s] = 0
                for c in range(5):
                    params[s, c] = fit[j, c]
                j += 1
                continue
            cal_exact = False
            if lam0 == 0.0 and not refitted[j] and has_prev and min_g_on(fit[j], klo, khi, npts) >= 0.0:
                # only the calendar check fails: it is linear in (a, d, c) for fixed (m, sigma), so the
                # refit under it is exact (a butterfly check on the result decides whether it stands)
                refitted[j] = True
                ctx[3] = npts
                ctx[4] = 1.0
                ctx[5] = cklo
                ctx[6] = ckhi
                ctx[13] = 0.0
                for c in range(5):
                    ctx[8 + c] = pprev[c]
                out = np.empty(5)
                if calendar_refit(k[a0:a1], v[a0:a1], wt[a0:a1], fit[j], slope, rho_max, ctx, out) < math.inf:
                    cal_exact = _feasible(out, has_prev, pprev, klo, khi, cklo, ckhi, npts, 0.0, 0.0)
                if cal_exact:
                    for c in range(5):
                        refit[j, c] = out[c]
                else:
                    refitted[j] = False
            if not cal_exact and not have_target:
                surface_targets(k, v, wt, offsets, fit, order, lo, hi, target)
                have_target = True
            if lam0 == 0.0 and not refitted[j]:
                refitted[j] = True
                ctx[0] = 1.0
                ctx[1] = klo
                ctx[2] = khi
                ctx[3] = npts
                ctx[4] = 1.0 if has_prev else 0.0
                ctx[5] = cklo
                ctx[6] = ckhi
                for c in range(5):
                    ctx[8 + c] = pprev[c]
                    starts[0, c] = fit[j, c]
                    starts[1, c] = target[s, c]
                out = np.empty(5)
                constrained_refit(
                    k[a0:a1], v[a0:a1], wt[a0:a1], starts, 2, slope, rho_max, ctx, maxev, npts, out
                )
                for c in range(5):
                    refit[j, c] = out[c]
            bf = math.inf
            bl = 0.0
            bh = 0
            if lam0 == 0.0 and _feasible(refit[j], has_prev, pprev, klo, khi, cklo, ckhi, npts, 0.0, 0.0):
                bf = _sse(k[a0:a1], v[a0:a1], wt[a0:a1], refit[j])
                bh = 1
                for c in range(5):
                    best[c] = refit[j, c]
            ok_target = False
            for src in range(0 if cal_exact else 2):  # an exact calendar refit beats any point on the line
                start = fit[j] if src == 0 else refit[j]
                lm = _bisect(start, target[s], lam0, has_prev, pprev, klo, khi, cklo, ckhi, npts, cand)
                if lm < 0.0:
                    continue
                ok_target = True
                f = _sse(k[a0:a1], v[a0:a1], wt[a0:a1], cand)
                if f < bf:
                    bf = f
                    bl = lm
                    bh = 2
                    for c in range(5):
                        best[c] = cand[c]
            if (
                has_prev
                and lam0 == 0.0
                and lower[j - 1] == 0.0
                and min_calendar_gap(fit[j], pprev, cklo, ckhi, npts) < 0.0
            ):
                # the alternative: fit this slice for butterfly alone and bend its predecessor (in its
                # unquoted wings, mostly) below it, if that costs the two slices less
                sp2 = order[lo + j - 2] if j > 1 else -1
                b0 = offsets[sp]
                b1 = offsets[sp + 1]
                ctx[0] = 1.0
                ctx[1] = klo
                ctx[2] = khi
                ctx[3] = npts
                ctx[4] = 0.0
                ctx[13] = 0.0
                for c in range(5):
                    starts[0, c] = fit[j, c]
                    starts[1, c] = target[s, c]
                if min_g_on(fit[j], klo, khi, npts) >= 0.0:
                    for c in range(5):
                        candb[c] = fit[j, c]
                else:
                    if not have_target:
                        surface_targets(k, v, wt, offsets, fit, order, lo, hi, target)
                        have_target = True
                        for c in range(5):
                            starts[1, c] = target[s, c]
                    constrained_refit(
                        k[a0:a1], v[a0:a1], wt[a0:a1], starts, 2, slope, rho_max, ctx, maxev, npts, candb
                    )
                # the predecessor must fit between its own predecessor and this slice: hopeless where
                # those two cross on the overlap of their calendar grids
                room = True
                if sp2 >= 0:
                    olo = max(cklo, min(kmin[sp] - margin[sp], kmin[sp2] - margin[sp2]))
                    ohi = min(ckhi, max(kmax[sp] + margin[sp], kmax[sp2] + margin[sp2]))
                    room = olo >= ohi or min_calendar_gap(candb, params[sp2], olo, ohi, npts) >= 0.0
                if room and min_g_on(candb, klo, khi, npts) >= 0.0:
                    ctx[1] = kmin[sp] - margin[sp]
                    ctx[2] = kmax[sp] + margin[sp]
                    ctx[4] = 1.0 if sp2 >= 0 else 0.0
                    if sp2 >= 0:
                        ctx[5] = min(kmin[sp] - margin[sp], kmin[sp2] - margin[sp2])
                        ctx[6] = max(kmax[sp] + margin[sp], kmax[sp2] + margin[sp2])
                        for c in range(5):
                            ctx[8 + c] = params[sp2, c]
                    ctx[13] = 1.0
                    for c in range(5):
                        ctx[14 + c] = candb[c]
                        starts[0, c] = params[sp, c]
                        starts[1, c] = fit[j - 1, c]
                    ctx[19] = cklo
                    ctx[20] = ckhi
                    ctx[3] = npts
                    fp = calendar_refit(k[b0:b1], v[b0:b1], wt[b0:b1], params[sp], slope, rho_max, ctx, candp)
                    pb_klo = kmin[sp] - margin[sp]
                    pb_khi = kmax[sp] + margin[sp]
                    if not (fp < math.inf and min_g_on(candp, pb_klo, pb_khi, npts) >= 0.0):
                        ctx[0] = 1.0
                        ctx[1] = pb_klo
                        ctx[2] = pb_khi
                        constrained_refit(
                            k[b0:b1], v[b0:b1], wt[b0:b1], starts, 2, slope, rho_max, ctx, maxev, npts, candp
                        )
                    ctx[13] = 0.0
                    ok_b = _feasible(candb, True, candp, klo, khi, cklo, ckhi, npts, 0.0, 0.0)
                    if ok_b and sp2 >= 0:
                        ok_b = _feasible(
                            candp, True, params[sp2], ctx[1], ctx[2], ctx[5], ctx[6], npts, 0.0, 0.0
                        )
                    elif ok_b:
                        ok_b = min_g_on(candp, ctx[1], ctx[2], npts) >= 0.0
                    if ok_b:
                        # compare increases of the two slices' objectives, each relative to its own scale
                        sa = _sse(k[a0:a1], v[a0:a1], wt[a0:a1], fit[j])
                        sb = _sse(k[b0:b1], v[b0:b1], wt[b0:b1], params[sp])
                        na = _sse(k[a0:a1], v[a0:a1], wt[a0:a1], zero5)
                        nb_ = _sse(k[b0:b1], v[b0:b1], wt[b0:b1], zero5)
                        cost_a = (bf - sa) / na if bf < math.inf else math.inf
                        cost_b = (_sse(k[a0:a1], v[a0:a1], wt[a0:a1], candb) - sa) / na + (
                            _sse(k[b0:b1], v[b0:b1], wt[b0:b1], candp) - sb
                        ) / nb_
                        if cost_b < cost_a:
                            for c in range(5):
                                params[sp, c] = candp[c]
                                best[c] = candb[c]
                            how[sp] = 1
                            lam[sp] = 0.0
                            bf = _sse(k[a0:a1], v[a0:a1], wt[a0:a1], candb)
                            bl = 0.0
                            bh = 1 if min_g_on(fit[j], klo, khi, npts) < 0.0 else 3
            if bh == 0 and not ok_target:
                if has_prev and lower[j - 1] < 1.0:
                    lower[j - 1] = 1.0
                    refitted[j] = False  # refit against the moved predecessor when we come back
                    j -= 1
                    continue
                # cannot happen for a consistent target set; keep the target and let the checks report it
                for c in range(5):
                    best[c] = target[s, c]
                bl = 1.0
                bh = 2
            lam[s] = bl
            how[s] = bh
            for c in range(5):
                params[s, c] = best[c]
            j += 1


@numba.njit(parallel=True, cache=True, fastmath=False, error_model="numpy")
def diagnostics(
    k,
    v,
    bid,
    ask,
    has_ba,
    offsets,
    todo,
    params,
    expiry,
    prev,
    kmin,
    kmax,
    margin,
    npts,
    rmse,
    inside,
    min_g,
    cal_gap,
):
    """Per-slice RMSE (vol points; NaN without expiry), share inside [bid, ask], min g on the extended grid,
    and min calendar gap to slice ``prev[s]`` (inf where prev < 0)."""
    ns = offsets.shape[0] - 1
    for s in numba.prange(ns):
        if not todo[s]:
            continue
        lo = offsets[s]
        hi = offsets[s + 1]
        p = params[s]
        se = 0.0
        nin = 0
        nba = 0
        T = expiry[s]
        for i in range(lo, hi):
            w = svi_w(k[i], p[0], p[1], p[2], p[3], p[4])
            if T > 0.0:
                dv = math.sqrt(max(w, 0.0) / T) - math.sqrt(v[i] / T)
                se += dv * dv
            if has_ba:
                b_ = bid[i]
                a_ = ask[i]
                if a_ == a_:
                    nba += 1
                    if (not b_ == b_ or w >= b_) and w <= a_:
                        nin += 1
        rmse[s] = 100.0 * math.sqrt(se / (hi - lo)) if T > 0.0 else math.nan
        inside[s] = nin / nba if nba > 0 else math.nan
        min_g[s] = min_g_on(p, kmin[s] - margin[s], kmax[s] + margin[s], npts)
        if prev[s] >= 0:
            sp = prev[s]
            cklo = min(kmin[s] - margin[s], kmin[sp] - margin[sp])
            ckhi = max(kmax[s] + margin[s], kmax[sp] + margin[sp])
            cal_gap[s] = min_calendar_gap(p, params[sp], cklo, ckhi, npts)
        else:
            cal_gap[s] = math.inf


# ---- weights and SSVI targets ----------------------------------------------------------------------------
@numba.njit(cache=True, fastmath=False, error_model="numpy")
def spread_weights(bid, ask, offsets, out):
    """Weights ``1 / spread^2`` per slice (spread floored at 5% of the slice's median spread; a missing or
    non-positive spread counts as 3x the median), normalised to mean 1 within each slice."""
    ns = offsets.shape[0] - 1
    for s in range(ns):
        lo = offsets[s]
        hi = offsets[s + 1]
        if hi == lo:
            continue
        good = np.empty(hi - lo)
        ng = 0
        for i in range(lo, hi):
            sp = ask[i] - bid[i]
            if sp > 0.0 and sp < math.inf:
                good[ng] = sp
                ng += 1
        med = np.median(good[:ng]) if ng > 0 else 1.0
        tot = 0.0
        for i in range(lo, hi):
            sp = ask[i] - bid[i]
            if not (sp > 0.0 and sp < math.inf):
                sp = 3.0 * med
            sp = max(sp, 0.05 * med)
            out[i] = 1.0 / (sp * sp)
            tot += out[i]
        for i in range(lo, hi):
            out[i] *= (hi - lo) / tot


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def normalise_weights(wt, offsets, out):
    ns = offsets.shape[0] - 1
    for s in range(ns):
        lo = offsets[s]
        hi = offsets[s + 1]
        tot = 0.0
        for i in range(lo, hi):
            tot += wt[i]
        for i in range(lo, hi):
            out[i] = wt[i] * (hi - lo) / tot if tot > 0.0 else math.nan


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _ssvi_sse(k, v, wt, th, ph, rho):
    f = 0.0
    for i in range(k.shape[0]):
        p = ph * k[i]
        w = 0.5 * th * (1.0 + rho * p + math.sqrt((p + rho) ** 2 + 1.0 - rho * rho))
        f += wt[i] * (w - v[i]) ** 2
    return f


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _phi_caps(th, ar):
    return 0.05 / math.sqrt(th), min(0.98 * 4.0 / (th * ar), 0.98 * math.sqrt(4.0 / (th * ar)))


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def surface_targets(k, v, wt, offsets, fit, order, lo, hi, target):
    """Arbitrage-free SSVI targets for the slices ``order[lo:hi]`` of one surface (``fit`` their fitted
    raw parameters, row j for slice ``order[lo + j]``); rows of ``target`` (n_slices, 5) as raw
    a, b, rho, m, sigma.

    ``theta_j = w_j(0)`` of the fits made strictly increasing; one ``rho`` chosen on a grid
    of 20 values in [-0.95, 0.95] and per-slice ``phi_j`` (golden section on log phi) minimising the
    weighted squared error to the quotes, with ``phi_j`` capped by Gatheral-Jacquier's Theorem 4.2
    (``theta phi (1 + |rho|) < 4``, ``theta phi^2 (1 + |rho|) <= 4``, 2% margin) and then made
    non-increasing in ``j`` with ``theta_j phi_j`` non-decreasing. Those conditions make each slice free
    of butterfly arbitrage on the whole real line and the family free of calendar arbitrage (their
    Theorem 4.1 holds along the linear interpolation of ``theta phi`` between slices, since
    ``d(theta phi)/d theta <= phi``).
    """
    if True:
        nsl = hi - lo
        th = np.empty(nsl)
        for j in range(nsl):
            p = fit[j]
            th[j] = max(svi_w(0.0, p[0], p[1], p[2], p[3], p[4]), 1e-8)
            if j > 0:
                th[j] = max(th[j], th[j - 1] * (1.0 + 1e-6) + 1e-12)
        ph = np.empty(nsl)
        best_ph = np.empty(nsl)
        best_f = math.inf
        best_rho = 0.0
        for ir in range(20):
            rho = -0.95 + ir * 0.1
            ar = 1.0 + abs(rho)
            for j in range(nsl):
                s = order[lo + j]
                a0 = offsets[s]
                a1 = offsets[s + 1]
                plo, phi_hi = _phi_caps(th[j], ar)
                lo_ = math.log(plo)
                hi_ = math.log(max(phi_hi, plo))
                x1 = lo_ + _GOLD * (hi_ - lo_)
                x2 = hi_ - _GOLD * (hi_ - lo_)
                f1 = _ssvi_sse(k[a0:a1], v[a0:a1], wt[a0:a1], th[j], math.exp(x1), rho)
                f2 = _ssvi_sse(k[a0:a1], v[a0:a1], wt[a0:a1], th[j], math.exp(x2), rho)
                for _ in range(22):
                    if f1 <= f2:
                        hi_ = x2
                        x2 = x1
                        f2 = f1
                        x1 = lo_ + _GOLD * (hi_ - lo_)
                        f1 = _ssvi_sse(k[a0:a1], v[a0:a1], wt[a0:a1], th[j], math.exp(x1), rho)
                    else:
                        lo_ = x1
                        x1 = x2
                        f1 = f2
                        x2 = hi_ - _GOLD * (hi_ - lo_)
                        f2 = _ssvi_sse(k[a0:a1], v[a0:a1], wt[a0:a1], th[j], math.exp(x2), rho)
                ph[j] = min(max(math.exp(x1 if f1 <= f2 else x2), plo), phi_hi)
                if j > 0:
                    ph[j] = min(ph[j], ph[j - 1])
                    ph[j] = max(ph[j], th[j - 1] * ph[j - 1] / th[j])
            f = 0.0
            for j in range(nsl):
                s = order[lo + j]
                f += _ssvi_sse(
                    k[offsets[s] : offsets[s + 1]],
                    v[offsets[s] : offsets[s + 1]],
                    wt[offsets[s] : offsets[s + 1]],
                    th[j],
                    ph[j],
                    rho,
                ) / (th[j] * th[j] * (offsets[s + 1] - offsets[s]))
            if f < best_f:
                best_f = f
                best_rho = rho
                for j in range(nsl):
                    best_ph[j] = ph[j]
        rho = best_rho
        for j in range(nsl):
            s = order[lo + j]
            target[s, 0] = 0.5 * th[j] * (1.0 - rho * rho)
            target[s, 1] = 0.5 * th[j] * best_ph[j]
            target[s, 2] = rho
            target[s, 3] = -rho / best_ph[j]
            target[s, 4] = math.sqrt(1.0 - rho * rho) / best_ph[j]


# ---- the constrained 5-parameter refit -------------------------------------------------------------------
@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _x_to_p(x, box, slope, rho_max, p):
    """Unconstrained ``x`` -> raw SVI ``p``; returns the squared excursion of ``x`` outside its box.

    ``x = (a / vscale, log b, atanh(rho / rho_max), m, log sigma)``; ``box`` = (vscale, m_lo, m_hi,
    ls_lo, ls_hi). ``m`` and ``log sigma`` are clamped to the box and ``b`` to the wing-slope cap."""
    p[0] = x[0] * box[0]
    rho = rho_max * math.tanh(x[2])
    bmax = slope / (1.0 + abs(rho))
    lb = min(x[1], math.log(bmax))
    p[1] = math.exp(max(lb, -50.0))
    p[2] = rho
    m = min(max(x[3], box[1]), box[2])
    ls = min(max(x[4], box[3]), box[4])
    p[3] = m
    p[4] = math.exp(ls)
    return (x[1] - lb) ** 2 + ((x[3] - m) / (box[2] - box[1])) ** 2 + (x[4] - ls) ** 2


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _p_to_x(p, box, rho_max, x):
    x[0] = p[0] / box[0]
    x[1] = math.log(max(p[1], 1e-300))
    r = p[2] / rho_max
    r = min(max(r, -1.0 + 1e-12), 1.0 - 1e-12)
    x[2] = math.atanh(r)
    x[3] = p[3]
    x[4] = math.log(max(p[4], 1e-300))


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _pen_f(x, k, v, wt, box, slope, rho_max, ctx, mu, fscale, p):
    out = _x_to_p(x, box, slope, rho_max, p)
    return _sse(k, v, wt, p) + mu * _arb_penalty(p, ctx) + fscale * out


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _nm_n(x0, step, k, v, wt, box, slope, rho_max, ctx, mu, fscale, maxev, xbest):
    """Nelder-Mead in ``len(x0)`` dimensions on :func:`_pen_f` (adaptive coefficients of Gao and Han).
    Writes the best point into ``xbest``; returns its value."""
    nd = x0.shape[0]
    p = np.empty(5)
    sx = np.empty((nd + 1, nd))
    fv = np.empty(nd + 1)
    for i in range(nd + 1):
        for j in range(nd):
            sx[i, j] = x0[j]
        if i > 0:
            sx[i, i - 1] += step[i - 1]
        fv[i] = _pen_f(sx[i], k, v, wt, box, slope, rho_max, ctx, mu, fscale, p)
    nev = nd + 1
    alpha = 1.0
    beta = 1.0 + 2.0 / nd
    gam = 0.75 - 0.5 / nd
    dlt = 1.0 - 1.0 / nd
    cen = np.empty(nd)
    xr = np.empty(nd)
    xe = np.empty(nd)
    xc = np.empty(nd)
    idx = np.empty(nd + 1, dtype=np.int64)
    while nev < maxev:
        idx[:] = np.argsort(fv)
        ib = idx[0]
        iw = idx[nd]
        isw = idx[nd - 1]
        size = 0.0
        for i in range(nd + 1):
            for j in range(nd):
                size = max(size, abs(sx[i, j] - sx[ib, j]))
        if size < 1e-8 or (fv[iw] - fv[ib] <= 1e-12 * abs(fv[ib]) + 1e-300 and size < 1e-5):
            break
        for j in range(nd):
            c = 0.0
            for i in range(nd + 1):
                if i != iw:
                    c += sx[i, j]
            cen[j] = c / nd
        for j in range(nd):
            xr[j] = cen[j] + alpha * (cen[j] - sx[iw, j])
        fr = _pen_f(xr, k, v, wt, box, slope, rho_max, ctx, mu, fscale, p)
        nev += 1
        if fr < fv[ib]:
            for j in range(nd):
                xe[j] = cen[j] + beta * (xr[j] - cen[j])
            fe = _pen_f(xe, k, v, wt, box, slope, rho_max, ctx, mu, fscale, p)
            nev += 1
            if fe < fr:
                sx[iw, :] = xe
                fv[iw] = fe
            else:
                sx[iw, :] = xr
                fv[iw] = fr
        elif fr < fv[isw]:
            sx[iw, :] = xr
            fv[iw] = fr
        else:
            if fr < fv[iw]:
                for j in range(nd):
                    xc[j] = cen[j] + gam * (xr[j] - cen[j])
            else:
                for j in range(nd):
                    xc[j] = cen[j] - gam * (cen[j] - sx[iw, j])
            fc = _pen_f(xc, k, v, wt, box, slope, rho_max, ctx, mu, fscale, p)
            nev += 1
            if fc < min(fr, fv[iw]):
                sx[iw, :] = xc
                fv[iw] = fc
            else:
                for i in range(nd + 1):
                    if i != ib:
                        for j in range(nd):
                            sx[i, j] = sx[ib, j] + dlt * (sx[i, j] - sx[ib, j])
                        fv[i] = _pen_f(sx[i], k, v, wt, box, slope, rho_max, ctx, mu, fscale, p)
                        nev += 1
    ib = np.argmin(fv)
    for j in range(nd):
        xbest[j] = sx[ib, j]
    return fv[ib]


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def step_for(x, rng, step):
    step[0] = 0.1 * max(abs(x[0]), 0.2)
    step[1] = 0.2
    step[2] = 0.2
    step[3] = 0.1 * rng
    step[4] = 0.2
    return step


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def constrained_refit(k, v, wt, starts, nstart, slope, rho_max, ctx, maxev, npts, out):
    """Best fit near the quotes subject to the arbitrage checks in ``ctx`` (see :func:`_arb_penalty`):
    5-parameter Nelder-Mead on the least squares plus an exact (L1) penalty, from each row of
    ``starts[:nstart]`` (raw SVI), with the penalty weight raised in stages and restarts from the best
    point. ``m`` stays within the quoted range, ``sigma`` within
    [1e-3, 4] times that width. Writes raw SVI into ``out``; returns the penalised objective."""
    n = k.shape[0]
    kmin = k[0]
    kmax = k[0]
    sv2 = 0.0
    sw = 0.0
    vs = 0.0
    for i in range(n):
        kmin = min(kmin, k[i])
        kmax = max(kmax, k[i])
        sv2 += wt[i] * v[i] * v[i]
        sw += wt[i]
        vs += wt[i] * v[i]
    rng = max(kmax - kmin, 1e-3)
    box = np.empty(5)
    box[0] = max(vs / sw, 1e-12)
    box[1] = kmin
    box[2] = kmax
    box[3] = math.log(1e-3 * rng)
    box[4] = math.log(4.0 * rng)
    fscale = sv2 / sw + 1e-300
    x = np.empty(5)
    xb = np.empty(5)
    xbest = np.empty(5)
    step = np.empty(5)
    p = np.empty(5)
    best = math.inf
    pw = np.empty(5)
    for st in range(nstart):
        for c in range(5):
            p[c] = starts[st, c]
        p[3] = min(max(p[3], box[1]), box[2])
        p[4] = min(max(p[4], math.exp(box[3])), math.exp(box[4]))
        _p_to_x(p, box, rho_max, x)
        # penalty weights from the start's own least squares up to well past any multiplier, searched on
        # a coarse grid, then polished on the full one where that still finds a violation
        f0 = max(_sse(k, v, wt, p), 1e-8 * sv2)
        ctx[3] = min(npts, _N_COARSE)
        mu = f0
        for mu_i in range(_N_MU):
            mu = f0 * (10.0 ** (1 + mu_i))
            _nm_n(x, step_for(x, rng, step), k, v, wt, box, slope, rho_max, ctx, mu, fscale, maxev, xb)
            for c in range(5):
                x[c] = xb[c]
        ctx[3] = npts
        _x_to_p(x, box, slope, rho_max, pw)
        pen = _arb_penalty(pw, ctx)
        if pen > 0.0:
            _nm_n(x, step_for(x, rng, step), k, v, wt, box, slope, rho_max, ctx, mu, fscale, maxev, xb)
            for c in range(5):
                x[c] = xb[c]
            _x_to_p(x, box, slope, rho_max, pw)
            pen = _arb_penalty(pw, ctx)
        f = _sse(k, v, wt, pw) + mu * pen
        if f < best:
            best = f
            for c in range(5):
                xbest[c] = x[c]
    _x_to_p(xbest, box, slope, rho_max, out)
    return best
