from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deepseek import ModelLoader
from deepseek.cli import build_cli
from deepseek.medical import DICOMReader, MedicalError, NoduleDetector, Volume, read_volume
from deepseek.medical.nodule_data import Luna16Patches, PatchDataset, make_targets
from deepseek.medical.nodule_model import (
    AttentionGate,
    ChannelAttention,
    SpatialAttention,
    build,
)
from deepseek.medical.nodule_training import train_detector
from deepseek.medical.synthetic import ChestPhantom, render_volume, write_phantom
from deepseek.plugins import get_registry


def test_model_shapes_and_attention_blocks():
    net = build(base=4)
    out = net(torch.zeros(2, 1, 32, 32, 32))
    assert out["heatmap"].shape == (2, 1, 16, 16, 16)
    assert out["size"].shape == (2, 1, 16, 16, 16) and out["offset"].shape == (2, 3, 16, 16, 16)
    kinds = {type(m) for m in net.modules()}
    assert {ChannelAttention, SpatialAttention, AttentionGate} <= kinds


def test_targets_peak_at_the_centre():
    t = make_targets([np.array([10.0, 20.4, 31.0])], [8.0])
    peak = np.unravel_index(np.argmax(t["heatmap"]), t["heatmap"].shape)
    assert peak == (5, 10, 16) and t["heatmap"][peak] == 1.0 and t["mask"].sum() == 1
    assert t["size"][peak] == pytest.approx(np.log(8.0))
    np.testing.assert_allclose(t["offset"][(slice(None), *peak)], [0.0, 0.2, -0.5], atol=1e-6)


@pytest.mark.slow
def test_training_steps_lower_the_loss(tmp_path):
    res = train_detector(tmp_path, n_patches=8, epochs=3, batch_size=8, val_scans=0,
                         workers=1, base=4, lr=5e-3, progress=False, hard_negatives=0)
    losses = [h["train_loss"] for h in res["history"]]
    assert losses[-1] < losses[0], losses
    assert (tmp_path / "model.safetensors").is_file()
    m = ModelLoader.load(tmp_path / "model.safetensors")
    assert m.architecture == "lung-nodule-attention" and m.config == {"base": 4}
    # resume continues from the last checkpoint
    res2 = train_detector(tmp_path, n_patches=8, epochs=4, batch_size=8, val_scans=0,
                          workers=1, base=4, progress=False, resume=True, hard_negatives=0)
    assert [h["epoch"] for h in res2["history"]] == [1, 2, 3, 4]
    # --init fine-tunes from those weights in a fresh run; wrong-sized weights are refused
    first = ModelLoader.load(tmp_path / "model.safetensors").module.state_dict()
    res3 = train_detector(tmp_path / "ft", n_patches=8, epochs=1, batch_size=8, val_scans=0,
                          workers=1, base=4, lr=1e-9, progress=False,
                          init=tmp_path / "model.safetensors")
    tuned = ModelLoader.load(res3["model"]).module.state_dict()
    k = next(n for n in first if n.endswith("weight"))
    assert torch.allclose(first[k], tuned[k], atol=1e-5)
    with pytest.raises(MedicalError, match="'base': 8"):
        train_detector(tmp_path / "bad", n_patches=8, epochs=1, val_scans=0, workers=1, base=8,
                       progress=False, init=tmp_path / "model.safetensors")


def test_registered_with_packaged_weights():
    entry = get_registry("model").entry("lung-nodule-attention")
    assert entry.meta["weights"], "packaged weights are missing"
    m = ModelLoader.load("lung-nodule-attention")
    assert sum(p.numel() for p in m.module.parameters()) > 100_000


@pytest.fixture(scope="module")
def detector():
    # thin slabs fit 64-voxel windows (a 96 window would be mostly padding); no TTA (its
    # geometry has a test of its own): the world positions are what these tests check
    # the packaged ONNX export (tested equal to the PyTorch model below; faster on CPU)
    return NoduleDetector(ModelLoader.load("lung-nodule-attention", framework="onnx"),
                          progress=False, tta_top=0, window=64, overlap=8)


def _check_found(cands, nodules, min_d=8.0):
    for n in nodules:
        if n["diameter_mm"] < min_d:
            continue
        c = np.asarray(n["center"])
        d = [np.linalg.norm(np.subtract(k["xyz"], c)) for k in cands if k["probability"] > 0.3]
        assert d and min(d) <= n["diameter_mm"] / 2, (n, sorted(d)[:3])


