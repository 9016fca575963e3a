"""The risk-model case of the tuner (pipeline ``core.tune-risk-model``).

Data: the Wisconsin diagnostic breast cancer set that ships inside scikit-learn (569 cases,
30 features computed from a digitised image of a fine-needle aspirate, 212 malignant), read
from the installed package: nothing is downloaded. The task is the risk of malignancy. The
cases are split once, stratified, into a development part (80 %) and a held-out test part
(20 %) that no search ever sees.

Model: an MLP (``width`` hidden units, ReLU, ``dropout``) on standardised features, trained
with AdamW (``lr``, ``weight_decay``) in mini-batches of ``batch_size`` through the core
Trainer for a fixed number of epochs.

Objective of a trial: the mean validation AUC of 3-fold stratified cross-validation on the
development part (epoch by epoch, so poor trials can be pruned). Reported: the held-out test
AUC of the defaults and of the tuned parameters, each a model trained on the whole
development part (averaged over three training seeds).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

#: the parameters a developer would start from, and the ones the tuner may change
DEFAULTS: dict[str, Any] = {"lr": 1e-3, "weight_decay": 0.0, "width": 32, "dropout": 0.0,
                            "batch_size": 32}
SPACE: dict[str, dict[str, Any]] = {
    "lr": {"type": "logfloat", "low": 1e-4, "high": 3e-2},
    "weight_decay": {"type": "logfloat", "low": 1e-6, "high": 1e-1},
    "width": {"type": "int", "low": 4, "high": 128},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128]},
}
EPOCHS = 25
SPLIT_SEED = 20261130


def load_data() -> tuple[np.ndarray, np.ndarray]:
    """Features (float32) and labels (1 = malignant) of the bundled breast cancer set."""
    from deepseek.extras import require

    require("tune", "the risk-model case")
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    return data.data.astype(np.float32), (data.target == 0).astype(np.float32)


def split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Development and held-out test parts, stratified, always the same."""
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=0.2, stratify=y, random_state=SPLIT_SEED)


def _build(n_in: int, width: int, dropout: float) -> Any:
    import torch

    return torch.nn.Sequential(torch.nn.Linear(n_in, int(width)), torch.nn.ReLU(),
                               torch.nn.Dropout(float(dropout)), torch.nn.Linear(int(width), 1))


def train_eval(x_tr: np.ndarray, y_tr: np.ndarray, x_va: np.ndarray, y_va: np.ndarray,
               params: dict[str, Any], seed: int = 0, epochs: int = EPOCHS,
               on_epoch: Any = None) -> float:
    """Train on one part, return the AUC on the other (after the last epoch).
    ``on_epoch(epoch, auc)`` sees the validation AUC after every epoch (for pruning)."""
    import torch
    from sklearn.metrics import roc_auc_score
    from torch.utils.data import TensorDataset

    from deepseek.train import Trainer

    torch.manual_seed(seed)
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-6
    xt = torch.from_numpy((x_tr - mean) / std)
    xv = torch.from_numpy((x_va - mean) / std)
    net = _build(x_tr.shape[1], params["width"], params["dropout"])
    opt = torch.optim.AdamW(net.parameters(), lr=float(params["lr"]),
                            weight_decay=float(params["weight_decay"]))
    loss = torch.nn.BCEWithLogitsLoss()

    def eval_fn(model: Any, _: Any) -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            scores = model(xv)[:, 0].numpy()
        model.train()
        return {"val_auc": float(roc_auc_score(y_va, scores))}

    callbacks = []
    if on_epoch is not None:
        callbacks.append(lambda trainer, logs: on_epoch(logs["epoch"], logs["val_auc"]))
    trainer = Trainer(net, opt, loss_fn=lambda out, t: loss(out[:, 0], t), device="cpu",
                      progress=False, callbacks=callbacks, distributed=False)
    history = trainer.fit(TensorDataset(xt, torch.from_numpy(y_tr)), epochs=epochs,
                          batch_size=int(params["batch_size"]), val_data=(xv, y_va),
                          eval_fn=eval_fn, best_metric="val_auc", mode="max")
    return float(history[-1]["val_auc"])


def cv_auc(x: np.ndarray, y: np.ndarray, params: dict[str, Any], folds: int = 3,
           trial: Any = None, epochs: int = EPOCHS) -> float:
    """Mean validation AUC over stratified folds of the development part. With an Optuna
    ``trial``, the running mean is reported after every epoch of the first fold and the
    trial is pruned when it trails the median of earlier trials."""
    from sklearn.model_selection import StratifiedKFold

    aucs = []
    for k, (tr, va) in enumerate(StratifiedKFold(folds, shuffle=True,
                                                 random_state=SPLIT_SEED).split(x, y)):
        report = None
        if trial is not None and k == 0:
            def report(epoch: int, auc: float) -> None:
                import optuna

                trial.report(auc, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch} (AUC {auc:.4f})")
        aucs.append(train_eval(x[tr], y[tr], x[va], y[va], params, seed=k, epochs=epochs,
                               on_epoch=report))
    return float(np.mean(aucs))


def held_out_auc(params: dict[str, Any], seeds: int = 3, epochs: int = EPOCHS) -> float:
    """The test AUC of ``params``: trained on the whole development part, averaged over
    ``seeds`` training seeds."""
    x, y = load_data()
    x_dev, x_test, y_dev, y_test = split(x, y)
    return float(np.mean([train_eval(x_dev, y_dev, x_test, y_test, params, seed=100 + s,
                                     epochs=epochs) for s in range(seeds)]))


