"""What SimpleITK computes for the detector's grid and masks: the reference the numpy code
(:func:`deepseek.medical.volume.resample_grid`, :mod:`deepseek.medical.morphology`) is held
to, by ``test_numpy_equals_itk.py`` and by ``benchmarks/edge_speed.py``'s ``full-itk`` row."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def _img(a: np.ndarray):
    return sitk.GetImageFromArray(np.ascontiguousarray(a).astype(np.uint8))


def _arr(img) -> np.ndarray:
    return sitk.GetArrayFromImage(img)


def itk_resample(array, a, b, size, interpolator="linear", default_value=-1024.0):
    """SimpleITK's Resample on the grid that resample_grid samples (the same signature)."""
    tf = sitk.AffineTransform(3)
    tf.SetMatrix(np.asarray(a, float).flatten().tolist())
    tf.SetTranslation(np.asarray(b, float).tolist())
    ref = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    src = sitk.GetImageFromArray(np.ascontiguousarray(array))
    kind = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}[interpolator]
    out_type = src.GetPixelID() if interpolator == "nearest" else sitk.sitkFloat32
    return _arr(sitk.Resample(src, ref, tf, kind, float(default_value), out_type))


def itk_labels(m: np.ndarray) -> np.ndarray:
    """Face-connected components, numbered by size (RelabelComponent)."""
    return _arr(sitk.RelabelComponent(sitk.ConnectedComponent(_img(m)), sortByObjectSize=True))


def itk_largest(m: np.ndarray) -> np.ndarray:
    return itk_labels(m) == 1


def itk_fill(m: np.ndarray, per_slice: bool = False) -> np.ndarray:
    if per_slice:
        return np.stack([itk_fill(s) for s in m])
    return _arr(sitk.BinaryFillhole(_img(m))) > 0


def itk_dilate(m: np.ndarray, r: int) -> np.ndarray:
    return _arr(sitk.BinaryDilate(_img(m), [int(r)] * 3)) > 0


def itk_search_mask(array: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """The detector's inside of the body and its dilated lung mask, built with SimpleITK."""
    body = itk_largest(array >= -500.0)
    inside = itk_fill(body) | itk_fill(body, per_slice=True)
    return inside, itk_dilate(inside & (array < -400), r)


def use_simpleitk() -> None:
    """Swap the detector's numpy grid and masks for SimpleITK's, in this process."""
    from deepseek.medical import morphology, volume

    volume.resample_grid = itk_resample
    morphology.largest_component, morphology.fill_holes = itk_largest, itk_fill
    morphology.dilate_ball = itk_dilate
