"""Build the four wheels, install them (not editable) into a fresh virtual environment that
reuses the already-installed third-party packages, and check the shared namespace works."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DISTS = {
    "deepseek-core": ROOT / "core",
    "deepseek-medical": ROOT / "plugins" / "medical",
    "deepseek-manufacturing": ROOT / "plugins" / "manufacturing",
    "deepseek-finance": ROOT / "plugins" / "finance",
}

pytestmark = pytest.mark.slow


def _run(cmd, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert res.returncode == 0, f"{cmd}\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    for src in DISTS.values():
        _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
              str(src)])
    return out


#: the serving extra's import packages and their distributions, left out of the partial env
SERVE_PACKAGES = ("starlette", "uvicorn", "grpc", "grpcio", "tritonclient",
                  "prometheus_client", "prometheus-client", "orjson")


def _make_env(base: Path, wheels: Path, requirement: str, leave_out: tuple[str, ...] = ()
              ) -> Path:
    """A fresh virtual environment with ``requirement`` installed from the built wheels.

    Third-party packages of the development environment, minus every trace of the editable
    deepseek installs and minus ``leave_out``, are linked into one folder named by a .pth
    file, so nothing is downloaded."""
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    fresh_site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_path("
                                           "'purelib'))"]).stdout.strip())
    shared = base / "thirdparty"
    shared.mkdir()
    dev_site = Path(sysconfig.get_path("purelib"))
    for entry in dev_site.iterdir():
        low = entry.name.lower()
        if "deepseek" in low or low.startswith("__editable__") or entry.suffix == ".pth":
            continue
        if any(low == p or low.startswith((f"{p}-", f"{p.replace('-', '_')}-"))
               for p in leave_out):
            continue
        (shared / entry.name).symlink_to(entry)
    (fresh_site / "thirdparty.pth").write_text(str(shared) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet", "--no-index",
          "--find-links", str(wheels), requirement])
    return venv


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "DEEPSEEK_LOAD_PLUGINS", "DEEPSEEK_DISABLE_PLUGINS")}


@pytest.fixture(scope="module")
def fresh_env(wheels, tmp_path_factory):
    return _make_env(tmp_path_factory.mktemp("fresh"), wheels, "deepseek-core[all]")


def test_plugin_wheels_do_not_ship_the_namespace_init(wheels):
    found = sorted(p.name for p in wheels.glob("*.whl"))
    assert len(found) == 4, found
    for whl in wheels.glob("*.whl"):
        names = zipfile.ZipFile(whl).namelist()
        has_init = "deepseek/__init__.py" in names
        assert has_init == whl.name.startswith("deepseek_core-"), whl.name
        if not whl.name.startswith("deepseek_core-"):
            plugin = whl.name.split("-")[0].removeprefix("deepseek_")
            assert f"deepseek/{plugin}/plugin.py" in names
            ep = next(n for n in names if n.endswith("entry_points.txt"))
            assert f"{plugin} = deepseek.{plugin}.plugin" in zipfile.ZipFile(whl).read(ep).decode()


def test_core_extras_name_the_plugins(wheels):
    whl = next(wheels.glob("deepseek_core-*.whl"))
    z = zipfile.ZipFile(whl)
    meta = z.read(next(n for n in z.namelist() if n.endswith("METADATA"))).decode()
    for extra in ("medical", "manufacturing", "finance"):
        assert f"Provides-Extra: {extra}" in meta
        assert f"deepseek-{extra}[full]<0.2,>=0.1; extra == '{extra}'" in meta
    assert "Provides-Extra: all" in meta
    # an edge install (serve + ONNX) does not pull PyTorch: torch is its own extra
    torch_reqs = [ln for ln in meta.splitlines() if re.match(r"Requires-Dist: torch\b", ln)]
    extras = {re.search(r"extra == '([^']+)'", ln).group(1) if "extra ==" in ln else None
              for ln in torch_reqs}
    assert "torch" in extras and None not in extras, torch_reqs      # never unconditional
    assert not extras & {"edge", "serve", "onnx"}, torch_reqs
    assert "Provides-Extra: edge" in meta


def test_installed_wheels_share_the_namespace(fresh_env):
    py = fresh_env / "bin" / "python"
    code = (
        "import json, deepseek, deepseek.medical, deepseek.manufacturing, deepseek.finance\n"
        "from deepseek import ModelLoader\n"
        "from click.testing import CliRunner\n"
        "from deepseek.cli import build_cli\n"
        "r = CliRunner().invoke(build_cli(), ['plugins', '--json'])\n"
        "print(json.dumps({'files': {m.__name__: m.__file__ for m in (deepseek, "
        "deepseek.medical, deepseek.manufacturing, deepseek.finance)}, "
        "'plugins': [r.exit_code, r.stdout]}))\n"
    )
    env = _env()
    res = _run([str(py), "-c", code], env=env, cwd=str(fresh_env))
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for name, file in out["files"].items():
        assert file.startswith(str(fresh_env)), f"{name} imported from {file}, not the wheel"
    code, stdout = out["plugins"]
    assert code == 0, stdout
    data = json.loads(stdout)
    plugins = {p["name"]: p for p in data["plugins"]}
    assert set(plugins) >= {"medical", "manufacturing", "finance"}
    assert all(p["errors"] == {} and p["version"] == "0.1.0" for p in plugins.values())


def test_core_and_one_plugin_without_the_serving_extra(wheels, tmp_path_factory):
    """A partial install: deepseek-core + deepseek-finance, no serving packages at all."""
    venv = _make_env(tmp_path_factory.mktemp("partial"), wheels, "deepseek-finance",
                     leave_out=SERVE_PACKAGES)
    commands = [["plugins", "--json"], ["read", "synthetic:?n=300&seed=2", "--json"],
                ["serve", "tick-mlp", "--port", "0"]]
    res = _run([str(venv / "bin" / "python"), "-c", CLI_BATCH, json.dumps(commands)],
               env=_env(), cwd=str(venv))
    (c1, plugins_json, _), (c2, read_json, _), (c3, _, serve_err) = json.loads(
        res.stdout.strip().splitlines()[-1])
    assert c1 == 0 and c2 == 0
    plugins = {p["name"]: p for p in json.loads(plugins_json)["plugins"]}
    # the core registers nothing of its own: only the installed vertical answers
    assert set(plugins) == {"finance"}
    assert plugins["finance"]["errors"] == {}
    assert json.loads(read_json)["records"] == 300
    assert c3 == 2, serve_err
    assert "deepseek serve needs the 'serve' extra" in serve_err
    assert 'pip install "deepseek-core[serve]"' in serve_err and "Traceback" not in serve_err
    # and from the console script itself (its own entry point, not the click group)
    res = subprocess.run([str(venv / "bin" / "deepseek"), "serve", "tick-mlp", "--port", "0"],
                         capture_output=True, text=True, timeout=300, env=_env(),
                         cwd=str(venv))
    assert res.returncode == 2 and "needs the 'serve' extra" in res.stderr
    code = "import starlette"
    res = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True,
                         text=True, timeout=300, env=_env(), cwd=str(venv))
    assert res.returncode != 0 and "starlette" in res.stderr  # truly absent, not hidden


def _readme_plugin(root: Path) -> Path:
    """The example plugin of the documentation (docs/plugins.md), written to ``root`` file by
    file, as a reader would copy it (each block follows a ``<!-- plugin-example: PATH -->``
    line)."""
    text = (ROOT / "docs" / "plugins.md").read_text()
    blocks = re.findall(r"<!-- plugin-example: (\S+) -->\n```\w*\n(.*?)\n```", text, re.S)
    assert {p for p, _ in blocks} == {"pyproject.toml", "src/deepseek_vibration/__init__.py"}
    for path, body in blocks:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(body + "\n")
    return root


#: runs ``deepseek`` commands in one interpreter of an installed environment (one start-up
#: instead of one per command): argv[1] is a JSON list of argument lists; prints, per
#: command, [exit code, stdout, stderr]
CLI_BATCH = """
import json, sys
from click.testing import CliRunner
from deepseek.cli import build_cli
out = []
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(build_cli(), args)
    out.append([r.exit_code, r.stdout, r.stderr])
