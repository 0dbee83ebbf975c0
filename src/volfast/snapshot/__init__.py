"""Quote snapshot: last top of book per instrument as of a cut time (C++ streaming reducer).

``volfast.snapshot`` is this subpackage; the function is :func:`take_snapshot` (also
``volfast.take_snapshot``; ``volfast.snapshot.snapshot`` is the same function under its older name)."""

from volfast.snapshot.core import (
    SNAPSHOT_SCHEMA,
    SnapshotError,
    SnapshotResult,
    check_tz,
    parse_duration,
    resolve_cut,
    snapshot,
    snapshot_schema,
    take_snapshot,
)
from volfast.snapshot.run import DayReport, snapshot_days, snapshot_settings, write_snapshot

__all__ = [
    "SNAPSHOT_SCHEMA",
    "DayReport",
    "SnapshotError",
    "SnapshotResult",
    "parse_duration",
    "resolve_cut",
    "snapshot",
    "check_tz",
    "snapshot_days",
    "snapshot_schema",
    "snapshot_settings",
    "take_snapshot",
    "write_snapshot",
]
