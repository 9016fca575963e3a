"""Decision sources for the backtester and walk-forward evaluation.

A decision source turns ticks into one decision per tick (-1 down, 0 flat, +1 up), each made
on its tick with only the ticks before it:

* :func:`model_decisions` -- a tick model (registered name, model file, or module) compiled
  to the fast path and run over the ticks in one compiled loop;
* :func:`imbalance_decisions` -- the queue-imbalance rule (up above +theta, down below
  -theta), the simple baseline every model is shown beside.

:func:`walk_forward` cuts the ticks into ``folds + 1`` consecutive windows, trains a model on
window k (its own time split picks the epoch), and backtests it on window k + 1, the features
warmed up on the end of window k (the past, never the future); the imbalance rule, its
threshold fitted on window k, is backtested on the same span. No fold sees its future: every
training tick precedes every tick it is tested on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepseek.finance.backtest import BacktestConfig, BacktestResult, backtest
from deepseek.finance.errors import FinanceError

log = logging.getLogger(__name__)

WARMUP_TICKS = 2_000


def fast_path(model: Any, trust_pickle: bool = False) -> Any:
    """A :class:`FastPath` for a registered model name, a model file, or a module.

    A registered tick model and a ``.safetensors`` file are read with numpy alone (no
    PyTorch: the edge install); other files load through the model loader."""
    from pathlib import Path

    from deepseek.finance.fastpath import FastPath

    if isinstance(model, (str, Path)):
        from deepseek.plugins import models

        registry = models()
        if str(model) in registry and not Path(model).exists():
            entry = registry.entry(str(model))
            weights = entry.meta.get("weights")
            if str(model) in ("tick-mlp", "tick-gru") and weights:
                return FastPath.from_file(weights)
        elif Path(model).suffix == ".safetensors" and Path(model).is_file():
            return FastPath.from_file(model)
        from deepseek.loader import ModelLoader

        model = ModelLoader.load(str(model), device="cpu", trust_pickle=trust_pickle)
    return FastPath.from_model(model)


def model_decisions(model: Any, ticks: np.ndarray, warmup: np.ndarray | None = None) -> np.ndarray:
    """One decision per tick of ``ticks`` from ``model``'s fast path (fresh state, first fed
    the ``warmup`` ticks, whose decisions are dropped). -2 marks a tick whose features or
    logits were not finite (the backtester counts it and stays flat)."""
    fp = model if hasattr(model, "decide") else fast_path(model)
    fp.reset()
    if warmup is not None and len(warmup):
        fp.decide(warmup)
    return fp.decide(ticks)


def imbalance_decisions(ticks: np.ndarray, theta: float) -> np.ndarray:
    """The queue-imbalance rule: +1 where (bid_size - ask_size) / (bid_size + ask_size) >
    theta, -1 below -theta, else 0."""
    from deepseek.finance.training import _imbalance_rule  # the rule training fits

    b, a = ticks["bid_size"], ticks["ask_size"]
    tot = b + a
    imb = np.divide(b - a, tot, out=np.zeros(len(ticks)), where=tot > 0)
    return (_imbalance_rule(imb, theta) - 1).astype(np.int64)


def windows(n: int, folds: int, min_window: int = 2_000) -> list[tuple[slice, slice]]:
    """(train, test) slices of ``folds`` walk-forward folds over ``n`` ticks: ``folds + 1``
    equal consecutive windows, fold k trains on window k and tests on window k + 1."""
    if folds < 1:
        raise FinanceError(f"folds={folds}: give at least 1")
    w = n // (folds + 1)
    if w < min_window:
        raise FinanceError(f"{n} ticks make windows of {w} ticks for {folds} fold(s); give at "
                           f"least {min_window * (folds + 1)} ticks or fewer folds")
    return [(slice(k * w, (k + 1) * w), slice((k + 1) * w, (k + 2) * w)) for k in range(folds)]


@dataclass
class Fold:
    """One walk-forward fold: the training and test windows, as rows and as times."""
    train: tuple[int, int]
    test: tuple[int, int]
    train_time_ns: tuple[int, int]
    test_time_ns: tuple[int, int]
    skill: dict[str, float]
    baseline_theta: float
    model: Any = None
    results: dict[str, dict[str, BacktestResult]] = field(default_factory=dict)


@dataclass
class WalkForward:
    """Folds, and per strategy (``model``, ``imbalance``) and latency setting (``zero``,
    ``configured``) the backtests of every fold."""

    folds: list[Fold]
    configs: dict[str, BacktestConfig]
    model: str

    def joined(self, strategy: str, setting: str) -> BacktestResult:
        """The folds' runs joined in time: each fold starts flat and its P&L adds to the
        equity the folds before it ended with; fills and counters add up."""
        runs = [f.results[strategy][setting] for f in self.folds]
        capital = runs[0].capital
        eqs, carry = [], 0.0
        counters: dict[str, int] = {}
        for r in runs:
            eqs.append(r.equity - r.capital + capital + carry)
            carry += float(r.equity[-1] - r.capital)
            for k, v in r.counters.items():
                if k != "halted_ns":
                    counters[k] = counters.get(k, 0) + v
        return BacktestResult(np.concatenate([r.time_ns for r in runs]), np.concatenate(eqs),
                              np.concatenate([r.position for r in runs]),
                              np.concatenate([r.fills for r in runs]), counters,
                              self.configs[setting], capital)

    def metrics(self, strategy: str, setting: str,
                period_s: float | str | None = "auto") -> dict[str, Any]:
        """Performance of ``strategy`` at ``setting`` over the joined test windows."""
        return self.joined(strategy, setting).performance(period_s)

    def table(self, model_label: str, latency_label: str,
              period_s: float | str | None = "auto") -> dict[str, dict[str, Any]]:
        """Metrics of the model and the imbalance rule at zero and at the configured
        latency, keyed ``"label|latency"`` (the rows of the reports)."""
        return {f"{label}|{lat}": self.metrics(strat, setting, period_s)
                for strat, label in (("model", model_label), ("imbalance", "imbalance rule"))
                for setting, lat in (("zero", "0 µs"), ("configured", latency_label))}


def walk_forward(ticks: np.ndarray, *, folds: int = 3, model: str = "tick-mlp",
                 config: BacktestConfig | None = None, epochs: int = 3, horizon: int = 10,
                 seed: int = 0, progress: bool | None = False, **train_options: Any
                 ) -> WalkForward:
    """Train on each window and backtest on the next, at zero latency and at ``config``'s
    (its fees and order type in both), for the model and the imbalance baseline.

    By default the model learns cost-aware labels (:func:`deepseek.finance.training.labels`
    with ``costs=True``): an up or down label needs a move that repays the spread and, for
    market orders, the taker fee both ways, so its calls are trades worth making;
    ``train_options`` are passed to :func:`deepseek.finance.training.train`."""
    from deepseek.finance.backtest import check_ticks
    from deepseek.finance.training import train

    check_ticks(ticks)
    cfg = config or BacktestConfig()
    configs = {"zero": cfg.without_latency(), "configured": cfg}
    train_options.setdefault("costs", True)
    train_options.setdefault("fee_bps", cfg.taker_fee_bps if cfg.order_type == "market"
                             else max(cfg.maker_fee_bps, 0.0))
    out: list[Fold] = []
    for k, (tr, te) in enumerate(windows(len(ticks), folds)):
        log.info("fold %d/%d: training on ticks %d-%d, testing on %d-%d", k + 1, folds,
                 tr.start, tr.stop, te.start, te.stop)
        res = train(ticks[tr], model, horizon=horizon, epochs=epochs, seed=seed + k,
                    progress=progress, **train_options)
        theta = float(res.baselines["queue_imbalance"]["theta"])
        test = ticks[te]
        warm = ticks[max(tr.start, te.start - WARMUP_TICKS):te.start]
        decisions = {"model": model_decisions(res.model, test, warm),
                     "imbalance": imbalance_decisions(test, theta)}
        fold = Fold((tr.start, tr.stop), (te.start, te.stop),
                    (int(ticks["time_ns"][tr.start]), int(ticks["time_ns"][tr.stop - 1])),
                    (int(test["time_ns"][0]), int(test["time_ns"][-1])),
                    dict(res.metrics), theta, res.model)
        for name, dec in decisions.items():
            fold.results[name] = {s: backtest(test, dec, c) for s, c in configs.items()}
        out.append(fold)
    return WalkForward(out, configs, model)
