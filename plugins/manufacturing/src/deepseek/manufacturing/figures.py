"""PNG figures for reports (OpenCV drawing): score timeline and sample frames with boxes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np


def timeline(path: str | Path, frame_index: np.ndarray, scores: np.ndarray,
             truth: Sequence[dict[str, Any]] | None, threshold: float,
             events: Sequence[Any] = (), width: int = 1200, height: int = 300) -> Path:
    """Score per frame (blue) over the ground truth (defect frames shaded red, partial ones
    grey), the threshold (dashed) and the events (green ticks)."""
    path = Path(path)
    m_l, m_r, m_t, m_b = 50, 15, 20, 35
    img = np.full((height, width, 3), 255, np.uint8)
    n = int(max(len(truth) if truth else 0, (frame_index.max() + 1) if len(frame_index) else 1))
    pw, ph = width - m_l - m_r, height - m_t - m_b

    def fx(f: float) -> int:
        return int(m_l + pw * f / max(n - 1, 1))

    def fy(s: float) -> int:
        return int(m_t + ph * (1 - s))

    if truth:
        for r in truth:
            if int(r["defect"]) or int(r.get("partial", 0)):
                colour = (200, 200, 255) if int(r["defect"]) else (225, 225, 225)
                cv2.rectangle(img, (fx(r["frame"]), m_t), (fx(r["frame"] + 1), m_t + ph),
                              colour, -1)
    for x in range(m_l, m_l + pw, 12):
        cv2.line(img, (x, fy(threshold)), (min(x + 6, m_l + pw), fy(threshold)), (80, 80, 80), 1)
    if len(frame_index):
        pts = np.stack([[fx(f) for f in frame_index], [fy(float(s)) for s in scores]], 1)
        cv2.polylines(img, [pts.astype(np.int32)], False, (180, 80, 0), 1, cv2.LINE_AA)
    for e in events:
        cv2.line(img, (fx(e.frame), m_t + ph), (fx(e.frame), m_t + ph - 12), (0, 150, 0), 2)
    cv2.rectangle(img, (m_l, m_t), (m_l + pw, m_t + ph), (0, 0, 0), 1)
    for s in (0.0, 0.5, 1.0):
        cv2.putText(img, f"{s:.1f}", (8, fy(s) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0))
    for k in range(6):
        f = int(round(k * (n - 1) / 5))
        cv2.putText(img, str(f), (fx(f) - 10, height - 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 0, 0))
    cv2.putText(img, "frame   (blue: score, red: defect frames, grey: partial, green: events)",
                (m_l, height - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0))
    cv2.imwrite(str(path), img)
    return path


def sample_frames(path: str | Path, frames: Sequence[tuple[np.ndarray, str,
                  tuple[int, int, int, int] | None, tuple[int, int, int, int] | None]],
                  columns: int = 3, tile_width: int = 400) -> Path:
    """A montage of ``(image, label, predicted_box, true_box)``: predicted box red, true
    box green."""
    path = Path(path)
    tiles = []
    for img, label, pbox, tbox in frames:
        t = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        if tbox is not None:
            cv2.rectangle(t, tbox[:2], tbox[2:], (0, 200, 0), 2)
        if pbox is not None:
            cv2.rectangle(t, pbox[:2], pbox[2:], (0, 0, 255), 2)
        s = tile_width / t.shape[1]
        t = cv2.resize(t, (tile_width, int(round(t.shape[0] * s))), interpolation=cv2.INTER_AREA)
        cv2.rectangle(t, (0, 0), (tile_width, 22), (0, 0, 0), -1)
        cv2.putText(t, label, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        tiles.append(t)
    if not tiles:
        tiles = [np.full((60, tile_width, 3), 255, np.uint8)]
    th = max(t.shape[0] for t in tiles)
    tiles = [cv2.copyMakeBorder(t, 0, th - t.shape[0] + 4, 0, 4, cv2.BORDER_CONSTANT,
                                value=(255, 255, 255)) for t in tiles]
    while len(tiles) % columns:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)]
    cv2.imwrite(str(path), np.vstack(rows))
    return path
