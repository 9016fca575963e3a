"""Report figures of the medical plugin (matplotlib, through :mod:`deepseek.plotting`):
the FROC curve, orthogonal CT views in millimetres, and axial slices through findings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepseek.plotting import axes, figure, save, style


def plot_froc(result: Any, path: str | Path, title: str = "FROC") -> Path:
    """Sensitivity against false positives per scan (log axis), the seven LUNA16 operating
    points marked and the CPM (with its bootstrap interval) in the title. ``result`` is the
    ``luna16-froc`` metric's dict (or a FROCResult)."""
    from deepseek.medical.metrics import FP_RATES

    d = result if isinstance(result, dict) else result.to_dict()
    ci = f", 95% CI {d['ci95'][0]:.3f}-{d['ci95'][1]:.3f}" if d.get("ci95") else ""
    fig, ax = axes(f"{title}: CPM {d['cpm']:.3f}{ci} ({d['n_nodules']} nodules, "
                   f"{d['n_scans']} scans)", "false positives per scan (log scale)",
                   "sensitivity", width=7.5, height=4.6)
    fps = np.asarray(d["curve"]["fps_per_scan"], dtype=float)
    sens = np.asarray(d["curve"]["sensitivity"], dtype=float)
    keep = fps > 0
    if keep.any():
        x = np.concatenate([[1 / 16], fps[keep], [16]])
        y = np.concatenate([[sens[keep][0]], sens[keep], [sens[keep][-1]]])
        ax.step(x, y, where="post", color="#1f6fb4", linewidth=2, label="FROC curve")
    at = {float(k): v for k, v in d["sensitivity_at_fps"].items()}
    ax.plot(list(at), list(at.values()), "o", color="#d9534f", label="LUNA16 operating points")
    ax.set_xscale("log", base=2)
    ax.set_xticks(FP_RATES, [f"{r:g}" for r in FP_RATES])
    ax.set_xlim(1 / 16, 16)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right")
    return save(fig, path)


