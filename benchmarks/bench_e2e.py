"""End to end: ``volfast build`` (snapshot -> forwards -> vols -> SVI -> grids) over full-scale synthetic
days, 1 worker against 2 workers, and the do-it-yourself pandas / py_vollib_vectorized / scipy pipeline a
researcher would write, timed in the same run.

Run:  python -m pytest benchmarks/bench_e2e.py --benchmark-enable -s -p no:cacheprovider
      (the issue's synthetic year: generating its 252 days takes ~40 min of one core, once, 17 GB;
      VOLFAST_E2E_DAYS=40 for a quicker look: fewer days weigh the pool's start and tail more)

Environment:
    VOLFAST_E2E_DATA      day cache (default ~/.cache/volfast/e2e-year): ``volfast synth --scale full``,
                          seed 7 from 2024-01-02, generated once (a marker file records what is there)
    VOLFAST_E2E_DAYS      days built per round (default 252, a year)
    VOLFAST_E2E_DIY_DAYS  days the do-it-yourself pipeline runs on per round (default 2)
    VOLFAST_E2E_ROUNDS    interleaved rounds (default 2); medians over rounds are reported
    VOLFAST_E2E_CACHE     ``cold`` (default): each build's input files are evicted from the page cache first,
                          as a year (12.6 GB of mbp-1) does not stay in memory; ``warm``: read through first
    VOLFAST_E2E_RESULTS   write the results section into this Markdown file (e.g. benchmarks/RESULTS.md)

Each round builds every day into a fresh output folder with :func:`volfast.pipeline.run_build` and the local
executor, first with 1 worker then with 2 (``threads_per_worker = 1`` both times, so the speed-up is that of
the process pool, not of in-day threads), then runs the do-it-yourself pipeline on the sample days. The
Numba cache is warmed before the first round. Throughput counts from the first day's start in any worker to
the last day's end (the build's own warm-up and the pool's start-up are reported apart). The per-stage
profile comes from the day records and the surfaces manifests (``timings_s``) of the 1-worker builds.

Correctness first: no day may fail; every thin day of the truth (almost no option quotes) must be reported
invalid, and any other invalid day only for strike coverage (a calm day's quotes not reaching the
validity rule's log-moneyness range), the same days in every build; on the valid days volfast's SVI ATM
vols must lie within 0.5 vol points of the synthetic truth (SSVI theta) on every expiry of at least a
week, and the do-it-yourself ATM vols within 1.5 vol points of volfast's, so the comparison is like for
like.
Bars (issue 7): volfast >= 30x the do-it-yourself pipeline per day (median over rounds of the ratio of
the 2-worker build's seconds per day to the DIY's); speed-up from 1 to 2 workers >= 1.7x.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

import volfast
from volfast.bench.diy import diy_day, true_atm_vols, volfast_atm
from volfast.info import cpu_model
from volfast.pipeline import BuildConfig, run_build
from volfast.pipeline.tasks import DayTask, run_day, warmup

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = pytest.importorskip("pandas")
db = pytest.importorskip("databento")
pytest.importorskip("py_vollib_vectorized")
# DBNStore.from_file leaves its file handles to the garbage collector; databento's to_df uses a pandas
# keyword pandas 3 deprecates: both are databento's, not ours.
pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

START = dt.date(2024, 1, 2)
SEED = 7
N_DAYS = int(os.environ.get("VOLFAST_E2E_DAYS", "252"))
N_DIY = int(os.environ.get("VOLFAST_E2E_DIY_DAYS", "2"))
ROUNDS = int(os.environ.get("VOLFAST_E2E_ROUNDS", "2"))
CACHE = os.environ.get("VOLFAST_E2E_CACHE", "cold")  # page cache state of the inputs before each build
DATA = Path(os.environ.get("VOLFAST_E2E_DATA", Path.home() / ".cache" / "volfast" / "e2e-year"))
MARKER = "e2e-complete.json"
CUT, TZ, LOOKBACK_MIN = "15:48", "America/New_York", 10
MIN_EXPIRY_YEARS = 7 / 365  # ATM comparisons on expiries of at least a week
BAR_DIY, BAR_SPEEDUP = 30.0, 1.7
PROFILE = ("snapshot", "chains", "forwards", "vols", "svi", "validity", "grids", "tables", "write")


# -- data ------------------------------------------------------------------------------------------------
def ensure_data(root: Path = DATA, days: int = N_DAYS) -> list[dt.date]:
    """The first ``days`` trading days from START at ``--scale full`` (seed SEED) under ``root``, generated
    once; a marker written after the last file says what the folder holds."""
    from volfast.synth import generate_days
    from volfast.synth.config import SynthConfig

    cfg = SynthConfig.for_scale("full")
    want = {"start": START.isoformat(), "seed": SEED, "config": cfg.digest(), "volfast": volfast.__version__}
    marker = root / MARKER
    if marker.is_file():
        have = json.loads(marker.read_text())
        if {k: have.get(k) for k in want} == want and int(have.get("days", 0)) >= days:
            return [dt.date.fromisoformat(d) for d in have["dates"][:days]]
    root.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    t0 = time.perf_counter()
    res = generate_days(START, days, root, seed=SEED, config=cfg)
    dates = [r.date for r in res]
    doc = {**want, "days": days, "dates": [d.isoformat() for d in dates]}
    doc["generate_s"] = round(time.perf_counter() - t0, 1)
    marker.write_text(json.dumps(doc, indent=2) + "\n")
    return dates


def thin_days(root: Path, dates: list[dt.date]) -> set[dt.date]:
    """The synthetic truth's thin days (almost no option quotes: no surface can be built)."""
    out = set()
    for d in dates:
        st = pd.read_parquet(
            root / "truth" / f"date={d.isoformat()}" / "part-0.parquet", columns=["kind", "thin_day"]
        )
        if bool(st.loc[st["kind"] == "state", "thin_day"].iloc[0]):
            out.add(d)
    return out


