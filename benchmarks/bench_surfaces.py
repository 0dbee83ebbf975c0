"""One day of the surfaces stage, end to end and per stage, on synthetic ES days with known truth.

Run:  python -m pytest benchmarks/bench_surfaces.py --benchmark-enable -s -p no:cacheprovider
      (VOLFAST_BENCH_FULL=1 adds a full-scale day: ~12k options, ~6-10 s to generate)

Days: ``volfast synth`` small scale (~900 options over 10 expiries, every non-thin day valid
under the research's validity rules) and, optionally, full scale. Each round runs
:func:`volfast.surface.surface_day` on the day's snapshot table (chains -> forwards -> vols -> SVI ->
validity -> grids -> tables) after a warm-up call (Numba compiles on the first); the median stage
times are printed, and the answer is checked against the truth (the fitted vols of the used quotes
within 0.1 vol points RMSE of the true vols). The peer for the dominant stage is what a user would
otherwise write: ``scipy.optimize.least_squares`` per slice on the same quotes and weights (raw SVI,
3 starts), timed in the same run.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pytest

import volfast
from volfast.surface import STAGES, SurfaceConfig, surface_day, write_surface_day

DAY = dt.date(2024, 3, 4)


def _make(tmp: Path, scale: str) -> tuple[object, Path]:
    from volfast.synth import generate_days
    from volfast.synth.config import SynthConfig

    generate_days(DAY, 1, tmp, seed=5, config=SynthConfig.for_scale(scale))
    return volfast.take_snapshot(data=tmp, date=DAY), tmp


@pytest.fixture(scope="module", params=["small", "full"])
def day(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, object, Path]:
    if request.param == "full" and not os.environ.get("VOLFAST_BENCH_FULL"):
        pytest.skip("set VOLFAST_BENCH_FULL=1 for the full-scale day")
    snap, folder = _make(tmp_path_factory.mktemp(f"synth_{request.param}"), request.param)
    return request.param, snap, folder


def _truth_rmse(d: object, folder: Path) -> float:
    import pyarrow.parquet as pq

    t = pq.read_table(folder / "truth" / f"date={DAY}" / "part-0.parquet").to_pandas()
    q = d.quotes.to_pandas()  # type: ignore[attr-defined]
    m = q[q["used"]].merge(t[t["kind"] == "option"][["instrument_id", "vol"]], on="instrument_id")
    return float(np.sqrt(np.mean((m["fit_iv"] - m["vol"]) ** 2)) * 100)


def _scipy_svi(d: object) -> float:
    """Seconds for per-slice scipy least_squares fits of raw SVI to the day's used quotes (the peer)."""
    from scipy.optimize import least_squares

    q = d.quotes.to_pandas()  # type: ignore[attr-defined]
    u = q[q["used"]]
    t0 = time.perf_counter()
    for _, s in u.groupby("slice"):
        k = s["log_moneyness"].to_numpy()
        T = float(s["expiry_years"].iloc[0])
        w = s["mid_iv"].to_numpy() ** 2 * T
        sw = (s["ask_iv"].to_numpy() ** 2 - s["bid_iv"].to_numpy() ** 2) * T
        sw = np.maximum(sw, 0.5 * sw[sw > 0].min() if (sw > 0).any() else 1e-8)
        if k.size < 5:
            continue

        def res(p: np.ndarray, k: np.ndarray = k, w: np.ndarray = w, sw: np.ndarray = sw) -> np.ndarray:
            a, b, r, m, sg = p
            return (a + b * (r * (k - m) + np.sqrt((k - m) ** 2 + sg * sg)) - w) / sw

        for m0 in (-0.1, 0.0, 0.1):
            least_squares(
                res, [w.min(), 0.1, -0.5, m0, 0.1], bounds=([-1, 0, -0.999, -2, 1e-4], [1, 10, 0.999, 2, 5])
            )
    return time.perf_counter() - t0


def test_surface_day_stages(day: tuple[str, object, Path], tmp_path: Path) -> None:
    scale, snap, folder = day
    table, cut = snap.table, snap.cut_ns  # type: ignore[attr-defined]
    cfg = SurfaceConfig()
    surface_day(table, cut_ns=cut, date=DAY, config=cfg)  # warm-up: Numba compiles / loads its cache
    rounds = 7 if scale == "small" else 3
    per_stage: dict[str, list[float]] = {s: [] for s in STAGES}
    total, write, peer = [], [], []
    for i in range(rounds):
        t0 = time.perf_counter()
        d = surface_day(table, cut_ns=cut, date=DAY, config=cfg)
        total.append(time.perf_counter() - t0)
        for s in STAGES:
            per_stage[s].append(d.timings[s])
        t1 = time.perf_counter()
        write_surface_day(d, tmp_path / f"out{i}")
        write.append(time.perf_counter() - t1)
        peer.append(_scipy_svi(d))
    assert d.valid, d.reason
    rmse = _truth_rmse(d, folder)
    assert rmse < 0.1, rmse
    med = {s: statistics.median(v) for s, v in per_stage.items()}
    n = d.counts["options"]
    print(
        f"\nsurfaces, {scale} synthetic day: {n} options, {d.counts['expiries']} expiries, "
        f"{d.counts['quotes_used']} quotes fitted; fit vs true vol RMSE {rmse:.3f} vol points"
    )
    print(f"  {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, numpy {np.__version__}")
    for s in STAGES:
        print(f"  {s:9} {med[s] * 1e3:8.2f} ms")
    print(
        f"  {'total':9} {statistics.median(total) * 1e3:8.2f} ms  ({n / statistics.median(total):,.0f} "
        f"options/s)"
    )
    print(f"  {'write':9} {statistics.median(write) * 1e3:8.2f} ms  (5 Parquet files + manifest, fsynced)")
    ratio = statistics.median(peer) / med["svi"]
    print(
        f"  SVI stage vs scipy least_squares per slice (3 starts): {statistics.median(peer) * 1e3:.1f} ms, "
        f"volfast {ratio:.0f}x faster"
    )
    assert ratio > 1.0
