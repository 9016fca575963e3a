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
* well-known image classifiers by name (``resnet50``, ``vit_base_patch16_224``; the ``zoo``
  extra, see :mod:`deepseek.loader.zoo`), built with random weights unless ``pretrained=True``
  finds local ones;
* pickled checkpoints (``torch.save``) only with ``trust_pickle=True``: unpickling runs
  arbitrary code from the file.

Every keyword is checked: an option or config key that nothing takes is an error that names
the closest one (``precison`` -> ``precision``), whatever the source.

A model built with random weights (a registry model registered without weights, a zoo model
without ``pretrained=True``) is marked ``trained=False``; ``deepseek serve`` refuses it unless
told ``--allow-untrained``.

TensorFlow / Keras models are not read directly: export them to ONNX (``tf2onnx``) and load
the ``.onnx`` file.

Without PyTorch (an edge install, ``pip install "deepseek-core[edge]"``) ONNX files load and
run on onnxruntime alone, and so does a registered model whose plugin ships its packaged
weights as ONNX too (``<weights>.onnx`` beside ``<weights>.safetensors``, exported from them:
:func:`packaged_onnx`); everything else says it needs the ``torch`` extra.

The package has one module per source kind, behind :class:`ModelLoader`:
:mod:`~deepseek.loader.registered` (registry names), :mod:`~deepseek.loader.files` (model
files and folders), :mod:`~deepseek.loader.zoo` (the model zoo),
:mod:`~deepseek.loader.packaged` (plugins' packaged ONNX exports) and
:mod:`~deepseek.loader.onnx` (onnxruntime, export); :mod:`~deepseek.loader.base` holds what
they share and :mod:`~deepseek.loader.wrapper` the loaded model. Importing the package is
free: each name loads its module (and PyTorch) on first use.
"""

from __future__ import annotations

from deepseek.lazy import lazy_exports

_M = "deepseek.loader."
_LAZY = {
    "ModelLoader": _M + "api",
    "LoadedModel": _M + "wrapper",
    "wrap_module": _M + "wrapper",
    "LoadOptions": _M + "base",
    **{n: _M + "base" for n in (
        "torch", "PRECISIONS", "FRAMEWORKS", "SOURCE_META_KEY", "ARCH_META_KEY",
        "CONFIG_META_KEY", "EXTRA_META_KEY", "INPUTS_META_KEY", "LOAD_KEYWORDS", "require_torch",
        "resolve_device", "resolve_precision", "check_precision", "check_precision_name",
        "detect_format", "file_sha256", "Device")},
    **{n: _M + "files" for n in (
        "save_model", "read_model_config", "read_model_extra", "load_safetensors_into",
        "pick_in_folder")},
    **{n: _M + "onnx" for n in (
        "export_onnx", "stamp_onnx", "onnx_metadata", "load_onnx", "declared_onnx_inputs",
        "session_options", "session_threads")},
    **{n: _M + "packaged" for n in ("packaged_onnx", "export_packaged_onnx")},
    **{n: _M + "registered" for n in (
        "build_registered", "example_from_inputs", "inputs_fit", "fitting_models",
        "require_fit", "axis_steps", "example_shape")},
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
