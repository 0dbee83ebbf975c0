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

__all__ = ["Split", "grid_axis_k", "open_data", "quoted_mask", "sequence_breaks", "split_dates", "usable"]


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


def _svi_folder(path: str | os.PathLike[str]) -> Path | None:
    """The ``svi/`` tables beside a ``volfast surfaces``/``build`` output's ``grids/`` (None: none there,
    e.g. a synth folder whose true surfaces hold everywhere)."""
    root = Path(path)
    for cand in (root / "svi", root.parent / "svi" if root.name == "grids" else None):
        if cand is not None and cand.is_dir() and any(cand.glob("date=*")):
            return cand
    return None


def quoted_mask(path: str | os.PathLike[str], ds: SurfaceDataset, kind: str) -> np.ndarray | None:
    """Where each day's grid of ``kind`` (image, cvae) lies inside the quoted range, ``(N, R, K)`` bool;
    None when ``path`` has no SVI tables (the generator's true surfaces: every cell is data).

    A cell ``(T, k)`` is quoted when ``T`` lies between two of the day's surface expiries (``in_surface``
    slices; at or between their year fractions) and ``k = ln(K/F)`` lies inside both of those slices'
    quoted log-moneyness ``[k_min, k_max]`` (the built surface interpolates them linearly in ``T``). On the
    CVAE grid each row is one expiry: its own range. Cells before the first expiry, after the last, or
    beyond the quoted strikes are the build's extrapolation (raw SVI wings, flat forward variance)."""
    folder = _svi_folder(path)
    if folder is None:
        return None
    import pyarrow.dataset as pads

    tab = pads.dataset(folder, format="parquet", partitioning="hive").to_table(
        columns=["date", "expiry_years", "k_min", "k_max", "in_surface"]
    )
    df = tab.to_pandas()
    df = df[df["in_surface"].astype(bool)]
    days = np.asarray(df["date"].astype(str).str[:10].to_numpy(), dtype="datetime64[D]")
    k = grid_axis_k(ds.config, kind)
    x = ds.grid(kind)
    out = np.zeros(x.shape, dtype=bool)
    by_day: dict[Any, np.ndarray] = {}
    cols = df[["expiry_years", "k_min", "k_max"]].to_numpy(dtype=np.float64)
    for d in np.unique(days):
        sl = cols[days == d]
        by_day[d] = sl[np.argsort(sl[:, 0])]
    dates = ds.dates.astype("datetime64[D]")
    for i, d in enumerate(dates):
        sl = by_day.get(d)
        if sl is None or sl.shape[0] == 0:
            continue
        t_s, lo_s, hi_s = sl[:, 0], sl[:, 1], sl[:, 2]
        if kind == "image":
            tenors = np.asarray(ds.config.image_tenor_years, dtype=np.float64)
        else:
            tenors = ds.cvae_expiry_years[i]
        for r, t in enumerate(tenors):
            if not np.isfinite(t) or t < t_s[0] * (1 - 1e-9) or t > t_s[-1] * (1 + 1e-9):
                continue
            j = int(np.searchsorted(t_s, t * (1 - 1e-9)))  # first slice at or after t
            js = [j] if abs(t_s[min(j, t_s.size - 1)] - t) <= 1e-9 * t else [j - 1, j]
            js = [min(max(q, 0), t_s.size - 1) for q in js]
            lo, hi = max(lo_s[q] for q in js), min(hi_s[q] for q in js)
            out[i, r] = (k >= lo - 1e-12) & (k <= hi + 1e-12)
    return out
