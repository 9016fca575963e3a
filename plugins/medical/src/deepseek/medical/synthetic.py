"""A synthetic chest CT phantom written as a real DICOM CT series, with LUNA16 ground truth.

The phantom is defined analytically in world space (LPS mm), so any slice geometry -- pixel
size, slice step, gantry tilt -- samples the same anatomy: body outline with a fat layer and
muscle, ribs and spine, mediastinum, two lungs with a posterior density gradient, trachea and
main bronchi, branching vessel trees, and nodules of 3-30 mm (solid and part-solid; some
touching the pleura or a vessel). Gaussian noise is added per slice; realistic phantoms are
also seen through a scanner's point spread (:func:`reconstruct`).

``write_phantom(out_dir, ...)`` writes a CT Image Storage series (or one Enhanced CT file) and
``annotations.csv`` in LUNA16's format (``seriesuid,coordX,coordY,coordZ,diameter_mm``, world
mm). ``deepseek medical phantom OUT_DIR`` is the CLI.
"""

from __future__ import annotations

import csv
import datetime as _dt
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.medical.errors import MedicalError

log = logging.getLogger(__name__)

TRANSFER_SYNTAXES = {
    "explicit": "1.2.840.10008.1.2.1",
    "implicit": "1.2.840.10008.1.2",
    "big-endian": "1.2.840.10008.1.2.2",
    "deflate": "1.2.840.10008.1.2.1.99",
    "rle": "1.2.840.10008.1.2.5",
    "jpeg-ls": "1.2.840.10008.1.2.4.80",
    "jpeg2000": "1.2.840.10008.1.2.4.90",
}
_COMPRESSED = {"rle", "jpeg-ls", "jpeg2000"}
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"


@dataclass
class Nodule:
    """A phantom nodule: world centre (mm), diameter, kind (solid or part-solid) and what it
    touches.
    """
    center: tuple[float, float, float]  # world (x, y, z) mm
    diameter_mm: float
    kind: str = "solid"  # or "part-solid"
    attached: str = "none"  # or "pleura", "vessel"


@dataclass
class _Tube:
    a: np.ndarray
    b: np.ndarray
    radius: float
    hu: float
    lumen_hu: float | None = None  # airways: air inside a wall
    wall: float = 2.0  # airways: wall thickness in mm


PSF_MM = 0.5
"""In-plane point spread (Gaussian sigma, mm) of realistic phantoms: a standard soft-tissue
reconstruction kernel, whose modulation transfer falls to 10 % near 0.65 cycles/mm."""


def reconstruct(hu: np.ndarray, spacing_xy: tuple[float, float], psf_mm: float, noise: float,
                rng: np.random.Generator) -> np.ndarray:
    """Noise-free HU (one slice ``(y, x)`` or axial slices ``(z, y, x)``) as a scanner
    reconstructs them: each slice blurred in-plane by a Gaussian of sigma ``psf_mm``, plus
    Gaussian noise passed through the same kernel and scaled to ``noise`` HU standard
    deviation (CT noise is correlated by its kernel, not white). Not rounded."""
    from deepseek.medical.volume import require_sitk

    sitk = require_sitk("the phantom CT")

    arr = np.asarray(hu, np.float32)
    flat = arr.ndim == 2
    vol = arr[None] if flat else arr
    var = [float(psf_mm) ** 2, float(psf_mm) ** 2, 0.0]

    def blur(a: np.ndarray) -> np.ndarray:
        img = sitk.GetImageFromArray(a)
        img.SetSpacing([float(spacing_xy[0]), float(spacing_xy[1]), 1.0])
        return sitk.GetArrayFromImage(sitk.DiscreteGaussian(img, var, 64, 0.001, True))

    out = blur(vol)
    if noise > 0:
        white = rng.normal(0.0, 1.0, vol.shape).astype(np.float32)
        r = int(np.ceil(4 * psf_mm / min(spacing_xy))) + 1
        delta = np.zeros((1, 2 * r + 1, 2 * r + 1), np.float32)
        delta[0, r, r] = 1.0
        gain = float(np.sqrt((blur(delta).astype(np.float64) ** 2).sum()))  # kernel's L2 norm
        out += blur(white) * np.float32(noise / gain)
    return out[0] if flat else out


