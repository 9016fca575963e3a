"""An edge install (no PyTorch): ONNX models load, run and serve on onnxruntime alone, and
what needs PyTorch says so with the pip command. PyTorch is hidden from a child interpreter
from a child interpreter (``sys.modules["torch"] = None``), as if it were not installed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import torch

from deepseek.loader import ModelLoader, export_onnx, save_model

# None in sys.modules blocks an import, and importlib.util.find_spec reports it missing
NO_TORCH = """
import sys
sys.modules["torch"] = None
"""


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", NO_TORCH + textwrap.dedent(code)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_onnx_serving_without_torch(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh())
    path = export_onnx(net, torch.zeros(1, 4), tmp_path / "model.onnx", input_names=["x"],
                       output_names=["y"])
    # the layout the project's exports write: weights and their ONNX export side by side
    save_model(net, tmp_path / "model.safetensors", architecture="an-unregistered-net")
    x = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 2.0]]
    want = net(torch.tensor(x)).detach().numpy()
    feats = torch.randn(3, 17, generator=torch.Generator().manual_seed(0)).tolist()
    with torch.inference_mode():
        tick_want = ModelLoader.load("tick-mlp").module(torch.tensor(feats)).numpy()
    res = _run(f"""
        import json, sys
        import httpx, numpy as np
        from deepseek.errors import DeepSeekError
        from deepseek.loader import ModelLoader
        from deepseek.serving import DeepSeekServing

        m = ModelLoader.load({str(tmp_path)!r})   # the folder's model.onnx, not .safetensors
        direct = m(np.array({x}, np.float32)).tolist()
        errors = []
        for what, cfg in (("tick-mlp", {{"hidden": [8]}}),
                          ({str(tmp_path / "missing.safetensors")!r}, {{}})):
            try:
                ModelLoader.load(what, **cfg)
            except DeepSeekError as exc:
                errors.append(str(exc))
        packaged = ModelLoader.load("tick-mlp")   # the plugin's packaged ONNX export
        tick = packaged(np.array({feats}, np.float32)).tolist()
        with DeepSeekServing(models={{"net": {str(path)!r}}}, port=0, grpc_port=0,
                             threads=1) as s:
            r = httpx.post(f"http://{{s.http_url}}/v2/models/net/infer", timeout=30, json={{
                "inputs": [{{"name": "x", "shape": [2, 4], "datatype": "FP32",
                             "data": {x}}}]}})
            served = r.json()["outputs"][0]["data"]
            ready = httpx.get(f"http://{{s.http_url}}/v2/health/ready").status_code
        print(json.dumps({{"direct": direct, "served": served, "ready": ready,
                          "errors": errors, "device": str(m.device), "tick": tick,
                          "tick_framework": packaged.framework,
                          "torch_loaded": sys.modules["torch"] is not None or any(
                              k.startswith("torch.") for k in sys.modules)}}))
    """)
    assert not res["torch_loaded"] and res["device"] == "cpu" and res["ready"] == 200
    assert abs(__import__("numpy").array(res["direct"]) - want).max() < 1e-6
    assert abs(__import__("numpy").array(res["served"]).reshape(2, 3) - want).max() < 1e-6
    assert res["tick_framework"] == "onnx"
    assert abs(__import__("numpy").array(res["tick"]) - tick_want).max() < 1e-5
    tick, missing = res["errors"]  # another config than the packaged one needs PyTorch
    assert "tick-mlp" in tick and 'pip install "deepseek-core[torch]"' in tick
    assert "packaged ONNX export serves without it only with the packaged weights" in tick
    assert "no such file" in missing or "torch" in missing


def test_cli_without_torch():
    """The CLI's listing commands work in an edge install; a model that needs PyTorch says
    which extra to install."""
    res = _run("""
        import contextlib, io, json, sys
        from click.testing import CliRunner
        from deepseek.cli import build_cli

        cli = build_cli()

        @cli.command("needs-torch")
        def needs_torch():
            import torch  # noqa: F401

        out = {}
        for args in (["plugins", "--json"], ["models"], ["summary", "tick-mlp"],
                     ["summary", "tick-mlp", "--no-pretrained"], ["needs-torch"]):
            key = " ".join(a for a in args if a != "--json")
            r = CliRunner().invoke(cli, args)
            out[key] = [r.exit_code, r.output, repr(r.exception)]
        print(json.dumps(out))
    """)
    assert res["plugins"][0] == 0, res["plugins"]
    assert all(p["errors"] == {} for p in json.loads(res["plugins"][1])["plugins"])
    assert res["models"][0] == 0 and "tick-mlp" in res["models"][1]
    # the packaged model runs from its ONNX export; another form of it needs PyTorch
    assert res["summary tick-mlp"][0] == 0 and "onnx" in res["summary tick-mlp"][1]
    bare = res["summary tick-mlp --no-pretrained"]
    assert bare[0] != 0 and 'pip install "deepseek-core[torch]"' in bare[1], bare
    # any command that imports PyTorch: the extra to add, not a traceback
    code, output, _ = res["needs-torch"]
    assert code == 2 and 'needs PyTorch' in output and "Traceback" not in output
