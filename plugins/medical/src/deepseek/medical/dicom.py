"""Reading CT DICOM series into Hounsfield volumes with correct geometry.

    reader = DICOMReader(path="/data/ct_scans")
    images = reader.load(normalize=True, window=[-1000, 1000])
    voxels = reader.to_voxels(spacing=[0.5, 0.5, 1.0])

What the reader does, and why:

* **Discovery.** ``path`` is a folder (searched recursively), a list of files, a ``DICOMDIR``
  or one (multi-frame) file. Non-DICOM files are skipped and counted. Series are split by
  SeriesInstanceUID and, within one UID, by orientation and image size (localizers often share
  the UID). Without ``series_uid`` the largest axial CT series is taken; the choice and the
  skipped series are logged. :meth:`DICOMReader.series` lists what was found.
* **Order.** Slices are sorted by their position along the slice normal
  (ImageOrientationPatient row x column, dotted with ImagePositionPatient) -- never by
  InstanceNumber or file name.
* **Duplicates.** Exact duplicates -- the same SOPInstanceUID (and frame) twice, or two files
  at one position with identical pixels -- are dropped and counted
  (``findings["duplicates_dropped"]``); two different images at one position are an error.
* **Uneven spacing.** Missing slices (a step that is a whole multiple of the usual one), a
  change of the slice step (4 mm, then 7 mm) and single uneven steps are named with their
  positions; slices closer than a fifth of the median step are named as near-duplicates.
  ``on_gap="error"`` (default) refuses the series; ``on_gap="resample"`` (CLI
  ``--on-gap resample``) equalises it onto an even grid whose step follows one rule: the
  finest step the series keeps for two or more consecutive steps (a step the scanner used;
  the median step when no two steps agree), or ``step_mm`` (``--step``), and never below half
  the median step -- so a near-duplicate pair or a stray short step cannot multiply the
  slices. The first and last slice are kept, every other slice interpolated linearly along
  the slice axis between its two neighbours (through a gantry tilt too, whose shear is linear
  along the axis); an output over ``max_bytes`` (default 4 GiB) is refused with its size and
  the fix. The original positions and the rule applied stay in
  ``metadata["findings"]["resampled"]``.
  ``on_gap="warn"`` does the same with a warning. No series is ever given an even grid it
  does not have. Everything found is in ``volume.metadata["findings"]``.
* **Geometry.** Slice spacing is measured along the normal. A gantry tilt (slice positions
  stepping off the normal) is detected and kept exactly as a sheared grid (see
  :mod:`deepseek.medical.volume`), or resampled onto a straight grid with ``tilt="resample"``.
* **Values.** RescaleSlope/RescaleIntercept are applied per slice; PixelPaddingValue and
  out-of-field values (<= -2000 HU, e.g. -2000, -3024) become -1024 HU and are counted.
* **Pixel data.** Uncompressed little-endian pixel data is read straight from the files, in
  parallel; every other transfer syntax (big endian, deflate, RLE, JPEG baseline/extended/
  lossless, JPEG-LS, JPEG 2000, HTJ2K) goes through pydicom and the installed decoders
  (pylibjpeg-libjpeg, pylibjpeg-openjpeg, pylibjpeg-rle, pyjpegls, GDCM). A missing decoder is
  an error naming the transfer syntax and the package to install.
* **Enhanced multi-frame** CT (per-frame functional groups) reads into the same Volume.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.medical.errors import (
    DecoderMissingError,
    DicomReadError,
    GeometryError,
    MedicalError,
    SeriesError,
)
from deepseek.medical.volume import AIR_HU, Volume
from deepseek.paths import files_below

log = logging.getLogger(__name__)

OUT_OF_FIELD_HU = -2000.0
DUPLICATE_TOL_MM = 0.01
NEAR_DUPLICATE = 0.2  # of the median step: closer slices are named near-duplicates
MIN_GRID_STEP = 0.5   # of the median step: the even grid never steps finer
MAX_EQUALISED_BYTES = 4 << 30
ON_GAP = ("error", "resample", "warn")
_PIXEL_TAG = b"\xe0\x7f\x10\x00"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_IMPLICIT_LE = "1.2.840.10008.1.2"

DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.51": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.57": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.70": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "pyjpegls",
    "1.2.840.10008.1.2.4.81": "pyjpegls",
    "1.2.840.10008.1.2.4.90": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.91": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.201": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.202": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg pylibjpeg-rle",
}


# ------------------------------------------------------------------------------ headers
@dataclass
class SliceHeader:
    """What the reader needs of one slice (one file, or one frame of a multi-frame file)."""

    path: Path
    frame: int | None
    position: np.ndarray | None
    orientation: np.ndarray | None
    rows: int
    cols: int
    pixel_spacing: tuple[float, float] | None  # (row spacing = y, column spacing = x)
    slope: float
    intercept: float
    instance_number: int | None
    transfer_syntax: str
    pixel_offset: int | None  # byte offset of native little-endian pixel data
    bits_allocated: int
    pixel_representation: int
    samples_per_pixel: int
    padding: tuple[float, float] | None  # raw padding value range (inclusive)
    slice_thickness: float | None
    has_pixels: bool = True
    file_size: int = 0
    sop_uid: str | None = None


@dataclass
class SeriesInfo:
    """One series as found on disk (one UID, one orientation, one image size)."""

    uid: str
    description: str
    modality: str
    number: int | None
    rows: int
    cols: int
    orientation: str
    normal: tuple[float, float, float] | None
    slices: list[SliceHeader] = field(default_factory=list)
    study_uid: str = ""
    patient_id: str = ""
    sop_class: str = ""
    transfer_syntaxes: list[str] = field(default_factory=list)
    image_type: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_slices(self) -> int:
        """Number of image slices in the series."""
        return len(self.slices)

    @property
    def size(self) -> tuple[int, int]:
        """Rows and columns of each slice."""
        return (self.rows, self.cols)

    def to_dict(self) -> dict[str, Any]:
        """The series description as JSON-ready data (what ``deepseek medical info --json`` shows).
        """
        return {
            "series_uid": self.uid, "description": self.description, "modality": self.modality,
            "series_number": self.number, "slices": self.n_slices,
            "size": [self.rows, self.cols], "orientation": self.orientation,
            "transfer_syntaxes": self.transfer_syntaxes, "image_type": self.image_type,
            "patient_id": self.patient_id, "study_uid": self.study_uid,
        }


def _orientation_label(normal: np.ndarray | None) -> str:
    if normal is None:
        return "unknown"
    ax = int(np.argmax(np.abs(normal)))
    if abs(normal[ax]) < 0.8:
        return "oblique"
    return ("sagittal", "coronal", "axial")[ax]


def _floats(value: Any, n: int, path: Path, name: str) -> np.ndarray | None:
    if value is None:
        return None
    try:
        arr = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        raise DicomReadError(f"{path}: {name} is not numeric: {value!r}") from None
    if arr.size != n or not np.all(np.isfinite(arr)):
        raise DicomReadError(f"{path}: {name} must hold {n} finite numbers, got {value!r}")
    return arr


def _padding(ds: Any) -> tuple[float, float] | None:
    pad = ds.get("PixelPaddingValue")
    if pad is None:
        return None
    lim = ds.get("PixelPaddingRangeLimit")
    pad = float(pad if not isinstance(pad, (bytes, bytearray)) else
                int.from_bytes(pad[:2], "little", signed=bool(ds.get("PixelRepresentation", 0))))
    if lim is None:
        return (pad, pad)
    lim = float(lim if not isinstance(lim, (bytes, bytearray)) else
                int.from_bytes(lim[:2], "little", signed=bool(ds.get("PixelRepresentation", 0))))
    return (min(pad, lim), max(pad, lim))


def _seq_item(*candidates: Any, name: str) -> Any:
    for group in candidates:
        if group is not None and name in group and len(group[name].value):
            return group[name].value[0]
    return None


def _headers_from_dataset(ds: Any, path: Path, pixel_offset: int | None, has_pixels: bool,
                          file_size: int) -> list[SliceHeader]:
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or _EXPLICIT_LE)
    common = dict(
        rows=int(ds.get("Rows", 0) or 0), cols=int(ds.get("Columns", 0) or 0),
        transfer_syntax=ts, bits_allocated=int(ds.get("BitsAllocated", 16) or 16),
        pixel_representation=int(ds.get("PixelRepresentation", 0) or 0),
        samples_per_pixel=int(ds.get("SamplesPerPixel", 1) or 1), padding=_padding(ds),
        has_pixels=has_pixels, file_size=file_size,
        sop_uid=str(ds.get("SOPInstanceUID")) if ds.get("SOPInstanceUID") else None,
    )
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if "PerFrameFunctionalGroupsSequence" in ds:
        shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds \
            else None
        frames = ds.PerFrameFunctionalGroupsSequence
        if len(frames) != n_frames:
            raise DicomReadError(f"{path}: PerFrameFunctionalGroupsSequence has {len(frames)} "
                                 f"items but NumberOfFrames is {n_frames}")
        out = []
        for i, pf in enumerate(frames):
            pos = _seq_item(pf, shared, name="PlanePositionSequence")
            ori = _seq_item(pf, shared, name="PlaneOrientationSequence")
            meas = _seq_item(pf, shared, name="PixelMeasuresSequence")
            pvt = _seq_item(pf, shared, name="PixelValueTransformationSequence")
            where = f"{path} frame {i + 1}"
            out.append(SliceHeader(
                path=path, frame=i,
                position=_floats(pos.get("ImagePositionPatient") if pos else None, 3,
                                 Path(where), "ImagePositionPatient"),
                orientation=_floats(ori.get("ImageOrientationPatient") if ori else None, 6,
                                    Path(where), "ImageOrientationPatient"),
                pixel_spacing=tuple(_floats(meas.get("PixelSpacing"), 2, Path(where),
                                            "PixelSpacing")) if meas and meas.get("PixelSpacing")
                else None,
                slope=float(pvt.get("RescaleSlope", 1.0)) if pvt else 1.0,
                intercept=float(pvt.get("RescaleIntercept", 0.0)) if pvt else 0.0,
                instance_number=i + 1, pixel_offset=None,
                slice_thickness=float(meas.get("SliceThickness")) if meas and
                meas.get("SliceThickness") is not None else None,
                **common,
            ))
        return out
    if n_frames > 1:
        raise DicomReadError(f"{path}: classic multi-frame image ({n_frames} frames) without "
                             "per-frame functional groups; its frame geometry is undefined for "
                             "a CT volume. Export the series as single-frame or enhanced CT")
    ps = ds.get("PixelSpacing")
    native = ts in (_EXPLICIT_LE, _IMPLICIT_LE) and common["samples_per_pixel"] == 1
    return [SliceHeader(
        path=path, frame=None,
        position=_floats(ds.get("ImagePositionPatient"), 3, path, "ImagePositionPatient"),
        orientation=_floats(ds.get("ImageOrientationPatient"), 6, path,
                            "ImageOrientationPatient"),
        pixel_spacing=tuple(_floats(ps, 2, path, "PixelSpacing")) if ps else None,
        slope=float(ds.get("RescaleSlope", 1.0) or 1.0),
        intercept=float(ds.get("RescaleIntercept", 0.0) or 0.0),
        instance_number=int(ds.InstanceNumber) if ds.get("InstanceNumber") not in (None, "")
        else None,
        pixel_offset=pixel_offset if native else None,
        slice_thickness=float(ds.SliceThickness) if ds.get("SliceThickness") not in (None, "")
        else None,
        **common,
    )]


def read_header(path: Path) -> tuple[Any, list[SliceHeader]] | None:
    """Header of one file and its slice(s); ``None`` for a file that is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        size = path.stat().st_size
        with open(path, "rb") as fp:
            try:
                ds = pydicom.dcmread(fp, stop_before_pixels=True)
            except InvalidDicomError:
                return None
            at_eof = fp.tell() >= size  # stopped by the end of the file, not at pixel data
            ts = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "")
            offset = None
            has_pixels = True
            if ts in (_EXPLICIT_LE, _IMPLICIT_LE, ""):
                tag_at = fp.tell()
                head = fp.read(12)
                if head[:4] == _PIXEL_TAG:
                    offset = tag_at + (12 if ts != _IMPLICIT_LE else 8)
                else:
                    has_pixels = False
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DicomReadError(f"{path}: unreadable DICOM header ({type(exc).__name__}: {exc}); "
                             "the file may be truncated or corrupt") from exc
    if "DirectoryRecordSequence" in ds:  # a DICOMDIR found inside a folder: not an image
        return ds, []
    if "Rows" not in ds and "PerFrameFunctionalGroupsSequence" not in ds:
        _refuse_truncated_header(ds, path, at_eof)
        return ds, []  # not an image (SR, RT plan, ...)
    return ds, _headers_from_dataset(ds, path, offset, has_pixels, size)


