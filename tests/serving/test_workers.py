"""`deepseek serve --workers K`: K processes behind one pair of ports, metrics summed."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg


@pytest.mark.slow
def test_two_workers_share_the_ports_and_their_metrics():
    cmd = [sys.executable, "-m", "deepseek.cli", "serve", "tick-mlp", "--port", "0",
           "--grpc-port", "0", "--workers", "2", "--threads", "1", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # printed once both workers accept requests
        assert line, proc.stderr.read()
        info = json.loads(line)
        assert info["workers"] == 2 and len(set(info["pids"])) == 2 and info["threads"] == 1
        body = {"inputs": [{"name": "features", "shape": [1, 17], "datatype": "FP32",
                            "data": [0.0] * 17}]}
        for _ in range(10):  # a new connection each: the kernel spreads them
            r = httpx.post(f"{info['rest']}/v2/models/tick-mlp/infer", json=body, timeout=60)
            assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [1, 3]
        c = tg.InferenceServerClient(info["grpc"])
        inp = tg.InferInput("features", [2, 17], "FP32")
        inp.set_data_from_numpy(np.zeros((2, 17), np.float32))
        assert c.infer("tick-mlp", [inp]).as_numpy("output").shape == (2, 3)
        text = httpx.get(f"{info['rest']}/metrics", timeout=30).text
        counts = re.findall(r'deepseek_requests_total\{model="tick-mlp",protocol="(\w+)"\} '
                            r'([0-9.]+)', text)
        assert dict(counts) == {"rest": "10.0", "grpc": "1.0"}, text  # summed over workers
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
