"""De-Americanisation on a full OPRA day: its added cost and its forwards and vols against the truth.

Run:  python -m pytest benchmarks/bench_deamericanise.py --benchmark-enable -s -p no:cacheprovider
      (set VOLFAST_OPRA_DAY=/tmp/vf-spy to reuse a day made by
      ``volfast synth --market spy --start 2024-03-04 --days 1 --out /tmp/vf-spy --seed 5 --scale full``,
      the day of benchmarks/bench_opra.py)

The day's snapshot is taken once; then, in interleaved rounds in one process, the surfaces stage
(:func:`volfast.surface.day.surface_day`, the OPRA preset) runs with ``deamericanise`` on and off. Reported:
the median per-round ratio of the two (the added cost, as a ratio to the stage without it, to the snapshot
plus the stage, and the forwards stage's seconds, de-Americanisation included, as a ratio to the snapshot
measured in the same rounds), the iterations,
and the forward errors (bp) and fitted-vol errors (vol points) against the truth, by expiry bucket, with and
without. Asserted: with de-Americanisation the median forward error is under 1 bp and the vols within the
issue's bars (0.5 median, 2 at the 95th percentile).
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import time
from pathlib import Path

import numpy as np
import pytest

import volfast

DAY = dt.date(2024, 3, 4)
ROUNDS = int(os.environ.get("VOLFAST_BENCH_ROUNDS", "3"))
BUCKETS = (("< 3 weeks", 0.0, 21 / 365), ("3 weeks - 3 months", 21 / 365, 0.25), (">= 3 months", 0.25, 99.0))


@pytest.fixture(scope="module")
def full_day(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import pyarrow.parquet as pq

    from volfast.synth.spy import SpyConfig, generate_spy_day, spy_file_names

    names = spy_file_names(DAY)
    cached = os.environ.get("VOLFAST_OPRA_DAY")
    if cached and (Path(cached) / names["cbbo-1m"]).is_file():
        out = Path(cached)
    else:
        out = tmp_path_factory.mktemp("spy_full")
        generate_spy_day(DAY, out, seed=5, config=SpyConfig.for_scale("full"))
    truth = pq.read_table(out / "truth" / f"date={DAY.isoformat()}" / "part-0.parquet").to_pandas()
    return {"cbbo": out / names["cbbo-1m"], "defs": out / names["definition"], "truth": truth}


def _snapshot(day: dict):
    return volfast.take_snapshot(day["cbbo"], definitions=day["defs"], cut="15:48", date=DAY, lookback="10m")


def _surfaces(snap, deamericanise: bool):
    from volfast.pipeline.presets import with_market_preset
    from volfast.surface import SurfaceConfig
    from volfast.surface.day import surface_day

    cfg = SurfaceConfig.from_dict(with_market_preset({"deamericanise": deamericanise}, "OPRA.PILLAR"))
    return surface_day(snap.table, cut_ns=snap.cut_ns, date=DAY, config=cfg, dataset="OPRA.PILLAR")


def _errors(sd, truth) -> dict:
    f = sd.forwards.to_pandas()
    tf = truth[truth.kind == "expiry"].set_index("expiration").forward
    fe = np.abs(f.forward.to_numpy() / tf.loc[f.expiration].to_numpy() - 1) * 1e4
    T = f.expiry_years.to_numpy()
    opt = truth[truth.kind == "option"].set_index("raw_symbol")
    q = sd.quotes.to_pandas()
    u = q[q.used]
    ve = np.abs(u.fit_iv.to_numpy() - opt.loc[u.raw_symbol, "vol"].to_numpy()) * 100
    itm = q[(q.status == 0) & ~q.on_side & np.isfinite(q.mid_iv)]
    ie = np.abs(itm.mid_iv.to_numpy() - opt.loc[itm.raw_symbol, "vol"].to_numpy()) * 100
    out = {
        "forward_bp": (np.nanmedian(fe), np.nanpercentile(fe, 95), int(np.isfinite(fe).sum()), fe.size),
        "vol_used": (np.median(ve), np.percentile(ve, 95)),
        "itm_mid_vol": (np.median(ie), np.percentile(ie, 95)),
    }
    for name, lo, hi in BUCKETS:
        b = fe[(T >= lo) & (T < hi)]
        out[name] = (np.nanmedian(b), np.nanpercentile(b, 95), int(np.isfinite(b).sum()))
    return out


def test_deamericanise_cost_and_accuracy(full_day) -> None:
    snap = _snapshot(full_day)
    _surfaces(snap, True)  # compile and warm every kernel first
    ratios, own, iters, day_ratios = [], [], [], []
    on = off = None
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        s = _snapshot(full_day)
        t1 = time.perf_counter()
        off = _surfaces(s, False)
        t2 = time.perf_counter()
        on = _surfaces(s, True)
        t3 = time.perf_counter()
        ratios.append((t3 - t2) / (t2 - t1))
        day_ratios.append((t1 - t0 + t3 - t2) / (t2 - t0))  # snapshot + surfaces, with / without
        own.append(on.timings["forwards"] / (t1 - t0))
        iters.append(on.counts["deamericanise"]["iterations"])
    e_on, e_off = _errors(on, full_day["truth"]), _errors(off, full_day["truth"])
    n_opt = on.counts["options"]
    print(f"\nfull SPY day {DAY}: {n_opt} options, {on.counts['expiries']} expiries; {ROUNDS} rounds")
    print(
        f"surfaces stage with / without de-Americanisation: {statistics.median(ratios):.2f}x "
        f"(rounds {', '.join(f'{r:.2f}' for r in ratios)}); forwards stage (de-Americanisation included) / "
        "the snapshot: "
        f"{statistics.median(own):.2f}x; snapshot + surfaces with / without: "
        f"{statistics.median(day_ratios):.2f}x; iterations {iters}; "
        f"{on.counts['deamericanise']['quotes_with_premium']} quotes with a premium"
    )
    for label, e in (("de-Americanised", e_on), ("American quotes as they are", e_off)):
        fb = e["forward_bp"]
        print(
            f"{label}: forward error median {fb[0]:.3f} bp, p95 {fb[1]:.2f} bp "
            f"({fb[2]} of {fb[3]} expiries); "
            + "; ".join(f"{n} {e[n][0]:.3f} / {e[n][1]:.2f} ({e[n][2]})" for n, _, _ in BUCKETS)
            + f"; fitted vols {e['vol_used'][0]:.3f} / {e['vol_used'][1]:.3f} vol points; "
            f"ITM mid vols {e['itm_mid_vol'][0]:.3f} / {e['itm_mid_vol'][1]:.3f}"
        )
    assert on.valid and off.valid
    assert e_on["forward_bp"][0] < 1.0
    assert e_on["vol_used"][0] < 0.5 and e_on["vol_used"][1] < 2.0
