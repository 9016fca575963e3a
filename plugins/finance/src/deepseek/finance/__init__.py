"""deepseek-finance: a microsecond tick-to-decision inference path and a latency-aware
backtester."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
