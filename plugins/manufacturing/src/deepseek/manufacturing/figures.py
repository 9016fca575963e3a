"""Report figures of the manufacturing plugin (matplotlib, through :mod:`deepseek.plotting`):
the stream timeline (scores, ground truth, events and dropped frames) and sample frames with
their predicted and true boxes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.plotting import axes, figure, save, style


def _spans(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True in ``mask`` as (first, last + 1)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2], edges[1::2]))


def timeline(path: str | Path, frame_index: np.ndarray, scores: np.ndarray,
             truth: Sequence[dict[str, Any]] | None, threshold: float,
             events: Sequence[Any] = (), fps: float | None = None) -> Path:
    """Score per frame over the ground truth (defect frames shaded red, partial ones grey),
    the threshold, the events (green) and the frames the source dropped (black ticks below
    the axis: the model never saw them)."""
    frame_index = np.asarray(frame_index)
    last = max((int(r["frame"]) for r in truth), default=-1) if truth else -1
    n = int(max(last + 1, (frame_index.max() + 1) if len(frame_index) else 1))
    xlabel = "frame" + (f" (at {fps:g} fps)" if fps else "")
    fig, ax = axes("Crack score per frame", xlabel, "crack probability", width=11, height=3.8)
    if truth:  # shaded at each row's frame number (a truth may start at 1, or skip frames)
        defect, partial = np.zeros(n, bool), np.zeros(n, bool)
        for r in truth:
            if int(r["frame"]) >= 0:
                partial[int(r["frame"])] = bool(int(r.get("partial", 0)))
                defect[int(r["frame"])] = bool(int(r["defect"])) and not partial[int(r["frame"])]
        for a, b in _spans(defect):
            ax.axvspan(a - 0.5, b - 0.5, color="#f4b6b4", lw=0)
        for a, b in _spans(partial):
            ax.axvspan(a - 0.5, b - 0.5, color="#dddddd", lw=0)
    ax.plot(frame_index, scores, color="#1f6fb4", lw=0.9, label="score")
    ax.axhline(threshold, color="#555555", ls="--", lw=1, label=f"threshold {threshold:g}")
    for k, e in enumerate(events):
        end = e.end_frame if e.end_frame is not None else e.frame
        ax.axvspan(e.frame - 0.5, end + 0.5, ymin=0.93, ymax=1.0, color="#2a9d50",
                   label="events" if k == 0 else None)
    seen = np.zeros(n, bool)
    seen[frame_index[(frame_index >= 0) & (frame_index < n)]] = True
    dropped = np.flatnonzero(~seen)
    if len(dropped):
        ax.plot(dropped, np.full(len(dropped), -0.04), "|", color="black", ms=6,
                label=f"dropped ({len(dropped)})")
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(-0.08, 1.02)
    handles, labels = ax.get_legend_handles_labels()
    from matplotlib.patches import Patch

    handles += [Patch(color="#f4b6b4"), Patch(color="#dddddd")]
    labels += ["defect frames (truth)", "partial (not scored)"]
    ax.legend(handles, labels, loc="upper left", ncol=3, fontsize=8.5, framealpha=0.9)
    return save(fig, path)


def sample_frames(path: str | Path, frames: Sequence[tuple[np.ndarray, str,
                  tuple[int, int, int, int] | None, tuple[int, int, int, int] | None]],
                  columns: int = 3, mm_per_px: float | None = None) -> Path:
    """A grid of ``(image, label, predicted_box, true_box)``: predicted box red, true box
    green; axes in pixels (or mm with ``mm_per_px``)."""
    from matplotlib.patches import Rectangle

    shown = list(frames) or [(np.full((48, 64), 255, np.uint8), "no frames", None, None)]
    cols = min(columns, len(shown))
    rows = (len(shown) + cols - 1) // cols
    h, w = shown[0][0].shape[:2]
    fig, axs = figure(4.2 * cols, 4.2 * cols * rows * h / w / cols + 0.6 * rows, rows, cols,
                      squeeze=False)
    for ax in axs.ravel()[len(shown):]:
        ax.set_axis_off()
    s = mm_per_px or 1.0
    unit = "mm" if mm_per_px else "px"
    for ax, (img, label, pbox, tbox) in zip(axs.ravel(), shown):
        ih, iw = img.shape[:2]
        ax.imshow(img, cmap="gray", vmin=0, vmax=255, extent=(0, iw * s, ih * s, 0))
        for box, colour in ((tbox, "#2ad04a"), (pbox, "#ff3030")):
            if box is not None:
                x0, y0, x1, y1 = (v * s for v in box)
                ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False,
                                       edgecolor=colour, linewidth=1.6))
        style(ax, label, f"x ({unit})", f"y ({unit})")
        ax.grid(False)
    fig.suptitle("red: predicted box, green: true box")
    return save(fig, path)
