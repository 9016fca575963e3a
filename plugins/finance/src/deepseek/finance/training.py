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
from deepseek.finance.features import FEATURE_NAMES, N_FEATURES, batch_features
from deepseek.finance.metrics import classification as evaluate

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


def train(ticks: np.ndarray, model: str = "tick-mlp", *, horizon: int = 10,
          threshold: float = 0.0, epochs: int = 6, batch_size: int = 256, lr: float = 2e-3,
          val_fraction: float = 0.2, seq_len: int = 64, seed: int = 0,
          checkpoint_dir: str | Path | None = None, progress: bool | None = None,
          accum_steps: int = 1, **config: Any) -> TrainResult:
    """Train ``model`` on ``ticks``; returns the model and held-out metrics.

    ``model`` is any registered model whose declared input is the feature vector of a tick
    (``[N, 16]``, like ``tick-mlp``) or a sequence of them (``[N, T, 16]``, like
    ``tick-gru``) and whose output is 3 class scores per tick. Models with ``mean``/``std``
    buffers get them set from the training features (so the saved model standardises its
    own input); others see the raw features. ``config`` overrides the model's defaults."""
    from torch.utils.data import TensorDataset

    from deepseek.train import Trainer

    sequence = task_mode(model)
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

    from deepseek.loader import build_registered

    net, cfg = build_registered(model, pretrained=False, **config)
    _check_outputs(net, model, sequence)
    if not sequence:
        ds = TensorDataset(torch.from_numpy(x_tr), torch.from_numpy(y_tr))
        val = TensorDataset(torch.from_numpy(x_va), torch.from_numpy(y_va))

        def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(out, target, weight=weight)

        step_fn = None
    else:
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
    if isinstance(getattr(net, "mean", None), torch.Tensor) and \
            isinstance(getattr(net, "std", None), torch.Tensor):
        with torch.no_grad():
            net.mean.copy_(torch.from_numpy(mean))
            net.std.copy_(torch.from_numpy(std))
    else:
        log.info("%s has no mean/std buffers: it is fed the raw features", model)

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
    history = trainer.fit(ds, epochs=epochs, batch_size=max(8, batch_size // seq_len)
                          if sequence else batch_size, val_data=val, eval_fn=eval_fn,
                          best_metric="val_macro_f1", mode="max")
    if checkpoint_dir is not None and (Path(checkpoint_dir) / "best").is_dir():
        trainer.load_checkpoint(Path(checkpoint_dir) / "best")
    net.eval()
    with torch.no_grad():
        if not sequence:
            logits = net(torch.from_numpy(x_va)).numpy()
        else:  # one pass over the whole validation stream, state carried
            logits = net(torch.from_numpy(x_va)[None]).numpy()[0]
    metrics = evaluate(logits, y_va)
    metrics.update(train_ticks=float(len(y_tr)), val_ticks=float(len(y_va)),
                   horizon=float(horizon))
    return TrainResult(net, model, cfg, metrics, history)


#: what training feeds a model: one tick's features, or a sequence of them
TICK_INPUTS = [{"dtype": "float32", "shape": [-1, N_FEATURES]}]
SEQUENCE_INPUTS = [{"dtype": "float32", "shape": [-1, -1, N_FEATURES]}]


def task_mode(model: str) -> bool:
    """Whether registered ``model`` takes sequences (True) or single ticks (False); a
    ModelLoadError lists the models that fit when it takes neither."""
    from deepseek.loader import require_fit

    return require_fit(model, f"tick classification ([N, {N_FEATURES}] features or "
                              f"[N, T, {N_FEATURES}] sequences)",
                       TICK_INPUTS, SEQUENCE_INPUTS) == 1


def _check_outputs(net: torch.nn.Module, name: str, sequence: bool) -> None:
    x = torch.zeros((1, 4, N_FEATURES) if sequence else (2, N_FEATURES))
    net.eval()
    with torch.no_grad():
        out = net(x)
    net.train()
    want = (1, 4, 3) if sequence else (2, 3)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise FinanceError(f"model {name!r} must return 3 class scores per tick "
                           f"(shape {list(want)} for this input); it returned {got}")


def load_ticks(source: str | Path, **options: Any) -> np.ndarray:
    """Ticks from any registered tick reader: ``deepseek.open(source, kind="ticks")`` (a CSV,
    a Binance capture, ``synthetic:?n=N&seed=S`` ...)."""
    from deepseek.readers import open as open_source

    return open_source(str(source), kind="ticks", **options)


FEATURES = FEATURE_NAMES
