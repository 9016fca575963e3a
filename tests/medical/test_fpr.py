"""The second stage: false-positive reduction of nodule candidates (nodule-fpr-3dcnn)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deepseek import ModelLoader
from deepseek.cli import build_cli
from deepseek.medical import NoduleDetector
from deepseek.medical.detector import crop_cubes, second_stage_probability
from deepseek.medical.fpr_training import (
    VESSEL_NEGATIVES,
    CubeDataset,
    candidate_set,
    label_candidates,
    train_fpr,
    vessel_negatives,
)
from deepseek.medical.nodule_grid import FPR_CROP
from deepseek.medical.nodule_model import build
from deepseek.medical.nodule_training import phantom_scans
from deepseek.medical.synthetic import ChestPhantom, render_volume
from deepseek.medical.volume import Volume


def test_the_second_stage_only_lowers_a_candidate():
    p = np.array([0.9, 0.2, 0.5, 0.0])
    q = np.array([0.1, 0.9, 0.5, 1.0])
    np.testing.assert_allclose(second_stage_probability(p, q),
                               [np.sqrt(0.09), 0.2, 0.5, 0.0])
    assert second_stage_probability(0.4, 0.1) == pytest.approx(0.2)


def test_crop_cubes_centre_and_edges():
    x = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    c = crop_cubes(x, np.array([[5, 5, 5], [0.4, 0, 9], [40, -30, 5]]), 4)
    assert c.shape == (3, 4, 4, 4)
    np.testing.assert_array_equal(c[0], x[3:7, 3:7, 3:7])
    np.testing.assert_array_equal(c[1, 2:, 2:, :3], x[0:2, 0:2, 7:10])  # clipped at the edges
    assert c[1, :2].sum() == 0 and c[1, :, :, 3].sum() == 0  # outside: 0 (air)
    assert c[2].sum() == 0  # wholly outside


def test_labels_follow_the_luna16_hit_rule():
    nodules = [(np.array([0.0, 0.0, 0.0]), 10.0), (np.array([50.0, 0.0, 0.0]), 6.0)]
    cands = [{"xyz": (4.9, 0, 0)},    # inside the first nodule's radius: a nodule
             {"xyz": (7.0, 0, 0)},    # 2 mm beyond it: ambiguous, left out
             {"xyz": (8.5, 0, 0)},    # 3.5 mm beyond: not a nodule
             {"xyz": (52.0, 1, 0)},   # inside the second
             {"xyz": (25.0, 0, 0)}]   # far from both
    assert label_candidates(cands, nodules).tolist() == [1, -1, 0, 1, 0]


def test_vessel_landmarks_are_branchings_and_steep_cross_sections_of_thick_vessels():
    ph = ChestPhantom(seed=5, n_nodules=0, z_range=(-40, 40), realistic=True)
    marks = ph.vessel_landmarks()
    vessels = [t for t in ph.vessels if t.lumen_hu is None]
    assert len(vessels) < len(ph.vessels)  # the realistic tree has airways beside it
    kinds = {m["kind"] for m in marks}
    assert kinds == {"branching", "cross-section"}
    a = np.array([t.a for t in vessels])
    b = np.array([t.b for t in vessels])
    radius = np.array([t.radius for t in vessels])
    for m in marks:
        xyz = np.asarray(m["xyz"])
        assert m["radius_mm"] >= 1.0
        if m["kind"] == "branching":  # two or more vessels leave this point
            leaving = np.all(np.abs(a - xyz) <= 1e-5, axis=1)
            assert leaving.sum() >= 2 and radius[leaving].max() == m["radius_mm"]
        else:  # the middle of a vessel that runs within 45 degrees of the z axis
            i = int(np.argmin(np.abs((a + b) / 2 - xyz).max(axis=1)))
            assert np.allclose((a[i] + b[i]) / 2, xyz, atol=1e-9)
            d = b[i] - a[i]
            assert abs(d[2]) >= np.linalg.norm(d) * np.cos(np.pi / 4) - 1e-12
            assert radius[i] == m["radius_mm"]
    thick = ph.vessel_landmarks(min_radius=2.0)
    assert 0 < len(thick) < len(marks) and all(m in marks for m in thick)


def test_vessel_negatives_keep_away_from_nodules_and_inside_the_scan():
    iso = Volume(np.zeros((20, 30, 40), np.float32), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                 np.eye(3), {})
    marks = [{"xyz": (5.0, 5.0, 5.0)},      # inside a nodule
             {"xyz": (11.0, 5.0, 5.0)},     # 2 mm beyond its radius: ambiguous
             {"xyz": (20.0, 20.0, 10.0)},   # clear
             {"xyz": (35.0, 25.0, 15.0)},   # clear
             {"xyz": (45.0, 5.0, 5.0)},     # outside the scan (x > 39)
             {"xyz": (30.0, 10.0, -1.0)}]   # outside the scan (z < 0)
    nods = [(np.array([5.0, 5.0, 5.0]), 8.0)]
    rng = np.random.default_rng(0)
    assert sorted(vessel_negatives(marks, nods, iso, 10, rng)) == [(20.0, 20.0, 10.0),
                                                                   (35.0, 25.0, 15.0)]
    one = vessel_negatives(marks, nods, iso, 1, np.random.default_rng(1))
    assert len(one) == 1 and one[0] in [(20.0, 20.0, 10.0), (35.0, 25.0, 15.0)]
    assert vessel_negatives(marks, nods, iso, 0, rng) == []
    assert vessel_negatives([], nods, iso, 5, rng) == []


def test_training_cubes_shift_and_flip_only_when_training():
    rng = np.random.default_rng(0)
    arrays = {"x": rng.random((3, 38, 38, 38)).astype(np.float16),
              "y": np.array([1, 0, 0], np.float32)}
    ev = CubeDataset(arrays, train=False)[0]["x"][0].numpy()
    np.testing.assert_array_equal(ev, arrays["x"][0, 3:35, 3:35, 3:35].astype(np.float32))
    tr = CubeDataset(arrays, train=True, seed=1)
    views = {tr[0]["x"].numpy().tobytes() for _ in range(6)}
    assert len(views) > 1 and tr[0]["x"].shape == (1, 32, 32, 32)


@pytest.mark.slow
def test_the_second_stage_rescoring_on_pytorch_and_onnxruntime():
    """The packaged classifier re-scores every candidate: the probability becomes the
    geometric mean of both stages where that is lower than the detector's (both kept),
    ordered again; its ONNX export (the edge form)
    gives the same figures."""
    ph = ChestPhantom(seed=700_005, n_nodules=2, diameters=(9.0, 12.0), z_range=(-10, 10))
    vol = render_volume(ph, (1.0, 1.0, 2.5), (8, 144, 144), seed=2)
    opts = dict(progress=False, tta_top=0, window=32, overlap=8, threshold=0.05)
    first = ModelLoader.load("lung-nodule-attention", framework="onnx")
    edge = NoduleDetector(first, fpr="nodule-fpr-3dcnn", **opts)
    assert edge.fpr.name == "onnxruntime"  # auto on the CPU: the packaged export
    full = NoduleDetector(first, fpr=ModelLoader.load("nodule-fpr-3dcnn"), **opts)
    assert full.fpr.name == "torch"
    a, b = edge.detect(vol, series_uid="s"), full.detect(vol, series_uid="s")
    assert "fpr" in edge.timings and len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert abs(x["probability_fpr"] - y["probability_fpr"]) < 1e-4
        assert x["probability"] == pytest.approx(
            min(x["probability_detector"],
                np.sqrt(x["probability_detector"] * x["probability_fpr"])), abs=1e-6)
        assert x["probability"] <= x["probability_detector"] + 1e-9  # it only lowers
    assert [c["probability"] for c in a] == sorted((c["probability"] for c in a),
                                                   reverse=True)
    plain = NoduleDetector(first, **opts).detect(vol, series_uid="s")
    assert sorted(c["probability"] for c in plain) == pytest.approx(
        sorted(c["probability_detector"] for c in a), abs=1e-6)
    assert "probability_fpr" not in plain[0]


def test_training_on_the_detectors_own_candidates(tmp_path):
    """An untrained first stage that calls nodules everywhere gives many candidates: the cubes
    carry both labels, the CPM is measured with and without the stage after each epoch, and
    the kept model loads as the detector's second stage (and from the CLI)."""
    torch.manual_seed(0)
    net = build(base=4).eval()
    with torch.no_grad():
        net.heatmap.bias.fill_(1.0)
    first = NoduleDetector(net, progress=False, tta_top=0, window=32, overlap=8,
                           max_candidates=12)
    res = train_fpr(tmp_path / "run", scans=1, val_scans=1, epochs=2, batch_size=16,
                    detector=first, realistic=False, scan_size=64, scan_slices=12,
                    scan_spacing=(2.0, 2.0, 2.5), progress=False)
    assert 0 < res["training_nodule_cubes"] < res["training_cubes"]
    # the phantom's thick vessels taught as negatives besides the candidates
    assert 0 < res["training_vessel_cubes"] <= VESSEL_NEGATIVES
    assert res["vessel_negatives_per_scan"] == VESSEL_NEGATIVES
    assert [h["epoch"] for h in res["history"]] == [1, 2]
    assert {"val_cpm", "val_cpm_detector"} <= set(res["history"][0])
    saved = json.loads((tmp_path / "run" / "training.json").read_text())
    assert saved["scan"]["size"] == 64
    model = tmp_path / "run" / "model.safetensors"
    det = NoduleDetector(net, progress=False, tta_top=0, window=32, overlap=8, fpr=model)
    ph = ChestPhantom(seed=810, n_nodules=2, z_range=(-10, 10))
    cands = det.detect(render_volume(ph, (2.0, 2.0, 2.5), (8, 64, 64), seed=3))
    assert cands and all(0 <= c["probability_fpr"] <= 1 for c in cands)
    # what validation re-scores (and benchmarks/nodule_fpr.py compares stages on): every
    # candidate with its centre cube and its hit label, and the scan's annotations
    cs = candidate_set(first, phantom_scans(1, size=64, slices=12, spacing=(2.0, 2.0, 2.5),
                                            seed0=820))
    assert len(cs["x"]) == len(cs["candidates"]) == len(cs["y"]) > 0
    assert cs["x"].shape[1:] == (FPR_CROP,) * 3 and set(np.unique(cs["y"])) <= {0.0, 1.0}
    assert cs["scans"] == ["val-0"] and len(cs["annotations"]) == 8
    out = CliRunner().invoke(build_cli(), ["medical", "train-fpr", "--help"])
    assert out.exit_code == 0 and "--val-scans" in out.output
    assert f"[default: {VESSEL_NEGATIVES}]" in " ".join(out.output.split())
    with pytest.raises(Exception, match="vessel_negatives"):
        train_fpr(tmp_path / "bad", vessel_negatives=-1, detector=first)


def test_the_second_stage_is_off_by_default_and_auto_only_for_the_packaged_detector():
    assert NoduleDetector(progress=False).fpr is None
    assert NoduleDetector(progress=False, fpr="auto").fpr.name == "onnxruntime"
    assert NoduleDetector("lung-nodule-attention", progress=False, fpr="auto").fpr is not None
    # other weights: the stage learnt from the packaged detector's candidates, not theirs
    assert NoduleDetector(build(base=4), progress=False, fpr="auto").fpr is None
    with pytest.raises(Exception, match="second stage learns"):
        train_fpr("unused", detector=NoduleDetector(progress=False, fpr="auto"))
    out = CliRunner().invoke(build_cli(), ["medical", "detect", "--help"])
    assert "--fpr" in out.output and "none" in out.output
