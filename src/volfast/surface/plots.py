"""Plots of a day's surface: a smile with bid/ask bars and its SVI fit; a heatmap of the image grid.

matplotlib is imported lazily; every function takes ``ax=None`` (a new figure then, made through the object
API: no pyplot state, no backend switched) and returns the axes; nothing here calls ``plt.show()``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from volfast.surface.grids import GridConfig
from volfast.surface.interpolate import svi_total_variance

__all__ = ["plot_day_smile", "plot_smile", "plot_surface_heatmap"]


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    from volfast._figure import new_axes

    return new_axes((6, 4))


def plot_smile(
    *,
    log_moneyness: Any,
    bid_iv: Any,
    ask_iv: Any,
    expiry_years: float,
    params: Any = None,
    mid_iv: Any = None,
    title: str | None = None,
    ax: Any = None,
) -> Any:
    """One expiry's smile: a vertical bar from bid to ask vol at each ``ln(K/F)``, the mids as dots, and
    the raw-SVI fit ``sqrt(w(k) / T)`` as a line (vols in percent).

    Parameters
    ----------
    log_moneyness, bid_iv, ask_iv : array_like
        Quotes (vols as fractions; a NaN bid vol draws the bar from 0).
    expiry_years : float
        ACT/365 years, > 0.
    params : array_like of 5, optional
        Raw SVI (a, b, rho, m, sigma) in total variance.
    mid_iv : array_like, optional
    """
    ax = _axes(ax)
    k = np.asarray(log_moneyness, dtype=np.float64)
    lo = np.nan_to_num(np.asarray(bid_iv, dtype=np.float64), nan=0.0) * 100
    hi = np.asarray(ask_iv, dtype=np.float64) * 100
    ax.vlines(k, lo, hi, color="0.45", lw=1.2, label="bid/ask")
    if mid_iv is not None:
        ax.plot(k, np.asarray(mid_iv, dtype=np.float64) * 100, ".", color="k", ms=3, label="mid")
    if params is not None and np.isfinite(np.asarray(params, dtype=np.float64)).all() and k.size:
        pad = 0.1 * max(float(np.nanmax(k) - np.nanmin(k)), 0.05)
        kk = np.linspace(np.nanmin(k) - pad, np.nanmax(k) + pad, 200)
        w = svi_total_variance(kk, np.asarray(params, dtype=np.float64))
        with np.errstate(invalid="ignore"):
            ax.plot(
                kk,
                np.sqrt(np.where(w > 0, w, np.nan) / expiry_years) * 100,
                color="C3",
                lw=1.5,
                label="SVI fit",
            )
    ax.set_xlabel("log-moneyness ln(K/F)")
    ax.set_ylabel("implied vol (%)")
    ax.set_title(title if title is not None else f"T = {expiry_years * 365:.1f} days")
    ax.legend(loc="best", fontsize="small")
    return ax


def plot_day_smile(day: Any, slice_index: int, *, ax: Any = None) -> Any:
    """The smile of expiry slice ``slice_index`` of a :class:`~volfast.surface.day.SurfaceDay`: its fitted
    quotes and SVI parameters (the ``quotes`` and ``svi`` tables)."""
    q = day.quotes
    s = day.svi
    if not 0 <= slice_index < s.num_rows:
        raise IndexError(f"slice {slice_index} not in 0..{s.num_rows - 1}")
    sl = np.asarray(q.column("slice").to_numpy())
    used = np.asarray(q.column("used").to_numpy(zero_copy_only=False), dtype=bool)
    m = (sl == slice_index) & used

    def col(name: str) -> np.ndarray:
        return np.asarray(q.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)[m]

    row = {
        n: s.column(n)[slice_index].as_py()
        for n in ("a", "b", "rho", "m", "sigma", "expiry_years", "underlying", "expiration")
    }
    params = np.array([row[n] if row[n] is not None else np.nan for n in ("a", "b", "rho", "m", "sigma")])
    title = f"{row['underlying']} {str(row['expiration'])[:10]} (T = {row['expiry_years'] * 365:.1f} d)"
    return plot_smile(
        log_moneyness=col("log_moneyness"),
        bid_iv=col("bid_iv"),
        ask_iv=col("ask_iv"),
        mid_iv=col("mid_iv"),
        expiry_years=float(row["expiry_years"]),
        params=params,
        title=title,
        ax=ax,
    )


def plot_surface_heatmap(
    image: Any, config: GridConfig | None = None, *, ax: Any = None, title: str | None = None
) -> Any:
    """Heatmap of an image grid (tenor x log-moneyness implied vols, as in
    :func:`volfast.surface.image_grid`), vols in percent; tenors on a log axis in days."""
    cfg = config or GridConfig()
    ax = _axes(ax)
    img = np.asarray(image, dtype=np.float64) * 100
    if img.shape != (cfg.image_nt, cfg.image_nk):
        raise ValueError(
            f"image shape {img.shape} does not match the config ({cfg.image_nt}, {cfg.image_nk})"
        )
    days = cfg.image_tenor_years * 365
    mesh = ax.pcolormesh(cfg.image_k, days, img, shading="nearest", cmap="viridis")
    ax.set_yscale("log")
    ax.set_xlabel("log-moneyness ln(K/F)")
    ax.set_ylabel("tenor (days)")
    if title:
        ax.set_title(title)
    ax.figure.colorbar(mesh, ax=ax, label="implied vol (%)")
    return ax
