"""The per-day task: (input files, config, seed) -> files under OUT, and a small manifest dict back.

A day runs its stages in order (``snapshot`` then ``surfaces``). Each stage writes its own partition folder
and ``_manifest.json`` atomically (:mod:`volfast.io.output`: data first, manifest last), so a stage's output
is complete exactly when its manifest exists. A stage is *current* when its manifest has this volfast
version, the hash of the stage's config (which includes the seed and every earlier stage's config), and the
same inputs (name and size) it would read now, and every output it lists exists at its recorded size. A day
is done when its last stage is current, or an earlier current stage declared the day invalid (a day with no
option quotes, say: redoing it would give the same answer).

:func:`run_day` never raises for a bad day: it returns ``{"status": "failed", "error": ..., "file": ...}``
so one corrupt file does not stop a year. Only interrupts (Ctrl-C, a killed worker) escape, and they leave
no file under a final name half-written.

Layout under OUT::

    snapshots/date=YYYY-MM-DD/part-0.parquet, _manifest.json    (snapshot stage)
    <surfaces tables>/date=YYYY-MM-DD/...                         (surfaces stage: its own layout)
"""

from __future__ import annotations

from volfast.errors import VolfastError

import dataclasses
import datetime as _dt
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from volfast.pipeline.config import BuildConfig

__all__ = [
    "DayTask",
    "OutputWriteError",
    "Stage",
    "StageUnavailable",
    "day_seed",
    "day_state",
    "resolve_stages",
    "run_day",
    "snapshot_folder",
    "warmup",
]

SNAPSHOTS_DIR = "snapshots"
PART_NAME = "part-0.parquet"
MANIFEST = "_manifest.json"


class StageUnavailable(VolfastError, RuntimeError):
    """A configured stage is not part of this volfast build (raised before any day runs)."""


class OutputWriteError(VolfastError, OSError):
    """Writing a day's output failed (full disk, permissions...); names the file that was being written."""

    def __init__(self, path: str | os.PathLike[str], cause: BaseException) -> None:
        self.path = Path(path)
        super().__init__(getattr(cause, "errno", None), f"cannot write {self.path}: {cause}")


def day_seed(seed: int, date: _dt.date) -> int:
    """The seed of one day: a 63-bit integer from ``(seed, YYYYMMDD)``, never from worker order.

    Uses numpy's ``SeedSequence`` so that nearby master seeds and dates give unrelated streams.
    """
    import numpy as np

    s = np.random.SeedSequence([int(seed), int(date.strftime("%Y%m%d"))]).generate_state(2, np.uint32)
    return (int(s[0]) << 31) ^ int(s[1])


@dataclass(frozen=True)
class DayTask:
    """Everything one day's work depends on; picklable, small (the unit sent to a worker)."""

    date: _dt.date
    data: str  # folder of <dataset>-YYYYMMDD.<schema>.dbn.zst files
    out: str  # output root
    config: BuildConfig
    force: bool = False  # redo every stage even when its manifest matches

    @property
    def seed(self) -> int:
        return day_seed(self.config.seed, self.date)


@dataclass
class StageOutcome:
    """What a stage reports back (no arrays)."""

    folder: Path
    rows: int
    counts: dict[str, Any]
    warnings: list[str]
    invalid_reasons: list[str]


@dataclass(frozen=True)
class Stage:
    """One per-day stage: ``run`` writes its outputs and manifest; ``current`` says whether that manifest
    still matches; ``warmup`` compiles what the stage JITs, once per process, before days fan out."""

    name: str
    run: Callable[[DayTask], StageOutcome]
    current: Callable[[DayTask], dict[str, Any] | None]
    warmup: Callable[[], None]


# -- manifests shared by the stages -------------------------------------------------------------------
def _stage_hash(task: DayTask, stage: str) -> str:
    from volfast.io.output import config_hash

    return config_hash(task.config.stage_config(stage))


def _build_block(task: DayTask, stage: str, invalid_reasons: list[str]) -> dict[str, Any]:
    return {
        "build": {
            "stage_config": task.config.stage_config(stage),
            "stage_config_hash": _stage_hash(task, stage),
            "seed": task.seed,
            "valid": not invalid_reasons,
            "invalid_reasons": list(invalid_reasons),
        }
    }


