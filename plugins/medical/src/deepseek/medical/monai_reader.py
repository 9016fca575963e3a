"""The medical readers as a MONAI image reader (``pip install "deepseek-medical[monai]"``).

:class:`DeepSeekReader` is a ``monai.data.ImageReader``: ``LoadImage(reader=DeepSeekReader())``
or ``LoadImaged(keys="image", reader=DeepSeekReader(on_gap="resample"))`` read a DICOM series
folder, a DICOMDIR, a list of DICOM files, an enhanced multi-frame file, LUNA16 ``.mhd`` or
NIfTI through :func:`deepseek.medical.volume.read_volume`, with its geometry (exact gantry
tilt as a sheared affine, uneven spacing refused or equalised, duplicates dropped) and HU.

What MONAI receives follows its own readers' conventions (those of ``PydicomReader`` and
``ITKReader``): the array indexed (x, y, z) (the transpose of the toolkit's (z, y, x)), float32
HU, no channel dimension, and an ``affine`` from those indices to world millimetres in RAS
(``affine_lps_to_ras=True``, MONAI's default; the toolkit's own frame, LPS, with False), plus
``original_affine``, ``spatial_shape``, ``space``, ``original_channel_dim`` and the reader's
metadata (series UID, modality, rescale, the diagnosis of the slice positions) as strings
and numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:
    from monai.data import ImageReader
    from monai.utils import SpaceKeys
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the MONAI reader needs MONAI: pip install 'deepseek-medical[monai]'") \
        from exc

from deepseek.medical.volume import Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
SUFFIXES = (".dcm", ".dicom", ".ima", ".mhd", ".mha", ".nii", ".nii.gz", ".nrrd")


class DeepSeekReader(ImageReader):
    """A MONAI ``ImageReader`` over :func:`read_volume`.

    ``affine_lps_to_ras``: give the affine in RAS, as MONAI's readers do (default), or in the
    DICOM/ITK frame LPS. Other keyword arguments (``series_uid``, ``on_gap``, ``tilt``, ...)
    go to the toolkit's reader."""

    def __init__(self, affine_lps_to_ras: bool = True, **options: Any) -> None:
        super().__init__()
        self.affine_lps_to_ras = affine_lps_to_ras
        self.options = options

    def verify_suffix(self, filename: Sequence[str | Path] | str | Path) -> bool:
        """Folders (DICOM series, searched recursively), DICOMDIRs, DICOM files and the
        volume formats the toolkit reads."""
        names = [filename] if isinstance(filename, (str, Path)) else list(filename)
        for name in names:
            p = Path(name)
            if p.is_dir() or p.name.upper() == "DICOMDIR":
                continue
            if not str(p).lower().endswith(SUFFIXES):
                return False
        return bool(names)

    def read(self, data: Sequence[str | Path] | str | Path, **kwargs: Any) -> Volume:
        """One volume: a path (MONAI hands it over as a 1-tuple), or several DICOM files of
        one series."""
        from deepseek.medical.volume import read_volume

        names = [data] if isinstance(data, (str, Path)) else list(data)
        if not names:
            raise ValueError("DeepSeekReader.read: no file or folder given")
        source: Any = str(names[0]) if len(names) == 1 else [str(d) for d in names]
        return read_volume(source, **{**self.options, **kwargs})

    def get_data(self, img: Volume) -> tuple[np.ndarray, dict[str, Any]]:
        """MONAI's ``ImageReader.get_data``: the volume as a channel-less ``(x, y, z)`` float32
        array and MONAI's metadata (affine in RAS, spacing, original shape).

        Raises:
            TypeError: ``img`` is not the Volume :meth:`read` returned.
        """
        if not isinstance(img, Volume):
            raise TypeError(f"DeepSeekReader.get_data takes the Volume that read() returned, "
                            f"not {type(img).__name__}")
        array = np.ascontiguousarray(img.array.transpose(2, 1, 0), dtype=np.float32)
        affine = np.asarray(img.affine, dtype=np.float64)
        if self.affine_lps_to_ras:
            affine = LPS_TO_RAS @ affine
        meta: dict[str, Any] = {
            "affine": affine,
            "original_affine": affine.copy(),
            "spatial_shape": np.asarray(array.shape),
            "space": SpaceKeys.RAS if self.affine_lps_to_ras else SpaceKeys.LPS,
            "original_channel_dim": float("nan"),
        }
        for key, value in img.metadata.items():
            if isinstance(value, (str, int, float, bool)) and key not in meta:
                meta[key] = value
        return array, meta
