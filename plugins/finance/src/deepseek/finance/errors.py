"""Errors of the finance plugin; all derive from :class:`deepseek.errors.DeepSeekError`."""

from __future__ import annotations

from deepseek.errors import DeepSeekError


class FinanceError(DeepSeekError):
    """Base of every error raised by ``deepseek.finance``."""


class TickFileError(FinanceError):
    """A tick file (CSV or capture) has a missing column or a bad line; names the line."""


class FastPathError(FinanceError):
    """A model cannot be compiled to the fast path (unsupported layers, shapes)."""
