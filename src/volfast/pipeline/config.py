"""Build configuration: frozen dataclasses loaded from TOML, overridable from the command line.

A file looks like this (every key optional; the values shown are the defaults)::

    seed = 0                            # master seed; day d gets day_seed(seed, d)
    stages = ["snapshot", "surfaces"]   # run in this order; a later stage reads the earlier one's output

    [snapshot]                          # passed to volfast.take_snapshot()
    cut = "15:48"                       # time of day in tz
    tz = "America/New_York"
    lookback = "10m"
    stale_after = "60s"
    venues = "auto"                     # auto | consolidate | single
    chunk_records = 65536               # records per chunk: bounds the memory of a day's pass

    [surfaces]                          # handed to the surfaces stage as a mapping (its own keys)

    [executor]                          # how days are run; not part of any day's config hash
    kind = "local"                      # local | dask | serial
    workers = 0                         # 0: one per core (local), LocalCluster default (dask)
    threads_per_worker = 0              # 0: cores // workers, at least 1
    scheduler = ""                      # dask scheduler address; empty: start a LocalCluster
    retries = 2                         # extra attempts for a day whose worker died

Only ``seed`` and the stage sections are hashed into the day manifests: changing the executor or the number
of workers never redoes a day.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from volfast.errors import UsageError, VolfastError

__all__ = [
    "STAGE_NAMES",
    "BuildConfig",
    "ConfigError",
    "ExecutorConfig",
    "SnapshotStageConfig",
    "load_config",
]

#: Every stage the pipeline knows, in the order they run.
STAGE_NAMES: tuple[str, ...] = ("snapshot", "surfaces")
EXECUTOR_KINDS: tuple[str, ...] = ("local", "dask", "serial")


class ConfigError(UsageError):
    """A configuration that cannot be used (names the file, the key and what is wrong); exit code 2."""


@dataclass(frozen=True)
class SnapshotStageConfig:
    """Parameters of :func:`volfast.take_snapshot` for the build (see its docstring for units)."""

    cut: str = "15:48"  # time of day in ``tz``
    tz: str = "America/New_York"
    lookback: str = "10m"  # window before the cut
    stale_after: str = "60s"  # quotes older than this at the cut are flagged stale
    venues: str = "auto"  # auto | consolidate | single
    chunk_records: int = 1 << 16  # records per chunk (about 80 bytes each): the memory bound of a day

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`volfast.take_snapshot`."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ExecutorConfig:
    """How the days are run. Not hashed into the outputs: results do not depend on it."""

    kind: str = "local"  # local (process pool) | dask (dask.distributed) | serial (in this process)
    workers: int = 0  # 0: one per core for local; the LocalCluster default for dask
    threads_per_worker: int = 0  # C++ / Numba / BLAS threads per worker; 0: cores // workers, >= 1
    scheduler: str = ""  # dask scheduler address ("tcp://host:8786"); empty: start a LocalCluster
    retries: int = 2  # extra attempts for a day whose worker process died

    def resolved_workers(self) -> int:
        """Worker processes for the local executor: ``workers`` or one per core."""
        return self.workers if self.workers > 0 else max(1, os.cpu_count() or 1)

    def resolved_threads(self, workers: int | None = None) -> int:
        """Threads per worker so that ``workers * threads`` does not exceed the cores."""
        if self.threads_per_worker > 0:
            return self.threads_per_worker
        w = workers if workers is not None else self.resolved_workers()
        return max(1, (os.cpu_count() or 1) // max(1, w))


@dataclass(frozen=True)
class BuildConfig:
    """Everything a day's outputs depend on (plus the executor, which they do not)."""

    seed: int = 0
    stages: tuple[str, ...] = STAGE_NAMES
    snapshot: SnapshotStageConfig = field(default_factory=SnapshotStageConfig)
    # The surfaces stage's own keys, kept as sorted (key, value) pairs so the config stays hashable/frozen.
    surfaces: tuple[tuple[str, Any], ...] = ()
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    def __post_init__(self) -> None:
        _check(self)

    def surfaces_params(self) -> dict[str, Any]:
        """The ``[surfaces]`` table as a dict."""
        return {k: _thaw(v) for k, v in self.surfaces}

    def stage_config(self, stage: str) -> dict[str, Any]:
        """What a stage's outputs depend on: its own parameters and the seed (hashed into its manifest).

        A stage's config includes the configs of the stages before it, so changing the snapshot cut also
        redoes the surfaces.
        """
        if stage not in STAGE_NAMES:
            raise ConfigError(f"unknown stage {stage!r}; known: {', '.join(STAGE_NAMES)}")
        doc: dict[str, Any] = {"seed": self.seed, "snapshot": self.snapshot.kwargs()}
        if stage == "surfaces":
            doc["surfaces"] = self.surfaces_params()
        return doc

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration (TOML-shaped), saved beside the outputs."""
        return {
            "seed": self.seed,
            "stages": list(self.stages),
            "snapshot": self.snapshot.kwargs(),
            "surfaces": self.surfaces_params(),
            "executor": dataclasses.asdict(self.executor),
        }

    def replace(self, **changes: Any) -> BuildConfig:
        """A copy with top-level fields changed; ``executor`` / ``snapshot`` may be given as dicts of fields
        to change."""
        for name, typ in (("executor", ExecutorConfig), ("snapshot", SnapshotStageConfig)):
            if isinstance(changes.get(name), Mapping):
                cur = getattr(self, name)
                upd = {k: v for k, v in changes[name].items() if v is not None}
                _known(upd, typ, f"[{name}]", "overrides")
                changes[name] = dataclasses.replace(cur, **upd)
        if "stages" in changes:
            changes["stages"] = tuple(changes["stages"])
        return dataclasses.replace(self, **changes)


def _freeze(v: Any) -> Any:
    if isinstance(v, Mapping):
        return tuple(sorted((str(k), _freeze(x)) for k, x in v.items()))
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


def _thaw(v: Any) -> Any:
    if isinstance(v, tuple) and all(
        isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in v
    ):
        return {k: _thaw(x) for k, x in v} if v else []
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v


def _check(c: BuildConfig) -> None:
    if isinstance(c.seed, bool) or not isinstance(c.seed, int) or c.seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {c.seed!r}")
    if not c.stages:
        raise ConfigError("stages is empty: name at least one of " + ", ".join(STAGE_NAMES))
    bad = [s for s in c.stages if s not in STAGE_NAMES]
    if bad:
        raise ConfigError(f"unknown stage(s) {', '.join(map(repr, bad))}; known: {', '.join(STAGE_NAMES)}")
    if list(c.stages) != [s for s in STAGE_NAMES if s in c.stages]:
        raise ConfigError(
            f"stages must keep the pipeline order {', '.join(STAGE_NAMES)}; got {list(c.stages)}"
        )
    if c.stages[0] != "snapshot":
        # Every later stage reads its day's snapshot; running it is cheap and keeps a day self-contained.
        raise ConfigError("stages must start with 'snapshot' (later stages read its output)")
    s = c.snapshot
    if s.venues not in ("auto", "consolidate", "single"):
        raise ConfigError(f"snapshot.venues must be auto, consolidate or single, got {s.venues!r}")
    if isinstance(s.chunk_records, bool) or not isinstance(s.chunk_records, int) or s.chunk_records < 1:
        raise ConfigError(f"snapshot.chunk_records must be a positive integer, got {s.chunk_records!r}")
    # Every value is checked now, when the config is read, not by each day as it runs.
    from volfast.snapshot.run import snapshot_settings

    try:
        snapshot_settings(**s.kwargs())
    except VolfastError as exc:
        raise ConfigError(f"[snapshot] {exc}") from None
    if c.surfaces:
        try:
            from volfast.surface.day import SurfaceConfig
        except ImportError:  # a build without the surfaces stage: resolve_stages says so
            pass
        else:
            try:
                SurfaceConfig.from_dict(c.surfaces_params())
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"[surfaces] {exc}") from None
    e = c.executor
    if e.kind not in EXECUTOR_KINDS:
        raise ConfigError(f"executor.kind must be one of {', '.join(EXECUTOR_KINDS)}, got {e.kind!r}")
    for name in ("workers", "threads_per_worker", "retries"):
        v = getattr(e, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(f"executor.{name} must be a non-negative integer, got {v!r}")
    if e.scheduler and e.kind != "dask":
        raise ConfigError(
            f"executor.scheduler is set ({e.scheduler!r}) but executor.kind is {e.kind!r}, not dask"
        )


def _known(table: Mapping[str, Any], typ: type, where: str, source: str) -> None:
    names = {f.name for f in dataclasses.fields(typ)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)} in {where}; known: {', '.join(sorted(names))}"
        )


def config_from_mapping(doc: Mapping[str, Any], *, source: str = "config") -> BuildConfig:
    """Build a :class:`BuildConfig` from a TOML-shaped mapping; unknown keys are errors naming ``source``."""
    top = {"seed", "stages", "snapshot", "surfaces", "executor"}
    unknown = sorted(set(doc) - top)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(top))}")
    kw: dict[str, Any] = {}
    if "seed" in doc:
        kw["seed"] = doc["seed"]
    if "stages" in doc:
        if not isinstance(doc["stages"], list):
            raise ConfigError(f"{source}: stages must be a list of stage names, got {doc['stages']!r}")
        kw["stages"] = tuple(doc["stages"])
    for name, typ in (("snapshot", SnapshotStageConfig), ("executor", ExecutorConfig)):
        if name in doc:
            table = doc[name]
            if not isinstance(table, Mapping):
                raise ConfigError(f"{source}: [{name}] must be a table")
            _known(table, typ, f"[{name}]", source)
            for f in dataclasses.fields(typ):
                if f.name in table:
                    want = type(getattr(typ(), f.name))
                    got = table[f.name]
                    if type(got) is not want:
                        raise ConfigError(f"{source}: [{name}] {f.name} must be {want.__name__}, got {got!r}")
            kw[name] = typ(**table)
    if "surfaces" in doc:
        if not isinstance(doc["surfaces"], Mapping):
            raise ConfigError(f"{source}: [surfaces] must be a table")
        kw["surfaces"] = _freeze(doc["surfaces"])
    try:
        return BuildConfig(**kw)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_config(path: str | os.PathLike[str] | None, overrides: Sequence[str] = ()) -> BuildConfig:
    """Read a TOML build config (None: the defaults), then ``--set`` overrides: ``seed=3``,
    ``snapshot.lookback=1s``, ``surfaces.max_rmse=0.02``, ``executor.workers=2`` (values parsed as TOML, bare
    words as strings; the same rules as every other command's ``--set``, :mod:`volfast._toml`). Every value
    is checked here, before any day runs.

    Raises
    ------
    ConfigError
        The file is missing, not valid TOML, or has unknown keys or values of the wrong type, or an override
        is malformed; the message names the file (or ``--set``), the table and the key.
    """
    if path is None and not overrides:
        return BuildConfig()
    from volfast._toml import apply_overrides, read_tables

    raw = read_tables(path, error=ConfigError)
    tables = ("snapshot", "surfaces", "executor")
    sections: dict[str, dict[str, Any]] = {"build": {k: v for k, v in raw.items() if k not in tables}}
    for t in tables:
        if t in raw and not isinstance(raw[t], Mapping):
            raise ConfigError(f"{path}: [{t}] must be a table")
        sections[t] = dict(raw.get(t, {}))
    apply_overrides(sections, overrides, default_section="build", error=ConfigError)
    doc: dict[str, Any] = dict(sections["build"])
    doc.update({t: sections[t] for t in tables if sections[t] or t in raw})
    source = str(path) if path is not None else "--set"
    if path is not None and overrides:
        source = f"{path} with --set"
    # unknown tables and keys are named by config_from_mapping, with the key that is wrong
    return config_from_mapping(doc, source=source)
