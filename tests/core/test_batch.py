"""deepseek batch on local worker processes: inputs, keys, results per item, failures, a
killed worker, resuming, and the command line."""

from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepseek.batch import BatchError, expand_inputs, item_key, run_batch
from deepseek.cli import build_cli
from deepseek.plugins import temporary_plugin
from tests.core.batch_steps import NumberPlugin
from tests.shared import own_sigterm_handler, process_ended


@pytest.fixture()
def numbers(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(5):
        (folder / f"n{i}.txt").write_text(str(i + 1))
    with temporary_plugin(NumberPlugin, name="batch-test"):
        yield folder


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_inputs_globs_lists_paths_and_uris(tmp_path):
    for name in ("b.txt", "a.txt", "c.dat"):
        (tmp_path / name).write_text("1")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.txt").write_text("1")
    listing = tmp_path / "list"
    listing.write_text(f"# scans\n{tmp_path / 'c.dat'}\n\nsynthetic:?seed=1\n")
    got = expand_inputs([str(tmp_path / "*.txt"), f"@{listing}", str(tmp_path / "a.txt"),
                         str(tmp_path / "**" / "d.txt")])
    assert got == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), str(tmp_path / "c.dat"),
                   "synthetic:?seed=1", str(tmp_path / "sub" / "d.txt")]
    assert expand_inputs(["synthetic:?kind=market&n=9"]) == ["synthetic:?kind=market&n=9"]
    with pytest.raises(BatchError, match="matches nothing"):
        expand_inputs([str(tmp_path / "*.png")])
    with pytest.raises(BatchError, match="no such file"):
        expand_inputs([str(tmp_path / "gone.txt")])
    listing.write_text(f"{tmp_path / 'gone.txt'}\n")
    with pytest.raises(BatchError, match="1 listed input"):
        expand_inputs([f"@{listing}"])
    with pytest.raises(BatchError, match="cannot read"):
        expand_inputs([f"@{tmp_path / 'nolist'}"])
    # a step's leave_out drops what a glob matched, with its reason; a path named is kept
    (tmp_path / "a_note.txt").write_text("1")
    left: list = []
    got = expand_inputs([str(tmp_path / "*.txt"), str(tmp_path / "a_note.txt")],
                        lambda s: "a note" if s.endswith("_note.txt") else None, left)
    assert got == [str(tmp_path / n) for n in ("a.txt", "b.txt", "a_note.txt")]
    assert left == []                                   # named after all: an input
    got = expand_inputs([str(tmp_path / "*.txt"), str(tmp_path / "[ab]*.txt")],
                        lambda s: "a note" if s.endswith("_note.txt") else None, left)
    assert got == [str(tmp_path / n) for n in ("a.txt", "b.txt")]
    assert left == [{"source": str(tmp_path / "a_note.txt"), "why": "a note"}]  # once
    with pytest.raises(BatchError, match="every match is left out by the step .*a note"):
        expand_inputs([str(tmp_path / "*_note.txt")], lambda s: "a note")


def test_a_glob_that_matches_a_folder_and_its_files_takes_the_folder_once(tmp_path):
    """``parts/**/*`` matches parts/line3 and the files in it: the folder is the input
    (a step reads a folder whole: a part folder, a DICOM series), and its files are left
    out with the reason, so that nothing is processed twice (before: the folder's images
    were scored in the folder's item and again one by one)."""
    (tmp_path / "line3" / "day1").mkdir(parents=True)
    for name in ("line3/a.txt", "line3/day1/b.txt", "c.txt"):
        (tmp_path / name).write_text("1")
    left: list = []
    got = expand_inputs([str(tmp_path / "**" / "*")], lambda s: None, left)
    assert got == [str(tmp_path / "c.txt"), str(tmp_path / "line3")]
    assert sorted(x["source"] for x in left) == [
        str(tmp_path / "line3" / "a.txt"), str(tmp_path / "line3" / "day1"),
        str(tmp_path / "line3" / "day1" / "b.txt")]
    assert all(x["why"].startswith(f"inside {tmp_path / 'line3'}, which the same pattern")
               for x in left)
    # a folder the step leaves out does not cover what is below it
    left = []
    got = expand_inputs([str(tmp_path / "**" / "*")],
                        lambda s: "not mine" if s.endswith("line3") else None, left)
    assert got == [str(tmp_path / "c.txt"), str(tmp_path / "line3" / "a.txt"),
                   str(tmp_path / "line3" / "day1")]
    # files alone, and folders named one by one, are as before
    assert expand_inputs([str(tmp_path / "**" / "*.txt")]) == [
        str(tmp_path / n) for n in ("c.txt", "line3/a.txt", "line3/day1/b.txt")]


