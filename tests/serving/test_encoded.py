"""Encoded files sent to an input that declares a reader of kind ``encoded`` (``decode`` in
an ONNX file's ``deepseek.inputs``): decoded item by item, off the event loop, the header
read and the pixels counted against the element cap and the memory budget before any are
decoded; the pixels are still taken as they are."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from deepseek import hookimpl
from deepseek.errors import DeepSeekError, InputTooLargeError
from deepseek.plugins import temporary_plugin
from deepseek.serving import DeepSeekServing

MAGIC = b"RAW8"
CALLS: list[dict] = []
DECODING, GO_ON = threading.Event(), threading.Event()


def encode(pixels: np.ndarray) -> bytes:
    """The test's own image format: magic, height and width (2 bytes each), the pixels."""
    h, w = pixels.shape
    return MAGIC + h.to_bytes(2, "little") + w.to_bytes(2, "little") + pixels.tobytes()


def decode_raw(data, *, dtype=np.uint8, max_pixels=None, reserve=None, where="file"):
    CALLS.append({"where": where, "dtype": str(dtype), "max_pixels": max_pixels})
    if data[:4] != MAGIC:
        raise DeepSeekError(f"{where}: not a RAW8 file")
    if data[4:6] == b"\xff\xff":
        raise ValueError("a bug")
    h, w = int.from_bytes(data[4:6], "little"), int.from_bytes(data[6:8], "little")
    if h * w > max_pixels:
        raise InputTooLargeError(f"{where}: {h} x {w} is over {max_pixels} pixels")
    reserve(h * w)
    CALLS[-1]["decoded"] = True
    if data[8:] == b"wait":  # a slow decoding: held until the test lets it go on
        DECODING.set()
        assert GO_ON.wait(60)
        return np.zeros((h, w), dtype)
    if len(data) == 9:  # one value for every pixel: a small file of a large picture
        return np.full((h, w), data[8], dtype)
    return np.frombuffer(data[8:8 + h * w], np.uint8).reshape(h, w).astype(dtype)


class RawPlugin:
    @staticmethod
    @hookimpl
    def register_readers(register):
        register("raw8", decode_raw, kind="encoded", description="the tests' RAW8 files")
        register("raw8-frames", decode_raw, kind="frames", description="not a decoder")


def _graph(tmp_path, decode="raw8"):
    """An ONNX graph that returns its uint8 images [b, h, w] as they are, declared to decode
    files with ``decode``."""
    import onnx
    from onnx import TensorProto, helper

    from deepseek.loader import INPUTS_META_KEY

    x = helper.make_tensor_value_info("image", TensorProto.UINT8, ["b", "h", "w"])
    y = helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["b", "h", "w"])
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["pixels"])], "g",
                              [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.metadata_props.add(key=INPUTS_META_KEY, value=json.dumps(
        [{"name": "image", "example": [1, 4, 4], "decode": decode}]))
    path = tmp_path / "same.onnx"
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture()
def served(tmp_path):
    CALLS.clear()
    with temporary_plugin(RawPlugin, name="raw-files"), \
            DeepSeekServing(models={"same": _graph(tmp_path)}, port=0, grpc_port=0,
                            calibrate=False, max_elements=400) as server:
        yield server


def _files(*arrays):
    return np.array([encode(a) for a in arrays], dtype=object)


def test_files_are_decoded_by_the_declared_reader_and_pixels_still_taken(served):
    """Over REST (binary data) and gRPC: each file becomes one item, as the reader decodes
    it; the pixels sent as UINT8 get the same answer; what decoding reserved is given back."""
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (2, 5, 7), dtype=np.uint8)
    assert served.models["same"].inputs[0].decode == "raw8"
    rest = th.InferenceServerClient(served.http_url)
    inp = th.InferInput("image", [2], "BYTES")
    inp.set_data_from_numpy(_files(a, b), binary_data=True)
    np.testing.assert_array_equal(rest.infer("same", [inp]).as_numpy("pixels"), [a, b])
    grpc = tg.InferenceServerClient(served.grpc_address)
    one = tg.InferInput("image", [1], "BYTES")
    one.set_data_from_numpy(_files(b))
    np.testing.assert_array_equal(grpc.infer("same", [one]).as_numpy("pixels"), [b])
    pixels = th.InferInput("image", [1, 5, 7], "UINT8")
    pixels.set_data_from_numpy(a[None])
    np.testing.assert_array_equal(rest.infer("same", [pixels]).as_numpy("pixels"), [a])
    assert [c["where"] for c in CALLS] == ["model 'same': input 'image' item 0",
                                           "model 'same': input 'image' item 1",
                                           "model 'same': input 'image' item 0"]
    assert {c["dtype"] for c in CALLS} == {"uint8"}
    assert [c["max_pixels"] for c in CALLS] == [400, 400 - 35, 400]  # the cap, less item 0
    assert served.memory.used == 0 and served.memory.peak >= 35


