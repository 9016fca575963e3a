"""The model zoo: every architecture of timm, by name, through the model registry.

With the ``zoo`` extra installed (``pip install "deepseek-core[zoo]"``, which brings timm),
``ModelLoader.load("resnet50")``, ``deepseek summary resnet50`` and ``deepseek models
'resnet*'`` work for timm's architectures as for the plugins' own models; a name a plugin
registers wins over a timm name.

Weights never come from the network. ``pretrained=True`` takes them, in this order, from

1. ``weights=PATH`` (``.safetensors``, or a ``.pth``/``.bin`` state dict read with
   ``torch.load(weights_only=True)``, which cannot run code);
2. ``$DEEPSEEK_ZOO_DIR/<name>.safetensors`` (default folder ``~/.cache/deepseek/zoo``);
3. the Hugging Face cache that timm itself fills (``~/.cache/huggingface/hub``), read
   without any network access;

and otherwise fails with a message that says where to put the file. Without
``pretrained=True`` a zoo model is built with random weights.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import logging
import os
from functools import partial
from pathlib import Path
from typing import Any

from deepseek.errors import ModelLoadError
from deepseek.registry import Entry

log = logging.getLogger(__name__)

ZOO_DIR_ENV = "DEEPSEEK_ZOO_DIR"
PREFIX = "timm/"


_import_error: str | None = None


def available() -> bool:
    """Whether timm is installed (checked without importing it)."""
    return importlib.util.find_spec("timm") is not None


def import_error() -> str | None:
    """Why an installed timm could not be imported (once tried), else None."""
    return _import_error


def zoo_dir() -> Path:
    """Where local zoo weights are looked for: ``$DEEPSEEK_ZOO_DIR`` or ~/.cache/deepseek/zoo."""
    env = os.environ.get(ZOO_DIR_ENV)
    return Path(env) if env else Path.home() / ".cache" / "deepseek" / "zoo"


def _timm() -> Any:
    import timm

    return timm


def _try_timm() -> Any | None:
    """timm, or None when it is installed but fails to import (typically a torchvision
    built for another torch); the reason is kept for :func:`import_error`."""
    global _import_error
    if _import_error is not None:
        return None
    try:
        return _timm()
    except Exception as exc:  # a broken install must not break the model registry
        _import_error = (f"timm is installed but does not import ({type(exc).__name__}: "
                         f"{exc}); timm needs a torchvision built for this torch "
                         f"(pip install torchvision matching torch)")
        log.warning("%s", _import_error)
        return None


class TimmProvider:
    """Answers model-registry lookups for timm architecture names (``resnet50``, also
    ``timm/resnet50`` and tagged names such as ``resnet50.a1_in1k``)."""

    name = "timm"

    def __init__(self) -> None:
        self._names: list[str] | None = None

    def _all(self) -> list[str]:
        if self._names is None:
            timm = _try_timm()
            self._names = sorted(timm.list_models()) if timm is not None else []
        return self._names

    @staticmethod
    def _arch(name: str) -> str:
        return name[len(PREFIX):] if name.startswith(PREFIX) else name

    def lookup(self, name: str) -> Entry | None:
        arch = self._arch(name)
        if arch.split(".", 1)[0] not in set(self._all()):
            return None
        channels, height, width = input_size(arch)
        return Entry(name, partial(create, arch), plugin="timm",
                     description=f"timm architecture {arch} (random weights unless "
                                 "pretrained=True finds local weights)",
                     meta={"config": {}, "zoo": "timm", "architecture": arch,
                           "inputs": [{"name": "image", "dtype": "float32",
                                       "shape": [-1, channels, height, width]}]})

    def names(self, pattern: str) -> list[str]:
        pat = pattern.lower()
        if pat in ("*", ""):
            return []  # listing all of timm is opt-in: give a pattern
        if not any(c in pat for c in "*?["):
            pat = f"*{pat}*"
        return [n for n in self._all() if fnmatch.fnmatchcase(n.lower(), pat)]

    def count(self) -> int:
        return len(self._all())


def input_size(arch: str) -> tuple[int, int, int]:
    """(channels, height, width) of an architecture's default pretrained configuration."""
    try:
        cfg = _timm().models.get_pretrained_cfg(arch)
        size = tuple(int(v) for v in (getattr(cfg, "input_size", None) or (3, 224, 224)))
        return size if len(size) == 3 else (3, 224, 224)  # type: ignore[return-value]
    except Exception:
        return (3, 224, 224)


def _hub_id(arch: str) -> str | None:
    try:
        cfg = _timm().models.get_pretrained_cfg(arch)
    except Exception:
        return None
    return getattr(cfg, "hf_hub_id", None) if cfg is not None else None


def _cached_hub_file(hub_id: str) -> str | None:
    """A weights file of ``hub_id`` already in the Hugging Face cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        found = try_to_load_from_cache(repo_id=hub_id, filename=filename)
        if isinstance(found, str) and Path(found).is_file():
            return found
    return None


def find_weights(arch: str, weights: str | Path | None = None) -> Path:
    """The local weights file for ``arch`` (see the module docstring), or a ModelLoadError
    saying where to put one."""
    if weights is not None:
        p = Path(weights)
        if not p.is_file():
            raise ModelLoadError(f"weights file {p} does not exist")
        return p
    folder = zoo_dir()
    for cand in dict.fromkeys([arch, arch.split(".", 1)[0]]):
        p = folder / f"{cand}.safetensors"
        if p.is_file():
            return p
    hub_id = _hub_id(arch)
    cached = _cached_hub_file(hub_id) if hub_id else None
    if cached:
        return Path(cached)
    where = folder / f"{arch.split('.', 1)[0]}.safetensors"
    hub = (f", or fill the Hugging Face cache on a connected machine (huggingface-cli download "
           f"{hub_id}) and copy ~/.cache/huggingface/hub here") if hub_id else ""
    raise ModelLoadError(
        f"no local weights for timm model {arch!r} and nothing is downloaded at run time: "
        f"put its state dict at {where} (set ${ZOO_DIR_ENV} to use another folder), or pass "
        f"weights=PATH{hub}; pretrained=False builds it with random weights")


def _read_state(path: Path) -> dict[str, Any]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a state dict that torch.load(weights_only=True) "
                             f"reads ({exc}); convert it to .safetensors") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state


def create(arch: str, *, pretrained: bool = False, weights: str | Path | None = None,
           **kwargs: Any) -> Any:
    """Build timm architecture ``arch`` (``kwargs`` go to ``timm.create_model``, e.g.
    ``num_classes=2, in_chans=1``); with ``pretrained`` load local weights (never a download),
    adapted by timm to ``num_classes``/``in_chans`` where they differ."""
    timm = _timm()
    if not pretrained:
        if weights is not None:
            raise ModelLoadError("weights= was given with pretrained=False; pass "
                                 "pretrained=True to load them")
        try:
            return timm.create_model(arch, pretrained=False, **kwargs)
        except (TypeError, RuntimeError, ValueError) as exc:
            raise ModelLoadError(f"timm model {arch!r}: bad config {kwargs}: {exc}") from exc
    path = find_weights(arch, weights)
    state = _read_state(path)
    try:
        model = timm.create_model(arch, pretrained=True, **kwargs,
                                  pretrained_cfg_overlay={"state_dict": state, "source": "",
                                                          "custom_load": False})
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ModelLoadError(f"timm model {arch!r}: weights {path} do not fit: {exc}") from exc
    log.info("timm model %s: weights from %s", arch, path)
    return model
