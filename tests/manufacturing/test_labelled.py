"""Supervised training on labelled part images: label rules, crops on the defect, group splits,
and a short training run from a folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from deepseek.cli import build_cli
from deepseek.manufacturing import labelled
from deepseek.manufacturing.errors import ManufacturingError
from deepseek.manufacturing.labelled import (
    read_labelled,
    sample_crop,
    split_groups,
    yolo_mask,
)
from deepseek.manufacturing.metrics import threshold_above


def _val_copy(folder):
    """A copy of ``folder`` beside it, as the validation folder of a training on it (a
    validation folder inside the training folder is left out of training)."""
    import shutil

    return Path(shutil.copytree(folder, folder.with_name(folder.name + "_val")))


def _part(path, seed, crack=None, h=96, w=128):
    """A textured part photo; ``crack`` = ((x0, y0), (x1, y1)) draws a dark line and returns
    its mask."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.normal(150, 20, (h, w)).astype(np.float32), (0, 0), 1.0)
    img = np.clip(img, 0, 255).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    if crack is not None:
        cv2.line(img, *crack, 40, 2)
        cv2.line(mask, *crack, 255, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return mask


def test_positive_crops_overlap_the_mask_and_negatives_avoid_it(tmp_path, monkeypatch):
    mask = _part(tmp_path / "a.png", 0, ((90, 70), (120, 80)), h=160, w=200)
    cv2.imwrite(str(tmp_path / "a_mask.png"), mask)
    [item] = read_labelled(tmp_path)
    assert item.defect and item.source == "mask"
    rng = np.random.default_rng(1)
    for _ in range(200):
        x, m = sample_crop(item, 64, True, rng)
        assert x.shape == (64, 64) and m.any()
        x, m = sample_crop(item, 64, False, rng)
        assert x.shape == (64, 64) and not m.any()
    # an image smaller than the crop is padded, not resized, and still overlaps its defect
    small = read_labelled(tmp_path)[0]
    x, m = sample_crop(small, 256, True, rng)
    assert x.shape == (256, 256) and m.sum() == (mask > 0).sum()
    # images over the memory budget are kept in a temporary file, or, where its folder has
    # no room, read again on use: the same crops either way
    [spilled] = read_labelled(tmp_path, cache_mb=0)
    assert isinstance(spilled._image, np.memmap) and isinstance(spilled._mask, np.memmap)
    with monkeypatch.context() as mp:
        mp.setattr(labelled, "SPILL_FREE", 1 << 62)  # no disk has that much free
        [lazy] = read_labelled(tmp_path, cache_mb=0)
    assert lazy._image is None and lazy._mask is None
    for other in (spilled, lazy):
        for k in range(5):
            a = sample_crop(item, 64, k % 2 == 0, np.random.default_rng(k))
            b = sample_crop(other, 64, k % 2 == 0, np.random.default_rng(k))
            assert (a[0] == b[0]).all() and (a[1] == b[1]).all()


def test_a_temporary_folder_held_in_memory_is_told_from_a_disk(tmp_path, monkeypatch):
    """The images past the memory cache are not written to a tmpfs ``/tmp`` (the file would
    take the memory the cache spares): by the longest mount point over the folder."""
    from deepseek.manufacturing.labelled import in_memory_folder

    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/vda1 / ext4 rw 0 0\n"
                      "tmpfs /tmp tmpfs rw,nosuid 0 0\n"
                      "/dev/vdb1 /tmp/big\\040disk xfs rw 0 0\n"
                      "bad line\n")
    assert in_memory_folder("/tmp", str(mounts))
    assert in_memory_folder("/tmp/x/y", str(mounts))
    assert not in_memory_folder("/tmp/big disk/x", str(mounts))
    assert not in_memory_folder("/tmpfoo", str(mounts)) and not in_memory_folder("/", str(mounts))
    assert not in_memory_folder("/tmp", str(tmp_path / "none"))  # no table: not known
    mask = _part(tmp_path / "p" / "a.png", 0, ((10, 10), (50, 20)), h=64, w=64)
    cv2.imwrite(str(tmp_path / "p" / "a_mask.png"), mask)
    [item] = read_labelled(tmp_path / "p", cache_mb=0, spill=False)  # a one-use reader
    assert item._image is None and item.image.shape == (64, 64)  # read from its file
    with monkeypatch.context() as mp:  # a disk with less than a tenth free is left alone
        mp.setattr(labelled, "SPILL_FREE", 0)
        mp.setattr(labelled, "SPILL_FREE_SHARE", 1.0)
        assert read_labelled(tmp_path / "p", cache_mb=0)[0]._image is None
        mp.setattr(labelled, "SPILL_FREE_SHARE", 0.0)
        assert read_labelled(tmp_path / "p", cache_mb=0)[0]._image is not None
    monkeypatch.setattr(labelled, "in_memory_folder", lambda folder: True)
    [item] = read_labelled(tmp_path / "p", cache_mb=0)
    assert item._image is None and item.image.shape == (64, 64)  # read from its file


def test_yolo_polygons_and_boxes(tmp_path):
    lab = tmp_path / "l.txt"
    lab.write_text("0 0.1 0.1 0.5 0.1 0.5 0.5\n1 0.75 0.5 0.2 0.4\n\n")
    m = yolo_mask(lab, 100, 200)
    assert m[20, 80] == 1 and m[80, 20] == 0            # inside / outside the triangle
    assert m[50, 150] == 1 and m[50, 120] == 0          # inside / outside the box
    for bad, what in (("0 0.1 0.2 1.3 0.4 0.5 0.5", "normalised"), ("0 0.1 0.2 0.3", "4"),
                      ("crack 0.1 0.2 0.3 0.4", "not a YOLO"), ("-1 0.1 0.2 0.3 0.4", "negative")):
        lab.write_text("0 0.5 0.5 0.1 0.1\n" + bad + "\n")
        with pytest.raises(ManufacturingError, match=f"l.txt:2: .*{what}"):
            yolo_mask(lab, 100, 200)


def test_a_jpeg_mask_reads_as_the_mask_drawn_not_its_compression_halo(tmp_path):
    """A mask saved as JPEG has faint values around every edge: read at half its brightest,
    a 3-pixel crack keeps its drawn area (counted from 1 it nearly doubles); an all-black
    JPEG mask is a good part; lossless masks keep every non-zero pixel (a 0/1 PNG)."""
    m = np.zeros((96, 128), np.uint8)
    cv2.line(m, (10, 20), (110, 70), 255, 3)
    for q in (95, 75):
        _part(tmp_path / f"q{q}" / "a.png", 1)
        cv2.imwrite(str(tmp_path / f"q{q}" / "a_mask.jpg"), m, [cv2.IMWRITE_JPEG_QUALITY, q])
        assert (cv2.imread(str(tmp_path / f"q{q}" / "a_mask.jpg"), 0) > 0).sum() > 1.5 * \
            (m > 0).sum()
        (item,) = read_labelled(tmp_path / f"q{q}")
        assert abs(int(item.mask.sum()) - int((m > 0).sum())) <= 0.02 * (m > 0).sum()
    _part(tmp_path / "good" / "b.png", 2)
    cv2.imwrite(str(tmp_path / "good" / "b_mask.jpg"), np.zeros_like(m))
    assert not read_labelled(tmp_path / "good")[0].defect
    _part(tmp_path / "ones" / "c.png", 3)
    cv2.imwrite(str(tmp_path / "ones" / "c_mask.png"), (m > 0).astype(np.uint8))
    (item,) = read_labelled(tmp_path / "ones")
    assert int(item.mask.sum()) == int((m > 0).sum())


def test_a_mask_with_an_alpha_channel_is_read_by_what_varies(tmp_path, caplog):
    """An opaque black-and-white mask saved with an alpha channel (by its alpha alone all
    defect), a crack painted on a transparent layer, and both varying: each reads as the
    crack drawn."""
    m = np.zeros((96, 128), np.uint8)
    cv2.line(m, (10, 20), (110, 70), 255, 3)
    crack = int((m > 0).sum())
    zero, full = np.zeros_like(m), np.full_like(m, 255)
    cases = {"opaque": np.dstack([m, m, m, full]),           # BGRA, alpha 255 everywhere
             "layer": np.dstack([zero, zero, full, m]),      # red everywhere, alpha the crack
             "both": np.dstack([m, m, m, np.where(np.arange(128) < 64, 255, 0)
                                [None].repeat(96, 0).astype(np.uint8)])}
    for name, px in cases.items():
        _part(tmp_path / name / "a.png", 1)
        cv2.imwrite(str(tmp_path / name / "a_mask.png"), px)
        (item,) = read_labelled(tmp_path / name)
        want = crack if name != "both" else int((m[:, :64] > 0).sum())
        assert int(item.mask.sum()) == want, name
    # a mask drawn the other way round (the crack black on white): read as drawn, warned
    import logging

    _part(tmp_path / "inv" / "a.png", 1)
    cv2.imwrite(str(tmp_path / "inv" / "a_mask.png"), 255 - m)
    with caplog.at_level(logging.WARNING):
        (item,) = read_labelled(tmp_path / "inv")
    log = caplog
    assert int(item.mask.sum()) == m.size - crack
    assert "1 mask(s) mark most of their image as defect (a_mask.png: 95%)" in log.text
    assert "invert such masks" in log.text
    # gray with alpha (a two-channel PNG, read as BGRA): the same rule
    from PIL import Image

    _part(tmp_path / "la" / "a.png", 1)
    Image.fromarray(np.dstack([m, full]), "LA").save(tmp_path / "la" / "a_mask.png")
    assert int(read_labelled(tmp_path / "la")[0].mask.sum()) == crack


def test_label_files_saved_with_a_byte_order_mark_read_as_without(tmp_path):
    """Windows editors (Notepad before 2019, Excel's "CSV UTF-8") start a UTF-8 file with a
    byte-order mark: YOLO, class-name and labelme files read the same with it as without."""
    import json

    from deepseek.manufacturing import labelled

    bom = "\ufeff"
    root = tmp_path / "set"
    _part(root / "images" / "a.png", 1, h=40, w=50)
    _part(root / "images" / "b.png", 2, h=40, w=50)
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text(bom + "0 0.5 0.5 0.2 0.2\r\n", encoding="utf-8")
    (root / "labels" / "b.txt").write_text(bom, encoding="utf-8")
    (root / "classes.txt").write_text(bom + "crack\r\n", encoding="utf-8")
    items = {i.path.name: i for i in read_labelled(root / "images")}
    assert items["a.png"].defect and not items["b.png"].defect
    assert labelled.yolo_class_names(root / "labels" / "a.txt")[1] == {0: "crack"}
    assert labelled.label_classes(items["a.png"]) == {"crack": 1}
    lm = tmp_path / "lm"
    _part(lm / "c.png", 3, h=40, w=50)
    doc = {"shapes": [{"label": "crack", "shape_type": "rectangle",
                       "points": [[5, 5], [20, 20]]}], "imageWidth": 50, "imageHeight": 40}
    (lm / "c.json").write_text(bom + json.dumps(doc), encoding="utf-8")
    (item,) = read_labelled(lm)
    assert item.source == "labelme" and item.defect and item.mask[10, 10]


def test_a_yolo_class_its_data_set_names_a_good_part_is_refused(tmp_path, monkeypatch,
                                                                 caplog):
    """YOLO label lines carry class numbers; their names are in the data set's data.yaml
    (Ultralytics, Roboflow: a list or a number-to-name map), classes.txt (labelImg) or
    obj.names (darknet), found in the label file's folder or the two above it. A line of a
    class named as a good part is an error naming the line, the class and the file."""
    import sys

    from deepseek.manufacturing import labelled

    root = tmp_path / "set"
    _part(root / "train" / "images" / "a.png", 1, h=40, w=50)
    (root / "train" / "labels").mkdir(parents=True)
    lab = root / "train" / "labels" / "a.txt"
    lab.write_text("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 1 1\n")
    assert labelled.yolo_class_names(lab) is None
    assert read_labelled(root / "train" / "images")[0].defect  # no names: every class a defect
    msg = r"a.txt:2: class 1, named in .*{}, 'ok_front' names a good part"
    for name, text in (("data.yaml", "nc: 2\nnames: ['def_front', 'ok_front']\n"),
                       ("data.yaml", "names:\n  0: def_front\n  1: ok_front\n"),
                       ("classes.txt", "def_front\n\nok_front\n")):
        (root / name).write_text(text)
        assert labelled.yolo_class_names(lab) == (root / name, {0: "def_front", 1: "ok_front"})
        with pytest.raises(ManufacturingError, match=msg.format(name)):
            read_labelled(root / "train" / "images")
        (root / name).unlink()
    # a nearer names file wins; a YAML without names is not one
    (root / "classes.txt").write_text("crack\nok\n")
    (root / "train" / "labels" / "data.yaml").write_text("train: ../images\n")
    (root / "train" / "obj.names").write_text("crack\nchip\n")
    assert labelled.yolo_class_names(lab) == (root / "train" / "obj.names",
                                             {0: "crack", 1: "chip"})
    assert read_labelled(root / "train" / "images")[0].defect
    # names three folders up are another data set's
    (root / "train" / "obj.names").unlink()
    deep = root / "train" / "labels" / "x" / "y"
    deep.mkdir(parents=True)
    (deep / "b.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    assert labelled.yolo_class_names(deep / "b.txt") is None
    # without PyYAML a data.yaml's names are not read: a warning says what goes unchecked
    (root / "classes.txt").unlink()
    (root / "data.yaml").write_text("names: [crack, good]\n")
    monkeypatch.setitem(sys.modules, "yaml", None)
    with caplog.at_level(logging.WARNING):
        assert labelled.yolo_class_names(lab) is None
    assert "data.yaml: its class names are not read without PyYAML" in caplog.text
    # a data.yaml that is not YAML: its names go unchecked, and a warning says so
    monkeypatch.delitem(sys.modules, "yaml")
    (root / "data.yaml").write_text("names: [crack, good\n  nc: 2\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert labelled.yolo_class_names(lab) is None
    assert "data.yaml: not readable YAML" in caplog.text and "not caught" in caplog.text


def test_the_classes_each_label_format_counts_as_defects(tmp_path):
    """What went into training as a defect, by class: COCO categories, VOC names, labelme
    labels, YOLO classes by the names file or by number; masks and folders name none."""
    import json

    from deepseek.manufacturing.labelled import class_summary, label_classes
    from deepseek.manufacturing.training import describe_classes

    root = tmp_path / "mixed"
    _part(root / "coco" / "a.png", 1, h=40, w=50)
    (root / "coco" / "_annotations.coco.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 50, "height": 40}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [0, 0, 5, 5]},
                        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [9, 9, 5, 5]},
                        {"id": 3, "image_id": 1, "category_id": 7, "bbox": [20, 0, 5, 5]}],
        "categories": [{"id": 2, "name": "crack"}]}))
    _part(root / "voc" / "b.png", 2, h=40, w=50)
    _voc(root / "voc" / "b.xml", 50, 40, [("crack", (1, 1, 5, 5)), ("logo", (9, 9, 20, 20))])
    _part(root / "lm" / "c.png", 3, h=40, w=50)
    (root / "lm" / "c.json").write_text(json.dumps({"shapes": [
        {"label": "scratch", "shape_type": "rectangle", "points": [[0, 0], [5, 5]]}]}))
    (root / "yolo" / "images").mkdir(parents=True)
    _part(root / "yolo" / "images" / "d.png", 4, h=40, w=50)
    (root / "yolo" / "labels").mkdir()
    (root / "yolo" / "labels" / "d.txt").write_text("0 0.5 0.5 0.1 0.1\n1 0.2 0.2 0.1 0.1\n")
    _part(root / "pix" / "e.png", 5, ((5, 5), (30, 30)), h=40, w=50)
    cv2.imwrite(str(root / "pix" / "e_mask.png"), _part(tmp_path / "x.png", 5,
                                                          ((5, 5), (30, 30)), h=40, w=50))
    _part(root / "good" / "f.png", 6, h=40, w=50)
    items = {i.path.name: i for i in read_labelled(root)}
    assert {k: label_classes(i) for k, i in items.items()} == {
        "a.png": {"crack": 2, "category 7": 1}, "b.png": {"crack": 1, "logo": 1},
        "c.png": {"scratch": 1}, "d.png": {"class 0": 1, "class 1": 1}, "e.png": {},
        "f.png": {}}
    (root / "yolo" / "classes.txt").write_text("crack\npit\n")
    items = read_labelled(root)
    got = class_summary(items)
    assert got == {"crack": {"annotations": 4, "images": 3},
                   "category 7": {"annotations": 1, "images": 1},
                   "logo": {"annotations": 1, "images": 1},
                   "pit": {"annotations": 1, "images": 1},
                   "scratch": {"annotations": 1, "images": 1}}
    assert describe_classes(got).startswith("crack 4 annotations on 3 images, category 7 1 "
                                            "on 1, logo 1 on 1")
    assert describe_classes({"crack": {"annotations": 1, "images": 1}}) == \
        "crack 1 annotation on 1 image"


