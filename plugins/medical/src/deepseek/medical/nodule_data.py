"""Training data for ``lung-nodule-attention``: phantom patches and LUNA16-layout scans.

Phantom patches simulate an acquisition before resampling, as inference sees it: the
analytic phantom is sampled on a scanner grid (in-plane 0.6-0.9 mm, slice step 0.625-2.5 mm,
random grid phase), noise is added (through the scanner's point spread for realistic
phantoms), and the grid is resampled (linear, SimpleITK) to the
1 mm working grid. Targets follow the model: a Gaussian heatmap at stride 2, log diameter and
sub-cell offset at each nodule's peak cell.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from deepseek.medical.errors import MedicalError
from deepseek.medical.nodule_model import STRIDE, WINDOW, WORKING_SPACING
from deepseek.medical.synthetic import ChestPhantom, reconstruct

log = logging.getLogger(__name__)

PATCH = 48


def _resample_to_patch(acq: np.ndarray, acq_origin: np.ndarray, acq_spacing: np.ndarray,
                       patch_origin: np.ndarray, n: int) -> np.ndarray:
    from deepseek.medical.volume import require_sitk

    sitk = require_sitk("training data")

    img = sitk.GetImageFromArray(acq.astype(np.float32))
    img.SetSpacing([float(s) for s in acq_spacing])
    img.SetOrigin([float(o) for o in acq_origin])
    ref = sitk.Image([n, n, n], sitk.sitkFloat32)
    ref.SetSpacing([WORKING_SPACING] * 3)
    ref.SetOrigin([float(o) for o in patch_origin])
    out = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def simulate_patch(phantom: ChestPhantom, centre: np.ndarray, rng: np.random.Generator,
                   n: int = PATCH, noise: float = 15.0) -> tuple[np.ndarray, np.ndarray]:
    """A (n, n, n) HU patch at 1 mm around world ``centre``; returns it and its origin."""
    half = (n - 1) / 2 * WORKING_SPACING
    patch_origin = centre - half
    sp_xy = rng.uniform(0.6, 0.9)
    sp = np.array([sp_xy, sp_xy, rng.uniform(0.625, 2.5)])
    lo = patch_origin - 2 * sp - rng.uniform(0, 1, 3) * sp
    hi = patch_origin + 2 * half + 2 * sp
    counts = np.ceil((hi - lo) / sp).astype(int) + 1
    axes = [lo[i] + np.arange(counts[i]) * sp[i] for i in range(3)]
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    pts = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], 1)
    acq = phantom.hu(pts).reshape(zz.shape)
    if phantom.psf_mm > 0:  # realistic phantoms: the scanner's point spread, correlated noise
        acq = np.rint(reconstruct(acq, (sp_xy, sp_xy), phantom.psf_mm, noise, rng))
    else:
        acq = np.rint(acq + rng.normal(0, noise, acq.shape))
    return _resample_to_patch(acq, lo, sp, patch_origin, n), patch_origin


def make_targets(centres_zyx: list[np.ndarray], diameters: list[float], n: int = PATCH
                 ) -> dict[str, np.ndarray]:
    """Heatmap/size/offset targets on the stride-2 grid for nodule centres given in patch
    voxel coordinates (z, y, x)."""
    m = n // STRIDE
    heat = np.zeros((m, m, m), np.float32)
    size = np.zeros((m, m, m), np.float32)
    offset = np.zeros((3, m, m, m), np.float32)
    mask = np.zeros((m, m, m), np.float32)
    grid = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), 0).astype(np.float32)
    for c, d in zip(centres_zyx, diameters):
        co = np.asarray(c, np.float32) / STRIDE
        peak = np.rint(co).astype(int)
        if np.any(peak < 0) or np.any(peak >= m):
            continue
        sigma = max(1.5, 0.2 * d) / (WORKING_SPACING * STRIDE)
        g = np.exp(-((grid - co[:, None, None, None]) ** 2).sum(0) / (2 * sigma ** 2))
        heat = np.maximum(heat, g)
        heat[tuple(peak)] = 1.0
        size[tuple(peak)] = math.log(d)
        offset[(slice(None), *peak)] = co - peak
        mask[tuple(peak)] = 1.0
    return {"heatmap": heat, "size": size, "offset": offset, "mask": mask}


def _augment(x: np.ndarray, centres: list[np.ndarray], rng: np.random.Generator
             ) -> tuple[np.ndarray, list[np.ndarray]]:
    n = x.shape[0]
    cs = [np.array(c, float) for c in centres]
    for ax in range(3):
        if rng.random() < 0.5:
            x = np.flip(x, ax)
            for c in cs:
                c[ax] = n - 1 - c[ax]
    k = int(rng.integers(4))
    for _ in range(k):  # rot90 in the axial (y, x) plane
        x = np.rot90(x, 1, axes=(1, 2))
        for c in cs:
            c[1], c[2] = n - 1 - c[2], c[1]
    x = x * rng.uniform(0.95, 1.05) + rng.uniform(-20, 20)
    return np.ascontiguousarray(x), cs


def phantom_patch_set(n_patches: int, seed: int, per_phantom: int = 24,
                      progress: bool = False, realistic: bool = False
                      ) -> dict[str, np.ndarray]:
    """Positive (45%), hard-negative (vessels, pleura: 30%) and random (25%) patches."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    xs, heats, sizes, offs, masks = [], [], [], [], []
    phantom = None
    for i in tqdm(range(n_patches), desc="phantom patches", disable=not progress):
        if i % per_phantom == 0:
            phantom = ChestPhantom(seed=int(rng.integers(1 << 30)), n_nodules=10,
                                   z_range=(-130.0, 130.0), realistic=realistic)
        assert phantom is not None
        u = rng.random()
        if u < 0.45 and phantom.nodules:
            nod = phantom.nodules[int(rng.integers(len(phantom.nodules)))]
            centre = np.asarray(nod.center) + rng.uniform(-14, 14, 3)
        elif u < 0.75:
            if rng.random() < 0.6 and phantom.vessels:
                v = phantom.vessels[int(rng.integers(len(phantom.vessels)))]
                centre = v.a + rng.uniform(0, 1) * (v.b - v.a) + rng.normal(0, 3, 3)
            else:  # the pleura: a lung point pushed to the lung boundary
                c, ax = phantom.lungs[int(rng.integers(2))]
                d = rng.normal(size=3)
                d[2] *= 0.3
                centre = c + ax * d / np.linalg.norm(d) * 0.95
        else:
            c, ax = phantom.lungs[int(rng.integers(2))]
            centre = c + ax * rng.uniform(-1.1, 1.1, 3)
        hu, origin = simulate_patch(phantom, centre, rng)
        cents, diams = [], []
        for nod in phantom.nodules:
            c_zyx = ((np.asarray(nod.center) - origin) / WORKING_SPACING)[::-1]
            if np.all(c_zyx > -nod.diameter_mm) and np.all(c_zyx < PATCH + nod.diameter_mm):
                cents.append(c_zyx)
                diams.append(nod.diameter_mm)
        hu, cents = _augment(hu, cents, rng)
        t = make_targets(cents, diams)
        xs.append(_norm(hu).astype(np.float16))
        heats.append(t["heatmap"])
        sizes.append(t["size"])
        offs.append(t["offset"])
        masks.append(t["mask"])
    return {"x": np.stack(xs), "heatmap": np.stack(heats), "size": np.stack(sizes),
            "offset": np.stack(offs), "mask": np.stack(masks)}


