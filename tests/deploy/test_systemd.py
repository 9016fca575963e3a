"""deploy/systemd: the line PC's `score --watch` and `stream` services, checked by systemd's
own verifier (where it is installed) and their command lines by the CLI that will parse
them."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
UNIT = UNITS / "deepseek-watch@.service"
STREAM = UNITS / "deepseek-stream@.service"
FEED = UNITS / "deepseek-feed@.service"


def _exec_start(text: str, env: dict[str, str] | None = None) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", text)  # continuation lines
    line = next(x for x in joined.splitlines() if x.startswith("ExecStart="))
    words = shlex.split(line[len("ExecStart="):].replace("%i", "line3"))
    # systemd puts "${NAME}" in as one word, whatever spaces its value holds
    return [(env or {}).get(w[2:-1], w) if re.fullmatch(r"\$\{\w+\}", w) else w
            for w in words]


def _parsed(args: list[str]) -> dict:
    """The options ``deepseek <plugin> <command> ...`` would run with (unknown options, bad
    values: refused here)."""
    from deepseek.cli import build_cli

    assert args[0] == "/opt/deepseek/bin/deepseek" and args[1] in ("manufacturing", "finance")
    cli = build_cli()
    group_ctx = cli.make_context("deepseek", [args[1]], resilient_parsing=True)
    command = cli.get_command(group_ctx, args[1]).get_command(group_ctx, args[2])
    return command.make_context(args[2], args[3:]).params


def test_the_watch_service_starts_a_command_the_cli_takes():
    args = _exec_start(UNIT.read_text())
    assert args[2] == "score"
    params = _parsed(args)
    assert params["watch"] and params["as_json"]
    assert params["paths"] == ("/srv/line/line3",)
    assert str(params["csv_path"]).startswith("/var/lib/deepseek/line3/")
    assert str(params["state_path"]).startswith("/var/lib/deepseek/line3/")
    # the CSV and the state lie in the service's state folder, the one place it may write
    assert "StateDirectory=deepseek/%i" in UNIT.read_text()


def test_the_stream_service_starts_a_command_the_cli_takes():
    """The camera named in the instance's environment file, a GStreamer pipeline with its
    spaces included; the events appended in the service's state folder."""
    text = STREAM.read_text()
    pipeline = "rtspsrc location=rtsp://10.0.0.7/line3 ! decodebin ! videoconvert ! appsink"
    args = _exec_start(text, {"SOURCE": pipeline, "MODEL": "/srv/models/line3/m.safetensors"})
    assert args[2] == "stream"
    params = _parsed(args)
    assert params["source"] == pipeline and params["model"] == "/srv/models/line3/m.safetensors"
    assert params["append"] and params["quiet"]
    assert str(params["events_path"]).startswith("/var/lib/deepseek/line3/")
    assert params["scores_path"] is None  # 300 rows a second for days: not by default
    assert "StateDirectory=deepseek/%i" in text and "EnvironmentFile=" in text


def test_the_feed_service_starts_a_command_the_cli_takes():
    """The address and the model named in the instance's environment file, which also holds
    the control key (the server reads DEEPSEEK_FEED_CONTROL_KEY from its environment)."""
    text = FEED.read_text()
    args = _exec_start(text, {"ADDRESS": "127.0.0.1:9999",
                              "MODEL": "/srv/models/usdm/model.safetensors"})
    assert args[1:3] == ["finance", "serve"]
    params = _parsed(args)
    assert params["address"] == "127.0.0.1:9999" and params["as_json"]
    assert params["model"] == "/srv/models/usdm/model.safetensors"
    assert "EnvironmentFile=/etc/deepseek/feed-%i.env" in text
    assert "DEEPSEEK_FEED_CONTROL_KEY" in text and "ExecReload=/bin/kill -HUP $MAINPID" in text


@pytest.mark.slow
def test_the_feed_service_command_tells_systemd_resets_on_reload_and_stops_on_hangup(
        tmp_path):
    """Run as systemd runs it: ready once its port is bound (the address in its status),
    its counters as its status and watchdog pings while it serves; SIGHUP (systemctl
    reload) resets the model's state before the next datagram. Started by hand in a
    terminal (here a pseudo-terminal), the same SIGHUP resets while the terminal is open,
    and the terminal's hangup as its window closes stops the server, its port freed (before,
    it reset and ran on behind the closed terminal): its counters reach the file its output
    goes to, exit status 0."""
    import json
    import re
    import signal
    import socket

    from deepseek.finance.feed import DECISION_STRUCT, pack_tick
    from deepseek.finance.synthetic import synthetic_ticks
    from tests.shared import in_a_terminal, pending_datagrams, told_until

    text = FEED.read_text()
    assert "Type=notify" in text and "NotifyAccess=main" in text
    watchdog_s = int(text.split("WatchdogSec=")[1].split()[0])
    args = _exec_start(text, {"ADDRESS": "127.0.0.1:0", "MODEL": "tick-gru"})
    args = [str(Path(sys.executable).with_name("deepseek")), *args[1:], "--time-window-s", "0"]
    counters = tmp_path / "counters.json"
    with counters.open("w") as out, in_a_terminal(
            args, notify=True, stdout=out,
            env={"WATCHDOG_USEC": str(watchdog_s * 10**6)}) as term:
        ready = term.manager.recv(4096).decode()
        where = re.fullmatch(r"READY=1\nSTATUS=serving tick-gru on udp://127\.0\.0\.1:(\d+)",
                             ready)
        assert where, ready
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(60)
            sock.connect(("127.0.0.1", int(where.group(1))))
            ticks = synthetic_ticks(4, seed=2)

            def ask(i):
                t = ticks[i]
                sock.send(pack_tick(i, int(t["time_ns"]), *(float(t[k]) for k in (
                    "bid", "ask", "bid_size", "ask_size", "bid_depth", "ask_depth",
                    "last_px", "last_size")), int(t["side"])))
                return DECISION_STRUCT.unpack(sock.recv(64))

            assert ask(0)[2:4] == (0, 0)  # status ok, sequence 0
            term.proc.send_signal(signal.SIGHUP)  # systemctl reload (the terminal open): a
            for i in (1, 2, 3):  # reset, applied before a datagram after the handler ran
                assert ask(i)[2:4] == (0, i)
        told = [ready, *told_until(term.manager, "STATUS=4 datagrams, 4 answered")]
        term.hang_up()  # the terminal window closed
        rc = term.proc.wait(timeout=60)
        told += pending_datagrams(term.manager)
    assert rc == 0
    assert "WATCHDOG=1" in told and told[-1] == "STOPPING=1"
    done = json.loads(counters.read_text())
    assert done["received"] == 4 and done["answered"] == 4 and done["resets"] == 1


