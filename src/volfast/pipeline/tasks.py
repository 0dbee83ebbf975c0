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

from volfast.errors import VolfastError
from volfast.io.freshness import Freshness
from volfast.io.output import OutputWriteError
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
    """One per-day stage: ``run`` writes its outputs and manifest; ``current`` applies the freshness rule
    (:func:`volfast.io.freshness.check`) to its manifest; ``clear`` removes the day's outputs and records
    why (a failed or invalid day keeps no stale table); ``warmup`` compiles what the stage JITs, once per
    process, before days fan out."""

    name: str
    run: Callable[[DayTask], StageOutcome]
    current: Callable[[DayTask], Freshness]
    warmup: Callable[[], None]
    clear: Callable[[DayTask, str, str], list[str]]


# -- manifests shared by the stages -------------------------------------------------------------------
def _build_block(task: DayTask, invalid_reasons: list[str]) -> dict[str, Any]:
    return {
        "build": {
            "seed": task.seed,
            "valid": not invalid_reasons,
            "invalid_reasons": list(invalid_reasons),
        }
    }


def _remove(paths: list[Path]) -> list[str]:
    gone = []
    for p in paths:
        try:
            p.unlink()
            gone.append(str(p))
        except FileNotFoundError:
            pass
    return gone


# -- the snapshot stage ---------------------------------------------------------------------------------
def snapshot_folder(out: str | os.PathLike[str], date: _dt.date) -> Path:
    """``OUT/snapshots/date=YYYY-MM-DD``."""
    from volfast.io.output import day_dir

    return day_dir(Path(out) / SNAPSHOTS_DIR, date)


def _snapshot_inputs(task: DayTask) -> list[tuple[str, Path]]:
    from volfast.snapshot.run import day_inputs

    return day_inputs(task.data, task.date)


def _snapshot_current(task: DayTask) -> Freshness:
    from volfast.io.freshness import check

    return check(
        snapshot_folder(task.out, task.date),
        stage="snapshot",
        config=task.config.stage_config("snapshot"),
        inputs=_snapshot_inputs(task),
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
    from volfast.snapshot import take_snapshot
    from volfast.snapshot.run import write_snapshot

    settings = task.config.stage_config("snapshot")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IngestWarning)  # kept in res.warnings and the manifest
        res = take_snapshot(data=task.data, date=task.date, **task.config.snapshot.kwargs())
    reasons = _snapshot_validity(res.table)
    folder = write_snapshot(
        res, Path(task.out) / SNAPSHOTS_DIR, settings=settings, extra=_build_block(task, reasons)
    )
    counts = {k: v for k, v in res.counts.items() if isinstance(v, (int, float, str))}
    return StageOutcome(folder, res.table.num_rows, counts, list(res.warnings), reasons)


def _snapshot_clear(task: DayTask, status: str, why: str) -> list[str]:
    from volfast.io.output import fail_manifest

    folder = snapshot_folder(task.out, task.date)
    if not folder.exists():
        return []
    gone = _remove([folder / PART_NAME])
    fail_manifest(
        folder, stage="snapshot", config=task.config.stage_config("snapshot"), error=why, removed=gone,
        status=status,
    )  # fmt: skip
    return gone


def _snapshot_warmup() -> None:
    # The snapshot is C++: nothing to JIT, but a missing build must fail before a year of days is queued.
    from volfast._native import core

    core()


SNAPSHOT_STAGE = Stage("snapshot", _snapshot_run, _snapshot_current, _snapshot_warmup, _snapshot_clear)


# -- the surfaces stage: THE plug point ----------------------------------------------------------------
# volfast.surface (forwards -> vols -> SVI -> grids) writes OUT/{quotes,forwards,svi,grids,days}/date=.../
# with its manifest in OUT/days/date=.../_manifest.json (see volfast.surface.run). The adapter below is the
# only place the pipeline touches it.
def _surfaces_params(task: DayTask) -> dict[str, Any]:
    """The day's ``[surfaces]`` settings over its market preset (from the dataset its snapshot read)."""
    from volfast.pipeline.presets import with_market_preset
    from volfast.surface.run import snapshot_dataset

    dataset = snapshot_dataset(snapshot_folder(task.out, task.date))
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


def _surfaces_current(task: DayTask) -> Freshness:
    from volfast.io.freshness import check

    part, rel = _surfaces_input(task)
    f = check(
        _surfaces_folder(task), stage="surfaces", config=_surfaces_manifest_config(task), inputs=[(rel, part)]
    )
    if f.manifest is not None and f.reusable:
        m = f.manifest
        valid = bool(m.get("valid", True))
        m["build"] = {"valid": valid, "invalid_reasons": [] if valid else [str(m.get("reason") or "invalid")]}
    return f


