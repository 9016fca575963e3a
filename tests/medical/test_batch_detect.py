"""deepseek batch medical detect on local worker processes: per scan, exactly what the
command prints but for the timings (the Ray run is in tests/core/test_batch_ray.py)."""

from __future__ import annotations

import pytest

from deepseek.batch import run_batch
from deepseek.medical.steps import leave_out
from tests.medical.scans import DETECT_OPTIONS, assert_results_equal_the_command, small_scans


@pytest.mark.slow
def test_batch_detect_equals_the_command_scan_by_scan(tmp_path):
    scans = small_scans(tmp_path, [3, 4])
    (tmp_path / "scan_notes.txt").write_text("reads of scan0003")  # matched, not a scan
    out = tmp_path / "out"
    rep = run_batch("medical detect", [str(tmp_path / "scan*")], out, workers=2,
                    progress=False, options=DETECT_OPTIONS)
    assert (rep.ok, rep.failed) == (2, 0), rep.failures
    assert rep.left_out == [{"source": str(tmp_path / "scan_notes.txt"),
                             "why": "not a scan (a document or table)"}]
    assert_results_equal_the_command(out, scans)
    rows = (out / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("source,key,status") and "top_probability" in rows[0]


def test_what_a_glob_matches_beside_the_scans_is_left_out(tmp_path):
    for name in ("case.mhd", "case.raw", "lone.raw", "scan.img", "scan.hdr", "annotations.csv",
                 "IM000001", "slice.dcm"):
        (tmp_path / name).write_bytes(b"0")
    why = {p.name: leave_out(str(p)) for p in tmp_path.iterdir()}
    assert why == {"case.mhd": None, "case.raw": "the pixel data of case.mhd, read through it",
                   "lone.raw": None, "scan.img": "the pixel data of scan.hdr, read through it",
                   "scan.hdr": None, "annotations.csv": "not a scan (a document or table)",
                   "IM000001": None, "slice.dcm": None}
    assert leave_out(str(tmp_path)) is None  # a folder is a series: the step reads it
