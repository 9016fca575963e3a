"""A plugin author's mistakes are errors that `deepseek plugins` shows, never silent."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from deepseek import hookimpl
from deepseek.cli import build_cli
from deepseek.loader import ModelLoader, save_model
from deepseek.plugins import models, plugin_infos, readers, temporary_plugin

from ..conftest import TinyNet


def _info(name, check=False):
    return next(i for i in plugin_infos(check=check) if i.name == name)


def test_misspelled_hook_is_reported():
    class P:
        @staticmethod
        @hookimpl
        def register_model(register):  # the hook is register_models
            register("never-registered", TinyNet)

    with temporary_plugin(P, name="typo-hook"):
        info = _info("typo-hook")
        assert not info.ok
        assert "unknown hook 'register_model'; did you mean 'register_models'?" \
            in info.errors["register_model"]
        assert "never-registered" not in models()
        res = CliRunner().invoke(build_cli(), ["plugins"])
        assert "error in register_model: unknown hook 'register_model'" in res.output


def test_unknown_option_and_wrong_types_name_the_plugin(tmp_path):
    weights = save_model(TinyNet(), tmp_path / "w.safetensors", architecture="x")

    class P:
        @staticmethod
        @hookimpl
        def register_models(register):
            register("typo-weights", TinyNet, weight=str(weights))  # weights=
            register("bad-config", TinyNet, config="n_in=8")
            register("bad-inputs", TinyNet, inputs=[{"name": "x", "shape": [-1, "8"]}])
            register("good-one", TinyNet, weights=str(weights))

        @staticmethod
        @hookimpl
        def register_readers(register):
            register("bad-suffixes", lambda s: s, suffixes=".csv")

    with temporary_plugin(P, name="sloppy"):
        errors = _info("sloppy").errors
        models_err = errors["register_models"]
        assert "sloppy: register('typo-weights', ...): unknown model option 'weight'; did you " \
               "mean 'weights'?" in models_err
        assert "option 'config' must be dict, got str" in models_err
        assert "option 'inputs' item 0 ('x'): shape must be a list of ints" in models_err
        assert "option 'suffixes' must be list or tuple, got str" \
            in errors["register_readers"]
        # the good registration of the same hook still happened
        assert "good-one" in models() and "typo-weights" not in models()
        assert "bad-suffixes" not in readers()


def test_input_steps_and_examples_are_checked_and_followed():
    """``multiple`` (each axis's step) and ``example`` in a model's declared inputs: a
    mistake is an error naming the plugin's item; a good declaration sets the example
    tensors, which task inputs fit, and which request shapes the server accepts."""
    import numpy as np

    from deepseek.loader import example_from_inputs, example_shape, inputs_fit
    from deepseek.serving.protocol import InferenceError, TensorSpec, validate_inputs

    shape = [-1, 1, -1, -1]

    class P:
        @staticmethod
        @hookimpl
        def register_models(register):
            register("steps-short", TinyNet, inputs=[{"name": "x", "shape": shape,
                                                      "multiple": [1, 8]}])
            register("steps-zero", TinyNet, inputs=[{"name": "x", "shape": shape,
                                                     "multiple": [1, 1, 0, 8]}])
            register("steps-fixed", TinyNet, inputs=[{"name": "x", "shape": [-1, 12],
                                                      "multiple": [1, 8]}])
            register("example-off", TinyNet, inputs=[{"name": "x", "shape": shape,
                                                      "multiple": [1, 1, 8, 8],
                                                      "example": [1, 1, 20, 16]}])
            register("example-fixed", TinyNet, inputs=[{"name": "x", "shape": shape,
                                                        "example": [1, 2, 4, 4]}])
            register("stepped", TinyNet, inputs=[{"name": "x", "shape": shape,
                                                  "multiple": [1, 1, 8, 8],
                                                  "example": [1, 1, 24, 32]}])

    with temporary_plugin(P, name="steps"):
        err = _info("steps").errors["register_models"]
        assert "register('steps-short', ...): option 'inputs' item 0 ('x'): multiple must " \
               "be a list of 4 positive ints (1: any size), got [1, 8]" in err
        assert "register('steps-zero', ...)" in err and "got [1, 1, 0, 8]" in err
        assert "register('steps-fixed', ...)" in err and \
               "axis 1 has the fixed size 12, not a multiple of 8" in err
        assert "example [1, 1, 20, 16] does not fit shape [-1, 1, -1, -1] with multiple " \
               "[1, 1, 8, 8]" in err
        assert "example [1, 2, 4, 4] does not fit shape [-1, 1, -1, -1]" in err
        assert "stepped" in models()
        spec = models().entry("stepped").meta["inputs"][0]
        assert example_shape(spec) == [1, 1, 24, 32]                # the declared example
        assert example_shape(spec, 2) == [2, 1, 16, 16]             # free axes at 2 steps
        assert example_shape({"shape": shape}) == [1, 1, 1, 1]      # no steps: 1
        assert tuple(example_from_inputs([spec], "stepped")[0].shape) == (1, 1, 24, 32)
        assert inputs_fit([spec], [{"shape": [-1, 1, 64, -1]}])
        assert not inputs_fit([spec], [{"shape": [-1, 1, 60, -1]}])  # 60 is off the step

    served = [TensorSpec("x", "FP32", shape, [1, 1, 8, 8])]
    for ok in [(1, 1, 8, 16), (3, 1, 64, 8)]:                    # the batch axis is free
        validate_inputs("m", served, {"x": np.zeros(ok, np.float32)}, {"x": "FP32"})
    for bad, said in [((1, 1, 12, 8), "axis 2 must be a positive multiple of 8 .*pad it to 16"),
                      ((1, 1, 8, 0), "axis 3 is empty"),
                      ((0, 1, 8, 8), "axis 0 is empty"),  # an empty batch: nothing to infer
                      ((1, 1, 8, 17), "axis 3 .*pad it to 24")]:
        with pytest.raises(InferenceError, match=said) as info:
            validate_inputs("m", served, {"x": np.zeros(bad, np.float32)}, {"x": "FP32"})
        assert info.value.status == 400
    empty = [TensorSpec("x", "FP32", [-1, -1], [1, 1])]
    with pytest.raises(InferenceError, match="axis 1 is empty; send at least one"):
        validate_inputs("m", empty, {"x": np.zeros((1, 0), np.float32)}, {"x": "FP32"})


def test_missing_and_misfitting_weights(tmp_path):
    small = save_model(TinyNet(hidden=5), tmp_path / "small.safetensors", architecture="x")

    class P:
        @staticmethod
        @hookimpl
        def register_models(register):
            register("no-file", TinyNet, weights=str(tmp_path / "gone.safetensors"))
            register("misfit", TinyNet, config={"hidden": 16}, weights=str(small))

    with temporary_plugin(P, name="weights-plugin"):
        info = _info("weights-plugin", check=True)
        assert f"file {tmp_path / 'gone.safetensors'} does not exist" \
            in info.errors["register_models"]
        assert "no-file" not in models()
        misfit = info.errors["model misfit"]
        assert f"weights {small} do not fit its default config {{'hidden': 16}}" in misfit
        assert "shape of body.0.bias (5,) != (16,), body.0.weight (5, 8) != (16, 8)" in misfit
        with pytest.raises(Exception, match="small.safetensors: weights do not fit"):
            ModelLoader.load("misfit")
        res = CliRunner().invoke(build_cli(), ["plugins", "--json"])
        plugin = next(p for p in json.loads(res.output)["plugins"]
                      if p["name"] == "weights-plugin")
        assert "model misfit" in plugin["errors"]


def test_installed_plugins_weights_fit():
    for info in plugin_infos(check=True):
        if info.name in ("medical", "manufacturing", "finance"):
            assert info.errors == {}, info.errors


def test_demo_survives_a_crashing_pipeline(tiny_plugin, tmp_path):
    from deepseek.report import Headline, PipelineResult

    class Crash:
        @staticmethod
        @hookimpl
        def register_pipelines(register):
            def crash(input=None, out_dir=None, quiet=False):
                return {"cpm": 1 / 0}

            def wrong_type(input=None, out_dir=None, quiet=False):
                return {"cpm": 0.5}

            def goal(input=None, out_dir=None, quiet=False):
                return PipelineResult("test-goal", metrics={"cpm": 0.8},
                                      timings={"seconds": 3.0},
                                      quality=Headline("cpm", 0.8, target=0.9),
                                      speed=Headline("time", 3.0, "s", target=60,
                                                     higher_is_better=False))

            register("test-crash", crash)
            register("test-wrong-type", wrong_type)
            register("test-goal", goal)

    with temporary_plugin(Crash, name="crash-plugin"):
        res = CliRunner().invoke(build_cli(), ["demo", "--only", "test-*", "--out",
                                               str(tmp_path / "demo")])
    assert res.exit_code == 1
    assert "test-crash failed: ZeroDivisionError: division by zero" in res.output
    assert "test-pipeline done" in res.output  # the others ran
    assert "2 of 4 pipelines failed: test-crash, test-wrong-type" in res.output
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    status = {p["pipeline"]: p["status"] for p in summary["pipelines"]}
    assert status == {"test-crash": "failed", "test-goal": "goal missed", "test-pipeline": "ok",
                      "test-wrong-type": "failed"}
    goal = next(p for p in summary["pipelines"] if p["pipeline"] == "test-goal")
    assert goal["quality"]["met"] is False and goal["speed"]["met"] is True
    assert goal["quality"]["goal"] == ">= 0.9" and goal["timings"] == {"seconds": 3.0}
    assert "ZeroDivisionError" in (tmp_path / "demo" / "test-crash" / "error.txt").read_text()
    html = (tmp_path / "demo" / "index.html").read_text()
    assert html.index("<th>pipeline</th><th>status</th>") < html.index("<h2")
    assert "misses &gt;= 0.9" in html and "not a PipelineResult" in html


def test_weights_file_for_a_registry_model(tiny_plugin, tmp_path):
    torch.manual_seed(5)
    other = TinyNet()
    path = save_model(other, tmp_path / "other.safetensors", architecture="test-tiny")
    m = ModelLoader.load("test-tiny", weights=path)
    x = torch.randn(2, 8)
    torch.testing.assert_close(m(x), other(x))
    with pytest.raises(Exception, match="weights= was given with pretrained=False"):
        ModelLoader.load("test-tiny", weights=path, pretrained=False)
    with pytest.raises(Exception, match="apply to registry names"):
        ModelLoader.load(path, pretrained=True)


class _TwoOut(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor]]:
        y = self.a(x)
        return y, (y.sum(dim=1),)


def test_declared_output_names_are_what_the_server_answers_with(caplog):
    """``outputs`` names what a registered model returns (a returned state's tensors
    flattened): the server's metadata and answers use them; a list of anything but names
    is an error naming the plugin's item; a count other than the model returns is served
    under the default names with a warning."""
    import numpy as np

    from deepseek.serving.models import ServedModel

    spec = [{"name": "x", "shape": [-1, 4]}]

    class P:
        @staticmethod
        @hookimpl
        def register_models(register):
            register("named-out", _TwoOut, inputs=spec, outputs=["score", "total"])
            register("outputs-bad", _TwoOut, inputs=spec, outputs=["score", 3])
            register("outputs-off", _TwoOut, inputs=spec, outputs=["score"])

    with temporary_plugin(P, name="outs"):
        err = _info("outs").errors["register_models"]
        assert "register('outputs-bad', ...): option 'outputs' must be a list of non-empty " \
               "strings" in err
        served = ServedModel("m", "named-out", allow_untrained=True)
        assert [o["name"] for o in served.metadata()["outputs"]] == ["score", "total"]
        outs = served([np.ones((3, 4), np.float32)])
        assert served.output_names(len(outs)) == ["score", "total"]
        with caplog.at_level("WARNING", logger="deepseek.serving.models"):
            off = ServedModel("o", "outputs-off", allow_untrained=True)
        assert [o["name"] for o in off.metadata()["outputs"]] == ["output0", "output1"]
        assert "its registration names 1 outputs (score), it returns 2" in caplog.text
