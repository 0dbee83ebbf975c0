"""Writing snapshots to disk and running them over many days (the ``volfast snapshot`` command)."""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from volfast.io.dbn import IngestWarning, _as_date, find_day_files, list_dates
from volfast.io.output import (
    MANIFEST_NAME,
    begin_manifest,
    day_dir,
    fail_manifest,
    write_manifest,
    write_parquet_atomic,
)
from volfast.snapshot.core import (
    SnapshotError,
    SnapshotResult,
    SnapshotSettingsError,
    check_tz,
    parse_duration,
    resolve_cut,
    take_snapshot,
)

snapshot = take_snapshot  # the function, by its one name

__all__ = ["DayReport", "day_inputs", "snapshot_days", "snapshot_settings", "write_snapshot"]

PART_NAME = "part-0.parquet"


def snapshot_settings(**kwargs: Any) -> dict[str, Any]:
    """The full resolved settings of a :func:`~volfast.snapshot.take_snapshot` call over a day folder:
    every keyword parameter with its default filled in (so a parameter added later takes part in the
    freshness check by itself), durations in seconds, the cut as text. Validated here, before any day runs.

    Raises
    ------
    SnapshotError
        An unknown setting, an unknown time zone, an unparseable duration or cut, an unknown ``venues``.
    """
    import inspect

    per_day = {"quotes", "definitions", "data", "date"}
    params = inspect.signature(snapshot).parameters
    out = {n: p.default for n, p in params.items() if n not in per_day}
    unknown = sorted(set(kwargs) - set(out))
    if unknown:
        raise SnapshotSettingsError(
            f"unknown snapshot setting(s) {', '.join(unknown)}; known: {', '.join(out)}"
        )
    out.update(kwargs)
    try:
        out["lookback"] = parse_duration(out["lookback"], name="lookback")
        out["stale_after"] = parse_duration(out["stale_after"], name="stale_after")
        resolve_cut(out["cut"], date=_dt.date(2024, 1, 2), tz=check_tz(out["tz"]))
    except SnapshotError:
        raise
    except (TypeError, ValueError) as exc:
        raise SnapshotSettingsError(str(exc)) from None
    if out["venues"] not in ("auto", "consolidate", "single"):
        raise SnapshotSettingsError(
            f"venues must be 'auto', 'consolidate' or 'single', got {out['venues']!r}"
        )
    if isinstance(out["cut"], _dt.time):
        out["cut"] = out["cut"].isoformat()
    return {k: (v if isinstance(v, (str, int, float, bool, type(None))) else str(v)) for k, v in out.items()}


def day_inputs(data: str | os.PathLike[str], date: _dt.date) -> list[tuple[str, Path]]:
    """``(name, path)`` of the files a snapshot of ``date`` reads from ``data`` (quotes, definitions)."""
    files = find_day_files(data, date)
    q = files.quotes()
    return [(p.name, p) for p in (q[1] if q else []) + files.definitions()]


