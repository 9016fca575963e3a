"""Benchmark: the V2 model server under closed-loop load, dynamic batching on vs off.

A small CNN (3x32x32 -> 10 classes: a stride-4 stem and 16 conv-BN-ReLU blocks of 16
channels, PyTorch eager) is served by `deepseek serve` in a subprocess, once with dynamic
batching (batch 32, 5 ms) and once without (batch 1). Its cost is dominated by per-layer
overhead, so a batch of 32 costs about 2.5x a single sample (measured and reported below).
A closed-loop client (asyncio + aiohttp, binary tensors) keeps C requests in flight for a
fixed time at each concurrency C in 1, 8, 32, 64 and records requests/s, p50/p99 latency,
and the mean executed batch size (from the server's /metrics). Then the server overhead: a
trivial model at concurrency 1, p50 over REST (httpx) and over gRPC (tritonclient).

The model files are written by this script and loaded with --trust-pickle (an eager
nn.Sequential of stock layers saved with torch.save).

    python benchmarks/serving.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, goal  # noqa: E402

# without TCP_NODELAY, a request written as headers + body waits for the delayed ACK (40 ms)
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_models(tmp: Path) -> tuple[Path, Path]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    layers: list = [nn.Conv2d(3, 16, 3, stride=4, padding=1), nn.ReLU()]
    for _ in range(16):
        layers += [nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)]
    cnn = nn.Sequential(*layers).eval()
    trivial = nn.Sequential(nn.Linear(4, 4)).eval()
    a, b = tmp / "cnn.pt", tmp / "trivial.pt"
    torch.save(cnn, a)
    torch.save(trivial, b)
    return a, b


def model_costs(path: Path) -> dict:
    """Batched cost of the CNN alone (same process settings as the server)."""
    import torch

    cnn = torch.load(path, weights_only=False)
    out = {}
    with torch.inference_mode():
        for b in (1, 8, 32):
            x = torch.zeros(b, 3, 32, 32)
            for _ in range(5):
                cnn(x)
            t0 = time.perf_counter()
            for _ in range(30):
                cnn(x)
            out[f"batch_{b}_ms"] = round((time.perf_counter() - t0) / 30 * 1e3, 3)
    return out


class Server:
    def __init__(self, model: str, batch_size: int, delay_ms: float) -> None:
        self.port, self.grpc_port = free_port(), free_port()
        cmd = [sys.executable, "-m", "deepseek.cli", "-q", "serve", model, "--port",
               str(self.port), "--grpc-port", str(self.grpc_port), "--batch-size",
               str(batch_size), "--max-delay-ms", str(delay_ms), "--max-queue", "1024",
               "--trust-pickle"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        import httpx

        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/v2/health/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read().decode())
            time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def batch_totals(self) -> tuple[float, float]:
        import httpx

        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics").text
        s = re.search(r"deepseek_batch_size_sum\{[^}]*\} ([0-9.e+]+)", text)
        c = re.search(r"deepseek_batch_size_count\{[^}]*\} ([0-9.e+]+)", text)
        return (float(s.group(1)) if s else 0.0, float(c.group(1)) if c else 0.0)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def binary_body(name: str, x: np.ndarray) -> tuple[bytes, dict]:
    head = json.dumps({"inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    return head + x.tobytes(), {"Inference-Header-Content-Length": str(len(head)),
                                "Content-Type": "application/octet-stream"}


async def closed_loop(url: str, body: bytes, headers: dict, concurrency: int,
                      seconds: float) -> dict:
    import aiohttp

    lat: list[float] = []
    errors = 0
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:
        async def post() -> int:
            async with session.post(url, data=body, headers=headers) as r:
                await r.read()
                return r.status

        for _ in range(5):  # warm-up
            await post()
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                if await post() != 200:
                    errors += 1
                    continue
                lat.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    ms = np.array(lat) * 1e3
    return {"requests_per_s": round(len(lat) / elapsed, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3), "requests": len(lat),
            "errors": errors}


def overhead(trivial: Path, n: int) -> dict:
    import httpx
    import tritonclient.grpc as tg

    srv = Server(f"trivial={trivial}", 1, 0.0)
    try:
        x = np.ones((1, 4), np.float32)
        body, headers = binary_body("input", x)
        url = f"http://127.0.0.1:{srv.port}/v2/models/trivial/infer"
        rest = []
        with httpx.Client(transport=httpx.HTTPTransport(socket_options=NODELAY)) as c:
            for i in range(n + 50):
                t0 = time.perf_counter()
                r = c.post(url, content=body, headers=headers)
                dt = time.perf_counter() - t0
                assert r.status_code == 200, r.text
                if i >= 50:
                    rest.append(dt)
        g = tg.InferenceServerClient(f"127.0.0.1:{srv.grpc_port}")
        inp = tg.InferInput("input", [1, 4], "FP32")
        inp.set_data_from_numpy(x)
        grpc_lat = []
        for i in range(n + 50):
            t0 = time.perf_counter()
            g.infer("trivial", [inp])
            dt = time.perf_counter() - t0
            if i >= 50:
                grpc_lat.append(dt)
    finally:
        srv.close()

    def p(v: list, q: float) -> float:
        return round(float(np.percentile(np.array(v) * 1e3, q)), 3)

    return {"rest_p50_ms": p(rest, 50), "rest_p99_ms": p(rest, 99),
            "grpc_p50_ms": p(grpc_lat, 50), "grpc_p99_ms": p(grpc_lat, 99), "requests": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 s per level instead of 8 s")
    args = ap.parse_args()
    seconds = 2.0 if args.quick else 8.0
    levels = [1, 8, 32, 64]
    results: dict = {"seconds_per_level": seconds,
                     "model": "small CNN 3x32x32 -> 10 (16 conv blocks, 16 ch, eager)",
                     "client": "asyncio + aiohttp, binary tensors, closed loop"}
    with tempfile.TemporaryDirectory() as tmp:
        cnn, trivial = make_models(Path(tmp))
        results["model_cost_alone"] = model_costs(cnn)
        x = np.random.default_rng(0).normal(size=(1, 3, 32, 32)).astype(np.float32)
        body, headers = binary_body("input", x)
        for mode, bs in (("batching", 32), ("no_batching", 1)):
            srv = Server(f"cnn={cnn}", bs, 5.0)
            try:
                rows = {}
                url = f"http://127.0.0.1:{srv.port}/v2/models/cnn/infer"
                for c in levels:
                    s0, n0 = srv.batch_totals()
                    row = asyncio.run(closed_loop(url, body, headers, c, seconds))
                    s1, n1 = srv.batch_totals()
                    row["mean_batch_size"] = round((s1 - s0) / max(n1 - n0, 1), 2)
                    rows[f"concurrency_{c}"] = row
                results[mode] = rows
            finally:
                srv.close()
        results["overhead_trivial_model"] = overhead(trivial, 300 if args.quick else 2000)
    on, off = results["batching"]["concurrency_32"], results["no_batching"]["concurrency_32"]
    speedup = on["requests_per_s"] / off["requests_per_s"]
    p99_ratio = on["p99_ms"] / off["p99_ms"]
    ov = results["overhead_trivial_model"]
    results["concurrency_32_speedup"] = round(speedup, 2)
    results["concurrency_32_p99_ratio"] = round(p99_ratio, 2)
    goals = [
        goal("requests/s with batching / without, concurrency 32", round(speedup, 2), ">= 3x",
             "ratio", speedup >= 3.0),
        goal("p99 with batching / without, concurrency 32", round(p99_ratio, 2),
             "<= 1.5x", "ratio", p99_ratio <= 1.5),
        goal("server overhead p50, trivial model, concurrency 1, REST", ov["rest_p50_ms"],
             "<= 1 ms", "ms", ov["rest_p50_ms"] <= 1.0),
        goal("server overhead p50, trivial model, concurrency 1, gRPC", ov["grpc_p50_ms"],
             "<= 1 ms", "ms", ov["grpc_p50_ms"] <= 1.0),
    ]
    emit("serving", results, goals, quick=args.quick)


if __name__ == "__main__":
    main()
