"""Benchmark: `deepseek serve` against MLServer and KServe, the same model, the same load.

A small CNN (3x32x32 -> 10 classes: a stride-4 stem and 16 conv-BN-ReLU blocks of 16
channels, PyTorch eager, written by this script; a batch of 32 costs about 3x one) is served
by

* `deepseek serve` with its defaults (adaptive batching up to 32, the thread policy: the CPU
  budget from the affinity mask and the cgroup quota, one core less under load, a lone
  request on the thread count measured at start-up to pay off),
* `deepseek serve --batch-size 1` (no batching),
* MLServer and KServe's Python model server, each a custom runtime that runs the same torch
  module, in two configurations: their defaults, and one intra-op thread
  (`OMP_NUM_THREADS=1`, the fair one: the goals are against it). They live in an
  environment of their own (`make bench-peers` creates `.bench-peers/`; `--peers-python PATH`
  names another) and are never dependencies of the package.

The load is tritonclient's asyncio clients, closed loop: C requests in flight for a fixed
time at each concurrency C, over REST with JSON tensors, REST with binary tensors (the
servers that accept them: a probe request decides) and gRPC; every answer is compared with
the model's own output. Each cell is measured on an idle host and beside a CPU hog (a
process spinning on one core). All servers run at once and are visited in rounds in a
rotating order (each cell is the round with the median requests/s), so that the noise of a
shared machine hits them alike.

Then the hostile and heavy requests: a request claiming shape [10000000000] (its refusal time
and the server's memory before and after many of them), four ~60 MB JSON requests at once
(the server's resident memory at its peak and the slowest health probe meanwhile) and, with
`--fuzz`, a mixed hostile/valid load (RSS before/after, and the 500s, which must be none).

    python benchmarks/serving.py [--quick] [--peers-python .bench-peers/bin/python] [--fuzz]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CpuHog, emit, goal  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = "cnn"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_model(tmp: Path) -> Path:
    import torch
    from torch import nn

    torch.manual_seed(0)
    layers: list = [nn.Conv2d(3, 16, 3, stride=4, padding=1), nn.ReLU()]
    for _ in range(16):
        layers += [nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)]
    path = tmp / "cnn.pt"
    torch.save(nn.Sequential(*layers).eval(), path)
    return path


def model_costs(path: Path, threads: int) -> dict:
    """The CNN's cost alone at batch 1 and 32 (the same thread count as our server)."""
    import torch

    torch.set_num_threads(threads)
    cnn = torch.load(path, weights_only=False)
    out = {"threads": threads}
    with torch.inference_mode():
        for b in (1, 32):
            x = torch.zeros(b, 3, 32, 32)
            for _ in range(5):
                cnn(x)
            t0 = time.perf_counter()
            for _ in range(40):
                cnn(x)
            out[f"batch_{b}_ms"] = round((time.perf_counter() - t0) / 40 * 1e3, 3)
    out["batch_32_over_batch_1"] = round(out["batch_32_ms"] / out["batch_1_ms"], 2)
    return out


# ---------------------------------------------------------------------------------- servers
MLSERVER_RUNTIME = '''
import numpy as np
import torch
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class TorchModel(MLModel):
    async def load(self) -> bool:
        self.net = torch.load(self.settings.parameters.uri, weights_only=False).eval()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        with torch.inference_mode():
            y = self.net(torch.from_numpy(np.ascontiguousarray(x))).numpy()
        return InferenceResponse(model_name=self.name,
                                 outputs=[NumpyCodec.encode_output("output", y)])
'''

KSERVE_SERVER = '''
import sys

import numpy as np
import torch
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


class TorchModel(Model):
    def __init__(self, name, path):
        super().__init__(name)
        self.net = torch.load(path, weights_only=False).eval()
        self.ready = True

    def predict(self, payload: InferRequest, headers=None) -> InferResponse:
        x = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
        with torch.inference_mode():
            y = self.net(torch.from_numpy(np.ascontiguousarray(x))).numpy()
        out = InferOutput(name="output", shape=list(y.shape), datatype="FP32")
        out.set_data_from_numpy(y, binary_data=payload.from_grpc)  # gRPC: raw contents
        return InferResponse(model_name=self.name, infer_outputs=[out],
                             response_id=payload.id or "0")


if __name__ == "__main__":
    path, http_port, grpc_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ModelServer(http_port=http_port, grpc_port=grpc_port,
                enable_latency_logging=False).start([TorchModel("cnn", path)])
'''