def _post(server, files=None, **tensor):
    body = {"name": "image", "datatype": "BYTES", **tensor}
    if files is None:
        return httpx.post(f"http://{server.http_url}/v2/models/same/infer",
                          json={"inputs": [body]}, timeout=60)
    blob = b"".join(len(f).to_bytes(4, "little") + f for f in files)
    body.update(shape=[len(files)], parameters={"binary_data_size": len(blob)})
    head = json.dumps({"inputs": [body]}).encode()
    return httpx.post(f"http://{server.http_url}/v2/models/same/infer", content=head + blob,
                      headers={"Inference-Header-Content-Length": str(len(head))},
                      timeout=60)


def test_bad_files_get_the_readers_reason_and_the_server_goes_on(served):
    """A file the reader refuses: 400 with its reason, naming the item; a header past the
    element cap: 413 before anything is decoded; a JSON body's string is read as its
    UTF-8 bytes; files of different sizes in one request: 400; a reader that fails on its
    own: 500 naming it; then a good file is answered and nothing stays reserved."""
    small, other = np.zeros((3, 4), np.uint8), np.ones((4, 3), np.uint8)
    refused = _post(served, [b"JPEG?"])
    assert refused.status_code == 400
    assert refused.json()["error"] == "model 'same': input 'image' item 0: not a RAW8 file"
    huge = MAGIC + (500).to_bytes(2, "little") + (500).to_bytes(2, "little")  # no pixels
    big = _post(served, [encode(small), huge])
    assert big.status_code == 413 and "item 1: 500 x 500 is over 388" in big.json()["error"]
    assert "decoded" not in CALLS[-1]  # the cap less item 0's 12 pixels, told from the header
    twenty = _post(served, [encode(np.zeros((20, 10), np.uint8))] * 2)  # 400 pixels
    assert twenty.status_code == 200, twenty.text
    past = _post(served, [encode(np.zeros((20, 10), np.uint8))] * 2 + [encode(small)])
    assert past.status_code == 413 and "item 2: 3 x 4 is over 0" in past.json()["error"]
    text = _post(served, shape=[1], data=["RAW8\x01\x00\x02\x00AB"])  # its UTF-8 bytes
    assert text.status_code == 200 and text.json()["outputs"][0]["data"] == [65, 66]
    mixed = _post(served, [encode(small), encode(other)])
    assert mixed.status_code == 400, mixed.text
    assert "decode to different sizes (item 0 [3, 4], item 1 [4, 3])" in mixed.json()["error"]
    flat = _post(served, [], shape=[1, 1])
    assert flat.status_code == 400 and "send [N], one encoded file per item" in \
        flat.json()["error"]
    bug = _post(served, [MAGIC + b"\xff\xff\x01\x00"])
    assert bug.status_code == 500
    assert "reader raw8 (raw-files) failed on model 'same': input 'image' item 0: " \
        "ValueError: a bug (a bug in the plugin)" in bug.json()["error"]
    wrong = httpx.post(f"http://{served.http_url}/v2/models/same/infer", json={"inputs": [
        {"name": "image", "datatype": "FP32", "shape": [1, 1, 1], "data": [0.0]}]})
    assert wrong.status_code == 400
    assert "must be UINT8 (or BYTES: one encoded file per item), got FP32" in \
        wrong.json()["error"]
    ok = _post(served, [encode(small)])
    assert ok.status_code == 200, ok.text
    assert served.memory.used == 0


