"""Hook implementations of the medical plugin (found through the ``deepseek`` entry point).

Only registration happens here; the heavy modules load when something is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepseek import hookimpl


def read_dicom(source: Any, **options: Any) -> Any:
    """DICOM CT series (folder, files, DICOMDIR, multi-frame file) -> Volume in HU."""
    from deepseek.medical.dicom import DICOMReader

    return DICOMReader(source, **options).load()


def read_mhd(source: Any, **options: Any) -> Any:
    """MetaImage (.mhd/.raw, .mha; LUNA16 layout) -> Volume."""
    from deepseek.medical.volume import Volume

    return Volume.load(source)


def read_nifti(source: Any, **options: Any) -> Any:
    """NIfTI (.nii, .nii.gz) -> Volume."""
    from deepseek.medical.volume import Volume

    return Volume.load(source)


def read_phantom(source: Any = None, **options: Any) -> Any:
    """Write a synthetic chest CT phantom series into SOURCE (a folder) and read it back."""
    import tempfile

    from deepseek.medical.dicom import DICOMReader
    from deepseek.medical.phantom import write_phantom

    out = Path(source) if source else Path(tempfile.mkdtemp(prefix="deepseek-phantom-"))
    series = write_phantom(out, **options)
    vol = DICOMReader(out, series_uid=series.series_uid).load()
    vol.metadata["nodules"] = [n.__dict__ for n in series.nodules]
    vol.metadata["annotations"] = str(series.annotations)
    return vol


@hookimpl
def register_readers(register: Any) -> None:
    register("dicom", read_dicom)
    register("mhd", read_mhd)
    register("nifti", read_nifti)
    register("ct-phantom", read_phantom)


@hookimpl
def register_pipelines(register: Any) -> None:
    from deepseek.medical.pipelines import dicom_io

    register("medical.dicom-io", dicom_io,
             description="CT series -> HU volume -> physical-space resampling, checked "
                         "against the phantom's ground truth")


@hookimpl
def register_commands(cli: Any) -> None:
    from deepseek.medical.cli import medical

    cli.add_command(medical)
