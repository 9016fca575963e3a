"""`Volume`: a CT (or any 3-D) image with explicit physical geometry.

Conventions (the whole plugin follows them):

* ``array`` is indexed ``(z, y, x)``: slice, row, column.
* ``spacing`` and ``origin`` are ``(x, y, z)`` in millimetres in the DICOM/ITK patient frame
  (LPS: +x towards the patient's left, +y posterior, +z head).
* ``direction`` is a 3x3 matrix whose columns are the world directions of the column (x),
  row (y) and slice (z) index axes. For an ordinary scan it is orthonormal. For a gantry-tilted
  scan the slice axis is sheared: column 2 is the slice-to-slice step divided by
  ``spacing[2]`` (the spacing measured along the slice normal), so it is longer than 1 and not
  orthogonal to the others, and every voxel's world position stays exact.
* Voxel indices given to or returned by :meth:`Volume.voxel_to_world` and
  :meth:`Volume.world_to_voxel` are in array order ``(z, y, x)``; world points are
  ``(x, y, z)`` mm.

World point of voxel ``(k, j, i)``: ``origin + direction @ (spacing * (i, j, k))``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.medical.errors import MedicalError, VolumeFileError

log = logging.getLogger(__name__)

AIR_HU = -1024.0
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".mhd", ".mha", ".nrrd")


def require_sitk(what: str) -> Any:
    """SimpleITK, or a :class:`MedicalError` that names ``what`` needed it and the install
    that brings it (the edge install leaves it out: DICOM reading, resampling and detection
    run without it)."""
    try:
        import SimpleITK
    except ImportError as exc:
        raise MedicalError(f"{what} needs SimpleITK, which the edge install leaves out: "
                           'pip install "deepseek-medical[itk]" (or the full form, '
                           '"deepseek-medical[full]")') from exc
    return SimpleITK


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


@dataclass
class Volume:
    """A 3-D image with geometry; see the module docstring for the conventions."""

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        if self.array.ndim != 3:
            raise MedicalError(f"Volume needs a 3-D (z, y, x) array, got shape {self.array.shape}")
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        self.origin = tuple(float(o) for o in self.origin)  # type: ignore[assignment]
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise MedicalError(f"spacing must be three positive numbers (x, y, z) mm, got "
                               f"{self.spacing}")
        if abs(np.linalg.det(self.direction)) < 1e-6:
            raise MedicalError("direction matrix is singular")

    # -- geometry ------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(z, y, x)``."""
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix mapping ``(x, y, z, 1)`` index (column, row, slice) to world mm."""
        a = np.eye(4)
        a[:3, :3] = self.direction * np.asarray(self.spacing)[None, :]
        a[:3, 3] = self.origin
        return a

    @property
    def is_sheared(self) -> bool:
        """True for a gantry-tilted (non-orthonormal) grid."""
        d = self.direction
        return not np.allclose(d.T @ d, np.eye(3), atol=1e-6)

    def voxel_to_world(self, zyx: Any) -> np.ndarray:
        """World ``(x, y, z)`` mm of voxel indices given in array order ``(z, y, x)``.

        Accepts one index triple or an ``(N, 3)`` array (fractional indices allowed).
        """
        idx = np.asarray(zyx, dtype=float)
        flat = idx.reshape(-1, 3)[:, ::-1]  # -> (x, y, z) index order
        world = flat @ (self.direction * np.asarray(self.spacing)[None, :]).T + \
            np.asarray(self.origin)
        return world.reshape(idx.shape)

    def world_to_voxel(self, xyz: Any) -> np.ndarray:
        """Continuous voxel indices, array order ``(z, y, x)``, of world points ``(x, y, z)``."""
        pts = np.asarray(xyz, dtype=float)
        m = self.direction * np.asarray(self.spacing)[None, :]
        idx = np.linalg.solve(m, (pts.reshape(-1, 3) - np.asarray(self.origin)).T).T
        return idx[:, ::-1].reshape(pts.shape)

    def world_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Min and max world ``(x, y, z)`` over the voxel centres of the eight corners."""
        nz, ny, nx = self.shape
        corners = np.array([[z, y, x] for z in (0, nz - 1) for y in (0, ny - 1)
                            for x in (0, nx - 1)], dtype=float)
        w = self.voxel_to_world(corners)
        return w.min(axis=0), w.max(axis=0)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.array if dtype is None else self.array.astype(dtype)

    def describe(self) -> dict[str, Any]:
        """Shape, geometry, value range and provenance, for ``deepseek read``."""
        a = self.array
        out: dict[str, Any] = {"shape_zyx": list(self.shape),
                               "spacing_xyz": [float(v) for v in self.spacing],
                               "origin_xyz": [float(v) for v in self.origin],
                               "sheared": self.is_sheared,
                               "min": float(a.min()) if a.size else None,
                               "max": float(a.max()) if a.size else None}
        for key in ("series_uid", "source", "format", "findings"):
            if self.metadata.get(key):
                out[key] = self.metadata[key]
        return out

    def __repr__(self) -> str:
        sheared = ", sheared" if self.is_sheared else ""
        return (f"Volume(shape={self.shape}, dtype={self.array.dtype}, spacing="
                f"{tuple(round(s, 4) for s in self.spacing)}, origin="
                f"{tuple(round(o, 3) for o in self.origin)}{sheared})")

    def with_array(self, array: np.ndarray, **meta: Any) -> Volume:
        """The same geometry with another array (same shape)."""
        if array.shape != self.array.shape:
            raise MedicalError(f"array shape {array.shape} != volume shape {self.shape}")
        return Volume(array, self.spacing, self.origin, self.direction.copy(),
                      {**self.metadata, **meta})

    # -- intensity ------------------------------------------------------------------------
    def normalized(self, window: tuple[float, float] = (-1000.0, 400.0)) -> Volume:
        """Map the HU ``window`` (low, high) to [0, 1], clipping outside it."""
        lo, hi = float(window[0]), float(window[1])
        if not hi > lo:
            raise MedicalError(f"window must be (low, high) with high > low, got {window}")
        arr = np.clip((self.array.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)
        return self.with_array(arr, normalized_window=[lo, hi])

    # -- SimpleITK --------------------------------------------------------------------------
    def to_sitk(self) -> Any:
        """A ``SimpleITK.Image`` with the same array and geometry (a sheared grid is kept)."""
        sitk = require_sitk("Volume.to_sitk")

        img = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(self.direction.flatten().tolist())
        return img

    @classmethod
    def from_sitk(cls, image: Any, metadata: dict[str, Any] | None = None) -> Volume:
        """A Volume from a 3-D ``SimpleITK.Image`` (array, spacing, origin, direction)."""
        sitk = require_sitk("Volume.from_sitk")

        if image.GetDimension() != 3:
            raise MedicalError(f"expected a 3-D image, got {image.GetDimension()}-D")
        return cls(sitk.GetArrayFromImage(image), image.GetSpacing(), image.GetOrigin(),
                   np.asarray(image.GetDirection()).reshape(3, 3), dict(metadata or {}))

    # -- files --------------------------------------------------------------------------------
    def storage_dtype(self) -> str:
        """``"int16"`` when every voxel is a whole number in int16's range (HU read from DICOM
        are), so int16 stores it exactly; else ``"float32"``."""
        a = self.array
        if a.size and np.isfinite(a).all() and a.min() >= -32768 and a.max() <= 32767 \
                and np.array_equal(a, np.round(a)):
            return "int16"
        return "float32"

    def save(self, path: str | Path, dtype: str = "auto") -> Path:
        """Write NIfTI (``.nii``, ``.nii.gz``) or MetaImage (``.mhd`` + ``.raw``, ``.mha``).

        ``dtype``: ``"auto"`` (int16 when that is exact, :meth:`storage_dtype`; else
        float32), ``"float32"``, or ``"int16"`` (rounded to whole HU; a value outside
        int16's range is an error, never clipped)."""
        sitk = require_sitk(f"writing {Path(path).name}")

        path = Path(path)
        if _suffix(path) not in IMAGE_SUFFIXES:
            raise VolumeFileError(f"{path}: unsupported file type; use one of "
                                  f"{', '.join(IMAGE_SUFFIXES)}")
        if dtype not in ("auto", "int16", "float32"):
            raise VolumeFileError(f"dtype={dtype!r}: use auto, int16 or float32")
        if self.is_sheared:
            raise VolumeFileError(
                f"{path}: this volume has a gantry-tilted (sheared) grid, which NIfTI and "
                "MetaImage cannot store; call volume.straighten() first (or read the series "
                "with DICOMReader(..., tilt='resample'))")
        if dtype == "auto":
            dtype = self.storage_dtype()
        arr = np.ascontiguousarray(self.array)
        if dtype == "int16":
            r = np.round(arr)
            if not np.isfinite(r).all() or r.min() < -32768 or r.max() > 32767:
                raise VolumeFileError(f"{path}: values from {np.nanmin(arr):g} to "
                                      f"{np.nanmax(arr):g} do not fit int16; write float32")
            arr = r.astype(np.int16)
        else:
            arr = arr.astype(np.float32, copy=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(self.direction.flatten().tolist())
        try:
            sitk.WriteImage(img, str(path), useCompression=_suffix(path) != ".nii")
        except RuntimeError as exc:
            raise VolumeFileError(f"{path}: could not write: {exc}") from exc
        return path

    @classmethod
    def load(cls, path: str | Path) -> Volume:
        """Read a NIfTI / MetaImage / NRRD file (LUNA16 ``.mhd``/``.raw`` included)."""
        sitk = require_sitk(f"reading {Path(path).name}")

        path = Path(path)
        if not path.is_file():
            raise VolumeFileError(f"{path}: no such file")
        try:
            img = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            detail = next((ln for ln in first if "ERROR" in ln or "rror" in ln), first[-1]
                          if first else "")
            raise VolumeFileError(f"{path}: could not read as {_suffix(path)}: {detail.strip()}"
                                  " (for .mhd, check that the .raw file named by "
                                  "ElementDataFile is beside it and complete)") from exc
        if img.GetNumberOfComponentsPerPixel() != 1:
            raise VolumeFileError(f"{path}: has {img.GetNumberOfComponentsPerPixel()} "
                                  "components per voxel; expected a scalar image")
        if img.GetDimension() == 2:
            img = sitk.JoinSeries([img])
        vol = cls.from_sitk(img)
        stem = path.name[: -len(_suffix(path))]
        vol.metadata.update(source=str(path), series_uid=stem, format=_suffix(path).lstrip("."))
        if vol.array.dtype != np.float32:
            vol.array = vol.array.astype(np.float32)
        return vol

    # -- resampling -------------------------------------------------------------------------
    def resample(self, spacing: Any, interpolator: str = "linear",
                 default_value: float | None = None) -> Volume:
        """Resample onto a straight grid with ``spacing`` (x, y, z) mm, in physical space.

        The output keeps the input's row/column directions (the slice axis becomes the slice
        normal for a tilted input), covers the input's whole extent and starts at the same
        world point for an untilted input, so the same world point shows the same anatomy
        before and after. ``interpolator``: ``"linear"`` for images, ``"nearest"`` for label
        masks (both on numpy, :func:`resample_grid`, equal to SimpleITK's), ``"bspline"``
        (SimpleITK: the ``[itk]`` extra). Outside the field of view: ``default_value``
        (-1024 HU for images, 0 for ``nearest``).
        """
        sp = np.asarray(spacing, dtype=float).reshape(-1)
        if sp.size != 3 or not np.all(sp > 0):
            raise MedicalError(f"spacing must be three positive numbers (x, y, z) mm, got "
                               f"{spacing}")
        if interpolator not in ("linear", "nearest", "bspline"):
            raise MedicalError("interpolator must be one of ['bspline', 'linear', 'nearest']")
        if default_value is None:
            default_value = 0.0 if interpolator == "nearest" else AIR_HU
        # output frame: orthonormal, row/column axes kept, slice axis = their normal
        x_ax = self.direction[:, 0] / np.linalg.norm(self.direction[:, 0])
        y_ax = self.direction[:, 1] - x_ax * (x_ax @ self.direction[:, 1])
        y_ax /= np.linalg.norm(y_ax)
        z_ax = np.cross(x_ax, y_ax)
        if z_ax @ self.direction[:, 2] < 0:
            z_ax = -z_ax
        frame = np.stack([x_ax, y_ax, z_ax], axis=1)
        lo, hi = self._frame_extent(frame)
        size = np.floor((hi - lo) / sp + 1e-6).astype(int) + 1
        out_origin = np.asarray(self.origin) + frame @ lo
        # output index (x, y, z) -> continuous input index (x, y, z): ci = b + a @ i
        minv = np.linalg.inv(self.direction * np.asarray(self.spacing)[None, :])
        a = minv @ frame @ np.diag(sp)
        b = minv @ (out_origin - np.asarray(self.origin))
        if interpolator == "bspline":
            arr = _resample_sitk(self.array, a, b, size, float(default_value))
        else:
            arr = resample_grid(self.array, a, b, size, interpolator, float(default_value))
        out = Volume(arr, tuple(sp.tolist()), tuple(out_origin.tolist()), frame,
                     dict(self.metadata))
        out.metadata["resampled_from"] = {"spacing": list(self.spacing), "shape":
                                          list(self.shape), "sheared": self.is_sheared}
        return out

    def straighten(self) -> Volume:
        """A tilted (sheared) volume resampled onto a straight grid with the same spacing."""
        return self.resample(self.spacing) if self.is_sheared else self

    def _frame_extent(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nz, ny, nx = self.shape
        corners = np.array([[z, y, x] for z in (0, nz - 1) for y in (0, ny - 1)
                            for x in (0, nx - 1)], dtype=float)
        rel = self.voxel_to_world(corners) - np.asarray(self.origin)
        c = rel @ frame  # coordinates along the output axes
        return c.min(axis=0), c.max(axis=0)


def _axis_weights(ci: np.ndarray, n: int, interpolator: str
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Along one axis: for continuous indices ``ci`` into ``n`` samples, the lower and upper
    neighbour, the upper one's weight, and whether the point is inside the input (within
    half a voxel of its first and last sample)."""
    inside = (ci >= -0.5) & (ci < n - 0.5)
    if interpolator == "nearest":
        i0 = np.clip(np.floor(ci + 0.5), 0, n - 1).astype(np.intp)
        return i0, i0, np.zeros(ci.shape), inside
    base = np.clip(np.floor(ci), 0, n - 1)
    w = np.clip(ci - base, 0.0, 1.0)
    i0 = base.astype(np.intp)
    return i0, np.minimum(i0 + 1, n - 1), w, inside


def resample_grid(array: np.ndarray, a: np.ndarray, b: np.ndarray, size: Any,
                  interpolator: str = "linear", default_value: float = AIR_HU) -> np.ndarray:
    """Sample ``array`` (z, y, x) on a new grid of ``size`` (x, y, z) voxels whose voxel
    ``i`` (x, y, z) lies at the input's continuous index ``b + a @ i`` (x, y, z).

    ``linear``: trilinear, in float32; ``nearest``: the nearest voxel (halves round up), in
    the input's type. A point within half a voxel outside the input takes the edge value;
    farther out, ``default_value``. These are the rules of ITK's resampling, so the result
    equals SimpleITK's ``Resample`` (to float rounding); written on numpy so that the edge
    install needs no image library. An axis-aligned grid is done one axis at a time."""
    a = np.asarray(a, float).reshape(3, 3)
    b = np.asarray(b, float).reshape(3)
    nx, ny, nz = (int(v) for v in size)
    src = np.asarray(array)
    dims = (src.shape[2], src.shape[1], src.shape[0])  # x, y, z
    out_type = src.dtype if interpolator == "nearest" else np.dtype(np.float32)
    if np.allclose(a - np.diag(np.diag(a)), 0.0, atol=1e-12 * np.abs(a).max()):
        cols = [b[k] + a[k, k] * np.arange(n) for k, n in enumerate((nx, ny, nz))]
        wts = [_axis_weights(c, d, interpolator) for c, d in zip(cols, dims)]
        x = src if interpolator == "nearest" else src.astype(np.float32, copy=False)
        for k, axis in ((0, 2), (1, 1), (2, 0)):  # x, y, then z
            i0, i1, w, _ = wts[k]
            lo = np.take(x, i0, axis=axis)
            if interpolator == "nearest":
                x = lo
                continue
            shape = [1, 1, 1]
            shape[axis] = -1
            w32 = w.astype(np.float32).reshape(shape)
            hi = np.take(x, i1, axis=axis)
            x = lo + (hi - lo) * w32
        inside = wts[2][3][:, None, None] & wts[1][3][None, :, None] & wts[0][3][None, None, :]
        out = np.asarray(x, out_type)
        out[~inside] = default_value
        return out
    out = np.empty((nz, ny, nx), out_type)
    jj, ii = np.meshgrid(np.arange(ny, dtype=float), np.arange(nx, dtype=float),
                         indexing="ij")
    flat = src.reshape(-1)
    strides = np.array([1, dims[0], dims[0] * dims[1]], np.intp)
    for kz in range(nz):
        ci = [b[k] + a[k, 0] * ii + a[k, 1] * jj + a[k, 2] * kz for k in range(3)]
        parts = [_axis_weights(c, d, interpolator) for c, d in zip(ci, dims)]
        inside = parts[0][3] & parts[1][3] & parts[2][3]
        if interpolator == "nearest":
            val = flat[parts[0][0] * strides[0] + parts[1][0] * strides[1]
                       + parts[2][0] * strides[2]]
        else:
            val = np.zeros((ny, nx))
            for cz in (0, 1):
                for cy in (0, 1):
                    for cx in (0, 1):
                        w = (np.where(cx, parts[0][2], 1 - parts[0][2])
                             * np.where(cy, parts[1][2], 1 - parts[1][2])
                             * np.where(cz, parts[2][2], 1 - parts[2][2]))
                        idx = (parts[0][cx] * strides[0] + parts[1][cy] * strides[1]
                               + parts[2][cz] * strides[2])
                        val += w * flat[idx]
        out[kz] = np.where(inside, val, default_value)
    return out


def _resample_sitk(array: np.ndarray, a: np.ndarray, b: np.ndarray, size: Any,
                   default_value: float) -> np.ndarray:
    """B-spline resampling (SimpleITK): the same grid as :func:`resample_grid`."""
    sitk = require_sitk("interpolator='bspline' (or use 'linear')")
    src = sitk.GetImageFromArray(np.ascontiguousarray(array))  # index-space geometry
    tf = sitk.AffineTransform(3)
    tf.SetMatrix(np.asarray(a, float).flatten().tolist())
    tf.SetTranslation(np.asarray(b, float).tolist())
    ref = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    res = sitk.Resample(src, ref, tf, sitk.sitkBSpline, float(default_value),
                        sitk.sitkFloat32)
    return sitk.GetArrayFromImage(res)


def is_image_file(path: str | Path) -> bool:
    """A NIfTI / MetaImage / NRRD file (read by SimpleITK rather than as DICOM)."""
    p = Path(path)
    return p.is_file() and _suffix(p) in IMAGE_SUFFIXES


def read_image(source: str | Path, *, series_uid: str | None = None, on_gap: str | None = None,
               tilt: str | None = None) -> Volume:
    """NIfTI / MetaImage (LUNA16 ``.mhd``) / NRRD file -> Volume (reader ``mhd``, ``nifti``,
    ``nrrd``). These files hold one regular grid, so the DICOM series options (accepted so
    that one command line serves every input) have nothing to choose or repair."""
    return Volume.load(source)


def sidecar(vol: Volume, dtype: str) -> dict[str, Any]:
    """A BIDS-style JSON sidecar for a written volume, like dcm2niix's: the acquisition
    fields read from DICOM (no patient identifiers), the measured gantry tilt and whether it
    was resampled away, the slice equalisation applied and what the reader found, the voxel
    spacing and data type, and the software."""
    from deepseek.medical import __version__

    meta = vol.metadata
    f = meta.get("findings", {})
    out: dict[str, Any] = dict(meta.get("acquisition", {}))
    if meta.get("series_uid"):
        out["SeriesInstanceUID"] = meta["series_uid"]
    if "gantry_tilt_signed_deg" in f:
        out["GantryTiltMeasuredDeg"] = f["gantry_tilt_signed_deg"]
        out["GantryTiltResampledToStraightGrid"] = not vol.is_sheared
    if "resampled" in f:
        out["SliceEqualisation"] = {k: f["resampled"][k] for k in
                                    ("from_slices", "to_slices", "step_mm", "rule")
                                    if k in f["resampled"]}
    found = {k: f[k] for k in ("gaps", "spacing_changes", "uneven", "near_duplicates",
                               "duplicates_dropped", "padding_voxels") if k in f}
    if found:
        out["SliceFindings"] = found
    if meta.get("resampled_from"):
        out["ResampledFrom"] = meta["resampled_from"]
    out.update(VoxelSpacingXYZmm=[float(v) for v in vol.spacing], DataType=dtype,
               Units="HU", ConversionSoftware="deepseek-medical",
               ConversionSoftwareVersion=__version__)
    return out


def read_volume(source: Any, **options: Any) -> Volume:
    """Open any CT input as a :class:`Volume` in HU, through the reader registry
    (``deepseek.open(source, kind="volume")``): DICOM folders, files and DICOMDIRs,
    ``.mhd``/``.mha``/``.nii``/``.nii.gz``/``.nrrd`` files and ``synthetic:`` phantoms.
    ``options`` go to the reader (DICOM: ``series_uid``, ``on_gap``, ``tilt`` ...)."""
    from deepseek.readers import open as open_source

    return open_source(source, kind="volume", **options)
