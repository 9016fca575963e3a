"""Independent images are scored independently: fresh state, own size, any order; masks and
labels are not parts."""

from __future__ import annotations

import csv
import json
import logging
import os

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from deepseek.cli import build_cli
from deepseek.manufacturing.errors import ManufacturingError
from deepseek.manufacturing.score import image_paths, score_images
from deepseek.manufacturing.sources import is_label_file, list_images, open_folder


def _part(path, h, w, seed, crack=False):
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(150, 12, (h, w)), 0, 255).astype(np.uint8)
    if crack:
        cv2.line(img, (w // 4, h // 5), (w // 2, 4 * h // 5), 40, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


@pytest.fixture
def parts(tmp_path):
    root = tmp_path / "parts"
    _part(root / "part_2.png", 96, 144, 1, crack=True)
    _part(root / "part_10.png", 130, 75, 2)        # not a multiple of 16: padded, not resized
    _part(root / "line_b" / "part_1.jpg", 64, 64, 3)
    _part(root / "part_2_mask.png", 96, 144, 4)    # a mask beside its image
    _part(root / "masks" / "part_10.png", 130, 75, 5)
    _part(root / "labels" / "x.png", 32, 32, 6)
    (root / "notes.txt").write_text("not an image")
    return root


def test_masks_and_labels_are_not_parts(parts):
    found = [p.relative_to(parts).as_posix() for p in image_paths([parts])]
    assert found == ["line_b/part_1.jpg", "part_2.png", "part_10.png"]
    assert is_label_file(parts / "a_GT.png") and is_label_file(parts / "x-mask.tif")
    assert not is_label_file(parts / "masked_part.png")
    # the folder stream (one folder, not recursive) follows the same rule
    assert [p.name for p in list_images(parts)] == ["part_2.png", "part_10.png"]
    src = open_folder(parts)
    assert [p.name for p in src._reader.files] == ["part_2.png", "part_10.png"]


def test_a_pattern_stands_for_the_part_images_it_matches(parts):
    """A quoted pattern (or one a Windows prompt passes as typed) is expanded, in natural
    order, with
    masks, label folders and heatmaps left out as in a folder; one that matches no part
    image is an error naming it."""
    got = image_paths([str(parts / "**" / "*.png")])
    assert [p.relative_to(parts).as_posix() for p in got] == ["part_2.png", "part_10.png"]
    assert image_paths([str(parts / "*" / "*.jpg")]) == [parts / "line_b" / "part_1.jpg"]
    with pytest.raises(ManufacturingError, match=r"x.png: the pattern matches no part "
                                                 r"image \(1 match\(es\) in all"):
        image_paths([str(parts / "*" / "x.png")])  # labels/x.png: a label, not a part
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(parts / "*.png"),
                                           "--json"])
    assert res.exit_code == 0 and len(json.loads(res.stdout)) == 2
    # folders it matches stand for their part images, as a shell's expansion would give
    # them (before: "matches no part image"); a mask folder it matches is not parts
    got = image_paths([str(parts / "*")])
    assert [p.relative_to(parts).as_posix() for p in got] == [
        "part_2.png", "part_10.png", "line_b/part_1.jpg"]


def test_an_image_two_paths_reach_is_scored_once(parts):
    """`score line line/line_b line/part_2.png`: each image once, where first reached
    (before, the overlap was scored twice and counted twice in the totals)."""
    got = image_paths([parts, parts / "line_b", parts / "part_2.png",
                       str(parts / "**" / "*.jpg")])
    assert [p.relative_to(parts).as_posix() for p in got] == [
        "line_b/part_1.jpg", "part_2.png", "part_10.png"]
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(parts),
                                           str(parts / "part_2.png"), "--json"])
    assert res.exit_code == 0 and len(json.loads(res.stdout)) == 3


def test_a_photo_smaller_than_one_map_cell_is_scored_with_a_warning(tmp_path, caplog):
    """A 1 x 1 or a 3-row image is not a part photo: its score comes with a warning."""
    _part(tmp_path / "row.png", 3, 400, 1)
    _part(tmp_path / "ok.png", 32, 40, 2)
    with caplog.at_level(logging.WARNING):
        assert len(score_images([tmp_path], progress=False)) == 2
    assert "row.png: 400x3 pixels, smaller than one cell of the model's map (16 px)" in \
        caplog.text and "ok.png" not in caplog.text