def test_label_rules_and_their_errors(tmp_path, caplog):
    # YOLO tree: a polygon, an empty file (good) and an image without a file (background)
    root = tmp_path / "yolo"
    _part(root / "images" / "train" / "p1_a.png", 1, ((20, 20), (60, 40)))
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "p1_a.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5\n")
    _part(root / "images" / "train" / "p1_b.png", 2)
    (root / "labels" / "train" / "p1_b.txt").write_text("")
    _part(root / "images" / "train" / "p2_a.png", 3)
    with caplog.at_level(logging.WARNING):
        items = {i.path.name: i for i in read_labelled(root / "images" / "train")}
    assert [items[k].defect for k in ("p1_a.png", "p1_b.png", "p2_a.png")] == [True, False, False]
    assert items["p2_a.png"].source == "yolo-background"
    assert items["p1_a.png"].group == items["p1_b.png"].group == "p1"
    assert "without a YOLO label" not in caplog.text  # a background among labelled images
    _part(root / "previews" / "p1_a.png", 7)  # a folder of images none of which has a label
    with caplog.at_level(logging.WARNING):
        items = {i.path.relative_to(root).as_posix(): i for i in read_labelled(root)}
    assert items["previews/p1_a.png"].source == "yolo-background"
    assert "1 image(s) without a YOLO label file in 1 folder(s) where no image has one " \
        "(previews)" in caplog.text

    # masks in a masks/ folder beside the images folder, and class folders
    root = tmp_path / "masks"
    m = _part(root / "images" / "x.png", 4, ((10, 10), (50, 50)))
    (root / "masks").mkdir()
    cv2.imwrite(str(root / "masks" / "x.png"), m)
    _part(root / "good" / "g.png", 5)
    _part(root / "defect" / "d.png", 6, ((10, 10), (50, 50)))
    items = {i.path.name: i for i in read_labelled(root)}
    assert items["x.png"].source == "mask" and items["x.png"].defect
    assert items["g.png"].source == "folder" and not items["g.png"].defect
    assert items["d.png"].defect and items["d.png"].mask is None

    # a defect mask for an image in good/, a mask of the wrong size, no label at all
    cv2.imwrite(str(root / "good" / "g_mask.png"), m)
    with pytest.raises(ManufacturingError, match="g.png: it is in a good folder"):
        read_labelled(root)
    cv2.imwrite(str(root / "good" / "g_mask.png"), m[:50])
    with pytest.raises(ManufacturingError, match="g_mask.png: mask is 128x50"):
        read_labelled(root)
    _part(tmp_path / "plain" / "p.png", 7)
    with pytest.raises(ManufacturingError, match="p.png: no label"):
        read_labelled(tmp_path / "plain")


def test_unlabelled_images_are_counted_before_any_is_decoded(tmp_path, monkeypatch):
    import deepseek.manufacturing.images as images

    root = tmp_path / "set"
    m = _part(root / "a.png", 1, ((10, 10), (50, 50)))
    cv2.imwrite(str(root / "a_mask.png"), m)
    for k in range(7):
        _part(root / "more" / f"n{k}.png", 10 + k)
    decoded = []
    real = images.imread
    monkeypatch.setattr(images, "imread", lambda *a, **k: decoded.append(a) or real(*a, **k))
    # one error counting all seven, naming the first five, before any pixel is read
    with pytest.raises(ManufacturingError, match=r"set: 7 of its 8 images have no label "
                       r"\(more/n0.png, more/n1.png, more/n2.png, more/n3.png, more/n4.png "
                       r"\.\.\.\): give each a mask \(n0_mask.png"):
        read_labelled(root)
    assert decoded == []
    # the same for score --evaluate, before the model scores anything
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(root), "--evaluate"])
    assert res.exit_code != 0 and "7 of its 8 images have no label" in res.output, res.output
    assert decoded == []
    # in a COCO data set: the images it does not list
    for k in range(2, 7):
        (root / "more" / f"n{k}.png").unlink()
    _coco(root / "_annotations.coco.json",
          [{"id": 1, "file_name": "a.png", "width": 128, "height": 96}], [])
    with pytest.raises(ManufacturingError, match=r"set: 2 of its 3 images \(more/n0.png, "
                       r"more/n1.png\) are not listed in the COCO file\(s\) of this data set "
                       r"\(_annotations.coco.json\) and have no other label: add them"):
        read_labelled(root)
    # in a YOLO data set an image without a label file is a background, not an error
    (root / "_annotations.coco.json").unlink()
    (root / "a.txt").write_text("")
    assert read_labelled(root)


def test_group_split_keeps_groups_together(tmp_path):
    for g in range(6):
        for k in range(3):
            crack = ((10, 10), (60, 30)) if g % 2 else None
            m = _part(tmp_path / f"part{g}_{k}.png", 10 * g + k, crack, h=32, w=32)
            cv2.imwrite(str(tmp_path / f"part{g}_{k}_mask.png"), m)
    items = read_labelled(tmp_path)
    train, val = split_groups(items, 0.34, seed=3)
    assert {i.group for i in train}.isdisjoint({i.group for i in val})
    assert any(i.defect for i in val) and not all(i.defect for i in val)
    assert len(train) + len(val) == len(items)
    custom = read_labelled(tmp_path, group_pattern=r"part(\d)")
    assert {i.group for i in custom} == {str(g) for g in range(6)}
    with pytest.raises(ManufacturingError, match="no defect images"):
        split_groups([i for i in items if i.group == "part1"] +
                     [i for i in items if not i.defect], 0.2)


def test_image_auroc_matches_scikit_learn():
    from sklearn.metrics import roc_auc_score

    from deepseek.manufacturing.metrics import image_auroc, recall_at_fpr

    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.2
    s = np.round(rng.normal(y * 1.0, 1.0), 1)          # rounded: many ties
    assert image_auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    thr, rec, fpr = recall_at_fpr(s, y, 0.05)
    assert fpr <= 0.05 and rec == pytest.approx(float((s[y] >= thr).mean()))


def test_a_validation_folder_inside_the_training_folder_is_left_out_of_training(
        tmp_path, caplog):
    """``--folder data --val-folder data/val``: the validation images are not trained on
    (named in a warning), so validation stays on parts the model never saw; a validation
    folder holding every training image is refused."""
    from deepseek.manufacturing.training import _without_validation

    for name, seed in (("a", 1), ("b", 2), ("val/c", 3), ("val/d", 4)):
        m = _part(tmp_path / "data" / f"{name}.png", seed, ((10, 10), (50, 50)))
        cv2.imwrite(str(tmp_path / "data" / f"{name}_mask.png"), m * (seed % 2))
    items = read_labelled(tmp_path / "data")
    with caplog.at_level(logging.WARNING):
        kept = _without_validation(items, tmp_path / "data", tmp_path / "data" / "val")
    assert [i.path.name for i in kept] == ["a.png", "b.png"]
    assert "2 of its 4 images are in the validation folder" in caplog.text
    assert "left out of training" in caplog.text
    # a folder elsewhere (a copy of the same photos too: the look-alike check warns of it)
    assert _without_validation(items, tmp_path / "data", _val_copy(tmp_path / "data" / "val")
                               ) == items
    res = CliRunner().invoke(build_cli(), [
        "manufacturing", "train", "--out", str(tmp_path / "run"), "--folder",
        str(tmp_path / "data" / "val"), "--val-folder", str(tmp_path / "data")])
    assert res.exit_code != 0
    assert "all of its 2 images are in the validation folder" in res.output, res.output
    assert not (tmp_path / "run" / "training.json").exists()


def _train_tiny(tmp_path, output=None, more=()):
    """train --folder on tmp_path/train with tmp_path/val held out: one epoch of a few 32-px
    crops from scratch (``more``: further options); its training.json (the text it printed
    appended to ``output``, a list, when given: then without --json)."""
    res = CliRunner().invoke(build_cli(), [
        "manufacturing", "train", "--out", str(tmp_path / "run"), "--folder",
        str(tmp_path / "train"), "--val-folder", str(tmp_path / "val"), "--crop", "32",
        "--crops-per-epoch", "8", "--epochs", "1", "--batch-size", "4", "--init", "scratch",
        *more, *(["--json"] if output is None else [])])
    assert res.exit_code == 0, res.output
    if output is not None:
        output.append(res.output)
    return json.loads((tmp_path / "run" / "training.json").read_text())


@pytest.mark.slow
def test_train_with_the_fine_stem_from_scratch_and_refused_where_it_cannot_start(tmp_path):
    """--stem fine trains from scratch and the model written keeps its stem; with the
    packaged weights (--folder's default start), --good-only or another model it is refused
    by name."""
    from deepseek.loader import ModelLoader

    for split, n in (("train", 6), ("val", 4)):
        for k in range(n):
            crack = ((8, 20), (56, 28)) if k % 2 else None
            m = _part(tmp_path / split / f"{k}.png", 100 * len(split) + k, crack, h=48, w=64)
            cv2.imwrite(str(tmp_path / split / f"{k}_mask.png"), m)
    info = _train_tiny(tmp_path, more=["--stem", "fine"])
    assert ModelLoader.load(info["model"]).module.stem == "fine"
    run = ["manufacturing", "train", "--out", str(tmp_path / "no"), "--stem", "fine"]
    for more, why in ((["--folder", str(tmp_path / "train")], "add --init scratch"),
                      (["--folder", str(tmp_path / "train"), "--init", "packaged"],
                       "add --init scratch"),
                      (["--good-only", str(tmp_path / "train")], "not of --good-only"),
                      (["--model", "other", "--init", "scratch"], "--model other")):
        res = CliRunner().invoke(build_cli(), [*run, *more])
        assert res.exit_code == 2 and why in res.output, res.output
    assert not (tmp_path / "no").exists()


def test_train_from_a_labelled_folder(tmp_path):
    for split, n in (("train", 6), ("val", 4)):
        for k in range(n):
            crack = ((8, 20), (56, 28)) if k % 2 else None
            m = _part(tmp_path / split / f"{k}.png", 100 * len(split) + k, crack, h=48, w=64)
            cv2.imwrite(str(tmp_path / split / f"{k}_mask.png"), m)
    info = _train_tiny(tmp_path)
    assert info["data"] == "folder" and info["init"] == "scratch"
    assert "defect_classes" not in info  # masks name no class
    assert info["best_by"] == "val_select" and info["val_images"] == 4
    assert 0 < info["threshold"] < 1 and "validation folder" in info["threshold_rule"]
    # the images named for a label check are those the threshold was set on: the val folder's
    assert {Path(e["path"]).parent for e in info["threshold_review"]["good_highest"]} == \
        {tmp_path / "val"}
    # by default each image is scored as it is (one view), and the rule says nothing more
    assert info["views"] == 1 and "views" not in info["threshold_rule"]
    # the crops were turned a little (the cracks keep their directions), as stored
    from deepseek.loader import read_model_extra

    assert info["rotate"] == "small"
    assert read_model_extra(tmp_path / "run" / "model.safetensors")["rotate"] == "small"
    # its 3 cracks run one way (the same line on each part), and training says so
    assert info["defect_directions"]["defects"] == 3
    assert info["defect_directions"]["arc_degrees"] < 1
    printed = []
    _train_tiny(tmp_path, printed)
    assert "the 3 training defects drawn as lines all run within" in " ".join(printed[0].split())
    # and they are 2-pixel lines: thin, which it records and says too
    assert info["defect_widths"]["defects"] == 3 and info["defect_widths"]["median_px"] < 4
    assert "the 3 training defects drawn as lines are thin" in " ".join(printed[0].split())
    # 2 good images cannot show the default 0.3 % rate: the rule says so, as calibrate does
    assert "2 good images, too few to resolve a false-alarm rate of 0.003" \
        in info["threshold_rule"]
    assert 0.0 <= info["history"][0]["val_auroc"] <= 1.0
    exp = info["expected"]  # what the stored threshold did on the validation images
    assert exp["defect_images"] == 2 and exp["good_images"] == 2
    assert exp["recall_ci95"][0] <= exp["recall"] <= exp["recall_ci95"][1]
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(tmp_path / "val"),
                                           "--model", str(tmp_path / "run" / "model.safetensors")])
    assert res.exit_code == 0 and "expected at the stored threshold" in res.output
    assert "95 % CI" in res.output
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(tmp_path / "val"),
                                           "--model", str(tmp_path / "run" / "model.safetensors"),
                                           "--json"])
    assert res.exit_code == 0, res.output
    scored = json.loads(res.output)
    assert len(scored) == 4                              # the masks are not scored
    # the threshold stored with the weights is the default
    assert all(r["defect"] == (r["score"] >= info["threshold"]) for r in scored)
    assert all(r["threshold"] == info["threshold"] for r in scored)
    # --evaluate: image and pixel metrics against the folder's masks
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(tmp_path / "val"),
                                           "--model", str(tmp_path / "run" / "model.safetensors"),
                                           "--evaluate", "--json"])
    assert res.exit_code == 0, res.output
    ev = json.loads(res.output)["evaluation"]
    assert ev["images"] == 4 and ev["defect_images"] == 2 and 0 <= ev["image_auroc"] <= 1
    assert ev["pixel"]["regions"] == 2 and 0 <= ev["pixel"]["au_pro"] <= 1
    refs = ev["pixel_references"]  # never alone: chance and the darkness baseline beside it
    assert refs["chance"]["pixel_auroc"] == 0.5
    assert 0 <= refs["darkness"]["pixel_auroc"] <= 1 and 0 <= refs["darkness"]["au_pro"] <= 1
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(tmp_path / "val"),
                                           str(tmp_path / "train"), "--evaluate"])
    assert res.exit_code == 2 and "one labelled folder" in res.output


def test_pixel_metrics():
    from sklearn.metrics import roc_auc_score

    from deepseek.manufacturing.metrics import pixel_metrics, upsample_map

    rng = np.random.default_rng(0)
    masks = [np.zeros((64, 80), np.uint8) for _ in range(3)]
    masks[0][10:14, 5:60] = 1        # a long thin region
    masks[1][40:44, 70:74] = 1       # a small one weighs the same in the overlap
    good = [m + rng.random(m.shape) * 0.5 for m in masks]
    r = pixel_metrics(good, masks, step=1)
    assert r["regions"] == 2 and r["pixel_auroc"] == 1.0 and r["au_pro"] == 1.0
    assert pixel_metrics([-g for g in good], masks)["au_pro"] == 0.0
    # the small region missed: half the regions, whatever their areas
    half = [g.copy() for g in good]
    half[1][40:44, 70:74] = 0
    assert pixel_metrics(half, masks, step=1)["au_pro"] == pytest.approx(0.5, abs=0.02)
    noisy = [rng.random(m.shape) + 0.3 * m for m in masks]
    r = pixel_metrics(noisy, masks, step=1)
    flat = roc_auc_score(np.concatenate([m.ravel() for m in masks]),
                         np.concatenate([n.ravel() for n in noisy]))
    assert r["pixel_auroc"] == pytest.approx(flat, abs=1e-12)
    up = upsample_map(np.array([[0.0, 1.0]]), (16, 20), 16)
    assert up.shape == (16, 20) and up[:, 0].max() < up[:, -1].min()
    with pytest.raises(ValueError, match="does not cover"):
        upsample_map(np.zeros((1, 1)), (20, 20), 16)


