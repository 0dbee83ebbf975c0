"""Arbitrage-free SVI enforced in the fit (issue 19, items 1-3): quality against an unconstrained raw-SVI fit
of the same quotes and weights, side by side with scipy ``least_squares``, and speed on a 48-expiry day.

Run:  python -m pytest benchmarks/bench_svi_real.py --benchmark-enable -s -p no:cacheprovider
(the SPX chain is read from ``$VOLFAST_SHARED_DATA`` where set, else ``../shared/data``)

Quality (``test_quality_*``): pooled RMSE in vol points of the fitted vs mid implied vols over all quotes
and over ``|k| <= 4 sigma_ATM sqrt(T)`` (``sigma_ATM sqrt(T)`` the unconstrained fit's ``sqrt(w(0))``), the
share of quotes whose fitted total variance lies inside [bid, ask], and (an extra column) the pooled vol RMSE
weighted by the fit's own weights (1 / spread^2, mean 1 per slice), for ``fit_svi(arbitrage_free=True)``
(enforced) and ``arbitrage_free=False`` (unconstrained raw SVI, same spread weights), and for scipy
``least_squares`` per slice (one start, same weights, unconstrained). Data: the real SPX chain in
``../shared/data/chains/spx_cboe_20251001`` (13 slices; skipped where absent) and synthetic SPX-like days
(SSVI truth, 6 expiries each). Diagnostic rows: "sequential only" is the enforced fit without the joint QP
stage (``svi._enforce._JOINT = False``); "butterfly only" enforces butterfly on each slice alone (each slice
its own surface, no calendar bounds): the gap between it and the enforced row is what calendar order
costs. Bars: enforced/unconstrained RMSE <= 1.2 (all quotes) and <= 1.5 (practical range), share inside
>= 0.9x the unconstrained one; the bars are asserted on the synthetic days and reported (with a note when
missed) on the real chain.

Speed (``test_speed_48_expiries``): one synthetic day of 48 expiries (one week to two years) fitted with
enforcement on one thread against one-start scipy ``least_squares`` per slice, same run; the issue's bar,
50x, is asserted.

Breakdown (``test_quality_spx_breakdown``; a diagnostic): the SPX chain's loss per slice, and the quotes' own
calendar order.

Weightings (``test_quality_weightings``, ``test_quality_weightings_local_check``; diagnostics): the quality
bars under other quote weightings, the enforced and the unconstrained fit given the same weights in every
row, and a general-purpose penalty fit from the enforced one as a check on the solver.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from volfast.info import cpu_model
from volfast.svi import _enforce, _weights, fit_svi, total_variance
from volfast.svi import _reference as ref
from volfast.svi._synthetic import spx_like_slices

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _spx_chain import SPX_CSV, load_spx_chain  # noqa: E402

BARS = {"rmse_all": 1.2, "rmse_practical": 1.5, "inside": 0.9}


def _metrics(
    d: dict[str, np.ndarray], params: np.ndarray, atm: np.ndarray, weights: np.ndarray | None = None
) -> dict[str, float]:
    """Bar metrics of one surface; ``rmse_weighted`` uses ``weights`` (default: the spread weights)."""
    off, T = d["offsets"], d["expiry_years"]
    if weights is None:
        wt = np.empty(len(d["k"]))
        _weights.spread_weights(d["bid"], d["ask"], off, wt)
    else:
        wt = weights
    e, e4, ins = [], [], []
    for s in range(len(T)):
        k, w = d["k"][off[s] : off[s + 1]], d["w"][off[s] : off[s + 1]]
        wf = total_variance(k, params[s])
        dv = (np.sqrt(np.maximum(wf, 0.0) / T[s]) - np.sqrt(w / T[s])) ** 2
        e.append(dv)
        e4.append(dv[np.abs(k) <= 4.0 * atm[s]])
        b, a = d["bid"][off[s] : off[s + 1]], d["ask"][off[s] : off[s + 1]]
        ins.append((np.isnan(b) | (wf >= b)) & (wf <= a))
    c = np.concatenate
    return {
        "rmse_all": 100 * float(np.sqrt(c(e).mean())),
        "rmse_practical": 100 * float(np.sqrt(c(e4).mean())),
        "inside": float(c(ins).mean()),
        "rmse_weighted": 100 * float(np.sqrt(np.average(c(e), weights=wt))),
    }


def _scipy_fits(d: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
    off = d["offsets"]
    wt = np.empty(len(d["k"]))
    _weights.spread_weights(d["bid"], d["ask"], off, wt)
    P = np.full((len(off) - 1, 5), np.nan)
    t0 = time.perf_counter()
    for s in range(len(off) - 1):
        sl = slice(off[s], off[s + 1])
        P[s], _ = ref.fit_slice_least_squares(d["k"][sl], d["w"][sl], wt[sl], n_starts=1, seed=s)
    return P, time.perf_counter() - t0


def _compare(d: dict[str, np.ndarray], name: str, benchmark: Any) -> dict[str, dict[str, float]]:
    kw = {
        "expiry_years": d["expiry_years"],
        "bid_total_variance": d["bid"],
        "ask_total_variance": d["ask"],
        "threads": 1,
    }
    fit_svi(d["k"], d["w"], d["offsets"], arbitrage_free=True, **kw)  # compile / load outside the timing
    enf = benchmark.pedantic(
        fit_svi, args=(d["k"], d["w"], d["offsets"]), kwargs={"arbitrage_free": True, **kw}, rounds=1
    )
    free = fit_svi(d["k"], d["w"], d["offsets"], arbitrage_free=False, **kw)
    assert enf.ok.all() and enf.butterfly_ok.all() and enf.calendar_ok.all()
    # diagnostic: the sequential pass alone (no joint QP stage)
    _enforce._JOINT = False
    try:
        seq = fit_svi(d["k"], d["w"], d["offsets"], arbitrage_free=True, **kw)
    finally:
        _enforce._JOINT = True
    assert seq.ok.all()
    # diagnostic: butterfly enforced on each slice alone (every slice its own surface: no calendar bounds),
    # which splits the enforced fit's cost into its butterfly and its calendar parts
    bfo = fit_svi(
        d["k"], d["w"], d["offsets"], arbitrage_free=True, surface_id=np.arange(free.n_slices), **kw
    )
    assert bfo.ok.all() and bfo.butterfly_ok.all()
    atm = np.sqrt(total_variance(np.zeros(free.n_slices), free.params))
    P_sc, _ = _scipy_fits(d)
    res = {
        "enforced": _metrics(d, enf.params, atm),
        "unconstrained": _metrics(d, free.params, atm),
        "sequential only": _metrics(d, seq.params, atm),
        "butterfly only": _metrics(d, bfo.params, atm),
        "scipy least_squares": _metrics(d, P_sc, atm),
    }
    u = res["unconstrained"]
    ratios = {key: res["enforced"][key] / u[key] for key in BARS}
    print(f"\n{name}: {free.n_slices} slices, {len(d['k'])} quotes, {cpu_model()}")
    print(f"{'fit':<22}{'RMSE all':>10}{'RMSE |k|<=4sd':>15}{'inside b/a':>12}{'RMSE weighted':>15}")
    for fit, m in res.items():
        print(
            f"{fit:<22}{m['rmse_all']:>10.3f}{m['rmse_practical']:>15.3f}{m['inside']:>12.1%}"
            f"{m['rmse_weighted']:>15.3f}"
        )
    print(
        f"enforced / unconstrained: RMSE all {ratios['rmse_all']:.2f}x (bar <= 1.2), practical "
        f"{ratios['rmse_practical']:.2f}x (bar <= 1.5), inside {ratios['inside']:.2f}x (bar >= 0.9); "
        f"butterfly flags of the unconstrained fit {int((~free.butterfly_ok).sum())}, calendar "
        f"{int((~free.calendar_ok).sum())}; enforced slices REPAIRED {int((enf.status == 1).sum())}; "
        f"weighted RMSE {res['enforced']['rmse_weighted'] / u['rmse_weighted']:.2f}x"
    )
    b = res["butterfly only"]
    print(
        "butterfly only (no calendar) / unconstrained: "
        + ", ".join(f"{key} {b[key] / u[key]:.2f}x" for key in BARS)
    )
    benchmark.extra_info.update({f"ratio_{k}": v for k, v in ratios.items()})
    benchmark.extra_info.update({f"{f}_{k}": v for f, m in res.items() for k, v in m.items()})
    return {"ratios": ratios, **res}


def test_quality_spx_chain(benchmark: Any) -> None:
    if not SPX_CSV.is_file():
        pytest.skip(f"{SPX_CSV} not found")
    out = _compare(load_spx_chain(), "SPX chain 2025-10-01 (Cboe close)", benchmark)
    r = out["ratios"]
    missed = [k for k, bar in BARS.items() if (r[k] > bar if k != "inside" else r[k] < bar)]
    if missed:
        print(f"bars missed on the real chain: {', '.join(missed)}")
    # what is asserted on the real chain: the practical range stays within its bar
    assert r["rmse_practical"] <= BARS["rmse_practical"]


def _isotonic_increasing(y: np.ndarray) -> np.ndarray:
    """Unweighted pool-adjacent-violators: the non-decreasing sequence nearest ``y`` in least squares."""
    vals: list[float] = []
    sizes: list[int] = []
    for v in y:
        vals.append(float(v))
        sizes.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            n2, v2 = sizes.pop(), vals.pop()
            vals[-1] = (vals[-1] * sizes[-1] + v2 * n2) / (sizes[-1] + n2)
            sizes[-1] += n2
    return np.repeat(vals, sizes)


def test_quality_spx_breakdown() -> None:
    """Where the SPX chain's enforced fit loses against the unconstrained one (a diagnostic): per slice the
    unweighted squared vol error (vol points^2) of the unconstrained, enforced and butterfly-only fits, its
    part at k < -1 and the quotes inside bid/ask; then whether the quotes themselves are in calendar order
    (the isotonic regression over expiry of the linearly interpolated mid total variances, at every k of a
    grid covered by two or more slices, moves nothing when they are)."""
    if not SPX_CSV.is_file():
        pytest.skip(f"{SPX_CSV} not found")
    d = load_spx_chain()
    off, T = d["offsets"], d["expiry_years"]
    n = len(T)
    kw = {"expiry_years": T, "bid_total_variance": d["bid"], "ask_total_variance": d["ask"], "threads": 1}
    fits = {
        "unconstrained": fit_svi(d["k"], d["w"], off, arbitrage_free=False, **kw),
        "enforced": fit_svi(d["k"], d["w"], off, arbitrage_free=True, **kw),
        "butterfly only": fit_svi(d["k"], d["w"], off, arbitrage_free=True, surface_id=np.arange(n), **kw),
    }
    head = "   SSE unc / enf / bfly   k<-1 unc / enf   inside"
    print(f"\n{'slice':<17}{'T':>6}{'quotes':>7}{'k range':>14}{head}")
    tot = np.zeros((3, 2))
    for s in range(n):
        sl = slice(off[s], off[s + 1])
        k, w = d["k"][sl], d["w"][sl]
        sse, far, ins = [], [], []
        for f in fits.values():
            wf = total_variance(k, f.params[s])
            e2 = (100 * (np.sqrt(np.maximum(wf, 0.0) / T[s]) - np.sqrt(w / T[s]))) ** 2
            sse.append(e2.sum())
            far.append(e2[k < -1].sum())
            ins.append(int(((wf >= d["bid"][sl]) & (wf <= d["ask"][sl])).sum()))
        tot[:, 0] += sse
        tot[:, 1] += far
        print(
            f"{d['label'][s]:<17}{T[s]:>6.2f}{len(k):>7}{k.min():>8.2f}..{k.max():.2f}   "
            f"{sse[0]:>6.0f} / {sse[1]:>4.0f} / {sse[2]:>4.0f}   {far[0]:>6.0f} / {far[1]:>4.0f}   "
            f"{ins[0]:>3} / {ins[1]:>3}"
        )
    print(
        f"total SSE unc / enf / bfly {tot[0, 0]:.0f} / {tot[1, 0]:.0f} / {tot[2, 0]:.0f}, "
        f"of it at k < -1 {tot[0, 1]:.0f} / {tot[1, 1]:.0f} / {tot[2, 1]:.0f}"
    )
    # the quotes' own calendar order
    moved, points = 0.0, 0
    for k0 in np.linspace(-2.6, 0.7, 331):
        idx = [s for s in range(n) if d["k"][off[s]] <= k0 <= d["k"][off[s + 1] - 1]]
        if len(idx) < 2:
            continue
        v = np.array([np.interp(k0, d["k"][off[s] : off[s + 1]], d["w"][off[s] : off[s + 1]]) for s in idx])
        iso = _isotonic_increasing(v)
        moved += float((100 * (np.sqrt(v / T[idx]) - np.sqrt(iso / T[idx]))) ** 2 @ np.ones(len(idx)))
        points += len(idx)
    rms = float(np.sqrt(moved / points))
    print(f"quotes' calendar order: the isotonic regression over expiry moves the mids by {rms:.4f} vol")
    print(f"points RMS over {points} (k, slice) points")
    assert fits["enforced"].ok.all() and points > 1000
    assert np.allclose(_isotonic_increasing(np.array([1.0, 3.0, 1.0, 2.0])), [1.0, 2.0, 2.0, 2.0])


def test_quality_synthetic_days(benchmark: Any) -> None:
    d = spx_like_slices(8, seed=19)
    out = _compare(d, "synthetic SPX-like days (8 x 6 expiries)", benchmark)
    r = out["ratios"]
    assert r["rmse_all"] <= BARS["rmse_all"] and r["rmse_practical"] <= BARS["rmse_practical"]
    assert r["inside"] >= BARS["inside"]


def test_speed_48_expiries(benchmark: Any) -> None:
    expiries = tuple(np.geomspace(7 / 365, 2.0, 48))
    d = spx_like_slices(1, seed=48, expiries=expiries)
    args = (d["k"], d["w"], d["offsets"])
    kw = {
        "expiry_years": d["expiry_years"],
        "bid_total_variance": d["bid"],
        "ask_total_variance": d["ask"],
        "arbitrage_free": True,
        "threads": 1,
    }
    fit_svi(*args, **kw)
    r = benchmark.pedantic(fit_svi, args=args, kwargs=kw, rounds=5, iterations=1)
    assert r.ok.all() and r.butterfly_ok.all() and r.calendar_ok.all()
    t_enf = benchmark.stats.stats.min
    _, t_sc = _scipy_fits(d)
    ratio = t_sc / t_enf
    print(
        f"\n48-expiry day, {len(d['k'])} quotes, 1 thread, {cpu_model()}: enforced {1e3 * t_enf:.1f} ms "
        f"({1e3 * t_enf / 48:.2f} ms per slice, {int((r.status == 1).sum())} REPAIRED), scipy least_squares "
        f"one start per slice {1e3 * t_sc:.0f} ms ({1e3 * t_sc / 48:.1f} ms per slice): {ratio:.0f}x"
    )
    benchmark.extra_info.update({"ratio_vs_scipy": ratio, "scipy_s": t_sc, "enforced_s": t_enf})
    assert ratio >= 50.0, f"issue 19 bar (>= 50x) missed: {ratio:.0f}x"


def test_speed_48_expiries_other_days() -> None:
    """The same 48-expiry day with eight other noise seeds: how often the joint fast path carries the
    speed. Prints each day's ratio to scipy (same run) and the enforced fit's objective against the
    sequential pass alone; asserts only that every day is fitted free of arbitrage."""
    expiries = tuple(np.geomspace(7 / 365, 2.0, 48))
    print()
    for seed in range(1, 9):
        d = spx_like_slices(1, seed=seed, expiries=expiries)
        args = (d["k"], d["w"], d["offsets"])
        kw = {"expiry_years": d["expiry_years"], "bid_total_variance": d["bid"],
              "ask_total_variance": d["ask"], "arbitrage_free": True, "threads": 1}  # fmt: skip
        fit_svi(*args, **kw)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            r = fit_svi(*args, **kw)
            times.append(time.perf_counter() - t0)
        assert r.ok.all() and r.butterfly_ok.all() and r.calendar_ok.all()
        _enforce._JOINT = False
        try:
            seq = fit_svi(*args, **kw)
        finally:
            _enforce._JOINT = True
        _, t_sc = _scipy_fits(d)
        print(
            f"seed {seed}: enforced {1e3 * min(times):.0f} ms, scipy {1e3 * t_sc:.0f} ms: "
            f"{t_sc / min(times):.0f}x; objective {np.sum(r.objective):.4e} (sequential only "
            f"{np.sum(seq.objective):.4e})"
        )


def _candidate_weights(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-quote weights for the weighting comparison, each written out here from its formula; the
    spread ``s`` is ``ask - bid`` in total variance (a missing or non-positive one counts as 3x the slice's
    median ``m``, as in ``spread_weights``); vol-space spreads are ``s / (2 sqrt(w T))``."""
    off = d["offsets"]
    n = np.diff(off)
    T = np.repeat(d["expiry_years"], n)
    sp = d["ask"] - d["bid"]
    good = (sp > 0.0) & np.isfinite(sp)
    med = np.repeat([np.median(sp[a:b][good[a:b]]) for a, b in zip(off[:-1], off[1:], strict=True)], n)
    sp = np.where(good, sp, 3.0 * med)
    spv = sp / (2.0 * np.sqrt(d["w"] * T))
    medv = np.repeat([np.median(spv[a:b]) for a, b in zip(off[:-1], off[1:], strict=True)], n)
    today = np.empty(len(sp))
    _weights.spread_weights(d["bid"], d["ask"], off, today)
    out = {"1/s^2, floor 0.05 m (default)": today, "1/s (floor 0.05 m)": 1.0 / np.maximum(sp, 0.05 * med)}
    for f in (0.25, 0.5, 1.0):
        out[f"1/(s^2 + ({f:g} m)^2)"] = 1.0 / (sp**2 + (f * med) ** 2)
    out["vol space, equal"] = 1.0 / (d["w"] * T)
    out["vol space, 1/(sv^2 + mv^2)"] = 1.0 / (4.0 * d["w"] * T) / (spv**2 + medv**2)
    for cap in (10.0, 100.0):
        capped = today.copy()
        for a, b in zip(off[:-1], off[1:], strict=True):
            capped[a:b] = np.maximum(capped[a:b], capped[a:b].max() / cap)
        out[f"1/s^2, max/min <= {cap:g}"] = capped
    return out


