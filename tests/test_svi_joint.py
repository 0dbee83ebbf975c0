"""The joint arbitrage-free SVI fit (``volfast.svi._joint``): the block-tridiagonal QP against scipy SLSQP and
an independent KKT check written here, and the cutting-plane fit of whole surfaces against the independent
dense checker of ``test_svi_arbitrage.py``."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from scipy.optimize import minimize

from volfast.svi import _enforce, _weights, fit_svi, svi_g, total_variance
from volfast.svi import _joint as J
from volfast.svi._synthetic import spx_like_slices

from .test_svi_arbitrage import dense_calendar_ok, dense_min_g


# ---- the QP ---------------------------------------------------------------------------------------------
def _random_qp(rng: np.random.Generator, n: int, nc: int) -> tuple:
    H = np.empty((n, 3, 3))
    for i in range(n):
        B = rng.normal(size=(3, 3))
        H[i] = B @ B.T + 0.1 * np.eye(3)
    f = rng.normal(size=(n, 3))
    ci = rng.integers(0, n - 1, nc)
    two = rng.random(nc) < 0.6
    cA = rng.normal(size=(nc, 6))
    cA[~two, 3:] = 0.0
    x0 = rng.normal(size=(n, 3))
    cb = _ax(ci, two, cA, x0) - rng.uniform(0.0, 1.0, nc)  # x0 strictly feasible
    return H, f, ci, two, cA, cb


def _ax(ci, two, cA, x):
    nxt = np.minimum(ci + 1, len(x) - 1)
    own = np.einsum("ja,ja->j", cA[:, :3], x[ci])
    return own + np.where(two, np.einsum("ja,ja->j", cA[:, 3:], x[nxt]), 0.0)


def _kkt_residual(H, f, ci, two, cA, cb, x, z) -> float:
    """Largest violation of the KKT conditions (stationarity, primal and dual feasibility,
    complementarity), each relative to its scale: independent of the solver's own stopping test."""
    grad = np.einsum("iab,ib->ia", H, x) + f
    atz = np.zeros_like(x)
    for j in range(len(cb)):
        atz[ci[j]] += cA[j, :3] * z[j]
        if two[j]:
            atz[ci[j] + 1] += cA[j, 3:] * z[j]
    slack = _ax(ci, two, cA, x) - cb
    scale = 1.0 + np.abs(f).max() + np.abs(cb).max()
    return float(max(np.abs(grad - atz).max(), -slack.min(), -z.min(), np.abs(z * slack).max()) / scale)


def _objective(H, f, x) -> float:
    return float(0.5 * np.einsum("ia,iab,ib->", x, H, x) + np.sum(f * x))


def _objective_flat(H, f, y):
    return _objective(H, f, y.reshape(len(f), 3))


def _gradient_flat(H, f, y):
    return (np.einsum("iab,ib->ia", H, y.reshape(len(f), 3)) + f).ravel()


def _slack_flat(ci, two, cA, cb, y):
    return _ax(ci, two, cA, y.reshape(-1, 3)) - cb


def test_qp_tridiag_matches_slsqp_and_kkt() -> None:
    rng = np.random.default_rng(0)
    for n, nc in [(2, 8), (3, 15), (5, 30), (4, 25)]:
        H, f, ci, two, cA, cb = _random_qp(rng, n, nc)
        x = np.empty((n, 3))
        z = np.empty(nc)
        assert J.qp_tridiag(H, f, ci, two, cA, cb, nc, x, z) >= 0
        assert _kkt_residual(H, f, ci, two, cA, cb, x, z) < 1e-8
        ref = minimize(
            partial(_objective_flat, H, f),
            np.zeros(3 * n),
            jac=partial(_gradient_flat, H, f),
            constraints=[{"type": "ineq", "fun": partial(_slack_flat, ci, two, cA, cb)}],
            method="SLSQP",
            options={"ftol": 1e-12, "maxiter": 500},
        )
        assert ref.status in (0, 8)  # 8: converged to the last digits SLSQP's line search can see
        assert (_ax(ci, two, cA, ref.x.reshape(n, 3)) - cb).min() > -1e-8
        assert _objective(H, f, x) == pytest.approx(ref.fun, rel=1e-9, abs=1e-10)
        np.testing.assert_allclose(x.ravel(), ref.x, atol=1e-5)
        # a deliberately broken variant: the coupling to the next block dropped; the independent check
        # must see that its answer is not the QP's
        xb = np.empty((n, 3))
        zb = np.empty(nc)
        broke = J.qp_tridiag(H, f, ci, np.zeros(nc, bool), cA, cb, nc, xb, zb)
        assert broke < 0 or _kkt_residual(H, f, ci, two, cA, cb, xb, zb) > 1e-4


