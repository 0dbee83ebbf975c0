"""Joint arbitrage-free fit of all the slices of a surface (Numba): one convex QP in the linear parameters.

For fixed ``(m_i, sigma_i)`` of every slice, raw SVI in quasi-explicit form ``w_i(k) = a_i + d_i y + c_i
sqrt(y^2 + 1)``, ``y = (k - m_i) / sigma_i`` (see :mod:`._quasi_explicit`), is linear in ``x_i = (a_i, d_i,
c_i)``. Then, over the ``3 n`` linear parameters of a surface of ``n`` slices at once:

* the objective ``sum_i lam_i sum_j wt_ij (w_i(k_ij) - v_ij)^2`` is a convex quadratic, block diagonal;
* the domain bounds ``|d_i| <= rho_max c_i`` and ``c_i + |d_i| <= S sigma_i`` (``|rho| < 1`` and Lee's wing
  bound ``b (1 + |rho|) <= S``) are linear in ``x_i``;
* calendar order ``w_{i+1}(k) - w_i(k) >= 0`` at any fixed ``k`` and the asymptotic wing slopes
  ``(c_{i+1} +- d_{i+1}) / sigma_{i+1} >= (c_i +- d_i) / sigma_i`` are linear in ``(x_i, x_{i+1})``;
* ``w_i(k) > 0`` at a fixed ``k`` is linear in ``x_i``.

So "all slices under calendar order" is one convex QP whose Hessian (with the interior-point barrier terms
of constraints that couple only neighbours) is block tridiagonal with 3x3 blocks: :func:`qp_tridiag` solves
it by a primal-dual interior-point method (Mehrotra predictor-corrector) with a block-tridiagonal Cholesky
factorisation per iteration, O(n) work.

The semi-infinite constraint "for all k" is met by cutting planes (:func:`joint_fit`): after each QP solve
the exact checker's crossings (the real roots of the quartic of :func:`._arbitrage.crossing_candidates`)
give, for every neighbouring pair, the deepest point of each interval where the later slice lies below the
earlier one; those points join the calendar cuts (with a small positive margin) and the QP is solved again,
until :func:`._arbitrage.calendar_gap` passes for every pair. Termination: each cut demands a gap of at
least ``_CAL_MARGIN`` times the pair's mean variance at its point, the gap is Lipschitz in k on the bounded
region where violations occur, so a new violating point lies a fixed distance from every earlier cut of its
pair: finitely many rounds (observed: 2-16 on the SPX chain and the synthetic days, ``_ROUNDS`` caps it).
Butterfly (Gatheral-Jacquier ``g(k) >= 0`` on a slice's check interval) is not linear in ``x_i``; at the
exact checker's worst point (:func:`._arbitrage.min_g`) of each violating slice the constraint is linearised
(an SQP-style cut ``g(x0) + grad g (x - x0) >= margin``) and joins the QP; positivity of the minimum
variance enters the same way, by a cut ``w_i(k*) >= eps`` at the slice's minimum. Only the exact checkers
decide: :func:`joint_fit` returns True only when every slice passes them. How the joint QP is used inside
``fit_svi`` (a fast path from isotonic (m, sigma), a polish of the sequential solution) is in
:mod:`._enforce`.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from volfast.svi._arbitrage import _golden_gap, calendar_gap, crossing_intervals, min_g, svi_w

_IPM_MAXIT = 80
_IPM_TOL = 1e-11  # relative primal/dual residuals and complementarity at which the IPM stops
_RIDGE = 1e-12  # relative ridge on the diagonal blocks (the objective is PD; rounding only)
_STEP = 0.995  # fraction to the boundary
_N_INIT_CUTS = 5  # initial calendar cut points per neighbouring pair, uniform on the union of check ranges
_ROUNDS = 40  # cutting-plane rounds
_CAL_MARGIN = 1e-6  # calendar cuts demand w_{i+1} - w_i >= this times the pair's mean quoted variance
_SLOPE_MARGIN = 1e-9  # asymptotic slope rows demand this much (absolute, b units) in addition
_G_MARGIN = 1e-4  # linearised butterfly cuts aim this far above g = 0
_SEED_G = 0.05  # with seed=True, butterfly cuts at the start's minimum of g where g is below this
_MV_MARGIN = 1e-4  # minimum-variance cuts: w(k*) >= this times the slice's mean quoted variance

# constraint kinds (for tests and diagnostics)
DOMAIN = 0
SLOPE = 1
CALENDAR = 2
BUTTERFLY = 3
MINVAR = 4


# ---- small dense helpers (3x3 blocks) ---------------------------------------------------------------------
@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _chol3(A, L):
    """Lower Cholesky factor of the symmetric 3x3 ``A`` into ``L``; False when not positive definite."""
    for i in range(3):
        for j in range(i + 1):
            s = A[i, j]
            for p in range(j):
                s -= L[i, p] * L[j, p]
            if i == j:
                if not s > 0.0:
                    return False
                L[i, i] = math.sqrt(s)
            else:
                L[i, j] = s / L[j, j]
        for j in range(i + 1, 3):
            L[i, j] = 0.0
    return True


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _fwd3(L, b, x):
    """Solve ``L x = b`` (L lower 3x3)."""
    x[0] = b[0] / L[0, 0]
    x[1] = (b[1] - L[1, 0] * x[0]) / L[1, 1]
    x[2] = (b[2] - L[2, 0] * x[0] - L[2, 1] * x[1]) / L[2, 2]


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _bwd3(L, b, x):
    """Solve ``L' x = b`` (L lower 3x3)."""
    x[2] = b[2] / L[2, 2]
    x[1] = (b[1] - L[2, 1] * x[2]) / L[1, 1]
    x[0] = (b[0] - L[1, 0] * x[1] - L[2, 0] * x[2]) / L[0, 0]


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _factor(Bd, Bs, n, Ld, Ls):
    """Block Cholesky of the symmetric block-tridiagonal matrix with diagonal blocks ``Bd[i]`` and
    sub-diagonal blocks ``Bs[i]`` (row block i + 1, column block i): ``Ld[i]`` lower, ``Ls[i] = Bs[i]
    Ld[i]^-T``. False when not positive definite."""
    S = np.empty((3, 3))
    r = np.empty(3)
    t = np.empty(3)
    for i in range(n):
        for a in range(3):
            for b in range(3):
                S[a, b] = Bd[i, a, b]
        if i > 0:
            for a in range(3):
                for b in range(3):
                    S[a, b] -= (
                        Ls[i - 1, a, 0] * Ls[i - 1, b, 0]
                        + Ls[i - 1, a, 1] * Ls[i - 1, b, 1]
                        + (Ls[i - 1, a, 2] * Ls[i - 1, b, 2])
                    )
        if not _chol3(S, Ld[i]):
            return False
        if i < n - 1:
            # row r of Ls[i] solves Ld[i] Ls[i][r]' = Bs[i][r]'
            for a in range(3):
                for b in range(3):
                    r[b] = Bs[i, a, b]
                _fwd3(Ld[i], r, t)
                for b in range(3):
                    Ls[i, a, b] = t[b]
    return True


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _solve(Ld, Ls, n, rhs, out):
    """Solve with the factors of :func:`_factor`: ``rhs`` and ``out`` are (n, 3)."""
    y = np.empty((n, 3))
    r = np.empty(3)
    t = np.empty(3)
    for i in range(n):
        for a in range(3):
            r[a] = rhs[i, a]
            if i > 0:
                p = i - 1
                r[a] -= Ls[p, a, 0] * y[p, 0] + Ls[p, a, 1] * y[p, 1] + Ls[p, a, 2] * y[p, 2]
        _fwd3(Ld[i], r, t)
        for a in range(3):
            y[i, a] = t[a]
    for i in range(n - 1, -1, -1):
        for a in range(3):
            r[a] = y[i, a]
            if i < n - 1:
                r[a] -= (
                    Ls[i, 0, a] * out[i + 1, 0] + Ls[i, 1, a] * out[i + 1, 1] + Ls[i, 2, a] * out[i + 1, 2]
                )
        _bwd3(Ld[i], r, t)
        for a in range(3):
            out[i, a] = t[a]


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _ax(ci, two, cA, nc, x, out):
    """``out[j] = A[j] . x`` for the constraint rows."""
    for j in range(nc):
        i = ci[j]
        s = cA[j, 0] * x[i, 0] + cA[j, 1] * x[i, 1] + cA[j, 2] * x[i, 2]
        if two[j]:
            s += cA[j, 3] * x[i + 1, 0] + cA[j, 4] * x[i + 1, 1] + cA[j, 5] * x[i + 1, 2]
        out[j] = s


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _atz(ci, two, cA, nc, z, n, out):
    """``out = A' z`` as (n, 3)."""
    for i in range(n):
        out[i, 0] = 0.0
        out[i, 1] = 0.0
        out[i, 2] = 0.0
    for j in range(nc):
        i = ci[j]
        for a in range(3):
            out[i, a] += cA[j, a] * z[j]
        if two[j]:
            for a in range(3):
                out[i + 1, a] += cA[j, 3 + a] * z[j]


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _max_step(v, dv, nc):
    """Largest step in (0, 1] keeping ``v + t dv >= 0``."""
    t = 1.0
    for j in range(nc):
        if dv[j] < 0.0:
            r = -v[j] / dv[j]
            if r < t:
                t = r
    return t


