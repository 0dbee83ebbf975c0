"""Rasterised surfaces on disk and in memory: the world models' dataset.

On disk a day's grids are one long Parquet table, ``ROOT/grids/date=YYYY-MM-DD/part-0.parquet``, one row per
grid node (:data:`GRID_SCHEMA`), with the :class:`~volfast.surface.grids.GridConfig` in the file's metadata;
the date is the partition (folder) only, so ``pandas.read_parquet(ROOT / "grids")`` reads every day.
:func:`load_dataset` stacks the days into arrays (:class:`SurfaceDataset`); :func:`truth_dataset` builds the
same grids from the generator's true surface of a ``volfast synth`` folder, so models can be trained and
checked against a surface with no fitting error at all.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from volfast.errors import VolfastError
from volfast.surface.grids import (
    GridConfig,
    TotalVariance,
    cvae_grid,
    delta_grid,
    image_grid,
    select_cvae_expiries,
)

__all__ = [
    "GRID_SCHEMA",
    "DatasetError",
    "DayGrids",
    "SurfaceDataset",
    "day_grids",
    "grids_table",
    "load_dataset",
    "truth_dataset",
    "write_day_grids",
]

GRIDS_DIR = "grids"
_META_KEY = b"volfast.grid_config"


class DatasetError(VolfastError, ValueError):
    """A grid dataset that cannot be read as asked (names the path and what is wrong)."""


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("grid", pa.string(), nullable=False),  # image | cvae | delta
            pa.field("i", pa.int16(), nullable=False),  # row: tenor / expiry / days index
            pa.field("j", pa.int16(), nullable=False),  # column: log-moneyness / delta index
            pa.field("tenor_years", pa.float64(), nullable=False),  # ACT/365; the expiry's for cvae
            pa.field("x", pa.float64(), nullable=False),  # log-moneyness (image, cvae) or call delta (delta)
            pa.field("log_moneyness", pa.float64()),  # ln(K/F) of the node (solved for the delta grid)
            pa.field("vol", pa.float64()),  # implied vol, NaN where the surface has none
        ]
    )


GRID_SCHEMA = _schema()


@dataclasses.dataclass
class DayGrids:
    """One day's three grids (implied vols, float64)."""

    date: _dt.date
    image: np.ndarray  # (image_nt, image_nk)
    cvae: np.ndarray  # (cvae_n_expiries, cvae_nk); NaN rows when fewer expiries were listed
    cvae_expiry_years: np.ndarray  # (cvae_n_expiries,), NaN where missing
    delta: np.ndarray  # (n_days, n_deltas)
    delta_k: np.ndarray  # (n_days, n_deltas) log-moneyness of each delta node


def day_grids(
    date: _dt.date, w: TotalVariance, expiry_years: np.ndarray, config: GridConfig | None = None
) -> DayGrids:
    """Rasterise one day's total-variance surface ``w(k, T)`` onto the three grids.

    ``expiry_years`` are the day's usable (valid, fitted) expiries; the CVAE grid takes the first
    ``cvae_n_expiries`` of them at or beyond ``cvae_min_expiry_days``.
    """
    cfg = config or GridConfig()
    t = np.asarray(expiry_years, dtype=np.float64)
    idx = select_cvae_expiries(t, cfg)
    cvae_t = np.full(cfg.cvae_n_expiries, np.nan)
    cvae_t[: idx.size] = t[idx]
    cvae = np.full((cfg.cvae_n_expiries, cfg.cvae_nk), np.nan)
    if idx.size:
        cvae[: idx.size] = cvae_grid(w, t[idx], cfg)
    dv, dk = delta_grid(w, cfg)
    return DayGrids(date, image_grid(w, cfg), cvae, cvae_t, dv, dk)


