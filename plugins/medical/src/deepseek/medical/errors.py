"""Errors of the medical plugin; all derive from :class:`deepseek.errors.DeepSeekError`."""

from __future__ import annotations

from deepseek.errors import DeepSeekError


class MedicalError(DeepSeekError):
    """Base of every error raised by ``deepseek.medical``."""


class DicomReadError(MedicalError):
    """A DICOM file could not be read: truncated, no pixel data, missing attribute."""


class SeriesError(MedicalError):
    """No usable series: empty folder, no CT, unknown series UID, mixed image sizes."""


class GeometryError(MedicalError):
    """Slice geometry is inconsistent: duplicate positions, gaps, uneven spacing."""


class DecoderMissingError(DicomReadError):
    """The pixel data uses a transfer syntax for which no decoder is installed."""


class VolumeFileError(MedicalError):
    """A NIfTI or MetaImage file could not be read or written."""


class FROCError(MedicalError):
    """A LUNA16 annotations or results file is missing a column or has a bad row."""


class NoLungError(MedicalError):
    """No lung of plausible size in the volume: not a chest CT (or not the chest)."""