def test_pixel_metrics_keep_a_bounded_sample_taken_alike_from_every_image():
    """Past ``max_samples`` the grid grows coarser for the images already added and those to
    come, so the figures are those of one grid over all of them; a large region's values
    are kept as quantiles, within about 1/4097 of its exact overlap."""
    from deepseek.manufacturing.metrics import PixelMetrics, pixel_metrics

    rng = np.random.default_rng(1)
    masks = [np.zeros((96, 128), np.uint8) for _ in range(6)]
    for i, m in enumerate(masks[:4]):
        m[10 + 8 * i:14 + 8 * i, 5:100] = 1
    maps = [rng.random(m.shape).astype(np.float32) + 0.4 * m for m in masks]
    acc = PixelMetrics(step=2, max_samples=10_000)
    for m, k in zip(maps, masks):
        acc.add(m, k)
        assert acc.samples <= 10_000
    got = acc.result()
    assert got["pixel_step"] == 4  # 6 images of 48 x 64 samples at step 2 is 18,432
    want = pixel_metrics(maps, masks, step=4)
    assert got == want and want["pixel_step"] == 4
    assert pixel_metrics(maps, masks, step=2)["pixel_auroc"] != got["pixel_auroc"]
    # a region of 200,000 pixels, kept as 4097 quantiles
    big = np.zeros((500, 800), np.uint8)
    big[50:450, 100:600] = 1
    bmap = rng.random(big.shape).astype(np.float32) + 0.3 * big
    exact = pixel_metrics([bmap], [big], step=1, max_samples=10 ** 7)
    acc = PixelMetrics(step=1, max_samples=10 ** 7)
    acc.add(bmap, big)
    assert len(acc._regions[0]) == 4097
    assert acc.result()["au_pro"] == pytest.approx(exact["au_pro"], abs=1e-3)
    with pytest.raises(ValueError, match="no image added"):
        PixelMetrics().result()


def test_evaluated_pixel_metrics_do_not_hold_every_images_full_size_map(tmp_path):
    """``score --evaluate`` made each image's full-size map, its darkness reference and its
    mask for all images before computing a figure (12.6 GB for 30 photos of 20
    megapixels); it now takes them one image at a time, and the AUROC sorts a copy of the
    good pixels' samples instead of ranking every sample. Twelve 1-megapixel images, scored
    with cell maps: 101 MB at the peak (31 of them the labelled images kept in memory),
    where the code before peaked at 300 MB."""
    import tracemalloc

    import cv2

    from deepseek.manufacturing.score import ImageScore, evaluate_scores

    rng = np.random.default_rng(2)
    folder = tmp_path / "parts"
    folder.mkdir()
    results = []
    for i in range(12):
        img = rng.integers(90, 160, (1024, 1024), dtype=np.uint8)
        mask = np.zeros((1024, 1024), np.uint8)
        if i % 2:
            mask[300:310, 100:900] = 255
            img[mask > 0] = 40
        cv2.imwrite(str(folder / f"p{i:02d}.png"), img)
        cv2.imwrite(str(folder / f"p{i:02d}_mask.png"), mask)
        cells = rng.random((64, 64)).astype(np.float32)
        if i % 2:
            cells[18:20, 6:57] += 1.0
        results.append(ImageScore(str(folder / f"p{i:02d}.png"), 1024, 1024,
                                  float(cells.max()), bool(i % 2), None, threshold=1.0,
                                  cell_map=cells))
    tracemalloc.start()
    try:
        ev = evaluate_scores(results, folder)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ev["pixel"]["images"] == 12 and ev["pixel"]["regions"] == 6
    assert ev["pixel"]["pixel_auroc"] > ev["pixel_references"]["chance"]["pixel_auroc"]
    assert peak < 160e6, f"{peak / 1e6:.0f} MB"


def test_the_same_part_on_both_sides_of_a_split_is_found(tmp_path):
    """A part photographed again under another light (gain and offset changed, new noise)
    is recognised across the split; other parts of the same size are not."""
    from deepseek.manufacturing.labelled import shared_parts

    rng = np.random.default_rng(0)
    _part(tmp_path / "train" / "good" / "a.png", seed=1)
    _part(tmp_path / "train" / "good" / "b.png", seed=2)
    _part(tmp_path / "val" / "good" / "c.png", seed=3)
    base = cv2.imread(str(tmp_path / "train" / "good" / "a.png"), cv2.IMREAD_GRAYSCALE)
    relit = np.clip(base.astype(float) * 1.3 + 20 + rng.normal(0, 2, base.shape), 0, 255)
    cv2.imwrite(str(tmp_path / "val" / "good" / "a_bright.png"), relit.astype(np.uint8))
    leaks = shared_parts(read_labelled(tmp_path / "train"), read_labelled(tmp_path / "val"))
    assert [(v.rsplit("/", 1)[-1], t.rsplit("/", 1)[-1]) for v, t, _ in leaks] == [
        ("a_bright.png", "a.png")]
    assert leaks[0][2] >= 0.97


def test_look_alike_images_join_one_group_and_folds_keep_groups_whole(tmp_path):
    """A part photographed again under another light joins its original's group, so a fold
    never holds it on one side and its twin on the other; folds keep both kinds."""
    from deepseek.manufacturing.labelled import fold_groups, join_look_alikes

    rng = np.random.default_rng(0)
    for k in range(10):
        crack = ((10, 20), (100, 60)) if k < 4 else None
        m = _part(tmp_path / f"{k}.png", 50 + k, crack)
        cv2.imwrite(str(tmp_path / f"{k}_mask.png"), m)
    base = cv2.imread(str(tmp_path / "7.png"), cv2.IMREAD_GRAYSCALE)
    relit = np.clip(base.astype(float) * 0.8 + 30 + rng.normal(0, 2, base.shape), 0, 255)
    cv2.imwrite(str(tmp_path / "twin.png"), relit.astype(np.uint8))
    cv2.imwrite(str(tmp_path / "twin_mask.png"), np.zeros_like(base))
    items = read_labelled(tmp_path)
    info = join_look_alikes(items)
    assert info == {"groups_before": 11, "groups_after": 10, "pairs": 1}
    group = {i.path.stem: i.group for i in items}
    assert group["twin"] == group["7"] and len(set(group.values())) == 10
    for seed in range(5):
        fold = fold_groups(items, 3, seed)
        assert sorted(set(fold.tolist())) == [0, 1, 2]
        by = {i.path.stem: f for i, f in zip(items, fold)}
        assert by["twin"] == by["7"]
        for f in range(3):
            kinds = {i.defect for i, g in zip(items, fold) if g == f}
            assert kinds == {True, False}
    # fewer defect groups than folds: fewer folds; fewer than two: an error naming the fix
    assert fold_groups(items, 10, 0).max() + 1 == 4
    with pytest.raises(ManufacturingError, match="at least two groups with a defect"):
        fold_groups([i for i in items if not i.defect or i.path.stem == "0"], 3)


def test_folds_when_every_part_has_a_defect_photo():
    """Grouped by part, a data set whose every part has one photo of its defect among photos
    of its good sides has no defect-free group: the parts' good photos fill the folds, every
    fold holds both kinds, parts stay whole."""
    from types import SimpleNamespace as Img

    from deepseek.manufacturing.labelled import fold_groups

    def parts(n_mixed, n_defect_only=0, n_good_only=0):
        items = []
        for p in range(n_mixed):
            items += [Img(group=f"m{p}", defect=k == p % 8) for k in range(8)]
        items += [Img(group=f"d{p}", defect=True) for p in range(n_defect_only)]
        items += [Img(group=f"g{p}", defect=False) for p in range(n_good_only)]
        return items

    for items, folds, k in ((parts(12), 5, 5), (parts(3), 5, 3), (parts(1, 6, 1), 5, 2),
                            (parts(2, 3, 0), 4, 2), (parts(2, 1, 1), 5, 3),
                            (parts(6, 0, 2), 5, 5), (parts(0, 4, 6), 10, 4)):
        for seed in range(6):
            fold = fold_groups(items, folds, seed)
            assert sorted(set(fold.tolist())) == list(range(k))
            for f in range(k):
                assert {i.defect for i, g in zip(items, fold) if g == f} == {True, False}
            for g in {i.group for i in items}:
                assert len({int(f) for i, f in zip(items, fold) if i.group == g}) == 1
    with pytest.raises(ManufacturingError, match="two with a good image; there are 4 and 1"):
        fold_groups(parts(1, 3), 5)
    # enough groups of each kind for every fold: dealt apart, the two kinds balanced
    items = parts(0, 10, 10)
    fold = fold_groups(items, 5, 0)
    for f in range(5):
        assert sorted(i.defect for i, g in zip(items, fold) if g == f) == [False] * 2 + [True] * 2


def test_cross_fitting_a_folder_of_parts_each_with_a_defect_side(tmp_path):
    """One subfolder per part, each part photographed from four sides, one side cracked: no
    group is free of defects, and cross-fitting trains on it (it refused before)."""
    for p in range(3):
        for k in range(4):
            m = _part(tmp_path / "parts" / f"part{p}" / f"{k}.png", 900 + 4 * p + k,
                      ((8, 20), (56, 28)) if k == p else None, h=48, w=64)
            cv2.imwrite(str(tmp_path / "parts" / f"part{p}" / f"{k}_mask.png"), m)
    res = CliRunner().invoke(build_cli(), [
        "manufacturing", "train", "--out", str(tmp_path / "run"), "--folder",
        str(tmp_path / "parts"), "--folds", "3", "--crop", "32", "--crops-per-epoch", "4",
        "--epochs", "1", "--batch-size", "4", "--init", "scratch"])
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "run" / "training.json").read_text())
    assert info["folds"] == 3 and sorted(info["fold_images"]) == [4, 4, 4]
    assert len(info["out_of_fold_scores"]) == 12
    # the text names the good images that set the threshold, with their out-of-fold scores
    assert "labels to check: the good images scored highest, out of fold" in res.output
    for e in info["threshold_review"]["good_highest"]:
        assert f"{e['score']:.4g}" in res.output and e["path"] in res.output
        # and where to look in it: whole map cells of the 64 x 48 photo, inclusive
        x0, y0, x1, y1 = e["spot"]
        assert 0 <= x0 <= x1 < 64 and 0 <= y0 <= y1 < 48
        assert x0 % 16 == 0 and y0 % 16 == 0 and (x1 + 1) % 16 == 0 and (y1 + 1) % 16 == 0
        assert f"{e['path']}  look at x {x0}-{x1}, y {y0}-{y1}" in res.output
        # beside it, the model written's score of it (it trained on it as good)
        assert f"trained on: {e['written_model_score']:.4g}" in res.output
    # the photo decision written beside the exports, and how to serve it
    assert (tmp_path / "run" / "model.photo.onnx").is_file()
    assert f"serve with: deepseek serve {tmp_path / 'run' / 'model.photo.onnx'}" in res.output


def test_parts_that_all_look_alike_are_not_joined(tmp_path):
    """When every image correlates with the others (one part shape in a fixture), joining would
    make one group of everything: nothing is joined and the reason is given."""
    from deepseek.manufacturing.labelled import join_look_alikes

    yy, xx = np.mgrid[0:96, 0:128]
    for k in range(12):
        rng = np.random.default_rng(k)
        img = 100 + 80 * np.exp(-((xx - 64) ** 2 + (yy - 48) ** 2) / 800.0)
        img = img + rng.normal(0, 2, img.shape)
        cv2.imwrite(str(tmp_path / f"{k}.png"), np.clip(img, 0, 255).astype(np.uint8))
        cv2.imwrite(str(tmp_path / f"{k}_mask.png"), np.zeros((96, 128), np.uint8))
    items = read_labelled(tmp_path)
    info = join_look_alikes(items)
    assert "skipped" in info and info["groups_after"] == 12
    assert len({i.group for i in items}) == 12


def test_soup_averages_weights_and_keeps_counters():
    import torch

    from deepseek.manufacturing.training import soup

    a = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(4)}
    b = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(6)}
    s = soup([a, b])
    assert torch.equal(s["w"], torch.tensor([2.0, 4.0])) and int(s["n"]) == 6


def test_cross_fitted_training_sets_the_threshold_on_out_of_fold_scores(tmp_path):
    """Default --folder training: one model per fold, every training image scored by the
    model that did not see it; the threshold and its expected rates come from all of them."""
    for k in range(8):
        crack = ((8, 20), (56, 28)) if k % 2 else None
        m = _part(tmp_path / "parts" / f"{k}.png", 300 + k, crack, h=48, w=64)
        cv2.imwrite(str(tmp_path / "parts" / f"{k}_mask.png"), m)
    import shutil  # a copy of a good image: trained on and counted once, and named

    shutil.copy(tmp_path / "parts" / "0.png", tmp_path / "parts" / "0b.png")
    shutil.copy(tmp_path / "parts" / "0_mask.png", tmp_path / "parts" / "0b_mask.png")
    res = CliRunner().invoke(build_cli(), [
        "manufacturing", "train", "--out", str(tmp_path / "run"), "--folder",
        str(tmp_path / "parts"), "--folds", "2", "--crop", "32", "--crops-per-epoch", "8",
        "--epochs", "2", "--batch-size", "4", "--init", "scratch", "--target-fpr", "0.25",
        "--views", "4",
        "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "run" / "training.json").read_text())
    assert info["folds"] == 2 and sum(info["fold_images"]) == 8 and info["images"] == 8
    assert [Path(c).name for c in info["copies"][0]["copies"]] == ["0b.png"]
    assert len(info["image_digests"]) == 8  # the copy shares its image's: for calibrate
    assert info["epoch"] in (1, 2) and [h["best"] for h in info["history"]].count(True) == 1
    assert all(len(h["fold_auroc"]) == 2 and 0 <= h["oof_auroc"] <= 1 for h in info["history"])
    assert "out-of-fold scores of all 8 training images, scored under 4 views" \
        in info["threshold_rule"]
    assert "too few" not in info["threshold_rule"]  # 4 good images resolve 25 %
    # from scratch there are no starting weights to mine hard negatives with: all at random
    assert info["hard_negatives"] == {"fraction": 0.0, "spots": 0, "per_image": 8,
                                      "mined_by": None, "seconds": 0.0}
    # where the time went: the fold models' training and their held-out scoring
    stages = info["stage_seconds"]
    assert set(stages) == {"fold_training", "held_out_scoring"}
    assert stages["fold_training"] > 0 and stages["held_out_scoring"] >= 0
    assert sum(stages.values()) <= info["seconds"]
    exp = info["expected"]
    assert exp["defect_images"] == 4 and exp["good_images"] == 4
    assert exp["false_positive_rate"] <= 0.25
    # the written model (the fold models' average) scored on the 4 training defects: the
    # recall expected is the lower of that and the out-of-fold one, and train says which
    own = exp["written_model_on_training_defects"]
    assert own["defect_images"] == 4 and 0 <= own["recall"] <= 1
    lowered = "recall_out_of_fold" in exp
    assert exp["recall"] == (own["recall"] if lowered else exp["recall"])
    assert lowered == (own["recall"] < exp.get("recall_out_of_fold", 0))
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(tmp_path / "parts"),
                                           "--model", str(tmp_path / "run" / "model.safetensors")])
    assert res.exit_code == 0 and "from 4 defect and 4 good images" in res.output
    # the threshold was set on scores under the flips (--views 4): `score` makes its scores
    # the same way; told otherwise it says the expectation does not apply
    assert info["views"] == 4 and set(info["oof_auroc_by_views"]) == {"1", "4"}
    # every training image's out-of-fold score is kept; the threshold is set on them
    oof = info["out_of_fold_scores"]
    assert sorted(Path(o["path"]).name for o in oof) == [f"{k}.png" for k in range(8)]
    assert all(o["defect"] == (int(Path(o["path"]).stem) % 2 == 1) for o in oof)
    assert {o["label"] for o in oof} == {"mask"}
    from deepseek.manufacturing.metrics import recall_at_fpr

    four = [o["score"] for o in oof]
    assert recall_at_fpr(four, [o["defect"] for o in oof], 0.25)[0] == info["threshold"]
    # the good images that set it, and the defects it misses, are named for a look at their
    # labels: the same out-of-fold scores
    review = info["threshold_review"]
    good = sorted((o for o in oof if not o["defect"]), key=lambda o: -o["score"])
    assert [(e["path"], e["score"]) for e in review["good_highest"]] == \
        [(o["path"], o["score"]) for o in good]
    assert [e["flagged"] for e in review["good_highest"]] == \
        [o["score"] >= info["threshold"] for o in good]
    missed = sorted((o for o in oof if o["defect"] and o["score"] < info["threshold"]),
                    key=lambda o: o["score"])
    assert [e["path"] for e in review["defects_missed"]] == [o["path"] for o in missed]
    # each good image listed, scored again by the model written, which trained on it as
    # good (as `score` scores it): still flagged when that score reaches the threshold
    from deepseek.manufacturing.score import score_images

    again = score_images([e["path"] for e in review["good_highest"]],
                         tmp_path / "run" / "model.safetensors", progress=False)
    assert [e["written_model_score"] for e in review["good_highest"]] == pytest.approx(
        [r.score for r in again], abs=1e-5)
    assert [e["still_flagged"] for e in review["good_highest"]] == \
        [e["written_model_score"] >= info["threshold"] for e in review["good_highest"]]
    assert any(o["score_one_view"] != o["score"] for o in oof)
    from deepseek.manufacturing.score import Scorer

    weights = tmp_path / "run" / "model.safetensors"
    assert Scorer(weights).views == 4 and Scorer(weights).expected == info["expected"]
    one = Scorer(weights, views=1)
    assert one.views == 1 and one.expected is None
    part = tmp_path / "parts" / "1.png"
    assert Scorer(weights).score(part).to_dict()["views"] == 4
    assert one.score(part).to_dict()["views"] == 1
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(tmp_path / "parts"),
                                           "--model", str(weights), "--views", "1"])
    assert res.exit_code == 0 and "from 4 defect" not in res.output


