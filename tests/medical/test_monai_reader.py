"""The medical readers as a MONAI ImageReader: the same array and world as MONAI's own DICOM
reader, and usable in MONAI transforms (tested when MONAI is installed)."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest

from deepseek.medical import DICOMReader, MedicalError

# found, not imported: MONAI takes seconds to import, paid only by a worker that runs these
pytestmark = pytest.mark.skipif(importlib.util.find_spec("monai") is None,
                                reason="MONAI is not installed (the monai extra)")


def DeepSeekReader(**options):  # noqa: N802 - the class, imported when a test runs
    from deepseek.medical.monai_reader import DeepSeekReader as reader

    return reader(**options)


def _load(reader, path):
    from monai.transforms import LoadImage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's notes on optional GPU decoders
        return LoadImage(reader=reader, image_only=True)(str(path))


def test_same_array_and_world_as_monai_pydicom_reader(plain):
    from monai.data import PydicomReader

    ours = _load(DeepSeekReader(), plain.out_dir)
    ref = _load(PydicomReader(), plain.out_dir)
    assert tuple(ours.shape) == tuple(ref.shape)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))
    np.testing.assert_allclose(np.asarray(ours.affine), np.asarray(ref.affine), atol=1e-6)
    assert str(ours.meta["space"]) == "RAS"
    assert ours.meta["series_uid"] == plain.series_uid


def test_lps_affine_and_world_positions(plain):
    vol = DICOMReader(plain.out_dir).load()
    img = _load(DeepSeekReader(affine_lps_to_ras=False), plain.out_dir)
    np.testing.assert_array_equal(np.asarray(img), vol.array.transpose(2, 1, 0))
    # the voxel at array index (x, y, z) = (3, 5, 2) is where the toolkit puts it in LPS
    world = np.asarray(img.affine) @ np.array([3, 5, 2, 1.0])
    np.testing.assert_allclose(world, vol.affine @ np.array([3, 5, 2, 1.0]))
    assert np.asarray(img)[3, 5, 2] == vol.array[2, 5, 3]
    assert str(img.meta["space"]) == "LPS"


def test_in_a_monai_pipeline_with_reader_options(phantom_factory):
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Spacingd

    ph = phantom_factory(missing_slice=True)
    with pytest.raises(MedicalError, match="on_gap"):
        DeepSeekReader().read(ph.out_dir)
    t = Compose([LoadImaged("image", reader=DeepSeekReader(on_gap="resample")),
                 EnsureChannelFirstd("image"), Spacingd("image", pixdim=(2.0, 2.0, 2.5))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = t({"image": str(ph.out_dir)})
    img = out["image"]
    assert img.shape[0] == 1 and img.ndim == 4
    np.testing.assert_allclose(np.abs(np.diag(np.asarray(img.affine))[:3]), (2.0, 2.0, 2.5))


def test_suffixes_and_bad_input(tmp_path, plain):
    r = DeepSeekReader()
    assert r.verify_suffix(plain.out_dir) and r.verify_suffix(("scan.mhd",))
    assert r.verify_suffix("DICOMDIR") and not r.verify_suffix("notes.txt")
    with pytest.raises(TypeError, match="takes the Volume"):
        r.get_data(np.zeros(3))
