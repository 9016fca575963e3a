"""The detector without PyTorch: the packaged streaming ONNX export (free frame size) and its
still-photo export are current with the packaged weights and compute what the PyTorch model
does; stale or foreign exports are refused, and without a still-photo export photos go
through the step with the same scores."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deepseek.cli import build_cli
from deepseek.loader import SOURCE_META_KEY, export_onnx, file_sha256, onnx_metadata
from deepseek.manufacturing.errors import ManufacturingError
from deepseek.manufacturing.plugin import WEIGHTS
from deepseek.manufacturing.runtime import (
    FRAMES,
    FRAMES_META_KEY,
    OnnxNet,
    load_onnx_net,
    still_path_for,
    stream_onnx_for,
)
from deepseek.manufacturing.score import score_image
from deepseek.manufacturing.sources import FrameSource
from deepseek.manufacturing.stream import (
    DefectStream,
    TorchStep,
    load_net,
    make_step,
    scoring_net,
)

PACKAGED = WEIGHTS / "defect-3dcnn-lstm.safetensors"


def test_the_packaged_export_is_current():
    path, weights = stream_onnx_for("defect-3dcnn-lstm")
    assert path == WEIGHTS / "defect-3dcnn-lstm.stream.onnx" and weights == PACKAGED
    # a failure here means the weights changed: deepseek manufacturing export <weights>
    assert onnx_metadata(path)[SOURCE_META_KEY] == file_sha256(PACKAGED)
    still = onnx_metadata(WEIGHTS / "defect-3dcnn-lstm.still.onnx")
    assert still[SOURCE_META_KEY] == file_sha256(PACKAGED)
    assert still[FRAMES_META_KEY] == str(FRAMES)


def test_the_packaged_exports_are_the_exporters_graphs_now():
    """Current with the exporter too, not only with the weights: an edge install runs what
    `export` writes today (an export from before the temporal convolution became a 2D one
    ran the stream step about 20 % slower on onnxruntime). A failure here means the
    network's forward changed: re-export with deepseek manufacturing export <weights>."""
    import collections

    import onnx

    from deepseek.loader import INPUTS_META_KEY
    from deepseek.manufacturing.model import export_step_onnx, export_still_onnx

    net = load_net("defect-3dcnn-lstm")
    for name, fresh in (("stream", export_step_onnx(net)), ("still", export_still_onnx(net))):
        shipped = onnx.load(str(WEIGHTS / f"defect-3dcnn-lstm.{name}.onnx"))
        fresh = onnx.load_from_string(fresh)
        ops = [collections.Counter(n.op_type for n in g.graph.node) for g in (shipped, fresh)]
        assert ops[0] == ops[1], name
        declared = [{p.key: p.value for p in g.metadata_props}.get(INPUTS_META_KEY)
                    for g in (shipped, fresh)]
        assert declared[0] == declared[1] and declared[0], name


