from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from deepseek import ModelLoader
from deepseek.errors import ModelLoadError, PrecisionError, UntrustedPickleError
from deepseek.loader import export_onnx, read_model_extra, save_model

from ..conftest import TinyConv, TinyNet


@pytest.fixture
def x():
    torch.manual_seed(1)
    return torch.randn(5, 8)


def test_registry_name_loads_packaged_weights(tiny_plugin, x):
    m = ModelLoader.load("test-tiny", device="cpu")
    assert m.framework == "pytorch" and m.precision == "fp32"
    torch.manual_seed(0)
    expect = TinyNet()(x)  # the fixture saved the weights of this seed-0 model
    torch.testing.assert_close(m(x), expect, rtol=0, atol=0)
    # numpy in, numpy out
    out = m(x.numpy())
    assert isinstance(out, np.ndarray) and np.allclose(out, expect.detach().numpy(), atol=1e-6)


def test_registry_config_override_and_pretrained(tiny_plugin):
    m = ModelLoader.load("test-tiny", hidden=32, pretrained=False)
    assert m.module.body[0].out_features == 32 and m.config["hidden"] == 32
    with pytest.raises(ModelLoadError, match="default config only"):
        ModelLoader.load("test-tiny", hidden=32)


def test_safetensors_round_trip(tiny_plugin, tmp_path, x):
    torch.manual_seed(3)
    net = TinyNet(hidden=12)
    path = save_model(net, tmp_path / "m", architecture="test-tiny", config={"hidden": 12})
    assert path.suffix == ".safetensors" and path.with_suffix(".json").is_file()
    m = ModelLoader.load(path)
    torch.testing.assert_close(m(x), net(x), rtol=0, atol=0)
    # the header alone carries the config when the sidecar JSON is gone
    path.with_suffix(".json").unlink()
    m2 = ModelLoader.load(path)
    assert m2.architecture == "test-tiny" and m2.config["hidden"] == 12
    assert read_model_extra(path) == {}
    # extra facts (an operating threshold) travel in the header and the sidecar
    path = save_model(net, tmp_path / "m2", architecture="test-tiny", config={"hidden": 12},
                      extra={"threshold": 0.25, "trained_on": "folder"})
    path.with_suffix(".json").unlink()
    assert read_model_extra(path) == {"threshold": 0.25, "trained_on": "folder"}
    assert ModelLoader.load(path).config["hidden"] == 12


def test_a_save_that_fails_leaves_the_model_there_as_it_was(tiny_plugin, tmp_path, x,
                                                            monkeypatch):
    """A model a service loads is replaced whole or not at all: a save that fails midway (a
    full disk, Ctrl-C) leaves the one there loading as before."""
    import safetensors.torch

    torch.manual_seed(3)
    net = TinyNet(hidden=12)
    path = save_model(net, tmp_path / "run" / "m", architecture="test-tiny",
                      config={"hidden": 12})

    def full_disk(module, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"\0" * 10)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_model", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_model(TinyNet(hidden=12), path, architecture="test-tiny", config={"hidden": 12})
    torch.testing.assert_close(ModelLoader.load(path)(x), net(x), rtol=0, atol=0)
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.json", "m.safetensors"]


def test_torchscript_round_trip(tmp_path, x):
    net = TinyNet().eval()
    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    m = ModelLoader.load(path)
    assert m.framework == "torchscript"
    torch.testing.assert_close(m(x), net(x), rtol=0, atol=0)


def test_onnx_matches_pytorch(tmp_path, x):
    net = TinyNet().eval()
    path = export_onnx(net, torch.randn(1, 8), tmp_path / "m.onnx", input_names=["x"])
    m = ModelLoader.load(path)
    assert m.framework == "onnx"
    out = m(x.numpy())
    np.testing.assert_allclose(out, net(x).detach().numpy(), atol=1e-5, rtol=0)
    out_t = m(x)  # torch in, torch out
    assert isinstance(out_t, torch.Tensor)


def test_onnx_outputs_of_a_dict_model_keep_their_names(tmp_path, x):
    class Heads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = TinyNet()

        def forward(self, inp):
            y = self.net(inp)
            return {"score": y, "double": 2 * y}

    net = Heads().eval()
    path = export_onnx(net, torch.randn(1, 8), tmp_path / "m.onnx", input_names=["x"])
    m = ModelLoader.load(path)
    assert [o.name for o in m.session.get_outputs()] == ["score", "double"]
    score, double = m.session.run(None, {"x": x.numpy()})
    np.testing.assert_allclose(double, 2 * score, atol=1e-6)


