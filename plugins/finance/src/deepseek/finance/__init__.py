"""deepseek-finance: a microsecond tick-to-decision inference path for trading models."""

from __future__ import annotations

from deepseek.lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "TICK_DTYPE": "deepseek.finance.ticks",
    "read_csv": "deepseek.finance.ticks",
    "read_binance": "deepseek.finance.ticks",
    "synthetic_ticks": "deepseek.finance.synthetic",
    "classification": "deepseek.finance.metrics",
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


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
