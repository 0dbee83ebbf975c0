"""From a :class:`~volfast.surface.SurfaceDataset` to model arrays: masking, splits, statistics.

Masking rule (documented, tested): a day enters a model only if its grid of the model's kind has no NaN
cell (and, for the CVAE, all three condition year fractions are finite); see
:meth:`SurfaceDataset.complete`. Incomplete days are dropped and counted, never imputed. For sequence
models a dropped day, or a calendar gap longer than ``max_gap_days``, breaks the sequence: no window spans
it (:func:`sequence_breaks`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from pathlib import Path
from typing import Any

import numpy as np

from volfast.surface import DatasetError, SurfaceDataset, load_dataset, truth_dataset

__all__ = ["Split", "grid_axis_k", "open_data", "sequence_breaks", "split_dates", "usable"]


def open_data(path: str | os.PathLike[str], *, cache: str | os.PathLike[str] | None = None) -> SurfaceDataset:
    """Read ``path`` as a grid dataset: a ``volfast surfaces`` output folder (``grids/`` inside, or the
    ``grids`` folder itself) via :func:`load_dataset`, or a ``volfast synth`` folder (``synth-config.json``
    inside) via :func:`truth_dataset` (the generator's true surfaces; written to ``cache`` when given and
    read back from it next time)."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    if (root / "synth-config.json").is_file():
        if cache is not None and (Path(cache) / "grids").is_dir():
            return load_dataset(cache)
        return truth_dataset(root, out=cache)
    return load_dataset(root)


def usable(ds: SurfaceDataset, kind: str) -> np.ndarray:
    """Boolean (N,) mask of the days a model of grid ``kind`` may use (no NaN cell, finite condition)."""
    return ds.complete(kind)


@dataclasses.dataclass(frozen=True)
class Split:
    """A walk-forward split by date: train ``< val_start``, validation ``[val_start, test_start)``, test
    ``>= test_start``. Dates are ISO strings (JSON-friendly)."""

    train_start: str
    val_start: str
    test_start: str
    test_end: str

    def masks(self, dates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = dates.astype("datetime64[D]")
        lo, v, t, hi = (
            np.datetime64(x, "D") for x in (self.train_start, self.val_start, self.test_start, self.test_end)
        )
        return (d >= lo) & (d < v), (d >= v) & (d < t), (d >= t) & (d <= hi)

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def split_dates(dates: np.ndarray, *, test_fraction: float, val_fraction: float) -> Split:
    """Chronological split: the last ``test_fraction`` of the days are the test period; the last
    ``val_fraction`` of the remaining (training) period is the early-stopping validation slice."""
    n = int(dates.size)
    if not (0 < test_fraction < 1 and 0 < val_fraction < 1):
        raise ValueError(f"need 0 < test_fraction, val_fraction < 1; got {test_fraction}, {val_fraction}")
    n_test = max(1, int(round(n * test_fraction)))
    n_fit = n - n_test
    n_val = max(1, int(round(n_fit * val_fraction)))
    if n_fit - n_val < 2:
        raise DatasetError(
            f"{n} days are too few for a train/validation/test split "
            f"(test {n_test}, validation {n_val}, train {n_fit - n_val}; need at least 2 training days)"
        )
    d = np.sort(dates.astype("datetime64[D]"))
    iso = [str(x) for x in (d[0], d[n_fit - n_val], d[n_fit], d[-1])]
    return Split(*iso)


def sequence_breaks(dates: np.ndarray, ok: np.ndarray, *, max_gap_days: int = 5) -> np.ndarray:
    """Segment id (N,) per row for sequence models: a new segment starts after an unusable day or a
    calendar gap of more than ``max_gap_days``; unusable rows get -1."""
    d = dates.astype("datetime64[D]").astype(np.int64)
    seg = np.full(d.size, -1, dtype=np.int64)
    cur = -1
    prev: int | None = None
    for i in range(d.size):
        if not ok[i]:
            prev = None
            continue
        if prev is None or d[i] - prev > max_gap_days:
            cur += 1
        seg[i] = cur
        prev = int(d[i])
    return seg


def grid_axis_k(ds_config: Any, kind: str) -> np.ndarray:
    """Log-moneyness of the columns of grid ``kind`` (image, cvae)."""
    if kind == "image":
        return np.asarray(ds_config.image_k)
    if kind == "cvae":
        return np.asarray(ds_config.cvae_k)
    raise ValueError(f"grid kind {kind!r} has no log-moneyness axis (use image or cvae)")


def iso(d: Any) -> str:
    return str(np.datetime64(d, "D")) if not isinstance(d, _dt.date) else d.isoformat()
