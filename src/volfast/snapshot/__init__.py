"""Quote snapshot: last top of book per instrument as of a cut time (C++ streaming reducer)."""

from volfast.snapshot.core import (
    SNAPSHOT_SCHEMA,
    SnapshotError,
    SnapshotResult,
    parse_duration,
    resolve_cut,
    snapshot,
    snapshot_schema,
)
from volfast.snapshot.run import DayReport, snapshot_days, write_snapshot

__all__ = [
    "SNAPSHOT_SCHEMA",
    "DayReport",
    "SnapshotError",
    "SnapshotResult",
    "parse_duration",
    "resolve_cut",
    "snapshot",
    "snapshot_days",
    "snapshot_schema",
    "write_snapshot",
]
