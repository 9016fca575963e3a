"""Model loading with precision and device control.

``ModelLoader.load(name_or_path, framework=..., precision=..., device=...)`` returns a
:class:`LoadedModel`: call it like a function (numpy arrays or torch tensors in, the same kind
out) and print ``.summary()``. What loads:

* a registry name (``deepseek models`` lists them): the registered builder with its default
  config updated by ``**config``, and the plugin's packaged weights when it ships them;
* ``*.safetensors`` (or a folder holding ``model.safetensors``) with its JSON config naming a
  registered architecture -- written by :func:`save_model`;
* TorchScript archives (``torch.jit.save``);
* ONNX files, run by onnxruntime (the ``runtime`` extra; fp16 conversion and ``summary()``
  also need the ``onnx`` extra);
* every architecture of timm by name (``resnet50``; the ``zoo`` extra, see
  :mod:`deepseek.zoo`), built with random weights unless ``pretrained=True`` finds local ones;
* pickled checkpoints (``torch.save``) only with ``trust_pickle=True``: unpickling runs
  arbitrary code from the file.

TensorFlow / Keras models are not read directly: export them to ONNX (``tf2onnx``) and load
the ``.onnx`` file.

Without PyTorch (an edge install, ``pip install "deepseek-core[edge]"``) ONNX files load and
run on onnxruntime alone, and so does a registered model whose plugin ships its packaged
weights as ONNX too (``<weights>.onnx`` beside ``<weights>.safetensors``, exported from them:
:func:`packaged_onnx`); everything else says it needs the ``torch`` extra.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

try:
    import torch
except ImportError:  # an edge install: ONNX models on onnxruntime only
    torch = None  # type: ignore[assignment]

from deepseek.errors import ModelLoadError, PrecisionError, UnknownNameError, UntrustedPickleError
from deepseek.summary import ModelSummary, summarize_module, summarize_onnx

log = logging.getLogger(__name__)

#: precision name -> the torch dtype's name
PRECISIONS: dict[str, str] = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
FRAMEWORKS = ("auto", "pytorch", "torchscript", "onnx", "safetensors")
TF_FRAMEWORKS = ("tensorflow", "tf", "keras", "tflite")
TF_SUFFIXES = {".h5", ".keras", ".pb", ".tflite"}
TF_MESSAGE = ("TensorFlow/Keras models are not loaded directly: export to ONNX with tf2onnx "
              "(python -m tf2onnx.convert --saved-model DIR --output model.onnx, or "
              "--keras model.keras / --tflite model.tflite) and load the .onnx file with "
              "framework='onnx'")
CONFIG_META_KEY = "deepseek.config"
EXTRA_META_KEY = "deepseek.extra"
ARCH_META_KEY = "deepseek.architecture"
#: ONNX metadata of a packaged export: the sha256 of the safetensors file it was exported from
SOURCE_META_KEY = "deepseek.source_sha256"
PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle", ".tar"}


# --------------------------------------------------------------------------- devices, dtypes
def require_torch(what: str) -> Any:
    """The torch module, or a clear error naming ``what`` needs it and the pip command."""
    if torch is None:
        from deepseek.extras import require

        require("torch", what)
    return torch


class Device(str):
    """A device without PyTorch (edge installs): ``"cpu"`` or ``"cuda"``, with ``.type``."""

    @property
    def type(self) -> str:
        return self.split(":", 1)[0]


def resolve_device(device: Any = "auto") -> Any:
    """``"auto"`` -> CUDA when available, else CPU; other strings as ``torch.device``.
    Without PyTorch: a :class:`Device` (``"auto"`` is the CPU; ONNX models can still be
    asked for ``"cuda"``, which onnxruntime-gpu provides)."""
    if torch is None:
        if device in (None, "auto"):
            return Device("cpu")
        if str(device).split(":", 1)[0] not in ("cpu", "cuda"):
            raise PrecisionError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'auto'")
        return Device(str(device))
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PrecisionError(f"device {device!r} requested but CUDA is not available here; "
                             "use device='cpu' or 'auto'")
    return dev


def check_precision_name(precision: str) -> str:
    if precision not in PRECISIONS:
        raise PrecisionError(
            f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return precision


def resolve_precision(precision: str) -> Any:
    """The torch dtype of a precision name."""
    return getattr(require_torch("a torch precision"), PRECISIONS[check_precision_name(
        precision)])


def check_precision(device: torch.device, dtype: torch.dtype) -> None:
    """Raise :class:`PrecisionError` when ``device`` cannot compute in ``dtype``."""
    if dtype == torch.float32:
        return
    name = {torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise PrecisionError(f"{torch.cuda.get_device_name(device)} has no bf16 support; "
                             "use precision='fp16' or 'fp32'")
    try:
        a = torch.ones(4, 4, dtype=dtype, device=device)
        torch.nn.functional.linear(a, a)
    except RuntimeError as exc:
        raise PrecisionError(f"precision {name} cannot run on {device}: {exc}; "
                             "use precision='fp32'") from exc


# --------------------------------------------------------------------------- saving
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
    st_save_model(module, str(path), metadata=meta)
    path.with_suffix(".json").write_text(json.dumps(side, indent=2) + "\n")
    return path


def read_model_extra(path: str | Path) -> dict[str, Any]:
    """The ``extra`` stored by :func:`save_model` (from the safetensors header, which travels
    with the weights); an empty dict when there is none."""
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


def packaged_onnx(name: str) -> Path | None:
    """The ONNX export a plugin ships beside registry model ``name``'s packaged weights
    (``<weights>.onnx`` next to ``<weights>.safetensors``), or ``None``."""
    from deepseek.plugins import models

    weights = models().entry(name).meta.get("weights")
    if not weights:
        return None
    path = Path(weights).with_suffix(".onnx")
    return path if path.is_file() else None


def export_packaged_onnx(name: str, free: tuple[int, int] = (8, 16), atol: float = 1e-4
                         ) -> Path:
    """Write the ONNX export of registry model ``name``'s packaged weights beside them
    (``<weights>.onnx``, stamped with their sha256: :func:`stamp_onnx`), so an install
    without PyTorch runs it. For plugin maintainers, after new weights.

    A plugin may register its own exporter (``onnx_export=``, called with the weights path,
    returning the written path). Otherwise the model is traced from its declared ``inputs``
    with each free dimension (-1) set to ``free[0]``; those dimensions, and every output
    dimension that follows them (found by a second run at ``free[1]``), stay free in the
    graph. The export is checked against the PyTorch model at ``free[1]`` (largest absolute
    difference <= ``atol`` times the outputs' scale) before it is stamped."""
    from deepseek.plugins import models

    require_torch("exporting a model to ONNX")
    entry = models().entry(name)
    weights = entry.meta.get("weights")
    if not weights:
        raise ModelLoadError(f"model {name!r} has no packaged weights to export")
    custom = entry.meta.get("onnx_export")
    if custom is not None:
        return Path(custom(weights))
    inputs = entry.meta.get("inputs")
    if not inputs:
        raise ModelLoadError(f"model {name!r} declares no inputs; it cannot be traced")
    module, cfg = build_registered(name)
    module.eval()
    gen = torch.Generator().manual_seed(0)

    def example(n: int) -> tuple:
        out = []
        for spec in inputs:
            shape = [n if int(d) < 0 else int(d) for d in spec["shape"]]
            dtype = getattr(torch, spec.get("dtype", "float32"))
            out.append(torch.rand(shape, generator=gen).to(dtype) if dtype.is_floating_point
                       else torch.zeros(shape, dtype=dtype))
        return tuple(out)

    def flat(out: Any) -> tuple[list[str], list[Any]]:
        if isinstance(out, dict):
            return list(out), list(out.values())
        if isinstance(out, (tuple, list)):
            return [f"output{i}" for i in range(len(out))], list(out)
        return ["output"], [out]

    ex_a, ex_b = example(free[0]), example(free[1])
    with torch.inference_mode():
        names, outs_a = flat(module(*ex_a))
        _, outs_b = flat(module(*ex_b))
    in_names = [spec["name"] for spec in inputs]
    axes = {spec["name"]: {i: f"{spec['name']}_{i}" for i, d in enumerate(spec["shape"])
                           if int(d) < 0} for spec in inputs}
    for n, a, b in zip(names, outs_a, outs_b):
        axes[n] = {i: f"{n}_{i}" for i, (x, y) in enumerate(zip(a.shape, b.shape)) if x != y}
    path = Path(weights).with_suffix(".onnx")
    export_onnx(module, ex_a, path, input_names=in_names, output_names=names,
                dynamic_axes=axes)
    from deepseek.extras import require

    require("runtime", "checking the ONNX export")
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {n: x.numpy() for n, x in zip(in_names, ex_b)})
    for n, want, have in zip(names, outs_b, got):
        want = want.float().numpy()
        err = float(np.abs(have - want).max()) if want.size else 0.0
        scale = max(1.0, float(np.abs(want).max()) if want.size else 0.0)
        if have.shape != want.shape or err > atol * scale:
            path.unlink()
            raise ModelLoadError(f"model {name!r}: the ONNX export's {n!r} differs from PyTorch "
                                 f"(shape {have.shape} vs {want.shape}, max error {err:.3g})")
    return stamp_onnx(path, weights, name, cfg)