def test_the_review_shows_what_the_written_model_scores_each_good_image(capsys):
    """`train` prints the review: beside each good image's out-of-fold score, the model
    written's (which trained on it as good), marked when still over the threshold, and
    the column explained once; a review without those scores (`calibrate`, a one-model
    fit) prints neither."""
    from deepseek.manufacturing.cli import _echo_review

    review = {"good_highest": [
        {"path": "a.png", "score": 0.99, "flagged": True, "spot": [1, 2, 3, 4],
         "written_model_score": 0.985, "still_flagged": True},
        {"path": "b.png", "score": 0.97, "flagged": False, "written_model_score": 0.2,
         "still_flagged": False}], "defects_missed": []}
    _echo_review(review, ", out of fold")
    out = capsys.readouterr().out.splitlines()
    assert sum("('trained on':" in line for line in out) == 1
    assert out[-2].endswith("a.png  look at x 1-3, y 2-4  trained on: 0.985, still flagged")
    assert out[-1].endswith("b.png  trained on: 0.2")
    for e in review["good_highest"]:
        del e["written_model_score"], e["still_flagged"]
    _echo_review(review, ", out of fold")
    out = capsys.readouterr().out
    assert "trained on" not in out and "still flagged" not in out and "b.png" in out


def test_hard_negative_crops_sit_on_the_spots_a_model_finds(tmp_path):
    """``hard_spots`` keeps each good image's hottest map cells as ``score`` computes the map
    (defect images give none), hottest first, at the cells' centres; a share outside 0..1 is
    refused."""
    from deepseek.loader import build_registered
    from deepseek.manufacturing.score import score_image
    from deepseek.manufacturing.training import hard_spots

    for k in range(3):
        m = _part(tmp_path / f"{k}.png", 500 + k, ((8, 60), (100, 70)) if k == 2 else None,
                  h=96, w=128)
        cv2.imwrite(str(tmp_path / f"{k}_mask.png"), m)
    items = read_labelled(tmp_path)
    good = [it for it in items if not it.defect]
    net, _ = build_registered("defect-3dcnn-lstm", pretrained=True)
    spots = hard_spots(net, items, per_image=5, progress=False)
    assert net.training  # left in the mode it came in
    hard_spots(net.eval(), items[:1], per_image=1, progress=False)
    assert not net.training
    assert len(spots) == 10 and {id(s.item) for s in spots} == {id(g) for g in good}
    for g in good:
        mine = [s for s in spots if s.item is g]
        w = [s.weight for s in mine]
        pmap = score_image(net.eval(), g.image)[1]
        assert np.allclose(w, np.sort(pmap, axis=None)[::-1][:5], atol=1e-5)
        for s in mine:
            assert pmap[s.y // 16, s.x // 16] == pytest.approx(s.weight, abs=1e-5)
        assert all(0 <= s.y < 96 and 0 <= s.x < 128 and s.y % 16 == 8 and s.x % 16 == 8
                   for s in mine)
    from deepseek.manufacturing.training import train_model

    # training from the packaged weights mines them once, before the first epoch
    info = train_model(tmp_path / "run", folder=tmp_path, val_folder=_val_copy(tmp_path), crop=32,
                       crops_per_epoch=8, epochs=1, batch_size=4, progress=False, views=4)
    assert info["hard_negatives"].pop("seconds") >= 0
    assert info["hard_negatives"] == {"fraction": 0.5, "spots": 16, "per_image": 8,
                                      "mined_by": "the packaged weights (the starting weights)"}
    with pytest.raises(ManufacturingError, match="hard_negatives"):
        train_model(tmp_path / "run", folder=tmp_path, hard_negatives=1.5)
    # the stored threshold is one of the held-out scores as `score` makes them (4 views)
    from deepseek.manufacturing.score import score_images

    weights = info["model"]
    four = [r.score for r in score_images([tmp_path], weights, progress=False)]
    assert min(abs(info["threshold"] - threshold_above(s)) for s in four) < 1e-9
    one = [r.score for r in score_images([tmp_path], weights, progress=False, views=1)]
    assert min(abs(info["threshold"] - threshold_above(s)) for s in one) > 1e-9
    with pytest.raises(ManufacturingError, match="views=2"):
        train_model(tmp_path / "run", folder=tmp_path, views=2)


def test_hard_negative_crops_hold_their_spot_in_the_central_half():
    """With ``hard_fraction`` 1 every negative crop is placed on a spot of the dataset's own
    good images (a marked pixel here), the spot in the crop's central half unless the image
    edge moves the crop; a spot of an image outside the dataset is never used."""
    pytest.importorskip("torch")
    from pathlib import Path

    from deepseek.manufacturing.labelled import LabelledImage
    from deepseek.manufacturing.training import CropDataset, HardSpot

    items, spots = [], []
    for k, (y, x) in enumerate([(100, 150), (3, 197)]):  # the second in a corner
        img = np.full((120, 200), 100, np.uint8)
        img[y, x] = 255
        it = LabelledImage(Path(f"g{k}.png"), False, "folder", img.shape)
        it.keep(img, None)
        items.append(it)
        spots.append(HardSpot(it, y, x, 1.0 + k))
    bad = LabelledImage(Path("d.png"), True, "folder", (120, 200))
    bad.keep(np.full((120, 200), 90, np.uint8), None)
    stranger = LabelledImage(Path("s.png"), False, "folder", (120, 200))
    ds = CropDataset(items + [bad], 60, 32, 2, seed=3, augment=False,
                     hard=spots + [HardSpot(stranger, 5, 5, 1e6)], hard_fraction=1.0)
    assert len(ds.hard) == 2 and np.allclose(ds.hard_p, [1 / 3, 2 / 3])
    corner = 0
    for i in range(1, 60, 2):
        x, m, _ = ds.sample(i)
        ys, xs = np.nonzero(x == 255)
        assert x.shape == (32, 32) and m is None and len(ys) == 1
        if (ys[0], xs[0]) == (3, 29):  # the corner spot: the crop held inside the image
            corner += 1
        else:
            assert 8 <= ys[0] <= 24 and 8 <= xs[0] <= 24  # the central half
    assert 0 < corner < 30  # both spots drawn
    # at fraction 0 the negatives are random crops: the marks are mostly out of them
    ds0 = CropDataset(items + [bad], 60, 32, 2, seed=3, augment=False, hard=spots)
    assert ds0.hard_fraction == 0.0
    assert sum((ds0.sample(i)[0] == 255).any() for i in range(1, 60, 2)) < 15


def _line_crop(top: int) -> tuple[np.ndarray, np.ndarray]:
    """A 64-px crop of a flat surface crossed by a 4-px dark horizontal line at row ``top``,
    and its mask."""
    x = np.full((64, 64), 170, np.uint8)
    m = np.zeros((64, 64), np.uint8)
    x[top:top + 4, :] = 60
    m[top:top + 4, :] = 1
    return x, m


def _direction(m: np.ndarray) -> float:
    """The direction of a mask's pixels from the crop's width, 0-90 degrees."""
    r, c = np.nonzero(m)
    w, v = np.linalg.eigh(np.cov(np.stack([c, r]).astype(float)))
    return float(abs(np.degrees(np.arctan2(v[1, -1], v[0, -1]))) % 180) if r.size else 0.0


@pytest.mark.parametrize("top", [30, 1])
def test_augment_turns_cracks_every_way_and_the_mask_follows_the_pixels(top):
    """``rotate="any"`` shows a crack in every direction (KolektorSDD's all run within 33
    degrees of the photo's width, and a model trained on them as they are found none turned
    a quarter); ``"small"`` keeps the direction within the 10-degree rotation. Either way the
    mask marks the dark pixels wherever they go, in the corners a rotation fills with the
    crop mirrored too (a line along the crop's edge is mirrored into them)."""
    from deepseek.manufacturing.labelled import augment

    x0, m0 = _line_crop(top)
    angles = {}
    for rotate in ("any", "small"):
        got = []
        for seed in range(150):
            x, m = augment(x0, m0, np.random.default_rng(seed), rotate)
            assert x.shape == m.shape == (64, 64) and x.dtype == np.uint8
            on = m.astype(bool)
            assert 0 < on.sum() < on.size
            dark = x < (float(x[on].mean()) + float(x[~on].mean())) / 2
            # the dark pixels are the marked ones, to the pixel (interpolation and blur move
            # a line's edges by one; a mirrored line's seam may differ by a few pixels more)
            near = np.ones((3, 3), np.uint8)
            stray = dark & ~cv2.dilate(m, near).astype(bool)
            unseen = on & ~cv2.dilate(dark.astype(np.uint8), near).astype(bool)
            assert stray.sum() + unseen.sum() <= 0.02 * on.sum(), (rotate, seed)
            got.append(min(_direction(m) % 180, 180 - _direction(m) % 180))
        angles[rotate] = np.array(got)
    assert angles["small"].max() <= 11
    assert (angles["any"] > 60).mean() > 0.3 and ((angles["any"] > 20) & (angles["any"] < 70)).any()


def _drawn(angle: float | None, k: int, thick: int = 3):
    """A defect image whose mask is a ``thick``-px line through the middle of a 200-px square
    at ``angle`` degrees from its width (counter-clockwise as seen), or a round blotch
    (None)."""
    from deepseek.manufacturing.labelled import LabelledImage

    m = np.zeros((200, 200), np.uint8)
    if angle is None:
        cv2.circle(m, (100, 100), 20, 1, -1)
    else:
        dx, dy = 80 * np.cos(np.radians(angle)), -80 * np.sin(np.radians(angle))
        cv2.line(m, (int(100 - dx), int(100 - dy)), (int(100 + dx), int(100 + dy)), 1, thick)
    r, c = np.nonzero(m)
    return LabelledImage(Path(f"d{k}.png"), True, "mask", m.shape, rows=r.tolist(),
                         cols=c.tolist())


def test_train_says_when_its_defects_all_run_one_way():
    """KolektorSDD's cracks all run within about 50 degrees of one another, and a model
    trained on them with the small turns found none turned a quarter: training records the
    defects' directions and, with the small turns, says what they mean; defects running
    every way, blotches and the turns every way say nothing."""
    from deepseek.manufacturing.labelled import LabelledImage
    from deepseek.manufacturing.training import defect_directions, direction_note

    good = LabelledImage(Path("g.png"), False, "mask", (200, 200))
    level = [_drawn(a, k) for k, a in enumerate((-20, -5, 0, 10, 170, 25))] + [good]
    d = defect_directions(level + [_drawn(None, 9)])  # the blotch has no direction
    assert d["defects"] == 6 and abs(d["arc_degrees"] - 45) <= 2
    assert abs(d["centre_degrees"] - 2.5) <= 2  # round the 0/180 wrap
    note = direction_note({"defect_directions": d, "rotate": "small"})
    assert f"within {d['arc_degrees']:g} degrees" in note and "--rotate any" in note
    assert direction_note({"defect_directions": d, "rotate": "any"}) is None
    steep = defect_directions([_drawn(a, k) for k, a in enumerate((80, 95, 100))])
    assert abs(steep["centre_degrees"] - 90) <= 2 or abs(steep["centre_degrees"] + 90) <= 2
    every = defect_directions([_drawn(a, k) for k, a in enumerate(range(0, 180, 30))])
    assert every["arc_degrees"] >= 140
    assert direction_note({"defect_directions": every, "rotate": "small"}) is None
    assert defect_directions(level[:2] + [_drawn(None, 8)] * 3) is None  # too few lines
    assert direction_note({}) is None


def test_train_says_when_its_defects_are_thin():
    """Cracks a few pixels wide (CrackForest's road cracks, median 4) were found more often
    with the photos enlarged: training records the line-shaped defects' widths in the
    photos' own pixels and says so when they are thin and the photos were not enlarged;
    wide ones (KolektorSDD's, median 13), blotches and enlarged training say nothing."""
    from deepseek.manufacturing.training import THIN_PX, defect_widths, width_note

    thin = [_drawn(a, k, 3) for k, a in enumerate((-20, 0, 35, 90))]
    d = defect_widths(thin + [_drawn(None, 9)])  # the blotch has no width across a line
    assert d["defects"] == 4 and 2.5 <= d["median_px"] <= 5 < THIN_PX
    assert d["range_px"][0] <= d["median_px"] <= d["range_px"][1]
    note = width_note({"defect_widths": d, "scale": 1.0})
    assert f"median width {d['median_px']:g} pixels" in note and "--scale 1.5 or 2" in note
    assert width_note({"defect_widths": d, "scale": 0.75}) is not None
    assert width_note({"defect_widths": d, "scale": 1.5}) is None  # already enlarged
    wide = defect_widths([_drawn(a, k, 15) for k, a in enumerate((0, 10, 170))])
    assert wide["median_px"] >= 14 and width_note({"defect_widths": wide}) is None
    # masks as training sees them at --scale 2: widths still in the photo's own pixels
    from deepseek.manufacturing.labelled import LabelledImage

    twice = []
    for it in thin:
        m = np.zeros((200, 200), np.uint8)
        m[it.rows, it.cols] = 1
        r, c = np.nonzero(cv2.resize(m, (400, 400), interpolation=cv2.INTER_NEAREST))
        twice.append(LabelledImage(it.path, True, "mask", m.shape, rows=r.tolist(),
                                   cols=c.tolist(), scale=2.0))
    assert abs(defect_widths(twice, 2.0)["median_px"] - d["median_px"]) <= 1
    assert defect_widths(thin[:2] + [_drawn(None, 8)]) is None  # too few lines
    assert width_note({}) is None


def test_an_unknown_rotation_is_refused_by_name():
    from deepseek.manufacturing.labelled import LabelledImage, augment, check_rotate
    from deepseek.manufacturing.training import CropDataset, train_model

    x, m = _line_crop(30)
    for call in (lambda: augment(x, m, np.random.default_rng(0), "every"),
                 lambda: check_rotate("full"),
                 lambda: train_model("unused", clips=2, rotate="sideways")):
        with pytest.raises(ManufacturingError, match="rotate=.*give one of any, small"):
            call()
    item = LabelledImage(Path("p.png"), True, "mask", (64, 64), rows=[30], cols=[5])
    with pytest.raises(ManufacturingError, match="rotate="):
        CropDataset([item], 4, 32, 2, rotate="most")


def test_train_help_states_the_hard_negative_default_and_refuses_it_without_a_folder(tmp_path):
    from deepseek.manufacturing.training import HARD_NEGATIVES

    res = CliRunner().invoke(build_cli(), ["manufacturing", "train", "--help"])
    assert res.exit_code == 0 and f"[{HARD_NEGATIVES:g}]" in " ".join(res.output.split())
    # --hard-negatives and --views go with labelled images (--folder) only
    for flag, value in (("--hard-negatives", "0.3"), ("--views", "1"), ("--rotate", "any")):
        res = CliRunner().invoke(build_cli(), ["manufacturing", "train", "--out",
                                               str(tmp_path / "r"), flag, value])
        assert res.exit_code == 2 and "go with --folder" in res.output
        res = CliRunner().invoke(build_cli(), ["manufacturing", "train", "--out",
                                               str(tmp_path / "r"), "--good-only",
                                               str(tmp_path), flag, value])
        assert res.exit_code == 2 and f"{flag} goes with --folder" in res.output
        assert "not with --good-only" in res.output
    res = CliRunner().invoke(build_cli(), ["manufacturing", "train", "--out",
                                           str(tmp_path / "r"), "--hard-negatives", "2"])
    assert res.exit_code == 2 and "--hard-negatives" in res.output


@pytest.mark.slow
def test_an_interrupted_cross_fitted_training_resumes_from_its_finished_folds(tmp_path,
                                                                             monkeypatch,
                                                                             caplog):
    """`train --folder ... --resume` after an interruption takes the folds the run finished
    (OUT/checkpoints/fold-K.pt) and trains only the rest, giving the model one run gives
    (before: refused, "--resume continues one model's checkpoints: give --folds 1"). Folds
    saved with other settings are trained again, with a warning."""
    import torch
    from safetensors.torch import load_file

    from deepseek.manufacturing import training

    (tmp_path / "parts").mkdir()
    for k in range(6):
        m = _part(tmp_path / "parts" / f"{k}.png", 900 + k,
                  ((8, 20), (56, 28)) if k % 2 else None, h=48, w=64)
        cv2.imwrite(str(tmp_path / "parts" / f"{k}_mask.png"), m)
    opts = dict(folder=tmp_path / "parts", folds=3, crop=32, crops_per_epoch=8, epochs=2,
                batch_size=4, init="scratch", progress=False, target_fpr=0.34)
    whole = training.train_model(tmp_path / "whole", **opts)

    trained = []
    make = training._trainer

    def trainer(net, *a, **k):
        trained.append(1)
        if fail_on and len(trained) == fail_on:
            raise KeyboardInterrupt  # the second fold is stopped before it trains
        return make(net, *a, **k)

    monkeypatch.setattr(training, "_trainer", trainer)
    fail_on = 2
    with pytest.raises(KeyboardInterrupt):
        training.train_model(tmp_path / "run", **opts)
    saved = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert saved == ["fold-0.pt", "start.pt"]
    trained.clear()
    fail_on = 0
    resumed = training.train_model(tmp_path / "run", resume=True, **opts)
    assert len(trained) == 2  # folds 2 and 3 only
    a, b = (load_file(str(d / "model.safetensors")) for d in (tmp_path / "whole",
                                                              tmp_path / "run"))
    assert a.keys() == b.keys() and all(torch.allclose(a[n], b[n], atol=1e-6) for n in a)
    assert [r["score"] for r in resumed["out_of_fold_scores"]] == pytest.approx(
        [r["score"] for r in whole["out_of_fold_scores"]], abs=1e-6)
    # a damaged fold file is trained again
    (tmp_path / "run" / "checkpoints" / "fold-1.pt").write_bytes(b"not a checkpoint")
    trained.clear()
    with caplog.at_level("WARNING", logger="deepseek.manufacturing.training"):
        training.train_model(tmp_path / "run", resume=True, **opts)
    assert len(trained) == 1 and "fold-1.pt saved by a run of other" in caplog.text
    # with other settings the saved folds are not this run's: all trained again
    caplog.clear()
    trained.clear()
    with caplog.at_level("WARNING", logger="deepseek.manufacturing.training"):
        training.train_model(tmp_path / "run", resume=True, **{**opts, "epochs": 1})
    assert len(trained) == 3 and "saved by a run of other images or settings" in caplog.text


def test_cross_fitted_fold_models_from_scratch_share_one_start(tmp_path, monkeypatch):
    """The fold models are averaged into the model written, which only works from one start:
    from scratch each fold used to draw its own random weights, and their average scored
    every part alike (KolektorSDD: val AUROC 0.76, no crack found)."""
    import torch

    from deepseek.manufacturing import training

    (tmp_path / "parts").mkdir()
    for k in range(6):
        m = _part(tmp_path / "parts" / f"{k}.png", 900 + k,
                  ((8, 20), (56, 28)) if k % 2 else None, h=48, w=64)
        cv2.imwrite(str(tmp_path / "parts" / f"{k}_mask.png"), m)
    starts = []
    make = training._trainer

    def trainer(net, *a, **k):
        starts.append({n: t.detach().clone() for n, t in net.state_dict().items()})
        return make(net, *a, **k)

    monkeypatch.setattr(training, "_trainer", trainer)
    info = training.train_model(tmp_path / "run", folder=tmp_path / "parts", folds=3, crop=32,
                                crops_per_epoch=8, epochs=1, batch_size=4, init="scratch",
                                progress=False, target_fpr=0.34)
    assert info["folds"] == 3 and len(starts) == 3
    for other in starts[1:]:
        assert other.keys() == starts[0].keys()
        assert all(torch.equal(other[n], starts[0][n]) for n in other)
    # a random start, not the packaged weights
    from deepseek.loader import build_registered

    packaged = build_registered("defect-3dcnn-lstm", pretrained=True)[0].state_dict()
    assert not torch.equal(starts[0]["encoder.0.0.weight"], packaged["encoder.0.0.weight"])


def test_images_smaller_than_the_training_crop_are_named_with_the_crop_that_fits(tmp_path,
                                                                               caplog):
    """A crop larger than the image is padded with the image's edge pixels, a smear the model
    learns as surface: training says so (how many, the smallest, the crop that fits) and
    records it in training.json."""
    import json
    import logging

    from deepseek.manufacturing.training import smaller_than_crop, train_model

    (tmp_path / "parts").mkdir()
    for k in range(4):
        m = _part(tmp_path / "parts" / f"{k}.png", 950 + k,
                  ((8, 20), (56, 28)) if k % 2 else None, h=48 if k else 40, w=64)
        cv2.imwrite(str(tmp_path / "parts" / f"{k}_mask.png"), m)
    items = read_labelled(tmp_path / "parts")
    assert smaller_than_crop(items, 32) is None
    with caplog.at_level(logging.WARNING):
        assert smaller_than_crop(items, 48) == {"images": 1, "of": 4, "smallest": [64, 40],
                                                "crop_that_fits": 32}
    assert ("1 of 4 images are smaller than the 48-pixel training crop (the smallest, 0.png, "
            "64x40)") in caplog.text and "give --crop 32" in caplog.text
    # at a scale the sizes are the scaled ones; under 16 pixels no crop fits
    assert smaller_than_crop(items, 32, 0.5)["crop_that_fits"] == 16
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert smaller_than_crop(items, 16, 0.25)["crop_that_fits"] is None
    assert "images under 16 pixels are too small to train on" in caplog.text
    info = train_model(tmp_path / "run", folder=tmp_path / "parts",
                       val_folder=_val_copy(tmp_path / "parts"), crop=64, crops_per_epoch=4,
                       epochs=1, batch_size=4, init="scratch", progress=False,
                       target_fpr=0.5)
    want = {"images": 4, "of": 4, "smallest": [64, 40], "crop_that_fits": 32}
    assert info["smaller_than_crop"] == want
    assert json.loads((tmp_path / "run" / "training.json").read_text())[
        "smaller_than_crop"] == want


def test_the_expected_recall_is_what_the_written_model_gives_its_training_defects(
        tmp_path, monkeypatch):
    """The threshold is set on the fold models' out-of-fold scores; the model written is
    their average. Where the average catches fewer of the training defects (which it trained
    on) at the threshold, that is the recall stored and printed, the out-of-fold one kept."""
    from types import SimpleNamespace

    from deepseek.manufacturing import training
    from deepseek.manufacturing.metrics import expected_rates, wilson_interval
    from deepseek.manufacturing.score import describe_expectation

    items = [SimpleNamespace(defect=d) for d in [True] * 4 + [False] * 6]
    oof = [0.95, 0.96, 0.97, 0.2] + [0.1] * 6  # 3 of 4 defects at 0.9 out of fold
    seen = []

    def run(written):
        monkeypatch.setattr(training, "image_scores", lambda net, its, views=1: (
            seen.append((len(its), views)) or np.array(written)))
        extra = {"threshold": 0.9,
                 "expected": expected_rates(oof, [i.defect for i in items], 0.9)}
        training._written_model_recall(object(), items, extra, 4)
        return extra["expected"]

    exp = run([0.95, 0.5, 0.4, 0.3])  # the average: 1 of 4
    assert seen == [(4, 4)]  # the defects alone, under the threshold's views
    assert exp["recall"] == 0.25 and exp["recall_ci95"] == wilson_interval(1, 4)
    assert exp["recall_out_of_fold"] == 0.75
    assert exp["recall_out_of_fold_ci95"] == wilson_interval(3, 4)
    assert exp["written_model_on_training_defects"]["defect_images"] == 4
    assert exp["false_positive_rate"] == 0.0 and exp["good_images"] == 6  # untouched
    line = describe_expectation(exp)
    assert "recall 0.250" in line and "caught 0.750 out of fold" in line
    # train says so after the threshold (the training itself stood in for)
    (tmp_path / "parts").mkdir()
    monkeypatch.setattr(training, "train_model", lambda out, **k: {
        "model": str(out / "model.safetensors"), "history": [], "folds": 5,
        "threshold": 0.9, "threshold_rule": "rule", "expected": exp})
    res = CliRunner().invoke(build_cli(), ["manufacturing", "train", "--out",
                                           str(tmp_path / "run"), "--folder",
                                           str(tmp_path / "parts")])
    assert res.exit_code == 0, res.output
    assert ("the model written (the fold models' average) catches 0.250 of the 4 training "
            "defects at it, less than out of fold") in " ".join(res.output.split())
    exp = run([0.95, 0.96, 0.97, 0.98])  # the average catches more: the out-of-fold stays
    assert exp["recall"] == 0.75 and "recall_out_of_fold" not in exp
    assert exp["written_model_on_training_defects"]["recall"] == 1.0
    assert "out of fold" not in describe_expectation(exp)
    # no defect images: nothing to measure, nothing scored
    seen.clear()
    extra = {"threshold": 0.9, "expected": expected_rates([0.1] * 3, [False] * 3, 0.9)}
    training._written_model_recall(object(), [SimpleNamespace(defect=False)] * 3, extra, 1)
    assert seen == [] and extra["expected"]["recall"] is None


def test_a_model_trained_at_a_scale_scores_photos_at_it(tmp_path, caplog):
    """``--scale``: the images and masks are scaled before training (kept or read again, the
    same pixels), the scale is stored with the model, and ``score`` scales each photo the same
    way: the stored threshold is one of the scores ``score`` gives, and boxes, heatmaps and
    pixel metrics come back in the photo's own pixels."""
    from deepseek.manufacturing.score import Scorer, evaluate_scores, score_images
    from deepseek.manufacturing.training import train_model

    for k in range(6):
        m = _part(tmp_path / "parts" / f"{k}.png", 700 + k,
                  ((20, 30), (110, 60)) if k % 2 else None, h=96, w=128)
        cv2.imwrite(str(tmp_path / "parts" / f"{k}_mask.png"), m)
    kept = read_labelled(tmp_path / "parts", scale=0.5)
    spilled = read_labelled(tmp_path / "parts", scale=0.5, cache_mb=0)  # in a file
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(labelled, "SPILL_FREE", 1 << 62)
        again = read_labelled(tmp_path / "parts", scale=0.5, cache_mb=0)  # read on each use
    for a, b, c in zip(kept, again, spilled):
        assert a.shape == (96, 128) and a.image.shape == a.mask.shape == (48, 64)
        assert a._image is not None and b._image is None and c._image is not None
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
        assert np.array_equal(a.image, c.image) and np.array_equal(a.mask, c.mask)
        assert all(0 <= r < 48 for r in a.rows) and all(0 <= c < 64 for c in a.cols)
        assert a.defect == bool(a.rows)  # the 2-pixel line survives the halving
    # one model, its threshold set on a validation folder (read at the scale too)
    val = _val_copy(tmp_path / "parts")
    info = train_model(tmp_path / "run", folder=tmp_path / "parts", val_folder=val, crop=32,
                       crops_per_epoch=8, epochs=1, batch_size=4, init="scratch",
                       progress=False, target_fpr=0.34, scale=0.5)
    assert info["scale"] == 0.5
    weights = info["model"]
    scorer = Scorer(weights)
    assert scorer.scale == 0.5 and Scorer("defect-3dcnn-lstm").scale == 1.0
    results = score_images([val], weights, progress=False,
                           heatmaps=tmp_path / "maps")
    assert min(abs(info["threshold"] - threshold_above(r.score)) for r in results) < 1e-9
    # the good images that set the threshold, each with the spot to look at: the box the
    # model that scored them (with a validation folder, the one written) draws around its
    # hottest cells, in the photo's own pixels (cells of 32 of them at scale 0.5)
    from deepseek.manufacturing.stream import box_from_map

    by_path = {r.path: r for r in results}
    listed = info["threshold_review"]["good_highest"]
    assert len(listed) == 3
    for e in listed:
        r = by_path[e["path"]]
        assert e["spot"] == list(box_from_map(r.cell_map, (96, 128), 0.5, 32))
        assert e["spot"][2] - e["spot"][0] + 1 in (32, 64, 96, 128)
    for r in results:
        assert r.stride == 32 and r.cell_map.shape == (3, 4)  # 48 x 64 at 16 per cell
        if r.box is not None:
            x0, y0, x1, y1 = r.box
            assert 0 <= x0 <= x1 < 128 and 0 <= y0 <= y1 < 96
        assert cv2.imread(r.heatmap).shape[:2] == (96, 128)
        d = r.to_dict()  # what score --json and batch write say the photo was scaled by
        assert d["scale"] == 0.5 and (d["width"], d["height"]) == (128, 96)
    packaged = score_images([tmp_path / "parts" / "0.png"], progress=False)[0]
    assert packaged.to_dict()["scale"] == 1.0
    ev = evaluate_scores(results, val)
    assert 0 <= ev["pixel"]["pixel_auroc"] <= 1
    assert 0 <= ev["pixel_references"]["darkness"]["pixel_auroc"] <= 1
    for bad in (2.5, 0.1, True):
        with pytest.raises(ManufacturingError, match="scale="):
            train_model(tmp_path / "run2", folder=tmp_path / "parts", scale=bad)
    with pytest.raises(ManufacturingError, match="scale applies to part images"):
        train_model(tmp_path / "run2", clips=2, scale=0.5)
    import logging

    from deepseek.manufacturing.stream import DefectStream

    with caplog.at_level(logging.WARNING):  # the stream does not scale its frames: said
        DefectStream("synthetic:?frames=2&width=64&height=48", weights)
    assert "scaled by 0.5" in caplog.text
    # the threshold stored for still photos: the stream says it keeps 0.5 unless given one
    line = ["manufacturing", "stream", "synthetic:?frames=2&width=64&height=48", "--model",
            str(weights), "--quiet"]
    res = CliRunner().invoke(build_cli(), line)
    assert res.exit_code == 0, res.output
    assert f"stores the threshold {info['threshold']:.4g}" in res.stderr
    res = CliRunner().invoke(build_cli(), [*line, "--threshold", "0.5"])
    assert res.exit_code == 0 and "stores the threshold" not in res.stderr
    res = CliRunner().invoke(build_cli(), ["manufacturing", "train", "--out",
                                           str(tmp_path / "run3"), "--scale", "0.5"])
    assert res.exit_code == 2 and "--scale and --rotate go with --folder" in res.output


def test_a_model_trained_enlarged_scores_photos_enlarged(tmp_path):
    """``--scale`` above 1 (thin cracks spanning more of a 16-pixel cell): images
    interpolated, masks widened with them, the scale stored and followed by ``score``, boxes
    and heatmaps in the photo's own pixels (cells of 16 / 1.5 of them)."""
    from deepseek.manufacturing.score import Scorer, score_images
    from deepseek.manufacturing.training import train_model

    for k in range(6):
        m = _part(tmp_path / "parts" / f"{k}.png", 800 + k,
                  ((20, 30), (110, 60)) if k % 2 else None, h=48, w=64)
        cv2.imwrite(str(tmp_path / "parts" / f"{k}_mask.png"), m)
    for item in read_labelled(tmp_path / "parts", scale=1.5):
        assert item.shape == (48, 64) and item.image.shape == item.mask.shape == (72, 96)
        assert item.defect == bool(item.rows)
        if item.defect:  # every marked pixel's place is marked at the new size
            src = cv2.imread(str(tmp_path / "parts" / f"{item.path.stem}_mask.png"), 0)
            ys, xs = np.nonzero(src)
            assert item.mask[(ys * 1.5 + 0.75).astype(int), (xs * 1.5 + 0.75).astype(int)].all()
    info = train_model(tmp_path / "run", folder=tmp_path / "parts",
                       val_folder=_val_copy(tmp_path / "parts"), crop=32, crops_per_epoch=8,
                       epochs=1, batch_size=4, init="scratch", progress=False, target_fpr=0.34,
                       scale=1.5)
    assert info["scale"] == 1.5 and Scorer(info["model"]).scale == 1.5
    results = score_images([tmp_path / "parts"], info["model"], progress=False,
                           heatmaps=tmp_path / "maps", threshold=1e-9)  # every one boxed
    for r in results:
        assert r.stride == pytest.approx(16 / 1.5) and r.cell_map.shape == (5, 6)  # 72 x 96
        x0, y0, x1, y1 = r.box
        assert 0 <= x0 <= x1 < 64 and 0 <= y0 <= y1 < 48
        assert cv2.imread(r.heatmap).shape[:2] == (48, 64) and r.to_dict()["scale"] == 1.5
    stored = score_images([tmp_path / "parts"], info["model"], progress=False)
    assert min(abs(info["threshold"] - threshold_above(r.score)) for r in stored) < 1e-9


def test_a_12_bit_camera_trains_and_scores_over_its_own_range(tmp_path, monkeypatch):
    """``--bit-depth 12``: 16-bit photos holding 12-bit data are read over 0-4095 (not as gray
    levels 0-16), in training, by the model written (stored) and by score and calibrate; a
    pixel over 4095 is refused by name; the synthetic clips take no depth."""
    from deepseek.manufacturing.calibration import calibrate
    from deepseek.manufacturing.images import to_gray
    from deepseek.manufacturing.score import Scorer, score_images
    from deepseek.manufacturing.training import train_model

    raw, eight = tmp_path / "raw", tmp_path / "eight"
    for k in range(6):
        m = _part(tmp_path / "tmp" / f"{k}.png", 900 + k,
                  ((20, 30), (110, 60)) if k % 2 else None, h=48, w=64)
        img = cv2.imread(str(tmp_path / "tmp" / f"{k}.png"), cv2.IMREAD_GRAYSCALE)
        twelve = (img.astype(np.uint16) * 16 + (k % 16)).astype(np.uint16)  # 0-4095
        for folder, pixels in ((raw, twelve), (eight, to_gray(twelve, bit_depth=12))):
            folder.mkdir(exist_ok=True)
            cv2.imwrite(str(folder / f"{k}.png"), pixels)
            cv2.imwrite(str(folder / f"{k}_mask.png"), m)
    assert cv2.imread(str(raw / "0.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    a = read_labelled(raw, bit_depth=12)
    b = read_labelled(eight)  # the same photos converted to 8 bits over their range
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
    assert read_labelled(raw)[0].image.max() <= 16  # over the 16-bit range: the problem
    kw = dict(val_folder=_val_copy(raw), crop=32, crops_per_epoch=8, epochs=1, batch_size=4,
              init="scratch", progress=False, target_fpr=0.34)
    info = train_model(tmp_path / "run", folder=raw, bit_depth=12, **kw)
    assert info["bit_depth"] == 12 and Scorer(info["model"]).bit_depth == 12
    # what score gives the 12-bit photos is what the same model gives their 8-bit copies
    on_raw = [r.score for r in score_images([raw], info["model"], progress=False)]
    on_eight = [r.score for r in score_images([eight], info["model"], progress=False)]
    assert on_raw == on_eight
    assert min(abs(info["threshold"] - threshold_above(x)) for x in on_raw) < 1e-9
    # calibrate reads them so too: it knows the images the model learnt from
    cal = calibrate(raw, info["model"], target_fpr=0.34, progress=False)
    assert cal["trained_on_images"] == 6
    # score --evaluate reads the labelled folder's photos the model's way: no 12-bit warning
    from deepseek.manufacturing import images

    monkeypatch.setattr(images, "_LOW_BITS_SAID", False)
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(raw), "--model",
                                           str(info["model"]), "--evaluate"])
    assert res.exit_code == 0 and "labels: 3 defect of 6 images" in res.stdout
    assert "under 4096" not in res.stderr and not images._LOW_BITS_SAID
    # and the stream opens its source at the model's depth unless told otherwise
    from deepseek.manufacturing.stream import DefectStream

    assert DefectStream(raw, info["model"]).source.bit_depth == 12
    assert DefectStream(raw, info["model"], source_options={"bit_depth": 16}
                        ).source.bit_depth == 16
    # the weights' ONNX export (the edge form, given by its own path) reads them so too
    export = info["onnx"]
    assert export and export.endswith("model.stream.onnx")
    assert DefectStream(raw, export).source.bit_depth == 12 == Scorer(export).bit_depth
    # a stored reading no training writes (the file changed after training) is refused by
    # name wherever the model is used, never read over another range in silence
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(info["model"]), framework="numpy") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    key = next(k for k, v in meta.items() if '"bit_depth": 12' in v)
    for field, value in (("bit_depth", 20), ("scale", 9)):
        edited = tmp_path / f"edited_{field}.safetensors"
        extra = {**json.loads(meta[key]), field: value}
        save_file(tensors, str(edited), metadata={**meta, key: json.dumps(extra)})
        msg = rf"edited_{field}\.safetensors: the stored {field} is not one training writes"
        with pytest.raises(ManufacturingError, match=msg):
            Scorer(edited)
        with pytest.raises(ManufacturingError, match=msg):
            DefectStream(raw, edited)
    over = np.full((48, 64), 4096, np.uint16)
    cv2.imwrite(str(tmp_path / "over.png"), over)
    with pytest.raises(ManufacturingError, match=r"over\.png: 16-bit pixels reach 4096, over "
                                                 r"the 12-bit range"):
        score_images([tmp_path / "over.png"], info["model"], progress=False)
    for bad in (7, 17, True):
        with pytest.raises(ManufacturingError, match="bit_depth="):
            train_model(tmp_path / "run2", folder=raw, bit_depth=bad, **kw)
    with pytest.raises(ManufacturingError, match="bit_depth applies to part images"):
        train_model(tmp_path / "run2", clips=2, bit_depth=12)
    res = CliRunner().invoke(build_cli(), ["manufacturing", "train", "--out",
                                           str(tmp_path / "run3"), "--bit-depth", "12"])
    assert res.exit_code == 2 and "--bit-depth goes with --folder or --good-only" in res.output


