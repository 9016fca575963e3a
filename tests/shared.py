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