def test_a_recursive_glob_through_a_link_loop_lists_each_file_once(tmp_path):
    """A folder that links back up the tree (or to itself, twice: glob's own search never
    ends there) gives each file once, and a folder linked in from elsewhere is searched."""
    (tmp_path / "line" / "day").mkdir(parents=True)
    (tmp_path / "line" / "day" / "p1.png").write_text("1")
    (tmp_path / "nas").mkdir()
    (tmp_path / "nas" / "p2.png").write_text("1")
    (tmp_path / "line" / "day" / "up").symlink_to(tmp_path / "line", target_is_directory=True)
    (tmp_path / "line" / "self").symlink_to(".", target_is_directory=True)
    (tmp_path / "line" / "again").symlink_to(".", target_is_directory=True)
    (tmp_path / "line" / "nas").symlink_to(tmp_path / "nas", target_is_directory=True)
    assert expand_inputs([str(tmp_path / "line" / "**" / "*.png")]) == [
        str(tmp_path / "line" / "day" / "p1.png"), str(tmp_path / "line" / "nas" / "p2.png")]


def test_item_keys_are_stable_safe_and_distinct(tmp_path):
    a, b = tmp_path / "x" / "scan 1", tmp_path / "y" / "scan 1"
    assert item_key(str(a)) == item_key(str(a) + "/")
    assert item_key(str(a)) != item_key(str(b))
    assert item_key(str(a)).startswith("scan_1-")
    assert "/" not in item_key("synthetic:?seed=1&n=2")


def test_local_workers_write_one_result_per_item_and_record_failures(numbers, tmp_path):
    (numbers / "bad.txt").write_text("x")
    out = tmp_path / "out"
    rep = run_batch("test number", [str(numbers / "*.txt")], out, options={"scale": 2.0},
                    workers=2, progress=False)
    assert (rep.items, rep.ok, rep.failed, rep.skipped, rep.workers) == (6, 5, 1, 0, 2)
    for i in range(5):
        key = item_key(str(numbers / f"n{i}.txt"))
        assert json.loads((out / "items" / f"{key}.json").read_text()) == \
            {"name": f"n{i}.txt", "value": 2.0 * (i + 1)}
    failed = json.loads((out / "failed" / f"{item_key(str(numbers / 'bad.txt'))}.json")
                        .read_text())
    assert "ValueError" in failed["error"] and "bad.txt" in failed["error"]
    assert "Traceback" in failed["traceback"] and failed["attempts"] == 1
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["failed"] + ["ok"] * 5   # bad.txt sorts first
    assert [float(r["value"]) for r in rows[1:]] == [2.0, 4.0, 6.0, 8.0, 10.0]
    run = json.loads((out / "run.json").read_text())
    assert run["ok"] == 5 and run["failed"] == 1 and run["step"] == "test.number"

    # a re-run skips what is done and tries the failed item again
    rep2 = run_batch("test.number", [str(numbers / "*.txt")], out, options={"scale": 2.0},
                     workers=2, progress=False)
    assert (rep2.skipped, rep2.ok, rep2.failed) == (5, 0, 1)
    assert len(_log(out)) == 7
    # ... and now that it is fixed, it succeeds and its failure record goes
    (numbers / "bad.txt").write_text("7")
    rep3 = run_batch("test.number", [str(numbers / "*.txt")], out, options={"scale": 2.0},
                     workers=1, progress=False)
    assert (rep3.skipped, rep3.ok, rep3.failed) == (5, 1, 0)
    assert not list((out / "failed").iterdir())


