"""A Ray cluster on this machine for the batch tests and benchmarks/batch.py: a head node and
worker nodes (``ray start``), each in a session of its own so that every process of a node
(GCS, raylet, workers) is killed as one group at the end.

Ray gives its nodes the machine's own address (it refuses to bind them to loopback), so the
cluster is this machine only rather than loopback only; nothing outside is contacted.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    """A TCP port free on this machine now (from the kernel's ephemeral range)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(temp: str, pythonpath: list[str], nodes: int = 2, cpus: int = 1,
                  attempts: int = 2) -> tuple[dict[str, str], list[int]]:
    """Start a head and ``nodes - 1`` worker nodes of ``cpus`` CPUs each, their workers
    importing from ``pythonpath``; returns ``{"gcs", "client"}`` addresses and the nodes'
    process groups (give them to :func:`stop_cluster`). A start that fails is stopped and
    made again from nothing, on new ports, up to ``attempts`` times in all: on a busy
    2-core host a raylet once did not register within Ray's fixed 30 s (``ray start``:
    "The current node timed out during startup"), and a port taken between
    :func:`free_port` and the node's bind fails the same way.

    Raises:
        RuntimeError: ``ray start`` failed every time (the last output is in the message).
    """
    for attempt in range(1, attempts + 1):
        try:
            return _start(os.path.join(temp, str(attempt)), pythonpath, nodes, cpus)
        except RuntimeError:
            if attempt == attempts:
                raise
    raise RuntimeError("attempts must be 1 or more")


def _start(temp: str, pythonpath: list[str], nodes: int, cpus: int
           ) -> tuple[dict[str, str], list[int]]:
    os.makedirs(temp, exist_ok=True)
    # GRPC_ENABLE_FORK_SUPPORT=0: the head starts a Ray Client server process per connection
    # by forking from threads busy in gRPC; on a loaded host about one start in twenty died
    # in the fork (its log: "epoll_wait error: Bad file descriptor"), and Ray took 30-40 s to
    # say so (0 of 90 with it off, 3 of 70 with it on; docs/batch.md)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "GRPC_ENABLE_FORK_SUPPORT": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [*pythonpath,
                                                       os.environ.get("PYTHONPATH")]))}
    ray_bin = str(Path(sys.executable).with_name("ray"))
    port, client = free_port(), free_port()
    groups: list[int] = []
    head = ["--head", f"--port={port}", "--include-dashboard=false",
            f"--ray-client-server-port={client}", f"--temp-dir={temp}"]
    for args in [head] + [[f"--address=127.0.0.1:{port}"]] * (nodes - 1):
        proc = subprocess.Popen([ray_bin, "start", *args, f"--num-cpus={cpus}",
                                 "--disable-usage-stats",
                                 f"--dashboard-agent-listen-port={free_port()}",
                                 f"--metrics-export-port={free_port()}"],
                                env=env, start_new_session=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=temp)
        out, _ = proc.communicate(timeout=300)
        groups.append(proc.pid)
        if proc.returncode != 0:
            stop_cluster(groups)
            raise RuntimeError(f"ray start failed:\n{out[-2000:]}")
    return {"gcs": f"127.0.0.1:{port}", "client": f"ray://127.0.0.1:{client}"}, groups


def stop_cluster(groups: list[int]) -> None:
    """Disconnect this process and kill every process of the nodes."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    for g in groups:
        try:
            os.killpg(g, signal.SIGKILL)
        except ProcessLookupError:
            pass
