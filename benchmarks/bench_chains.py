"""A chain from a CSV file to fitted smiles: ``volfast.surface.from_quotes`` against the do-it-yourself
pandas / scipy pipeline a researcher would otherwise write, on the real SPX close in ../shared/data/chains.

Run:  python -m pytest benchmarks/bench_chains.py --benchmark-enable -s -p no:cacheprovider

Both read the same CSV and produce, per (root, expiry) slice, a forward and discount factor by put-call
parity, Black-76 implied vols of the out-of-the-money mids, and a raw-SVI fit of them:

* volfast: ``from_quotes(csv, asof=...)`` (Huber parity with box bounds, C++ implied vols of bid / ask / mid,
  batched SVI with the default arbitrage enforcement, validity and the three grids; everything the
  surfaces stage writes).
* peer: pandas ``read_csv`` and ``groupby``, an ordinary least-squares parity line over strikes within 5%
  of the money, ``scipy.optimize.brentq`` on Black-76 per quote, ``scipy.optimize.least_squares`` per slice
  (one start).

The test asserts that the two agree (forwards within 0.5 bp, median mid vols within 0.05 vol points per
slice) and prints both wall times (best of several rounds) and their ratio, measured in the same run.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

SPX = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "chains"
    / "spx_cboe_20251001"
    / "spx_20251001_close_chain_tidy.csv"
)
ASOF = "2025-10-01T16:00:00-04:00"
ROUNDS = 5


def _black(f: float, k: float, t: float, d: float, vol: float, call: bool) -> float:
    s = vol * math.sqrt(t)
    d1 = math.log(f / k) / s + 0.5 * s
    d2 = d1 - s
    n = lambda x: 0.5 * math.erfc(-x / math.sqrt(2.0))  # noqa: E731
    return d * (f * n(d1) - k * n(d2)) if call else d * (k * n(-d2) - f * n(-d1))


def diy_chain(path: Path) -> dict[tuple[str, str], dict[str, float]]:
    """The peer: per (root, expiry), forward, discount factor, OTM mid vols and an SVI fit."""
    import pandas as pd
    from scipy.optimize import brentq, least_squares

    raw = pd.read_csv(path)
    asof = pd.Timestamp(ASOF)
    out: dict[tuple[str, str], dict[str, float]] = {}
    for (root, exp), g in raw.groupby(["root", "expiry"]):
        hm = "09:30" if (g["settlement_style"].iloc[0] == "AM") else "16:00"
        t = (pd.Timestamp(f"{exp} {hm}").tz_localize("America/New_York") - asof).total_seconds() / (
            365 * 86400
        )
        mid = (g["bid"] + g["ask"]) / 2
        c = mid[g.cp == "C"].set_axis(g.strike[g.cp == "C"])
        p = mid[g.cp == "P"].set_axis(g.strike[g.cp == "P"])
        ks = c.index.intersection(p.index)
        y = (c.loc[ks] - p.loc[ks]).groupby(level=0).mean()
        k0 = float(y.abs().idxmin())
        f0 = k0 + float(y.loc[k0])
        sel = y.index[np.abs(np.log(y.index.to_numpy(float) / f0)) < 0.05]
        slope, icpt = np.polyfit(sel.to_numpy(float), y.loc[sel].to_numpy(float), 1)
        d = -float(slope)
        f = float(icpt) / d
        otm = g[((g.cp == "C") & (g.strike >= f)) | ((g.cp == "P") & (g.strike < f))]
        ivs, kk = [], []
        for k, call, px in zip(otm.strike, otm.cp == "C", (otm.bid + otm.ask) / 2, strict=True):
            try:
                ivs.append(
                    brentq(
                        lambda v, k=k, call=call, px=px, f=f, t=t, d=d: _black(f, k, t, d, v, call) - px,
                        1e-4,
                        5.0,
                    )
                )
                kk.append(math.log(k / f))
            except ValueError:
                continue
        k_arr, iv = np.asarray(kk), np.asarray(ivs)
        w = iv**2 * t

        def svi(q: np.ndarray, k: np.ndarray) -> np.ndarray:
            a, b, rho, m, sg = q
            return a + b * (rho * (k - m) + np.sqrt((k - m) ** 2 + sg * sg))

        fit = least_squares(
            lambda q, k_arr=k_arr, w=w: svi(q, k_arr) - w,
            [w.min(), 0.1, -0.5, 0.0, 0.1],
            bounds=([-1, 0, -0.999, -2, 1e-4], [1, 10, 0.999, 2, 5]),
        )
        out[(str(root), str(exp))] = {
            "forward": f,
            "discount_factor": d,
            "median_vol": float(np.median(iv)),
            "n": float(iv.size),
            "svi_rmse_vp": float(
                np.sqrt(np.mean((np.sqrt(np.maximum(svi(fit.x, k_arr), 0) / t) - iv) ** 2)) * 100
            ),
        }
    return out


def _best(fn, rounds: int = ROUNDS) -> tuple[float, object]:
    best, res = math.inf, None
    for _ in range(rounds):
        t0 = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t0)
    return best, res


def test_chain_csv_to_smiles(benchmark) -> None:
    if not SPX.is_file():
        pytest.skip(f"real SPX chain not found at {SPX}")
    pytest.importorskip("scipy")
    from volfast.surface import from_quotes

    from_quotes(SPX, asof=ASOF)  # compile / warm the Numba kernels: never timed
    benchmark.group = "chain csv -> smiles"
    day = benchmark.pedantic(lambda: from_quotes(SPX, asof=ASOF), rounds=ROUNDS, iterations=1)
    t_vf, day = _best(lambda: from_quotes(SPX, asof=ASOF))
    t_diy, diy = _best(lambda: diy_chain(SPX), rounds=2)
    fw = day.forwards.to_pandas()
    q = day.quotes.to_pandas()
    assert len(fw) == len(diy) == 13
    for _, row in fw.iterrows():
        ref = diy[(row.underlying, row.expiration.tz_convert("America/New_York").strftime("%Y-%m-%d"))]
        assert row.forward == pytest.approx(ref["forward"], rel=0.5e-4)
        used = q[q.used & (q.slice == row.slice)]
        assert abs(float(np.median(used.mid_iv)) - ref["median_vol"]) < 5e-4  # 0.05 vol points
    n = int(q.used.sum())
    print(
        f"\nSPX 2025-10-01 chain ({len(q)} quotes, 13 slices, {n} OTM quotes fitted), best of rounds, "
        f"shared machine:\n  volfast from_quotes  {t_vf * 1e3:8.1f} ms"
        f"\n  pandas + scipy DIY  {t_diy * 1e3:8.1f} ms   ({t_diy / t_vf:.1f}x volfast's time)"
    )
