"""Where the development data of ``../shared/data`` are, when this checkout has them, and
small helpers the tests share.

Tests on real data skip with a reason when the folder is absent (a fresh clone in CI); the
data are never copied into the repository. ``DEEPSEEK_SHARED_DATA`` points elsewhere.
"""

from __future__ import annotations

import contextlib
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


class FillingDisk:
    """os.write as a disk that fills: ``full`` refuses every write (no space); ``room``
    bytes at most then cut a write short, as a disk that fills in the middle of a line."""

    def __init__(self) -> None:
        self.full, self.room = False, None

    def __call__(self, fd, data):
        import errno

        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if self.room is not None:
            n = min(len(data), self.room)
            self.room -= n
            if n == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return os.write(fd, bytes(data[:n]))
        return os.write(fd, data)


class Terminal:
    """A command run as from a terminal (:func:`in_a_terminal`): ``proc``, the process;
    ``manager``, the socket a service manager would listen on (``Type=notify``), or None."""

    def __init__(self, proc, far: int, manager) -> None:
        self.proc, self.manager, self._far = proc, manager, far

    def hang_up(self) -> None:
        """The terminal window closed: the kernel hangs the terminal up."""
        if self._far is not None:
            os.close(self._far)
            self._far = None


@contextlib.contextmanager
def in_a_terminal(args: list[str], *, notify: bool = False, stdout=None,
                  env: dict[str, str] | None = None):
    """``args`` run as from a terminal: a session of its own whose controlling terminal is a
    pseudo-terminal, the :class:`Terminal` yielded. ``notify``: told to notify a socket
    (``NOTIFY_SOCKET``) as systemd would be; ``stdout``: a file its standard output is
    redirected to, rather than the terminal; ``env``: more environment. A command still
    running after the block, or after 300 s (hung: it fails the test, not the suite), is
    killed."""
    import secrets
    import subprocess
    import sys
    import threading

    env = {**{k: v for k, v in os.environ.items()
              if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}, **(env or {})}
    manager = None
    if notify:
        name = f"deepseek-tty-{os.getpid()}-{secrets.token_hex(4)}"
        manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        manager.bind("\0" + name)
        manager.settimeout(120)
        env["NOTIFY_SOCKET"] = "@" + name
    far, near = os.openpty()
    launch = ("import fcntl, os, sys, termios\n"
              "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"  # the terminal: this session's own
              "os.execv(sys.argv[1], sys.argv[1:])\n")
    try:
        proc = subprocess.Popen([sys.executable, "-c", launch, *args], stdin=near,
                                stdout=near if stdout is None else stdout, stderr=near,
                                start_new_session=True, env=env)
    finally:
        os.close(near)
    term = Terminal(proc, far, manager)
    guard = threading.Timer(300, proc.kill)
    guard.start()
    try:
        yield term
    finally:
        guard.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        term.hang_up()
        if manager is not None:
            manager.close()


def told_until(manager, prefix: str) -> list[str]:
    """What the service manager is told, up to the message that starts with ``prefix``."""
    told = []
    while not told or not told[-1].startswith(prefix):
        told.append(manager.recv(4096).decode())
    return told


def process_ended(pid: int) -> bool:
    """Whether process ``pid`` has ended: gone, or a zombie that its parent (one that died,
    for a worker left behind) has not reaped yet (Linux's ``/proc``)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@contextlib.contextmanager
def own_sigterm_handler():
    """The block runs with a SIGTERM handler of the test's own, as a command embedded in an
    application is given one: yields a dict whose ``"calls"`` counts the signals that
    reached that handler and whose ``"after"`` is, once the block ends, the handler then
    in place (a command must put back the one it was given). The handler before is put
    back after."""
    import signal

    got: dict = {"calls": 0, "after": None}

    def own(*_):
        got["calls"] += 1

    got["own"] = own
    before = signal.signal(signal.SIGTERM, own)
    try:
        yield got
        got["after"] = signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, before)
