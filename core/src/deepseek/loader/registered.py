"""Registry names: a plugin's model built with its default config (updated by the caller's)
and its packaged weights, or its packaged ONNX export without PyTorch; a zoo architecture;
and the input layouts training commands use to pick models that fit a task."""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

from deepseek import contracts
from deepseek.errors import ModelLoadError, UnknownNameError
from deepseek.loader.base import LOAD_KEYWORDS, LoadOptions, require_torch, torch
from deepseek.loader.files import load_safetensors_into
from deepseek.loader.onnx import export_onnx, load_onnx
from deepseek.loader.packaged import load_packaged, packaged_onnx
from deepseek.loader.wrapper import LoadedModel, wrap_module
from deepseek.registry import Entry

log = logging.getLogger(__name__)


def check_config(entry: Entry, config: dict[str, Any]) -> None:
    """Refuse config keys the builder of ``entry`` does not take, with the closest name
    (ModelLoader.load's own keywords included: ``precison`` -> ``precision``)."""
    if not config:
        return
    try:
        sig = contracts.signature(entry.obj, resolve=True)
    except (contracts.Unknown, ValueError):
        return
    problem = contracts.config_problem(sig, config, also=LOAD_KEYWORDS)
    if problem:
        raise ModelLoadError(f"model {entry.name!r} ({entry.plugin}): {problem}")


def build(name: str, pretrained: bool | None = None, weights: str | Path | None = None,
          config: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any], bool]:
    """Build registry model ``name``: ``(module, full config, trained)``; see
    :func:`build_registered`. ``trained`` is False when the weights are random."""
    from deepseek.plugins import models

    config = dict(config or {})
    entry = models().entry(name)
    if entry.meta.get("zoo"):
        from deepseek.loader import zoo

        return zoo.build(entry.meta["architecture"], pretrained=bool(pretrained),
                         weights=weights, **config)
    check_config(entry, config)
    cfg = {**(entry.meta.get("config") or {}), **config}
    try:
        module = entry.obj(**cfg)
    except TypeError as exc:
        raise ModelLoadError(f"model {name!r}: bad config {config}: {exc}") from exc
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"model {name!r}: its builder returned {type(module).__name__}, "
                             f"not a torch.nn.Module (a bug in plugin {entry.plugin})")
    if weights is not None:
        if pretrained is False:
            raise ModelLoadError(f"model {name!r}: weights= was given with pretrained=False")
        load_safetensors_into(module, weights)
        return module, cfg, True
    packaged = entry.meta.get("weights")
    if pretrained is not False and packaged:
        _load_packaged_weights(name, module, Path(packaged))
        return module, cfg, True
    if pretrained is None:
        log.warning("model %r (%s) has no trained weights: it is built with random weights, "
                    "so its outputs mean nothing until it is trained", name, entry.plugin)
    return module, cfg, False


def _load_packaged_weights(name: str, module: Any, packaged: Path) -> None:
    if not packaged.is_file():
        raise ModelLoadError(f"model {name!r}: packaged weights {packaged} are missing; "
                             "reinstall the plugin or pass pretrained=False")
    try:
        load_safetensors_into(module, packaged)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{exc}; the packaged weights fit the default config only - "
                             "pass pretrained=False to build with new settings") from None


def build_registered(name: str, pretrained: bool | None = None,
                     weights: str | Path | None = None,
                     **config: Any) -> tuple[Any, dict[str, Any]]:
    """Build registry model ``name`` with its default config updated by ``config``.

    A plugin model loads its packaged weights unless ``pretrained`` is False (``weights``
    replaces them); a zoo model is random unless ``pretrained`` is True. Returns the
    module and the full config used. Config keys the builder does not take are refused.
    """
    module, cfg, _ = build(name, pretrained, weights, config)
    return module, cfg


def _entry(name: str) -> Entry:
    from deepseek.plugins import models

    registry = models()
    path = Path(name)
    if name not in registry and (path.suffix or "/" in name or "\\" in name):
        raise ModelLoadError(f"{name}: no such file, and not a registered model name "
                             "(`deepseek models` lists the names)")
    try:
        return registry.entry(name)
    except UnknownNameError as exc:
        raise ModelLoadError(str(exc) + " (or give the path of a model file)") from None


def load_name(name: str, opts: LoadOptions) -> LoadedModel:
    """Load registry model ``name`` (or ``plugin:name``) with ``opts``."""
    entry = _entry(name)
    inputs = entry.meta.get("inputs")
    shipped = packaged_onnx(entry)
    as_packaged = (shipped is not None and opts.pretrained in (None, True)
                   and opts.weights is None and not opts.config)
    if as_packaged and (torch is None or opts.framework == "onnx"):
        return load_packaged(entry, shipped, opts)  # no PyTorch, no export step
    require_torch(f"model {name!r} (a registered model is built with PyTorch"
                  + ("; its packaged ONNX export serves without it only with the packaged "
                     "weights and default config" if shipped is not None else
                     "; an edge install serves .onnx files") + ")")
    module, cfg, trained = build(name, opts.pretrained, opts.weights, opts.config)
    if opts.framework in ("auto", "pytorch", "safetensors"):
        return wrap_module(module, "pytorch", opts, source=name, architecture=name,
                           config=cfg, inputs=inputs, trained=trained)
    return _converted(module.eval(), name, cfg, inputs, trained, opts)


