"""Packaged exports: the ONNX file a plugin ships beside its packaged weights
(``<weights>.onnx`` next to ``<weights>.safetensors``), stamped with the weights' sha256, so
an install without PyTorch runs the same model; a stale export is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepseek.errors import ModelLoadError
from deepseek.loader.base import SOURCE_META_KEY, LoadOptions, file_sha256, require_torch, torch
from deepseek.loader.onnx import export_onnx, load_onnx, stamp_onnx
from deepseek.loader.wrapper import LoadedModel
from deepseek.registry import Entry


def packaged_onnx(name: str | Entry) -> Path | None:
    """The ONNX export a plugin ships beside registry model ``name``'s packaged weights, or
    ``None``."""
    from deepseek.plugins import models

    entry = name if isinstance(name, Entry) else models().entry(name)
    weights = entry.meta.get("weights")
    if not weights:
        return None
    path = Path(weights).with_suffix(".onnx")
    return path if path.is_file() else None


def load_packaged(entry: Entry, path: Path, opts: LoadOptions) -> LoadedModel:
    """The packaged export ``path`` of registry ``entry``, refused when it was not exported
    from the weights beside it."""
    loaded = load_onnx(path, opts, source=entry.name)
    recorded = loaded.session.get_modelmeta().custom_metadata_map.get(SOURCE_META_KEY)
    if recorded != file_sha256(entry.meta["weights"]):
        raise ModelLoadError(
            f"model {entry.name!r}: {path} was not exported from the packaged weights "
            f"beside it (a stale export); reinstall the plugin, or rewrite it with "
            f"`deepseek export-onnx {entry.name}` where PyTorch is installed")
    loaded.architecture, loaded.inputs = entry.name, entry.meta.get("inputs")
    loaded.config = dict(entry.meta.get("config") or {})
    return loaded


def _examples(inputs: list[dict[str, Any]], n: int, gen: Any) -> tuple:
    from deepseek.loader.registered import example_shape

    out = []
    for spec in inputs:
        shape = example_shape(spec, n)
        dtype = getattr(torch, spec.get("dtype", "float32"))
        out.append(torch.rand(shape, generator=gen).to(dtype) if dtype.is_floating_point
                   else torch.zeros(shape, dtype=dtype))
    return tuple(out)


def _flat(out: Any) -> tuple[list[str], list[Any]]:
    if isinstance(out, dict):
        return list(out), list(out.values())
    if isinstance(out, (tuple, list)):
        return [f"output{i}" for i in range(len(out))], list(out)
    return ["output"], [out]


def _verify(path: Path, name: str, feeds: dict[str, Any], names: list[str], wants: list[Any],
            atol: float) -> None:
    from deepseek.extras import require

    require("runtime", "checking the ONNX export")
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, feeds)
    for n, want, have in zip(names, wants, got):
        want = want.float().numpy()
        err = float(np.abs(have - want).max()) if want.size else 0.0
        scale = max(1.0, float(np.abs(want).max()) if want.size else 0.0)
        if have.shape != want.shape or err > atol * scale:
            path.unlink()
            raise ModelLoadError(f"model {name!r}: the ONNX export's {n!r} differs from PyTorch "
                                 f"(shape {have.shape} vs {want.shape}, max error {err:.3g})")


def export_packaged_onnx(name: str, free: tuple[int, int] = (8, 16), atol: float = 1e-4,
                         out: str | Path | None = None) -> Path:
    """Write the ONNX export of registry model ``name``'s packaged weights beside them
    (``<weights>.onnx``, stamped with their sha256: :func:`stamp_onnx`), so an install
    without PyTorch runs it. For plugin maintainers, after new weights. ``out`` writes the
    export elsewhere (a test compares it with the shipped one); a plugin's own exporter
    writes where it writes, so ``out`` is refused for those.

    A plugin may register its own exporter (``onnx_export=``, called with the weights path,
    returning the written path). Otherwise the model is traced from its declared ``inputs``
    with each free dimension (-1) set to ``free[0]``; those dimensions, and every output
    dimension that follows them (found by a second run at ``free[1]``), stay free in the
    graph. The export is checked against the PyTorch model at ``free[1]`` (largest absolute
    difference <= ``atol`` times the outputs' scale) before it is stamped."""
    from deepseek.loader.registered import build_registered
    from deepseek.plugins import models

    require_torch("exporting a model to ONNX")
    entry = models().entry(name)
    weights = entry.meta.get("weights")
    if not weights:
        raise ModelLoadError(f"model {name!r} has no packaged weights to export")
    if entry.meta.get("onnx_export") is not None:
        if out is not None:
            raise ModelLoadError(f"model {name!r} has its plugin's own ONNX exporter, which "
                                 "writes beside the weights: leave out= out")
        return Path(entry.meta["onnx_export"](weights))
    inputs = entry.meta.get("inputs")
    if not inputs:
        raise ModelLoadError(f"model {name!r} declares no inputs; it cannot be traced")
    module, cfg = build_registered(name)
    module.eval()
    gen = torch.Generator().manual_seed(0)
    ex_a, ex_b = _examples(inputs, free[0], gen), _examples(inputs, free[1], gen)
    with torch.inference_mode():
        names, outs_a = _flat(module(*ex_a))
        _, outs_b = _flat(module(*ex_b))
    in_names = [spec["name"] for spec in inputs]
    axes = {spec["name"]: {i: f"{spec['name']}_{i}" for i, d in enumerate(spec["shape"])
                           if int(d) < 0} for spec in inputs}
    for n, a, b in zip(names, outs_a, outs_b):
        axes[n] = {i: f"{n}_{i}" for i, (x, y) in enumerate(zip(a.shape, b.shape)) if x != y}
    path = Path(out) if out is not None else Path(weights).with_suffix(".onnx")
    export_onnx(module, ex_a, path, input_names=in_names, output_names=names,
                dynamic_axes=axes)
    _verify(path, name, {n: x.numpy() for n, x in zip(in_names, ex_b)}, names, outs_b, atol)
    return stamp_onnx(path, weights, name, cfg)
