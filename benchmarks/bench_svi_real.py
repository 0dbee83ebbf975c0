"""Arbitrage-free SVI enforced in the fit (issue 19, items 1-3): quality against an unconstrained raw-SVI fit
of the same quotes and weights, side by side with scipy ``least_squares``, and speed on a 48-expiry day.

Run:  python -m pytest benchmarks/bench_svi_real.py --benchmark-enable -s -p no:cacheprovider

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


def _metrics(d: dict[str, np.ndarray], params: np.ndarray, atm: np.ndarray) -> dict[str, float]:
    off, T = d["offsets"], d["expiry_years"]
    wt = np.empty(len(d["k"]))
    _weights.spread_weights(d["bid"], d["ask"], off, wt)
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