def _window(a: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = window
    return np.clip((a - lo) / (hi - lo), 0, 1)


def orthogonal_views(volume: Any, path: Path, window: tuple[float, float] = (-1000.0, 400.0),
                     points: list[dict[str, Any]] | None = None) -> Path:
    """Axial, coronal and sagittal mid-planes at their physical aspect, axes in mm from the
    volume's first voxel (indices times spacing; the slice axis points up, towards the head),
    with ``points`` (``{"xyz", "label"}``) marked where they lie in the plane's slab."""
    arr = volume.array
    sx, sy, sz = volume.spacing
    nz, ny, nx = arr.shape
    fig, axs = figure(12.0, 4.4, 1, 3)
    views = [("axial (z mid)", arr[nz // 2], (0, nx * sx, ny * sy, 0), "x (mm)", "y (mm)",
              "upper"),
             ("coronal (y mid)", arr[:, ny // 2, :], (0, nx * sx, 0, nz * sz), "x (mm)",
              "z (mm)", "lower"),
             ("sagittal (x mid)", arr[:, :, nx // 2], (0, ny * sy, 0, nz * sz), "y (mm)",
              "z (mm)", "lower")]
    for ax, (name, plane, extent, xl, yl, origin) in zip(axs, views):
        ax.imshow(_window(plane, window), cmap="gray", extent=extent, interpolation="bilinear",
                  vmin=0, vmax=1, origin=origin)
        style(ax, name, xl, yl)
        ax.grid(False)
    for p in points or []:
        k, j, i = volume.world_to_voxel(p["xyz"])
        for ax, (u, v, dist) in zip(axs, [(i * sx, j * sy, abs(k - nz // 2) * sz),
                                          (i * sx, k * sz, abs(j - ny // 2) * sy),
                                          (j * sy, k * sz, abs(i - nx // 2) * sx)]):
            if dist <= p.get("diameter_mm", 10.0) / 2:
                ax.plot(u, v, "o", mfc="none", mec="#ff4040", ms=10, mew=1.5)
    fig.suptitle(f"shape (z, y, x) {tuple(arr.shape)}, spacing (x, y, z) "
                 f"{tuple(round(s, 3) for s in volume.spacing)} mm, window {window} HU")
    return save(fig, path)


def _plane_axes(volume: Any, z: int) -> tuple[Any, str, str]:
    """How an axial crop's pixels map to the plot: ``to_plot((k, j, i)) -> (u, v)`` and the
    axis labels. World x and y (mm, patient LPS) when the image's columns and rows run along
    them (any flip), so that the titles' world coordinates read off the axes; otherwise
    (an oblique series) mm along the image's columns and rows from its first pixel."""
    d = volume.direction
    if abs(abs(d[0, 0]) - 1) < 1e-3 and abs(abs(d[1, 1]) - 1) < 1e-3:
        def world(kji: Any) -> tuple[float, float]:
            xyz = volume.voxel_to_world(np.asarray(kji, dtype=float))
            return float(xyz[0]), float(xyz[1])

        return world, "x (mm, LPS)", "y (mm, LPS)"
    sx, sy, _ = volume.spacing

    def image(kji: Any) -> tuple[float, float]:
        return float(kji[2]) * sx, float(kji[1]) * sy

    return image, "along the columns (mm)", "along the rows (mm)"


def slice_montage(volume: Any, points: list[dict[str, Any]], path: Path,
                  window: tuple[float, float] = (-1000.0, 400.0), columns: int = 4,
                  half_width_mm: float = 40.0) -> Path:
    """An axial crop (``2 * half_width_mm`` wide) through each world point (``{"xyz",
    "diameter_mm", "label"}``), the point circled at its diameter and labelled. The title's
    world coordinates (mm, LPS) and the axes are in the same frame (see :func:`_plane_axes`).
    """
    arr = volume.array
    sx, sy, _ = volume.spacing
    shown = points or [{"xyz": volume.voxel_to_world(np.array(arr.shape) // 2),
                        "diameter_mm": 0.0, "label": "centre slice"}]
    n = len(shown)
    cols = min(columns, n)
    rows = (n + cols - 1) // cols
    fig, axs = figure(3.0 * cols, 3.1 * rows, rows, cols, squeeze=False)
    for ax in axs.ravel()[n:]:
        ax.set_axis_off()
    for ax, p in zip(axs.ravel(), shown):
        k, j, i = (float(c) for c in volume.world_to_voxel(p["xyz"]))
        z = int(np.clip(round(k), 0, arr.shape[0] - 1))
        to_plot, xlabel, ylabel = _plane_axes(volume, z)
        hy, hx = int(half_width_mm / sy), int(half_width_mm / sx)
        y0, y1 = max(0, int(j) - hy), min(arr.shape[1], int(j) + hy)
        x0, x1 = max(0, int(i) - hx), min(arr.shape[2], int(i) + hx)
        left, top = to_plot((z, y0 - 0.5, x0 - 0.5))  # pixel edges, not centres
        right, bottom = to_plot((z, y1 - 0.5, x1 - 0.5))
        ax.imshow(_window(arr[z, y0:y1, x0:x1], window), cmap="gray", vmin=0, vmax=1,
                  extent=(left, right, bottom, top), origin="upper")
        d = float(p.get("diameter_mm", 0.0))
        if d > 0:
            ax.add_patch(_circle(to_plot((k, j, i)), d / 2 + 1.5))
        xyz = p["xyz"]
        style(ax, f"{p.get('label', '')}\n(x, y, z) = ({xyz[0]:.0f}, {xyz[1]:.0f}, "
                  f"{xyz[2]:.0f}) mm", xlabel, ylabel)
        ax.grid(False)
    return save(fig, path)


def _circle(centre: tuple[float, float], radius: float) -> Any:
    from matplotlib.patches import Circle

    return Circle(centre, radius, fill=False, edgecolor="#ff4040", linewidth=1.5)