def _refuse_truncated_header(ds: Any, path: Path, at_eof: bool) -> None:
    """pydicom stops quietly where a file ends; a file that ends inside its header reads as
    a dataset without image attributes. When the file ran out and its file meta is cut, or
    names an image storage class, it is a damaged image, not some other object: refuse it."""
    from pydicom.uid import UID

    if not at_eof:
        return
    meta = getattr(ds, "file_meta", None)
    sop = str((meta.get("MediaStorageSOPClassUID", "") if meta is not None else "")
              or ds.get("SOPClassUID", "") or "")
    meta_cut = meta is None or "TransferSyntaxUID" not in meta
    if meta_cut or "Image Storage" in UID(sop).name:
        what = "its file meta information" if meta_cut else f"a {UID(sop).name} object"
        raise DicomReadError(f"{path}: the file ends inside its header "
                             f"({path.stat().st_size} bytes; {what} without rows, columns or "
                             "pixel data): it is truncated; copy it again or remove it from "
                             "the series")


def _files_of(path: Any) -> list[Path]:
    if isinstance(path, (list, tuple)):
        files = [Path(p) for p in path]
        for f in files:
            if not f.is_file():
                raise SeriesError(f"{f}: no such file (in the list of files given)")
        return files
    p = Path(path)
    if not p.exists():
        raise SeriesError(f"{p}: no such file or folder")
    if p.is_dir():
        files = sorted(f for f in files_below(p) if f.is_file())
        if not files:
            raise SeriesError(f"{p}: the folder is empty (searched recursively)")
        return files
    if p.name.upper() == "DICOMDIR" or _is_dicomdir(p):
        return _dicomdir_files(p)
    return [p]


