"""The report people read: labels and units from where figures are measured, each
distribution once, and the HTML checked in a headless browser (element presence)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from deepseek.report import Headline, Measure, PipelineResult, Table, write_report


def _result(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    png = tmp_path / "rep" / "p" / "curve.png"
    png.parent.mkdir(parents=True)
    fig.savefig(png)
    plt.close(fig)
    return PipelineResult(
        "test.labelled", title="Labelled figures",
        metrics={"held_out_macro_f1": Measure(0.8125, "held-out macro F1"), "raw_key": 3.0},
        timings={"fastpath_p50_us": Measure(2.25, "fast path p50 per tick", "µs")},
        quality=Headline("held-out macro F1", 0.8125, target=0.5),
        speed=Headline("fast path p99", 4.5, "µs", target=5.0, higher_is_better=False),
        tables=[Table("Rows", ["a", "b"], [[1, 2.5]])], figures=[png], input="synthetic")


def test_measures_are_floats_that_carry_label_and_unit(tmp_path):
    m = Measure(2.25, "fast path p50 per tick", "µs")
    assert m == 2.25 and m * 2 == 4.5 and json.dumps({"v": m}) == '{"v": 2.25}'
    assert (m.label, m.unit, m.text()) == ("fast path p50 per tick", "µs", "2.25 µs")
    import pickle

    assert pickle.loads(pickle.dumps(m)).label == m.label
    index = write_report(tmp_path / "rep", [_result(tmp_path)], versions="deepseek-core 9.9, x 1")
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    p = summary["pipelines"][0]
    assert p["metrics"]["held_out_macro_f1"] == 0.8125
    assert p["labels"]["fastpath_p50_us"] == {"label": "fast path p50 per tick", "unit": "µs"}
    assert "raw_key" not in p["labels"]  # an unlabelled number stays under its key
    html = index.read_text()
    assert "fast path p50 per tick" in html and "2.25 µs" in html
    assert "fastpath_p50_us</td>" not in html


def test_the_versions_line_names_each_distribution_once(tiny_plugin):
    from deepseek.cli import _versions_line

    line = _versions_line()
    names = [part.rsplit(" ", 1)[0] for part in line.split(", ")]
    assert names.count("deepseek-core") == 1 and len(names) == len(set(names))
    assert "deepseek-finance 0.1.0" in line


class _Elements(HTMLParser):
    """Tags with their attributes and text, from the browser's DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or \
        shutil.which("google-chrome")


def test_the_html_in_a_headless_browser(tmp_path):
    exe = _browser()
    if exe is None:
        if os.environ.get("DEEPSEEK_REQUIRE_BROWSER") == "1":
            pytest.fail("a headless browser is required here (.ci/run installs Debian's "
                        "chromium) and none is installed")
        pytest.skip("no headless browser (Debian: apt install chromium)")
    index = write_report(tmp_path / "rep", [_result(tmp_path), PipelineResult(
        "test.failed", error="ValueError: boom")], title="Report check",
        versions="deepseek-core 0.1.0, deepseek-finance 0.1.0")
    profile = tmp_path / "profile"
    res = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--dump-dom", index.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "</html>" in res.stdout, res.stderr[-2000:]
    dom = _Elements()
    dom.feed(res.stdout)
    tags = [t for t, _ in dom.found]
    ids = {a.get("id") for _, a in dom.found}
    text = " ".join(dom.text)
    assert {"summary", "versions", "test.labelled", "test.failed"} <= ids
    assert tags.count("section") == 2 and tags.count("img") == 1
    img = next(a for t, a in dom.found if t == "img")
    assert (index.parent / img["src"]).is_file()
    assert "held-out macro F1" in text and "2.25 µs" in text and "meets <= 5 µs" in text
    assert "fastpath_p50_us" not in text and text.count("deepseek-core") == 1
    assert "failed" in text and "ValueError: boom" in text


def test_echo_training_names_each_epoch_once(capsys):
    from deepseek.report import echo_training

    echo_training({"model": "run/model.safetensors",
                   "history": [{"epoch": 3, "train_loss": 0.51234, "best": True},
                               {"train_loss": 0.4}]}, as_json=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["epoch 3: train_loss 0.5123, best True", "epoch 2: train_loss 0.4",
                     "model: run/model.safetensors"]
