"""deepseek-medical: CT DICOM series to Hounsfield volumes, physical-space resampling, and
lung-nodule detection scored with the LUNA16 FROC/CPM protocol.

    from deepseek.medical import DICOMReader
    reader = DICOMReader(path="/data/ct_scans")
    images = reader.load(normalize=True, window=[-1000, 1000])
    voxels = reader.to_voxels(spacing=[0.5, 0.5, 1.0])
"""

from __future__ import annotations

from deepseek.lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "DICOMReader": "deepseek.medical.dicom",
    "SeriesInfo": "deepseek.medical.dicom",
    "Volume": "deepseek.medical.volume",
    "read_volume": "deepseek.medical.volume",
    "plot_froc": "deepseek.medical.figures",
    "write_phantom": "deepseek.medical.synthetic",
    "ChestPhantom": "deepseek.medical.synthetic",
    "NoduleDetector": "deepseek.medical.detector",
    "froc": "deepseek.medical.metrics",
    "render_volume": "deepseek.medical.synthetic",
    "MedicalError": "deepseek.medical.errors",
    "DicomReadError": "deepseek.medical.errors",
    "SeriesError": "deepseek.medical.errors",
    "GeometryError": "deepseek.medical.errors",
    "DecoderMissingError": "deepseek.medical.errors",
    "VolumeFileError": "deepseek.medical.errors",
    "FROCError": "deepseek.medical.errors",
}

__all__ = ["__version__", *_LAZY]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
