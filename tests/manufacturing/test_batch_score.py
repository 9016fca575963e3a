"""deepseek batch manufacturing score: per image (or folder), what the command prints."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from deepseek.batch import item_key, run_batch
from deepseek.cli import build_cli
from deepseek.manufacturing.images import write_heatmap


@pytest.mark.slow
def test_batch_scores_equal_the_command_item_by_item(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "line"
    (root / "box").mkdir(parents=True)
    for name, (h, w) in {"a.png": (64, 96), "b.png": (80, 48), "box/c.png": (32, 32),
                         "box/d.png": (48, 64)}.items():
        img = np.clip(rng.normal(150, 12, (h, w)), 0, 255).astype(np.uint8)
        cv2.line(img, (2, 2), (w - 3, h - 3), 40, 2)
        cv2.imwrite(str(root / name), img)
    # what a glob also matches and is not a part: a mask beside its photo, a heatmap written
    # into the folder, a file in a masks/ folder
    cv2.imwrite(str(root / "a_mask.png"), np.zeros((64, 96), np.uint8))
    write_heatmap(root / "heat.png", np.zeros((8, 8, 3), np.uint8))
    (root / "masks").mkdir()
    cv2.imwrite(str(root / "masks" / "b.png"), np.zeros((80, 48), np.uint8))
    inputs = [str(root / "*.png"), str(root / "**" / "b.png"), str(root / "box")]
    out = tmp_path / "out"
    rep = run_batch("manufacturing score", inputs, out, workers=2, progress=False,
                    options={"threshold": 0.3})
    assert (rep.ok, rep.failed, rep.items) == (3, 0, 3)  # two files and a folder of two
    label = "a mask or label (by its name or folder), not a part"
    assert {e["source"]: e["why"] for e in rep.left_out} == {
        str(root / "a_mask.png"): label, str(root / "masks" / "b.png"): label,
        str(root / "heat.png"): "a heatmap written by `score --heatmaps`, not a part"}
    runner, cli = CliRunner(), build_cli()
    for src in (root / "a.png", root / "b.png", root / "box"):
        res = runner.invoke(cli, ["manufacturing", "score", str(src), "--threshold", "0.3",
                                  "--json"])
        assert res.exit_code == 0, res.output
        got = json.loads((out / "items" / f"{item_key(str(src))}.json").read_text())
        assert got == json.loads(res.stdout)
    assert len(json.loads((out / "items" / f"{item_key(str(root / 'box'))}.json")
                          .read_text())) == 2


def test_a_glob_over_a_whole_export_scores_the_photos_folder_once(tmp_path):
    """`--input 'export/**/*'` over a Pascal VOC / CVAT segmentation export matches its
    folders and their files: the photos' folder is one input (its photos are not scored
    again one by one), and the mask folders and a folder of lists are left out with their
    reasons (before: 5 folder inputs, the masks of two scored as parts, and each photo twice)."""
    from deepseek.manufacturing.steps import leave_out

    root = tmp_path / "export"
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(root / "JPEGImages" / f"{i}.jpg"),
                    np.clip(rng.normal(150, 12, (48, 64)), 0, 255).astype(np.uint8))
        for sub in ("SegmentationClass", "SegmentationObject"):
            cv2.imwrite(str(root / sub / f"{i}.png"), np.zeros((48, 64, 3), np.uint8))
    (root / "ImageSets" / "Main" / "train.txt").write_text("0\n1\n")
    assert leave_out(str(root / "SegmentationClass")) == \
        "a folder of masks or labels (by its name), not of parts"
    assert leave_out(str(root / "ImageSets")) == "no part images in this folder or below it"
    assert leave_out(str(root / "JPEGImages")) is None
    rep = run_batch("manufacturing score", [str(root / "**" / "*")], tmp_path / "out",
                    workers=1, progress=False, options={"threshold": 0.5})
    assert (rep.ok, rep.failed, rep.items) == (1, 0, 1)
    got = json.loads((tmp_path / "out" / "items" /
                      f"{item_key(str(root / 'JPEGImages'))}.json").read_text())
    assert [r["path"] for r in got] == [str(root / "JPEGImages" / f"{i}.jpg") for i in (0, 1)]
    why = {e["source"]: e["why"] for e in rep.left_out}
    assert why[str(root / "JPEGImages" / "0.jpg")].startswith(
        f"inside {root / 'JPEGImages'}, which the same pattern matched")
    assert why[str(root / "SegmentationObject")].startswith("a folder of masks or labels")


def test_a_folder_with_a_damaged_photo_keeps_the_others_scores(tmp_path):
    rng = np.random.default_rng(1)
    day = tmp_path / "day"
    day.mkdir()
    for name in ("a.png", "c.png"):
        cv2.imwrite(str(day / name), np.clip(rng.normal(150, 12, (48, 64)), 0, 255)
                    .astype(np.uint8))
    ok, buf = cv2.imencode(".jpg", np.clip(rng.normal(120, 20, (48, 64)), 0, 255)
                           .astype(np.uint8))
    (day / "b.jpg").write_bytes(buf.tobytes()[: len(buf) // 2])  # a write interrupted
    dead = tmp_path / "dead"  # a folder where nothing can be read
    dead.mkdir()
    (dead / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (dead / "y.jpg").write_bytes(buf.tobytes()[:40])
    single = tmp_path / "lone.jpg"
    single.write_bytes(buf.tobytes()[: len(buf) // 2])
    out = tmp_path / "out"
    rep = run_batch("manufacturing score", [str(day), str(dead), str(single)], out,
                    workers=1, progress=False, options={"threshold": 0.3})
    assert (rep.ok, rep.failed) == (1, 2)
    got = json.loads((out / "items" / f"{item_key(str(day))}.json").read_text())
    # what score --json prints for the folder: the damaged photo in its place, no score
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(day), "--threshold",
                                           "0.3", "--json"])
    assert res.exit_code == 1
    assert got == json.loads(res.stdout)
    assert [r["score"] is None for r in got] == [False, True, False]
    assert "b.jpg: the JPEG is cut short" in got[1]["error"]
    failed = {k: json.loads((out / "failed" / f"{item_key(str(k))}.json").read_text())
              for k in (dead, single)}
    assert "none of its 2 images could be read" in failed[dead]["error"]
    assert "lone.jpg: the JPEG is cut short" in failed[single]["error"]
    with open(out / "summary.csv") as f:
        rows = {r["source"]: r for r in csv.DictReader(f)}
    row = rows[str(day)]
    assert (row["status"], row["images"], row["unreadable"]) == ("ok", "3", "1")
    assert float(row["max_score"]) == pytest.approx(max(r["score"] for r in got
                                                        if r["score"] is not None), rel=1e-5)
    assert rows[str(dead)]["status"] == "failed"
