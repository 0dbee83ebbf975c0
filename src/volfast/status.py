"""The one status-code table: every per-element (or per-slice) status volfast's bulk functions return.

Bulk functions never raise per element; they return a small-integer status beside each value. The codes are
enums per function (their values are stored in the Parquet outputs, so they do not move), and the meaning
of each is documented here in one place: :func:`status_table` renders the table the README shows, from the
enums themselves, so the documentation cannot drift from the code.

=====================  =====================  ===============================================
function               enum                   success codes
=====================  =====================  ===============================================
``implied_vol``        :class:`IVStatus`      ``OK``
``implied_forward``    :class:`ForwardStatus` ``OK``, ``POOLED_DISCOUNT``, ``FLAGGED_BOX_BOUNDS``
``fit_svi``            :class:`SVIStatus`     ``OK``, ``REPAIRED``
=====================  =====================  ===============================================
"""

from __future__ import annotations

import enum
import inspect

__all__ = ["STATUS_ENUMS", "status_table"]

#: (public function, enum import path, success members)
STATUS_ENUMS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("implied_vol", "volfast.iv.black76:IVStatus", ("OK",)),
    (
        "implied_forward",
        "volfast.forward.core:ForwardStatus",
        ("OK", "POOLED_DISCOUNT", "FLAGGED_BOX_BOUNDS"),
    ),
    ("fit_svi", "volfast.svi.core:SVIStatus", ("OK", "REPAIRED")),
)


def _enum(path: str) -> type[enum.IntEnum]:
    import importlib

    mod, name = path.split(":")
    return getattr(importlib.import_module(mod), name)


def _comments(cls: type) -> dict[str, str]:
    """Each member's documentation in the enum's source: its trailing ``# ...`` / ``#: ...`` comment, or the
    ``#:`` comment lines just above it (Sphinx style, for text longer than a line)."""
    out: dict[str, str] = {}
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):  # pragma: no cover - no source (frozen install)
        return out
    above: list[str] = []
    for line in src.splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            above.append(stripped[2:].strip())
            continue
        left, _, comment = line.partition("#")
        if "=" in left:
            name = left.split("=")[0].strip()
            text = comment.lstrip(":").strip() if comment else " ".join(above)
            if text:
                out[name] = text
        above = []
    return out
    for line in src.splitlines():
        left, _, comment = line.partition("#")
        if "=" in left and comment:
            out[left.split("=")[0].strip()] = comment.lstrip(":").strip()
    return out


def status_table() -> str:
    """A Markdown table: function, code, name, success?, meaning; one row per status of every bulk
    function."""
    rows = ["| function | code | name | success | meaning |", "| --- | --- | --- | --- | --- |"]
    for fn, path, ok in STATUS_ENUMS:
        cls = _enum(path)
        notes = _comments(cls)
        for m in cls:
            yes = "yes" if m.name in ok else "no"
            rows.append(f"| `{fn}` | {int(m)} | `{m.name}` | {yes} | {notes.get(m.name, '')} |")
    return "\n".join(rows)
