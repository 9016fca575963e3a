"""Labels, data sets and training of the tick models through the core Trainer.

Label of tick i: the relative mid-price change over the next ``horizon`` ticks,
``(mid[i + h] - mid[i]) / mid[i]``: class 2 (up) above ``+threshold``, 0 (down) below
``-threshold``, 1 (flat) otherwise -- the three-class target of the limit-order-book
literature. The last ``horizon`` ticks have no label and are dropped. Splits are
chronological (train on the past, validate on the future) so that quality is measured on
ticks the model did not train on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepseek.finance.errors import FinanceError
from deepseek.finance.features import FEATURE_NAMES, batch_features
from deepseek.finance.models import TickGRU, TickMLP

log = logging.getLogger(__name__)


def labels(ticks: np.ndarray, horizon: int = 10, threshold: float = 0.0) -> np.ndarray:
    """Classes 0/1/2 (down/flat/up) for all but the last ``horizon`` ticks."""
    if horizon < 1:
        raise FinanceError(f"horizon must be >= 1 tick, got {horizon}")
    mid = (ticks["bid"] + ticks["ask"]) * 0.5
    r = (mid[horizon:] - mid[:-horizon]) / mid[:-horizon]
    out = np.ones(len(r), dtype=np.int64)
    out[r > threshold] = 2
    out[r < -threshold] = 0
    return out


@dataclass
class TrainResult:
    model: torch.nn.Module
    architecture: str
    config: dict[str, Any]
    metrics: dict[str, float]
    history: list[dict[str, Any]]


def evaluate(logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy, macro F1 and the majority-class baseline accuracy."""
    pred = logits.argmax(-1)
    acc = float((pred == y).mean())
    f1s = []
    for c in range(3):
        tp = float(((pred == c) & (y == c)).sum())
        fp = float(((pred == c) & (y != c)).sum())
        fn = float(((pred != c) & (y == c)).sum())
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    counts = np.bincount(y, minlength=3)
    share = counts.max() / max(len(y), 1)
    return {"accuracy": acc, "macro_f1": float(np.mean(f1s)),
            "majority_baseline": float(share),
            # always predicting the majority class: F1 of that class, 0 for the others
            "majority_baseline_macro_f1": float(2 * share / (1 + share) / 3)}