print(json.dumps(out))
"""


def test_the_readme_plugin_works_everywhere_without_touching_the_core(fresh_env, tmp_path):
    src = _readme_plugin(tmp_path / "deepseek-vibration")
    py, exe, env = str(fresh_env / "bin" / "python"), str(fresh_env / "bin" / "deepseek"), _env()
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--quiet", "--no-index",
          "--no-deps", "--no-build-isolation", str(src)])
    (tmp_path / "w.vib").write_text(" ".join(["0.5"] * 64) + "\n")
    (tmp_path / "pred.csv").write_text("0.9,0.1\n0.2,0.8\n0.3,0.7\n")
    (tmp_path / "ref.csv").write_text("0\n1\n0\n")
    commands = {
        "plugins": ["plugins", "--json"],
        "read": ["read", "vib-synthetic:?n=5", "--json"],
        "read_file": ["read", str(tmp_path / "w.vib"), "--json"],
        "evaluate": ["evaluate", "vib-accuracy", "--pred", str(tmp_path / "pred.csv"),
                     "--ref", str(tmp_path / "ref.csv"), "--json"],
        "run": ["run", "vibration.demo", "--out", str(tmp_path / "run"), "--json"],
        # registered without weights: random outputs, so not served without a word
        "serve_untrained": ["serve", "fault-net", "--port", "0", "--no-grpc"],
    }
    res = _run([py, "-c", CLI_BATCH, json.dumps(list(commands.values()))], env=env,
               cwd=str(tmp_path))
    out = dict(zip(commands, json.loads(res.stdout.strip().splitlines()[-1])))
    for name, (code, stdout, stderr) in out.items():
        if name != "serve_untrained":
            assert code == 0, (name, stdout, stderr)
    plugins = {p["name"]: p for p in json.loads(out["plugins"][1])["plugins"]}
    vib = plugins["vibration"]
    assert vib["errors"] == {} and vib["models"] == ["fault-net"]
    assert vib["readers"] == ["vibration"] and vib["pipelines"] == ["vibration.demo"]
    # open
    assert json.loads(out["read"][1])["reader"] == "vibration"
    assert json.loads(out["read_file"][1])["reader"] == "vibration"
    # evaluate
    assert json.loads(out["evaluate"][1])["result"]["accuracy"] == pytest.approx(2 / 3)
    # run
    scores = json.loads(out["run"][1])["metrics"]
    assert scores["accuracy"] > scores["majority"]  # it learned the fault tone
    # (``demo --only`` over a plugin's pipelines: tests/core/test_plugin_authors.py)
    code, _, stderr = out["serve_untrained"]
    assert code == 2 and "--allow-untrained" in stderr
    # serve: the first stdout line says where; one inference through REST
    import httpx

    trained = f"fault-net={tmp_path / 'run' / 'fault-net.safetensors'}"
    proc = subprocess.Popen([exe, "serve", trained, "--port", "0", "--grpc-port", "0",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=str(tmp_path))
    try:
        line = proc.stdout.readline()  # printed once both protocols accept requests
        assert line, proc.stderr.read()
        info = json.loads(line)
        assert info["models"]["fault-net"]["inputs"][0]["shape"] == [-1, 64]
        body = {"inputs": [{"name": "window", "shape": [2, 64], "datatype": "FP32",
                            "data": [0.1] * 128}]}
        r = httpx.post(f"{info['rest']}/v2/models/fault-net/infer", json=body, timeout=60)
        assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [2, 2]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


#: what the edge installs must do without: PyTorch, the ONNX tools, matplotlib, SimpleITK,
#: OpenCV
EDGE_ABSENT = ("torch", "onnx", "onnxconverter-common", "matplotlib", "simpleitk", "cv2",
               "opencv-python-headless", "opencv_python_headless.libs", "tritonclient")

EDGE_CHECK = """
import importlib.util, json, os, sys
import numpy as np
absent = {m: importlib.util.find_spec(m) is None
          for m in ("torch", "onnx", "matplotlib", "SimpleITK", "cv2", "tritonclient")}