def _manifest_if_current(
    folder: Path,
    task: DayTask,
    stage: str,
    inputs: list[tuple[str, int]],
    config_hash: str | None = None,
) -> dict[str, Any] | None:
    """The stage's manifest when it matches (version, stage config hash, inputs, outputs), else None.

    ``config_hash``: compare the manifest's own ``config_hash`` with it (a stage that stores the build's
    stage config as its manifest config) instead of the ``build`` block's."""
    from volfast import __version__
    from volfast.io.output import read_manifest

    m = read_manifest(folder)
    if m is None or m.get("stage") != stage or m.get("volfast_version") != __version__:
        return None
    if config_hash is not None:
        if m.get("config_hash") != config_hash:
            return None
    elif (m.get("build") or {}).get("stage_config_hash") != _stage_hash(task, stage):
        return None
    have = sorted((str(i.get("name")), int(i.get("size", -1))) for i in m.get("inputs", []))
    if have != sorted(inputs):
        return None
    for o in m.get("outputs", []):
        p = folder / str(o.get("name"))
        if not p.is_file() or p.stat().st_size != o.get("size"):
            return None
    return m


def _clean_temporaries(folder: Path) -> None:
    """Remove the ``.<name>.<random>.tmp`` files a killed worker left (never a file under a final name)."""
    if folder.is_dir():
        for p in folder.glob(".*.tmp"):
            try:
                p.unlink()
            except FileNotFoundError:
                pass


# -- the snapshot stage ---------------------------------------------------------------------------------
def snapshot_folder(out: str | os.PathLike[str], date: _dt.date) -> Path:
    """``OUT/snapshots/date=YYYY-MM-DD``."""
    from volfast.io.output import day_dir

    return day_dir(Path(out) / SNAPSHOTS_DIR, date)


def _snapshot_inputs(task: DayTask) -> list[tuple[str, int]]:
    from volfast.io.dbn import find_day_files

    files = find_day_files(task.data, task.date)
    q = files.quotes()
    paths = (q[1] if q else []) + files.definitions()
    return [(p.name, p.stat().st_size) for p in paths]


def _snapshot_current(task: DayTask) -> dict[str, Any] | None:
    return _manifest_if_current(
        snapshot_folder(task.out, task.date), task, "snapshot", _snapshot_inputs(task)
    )


def _snapshot_validity(table: Any) -> list[str]:
    """Why a snapshot cannot make a surface (empty when it can)."""
    import numpy as np

    cls = np.asarray(table.column("instrument_class").to_numpy(zero_copy_only=False), dtype=object)
    has = np.asarray(table.column("has_quote").to_numpy(zero_copy_only=False), dtype=bool)
    is_opt = np.isin(cls, ["C", "P"])
    n_opt, n_quoted = int(is_opt.sum()), int((is_opt & has).sum())
    if n_opt == 0:
        return [f"no options in the quote file ({table.num_rows} instruments, none a call or a put)"]
    if n_quoted == 0:
        return [f"no option quotes in the look-back window ({n_opt} options listed, 0 quoted at the cut)"]
    return []


def _snapshot_run(task: DayTask) -> StageOutcome:
    from volfast.io.dbn import IngestWarning
    from volfast.io.output import file_record, write_manifest, write_parquet_atomic
    from volfast.snapshot import snapshot

    folder = snapshot_folder(task.out, task.date)
    _clean_temporaries(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IngestWarning)  # kept in res.warnings and the manifest
        res = snapshot(data=task.data, date=task.date, **task.config.snapshot.kwargs())
    reasons = _snapshot_validity(res.table)
    part = folder / PART_NAME
    manifest = folder / MANIFEST
    target = part
    try:
        # The old manifest goes first: whenever a manifest exists, it describes the files beside it.
        manifest.unlink(missing_ok=True)
        write_parquet_atomic(res.table, part)
        target = manifest
        write_manifest(
            folder,
            stage="snapshot",
            config=res.config,
            inputs=list(res.inputs),  # list[Mapping] for write_manifest's signature
            outputs=[dict(file_record(part), rows=res.table.num_rows)],
            counts=res.counts,
            warnings=res.warnings,
            extra={
                "date": task.date.isoformat(),
                "schema": "snapshot/1",
                **_build_block(task, "snapshot", reasons),
            },
        )
    except OSError as exc:
        raise OutputWriteError(target, exc) from exc
    counts = {k: v for k, v in res.counts.items() if isinstance(v, (int, float, str))}
    return StageOutcome(folder, res.table.num_rows, counts, list(res.warnings), reasons)


def _snapshot_warmup() -> None:
    # The snapshot is C++: nothing to JIT, but a missing build must fail before a year of days is queued.
    from volfast._native import core

    core()


SNAPSHOT_STAGE = Stage("snapshot", _snapshot_run, _snapshot_current, _snapshot_warmup)