class ChestPhantom:
    """The analytic anatomy. ``hu(points)`` gives noise-free HU at world points ``(N, 3)``."""

    def __init__(self, seed: int = 0, z_range: tuple[float, float] = (-150.0, 150.0),
                 n_nodules: int = 6, diameters: tuple[float, float] = (3.0, 30.0),
                 texture: float | None = None, realistic: bool = False,
                 psf_mm: float | None = None,
                 nodule_z_range: tuple[float, float] | None = None) -> None:
        """``z_range``: the slab of the anatomy (mm of z); ``nodule_z_range``: the part of it
        the nodules lie in, 12 mm plus their radius inside each end (default ``z_range``; a
        tilted series passes the slab that every image row covers).

        ``texture``: standard deviation in HU of a parenchymal texture field in the lungs (see
        :class:`_Texture`). ``realistic``: lungs closer to real CT (opt-in; the packaged weights
        began on the default smooth lungs and were fine-tuned on these): a vessel tree from
        each hilum that fills its lung by recursive halving of its territory
        (:meth:`_murray_tree`), whose calibre halves every three branchings (Murray's
        law, r_child = r / 2^(1/3)) from 4.5 mm down to 0.4 mm, a bronchus (air inside a
        wall a fifth of its radius thick) beside every branch of 1.2 mm or more, vessel
        and airway edges blurred over 1 mm as a scanner's partial volume does, the
        oblique and horizontal fissures as 1 mm sheets, parenchyma at -880 HU with a 20
        HU texture (unless ``texture`` says otherwise), imaged through a scanner's point
        spread. ``psf_mm``: the in-plane Gaussian point spread (sigma, mm) of the simulated
        reconstruction kernel, applied to the anatomy and the noise alike by every renderer
        (:func:`render_volume`, :func:`write_phantom`, the training patches); default
        :data:`PSF_MM` with ``realistic``, else 0 (sharp)."""
        self.rng = np.random.default_rng(seed)
        self.realistic = bool(realistic)
        self.psf_mm = float(PSF_MM if psf_mm is None and realistic else psf_mm or 0.0)
        if not (math.isfinite(self.psf_mm) and 0.0 <= self.psf_mm <= 5.0):
            raise MedicalError(f"psf_mm must be between 0 and 5 mm, got {psf_mm!r}")
        if texture is None:
            texture = 20.0 if realistic else 0.0
        self.texture = _Texture(seed, float(texture)) if texture > 0 else None
        z0, z1 = z_range
        self.z0, self.z1 = z0, z1
        self.nodule_z = tuple(float(v) for v in (nodule_z_range or z_range))
        self.zc = 0.5 * (z0 + z1)
        L = z1 - z0
        r = self.rng
        self.body = (160.0 + r.uniform(-10, 10), 112.0 + r.uniform(-8, 8))  # semi-axes x, y
        self.fat = 14.0 + r.uniform(-4, 4)
        self.lungs = [
            (np.array([side * 72.0, -4.0, self.zc + 10.0]),
             np.array([56.0 + r.uniform(-4, 4), 78.0 + r.uniform(-4, 4), 0.5 * L + 30.0]))
            for side in (-1.0, 1.0)
        ]
        self.heart = (np.array([8.0, -22.0, self.zc - 0.2 * L]), np.array([58.0, 52.0, 0.35 * L]))
        self.spine = (np.array([0.0, 82.0]), 17.0)
        tubes: list[_Tube] = []
        carina = np.array([0.0, -18.0, self.zc + 0.15 * L])
        tubes.append(_Tube(np.array([0.0, -30.0, z1 + 20.0]), carina, 9.0, 40.0, -1000.0))
        hila = []
        for side in (-1.0, 1.0):
            hilum = np.array([side * 42.0, -8.0, self.zc + 0.05 * L])
            tubes.append(_Tube(carina, hilum, 6.0, 40.0, -1000.0))
            hila.append(hilum)
        self.vessels: list[_Tube] = []
        for (center, axes), hilum in zip(self.lungs, hila):
            if self.realistic:
                self._murray_tree(hilum + np.array([0.0, 6.0, 0.0]), (center, axes),
                                  radius=4.5)
            else:
                self._tree(hilum + np.array([0.0, 6.0, 0.0]), center, axes, depth=4,
                           radius=4.5)
        self.tubes = tubes
        self.nodules = self._place_nodules(n_nodules, diameters)

    # anatomy ---------------------------------------------------------------------------------
    def _tree(self, start: np.ndarray, center: np.ndarray, axes: np.ndarray, depth: int,
              radius: float, direction: np.ndarray | None = None) -> None:
        r = self.rng
        for _ in range(2 if direction is not None else 4):
            if direction is None:
                d = center - start + r.normal(0, 25, 3)
            else:
                d = direction + r.normal(0, 0.6, 3)
            d /= np.linalg.norm(d)
            length = 22.0 + depth * 9.0 + r.uniform(-5, 5)
            end = start + d * length
            if not self._in_lung(end[None], margin=0.0)[0]:
                end = start + d * length * 0.5
            self.vessels.append(_Tube(start.copy(), end, radius, 40.0))
            if depth > 1:
                self._tree(end, center, axes, depth - 1, max(0.8, radius * 0.68), d)

    def _murray_tree(self, start: np.ndarray, lung: tuple[np.ndarray, np.ndarray],
                     radius: float, n_territory: int = 1024) -> None:
        """A vessel tree that fills the lung: ``n_territory`` random points of the lung are
        its territory; every branch splits its territory in two halves across its widest
        extent and sends a child half-way to each half's centre, the calibre divided by
        2^(1/3) (Murray's law), until a territory is one point or the calibre 0.4 mm."""
        r = self.rng
        c, ax = lung
        pts = c + ax * r.uniform(-1, 1, (8 * n_territory, 3))
        pts = pts[self._in_lung(pts)][:n_territory]

        def grow(start: np.ndarray, terr: np.ndarray, rad: float) -> None:
            if len(terr) < 2 or rad < 0.4:
                return
            spread = terr - terr.mean(0)
            axis = np.linalg.svd(spread, full_matrices=False)[2][0]
            side = spread @ axis > np.median(spread @ axis)
            child = max(0.4, rad * 2 ** (-1 / 3))
            for half in (terr[side], terr[~side]):
                if not len(half):
                    continue
                end = start + 0.5 * (half.mean(0) - start)
                if np.linalg.norm(end - start) < 0.5 or not self._in_lung(end[None])[0]:
                    continue
                self.vessels.append(_Tube(start.copy(), end, rad, 40.0))
                if rad >= 1.2:  # its bronchus beside it (the arteries run with the airways)
                    d = (end - start) / np.linalg.norm(end - start)
                    off = np.cross(d, [0.0, 0.0, 1.0] if abs(d[2]) < 0.9 else [1.0, 0.0, 0.0])
                    off *= (2.0 * rad + 0.5) / np.linalg.norm(off)
                    if self._in_lung(np.stack([start + off, end + off])).all():
                        self.vessels.append(_Tube(start + off, end + off, rad, 40.0,
                                                  lumen_hu=-1000.0, wall=max(0.4, 0.2 * rad)))
                grow(end, half, child)

        grow(start, pts, radius)

    def vessel_landmarks(self, min_radius: float = 1.0) -> list[dict[str, Any]]:
        """The places on the vessel tree that look most like a nodule on axial slices: every
        branching (the point where two or more vessels leave one, with the calibre of the
        widest there) and the middle of every vessel that runs within 45 degrees of the
        scanner's axis (a round cross-section from slice to slice), for vessels of radius
        ``min_radius`` mm or more (the thick ones, near the hila and the mediastinum).
        Each: ``xyz`` (world mm), ``radius_mm`` and ``kind`` (``"branching"`` or
        ``"cross-section"``). Airways are not vessels and are left out."""
        vessels = [t for t in self.vessels if t.lumen_hu is None]
        starts: dict[tuple[float, float, float], list[_Tube]] = {}
        for t in vessels:
            starts.setdefault(tuple(np.round(t.a, 6)), []).append(t)
        out: list[dict[str, Any]] = []
        for key, group in starts.items():
            rad = max(t.radius for t in group)
            if len(group) >= 2 and rad >= min_radius:
                out.append({"xyz": tuple(float(v) for v in key), "radius_mm": float(rad),
                            "kind": "branching"})
        for t in vessels:
            d = t.b - t.a
            length = float(np.linalg.norm(d))
            if t.radius >= min_radius and length > 0 and abs(d[2]) / length >= math.cos(
                    math.pi / 4):
                mid = 0.5 * (t.a + t.b)
                out.append({"xyz": tuple(float(v) for v in mid), "radius_mm": float(t.radius),
                            "kind": "cross-section"})
        return out

    def _in_body(self, p: np.ndarray, shrink: float = 0.0) -> np.ndarray:
        a, b = self.body
        return ((p[:, 0] / (a - shrink)) ** 2 + (p[:, 1] / (b - shrink)) ** 2) <= 1.0

    def _lung_value(self, p: np.ndarray) -> np.ndarray:
        """Signed 'inside-ness' of the lungs: > 0 inside (max over both lungs)."""
        best = np.full(len(p), -np.inf)
        for c, ax in self.lungs:
            q = (p - c) / ax
            best = np.maximum(best, 1.0 - np.sqrt((q ** 2).sum(1)))
        hc, hax = self.heart
        heart_in = 1.0 - np.sqrt((((p - hc) / hax) ** 2).sum(1))
        return np.minimum(best, -heart_in)

    def _in_lung(self, p: np.ndarray, margin: float = 0.0) -> np.ndarray:
        return (self._lung_value(p) > margin) & self._in_body(p, shrink=self.fat + 10)

    def _place_nodules(self, n: int, diameters: tuple[float, float]) -> list[Nodule]:
        r = self.rng
        out: list[Nodule] = []
        lo, hi = diameters
        z0, z1 = self.nodule_z
        # a nodule is kept 12 mm plus its radius inside each end of its slab (below): a slab
        # thinner than that for the smallest size can hold none, however long one tries (a
        # tilted series' slab, which every image row covers, is the usual case)
        if n > 0 and z1 - z0 < 24.0 + lo - 1e-6:
            log.warning("placed no nodules: a nodule of %.1f mm needs a slab of %.1f mm, and "
                        "the nodules' z range (%.1f, %.1f) leaves %.1f mm (more slices, or "
                        "less gantry tilt, make room)", lo, 24.0 + lo, z0, z1,
                        max(z1 - z0, 0.0))
            return out
        attempts = 0
        while len(out) < n and attempts < 20000:
            attempts += 1
            # log-uniform sizes: many small nodules, a few large ones, as in screening data
            d = float(math.exp(r.uniform(math.log(lo), math.log(hi))))
            rad = d / 2
            kind = "part-solid" if r.random() < 0.3 and d >= 6 else "solid"
            mode = ("pleura", "vessel", "none")[len(out) % 3] if n >= 3 else "none"
            c, ax = self.lungs[int(r.integers(2))]
            p = c + ax * r.uniform(-0.85, 0.85, 3)
            p[2] = np.clip(p[2], z0 + rad + 12, z1 - rad - 12)
            if mode == "vessel":
                v = self.vessels[int(r.integers(len(self.vessels)))]
                t = r.uniform(0.2, 0.8)
                axis = v.a + t * (v.b - v.a)
                off = np.cross(v.b - v.a, r.normal(size=3))
                off /= np.linalg.norm(off) + 1e-9
                p = axis + off * (rad + v.radius * 0.8)
            if mode == "pleura":
                # move outwards until the sphere touches the lung boundary
                c_l = min(self.lungs, key=lambda lv: np.linalg.norm((p - lv[0]) / lv[1]))[0]
                d_out = p - c_l
                d_out[2] = 0
                d_out /= np.linalg.norm(d_out) + 1e-9
                for _ in range(200):
                    if not self._in_lung((p + d_out * (rad + 1.0))[None])[0]:
                        break
                    p = p + d_out * 1.0
            if not (z0 + 10 + rad + 2 <= p[2] <= z1 - 10 - rad - 2):
                continue  # keep every nodule wholly inside the scanned slab
            sphere = p + rad * _fibonacci(24)
            inside = self._in_lung(sphere)
            need = 0.4 if mode != "none" else 1.0
            if not self._in_lung(p[None])[0] or inside.mean() < need:
                continue
            if any(np.linalg.norm(p - np.asarray(o.center)) < rad + o.diameter_mm / 2 + 8
                   for o in out):
                continue
            out.append(Nodule(tuple(float(v) for v in p), round(d, 2), kind, mode))
        if len(out) < n:
            log.warning("placed %d of %d nodules (the lungs are too small for more)", len(out), n)
        return out

    def hu(self, p: np.ndarray) -> np.ndarray:
        """Noise-free HU at world points ``p`` of shape ``(N, 3)``."""
        out = np.full(len(p), -1000.0, dtype=np.float32)  # outside air
        body = self._in_body(p)
        out[body] = -100.0  # subcutaneous fat
        inner = self._in_body(p, shrink=self.fat)
        out[inner] = 40.0  # muscle / soft tissue
        a, b = self.body
        # ribs: an elliptical shell in bands along z
        shell = self._in_body(p, shrink=self.fat + 4) & ~self._in_body(p, shrink=self.fat + 11)
        band = np.mod(p[:, 2] - self.z0, 26.0) < 10.0
        out[shell & band & (p[:, 1] > -a * 0.6)] = 650.0
        sc, sr = self.spine
        dist = np.hypot(p[:, 0] - sc[0], p[:, 1] - sc[1])
        out[dist < sr] = 300.0
        out[(dist < sr) & (dist > sr - 3)] = 900.0
        lung = self._in_lung(p)
        base = -880.0 if self.realistic else -860.0
        out[lung] = (base + 50.0 * np.clip(p[lung, 1] / 80.0, -1, 1)).astype(np.float32)
        if self.texture is not None and lung.any():
            out[lung] += self.texture(p[lung])
        if self.realistic and lung.any():
            self._draw_fissures(p, out, lung)
        self._draw_tubes(p, out, self.vessels, within=lung,
                         edge_mm=1.0 if self.realistic else 0.0)
        self._draw_tubes(p, out, self.tubes, within=inner)
        for nod in self.nodules:
            c = np.asarray(nod.center)
            rad = nod.diameter_mm / 2
            dd = np.sqrt(((p - c) ** 2).sum(1))
            if nod.kind == "part-solid":
                ggo = dd <= rad
                out[ggo] = np.maximum(out[ggo], -520.0)
                core = dd <= rad * 0.5
                out[core] = 25.0
            else:
                # a slightly soft edge (partial volume) over 0.6 mm
                w = np.clip((rad - dd) / 0.6 + 0.5, 0, 1)
                hit = w > 0
                out[hit] = out[hit] * (1 - w[hit]) + 30.0 * w[hit]
        return out

    def _fissures(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """(point, unit normal, cut) of each fissure plane: an oblique fissure in each lung
        (down and forwards from high at the back, about 50 degrees from axial) and the
        right lung's horizontal one, in front of its oblique fissure only (``cut``)."""
        out = []
        tilt = math.radians(50.0)
        n_obl = np.array([0.0, math.cos(tilt), math.sin(tilt)])  # +y is posterior (LPS)
        for c, ax in self.lungs:
            out.append((c + np.array([0.0, 0.0, 0.15 * ax[2]]), n_obl, None))
        right = min(self.lungs, key=lambda lv: lv[0][0])  # LPS: the patient's right is -x
        c, ax = right
        p_obl = c + np.array([0.0, 0.0, 0.15 * ax[2]])
        out.append((c + np.array([0.0, 0.0, 0.35 * ax[2]]), np.array([0.0, 0.0, 1.0]),
                    np.concatenate([p_obl, n_obl])))
        return out

    def _draw_fissures(self, p: np.ndarray, out: np.ndarray, lung: np.ndarray) -> None:
        """Fissures: 1 mm sheets at -700 HU at their centre, blurred by partial volume."""
        q = p[lung]
        vals = out[lung]
        for point, normal, cut in self._fissures():
            d = np.abs((q - point) @ normal)
            w = np.clip(1.0 - d / 0.75, 0.0, 1.0)
            if cut is not None:  # the horizontal fissure stops at the oblique one
                w *= ((q - cut[:3]) @ cut[3:]) < 0
            hit = w > 0
            vals[hit] = np.maximum(vals[hit], vals[hit] * (1 - w[hit]) - 700.0 * w[hit])
        out[lung] = vals

    @staticmethod
    def _draw_tubes(p: np.ndarray, out: np.ndarray, tubes: list[_Tube], within: np.ndarray,
                    edge_mm: float = 0.0) -> None:
        if not len(p) or not tubes:
            return
        lo_p, hi_p = p.min(0), p.max(0)
        ends = np.array([[t.a, t.b] for t in tubes])
        rad = np.array([t.radius for t in tubes]) + edge_mm / 2
        los = ends.min(1) - rad[:, None]
        his = ends.max(1) + rad[:, None]
        near = np.nonzero(np.all(his >= lo_p, 1) & np.all(los <= hi_p, 1))[0]
        if not near.size:
            return
        order = np.argsort(p[:, 0], kind="stable")  # points by x: a tube's box is a range
        xs = p[order, 0]
        for k in near:
            t, lo, hi = tubes[k], los[k], his[k]
            cand = order[np.searchsorted(xs, lo[0]):np.searchsorted(xs, hi[0], "right")]
            if not cand.size:
                continue
            pc = p[cand]
            sel = cand[np.all((pc >= lo) & (pc <= hi), axis=1) & within[cand]]
            if not sel.size:
                continue
            q = p[sel]
            ab = t.b - t.a
            s = np.clip(((q - t.a) @ ab) / (ab @ ab), 0, 1)
            d = np.linalg.norm(q - (t.a + s[:, None] * ab), axis=1)
            if edge_mm > 0:  # partial volume: blend over edge_mm across the wall
                w = np.clip((t.radius - d) / edge_mm + 0.5, 0.0, 1.0)
                hit = w > 0
                idx = sel[hit]
                out[idx] = np.maximum(out[idx], out[idx] * (1 - w[hit]) + t.hu * w[hit])
                if t.lumen_hu is not None:  # air inside the wall, its inner edge blurred too
                    wl = np.clip((t.radius - t.wall - d) / edge_mm + 0.5, 0.0, 1.0)
                    inner = wl > 0
                    idx = sel[inner]
                    out[idx] = out[idx] * (1 - wl[inner]) + t.lumen_hu * wl[inner]
                continue
            wall = d <= t.radius
            out[sel[wall]] = t.hu
            if t.lumen_hu is not None:
                out[sel[d <= t.radius - t.wall]] = t.lumen_hu


class _Texture:
    """A stationary Gaussian random field in world space (HU), periodic over 256 mm: white
    noise on a 2 mm grid filtered to a power-law spectrum, P(f) ~ f^-3.5 from 0.01 to 0.25
    cycles/mm (real lung parenchyma, with its small vessels and perfusion gradients, falls
    off that steeply: ``benchmarks/phantom_realism.py``), scaled to ``std`` HU, and sampled
    trilinearly, so any slice geometry sees the same field."""

    N, STEP, BETA = 128, 2.0, 3.5

    def __init__(self, seed: int, std: float) -> None:
        rng = np.random.default_rng(seed + 0x7E57)
        f = np.fft.fftfreq(self.N, d=self.STEP)
        fr = np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + f[None, None, :] ** 2)
        amp = np.where(fr >= 0.01, np.maximum(fr, 0.01) ** (-self.BETA / 2), 0.0)
        field = np.fft.ifftn(np.fft.fftn(rng.normal(size=(self.N,) * 3)) * amp).real
        self.grid = (field * (std / field.std())).astype(np.float32)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        g = p / self.STEP
        i0 = np.floor(g).astype(np.int64)
        w = (g - i0).astype(np.float32)
        n = self.N
        out = np.zeros(len(p), np.float32)
        for dz in (0, 1):
            for dy in (0, 1):
                for dx in (0, 1):
                    wt = ((w[:, 0] if dx else 1 - w[:, 0]) * (w[:, 1] if dy else 1 - w[:, 1])
                          * (w[:, 2] if dz else 1 - w[:, 2]))
                    out += wt * self.grid[(i0[:, 2] + dz) % n, (i0[:, 1] + dy) % n,
                                          (i0[:, 0] + dx) % n]
        return out


