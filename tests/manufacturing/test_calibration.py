"""calibrate: a model's threshold re-set on a line's own images, and score using it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from deepseek.cli import build_cli
from deepseek.manufacturing.calibration import (
    calibrate,
    read_calibration,
    threshold_for_fpr,
    write_calibration,
)
from deepseek.manufacturing.errors import ManufacturingError
from deepseek.manufacturing.score import score_images


def _parts(root, n, crack_every=0, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = Image.fromarray(np.clip(rng.normal(150, 10, (48, 64)), 0, 255).astype(np.uint8))
        mask = Image.new("L", img.size, 0)
        if crack_every and i % crack_every == 0:
            ImageDraw.Draw(img).line([(5, 5), (58, 40)], fill=50, width=3)
            ImageDraw.Draw(mask).line([(5, 5), (58, 40)], fill=255, width=3)
        root.mkdir(parents=True, exist_ok=True)
        img.save(root / f"p{i:03d}.png")
        if crack_every:
            mask.save(root / f"p{i:03d}_mask.png")
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Weights of the packaged model written as a trained file (what train --folder makes)."""
    from deepseek.loader import ModelLoader, save_model

    m = ModelLoader.load("defect-3dcnn-lstm", device="cpu")
    return save_model(m.module, tmp_path_factory.mktemp("w") / "model.safetensors",
                      architecture="defect-3dcnn-lstm", config=m.config)


def test_the_threshold_rule_counts_false_alarms_exactly():
    good = np.array([0.1, 0.2, 0.3, 0.4, 0.9])
    assert threshold_for_fpr(good, 0.0) > 0.9                    # nothing flagged
    thr = threshold_for_fpr(good, 0.2)                           # one of five allowed
    assert (good >= thr).sum() == 1 and thr > 0.4
    assert (good >= threshold_for_fpr(good, 0.39)).sum() == 1    # floor(0.39 * 5) = 1
    with pytest.raises(ManufacturingError, match="no good images|none were found"):
        threshold_for_fpr([], 0.01)
    with pytest.raises(ManufacturingError, match="target_fpr=1"):
        threshold_for_fpr(good, 1.0)


def test_calibrate_on_good_parts_and_on_a_labelled_folder(tmp_path, weights):
    good = _parts(tmp_path / "good", 30, seed=1)
    cal = calibrate(good, weights, target_fpr=0.1, all_good=True, progress=False)
    scores = np.array([r.score for r in score_images([good], weights, progress=False)])
    assert (scores >= cal["threshold"]).sum() == 3                # floor(0.1 * 30)
    exp = cal["expected"]
    assert exp["false_positive_rate"] == pytest.approx(0.1) and exp["good_images"] == 30
    assert exp["recall"] is None and any("recall" in w for w in cal["warnings"])
    lo, hi = exp["false_positive_rate_ci95"]
    assert lo < 0.1 < hi
    with pytest.raises(ManufacturingError, match="no label.*good parts alone: .*--all-good"):
        calibrate(good, weights, all_good=False, progress=False)   # unlabelled: say so

    labelled = _parts(tmp_path / "labelled", 24, crack_every=3, seed=2)
    cal = calibrate(labelled, weights, target_fpr=0.0, progress=False)
    assert cal["expected"]["defect_images"] == 8 and cal["expected"]["good_images"] == 16
    assert cal["expected"]["false_positive_rate"] == 0.0
    assert cal["expected"]["recall"] is not None
    # the good images that set the threshold and the defects under it, by name and score
    scored = {r.path: r.score for r in score_images([labelled], weights, progress=False)}
    review = cal["review"]
    assert len(review["good_highest"]) == 5
    top = review["good_highest"][0]
    assert top["score"] == pytest.approx(max(s for p, s in scored.items()
                                             if int(p[-7:-4]) % 3))
    assert top["score"] < cal["threshold"] and not top["flagged"]   # target 0: none flagged
    assert all(int(e["path"][-7:-4]) % 3 == 0 and e["score"] < cal["threshold"]
               for e in review["defects_missed"])


