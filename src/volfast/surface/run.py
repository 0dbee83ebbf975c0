"""Writing a day's surface to disk and running the surfaces stage over many days (``volfast surfaces``).

Layout under ``OUT`` (one hive-partitioned dataset per table)::

    OUT/quotes/date=YYYY-MM-DD/part-0.parquet     every option: bid/ask/mid vols, statuses, fit vol
    OUT/forwards/date=YYYY-MM-DD/part-0.parquet   per expiry: forward, discount factor, bounds, status
    OUT/svi/date=YYYY-MM-DD/part-0.parquet        per expiry: raw SVI, diagnostics, validity checks
    OUT/grids/date=YYYY-MM-DD/part-0.parquet      valid days only: image, cvae, delta grids (load_dataset)
    OUT/days/date=YYYY-MM-DD/part-0.parquet       one row: valid, reason, counts, timings
    OUT/days/date=YYYY-MM-DD/_manifest.json       written last: the day is complete when it exists

Each file is written to a temporary name and renamed into place; the manifest's outputs name the files
relative to its folder (``../../quotes/...``), so :func:`volfast.io.freshness.check` (the one freshness rule:
settings, code identity, input contents, outputs) checks them all and a finished day is skipped on the next
run. A day that fails loses every table it had (its manifest says ``failed`` and why).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from volfast.errors import VolfastError
from volfast.io.output import (
    MANIFEST_NAME,
    begin_manifest,
    day_dir,
    fail_manifest,
    read_manifest,
    write_manifest,
    write_parquet_atomic,
)
from volfast.surface.day import SurfaceConfig, SurfaceDay, surface_day

__all__ = [
    "SurfaceDayReport",
    "SurfacesError",
    "read_output",
    "read_snapshot_day",
    "surface_snapshot",
    "surfaces_day",
    "surfaces_days",
    "write_surface_day",
]

PART = "part-0.parquet"
TABLES = ("quotes", "forwards", "svi", "grids", "days")
STAGE = "surfaces"


class SurfacesError(VolfastError, ValueError):
    """A day's input cannot be used (names the file and what is wrong)."""


def _rel(folder: Path, path: Path) -> str:
    return os.path.relpath(path, folder)