def test_quality_weightings() -> None:
    """Issue 19's quality bars under other default quote weightings (diagnostic; the default stays
    ``spread_weights``). Each row fits the enforced and the unconstrained surface with the SAME weights
    (``fit_svi(weights=...)``) and prints the three bar ratios (RMSE all quotes, RMSE practical range, share
    inside bid/ask; the RMSEs unweighted, as in the bars), the ratio in the fit's own metric (vol RMSE
    weighted by that row's weights), the three bar ratios with butterfly only (no calendar order) and, on the
    SPX chain, with SPX and SPXW slices as two separate surfaces (calendar order within each root only).
    Asserts that every enforced fit is free of arbitrage and that the first row is the default.

    Run:  VOLFAST_SHARED_DATA=/path/to/shared/data python -m pytest benchmarks/bench_svi_real.py
    --benchmark-enable -s -p no:cacheprovider -k weightings
    """
    days = [("synthetic SPX-like days (8 x 6 expiries)", spx_like_slices(8, seed=19), None)]
    if SPX_CSV.is_file():
        d = load_spx_chain()
        root = np.array([0 if str(lab).startswith("SPX ") else 1 for lab in d["label"]])
        days.insert(0, ("SPX chain 2025-10-01 (Cboe close)", d, root))
    else:
        print(f"\n{SPX_CSV} not found: synthetic days only")
    for name, d, root in days:
        off = d["offsets"]
        kw = {"expiry_years": d["expiry_years"], "bid_total_variance": d["bid"],
              "ask_total_variance": d["ask"], "threads": 1}  # fmt: skip
        default = fit_svi(d["k"], d["w"], off, **kw)
        print(f"\n{name}: {len(off) - 1} slices, {len(d['k'])} quotes, {cpu_model()}")
        print(f"{'weights (same in both fits)':<30}{'unc RMSE':>9}{'all':>6}{'pract':>6}{'inside':>7}"
              f"{'own':>6}   butterfly only   {'SPX | SPXW apart' if root is not None else ''}")  # fmt: skip
        for i, (wname, wt) in enumerate(_candidate_weights(d).items()):
            enf = fit_svi(d["k"], d["w"], off, arbitrage_free=True, weights=wt, **kw)
            free = fit_svi(d["k"], d["w"], off, arbitrage_free=False, weights=wt, **kw)
            bfo = fit_svi(d["k"], d["w"], off, arbitrage_free=True, weights=wt,
                          surface_id=np.arange(free.n_slices), **kw)  # fmt: skip
            assert enf.ok.all() and enf.butterfly_ok.all() and enf.calendar_ok.all(), wname
            atm = np.sqrt(total_variance(np.zeros(free.n_slices), free.params))
            if i == 0:  # the default's weights, given explicitly (renormalised: equal to rounding)
                got, want = _metrics(d, enf.params, atm), _metrics(d, default.params, atm)
                assert all(abs(got[k] - want[k]) <= 1e-4 * abs(want[k]) for k in want), (got, want)
            # the fit's own metric: vol RMSE weighted by this row's weights (mean 1 per slice)
            wn = np.concatenate([wt[a:b] / wt[a:b].mean() for a, b in zip(off[:-1], off[1:], strict=True)])
            u, e, b = (_metrics(d, r.params, atm) for r in (free, enf, bfo))
            own = [_metrics(d, r.params, atm, weights=wn)["rmse_weighted"] for r in (free, enf)]
            cols = [f"{e[k] / u[k]:>6.2f}" for k in BARS] + [f"{own[1] / own[0]:>6.2f}   "]
            cols.append("/".join(f"{b[k] / u[k]:.2f}" for k in BARS))
            if root is not None:
                sep = fit_svi(d["k"], d["w"], off, arbitrage_free=True, weights=wt, surface_id=root, **kw)
                assert sep.ok.all() and sep.calendar_ok.all(), wname
                s = _metrics(d, sep.params, atm)
                cols.append("     " + "/".join(f"{s[k] / u[k]:.2f}" for k in BARS))
            print(f"{wname:<30}{u['rmse_all']:>9.3f}" + "".join(cols))