class Server:
    """A server subprocess, ready once its REST health endpoint answers."""

    def __init__(self, name: str, cmd: list[str], port: int, grpc_port: int,
                 env: dict | None = None, cwd: Path | None = None) -> None:
        import httpx

        self.name, self.port, self.grpc_port = name, port, grpc_port
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log,
                                     env={**os.environ, **(env or {})}, cwd=cwd)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"{name} exited: {self.log.read().decode()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/models/{MODEL}/ready",
                             timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # waiting for another process to start: a poll with a deadline
        self.close()
        raise RuntimeError(f"{name} did not become ready")

    def rss_mb(self) -> float:
        """Resident memory of the server and its children (MLServer runs workers)."""
        total = 0
        pids = [self.proc.pid]
        try:
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
            pids += [int(p) for p in kids.split()]
        except OSError:
            pass
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return round(total / 1024, 1)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def ours(model: Path, batch_size: int) -> Server:
    port, gport = free_port(), free_port()
    cmd = [sys.executable, "-m", "deepseek.cli", "-q", "serve", f"{MODEL}={model}", "--port",
           str(port), "--grpc-port", str(gport), "--batch-size", str(batch_size),
           "--max-queue", "1024", "--trust-pickle"]
    return Server(f"deepseek (batch {batch_size})", cmd, port, gport)


def mlserver(python: str, model: Path, tmp: Path, env: dict | None = None,
             tag: str = "") -> Server:
    port, gport, mport = free_port(), free_port(), free_port()
    folder = tmp / f"mlserver{tag}"
    (folder / MODEL).mkdir(parents=True, exist_ok=True)
    (folder / MODEL / "runtime.py").write_text(MLSERVER_RUNTIME)
    (folder / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": gport, "metrics_port": mport}))
    (folder / MODEL / "model-settings.json").write_text(json.dumps({
        "name": MODEL, "implementation": "runtime.TorchModel",
        "parameters": {"uri": str(model)}}))
    mls = str(Path(python).parent / "mlserver")
    return Server(f"MLServer{tag}", [mls, "start", str(folder)], port, gport,
                  cwd=folder / MODEL, env=env)


def kserve(python: str, model: Path, tmp: Path, env: dict | None = None,
           tag: str = "") -> Server:
    port, gport = free_port(), free_port()
    script = tmp / "kserve_server.py"
    script.write_text(KSERVE_SERVER)
    return Server(f"KServe{tag}", [python, str(script), str(model), str(port), str(gport)],
                  port, gport, env=env)


def versions(python: str) -> dict:
    code = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
            "('mlserver', 'kserve', 'torch')}))")
    res = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    return json.loads(res.stdout) if res.returncode == 0 else {"error": res.stderr[-300:]}


# ------------------------------------------------------------------------------------ load
async def closed_loop(server: Server, protocol: str, concurrency: int, seconds: float,
                      x: np.ndarray, expected: np.ndarray) -> dict:
    """tritonclient's asyncio client, ``concurrency`` requests in flight for ``seconds``.
    ``protocol``: ``rest`` (JSON tensors), ``rest-binary`` (the binary tensor extension) or
    ``grpc``."""
    if protocol.startswith("rest"):
        import tritonclient.http.aio as client_mod

        binary = protocol == "rest-binary"
        client = client_mod.InferenceServerClient(f"127.0.0.1:{server.port}",
                                                  conn_limit=concurrency)
        inp = client_mod.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        outs = [client_mod.InferRequestedOutput("output", binary_data=binary)]
        # the asyncio client sends no content type; FastAPI servers need one for JSON
        headers = {"Content-Type": "application/octet-stream" if binary else
                   "application/json"}
    else:
        import tritonclient.grpc.aio as client_mod

        client = client_mod.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        inp = client_mod.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        outs = [client_mod.InferRequestedOutput("output")]
        headers = None
    lat: list[float] = []
    errors = wrong = 0
    try:
        for _ in range(10):  # warm-up
            await client.infer(MODEL, [inp], outputs=outs, headers=headers)
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors, wrong
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                try:
                    r = await client.infer(MODEL, [inp], outputs=outs, headers=headers)
                    y = r.as_numpy("output")
                except Exception:
                    errors += 1
                    continue
                if y is None or y.shape != expected.shape or \
                        not np.allclose(y, expected, rtol=1e-4, atol=1e-4):
                    wrong += 1  # every answer is checked against the model's own output
                    continue
                lat.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    finally:
        await client.close()
    ms = np.array(lat) * 1e3 if lat else np.array([np.nan])
    return {"requests_per_s": round(len(lat) / elapsed, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3), "requests": len(lat),
            "errors": errors, "wrong_answers": wrong}


