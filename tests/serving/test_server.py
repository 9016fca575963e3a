from __future__ import annotations

import concurrent.futures
import json
import time

import httpx
import numpy as np
import pytest
import torch
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from deepseek import ModelLoader
from deepseek.loader import export_onnx
from deepseek.serving import DeepSeekServing

X = np.arange(8, dtype=np.float32).reshape(2, 4)


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    return export_onnx(net, torch.zeros(1, 4), tmp_path_factory.mktemp("m") / "net.onnx",
                       input_names=["x"], output_names=["y"])


@pytest.fixture(scope="module")
def server(onnx_file):
    models = {"double": "test-double", "mlp": "tick-mlp", "net": str(onnx_file),
              "gru": "tick-gru"}
    with DeepSeekServing(models=models, port=0, grpc_port=0, batch_size=16, max_delay_ms=20,
                         max_request_mb=1) as s:
        yield s


@pytest.fixture(scope="module")
def http(server):
    return th.InferenceServerClient(server.http_url)


@pytest.fixture(scope="module")
def grpc_client(server):
    return tg.InferenceServerClient(server.grpc_address)


def test_health_and_metadata(http, grpc_client):
    assert http.is_server_live() and http.is_server_ready()
    assert grpc_client.is_server_live() and grpc_client.is_server_ready()
    assert http.is_model_ready("double") and grpc_client.is_model_ready("mlp")
    md = http.get_server_metadata()
    assert md["name"] == "deepseek" and "binary_tensor_data" in md["extensions"]
    assert grpc_client.get_server_metadata().name == "deepseek"
    mm = http.get_model_metadata("mlp")
    assert mm["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 17]}]
    assert mm["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}]
    g = grpc_client.get_model_metadata("net")
    assert g.platform == "onnxruntime_onnx" and g.inputs[0].name == "x"
    assert list(g.outputs[0].shape) == [-1, 3]
    gru = http.get_model_metadata("gru")
    assert gru["inputs"][0]["shape"] == [-1, -1, 17] and gru["outputs"][0]["shape"] == [-1, -1, 3]


def _http_infer(http, model, name, x, binary=True, out_binary=True):
    inp = th.InferInput(name, list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    return http.infer(model, [inp], outputs=[th.InferRequestedOutput(
        "output" if model != "net" else "y", binary_data=out_binary)])


def _grpc_infer(client, model, name, x):
    inp = tg.InferInput(name, list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return client.infer(model, [inp])


@pytest.mark.parametrize("binary", [True, False])
def test_http_inference_json_and_binary(http, binary):
    r = _http_infer(http, "double", "x", X, binary=binary, out_binary=binary)
    np.testing.assert_array_equal(r.as_numpy("output"), X * 2)
    feats = np.random.default_rng(0).normal(size=(3, 17)).astype(np.float32)
    r = _http_infer(http, "mlp", "features", feats, binary=binary, out_binary=binary)
    ref = ModelLoader.load("tick-mlp")(feats)
    np.testing.assert_allclose(r.as_numpy("output"), ref, atol=1e-6)


def test_grpc_inference_and_onnx(grpc_client, http, onnx_file):
    np.testing.assert_array_equal(_grpc_infer(grpc_client, "double", "x", X).as_numpy("output"),
                                  X * 2)
    ref = ModelLoader.load(onnx_file)(X)
    np.testing.assert_allclose(_grpc_infer(grpc_client, "net", "x", X).as_numpy("y"), ref,
                               atol=1e-6)
    np.testing.assert_allclose(_http_infer(http, "net", "x", X).as_numpy("y"), ref, atol=1e-6)


def test_each_answer_names_the_model_file_that_made_it(grpc_client, http, onnx_file):
    """Over REST and gRPC an answer carries model_sha256, the SHA-256 of the file served (a
    registered name's packaged weights); a model with no file of its own carries none."""
    from deepseek.loader.base import file_sha256
    from deepseek.plugins import models

    want = file_sha256(onnx_file)
    got = _grpc_infer(grpc_client, "net", "x", X).get_response()
    assert dict(got.parameters) == {"model_sha256": tg.service_pb2.InferParameter(
        string_param=want)}
    assert _http_infer(http, "net", "x", X).get_response()["parameters"] == \
        {"model_sha256": want}
    feats = np.zeros((1, 17), np.float32)
    answer = _http_infer(http, "mlp", "features", feats).get_response()
    assert answer["parameters"] == \
        {"model_sha256": file_sha256(models().entry("tick-mlp").meta["weights"])}
    from deepseek.serving.models import ServedModel

    assert ServedModel("m", torch.nn.Linear(4, 3), allow_untrained=True).identity() == {}


def test_plain_json_with_curl_style_request(server):
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                        "data": [[1, 2, 3, 4]]}], "id": "r1"}
    r = httpx.post(f"http://{server.http_url}/v2/models/double/infer", json=body)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    out = r.json()
    assert out["id"] == "r1" and out["outputs"][0]["data"] == [2, 4, 6, 8]
    r = httpx.post(f"http://{server.http_url}/v2/models/double/versions/1/infer", json=body)
    assert r.status_code == 200


def test_sequences_of_different_lengths_are_padded_and_cut_back(server):
    gru = ModelLoader.load("tick-gru")
    rng = np.random.default_rng(1)
    seqs = [rng.normal(size=(1, n, 17)).astype(np.float32) for n in (5, 9, 2, 7)]

    def call(x):
        c = th.InferenceServerClient(server.http_url)
        inp = th.InferInput("features", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        return c.infer("gru", [inp]).as_numpy("output")

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(call, seqs))
    for x, y in zip(seqs, outs):
        assert y.shape == (1, x.shape[1], 3)
        np.testing.assert_allclose(y, gru(x), atol=1e-5)


# ------------------------------------------------------------------------------ bad input
def _post(server, path, content, headers=None):
    return httpx.post(f"http://{server.http_url}{path}", content=content, headers=headers or {})


def _req(name="x", shape=(1, 4), datatype="FP32", data=(1, 2, 3, 4)):
    return json.dumps({"inputs": [{"name": name, "shape": list(shape), "datatype": datatype,
                                   "data": list(data)}]}).encode()


@pytest.mark.parametrize("path,body,status,pattern", [
    ("/v2/models/nope/infer", _req(), 404, "unknown model 'nope'"),
    ("/v2/models/double/infer", _req(name="y"), 400, "has no input 'y'"),
    ("/v2/models/double/infer", _req(shape=(2, 2)), 400, r"shape \[2, 2\]; expected \[-1, 4\]"),
    ("/v2/models/double/infer", _req(datatype="INT32"), 400, "must be FP32, got INT32"),
    ("/v2/models/double/infer", _req(data=(1, 2, 3)), 400, r"3 values for shape \[1, 4\]"),
    ("/v2/models/double/infer", b"{not json", 400, "malformed JSON"),
    ("/v2/models/double/infer", b'{"inputs": 3}', 400, "'inputs' list"),
    ("/v2/models/double/infer", _req(datatype="FP8"), 400, "unsupported datatype 'FP8'"),
    ("/v2/models/double/versions/7/infer", _req(), 404, "version 1 only"),
])
def test_rest_errors(server, path, body, status, pattern):
    r = _post(server, path, body)
    assert r.status_code == status, r.text
    assert "error" in r.json()
    import re

    assert re.search(pattern, r.json()["error"]), r.json()["error"]


def test_rest_binary_errors_and_oversize(server):
    head = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 16}}]}).encode()
    ok = _post(server, "/v2/models/double/infer", head + X[:1].tobytes(),
               {"Inference-Header-Content-Length": str(len(head))})
    assert ok.status_code == 200
    trunc = _post(server, "/v2/models/double/infer", head + X[:1].tobytes()[:10],
                  {"Inference-Header-Content-Length": str(len(head))})
    assert trunc.status_code == 400 and "binary data truncated" in trunc.json()["error"]
    bad_len = _post(server, "/v2/models/double/infer", head + X[:1].tobytes(),
                    {"Inference-Header-Content-Length": "99999"})
    assert bad_len.status_code == 400 and "Inference-Header-Content-Length" in \
        bad_len.json()["error"]
    big = _post(server, "/v2/models/double/infer", b"0" * (2 * 2**20))
    assert big.status_code == 413 and "exceeds the limit" in big.json()["error"]
    assert _post(server, "/v2/models/double/infer", _req()).status_code == 200  # still serving


