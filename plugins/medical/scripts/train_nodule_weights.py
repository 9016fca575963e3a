"""Train the packaged weights of lung-nodule-attention, reproducibly from a seed.

    python plugins/medical/scripts/train_nodule_weights.py [--seed 0] [--patches 2400]
        [--epochs 3] [--init lung-nodule-attention --lr 6e-4]

The packaged weights come from four runs, each fine-tuning the one before on fresh patches
(the third and fourth on realistic phantom lungs: vessel tree, bronchi, fissures, texture;
the fourth seen through the scanner's point spread):

    python plugins/medical/scripts/train_nodule_weights.py --seed 0 --patches 3200 --epochs 4
    python plugins/medical/scripts/train_nodule_weights.py --seed 1 --patches 3200 --epochs 3 \
        --init lung-nodule-attention --lr 6e-4 --val-scans 3
    python plugins/medical/scripts/train_nodule_weights.py --seed 2 --patches 1600 --epochs 2 \
        --init lung-nodule-attention --lr 6e-4 --val-scans 2 --realistic
    python plugins/medical/scripts/train_nodule_weights.py --seed 3 --patches 2400 --epochs 3 \
        --init lung-nodule-attention --lr 6e-4 --val-scans 2 --realistic

After new weights: ``deepseek export-onnx lung-nodule-attention`` (the packaged ONNX export),
then retrain the second stage, which learns from this detector's candidates
(``train_fpr_weights.py`` beside this script).

Phantom patches only (seeds derived from --seed; validation phantoms use seeds from 900000,
benchmark phantoms from 500000: never seen in training). Writes
src/deepseek/medical/weights/lung-nodule-attention.safetensors (+ .json) and
training.json with the per-epoch history.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path

from deepseek.medical.nodule_training import train_detector

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "deepseek" / "medical" / "weights"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--patches", type=int, default=2400)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--val-scans", type=int, default=2)
    ap.add_argument("--init", default=None,
                    help="fine-tune from these weights (registry name or .safetensors)")
    ap.add_argument("--out", type=Path, default=None, help="keep the run folder here")
    ap.add_argument("--realistic", action="store_true",
                    help="patches, validation and mining scans from realistic phantoms "
                         "(vessel tree, bronchi, fissures, texture)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run = args.out or Path(tempfile.mkdtemp(prefix="nodule-train-"))
    res = train_detector(run, n_patches=args.patches, epochs=args.epochs,
                         batch_size=args.batch_size, lr=args.lr, val_scans=args.val_scans,
                         init=args.init, seed=args.seed, progress=False,
                         realistic=args.realistic)
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    summary = json.loads((run / "training.json").read_text())
    summary["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    previous = WEIGHTS / "lung-nodule-attention.training.json"
    if args.init is not None and previous.is_file():
        summary["init_run"] = json.loads(previous.read_text())
    (run / "training.json").write_text(json.dumps(summary, indent=2, default=str))
    for suffix in (".safetensors", ".json"):
        shutil.copy(run / f"model{suffix}", WEIGHTS / f"lung-nodule-attention{suffix}")
    shutil.copy(run / "training.json", WEIGHTS / "lung-nodule-attention.training.json")
    print(f"weights written to {WEIGHTS}; history: {res['history']}")


if __name__ == "__main__":
    main()