def file_sha256(path: str | Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stamp_onnx(path: str | Path, source: str | Path, architecture: str,
               config: dict[str, Any] | None = None) -> Path:
    """Record in ONNX file ``path`` what it was exported from: the sha256 of the safetensors
    file ``source`` (:data:`SOURCE_META_KEY`), the architecture and its config. A test can
    then tell a stale packaged export from a current one (:func:`onnx_source`)."""
    from deepseek.extras import require

    require("onnx", "stamping an ONNX export")
    import onnx

    model = onnx.load(str(path))
    meta = {SOURCE_META_KEY: file_sha256(source), ARCH_META_KEY: architecture,
            CONFIG_META_KEY: json.dumps(config or {})}
    keep = [p for p in model.metadata_props if p.key not in meta]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return Path(path)


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The custom metadata of an ONNX file (read by onnxruntime: no ``onnx`` package)."""
    from deepseek.extras import require

    require("runtime", "reading ONNX metadata")
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a readable ONNX file ({exc})") from exc
    return dict(sess.get_modelmeta().custom_metadata_map)


def export_onnx(module: torch.nn.Module, example_input: Any, path: str | Path, *,
                input_names: list[str] | None = None, output_names: list[str] | None = None,
                dynamic_batch: bool = True, opset: int = 17,
                dynamic_axes: dict[str, dict[int, str]] | None = None) -> Path:
    """Export ``module`` to ONNX with a free batch dimension (first axis) by default, or the
    free axes ``dynamic_axes`` names (``{tensor name: {axis: axis name}}``)."""
    from deepseek.extras import require

    require("onnx", "ONNX export")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    input_names = input_names or ([f"input{i}" for i in range(len(inputs))]
                                  if len(inputs) > 1 else ["input"])
    module = module.eval()
    with torch.inference_mode():
        probe = module(*inputs)
    n_out = len(probe) if isinstance(probe, (tuple, list, dict)) else 1
    if isinstance(probe, dict):  # a dict's keys name its outputs, in order
        output_names = output_names or list(probe)
    output_names = output_names or ([f"output{i}" for i in range(n_out)]
                                    if n_out > 1 else ["output"])
    axes = {n: {0: "batch"} for n in input_names + output_names} if dynamic_batch else None
    if dynamic_axes is not None:
        axes = dynamic_axes
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, str(path), input_names=input_names,
                          output_names=output_names, dynamic_axes=axes, opset_version=opset,
                          dynamo=False)
    return path


# --------------------------------------------------------------------------- the wrapper
class LoadedModel:
    """A loaded model: callable, with ``summary()``.

    Attributes: ``framework`` (pytorch/torchscript/onnx), ``precision``, ``device``,
    ``source`` (registry name or path), ``module`` (torch) or ``session`` (onnxruntime),
    ``architecture`` and ``config`` when known, ``inputs`` (tensor descriptions when the
    registry declares them).
    """

    def __init__(self, *, framework: str, precision: str, device: torch.device, source: str,
                 module: torch.nn.Module | None = None, session: Any = None,
                 onnx_model: Any = None, architecture: str | None = None,
                 config: dict[str, Any] | None = None,
                 inputs: list[dict[str, Any]] | None = None) -> None:
        self.framework = framework
        self.precision = precision
        self.dtype = getattr(torch, PRECISIONS[precision]) if torch is not None else None
        self.device = device
        self.source = source
        self.module = module
        self.session = session
        self._onnx_model = onnx_model
        self.onnx_path: Path | None = None
        self.architecture = architecture
        self.config = config or {}
        self.inputs = inputs

    @property
    def onnx_model(self) -> Any:
        """The ``onnx.ModelProto`` of an ONNX model (read on first use; needs the ``onnx``
        extra), ``None`` for a torch model."""
        if self._onnx_model is None and self.onnx_path is not None:
            from deepseek.extras import require

            require("onnx", "inspecting an ONNX graph")
            import onnx

            self._onnx_model = onnx.load(str(self.onnx_path))
        return self._onnx_model

    def __repr__(self) -> str:
        return (f"LoadedModel({self.source!r}, framework={self.framework!r}, "
                f"precision={self.precision!r}, device='{self.device}')")

    # calling ---------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.session is not None:
            return self._call_onnx(*args, **kwargs)
        as_numpy = any(isinstance(a, np.ndarray) for a in list(args) + list(kwargs.values()))
        targs = [self._to_tensor(a) for a in args]
        tkw = {k: self._to_tensor(v) for k, v in kwargs.items()}
        try:
            with torch.inference_mode():
                out = self.module(*targs, **tkw)
        except RuntimeError as exc:
            if self.precision != "fp32" and "not implemented for" in str(exc):
                raise PrecisionError(
                    f"{self.source}: an operator has no {self.precision} kernel on "
                    f"{self.device}: {exc}; load with precision='fp32'") from exc
            raise
        return _to_numpy(out) if as_numpy else out

    def _to_tensor(self, x: Any) -> Any:
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        if isinstance(x, torch.Tensor):
            if x.is_floating_point() and x.dtype != self.dtype:
                x = x.to(self.dtype)
            return x.to(self.device)
        return x

    def _call_onnx(self, *args: Any, **kwargs: Any) -> Any:
        as_torch = torch is not None and any(isinstance(a, torch.Tensor)
                                             for a in list(args) + list(kwargs.values()))
        metas = self.session.get_inputs()
        if len(args) > len(metas):
            raise TypeError(f"{self.source}: model takes {len(metas)} inputs, got {len(args)}")
        feed: dict[str, np.ndarray] = {}
        by_name = {m.name: m for m in metas}
        pairs = list(zip(metas, args)) + [(by_name.get(k), v) for k, v in kwargs.items()]
        for meta, value in pairs:
            if meta is None:
                raise TypeError(f"{self.source}: unknown input name; the model's inputs are "
                                f"{[m.name for m in metas]}")
            arr = value.detach().cpu().numpy() if as_torch and isinstance(value, torch.Tensor) \
                else np.asarray(value)
            want = _ORT_TYPES.get(meta.type)
            if want is not None and arr.dtype != want:
                arr = arr.astype(want)
            feed[meta.name] = arr
        outs = self.session.run(None, feed)
        if as_torch:
            outs = [torch.from_numpy(o) for o in outs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    # introspection ---------------------------------------------------------------------
    def summary(self, example_input: Any = None) -> ModelSummary:
        """Layer table (name, type, output shape with ``example_input``, params), totals, MB."""
        title = f"{self.source} [{self.framework}, {self.precision}, {self.device}]"
        if self.session is not None:
            return summarize_onnx(self.onnx_model, title=title)
        return summarize_module(self.module, example_input, title=title, device=self.device)

    def num_parameters(self) -> int:
        if self.module is not None:
            return sum(p.numel() for p in {id(p): p for p in self.module.parameters()}.values())
        return self.summary().total_params


_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(uint8)": np.uint8,
}


def _to_numpy(out: Any) -> Any:
    if torch is not None and isinstance(out, torch.Tensor):
        t = out.detach().cpu()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.numpy()
    if isinstance(out, (list, tuple)):
        return type(out)(_to_numpy(o) for o in out)
    if isinstance(out, dict):
        return {k: _to_numpy(v) for k, v in out.items()}
    return out


# --------------------------------------------------------------------------- the loader
class ModelLoader:
    """Loads registry models and model files; see the module docstring."""

    @classmethod
    def load(cls, name_or_path: str | Path | torch.nn.Module, framework: str = "auto",
             precision: str = "fp32", device: str | torch.device = "auto", *,
             trust_pickle: bool = False, pretrained: bool | None = None,
             weights: str | Path | None = None, architecture: str | None = None,
             onnx_threads: int | None = None, **config: Any) -> LoadedModel:
        """Load a model.

        Args:
            name_or_path: a registry name, a file path, or an ``nn.Module`` to wrap.
            framework: ``"auto"`` (from the file), ``"pytorch"``, ``"torchscript"``,
                ``"onnx"`` or ``"safetensors"`` (a state dict + JSON config, built as PyTorch).
                A registry model asked for as ``"torchscript"`` or ``"onnx"`` is
                traced/exported from its declared inputs. TensorFlow/Keras: export to ONNX.
            precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``: parameters (or the ONNX graph)
                are converted, and float inputs are cast on the way in.
            device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:0"`` ...
            trust_pickle: allow unpickling ``torch.save`` checkpoints (runs code from the
                file; only for files you trust).
            pretrained: load weights: a plugin model's packaged weights (default: yes), a
                zoo model's local weights (default: no; see :mod:`deepseek.zoo`).
            weights: a weights file to load instead of the packaged ones.
            architecture: registry name to build for a bare state dict.
            onnx_threads: onnxruntime intra-op threads (default: onnxruntime's choice).
            **config: overrides of the registry model's default config.
        """
        if str(framework).lower() in TF_FRAMEWORKS:
            raise ModelLoadError(TF_MESSAGE)
        if framework not in FRAMEWORKS:
            raise ModelLoadError(f"unknown framework {framework!r}; use one of "
                                 f"{', '.join(FRAMEWORKS)} ({TF_MESSAGE})")
        check_precision_name(precision)
        dtype = getattr(torch, PRECISIONS[precision]) if torch is not None else None
        dev = resolve_device(device)

        if torch is not None and isinstance(name_or_path, torch.nn.Module):
            module = name_or_path
            return cls._finish_torch(module, framework if framework != "auto" else "pytorch",
                                     precision, dtype, dev, source=type(module).__name__)

        path = Path(name_or_path)
        if path.suffix.lower() in TF_SUFFIXES or (path.is_dir()
                                                  and (path / "saved_model.pb").is_file()):
            raise ModelLoadError(f"{path}: {TF_MESSAGE}")
        if path.exists():
            if pretrained is not None or weights is not None:
                raise ModelLoadError(f"{path}: pretrained= and weights= apply to registry "
                                     "names; a model file carries its own weights")
            return cls._load_path(path, framework, precision, dtype, dev, trust_pickle,
                                  architecture, onnx_threads, config)
        name = str(name_or_path)
        from deepseek.plugins import models

        registry = models()
        if name not in registry and (path.suffix or "/" in name or "\\" in name):
            raise ModelLoadError(f"{name}: no such file, and not a registered model name "
                                 "(`deepseek models` lists the names)")
        try:
            entry = registry.entry(name)
        except UnknownNameError as exc:
            from deepseek import zoo

            hint = ""
            if zoo.import_error():
                hint = f"; the model zoo is unavailable: {zoo.import_error()}"
            elif not zoo.available():
                hint = ("; timm architectures such as resnet50 need the zoo extra: "
                        "pip install \"deepseek-core[zoo]\"")
            raise ModelLoadError(str(exc) + " (or give the path of a model file)" + hint) \
                from None
        inputs = entry.meta.get("inputs")
        shipped = packaged_onnx(name)
        as_packaged = (shipped is not None and pretrained in (None, True) and weights is None
                       and not config)
        if as_packaged and (torch is None or framework == "onnx"):
            # the plugin's own export of its packaged weights: no PyTorch, no export step
            loaded = cls._load_onnx(shipped, precision, dev, onnx_threads, source=name)
            recorded = loaded.session.get_modelmeta().custom_metadata_map.get(SOURCE_META_KEY)
            if recorded != file_sha256(entry.meta["weights"]):
                raise ModelLoadError(
                    f"model {name!r}: {shipped} was not exported from the packaged weights "
                    f"beside it (a stale export); reinstall the plugin, or rewrite it with "
                    f"`deepseek export-onnx {name}` where PyTorch is installed")
            loaded.architecture, loaded.inputs = name, inputs
            loaded.config = dict(entry.meta.get("config") or {})
            return loaded
        require_torch(f"model {name!r} (a registered model is built with PyTorch"
                      + ("; its packaged ONNX export serves without it only with the packaged "
                         "weights and default config" if shipped is not None else
                         "; an edge install serves .onnx files") + ")")
        module, cfg = build_registered(name, pretrained=pretrained, weights=weights, **config)
        if framework in ("auto", "pytorch", "safetensors"):
            return cls._finish_torch(module, "pytorch", precision, dtype, dev, source=name,
                                     architecture=name, config=cfg, inputs=inputs)
        example = example_from_inputs(inputs, name)
        if framework == "torchscript":
            module = module.eval()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scripted = torch.jit.trace(module, example)
            return cls._finish_torch(scripted, "torchscript", precision, dtype, dev, source=name,
                                     architecture=name, config=cfg, inputs=inputs)
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = export_onnx(module, example, Path(tmp) / f"{name}.onnx",
                                    input_names=[i["name"] for i in inputs])
            loaded = cls._load_onnx(onnx_path, precision, dev, onnx_threads, source=name)
        loaded.architecture, loaded.config, loaded.inputs = name, cfg, inputs
        return loaded

    # ------------------------------------------------------------------------------------
    @classmethod
    def _load_path(cls, path: Path, framework: str, precision: str, dtype: torch.dtype,
                   dev: torch.device, trust_pickle: bool, architecture: str | None,
                   onnx_threads: int | None, config: dict[str, Any]) -> LoadedModel:
        if path.is_dir():
            for cand in ("model.safetensors", "model.onnx", "model.pt"):
                if (path / cand).is_file():
                    path = path / cand
                    break
            else:
                raise ModelLoadError(f"{path}: folder holds no model.safetensors, model.onnx or "
                                     "model.pt; give the model file itself")
        kind = detect_format(path)
        if framework == "safetensors" and kind != "safetensors":
            raise ModelLoadError(f"{path}: framework='safetensors' but the file is {kind}")
        if framework == "onnx" and kind != "onnx":
            raise ModelLoadError(f"{path}: framework='onnx' but the file is {kind}; export it "
                                 "with deepseek.loader.export_onnx first")
        if framework == "torchscript" and kind != "torchscript":
            raise ModelLoadError(f"{path}: framework='torchscript' but the file is {kind}")
        if framework == "pytorch" and kind in ("onnx", "torchscript"):
            raise ModelLoadError(f"{path}: framework='pytorch' but the file is {kind}; use "
                                 f"framework='{kind}' or 'auto'")
        if kind == "onnx":
            return cls._load_onnx(path, precision, dev, onnx_threads, source=str(path))
        require_torch(f"{path} (a {kind} model file; without PyTorch only .onnx files load)")
        if kind == "torchscript":
            try:
                module = torch.jit.load(str(path), map_location="cpu")
            except Exception as exc:
                raise ModelLoadError(f"{path}: TorchScript archive could not be loaded: {exc}") \
                    from exc
            return cls._finish_torch(module, "torchscript", precision, dtype, dev,
                                     source=str(path))
        if kind == "safetensors":
            arch, cfg = read_model_config(path)
            arch = architecture or arch
            if not arch:
                raise ModelLoadError(
                    f"{path}: no architecture recorded (no {path.with_suffix('.json').name}, no "
                    f"config.json, no '{ARCH_META_KEY}' in the header); pass "
                    "architecture='<registered model name>'")
            cfg = {**cfg, **config}
            module, _ = build_registered(arch, pretrained=False, **cfg)
            load_safetensors_into(module, path)
            from deepseek.plugins import models

            return cls._finish_torch(module, "pytorch", precision, dtype, dev, source=str(path),
                                     architecture=arch, config=cfg,
                                     inputs=models().entry(arch).meta.get("inputs"))
        # a pickle
        if not trust_pickle:
            raise UntrustedPickleError(
                f"{path} is a pickled checkpoint; unpickling can run arbitrary code from the "
                "file, so it is refused. Convert it to safetensors (deepseek.loader.save_model) "
                "or, if you trust its source, pass trust_pickle=True (CLI: --trust-pickle)")
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as exc:
            raise ModelLoadError(f"{path}: could not unpickle: {exc}") from exc
        if isinstance(obj, torch.nn.Module):
            return cls._finish_torch(obj, "pytorch", precision, dtype, dev, source=str(path))
        if isinstance(obj, dict):
            state = obj.get("state_dict", obj.get("model", obj))
            if not architecture:
                raise ModelLoadError(f"{path} holds a state dict, not a model; pass "
                                     "architecture='<registered model name>' to build it")
            module, cfg = build_registered(architecture, pretrained=False, **config)
            _load_state(module, state, path)
            return cls._finish_torch(module, "pytorch", precision, dtype, dev, source=str(path),
                                     architecture=architecture, config=cfg)
        raise ModelLoadError(f"{path}: holds a {type(obj).__name__}, not a model or state dict")

    @staticmethod
    def _finish_torch(module: torch.nn.Module, framework: str, precision: str,
                      dtype: torch.dtype, dev: torch.device, *, source: str,
                      architecture: str | None = None, config: dict[str, Any] | None = None,
                      inputs: list[dict[str, Any]] | None = None) -> LoadedModel:
        check_precision(dev, dtype)
        module = module.to(device=dev)
        if dtype != torch.float32:
            module = module.to(dtype=dtype)
        module.eval()
        return LoadedModel(framework=framework, precision=precision, device=dev, source=source,
                           module=module, architecture=architecture, config=config,
                           inputs=inputs)

    @staticmethod
    def _load_onnx(path: Path, precision: str, dev: torch.device, threads: int | None, *,
                   source: str) -> LoadedModel:
        from deepseek.extras import require

        require("runtime", "running ONNX models")
        import onnxruntime as ort

        if precision == "bf16":
            raise PrecisionError(f"{path}: onnxruntime has no bf16 kernels for most operators; "
                                 "use precision='fp16' or 'fp32' for ONNX models")
        model: Any = None
        graph: Any = str(path)  # fp32: onnxruntime reads the file itself (no onnx package)
        if precision == "fp16":
            require("onnx", "converting an ONNX model to fp16")
            import onnx
            from onnxconverter_common import float16

            try:
                model = onnx.load(str(path))
            except Exception as exc:
                raise ModelLoadError(f"{path}: not a readable ONNX file ({exc})") from exc
            model = float16.convert_float_to_float16(model, keep_io_types=True)
            graph = model.SerializeToString()
        providers = ["CPUExecutionProvider"]
        if dev.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise PrecisionError(f"{path}: device {dev} requested but this onnxruntime has "
                                     "no CUDAExecutionProvider; install onnxruntime-gpu or use "
                                     "device='cpu'")
            providers.insert(0, "CUDAExecutionProvider")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(graph, opts, providers=providers)
        except Exception as exc:
            raise ModelLoadError(f"{path}: not a readable ONNX file, or onnxruntime could not "
                                 f"create a session ({precision}): {exc}") from exc
        loaded = LoadedModel(framework="onnx", precision=precision, device=dev, source=source,
                             session=session, onnx_model=model)
        loaded.onnx_path = Path(path)
        return loaded


# --------------------------------------------------------------------------- helpers
def detect_format(path: Path) -> str:
    """``onnx``, ``safetensors``, ``torchscript`` or ``pickle``, from the file's content."""
    with open(path, "rb") as f:
        head = f.read(16)
    if path.suffix == ".onnx":
        return "onnx"
    if path.suffix == ".safetensors":
        return "safetensors"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        if any(n.split("/", 1)[-1].startswith("code/") or n.endswith("constants.pkl")
               for n in names):
            return "torchscript"
        return "pickle"
    if head[:1] == b"\x80" or path.suffix in PICKLE_SUFFIXES:
        return "pickle"
    if len(head) >= 8 and int.from_bytes(head[:8], "little") < 100_000_000 and head[8:9] == b"{":
        return "safetensors"
    raise ModelLoadError(f"{path}: unrecognised model format; expected .safetensors (+ JSON "
                         "config), .onnx, a TorchScript archive or a torch.save checkpoint")


def build_registered(name: str, pretrained: bool | None = None,
                     weights: str | Path | None = None,
                     **config: Any) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Build registry model ``name`` with its default config updated by ``config``.

    A plugin model loads its packaged weights unless ``pretrained`` is False (``weights``
    replaces them); a zoo (timm) model is random unless ``pretrained`` is True. Returns the
    module and the full config used.
    """
    from deepseek.plugins import models

    entry = models().entry(name)
    cfg = {**(entry.meta.get("config") or {}), **config}
    if entry.meta.get("zoo"):
        from deepseek import zoo

        return zoo.create(entry.meta["architecture"], pretrained=bool(pretrained),
                          weights=weights, **cfg), cfg
    try:
        module = entry.obj(**cfg)
    except TypeError as exc:
        raise ModelLoadError(f"model {name!r}: bad config {config}: {exc}") from exc
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"model {name!r}: its builder returned {type(module).__name__}, "
                             "not a torch.nn.Module (plugin bug)")
    if weights is not None:
        if pretrained is False:
            raise ModelLoadError(f"model {name!r}: weights= was given with pretrained=False")
        load_safetensors_into(module, weights)
        return module, cfg
    packaged = entry.meta.get("weights")
    if pretrained is None:
        pretrained = True
    if pretrained and packaged:
        packaged = Path(packaged)
        if not packaged.is_file():
            raise ModelLoadError(f"model {name!r}: packaged weights {packaged} are missing; "
                                 "reinstall the plugin or pass pretrained=False")
        try:
            load_safetensors_into(module, packaged)
        except ModelLoadError as exc:
            raise ModelLoadError(f"{exc}; the packaged weights fit the default config only - "
                                 "pass pretrained=False to build with new settings") from None
    return module, cfg


def load_safetensors_into(module: torch.nn.Module, path: str | Path) -> None:
    from safetensors.torch import load_model

    try:
        missing, unexpected = load_model(module, str(path), strict=False)
    except Exception as exc:
        raise ModelLoadError(f"{path}: weights do not fit the model: {exc}") from exc
    if missing or unexpected:
        raise ModelLoadError(f"{path}: weights do not fit the model (missing: "
                             f"{sorted(missing)[:5]}, unexpected: {sorted(unexpected)[:5]})")


def _load_state(module: torch.nn.Module, state: dict[str, Any], path: Path) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelLoadError(f"{path}: state dict does not fit the model: {exc}") from exc


def example_from_inputs(inputs: list[dict[str, Any]] | None, name: str) -> tuple:
    """Zero tensors for a registry model's declared inputs (free dimensions set to 1)."""
    if not inputs:
        raise ModelLoadError(f"model {name!r} declares no inputs, so it cannot be traced or "
                             "exported; load it with framework='pytorch'")
    out = []
    for spec in inputs:
        shape = [1 if int(d) < 0 else int(d) for d in spec["shape"]]
        dtype = getattr(torch, spec.get("dtype", "float32"))
        out.append(torch.zeros(shape, dtype=dtype))
    return tuple(out)


# --------------------------------------------------------------------------- tasks
def inputs_fit(declared: list[dict[str, Any]] | None, wanted: list[dict[str, Any]]) -> bool:
    """Whether a model's declared inputs fit what a task feeds it.

    ``wanted`` lists ``{"dtype", "shape"}`` per input (``-1``: any size). A declared free
    dimension (``-1``) fits any wanted size; ranks, input counts and dtypes must agree.
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
