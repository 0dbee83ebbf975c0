"""Writing snapshots to disk and running them over many days (the ``volfast snapshot`` command)."""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from volfast.io.dbn import DBNReadError, IngestWarning, _as_date, find_day_files, list_dates
from volfast.io.output import day_dir, manifest_matches, write_manifest, write_parquet_atomic
from volfast.snapshot.core import SnapshotError, SnapshotResult, snapshot

__all__ = ["DayReport", "snapshot_days", "write_snapshot"]

PART_NAME = "part-0.parquet"


def write_snapshot(result: SnapshotResult, out: str | os.PathLike[str]) -> Path:
    """Write ``OUT/date=YYYY-MM-DD/part-0.parquet`` and its ``_manifest.json``, each atomically.

    The Parquet file is renamed into place first and the manifest last, so a day with a manifest is complete.

    Returns
    -------
    pathlib.Path
        The day folder.
    """
    if result.date is None:
        raise ValueError("the snapshot has no date")
    folder = day_dir(out, result.date)
    part = write_parquet_atomic(result.table, folder / PART_NAME)
    from volfast.io.output import file_record

    write_manifest(
        folder,
        stage="snapshot",
        config=result.config,
        inputs=result.inputs,
        outputs=[dict(file_record(part), rows=result.table.num_rows)],
        counts=result.counts,
        warnings=result.warnings,
        extra={"date": result.date.isoformat(), "schema": "snapshot/1"},
    )
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
        Passed to :func:`volfast.snapshot` (cut, tz, lookback, stale_after, venues...).
    """
    days = [_as_date(d) for d in dates] if dates else list_dates(data)
    reports: list[DayReport] = []
    for d in days:
        rep = DayReport(date=d, status="failed")
        try:
            folder = day_dir(out, d)
            if not force and _day_is_current(data, d, folder, kwargs):
                rep.status, rep.folder = "skipped", folder
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", IngestWarning)  # kept in result.warnings and the manifest
                    res = snapshot(data=data, date=d, **kwargs)
                rep.folder = write_snapshot(res, out)
                rep.status, rep.rows, rep.warnings = "ok", res.table.num_rows, list(res.warnings)
        except (DBNReadError, SnapshotError, FileNotFoundError, OSError, ValueError) as exc:
            rep.error = str(exc)
        reports.append(rep)
        if on_day is not None:
            on_day(rep)
    return reports


def _day_is_current(data: str | os.PathLike[str], d: _dt.date, folder: Path, kwargs: dict[str, Any]) -> bool:
    """Cheap resume check: the manifest's inputs (name, size) and config must match what a run would use."""
    from volfast.io.output import read_manifest

    m = read_manifest(folder)
    if m is None:
        return False
    files = find_day_files(data, d)
    q = files.quotes()
    names = [p for p in (q[1] if q else [])] + files.definitions()
    inputs = [{"name": p.name, "size": p.stat().st_size} for p in names]
    want = dict(m.get("config", {}))
    for k, key in (("tz", "tz"), ("venues", "venues")):
        if k in kwargs and kwargs[k] != want.get(key):
            return False
    if "cut" in kwargs and str(kwargs["cut"]) != str(want.get("cut")):
        return False
    return manifest_matches(folder, config=want, inputs=inputs)
