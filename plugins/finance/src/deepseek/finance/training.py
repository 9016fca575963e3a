"""Labels, time splits, baselines and training of the tick models through the core Trainer.

Label of tick i: the relative mid-price move over the next ``horizon`` ticks,
``(mid[i + h] - mid[i]) / mid[i]``: class 2 (up) above the hurdle, 0 (down) below minus the
hurdle, 1 (flat) otherwise. The hurdle is ``threshold``, plus, with ``costs=True``, the
tick's relative spread and two taker fees (``fee_bps`` each): a move only counts when
crossing the spread both ways and paying the fees would have been repaid. The last
``horizon`` ticks have no label.

Splits are by time (:func:`time_split`): train, validation (picks the epoch), test
(reported once), with ``horizon`` ticks left out between them so that no label looks into
the next part. On the test span the model is reported beside four baselines fitted on the
training part only (:func:`baselines`): the training majority class, persistence (the last
completed move, ``y[i - h]``, known at tick i), a queue-imbalance rule (up above +theta,
down below -theta, theta chosen on the training part) and a logistic regression on the same
features (its up/down offsets chosen on validation, as the model's are).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepseek.finance.errors import FinanceError
from deepseek.finance.features import FEATURE_NAMES, N_FEATURES, batch_features
from deepseek.finance.metrics import classification as evaluate
from deepseek.finance.metrics import skill

if TYPE_CHECKING:  # PyTorch is imported where training needs it (edge installs lack it)
    import torch

log = logging.getLogger(__name__)

IMBALANCE = FEATURE_NAMES.index("imbalance")


def labels(ticks: np.ndarray, horizon: int = 10, threshold: float = 0.0, *,
           costs: bool = False, fee_bps: float = 0.0) -> np.ndarray:
    """Classes 0/1/2 (down/flat/up) for all but the last ``horizon`` ticks."""
    if horizon < 1:
        raise FinanceError(f"horizon must be >= 1 tick, got {horizon}")
    if threshold < 0 or fee_bps < 0:
        raise FinanceError("threshold and fee_bps must be >= 0")
    if len(ticks) <= horizon:
        raise FinanceError(f"{len(ticks)} ticks: none has a label {horizon} ticks ahead")
    mid = (ticks["bid"] + ticks["ask"]) * 0.5
    r = (mid[horizon:] - mid[:-horizon]) / mid[:-horizon]
    hurdle = np.full(len(r), float(threshold))
    if costs:
        spread = (ticks["ask"] - ticks["bid"])[:-horizon] / mid[:-horizon]
        hurdle = hurdle + spread + 2.0 * fee_bps * 1e-4
    out = np.ones(len(r), dtype=np.int64)
    out[r > hurdle] = 2
    out[r < -hurdle] = 0
    return out


def time_split(n: int, horizon: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
               ) -> tuple[slice, slice, slice]:
    """Train / validation / test slices over ``n`` labelled ticks in time order, with
    ``horizon`` ticks left out after train and after validation."""
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-9:
        raise FinanceError(f"fractions {fractions}: give three positive parts summing to 1")
    a = int(n * fractions[0])
    b = int(n * (fractions[0] + fractions[1]))
    tr, va, te = slice(0, a), slice(a + horizon, b), slice(b + horizon, n)
    if min(a, b - a - horizon, n - b - horizon) < 10 * horizon:
        raise FinanceError(f"{n} labelled ticks are too few to split in time with horizon "
                           f"{horizon}; give at least a few thousand")
    return tr, va, te


def baselines(feats: np.ndarray, y: np.ndarray, horizon: int, train: slice,
              test: slice, val: slice | None = None) -> dict[str, dict[str, float]]:
    """Skill of the baselines on ``test``, fitted on ``train`` only: the majority class,
    persistence, the queue-imbalance rule, and (given ``val``) a learned linear baseline:
    multinomial logistic regression on the same standardised features, its up/down offsets
    chosen on validation macro F1 as the model's are (:func:`calibrate`)."""
    majority = int(np.bincount(y[train], minlength=3).argmax())
    out = {"majority": skill(np.full(test.stop - test.start, majority), y[test])}
    idx = np.arange(test.start, test.stop)
    out["persistence"] = skill(y[idx - horizon], y[test])
    imb = feats[:, IMBALANCE].astype(np.float64)
    best_theta, best_f1 = 0.0, -1.0
    for theta in np.unique(np.round(np.quantile(np.abs(imb[train]),
                                                np.linspace(0, 0.95, 20)), 6)):
        f1 = skill(_imbalance_rule(imb[train], theta), y[train])["macro_f1"]
        if f1 > best_f1:
            best_theta, best_f1 = float(theta), f1
    out["queue_imbalance"] = skill(_imbalance_rule(imb[test], best_theta), y[test])
    out["queue_imbalance"]["theta"] = best_theta
    if val is not None:
        out["logistic"] = _logistic(feats, y, train, val, test)
    return out


