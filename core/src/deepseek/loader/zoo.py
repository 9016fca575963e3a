"""The model zoo: well-known image classifiers by name, built by Hugging Face transformers.

With the ``zoo`` extra (``pip install "deepseek-core[zoo]"``, which brings transformers)
``ModelLoader.load("resnet50")``, ``deepseek summary vit_base_patch16_224`` and ``deepseek
models 'convnext*'`` work as for the plugins' own models. transformers implements these
architectures in plain PyTorch, so the zoo needs no torchvision and runs on any PyTorch build
(CPU-only included). The names follow timm's (``resnet50``, ``vit_base_patch16_224``,
``convnext_tiny``, ``swin_tiny_patch4_window7_224``, ``efficientnet_b0`` ...: :data:`ZOO`);
``hf/TYPE`` builds any transformers image-classification type with its default config
(``hf/dinov2``, ``hf/beit``). A zoo model takes an image batch ``(N, C, H, W)`` and returns
logits ``(N, classes)``; config: ``num_classes`` (default 1000), ``in_chans`` (3), and any
field of the transformers config (``hidden_dropout_prob``, ``depths``...).

The names are owned like a plugin's (the zoo is ``zoo:NAME`` when qualified): a plugin that
registers ``resnet50`` contests it with the zoo (:mod:`deepseek.registry`).

Weights never come from the network. ``pretrained=True`` takes them, in this order, from

1. ``weights=PATH``: a ``.safetensors`` state dict of the model, or a folder written by
   transformers' ``save_pretrained`` (``config.json`` + ``model.safetensors``);
2. ``$DEEPSEEK_ZOO_DIR/<name>.safetensors`` or ``$DEEPSEEK_ZOO_DIR/<name>/`` (default folder
   ``~/.cache/deepseek/zoo``);
3. the Hugging Face cache (``~/.cache/huggingface/hub``) of the checkpoint the name stands
   for (``resnet50``: ``microsoft/resnet-50``), read with ``local_files_only``;

and otherwise fails with a message that says where to put the file. Without
``pretrained=True`` a zoo model is built with random weights (``trained`` is False, and
``deepseek serve`` refuses it without ``--allow-untrained``).
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
import os
from functools import partial
from pathlib import Path
from typing import Any

from deepseek.errors import ModelLoadError
from deepseek.registry import Entry

log = logging.getLogger(__name__)

ZOO_DIR_ENV = "DEEPSEEK_ZOO_DIR"
HF_PREFIX = "hf/"
#: timm-style config names -> transformers config fields
ALIASES = {"num_classes": "num_labels", "in_chans": "num_channels"}


def _resnet(depths: list[int], bottleneck: bool) -> dict[str, Any]:
    widths = [256, 512, 1024, 2048] if bottleneck else [64, 128, 256, 512]
    return {"depths": depths, "hidden_sizes": widths,
            "layer_type": "bottleneck" if bottleneck else "basic"}


def _vit(width: int, layers: int, heads: int) -> dict[str, Any]:
    return {"hidden_size": width, "num_hidden_layers": layers, "num_attention_heads": heads,
            "intermediate_size": 4 * width, "image_size": 224, "patch_size": 16}


def _effnet(width: float, depth: float, size: int, dropout: float, head: int) -> dict[str, Any]:
    return {"width_coefficient": width, "depth_coefficient": depth, "image_size": size,
            "dropout_rate": dropout, "hidden_dim": head}


#: name -> (transformers model type, config, Hugging Face checkpoint of the same architecture)
ZOO: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "resnet18": ("resnet", _resnet([2, 2, 2, 2], False), "microsoft/resnet-18"),
    "resnet34": ("resnet", _resnet([3, 4, 6, 3], False), "microsoft/resnet-34"),
    "resnet50": ("resnet", _resnet([3, 4, 6, 3], True), "microsoft/resnet-50"),
    "resnet101": ("resnet", _resnet([3, 4, 23, 3], True), "microsoft/resnet-101"),
    "resnet152": ("resnet", _resnet([3, 8, 36, 3], True), "microsoft/resnet-152"),
    "vit_tiny_patch16_224": ("vit", _vit(192, 12, 3), None),
    "vit_small_patch16_224": ("vit", _vit(384, 12, 6), None),
    "vit_base_patch16_224": ("vit", _vit(768, 12, 12), "google/vit-base-patch16-224"),
    "vit_large_patch16_224": ("vit", _vit(1024, 24, 16), "google/vit-large-patch16-224"),
    "deit_tiny_patch16_224": ("deit", _vit(192, 12, 3), "facebook/deit-tiny-patch16-224"),
    "deit_small_patch16_224": ("deit", _vit(384, 12, 6), "facebook/deit-small-patch16-224"),
    "deit_base_patch16_224": ("deit", _vit(768, 12, 12), "facebook/deit-base-patch16-224"),
    "convnext_tiny": ("convnext", {"depths": [3, 3, 9, 3], "hidden_sizes": [96, 192, 384, 768]},
                      "facebook/convnext-tiny-224"),
    "convnext_small": ("convnext", {"depths": [3, 3, 27, 3],
                                    "hidden_sizes": [96, 192, 384, 768]},
                       "facebook/convnext-small-224"),
    "convnext_base": ("convnext", {"depths": [3, 3, 27, 3],
                                   "hidden_sizes": [128, 256, 512, 1024]},
                      "facebook/convnext-base-224"),
    "swin_tiny_patch4_window7_224": ("swin", {"embed_dim": 96, "depths": [2, 2, 6, 2],
                                              "num_heads": [3, 6, 12, 24]},
                                     "microsoft/swin-tiny-patch4-window7-224"),
    "swin_small_patch4_window7_224": ("swin", {"embed_dim": 96, "depths": [2, 2, 18, 2],
                                               "num_heads": [3, 6, 12, 24]},
                                      "microsoft/swin-small-patch4-window7-224"),
    "swin_base_patch4_window7_224": ("swin", {"embed_dim": 128, "depths": [2, 2, 18, 2],
                                              "num_heads": [4, 8, 16, 32]},
                                     "microsoft/swin-base-patch4-window7-224"),
    "efficientnet_b0": ("efficientnet", _effnet(1.0, 1.0, 224, 0.2, 1280),
                        "google/efficientnet-b0"),
    "efficientnet_b1": ("efficientnet", _effnet(1.0, 1.1, 240, 0.2, 1280),
                        "google/efficientnet-b1"),
    "efficientnet_b2": ("efficientnet", _effnet(1.1, 1.2, 260, 0.3, 1408),
                        "google/efficientnet-b2"),
    "efficientnet_b3": ("efficientnet", _effnet(1.2, 1.4, 300, 0.3, 1536),
                        "google/efficientnet-b3"),
    "mobilenet_v2": ("mobilenet_v2", {"depth_multiplier": 1.0, "image_size": 224},
                     "google/mobilenet_v2_1.0_224"),
}


def available() -> bool:
    """Whether transformers is installed (checked without importing it)."""
    from deepseek.extras import missing

    return not missing("zoo")


def zoo_dir() -> Path:
    """Where local zoo weights are looked for: ``$DEEPSEEK_ZOO_DIR`` or ~/.cache/deepseek/zoo."""
    env = os.environ.get(ZOO_DIR_ENV)
    return Path(env) if env else Path.home() / ".cache" / "deepseek" / "zoo"


def _transformers(what: str) -> Any:
    from deepseek.extras import require

    require("zoo", what)
    import transformers

    return transformers


def _hf_classes() -> dict[str, Any]:
    """Image-classification model type -> class name(s), of the installed transformers."""
    from transformers.models.auto import modeling_auto

    return dict(modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES)


def _hf_types() -> list[str]:
    """The image-classification model types of the installed transformers."""
    return sorted(_hf_classes())


def _spec(arch: str) -> tuple[str, dict[str, Any], str | None]:
    if arch.startswith(HF_PREFIX):
        return arch[len(HF_PREFIX):], {}, None
    return ZOO[arch]


class ZooProvider:
    """Answers model-registry look-ups for the zoo's names (:data:`ZOO`) and ``hf/TYPE``."""

    name = "zoo"

    def lookup(self, name: str) -> Entry | None:
        """The zoo entry for ``name`` (a known architecture, or ``hf:`` a transformers model type),
        or None.
        """
        if name.startswith(HF_PREFIX):
            if not available() or name[len(HF_PREFIX):] not in _hf_types():
                return None
            size = 224
        elif name in ZOO:
            size = int(ZOO[name][1].get("image_size", 224))
        else:
            return None
        return Entry(name, partial(build, name), plugin=self.name,
                     description=f"{_spec(name)[0]} image classifier (transformers; random "
                                 "weights unless pretrained=True finds local ones)",
                     meta={"config": {}, "zoo": True, "architecture": name,
                           "inputs": [{"name": "image", "dtype": "float32",
                                       "shape": [-1, 3, size, size]}]})

    def names(self, pattern: str) -> list[str]:
        """Zoo names matching a glob ``pattern`` (none for ``*``: the zoo is listed on request)."""
        pat = pattern.lower()
        if pat in ("*", ""):
            return []  # listed on request: give a pattern (`deepseek models 'resnet*'`)
        if not any(c in pat for c in "*?["):
            pat = f"*{pat}*"
        found = [n for n in ZOO if fnmatch.fnmatchcase(n, pat)]
        if pat.startswith(HF_PREFIX) and available():
            found += [f"{HF_PREFIX}{t}" for t in _hf_types()
                      if fnmatch.fnmatchcase(f"{HF_PREFIX}{t}", pat)]
        return sorted(found)

    def count(self) -> int:
        """Number of architectures the zoo knows."""
        return len(ZOO)