def test_failing_model_call_is_a_clean_error(server):
    r = _post(server, "/v2/models/double/infer", _req(data=(-5000, 1, 2, 3)))
    assert r.status_code == 400 and "values below -1000 are refused" in r.json()["error"]


@pytest.mark.parametrize("case,code,pattern", [
    ("unknown model", "NOT_FOUND", "unknown model"),
    ("wrong name", "INVALID_ARGUMENT", "has no input"),
    ("wrong shape", "INVALID_ARGUMENT", "expected"),
    ("wrong dtype", "INVALID_ARGUMENT", "must be FP32"),
    ("wrong length", "INVALID_ARGUMENT", "bytes of data for shape"),
    ("oversize", "RESOURCE_EXHAUSTED", ""),
])
def test_grpc_errors(server, grpc_client, case, code, pattern):
    model, name, x, dt = "double", "x", X, "FP32"
    if case == "unknown model":
        model = "nope"
    elif case == "wrong name":
        name = "y"
    elif case == "wrong shape":
        x = np.zeros((2, 3), np.float32)
    elif case == "wrong dtype":
        x, dt = X.astype(np.int32), "INT32"
    elif case == "oversize":
        x = np.zeros((2**16, 8), np.float32)  # 2 MiB > 1 MiB limit
    inp = tg.InferInput(name, list(x.shape), dt)
    inp.set_data_from_numpy(x)
    if case == "wrong length":
        inp._raw_content = X.tobytes()[:20]  # 20 bytes for a 2x4 FP32 tensor
    with pytest.raises(InferenceServerException) as exc:
        grpc_client.infer(model, [inp])
    assert code in str(exc.value.status()), exc.value
    assert pattern in exc.value.message()
    np.testing.assert_array_equal(_grpc_infer(grpc_client, "double", "x", X).as_numpy("output"),
                                  X * 2)  # still serving