def _logistic(feats: np.ndarray, y: np.ndarray, train: slice, val: slice,
              test: slice) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(feats, dtype=np.float64)
    seen = np.unique(y[train])
    if len(seen) < 2:  # one class in training (all flat): the fit is that class, always
        return skill(np.full(test.stop - test.start, int(seen[0])), y[test])
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    clf.fit(x[train], y[train])

    def log_proba(part: slice) -> np.ndarray:
        full = np.full((part.stop - part.start, 3), -1e9)  # a class absent from train
        full[:, clf.classes_] = clf.predict_log_proba(x[part])
        return full

    offsets = calibrate(log_proba(val), y[val])
    return skill(shift(log_proba(test), offsets), y[test])


def shift(logits: np.ndarray, offsets: tuple[float, float]) -> np.ndarray:
    """Logits with ``offsets`` (down, up) added to the down and up classes."""
    out = np.array(logits, dtype=np.float64, copy=True)
    out[:, 0] += offsets[0]
    out[:, 2] += offsets[1]
    return out


OFFSET_GRID = np.linspace(-4.0, 4.0, 33)


def calibrate(logits: np.ndarray, y: np.ndarray,
              grid: np.ndarray = OFFSET_GRID) -> tuple[float, float]:
    """The offsets of the down and up logits (relative to flat) that maximise macro F1 on
    (validation) ``logits``/``y``: the decision rule is fitted where the epoch is chosen,
    never on the test span."""
    from deepseek.finance.metrics import macro_f1_counts

    d = np.asarray(logits, dtype=np.float64)
    down, flat, up = d[:, 0] - d[:, 1], 0.0, d[:, 2] - d[:, 1]
    best, best_f1 = (0.0, 0.0), -1.0
    for od in grid:
        sd = down + od
        for ou in grid:
            su = up + ou
            pred = np.where((su > sd) & (su > flat), 2, np.where(sd > flat, 0, 1))
            f1 = macro_f1_counts(pred, y)
            if f1 > best_f1 + 1e-12:
                best, best_f1 = (float(od), float(ou)), f1
    return best


def _fold_offsets(net: torch.nn.Module, offsets: tuple[float, float], name: str) -> None:
    """Add the calibrated offsets to the bias of the model's last layer, so the saved model
    (and the fast path compiled from it) decides with them."""
    import torch

    if offsets == (0.0, 0.0):
        return
    last = getattr(net, "head", None)
    if last is None:
        linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
        last = linears[-1] if linears else None
    if not isinstance(last, torch.nn.Linear) or last.out_features != 3 or last.bias is None:
        log.warning("%s has no 3-output last Linear layer with a bias: the calibrated offsets "
                    "%s are not folded in", name, offsets)
        return
    with torch.no_grad():
        last.bias[0] += offsets[0]
        last.bias[2] += offsets[1]


def _imbalance_rule(imb: np.ndarray, theta: float) -> np.ndarray:
    return np.where(imb > theta, 2, np.where(imb < -theta, 0, 1))