def test_calibrate_points_at_the_spot_in_a_good_image_that_looks_like_a_crack(tmp_path,
                                                                          weights,
                                                                          monkeypatch):
    """A line's good images, one with a dark line across its lower right (a crack its label
    misses): calibrate lists it first among the good images scored highest, with the box
    around its most crack-like spot, in its own pixels, so that a person finds the line at
    once; the text says where to look."""
    rng = np.random.default_rng(4)
    root = tmp_path / "good"
    root.mkdir()
    for i in range(12):
        img = Image.fromarray(np.clip(rng.normal(150, 10, (96, 160)), 0, 255).astype(np.uint8))
        if i == 7:
            ImageDraw.Draw(img).line([(100, 60), (150, 85)], fill=50, width=3)
        img.save(root / f"p{i:03d}.png")
    from deepseek.manufacturing.metrics import REVIEW_IMAGES
    from deepseek.manufacturing.score import Scorer

    made = []
    real = Scorer.score
    monkeypatch.setattr(Scorer, "score", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    cal = calibrate(root, weights, target_fpr=0.0, all_good=True, progress=False)
    # only the reviewed images' maps are kept to the end: memory bounded by the review
    assert len(made) == 12 and sum(r.cell_map is not None for r in made) == REVIEW_IMAGES
    top = cal["review"]["good_highest"][0]
    assert top["path"].endswith("p007.png")
    x0, y0, x1, y1 = top["spot"]
    assert x0 <= 100 and x1 >= 150 and y0 <= 60 and y1 >= 85   # the whole line
    assert x0 >= 64 and y0 >= 32                                # and not the whole image
    assert all(len(e["spot"]) == 4 for e in cal["review"]["good_highest"])
    out = tmp_path / "cal.json"
    res = CliRunner().invoke(build_cli(), ["manufacturing", "calibrate", str(root), "--model",
                                           str(weights), "--all-good", "--target-fpr", "0",
                                           "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"p007.png  look at x {x0}-{x1}, y {y0}-{y1}" in res.output
    assert json.loads(out.read_text())["review"]["good_highest"][0]["spot"] == [x0, y0, x1, y1]


def test_score_uses_a_calibration_only_with_its_own_weights(tmp_path, weights):
    good = _parts(tmp_path / "good", 12, seed=3)
    cal_path = write_calibration(calibrate(good, weights, target_fpr=0.0, all_good=True,
                                           progress=False), tmp_path / "cal.json")
    from deepseek.manufacturing.steps import score_step

    res = score_step(model=str(weights), calibration=str(cal_path))(str(good))
    assert not any(r["defect"] for r in res)                   # none of its own good parts
    assert {r["threshold"] for r in res} == {json.loads(cal_path.read_text())["threshold"]}
    with pytest.raises(ManufacturingError, match="not both"):
        score_step(model=str(weights), threshold=0.5, calibration=str(cal_path))
    other = tmp_path / "other.safetensors"
    other.write_bytes(weights.read_bytes() + b" ")             # other weights, other sha256
    with pytest.raises(ManufacturingError, match="calibrate this model on the line again"):
        read_calibration(cal_path, other)
    (tmp_path / "bad.json").write_text('{"threshold": "x"}')
    with pytest.raises(ManufacturingError, match="not a calibration file"):
        read_calibration(tmp_path / "bad.json", weights)
    # the weights' ONNX export (the edge form) is the same model: a calibration made with
    # either holds for both; an export of other weights is refused
    from deepseek.manufacturing.model import write_stream_onnx

    export = write_stream_onnx(weights)
    assert read_calibration(cal_path, export)["threshold"] == read_calibration(
        cal_path, weights)["threshold"]
    from_export = write_calibration(calibrate(good, export, target_fpr=0.0, all_good=True,
                                              progress=False), tmp_path / "cal_edge.json")
    assert read_calibration(from_export, weights)["model_sha256"] == json.loads(
        cal_path.read_text())["model_sha256"]
    other.write_bytes(weights.read_bytes())
    other.with_suffix(".json").write_bytes(weights.with_suffix(".json").read_bytes())
    data = bytearray(other.read_bytes())
    data[-1] ^= 1                                               # other weights
    other.write_bytes(bytes(data))
    with pytest.raises(ManufacturingError, match="calibrate this model on the line again"):
        read_calibration(cal_path, write_stream_onnx(other))


def test_a_calibration_of_a_registered_name_holds_its_packaged_weights(tmp_path):
    """Calibrated by name, a threshold belongs to the packaged weights then under it: it is
    refused once they change (a plugin upgrade), not applied to other weights; one from
    before the digest was recorded holds to the name, as it did."""
    from deepseek.manufacturing.stream import weights_sha256

    good = _parts(tmp_path / "good", 6, seed=4)
    cal = calibrate(good, "defect-3dcnn-lstm", target_fpr=0.0, all_good=True,
                    progress=False)
    assert cal["model_sha256"] == weights_sha256("defect-3dcnn-lstm") is not None
    path = write_calibration(cal, tmp_path / "cal.json")
    assert read_calibration(path, "defect-3dcnn-lstm")["threshold"] == cal["threshold"]
    path.write_text(json.dumps({**cal, "model_sha256": "0" * 64}))  # other weights
    with pytest.raises(ManufacturingError, match="calibrate this model on the line again"):
        read_calibration(path, "defect-3dcnn-lstm")
    path.write_text(json.dumps({**cal, "model_sha256": None}))  # before the digest
    assert read_calibration(path, "defect-3dcnn-lstm")["threshold"] == cal["threshold"]
    with pytest.raises(ManufacturingError, match="calibrate this model on the line again"):
        read_calibration(path, "other-name")


def test_the_commands(tmp_path, weights, monkeypatch):
    good = _parts(tmp_path / "good", 10, seed=4)
    runner, cli = CliRunner(), build_cli()
    out = tmp_path / "line.calibration.json"
    res = runner.invoke(cli, ["manufacturing", "calibrate", str(good), "--all-good", "--model",
                              str(weights), "--out", str(out), "--target-fpr", "0.1"])
    assert res.exit_code == 0, res.output
    assert "false-alarm rate 0.100" in res.output and "recall unknown" in res.output
    assert "labels to check: the good images scored highest" in res.output
    assert "fix the label and calibrate again" in res.output
    assert out.is_file()
    assert (f"for the served photo decision: deepseek manufacturing export {weights} "
            f"--calibration {out}") in res.output
    # an --out under a file is refused before the folder is scored
    import deepseek.manufacturing.calibration as calibration_module

    def never(*args, **kwargs):
        raise AssertionError("scored before the output was checked")

    blocker = tmp_path / "runs"
    blocker.write_text("a file where the output folder would go")
    with monkeypatch.context() as patch:
        patch.setattr(calibration_module, "calibrate", never)
        res = runner.invoke(cli, ["manufacturing", "calibrate", str(good), "--all-good",
                                  "--model", str(weights), "--out", str(blocker / "c.json")])
    assert res.exit_code == 2 and res.output.startswith(f"error: {blocker}: File exists")
    res = runner.invoke(cli, ["manufacturing", "score", str(good), "--model", str(weights),
                              "--calibration", str(out)])
    assert res.exit_code == 0, res.output
    assert "1 flagged as defects" in res.output
    assert "expected at the calibrated threshold" in res.output


def test_calibrating_on_images_the_model_learnt_from_is_warned(tmp_path, weights):
    """training.json beside the weights keeps the digests of the images trained on: given one
    of them again (under another name), calibrate says so; a run file of other weights, or
    none, says nothing."""
    import shutil

    from deepseek.manufacturing.images import read_gray
    from deepseek.manufacturing.labelled import pixel_digest
    from deepseek.manufacturing.runtime import trained_digests

    good = _parts(tmp_path / "good", 10, seed=6)
    run = tmp_path / "run"
    run.mkdir()
    model = shutil.copy(weights, run / "model.safetensors")
    assert trained_digests(model) is None                        # no run file: unknown
    learnt = _parts(tmp_path / "learnt", 2, seed=6)               # the same pixels as p000-1
    (run / "training.json").write_text(json.dumps({
        "model": str(model), "image_digests": [pixel_digest(read_gray(p))
                                               for p in sorted(learnt.glob("*.png"))]}))
    cal = calibrate(good, model, target_fpr=0.1, all_good=True, progress=False)
    assert cal["trained_on_images"] == 2
    assert any("2 of the 10 images are ones" in w and "never saw" in w
               for w in cal["warnings"])
    # the weights' ONNX exports beside them (the edge form) know the same images
    expected = trained_digests(model)
    for export in ("model.stream.onnx", "model.still.onnx"):
        assert trained_digests(run / export) == expected
    (run / "training.json").write_text(json.dumps({"model": str(run / "other.safetensors"),
                                                   "image_digests": []}))
    assert trained_digests(model) is None                        # another model's run file
    cal = calibrate(good, model, target_fpr=0.1, all_good=True, progress=False)
    assert cal["trained_on_images"] == 0 and not any("never saw" in w for w in cal["warnings"])


def test_evaluating_on_images_the_model_learnt_from_is_warned(tmp_path, weights):
    """score --evaluate on images the model was trained on (equal pixels, under any name)
    counts them and says that its figures read too well; on other images it says nothing."""
    import shutil

    from deepseek.manufacturing.images import read_gray
    from deepseek.manufacturing.labelled import pixel_digest
    from deepseek.manufacturing.score import evaluate_scores

    labelled = _parts(tmp_path / "labelled", 6, crack_every=3, seed=7)
    run = tmp_path / "run"
    run.mkdir()
    model = str(shutil.copy(weights, run / "model.safetensors"))
    learnt = [labelled / "p000.png", labelled / "p004.png"]
    (run / "training.json").write_text(json.dumps({
        "model": model, "image_digests": [pixel_digest(read_gray(p)) for p in learnt]}))
    results = score_images([labelled], model, progress=False)
    ev = evaluate_scores(results, labelled, model=model)
    assert ev["trained_on_images"] == 2 and ev["trained_on_example"] == str(learnt[0])
    assert evaluate_scores(results, labelled)["trained_on_images"] == 0  # model not given
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(labelled),
                                           "--model", model, "--evaluate"])
    assert res.exit_code == 0, res.output
    assert (f"warning: 2 of these 6 images are ones {model} was trained on (equal pixels, "
            f"e.g. {learnt[0]})") in res.output and "read too well" in res.output
    (run / "training.json").write_text(json.dumps({"model": model, "image_digests": []}))
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(labelled),
                                           "--model", model, "--evaluate"])
    assert res.exit_code == 0 and "read too well" not in res.output


