"""Good parts only, reconstructed: the DRAEM-style networks, their out-of-fold threshold, the
file they are saved in, and scoring with it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deepseek.cli import build_cli
from deepseek.manufacturing.anomaly import KIND as MEMORY
from deepseek.manufacturing.anomaly import PatchMemory
from deepseek.manufacturing.draem import (
    MAP_STRIDE,
    DraemModel,
    build_net,
    draem_meta,
    fit_draem,
    focal_loss,
    is_draem_file,
    ssim,
)
from deepseek.manufacturing.errors import ManufacturingError
from deepseek.manufacturing.metrics import threshold_above
from deepseek.manufacturing.score import Scorer, read_gray

# small and quick: 32-px crops of images read at half size, 8 channels, 60 steps per fold
FAST = {"steps": 60, "batch": 4, "crop": 32, "channels": 8, "progress": False}
LINE = ((30, 20), (90, 70))  # the crack: from (x, y) to (x, y), 4 px wide


def _surface(path, seed, crack=False, h=96, w=128):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.normal(140, 20, (h, w)).astype(np.float32), (0, 0), 1.5)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if crack:
        cv2.line(img, *LINE, 25, 4)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    root = tmp_path_factory.mktemp("draem")
    for i in range(8):
        _surface(root / "good" / f"part{i}.png", i)
    good = [_surface(root / "test" / f"ok{i}.png", 100 + i) for i in range(3)]
    bad = [_surface(root / "test" / f"crack{i}.png", 200 + i, crack=True) for i in range(3)]
    model = fit_draem(root / "good", target_fpr=0.05, folds=2, seed=0, **FAST)
    return root, good, bad, model


def test_networks_keep_the_size_and_mark_at_half_of_it():
    net = build_net(8).eval()
    with torch.no_grad():
        rec, logits = net(torch.zeros(2, 1, 64, 96))
    assert rec.shape == (2, 1, 64, 96) and logits.shape == (2, 1, 32, 48)


def test_ssim_and_focal_loss_reward_the_right_answer():
    a = torch.rand(1, 1, 32, 32) * 2 - 1
    assert float(ssim(a, a)) == pytest.approx(1.0, abs=1e-5)
    assert float(ssim(a, a + 0.5 * torch.randn_like(a))) < 0.9
    target = (torch.rand(1, 1, 16, 16) > 0.9).float()
    right, wrong = 8 * (2 * target - 1), -8 * (2 * target - 1)
    assert float(focal_loss(right, target)) < 1e-4 < float(focal_loss(wrong, target))


@pytest.mark.slow
def test_draem_flags_a_crack_it_never_saw_and_sets_its_threshold(line):
    _, good, bad, model = line
    m = model.meta
    assert (m["kind"], m["fit_images"], m["folds"]) == ("draem", 8, 2)
    assert len(model.nets) == 2
    # just above every out-of-fold good score (8 images cannot resolve 5 %)
    assert m["threshold"] == pytest.approx(threshold_above(m["out_of_fold_scores"]["max"]))
    assert m["expected"]["false_positive_rate"] == 0.0 and m["expected"]["recall"] is None
    good_s = [model.score(read_gray(p))[0] for p in good]
    bad_s = [model.score(read_gray(p))[0] for p in bad]
    assert min(bad_s) > max(good_s)
    amap = model.anomaly_map(read_gray(bad[0]))
    assert amap.shape == (96 // MAP_STRIDE, 128 // MAP_STRIDE)
    assert model.score(read_gray(bad[0]))[0] == float(amap.max())
    # where on the map the crack shows is not asserted: this model, trained for 60 steps,
    # separates the cracked parts on every seed tried (0-9, by 0.25-0.40), but its map is
    # higher along the crack than off it on 7 seeds of 10 only, and which seeds differs
    # with the CPU; the benchmark measures the maps (pixel AUROC) on real parts
    for h, w in ((97, 131), (95, 129)):  # odd sizes: the map still covers every pixel
        rows, cols = model.anomaly_map(np.full((h, w), 140, np.uint8)).shape
        assert (rows, cols) == (-(-h // MAP_STRIDE), -(-w // MAP_STRIDE))


@pytest.mark.slow
def test_draem_leaves_labelled_defects_out_and_measures_recall_on_them(tmp_path):
    folder = tmp_path / "labelled"
    for i in range(6):
        _surface(folder / f"part{i}.png", i)
    crack = _surface(folder / "crack0.png", 300, crack=True)
    mask = np.zeros((96, 128), np.uint8)
    cv2.line(mask, *LINE, 255, 4)
    cv2.imwrite(str(folder / "crack0_mask.png"), mask)
    model = fit_draem(folder, target_fpr=0.05, folds=2, seed=0, **FAST)
    m = model.meta
    assert m["fit_images"] == 6 and m["expected"]["defect_images"] == 1
    flagged = model.score(read_gray(crack))[0] >= m["threshold"]
    assert m["expected"]["recall"] == (1.0 if flagged else 0.0)
    assert "labelled defect images" in m["expected"]["recall_from"]


@pytest.mark.slow
def test_draem_points_at_the_spot_in_a_good_image_that_is_not(tmp_path):
    """A folder of good parts with one cracked part among them (a label's mistake): out of
    fold it scores highest, and the spot kept for the review is the box ``score`` would draw
    on the map of the fold model that held it out (the one whose map gave its out-of-fold
    score), in the image's pixels; every image the review lists has one, inside the image.
    Where the hottest cell falls is the small test model's to say: trained for 60 steps,
    its hottest cell lies on the crack with some seeds and CPUs and beside it with others,
    so the test holds the spot to that model's map, not to the drawn line."""
    for i in range(8):
        _surface(tmp_path / "good" / f"part{i}.png", i, crack=i == 3)
    model = fit_draem(tmp_path / "good", target_fpr=0.05, folds=2, seed=0, **FAST)
    ranked = sorted(model.out_of_fold, key=lambda p: -model.out_of_fold[p])
    assert ranked[0].endswith("part3.png") and len(ranked) == 8
    assert list(model.out_of_fold_spots) == ranked[:5]
    for x0, y0, x1, y1 in model.out_of_fold_spots.values():
        assert 0 <= x0 <= x1 < 128 and 0 <= y0 <= y1 < 96
    # the fold model that held part3 out: its map's largest value is the out-of-fold score
    image, oof = read_gray(ranked[0]), model.out_of_fold[ranked[0]]
    maps = [DraemModel([net], model.meta).anomaly_map(image) for net in model.nets]
    held_out = [m for m in maps if float(m.max()) == pytest.approx(oof, abs=1e-6)]
    assert len(held_out) == 1
    row, col = np.unravel_index(int(np.argmax(held_out[0])), held_out[0].shape)
    x0, y0, x1, y1 = model.out_of_fold_spots[ranked[0]]
    # its hottest cell, MAP_STRIDE image pixels a side, lies inside the box
    assert x0 <= col * MAP_STRIDE and (col + 1) * MAP_STRIDE - 1 <= x1
    assert y0 <= row * MAP_STRIDE and (row + 1) * MAP_STRIDE - 1 <= y1
    assert (x1 - x0 + 1) * (y1 - y0 + 1) < 128 * 96 / 4


def test_saved_model_scores_the_same_and_score_uses_it(line, tmp_path):
    root, good, bad, model = line
    path = model.save(tmp_path / "d.safetensors")
    assert is_draem_file(path) and draem_meta(path)["fold_models"] == 2
    again = DraemModel.load(path)
    img = read_gray(bad[0])
    np.testing.assert_allclose(again.anomaly_map(img), model.anomaly_map(img), atol=1e-6)
    scorer = Scorer(str(path))
    assert scorer.threshold == pytest.approx(model.threshold)
    assert scorer.expected["good_images"] == 8
    out = scorer.score(bad[0], heatmap=tmp_path / "h.png")
    assert out.defect and out.box is not None and (tmp_path / "h.png").is_file()
    assert out.score == pytest.approx(model.score(img)[0])
    assert not scorer.score(good[0]).defect


def test_bad_inputs_are_refused_with_the_fix(line, tmp_path):
    root = line[0]
    with pytest.raises(ManufacturingError, match="give 2 or more"):
        fit_draem(root / "good", folds=1, **FAST)
    with pytest.raises(ManufacturingError, match="between 0 and 1"):
        fit_draem(root / "good", target_fpr=0, **FAST)
    with pytest.raises(ManufacturingError, match="multiple of 16"):
        fit_draem(root / "good", **{**FAST, "crop": 40})
    with pytest.raises(ManufacturingError, match="smaller than 64 px"):
        fit_draem(root / "good", **{**FAST, "crop": 64})
    with pytest.raises(ManufacturingError, match="choose from"):
        fit_draem(root / "good", kinds=("scratch",), **FAST)
    _surface(tmp_path / "one" / "a.png", 1)
    with pytest.raises(ManufacturingError, match="at least 2"):
        fit_draem(tmp_path / "one", **FAST)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    assert not is_draem_file(junk)
    with pytest.raises(ManufacturingError, match="cannot read a DRAEM model"):
        DraemModel.load(junk)
    # one kind of good-parts file is never read as the other
    draem = line[3].save(tmp_path / "d.safetensors")
    with pytest.raises(ManufacturingError, match="not a good-parts memory"):
        PatchMemory.load(draem)
    memory = PatchMemory(np.zeros((4, 64), np.float32), {"kind": MEMORY},
                         net=object()).save(tmp_path / "m.safetensors")
    assert not is_draem_file(memory)
    with pytest.raises(ManufacturingError, match="not a DRAEM model"):
        DraemModel.load(memory)
    # a file that claims more fold models than it holds
    from safetensors.torch import save_file

    short = tmp_path / "short.safetensors"
    save_file({"x": torch.zeros(1)}, str(short),
              metadata={"deepseek": json.dumps({"kind": "draem", "fold_models": 1})})
    with pytest.raises(ManufacturingError, match="cannot read a DRAEM model"):
        DraemModel.load(short)


@pytest.mark.slow
def test_cli_trains_draem_and_refuses_its_options_elsewhere(line, tmp_path):
    root = line[0]
    cli = build_cli()
    res = CliRunner().invoke(cli, ["manufacturing", "train", "--out", str(tmp_path / "d"),
                                   "--good-only", str(root / "good"), "--method", "draem",
                                   "--folds", "2", "--steps", "2", "--crop", "32", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["kind"] == "draem" and info["steps"] == 2 and info["folds"] == 2
    assert is_draem_file(info["model"])
    assert info["photo_onnx"] == str(tmp_path / "d" / "draem.photo.onnx")  # to serve
    # the good images that hold the threshold, each with the spot to look at
    review = info["threshold_review"]["good_highest"]
    assert len(review) == 5 and all(Path(e["path"]).parent == root / "good" for e in review)
    assert all(0 <= e["spot"][0] <= e["spot"][2] < 128 and 0 <= e["spot"][1] <= e["spot"][3]
               < 96 for e in review)
    res = CliRunner().invoke(cli, ["manufacturing", "train", "--out", str(tmp_path / "d"),
                                   "--good-only", str(root / "good"), "--method", "draem",
                                   "--folds", "2", "--steps", "2", "--crop", "32"])
    assert res.exit_code == 0, res.output
    assert "labels to check: the good images scored highest, out of fold" in res.output
    listed = [ln for ln in res.output.splitlines() if ".png" in ln]  # (not the progress)
    assert len(listed) == 5 and all("  look at x " in ln for ln in listed)
    res = CliRunner().invoke(cli, ["manufacturing", "train", "--out", str(tmp_path / "e"),
                                   "--good-only", str(root / "good"), "--steps", "2"])
    assert res.exit_code == 2 and "--steps goes with --good-only --method draem" in res.output
    res = CliRunner().invoke(cli, ["manufacturing", "train", "--out", str(tmp_path / "e"),
                                   "--good-only", str(root / "good"), "--method", "draem",
                                   "--crack-depth", "0.2", "0.5"])
    assert res.exit_code == 2 and "not with --method draem" in res.output


def test_the_photo_decision_decides_as_the_model_does_served_and_without_pytorch(line,
                                                                               tmp_path):
    """export writes the DRAEM model's photo decision (the same score and map as PyTorch's
    within the resize's gray level, at odd sizes too; the box; its threshold); `score
    --backend onnxruntime` (an install without PyTorch) scores through it with the same
    decisions, and `deepseek serve` answers with them."""
    import tritonclient.http as th

    from deepseek.loader import onnx_metadata
    from deepseek.manufacturing.draem import DraemGraph, load_draem
    from deepseek.manufacturing.runtime import PHOTO_META_KEY
    from deepseek.serving import DeepSeekServing

    root, good, bad, model = line
    path = model.save(tmp_path / "draem.safetensors")
    res = CliRunner().invoke(build_cli(), ["manufacturing", "export", str(path), "--json"])
    assert res.exit_code == 0, res.output
    photo = Path(json.loads(res.output.strip().splitlines()[-1])["photo_onnx"])
    assert photo == tmp_path / "draem.photo.onnx"
    settings = json.loads(onnx_metadata(photo)[PHOTO_META_KEY])
    assert settings["kind"] == "draem" and settings["threshold"] == pytest.approx(
        model.threshold)
    graph = load_draem(path, "onnxruntime")
    assert isinstance(graph, DraemGraph) and graph.threshold == pytest.approx(model.threshold)
    rng = np.random.default_rng(5)
    sides = [(75, 101), (200, 301), (17, 18)]  # odd, one odd, a photo of a few cells
    others = [np.clip(rng.normal(140, 20, s), 0, 255).astype(np.uint8) for s in sides]
    for img in [read_gray(p) for p in (*good, *bad)] + others:
        want_score, want_map = model.score(img)
        got_score, got_map = graph.score(img)
        assert got_map.shape == want_map.shape
        assert got_score == pytest.approx(want_score, abs=1e-3)
        assert np.abs(got_map - want_map).max() < 0.01
    by_graph = [Scorer(str(path), backend="onnxruntime").score(p) for p in (*good, *bad)]
    by_torch = [Scorer(str(path), backend="torch").score(p) for p in (*good, *bad)]
    assert [r.defect for r in by_graph] == [r.defect for r in by_torch] == \
        [False] * len(good) + [True] * len(bad)
    assert all(r.box is not None for r in by_graph if r.defect)
    with DeepSeekServing(models={"line": str(photo)}, port=0, grpc_port=None,
                         calibrate=False) as server:
        client = th.InferenceServerClient(server.http_url)
        img = read_gray(bad[0])[None]
        inp = th.InferInput("image", list(img.shape), "UINT8")
        inp.set_data_from_numpy(img)
        got = client.infer("line", [inp])
        assert got.as_numpy("score")[0] == pytest.approx(by_graph[len(good)].score, abs=1e-5)
        assert bool(got.as_numpy("defect")[0]) and list(got.as_numpy("box")[0]) == \
            list(by_graph[len(good)].box)