@dataclass
class TrainResult:
    """A trained tick classifier: the model, its test metrics beside the baselines', the split and
    the training history.
    """
    model: torch.nn.Module
    architecture: str
    config: dict[str, Any]
    metrics: dict[str, float]
    history: list[dict[str, Any]]
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    validation: dict[str, float] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)

    @property
    def best_baseline(self) -> tuple[str, float]:
        """The baseline with the best test macro F1, and that F1."""
        name = max(self.baselines, key=lambda k: self.baselines[k]["macro_f1"])
        return name, self.baselines[name]["macro_f1"]

    @property
    def beats_baselines(self) -> bool:
        """Whether the model's test macro F1 beats every baseline's."""
        return bool(self.baselines) and self.metrics["macro_f1"] > self.best_baseline[1]

    def verdict(self) -> str:
        """One sentence: whether the model beats the baselines, with the figures."""
        name, f1 = self.best_baseline
        m = self.metrics["macro_f1"]
        if m > f1:
            return f"the model beats every baseline on test macro F1 ({m:.4f} > {name} {f1:.4f})"
        return (f"the model does NOT beat the {name} baseline on test macro F1 ({m:.4f} <= "
                f"{f1:.4f})")

    def table(self) -> list[list[Any]]:
        """Rows of the results table: the model, then each baseline."""
        rows = [[self.architecture, *_row(self.metrics)]]
        rows += [[name, *_row(m)] for name, m in self.baselines.items()]
        return rows


def _row(m: dict[str, float]) -> list[Any]:
    hit = m.get("hit_rate")
    return [round(m["accuracy"], 4), round(m["macro_f1"], 4),
            "-" if hit is None or hit != hit else round(hit, 4), round(m["calls"], 4)]


SKILL_COLUMNS = ["predictor", "accuracy", "macro F1", "hit rate", "calls"]