def test_hidden_files_are_not_parts(parts):
    """What a Mac leaves beside each photo on a shared drive (``._part_2.png``, not an
    image) and a hidden thumbnail folder are passed over, not scored nor refused."""
    (parts / "._part_2.png").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    _part(parts / ".thumbnails" / "part_9.png", 16, 16, 9)
    found = [p.relative_to(parts).as_posix() for p in image_paths([parts])]
    assert found == ["line_b/part_1.jpg", "part_2.png", "part_10.png"]
    assert len(score_images([parts], progress=False)) == 3


def test_a_folder_linked_into_the_parts_is_searched_too(parts, tmp_path, caplog):
    """A day's photos linked in from elsewhere (a symbolic link to a folder) are parts of
    the folder given: found by score, train and calibrate alike, in natural order."""
    _part(tmp_path / "nas" / "day1" / "part_7.png", 48, 64, 7)
    (parts / "day1").symlink_to(tmp_path / "nas" / "day1", target_is_directory=True)
    found = [p.relative_to(parts).as_posix() for p in image_paths([parts])]
    assert found == ["day1/part_7.png", "line_b/part_1.jpg", "part_2.png", "part_10.png"]
    # a photo linked in whose file is gone: left out, and said
    (parts / "part_3.png").symlink_to(tmp_path / "nas" / "gone.png")
    with caplog.at_level(logging.WARNING):
        assert len(image_paths([parts])) == 4
    assert "1 link(s) to image files that no longer exist are left out (e.g. part_3.png" in \
        caplog.text
    assert [r.path for r in score_images([parts], progress=False)][0] == \
        str(parts / "day1" / "part_7.png")


def test_a_folder_is_scored_without_keeping_every_map_when_asked(parts, tmp_path):
    """keep_maps=False (the score command without --evaluate): each map is let go once the
    box and heatmap are drawn, the results otherwise the same."""
    kept = score_images([parts], threshold=1e-9, progress=False, heatmaps=tmp_path / "a")
    light = score_images([parts], threshold=1e-9, progress=False, heatmaps=tmp_path / "b",
                         keep_maps=False)
    assert all(r.cell_map is not None for r in kept) and all(r.cell_map is None for r in light)
    assert [r.to_dict() | {"heatmap": None} for r in light] == \
        [r.to_dict() | {"heatmap": None} for r in kept]
    assert all(r.box is not None for r in light)


def test_scores_do_not_depend_on_order_or_neighbours(parts):
    files = image_paths([parts])
    low = 1e-9  # every image a "defect", so that each gets a box
    one = {r.path: r for r in score_images(files, threshold=low)}
    other = {r.path: r for r in score_images(list(reversed(files)), threshold=low)}
    alone = score_images([files[1]], threshold=low)[0]
    assert one.keys() == other.keys()
    for k in one:
        assert one[k].score == other[k].score
    assert one[alone.path].score == alone.score
    r = one[str(parts / "part_10.png")]
    assert (r.width, r.height) == (75, 130)
    x0, y0, x1, y1 = r.box
    assert 0 <= x0 <= x1 < 75 and 0 <= y0 <= y1 < 130