def test_copies_of_an_image_count_once_in_calibration_and_evaluation(tmp_path, weights):
    """One photo saved twice is one good part: the threshold's count of good images and the
    evaluation's count each hold it once, and both name the copy."""
    import shutil

    from deepseek.manufacturing.score import evaluate_scores

    good = _parts(tmp_path / "good", 10, seed=4)
    shutil.copy(good / "p003.png", good / "p003b.png")
    cal = calibrate(good, weights, target_fpr=0.1, all_good=True, progress=False)
    assert cal["expected"]["good_images"] == 10
    assert [c.rsplit("/", 1)[-1] for c in cal["copies"][0]["copies"]] == ["p003b.png"]
    labelled = _parts(tmp_path / "labelled", 9, crack_every=3, seed=5)
    shutil.copy(labelled / "p001.png", labelled / "p001b.png")
    shutil.copy(labelled / "p001_mask.png", labelled / "p001b_mask.png")
    cal = calibrate(labelled, weights, target_fpr=0.0, progress=False)
    assert (cal["expected"]["good_images"], cal["expected"]["defect_images"]) == (6, 3)
    results = score_images([labelled], weights, progress=False)
    assert len(results) == 10                                   # every file is scored ...
    ev = evaluate_scores(results, labelled)
    assert ev["images"] == 9 and ev["copies_left_out"] == 1     # ... and counted once


