from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from deepseek.cli import build_cli
from deepseek.medical.figures import plot_froc
from deepseek.medical.metrics import (
    FP_RATES,
    FROCError,
    froc,
    read_annotations,
    read_results,
    read_scan_list,
    sensitivity_by_size_at,
    write_results,
)
from deepseek.plugins import get_registry


def nod(sid, x, y, z, d):
    return {"seriesuid": sid, "xyz": (x, y, z), "diameter_mm": d}


def cand(sid, x, y, z, p):
    return {"seriesuid": sid, "xyz": (x, y, z), "probability": p}


ANN = [nod("a", 0, 0, 0, 10), nod("a", 50, 0, 0, 6), nod("b", 0, 0, 0, 20),
       nod("c", 10, 10, 10, 4)]


def test_perfect_detector_scores_one():
    res = froc(ANN, [cand(n["seriesuid"], *n["xyz"], 0.9) for n in ANN], bootstrap=0)
    assert res.cpm == 1.0 and all(v == 1.0 for v in res.sensitivities.values())


def test_no_detections_score_zero():
    res = froc(ANN, [], scans=["a", "b", "c"], bootstrap=0)
    assert res.cpm == 0.0 and res.n_nodules == 4


def test_hit_radius_is_strict_and_in_mm():
    """The script's rule: squared distance below the squared radius."""
    ann = [nod("a", 0, 0, 0, 10)]
    assert froc(ann, [cand("a", 4.99, 0, 0, 1)], bootstrap=0).cpm == 1.0
    res = froc(ann, [cand("a", 5.0, 0, 0, 1)], bootstrap=0)
    assert res.cpm == 0.0 and res.n_false_positives == 1


