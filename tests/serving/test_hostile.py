"""Hostile and malformed requests: refused with a message naming the problem, before anything
is allocated for them, and the server keeps serving (REST and gRPC)."""

from __future__ import annotations

import json
import tracemalloc

import grpc
import httpx
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from deepseek.serving import DeepSeekServing
from deepseek.serving.protocol import InferenceError, parse_rest_request, rest_inputs

GOOD = {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}


@pytest.fixture(scope="module")
def server():
    with DeepSeekServing(models={"double": "test-double"}, port=0, grpc_port=0,
                         max_request_mb=1, max_elements=1 << 20) as s:
        yield s


def _raw(server, body: bytes, headers=None):
    return httpx.post(f"http://{server.http_url}/v2/models/double/infer", content=body,
                      headers=headers or {}, timeout=30)


def _json(server, obj):
    return _raw(server, json.dumps(obj).encode())


DEEP = b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ' + \
    b"[" * 100_000 + b"]" * 100_000 + b"}]}"

CASES = [
    ({"inputs": [{**GOOD, "datatype": ["FP32"]}]}, 400, r"unsupported datatype \['FP32'\]"),
    ({"inputs": [GOOD], "parameters": [1]}, 400, "'parameters' must be a JSON object"),
    ({"inputs": [{**GOOD, "parameters": [1]}]}, 400, "input 'x': 'parameters' must be"),
    ({"inputs": [GOOD], "outputs": 5}, 400, "'outputs' must be a list"),
    ({"inputs": [GOOD], "outputs": [{"name": 3}]}, 400, "string 'name'"),
    ({"inputs": [{**GOOD, "shape": [2, 2], "data": [[1, 2], [3, 4, 5]]}]}, 400,
     r"nested data does not match shape \[2, 2\]: 3 items at depth 1"),
    ({"inputs": [{**GOOD, "data": [[1, 2], 3, 4]}]}, 400, "nested data does not match"),
    ({"inputs": [GOOD, GOOD]}, 400, "input 'x' appears twice"),
    ({"inputs": [{**GOOD, "shape": [10_000_000_000]}]}, 413,
     r"shape \[10000000000\] has 10000000000 elements; this server takes at most 1048576"),
    ({"inputs": [{**GOOD, "shape": [0, 4], "data": []}]}, 400, "axis 0 is empty"),
    ({"inputs": [{**GOOD, "shape": [True, 4]}]}, 400, "shape must be a list"),
    ({"inputs": [{**GOOD, "shape": [1, -4]}]}, 400, "shape must be a list"),
    ({"inputs": [{**GOOD, "shape": [1.0, 4]}]}, 400, "shape must be a list"),
    ({"inputs": [{**GOOD, "data": ["1", "2", "3", "4"]}]}, 400, "data is not FP32: '1'"),
    ({"inputs": [{**GOOD, "data": [True, 2, 3, 4]}]}, 400, "data is not FP32: True"),
    ({"inputs": [{**GOOD, "data": {"a": 1}}]}, 400, "'data' must be a JSON list"),
    ({"inputs": [{**GOOD, "data": [1, None, 3, 4]}]}, 400, "data is not FP32: None"),
    ({"inputs": [{**GOOD, "datatype": "INT32", "data": [1, 2.5, 3, 4]}]}, 400,
     "INT32 data must be whole numbers"),
    ({"inputs": [{**GOOD, "datatype": "INT8", "data": [1, 300, 3, 4]}]}, 400,
     r"values outside the range of INT8 \(-128..127\)"),
    ({"inputs": [{**GOOD, "datatype": "FP16", "data": [1, 1e6, 3, 4]}]}, 400,
     "values too large for FP16"),
    ({"inputs": [{**GOOD, "datatype": "BOOL", "data": [True, 1, False, True]}]}, 400,
     "data is not BOOL: 1"),
    ({"inputs": [{**GOOD, "name": 7}]}, 400, "'name' must be a non-empty string"),
    ({"inputs": [GOOD], "id": 5}, 400, "'id' must be a string"),
    ({"inputs": [GOOD], "parameters": {"timeout": "soon"}}, 400, "'timeout' must be a number"),
    ({"inputs": []}, 400, "non-empty 'inputs' list"),
    ([1, 2], 400, "must be a JSON object"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                  "parameters": {"binary_data_size": -1}}]}, 400, "bad binary_data_size -1"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                  "parameters": {"binary_data_size": True}}]}, 400, "bad binary_data_size True"),
]


@pytest.mark.parametrize("body,status,pattern", CASES, ids=[p for _, _, p in CASES])
def test_malformed_rest_requests(server, body, status, pattern):
    import re

    r = _json(server, body)
    assert r.status_code == status, r.text
    assert re.search(pattern, r.json()["error"]), r.json()["error"]