async def accepts_binary(server: Server, x: np.ndarray) -> bool:
    """Whether the server answers tritonclient's binary tensor request."""
    import tritonclient.http.aio as client_mod

    client = client_mod.InferenceServerClient(f"127.0.0.1:{server.port}")
    inp = client_mod.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    try:
        await client.infer(MODEL, [inp], outputs=[client_mod.InferRequestedOutput(
            "output", binary_data=True)], headers={"Content-Type": "application/octet-stream"})
        return True
    except Exception:
        return False
    finally:
        await client.close()


def measure_all(servers: dict[str, Server], levels: list[int], seconds: float, rounds: int,
                x: np.ndarray, expected: np.ndarray, binary: set[str], busy: bool) -> dict:
    """Every server at every (protocol, concurrency), in ``rounds`` rounds that visit the
    servers in a rotating order, so that a noisy moment hits them alike; the cell is the
    round with the median requests/s. ``busy``: with a CPU hog beside them."""
    import contextlib

    cells: dict[str, dict[str, list[dict]]] = {k: {} for k in servers}
    keys = list(servers)
    with CpuHog() if busy else contextlib.nullcontext():
        for c in levels:
            for protocol in ("rest", "rest-binary", "grpc"):
                for r in range(rounds):
                    order = keys[r % len(keys):] + keys[:r % len(keys)]
                    for key in order:
                        if protocol == "rest-binary" and key not in binary:
                            continue
                        row = asyncio.run(closed_loop(servers[key], protocol, c, seconds, x,
                                                      expected))
                        cells[key].setdefault(f"{protocol}_c{c}", []).append(row)
    out: dict[str, dict] = {}
    for key, table in cells.items():
        out[key] = {}
        for cell, rows in table.items():
            rows = sorted(rows, key=lambda row: row["requests_per_s"])
            out[key][cell] = {**rows[len(rows) // 2], "rounds_requests_per_s":
                              [row["requests_per_s"] for row in rows]}
    return out


# -------------------------------------------------------------------------------- hostile
HUGE = json.dumps({"inputs": [{"name": "input", "shape": [10_000_000_000], "datatype": "FP32",
                               "data": [1.0, 2.0]}]}).encode()


def hostile_bodies() -> list[tuple[bytes, dict]]:
    """Malformed and hostile REST bodies (with their headers)."""
    good = {"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32",
            "data": [0.5] * 3072}
    bodies = [
        {"inputs": [{**good, "datatype": ["FP32"]}]},
        {"inputs": [good], "parameters": [1]},
        {"inputs": [good], "outputs": 5},
        {"inputs": [{**good, "shape": [10_000_000_000]}]},
        {"inputs": [{**good, "shape": [2, 2], "data": [[1, 2], [3]]}]},
        {"inputs": [good, good]},
        {"inputs": [{**good, "data": ["x"] * 3072}]},
        {"inputs": [{**good, "shape": [True, 3, 32, 32]}]},
        {"inputs": []},
        [1, 2, 3],
    ]
    out = [(json.dumps(b).encode(), {}) for b in bodies]
    out.append((b'{"inputs": [' + b"[" * 50_000 + b"]" * 50_000 + b"]}", {}))
    out.append((b"{not json", {}))
    head = json.dumps({"inputs": [{"name": "input", "shape": [500_000], "datatype": "BYTES",
                                   "parameters": {"binary_data_size": 8}}]}).encode()
    out.append((head + b"\x01\x00\x00\x00a\x00\x00\x00",
                {"Inference-Header-Content-Length": str(len(head))}))
    out.append((head + b"\x00" * 8, {"Inference-Header-Content-Length": "-5"}))
    return out


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client on a plain socket, so that the time measured is
    the server's and the loopback's, not a client library's."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                f"\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        self.sock.sendall(head + body)
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        header, _, rest = self.buf.partition(b"\r\n\r\n")
        status = int(header.split(b" ", 2)[1])
        length = next(int(line.split(b":", 1)[1]) for line in header.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(rest) < length:
            rest += self.sock.recv(65536)
        self.buf = rest[length:]
        return status, rest[:length]

    def close(self) -> None:
        self.sock.close()


def huge_shape_check(server: Server, n: int) -> dict:
    from deepseek.serving.protocol import InferenceError, parse_rest_request, rest_inputs

    rss0 = server.rss_mb()
    lat = []
    client = RawHttp(server.port)
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            status, body = client.post(f"/v2/models/{MODEL}/infer", HUGE)
            lat.append(time.perf_counter() - t0)
            assert status == 413, body
    finally:
        client.close()
    rss1 = server.rss_mb()
    server_side = []
    for _ in range(n):  # the server's own work on the request, without the transport
        t0 = time.perf_counter()
        try:
            req, tail = parse_rest_request(HUGE, None)
            rest_inputs(req, tail)
        except InferenceError:
            pass
        server_side.append(time.perf_counter() - t0)
    ms = np.array(lat) * 1e3
    return {"requests": n, "status": 413, "client": "plain socket, HTTP/1.1 keep-alive",
            "round_trip_p50_ms": round(float(np.percentile(ms, 50)), 3),
            "round_trip_p99_ms": round(float(np.percentile(ms, 99)), 3),
            "server_side_p50_us": round(float(np.percentile(server_side, 50)) * 1e6, 1),
            "rss_before_mb": rss0, "rss_after_mb": rss1}


PROBER = """
import json, sys, time, urllib.request
url, seconds = sys.argv[1], float(sys.argv[2])
out, end = [], time.monotonic() + seconds
while time.monotonic() < end:
    t0 = time.perf_counter()
    urllib.request.urlopen(url, timeout=30).read()
    out.append(time.perf_counter() - t0)
    time.sleep(0.05)  # a probe every 50 ms, as often as a strict Kubernetes probe
print(json.dumps(out))
"""


def heavy_json_check(server: Server, requests: int = 4, samples: int = 2200) -> dict:
    """``requests`` JSON requests of ``samples`` images (about 60 MB each, numbers written
    with 6 significant digits) at once: the server's resident memory at its peak, and the
    slowest of the health probes that a separate process sends every 50 ms meanwhile."""
    import threading

    import httpx

    rng = np.random.default_rng(3)
    data = rng.normal(size=(samples, 3, 32, 32)).astype(np.float32)
    numbers = ",".join(f"{v:.6g}" for v in data.ravel().tolist())
    body = (f'{{"inputs": [{{"name": "input", "shape": {list(data.shape)}, '
            f'"datatype": "FP32", "data": [{numbers}]}}]}}').encode()
    url = f"http://127.0.0.1:{server.port}"
    rss0 = server.rss_mb()
    peak, codes = [rss0], []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak.append(server.rss_mb())

    def send() -> None:
        r = httpx.post(f"{url}/v2/models/{MODEL}/infer", content=body, timeout=300,
                       headers={"Content-Type": "application/json"})
        codes.append(r.status_code)

    prober = subprocess.Popen([sys.executable, "-c", PROBER, f"{url}/v2/health/ready", "20"],
                              stdout=subprocess.PIPE, text=True)
    sampler = threading.Thread(target=sample)
    senders = [threading.Thread(target=send) for _ in range(requests)]
    t0 = time.perf_counter()
    for t in [sampler, *senders]:
        t.start()
    for t in senders:
        t.join()
    elapsed = time.perf_counter() - t0
    done.set()
    sampler.join()
    probes = json.loads(prober.communicate(timeout=120)[0])
    return {"requests": requests, "body_mb": round(len(body) / 1e6, 1), "status": codes,
            "seconds": round(elapsed, 2), "rss_before_mb": rss0, "rss_peak_mb": max(peak),
            "rss_rise_per_request_mb": round((max(peak) - rss0) / requests, 1),
            "health_probes": len(probes),
            "health_probe_max_ms": round(max(probes) * 1e3, 1) if probes else None,
            "health_probe_p50_ms": round(float(np.median(probes)) * 1e3, 2) if probes
            else None}


async def fuzz(server: Server, seconds: float, concurrency: int = 8) -> dict:
    """Hostile and valid requests mixed, REST and gRPC, for ``seconds``."""
    import httpx
    import tritonclient.grpc.aio as tga

    x = np.random.default_rng(0).normal(size=(1, 3, 32, 32)).astype(np.float32)
    url = f"http://127.0.0.1:{server.port}/v2/models/{MODEL}/infer"
    bad = hostile_bodies()
    counts = {"valid_ok": 0, "valid_failed": 0, "hostile_refused": 0, "hostile_accepted": 0,
              "status_500": 0, "grpc_ok": 0, "grpc_failed": 0}
    rss0 = server.rss_mb()
    rng = random.Random(1)
    end = time.perf_counter() + seconds
    g = tga.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    inp = tga.InferInput("input", [1, 3, 32, 32], "FP32")
    inp.set_data_from_numpy(x)
    valid = json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 32, 32],
                                    "datatype": "FP32", "data": x.ravel().tolist()}]}).encode()
    async with httpx.AsyncClient(timeout=60) as client:
        async def worker() -> None:
            while time.perf_counter() < end:
                roll = rng.random()
                if roll < 0.15:
                    try:
                        await g.infer(MODEL, [inp])
                        counts["grpc_ok"] += 1
                    except Exception:
                        counts["grpc_failed"] += 1
                    continue
                if roll < 0.5:
                    r = await client.post(url, content=valid)
                    counts["valid_ok" if r.status_code == 200 else "valid_failed"] += 1
                else:
                    body, headers = rng.choice(bad)
                    r = await client.post(url, content=body, headers=headers)
                    counts["hostile_refused" if 400 <= r.status_code < 500
                           else "hostile_accepted"] += 1
                if r.status_code >= 500:
                    counts["status_500"] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    await g.close()
    return {"seconds": seconds, "concurrency": concurrency, **counts, "rss_before_mb": rss0,
            "rss_after_mb": server.rss_mb()}


