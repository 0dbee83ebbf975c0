"""``volfast bench day``: one synthetic ES day from DBN files to fitted SVI slices, ``volfast build``
(in this process, one worker) against the do-it-yourself pipeline of :mod:`volfast.bench.diy` (databento
client, pandas, py_vollib_vectorized, scipy), timed on the same files.

Items are days. The error is the largest |SVI ATM vol - true ATM vol| of the synthetic truth over the
expiries of at least a week that both pipelines fitted.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from volfast.bench._common import Row, Suite, best_time, dist_version
from volfast.bench.snapshot import DAY, scale_for

MIN_EXPIRY_YEARS = 7 / 365


def run(quotes: int, threads: int, progress: Callable[[str], None] | None = None) -> Suite:
    from volfast.bench.diy import diy_day, true_atm_vols, volfast_atm
    from volfast.pipeline import BuildConfig, run_build
    from volfast.pipeline.tasks import warmup
    from volfast.synth import generate_days

    say = progress or (lambda _msg: None)
    s = Suite("day", "day")
    scale = scale_for(quotes)
    pd = s.peer("pandas")
    missing = [m for m in ("databento", "py_vollib_vectorized", "scipy") if s.peer(m) is None]
    with tempfile.TemporaryDirectory(prefix="volfast-bench-") as tmp:
        root = Path(tmp)
        data = root / "data"
        say(f"synthetic day ({scale})")
        generate_days(DAY, 1, data, seed=5, scale=scale)
        cfg = BuildConfig().replace(
            executor={"kind": "serial", "workers": 1, "threads_per_worker": max(1, threads)}
        )
        say("volfast build (warm-up)")
        warmup(cfg)
        runs = [0]

        def build() -> Path:
            out = root / f"out{runs[0]}"
            runs[0] += 1
            shutil.rmtree(out, ignore_errors=True)
            run_build(data, out, config=cfg, dates=[DAY], progress=False)
            return out

        say("volfast build")
        t_vf, out = best_time(build, repeats=2, warmup=False)
        truth = true_atm_vols(data, DAY) if pd is not None else None
        err_vf: float | None = None
        if truth is not None:
            m = volfast_atm(out, DAY).merge(truth, on="expiration")
            m = m[m["expiry_years"] >= MIN_EXPIRY_YEARS]
            err_vf = float(np.max(np.abs(m["vf_atm"] - m["true_atm"]))) if len(m) else float("nan")
        s.rows.append(
            Row(
                "day",
                "volfast",
                dist_version("volfast"),
                t_vf * 1e9,
                err_vf,
                max(1, threads),
                1,
                f"volfast build, serial executor, {scale} day",
            )
        )
        if pd is not None and not missing:
            say("do-it-yourself pipeline")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t_diy, diy = best_time(
                    lambda: diy_day(data, dt.date.fromordinal(DAY.toordinal())), repeats=1, warmup=False
                )
            m = diy.merge(truth, on="expiration", suffixes=("", "_truth"))
            m = m[m["expiry_years"] >= MIN_EXPIRY_YEARS]
            err = float(np.max(np.abs(m["atm_vol"] - m["true_atm"]))) if len(m) else float("nan")
            s.rows.append(
                Row(
                    "day",
                    "do-it-yourself",
                    f"pandas {dist_version('pandas')}, py_vollib_vectorized "
                    f"{dist_version('py_vollib_vectorized')}, scipy {dist_version('scipy')}",
                    t_diy * 1e9,
                    err,
                    1,
                    1,
                    "databento to_df + pandas + py_vollib_vectorized + scipy least_squares",
                )
            )
    s.notes.append(
        f"day: one synthetic ES day (--scale {scale}); max_abs_err = largest |ATM vol - true ATM vol| over "
        "expiries of at least a week"
    )
    return s
