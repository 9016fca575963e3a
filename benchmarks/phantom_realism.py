"""Benchmark: how close the chest phantom's lungs are to a real chest CT's.

    python benchmarks/phantom_realism.py [--quick] [--ct DIR]

The real slab (default ``../shared/data/ct/LIDC-IDRI-0002``: 12 axial slices of 1.25 mm,
512x512 at about 0.68 mm, from LIDC-IDRI) and phantom slabs rendered on exactly its grid
(same spacing, size and number of slices; seeds 710000 + k, --quick: 1 slab, else 4) are
compared inside the lungs:

* **HU histogram**: percentiles 5/25/50/75/95 of the lung voxels, the share of lung voxels
  denser than -500 HU (vessels, airway walls, nodules) and the Wasserstein-1 distance between
  the real and phantom distributions (mean absolute difference of their quantile functions,
  in HU);
* **texture**: the radially averaged power spectrum of HU in 32 x 32 mm squares lying wholly
  inside the lungs (mean removed, Hann window), its log-log slope over 0.1-0.6 cycles/mm and
  its total power (the variance it holds) per slab.

The lungs are the mask of the detector (:func:`deepseek.medical.detector.lung_mask`, air
inside the body with holes filled), eroded by 3 mm so that the chest wall does not count.
Each phantom setting is measured: the smooth default lungs (the packaged weights began on them)
(``texture=0``), the parenchymal texture field (``ChestPhantom(texture=30)``; --texture
chooses) and ``ChestPhantom(realistic=True)`` (a space-filling vessel tree tapering by
Murray's law, partial-volume vessel edges, a 20 HU texture, seen through a scanner's 0.5 mm
point spread with correlated noise). Goals (issue "real lungs"):
Wasserstein-1 <= 30 HU, spectral slope within 0.3 of the real slab's, texture power within a
factor 2. One real slab is a small sample: these figures show where the phantom stands, not
a fit to be tuned to.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, goal  # noqa: E402

PERCENTILES = (5, 25, 50, 75, 95)
PATCH_MM = 32.0
BAND = (0.1, 0.6)  # cycles/mm


def lungs(vol) -> np.ndarray:
    """The lung mask on the volume's own grid, eroded by 3 mm in-plane."""
    import SimpleITK as sitk

    from deepseek.medical.detector import lung_mask

    m = lung_mask(vol, dilate_mm=0.0)
    img = sitk.GetImageFromArray(m.astype(np.uint8))
    r = max(1, int(round(3.0 / float(vol.spacing[0]))))
    return sitk.GetArrayFromImage(sitk.BinaryErode(img, [r, r, 0])) > 0


def histogram_stats(hu: np.ndarray) -> dict:
    return {**{f"p{p}": round(float(np.percentile(hu, p)), 1) for p in PERCENTILES},
            "dense_share": round(float((hu > -500).mean()), 4), "voxels": int(hu.size)}


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    q = np.linspace(0.0005, 0.9995, 2000)
    return float(np.abs(np.quantile(a, q) - np.quantile(b, q)).mean())


