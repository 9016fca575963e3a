"""Credit risk: the probability of default from any tabular CSV with a label column.

**Data** (:func:`read_table`): a CSV with a header; the label column holds 0/1 (or two
distinct values, the rarer one being the positive class unless ``positive=`` says). Every
other column is numeric when all its non-missing values parse as numbers (``5E+05`` and
``1,234`` quoted included), else categorical; ``categorical=`` forces columns that are
numbers-as-codes (``SEX``, ``EDUCATION``); ``drop=`` leaves columns out, and a column named
``id`` or holding a distinct value on every row is left out as an identifier (said so).
Missing values (empty, ``NA``, ``NaN``, ``?``) are allowed: numeric ones are imputed with the
training median and flagged, categorical ones are a category of their own; a category the
test rows hold and the training rows do not is the "unknown" category.

**Split**: stratified, train / validation / test = 60 / 20 / 20 %, with a fixed seed; the
test part is scored once, at the end, for every model alike.

**Models**: the project's MLP (PyTorch; the learning rate and the L2 penalty are its tuned
hyperparameters, with width, depth and dropout), early-stopped on validation AUC; and as
baselines in the same run, scikit-learn's logistic regression and histogram gradient
boosting with their defaults.

**Scores** (:func:`scores`): AUC, KS (the largest gap between the classes' score CDFs) and
Brier score, each with a stratified bootstrap 95 % interval.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.finance.errors import FinanceError

log = logging.getLogger(__name__)

MISSING = {"", "na", "nan", "null", "none", "?", "n/a", "#n/a"}
SPLIT_SEED = 20261202
#: the MLP's defaults (a developer's starting point) and the tuner's search space
MLP_DEFAULTS: dict[str, Any] = {"lr": 1e-3, "weight_decay": 1e-5, "width": 64, "depth": 2,
                                "dropout": 0.1}
MLP_SPACE: dict[str, dict[str, Any]] = {
    "lr": {"type": "logfloat", "low": 1e-4, "high": 3e-2},
    "weight_decay": {"type": "logfloat", "low": 1e-7, "high": 1e-1},
    "width": {"type": "logint", "low": 8, "high": 256},
    "depth": {"type": "int", "low": 1, "high": 3},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
}


class RiskDataError(FinanceError):
    """A credit table that cannot be used as given (the message names the file and column)."""


# ----------------------------------------------------------------------------- the table
@dataclass
class RiskTable:
    """A credit table: feature columns by kind, the 0/1 label, and what was left out."""

    path: str
    label: str
    numeric: dict[str, np.ndarray]          # float64 with NaN for missing
    categorical: dict[str, np.ndarray]      # object (str), "" for missing
    y: np.ndarray                           # int8, 1 = default
    positive: str = "1"
    dropped: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> RiskTable:
        """The rows ``idx`` of the table."""
        return RiskTable(self.path, self.label, {k: v[idx] for k, v in self.numeric.items()},
                         {k: v[idx] for k, v in self.categorical.items()}, self.y[idx],
                         self.positive, self.dropped)

    def describe(self) -> dict[str, Any]:
        """Rows, label, positive class, default rate and columns of the table."""
        return {"rows": len(self), "label": self.label, "positive": self.positive,
                "default_rate": round(float(self.y.mean()), 4),
                "numeric": list(self.numeric), "categorical": list(self.categorical),
                "dropped": self.dropped}


def _number(text: str) -> float | None:
    t = text.strip().replace(",", "")
    try:
        v = float(t)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def read_table(path: str | Path, label: str, *, categorical: tuple[str, ...] = (),
               drop: tuple[str, ...] = (), positive: str | None = None,
               keep: tuple[str, ...] = ()) -> RiskTable:
    """Read a credit CSV (see the module docstring); errors name the file, the column and,
    for bad labels, the line. ``keep`` names columns a fitted model needs: they are never left
    out as empty, constant or identifiers (a small scoring file may hold one value)."""
    p = Path(path)
    if not p.is_file():
        raise RiskDataError(f"{p}: no such file")
    text = p.read_text(encoding="utf-8-sig", errors="replace")
    rows = list(csv.reader(io.StringIO(text), _dialect(text)))
    if not rows or not rows[0]:
        raise RiskDataError(f"{p}: empty file")
    header = [h.strip() for h in rows[0]]
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    if not body:
        raise RiskDataError(f"{p}: a header and no rows")
    for i, r in enumerate(body, start=2):
        if len(r) != len(header):
            raise RiskDataError(f"{p}, line {i}: {len(r)} fields, the header has "
                                f"{len(header)}")
    if label not in header:
        raise RiskDataError(f"{p}: no label column {label!r}; columns: {', '.join(header)}")
    for name in (*categorical, *drop):
        if name not in header:
            raise RiskDataError(f"{p}: no column {name!r} (given to --categorical/--drop); "
                                f"columns: {', '.join(header)}")
    cols = {h: [r[j].strip() for r in body] for j, h in enumerate(header)}
    y, positive = _labels(p, label, cols[label], positive)
    table = RiskTable(str(p), label, {}, {}, y, positive)
    for name, values in cols.items():
        if name == label:
            continue
        if name in drop:
            table.dropped[name] = "--drop"
            continue
        _add_column(table, name, values, name in categorical, name in keep)
    if not table.numeric and not table.categorical:
        raise RiskDataError(f"{p}: no feature columns left besides the label {label!r}")
    return table


def _labels(p: Path, label: str, values: list[str], positive: str | None
            ) -> tuple[np.ndarray, str]:
    missing = [i + 2 for i, v in enumerate(values) if v.lower() in MISSING]
    if missing:
        raise RiskDataError(f"{p}: label {label!r} is missing on line(s) "
                            f"{missing[:5]}; every row needs its label")
    kinds = sorted(set(values))
    if len(kinds) != 2:
        raise RiskDataError(f"{p}: label {label!r} must take two values, it takes "
                            f"{len(kinds)} ({kinds[:6]})")
    if positive is None:
        positive = "1" if "1" in kinds else min(kinds, key=values.count)
    if positive not in kinds:
        raise RiskDataError(f"{p}: positive label {positive!r} not among {kinds}")
    return np.array([v == positive for v in values], dtype=np.int8), positive


def _add_column(table: RiskTable, name: str, values: list[str], force_cat: bool,
                keep: bool = False) -> None:
    present = [v for v in values if v.lower() not in MISSING]
    nums = [_number(v) for v in present]
    numeric = not force_cat and all(n is not None for n in nums)
    distinct = len(set(present))
    if not keep:
        why = ("empty" if not present else
               "identifier (a distinct value on every row)"
               if name.lower() == "id" or (distinct == len(values) and not numeric) else
               "constant" if distinct == 1 else None)
        if why:
            table.dropped[name] = why
            return
    if numeric:
        table.numeric[name] = np.array([_number(v) if v.lower() not in MISSING else np.nan
                                        for v in values], dtype=np.float64)
    else:
        table.categorical[name] = np.array([v if v.lower() not in MISSING else ""
                                            for v in values], dtype=object)


def split(table: RiskTable, seed: int = SPLIT_SEED) -> tuple[RiskTable, RiskTable, RiskTable]:
    """Stratified train / validation / test (60 / 20 / 20 %)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(table))
    if min(np.bincount(table.y, minlength=2)) < 5:
        raise RiskDataError(f"{table.path}: fewer than 5 rows of one class; a stratified "
                            "split needs more")
    rest, test = train_test_split(idx, test_size=0.2, stratify=table.y, random_state=seed)
    train, val = train_test_split(rest, test_size=0.25, stratify=table.y[rest],
                                  random_state=seed + 1)
    return table.subset(train), table.subset(val), table.subset(test)


