"""Benchmark: detection quality of the packaged lung-nodule-attention weights, LUNA16 FROC.

Realistic phantom chest CTs (``ChestPhantom(realistic=True)``: vessel tree, bronchi,
fissures, texture; ``--smooth`` for the plain phantom) with seeds the weights never saw (from
500000; training patches come from seeds derived from 0 and validation phantoms from 900000;
the second stage trains from 3000000): 512x512 images with in-plane
spacing 0.6-0.9 mm, slice steps 0.625-2.5 mm over a 240 mm slab, 6-10 nodules of 3-30 mm
each (solid and part-solid, juxta-pleural and juxta-vascular ones included). Every scan goes
through NoduleDetector; the candidates are scored with the LUNA16 protocol: CPM with its 95%
bootstrap interval over scans, sensitivity at the seven operating points, sensitivity per
size bin at 1 and 8 false positives per scan, false positives per scan, for the default
detector (flip TTA, no second stage). Beside it, from the same run: the CPM with the second
stage (``nodule-fpr-3dcnn`` re-scores every candidate) and without flip TTA, and, with and
without the second stage, the false positives per scan and the sensitivity among the
candidates at probability >= 0.3 and >= 0.5 (the fixed thresholds a reader works at). Where the
default detector runs at reduced precision (bf16 on a CPU with AMX units), the same scans are
also run at fp32 (onnxruntime) and the CPM gap is a goal (<= 0.005).

    python benchmarks/nodule_froc.py [--quick] [--scans N] [--smooth]

The scans are rendered straight from the analytic phantom into volumes (the DICOM round trip
is covered by the I/O tests and benchmarks/dicom_load.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, goal  # noqa: E402

SEED0 = 500_000
THRESHOLDS = (0.3, 0.5)  # fixed operating points a reader works at


def at_thresholds(ann: list[dict], res: list[dict], scans: list[str]) -> dict:
    """False positives per scan and sensitivity among the candidates at probability >= each
    of ``THRESHOLDS``, by the FROC's own hit rule (``metrics.match``)."""
    from deepseek.medical.metrics import match

    matches = list(match(ann, res, scans=scans)[0].values())
    nod = np.concatenate([m.nodule_scores for m in matches])
    fps = np.concatenate([m.fp_scores for m in matches])
    return {f"p>={t:g}": {"false_positives_per_scan": round(float((fps >= t).sum())
                                                             / len(scans), 3),
                          "sensitivity": round(float((nod >= t).mean()) if len(nod) else 0.0,
                                               4)}
            for t in THRESHOLDS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 smaller scans")
    ap.add_argument("--scans", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None,
                    help="also write results.csv and annotations.csv here")
    ap.add_argument("--seed0", type=int, default=SEED0,
                    help="first phantom seed (another range, such as 600000, for trying a "
                         "detector change without looking at the benchmark scans)")
    ap.add_argument("--smooth", action="store_true",
                    help="the plain phantom (smooth lungs, few vessels) instead of the "
                         "realistic one")
    ap.add_argument("--tta-top", type=int, default=None,
                    help="candidates re-scored by flip TTA (default: the detector's default)")
    args = ap.parse_args()
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    from deepseek.medical.detector import NoduleDetector
    from deepseek.medical.metrics import froc, sensitivity_by_size_at
    from deepseek.medical.synthetic import ChestPhantom, render_volume

    n_scans = args.scans or (4 if args.quick else 20)
    size = 384 if args.quick else 512
    slab = 120.0 if args.quick else 240.0
    det = NoduleDetector(progress=False, fpr="nodule-fpr-3dcnn",
                         **({} if args.tta_top is None else {"tta_top": args.tta_top}))
    # the default runs bf16 where the CPU has the units for it: then fp32 beside it
    ref = None if det.precision == "fp32" else NoduleDetector(
        progress=False, amp=False, **({} if args.tta_top is None else {"tta_top": args.tta_top}))
    rng = np.random.default_rng(args.seed0)
    ann, res, res_fpr, res_plain, scans, per_scan = [], [], [], [], [], []
    res_ref = []
    t_all = time.perf_counter()
    for i in range(n_scans):
        seed = args.seed0 + i
        sp_xy = float(rng.uniform(0.6, 0.9))
        step = float(rng.choice([0.625, 1.0, 1.25, 1.5, 2.0, 2.5]))
        slices = int(round(slab / step)) + 1
        ph = ChestPhantom(seed=seed, n_nodules=int(rng.integers(6, 11)),
                          z_range=(-slab / 2 - 10, slab / 2 + 10), realistic=not args.smooth)
        t0 = time.perf_counter()
        vol = render_volume(ph, (sp_xy, sp_xy, step), (slices, size, size), seed=seed)
        t_render = time.perf_counter() - t0
        sid = f"phantom-{seed}"
        cands = det.detect(vol, series_uid=sid)
        scans.append(sid)
        if ref is not None:
            res_ref.extend(ref.detect(vol, series_uid=sid))
        res_fpr.extend(cands)  # the default detector's probability, and the stage's reading
        res.extend(dict(c, probability=c["probability_detector"]) for c in cands)
        res_plain.extend(dict(c, seriesuid=sid) for c in det.plain_candidates)
        for n in ph.nodules:
            ann.append({"seriesuid": sid, "xyz": n.center, "diameter_mm": n.diameter_mm,
                        "kind": n.kind, "attached": n.attached})
        per_scan.append({"seriesuid": sid, "spacing_mm": [round(sp_xy, 3), round(sp_xy, 3),
                                                          step],
                         "shape": [slices, size, size], "nodules": len(ph.nodules),
                         "candidates": len(cands), "render_s": round(t_render, 1),
                         "detect_s": round(det.timings["total"], 1),
                         **({"detect_fp32_s": round(ref.timings["total"], 1)} if ref else {})})
        print(f"[{i + 1}/{n_scans}] {sid}: {len(ph.nodules)} nodules, {len(cands)} candidates, "
              f"{det.timings['total']:.1f} s", file=sys.stderr)
    r = froc(ann, res, scans=scans, bootstrap=1000)
    r_plain = froc(ann, res_plain, scans=scans, bootstrap=0)
    r_fpr = froc(ann, res_fpr, scans=scans, bootstrap=0)
    r_exact = froc(ann, res, scans=scans, bootstrap=0, reading="exact")
    r_ref = froc(ann, res_ref, scans=scans, bootstrap=0) if ref is not None else None
    by1 = sensitivity_by_size_at(ann, res, 1.0, scans=scans)
    by8 = sensitivity_by_size_at(ann, res, 8.0, scans=scans)
    kinds = {}
    for attached in ("none", "pleura", "vessel"):
        sub = [a for a in ann if a["attached"] == attached]
        rest = [a for a in ann if a["attached"] != attached]  # hits there count for nothing
        if sub:
            kinds[attached] = round(froc(sub, res, excluded=rest, scans=scans,
                                         bootstrap=0).cpm, 4)
    if args.out:
        from deepseek.medical.metrics import write_results

        write_results(res, args.out / "results.csv")
        with open(args.out / "annotations.csv", "w") as f:
            f.write("seriesuid,coordX,coordY,coordZ,diameter_mm\n")
            for a in ann:
                f.write(f"{a['seriesuid']},{a['xyz'][0]:.3f},{a['xyz'][1]:.3f},"
                        f"{a['xyz'][2]:.3f},{a['diameter_mm']:.2f}\n")
    results = {
        "scans": n_scans, "phantom": "smooth" if args.smooth else "realistic",
        "image_size": size, "slab_mm": slab,
        "seed0": args.seed0, "tta_top": det.tta_top, "nodules": len(ann),
        "network": {"backend": det.net.name, "precision": det.precision},
        **({"cpm_fp32_onnxruntime": round(r_ref.cpm, 4),
            "sensitivity_at_fps_fp32": {f"{k:g}": round(v, 4)
                                        for k, v in r_ref.sensitivities.items()}}
           if r_ref is not None else {}),
        "cpm": round(r.cpm, 4), "cpm_with_second_stage": round(r_fpr.cpm, 4),
        "at_fixed_thresholds": at_thresholds(ann, res, scans),
        "at_fixed_thresholds_with_second_stage": at_thresholds(ann, res_fpr, scans),
        "cpm_without_tta": round(r_plain.cpm, 4),
        "sensitivity_at_fps_with_second_stage": {f"{k:g}": round(v, 4)
                                                 for k, v in r_fpr.sensitivities.items()},
        "protocol": "the official script's (100 marks per scan, its FP-rate grid)",
        "cpm_read_at_exact_rates": round(r_exact.cpm, 4),
        "sensitivity_at_fps_without_tta": {f"{k:g}": round(v, 4)
                                           for k, v in r_plain.sensitivities.items()},
        "cpm_ci95": [round(v, 4) for v in r.ci95] if r.ci95 else None,
        "sensitivity_at_fps": {f"{k:g}": round(v, 4) for k, v in r.sensitivities.items()},
        "sensitivity_by_size_at_1_fp": by1, "sensitivity_by_size_at_8_fp": by8,
        "cpm_by_attachment": kinds,
        "false_positives_per_scan_all_candidates": round(r.n_false_positives / n_scans, 2),
        "max_sensitivity": round(r.max_sensitivity, 4),
        "per_scan": per_scan, "seconds": round(time.perf_counter() - t_all, 1),
    }
    kind = "smooth" if args.smooth else "realistic"
    goals = [goal(f"CPM on {n_scans} unseen {kind} phantom scans ({size}x{size}, "
                  f"{slab:.0f} mm, {det.precision})", round(r.cpm, 4), ">= 0.95", "CPM",
                  r.cpm >= 0.95)]
    if r_ref is not None:
        gap = abs(r.cpm - r_ref.cpm)
        goals.append(goal(f"CPM at {det.precision} against fp32, the same {n_scans} scans",
                          round(gap, 4), "<= 0.005", "CPM difference", gap <= 0.005))
    emit("nodule_froc", results, goals, quick=args.quick)


if __name__ == "__main__":
    main()
