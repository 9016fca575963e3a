"""The detector's grid and masks on numpy alone (the edge install has no SimpleITK) equal
SimpleITK's: resampling on straight, tilted and oblique grids, components, hole filling,
ball dilation, and the search mask on a phantom chest and on the shared real slab."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepseek.medical import morphology
from deepseek.medical.detector import find_lungs
from deepseek.medical.dicom import DICOMReader
from deepseek.medical.volume import resample_grid

pytest.importorskip("SimpleITK")

from tests.medical.itk_reference import (  # noqa: E402
    itk_dilate,
    itk_fill,
    itk_labels,
    itk_largest,
    itk_resample,
    itk_search_mask,
)

REAL_SLAB = Path(__file__).resolve().parents[3] / "shared" / "data" / "ct" / "LIDC-IDRI-0002"


@pytest.mark.parametrize("seed", range(12))
def test_morphology_equals_simpleitk_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(2, 22, 3))
    m = rng.random(shape) < rng.uniform(0.2, 0.8)
    cc = itk_labels(m)
    lab, sizes = morphology.label(m)
    assert sorted(np.bincount(cc.ravel())[1:].tolist()) == sorted(sizes.tolist())
    assert np.array_equal(cc > 0, lab > 0)
    if len(sizes) < 2 or sizes[0] > sizes[1]:  # a unique largest component
        assert np.array_equal(itk_largest(m), morphology.largest_component(m))
    assert np.array_equal(itk_fill(m), morphology.fill_holes(m))
    per_slice = itk_fill(m, per_slice=True)
    assert np.array_equal(per_slice, morphology.fill_holes(m, per_slice=True))
    # every 3-D hole is a hole in its slices: the detector's mask fills per slice only
    assert not (itk_fill(m) & ~per_slice).any()
    sparse = rng.random(shape) < 0.03
    for r in (1, 2, 4, 12):  # 12: past what uint8 distances hold
        want = itk_dilate(sparse, r)
        assert np.array_equal(want, morphology.dilate_ball(sparse, r)), r


def test_morphology_edge_cases():
    empty = np.zeros((3, 4, 5), bool)
    lab, sizes = morphology.label(empty)
    assert not lab.any() and len(sizes) == 0
    assert not morphology.largest_component(empty).any()
    assert not morphology.dilate_ball(empty, 3).any()
    full = np.ones((3, 4, 5), bool)
    assert morphology.fill_holes(full).all() and morphology.dilate_ball(full, 2).all()
    ring = np.zeros((5, 5), bool)  # 2-D: a square ring's inside is a hole
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
    assert morphology.fill_holes(ring).all()
    ring[0, 2] = False  # opened to the border: no hole
    assert not morphology.fill_holes(ring)[2, 2]
    assert morphology.ball_offsets(1).sum() == 19 and morphology.ball_offsets(10).sum() == 4945
    with pytest.raises(ValueError, match="radius"):
        morphology.dilate_ball(full, -1)
    with pytest.raises(ValueError, match="3-D"):
        morphology.dilate_ball(full[0], 1)


@pytest.mark.parametrize("interp", ["linear", "nearest"])
@pytest.mark.parametrize("kind", ["axis", "oblique"])
def test_resample_grid_equals_simpleitk(interp, kind):
    rng = np.random.default_rng(3)
    src = rng.normal(0, 300, (9, 11, 13)).astype(np.float32)
    if interp == "nearest":
        src = np.round(src).astype(np.int16)
    if kind == "axis":  # scale and shift, with points inside, at and past the half-voxel edge
        a, b = np.diag([0.7, 1.3, 0.45]), np.array([-1.2, -0.6, -0.9])
        size = (22, 11, 26)
    else:
        rot = np.array([[0.96, -0.28, 0.0], [0.28, 0.96, 0.0], [0.0, 0.0, 1.0]])
        a, b = rot @ np.diag([0.8, 0.9, 0.6]) + np.array([[0, 0, 0.1], [0, 0, 0], [0, 0, 0]]), \
            np.array([1.0003, -2.0007, -0.3011])  # no point exactly half-way (a tie)
        size = (17, 13, 16)
    want = itk_resample(src, a, b, size, interp, -1024 if interp == "linear" else 0)
    got = resample_grid(src, a, b, size, interp, -1024 if interp == "linear" else 0)
    assert got.shape == want.shape and got.dtype == want.dtype
    if interp == "nearest":
        assert np.array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, atol=2e-3)


@pytest.mark.slow
@pytest.mark.parametrize("tilt", [0.0, 15.0])
def test_working_grid_and_search_mask_equal_simpleitk_on_a_phantom(phantom_factory, tilt):
    ph = phantom_factory(tilt_deg=tilt, n_nodules=3, size=96, pixel_spacing=3.0)
    vol = DICOMReader(ph.out_dir, progress=False).load()
    iso = vol.resample([1.0, 1.0, 1.0])
    # SimpleITK on the same output grid, from the same geometry
    minv = np.linalg.inv(vol.direction * np.asarray(vol.spacing)[None, :])
    a = minv @ iso.direction @ np.diag(iso.spacing)
    b = minv @ (np.asarray(iso.origin) - np.asarray(vol.origin))
    size = iso.shape[::-1]
    want = itk_resample(vol.array, a, b, size, "linear", -1024.0)
    np.testing.assert_allclose(iso.array, want, atol=2e-3)
    mask, info = find_lungs(iso, dilate_mm=4.0)
    inside, lungs = itk_search_mask(iso.array, 4)
    assert info["found"]
    assert info["inside_ml"] == pytest.approx(inside.sum() / 1000.0, abs=0.06)
    assert np.array_equal(mask, lungs)


@pytest.mark.skipif(not REAL_SLAB.is_dir(), reason="the shared real CT slab is not here")
def test_search_mask_equals_simpleitk_on_the_real_slab():
    vol = DICOMReader(REAL_SLAB, progress=False).load()
    iso = vol.resample([1.0, 1.0, 1.0])
    mask, info = find_lungs(iso)
    inside, lungs = itk_search_mask(iso.array, 10)
    assert info["found"] and info["inside_ml"] == pytest.approx(inside.sum() / 1000.0,
                                                                 abs=0.06)
    assert np.array_equal(mask, lungs)
