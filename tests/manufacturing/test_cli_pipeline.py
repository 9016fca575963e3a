"""CLI (generate, stream, train, bench) and the manufacturing.defect-stream pipeline."""

from __future__ import annotations

import json

import cv2
import numpy as np
from click.testing import CliRunner

from deepseek.cli import build_cli

from ..shared import assert_labelled, own_sigterm_handler


def test_generate_then_stream_with_truth(tmp_path):
    runner = CliRunner()
    cli = build_cli()
    video = tmp_path / "line.avi"
    res = runner.invoke(cli, ["manufacturing", "generate", str(video), "--frames", "60",
                              "--seed", "700901", "--crack-spacing", "20"])
    assert res.exit_code == 0, res.output
    assert video.is_file() and (tmp_path / "line.avi.truth.csv").is_file()
    truth = str(tmp_path / "line.avi.truth.csv")
    res = runner.invoke(cli, ["manufacturing", "stream", str(video), "--quiet", "--json",
                              "--truth", truth, "--events", str(tmp_path / "ev.jsonl"),
                              "--scores", str(tmp_path / "sc.csv")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    assert out["frames"] == 60 and out["source"]["frames_dropped"] == 0
    assert out["source"]["decode_threads"] == 1  # one core decodes unless told otherwise
    assert out["frame_metrics"]["defect_frames"] > 0
    assert 0.0 <= out["frame_metrics"]["recall"] <= 1.0
    assert out["event_metrics"]["events"] > 0
    # the files the stream wrote, evaluated afterwards, give what it measured itself: the
    # metric told by what each file holds; a source's fault record is not an event
    with open(tmp_path / "ev.jsonl", "a") as fh:
        fh.write(json.dumps({"event": "source_lost", "frame": 59}) + "\n")
    for pred, key in (("ev.jsonl", "event_metrics"), ("sc.csv", "frame_metrics")):
        res = runner.invoke(cli, ["manufacturing", "evaluate", "--pred", str(tmp_path / pred),
                                  "--ref", truth, "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.output) == out[key]
    res = runner.invoke(cli, ["manufacturing", "evaluate", "--pred", truth, "--ref", truth])
    assert res.exit_code == 2 and "neither events" in res.output
    # the scores saved again by a spreadsheet (a byte-order mark, semicolons, decimal
    # commas) are told as scores, as they are read
    again = tmp_path / "sc_excel.csv"
    again.write_bytes(("\ufeff" + (tmp_path / "sc.csv").read_text().replace(",", ";")
                       .replace(".", ",")).encode())
    res = runner.invoke(cli, ["manufacturing", "evaluate", "--pred", str(again),
                              "--ref", truth, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == out["frame_metrics"]
    # a recording labelled frame by frame (frame, defect: no crack ids) is scored for events
    # too, each run of defect frames one crack; a video's scale is not known, so the widths
    # are in pixels unless --mm-per-px gives it
    import csv

    with open(tmp_path / "line.avi.truth.csv") as fh:
        rows = [(r["frame"], r["defect"]) for r in csv.DictReader(fh)]
    plain = tmp_path / "frames.csv"
    plain.write_text("frame,defect\n" + "".join(f"{f},{d}\n" for f, d in rows))
    res = runner.invoke(cli, ["manufacturing", "stream", str(video), "--quiet",
                              "--truth", str(plain)])
    assert res.exit_code == 0, res.output
    assert "event recall 1.000" in res.output and " px\n" in res.output, res.output
    assert " mm\n" not in res.output and "note: the truth" not in res.output
    plain.write_text("frame,defect\n" + "".join(f"{f},{d}\n" for f, d in rows[:50]))
    res = runner.invoke(cli, ["manufacturing", "stream", str(video), "--quiet",
                              "--truth", str(plain)])
    assert "10 scored frames it has no row for (check that it is this recording's)" in \
        res.output, res.output
    res = runner.invoke(cli, ["manufacturing", "stream", str(video), "--quiet",
                              "--mm-per-px", "0.1"])
    assert res.exit_code == 0 and " mm\n" in res.output and " px\n" not in res.output


def test_stream_reports_bad_sources_cleanly(tmp_path):
    runner = CliRunner()
    cli = build_cli()
    res = runner.invoke(cli, ["manufacturing", "stream", str(tmp_path / "missing.avi")])
    assert res.exit_code == 2 and "no such file or folder" in res.output
    res = runner.invoke(cli, ["manufacturing", "stream", "cam:57"])
    assert res.exit_code == 2 and "no camera" in res.output
    res = runner.invoke(cli, ["manufacturing", "stream", "synthetic:?frames=4", "--show"])
    assert res.exit_code == 2 and "window support" in res.output
    res = runner.invoke(cli, ["manufacturing", "stream", "synthetic:?frames=4",
                              "--decode-threads", "-1"])
    assert res.exit_code == 2 and "--decode-threads" in res.output


def test_stream_outputs_are_checked_before_the_stream_starts(tmp_path):
    runner, cli = CliRunner(), build_cli()
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the output folder would go")
    # the source does not exist: the output is checked first, so its error is the one shown
    missing = str(tmp_path / "missing.avi")
    res = runner.invoke(cli, ["manufacturing", "stream", missing, "--events",
                              str(blocker / "ev.jsonl")])
    assert res.exit_code == 2 and f"{blocker}: File exists" in res.output, res.output
    res = runner.invoke(cli, ["manufacturing", "stream", missing, "--scores", str(tmp_path)])
    assert res.exit_code == 2 and f"--scores {tmp_path}: a folder" in res.output
    # folders that do not exist yet are made, for both files
    events, scores = tmp_path / "new" / "day1" / "ev.jsonl", tmp_path / "new" / "s.csv"
    res = runner.invoke(cli, ["manufacturing", "stream", "synthetic:?frames=8", "--quiet",
                              "--events", str(events), "--scores", str(scores)])
    assert res.exit_code == 0, res.output
    assert events.is_file() and scores.read_text().startswith("frame,score\n")
    # so is the truth: a truth it cannot read is its error, before the (missing) source is
    # opened (before, a recording of hours was streamed, then the truth refused)
    bad = tmp_path / "truth.csv"
    bad.write_text("frame|defect\n0|1\n")
    res = runner.invoke(cli, ["manufacturing", "stream", missing, "--truth", str(bad)])
    assert res.exit_code != 0 and "missing column(s) frame, defect" in res.output, res.output


def test_stream_image_folder_of_colour_and_16bit_frames(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((48, 64, 3), 90, np.uint8))
    cv2.imwrite(str(tmp_path / "3.png"), np.full((48, 64), 40000, np.uint16))
    res = CliRunner().invoke(build_cli(), ["manufacturing", "stream", str(tmp_path),
                                           "--quiet", "--fps", "50"])
    assert res.exit_code == 0, res.output
    assert "4 frames" in res.output and "dropped 0" in res.output


def test_train_and_bench_commands(tmp_path):
    runner = CliRunner()
    cli = build_cli()
    res = runner.invoke(cli, ["manufacturing", "train", "--out", str(tmp_path / "run"),
                              "--clips", "8", "--clip-frames", "4", "--clip-size", "48", "32",
                              "--epochs", "1", "--batch-size", "4", "--val-videos", "0"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "model.safetensors").is_file()
    # train writes the edge export beside the weights, which the stream then runs on its own
    from deepseek.manufacturing.stream import OnnxStep, load_net

    onnx_net = load_net(tmp_path / "run" / "model.safetensors", onnx=True)
    assert onnx_net.path == tmp_path / "run" / "model.stream.onnx"
    assert onnx_net.still_session is not None  # and the still-photo export beside it
    frames = np.random.default_rng(0).integers(0, 256, (3, 32, 48), dtype=np.uint8)
    torch_p, _ = OnnxStep(load_net(tmp_path / "run" / "model.safetensors"))(frames)
    np.testing.assert_allclose(OnnxStep(onnx_net)(frames)[0], torch_p, atol=1e-5)
    res = runner.invoke(cli, ["manufacturing", "train", "--out", str(tmp_path / "r2"),
                              "--clip-size", "50", "32"])
    assert res.exit_code == 2 and "multiples of 16" in res.output
    runner.invoke(cli, ["manufacturing", "generate", str(tmp_path / "b.avi"), "--frames", "30"])
    res = runner.invoke(cli, ["manufacturing", "bench", str(tmp_path / "b.avi"),
                              "--backend", "torch", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["frames"] == 30


def test_bench_on_its_own_video_leaves_nothing_behind(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    res = CliRunner().invoke(build_cli(), ["manufacturing", "bench", "--frames", "12",
                                           "--backend", "onnxruntime", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["frames"] == 12
    assert list(tmp_path.iterdir()) == []  # the synthetic video went with its folder


def test_pipeline_report(tmp_path):
    from deepseek.plugins import pipelines

    res = pipelines().get("manufacturing.defect-stream")(input=None, out_dir=tmp_path,
                                                         quiet=True, frames=150,
                                                         realtime=False)
    m = res.metrics
    assert m["frames"] == 150 and res.timings["frames_dropped"] == 0
    assert 0 <= m["frame_recall"] <= 1 and 0 <= m["false_detection_rate"] <= 1
    assert all(f.is_file() for f in res.figures) and len(res.figures) >= 1
    assert_labelled(res)
    assert (tmp_path / "events.jsonl").is_file()
    assert any("never used in training" in n for n in res.notes)


def test_stream_faults_are_events_and_a_non_zero_exit(tmp_path):
    from deepseek.manufacturing.cli import EXIT_SOURCE_FAULT
    from deepseek.manufacturing.sources import FrameSource
    from deepseek.manufacturing.stream import DefectStream
    from tests.manufacturing.test_sources import _img, _Scripted

    # a live camera that goes down for good
    src = FrameSource(_Scripted([_img(v, (48, 64)) for v in range(6)], reopen_ok=False),
                      "fake://cam", reconnect_backoff=0.0, reconnect_attempts=1)
    events = tmp_path / "events.jsonl"
    rep = DefectStream(src, events=events, backend="torch").run()
    assert rep.frames == 6 and rep.source["lost"] and rep.fps > 0
    last = json.loads(events.read_text().splitlines()[-1])
    assert last["event"] == "source_lost" and last["frame"] == 5 and last["reconnects"] == 1
    # a video file cut short of its declared frame count: events say so, the exit status too
    video = tmp_path / "v.avi"
    wr = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (64, 48), False)
    for i in range(25):
        wr.write(np.full((48, 64), i * 9, np.uint8))
    wr.release()
    data = video.read_bytes()
    video.write_bytes(data[:len(data) // 2])
    res = CliRunner().invoke(build_cli(), ["manufacturing", "stream", str(video), "--quiet",
                                           "--events", str(tmp_path / "ev2.jsonl")])
    assert res.exit_code == EXIT_SOURCE_FAULT, res.output
    assert "ended before its declared frame count" in res.output
    last = json.loads((tmp_path / "ev2.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "source_ended_early" and last["declared_frames"] == 25


def test_stream_as_a_service_appends_and_ends_on_sigterm(tmp_path, monkeypatch):
    """--append adds to the files a stream started again wrote before; SIGTERM (a service
    manager's stop) ends the stream after the step in hand with its summary, a stop sent
    twice ends it once, and its handler is put back after."""
    import os
    import signal

    from deepseek.manufacturing.sources import FrameSource
    from deepseek.service import ServiceNotifier

    cli = build_cli()
    line = ["manufacturing", "stream", "synthetic:?seed=5&frames=6&width=96&height=64",
            "--quiet", "--scores", str(tmp_path / "sc.csv"), "--events",
            str(tmp_path / "ev.jsonl")]
    for extra in ([], ["--append"]):
        res = CliRunner().invoke(cli, line + extra)
        assert res.exit_code == 0, res.output
    rows = (tmp_path / "sc.csv").read_text().splitlines()
    assert rows.count("frame,score") == 1 and len(rows) == 1 + 2 * 6
    truth = tmp_path / "truth.csv"
    truth.write_text("frame,defect\n" + "".join(f"{i},0\n" for i in range(6)))
    for pred, why in (("sc.csv", "frame 0 again"), ("ev.jsonl", "a second run")):
        # two runs fit no one truth file: said, never read one over the other
        res = CliRunner().invoke(cli, ["manufacturing", "evaluate", "--pred",
                                       str(tmp_path / pred), "--ref", str(truth)])
        assert res.exit_code == 2 and why in res.output, (pred, res.output)
    res = CliRunner().invoke(cli, line)  # without: started afresh
    assert len((tmp_path / "sc.csv").read_text().splitlines()) == 1 + 6

    real_get = FrameSource.get
    events = tmp_path / "ev.jsonl"

    def get(self, *a, **k):  # systemctl stop while a crack's event is under way
        lines = [json.loads(x)["event"] for x in events.read_text().splitlines()]
        if lines and lines[-1] == "defect" and "stop sent" not in told:
            told.append("stop sent")
            os.kill(os.getpid(), signal.SIGTERM)
        return real_get(self, *a, **k)

    def stopping(self):  # the stop sent again (a wrapper passing it on) as the stream ends
        os.kill(os.getpid(), signal.SIGTERM)
        told.append("stopping")

    told: list[str] = []

    monkeypatch.setattr(FrameSource, "get", get)
    monkeypatch.setattr(ServiceNotifier, "stopping", stopping)
    long = ["manufacturing", "stream", "synthetic:?seed=5&frames=600&width=96&height=64",
            "--quiet", "--json", "--events", str(events)]
    with own_sigterm_handler() as handler:  # the one the command is given
        res = CliRunner().invoke(cli, long)
    # ended after the step in hand, as the source's end would: the event under way ended
    # at the last frame decided, the summary printed; the second stop neither broke that
    # nor reached the handler put back after it (before, it did: a process killed before
    # its last words; and the first one left the event without its end)
    assert res.exit_code == 0 and "stopped (SIGTERM" in res.stderr, res.output
    summary = json.loads(res.stdout)
    assert summary["stopped"] and 0 < summary["frames"] < 600
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    assert [x["event"] for x in lines[-2:]] == ["defect", "clear"]
    assert lines[-1]["frame"] == summary["frames"] - 1  # synthetic frames count from 0
    assert told == ["stop sent", "stopping"] and handler["calls"] == 0 \
        and handler["after"] is handler["own"]


def test_stream_loads_its_model_again_on_sighup_without_stopping(tmp_path, monkeypatch):
    """SIGHUP (systemctl reload): the model is loaded again in a thread while the stream runs
    on, and decides from the next step; the events say from which frame, the summary how
    many reloads; a service manager (Type=notify) is told ready, the reload and the stop."""
    import os
    import signal
    import socket

    from deepseek.loader import ModelLoader, save_model
    from deepseek.manufacturing.sources import FrameSource
    from tests.shared import pending_datagrams as _pending

    m = ModelLoader.load("defect-3dcnn-lstm", device="cpu")
    weights = save_model(m.module, tmp_path / "model.safetensors",
                         architecture="defect-3dcnn-lstm", config=m.config)
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # systemd's, Type=notify
    manager.bind("\0" + f"deepseek-stream-{os.getpid()}")
    manager.settimeout(120)  # a reload that never ends fails the test, not the suite
    monkeypatch.setenv("NOTIFY_SOCKET", f"@deepseek-stream-{os.getpid()}")
    real_get, calls, told = FrameSource.get, [0], []

    def get(self, *a, **k):
        calls[0] += 1
        if calls[0] == 2:
            signal.raise_signal(signal.SIGHUP)  # systemctl reload, while the stream runs
        elif calls[0] == 3:  # the next step waits until the reload is told done (a test's
            while not told or not told[-1].startswith("READY=1\nSTATUS=deciding"):  # order)
                told.append(manager.recv(4096).decode())
        return real_get(self, *a, **k)

    monkeypatch.setattr(FrameSource, "get", get)
    before = signal.getsignal(signal.SIGHUP)
    events = tmp_path / "ev.jsonl"
    with manager:
        res = CliRunner().invoke(build_cli(), [
            "manufacturing", "stream", "synthetic:?seed=5&frames=12&width=96&height=64",
            "--model", str(weights), "--quiet", "--json", "--events", str(events)])
        told += _pending(manager)
    assert res.exit_code == 0, res.output
    # told: ready once frames flow, the reload around it, the stop
    assert told[0].startswith("READY=1\nSTATUS=") and told[-1] == "STOPPING=1"
    reloading = [i for i, m in enumerate(told) if m.startswith("RELOADING=1")]
    after = [m for m in told[reloading[0] + 1:] if not m.startswith("STATUS=")]
    assert len(reloading) == 1 and after[0].startswith("READY=1\nSTATUS=deciding with sha256 ")
    assert f"reload: {weights} loaded (sha256 " in res.stderr
    summary = json.loads(res.stdout)
    assert summary["reloads"] == 1 and summary["frames"] == 12
    models = [json.loads(x) for x in events.read_text().splitlines()
              if json.loads(x)["event"] == "model"]
    assert len(models) == 1 and models[0]["model_sha256"] == summary["model_sha256"]
    assert signal.getsignal(signal.SIGHUP) == before  # put back


def test_a_stream_run_in_a_terminal_ends_when_the_terminal_closes(monkeypatch):
    """A stream started in a terminal: the terminal's hangup as its window closes ends the
    stream as a stop does (its summary, exit status 0, the service manager told of the
    stop), not with a reload. (Whether the terminal is there is what the process sees of it,
    ``deepseek.service.has_terminal``; a real pseudo-terminal closed under a running watch
    is in test_watch.)"""
    import os
    import signal
    import socket

    import deepseek.service as service
    from deepseek.manufacturing.sources import FrameSource
    from tests.shared import pending_datagrams

    terminal = [True]
    monkeypatch.setattr(service, "has_terminal", lambda: terminal[0])
    monkeypatch.setattr(service, "_isatty", lambda fd: False)  # this process's own stay
    real_get, calls = FrameSource.get, [0]

    def get(self, *a, **k):
        calls[0] += 1
        if calls[0] == 3:
            terminal[0] = False  # the window closed: the kernel hangs the terminal up
            signal.raise_signal(signal.SIGHUP)
        return real_get(self, *a, **k)

    monkeypatch.setattr(FrameSource, "get", get)
    name = f"deepseek-stream-hangup-{os.getpid()}"
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind("\0" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    with manager:
        res = CliRunner().invoke(build_cli(), [
            "manufacturing", "stream", "synthetic:?seed=5&frames=600&width=96&height=64",
            "--quiet", "--json"])
        told = pending_datagrams(manager)
    assert res.exit_code == 0 and "stopped (SIGTERM, or the terminal closed)" in res.stderr, \
        res.output
    assert json.loads(res.stdout)["stopped"]
    assert "reload" not in res.stderr and not any(m.startswith("RELOADING") for m in told)
    assert told[-1] == "STOPPING=1"


def test_a_stream_whose_source_hangs_says_so_and_stops_feeding_the_watchdog(monkeypatch):
    """A source whose read hangs (a stuck pipeline, a driver) leaves the stream waiting for
    frames: it feeds the service manager's watchdog only while the source is heard from, so
    that after STALL_S of silence the watchdog restarts it; it says so once, in the log and
    in its status."""
    import os
    import socket
    import threading

    import deepseek.manufacturing.sources as sources
    import deepseek.readers as readers
    from deepseek.manufacturing.sources import FrameSource
    from tests.manufacturing.test_sources import _Hanging
    from tests.shared import pending_datagrams, told_until

    camera = _Hanging([np.full((64, 96), 150, np.uint8) for _ in range(8)])
    monkeypatch.setattr(sources, "STALL_S", 0.3)
    monkeypatch.setattr(readers, "open", lambda source, **kw: FrameSource(
        camera, "fake://cam", reconnect_attempts=0))
    name = f"deepseek-stall-{os.getpid()}"
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind("\0" + name)
    manager.settimeout(120)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s at most
    told: list[str] = []

    def manager_side():  # the stall said, the camera's read lets go (its connection drops)
        told.extend(told_until(manager, "STATUS=stalled"))
        told.extend(pending_datagrams(manager))  # (what came with it: no ping)
        camera.release.set()

    side = threading.Thread(target=manager_side, daemon=True)
    side.start()
    with manager:
        res = CliRunner().invoke(build_cli(), ["manufacturing", "stream", "fake://cam",
                                               "--quiet", "--json"])
        side.join(120)
    assert res.exit_code == 3, res.output  # the source lost: its connection dropped
    assert "fake://cam: no word from the source for 0 s (its read hangs); the service " \
        "manager's watchdog will restart the stream" in res.stderr
    stall = next(i for i, m in enumerate(told) if m.startswith("STATUS=stalled: no word"))
    assert "WATCHDOG=1" in told[:stall] and "WATCHDOG=1" not in told[stall:]
