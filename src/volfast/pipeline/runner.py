"""The one per-day runner: every command that works day by day (``volfast snapshot``, ``volfast surfaces``,
``volfast build`` and, through it, ``volfast demo``) runs its days through :func:`run_days`.

A command describes one day's work as a :class:`DayJob` (four hooks); the runner owns what is the same for
all of them:

* temporary files left by a killed run are removed first (``temp_root``);
* each day is checked by the freshness rule (``DayJob.check``, :mod:`volfast.io.freshness`) in this process;
  a day that may be reused is reported as such (``DayJob.reused``, with the reason) without running;
* the other days run (``DayJob.run``, told why they run), in this process or through an ``executor``;
* a day that raises a :class:`~volfast.errors.VolfastError` or an ``OSError`` loses its tables and is
  reported failed (``DayJob.failed``), and the run goes on with the other days;
* every report goes to ``on_day`` as it arrives (a progress display), and all of them come back in day order.

Interrupts (Ctrl-C) are not caught here: a caller that resumes (the build) catches them around the call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from volfast.errors import VolfastError

__all__ = ["DayJob", "Executor", "run_days", "run_one"]

T = TypeVar("T")  # one day's work item: a date, or a picklable task holding one
R = TypeVar("R")  # one day's report

#: ``executor(items, work, on_result)``: runs ``work(item)`` for every item (anywhere: a process pool, a
#: Dask cluster) and hands each result to ``on_result`` as it arrives. ``work`` is picklable when the
#: :class:`DayJob`'s hooks are (module-level functions, or ``functools.partial`` of them).
Executor = Callable[[Sequence[Any], Callable[[Any], Any], Callable[[Any], None]], Any]


@dataclass(frozen=True)
class DayJob(Generic[T, R]):
    """One day's work, as four hooks the runner calls.

    Attributes
    ----------
    check : callable(item) -> verdict or None
        The freshness rule for the day (:func:`volfast.io.freshness.check`, or a build's
        :func:`~volfast.pipeline.tasks.day_state`): a truthy verdict means the day's outputs may be reused;
        a falsy one (a :class:`~volfast.io.freshness.Freshness` saying why) or None means it must run.
    run : callable(item, why) -> report
        Compute and write the day; ``why`` says why it runs (``"--force"``, or the freshness reason).
    reused : callable(item, verdict) -> report
        The report of a day that is up to date (no work done).
    failed : callable(item, exc, why) -> report
        Remove every table of the day (a failed day keeps nothing stale), record why in its manifest (best
        effort) and report the failure; called for a :class:`~volfast.errors.VolfastError` or an
        ``OSError`` raised by ``check`` or ``run`` (``why``: why the day ran, ``""`` when ``check`` raised).
    """

    check: Callable[[T], Any]
    run: Callable[[T, str], R]
    reused: Callable[[T, Any], R]
    failed: Callable[[T, BaseException, str], R]


def _why(verdict: Any) -> str:
    if verdict is None:
        return "no earlier output"
    return str(getattr(verdict, "reason", "") or "not up to date")


def run_one(job: DayJob[T, R], item: T, *, force: bool = False, why: str | None = None) -> R:
    """One day through ``job``: reuse it when its verdict allows (and not ``force``), else run it; a
    :class:`~volfast.errors.VolfastError` or ``OSError`` becomes ``job.failed``'s report. With ``why`` the
    freshness check was done already (by :func:`run_days`, in the parent process) and the day runs."""
    try:
        if why is None:
            verdict = None if force else job.check(item)
            if verdict:
                return job.reused(item, verdict)
            why = "--force" if force else _why(verdict)
        return job.run(item, why)
    except (VolfastError, OSError) as exc:
        return job.failed(item, exc, why or "")


def run_days(
    items: Sequence[T],
    job: DayJob[T, R],
    *,
    force: bool = False,
    on_day: Callable[[R], None] | None = None,
    executor: Executor | None = None,
    temp_root: Any = None,
    key: Callable[[R], Any] | None = None,
) -> list[R]:
    """Run every day of ``items`` through ``job`` (the steps are in the module docstring).

    Parameters
    ----------
    items : sequence
        One work item per day (a date, or a picklable task).
    job : DayJob
        The day's hooks.
    force : bool
        Run every day even when its verdict allows reuse.
    on_day : callable, optional
        Called with each report as it arrives.
    executor : callable, optional
        Runs the days that must run (:data:`Executor`); default: one after the other in this process.
    temp_root : path, optional
        Folder whose leftover temporary files (:func:`volfast.io.output.clean_temporaries`) go first.
    key : callable, optional
        Sort key of the returned reports (default: the order they arrived in: ``items``' order without an
        executor).

    Returns
    -------
    list
        The reports of every day.
    """
    if temp_root is not None:
        from volfast.io.output import clean_temporaries

        clean_temporaries(temp_root)
    reports: list[R] = []

    def emit(rep: R) -> None:
        reports.append(rep)
        if on_day is not None:
            on_day(rep)

    if executor is None:  # in this process, day after day
        for item in items:
            emit(run_one(job, item, force=force))
        return sorted(reports, key=key) if key is not None else reports
    # The freshness rule here (manifest reads: cheap); only the days that must run go out to the executor.
    todo: list[T] = []
    for item in items:
        try:
            verdict = None if force else job.check(item)
        except (VolfastError, OSError) as exc:
            emit(job.failed(item, exc, ""))
            continue
        if verdict:
            emit(job.reused(item, verdict))
        else:
            todo.append(item)
    # why="": checked already; a job run through an executor finds its own per-stage reasons
    executor(todo, functools.partial(run_one, job, why=""), emit)
    return sorted(reports, key=key) if key is not None else reports
