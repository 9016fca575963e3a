"""deepseek batch on a real Ray cluster the test starts on this machine: a head node and a
second worker node (``ray start``), one CPU each, on loopback. A worker process killed mid-run
loses nothing and duplicates nothing; results equal the command's, item by item."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from deepseek.batch import item_key, run_batch
from deepseek.plugins import temporary_plugin
from tests.core.batch_steps import NumberPlugin

ray = pytest.importorskip("ray", reason="Ray is the ray extra (make install has it)")
ROOT = Path(__file__).resolve().parents[2]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], temp: str) -> int:
    """``ray start ...`` in a session of its own; returns that session's process group
    (every process of the node: GCS, raylet, workers), killed as one at the end."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    ray_bin = str(Path(sys.executable).with_name("ray"))
    proc = subprocess.Popen([ray_bin, "start", *args, "--node-ip-address=127.0.0.1",
                             "--num-cpus=1", "--disable-usage-stats",
                             f"--dashboard-agent-listen-port={_port()}",
                             f"--metrics-export-port={_port()}"],
                            env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=temp)
    out, _ = proc.communicate(timeout=180)
    if proc.returncode != 0:
        pytest.fail(f"ray start failed:\n{out[-2000:]}")
    return proc.pid


@pytest.fixture(scope="module")
def cluster():
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are long
    port, client = _port(), _port()
    groups = []
    try:
        groups.append(_start(["--head", f"--port={port}", "--include-dashboard=false",
                              f"--ray-client-server-port={client}", f"--temp-dir={temp}"],
                             temp))
        groups.append(_start([f"--address=127.0.0.1:{port}"], temp))
        yield {"gcs": f"127.0.0.1:{port}", "client": f"ray://127.0.0.1:{client}"}
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for g in groups:
            try:
                os.killpg(g, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp, ignore_errors=True)


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


def test_medical_detect_on_ray_equals_the_command_scan_by_scan(cluster, tmp_path):
    """The real step (the packaged detector on ONNX Runtime) in Ray actors: each scan's
    result is what `deepseek medical detect SCAN --json` prints, but for the timings."""
    from click.testing import CliRunner

    from deepseek.cli import build_cli

    pytest.importorskip("deepseek.medical")
    runner, cli = CliRunner(), build_cli()
    scans = []
    for seed in (1, 2):
        scan = tmp_path / f"scan{seed}"
        res = runner.invoke(cli, ["medical", "generate", str(scan), "--seed", str(seed),
                                  "--size", "96", "--pixel-spacing", "1.5", "--slices", "32",
                                  "--slice-step", "2", "--nodules", "1"])
        assert res.exit_code == 0, res.output
        scans.append(scan)
    flags = ["--window", "64", "--tta-top", "0", "--sizes", "2"]
    out = tmp_path / "out"
    rep = run_batch("medical detect", [str(tmp_path / "scan*")], out, cluster=cluster["gcs"],
                    options={"window": 64, "tta_top": 0, "sizes": 2}, progress=False)
    assert (rep.ok, rep.failed) == (2, 0)
    for scan in scans:
        res = runner.invoke(cli, ["medical", "detect", str(scan), "--json", *flags])
        assert res.exit_code == 0, res.output
        want = json.loads(res.output)
        got = json.loads((out / "items" / f"{item_key(str(scan))}.json").read_text())
        assert got.pop("timings_s").keys() == want.pop("timings_s").keys()
        assert got == want and got["candidates"]


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