@pytest.mark.slow
def test_world_positions_anisotropic_volume(detector):
    # a 40 mm slab (one row of windows) keeps the test fast; the geometry is the same
    ph = ChestPhantom(seed=700_001, n_nodules=3, diameters=(9.0, 14.0), z_range=(-20, 20))
    vol = render_volume(ph, (0.8, 0.8, 2.5), (17, 400, 400), seed=1)
    cands = detector.detect(vol, series_uid="aniso")
    assert len(cands) <= 100
    assert sum(n["diameter_mm"] >= 8 for n in vol.metadata["nodules"]) >= 2
    _check_found(cands, vol.metadata["nodules"])


@pytest.mark.slow
def test_world_positions_tilted_and_shuffled_series(detector, tmp_path):
    # the slab is thick enough for the nodules to lie inside what every tilted row covers
    ph = write_phantom(tmp_path / "ct", seed=700_002, size=240, pixel_spacing=4 / 3, slices=26,
                       slice_step=2.5, n_nodules=3, diameters=(9.0, 12.0), tilt_deg=8.0,
                       shuffle=True)
    assert len(ph.nodules) == 3
    vol = DICOMReader(tmp_path / "ct").load()
    assert vol.is_sheared  # the tilt is kept exactly, as a sheared grid
    cands = detector.detect(vol)
    _check_found(cands, [n.__dict__ for n in ph.nodules])


