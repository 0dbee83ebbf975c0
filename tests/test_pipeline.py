"""volfast build: config, per-day tasks and resume, executors (serial, local pool, Dask), faults."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import volfast
from volfast.cli import main as cli
from volfast.io.dbn import file_sha256
from volfast.pipeline import (
    BuildConfig,
    ConfigError,
    DayTask,
    StageUnavailable,
    day_seed,
    load_config,
    run_build,
    run_day,
    snapshot_folder,
    surfaces_stage,
)
from volfast.pipeline.executors import THREAD_ENV_VARS

DAYS = [dt.date(2024, 3, 4), dt.date(2024, 3, 5), dt.date(2024, 3, 6), dt.date(2024, 3, 7)]
SNAP = BuildConfig(stages=("snapshot",))


def serial(cfg: BuildConfig = SNAP, **ex: object) -> BuildConfig:
    return cfg.replace(executor={"kind": "serial", **ex})


@pytest.fixture(scope="module")
def synth4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from volfast.synth import generate_days

    out = tmp_path_factory.mktemp("synth4")
    generate_days(DAYS[0], len(DAYS), out, seed=7, scale="small")
    return out


@pytest.fixture()
def data(synth4: Path, tmp_path: Path) -> Path:
    """A private copy of the four synthetic days (tests damage their inputs)."""
    d = tmp_path / "dbn"
    d.mkdir()
    for p in synth4.glob("*.dbn.zst"):
        shutil.copy2(p, d / p.name)
    return d


def mbp(data: Path, day: dt.date) -> Path:
    return data / f"glbx-mdp3-{day:%Y%m%d}.mbp-1.dbn.zst"


def tree(out: Path) -> dict[str, float]:
    """Every file under ``out/snapshots`` with its mtime (to see what a run rewrote)."""
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted((out / "snapshots").rglob("*"))}


def no_partial(out: Path, day: dt.date) -> None:
    """No data file of ``day`` is left, and a manifest left there does not claim a complete day."""
    folder = snapshot_folder(out, day)
    left = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert left in ([], ["_manifest.json"]), f"{folder} holds {left}"
    if left:
        m = json.loads((folder / "_manifest.json").read_text())
        assert m["status"] in ("running", "failed") and m["outputs"] == [], m


# -- config ---------------------------------------------------------------------------------------------
def test_config_from_toml_and_its_errors(tmp_path: Path) -> None:
    p = tmp_path / "b.toml"
    p.write_text(
        'seed = 5\nstages = ["snapshot"]\n[snapshot]\ncut = "15:30"\nchunk_records = 1024\n'
        '[surfaces]\nmax_rmse = 0.01\n[executor]\nkind = "dask"\nworkers = 2\nretries = 1\n'
    )
    c = load_config(p)
    assert (c.seed, c.stages, c.snapshot.cut, c.snapshot.chunk_records) == (5, ("snapshot",), "15:30", 1024)
    assert c.surfaces_params() == {"max_rmse": 0.01}
    assert (c.executor.kind, c.executor.workers, c.executor.retries) == ("dask", 2, 1)
    assert load_config(None) == BuildConfig()
    # The executor is not part of what a day depends on; the seed and the stage parameters are.
    assert c.stage_config("snapshot") == c.replace(executor={"workers": 7}).stage_config("snapshot")
    assert c.stage_config("snapshot") != c.replace(seed=6).stage_config("snapshot")
    assert c.stage_config("surfaces")["surfaces"] == {"max_rmse": 0.01}

    bad = {
        "[snapshot]\nkut = 1\n": r"b\.toml: unknown key\(s\) kut in \[snapshot\]",
        "colour = 1\n": r"unknown key\(s\) colour",
        "[snapshot]\nchunk_records = '1'\n": r"chunk_records must be int",
        'stages = ["surfaces", "snapshot"]\n': r"pipeline order",
        'stages = ["grids"]\n': r"unknown stage\(s\) 'grids'",
        '[executor]\nkind = "mpi"\n': r"executor.kind must be one of",
        "[snapshot\n": r"invalid TOML",
        '[executor]\nscheduler = "tcp://x:1"\n': r"scheduler is set",
    }
    for text, pattern in bad.items():
        p.write_text(text)
        with pytest.raises(ConfigError, match=pattern):
            load_config(p)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")


def test_day_seed_depends_on_seed_and_date_only() -> None:
    a = day_seed(1, DAYS[0])
    assert a == day_seed(1, DAYS[0]) and 0 <= a < 2**63
    assert len({a, day_seed(2, DAYS[0]), day_seed(1, DAYS[1])}) == 3


def test_surfaces_stage_missing_is_a_clear_error_before_any_output(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import volfast.pipeline.tasks as tasks

    monkeypatch.setattr(tasks, "surfaces_stage", lambda: None)  # a volfast without volfast.surface
    out = tmp_path / "out"
    with pytest.raises(StageUnavailable, match="--stages snapshot"):
        run_build(data, out, config=serial(BuildConfig()), progress=False)
    assert not out.exists()


# -- the task and resume ---------------------------------------------------------------------------------
def test_build_writes_the_snapshot_of_each_day_with_a_manifest(data: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    s = run_build(data, out, config=serial(), progress=False)
    assert [r["status"] for r in s.results] == ["ok"] * 4 and not s.failed
    for day in DAYS:
        folder = snapshot_folder(out, day)
        got = pq.read_table(folder / "part-0.parquet")
        want = volfast.take_snapshot(data=data, date=day).table  # the stage is the public function, unchanged
        assert got.schema.equals(want.schema, check_metadata=True)
        assert got.to_pandas().equals(want.to_pandas())  # NaN-aware, unlike Table.equals
        m = json.loads((folder / "_manifest.json").read_text())
        assert m["stage"] == "snapshot" and m["volfast_version"] == volfast.__version__
        assert m["build"]["seed"] == day_seed(0, day) and m["build"]["valid"]
        assert {i["name"]: i["sha256"] for i in m["inputs"]} == {
            p.name: file_sha256(p)
            for p in (mbp(data, day), data / mbp(data, day).name.replace("mbp-1", "definition"))
        }
        assert m["outputs"][0]["rows"] == got.num_rows > 100
    saved = json.loads((out / "build-config.json").read_text())
    assert saved["stages"] == ["snapshot"] and saved["snapshot"]["cut"] == "15:48"
    summary = json.loads((out / "build-summary.json").read_text())
    assert summary["counts"] == {"ok": 4, "skipped": 0, "invalid": 0, "failed": 0}


def test_rerun_skips_matching_days_and_redoes_changed_ones(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_build(data, out, config=serial(), progress=False)
    before = tree(out)
    s = run_build(data, out, config=serial(), progress=False)
    assert [r["status"] for r in s.results] == ["skipped"] * 4
    assert tree(out) == before  # nothing rewritten

    # An input that changed (size) redoes its day only.
    with open(mbp(data, DAYS[2]), "ab") as fh:
        fh.write(b"\0" * 0)  # same size: still current
    p = data / f"glbx-mdp3-{DAYS[2]:%Y%m%d}.definition.dbn.zst"
    # the same records compressed anew: another size (files are assigned to days by their metadata, so a
    # copy of another day's file would change that other day)
    import zstandard

    with open(p, "rb") as fh:
        raw = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read()
    size = p.stat().st_size
    p.write_bytes(zstandard.ZstdCompressor(level=19).compress(raw))
    assert p.stat().st_size != size
    s = run_build(data, out, config=serial(), progress=False)
    assert [r["status"] for r in s.results] == ["skipped", "skipped", "ok", "skipped"]

    # A config change redoes every day; --force too.
    s = run_build(data, out, config=serial(SNAP.replace(snapshot={"cut": "15:30"})), progress=False)
    assert [r["status"] for r in s.results] == ["ok"] * 4
    s = run_build(
        data, out, config=serial(SNAP.replace(snapshot={"cut": "15:30"})), progress=False, force=True
    )
    assert [r["status"] for r in s.results] == ["ok"] * 4
    # A partition whose file was damaged after the run is not trusted.
    part = snapshot_folder(out, DAYS[0]) / "part-0.parquet"
    part.write_bytes(part.read_bytes()[:100])
    s = run_build(data, out, config=serial(SNAP.replace(snapshot={"cut": "15:30"})), progress=False)
    assert [r["status"] for r in s.results] == ["ok", "skipped", "skipped", "skipped"]


def test_date_range_and_explicit_days(data: Path, tmp_path: Path) -> None:
    from volfast.pipeline import BuildError

    out = tmp_path / "out"
    s = run_build(data, out, config=serial(), start=DAYS[1], end=DAYS[2], progress=False)
    assert [r["date"] for r in s.results] == [DAYS[1].isoformat(), DAYS[2].isoformat()]
    s = run_build(data, out, config=serial(), dates=[DAYS[3]], progress=False)
    assert [r["date"] for r in s.results] == [DAYS[3].isoformat()]
    with pytest.raises(BuildError, match="no DBN files for 2024-03-08"):
        run_build(data, out, config=serial(), dates=[dt.date(2024, 3, 8)], progress=False)
    with pytest.raises(BuildError, match="no day between"):
        run_build(data, out, config=serial(), start=dt.date(2025, 1, 1), progress=False)
    with pytest.raises(BuildError, match="after"):
        run_build(data, out, config=serial(), start=DAYS[2], end=DAYS[1], progress=False)
    with pytest.raises(BuildError, match="no readable DBN file"):
        run_build(tmp_path / "out", out, config=serial(), progress=False)


# -- bad input and faults ------------------------------------------------------------------------------
def test_corrupt_file_mid_range_fails_that_day_only_and_rerun_completes_it(
    data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    bad = mbp(data, DAYS[1])
    good = bad.read_bytes()
    bad.write_bytes(good[: len(good) // 2])  # a truncated download
    s = run_build(data, out, config=serial(), progress=False, command=["volfast", "build", "--data", "D"])
    assert [r["status"] for r in s.results] == ["ok", "failed", "ok", "ok"]
    f = s.failed[0]
    assert f["error_type"] == "DBNReadError" and f["file"] == str(bad) and "truncated" in f["error"]
    no_partial(out, DAYS[1])
    assert s.rerun() == "volfast build --data D --date 2024-03-05"
    bad.write_bytes(good)
    s = run_build(data, out, config=serial(), progress=False)
    assert [r["status"] for r in s.results] == ["skipped", "ok", "skipped", "skipped"]


def _rewrite_without_options(path: Path, option_ids: set[int]) -> None:
    """The same DBN file with every option's records removed (header kept)."""
    import struct

    import numpy as np
    import zstandard

    raw = zstandard.ZstdDecompressor().stream_reader(path.read_bytes()).read()
    hlen = 8 + struct.unpack_from("<I", raw, 4)[0]
    from volfast.io.dbn import DBNFile

    recs = np.concatenate(list(DBNFile(path).iter_chunks()))
    keep = recs[~np.isin(recs["instrument_id"], list(option_ids))]
    path.write_bytes(zstandard.ZstdCompressor(level=1).compress(raw[:hlen] + keep.tobytes()))


