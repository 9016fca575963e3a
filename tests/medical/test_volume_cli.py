from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from deepseek.cli import build_cli
from deepseek.medical import DICOMReader, Volume
from deepseek.medical.errors import MedicalError, VolumeFileError
from deepseek.plugins import get_registry, pipelines

from ..shared import assert_labelled


def test_world_voxel_round_trip_vectorised():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    vol = Volume(np.zeros((5, 6, 7), np.float32), (0.7, 0.8, 2.5), (10.0, -20.0, 30.0), q)
    idx = rng.uniform(0, 5, (100, 3))
    world = vol.voxel_to_world(idx)
    assert world.shape == (100, 3)
    np.testing.assert_allclose(vol.world_to_voxel(world), idx, atol=1e-9)
    # index (z, y, x) = (0, 0, 1) is one column step along the first direction column
    np.testing.assert_allclose(vol.voxel_to_world([0, 0, 1]) - vol.origin, q[:, 0] * 0.7)
    np.testing.assert_allclose(vol.voxel_to_world([1, 0, 0]) - vol.origin, q[:, 2] * 2.5)


def test_sitk_round_trip_keeps_geometry():
    vol = Volume(np.arange(60, dtype=np.float32).reshape(3, 4, 5), (1.5, 2.0, 3.0),
                 (1.0, 2.0, 3.0), np.diag([1.0, -1.0, -1.0]))
    back = Volume.from_sitk(vol.to_sitk())
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.spacing == vol.spacing and back.origin == vol.origin
    np.testing.assert_allclose(back.direction, vol.direction)


def test_resample_nearest_for_labels_and_default_outside():
    lab = np.zeros((10, 10, 10), np.uint8)
    lab[3:7, 3:7, 3:7] = 2
    vol = Volume(lab, (1.0, 1.0, 1.0))
    out = vol.resample((0.5, 0.5, 0.5), interpolator="nearest")
    assert out.array.dtype == np.uint8 and set(np.unique(out.array)) == {0, 2}
    img = Volume(np.full((4, 4, 4), 100.0, np.float32), (1, 1, 1))
    coarse = img.resample((3.0, 3.0, 3.0))
    assert coarse.shape == (2, 2, 2) and np.all(coarse.array == 100.0)
    with pytest.raises(MedicalError, match="three positive numbers"):
        img.resample((1.0, 0.0, 1.0))
    with pytest.raises(MedicalError, match="interpolator"):
        img.resample((1, 1, 1), interpolator="cubic")


def test_same_world_point_same_anatomy_after_resampling():
    arr = np.zeros((20, 20, 20), np.float32) - 1000
    arr[12, 5, 8] = 1000.0  # one bright voxel
    vol = Volume(arr, (0.8, 0.9, 2.0), (-5.0, 7.0, 100.0))
    p = vol.voxel_to_world([12, 5, 8])
    fine = vol.resample((0.4, 0.45, 1.0))
    k = np.rint(fine.world_to_voxel(p)).astype(int)
    assert fine.array[tuple(k)] == pytest.approx(1000.0)
    assert fine.origin == vol.origin


def test_sheared_volume_cannot_be_saved(tmp_path):
    d = np.eye(3)
    d[:, 2] = [0.0, 0.2, 1.0]
    vol = Volume(np.zeros((3, 4, 4), np.float32), (1, 1, 1), (0, 0, 0), d)
    assert vol.is_sheared
    with pytest.raises(VolumeFileError, match="straighten"):
        vol.save(tmp_path / "x.nii.gz")
    straight = vol.straighten()
    assert not straight.is_sheared
    straight.save(tmp_path / "x.nii.gz")


def test_bad_volume_files(tmp_path):
    with pytest.raises(VolumeFileError, match="no such file"):
        Volume.load(tmp_path / "nope.nii.gz")
    bad = tmp_path / "bad.mhd"
    bad.write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_SHORT\n"
                   "ElementDataFile = missing.raw\n")
    with pytest.raises(VolumeFileError, match="bad.mhd"):
        Volume.load(bad)
    with pytest.raises(VolumeFileError, match="unsupported file type"):
        Volume(np.zeros((2, 2, 2))).save(tmp_path / "x.png")
    with pytest.raises(MedicalError, match="3-D"):
        Volume(np.zeros((2, 2)))


def test_readers_and_pipeline_registered():
    readers = get_registry("reader")
    for name in ("dicom", "mhd", "nifti", "ct-phantom"):
        assert readers.entry(name).plugin == "medical"
    assert "medical.dicom-io" in pipelines()


def test_phantom_reader_returns_ground_truth(tmp_path):
    vol = get_registry("reader").get("ct-phantom")("synthetic:?size=48&slices=12&n_nodules=2",
                                                   slice_step=4.0, out_dir=tmp_path / "p")
    assert vol.shape == (12, 48, 48) and len(vol.metadata["nodules"]) == 2
    assert vol.spacing[2] == pytest.approx(4.0)
    assert len(list((tmp_path / "p").glob("*.dcm"))) == 12
    assert vol.metadata["annotations"] == str(tmp_path / "p" / "annotations.csv")
    with pytest.raises(MedicalError, match="write_phantom"):
        get_registry("reader").get("ct-phantom")("synthetic:?colour=red")