def _fibonacci(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = math.pi * (1 + 5 ** 0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)


@dataclass
class PhantomSeries:
    """What :func:`write_phantom` wrote."""

    out_dir: Path
    files: list[Path]
    series_uid: str
    nodules: list[Nodule]
    annotations: Path
    spacing: tuple[float, float, float]
    positions: list[tuple[float, float, float]] = field(default_factory=list)
    extra_series: list[str] = field(default_factory=list)
    dicomdir: Path | None = None


def write_phantom(out_dir: str | Path, *, seed: int = 0, size: int = 256, slices: int = 120,
                  pixel_spacing: float | None = None, slice_step: float = 2.5,
                  slice_thickness: float | None = None, n_nodules: int = 6,
                  diameters: tuple[float, float] = (3.0, 30.0), tilt_deg: float = 0.0,
                  noise: float = 15.0, transfer_syntax: str = "explicit",
                  enhanced: bool = False, shuffle: bool = False, missing_slice: bool = False,
                  extra_series: bool = False, localizer: bool = False,
                  out_of_field: bool = False, vary_rescale: bool = False,
                  dicomdir: bool = False, fov_mm: float = 360.0,
                  realistic: bool = False) -> PhantomSeries:
    """Write a chest CT phantom series to ``out_dir`` plus ``annotations.csv``.

    Args:
        out_dir: the folder the series (and annotations.csv) is written to.
        seed: the random seed (anatomy, nodules, noise); the same seed gives the same files
            except for UIDs and dates.
        size: rows = columns of each image.
        slices: number of slices.
        pixel_spacing: in-plane spacing in mm (default ``fov_mm / size``).
        slice_step: table step between slices in mm.
        slice_thickness: nominal SliceThickness (default: the step).
        n_nodules: how many nodules.
        diameters: their diameter range in mm.
        tilt_deg: gantry tilt about the patient's left-right axis: the chest an untilted
            series of these slices shows, through tilted planes, its nodules inside the slab
            that every image row covers (none, with a warning, when that slab is too thin).
        noise: standard deviation of the Gaussian noise in HU.
        transfer_syntax: one of ``explicit``, ``implicit``, ``big-endian``, ``deflate``,
            ``rle``, ``jpeg-ls``, ``jpeg2000`` (lossless ones, so HU survive exactly).
        enhanced: write one Enhanced CT multi-frame file instead of one file per slice.
        shuffle: random file names and shuffled InstanceNumbers.
        missing_slice: drop one slice in the middle (a gap).
        extra_series: add a second, thicker axial CT series (5 mm) in the same folder.
        localizer: add a coronal localizer image sharing the main SeriesInstanceUID.
        out_of_field: set pixels outside a circular field of view to -3024 HU (as scanners
            do), and declare PixelPaddingValue.
        vary_rescale: a different RescaleIntercept on every slice.
        dicomdir: write the series as a DICOM File-set with a ``DICOMDIR``.
        fov_mm: the field of view in mm (sets the pixel spacing when it is not given).
        realistic: lungs closer to real CT (:class:`ChestPhantom` ``realistic``).

    Raises:
        MedicalError: an unknown transfer syntax, a size under 16 or no slices, an enhanced
            file asked for with compression.
    """
    import pydicom  # noqa: F401  (fail early with a clear import error)
    from pydicom.uid import generate_uid

    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise MedicalError(f"unknown transfer_syntax {transfer_syntax!r}; use one of "
                           f"{', '.join(TRANSFER_SYNTAXES)}")
    if size < 16 or slices < 1:
        raise MedicalError("size must be >= 16 and slices >= 1")
    if enhanced and transfer_syntax not in ("explicit", "implicit"):
        raise MedicalError("enhanced output is written uncompressed (explicit or implicit)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ps = float(pixel_spacing or fov_mm / size)
    thick = float(slice_thickness or slice_step)
    theta = math.radians(tilt_deg)
    row = np.array([1.0, 0.0, 0.0])
    col = np.array([0.0, math.cos(theta), math.sin(theta)])
    extent = (slices - 1) * slice_step
    z_first = -extent / 2
    # a tilted plane reaches `shift` mm less far along z at the edges of the field of view:
    # the chest is the one an untilted series of these slices shows, its nodules inside the
    # slab that every image row covers (before, the whole chest was fitted to that slab, so a
    # steep tilt over few slices gave lungs in a few slices only)
    shift = abs((size - 1) * ps / 2 * math.sin(theta))
    slab = (z_first - 10, z_first + extent + 10)
    phantom = ChestPhantom(seed=seed, z_range=slab, n_nodules=n_nodules, diameters=diameters,
                           realistic=realistic,
                           nodule_z_range=(slab[0] + shift, slab[1] - shift) if shift else None)
    rng = np.random.default_rng(seed + 1)
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    half = (size - 1) * ps / 2
    origin0 = np.array([-half, -half * math.cos(theta), z_first - half * math.sin(theta)])
    ipps = [origin0 + np.array([0.0, 0.0, k * slice_step]) for k in range(slices)]
    keep = list(range(slices))
    if missing_slice and slices >= 5:
        keep.remove(slices // 2)
    ii, jj = np.meshgrid(np.arange(size), np.arange(size))
    offsets = (ii.reshape(-1, 1) * ps * row + jj.reshape(-1, 1) * ps * col)
    fov = (ii - (size - 1) / 2) ** 2 + (jj - (size - 1) / 2) ** 2 > ((size - 1) / 2) ** 2

    images = []
    for k in keep:
        hu = phantom.hu(ipps[k] + offsets).reshape(size, size)
        if phantom.psf_mm > 0:
            hu = reconstruct(hu, (ps, ps), phantom.psf_mm, noise, rng)
        elif noise > 0:
            hu = hu + rng.normal(0.0, noise, hu.shape).astype(np.float32)
        if out_of_field:
            hu[fov] = -3024.0
        images.append(np.clip(np.rint(hu), -3024, 3071).astype(np.int16))

    base = _base_dataset(study_uid, series_uid, frame_uid, seed, thick, ps)
    files: list[Path] = []
    order = np.arange(len(keep))
    if shuffle:
        rng.shuffle(order)
    if enhanced:
        path = out_dir / "enhanced_ct.dcm"
        _write_enhanced(base, path, images, [ipps[k] for k in keep], row, col,
                        TRANSFER_SYNTAXES[transfer_syntax])
        files.append(path)
    else:
        for n, (k, img) in enumerate(zip(keep, images)):
            intercept = -1024.0 - (10.0 * (n % 4) if vary_rescale else 0.0)
            inst = int(order[n]) + 1 if shuffle else n + 1
            name = f"{generate_uid(prefix=None)[-12:]}.dcm" if shuffle else f"slice_{n + 1:04d}.dcm"
            path = out_dir / name
            _write_slice(base, path, img, intercept, ipps[k], row, col, inst,
                         TRANSFER_SYNTAXES[transfer_syntax], out_of_field)
            files.append(path)
    extra: list[str] = []
    if extra_series:
        uid2 = generate_uid()
        b2 = _base_dataset(study_uid, uid2, frame_uid, seed, 5.0, ps)
        b2.SeriesNumber = 3
        b2.SeriesDescription = "Chest 5mm"
        step2 = 5.0
        n2 = max(2, int(extent // step2) // 2)
        for n in range(n2):
            ipp = origin0 + np.array([0.0, 0.0, n * step2])
            hu = phantom.hu(ipp + offsets).reshape(size, size)
            img = np.clip(np.rint(hu), -3024, 3071).astype(np.int16)
            path = out_dir / f"thick_{n + 1:04d}.dcm"
            _write_slice(b2, path, img, -1024.0, ipp, row, col, n + 1,
                         TRANSFER_SYNTAXES["explicit"], False)
        extra.append(uid2)
    if localizer:
        loc_row, loc_col = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0])
        ipp = np.array([-half, 0.0, z_first + extent])
        pts = ipp + ii.reshape(-1, 1) * ps * loc_row + jj.reshape(-1, 1) * \
            (extent / max(size - 1, 1)) * loc_col
        img = np.clip(np.rint(phantom.hu(pts).reshape(size, size)), -3024, 3071).astype(np.int16)
        b3 = _base_dataset(study_uid, series_uid, frame_uid, seed, 1.0, ps)
        b3.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        _write_slice(b3, out_dir / "localizer.dcm", img, -1024.0, ipp, loc_row, loc_col, 999,
                     TRANSFER_SYNTAXES["explicit"], False)
    dd_path = None
    if dicomdir:
        dd_path = _as_fileset(out_dir, files)
        files = sorted(p for p in out_dir.rglob("*") if p.is_file() and p.name != "DICOMDIR"
                       and p.suffix != ".csv")
    annotations = out_dir / "annotations.csv"
    with open(annotations, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"])
        for nod in phantom.nodules:
            w.writerow([series_uid, *(f"{c:.3f}" for c in nod.center), f"{nod.diameter_mm:.2f}"])
    with open(out_dir / "nodules.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm", "type", "attached"])
        for nod in phantom.nodules:
            w.writerow([series_uid, *(f"{c:.3f}" for c in nod.center), f"{nod.diameter_mm:.2f}",
                        nod.kind, nod.attached])
    return PhantomSeries(out_dir, files, str(series_uid), phantom.nodules, annotations,
                         (ps, ps, slice_step * math.cos(theta)),
                         [tuple(ipps[k]) for k in keep], extra, dd_path)


def _base_dataset(study_uid: str, series_uid: str, frame_uid: str, seed: int, thick: float,
                  ps: float) -> Any:
    from pydicom.dataset import Dataset

    now = _dt.datetime(2026, 1, 1, 9, 0, 0)
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.AccessionNumber = ""
    ds.Modality = "CT"
    ds.Manufacturer = "DeepSeek Toolkit phantom"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Synthetic chest CT phantom"
    ds.SeriesDescription = "Chest phantom"
    ds.PatientName = f"Phantom^{seed}"
    ds.PatientID = f"PHANTOM-{seed:04d}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = f"{thick:.6g}"
    ds.KVP = "120"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 2
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelSpacing = [f"{ps:.6g}", f"{ps:.6g}"]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.WindowCenter = "-600"
    ds.WindowWidth = "1500"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    return ds


def _file_meta(sop_class: str, sop_uid: str, ts: str) -> Any:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _write_slice(base: Any, path: Path, hu: np.ndarray, intercept: float, ipp: np.ndarray,
                 row: np.ndarray, col: np.ndarray, instance: int, ts: str,
                 padding: bool) -> None:
    import copy

    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    ds = copy.deepcopy(base)
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.concatenate([row, col])]
    ds.SliceLocation = f"{float(ipp[2]):.6f}"
    ds.RescaleIntercept = f"{intercept:g}"
    ds.Rows, ds.Columns = hu.shape
    stored = (hu.astype(np.int32) - int(intercept)).astype(np.int16)
    if padding:
        ds.PixelPaddingValue = int(-3024 - int(intercept))
    ds.PixelData = stored.tobytes()
    ds.file_meta = _file_meta(CT_IMAGE_STORAGE, ds.SOPInstanceUID, ExplicitVRLittleEndian)
    uid = UID(ts)
    if uid.is_compressed:
        ds.compress(uid)
    elif ts == "1.2.840.10008.1.2.2":  # big endian: the pixel bytes are swapped too
        ds.PixelData = stored.astype(">i2").tobytes()
        ds.file_meta.TransferSyntaxUID = uid
    else:
        ds.file_meta.TransferSyntaxUID = uid
    ds.save_as(path, enforce_file_format=True)


def _write_enhanced(base: Any, path: Path, images: list[np.ndarray], ipps: list[np.ndarray],
                    row: np.ndarray, col: np.ndarray, ts: str) -> None:
    import copy

    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    ds = copy.deepcopy(base)
    ds.SOPClassUID = ENHANCED_CT_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.InstanceNumber = 1
    ds.NumberOfFrames = len(images)
    ds.Rows, ds.Columns = images[0].shape
    for name in ("PixelSpacing", "SliceThickness", "RescaleSlope", "RescaleType",
                 "WindowCenter", "WindowWidth"):
        if name in ds:
            delattr(ds, name)
    shared = Dataset()
    meas = Dataset()
    meas.PixelSpacing = base.PixelSpacing
    meas.SliceThickness = base.SliceThickness
    shared.PixelMeasuresSequence = Sequence([meas])
    ori = Dataset()
    ori.ImageOrientationPatient = [f"{v:.8f}" for v in np.concatenate([row, col])]
    shared.PlaneOrientationSequence = Sequence([ori])
    pvt = Dataset()
    pvt.RescaleIntercept = "-1024"
    pvt.RescaleSlope = "1"
    pvt.RescaleType = "HU"
    shared.PixelValueTransformationSequence = Sequence([pvt])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per = []
    for n, ipp in enumerate(ipps):
        f = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
        f.PlanePositionSequence = Sequence([pos])
        fc = Dataset()
        fc.InStackPositionNumber = n + 1
        fc.StackID = "1"
        f.FrameContentSequence = Sequence([fc])
        per.append(f)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    stack = np.stack([(im.astype(np.int32) + 1024).astype(np.int16) for im in images])
    ds.PixelData = stack.tobytes()
    ds.file_meta = _file_meta(ENHANCED_CT_STORAGE, ds.SOPInstanceUID, ts)
    ds.save_as(path, enforce_file_format=True)


def _as_fileset(out_dir: Path, files: list[Path]) -> Path:
    """Rewrite ``files`` as a DICOM File-set (DICOMDIR + IHE-style names) inside ``out_dir``."""
    import shutil
    import tempfile

    from pydicom.fileset import FileSet

    with tempfile.TemporaryDirectory() as tmp:
        moved = []
        for f in files:
            dst = Path(tmp) / f.name
            shutil.move(str(f), dst)
            moved.append(dst)
        fs = FileSet()
        for f in moved:
            fs.add(str(f))
        fs.write(str(out_dir))
    return out_dir / "DICOMDIR"


def render_volume(phantom: ChestPhantom, spacing: tuple[float, float, float],
                  shape: tuple[int, int, int], noise: float = 15.0, seed: int = 0,
                  origin: tuple[float, float, float] | None = None) -> Any:
    """Sample ``phantom`` on an axial grid straight into a Volume (no DICOM files).

    ``spacing`` is (x, y, z) mm, ``shape`` (z, y, x); the grid is centred on the phantom
    unless ``origin`` (world mm of voxel 0) is given. Values are rounded to whole HU as a
    scanner stores them.
    """
    from deepseek.medical.volume import Volume

    nz, ny, nx = shape
    sx, sy, sz = spacing
    if origin is None:
        origin = (-(nx - 1) * sx / 2, -(ny - 1) * sy / 2, -(nz - 1) * sz / 2)
    rng = np.random.default_rng(seed)
    xs = origin[0] + np.arange(nx) * sx
    ys = origin[1] + np.arange(ny) * sy
    out = np.empty(shape, dtype=np.float32)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    for k in range(nz):
        z = origin[2] + k * sz
        pts = np.stack([xx.ravel(), yy.ravel(), np.full(xx.size, z)], 1)
        hu = phantom.hu(pts).reshape(ny, nx)
        if phantom.psf_mm > 0:
            hu = reconstruct(hu, (sx, sy), phantom.psf_mm, noise, rng)
        elif noise > 0:
            hu = hu + rng.normal(0.0, noise, hu.shape)
        out[k] = np.rint(hu)
    return Volume(out, spacing, origin, np.eye(3), {
        "nodules": [n.__dict__ for n in phantom.nodules], "modality": "CT"})


def read_synthetic(source: Any = "synthetic:", **options: Any) -> Any:
    """A chest CT phantom as a Volume (reader ``ct-phantom``, scheme ``synthetic:``):
    ``synthetic:?seed=3&size=128&slices=40&n_nodules=4`` -- any :func:`write_phantom`
    option, in the URI or as keyword; ``out_dir`` keeps the DICOM files (default: a temporary
    folder). The volume's metadata holds the nodules and the annotations.csv path."""
    import tempfile

    from deepseek.medical.dicom import DICOMReader
    from deepseek.readers import uri_options

    opts = {**uri_options(str(source or "synthetic:"), "synthetic:"), **options}
    given = opts.pop("out_dir", None)
    out = Path(given) if given else Path(tempfile.mkdtemp(prefix="deepseek-phantom-"))
    if opts.get("series_uid") is None:
        opts.pop("series_uid", None)  # the phantom writes one series; nothing to choose
    reader_opts = {k: opts.pop(k) for k in ("progress", "on_gap", "tilt") if k in opts}
    try:
        try:
            series = write_phantom(out, **opts)
        except TypeError as exc:
            raise MedicalError(f"{source}: {exc}; the options are write_phantom's "
                               "(seed, size, slices, slice_step, n_nodules, ...)") from None
        vol = DICOMReader(out, series_uid=series.series_uid, **reader_opts).load()
    except Exception:
        if not given:  # a failed read leaves no temporary folder behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    vol.metadata["nodules"] = [n.__dict__ for n in series.nodules]
    vol.metadata["annotations"] = str(series.annotations)
    return vol

