"""The model zoo with the real model library (transformers, no torchvision): the seed's
example, a transformer and a ConvNeXt, config checks, local weights, and name ownership."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deepseek import hookimpl
from deepseek.cli import build_cli
from deepseek.errors import ModelLoadError, NameConflictError
from deepseek.loader import ModelLoader, zoo
from deepseek.plugins import models, temporary_plugin

pytestmark = pytest.mark.skipif(not zoo.available(), reason="the zoo extra (transformers) is "
                                "not installed; `make install` installs it")


@pytest.mark.slow
def test_the_seeds_first_example_resnet50_in_fp16():
    model = ModelLoader.load("resnet50", framework="pytorch", precision="fp16")
    assert model.framework == "pytorch" and model.trained is False
    assert next(model.module.parameters()).dtype == torch.float16
    s = model.summary((1, 3, 224, 224))
    assert s.total_params == 25_557_032  # ResNet-50 with its 1000-class head
    assert s.output_shape == [1, 1000] and "Conv2d" in str(s) and "float16" in str(s)
    out = model(np.zeros((2, 3, 64, 64), np.float32))  # fully convolutional: any size
    assert out.shape == (2, 1000) and out.dtype == np.float16


@pytest.mark.parametrize("name, params, precision, size", [
    ("vit_tiny_patch16_224", 5_717_416, "bf16", 224),  # a transformer
    ("convnext_tiny", 28_589_128, "fp32", 64),
])
def test_more_architectures_match_their_reference_sizes(name, params, precision, size):
    model = ModelLoader.load(name, precision=precision)
    assert model.num_parameters() == params
    out = model(torch.rand(1, 3, size, size))
    assert out.shape == (1, 1000) and out.dtype == model.dtype


def test_config_is_checked_with_suggestions():
    model = ModelLoader.load("resnet18", num_classes=3, in_chans=1)
    assert model(np.zeros((2, 1, 64, 64), np.float32)).shape == (2, 3)
    with pytest.raises(ModelLoadError, match="unknown config key 'num_clases'; did you mean "
                       "'num_classes'"):
        ModelLoader.load("resnet18", num_clases=3)
    with pytest.raises(ModelLoadError, match="did you mean 'precision'"):
        ModelLoader.load("resnet18", precison="fp16")


def test_local_weights_only_never_a_download(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    monkeypatch.setenv("DEEPSEEK_ZOO_DIR", str(tmp_path / "zoo"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache
    with pytest.raises(ModelLoadError, match=r"no local weights for zoo model 'resnet18'.*"
                       r"zoo/resnet18.safetensors.*hf download microsoft/resnet-18"):
        ModelLoader.load("resnet18", pretrained=True)
    torch.manual_seed(1)
    source = ModelLoader.load("resnet18", num_classes=5)
    (tmp_path / "zoo").mkdir()
    save_file(source.module.state_dict(), str(tmp_path / "zoo" / "resnet18.safetensors"))
    x = torch.rand(1, 3, 64, 64)
    loaded = ModelLoader.load("resnet18", pretrained=True, num_classes=5)
    assert loaded.trained is True
    torch.testing.assert_close(loaded(x), source(x))
    source.module.model.save_pretrained(tmp_path / "hf-folder")  # transformers' own layout
    again = ModelLoader.load("resnet18", pretrained=True, weights=tmp_path / "hf-folder")
    torch.testing.assert_close(again(x), source(x))


def test_zoo_names_are_owned_and_untrained_models_are_not_served():
    from deepseek.serving.models import ServedModel

    from ..conftest import TinyNet

    class Squatter:
        @staticmethod
        @hookimpl
        def register_models(register):
            register("resnet18", TinyNet)

    with temporary_plugin(Squatter, name="squatter"):
        with pytest.raises(NameConflictError, match=r"\(squatter, zoo\).*'zoo:resnet18'"):
            models().entry("resnet18")
        assert models().entry("zoo:resnet18").plugin == "zoo"
    with pytest.raises(ModelLoadError, match="has no trained weights.*--allow-untrained"):
        ServedModel("m", "mobilenet_v2")
    served = ServedModel("m", "mobilenet_v2", allow_untrained=True)
    assert served.metadata()["inputs"][0]["shape"] == [-1, 3, 224, 224]
    res = CliRunner().invoke(build_cli(), ["models", "resnet", "--json"])
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert {"resnet18", "resnet50", "resnet152"} <= set(rows)
    assert rows["resnet50"]["plugin"] == "zoo" and rows["resnet50"]["trained"] is False
