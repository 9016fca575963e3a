"""Good parts only: the patch memory, its threshold from out-of-fold good parts, and scoring."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from deepseek.cli import build_cli
from deepseek.manufacturing.anomaly import PatchMemory, fit_memory, is_memory_file
from deepseek.manufacturing.errors import ManufacturingError
from deepseek.manufacturing.metrics import threshold_above
from deepseek.manufacturing.score import read_gray, score_images


def _surface(path, seed, crack=False, h=80, w=112):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.normal(140, 25, (h, w)).astype(np.float32), (0, 0), 1.2)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if crack:
        cv2.line(img, (20, 10), (70, 60), 20, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    root = tmp_path_factory.mktemp("line")
    for i in range(10):
        _surface(root / "good" / f"part_{i}.png", i)
    test_good = [_surface(root / "test" / f"ok_{i}.png", 100 + i) for i in range(3)]
    test_bad = [_surface(root / "test" / f"crack_{i}.png", 200 + i, crack=True)
                for i in range(3)]
    return root, test_good, test_bad


def test_memory_scores_cracks_above_good_parts_and_sets_its_threshold(line, tmp_path):
    root, good, bad = line
    mem = fit_memory(root / "good", target_fpr=0.01, progress=False)
    m = mem.meta
    # every good image scored out of fold; the default rule would make one group of
    # part_0 ... part_9, so each image is its own part (and the memory says so)
    assert (m["fit_images"], m["folds"], m["groups"]) == (10, 5, 10)
    assert "each image is taken as its own part" in m["regrouped"]
    assert "too few to resolve" in m["threshold_rule"]  # 10 images cannot resolve 1 %
    # just above every out-of-fold score: none of the good images is flagged
    assert m["threshold"] > m["out_of_fold_scores"]["max"]
    assert m["threshold"] == pytest.approx(threshold_above(m["out_of_fold_scores"]["max"]))
    good_s = [mem.score(read_gray(p))[0] for p in good]
    bad_s = [mem.score(read_gray(p))[0] for p in bad]
    assert min(bad_s) > max(good_s)
    amap = mem.anomaly_map(read_gray(bad[0]))
    assert amap.shape == (10, 14)  # one value per 8x8 pixels
    r, c = np.unravel_index(np.argmax(amap), amap.shape)
    assert 0 <= r * 8 <= 70 and 10 <= c * 8 <= 80  # on the crack's extent
    path = mem.save(tmp_path / "m.safetensors")
    assert is_memory_file(path)
    again = PatchMemory.load(path)
    assert again.meta == m and np.array_equal(again.bank, mem.bank)
    assert again.score(read_gray(bad[0]))[0] == pytest.approx(bad_s[0], rel=1e-5)


def _labelled_line(root, goods=10, cracks=3):
    """A folder as `train --folder` takes it: good parts and cracked ones with masks."""
    for i in range(goods):
        _surface(root / f"part_{i}.png", i)
    for i in range(cracks):
        img = _surface(root / f"crack_{i}.png", 300 + i, crack=True)
        mask = np.zeros((80, 112), np.uint8)
        cv2.line(mask, (20, 10), (70, 60), 255, 3)
        cv2.imwrite(str(img.with_name(f"crack_{i}_mask.png")), mask)
    return root


def test_labelled_defects_are_found_by_every_label_rule(tmp_path):
    """What good-parts training and `calibrate --all-good` must not take for good: a mask
    with a defect beside the image, a YOLO label that draws one, a defect class folder;
    not an all-zero mask, an empty YOLO label, a good/ folder or an unlabelled image."""
    from deepseek.manufacturing.labelled import labelled_defects

    masked = _labelled_line(tmp_path / "masks", goods=2, cracks=1)
    _surface(masked / "clean.png", 50)
    cv2.imwrite(str(masked / "clean_mask.png"), np.zeros((80, 112), np.uint8))
    files = sorted(p for p in masked.glob("*.png") if "_mask" not in p.name)
    found = labelled_defects(masked, files)
    assert list(found) == [masked / "crack_0.png"]
    assert found[masked / "crack_0.png"] == f"mask label {masked / 'crack_0_mask.png'}"

    yolo = tmp_path / "yolo"
    for name, line in (("a", "0 0.2 0.2 0.6 0.2 0.6 0.3\n"), ("b", "")):
        _surface(yolo / "images" / f"{name}.png", 7)
        (yolo / "labels").mkdir(parents=True, exist_ok=True)
        (yolo / "labels" / f"{name}.txt").write_text(line)
    _surface(yolo / "images" / "c.png", 8)                   # no label file: background
    found = labelled_defects(yolo, sorted((yolo / "images").glob("*.png")))
    assert list(found) == [yolo / "images" / "a.png"] and "yolo label" in found[
        yolo / "images" / "a.png"]

    classes = tmp_path / "classes"
    ok = _surface(classes / "good" / "g.png", 1)
    bad = _surface(classes / "defect" / "d.png", 2)
    assert labelled_defects(classes, [ok, bad]) == {bad: f"in the defect folder {bad.parent}"}


def test_good_only_leaves_labelled_defects_out_and_measures_recall_on_them(tmp_path, caplog):
    """`train --good-only` pointed at a labelled folder: the cracked parts its masks mark are
    not learnt as good (the memory holds none of their patches), one warning names them,
    and they give the recall stored at the threshold, as `score` prints it."""
    import shutil

    folder = _labelled_line(tmp_path / "labelled")
    for name in ("crack_0.png", "crack_0_mask.png"):  # the same photo again: counted once
        shutil.copy(folder / name, folder / name.replace("crack_0", "crack_copy"))
    with caplog.at_level("WARNING", logger="deepseek.manufacturing.labelled"):
        mem = fit_memory(folder, target_fpr=0.01, progress=False, crack_weight=0)
    said = [r.getMessage() for r in caplog.records if "labelled defects" in r.getMessage()]
    assert len(said) == 1 and "4 of its 14 images are labelled defects (crack_0.png: mask " \
        "label" in said[0]
    m = mem.meta
    goods = _labelled_line(tmp_path / "goods", cracks=0)         # the same good parts alone
    alone = fit_memory(goods, target_fpr=0.01, progress=False, crack_weight=0)
    assert m["fit_images"] == 10 and m["image_digests"] == alone.meta["image_digests"]
    assert m["threshold"] == alone.meta["threshold"] and np.array_equal(mem.bank, alone.bank)
    exp = m["expected"]
    cracks = [mem.score(read_gray(folder / f"crack_{i}.png"))[0] for i in range(3)]
    assert exp["defect_images"] == 3 and exp["good_images"] == 10
    assert exp["recall"] == pytest.approx(np.mean([c >= m["threshold"] for c in cracks]))
    assert exp["false_positive_rate"] == 0.0 and len(exp["recall_ci95"]) == 2
    assert "labelled defect images" in exp["recall_from"]
    path = mem.save(tmp_path / "m.safetensors")
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(folder / "part_0.png"),
                                           "--model", str(path)])
    assert res.exit_code == 0, res.output
    assert "(from 3 defect and 10 good images): recall " in res.output
    assert "(labelled defects of the folder, left out of training)" in res.output


def test_calibrate_all_good_refuses_a_folder_whose_labels_mark_defects(tmp_path):
    from deepseek.manufacturing.calibration import calibrate

    folder = _labelled_line(tmp_path / "labelled", goods=3, cracks=2)
    with pytest.raises(ManufacturingError, match=r"all_good \(--all-good\) takes every image "
                       r"as a good part, but 2 of its 5 are labelled defects \(crack_0.png: "
                       r"mask label .*\.\.\.\): leave out --all-good"):
        calibrate(folder, "defect-3dcnn-lstm", all_good=True, progress=False)


def test_a_memory_scores_only_with_the_backbone_weights_it_was_fitted_on(line, tmp_path):
    """Its patches are one encoder's features: a memory records its backbone's sha256 and
    refuses to load under other weights (the packaged ones after an upgrade, or a backbone
    file changed since), with the fix; one from before the digest was recorded loads as it
    did."""
    from safetensors.numpy import load_file, save_file

    from deepseek.loader import save_model
    from deepseek.manufacturing.stream import load_net, weights_sha256

    root, _, _ = line
    mem = fit_memory(root / "good", target_fpr=0.01, progress=False, crack_weight=0)
    assert mem.meta["backbone_sha256"] == weights_sha256("defect-3dcnn-lstm") is not None
    path = mem.save(tmp_path / "m.safetensors")

    def rewrite(name, **meta):
        out = tmp_path / name
        save_file(load_file(str(path)), str(out),
                  metadata={"deepseek": json.dumps({**mem.meta, **meta})})
        return out

    PatchMemory.load(path)
    with pytest.raises(ManufacturingError, match=r"other\.safetensors: fitted on defect-3dcnn-"
                       r"lstm \(sha256 0123456789ab\).*train --good-only"):
        PatchMemory.load(rewrite("other.safetensors", backbone_sha256="0123456789ab" * 5))
    PatchMemory.load(rewrite("old.safetensors", backbone_sha256=None))
    # a backbone file: held to its digest
    net = load_net("defect-3dcnn-lstm", onnx=False)
    bb = save_model(net, tmp_path / "bb.safetensors", architecture="defect-3dcnn-lstm",
                    config={"channels": [16, 32, 32], "temporal": 3, "hidden": 32})
    PatchMemory.load(rewrite("file.safetensors", backbone=str(bb),
                             backbone_sha256=weights_sha256(bb)))
    bb.write_bytes(bb.read_bytes() + b" ")
    with pytest.raises(ManufacturingError, match="cannot score"):
        PatchMemory.load(tmp_path / "file.safetensors")
    assert weights_sha256(net) is None and weights_sha256("no-such-model") is None


def test_cli_train_refuses_an_out_it_cannot_write_before_it_trains(line, tmp_path,
                                                                    monkeypatch):
    root, _, _ = line
    import deepseek.manufacturing.anomaly as anomaly

    monkeypatch.setattr(anomaly, "fit_memory", lambda *a, **k: pytest.fail("trained"))
    (tmp_path / "afile").write_text("a file where the run's folder would go")
    res = CliRunner().invoke(build_cli(), ["manufacturing", "train", "--out",
                                           str(tmp_path / "afile" / "run"), "--good-only",
                                           str(root / "good")])
    assert res.exit_code == 2 and "Not a directory" in res.output, res.output


def test_cli_good_only_then_score(line, tmp_path):
    root, good, bad = line
    res = CliRunner().invoke(build_cli(), ["manufacturing", "train", "--out", str(tmp_path),
                                           "--good-only", str(root / "good"), "--json",
                                           "--memory-selection", "coreset", "--folds", "3"])
    assert res.exit_code == 0, res.output
    fitted = json.loads(res.output)
    assert fitted["selection"] == "coreset" and fitted["folds"] == 3
    top = [e["score"] for e in fitted["threshold_review"]["good_highest"]]
    assert top == sorted(top, reverse=True) and top[0] == fitted["out_of_fold_scores"]["max"]
    assert fitted["threshold_review"]["defects_missed"] == []
    assert "already holds" not in res.stderr
    # a second run into the same folder says at its start that it replaces the first's
    res = CliRunner().invoke(build_cli(), ["manufacturing", "train", "--out", str(tmp_path),
                                           "--good-only", str(root / "good"), "--json",
                                           "--memory-selection", "coreset", "--folds", "3"])
    assert res.exit_code == 0 and json.loads(res.stdout)["threshold"] == fitted["threshold"]
    assert (f"note: {tmp_path} already holds memory.safetensors from an "
            "earlier run") in res.stderr, res.stderr
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(root / "test"),
                                           "--model", fitted["model"], "--json", "--heatmaps",
                                           str(tmp_path / "heat")])
    assert res.exit_code == 0, res.output
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in json.loads(res.output)}
    assert all(rows[p.name]["defect"] for p in bad)
    assert rows[bad[0].name]["box"] is not None
    assert all(r["heatmap"] for r in rows.values())
    # a memory scores each image as it is: flips are refused, a view count checked
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(root / "test"),
                                           "--model", fitted["model"], "--views", "4"])
    assert res.exit_code != 0 and "views 1" in res.output
    with pytest.raises(ManufacturingError, match="views=2"):
        score_images([root / "test"], fitted["model"], views=2)
    # the memory keeps the digests of the good images it learnt from: calibrate on them warns
    from deepseek.manufacturing.calibration import calibrate

    cal = calibrate(root / "good", fitted["model"], all_good=True, progress=False)
    assert cal["trained_on_images"] == cal["expected"]["good_images"] == 10  # every one
    # a memory holds no crack network: the stream says where it serves
    res = CliRunner().invoke(build_cli(), ["manufacturing", "stream", "synthetic:?frames=2",
                                           "--model", fitted["model"], "--quiet"])
    assert res.exit_code != 0
    assert "a good-parts model (patch-memory, train --good-only)" in res.output
    assert "the stream needs a crack network" in res.output
    # train wrote its photo decision beside it, to be served: it decides as score does
    assert fitted["photo_onnx"] == str(tmp_path / "memory.photo.onnx")
    _decides_as_score(fitted["photo_onnx"], fitted["model"], [*good, *bad])
    # counted by the server as it pads: the crack share's 7/8 size makes 16 cells 19 pixels
    assert _declared_cell(fitted["photo_onnx"]) == [1, 19, 19]


def _declared_cell(photo_onnx):
    import onnxruntime as ort

    from deepseek.loader import declared_onnx_inputs

    session = ort.InferenceSession(photo_onnx, providers=["CPUExecutionProvider"])
    return declared_onnx_inputs(session)["image"]["cell"]


def _decides_as_score(photo_onnx, model, paths):
    """The photo decision ``photo_onnx`` gives each photo ``score`` gives it with ``model``
    (a memory): score, decision, patch map, threshold and the box around a flagged one."""
    import onnxruntime as ort

    from deepseek.manufacturing.score import Scorer

    session = ort.InferenceSession(photo_onnx, providers=["CPUExecutionProvider"])
    scorer = Scorer(model)
    flagged = 0
    for p in paths:
        want = scorer.score(p)
        score, defect, amap, thr, box = session.run(None, {"image": read_gray(p)[None]})
        assert score[0] == pytest.approx(want.score, abs=2e-4)
        assert bool(defect[0]) == want.defect and thr[0] == pytest.approx(scorer.threshold)
        assert box[0].tolist() == (list(want.box) if want.defect else [-1] * 4)
        np.testing.assert_allclose(amap[0], want.cell_map, atol=2e-4)
        flagged += want.defect
    assert 0 < flagged < len(paths)


def test_a_memorys_photo_decision_is_what_score_decides(line, tmp_path):
    """`export memory.safetensors` writes the memory's photo decision (here the memory
    alone; with the crack model's share, the default, in test_cli_good_only_then_score); a
    calibration's threshold goes in with --calibration, and it is served over REST."""
    import httpx

    from deepseek.loader import onnx_metadata
    from deepseek.manufacturing.calibration import calibrate, write_calibration
    from deepseek.manufacturing.runtime import PHOTO_META_KEY
    from deepseek.serving import DeepSeekServing

    root, good, bad = line
    mem = fit_memory(root / "good", target_fpr=0.01, progress=False, folds=3, crack_weight=0)
    model = str(mem.save(tmp_path / "memory.safetensors"))
    res = CliRunner().invoke(build_cli(), ["manufacturing", "export", model, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["photo_onnx"] == str(tmp_path / "memory.photo.onnx")
    decides = json.loads(onnx_metadata(out["photo_onnx"])[PHOTO_META_KEY])
    assert decides["threshold"] == mem.threshold and decides["kind"] == "patch-memory"
    assert decides["crack"] is None and _declared_cell(out["photo_onnx"]) == [1, 16, 16]
    _decides_as_score(out["photo_onnx"], model, [*good, *bad])
    cal = calibrate(root / "test", model, all_good=True, target_fpr=0.5, progress=False)
    path = write_calibration(cal, tmp_path / "cal.json")
    res = CliRunner().invoke(build_cli(), ["manufacturing", "export", model, "--calibration",
                                           str(path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["photo_decision"]["threshold"] == cal["threshold"]
    img = read_gray(bad[0])
    with DeepSeekServing(models={"line": out["photo_onnx"]}, port=0, grpc_port=None,
                         calibrate=False) as server:
        r = httpx.post(f"http://{server.http_url}/v2/models/line/infer", timeout=60, json={
            "inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, *img.shape],
                        "data": img.ravel().tolist()}]})
    assert r.status_code == 200, r.text
    got = {o["name"]: o["data"] for o in r.json()["outputs"]}
    assert got["threshold"] == [pytest.approx(cal["threshold"])]
    from deepseek.manufacturing.score import Scorer

    assert got["score"][0] == pytest.approx(Scorer(model).score(bad[0]).score, abs=2e-4)


def test_the_group_rule_is_given_under_either_name_and_a_broken_one_is_named(tmp_path, line):
    """``--group-pattern`` and ``--group-regex`` are one option of train and calibrate; an
    expression that does not compile is an error naming it, not a traceback."""
    root = line[0]
    _surface(tmp_path / "few" / "a.png", 1)
    _surface(tmp_path / "few" / "b.png", 2)
    for name in ("--group-pattern", "--group-regex"):
        res = CliRunner().invoke(build_cli(), ["manufacturing", "train", "--out",
                                               str(tmp_path / "m"), "--good-only",
                                               str(tmp_path / "few"), name, "(png)"])
        assert res.exit_code == 2 and "form 1 group" in res.output, (name, res.output)
        res = CliRunner().invoke(build_cli(), ["manufacturing", "calibrate", str(root / "good"),
                                               "--model", "defect-3dcnn-lstm", "--out",
                                               str(tmp_path / "c.json"), name, "part(["])
        assert res.exit_code == 2, (name, res.output)
        assert "'--group-pattern'" in res.output  # named, before an image is read
        assert "'part([' is not a regular expression" in res.output
        assert "give --group-pattern a Python regular expression" in res.output
    with pytest.raises(ManufacturingError, match="not a regular expression"):
        fit_memory(tmp_path / "few", group_pattern="(?P<")


def test_bad_memory_inputs(tmp_path, line):
    root, good, _ = line
    with pytest.raises(ManufacturingError, match="give at least 2"):
        fit_memory(_surface(tmp_path / "few" / "a.png", 1).parent)
    _surface(tmp_path / "few" / "b.png", 2)
    with pytest.raises(ManufacturingError, match="form 1 group"):
        fit_memory(tmp_path / "few", group_pattern="(png)")
    with pytest.raises(ManufacturingError, match="folds"):
        fit_memory(root / "good", folds=1)
    with pytest.raises(ManufacturingError, match="selection='nearest'"):
        fit_memory(root / "good", selection="nearest")
    with pytest.raises(ManufacturingError, match="target_fpr"):
        fit_memory(root / "good", target_fpr=0)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors")
    assert not is_memory_file(junk)
    with pytest.raises(ManufacturingError, match="cannot read a good-parts memory"):
        PatchMemory.load(junk)
    res = CliRunner().invoke(build_cli(), ["manufacturing", "train", "--out", str(tmp_path),
                                           "--good-only", str(root / "good"), "--folder",
                                           str(root)])
    assert res.exit_code == 2 and "not both" in res.output
    res = CliRunner().invoke(build_cli(), ["manufacturing", "train", "--out", str(tmp_path),
                                           "--good-only", str(root / "good"), "--folds", "1"])
    assert res.exit_code == 2 and "--folds 2 or more" in res.output
    with pytest.raises(ManufacturingError, match="threshold"):
        score_images(good, threshold=1.5)


def test_memory_threshold_keeps_look_alike_photos_in_one_fold(tmp_path):
    """A part photographed twice (another light) is one group: its twin never sits in the
    memory that scores it, so the out-of-fold score is not pulled down by its own copy."""
    from deepseek.manufacturing.labelled import good_folds

    files = [_surface(tmp_path / f"p{i}.png", 40 + i) for i in range(6)]
    base = cv2.imread(str(files[2]), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(tmp_path / "p2b.png"), np.clip(base * 0.7 + 40, 0, 255).astype(np.uint8))
    from deepseek.manufacturing.images import image_paths

    paths = image_paths([tmp_path])
    for seed in range(4):
        fold, info, _ = good_folds(paths, tmp_path, 3, seed)
        by = {p.stem: f for p, f in zip(paths, fold)}
        assert by["p2"] == by["p2b"] and info["pairs"] == 1 and set(fold.tolist()) == {0, 1, 2}


def test_coreset_keeps_rare_patches_a_uniform_sample_drops():
    """Five patches of a rare kind (a part's edge) among 20,000 common ones: a 200-patch
    coreset keeps all five, so their kind has a neighbour in the memory."""
    from deepseek.manufacturing.anomaly import greedy_coreset

    rng = np.random.default_rng(0)
    common = rng.normal(0, 1, (20_000, 64)).astype(np.float32)
    rare = (20.0 * np.eye(64)[:5] + rng.normal(0, 0.1, (5, 64))).astype(np.float32)
    x = np.concatenate([common, rare])
    kept = greedy_coreset(x, 200, np.random.default_rng(1))
    assert kept.shape == (200, 64)
    assert int((kept.max(1) > 15).sum()) == 5
    uniform = x[np.random.default_rng(1).choice(len(x), 200, replace=False)]
    assert int((uniform.max(1) > 15).sum()) < 5  # a uniform sample leaves most of them out
    assert greedy_coreset(x[:50], 200, rng).shape == (50, 64)  # fewer than asked: all kept


def test_top_mean_is_the_mean_of_the_highest_fraction():
    from deepseek.manufacturing.anomaly import top_mean

    m = np.arange(1.0, 11.0)[::-1].reshape(2, 5)  # 10 values, 10 ... 1
    assert top_mean(m, 0.0) == 10.0  # the largest alone
    assert top_mean(m, 0.01) == 10.0  # under one value: still the largest
    assert top_mean(m, 0.3) == pytest.approx(9.0)  # 10, 9, 8
    assert top_mean(m, 0.5) == pytest.approx(8.0)  # 10 ... 6
    assert top_mean(m, 1.0) == pytest.approx(5.5)
    assert top_mean(np.array([[3.0]]), 0.5) == 3.0


def test_memory_scores_by_its_stored_top_fraction(line, tmp_path):
    """The fraction the memory was fitted with scores its out-of-fold images (so its
    threshold) and every image later, also after a reload; a memory written before the
    fraction was stored scores by the largest patch alone, as it was fitted."""
    from deepseek.manufacturing.anomaly import TOP_FRACTION, top_mean

    root, good, bad = line
    assert fit_memory(root / "good", progress=False).meta["top_fraction"] == TOP_FRACTION
    # the memory alone (no crack share): its score is the mean of its map's top fraction
    mem = fit_memory(root / "good", target_fpr=0.01, progress=False, top_fraction=0.1,
                     crack_weight=0)
    assert mem.meta["top_fraction"] == 0.1
    img = read_gray(bad[0])
    amap = mem.anomaly_map(img)
    s = mem.score(img)[0]
    assert s == pytest.approx(top_mean(amap, 0.1)) and s < amap.max()  # 14 of 140 patches
    assert PatchMemory.load(mem.save(tmp_path / "m.safetensors")).score(img)[0] == \
        pytest.approx(s, rel=1e-5)
    # the out-of-fold scores the threshold came from are the same kind of score: with the
    # mean of the top 10 %, the good images' highest is below the largest-patch figure
    largest = fit_memory(root / "good", target_fpr=0.01, progress=False, top_fraction=0.0,
                         crack_weight=0)
    assert largest.meta["out_of_fold_scores"]["max"] > mem.meta["out_of_fold_scores"]["max"]
    old = PatchMemory(mem.bank, {k: v for k, v in mem.meta.items() if k != "top_fraction"},
                      mem.net)
    assert old.top_fraction == 0.0 and old.score(img)[0] == pytest.approx(float(amap.max()))
    with pytest.raises(ManufacturingError, match="top_fraction=1.5"):
        fit_memory(root / "good", top_fraction=1.5)


def test_memory_adds_the_crack_models_share(line, tmp_path):
    """By default the backbone's own crack logit (the photo at 7/8 of its size, four views)
    takes half the score: standardised on the good images' logits, scaled to the spread of
    the memory's out-of-fold good scores, added to the memory's score; the threshold is set
    on those sums, and a reload scores the same."""
    from deepseek.manufacturing.anomaly import (
        CRACK_SCALE,
        CRACK_VIEWS,
        CRACK_WEIGHT,
        top_mean,
    )
    from deepseek.manufacturing.images import image_paths, rescale
    from deepseek.manufacturing.stream import photo_logits

    root, good, bad = line
    mem = fit_memory(root / "good", target_fpr=0.01, progress=False)
    alone = fit_memory(root / "good", target_fpr=0.01, progress=False, crack_weight=0)
    c = mem.crack
    assert alone.crack is None and alone.meta["crack"] is None
    assert (c["weight"], c["scale"], c["views"]) == (CRACK_WEIGHT, CRACK_SCALE, CRACK_VIEWS)

    def logit(path):  # computed here, not by the memory
        return photo_logits(mem.net, rescale(read_gray(path), CRACK_SCALE), 8, CRACK_VIEWS)[0]

    good_logits = np.array([logit(p) for p in image_paths([root / "good"])])
    assert c["logit_mean"] == pytest.approx(good_logits.mean(), rel=1e-5)
    assert c["logit_sd"] == pytest.approx(good_logits.std(), rel=1e-4)
    w = CRACK_WEIGHT / (1 - CRACK_WEIGHT)
    assert c["gain"] == pytest.approx(w * c["memory_sd"] / c["logit_sd"])
    # the memory's own part is the same with or without the share (same seed, same banks)
    assert np.array_equal(mem.bank, alone.bank)
    for p in (*good, *bad):
        img = read_gray(p)
        s, amap = mem.score(img)
        assert s == pytest.approx(top_mean(amap, mem.top_fraction)
                                  + c["gain"] * (logit(p) - c["logit_mean"]), rel=1e-5)
        assert alone.score(img)[0] == pytest.approx(top_mean(amap, mem.top_fraction),
                                                    rel=1e-5)
    # a drawn crack reads as one to the crack model: its share raises the cracked parts
    assert all(logit(p) > c["logit_mean"] for p in bad)
    # the threshold is set on the sums (just above the highest of 10 out-of-fold scores)
    assert mem.threshold != alone.threshold
    assert mem.meta["threshold"] == pytest.approx(
        threshold_above(mem.meta["out_of_fold_scores"]["max"]))
    again = PatchMemory.load(mem.save(tmp_path / "m.safetensors"))
    assert again.meta == mem.meta
    assert again.score(read_gray(bad[0]))[0] == pytest.approx(mem.score(read_gray(bad[0]))[0],
                                                              rel=1e-5)
    # a memory written before the share existed scores as the memory alone
    old = PatchMemory(mem.bank, {k: v for k, v in mem.meta.items() if k != "crack"}, mem.net)
    assert old.crack is None
    assert old.score(read_gray(bad[0]))[0] == pytest.approx(alone.score(read_gray(bad[0]))[0],
                                                            rel=1e-5)


def test_calibrating_a_memory_counts_its_crack_share(line, tmp_path):
    """`calibrate` and `score` read a memory's score with its crack share, as it was fitted:
    a threshold set on a line's own good images sits just above their scores."""
    import shutil

    from deepseek.manufacturing.calibration import calibrate
    from deepseek.manufacturing.score import Scorer

    root, good, bad = line
    mem = fit_memory(root / "good", target_fpr=0.01, progress=False)
    path = mem.save(tmp_path / "m.safetensors")
    own = tmp_path / "own"
    own.mkdir()
    for p in good:
        shutil.copy(p, own / p.name)
    with_share = [mem.score(read_gray(p))[0] for p in good]
    cal = calibrate(own, path, all_good=True, target_fpr=0.01, progress=False)
    assert cal["threshold"] > max(with_share)
    assert cal["threshold"] == pytest.approx(threshold_above(max(with_share)))
    scorer = Scorer(path, threshold=cal["threshold"])
    assert [scorer.score(p).score for p in good] == pytest.approx(with_share, rel=1e-5)
    assert all(scorer.score(p).defect for p in bad)


def test_crack_share_refuses_what_it_cannot_scale(line):
    root, _, _ = line
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ManufacturingError, match=f"crack_weight={bad}"):
            fit_memory(root / "good", crack_weight=bad)
    from deepseek.manufacturing.anomaly import crack_share

    # good images whose logits, or whose memory scores, are all the same: nothing to scale by
    for logits, scores in ((np.full(5, 2.0), np.arange(5.0)), (np.arange(5.0), np.ones(5)),
                           (np.arange(5.0), np.array([1, 2, np.nan, 3, 4]))):
        with pytest.raises(ManufacturingError, match="do not vary.*--crack-weight 0"):
            crack_share(logits, scores, 0.5, "defect-3dcnn-lstm")
    share = crack_share(np.arange(5.0), 2 * np.arange(5.0), 0.25, "defect-3dcnn-lstm")
    assert share["gain"] == pytest.approx(1 / 3 * 2)


def test_the_memory_points_at_the_spot_in_a_good_image_that_is_not(tmp_path):
    """A folder of good parts with one cracked part among them (a label's mistake): out of
    fold it scores highest, and the spot kept for the review (the box ``score`` would draw
    on the fold memory's anomaly map, in the image's pixels) lies on its crack; every image
    the review lists has one, inside the image."""
    for i in range(10):
        _surface(tmp_path / "good" / f"part_{i}.png", i, crack=i == 4)
    mem = fit_memory(tmp_path / "good", progress=False, folds=3)
    top = max(mem.out_of_fold, key=mem.out_of_fold.get)
    assert top.endswith("part_4.png")
    ranked = sorted(mem.out_of_fold, key=lambda p: -mem.out_of_fold[p])
    assert list(mem.out_of_fold_spots) == ranked[:5]
    for x0, y0, x1, y1 in mem.out_of_fold_spots.values():
        assert 0 <= x0 <= x1 < 112 and 0 <= y0 <= y1 < 80
    x0, y0, x1, y1 = mem.out_of_fold_spots[top]
    # the crack runs from (20, 10) to (70, 60), 3 pixels wide: some of it is in the box
    assert any(x0 <= x <= x1 and y0 - 2 <= x - 10 <= y1 + 2 for x in range(20, 71))
    assert (x1 - x0 + 1) * (y1 - y0 + 1) < 112 * 80 / 4


def test_cli_crack_weight(line, tmp_path):
    root, _, _ = line
    cli = build_cli()
    res = CliRunner().invoke(cli, ["manufacturing", "train", "--help"])
    from deepseek.manufacturing.anomaly import CRACK_WEIGHT

    # the help states the default
    assert "--crack-weight" in res.output and f"[{CRACK_WEIGHT:g}]" in " ".join(res.output.split())
    res = CliRunner().invoke(cli, ["manufacturing", "train", "--out", str(tmp_path),
                                   "--good-only", str(root / "good"), "--crack-weight", "0"])
    assert res.exit_code == 0, res.output
    assert "the memory alone" in res.output
    assert PatchMemory.load(tmp_path / "memory.safetensors").crack is None
    # the good images that set the threshold, named for a look (a defect among them raises it)
    assert "labels to check: the good images scored highest, out of fold" in res.output
    named = [ln.split()[2] for ln in res.output.splitlines() if ln.startswith("  ")]
    assert len(named) == 5 and all(Path(n).parent == root / "good" for n in named)
    # each with the spot to look at (the fold memory's most anomalous patches)
    assert all("  look at x " in ln for ln in res.output.splitlines() if ln.startswith("  "))
    res = CliRunner().invoke(cli, ["manufacturing", "train", "--out", str(tmp_path),
                                   "--good-only", str(root / "good"), "--crack-weight", "0.25",
                                   "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["crack"]["weight"] == 0.25
    for extra in (["--good-only", str(root / "good"), "--method", "draem"],
                  ["--folder", str(root)]):
        res = CliRunner().invoke(cli, ["manufacturing", "train", "--out", str(tmp_path),
                                       *extra, "--crack-weight", "0.5"])
        assert res.exit_code == 2 and "--crack-weight goes with" in res.output
    res = CliRunner().invoke(cli, ["manufacturing", "train", "--out", str(tmp_path),
                                   "--good-only", str(root / "good"), "--crack-weight", "1"])
    assert res.exit_code == 2 and "--crack-weight" in res.output


def test_cli_memory_top_fraction(line, tmp_path):
    from deepseek.manufacturing.anomaly import TOP_FRACTION

    root, _, _ = line
    cli = build_cli()
    res = CliRunner().invoke(cli, ["manufacturing", "train", "--help"])
    assert f"[{TOP_FRACTION:g}]" in " ".join(res.output.split())  # the help states the default
    res = CliRunner().invoke(cli, ["manufacturing", "train", "--out", str(tmp_path),
                                   "--good-only", str(root / "good"), "--json",
                                   "--memory-top-fraction", "0.05"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["top_fraction"] == 0.05
    for extra in (["--good-only", str(root / "good"), "--method", "pasted"],
                  ["--folder", str(root)]):
        res = CliRunner().invoke(cli, ["manufacturing", "train", "--out", str(tmp_path),
                                       *extra, "--memory-top-fraction", "0.05"])
        assert res.exit_code == 2 and "--memory-top-fraction goes with" in res.output
    res = CliRunner().invoke(cli, ["manufacturing", "train", "--out", str(tmp_path),
                                   "--good-only", str(root / "good"),
                                   "--memory-top-fraction", "2"])
    assert res.exit_code == 2 and "--memory-top-fraction" in res.output


def test_memory_stores_and_score_prints_its_expected_false_alarm_rate(line, tmp_path):
    """The memory keeps the false-alarm rate of its threshold on the out-of-fold good images
    (recall unknown: no defects), and `score` prints it as for trained weights, but not for a
    threshold given by hand."""
    from deepseek.manufacturing.anomaly import memory_meta
    from deepseek.manufacturing.score import Scorer, stored_expectation

    root, good, bad = line
    cli = build_cli()
    res = CliRunner().invoke(cli, ["manufacturing", "train", "--out", str(tmp_path),
                                   "--good-only", str(root / "good")])
    assert res.exit_code == 0, res.output
    assert "expected at it, out of fold (from 0 defect and 10 good images): recall unknown" \
        in res.output
    path = tmp_path / "memory.safetensors"
    exp = memory_meta(path)["expected"]
    assert exp["good_images"] == 10 and exp["defect_images"] == 0 and exp["recall"] is None
    assert exp["false_positive_rate"] == 0.0  # the threshold is above every out-of-fold score
    assert exp["false_positive_rate_ci95"][0] == 0.0 < exp["false_positive_rate_ci95"][1]
    assert stored_expectation(path) == exp and Scorer(path).expected == exp
    assert Scorer(path, threshold=1.0).expected is None
    assert memory_meta(tmp_path / "nothing.safetensors") is None
    res = CliRunner().invoke(cli, ["manufacturing", "score", str(root / "test"), "--model",
                                   str(path)])
    assert res.exit_code == 0, res.output
    assert "expected at the stored threshold (from 0 defect and 10 good images): recall " \
        "unknown (no defect images), false-alarm rate 0.000" in res.output
    res = CliRunner().invoke(cli, ["manufacturing", "score", str(root / "test"), "--model",
                                   str(path), "--threshold", "1.0"])
    assert res.exit_code == 0 and "expected at" not in res.output


@pytest.mark.slow
def test_good_parts_models_read_a_12_bit_camera_over_its_own_range(tmp_path):
    """``train --good-only DIR --bit-depth 12`` (each method): 16-bit photos holding 12-bit
    data read over 0-4095 in fitting, stored with the model, and read so by score and
    calibrate: the same scores as the photos' 8-bit conversion, a pixel over 4095 refused."""
    from deepseek.loader import declared_onnx_inputs
    from deepseek.manufacturing.calibration import calibrate
    from deepseek.manufacturing.draem import fit_draem
    from deepseek.manufacturing.images import to_gray
    from deepseek.manufacturing.score import Scorer, stored_bit_depth
    from deepseek.manufacturing.training import train_good_only

    raw, eight = tmp_path / "raw", tmp_path / "eight"
    raw.mkdir()
    eight.mkdir()
    for i in range(6):
        img = read_gray(_surface(tmp_path / "tmp" / f"p{i}.png", 300 + i, crack=i == 5))
        twelve = (img.astype(np.uint16) * 16 + i).astype(np.uint16)
        cv2.imwrite(str(raw / f"p{i}_a.png"), twelve)
        cv2.imwrite(str(eight / f"p{i}_a.png"), to_gray(twelve, bit_depth=12))
    assert read_gray(raw / "p0_a.png").max() <= 16  # over the full 16 bits: the problem
    mem = fit_memory(raw, folds=2, progress=False, bit_depth=12)
    ref = fit_memory(eight, folds=2, progress=False)
    assert mem.meta["bit_depth"] == 12 and "bit_depth" not in ref.meta
    assert mem.threshold == ref.threshold  # fitted on the same pixels
    draem = fit_draem(raw, folds=2, steps=4, batch=2, crop=32, channels=4, progress=False,
                      bit_depth=12)
    models = {"memory": mem.save(tmp_path / "m.safetensors"),
              "draem": draem.save(tmp_path / "d.safetensors"),
              "pasted": train_good_only(tmp_path / "pasted", raw, folds=2, crop=32,
                                        crops_per_epoch=4, epochs=1, batch_size=4,
                                        progress=False, bit_depth=12)["model"]}
    over = np.full((80, 112), 4096, np.uint16)
    cv2.imwrite(str(tmp_path / "over.png"), over)
    for name, model in models.items():
        assert stored_bit_depth(model) == 12 and Scorer(model).bit_depth == 12, name
        on_raw = [r.score for r in score_images([raw], model, progress=False)]
        on_eight = [r.score for r in score_images([eight], model, progress=False)]
        assert on_raw == on_eight, name
        cal = calibrate(raw, model, all_good=True, target_fpr=0.2, progress=False)
        assert cal["trained_on_images"] == 6, name  # the digests of the pixels it learnt
        with pytest.raises(ManufacturingError, match="over the 12-bit range"):
            score_images([tmp_path / "over.png"], model, progress=False)
    res = CliRunner().invoke(build_cli(), ["manufacturing", "train", "--out",
                                           str(tmp_path / "cli"), "--good-only", str(raw),
                                           "--folds", "2", "--bit-depth", "12", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["bit_depth"] == 12
    # served, the memory's photo decision takes the camera's words as they are (UINT16,
    # 0-4095 declared) and decides as the same memory fitted on their 8-bit conversion
    import onnxruntime as ort

    from deepseek.manufacturing.anomaly import export_memory_onnx

    words, gray = (ort.InferenceSession(export_memory_onnx(m), providers=[
        "CPUExecutionProvider"]) for m in (mem, ref))
    assert words.get_inputs()[0].type == "tensor(uint16)"
    assert gray.get_inputs()[0].type == "tensor(uint8)"
    assert declared_onnx_inputs(words)["image"]["range"] == (0, 4095)
    twelve = cv2.imread(str(raw / "p5_a.png"), cv2.IMREAD_UNCHANGED)
    a = words.run(None, {"image": twelve[None]})
    b = gray.run(None, {"image": to_gray(twelve, bit_depth=12)[None]})
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_a_memory_maps_a_photo_too_large_to_map_whole_in_tiles(line, monkeypatch):
    """Above the pixel bound the patch map is put together from overlapping tiles' cores,
    each tile's patches its own features, as the crack network scores such a photo."""
    from deepseek.manufacturing import stream

    root, good, bad = line
    mem = fit_memory(root / "good", target_fpr=0.01, progress=False, folds=3, crack_weight=0)
    photo = np.concatenate([read_gray(bad[0]), read_gray(good[0])], axis=1)  # 80 x 224
    whole = mem.anomaly_map(photo)
    monkeypatch.setattr(stream, "TILE_ABOVE", photo.size - 1)
    monkeypatch.setattr(stream, "TILE", 96)
    monkeypatch.setattr(stream, "TILE_OVERLAP", 32)
    tiled = mem.anomaly_map(photo)
    assert tiled.shape == whole.shape == (10, 28)
    for x0, x1, cx0, cx1 in stream.tile_spans(224, 96, 32):
        part = mem.anomaly_map(photo[:, x0:x1])
        np.testing.assert_array_equal(tiled[:, cx0 // 8: -(-cx1 // 8)],
                                      part[:, (cx0 - x0) // 8: -(-(cx1 - x0) // 8)])
    # the crack (in the first tile) is where the map is highest, tiled or not
    assert np.unravel_index(tiled.argmax(), tiled.shape)[1] < 14
    assert np.unravel_index(whole.argmax(), whole.shape)[1] < 14


def test_a_memory_scores_through_its_photo_decision_where_pytorch_is_not(line, tmp_path,
                                                                         monkeypatch):
    """An install without PyTorch (the edge form) scored no good-parts memory, though it
    served the memory's photo decision: `score` said it needed PyTorch. It now scores a
    memory through the photo decision beside it on onnxruntime (``--backend onnxruntime``
    chooses it anywhere): the same decisions and boxes as on PyTorch, and the same scores
    where both resize the crack model's view alike (OpenCV, the full install's, rounds a
    few pixels otherwise); no export, a stale one and a photo past the bound for a whole
    photo are refused with the fix."""
    from deepseek.manufacturing import images, runtime, stream
    from deepseek.manufacturing.anomaly import MemoryGraph, PatchMemory, write_memory_onnx
    from deepseek.manufacturing.score import Scorer

    root, good, bad = line
    mem = fit_memory(root / "good", target_fpr=0.01, progress=False, folds=3)
    assert mem.crack is not None  # the default: with the crack model's share
    model = mem.save(tmp_path / "memory.safetensors")
    with pytest.raises(ManufacturingError, match="no photo decision beside it "
                                                 r"\(memory\.photo\.onnx\).*deepseek "
                                                 "manufacturing export"):
        Scorer(model, backend="onnxruntime")
    write_memory_onnx(model)
    photos = [*good, *bad]
    monkeypatch.setattr(images, "_CV2", False)  # both resize the 7/8 view the project's way
    on_torch = [Scorer(model, backend="torch").score(p, heatmap=tmp_path / f"t{i}.png")
                for i, p in enumerate(photos)]
    monkeypatch.setattr(runtime, "have_torch", lambda: False)
    scorer = Scorer(model)  # auto, without PyTorch
    assert isinstance(scorer.memory, MemoryGraph) and scorer.threshold == mem.threshold
    on_graph = [scorer.score(p, heatmap=tmp_path / f"g{i}.png") for i, p in enumerate(photos)]
    for t, g in zip(on_torch, on_graph):
        assert g.score == pytest.approx(t.score, abs=1e-4)
        assert (g.defect, g.box) == (t.defect, t.box)
        np.testing.assert_allclose(g.cell_map, t.cell_map, atol=1e-4)
    assert [g.defect for g in on_graph] == [False] * len(good) + [True] * len(bad)
    with pytest.raises(ManufacturingError, match="backend torch needs PyTorch"):
        Scorer(model, backend="torch")
    monkeypatch.setattr(stream, "TILE_ABOVE", 80 * 112 - 1)
    with pytest.raises(ManufacturingError, match="a 112 x 80 photo is over the 0 megapixels "
                                                 "a good-parts memory's photo decision"):
        scorer.score(good[0])
    PatchMemory(mem.bank, {**mem.meta, "threshold": 9.0}).save(model)  # other weights now
    with pytest.raises(ManufacturingError, match=r"memory\.photo\.onnx was not exported from"):
        Scorer(model)


def test_a_12_bit_memory_scores_the_cameras_words_through_its_photo_decision(tmp_path,
                                                                            monkeypatch):
    from deepseek.manufacturing import runtime
    from deepseek.manufacturing.anomaly import write_memory_onnx
    from deepseek.manufacturing.score import Scorer

    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(6):
        img = read_gray(_surface(tmp_path / "tmp" / f"p{i}.png", 300 + i, crack=i == 5))
        cv2.imwrite(str(raw / f"p{i}_a.png"), (img.astype(np.uint16) * 16 + i))
    model = fit_memory(raw, folds=2, progress=False, bit_depth=12).save(
        tmp_path / "m.safetensors")
    write_memory_onnx(model)
    want = Scorer(model, backend="torch").score(raw / "p5_a.png")
    monkeypatch.setattr(runtime, "have_torch", lambda: False)
    scorer = Scorer(model)
    assert scorer.memory.takes_words
    got = scorer.score(raw / "p5_a.png")
    assert got.score == pytest.approx(want.score, abs=5e-3) and got.defect == want.defect
    with pytest.raises(ManufacturingError, match="p0.png: the file holds uint8 pixels; this "
                                                 "model takes a camera's 16-bit words"):
        scorer.score(tmp_path / "tmp" / "p0.png")
    with pytest.raises(ManufacturingError, match="gone.png: cannot read the file"):
        scorer.read(tmp_path / "gone.png")  # moved away after it was listed: named, not raw