def _is_dicomdir(p: Path) -> bool:
    import pydicom

    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["MediaStorageSOPClassUID"])
    except Exception:
        return False
    return str(ds.file_meta.get("MediaStorageSOPClassUID", "")) == "1.2.840.10008.1.3.10"


def _dicomdir_files(p: Path) -> list[Path]:
    import pydicom
    from pydicom.fileset import FileSet

    folder = ("; pass the folder that holds the images instead (it is searched "
              f"recursively): {p.parent}")
    try:
        ds = pydicom.dcmread(p)
        # every record's file, as the DICOMDIR names it (pydicom's FileSet leaves out the
        # instances whose files are missing, with a warning only)
        named = [p.parent.joinpath(*([ref] if isinstance(ref, str) else list(ref)))
                 for rec in ds.get("DirectoryRecordSequence", [])
                 if (ref := rec.get("ReferencedFileID")) is not None]
        missing = [f for f in named if not f.is_file()]
        if missing:
            raise SeriesError(f"{p}: DICOMDIR references {len(missing)} missing files, e.g. "
                              f"{missing[0]}{folder}")
        fs = FileSet(ds)
    except SeriesError:
        raise
    except Exception as exc:
        raise SeriesError(f"{p}: unreadable DICOMDIR ({type(exc).__name__}: {exc})"
                          f"{folder}") from exc
    files = [Path(inst.path) for inst in fs]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise SeriesError(f"{p}: DICOMDIR references {len(missing)} missing files, e.g. "
                          f"{missing[0]}{folder}")
    if not files:
        raise SeriesError(f"{p}: DICOMDIR lists no images{folder}")
    return files