def test_decoded_pixels_count_against_the_memory_budget(tmp_path):
    """What the reader reserves for a file's pixels comes out of the server's budget: past
    the per-request share a 413 before decoding, and it is given back after."""
    CALLS.clear()
    with temporary_plugin(RawPlugin, name="raw-files"), \
            DeepSeekServing(models={"same": _graph(tmp_path)}, port=0, grpc_port=None,
                            calibrate=False, memory_budget_mb=1) as server:
        side = int(server.memory.per_request ** 0.5) + 1  # its pixels are past the share
        client = th.InferenceServerClient(server.http_url)
        inp = th.InferInput("image", [1], "BYTES")
        size = side.to_bytes(2, "little")
        inp.set_data_from_numpy(np.array([MAGIC + size + size + b"\x07"], dtype=object),
                                binary_data=True)
        with pytest.raises(InferenceServerException, match="item 0 decoded would take about"):
            client.infer("same", [inp])
        assert "decoded" not in CALLS[-1] and server.memory.used == 0
        small = (side // 2).to_bytes(2, "little")
        inp.set_data_from_numpy(np.array([MAGIC + small + small + b"\x07"], dtype=object),
                                binary_data=True)
        out = client.infer("same", [inp]).as_numpy("pixels")
        assert out.shape == (1, side // 2, side // 2) and (out == 7).all()
        assert server.memory.used == 0 and server.memory.peak >= (side // 2) ** 2


@pytest.mark.parametrize("reader", ["jpeg", "raw8-frames"])
def test_a_model_whose_decoder_is_not_installed_is_served_without_files(tmp_path, reader,
                                                                        caplog):
    """An image with the core alone (KServe's edge runtime) serves a photo decision whose
    reader is in a plugin it lacks: the pixels are answered, a file is a 400 that names the
    reader and the fix, and start-up says so (before that reader existed such models were
    served; refusing them would leave an InferenceService never Ready)."""
    with temporary_plugin(RawPlugin, name="raw-files"), \
            DeepSeekServing(models={"same": _graph(tmp_path, reader)}, port=0, grpc_port=None,
                            calibrate=False) as server:
        spec = server.models["same"].inputs[0]
        pixels = httpx.post(f"http://{server.http_url}/v2/models/same/infer", json={
            "inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 1, 2],
                        "data": [3, 4]}]})
        files = _post(server, [encode(np.zeros((2, 2), np.uint8))])
    assert spec.decode is None
    says = (f"same.onnx: input 'image' takes encoded files through reader '{reader}', which "
            "no installed plugin registers as a reader of kind 'encoded' (there are: ")
    assert says in spec.decode_missing and "raw8" in spec.decode_missing.split("there are: ")[1]
    assert says in caplog.text and "serving its image without files" in caplog.text
    assert pixels.status_code == 200 and pixels.json()["outputs"][0]["data"] == [3, 4]
    assert files.status_code == 400
    assert "input 'image' must be UINT8, got BYTES (no files here: " in files.json()["error"]
    assert "install the plugin that wrote the model to take files" in files.json()["error"]


def test_a_decoder_that_does_not_take_what_the_server_passes_is_not_registered():
    from deepseek.plugins import plugin_infos, readers

    class OldPlugin:
        @staticmethod
        @hookimpl
        def register_readers(register):
            register("raw8-old", lambda data, dtype=None: data, kind="encoded",
                     description="a decoder that does not take what the server passes")

    with temporary_plugin(OldPlugin, name="old-files"):
        assert "raw8-old" not in readers()
        errors = next(i for i in plugin_infos() if i.name == "old-files").errors
    assert "does not take the keyword(s) 'max_pixels', 'reserve', 'where'" in \
        errors["register_readers"]


def test_a_json_body_carries_files_as_base64(served):
    """A JSON body (curl) carries a file as base64 text, said by the input's content_type
    (MLServer's convention): decoded to its bytes before the reader sees them; text that is
    not base64, and a content_type the server does not read BYTES as, are a 400."""
    import base64

    pixels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    b64 = base64.b64encode(encode(pixels)).decode()
    ok = _post(served, shape=[1], data=[b64], parameters={"content_type": "base64"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["outputs"][0]["data"] == pixels.ravel().tolist()
    bad = _post(served, shape=[1], data=["not base64!"], parameters={"content_type": "base64"})
    assert bad.status_code == 400
    assert "input 'image': element 0 is not base64 text" in bad.json()["error"]
    other = _post(served, shape=[1], data=[b64], parameters={"content_type": "pd"})
    assert other.status_code == 400
    assert "content_type 'pd' is not one this server reads BYTES as" in other.json()["error"]
    as_text = _post(served, shape=[1], data=[b64], parameters={"content_type": "str"})
    assert as_text.status_code == 400 and "not a RAW8 file" in as_text.json()["error"]


def test_a_request_given_up_while_its_files_decode_gives_its_memory_back(served):
    """A client that gives up (its deadline passed, or it went away) while its files are
    decoding cancels its request; the decoding goes on to its end in its thread, and what it
    reserved of the memory budget is given back then (before, it was held for good: a few
    such requests would leave the server answering 503 to everyone)."""
    DECODING.clear()
    GO_ON.clear()
    loop = served._loop
    files = np.array([MAGIC + (6).to_bytes(2, "little") + (5).to_bytes(2, "little") + b"wait"],
                     dtype=object)
    request = asyncio.run_coroutine_threadsafe(
        served.infer("same", {"image": files}, {"image": "BYTES"}), loop)
    assert DECODING.wait(60)
    assert served.memory.used == 30  # held while the file decodes
    request.cancel()  # the request's task is cancelled on the server's loop ...

    async def after_the_cancel():
        return None

    # ... which runs what was asked of it in order: the cancel has been delivered by now
    asyncio.run_coroutine_threadsafe(after_the_cancel(), loop).result(60)
    GO_ON.set()
    # the decoding threads finish (the request's result reaches the loop before this does)
    asyncio.run_coroutine_threadsafe(loop.shutdown_default_executor(), loop).result(60)
    assert served.memory.used == 0
