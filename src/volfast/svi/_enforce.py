"""No-arbitrage enforced inside the SVI fit (Numba): butterfly- and calendar-free slices by construction.

For fixed ``(m, sigma)`` a raw-SVI slice is linear in ``(a, d, c)`` (see :mod:`._quasi_explicit`), so
"at or above the previous slice" and "at or below the next one" are linear constraints at any point ``k``.
The semi-infinite constraint "for all k" is handled by cutting planes: the bounded quasi-explicit fit is
solved with the current cut points and the neighbours' asymptotic wing slopes, the exact checker
(:func:`._arbitrage.calendar_gap`, the quartic of crossings) finds the most violating ``k`` of the result,
that point joins the cuts, and the search resumes from the current ``(m, sigma)``; a few rounds suffice.
Butterfly enters the outer search as a penalty on g below a small margin (coarse u-grid over the check
interval plus every point where the exact check :func:`._arbitrage.min_g` found g < 0, the weight raised
x10 per round while it still finds one). A slice is accepted only when the exact checkers pass.

Per surface (slices in increasing expiry) a forward pass: each slice keeps its own fit where that is free
of arbitrage against its fitted predecessor; otherwise it gets the cheaper, in relative objective (the
objective over the slice's weighted sum of squared quotes), of (a) refitted above the predecessor and
(b) its own fit kept and the predecessor refitted between its own predecessor and it (lowering the
earlier slice, mostly in its unquoted wings). ``_VARIANTS`` adds a backward pass (from the long end, each
slice under its successor) and a homotopy start (Gauss-Seidel sweeps from the own fits with calendar
bounds relaxed by a factor ``1 -+ eps``, ``eps`` shrinking to 0, then the forward pass); the variant with
the lower total wins. (Plain Gauss-Seidel sweeps from a sequential solution do nothing: each slice is
already optimal under its one-sided bound, hence under the two-sided one.) Guaranteed fallback: when no
bounded fit passes, a slice takes its predecessor's parameters (calendar gap 0; kept only if butterfly-free
on the slice's check interval); failing that it is reported as not arbitrage-free (``how = 3``), never as
OK.

Joint stage (``_JOINT``, default on; :mod:`._joint`): before the sequential pass, the joint QP of all the
surface's linear parameters at the own fits' (m, sigma) made non-decreasing in expiry; kept when the exact
checks pass and its weighted objective is within ``_FAST_TOL`` of the own fits' (most of a dense synthetic
day's time saving: one QP per surface instead of a bounded Nelder-Mead refit per slice). Otherwise, after
the sequential pass, the joint QP at the sequential (m, sigma) polishes its linear parameters where that
lowers the objective (each slice's objective weighted ``1 / (4 vbar T)``, squared-vol units), and a
feasible fast-path surface above the tolerance still replaces the result where its objective is lower.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from volfast.svi._arbitrage import calendar_gap, min_g, svi_w
from volfast.svi._joint import joint_fit, joint_objective
from volfast.svi._quasi_explicit import Bounds, search

_MAXCUT = 48  # cut points per neighbour
_N_INIT_CUTS = 7  # initial cut points on the union of the two slices' check intervals
_ROUNDS = 12  # cutting-plane / penalty rounds per bounded fit
_BF_COARSE = 41  # coarse u-grid points of the butterfly penalty
_CUT_REL = 1e-9  # cuts aim this far (relative) inside the bound, so the exact check passes after rounding
_HOMOTOPY_STEPS = 5  # Gauss-Seidel sweeps of the homotopy start
_HOMOTOPY_EPS0 = 0.1  # its first relative slack of the calendar bounds
# starts per surface: 1 = the forward pass (with pairwise lowering); 2 adds the backward pass, 3 the homotopy
# start (on the SPX chain of tests/_spx_chain.py: RMSE 1.20 -> 1.16 vol points for ~3x the time on dense days)
_VARIANTS = 1
_NM_FTOL = 1e-7  # Nelder-Mead stopping rule of the bounded refits (relative objective, (m, log sigma))
_NM_XTOL = 1e-4
_MAXIT_LATER = 40  # Nelder-Mead iterations of the later cutting-plane rounds (warm, small moves)
# the joint QP stage (:mod:`._joint`, issue 19): all slices' linear parameters at once under the exact
# calendar and butterfly cuts. A fast path first: the joint QP at the slices' own (m, sigma) made
# non-decreasing in expiry (isotonic regression), kept when its weighted objective is within _FAST_TOL of
# the own fits' (a lower bound for any arbitrage-free fit); otherwise the sequential pass below, then the
# joint QP at its (m, sigma) as a polish (kept where it lowers the objective), and the lower of that and the
# fast path's surface. Measured in benchmarks/RESULTS.md; False: the sequential pass alone
_JOINT = True
_FAST_TOL = 0.25

# how[] codes
FREE = 0  # the slice's own (unconstrained) fit, free of arbitrage against its neighbours
BOUNDED = 1  # refitted under the arbitrage constraints
COPIED = 2  # took a neighbour's parameters (fallback)
FAILED = 3  # no arbitrage-free fit found


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def sse(k, v, wt, p):
    f = 0.0
    for i in range(k.shape[0]):
        r = svi_w(k[i], p[0], p[1], p[2], p[3], p[4]) - v[i]
        f += wt[i] * r * r
    return f


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def butterfly_ok(p, klo, khi, slope_lee, npts):
    """g >= 0 on [klo, khi] (exact check) and Lee's wing bound ``b (1 + |rho|) <= slope_lee``."""
    if p[1] * (1.0 + abs(p[2])) > slope_lee * (1.0 + 1e-12):
        return False
    return min_g(p[0], p[1], p[2], p[3], p[4], klo, khi, npts)[0] >= 0.0


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _add_cut(ks, ws, n, kk, w):
    if n >= ks.shape[0] or not math.isfinite(kk):
        return n
    ks[n] = kk
    ws[n] = w
    return n + 1


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _cut_value(p, kk, sign):
    w = svi_w(kk, p[0], p[1], p[2], p[3], p[4])
    return w + sign * (_CUT_REL * abs(w) + 1e-14)


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def refit_bounded(
    k,
    v,
    wt,
    warm,
    has_lo,
    plo,
    has_hi,
    phi,
    bf_klo,
    bf_khi,
    cut_klo,
    cut_khi,
    slope,
    rho_max,
    maxit,
    m_out,
    npts,
    out,
):
    """Best raw SVI for one slice with g >= 0 on [bf_klo, bf_khi], ``w >= w_lo`` (``has_lo``) and
    ``w <= w_hi`` (``has_hi``) for every real k, by cutting planes from the warm start ``warm``. Writes
    ``out``; returns True when the exact checks pass (then ``out`` is the constrained fit)."""
    n = k.shape[0]
    y = np.empty(n)
    z = np.empty(n)
    lo_k = np.empty(_MAXCUT)
    lo_w = np.empty(_MAXCUT)
    hi_k = np.empty(_MAXCUT)
    hi_w = np.empty(_MAXCUT)
    bf_k = np.empty(_MAXCUT)
    bf_w = np.empty(_MAXCUT)  # unused values of the butterfly cuts
    nlo = 0
    nhi = 0
    nbf = 0
    for j in range(_N_INIT_CUTS):
        kk = cut_klo + j * (cut_khi - cut_klo) / (_N_INIT_CUTS - 1)
        if has_lo:
            nlo = _add_cut(lo_k, lo_w, nlo, kk, _cut_value(plo, kk, 1.0))
        if has_hi:
            nhi = _add_cut(hi_k, hi_w, nhi, kk, _cut_value(phi, kk, -1.0))
    lo_sr = 0.0
    lo_sl = 0.0
    hi_sr = math.inf
    hi_sl = math.inf
    if has_lo:
        lo_sr = plo[1] * (1.0 + plo[2]) * (1.0 + 1e-9)
        lo_sl = plo[1] * (1.0 - plo[2]) * (1.0 + 1e-9)
        g, kk = calendar_gap(warm, plo)
        if g < 0.0:
            nlo = _add_cut(lo_k, lo_w, nlo, kk, _cut_value(plo, kk, 1.0))
    if has_hi:
        hi_sr = phi[1] * (1.0 + phi[2]) * (1.0 - 1e-9)
        hi_sl = phi[1] * (1.0 - phi[2]) * (1.0 - 1e-9)
        g, kk = calendar_gap(phi, warm)
        if g < 0.0:
            nhi = _add_cut(hi_k, hi_w, nhi, kk, _cut_value(phi, kk, -1.0))
    s0 = 0.0
    for i in range(n):
        s0 += wt[i] * v[i] * v[i]
    mu = 0.0
    mg, kg = min_g(warm[0], warm[1], warm[2], warm[3], warm[4], bf_klo, bf_khi, npts)
    if mg < 0.0:
        mu = s0
        nbf = _add_cut(bf_k, bf_w, nbf, kg, 0.0)
    wm = warm[3]
    wls = math.log(warm[4])
    # first from the warm start alone; where that fails, again with the 5x5 grid of starts as well
    for attempt in range(2):
        if attempt == 1:
            wm = warm[3]
            wls = math.log(warm[4])
        for rnd in range(_ROUNDS):
            bnd = Bounds(
                True, lo_k, lo_w, nlo, lo_sr, lo_sl, hi_k, hi_w, nhi, hi_sr, hi_sl, mu, bf_klo, bf_khi,
                _BF_COARSE, bf_k, nbf,
            )  # fmt: skip
            n_grid = 1 if attempt == 1 and rnd == 0 else 0
            it = maxit if rnd == 0 else _MAXIT_LATER
            f = search(
                k, v, wt, slope, rho_max, n_grid, it, True, wm, wls, y, z, out, bnd, m_out, _NM_FTOL, _NM_XTOL
            )
            if not f < math.inf:
                break
            wm = out[3]
            wls = math.log(out[4])
            ok = True
            if has_lo:
                g, kk = calendar_gap(out, plo)
                if g < 0.0:
                    ok = False
                    nlo = _add_cut(lo_k, lo_w, nlo, kk, _cut_value(plo, kk, 1.0))
            if has_hi:
                g, kk = calendar_gap(phi, out)
                if g < 0.0:
                    ok = False
                    nhi = _add_cut(hi_k, hi_w, nhi, kk, _cut_value(phi, kk, -1.0))
            mg, kg = min_g(out[0], out[1], out[2], out[3], out[4], bf_klo, bf_khi, npts)
            if mg < 0.0:
                ok = False
                mu = s0 if mu == 0.0 else 10.0 * mu
                nbf = _add_cut(bf_k, bf_w, nbf, kg, 0.0)
            if ok:
                return True
        mu = s0 if mu > 0.0 else 0.0
    return False


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _s0(v, wt, a0, a1):
    s0 = 0.0
    for i in range(a0, a1):
        s0 += wt[i] * v[i] * v[i]
    return s0


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _pass(
    k,
    v,
    wt,
    offsets,
    sl,
    free,
    bf_klo,
    bf_khi,
    slope,
    slope_lee,
    rho_max,
    maxit,
    m_out,
    npts,
    backward,
    P,
    how,
    f,
    lower_alt,
):
    """One sequential pass over the slices ``sl`` of a surface (increasing expiry), forward or backward.
    ``P``, ``how``, ``f`` per position in ``sl``; returns the total relative objective (sum over slices of
    the objective over the slice's weighted sum of squared quotes; 1 per failed slice).

    Forward, a slice whose own fit crosses its predecessor's gets the cheaper (in relative objective) of:
    refitted above the predecessor, or its own fit kept and the predecessor refitted between its own
    predecessor and it (lowering the earlier slice, mostly in its unquoted wings)."""
    nsl = sl.shape[0]
    out = np.empty(5)
    alt = np.empty(5)
    last = -1
    for jj in range(nsl):
        j = nsl - 1 - jj if backward else jj
        s = sl[j]
        a0 = offsets[s]
        a1 = offsets[s + 1]
        how[j] = FAILED
        cand = free[j]
        f_free = sse(k[a0:a1], v[a0:a1], wt[a0:a1], cand)
        bf_free = butterfly_ok(cand, bf_klo[s], bf_khi[s], slope_lee, npts)
        ok = bf_free
        if ok and last >= 0:
            if backward:
                ok = calendar_gap(P[last], cand)[0] >= 0.0
            else:
                ok = calendar_gap(cand, P[last])[0] >= 0.0
        if ok:
            P[j] = cand
            how[j] = FREE
            f[j] = f_free
            last = j
            continue
        sn = sl[last] if last >= 0 else s
        cklo = min(bf_klo[s], bf_klo[sn])
        ckhi = max(bf_khi[s], bf_khi[sn])
        nb_p = P[last] if last >= 0 else cand
        if refit_bounded(
            k[a0:a1], v[a0:a1], wt[a0:a1], cand, last >= 0 and not backward, nb_p, last >= 0 and backward,
            nb_p, bf_klo[s], bf_khi[s], cklo, ckhi, slope, rho_max, maxit, m_out, npts, out,
        ):  # fmt: skip
            P[j] = out
            how[j] = BOUNDED
            f[j] = sse(k[a0:a1], v[a0:a1], wt[a0:a1], out)
        if lower_alt and not backward and bf_free and last >= 0 and how[last] != COPIED:
            # the alternative: keep this slice's own fit and lower its predecessor under it
            sp = sl[last]
            b0 = offsets[sp]
            b1 = offsets[sp + 1]
            ll = last - 1
            while ll >= 0 and how[ll] == FAILED:
                ll -= 1
            plo = P[ll] if ll >= 0 else P[last]
            pklo = min(bf_klo[sp], bf_klo[s])
            pkhi = max(bf_khi[sp], bf_khi[s])
            if ll >= 0:
                pklo = min(pklo, bf_klo[sl[ll]])
                pkhi = max(pkhi, bf_khi[sl[ll]])
            if refit_bounded(
                k[b0:b1], v[b0:b1], wt[b0:b1], P[last], ll >= 0, plo, True, cand, bf_klo[sp], bf_khi[sp],
                pklo, pkhi, slope, rho_max, maxit, m_out, npts, alt,
            ):  # fmt: skip
                f_alt = sse(k[b0:b1], v[b0:b1], wt[b0:b1], alt)
                cost_alt = (f_alt - f[last]) / _s0(v, wt, b0, b1)
                cost_up = (f[j] - f_free) / _s0(v, wt, a0, a1) if how[j] == BOUNDED else math.inf
                if cost_alt < cost_up:
                    P[last] = alt
                    how[last] = BOUNDED
                    f[last] = f_alt
                    P[j] = cand
                    how[j] = FREE
                    f[j] = f_free
        if how[j] == FAILED and last >= 0 and butterfly_ok(P[last], bf_klo[s], bf_khi[s], slope_lee, npts):
            P[j] = P[last]
            how[j] = COPIED
            f[j] = sse(k[a0:a1], v[a0:a1], wt[a0:a1], P[j])
        if how[j] != FAILED:
            last = j
    tot = 0.0
    for j in range(nsl):
        s = sl[j]
        tot += 1.0 if how[j] == FAILED else f[j] / _s0(v, wt, offsets[s], offsets[s + 1])
    return tot


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _homotopy(k, v, wt, offsets, sl, free, bf_klo, bf_khi, slope, slope_lee, rho_max, maxit, m_out, npts, P):
    """Gauss-Seidel sweeps from the slices' own fits towards calendar order: each slice refitted between
    its neighbours scaled by ``1 -+ eps`` (``w_lo (1 - eps) <= w <= w_hi (1 + eps)``, still raw SVI),
    ``eps`` shrinking to 0 over the sweeps, so that neighbouring slices meet half way instead of the
    earlier one deciding. Writes candidate parameters into ``P`` (not necessarily feasible: the forward
    pass of :func:`_pass` from them makes them so)."""
    nsl = sl.shape[0]
    out = np.empty(5)
    plo = np.empty(5)
    phi = np.empty(5)
    for j in range(nsl):
        P[j] = free[j]
    for it in range(_HOMOTOPY_STEPS):
        eps = _HOMOTOPY_EPS0 * (1.0 - it / (_HOMOTOPY_STEPS - 1))
        for j in range(nsl):
            s = sl[j]
            a0 = offsets[s]
            a1 = offsets[s + 1]
            has_lo = j > 0
            has_hi = j < nsl - 1
            if has_lo:
                plo[:] = P[j - 1]
                plo[0] *= 1.0 - eps
                plo[1] *= 1.0 - eps
            if has_hi:
                phi[:] = P[j + 1]
                phi[0] *= 1.0 + eps
                phi[1] *= 1.0 + eps
            done = False
            for src in range(2):
                cand = free[j] if src == 0 else P[j]
                ok = butterfly_ok(cand, bf_klo[s], bf_khi[s], slope_lee, npts)
                if ok and has_lo:
                    ok = calendar_gap(cand, plo)[0] >= 0.0
                if ok and has_hi:
                    ok = calendar_gap(phi, cand)[0] >= 0.0
                if ok:
                    P[j] = cand
                    done = True
                    break
            if done:
                continue
            cklo = bf_klo[s]
            ckhi = bf_khi[s]
            if has_lo:
                cklo = min(cklo, bf_klo[sl[j - 1]])
                ckhi = max(ckhi, bf_khi[sl[j - 1]])
            if has_hi:
                cklo = min(cklo, bf_klo[sl[j + 1]])
                ckhi = max(ckhi, bf_khi[sl[j + 1]])
            if refit_bounded(
                k[a0:a1], v[a0:a1], wt[a0:a1], P[j], has_lo, plo, has_hi, phi, bf_klo[s], bf_khi[s], cklo,
                ckhi, slope, rho_max, maxit, m_out, npts, out,
            ):  # fmt: skip
                P[j] = out
            elif has_lo and has_hi and refit_bounded(
                k[a0:a1], v[a0:a1], wt[a0:a1], P[j], True, plo, False, phi, bf_klo[s], bf_khi[s], cklo,
                ckhi, slope, rho_max, maxit, m_out, npts, out,
            ):  # fmt: skip
                # the neighbours cross each other: above the earlier one alone
                P[j] = out


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _joint_weights(v, wt, offsets, sl, expiry, lam):
    """Each slice's weight in the joint objective, ``1 / (4 vbar T)``: its squared total-variance residuals
    in squared-vol units (``vbar`` its weighted mean quoted variance). False without positive expiries."""
    for j in range(sl.shape[0]):
        s = sl[j]
        if not expiry[s] > 0.0:
            return False
        sw = 0.0
        sv = 0.0
        for i in range(offsets[s], offsets[s + 1]):
            sw += wt[i]
            sv += wt[i] * v[i]
        if not sv > 0.0:
            return False
        lam[j] = sw / (4.0 * sv * expiry[s])
    return True


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _isotonic(y, out):
    """Least-squares non-decreasing fit of ``y`` (pool adjacent violators, equal weights)."""
    n = y.shape[0]
    val = np.empty(n)
    cnt = np.empty(n, np.int64)
    nb = 0
    for i in range(n):
        val[nb] = y[i]
        cnt[nb] = 1
        nb += 1
        while nb > 1 and val[nb - 2] > val[nb - 1]:
            c = cnt[nb - 2] + cnt[nb - 1]
            val[nb - 2] = (val[nb - 2] * cnt[nb - 2] + val[nb - 1] * cnt[nb - 1]) / c
            cnt[nb - 2] = c
            nb -= 1
    i = 0
    for b in range(nb):
        for _ in range(cnt[b]):
            out[i] = val[b]
            i += 1


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _finish_joint(free, bf_klo, bf_khi, sl, slope_lee, npts, Q, hw):
    """A joint solution ``Q`` made final: slices whose own fit passes against their (joint) neighbours get
    it back (``FREE``, else ``BOUNDED``); then every slice and pair re-checked by the exact checkers.
    Returns False (``Q`` unusable) when one fails."""
    nsl = sl.shape[0]
    for j in range(nsl):
        s = sl[j]
        hw[j] = BOUNDED
        cand = free[j]
        ok = butterfly_ok(cand, bf_klo[s], bf_khi[s], slope_lee, npts)
        if ok and j > 0:
            ok = calendar_gap(cand, Q[j - 1])[0] >= 0.0
        if ok and j < nsl - 1:
            ok = calendar_gap(Q[j + 1], cand)[0] >= 0.0
        if ok:
            Q[j] = cand
            hw[j] = FREE
    for j in range(nsl):
        s = sl[j]
        if not butterfly_ok(Q[j], bf_klo[s], bf_khi[s], slope_lee, npts):
            return False
        if j > 0 and not calendar_gap(Q[j], Q[j - 1])[0] >= 0.0:
            return False
    return True


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _all_free(free, bf_klo, bf_khi, sl, slope_lee, npts):
    """True when the own fits are already free of butterfly and calendar arbitrage."""
    for j in range(sl.shape[0]):
        if not butterfly_ok(free[j], bf_klo[sl[j]], bf_khi[sl[j]], slope_lee, npts):
            return False
        if j > 0 and not calendar_gap(free[j], free[j - 1])[0] >= 0.0:
            return False
    return True


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _fast_joint(k, v, wt, offsets, sl, free, lam, bf_klo, bf_khi, slope, slope_lee, rho_max, npts, P, how):
    """The fast path: the joint QP at the own fits' (m, sigma) made non-decreasing in expiry. When it
    passes the exact checks, writes ``P``, ``how`` and returns its weighted objective over the own fits'
    (>= 1 up to rounding: the own fits are a lower bound); inf when it found no arbitrage-free surface."""
    nsl = sl.shape[0]
    Pm = free.copy()
    col = np.empty(nsl)
    _isotonic(free[:, 3].copy(), col)
    Pm[:, 3] = col
    _isotonic(free[:, 4].copy(), col)
    Pm[:, 4] = col
    Q = np.empty((nsl, 5))
    ncut = np.zeros(1, np.int64)
    if not joint_fit(k, v, wt, offsets, sl, Pm, lam, bf_klo, bf_khi, slope, rho_max, npts, Q, ncut, False):
        return math.inf
    hw = np.empty(nsl, np.int64)
    if not _finish_joint(free, bf_klo, bf_khi, sl, slope_lee, npts, Q, hw):
        return math.inf
    P[:] = Q
    how[:] = hw
    f_own = joint_objective(k, v, wt, offsets, sl, free, lam)
    return joint_objective(k, v, wt, offsets, sl, Q, lam) / f_own if f_own > 0.0 else math.inf


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _polish(k, v, wt, offsets, sl, free, lam, bf_klo, bf_khi, slope, slope_lee, rho_max, npts, P, how):
    """The joint QP at the (m, sigma) of the feasible surface ``P`` (the sequential pass's), its binding
    points seeding the cuts. Replaces ``P`` only when every slice passes the exact checks and the weighted
    objective drops."""
    nsl = sl.shape[0]
    for j in range(nsl):
        if how[j] == FAILED:
            return
    Q = np.empty((nsl, 5))
    ncut = np.zeros(1, np.int64)
    if not joint_fit(k, v, wt, offsets, sl, P, lam, bf_klo, bf_khi, slope, rho_max, npts, Q, ncut, True):
        return
    if not joint_objective(k, v, wt, offsets, sl, Q, lam) < joint_objective(k, v, wt, offsets, sl, P, lam):
        return
    hw = np.empty(nsl, np.int64)
    if not _finish_joint(free, bf_klo, bf_khi, sl, slope_lee, npts, Q, hw):
        return
    P[:] = Q
    how[:] = hw