def _luna16_layout(root, subsets=2, shape=(30, 240, 240)):
    rows = ["seriesuid,coordX,coordY,coordZ,diameter_mm"]
    half = shape[0]  # mm: the slab is shape[0] slices of 2 mm
    for i in range(subsets):
        ph = ChestPhantom(seed=800 + i, n_nodules=2, z_range=(-half, half))
        vol = render_volume(ph, (1.5, 1.5, 2.0), shape, seed=i)
        uid = f"1.2.3.{i}"
        vol.save(root / f"subset{i}" / f"{uid}.mhd")
        rows += [f"{uid},{n.center[0]},{n.center[1]},{n.center[2]},{n.diameter_mm}"
                 for n in ph.nodules]
    (root / "annotations.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.slow
def test_luna16_layout_patches_and_cli_training(tmp_path):
    root = _luna16_layout(tmp_path / "luna")
    arrays = Luna16Patches(root).arrays(6, seed=0, per_scan=3)
    assert arrays["x"].shape == (6, 48, 48, 48) and len(PatchDataset(arrays)) == 6
    res = CliRunner().invoke(build_cli(), [
        "medical", "train", "--out", str(tmp_path / "run"), "--luna16", str(root),
        "--patches", "8", "--epochs", "1", "--val-scans", "0", "--batch-size", "4", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["history"][0]["epoch"] == 1
    bad = tmp_path / "empty"
    bad.mkdir()
    res = CliRunner().invoke(build_cli(), ["medical", "train", "--out", str(tmp_path / "r2"),
                                           "--luna16", str(bad)])
    assert res.exit_code == 2 and "subset*/*.mhd" in res.output


def test_luna16_patches_from_a_scan_thinner_than_a_patch(tmp_path):
    from deepseek.medical.nodule_data import _centre_range

    root = tmp_path / "luna"
    ph = ChestPhantom(seed=801, n_nodules=1, z_range=(-5, 5))
    vol = render_volume(ph, (1.5, 1.5, 2.0), (12, 160, 160), seed=1)  # 24 mm of z
    vol.save(root / "subset0" / "1.2.3.mhd")
    (root / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n")
    lo, hi = _centre_range(vol.resample([1.0] * 3))
    assert lo[2] == hi[2]  # z: thinner than a patch, centred
    assert lo[0] < hi[0] and lo[1] < hi[1]
    arrays = Luna16Patches(root).arrays(4, seed=0, per_scan=4)
    assert arrays["x"].shape == (4, 48, 48, 48)
    assert np.isfinite(arrays["x"].astype(np.float32)).all()


@pytest.mark.slow
def test_luna16_folds_validate_on_the_held_out_subset(tmp_path):
    from deepseek.medical.nodule_training import cross_validate, held_out_scans, train_detector

    root = _luna16_layout(tmp_path / "luna", subsets=3, shape=(16, 96, 96))
    held, train_ids = held_out_scans(root, 1)
    assert [h.uid for h in held] == ["1.2.3.1"] and sorted(train_ids) == ["1.2.3.0", "1.2.3.2"]
    assert len(held[0].nodules) == 2
    small = dict(n_patches=8, epochs=1, batch_size=4, base=4, progress=False)
    res = train_detector(tmp_path / "f1", luna16=root, fold=1, **small)
    assert "val_cpm" in res["history"][0]  # validated on subset1, not on phantoms
    assert res["fold"]["scans"] == ["1.2.3.1"] and 0.0 <= res["fold"]["val_cpm"] <= 1.0
    assert (tmp_path / "f1" / "results.csv").is_file()
    # the cross-validation without per-epoch validation: each fold still scores its subset
    cv = cross_validate(tmp_path / "cv", root, [0, 2], val_scans=0, **small)
    assert [f["fold"] for f in cv["folds"]] == [0, 2]
    assert cv["pooled"]["n_scans"] == 2 and cv["pooled"]["n_nodules"] == 4
    assert cv["mean_fold_cpm"] == pytest.approx(np.mean([f["cpm"] for f in cv["folds"]]))
    assert json.loads((tmp_path / "cv" / "cross_validation.json").read_text()) == \
        json.loads(json.dumps(cv, default=str))
    for bad, msg in ((["--fold", "7"], "no subset7"), (["--folds", "x"], "'x'"),
                     (["--folds", "all", "--fold", "1"], "no --fold")):
        res = CliRunner().invoke(build_cli(), ["medical", "train", "--out",
                                               str(tmp_path / "bad"), "--luna16", str(root),
                                               *bad])
        assert res.exit_code == 2 and msg in res.output, res.output


@pytest.mark.slow
def test_hard_negatives_are_the_models_own_false_positives(tmp_path):
    from deepseek.medical.nodule_training import (
        evaluate_volumes,
        hard_negative_set,
        train_detector,
    )

    ph = ChestPhantom(seed=810, n_nodules=2, z_range=(-20, 20))
    vol = render_volume(ph, (1.5, 1.5, 2.0), (16, 96, 96), seed=3)
    vol.metadata["nodules"] = [{"center": n.center, "diameter_mm": n.diameter_mm}
                               for n in ph.nodules]
    torch.manual_seed(0)
    net = build(base=4).eval()
    with torch.no_grad():  # an untrained net that calls nodules everywhere: false positives
        net.heatmap.bias.fill_(1.0)
    hard = hard_negative_set(net, [vol], 6, seed=1)
    assert hard is not None and hard["x"].shape == (6, 48, 48, 48)
    vol.metadata["series_uid"] = "p-0"  # a Volume scores as a validation scan as well
    assert set(evaluate_volumes(net, [vol])) == {"val_cpm", "val_max_sensitivity",
                                                "val_fps_per_scan"}
    assert hard["x"].dtype == np.float16 and set(hard) == {"x", "heatmap", "size", "offset",
                                                          "mask"}
    # in training: mined after the first epoch from a LUNA16 training scan, then trained on
    from deepseek.loader import save_model

    eager = save_model(net, tmp_path / "eager.safetensors", architecture="lung-nodule-attention",
                       config={"base": 4})
    root = _luna16_layout(tmp_path / "luna", subsets=2, shape=(16, 96, 96))
    res = train_detector(tmp_path / "run", luna16=root, n_patches=8, epochs=2, batch_size=4,
                         base=4, val_scans=0, hard_negatives=4, mine_scans=1, progress=False,
                         init=eager, lr=1e-6)
    assert res["hard_negatives"] == 4 and [h["epoch"] for h in res["history"]] == [1, 2]


@pytest.mark.slow
def test_cli_detect_and_evaluate(tmp_path):
    ph = write_phantom(tmp_path / "ct", seed=700_003, size=320, pixel_spacing=0.9, slices=16,
                       slice_step=2.5, n_nodules=3, diameters=(8.0, 14.0))
    runner = CliRunner()
    res = runner.invoke(build_cli(), ["medical", "detect", str(ph.out_dir), "--out",
                                      str(tmp_path / "r.csv"), "--tta-top", "0", "--window",
                                      "64", "--monai-json", str(tmp_path / "boxes.json"),
                                      "--sizes", "3"])
    assert res.exit_code == 0, res.output
    assert "long axis" in res.output and "network's estimate" in res.output  # 3 measured
    (entry,) = json.loads((tmp_path / "boxes.json").read_text())["validation"]
    assert entry["image"] == str(ph.out_dir) and len(entry["box"]) == len(entry["label_scores"])
    res = runner.invoke(build_cli(), ["medical", "evaluate", "--ref",
                                      str(ph.annotations), "--pred", str(tmp_path / "r.csv"),
                                      "--json", "--bootstrap", "0"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["max_sensitivity"] == 1.0
    # the same scan as NIfTI is the same volume in the same world (so the same detections)
    dicom = read_volume(ph.out_dir)
    dicom.save(tmp_path / "ct.nii.gz")
    nifti = read_volume(tmp_path / "ct.nii.gz")
    assert np.array_equal(nifti.array, dicom.array)
    assert np.allclose(nifti.affine, dicom.affine, atol=1e-4)


def test_monai_box_json_in_world_coordinates(tmp_path):
    from deepseek.medical.metrics import write_monai_boxes

    rows = [{"seriesuid": "1.2", "xyz": (10.0, -20.5, -100.25), "diameter_mm": 8.0,
             "probability": 0.9},
            {"seriesuid": "1.3", "xyz": (1.0, 2.0, 3.0), "diameter_mm": 12.5,
             "probability": 0.25},
            {"seriesuid": "1.2", "xyz": (0.0, 0.0, 0.0), "diameter_mm": 4.0,
             "probability": 0.5},
            # a segmented candidate: its box is its extent, not a cube around the centre
            {"seriesuid": "1.2", "xyz": (5.0, 5.0, 5.0), "diameter_mm": 9.0,
             "extent_mm": [[1.0, 2.0, 3.0], [9.0, 6.0, 4.0]], "probability": 0.4}]
    out = json.loads(write_monai_boxes(rows, tmp_path / "b.json",
                                       images={"1.2": "a.nii.gz"}).read_text())["validation"]
    assert out == [{"image": "a.nii.gz", "box": [[10.0, -20.5, -100.25, 8.0, 8.0, 8.0],
                                                 [0.0, 0.0, 0.0, 4.0, 4.0, 4.0],
                                                 [5.0, 4.0, 3.5, 8.0, 4.0, 1.0]],
                    "label": [0, 0, 0], "label_scores": [0.9, 0.5, 0.4]},
                   {"image": "1.3", "box": [[1.0, 2.0, 3.0, 12.5, 12.5, 12.5]],
                    "label": [0], "label_scores": [0.25]}]


@pytest.mark.slow
def test_monai_datalist_round_trips_through_monai(tmp_path):
    from monai.apps.detection.transforms.dictionary import ConvertBoxModed
    from monai.data import load_decathlon_datalist

    from deepseek.medical.metrics import write_monai_boxes

    rows = [{"seriesuid": "1.2", "xyz": (10.0, -20.5, -100.25), "diameter_mm": 8.0,
             "probability": 0.9}]
    path = write_monai_boxes(rows, tmp_path / "b.json", images={"1.2": "a.nii.gz"},
                             key="test")
    (item,) = load_decathlon_datalist(str(path), is_segmentation=True, data_list_key="test",
                                      base_dir=str(tmp_path))
    assert item["image"] == str(tmp_path / "a.nii.gz") and item["label_scores"] == [0.9]
    corners = ConvertBoxModed(box_keys="box", src_mode="cccwhd", dst_mode="xyzxyz")(
        {"box": np.asarray(item["box"], np.float32)})["box"]
    assert np.allclose(corners, [[6.0, -24.5, -104.25, 14.0, -16.5, -96.25]])


def test_detector_on_a_volume_without_lungs():
    from deepseek.medical.errors import NoLungError

    vol = Volume(np.full((20, 40, 40), 40.0, np.float32), (1.0, 1.0, 1.0))
    z, y, x = np.mgrid[0:20, 0:40, 0:40]
    vol.array[np.hypot(y - 20, x - 20) > 18] = -1000.0  # a water cylinder in air: no lungs
    with pytest.raises(NoLungError, match="no lung of plausible size.*--no-lung-mask"):
        NoduleDetector(build(base=4), progress=False, window=32, overlap=8).detect(vol)
    det = NoduleDetector(build(base=4), progress=False, window=32, overlap=8, lungs=False)
    cands = det.detect(vol)
    assert isinstance(cands, list) and len(cands) <= 100
    assert det.lung_info["found"] is False and det.lung_info["searched"] == \
        "the inside of the body" and "plausible" in det.lung_info["reason"]


@pytest.mark.slow
def test_nodule_pipeline_on_a_given_series(tmp_path):
    from deepseek.plugins import pipelines

    ph = write_phantom(tmp_path / "ct", seed=700_004, size=160, pixel_spacing=2.0, slices=12,
                       slice_step=4.0, n_nodules=2, diameters=(10.0, 16.0))
    assert ph.annotations == tmp_path / "ct" / "annotations.csv"
    res = pipelines().get("medical.nodule-detection")(input=ph.out_dir, out_dir=tmp_path / "r",
                                                      quiet=True, window=64, tta_top=4)
    assert res.error is None and (tmp_path / "r" / "results.csv").is_file()
    assert "cpm_single_scan" in res.metrics and all(f.is_file() for f in res.figures)


class _LocalNet(torch.nn.Module):
    """A flip-equivariant stand-in: the heatmap logit is the local mean intensity."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        heat = torch.nn.functional.avg_pool3d(x, 2) * 30.0 - 26.0  # only bright peaks count
        z = torch.zeros_like(heat)
        return {"heatmap": heat, "size": z + np.log(8.0), "offset": torch.cat([z, z, z], 1)}


def test_flip_tta_rescoring_keeps_the_geometry():
    """With a flip-equivariant model, re-scoring the flipped crops around each candidate must
    give back exactly the window-blended probability: the crops are centred on the
    candidates and the flips are undone."""
    arr = np.full((64, 96, 96), -1000.0, np.float32)  # air around a body of soft tissue,
    arr[:, 2:94, 2:94] = 0.0                           # with one big lung inside it
    arr[4:60, 8:88, 8:88] = -900.0
    zz, yy, xx = np.mgrid[0:64, 0:96, 0:96]
    for (cz, cy, cx), sigma, amp in [((20, 30, 40), 3.0, 1300.0), ((44, 70, 25), 2.5, 1250.0),
                                     ((30, 60, 70), 2.0, 1200.0)]:  # one sharp peak each
        arr += amp * np.exp(-((zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2)
                            / (2 * sigma ** 2))
    vol = Volume(arr, spacing=(1.0, 1.0, 1.0), origin=(-40.0, 12.0, 100.0))
    plain = NoduleDetector(_LocalNet(), progress=False, window=48, overlap=12).detect(vol)
    det = NoduleDetector(_LocalNet(), progress=False, window=48, overlap=12, tta_top=5,
                         tta_crop=32)
    tta = det.detect(vol)
    assert "tta" in det.timings and len(tta) == len(plain)
    assert len(plain) >= 3
    for a, b in zip(plain[:5], tta[:5]):
        assert a["xyz"] == b["xyz"]
        assert b["probability"] == pytest.approx(a["probability"], abs=1e-5)
    for views in ("zyx", "zy,x", "x"):  # any set of flipped views undoes its flips
        one = NoduleDetector(_LocalNet(), progress=False, window=48, overlap=12, tta_top=5,
                             tta_crop=32, tta_flips=views).detect(vol)
        for a, b in zip(plain[:5], one[:5]):
            assert a["xyz"] == b["xyz"]
            assert b["probability"] == pytest.approx(a["probability"], abs=1e-5)
    with pytest.raises(MedicalError, match="tta_crop"):
        NoduleDetector(_LocalNet(), tta_crop=30)
    with pytest.raises(MedicalError, match="window 30 / overlap 8"):
        NoduleDetector(_LocalNet(), window=30, overlap=8)


def test_flip_views_are_named_by_their_axes():
    from deepseek.medical.detector import flip_views

    assert flip_views("z,y,x") == [(0,), (1,), (2,)]
    assert flip_views("zyx") == [(0, 1, 2)]
    assert flip_views(" XZ , y") == [(0, 2), (1,)]
    for bad, why in (("zyq", "comma-separated views"), ("zz", "comma-separated views"),
                     ("z,,x", "comma-separated views"), ("", "comma-separated views"),
                     ("zy,yz", "named twice")):
        with pytest.raises(MedicalError, match=why):
            flip_views(bad)
    with pytest.raises(MedicalError, match="tta_flips='w'"):
        NoduleDetector(_LocalNet(), tta_flips="w")


def test_onnx_detector_equals_pytorch_detector():
    """The edge form: the packaged ONNX export on onnxruntime finds the same candidates, with
    the same probabilities, as the PyTorch model (window blending, peaks and TTA alike)."""
    ph = ChestPhantom(seed=700_005, n_nodules=2, diameters=(9.0, 12.0), z_range=(-10, 10))
    vol = render_volume(ph, (1.0, 1.0, 2.5), (8, 144, 144), seed=2)
    opts = dict(progress=False, tta_top=3, tta_crop=32, window=32, overlap=8, threshold=0.05)
    edge = NoduleDetector(ModelLoader.load("lung-nodule-attention", framework="onnx"), **opts)
    assert edge.net.name == "onnxruntime"
    full = NoduleDetector(ModelLoader.load("lung-nodule-attention"), **opts)
    a, b = edge.detect(vol, series_uid="s"), full.detect(vol, series_uid="s")
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        np.testing.assert_allclose(x["xyz"], y["xyz"], atol=1e-3)
        assert abs(x["probability"] - y["probability"]) < 1e-4
        assert abs(x["diameter_mm"] - y["diameter_mm"]) < 1e-3


def test_local_maxima_equal_max_pooling():
    from torch.nn import functional as F

    from deepseek.medical.detector import local_maxima

    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, (7, 9, 11)).astype(np.float32)  # many ties
    pooled = F.max_pool3d(torch.from_numpy(a)[None, None], 3, stride=1, padding=1)[0, 0]
    np.testing.assert_array_equal(local_maxima(a), (torch.from_numpy(a) == pooled).numpy())


def test_the_backend_follows_the_device_and_the_weights(monkeypatch):
    import deepseek.amp

    monkeypatch.setattr(deepseek.amp, "cpu_has_bf16_units", lambda: False)
    det = NoduleDetector(progress=False)  # CPU, packaged weights
    assert (det.net.name, det.precision) == ("onnxruntime", "fp32")
    det = NoduleDetector(progress=False, backend="torch")
    assert (det.net.name, det.precision) == ("torch", "fp32")
    assert NoduleDetector(progress=False, amp=True).net.name == "torch"
    with pytest.raises(MedicalError, match="backend='tensorrt'"):
        NoduleDetector(progress=False, backend="tensorrt")
    with pytest.raises(MedicalError, match="amp applies to the PyTorch model"):
        NoduleDetector(progress=False, amp=True, backend="onnxruntime")


def test_bf16_is_the_default_only_where_the_cpu_has_units_for_it(monkeypatch):
    """amp=None: bf16 for the packaged detector on a CPU with bf16 matrix units, and for
    nothing else (explicit backends, other weights, amp=False); what ran is recorded."""
    import deepseek.amp

    monkeypatch.setattr(deepseek.amp, "cpu_has_bf16_units", lambda: True)
    for model in (None, "lung-nodule-attention"):
        det = NoduleDetector(model, progress=False)
        assert (det.net.name, det.precision) == ("torch", "bf16")
    for det in (NoduleDetector(progress=False, amp=False),
                NoduleDetector(progress=False, backend="onnxruntime")):
        assert (det.net.name, det.precision) == ("onnxruntime", "fp32")
    det = NoduleDetector(progress=False, backend="torch")
    assert (det.net.name, det.precision) == ("torch", "fp32")
    det = NoduleDetector(ModelLoader.load("lung-nodule-attention"), progress=False)
    assert det.precision == "fp32"  # weights given as an object: not the measured default
    import deepseek.extras

    real = deepseek.extras.missing
    monkeypatch.setattr(deepseek.extras, "missing",
                        lambda extra: ["torch"] if extra == "torch" else real(extra))
    det = NoduleDetector(progress=False)  # as on the edge install: no PyTorch to run bf16 on
    assert (det.net.name, det.precision) == ("onnxruntime", "fp32")


def test_bf16_network_reads_nodules_as_fp32_does():
    """The packaged detector's network at bf16 (forced here, whatever the CPU) gives the fp32
    heatmap to 0.02 in probability on cubes around real phantom nodules, peaks in the same
    cell (the whole-scan CPM is held to 0.005 by benchmarks/nodule_froc.py)."""
    from deepseek.medical.detector import _sigmoid, crop_cubes
    from deepseek.medical.nodule_model import normalize_hu

    ph = ChestPhantom(seed=700_001, n_nodules=3, diameters=(9.0, 14.0), z_range=(-20, 20))
    iso = render_volume(ph, (1.6, 1.6, 2.5), (17, 200, 200), seed=1).resample([1.0] * 3)
    x = normalize_hu(torch.from_numpy(iso.array.astype(np.float32))).numpy()
    centres = np.array([iso.world_to_voxel(n.center) for n in ph.nodules])
    batch = np.stack(crop_cubes(x, np.round(centres), 48))[:, None]
    full, half = NoduleDetector(amp=False, progress=False), NoduleDetector(amp=True,
                                                                           progress=False)
    assert (full.precision, half.precision) == ("fp32", "bf16")
    a, b = _sigmoid(full.net(batch)[0]), _sigmoid(half.net(batch)[0])
    assert a.max() > 0.5  # nodules the network sees
    assert np.abs(a - b).max() < 0.02
    for p, q in zip(a, b):
        assert np.unravel_index(p.argmax(), p.shape) == np.unravel_index(q.argmax(), q.shape)


def test_phantom_texture_is_one_field_in_world_space():
    """The parenchymal texture is opt-in (0: the smooth lungs the packaged weights know), has
    the requested spread, and is the same field whatever grid samples it."""
    smooth = ChestPhantom(seed=3, n_nodules=0, z_range=(-20, 20))
    tex = ChestPhantom(seed=3, n_nodules=0, z_range=(-20, 20), texture=30.0)
    lung = np.array([[-72.0, -4.0, z] for z in np.linspace(-15, 15, 61)])
    assert smooth.texture is None
    diff = tex.hu(lung) - smooth.hu(lung)
    assert 5 < diff.std() < 90 and np.abs(diff).max() > 0
    assert abs(tex.texture.grid.std() - 30.0) < 1e-3
    # trilinear sampling: a point between two grid points lies between their values
    a, b = np.array([[0.0, 0.0, 0.0]]), np.array([[2.0, 0.0, 0.0]])
    mid = tex.texture(np.array([[1.0, 0.0, 0.0]]))[0]
    assert abs(mid - 0.5 * (tex.texture(a)[0] + tex.texture(b)[0])) < 1e-4
    # periodic over 256 mm, as documented
    assert abs(tex.texture(a)[0] - tex.texture(a + 256.0)[0]) < 1e-4


def test_a_slab_with_no_room_for_a_nodule_places_none_and_says_why(caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="deepseek.medical.synthetic"):
        thin = ChestPhantom(seed=1, n_nodules=3, z_range=(-10, 10))
    assert thin.nodules == []
    assert "needs a slab of 27.0 mm" in caplog.text and "leaves 20.0 mm" in caplog.text
    # a slab with room: the same seed places them (the check changes nothing there)
    assert len(ChestPhantom(seed=1, n_nodules=3, z_range=(-40, 40)).nodules) == 3


def test_realistic_phantom_vessels_taper_and_blur():
    ph = ChestPhantom(seed=4, n_nodules=0, z_range=(-30, 30), realistic=True)
    radii = np.array([v.radius for v in ph.vessels])
    assert len(ph.vessels) > 500 and radii.min() >= 0.4 - 1e-9 and radii.max() == 4.5
    # Murray's law: every calibre is the root's divided by a whole number of 2^(1/3)
    steps = np.log(4.5 / radii) / np.log(2 ** (1 / 3))
    assert np.allclose(steps[radii > 0.4 + 1e-6], np.round(steps[radii > 0.4 + 1e-6]),
                       atol=1e-6)
    ends = np.array([v.b for v in ph.vessels])
    assert ph._in_lung(ends).all()  # the tree stays inside the lungs
    # a partial-volume edge: vessel HU on the axis, half-way at the wall, none 0.5 mm out
    from deepseek.medical.synthetic import _Tube

    tube = _Tube(np.zeros(3), np.array([0.0, 0.0, 20.0]), 2.0, 40.0)
    pts = np.array([[0.0, 0.0, 10.0], [2.0, 0.0, 10.0], [2.5, 0.0, 10.0]])
    out = np.full(3, -880.0, np.float32)
    ChestPhantom._draw_tubes(pts, out, [tube], np.ones(3, bool), edge_mm=1.0)
    assert out.tolist() == [40.0, -420.0, -880.0]
    # an oblique fissure: a sheet at about -700 HU, parenchyma 2 mm away
    point, normal, _ = ph._fissures()[0]
    grid = point + np.stack(np.meshgrid(np.linspace(-20, 20, 9), [0.0], np.linspace(-5, 5, 5)),
                            -1).reshape(-1, 3) * [1, 0, 0]
    on, off = ph.hu(grid), ph.hu(grid + 2.0 * normal)
    assert np.median(on) == pytest.approx(-700.0, abs=15) and np.median(off) < -820


def test_realistic_phantoms_are_seen_through_a_scanner_point_spread():
    from deepseek.medical.errors import MedicalError
    from deepseek.medical.synthetic import PSF_MM, reconstruct

    assert ChestPhantom(seed=1, n_nodules=0, realistic=True).psf_mm == PSF_MM == 0.5
    assert ChestPhantom(seed=1, n_nodules=0).psf_mm == 0.0  # the smooth default stays sharp
    assert ChestPhantom(seed=1, n_nodules=0, realistic=True, psf_mm=0).psf_mm == 0.0
    for bad in (-1.0, float("nan"), 9.0):
        with pytest.raises(MedicalError, match="psf_mm"):
            ChestPhantom(seed=1, n_nodules=0, psf_mm=bad)
    rng = np.random.default_rng(0)
    # a sharp vertical edge spreads as a Gaussian of sigma psf_mm: the 16-84 % rise is 2 sigma
    edge = np.where(np.arange(200) < 100, -900.0, 100.0)[None].repeat(64, 0)
    row = reconstruct(edge, (0.1, 0.1), 0.5, 0.0, rng)[32]
    assert row.mean() == pytest.approx(edge[32].mean(), abs=1.0)  # HU are kept, not lost
    rise = np.interp([0.16, 0.84], (row + 900.0) / 1000.0, np.arange(200) * 0.1)
    assert rise[1] - rise[0] == pytest.approx(2 * 0.5, abs=0.05)
    # the noise keeps its stated standard deviation but is correlated by the kernel
    flat = reconstruct(np.zeros((4, 128, 128)), (0.7, 0.7), 0.5, 15.0, rng)
    assert flat.std() == pytest.approx(15.0, rel=0.03)
    nb = np.corrcoef(flat[:, :, :-1].ravel(), flat[:, :, 1:].ravel())[0, 1]
    across = np.corrcoef(flat[:-1].ravel(), flat[1:].ravel())[0, 1]
    assert nb > 0.3 and abs(across) < 0.05  # in-plane only: slices stay independent
    # the renderers apply it: a realistic render differs from the same phantom made sharp
    a = render_volume(ChestPhantom(seed=3, n_nodules=0, z_range=(-5, 5), realistic=True),
                      (1.0, 1.0, 2.0), (2, 64, 64), noise=0.0)
    b = render_volume(ChestPhantom(seed=3, n_nodules=0, z_range=(-5, 5), realistic=True,
                                   psf_mm=0.0), (1.0, 1.0, 2.0), (2, 64, 64), noise=0.0)
    assert np.abs(np.diff(a.array, axis=2)).mean() < np.abs(np.diff(b.array, axis=2)).mean()


def test_realistic_phantom_patches_for_training():
    from deepseek.medical.nodule_data import phantom_patch_set

    smooth = phantom_patch_set(2, seed=5)
    real = phantom_patch_set(2, seed=5, realistic=True)
    assert smooth["x"].shape == real["x"].shape and not np.array_equal(smooth["x"], real["x"])
    res = CliRunner().invoke(build_cli(), ["medical", "train", "--out", "x", "--realistic",
                                           "--luna16", "."])
    assert res.exit_code == 2 and "--realistic is for phantoms" in res.output


def test_detect_checks_its_outputs_before_the_detection(tmp_path, monkeypatch):
    import deepseek.medical.steps as steps

    def never(**kwargs):
        raise AssertionError("detected before the output was checked")

    monkeypatch.setattr(steps, "detect_step", never)
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the output folder would go")
    cli = build_cli()
    res = CliRunner().invoke(cli, ["medical", "detect", "synthetic:", "--out",
                                   str(blocker / "results.csv")])
    assert res.exit_code == 2 and res.output.startswith(f"error: {blocker}: File exists")
    res = CliRunner().invoke(cli, ["medical", "detect", "synthetic:", "--monai-json",
                                   str(tmp_path)])
    assert res.exit_code == 2
    assert f"--monai-json {tmp_path}: a folder; give the file's name" in res.output


@pytest.mark.slow
def test_the_served_detector_is_timed_at_a_volume_and_refuses_sizes_off_its_step():
    """``deepseek serve lung-nodule-attention`` times the detector on a 64^3 crop (it was timed
    at 1 x 1 x 1, which says nothing of the thread count a real volume wants) and answers a
    crop whose sides are not multiples of 4 with a 400 that says how to pad it, as the
    network's two stride-2 stages need; a crop on the step is answered as the model does,
    its outputs named as the network's dict names them (they were output0-2, where the
    ONNX export says heatmap, size, offset)."""
    import httpx

    from deepseek.serving import DeepSeekServing

    x = np.random.default_rng(0).random((1, 1, 16, 20, 24), dtype=np.float32)
    with DeepSeekServing(models={"nodules": "lung-nodule-attention"}, port=0,
                         grpc_port=None) as s:
        spec = s.models["nodules"].inputs[0]
        assert spec.multiple == [1, 1, 4, 4, 4] and spec.example == [1, 1, 64, 64, 64]
        assert "nodules" in s.calibration  # the 64^3 example ran and was timed
        url = f"http://{s.http_url}/v2/models/nodules/infer"
        ok = httpx.post(url, json={"inputs": [{"name": "ct", "shape": list(x.shape),
                                               "datatype": "FP32",
                                               "data": x.ravel().tolist()}]}, timeout=60)
        off = httpx.post(url, json={"inputs": [{"name": "ct", "shape": [1, 1, 16, 20, 22],
                                                "datatype": "FP32", "data": [0.0] * 7040}]},
                         timeout=60)
    assert ok.status_code == 200, ok.text
    assert [o["name"] for o in ok.json()["outputs"]] == ["heatmap", "size", "offset"]
    got = {o["name"]: np.array(o["data"], np.float32).reshape(o["shape"])
           for o in ok.json()["outputs"]}
    net = ModelLoader().load("lung-nodule-attention").module.eval()
    with torch.inference_mode():
        want = net(torch.from_numpy(x))
    for name in ("heatmap", "size", "offset"):
        np.testing.assert_allclose(got[name], want[name].numpy(), atol=1e-4)
    assert off.status_code == 400 and "axis 4" in off.json()["error"]
    assert "pad it to 24" in off.json()["error"]