def test_a_killed_worker_loses_nothing_and_duplicates_nothing(numbers, tmp_path):
    (numbers / "die-1.txt").write_text("10")
    marks = tmp_path / "marks"
    marks.mkdir()
    out = tmp_path / "out"
    rep = run_batch("test.number", [str(numbers / "*.txt")], out,
                    options={"die_marks": str(marks)}, workers=2, progress=False)
    assert (marks / "die-1.txt").exists()                 # the worker really was killed
    assert rep.retried >= 1 and rep.ok == 6 and rep.failed == 0
    oks = [r["key"] for r in _log(out) if r["status"] == "ok"]
    assert sorted(oks) == sorted(set(oks)) and len(oks) == 6   # each item written once
    die = next(r for r in _log(out) if r["source"].endswith("die-1.txt"))
    assert die["attempts"] == 2
    assert json.loads((out / "items" / f"{item_key(str(numbers / 'die-1.txt'))}.json")
                      .read_text())["value"] == 10.0



def test_a_pool_found_broken_while_sending_loses_and_repeats_nothing(numbers, tmp_path,
                                                                       monkeypatch):
    """A worker that dies after the driver's last wait and before its next send: the pool
    refuses the send (BrokenProcessPool). Before, that ended the batch with the error (seen
    in CI beside the test above); now the items not sent wait for a new pool. Here the pool
    refuses its second send as a broken pool does, with no process killed, so that what is
    in flight finishes (what goes down with a real death is the tests' around this one)."""
    import concurrent.futures
    from concurrent.futures.process import BrokenProcessPool

    real = concurrent.futures.ProcessPoolExecutor
    sends, pools = [], []

    class RefusesASend(real):
        def __init__(self, *args, **kwargs):
            pools.append(self)
            super().__init__(*args, **kwargs)

        def submit(self, fn, /, *args, **kwargs):
            sends.append(args[0])
            if len(sends) == 2:
                raise BrokenProcessPool("a child process terminated abruptly")
            return super().submit(fn, *args, **kwargs)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", RefusesASend)
    out = tmp_path / "out"
    rep = run_batch("test.number", [str(numbers / "*.txt")], out, workers=2, progress=False)
    assert rep.ok == 5 and rep.failed == 0 and rep.retried == 0 and len(pools) == 2
    oks = sorted(r["key"] for r in _log(out) if r["status"] == "ok")
    assert len(oks) == 5 == len(set(oks))  # each item written once
    assert sends.count(sends[1]) == 2  # refused, then sent to the new pool ...
    attempts = {r["source"]: r["attempts"] for r in _log(out)}
    assert attempts[sends[1]] == 1 and set(attempts.values()) == {1}  # ... its one attempt


def test_a_worker_that_always_dies_fails_its_item_after_the_attempts(numbers, tmp_path):
    (numbers / "always-dies.txt").write_text("1")
    rep = run_batch("test.number", [str(numbers / "always-dies.txt"), str(numbers / "n0.txt")],
                    tmp_path / "out", options={"die_marks": str(tmp_path)}, workers=1,
                    attempts=2, progress=False)
    # n0 went down with the pool once and then ran alone, fine; the guilty item died alone
    # on both of its attempts
    assert rep.ok == 1 and rep.failed == 1 and rep.retried == 3
    assert "died running it alone, on each of 2 attempt(s)" in rep.failures[0]["error"]


