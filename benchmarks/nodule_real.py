"""Benchmark: confident candidates of the packaged nodule detector on a real chest CT slab,
per 10 cm of scanned length, beside phantom slabs of the same geometry.

    python benchmarks/nodule_real.py [--quick] [--ct DIR]

The real slab (default ``../shared/data/ct/LIDC-IDRI-0002``: 12 slices of 1.25 mm from
LIDC-IDRI) goes through ``NoduleDetector`` with the packaged
``lung-nodule-attention`` weights and a 64 mm window (thin slabs); the candidates at
probability >= 0.5 and >= 0.3 are counted and divided by the scanned length (slices x slice
step) in units of 10 cm. The goal counts every candidate at p >= 0.5 (the slab has no
annotations: a real nodule would count too). For scale, phantom slabs with the same image
size, spacing and number of slices (seeds 700000 + k, never used for training) go through the
same detector: their false positives (candidates farther than a radius from every phantom
nodule) are counted the same way, for the smooth default phantom and for
``ChestPhantom(realistic=True)`` (vessel tree, bronchi, fissures, texture), whose lungs are
closer to real ones (``benchmarks/phantom_realism.py``). ``--quick`` uses 1 phantom slab of
each instead of 4.

With the radiologists' reads (``--reads``, default ``../shared/data/ct/LIDC-IDRI-0002-reads.xml``,
LIDC XML), every lesion they outlined inside the slab is compared with the nearest candidate:
the readers' long axis over the slab's slices (and over the whole scan, for scale) against
the candidate's size (its segmented long axis, or the network's estimate when the
segmentation leaked).

Every figure is given with the second stage (``nodule-fpr-3dcnn`` re-scores each candidate)
and without it (the detector's own probability, from the same run), and, with
``--previous WEIGHTS``, for earlier detector weights (a ``lung-nodule-attention``
.safetensors file) on the same slabs. ``--fpr MODEL`` pairs the packaged detector with another
second stage (a ``nodule-fpr-3dcnn`` .safetensors or .onnx file, e.g. one from ``deepseek
medical train-fpr --vessel-negatives 0``) instead of the packaged one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, goal  # noqa: E402

THRESHOLDS = (0.5, 0.3)


def per_10cm(count: int, length_mm: float) -> float:
    return count / (length_mm / 100.0)


def sizes_against_reads(reads_path: Path, real, cands: list[dict]) -> list[dict]:
    """Per lesion the readers outlined inside the slab: the readers' long axis over the slab's
    slices and over the whole scan, and the nearest candidate's sizes (its segmented long axis
    or, when the segmentation leaked, the network's estimate), with the error against the
    readers' slab figure (the candidate sees only the slab)."""
    from deepseek.medical.lidc import outline_measures, read_lidc_xml

    z = (real.origin[2], real.origin[2] + (real.shape[0] - 1) * real.spacing[2])
    outlined = []
    for r in read_lidc_xml(reads_path):
        for n in r.nodules:
            if n.is_small:
                continue
            part = outline_measures(n, real, z_range=z)
            if part is not None:
                outlined.append((r.reader, n, part, outline_measures(n, real)))
    lesions: list[list] = []  # readers' outlines of one lesion: centres within 15 mm
    for item in outlined:
        for group in lesions:
            if np.linalg.norm(np.subtract(group[0][2]["centre_mm"], item[2]["centre_mm"])) < 15:
                group.append(item)
                break
        else:
            lesions.append([item])
    rows = []
    for group in lesions:
        centre = np.mean([g[2]["centre_mm"] for g in group], axis=0)
        slab_long = float(np.mean([g[2]["long_axis_mm"] for g in group]))
        near = min(cands, key=lambda c: np.linalg.norm(np.asarray(c["xyz"]) - centre))
        dist = float(np.linalg.norm(np.asarray(near["xyz"]) - centre))
        rows.append({
            "readers": [g[0] for g in group], "centre_mm": [round(v, 1) for v in centre],
            "readers_long_axis_mm_in_slab": [g[2]["long_axis_mm"] for g in group],
            "readers_long_axis_mm_whole_scan": [g[3]["long_axis_mm"] for g in group],
            "readers_volume_equivalent_mm_in_slab": [g[2]["volume_equivalent_mm"]
                                                     for g in group],
            "nearest_candidate": {
                "distance_mm": round(dist, 1), "probability": round(near["probability"], 3),
                "diameter_mm": round(near["diameter_mm"], 1),
                "size_source": near.get("size_source"), "size_note": near.get("size_note"),
                "detector_diameter_mm": round(near.get("detector_diameter_mm",
                                                       near["diameter_mm"]), 1)},
            "error_vs_readers_in_slab": round(near["diameter_mm"] / slab_long - 1, 3)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 phantom slab instead of 4")
    ap.add_argument("--ct", type=Path, default=Path(__file__).resolve().parents[2] / "shared" /
                    "data" / "ct" / "LIDC-IDRI-0002", help="a real CT series folder")
    ap.add_argument("--reads", type=Path, default=Path(__file__).resolve().parents[2] /
                    "shared" / "data" / "ct" / "LIDC-IDRI-0002-reads.xml",
                    help="the radiologists' reads of the real series (LIDC XML); sizes are "
                         "compared with them where they outline a lesion inside the slab")
    ap.add_argument("--previous", type=Path, default=None,
                    help="earlier lung-nodule-attention weights (.safetensors) to count "
                         "beside the packaged ones")
    ap.add_argument("--fpr", default="nodule-fpr-3dcnn",
                    help="the second stage paired with the packaged detector: a registered "
                         "name or a weights file (default: the packaged nodule-fpr-3dcnn)")
    args = ap.parse_args()
    if not args.ct.is_dir():
        sys.exit(f"no real CT at {args.ct}: pass --ct DIR (a DICOM series folder)")

    from deepseek.loader import ModelLoader
    from deepseek.medical.detector import NoduleDetector
    from deepseek.medical.synthetic import ChestPhantom, render_volume
    from deepseek.medical.volume import read_volume

    opts = dict(progress=False, window=64, overlap=16)
    # one run gives both readings: "probability" (with the second stage) and
    # "probability_detector" (the detector alone)
    # by name: the default backend and precision (bf16 on a CPU with AMX units)
    runs = {"packaged": NoduleDetector("lung-nodule-attention", device="cpu",
                                       fpr=args.fpr, **opts)}
    if args.previous is not None:
        runs["previous"] = NoduleDetector(ModelLoader.load(args.previous, device="cpu"), **opts)
    readings = {"packaged+fpr": ("packaged", "probability"),
                "packaged": ("packaged", "probability_detector"),
                **({"previous": ("previous", "probability")} if args.previous else {})}
    real = read_volume(args.ct)
    n_slices = real.shape[0]
    step = float(real.spacing[2])
    length = n_slices * step
    found_real, seconds = {}, {}
    for name, det in runs.items():
        t0 = time.perf_counter()
        found_real[name] = det.detect(real)
        seconds[name] = round(time.perf_counter() - t0, 1)
    results: dict = {"real": {"series": str(args.ct.name), "shape_zyx": list(real.shape),
                              "spacing_xyz_mm": [round(float(s), 4) for s in real.spacing],
                              "length_mm": round(length, 2), "detect_seconds": seconds},
                     "second_stage": str(args.fpr),
                     "network": {name: {"backend": det.net.name, "precision": det.precision}
                                 for name, det in runs.items()}}
    for reading, (run, key) in readings.items():
        cands = sorted(found_real[run], key=lambda c: -c[key])
        counts = {f"p>={t}": int(sum(c[key] >= t for c in cands)) for t in THRESHOLDS}
        results["real"][reading] = {
            "candidates": counts,
            "per_10cm": {k: round(per_10cm(v, length), 3) for k, v in counts.items()},
            "top5": [{"p": round(c[key], 3), "xyz": [round(v, 1) for v in c["xyz"]],
                      "diameter_mm": round(c["diameter_mm"], 1)} for c in cands[:5]]}
    if args.reads.is_file():
        results["real"]["sizes_against_reads"] = sizes_against_reads(
            args.reads, real, found_real["packaged"])
    for group, realistic in (("phantom_slabs", False), ("realistic_phantom_slabs", True)):
        slabs: dict[str, list] = {r: [] for r in readings}
        for k in range(1 if args.quick else 4):
            ph = ChestPhantom(seed=700_000 + k, n_nodules=4, z_range=(-length / 2, length / 2),
                              realistic=realistic)
            vol = render_volume(ph, tuple(float(s) for s in real.spacing), real.shape, seed=k)
            found = {name: det.detect(vol) for name, det in runs.items()}
            nods = [(np.asarray(n.center), n.diameter_mm / 2) for n in ph.nodules]

            def is_fp(c, nods=nods):
                return all(np.linalg.norm(np.asarray(c["xyz"]) - ctr) > max(r, 5.0)
                           for ctr, r in nods)

            for reading, (run, key) in readings.items():
                slabs[reading].append({f"p>={t}": int(sum(c[key] >= t and is_fp(c)
                                                          for c in found[run]))
                                       for t in THRESHOLDS})
        results[group] = {"slabs": len(slabs["packaged"]), "same_geometry_as_real": True,
                          "realistic": realistic}
        for reading, rows in slabs.items():
            mean = {t: float(np.mean([s[t] for s in rows])) for t in rows[0]}
            results[group][reading] = {
                "false_positives_mean": mean,
                "per_10cm": {t: round(per_10cm(v, length), 3) for t, v in mean.items()}}
    goals = []
    for reading, what in (("packaged", "the default: packaged detector, no second stage"),
                          ("packaged+fpr", "packaged detector + second stage")):
        value = results["real"][reading]["per_10cm"]["p>=0.5"]
        goals.append(goal(f"real slab ({length:.0f} mm): candidates with p >= 0.5 per 10 cm "
                          f"({what})", value, "<= 1", "per 10 cm", value <= 1.0))
    emit("nodule_real", results, goals, quick=args.quick)


if __name__ == "__main__":
    main()
