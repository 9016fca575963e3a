"""Defect metrics on hand-built cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deepseek.manufacturing.metrics import event_metrics, frame_metrics
from deepseek.manufacturing.stream import DefectEvent, latency_percentiles


def _truth(flags, partial=(), widths=None, ids=None):
    rows = []
    for i, f in enumerate(flags):
        rows.append({"frame": i, "defect": int(f), "partial": int(i in partial),
                     "width_mm": (widths or {}).get(i, 0.3 if f else 0.0),
                     "crack_ids": (ids or {}).get(i, [0] if f else [])})
    return rows


def test_frame_recall_fdr_and_partial_frames_left_out():
    #          0  1  2  3  4  5  6  7  8  9
    truth = _truth([0, 0, 1, 1, 1, 1, 0, 0, 0, 0], partial={1, 6})
    scores = [0.9, 0.9, 0.8, 0.2, 0.7, 0.6, 0.9, 0.1, 0.1, 0.1]
    m = frame_metrics(scores, truth, 0.5)
    assert m["defect_frames"] == 4 and m["clean_frames"] == 4 and m["partial_frames"] == 2
    assert m["recall"] == pytest.approx(3 / 4)          # frame 3 missed
    assert m["false_detection_rate"] == pytest.approx(1 / 4)  # frame 0; 1 and 6 are partial
    assert m["false_detections"] == 1 and m["missed"] == 1


def test_perfect_and_empty_detectors():
    truth = _truth([0, 1, 1, 0])
    perfect = frame_metrics([0, 1, 1, 0], truth)
    assert perfect["recall"] == 1.0 and perfect["false_detection_rate"] == 0.0
    none = frame_metrics([0, 0, 0, 0], truth)
    assert none["recall"] == 0.0 and none["false_detection_rate"] == 0.0
    assert math.isnan(frame_metrics([0, 0], _truth([0, 0]))["recall"])


def test_recall_by_width_bins_and_min_width():
    truth = _truth([1, 1, 1, 1], widths={0: 0.15, 1: 0.25, 2: 0.25, 3: 0.7})
    m = frame_metrics([0, 1, 0, 1], truth)
    bins = m["recall_by_width_mm"]
    assert bins["0.1-0.2"] == {"frames": 1, "recall": 0.0}
    assert bins["0.2-0.3"] == {"frames": 2, "recall": 0.5}
    assert bins["0.3-0.5"] == {"frames": 0, "recall": None}
    assert bins["0.5-1"] == {"frames": 1, "recall": 1.0}
    assert frame_metrics([0, 1, 0, 1], truth, min_width_mm=0.2)["recall"] == pytest.approx(2 / 3)


def test_dropped_frames_count_as_not_flagged():
    truth = _truth([1, 1, 1, 0])
    m = frame_metrics((np.array([0, 2, 3]), np.array([0.9, 0.9, 0.1])), truth)
    assert m["recall"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="frame_indices"):
        frame_metrics([0.9, 0.9], truth)


def test_event_recall_and_false_alarms():
    flags = [0] * 30
    ids = {}
    for f in range(5, 10):
        flags[f], ids[f] = 1, [0]
    for f in range(20, 24):
        flags[f], ids[f] = 1, [1]
    truth = _truth(flags, ids=ids)
    ev = [DefectEvent(frame=6, time_s=0.0, score=0.9, box=None, width_mm=None, end_frame=9),
          DefectEvent(frame=15, time_s=0.0, score=0.9, box=None, width_mm=None, end_frame=15)]
    m = event_metrics(ev, truth, slack=2)
    assert m["cracks"] == 2 and m["cracks_caught"] == 1 and m["event_recall"] == 0.5
    assert m["events"] == 2 and m["false_alarms"] == 1
    m = event_metrics([(21, 25)], truth, slack=2)
    assert m["cracks_caught"] == 1 and m["false_alarms"] == 0


def test_a_truth_labelled_frame_by_frame_counts_each_run_of_defect_frames_as_a_crack():
    """A recording's truth with frame and defect alone (no crack ids): each run of
    consecutive defect frames is one crack, a partial frame does not break a run, a clean
    frame or a gap in the numbering does; events are matched to those runs."""
    from deepseek.manufacturing.metrics import crack_spans

    #        0  1  2  3  4  5  6  7  8  9 10 11 12
    flags = [0, 1, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 0]
    truth = [{"frame": i, "defect": f, "partial": int(i == 7), "width_mm": 0.0}
             for i, f in enumerate(flags)]
    truth[7]["defect"] = 0          # 5, 6, (7 partial), then 8 clean
    truth[8]["defect"] = 1          # ... so 5-8 is one run: the partial frame joins it
    del truth[10]                   # frame 10 missing: 11 is not part of the run before
    truth.append({"frame": 11, "defect": 1, "partial": 0, "width_mm": 0.0})
    truth.sort(key=lambda r: r["frame"])
    spans = crack_spans(list(reversed(truth)))  # rows in any order
    assert [(s["first"], s["last"]) for s in spans.values()] == [(1, 2), (5, 8), (11, 11)]
    m = event_metrics([(2, 3), (6, 9), (20, 22)], truth, slack=1)
    assert m["cracks"] == 3 and m["cracks_caught"] == 2 and m["false_alarms"] == 1
    # with crack ids the ids rule, as before
    assert list(crack_spans(_truth([0, 1, 1, 0, 1], ids={1: [4], 2: [4], 4: [4]}))) == [4]


def test_frames_are_matched_by_their_number_not_their_row(tmp_path):
    """A truth numbered from 1, with a gap, in any order: each scored frame is judged by the
    row of its own number; a frame the truth has no row for is counted, one listed twice
    refused with its line."""
    from deepseek.manufacturing.errors import TruthFileError
    from deepseek.manufacturing.synthetic import read_truth

    path = tmp_path / "truth.csv"
    #            frame: defect     (frame 4 missing: not labelled)
    path.write_text("frame,defect\n3,1\n1,0\n2,1\n5,0\n")
    truth = read_truth(path)
    idx = np.array([0, 1, 2, 3, 4, 5])
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.9, 0.7])   # frame 0 and 4 have no row
    m = frame_metrics((idx, scores), truth)
    assert (m["defect_frames"], m["clean_frames"]) == (2, 2)
    assert m["recall"] == 0.5                  # frame 2 flagged, frame 3 missed
    assert m["false_detection_rate"] == 0.5    # frame 5 flagged, frame 1 not
    assert m["frames_without_truth"] == 2 and m["truth_frames_not_scored"] == 0
    m = frame_metrics((idx[:3], scores[:3]), truth)      # frames 3 and 5 never scored
    assert m["truth_frames_not_scored"] == 2 and m["recall"] == 0.5
    assert frame_metrics({2: 0.9, 3: 0.9}, truth)["recall"] == 1.0
    assert m["recall_by_width_mm"] == {}  # no widths given: no width bins
    # a spreadsheet's CSV: a byte-order mark and Windows line ends
    path.write_bytes("\ufeffframe,defect\r\n1,0\r\n2,1\r\n".encode())
    assert [(r["frame"], r["defect"]) for r in read_truth(path)] == [(1, 0), (2, 1)]
    path.write_text("frame,defect\n1,0\n2,1\n1,1\n")
    with pytest.raises(TruthFileError, match=r"line 4: frame 1 again \(first on line 2\)"):
        read_truth(path)


def test_a_truth_and_scores_saved_by_a_spreadsheet_in_a_decimal_comma_locale_read_the_same(
        tmp_path):
    """A spreadsheet in a locale that writes 0,5 saves its CSV with semicolons (and a
    byte-order mark); a tab-separated export is read too. Before, such a truth was refused
    as "missing column(s) frame, defect" (its header read as one column)."""
    from deepseek.manufacturing.metrics import read_frame_scores
    from deepseek.manufacturing.synthetic import read_truth

    want = [(0, 0, 0.0, []), (1, 1, 0.25, [1, 2]), (2, 1, 1.5, [2])]
    comma = tmp_path / "comma.csv"
    comma.write_text('frame,defect,width_mm,crack_ids\n0,0,0,\n1,1,0.25,1;2\n2,1,1.5,2\n')
    semi = tmp_path / "semi.csv"
    semi.write_bytes('\ufeffframe;defect;width_mm;crack_ids\r\n0;0;0;\r\n1;1;0,25;"1;2"\r\n'
                     '2;1;1,5;2\r\n'.encode())
    tab = tmp_path / "tab.tsv"
    tab.write_text("frame\tdefect\twidth_mm\tcrack_ids\n0\t0\t0\t\n1\t1\t0.25\t1;2\n"
                   "2\t1\t1.5\t2\n")
    for path in (comma, semi, tab):
        got = [(r["frame"], r["defect"], r["width_mm"], r["crack_ids"]) for r in read_truth(path)]
        assert got == want, path.name
    scores = tmp_path / "scores.csv"
    scores.write_bytes("\ufeffframe;score\r\n0;0,125\r\n1;0,75\r\n".encode())
    idx, sc = read_frame_scores(scores)
    assert idx.tolist() == [0, 1] and sc.tolist() == [0.125, 0.75]


def test_latency_percentiles():
    lat = latency_percentiles(np.arange(1, 101) / 1000.0)
    assert lat["p50"] == pytest.approx(50.5) and lat["p99"] == pytest.approx(99.01)
    assert lat["max"] == 100.0 and latency_percentiles(np.array([])) == {}


def test_the_threshold_rule_keeps_the_rate_and_says_when_it_cannot_resolve_it():
    """``lowest_threshold`` flags at most the target share of good scores (the memory, trained
    models and ``calibrate`` share it); ``too_few_good`` says when the good images are too
    few to show that rate at all."""
    from deepseek.manufacturing.metrics import lowest_threshold, too_few_good

    good = np.random.default_rng(0).random(278)
    for fpr in (0.003, 0.01, 0.05):
        thr = lowest_threshold(good, fpr)
        flagged = int((good >= thr).sum())
        assert flagged <= fpr * len(good) and flagged == math.floor(fpr * len(good))
    assert lowest_threshold(good[:10], 0.01) > good[:10].max()  # above every one of them
    assert too_few_good(100, 0.01) is None and too_few_good(334, 0.003) is None
    assert too_few_good(5, 0.0) is None  # no false alarm allowed: nothing to resolve
    msg = too_few_good(99, 0.01)
    assert msg is not None and "99 good images" in msg and "it needs 100" in msg
    assert "too few to resolve" in too_few_good(278, 0.003)


def test_the_threshold_holds_clear_of_the_rounding_of_scoring_again():
    """The threshold above the highest good score it may not flag lies above it by more than
    rounding moves a score when the photo is scored again with another thread count or
    runtime (KolektorSDD: up to 8e-6 logits, 4.5e-7 in probability), and by so little that a
    score 0.01 logits higher is flagged; for probabilities it stays under 1, for other scores
    (patch distances) it is relative."""
    from deepseek.manufacturing.metrics import lowest_threshold, threshold_above

    def logit(p):
        return math.log(p / (1 - p))

    def prob(x):
        return 1 / (1 + math.exp(-x))

    for top in (1e-6, 0.3, 0.9894257903387031, 0.999999):
        thr = lowest_threshold([0.1 * top, top], 0.0)
        assert thr == threshold_above(top) < 1.0
        assert prob(logit(top) + 8e-5) < thr <= prob(logit(top) + 0.01)
    for top in (1.7, 40.0):  # a patch distance
        assert top * (1 + 1e-6) < lowest_threshold([1.0, top], 0.0) <= top * (1 + 1e-4)
    assert threshold_above(1.0) > 1.0 and threshold_above(0.0) > 0.0  # at least one ulp


def test_the_threshold_review_names_the_images_that_set_the_operating_point():
    from deepseek.manufacturing.metrics import threshold_review

    paths = [f"p{i}.png" for i in range(9)]
    scores = [0.1, 0.95, 0.3, 0.8, 0.2, 0.05, 0.9, 0.4, 0.7]
    labels = [0, 0, 0, 0, 1, 1, 1, 1, 0]
    r = threshold_review(paths, scores, labels, 0.85, n=3)
    # the good images scored highest, highest first; the one over the threshold is flagged
    assert [(e["path"], e["flagged"]) for e in r["good_highest"]] == [
        ("p1.png", True), ("p3.png", False), ("p8.png", False)]
    assert r["good_highest"][0]["score"] == 0.95
    # the defects under the threshold, lowest first; the one it catches is not named
    assert [e["path"] for e in r["defects_missed"]] == ["p5.png", "p4.png", "p7.png"]
    assert not any(e["flagged"] for e in r["defects_missed"])
    # n bounds both lists; all good images: no defects to name
    r = threshold_review(paths, scores, [0] * 9, 0.85, n=2)
    assert len(r["good_highest"]) == 2 and r["defects_missed"] == []
    with pytest.raises(ValueError, match="9 paths, 8 scores"):
        threshold_review(paths, scores[:8], labels[:8], 0.5)