def test_a_step_that_cannot_be_built_stops_the_batch(numbers, tmp_path):
    with pytest.raises(BatchError, match="could not build step.*scale"):
        run_batch("test.number", [str(numbers / "n0.txt")], tmp_path / "out",
                  options={"scale": "not a number"}, workers=1, progress=False)


def test_an_output_folder_keeps_one_batch(numbers, tmp_path):
    out = tmp_path / "out"
    run_batch("test.number", [str(numbers / "n0.txt")], out, workers=1, progress=False)
    with pytest.raises(BatchError, match="another --out"):
        run_batch("test.number", [str(numbers / "n0.txt")], out, options={"scale": 3.0},
                  workers=1, progress=False)


def test_bad_steps_options_and_clusters_are_named(numbers, tmp_path, monkeypatch):
    with pytest.raises(BatchError, match="unknown option 'scal'; did you mean 'scale'"):
        run_batch("test.number", [str(numbers)], tmp_path / "o", options={"scal": 2})
    with pytest.raises(BatchError, match="no batch step 'test nothing'.*test.number"):
        run_batch("test nothing", [str(numbers)], tmp_path / "o")
    with pytest.raises(BatchError, match="--cluster 'kubernetes'"):
        run_batch("test.number", [str(numbers / "n0.txt")], tmp_path / "o",
                  cluster="kubernetes")
    import deepseek.extras

    monkeypatch.setattr(deepseek.extras, "missing", lambda extra: ["ray"])
    with pytest.raises(deepseek.extras.MissingExtraError,
                       match=r'pip install "deepseek-core\[ray\]"'):
        run_batch("test.number", [str(numbers / "n1.txt")], tmp_path / "o2",
                  cluster="ray://head:10001")


