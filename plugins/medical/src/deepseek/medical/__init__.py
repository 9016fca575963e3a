"""deepseek-medical: CT DICOM series to Hounsfield volumes, physical-space resampling and lung-nodule detection scored with the LUNA16 FROC/CPM protocol."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