def test_an_evaluation_decodes_no_photo_again(tmp_path, weights, monkeypatch):
    """score --evaluate: the scoring keeps each photo's digest and darkness per map cell with
    its map, so the evaluation reads only the labels, with the same figures as from the
    photos decoded again (copies and the darkness reference included)."""
    import dataclasses
    import shutil

    from deepseek.manufacturing import images
    from deepseek.manufacturing.score import evaluate_scores

    labelled = _parts(tmp_path / "labelled", 9, crack_every=3, seed=5)
    shutil.copy(labelled / "p001.png", labelled / "p001b.png")
    shutil.copy(labelled / "p001_mask.png", labelled / "p001b_mask.png")
    results = score_images([labelled], weights, progress=False)
    decoded = []
    read_gray = images.read_gray
    monkeypatch.setattr(images, "read_gray",
                        lambda path, **kw: decoded.append(path) or read_gray(path, **kw))
    ev = evaluate_scores(results, labelled)
    assert decoded == [] and ev["copies_left_out"] == 1 and ev["pixel"]["images"] == 9
    bare = [dataclasses.replace(r, pixels=None) for r in results]  # as a caller made them
    again = evaluate_scores(bare, labelled)
    assert len(decoded) >= 10  # each photo, the darkness reference's read again
    assert json.dumps(again) == json.dumps(ev)
    assert "pixels" not in results[0].to_dict()