def _config(arch: str, overrides: dict[str, Any]) -> Any:
    """The transformers config of ``arch`` with ``overrides`` (timm-style aliases allowed);
    a key the config does not have is refused with the closest one."""
    transformers = _transformers(f"zoo model {arch!r}")
    model_type, base, _ = _spec(arch)
    fields = {ALIASES.get(k, k): v for k, v in overrides.items()}
    known = set(transformers.AutoConfig.for_model(model_type).to_dict()) | {"num_labels"}
    for key in fields:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known) + list(ALIASES), n=1)
            from deepseek.loader.base import LOAD_KEYWORDS

            close = close or difflib.get_close_matches(key, LOAD_KEYWORDS, n=1, cutoff=0.6)
            raise ModelLoadError(f"zoo model {arch!r}: unknown config key {key!r}"
                                 + (f"; did you mean {close[0]!r}?" if close else "")
                                 + f" (num_classes, in_chans or a field of {model_type}'s "
                                 "transformers config)")
    classes = _hf_classes().get(model_type)
    if isinstance(classes, (list, tuple)):  # several heads (DeiT's teacher): the plain one
        fields.setdefault("architectures", [classes[0]])
    return transformers.AutoConfig.for_model(model_type, **{"num_labels": 1000, **base,
                                                            **fields})


