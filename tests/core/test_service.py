"""deepseek.service: systemd's notification protocol (Type=notify), as the watch and the
stream tell a service manager how they stand."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from deepseek.service import ServiceNotifier

from ..shared import pending_datagrams as _pending
from ..shared import process_ended


def _listener(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(30)  # a message that never comes fails the test, not the suite
    return sock


@pytest.mark.parametrize("abstract", [False, True])
def test_the_manager_is_told_ready_status_reloads_and_stop(tmp_path, abstract):
    name = f"deepseek-test-{os.getpid()}-{tmp_path.name}"
    address = "\0" + name if abstract else str(tmp_path / "notify")
    with _listener(address) as sock:
        env = {"NOTIFY_SOCKET": "@" + name if abstract else address,
               "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
        n = ServiceNotifier(env)
        assert n.active and n.watchdog_s == 1.0
        n.ready("watching /srv/line\nline3")  # one field stays one line
        n.status("3 photos scored")
        n.alive()
        n.alive()  # within half the interval: one ping
        n.reloading()
        n.stopping()
        got = _pending(sock)
    assert got[:3] == ["READY=1\nSTATUS=watching /srv/line line3", "STATUS=3 photos scored",
                       "WATCHDOG=1"]
    assert got[3].startswith("RELOADING=1\nMONOTONIC_USEC=") and got[4:] == ["STOPPING=1"]
    assert int(got[3].split("=")[-1]) > 0


def test_without_a_manager_nothing_is_sent_and_a_gone_one_stops_nothing(tmp_path, caplog):
    # (a `deepseek -q` run earlier in this process leaves the deepseek loggers at ERROR)
    caplog.set_level("WARNING", logger="deepseek.service")
    quiet = ServiceNotifier({})
    assert not quiet.active and quiet.watchdog_s is None
    quiet.ready("x")  # nothing to send to: nothing happens
    quiet.reloading()
    other = ServiceNotifier({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1",
                             "NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert other.watchdog_s is None  # the watchdog is another process's
    other.ready()
    other.status("still going")  # the manager gone: said once, never raised
    assert caplog.text.count("cannot tell the service manager") == 1


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGHUP"), reason="no SIGHUP here")
def test_a_hangup_is_told_from_a_reload_by_the_terminal_and_nohup_is_kept(monkeypatch):
    """on_hangup: SIGHUP with no terminal (a service) or with the terminal the run was
    started in still open (kill -HUP) reloads; once that terminal is gone (its window
    closed) it stops the run, or, under nohup (SIGHUP ignored when the run began), does
    nothing; the handler before is put back. (A real pseudo-terminal closed under a running
    watch is in tests/manufacturing/test_watch.py.)"""
    import signal

    import deepseek.service as service

    terminal = [False]
    monkeypatch.setattr(service, "has_terminal", lambda: terminal[0])
    monkeypatch.setattr(service, "_isatty", lambda fd: False)  # this process's own stay
    said: list[str] = []

    def hup(started_in_terminal: bool, still_there: bool) -> list[str]:
        said.clear()
        terminal[0] = started_in_terminal
        with service.on_hangup(lambda: said.append("reload"), lambda: said.append("stop")):
            terminal[0] = still_there
            signal.raise_signal(signal.SIGHUP)
        return list(said)

    before = signal.signal(signal.SIGHUP, lambda *_: None)
    try:
        assert hup(False, False) == ["reload"]  # a service: systemctl reload
        assert hup(True, True) == ["reload"]  # kill -HUP beside an open terminal
        assert hup(True, False) == ["stop"]  # the terminal's own hangup
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # nohup
        assert hup(True, False) == []  # ignored, as asked
        assert hup(True, True) == ["reload"]
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN  # put back
    finally:
        signal.signal(signal.SIGHUP, before)


class _SendThatSignals:
    """A socket's ``send`` that raises ``signum`` in this process the first time, as a second
    signal arriving while the first one's handler is inside ``SignalEvent.set``."""

    def __init__(self, sock, signum):
        self.sock, self.signum, self.raised = sock, signum, 0

    def send(self, data):
        if not self.raised:
            self.raised += 1
            import signal

            signal.raise_signal(self.signum)  # handled before this call returns
        return self.sock.send(data)

    def close(self):
        self.sock.close()