def test_csv_heatmaps_and_cli(parts, tmp_path):
    out = tmp_path / "heat"
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(parts / "part_2.png"),
                                           str(parts / "line_b"), "--csv",
                                           str(tmp_path / "s.csv"), "--heatmaps", str(out),
                                           "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)  # stderr: the packaged weights' warning
    assert "synthetic line only" in res.stderr
    assert [r["path"] for r in rows] == [str(parts / "part_2.png"),
                                         str(parts / "line_b" / "part_1.jpg")]
    with open(tmp_path / "s.csv") as f:
        table = list(csv.DictReader(f))
    assert [float(t["score"]) for t in table] == pytest.approx([r["score"] for r in rows],
                                                               abs=1e-6)
    # each result names the model that decided it (the packaged weights' file) and the
    # threshold, in the JSON and the CSV
    from deepseek.loader.base import file_sha256
    from deepseek.plugins import models

    packaged = file_sha256(models().entry("defect-3dcnn-lstm").meta["weights"])
    assert {(r["model_sha256"], r["threshold"]) for r in rows} == {(packaged, 0.5)}
    assert {(t["model_sha256"], float(t["threshold"])) for t in table} == {(packaged, 0.5)}
    heat = cv2.imread(table[0]["heatmap"])
    assert heat.shape == (96, 144, 3)
    # --heatmaps-of flagged: an overlay of each flagged image only (a threshold between the
    # two scores flags one)
    middle = sum(r["score"] for r in rows) / 2
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(parts / "part_2.png"),
                                           str(parts / "line_b"), "--heatmaps",
                                           str(tmp_path / "flagged"), "--heatmaps-of",
                                           "flagged", "--threshold", str(middle), "--json"])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.stdout)
    assert [r["defect"] for r in shown] == [r["score"] >= middle for r in rows]
    assert [r["heatmap"] is not None for r in shown] == [r["defect"] for r in shown]
    assert len(list((tmp_path / "flagged").iterdir())) == 1
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(parts),
                                           "--heatmaps-of", "flagged"])
    assert res.exit_code == 2 and "--heatmaps-of goes with --heatmaps" in res.output
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(parts)])
    assert res.exit_code == 0 and "3 images" in res.output
    # heatmaps written into the folder of parts are never read back as parts
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(parts),
                                           "--heatmaps", str(parts / "heat")])
    assert res.exit_code == 0 and "3 images" in res.output
    assert len(list((parts / "heat").glob("*.png"))) == 3
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(parts)])
    assert res.exit_code == 0 and "3 images" in res.output
    assert "3 heatmap(s) written by `score --heatmaps` are not parts" in res.stderr


def test_a_csv_the_disk_has_no_room_for_keeps_the_file_before_and_the_results(
        parts, tmp_path, monkeypatch):
    """The CSV is written once the photos are scored: a disk that fills while it is written
    leaves the CSV there before as it was (no half table), the results are printed all the
    same, and the error names the CSV (exit status 2); a device is written as it is."""
    import errno
    import os

    import deepseek.manufacturing.score as score_module

    table = tmp_path / "s.csv"
    table.write_text("yesterday's table\n")
    real_row, rows = score_module.csv_row, [0]

    def row_then_full(r):
        rows[0] += 1
        if rows[0] == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_row(r)

    monkeypatch.setattr(score_module, "csv_row", row_then_full)
    line = ["manufacturing", "score", str(parts), "--threshold", "0.5", "--csv", str(table)]
    res = CliRunner().invoke(build_cli(), [*line, "--json"])
    assert res.exit_code == 2
    assert len(json.loads(res.stdout)) == 3  # the results, printed all the same
    assert f"--csv {table}: cannot write it (No space left on device); a file there before " \
        "is left as it was, and the 3 results are printed above" in res.stderr
    assert table.read_text() == "yesterday's table\n"
    assert not list(tmp_path.glob(".s.csv*"))  # no temporary left
    rows[0] = 0
    res = CliRunner().invoke(build_cli(), line)
    assert res.exit_code == 2 and "3 images, 1 flagged as defects\n" in res.stdout
    monkeypatch.undo()
    if os.path.exists("/dev/full"):  # a device: written as it is, not replaced
        res = CliRunner().invoke(build_cli(), [*line[:-1], "/dev/full"])
        assert res.exit_code == 2 and "--csv /dev/full: cannot write it" in res.stderr
        assert os.path.exists("/dev/full") and not os.path.isfile("/dev/full")