_CLASSIFIER: list[type] = []  # the wrapper class, made once torch is imported


def _wrap(model: Any) -> Any:
    """``model`` as a module that takes an image batch and returns its logits."""
    if not _CLASSIFIER:
        import torch

        class ZooClassifier(torch.nn.Module):
            """A transformers image classifier as an image batch -> logits module."""

            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.model = inner

            def forward(self, image: Any) -> Any:
                return self.model(pixel_values=image).logits

        _CLASSIFIER.append(ZooClassifier)
    return _CLASSIFIER[0](model)


def build(arch: str, *, pretrained: bool = False, weights: str | Path | None = None,
          **config: Any) -> tuple[Any, dict[str, Any], bool]:
    """Build zoo architecture ``arch``: ``(module, config, trained)``; with ``pretrained``
    its weights come from local files only (see the module docstring)."""
    transformers = _transformers(f"zoo model {arch!r}")
    if not pretrained:
        if weights is not None:
            raise ModelLoadError("weights= was given with pretrained=False; pass "
                                 "pretrained=True to load them")
        cfg = _config(arch, config)
        model = transformers.AutoModelForImageClassification.from_config(cfg)
        log.info("zoo model %s: random weights (pretrained=True loads local ones)", arch)
        return _wrap(model), dict(config), False
    source = find_weights(arch, weights)
    if source.is_dir() or not source.suffix:
        model = _from_pretrained(arch, source, config)
    else:
        model = transformers.AutoModelForImageClassification.from_config(_config(arch, config))
        _load_state(model, source, arch)
    log.info("zoo model %s: weights from %s", arch, source)
    return _wrap(model), dict(config), True


def _from_pretrained(arch: str, source: Path, config: dict[str, Any]) -> Any:
    transformers = _transformers(f"zoo model {arch!r}")
    fields = {ALIASES.get(k, k): v for k, v in config.items()}
    try:
        return transformers.AutoModelForImageClassification.from_pretrained(
            str(source), local_files_only=True, **fields)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"zoo model {arch!r}: {source} is not a usable transformers "
                             f"checkpoint folder: {exc}") from exc


def _load_state(model: Any, path: Path, arch: str) -> None:
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a readable .safetensors state dict ({exc})") from exc
    if state and all(k.startswith("model.") for k in state):  # saved from the zoo's wrapper
        state = {k[len("model."):]: v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelLoadError(f"zoo model {arch!r}: weights {path} do not fit (missing "
                             f"{sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]})")


def _cached_checkpoint(hub_id: str) -> Path | None:
    """The snapshot folder of ``hub_id`` in the Hugging Face cache (no network), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id=hub_id, filename="config.json")
    return Path(found).parent if isinstance(found, str) and Path(found).is_file() else None


def find_weights(arch: str, weights: str | Path | None = None) -> Path:
    """The local weights (file or checkpoint folder) for ``arch``, or a ModelLoadError that
    says where to put them."""
    if weights is not None:
        p = Path(weights)
        if not p.exists():
            raise ModelLoadError(f"weights {p} do not exist")
        return p
    folder = zoo_dir()
    safe = arch.replace("/", "_")
    for cand in (folder / f"{safe}.safetensors", folder / safe):
        if cand.exists():
            return cand
    hub_id = None if arch.startswith(HF_PREFIX) else ZOO[arch][2]
    cached = _cached_checkpoint(hub_id) if hub_id else None
    if cached is not None:
        return cached
    hub = (f", or fill the Hugging Face cache on a connected machine (hf download {hub_id}) "
           "and copy ~/.cache/huggingface/hub here") if hub_id else ""
    raise ModelLoadError(
        f"no local weights for zoo model {arch!r} and nothing is downloaded at run time: put "
        f"a state dict at {folder / (safe + '.safetensors')} or a save_pretrained folder at "
        f"{folder / safe} (set ${ZOO_DIR_ENV} to use another folder), or pass "
        f"weights=PATH{hub}; pretrained=False builds it with random weights")
