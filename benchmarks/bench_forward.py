"""Forward / discount-factor fits on ~50 synthetic days: per-expiry fits/s and the error table.

Run:  python -m pytest benchmarks/bench_forward.py --benchmark-enable -s -p no:cacheprovider

Peers in one group: ``huber`` (the default), ``naive`` (the CBOE rule: the strike with the smallest
``|C - P|``) and ``bayes`` (Gibbs posterior). All slices of all days go through one call (CSR), so the
figure is fits per second of the batched Numba kernel (first, compiling, call excluded).

The days are generated once into a temporary folder (``VOLFAST_FORWARD_DAYS=DIR`` reuses/creates DIR).
The market is the default small-scale synthetic one (the truth forward is the one the last pre-cut quotes
were priced on; see ``volfast.synth.generate``).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pytest

N_DAYS = 50


def _days(root: Path, **overrides: float) -> list[tuple]:
    from volfast.synth import generate_days
    from volfast.synth.config import SynthConfig

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_forward import _truth_days

    cfg = SynthConfig.for_scale("small", **overrides)
    out: list[tuple] = []
    for seed, start, n in (
        (21, dt.date(2024, 1, 2), N_DAYS // 2),
        (22, dt.date(2024, 7, 1), N_DAYS - N_DAYS // 2),
    ):
        sub = root / f"seed{seed}"
        if not (sub / "truth").is_dir() or len(list((sub / "truth").iterdir())) < n:
            generate_days(start, n, sub, seed=seed, config=cfg)
        out += _truth_days(sub)
    return out


@pytest.fixture(scope="module")
def markets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple]]:
    base = os.environ.get("VOLFAST_FORWARD_DAYS")
    root = Path(base) if base else tmp_path_factory.mktemp("fwd_days")
    return {"default": _days(root / "default")}


def _batch(days: list[tuple]) -> dict:
    """All slices of all days as one CSR batch."""
    cols = {k: [] for k in ("strike", "is_call", "bid", "ask")}
    sizes, t, f, d = [], [], [], []
    for ch, f_true, d_true in days:
        for k in cols:
            cols[k].append(getattr(ch, k))
        sizes.append(np.diff(ch.offsets))
        t.append(ch.expiry_years)
        f.append(f_true)
        d.append(d_true)
    out = {k: np.concatenate(v) for k, v in cols.items()}
    out["offsets"] = np.concatenate([[0], np.cumsum(np.concatenate(sizes))]).astype(np.int64)
    out["expiry_years"] = np.concatenate(t)
    out["F"], out["D"] = np.concatenate(f), np.concatenate(d)
    return out


def _fit_days(days: list[tuple], method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per day (pooling works within one day), errors in bp."""
    fe, re, tt = [], [], []
    for ch, f_true, d_true in days:
        fit = ch.implied_forward(method=method)
        fe.append(np.abs(fit.forward / f_true - 1) * 1e4)
        re.append(np.abs(fit.rate + np.log(d_true) / ch.expiry_years) * 1e4)
        tt.append(ch.expiry_years)
    return np.concatenate(fe), np.concatenate(re), np.concatenate(tt)


@pytest.mark.parametrize("method", ["huber", "naive", "bayes"])
def test_fits_per_second(benchmark, markets, method: str) -> None:
    from volfast.forward import implied_forward

    b = _batch(markets["default"])
    ns = b["offsets"].size - 1
    kw = dict(expiry_years=b["expiry_years"], offsets=b["offsets"], method=method, pool_discount=False)
    # compile outside the timing
    implied_forward(strike=b["strike"], is_call=b["is_call"], bid=b["bid"], ask=b["ask"], **kw)
    benchmark.group = "forward fits"
    fit = benchmark(
        implied_forward, strike=b["strike"], is_call=b["is_call"], bid=b["bid"], ask=b["ask"], **kw
    )
    ok = fit.ok
    err = np.abs(fit.forward[ok] / b["F"][ok] - 1) * 1e4
    assert ok.mean() > 0.9 and np.median(err) < (1.0 if method == "naive" else 0.3)
    if benchmark.stats is not None and benchmark.stats.stats.median:
        print(f"\n{method}: {ns} slices, {ns / benchmark.stats.stats.median:,.0f} fits/s")


def test_error_table(markets) -> None:
    """The issue's bars, the error table per method, and fits/s ratios measured here."""
    from volfast.forward import implied_forward

    print(
        f"\n{platform.processor() or platform.machine()}, "
        f"numba threads {os.environ.get('NUMBA_NUM_THREADS', 'default')}"
    )
    rows = {}
    for name, days in markets.items():
        for method in ("huber", "naive", "bayes"):
            fe, re, t = _fit_days(days, method)
            ok = np.isfinite(fe)
            long = ok & (t >= 0.1)
            rows[(name, method)] = (
                ok.sum(),
                ok.size,
                np.median(fe[ok]),
                np.quantile(fe[ok], 0.95),
                np.median(re[long]),
                np.quantile(re[long], 0.95),
            )
    print(
        f"{'market':8} {'method':6} {'fitted':>9} {'F err med':>9} {'F p95':>7} "
        f"{'r err med':>9} {'r p95':>7}  (bp)"
    )
    for (name, method), (n_ok, n, fm, fp, rm, rp) in rows.items():
        print(f"{name:8} {method:6} {n_ok:4d}/{n:4d} {fm:9.3f} {fp:7.3f} {rm:9.2f} {rp:7.1f}")
    b = _batch(markets["default"])
    times = {}
    for method in ("huber", "naive", "bayes"):
        kw = dict(expiry_years=b["expiry_years"], offsets=b["offsets"], method=method, pool_discount=False)
        implied_forward(strike=b["strike"], is_call=b["is_call"], bid=b["bid"], ask=b["ask"], **kw)
        reps = []
        for _ in range(3):
            t0 = time.perf_counter()
            implied_forward(strike=b["strike"], is_call=b["is_call"], bid=b["bid"], ask=b["ask"], **kw)
            reps.append(time.perf_counter() - t0)
        times[method] = float(np.median(reps))
    ns = b["offsets"].size - 1
    print(
        "fits/s: "
        + ", ".join(f"{m} {ns / s:,.0f}" for m, s in times.items())
        + f"; huber/naive time {times['huber'] / times['naive']:.2f}, "
        + f"bayes/huber {times['bayes'] / times['huber']:.1f}"
    )
    n_ok, n, fm, fp, rm, rp = rows[("default", "huber")]
    assert n_ok / n > 0.9
    assert fm <= 0.2 and fp <= 1.0 and rm <= 6.0  # the bars
    assert rows[("default", "naive")][2] > 2 * fm
    assert rows[("default", "bayes")][2] <= 0.2 and rows[("default", "bayes")][4] <= 6.0