def test_an_output_that_cannot_be_written_is_refused_before_scoring(parts, tmp_path,
                                                                   monkeypatch):
    import deepseek.manufacturing.score as score_module

    def never(*args, **kwargs):
        raise AssertionError("scored before the output was checked")

    monkeypatch.setattr(score_module, "score_images", never)
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the output folder would go")
    for csv_path, expect in [(blocker / "a" / "s.csv", f"error: {blocker / 'a'}: Not a "
                              "directory (part of this path is a file"),
                             (blocker / "s.csv", f"error: {blocker}: File exists (a file "
                              "stands where a folder is needed"),
                             (tmp_path, f"error: --csv {tmp_path}: a folder; give the file's "
                              f"name (for example {tmp_path / 'scores.csv'})")]:
        res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(parts),
                                               "--csv", str(csv_path)])
        assert res.exit_code == 2 and res.output.startswith(expect), res.output
        assert "a bug" not in res.output
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(parts),
                                           "--heatmaps", str(blocker)])
    assert res.exit_code == 2 and "a bug" not in res.output
    assert f"{blocker}: File exists" in res.output


def test_heatmaps_are_marked_pngs_in_opencv_colour_order(tmp_path, caplog):
    from PIL import Image

    from deepseek.manufacturing.images import is_heatmap, write_heatmap

    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 10, 20, 30
    path = write_heatmap(tmp_path / "h.png", bgr)
    assert np.array_equal(cv2.imread(str(path)), bgr) and is_heatmap(path)
    Image.fromarray(bgr).save(tmp_path / "photo.png")  # any other PNG is a part
    (tmp_path / "cut.png").write_bytes(path.read_bytes()[:20])  # unreadable: the reader says so
    assert not is_heatmap(tmp_path / "photo.png") and not is_heatmap(tmp_path / "cut.png")
    assert [p.name for p in list_images(tmp_path)] == ["cut.png", "photo.png"]
    assert "1 heatmap(s)" in caplog.text
    with pytest.raises(ManufacturingError, match="h.jpg: heatmaps are PNG files"):
        write_heatmap(tmp_path / "h.jpg", bgr)
    with pytest.raises(ManufacturingError, match="could not write the heatmap"):
        write_heatmap(tmp_path / "no" / "such" / "h.png", bgr)


def test_bad_inputs_name_the_file(tmp_path, parts):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(ManufacturingError, match="broken.png: OpenCV cannot read"):
        score_images([bad])
    with pytest.raises(ManufacturingError, match="missing.png: no such file"):
        score_images([tmp_path / "missing.png"])
    with pytest.raises(ManufacturingError, match="notes.txt: not an image"):
        score_images([parts / "notes.txt"])
    if hasattr(os, "mkfifo"):  # a named pipe under a photo's name: refused, never opened
        os.mkfifo(tmp_path / "camera.png")  # (a read would wait for a writer forever)
        with pytest.raises(ManufacturingError, match="camera.png: not a regular file"):
            score_images([tmp_path / "camera.png"])
    empty = tmp_path / "empty"
    (empty / "masks").mkdir(parents=True)
    _part(empty / "masks" / "m.png", 16, 16, 0)
    with pytest.raises(ManufacturingError, match="no part images"):
        score_images([empty])
    with pytest.raises(ManufacturingError, match="threshold"):
        score_images([parts / "part_2.png"], threshold=1.0)


