"""``volfast build``: every trading day found in a DBN folder through the per-day stages, resumably."""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from volfast.errors import VolfastError
from volfast.pipeline.config import BuildConfig
from volfast.pipeline.executors import TaskFn, failed_record, run_tasks
from volfast.pipeline.progress import BuildProgress
from volfast.pipeline.runner import DayJob, run_days
from volfast.pipeline.summary import BuildSummary
from volfast.pipeline.tasks import DayTask, day_state, resolve_stages, run_day, warmup

__all__ = ["BuildError", "plan_days", "run_build"]

CONFIG_NAME = "build-config.json"
SUMMARY_NAME = "build-summary.json"


class BuildError(VolfastError, ValueError):
    """A build that cannot start (no data, no day in the range, bad dates)."""


def plan_days(
    data: str | os.PathLike[str],
    *,
    start: _dt.date | None = None,
    end: _dt.date | None = None,
    dates: Sequence[_dt.date] | None = None,
) -> list[_dt.date]:
    """The trading days to build: every date with a DBN day file in ``data`` within ``[start, end]``, or the
    given ``dates`` (each must have files).

    Raises
    ------
    BuildError
        ``data`` is not a folder, ``start`` is after ``end``, no day is in range, or a given date has no file.
    """
    from volfast.io.dbn import list_dates, scan_folder

    root = Path(data)
    if not root.is_dir():
        raise BuildError(f"data folder {root} does not exist")
    found = list_dates(root)
    if not found:
        infos = scan_folder(root)
        more = f"; and {len(infos) - 8} more" if len(infos) > 8 else ""
        what = "; ".join(i.describe() for i in infos[:8]) + more
        raise BuildError(f"{root}: no readable DBN file (found {what or 'no files'})")
    if start is not None and end is not None and start > end:
        raise BuildError(f"--from {start} is after --to {end}")
    if dates:
        have = set(found)
        missing = [d for d in dates if d not in have]
        if missing:
            raise BuildError(f"{root}: no DBN files for {', '.join(d.isoformat() for d in missing)}")
        days = sorted(set(dates))
    else:
        days = found
    days = [d for d in days if (start is None or d >= start) and (end is None or d <= end)]
    if not days:
        raise BuildError(
            f"{root}: no day between {start or found[0]} and {end or found[-1]} "
            f"(files cover {found[0]} to {found[-1]})"
        )
    return days


def _default_command(data: str, out: str, config_path: str | None, config: BuildConfig) -> list[str]:
    cmd = ["volfast", "build", "--data", str(data), "--out", str(out)]
    if config_path:
        cmd += ["--config", str(config_path)]
    cmd += ["--stages", ",".join(config.stages), "--executor", config.executor.kind]
    if config.executor.scheduler:
        cmd += ["--scheduler", config.executor.scheduler]
    if config.executor.workers:
        cmd += ["--workers", str(config.executor.workers)]
    return cmd