# ---- the block-tridiagonal QP ---------------------------------------------------------------------------
@numba.njit(cache=True, fastmath=False, error_model="numpy")
def qp_tridiag(H, f, ci, two, cA, cb, nc, x, z):
    """``min sum_i (1/2 x_i' H_i x_i + f_i' x_i)`` over ``x`` (n, 3) subject to ``A_j . x >= cb[j]`` for
    ``j < nc``, where row ``j`` touches block ``ci[j]`` (coefficients ``cA[j, :3]``) and, when ``two[j]``,
    block ``ci[j] + 1`` as well (``cA[j, 3:]``). ``H`` (n, 3, 3) positive definite blocks.

    Primal-dual interior-point method (Mehrotra predictor-corrector); the Newton system ``H + A' D A`` is
    block tridiagonal and factorised in O(n). Writes ``x`` and the multipliers ``z`` (nc,); returns the
    number of iterations, or -1 when it did not converge (infeasible or stalled)."""
    n = H.shape[0]
    Bd = np.empty((n, 3, 3))
    Bs = np.zeros((max(n - 1, 1), 3, 3))
    Ld = np.empty((n, 3, 3))
    Ls = np.empty((max(n - 1, 1), 3, 3))
    rhs = np.empty((n, 3))
    rd = np.empty((n, 3))
    dx = np.empty((n, 3))
    atz = np.empty((n, 3))
    ax = np.empty(nc)
    s = np.empty(nc)
    rp = np.empty(nc)
    ds = np.empty(nc)
    dz = np.empty(nc)
    dsa = np.empty(nc)
    dza = np.empty(nc)
    tmp = np.empty(nc)
    hscale = 0.0
    fscale = 0.0
    for i in range(n):
        for a in range(3):
            hscale = max(hscale, abs(H[i, a, a]))
            fscale = max(fscale, abs(f[i, a]))
    # start: the unconstrained minimiser, slacks pushed inside, multipliers on the dual scale
    for i in range(n):
        for a in range(3):
            for b in range(3):
                Bd[i, a, b] = H[i, a, b]
            Bd[i, a, a] += _RIDGE * hscale
            rhs[i, a] = -f[i, a]
    if not _factor(Bd, Bs, n, Ld, Ls):
        return -1
    _solve(Ld, Ls, n, rhs, x)
    _ax(ci, two, cA, nc, x, ax)
    xs = 0.0
    for i in range(n):
        xs = max(xs, abs(x[i, 0]) + abs(x[i, 1]) + abs(x[i, 2]))
    bscale = 0.0
    for j in range(nc):
        bscale = max(bscale, abs(cb[j]))
    s0 = 0.1 * (xs + bscale) + 1e-12
    z0 = 0.1 * (fscale + hscale * xs) / (xs + bscale + 1e-300) + 1e-12
    for j in range(nc):
        s[j] = max(ax[j] - cb[j], s0)
        z[j] = z0
    pscale = 1.0 + bscale + xs
    dscale = 1.0 + fscale
    stuck = 0
    for it in range(_IPM_MAXIT):
        # residuals
        _ax(ci, two, cA, nc, x, ax)
        _atz(ci, two, cA, nc, z, n, atz)
        rdn = 0.0
        for i in range(n):
            for a in range(3):
                v = f[i, a] - atz[i, a]
                for b in range(3):
                    v += H[i, a, b] * x[i, b]
                rd[i, a] = v
                rdn = max(rdn, abs(v))
        rpn = 0.0
        mu = 0.0
        for j in range(nc):
            rp[j] = ax[j] - s[j] - cb[j]
            rpn = max(rpn, abs(rp[j]))
            mu += s[j] * z[j]
        mu = mu / nc if nc > 0 else 0.0
        obj = 0.0
        for i in range(n):
            for a in range(3):
                obj += f[i, a] * x[i, a]
                for b in range(3):
                    obj += 0.5 * x[i, a] * H[i, a, b] * x[i, b]
        # the dual residual relative to the size of the multiplier terms: near-parallel rows (a far
        # calendar cut beside a slope row) make the multipliers large and cancel in A'z
        azn = 0.0
        for i in range(n):
            for a in range(3):
                azn = max(azn, abs(atz[i, a]))
        primal = rpn <= _IPM_TOL * pscale and mu * nc <= _IPM_TOL * (abs(obj) + 1e-300)
        if primal and rdn <= _IPM_TOL * (dscale + azn):
            return it
        # degenerate cut sets (near-duplicate or near-parallel rows at a vertex) can leave the multipliers
        # undetermined: primal feasible, complementarity at rounding level, the dual residual stuck. The
        # primal point is then the answer (the exact checkers, not the QP, decide feasibility)
        stuck = stuck + 1 if primal and mu * nc <= 1e-6 * _IPM_TOL * (abs(obj) + 1e-300) else 0
        if stuck >= 5:
            return it
        if not (math.isfinite(rpn) and math.isfinite(rdn) and math.isfinite(mu)):
            return -1
        # Newton matrix H + A' D A
        for i in range(n):
            for a in range(3):
                for b in range(3):
                    Bd[i, a, b] = H[i, a, b]
                Bd[i, a, a] += _RIDGE * hscale
        for i in range(n - 1):
            for a in range(3):
                for b in range(3):
                    Bs[i, a, b] = 0.0
        for j in range(nc):
            i = ci[j]
            dj = z[j] / s[j]
            for a in range(3):
                for b in range(3):
                    Bd[i, a, b] += dj * cA[j, a] * cA[j, b]
            if two[j]:
                for a in range(3):
                    for b in range(3):
                        Bd[i + 1, a, b] += dj * cA[j, 3 + a] * cA[j, 3 + b]
                        Bs[i, a, b] += dj * cA[j, 3 + a] * cA[j, b]
        if not _factor(Bd, Bs, n, Ld, Ls):
            # near-parallel active rows make the barrier terms huge: regularise the diagonal and retry
            bmax = 0.0
            for i in range(n):
                for a in range(3):
                    bmax = max(bmax, Bd[i, a, a])
            done = False
            for e in range(6, 16, 3):
                for i in range(n):
                    for a in range(3):
                        Bd[i, a, a] += bmax * 10.0 ** (-e)
                if _factor(Bd, Bs, n, Ld, Ls):
                    done = True
                    break
            if not done:
                return -1
        # predictor (affine scaling): rc = -s z
        for j in range(nc):
            tmp[j] = (-s[j] * z[j] - z[j] * rp[j]) / s[j]
        _atz(ci, two, cA, nc, tmp, n, atz)
        for i in range(n):
            for a in range(3):
                rhs[i, a] = -rd[i, a] + atz[i, a]
        _solve(Ld, Ls, n, rhs, dx)
        _ax(ci, two, cA, nc, dx, dsa)
        for j in range(nc):
            dsa[j] += rp[j]
            dza[j] = (-s[j] * z[j] - z[j] * dsa[j]) / s[j]
        ap = _max_step(s, dsa, nc)
        ad = _max_step(z, dza, nc)
        mua = 0.0
        for j in range(nc):
            mua += (s[j] + ap * dsa[j]) * (z[j] + ad * dza[j])
        mua = mua / nc if nc > 0 else 0.0
        sigma = (mua / mu) ** 3 if mu > 0.0 else 0.0
        if sigma > 1.0:
            sigma = 1.0
        # corrector: rc = sigma mu - s z - dsa dza
        for j in range(nc):
            rc = sigma * mu - s[j] * z[j] - dsa[j] * dza[j]
            tmp[j] = (rc - z[j] * rp[j]) / s[j]
        _atz(ci, two, cA, nc, tmp, n, atz)
        for i in range(n):
            for a in range(3):
                rhs[i, a] = -rd[i, a] + atz[i, a]
        _solve(Ld, Ls, n, rhs, dx)
        _ax(ci, two, cA, nc, dx, ds)
        for j in range(nc):
            ds[j] += rp[j]
            rc = sigma * mu - s[j] * z[j] - dsa[j] * dza[j]
            dz[j] = (rc - z[j] * ds[j]) / s[j]
        ap = min(1.0, _STEP * _max_step(s, ds, nc))
        ad = min(1.0, _STEP * _max_step(z, dz, nc))
        for i in range(n):
            for a in range(3):
                x[i, a] += ap * dx[i, a]
        for j in range(nc):
            s[j] += ap * ds[j]
            z[j] += ad * dz[j]
    return -1


