"""Surfaces: a day's fitted surface rasterised onto fixed grids, written per day, read back as a dataset."""

from __future__ import annotations

from volfast.surface.dataset import (
    GRID_SCHEMA,
    DatasetError,
    DayGrids,
    SurfaceDataset,
    day_grids,
    grids_table,
    load_dataset,
    truth_dataset,
    write_day_grids,
)
from volfast.surface.grids import GRID_KINDS, GridConfig, cvae_grid, delta_grid, image_grid

__all__ = [
    "GRID_KINDS",
    "GRID_SCHEMA",
    "DatasetError",
    "DayGrids",
    "GridConfig",
    "SurfaceDataset",
    "cvae_grid",
    "day_grids",
    "delta_grid",
    "grids_table",
    "image_grid",
    "load_dataset",
    "truth_dataset",
    "write_day_grids",
]