def _days_table(day: SurfaceDay) -> Any:
    import pyarrow as pa

    from volfast.surface.schemas import DAYS_SCHEMA

    c = day.counts
    row = {
        "valid": [day.valid],
        "reason": [day.reason],
        "cut": pa.array([day.cut_ns], pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
        "options": [c.get("options", 0)],
        "quotes_used": [c.get("quotes_used", 0)],
        "expiries": [c.get("expiries", 0)],
        "expiries_with_forward": [c.get("expiries_with_forward", 0)],
        "expiries_fitted": [c.get("expiries_fitted", 0)],
        "expiries_valid": [c.get("expiries_valid", 0)],
        "counts": [json.dumps(c, sort_keys=True)],
        "timings": [json.dumps({k: round(v, 6) for k, v in day.timings.items()})],
    }
    return pa.table(row).cast(DAYS_SCHEMA)


def write_surface_day(
    day: SurfaceDay,
    out: str | os.PathLike[str],
    *,
    inputs: Sequence[Mapping[str, Any]] = (),
    config: dict[str, Any] | None = None,
) -> Path:
    """Write one day's tables and manifest under ``out`` (layout in the module docstring).

    On an invalid day any ``grids`` partition of that date left by an earlier run is removed, so
    :func:`~volfast.surface.load_dataset` only ever sees valid days. Returns the day's ``days`` folder.
    """
    from volfast.io.output import file_record
    from volfast.surface.dataset import grids_table

    root = Path(out)
    folder = day_dir(root / "days", day.date)
    mcfg = config if config is not None else _manifest_config(day.config)
    begin_manifest(folder, stage=STAGE, config=mcfg)  # the day is incomplete until the final manifest lands
    written: list[tuple[Path, int]] = []
    for name, table in (("quotes", day.quotes), ("forwards", day.forwards), ("svi", day.svi)):
        p = write_parquet_atomic(table, day_dir(root / name, day.date) / PART)
        written.append((p, table.num_rows))
    grid_path = day_dir(root / "grids", day.date) / PART
    if day.grids is not None:
        gt = grids_table(day.grids, day.config.grids)
        written.append((write_parquet_atomic(gt, grid_path), gt.num_rows))
    else:
        with contextlib.suppress(FileNotFoundError):
            grid_path.unlink()
    written.append((write_parquet_atomic(_days_table(day), folder / PART), 1))
    outputs: list[Mapping[str, Any]] = []
    for p, rows in written:
        rec = file_record(p)
        rec["name"] = _rel(folder, p)
        rec["rows"] = rows
        outputs.append(rec)
    write_manifest(
        folder,
        stage=STAGE,
        config=mcfg,
        inputs=list(inputs),
        outputs=outputs,
        counts=day.counts,
        warnings=day.warnings,
        extra={
            "date": day.date.isoformat(),
            "schema": "surfaces/1",
            "valid": day.valid,
            "reason": day.reason,
            "timings_s": {k: round(v, 6) for k, v in day.timings.items()},
        },
    )
    return folder


def _manifest_config(cfg: SurfaceConfig) -> dict[str, Any]:
    return {"surfaces": cfg.to_dict()}


def surface_snapshot(
    result: Any,
    *,
    out: str | os.PathLike[str] | None = None,
    config: SurfaceConfig | None = None,
    threads: int | None = None,
) -> SurfaceDay:
    """The day's surface straight from a :class:`volfast.snapshot.SnapshotResult` (no snapshot on disk);
    with ``out`` it is also written (the manifest lists the snapshot's DBN inputs)."""
    if result.date is None:
        raise ValueError("the snapshot has no date")
    dataset = (getattr(result, "config", None) or {}).get("dataset")
    day = surface_day(
        result.table, cut_ns=result.cut_ns, date=result.date, config=config, threads=threads, dataset=dataset
    )
    if out is not None:
        write_surface_day(day, out, inputs=result.inputs)
    return day


def read_snapshot_day(folder: str | os.PathLike[str]) -> tuple[Any, int, _dt.date]:
    """``(table, cut_ns, date)`` of a ``volfast snapshot`` day folder (``date=.../part-0.parquet`` and its
    ``_manifest.json``); raises :class:`SurfacesError` naming the file when either is missing or damaged."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    part = folder / PART
    if not part.is_file():
        raise SurfacesError(f"{part}: missing snapshot partition")
    m = read_manifest(folder)
    if m is None:
        raise SurfacesError(
            f"{folder / MANIFEST_NAME}: missing or unreadable; the snapshot day is incomplete "
            "(rerun `volfast snapshot`)"
        )
    if m.get("status", "complete") != "complete":
        raise SurfacesError(
            f"{folder / MANIFEST_NAME}: the snapshot day is {m.get('status')} "
            f"({m.get('error') or 'interrupted'}); rerun `volfast snapshot`"
        )
    try:
        cut = m["cut_ns"] if "cut_ns" in m else m["config"]["cut_utc"]
        cut_ns = int(cut) if isinstance(cut, int) else _iso_to_ns(str(cut))
        date = _dt.date.fromisoformat(m.get("date") or folder.name[5:])
    except (KeyError, ValueError, TypeError) as exc:
        raise SurfacesError(f"{folder / MANIFEST_NAME}: no usable cut time / date ({exc!r})") from None
    try:
        table = pq.read_table(part)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise SurfacesError(f"{part}: unreadable snapshot partition ({exc})") from None
    for outp in m.get("outputs", []):
        if outp.get("name") == PART and outp.get("size") not in (None, part.stat().st_size):
            raise SurfacesError(
                f"{part}: size {part.stat().st_size} differs from its manifest "
                f"({outp.get('size')}); the partition was changed after it was written"
            )
    from volfast.snapshot.core import SNAPSHOT_SCHEMA

    missing = [f.name for f in SNAPSHOT_SCHEMA if f.name not in table.column_names]
    if missing:
        raise SurfacesError(f"{part}: not a snapshot table (lacks {', '.join(missing)})")
    return table, cut_ns, date


def snapshot_dataset(folder: str | os.PathLike[str]) -> str | None:
    """The Databento dataset of a ``volfast snapshot`` day (from its manifest: the quote files' metadata),
    None when the manifest does not say (e.g. an older snapshot)."""
    m = read_manifest(Path(folder)) or {}
    ds = (m.get("config") or {}).get("dataset")
    if not ds:
        for rec in m.get("inputs") or []:
            if rec.get("role", "quotes") == "quotes" and rec.get("dataset"):
                ds = rec["dataset"]
                break
    return str(ds) if ds else None


def _iso_to_ns(s: str) -> int:
    """``"2024-01-02T20:48:00.000000Z"`` (UTC, as snapshot manifests write it) -> nanoseconds."""
    s = s.strip()
    if s.endswith("Z"):
        s = s[:-1]
    elif "+" in s[10:] or "-" in s[10:]:
        raise ValueError(f"cut {s!r} is not UTC")
    return int(np.datetime64(s, "ns").astype(np.int64))


def read_output(
    out: str | os.PathLike[str],
    table: str,
    *,
    start: _dt.date | str | None = None,
    end: _dt.date | str | None = None,
) -> Any:
    """One of the ``volfast surfaces`` tables (``quotes``, ``forwards``, ``svi``, ``grids``, ``days``) over
    all days (or ``start <= date <= end``) as one ``pyarrow.Table``, days in order.

    The date comes from each partition's folder name and is added as the first column (``date32``).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if table not in TABLES:
        raise ValueError(f"table must be one of {TABLES}, got {table!r}")
    folder = Path(out) / table
    lo = _dt.date.fromisoformat(str(start)) if start is not None else None
    hi = _dt.date.fromisoformat(str(end)) if end is not None else None
    parts = []
    for d in _snapshot_days(folder):
        if (lo is None or d >= lo) and (hi is None or d <= hi):
            p = day_dir(folder, d) / PART
            if p.is_file():
                t = pq.read_table(p)
                parts.append(t.add_column(0, "date", pa.array([d] * t.num_rows, pa.date32())))
    if not parts:
        raise SurfacesError(f"{folder}: no partitions (date=YYYY-MM-DD/{PART}); run `volfast surfaces`")
    return pa.concat_tables(parts)


@dataclass
class SurfaceDayReport:
    """What happened to one day of a multi-day run."""

    date: _dt.date
    status: str  # "ok", "skipped" (manifest matched), "failed"
    valid: bool | None = None  # None when failed
    reason: str = ""
    folder: Path | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    why: str = ""  # why the day was recomputed, or "up to date" when skipped (the freshness rule)


def _snapshot_days(snapshots: Path) -> list[_dt.date]:
    out = []
    for d in sorted(snapshots.glob("date=*")):
        try:
            out.append(_dt.date.fromisoformat(d.name[5:]))
        except ValueError:
            continue
    return out


def surfaces_day(
    snapshots: str | os.PathLike[str],
    date: _dt.date | str,
    out: str | os.PathLike[str],
    *,
    config: SurfaceConfig | None = None,
    force: bool = False,
    threads: int | None = None,
) -> SurfaceDayReport:
    """One day of the surfaces stage: read ``SNAPSHOTS/date=.../``, build, write; never raises for a bad day
    (the report says ``failed`` and why). The same steps as every day of :func:`surfaces_days`
    (:func:`volfast.pipeline.runner.run_one`)."""
    from volfast.pipeline.runner import run_one

    d = date if isinstance(date, _dt.date) else _dt.date.fromisoformat(str(date))
    job = _SurfacesDays(Path(snapshots), Path(out), config or SurfaceConfig(), threads)
    return run_one(job.job(), d, force=force)


@dataclass(frozen=True)
class _SurfacesDays:
    """The hooks of one ``volfast surfaces`` day for the per-day runner (:mod:`volfast.pipeline.runner`)."""

    snapshots: Path
    out: Path
    config: SurfaceConfig
    threads: int | None

    def job(self) -> Any:
        from volfast.pipeline.runner import DayJob

        return DayJob(check=self.check, run=self.run, reused=self.reused, failed=self.failed)

    def _input(self, d: _dt.date) -> tuple[Path, str]:
        part = day_dir(self.snapshots, d) / PART
        if not part.is_file():
            raise SurfacesError(f"{part}: missing snapshot partition")
        return part, _rel(self.snapshots, part)

    def check(self, d: _dt.date) -> Any:
        from volfast.io.freshness import check

        part, name = self._input(d)
        folder = day_dir(self.out / "days", d)
        return check(folder, stage=STAGE, config=_manifest_config(self.config), inputs=[(name, part)])

    def reused(self, d: _dt.date, fresh: Any) -> SurfaceDayReport:
        m = fresh.manifest or {}
        return SurfaceDayReport(
            date=d, status="skipped", folder=day_dir(self.out / "days", d), reason=m.get("reason", ""),
            valid=m.get("valid"), counts=m.get("counts", {}), why=fresh.reason,
        )  # fmt: skip

    def run(self, d: _dt.date, why: str) -> SurfaceDayReport:
        from volfast.io.output import file_record

        part, name = self._input(d)
        snap = part.parent
        table, cut_ns, sdate = read_snapshot_day(snap)
        if sdate != d:
            raise SurfacesError(f"{snap / MANIFEST_NAME}: says date {sdate}, folder says {d}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            day = surface_day(
                table, cut_ns=cut_ns, date=d, config=self.config, threads=self.threads,
                dataset=snapshot_dataset(snap),
            )  # fmt: skip
        rec = dict(file_record(part), name=name)
        folder = write_surface_day(day, self.out, inputs=[rec], config=_manifest_config(self.config))
        return SurfaceDayReport(
            date=d, status="ok", valid=day.valid, reason=day.reason, folder=folder, counts=day.counts,
            timings=day.timings, warnings=list(day.warnings), why=why,
        )  # fmt: skip

    def failed(self, d: _dt.date, exc: BaseException, why: str) -> SurfaceDayReport:
        _fail_day(self.out, d, _manifest_config(self.config), str(exc))
        return SurfaceDayReport(date=d, status="failed", error=str(exc), why=why)


def _fail_day(out: Path, d: _dt.date, mcfg: dict[str, Any], error: str) -> None:
    """A failed day keeps no table from an earlier run; its manifest says why (best effort)."""
    folder = day_dir(out / "days", d)
    parts = [day_dir(out / t, d) / PART for t in TABLES]
    if not folder.exists() and not any(p.exists() for p in parts):
        return
    removed = []
    try:
        for p in parts:
            if p.exists():
                p.unlink()
                removed.append(_rel(folder, p))
        fail_manifest(folder, stage=STAGE, config=mcfg, error=error, removed=removed)
    except OSError:
        pass


def surfaces_days(
    snapshots: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    dates: Sequence[str | _dt.date] | None = None,
    config: SurfaceConfig | None = None,
    force: bool = False,
    threads: int | None = None,
    on_day: Callable[[SurfaceDayReport], None] | None = None,
) -> list[SurfaceDayReport]:
    """Run :func:`surfaces_day` over every day of a ``volfast snapshot`` output folder (or ``dates``);
    a failing day is reported and the others go on; days whose manifest matches are skipped.

    Raises :class:`SurfacesError` when ``snapshots`` is not a folder or holds no ``date=`` partitions.
    """
    root = Path(snapshots)
    if not root.is_dir():
        raise SurfacesError(f"{root}: not a folder of snapshot days")
    from volfast.io.dbn import _as_date

    days = [_as_date(d) for d in dates] if dates else _snapshot_days(root)  # a bad date: UsageError
    if not days:
        raise SurfacesError(
            f"{root}: no snapshot days (date=YYYY-MM-DD/part-0.parquet); run `volfast snapshot`"
        )
    from volfast.pipeline.runner import run_days

    job = _SurfacesDays(root, Path(out), config or SurfaceConfig(), threads)
    return run_days(days, job.job(), force=force, on_day=on_day, temp_root=out)