def test_the_exports_served_at_the_edge_take_frames_in_steps_of_the_cell():
    """`deepseek serve` of the exports (what an edge install serves): each declares that
    its frame size goes in steps of the 16-pixel cell, so a frame off it is a 400 that says
    what to pad to, before onnxruntime runs (before: its own error, "Non concat axis
    dimensions must match"), and the server times the step at start-up (before: served
    untimed, the 1 x 1 frame it tried failing in the first convolution). The stream step
    takes one clip at a time: its requests are never joined."""
    import httpx

    from deepseek.serving import DeepSeekServing

    models = {"step": str(WEIGHTS / "defect-3dcnn-lstm.stream.onnx"),
              "still": str(WEIGHTS / "defect-3dcnn-lstm.still.onnx")}
    with DeepSeekServing(models=models, port=0, grpc_port=None) as server:
        assert set(server.calibration) == {"step", "still"}
        assert server.batchers["step"].max_batch_size == 1
        url = f"http://{server.http_url}/v2/models"
        r = httpx.post(f"{url}/still/infer", timeout=60, json={"inputs": [
            {"name": "images", "datatype": "UINT8", "shape": [1, 50, 64],
             "data": [0] * 50 * 64}]})
        state = [("buffer", [1, 32, 2, 4, 5]), ("h", [1, 1, 32]), ("c", [1, 1, 32])]
        r2 = httpx.post(f"{url}/step/infer", timeout=60, json={"inputs": [
            {"name": "frames", "datatype": "UINT8", "shape": [1, 1, 64, 70],
             "data": [0] * 64 * 70},
            *[{"name": n, "datatype": "FP32", "shape": s, "data": [0.0] * int(np.prod(s))}
              for n, s in state]]})
        # a buffer whose cells do not match the frames: a 400 naming both (before: the
        # graph's "Concat node" error from onnxruntime)
        state[0] = ("buffer", [1, 32, 2, 5, 4])
        r4 = httpx.post(f"{url}/step/infer", timeout=60, json={"inputs": [
            {"name": "frames", "datatype": "UINT8", "shape": [1, 1, 64, 64],
             "data": [0] * 64 * 64},
            *[{"name": n, "datatype": "FP32", "shape": s, "data": [0.0] * int(np.prod(s))}
              for n, s in state]]})
        state[0] = ("buffer", [1, 32, 2, 4, 4])
        r5 = httpx.post(f"{url}/step/infer", timeout=60, json={"inputs": [
            {"name": "frames", "datatype": "UINT8", "shape": [1, 1, 64, 64],
             "data": [0] * 64 * 64},
            *[{"name": n, "datatype": "FP32", "shape": s, "data": [0.0] * int(np.prod(s))}
              for n, s in state]]})
        images = np.full((1, 64, 80), 128, np.uint8)
        r3 = httpx.post(f"{url}/still/infer", timeout=60, json={"inputs": [
            {"name": "images", "datatype": "UINT8", "shape": [1, 64, 80],
             "data": images.ravel().tolist()}]})
    assert r.status_code == 400 and "axis 1" in r.json()["error"], r.text
    assert "pad it to 64" in r.json()["error"]
    assert r2.status_code == 400 and "axis 3" in r2.json()["error"], r2.text
    assert "pad it to 80" in r2.json()["error"]
    assert r4.status_code == 400, r4.text
    assert ("input 'buffer' has shape [1, 32, 2, 5, 4]; its axis 3 follows input 'frames' "
            "axis 2 (64 in steps of 16) and must be 4") in r4.json()["error"]
    assert r5.status_code == 200, r5.text
    assert r3.status_code == 200, r3.text
    logits = next(o for o in r3.json()["outputs"] if o["name"] == "logits")
    assert logits["shape"] == [1, FRAMES]


