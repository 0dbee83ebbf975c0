"""The quasi-explicit raw-SVI slice fit (Numba): an exact 3-parameter inner solve inside a 2-D outer search.

Raw SVI on total implied variance ``w(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2))``.

Quasi-explicit method (Zeliade 2009; De Marco and Martini): for fixed ``(m, sigma)`` put
``y = (k - m) / sigma``, ``z = sqrt(y^2 + 1)``, ``c = b sigma``, ``d = rho b sigma``; then
``w = a + d y + c z`` is linear in ``(a, d, c)`` and the weighted least-squares problem is a convex
3-parameter problem solved *exactly* here:

* without arbitrage bounds (:func:`inner_solve`), ``a`` is eliminated (weighted centring) and ``(d, c)``
  minimise a 2x2 convex quadratic over the quadrilateral ``|d| <= rho_max c``, ``c + |d| <= S sigma``
  (``|rho| < 1`` and the wing slope ``b (1 + |rho|) <= S``); the minimiser is the interior stationary point
  when feasible, else the best of the four edge minimisers;
* the minimum total variance ``a + b sigma sqrt(1 - rho^2) = a + sqrt(c^2 - d^2) >= 0`` is a convex
  constraint; when the polyhedral solution violates it, the optimum lies on its boundary, parametrised as
  ``a = -q``, ``c = q cosh t``, ``d = q sinh t``: a 1-D clipped least-squares problem in ``q`` for fixed
  ``t``, and ``t`` searched on a grid then by golden section;
* with arbitrage bounds (:func:`inner_solve_bounded`), the calendar bounds against a lower and/or upper
  neighbouring slice enter as linear constraints in ``(a, d, c)``: at each cut point ``k_j``,
  ``w(k_j) = a + d y_j + c z_j >=`` (or ``<=``) the neighbour's value, and the asymptotic wing slopes
  ``(c +- d) / sigma`` against the neighbour's ``b (1 +- rho)``; the positive minimum variance is kept by
  tangent cuts. The 3-variable QP is solved by :func:`volfast.svi._qp.qp3`.

The outer 2-D problem over ``(m, log sigma)`` is not convex: a 5x5 grid picks starts and Nelder-Mead
polishes the best few. With bounds, a butterfly penalty (``Bounds.mu`` times the shortfall of g below a
small margin on a coarse u-grid of the check interval and at the butterfly cut points) joins the outer
objective. Numeric contract: the inner solves agree with scipy SLSQP on the same constrained problems to
~1e-9 relative objective (``tests/test_svi.py``); the unconstrained outer search reaches within 1% of the
best objective found by scipy ``least_squares`` from several starts on >= 99% of SPX-like slices
(``benchmarks/bench_svi.py``).
"""

from __future__ import annotations

import collections
import math

import numba
import numpy as np

from volfast.svi._arbitrage import min_g_coarse, svi_w
from volfast.svi._qp import qp3

_GOLD = 0.3819660112501051  # 2 - golden ratio
_N_M_GRID = 5
_N_S_GRID = 5
_N_T_GRID = 17
_G_MARGIN = 1e-4  # the butterfly penalty aims this far above g = 0
_MV_CUTS = 6  # tangent cuts for the minimum-variance constraint per bounded inner solve

Bounds = collections.namedtuple(
    "Bounds",
    [
        "on",  # bool: bounded inner solve (else the exact unbounded one, all other fields ignored)
        "lo_k",  # (MAXCUT,) cut points of the lower neighbour: w(lo_k[j]) >= lo_w[j]
        "lo_w",
        "n_lo",  # int: cuts in use
        "lo_sr",  # right / left wing slopes b (1 +- rho) the slice must reach (0: no lower neighbour)
        "lo_sl",
        "hi_k",  # cut points of the upper neighbour: w(hi_k[j]) <= hi_w[j]
        "hi_w",
        "n_hi",
        "hi_sr",  # wing slopes the slice must not exceed (inf: no upper neighbour)
        "hi_sl",
        "mu",  # butterfly penalty weight (0: off)
        "bf_klo",  # butterfly check interval
        "bf_khi",
        "bf_n",  # coarse u-grid points
        "bf_k",  # butterfly cut points (where an exact check found g < 0)
        "n_bf",
    ],
)


