"""Size and extent of a detected nodule from a segmentation, measured as radiologists do.

The detector's size head gives one number learnt from phantoms, and it runs low on real
lesions. A candidate is measured here on the 1 mm working grid instead:

1. a cube around the candidate (1.5 times the detector's diameter either way, 12-40 mm);
2. the voxels at or above ``threshold_hu`` (-400 HU: solid and part-solid tissue, not the
   aerated lung around it);
3. the connected part that holds the candidate's centre (or the nearest such voxel within
   a quarter of the diameter). When it reaches the cube's faces it has run into something
   else (a vessel, the pleura, the mediastinum): it is opened by reconstruction (eroded by a
   ball of r mm, the centre's part kept and grown back by r inside the threshold mask), r
   from 1 mm up to a quarter of the diameter, until it stays inside the cube: a contact
   narrower than 2r is cut. A region inside the cube whose long axis is still more than
   1.5 times its volume-equivalent diameter carries a stub of what it touches (a vessel
   running out of it): the opening goes on until it is compact (or keeps the first region
   inside the cube when it never is). Opening keeps every part thicker than 2r, so a lesion
   that is itself elongated but thick is not cut down.

From that region: the **long axis** (the longest in-plane distance across it on any axial
slice, between boundary voxel centres: what LIDC readers and Lung-RADS report as the
diameter), the **volume**
and the **volume-equivalent diameter**, and the world-space **extent** (the box of its
voxels). A region that reaches the cube's faces has leaked into the chest wall, the
mediastinum or a large vessel (or the lesion is larger than the cube): it is not used, and
the result says so; the detector's own diameter stands.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from deepseek.medical import morphology

THRESHOLD_HU = -400.0
#: a region whose long axis exceeds its volume-equivalent diameter by more than this still
#: carries part of what it lies against: the opening goes on (up to its largest radius)
MAX_ELONGATION = 1.5
MIN_HALF_MM, MAX_HALF_MM = 12, 40


def longest_chord(points: np.ndarray) -> float:
    """The longest distance between two of ``points`` (``(N, 2)`` or ``(N, 3)``, mm)."""
    if len(points) < 2:
        return 0.0
    d = points[:, None, :] - points[None, :, :]
    return float(np.sqrt((d ** 2).sum(-1)).max())


def _longest_in_plane(region: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """Longest distance across ``region`` (z, y, x) on any axial slice, between the centres
    of its boundary voxels (mm), as a reader's calipers on the outline."""
    best = 0.0
    sx, sy = float(spacing[0]), float(spacing[1])
    for sl in region:
        if not sl.any():
            continue
        p = np.pad(sl, 1)
        inner = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
        yx = np.argwhere(sl & ~inner).astype(float)  # its boundary voxels
        if len(yx) > 400:  # a long boundary: its convex extremes are on the sampled hull
            yx = yx[np.linspace(0, len(yx) - 1, 400).astype(int)]
        best = max(best, longest_chord(yx * np.array([sy, sx])))
    return best


def _compact(region: np.ndarray, spacing: tuple[float, float, float]) -> bool:
    """Whether ``region``'s long axis is at most :data:`MAX_ELONGATION` times its
    volume-equivalent diameter (else a vessel stub or a pleural tongue is still on it)."""
    vol_mm3 = float(region.sum()) * float(np.prod(spacing))
    equivalent = (6.0 * vol_mm3 / math.pi) ** (1 / 3)
    return _longest_in_plane(region, spacing) <= MAX_ELONGATION * equivalent


