"""Bulk reprocessing: per-day tasks (snapshot -> surfaces) over a date range, through an executor (serial,
local process pool, Dask), resumable from per-day manifests."""

from __future__ import annotations

from volfast.pipeline.build import BuildError, plan_days, run_build
from volfast.pipeline.config import (
    STAGE_NAMES,
    BuildConfig,
    ConfigError,
    ExecutorConfig,
    SnapshotStageConfig,
    load_config,
)
from volfast.pipeline.executors import apply_thread_limits, run_tasks, thread_env
from volfast.pipeline.summary import BuildSummary
from volfast.pipeline.tasks import (
    DayTask,
    OutputWriteError,
    StageUnavailable,
    day_seed,
    day_state,
    run_day,
    snapshot_folder,
    surfaces_stage,
)

__all__ = [
    "STAGE_NAMES",
    "BuildConfig",
    "BuildError",
    "BuildSummary",
    "ConfigError",
    "DayTask",
    "ExecutorConfig",
    "OutputWriteError",
    "SnapshotStageConfig",
    "StageUnavailable",
    "apply_thread_limits",
    "day_seed",
    "day_state",
    "load_config",
    "plan_days",
    "run_build",
    "run_day",
    "run_tasks",
    "snapshot_folder",
    "surfaces_stage",
    "thread_env",
]
