"""Benchmark: second stages (false-positive reduction) compared on the same candidates.

    python benchmarks/nodule_fpr.py [--quick] [--scans N] [--fpr MODEL ...]

The packaged detector (flip TTA, as it reports candidates) runs once over realistic phantom
scans that no stage saw (seeds from 3600000; ``train-fpr`` trains from 3000000 and validates
from 3500000), in the geometry ``train-fpr`` uses (384x384x90 at 0.9x0.9x2 mm, 8 nodules per
phantom). Every second stage given with ``--fpr`` (a registered name or a weights file;
default: the packaged ``nodule-fpr-3dcnn``) then re-scores every candidate from its centre
cube, lowering the detector's probability and never raising it
(``detector.second_stage_probability``). Per stage: the CPM (LUNA16 protocol), the
classifier's AUROC over the candidates (hits against the rest), and false positives per scan
and sensitivity at p >= 0.3 and >= 0.5; beside them the detector alone, from the same
candidates. The goal per stage: a CPM no lower than the detector's alone.

The effect of the vessel landmarks taught as negatives, for instance (a stage trained
without them, otherwise as the packaged one was):

    deepseek medical train-fpr --out v0 --vessel-negatives 0 --scans 20 --val-scans 5 --epochs 10
    python benchmarks/nodule_fpr.py --fpr nodule-fpr-3dcnn --fpr v0/model.safetensors
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, goal  # noqa: E402
from nodule_froc import at_thresholds  # noqa: E402

SEED0 = 3_600_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 scans instead of 12")
    ap.add_argument("--scans", type=int, default=None)
    ap.add_argument("--fpr", action="append", default=None, metavar="MODEL",
                    help="a second stage to compare (repeat for several; default: the "
                         "packaged nodule-fpr-3dcnn)")
    args = ap.parse_args()
    from sklearn.metrics import roc_auc_score

    from deepseek.loader import ModelLoader
    from deepseek.medical.detector import NoduleDetector
    from deepseek.medical.fpr_training import candidate_set, cube_logits, rescored
    from deepseek.medical.metrics import froc
    from deepseek.medical.nodule_training import phantom_scans

    stages = args.fpr or ["nodule-fpr-3dcnn"]
    n_scans = args.scans or (3 if args.quick else 12)
    t0 = time.perf_counter()
    det = NoduleDetector("lung-nodule-attention", progress=False, fpr=None, sizes=0)
    cs = candidate_set(det, phantom_scans(n_scans, seed0=SEED0, prefix="fpr-bench",
                                          realistic=True))
    ann, cands, scans = cs["annotations"], cs["candidates"], cs["scans"]
    results = {"scans": n_scans, "seed0": SEED0, "nodules": len(ann),
               "candidates": len(cands), "candidate_hits": int(cs["y"].sum()),
               "detector": {"precision": det.precision, "tta_top": det.tta_top},
               "detector_alone": {"cpm": round(froc(ann, cands, scans=scans,
                                                    bootstrap=0).cpm, 4),
                                  **at_thresholds(ann, cands, scans)},
               "detect_seconds": round(time.perf_counter() - t0, 1), "stages": {}}
    goals = []
    for name in stages:
        logits = cube_logits(ModelLoader.load(name, device="cpu").module.eval(), cs["x"])
        res = rescored(cands, logits)
        cpm = froc(ann, res, scans=scans, bootstrap=0).cpm
        auroc = float(roc_auc_score(cs["y"], logits)) if 0 < cs["y"].sum() < len(cs["y"]) \
            else None
        results["stages"][str(name)] = {"cpm": round(cpm, 4),
                                        "auroc_over_candidates": None if auroc is None
                                        else round(auroc, 4),
                                        **at_thresholds(ann, res, scans)}
        alone = results["detector_alone"]["cpm"]
        goals.append(goal(f"CPM with the second stage {name} against the detector alone, "
                          f"{n_scans} unseen realistic phantom scans (384x384x90)",
                          round(cpm - alone, 4), ">= 0", "CPM difference",
                          round(cpm, 4) >= alone))
    results["seconds"] = round(time.perf_counter() - t0, 1)
    emit("nodule_fpr", results, goals, quick=args.quick)


if __name__ == "__main__":
    main()