class Encoder:
    """Numeric columns: training median for the missing, a missing flag where any is, then
    standardised; categorical: one-hot of the training categories plus "unknown"."""

    def fit(self, t: RiskTable) -> Encoder:
        """Learn the medians, means, spreads and categories of ``t``'s columns; returns the encoder.
        """
        self.num = {}
        for k, v in t.numeric.items():
            med = float(np.nanmedian(v)) if np.isfinite(v).any() else 0.0
            filled = np.where(np.isnan(v), med, v)
            sd = float(filled.std()) or 1.0
            self.num[k] = (med, float(filled.mean()), sd, bool(np.isnan(v).any()))
        self.cat = {k: sorted(set(v.tolist())) for k, v in t.categorical.items()}
        return self

    def to_dict(self) -> dict[str, Any]:
        """The encoder as JSON-ready data (stored beside the model)."""
        return {"numeric": {k: list(v) for k, v in self.num.items()}, "categorical": self.cat}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Encoder:
        """An encoder from :meth:`to_dict`'s data."""
        enc = cls()
        enc.num = {k: tuple(v) for k, v in d["numeric"].items()}
        enc.cat = {k: list(v) for k, v in d["categorical"].items()}
        return enc

    def check(self, t: RiskTable) -> None:
        """A table must hold the columns the encoder was fitted on, of the same kinds."""
        for kind, cols, have in (("numeric", self.num, t.numeric),
                                 ("categorical", self.cat, t.categorical)):
            missing = [c for c in cols if c not in have]
            if missing:
                raise RiskDataError(f"{t.path}: the model needs {kind} column(s) "
                                    f"{', '.join(missing)}; the file has numeric "
                                    f"{sorted(t.numeric)} and categorical "
                                    f"{sorted(t.categorical)}")

    def transform(self, t: RiskTable) -> np.ndarray:
        """The model's input matrix of ``t``: standardised numbers (missing ones filled and flagged)
        and one-hot categories.
        """
        parts = []
        for k, (med, mean, sd, flag) in self.num.items():
            v = t.numeric[k]
            parts.append(((np.where(np.isnan(v), med, v) - mean) / sd)[:, None])
            if flag:
                parts.append(np.isnan(v).astype(np.float64)[:, None])
        for k, cats in self.cat.items():
            index = {c: i for i, c in enumerate(cats)}
            codes = np.array([index.get(c, len(cats)) for c in t.categorical[k]])
            parts.append(np.eye(len(cats) + 1)[codes])
        return np.hstack(parts).astype(np.float32)