def _grid_constraints(P: np.ndarray, grid: np.ndarray, bf_mask: np.ndarray) -> np.ndarray:
    """Arbitrage constraints of raw-SVI slices ``P`` (n, 5) sampled on ``grid`` (all >= 0 when met):
    calendar ``w_{i+1} - w_i`` (x100), butterfly ``4 w^2 g(k)`` on ``bf_mask``, Lee ``2 - b (1 +- rho)``."""
    a, b, r, m, s = (P[:, j : j + 1] for j in range(5))
    x = grid[None, :] - m
    q = np.sqrt(x * x + s * s)
    w, w1, w2 = a + b * (r * x + q), b * (r + x / q), b * s * s / q**3
    g4 = (2 * w - grid * w1) ** 2 - w1**2 * (w + w * w / 4) + 2 * w * w * w2  # 4 w^2 g(k)
    lee = np.concatenate([2 - P[:, 1] * (1 + P[:, 2]), 2 - P[:, 1] * (1 - P[:, 2])])
    return np.concatenate([100 * (w[1:] - w[:-1]).ravel(), g4[bf_mask], lee, w.min(axis=1)])


def test_quality_weightings_local_check() -> None:
    """Is the enforced fit's cost under flatter weightings the constraints' or the solver's? For three
    weightings on the SPX chain, a general-purpose joint fit of all 13 slices (L-BFGS-B on the row's weighted
    vol objective plus a quadratic penalty mu = 10 .. 1e6 on the constraints sampled on k in [-4, 2]:
    calendar everywhere on the grid, butterfly on each quoted range widened by 0.1, Lee's bound), started
    from the enforced fit, and the bar ratios it reaches. The sampled constraints are a relaxation of the
    continuous ones, so this is optimistic for the constrained fit. Prints; asserts only that the penalty
    fit is (nearly) feasible on the grid. About a minute per weighting.

    Run:  VOLFAST_SHARED_DATA=/path/to/shared/data python -m pytest benchmarks/bench_svi_real.py
    --benchmark-enable -s -p no:cacheprovider -k local_check
    """
    from scipy.optimize import minimize

    if not SPX_CSV.is_file():
        pytest.skip(f"{SPX_CSV} not found")
    d = load_spx_chain()
    off, T = d["offsets"], d["expiry_years"]
    ns = len(T)
    sid = np.repeat(np.arange(ns), np.diff(off))
    grid = np.linspace(-4.0, 2.0, 241)
    bf_mask = np.array([(grid >= d["k"][a:b].min() - 0.1) & (grid <= d["k"][a:b].max() + 0.1)
                        for a, b in zip(off[:-1], off[1:], strict=True)])  # fmt: skip
    bounds = [(-10.0, 10.0), (0.0, 5.0), (-0.999, 0.999), (-3.0, 3.0), (1e-4, 8.0)] * ns
    kw = {"expiry_years": T, "bid_total_variance": d["bid"], "ask_total_variance": d["ask"], "threads": 1}
    print(f"\nSPX chain: enforced fit vs a penalty L-BFGS-B joint fit from it, {cpu_model()}")
    print(f"{'weights (same in all fits), fit':<44}{'own':>6}{'all':>6}{'pract':>6}{'inside':>7}")
    cands = _candidate_weights(d)
    for wname in ("1/s^2, floor 0.05 m (default)", "1/s (floor 0.05 m)", "1/(s^2 + (0.25 m)^2)"):
        wt = cands[wname]
        wn = np.concatenate([wt[a:b] / wt[a:b].mean() for a, b in zip(off[:-1], off[1:], strict=True)])
        enf = fit_svi(d["k"], d["w"], off, arbitrage_free=True, weights=wt, **kw)
        free = fit_svi(d["k"], d["w"], off, arbitrage_free=False, weights=wt, **kw)

        def objective(x: np.ndarray, wn: np.ndarray = wn) -> float:
            a, b, r, m, s = x.reshape(ns, 5)[sid].T
            xx = d["k"] - m
            wf = a + b * (r * xx + np.sqrt(xx * xx + s * s))
            dv = np.sqrt(np.maximum(wf, 1e-12) / T[sid]) - np.sqrt(d["w"] / T[sid])
            return 1e4 * float(np.sum(wn * dv * dv)) / len(wn)

        x = np.clip(enf.params.ravel(), [lo for lo, _ in bounds], [hi for _, hi in bounds])
        for mu in (1e1, 1e2, 1e3, 1e4, 1e5, 1e6):

            def penalised(x: np.ndarray, mu: float = mu, objective: Any = objective) -> float:
                c = _grid_constraints(x.reshape(ns, 5), grid, bf_mask)
                return objective(x) + mu * float(np.sum(np.minimum(c, 0.0) ** 2))

            x = minimize(penalised, x, method="L-BFGS-B", bounds=bounds, options={"maxiter": 500}).x
        P = x.reshape(ns, 5)
        worst = float(_grid_constraints(P, grid, bf_mask).min())
        atm = np.sqrt(total_variance(np.zeros(ns), free.params))
        u = _metrics(d, free.params, atm)
        f0 = objective(free.params.ravel())
        for label, Q in (("enforced", enf.params), ("penalty fit", P)):
            m = _metrics(d, Q, atm)
            print(f"{wname + ', ' + label:<44}{np.sqrt(objective(Q.ravel()) / f0):>6.2f}"
                  + "".join(f"{m[k] / u[k]:>6.2f}" for k in BARS))  # fmt: skip
        print(f"{'':<44}penalty fit's worst sampled constraint {worst:.1e}")
        assert worst > -1e-2, (wname, worst)
