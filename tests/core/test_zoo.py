"""The model zoo: timm architectures by name through the model registry, local weights only.

The integration is tested against a stand-in ``timm`` module that keeps timm's API (so it
runs everywhere), and against the real timm where it imports: timm needs a torchvision built
for the installed torch, which PyPI has not for every torch build.
"""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types

import pytest
import torch
from click.testing import CliRunner

from deepseek import hookimpl, plugins, zoo
from deepseek.cli import build_cli
from deepseek.errors import ModelLoadError
from deepseek.loader import ModelLoader
from deepseek.plugins import models, temporary_plugin


class _TinyCNN(torch.nn.Module):
    def __init__(self, num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(in_chans, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def _fake_timm():
    """timm's API as the zoo uses it: list_models, models.get_pretrained_cfg, create_model
    (pretrained weights only through pretrained_cfg_overlay's state_dict: never a download)."""
    mod = types.ModuleType("timm")
    mod.__spec__ = importlib.machinery.ModuleSpec("timm", None)
    mod.calls = []

    def list_models(pattern=None):
        return ["tinycnn", "tinycnn_wide"]

    def get_pretrained_cfg(name):
        return types.SimpleNamespace(input_size=(3, 32, 32), hf_hub_id=f"timm/{name}.demo")

    def create_model(name, pretrained=False, pretrained_cfg_overlay=None, **kwargs):
        mod.calls.append((name, pretrained, kwargs))
        if name.split(".")[0] not in list_models():
            raise RuntimeError(f"Unknown model ({name})")
        net = _TinyCNN(**kwargs)
        if pretrained:
            state = (pretrained_cfg_overlay or {}).get("state_dict")
            assert state is not None, "the zoo must hand timm the weights; timm must not fetch"
            net.load_state_dict(state)
        return net

    mod.list_models, mod.create_model = list_models, create_model
    mod.models = types.SimpleNamespace(get_pretrained_cfg=get_pretrained_cfg)
    return mod


@pytest.fixture
def fake_timm(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "timm", _fake_timm())
    monkeypatch.setenv("DEEPSEEK_ZOO_DIR", str(tmp_path / "zoo"))
    monkeypatch.setattr(zoo, "_import_error", None)
    plugins._registry_cache.clear()
    yield sys.modules["timm"]
    plugins._registry_cache.clear()


def test_zoo_names_load_in_every_precision_with_summary(fake_timm):
    assert "tinycnn" in models() and "timm/tinycnn" in models()
    assert models().entry("tinycnn").plugin == "timm"
    for precision, dtype in (("fp32", torch.float32), ("fp16", torch.float16),
                             ("bf16", torch.bfloat16)):
        m = ModelLoader.load("tinycnn", framework="pytorch", precision=precision, device="cpu")
        assert next(m.module.parameters()).dtype == dtype
        s = m.summary((1, 3, 32, 32))
        assert s.total_params == sum(p.numel() for p in _TinyCNN().parameters())
        assert s.output_shape == [1, 10] and "Conv2d" in str(s)
    assert fake_timm.calls[0] == ("tinycnn", False, {})  # random weights unless asked
    m = ModelLoader.load("tinycnn", num_classes=2, in_chans=1)
    assert m(torch.zeros(1, 1, 16, 16)).shape == (1, 2)
    res = CliRunner().invoke(build_cli(), ["models", "tinycnn*", "--json"])
    rows = json.loads(res.output)
    assert [r["name"] for r in rows] == ["tinycnn", "tinycnn_wide"]
    assert rows[0]["plugin"] == "timm" and rows[0]["inputs"][0]["shape"] == [-1, 3, 32, 32]
    res = CliRunner().invoke(build_cli(), ["summary", "tinycnn", "--precision", "bf16"])
    assert res.exit_code == 0 and "[1, 10]" in res.output


def test_pretrained_takes_local_files_only(fake_timm, tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(ModelLoadError) as exc:
        ModelLoader.load("tinycnn", pretrained=True)
    msg = str(exc.value)
    assert "nothing is downloaded at run time" in msg
    assert str(tmp_path / "zoo" / "tinycnn.safetensors") in msg
    assert "huggingface-cli download timm/tinycnn.demo" in msg
    torch.manual_seed(3)
    ref = _TinyCNN()
    (tmp_path / "zoo").mkdir()
    save_file(ref.state_dict(), str(tmp_path / "zoo" / "tinycnn.safetensors"))
    m = ModelLoader.load("tinycnn", pretrained=True)
    x = torch.randn(2, 3, 8, 8)
    ref.eval()
    torch.testing.assert_close(m(x), ref(x))
    torch.save(ref.state_dict(), tmp_path / "w.pth")  # a plain state dict: weights_only
    m = ModelLoader.load("tinycnn_wide", pretrained=True, weights=tmp_path / "w.pth")
    torch.testing.assert_close(m(x), ref(x))
    with pytest.raises(ModelLoadError, match="does not exist"):
        ModelLoader.load("tinycnn", pretrained=True, weights=tmp_path / "nope.pth")


def test_a_plugin_name_wins_and_unknown_names_fail(fake_timm):
    class P:
        @staticmethod
        @hookimpl
        def register_models(register):
            register("tinycnn", _TinyCNN, config={"num_classes": 4})

    with temporary_plugin(P, name="shadow"):
        assert models().entry("tinycnn").plugin == "shadow"
        assert ModelLoader.load("tinycnn")(torch.zeros(1, 3, 4, 4)).shape == (1, 4)
    with pytest.raises(ModelLoadError, match="unknown model 'resnet9000'"):
        ModelLoader.load("resnet9000")


def test_a_broken_timm_install_is_explained(monkeypatch):
    broken = types.ModuleType("timm")
    broken.__spec__ = importlib.machinery.ModuleSpec("timm", None)

    def fail(*a, **k):
        raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.setitem(sys.modules, "timm", broken)
    monkeypatch.setattr(zoo, "_timm", fail)
    monkeypatch.setattr(zoo, "_import_error", None)
    plugins._registry_cache.clear()
    class P:
        @staticmethod
        @hookimpl
        def register_models(register):
            register("own-net", _TinyCNN)

    try:
        with temporary_plugin(P, name="own"):
            with pytest.raises(ModelLoadError, match="zoo is unavailable: timm is installed "
                               "but does not import .*torchvision::nms"):
                ModelLoader.load("resnet50")
            assert "own-net" in models()  # the plugins' models are unaffected
    finally:
        plugins._registry_cache.clear()


def test_real_timm_architecture_by_name():
    try:
        import timm  # noqa: F401
    except Exception as exc:  # ImportError, or RuntimeError from a mismatched torchvision
        pytest.skip(f"timm does not import here ({type(exc).__name__}: {exc}); it needs a "
                    "torchvision built for this torch")
    m = ModelLoader.load("resnet18", framework="pytorch", precision="bf16", device="cpu")
    s = m.summary((1, 3, 64, 64))
    assert s.total_params == 11_689_512 and s.output_shape == [1, 1000]