def _converted(module: Any, name: str, cfg: dict[str, Any], inputs: Any, trained: bool,
               opts: LoadOptions) -> LoadedModel:
    """A registry model traced to TorchScript or exported to ONNX from its declared inputs."""
    example = example_from_inputs(inputs, name)
    if opts.framework == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.trace(module, example)
        return wrap_module(scripted, "torchscript", opts, source=name, architecture=name,
                           config=cfg, inputs=inputs, trained=trained)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(module, example, Path(tmp) / f"{name.replace(':', '_')}.onnx",
                                input_names=[i["name"] for i in inputs])
        loaded = load_onnx(onnx_path, opts, source=name)
        loaded.onnx_model  # read the graph now: the file goes with the folder  # noqa: B018
        loaded.onnx_path = None
    loaded.architecture, loaded.config, loaded.inputs = name, cfg, inputs
    loaded.trained = trained
    return loaded


def example_from_inputs(inputs: list[dict[str, Any]] | None, name: str) -> tuple:
    """Zero tensors for a registry model's declared inputs (:func:`example_shape`)."""
    if not inputs:
        raise ModelLoadError(f"model {name!r} declares no inputs, so it cannot be traced or "
                             "exported; load it with framework='pytorch'")
    out = []
    for spec in inputs:
        dtype = getattr(torch, spec.get("dtype", "float32"))
        out.append(torch.zeros(example_shape(spec), dtype=dtype))
    return tuple(out)


def axis_steps(spec: dict[str, Any]) -> list[int]:
    """Each axis's step of a declared input (its ``multiple``; 1, any size, where none is
    declared): a free axis takes positive multiples of its step."""
    steps = spec.get("multiple")
    return [int(m) for m in steps] if steps else [1] * len(spec["shape"])


def example_shape(spec: dict[str, Any], free: int | None = None) -> list[int]:
    """One concrete shape of a declared input: its ``example`` when it declares one and
    ``free`` is not given, else every free axis (-1) at ``free`` (default 1) times its
    step."""
    if free is None and spec.get("example"):
        return [int(d) for d in spec["example"]]
    return [(free or 1) * m if int(d) < 0 else int(d)
            for d, m in zip(spec["shape"], axis_steps(spec))]


# --------------------------------------------------------------------------- tasks
def inputs_fit(declared: list[dict[str, Any]] | None, wanted: list[dict[str, Any]]) -> bool:
    """Whether a model's declared inputs fit what a task feeds it.

    ``wanted`` lists ``{"dtype", "shape"}`` per input (``-1``: any size). A declared free
    dimension (``-1``) fits any wanted size that is a multiple of its step (``multiple``);
    ranks, input counts and dtypes must agree.
    """
    if not declared or len(declared) != len(wanted):
        return False
    for d, w in zip(declared, wanted):
        if w.get("dtype") and d.get("dtype", "float32") != w["dtype"]:
            return False
        ds, ws = list(d["shape"]), list(w["shape"])
        if len(ds) != len(ws):
            return False
        if any(a != -1 and b != -1 and a != b for a, b in zip(ds, ws)):
            return False
        if any(b > 0 and b % m for b, m in zip(ws, axis_steps(d))):
            return False
    return True


def fitting_models(*wanted: list[dict[str, Any]]) -> list[str]:
    """Registered (plugin) models whose declared inputs fit any of ``wanted``."""
    from deepseek.plugins import models

    return [e.name for e in models().entries()
            if any(inputs_fit(e.meta.get("inputs"), w) for w in wanted)]


def require_fit(name: str, task: str, *wanted: list[dict[str, Any]]) -> int:
    """Which of the ``wanted`` input layouts model ``name`` fits (its index); a
    ModelLoadError that lists the registered models that fit ``task`` when none does."""
    from deepseek.plugins import models

    fitting = ", ".join(fitting_models(*wanted)) or "none registered"
    try:
        entry = models().entry(name)
    except UnknownNameError as exc:
        raise ModelLoadError(f"{exc}; models for {task}: {fitting}") from None
    for i, w in enumerate(wanted):
        if inputs_fit(entry.meta.get("inputs"), w):
            return i
    feeds = " or ".join(str([s["shape"] for s in w]) for w in wanted)
    raise ModelLoadError(
        f"model {name!r} does not fit {task}: it declares inputs "
        f"{entry.meta.get('inputs')}, the task feeds {feeds}; models that fit: {fitting}")
