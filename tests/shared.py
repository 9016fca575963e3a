"""Where the development data of ``../shared/data`` are, when this checkout has them, and
small helpers the tests share.

Tests on real data skip with a reason when the folder is absent (a fresh clone in CI); the
data are never copied into the repository. ``DEEPSEEK_SHARED_DATA`` points elsewhere.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def assert_labelled(result) -> None:
    """Every metric and timing of a pipeline result carries its label and unit (a Measure),
    so the report never shows a raw key."""
    from deepseek.report import Measure

    raw = [k for k, v in {**result.metrics, **result.timings}.items()
           if not isinstance(v, Measure)]
    assert not raw, f"{result.pipeline}: figures without label and unit: {raw}"


def shared_data(name: str) -> Path | None:
    base = Path(os.environ.get("DEEPSEEK_SHARED_DATA", ROOT.parent / "shared" / "data"))
    path = base / name
    return path if path.is_dir() else None


def pending_datagrams(sock: socket.socket) -> list[str]:
    """The datagrams queued on ``sock`` (all sent before this is called), as text: what a
    service manager was told (:mod:`deepseek.service`)."""
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        return out
    finally:
        sock.settimeout(30)


def in_a_terminal(args: list[str], manager_name: str = "", *, nohup: bool = False,
                  stdout=None):
    """``args`` run as from a terminal: a session of its own whose controlling terminal is a
    pseudo-terminal (returned: the process and the terminal's far end, whose closing is the
    terminal window closing), told to notify ``manager_name`` (an abstract socket's name);
    ``nohup``: SIGHUP ignored from the start, as ``nohup`` does; ``stdout``: a file its
    standard output is redirected to, rather than the terminal."""
    import subprocess
    import sys

    far, near = os.openpty()
    launch = ("import fcntl, os, signal, sys, termios\n"
              "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
              + ("signal.signal(signal.SIGHUP, signal.SIG_IGN)\n" if nohup else "")
              + "os.execv(sys.argv[1], sys.argv[1:])\n")
    env = {**os.environ, "NOTIFY_SOCKET": "@" + manager_name} if manager_name else \
        {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    env.pop("WATCHDOG_USEC", None)
    proc = subprocess.Popen([sys.executable, "-c", launch, *args], stdin=near,
                            stdout=near if stdout is None else stdout,
                            stderr=near, start_new_session=True, env=env)
    os.close(near)
    return proc, far


def told_until(manager, prefix: str) -> list[str]:
    """What the service manager is told, up to the message that starts with ``prefix``."""
    told = []
    while not told or not told[-1].startswith(prefix):
        told.append(manager.recv(4096).decode())
    return told