def test_copies_of_an_image_count_once_and_their_masks_merge(tmp_path, caplog):
    """The same photo saved under two names is one observation: read once (the first with a
    label kept), named in a warning, defect masks of the copies merged; a copy labelled good
    beside one labelled a defect is an error naming both."""
    import shutil

    from deepseek.manufacturing.labelled import copies_report, distinct_images, good_folds

    root = tmp_path / "parts"
    a = _part(root / "a.png", 1, ((10, 20), (60, 40)))
    cv2.imwrite(str(root / "a_mask.png"), a)
    shutil.copy(root / "a.png", root / "z_again.png")             # the same picture ...
    b = np.zeros_like(a)
    cv2.line(b, (50, 40), (110, 70), 255, 2)                      # ... marked elsewhere too
    cv2.imwrite(str(root / "z_again_mask.png"), b)
    for k in range(3):
        cv2.imwrite(str(root / f"g{k}_mask.png"), np.zeros_like(a))
        _part(root / f"g{k}.png", 10 + k)
    shutil.copy(root / "g1.png", root / "g1_copy.png")
    cv2.imwrite(str(root / "g1_copy_mask.png"), np.zeros_like(a))
    union = np.maximum(a, b) > 0
    for cache, room in ((2048.0, 0), (0.0, 0), (0.0, 1 << 62)):  # memory, a file, read again
        with caplog.at_level("WARNING", logger="deepseek.manufacturing.labelled"), \
                pytest.MonkeyPatch.context() as mp:
            mp.setattr(labelled, "SPILL_FREE", room)
            caplog.clear()
            items = read_labelled(root, cache_mb=cache)
        kept = {type(i._mask) for i in items}
        assert kept == {np.ndarray} if cache else {np.memmap} if not room else {type(None)}
        assert all(c._image is None for i in items for c in i.copies)  # never read again
        names = sorted(i.path.name for i in items)
        assert names == ["a.png", "g0.png", "g1.png", "g2.png"]   # 6 files, 4 pictures
        assert "2 image(s) are copies of others" in caplog.text and "z_again.png" in caplog.text
        crack = next(i for i in items if i.defect)
        np.testing.assert_array_equal(crack.mask > 0, union)      # nothing either marked lost
        assert len(crack.rows) == int(union.sum())
        report = {Path(r["kept"]).name: r for r in copies_report(items)}
        assert [Path(c).name for c in report["a.png"]["copies"]] == ["z_again.png"]
        assert report["a.png"]["masks"] == "merged" and report["g1.png"]["masks"] == "equal"
    # good-only readers set copies aside too, and say so in what the grouping did
    goods = [root / f"g{k}.png" for k in range(3)] + [root / "g1_copy.png"]
    fold, info, kept = good_folds(goods, root, 2, 0)
    assert [i.path.name for i in kept] == ["g0.png", "g1.png", "g2.png"] and len(fold) == 3
    assert [Path(c).name for c in info["copies"][0]["copies"]] == ["g1_copy.png"]
    kept = distinct_images(goods)
    assert [i.path.name for i in kept] == ["g0.png", "g1.png", "g2.png"]
    assert len(copies_report(kept)) == 1
    # a copy labelled good beside one labelled a defect: which is right is the user's call
    cv2.imwrite(str(root / "z_again_mask.png"), np.zeros_like(a))
    with pytest.raises(ManufacturingError, match="a.png and .*z_again.png are the same "
                                                 "picture.*fix the wrong label"):
        read_labelled(root)


