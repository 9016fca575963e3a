from __future__ import annotations

import math
import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from deepseek.medical import DICOMReader, Volume, read_volume
from deepseek.medical.dicom import decode_pixels
from deepseek.medical.errors import (
    DecoderMissingError,
    DicomReadError,
    GeometryError,
    MedicalError,
    SeriesError,
)

from .conftest import PYDICOM_FILES


def sitk_read(folder, uid=None):
    r = sitk.ImageSeriesReader()
    names = r.GetGDCMSeriesFileNames(str(folder), uid) if uid else \
        r.GetGDCMSeriesFileNames(str(folder))
    r.SetFileNames(names)
    return r.Execute()


def assert_same_as_sitk(vol: Volume, img) -> None:
    np.testing.assert_array_equal(vol.array, sitk.GetArrayFromImage(img).astype(np.float32))
    np.testing.assert_allclose(vol.origin, img.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(vol.spacing, img.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(vol.direction.flatten(), img.GetDirection(), atol=1e-4)


def test_hu_and_geometry_equal_simpleitk(plain):
    vol = DICOMReader(plain.out_dir).load()
    assert vol.array.dtype == np.float32
    assert_same_as_sitk(vol, sitk_read(plain.out_dir))
    assert vol.metadata["series_uid"] == plain.series_uid
    assert vol.metadata["modality"] == "CT" and vol.metadata["findings"] == {}
    assert vol.array.min() >= -1100 and vol.array.max() > 500  # air .. bone, in HU


def test_shuffled_names_and_instance_numbers(phantom_factory, plain):
    shuffled = phantom_factory(shuffle=True)
    names = [p.name for p in shuffled.files]
    assert not any(n.startswith("slice_") for n in names)
    inst = [int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber) for p in
            sorted(shuffled.files)]
    assert inst != sorted(inst)
    vol = DICOMReader(shuffled.out_dir).load()
    # sorted along the normal: the same volume as the ordered series (same seed)
    np.testing.assert_array_equal(vol.array, DICOMReader(plain.out_dir).load().array)
    assert_same_as_sitk(vol, sitk_read(shuffled.out_dir))


def test_positions_sorted_along_normal(plain):
    vol = DICOMReader(plain.out_dir).load()
    z = [p[2] for p in vol.metadata["slice_positions"]]
    assert z == sorted(z)
    first = vol.voxel_to_world([[k, 0, 0] for k in range(vol.shape[0])])
    np.testing.assert_allclose(first, vol.metadata["slice_positions"], atol=1e-4)


@pytest.mark.parametrize("tilt", [12.0, -20.0])
def test_gantry_tilt_geometry_is_exact(phantom_factory, tilt):
    ph = phantom_factory(tilt_deg=tilt)
    vol = DICOMReader(ph.out_dir).load()
    assert vol.is_sheared
    assert vol.metadata["findings"]["gantry_tilt_deg"] == pytest.approx(abs(tilt), abs=1e-3)
    assert vol.spacing[2] == pytest.approx(3.0 * math.cos(math.radians(tilt)), abs=1e-4)
    for k, f in enumerate(vol.metadata["slice_files"]):
        ipp = np.array([float(v) for v in pydicom.dcmread(f, stop_before_pixels=True)
                        .ImagePositionPatient])
        np.testing.assert_allclose(vol.voxel_to_world([k, 0, 0]), ipp, atol=0.01)
        # and a far pixel too: the in-plane axes are exact as well
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        row, col = np.array(ds.ImageOrientationPatient[:3], float), \
            np.array(ds.ImageOrientationPatient[3:], float)
        far = ipp + 63 * float(ds.PixelSpacing[1]) * row + 40 * float(ds.PixelSpacing[0]) * col
        np.testing.assert_allclose(vol.voxel_to_world([k, 40, 63]), far, atol=0.01)
    pts = np.random.default_rng(0).uniform([0, 0, 0], np.array(vol.shape) - 1, (50, 3))
    np.testing.assert_allclose(vol.world_to_voxel(vol.voxel_to_world(pts)), pts, atol=1e-9)


def test_tilt_resample_gives_a_straight_grid(phantom_factory):
    # 40 slices: the slab every tilted row covers holds the nodules (20 would hold none)
    ph = phantom_factory(tilt_deg=15.0, n_nodules=3, size=96, pixel_spacing=3.0, slices=40,
                         diameters=(8.0, 14.0))
    kept = DICOMReader(ph.out_dir).load()
    straight = DICOMReader(ph.out_dir, tilt="resample").load()
    assert not straight.is_sheared
    np.testing.assert_allclose(straight.direction.T @ straight.direction, np.eye(3), atol=1e-9)
    assert len(ph.nodules) == 3
    # the chest is the untilted series' chest: lungs in every slice (before, the anatomy was
    # fitted to the slab every row covers, and the lowest slices held none)
    lung = ((kept.array > -950) & (kept.array < -700)).mean(axis=(1, 2))
    assert lung.min() > 0.05, np.round(lung, 3)
    for nod in ph.nodules:
        for v in (kept, straight):
            k = np.rint(v.world_to_voxel(nod.center)).astype(int)
            assert v.array[tuple(k)] > -400, (nod, v)


@pytest.mark.parametrize("ts", ["implicit", "big-endian", "deflate", "rle", "jpeg-ls",
                                "jpeg2000"])
def test_transfer_syntaxes_through_phantom(phantom_factory, plain, ts):
    ph = phantom_factory(transfer_syntax=ts)
    got = pydicom.dcmread(ph.files[0], stop_before_pixels=True).file_meta.TransferSyntaxUID
    from deepseek.medical.synthetic import TRANSFER_SYNTAXES

    assert str(got) == TRANSFER_SYNTAXES[ts]
    vol = DICOMReader(ph.out_dir).load()
    np.testing.assert_array_equal(vol.array, DICOMReader(plain.out_dir).load().array)
    np.testing.assert_allclose(vol.origin, DICOMReader(plain.out_dir).load().origin)


MR_VARIANTS = ["MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm",
               "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"]


@pytest.mark.parametrize("name", MR_VARIANTS)
def test_bundled_files_in_every_syntax_read_alike(name):
    ref = DICOMReader(PYDICOM_FILES / "MR_small.dcm", modality=None).load()
    vol = DICOMReader(PYDICOM_FILES / name, modality=None).load()
    assert vol.shape == (1, 64, 64)
    np.testing.assert_array_equal(vol.array, ref.array)
    assert vol.metadata["findings"]["spacing_assumed"] is True


def test_bundled_ct_jpeg2000_and_explicit():
    ct = DICOMReader(PYDICOM_FILES / "CT_small.dcm").load()
    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    np.testing.assert_array_equal(
        ct.array[0], ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    j2k = DICOMReader(PYDICOM_FILES / "693_J2KI.dcm").load()
    assert j2k.shape == (1, 512, 512)
    # values below -2000 HU (outside the scan field) are set to air and counted
    assert j2k.array.min() > -2000 and j2k.metadata["findings"]["padding_voxels"] > 0


def test_jpeg_lossless_and_baseline_decoders_on_bundled_files():
    rle = decode_pixels(PYDICOM_FILES / "SC_rgb_rle.dcm")
    np.testing.assert_array_equal(decode_pixels(PYDICOM_FILES / "SC_rgb_jpeg_gdcm.dcm"), rle)
    lossy = decode_pixels(PYDICOM_FILES / "SC_rgb_jpeg_dcmtk.dcm")  # JPEG baseline
    assert lossy.shape == rle.shape and np.abs(lossy.astype(int) - rle).max() <= 10


def test_rgb_file_is_refused_by_name():
    with pytest.raises(MedicalError):
        DICOMReader(PYDICOM_FILES / "SC_rgb_jpeg_gdcm.dcm", modality=None).load()


def test_enhanced_multiframe_reads_like_classic(phantom_factory, plain):
    ph = phantom_factory(enhanced=True)
    assert len(ph.files) == 1
    vol = DICOMReader(ph.files[0]).load()
    ref = DICOMReader(plain.out_dir).load()
    np.testing.assert_array_equal(vol.array, ref.array)
    np.testing.assert_allclose(vol.origin, ref.origin, atol=1e-4)
    np.testing.assert_allclose(vol.spacing, ref.spacing, atol=1e-4)
    assert vol.metadata["sop_class"] == "1.2.840.10008.5.1.4.1.1.2.1"


def test_dicomdir(phantom_factory, plain):
    ph = phantom_factory(dicomdir=True)
    assert ph.dicomdir is not None and ph.dicomdir.is_file()
    vol = DICOMReader(ph.dicomdir).load()
    np.testing.assert_array_equal(vol.array, DICOMReader(plain.out_dir).load().array)


def test_series_selection_and_listing(phantom_factory, caplog):
    ph = phantom_factory(extra_series=True, localizer=True)
    found = DICOMReader.series(ph.out_dir)
    assert len(found) == 3
    by = {(s.uid, s.orientation): s for s in found}
    assert by[(ph.series_uid, "axial")].n_slices == 20
    assert by[(ph.series_uid, "coronal")].n_slices == 1  # the localizer, same UID
    with caplog.at_level("INFO", logger="deepseek.medical.dicom"):
        vol = DICOMReader(ph.out_dir).load()
    assert vol.shape[0] == 20 and vol.metadata["series_uid"] == ph.series_uid
    assert "skipping series" in caplog.text and "not DICOM" in caplog.text
    other = DICOMReader(ph.out_dir, series_uid=ph.extra_series[0]).load()
    assert other.spacing[2] == pytest.approx(5.0)
    with pytest.raises(SeriesError, match="no series with SeriesInstanceUID 1.2.3"):
        DICOMReader(ph.out_dir, series_uid="1.2.3").load()


def test_phantom_round_trip_nodules_dense(phantom_factory):
    ph = phantom_factory(size=192, slices=48, slice_step=2.0, n_nodules=6,
                         diameters=(6.0, 24.0), seed=3)
    reader = DICOMReader(ph.out_dir)
    vol = reader.load()
    assert len(ph.nodules) == 6
    for spacing in [None, (1.0, 1.0, 1.0), (1.5, 1.5, 2.5), (0.7, 0.7, 1.25)]:
        v = vol if spacing is None else reader.to_voxels(spacing=spacing)
        for nod in ph.nodules:
            k = np.rint(v.world_to_voxel(nod.center)).astype(int)
            assert v.array[tuple(k)] > -400, (spacing, nod)


def test_seed_usage_normalize_and_to_voxels(plain):
    reader = DICOMReader(path=plain.out_dir)
    images = reader.load(normalize=True, window=[-1000, 1000])
    assert images.array.min() >= 0 and images.array.max() <= 1
    hu = reader.volume.array
    np.testing.assert_allclose(images.array, np.clip((hu + 1000) / 2000, 0, 1), atol=1e-6)
    voxels = reader.to_voxels(spacing=[2.0, 2.0, 2.0])
    assert voxels.spacing == (2.0, 2.0, 2.0)
    assert 0 <= voxels.array.min() and voxels.array.max() <= 1
    np.testing.assert_allclose(voxels.origin, reader.volume.origin)
    raw = reader.load(normalize=False)
    assert raw.array.dtype == np.float32 and raw.array.min() < -900
    with pytest.raises(MedicalError, match="high > low"):
        reader.load(normalize=True, window=[100, -100])


def test_per_slice_rescale(phantom_factory, plain):
    ph = phantom_factory(vary_rescale=True)
    icpts = {float(pydicom.dcmread(f, stop_before_pixels=True).RescaleIntercept)
             for f in ph.files}
    assert len(icpts) > 1
    np.testing.assert_array_equal(DICOMReader(ph.out_dir).load().array,
                                  DICOMReader(plain.out_dir).load().array)


def test_out_of_field_and_padding_become_air(phantom_factory):
    ph = phantom_factory(out_of_field=True)
    vol = DICOMReader(ph.out_dir).load()
    assert vol.array.min() > -1500  # the -3024 outside the field of view are gone
    assert vol.metadata["findings"]["padding_voxels"] > 0
    raw = sitk.GetArrayFromImage(sitk_read(ph.out_dir))
    assert raw.min() == -3024  # what the files hold
    corner = vol.array[:, 0, 0]
    assert np.all(corner == -1024.0)


def test_read_volume_dispatch_and_formats(plain, tmp_path):
    vol = read_volume(plain.out_dir)
    for name in ("ct.nii.gz", "ct.nii", "1.2.3.mhd"):
        path = vol.save(tmp_path / name)
        back = read_volume(path)
        np.testing.assert_array_equal(back.array, vol.array)
        np.testing.assert_allclose(back.origin, vol.origin, atol=1e-4)
        np.testing.assert_allclose(back.spacing, vol.spacing, atol=1e-5)
        np.testing.assert_allclose(back.direction, vol.direction, atol=1e-6)
    assert read_volume(tmp_path / "1.2.3.mhd").metadata["series_uid"] == "1.2.3"  # LUNA16 id
    assert (tmp_path / "1.2.3.raw").is_file() or (tmp_path / "1.2.3.zraw").is_file()


# ------------------------------------------------------------------------------ bad input
def test_non_dicom_files_are_skipped_and_counted(plain, tmp_path):
    d = tmp_path / "mixed"
    shutil.copytree(plain.out_dir, d)
    (d / "notes.txt").write_text("hello")
    (d / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    reader = DICOMReader(d)
    vol = reader.load()
    assert vol.shape[0] == 20
    assert reader.skipped["not DICOM"] == 4  # + annotations.csv and nodules.csv


def test_truncated_file(plain, tmp_path):
    d = tmp_path / "trunc"
    shutil.copytree(plain.out_dir, d)
    victim = d / "slice_0005.dcm"
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(DicomReadError, match=r"slice_0005.dcm: pixel data is truncated"):
        DICOMReader(d).load()
    with pytest.raises(DicomReadError, match="MR_truncated.dcm: pixel data is truncated"):
        DICOMReader(PYDICOM_FILES / "MR_truncated.dcm", modality=None).load()


@pytest.mark.parametrize("keep, what", [(140, "its file meta information"),
                                        (600, "a CT Image Storage object")])
def test_file_cut_inside_its_header_is_named(plain, tmp_path, keep, what):
    # pydicom reads such a file quietly as a dataset without rows: it must not be skipped as
    # "not an image" (the series would lose a slice without a word)
    d = tmp_path / "cut_header"
    shutil.copytree(plain.out_dir, d)
    victim = d / "slice_0007.dcm"
    victim.write_bytes(victim.read_bytes()[:keep])
    with pytest.raises(DicomReadError, match=rf"slice_0007.dcm: the file ends inside its "
                                             rf"header \({keep} bytes; {what}"):
        DICOMReader(d).load()


def test_dicomdir_that_cannot_be_read_says_to_pass_the_folder(phantom_factory, tmp_path):
    ph = phantom_factory(dicomdir=True)
    d = tmp_path / "fileset"
    shutil.copytree(ph.dicomdir.parent, d)
    images = sorted(f for f in d.rglob("IM*") if f.is_file())
    images[-1].unlink()
    with pytest.raises(SeriesError, match=r"DICOMDIR references 1 missing files, e\.g\. .*"
                                          r"IM\d+; pass the folder that holds the images"):
        DICOMReader(d / "DICOMDIR").load()
    (d / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x00\x00garbage")
    with pytest.raises(SeriesError, match=r"unreadable DICOMDIR .*pass the folder that holds "
                                          r"the images instead"):
        DICOMReader(d / "DICOMDIR").load()


def test_truncated_compressed_file(phantom_factory, tmp_path):
    ph = phantom_factory(transfer_syntax="rle")
    d = tmp_path / "trunc_rle"
    shutil.copytree(ph.out_dir, d)
    victim = d / "slice_0003.dcm"
    victim.write_bytes(victim.read_bytes()[:-400])
    with pytest.raises(DicomReadError, match="slice_0003.dcm"):
        DICOMReader(d).load()


def _rewrite(path, **changes):
    ds = pydicom.dcmread(path)
    for k, v in changes.items():
        if v is None:
            delattr(ds, k)
        else:
            setattr(ds, k, v)
    ds.save_as(path)


@pytest.mark.parametrize("field,pattern", [
    ("PixelData", "PixelData .* is missing"),
    ("ImagePositionPatient", "ImagePositionPatient is missing"),
    ("ImageOrientationPatient", "ImageOrientationPatient is missing"),
    ("PixelSpacing", "PixelSpacing is missing"),
])
def test_missing_fields_name_file_and_field(plain, tmp_path, field, pattern):
    d = tmp_path / "missing"
    shutil.copytree(plain.out_dir, d)
    _rewrite(d / "slice_0007.dcm", **{field: None})
    with pytest.raises(DicomReadError, match=f"slice_0007.dcm.*{pattern}"):
        DICOMReader(d).load()


def test_empty_folder_and_no_ct(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SeriesError, match="folder is empty"):
        DICOMReader(tmp_path / "empty").load()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    with pytest.raises(SeriesError, match="no DICOM images found"):
        DICOMReader(tmp_path / "junk").load()
    mr = tmp_path / "mr"
    mr.mkdir()
    shutil.copy(PYDICOM_FILES / "MR_small.dcm", mr)
    with pytest.raises(SeriesError, match=r"no CT series found \(modalities present: MR\)"):
        DICOMReader(mr).load()
    with pytest.raises(SeriesError, match="no such file"):
        DICOMReader(tmp_path / "nowhere").load()


def test_single_slice_is_flagged(plain, caplog):
    vol = DICOMReader([plain.files[3]]).load()
    assert vol.shape == (1, 64, 64)
    assert vol.metadata["findings"]["spacing_assumed"] is True
    assert vol.spacing[2] == pytest.approx(3.0)  # from SliceThickness


def test_mixed_sizes_in_one_series(plain, tmp_path):
    d = tmp_path / "mixed_sizes"
    shutil.copytree(plain.out_dir, d)
    for n in (2, 4, 6, 8):
        p = d / f"slice_{n:04d}.dcm"
        ds = pydicom.dcmread(p)
        arr = ds.pixel_array[:32, :32].copy()
        ds.Rows = ds.Columns = 32
        ds.PixelData = arr.tobytes()
        ds.save_as(p)
    with pytest.raises(SeriesError, match="mixes image sizes"):
        DICOMReader(d).load()


def test_gap_is_an_error_or_resampled(phantom_factory, plain, caplog):
    ph = phantom_factory(missing_slice=True)
    with pytest.raises(GeometryError, match=r"missing slices between .* \(1\) \(median step 3 "
                                            r"mm\).*--on-gap resample"):
        DICOMReader(ph.out_dir).load()
    vol = DICOMReader(ph.out_dir, on_gap="resample").load()
    full = DICOMReader(plain.out_dir).load()
    f = vol.metadata["findings"]
    assert vol.shape == full.shape and vol.spacing == pytest.approx(full.spacing)
    assert f["gaps"][0]["missing_slices"] == 1 and f["resampled"]["from_slices"] == 19
    assert len(f["resampled"]["original_positions_mm"]) == 19
    grid = np.asarray(vol.metadata["slice_positions"])[:, 2]
    orig = f["resampled"]["original_positions_mm"]
    missing = [i for i, z in enumerate(grid) if min(abs(z - o) for o in orig) > 1e-3]
    assert len(missing) == 1 and 0 < missing[0] < 19
    k = missing[0]  # the missing slice lies halfway between its neighbours
    assert np.allclose(vol.array[k], (vol.array[k - 1] + vol.array[k + 1]) / 2, atol=1e-3)
    assert np.allclose(vol.affine, full.affine)
    assert np.allclose(vol.metadata["slice_positions"], full.metadata["slice_positions"])
    with caplog.at_level("WARNING"):
        warned = DICOMReader(ph.out_dir, on_gap="warn").load()
    assert np.array_equal(warned.array, vol.array) and "equalised" in caplog.text


def test_a_tilted_series_with_a_gap_is_equalised_in_its_own_geometry(phantom_factory):
    tilted = DICOMReader(phantom_factory(tilt_deg=15.0).out_dir).load()
    gap = DICOMReader(phantom_factory(tilt_deg=15.0, missing_slice=True).out_dir,
                      on_gap="resample").load()
    f = gap.metadata["findings"]
    assert f["gantry_tilt_deg"] == pytest.approx(tilted.metadata["findings"]["gantry_tilt_deg"])
    assert gap.shape == tilted.shape and gap.is_sheared
    assert np.allclose(gap.affine, tilted.affine, atol=1e-4)
    assert np.allclose(gap.metadata["slice_positions"], tilted.metadata["slice_positions"],
                       atol=1e-4)


def _set_z(path, z):
    ds = pydicom.dcmread(path)
    ipp = [float(v) for v in ds.ImagePositionPatient]
    ds.ImagePositionPatient = [ipp[0], ipp[1], z]
    ds.save_as(path)


def test_a_change_of_slice_step_is_named_and_equalised(plain, tmp_path):
    d = tmp_path / "step"
    shutil.copytree(plain.out_dir, d)
    files = sorted(d.glob("slice_*.dcm"), key=lambda f: float(pydicom.dcmread(f).
                                                                ImagePositionPatient[2]))
    z = [3.0 * i if i < 10 else 27.0 + 6.0 * (i - 9) for i in range(len(files))]
    for f, zz in zip(files, z):
        _set_z(f, zz)
    with pytest.raises(GeometryError, match=r"the slice step changes from 3 to 6 mm at 27\.000 "
                                            r"mm \(10 steps\)"):
        DICOMReader(d).load()
    orig = [pydicom.dcmread(f) for f in files]
    vol = DICOMReader(d, on_gap="resample").load()
    res = vol.metadata["findings"]["resampled"]
    assert vol.shape[0] == 30 and vol.spacing[2] == pytest.approx(3.0)  # (87 mm / 3) + 1
    assert res["original_positions_mm"] == pytest.approx(z)
    hu = [o.pixel_array * float(o.RescaleSlope) + float(o.RescaleIntercept) for o in orig]
    # slices on the grid are the originals: 0..27 mm every 3 mm, then every other grid point
    for k, i in ((0, 0), (9, 9), (11, 10), (29, 19)):
        assert np.allclose(vol.array[k], hu[i], atol=1e-3), (k, i)
    # 30 mm lies halfway between 27 and 33 mm
    assert np.allclose(vol.array[10], 0.5 * hu[9] + 0.5 * hu[10], atol=1e-2)
    assert vol.voxel_to_world([29, 0, 0])[2] == pytest.approx(87.0)


def test_info_reports_tilt_gaps_and_step_changes(phantom_factory, plain, tmp_path):
    import json

    from click.testing import CliRunner

    from deepseek.cli import build_cli

    def info(path):
        res = CliRunner().invoke(build_cli(), ["medical", "info", str(path), "--json"])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)["series"][0]["geometry"]

    assert info(plain.out_dir) == {"duplicate_positions": 0, "step_mm": 3.0, "tilt_deg": 0.0}
    g = info(phantom_factory(tilt_deg=15.0, missing_slice=True).out_dir)
    assert g["tilt_deg"] == pytest.approx(15.0, abs=0.01)
    # the sign is kept: the other way is -15 degrees (the sense of generate --tilt)
    assert info(phantom_factory(tilt_deg=-15.0).out_dir)["tilt_deg"] == pytest.approx(
        -15.0, abs=0.01)
    assert g["gaps"][0]["missing_slices"] == 1
    d = tmp_path / "step"
    shutil.copytree(plain.out_dir, d)
    files = sorted(d.glob("slice_*.dcm"), key=lambda f: float(pydicom.dcmread(f).
                                                                ImagePositionPatient[2]))
    for i, f in enumerate(files):
        _set_z(f, 3.0 * i if i < 10 else 27.0 + 6.0 * (i - 9))
    g = info(d)
    assert g["spacing_changes"] == [{"at_mm": 27.0, "from_step_mm": 3.0, "to_step_mm": 6.0,
                                     "steps": 10}]
    res = CliRunner().invoke(build_cli(), ["medical", "info", str(d)])
    assert "step 3->6 mm at 27.0" in res.output


def test_duplicates_identical_are_dropped_and_conflicting_refused(plain, tmp_path):
    d = tmp_path / "dup"
    shutil.copytree(plain.out_dir, d)
    shutil.copy(d / "slice_0004.dcm", d / "same_instance.dcm")  # the same SOPInstanceUID
    ds = pydicom.dcmread(d / "slice_0007.dcm")
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(d / "copy_of_7.dcm")  # another instance, the same pixels
    vol = DICOMReader(d).load()
    dropped = vol.metadata["findings"]["duplicates_dropped"]
    assert vol.shape[0] == 20 and len(dropped) == 2
    assert {x["reason"] for x in dropped} == {"same SOPInstanceUID",
                                             "same position, identical pixels"}
    assert np.array_equal(vol.array, DICOMReader(plain.out_dir).load().array)
    arr = ds.pixel_array.copy()
    arr[0, 0] += 1
    ds.PixelData = arr.tobytes()
    ds.save_as(d / "copy_of_7.dcm")
    with pytest.raises(GeometryError, match=r"two different images at one position .*"
                                            r"(slice_0007|copy_of_7)\.dcm and "):
        DICOMReader(d).load()


def test_uneven_spacing(plain, tmp_path):
    d = tmp_path / "uneven"
    shutil.copytree(plain.out_dir, d)
    p = d / "slice_0010.dcm"
    ds = pydicom.dcmread(p)
    ipp = [float(v) for v in ds.ImagePositionPatient]
    ds.ImagePositionPatient = [ipp[0], ipp[1], ipp[2] + 0.8]
    ds.save_as(p)
    with pytest.raises(GeometryError, match="uneven slice steps"):
        DICOMReader(d).load()
    f = DICOMReader(d, on_gap="resample").load().metadata["findings"]
    # the grid keeps the series' own 3 mm step, not the stray 2.2 mm one
    assert "uneven" in f and f["resampled"]["step_mm"] == pytest.approx(3.0)
    assert f["resampled"]["to_slices"] == f["resampled"]["from_slices"]


def test_near_duplicates_never_explode_the_grid(plain, tmp_path):
    d = tmp_path / "near"
    shutil.copytree(plain.out_dir, d)
    p = d / "slice_0010.dcm"
    ds = pydicom.dcmread(p)
    nxt = pydicom.dcmread(d / "slice_0011.dcm")
    ipp = [float(v) for v in ds.ImagePositionPatient]
    # 0.05 mm from its neighbour: the old smallest-step rule made 20 slices into ~1,100
    ds.ImagePositionPatient = [ipp[0], ipp[1], float(nxt.ImagePositionPatient[2]) - 0.05]
    ds.save_as(p)
    with pytest.raises(GeometryError, match=r"near-duplicate slices \(1 pair\(s\) closer"):
        DICOMReader(d).load()
    vol = DICOMReader(d, on_gap="resample").load()
    f = vol.metadata["findings"]
    assert f["near_duplicates"][0]["step_mm"] == pytest.approx(0.05, abs=1e-3)
    assert vol.shape[0] == 20 and f["resampled"]["step_mm"] == pytest.approx(3.0)
    assert "finest step the series keeps" in f["resampled"]["rule"]
    # an explicit step, never finer than half the median, and a memory budget
    assert DICOMReader(d, on_gap="resample", step_mm=1.5).load().shape[0] == 39
    with pytest.raises(GeometryError, match="finer than half the series' median step"):
        DICOMReader(d, on_gap="resample", step_mm=0.5).load()
    with pytest.raises(GeometryError, match=r"makes 20 slices of .* GiB, over the budget .*"
                                            r"--step MM"):
        DICOMReader(d, on_gap="resample", max_bytes=10_000).load()


def test_missing_decoder_names_syntax_and_package(plain, tmp_path, monkeypatch):
    d = tmp_path / "nodecoder"
    shutil.copytree(plain.out_dir, d)
    from deepseek.medical.synthetic import write_phantom

    rle = write_phantom(tmp_path / "rle", **{"size": 64, "slices": 3, "n_nodules": 0,
                                             "transfer_syntax": "rle"})
    from pydicom.pixels.decoders import RLELosslessDecoder

    monkeypatch.setattr(RLELosslessDecoder, "_available", {}, raising=False)
    monkeypatch.setattr(type(RLELosslessDecoder), "is_available",
                        property(lambda self: False), raising=False)
    monkeypatch.setattr(RLELosslessDecoder, "_validate_plugins",
                        lambda *a, **k: (_ for _ in ()).throw(
                            RuntimeError("Unable to decompress 'RLE Lossless' pixel data "
                                         "because all plugins are missing dependencies")))
    with pytest.raises(DecoderMissingError, match=r"RLE Lossless .*pip install .*rle"):
        DICOMReader(rle.out_dir).load()


def test_bad_options(plain):
    with pytest.raises(MedicalError, match="on_gap"):
        DICOMReader(plain.out_dir, on_gap="ignore")
    with pytest.raises(MedicalError, match="tilt"):
        DICOMReader(plain.out_dir, tilt="fix")


def test_an_empty_file_is_reported_as_skipped_not_as_a_missing_slice(plain, tmp_path):
    d = tmp_path / "empty"
    shutil.copytree(plain.out_dir, d)
    (d / "slice_0010.dcm").write_bytes(b"")  # an interrupted copy
    (d / "notes.txt").write_text("not an image\n")
    reader = DICOMReader(d)
    with pytest.raises(GeometryError, match=r"missing slices .*files skipped in the folder: "
                                            r"1 empty file \(0 bytes\), \d+ not DICOM; a "
                                            r"missing slice may be one of them"):
        reader.load()
    assert reader.skipped["empty file (0 bytes)"] == 1 and reader.skipped["not DICOM"] >= 1