def train(ticks: np.ndarray, model: str = "tick-mlp", *, horizon: int = 10,
          threshold: float = 0.0, costs: bool = False, fee_bps: float = 0.0,
          epochs: int = 6, batch_size: int = 256, lr: float = 2e-3,
          fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), seq_len: int = 64,
          seed: int = 0, checkpoint_dir: str | Path | None = None,
          progress: bool | None = None, accum_steps: int = 1, class_weights: bool = False,
          calibrate_offsets: bool = True, **config: Any) -> TrainResult:
    """Train ``model`` on ``ticks`` split in time; returns the model, its test skill and the
    baselines' on the same test span.

    ``model`` is any registered model whose declared input is the feature vector of a tick
    (``[N, 17]``, like ``tick-mlp``) or a sequence of them (``[N, T, 17]``, like
    ``tick-gru``) and whose output is 3 class scores per tick. Models with ``mean``/``std``
    buffers get them set from the training features (so the saved model standardises its
    own input); others see the raw features. With ``calibrate_offsets`` (default) the down
    and up logits get the offsets that maximise validation macro F1 (:func:`calibrate`),
    folded into the last layer's bias; the epoch with the best (calibrated) validation macro
    F1 is kept. ``class_weights`` weighs the loss by inverse class frequency. ``config``
    overrides the model's defaults."""
    import torch
    from torch.utils.data import TensorDataset

    from deepseek.train import Trainer

    sequence = task_mode(model)
    torch.manual_seed(seed)
    y = labels(ticks, horizon, threshold, costs=costs, fee_bps=fee_bps)
    feats = batch_features(ticks)[:len(y)]
    tr, va, te = time_split(len(y), horizon, fractions)
    if len(y[tr]) < 10 * seq_len:
        raise FinanceError(f"{len(y[tr])} training ticks are too few for sequences of "
                           f"{seq_len}; give more ticks")
    x_tr, y_tr = feats[tr], y[tr]
    x_va, y_va = feats[va], y[va]
    mean = x_tr.mean(0)
    std = x_tr.std(0)
    std[std < 1e-6] = 1.0
    counts = np.bincount(y_tr, minlength=3)
    weight = torch.tensor(len(y_tr) / (3 * np.maximum(counts, 1)), dtype=torch.float32) \
        if class_weights else None
    log.info("training %s on %d ticks, validating on %d, testing on %d; train classes "
             "down/flat/up = %s", model, len(y_tr), len(y_va), te.stop - te.start,
             counts.tolist())

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

    best: dict[str, Any] = {"f1": -1.0, "state": None, "metrics": {}, "offsets": (0.0, 0.0)}

    def eval_fn(m: torch.nn.Module, data: Any) -> dict[str, float]:
        m.eval()
        with torch.no_grad():
            logits = m(data.tensors[0]).numpy().reshape(-1, 3)
        m.train()
        yv = data.tensors[1].numpy().reshape(-1)
        offsets = calibrate(logits, yv) if calibrate_offsets else (0.0, 0.0)
        res = {f"val_{k}": v for k, v in evaluate(shift(logits, offsets), yv).items()}
        if res["val_macro_f1"] > best["f1"]:
            best.update(f1=res["val_macro_f1"], state=copy.deepcopy(m.state_dict()),
                        metrics=res, offsets=offsets)
        return res

    trainer = Trainer(net, torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4),
                      loss_fn=loss_fn, step_fn=step_fn, accum_steps=accum_steps,
                      checkpoint_dir=checkpoint_dir, progress=progress, architecture=model,
                      config=cfg, device="cpu")
    history = trainer.fit(ds, epochs=epochs, batch_size=max(8, batch_size // seq_len)
                          if sequence else batch_size, val_data=val, eval_fn=eval_fn,
                          best_metric="val_macro_f1", mode="max")
    if best["state"] is not None:
        net.load_state_dict(best["state"])
    if calibrate_offsets:
        _fold_offsets(net, best["offsets"], model)
    net.eval()
    with torch.no_grad():
        if not sequence:
            logits = net(torch.from_numpy(feats[te])).numpy()
        else:  # one pass from the start of validation, state carried; keep the test rows
            run = net(torch.from_numpy(feats[va.start:te.stop])[None]).numpy()[0]
            logits = run[te.start - va.start:]
    metrics = skill(logits, y[te])
    metrics.update(train_ticks=float(len(y_tr)), val_ticks=float(len(y_va)),
                   test_ticks=float(te.stop - te.start), horizon=float(horizon))
    split = {"train": [tr.start, tr.stop], "validation": [va.start, va.stop],
             "test": [te.start, te.stop], "gap": horizon,
             "test_time_ns": [int(ticks["time_ns"][te.start]),
                              int(ticks["time_ns"][te.stop - 1])],
             "labels": {"horizon_ticks": horizon, "threshold": threshold, "costs": costs,
                        "fee_bps": fee_bps}}
    return TrainResult(net, model, cfg, metrics, history,
                       baselines=baselines(feats, y, horizon, tr, te, va),
                       validation=best["metrics"], split=split)


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
    import torch

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


CAPTURE_OPTIONS = ("symbol", "clock", "order", "levels", "top")


def load_ticks(source: str | Path, **options: Any) -> np.ndarray:
    """Ticks from any registered tick reader: ``deepseek.open(source, kind="ticks")`` (a CSV,
    a Binance capture, ``synthetic:?n=N&seed=S`` ...). Options left at None are not passed;
    capture options (symbol, clock, order, levels, top) given for a source that is not a
    capture are an error that says so."""
    from deepseek.readers import open as open_source
    from deepseek.readers import resolve

    opts = {k: v for k, v in options.items() if v is not None}
    if opts:
        name = resolve(str(source), "ticks").name
        allowed = {"binance": CAPTURE_OPTIONS, "ticks-csv": ("order",)}.get(name, ())
        wrong = sorted(set(opts) - set(allowed))
        if wrong:
            raise FinanceError(f"{source}: option(s) {', '.join(wrong)} do not apply to the "
                               f"{name} reader (options for it: {', '.join(allowed) or 'none'})")
    return open_source(str(source), kind="ticks", **opts)


FEATURES = FEATURE_NAMES
