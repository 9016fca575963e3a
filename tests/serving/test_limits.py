"""What a request may take: the memory budget (413 before the memory is taken, 503 while
others hold it), client disconnects (not server errors), slow clients (closed or 408), and
typed gRPC contents decoded without Python lists."""

from __future__ import annotations

import json
import socket
import time

import httpx
import numpy as np
import pytest

from deepseek.serving import DeepSeekServing
from deepseek.serving.limits import MemoryBudget, decode_cost, memory_limit


def _deadline_recv(sock: socket.socket, seconds: float = 30.0) -> bytes:
    """What the server sends until it closes the connection (polling with a deadline)."""
    sock.settimeout(seconds)
    out = b""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            return out
        out += chunk
    raise AssertionError(f"the server kept the connection open: {out[:200]!r}")


def test_budget_refuses_what_cannot_fit_and_what_must_wait(tmp_path):
    b = MemoryBudget(total=100, per_request=60)
    r1 = b.reserve(50, "a")
    with pytest.raises(Exception, match="allows 0 MiB per request") as exc:
        b.reserve(61, "big")
    assert exc.value.status == 413
    with pytest.raises(Exception, match="busy with large requests") as exc:
        b.reserve(51, "b")
    assert exc.value.status == 503
    r1.release()
    r1.release()  # idempotent
    with b.reserve(60, "c"):
        assert b.used == 60
    assert b.used == 0 and b.peak == 60
    assert decode_cost(1000, binary=False) > decode_cost(1000, binary=True) >= 1000
    root = tmp_path / "cg"
    (root / "pod").mkdir(parents=True)
    (root / "pod" / "memory.max").write_text("4294967296\n")
    (tmp_path / "self").write_text("0::/pod\n")
    assert memory_limit(root, tmp_path / "self") == 4 << 30


