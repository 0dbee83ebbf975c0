"""Arbitrage of continuous SVI slices: the exact checkers against brute force and published values, and
enforced fits (synthetic surfaces, the real SPX chain, adversarial random slices) against an independent
dense checker written here (numpy: very dense grids of g and of w_{i+1} - w_i over a wide k range, plus the
asymptotic wing slopes)."""

from __future__ import annotations

import numpy as np
import pytest

from volfast.svi import (
    SVIInputError,
    SVIStatus,
    check_butterfly_exact,
    check_calendar_exact,
    fit_svi,
    ssvi_to_raw,
    total_variance,
)
from volfast.svi._synthetic import spx_like_slices

from ._spx_chain import SPX_CSV, load_spx_chain

GJ = np.array([-0.0410, 0.1331, 0.3060, 0.3586, 0.4153])  # Gatheral-Jacquier example 3.1, t = 1


# ---- the independent dense checker ------------------------------------------------------------------------
def dense_min_g(p: np.ndarray, klo: float, khi: float, n: int = 200_001) -> float:
    """min g on a uniform k grid (finite differences free: analytic derivatives, written out here)."""
    a, b, rho, m, sig = p
    k = np.linspace(klo, khi, n)
    x = k - m
    r = np.sqrt(x * x + sig * sig)
    w = a + b * (rho * x + r)
    if (w <= 0).any() or a + b * sig * np.sqrt(1 - rho * rho) <= 0:
        return -np.inf
    w1 = b * (rho + x / r)
    w2 = b * sig * sig / r**3
    g = (1 - k * w1 / (2 * w)) ** 2 - w1 * w1 / 4 * (1 / w + 0.25) + w2 / 2
    return float(g.min())


def dense_calendar_ok(p_next: np.ndarray, p_prev: np.ndarray, tol: float = 1e-12) -> bool:
    """w_next >= w_prev on a dense grid over [-20, 20] plus the asymptotic slopes b (1 +- rho)."""
    far = np.geomspace(20, 1e4, 2000)
    k = np.concatenate([np.linspace(-20, 20, 400_001), far, -far])
    gap = total_variance(k, p_next) - total_variance(k, p_prev)
    sr = p_next[1] * (1 + p_next[2]) - p_prev[1] * (1 + p_prev[2])
    sl = p_next[1] * (1 - p_next[2]) - p_prev[1] * (1 - p_prev[2])
    return bool(gap.min() >= -tol and sr >= -1e-12 and sl >= -1e-12)


def assert_flags_agree(r, k_all: np.ndarray, off: np.ndarray, prev_of: dict[int, int]) -> None:
    for s in np.flatnonzero(r.ok):
        lo, hi = r.check_range[s]
        mg = dense_min_g(r.params[s], lo, hi)
        lee = r.params[s, 1] * (1 + abs(r.params[s, 2])) <= 2.0 + 1e-12
        if r.butterfly_ok[s]:
            assert mg >= -1e-9 and lee, (s, mg)
        else:
            assert mg < 1e-9 or not lee, (s, mg)
        if s in prev_of:
            dense = dense_calendar_ok(r.params[s], r.params[prev_of[s]])
            assert dense == bool(r.calendar_ok[s]) or abs(r.calendar_gap[s]) < 1e-10, (s, r.calendar_gap[s])


def _prev_map(r, sid: np.ndarray) -> dict[int, int]:
    out, last = {}, -1
    for s in range(r.n_slices):
        if last >= 0 and sid[s] == sid[last] and r.ok[s]:
            out[s] = last
        if r.ok[s]:
            last = s
    return out


# ---- exact checkers ---------------------------------------------------------------------------------------
def test_gj_example_exact_butterfly_check() -> None:
    chk = check_butterfly_exact(GJ, k_low=-1.5, k_high=2.5)
    assert not chk.ok[0]
    assert chk.min_g[0] == pytest.approx(-0.0328636, abs=5e-7)
    assert chk.k_at_min[0] == pytest.approx(0.87926, abs=5e-5)
    # g < 0 exactly on (0.64241, 1.25691): non-negative outside, negative just inside
    assert check_butterfly_exact(GJ, k_low=-3.0, k_high=0.64240).ok[0]
    assert check_butterfly_exact(GJ, k_low=1.25692, k_high=4.0).ok[0]
    assert check_butterfly_exact(GJ, k_low=0.64243, k_high=0.64250).min_g[0] < 0
    assert check_butterfly_exact(GJ, k_low=1.25680, k_high=1.25689).min_g[0] < 0