def grids_table(g: DayGrids, config: GridConfig | None = None) -> Any:
    """The long Parquet table of one day's grids (schema :data:`GRID_SCHEMA`, config in the metadata)."""
    import pyarrow as pa

    cfg = config or GridConfig()
    parts: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(name: str, vol: np.ndarray, tenor: np.ndarray, x: np.ndarray, k: np.ndarray) -> None:
        parts.append((name, vol, tenor, x, k))

    ti, ki = np.meshgrid(cfg.image_tenor_years, cfg.image_k, indexing="ij")
    add("image", g.image, ti, ki, ki)
    tc, kc = np.meshgrid(g.cvae_expiry_years, cfg.cvae_k, indexing="ij")
    add("cvae", g.cvae, tc, kc, kc)
    td, xd = np.meshgrid(cfg.delta_tenor_years, np.asarray(cfg.delta_calls, dtype=np.float64), indexing="ij")
    add("delta", g.delta, td, xd, g.delta_k)

    cols: dict[str, list[np.ndarray]] = {n: [] for n in GRID_SCHEMA.names}
    for name, vol, tenor, x, k in parts:
        n_i, n_j = vol.shape
        ii, jj = np.meshgrid(np.arange(n_i), np.arange(n_j), indexing="ij")
        cols["grid"].append(np.full(vol.size, name, dtype=object))
        cols["i"].append(ii.ravel().astype(np.int16))
        cols["j"].append(jj.ravel().astype(np.int16))
        # a missing CVAE expiry has NaN tenor: store 0 (not nullable) with a NaN vol
        cols["tenor_years"].append(np.nan_to_num(tenor.ravel(), nan=0.0))
        cols["x"].append(x.ravel())
        cols["log_moneyness"].append(k.ravel())
        cols["vol"].append(vol.ravel())
    arrays = {name: pa.array(np.concatenate(v)) for name, v in cols.items()}
    table = pa.table(arrays).cast(GRID_SCHEMA)
    return table.replace_schema_metadata({_META_KEY: json.dumps(cfg.to_dict()).encode()})


def write_day_grids(root: str | os.PathLike[str], g: DayGrids, config: GridConfig | None = None) -> Path:
    """Write ``ROOT/grids/date=.../part-0.parquet`` atomically; returns the path."""
    from volfast.io.output import day_dir, write_parquet_atomic

    final = day_dir(Path(root) / GRIDS_DIR, g.date) / "part-0.parquet"
    final.parent.mkdir(parents=True, exist_ok=True)
    return write_parquet_atomic(grids_table(g, config), final)


@dataclasses.dataclass
class SurfaceDataset:
    """Days of rasterised surfaces, stacked (float64 numpy; NaN marks nodes without a surface value).

    Days are in date order; days absent from the source (not trading, or no valid surface) are absent here:
    ``dates`` says which days each row is.
    """

    dates: np.ndarray  # (N,) datetime64[D]
    image: np.ndarray  # (N, image_nt, image_nk)
    cvae: np.ndarray  # (N, cvae_n_expiries, cvae_nk)
    cvae_expiry_years: np.ndarray  # (N, cvae_n_expiries): the CVAE's condition
    delta: np.ndarray  # (N, n_days, n_deltas)
    delta_k: np.ndarray  # (N, n_days, n_deltas)
    config: GridConfig
    source: str = ""

    def __len__(self) -> int:
        return int(self.dates.size)

    def subset(self, index: Any) -> SurfaceDataset:
        """Rows selected by a slice, a boolean mask or integer indices."""
        return dataclasses.replace(
            self,
            dates=self.dates[index],
            image=self.image[index],
            cvae=self.cvae[index],
            cvae_expiry_years=self.cvae_expiry_years[index],
            delta=self.delta[index],
            delta_k=self.delta_k[index],
        )

    def between(
        self, start: _dt.date | str | None = None, end: _dt.date | str | None = None
    ) -> SurfaceDataset:
        """Rows with ``start <= date <= end`` (either bound optional)."""
        m = np.ones(len(self), dtype=bool)
        if start is not None:
            m &= self.dates >= np.datetime64(start, "D")
        if end is not None:
            m &= self.dates <= np.datetime64(end, "D")
        return self.subset(m)

    def complete(self, kind: str) -> np.ndarray:
        """Boolean (N,): days whose ``kind`` grid (and condition, for cvae) has no NaN."""
        x = self.grid(kind)
        ok = np.isfinite(x).reshape(len(self), -1).all(axis=1)
        if kind == "cvae":
            ok &= np.isfinite(self.cvae_expiry_years).all(axis=1)
        return ok

    def grid(self, kind: str) -> np.ndarray:
        if kind not in ("image", "cvae", "delta"):
            raise ValueError(f"unknown grid kind {kind!r}; expected one of image, cvae, delta")
        x: np.ndarray = getattr(self, kind)
        return x

    def tensors(self, kind: str, *, dtype: Any = None, device: Any = None) -> tuple[Any, Any]:
        """``(x, condition)`` as torch tensors: ``x`` is ``(N, H, W)``; ``condition`` the CVAE's expiry year
        fractions ``(N, 3)`` for ``kind="cvae"``, else None."""
        import torch

        dt = dtype or torch.float32
        x = torch.as_tensor(self.grid(kind), dtype=dt, device=device)
        y = torch.as_tensor(self.cvae_expiry_years, dtype=dt, device=device) if kind == "cvae" else None
        return x, y


