"""The photo decision (``<stem>.photo.onnx``): a gray part photo of any size in, the score,
the decision at the stored (or calibrated) threshold, the cell map and the threshold out,
as ``deepseek manufacturing score`` gives them; served by ``deepseek serve`` over the Open
Inference Protocol."""

from __future__ import annotations

import io
import json
import shutil

import cv2
import httpx
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deepseek.cli import build_cli
from deepseek.loader import onnx_metadata, save_model
from deepseek.manufacturing import images as images_mod
from deepseek.manufacturing.errors import ManufacturingError
from deepseek.manufacturing.model import (
    DECISION_OUTPUTS,
    _resize_axis,
    photo_cell,
    photo_cost,
)
from deepseek.manufacturing.plugin import WEIGHTS
from deepseek.manufacturing.runtime import PHOTO_META_KEY, photo_path_for
from deepseek.manufacturing.score import Scorer
from deepseek.manufacturing.stream import load_net
from deepseek.serving import DeepSeekServing

CONFIG = {"channels": [16, 32, 32], "temporal": 3, "hidden": 32}


def _weights(tmp_path, name: str, **extra) -> str:
    folder = tmp_path / name
    folder.mkdir()
    return str(save_model(load_net("defect-3dcnn-lstm"), folder / "model.safetensors",
                          architecture="defect-3dcnn-lstm", config=CONFIG, extra=extra or None))


def _export(weights: str, *more: str) -> dict:
    res = CliRunner().invoke(build_cli(), ["manufacturing", "export", weights, "--json", *more])
    assert res.exit_code == 0, res.output
    return json.loads(res.output.strip().splitlines()[-1])