# ----------------------------------------------------------------------------- scores
def ks_statistic(y: np.ndarray, p: np.ndarray) -> float:
    """The largest distance between the positives' and negatives' score CDFs."""
    order = np.argsort(p, kind="mergesort")
    ys = y[order]
    pos = np.cumsum(ys) / max(ys.sum(), 1)
    neg = np.cumsum(1 - ys) / max((1 - ys).sum(), 1)
    return float(np.max(np.abs(pos - neg)))


def scores(y: np.ndarray, p: np.ndarray, bootstrap: int = 1000, seed: int = 0
           ) -> dict[str, Any]:
    """AUC, KS and Brier score with stratified bootstrap 95 % intervals."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    def point(yy: np.ndarray, pp: np.ndarray) -> tuple[float, float, float]:
        return (float(roc_auc_score(yy, pp)), ks_statistic(yy, pp),
                float(brier_score_loss(yy, pp)))

    est = point(y, p)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    draws = []
    for _ in range(bootstrap):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        draws.append(point(y[idx], p[idx]))
    out: dict[str, Any] = {}
    for i, name in enumerate(("auc", "ks", "brier")):
        out[name] = round(est[i], 5)
        out[f"{name}_ci95"] = None  # no draws, no interval
        if draws:
            lo, hi = np.percentile([d[i] for d in draws], [2.5, 97.5])
            out[f"{name}_ci95"] = [round(float(lo), 5), round(float(hi), 5)]
    return out


# ----------------------------------------------------------------------------- models
def build_mlp(n_features: int = 32, width: int = 64, depth: int = 2,
              dropout: float = 0.1) -> Any:
    """The credit MLP (registered as ``credit-mlp``): ``depth`` ReLU layers of ``width``
    with dropout, one logit of default."""
    import torch

    layers: list[Any] = []
    n_in = n_features
    for _ in range(depth):
        layers += [torch.nn.Linear(n_in, width), torch.nn.ReLU(), torch.nn.Dropout(dropout)]
        n_in = width
    layers.append(torch.nn.Linear(n_in, 1))
    return torch.nn.Sequential(*layers)


def train_mlp(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
              params: dict[str, Any] | None = None, *, epochs: int = 30, batch_size: int = 256,
              seed: int = 0, trial: Any = None) -> tuple[Any, float]:
    """The MLP trained with Adam (``weight_decay``: an L2 penalty) on class-balanced batches,
    kept at its best validation AUC (early stopping after 5 epochs without progress).
    Returns the module and that AUC; ``trial`` (Optuna) is told each epoch's AUC."""
    import torch
    from sklearn.metrics import roc_auc_score

    p = {**MLP_DEFAULTS, **(params or {})}
    torch.manual_seed(seed)
    net = build_mlp(x.shape[1], int(p["width"]), int(p["depth"]), float(p["dropout"]))
    opt = torch.optim.Adam(net.parameters(), lr=float(p["lr"]),
                           weight_decay=float(p["weight_decay"]))
    pos_weight = torch.tensor([(1 - y.mean()) / max(y.mean(), 1e-6)], dtype=torch.float32)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))
    xv = torch.from_numpy(x_val)
    gen = torch.Generator().manual_seed(seed)
    best, best_state, stale = -1.0, None, 0
    for epoch in range(epochs):
        net.train()
        for idx in torch.randperm(len(xt), generator=gen).split(batch_size):
            opt.zero_grad()
            loss = loss_fn(net(xt[idx]).squeeze(1), yt[idx])
            loss.backward()
            opt.step()
        net.eval()
        with torch.inference_mode():
            auc = float(roc_auc_score(y_val, net(xv).squeeze(1).numpy()))
        if not math.isfinite(auc):
            break
        if auc > best + 1e-4:
            best, stale = auc, 0
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        else:
            stale += 1
        if trial is not None:
            trial.report(auc, epoch)
            if trial.should_prune():
                import optuna

                raise optuna.TrialPruned()
        if stale >= 5:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    return net.eval(), best


