"""Metrics of the finance plugin (registered): classification quality of tick models.

``tick-classification`` scores predictions of the mid-price move (class 0 down, 1 flat, 2 up)
against labels: accuracy, macro F1, the directional hit rate (of the up/down calls, the share
whose label is that direction) and the share of ticks called, and the majority-class
baseline on the same labels, so a model's figure always stands next to the figure of the
simplest rule. :func:`skill` gives the same without the baseline.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepseek.finance.errors import FinanceError

N_CLASSES = 3


def _classes(predictions: Any, n: int) -> np.ndarray:
    p = np.asarray(predictions)
    if p.ndim == 2:
        if p.shape[1] != N_CLASSES:
            raise FinanceError(f"predictions have {p.shape[1]} columns; expected {N_CLASSES} "
                               "class scores (down, flat, up) or one class index per row")
        return p.argmax(-1)
    if p.ndim != 1:
        raise FinanceError(f"predictions of shape {p.shape}: give (N, 3) scores or (N,) classes")
    if not np.all(np.isin(p, np.arange(N_CLASSES))):
        raise FinanceError("class indices must be 0 (down), 1 (flat) or 2 (up)")
    return p.astype(np.int64)


def macro_f1_counts(pred: np.ndarray, y: np.ndarray) -> float:
    """Macro F1 of class indices (no checks: for inner loops over valid arrays)."""
    cm = np.bincount(y * N_CLASSES + pred, minlength=N_CLASSES * N_CLASSES).reshape(
        N_CLASSES, N_CLASSES)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1)
    return float(np.mean(np.where(tp > 0, 2 * tp / np.maximum(denom, 1), 0.0)))


def skill(predictions: Any, references: Any) -> dict[str, float]:
    """Accuracy, macro F1, directional hit rate and calls. ``predictions``: (N, 3) class
    scores (logits) or (N,) class indices; ``references``: (N,) labels 0/1/2. The hit rate
    is NaN when nothing is called up or down."""
    y = np.asarray(references)
    if y.ndim != 1:
        raise FinanceError(f"labels must be one class per row, got shape {y.shape}")
    if not np.all(np.isin(y, np.arange(N_CLASSES))):
        raise FinanceError("labels must be 0 (down), 1 (flat) or 2 (up)")
    y = y.astype(np.int64)
    pred = _classes(predictions, len(y))
    if len(pred) != len(y):
        raise FinanceError(f"{len(pred)} predictions for {len(y)} labels")
    if len(y) == 0:
        raise FinanceError("no labels to score")
    acc = float((pred == y).mean())
    f1s = []
    for c in range(N_CLASSES):
        tp = float(((pred == c) & (y == c)).sum())
        fp = float(((pred == c) & (y != c)).sum())
        fn = float(((pred != c) & (y == c)).sum())
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    called = pred != 1
    n_called = int(called.sum())
    hit = float((pred[called] == y[called]).mean()) if n_called else float("nan")
    return {"accuracy": acc, "macro_f1": float(np.mean(f1s)), "hit_rate": hit,
            "calls": n_called / len(y)}


def classification(predictions: Any, references: Any) -> dict[str, float]:
    """:func:`skill` plus the majority-class baseline of the same labels."""
    out = skill(predictions, references)
    y = np.asarray(references).astype(np.int64)
    counts = np.bincount(y, minlength=N_CLASSES)
    share = counts.max() / len(y)
    out["majority_baseline"] = float(share)
    # always predicting the majority class: F1 of that class, 0 for the others
    out["majority_baseline_macro_f1"] = float(2 * share / (1 + share) / N_CLASSES)
    return out
