"""Model files: safetensors state dicts with their JSON config (built through the registry),
TorchScript archives, ONNX files and, only when trusted, pickled checkpoints; and a folder
holding several of these, of which the install's runtime picks one."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepseek.errors import ModelLoadError, UntrustedPickleError
from deepseek.loader.base import (
    ARCH_META_KEY,
    CONFIG_META_KEY,
    EXTRA_META_KEY,
    LoadOptions,
    detect_format,
    require_torch,
    torch,
)
from deepseek.loader.onnx import load_onnx
from deepseek.loader.wrapper import LoadedModel, wrap_module

log = logging.getLogger(__name__)

#: what a model folder may hold, in the order tried when PyTorch is installed
FOLDER_FILES = ("model.safetensors", "model.onnx", "model.pt")


def pick_in_folder(folder: Path, framework: str = "auto") -> Path:
    """The model file of a folder that this install can run: with PyTorch the first of
    :data:`FOLDER_FILES`; without it (an edge install) ``model.onnx`` (and an error naming
    the pip command when the folder has no ONNX file). ``framework='onnx'`` asks for the
    ONNX file. The choice is logged."""
    present = [folder / n for n in FOLDER_FILES if (folder / n).is_file()]
    if not present:
        raise ModelLoadError(f"{folder}: folder holds no {', '.join(FOLDER_FILES)}; give the "
                             "model file itself")
    onnx_file = folder / "model.onnx"
    want_onnx = framework == "onnx" or torch is None
    if want_onnx and onnx_file not in present:
        # other ONNX files (a plugin's exports: model.still.onnx, model.stream.onnx) are
        # named, to be given by their path: which of them is meant is not for a guess
        others = sorted(p.name for p in folder.glob("*.onnx"))
        them = (f"; give one of its ONNX files by its path: {', '.join(others)}"
                if others else "")
        if framework != "onnx":
            require_torch(f"{folder} (it holds {', '.join(p.name for p in present)} and no "
                          f"model.onnx; without PyTorch only ONNX files load{them})")
        raise ModelLoadError(f"{folder}: framework='onnx' but the folder has no "
                             f"model.onnx{them}")
    chosen = onnx_file if want_onnx else present[0]
    if len(present) > 1:
        log.info("%s holds %s: loading %s (%s)", folder, ", ".join(p.name for p in present),
                 chosen.name, "PyTorch is not installed" if torch is None else "framework="
                 + framework)
    return chosen


def _check_framework(path: Path, kind: str, framework: str) -> None:
    if framework in ("auto", kind) or (framework == "pytorch" and kind in ("safetensors",
                                                                         "pickle")):
        return
    if framework == "onnx":
        raise ModelLoadError(f"{path}: framework='onnx' but the file is {kind}; export it "
                             "with deepseek.loader.export_onnx first")
    raise ModelLoadError(f"{path}: framework={framework!r} but the file is {kind}; use "
                         f"framework='{kind}' or 'auto'")


def load_path(path: Path, opts: LoadOptions) -> LoadedModel:
    """Load a model file (or a folder holding one) with ``opts``."""
    if opts.pretrained is not None or opts.weights is not None:
        raise ModelLoadError(f"{path}: pretrained= and weights= apply to registry names; a "
                             "model file carries its own weights")
    if path.is_dir():
        path = pick_in_folder(path, opts.framework)
    kind = detect_format(path)
    _check_framework(path, kind, opts.framework)
    if kind != "onnx":
        require_torch(f"{path} (a {kind} model file; without PyTorch only .onnx files load)")
    return FILE_LOADERS[kind](path, opts)


def _onnx_file(path: Path, opts: LoadOptions) -> LoadedModel:
    opts.refuse_config(f"{path} (an ONNX file)")
    return load_onnx(path, opts, source=str(path))


def _torchscript_file(path: Path, opts: LoadOptions) -> LoadedModel:
    opts.refuse_config(f"{path} (a TorchScript archive)")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ModelLoadError(f"{path}: TorchScript archive could not be loaded: {exc}") from exc
    return wrap_module(module, "torchscript", opts, source=str(path))


def _safetensors_file(path: Path, opts: LoadOptions) -> LoadedModel:
    from deepseek.loader.registered import build_registered
    from deepseek.plugins import models

    arch, cfg = read_model_config(path)
    arch = opts.architecture or arch
    if not arch and (kind := _plugin_kind(path)):
        raise ModelLoadError(
            f"{path}: a {kind!r} file a plugin wrote for its own commands, not a network's "
            "weights (its header names a kind and no architecture): the loader and the model "
            "server run networks; use it with the plugin command that takes it")
    if not arch:
        raise ModelLoadError(
            f"{path}: no architecture recorded (no {path.with_suffix('.json').name}, no "
            f"config.json, no '{ARCH_META_KEY}' in the header); pass "
            "architecture='<registered model name>'")
    module, cfg = build_registered(arch, pretrained=False, **{**cfg, **opts.config})
    load_safetensors_into(module, path)
    return wrap_module(module, "pytorch", opts, source=str(path), architecture=arch,
                       config=cfg, inputs=models().entry(arch).meta.get("inputs"))


def _pickle_file(path: Path, opts: LoadOptions) -> LoadedModel:
    from deepseek.loader.registered import build_registered

    if not opts.trust_pickle:
        raise UntrustedPickleError(
            f"{path} is a pickled checkpoint; unpickling can run arbitrary code from the "
            "file, so it is refused. Convert it to safetensors (deepseek.loader.save_model) "
            "or, if you trust its source, pass trust_pickle=True (CLI: --trust-pickle)")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelLoadError(f"{path}: could not unpickle: {exc}") from exc
    if isinstance(obj, torch.nn.Module):
        opts.refuse_config(f"{path} (a pickled module)")
        return wrap_module(obj, "pytorch", opts, source=str(path))
    if not isinstance(obj, dict):
        raise ModelLoadError(f"{path}: holds a {type(obj).__name__}, not a model or state dict")
    state = obj.get("state_dict", obj.get("model", obj))
    if not opts.architecture:
        raise ModelLoadError(f"{path} holds a state dict, not a model; pass "
                             "architecture='<registered model name>' to build it")
    module, cfg = build_registered(opts.architecture, pretrained=False, **opts.config)
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelLoadError(f"{path}: state dict does not fit the model: {exc}") from exc
    return wrap_module(module, "pytorch", opts, source=str(path),
                       architecture=opts.architecture, config=cfg)


FILE_LOADERS: dict[str, Callable[[Path, LoadOptions], LoadedModel]] = {
    "onnx": _onnx_file, "torchscript": _torchscript_file, "safetensors": _safetensors_file,
    "pickle": _pickle_file}


def save_model(module: torch.nn.Module, path: str | Path, *, architecture: str,
               config: dict[str, Any] | None = None,
               extra: dict[str, Any] | None = None) -> Path:
    """Save ``module`` as safetensors plus a JSON config naming its registered architecture.

    Writes ``path`` (``.safetensors`` is appended when missing) and ``<stem>.json`` beside it;
    the config is also embedded in the safetensors header, so either file alone identifies the
    model. ``extra`` (JSON-serialisable: an operating threshold, what the model was trained
    on) is stored in both places too; :func:`read_model_extra` reads it. Returns the
    safetensors path.
    """
    from safetensors.torch import save_model as st_save_model

    from deepseek.paths import written_whole

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = dict(config or {})
    json.dumps(cfg)  # fail early on a config that cannot be written
    meta = {ARCH_META_KEY: architecture, CONFIG_META_KEY: json.dumps(cfg)}
    side: dict[str, Any] = {"architecture": architecture, "config": cfg}
    if extra:
        meta[EXTRA_META_KEY] = json.dumps(extra)
        side["extra"] = extra
    with written_whole(path) as tmp:  # a service loading it never sees half of it
        st_save_model(module, str(tmp), metadata=meta)
    with written_whole(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(side, indent=2) + "\n")
    return path


def read_model_extra(path: str | Path) -> dict[str, Any]:
    """The ``extra`` stored by :func:`save_model` (from the safetensors header, which travels
    with the weights, or an ONNX export's metadata, which :func:`~deepseek.loader.onnx.
    stamp_onnx` copies it to); an empty dict when there is none."""
    if Path(path).suffix == ".onnx":
        from deepseek.loader.onnx import onnx_metadata

        meta = onnx_metadata(path)
    else:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
        except Exception as exc:
            raise ModelLoadError(f"{path}: not a readable safetensors file ({exc})") from exc
    try:
        extra = json.loads(meta.get(EXTRA_META_KEY, "{}"))
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path}: header field {EXTRA_META_KEY!r} is not JSON ({exc})"
                             ) from exc
    return extra if isinstance(extra, dict) else {}


def _plugin_kind(path: Path) -> str | None:
    """The ``kind`` a plugin's own model file (a patch memory, a DRAEM pair) records in its
    header's ``deepseek`` metadata, or None."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads((f.metadata() or {}).get("deepseek", "null"))
    except Exception:  # unreadable here: the caller's own error names the file
        return None
    kind = meta.get("kind") if isinstance(meta, dict) else None
    return kind if isinstance(kind, str) else None


def read_model_config(path: str | Path) -> tuple[str | None, dict[str, Any]]:
    """The ``(architecture, config)`` stored with a safetensors file (sidecar JSON or header)."""
    from safetensors import safe_open

    path = Path(path)
    for side in (path.with_suffix(".json"), path.parent / "config.json"):
        if side.is_file():
            try:
                data = json.loads(side.read_text())
            except json.JSONDecodeError as exc:
                raise ModelLoadError(f"{side}: not valid JSON ({exc}); fix or delete it") from exc
            if isinstance(data, dict) and "architecture" in data:
                cfg = data.get("config", {})
                if not isinstance(cfg, dict):
                    raise ModelLoadError(f"{side}: field 'config' must be an object")
                return str(data["architecture"]), cfg
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a readable safetensors file ({exc})") from exc
    cfg = json.loads(meta[CONFIG_META_KEY]) if CONFIG_META_KEY in meta else {}
    return meta.get(ARCH_META_KEY), cfg


def load_safetensors_into(module: torch.nn.Module, path: str | Path) -> None:
    """Load a ``.safetensors`` file into ``module``'s parameters and buffers.

    Raises:
        ModelLoadError: the file is unreadable, or its tensors do not match the module's (the
            missing and unexpected names are listed).
    """
    from safetensors.torch import load_model

    try:
        missing, unexpected = load_model(module, str(path), strict=False)
    except Exception as exc:
        raise ModelLoadError(f"{path}: weights do not fit the model: {exc}") from exc
    if missing or unexpected:
        raise ModelLoadError(f"{path}: weights do not fit the model (missing: "
                             f"{sorted(missing)[:5]}, unexpected: {sorted(unexpected)[:5]})")
