"""Hook implementations of the medical plugin (found through the ``deepseek`` entry point).

Only registration happens here; what is registered lives in the plugin's modules and loads
when it is first used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepseek import hookimpl
from deepseek.lazy import lazy_callable

WEIGHTS = Path(__file__).resolve().parent / "weights"


M = "deepseek.medical."


@hookimpl
def register_readers(register: Any) -> None:
    """Register the volume readers: DICOM, MetaImage, NIfTI, NRRD and ``synthetic:`` phantoms."""
    image = lazy_callable(M + "volume:read_image")
    register("dicom", lazy_callable(M + "dicom:read_dicom"), kind="volume", suffixes=[".dcm"],
             accepts=lazy_callable(M + "dicom:is_dicom_source"),
             description="DICOM CT series (folder, files, DICOMDIR, multi-frame) -> HU Volume")
    register("mhd", image, kind="volume", suffixes=[".mhd", ".mha"],
             description="MetaImage (.mhd/.raw, .mha; the LUNA16 layout) -> Volume")
    register("nifti", image, kind="volume", suffixes=[".nii", ".nii.gz"],
             description="NIfTI (.nii, .nii.gz) -> Volume")
    register("nrrd", image, kind="volume", suffixes=[".nrrd"], description="NRRD -> Volume")
    register("ct-phantom", lazy_callable(M + "synthetic:read_synthetic"), kind="volume",
             schemes=["synthetic:"],
             description="synthetic chest CT phantom with nodules (synthetic:?seed=3&size=128)")


@hookimpl
def register_models(register: Any) -> None:
    """Register the detector ``lung-nodule-attention`` and the ``nodule-fpr-3dcnn`` second stage,
    with their packaged weights.
    """
    register("lung-nodule-attention", lazy_callable(M + "nodule_model:build"),
             config={"base": 12}, weights=str(WEIGHTS / "lung-nodule-attention.safetensors"),
             description="attention 3D CNN (CBAM + attention gate), centre-heatmap lung-nodule "
                         "detector at 1 mm",
             # sizes in steps of 4 (two stride-2 stages); the server times it at 64^3, an
             # eighth of the detector's 128^3 window (1^3 told it nothing of a real volume)
             inputs=[{"name": "ct", "dtype": "float32", "shape": [-1, 1, -1, -1, -1],
                      "multiple": [1, 1, 4, 4, 4], "example": [1, 1, 64, 64, 64]}])
    register("nodule-fpr-3dcnn", lazy_callable(M + "fpr_model:build"), config={"base": 8},
             weights=str(WEIGHTS / "nodule-fpr-3dcnn.safetensors"),
             description="3D CNN on a 32 mm cube around each nodule candidate: the second, "
                         "false-positive reduction stage",
             inputs=[{"name": "crop", "dtype": "float32", "shape": [-1, 1, 32, 32, 32]}])


@hookimpl
def register_metrics(register: Any) -> None:
    """Register the LUNA16 FROC metric and how it reads its CSV files."""
    register("luna16-froc", lazy_callable(M + "metrics:luna16_froc"),
             load_files=lazy_callable(M + "metrics:load_luna16_files"),
             files="--pred LUNA16 results CSV, --ref annotations CSV",
             description="LUNA16 FROC: CPM, sensitivity at 1/8..8 FPs/scan, 95% bootstrap "
                         "interval")


@hookimpl
def register_pipelines(register: Any) -> None:
    """Register the ``medical.dicom-io`` and ``medical.nodule-detection`` pipelines."""
    register("medical.dicom-io", lazy_callable(M + "pipelines:dicom_io"), input_kind="volume",
             description="CT series -> HU volume -> physical-space resampling, checked "
                         "against the phantom's ground truth")
    register("medical.nodule-detection", lazy_callable(M + "pipelines:nodule_detection"),
             input_kind="volume",
             description="phantom CT series -> lung-nodule-attention -> LUNA16 FROC against "
                         "the ground truth, with candidates, FROC curve and slices")


@hookimpl
def register_steps(register: Any) -> None:
    """Register ``medical.detect``, the per-scan step of ``deepseek batch medical detect``."""
    register("medical.detect", lazy_callable(M + "steps:detect_step"), command="medical detect",
             summary=lazy_callable(M + "steps:detect_summary"),
             leave_out=lazy_callable(M + "steps:leave_out"),
             description="one scan (DICOM folder/file, .mhd, NIfTI) -> lung-nodule candidates "
                         "with sizes, as `deepseek medical detect --json`")


@hookimpl
def register_commands(cli: Any) -> None:
    """Add the ``deepseek medical`` command group."""
    from deepseek.medical.cli import medical

    cli.add_command(medical)
