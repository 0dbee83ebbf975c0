"""Atomic per-day outputs: Parquet partitions and their ``_manifest.json``.

Every stage that writes a day (snapshot, surfaces, build) goes through here, so a crash or Ctrl-C never leaves
a half-written file under its final name: bytes go to a temporary file in the same folder, are fsynced, and
``os.replace`` renames them into place (atomic on POSIX and Windows within one filesystem). A day is complete
when its manifest exists; the manifest is written last.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "MANIFEST_NAME",
    "atomic_path",
    "atomic_write_bytes",
    "config_hash",
    "day_dir",
    "manifest_matches",
    "read_manifest",
    "write_manifest",
    "write_parquet_atomic",
]

MANIFEST_NAME = "_manifest.json"


def day_dir(out: str | os.PathLike[str], date: _dt.date | str) -> Path:
    """``OUT/date=YYYY-MM-DD`` (hive-style partition folder)."""
    d = date.isoformat() if isinstance(date, _dt.date) else str(date)
    return Path(out) / f"date={d}"


def _fsync_dir(path: Path) -> None:
    # Make the rename itself durable; not possible (nor needed) on Windows.
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success fsync it and rename it to ``final``.

    On any exception the temporary file is removed and ``final`` is left untouched (an older complete file
    stays, a missing one stays missing).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(final: str | os.PathLike[str], write: Callable[[BinaryIO], Any] | bytes) -> Path:
    """Write ``final`` atomically from bytes or from a callback that writes to a binary file object."""
    with atomic_path(final) as tmp, open(tmp, "wb") as fh:
        if isinstance(write, (bytes, bytearray, memoryview)):
            fh.write(write)
        else:
            write(fh)
    return Path(final)


def write_parquet_atomic(table: Any, final: str | os.PathLike[str], *, compression: str = "zstd") -> Path:
    """Write a ``pyarrow.Table`` to ``final`` atomically (zstd by default); the schema is the table's."""
    import pyarrow.parquet as pq

    with atomic_path(final) as tmp:
        pq.write_table(table, tmp, compression=compression)
    return Path(final)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a config (key order and whitespace do not matter)."""
    return hashlib.sha256(_canonical(config).encode()).hexdigest()


def write_manifest(
    folder: str | os.PathLike[str],
    *,
    stage: str,
    config: Mapping[str, Any],
    inputs: Sequence[Mapping[str, Any]],
    outputs: Sequence[Mapping[str, Any]],
    counts: Mapping[str, Any],
    warnings: list[str],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``folder/_manifest.json`` atomically.

    Parameters
    ----------
    stage : str
        Which stage wrote the day (``"snapshot"``...).
    config : mapping
        The resolved configuration; its hash is stored as ``config_hash``.
    inputs, outputs : sequence of mappings
        Files with at least ``name``, ``size`` and ``sha256``.
    counts : mapping
        Row and record counts.
    warnings : list of str
        Data problems met on the way (also emitted as Python warnings).
    """
    from volfast import __version__

    doc = {
        "stage": stage,
        "volfast_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": dict(config),
        "config_hash": config_hash(config),
        "inputs": [dict(i) for i in inputs],
        "outputs": [dict(o) for o in outputs],
        "counts": dict(counts),
        "warnings": list(warnings),
    }
    if extra:
        doc.update(extra)
    final = Path(folder) / MANIFEST_NAME
    atomic_write_bytes(final, (json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n").encode())
    return final


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest of a day folder, or None when absent or unreadable (an unreadable one means redo)."""
    p = Path(folder) / MANIFEST_NAME
    try:
        return json.loads(p.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def manifest_matches(
    folder: str | os.PathLike[str], *, config: Mapping[str, Any], inputs: Sequence[Mapping[str, Any]]
) -> bool:
    """True when the day's manifest has the same config hash and the same inputs (name and size) and every
    output it lists exists with its recorded size: the day can be skipped."""
    m = read_manifest(folder)
    if m is None or m.get("config_hash") != config_hash(config):
        return False
    have = sorted((i["name"], i["size"]) for i in m.get("inputs", []))
    want = sorted((i["name"], i["size"]) for i in inputs)
    if have != want:
        return False
    for o in m.get("outputs", []):
        p = Path(folder) / o["name"]
        if not p.is_file() or p.stat().st_size != o["size"]:
            return False
    return True


def file_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"name", "size", "sha256"}`` of a file, for manifests."""
    from volfast.io.dbn import file_sha256

    p = Path(path)
    return {"name": p.name, "size": p.stat().st_size, "sha256": file_sha256(p)}
