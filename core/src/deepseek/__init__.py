"""DeepSeek Toolkit core: plugin hooks and registries, CLI, model loading, mixed precision,
training helpers.

Domain plugins (``deepseek.medical``, ``deepseek.manufacturing``, ``deepseek.finance``) are
separate distributions sharing this namespace through ``extend_path`` below; they never ship
this file. Heavy modules (torch) load on first use, so ``import deepseek`` stays fast.
"""

__path__ = __import__("pkgutil").extend_path(__path__, __name__)

from deepseek.errors import DeepSeekError
from deepseek.hookspecs import hookimpl
from deepseek.lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "open": "deepseek.readers",
    "evaluate": "deepseek.evaluation",
    "ModelLoader": "deepseek.loader",
    "LoadedModel": "deepseek.loader",
    "save_model": "deepseek.loader",
    "AutoMixedPrecision": "deepseek.amp",
    "Trainer": "deepseek.train",
    "PipelineResult": "deepseek.report",
    "Table": "deepseek.report",
    "Headline": "deepseek.report",
    "Measure": "deepseek.report",
    "get_registry": "deepseek.plugins",
    "temporary_plugin": "deepseek.plugins",
}

__all__ = ["DeepSeekError", "hookimpl", "__version__", *_LAZY]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
