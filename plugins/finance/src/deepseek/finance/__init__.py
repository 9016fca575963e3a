"""deepseek-finance: a microsecond tick-to-decision inference path for trading models."""

from __future__ import annotations

__version__ = "0.1.0"

from importlib import import_module  # noqa: E402
from typing import Any  # noqa: E402

_LAZY = {
    "TICK_DTYPE": "deepseek.finance.ticks",
    "read_csv": "deepseek.finance.ticks",
    "read_binance": "deepseek.finance.ticks",
    "synthetic_ticks": "deepseek.finance.ticks",
    "StreamingFeatures": "deepseek.finance.features",
    "batch_features": "deepseek.finance.features",
    "FEATURE_NAMES": "deepseek.finance.features",
    "TickMLP": "deepseek.finance.models",
    "TickGRU": "deepseek.finance.models",
    "FastPath": "deepseek.finance.fastpath",
    "FeedServer": "deepseek.finance.feed",
    "train": "deepseek.finance.training",
    "FinanceError": "deepseek.finance.errors",
    "TickFileError": "deepseek.finance.errors",
    "FastPathError": "deepseek.finance.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'deepseek.finance' has no attribute {name!r}")
