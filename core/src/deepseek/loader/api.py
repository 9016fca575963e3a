"""``ModelLoader.load``: one entry point that sends each source to the module of its kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepseek.errors import ModelLoadError
from deepseek.loader import files, registered
from deepseek.loader.base import TF_MESSAGE, TF_SUFFIXES, LoadOptions, torch
from deepseek.loader.wrapper import LoadedModel, wrap_module


class ModelLoader:
    """Loads registry models and model files; see :mod:`deepseek.loader`."""

    @classmethod
    def load(cls, name_or_path: Any, framework: str = "auto", precision: str = "fp32",
             device: Any = "auto", *, trust_pickle: bool = False, pretrained: bool | None = None,
             weights: str | Path | None = None, architecture: str | None = None,
             onnx_threads: int | None = None, **config: Any) -> LoadedModel:
        """Load a model.

        Args:
            name_or_path: a registry name (``plugin:name`` when two plugins contest it), a
                zoo architecture, a file path, a model folder, or an ``nn.Module`` to wrap.
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
                zoo model's local weights (default: no).
            weights: a weights file to load instead of the packaged ones.
            architecture: registry name to build for a bare state dict.
            onnx_threads: onnxruntime intra-op threads (default: onnxruntime's choice).
            **config: overrides of a registry model's default config, checked against its
                builder: an unknown key (a misspelt option, too) is an error, and so is any
                keyword for a model file that carries its own config (ONNX, TorchScript).
        """
        opts = LoadOptions(framework, precision, device, trust_pickle, pretrained, weights,
                           architecture, onnx_threads, dict(config))
        if torch is not None and isinstance(name_or_path, torch.nn.Module):
            opts.refuse_config(type(name_or_path).__name__)
            return wrap_module(name_or_path, "pytorch" if framework == "auto" else framework,
                               opts, source=type(name_or_path).__name__, trained=None)
        path = Path(name_or_path)
        if path.suffix.lower() in TF_SUFFIXES or (path.is_dir()
                                                  and (path / "saved_model.pb").is_file()):
            raise ModelLoadError(f"{path}: {TF_MESSAGE}")
        if path.exists():
            return files.load_path(path, opts)
        return registered.load_name(str(name_or_path), opts)