def _surfaces_run(task: DayTask) -> StageOutcome:
    from volfast.io.output import file_record
    from volfast.surface.day import SurfaceConfig, surface_day
    from volfast.surface.run import read_snapshot_day, snapshot_dataset, write_surface_day

    part, rel = _surfaces_input(task)
    table, cut_ns, _ = read_snapshot_day(part.parent)
    cfg = SurfaceConfig.from_dict(_surfaces_params(task))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        day = surface_day(
            table, cut_ns=cut_ns, date=task.date, config=cfg, dataset=snapshot_dataset(part.parent)
        )
    folder = _surfaces_folder(task)
    try:
        write_surface_day(
            day, task.out, inputs=[dict(file_record(part), name=rel)], config=_surfaces_manifest_config(task)
        )
    except OSError as exc:
        raise OutputWriteError(getattr(exc, "filename", None) or folder, exc) from exc
    counts = {k: v for k, v in day.counts.items() if isinstance(v, (int, float, str))}
    reasons = [] if day.valid else [str(day.reason or "invalid")]
    return StageOutcome(folder, int(day.quotes.num_rows), counts, list(day.warnings), reasons)


def _surfaces_clear(task: DayTask, status: str, why: str) -> list[str]:
    from volfast.io.output import day_dir, fail_manifest
    from volfast.surface.run import TABLES

    folder = _surfaces_folder(task)
    parts = [day_dir(Path(task.out) / t, task.date) / PART_NAME for t in TABLES]
    if not folder.exists() and not any(p.exists() for p in parts):
        return []
    gone = _remove(parts)
    fail_manifest(
        folder, stage="surfaces", config=_surfaces_manifest_config(task), error=why, removed=gone,
        status=status,
    )  # fmt: skip
    return gone


def _surfaces_warmup() -> None:
    """Compile every Numba kernel of the surfaces stage once in this process (``cache=True`` files are
    written for the workers): one small synthetic day through snapshot -> surface."""
    import tempfile

    from volfast.snapshot import take_snapshot
    from volfast.surface.day import surface_day
    from volfast.synth import generate_days

    day = _dt.date(2024, 3, 4)
    with tempfile.TemporaryDirectory(prefix="volfast-warmup-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        generate_days(day, 1, tmp, seed=0, scale="small")
        res = take_snapshot(data=tmp, date=day)
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
    return Stage("surfaces", _surfaces_run, _surfaces_current, _surfaces_warmup, _surfaces_clear)


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
        f = st.current(task)
        if not f.reusable or f.manifest is None:
            return None
        b = f.manifest.get("build") or {}
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
    stages: list[Stage] = []
    i_stage = 0  # the stage running (or the first one left) when something fails
    try:
        stages = resolve_stages(task.config)
        _clean_day(task)
        redo = task.force
        ran = False
        status = "ok"
        for i_stage, st in enumerate(stages):
            s0 = time.perf_counter()
            f = None if redo else st.current(task)
            if f is not None and f.reusable and f.manifest is not None:
                m = f.manifest
                b = m.get("build") or {}
                rec["stages"][st.name] = {"status": "skipped", "rows": _rows(m), "seconds": 0.0}
                rec["stages"][st.name]["reason"] = f.reason
                if not b.get("valid", True):
                    status, rec["reasons"] = "invalid", list(b.get("invalid_reasons", []))
                    _clear_after(stages, i_stage, task, "invalid", rec)
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
                "reason": "--force" if f is None else f.reason,  # why it was recomputed
            }
            rec["warnings"].extend(f"{st.name}: {w}" for w in out.warnings)
            if out.invalid_reasons:
                status, rec["reasons"] = "invalid", list(out.invalid_reasons)
                _clear_after(stages, i_stage, task, "invalid", rec)
                break
        rec["status"] = status if (ran or status == "invalid") else "skipped"
        rec["skipped"] = not ran
    except Exception as exc:  # a bad day is reported, the run goes on with the others
        rec["status"] = "failed"
        rec["error"] = str(exc)
        rec["error_type"] = type(exc).__name__
        rec["file"] = _file_of(exc)
        if not isinstance(exc, VolfastError) and not isinstance(exc, FileNotFoundError):
            rec["traceback"] = "".join(traceback.format_exception(exc)[-6:])  # unexpected: keep where
        # The day loses every table of the failing stage and the stages after it: nothing stale survives.
        _clear_after(stages, i_stage - 1, task, "failed", rec)
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    rec["peak_rss_mb"] = _peak_rss_mb()
    return rec


def _clean_day(task: DayTask) -> None:
    """Remove the temporary files a killed worker left in this day's folders (every table's partition)."""
    from volfast.io.output import clean_temporaries, day_dir

    for table in (SNAPSHOTS_DIR, "quotes", "forwards", "svi", "grids", "days"):
        clean_temporaries(day_dir(Path(task.out) / table, task.date))


def _clear_after(stages: list[Stage], i: int, task: DayTask, status: str, rec: dict[str, Any]) -> None:
    """Remove the outputs of every stage after ``stages[i]`` for this day and record ``status`` and why in
    their manifests (``rec["removed"]`` lists the files). Best effort: a folder that cannot be written keeps
    its files, and the day's record says so."""
    why = rec.get("error") or "; ".join(rec.get("reasons") or []) or status
    for st in stages[i + 1 :]:
        try:
            rec.setdefault("removed", []).extend(st.clear(task, status, f"{status}: {why}"))
        except OSError as exc:
            rec.setdefault("warnings", []).append(f"{st.name}: could not remove stale outputs ({exc})")


def _rows(m: dict[str, Any]) -> int:
    return int(sum(int(o.get("rows", 0)) for o in m.get("outputs", [])))


def replace_config(task: DayTask, config: BuildConfig) -> DayTask:
    """The same day with another config."""
    return dataclasses.replace(task, config=config)