def _photos(tmp_path, shape, n: int = 2) -> list:
    rng = np.random.default_rng(sum(shape))
    paths = []
    for i in range(n):
        img = rng.integers(90, 200, shape, dtype=np.uint8)
        if i == 0:
            img[shape[0] // 3, :] = 30  # a dark line across the first
        paths.append(tmp_path / f"part{i}-{shape[0]}x{shape[1]}.png")
        cv2.imwrite(str(paths[-1]), img)
    return paths


def _run(photo_onnx: str, batch: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(photo_onnx, providers=["CPUExecutionProvider"])
    return dict(zip(DECISION_OUTPUTS, session.run(None, {"image": batch})))


@pytest.mark.parametrize("views", [1, 4])
def test_the_photo_decision_is_what_score_decides(tmp_path, views):
    """At the stored threshold and views, photos of sizes off the 16-pixel cell (batched
    when of one size) get score's score, decision, map and box."""
    probe = Scorer(_weights(tmp_path, "probe", views=views), threshold=0.5)
    shapes = [(70, 90), (17, 33), (1, 1)]
    photos = {s: _photos(tmp_path, s) for s in shapes}
    scores = sorted(probe.score(p).score for ps in photos.values() for p in ps)
    threshold = (scores[2] + scores[3]) / 2  # three photos flagged, three not
    weights = _weights(tmp_path, "run", threshold=threshold, views=views)
    out = _export(weights)
    assert out["photo_decision"] == {"threshold": threshold, "threshold_from":
                                     "stored by training", "views": views, "scale": 1.0,
                                     "bit_depth": None, "frames": 8}
    scorer = Scorer(weights)
    flagged = 0
    for shape, paths in photos.items():
        batch = np.stack([images_mod.read_gray(p) for p in paths])
        got = _run(out["photo_onnx"], batch)
        for i, p in enumerate(paths):
            want = scorer.score(p)
            assert got["score"][i] == pytest.approx(want.score, abs=1e-5)
            assert bool(got["defect"][i]) == want.defect
            assert got["box"][i].tolist() == (list(want.box) if want.defect else [-1] * 4)
            np.testing.assert_allclose(got["map"][i], want.cell_map, atol=1e-5)
            assert got["map"][i].shape == (-(-shape[0] // 16), -(-shape[1] // 16))
            flagged += want.defect
        assert got["threshold"] == pytest.approx([threshold] * 2, abs=1e-7)
        assert got["score"].dtype == np.float32 and got["defect"].dtype == np.bool_
    assert flagged == 3


class _Resize(torch.nn.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _resize_axis(_resize_axis(x.float(), 1, self.scale), 2, self.scale)


@pytest.mark.parametrize("scale", [0.25, 0.3, 0.75, 1.37, 1.5, 2.0])
def test_the_resize_in_the_graph_is_the_edge_installs(scale):
    """Resized in the exported graph as `rescale` does without OpenCV, to the bit, at any
    size (an export that computed the sizes in float32 moved ties in the rounding of 5 % of
    a 1264 x 500 photo's pixels at 3/4 size)."""
    import io
    import warnings

    import onnxruntime as ort

    graph = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Resize(scale), (torch.zeros(1, 64, 64, dtype=torch.uint8),), graph,
                          input_names=["x"], output_names=["y"], opset_version=17,
                          dynamic_axes={"x": {1: "h", 2: "w"}, "y": {1: "a", 2: "b"}},
                          dynamo=False)
    session = ort.InferenceSession(graph.getvalue(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    for shape in [(37, 50), (1, 5), (3, 2), (64, 48), (1264, 500), (1255, 497)]:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        want = images_mod.resize_axis(images_mod.resize_axis(img.astype(np.float32), 0, scale),
                                      1, scale)
        got = session.run(None, {"x": img[None]})[0][0]
        assert got.shape == images_mod.scaled_size(shape, scale)
        assert np.array_equal(got, want), (shape, np.argwhere(got != want)[:3])


@pytest.mark.parametrize("scale", [0.75, 2.0])
def test_a_model_trained_at_another_scale_is_resized_in_the_graph(tmp_path, monkeypatch,
                                                                 scale):
    weights = _weights(tmp_path, "run", threshold=0.5, scale=scale)
    out = _export(weights)
    assert out["photo_decision"]["scale"] == scale
    monkeypatch.setattr(images_mod, "_cv2_or_none", lambda: None)  # as on the edge install
    scorer = Scorer(weights)
    for p in _photos(tmp_path, (70, 90)) + _photos(tmp_path, (125, 251)):
        want = scorer.score(p)
        got = _run(out["photo_onnx"], images_mod.read_gray(p)[None])
        assert got["score"][0] == pytest.approx(want.score, abs=1e-5)
        assert got["map"][0].shape == want.cell_map.shape


def test_a_calibration_sets_the_threshold_of_the_photo_decision(tmp_path):
    from deepseek.manufacturing.calibration import calibrate, write_calibration

    weights = _weights(tmp_path, "run", threshold=0.9)
    line = tmp_path / "line"
    line.mkdir()
    for p in _photos(tmp_path, (48, 64), n=4):
        shutil.copy(p, line / p.name)
    cal = calibrate(line, weights, all_good=True, target_fpr=0.3)
    path = write_calibration(cal, tmp_path / "line.calibration.json")
    out = _export(weights, "--calibration", str(path))
    assert out["photo_decision"]["threshold"] == cal["threshold"] != 0.9
    assert out["photo_decision"]["threshold_from"] == "calibration line.calibration.json"
    meta = json.loads(onnx_metadata(out["photo_onnx"])[PHOTO_META_KEY])
    assert meta["threshold"] == cal["threshold"]
    # a calibration measured with other weights is refused, nothing written over
    other = _weights(tmp_path, "other", threshold=0.8)  # other weights: another file
    res = CliRunner().invoke(build_cli(), ["manufacturing", "export", other, "--calibration",
                                           str(path)])
    assert res.exit_code != 0 and "calibrate this model on the line again" in res.output
    assert not photo_path_for(other.replace(".safetensors", ".stream.onnx")).exists()


def test_weights_without_a_threshold_flag_at_a_half_and_say_so(tmp_path):
    weights = _weights(tmp_path, "plain")
    res = CliRunner().invoke(build_cli(), ["manufacturing", "export", weights])
    assert res.exit_code == 0, res.output
    assert "decides at threshold 0.5 (none stored: 0.5)" in res.output
    assert "stores no threshold" in res.output and "--calibration" in res.output
    with pytest.raises(ManufacturingError, match="a photo-decision export, made to be served"):
        load_net(str(tmp_path / "plain" / "model.photo.onnx"))
    twelve = _weights(tmp_path, "twelve", threshold=0.5, bit_depth=12)
    res = CliRunner().invoke(build_cli(), ["manufacturing", "export", twelve])
    assert res.exit_code == 0 and "takes the camera's 12-bit words as UINT16" in res.output
    # a DRAEM model's file without its networks: refused, naming it (a whole one exports:
    # tests/manufacturing/test_draem.py)
    from safetensors.numpy import save_file

    draem = tmp_path / "draem.safetensors"
    save_file({"x": np.zeros(1, np.float32)}, str(draem),
              metadata={"deepseek": json.dumps({"kind": "draem"})})
    res = CliRunner().invoke(build_cli(), ["manufacturing", "export", str(draem)])
    assert res.exit_code != 0 and f"{draem}: cannot read a DRAEM model" in res.output
    bad = _weights(tmp_path, "bad", threshold=0.5, views=3)
    res = CliRunner().invoke(build_cli(), ["manufacturing", "export", bad])
    assert res.exit_code != 0 and "stored views=3, which no training writes" in res.output


def test_the_photo_decision_served_and_empty_images_refused(tmp_path):
    """Over REST: a photo's decision as score gives it; an image with an empty axis (an
    empty batch aborted onnxruntime, and the server with it) is a 400 and the server goes
    on serving."""
    import tritonclient.http as th

    weights = _weights(tmp_path, "run", threshold=0.5)
    out = _export(weights)
    photo = _photos(tmp_path, (70, 90), n=1)[0]
    want = Scorer(weights).score(photo)
    with DeepSeekServing(models={"line": out["photo_onnx"]}, port=0, grpc_port=None,
                         calibrate=False) as server:  # no start-up timing: a test
        client = th.InferenceServerClient(server.http_url)
        meta = client.get_model_metadata("line")
        assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [
            ("score", "FP32"), ("defect", "BOOL"), ("map", "FP32"), ("threshold", "FP32"),
            ("box", "INT64")]
        assert meta["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, -1, -1]}]
        img = images_mod.read_gray(photo)[None]
        inp = th.InferInput("image", list(img.shape), "UINT8")
        inp.set_data_from_numpy(img)
        got = client.infer("line", [inp])
        assert got.as_numpy("score")[0] == pytest.approx(want.score, abs=1e-5)
        assert bool(got.as_numpy("defect")[0]) == want.defect
        # the answer names the weights the decision was exported from, as score names them
        from deepseek.loader.base import file_sha256

        assert got.get_response()["parameters"] == {
            "model_sha256": file_sha256(out["photo_onnx"]), "weights_sha256": want.model_sha256}
        np.testing.assert_allclose(got.as_numpy("map")[0], want.cell_map, atol=1e-5)
        url = f"http://{server.http_url}/v2/models/line/infer"
        for shape, axis in (([0, 4, 4], 0), ([1, 0, 5], 1), ([1, 5, 0], 2)):
            r = httpx.post(url, json={"inputs": [{"name": "image", "datatype": "UINT8",
                                                  "shape": shape, "data": []}]}, timeout=60)
            assert r.status_code == 400 and f"axis {axis} is empty" in r.json()["error"]
        assert client.infer("line", [inp]).as_numpy("score")[0] == pytest.approx(want.score,
                                                                                abs=1e-5)


def test_photos_are_counted_against_the_element_cap_as_the_graph_pads_them(tmp_path):
    """The graph pads each photo's sides to its 16-pixel cell, so a batch of 1 x 1 photos
    ran 256 times the elements it was counted at (40,000 of them, 160,000 elements sent,
    peaked at 0.47 GB, where a 632,000-element photo takes 0.08 GB; the server's cap of
    16.8 million let through what would take hundreds). The export declares its cell, and
    the server counts a request as the graph runs it: past the cap a 413 before anything
    runs; a photo that fits is answered."""
    import onnxruntime as ort

    from deepseek.batching import run_size
    from deepseek.loader import declared_onnx_inputs

    out = _export(_weights(tmp_path, "run", threshold=0.5))
    declared = declared_onnx_inputs(ort.InferenceSession(out["photo_onnx"],
                                                         providers=["CPUExecutionProvider"]))
    assert declared["image"]["cell"] == [1, 16, 16]
    assert run_size([500, 1, 1], [1, 16, 16]) == 500 * 256
    assert run_size([1, 500, 1264], [1, 16, 16]) == 512 * 1264
    cap = 64 * 64 * 8
    with DeepSeekServing(models={"line": out["photo_onnx"]}, port=0, grpc_port=None,
                         calibrate=False, max_elements=cap) as server:
        assert server.models["line"].inputs[0].cell == [1, 16, 16]
        url = f"http://{server.http_url}/v2/models/line/infer"

        def send(shape):
            n = int(np.prod(shape))
            return httpx.post(url, json={"inputs": [{"name": "image", "datatype": "UINT8",
                                                     "shape": shape, "data": [100] * n}]},
                              timeout=60)

        tiny = send([200, 1, 1])  # 200 elements sent, 51,200 run
        assert tiny.status_code == 413, tiny.text
        assert "51200 elements as the model runs it" in tiny.json()["error"]
        strip = send([1, 2, 3000])  # 6,000 sent, 16 x 3008 run
        assert strip.status_code == 413 and "48128 elements" in strip.json()["error"]
        ok = send([2, 64, 64])
        assert ok.status_code == 200, ok.text
        assert send([8, 1, 1]).status_code == 200  # 2,048 as run: within the cap
    # a model trained at 3/4 size pads to 16 of its pixels: 22 of the photo's
    assert photo_cell(0.75) == 22 and photo_cell(2.0) == 8 and photo_cell(1.0) == 16


@pytest.mark.slow
def test_a_photo_graph_that_enlarges_the_photo_is_counted_at_the_size_it_runs(tmp_path):
    """A model trained at ``--scale 2`` enlarges each photo twice on each side before it
    runs, so a photo at the server's cap ran four times the cap's pixels (onnxruntime: a
    2048 x 2048 photo peaked at 0.74 GB under such a graph, where the same photo takes
    0.23 GB at scale 1 and a 4096 x 4096 one 0.75 GB). Its export declares a cost of 4 and a
    cell of 8, and the server counts a photo at both: what fits the cap at scale 1 is a
    413 at scale 2, with the reason; a quarter of it is answered. Views are not counted
    (they run one after another), nor is a scale below 1 (the photo is held as sent)."""
    import onnxruntime as ort

    from deepseek.batching import run_size
    from deepseek.loader import declared_onnx_inputs

    assert (photo_cost(2.0), photo_cost(1.0), photo_cost(0.75)) == (4.0, 1.0, 1.0)
    assert run_size([1, 20, 20], [1, 8, 8], 4.0) == 4 * 24 * 24
    cap = 64 * 64 * 4
    photos = {}
    for scale in (1.0, 2.0):
        out = _export(_weights(tmp_path, f"s{scale}", threshold=0.5, scale=scale, views=4))
        declared = declared_onnx_inputs(ort.InferenceSession(
            out["photo_onnx"], providers=["CPUExecutionProvider"]))["image"]
        assert declared["cell"] == [1, photo_cell(scale), photo_cell(scale)]
        assert declared.get("cost", 1.0) == photo_cost(scale)
        photos[scale] = out["photo_onnx"]
    with DeepSeekServing(models={"plain": photos[1.0], "twice": photos[2.0]},
                         port=0, grpc_port=None, calibrate=False, max_elements=cap) as server:
        assert server.models["twice"].inputs[0].cost == 4.0

        def send(model, shape):
            n = int(np.prod(shape))
            return httpx.post(f"http://{server.http_url}/v2/models/{model}/infer",
                              json={"inputs": [{"name": "image", "datatype": "UINT8",
                                                "shape": shape, "data": [100] * n}]},
                              timeout=60)

        assert send("plain", [1, 128, 128]).status_code == 200
        big = send("twice", [1, 128, 128])
        assert big.status_code == 413, big.text
        assert "65536 elements as the model runs it" in big.json()["error"]
        assert "4 elements run per element" in big.json()["error"]
        assert send("twice", [1, 64, 64]).status_code == 200


def test_a_model_for_a_12_bit_camera_is_served_the_cameras_words(tmp_path):
    """Weights trained with ``--bit-depth 12`` get a photo decision that takes the camera's
    16-bit words as they are (UINT16, 0-4095 declared): a line sends its photos as the
    camera writes them and gets what `score` gives for their files, instead of converting
    them to 8-bit gray itself exactly as `score` does. A word above 4095 is a 400 (the graph
    would clip it to white); 8-bit gray is refused by its type."""
    import onnxruntime as ort

    from deepseek.loader import declared_onnx_inputs
    from deepseek.manufacturing.score import Scorer

    weights = _weights(tmp_path, "run", threshold=0.5, bit_depth=12)
    res = CliRunner().invoke(build_cli(), ["manufacturing", "export", weights])
    assert res.exit_code == 0, res.output
    assert "it takes the camera's 12-bit words as UINT16 (0-4095)" in res.output
    out = _export(weights)
    assert out["photo_decision"]["bit_depth"] == 12
    session = ort.InferenceSession(out["photo_onnx"], providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(uint16)"
    assert declared_onnx_inputs(session)["image"]["range"] == (0, 4095)
    rng = np.random.default_rng(12)
    words = rng.integers(1200, 3400, (70, 90)).astype(np.uint16)
    words[30, 5:80] = 200  # a dark line
    cv2.imwrite(str(tmp_path / "part.png"), words)
    want = Scorer(weights, backend="torch").score(tmp_path / "part.png")
    with DeepSeekServing(models={"line": out["photo_onnx"]}, port=0, grpc_port=None,
                         calibrate=False) as server:
        url = f"http://{server.http_url}/v2/models/line/infer"

        def send(pixels, datatype="UINT16"):
            return httpx.post(url, timeout=60, json={"inputs": [
                {"name": "image", "datatype": datatype, "shape": [1, *pixels.shape],
                 "data": pixels.ravel().tolist()}]})

        ok = send(words)
        over = words.copy()
        over[0, 0] = 4096
        refused, gray = send(over), send((words // 16).astype(np.uint8), "UINT8")
    assert ok.status_code == 200, ok.text
    got = {o["name"]: o["data"] for o in ok.json()["outputs"]}
    assert got["score"][0] == pytest.approx(want.score, abs=1e-5)
    assert got["defect"][0] == want.defect
    assert refused.status_code == 400 and "values from 200 to 4096" in refused.json()["error"]
    assert gray.status_code == 400 and "must be UINT16" in gray.json()["error"]


def test_a_photo_file_is_served_as_score_reads_it(tmp_path):
    """A line sends the camera's file as it is (a BYTES element: REST's binary extension or
    gRPC) and gets `score`'s answer for that file: a colour PNG converted as `score`
    converts it, a JPEG turned upright by its EXIF orientation, and for a 12-bit model the
    16-bit PNG's words; an 8-bit file to that model, a file cut short and a picture past
    the server's cap (told from its header) are refused with the reason."""
    import tritonclient.grpc as tg
    import tritonclient.http as th
    from PIL import Image

    from deepseek.loader import declared_onnx_inputs

    rng = np.random.default_rng(5)
    colour = rng.integers(60, 220, (40, 70, 3), dtype=np.uint8)
    colour[20, 4:60] = (20, 40, 30)
    cv2.imwrite(str(tmp_path / "colour.png"), colour)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(colour).save(tmp_path / "side.jpg", exif=exif, quality=90)
    words = rng.integers(1200, 3400, (36, 50)).astype(np.uint16)
    words[18, 5:45] = 200
    cv2.imwrite(str(tmp_path / "words.png"), words)
    plain = _export(_weights(tmp_path, "plain", threshold=0.5))["photo_onnx"]
    twelve_weights = _weights(tmp_path, "twelve", threshold=0.5, bit_depth=12)
    twelve = _export(twelve_weights)["photo_onnx"]
    import onnxruntime as ort

    assert declared_onnx_inputs(ort.InferenceSession(
        plain, providers=["CPUExecutionProvider"]))["image"]["decode"] == "part-photo"
    want = {name: Scorer(str(tmp_path / "plain" / "model.safetensors")).score(tmp_path / name)
            for name in ("colour.png", "side.jpg")}
    want["words.png"] = Scorer(twelve_weights).score(tmp_path / "words.png")

    def files(*names):
        return np.array([(tmp_path / n).read_bytes() for n in names], dtype=object)

    with DeepSeekServing(models={"plain": plain, "twelve": twelve}, port=0, grpc_port=0,
                         calibrate=False, max_elements=64 * 64) as server:
        rest = th.InferenceServerClient(server.http_url)
        grpc = tg.InferenceServerClient(server.grpc_address)
        got = {}
        for model, name in (("plain", "colour.png"), ("plain", "side.jpg"),
                            ("twelve", "words.png")):
            inp = th.InferInput("image", [1], "BYTES")
            inp.set_data_from_numpy(files(name), binary_data=True)
            out = rest.infer(model, [inp])
            got[name] = (out.as_numpy("score")[0], out.as_numpy("map")[0])
        side = tg.InferInput("image", [1], "BYTES")
        side.set_data_from_numpy(files("side.jpg"))
        side_grpc = grpc.infer("plain", [side])

        def refused(model, data):
            inp = th.InferInput("image", [1], "BYTES")
            inp.set_data_from_numpy(np.array([data], dtype=object), binary_data=True)
            with pytest.raises(Exception) as err:
                rest.infer(model, [inp])
            return str(err.value)

        eight = refused("twelve", (tmp_path / "colour.png").read_bytes())
        cut = refused("plain", (tmp_path / "side.jpg").read_bytes()[:-200])
        buf = io.BytesIO()
        Image.new("L", (65, 64)).save(buf, format="PNG")
        big = refused("plain", buf.getvalue())
    for name, (score, cell_map) in got.items():
        assert score == pytest.approx(want[name].score, abs=1e-5), name
        np.testing.assert_allclose(cell_map, want[name].cell_map, atol=1e-5)
    assert got["side.jpg"][1].shape[0] > got["side.jpg"][1].shape[1]  # turned upright
    assert side_grpc.as_numpy("score")[0] == pytest.approx(want["side.jpg"].score, abs=1e-5)
    assert "[400]" in eight and "the file holds uint8 pixels; this model takes a camera's " \
        "16-bit words" in eight
    assert "[400]" in cut and "item 0: the JPEG is cut short" in cut
    assert "[413]" in big and "the file is a 65 x 64 picture (4160 pixels), over the 4096" \
        in big


def test_a_model_folder_holding_the_photo_decision_serves_it(tmp_path):
    """As KServe serves it (deploy/kserve/inferenceservice-raw.yaml): the folder the storage
    initializer fills holds the photo decision alone, as model.onnx."""
    from deepseek.serving.models import ServedModel

    out = _export(_weights(tmp_path, "run", threshold=0.5))
    folder = tmp_path / "crack-line"
    folder.mkdir()
    shutil.copy(out["photo_onnx"], folder / "model.onnx")
    served = ServedModel("crack-line", str(folder))
    assert [o.name for o in served.outputs] == DECISION_OUTPUTS
    assert served.model.framework == "onnx" and served.inputs[0].datatype == "UINT8"


def test_the_packaged_weights_get_no_photo_decision():
    assert not (WEIGHTS / "defect-3dcnn-lstm.photo.onnx").exists()


@pytest.mark.parametrize("stride, level", [(16.0, 0.5), (16 / 0.75, 0.5), (8.0, 3.25)])
def test_the_box_in_the_graph_is_the_box_score_draws(stride, level):
    """The photo decision's ``box`` is ``box_from_map``'s, map for map: random maps of hot
    streaks and specks with gaps of one to three cells (two are bridged, three not), the
    peak alone when nothing reaches the level, cells of a fractional size (a model trained at
    3/4 size), photos whose last cell is cut; -1 on each side for a photo not flagged."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from deepseek.manufacturing.model import _with_box
    from deepseek.manufacturing.stream import box_from_map

    ins = [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", "h", "w"]),
           helper.make_tensor_value_info("cells", TensorProto.FLOAT, ["batch", "ch", "cw"]),
           helper.make_tensor_value_info("flag", TensorProto.BOOL, ["batch"])]
    outs = [helper.make_tensor_value_info("map", TensorProto.FLOAT, ["batch", "ch", "cw"]),
            helper.make_tensor_value_info("defect", TensorProto.BOOL, ["batch"])]
    graph = helper.make_graph([helper.make_node("Identity", ["cells"], ["map"]),
                               helper.make_node("Identity", ["flag"], ["defect"])], "g", ins,
                              outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = ort.InferenceSession(_with_box(model.SerializeToString(), stride, level),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(int(stride * 10))
    for trial in range(60):
        ch, cw = int(rng.integers(1, 12)), int(rng.integers(1, 30))
        maps = rng.uniform(0, level * 0.9, (2, ch, cw)).astype(np.float32)
        for m in maps:
            for _ in range(int(rng.integers(0, 4))):  # streaks with gaps, and specks
                r, c = int(rng.integers(0, ch)), int(rng.integers(0, cw))
                step = int(rng.integers(1, 5))
                for k in range(int(rng.integers(1, 8))):
                    if c + k * step < cw:
                        m[r, c + k * step] = level * float(rng.uniform(1.0, 2.0))
        shape = (int(ch * stride) - int(rng.integers(0, int(stride))), int(cw * stride))
        shape = (max(shape[0], 1), shape[1])
        flags = np.array([True, trial % 3 != 0])
        box = session.run(["box"], {"image": np.zeros((2, *shape), np.uint8), "cells": maps,
                                    "flag": flags})[0]
        for m, b, f in zip(maps, box, flags):
            want = list(box_from_map(m, shape, level, stride)) if f else [-1] * 4
            assert b.tolist() == want, (trial, m.round(2).tolist(), shape)