# -- the surfaces stage: THE plug point ----------------------------------------------------------------
# volfast.surface (forwards -> vols -> SVI -> grids) writes OUT/{quotes,forwards,svi,grids,days}/date=.../
# with its manifest in OUT/days/date=.../_manifest.json (see volfast.surface.run). The adapter below is the
# only place the pipeline touches it.
def _surfaces_params(task: DayTask) -> dict[str, Any]:
    """The day's ``[surfaces]`` settings over its market preset (from the dataset its snapshot read)."""
    from volfast.io.output import read_manifest
    from volfast.pipeline.presets import with_market_preset

    m = read_manifest(snapshot_folder(task.out, task.date)) or {}
    dataset = (m.get("config") or {}).get("dataset")
    return with_market_preset(task.config.surfaces_params(), dataset)


def _surfaces_manifest_config(task: DayTask) -> dict[str, Any]:
    from volfast.surface.day import SurfaceConfig

    doc = task.config.stage_config("surfaces")
    # The resolved surface config too (market preset included): a change of its defaults in a new version,
    # or of the preset, redoes the days.
    doc["surfaces_resolved"] = SurfaceConfig.from_dict(_surfaces_params(task)).to_dict()
    return doc


def _surfaces_folder(task: DayTask) -> Path:
    from volfast.io.output import day_dir

    return day_dir(Path(task.out) / "days", task.date)


def _surfaces_input(task: DayTask) -> tuple[Path, str]:
    part = snapshot_folder(task.out, task.date) / PART_NAME
    return part, f"../../{SNAPSHOTS_DIR}/date={task.date.isoformat()}/{PART_NAME}"


def _surfaces_current(task: DayTask) -> dict[str, Any] | None:
    from volfast.io.output import config_hash

    part, rel = _surfaces_input(task)
    if not part.is_file():
        return None
    m = _manifest_if_current(
        _surfaces_folder(task),
        task,
        "surfaces",
        [(rel, part.stat().st_size)],
        config_hash=config_hash(_surfaces_manifest_config(task)),
    )
    if m is None:
        return None
    valid = bool(m.get("valid", True))
    m["build"] = {"valid": valid, "invalid_reasons": [] if valid else [str(m.get("reason") or "invalid")]}
    return m


def _surfaces_run(task: DayTask) -> StageOutcome:
    from volfast.io.output import file_record
    from volfast.surface.day import SurfaceConfig, surface_day
    from volfast.surface.run import read_snapshot_day, write_surface_day

    part, rel = _surfaces_input(task)
    table, cut_ns, _ = read_snapshot_day(part.parent)
    cfg = SurfaceConfig.from_dict(_surfaces_params(task))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        day = surface_day(table, cut_ns=cut_ns, date=task.date, config=cfg)
    folder = _surfaces_folder(task)
    _clean_temporaries(folder)
    try:
        write_surface_day(
            day, task.out, inputs=[dict(file_record(part), name=rel)], config=_surfaces_manifest_config(task)
        )
    except OSError as exc:
        raise OutputWriteError(getattr(exc, "filename", None) or folder, exc) from exc
    counts = {k: v for k, v in day.counts.items() if isinstance(v, (int, float, str))}
    reasons = [] if day.valid else [str(day.reason or "invalid")]
    return StageOutcome(folder, int(day.quotes.num_rows), counts, list(day.warnings), reasons)


def _surfaces_warmup() -> None:
    """Compile every Numba kernel of the surfaces stage once in this process (``cache=True`` files are
    written for the workers): one small synthetic day through snapshot -> surface."""
    import tempfile

    from volfast.snapshot import snapshot
    from volfast.surface.day import surface_day
    from volfast.synth import generate_days

    day = _dt.date(2024, 3, 4)
    with tempfile.TemporaryDirectory(prefix="volfast-warmup-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        generate_days(day, 1, tmp, seed=0, scale="small")
        res = snapshot(data=tmp, date=day)
        surface_day(res.table, cut_ns=res.cut_ns, date=day)


def surfaces_stage() -> Stage | None:
    """THE PLUG POINT of the surfaces stage (forwards -> vols -> SVI -> grids): a :class:`Stage` wrapping
    ``volfast.surface.day.surface_day`` and ``volfast.surface.run.write_surface_day``, or None when this
    volfast has no surfaces module (a build that asks for it then stops with :class:`StageUnavailable`).

    Its manifest (``OUT/days/date=.../_manifest.json``) stores the build's stage config (seed, snapshot and
    surfaces parameters, the resolved ``SurfaceConfig``) as its config, the snapshot partition as its input,
    and ``valid`` / ``reason``; an invalid day is a final answer like the snapshot stage's.
    """
    try:
        from volfast.surface.day import SurfaceConfig, surface_day  # noqa: F401
        from volfast.surface.run import read_snapshot_day, write_surface_day  # noqa: F401
    except ImportError:
        return None
    return Stage("surfaces", _surfaces_run, _surfaces_current, _surfaces_warmup)


def resolve_stages(config: BuildConfig) -> list[Stage]:
    """The :class:`Stage` objects of ``config.stages``.

    Raises
    ------
    StageUnavailable
        A stage in the config is not available in this build (names it and what to do).
    """
    out: list[Stage] = []
    for name in config.stages:
        if name == "snapshot":
            out.append(SNAPSHOT_STAGE)
        elif name == "surfaces":
            st = surfaces_stage()
            if st is None:
                raise StageUnavailable(
                    "the surfaces stage (forwards -> vols -> SVI -> grids) is not in this volfast build yet; "
                    'build the snapshots alone with --stages snapshot (or stages = ["snapshot"] in the '
                    "config); a later run with the surfaces stage reuses them"
                )
            out.append(st)
    return out


def warmup(config: BuildConfig) -> None:
    """Run every configured stage's warm-up in this process (compiles Numba kernels, checks the C++ core)."""
    for st in resolve_stages(config):
        st.warmup()


# -- the task -------------------------------------------------------------------------------------------
def day_state(task: DayTask) -> dict[str, Any] | None:
    """``{"status": "ok"|"invalid", "reasons": [...]}`` when the day is done (see module docstring), else
    None. Cheap: reads manifests and stats the input files."""
    for st in resolve_stages(task.config):
        m = st.current(task)
        if m is None:
            return None
        b = m.get("build") or {}
        if not b.get("valid", True):
            return {"status": "invalid", "reasons": list(b.get("invalid_reasons", [])), "stage": st.name}
    return {"status": "ok", "reasons": []}


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / (1024 * 1024) if sys.platform == "darwin" else kb / 1024, 1)