def mlp_probabilities(net: Any, x: np.ndarray) -> np.ndarray:
    """Calibrated-looking probabilities are not claimed: the sigmoid of the logit, which the
    class-balanced loss shifts; the Brier score shows it."""
    import torch

    with torch.inference_mode():
        return torch.sigmoid(net(torch.from_numpy(x)).squeeze(1)).numpy().astype(np.float64)


def baselines(x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Logistic regression and histogram gradient boosting with scikit-learn's defaults
    (the regression's iteration cap raised so that it converges)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    return {"logistic regression": LogisticRegression(max_iter=2000).fit(x, y),
            "gradient boosting": HistGradientBoostingClassifier(random_state=seed).fit(x, y)}


@dataclass
class RiskReport:
    """One run: the data, each model's test scores, the tuned parameters, timings; and the
    test labels with each model's test probabilities (for figures)."""

    data: dict[str, Any]
    test: dict[str, dict[str, Any]]
    params: dict[str, dict[str, Any]]
    seconds: dict[str, float]
    tuning: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    probabilities: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    y_test: np.ndarray | None = field(default=None, repr=False)
    model: Any = field(default=None, repr=False)
    encoder: Encoder | None = field(default=None, repr=False)
    table: RiskTable | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {"data": self.data, "test": self.test, "params": self.params,
                "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
                "tuning": self.tuning, "notes": self.notes}


def verdicts(test: dict[str, dict[str, Any]]) -> list[str]:
    """Plain sentences on who wins on test AUC (intervals that overlap are said to)."""
    out = []
    mlp = test.get("MLP, tuned") or test.get("MLP, defaults")
    name = "tuned MLP" if "MLP, tuned" in test else "MLP"
    for base in ("logistic regression", "gradient boosting"):
        if mlp is None or base not in test:
            continue
        b = test[base]
        m_ci, b_ci = mlp["auc_ci95"], b["auc_ci95"]
        overlap = bool(m_ci and b_ci and m_ci[0] <= b_ci[1] and b_ci[0] <= m_ci[1])
        word = "beats" if mlp["auc"] > b["auc"] else "does not beat"
        out.append(f"the {name} {word} {base} on test AUC ({mlp['auc']:.4f} against "
                   f"{b['auc']:.4f}{'; the intervals overlap' if overlap else ''})")
    if "MLP, tuned" in test and "MLP, defaults" in test:
        t, d = test["MLP, tuned"]["auc"], test["MLP, defaults"]["auc"]
        out.append(f"tuning {'lifts' if t > d else 'does not lift'} the MLP's test AUC "
                   f"({d:.4f} -> {t:.4f})")
    return out


def run(table: RiskTable, *, tune_trials: int = 0, sampler: str = "tpe", seed: int = 0,
        epochs: int = 30, bootstrap: int = 1000, progress: bool | None = None,
        mlp_params: dict[str, Any] | None = None) -> RiskReport:
    """Split, encode, train the MLP with its defaults updated by ``mlp_params`` (and tuned,
    with ``tune_trials``) and the two baselines, then score each once on the test part."""
    train, val, test = split(table)
    enc = Encoder().fit(train)
    xtr, xva, xte = enc.transform(train), enc.transform(val), enc.transform(test)
    t: dict[str, float] = {}
    probs: dict[str, np.ndarray] = {}
    start = {**MLP_DEFAULTS, **(mlp_params or {})}
    params: dict[str, dict[str, Any]] = {"MLP, defaults": start}
    t0 = time.perf_counter()
    net, _ = train_mlp(xtr, train.y, xva, val.y, start, epochs=epochs, seed=seed)
    t["MLP, defaults"] = time.perf_counter() - t0
    probs["MLP, defaults"] = mlp_probabilities(net, xte)
    tuning = None
    if tune_trials:
        t0 = time.perf_counter()
        best, tuning = tune_mlp(xtr, train.y, xva, val.y, trials=tune_trials, sampler=sampler,
                                seed=seed, epochs=epochs, progress=progress)
        net, _ = train_mlp(xtr, train.y, xva, val.y, best, epochs=epochs, seed=seed)
        t["MLP, tuned"] = time.perf_counter() - t0
        params["MLP, tuned"] = best
        probs["MLP, tuned"] = mlp_probabilities(net, xte)
    for name, model in baselines(xtr, train.y, seed).items():
        t0 = time.perf_counter()
        probs[name] = model.predict_proba(xte)[:, 1]
        t[name] = time.perf_counter() - t0
        params[name] = {"defaults": "scikit-learn's"}
    results = {name: scores(test.y, p, bootstrap, seed) for name, p in probs.items()}
    data = {**table.describe(), "features_after_encoding": int(xtr.shape[1]),
            "split": {"train": len(train), "validation": len(val), "test": len(test)}}
    return RiskReport(data, results, params, t, tuning, verdicts(results), probs, test.y,
                      net, enc, table)


def tune_mlp(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *,
             trials: int, sampler: str = "tpe", seed: int = 0, epochs: int = 30,
             progress: bool | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Search the MLP's hyperparameters on validation AUC with ``deepseek.tune``; returns
    the best parameters and what the search did."""
    from deepseek.tune import TuneConfig, tune

    config = TuneConfig.from_dict({
        "space": MLP_SPACE, "objective": {"metrics": {"val_auc": "maximize"}},
        "sampler": {"name": sampler}, "trials": trials, "seed": seed, "pruner": "median"})

    def objective(params: dict[str, Any], trial: Any) -> float:
        return train_mlp(x, y, x_val, y_val, params, epochs=epochs, seed=seed, trial=trial)[1]

    res = tune(config, objective, progress=progress)
    return {**MLP_DEFAULTS, **res.best_params}, {
        "sampler": sampler, "trials": trials, "best_validation_auc": res.best_value[0],
        "states": res.counts(),
        "repeats": sum(1 for t in res.trials if t.get("repeat_of") is not None)}


# ----------------------------------------------------------------------------- files
def save(path: str | Path, net: Any, enc: Encoder, params: dict[str, Any], table: RiskTable,
         test: dict[str, Any] | None = None) -> Path:
    """The MLP as safetensors + JSON (architecture ``credit-mlp``), with its encoder, label and
    parameters, so :func:`load` (and ModelLoader) read it back."""
    from deepseek.loader import save_model

    n_in = int(next(iter(net.parameters())).shape[1])
    config = {"n_features": n_in, "width": int(params["width"]), "depth": int(params["depth"]),
              "dropout": float(params["dropout"])}
    return save_model(net, Path(path), architecture="credit-mlp", config=config,
                      extra={"encoder": enc.to_dict(), "label": table.label,
                             "positive": table.positive, "params": params,
                             "trained_on": table.path, "test": test})


def load(path: str | Path) -> tuple[Any, Encoder, dict[str, Any]]:
    """A model written by :func:`save`: the module, its encoder and what was stored."""
    from deepseek.loader import ModelLoader, read_model_extra

    extra = read_model_extra(path)
    if "encoder" not in extra:
        raise RiskDataError(f"{path}: not a credit model (no encoder stored); write one "
                            "with `deepseek finance risk train`")
    loaded = ModelLoader.load(path, device="cpu")
    return loaded.module, Encoder.from_dict(extra["encoder"]), extra


# ----------------------------------------------------------------------------- synthetic
SYNTHETIC_CATEGORICAL = ("SEX", "EDUCATION", "MARRIAGE")


def synthetic_credit(path: str | Path, n: int = 4000, seed: int = 0) -> Path:
    """Write a credit-card table shaped like the UCI "default of credit card clients" set
    (limit, sex, education, marriage, age, three months of repayment status, bills and
    payments; label ``DEFAULT``, about 22 % positive): a made-up population whose default
    risk follows late payments, credit utilisation and their interaction, with missing
    values and E-notation as real files have them. For the demo and the tests only: no
    finding on it says anything about real credit."""
    rng = np.random.default_rng(seed)
    limit = np.round(np.exp(rng.normal(11.6, 0.8, n)), -4).clip(10_000, 1_000_000)
    age = rng.integers(21, 76, n)
    sex = rng.integers(1, 3, n)
    edu = rng.choice([1, 2, 3, 4, 5], n, p=[0.35, 0.45, 0.15, 0.03, 0.02])
    mar = rng.choice([1, 2, 3], n, p=[0.45, 0.53, 0.02])
    risk = rng.normal(0, 1, n)  # a hidden propensity that shows in the repayments
    pay = np.stack([np.clip(np.round(risk * 1.3 + rng.normal(-0.6, 1.0, n)), -2, 8)
                    for _ in range(3)], axis=1).astype(int)
    util = np.clip(rng.beta(2, 3, n) + 0.15 * risk, 0, 1.3)
    bill = np.round(limit[:, None] * util[:, None] * rng.uniform(0.8, 1.1, (n, 3)))
    paid = np.round(bill * np.clip(rng.beta(2, 5, (n, 3)) - 0.05 * risk[:, None], 0, 1))
    logit = (-1.9 + 0.55 * np.maximum(pay[:, 0], 0) + 0.25 * np.maximum(pay[:, 1], 0)
             + 1.1 * util - 1.5 * paid[:, 0] / np.maximum(bill[:, 0], 1)
             + 0.9 * ((pay[:, 0] >= 2) & (util > 0.8)) + 0.25 * (edu == 3)
             - 0.012 * (age - 35) + 0.35 * risk)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", "LIMIT_BAL", *SYNTHETIC_CATEGORICAL, "AGE", "PAY_0", "PAY_2",
                    "PAY_3", "BILL_AMT1", "BILL_AMT2", "BILL_AMT3", "PAY_AMT1", "PAY_AMT2",
                    "PAY_AMT3", "DEFAULT"])
        for i in range(n):
            lim = f"{limit[i]:.0E}" if i % 17 == 0 else f"{limit[i]:.0f}"  # 5E+05, as found
            e = "" if i % 41 == 0 else str(edu[i])
            a = "" if i % 53 == 0 else str(age[i])
            w.writerow([i + 1, lim, sex[i], e, mar[i], a, *pay[i], *bill[i].astype(int),
                        *paid[i].astype(int), y[i]])
    return path


def _dialect(text: str) -> Any:
    """Comma, semicolon or tab, as the file's first lines show (comma when unclear)."""
    try:
        return csv.Sniffer().sniff(text[:8192], delimiters=",;\t")
    except csv.Error:
        return csv.excel


def read_header(path: str | Path) -> list[str]:
    """The column names of a CSV (its first row)."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        head = f.read(8192)
    return [h.strip() for h in next(csv.reader(io.StringIO(head), _dialect(head)), [])]


def guess_label(path: str | Path) -> str:
    """The label column of a credit CSV when none is named: a column called default, label,
    target, class, bad or y (any case); else an error that asks for it."""
    header = read_header(path)
    for want in ("default", "default.payment.next.month", "label", "target", "class", "bad",
                 "y"):
        for h in header:
            if h.strip().lower() == want:
                return h.strip()
    raise RiskDataError(f"{path}: which column is the label? none is called default, "
                        f"label, target, class, bad or y; give it with --label (columns: "
                        f"{', '.join(h.strip() for h in header)})")
