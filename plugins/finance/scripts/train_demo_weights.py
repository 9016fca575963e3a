"""Train the packaged demo weights of tick-mlp and tick-gru, reproducibly from a seed.

    python plugins/finance/scripts/train_demo_weights.py [--ticks 200000] [--seed 0]

Writes src/deepseek/finance/weights/{tick-mlp,tick-gru}.safetensors (+ .json) and prints the
held-out metrics. The data are synthetic (deepseek.finance.synthetic.synthetic_ticks).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from deepseek.finance.synthetic import synthetic_ticks
from deepseek.finance.training import train
from deepseek.loader import save_model

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "deepseek" / "finance" / "weights"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ticks = synthetic_ticks(args.ticks, seed=args.seed)
    report = {}
    for name, epochs in (("tick-mlp", 6), ("tick-gru", 4)):
        res = train(ticks, name, epochs=epochs, seed=args.seed, progress=False)
        save_model(res.model, WEIGHTS / f"{name}.safetensors", architecture=name,
                   config=res.config)
        report[name] = {k: round(v, 4) for k, v in res.metrics.items()}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