def test_exact_butterfly_check_against_dense_grid() -> None:
    rng = np.random.default_rng(11)
    n_bad = 0
    for _ in range(150):
        p = np.array(
            [rng.uniform(-0.05, 0.05), rng.uniform(0.01, 1.0), rng.uniform(-0.99, 0.99),
             rng.uniform(-0.5, 0.5), np.exp(rng.uniform(np.log(1e-3), np.log(1.0)))]
        )  # fmt: skip
        chk = check_butterfly_exact(p, k_low=-1.5, k_high=1.0)
        dense = dense_min_g(p, -1.5, 1.0, 400_001)
        if np.isfinite(dense):
            # the exact minimum is never above the dense grid's, and not much below it
            assert chk.min_g[0] <= dense + 1e-12
            assert chk.min_g[0] >= dense - 1e-6 * (1 + abs(dense))
        else:
            assert chk.min_g[0] == -np.inf
        n_bad += not chk.ok[0]
    assert 10 < n_bad < 140  # both outcomes exercised


def test_quartic_calendar_check_against_brute_force() -> None:
    rng = np.random.default_rng(5)
    n_cross = 0
    for trial in range(300):
        p1 = ssvi_to_raw(theta=rng.uniform(0.005, 0.1), phi=rng.uniform(0.5, 6), rho=rng.uniform(-0.9, 0.3))
        p2 = p1 + rng.normal(0, 1, 5) * np.array([0.005, 0.02, 0.1, 0.05, 0.05])
        p2[1] = abs(p2[1])
        p2[2] = np.clip(p2[2], -0.99, 0.99)
        p2[4] = abs(p2[4]) + 1e-3
        if trial % 3 == 0:  # slices that just touch: w2 = w1 + c with c tiny
            p2 = p1.copy()
            p2[0] += rng.choice([-1e-9, 1e-9])
        ok, gap, kk = check_calendar_exact(np.array([p1, p2]))
        dense = dense_calendar_ok(p2, p1, tol=0.0)
        assert ok[0] == dense, (trial, gap, p1, p2)
        if np.isfinite(kk[0]) and gap[0] < 0:
            # the reported point does violate, by the reported amount
            at = float(total_variance(kk[0], p2) - total_variance(kk[0], p1))
            assert at == pytest.approx(gap[0], abs=1e-14)
        n_cross += not ok[0]
    assert 50 < n_cross < 250


def test_identical_slices_and_bad_rows() -> None:
    ok, gap, _ = check_calendar_exact(np.array([GJ, GJ]))
    assert ok[0] and gap[0] == 0.0
    with pytest.raises(SVIInputError, match="sigma > 0"):
        check_calendar_exact(np.array([GJ, [0.0, 0.1, 0.0, 0.0, 0.0]]))
    with pytest.raises(SVIInputError, match="k_low <= k_high"):
        check_butterfly_exact(GJ, k_low=1.0, k_high=0.0)


# ---- enforced fits against the independent checker -------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2])
def test_enforced_fits_of_synthetic_surfaces_pass_the_dense_checker(seed: int) -> None:
    d = spx_like_slices(4, seed=seed)
    kw = {"expiry_years": d["expiry_years"], "surface_id": d["surface_id"]}
    ind = fit_svi(d["k"], d["w"], d["offsets"], arbitrage_free=False, **kw)
    r = fit_svi(d["k"], d["w"], d["offsets"], **kw)
    assert r.ok.all() and r.butterfly_ok.all() and r.calendar_ok.all()
    assert (~ind.butterfly_ok | ~ind.calendar_ok).any()  # enforcement had work to do
    assert_flags_agree(r, d["k"], d["offsets"], _prev_map(r, d["surface_id"]))
    # the flags of the unconstrained fits come from the same exact checkers and agree with the dense ones
    assert_flags_agree(ind, d["k"], d["offsets"], _prev_map(ind, d["surface_id"]))
    # OK slices are their own best fits (m among the quotes, Lee's slope bound); REPAIRED ones cost
    # objective, reported in repair
    same = r.status == SVIStatus.OK
    rep = r.status == SVIStatus.REPAIRED
    assert same.any() and rep.any()
    assert (r.repair[rep] >= -1e-9).all() and (r.repair[same] == 0).all()