def train(ticks: np.ndarray, model: str = "tick-mlp", *, horizon: int = 10,
          threshold: float = 0.0, epochs: int = 6, batch_size: int = 256, lr: float = 2e-3,
          val_fraction: float = 0.2, seq_len: int = 64, seed: int = 0,
          checkpoint_dir: str | Path | None = None, progress: bool | None = None,
          accum_steps: int = 1, **config: Any) -> TrainResult:
    """Train ``tick-mlp`` or ``tick-gru`` on ``ticks``; returns the model and held-out metrics."""
    from torch.utils.data import TensorDataset

    from deepseek.train import Trainer

    if model not in ("tick-mlp", "tick-gru"):
        raise FinanceError(f"unknown tick model {model!r}; use tick-mlp or tick-gru")
    if len(ticks) < 10 * (horizon + seq_len):
        raise FinanceError(f"{len(ticks)} ticks are too few to train on with horizon {horizon}; "
                           "give at least a few thousand")
    torch.manual_seed(seed)
    feats = batch_features(ticks)[:-horizon]
    y = labels(ticks, horizon, threshold)
    split = int(len(y) * (1 - val_fraction))
    # no leakage across the split: the last training label looks `horizon` ticks ahead
    x_tr, y_tr = feats[:split - horizon], y[:split - horizon]
    x_va, y_va = feats[split:], y[split:]
    mean = x_tr.mean(0)
    std = x_tr.std(0)
    std[std < 1e-6] = 1.0
    counts = np.bincount(y_tr, minlength=3)
    weight = torch.tensor(len(y_tr) / (3 * np.maximum(counts, 1)), dtype=torch.float32)
    log.info("training %s on %d ticks, validating on %d; train classes down/flat/up = %s",
             model, len(y_tr), len(y_va), counts.tolist())

    if model == "tick-mlp":
        net: torch.nn.Module = TickMLP(**config)
        ds = TensorDataset(torch.from_numpy(x_tr), torch.from_numpy(y_tr))
        val = TensorDataset(torch.from_numpy(x_va), torch.from_numpy(y_va))

        def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(out, target, weight=weight)

        step_fn = None
    else:
        net = TickGRU(**config)

        def windows(x: np.ndarray, t: np.ndarray, stride: int) -> TensorDataset:
            starts = range(0, len(t) - seq_len + 1, stride)
            xs = np.stack([x[s:s + seq_len] for s in starts])
            ts = np.stack([t[s:s + seq_len] for s in starts])
            return TensorDataset(torch.from_numpy(xs), torch.from_numpy(ts))

        ds = windows(x_tr, y_tr, seq_len // 2)
        val = windows(x_va, y_va, seq_len)
        loss_fn = None

        def step_fn(m: torch.nn.Module, batch: Any) -> torch.Tensor:
            xb, yb = batch
            out = m(xb)
            return torch.nn.functional.cross_entropy(out.reshape(-1, 3), yb.reshape(-1),
                                                     weight=weight)
    with torch.no_grad():
        net.mean.copy_(torch.from_numpy(mean))
        net.std.copy_(torch.from_numpy(std))
    cfg = _config_of(net)

    def eval_fn(m: torch.nn.Module, data: Any) -> dict[str, float]:
        m.eval()
        with torch.no_grad():
            xs = data.tensors[0]
            logits = m(xs).numpy()
        m.train()
        return {f"val_{k}": v for k, v in evaluate(logits.reshape(-1, 3),
                                                   data.tensors[1].numpy().reshape(-1)).items()}

    trainer = Trainer(net, torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4),
                      loss_fn=loss_fn, step_fn=step_fn, accum_steps=accum_steps,
                      checkpoint_dir=checkpoint_dir, progress=progress, architecture=model,
                      config=cfg, device="cpu")
    history = trainer.fit(ds, epochs=epochs, batch_size=batch_size if model == "tick-mlp"
                          else max(8, batch_size // seq_len), val_data=val, eval_fn=eval_fn,
                          best_metric="val_macro_f1", mode="max")
    if checkpoint_dir is not None and (Path(checkpoint_dir) / "best").is_dir():
        trainer.load_checkpoint(Path(checkpoint_dir) / "best")
    net.eval()
    with torch.no_grad():
        if model == "tick-mlp":
            logits = net(torch.from_numpy(x_va)).numpy()
        else:  # one pass over the whole validation stream, state carried
            logits = net(torch.from_numpy(x_va)[None]).numpy()[0]
    metrics = evaluate(logits, y_va)
    metrics.update(train_ticks=float(len(y_tr)), val_ticks=float(len(y_va)),
                   horizon=float(horizon))
    return TrainResult(net, model, cfg, metrics, history)


def _config_of(net: torch.nn.Module) -> dict[str, Any]:
    if isinstance(net, TickMLP):
        lins = [m for m in net.net if isinstance(m, torch.nn.Linear)]
        act = "tanh" if any(isinstance(m, torch.nn.Tanh) for m in net.net) else "relu"
        return {"n_features": lins[0].in_features,
                "hidden": [lin.out_features for lin in lins[:-1]],
                "n_classes": lins[-1].out_features, "activation": act}
    return {"n_features": net.gru.input_size, "hidden": net.hidden,
            "n_classes": net.head.out_features}


def load_ticks(source: str | Path) -> np.ndarray:
    """``synthetic[:N[:SEED]]``, a CSV file, or a Binance recording (``.jsonl``/``.log``/...)."""
    from deepseek.finance.ticks import read_binance, read_csv, synthetic_ticks

    s = str(source)
    if s.startswith("synthetic"):
        parts = s.split(":")
        n = int(parts[1]) if len(parts) > 1 and parts[1] else 100_000
        seed = int(parts[2]) if len(parts) > 2 else 0
        return synthetic_ticks(n, seed=seed)
    path = Path(s)
    if path.suffix.lower() == ".csv":
        return read_csv(path)
    return read_binance(path)


FEATURES = FEATURE_NAMES
