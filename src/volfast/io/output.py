"""Atomic per-day outputs: Parquet partitions and their ``_manifest.json``.

Every stage that writes a day (snapshot, surfaces, build) goes through here, so a crash or Ctrl-C never leaves
a half-written file under its final name: bytes go to a temporary file in the same folder, are fsynced, and
``os.replace`` renames them into place (atomic on POSIX and Windows within one filesystem). A day is complete
when its manifest says ``"status": "complete"``; the manifest is written last (a stage that starts a day
first replaces its manifest with a ``"running"`` one, so an interrupted day is recorded as such). Whether a
day can be reused is decided by :func:`volfast.io.freshness.check`, the one freshness rule.

Files are created with the permissions the process umask allows (0644 under umask 022), like ``open``;
temporary files are named ``.<name>.<random>.tmp`` and :func:`clean_temporaries` removes the ones a killed
process left.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from volfast.errors import VolfastError

__all__ = [
    "MANIFEST_NAME",
    "OutputWriteError",
    "atomic_path",
    "atomic_write_bytes",
    "begin_manifest",
    "clean_temporaries",
    "config_hash",
    "day_dir",
    "fail_manifest",
    "manifest_matches",
    "read_manifest",
    "write_manifest",
    "write_parquet_atomic",
]

MANIFEST_NAME = "_manifest.json"


class OutputWriteError(VolfastError, OSError):
    """Writing an output failed (full disk, permissions...); names the file that was being written."""

    def __init__(self, path: str | os.PathLike[str], cause: BaseException) -> None:
        self.path = Path(path)
        super().__init__(getattr(cause, "errno", None), f"cannot write {self.path}: {cause}")


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


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    # os.umask can only be read by setting it; done once per process, at the first write.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Permissions of a new output file: ``0o666`` less the process umask (0644 under 022)."""
    return 0o666 & ~_umask()


def clean_temporaries(root: str | os.PathLike[str]) -> int:
    """Remove the ``.<name>.<random>.tmp`` files (:func:`atomic_path`) a killed process left anywhere
    under ``root``; never a file under a final name. Returns how many were removed."""
    n = 0
    root = Path(root)
    if not root.is_dir():
        return 0
    for p in root.rglob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            n += 1
    return n


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success fsync it and rename it to ``final``.

    On any exception the temporary file is removed and ``final`` is left untouched (an older complete file
    stays, a missing one stays missing).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, file_mode())  # mkstemp makes 0600 whatever the umask
    finally:
        os.close(fd)
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
    status: str = "complete",
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
    status : str
        ``"complete"`` (the outputs are in place), ``"running"`` (:func:`begin_manifest`) or ``"failed"``.
    """
    from volfast import __version__
    from volfast.io.freshness import code_identity

    doc = {
        "stage": stage,
        "status": status,
        "volfast_version": __version__,
        "code": code_identity(),
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


def begin_manifest(folder: str | os.PathLike[str], *, stage: str, config: Mapping[str, Any]) -> Path:
    """Record that ``stage`` is writing the day in ``folder`` (``"status": "running"``), replacing any earlier
    manifest: until the final one lands, the day reads as interrupted and is redone by the next run."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    return write_manifest(
        folder, stage=stage, config=config, inputs=[], outputs=[], counts={}, warnings=[], status="running"
    )


def fail_manifest(
    folder: str | os.PathLike[str],
    *,
    stage: str,
    config: Mapping[str, Any],
    error: str,
    removed: Sequence[str] = (),
    status: str = "failed",
) -> Path:
    """Record that the day failed in ``folder`` (``"status": "failed"``, or ``"invalid"`` when an earlier
    stage declared the day unusable), with the error and the earlier outputs that were removed so that no
    stale table outlives it; ``valid`` is false."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    return write_manifest(
        folder,
        stage=stage,
        config=config,
        inputs=[],
        outputs=[],
        counts={},
        warnings=[],
        status=status,
        extra={"error": error, "removed": list(removed), "valid": False, "reason": error},
    )


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
    output it lists exists with its recorded size: the day can be skipped. Prefer
    :func:`volfast.io.freshness.check`, which also compares input contents and says why not."""
    from volfast.io.freshness import code_identity

    m = read_manifest(folder)
    if m is None or m.get("config_hash") != config_hash(config):
        return False
    if m.get("status", "complete") != "complete" or m.get("code") != code_identity():
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