def test_a_phone_photo_on_its_side_is_labelled_as_it_is_shown(tmp_path):
    """A camera held on its side stores the sensor's rows and an EXIF orientation; the YOLO
    coordinates and masks a labelling tool writes refer to the picture as shown (upright):
    the label lands on the crack, and a mask drawn on the shown picture fits it."""
    from PIL import Image

    shown = np.full((120, 80), 150, np.uint8)  # upright: 120 rows, 80 columns
    shown[10:14, 8:40] = 40                    # a dark crack near the top left
    exif = Image.Exif()
    exif[0x0112] = 6                           # stored turned: displayed after 90 deg CW
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    stored = np.rot90(shown, 1)                # what the sensor wrote (80 rows, 120 columns)
    Image.fromarray(np.ascontiguousarray(stored)).save(root / "images" / "p1.png", exif=exif)
    # box around the crack in the shown picture: cx, cy, w, h normalised
    (root / "labels" / "p1.txt").write_text("0 0.3 0.1 0.45 0.05\n")
    [item] = read_labelled(root / "images")
    assert item.image.shape == (120, 80) and np.array_equal(item.image, shown)
    rows, cols = np.nonzero(item.mask)
    assert 9 <= rows.min() and rows.max() <= 15 and 5 <= cols.min() and cols.max() <= 43
    # a pixel mask drawn on the shown picture (no orientation of its own) fits it
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.ascontiguousarray(stored)).save(flat / "p2.png", exif=exif)
    mask = np.zeros_like(shown)
    mask[10:14, 8:40] = 255
    cv2.imwrite(str(flat / "p2_mask.png"), mask)
    [item] = read_labelled(flat)
    assert item.defect and np.array_equal(item.mask > 0, mask > 0)


def _coco(path, images, annotations):
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "crack"}]}))


def test_a_coco_file_cut_short_is_named_not_taken_for_no_labels(tmp_path):
    """A COCO export cut short (a copy interrupted) is an error naming it, not a folder of
    images without labels."""
    root = tmp_path / "set"
    _part(root / "a.png", 1, h=40, w=50)
    _coco(root / "_annotations.coco.json",
          [{"id": 1, "file_name": "a.png", "width": 50, "height": 40}],
          [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10]}])
    js = root / "_annotations.coco.json"
    js.write_bytes(js.read_bytes()[:-40])
    with pytest.raises(ManufacturingError, match=r"_annotations.coco.json: holds \"images\" as "
                       r"a COCO annotation file does, but is not readable JSON"):
        read_labelled(root)


def test_coco_file_names_written_on_windows_match(tmp_path):
    """A COCO export made on Windows names its images with backslashes (a path relative to
    the data set, or the labeller's own absolute path): they match the images here."""
    root = tmp_path / "set"
    _part(root / "train" / "a.png", 1, h=40, w=50)
    _part(root / "train" / "b.png", 2, h=40, w=50)
    box = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10]}
    _coco(root / "_annotations.coco.json",
          [{"id": 1, "file_name": "train\\a.png", "width": 50, "height": 40},
           {"id": 2, "file_name": "C:\\Users\\qa\\line3\\b.png", "width": 50,
            "height": 40}], [box])
    items = {i.path.name: i for i in read_labelled(root)}
    assert items["a.png"].source == items["b.png"].source == "coco"
    assert items["a.png"].defect and not items["b.png"].defect


def test_coco_annotations_polygons_run_lengths_boxes_and_good_parts(tmp_path):
    """A COCO export (Roboflow's _annotations.coco.json beside the images): polygons and
    run-length masks drawn as pycocotools draws them, a box alone filled, an image with no
    annotation a good part."""
    from pycocotools import mask as cocomask

    root = tmp_path / "set"
    for name in ("a", "b", "c", "d", "e"):
        _part(root / "train" / f"{name}.png", ord(name), h=60, w=80)
    rle_mask = np.zeros((60, 80), np.uint8)
    rle_mask[20:30, 10:50] = 1
    rle = cocomask.encode(np.asfortranarray(rle_mask))
    crowd = {"size": [60, 80], "counts": [60 * 12 + 5, 60 * 3, 60 * 80 - 60 * 15 - 5]}
    images = [{"id": i, "file_name": f"{n}.png", "width": 80, "height": 60}
              for i, n in enumerate("abcde")]
    anns = [{"id": 10, "image_id": 0, "category_id": 1, "bbox": [10, 10, 20, 20],
             "segmentation": [[10, 10, 30, 10, 30, 30]]},
            {"id": 11, "image_id": 1, "category_id": 1,
             "segmentation": {"size": [60, 80], "counts": rle["counts"].decode()}},
            {"id": 12, "image_id": 2, "category_id": 1, "bbox": [50.5, 40, 10, 5]},
            {"id": 13, "image_id": 4, "category_id": 1, "iscrowd": 1, "segmentation": crowd}]
    _coco(root / "train" / "_annotations.coco.json", images, anns)
    items = {i.path.name: i for i in read_labelled(root)}
    assert {k: (i.defect, i.source) for k, i in items.items()} == {
        "a.png": (True, "coco"), "b.png": (True, "coco"), "c.png": (True, "coco"),
        "d.png": (False, "coco"), "e.png": (True, "coco")}
    a = items["a.png"].mask
    assert a[12, 25] == 1 and a[25, 12] == 0           # inside / outside the triangle
    assert np.array_equal(items["b.png"].mask, rle_mask)  # the run-length mask exactly
    c = items["c.png"].mask
    assert c.sum() == 11 * 5 and c[40:45, 50:61].all()  # the box's pixels, edges covered
    e = items["e.png"].mask  # column-major counts: from row 5 of column 12, 180 pixels
    assert e.sum() == 180 and e[5:, 12].all() and e[:, 13:15].all() and e[:5, 15].all()
    assert not e[:5, 12].any()
    assert not items["d.png"].mask.any()
    # read again from the file when over the cache: the same masks
    lazy = {i.path.name: i for i in read_labelled(root, cache_mb=0)}
    for k in items:
        assert np.array_equal(lazy[k].mask, items[k].mask), k