def test_enforced_fits_of_adversarial_random_slices() -> None:
    # random SVI slices in random expiry order with noise: every kind of crossing and wing
    rng = np.random.default_rng(3)
    ks, ws, counts = [], [], []
    T = np.sort(rng.uniform(0.02, 2.0, 10))
    for _ in T:
        p = np.array([rng.uniform(0.0, 0.03), rng.uniform(0.02, 0.6), rng.uniform(-0.95, 0.6),
                      rng.uniform(-0.3, 0.3), rng.uniform(0.02, 0.5)])  # fmt: skip
        n = int(rng.integers(8, 40))
        k = np.sort(rng.uniform(-1.0, 0.6, n))
        w = total_variance(k, p) * np.exp(rng.normal(0, 0.05, n))
        ks.append(k)
        ws.append(w)
        counts.append(n)
    off = np.concatenate([[0], np.cumsum(counts)])
    k, w = np.concatenate(ks), np.concatenate(ws)
    r = fit_svi(k, w, off, expiry_years=T)
    ind = fit_svi(k, w, off, expiry_years=T, arbitrage_free=False)
    assert (~ind.calendar_ok).sum() >= 2
    usable = r.ok
    # no slice is ever reported OK/REPAIRED with arbitrage; the others say why
    assert (r.butterfly_ok == usable).all() and (r.calendar_ok == usable).all()
    assert all(r.reason[s] for s in np.flatnonzero(~usable))
    assert usable.sum() >= 8
    assert_flags_agree(r, k, off, _prev_map(r, np.zeros(len(T), int)))


@pytest.mark.realdata
def test_spx_chain_enforced_fit() -> None:
    if not SPX_CSV.is_file():
        pytest.skip(f"{SPX_CSV} not found")
    d = load_spx_chain()
    assert len(d["expiry_years"]) == 13
    # forwards: the parity regression against the Cboe close of the index (6711.20) carried at 3.4-4.4%
    carry = np.log(d["forward"] / 6711.20) / d["expiry_years"]
    assert ((carry > 0.02) & (carry < 0.04)).all(), carry
    kw = {"expiry_years": d["expiry_years"], "bid_total_variance": d["bid"], "ask_total_variance": d["ask"]}
    ind = fit_svi(d["k"], d["w"], d["offsets"], arbitrage_free=False, **kw)
    r = fit_svi(d["k"], d["w"], d["offsets"], **kw)
    # the unconstrained fits of this chain do have arbitrage (so the checks below can fail)
    assert (~ind.butterfly_ok).sum() >= 3 and (~ind.calendar_ok).sum() >= 3
    assert r.ok.all() and r.butterfly_ok.all() and r.calendar_ok.all()
    assert_flags_agree(r, d["k"], d["offsets"], _prev_map(r, np.zeros(13, int)))
    assert_flags_agree(ind, d["k"], d["offsets"], _prev_map(ind, np.zeros(13, int)))
    # near the money the enforced fit is as close to the quotes as the unconstrained one (benchmark:
    # bench_svi_real.py reports the pooled ratios)
    off, T = d["offsets"], d["expiry_years"]
    e_r, e_i = [], []
    for s in range(13):
        k, w = d["k"][off[s] : off[s + 1]], d["w"][off[s] : off[s + 1]]
        near = np.abs(k) <= 2 * np.sqrt(total_variance(0.0, ind.params[s]))
        vol = np.sqrt(w[near] / T[s])
        e_r.append(np.sqrt(total_variance(k[near], r.params[s]) / T[s]) - vol)
        e_i.append(np.sqrt(total_variance(k[near], ind.params[s]) / T[s]) - vol)
    rm_r = 100 * np.sqrt(np.mean(np.concatenate(e_r) ** 2))
    rm_i = 100 * np.sqrt(np.mean(np.concatenate(e_i) ** 2))
    assert rm_r <= 1.5 * rm_i, (rm_r, rm_i)