def _file_of(exc: BaseException) -> str | None:
    """The file a failure is about: the DBN file, or the output being written."""
    for e in (exc, exc.__cause__):
        if e is None:
            continue
        p = getattr(e, "path", None) or getattr(e, "filename", None)
        if p:
            return str(p)
    return None


def run_day(task: DayTask) -> dict[str, Any]:
    """Run one day's stages and return a small JSON-able record (never arrays).

    Returns
    -------
    dict
        ``date`` (ISO), ``status`` (``ok``: every stage current after this call; ``skipped``: it already was;
        ``invalid``: a stage declared the day unusable, ``reasons`` says why; ``failed``: ``error``,
        ``error_type`` and ``file`` say what and where), ``stages`` (per stage: status, rows, folder,
        seconds), ``warnings``, ``seed``, ``seconds``, ``peak_rss_mb`` (the worker process's peak so far),
        ``worker`` (host:pid).
    """
    import socket

    t0 = time.perf_counter()
    rec: dict[str, Any] = {
        "date": task.date.isoformat(),
        "status": "failed",
        "stages": {},
        "reasons": [],
        "warnings": [],
        "error": None,
        "error_type": None,
        "file": None,
        "seed": task.seed,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }
    try:
        stages = resolve_stages(task.config)
        redo = task.force
        ran = False
        status = "ok"
        for st in stages:
            s0 = time.perf_counter()
            m = None if redo else st.current(task)
            if m is not None:
                b = m.get("build") or {}
                rec["stages"][st.name] = {"status": "skipped", "rows": _rows(m), "seconds": 0.0}
                if not b.get("valid", True):
                    status, rec["reasons"] = "invalid", list(b.get("invalid_reasons", []))
                    break
                continue
            redo = True  # a stage that ran changes the input of every later one
            ran = True
            out = st.run(task)
            rec["stages"][st.name] = {
                "status": "invalid" if out.invalid_reasons else "ok",
                "rows": out.rows,
                "folder": str(out.folder),
                "seconds": round(time.perf_counter() - s0, 3),
                "counts": out.counts,
            }
            rec["warnings"].extend(f"{st.name}: {w}" for w in out.warnings)
            if out.invalid_reasons:
                status, rec["reasons"] = "invalid", list(out.invalid_reasons)
                break
        rec["status"] = status if (ran or status == "invalid") else "skipped"
        rec["skipped"] = not ran
    except Exception as exc:  # a bad day is reported, the run goes on with the others
        rec["status"] = "failed"
        rec["error"] = str(exc)
        rec["error_type"] = type(exc).__name__
        rec["file"] = _file_of(exc)
        known = ("DBNReadError", "SnapshotError", "OutputWriteError", "FileNotFoundError")
        if type(exc).__name__ not in known:  # unexpected: keep where it happened
            rec["traceback"] = "".join(traceback.format_exception(exc)[-6:])
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    rec["peak_rss_mb"] = _peak_rss_mb()
    return rec


def _rows(m: dict[str, Any]) -> int:
    return int(sum(int(o.get("rows", 0)) for o in m.get("outputs", [])))


def replace_config(task: DayTask, config: BuildConfig) -> DayTask:
    """The same day with another config."""
    return dataclasses.replace(task, config=config)
