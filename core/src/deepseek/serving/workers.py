"""Several server processes on one pair of ports (``deepseek serve --workers K``).

For CPU-bound models one Python process is one core's worth of event loop and pre- and
post-processing; K worker processes, each a full :class:`DeepSeekServing` with its own
models and batcher, share the REST and gRPC ports through ``SO_REUSEPORT``, and the kernel
spreads the connections over them. The supervising process reserves the ports, starts the
workers (``spawn``), waits until every one accepts requests, forwards SIGINT/SIGTERM (each
worker drains its requests in flight) and exits with the first failure's status. Their
Prometheus metrics are summed over the workers (``PROMETHEUS_MULTIPROC_DIR``).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from deepseek.errors import DeepSeekError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _reserved(host: str, port: int) -> Iterator[int]:
    """Bind ``(host, port)`` with SO_REUSEPORT without listening: the port is ours (``0``
    picks one) and the workers can bind it too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DeepSeekError(f"cannot serve on {host}:{port}: {exc.strerror}") from None
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def _worker(options: dict[str, Any], index: int, events: Any, parent: int) -> None:
    """One worker process: a DeepSeekServing that reports when it is ready. A supervisor
    killed outright (it cannot pass a stop on) stops it as SIGTERM does (Linux's
    parent-death signal): an orphan would go on answering on the shared ports, with the
    model it loaded, beside a supervisor started again with another."""
    from deepseek.service import die_with_parent
    from deepseek.serving.server import DeepSeekServing

    die_with_parent(parent)
    try:
        server = DeepSeekServing(**options, reuse_port=True,
                                 on_ready=lambda s: events.put(("ready", index, os.getpid())))
        server.start()
    except BaseException as exc:  # reported to the supervisor, which exits non-zero
        events.put(("failed", index, f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None


def serve_workers(options: dict[str, Any], workers: int,
                  on_ready: Callable[[dict[str, Any]], None] | None = None,
                  start_timeout: float = 600.0) -> int:
    """Run ``workers`` server processes with ``options`` (DeepSeekServing keyword arguments
    with model sources as names or paths) until SIGINT/SIGTERM; returns the exit status.
    ``on_ready`` receives the options with the ports resolved once all workers serve."""
    if workers < 2:
        raise DeepSeekError("serve_workers needs at least 2 workers")
    host = options.get("host", "127.0.0.1")
    metrics_dir = tempfile.mkdtemp(prefix="deepseek-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # inherited by the spawned workers
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    procs: list[Any] = []
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: the worker drains, then exits

    grpc_port = options.get("grpc_port")
    with contextlib.ExitStack() as stack:
        http = stack.enter_context(_reserved(host, int(options.get("port", 8080))))
        grpc = None if grpc_port is None else stack.enter_context(_reserved(host,
                                                                             int(grpc_port)))
        resolved = {**options, "port": http, "grpc_port": grpc}
        old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for i in range(workers):
                p = ctx.Process(target=_worker, args=(resolved, i, events, os.getpid()),
                                name=f"deepseek-worker-{i}", daemon=False)
                p.start()
                procs.append(p)
            ready: set[int] = set()
            while len(ready) < workers and not stopping:
                try:
                    kind, index, info = events.get(timeout=start_timeout)
                except queue.Empty:
                    raise DeepSeekError(f"the workers did not start within {start_timeout:g} "
                                        "s") from None
                if kind == "failed":
                    raise DeepSeekError(f"worker {index} failed to start: {info}")
                ready.add(index)
            if on_ready is not None and not stopping:
                on_ready({**resolved, "workers": workers, "pids": [p.pid for p in procs]})
            log.warning("serving with %d workers on REST %s:%d, gRPC %s", workers, host, http,
                        grpc if grpc is not None else "off")
            status = 0
            for p in procs:
                p.join()
                if p.exitcode not in (0, -signal.SIGTERM) and not stopping:
                    status = status or 1
                    stop()
            return status
        finally:
            stop()
            for p in procs:
                p.join(timeout=60)
            for s, handler in old.items():
                signal.signal(s, handler)
            shutil.rmtree(metrics_dir, ignore_errors=True)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