def test_registry_model_as_onnx_and_torchscript(tiny_plugin, x):
    ref = ModelLoader.load("test-tiny")(x)
    onnx_m = ModelLoader.load("test-tiny", framework="onnx")
    np.testing.assert_allclose(onnx_m(x.numpy()), ref.numpy(), atol=1e-5, rtol=0)
    ts = ModelLoader.load("test-tiny", framework="torchscript")
    torch.testing.assert_close(ts(x), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("precision,dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_precision_changes_parameter_dtypes(tiny_plugin, x, precision, dtype):
    m = ModelLoader.load("test-tiny", precision=precision, device="cpu")
    assert {p.dtype for p in m.module.parameters()} == {dtype}
    out = m(x)
    assert out.dtype == dtype
    ref = ModelLoader.load("test-tiny")(x)
    torch.testing.assert_close(out.float(), ref, atol=5e-2, rtol=5e-2)


def test_onnx_fp16_converts_the_graph(tmp_path, x):
    import onnx

    net = TinyNet().eval()
    path = export_onnx(net, torch.randn(1, 8), tmp_path / "m.onnx")
    m = ModelLoader.load(path, precision="fp16")
    types = {i.data_type for i in m.onnx_model.graph.initializer}
    assert types == {onnx.TensorProto.FLOAT16}
    np.testing.assert_allclose(m(x.numpy()), net(x).detach().numpy(), atol=2e-2)
    with pytest.raises(PrecisionError, match="bf16"):
        ModelLoader.load(path, precision="bf16")


def test_bad_precision_and_device():
    with pytest.raises(PrecisionError, match="unknown precision 'fp8'"):
        ModelLoader.load(TinyNet(), precision="fp8")
    if not torch.cuda.is_available():
        with pytest.raises(PrecisionError, match="CUDA is not available"):
            ModelLoader.load(TinyNet(), device="cuda")


def test_summary_totals_and_shapes(tiny_plugin):
    m = ModelLoader.load("test-conv")
    s = m.summary(example_input=(2, 1, 8, 8))
    expected = sum(p.numel() for p in m.module.parameters())
    assert s.total_params == expected == sum(r.params for r in s.rows)
    assert s.trainable_params == expected
    rows = {r.name: r for r in s.rows}
    assert rows["conv"].output_shape == [2, 4, 8, 8]
    assert rows["head"].output_shape == [2, 2]
    assert s.output_shape == [2, 2]
    buffers = sum(b.numel() * b.element_size() for b in m.module.buffers())
    assert s.size_mb == pytest.approx((expected * 4 + buffers) / 1e6)
    text = str(s)
    assert "Total params" in text and f"{expected:,}" in text and "Conv2d" in text
    # without an example input: no shapes, same totals
    s2 = m.summary()
    assert s2.total_params == expected and all(r.output_shape is None for r in s2.rows)


def test_summary_shared_parameters_counted_once():
    lin = torch.nn.Linear(4, 4)
    net = torch.nn.Sequential(lin, torch.nn.ReLU(), lin)
    s = ModelLoader.load(net).summary(torch.randn(1, 4))
    assert s.total_params == 20 == sum(r.params for r in s.rows)


def test_summary_frozen_parameters():
    net = TinyNet()
    for p in net.body[0].parameters():
        p.requires_grad_(False)
    s = ModelLoader.load(net).summary()
    assert s.trainable_params == sum(p.numel() for p in net.body[2].parameters())
    assert s.non_trainable_params == 8 * 16 + 16


def test_onnx_summary_totals(tmp_path):
    net = TinyConv().eval()
    path = export_onnx(net, torch.randn(1, 1, 8, 8), tmp_path / "c.onnx")
    s = ModelLoader.load(path).summary()
    # BatchNorm folds into the conv at export; the head is unchanged
    assert s.total_params == sum(r.params for r in s.rows)
    assert s.total_params >= sum(p.numel() for p in net.head.parameters())


def test_pickle_refused_without_trust_flag(tmp_path, x):
    net = TinyNet()
    path = tmp_path / "model.pt"
    torch.save(net, path)
    with pytest.raises(UntrustedPickleError, match="trust_pickle=True"):
        ModelLoader.load(path)
    m = ModelLoader.load(path, trust_pickle=True)
    torch.testing.assert_close(m(x), net(x))


def test_pickled_state_dict_needs_architecture(tiny_plugin, tmp_path, x):
    net = TinyNet()
    path = tmp_path / "state.pth"
    torch.save({"state_dict": net.state_dict()}, path)
    with pytest.raises(ModelLoadError, match="architecture="):
        ModelLoader.load(path, trust_pickle=True)
    m = ModelLoader.load(path, trust_pickle=True, architecture="test-tiny")
    torch.testing.assert_close(m(x), net(x))


def test_bad_files(tiny_plugin, tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        ModelLoader.load(tmp_path / "missing.onnx")
    with pytest.raises(ModelLoadError, match="did you mean: test-tiny"):
        ModelLoader.load("test-tin")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx file at all")
    with pytest.raises(ModelLoadError, match="junk.onnx"):
        ModelLoader.load(junk)
    bare = tmp_path / "bare.safetensors"
    from safetensors.torch import save_file

    save_file(TinyNet().state_dict(), str(bare))
    with pytest.raises(ModelLoadError, match="no architecture recorded"):
        ModelLoader.load(bare)
    own = tmp_path / "memory.safetensors"  # a plugin's file of its own kind (a patch memory)
    save_file({"bank": torch.zeros(4, 2)}, str(own),
              metadata={"deepseek": json.dumps({"kind": "patch-memory", "bank": 4})})
    with pytest.raises(ModelLoadError, match="memory.safetensors: a 'patch-memory' file a "
                       "plugin wrote for its own commands, not a network's weights"):
        ModelLoader.load(own)
    wrong = save_model(TinyNet(hidden=5), tmp_path / "wrong", architecture="test-tiny",
                       config={})  # config says default hidden=16, weights have 5
    with pytest.raises(ModelLoadError, match="do not fit"):
        ModelLoader.load(wrong)
    with pytest.raises(ModelLoadError, match="framework='onnx'"):
        ModelLoader.load(wrong, framework="onnx")
    with pytest.raises(ModelLoadError, match="unknown framework 'caffe'"):
        ModelLoader.load(wrong, framework="caffe")
    with pytest.raises(ModelLoadError, match="export to ONNX with tf2onnx"):
        ModelLoader.load(wrong, framework="tensorflow")
    keras = tmp_path / "model.keras"
    keras.write_bytes(b"PK")
    with pytest.raises(ModelLoadError, match="model.keras: TensorFlow/Keras .* tf2onnx"):
        ModelLoader.load(keras)
    with pytest.raises(ModelLoadError, match="framework='safetensors' but the file is onnx"):
        ModelLoader.load(junk, framework="safetensors")


def test_unknown_keywords_are_refused_for_every_source_kind(tiny_plugin, tmp_path, x):
    """A misspelt option never loads fp32 in silence."""
    net = TinyNet().eval()
    onnx_path = export_onnx(net, x, tmp_path / "m.onnx")
    ts_path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.trace(net, x), str(ts_path))
    st_path = save_model(net, tmp_path / "m.safetensors", architecture="test-tiny")
    for source, kind in ((onnx_path, "an ONNX file"), (ts_path, "a TorchScript archive")):
        with pytest.raises(ModelLoadError, match=rf"\({kind}\): unknown keyword argument\(s\) "
                           "'precison'; did you mean 'precision'"):
            ModelLoader.load(source, precison="fp16")
    for source in (st_path, "test-tiny"):
        with pytest.raises(ModelLoadError, match="unknown config key 'precison'; did you mean "
                           "'precision'"):
            ModelLoader.load(source, precison="fp16")
    with pytest.raises(ModelLoadError, match="unknown config key 'hiden'; did you mean "
                       "'hidden'"):
        ModelLoader.load("test-tiny", hiden=4, pretrained=False)
    with pytest.raises(ModelLoadError, match="TinyNet: unknown keyword"):
        ModelLoader.load(net, precison="fp16")


def test_untrained_models_are_marked_and_warned_about(tiny_plugin, caplog):
    assert ModelLoader.load("test-tiny").trained is True
    assert ModelLoader.load("test-tiny", pretrained=False).trained is False
    with caplog.at_level("WARNING", logger="deepseek"):
        m = ModelLoader.load("test-conv")  # registered without weights
    assert m.trained is False and "has no trained weights" in caplog.text
    assert ModelLoader.load(TinyNet()).trained is None  # a module handed in: unknown


def test_a_folder_with_several_formats_loads_what_the_install_runs(tiny_plugin, tmp_path, x,
                                                                   caplog):
    net = TinyNet().eval()
    save_model(net, tmp_path / "model.safetensors", architecture="test-tiny")
    export_onnx(net, x, tmp_path / "model.onnx")
    with caplog.at_level("INFO", logger="deepseek"):
        assert ModelLoader.load(tmp_path).framework == "pytorch"
    assert "loading model.safetensors" in caplog.text
    assert ModelLoader.load(tmp_path, framework="onnx").framework == "onnx"
    # a folder whose ONNX files have other names (a plugin's exports): named, not guessed
    other = tmp_path / "run"
    other.mkdir()
    save_model(net, other / "model.safetensors", architecture="test-tiny")
    for name in ("model.still.onnx", "model.stream.onnx"):
        export_onnx(net, x, other / name)
    with pytest.raises(ModelLoadError, match="no model.onnx; give one of its ONNX files by "
                                             "its path: model.still.onnx, model.stream.onnx"):
        ModelLoader.load(other, framework="onnx")


def test_onnxruntime_sessions_run_the_threads_this_process_may_use(monkeypatch):
    """onnxruntime ignores OMP_NUM_THREADS and the cgroup's quota and starts a thread per
    physical core: a batch worker told to use one core, or a pod limited to 2 CPUs on a
    64-core node, ran every session on all of them. The sessions the project opens take
    the threads given, else OMP_NUM_THREADS, else the CPU budget where it is below the
    machine's cores, else onnxruntime's own choice."""
    import deepseek.cpus
    from deepseek.loader import session_options, session_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(deepseek.cpus, "cpu_budget", lambda: 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert session_threads() == 2  # the pod's 2 CPUs, not the node's 64
    assert session_threads(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert session_threads() == 1 and session_threads(4) == 4
    opts = session_options()
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (1, 1)
    for junk in ("0", "two", ""):  # not a count: as if unset
        monkeypatch.setenv("OMP_NUM_THREADS", junk)
        assert session_threads() == 2
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # the whole machine: onnxruntime's choice
    assert session_threads() is None
    assert session_options().intra_op_num_threads == 0