def spectrum(vol, mask: np.ndarray) -> dict:
    """Radially averaged power spectrum of HU in lung squares; slope and power."""
    px = float(vol.spacing[0])
    n = int(round(PATCH_MM / px)) // 2 * 2
    win = np.outer(np.hanning(n), np.hanning(n))
    freqs = np.fft.fftfreq(n, d=px)
    fr = np.hypot(freqs[:, None], freqs[None, :])
    bins = np.linspace(0, freqs.max(), n // 2 + 1)
    which = np.digitize(fr, bins) - 1
    acc = np.zeros(len(bins) - 1)
    count = 0
    for z in range(vol.shape[0]):
        sl, ms = vol.array[z], mask[z]
        for y in range(0, sl.shape[0] - n, n // 2):
            for x in range(0, sl.shape[1] - n, n // 2):
                if not ms[y:y + n, x:x + n].all():
                    continue
                patch = sl[y:y + n, x:x + n].astype(np.float64)
                f = np.fft.fft2((patch - patch.mean()) * win)
                p = np.abs(f) ** 2 / (win ** 2).sum()
                acc += np.bincount(which.ravel(), p.ravel(), minlength=len(bins))[:len(acc)]
                count += 1
    if not count:
        return {"patches": 0}
    counts = np.bincount(which.ravel(), minlength=len(bins))[:len(acc)]
    ps = acc / np.maximum(counts, 1) / count
    centre = 0.5 * (bins[:-1] + bins[1:])
    sel = (centre >= BAND[0]) & (centre <= BAND[1]) & (ps > 0)
    slope = float(np.polyfit(np.log(centre[sel]), np.log(ps[sel]), 1)[0])
    return {"patches": count, "slope": round(slope, 3),
            "power_hu2": round(float(ps[1:].sum() * (bins[1] - bins[0])), 1),
            "patch_mm": round(n * px, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 phantom slab instead of 4")
    ap.add_argument("--texture", type=float, action="append", default=None,
                    help="phantom parenchymal texture std in HU (repeatable; default: 0, the "
                         "smooth lungs the packaged weights know, and 30)")
    ap.add_argument("--no-realistic", action="store_true",
                    help="leave out the ChestPhantom(realistic=True) row")
    ap.add_argument("--ct", type=Path, default=Path(__file__).resolve().parents[2] / "shared" /
                    "data" / "ct" / "LIDC-IDRI-0002", help="a real CT series folder")
    args = ap.parse_args()
    if not args.ct.is_dir():
        sys.exit(f"no real CT at {args.ct}: pass --ct DIR (a DICOM series folder)")
    from deepseek.medical.synthetic import ChestPhantom, render_volume
    from deepseek.medical.volume import read_volume

    real = read_volume(args.ct)
    if real.is_sheared:
        real = real.straighten()
    rm = lungs(real)
    real_hu = real.array[rm]
    real_tex = spectrum(real, rm)
    nz, ny, nx = real.shape
    sp = tuple(float(s) for s in real.spacing)
    half_z = nz * sp[2] / 2
    results = {"real": {"series": str(args.ct.name), "shape_zyx": [nz, ny, nx],
                        "spacing_xyz_mm": [round(s, 4) for s in sp],
                        "hist": histogram_stats(real_hu), "texture": real_tex},
               "phantoms": {}}
    goals = []
    settings = [(f"texture {t:g} HU", {"texture": t}) for t in args.texture or [0.0, 30.0]]
    if not args.no_realistic:
        settings.append(("realistic", {"realistic": True}))
    for label, kw in settings:
        rows = []
        for k in range(1 if args.quick else 4):
            ph = ChestPhantom(seed=710_000 + k, z_range=(-half_z - 10, half_z + 10),
                              n_nodules=0, **kw)
            vol = render_volume(ph, sp, (nz, ny, nx), seed=k)
            m = lungs(vol)
            hu = vol.array[m]
            rows.append({"seed": 710_000 + k, "hist": histogram_stats(hu),
                         "wasserstein_hu": round(wasserstein(real_hu, hu), 1),
                         "texture": spectrum(vol, m)})
        w1 = float(np.mean([r["wasserstein_hu"] for r in rows]))
        slopes = [r["texture"]["slope"] for r in rows if r["texture"].get("patches")]
        powers = [r["texture"]["power_hu2"] for r in rows if r["texture"].get("patches")]
        d_slope = abs(float(np.mean(slopes)) - real_tex["slope"]) if slopes else float("inf")
        ratio = float(np.mean(powers)) / real_tex["power_hu2"] if powers else 0.0
        results["phantoms"][label] = {
            "slabs": rows, "mean": {"wasserstein_hu": round(w1, 1),
                                    "slope": round(float(np.mean(slopes)), 3) if slopes
                                    else None, "power_ratio": round(ratio, 3)}}
        which = f"{label}, {len(rows)} slab(s)"
        goals += [goal(f"lung HU distribution, Wasserstein-1 to the real slab ({which})",
                       round(w1, 1), "<= 30", "HU", w1 <= 30),
                  goal(f"lung texture, power-spectrum slope difference ({which})",
                       round(d_slope, 3), "<= 0.3", "", d_slope <= 0.3),
                  goal(f"lung texture power, phantom / real ({which})", round(ratio, 3),
                       "0.5 - 2", "", 0.5 <= ratio <= 2.0)]
    emit("phantom_realism", results, goals, quick=args.quick)


if __name__ == "__main__":
    main()