# ------------------------------------------------------------------------------------ main
PEERS_1T = ("mlserver_1t", "kserve_1t")


def _goals(results: dict, levels: list[int]) -> list[dict]:
    goals = []
    for state, s in results["servers"].items():
        cost = results["model_cost_alone"]["batch_32_over_batch_1"]
        for proto in ("rest", "rest-binary", "grpc"):
            for c in levels:
                k = f"{proto}_c{c}"
                us = s["deepseek"].get(k)
                peers = [s[p][k] for p in PEERS_1T if p in s and k in s[p]]
                if us is None or not peers:
                    continue
                best_rps = max(p["requests_per_s"] for p in peers)
                best_p99 = min(p["p99_ms"] for p in peers)
                ratio = us["requests_per_s"] / best_rps if best_rps else float("inf")
                goals.append(goal(f"{state} host, {proto}, concurrency {c}: requests/s / the "
                                  "best peer's at one thread", round(ratio, 2), ">= 1.2x",
                                  "ratio", ratio >= 1.2))
                p99 = us["p99_ms"] / best_p99
                goals.append(goal(f"{state} host, {proto}, concurrency {c}: p99 / the best "
                                  "peer's at one thread", round(p99, 2), "<= 1.0x", "ratio",
                                  p99 <= 1.0))
            p50 = s["deepseek"][f"{proto}_c1"]["p50_ms"] / \
                s["deepseek_batch_1"][f"{proto}_c1"]["p50_ms"]
            goals.append(goal(f"{state} host, {proto}: p50 at concurrency 1, defaults / "
                              "--batch-size 1", round(p50, 3), "<= 1.1x", "ratio", p50 <= 1.1))
            for c, want in ((8, 1.0), (32, 2.0)):
                if c not in levels:
                    continue
                r = s["deepseek"][f"{proto}_c{c}"]["requests_per_s"] / \
                    s["deepseek_batch_1"][f"{proto}_c{c}"]["requests_per_s"]
                goals.append(goal(f"{state} host, {proto}, concurrency {c}: requests/s, "
                                  f"batching / --batch-size 1 (batch of 32 costs {cost}x one)",
                                  round(r, 2), f">= {want:g}x", "ratio", r >= want))
    return goals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="one round of 2 s per cell at concurrency 1 and 32, idle host only "
                         "(instead of 3 rounds of 4 s at 1, 8, 32, idle and busy), 300 "
                         "hostile requests (not 2000), two heavy requests (not four)")
    ap.add_argument("--peers-python", default=None,
                    help="python of an environment with mlserver and kserve [.bench-peers]")
    ap.add_argument("--fuzz", action="store_true", help="add the mixed hostile/valid load")
    ap.add_argument("--fuzz-seconds", type=float, default=60.0)
    args = ap.parse_args()
    seconds = 2.0 if args.quick else 4.0
    rounds = 1 if args.quick else 3
    levels = [1, 32] if args.quick else [1, 8, 32]
    states = ["idle"] if args.quick else ["idle", "busy"]
    peers_python = args.peers_python or str(ROOT / ".bench-peers" / "bin" / "python")
    have_peers = Path(peers_python).is_file()
    from deepseek.serving.threads import cpu_budget

    threads = cpu_budget()
    results: dict = {
        "seconds_per_cell_per_round": seconds, "rounds": rounds,
        "concurrency_levels": levels, "host_states": states,
        "busy_host": "one process spinning on one core beside the servers",
        "model": "small CNN 3x32x32 -> 10 (16 conv blocks, 16 ch, eager PyTorch)",
        "client": "tritonclient asyncio clients, closed loop, REST (JSON tensors and binary "
                  "tensors) and gRPC; every answer compared with the model's own output",
        "servers": {}, "peers": versions(peers_python) if have_peers else
        f"not installed ({peers_python}); run make bench-peers",
        "peer_configurations": {"defaults": "as installed", "_1t": ONE_THREAD},
    }
    x = np.random.default_rng(0).normal(size=(1, 3, 32, 32)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        model = make_model(Path(tmp))
        results["model_cost_alone"] = model_costs(model, 1)
        import torch

        torch.set_num_threads(1)
        with torch.inference_mode():
            expected = torch.load(model, weights_only=False)(torch.from_numpy(x)).numpy()
        makers = [("deepseek", lambda: ours(model, 32)),
                  ("deepseek_batch_1", lambda: ours(model, 1))]
        if have_peers:
            makers += [("mlserver", lambda: mlserver(peers_python, model, Path(tmp))),
                       ("mlserver_1t", lambda: mlserver(peers_python, model, Path(tmp),
                                                        ONE_THREAD, " (1 thread)")),
                       ("kserve", lambda: kserve(peers_python, model, Path(tmp))),
                       ("kserve_1t", lambda: kserve(peers_python, model, Path(tmp),
                                                    ONE_THREAD, " (1 thread)"))]
        servers: dict[str, Server] = {}
        try:
            for key, make in makers:  # all up at once; the idle ones cost nothing
                servers[key] = make()
            binary = {k for k, srv in servers.items() if asyncio.run(accepts_binary(srv, x))}
            results["binary_tensors_accepted_by"] = sorted(binary)
            results["servers"] = {state: measure_all(servers, levels, seconds, rounds, x,
                                                     expected, binary, state == "busy")
                                  for state in states}
            for key in [k for k in servers if k != "deepseek"]:
                servers.pop(key).close()
            results["huge_shape"] = huge_shape_check(servers["deepseek"],
                                                     300 if args.quick else 2000)
            results["heavy_json"] = heavy_json_check(servers["deepseek"],
                                                     2 if args.quick else 4)
            if args.fuzz:
                results["fuzz"] = asyncio.run(fuzz(servers["deepseek"], args.fuzz_seconds))
        finally:
            for srv in servers.values():
                srv.close()
    goals = _goals(results, levels)
    hs = results["huge_shape"]
    goals.append(goal("a request claiming shape [1e10] refused, REST round trip p50",
                      hs["round_trip_p50_ms"], "< 1 ms", "ms", hs["round_trip_p50_ms"] < 1.0))
    growth = hs["rss_after_mb"] - hs["rss_before_mb"]
    goals.append(goal(f"server RSS growth over {hs['requests']} requests claiming shape [1e10]",
                      round(growth, 1), "unchanged (< 1 MB)", "MB", growth < 1.0))
    hj = results["heavy_json"]
    goals.append(goal(f"slowest health probe during {hj['requests']} JSON requests of "
                      f"{hj['body_mb']} MB at once", hj["health_probe_max_ms"], "< 1000 ms "
                      "(Kubernetes' default probe timeout)", "ms",
                      hj["health_probe_max_ms"] is not None and
                      hj["health_probe_max_ms"] < 1000))
    if "fuzz" in results:
        f = results["fuzz"]
        goals.append(goal(f"HTTP 500 answers under {f['seconds']:g} s of mixed hostile load",
                          f["status_500"], "0", "count", f["status_500"] == 0))
    emit("serving", results, goals, quick=args.quick, machine={"cpu_budget": threads})


if __name__ == "__main__":
    main()
