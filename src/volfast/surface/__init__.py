"""Surfaces: a day's quotes -> forwards -> implied vols -> SVI -> validity -> fitted surface ``w(k, T)``,
rasterised onto fixed grids, written per day, read back as a dataset."""

from __future__ import annotations

from volfast.surface.chain import ChainError, from_quotes
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
from volfast.surface.day import STAGES, SurfaceConfig, SurfaceDay, surface_day
from volfast.surface.grids import GRID_KINDS, GridConfig, cvae_grid, delta_grid, image_grid
from volfast.surface.interpolate import FittedSurface, svi_total_variance
from volfast.surface.run import (
    SurfaceDayReport,
    SurfacesError,
    read_output,
    read_snapshot_day,
    surface_snapshot,
    surfaces_day,
    surfaces_days,
    write_surface_day,
)
from volfast.surface.schemas import DAYS_SCHEMA, FORWARDS_SCHEMA, QUOTES_SCHEMA, SVI_SCHEMA
from volfast.surface.validity import DayValidity, ValidityConfig
from volfast.surface.vols import QuoteStatus, QuoteVols, quote_vols

__all__ = [
    "DAYS_SCHEMA",
    "FORWARDS_SCHEMA",
    "GRID_KINDS",
    "GRID_SCHEMA",
    "QUOTES_SCHEMA",
    "STAGES",
    "SVI_SCHEMA",
    "DatasetError",
    "DayGrids",
    "DayValidity",
    "FittedSurface",
    "GridConfig",
    "QuoteStatus",
    "QuoteVols",
    "SurfaceConfig",
    "SurfaceDataset",
    "SurfaceDay",
    "SurfaceDayReport",
    "SurfacesError",
    "ChainError",
    "ValidityConfig",
    "cvae_grid",
    "day_grids",
    "from_quotes",
    "delta_grid",
    "grids_table",
    "image_grid",
    "load_dataset",
    "quote_vols",
    "read_output",
    "read_snapshot_day",
    "surface_day",
    "surface_snapshot",
    "surfaces_day",
    "surfaces_days",
    "svi_total_variance",
    "truth_dataset",
    "write_day_grids",
    "write_surface_day",
]