def no_bounds() -> Bounds:
    """The :class:`Bounds` of an unconstrained fit (for calls from Python)."""
    z = np.zeros(1)
    return Bounds(False, z, z, 0, 0.0, 0.0, z, z, 0, math.inf, math.inf, 0.0, 0.0, 0.0, 2, z, 0)


@numba.njit(cache=True)
def _no_bounds():
    z = np.zeros(1)
    return Bounds(False, z, z, 0, 0.0, 0.0, z, z, 0, math.inf, math.inf, 0.0, 0.0, 0.0, 2, z, 0)


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


# ---- the inner problem under arbitrage bounds ------------------------------------------------------------
@numba.njit(cache=True, fastmath=False, error_model="numpy")
def inner_solve_bounded(k, v, wt, m, sig, slope, rho_max, y, z, bnd):
    """:func:`inner_solve` under the linear calendar bounds of ``bnd`` (:class:`Bounds`): a 3-variable
    convex QP (:func:`qp3`) with the wing-slope and ``|rho|`` bounds, the cut points of the lower and upper
    neighbours, their asymptotic wing slopes and tangent cuts keeping the minimum variance positive.
    Returns ``(objective, a, b, rho)``; objective inf where the bounds are inconsistent at this
    ``(m, sigma)``."""
    n = k.shape[0]
    nlo = bnd.n_lo
    nhi = bnd.n_hi
    nc0 = 4 + 2 + 2 + nlo + nhi
    C = np.empty((nc0 + _MV_CUTS, 3))
    cb = np.empty(nc0 + _MV_CUTS)
    # |d| <= rho_max c and c + |d| <= slope sigma
    C[0, 0], C[0, 1], C[0, 2], cb[0] = 0.0, -1.0, rho_max, 0.0
    C[1, 0], C[1, 1], C[1, 2], cb[1] = 0.0, 1.0, rho_max, 0.0
    C[2, 0], C[2, 1], C[2, 2], cb[2] = 0.0, -1.0, -1.0, -slope * sig
    C[3, 0], C[3, 1], C[3, 2], cb[3] = 0.0, 1.0, -1.0, -slope * sig
    nc = 4
    # wing slopes of the neighbours: right b (1 + rho) = (c + d) / sigma, left (c - d) / sigma
    if bnd.lo_sr > 0.0:
        C[nc, 0], C[nc, 1], C[nc, 2], cb[nc] = 0.0, 1.0, 1.0, sig * bnd.lo_sr
        nc += 1
    if bnd.lo_sl > 0.0:
        C[nc, 0], C[nc, 1], C[nc, 2], cb[nc] = 0.0, -1.0, 1.0, sig * bnd.lo_sl
        nc += 1
    if bnd.hi_sr < math.inf:
        C[nc, 0], C[nc, 1], C[nc, 2], cb[nc] = 0.0, -1.0, -1.0, -sig * bnd.hi_sr
        nc += 1
    if bnd.hi_sl < math.inf:
        C[nc, 0], C[nc, 1], C[nc, 2], cb[nc] = 0.0, 1.0, -1.0, -sig * bnd.hi_sl
        nc += 1
    for j in range(nlo):
        yj = (bnd.lo_k[j] - m) / sig
        C[nc, 0], C[nc, 1], C[nc, 2], cb[nc] = 1.0, yj, math.sqrt(yj * yj + 1.0), bnd.lo_w[j]
        nc += 1
    for j in range(nhi):
        yj = (bnd.hi_k[j] - m) / sig
        C[nc, 0], C[nc, 1], C[nc, 2], cb[nc] = -1.0, -yj, -math.sqrt(yj * yj + 1.0), -bnd.hi_w[j]
        nc += 1
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
    G[0, 0], G[0, 1], G[0, 2] = 1.0, sy / sw, sz / sw
    G[1, 0], G[1, 1], G[1, 2] = sy / sw, syy / sw, syz / sw
    G[2, 0], G[2, 1], G[2, 2] = sz / sw, syz / sw, szz / sw
    g = np.empty(3)
    g[0], g[1], g[2] = -sv / sw, -syv / sw, -szv / sw
    x = np.empty(3)
    vscale = abs(sv / sw) + 1e-300
    a = 0.0
    d = 0.0
    c = 0.0
    pos = False
    for _ in range(_MV_CUTS + 1):
        if not qp3(G, g, C, cb, nc, x):
            return math.inf, 0.0, 0.0, 0.0
        a, d, c = x[0], x[1], x[2]
        disc = c * c - d * d
        q = math.sqrt(disc) if disc > 0.0 else 0.0
        if a + q > 1e-9 * vscale:
            pos = True
            break
        if nc >= C.shape[0] or not q > 0.0:
            break
        # tangent cut at the slice's minimum: w(k*) = a + d y* + c z* >= a small positive floor
        ys = -d / q
        C[nc, 0], C[nc, 1], C[nc, 2], cb[nc] = 1.0, ys, math.sqrt(ys * ys + 1.0), 2e-9 * vscale
        nc += 1
    if not pos:
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
def _outer(k, v, wt, x0, x1, lo0, hi0, lo1, hi1, fscale, slope, rho_max, y, z, res, bnd):
    """Objective at ``(m, log sigma)``, clamped to the box with a quadratic penalty outside it, plus the
    butterfly penalty when ``bnd.mu > 0``. ``res`` receives (a, b, rho, m, sigma) of the clamped point."""
    m = min(max(x0, lo0), hi0)
    ls = min(max(x1, lo1), hi1)
    sig = math.exp(ls)
    if bnd.on:
        f, a, b, rho = inner_solve_bounded(k, v, wt, m, sig, slope, rho_max, y, z, bnd)
    else:
        f, a, b, rho = inner_solve(k, v, wt, m, sig, slope, rho_max, y, z)
    res[0] = a
    res[1] = b
    res[2] = rho
    res[3] = m
    res[4] = sig
    pen = (x0 - m) ** 2 + (x1 - ls) ** 2
    if bnd.mu > 0.0 and f < math.inf:
        gm = min_g_coarse(a, b, rho, m, sig, bnd.bf_klo, bnd.bf_khi, bnd.bf_n, bnd.bf_k, bnd.n_bf)
        if gm < _G_MARGIN:
            f += bnd.mu * (min(_G_MARGIN - gm, 10.0))
    return f + fscale * pen


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _nelder_mead(
    k, v, wt, sx0, sx1, h0, h1, lo0, hi0, lo1, hi1, fscale, slope, rho_max, y, z, maxit, bnd, ftol, xtol
):
    """2-D Nelder-Mead from (sx0, sx1) with steps (h0, h1), stopping when the simplex values agree to
    ``ftol`` (relative) and its size is below ``xtol``. Returns (f, m, log sigma, evaluations)."""
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
            k, v, wt, px[j, 0], px[j, 1], lo0, hi0, lo1, hi1, fscale, slope, rho_max, y, z, res, bnd
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
        if fv[iw] - fb <= ftol * abs(fb) + 1e-300 and size < xtol:
            break
        if size < 1e-9:
            break
        c0 = 0.5 * (px[ib, 0] + px[im, 0])
        c1 = 0.5 * (px[ib, 1] + px[im, 1])
        r0 = 2.0 * c0 - px[iw, 0]
        r1 = 2.0 * c1 - px[iw, 1]
        fr = _outer(k, v, wt, r0, r1, lo0, hi0, lo1, hi1, fscale, slope, rho_max, y, z, res, bnd)
        nev += 1
        if fr < fb:
            e0 = 3.0 * c0 - 2.0 * px[iw, 0]
            e1 = 3.0 * c1 - 2.0 * px[iw, 1]
            fe = _outer(k, v, wt, e0, e1, lo0, hi0, lo1, hi1, fscale, slope, rho_max, y, z, res, bnd)
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
            fq = _outer(k, v, wt, q0, q1, lo0, hi0, lo1, hi1, fscale, slope, rho_max, y, z, res, bnd)
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
                            k, v, wt, px[j, 0], px[j, 1], lo0, hi0, lo1, hi1, fscale, slope, rho_max, y, z,
                            res, bnd,
                        )  # fmt: skip
                        nev += 1
    ib = 0
    for j in range(1, 3):
        if fv[j] < fv[ib]:
            ib = j
    return fv[ib], px[ib, 0], px[ib, 1], nev


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def search(
    k, v, wt, slope, rho_max, n_starts, maxit, warm, wm, wls, y, z, out, bnd, m_out, ftol=1e-10, xtol=1e-5
):
    """Global-ish search over (m, log sigma): a 5x5 grid (skipped when ``n_starts`` is 0), then Nelder-Mead
    from the best ``n_starts`` grid points and from the warm start ``(wm, wls)`` when ``warm``; ``m`` stays
    within the quoted range extended by ``m_out`` times its width. Writes (a, b, rho, m, sigma) into
    ``out``; returns the objective (with the butterfly penalty when ``bnd.mu > 0``). ``ftol``, ``xtol``: the
    Nelder-Mead stopping rule; with ``xtol >= 1e-4`` (the bounded refits, warm-started) no restart."""
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
    hm = rng / (_N_M_GRID - 1)
    hs = math.log(64.0) / (_N_S_GRID - 1)  # sigma from 0.02 to 1.28 times the quoted k range
    order = np.empty(0, np.int64)
    g0 = np.empty(_N_M_GRID * _N_S_GRID)
    g1 = np.empty(_N_M_GRID * _N_S_GRID)
    if n_starts > 0:
        gf = np.empty(_N_M_GRID * _N_S_GRID)
        for i in range(_N_M_GRID):
            for j in range(_N_S_GRID):
                x0 = kmin + i * hm
                x1 = math.log(0.02 * rng) + j * hs
                idx = i * _N_S_GRID + j
                gf[idx] = _outer(k, v, wt, x0, x1, lo0, hi0, lo1, hi1, fscale, slope, rho_max, y, z, res, bnd)
                g0[idx] = x0
                g1[idx] = x1
        order = np.argsort(gf)
    bf = math.inf
    bm = wm
    bls = wls
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
            k,
            v,
            wt,
            sx0,
            sx1,
            h0,
            h1,
            lo0,
            hi0,
            lo1,
            hi1,
            fscale,
            slope,
            rho_max,
            y,
            z,
            maxit,
            bnd,
            ftol,
            xtol,
        )
        if f < bf:
            bf = f
            bm = x0
            bls = x1
    # restart once from the best point with a small simplex (Nelder-Mead can stall on kinks)
    if xtol < 1e-4:
        f, x0, x1, _ = _nelder_mead(
            k, v, wt, bm, bls, 0.05 * hm, 0.05 * hs, lo0, hi0, lo1, hi1, fscale, slope, rho_max, y, z, maxit,
            bnd, ftol, xtol,
        )  # fmt: skip
        if f < bf:
            bf = f
            bm = x0
            bls = x1
    fb = _outer(k, v, wt, bm, bls, lo0, hi0, lo1, hi1, fscale, slope, rho_max, y, z, res, bnd)
    for j in range(5):
        out[j] = res[j]
    return fb


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def fit_slice(k, v, wt0, slope, rho_max, robust, huber_c, n_starts, maxit, out, m_out, wt_out):
    """Fit one slice without arbitrage bounds; ``out`` receives (a, b, rho, m, sigma) and ``wt_out`` the
    final weights (the IRLS weights with ``robust``). Returns the objective: weighted sum of squares, or
    with ``robust`` the Huber loss at the final IRLS scale."""
    n = k.shape[0]
    y = np.empty(n)
    z = np.empty(n)
    wt = wt0.copy()
    bnd = _no_bounds()
    f = search(k, v, wt, slope, rho_max, n_starts, maxit, False, 0.0, 0.0, y, z, out, bnd, m_out)
    if not robust:
        for i in range(n):
            wt_out[i] = wt[i]
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
        f = search(k, v, wt, slope, rho_max, 1, maxit, True, out[3], math.log(out[4]), y, z, out, bnd, m_out)
    for i in range(n):
        wt_out[i] = wt[i]
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
    k,
    v,
    wt,
    offsets,
    todo,
    slope,
    rho_max,
    robust,
    huber_c,
    n_starts,
    maxit,
    params,
    objective,
    m_out,
    wt_out,
):
    """Fit every slice ``s`` with ``todo[s]`` (prange over slices). ``params`` (n, 5), ``objective`` (n),
    ``wt_out`` (N) the final per-quote weights."""
    ns = offsets.shape[0] - 1
    for s in numba.prange(ns):
        if not todo[s]:
            continue
        lo = offsets[s]
        hi = offsets[s + 1]
        out = np.empty(5)
        objective[s] = fit_slice(
            k[lo:hi], v[lo:hi], wt[lo:hi], slope, rho_max, robust, huber_c, n_starts, maxit, out, m_out,
            wt_out[lo:hi],
        )  # fmt: skip
        for j in range(5):
            params[s, j] = out[j]
