"""Batched raw SVI: published values (Gatheral-Jacquier example 3.1, QuantLib), synthetic SSVI truth,
the scipy references, arbitrage enforcement, properties and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import volfast
from volfast.svi import (
    SVIStatus,
    _qp,
    check_butterfly,
    check_calendar,
    fit_svi,
    gj_jw_repair,
    jw_to_raw,
    raw_to_jw,
    ssvi_to_raw,
    svi_g,
    total_variance,
)
from volfast.svi import _quasi_explicit as qe
from volfast.svi import _reference as ref
from volfast.svi._synthetic import spx_like_slices

# Gatheral & Jacquier (2014), example 3.1: raw (a, b, rho, m, sigma), t = 1
GJ = np.array([-0.0410, 0.1331, 0.3060, 0.3586, 0.4153])
GJ_JW = np.array([0.01742625, -0.1752111, 0.6997381, 1.316798, 0.0116249])


# ---- published values -------------------------------------------------------------------------------------
def test_gj_example_min_g_and_interval() -> None:
    from scipy.optimize import brentq, minimize_scalar

    res = minimize_scalar(
        lambda x: float(svi_g(x, GJ)), bounds=(0.5, 1.2), method="bounded", options={"xatol": 1e-10}
    )
    assert res.fun == pytest.approx(-0.0328636, abs=5e-7)
    assert res.x == pytest.approx(0.87926, abs=5e-5)
    lo = brentq(lambda x: float(svi_g(x, GJ)), 0.3, res.x, xtol=1e-12)
    hi = brentq(lambda x: float(svi_g(x, GJ)), res.x, 2.0, xtol=1e-12)
    assert lo == pytest.approx(0.64241, abs=5e-6)
    assert hi == pytest.approx(1.25691, abs=5e-6)
    chk = check_butterfly(GJ, np.linspace(-1.5, 2.5, 4001))
    assert not chk.ok[0] and chk.min_g[0] == pytest.approx(-0.0328636, abs=1e-6)
    assert chk.k_at_min[0] == pytest.approx(0.87926, abs=1e-3)


def test_gj_example_jw_and_repair() -> None:
    jw = raw_to_jw(GJ, expiry_years=1.0)
    np.testing.assert_allclose(jw, GJ_JW, rtol=2e-6)
    np.testing.assert_allclose(jw_to_raw(jw, expiry_years=1.0), GJ, rtol=1e-9, atol=1e-12)
    assert np.isnan(
        jw_to_raw(raw_to_jw(ssvi_to_raw(theta=0.1, phi=1.0, rho=0.0), expiry_years=1.0), expiry_years=1.0)
    ).all()
    rep = gj_jw_repair(jw)
    assert rep[3] == pytest.approx(0.3493158, abs=5e-7)
    assert rep[4] == pytest.approx(0.01548182, abs=5e-9)
    np.testing.assert_allclose(rep[:3], jw[:3])
    raw = jw_to_raw(rep, expiry_years=1.0)
    chk = check_butterfly(raw, np.linspace(-3, 3, 6001))
    assert chk.ok[0] and chk.min_g[0] > 0  # the repaired slice is free of butterfly arbitrage


def test_quantlib_svi_value() -> None:
    # QuantLib's SVI test: (a, b, sigma, rho, m) = (-0.0666, 0.229, 0.337, 0.439, 0.193), T = 11/365
    p = np.array([-0.0666, 0.229, 0.439, 0.193, 0.337])
    T = 11 / 365
    k = np.log(123.45 * np.exp(0.193) / 123.45)
    w = float(total_variance(k, p))
    assert w == pytest.approx(0.010573, abs=5e-7)
    assert np.sqrt(w / T) == pytest.approx(0.5923101921, abs=1e-9)


def test_ssvi_slice_is_raw_svi_and_g_matches_finite_differences() -> None:
    from volfast.synth.surface import SSVISurface

    surf = SSVISurface(vol_short=0.18, vol_long=0.22, tau=0.5, rho=-0.7, eta=1.1, gamma=0.4)
    k = np.linspace(-1.0, 0.6, 81)
    for T in (0.05, 0.5, 2.0):
        th = float(surf.theta(T))
        p = ssvi_to_raw(theta=th, phi=float(surf.phi(th)), rho=surf.rho)
        np.testing.assert_allclose(total_variance(k, p), surf.total_variance(k, T), rtol=1e-13)
        np.testing.assert_allclose(svi_g(k, p), surf.butterfly_g(k, T), atol=5e-6)


def test_broadcasting_of_total_variance_and_g() -> None:
    P = np.array([GJ, GJ * [1, 1.1, 0.5, 1, 1]])
    k = np.linspace(-1, 1, 7)
    assert total_variance(k, P).shape == (2, 7)
    assert svi_g(k, P).shape == (2, 7)
    np.testing.assert_allclose(total_variance(k, P)[1], total_variance(k, P[1]))
    assert total_variance(np.array([0.1, 0.2]), P).shape == (2,)
    assert np.isnan(svi_g(0.0, [-1.0, 0.1, 0.0, 0.0, 0.1]))  # w < 0: g undefined
    with pytest.raises(ValueError, match="shape"):
        total_variance(0.0, [1.0, 2.0])


def test_calendar_check() -> None:
    p1 = ssvi_to_raw(theta=0.02, phi=3.0, rho=-0.6)
    p2 = ssvi_to_raw(theta=0.04, phi=2.5, rho=-0.6)
    ok, gap = check_calendar(np.array([p1, p2]), np.linspace(-1, 1, 101))
    assert ok[0] and gap[0] > 0
    ok, gap = check_calendar(np.array([p2, p1]), np.linspace(-1, 1, 101))
    assert not ok[0] and gap[0] < 0


# ---- the inner solve against SLSQP ------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_inner_solve_matches_slsqp(seed: int) -> None:
    d = spx_like_slices(1, seed=seed)
    rng = np.random.default_rng(seed)
    s = int(rng.integers(0, 6))
    lo, hi = d["offsets"][s], d["offsets"][s + 1]
    k, v = d["k"][lo:hi], d["w"][lo:hi]
    wt = rng.uniform(0.5, 1.5, k.size)
    wt *= k.size / wt.sum()
    y, z = np.empty(k.size), np.empty(k.size)
    rng_k = k.max() - k.min()
    n_face = 0
    for _ in range(8):
        m = rng.uniform(k.min() - 0.5 * rng_k, k.max() + 0.5 * rng_k)
        sig = rng_k * np.exp(rng.uniform(np.log(0.01), np.log(2.0)))
        f, a, b, rho = qe.inner_solve(k, v, wt, m, sig, 4.0, ref.RHO_MAX, y, z)
        n_face += a + b * sig * np.sqrt(1 - rho * rho) < 1e-12
        p = np.array([a, b, rho, m, sig])
        assert ref.feasible(p, 4.0, tol=1e-9)
        assert ref.objective(p, k, v, wt) == pytest.approx(f, rel=1e-9, abs=1e-18)
        f_ref, _ = ref.inner_solve_slsqp(k, v, wt, m, sig)
        # exact solve: never worse than SLSQP (beyond its tolerance)
        assert f <= f_ref * (1 + 1e-6) + 1e-16


def test_inner_solve_min_variance_face() -> None:
    # a V-shaped smile dipping to ~0 forces a + b sigma sqrt(1 - rho^2) >= 0 to bind
    k = np.linspace(-0.3, 0.3, 31)
    v = 0.3 * np.abs(k - 0.05) - 0.004
    v = np.maximum(v, 0.0) + 1e-5 * np.cos(40 * k)
    wt = np.ones_like(k)
    y, z = np.empty(k.size), np.empty(k.size)
    f, a, b, rho = qe.inner_solve(k, v, wt, 0.05, 0.01, 4.0, ref.RHO_MAX, y, z)
    assert a + b * 0.01 * np.sqrt(1 - rho * rho) == pytest.approx(0.0, abs=1e-12)
    f_ref, _ = ref.inner_solve_slsqp(k, v, wt, 0.05, 0.01)
    assert f <= f_ref * (1 + 1e-5) + 1e-15


# ---- the inner solve under calendar bounds -----------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_qp3_solves_small_convex_qps(seed: int) -> None:
    # random strictly convex QPs in R^3 with up to 40 constraints, a third with parallel / repeated rows:
    # the KKT conditions hold at the answer, and "inconsistent" agrees with an LP feasibility check
    from scipy.optimize import linprog

    rng = np.random.default_rng(seed)
    n_inf = n_ok = 0
    for trial in range(150):
        A = rng.normal(size=(8, 3))
        G = A.T @ A + 10 ** rng.uniform(-3, 0) * np.eye(3)
        g = rng.normal(size=3)
        nc = int(rng.integers(1, 40))
        C = rng.normal(size=(nc, 3))
        cb = rng.normal(size=nc) - rng.uniform(0, 3)
        if trial % 3 == 0:
            h = nc // 2
            C[h:] = C[: nc - h] * rng.uniform(0.5, 2.0)
            cb[h:] = cb[: nc - h] * rng.uniform(0.5, 2.0)
        x = np.empty(3)
        ok = _qp.qp3(G, g, C, cb, nc, x)
        lp = linprog(np.zeros(3), A_ub=-C, b_ub=-cb, bounds=[(None, None)] * 3, method="highs")
        assert ok == (lp.status == 0), trial
        if ok:
            viol, res = ref.qp3_kkt_violation(G, g, C, cb, x)
            assert viol < 1e-9 * (1 + np.abs(x).sum()) and res < 1e-8 * (1 + np.linalg.norm(g)), trial
            n_ok += 1
        else:
            n_inf += 1
    assert n_ok > 30 and n_inf > 10  # both branches exercised


@pytest.mark.parametrize("seed", range(4))
def test_inner_solve_bounded_matches_slsqp(seed: int) -> None:
    # a slice whose fit crosses below the previous (SSVI-true) slice: the exact calendar-bounded solve
    # against SLSQP with the same bounds, and the bounds hold on the check points
    d = spx_like_slices(1, seed=seed)
    rng = np.random.default_rng(seed)
    lo, hi = d["offsets"][2], d["offsets"][3]
    k, v = d["k"][lo:hi], d["w"][lo:hi]
    wt = np.ones(k.size)
    prev = np.array(ssvi_to_raw(theta=0.9 * np.median(v), phi=1.2, rho=-0.2)).ravel()
    nxt = np.array(ssvi_to_raw(theta=2.0 * np.max(v), phi=0.3, rho=-0.5)).ravel()
    y, z = np.empty(k.size), np.empty(k.size)
    rng_k = k.max() - k.min()
    npts = 41
    kg = np.linspace(k.min() - 0.1, k.max() + 0.1, npts)
    n_bound = 0
    for trial in range(6):
        m = rng.uniform(k.min(), k.max())
        sig = rng_k * np.exp(rng.uniform(np.log(0.05), np.log(1.0)))
        with_upper = trial % 2 == 1
        lo_w = total_variance(kg, prev)
        hi_w = total_variance(kg, nxt) if with_upper else np.zeros(1)
        bnd = qe.Bounds(
            True, kg, lo_w, npts, 0.0, 0.0, kg if with_upper else np.zeros(1), hi_w,
            npts if with_upper else 0, np.inf, np.inf, 0.0, 0.0, 0.0, 2, np.zeros(1), 0,
        )  # fmt: skip
        f, a, b, rho = qe.inner_solve_bounded(k, v, wt, m, sig, 4.0, ref.RHO_MAX, y, z, bnd)
        lower = (kg, lo_w)
        upper = (kg, hi_w) if with_upper else None
        f_ref, _ = ref.inner_solve_slsqp(k, v, wt, m, sig, lower=lower, upper=upper)
        if f == np.inf:  # bounds inconsistent for this (m, sigma): SLSQP must not find a point either
            assert f_ref == np.inf
            continue
        p = np.array([a, b, rho, m, sig])
        assert ref.feasible(p, 4.0, tol=1e-9)
        w = total_variance(kg, p)
        assert (w >= lower[1] * (1 - 1e-12)).all()
        if upper is not None:
            assert (w <= upper[1] * (1 + 1e-12)).all()
        assert ref.objective(p, k, v, wt) == pytest.approx(f, rel=1e-9, abs=1e-18)
        assert f <= f_ref * (1 + 1e-6) + 1e-16
        n_bound += not np.isclose(f, qe.inner_solve(k, v, wt, m, sig, 4.0, ref.RHO_MAX, y, z)[0], rtol=1e-9)
    assert n_bound >= 2  # the bounds did bind


# ---- fits of synthetic truth ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spx() -> dict[str, np.ndarray]:
    return spx_like_slices(12, seed=3)


def _truth_error_vol_points(d: dict[str, np.ndarray], params: np.ndarray) -> np.ndarray:
    off, T = d["offsets"], d["expiry_years"]
    out = np.empty(len(T))
    for s in range(len(T)):
        k = d["k"][off[s] : off[s + 1]]
        fit = np.sqrt(total_variance(k, params[s]) / T[s])
        true = np.sqrt(d["w_true"][off[s] : off[s + 1]] / T[s])
        out[s] = 100 * np.sqrt(np.mean((fit - true) ** 2))
    return out


def test_noise_free_ssvi_slices_are_recovered_exactly() -> None:
    d = spx_like_slices(3, seed=5, noise_vol=0.0)
    r = fit_svi(d["k"], d["w_true"], d["offsets"], expiry_years=d["expiry_years"], arbitrage_free=False)
    assert (r.status == SVIStatus.OK).all()
    assert r.rmse.max() < 1e-3  # vol points
    err = _truth_error_vol_points(d, r.params)
    assert err.max() < 1e-3


def test_fits_recover_the_true_smile(spx: dict[str, np.ndarray]) -> None:
    for af in (False, True):
        r = fit_svi(
            spx["k"],
            spx["w"],
            spx["offsets"],
            expiry_years=spx["expiry_years"],
            arbitrage_free=af,
            bid_total_variance=spx["bid"],
            ask_total_variance=spx["ask"],
        )
        assert r.ok.all()
        err = _truth_error_vol_points(spx, r.params)
        # noise 0.6 vol points and 0.05 ticks at 25-60 strikes: the fit is closer to the truth than the quotes
        assert np.median(err) < 0.3 and np.percentile(err, 95) < 0.6, (af, np.percentile(err, [50, 95, 100]))
        assert 0.4 < np.median(r.rmse) < 0.8
        assert np.all((r.inside_bid_ask >= 0) & (r.inside_bid_ask <= 1))
        assert np.median(r.inside_bid_ask) > 0.5


def test_objective_agrees_with_scipy_reference(spx: dict[str, np.ndarray]) -> None:
    off = spx["offsets"]
    r = fit_svi(spx["k"], spx["w"], off, expiry_years=spx["expiry_years"], arbitrage_free=False)
    worse = 0
    for s in range(0, len(r.status), 6):
        k, v = spx["k"][off[s] : off[s + 1]], spx["w"][off[s] : off[s + 1]]
        wt = np.ones_like(k)
        p_ref, f_ref = ref.fit_slice_least_squares(k, v, wt, n_starts=3, seed=s)
        assert ref.feasible(r.params[s])
        assert ref.objective(r.params[s], k, v, wt) == pytest.approx(r.objective[s], rel=1e-9)
        worse += r.objective[s] > 1.01 * f_ref
    assert worse == 0


def test_arbitrage_free_removes_violations_of_independent_fits(spx: dict[str, np.ndarray]) -> None:
    off, T = spx["offsets"], spx["expiry_years"]
    ind = fit_svi(spx["k"], spx["w"], off, expiry_years=T, arbitrage_free=False)
    af = fit_svi(spx["k"], spx["w"], off, expiry_years=T, arbitrage_free=True)
    # the independent fits do violate both (on the extended range / the real line), so the test can fail
    assert (~ind.butterfly_ok).sum() >= 3 and (~ind.calendar_ok).sum() >= 3
    assert af.butterfly_ok.all() and af.calendar_ok.all()
    assert set(np.unique(af.status)) <= {SVIStatus.OK, SVIStatus.REPAIRED}
    assert (af.status == SVIStatus.REPAIRED).sum() >= (~ind.butterfly_ok | ~ind.calendar_ok).sum() // 2
    # independent check, on grids of my own: each slice's quoted range plus its margin,
    # max(0.1, min(0.5, 4 sqrt(w))) with w the slice's median quoted total variance (what check_range must
    # report), and calendar per surface on the union of two slices' ranges
    cr = np.full((len(T), 2), np.nan)
    for s in range(len(T)):
        k, w = spx["k"][off[s] : off[s + 1]], spx["w"][off[s] : off[s + 1]]
        margin = max(0.1, min(0.5, 4.0 * np.sqrt(np.median(w))))
        cr[s] = k.min() - margin, k.max() + margin
        assert check_butterfly(af.params[s], np.linspace(*cr[s], 201)).min_g[0] >= 0.0
        assert check_butterfly(af.params[s], np.linspace(k.min(), k.max(), 1001)).min_g[0] >= -1e-9
    np.testing.assert_allclose(af.check_range, cr, rtol=1e-12)
    for s in range(1, len(T)):
        if spx["surface_id"][s] == spx["surface_id"][s - 1]:
            grid = np.linspace(cr[s - 1 : s + 1, 0].min(), cr[s - 1 : s + 1, 1].max(), 201)
            ok, gap = check_calendar(af.params[s - 1 : s + 1], grid)
            assert ok[0], (s, gap)
    # the cost of enforcement is small: RMSE to the quotes barely moves
    assert np.median(af.rmse) < np.median(ind.rmse) + 0.05
    repaired = af.status == SVIStatus.REPAIRED
    assert (af.objective[repaired] >= ind.objective[repaired] * (1 - 1e-9)).all()
    assert all(af.reason[s] for s in np.flatnonzero(repaired))


def test_arbitrage_free_fits_stay_close_to_the_quotes(spx: dict[str, np.ndarray]) -> None:
    # issue 4: an earlier slice's extrapolated wing used to block the calendar check and leave slices
    # several vol points off; with m among the quotes and the fit under the constraints none is
    off, T = spx["offsets"], spx["expiry_years"]
    kw = {"expiry_years": T, "bid_total_variance": spx["bid"], "ask_total_variance": spx["ask"]}
    ind = fit_svi(spx["k"], spx["w"], off, arbitrage_free=False, **kw)
    af = fit_svi(spx["k"], spx["w"], off, arbitrage_free=True, **kw)
    assert af.butterfly_ok.all() and af.calendar_ok.all()
    assert (af.rmse - ind.rmse).max() < 1.0, np.sort(af.rmse - ind.rmse)[-3:]
    # the arbitrage-free fits keep m inside the quoted range
    for s in range(len(T)):
        k = spx["k"][off[s] : off[s + 1]]
        assert k.min() - 1e-12 <= af.params[s, 3] <= k.max() + 1e-12


def test_check_margin_none_checks_half_a_unit_beyond_the_quotes() -> None:
    d = spx_like_slices(2, seed=5)
    off, T = d["offsets"], d["expiry_years"]
    r = fit_svi(d["k"], d["w"], off, expiry_years=T, check_margin_sd=None)
    assert r.butterfly_ok.all() and r.calendar_ok.all()
    for s in range(len(T)):
        k = d["k"][off[s] : off[s + 1]]
        np.testing.assert_allclose(r.check_range[s], [k.min() - 0.5, k.max() + 0.5])
        assert check_butterfly(r.params[s], np.linspace(k.min() - 0.5, k.max() + 0.5, 201)).ok[0]


def test_explicit_surface_ids_and_no_expiry() -> None:
    d = spx_like_slices(2, seed=8)
    r = fit_svi(d["k"], d["w"], d["offsets"], expiry_years=d["expiry_years"], surface_id=d["surface_id"])
    assert r.calendar_ok.all() and r.butterfly_ok.all()
    r2 = fit_svi(d["k"], d["w"], d["offsets"])  # no expiry: butterfly only, RMSE in vol points unknown
    assert r2.butterfly_ok.all() and np.isnan(r2.rmse).all()
    with pytest.raises(ValueError, match="expiry_years must increase"):
        fit_svi(
            d["k"],
            d["w"],
            d["offsets"],
            expiry_years=d["expiry_years"][::-1].copy(),
            surface_id=d["surface_id"],
        )


def test_robust_fit_ignores_stray_quotes() -> None:
    d = spx_like_slices(4, seed=9, noise_vol=0.002)
    w = d["w"].copy()
    off, T = d["offsets"], d["expiry_years"]
    rng = np.random.default_rng(1)
    for s in range(len(T)):  # two stray quotes per slice, 8 vol points off
        i = off[s] + rng.choice(off[s + 1] - off[s], 2, replace=False)
        w[i] = (np.sqrt(w[i] / T[s]) + 0.08) ** 2 * T[s]
    plain = fit_svi(d["k"], w, off, expiry_years=T, arbitrage_free=False)
    rob = fit_svi(d["k"], w, off, expiry_years=T, arbitrage_free=False, robust=True)
    e_plain = _truth_error_vol_points(d, plain.params)
    e_rob = _truth_error_vol_points(d, rob.params)
    assert np.median(e_rob) < 0.5 * np.median(e_plain)
    assert np.median(e_rob) < 0.2


def test_threads_give_identical_results(monkeypatch: pytest.MonkeyPatch) -> None:
    d = spx_like_slices(3, seed=4)
    for af in (False, True):
        a = fit_svi(
            d["k"], d["w"], d["offsets"], expiry_years=d["expiry_years"], threads=1, arbitrage_free=af
        )
        b = fit_svi(
            d["k"], d["w"], d["offsets"], expiry_years=d["expiry_years"], threads=2, arbitrage_free=af
        )
        np.testing.assert_array_equal(a.status, b.status)
        np.testing.assert_array_equal(a.params, b.params)
    monkeypatch.setenv("VOLFAST_NUM_THREADS", "x")
    with pytest.raises(ValueError, match="VOLFAST_NUM_THREADS"):
        fit_svi(d["k"], d["w"], d["offsets"])


def test_top_level_exports() -> None:
    assert volfast.fit_svi is fit_svi and volfast.svi_g is svi_g
    assert volfast.SVIFit.__name__ == "SVIFit"


# ---- properties -------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    a=st.floats(0.0, 0.05),
    b=st.floats(0.02, 0.5),
    rho=st.floats(-0.95, 0.6),
    m=st.floats(-0.2, 0.2),
    sig=st.floats(0.05, 0.6),
    n=st.integers(8, 40),
)
def test_exact_svi_data_are_fitted_exactly(
    a: float, b: float, rho: float, m: float, sig: float, n: int
) -> None:
    p = np.array([a, b, rho, m, sig])
    k = np.linspace(-0.8, 0.5, n)
    w = total_variance(k, p)
    r = fit_svi(k, w, np.array([0, n]), arbitrage_free=False)
    assert r.status[0] == SVIStatus.OK
    assert np.sqrt(np.mean((total_variance(k, r.params[0]) - w) ** 2)) < 1e-6 * w.max()
    assert ref.feasible(r.params[0])


@settings(max_examples=20, deadline=None)
@given(
    th=st.floats(0.005, 0.2),
    phi=st.floats(0.5, 8.0),
    rho=st.floats(0.02, 0.95),
    sign=st.sampled_from([-1, 1]),
    T=st.floats(0.02, 3.0),
)
def test_raw_jw_round_trip(th: float, phi: float, rho: float, sign: int, T: float) -> None:
    # rho = 0 with m = 0 is the one raw slice JW cannot identify (sigma is free): jw_to_raw gives NaN there
    p = ssvi_to_raw(theta=th, phi=phi, rho=sign * rho)
    np.testing.assert_allclose(
        jw_to_raw(raw_to_jw(p, expiry_years=T), expiry_years=T), p, rtol=1e-7, atol=1e-10
    )


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), slope=st.sampled_from([2.0, 4.0]))
def test_fits_respect_the_constraints(seed: int, slope: float) -> None:
    d = spx_like_slices(1, seed=seed, noise_vol=0.01)
    r = fit_svi(d["k"], d["w"], d["offsets"], expiry_years=d["expiry_years"], max_wing_slope=slope)
    assert r.ok.all() and r.butterfly_ok.all() and r.calendar_ok.all()
    for p in r.params:
        assert ref.feasible(p, slope, tol=1e-9)
        assert abs(p[2]) < 1.0


# ---- bad inputs -------------------------------------------------------------------------------------------
def test_bad_slices_get_a_status_and_the_rest_go_on() -> None:
    d = spx_like_slices(1, seed=6)
    off = d["offsets"]
    k, w = d["k"].copy(), d["w"].copy()
    T = d["expiry_years"].copy()
    w[off[1] + 3] = np.nan  # slice 1: NaN total variance
    w[off[2] + 1] = -0.001  # slice 2: negative
    k[off[3] + 2] = np.inf  # slice 3: bad log-moneyness
    T[4] = 0.0  # slice 4: bad expiry
    # slice 6: too few points (append a 3-point slice)
    k = np.concatenate([k, [-0.1, 0.0, 0.1]])
    w = np.concatenate([w, [0.01, 0.009, 0.01]])
    off = np.append(off, off[-1] + 3)
    T = np.append(T, 2.0)
    r = fit_svi(k, w, off, expiry_years=T)
    assert r.status.tolist() == [0 if r.status[0] == 0 else 1, 3, 3, 3, 3, r.status[5], 2]
    assert r.ok[[0, 5]].all() and np.isfinite(r.params[[0, 5]]).all()
    assert np.isnan(r.params[1:5]).all() and np.isnan(r.params[6]).all()
    assert "slice 1: quote 3" in r.reason[1] and "nan" in r.reason[1]
    assert "negative total variance" in r.reason[2] and "quote 1" in r.reason[2]
    assert "log-moneyness is inf" in r.reason[3]
    assert "expiry_years" in r.reason[4]
    assert "3 distinct" in r.reason[6]
    assert r.reason[0] == "" or r.status[0] == SVIStatus.REPAIRED
    # the good slices are fitted as if alone (slice 0 has no predecessor either way)
    alone = fit_svi(
        d["k"][: d["offsets"][1]],
        d["w"][: d["offsets"][1]],
        d["offsets"][:2],
        expiry_years=d["expiry_years"][:1],
    )
    np.testing.assert_array_equal(alone.params[0], r.params[0])


def test_bad_weights_duplicates_and_no_fit() -> None:
    d = spx_like_slices(1, seed=7)
    off = d["offsets"]
    wts = np.ones_like(d["k"])
    wts[off[1] + 2] = -1.0
    wts[off[2] : off[3]] = 0.0
    r = fit_svi(d["k"], d["w"], off, weights=wts, expiry_years=d["expiry_years"])
    assert r.status[1] == SVIStatus.INVALID_INPUT and "weight" in r.reason[1]
    assert r.status[2] == SVIStatus.INVALID_INPUT and "weights are zero" in r.reason[2]
    assert r.ok[[0, 3, 4, 5]].all()
    # five quotes at only two distinct strikes
    r = fit_svi([0.0, 0.0, 0.1, 0.1, 0.1], [0.01] * 5, [0, 5])
    assert r.status[0] == SVIStatus.TOO_FEW_POINTS
    # no acceptable fit: a smile SVI cannot follow, rejected by max_rmse
    k = np.linspace(-0.5, 0.5, 30)
    w = 0.04 + 0.03 * np.sin(12 * k)
    r = fit_svi(k, w, [0, 30], expiry_years=[1.0], max_rmse=1.0)
    assert r.status[0] == SVIStatus.NO_FIT and "max_rmse" in r.reason[0]
    assert np.isnan(r.params[0]).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"offsets": [0, 3]}, "offsets must start at 0"),
        ({"offsets": [1, 5]}, "offsets must start at 0"),
        ({"offsets": [0.0, 5.0]}, "integer"),
        ({"total_variance": [0.01] * 4}, "length 4"),
        ({"expiry_years": [1.0, 2.0]}, "expiry_years has length 2"),
        ({"bid_total_variance": [0.01] * 5}, "both"),
        ({"max_wing_slope": 0.0}, "max_wing_slope"),
        ({"check_margin_sd": -1.0}, "check_margin_sd"),
        ({"check_margin_sd": float("nan")}, "check_margin_sd"),
    ],
)
def test_inconsistent_arguments_raise(kwargs: dict, match: str) -> None:
    args = {"log_moneyness": np.linspace(-0.2, 0.2, 5), "total_variance": [0.01] * 5, "offsets": [0, 5]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fit_svi(args.pop("log_moneyness"), args.pop("total_variance"), args.pop("offsets"), **args)


def test_empty_input() -> None:
    r = fit_svi(np.empty(0), np.empty(0), np.array([0]))
    assert r.n_slices == 0 and r.params.shape == (0, 5)
    r = fit_svi(np.empty(0), np.empty(0), np.array([0, 0]))
    assert r.status[0] == SVIStatus.TOO_FEW_POINTS


def test_threads_is_the_keyword_and_n_threads_a_deprecated_alias() -> None:
    """One thread keyword in the public API, ``threads``; ``n_threads`` warns and gives the same fit."""
    k = np.linspace(-0.4, 0.3, 15)
    w = total_variance(k, (0.02, 0.1, -0.5, 0.0, 0.2))
    off = np.array([0, k.size])
    a = fit_svi(k, w, off, threads=1)
    with pytest.warns(DeprecationWarning, match="use threads="):
        b = fit_svi(k, w, off, n_threads=1)
    np.testing.assert_array_equal(a.params, b.params)
