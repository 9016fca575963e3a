"""Train the packaged weights of lung-nodule-attention, reproducibly from a seed.

    python plugins/medical/scripts/train_nodule_weights.py [--seed 0] [--patches 2400]
        [--epochs 3]

Phantom patches only (seeds derived from --seed; validation phantoms use seeds from 900000,
benchmark phantoms from 500000: never seen in training). Writes
src/deepseek/medical/weights/lung-nodule-attention.safetensors (+ .json) and
training.json with the per-epoch history.
"""

from __future__ import annotations

import argparse
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
    ap.add_argument("--out", type=Path, default=None, help="keep the run folder here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run = args.out or Path(tempfile.mkdtemp(prefix="nodule-train-"))
    res = train_detector(run, n_patches=args.patches, epochs=args.epochs,
                         batch_size=args.batch_size, seed=args.seed, progress=False)
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".json"):
        shutil.copy(run / f"model{suffix}", WEIGHTS / f"lung-nodule-attention{suffix}")
    shutil.copy(run / "training.json", WEIGHTS / "lung-nodule-attention.training.json")
    print(f"weights written to {WEIGHTS}; history: {res['history']}")


if __name__ == "__main__":
    main()