def test_the_command_line(numbers, tmp_path):
    runner = CliRunner()
    cli = build_cli()
    res = runner.invoke(cli, ["batch", "--list"])
    assert res.exit_code == 0, res.output
    assert "test.number  (test number" in res.output and "-o scale=1.0" in res.output
    (numbers / "bad.txt").write_text("x")
    out = tmp_path / "cli"
    res = runner.invoke(cli, ["-q", "batch", "test", "number", "--input", str(numbers / "*.txt"),
                              "--out", str(out), "-o", "scale=3", "--workers", "2"])
    assert res.exit_code == 1, res.output            # one item failed
    assert "5 done now, 0 done before, 1 failed" in res.output
    assert "bad.txt" in res.output
    res = runner.invoke(cli, ["batch", "test", "number", "--input", str(numbers / "n*.txt"),
                              "--out", str(out), "-o", "scale=3", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["skipped_done"] == 5
    res = runner.invoke(cli, ["batch", "test", "number", "--out", str(out)])
    assert res.exit_code == 2 and "give --input" in res.output
    (numbers / "n9_note.txt").write_text("not a number")  # the step leaves it out, and says so
    res = runner.invoke(cli, ["batch", "test", "number", "--input", str(numbers / "n*.txt"),
                              "--out", str(tmp_path / "notes"), "-o", "scale=3"])
    assert res.exit_code == 0, res.output
    assert "5 input(s)" in res.output and "left out: 1 file(s)" in res.output
    run = json.loads((tmp_path / "notes" / "run.json").read_text())
    assert run["left_out"] == [{"source": str(numbers / "n9_note.txt"),
                                "why": "a note, not a number"}]


def test_a_stopped_batch_finishes_the_items_in_hand_and_resumes(numbers, tmp_path,
                                                                 monkeypatch):
    """A stop (SIGTERM to `deepseek batch`: a service manager's, `timeout`, `kill`): no item
    is sent after it, the items in flight finish and are written, run.json says it stopped
    and how many were not run, the command exits 143 and says so; the same command runs the
    rest. The handler it was given is put back after."""
    import os
    import signal

    import deepseek.batch as batch

    for i in range(5, 30):
        (numbers / f"n{i}.txt").write_text(str(i + 1))
    out = tmp_path / "out"

    class FirstWritten:  # a stop that comes as the first result is written
        def is_set(self):
            return any((out / "items").iterdir())

    rep = run_batch("test.number", [str(numbers / "*.txt")], out, workers=2, progress=False,
                    stop=FirstWritten())
    # at most 2 x 2 items are in flight when the first one ends: they finish, no more start
    assert rep.stopped and 1 <= rep.ok <= 4 and rep.failed == 0
    assert rep.not_run == 30 - rep.ok == 30 - len(list((out / "items").iterdir()))
    run = json.loads((out / "run.json").read_text())
    assert run["stopped"] and run["not_run"] == rep.not_run
    rep2 = run_batch("test.number", [str(numbers / "*.txt")], out, workers=2, progress=False)
    assert not rep2.stopped and (rep2.skipped, rep2.ok, rep2.not_run) == (rep.ok, rep.not_run, 0)

    writes = []
    write_whole = batch._write_whole

    def written(path, text):  # systemctl stop, as the first item's result is written
        write_whole(path, text)
        if "items" in path.parts and not writes:
            writes.append(path)
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(batch, "_write_whole", written)
    with own_sigterm_handler() as handler:  # the one the command is given
        res = CliRunner().invoke(build_cli(), [
            "batch", "test", "number", "--input", str(numbers / "*.txt"), "--out",
            str(tmp_path / "cli"), "--workers", "2"])
    assert res.exit_code == 143, res.output
    assert "input(s) not run; the same command runs them (exit status 143)" in res.stderr
    assert handler["calls"] == 0 and handler["after"] is handler["own"]


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"),
                    reason="the parent-death signal is Linux's")
def test_local_workers_end_when_the_batch_command_is_killed(numbers, tmp_path):
    """A batch driver killed outright (SIGKILL: it cannot pass a stop on) takes its worker
    processes with it, also workers stuck in a long item (Linux's parent-death signal);
    before, they were left behind, blocked for good, each holding its model."""
    import os
    import subprocess
    import sys
    import time

    marks = tmp_path / "marks"
    marks.mkdir()
    for i in (1, 2):
        (numbers / f"hang-{i}.txt").write_text("1")
    script = ("import sys\n"
              "from deepseek.batch import run_batch\n"
              "from deepseek.plugins import temporary_plugin\n"
              "from tests.core.batch_steps import NumberPlugin\n"
              "with temporary_plugin(NumberPlugin, name='batch-test'):\n"
              "    run_batch('test.number', [sys.argv[1]], sys.argv[2], workers=2,\n"
              "              progress=False, options={'hang_marks': sys.argv[3]})\n")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", script, str(numbers / "hang-*.txt"),
                             str(tmp_path / "out"), str(marks)], cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)})
    deadline = time.monotonic() + 300
    try:  # until both workers are stuck in their items (a poll with a deadline)
        while len(list(marks.glob("*.pid"))) < 2:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    pids = [int(m.read_text()) for m in marks.glob("*.pid")]


    deadline = time.monotonic() + 60
    while not all(process_ended(p) for p in pids):  # they end (a poll with a deadline)
        if time.monotonic() > deadline:
            for p in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, 9)
            raise AssertionError("the workers outlived their killed driver")
        time.sleep(0.05)


def test_only_a_ray_client_server_that_did_not_start_is_tried_again():
    from deepseek.batch import is_client_start_failure

    assert is_client_start_failure(ConnectionError(
        "ray client connection timeout: client server failed to start"))
    assert is_client_start_failure(ConnectionError(
        "Initialization failure from server:\nTraceback ...\npsutil.ZombieProcess: PID still "
        "exists but it's a zombie (pid=20636)"))
    # nothing listening, a wrong address, a version mismatch: reported at once
    assert not is_client_start_failure(ConnectionError("ray client connection timeout"))
    assert not is_client_start_failure(RuntimeError(
        "Initialization failure from server: version mismatch"))
    assert not is_client_start_failure(ValueError("invalid address"))