def test_metrics_endpoint(server, http):
    _http_infer(http, "double", "x", X)
    text = httpx.get(f"http://{server.http_url}/metrics").text
    assert 'deepseek_requests_total{model="double",protocol="rest"}' in text
    assert "deepseek_request_latency_seconds_bucket" in text
    assert 'deepseek_queue_depth{model="double"}' in text
    assert 'deepseek_batch_size_count{model="double"}' in text


# ------------------------------------------------------------------------------ batching
def _wait_for(cond, what, timeout=30.0):
    """Poll ``cond`` until it holds (a deadline, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def _body(v, n=1):
    return {"inputs": [{"name": "x", "shape": [n, 4], "datatype": "FP32",
                        "data": [float(v)] * 4 * n}]}


def test_arrivals_during_a_run_form_one_batch_and_a_bad_request_fails_alone(gate):
    with DeepSeekServing(models={"gated": "test-gated"}, port=0, grpc_port=None,
                         batch_size=32) as s:
        gate.arm()
        url = f"http://{s.http_url}/v2/models/gated/infer"
        batcher = s.batchers["gated"]
        with concurrent.futures.ThreadPoolExecutor(9) as pool:
            first = pool.submit(httpx.post, url, json=_body(100), timeout=60)
            gate.wait_entered()  # the idle model took the lone request at once
            values = [1, 2, 3, -5000, 5, 6, 7, 8]
            rest = [pool.submit(httpx.post, url, json=_body(v), timeout=60) for v in values]
            _wait_for(lambda: batcher.depth == 8, "8 queued requests")
            gate.open.set()
            assert first.result().status_code == 200
            results = [f.result() for f in rest]
        stats = batcher.stats
    for v, r in zip(values, results):
        if v < 0:
            assert r.status_code == 400 and "refused" in r.json()["error"]
        else:
            assert r.status_code == 200, r.text
            assert r.json()["outputs"][0]["data"] == [2.0 * v] * 4
    assert sorted(gate.calls[1]) == sorted(values)  # all eight in the second batch
    assert stats.sizes == {1: 1, 8: 1}
    assert stats.runs == 1 + 7  # split three times to isolate the bad one, not 1 + 8


def test_queue_bound_answers_503_and_unavailable(gate):
    with DeepSeekServing(models={"gated": "test-gated"}, port=0, grpc_port=0, batch_size=1,
                         max_queue=2) as s:
        gate.arm()
        url = f"http://{s.http_url}/v2/models/gated/infer"
        c = tg.InferenceServerClient(s.grpc_address)
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            running = pool.submit(httpx.post, url, json=_body(1), timeout=60)
            gate.wait_entered()
            queued = [pool.submit(httpx.post, url, json=_body(v), timeout=60) for v in (2, 3)]
            _wait_for(lambda: s.batchers["gated"].depth == 2, "2 queued requests")
            r = httpx.post(url, json=_body(4), timeout=60)
            assert r.status_code == 503 and "queue is full" in r.json()["error"]
            with pytest.raises(InferenceServerException) as exc:
                _grpc_infer(c, "gated", "x", X[:1])
            assert "UNAVAILABLE" in str(exc.value.status())  # the status clients retry on
            gate.open.set()
            assert [f.result().status_code for f in [running, *queued]] == [200, 200, 200]
        text = httpx.get(f"http://{s.http_url}/metrics").text
        assert 'deepseek_request_errors_total{code="503",model="gated",protocol="rest"} 1.0' \
            in text


def test_token_on_both_protocols_and_metrics():
    with DeepSeekServing(models={"double": "test-double"}, port=0, grpc_port=0,
                         token="s3cret") as s:
        url = f"http://{s.http_url}/v2/models/double/infer"
        assert httpx.post(url, content=_req()).status_code == 401
        r = httpx.post(url, content=_req(), headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and "bearer token" in r.json()["error"]
        r = httpx.post(url, content=_req(), headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200
        assert httpx.get(f"http://{s.http_url}/metrics").status_code == 401
        assert httpx.get(f"http://{s.http_url}/metrics",
                         headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(f"http://{s.http_url}/v2/health/live").status_code == 200
        assert httpx.get(f"http://{s.http_url}/v2/models/double").status_code == 401
        c = tg.InferenceServerClient(s.grpc_address)
        with pytest.raises(InferenceServerException) as exc:
            _grpc_infer(c, "double", "x", X)
        assert "UNAUTHENTICATED" in str(exc.value.status())
        inp = tg.InferInput("x", [2, 4], "FP32")
        inp.set_data_from_numpy(X)
        out = c.infer("double", [inp], headers={"authorization": "Bearer s3cret"})
        np.testing.assert_array_equal(out.as_numpy("output"), X * 2)
        h = th.InferenceServerClient(s.http_url)
        inp2 = th.InferInput("x", [2, 4], "FP32")
        inp2.set_data_from_numpy(X)
        res = h.infer("double", [inp2], headers={"Authorization": "Bearer s3cret"})
        np.testing.assert_array_equal(res.as_numpy("output"), X * 2)
    with DeepSeekServing(models={"double": "test-double"}, port=0, grpc_port=None,
                         token="s3cret", metrics_public=True) as s:
        assert httpx.get(f"http://{s.http_url}/metrics").status_code == 200


def test_shutdown_drains_in_flight_requests(gate):
    s = DeepSeekServing(models={"gated": "test-gated"}, port=0, grpc_port=None, batch_size=1)
    s.start_background()
    gate.arm()
    url = f"http://{s.http_url}/v2/models/gated/infer"
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        running = pool.submit(httpx.post, url, json=_body(1), timeout=60)
        gate.wait_entered()
        queued = [pool.submit(httpx.post, url, json=_body(v), timeout=60) for v in (2, 3, 4)]
        _wait_for(lambda: s.batchers["gated"].depth == 3, "3 queued requests")
        stopper = pool.submit(s.stop)
        _wait_for(lambda: not s.accepting, "the server to stop accepting")
        ready = httpx.get(f"http://{s.http_url}/v2/health/ready", timeout=10)
        assert ready.status_code == 503  # load balancers take this replica out
        late = httpx.post(url, json=_body(5), timeout=10)
        assert late.status_code == 503 and "shutting down" in late.json()["error"]
        gate.open.set()
        codes = [f.result().status_code for f in [running, *queued]]
        stopper.result()
    assert codes == [200, 200, 200, 200]  # everything accepted before the stop is answered
    with pytest.raises(httpx.ConnectError):
        httpx.post(url, json=_body(6), timeout=2)


def test_pre_stop_delay_serves_while_not_ready():
    """With drain_delay_s, the first stop signal turns readiness off but keeps serving (load
    balancers need time to take the replica out); a second one goes on to the drain."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    s = DeepSeekServing(models={"d": "test-double"}, port=0, grpc_port=0, drain_delay_s=600,
                        token="s3cret")  # probes need no token
    s.start_background()
    base = f"http://{s.http_url}"
    channel = grpc.insecure_channel(s.grpc_address)
    health = health_pb2_grpc.HealthStub(channel)
    serving, not_serving = (health_pb2.HealthCheckResponse.SERVING,
                            health_pb2.HealthCheckResponse.NOT_SERVING)

    def check(service=""):
        return health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status

    try:
        assert httpx.get(f"{base}/v2/health/ready", timeout=10).status_code == 200
        assert check() == serving and check("inference.GRPCInferenceService") == serving
        with pytest.raises(grpc.RpcError) as unknown:
            check("no.such.Service")
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
        assert next(watch).status == serving
        s.begin_stop()
        assert next(watch).status == not_serving  # the stream follows readiness
        watch.cancel()
        _wait_for(lambda: not s.ready, "readiness to turn off")
        assert check() == not_serving and check("inference.GRPCInferenceService") == not_serving
        assert httpx.get(f"{base}/v2/health/ready", timeout=10).status_code == 503
        assert httpx.get(f"{base}/v2/models/d/ready", timeout=10,
                         headers={"Authorization": "Bearer s3cret"}).status_code == 503
        assert not tg.InferenceServerClient(s.grpc_address).is_server_ready(
            headers={"authorization": "Bearer s3cret"})
        assert httpx.get(f"{base}/v2/health/live", timeout=10).status_code == 200
        r = httpx.post(f"{base}/v2/models/d/infer", json=_body(3), timeout=10,
                       headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [6.0] * 4
        assert s.accepting
        s.begin_stop()  # the second signal: no more waiting
        _wait_for(lambda: s._thread is not None and not s._thread.is_alive(),
                  "the server to drain and exit")
    finally:
        channel.close()
        s.stop()
    from deepseek.errors import DeepSeekError

    with pytest.raises(DeepSeekError, match="drain_delay_s"):
        DeepSeekServing(models={"d": "test-double"}, drain_delay_s=-1)


def test_no_model_and_bad_port():
    from deepseek.errors import DeepSeekError

    with pytest.raises(DeepSeekError, match="no model to serve"):
        DeepSeekServing()
    with DeepSeekServing(models={"d": "test-double"}, port=0, grpc_port=None) as s:
        with pytest.raises(DeepSeekError, match="failed to start"):
            DeepSeekServing(models={"d": "test-double"}, port=s.http_port,
                            grpc_port=None).start_background()


def test_timeout_on_both_protocols_and_health_never_waits_behind_inference(gate):
    with DeepSeekServing(models={"gated": "test-gated"}, port=0, grpc_port=0, batch_size=1,
                         timeout_s=0.2) as s:
        gate.arm()
        url = f"http://{s.http_url}/v2/models/gated/infer"
        r = httpx.post(url, content=_req(), timeout=30)  # the model is held at the gate
        assert r.status_code == 504 and "no answer within 0.2 s" in r.json()["error"]
        c = tg.InferenceServerClient(s.grpc_address)
        with pytest.raises(InferenceServerException) as exc:
            _grpc_infer(c, "gated", "x", X)
        assert "DEADLINE_EXCEEDED" in str(exc.value.status())
        # the model is still busy with the abandoned request: probes answer regardless
        assert len(gate.calls) >= 1 and not gate.open.is_set()
        assert httpx.get(f"http://{s.http_url}/v2/health/ready").status_code == 200
        assert httpx.get(f"http://{s.http_url}/v2/health/live").status_code == 200
        assert c.is_server_ready()
        gate.open.set()


def test_threads_never_exceed_the_ceiling_and_follow_the_load():
    import torch

    before = torch.get_num_threads()
    try:
        s = DeepSeekServing(models={"d": "test-double"}, port=0, grpc_port=None, threads=1)
        assert (s.threads, s.load_threads, torch.get_num_threads()) == (1, 1, 1)
        sizer = s._sizer("d")
        for args in ((1, 0, 1), (8, 3, 8), (1, 0, 4), (5, 0, 5)):
            sizer(*args)
            assert torch.get_num_threads() == 1  # --threads 1: never a burst above it
        s = DeepSeekServing(models={"d": "test-double"}, port=0, grpc_port=None, threads=4)
        policy = s.policies["d"]
        assert s.load_threads == 3 and set(policy.choices) == {1, 2, 4}
        sizer = s._sizer("d")
        sizer(8, 3, 8)
        assert torch.get_num_threads() == 3  # under load: a core left to the event loop
        sizer(1, 0, 1)
        assert torch.get_num_threads() == policy.lone <= 4
        cal = s.calibration["d"].to_dict()
        assert set(cal["lone_ms"]) == {"1", "2", "4"} and cal["batch"] == 8
    finally:
        torch.set_num_threads(before)


def test_a_model_that_fails_on_its_timing_example_is_served_untimed(tmp_path, caplog):
    """Start-up timing runs zeros at the smallest free sizes; a model with free image sizes
    that cannot take 1 x 1 (an ONNX file with a 3 x 3 convolution, unpadded) is served
    with the default thread policy and a warning, not refused as a crash."""
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
    path = export_onnx(net, torch.zeros(1, 1, 8, 8), tmp_path / "conv.onnx",
                       input_names=["image"], output_names=["features"],
                       dynamic_axes={"image": {0: "b", 2: "h", 3: "w"},
                                     "features": {0: "b", 2: "h2", 3: "w2"}})
    x = np.arange(2 * 1 * 6 * 5, dtype=np.float32).reshape(2, 1, 6, 5)
    with caplog.at_level("WARNING", logger="deepseek.serving.server"):
        with DeepSeekServing(models={"conv": str(path)}, port=0, grpc_port=None) as s:
            inp = th.InferInput("image", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            out = th.InferenceServerClient(s.http_url).infer("conv", [inp])
            assert "conv" not in s.calibration
    with torch.inference_mode():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out.as_numpy("features"), want, atol=1e-5)
    assert any("model conv: not timed at start-up" in r.getMessage() and "[1, 1, 1, 1]"
               in r.getMessage() for r in caplog.records)


def test_an_onnx_file_with_a_fixed_batch_of_one_is_served_one_request_at_a_time(tmp_path):
    """An ONNX file exported for batch 1 (the usual export) cannot run two requests joined
    into one batch: its requests are never joined (before, every joined batch failed in
    onnxruntime and was split until each request ran alone, two extra runs per request),
    the start-up timing runs one sample at a time, and a request of batch 2 is a 400 that
    names the shape before the model runs."""
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh())
    path = export_onnx(net, torch.zeros(1, 4), tmp_path / "one.onnx", dynamic_batch=False)
    with DeepSeekServing(models={"one": str(path)}, port=0, grpc_port=None,
                         batch_size=16) as s:
        assert s.models["one"].fixed_batch
        assert s.batchers["one"].max_batch_size == 1
        cal = s.calibration["one"]
        assert cal.batching is False and cal.batch_ms is None

        def one(i):
            x = np.full((1, 4), i, dtype=np.float32)
            inp = th.InferInput("input", [1, 4], "FP32")
            inp.set_data_from_numpy(x)
            return th.InferenceServerClient(s.http_url).infer("one", [inp]).as_numpy("output")

        with concurrent.futures.ThreadPoolExecutor(6) as ex:
            outs = list(ex.map(one, range(12)))
        assert s.batchers["one"].stats.splits == 0
        two = httpx.post(f"http://{s.http_url}/v2/models/one/infer", json={"inputs": [
            {"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [0.0] * 8}]})
    with torch.inference_mode():
        for i, out in enumerate(outs):
            want = net(torch.full((1, 4), float(i))).numpy()
            np.testing.assert_allclose(out, want, atol=1e-6)
    assert two.status_code == 400 and "[2, 4]" in two.json()["error"]


def _declare(path, declared):
    import onnx

    from deepseek.loader import INPUTS_META_KEY

    model = onnx.load(str(path))
    model.metadata_props.add(key=INPUTS_META_KEY,
                             value=declared if isinstance(declared, str) else json.dumps(declared))
    onnx.save(model, str(path))
    return path


def _strided_conv(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, stride=4, padding=1), torch.nn.ReLU())
    return net, export_onnx(net, torch.zeros(1, 1, 8, 8), tmp_path / "conv.onnx",
                            input_names=["image"], output_names=["features"],
                            dynamic_axes={"image": {0: "b", 2: "h", 3: "w"},
                                          "features": {0: "b", 2: "h2", 3: "w2"}})


def test_an_onnx_file_declares_its_size_steps_and_timing_example_in_its_metadata(tmp_path):
    """An ONNX file with free image sizes declares in its metadata what a registered model
    declares with its inputs: each axis's step (requests off it are a 400 that says how
    to pad, before the model runs) and an example the start-up timing runs at (before,
    such a file was timed at 1 x 1, which its kernels could not take, and served untimed)."""
    net, path = _strided_conv(tmp_path)
    _declare(path, [{"name": "image", "multiple": [1, 1, 4, 4], "example": [1, 1, 8, 8]}])
    x = np.arange(2 * 12 * 8, dtype=np.float32).reshape(2, 1, 12, 8)
    with DeepSeekServing(models={"conv": str(path)}, port=0, grpc_port=None) as s:
        spec = s.models["conv"].inputs[0]
        assert spec.multiple == [1, 1, 4, 4] and spec.example == [1, 1, 8, 8]
        assert "conv" in s.calibration  # timed at the example
        client = th.InferenceServerClient(s.http_url)
        inp = th.InferInput("image", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        got = client.infer("conv", [inp]).as_numpy("features")
        off = httpx.post(f"http://{s.http_url}/v2/models/conv/infer", json={"inputs": [
            {"name": "image", "shape": [1, 1, 10, 8], "datatype": "FP32", "data": [0.0] * 80}]})
    with torch.inference_mode():
        np.testing.assert_allclose(got, net(torch.from_numpy(x)).numpy(), atol=1e-5)
    assert off.status_code == 400 and "axis 2" in off.json()["error"]
    assert "pad it to 12" in off.json()["error"]


@pytest.mark.parametrize("declared, says", [
    ("[{", "is not JSON"),
    ({"name": "image"}, "not a list"),
    ([{"name": "img", "multiple": [1, 1, 4, 4]}], "names input 'img'"),
    ([{"name": ["image"], "multiple": [1, 1, 4, 4]}], "names input ['image']"),
    ([{"name": "image", "multiple": [4, 4]}], "is not 4 positive integers"),
    ([{"name": "image", "multiple": [1, 1, 0, 4]}], "is not 4 positive integers"),
    ([{"name": "image", "example": [1, 1, 8, 8.5]}], "is not 4 positive integers"),
    ([{"name": "image", "cell": [1, 1, 16, 0]}], "cell [1, 1, 16, 0] is not 4 positive"),
    ([{"name": "image", "cost": 0.5}], "cost 0.5 is not a finite number of at least 1"),
    ([{"name": "image", "cost": "4"}], "cost '4' is not a finite number"),
    ([{"name": "image", "cost": True}], "cost True is not a finite number"),
    ([{"name": "image", "cost": float("nan")}], "cost nan is not a finite number"),
    ([{"name": "image", "follows": [None, None, ["image", 2, 1], None]}],
     "follows [None, None, ['image', 2, 1], None] is not 4 entries"),
    ([{"name": "image", "follows": [None, None, ["frames", 2, 16], None]}],
     "each null or [another input, its axis"),
    ([{"name": "image", "follows": [None, None]}], "is not 4 entries"),
    ([{"name": "image", "range": [255, 0]}], "range [255, 0] is not [low, high]"),
    ([{"name": "image", "range": [0]}], "range [0] is not [low, high]"),
    ([{"name": "image", "range": [0, "255"]}], "is not [low, high], two finite numbers"),
    ([{"name": "image", "range": [0, float("inf")]}], "is not [low, high], two finite"),
    ([{"name": "image", "decode": 5}], "decode 5 is not the name of a reader"),
    ([{"name": "image", "decode": " "}], "decode ' ' is not the name of a reader"),
    ([{"name": "image", "multiple": [1, 1, 4, 4], "example": [1, 1, 6, 8]}],
     "does not fit its shape"),
    ([{"name": "image", "example": [1, 2, 8, 8]}], "does not fit its shape"),
])
def test_an_onnx_files_declaration_that_does_not_fit_its_graph_is_refused(tmp_path, declared,
                                                                          says):
    from deepseek.errors import ModelLoadError

    _, path = _strided_conv(tmp_path)
    _declare(path, declared)
    with pytest.raises(ModelLoadError, match="conv.onnx: metadata 'deepseek.inputs'") as err:
        DeepSeekServing(models={"conv": str(path)}, port=0, grpc_port=None)
    assert says in str(err.value)


def test_an_axis_declared_to_follow_another_inputs_is_checked_before_the_model_runs(tmp_path):
    """A state whose size follows its frames (``follows``: ``[input, axis, step]``) sent at
    another size is a 400 that names both inputs and the size it must have, before the
    graph runs (where it would fail in whichever node first joins them); at its size, the
    model answers."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "n"])
    m = helper.make_tensor_value_info("m", TensorProto.FLOAT, ["b", "k"])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b", None]) for n in "yz"]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"]),
                               helper.make_node("Identity", ["m"], ["z"])], "g", [x, m], outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "pair.onnx"
    onnx.save(model, str(path))
    _declare(path, [{"name": "m", "follows": [None, ["x", 1, 4]]}])

    def send(s, n, k):
        return httpx.post(f"http://{s.http_url}/v2/models/pair/infer", json={"inputs": [
            {"name": "x", "shape": [1, n], "datatype": "FP32", "data": [0.0] * n},
            {"name": "m", "shape": [1, k], "datatype": "FP32", "data": [1.0] * k}]})

    with DeepSeekServing(models={"pair": str(path)}, port=0, grpc_port=None,
                         calibrate=False) as s:
        assert s.models["pair"].inputs[1].follows == [None, ("x", 1, 4)]
        off = send(s, 9, 2)
        ok = send(s, 9, 3)
    assert off.status_code == 400, off.text
    assert off.json()["error"] == (
        "model 'pair': input 'm' has shape [1, 2]; its axis 1 follows input 'x' axis 1 (9 "
        "in steps of 4) and must be 3: size 'm' to the 'x' it is sent with")
    assert ok.status_code == 200, ok.text


def test_values_outside_an_inputs_declared_range_are_refused_not_clipped(tmp_path):
    """An input that declares the values it takes (``range``: a camera's 12-bit words in
    16-bit ones take 0 to 4095) is checked on every request: a value outside it is a 400
    that gives the values sent and the range, before the model runs (a graph would clip it,
    or index past a table, in silence); values inside it are answered."""
    from onnx import TensorProto

    path = _declare(_identity_onnx(tmp_path / "words.onnx", TensorProto.UINT16),
                    [{"name": "x", "range": [0, 4095]}])

    def send(s, values):
        return httpx.post(f"http://{s.http_url}/v2/models/words/infer", json={"inputs": [
            {"name": "x", "shape": [1, 3], "datatype": "UINT16", "data": values}]})

    with DeepSeekServing(models={"words": str(path)}, port=0, grpc_port=None,
                         calibrate=False) as s:
        assert s.models["words"].inputs[0].value_range == (0, 4095)
        over = send(s, [0, 4096, 12])
        ok = send(s, [0, 4095, 12])
    assert over.status_code == 400, over.text
    assert over.json()["error"] == (
        "model 'words': input 'x' holds values from 0 to 4096; the model takes 0 to 4095: "
        "send values in that range (the model's declared range; nothing is clipped)")
    assert ok.status_code == 200 and ok.json()["outputs"][0]["data"] == [0, 4095, 12]


def _identity_onnx(path, elem_type, name="x"):
    import onnx
    from onnx import helper

    x = helper.make_tensor_value_info(name, elem_type, ["b", 3])
    y = helper.make_tensor_value_info("y", elem_type, ["b", 3])
    graph = helper.make_graph([helper.make_node("Identity", [name], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("elem, datatype, values", [
    ("UINT16", "UINT16", np.array([[0, 4095, 65535]], np.uint16)),   # a 12/16-bit camera
    ("INT16", "INT16", np.array([[-300, 0, 32767]], np.int16)),
    ("UINT32", "UINT32", np.array([[1, 2, 4_000_000_000]], np.uint32)),
    ("UINT64", "UINT64", np.array([[1, 2, 2 ** 63]], np.uint64)),
    ("STRING", "BYTES", np.array([[b"ok", "\u00e9t\u00e9".encode(), b""]], dtype=object)),
])
def test_onnx_tensors_of_every_protocol_datatype_are_served(tmp_path, elem, datatype, values):
    """An ONNX file with 16-bit (a 12- or 16-bit camera's frames), 32- or 64-bit unsigned,
    or string inputs is served as that datatype, and answers what it was sent (before:
    advertised as FP32, so the right datatype was refused with "must be FP32, got UINT16";
    strings reached onnxruntime as "b'ok'")."""
    from onnx import TensorProto

    path = _identity_onnx(tmp_path / "m.onnx", getattr(TensorProto, elem))
    with DeepSeekServing(models={"m": str(path)}, port=0, grpc_port=0) as s:
        meta = th.InferenceServerClient(s.http_url).get_model_metadata("m")
        assert meta["inputs"][0]["datatype"] == datatype == meta["outputs"][0]["datatype"]
        rest = th.InferInput("x", [1, 3], datatype)
        rest.set_data_from_numpy(values)
        got = th.InferenceServerClient(s.http_url).infer("m", [rest]).as_numpy("y")
        grpc = tg.InferInput("x", [1, 3], datatype)
        grpc.set_data_from_numpy(values)
        got2 = tg.InferenceServerClient(s.grpc_address).infer("m", [grpc]).as_numpy("y")
    for g in (got, got2):
        assert g.tolist() == values.tolist()


def test_an_onnx_string_input_refuses_bytes_that_are_not_text_and_other_types_name_the_tensor(
        tmp_path):
    from onnx import TensorProto

    from deepseek.errors import ModelLoadError

    path = _identity_onnx(tmp_path / "s.onnx", TensorProto.STRING)
    with DeepSeekServing(models={"s": str(path)}, port=0, grpc_port=None) as s:
        inp = th.InferInput("x", [1, 3], "BYTES")
        inp.set_data_from_numpy(np.array([[b"a", b"\xff\xfe", b"c"]], dtype=object))
        with pytest.raises(InferenceServerException, match="BYTES element 1 is not UTF-8 text"):
            th.InferenceServerClient(s.http_url).infer("s", [inp])
    bf16 = _identity_onnx(tmp_path / "bf.onnx", TensorProto.BFLOAT16, name="frames")
    with pytest.raises(ModelLoadError, match=r"bf.onnx: 'frames' is tensor\(bfloat16\), which "
                                             "the Open Inference Protocol server cannot carry"):
        DeepSeekServing(models={"b": str(bf16)}, port=0, grpc_port=None)
