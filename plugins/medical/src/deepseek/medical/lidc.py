"""Radiologists' reads in the LIDC-IDRI XML format, and the sizes they imply.

An LIDC read file (``LidcReadMessage``) holds one ``readingSession`` per radiologist. In each:

* ``unblindedReadNodule``: a nodule. One of 3 mm or more is outlined slice by slice: every
  ``roi`` has the slice's ``imageZposition`` (mm), its ``imageSOP_UID``, ``inclusion`` (TRUE
  for the nodule's outline, FALSE for a hole cut out of it) and the outline as ``edgeMap``
  pixel positions (``xCoord`` column, ``yCoord`` row); ``characteristics`` holds the reader's
  ratings (subtlety, malignancy ...). A nodule under 3 mm is one ``roi`` with one point, its
  centre.
* ``nonNodule``: a finding that is not a nodule, marked by one point (``locus``).

:func:`read_lidc_xml` reads them (the namespace does not matter; a missing field is an error
naming the reader, the nodule and the field), and :func:`outline_measures` turns one reader's
outline into what LIDC and Lung-RADS measure: the longest axial diameter, the volume and
the volume-equivalent diameter, and the world-space extent, using the series' geometry.
The outline pixels belong to the nodule (the region is the filled outline, the outline
included), as LIDC's own tools count it.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.medical.errors import MedicalError


class LidcFileError(MedicalError):
    """An LIDC read file that cannot be read: not XML, not LIDC, or a field missing."""


@dataclass
class LidcRoi:
    """One slice of an outline: ``points`` is ``(N, 2)`` pixel positions (column, row)."""

    z: float
    sop_uid: str
    inclusion: bool
    points: np.ndarray


@dataclass
class LidcNodule:
    """A nodule as one reader marked it (``reader``: the session's index in the file)."""

    reader: int
    reader_id: str
    nodule_id: str
    rois: list[LidcRoi]
    characteristics: dict[str, int] = field(default_factory=dict)

    @property
    def is_small(self) -> bool:
        """Marked by its centre only (a nodule under 3 mm)."""
        return len(self.rois) == 1 and len(self.rois[0].points) == 1

    @property
    def z_range(self) -> tuple[float, float]:
        """Lowest and highest slice position (z, mm) the reader outlined."""
        zs = [r.z for r in self.rois]
        return min(zs), max(zs)


@dataclass
class LidcPoint:
    """A non-nodule finding: one point (column, row) on the slice at ``z``."""

    reader: int
    reader_id: str
    finding_id: str
    z: float
    sop_uid: str
    point: tuple[float, float]


@dataclass
class LidcRead:
    """One radiologist's session: nodules and non-nodules."""

    reader: int
    reader_id: str
    nodules: list[LidcNodule]
    non_nodules: list[LidcPoint]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(el: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in el if _local(c.tag) == name), None)


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _local(c.tag) == name]


def _text(el: ET.Element, name: str, where: str, path: Path) -> str:
    c = _child(el, name)
    if c is None or c.text is None or not c.text.strip():
        raise LidcFileError(f"{path}: {where} has no {name}")
    return c.text.strip()


def _number(el: ET.Element, name: str, where: str, path: Path) -> float:
    raw = _text(el, name, where, path)
    try:
        v = float(raw)
    except ValueError:
        raise LidcFileError(f"{path}: {where}: {name} {raw!r} is not a number") from None
    if not math.isfinite(v):
        raise LidcFileError(f"{path}: {where}: {name} is {raw}")
    return v


def _points(el: ET.Element, where: str, path: Path) -> np.ndarray:
    pts = [(_number(e, "xCoord", where, path), _number(e, "yCoord", where, path))
           for e in _children(el, "edgeMap")]
    if not pts:
        raise LidcFileError(f"{path}: {where} has no edgeMap point")
    return np.asarray(pts, float)


