"""deepseek batch manufacturing score: per image (or folder), what the command prints."""

from __future__ import annotations

import json

import cv2
import numpy as np
from click.testing import CliRunner

from deepseek.batch import item_key, run_batch
from deepseek.cli import build_cli


def test_batch_scores_equal_the_command_item_by_item(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "line"
    (root / "box").mkdir(parents=True)
    for name, (h, w) in {"a.png": (64, 96), "b.png": (80, 48), "box/c.png": (32, 32),
                         "box/d.png": (48, 64)}.items():
        img = np.clip(rng.normal(150, 12, (h, w)), 0, 255).astype(np.uint8)
        cv2.line(img, (2, 2), (w - 3, h - 3), 40, 2)
        cv2.imwrite(str(root / name), img)
    inputs = [str(root / "*.png"), str(root / "box")]   # two files and a folder of two
    out = tmp_path / "out"
    rep = run_batch("manufacturing score", inputs, out, workers=2, progress=False,
                    options={"threshold": 0.3})
    assert (rep.ok, rep.failed, rep.items) == (3, 0, 3)
    runner, cli = CliRunner(), build_cli()
    for src in (root / "a.png", root / "b.png", root / "box"):
        res = runner.invoke(cli, ["manufacturing", "score", str(src), "--threshold", "0.3",
                                  "--json"])
        assert res.exit_code == 0, res.output
        got = json.loads((out / "items" / f"{item_key(str(src))}.json").read_text())
        assert got == json.loads(res.stdout)
    assert len(json.loads((out / "items" / f"{item_key(str(root / 'box'))}.json")
                          .read_text())) == 2
