"""Evaluation through the metric registry: ``deepseek.evaluate`` and ``deepseek evaluate``.

A metric is registered as ``metric(predictions, references, **options) -> dict``. For
``deepseek evaluate METRIC --pred P --ref R`` it may also register
``load_files(pred_path, ref_path) -> (predictions, references)`` that reads its
domain's files (LUNA16 CSVs, event JSON lines + truth CSV); without one, both files are read
as numeric arrays by :func:`load_array` (``.npy``, ``.npz``, ``.csv``/``.tsv``/``.txt``,
``.json``, ``.jsonl``).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.errors import DeepSeekError


class MetricError(DeepSeekError):
    """A metric could not be computed from the given predictions and references."""


def load_array(path: str | Path) -> np.ndarray:
    """A numeric array from ``.npy``, ``.npz`` (one array), ``.csv``/``.tsv``/``.txt`` (a
    header row is skipped), ``.json`` (a list, or ``{"data": list}``) or ``.jsonl``. A file
    without data (a header alone, an empty list) is an error."""
    arr = _load_array(Path(path))
    if arr.size == 0:
        raise MetricError(f"{path}: holds no data (a header alone, or an empty list); give "
                          "one value or row per item")
    return arr


def _load_array(p: Path) -> np.ndarray:
    if not p.is_file():
        raise MetricError(f"{p}: no such file")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(p, allow_pickle=False)
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                if len(z.files) != 1:
                    raise MetricError(f"{p}: holds {len(z.files)} arrays ({z.files}); save one")
                return z[z.files[0]]
        if suffix in (".json", ".jsonl"):
            text = p.read_text()
            data = ([json.loads(line) for line in text.splitlines() if line.strip()]
                    if suffix == ".jsonl" else json.loads(text))
            if isinstance(data, dict):
                if "data" not in data:
                    raise MetricError(f"{p}: a JSON object needs a 'data' list")
                data = data["data"]
            return np.asarray(data, dtype=np.float64)
        if suffix in (".csv", ".tsv", ".txt"):
            return _read_numeric_table(p)
    except (ValueError, json.JSONDecodeError) as exc:
        raise MetricError(f"{p}: not a numeric table ({exc})") from exc
    raise MetricError(f"{p}: unsupported file type {suffix!r}; use .npy, .npz, .csv, .tsv, "
                      ".txt, .json or .jsonl")


def _read_numeric_table(p: Path) -> np.ndarray:
    text = p.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark or not
    dialect = "excel-tab" if p.suffix.lower() == ".tsv" else "excel"
    rows = [r for r in csv.reader(io.StringIO(text), dialect) if any(c.strip() for c in r)]
    if p.suffix.lower() == ".txt" and rows and len(rows[0]) == 1 and " " in rows[0][0].strip():
        rows = [r[0].split() for r in rows]
    if not rows:
        raise MetricError(f"{p}: the file is empty")
    start = 0
    try:
        [float(c) for c in rows[0]]
    except ValueError:
        start = 1  # a header row
    out = []
    width = len(rows[start]) if len(rows) > start else 0
    for i, r in enumerate(rows[start:], start + 1):
        if len(r) != width:
            raise MetricError(f"{p}: line {i} has {len(r)} columns, the first data line "
                              f"{width}")
        try:
            out.append([float(c) for c in r])
        except ValueError:
            raise MetricError(f"{p}: line {i} is not numeric: {r}") from None
    arr = np.asarray(out, dtype=np.float64)
    return arr[:, 0] if arr.ndim == 2 and arr.shape[1] == 1 else arr


def evaluate(metric: str, predictions: Any, references: Any, **options: Any) -> dict[str, Any]:
    """Run registered metric ``metric`` and check that it returned a dict."""
    from deepseek.plugins import metrics

    entry = metrics().entry(metric)
    result = entry.obj(predictions, references, **options)
    if not isinstance(result, dict):
        raise MetricError(f"metric {metric!r} returned {type(result).__name__}, not a dict "
                          f"(a bug in plugin {entry.plugin})")
    return result


def evaluate_files(metric: str, pred_path: str | Path, ref_path: str | Path,
                   **options: Any) -> dict[str, Any]:
    """Read prediction and reference files the way ``metric`` declares, then run it."""
    from deepseek.plugins import metrics

    entry = metrics().entry(metric)
    loader = entry.meta.get("load_files")
    for p in (pred_path, ref_path):
        if not Path(p).exists():
            raise MetricError(f"{p}: no such file")
    if loader is not None:
        pred, ref = loader(Path(pred_path), Path(ref_path))
    else:
        pred, ref = load_array(pred_path), load_array(ref_path)
    return evaluate(metric, pred, ref, **options)