@pytest.mark.slow
def test_a_request_over_the_budget_is_refused_before_its_body_is_read():
    """A server process with a 64 MiB budget: a 12 MB JSON request (decoding it would take
    about 7x that) is refused at once, and the server's resident memory does not rise (the
    body is never decoded)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "deepseek.cli", "serve", "tick-mlp",
                             "--port", "0", "--no-grpc", "--no-calibrate", "--json",
                             "--memory-budget-mb", "64"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        url = f"{info['rest']}/v2/models/tick-mlp/infer"

        def rss() -> float:
            for line in open(f"/proc/{proc.pid}/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
            return float("nan")

        ok = {"inputs": [{"name": "features", "shape": [1, 17], "datatype": "FP32",
                          "data": [0.5] * 17}]}
        assert httpx.post(url, json=ok, timeout=30).status_code == 200
        rss0 = rss()
        big = json.dumps({"inputs": [{"name": "features", "shape": [100_000, 17],
                                      "datatype": "FP32", "data": [0.125] * 1_700_000}]})
        for _ in range(3):
            r = httpx.post(url, content=big.encode(), timeout=60)
            assert r.status_code == 413 and "MiB per request" in r.json()["error"]
        assert rss() - rss0 < 10, (rss0, rss())
        assert httpx.post(url, json=ok, timeout=30).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_a_full_budget_answers_503_with_retry_after(gate):
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]}
    size = len(json.dumps(body).encode())
    with DeepSeekServing(models={"gated": "test-gated"}, port=0, grpc_port=None,
                         batch_size=1) as s:
        s.memory.total = s.memory.per_request = decode_cost(size, binary=False)
        gate.arm()
        import concurrent.futures

        url = f"http://{s.http_url}/v2/models/gated/infer"
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            held = pool.submit(httpx.post, url, json=body, timeout=60)
            gate.wait_entered()  # the first request holds the whole budget while it runs
            r = httpx.post(url, json=body, timeout=30)
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert "busy with large requests" in r.json()["error"]
            gate.open.set()
            assert held.result().status_code == 200
        assert s.memory.used == 0


def test_a_client_that_leaves_mid_body_is_not_a_server_error():
    with DeepSeekServing(models={"d": "test-double"}, port=0, grpc_port=None) as s:
        sock = socket.create_connection(("127.0.0.1", s.http_port))
        sock.sendall(b"POST /v2/models/d/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000"
                     b"\r\nContent-Type: application/json\r\n\r\n{\"inputs\": [")
        sock.close()
        metrics = ""
        end = time.monotonic() + 30
        while 'code="499"' not in metrics and time.monotonic() < end:  # poll, deadline
            metrics = httpx.get(f"http://{s.http_url}/metrics").text
        assert 'deepseek_request_errors_total{code="499",model="d",protocol="rest"} 1.0' \
            in metrics
        assert 'code="500"' not in metrics


def test_slow_clients_are_cut_off():
    with DeepSeekServing(models={"d": "test-double"}, port=0, grpc_port=None,
                         head_timeout_s=0.5, read_idle_s=0.5) as s:
        head_only = socket.create_connection(("127.0.0.1", s.http_port))
        head_only.sendall(b"POST /v2/models/d/infer HTTP/1.1\r\nHost: x\r\n")  # never ends
        assert _deadline_recv(head_only) == b""  # closed without an answer
        head_only.close()
        body_stall = socket.create_connection(("127.0.0.1", s.http_port))
        body_stall.sendall(b"POST /v2/models/d/infer HTTP/1.1\r\nHost: x\r\nContent-Length: "
                           b"100\r\nContent-Type: application/json\r\n\r\n{\"in")
        answer = _deadline_recv(body_stall)
        assert answer.startswith(b"HTTP/1.1 408") and b"stopped arriving" in answer
        assert b"connection: close" in answer.lower()  # closed at once, the body unread
        body_stall.close()
        assert httpx.get(f"http://{s.http_url}/v2/health/ready").status_code == 200


def test_typed_grpc_contents_decode_and_are_checked():
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    with DeepSeekServing(models={"d": "test-double"}, port=0, grpc_port=0) as s:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(s.grpc_address))
        req = service_pb2.ModelInferRequest(model_name="d")
        t = req.inputs.add(name="x", datatype="FP32", shape=[2, 4])
        t.contents.fp32_contents.extend([0.5] * 8)
        out = stub.ModelInfer(req, timeout=30)
        y = np.frombuffer(out.raw_output_contents[0], "<f4").reshape(2, 4)
        np.testing.assert_array_equal(y, np.full((2, 4), 1.0, np.float32))
        bad = service_pb2.ModelInferRequest(model_name="d")
        t = bad.inputs.add(name="x", datatype="FP32", shape=[2, 4])
        t.contents.fp32_contents.extend([0.5] * 7)
        with pytest.raises(grpc.RpcError) as exc:
            stub.ModelInfer(bad, timeout=30)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "7 values for shape [2, 4]" in exc.value.details()


def test_a_request_given_up_while_its_json_is_parsed_keeps_its_memory_until_the_parse_ends(
        monkeypatch):
    """A large JSON body is parsed in a worker thread. A request given up meanwhile (the
    client gone, the server cancelling it) leaves the parse running to its end, so what it
    reserved of the memory budget stays reserved until then, and is given back when it
    ends (before, it was given back at once, while the thread still filled that memory)."""
    import asyncio
    import contextlib
    import threading

    import deepseek.serving.rest as rest

    parsing, go_on = threading.Event(), threading.Event()
    real_parse = rest.parse_rest_request

    def slow_parse(body, header_length):
        parsing.set()
        assert go_on.wait(60)
        return real_parse(body, header_length)

    monkeypatch.setattr(rest, "parse_rest_request", slow_parse)
    monkeypatch.setattr(rest, "PARSE_OFFLOAD_BYTES", 0)  # every body parsed in a thread
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                   "data": [1, 2, 3, 4]}]}).encode()
    with DeepSeekServing(models={"d": "test-double"}, port=0, grpc_port=None) as s:
        app = rest.build_app(s)

        async def given_up() -> None:
            sent = []

            async def receive():
                if not sent:
                    sent.append(1)
                    return {"type": "http.request", "body": body, "more_body": False}
                await asyncio.Event().wait()  # the client says nothing more

            async def send(message):
                pass

            scope = {"type": "http", "http_version": "1.1", "method": "POST",
                     "scheme": "http", "path": "/v2/models/d/infer", "raw_path": b"",
                     "root_path": "", "query_string": b"", "server": ("test", 80),
                     "client": ("test", 1), "headers": [
                         (b"content-length", str(len(body)).encode()),
                         (b"content-type", b"application/json")]}
            task = asyncio.ensure_future(app(scope, receive, send))
            assert await asyncio.to_thread(parsing.wait, 60)
            held = s.memory.used
            assert held >= decode_cost(len(body), binary=False)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert s.memory.used == held  # the parse goes on: its memory stays reserved
            go_on.set()
            # the parse's thread ends; its end reaches this loop before the shutdown's does
            await asyncio.get_running_loop().shutdown_default_executor()
            assert s.memory.used == 0

        asyncio.run(given_up())