def write_snapshot(
    result: SnapshotResult,
    out: str | os.PathLike[str],
    *,
    settings: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``OUT/date=YYYY-MM-DD/part-0.parquet`` and its ``_manifest.json``, each atomically.

    The manifest is first marked ``running``, the Parquet file is renamed into place, and the final manifest
    comes last, so a day whose manifest says ``complete`` is complete. ``settings``: the full resolved
    settings the freshness rule compares (default: the result's own resolved config); ``extra``: more
    manifest fields (the build's validity block). One writer for ``volfast snapshot`` and the build.

    Returns
    -------
    pathlib.Path
        The day folder.

    Raises
    ------
    OutputWriteError
        A file could not be written (full disk, permissions); names the file.
    """
    if result.date is None:
        raise ValueError("the snapshot has no date")
    from volfast.io.output import OutputWriteError, file_record

    folder = day_dir(out, result.date)
    cfg = settings if settings is not None else result.config
    target = folder / MANIFEST_NAME
    try:
        begin_manifest(folder, stage="snapshot", config=cfg)
        target = folder / PART_NAME
        part = write_parquet_atomic(result.table, target)
        target = folder / MANIFEST_NAME
        write_manifest(
            folder,
            stage="snapshot",
            config=cfg,
            inputs=list(result.inputs),
            outputs=[dict(file_record(part), rows=result.table.num_rows)],
            counts=result.counts,
            warnings=result.warnings,
            extra={
                "date": result.date.isoformat(),
                "schema": "snapshot/1",
                "cut_ns": result.cut_ns,
                "resolved": result.config,
                **(extra or {}),
            },
        )
    except OSError as exc:
        raise OutputWriteError(target, exc) from exc
    return folder


@dataclass
class DayReport:
    """What happened to one day of a multi-day run."""

    date: _dt.date
    status: str  # "ok", "skipped" (manifest matched), "failed"
    folder: Path | None = None
    rows: int = 0
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    reason: str = ""  # why the day was recomputed, or "up to date" when skipped (the freshness rule)


def snapshot_days(
    data: str | os.PathLike[str],
    dates: Sequence[str | _dt.date] | None,
    out: str | os.PathLike[str],
    *,
    force: bool = False,
    on_day: Callable[[DayReport], None] | None = None,
    **kwargs: Any,
) -> list[DayReport]:
    """Snapshot every requested day of a batch-style folder into ``out``; a failing day is reported and the
    run goes on with the others.

    Parameters
    ----------
    data : path
        Folder of ``<dataset>-YYYYMMDD.<schema>.dbn.zst`` files.
    dates : sequence of dates, or None for every date in ``data``
    out : path
        Output root; each day goes to ``out/date=YYYY-MM-DD/``.
    force : bool
        Redo days whose manifest matches the config and inputs (skipped otherwise).
    on_day : callable, optional
        Called with each :class:`DayReport` as it completes (progress display).
    **kwargs
        Passed to :func:`volfast.take_snapshot` (cut, tz, lookback, stale_after, venues...).
    """
    from volfast.pipeline.runner import run_days

    settings = snapshot_settings(**kwargs)  # bad settings fail here, before any day
    days = [_as_date(d) for d in dates] if dates else list_dates(data)
    job = _SnapshotDays(Path(data), Path(out), settings, kwargs)
    return run_days(days, job.job(), force=force, on_day=on_day, temp_root=out)


@dataclass(frozen=True)
class _SnapshotDays:
    """The hooks of one ``volfast snapshot`` day for the per-day runner (:mod:`volfast.pipeline.runner`)."""

    data: Path
    out: Path
    settings: dict[str, Any]  # the full resolved settings (the freshness rule compares them)
    kwargs: dict[str, Any]  # as given to take_snapshot

    def job(self) -> Any:
        from volfast.pipeline.runner import DayJob

        return DayJob(check=self.check, run=self.run, reused=self.reused, failed=self.failed)

    def check(self, d: _dt.date) -> Any:
        from volfast.io.freshness import check

        inputs = day_inputs(self.data, d)
        return check(day_dir(self.out, d), stage="snapshot", config=self.settings, inputs=inputs)

    def reused(self, d: _dt.date, fresh: Any) -> DayReport:
        rows = sum(int(o.get("rows", 0)) for o in (fresh.manifest or {}).get("outputs", []))
        folder = day_dir(self.out, d)
        return DayReport(date=d, status="skipped", folder=folder, rows=rows, reason=fresh.reason)

    def run(self, d: _dt.date, why: str) -> DayReport:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IngestWarning)  # kept in result.warnings and the manifest
            res = snapshot(data=self.data, date=d, **self.kwargs)
        folder = write_snapshot(res, self.out, settings=self.settings)
        rows, warned = res.table.num_rows, list(res.warnings)
        return DayReport(date=d, status="ok", folder=folder, rows=rows, warnings=warned, reason=why)

    def failed(self, d: _dt.date, exc: BaseException, why: str) -> DayReport:
        _fail_day(day_dir(self.out, d), self.settings, str(exc))
        return DayReport(date=d, status="failed", error=str(exc), reason=why)


def _fail_day(folder: Path, settings: dict[str, Any], error: str) -> None:
    """A failed day keeps no earlier table: its partition goes and its manifest says why (best effort: an
    output folder that cannot be written keeps what it has, and the day's report carries the error)."""
    if not (folder / MANIFEST_NAME).exists() and not (folder / PART_NAME).exists():
        return
    removed = []
    try:
        if (folder / PART_NAME).exists():
            (folder / PART_NAME).unlink()
            removed.append(PART_NAME)
        fail_manifest(folder, stage="snapshot", config=settings, error=error, removed=removed)
    except OSError:
        pass
