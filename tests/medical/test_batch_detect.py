"""deepseek batch medical detect on local worker processes: per scan, exactly what the
command prints but for the timings (the Ray run is in tests/core/test_batch_ray.py)."""

from __future__ import annotations

from deepseek.batch import run_batch
from tests.medical.scans import DETECT_OPTIONS, assert_results_equal_the_command, small_scans


def test_batch_detect_equals_the_command_scan_by_scan(tmp_path):
    scans = small_scans(tmp_path, [3, 4])
    out = tmp_path / "out"
    rep = run_batch("medical detect", [str(tmp_path / "scan*")], out, workers=2,
                    progress=False, options=DETECT_OPTIONS)
    assert (rep.ok, rep.failed) == (2, 0), rep.failures
    assert_results_equal_the_command(out, scans)
    rows = (out / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("source,key,status") and "top_probability" in rows[0]
