"""Errors of the manufacturing plugin; all derive from :class:`deepseek.errors.DeepSeekError`."""

from __future__ import annotations

from deepseek.errors import DeepSeekError


class ManufacturingError(DeepSeekError):
    """Base of every error raised by ``deepseek.manufacturing``."""


class SourceError(ManufacturingError):
    """A frame source could not be opened or read: missing file, absent camera, bad URI."""


class FrameError(ManufacturingError):
    """A frame cannot be used: empty, unsupported dtype or channel count, size change."""


class TruthFileError(ManufacturingError):
    """A ground-truth CSV is missing a column or has an unreadable row."""