from deepseek.extras import missing
serve_missing = missing("serve")
from click.testing import CliRunner
from deepseek.cli import build_cli
from deepseek.loader import ModelLoader
from deepseek.medical import DICOMReader, NoduleDetector
vol = DICOMReader(sys.argv[2], progress=False).load()
det = NoduleDetector(progress=False, tta_top=1, tta_crop=16, window=32, overlap=8)
cands = det.detect(vol, series_uid="s")
tick = ModelLoader.load("tick-gru")
logits = tick(np.zeros((1, 5, 17), np.float32))
from deepseek.manufacturing.stream import load_net
still = load_net("defect-3dcnn-lstm").still_frames  # the still-photo export shipped too
cli, run = build_cli(), CliRunner().invoke
cmds = {"plugins": ["plugins", "--json"],
        "backtest": ["finance", "backtest", "synthetic:?n=4000&seed=1", "--json"],
        "score": ["manufacturing", "score", sys.argv[3], "--json"],
        "score_export": ["manufacturing", "score", sys.argv[3], "--model", sys.argv[4],
                         "--json"],
        "score_memory": ["manufacturing", "score", sys.argv[3], "--model", sys.argv[5],
                         "--json"],
        "stream": ["manufacturing", "stream", "line.mp4", "--max-frames", "40", "--json"],
        "train": ["medical", "train", "--out", sys.argv[1]]}
