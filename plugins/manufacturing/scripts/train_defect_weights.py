"""Train the packaged weights of defect-3dcnn-lstm, reproducibly from a seed.

    python plugins/manufacturing/scripts/train_defect_weights.py [--seed 0] [--clips 2400]
        [--epochs 10] [--crack-depth 0.10 0.70]

Synthetic clips only (clip seeds derived from --seed; validation videos use seeds from 800000,
benchmark videos from 700000: never seen in training). Writes
src/deepseek/manufacturing/weights/defect-3dcnn-lstm.safetensors (+ .json) and
defect-3dcnn-lstm.training.json with the per-epoch history, and the ONNX exports the edge
install runs (defect-3dcnn-lstm.stream.onnx and .still.onnx, stamped with the new weights'
sha256).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path

from deepseek.manufacturing.model import write_packaged_onnx
from deepseek.manufacturing.training import TRAIN_CRACK_DEPTH, train_model

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "deepseek" / "manufacturing" / "weights"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clips", type=int, default=2400)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--val-videos", type=int, default=3)
    ap.add_argument("--crack-depth", type=float, nargs=2, default=TRAIN_CRACK_DEPTH,
                    metavar=("LOW", "HIGH"), help="fractional darkening of the training cracks")
    ap.add_argument("--out", type=Path, default=None, help="keep the run folder here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run = args.out or Path(tempfile.mkdtemp(prefix="defect-train-"))
    res = train_model(run, clips=args.clips, epochs=args.epochs, batch_size=args.batch_size,
                      lr=args.lr, seed=args.seed, val_videos=args.val_videos, progress=False,
                      crack_depth=tuple(args.crack_depth))
    summary = json.loads((run / "training.json").read_text())
    summary["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".json"):
        shutil.copy(run / f"model{suffix}", WEIGHTS / f"defect-3dcnn-lstm{suffix}")
    (WEIGHTS / "defect-3dcnn-lstm.training.json").write_text(
        json.dumps(summary, indent=2, default=str))
    write_packaged_onnx(WEIGHTS / "defect-3dcnn-lstm.safetensors")
    print(f"weights written to {WEIGHTS}; history: {res['history']}")


if __name__ == "__main__":
    main()