# -- volfast -----------------------------------------------------------------------------------------------
def timed_run_day(task: DayTask) -> dict[str, Any]:
    """:func:`run_day` with wall-clock start and end (``time.time``: comparable across worker processes)."""
    t0 = time.time()
    rec = run_day(task)
    rec["t_start"], rec["t_end"] = t0, time.time()
    return rec


def set_page_cache(root: Path, dates: list[dt.date], state: str) -> None:
    """Put the days' input files in a known page-cache state before a build: ``cold`` evicts them
    (``posix_fadvise(DONTNEED)``: a year of data does not fit in memory, so a real rebuild reads from disk),
    ``warm`` reads them through once (only meaningful when they fit)."""
    tags = {d.strftime("%Y%m%d") for d in dates}
    for p in sorted(root.glob("*.dbn.zst")):
        if p.name.split(".")[0].rsplit("-", 1)[-1] not in tags:
            continue
        with open(p, "rb") as fh:
            if state == "cold":
                os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            else:
                while fh.read(1 << 24):
                    pass


def build(out: Path, dates: list[dt.date], workers: int) -> dict[str, Any]:
    """One build of ``dates`` into a fresh ``out``, the inputs in the CACHE state; wall times and records."""
    shutil.rmtree(out, ignore_errors=True)
    set_page_cache(DATA, dates, CACHE)
    cfg = BuildConfig().replace(executor={"kind": "local", "workers": workers, "threads_per_worker": 1})
    t0 = time.time()
    summary = run_build(DATA, out, config=cfg, dates=dates, progress=False, task_fn=timed_run_day)
    t1 = time.time()
    recs = summary.results
    # a thin synthetic day (almost no option quotes: SynthConfig.p_thin_day) is processed and reported invalid
    bad = [(r["date"], r["status"], r.get("error")) for r in recs if r["status"] not in ("ok", "invalid")]
    assert not bad, bad
    assert len(recs) == len(dates)
    first = min(r["t_start"] for r in recs)
    last = max(r["t_end"] for r in recs)
    return {
        "workers": workers,
        "wall_s": t1 - t0,
        "startup_s": first - t0,  # warm-up in the parent + pool start-up
        "steady_s": last - first,
        "days_per_min": 60.0 * len(recs) / (last - first),
        "records": recs,
        "executor": summary.executor,
        "invalid": {
            dt.date.fromisoformat(str(r["date"])): " | ".join(r.get("reasons") or [])
            for r in recs
            if r["status"] == "invalid"
        },
    }


