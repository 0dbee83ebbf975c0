"""A small dense convex QP solver for the quasi-explicit SVI inner problem (Numba).

``qp3`` minimises ``1/2 x'Gx + g'x`` over ``x`` in R^3 under linear inequalities (Goldfarb and Idnani's
dual active-set method). Numeric contract: at the answer the KKT conditions hold to ~1e-9 relative and
"inconsistent" agrees with an LP feasibility check (``tests/test_svi.py``).
"""

from __future__ import annotations

import math

import numba
import numpy as np

_QP_MAXIT = 60


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
