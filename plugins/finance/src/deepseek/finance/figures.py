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


def equity_drawdown(path: str | Path, curves: dict[str, tuple[np.ndarray, np.ndarray]],
                    capital: float, title: str = "Equity and drawdown") -> Path:
    """Equity (top) and drawdown from the running peak (bottom, % of that peak) of each
    strategy, ``{"name": (time_ns, equity)}``, against the time since the first tick."""
    from deepseek.plotting import figure, style

    fig, (top, bottom) = figure(8.5, 5.6, nrows=2, sharex=True)
    t0 = min(int(t[0]) for t, _ in curves.values())
    span_s = max(int(t[-1]) for t, _ in curves.values()) - t0
    scale, unit = (3600e9, "h") if span_s > 3 * 3600e9 else (1e9, "s")
    for (name, (t, eq)), colour in zip(curves.items(), COLORS):
        x = (np.asarray(t, dtype=np.float64) - t0) / scale
        e = np.asarray(eq, dtype=np.float64)
        peak = np.maximum.accumulate(np.maximum(e, capital))
        top.plot(x, e - capital, color=colour, lw=1.2, label=name)
        bottom.plot(x, -(peak - e) / peak * 100.0, color=colour, lw=1.0)
    top.axhline(0.0, color="#888888", lw=0.8)
    style(top, title, "", "P&L (quote currency)")
    style(bottom, "", f"time since the first tick ({unit})", "drawdown (% of peak equity)")
    top.legend(loc="best")
    return save(fig, path)


def roc_figure(path: str | Path, curves: dict[str, tuple[np.ndarray, np.ndarray]],
               title: str = "ROC on the test part") -> Path:
    """One ROC curve per model (``{"name": (labels, scores)}``), with its AUC in the legend,
    and the diagonal of a model that knows nothing."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = axes(title, "false positive rate (good clients flagged)",
                   "true positive rate (defaults caught)", width=6.0, height=5.0)
    for (name, (y, p)), colour in zip(curves.items(), COLORS):
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, color=colour, lw=1.6,
                label=f"{name}: AUC {roc_auc_score(y, p):.3f}")
    ax.plot([0, 1], [0, 1], color="#999999", ls=":", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right")
    return save(fig, path)
