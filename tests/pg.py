"""A throwaway PostgreSQL server for the tests, that cannot outlive the test process.

The server runs as a child of the test process (not daemonised by ``pg_ctl``), with the
kernel told to send it SIGQUIT (PostgreSQL's immediate shutdown) when that process dies
(``PR_SET_PDEATHSIG``): a run that ends normally stops it, and so does one that crashes or is
killed. As root (CI), initdb and the server run as the ``postgres`` user.
"""

from __future__ import annotations

import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1


def pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _as_server_user() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid


def _child_setup(ids: tuple[int, int] | None, die_with_parent: bool):  # type: ignore[no-untyped-def]
    def setup() -> None:
        if ids is not None:
            os.setgid(ids[1])
            os.setuid(ids[0])
        if die_with_parent:  # after the change of user, which clears it
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGQUIT)

    return setup


def start_postgres(tmp: Path, deadline_s: float = 120.0
                   ) -> tuple[str, subprocess.Popen] | str:
    """``(url, server process)`` of a fresh cluster on loopback, or why there is none."""
    initdb, postgres = pg_bin("initdb"), pg_bin("postgres")
    if not initdb or not postgres:
        return "PostgreSQL's initdb/postgres are not installed (Debian: apt install postgresql)"
    try:
        ids = _as_server_user()
    except KeyError:
        return "running as root and there is no 'postgres' user to run the server"
    tmp.chmod(0o777)
    data = tmp / "data"
    res = subprocess.run([initdb, "-D", str(data), "-A", "trust", "-U", "postgres"],
                         capture_output=True, text=True, timeout=300,
                         preexec_fn=_child_setup(ids, False))
    if res.returncode:
        return f"initdb failed: {res.stderr[-300:]}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp / "log", "w")
    proc = subprocess.Popen([postgres, "-D", str(data), "-k", str(tmp), "-p", str(port),
                             "-c", "listen_addresses=127.0.0.1"], stdout=log, stderr=log,
                            preexec_fn=_child_setup(ids, True))
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:  # waiting for another process: a poll with a deadline
        if proc.poll() is not None:
            return f"postgres exited ({proc.returncode}): {(tmp / 'log').read_text()[-300:]}"
        try:
            import psycopg

            psycopg.connect(url, connect_timeout=2).close()
            return url, proc
        except Exception:
            time.sleep(0.1)
    proc.kill()
    return "postgres did not accept connections in time"


def stop_postgres(proc: subprocess.Popen) -> None:
    """Fast shutdown (SIGINT), then wait; a kill if it does not go."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