def test_a_refused_phantom_leaves_no_temporary_folder(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    reader = get_registry("reader").get("ct-phantom")
    for bad in ("synthetic:?colour=red", "synthetic:?size=4"):
        with pytest.raises(MedicalError):
            reader(bad)
    assert list(tmp_path.iterdir()) == []
    kept = reader("synthetic:?size=32&slices=3&n_nodules=0")  # a read keeps its files
    assert Path(kept.metadata["annotations"]).is_file()


def test_cli_phantom_info_convert(tmp_path):
    runner = CliRunner()
    cli = build_cli()
    out = tmp_path / "ph"
    res = runner.invoke(cli, ["medical", "generate", str(out), "--size", "48", "--slices", "10",
                              "--nodules", "2", "--localizer"])
    assert res.exit_code == 0, res.output
    assert "wrote 10 file(s)" in res.output
    res = runner.invoke(cli, ["medical", "info", str(out), "--json"])
    data = json.loads(res.output)
    assert sorted(s["slices"] for s in data["series"]) == [1, 10]
    assert data["skipped"] == {"not DICOM": 2}
    res = runner.invoke(cli, ["medical", "convert", str(out), str(tmp_path / "ct.nii.gz"),
                              "--spacing", "2", "2", "2"])
    assert res.exit_code == 0, res.output
    vol = Volume.load(tmp_path / "ct.nii.gz")
    assert vol.spacing == pytest.approx((2.0, 2.0, 2.0))
    res = runner.invoke(cli, ["medical", "convert", str(out), str(tmp_path / "ct.png")])
    assert res.exit_code == 2 and "unsupported file type" in res.output
    res = runner.invoke(cli, ["medical", "info", str(tmp_path / "ct.nii.gz")])
    assert "shape_zyx" in res.output
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(cli, ["medical", "convert", str(empty), str(tmp_path / "e.nii")])
    assert res.exit_code == 2 and "folder is empty" in res.output


def test_convert_writes_exact_int16_and_a_sidecar(tmp_path):
    from deepseek.medical.synthetic import write_phantom
    from deepseek.medical.volume import read_volume

    runner = CliRunner()
    cli = build_cli()
    plain = write_phantom(tmp_path / "plain", seed=5, size=64, slices=8, slice_step=2.5)
    res = runner.invoke(cli, ["medical", "convert", str(plain.out_dir),
                              str(tmp_path / "ct.nii.gz"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["dtype"] == "int16" and out["sidecar"].endswith("ct.json")
    back = Volume.load(tmp_path / "ct.nii.gz")
    assert back.array.dtype == np.float32  # read back as HU
    assert np.array_equal(back.array, read_volume(plain.out_dir).array)  # exact
    res = runner.invoke(cli, ["medical", "convert", str(plain.out_dir),
                              str(tmp_path / "f.nii.gz"), "--dtype", "float32"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ct.nii.gz").stat().st_size < (tmp_path / "f.nii.gz").stat().st_size
    side = json.loads((tmp_path / "ct.json").read_text())
    assert side["Modality"] == "CT" and side["DataType"] == "int16" and side["Units"] == "HU"
    assert "PatientName" not in side and "PatientID" not in side
    # a tilted series with a gap: straightened and equalised, float32, and the sidecar says so
    tilted = write_phantom(tmp_path / "tilt", seed=6, size=64, slices=9, slice_step=2.5,
                           tilt_deg=-10.0, missing_slice=True)
    res = runner.invoke(cli, ["medical", "convert", str(tilted.out_dir),
                              str(tmp_path / "t.nii"), "--on-gap", "resample", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["dtype"] == "float32"
    side = json.loads((tmp_path / "t.json").read_text())
    assert side["GantryTiltMeasuredDeg"] == pytest.approx(-10.0, abs=0.01)
    assert side["GantryTiltResampledToStraightGrid"] is True
    assert side["SliceEqualisation"]["from_slices"] == 8
    assert side["SliceFindings"]["gaps"][0]["missing_slices"] == 1


@pytest.mark.slow
def test_dicom_io_pipeline_on_phantom(tmp_path):
    res = pipelines().get("medical.dicom-io")(input=None, out_dir=tmp_path, quiet=True)
    assert res.error is None
    assert res.metrics["nodule_centres_dense"] == 1.0
    assert res.quality.unit == "%" and res.quality.value == 100.0
    assert_labelled(res)
    assert all(f.is_file() for f in res.figures)
    vol_dir = tmp_path / "phantom"
    assert DICOMReader(vol_dir).load().shape[0] == int(res.metrics["slices"])


def test_ct_crops_are_labelled_in_the_frame_of_their_titles():
    """A crop's title gives world mm (LPS); its axes must read the same coordinates."""
    from deepseek.medical.figures import _plane_axes

    flipped = Volume(np.zeros((4, 8, 8), np.float32), (0.8, 0.7, 2.0), (-100.0, 50.0, -300.0),
                     np.diag([-1.0, -1.0, 1.0]))
    to_plot, xlabel, ylabel = _plane_axes(flipped, 1)
    for kji in ((1, 0, 0), (1, 3, 5), (2, 7, 2)):
        assert to_plot(kji) == pytest.approx(tuple(flipped.voxel_to_world(kji)[:2]))
    assert (xlabel, ylabel) == ("x (mm, LPS)", "y (mm, LPS)")
    c, s = np.cos(0.3), np.sin(0.3)
    oblique = Volume(np.zeros((4, 8, 8), np.float32), (0.8, 0.7, 2.0),
                     direction=[[c, -s, 0], [s, c, 0], [0, 0, 1]])
    to_plot, xlabel, _ = _plane_axes(oblique, 1)
    assert to_plot((1, 2, 5)) == pytest.approx((5 * 0.8, 2 * 0.7))
    assert xlabel == "along the columns (mm)"
