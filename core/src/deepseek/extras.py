"""Optional parts of deepseek-core and the message that says how to install a missing one.

``pip install deepseek-core`` brings the plugin system, the CLI and the model loader's
light part. The rest are extras::

    pip install "deepseek-core[torch]"   # PyTorch: training, registry models, torch files
    pip install "deepseek-core[edge]"    # inference without PyTorch: serve + runtime
    pip install "deepseek-core[serve]"   # REST + gRPC model server (deepseek serve)
    pip install "deepseek-core[runtime]" # running ONNX files (onnxruntime alone)
    pip install "deepseek-core[onnx]"    # ONNX export, fp16 conversion, graph summaries
    pip install "deepseek-core[zoo]"     # image classifiers by name (transformers)
    pip install "deepseek-core[tune]"    # hyperparameter search (Optuna)
    pip install "deepseek-core[ray]"     # deepseek batch on a Ray cluster
    pip install "deepseek-core[all]"     # the three plugins, serve, onnx and tune
"""

from __future__ import annotations

import importlib.util

from deepseek.errors import DeepSeekError

#: extra -> the import names it provides
EXTRAS: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "serve": ("starlette", "uvicorn", "grpc", "grpc_health", "google.protobuf",
              "prometheus_client", "orjson", "simdjson"),
    "runtime": ("onnxruntime",),
    "onnx": ("onnx", "onnxruntime", "onnxconverter_common"),
    "zoo": ("transformers",),
    "tune": ("optuna", "cmaes", "yaml", "matplotlib"),
    "ray": ("ray",),
}


class MissingExtraError(DeepSeekError):
    """An optional part of the toolkit is used but its packages are not installed."""


def missing(extra: str) -> list[str]:
    """The import names of ``extra`` that are not installed."""
    return [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]


def require(extra: str, what: str) -> None:
    """Raise :class:`MissingExtraError` with the pip command when ``extra`` is incomplete."""
    gone = missing(extra)
    if gone:
        raise MissingExtraError(
            f"{what} needs the '{extra}' extra, which is not installed (missing: "
            f"{', '.join(gone)}): pip install \"deepseek-core[{extra}]\"")
