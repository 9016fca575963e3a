"""defect-3dcnn-lstm: streaming equals whole-clip, ONNX step equals PyTorch, training learns."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from deepseek.manufacturing.model import CausalTimeConv, DefectNet, export_step_onnx
from deepseek.manufacturing.stream import OnnxStep, TorchStep


def _net(seed=0, **kw):
    torch.manual_seed(seed)
    net = DefectNet(**kw)
    for m in net.modules():  # non-trivial batch-norm statistics, as after training
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.mark.parametrize("temporal, stem", [(1, "fine"), (3, "fine"), (4, "fine"),
                                            (3, "patch")])
def test_frame_by_frame_with_carried_state_equals_whole_clip(temporal, stem):
    net = _net(temporal=temporal, stem=stem)
    x = torch.randint(0, 256, (2, 11, 64, 80), dtype=torch.uint8)
    with torch.no_grad():
        whole_l, whole_m, whole_s = net(x)
        state, ls, ms = None, [], []
        for t in range(x.shape[1]):
            lg, mp, state = net(x[:, t:t + 1], state)
            ls.append(lg)
            ms.append(mp)
        chunked, st2 = [], None
        for a, b in [(0, 4), (4, 5), (5, 11)]:
            lg, _, st2 = net(x[:, a:b], st2)
            chunked.append(lg)
    assert torch.allclose(torch.cat(ls, 1), whole_l, atol=1e-5)
    assert torch.allclose(torch.cat(ms, 1), whole_m, atol=1e-5)
    assert torch.allclose(torch.cat(chunked, 1), whole_l, atol=1e-5)
    for a, b in zip(state, whole_s):
        assert torch.allclose(a, b, atol=1e-5)
    assert whole_m.shape == (2, 11, 4, 5)


@pytest.mark.parametrize("kernel, padding, bias", [((3, 3, 3), (0, 1, 1), False),
                                                   ((1, 3, 3), (0, 1, 1), True),
                                                   ((2, 1, 3), (0, 0, 1), True)])
def test_causal_time_conv_equals_conv3d_forward_and_backward(kernel, padding, bias):
    """The 2D-over-windows computation is the Conv3d it replaces: same state-dict keys,
    outputs and gradients."""
    torch.manual_seed(0)
    mine = CausalTimeConv(5, 7, kernel, padding=padding, bias=bias)
    ref = torch.nn.Conv3d(5, 7, kernel, padding=padding, bias=bias)
    ref.load_state_dict(mine.state_dict())
    x = torch.randn(2, 5, 6, 9, 11, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    a, b = mine(x), ref(x2)
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(a)
    a.backward(g)
    b.backward(g)
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mine.weight.grad, ref.weight.grad, atol=1e-4, rtol=1e-5)
    with pytest.raises(ValueError, match="space only"):
        CausalTimeConv(5, 7, kernel, padding=(1, 1, 1))


@pytest.mark.parametrize("temporal, frames, stem", [(1, 1, "fine"), (3, 1, "fine"),
                                                    (3, 4, "fine"), (4, 6, "fine"),
                                                    (3, 4, "patch")])
def test_still_image_encoded_once_equals_the_image_repeated(temporal, frames, stem):
    net = _net(2, temporal=temporal, stem=stem)
    img = torch.randint(0, 256, (2, 48, 80), dtype=torch.uint8)
    with torch.no_grad():
        lg, mp, _ = net(img[:, None].expand(-1, frames, -1, -1))
        lg2, mp2 = net.still(img, frames)
    torch.testing.assert_close(lg2, lg, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mp2, mp, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="frames"):
        net.still(img, 0)


def test_state_matters():
    """The LSTM state carries information: a different history gives a different output."""
    net = _net()
    x = torch.randint(0, 256, (1, 6, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        a, _, _ = net(x[:, 3:])
        _, _, s = net(x[:, :3])
        b, _, _ = net(x[:, 3:], s)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("stem", ["fine", "patch"])
def test_onnx_step_matches_torch_step_across_batches(stem):
    net = _net(1, stem=stem)
    frames = np.random.default_rng(0).integers(0, 256, (9, 48, 64), dtype=np.uint8)
    t, o = TorchStep(net), OnnxStep(net)
    pt = [t(frames[a:b]) for a, b in [(0, 1), (1, 5), (5, 9)]]
    po = [o(frames[a:b]) for a, b in [(0, 1), (1, 5), (5, 9)]]
    for (p1, m1), (p2, m2) in zip(pt, po):
        np.testing.assert_allclose(p1, p2, atol=1e-5)
        np.testing.assert_allclose(m1, m2, atol=1e-4)
    import onnx

    graph = onnx.load_from_string(export_step_onnx(net, 48, 64)).graph
    assert [i.name for i in graph.input] == ["frames", "buffer", "h", "c"]


def test_training_steps_reduce_the_loss():
    from deepseek.manufacturing.training import ClipDataset, clip_loss, make_clips

    arrays = make_clips(8, seed=3, frames=6, height=64, width=64, workers=1)
    assert arrays["x"].shape == (8, 6, 64, 64) and arrays["map"].shape == (8, 6, 4, 4)
    assert arrays["y"].sum() > 0
    torch.manual_seed(0)
    net = DefectNet()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    batch = {k: torch.stack([ClipDataset(arrays, augment=False)[i][k] for i in range(8)])
             for k in ("x", "y", "w", "map", "mw")}
    losses = []
    for _ in range(25):
        loss = clip_loss(net, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_a_batch_held_still_is_encoded_once_with_the_same_loss_and_gradients(monkeypatch):
    import copy

    from deepseek.manufacturing.training import clip_loss

    torch.manual_seed(0)
    net = DefectNet()
    net.train()
    x = torch.randint(0, 255, (4, 1, 48, 48), dtype=torch.uint8).expand(4, 3, 48, 48)
    cells = (torch.rand(4, 1, 3, 3) > 0.7).float().expand(4, 3, 3, 3)
    batch = {"x": x.contiguous(), "y": torch.tensor([1.0, 0, 1, 0])[:, None].expand(4, 3),
             "w": torch.ones(4, 3), "map": cells.contiguous(), "mw": torch.ones(4, 1)}
    plain = copy.deepcopy(net)
    calls = []
    still = DefectNet.still

    def counted(self, images, frames):
        calls.append((tuple(images.shape), frames))
        return still(self, images, frames)

    monkeypatch.setattr(DefectNet, "still", counted)
    loss = clip_loss(net, batch)
    assert calls == [((4, 48, 48), 3)]  # each crop encoded once, shown for 3 frames
    loss.backward()
    monkeypatch.delattr(DefectNet, "still")  # a model without it: the clip through forward()
    ref = clip_loss(plain, batch)
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    for (name, a), b in zip(net.named_parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=name)
    # frames that differ (a stream clip) never take the shortcut
    moving = dict(batch, x=torch.randint(0, 255, (4, 3, 48, 48), dtype=torch.uint8))
    monkeypatch.setattr(DefectNet, "still", lambda *a: pytest.fail("moving clip encoded once"),
                        raising=False)
    clip_loss(net, moving)


def test_synthetic_training_cracks_follow_the_depth_range(tmp_path):
    from deepseek.manufacturing.errors import ManufacturingError
    from deepseek.manufacturing.training import synthetic_clip, train_model, validation_lines

    # the same clip seed drawn with a faint and a deep range: the crack pixels darken the
    # surface less in the faint clip, and its validation lines carry the same range
    seed = next(s for s in range(100) if synthetic_clip(s, 4, 64, 64)["y"].any())
    faint = synthetic_clip(seed, 4, 64, 64, crack_depth=(0.10, 0.12))
    deep = synthetic_clip(seed, 4, 64, 64, crack_depth=(0.60, 0.62))
    assert (faint["y"] == deep["y"]).all()
    drop = deep["x"].astype(int) - faint["x"].astype(int)
    assert drop.min() < -20 and drop.max() <= 3  # deep cracks only ever darker
    (line,) = validation_lines(1, frames=8, crack_depth=(0.10, 0.12))
    assert line.cracks and all(0.10 <= c.depth <= 0.12 for c in line.cracks)
    for bad in ((0.0, 0.5), (0.6, 0.4), (0.2, 1.0)):
        with pytest.raises(ManufacturingError, match="crack_depth"):
            train_model(tmp_path, clips=2, frames=2, height=32, width=32, epochs=1,
                        val_videos=0, workers=1, progress=False, crack_depth=bad)


def test_trainer_run_writes_a_loadable_model(tmp_path):
    from deepseek.loader import ModelLoader
    from deepseek.manufacturing.training import train_model

    res = train_model(tmp_path, clips=8, frames=4, height=32, width=48, epochs=1,
                      batch_size=4, val_videos=0, workers=1, progress=False)
    assert len(res["history"]) == 1
    m = ModelLoader.load(str(tmp_path / "model.safetensors"))
    assert isinstance(m.module, DefectNet)
    assert (tmp_path / "checkpoints" / "latest").exists()


def test_stems_see_every_pixel_and_reach_the_same_cells():
    """Both stems reach stride 4 without skipping a pixel: a one-pixel change anywhere in a
    16x16 cell changes that cell's features; an unknown stem is refused by name."""
    for stem in ("fine", "patch"):
        net = _net(3, stem=stem)
        x = torch.full((1, 1, 64, 64), 0.5)
        with torch.no_grad():
            base = net.encoder(x)
            for y, xx in [(0, 0), (5, 9), (15, 15), (33, 2)]:
                x2 = x.clone()
                x2[..., y, xx] = -0.5
                d = (net.encoder(x2) - base).abs().sum(1)[0]
                assert d[y // 16, xx // 16] > 0, (stem, y, xx)
        assert base.shape[-2:] == (4, 4)
    with pytest.raises(ValueError, match="stem='wide'.*patch, fine"):
        DefectNet(stem="wide")


def test_a_saved_model_whose_config_names_no_stem_loads_with_the_patch_stem(tmp_path):
    """Models saved before the stem was a setting (config without ``stem``) keep loading,
    and a fine-stem model loads with its own."""
    from deepseek.loader import ModelLoader, save_model

    net = _net(4, stem="patch")
    path = save_model(net, tmp_path / "old.safetensors", architecture="defect-3dcnn-lstm",
                      config={"channels": [16, 32, 32], "temporal": 3, "hidden": 32})
    m = ModelLoader.load(str(path))
    assert m.module.stem == "patch"
    x = torch.randint(0, 256, (1, 2, 32, 48), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(m.module(x)[0], net(x)[0])
    fine = _net(5, stem="fine")
    path = save_model(fine, tmp_path / "fine.safetensors", architecture="defect-3dcnn-lstm",
                      config={"channels": [16, 32, 32], "temporal": 3, "hidden": 32,
                              "stem": "fine"})
    m = ModelLoader.load(str(path))
    assert m.module.stem == "fine"
    with torch.no_grad():
        torch.testing.assert_close(m.module(x)[0], fine(x)[0])


def test_packaged_weights_load_by_name():
    from deepseek.loader import ModelLoader
    from deepseek.plugins import get_registry

    entry = get_registry("model").entry("defect-3dcnn-lstm")
    assert entry.meta["weights"], "packaged weights are missing"
    m = ModelLoader.load("defect-3dcnn-lstm")
    assert isinstance(m.module, DefectNet) and not m.module.training
    assert m.module.stem == "patch" and "stem" not in entry.meta["config"]


def test_servable_by_name_as_stateless_clips():
    """`deepseek serve defect-3dcnn-lstm`: a request is a clip from a fresh state; the
    outputs are frame logits, maps and the state after the clip (flattened)."""
    from deepseek.serving.models import ServedModel

    m = ServedModel("defect-3dcnn-lstm", "defect-3dcnn-lstm")
    assert [o["shape"] for o in m.metadata()["outputs"][:2]] == [[-1, -1], [-1, -1, -1, -1]]
    # named as the streaming export names them, not output0 ... output4
    assert [o["name"] for o in m.metadata()["outputs"]] == [
        "logits", "maps", "buffer_out", "h_out", "c_out"]
    outs = m([np.zeros((1, 3, 480, 640), np.uint8)])
    assert [o.shape for o in outs[:2]] == [(1, 3), (1, 3, 30, 40)] and len(outs) == 5
    assert [a.shape for a in m.example_inputs()] == [(1, 1, 480, 640)]   # timed at a frame


def test_a_trained_model_serves_frames_of_its_own_size_in_steps_of_the_cell(tmp_path):
    """`deepseek serve run/model.safetensors`: a line's frames at their own size (a 500 x 1259
    part photo padded to 512 x 1264, as the stream pads) get the network's own outputs; a
    size off the 16-pixel cell grid or an empty clip is a 400 that says how to fix it, and
    the server goes on serving."""
    import httpx
    import tritonclient.http as th

    from deepseek.loader import ModelLoader, save_model
    from deepseek.serving import DeepSeekServing

    m = ModelLoader.load("defect-3dcnn-lstm", device="cpu")
    path = save_model(m.module, tmp_path / "model.safetensors",
                      architecture="defect-3dcnn-lstm", config=m.config)
    clip = np.random.default_rng(0).integers(40, 220, (1, 2, 512, 1264), dtype=np.uint8)
    with torch.inference_mode():
        logits, maps, _ = m.module(torch.from_numpy(clip))

    def infer(client, x):
        t = th.InferInput("frames", list(x.shape), "UINT8")
        t.set_data_from_numpy(x, binary_data=True)
        return client.infer("line", [t])

    with DeepSeekServing(models={"line": str(path)}, port=0, grpc_port=None,
                         calibrate=False) as server:
        client = th.InferenceServerClient(server.http_url)
        assert client.get_model_metadata("line")["inputs"][0]["shape"] == [-1, -1, -1, -1]
        got = infer(client, clip)
        np.testing.assert_allclose(got.as_numpy("logits"), logits.numpy(), atol=1e-4)
        np.testing.assert_allclose(got.as_numpy("maps"), maps.numpy(), atol=1e-4)
        url = f"http://{server.http_url}/v2/models/line/infer"
        for shape, said in [((1, 1, 500, 1259), "axis 2 must be a positive multiple of 16"
                                                 r".*pad it to 512"),
                            ((1, 1, 512, 1000), "axis 3 must be a positive multiple of 16"
                                                r".*pad it to 1008"),
                            ((1, 1, 8, 16), "axis 2 .*pad it to 16"),
                            ((1, 0, 16, 16), "axis 1 is empty")]:
            body = {"inputs": [{"name": "frames", "datatype": "UINT8", "shape": list(shape),
                                "data": [0] * int(np.prod(shape))}]}
            r = httpx.post(url, json=body, timeout=60)
            assert r.status_code == 400 and re.search(said, r.json()["error"]), (shape, r.text)
        small = infer(client, clip[:, :1, :16, :32])      # the smallest frames it takes
        assert small.as_numpy("maps").shape == (1, 1, 1, 2)
