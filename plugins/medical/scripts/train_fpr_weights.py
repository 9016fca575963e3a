"""Train the packaged weights of nodule-fpr-3dcnn (the second stage), reproducibly from a seed.

    python plugins/medical/scripts/train_fpr_weights.py [--seed 0] [--scans 20]
        [--val-scans 5] [--epochs 10] [--vessel-negatives 32]

It learns from the packaged lung-nodule-attention's candidates (run it after new detector
weights and their ``deepseek export-onnx lung-nodule-attention``) on realistic phantom scans
with seeds from 3000000 + 1000 x seed (validation: + 500000), which no other training and no
benchmark uses, with 32 places on each training phantom's thick vessels taught as negatives
besides the candidates (``fpr_training.VESSEL_NEGATIVES``). Writes
src/deepseek/medical/weights/nodule-fpr-3dcnn.safetensors (+ .json) and
nodule-fpr-3dcnn.training.json; then run ``deepseek export-onnx nodule-fpr-3dcnn``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path

from deepseek.medical.fpr_training import VESSEL_NEGATIVES, train_fpr

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "deepseek" / "medical" / "weights"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scans", type=int, default=20)
    ap.add_argument("--val-scans", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--vessel-negatives", type=int, default=VESSEL_NEGATIVES)
    ap.add_argument("--out", type=Path, default=None, help="keep the run folder here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run = args.out or Path(tempfile.mkdtemp(prefix="fpr-train-"))
    res = train_fpr(run, scans=args.scans, val_scans=args.val_scans, epochs=args.epochs,
                    seed=args.seed, progress=False, vessel_negatives=args.vessel_negatives)
    summary = json.loads((run / "training.json").read_text())
    summary["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".json"):
        shutil.copy(run / f"model{suffix}", WEIGHTS / f"nodule-fpr-3dcnn{suffix}")
    (WEIGHTS / "nodule-fpr-3dcnn.training.json").write_text(
        json.dumps(summary, indent=2, default=str))
    print(f"weights written to {WEIGHTS}; history: {res['history']}")


if __name__ == "__main__":
    main()