def test_coco_layout_with_annotations_beside_the_image_folder(tmp_path):
    _part(tmp_path / "train2017" / "0001.png", 1, h=40, w=50)
    _part(tmp_path / "val2017" / "0001.png", 2, h=30, w=50)
    _coco(tmp_path / "annotations" / "instances_train2017.json",
          [{"id": 7, "file_name": "0001.png", "width": 50, "height": 40}],
          [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 5]}])
    # the val split's file (another size) is not read for the train folder
    _coco(tmp_path / "annotations" / "instances_val2017.json",
          [{"id": 7, "file_name": "0001.png", "width": 50, "height": 30}], [])
    [item] = read_labelled(tmp_path / "train2017")
    assert item.defect and item.source == "coco" and item.mask[:5, :5].all()


def test_coco_errors_name_the_file_and_the_annotation(tmp_path):
    root = tmp_path / "s"
    _part(root / "a.png", 1, h=40, w=50)
    img = [{"id": 1, "file_name": "a.png", "width": 50, "height": 40}]
    js = root / "coco.json"
    cases = [
        ([{"id": 1, "file_name": "a.png", "width": 60, "height": 40}], [],
         r"coco.json \(a.png\): says 60x40, the image .*a.png is 50x40"),
        (img, [{"id": 5, "image_id": 1, "segmentation": [[0, 0, 51, 0, 10, 10]]}],
         r"annotation 5: a point lies outside the 50x40 image"),
        (img, [{"id": 6, "image_id": 1, "bbox": [45, 35, 10, 2]}],
         r"annotation 6: a point lies outside"),
        (img, [{"id": 7, "image_id": 9, "bbox": [0, 0, 1, 1]}],
         r"annotation 7 is of image_id 9, which the file's images do not list"),
        (img, [{"id": 8, "image_id": 1, "segmentation": [[0, 0, 5, 0]]}],
         r"annotation 8: a polygon needs an even number >= 6"),
        (img, [{"id": 9, "image_id": 1}], r"annotation 9: neither a segmentation nor a bbox"),
        (img, [{"id": 10, "image_id": 1, "segmentation": {"size": [40, 60], "counts": "x"}}],
         r"annotation 10: its run-length mask is \[40, 60\]"),
        (img, [{"id": 11, "image_id": 1, "segmentation": {"size": [40, 50], "counts": "x"}}],
         r"annotation 11: its run-length string holds 'x', outside the format"),
        (img, [{"id": 13, "image_id": 1, "segmentation": {"size": [40, 50], "counts": "0"}}],
         r"annotation 13: its run-length string covers 0 pixels, the image 2000"),
        (img, [{"id": 12, "image_id": 1, "segmentation": {"size": [40, 50],
                                                          "counts": [10, 5]}}],
         r"annotation 12: its run lengths cover 15 pixels, the image 2000"),
        ([{"id": 1, "file_name": "a.png"}], [], r"images\[0\] needs id, file_name, width"),
        ([{"id": 1, "file_name": "a.png", "width": 1e999, "height": 40}], [],
         r"images\[0\] needs id, file_name, width"),
        (img + [{"id": 2, "file_name": "./a.png", "width": 50, "height": 40}], [],
         r"a.png: listed twice in COCO files"),
    ]
    for images, anns, match in cases:
        _coco(js, images, anns)
        with pytest.raises(ManufacturingError, match=match):
            read_labelled(root)
    # an image the COCO file does not list, with no other label: an error, not a good part
    _coco(js, img, [])
    _part(root / "b.png", 2, h=40, w=50)
    with pytest.raises(ManufacturingError, match=r"b.png: not listed in the COCO file"):
        read_labelled(root)
    # other JSON files (a training report) are not COCO and are ignored
    js.unlink()
    (root / "b.png").unlink()
    (root / "training.json").write_text('{"images": 3, "threshold": 0.9}')
    with pytest.raises(ManufacturingError, match=r"a.png: no label"):
        read_labelled(root)


def test_rle_string_counts_read_what_pycocotools_writes():
    from pycocotools import mask as cocomask

    from deepseek.manufacturing.labelled import rle_string_counts

    rng = np.random.default_rng(0)
    for k in range(20):
        h, w = int(rng.integers(1, 70)), int(rng.integers(1, 70))
        m = (rng.random((h, w)) < rng.uniform(0, 1)).astype(np.uint8)
        if k % 3 == 0:
            m[:] = 0
            m[h // 3: h // 2 + 1, w // 4: w // 2 + 1] = 1  # long runs: multi-character counts
        flat = m.flatten(order="F")
        edges = np.flatnonzero(np.diff(flat)) + 1
        want = np.diff(np.r_[0, edges, flat.size]).tolist()
        if flat[0] == 1:
            want = [0] + want                          # runs start with the zeros
        got = rle_string_counts(cocomask.encode(np.asfortranarray(m))["counts"].decode())
        assert got == want, k


def _voc(path, w, h, boxes, root="annotation"):
    objs = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{a}</xmin>"
                   f"<ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
                   for n, (a, b, c, d) in boxes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<{root}><filename>{path.stem}.png</filename><size><width>{w}</width>"
                    f"<height>{h}</height><depth>1</depth></size>{objs}</{root}>")


def test_pascal_voc_files_beside_the_image_and_in_annotations(tmp_path):
    """labelImg's default output: STEM.xml beside the image, or VOC's JPEGImages/ +
    Annotations/; each object's box filled, edges included, a file with no object good."""
    root = tmp_path / "voc"
    _part(root / "JPEGImages" / "p1_a.png", 1, h=40, w=50)
    _part(root / "JPEGImages" / "p1_b.png", 2, h=40, w=50)
    _part(root / "JPEGImages" / "p2_a.png", 3, h=40, w=50)
    _voc(root / "Annotations" / "p1_a.xml", 50, 40, [("crack", (10, 5, 19, 7)),
                                                     ("scratch", (40, 30, 50, 40))])
    _voc(root / "Annotations" / "p1_b.xml", 50, 40, [])
    _voc(root / "JPEGImages" / "p2_a.xml", 50, 40, [("crack", (0, 0, 0, 0))])
    items = {i.path.name: i for i in read_labelled(root)}
    assert {k: (i.defect, i.source) for k, i in items.items()} == {
        "p1_a.png": (True, "voc"), "p1_b.png": (False, "voc"), "p2_a.png": (True, "voc")}
    m = items["p1_a.png"].mask
    assert m[5:8, 10:20].all() and m[30:, 40:].all() and m.sum() == 3 * 10 + 10 * 10
    assert items["p2_a.png"].mask.sum() == 1
    lazy = {i.path.name: i for i in read_labelled(root, cache_mb=0)}
    assert all(np.array_equal(lazy[k].mask, items[k].mask) for k in items)
    # an object ticked difficult (labelImg's checkbox, CVAT's attribute) is a defect all the
    # same: a crack hard to see is neither dropped nor trained as good surface
    hard = root / "JPEGImages" / "p2_a.xml"
    hard.write_text(hard.read_text().replace("<difficult>0</difficult>",
                                             "<difficult>1</difficult>"))
    assert "<difficult>1</difficult>" in hard.read_text()
    again = {i.path.name: i for i in read_labelled(root)}["p2_a.png"]
    assert again.defect and again.mask.sum() == 1
    for bad, match in (
            (dict(w=60, h=40, boxes=[]), r"p1_a.xml: <size> says 60x40, the image is 50x40"),
            (dict(w=50, h=40, boxes=[("crack", (10, 5, 51, 7))]),
             r"p1_a.xml: object 1 \(crack\): box \(10, 5\)-\(51, 7\) is not inside"),
            (dict(w=50, h=40, boxes=[("crack", (10, 5, 8, 7))]), r"with min <= max"),
            (dict(w=50, h=40, boxes=[("crack", ("a", 5, 8, 7))]), r"needs <bndbox> with numeric"),
            # a camera's own XML beside the photo is not a label: the photo has none
            (dict(w=50, h=40, boxes=[], root="doc"), r"p1_a.png: no label")):
        _voc(root / "Annotations" / "p1_a.xml", **bad)
        with pytest.raises(ManufacturingError, match=match):
            read_labelled(root)
    (root / "Annotations" / "p1_a.xml").write_text("<annotation><object>")
    with pytest.raises(ManufacturingError, match=r"p1_a.xml: not readable Pascal VOC XML"):
        read_labelled(root)


def test_good_parts_in_a_good_folder_count_in_the_pixel_metrics_as_empty_masks(tmp_path):
    """The same photos, labelled with masks for every image (empty for the good ones) or in
    MVTec AD's layout (good/ folder, masks for the defects only), give the same pixel
    metrics: a good part's pixels count as good, as MVTec AD's protocol counts its good test
    images (before, the folder's good parts were left out of the pixel metrics, so the two
    layouts disagreed: on KolektorSDD val with the good-parts memory, pixel AUROC 0.9699
    from the 10 cracked photos against 0.9729 from all 79)."""
    masked, mvtec = tmp_path / "masked", tmp_path / "mvtec" / "test"
    for k in range(6):
        crack = ((10 + 3 * k, 8), (50, 40 - 2 * k)) if k % 2 else None
        m = _part(masked / f"{k}.png", 700 + k, crack, h=48, w=64)
        cv2.imwrite(str(masked / f"{k}_mask.png"), m)
        kind = "crack" if crack else "good"
        _part(mvtec / kind / f"{k}.png", 700 + k, crack, h=48, w=64)
        if crack:
            (mvtec.parent / "ground_truth" / "crack").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(mvtec.parent / "ground_truth" / "crack" / f"{k}_mask.png"), m)
    pixel = []
    for root in (masked, mvtec):
        res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(root),
                                               "--evaluate", "--threshold", "0.5", "--json"])
        assert res.exit_code == 0, res.output
        pixel.append(json.loads(res.stdout)["evaluation"]["pixel"])
    assert pixel[0]["images"] == pixel[1]["images"] == 6
    assert pixel[0] == pytest.approx(pixel[1])


def test_mvtec_ad_layout_masks_by_defect_type_beside_the_split(tmp_path):
    """MVTec AD: train/good/, test/good/ and test/<type>/000.png with its mask in
    ground_truth/<type>/000_mask.png (beside test/, not beside the image's folder)."""
    root = tmp_path / "bottle"
    _part(root / "train" / "good" / "000.png", 1)
    _part(root / "test" / "good" / "000.png", 2)
    broken = _part(root / "test" / "broken_large" / "000.png", 3, ((10, 10), (40, 30)))
    crack = _part(root / "test" / "crack" / "000.png", 4, ((50, 10), (70, 30)))
    for kind, mask in (("broken_large", broken), ("crack", crack)):
        (root / "ground_truth" / kind).mkdir(parents=True)
        cv2.imwrite(str(root / "ground_truth" / kind / "000_mask.png"), mask)
    items = {i.path.relative_to(root).as_posix(): i for i in read_labelled(root / "test")}
    assert set(items) == {"test/good/000.png", "test/broken_large/000.png",
                          "test/crack/000.png"}
    for kind, mask in (("broken_large", broken), ("crack", crack)):
        it = items[f"test/{kind}/000.png"]
        assert it.source == "mask" and it.defect
        assert np.array_equal(it.mask, (mask > 0).astype(np.uint8))
    assert items["test/good/000.png"].source == "folder"
    # the whole category: ground_truth/ holds masks, not parts
    assert len(read_labelled(root)) == 4


def test_labels_are_found_with_each_folder_listed_once(tmp_path, monkeypatch):
    """Finding the masks of many images lists each folder once, not once per image (3,000
    images beside masks/: 13.7 s before, 0.46 s after); the masks found are the same,
    names that start like another's (1 and 10, 1_mask) and glob's characters included."""
    import os

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    stems = ["1", "10", "100", "[a]", "b*", "2", "3"]
    photo = (np.random.default_rng(0).random((8, 8)) * 255).astype(np.uint8)
    for i, stem in enumerate(stems):
        cv2.imwrite(str(images / f"{stem}.png"), photo)
        if stem == "2":   # its mask beside it, by its ending
            cv2.imwrite(str(images / "2_mask.png"), np.zeros((8, 8), np.uint8))
        elif stem != "3":  # 3: no mask
            cv2.imwrite(str(masks / f"{stem}.png"), np.full((8, 8), i, np.uint8))
    calls = []
    real = os.listdir
    monkeypatch.setattr(labelled.os, "listdir", lambda p: calls.append(p) or real(p))
    names = labelled.FolderNames()
    found = {stem: labelled._find_mask(images / f"{stem}.png", names) for stem in stems}
    assert found == {**{s: masks / f"{s}.png" for s in stems if s not in ("2", "3")},
                     "2": images / "2_mask.png", "3": None}
    assert len(calls) == len(set(calls))  # each folder listed once for all seven images
    assert labelled._find_mask(images / "3.png") is None  # alone: lists for itself


def _runs(mask):
    """``mask`` as Severstal's EncodedPixels: ``start length`` pairs, pixels counted from 1
    down each column (written here independently of the reader: from the column-major
    flattening, run by run)."""
    flat = (mask.T.reshape(-1) > 0).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.r_[0, flat, 0]))
    return " ".join(f"{a + 1} {b - a}" for a, b in zip(edges[0::2], edges[1::2]))


def test_a_severstal_run_length_table_labels_its_images(tmp_path, caplog):
    """Severstal's steel data set (and Kaggle's Airbus ships): ``train.csv`` beside
    ``train_images/`` lists ImageId, ClassId and EncodedPixels, runs counted down each
    column from 1; an image it does not list (or lists with no runs) is a good part; each
    row is one annotation of its class."""
    root = tmp_path / "severstal"
    images = root / "train_images"
    a = _part(images / "a.jpg", 1, ((5, 10), (60, 20)), h=32, w=64)
    b1 = _part(images / "b.jpg", 2, ((2, 2), (20, 28)), h=32, w=64)
    b3 = np.zeros_like(b1)
    b3[5:9, 40:60] = 255
    _part(images / "c.jpg", 3, h=32, w=64)   # not listed: good
    _part(images / "d.jpg", 4, h=32, w=64)   # listed with no runs: good
    (root / "train.csv").write_text(
        "\ufeffImageId,ClassId,EncodedPixels\n"
        f"a.jpg,1,{_runs(a)}\nb.jpg,1,{_runs(b1)}\nb.jpg,3,{_runs(b3)}\nd.jpg,2,\n")
    items = {i.path.name: i for i in read_labelled(images)}
    assert {n: (i.defect, i.source) for n, i in items.items()} == {
        "a.jpg": (True, "coco"), "b.jpg": (True, "coco"), "c.jpg": (False, "coco"),
        "d.jpg": (False, "coco")}
    assert np.array_equal(items["a.jpg"].mask, (a > 0).astype(np.uint8))
    assert np.array_equal(items["b.jpg"].mask, ((b1 > 0) | (b3 > 0)).astype(np.uint8))
    from deepseek.manufacturing.labelled import class_summary

    assert class_summary(list(items.values())) == {
        "class 1": {"annotations": 2, "images": 2}, "class 3": {"annotations": 1, "images": 1}}
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(images),
                                           "--evaluate", "--threshold", "0.5"])
    assert res.exit_code == 0 and "labels: 2 defect of 4 images" in res.output, res.output
    # a table that lists none of a folder's images says nothing of them
    other = tmp_path / "other" / "parts"
    _part(other / "x.png", 5, h=32, w=64)
    (tmp_path / "other" / "train.csv").write_text("ImageId,EncodedPixels\nzzz.jpg,1 3\n")
    with pytest.raises(ManufacturingError, match="x.png: no label"):
        read_labelled(other)


