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


def _lung_nodule_attention(**config: Any) -> Any:
    """Attention 3D CNN (CBAM + attention gate), centre-heatmap lung-nodule detector at 1 mm."""
    from deepseek.medical.nodule_model import build

    return build(**config)


def _luna16_froc(predictions: Any, references: Any, **options: Any) -> dict:
    """LUNA16 FROC: CPM, sensitivity at 1/8..8 FPs/scan, 95% bootstrap interval."""
    from deepseek.medical.froc import froc

    return froc(references, predictions, **options).to_dict()


WEIGHTS = Path(__file__).resolve().parent / "weights"


@hookimpl
def register_models(register: Any) -> None:
    w = WEIGHTS / "lung-nodule-attention.safetensors"
    register("lung-nodule-attention", _lung_nodule_attention, config={"base": 12},
             weights=str(w) if w.is_file() else None,
             inputs=[{"name": "ct", "dtype": "float32", "shape": [-1, 1, -1, -1, -1]}])


@hookimpl
def register_metrics(register: Any) -> None:
    register("luna16-froc", _luna16_froc)


@hookimpl
def register_readers(register: Any) -> None:
    register("dicom", read_dicom)
    register("mhd", read_mhd)
    register("nifti", read_nifti)
    register("ct-phantom", read_phantom)


@hookimpl
def register_pipelines(register: Any) -> None:
    from deepseek.medical.pipelines import dicom_io, nodule_detection

    register("medical.dicom-io", dicom_io,
             description="CT series -> HU volume -> physical-space resampling, checked "
                         "against the phantom's ground truth")
    register("medical.nodule-detection", nodule_detection,
             description="phantom CT series -> lung-nodule-attention -> LUNA16 FROC against "
                         "the ground truth, with candidates, FROC curve and a montage")


@hookimpl
def register_commands(cli: Any) -> None:
    from deepseek.medical.cli import medical

    cli.add_command(medical)