out = {}
for k, args in cmds.items():
    r = run(cli, args)
    out[k] = [r.exit_code, r.stdout, r.stderr]
# a camera's folder watched (score --watch's loop) with its state, twice: started again,
# nothing is scored twice; its model loaded again as SIGHUP does, before the first photo
from deepseek.manufacturing.score import Scorer
from deepseek.manufacturing.watch import watch_folder
watched, again = [], [Scorer(sys.argv[4])]
for _ in range(2):
    watch_folder(Scorer(sys.argv[4]), sys.argv[3], watched.append,
                 state=sys.argv[1] + "-watch.jsonl", changes=iter([set()]),
                 reload=lambda: again.pop() if again else None)
watched = [[os.path.basename(r.path), r.score, r.model_sha256] for r in watched]
reloaded = not again
# the photo decision served: part0.png (64 x 96, all 120) over REST
import urllib.request
from deepseek.serving import DeepSeekServing
photo = sys.argv[4].replace(".stream.onnx", ".photo.onnx")
body = json.dumps({"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 64, 96],
                               "data": [120] * (64 * 96)}]}).encode()
# and part0.png's file as it is (BYTES, binary data), decoded by the plugin's reader
png = open(os.path.join(sys.argv[3], "part0.png"), "rb").read()
blob = len(png).to_bytes(4, "little") + png
head = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                               "parameters": {"binary_data_size": len(blob)}}]}).encode()
with DeepSeekServing(models={"line": photo}, port=0, grpc_port=None, calibrate=False) as s:
    req = urllib.request.Request(f"http://{s.http_url}/v2/models/line/infer", data=body,
                                 headers={"Content-Type": "application/json"})
    served = json.loads(urllib.request.urlopen(req, timeout=60).read())
    req = urllib.request.Request(f"http://{s.http_url}/v2/models/line/infer", data=head + blob,
                                 headers={"Inference-Header-Content-Length": str(len(head))})
    as_file = json.loads(urllib.request.urlopen(req, timeout=60).read())
print(json.dumps({"absent": absent, "serve_missing": serve_missing,
                  "backend": det.net.name, "candidates": len(cands),
                  "tick": [tick.framework, list(logits.shape)], "still": still,
                  "served": {o["name"]: o["data"] for o in served["outputs"]},
                  "as_file": {o["name"]: o["data"] for o in as_file["outputs"]}, "cli": out,
                  "watched": watched, "reloaded": reloaded}))