def _partitions(folder: Path) -> list[tuple[_dt.date, Path]]:
    out = []
    for d in sorted(folder.glob("date=*")):
        f = d / "part-0.parquet"
        if not f.is_file():
            continue
        try:
            out.append((_dt.date.fromisoformat(d.name[5:]), f))
        except ValueError:
            continue
    return out


def _stack(days: Sequence[DayGrids], config: GridConfig, source: str) -> SurfaceDataset:
    cfg = config
    n = len(days)

    def arr(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if n == 0:
            return np.empty((0, *shape))
        return np.stack([getattr(d, name) for d in days])

    return SurfaceDataset(
        dates=np.array([np.datetime64(d.date, "D") for d in days], dtype="datetime64[D]"),
        image=arr("image", (cfg.image_nt, cfg.image_nk)),
        cvae=arr("cvae", (cfg.cvae_n_expiries, cfg.cvae_nk)),
        cvae_expiry_years=arr("cvae_expiry_years", (cfg.cvae_n_expiries,)),
        delta=arr("delta", (len(cfg.delta_days), len(cfg.delta_calls))),
        delta_k=arr("delta_k", (len(cfg.delta_days), len(cfg.delta_calls))),
        config=cfg,
        source=source,
    )


def _read_day(date: _dt.date, path: Path, cfg: GridConfig) -> DayGrids:
    import pyarrow.parquet as pq

    try:
        t = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DatasetError(f"{path}: unreadable grid partition ({exc})") from exc
    meta = (t.schema.metadata or {}).get(_META_KEY)
    if meta is None:
        raise DatasetError(f"{path}: no grid configuration in the file's metadata; not written by volfast")
    file_cfg = GridConfig.from_dict(json.loads(meta))
    if file_cfg != cfg:
        raise DatasetError(f"{path}: grid configuration differs from the other days' ({file_cfg} vs {cfg})")
    grid = np.asarray(t.column("grid").to_pylist(), dtype=object)
    i = t.column("i").to_numpy()
    j = t.column("j").to_numpy()
    vol = t.column("vol").to_numpy(zero_copy_only=False)
    tenor = t.column("tenor_years").to_numpy()
    lk = t.column("log_moneyness").to_numpy(zero_copy_only=False)

    def fill(name: str, shape: tuple[int, int], values: np.ndarray) -> np.ndarray:
        out = np.full(shape, np.nan)
        m = grid == name
        if not m.any():
            raise DatasetError(f"{path}: no {name!r} grid rows")
        out[i[m], j[m]] = values[m]
        return out

    nd = (len(cfg.delta_days), len(cfg.delta_calls))
    cvae_tenor = fill("cvae", (cfg.cvae_n_expiries, cfg.cvae_nk), tenor)[:, 0]
    cvae = fill("cvae", (cfg.cvae_n_expiries, cfg.cvae_nk), vol)
    cvae_tenor = np.where(cvae_tenor > 0, cvae_tenor, np.nan)
    return DayGrids(
        date=date,
        image=fill("image", (cfg.image_nt, cfg.image_nk), vol),
        cvae=cvae,
        cvae_expiry_years=cvae_tenor,
        delta=fill("delta", nd, vol),
        delta_k=fill("delta", nd, lk),
    )


def _day_is_valid(days_dir: Path, date: _dt.date) -> bool:
    """The day's surfaces manifest exists, is complete (not interrupted, not failed) and says valid."""
    from volfast.io.output import day_dir, read_manifest

    m = read_manifest(day_dir(days_dir, date))
    return m is not None and m.get("status", "complete") == "complete" and bool(m.get("valid", False))


def load_dataset(
    path: str | os.PathLike[str],
    *,
    start: _dt.date | str | None = None,
    end: _dt.date | str | None = None,
) -> SurfaceDataset:
    """Read the grids under ``path`` (a ``volfast surfaces`` output folder, or its ``grids`` folder) into a
    :class:`SurfaceDataset`, days in order, optionally restricted to ``start <= date <= end``.

    Raises :class:`DatasetError` naming the folder when it holds no grid partitions, and naming the file when
    one is unreadable or was written with a different grid configuration.
    """
    root = Path(path)
    folder = root / GRIDS_DIR if (root / GRIDS_DIR).is_dir() else root
    parts = _partitions(folder)
    lo = _dt.date.fromisoformat(str(start)) if start is not None else None
    hi = _dt.date.fromisoformat(str(end)) if end is not None else None
    parts = [(d, p) for d, p in parts if (lo is None or d >= lo) and (hi is None or d <= hi)]
    days_dir = folder.parent / "days"
    if days_dir.is_dir():  # a surfaces output: only days whose manifest says complete and valid
        parts = [(d, p) for d, p in parts if _day_is_valid(days_dir, d)]
    if not parts:
        where = f" between {lo} and {hi}" if (lo or hi) else ""
        raise DatasetError(
            f"{folder}: no grid partitions (date=YYYY-MM-DD/part-0.parquet){where}; "
            "produce them with `volfast surfaces` or volfast.surface.truth_dataset"
        )
    import pyarrow.parquet as pq

    meta = (pq.read_schema(parts[0][1]).metadata or {}).get(_META_KEY)
    if meta is None:
        raise DatasetError(
            f"{parts[0][1]}: no grid configuration in the file's metadata; not written by volfast"
        )
    cfg = GridConfig.from_dict(json.loads(meta))
    days = [_read_day(d, p, cfg) for d, p in parts]
    return _stack(days, cfg, str(folder))


def _truth_surface(truth: Any, synth_config: dict[str, Any]) -> tuple[TotalVariance, np.ndarray]:
    from volfast.synth.surface import SSVISurface

    state = truth[truth["kind"] == "state"].iloc[0]
    exp = truth[truth["kind"] == "expiry"].sort_values("expiry_years")
    if exp.empty:
        raise DatasetError("truth partition has no expiry rows")
    first = exp.iloc[0]
    surf = SSVISurface(
        vol_short=float(state["atm_vol"]),
        vol_long=float(state["long_vol"]),
        tau=float(synth_config["term_tau"]),
        rho=float(first["ssvi_rho"]),
        eta=float(first["ssvi_eta"]),
        gamma=float(first["ssvi_gamma"]),
    )
    return surf.total_variance, exp["expiry_years"].to_numpy(dtype=np.float64)


def truth_dataset(
    synth_dir: str | os.PathLike[str],
    *,
    config: GridConfig | None = None,
    out: str | os.PathLike[str] | None = None,
    dates: Iterable[_dt.date] | None = None,
) -> SurfaceDataset:
    """Grids of the generator's true surfaces for every day of a ``volfast synth`` folder.

    The true surface is the day's SSVI (:class:`volfast.synth.surface.SSVISurface`), rebuilt from the truth
    Parquet's ``state`` and ``expiry`` rows and ``synth-config.json``; the CVAE grid uses the listed expiries.
    With ``out``, each day is also written as ``OUT/grids/date=.../part-0.parquet`` (the layout
    :func:`load_dataset` reads).
    """
    import pyarrow.parquet as pq

    cfg = config or GridConfig()
    root = Path(synth_dir)
    cfg_path = root / "synth-config.json"
    try:
        synth_config = json.loads(cfg_path.read_text())["config"]
    except FileNotFoundError:
        raise DatasetError(f"{cfg_path}: missing; is {root} a `volfast synth` folder?") from None
    parts = _partitions(root / "truth")
    if dates is not None:
        wanted = set(dates)
        parts = [(d, p) for d, p in parts if d in wanted]
    if not parts:
        raise DatasetError(f"{root / 'truth'}: no truth partitions (date=YYYY-MM-DD/part-0.parquet)")
    days = []
    for d, p in parts:
        try:
            w, t = _truth_surface(pq.read_table(p).to_pandas(), synth_config)
        except DatasetError as exc:
            raise DatasetError(f"{p}: {exc}") from None
        g = day_grids(d, w, t, cfg)
        if out is not None:
            write_day_grids(out, g, cfg)
        days.append(g)
    return _stack(days, cfg, str(root))