@numba.njit(parallel=True, cache=True, fastmath=False, error_model="numpy")
def enforce_surfaces(
    k,
    v,
    wt,
    offsets,
    params,
    surf_offsets,
    order,
    bf_klo,
    bf_khi,
    slope,
    slope_lee,
    rho_max,
    maxit,
    m_out,
    npts,
    how,
    expiry,
    joint,
):
    """Arbitrage-free fits of every surface (prange over surfaces). ``order`` lists the fitted slices
    surface by surface (CSR ``surf_offsets``) in increasing expiry; ``params`` holds their unconstrained
    fits on entry and the enforced ones on return; ``how[s]`` says what each slice became (FREE, BOUNDED,
    COPIED, FAILED)."""
    nsurf = surf_offsets.shape[0] - 1
    for si in numba.prange(nsurf):
        lo = surf_offsets[si]
        hi = surf_offsets[si + 1]
        nsl = hi - lo
        sl = order[lo:hi]
        free = np.empty((nsl, 5))
        for j in range(nsl):
            for c in range(5):
                free[j, c] = params[sl[j], c]
        best_P = np.empty((nsl, 5))
        best_how = np.empty(nsl, np.int64)
        best_tot = math.inf
        start = np.empty((nsl, 5))
        lam = np.empty(nsl)
        use_joint = joint and nsl >= 2 and _joint_weights(v, wt, offsets, sl, expiry, lam)
        fast_P = np.empty((nsl, 5))
        fast_how = np.empty(nsl, np.int64)
        fast = math.inf
        if use_joint and not _all_free(free, bf_klo, bf_khi, sl, slope_lee, npts):
            fast = _fast_joint(
                k, v, wt, offsets, sl, free, lam, bf_klo, bf_khi, slope, slope_lee, rho_max, npts, fast_P,
                fast_how,
            )  # fmt: skip
            if fast <= 1.0 + _FAST_TOL:
                best_P[:] = fast_P
                best_how[:] = fast_how
                best_tot = 0.0
        for variant in range(_VARIANTS if best_tot == math.inf else 0):
            if variant == 2:
                # the homotopy start, then made feasible by a forward pass
                _homotopy(
                    k, v, wt, offsets, sl, free, bf_klo, bf_khi, slope, slope_lee, rho_max, maxit, m_out,
                    npts, start,
                )  # fmt: skip
            else:
                start[:] = free
            P = start.copy()
            hw = np.empty(nsl, np.int64)
            f = np.zeros(nsl)
            tot = _pass(
                k, v, wt, offsets, sl, start, bf_klo, bf_khi, slope, slope_lee, rho_max, maxit, m_out, npts,
                variant == 1, P, hw, f, True,
            )  # fmt: skip
            if tot < best_tot:
                best_tot = tot
                best_P[:] = P
                best_how[:] = hw
            allfree = True
            for j in range(nsl):
                allfree = allfree and hw[j] == FREE
            if variant == 0 and allfree:
                break
        if use_joint and best_tot > 0.0:
            _polish(
                k, v, wt, offsets, sl, free, lam, bf_klo, bf_khi, slope, slope_lee, rho_max, npts, best_P,
                best_how,
            )  # fmt: skip
            # a fast-path surface above the tolerance still wins where it beats the sequential one
            if fast < math.inf:
                bad = False
                for j in range(nsl):
                    bad = bad or best_how[j] == FAILED
                f_seq = joint_objective(k, v, wt, offsets, sl, best_P, lam)
                if bad or joint_objective(k, v, wt, offsets, sl, fast_P, lam) < f_seq:
                    best_P[:] = fast_P
                    best_how[:] = fast_how
        for j in range(nsl):
            if best_how[j] == FREE:
                for c in range(5):
                    if best_P[j, c] != free[j, c]:
                        best_how[j] = BOUNDED
        for j in range(nsl):
            s = sl[j]
            how[s] = best_how[j]
            for c in range(5):
                params[s, c] = best_P[j, c]


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
    bf_klo,
    bf_khi,
    npts,
    rmse,
    inside,
    min_g_out,
    k_min_g,
    cal_gap,
    k_cal,
):
    """Per-slice RMSE (vol points; NaN without expiry), share inside [bid, ask], the exact minimum of g on
    [bf_klo, bf_khi] (and where), and the exact minimum calendar gap to slice ``prev[s]`` over all k
    (inf where prev < 0)."""
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
        g, kg = min_g(p[0], p[1], p[2], p[3], p[4], bf_klo[s], bf_khi[s], npts)
        min_g_out[s] = g
        k_min_g[s] = kg
        if prev[s] >= 0:
            gp, kp = calendar_gap(p, params[prev[s]])
            cal_gap[s] = gp
            k_cal[s] = kp
        else:
            cal_gap[s] = math.inf
            k_cal[s] = math.nan