@pytest.mark.parametrize("runs, says", [
    ("1 2 3", "EncodedPixels is not pairs of positive whole numbers"),
    ("0 4", "EncodedPixels is not pairs of positive whole numbers"),
    ("1 x", "EncodedPixels is not pairs of positive whole numbers"),
    ("2040 10", "a run ends at pixel 2049, past the 2048 of the 64x32 image"),
])
def test_run_length_tables_that_do_not_fit_name_the_file_and_line(tmp_path, runs, says):
    images = tmp_path / "train_images"
    _part(images / "a.jpg", 1, h=32, w=64)
    (tmp_path / "train.csv").write_text(f"ImageId,ClassId,EncodedPixels\na.jpg,1,{runs}\n")
    with pytest.raises(ManufacturingError, match=f"train.csv.*{says}"):
        read_labelled(images)


def test_visa_layout_normal_and_anomaly_folders_with_masks_beside_them(tmp_path):
    """VisA (Amazon's Visual Anomaly set): Data/Images/Normal/, Data/Images/Anomaly/, and
    each anomaly's mask in Data/Masks/Anomaly/ (capital M, a PNG of the photo's stem, the
    photo a .JPG). Found, and the masks are not parts (before: every anomaly photo had "no
    label", since neither Anomaly/ nor Masks/ was known)."""
    from deepseek.manufacturing.images import list_images

    data = tmp_path / "candle" / "Data"
    _part(data / "Images" / "Normal" / "0000.JPG", 1, h=48, w=64)
    m = _part(data / "Images" / "Anomaly" / "000.JPG", 2, ((5, 5), (50, 40)), h=48, w=64)
    (data / "Masks" / "Anomaly").mkdir(parents=True)
    cv2.imwrite(str(data / "Masks" / "Anomaly" / "000.png"), (m > 0).astype(np.uint8))
    assert [p.relative_to(data).as_posix() for p in list_images(data, True)] == [
        "Images/Anomaly/000.JPG", "Images/Normal/0000.JPG"]
    items = {i.path.name: i for i in read_labelled(data / "Images")}
    assert items["0000.JPG"].source == "folder" and not items["0000.JPG"].defect
    assert items["000.JPG"].source == "mask" and items["000.JPG"].defect
    assert np.array_equal(items["000.JPG"].mask, (m > 0).astype(np.uint8))


def test_crackforest_matlab_ground_truth_beside_the_images(tmp_path, caplog):
    """CrackForest: image/001.jpg with groundTruth/001.mat, a MATLAB struct whose
    Segmentation labels 1 background and 2 crack (some files also 3, the surface a loop of
    crack encloses, and 4): label 2 is the mask, other labels are read as background and
    named in a warning; the Berkeley layout (a cell of one struct per annotator) joins the
    annotators' cracks; a segmentation of ones is a good part."""
    scipy_io = pytest.importorskip("scipy.io")
    root = tmp_path / "cf"
    h, w = 40, 60

    def struct(*segs):
        rec = np.empty((1, len(segs)), dtype=[("Segmentation", "O"), ("Boundaries", "O")])
        for k, seg in enumerate(segs):
            rec[0, k] = (seg, np.zeros_like(seg))
        return rec

    one = np.ones((h, w), np.uint8)
    crack = one.copy()
    crack[10, 5:50] = 2
    crack[20:30, 20:30] = 3  # enclosed by a loop: surface, not crack
    other = one.copy()
    other[30, 10:40] = 2
    for k in (1, 2, 3):
        _part(root / "image" / f"00{k}.png", k, h=h, w=w)
    (root / "groundTruth").mkdir()
    scipy_io.savemat(str(root / "groundTruth" / "001.mat"), {"groundTruth": struct(crack)})
    cell = np.empty((1, 2), dtype=object)  # two annotators, as the Berkeley set writes them
    cell[0, 0], cell[0, 1] = {"Segmentation": crack}, {"Segmentation": other}
    scipy_io.savemat(str(root / "groundTruth" / "002.mat"), {"groundTruth": cell})
    scipy_io.savemat(str(root / "groundTruth" / "003.mat"), {"groundTruth": struct(one)})
    with caplog.at_level(logging.WARNING):
        items = {i.path.name: i for i in read_labelled(root / "image")}
    assert set(items) == {"001.png", "002.png", "003.png"}  # the .mat files are no parts
    assert items["001.png"].source == "mask" and items["001.png"].defect
    assert np.array_equal(items["001.png"].mask, (crack == 2).astype(np.uint8))
    assert np.array_equal(items["002.png"].mask, ((crack == 2) | (other == 2)).astype(np.uint8))
    assert not items["003.png"].defect and not items["003.png"].mask.any()
    assert "labels other than 1 (background) and 2 (crack), read as background: 3 in 2 " \
           "(001.mat, 002.mat)" in caplog.text
    # the good-parts reader of a labelled folder says the same (a label-2-free file may
    # still hold a crack under another label)
    from deepseek.manufacturing.images import image_paths
    from deepseek.manufacturing.labelled import labelled_defects

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert sorted(p.name for p in labelled_defects(root, image_paths([root]))) == \
            ["001.png", "002.png"]
    assert "read as background: 3 in 2 (001.mat, 002.mat)" in caplog.text

    def refused(name, payload, match):
        folder = tmp_path / name
        _part(folder / "image" / "001.png", 1, h=h, w=w)
        (folder / "groundTruth").mkdir()
        if isinstance(payload, bytes):
            (folder / "groundTruth" / "001.mat").write_bytes(payload)
        else:
            scipy_io.savemat(str(folder / "groundTruth" / "001.mat"), payload)
        with pytest.raises(ManufacturingError, match=match):
            read_labelled(folder / "image")

    refused("from_zero", {"groundTruth": struct(crack - 1)},
            r"001\.mat: groundTruth\(1\)\.Segmentation holds labels \[0, 1, 2\]: expected "
            "whole numbers from 1")
    refused("no_struct", {"mask": crack}, r"001\.mat: no groundTruth\.Segmentation .*holds mask")
    refused("wrong_size", {"groundTruth": struct(np.ones((h, w + 1), np.uint8))},
            r"001\.mat: mask is 61x40, its image 001\.png is 60x40")
    refused("damaged", b"MATLAB 5.0 MAT-file, cut short", r"001\.mat: not a readable MATLAB")


def test_labelme_files_beside_the_image(tmp_path):
    """labelme's own JSON beside each photo: every shape type it writes drawn as it draws
    them (lines 10 px wide, points of radius 5, bitmap masks placed at their corner)."""
    import base64
    import io
    import json

    from PIL import Image

    root = tmp_path / "lm"
    _part(root / "a.png", 1, h=60, w=80)
    _part(root / "b.png", 2, h=60, w=80)
    bits = np.zeros((4, 6), np.uint8)
    bits[1:3, 2:5] = 255
    png = io.BytesIO()
    Image.fromarray(bits).save(png, format="PNG")
    shapes = [
        {"label": "crack", "shape_type": "linestrip", "points": [[5, 50], [40, 50], [40, 30]]},
        {"label": "pit", "shape_type": "point", "points": [[70, 10]]},
        {"label": "chip", "shape_type": "rectangle", "points": [[20, 5], [10, 15]]},
        {"label": "dent", "shape_type": "circle", "points": [[60, 40], [60, 43]]},
        {"label": "scratch", "shape_type": "polygon", "points": [[0, 0], [4, 0], [0, 4]]},
        {"label": "stain", "shape_type": "mask", "points": [[70, 50], [75, 53]],
         "mask": base64.b64encode(png.getvalue()).decode()}]
    doc = {"version": "5.5.0", "shapes": shapes, "imagePath": "a.png", "imageData": None,
           "imageWidth": 80, "imageHeight": 60}
    (root / "a.json").write_text(json.dumps(doc))
    (root / "b.json").write_text(json.dumps({**doc, "shapes": [], "imagePath": "b.png"}))
    items = {i.path.name: i for i in read_labelled(root)}
    assert (items["a.png"].source, items["a.png"].defect) == ("labelme", True)
    assert (items["b.png"].source, items["b.png"].defect) == ("labelme", False)
    m = items["a.png"].mask
    assert m[50, 5:41].all() and m[46:55, 20].all() and not m[40, 20]  # a 10 px line
    assert m[30:51, 40].all()                                          # its second segment
    assert m[10, 65:76].all() and not m[10, 63] and not m[16, 70]      # radius 5
    assert m[5:16, 10:21].all() and not m[4, 15]                       # corners in any order
    assert m[40, 57:64].all() and not m[40, 55]                        # radius 3
    assert m[0, 0] and m[1, 1] and not m[4, 4]                         # polygon
    assert m[51:53, 72:75].all() and not m[50, 72] and not m[51, 71]   # the bitmap
    for bad, match in (
            ({"imageWidth": 81}, r"a.json: says 81x60, the image is 80x60"),
            ({"imageWidth": "wide"}, r"a.json: imageWidth/imageHeight are not numbers"),
            ({"shapes": [{"label": "c", "shape_type": "point", "points": [[1e999, 5]]}]},
             r"shape 1 \(c, point\): a coordinate is not a number"),
            ({"shapes": [{"label": "c", "shape_type": "line", "points": [[0, 0], [81, 5]]}]},
             r"a.json: shape 1 \(c, line\): a point lies outside the 80x60 image"),
            ({"shapes": [{"label": "c", "shape_type": "ellipse", "points": [[1, 1], [2, 2]]}]},
             r"shape 1 \(c, ellipse\): 2 point\(s\) make no ellipse labelme writes"),
            ({"shapes": [{"label": "c", "shape_type": "polygon", "points": [[1, 1], [2, 2]]}]},
             r"2 point\(s\) make no polygon"),
            ({"shapes": [{"label": "c", "shape_type": "mask", "points": [[78, 58], [80, 60]],
                          "mask": shapes[-1]["mask"]}]}, r"runs past the 80x60 image")):
        (root / "a.json").write_text(json.dumps({**doc, **bad}))
        with pytest.raises(ManufacturingError, match=match):
            read_labelled(root)
    # a bitmap past Pillow's decompression-bomb limit (lowered here) is refused by name
    (root / "a.json").write_text(json.dumps(doc))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Image, "MAX_IMAGE_PIXELS", 10)
        with pytest.raises(ManufacturingError, match=r"shape 6 \(stain, mask\): Image size"):
            read_labelled(root)
    (root / "a.json").write_text('{"shapes": [')
    with pytest.raises(ManufacturingError, match=r"a.json: not a readable labelme file"):
        read_labelled(root)
    # a JSON beside the photo that is not labelme's is no label
    (root / "a.json").write_text('{"exposure_ms": 4}')
    with pytest.raises(ManufacturingError, match=r"a.png: no label"):
        read_labelled(root)


def test_a_class_that_names_a_good_part_is_refused_in_every_format_with_class_names(tmp_path):
    """Every class counts as a defect in COCO, VOC and labelme files, so a data set that
    boxes its good parts under "ok_front" or "No defect" would train them as cracks: the
    reader refuses it, naming the file, the class and the way out. A good category that no
    annotation uses (an export's placeholder) is fine, and defect names pass."""
    import json

    from deepseek.manufacturing.labelled import names_good_part

    for name in ("good", "OK", "ok_front", "No defect", "NonDefective", "no_defects",
                 "defect-free", "background", "Normal"):
        assert names_good_part(name), name
    for name in ("crack", "scratch", "def_front", "broken_large", "pit", "knock", "blocked",
                 "normality", "", None):
        assert not names_good_part(name), name

    root = tmp_path / "coco"
    _part(root / "a.png", 1, h=40, w=50)
    _part(root / "b.png", 2, h=40, w=50)
    images = [{"id": 1, "file_name": "a.png", "width": 50, "height": 40},
              {"id": 2, "file_name": "b.png", "width": 50, "height": 40}]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}]
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": 0, "name": "ok_front"}, {"id": 1, "name": "def_front"},
                          {"id": [2], "name": "good"}, "not a category"]}  # skipped
    (root / "_annotations.coco.json").write_text(json.dumps(doc))
    got = {i.path.name: i.defect for i in read_labelled(root)}   # ok_front unused: fine
    assert got == {"a.png": True, "b.png": False}
    doc["annotations"] = anns + [{"id": 7, "image_id": 2, "category_id": 0,
                                  "bbox": [0, 0, 50, 40]}]
    (root / "_annotations.coco.json").write_text(json.dumps(doc))
    with pytest.raises(ManufacturingError, match=r"_annotations.coco.json: 1 annotation\(s\) "
                       r"\(the first, 7, on b.png\) are of category 0, 'ok_front' names a good "
                       r"part.*remove those annotations, keeping the images"):
        read_labelled(root)

    voc = tmp_path / "voc"
    _part(voc / "a.png", 1, h=40, w=50)
    _voc(voc / "a.xml", 50, 40, [("crack", (1, 1, 5, 5)), ("No defect", (0, 0, 49, 39))])
    with pytest.raises(ManufacturingError, match=r"a.xml: object 2: its <name> 'No defect' "
                       r"names a good part"):
        read_labelled(voc)

    lm = tmp_path / "lm"
    _part(lm / "a.png", 1, h=40, w=50)
    (lm / "a.json").write_text(json.dumps({
        "shapes": [{"label": "good", "shape_type": "rectangle", "points": [[0, 0], [49, 39]]}],
        "imageWidth": 50, "imageHeight": 40}))
    with pytest.raises(ManufacturingError, match=r"a.json: shape 1: its label 'good' names a "
                       r"good part"):
        read_labelled(lm)


def test_copies_keep_the_one_whose_label_places_the_defect_whatever_its_format(tmp_path):
    """A photo in defect/ (no location) and its copy with a VOC box: the copy that places the
    defect is kept, whichever comes first by name."""
    import shutil

    root = tmp_path / "parts"
    _part(root / "defect" / "a.png", 1, ((10, 20), (60, 40)))
    (root / "labelled").mkdir()
    shutil.copy(root / "defect" / "a.png", root / "labelled" / "a_again.png")
    _voc(root / "labelled" / "a_again.xml", 128, 96, [("crack", (10, 20, 60, 40))])
    [item] = read_labelled(root)
    assert item.path.name == "a_again.png" and item.source == "voc"
    assert item.mask[20:41, 10:61].all() and len(item.copies) == 1


def test_train_on_coco_labels_validated_on_voc_labels(tmp_path):
    """The label formats end to end: train --folder on a COCO export, --val-folder labelled
    with labelImg's VOC files, then score --evaluate on the VOC folder."""
    images, anns = [], []
    for split, n in (("train", 6), ("val", 4)):
        for k in range(n):
            crack = ((8, 20), (56, 28)) if k % 2 else None
            _part(tmp_path / split / f"{k}.png", 100 * len(split) + k, crack, h=48, w=64)
            boxes = [("crack", (6, 18, 58, 30))] if crack else []
            if split == "val":
                _voc(tmp_path / split / f"{k}.xml", 64, 48, boxes)
                continue
            images.append({"id": k, "file_name": f"{k}.png", "width": 64, "height": 48})
            if crack:
                anns.append({"id": k, "image_id": k, "category_id": 1,
                             "segmentation": [[8, 19, 56, 27, 56, 29, 8, 21]]})
    _coco(tmp_path / "train" / "_annotations.coco.json", images, anns)
    printed: list[str] = []
    info = _train_tiny(tmp_path, printed)
    assert info["label_sources"] == ["coco"] and info["val_images"] == 4
    # which classes went in as defects, in training.json and on the screen
    assert info["defect_classes"] == {"crack": {"annotations": 3, "images": 3}}
    assert ("defect classes in the labels, each trained as a defect: crack 3 annotations on "
            "3 images") in printed[0]
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(tmp_path / "val"),
                                           "--model", str(tmp_path / "run" / "model.safetensors"),
                                           "--evaluate", "--json"])
    assert res.exit_code == 0, res.output
    ev = json.loads(res.output)["evaluation"]
    assert ev["images"] == 4 and ev["defect_images"] == 2
    assert ev["pixel"]["regions"] == 2  # the two VOC boxes, as pixel regions
