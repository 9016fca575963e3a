"""The container image (Dockerfile, `make image`): its configuration, and a smoke test of the
edge image. Containers cannot run here, so the image is mounted (`podman image mount`) and its
entrypoint runs under chroot on the host's loopback: health, metadata and an inference with
tritonclient over both protocols. Runs when podman and mmdebstrap are installed, as root, and
the image has been built with `make image` (building takes minutes, so the suite does not)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest

from deepseek import __version__

#: the image to check, as `make image` tags it (DEEPSEEK_IMAGE=deepseek/framework:0.1.0-full
#: checks the full one, ...-edge-all the edge one with the verticals)
IMAGE = os.environ.get("DEEPSEEK_IMAGE", f"deepseek/framework:{__version__}-edge")


def _need_image():
    missing = [t for t in ("podman", "mmdebstrap", "chroot", "mount") if not shutil.which(t)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (the image is built from Debian packages with "
                    "mmdebstrap and podman)")
    if os.geteuid() != 0:
        pytest.skip("mounting the image and chroot need root")
    if subprocess.run(["podman", "image", "exists", IMAGE]).returncode != 0:
        pytest.skip(f"no {IMAGE} image: build it with `make image`")


def _inspect():
    out = subprocess.run(["podman", "image", "inspect", IMAGE, "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _mounted(models):
    root = subprocess.run(["podman", "image", "mount", IMAGE], capture_output=True, text=True,
                          check=True).stdout.strip()
    mounts = []
    try:
        for args, target in ((["--bind", "/dev"], "dev"), (["-t", "proc", "proc"], "proc"),
                             (["-t", "tmpfs", "tmpfs"], "tmp"),
                             (["--bind", str(models)], "mnt/models")):
            subprocess.run(["mount", *args, os.path.join(root, target)], check=True)
            mounts.append(os.path.join(root, target))
        yield root
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", m])
        subprocess.run(["podman", "image", "unmount", IMAGE], capture_output=True)


def test_image_configuration():
    _need_image()
    info = _inspect()
    cfg = info["Config"]
    assert cfg["Entrypoint"] == ["deepseek"]
    assert cfg["Cmd"][:2] == ["serve", "/mnt/models"]
    assert cfg["User"] not in ("", "0", "root")
    check = info.get("Healthcheck") or cfg.get("Healthcheck")  # docker-format images only
    assert check and "/v2/health/ready" in " ".join(check["Test"])
    assert {"8080/tcp", "8081/tcp"} <= set(cfg["ExposedPorts"])


def test_edge_image_serves_an_onnx_model(tmp_path):
    _need_image()
    import httpx
    import torch
    import tritonclient.grpc as tg
    import tritonclient.http as th

    from deepseek.loader import export_onnx

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh())
    models = tmp_path / "models"
    models.mkdir()
    export_onnx(net, torch.zeros(1, 4), models / "model.onnx", input_names=["x"],
                output_names=["y"])
    os.chmod(models, 0o755)
    os.chmod(models / "model.onnx", 0o644)
    x = np.array([[1, 2, 3, 4], [0.5, -1, 0, 2]], np.float32)
    want = net(torch.from_numpy(x)).detach().numpy()
    cfg = _inspect()["Config"]
    http_port, grpc_port = _free_port(), _free_port()
    env = {"PATH": "/opt/deepseek/bin:/usr/bin:/bin", "HOME": "/tmp"}
    user = cfg["User"]
    with _mounted(models) as root:
        chroot = shutil.which("chroot")
        cmd = [chroot, f"--userspec={user}:{user}", root, *cfg["Entrypoint"], *cfg["Cmd"],
               "--name", "net", "--host", "127.0.0.1", "--port", str(http_port),
               "--grpc-port", str(grpc_port)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            base = f"http://127.0.0.1:{http_port}"
            deadline = time.monotonic() + 120
            while True:  # poll the readiness endpoint until the server is up (a deadline)
                assert proc.poll() is None, proc.stderr.read()
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/v2/health/ready", timeout=2).status_code == 200:
                        break
                assert time.monotonic() < deadline, "the image's server did not start"
                time.sleep(0.2)
            meta = httpx.get(f"{base}/v2/models/net", timeout=10).json()
            assert meta["platform"].startswith("onnx") and meta["inputs"][0]["name"] == "x"
            inp = th.InferInput("x", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            got = th.InferenceServerClient(f"127.0.0.1:{http_port}").infer("net", [inp])
            np.testing.assert_allclose(got.as_numpy("y"), want, atol=1e-6)
            ginp = tg.InferInput("x", list(x.shape), "FP32")
            ginp.set_data_from_numpy(x)
            got = tg.InferenceServerClient(f"127.0.0.1:{grpc_port}").infer("net", [ginp])
            np.testing.assert_allclose(got.as_numpy("y"), want, atol=1e-6)
            # the edge image has no PyTorch, the full one has it
            out = subprocess.run([chroot, f"--userspec={user}:{user}", root,
                                  "/opt/deepseek/bin/python", "-c",
                                  "import importlib.util as u; print(u.find_spec('torch'))"],
                                 env=env, capture_output=True, text=True, check=True)
            assert (out.stdout.strip() == "None") == (not IMAGE.endswith("-full")), out.stdout
            if IMAGE.endswith("-edge-all"):  # the verticals' packaged models, no PyTorch
                code = ("import json; from deepseek.loader import ModelLoader; print(json.dumps("
                        "[ModelLoader.load(n).framework for n in ('lung-nodule-attention', "
                        "'tick-mlp', 'tick-gru')]))")
                out = subprocess.run([chroot, f"--userspec={user}:{user}", root,
                                      "/opt/deepseek/bin/python", "-c", code], env=env,
                                     capture_output=True, text=True, check=True)
                assert json.loads(out.stdout) == ["onnx"] * 3, out.stdout
        finally:
            proc.terminate()
            proc.wait(timeout=60)
