"""Report figures of the finance plugin (matplotlib, through :mod:`deepseek.plotting`):
the per-tick latency histogram of each inference path."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepseek.plotting import COLORS, axes, save


def latency_histogram(path: str | Path, latencies_ns: dict[str, np.ndarray],
                      title: str = "Per-tick latency: feature update + forward") -> Path:
    """One histogram per path (``{"fast path": ns, "PyTorch eager": ns}``) on a log time
    axis, with each path's p50 and p99 in the legend."""
    fig, ax = axes(title, "latency per tick (µs, log scale)", "ticks", width=8.5, height=4.0)
    us = {k: np.asarray(v, dtype=np.float64) / 1e3 for k, v in latencies_ns.items()}
    finite = np.concatenate([v[v > 0] for v in us.values()]) if us else np.ones(1)
    bins = np.geomspace(max(finite.min() * 0.8, 1e-2), finite.max() * 1.25, 80)
    for (name, v), colour in zip(us.items(), COLORS):
        p50, p99 = np.percentile(v, [50, 99])
        ax.hist(v, bins=bins, alpha=0.6, color=colour,
                label=f"{name}: p50 {p50:.2f} µs, p99 {p99:.2f} µs")
        ax.axvline(p99, color=colour, ls="--", lw=1)
    ax.set_xscale("log")
    ax.legend(loc="upper right")
    return save(fig, path)
