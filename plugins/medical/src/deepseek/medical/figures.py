"""PNG figures for reports: windowed slice montages with markers (Pillow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def window_to_uint8(hu: np.ndarray, window: tuple[float, float] = (-1000.0, 400.0)) -> np.ndarray:
    lo, hi = window
    return (np.clip((hu - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def slice_montage(volume: Any, points: list[dict[str, Any]], path: Path,
                  window: tuple[float, float] = (-1000.0, 400.0), tile: int = 256,
                  columns: int = 4) -> Path:
    """Axial slices through each world point (``{"xyz": (x, y, z), "diameter_mm": d,
    "label": str}``) with a box of the given diameter drawn around it."""
    from PIL import Image, ImageDraw

    arr = volume.array
    tiles = []
    for p in points:
        k, j, i = volume.world_to_voxel(p["xyz"])
        z = int(np.clip(round(k), 0, arr.shape[0] - 1))
        img = Image.fromarray(window_to_uint8(arr[z], window)).convert("RGB")
        sx, sy = tile / arr.shape[2], tile / arr.shape[1]
        img = img.resize((tile, tile), Image.BILINEAR)
        draw = ImageDraw.Draw(img)
        r = max(3.0, 0.5 * p.get("diameter_mm", 10.0) / volume.spacing[0] * sx + 3)
        cx, cy = i * sx, j * sy
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], outline=(255, 64, 64), width=2)
        draw.text((4, 4), f"{p.get('label', '')} z={z}", fill=(255, 255, 0))
        tiles.append(img)
    if not tiles:
        tiles = [Image.fromarray(window_to_uint8(arr[arr.shape[0] // 2], window)).convert("RGB")
                 .resize((tile, tile))]
    rows = (len(tiles) + columns - 1) // columns
    cols = min(columns, len(tiles))
    sheet = Image.new("RGB", (cols * tile, rows * tile))
    for n, t in enumerate(tiles):
        sheet.paste(t, ((n % columns) * tile, (n // columns) * tile))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def orthogonal_views(volume: Any, path: Path, window: tuple[float, float] = (-1000.0, 400.0),
                     height: int = 256) -> Path:
    """Axial, coronal and sagittal mid-planes side by side, each at its physical aspect."""
    from PIL import Image

    arr = volume.array
    sx, sy, sz = volume.spacing
    nz, ny, nx = arr.shape
    views = [
        (arr[nz // 2], nx * sx, ny * sy),
        (arr[:, ny // 2, :][::-1], nx * sx, nz * sz),
        (arr[:, :, nx // 2][::-1], ny * sy, nz * sz),
    ]
    imgs = []
    for a, w_mm, h_mm in views:
        w = max(1, int(round(height * w_mm / h_mm))) if h_mm > 0 else height
        imgs.append(Image.fromarray(window_to_uint8(a, window)).resize((min(w, 3 * height),
                                                                        height)))
    sheet = Image.new("L", (sum(i.width for i in imgs), height))
    x = 0
    for im in imgs:
        sheet.paste(im, (x, 0))
        x += im.width
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
