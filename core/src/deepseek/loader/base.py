"""What every source kind shares: PyTorch when installed, devices, precisions, the options of
one load, and telling a model file's format from its content."""

from __future__ import annotations

import difflib
import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import torch
except ImportError:  # an edge install: ONNX models on onnxruntime only
    torch = None  # type: ignore[assignment]

from deepseek.errors import ModelLoadError, PrecisionError

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
#: ONNX metadata: what an export's inputs take beyond the graph's shapes, a JSON list of
#: ``{"name", "multiple", "example"}`` as a registered model declares them (each axis's step,
#: one concrete shape); the model server checks requests against the steps and times the
#: model at the example (:func:`deepseek.loader.onnx.declared_onnx_inputs`)
INPUTS_META_KEY = "deepseek.inputs"
PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle", ".tar"}
#: ModelLoader.load's own keyword arguments (a misspelt one is suggested from these)
LOAD_KEYWORDS = ("framework", "precision", "device", "trust_pickle", "pretrained", "weights",
                 "architecture", "onnx_threads")


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
        """The source's type: the part before the first ``:`` (``registry``, ``file``, ``zoo``)."""
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
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise PrecisionError(f"unknown device {device!r} ({exc}); use 'cpu', 'cuda', "
                             "'cuda:N' or 'auto'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PrecisionError(f"device {device!r} requested but CUDA is not available here; "
                             "use device='cpu' or 'auto'")
    return dev


def check_precision_name(precision: str) -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`.

    Raises:
        PrecisionError: an unknown name, with the known ones.
    """
    if precision not in PRECISIONS:
        raise PrecisionError(
            f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return precision


def resolve_precision(precision: str) -> Any:
    """The torch dtype of a precision name."""
    return getattr(require_torch("a torch precision"), PRECISIONS[check_precision_name(
        precision)])


def check_precision(device: Any, dtype: Any) -> None:
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


@dataclass
class LoadOptions:
    """The options of one :meth:`ModelLoader.load` call, checked once."""

    framework: str = "auto"
    precision: str = "fp32"
    device: Any = None
    trust_pickle: bool = False
    pretrained: bool | None = None
    weights: str | Path | None = None
    architecture: str | None = None
    onnx_threads: int | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if str(self.framework).lower() in TF_FRAMEWORKS:
            raise ModelLoadError(TF_MESSAGE)
        if self.framework not in FRAMEWORKS:
            raise ModelLoadError(f"unknown framework {self.framework!r}; use one of "
                                 f"{', '.join(FRAMEWORKS)} ({TF_MESSAGE})")
        check_precision_name(self.precision)
        self.device = resolve_device(self.device if self.device is not None else "auto")

    @property
    def dtype(self) -> Any:
        """The torch dtype of the precision (None without PyTorch)."""
        return getattr(torch, PRECISIONS[self.precision]) if torch is not None else None

    def refuse_config(self, what: str) -> None:
        """A model file that carries everything (ONNX, TorchScript, a pickled module) takes
        no builder config: an extra keyword is a mistake (often a misspelt option)."""
        if not self.config:
            return
        key = next(iter(self.config))
        close = difflib.get_close_matches(key, LOAD_KEYWORDS, n=1, cutoff=0.6)
        raise ModelLoadError(
            f"{what}: unknown keyword argument(s) {', '.join(map(repr, self.config))}"
            + (f"; did you mean {close[0]!r}?" if close else "")
            + f" (ModelLoader.load takes {', '.join(LOAD_KEYWORDS)}; other keywords are "
              "config of registry models and safetensors files)")


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, as hex (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
