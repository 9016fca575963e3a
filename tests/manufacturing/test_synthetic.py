"""The synthetic line: reproducible frames, truthful ground truth, video + CSV round trip."""

from __future__ import annotations

import numpy as np
import pytest

from deepseek.manufacturing.errors import ManufacturingError, TruthFileError
from deepseek.manufacturing.synthetic import (
    TRUTH_COLUMNS,
    SyntheticLine,
    read_truth,
    write_video,
)


def _line(**kw):
    opts = {"seed": 11, "frames": 40, "width": 160, "height": 128, "crack_spacing_mm": 8.0,
            "crack_width_mm": (0.4, 0.5), "first_crack_mm": 5.0}
    opts.update(kw)
    return SyntheticLine(**opts)


def test_frames_are_reproducible_and_random_access():
    a, b = _line(), _line()
    assert np.array_equal(a.frame(17), b.frame(17))
    assert not np.array_equal(a.frame(17), _line(seed=12).frame(17))
    assert a.frame(3).dtype == np.uint8 and a.frame(3).shape == (128, 160)
    with pytest.raises(IndexError):
        a.frame(40)


def test_truth_marks_dark_thin_cracks_where_they_are():
    line = _line()
    rows = [line.truth(i) for i in range(len(line))]
    defect = [r for r in rows if r["defect"]]
    assert defect, "the line should show a crack"
    for r in defect:
        assert 0.4 <= r["width_mm"] <= 0.5 and r["visible_mm"] >= 2.0
        assert 0 <= r["x0"] <= r["x1"] < 160 and 0 <= r["y0"] <= r["y1"] < 128
        img = line.frame(r["frame"]).astype(float)
        mask = line.crack_mask(r["frame"])
        assert mask.any()
        ys, xs = np.nonzero(mask)
        assert r["x0"] <= xs.min() + 2 and xs.max() - 2 <= r["x1"]
        # the crack is darker than the surface around it
        assert img[mask].mean() < 0.85 * img[~mask].mean()
    clean = [r for r in rows if not r["defect"] and not r["partial"]]
    for r in clean:
        assert not line.crack_mask(r["frame"]).any() and r["x0"] == -1


def test_no_cracks_when_spacing_is_infinite():
    line = _line(crack_spacing_mm=float("inf"))
    assert line.cracks == []
    assert not any(line.truth(i)["defect"] or line.truth(i)["partial"] for i in range(40))


def test_orientation_and_branching_are_controlled():
    straight = _line(crack_angle_deg=(90.0, 90.0), branch_prob=0.0, crack_length_mm=(8, 8))
    for c in straight.cracks:
        assert len(c.paths) == 1
        d = c.paths[0][-1] - c.paths[0][0]
        assert abs(d[1]) > 3 * abs(d[0])  # runs along the motion (y)
    across = _line(crack_angle_deg=(0.0, 0.0), crack_length_mm=(8, 8))
    for c in across.cracks:
        d = c.paths[0][-1] - c.paths[0][0]
        assert abs(d[0]) > 3 * abs(d[1])
    with pytest.raises(ManufacturingError, match="branch_prob"):
        _line(branch_prob=1.0)


def test_crack_mask_cells_match_the_model_grid():
    line = _line()
    f = next(r["frame"] for r in (line.truth(i) for i in range(40)) if r["defect"])
    cells = line.crack_mask(f, cell=16)
    assert cells.shape == (8, 10) and cells.any()


@pytest.mark.parametrize("ext", [".avi", ".mp4"])
def test_video_and_truth_round_trip(tmp_path, ext):
    import cv2

    line = _line(frames=12)
    video, truth = write_video(tmp_path / f"line{ext}", line, progress=False)
    assert truth.name == f"line{ext}.truth.csv"
    assert truth.read_text().splitlines()[0] == ",".join(TRUTH_COLUMNS)
    rows = read_truth(truth)
    assert [r["frame"] for r in rows] == list(range(12))
    assert [r["defect"] for r in rows] == [line.truth(i)["defect"] for i in range(12)]
    cap = cv2.VideoCapture(str(video))
    n, err = 0, []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        err.append(np.abs(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(float)
                          - line.frame(n)).mean())
        n += 1
    assert n == 12
    assert max(err) < 4.0  # lossy codecs, but close to what was rendered


def test_bad_config_and_truth_files(tmp_path):
    with pytest.raises(ManufacturingError, match="surface"):
        SyntheticLine(surface="glass")
    with pytest.raises(ManufacturingError, match="16x16"):
        SyntheticLine(width=8)
    with pytest.raises(ManufacturingError, match="extension"):
        write_video(tmp_path / "x.gif", _line(frames=2))
    with pytest.raises(TruthFileError, match="no such"):
        read_truth(tmp_path / "none.csv")
    (tmp_path / "t.csv").write_text("frame,flag\n0,1\n")
    with pytest.raises(TruthFileError, match="missing column"):
        read_truth(tmp_path / "t.csv")
    (tmp_path / "t.csv").write_text("frame,defect\n0,yes\n")
    with pytest.raises(TruthFileError, match="line 2"):
        read_truth(tmp_path / "t.csv")
