"""TOML + ``--set`` overrides into the agent's frozen dataclass configs (the same rules as
:func:`volfast.models.train.load_config`: unknown keys and wrong types are errors naming the file/key)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from volfast._toml import apply_overrides, read_tables
from volfast.errors import VolfastError
from volfast.models.io import SettingsError, config_from_dict

__all__ = ["AgentError", "load_section", "write_json"]

T = TypeVar("T")


class AgentError(VolfastError, ValueError):
    """A stress or hedge input that cannot be used as asked (names what is missing and how to make it)."""


def load_section(
    cls: type[T], section: str, path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()
) -> T:
    """``cls`` from table ``[section]`` of a TOML file, then ``KEY=VALUE`` or ``section.KEY=VALUE``
    overrides (values parsed as TOML, bare words as strings)."""
    where = str(path) if path else "config"
    d = dict(read_tables(path, error=SettingsError).get(section, {}))
    apply_overrides({section: d}, overrides, default_section=section, error=SettingsError)
    # TOML reads a bare 2024-01-02 as a date: the configs keep dates as ISO strings
    d = {k: v.isoformat() if isinstance(v, (_dt.date, _dt.datetime)) else v for k, v in d.items()}
    cfg: T = config_from_dict(cls, d, where=f"{where} [{section}]")
    return cfg


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write (the one atomic write, :func:`volfast.io.output.atomic_write_bytes`)."""
    from volfast.io.output import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(obj, indent=2, default=str).encode())


def asdict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