def test_a_stream_served_frame_by_frame_with_its_state_scores_as_the_stream_does():
    """A camera's frames sent one request each to the served step, the state a request
    answers sent with the next (what a client of `deepseek serve model.stream.onnx` does),
    score every frame as `deepseek manufacturing stream` does (checked the same way on
    KolektorSDD's val video, 632 frames: docs/manufacturing.md)."""
    import httpx

    from deepseek.serving import DeepSeekServing

    uri = "synthetic:?seed=4&frames=12&width=96&height=64"
    want = DefectStream(FrameSource.open(uri), backend="onnxruntime").run().scores
    with FrameSource.open(uri) as src:
        frames = [f.image for f in src]
    step = str(WEIGHTS / "defect-3dcnn-lstm.stream.onnx")
    state = {"buffer": np.zeros((1, 32, 2, 4, 6), np.float32),
             "h": np.zeros((1, 1, 32), np.float32), "c": np.zeros((1, 1, 32), np.float32)}
    got = []
    with DeepSeekServing(models={"step": step}, port=0, grpc_port=None,
                         calibrate=False) as server:
        for image in frames:
            inputs = [{"name": "frames", "datatype": "UINT8", "shape": [1, 1, 64, 96],
                       "data": image.ravel().tolist()}]
            inputs += [{"name": n, "datatype": "FP32", "shape": list(a.shape),
                        "data": a.ravel().tolist()} for n, a in state.items()]
            r = httpx.post(f"http://{server.http_url}/v2/models/step/infer",
                           json={"inputs": inputs}, timeout=60)
            assert r.status_code == 200, r.text
            out = {o["name"]: np.array(o["data"], np.float32).reshape(o["shape"])
                   for o in r.json()["outputs"]}
            got.append(1 / (1 + np.exp(-float(out["logits"][0, -1]))))
            state = {"buffer": out["buffer_out"], "h": out["h_out"], "c": out["c_out"]}
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("size", [(48, 64), (96, 160)])
def test_packaged_export_equals_pytorch_at_any_frame_size(size):
    net, edge = load_net("defect-3dcnn-lstm"), load_net("defect-3dcnn-lstm", onnx=True)
    assert isinstance(edge, OnnxNet)
    frames = np.random.default_rng(1).integers(0, 256, (9, *size), dtype=np.uint8)
    t, o = TorchStep(net), make_step(edge)
    for a, b in [(0, 1), (1, 5), (5, 9)]:  # the state carried across calls
        (p1, m1), (p2, m2) = t(frames[a:b]), o(frames[a:b])
        np.testing.assert_allclose(p2, p1, atol=1e-5)
        np.testing.assert_allclose(m2, m1, atol=1e-4)
    o.reset()
    np.testing.assert_allclose(o(frames[:1])[0], TorchStep(net)(frames[:1])[0], atol=1e-5)
    image = frames[0, :40, :50]  # not a multiple of 16: padded, map cut back
    (pt, mt), (pe, me) = score_image(net, image), score_image(edge, image)
    assert abs(pt - pe) < 1e-5 and me.shape == mt.shape == (3, 4)
    np.testing.assert_allclose(me, mt, atol=1e-5)
    (pt, mt), (pe, me) = score_image(net, image, views=4), score_image(edge, image, views=4)
    assert abs(pt - pe) < 1e-5 and me.shape == mt.shape == (3, 4)
    np.testing.assert_allclose(me, mt, atol=1e-5)


def test_photos_run_through_the_still_export_or_else_the_step():
    net, edge = load_net("defect-3dcnn-lstm"), load_net("defect-3dcnn-lstm", onnx=True)
    assert edge.still_session is not None and edge.still_frames == FRAMES
    images = np.random.default_rng(2).integers(0, 256, (3, 48, 80), dtype=np.uint8)
    with torch.inference_mode():
        lt, mt = (t.numpy() for t in net.still(torch.from_numpy(images), FRAMES))
    le, me = edge.still(images)  # one run of the still graph, the three photos batched
    assert le.shape == (3, FRAMES) and me.shape == (3, FRAMES, 3, 5)
    np.testing.assert_allclose(le, lt, atol=1e-4)
    np.testing.assert_allclose(me, mt, atol=1e-4)
    # another frame count than the graph's: each photo repeated through the step
    with torch.inference_mode():
        l3 = net.still(torch.from_numpy(images), 3)[0].numpy()
    np.testing.assert_allclose(edge.still(images, 3)[0], l3, atol=1e-4)
    edge.still_session = None  # as for an export written before the still graph existed
    np.testing.assert_allclose(edge.still(images)[0], lt, atol=1e-4)
    with pytest.raises(ManufacturingError, match="frames=0"):
        edge.still(images, 0)