def measure_candidate(iso: Any, xyz: Any, diameter_mm: float,
                      threshold_hu: float = THRESHOLD_HU) -> dict[str, Any]:
    """Segment the nodule at world point ``xyz`` on ``iso`` (a straight grid, any spacing;
    the detector's 1 mm grid) and measure it (module docstring).

    Returns ``size_source`` (``"segmentation"``, or ``"detector"`` with ``size_note`` saying
    why the segmentation was not used) and, when segmented, ``long_axis_mm``, ``volume_ml``,
    ``volume_equivalent_mm`` and ``extent_mm`` (``[[x0, y0, z0], [x1, y1, z1]]`` in the
    world frame)."""
    sp = np.asarray(iso.spacing, float)
    centre = np.asarray(iso.world_to_voxel(np.asarray(xyz, float)[None])[0], float)  # z, y, x
    half_mm = float(np.clip(1.5 * float(diameter_mm), MIN_HALF_MM, MAX_HALF_MM))
    half = np.ceil(half_mm / sp[::-1]).astype(int)
    c = np.round(centre).astype(int)
    lo, hi = c - half, c + half + 1
    if np.any(c < 0) or np.any(c >= np.asarray(iso.shape)):
        return {"size_source": "detector", "size_note": "the centre is outside the volume"}
    lo_c, hi_c = np.maximum(lo, 0), np.minimum(hi, iso.shape)
    cube = np.asarray(iso.array[lo_c[0]:hi_c[0], lo_c[1]:hi_c[1], lo_c[2]:hi_c[2]])
    solid = cube >= threshold_hu
    seed = c - lo_c
    if not solid[tuple(seed)]:
        pts = np.argwhere(solid)
        if len(pts) == 0:
            return {"size_source": "detector", "size_note": f"nothing at or above "
                    f"{threshold_hu:g} HU around the candidate"}
        dist = np.sqrt((((pts - seed) * sp[::-1]) ** 2).sum(1))
        k = int(np.argmin(dist))
        if dist[k] > max(3.0, diameter_mm / 4):
            return {"size_source": "detector", "size_note": f"no tissue at or above "
                    f"{threshold_hu:g} HU within {max(3.0, diameter_mm / 4):.1f} mm of the "
                    "centre"}
        seed = pts[k]
    # opening by reconstruction: erode by r, keep the seed's part, grow it back by r within
    # the mask. r grows from 1 mm until the part no longer reaches the cube's faces (other
    # than the volume's edge): vessels and a pleural contact narrower than 2r are cut.
    shape = np.asarray(iso.shape)
    open_face = [(ax, end) for ax in range(3)
                 for end, at_edge in ((0, lo[ax] <= 0), (-1, hi[ax] >= shape[ax])) if not at_edge]

    def reaches(m: np.ndarray) -> bool:
        return any(np.take(m, end, axis=ax).any() for ax, end in open_face)

    region, r_used, first = None, 0, None
    for r in range(0, max(1, int(round(float(diameter_mm) / 4))) + 1):
        core = solid if r == 0 else ~morphology.dilate_ball(~solid, r)
        if not core.any():
            break
        lab, _ = morphology.label(core)
        pts = np.argwhere(lab > 0)
        dist = np.abs(pts - seed).sum(1)
        k = int(np.argmin(dist))
        if dist[k] > max(2, r):
            break  # the nodule itself is gone at this radius
        part = lab == lab[tuple(pts[k])]
        grown = part if r == 0 else morphology.dilate_ball(part, r) & solid
        if reaches(grown):
            continue
        first = first or (grown, r)
        if _compact(grown, tuple(sp)):
            region, r_used = grown, r
            break
    if region is None and first is not None:  # never compact: the first region inside
        region, r_used = first
    if region is None:
        return {"size_source": "detector", "size_note": f"the region at or above "
                f"{threshold_hu:g} HU reaches {half_mm:.0f} mm from the centre however thin "
                "a contact is cut: attached broadly to the chest wall, the mediastinum or a "
                "vessel, or larger than the cube"}
    cut = any(np.take(region, end, axis=ax).any() for ax in range(3) for end in (0, -1)
              if (ax, end) not in open_face)
    n = int(region.sum())
    vol_ml = n * float(np.prod(sp)) / 1000.0
    zyx = np.argwhere(region) + lo_c
    corners = np.array([[z, y, x] for z in (zyx[:, 0].min() - 0.5, zyx[:, 0].max() + 0.5)
                        for y in (zyx[:, 1].min() - 0.5, zyx[:, 1].max() + 0.5)
                        for x in (zyx[:, 2].min() - 0.5, zyx[:, 2].max() + 0.5)])
    world = iso.voxel_to_world(corners)
    out: dict[str, Any] = {
        "size_source": "segmentation",
        "long_axis_mm": round(_longest_in_plane(region, tuple(sp)), 2),
        "volume_ml": round(vol_ml, 4),
        "volume_equivalent_mm": round((6.0 * vol_ml * 1000.0 / math.pi) ** (1 / 3), 2),
        "extent_mm": [world.min(0).round(2).tolist(), world.max(0).round(2).tolist()]}
    if r_used:
        out["opening_mm"] = r_used
    if cut:
        out["size_note"] = "cut by the edge of the volume: the measures hold its part inside"
    return out