def test_a_signal_event_is_set_by_a_handler_that_interrupts_its_own_set():
    """SignalEvent: what a signal handler tells a run's loop. A second signal whose handler
    runs while the first's is inside ``set`` (a stop sent twice: by a service manager and
    by the wrapper that passes it on) sets it again and returns; a threading.Event there
    waits forever on the lock its own thread holds. Nothing is lost between a ``clear`` and
    a ``set``, and a handler's ``set`` after ``close`` still sets the flag."""
    import select
    import signal

    from deepseek.service import SignalEvent, on_signal

    ev = SignalEvent()
    calls: list[bool] = []
    assert not ev.is_set() and ev.wait(0) is False
    ev._write = _SendThatSignals(ev._write, signal.SIGUSR1)
    with on_signal("SIGUSR1", lambda *_: (calls.append(ev.is_set()), ev.set())):
        signal.raise_signal(signal.SIGUSR1)  # the first stop; the second comes inside it
    assert calls == [False, True] and ev._write.raised == 1  # nested: set, then set again
    assert ev.is_set() and ev.wait() is True  # set: no wait
    assert select.select([ev._read], [], [], 0)[0]  # the wake-up is there for a waiter
    ev.clear()
    assert not ev.is_set() and not select.select([ev._read], [], [], 0)[0]  # drained
    assert ev.wait(0) is False
    for _ in range(1_000):  # more wake-ups than the socket buffer holds (278 here): none blocks
        ev.set()
    ev.clear()
    assert not select.select([ev._read], [], [], 0)[0]
    ev.close()
    ev.set()  # a handler that runs after the run closed it
    assert ev.is_set() and ev.wait(5) is True


def test_a_signal_event_wakes_a_thread_that_waits_on_it():
    """The reloader's use: a thread waits, a handler (here another thread) sets it; the
    waiter wakes whichever of the two comes first (the flag is read before the wait)."""
    import threading

    from deepseek.service import SignalEvent

    for _ in range(20):
        ev, woke = SignalEvent(), []
        waiter = threading.Thread(target=lambda: woke.append(ev.wait()))  # noqa: B023
        waiter.start()
        ev.set()
        waiter.join()
        assert woke == [True]
        ev.close()


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"),
                    reason="the parent-death signal is Linux's")
def test_a_worker_dies_with_the_parent_that_started_it(tmp_path):
    """die_with_parent: a worker process (of `deepseek batch`, `tune --workers`, `serve
    --workers`) gets SIGTERM when the command that started it dies, however it died (here
    SIGKILL, which no handler sees), and at once when it is gone already."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import deepseek.service

    root = str(Path(deepseek.service.__file__).resolve().parents[1])  # (the package's home)
    worker = ("import os, sys, threading\n"
              "from deepseek.service import die_with_parent\n"
              "die_with_parent(int(sys.argv[1]))\n"
              "open(sys.argv[2], 'w').write(str(os.getpid()))\n"
              "threading.Event().wait()\n")
    parent = ("import subprocess, sys, os, threading\n"
              "subprocess.Popen([sys.executable, '-c', sys.argv[1], str(os.getpid()),"
              " sys.argv[2]])\n"
              "threading.Event().wait()\n")
    mark = tmp_path / "worker.pid"
    env = {**os.environ, "PYTHONPATH": root}
    proc = subprocess.Popen([sys.executable, "-c", parent, worker, str(mark)], env=env)
    deadline = time.monotonic() + 120
    try:  # until the worker runs (a poll with a deadline)
        while not mark.exists() or not mark.read_text():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    pid = int(mark.read_text())


    deadline = time.monotonic() + 60
    while not process_ended(pid):  # it ends (a poll with a deadline)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError("the worker outlived its killed parent")
        time.sleep(0.05)
    # a parent gone before the call: SIGTERM at once
    late = subprocess.run([sys.executable, "-c", worker, "1", str(tmp_path / "late.pid")],
                          env=env, timeout=120)
    assert late.returncode == -signal.SIGTERM and not (tmp_path / "late.pid").exists()