def test_a_damaged_photo_is_listed_and_the_others_still_scored(parts, tmp_path):
    good = [parts / "line_b" / "part_1.jpg", parts / "part_2.png", parts / "part_10.png"]
    cut = parts / "part_3.jpg"  # a camera's write interrupted: refused, never half-scored
    whole = (parts / "line_b" / "part_1.jpg").read_bytes()
    cut.write_bytes(whole[: len(whole) // 2])
    (parts / "part_4.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    alone = {r.path: r.score for r in score_images(good)}
    # the library call stops at the first, naming it
    with pytest.raises(ManufacturingError, match=r"part_3\.jpg: the JPEG is cut short"):
        score_images([parts])
    bad: list = []
    res = score_images([parts], unreadable=bad)
    assert {r.path: r.score for r in res} == alone  # the same scores as without them
    assert [(u.index, u.path) for u in bad] == [(2, str(cut)), (3, str(parts / "part_4.png"))]
    # the command: every score out, the unreadable ones listed, in --csv and --json in
    # their place, and exit status 1 so that a script notices
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(parts), "--csv",
                                           str(tmp_path / "s.csv"), "--json"])
    assert res.exit_code == 1
    rows = json.loads(res.stdout)
    order = [*good[:2], cut, parts / "part_4.png", good[2]]
    assert [r["path"] for r in rows] == [str(f) for f in order]
    assert [r["score"] is None for r in rows] == [False, False, True, True, False]
    assert "cut short" in rows[2]["error"] and "OpenCV cannot read" in rows[3]["error"]
    assert f"unreadable, not scored: {cut}: the JPEG is cut short" in res.stderr
    assert "error: 2 image(s) could not be read and were not scored" in res.stderr
    with open(tmp_path / "s.csv") as f:
        table = list(csv.DictReader(f))
    assert [t["path"] for t in table] == [r["path"] for r in rows]
    assert [t["score"] == "" for t in table] == [r["score"] is None for r in rows]
    assert table[2]["error"] == rows[2]["error"] and table[0]["error"] == ""
    assert table[2]["model_sha256"] == table[2]["threshold"] == ""  # not decided
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(parts)])
    assert res.exit_code == 1 and "3 images, " in res.stdout
    assert "; 2 unreadable, not scored" in res.stdout
    # --evaluate measures a labelled set: a file it cannot read stops it, named (the
    # labels, checked first, are YOLO files saying each part is good)
    for f in order:
        f.with_suffix(".txt").write_text("")
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(parts), "--evaluate"])
    assert res.exit_code != 0 and "part_3.jpg: the JPEG is cut short" in res.output


def test_real_part_photos_smoke():
    from tests.shared import shared_data

    root = shared_data("crack")
    if root is None:
        pytest.skip("../shared/data/crack is not here")
    imgs = sorted((root / "kolektorsdd" / "images" / "val").glob("*.jpg"))[:3]
    res = score_images(imgs, threshold=0.5)
    assert [r.path for r in res] == [str(p) for p in imgs]
    for r in res:
        assert r.width == 500 and 1200 < r.height < 1300 and 0.0 <= r.score <= 1.0


def test_wilson_interval():
    from deepseek.manufacturing.metrics import wilson_interval

    lo, hi = wilson_interval(7, 18)
    assert lo == pytest.approx(0.2, abs=0.01) and hi == pytest.approx(0.614, abs=0.01)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) is None


def test_four_views_are_the_flips_averaged_and_line_up():
    """views=4: the frame logits and each map cell's logits averaged over the image and its
    three flips, the maps flipped back cell for cell. A crack model's score is then the
    same for an image and its mirror images, and their maps are mirror images too."""
    from deepseek.manufacturing.score import score_image
    from deepseek.manufacturing.stream import load_net

    net = load_net("defect-3dcnn-lstm").eval()
    img = np.clip(np.random.default_rng(3).normal(150, 20, (48, 80)), 0, 255).astype(np.uint8)
    img[10:40, 30:33] = 60   # something for the map to find, off every axis of symmetry
    p1, m1 = score_image(net, img)
    p4, m4 = score_image(net, img, views=4)
    assert m4.shape == m1.shape == (3, 5) and abs(p4 - p1) > 1e-4
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    views = [img, img[:, ::-1], img[::-1], img[::-1, ::-1]]
    singles = [score_image(net, np.ascontiguousarray(v)) for v in views]
    assert logit(p4) == pytest.approx(np.mean([logit(p) for p, _ in singles]), abs=1e-4)
    back = [singles[0][1], singles[1][1][:, ::-1], singles[2][1][::-1], singles[3][1][::-1, ::-1]]
    np.testing.assert_allclose(logit(m4), np.mean([logit(m) for m in back], axis=0), atol=1e-3)
    for v, flip in zip(views[1:], (lambda a: a[:, ::-1], lambda a: a[::-1],
                                   lambda a: a[::-1, ::-1])):
        pv, mv = score_image(net, np.ascontiguousarray(v), views=4)
        assert pv == pytest.approx(p4, abs=1e-6)
        np.testing.assert_allclose(flip(mv), m4, atol=1e-6)
    with pytest.raises(ManufacturingError, match="views=3"):
        score_image(net, img, views=3)