def run_build(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    config: BuildConfig | None = None,
    start: _dt.date | None = None,
    end: _dt.date | None = None,
    dates: Sequence[_dt.date] | None = None,
    force: bool = False,
    progress: bool = True,
    console: Any = None,
    command: Sequence[str] | None = None,
    config_path: str | None = None,
    task_fn: TaskFn = run_day,
) -> BuildSummary:
    """Build every day of ``data`` (or the chosen days) into ``out`` and summarise.

    Days whose final manifest matches are skipped without being sent to a worker (``force`` redoes them).
    The resolved config goes to ``out/build-config.json`` and the summary to ``out/build-summary.json``.

    Parameters
    ----------
    data, out : path
        DBN day-file folder; output root.
    config : BuildConfig, optional
        Stages, their parameters, seed and executor (default: :class:`BuildConfig()`).
    start, end, dates : optional
        Inclusive date range and/or an explicit list of days.
    force : bool
        Redo every stage of every day.
    progress : bool
        Show a rich progress bar.
    command : sequence of str, optional
        The build's command line without dates, used in the summary's re-run command.
    task_fn : callable
        The per-day function (default :func:`run_day`); another one must take a :class:`DayTask` and return
        the same kind of dict (used to inject faults in tests).

    Raises
    ------
    BuildError, StageUnavailable, ConfigError
        Before any day runs.

    Returns
    -------
    BuildSummary
        ``interrupted`` is True when Ctrl-C stopped the run (the workers are stopped first, and the days not
        finished are in ``not_run``; the same call resumes).
    """
    from volfast.io.output import atomic_write_bytes

    cfg = config or BuildConfig()
    resolve_stages(cfg)  # a missing stage fails here, before anything is written
    days = plan_days(data, start=start, end=end, dates=dates)
    out_p = Path(out)
    from volfast.io.output import clean_temporaries
    from volfast.pipeline.tasks import OutputWriteError

    try:
        out_p.mkdir(parents=True, exist_ok=True)
        clean_temporaries(out_p)  # whatever a killed run left, in every table's folders
        atomic_write_bytes(
            out_p / CONFIG_NAME, (json.dumps(cfg.to_dict(), indent=2, default=str) + "\n").encode()
        )
    except OSError as exc:  # a read-only or full output folder: before any day runs
        raise OutputWriteError(out_p / CONFIG_NAME, exc) from exc
    base = list(command) if command is not None else _default_command(str(data), str(out), config_path, cfg)
    summary = BuildSummary(results=[], command=base)
    t0 = time.monotonic()

    tasks = [DayTask(date=d, data=str(data), out=str(out), config=cfg, force=force) for d in days]
    bar = BuildProgress(len(tasks), enabled=progress, console=console)
    done_dates: set[str] = set()

    def on_result(r: dict[str, Any]) -> None:
        summary.results.append(r)
        done_dates.add(r["date"])
        bar.update(r)

    def executor(todo: Sequence[DayTask], work: Any, emit: Any) -> None:
        warm = functools.partial(warmup, cfg)
        summary.executor = run_tasks(todo, cfg.executor, task_fn=work, on_result=emit, warm=warm)

    try:
        with bar:
            # the one per-day runner: days done before are reported without a round trip to a worker
            run_days(tasks, _BuildDays(task_fn).job(), force=force, on_day=on_result, executor=executor)
    except KeyboardInterrupt:
        # The workers are stopped; finished days are complete, the others left only temporary files.
        summary.interrupted = True
        summary.not_run = [t.date.isoformat() for t in tasks if t.date.isoformat() not in done_dates]
    finally:
        summary.seconds = time.monotonic() - t0
        summary.results.sort(key=lambda r: r["date"])
        try:
            atomic_write_bytes(
                out_p / SUMMARY_NAME, (json.dumps(summary.to_dict(), indent=2, default=str) + "\n").encode()
            )
        except OSError as exc:  # the days that finished are still reported (returned, and rendered)
            summary.write_error = f"cannot write the build summary {out_p / SUMMARY_NAME}: {exc}"
    return summary


@dataclass(frozen=True)
class _BuildDays:
    """The hooks of one ``volfast build`` day for the per-day runner (:mod:`volfast.pipeline.runner`): the
    day's state from its stages' manifests (:func:`day_state`) decides reuse here, in this process; a day
    that must run goes to a worker as ``task_fn(task)`` (:func:`run_day`: each stage under the freshness rule,
    a failed or invalid day's later tables removed). Picklable: workers receive it."""

    task_fn: TaskFn

    def job(self) -> DayJob[DayTask, dict[str, Any]]:
        return DayJob(check=_safe_state, run=self.run, reused=_reused_record, failed=_failed_record)

    def run(self, task: DayTask, why: str) -> dict[str, Any]:
        return self.task_fn(task)


def _reused_record(t: DayTask, st: dict[str, Any]) -> dict[str, Any]:
    return {
        "date": t.date.isoformat(),
        "status": "skipped" if st["status"] == "ok" else st["status"],
        "reasons": st["reasons"],
        "skipped": True,
        "stages": {},
        "warnings": [],
        "seed": t.seed,
    }


def _failed_record(t: DayTask, exc: BaseException, why: str) -> dict[str, Any]:
    """A day whose state could not be read (its task function reports every other failure itself)."""
    return failed_record(t, str(exc), type(exc).__name__, getattr(exc, "filename", None))


def _safe_state(t: DayTask) -> dict[str, Any] | None:
    try:
        return day_state(t)
    except OSError:  # an unreadable input: let the task report it properly
        return None
