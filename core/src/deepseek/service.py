"""Telling a service manager how a long-running command stands (systemd's notification
protocol, ``Type=notify``).

A unit with ``Type=notify`` gives its process the address of a datagram socket in
``NOTIFY_SOCKET``; the process sends it ``KEY=VALUE`` lines: ``READY=1`` once it does what it
is for (``systemctl start`` returns then, and a command that fails before it is a failed
start, not an "active" service that dies a second later), ``STATUS=...`` (a line
``systemctl status`` shows), ``RELOADING=1`` and ``READY=1`` around a reload, ``STOPPING=1``,
and ``WATCHDOG=1`` at least every ``WATCHDOG_USEC`` microseconds where the unit sets
``WatchdogSec=`` (a process that stops sending is killed and started again). The protocol is
systemd's documented, stable interface (``sd_notify(3)``); without ``NOTIFY_SOCKET`` (a
command run by hand, in a container) every call does nothing.

SIGHUP means two things to a long-running command: a service manager's reload
(``ExecReload=/bin/kill -HUP $MAINPID``), and the hangup of the terminal a command was
started in, as its window closes. :func:`on_hangup` tells them apart: a hangup ends the run
as Ctrl-C does (the run held no port or camera past its terminal, and its last words are not
a write error on the closed terminal), and ``nohup`` keeps it running, as asked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)


class ServiceNotifier:
    """Sends a service manager what :func:`notify` is given, where ``NOTIFY_SOCKET`` names
    its socket (``@name`` for an abstract one). A send that fails (the manager gone) is
    logged once and never stops the command."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        where = env.get("NOTIFY_SOCKET", "")
        self.address = ("\0" + where[1:]) if where.startswith("@") else where
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        #: seconds between two watchdog pings (half the manager's interval), or None
        self.watchdog_s = (int(usec) / 2e6 if usec.isdigit() and int(usec) > 0
                           and (not pid or pid == str(os.getpid())) else None)
        self._last_ping = float("-inf")
        self._said_failure = False

    @property
    def active(self) -> bool:
        """Whether a service manager listens."""
        return bool(self.address)

    def notify(self, **fields: object) -> None:
        """Send ``fields`` as ``KEY=VALUE`` lines (keys upper-cased: ``ready=1`` is
        ``READY=1``); a value's new lines are made spaces, so one field stays one line."""
        if not self.address or not fields:
            return
        msg = "\n".join(f"{k.upper()}={str(v).replace(chr(10), ' ')}"
                        for k, v in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(msg.encode(), self.address)
        except OSError as exc:
            if not self._said_failure:
                self._said_failure = True
                log.warning("cannot tell the service manager (NOTIFY_SOCKET=%s): %s",
                            self.address.replace("\0", "@"), exc)

    def ready(self, status: str = "") -> None:
        """``READY=1`` (and ``STATUS``)."""
        self.notify(ready=1, **({"status": status} if status else {}))

    def reloading(self) -> None:
        """``RELOADING=1`` with the monotonic time systemd pairs it with."""
        if not self.address:
            return
        self.notify(reloading=1, monotonic_usec=time.clock_gettime_ns(time.CLOCK_MONOTONIC)
                    // 1000)

    def status(self, status: str) -> None:
        """``STATUS=...``: the line ``systemctl status`` shows."""
        self.notify(status=status)

    def stopping(self) -> None:
        """``STOPPING=1``."""
        self.notify(stopping=1)

    def alive(self) -> None:
        """``WATCHDOG=1``, where the manager watches (``WatchdogSec=``), at most every half
        of its interval; call it as often as the work loop turns."""
        if self.watchdog_s is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_s:
            self._last_ping = now
            self.notify(watchdog=1)


class SignalEvent:
    """An event that a signal handler may set: what a handler asks of the run (stop; load
    the model again) is said to its loop through this.

    A :class:`threading.Event` is no place for that. Its ``set`` and ``clear`` hold a lock,
    and a handler runs in the main thread between two steps of whatever the thread was
    doing. A handler that sets the event while the main thread holds that lock (in the
    previous signal's handler: a stop sent twice, by a service manager and the wrapper that
    forwards it; or in the loop's own ``clear`` after a reload, as a second reload comes)
    waits for a lock its own thread holds, and the process hangs until it is killed, its
    summary unsaid. Here ``set`` takes no lock: it sets a flag and writes one byte to a
    socket pair that :meth:`wait` watches (the wake-up a handler may give: no lock, no
    allocation that can block). :meth:`is_set` reads the flag, as the loops that poll do
    (watchfiles' ``stop_event``, the feed server's receive loop); :meth:`wait` suits one
    waiting thread (a reloader)."""

    def __init__(self) -> None:
        self._flag = False
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)

    def is_set(self) -> bool:
        """Whether it is set (and not cleared since)."""
        return self._flag

    def set(self) -> None:
        """Set it and wake :meth:`wait`; safe in a signal handler, in any thread, and
        nested in itself."""
        self._flag = True
        try:
            self._write.send(b"\0")
        except OSError:  # a wake-up is there already (buffer full), or it is closed
            pass

    def clear(self) -> None:
        """Unset it (the flag first: a :meth:`set` in between is kept)."""
        self._flag = False
        try:
            while self._read.recv(4096):
                pass
        except OSError:  # drained (BlockingIOError), or closed
            pass

    def wait(self, timeout: float | None = None) -> bool:
        """Until it is set or ``timeout`` seconds pass (None: no limit); whether it is
        set."""
        import select

        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._flag:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            try:
                select.select([self._read], [], [], left)
            except (OSError, ValueError):  # closed while waiting
                break
        return self._flag

    def close(self) -> None:
        """Let go of its socket pair (a later :meth:`set` still sets the flag)."""
        self._read.close()
        self._write.close()


def die_with_parent(parent: int) -> None:
    """SIGTERM to this process when its parent ``parent`` (a pid) dies, however it died
    (Linux's ``PR_SET_PDEATHSIG``; elsewhere nothing), and at once if it is gone already: a
    worker process must not outlive the command that started it (a command killed outright
    cannot pass its stop on). Call it first thing in the worker."""
    import sys

    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def on_signal(name: str, handler: Any) -> Iterator[None]:
    """``handler`` answers the signal ``name`` (``"SIGTERM"``: a service manager's stop;
    ``"SIGHUP"``: its reload) while the block runs, the handler before it put back after; in
    a thread other than the main one (an embedding application's), or where the system has
    no such signal, the application's own signal handling is left as it is."""
    signum = getattr(signal, name, None)
    try:
        before = None if signum is None else signal.signal(signum, handler)
    except ValueError:  # not the main thread
        before = None
    try:
        yield
    finally:
        if before is not None:
            signal.signal(signum, before)


@contextlib.contextmanager
def stop_signals(reload: Callable[[], None] | None = None) -> Iterator[SignalEvent]:
    """The stop a long-running command takes from outside, as a :class:`SignalEvent` its
    loop reads: set by SIGTERM (a service manager's stop, ``timeout``, ``kill``) and by the
    hangup of the terminal the run was started in (:func:`on_hangup`); SIGHUP otherwise
    calls ``reload`` (a reload asked; ``None``: nothing to reload), which must take no lock
    either. The handlers before are put back when the block ends, and the event closed."""
    stop = SignalEvent()
    try:
        with on_signal("SIGTERM", lambda *_: stop.set()), \
                on_hangup(reload or (lambda: None), stop.set):
            yield stop
    finally:
        stop.close()


def has_terminal() -> bool:
    """Whether this process has a controlling terminal: it was started in one, and the
    terminal is still open."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:  # none (a service; a terminal hung up), or no such device here
        return False
    os.close(fd)
    return True


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


@contextlib.contextmanager
def on_hangup(reload: Callable[[], None], stop: Callable[[], None]) -> Iterator[None]:
    """SIGHUP while the block runs. From a service manager (``systemctl reload``), or sent
    by hand (``kill -HUP``) while the terminal the run was started in is open: ``reload()``.
    From that terminal as it closes (its hangup: the terminal is gone): ``stop()``, as
    Ctrl-C would, once the run's standard streams that were the terminal point at
    /dev/null, so that its last words are not a write error (those redirected to files get
    them). Under ``nohup`` (SIGHUP ignored when the run began) the hangup is ignored, as
    asked, and the run goes on."""
    started_in_terminal = has_terminal()
    nohup = hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    ttys = [fd for fd in (0, 1, 2) if _isatty(fd)]

    def hung_up(*_: Any) -> None:
        if started_in_terminal and not has_terminal():
            if ttys:  # the closed terminal reads nothing and takes no more output
                null = os.open(os.devnull, os.O_RDWR)
                for fd in ttys:
                    os.dup2(null, fd)
                os.close(null)
                ttys.clear()
            if not nohup:
                stop()
            return
        reload()

    with on_signal("SIGHUP", hung_up):
        yield
