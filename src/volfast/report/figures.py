"""The report's plots beyond a day's surface (those are :mod:`volfast.surface.plots`): latent trajectories,
reconstruction error over time, LSTM forecast against the actual latents, the stress path, hedged against
unhedged PnL and the backtest equity curve.

matplotlib is imported lazily; every function takes ``ax=None`` (a new figure then, made through the object
API: no pyplot state, no backend switched) and returns the axes; nothing here calls ``plt.show()``. Inputs
are plain arrays so that the functions can be tested alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "plot_equity_curve",
    "plot_forecast",
    "plot_hedge_pnl",
    "plot_latents",
    "plot_reason_histogram",
    "plot_recon_error",
    "plot_stress_path",
]


def _axes(ax: Any, figsize: tuple[float, float] = (8, 3.5)) -> Any:
    if ax is not None:
        return ax
    from volfast._figure import new_axes

    return new_axes(figsize)


def _dates(d: Any) -> np.ndarray:
    return np.asarray(d).astype("datetime64[D]")


def _shade_test(ax: Any, test_start: Any, dates: np.ndarray) -> None:
    if test_start is not None and dates.size:
        ax.axvspan(np.datetime64(test_start, "D"), dates.max(), color="0.9", zorder=0, label="test period")


def plot_latents(dates: Any, z: Any, *, test_start: Any = None, title: str = "", ax: Any = None) -> Any:
    """Latent means over time, one line per dimension (NaN rows, incomplete days, leave gaps).

    Parameters
    ----------
    dates : (N,) dates; z : (N, L) latent means; test_start : date from which the test period is shaded.
    """
    ax = _axes(ax)
    z = np.asarray(z, dtype=np.float64)
    d = _dates(dates)
    for j in range(z.shape[1]):
        ax.plot(d, z[:, j], lw=1, label=f"z{j}")
    _shade_test(ax, test_start, d)
    ax.set_xlabel("date")
    ax.set_ylabel("latent mean")
    ax.set_title(title or "latent trajectories")
    ax.legend(fontsize="x-small", ncol=min(z.shape[1] + 1, 5), loc="best")
    ax.figure.autofmt_xdate()
    return ax


def plot_recon_error(dates: Any, errors: dict[str, Any], *, test_start: Any = None, ax: Any = None) -> Any:
    """Per-day reconstruction RMSE (vol points) of each model over time.

    Parameters
    ----------
    dates : (N,) dates; errors : model name -> (N,) RMSE in vol points (NaN: day not reconstructed).
    """
    ax = _axes(ax)
    d = _dates(dates)
    for name, e in errors.items():
        ax.plot(d, np.asarray(e, dtype=np.float64), lw=1, label=name)
    _shade_test(ax, test_start, d)
    ax.set_yscale("log")
    ax.set_xlabel("date")
    ax.set_ylabel("RMSE (vol points)")
    ax.set_title("reconstruction error per day")
    ax.legend(fontsize="small")
    ax.figure.autofmt_xdate()
    return ax


def plot_forecast(
    dates: Any,
    actual: Any,
    forecast: Any,
    *,
    persistence: Any = None,
    label: str = "front ATM vol (%)",
    ax: Any = None,
) -> Any:
    """A one-step forecast against what happened (and the persistence forecast, yesterday's value)."""
    ax = _axes(ax)
    d = _dates(dates)
    ax.plot(d, np.asarray(actual, dtype=np.float64), "k-", lw=1.5, label="actual")
    ax.plot(d, np.asarray(forecast, dtype=np.float64), "C3-", lw=1.2, label="LSTM one-step forecast")
    if persistence is not None:
        ax.plot(d, np.asarray(persistence, dtype=np.float64), "C0--", lw=1, label="persistence")
    ax.set_xlabel("date")
    ax.set_ylabel(label)
    ax.set_title("LSTM forecast vs actual (test period)")
    ax.legend(fontsize="small")
    ax.figure.autofmt_xdate()
    return ax


def plot_stress_path(
    steps: Any, shock: Any, base: Any, *, label: str = "front ATM vol", ax: Any = None
) -> Any:
    """A stress feature along the rollout: shocked and unshocked paths (vols as fractions, shown in %)."""
    ax = _axes(ax)
    s = np.asarray(steps)
    ax.plot(s, np.asarray(shock, dtype=np.float64) * 100, "C3-", label="shocked")
    ax.plot(s, np.asarray(base, dtype=np.float64) * 100, "C0--", label="unshocked")
    ax.set_xlabel("rollout step (trading days)")
    ax.set_ylabel(f"{label} (%)")
    ax.set_title(f"stress: {label} through the shock")
    ax.legend(fontsize="small")
    return ax


def plot_hedge_pnl(dates: Any, unhedged: Any, hedged: Any, *, ax: Any = None) -> Any:
    """Cumulative daily PnL (dollars) of the unhedged and the hedged portfolio."""
    ax = _axes(ax)
    d = _dates(dates)
    ax.plot(d, np.cumsum(np.asarray(unhedged, dtype=np.float64)), "C0-", label="unhedged")
    ax.plot(d, np.cumsum(np.asarray(hedged, dtype=np.float64)), "C3-", label="hedged")
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set_xlabel("date")
    ax.set_ylabel("cumulative PnL ($)")
    ax.set_title("latent-energy put hedge: hedged vs unhedged (test period)")
    ax.legend(fontsize="small")
    ax.figure.autofmt_xdate()
    return ax


def plot_equity_curve(dates: Any, equity: Any, *, in_sample: Any = None, ax: Any = None) -> Any:
    """The backtest's equity (dollars) per day, in-sample days shaded."""
    ax = _axes(ax)
    d = _dates(dates)
    ax.plot(d, np.asarray(equity, dtype=np.float64), "k-", lw=1.2, label="equity")
    if in_sample is not None:
        m = np.asarray(in_sample, dtype=bool)
        if m.any():
            ax.axvspan(d[m][0], d[m][-1], color="0.9", zorder=0, label="in sample")
    ax.set_xlabel("date")
    ax.set_ylabel("equity ($)")
    ax.set_title("backtest: CVAE rich/cheap, delta-hedged")
    ax.legend(fontsize="small")
    ax.figure.autofmt_xdate()
    return ax


def plot_reason_histogram(counts: dict[str, int], *, ax: Any = None) -> Any:
    """Horizontal bars: how many invalid days failed each kind of check (``counts``: kind -> days)."""
    items = list(counts.items())[:12]
    ax = _axes(ax, (8, 0.45 * max(len(items), 2) + 1.2))
    labels = [k if len(k) <= 60 else k[:57] + "..." for k, _ in items][::-1]
    vals = [v for _, v in items][::-1]
    ax.barh(np.arange(len(vals)), vals, color="C1")
    ax.set_yticks(np.arange(len(vals)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("invalid days")
    ax.set_title("invalid days by failed check")
    return ax