def test_day_without_options_is_invalid_with_its_reason_and_stays_done(data: Path, tmp_path: Path) -> None:
    import numpy as np

    t = volfast.take_snapshot(data=data, date=DAYS[2]).table
    cls = np.asarray(t.column("instrument_class").to_pylist(), dtype=object)
    ids = set(np.asarray(t.column("instrument_id"))[np.isin(cls, ["C", "P"])].tolist())
    assert len(ids) > 100
    _rewrite_without_options(mbp(data, DAYS[2]), ids)
    out = tmp_path / "out"
    s = run_build(data, out, config=serial(), progress=False)
    assert [r["status"] for r in s.results] == ["ok", "ok", "invalid", "ok"]
    import re

    (why,) = s.invalid[0]["reasons"]
    assert re.fullmatch(r"no options in the quote file \(\d+ instruments, none a call or a put\)", why)
    before = tree(out)
    s = run_build(data, out, config=serial(), progress=False)  # invalid is a final answer, not redone
    assert [r["status"] for r in s.results] == ["skipped", "skipped", "invalid", "skipped"]
    assert s.invalid[0]["skipped"] and "none a call or a put" in s.invalid[0]["reasons"][0]
    assert tree(out) == before


def test_full_disk_leaves_no_partial_output_and_rerun_completes(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    real = pq.write_table

    def full_disk(table, where, **kw):  # write part of the file, then fail as a full disk does
        if "2024-03-06" in str(where):
            Path(where).write_bytes(b"PAR1" + b"\0" * 1000)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", full_disk)
    out = tmp_path / "out"
    s = run_build(data, out, config=serial(), progress=False)
    assert [r["status"] for r in s.results] == ["ok", "ok", "failed", "ok"]
    f = s.failed[0]
    assert f["error_type"] == "OutputWriteError" and "No space left on device" in f["error"]
    assert f["file"] == str(snapshot_folder(out, DAYS[2]) / "part-0.parquet")
    no_partial(out, DAYS[2])
    monkeypatch.setattr(pq, "write_table", real)
    s = run_build(data, out, config=serial(), progress=False)
    assert [r["status"] for r in s.results] == ["skipped", "skipped", "ok", "skipped"]


def test_leftover_temporaries_of_a_killed_worker_are_cleaned(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    folder = snapshot_folder(out, DAYS[0])
    folder.mkdir(parents=True)
    (folder / ".part-0.parquet.abc123.tmp").write_bytes(b"half")
    r = run_day(DayTask(date=DAYS[0], data=str(data), out=str(out), config=SNAP))
    assert r["status"] == "ok"
    assert sorted(p.name for p in folder.iterdir()) == ["_manifest.json", "part-0.parquet"]


def test_cli_build_summary_exit_code_and_rerun_command(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    bad = mbp(data, DAYS[3])
    bad.write_bytes(b"not a dbn file")
    args = [
        "build",
        "--data",
        str(data),
        "--out",
        str(out),
        "--executor",
        "serial",
        "--stages",
        "snapshot",
        "--quiet",
    ]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1, r.output
    summary = json.loads((out / "build-summary.json").read_text())  # the file, not the console text
    assert summary["counts"] == {"ok": 3, "skipped": 0, "invalid": 0, "failed": 1}
    failed = [d for d in summary["days"] if d["status"] == "failed"]
    assert [d["date"] for d in failed] == ["2024-03-07"] and failed[0]["file"] == str(bad)
    assert summary["rerun"].endswith("--date 2024-03-07")  # the re-run command, in the summary file
    r = CliRunner().invoke(cli, [*args[:-1], "--from", "2024-03-04", "--to", "2024-03-06"])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "build-summary.json").read_text())
    assert summary["counts"] == {"ok": 0, "skipped": 3, "invalid": 0, "failed": 0}
    r = CliRunner().invoke(
        cli, ["build", "--data", str(data), "--out", str(out), "--config", str(tmp_path / "x")]
    )
    assert r.exit_code == 2 and "config file not found" in r.output  # a usage error (issue 14)
    assert r.output.startswith("Error: ") and "Traceback" not in r.output


# -- executors -----------------------------------------------------------------------------------------
def probe_threads(task: DayTask) -> dict:
    """run_day plus the thread settings the worker process sees (runs in the worker)."""
    import numba

    r = run_day(task)
    r["env"] = {
        k: os.environ.get(k)
        for k in (
            "VOLFAST_NUM_THREADS",
            "NUMBA_NUM_THREADS",
            "OMP_NUM_THREADS",
            "OPENBLAS_NUM_THREADS",
            "MKL_NUM_THREADS",
        )
    }
    r["numba_threads"] = numba.get_num_threads()
    return r


def kill_some(task: DayTask) -> dict:
    """Kills its own worker process: always on the 3rd day, on the first attempt only on the 2nd day."""
    marker = Path(task.out) / f"attempt-{task.date}"
    first = not marker.exists()
    marker.touch()
    if task.date == DAYS[2] or (task.date == DAYS[1] and first):
        os.kill(os.getpid(), signal.SIGKILL)
    return run_day(task)


def test_local_pool_sets_thread_limits_per_worker(data: Path, tmp_path: Path) -> None:
    cfg = SNAP.replace(executor={"kind": "local", "workers": 2, "threads_per_worker": 1})
    before = {k: os.environ.get(k) for k in THREAD_ENV_VARS}
    s = run_build(data, tmp_path / "out", config=cfg, progress=False, task_fn=probe_threads)
    assert [r["status"] for r in s.results] == ["ok"] * 4
    assert len({r["worker"] for r in s.results}) == 2
    for r in s.results:
        assert set(r["env"].values()) == {"1"} and r["numba_threads"] == 1
    assert s.executor == {"kind": "local", "workers": 2, "threads_per_worker": 1}
    assert {k: os.environ.get(k) for k in THREAD_ENV_VARS} == before  # the parent's environment is restored


@pytest.mark.slow
def test_local_pool_survives_killed_workers(data: Path, tmp_path: Path) -> None:
    cfg = SNAP.replace(executor={"kind": "local", "workers": 1, "retries": 1})
    out = tmp_path / "out"
    s = run_build(data, out, config=cfg, progress=False, task_fn=kill_some)
    assert [r["status"] for r in s.results] == ["ok", "ok", "failed", "ok"]
    assert s.failed[0]["error_type"] == "WorkerDied" and "2 attempt(s)" in s.failed[0]["error"]
    no_partial(out, DAYS[2])
    s = run_build(data, out, config=cfg.replace(executor={"kind": "serial"}), progress=False)
    assert [r["status"] for r in s.results] == ["skipped", "skipped", "ok", "skipped"]


@pytest.mark.slow
def test_dask_local_cluster_same_outputs_and_worker_loss(data: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    import pyarrow.parquet as pq

    ref = tmp_path / "ref"
    run_build(data, ref, config=serial(), progress=False)
    out = tmp_path / "out"
    cfg = SNAP.replace(executor={"kind": "dask", "workers": 2, "retries": 1})
    t0 = time.monotonic()
    before = {k: os.environ.get(k) for k in THREAD_ENV_VARS}
    s = run_build(data, out, config=cfg, progress=False, task_fn=kill_some)
    assert time.monotonic() - t0 < 60
    assert {k: os.environ.get(k) for k in THREAD_ENV_VARS} == before  # dask's Nanny wrote into it
    # Day 2 lost its worker once and was retried elsewhere; day 3 kills every worker it lands on. A day
    # whose worker dies after its output was complete (before dask gathered the result) is rerun and then
    # reuses that complete output: "skipped" is as right as "ok" there (its files are compared below).
    st = [r["status"] for r in s.results]
    assert st[2] == "failed" and all(x in ("ok", "skipped") for x in st[:2] + st[3:]), st
    assert st[0] == "ok" or st[1] == "ok" or st[3] == "ok", st
    assert s.failed[0]["error_type"] == "WorkerDied"
    no_partial(out, DAYS[2])
    for d in (DAYS[0], DAYS[1], DAYS[3]):
        a = pq.read_table(snapshot_folder(out, d) / "part-0.parquet").to_pandas()
        assert a.equals(pq.read_table(snapshot_folder(ref, d) / "part-0.parquet").to_pandas())
    s = run_build(data, out, config=serial(), progress=False)
    assert [r["status"] for r in s.results] == ["skipped", "skipped", "ok", "skipped"]


SLOW_DAY = """
import sys, time
from volfast.pipeline import BuildConfig, run_build, run_day

def slow(task):
    time.sleep(1.5)
    return run_day(task)

if __name__ == "__main__":
    cfg = BuildConfig(stages=("snapshot",)).replace(executor={"kind": "local", "workers": 2})
    s = run_build(sys.argv[1], sys.argv[2], config=cfg, progress=False, task_fn=slow)
    print("INTERRUPTED" if s.interrupted else "DONE", len(s.results), flush=True)
    sys.exit(130 if s.interrupted else 0)
"""


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_next_run_resumes(data: Path, tmp_path: Path) -> None:
    script = tmp_path / "slow_build.py"
    script.write_text(SLOW_DAY)
    out = tmp_path / "out"
    more = tmp_path / "more"
    from volfast.synth import generate_days

    generate_days(DAYS[0], 8, more, seed=3, scale="small")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(more), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60

    def completed() -> bool:
        for p in (out / "snapshots").glob("*/_manifest.json"):
            try:
                if json.loads(p.read_text())["status"] == "complete":
                    return True
            except (OSError, ValueError):
                continue
        return False

    while not completed() and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "INTERRUPTED" in stdout
    status = {
        p.parent.name: json.loads(p.read_text())["status"]
        for p in (out / "snapshots").glob("*/_manifest.json")
    }
    done = {d for d, st in status.items() if st == "complete"}
    assert 1 <= len(done) < 8
    for folder in (out / "snapshots").iterdir():  # no half-written partition under its final name
        names = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
        assert names in ({"part-0.parquet", "_manifest.json"}, {"part-0.parquet"}, set(), {"_manifest.json"})
        if names and status.get(folder.name) != "complete":  # interrupted: recorded as such
            assert status.get(folder.name) == "running", (folder, status)
    summary = json.loads((out / "build-summary.json").read_text())
    assert summary["interrupted"] and summary["not_run"]
    s = run_build(more, out, config=serial(), progress=False)
    assert sum(r["status"] == "skipped" for r in s.results) == len(done)
    assert sum(r["status"] == "ok" for r in s.results) == 8 - len(done)


def test_snapshot_then_surfaces_resumes_per_stage(data: Path, tmp_path: Path) -> None:
    if surfaces_stage() is None:
        pytest.skip("no surfaces stage in this build")
    out = tmp_path / "out"
    cfg = serial(BuildConfig(), workers=1)
    s = run_build(data, out, config=cfg, dates=DAYS[:2], progress=False)
    assert not s.failed and len(s.results) == 2
    assert all(r["stages"]["surfaces"]["status"] in ("ok", "invalid") for r in s.results)
    for r in s.invalid:
        assert r["reasons"] and r["reasons"][0]
    for d in DAYS[:2]:
        m = json.loads((out / "days" / f"date={d}" / "_manifest.json").read_text())
        assert m["stage"] == "surfaces" and m["config"]["seed"] == 0
        assert m["inputs"][0]["name"].endswith(f"snapshots/date={d}/part-0.parquet")
    snaps = tree(out)
    s = run_build(data, out, config=cfg, dates=DAYS[:2], progress=False)
    assert all(r.get("skipped") for r in s.results)
    # A surfaces parameter redoes the surfaces stage only; the snapshots stay as they are.
    s = run_build(
        data, out, config=cfg.replace(surfaces=(("max_rmse", 5.0),)), dates=DAYS[:2], progress=False
    )
    assert [r["stages"]["snapshot"]["status"] for r in s.results] == ["skipped"] * 2
    assert all(r["stages"]["surfaces"]["status"] in ("ok", "invalid") for r in s.results)
    assert tree(out) == snaps


# -- issue 14: one freshness rule, no stale days, config checked when read ---------------------------------
@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"snapshot": {"lookback": "1s"}}, "snapshot.lookback 10m -> 1s"),
        ({"snapshot": {"stale_after": "5s"}}, "snapshot.stale_after 60s -> 5s"),
        ({"snapshot": {"cut": "15:40"}}, "snapshot.cut 15:48 -> 15:40"),
        ({"snapshot": {"tz": "America/Chicago"}}, "snapshot.tz America/New_York -> America/Chicago"),
        ({"snapshot": {"venues": "single"}}, "snapshot.venues auto -> single"),
        ({"snapshot": {"chunk_records": 999}}, "snapshot.chunk_records 65536 -> 999"),
        ({"seed": 5}, "seed 0 -> 5"),
    ],
)
def test_build_redoes_a_day_for_each_setting_and_says_why(
    data: Path, tmp_path: Path, change: dict, key: str
) -> None:
    out = tmp_path / "out"
    s = run_build(data, out, config=serial(), dates=DAYS[:1], progress=False)
    assert s.results[0]["status"] == "ok"
    s = run_build(data, out, config=serial(SNAP.replace(**change)), dates=DAYS[:1], progress=False)
    (r,) = s.results
    assert r["status"] == "ok" and r["stages"]["snapshot"]["reason"] == f"settings changed: {key}", r
    m = json.loads((snapshot_folder(out, DAYS[0]) / "_manifest.json").read_text())
    assert m["status"] == "complete"
    assert m["config"] == serial(SNAP.replace(**change)).stage_config("snapshot")
    s = run_build(data, out, config=serial(SNAP.replace(**change)), dates=DAYS[:1], progress=False)
    assert s.results[0]["status"] == "skipped"