def test_stale_and_foreign_exports_are_refused(tmp_path):
    weights = tmp_path / "model.safetensors"
    shutil.copy(PACKAGED, weights)
    shutil.copy(WEIGHTS / "defect-3dcnn-lstm.json", tmp_path / "model.json")
    with pytest.raises(ManufacturingError, match="no streaming ONNX export.*manufacturing export"):
        load_onnx_net(weights)
    res = CliRunner().invoke(build_cli(), ["manufacturing", "export", str(weights)])
    assert res.exit_code == 0, res.output
    edge = load_net(weights, onnx=True)
    assert isinstance(edge, OnnxNet) and edge.still_frames == FRAMES
    assert still_path_for(edge.path) == tmp_path / "model.still.onnx"
    # the still-photo export given where the streaming one goes: pointed to its partner
    with pytest.raises(ManufacturingError, match=r"model.still.onnx: the still-photo export; "
                       r"give the streaming export beside it, .*model.stream.onnx"):
        load_net(tmp_path / "model.still.onnx")
    # without the still-photo export (copied without it): photos through the step
    still = tmp_path / "model.still.onnx"
    kept = still.read_bytes()
    still.unlink()
    assert load_net(weights, onnx=True).still_session is None
    # a still-photo export that is not one, or not readable
    export_onnx(torch.nn.Linear(3, 2), torch.zeros(1, 3), still)
    with pytest.raises(ManufacturingError, match="model.still.onnx: not a still-photo export"):
        load_net(weights, onnx=True)
    still.write_bytes(b"junk")
    with pytest.raises(ManufacturingError, match="model.still.onnx: not a readable ONNX"):
        load_net(weights, onnx=True)
    still.write_bytes(kept)
    res = CliRunner().invoke(build_cli(), ["manufacturing", "export", str(weights), "--out",
                                           str(tmp_path / "model.onnx")])
    assert res.exit_code != 0 and "name the streaming export <name>.stream.onnx" in res.output
    # the weights change after the export: the export no longer describes them
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ManufacturingError, match="was not exported from"):
        load_net(weights, onnx=True)
    # re-exported, then the still-photo export of the old weights copied back beside it
    res = CliRunner().invoke(build_cli(), ["manufacturing", "export", str(weights), "--json"])
    assert res.exit_code == 0 and '"still_onnx"' in res.output
    still.write_bytes(kept)
    with pytest.raises(ManufacturingError, match="exported from different weights"):
        load_net(weights, onnx=True)
    # an ONNX graph that is not the streaming step
    other = tmp_path / "other.onnx"
    export_onnx(torch.nn.Linear(3, 2), torch.zeros(1, 3), other)
    with pytest.raises(ManufacturingError, match="not those of a streaming export"):
        load_net(other)
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(ManufacturingError, match="junk.onnx: not a readable ONNX file"):
        OnnxNet(tmp_path / "junk.onnx")
    with pytest.raises(ManufacturingError, match="runs on onnxruntime"):
        make_step(load_net("defect-3dcnn-lstm", onnx=True), backend="torch")


