"""Slow, obvious references for the SVI kernels (scipy), used by tests and benchmarks.

* :func:`fit_slice_least_squares` - scipy ``least_squares`` (trust-region reflective, analytic Jacobian) on
  the five raw parameters from several starts, with the same constraints as the fast path: bounds for
  ``b >= 0``, ``|rho| < 1``, ``sigma > 0``, and residual penalties for the minimum total variance and the
  wing slope (they are inactive at any feasible answer).
* :func:`inner_solve_slsqp` - the fixed-``(m, sigma)`` constrained problem of the quasi-explicit method
  solved by SLSQP, to check the exact inner solve.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

RHO_MAX = 1.0 - 1e-6


def _w(p: NDArray[np.float64], k: NDArray[np.float64]) -> NDArray[np.float64]:
    a, b, rho, m, sig = p
    x = k - m
    return np.asarray(a + b * (rho * x + np.sqrt(x * x + sig * sig)), dtype=np.float64)


def objective(
    p: NDArray[np.float64], k: NDArray[np.float64], v: NDArray[np.float64], wt: NDArray[np.float64]
) -> float:
    """``sum wt (w(k) - v)^2``."""
    r = _w(np.asarray(p, dtype=np.float64), k) - v
    return float(np.sum(wt * r * r))


def feasible(p: NDArray[np.float64], slope: float = 4.0, tol: float = 1e-10) -> bool:
    a, b, rho, m, sig = p
    return bool(
        b >= -tol
        and abs(rho) <= 1.0
        and sig > 0.0
        and a + b * sig * np.sqrt(max(1.0 - rho * rho, 0.0)) >= -tol
        and b * (1.0 + abs(rho)) <= slope * (1.0 + tol)
    )


def fit_slice_least_squares(
    k: NDArray[np.float64],
    v: NDArray[np.float64],
    wt: NDArray[np.float64] | None = None,
    *,
    slope: float = 4.0,
    n_starts: int = 4,
    seed: int = 0,
) -> tuple[NDArray[np.float64], float]:
    """Best feasible raw-SVI fit of one slice over ``n_starts`` scipy ``least_squares`` runs.

    Returns ``(params, objective)``; the objective is ``sum wt (w(k) - v)^2``.
    """
    from scipy.optimize import least_squares

    k = np.asarray(k, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    wt = np.ones_like(k) if wt is None else np.asarray(wt, dtype=np.float64)
    sw = np.sqrt(wt)
    scale = float(np.sqrt(np.mean(wt * v * v))) + 1e-300
    pen = 1e3

    def resid(p: NDArray[np.float64]) -> NDArray[np.float64]:
        a, b, rho, m, sig = p
        r = sw * (_w(p, k) - v)
        mv = a + b * sig * np.sqrt(max(1.0 - rho * rho, 0.0))
        ws = b * (1.0 + abs(rho)) - slope
        return np.concatenate(
            [r, [pen * scale * min(mv, 0.0) / (abs(v).max() + 1e-300), pen * scale * max(ws, 0.0)]]
        )

    def jac(p: NDArray[np.float64]) -> NDArray[np.float64]:
        a, b, rho, m, sig = p
        x = k - m
        r = np.sqrt(x * x + sig * sig)
        J = np.empty((k.size + 2, 5))
        J[:-2, 0] = 1.0
        J[:-2, 1] = rho * x + r
        J[:-2, 2] = b * x
        J[:-2, 3] = -b * (rho + x / r)
        J[:-2, 4] = b * sig / r
        J[:-2] *= sw[:, None]
        J[-2:] = 0.0
        sq = np.sqrt(max(1.0 - rho * rho, 1e-300))
        mv = a + b * sig * sq
        if mv < 0.0:
            c = pen * scale / (abs(v).max() + 1e-300)
            J[-2] = c * np.array([1.0, sig * sq, -b * sig * rho / sq, 0.0, b * sq])
        if b * (1.0 + abs(rho)) > slope:
            J[-1] = pen * scale * np.array([0.0, 1.0 + abs(rho), b * np.sign(rho), 0.0, 0.0])
        return J

    kmin, kmax = float(k.min()), float(k.max())
    rng_k = max(kmax - kmin, 1e-3)
    lo = [-np.inf, 0.0, -RHO_MAX, kmin - 2 * rng_k, 1e-3 * rng_k]
    hi = [np.inf, np.inf, RHO_MAX, kmax + 2 * rng_k, 10 * rng_k]
    rng = np.random.default_rng(seed)
    vmin = float(v.min())
    best_p, best_f = np.full(5, np.nan), np.inf
    for i in range(n_starts):
        m0 = kmin + rng_k * (0.5 if i == 0 else rng.uniform(0.1, 0.9))
        s0 = rng_k * (0.2 if i == 0 else np.exp(rng.uniform(np.log(0.05), np.log(1.0))))
        rho0 = -0.5 if i == 0 else rng.uniform(-0.9, 0.5)
        b0 = 0.1 * max(float(v.max()) - vmin, 1e-6) / rng_k
        p0 = np.array([max(vmin - b0 * s0 * np.sqrt(1 - rho0**2), 0.0), b0, rho0, m0, s0])
        sol = least_squares(
            resid,
            p0,
            jac=jac,
            bounds=(lo, hi),
            method="trf",
            x_scale="jac",
            xtol=1e-12,
            ftol=1e-12,
            gtol=1e-12,
            max_nfev=2000,
        )
        f = objective(sol.x, k, v, wt)
        if feasible(sol.x, slope, tol=1e-8) and f < best_f:
            best_p, best_f = sol.x, f
    return best_p, best_f


def inner_solve_slsqp(
    k: NDArray[np.float64],
    v: NDArray[np.float64],
    wt: NDArray[np.float64],
    m: float,
    sig: float,
    *,
    slope: float = 4.0,
    rho_max: float = RHO_MAX,
    lower: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None,
    upper: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None,
) -> tuple[float, NDArray[np.float64]]:
    """The quasi-explicit inner problem by SLSQP: minimise ``sum wt (a + d y + c z - v)^2`` over
    ``(a, d, c)`` subject to ``|d| <= rho_max c``, ``c + |d| <= slope sigma`` and
    ``a + sqrt(c^2 - d^2) >= 0``; with ``lower = (kj, lj)`` also ``w(kj) >= lj`` and with
    ``upper = (kj, uj)`` ``w(kj) <= uj`` (calendar bounds). Returns ``(objective, (a, b, rho))``; best of
    a few starts (objective inf when no start ends feasible)."""
    from scipy.optimize import minimize

    y = (k - m) / sig
    z = np.sqrt(y * y + 1.0)
    A = np.column_stack([np.ones_like(y), y, z])
    sw = np.sqrt(wt)

    def f(x: NDArray[np.float64]) -> float:
        r = A @ x - v
        return float(np.sum(wt * r * r))

    def g(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(2.0 * A.T @ (wt * (A @ x - v)), dtype=np.float64)

    cons: list[dict[str, Any]] = [
        {"type": "ineq", "fun": lambda x: rho_max * x[2] - x[1]},
        {"type": "ineq", "fun": lambda x: rho_max * x[2] + x[1]},
        {"type": "ineq", "fun": lambda x: slope * sig - x[2] - x[1]},
        {"type": "ineq", "fun": lambda x: slope * sig - x[2] + x[1]},
        {"type": "ineq", "fun": lambda x: x[0] + np.sqrt(max(x[2] ** 2 - x[1] ** 2, 0.0))},
    ]
    for bound, sign in ((lower, 1.0), (upper, -1.0)):
        if bound is not None:
            yb = (bound[0] - m) / sig
            Ab = sign * np.column_stack([np.ones_like(yb), yb, np.sqrt(yb * yb + 1.0)])
            rhs = sign * bound[1]
            cons.append(
                {"type": "ineq", "fun": lambda x, Ab=Ab, rhs=rhs: Ab @ x - rhs, "jac": lambda x, Ab=Ab: Ab}
            )
    best = (np.inf, np.full(3, np.nan))
    x_ls = np.linalg.lstsq(A * sw[:, None], v * sw, rcond=None)[0]
    for x0 in (
        np.array([float(v.mean()), 0.0, 0.1 * slope * sig]),
        x_ls,
        np.array([float(v.min()), -0.5 * slope * sig / 2, 0.6 * slope * sig / 2]),
    ):
        sol = minimize(
            f, x0, jac=g, constraints=cons, method="SLSQP", options={"ftol": 1e-15, "maxiter": 500}
        )
        x = sol.x
        ok = all(np.all(c["fun"](x) >= -1e-9) for c in cons)
        if ok and sol.fun < best[0]:
            best = (float(sol.fun), x)
    a, d, c = best[1]
    return best[0], np.array([a, c / sig, d / c if c > 0 else 0.0])


def qp3_kkt_violation(
    G: NDArray[np.float64],
    g: NDArray[np.float64],
    C: NDArray[np.float64],
    cb: NDArray[np.float64],
    x: NDArray[np.float64],
) -> tuple[float, float]:
    """How far ``x`` is from solving ``min 1/2 x'Gx + g'x`` s.t. ``C x >= cb``: (largest constraint
    violation, residual of stationarity with non-negative multipliers on the active constraints, by NNLS).
    Both are 0 at the solution of a convex QP (KKT conditions)."""
    from scipy.optimize import nnls

    slack = C @ x - cb
    scale = 1.0 + float(np.abs(x).sum())
    active = np.abs(slack) <= 1e-9 * scale * np.linalg.norm(C, axis=1)
    grad = G @ x + g
    if active.any():
        _, res = nnls(C[active].T, grad)
    else:
        res = float(np.linalg.norm(grad))
    return float(max(0.0, -slack.min())), float(res)
