"""Pipelines of the finance plugin, run by ``deepseek run`` and ``deepseek demo``."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from deepseek.report import Headline, PipelineResult, Table


def percentiles_us(ns: np.ndarray) -> dict[str, float]:
    us = np.asarray(ns, dtype=np.float64) / 1e3
    return {"p50": float(np.percentile(us, 50)), "p99": float(np.percentile(us, 99)),
            "p99_9": float(np.percentile(us, 99.9))}


def tick_latency(input: str | None = None, out_dir: Path = Path("."), quiet: bool = False,
                 n_ticks: int = 20_000) -> PipelineResult:
    """Score the packaged tick-mlp on held-out ticks and time its fast path against eager."""
    import torch

    from deepseek.evaluation import evaluate
    from deepseek.finance.fastpath import FastPath
    from deepseek.finance.features import StreamingFeatures, batch_features
    from deepseek.finance.figures import latency_histogram
    from deepseek.finance.ticks import tick_args
    from deepseek.finance.training import labels, load_ticks
    from deepseek.loader import ModelLoader

    ticks = load_ticks(input if input is not None else f"synthetic:?n={n_ticks}&seed=12345")
    loaded = ModelLoader.load("tick-mlp", device="cpu")
    model = loaded.module
    horizon = 10
    feats = batch_features(ticks)
    with torch.inference_mode():
        logits = model(torch.from_numpy(feats)).numpy()
    quality = evaluate("tick-classification", logits[:-horizon], labels(ticks, horizon))
    fp = FastPath.from_model(model)
    _, fp_logits = fp.run(ticks)
    parity = float(np.abs(fp_logits - logits).max())

    n = min(len(ticks), 5000)
    args = [tick_args(t) for t in ticks[:n]]
    fp.reset()
    clock = time.perf_counter_ns
    fast = np.empty(n, dtype=np.int64)
    for i, a in enumerate(args):
        t0 = clock()
        fp.on_tick(*a)
        fast[i] = clock() - t0
    sf = StreamingFeatures()
    eager = np.empty(n, dtype=np.int64)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            for i, a in enumerate(args):
                t0 = clock()
                f = sf.update(*a)
                model(torch.from_numpy(f).unsqueeze(0)).argmax(1)
                eager[i] = clock() - t0
    finally:
        torch.set_num_threads(prev_threads)
    warm = n // 10
    pf, pe = percentiles_us(fast[warm:]), percentiles_us(eager[warm:])
    metrics = {
        "held_out_accuracy": quality["accuracy"],
        "held_out_macro_f1": quality["macro_f1"],
        "majority_baseline_accuracy": quality["majority_baseline"],
        "majority_baseline_macro_f1": quality["majority_baseline_macro_f1"],
        "fastpath_max_abs_logit_diff": parity,
    }
    timings = {"fastpath_p50_us": pf["p50"], "fastpath_p99_us": pf["p99"],
               "eager_p50_us": pe["p50"], "eager_p99_us": pe["p99"]}
    fig = latency_histogram(Path(out_dir) / "latency.png",
                            {"fast path (numba)": fast[warm:], "PyTorch eager": eager[warm:]})
    table = Table("Per-tick latency, feature update + forward (µs)",
                  ["path", "p50", "p99", "p99.9"],
                  [["fast path (numba)", round(pf["p50"], 2), round(pf["p99"], 2),
                    round(pf["p99_9"], 2)],
                   ["PyTorch eager", round(pe["p50"], 2), round(pe["p99"], 2),
                    round(pe["p99_9"], 2)]])
    source = "synthetic, seed 12345: not the training seed" if input is None else input
    notes = [f"{len(ticks)} ticks ({source}); "
             f"labels: mid move over {horizon} ticks; latency over {n - warm} ticks after "
             f"{warm} warm-up ticks on one thread. benchmarks/tick_latency.py adds TorchScript, "
             "ONNX Runtime, the GRU and the UDP round trip."]
    if quality["macro_f1"] <= quality["majority_baseline_macro_f1"]:
        notes.append("the model does not beat the majority-class baseline's macro F1 here")
    return PipelineResult(pipeline="finance.tick-latency",
                          title="Finance: tick-to-decision fast path", metrics=metrics,
                          timings=timings,
                          quality=Headline("held-out macro F1 (majority baseline "
                                           f"{quality['majority_baseline_macro_f1']:.3f})",
                                           quality["macro_f1"]),
                          speed=Headline("fast path p99", pf["p99"], "µs", target=5.0,
                                         higher_is_better=False),
                          tables=[table], figures=[fig], notes=notes,
                          input=str(input) if input else "synthetic ticks")