def test_an_export_scores_with_what_training_stored_beside_the_weights(tmp_path, caplog):
    """`score --model model.stream.onnx` (the edge form given by its export's path): the
    threshold, scale, views and expected figures `train` stored with the weights travel in
    the export, so it flags what the weights flag; an export without them says it flags at
    0.5."""
    import cv2

    from deepseek.loader import EXTRA_META_KEY, save_model
    from deepseek.manufacturing.score import Scorer

    net = load_net("defect-3dcnn-lstm")
    expected = {"recall": 0.9, "false_positive_rate": 0.01, "recall_ci95": [0.8, 0.95],
                "false_positive_rate_ci95": [0.0, 0.05], "defect_images": 20,
                "good_images": 100}
    weights = save_model(net, tmp_path / "model.safetensors", architecture="defect-3dcnn-lstm",
                         config={"channels": [16, 32, 32], "temporal": 3, "hidden": 32},
                         extra={"threshold": 0.42, "scale": 0.75, "views": 4,
                                "expected": expected})
    res = CliRunner().invoke(build_cli(), ["manufacturing", "export", str(weights)])
    assert res.exit_code == 0, res.output
    assert "decides at threshold 0.42 (stored by training), views 4, scale 0.75" in res.output
    onnx_path = tmp_path / "model.stream.onnx"
    for path in (onnx_path, still_path_for(onnx_path)):
        assert EXTRA_META_KEY in onnx_metadata(path)
    photo = tmp_path / "part.png"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(photo), rng.integers(90, 200, (70, 90), dtype=np.uint8))
    full, edge = Scorer(weights, backend="torch"), Scorer(onnx_path)
    assert not isinstance(full.net, OnnxNet) and isinstance(edge.net, OnnxNet)
    assert (edge.threshold, edge.scale, edge.views) == (0.42, 0.75, 4)
    assert edge.expected == full.expected == expected
    a, b = full.score(photo), edge.score(photo)
    assert b.score == pytest.approx(a.score, abs=1e-4) and b.defect == a.defect
    # an export of weights that store no threshold: flagged at 0.5, and said so
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(PACKAGED, plain / "model.safetensors")
    shutil.copy(WEIGHTS / "defect-3dcnn-lstm.json", plain / "model.json")
    assert CliRunner().invoke(build_cli(), ["manufacturing", "export",
                                            str(plain / "model.safetensors")]).exit_code == 0
    with caplog.at_level("WARNING", logger="deepseek.manufacturing.score"):
        assert Scorer(plain / "model.stream.onnx").threshold == 0.5
    assert any("the export carries no threshold" in r.getMessage() for r in caplog.records)


def test_photos_are_scored_on_the_current_exports_beside_the_weights_by_default(tmp_path,
                                                                               caplog):
    """`score` in the full install runs the still-photo export on onnxruntime where `train`
    or `export` left it current beside the weights (about twice PyTorch's speed, the same
    scores), else PyTorch, saying why; `--backend` chooses, and a choice that cannot be
    honoured is an error that says what would."""
    import cv2

    from deepseek.manufacturing.model import DefectNet

    weights = tmp_path / "model.safetensors"
    shutil.copy(PACKAGED, weights)
    shutil.copy(WEIGHTS / "defect-3dcnn-lstm.json", tmp_path / "model.json")
    with caplog.at_level("INFO", logger="deepseek.manufacturing.stream"):
        assert isinstance(scoring_net(weights), DefectNet)  # no export yet
    assert any("scoring with PyTorch (" in r.getMessage() for r in caplog.records)
    with pytest.raises(ManufacturingError, match="no streaming ONNX export"):
        scoring_net(weights, "onnxruntime")
    assert CliRunner().invoke(build_cli(), ["manufacturing", "export",
                                            str(weights)]).exit_code == 0
    edge = scoring_net(weights)
    assert isinstance(edge, OnnxNet) and edge.still_session is not None
    assert isinstance(scoring_net(weights, "torch"), DefectNet)
    assert isinstance(scoring_net("defect-3dcnn-lstm"), OnnxNet)  # the packaged exports
    # without the still-photo export each photo would go through the step: PyTorch instead
    still = still_path_for(edge.path)
    kept = still.read_bytes()
    still.unlink()
    caplog.clear()
    with caplog.at_level("INFO", logger="deepseek.manufacturing.stream"):
        assert isinstance(scoring_net(weights), DefectNet)
    assert any("no still-photo export" in r.getMessage() for r in caplog.records)
    still.write_bytes(kept)
    # weights changed after the export: PyTorch, never a stale export
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert isinstance(scoring_net(weights), DefectNet)
    with pytest.raises(ManufacturingError, match="was not exported from"):
        scoring_net(weights, "onnxruntime")
    with pytest.raises(ManufacturingError, match="an ONNX export runs on onnxruntime"):
        scoring_net(edge.path, "torch")
    with pytest.raises(ManufacturingError, match="a network in memory runs on PyTorch"):
        scoring_net(load_net("defect-3dcnn-lstm"), "onnxruntime")
    with pytest.raises(ManufacturingError, match="backend='tensorrt': use auto"):
        scoring_net(weights, "tensorrt")
    with pytest.MonkeyPatch.context() as mp:  # an edge install: torch is not there to ask for
        from deepseek.manufacturing import stream

        mp.setattr(stream, "have_torch", lambda: False)
        for ask in (lambda: scoring_net(weights, "torch"), lambda: make_step(edge, "torch")):
            with pytest.raises(ManufacturingError, match=r"backend torch needs PyTorch, which "
                               r"is not installed \(pip install \"deepseek-manufacturing"
                               r"\[full\]\"\); this install (scores on|runs) onnxruntime"):
                ask()
    # the CLI: the same decisions and scores on either backend
    folder = tmp_path / "parts"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        img = rng.integers(90, 200, (80, 120), dtype=np.uint8)
        img[20 + 10 * i, 10:110] = 40
        cv2.imwrite(str(folder / f"p{i}.png"), img)
    got = {}
    for backend in ("auto", "torch", "onnxruntime"):
        res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(folder), "--model",
                                               "defect-3dcnn-lstm", "--backend", backend,
                                               "--json"])
        assert res.exit_code == 0, res.output
        got[backend] = json.loads(res.output[res.output.index("["):])
    for backend in ("torch", "onnxruntime"):
        for a, b in zip(got["auto"], got[backend]):
            assert a["score"] == pytest.approx(b["score"], abs=1e-4)
            assert a["defect"] == b["defect"]
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(folder),
                                           "--backend", "tensorrt"])
    assert res.exit_code != 0 and "'tensorrt' is not one of" in res.output