def risk_model(input: str | None = None, out_dir: Path | None = None, quiet: bool = True,
               trial: Any = None, epochs: int = EPOCHS, folds: int = 3, **params: Any) -> Any:
    """Pipeline ``core.risk-model``: the cross-validated AUC of the risk model with
    ``params`` (the defaults for the rest): the objective the tuner optimises. ``epochs``
    and ``folds`` trade accuracy of the estimate for time (tests use small ones)."""
    from deepseek.report import Headline, Measure, PipelineResult

    _no_input(input)
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        from deepseek.errors import PipelineError

        raise PipelineError(f"core.risk-model: unknown parameter(s) {sorted(unknown)}; it "
                            f"takes {', '.join(DEFAULTS)}")
    full = {**DEFAULTS, **params}
    t0 = time.perf_counter()
    auc = cv_auc(*_dev(), full, folds=folds, trial=trial, epochs=epochs)
    return PipelineResult("core.risk-model", title="Core: the risk model, cross-validated",
                          metrics={"val_auc": Measure(auc, f"{folds}-fold CV AUC")},
                          timings={"seconds": Measure(time.perf_counter() - t0,
                                                      "cross-validation", "s")},
                          quality=Headline("3-fold CV AUC", auc))


def tune_risk_model(input: str | None = None, out_dir: Path = Path("."), quiet: bool = False,
                    trials: int = 16, sampler: str = "nsga2", seed: int = 0,
                    epochs: int = EPOCHS, folds: int = 3) -> Any:
    """Pipeline ``core.tune-risk-model``: tune ``core.risk-model`` with the genetic
    algorithm and report the held-out AUC of the defaults and of the tuned parameters."""
    from deepseek.report import Headline, Measure, PipelineResult, Table
    from deepseek.tune import TuneConfig, history_figure, tune

    _no_input(input)
    out_dir = Path(out_dir)
    config = TuneConfig.from_dict({
        "space": SPACE,
        "objective": {"pipeline": "core.risk-model", "metrics": {"val_auc": "maximize"},
                      "options": {"epochs": epochs, "folds": folds}},
        "sampler": {"name": sampler, "population_size": min(8, trials)} if sampler == "nsga2"
        else {"name": sampler},
        "trials": trials, "seed": seed, "pruner": "median"})
    t0 = time.perf_counter()
    res = tune(config, progress=False if quiet else None)
    t_tune = time.perf_counter() - t0
    tuned = {**DEFAULTS, **res.best_params}
    t0 = time.perf_counter()
    default_auc = held_out_auc(DEFAULTS, epochs=epochs)
    tuned_auc = held_out_auc(tuned, epochs=epochs)
    default_cv = cv_auc(*_dev(), DEFAULTS, folds=folds, epochs=epochs)
    t_eval = time.perf_counter() - t0
    figs = [history_figure(res, out_dir / "history.png", [f"validation AUC ({folds}-fold CV)"])]
    rows = [[k, _fmt(DEFAULTS[k]), _fmt(tuned[k])] for k in DEFAULTS]
    counts = res.counts()
    notes = [f"data: scikit-learn's bundled breast cancer set (569 cases, 30 features); "
             f"80 % development, 20 % held-out test that the search never sees; objective: "
             f"{folds}-fold CV AUC on the development part ({epochs} epochs); {trials} "
             f"trials of the {sampler} "
             f"sampler (seed {seed}), median pruning; held-out AUC averaged over 3 training "
             f"seeds; trials {counts}"]
    if tuned_auc <= default_auc:
        notes.append("the tuned parameters do not beat the defaults on the held-out test "
                     "set in this run")
    return PipelineResult(
        "core.tune-risk-model", title="Core: genetic-algorithm tuning of a risk model",
        metrics={"held_out_auc_defaults": Measure(default_auc, "held-out AUC, defaults"),
                 "held_out_auc_tuned": Measure(tuned_auc, "held-out AUC, tuned"),
                 "cv_auc_defaults": Measure(default_cv, f"{folds}-fold CV AUC, defaults"),
                 "cv_auc_tuned": Measure(res.best_value[0], f"{folds}-fold CV AUC, tuned"),
                 "trials": Measure(len(res.trials), "trials"),
                 "trials_pruned": Measure(counts.get("PRUNED", 0), "trials pruned")},
        timings={"tuning_seconds": Measure(t_tune, "tuning", "s"),
                 "held_out_evaluation_seconds": Measure(t_eval, "held-out evaluation", "s")},
        quality=Headline(f"held-out AUC tuned (defaults {default_auc:.4f})", tuned_auc,
                         target=default_auc),
        speed=Headline(f"tuning, {trials} trials", t_tune, "s", higher_is_better=False),
        tables=[Table("Parameters", ["parameter", "default", "tuned"], rows)],
        figures=figs, notes=notes)


def _no_input(input: str | None) -> None:
    if input is not None:
        from deepseek.errors import PipelineError

        raise PipelineError("the risk-model pipelines use the bundled breast cancer data; "
                            "they take no --input")


def _dev() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_data()
    x_dev, _, y_dev, _ = split(x, y)
    return x_dev, y_dev


def _fmt(v: Any) -> Any:
    return f"{v:.3g}" if isinstance(v, float) else v
