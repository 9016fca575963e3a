"""deepseek batch medical detect on local worker processes: per scan, exactly what the
command prints but for the timings (the Ray run is in tests/core/test_batch_ray.py)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from deepseek.batch import item_key, run_batch
from deepseek.cli import build_cli


def test_batch_detect_equals_the_command_scan_by_scan(tmp_path):
    runner, cli = CliRunner(), build_cli()
    scans = []
    for seed in (3, 4):
        scan = tmp_path / f"scan{seed}"
        res = runner.invoke(cli, ["medical", "generate", str(scan), "--seed", str(seed),
                                  "--size", "96", "--pixel-spacing", "1.5", "--slices", "32",
                                  "--slice-step", "2", "--nodules", "1"])
        assert res.exit_code == 0, res.output
        scans.append(scan)
    out = tmp_path / "out"
    rep = run_batch("medical detect", [str(tmp_path / "scan*")], out, workers=2,
                    progress=False, options={"window": 64, "tta_top": 0, "sizes": 2})
    assert (rep.ok, rep.failed) == (2, 0), rep.failures
    for scan in scans:
        res = runner.invoke(cli, ["medical", "detect", str(scan), "--json", "--window", "64",
                                  "--tta-top", "0", "--sizes", "2"])
        assert res.exit_code == 0, res.output
        want = json.loads(res.output)
        got = json.loads((out / "items" / f"{item_key(str(scan))}.json").read_text())
        assert got.pop("timings_s").keys() == want.pop("timings_s").keys()
        assert got == want and got["candidates"]
    rows = (out / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("source,key,status") and "top_probability" in rows[0]