"""


def test_edge_installs_run_inference_without_torch(wheels, tmp_path_factory, tmp_path):
    """The verticals' edge forms from the built wheels, in an environment with no PyTorch,
    no ONNX tools, no matplotlib, no SimpleITK and no OpenCV: the packaged exports ship in
    the wheels and run; a DICOM series is read and searched, part images are scored."""
    from PIL import Image

    from deepseek.manufacturing.runtime import FRAMES
    from deepseek.medical.synthetic import write_phantom

    venv = _make_env(tmp_path_factory.mktemp("edge"), wheels, "deepseek-core[edge-all]",
                     leave_out=EDGE_ABSENT)
    py, env = str(venv / "bin" / "python"), _env()
    ct = write_phantom(tmp_path / "ct", size=96, slices=12, slice_step=2.5, pixel_spacing=1.5,
                       n_nodules=2, seed=700_005).out_dir
    (tmp_path / "parts").mkdir()
    for i in range(2):
        Image.fromarray(np.full((64, 96), 120 + 40 * i, np.uint8)).save(
            tmp_path / "parts" / f"part{i}.png")
    (tmp_path / "line.mp4").write_bytes(b"\0" * 64)  # opened only to ask for OpenCV
    # trained weights' export, given by its own path: what training stored travels with it
    from deepseek.loader import ModelLoader, save_model
    from deepseek.manufacturing.model import write_stream_onnx

    net = ModelLoader.load("defect-3dcnn-lstm", device="cpu")
    trained = save_model(net.module, tmp_path / "run" / "model.safetensors",
                         architecture="defect-3dcnn-lstm", config=net.config,
                         extra={"threshold": 0.3125, "views": 1})
    export = write_stream_onnx(trained)
    # a good-parts memory and its photo decision, which the edge form scores it with
    from deepseek.manufacturing.anomaly import fit_memory, write_memory_onnx
    from deepseek.manufacturing.score import Scorer

    rng = np.random.default_rng(7)
    (tmp_path / "good").mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(100, 160, (64, 96), dtype=np.uint8)).save(
            tmp_path / "good" / f"g{i}.png")
    memory = fit_memory(tmp_path / "good", folds=2, progress=False).save(
        tmp_path / "mem" / "memory.safetensors")
    write_memory_onnx(memory)
    want_memory = [Scorer(memory, backend="onnxruntime").score(tmp_path / "parts" / p).score
                   for p in ("part0.png", "part1.png")]
    res = json.loads(_run([py, "-c", EDGE_CHECK, str(tmp_path / "t"), str(ct),
                           str(tmp_path / "parts"), str(export), str(memory)], env=env,
                          cwd=str(tmp_path)).stdout.strip().splitlines()[-1])
    assert all(res["absent"].values()), res["absent"]  # truly absent, not hidden
    assert res["serve_missing"] == []  # the server needs nothing the edge form lacks
    assert res["backend"] == "onnxruntime" and 0 < res["candidates"] <= 100
    assert res["tick"] == ["onnx", [1, 5, 3]]
    assert res["still"] == FRAMES  # photos run through the still-photo export
    cli = res["cli"]
    assert all(c[0] == 0 for k, c in cli.items() if k not in ("train", "stream")), cli
    assert all(p["errors"] == {} for p in json.loads(cli["plugins"][1])["plugins"])
    out = json.loads(cli["backtest"][1])
    assert out["rows"] == 4000 and "tick-mlp|500 µs" in out["results"]  # the fast path ran
    assert out["results"]["tick-mlp|500 µs"]["fills"] > 0
    scored = json.loads(cli["score"][1])
    assert [Path(r["path"]).name for r in scored] == ["part0.png", "part1.png"]
    by_export = json.loads(cli["score_export"][1])
    assert [r["threshold"] for r in by_export] == [0.3125] * 2
    # a good-parts memory scored through its photo decision (before: "needs PyTorch")
    by_memory = json.loads(cli["score_memory"][1])
    assert [r["score"] for r in by_memory] == pytest.approx(want_memory, abs=1e-5)
    # the photo decision served in the edge install decides as score does
    assert res["served"]["score"][0] == pytest.approx(by_export[0]["score"], abs=1e-5)
    assert res["served"]["defect"] == [by_export[0]["defect"]]
    assert res["served"]["threshold"] == [pytest.approx(0.3125)]
    assert res["as_file"]["score"] == [pytest.approx(by_export[0]["score"], abs=1e-5)]
    # score --watch's loop on the edge install scores the folder as score does, once
    assert [w[0] for w in res["watched"]] == ["part0.png", "part1.png"]
    assert [w[1] for w in res["watched"]] == pytest.approx([r["score"] for r in by_export],
                                                           abs=1e-6)
    # each result names the weights the export was made from, whichever path scored it
    assert res["reloaded"] and {w[2] for w in res["watched"]} == \
        {r["model_sha256"] for r in by_export} != {None}
    # a video needs OpenCV, which the edge form leaves out: the extra is named
    code, _, err = cli["stream"]
    assert code == 2 and 'pip install "deepseek-manufacturing[video]"' in err, cli["stream"]
    # training needs PyTorch, and says which extra brings it
    code, _, err = cli["train"]
    assert code == 2 and 'pip install "deepseek-medical[full]"' in err and "Traceback" not in err