def test_config_values_are_checked_when_the_config_is_read(tmp_path: Path) -> None:
    for body, what in (
        ('[snapshot]\ntz = "Mars/Olympus"\n', "[snapshot] unknown time zone 'Mars/Olympus'"),
        ('[snapshot]\nlookback = "forever"\n', "[snapshot] lookback: cannot parse 'forever'"),
        ('[surfaces]\nside = "up"\n', "[surfaces] side must be one of"),
        ("[surfaces]\nmax_rmse = -1.0\n", "[surfaces] max_rmse must be > 0"),
    ):
        p = tmp_path / "b.toml"
        p.write_text(body)
        with pytest.raises(ConfigError) as ei:
            load_config(p)
        assert str(ei.value).startswith(f"{p}: {what}"), str(ei.value)
        assert isinstance(ei.value, volfast.VolfastError)


def test_a_day_that_turns_invalid_or_fails_loses_every_table(data: Path, tmp_path: Path) -> None:
    """Issue 14: new inputs that make a day invalid left the earlier grids, svi and forwards, and
    load_dataset still returned the day."""
    import numpy as np

    from volfast.surface import load_dataset

    if surfaces_stage() is None:
        pytest.skip("no surfaces stage in this build")
    out = tmp_path / "out"
    cfg = serial(BuildConfig(surfaces=(("validity", (("min_expiries", 1),)),)), workers=1)
    s = run_build(data, out, config=cfg, dates=DAYS[:2], progress=False)
    assert [r["status"] for r in s.results] == ["ok", "ok"], s.results
    tables = ("quotes", "forwards", "svi", "grids", "days")
    for t in tables:
        assert (out / t / f"date={DAYS[1]}" / "part-0.parquet").is_file(), t
    assert [str(d)[:10] for d in load_dataset(out).dates] == [str(DAYS[0]), str(DAYS[1])]

    t = volfast.take_snapshot(data=data, date=DAYS[1]).table
    cls = np.asarray(t.column("instrument_class").to_pylist(), dtype=object)
    _rewrite_without_options(
        mbp(data, DAYS[1]), set(np.asarray(t.column("instrument_id"))[np.isin(cls, ["C", "P"])].tolist())
    )
    s = run_build(data, out, config=cfg, dates=DAYS[:2], progress=False)
    assert [r["status"] for r in s.results] == ["skipped", "invalid"]
    for t in tables:
        assert not (out / t / f"date={DAYS[1]}" / "part-0.parquet").exists(), t
    m = json.loads((out / "days" / f"date={DAYS[1]}" / "_manifest.json").read_text())
    assert m["status"] == "invalid" and m["valid"] is False and "none a call or a put" in m["error"]
    assert len(m["removed"]) == len(tables)
    assert [str(d)[:10] for d in load_dataset(out).dates] == [str(DAYS[0])]

    # a corrupt input (one flipped byte): the day fails and keeps nothing from before, snapshot included
    raw = bytearray(mbp(data, DAYS[0]).read_bytes())
    raw[len(raw) // 3] ^= 0x5A
    mbp(data, DAYS[0]).write_bytes(bytes(raw))
    s = run_build(data, out, config=cfg, dates=DAYS[:1], progress=False)
    assert s.results[0]["status"] == "failed"
    assert s.results[0]["file"] == str(mbp(data, DAYS[0])) and "byte" in s.results[0]["error"]
    for t in tables:
        assert not (out / t / f"date={DAYS[0]}" / "part-0.parquet").exists(), t
    assert not (snapshot_folder(out, DAYS[0]) / "part-0.parquet").exists()
    m = json.loads((snapshot_folder(out, DAYS[0]) / "_manifest.json").read_text())
    assert m["status"] == "failed" and "zstd" in m["error"]
    with pytest.raises(volfast.VolfastError, match="no grid partitions"):
        load_dataset(out)


def test_a_stale_grid_without_a_valid_manifest_is_never_loaded(data: Path, tmp_path: Path) -> None:
    """load_dataset takes a day only when its surfaces manifest is complete and valid (an interrupted or
    failed day's grids, left by any means, are not returned)."""
    from volfast.io.output import read_manifest, write_manifest
    from volfast.surface import load_dataset

    if surfaces_stage() is None:
        pytest.skip("no surfaces stage in this build")
    out = tmp_path / "out"
    cfg = serial(BuildConfig(surfaces=(("validity", (("min_expiries", 1),)),)), workers=1)
    run_build(data, out, config=cfg, dates=DAYS[:2], progress=False)
    assert len(load_dataset(out).dates) == 2
    folder = out / "days" / f"date={DAYS[1]}"
    m = read_manifest(folder)
    write_manifest(
        folder, stage="surfaces", config=m["config"], inputs=[], outputs=[], counts={}, warnings=[],
        status="running",
    )  # fmt: skip
    assert [str(d)[:10] for d in load_dataset(out).dates] == [str(DAYS[0])]
    s = run_build(data, out, config=cfg, dates=DAYS[:2], progress=False)
    assert s.results[1]["stages"]["surfaces"]["reason"].startswith("interrupted")
    assert len(load_dataset(out).dates) == 2


def test_build_set_maps_onto_the_same_config_checked_when_read(tmp_path: Path) -> None:
    """Issue 14 (one config system): ``--set`` overrides of the build land in the same dataclasses as the
    TOML, are checked when the config is read, and a bad one names the key."""
    p = tmp_path / "b.toml"
    p.write_text('seed = 2\n[snapshot]\nlookback = "5m"\n')
    c = load_config(p, ["snapshot.lookback=1s", "seed=3", "surfaces.max_rmse=0.02", "executor.workers=2"])
    assert (c.seed, c.snapshot.lookback, c.executor.workers) == (3, "1s", 2)
    assert c.surfaces_params()["max_rmse"] == 0.02
    assert load_config(None, ["snapshot.tz=UTC"]).snapshot.tz == "UTC"
    for bad, what in (
        (["snapshot.lookbak=1s"], "unknown key(s) lookbak in [snapshot]"),
        (["snapshot.lookback=forever"], "[snapshot] lookback: cannot parse 'forever'"),
        (["surfaces.max_rmse=-1.0"], "[surfaces] max_rmse must be > 0"),
        (["nokey"], "override 'nokey': expected"),
    ):
        with pytest.raises(ConfigError) as ei:
            load_config(p, bad)
        assert what in str(ei.value), str(ei.value)


def test_build_set_reaches_the_day_manifest_and_recomputes(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    args = ["build", "--data", str(data), "--out", str(out), "--quiet", "--executor", "serial",
            "--date", "2024-03-04", "--stages", "snapshot"]  # fmt: skip
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    m = json.loads(next(out.glob("**/date=2024-03-04/_manifest.json")).read_text())
    assert m["config"]["snapshot"]["lookback"] == "10m"
    r = CliRunner().invoke(cli, [*args, "--set", "snapshot.lookback=1s"])
    assert r.exit_code == 0, r.output
    m = json.loads(next(out.glob("**/date=2024-03-04/_manifest.json")).read_text())
    assert m["config"]["snapshot"]["lookback"] == "1s" and m["status"] == "complete"
    r = CliRunner().invoke(cli, [*args, "--set", "snapshot.lookbak=1s"])
    assert r.exit_code == 2 and r.output.startswith("Error: unknown key(s) lookbak in [snapshot]"), r.output