def test_deep_nesting_wrong_lengths_and_the_server_stays_healthy(server):
    r = _raw(server, DEEP)
    assert r.status_code == 400 and "too deep" in r.json()["error"]
    head = json.dumps({"inputs": [{"name": "x", "shape": [1_000_000], "datatype": "BYTES",
                                   "parameters": {"binary_data_size": 8}}]}).encode()
    r = _raw(server, head + b"\x01\x00\x00\x00a\x00\x00\x00",
             {"Inference-Header-Content-Length": str(len(head))})
    assert r.status_code == 400 and "8 bytes cannot hold 1000000 BYTES elements" in \
        r.json()["error"]
    r = _raw(server, b"{}", {"Inference-Header-Content-Length": "-3"})
    assert r.status_code == 400 and "Inference-Header-Content-Length is -3" in r.json()["error"]
    r = _raw(server, b"{}", {"Inference-Header-Content-Length": "x"})
    assert r.status_code == 400 and "must be an integer" in r.json()["error"]
    ok = _json(server, {"inputs": [GOOD]})
    assert ok.status_code == 200 and ok.json()["outputs"][0]["data"] == [2, 4, 6, 8]
    text = httpx.get(f"http://{server.http_url}/metrics").text
    assert 'deepseek_request_errors_total{code="400",model="double",protocol="rest"}' in text


def test_joined_requests_hold_no_more_elements_than_one_request_may(server):
    """The element cap bounds a joined batch too (the batcher's bound, tested in
    tests/core/test_batching.py), so concurrent large requests never run as one run larger
    than the largest request allowed."""
    assert {n: b.max_elements for n, b in server.batchers.items()} == {"double": 1 << 20}


def test_a_huge_shape_is_refused_before_anything_is_allocated():
    body = json.dumps({"inputs": [{"name": "x", "shape": [10_000_000_000], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 16}}]}).encode()
    tracemalloc.start()
    try:
        req, tail = parse_rest_request(body + b"\x00" * 16, len(body))
        with pytest.raises(InferenceError) as exc:
            rest_inputs(req, tail, max_elements=1 << 60)  # no cap: the byte count refuses it
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "16 bytes of data for shape [10000000000]" in str(exc.value)
    assert peak < 200_000, peak  # bytes: nothing of the claimed 40 GB was allocated
    tracemalloc.start()
    try:
        head = json.dumps({"inputs": [{"name": "s", "shape": [2_000_000_000],
                                       "datatype": "BYTES",
                                       "parameters": {"binary_data_size": 4}}]}).encode()
        req, tail = parse_rest_request(head + b"\x00" * 4, len(head))
        with pytest.raises(InferenceError, match="cannot hold 2000000000 BYTES elements"):
            rest_inputs(req, tail, max_elements=1 << 60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200_000, peak


def test_an_unexpected_error_is_a_json_500_counted_and_the_connection_stays_usable(
        server, monkeypatch):
    from deepseek.serving import rest

    def broken(*a, **k):
        raise RuntimeError("a bug in the response path")

    with httpx.Client(timeout=30) as client:
        url = f"http://{server.http_url}/v2/models/double/infer"
        monkeypatch.setattr(rest, "output_json", broken)
        r = client.post(url, json={"inputs": [GOOD]})
        assert r.status_code == 500
        assert r.json() == {"error": "internal server error (RuntimeError); the request was "
                                     "not processed"}
        monkeypatch.undo()
        r = client.post(url, json={"inputs": [GOOD]})  # the same connection
        assert r.status_code == 200
    text = httpx.get(f"http://{server.http_url}/metrics").text
    assert 'deepseek_request_errors_total{code="500",model="double",protocol="rest"} 1.0' in text


def _grpc_call(server, request):
    with grpc.insecure_channel(server.grpc_address) as ch:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)
        return stub.ModelInfer(request, timeout=30)


def _tensor(name="x", shape=(1, 4), datatype="FP32"):
    return service_pb2.ModelInferRequest.InferInputTensor(name=name, datatype=datatype,
                                                          shape=list(shape))


GRPC_CASES = [
    ("duplicate", [_tensor(), _tensor()], [b"\x00" * 16] * 2, "INVALID_ARGUMENT",
     "appears twice"),
    ("datatype", [_tensor(datatype="FP8")], [b"\x00" * 16], "INVALID_ARGUMENT",
     "unsupported datatype 'FP8'"),
    ("huge shape", [_tensor(shape=(10_000_000_000,))], [b"\x00" * 16], "RESOURCE_EXHAUSTED",
     "10000000000 elements"),
    ("short raw", [_tensor()], [b"\x00" * 10], "INVALID_ARGUMENT",
     "10 bytes of data for shape [1, 4]"),
    ("bytes count", [_tensor(shape=(1_000_000,), datatype="BYTES")], [b"\x00" * 8],
     "INVALID_ARGUMENT", "8 bytes cannot hold 1000000 BYTES elements"),
    ("raw count", [_tensor(), _tensor(name="y")], [b"\x00" * 16], "INVALID_ARGUMENT",
     "1 raw_input_contents for 2 inputs"),
    ("no inputs", [], [], "INVALID_ARGUMENT", "no inputs"),
]


@pytest.mark.parametrize("case,inputs,raw,code,pattern", GRPC_CASES,
                         ids=[c[0] for c in GRPC_CASES])
def test_malformed_grpc_requests(server, case, inputs, raw, code, pattern):
    req = service_pb2.ModelInferRequest(model_name="double", inputs=inputs,
                                        raw_input_contents=raw)
    with pytest.raises(grpc.RpcError) as exc:
        _grpc_call(server, req)
    assert exc.value.code().name == code, exc.value
    assert pattern in exc.value.details()
    good = service_pb2.ModelInferRequest(model_name="double", inputs=[_tensor()],
                                         raw_input_contents=[np.ones(4, np.float32).tobytes()])
    out = _grpc_call(server, good)  # still serving
    np.testing.assert_array_equal(np.frombuffer(out.raw_output_contents[0], np.float32),
                                  [2, 2, 2, 2])
