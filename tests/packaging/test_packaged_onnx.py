"""Every packaged model ships an ONNX export beside its weights (what an edge install runs):
exported from exactly those weights, and computing what the PyTorch model computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deepseek.loader import (
    SOURCE_META_KEY,
    ModelLoader,
    file_sha256,
    onnx_metadata,
    packaged_onnx,
)
from deepseek.plugins import models

PACKAGED = sorted(n for n in models().names(providers=False)
                  if models().entry(n).meta.get("weights"))
GENERIC = [n for n in PACKAGED if models().entry(n).meta.get("onnx_export") is None]


def test_every_packaged_model_has_a_current_export():
    assert set(PACKAGED) >= {"lung-nodule-attention", "defect-3dcnn-lstm", "tick-mlp",
                             "tick-gru"}
    for name in PACKAGED:
        weights = models().entry(name).meta["weights"]
        stem = Path(weights).name.removesuffix(".safetensors")
        exports = sorted(Path(weights).parent.glob(stem + "*.onnx"))
        assert exports, f"{name}: no ONNX export beside {weights}; run deepseek export-onnx"
        for path in exports:
            # stale: the weights changed since; run `deepseek export-onnx NAME`
            assert onnx_metadata(path)[SOURCE_META_KEY] == file_sha256(weights), path


@pytest.mark.parametrize("name", GENERIC)
def test_generic_exports_equal_pytorch(name):
    entry = models().entry(name)
    assert packaged_onnx(name) is not None
    edge = ModelLoader.load(name, framework="onnx")  # the shipped file, no export step
    assert edge.onnx_path == packaged_onnx(name)
    full = ModelLoader.load(name)
    gen = torch.Generator().manual_seed(3)
    free = 20 if name == "lung-nodule-attention" else 5  # the 3-D net: multiples of 4
    x = [torch.rand([free if d < 0 else d for d in spec["shape"]], generator=gen)
         for spec in entry.meta["inputs"]]
    with torch.inference_mode():
        want = full.module(*x)
    want = list(want.values()) if isinstance(want, dict) else [want]
    got = edge(*[t.numpy() for t in x])
    got = list(got) if isinstance(got, tuple) else [got]
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-4 * max(1.0, float(w.abs().max())))


@pytest.mark.parametrize("name", GENERIC)
def test_generic_exports_are_the_exporters_graphs_now(name, tmp_path):
    """Current with the exporter too, not only with the weights: an export from older model
    code (a layer computed another way) keeps its weights' sha256 and would still load. A
    failure here means the model's forward changed: run deepseek export-onnx NAME."""
    import collections

    import onnx

    from deepseek.loader.packaged import export_packaged_onnx

    # traced and checked at small free sizes: the graph's operators do not depend on them
    # (the nodule detector at the defaults, 16 volumes of 64^3, takes seconds)
    fresh = export_packaged_onnx(name, out=tmp_path / f"{name}.onnx", free=(2, 3))
    ops = [collections.Counter(n.op_type for n in onnx.load(str(p)).graph.node)
           for p in (packaged_onnx(name), fresh)]
    assert ops[0] == ops[1]


def test_a_plugins_own_exporter_is_not_sent_elsewhere(tmp_path):
    from deepseek.errors import ModelLoadError
    from deepseek.loader.packaged import export_packaged_onnx

    with pytest.raises(ModelLoadError, match="own ONNX exporter"):
        export_packaged_onnx("defect-3dcnn-lstm", out=tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_a_stale_packaged_export_is_refused(monkeypatch):
    import deepseek.loader.packaged as packaged
    from deepseek.errors import ModelLoadError

    monkeypatch.setattr(packaged, "file_sha256", lambda path: "0" * 64)  # the weights changed
    with pytest.raises(ModelLoadError, match="stale export.*deepseek export-onnx tick-mlp"):
        ModelLoader.load("tick-mlp", framework="onnx")