def _norm(hu: np.ndarray) -> np.ndarray:
    lo, hi = WINDOW
    return np.clip((hu - lo) / (hi - lo), 0, 1)


class PatchDataset(Dataset):
    """Tensors from :func:`phantom_patch_set` or :class:`Luna16Patches`."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.a = arrays

    def __len__(self) -> int:
        return len(self.a["x"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": torch.from_numpy(self.a["x"][i].astype(np.float32))[None],
                "heatmap": torch.from_numpy(self.a["heatmap"][i])[None],
                "size": torch.from_numpy(self.a["size"][i])[None],
                "offset": torch.from_numpy(self.a["offset"][i]),
                "mask": torch.from_numpy(self.a["mask"][i])[None]}


def centernet_loss(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
                   ) -> torch.Tensor:
    """Focal loss on the heatmap (CenterNet), L1 on log-size and offset at the peaks."""
    logits = out["heatmap"].float()
    t = batch["heatmap"]
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = t.eq(1).float()
    neg_w = (1 - t) ** 4
    pos_loss = -(torch.log(p) * (1 - p) ** 2 * pos).sum()
    neg_loss = -(torch.log(1 - p) * p ** 2 * neg_w * (1 - pos)).sum()
    n_pos = pos.sum().clamp(min=1.0)
    m = batch["mask"]
    size_l = (torch.abs(out["size"].float() - batch["size"]) * m).sum() / n_pos
    off_l = (torch.abs(out["offset"].float() - batch["offset"]) * m).sum() / n_pos
    return (pos_loss + neg_loss) / n_pos + size_l + off_l


# ------------------------------------------------------------------------------ LUNA16 layout
def read_luna16_annotations(path: Path) -> dict[str, list[tuple[np.ndarray, float]]]:
    """annotations.csv (read by :func:`deepseek.medical.metrics.read_annotations`) grouped by
    series: ``{seriesuid: [(centre xyz, diameter_mm), ...]}``."""
    from deepseek.medical.metrics import read_annotations

    out: dict[str, list] = defaultdict(list)
    for a in read_annotations(path):
        out[a["seriesuid"]].append((np.asarray(a["xyz"], float), a["diameter_mm"]))
    return out


def _centre_range(vol: Any) -> tuple[np.ndarray, np.ndarray]:
    """World (x, y, z) bounds for the centres of random patches: half a patch inside the scan
    on each side; along an axis shorter than a patch (a thin slab), its middle (the patch is
    padded with air there, as at any edge)."""
    lo, hi = (np.asarray(b, dtype=float) for b in vol.world_bounds())
    half = PATCH * WORKING_SPACING / 2
    low, high = lo + half, hi - half
    thin = high < low
    mid = (lo + hi) / 2
    return np.where(thin, mid, low), np.where(thin, mid, high)


class Luna16Patches:
    """Patches from a LUNA16-layout folder: ``subset*/<seriesuid>.mhd`` + ``annotations.csv``.

    Each scan is read, resampled to the working spacing (kept in memory, a few at a time),
    and sampled: positives around annotated nodules and random patches inside the body.
    ``arrays(n, seed)`` returns the same dictionary as :func:`phantom_patch_set`.
    """

    def __init__(self, root: str | Path, annotations: str | Path | None = None,
                 series: list[str] | None = None) -> None:
        self.root = Path(root)
        files = sorted(self.root.glob("subset*/*.mhd"))
        if not files:
            raise MedicalError(f"{self.root}: no subset*/*.mhd files (the LUNA16 layout)")
        ann = Path(annotations) if annotations else self.root / "annotations.csv"
        if not ann.is_file():
            raise MedicalError(f"{ann}: annotations.csv not found")
        self.annotations = read_luna16_annotations(ann)
        self.files = {f.stem: f for f in files if series is None or f.stem in series}
        if not self.files:
            raise MedicalError(f"{self.root}: none of the requested series are present")

    def arrays(self, n_patches: int, seed: int = 0, per_scan: int = 16) -> dict[str, Any]:
        """Training arrays: ``n_patches`` crops around nodules and background from the scans, with
        their target heatmaps and sizes (seeded).
        """
        from deepseek.medical.volume import Volume

        rng = np.random.default_rng(seed)
        ids = sorted(self.files)
        out: dict[str, list] = {k: [] for k in ("x", "heatmap", "size", "offset", "mask")}
        vol = None
        for i in range(n_patches):
            if i % per_scan == 0:
                sid = ids[int(rng.integers(len(ids)))]
                vol = Volume.load(self.files[sid]).resample([WORKING_SPACING] * 3)
                nods = self.annotations.get(sid, [])
            assert vol is not None
            if nods and rng.random() < 0.5:
                c, _ = nods[int(rng.integers(len(nods)))]
                centre = c + rng.uniform(-14, 14, 3)
            else:
                centre = rng.uniform(*_centre_range(vol))
            x, t = crop_patch(vol, centre, nods, rng)
            out["x"].append(x)
            for key in ("heatmap", "size", "offset", "mask"):
                out[key].append(t[key])
        return {k: np.stack(v) for k, v in out.items()}


def crop_patch(vol: Any, centre: np.ndarray, nods: list[tuple[np.ndarray, float]],
               rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The augmented, normalised (float16) patch of a volume on the 1 mm working grid around
    world ``centre`` (air beyond the scan), and the targets of the nodules ``nods`` (world
    centre, diameter) that fall in it."""
    k = np.rint(vol.world_to_voxel(centre)).astype(int) - PATCH // 2
    patch = np.full((PATCH,) * 3, -1024.0, np.float32)
    src = [slice(max(k[a], 0), min(k[a] + PATCH, vol.shape[a])) for a in range(3)]
    dst = [slice(s.start - k[a], s.stop - k[a]) for a, s in enumerate(src)]
    if all(s.stop > s.start for s in src):
        patch[tuple(dst)] = vol.array[tuple(src)]
    cents = [vol.world_to_voxel(c) - k for c, _ in nods]
    diams = [d for _, d in nods]
    patch, cents = _augment(patch, cents, rng)
    return _norm(patch).astype(np.float16), make_targets(cents, diams)