def read_lidc_xml(path: str | Path) -> list[LidcRead]:
    """Every reading session of an LIDC read file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise LidcFileError(f"{path}: no such file")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise LidcFileError(f"{path}: not well-formed XML ({exc})") from None
    if _local(root.tag) != "LidcReadMessage":
        raise LidcFileError(f"{path}: the root element is {_local(root.tag)!r}, not "
                            "'LidcReadMessage': not an LIDC read file")
    reads = []
    for k, session in enumerate(_children(root, "readingSession")):
        rid_el = _child(session, "servicingRadiologistID")
        rid = rid_el.text.strip() if rid_el is not None and rid_el.text else str(k)
        nodules = []
        for n in _children(session, "unblindedReadNodule"):
            nid = _text(n, "noduleID", f"reader {k} ({rid}): a nodule", path)
            where = f"reader {k} ({rid}), nodule {nid!r}"
            rois = []
            for i, r in enumerate(_children(n, "roi")):
                w = f"{where}, roi {i}"
                inc = _child(r, "inclusion")
                rois.append(LidcRoi(
                    z=_number(r, "imageZposition", w, path),
                    sop_uid=(_child(r, "imageSOP_UID").text or "").strip()
                    if _child(r, "imageSOP_UID") is not None else "",
                    inclusion=inc is None or (inc.text or "").strip().upper() != "FALSE",
                    points=_points(r, w, path)))
            if not rois:
                raise LidcFileError(f"{path}: {where} has no roi")
            chars = {}
            ch = _child(n, "characteristics")
            if ch is not None:
                for c in ch:
                    if c.text and c.text.strip().lstrip("-").isdigit():
                        chars[_local(c.tag)] = int(c.text.strip())
            nodules.append(LidcNodule(k, rid, nid, rois, chars))
        others = []
        for n in _children(session, "nonNodule"):
            nid = _text(n, "nonNoduleID", f"reader {k} ({rid}): a non-nodule", path)
            where = f"reader {k} ({rid}), non-nodule {nid!r}"
            locus = _child(n, "locus")
            if locus is None:
                raise LidcFileError(f"{path}: {where} has no locus")
            sop = _child(n, "imageSOP_UID")
            others.append(LidcPoint(k, rid, nid, _number(n, "imageZposition", where, path),
                                    (sop.text or "").strip() if sop is not None else "",
                                    (_number(locus, "xCoord", where, path),
                                     _number(locus, "yCoord", where, path))))
        reads.append(LidcRead(k, rid, nodules, others))
    if not reads:
        raise LidcFileError(f"{path}: no readingSession")
    return reads


def fill_outline(points: np.ndarray) -> np.ndarray:
    """The pixels (column, row) inside a closed outline of pixel positions, the outline
    included: pixel centres inside the polygon by the even-odd rule, plus the pixels on its
    edges (consecutive points joined by straight lines: LIDC lists every outline pixel, a
    sparser outline is joined up)."""
    pts = np.asarray(points, float)
    cells: set[tuple[int, int]] = set()
    nxt = np.roll(pts, -1, axis=0)
    for (xa, ya), (xb, yb) in zip(pts, nxt):
        n = int(max(abs(xb - xa), abs(yb - ya))) + 1
        xs, ys = np.linspace(xa, xb, n + 1), np.linspace(ya, yb, n + 1)
        cells |= set(zip(np.round(xs).astype(int).tolist(), np.round(ys).astype(int).tolist()))
    if len(pts) >= 3:
        x0, y0 = pts[:, 0], pts[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        for y in range(int(math.floor(y0.min())), int(math.ceil(y0.max())) + 1):
            cross = (y0 <= y) != (y1 <= y)  # edges crossing the row's centre line
            if not cross.any():
                continue
            xs = np.sort(x0[cross] + (y - y0[cross]) * (x1[cross] - x0[cross])
                         / (y1[cross] - y0[cross]))
            for a, b in zip(xs[::2], xs[1::2]):
                for x in range(int(math.ceil(a)), int(math.floor(b)) + 1):
                    cells.add((x, y))
    return np.array(sorted(cells), int).reshape(-1, 2)


def outline_measures(nodule: LidcNodule, volume: Any,
                     z_range: tuple[float, float] | None = None) -> dict[str, Any] | None:
    """Sizes of one reader's outline, in the geometry of ``volume`` (the series it was drawn
    on: its pixel spacing and in-plane directions; the slices' z come from the read).

    ``z_range`` (mm): only the outline's slices within it (e.g. the slices of a partial
    series). Returns None when no included slice is left, else ``long_axis_mm`` (the longest
    distance between two outline points on one slice, pixel centre to pixel centre),
    ``volume_ml`` (filled pixels x pixel area x slice step, holes cut out),
    ``volume_equivalent_mm`` (the diameter of a sphere of that volume), ``extent_mm``
    (world-space box ``[[x0, y0, z0], [x1, y1, z1]]``), ``centre_mm``, ``slices`` and
    ``small`` (a nodule under 3 mm marked by its centre: one pixel, no size)."""
    from deepseek.medical.nodule_size import longest_chord

    d = np.asarray(volume.direction, float)
    if abs(d[2, 2]) < 0.999:
        raise LidcFileError("LIDC outlines need an axial series (this one is tilted or not "
                            "axial); straighten it first")
    sx, sy = float(volume.spacing[0]), float(volume.spacing[1])
    step = float(volume.spacing[2])
    rois = [r for r in nodule.rois
            if z_range is None or z_range[0] - 1e-3 <= r.z <= z_range[1] + 1e-3]
    by_z: dict[float, list[LidcRoi]] = {}
    for r in rois:
        by_z.setdefault(round(r.z, 3), []).append(r)
    world_pts, n_px, longest = [], 0, 0.0
    for z, group in sorted(by_z.items()):
        keep: set[tuple[int, int]] = set()
        for r in group:
            if r.inclusion:
                keep |= set(map(tuple, fill_outline(r.points).tolist()))
        for r in group:
            if not r.inclusion:
                keep -= set(map(tuple, fill_outline(r.points).tolist()))
        if not keep:
            continue
        px = np.array(sorted(keep), float)
        n_px += len(px)
        for r in group:
            if r.inclusion:
                mm = r.points * np.array([sx, sy])
                longest = max(longest, longest_chord(mm))
        for dc, dr in ((-0.5, -0.5), (0.5, 0.5)):
            col, row = px[:, 0] + dc, px[:, 1] + dr
            wx = volume.origin[0] + d[0, 0] * sx * col + d[0, 1] * sy * row
            wy = volume.origin[1] + d[1, 0] * sx * col + d[1, 1] * sy * row
            world_pts.append(np.stack([wx, wy, np.full(len(px), z + dc * step)], 1))
    if not world_pts:
        return None
    allw = np.concatenate(world_pts)
    vol_ml = n_px * sx * sy * step / 1000.0
    small = nodule.is_small
    return {"long_axis_mm": None if small else round(longest, 2),
            "volume_ml": None if small else round(vol_ml, 4),
            "volume_equivalent_mm": None if small else
            round((6.0 * vol_ml * 1000.0 / math.pi) ** (1 / 3), 2),
            "extent_mm": [allw.min(0).round(2).tolist(), allw.max(0).round(2).tolist()],
            "centre_mm": ((allw.min(0) + allw.max(0)) / 2).round(2).tolist(),
            "slices": len(by_z), "small": small}
