"""What one request, and all requests together, may take from the server.

* :class:`MemoryBudget`: bytes held for requests being read, decoded and run. A request
  reserves its estimated cost (:func:`decode_cost`) *before* its body is read or decoded: a
  request that could never fit (more than ``per_request`` bytes) is refused with 413 /
  RESOURCE_EXHAUSTED, and one that does not fit beside the requests in flight with 503 /
  RESOURCE_EXHAUSTED (retry later), so memory stays bounded whatever arrives. The default
  server-wide budget is half of the memory this process may use (the cgroup's memory limit,
  or the machine's memory).
* :class:`GuardedH11`: uvicorn's HTTP/1.1 protocol with a deadline for a request's head, so
  a client that trickles its headers (slowloris) cannot hold a connection open; uvicorn's
  keep-alive timeout covers idle connections, and the body has its own read timeouts in the
  REST app.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from deepseek.serving.protocol import InferenceError

#: a JSON request holds its body, the parser's copy and tape (about 16 bytes a number), the
#: arrays and the model's activations while it runs: measured 6.4x the body for four 62 MB
#: FP32 requests at once (benchmarks/serving.py); binary bodies about 2x
JSON_FACTOR = 7.0
BINARY_FACTOR = 2.5


def decode_cost(body_bytes: int, binary: bool) -> int:
    """The memory a request of ``body_bytes`` may take while it is decoded and run."""
    return int(math.ceil(body_bytes * (BINARY_FACTOR if binary else JSON_FACTOR)))


async def to_thread_to_its_end(given_up: Callable[[asyncio.Future], None],
                               fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a worker thread, awaited. A thread cannot be stopped: when the request
    awaiting it is given up (the client gone, a deadline, a cancelled call), the work runs to
    its end all the same and ``given_up(job)`` is called then, to give back the memory the
    work holds only once nothing fills it any more."""
    job = asyncio.get_running_loop().run_in_executor(None, fn, *args)
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        job.add_done_callback(given_up)
        raise


def memory_limit(root: str | Path = "/sys/fs/cgroup",
                 proc_cgroup: str | Path = "/proc/self/cgroup") -> int:
    """Bytes this process may use: the cgroup's memory limit (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``) when there is one, else the machine's memory."""
    from deepseek.cpus import _ancestors, _cgroup_paths

    root = Path(root)
    limits = []
    paths = _cgroup_paths(Path(proc_cgroup))
    if "" in paths:
        limits += _read_limits(_ancestors(root, paths[""]), "memory.max")
    if "memory" in paths:
        limits += _read_limits(_ancestors(root / "memory", paths["memory"]),
                               "memory.limit_in_bytes")
    try:
        total = next(int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text()
                     .splitlines() if line.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError):
        total = 8 << 30
    return min([total, *limits])


def _read_limits(folders: list[Path], name: str) -> list[int]:
    out = []
    for f in folders:
        try:
            text = (f / name).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # v1 writes a huge number for none
            out.append(int(text))
    return out


class Reservation:
    """Bytes held in a :class:`MemoryBudget` until :meth:`release` (idempotent)."""

    def __init__(self, budget: MemoryBudget, nbytes: int) -> None:
        self.budget, self.nbytes = budget, nbytes

    def release(self) -> None:
        """Give the reserved bytes back to the budget (once)."""
        if self.nbytes:
            self.budget._give_back(self.nbytes)
            self.nbytes = 0

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


class MemoryBudget:
    """A server-wide budget of bytes for requests in flight (thread-safe)."""

    def __init__(self, total: int, per_request: int) -> None:
        self.total = int(total)
        self.per_request = int(min(per_request, total))
        self.used = 0
        self.peak = 0
        self._lock = threading.Lock()

    def reserve(self, nbytes: int, what: str) -> Reservation:
        """Hold ``nbytes`` for ``what`` (a request) or refuse it: 413 when it is over the
        per-request budget, 503 when the requests in flight leave too little room."""
        nbytes = int(nbytes)
        if nbytes > self.per_request:
            raise InferenceError(
                f"{what} would take about {nbytes / 2**20:.0f} MiB to decode and run; this "
                f"server allows {self.per_request / 2**20:.0f} MiB per request (send smaller "
                "batches, or binary tensors, which cost less than JSON)", 413)
        with self._lock:
            if self.used + nbytes > self.total:
                raise InferenceError(
                    f"the server is busy with large requests ({self.used / 2**20:.0f} of "
                    f"{self.total / 2**20:.0f} MiB in use); retry shortly", 503)
            self.used += nbytes
            self.peak = max(self.peak, self.used)
        return Reservation(self, nbytes)

    def _give_back(self, nbytes: int) -> None:
        with self._lock:
            self.used -= nbytes


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol that closes a connection whose request head (request line and
    headers) is not complete ``head_timeout`` seconds after the connection opened or the
    previous response ended. Subclass per server with :func:`guarded_protocol`."""

    head_timeout: float = 10.0
    _head_timer: Any = None

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        """Start watching how long the request head takes to arrive."""
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        """Feed the parser and restart the head watch."""
        super().data_received(data)
        self._watch_head()

    def on_response_complete(self) -> None:
        """A response is sent: watch the next request's head."""
        super().on_response_complete()
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the head watch when the connection closes."""
        self._cancel_head()
        super().connection_lost(exc)

    def _watch_head(self) -> None:
        waiting = self.conn.their_state is h11.IDLE
        if waiting and self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_expired)
        elif not waiting:
            self._cancel_head()

    def _cancel_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(head_timeout: float) -> type[GuardedH11]:
    """A :class:`GuardedH11` with its own head timeout."""
    return type("GuardedH11", (GuardedH11,), {"head_timeout": float(head_timeout)})