def test_the_edge_sessions_run_the_threads_the_process_is_given(monkeypatch):
    """A `deepseek batch` worker told to use one core (OMP_NUM_THREADS) scores on one:
    the streaming and still-photo sessions ran onnxruntime's thread per core before,
    whatever the worker was told."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    edge = load_net("defect-3dcnn-lstm", onnx=True)
    for session in (edge.session, edge.still_session):
        assert session.get_session_options().intra_op_num_threads == 1


def test_training_scores_held_out_photos_on_the_runtime_score_runs():
    """The held-out photos that pick the epoch and set the threshold are scored as `score`
    scores by default: the network's still-photo graph, exported as it stands, on
    onnxruntime (30 photos of 20 megapixels: 42 s -> 24 s a run, PyTorch's kernel time for
    fresh activations gone); the same scores as PyTorch's, and a network left as it was."""
    from deepseek.manufacturing.model import DefectNet
    from deepseek.manufacturing.runtime import StillGraph
    from deepseek.manufacturing.training import hard_spots, image_scores, scoring_graph

    net = load_net("defect-3dcnn-lstm")
    net.train()
    graph = scoring_graph(net, FRAMES)
    assert isinstance(graph, StillGraph) and net.training  # exported, the mode restored

    class Item:
        def __init__(self, image, defect=False):
            self.image, self.defect = image, defect

    rng = np.random.default_rng(5)
    items = [Item(rng.integers(80, 200, (40 + 8 * i, 70), dtype=np.uint8)) for i in range(3)]
    items[1].image[20, 5:65] = 30
    got = image_scores(net, items)
    with torch.inference_mode():
        want = [score_image(net.eval(), it.image, FRAMES)[0] for it in items]
    np.testing.assert_allclose(got, want, atol=1e-5)
    spots = hard_spots(net, items, per_image=2, progress=False)
    assert len(spots) == 6 and all(0 < s.weight <= 1 + 1e-6 for s in spots)
    with pytest.raises(ManufacturingError, match="holds a photo for 8"):
        graph.still(items[0].image[None, :32, :64], 3)
    # a network elsewhere than on the CPU, or not this one, is scored by PyTorch as it is
    other = torch.nn.Conv2d(1, 1, 3)
    assert scoring_graph(other, FRAMES) is other and not isinstance(other, DefectNet)