@pytest.mark.parametrize("unit_file", [UNIT, STREAM, FEED], ids=["watch", "stream", "feed"])
def test_systemd_verifies_the_service(tmp_path, unit_file):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: the systemd package)")
    deepseek = Path(sys.executable).with_name("deepseek")
    assert deepseek.is_file()
    unit = tmp_path / unit_file.name.replace("@", "@line3")  # an instance, this install's
    unit.write_text(unit_file.read_text().replace("/opt/deepseek/bin/deepseek", str(deepseek)))
    res = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr


@pytest.mark.slow
def test_the_service_command_ends_on_sigterm_with_its_summary(tmp_path):
    """Run as systemd runs it (the unit's command, this install's paths): a photo's JSON line
    on stdout, its CSV row; on SIGHUP (systemctl reload) its model loaded again; on SIGTERM
    (systemctl stop) a summary and exit status 0; started again, it takes up its state and
    scores nothing twice. systemd is told (Type=notify) when it is ready, its status, that it
    is alive (WatchdogSec=) and that it stops."""
    import json
    import signal
    import threading

    import cv2
    import numpy as np

    line, state = tmp_path / "srv" / "line3", tmp_path / "state"
    line.mkdir(parents=True)
    img = np.full((64, 96), 150, np.uint8)
    cv2.imwrite(str(line / "p0.png"), img)
    args = _exec_start(UNIT.read_text())
    args = [str(Path(sys.executable).with_name("deepseek")), *args[1:]]
    args = [a.replace("/srv/line/line3", str(line)).replace("/var/lib/deepseek/line3",
                                                            str(state)) for a in args]
    model = args.index("--model")
    args[model:model + 2] = ["--threshold", "0.5"]  # the packaged weights stand in for a run's
    state.mkdir()

    import os
    import socket

    from tests.shared import pending_datagrams as _pending

    text = UNIT.read_text()
    assert "Type=notify" in text and "NotifyAccess=main" in text
    watchdog_s = int(text.split("WatchdogSec=")[1].split()[0])
    told: list[str] = []  # what systemd is told (Type=notify)

    def run(started) -> tuple[str, str]:
        manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        name = f"deepseek-unit-{os.getpid()}-{len(told)}"
        manager.bind("\0" + name)
        manager.settimeout(120)
        env = {**os.environ, "NOTIFY_SOCKET": "@" + name,
               "WATCHDOG_USEC": str(watchdog_s * 10**6)}
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
        guard = threading.Timer(300, proc.kill)  # a hung watch fails the test, not the suite
        guard.start()
        try:
            ready = manager.recv(4096).decode()  # systemctl start returns here
            assert ready.startswith("READY=1\nSTATUS=watching "), ready
            started(proc)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=120)
            told[:] = [ready, *_pending(manager)]
        finally:
            guard.cancel()
            manager.close()
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        assert told[-1] == "STOPPING=1"
        return out, err

    def first_photo(proc) -> None:
        first = json.loads(proc.stdout.readline())
        assert first["path"] == str(line / "p0.png") and first["defect"] is False
        assert "ExecReload=/bin/kill -HUP $MAINPID" in UNIT.read_text()
        proc.send_signal(signal.SIGHUP)  # systemctl reload: the model loaded again
        for said in proc.stderr:
            if said.startswith("reload:"):
                assert "reload: scoring with defect-3dcnn-lstm (sha256 " in said
                return
        raise AssertionError("the watch said nothing of the reload")

    _, err = run(first_photo)
    assert "watch ended: 1 photos scored, 0 flagged as defects, 0 unreadable" in err
    assert "WATCHDOG=1" in told and any(m.startswith("STATUS=1 photos scored, 0 flagged")
                                        for m in told)
    rows = (state / "scores.csv").read_text().splitlines()
    assert rows[0].startswith("path,") and rows[1].startswith(str(line / "p0.png"))
    said: list[str] = []

    def taken_up(proc) -> None:
        for line_said in proc.stderr:  # "watching ...", then what it takes up
            said.append(line_said)
            if line_said.startswith("taking up"):
                return

    out, err = run(taken_up)
    assert said[-1].startswith(f"taking up {state / 'watch-state.jsonl'}: 1 photos there")
    assert out == "" and "watch ended: 0 photos scored" in err
    assert len((state / "scores.csv").read_text().splitlines()) == 2
