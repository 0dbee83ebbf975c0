"""New matplotlib figures through the object API, so that drawing changes no global state.

``matplotlib.figure.Figure`` with its own ``FigureCanvasAgg``: no ``matplotlib.use``, no pyplot figure
registry, no backend resolution. A figure made here is freed with its last reference (nothing to close),
saves PNGs with ``fig.savefig`` and still displays in a notebook (IPython renders ``Figure`` objects).
"""

from __future__ import annotations

from typing import Any

__all__ = ["new_axes", "new_figure"]


def new_figure(figsize: tuple[float, float] = (8, 3.5), dpi: float | None = None) -> Any:
    """A ``Figure`` of ``figsize`` inches at ``dpi`` (default: rcParams) on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def new_axes(figsize: tuple[float, float] = (8, 3.5), dpi: float | None = None) -> Any:
    """One axes on a :func:`new_figure` (``ax.figure`` is the figure)."""
    return new_figure(figsize, dpi).add_subplot()
