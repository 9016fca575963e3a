"""Synthetic defects pasted on good images (deepseek.manufacturing.pasted) and the crops that
train on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepseek.manufacturing.errors import ManufacturingError
from deepseek.manufacturing.pasted import KINDS, MIN_CHANGE, blob_mask, paste_defect


def _surface(seed: int = 0, shape: tuple[int, int] = (160, 160)) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.normal(0, 1, shape).astype(np.float32), (0, 0), 2.0)
    return np.clip(150 + 40 * tex / tex.std(), 0, 255).astype(np.uint8)


def test_a_pasted_defect_is_visible_and_its_mask_marks_only_changed_pixels():
    img = _surface()
    for seed in range(30):
        out, mask = paste_defect(img, np.random.default_rng(seed))
        assert out.shape == img.shape and out.dtype == np.uint8
        assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
        m = mask.astype(bool)
        assert (out[m] != img[m]).all()
        assert np.abs(out[m].astype(float) - img[m]).mean() >= MIN_CHANGE
        # the rest of the image is kept as it was, apart from a crack's faint anti-aliased rim
        # and a stain's soft edge, which stay outside the mask
        changed = out != img
        assert (changed & ~m).sum() <= 3 * m.sum() + 200
        assert mask.sum() < img.size / 4  # a local defect, not a new surface


def test_the_same_seed_pastes_the_same_defect_and_every_kind_occurs():
    img = _surface(1)
    a = paste_defect(img, np.random.default_rng(7))
    b = paste_defect(img, np.random.default_rng(7))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = paste_defect(img, np.random.default_rng(8))
    assert not np.array_equal(a[1], c[1])
    # a crack darkens; over many draws both darker and brighter blobs occur too
    darker = brighter = 0
    for seed in range(40):
        out, mask = paste_defect(img, np.random.default_rng(seed))
        d = out[mask.astype(bool)].astype(float).mean() - img[mask.astype(bool)].mean()
        darker += d < 0
        brighter += d > 0
    assert darker > brighter > 0
    assert len(KINDS) == 3


def test_blob_masks_are_never_empty_even_on_tiny_images():
    for seed in range(20):
        for shape in ((160, 160), (8, 8), (3, 40)):
            m = blob_mask(shape, np.random.default_rng(seed))
            assert m.shape == shape and m.any()


def test_bad_images_and_ranges_are_refused():
    img = _surface()
    with pytest.raises(ManufacturingError, match="2-D uint8"):
        paste_defect(img.astype(np.float32), np.random.default_rng(0))
    with pytest.raises(ManufacturingError, match="2-D uint8"):
        paste_defect(np.stack([img] * 3, -1), np.random.default_rng(0))
    with pytest.raises(ManufacturingError, match="depth"):
        paste_defect(img, np.random.default_rng(0), depth=(0.5, 0.2))
    with pytest.raises(ManufacturingError, match="depth"):
        paste_defect(img, np.random.default_rng(0), depth=(0.1, 1.0))
    # a black image has nothing to darken or re-contrast: refused, not labelled invisibly
    with pytest.raises(ManufacturingError, match="too dark or too flat"):
        paste_defect(np.zeros((64, 64), np.uint8), np.random.default_rng(0))


def test_crops_with_pasted_defects_are_balanced_and_located():
    pytest.importorskip("torch")
    from deepseek.manufacturing.labelled import LabelledImage
    from deepseek.manufacturing.training import CropDataset

    goods = []
    for i in range(3):
        img = _surface(i, (200, 240))
        it = LabelledImage(Path(f"g{i}.png"), False, "folder", img.shape)
        it.keep(img, None)
        goods.append(it)
    ds = CropDataset(goods, 8, 160, 2, seed=0, pasted=(0.1, 0.7))
    for i in range(8):
        s = ds[i]
        assert s["x"].shape == (2, 160, 160)
        if i % 2 == 0:  # a pasted defect: flagged, located on the map
            assert float(s["y"][0]) == 1.0 and float(s["map"].sum()) > 0
        else:
            assert float(s["y"][0]) == 0.0 and float(s["map"].sum()) == 0
        assert float(s["mw"][0]) == 1.0
    bad = LabelledImage(Path("d.png"), True, "folder", (200, 240))
    with pytest.raises(ManufacturingError, match="good images only"):
        CropDataset(goods + [bad], 8, 160, 2, pasted=(0.1, 0.7))


def test_good_only_pasted_training_sets_its_threshold_on_good_parts_alone(tmp_path):
    """``train --good-only DIR --method pasted``: cross-fitted on good images and pasted
    copies; the stored false-alarm rate comes from the good images' out-of-fold scores, the
    recall on real defects stays unknown, and score prints that."""
    pytest.importorskip("torch")
    import json

    import cv2
    from click.testing import CliRunner

    from deepseek.cli import build_cli

    good = tmp_path / "good"
    good.mkdir()
    for i in range(6):
        cv2.imwrite(str(good / f"p{i}_a.png"), _surface(10 + i, (48, 64)))
    res = CliRunner().invoke(build_cli(), [
        "manufacturing", "train", "--out", str(tmp_path / "run"), "--good-only", str(good),
        "--method", "pasted", "--folds", "2", "--crop", "32", "--crops-per-epoch", "8",
        "--epochs", "1", "--batch-size", "4", "--target-fpr", "0.1", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "run" / "training.json").read_text())
    assert info["data"] == "good-only" and info["images"] == 6
    assert "smaller_than_crop" not in info  # 48x64 photos, 32-pixel crops
    assert info["folds"] == 2 and sum(info["fold_images"]) == 6
    exp = info["expected"]
    assert exp["recall"] is None and exp["defect_images"] == 0 and exp["good_images"] == 6
    assert exp["false_positive_rate"] == 0.0  # above every good image
    assert info["pasted"]["images"] == 6 and info["pasted"]["crack_depth"] == [0.35, 0.7]
    assert 0.0 <= info["pasted"]["recall"] <= 1.0
    assert "out-of-fold scores of 6 good images" in info["threshold_rule"]
    assert "too few to resolve" in info["threshold_rule"]  # 6 images cannot resolve 10 %
    # the good images that hold the threshold, each with the spot its fold model found
    review = info["threshold_review"]
    assert len(review["good_highest"]) == 5 and review["defects_missed"] == []
    assert all(0 <= e["spot"][0] <= e["spot"][2] < 64 and 0 <= e["spot"][1] <= e["spot"][3]
               < 48 for e in review["good_highest"])
    assert [e["score"] for e in review["good_highest"]] == sorted(
        [e["score"] for e in review["good_highest"]], reverse=True)
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(good), "--model",
                                           str(tmp_path / "run" / "model.safetensors")])
    assert res.exit_code == 0, res.output
    assert "recall unknown (no defect images)" in res.output
    # a cracked part with its mask in the folder: not learnt as good, it gives the recall
    cracked = _surface(30, (48, 64))
    cv2.line(cracked, (8, 8), (50, 36), 30, 3)
    cv2.imwrite(str(good / "p9_a.png"), cracked)
    cv2.imwrite(str(good / "p9_a_mask.png"), cv2.line(np.zeros((48, 64), np.uint8), (8, 8),
                                                      (50, 36), 255, 3))
    res = CliRunner().invoke(build_cli(), [
        "manufacturing", "train", "--out", str(tmp_path / "run2"), "--good-only", str(good),
        "--method", "pasted", "--folds", "2", "--crop", "32", "--crops-per-epoch", "8",
        "--epochs", "1", "--batch-size", "4", "--target-fpr", "0.1"])
    assert res.exit_code == 0, res.output
    assert "labels to check: the good images scored highest, out of fold" in res.output
    listed = [ln for ln in res.output.splitlines() if "  look at x " in ln]
    assert len(listed) == 5 and not any("p9_a" in ln for ln in listed)
    info = json.loads((tmp_path / "run2" / "training.json").read_text())
    assert info["images"] == 6 and info["expected"]["defect_images"] == 1
    from deepseek.manufacturing.score import Scorer

    flagged = Scorer(tmp_path / "run2" / "model.safetensors").score(good / "p9_a.png").defect
    assert info["expected"]["recall"] == (1.0 if flagged else 0.0)
    # the method goes with --good-only, the darkening with a method that pastes
    res = CliRunner().invoke(build_cli(), ["manufacturing", "train", "--out", str(tmp_path),
                                           "--method", "pasted"])
    assert res.exit_code == 2 and "give --good-only DIR" in res.output
    res = CliRunner().invoke(build_cli(), ["manufacturing", "train", "--out", str(tmp_path),
                                           "--good-only", str(good), "--crack-depth", "0.3",
                                           "0.6"])
    assert res.exit_code == 2 and "not with --method memory" in res.output
    for extra in (["--val-folder", str(good)], ["--resume"], ["--init", "scratch"]):
        res = CliRunner().invoke(build_cli(), ["manufacturing", "train", "--out",
                                               str(tmp_path), "--good-only", str(good),
                                               "--method", "pasted", *extra])
        assert res.exit_code == 2 and "does not go with --good-only" in res.output, extra


def test_good_only_training_refuses_bad_settings(tmp_path):
    pytest.importorskip("torch")
    import cv2

    from deepseek.manufacturing.training import train_good_only

    good = tmp_path / "good"
    good.mkdir()
    cv2.imwrite(str(good / "a.png"), _surface(1, (48, 64)))
    with pytest.raises(ManufacturingError, match="give at least 2"):
        train_good_only(tmp_path / "r", good)
    cv2.imwrite(str(good / "b.png"), _surface(2, (48, 64)))
    with pytest.raises(ManufacturingError, match="folds=1"):
        train_good_only(tmp_path / "r", good, folds=1)
    with pytest.raises(ManufacturingError, match="target_fpr"):
        train_good_only(tmp_path / "r", good, target_fpr=1.0)
    with pytest.raises(ManufacturingError, match="crack_depth"):
        train_good_only(tmp_path / "r", good, crack_depth=(0.6, 0.3))
    with pytest.raises(ManufacturingError, match="multiple of 16"):
        train_good_only(tmp_path / "r", good, crop=40)
