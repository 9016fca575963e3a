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
"""

from __future__ import annotations

import logging
import os
import socket
import time

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
