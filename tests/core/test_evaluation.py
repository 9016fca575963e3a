"""Metrics drive evaluation: `deepseek evaluate METRIC --pred --ref` on each plugin's files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import deepseek
from deepseek import hookimpl
from deepseek.cli import build_cli
from deepseek.evaluation import MetricError, evaluate_files, load_array
from deepseek.plugins import temporary_plugin


def _evaluate(*args):
    res = CliRunner().invoke(build_cli(), ["evaluate", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)["result"]


def test_tick_classification_from_npy_and_csv(tmp_path):
    logits = np.array([[3, 1, 0], [0, 2, 1], [0, 0, 5], [4, 0, 0]], np.float32)
    labels = np.array([0, 1, 2, 2])
    np.save(tmp_path / "pred.npy", logits)
    (tmp_path / "ref.csv").write_text("label\n" + "\n".join(map(str, labels)) + "\n")
    out = _evaluate("tick-classification", "--pred", str(tmp_path / "pred.npy"),
                    "--ref", str(tmp_path / "ref.csv"))
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["majority_baseline"] == pytest.approx(0.5)
    # class indices instead of scores give the same figures, without the AUC scores need
    (tmp_path / "classes.json").write_text(json.dumps([0, 1, 2, 0]))
    same = evaluate_files("tick-classification", tmp_path / "classes.json", tmp_path / "ref.csv")
    assert same == {k: v for k, v in out.items() if not k.startswith("auc_")}
    assert out["auc_ovr"] == pytest.approx((2 / 3 + 1.0 + 0.625) / 3)
    np.save(tmp_path / "short.npy", logits[:3])
    with pytest.raises(deepseek.DeepSeekError, match="3 predictions for 4 labels"):
        evaluate_files("tick-classification", tmp_path / "short.npy", tmp_path / "ref.csv")


def test_defect_events_and_frames_from_stream_files(tmp_path):
    truth = tmp_path / "truth.csv"
    rows = ["frame,defect,partial,x0,y0,x1,y1,width_mm,visible_mm,crack_ids"]
    for f in range(20):
        crack = 1 if 5 <= f <= 9 else 2 if 14 <= f <= 16 else 0
        rows.append(f"{f},{int(crack > 0)},0,-1,-1,-1,-1,{0.3 if crack else 0},"
                    f"{5 if crack else 0},{crack if crack else ''}")
    truth.write_text("\n".join(rows) + "\n")
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(r) for r in [
        {"event": "defect", "frame": 6}, {"event": "clear", "frame": 10, "start_frame": 6},
        {"event": "defect", "frame": 0}, {"event": "clear", "frame": 1, "start_frame": 0},
        {"event": "source_ended_early", "frame": 19},  # a fault record, not an event
    ]) + "\n")
    out = _evaluate("defect-events", "--pred", str(events), "--ref", str(truth))
    assert out["cracks"] == 2 and out["cracks_caught"] == 1 and out["false_alarms"] == 1
    scores = tmp_path / "scores.csv"
    scores.write_text("frame,score\n" + "\n".join(
        f"{f},{0.9 if 5 <= f <= 9 or f == 0 else 0.1}" for f in range(20)) + "\n")
    out = _evaluate("defect-frames", "--pred", str(scores), "--ref", str(truth),
                    "-o", "threshold=0.5")
    assert out["recall"] == pytest.approx(5 / 8) and out["false_detections"] == 1
    events.write_text('{"event": "explode", "frame": 3}\n')
    res = CliRunner().invoke(build_cli(), ["evaluate", "defect-events", "--pred", str(events),
                                           "--ref", str(truth)])
    assert res.exit_code == 2 and "events.jsonl, line 1" in res.output


def test_metrics_listing_and_unknown_metric(tmp_path):
    res = CliRunner().invoke(build_cli(), ["metrics", "--json"])
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert {"luna16-froc", "defect-events", "defect-frames", "tick-classification"} <= set(rows)
    assert rows["luna16-froc"]["reads_files"] and "annotations" in rows["luna16-froc"]["files"]
    f = tmp_path / "x.npy"
    np.save(f, np.zeros(3))
    res = CliRunner().invoke(build_cli(), ["evaluate", "luna16-frok", "--pred", str(f),
                                           "--ref", str(f)])
    assert res.exit_code == 2 and "did you mean: luna16-froc" in res.output


def test_load_array_formats_and_errors(tmp_path):
    (tmp_path / "a.csv").write_text("x,y\n1,2\n3,4\n")
    np.testing.assert_array_equal(load_array(tmp_path / "a.csv"), [[1, 2], [3, 4]])
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf1,2\r\n3,4\r\n")  # a spreadsheet's
    np.testing.assert_array_equal(load_array(tmp_path / "bom.csv"), [[1, 2], [3, 4]])
    (tmp_path / "b.txt").write_text("1 2\n3 4\n")
    np.testing.assert_array_equal(load_array(tmp_path / "b.txt"), [[1, 2], [3, 4]])
    (tmp_path / "c.jsonl").write_text("[1, 2]\n[3, 4]\n")
    np.testing.assert_array_equal(load_array(tmp_path / "c.jsonl"), [[1, 2], [3, 4]])
    (tmp_path / "d.json").write_text('{"data": [5, 6]}')
    np.testing.assert_array_equal(load_array(tmp_path / "d.json"), [5, 6])
    (tmp_path / "ragged.csv").write_text("1,2\n3\n")
    with pytest.raises(MetricError, match="ragged.csv: line 2 has 1 columns"):
        load_array(tmp_path / "ragged.csv")
    (tmp_path / "words.csv").write_text("1\nfoo\n")
    with pytest.raises(MetricError, match="line 2 is not numeric"):
        load_array(tmp_path / "words.csv")
    (tmp_path / "e.parquet").write_text("")
    with pytest.raises(MetricError, match="unsupported file type '.parquet'"):
        load_array(tmp_path / "e.parquet")
    with pytest.raises(MetricError, match="no such file"):
        load_array(tmp_path / "none.npy")
    for name, text in (("header.csv", "score,label\n"), ("empty.json", "[]")):
        (tmp_path / name).write_text(text)
        with pytest.raises(MetricError, match=f"{name}: holds no data"):
            load_array(tmp_path / name)


def test_a_metric_that_returns_no_dict_is_named():
    class P:
        @staticmethod
        @hookimpl
        def register_metrics(register):
            register("test-bad-metric", lambda p, r: 0.5)

    with temporary_plugin(P, name="bad-metric-plugin"), \
            pytest.raises(MetricError, match="returned float, not a dict .*bad-metric-plugin"):
        deepseek.evaluate("test-bad-metric", [1], [1])