def _has_dicm_magic(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def is_dicom_source(source: Any, max_files: int = 64) -> bool:
    """Probe for the reader registry: a list of files, a DICOMDIR, a file with the ``DICM``
    preamble, or a folder holding one of those among its first ``max_files`` files."""
    if isinstance(source, (list, tuple)):
        return bool(source) and all(Path(p).is_file() for p in source)
    p = Path(source)
    if p.is_file():
        return p.name.upper() == "DICOMDIR" or p.suffix.lower() == ".dcm" or _has_dicm_magic(p)
    if p.is_dir():
        for n, f in enumerate(files_below(p)):
            if n >= max_files:
                break
            if f.is_file() and (f.name.upper() == "DICOMDIR" or f.suffix.lower() == ".dcm"
                                or _has_dicm_magic(f)):
                return True
    return False


def read_dicom(source: Any, **options: Any) -> Volume:
    """DICOM CT series (folder, files, DICOMDIR, multi-frame file) -> Volume in HU.

    ``options`` are :class:`DICOMReader`'s (``series_uid``, ``on_gap``, ``tilt`` ...)."""
    return DICOMReader(source, **options).load()


#: acquisition fields kept for a converted volume's JSON sidecar: DICOM keyword -> the key
#: dcm2niix's BIDS sidecars use (no patient identifiers, dates or times)
ACQUISITION_FIELDS = {
    "Modality": "Modality", "Manufacturer": "Manufacturer",
    "ManufacturerModelName": "ManufacturersModelName", "SoftwareVersions": "SoftwareVersions",
    "BodyPartExamined": "BodyPartExamined", "SeriesDescription": "SeriesDescription",
    "ProtocolName": "ProtocolName", "SeriesNumber": "SeriesNumber",
    "ImageType": "ImageType", "KVP": "KVP", "XRayTubeCurrent": "XRayTubeCurrent",
    "Exposure": "XRayExposure", "ConvolutionKernel": "ConvolutionKernel",
    "SliceThickness": "SliceThickness", "SpacingBetweenSlices": "SpacingBetweenSlices",
    "GantryDetectorTilt": "GantryDetectorTilt", "ReconstructionDiameter":
    "ReconstructionDiameter", "ImageOrientationPatient": "ImageOrientationPatientDICOM",
}


def _acquisition(ds: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for keyword, key in ACQUISITION_FIELDS.items():
        v = ds.get(keyword)
        if v in (None, ""):
            continue
        if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
            v = [_plain(x) for x in v]
        else:
            v = _plain(v)
        out[key] = v
    return out


def _plain(v: Any) -> Any:
    """A pydicom value as a JSON scalar (DS/IS numbers as numbers)."""
    if isinstance(v, (int, float, str)):
        return int(v) if type(v).__name__ == "IS" else (float(v) if type(v).__name__ == "DSfloat"
                                                        or type(v).__name__ == "DSdecimal"
                                                        else v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def discover(path: Any, progress: bool = False) -> tuple[list[SeriesInfo], dict[str, int]]:
    """Find the series under ``path``. Returns the series and counts of skipped files."""
    from tqdm.auto import tqdm

    files = _files_of(path)
    groups: dict[tuple, SeriesInfo] = {}
    skipped: Counter[str] = Counter()
    for f in tqdm(files, desc="scanning", disable=not progress, leave=False):
        try:
            empty = f.stat().st_size == 0
        except OSError:
            empty = False
        if empty:  # a slice whose content was lost (an interrupted copy) looks like this
            skipped["empty file (0 bytes)"] += 1
            log.warning("%s: empty file (0 bytes), skipped", f)
            continue
        got = read_header(f)
        if got is None:
            skipped["not DICOM"] += 1
            continue
        ds, headers = got
        if not headers:
            skipped["DICOM without image"] += 1
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        if not uid:
            raise DicomReadError(f"{f}: SeriesInstanceUID is missing")
        for h in headers:
            if h.orientation is None:
                raise DicomReadError(f"{h.path}{'' if h.frame is None else f' frame {h.frame + 1}'}"
                                     ": ImageOrientationPatient is missing; the slice geometry "
                                     "cannot be established")
            normal = np.cross(h.orientation[:3], h.orientation[3:])
            key = (uid, tuple(np.round(h.orientation, 3)), h.rows, h.cols)
            info = groups.get(key)
            if info is None:
                info = groups[key] = SeriesInfo(
                    uid=uid, description=str(ds.get("SeriesDescription", "") or ""),
                    modality=str(ds.get("Modality", "") or ""),
                    number=int(ds.SeriesNumber) if ds.get("SeriesNumber") not in (None, "")
                    else None,
                    rows=h.rows, cols=h.cols, orientation=_orientation_label(normal),
                    normal=tuple(float(v) for v in normal),
                    study_uid=str(ds.get("StudyInstanceUID", "") or ""),
                    patient_id=str(ds.get("PatientID", "") or ""),
                    sop_class=str(ds.get("SOPClassUID", "") or ""),
                    image_type="\\".join(ds.get("ImageType", []) or []),
                    meta={"patient_name": str(ds.get("PatientName", "") or ""),
                          "manufacturer": str(ds.get("Manufacturer", "") or ""),
                          "study_date": str(ds.get("StudyDate", "") or ""),
                          "acquisition": _acquisition(ds)},
                )
            info.slices.append(h)
            if h.transfer_syntax not in info.transfer_syntaxes:
                info.transfer_syntaxes.append(h.transfer_syntax)
    if skipped:
        log.info("skipped %s", ", ".join(f"{n} {what} file(s)" for what, n in skipped.items()))
    series = sorted(groups.values(), key=lambda s: (-s.n_slices, s.uid))
    return series, dict(skipped)


# ------------------------------------------------------------------------------ the reader
class DICOMReader:
    """Reads one CT series into a :class:`~deepseek.medical.volume.Volume` in HU.

    Args:
        path: folder (recursive), list of files, ``DICOMDIR`` or a single (multi-frame) file.
        series_uid: which series to read (see :meth:`series`); default: the largest axial CT.
        modality: the modality to pick automatically (``None``: any).
        on_gap: for missing slices and uneven slice steps: ``"error"`` (default), or
            ``"resample"`` (equalise onto an even grid; ``"warn"``: the same, with a warning).
        tilt: ``"keep"`` (default: exact sheared geometry) or ``"resample"`` (straight grid).
        step_mm: the slice step of the even grid ``on_gap="resample"`` makes (default: the
            finest step the series keeps; never below half the median step).
        max_bytes: the largest equalised volume made (float32; default 4 GiB).
        workers: threads that decode slices (default: up to 8).
        progress: show progress bars (default: when stderr is a terminal).
    """

    def __init__(self, path: Any, series_uid: str | None = None, *, modality: str | None = "CT",
                 on_gap: str = "error", tilt: str = "keep", workers: int | None = None,
                 progress: bool | None = None, step_mm: float | None = None,
                 max_bytes: int = MAX_EQUALISED_BYTES) -> None:
        if on_gap not in ON_GAP:
            raise MedicalError(f"on_gap must be one of {', '.join(ON_GAP)}, got {on_gap!r}")
        if step_mm is not None and not (np.isfinite(step_mm) and step_mm > 0):
            raise MedicalError(f"step_mm={step_mm}: give a slice step > 0 mm")
        if not max_bytes > 0:
            raise MedicalError(f"max_bytes={max_bytes}: give a budget > 0 bytes")
        self.step_mm = None if step_mm is None else float(step_mm)
        self.max_bytes = int(max_bytes)
        if tilt not in ("keep", "resample"):
            raise MedicalError(f"tilt must be 'keep' or 'resample', got {tilt!r}")
        import sys

        self.path = path
        self.series_uid = series_uid
        self.modality = modality
        self.on_gap = on_gap
        self.tilt = tilt
        self.workers = workers or min(8, os.cpu_count() or 1)
        self.progress = sys.stderr.isatty() if progress is None else progress
        self._series: list[SeriesInfo] | None = None
        self.skipped: dict[str, int] = {}
        self.volume: Volume | None = None  # HU, after load()
        self._window: tuple[float, float] | None = None

    # discovery -------------------------------------------------------------------------------
    @staticmethod
    def series(path: Any) -> list[SeriesInfo]:
        """All series found under ``path``, largest first."""
        return discover(path)[0]

    def found(self) -> list[SeriesInfo]:
        """The series found under the path (discovered once), largest first; unreadable files are in
        :attr:`skipped`.
        """
        if self._series is None:
            self._series, self.skipped = discover(self.path, progress=self.progress)
        return self._series

    def select(self) -> SeriesInfo:
        """The series this reader will load (logs the choice and what it skipped)."""
        found = self.found()
        if not found:
            raise SeriesError(f"{self.path}: no DICOM images found"
                              + (f" (skipped: {self.skipped})" if self.skipped else ""))
        if self.series_uid is not None:
            cands = [s for s in found if s.uid == self.series_uid]
            if not cands:
                listing = "; ".join(f"{s.uid} ({s.modality}, {s.n_slices} slices)" for s in found)
                raise SeriesError(f"{self.path}: no series with SeriesInstanceUID "
                                  f"{self.series_uid}; found: {listing}")
        else:
            cands = [s for s in found if self.modality is None or s.modality == self.modality]
            if not cands:
                mods = sorted({s.modality or "?" for s in found})
                raise SeriesError(f"{self.path}: no {self.modality} series found (modalities "
                                  f"present: {', '.join(mods)}); pass modality=None or "
                                  "series_uid=... to read another")
            axial = [s for s in cands if s.orientation == "axial"]
            cands = axial or cands
        chosen = max(cands, key=lambda s: s.n_slices)
        self._check_sizes(chosen, found)
        others = [s for s in found if s is not chosen]
        log.info("reading series %s (%s, %s, %d slices, %dx%d)", chosen.uid,
                 chosen.description or "no description", chosen.modality, chosen.n_slices,
                 chosen.rows, chosen.cols)
        for s in others:
            log.info("skipping series %s (%s, %s, %s, %d slices, %dx%d)", s.uid,
                     s.description or "no description", s.modality, s.orientation, s.n_slices,
                     s.rows, s.cols)
        return chosen

    @staticmethod
    def _check_sizes(chosen: SeriesInfo, found: list[SeriesInfo]) -> None:
        same = [s for s in found if s.uid == chosen.uid and s is not chosen
                and s.orientation == chosen.orientation and s.size != chosen.size]
        big = [s for s in same if s.n_slices >= 3]
        if big:
            sizes = ", ".join(f"{s.rows}x{s.cols} ({s.n_slices} slices, e.g. {s.slices[0].path})"
                              for s in [chosen] + big)
            raise SeriesError(f"series {chosen.uid} mixes image sizes in one orientation: "
                              f"{sizes}; it cannot form one volume. Separate the files or pass "
                              "the files of one size as a list")

    # loading -------------------------------------------------------------------------------
    def load(self, normalize: bool = False,
             window: Sequence[float] | None = None) -> Volume:
        """Read the selected series.

        ``normalize=False``: a float32 volume in HU. ``normalize=True``: the HU ``window``
        (default ``(-1000, 400)``) mapped to [0, 1] with clipping.
        """
        if self.volume is None:
            self.volume = self._read(self.select())
        self._window = None
        if normalize:
            self._window = (float(window[0]), float(window[1])) if window is not None \
                else (-1000.0, 400.0)
            return self.volume.normalized(self._window)
        return self.volume

    def to_voxels(self, spacing: Sequence[float], interpolator: str = "linear") -> Volume:
        """The loaded volume resampled to ``spacing`` (x, y, z) mm in physical space.

        Resampling works on HU (-1024 outside the field of view); when the last
        :meth:`load` normalised, the result is normalised with the same window.
        """
        if self.volume is None:
            self.load()
        out = self.volume.resample(spacing, interpolator=interpolator)  # type: ignore[union-attr]
        return out.normalized(self._window) if self._window is not None else out

    # internals -----------------------------------------------------------------------------
    def _read(self, info: SeriesInfo) -> Volume:
        slices = info.slices
        for h in slices:
            if h.position is None:
                where = f"{h.path}" + ("" if h.frame is None else f" frame {h.frame + 1}")
                raise DicomReadError(f"{where}: ImagePositionPatient is missing; slices cannot "
                                     "be placed in space")
            if not h.has_pixels:
                raise DicomReadError(f"{h.path}: PixelData (7FE0,0010) is missing; the file "
                                     "holds no image")
            if h.pixel_spacing is None:
                raise DicomReadError(f"{h.path}: PixelSpacing is missing; the in-plane spacing "
                                     "is unknown")
            if h.samples_per_pixel != 1:
                raise DicomReadError(f"{h.path}: SamplesPerPixel is {h.samples_per_pixel}; a "
                                     "CT volume needs grayscale images")
        ori = slices[0].orientation
        row, col = ori[:3], ori[3:]  # type: ignore[index]
        normal = np.cross(row, col)
        normal /= np.linalg.norm(normal)
        pos = np.array([h.position for h in slices])
        along = pos @ normal
        order = np.argsort(along, kind="stable")
        slices = [slices[i] for i in order]
        pos, along = pos[order], along[order]
        findings: dict[str, Any] = {}
        keep = self._drop_same_instance(slices, along, findings)
        slices, pos, along = [slices[i] for i in keep], pos[keep], along[keep]
        ps = slices[0].pixel_spacing
        spacing_xy = (float(ps[1]), float(ps[0]))  # type: ignore[index]
        direction = np.stack([row / np.linalg.norm(row), col / np.linalg.norm(col), normal], 1)
        # one entry per distinct position; same-position files are compared by their pixels
        first_at = np.concatenate([[True], np.diff(along) >= DUPLICATE_TOL_MM])
        uniq = np.flatnonzero(first_at)
        if len(uniq) == 1 and len(slices) > 1:
            raise GeometryError(f"all {len(slices)} slices of the series sit at the same "
                                f"position ({along[0]:.3f} mm along the normal), e.g. "
                                f"{slices[0].path}")
        resample = False
        if len(uniq) > 1:
            dz, resample = self._check_steps([slices[i] for i in uniq], along[uniq], findings)
        arr, padded = self._pixels(slices, info)
        if len(uniq) < len(slices):
            keep = self._drop_same_pixels(slices, along, arr, first_at, findings)
            slices, pos, along, arr = [slices[i] for i in keep], pos[keep], along[keep], \
                arr[keep]
        if len(slices) == 1:
            dz = slices[0].slice_thickness or 1.0
            findings["spacing_assumed"] = True
            log.warning("%s: a single slice; slice spacing %.3g mm is assumed (%s)",
                        slices[0].path, dz, "SliceThickness" if slices[0].slice_thickness
                        else "no SliceThickness: 1 mm")
        else:
            # the slice axis: position per mm along the normal (off the normal under a tilt)
            axis = (pos[-1] - pos[0]) / (along[-1] - along[0])
            col_v = np.asarray(col, dtype=np.float64)
            signed = signed_tilt(axis, normal, col_v / np.linalg.norm(col_v))
            tilt = abs(signed)
            if tilt > 0.05:
                findings["gantry_tilt_deg"] = round(tilt, 4)
                findings["gantry_tilt_signed_deg"] = round(signed, 4)
                direction[:, 2] = axis
                if not resample:
                    dz = float((pos[-1] - pos[0]) @ normal) / (len(slices) - 1)
                log.info("gantry tilt of %.2f degrees detected; slice spacing along the normal "
                         "%.4g mm", tilt, dz)
            if resample:
                arr, dz = _equalise(arr, along, findings, self.step_mm, self.max_bytes,
                                    str(self.path))
        if padded:
            findings["padding_voxels"] = padded
        positions = pos if "resampled" not in findings else \
            pos[0] + np.outer(np.arange(len(arr)) * dz, direction[:, 2])
        meta = {
            "source": str(self.path), "series_uid": info.uid, "study_uid": info.study_uid,
            "patient_id": info.patient_id, "modality": info.modality,
            "series_description": info.description, "series_number": info.number,
            "sop_class": info.sop_class, "transfer_syntaxes": info.transfer_syntaxes,
            "findings": findings, "slice_files": [str(h.path) for h in slices],
            "slice_frames": [h.frame for h in slices],
            "slice_positions": positions.tolist(), **info.meta,
        }
        vol = Volume(arr, (spacing_xy[0], spacing_xy[1], dz), tuple(pos[0]), direction, meta)
        if self.tilt == "resample" and vol.is_sheared:
            vol = vol.straighten()
        return vol

    def _drop_same_instance(self, slices: list[SliceHeader], along: np.ndarray,
                            findings: dict[str, Any]) -> np.ndarray:
        """Indices to keep: the first of each SOPInstanceUID (and frame)."""
        seen: dict[tuple[str, int | None], int] = {}
        keep = []
        for i, h in enumerate(slices):
            key = (h.sop_uid, h.frame) if h.sop_uid else None
            if key is not None and key in seen:
                findings.setdefault("duplicates_dropped", []).append(
                    {"file": str(h.path), "same_as": str(slices[seen[key]].path),
                     "position_mm": round(float(along[i]), 4), "reason": "same SOPInstanceUID"})
                continue
            if key is not None:
                seen[key] = i
            keep.append(i)
        if len(keep) < len(slices):
            log.warning("%s: %d duplicate file(s) (same SOPInstanceUID) dropped", self.path,
                        len(slices) - len(keep))
        return np.asarray(keep, dtype=np.int64)

    def _drop_same_pixels(self, slices: list[SliceHeader], along: np.ndarray, arr: np.ndarray,
                          first_at: np.ndarray, findings: dict[str, Any]) -> np.ndarray:
        """Indices to keep among slices at one position: identical images are one slice;
        different images at one position are an error."""
        keep = []
        ref = 0
        for i in range(len(slices)):
            if first_at[i]:
                ref = i
                keep.append(i)
                continue
            if not np.array_equal(arr[i], arr[ref]):
                raise GeometryError(
                    f"{self.path}: two different images at one position ({along[i]:.3f} mm "
                    f"along the normal): {slices[ref].path} and {slices[i].path}. Remove the "
                    "wrong file, or read the series it belongs to (series_uid=, --series-uid)")
            findings.setdefault("duplicates_dropped", []).append(
                {"file": str(slices[i].path), "same_as": str(slices[ref].path),
                 "position_mm": round(float(along[i]), 4),
                 "reason": "same position, identical pixels"})
        log.warning("%s: %d duplicate slice(s) (same position, identical pixels) dropped",
                    self.path, len(slices) - len(keep))
        return np.asarray(keep, dtype=np.int64)

    def _check_steps(self, slices: list[SliceHeader], along: np.ndarray,
                     findings: dict[str, Any]) -> tuple[float, bool]:
        """The usual slice step and whether the series needs resampling; missing slices,
        step changes and uneven steps are named (an error with ``on_gap="error"``)."""
        med, found, problems = diagnose_steps(along)
        findings.update(found)
        if not problems:
            return med, False
        msg = "; ".join(problems)
        if self.skipped:
            msg += (" (files skipped in the folder: " + ", ".join(
                f"{n} {k}" for k, n in sorted(self.skipped.items())) +
                "; a missing slice may be one of them)")
        if self.on_gap == "error":
            raise GeometryError(f"{self.path}: {msg}. Read it with on_gap='resample' (command "
                                "line: --on-gap resample) to equalise it onto an even grid; "
                                "the original positions are kept in volume.metadata")
        (log.warning if self.on_gap == "warn" else log.info)(
            "%s: %s; equalised onto an even grid", self.path, msg)
        return med, True

    def _pixels(self, slices: list[SliceHeader], info: SeriesInfo) -> tuple[np.ndarray, int]:
        from tqdm.auto import tqdm

        out = np.empty((len(slices), info.rows, info.cols), dtype=np.float32)
        padded = np.zeros(len(slices), dtype=np.int64)
        frame_cache: dict[Path, np.ndarray] = {}

        def fill(k: int) -> None:
            h = slices[k]
            raw = self._raw(h, frame_cache)
            if raw.shape != (info.rows, info.cols):
                raise DicomReadError(f"{h.path}: pixel data is {raw.shape}, but Rows/Columns say "
                                     f"{(info.rows, info.cols)}")
            dst = out[k]
            np.multiply(raw, np.float32(h.slope), out=dst, casting="unsafe")
            dst += np.float32(h.intercept)
            mask = dst <= OUT_OF_FIELD_HU
            if h.padding is not None:
                mask |= (raw >= h.padding[0]) & (raw <= h.padding[1])
            n = int(mask.sum())
            if n:
                dst[mask] = AIR_HU
                padded[k] = n

        multi = any(h.frame is not None for h in slices)
        bar = tqdm(total=len(slices), desc="reading slices", disable=not self.progress,
                   leave=False)
        if multi or self.workers <= 1 or len(slices) < 8:
            for k in range(len(slices)):
                fill(k)
                bar.update(1)
        else:
            with ThreadPoolExecutor(self.workers) as pool:
                for _ in pool.map(fill, range(len(slices))):
                    bar.update(1)
        bar.close()
        return out, int(padded.sum())

    @staticmethod
    def _raw(h: SliceHeader, frame_cache: dict[Path, np.ndarray]) -> np.ndarray:
        if h.pixel_offset is not None and h.bits_allocated in (8, 16, 32):
            kind = "i" if h.pixel_representation else "u"
            dtype = np.dtype(f"<{kind}{h.bits_allocated // 8}")
            count = h.rows * h.cols
            need = h.pixel_offset + count * dtype.itemsize
            if h.file_size < need:
                raise DicomReadError(f"{h.path}: pixel data is truncated: {need} bytes expected, "
                                     f"the file has {h.file_size}")
            raw = np.fromfile(h.path, dtype=dtype, count=count, offset=h.pixel_offset)
            return raw.reshape(h.rows, h.cols)
        if h.frame is not None:
            if h.path not in frame_cache:
                frames = _decode(h)
                frame_cache[h.path] = frames[None] if frames.ndim == 2 else frames
            return frame_cache[h.path][h.frame]
        return _decode(h)


def signed_tilt(axis: np.ndarray, normal: np.ndarray, col: np.ndarray) -> float:
    """The gantry tilt in degrees of a slice axis (position per mm along the normal), signed:
    positive when the slices step down the image's columns (the column direction of
    ImageOrientationPatient; posterior on an axial series) as they advance along the normal,
    the sense of ``generate --tilt``."""
    tilt = float(np.degrees(np.arccos(np.clip(1.0 / np.linalg.norm(axis), -1, 1))))
    off = axis - normal * float(axis @ normal)
    return -tilt if float(off @ col) < 0 else tilt


def series_geometry(info: SeriesInfo) -> dict[str, Any]:
    """What the headers say of a series' slice geometry, without reading pixels: the usual
    step along the normal, the gantry tilt, duplicate positions and the step diagnosis
    (what ``deepseek medical info`` reports)."""
    hs = [h for h in info.slices if h.position is not None and h.orientation is not None]
    if len(hs) < 2:
        return {"slices_with_position": len(hs)}
    ori = hs[0].orientation
    normal = np.cross(ori[:3], ori[3:])  # type: ignore[index]
    normal /= np.linalg.norm(normal)
    pos = np.array([h.position for h in hs])
    along = pos @ normal
    order = np.argsort(along, kind="stable")
    pos, along = pos[order], along[order]
    first = np.concatenate([[True], np.diff(along) >= DUPLICATE_TOL_MM])
    out: dict[str, Any] = {"duplicate_positions": int((~first).sum())}
    pos, along = pos[first], along[first]
    if len(along) < 2:
        return out
    med, found, _ = diagnose_steps(along)
    axis = (pos[-1] - pos[0]) / (along[-1] - along[0])
    col = np.asarray(ori[3:], dtype=np.float64)  # type: ignore[index]
    tilt = signed_tilt(axis, normal, col / np.linalg.norm(col))
    out.update(step_mm=round(med, 4), tilt_deg=round(tilt, 3) if abs(tilt) > 0.05 else 0.0,
               **found)
    return out


def diagnose_steps(along: np.ndarray) -> tuple[float, dict[str, Any], list[str]]:
    """Slice positions along the normal (sorted, distinct) -> the median step, the findings
    (``gaps``, ``spacing_changes``, ``uneven``) and one sentence per kind of problem."""
    findings: dict[str, Any] = {}
    d = np.diff(along)
    med = float(np.median(d))
    tol = max(0.01, 0.01 * med)
    problems: list[str] = []
    gaps, changes, uneven, near = [], [], [], []
    runs = []  # (first step, last step, step): consecutive equal steps
    i = 0
    while i < len(d):
        j = i
        while j + 1 < len(d) and abs(d[j + 1] - d[i]) <= tol:
            j += 1
        runs.append((i, j, float(np.mean(d[i:j + 1]))))
        i = j + 1
    long_runs = [r for r in runs if r[1] > r[0]]
    prev: tuple[int, int, float] | None = None
    for i, j, st in runs:
        if j > i:  # two or more equal steps: the series' step from here on
            if prev is not None and abs(st - prev[2]) > tol:
                changes.append({"at_mm": round(float(along[i]), 4),
                                "from_step_mm": round(prev[2], 4),
                                "to_step_mm": round(st, 4), "steps": j - i + 1})
            prev = (i, j, st)
            continue
        ref = prev[2] if prev is not None else next(
            (r[2] for r in long_runs if r[0] > i), med)
        k = st / ref
        if st < NEAR_DUPLICATE * med:
            near.append({"from_mm": round(float(along[i]), 4), "step_mm": round(st, 4)})
        elif round(k) >= 2 and abs(k - round(k)) <= 0.1:
            gaps.append({"from_mm": round(float(along[i]), 4),
                         "to_mm": round(float(along[i + 1]), 4),
                         "missing_slices": int(round(k)) - 1})
        elif abs(st - ref) > tol:
            uneven.append({"from_mm": round(float(along[i]), 4),
                           "step_mm": round(st, 4)})
    if gaps:
        findings["gaps"] = gaps
        problems.append("missing slices between " + ", ".join(
            f"{g['from_mm']:.3f} and {g['to_mm']:.3f} mm ({g['missing_slices']})"
            for g in gaps[:5]) + f" (median step {med:.4g} mm)")
    if changes:
        findings["spacing_changes"] = changes
        problems.append("the slice step changes " + ", ".join(
            f"from {c['from_step_mm']:.4g} to {c['to_step_mm']:.4g} mm at "
            f"{c['at_mm']:.3f} mm ({c['steps']} steps)" for c in changes[:5]))
    if near:
        findings["near_duplicates"] = near
        problems.append(f"near-duplicate slices ({len(near)} pair(s) closer than "
                        f"{NEAR_DUPLICATE:g} x the median step {med:.4g} mm, e.g. "
                        f"{near[0]['step_mm']:.4g} mm apart at {near[0]['from_mm']:.3f} mm)")
    if uneven:
        findings["uneven"] = uneven
        problems.append(f"uneven slice steps ({len(uneven)} of {d.size} differ from the "
                        f"median {med:.4g} mm by more than {tol:.3g} mm, e.g. "
                        f"{uneven[0]['step_mm']:.4g} mm after {uneven[0]['from_mm']:.3f} mm)")
    return med, findings, problems


def grid_step(along: np.ndarray, step_mm: float | None = None) -> tuple[float, str]:
    """The step of the even grid for slices at ``along`` and the rule that chose it: the
    finest step kept for two or more consecutive steps (the median step when no two agree),
    or ``step_mm``; never below :data:`MIN_GRID_STEP` x the median step."""
    d = np.diff(along)
    med = float(np.median(d))
    floor = MIN_GRID_STEP * med
    if step_mm is not None:
        if step_mm < floor:
            raise GeometryError(f"step_mm={step_mm:g} is finer than half the series' median "
                                f"step ({med:.4g} mm); give at least {floor:.4g} mm")
        return float(step_mm), f"step_mm={step_mm:g}"
    tol = max(0.01, 0.01 * med)
    kept = [float(np.mean(d[i:i + 2])) for i in range(len(d) - 1)
            if abs(d[i + 1] - d[i]) <= tol and d[i] >= floor]
    if kept:
        return min(kept), "the finest step the series keeps for two or more steps"
    return med, "the median step (no two consecutive steps agree)"


def _equalise(arr: np.ndarray, along: np.ndarray, findings: dict[str, Any],
              step_mm: float | None = None, max_bytes: int = MAX_EQUALISED_BYTES,
              source: str = "the series") -> tuple[np.ndarray, float]:
    """Slices at increasing positions ``along`` (mm) onto an even grid from the first to the
    last at :func:`grid_step` (or just below, to end on the last slice); linear between the
    two neighbouring slices. Refuses a grid over ``max_bytes``."""
    span = float(along[-1] - along[0])
    step, rule = grid_step(along, step_mm)
    n = int(np.ceil(span / step - 1e-6)) + 1
    size = n * int(np.prod(arr.shape[1:])) * 4
    if size > max_bytes:
        raise GeometryError(
            f"{source}: equalising {len(along)} slices over {span:.1f} mm at {step:.4g} mm "
            f"({rule}) makes {n} slices of {arr.shape[1]}x{arr.shape[2]}: "
            f"{size / 2**30:.2f} GiB, over the budget of {max_bytes / 2**30:.2f} GiB. Give a "
            "coarser step (step_mm=, --step MM) or a larger budget (max_bytes=)")
    dz = span / (n - 1)
    z = along[0] + dz * np.arange(n)
    z[-1] = along[-1]
    lo = np.clip(np.searchsorted(along, z, side="right") - 1, 0, len(along) - 2)
    w = ((z - along[lo]) / (along[lo + 1] - along[lo])).astype(np.float32)
    w[np.abs(z - along[lo]) < 1e-6] = 0.0  # on an original slice: that slice, exactly
    w[np.abs(z - along[lo + 1]) < 1e-6] = 1.0
    out = np.empty((n, *arr.shape[1:]), dtype=np.float32)
    for k in range(n):
        if w[k] == 0.0:
            out[k] = arr[lo[k]]
        elif w[k] == 1.0:
            out[k] = arr[lo[k] + 1]
        else:
            np.multiply(arr[lo[k]], 1.0 - w[k], out=out[k])
            out[k] += w[k] * arr[lo[k] + 1]
    findings["resampled"] = {"from_slices": len(along), "to_slices": n,
                             "step_mm": round(dz, 6), "rule": rule,
                             "original_positions_mm": [round(float(a), 4) for a in along]}
    return out, dz


def decode_pixels(path: str | Path) -> np.ndarray:
    """Stored pixel values of one DICOM file (all frames, all samples), through pydicom and
    the installed decoders, with errors that name the file and the transfer syntax."""
    import pydicom
    from pydicom.uid import UID

    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise DicomReadError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc
    if "PixelData" not in ds:
        raise DicomReadError(f"{path}: PixelData (7FE0,0010) is missing; the file holds no "
                             "image")
    ts = UID(str(ds.file_meta.get("TransferSyntaxUID", _EXPLICIT_LE)))
    try:
        return ds.pixel_array
    except NotImplementedError as exc:
        raise DecoderMissingError(
            f"{path}: no decoder exists for transfer syntax {ts.name} ({ts}) in this "
            f"installation; convert the file (e.g. dcmdjpeg/gdcmconv) or install "
            f"{DECODER_PACKAGES.get(str(ts), 'python-gdcm')}") from exc
    except (RuntimeError, ImportError) as exc:
        text = str(exc)
        if "missing dependencies" in text or "no pixel data handlers" in text.lower() \
                or isinstance(exc, ImportError):
            pkg = DECODER_PACKAGES.get(str(ts), "python-gdcm")
            raise DecoderMissingError(
                f"{path}: no installed decoder handles transfer syntax {ts.name} ({ts}); "
                f"install one: pip install {pkg}") from exc
        raise DicomReadError(f"{path}: pixel data could not be decoded ({ts.name}); the "
                             f"decoders said: {text}") from exc
    except (ValueError, EOFError, OSError) as exc:
        raise DicomReadError(f"{path}: pixel data is truncated or corrupt ({ts.name}): {exc}") \
            from exc


def _decode(h: SliceHeader) -> np.ndarray:
    arr = decode_pixels(h.path)
    if h.frame is None and arr.shape != (h.rows, h.cols):
        raise DicomReadError(f"{h.path}: decoded pixel data has shape {arr.shape}, expected "
                             f"{(h.rows, h.cols)} (Rows, Columns)")
    return arr
