"""The one look of every report figure: matplotlib, labelled axes with units, readable fonts.

Plugins draw their figures (``figures.py``) with these helpers, so a report reads as one
document::

    fig, ax = axes("Per-tick latency", xlabel="latency (µs)", ylabel="ticks")
    ax.hist(latency_us, bins=60)
    save(fig, out_dir / "latency.png")

Figures are built with :class:`matplotlib.figure.Figure` (no pyplot state), so drawing is
safe from any thread and never opens a window. matplotlib comes with every plugin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepseek.errors import DeepSeekError

FONT = {"font.size": 11, "axes.titlesize": 12.5, "axes.labelsize": 11, "legend.fontsize": 9.5,
        "xtick.labelsize": 9.5, "ytick.labelsize": 9.5}
COLORS = ["#1f6fb4", "#d9534f", "#2a9d50", "#f0a202", "#7b5ea7", "#555555"]


def _mpl() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise DeepSeekError("report figures need matplotlib: pip install matplotlib") from None
    return matplotlib


def figure(width: float = 8.0, height: float = 3.6, nrows: int = 1, ncols: int = 1,
           **kw: Any) -> tuple[Any, Any]:
    """A new figure and its axes (an array when ``nrows * ncols > 1``), in the house style."""
    mpl = _mpl()
    from matplotlib.figure import Figure

    with mpl.rc_context(FONT):
        fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
        axs = fig.subplots(nrows, ncols, **kw)
    return fig, axs


def axes(title: str, xlabel: str, ylabel: str, width: float = 8.0,
         height: float = 3.6) -> tuple[Any, Any]:
    """One titled axes with both labels set (say the unit in the label: ``"time (s)"``)."""
    fig, ax = figure(width, height)
    style(ax, title, xlabel, ylabel)
    return fig, ax


def style(ax: Any, title: str, xlabel: str, ylabel: str) -> Any:
    """Give ``ax`` the project's title, label and tick sizes; returns ``ax``."""
    ax.set_title(title, fontsize=FONT["axes.titlesize"])
    ax.set_xlabel(xlabel, fontsize=FONT["axes.labelsize"])
    ax.set_ylabel(ylabel, fontsize=FONT["axes.labelsize"])
    ax.tick_params(labelsize=FONT["xtick.labelsize"])
    ax.grid(True, alpha=0.3, linewidth=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return ax


def save(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as PNG to ``path`` (folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _mpl().rc_context(FONT):
        fig.savefig(path, format="png", dpi=110)
    return path
