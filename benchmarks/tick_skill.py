"""Benchmark: does a tick model predict the next move better than the rules a quant writes
first? On each real capture, time-ordered train / validation / test, the model's test
macro F1 and directional hit rate beside four baselines on the same test span.

    python benchmarks/tick_skill.py [--quick] [--capture PATH ...] [--model tick-mlp]

Captures default to ``../shared/data/market/*.gz`` (Binance spot, USD-M and COIN-M). Each is
read with the defaults of ``deepseek finance train`` (receive clock, book over 5 levels),
labelled with the mid move over the next 10 ticks (down / flat / up), and split 60/20/20
in time with a gap of the horizon between the parts (the validation part picks the epoch
and the logit offsets; the test part is scored once). Baselines, fitted on the training part
only: the training majority class, persistence (the last 10-tick move repeated), a
queue-imbalance rule (the sign of the top-of-book imbalance beyond a threshold) and a
logistic regression on the model's own features (offsets chosen on validation).

Two label kinds per capture: plain moves, and cost-aware moves (a move counts only when it
exceeds the spread at the decision plus ``--fee-bps`` twice, the round trip). The fee
defaults to 0 (the spread alone): with a 1 bp taker fee per side, 99.8-100 % of 10-tick
moves on these captures are "flat" and every predictor ties at macro F1 1/3.

Goal per capture and label kind: the model's test macro F1 above the best baseline's. A
miss is reported as a miss. ``--quick``: the first capture only, its first 60,000 ticks,
plain labels, 3 epochs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, goal, market_captures  # noqa: E402


def run_one(path: Path, model: str, costs: bool, fee_bps: float, epochs: int,
            limit: int | None, seed: int) -> dict:
    from deepseek.finance.training import load_ticks, train

    ticks = load_ticks(str(path))
    if limit:
        ticks = ticks[:limit]
    t0 = time.perf_counter()
    res = train(ticks, model, horizon=10, costs=costs, fee_bps=fee_bps, epochs=epochs,
                seed=seed, progress=False)
    name, best_f1 = res.best_baseline

    def row(m: dict) -> dict:
        hit = m.get("hit_rate")
        return {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4),
                "hit_rate": None if hit is None or hit != hit else round(hit, 4),
                "calls": round(m["calls"], 4)}

    return {
        "ticks": len(ticks), "labels": "cost-aware" if costs else "plain",
        "split": {k: res.split[k] for k in ("train", "validation", "test", "gap")},
        "test_span_s": round((res.split["test_time_ns"][1] - res.split["test_time_ns"][0])
                             / 1e9, 1),
        "model": {"name": model, **row(res.metrics)},
        "baselines": {k: row(v) for k, v in res.baselines.items()},
        "best_baseline": name, "best_baseline_macro_f1": round(best_f1, 4),
        "margin": round(res.metrics["macro_f1"] - best_f1, 4),
        "beats_baselines": res.beats_baselines,
        "train_s": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="the first capture, its first 60,000 ticks, plain labels, 3 epochs")
    ap.add_argument("--capture", type=Path, action="append", default=None,
                    help="a capture; repeat for several (default: ../shared/data/market/*.gz)")
    ap.add_argument("--model", default="tick-mlp", help="a registered tick model")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--fee-bps", type=float, default=0.0,
                    help="fee per side for the cost-aware labels (default 0: the spread "
                         "alone)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    captures = market_captures(args.capture)
    kinds = [False, True]
    epochs, limit = args.epochs, None
    if args.quick:
        captures, kinds, epochs, limit = captures[:1], [False], 3, 60_000
    results: dict = {"model": args.model, "epochs": epochs, "horizon_ticks": 10,
                     "fee_bps": args.fee_bps, "tick_limit": limit, "runs": {}}
    goals = []
    for cap in captures:
        for costs in kinds:
            r = run_one(cap, args.model, costs, args.fee_bps, epochs, limit, args.seed)
            key = f"{cap.name} ({r['labels']})"
            results["runs"][key] = r
            print(f"{key}: {args.model} macro F1 {r['model']['macro_f1']} vs "
                  f"{r['best_baseline']} {r['best_baseline_macro_f1']}", file=sys.stderr)
            size = f"{r['ticks']} ticks"  # what was run, after any --quick limit
            goals.append(goal(f"{args.model} test macro F1 - best baseline, {key}, {size}",
                              r["margin"], "> 0", "macro F1", r["beats_baselines"]))
    emit("tick_skill", results, goals, quick=args.quick)


if __name__ == "__main__":
    main()
