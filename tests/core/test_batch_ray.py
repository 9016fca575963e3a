"""deepseek batch on a real Ray cluster the test starts on this machine: a head node and a
second worker node (``ray start``), one CPU each, on loopback. A worker process killed mid-run
loses nothing and duplicates nothing; results equal the command's, item by item."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from deepseek.batch import item_key, run_batch
from deepseek.plugins import temporary_plugin
from tests.core.batch_steps import NumberPlugin
from tests.ray_cluster import start_cluster, stop_cluster

ray = pytest.importorskip("ray", reason="Ray is the ray extra (make install has it)")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster():
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are long
    groups: list[int] = []
    try:
        try:
            addresses, groups = start_cluster(temp, [str(ROOT)])
        except RuntimeError as exc:
            pytest.fail(str(exc))
        yield addresses
    finally:
        stop_cluster(groups)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_a_worker_killed_mid_run_on_a_two_node_cluster(cluster, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(6):
        (folder / f"n{i}.txt").write_text(str(i))
    (folder / "die-1.txt").write_text("100")
    (folder / "text.txt").write_text("not a number")
    marks = tmp_path / "marks"
    marks.mkdir()
    out = tmp_path / "out"
    with temporary_plugin(NumberPlugin, name="batch-test"):
        rep = run_batch("test.number", [str(folder / "*.txt")], out, cluster=cluster["gcs"],
                        options={"die_marks": str(marks), "scale": 2}, progress=False)
    assert rep.where.startswith("ray: 2 actor(s) x 1 CPU on 2 node(s)"), rep.where
    killed = json.loads((marks / "die-1.txt").read_text())["pid"]   # it really died
    assert (rep.ok, rep.failed, rep.retried) == (7, 1, 1)
    assert "not a number file" in rep.failures[0]["error"]
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    oks = [r["key"] for r in log if r["status"] == "ok"]
    assert len(oks) == len(set(oks)) == 7                  # nothing written twice
    assert {r["attempts"] for r in log if r["source"].endswith("die-1.txt")} == {2}
    assert json.loads((out / "items" / f"{item_key(str(folder / 'die-1.txt'))}.json")
                      .read_text()) == {"name": "die-1.txt", "value": 200.0}
    # ... by another worker process than the one that died
    redo = next(r for r in log if r["source"].endswith("die-1.txt"))
    assert int(redo["worker"].rsplit(":", 1)[1]) != killed


@pytest.mark.slow
def test_medical_detect_on_ray_equals_the_command_scan_by_scan(cluster, tmp_path):
    """The real step (the packaged detector on ONNX Runtime) in Ray actors: each scan's
    result is what `deepseek medical detect SCAN --json` prints, but for the timings."""
    pytest.importorskip("deepseek.medical")
    from tests.medical.scans import (
        DETECT_OPTIONS,
        assert_results_equal_the_command,
        small_scans,
    )

    scans = small_scans(tmp_path, [1, 2])
    out = tmp_path / "out"
    rep = run_batch("medical detect", [str(tmp_path / "scan*")], out, cluster=cluster["gcs"],
                    options=DETECT_OPTIONS, progress=False)
    assert (rep.ok, rep.failed) == (2, 0)
    assert_results_equal_the_command(out, scans)


@pytest.mark.slow
def test_through_ray_client(cluster, tmp_path):
    """ray://HOST:PORT: the driver is outside the cluster (Ray Client), the results the same."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        (folder / f"n{i}.txt").write_text(str(i))
    with temporary_plugin(NumberPlugin, name="batch-test"):
        rep = run_batch("test.number", [str(folder / "*.txt")], tmp_path / "out",
                        cluster=cluster["client"], options={"scale": 3}, progress=False)
    assert (rep.ok, rep.failed) == (4, 0) and rep.where.startswith("ray:")
    assert not ray.is_initialized()            # the connection the batch made is closed
    for i in range(4):
        got = json.loads((tmp_path / "out" / "items" /
                          f"{item_key(str(folder / f'n{i}.txt'))}.json").read_text())
        assert got == {"name": f"n{i}.txt", "value": 3.0 * i}


def test_a_cluster_start_that_fails_is_made_again_from_nothing(monkeypatch, tmp_path):
    """A raylet that does not register in time fails ``ray start``: the start is made again
    in a fresh folder, and a start that fails every time says so."""
    import tests.ray_cluster as rc

    tried = []

    def fake(temp, pythonpath, nodes, cpus):
        tried.append(temp)
        if len(tried) == 1:
            raise RuntimeError("ray start failed: the current node timed out during startup")
        return {"gcs": "g", "client": "c"}, [1]

    monkeypatch.setattr(rc, "_start", fake)
    assert rc.start_cluster(str(tmp_path), []) == ({"gcs": "g", "client": "c"}, [1])
    assert tried == [str(tmp_path / "1"), str(tmp_path / "2")]
    tried.clear()
    with pytest.raises(RuntimeError, match="timed out"):
        rc.start_cluster(str(tmp_path), [], attempts=1)
    assert tried == [str(tmp_path / "1")]