def test_qp_tridiag_reports_infeasible() -> None:
    H = np.broadcast_to(np.eye(3), (2, 3, 3)).copy()
    f = np.zeros((2, 3))
    # x_1[0] - x_0[0] >= 1 and x_0[0] - x_1[0] >= 0: no solution
    row = np.array([-1.0, 0, 0, 1.0, 0, 0])
    cA = np.array([row, -row])
    ci = np.array([0, 0])
    two = np.array([True, True])
    cb = np.array([1.0, 0.0])
    x = np.empty((2, 3))
    z = np.empty(2)
    assert J.qp_tridiag(H, f, ci, two, cA, cb, 2, x, z) == -1


def test_g_linear_gradient_against_finite_differences() -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        m, sig = rng.uniform(-0.2, 0.2), rng.uniform(0.05, 0.5)
        c = rng.uniform(0.01, 0.2)
        x = np.array([rng.uniform(0.005, 0.05), rng.uniform(-0.9, 0.9) * c, c])
        kk = rng.uniform(-1.0, 1.0)
        g, *grad = J.g_linear(kk, x, m, sig)
        p = np.array([x[0], x[2] / sig, x[1] / x[2], m, sig])
        assert g == pytest.approx(float(svi_g(kk, p)), rel=1e-12, abs=1e-14)
        for a in range(3):
            h = 1e-7 * max(abs(x[a]), 1e-3)
            xp, xm = x.copy(), x.copy()
            xp[a] += h
            xm[a] -= h
            fd = (J.g_linear(kk, xp, m, sig)[0] - J.g_linear(kk, xm, m, sig)[0]) / (2 * h)
            assert grad[a] == pytest.approx(fd, rel=1e-5, abs=1e-6)


# ---- whole surfaces -------------------------------------------------------------------------------------
def _surface_inputs(d: dict, own: np.ndarray) -> dict:
    k, v, off, T = d["k"], d["w"], d["offsets"], d["expiry_years"]
    ns = len(T)
    wt = np.empty(len(k))
    _weights.spread_weights(d["bid"], d["ask"], off, wt)
    vbar = np.array([np.average(v[off[s] : off[s + 1]], weights=wt[off[s] : off[s + 1]]) for s in range(ns)])
    kmin, kmax = np.minimum.reduceat(k, off[:-1]), np.maximum.reduceat(k, off[:-1])
    return {
        "k": k, "v": v, "wt": wt, "off": off, "sl": np.arange(ns, dtype=np.int64), "lam": 1 / (4 * vbar * T),
        "klo": kmin - 0.2, "khi": kmax + 0.2, "P": own,
    }  # fmt: skip


def _joint(s: dict) -> tuple[bool, np.ndarray, int]:
    out = np.empty((len(s["sl"]), 5))
    ncut = np.zeros(1, np.int64)
    ok = J.joint_fit(
        s["k"], s["v"], s["wt"], s["off"], s["sl"], s["P"], s["lam"], s["klo"], s["khi"], 2.0, 1 - 1e-6, 201,
        out, ncut,
    )  # fmt: skip
    return bool(ok), out, int(ncut[0])


def _assert_arbitrage_free(P: np.ndarray, klo: np.ndarray, khi: np.ndarray) -> None:
    for j in range(len(P)):
        assert dense_min_g(P[j], klo[j], khi[j], 50_001) >= -1e-9, j
        assert P[j, 1] * (1 + abs(P[j, 2])) <= 2.0 + 1e-12
        if j:
            assert dense_calendar_ok(P[j], P[j - 1]), j


def test_joint_fit_from_crossing_own_fits_is_arbitrage_free() -> None:
    # the own (unconstrained) fits of a noisy synthetic surface cross: the joint QP at their (m, sigma)
    # must end free of arbitrage by the independent dense checker
    d = spx_like_slices(1, seed=4)
    kw = {"expiry_years": d["expiry_years"]}
    own = fit_svi(d["k"], d["w"], d["offsets"], arbitrage_free=False, **kw)
    assert not own.calendar_ok[1:].all() or not own.butterfly_ok.all()
    s = _surface_inputs(d, own.params)
    ok, P, rounds = _joint(s)
    assert ok and rounds >= 2  # cuts were needed
    np.testing.assert_allclose(P[:, 3:], own.params[:, 3:])  # (m, sigma) kept
    _assert_arbitrage_free(P, s["klo"], s["khi"])