def stage_profile(out: Path, records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Seconds per day for each PROFILE stage: the snapshot stage's (read, reduce, write), the surfaces
    stage's own timings, and ``write`` = the rest of the surfaces stage (read the snapshot, write tables)."""
    prof: dict[str, list[float]] = {s: [] for s in PROFILE}
    for r in records:
        prof["snapshot"].append(float(r["stages"]["snapshot"]["seconds"]))
        man = json.loads((out / "days" / f"date={r['date']}" / "_manifest.json").read_text())
        tim = {k: float(v) for k, v in man["timings_s"].items()}
        for s in PROFILE[1:-1]:
            prof[s].append(tim.get(s, 0.0))
        prof["write"].append(max(0.0, float(r["stages"]["surfaces"]["seconds"]) - sum(tim.values())))
    return prof


# -- the benchmark ---------------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    import numba
    import py_vollib_vectorized
    import scipy

    return {
        "python": platform.python_version(),
        "volfast": volfast.__version__,
        "numpy": np.__version__,
        "numba": numba.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "databento": db.__version__,
        "py_vollib_vectorized": getattr(py_vollib_vectorized, "__version__", "0.1.1"),
    }


def _sources_stamp() -> float:
    """Newest modification time of volfast's Python sources: an edit during the run (this is a shared
    checkout) invalidates Numba's cache, and the workers then time a recompile."""
    root = Path(volfast.__file__).parent
    return max(p.stat().st_mtime for p in root.rglob("*.py"))


def _load() -> str:
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load average n/a"


def test_e2e_build(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    if not pytestconfig.getoption("benchmark_enable", False):
        pytest.skip("minutes long: run with --benchmark-enable")
    dates = ensure_data()
    thin = thin_days(DATA, dates)
    diy_dates: list[dt.date] = []  # valid days spread over the period, chosen after the first build
    cfg = BuildConfig()
    t0 = time.perf_counter()
    warmup(cfg)  # Numba cache files for the workers; never timed
    warm_s = time.perf_counter() - t0
    load_before = _load()
    stamp = _sources_stamp()

    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    diy_s: list[float] = []
    ratios: list[float] = []
    speedups: list[float] = []
    diy_out: dict[dt.date, pd.DataFrame] = {}
    for rnd in range(ROUNDS):
        for w in (1, 2) if rnd % 2 == 0 else (2, 1):  # alternate the order: drift hits both
            runs[w].append(build(tmp_path / f"w{w}-r{rnd}", dates, w))
        if not diy_dates:
            valid = [d for d in dates if d not in runs[1][0]["invalid"]]
            diy_dates = valid[:: max(1, len(valid) // max(1, N_DIY))][:N_DIY]
        per_day = []
        for d in diy_dates:
            set_page_cache(DATA, [d], CACHE)  # the same state as volfast's inputs
            t = time.perf_counter()
            diy_out[d] = diy_day(DATA, d)
            per_day.append(time.perf_counter() - t)
        diy_s.append(statistics.median(per_day))
        vf_day = 60.0 / runs[2][-1]["days_per_min"]
        ratios.append(diy_s[-1] / vf_day)
        speedups.append(runs[2][-1]["days_per_min"] / runs[1][-1]["days_per_min"])
        print(
            f"\nround {rnd}: 1 worker {runs[1][-1]['days_per_min']:.1f} days/min, "
            f"2 workers {runs[2][-1]['days_per_min']:.1f} days/min (x{speedups[-1]:.2f}), "
            f"DIY {diy_s[-1]:.1f} s/day (volfast x{ratios[-1]:.0f})"
        )

    # correctness: volfast against the truth, the DIY against volfast
    out1 = tmp_path / f"w1-r{ROUNDS - 1}"
    vf_err, diy_gap = [], []
    invalid = runs[1][0]["invalid"]
    for w in (1, 2):  # every build reports the same invalid days: every thin day, others only for coverage
        assert all(set(r["invalid"]) == set(invalid) for r in runs[w]), [
            sorted(r["invalid"]) for r in runs[w]
        ]
    assert thin <= set(invalid), (sorted(thin), sorted(invalid))
    for d, why in invalid.items():
        assert d in thin or all("ln(K/F)" in part for part in why.split(" | ")[1:]), (d, why)
    for d in valid:
        m = volfast_atm(out1, d).merge(true_atm_vols(DATA, d), on="expiration")
        m = m[m["expiry_years"] >= MIN_EXPIRY_YEARS]
        assert len(m) >= 5, (d, len(m))
        vf_err.append(float(np.max(np.abs(m["vf_atm"] - m["true_atm"]))) * 100)
        if d in diy_out:
            g = diy_out[d].merge(volfast_atm(out1, d), on="expiration")
            g = g[g["expiry_years"] >= MIN_EXPIRY_YEARS]
            assert len(g) >= 5, (d, len(g))
            diy_gap.append(float(np.max(np.abs(g["atm_vol"] - g["vf_atm"]))) * 100)

    prof_days = [stage_profile(tmp_path / f"w1-r{r}", runs[1][r]["records"]) for r in range(ROUNDS)]
    prof = {s: statistics.median([float(np.mean(p[s])) for p in prof_days]) for s in PROFILE}
    total = sum(prof.values())
    med = {w: statistics.median(x["days_per_min"] for x in runs[w]) for w in (1, 2)}
    res = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "versions": _versions(),
        "days": len(dates),
        "cache": CACHE,
        "thin_days": len(thin),
        "invalid_days": len(invalid),
        "first_day": dates[0].isoformat(),
        "last_day": dates[-1].isoformat(),
        "rounds": ROUNDS,
        "options_per_day": int(
            np.median([r["stages"]["surfaces"]["counts"].get("options", 0) for r in runs[1][-1]["records"]])
        ),
        "days_per_min": med,
        "startup_s": {w: statistics.median(x["startup_s"] for x in runs[w]) for w in (1, 2)},
        "wall_s": {w: statistics.median(x["wall_s"] for x in runs[w]) for w in (1, 2)},
        "speedup": statistics.median(speedups),
        "speedups": speedups,
        "diy_days": [d.isoformat() for d in diy_dates],
        "diy_s_per_day": statistics.median(diy_s),
        "volfast_s_per_day": 60.0 / med[2],
        "diy_ratio": statistics.median(ratios),
        "diy_ratio_1w": statistics.median(diy_s) * med[1] / 60.0,
        "diy_ratios": ratios,
        "vf_atm_err_max": max(vf_err),
        "diy_atm_gap_max": max(diy_gap),
        "warmup_s": warm_s,
        "profile": prof,
        "profile_total": total,
        "load": f"{load_before} before, {_load()} after",
        "sources_changed": _sources_stamp() != stamp,
    }
    if res["sources_changed"]:
        print("WARNING: volfast's sources changed during the run: timings include Numba recompiles")
    print(json.dumps(res, indent=1, default=str))
    print(f"\nper-day profile, 1 worker ({len(dates)} days, median over {ROUNDS} rounds of the mean):")
    for s in PROFILE:
        print(f"  {s:9} {prof[s] * 1e3:9.1f} ms  {prof[s] / total:6.1%}")
    if os.environ.get("VOLFAST_E2E_RESULTS"):
        write_results(Path(os.environ["VOLFAST_E2E_RESULTS"]), res)

    assert max(vf_err) < 0.5, vf_err  # vol points, expiries of a week or more
    assert max(diy_gap) < 1.5, diy_gap  # the DIY answers the same question
    assert res["diy_ratio"] >= BAR_DIY, res["diy_ratio"]
    assert res["speedup"] >= BAR_SPEEDUP, res["speedup"]


# -- RESULTS.md -------------------------------------------------------------------------------------------
SECTION = "## End to end: `volfast build` (benchmarks/bench_e2e.py)"


def write_results(path: Path, r: dict[str, Any]) -> None:
    """Replace (or append) this benchmark's section of ``path``; other sections are left as they are."""
    v = r["versions"]
    lines = [
        SECTION,
        "",
        f"Command: `VOLFAST_E2E_ROUNDS={r['rounds']} VOLFAST_E2E_DAYS={r['days']} "
        f"VOLFAST_E2E_CACHE={r['cache']} "
        "VOLFAST_E2E_RESULTS=benchmarks/RESULTS.md python -m pytest benchmarks/bench_e2e.py "
        "--benchmark-enable -s -p no:cacheprovider`.",
        "",
        f"- Hardware: {r['cpu']}, {r['cores']} cores; {r['load']}.",
        *(
            ["- WARNING: volfast's sources changed during this run (Numba recompiled in the workers)."]
            if r["sources_changed"]
            else []
        ),
        "- Versions: " + ", ".join(f"{k} {x}" for k, x in v.items()) + ".",
        f"- Data: {r['days']} synthetic days at `--scale full` ({r['first_day']} to {r['last_day']}, seed "
        f"{SEED}, about {r['options_per_day']:,} options per day; {r['invalid_days']} days reported invalid: "
        f"the truth's {r['thin_days']} thin days and {r['invalid_days'] - r['thin_days']} calm days whose "
        f"quotes do not span the validity rule's log-moneyness range); {r['rounds']} interleaved rounds, "
        "medians.",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| days/min, local executor, 1 worker x 1 thread | {r['days_per_min'][1]:.1f} |",
        f"| days/min, local executor, 2 workers x 1 thread | {r['days_per_min'][2]:.1f} |",
        f"| speed-up 1 -> 2 workers (bar >= {BAR_SPEEDUP}) | {r['speedup']:.2f}x "
        f"(rounds: {', '.join(f'{x:.2f}' for x in r['speedups'])}) |",
        f"| volfast seconds per day, 2 workers | {r['volfast_s_per_day']:.2f} |",
        f"| do-it-yourself seconds per day ({len(r['diy_days'])} days) | {r['diy_s_per_day']:.1f} |",
        f"| volfast vs do-it-yourself per day (bar >= {BAR_DIY:.0f}x) | {r['diy_ratio']:.0f}x "
        f"(rounds: {', '.join(f'{x:.0f}' for x in r['diy_ratios'])}) |",
        f"| volfast 1 worker vs do-it-yourself per day (one core each) | {r['diy_ratio_1w']:.1f}x |",
        f"| build start-up (warm-up + pool), 1 / 2 workers | {r['startup_s'][1]:.1f} / "
        f"{r['startup_s'][2]:.1f} s |",
        f"| volfast ATM vol vs truth, worst expiry >= 1 week | {r['vf_atm_err_max']:.2f} vol points |",
        f"| do-it-yourself ATM vol vs volfast, worst expiry | {r['diy_atm_gap_max']:.2f} vol points |",
        "",
        "Days/min count from the first day's start to the last day's end (start-up apart). The 1 -> 2 "
        "speed-up is the process pool's: both runs use one thread per worker"
        + (
            "; every build starts with its inputs evicted from the page cache, so it includes reading "
            "them from disk, which one worker waits for and two overlap with each other's compute."
            if r["cache"] == "cold"
            else "; every build starts with its inputs in the page cache."
        ),
        "",
        "Where a day's time goes (1 worker, mean seconds per day):",
        "",
        "| stage | ms per day | share |",
        "| --- | ---: | ---: |",
    ]
    for s in PROFILE:
        lines.append(f"| {s} | {r['profile'][s] * 1e3:.0f} | {r['profile'][s] / r['profile_total']:.1%} |")
    lines.append(f"| total | {r['profile_total'] * 1e3:.0f} | 100% |")
    lines += [
        "",
        "`snapshot`: the whole snapshot stage (decode the .dbn.zst files, C++ reduce, write Parquet). "
        "`chains` ... `tables`: `volfast.surface.surface_day`'s own timings. `write`: the rest of the "
        "surfaces stage (read the snapshot, write five Parquet files and the manifest).",
        "",
    ]
    text = path.read_text() if path.is_file() else "# Benchmark results\n\n"
    start = text.find(SECTION)
    if start >= 0:
        nxt = text.find("\n## ", start + len(SECTION))
        extra = _keep_notes(text[start : nxt if nxt >= 0 else len(text)])
        text = text[:start] + "\n".join(lines) + extra + (text[nxt + 1 :] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines)
    path.write_text(text)


NOTES = "### Notes (bench_e2e)"


def _keep_notes(old: str) -> str:
    """Hand-written notes under the section survive a re-run."""
    i = old.find(NOTES)
    return "\n" + old[i:].rstrip("\n") + "\n\n" if i >= 0 else "\n"