def test_calibrating_on_labels_decodes_each_photo_once(tmp_path, weights, monkeypatch):
    """The labelled folder's listing decodes each photo (its digest, copies): the scoring
    takes those pixels instead of decoding the file again, with the same threshold."""
    from deepseek.manufacturing import images, score

    labelled = _parts(tmp_path / "labelled", 9, crack_every=3, seed=5)
    want = calibrate(labelled, weights, target_fpr=0.0, progress=False)
    decoded = []
    read_gray = images.read_gray
    for module in (images, score):  # the listing's decoder and the scorer's
        monkeypatch.setattr(module, "read_gray",
                            lambda path, **kw: decoded.append(path) or read_gray(path, **kw))
    got = calibrate(labelled, weights, target_fpr=0.0, progress=False)
    photos = [p for p in decoded if not p.stem.endswith("_mask")]
    assert len(photos) == 9 and len(set(photos)) == 9  # once each
    assert got["threshold"] == want["threshold"] and got["expected"] == want["expected"]


def test_calibrating_on_good_parts_alone_decodes_each_photo_once(tmp_path, weights,
                                                                  monkeypatch):
    """--all-good: the listing decodes each photo for its digest (copies, images the model
    learnt from) and keeps the pixels for the scoring, which gives them back once used."""
    import shutil

    from deepseek.manufacturing import images, labelled, score

    good = _parts(tmp_path / "good", 8, seed=6)
    want = calibrate(good, weights, target_fpr=0.0, all_good=True, progress=False)
    decoded, listed = [], []
    read_gray = images.read_gray
    for module in (images, score):  # the listing's decoder and the scorer's
        monkeypatch.setattr(module, "read_gray",
                            lambda path, **kw: decoded.append(path) or read_gray(path, **kw))
    distinct = labelled.distinct_images
    monkeypatch.setattr(labelled, "distinct_images",
                        lambda *a, **kw: listed.extend(distinct(*a, **kw)) or listed)
    got = calibrate(good, weights, target_fpr=0.0, all_good=True, progress=False)
    assert sorted(decoded) == sorted(good.glob("*.png")) and len(decoded) == 8  # once each
    assert got["threshold"] == want["threshold"] and got["expected"] == want["expected"]
    assert len(listed) == 8 and all(it._image is None for it in listed)  # given back
    # past the memory budget the pixels are decoded again where used, the same pixels
    again = distinct(sorted(good.glob("*.png")), cache_mb=0)
    assert all(it._image is None for it in again)
    np.testing.assert_array_equal(again[0].image, read_gray(again[0].path))
    shutil.copy(good / "p000.png", good / "p000_again.png")  # a copy's pixels are not kept
    (first, *_) = distinct(sorted(good.glob("*.png")))
    assert first._image is not None and [c._image for c in first.copies] == [None]