def test_joint_fit_never_worse_than_the_sequential_solution() -> None:
    # at the (m, sigma) of the sequential enforced fit, that fit is feasible for the joint QP, so the joint
    # optimum's objective is at most its objective
    d = spx_like_slices(1, seed=7, expiries=tuple(np.geomspace(7 / 365, 1.0, 8)))
    kw = {"expiry_years": d["expiry_years"], "bid_total_variance": d["bid"], "ask_total_variance": d["ask"]}
    seq = fit_svi(d["k"], d["w"], d["offsets"], **kw)
    assert seq.ok.all() and (seq.status == 1).any()
    s = _surface_inputs(d, seq.params)
    ok, P, _ = _joint(s)
    assert ok
    _assert_arbitrage_free(P, s["klo"], s["khi"])
    f_seq = J.joint_objective(s["k"], s["v"], s["wt"], s["off"], s["sl"], seq.params, s["lam"])
    f_joint = J.joint_objective(s["k"], s["v"], s["wt"], s["off"], s["sl"], P, s["lam"])
    assert f_joint <= f_seq * (1 + 1e-9)
    # and the fitted values stay close to the quotes (no degenerate slice)
    for j in range(len(P)):
        sl = slice(s["off"][j], s["off"][j + 1])
        assert np.sqrt(np.mean((total_variance(s["k"][sl], P[j]) / s["v"][sl] - 1) ** 2)) < 0.1


def _lam_total(r, d: dict, sid: np.ndarray, u: int, own: bool = False) -> float:
    """The joint objective of surface ``u`` (each slice weighted ``1 / (4 vbar T)`` as in ``_enforce``);
    with ``own`` that of the slices' own fits (``objective / (1 + repair)``)."""
    off, T = d["offsets"], d["expiry_years"]
    wt = np.empty(len(d["k"]))
    _weights.spread_weights(d["bid"], d["ask"], off, wt)
    m = np.flatnonzero(sid == u)
    vbar = np.array([np.average(d["w"][off[s] : off[s + 1]], weights=wt[off[s] : off[s + 1]]) for s in m])
    obj = r.objective[m] / (1 + r.repair[m]) if own else r.objective[m]
    return float(np.sum(obj / (4 * vbar * T[m])))


def test_fit_svi_joint_stage_against_the_sequential_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    # default (joint stage on) against the sequential pass alone (_JOINT off), same synthetic surfaces
    d = spx_like_slices(3, seed=3)
    sid = d["surface_id"]
    kw = {"expiry_years": d["expiry_years"], "surface_id": sid,
          "bid_total_variance": d["bid"], "ask_total_variance": d["ask"]}  # fmt: skip
    r = fit_svi(d["k"], d["w"], d["offsets"], **kw)
    monkeypatch.setattr(_enforce, "_JOINT", False)
    seq = fit_svi(d["k"], d["w"], d["offsets"], **kw)
    assert r.ok.all() and r.butterfly_ok.all() and r.calendar_ok.all() and seq.ok.all()
    for s in range(r.n_slices):
        lo, hi = r.check_range[s]
        assert dense_min_g(r.params[s], lo, hi, 50_001) >= -1e-9
        if s and sid[s] == sid[s - 1]:
            assert dense_calendar_ok(r.params[s], r.params[s - 1])
    for u in np.unique(sid):
        # the fast path is kept only within _FAST_TOL of the own fits (a lower bound for any arbitrage-free
        # fit); the fallback's polish only where it beats the sequential pass
        own = _lam_total(r, d, sid, u, own=True)
        tot = _lam_total(r, d, sid, u)
        assert own <= tot * (1 + 1e-9)
        assert tot <= max((1 + _enforce._FAST_TOL) * own, _lam_total(seq, d, sid, u)) * (1 + 1e-9)


def test_joint_stage_on_adversarial_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    # random SVI slices with crossing wings (test_svi_arbitrage's adversarial set): the sequential pass
    # lowers or raises one neighbour at a time; the joint QP shares the cost (objective less than half)
    rng = np.random.default_rng(3)
    ks, ws, counts = [], [], []
    T = np.sort(rng.uniform(0.02, 2.0, 10))
    for _ in T:
        p = np.array([rng.uniform(0.0, 0.03), rng.uniform(0.02, 0.6), rng.uniform(-0.95, 0.6),
                      rng.uniform(-0.3, 0.3), rng.uniform(0.02, 0.5)])  # fmt: skip
        n = int(rng.integers(8, 40))
        k = np.sort(rng.uniform(-1.0, 0.6, n))
        ks.append(k)
        ws.append(total_variance(k, p) * np.exp(rng.normal(0, 0.05, n)))
        counts.append(n)
    off = np.concatenate([[0], np.cumsum(counts)])
    k, w = np.concatenate(ks), np.concatenate(ws)
    r = fit_svi(k, w, off, expiry_years=T)
    monkeypatch.setattr(_enforce, "_JOINT", False)
    seq = fit_svi(k, w, off, expiry_years=T)
    assert r.ok.all() and r.butterfly_ok.all() and r.calendar_ok.all()
    for s in range(1, len(T)):
        assert dense_calendar_ok(r.params[s], r.params[s - 1])
        lo, hi = r.check_range[s]
        assert dense_min_g(r.params[s], lo, hi, 50_001) >= -1e-9
    assert np.sum(r.objective) < 0.5 * np.sum(seq.objective[seq.ok])