def test_odd_sizes_flip_the_padded_image_so_cells_line_up():
    """An image whose sides are not multiples of 16 is padded first and the padded image
    flipped: a map cell of each view covers the same pixels once flipped back."""
    from deepseek.manufacturing.score import score_image
    from deepseek.manufacturing.stream import load_net, pad16

    net = load_net("defect-3dcnn-lstm").eval()
    img = np.clip(np.random.default_rng(4).normal(140, 25, (40, 70)), 0, 255).astype(np.uint8)
    p4, m4 = score_image(net, img, views=4)
    padded = pad16(img[None])[0]
    full = [score_image(net, np.ascontiguousarray(v)) for v in
            (padded, padded[:, ::-1], padded[::-1], padded[::-1, ::-1])]
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    back = [full[0][1], full[1][1][:, ::-1], full[2][1][::-1], full[3][1][::-1, ::-1]]
    want = np.mean([logit(m) for m in back], axis=0)[:3, :5]
    assert m4.shape == (3, 5)
    np.testing.assert_allclose(logit(m4), want, atol=1e-3)
    assert logit(p4) == pytest.approx(np.mean([logit(p) for p, _ in full]), abs=1e-4)


@pytest.mark.parametrize("n", [100, 4096, 4097, 4352, 8000, 12345, 50_000])
def test_tiles_cover_an_axis_once_on_the_cell_and_overlap(n):
    from deepseek.manufacturing.stream import TILE, TILE_OVERLAP, tile_spans

    spans = tile_spans(n)
    assert spans[0][2] == 0 and spans[-1][1] == spans[-1][3] == n
    assert all(a[3] == b[2] for a, b in zip(spans, spans[1:]))        # cores meet
    for start, end, core0, core1 in spans:
        assert start % 16 == 0 and end - start <= TILE and start <= core0 < core1 <= end
        assert core0 % 16 == 0 and (core1 % 16 == 0 or core1 == n)
    assert all(a[1] - b[0] >= TILE_OVERLAP - 15 for a, b in zip(spans, spans[1:]))
    assert len(spans) == (1 if n <= TILE else -(-(n - TILE_OVERLAP) // (TILE - TILE_OVERLAP)))


@pytest.mark.parametrize("views", [1, 4])
def test_a_photo_too_large_to_score_whole_is_scored_in_tiles(monkeypatch, caplog, views,
                                                            tmp_path):
    """Above the pixel bound a photo is scored tile by tile (memory stays that of a tile):
    its logit is the highest tile's, and its map is the tiles' cores put together; under
    the bound it is scored whole, as before."""
    from deepseek.manufacturing import stream
    from deepseek.manufacturing.stream import load_net, photo_logits, tile_spans

    net = load_net("defect-3dcnn-lstm")
    rng = np.random.default_rng(3)
    photo = rng.integers(100, 160, (150, 200), dtype=np.uint8)
    photo[100:103, 130:190] = 30  # a dark line in the last row of tiles
    whole = photo_logits(net, photo, 4, views)
    monkeypatch.setattr(stream, "TILE_ABOVE", 150 * 200 - 1)
    monkeypatch.setattr(stream, "TILE", 96)
    monkeypatch.setattr(stream, "TILE_OVERLAP", 32)
    with caplog.at_level(logging.INFO, logger="deepseek.manufacturing.stream"):
        logit, maps = photo_logits(net, photo, 4, views)
    assert "a 200 x 150 photo scored in 6 tiles of at most 96 x 96 pixels" in caplog.text
    assert maps.shape == whole[1].shape == (10, 13)
    tiles = []
    for y0, y1, cy0, cy1 in tile_spans(150, 96, 32):
        for x0, x1, cx0, cx1 in tile_spans(200, 96, 32):
            lg, mp = photo_logits(net, photo[y0:y1, x0:x1], 4, views)
            tiles.append(lg)
            np.testing.assert_array_equal(
                maps[cy0 // 16: -(-cy1 // 16), cx0 // 16: -(-cx1 // 16)],
                mp[(cy0 - y0) // 16: -(-(cy1 - y0) // 16), (cx0 - x0) // 16: -(-(cx1 - x0) // 16)])
    assert logit == max(tiles) and len(tiles) == 6
    assert int(np.argmax(tiles)) >= 3  # the tile with the line scores highest
    # score says so in what it prints for the photo
    from deepseek.manufacturing.score import Scorer

    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), photo)
    assert Scorer("defect-3dcnn-lstm").score(path).to_dict()["tiles"] == 6
    monkeypatch.setattr(stream, "TILE_ABOVE", 150 * 200)  # at the bound: whole
    assert photo_logits(net, photo, 4, views)[0] == whole[0]
    assert Scorer("defect-3dcnn-lstm").score(path).to_dict()["tiles"] == 1


def test_the_next_photo_is_decoded_while_one_is_scored(tmp_path, monkeypatch):
    """A folder is scored with the next photo decoding beside the one being scored (a
    20-megapixel PNG takes about as long to decode as to score), never further ahead, in
    order, a damaged photo still listed in its place."""
    import threading
    from pathlib import Path

    from deepseek.manufacturing.score import Scorer

    for i in range(4):
        _part(tmp_path / f"p{i}.png", 48, 64, seed=i)
    (tmp_path / "p2.png").write_bytes(b"not a png")
    read, score = Scorer.read, Scorer.score
    began = {i: threading.Event() for i in range(4)}
    scored: list[int] = []

    def reading(self, path):
        i = int(path.stem[1:])
        assert len(scored) >= i - 1, f"p{i} read before p{i - 2} was scored"  # one ahead
        began[i].set()
        return read(self, path)

    def scoring(self, path, *a, **kw):
        i = int(Path(path).stem[1:])
        if i + 1 < 4:  # the next photo's decoding has begun before this one is scored
            assert began[i + 1].wait(60), f"p{i + 1} was not read while p{i} was scored"
        out = score(self, path, *a, **kw)
        scored.append(i)
        return out

    monkeypatch.setattr(Scorer, "read", reading)
    monkeypatch.setattr(Scorer, "score", scoring)
    unreadable: list = []
    got = score_images([tmp_path], "defect-3dcnn-lstm", progress=False, unreadable=unreadable)
    assert [Path(r.path).name for r in got] == ["p0.png", "p1.png", "p3.png"]
    assert [(u.index, Path(u.path).name) for u in unreadable] == [(2, "p2.png")]
    with pytest.raises(ManufacturingError, match="p2.png"):  # without the list: stopped there
        score_images([tmp_path], "defect-3dcnn-lstm", progress=False)


def short_of_memory(decoding: str, scoring: str) -> type:
    """A :class:`Scorer` class in a process near its memory limit: it runs out of memory
    (MemoryError) decoding the photo named ``decoding`` and scoring the one named
    ``scoring``."""
    from pathlib import Path

    from deepseek.manufacturing.score import Scorer

    class Small(Scorer):
        def read(self, path, data=None):
            if Path(path).name == decoding:
                raise MemoryError
            return super().read(path, data)

        def score(self, path, *a, **k):
            if Path(path).name == scoring:
                raise MemoryError
            return super().score(path, *a, **k)

    return Small


def test_a_photo_too_large_for_the_memory_is_listed_and_the_others_scored(parts):
    """A photo the process has not the memory to decode or score (MemoryError) is listed
    as unreadable in its place, naming it and the fix, and the other photos are scored;
    without a list to put it in (--evaluate), it stops the run naming it."""
    from pathlib import Path

    Small = short_of_memory(decoding="part_10.png", scoring="part_1.jpg")
    files = image_paths([parts])
    bad: list = []
    got = Small(threshold=0.5).score_files(files, unreadable=bad, progress=False)
    assert [Path(r.path).name for r in got] == ["part_2.png"]
    where = {Path(f).name: i for i, f in enumerate(files)}  # each in its place
    assert sorted((u.index, Path(u.path).name) for u in bad) == sorted(
        (where[n], n) for n in ("part_10.png", "part_1.jpg"))
    said = {Path(u.path).name: u.error for u in bad}
    assert "part_10.png: not enough memory to decode this photo (" in said["part_10.png"]
    assert "part_1.jpg: not enough memory to score this photo (" in said["part_1.jpg"]
    with pytest.raises(ManufacturingError, match="not enough memory to (decode|score) this "):
        Small(threshold=0.5).score_files(files, progress=False)  # the first in the order