def test_negative_diameters_are_10mm_in_files_and_lists(tmp_path):
    ann_csv = tmp_path / "annotations.csv"
    ann_csv.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\na,0,0,0,-1\n")
    exc_csv = tmp_path / "excluded.csv"
    exc_csv.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\na,50,0,0,-1\n")
    ann, exc = read_annotations(ann_csv), read_annotations(exc_csv)
    assert ann[0]["diameter_mm"] == -1  # kept as written
    r = froc(ann, [cand("a", 4.9, 0, 0, 0.9), cand("a", 54.9, 0, 0, 0.8)], excluded=exc,
             scans=["a"], bootstrap=0)
    assert r.cpm == 1.0 and r.n_excluded_hits == 1 and r.n_false_positives == 0
    assert r.to_dict()["protocol"]["negative_diameters_as_10mm"] == 1
    write_results([cand("a", 4.9, 0, 0, 0.9)], tmp_path / "r.csv")
    res = CliRunner().invoke(build_cli(), ["medical", "evaluate", "--ref", str(ann_csv),
                                           "--pred", str(tmp_path / "r.csv"), "--json",
                                           "--bootstrap", "0"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["cpm"] == 1.0


def test_at_most_100_marks_per_scan_count():
    ann = [nod("a", 0, 0, 0, 10)]
    # 150 false positives above the hit's 0.05: only the 100 most probable count, and the
    # nodule (151st) is cut off
    res = [cand("a", 100 + i, 0, 0, 0.1 + i / 1000) for i in range(150)]
    res.append(cand("a", 0, 0, 0, 0.05))
    r = froc(ann, res, scans=["a"], bootstrap=0)
    assert r.n_false_positives == 100 and r.marks_dropped == 51 and r.max_sensitivity == 0
    everything = froc(ann, res, scans=["a"], bootstrap=0, max_marks=None)
    assert everything.n_false_positives == 150 and everything.max_sensitivity == 1.0


def test_the_scan_list_is_the_fp_divisor(tmp_path, caplog):
    ann = [nod("a", 0, 0, 0, 10)]
    res = [cand("a", 0, 0, 0, 0.5), cand("a", 90, 0, 0, 0.9)]
    with caplog.at_level("WARNING"):
        inferred = froc(ann, res, bootstrap=0)
    assert "no scan list" in caplog.text and inferred.n_scans == 1
    # an eighth scan with no nodule and no candidate halves... the FP rate over 8 scans
    listed = froc(ann, res, scans=[f"{c}" for c in "abcdefgh"], bootstrap=0)
    assert listed.n_scans == 8 and listed.sensitivities[0.125] == 1.0
    assert inferred.sensitivities[0.125] == 0.0  # one FP per scan over one scan
    lst = tmp_path / "seriesuids.csv"
    lst.write_text("seriesuid\na\nb\n\n")
    assert read_scan_list(lst) == ["a", "b"]
    lst.write_text("a\nb\na\n")
    with pytest.raises(FROCError, match="listed twice: a"):
        read_scan_list(lst)


def _official_cpm(ann, exc, res, scans, max_marks=100):
    """The official evaluation, written here from its documented rules: candidates per scan
    capped at max_marks (probability above the (max_marks+1)-th highest), hits when the
    squared distance is below the squared radius (negative diameters as 10 mm), a hit on an
    excluded finding removes the candidate, one entry per nodule at its best probability
    (missed nodules left out of the ROC but in the denominator), scikit-learn's roc_curve,
    FPs per scan = FP rate x number of FPs / scans, numpy.interp on 10,001 rates from 1/8 to
    8, each rate read at the nearest grid point."""
    from sklearn.metrics import roc_curve

    gt, prob, total = [], [], 0
    for sid in scans:
        marks = [r for r in res if r["seriesuid"] == sid]
        if len(marks) > max_marks:
            cut = sorted((m["probability"] for m in marks), reverse=True)[max_marks]
            marks = [m for m in marks if m["probability"] > cut][:max_marks]
        left = list(range(len(marks)))
        findings = [(a, True) for a in ann if a["seriesuid"] == sid] + \
            [(e, False) for e in exc if e["seriesuid"] == sid]
        for f, included in findings:
            d = f["diameter_mm"] if f["diameter_mm"] >= 0 else 10.0
            hits = [i for i, m in enumerate(marks)
                    if sum((a - b) ** 2 for a, b in zip(f["xyz"], m["xyz"])) < (d / 2) ** 2]
            for i in hits:
                if i in left:
                    left.remove(i)
            if included:
                total += 1
                if hits:
                    gt.append(1)
                    prob.append(max(marks[i]["probability"] for i in hits))
        for i in left:
            gt.append(0)
            prob.append(marks[i]["probability"])
    fpr, tpr, _ = roc_curve(gt, prob)
    fps = fpr * (len(gt) - sum(gt)) / len(scans)
    sens = tpr * sum(gt) / total
    grid = np.linspace(0.125, 8, 10001)
    itp = np.interp(grid, fps, sens)
    return float(np.mean([itp[np.abs(grid - r).argmin()] for r in FP_RATES]))


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_official_evaluation(seed):
    rng = np.random.default_rng(seed)
    scans = [f"1.2.{i}" for i in range(int(rng.integers(8, 20)))]
    ann, exc, res = [], [], []
    for sid in scans[:-2]:  # the last two scans: no nodules (one has no candidates either)
        for _ in range(int(rng.integers(0, 4))):
            c = rng.uniform(-150, 150, 3)
            d = float(rng.choice([-1.0, rng.uniform(3, 30)], p=[0.1, 0.9]))
            ann.append(nod(sid, *c, d))
            if rng.random() < 0.7:  # a hit near the centre
                res.append(cand(sid, *(c + rng.normal(0, 1, 3)), float(rng.random())))
        if rng.random() < 0.3:
            c = rng.uniform(-150, 150, 3)
            exc.append(nod(sid, *c, -1.0))
            res.append(cand(sid, *(c + 1), float(rng.random())))
    n_fp = {sid: int(rng.integers(0, 30)) for sid in scans[:-1]}
    n_fp[scans[0]] = 130  # beyond the 100-mark cap
    for sid, n in n_fp.items():
        res += [cand(sid, *rng.uniform(300, 400, 3), float(rng.random())) for _ in range(n)]
    ours = froc(ann, res, exc, scans=scans, bootstrap=0)
    assert ours.cpm == pytest.approx(_official_cpm(ann, exc, res, scans), abs=1e-4)
    assert ours.marks_dropped > 0
    exact = froc(ann, res, exc, scans=scans, bootstrap=0, reading="exact")
    assert exact.n_false_positives == ours.n_false_positives  # only the reading differs


def test_hits_on_excluded_findings_change_nothing():
    exc = [nod("a", 100, 100, 100, 8)]
    base = froc(ANN, [cand("a", 0, 0, 0, 0.9)], scans=["a", "b", "c"], bootstrap=0)
    more = froc(ANN, [cand("a", 0, 0, 0, 0.9), cand("a", 101, 100, 100, 0.99)], excluded=exc,
                scans=["a", "b", "c"], bootstrap=0)
    assert more.cpm == base.cpm and more.n_false_positives == 0 and more.n_excluded_hits == 1
    # without the exclusion list the same candidate is a false positive
    worse = froc(ANN, [cand("a", 0, 0, 0, 0.9), cand("a", 101, 100, 100, 0.99)],
                 scans=["a", "b", "c"], bootstrap=0)
    assert worse.n_false_positives == 1


def test_duplicate_hits_count_once_with_the_highest_probability():
    ann = [nod("a", 0, 0, 0, 10)]
    res = froc(ann, [cand("a", 1, 0, 0, 0.2), cand("a", 0, 1, 0, 0.8), cand("a", 0, 0, 1, 0.5),
                     cand("a", 90, 0, 0, 0.5)], bootstrap=0)
    assert res.n_false_positives == 1
    assert res.n_true_positives == 3
    # the FP (0.5) scores below the nodule's best hit (0.8): sensitivity 1 at 0 FPs
    assert res.sensitivities[0.125] == 1.0


def test_hand_built_case_with_known_sensitivities():
    # 4 scans, 4 nodules; candidates sorted by probability:
    #  0.9 TP(n1)  0.8 FP  0.7 TP(n2)  0.6 FP  0.5 FP  0.4 TP(n3)  (n4 missed)
    ann = [nod("s1", 0, 0, 0, 10), nod("s2", 0, 0, 0, 10), nod("s3", 0, 0, 0, 10),
           nod("s4", 0, 0, 0, 10)]
    res = [cand("s1", 0, 0, 0, 0.9), cand("s1", 99, 0, 0, 0.8), cand("s2", 0, 0, 0, 0.7),
           cand("s3", 99, 0, 0, 0.6), cand("s4", 99, 0, 0, 0.5), cand("s3", 0, 0, 0, 0.4)]
    r = froc(ann, res, bootstrap=0, reading="exact")
    # curve points (FP/scan, sensitivity): (0,0) (0,.25) (.25,.25) (.25,.5) (.5,.5) (.75,.5)
    # (.75,.75); beyond: .75
    np.testing.assert_allclose(r.curve_fps, [0, 0, .25, .25, .5, .75, .75])
    np.testing.assert_allclose(r.curve_sens, [0, .25, .25, .5, .5, .5, .75])
    expected = {0.125: 0.25, 0.25: 0.5, 0.5: 0.5, 1: 0.75, 2: 0.75, 4: 0.75, 8: 0.75}
    # where the curve reaches an x it rises vertically: the highest sensitivity there counts
    for rate, s in expected.items():
        assert r.sensitivities[rate] == pytest.approx(s), rate
    assert r.cpm == pytest.approx(np.mean(list(expected.values())))
    assert r.max_sensitivity == 0.75
    # the script's reading interpolates on its grid: here the same values within 1e-3
    grid = froc(ann, res, bootstrap=0)
    for rate, s in expected.items():
        assert grid.sensitivities[rate] == pytest.approx(s, abs=1e-3), rate


def test_bootstrap_interval_brackets_the_cpm():
    rng = np.random.default_rng(0)
    ann, res = [], []
    for s in range(30):
        sid = f"s{s}"
        ann.append(nod(sid, 0, 0, 0, 10))
        res.append(cand(sid, 0, 0, 0, float(rng.uniform(0.3, 1))))
        res.append(cand(sid, 80, 0, 0, float(rng.uniform(0, 0.7))))
    r = froc(ann, res, bootstrap=300)
    assert r.ci95[0] <= r.cpm <= r.ci95[1] and r.ci95[0] < r.ci95[1]


def test_size_bins():
    ann = [nod("a", 0, 0, 0, 4), nod("a", 50, 0, 0, 8), nod("a", 100, 0, 0, 20)]
    res = [cand("a", 50, 0, 0, 0.9), cand("a", 100, 0, 0, 0.2), cand("a", 0, 90, 0, 0.5)]
    by = sensitivity_by_size_at(ann, res, 0.0)  # threshold above the FP's 0.5
    assert by == {"3-6mm": 0.0, "6-10mm": 1.0, "10-30mm": 0.0}


def test_csv_round_trip_cli_and_plot(tmp_path):
    ann_csv = tmp_path / "annotations.csv"
    ann_csv.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n"
                       "a,0,0,0,10\nb,5,5,5,6\n")
    write_results([cand("a", 0, 0, 0, 0.9), cand("b", 50, 0, 0, 0.3)], tmp_path / "r.csv")
    assert len(read_annotations(ann_csv)) == 2 and len(read_results(tmp_path / "r.csv")) == 2
    res = CliRunner().invoke(build_cli(), ["medical", "evaluate", "--ref", str(ann_csv),
                                           "--pred", str(tmp_path / "r.csv"), "--json",
                                           "--plot", str(tmp_path / "froc.png")])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)  # the missing scan list is a warning on stderr
    assert "no scan list" in res.stderr
    assert data["cpm"] == pytest.approx(np.mean([0.5] * 7))
    assert (tmp_path / "froc.png").is_file()
    # the core command computes the same registered metric from the same files
    res = CliRunner().invoke(build_cli(), ["evaluate", "luna16-froc", "--pred",
                                           str(tmp_path / "r.csv"), "--ref", str(ann_csv),
                                           "-o", "bootstrap=0", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["result"]["cpm"] == pytest.approx(data["cpm"])
    r = froc(read_annotations(ann_csv), read_results(tmp_path / "r.csv"), bootstrap=0)
    plot_froc(r, tmp_path / "f2.png")
    assert sorted(FP_RATES) == list(FP_RATES)


def test_bad_csvs(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("seriesuid,coordX,coordY\na,1,2\n")
    with pytest.raises(FROCError, match="missing column.*coordZ"):
        read_annotations(p)
    # a spreadsheet's CSV (a byte-order mark, Windows line ends) reads as without them
    p.write_bytes("\ufeffseriesuid,coordX,coordY,coordZ,diameter_mm\r\na,1,2,3,6\r\n"
                  .encode())
    assert len(read_annotations(p)) == 1
    p.write_text("seriesuid,coordX,coordY,coordZ,probability\na,1,2,x,0.5\n")
    with pytest.raises(FROCError, match="line 2"):
        read_results(p)
    with pytest.raises(FROCError, match="no such file"):
        read_results(tmp_path / "none.csv")
    with pytest.raises(FROCError, match="not evaluated"):
        froc(ANN, [cand("zzz", 0, 0, 0, 1)], scans=["a"], bootstrap=0)


def test_metric_registered():
    m = get_registry("metric").get("luna16-froc")
    out = m([cand("a", 0, 0, 0, 0.9)], [nod("a", 0, 0, 0, 10)], bootstrap=0)
    assert out["cpm"] == 1.0


def test_a_results_csv_that_fails_half_way_leaves_the_one_before(tmp_path):
    """The results CSV is written whole and renamed into place: a write that fails half way
    (here a candidate without its coordinates; on a line, a full disk) leaves the file there
    before as it was, and no half table."""
    path = tmp_path / "r.csv"
    write_results([cand("a", 4.9, 0, 0, 0.9)], path)
    before = path.read_text()
    with pytest.raises(KeyError):
        write_results([cand("a", 1, 0, 0, 0.5), {"seriesuid": "b", "probability": 0.2}], path)
    assert path.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]