# ---- the cutting-plane driver ------------------------------------------------------------------------------
@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _add_row(ci, two, cA, cb, kind, nc, i, is_two, row, rhs, knd):
    """Append a constraint row (normalised to unit norm); returns the new count (unchanged when full)."""
    if nc >= ci.shape[0]:
        return nc
    nrm = 0.0
    for a in range(6):
        nrm += row[a] * row[a]
    nrm = math.sqrt(nrm)
    if not nrm > 0.0:
        return nc
    ci[nc] = i
    two[nc] = is_two
    for a in range(6):
        cA[nc, a] = row[a] / nrm
    cb[nc] = rhs / nrm
    kind[nc] = knd
    return nc + 1


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _calendar_row(kk, pl, ph, row):
    """Coefficients of ``w_hi(k) - w_lo(k)`` at ``k`` in (x_lo, x_hi) for slices with (m, sigma) in
    ``pl``, ``ph`` (rows a, b, rho, m, sigma)."""
    yl = (kk - pl[3]) / pl[4]
    yh = (kk - ph[3]) / ph[4]
    row[0] = -1.0
    row[1] = -yl
    row[2] = -math.sqrt(yl * yl + 1.0)
    row[3] = 1.0
    row[4] = yh
    row[5] = math.sqrt(yh * yh + 1.0)


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def g_linear(kk, x, m, sig):
    """Gatheral-Jacquier ``g`` at ``k`` for the slice ``x = (a, d, c)`` at fixed ``(m, sigma)``, and its
    gradient in ``x``; returns ``(g, dg/da, dg/dd, dg/dc)`` (g = -inf where w <= 0)."""
    y = (kk - m) / sig
    zz = math.sqrt(y * y + 1.0)
    w = x[0] + x[1] * y + x[2] * zz
    if not w > 0.0:
        return -math.inf, 0.0, 0.0, 0.0
    w1 = (x[1] + x[2] * y / zz) / sig
    w2 = x[2] / (sig * sig * zz * zz * zz)
    t = 1.0 - kk * w1 / (2.0 * w)
    g = t * t - 0.25 * w1 * w1 * (1.0 / w + 0.25) + 0.5 * w2
    dg_dw = 2.0 * t * (kk * w1 / (2.0 * w * w)) + 0.25 * w1 * w1 / (w * w)
    dg_dw1 = 2.0 * t * (-kk / (2.0 * w)) - 0.5 * w1 * (1.0 / w + 0.25)
    dg_dw2 = 0.5
    ga = dg_dw
    gd = dg_dw * y + dg_dw1 / sig
    gc = dg_dw * zz + dg_dw1 * y / (zz * sig) + dg_dw2 / (sig * sig * zz * zz * zz)
    return g, ga, gd, gc


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _to_params(x, m, sig, p):
    p[0] = x[0]
    p[1] = x[2] / sig
    p[2] = x[1] / x[2] if x[2] > 0.0 else 0.0
    p[3] = m
    p[4] = sig


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def calendar_violations(hi, lo, out_k):
    """Every interval between consecutive crossing candidates of two slices where ``w_hi - w_lo`` dips
    below 0: its deepest point into ``out_k`` (length >= 5). Returns how many (0: calendar-free for all k,
    the asymptotic slopes aside)."""
    roots = np.empty(4)
    nr, left, right, _ = crossing_intervals(hi, lo, roots)
    nv = 0
    x0 = left
    for i in range(nr + 1):
        x1 = roots[i] if i < nr else right
        f, kk = _golden_gap(x0, x1, hi, lo)
        if f < 0.0:
            out_k[nv] = kk
            nv += 1
        x0 = x1
    return nv


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def joint_fit(k, v, wt, offsets, sl, P, lam, bf_klo, bf_khi, slope, rho_max, npts, out, ncut, seed=False):
    """Best raw-SVI slices of one surface (``sl``: slice indices in increasing expiry) with ``(m, sigma)``
    fixed at ``P[:, 3:]``, all linear parameters jointly, under butterfly on each slice's check interval
    ``[bf_klo[s], bf_khi[s]]``, Lee's bound ``b (1 + |rho|) <= slope`` and calendar order for every real
    k between neighbours. ``lam[j]``: the weight of slice ``j``'s objective in the joint one. With
    ``seed``, ``P`` is taken to be (nearly) feasible and its own binding points seed the cuts: each pair's
    closest approach and each slice's butterfly minimum where g is small there (fewer rounds). Writes
    ``out`` (nsl, 5) and ``ncut[0]`` (cutting-plane rounds used); returns True when the exact checkers
    pass for every slice and pair."""
    nsl = sl.shape[0]
    maxc = nsl * (8 + 2 * _ROUNDS) + _N_INIT_CUTS * nsl + 16
    ci = np.empty(maxc, np.int64)
    two = np.zeros(maxc, np.bool_)
    cA = np.zeros((maxc, 6))
    cb = np.empty(maxc)
    kind = np.empty(maxc, np.int64)
    H = np.zeros((nsl, 3, 3))
    f = np.zeros((nsl, 3))
    vbar = np.empty(nsl)
    row = np.zeros(6)
    for j in range(nsl):
        s = sl[j]
        m = P[j, 3]
        sig = P[j, 4]
        sw = 0.0
        sv = 0.0
        for i in range(offsets[s], offsets[s + 1]):
            y = (k[i] - m) / sig
            zz = math.sqrt(y * y + 1.0)
            w = wt[i] * lam[j]
            H[j, 0, 0] += w
            H[j, 0, 1] += w * y
            H[j, 0, 2] += w * zz
            H[j, 1, 1] += w * y * y
            H[j, 1, 2] += w * y * zz
            H[j, 2, 2] += w * zz * zz
            f[j, 0] -= w * v[i]
            f[j, 1] -= w * y * v[i]
            f[j, 2] -= w * zz * v[i]
            sw += wt[i]
            sv += wt[i] * v[i]
        H[j, 1, 0] = H[j, 0, 1]
        H[j, 2, 0] = H[j, 0, 2]
        H[j, 2, 1] = H[j, 1, 2]
        vbar[j] = sv / sw if sw > 0.0 else 1e-4
    nc = 0
    for j in range(nsl):
        sig = P[j, 4]
        # rho_max c -+ d >= 0 ; S sigma - c -+ d >= 0
        for sgn in (-1.0, 1.0):
            row[:] = 0.0
            row[1] = sgn
            row[2] = rho_max
            nc = _add_row(ci, two, cA, cb, kind, nc, j, False, row, 0.0, DOMAIN)
            row[:] = 0.0
            row[1] = sgn
            row[2] = 1.0
            nc = _add_row(ci, two, cA, cb, kind, nc, j, False, row, -slope * sig, DOMAIN)
            cA[nc - 1, 1] = -cA[nc - 1, 1]
            cA[nc - 1, 2] = -cA[nc - 1, 2]
    for j in range(nsl - 1):
        sl_ = P[j, 4]
        sh = P[j + 1, 4]
        # right wing: (c_h + d_h) / sig_h - (c_l + d_l) / sig_l >= margin; left: (c - d)
        for sgn in (1.0, -1.0):
            row[0] = 0.0
            row[1] = -sgn / sl_
            row[2] = -1.0 / sl_
            row[3] = 0.0
            row[4] = sgn / sh
            row[5] = 1.0 / sh
            nc = _add_row(ci, two, cA, cb, kind, nc, j, True, row, _SLOPE_MARGIN, SLOPE)
        lo = min(bf_klo[sl[j]], bf_klo[sl[j + 1]])
        hi = max(bf_khi[sl[j]], bf_khi[sl[j + 1]])
        eps = _CAL_MARGIN * 0.5 * (vbar[j] + vbar[j + 1])
        for c in range(_N_INIT_CUTS):
            kk = lo + c * (hi - lo) / (_N_INIT_CUTS - 1)
            _calendar_row(kk, P[j], P[j + 1], row)
            nc = _add_row(ci, two, cA, cb, kind, nc, j, True, row, eps, CALENDAR)
    x = np.empty((nsl, 3))
    z = np.empty(maxc)
    kv = np.empty(5)
    if seed:
        for j in range(nsl - 1):
            g, kk = calendar_gap(P[j + 1], P[j])
            if math.isfinite(kk) and abs(kk) < 1e5:
                _calendar_row(kk, P[j], P[j + 1], row)
                eps = _CAL_MARGIN * 0.5 * (vbar[j] + vbar[j + 1])
                nc = _add_row(ci, two, cA, cb, kind, nc, j, True, row, eps, CALENDAR)
        for j in range(nsl):
            s = sl[j]
            mg, kg = min_g(P[j, 0], P[j, 1], P[j, 2], P[j, 3], P[j, 4], bf_klo[s], bf_khi[s], npts)
            if 0.0 <= mg < _SEED_G:
                x[j, 0] = P[j, 0]
                x[j, 2] = P[j, 1] * P[j, 4]
                x[j, 1] = P[j, 2] * x[j, 2]
                g, ga, gd, gc = g_linear(kg, x[j], P[j, 3], P[j, 4])
                if math.isfinite(g):
                    row[:] = 0.0
                    row[0] = ga
                    row[1] = gd
                    row[2] = gc
                    rhs = _G_MARGIN - g + ga * x[j, 0] + gd * x[j, 1] + gc * x[j, 2]
                    nc = _add_row(ci, two, cA, cb, kind, nc, j, False, row, rhs, BUTTERFLY)
    ok = False
    ncut[0] = 0
    for rnd in range(_ROUNDS):
        ncut[0] = rnd + 1
        itq = qp_tridiag(H, f, ci, two, cA, cb, nc, x, z[:nc])
        if itq < 0:
            return False
        for j in range(nsl):
            _to_params(x[j], P[j, 3], P[j, 4], out[j])
        ok = True
        full = False
        for j in range(nsl):
            s = sl[j]
            a, d, c = x[j, 0], x[j, 1], x[j, 2]
            disc = c * c - d * d
            q = math.sqrt(disc) if disc > 0.0 else 0.0
            eps_w = _MV_MARGIN * vbar[j]
            if a + q < 0.5 * eps_w or not q > 0.0:
                ok = False
                ys = -d / q if q > 0.0 else 0.0
                row[:] = 0.0
                row[0] = 1.0
                row[1] = ys
                row[2] = math.sqrt(ys * ys + 1.0)
                n0 = nc
                nc = _add_row(ci, two, cA, cb, kind, nc, j, False, row, eps_w, MINVAR)
                full = full or nc == n0
                continue
            mg, kg = min_g(out[j, 0], out[j, 1], out[j, 2], out[j, 3], out[j, 4], bf_klo[s], bf_khi[s], npts)
            if mg < 0.0:
                ok = False
                g, ga, gd, gc = g_linear(kg, x[j], P[j, 3], P[j, 4])
                if not math.isfinite(g):
                    return False
                row[:] = 0.0
                row[0] = ga
                row[1] = gd
                row[2] = gc
                n0 = nc
                rhs = _G_MARGIN - g + ga * a + gd * d + gc * c
                nc = _add_row(ci, two, cA, cb, kind, nc, j, False, row, rhs, BUTTERFLY)
                full = full or nc == n0
        for j in range(nsl - 1):
            nv = calendar_violations(out[j + 1], out[j], kv)
            if nv > 0:
                ok = False
                eps = _CAL_MARGIN * 0.5 * (vbar[j] + vbar[j + 1])
                for c in range(nv):
                    _calendar_row(kv[c], P[j], P[j + 1], row)
                    n0 = nc
                    nc = _add_row(ci, two, cA, cb, kind, nc, j, True, row, eps, CALENDAR)
                    full = full or nc == n0
        if ok:
            break
        if full:
            return False
    if not ok:
        return False
    # the exact checkers decide (calendar_violations sees the finite crossings; the slopes are rows of the
    # QP, confirmed here by the same checker that fit_svi reports)
    for j in range(nsl - 1):
        shr = out[j + 1, 1] * (1.0 + out[j + 1, 2]) - out[j, 1] * (1.0 + out[j, 2])
        shl = out[j + 1, 1] * (1.0 - out[j + 1, 2]) - out[j, 1] * (1.0 - out[j, 2])
        if shr < 0.0 or shl < 0.0:
            return False
    return True


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def joint_objective(k, v, wt, offsets, sl, Q, lam):
    """``sum_j lam[j] sum_i wt (w_j(k_i) - v_i)^2`` of the parameter rows ``Q`` (nsl, 5)."""
    tot = 0.0
    for j in range(sl.shape[0]):
        s = sl[j]
        f = 0.0
        for i in range(offsets[s], offsets[s + 1]):
            r = svi_w(k[i], Q[j, 0], Q[j, 1], Q[j, 2], Q[j, 3], Q[j, 4]) - v[i]
            f += wt[i] * r * r
        tot += lam[j] * f
    return tot
