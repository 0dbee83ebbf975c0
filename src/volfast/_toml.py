"""TOML config files and ``--set`` overrides, one set of rules for every command that takes them.

A config file holds tables (``[model]``, ``[train]``, ``[stress]``...); ``--set SECTION.KEY=VALUE`` overrides
one value, parsed as TOML (``3``, ``0.5``, ``true``, ``[1, 2]``, ``"text"``) or taken as a string when it is a
bare word. Errors name the file, the table or the override, and are raised as the caller's error type.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["apply_overrides", "parse_value", "read_tables"]


def parse_value(text: str) -> Any:
    """An override's value: TOML when it parses as TOML, else the bare word as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def read_tables(
    path: str | os.PathLike[str] | None,
    allowed: Iterable[str] | None = None,
    *,
    error: type[Exception] = ValueError,
) -> dict[str, Any]:
    """The tables of a TOML config file (``{}`` for ``path=None``); a missing file, invalid TOML or a table
    outside ``allowed`` (when given) raises ``error`` naming the file."""
    if path is None:
        return {}
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise error(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: invalid TOML ({exc})") from None
    if allowed is not None:
        names = list(allowed)
        unknown = set(raw) - set(names)
        if unknown:
            raise error(f"{path}: unknown tables {sorted(unknown)}; expected {', '.join(names)}")
    return raw


def apply_overrides(
    sections: Mapping[str, dict[str, Any]],
    overrides: Sequence[str],
    *,
    default_section: str | None = None,
    error: type[Exception] = ValueError,
) -> None:
    """Apply ``SECTION.KEY=VALUE`` overrides to ``sections`` in place; with ``default_section`` a plain
    ``KEY=VALUE`` goes to that section."""
    names = list(sections)
    forms = " or ".join(f"{s}.KEY=VALUE" for s in names) + (" or KEY=VALUE" if default_section else "")
    for o in overrides:
        key, sep, val = o.partition("=")
        sec, dot, name = key.strip().partition(".")
        if not dot and default_section is not None:
            sec, name = default_section, sec
        if not sep or not name or "." in name or sec not in sections:
            raise error(f"override {o!r}: expected {forms}")
        sections[sec][name] = parse_value(val.strip())
