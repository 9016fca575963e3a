"""The defect detector without PyTorch: its streaming step as an ONNX graph on onnxruntime.

``defect-3dcnn-lstm`` ships its packaged weights twice: ``defect-3dcnn-lstm.safetensors`` (the
PyTorch model) and ``defect-3dcnn-lstm.stream.onnx``, the streaming step exported from them
(inputs ``frames`` uint8 ``1 x T x H x W`` with T, H and W free, ``buffer``, ``h``, ``c``;
outputs ``logits``, ``maps`` and the new state). Its metadata holds the sha256 of the
safetensors file it came from, so a stale export is refused rather than run.

:class:`OnnxNet` is that graph with what the stream and image scoring need from a model: the
zero state for a frame size and a one-clip forward. :func:`stream_onnx_for` finds the export
of a model reference: the packaged one for the registered name, ``<stem>.stream.onnx`` beside
a ``.safetensors`` file (``deepseek manufacturing export`` or ``train`` writes it), or a
``.stream.onnx`` file given directly.

Beside the streaming step, ``<stem>.still.onnx`` holds the same network for still photos
(:meth:`deepseek.manufacturing.model.DefectNet.still`: input ``images`` uint8 ``B x H x W``,
all free; outputs ``logits`` ``B x frames`` and ``maps``, the frames recorded in its
metadata): each photo encoded once instead of once per frame it is held for, about 2.2 times
faster for ``score`` on an edge install. It is stamped like the step, and a still export
from other weights than its step is refused; without one (an export written before it
existed) photos go through the step, with the same scores.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.manufacturing.errors import ManufacturingError

STRIDE = 16  # pixels per map cell of defect-3dcnn-lstm
NAME = "defect-3dcnn-lstm"
STREAM_SUFFIX = ".stream.onnx"
STILL_SUFFIX = ".still.onnx"
PHOTO_SUFFIX = ".photo.onnx"
INPUTS = ["frames", "buffer", "h", "c"]
OUTPUTS = ["logits", "maps", "buffer_out", "h_out", "c_out"]
STILL_INPUTS, STILL_OUTPUTS = ["images"], ["logits", "maps"]
#: frames a still photo is held in front of the temporal model (its score is the last one's)
FRAMES = 8
#: the metadata key of a still-photo export that says how many frames it holds a photo for
FRAMES_META_KEY = "deepseek.still_frames"
#: the metadata key of a photo-decision export (``<stem>.photo.onnx``) that records what it
#: decides with (JSON): threshold and where it came from, views, scale, bit depth, frames
PHOTO_META_KEY = "deepseek.photo"
FULL_HINT = 'pip install "deepseek-manufacturing[full]"'


def have_torch() -> bool:
    """Whether PyTorch is installed (else the ONNX exports run on onnxruntime)."""
    from deepseek.extras import missing

    return not missing("torch")


def torch_missing(instead: str) -> ManufacturingError:
    """The error for ``--backend torch`` where PyTorch is not installed; ``instead``: what
    this install does with ``--backend auto`` (e.g. "scores on onnxruntime")."""
    return ManufacturingError(f"backend torch needs PyTorch, which is not installed "
                              f"({FULL_HINT}); this install {instead} (--backend auto)")


def deepseek_meta(path: Any) -> dict[str, Any] | None:
    """The ``deepseek`` JSON metadata in a ``.safetensors`` file's header, read from the header
    alone: what a good-parts model (a patch memory, a DRAEM pair) keeps, its ``kind`` among
    it. None for any other file (a crack network keeps its own under ``deepseek.extra``)."""
    p = Path(str(path))
    if p.suffix != ".safetensors" or not p.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(p), framework="numpy") as f:
            meta = json.loads((f.metadata() or {}).get("deepseek", "{}"))
    except Exception:  # unreadable here: the loader that reads it says what is wrong
        return None
    return meta if isinstance(meta, dict) and meta else None


def stored_extra(model: Any) -> dict[str, Any]:
    """What ``train`` stored with a network's ``.safetensors`` weights file (its threshold,
    views, scale, bit depth, expected figures), which an ONNX export of them carries too
    (``manufacturing export`` copies it: the edge form scores as the weights do); {} for
    anything else. Read once per file version, for ``score`` and the stream alike."""
    if not isinstance(model, (str, Path)) or Path(model).suffix not in (".safetensors",
                                                                        ".onnx") \
            or not Path(model).is_file():
        return {}
    st = Path(model).stat()
    return copy.deepcopy(_read_extra(str(Path(model).resolve()), st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=8)
def _read_extra(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    """:func:`~deepseek.loader.read_model_extra`, once per file version (an ONNX file's
    metadata is read by opening a session)."""
    from deepseek.loader import read_model_extra

    return read_model_extra(path)


def refuse_good_parts_model(model: Any, what: str) -> None:
    """A :class:`ManufacturingError` when ``model`` is a good-parts model file (no crack
    network inside), saying ``what`` needs a crack network and where the file serves."""
    meta = deepseek_meta(model) if isinstance(model, (str, Path)) else None
    if meta is not None and "kind" in meta:
        raise ManufacturingError(
            f"{model}: a good-parts model ({meta['kind']}, train --good-only): it scores part "
            f"photos with `deepseek manufacturing score`; {what} needs a crack network (train, "
            "train --folder, or the packaged weights)")


def stream_path_for(weights: str | Path) -> Path:
    """Where the streaming export of ``weights`` (a ``.safetensors`` file) lives."""
    weights = Path(weights)
    return weights.with_name(weights.name.removesuffix(".safetensors") + STREAM_SUFFIX)


def still_path_for(stream: str | Path) -> Path:
    """Where the still-photo export that goes with a streaming export (``<stem>.stream.onnx``)
    lives: ``<stem>.still.onnx`` beside it."""
    stream = Path(stream)
    return stream.with_name(stream.name.removesuffix(STREAM_SUFFIX) + STILL_SUFFIX)


def exported_from(session: Any, weights: str | Path) -> bool:
    """Whether the ONNX ``session``'s file records ``weights`` (their sha256) as its source:
    an export made from other weights, or from these before they changed, is stale."""
    from deepseek.loader import SOURCE_META_KEY, file_sha256

    return session.get_modelmeta().custom_metadata_map.get(SOURCE_META_KEY) == \
        file_sha256(weights)


def photo_beside(weights: str | Path) -> Path:
    """Where the photo decision of a ``.safetensors`` file lives: ``<stem>.photo.onnx``
    beside it (``train`` and ``export`` write it there)."""
    weights = Path(weights)
    return weights.with_name(weights.name.removesuffix(".safetensors") + PHOTO_SUFFIX)


def photo_path_for(stream: str | Path) -> Path:
    """Where the photo-decision export that goes with a streaming export lives:
    ``<stem>.photo.onnx`` beside it (for ``deepseek serve``; ``score`` and the stream do not
    read it)."""
    stream = Path(stream)
    return stream.with_name(stream.name.removesuffix(STREAM_SUFFIX) + PHOTO_SUFFIX)


def stream_onnx_for(model: Any) -> tuple[Path, Path | None] | None:
    """The streaming ONNX export for a model reference (registered name, ``.safetensors``
    or ``.stream.onnx`` path) and the weights it must have been exported from (``None`` for
    an export given directly), or ``None`` when there is none."""
    ref = str(model)
    if ref.endswith(".onnx"):
        path = Path(ref)
        if not path.is_file():
            raise ManufacturingError(f"{path}: no such file")
        return path, None
    if Path(ref).suffix == ".safetensors":
        weights = Path(ref)
        if not weights.is_file():
            raise ManufacturingError(f"{weights}: no such file")
    else:
        from deepseek.plugins import models

        registry = models()
        if ref not in registry:
            return None
        packaged = registry.entry(ref).meta.get("weights")
        if not packaged:
            return None
        weights = Path(packaged)
    path = stream_path_for(weights)
    return (path, weights) if path.is_file() else None


class StillGraph:
    """A still-photo graph in memory (:func:`deepseek.manufacturing.model.export_still_onnx`
    of a network being trained) on onnxruntime: what training scores its held-out photos
    with, so that the threshold is set on the scores of the runtime that ``score`` runs
    (:func:`deepseek.manufacturing.stream.scoring_net`), at about half PyTorch's time."""

    def __init__(self, graph: bytes, frames: int) -> None:
        import onnxruntime as ort

        from deepseek.loader import session_options

        self.session = ort.InferenceSession(graph, session_options(),
                                            providers=["CPUExecutionProvider"])
        self.frames = int(frames)

    def eval(self) -> StillGraph:  # the same call as on a torch module
        """Return the graph itself (the same call as on a torch module)."""
        return self

    def still(self, images: np.ndarray, frames: int = FRAMES) -> tuple[np.ndarray, np.ndarray]:
        """Still photos ``images (B, H, W)`` uint8 (multiples of 16) -> frame logits ``(B,
        frames)`` and map logits ``(B, frames, H/16, W/16)``."""
        if frames != self.frames:
            raise ManufacturingError(f"frames={frames}: this still-photo graph holds a photo "
                                     f"for {self.frames}")
        lg, mp = self.session.run(None, {"images": np.ascontiguousarray(images)})
        return lg, mp


class OnnxNet:
    """A streaming-step ONNX export of ``defect-3dcnn-lstm`` (see the module docstring)."""

    def __init__(self, path: str | Path, source: str | None = None,
                 weights: str | Path | None = None) -> None:
        """``weights``: the safetensors file the export must come from (its sha256 recorded
        in the export); a stale export is refused."""
        from deepseek.extras import require

        require("runtime", "the defect detector without PyTorch")
        import onnxruntime as ort

        from deepseek.loader import session_options

        self.path = Path(path)
        self.source = source or str(path)
        try:
            self.session = ort.InferenceSession(str(self.path), session_options(),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ManufacturingError(f"{self.path}: not a readable ONNX file ({exc})") from exc
        ins = self.session.get_inputs()
        names = [i.name for i in ins]
        if names != INPUTS or [o.name for o in self.session.get_outputs()] != OUTPUTS:
            stream = self.path.with_name(self.path.name.removesuffix(STILL_SUFFIX)
                                         + STREAM_SUFFIX)
            if self.path.name.endswith(STILL_SUFFIX) and stream.is_file():
                raise ManufacturingError(
                    f"{self.path}: the still-photo export; give the streaming export beside "
                    f"it, {stream} (the still one is found by its name), or the weights")
            if [i.name for i in ins] == ["image"]:
                raise ManufacturingError(
                    f"{self.path}: a photo-decision export, made to be served (deepseek "
                    f"serve {self.path}: a photo in, its score and decision out); to score "
                    "or stream here give the streaming export beside it (<stem>"
                    f"{STREAM_SUFFIX}) or the weights")
            raise ManufacturingError(
                f"{self.path}: inputs {names} are not those of a streaming export of {NAME} "
                f"({INPUTS}); write one with `deepseek manufacturing export WEIGHTS`")
        buf, h = ins[1].shape, ins[2].shape
        if not (len(buf) == 5 and all(isinstance(d, int) for d in buf[1:3]) and len(h) == 3
                and isinstance(h[2], int)):
            raise ManufacturingError(f"{self.path}: state shapes {buf}, {h} are not those of a "
                                     f"{NAME} step (frame size and time must be free)")
        self.channels, self.keep, self.hidden = int(buf[1]), int(buf[2]), int(h[2])
        if weights is not None:
            if not exported_from(self.session, weights):
                raise ManufacturingError(
                    f"{self.path} was not exported from {weights} (its recorded source "
                    f"differs): re-export it with `deepseek manufacturing export {weights}` "
                    f"(needs PyTorch: {FULL_HINT})")
        self.still_session, self.still_frames = self._open_still()

    def _open_still(self) -> tuple[Any, int | None]:
        """The still-photo export beside the step (:func:`still_path_for`) and the frames it
        holds a photo for, or ``(None, None)`` when there is none."""
        import onnxruntime as ort

        from deepseek.loader import SOURCE_META_KEY, session_options

        path = still_path_for(self.path)
        if not self.path.name.endswith(STREAM_SUFFIX) or not path.is_file():
            return None, None
        try:
            session = ort.InferenceSession(str(path), session_options(),
                                           providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ManufacturingError(f"{path}: not a readable ONNX file ({exc}); delete it or "
                                     "re-export with `deepseek manufacturing export "
                                     "WEIGHTS`") from exc
        frames = session.get_modelmeta().custom_metadata_map.get(FRAMES_META_KEY, "")
        if [i.name for i in session.get_inputs()] != STILL_INPUTS or \
                [o.name for o in session.get_outputs()] != STILL_OUTPUTS or \
                not frames.isdigit() or int(frames) < 1:
            raise ManufacturingError(f"{path}: not a still-photo export of {NAME} (inputs "
                                     f"{STILL_INPUTS}, outputs {STILL_OUTPUTS}, frames in "
                                     f"{FRAMES_META_KEY!r}); delete it or "
                                     "re-export with `deepseek manufacturing export WEIGHTS`")
        mine, its = (s.get_modelmeta().custom_metadata_map.get(SOURCE_META_KEY)
                     for s in (self.session, session))
        if mine != its:
            raise ManufacturingError(
                f"{path} and {self.path} were exported from different weights: re-export "
                f"both with `deepseek manufacturing export WEIGHTS` (needs PyTorch: "
                f"{FULL_HINT})")
        return session, int(frames)

    def eval(self) -> OnnxNet:  # the same call as on a torch module
        """Return the network itself (the same call as on a torch module)."""
        return self

    def initial_state(self, height: int, width: int) -> list[np.ndarray]:
        """Zero ``[buffer, h, c]`` for frames of ``height x width`` (multiples of 16)."""
        return [np.zeros((1, self.channels, self.keep, height // STRIDE, width // STRIDE),
                         np.float32),
                np.zeros((1, 1, self.hidden), np.float32),
                np.zeros((1, 1, self.hidden), np.float32)]

    def clip(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``frames (T, H, W)`` uint8, H and W multiples of 16, from a fresh state -> frame
        logits ``(T,)`` and map logits ``(T, H/16, W/16)``."""
        buf, h, c = self.initial_state(*frames.shape[1:])
        lg, mp, *_ = self.session.run(None, {"frames": np.ascontiguousarray(frames)[None],
                                             "buffer": buf, "h": h, "c": c})
        return lg[0], mp[0]

    def still(self, images: np.ndarray, frames: int = FRAMES) -> tuple[np.ndarray, np.ndarray]:
        """Still photos ``images (B, H, W)`` uint8 (H and W multiples of 16), each held for
        ``frames`` frames from a fresh state -> frame logits ``(B, frames)`` and map logits
        ``(B, frames, H/16, W/16)``: the still-photo export when there is one for that many
        frames (each photo encoded once), else each photo repeated through the step."""
        if frames < 1:
            raise ManufacturingError(f"frames={frames}: give at least 1")
        images = np.ascontiguousarray(images)
        if self.still_session is not None and frames == self.still_frames:
            lg, mp = self.still_session.run(None, {"images": images})
            return lg, mp
        runs = [self.clip(np.repeat(im[None], frames, axis=0)) for im in images]
        return np.stack([r[0] for r in runs]), np.stack([r[1] for r in runs])

    def __repr__(self) -> str:
        return f"OnnxNet({self.source!r})"


def load_onnx_net(model: Any) -> OnnxNet:
    """The :class:`OnnxNet` for a model reference, or an error that says how to get one."""
    found = stream_onnx_for(model)
    if found is None:
        where = ("a .safetensors file has none beside it" if str(model).endswith(".safetensors")
                 else f"{model!r} is not a registered name with a packaged export")
        raise ManufacturingError(
            f"{model}: no streaming ONNX export to run without PyTorch ({where}). Export one "
            f"with `deepseek manufacturing export WEIGHTS` where PyTorch is installed "
            f"({FULL_HINT}), or install PyTorch here")
    path, weights = found
    return OnnxNet(path, source=str(model), weights=weights)


def trained_digests(model: Any) -> set[str] | None:
    """The pixel digests of the images ``model`` learnt from: kept in a good-parts model's
    metadata, or in the ``training.json`` beside weights from ``train`` (None when neither
    says, e.g. the packaged weights or weights moved without their run folder); for an ONNX
    export (``<stem>.stream.onnx``, ``.still.onnx``, ``.photo.onnx``), those of
    ``<stem>.safetensors`` beside it."""
    meta = deepseek_meta(model)
    if meta is None:
        p = Path(str(model))
        for suffix in (STREAM_SUFFIX, STILL_SUFFIX, PHOTO_SUFFIX):
            if p.name.endswith(suffix):  # an export: the weights it was made from
                p = p.with_name(p.name.removesuffix(suffix) + ".safetensors")
        run = p.with_name("training.json")
        try:
            summary = json.loads(run.read_text()) if p.suffix == ".safetensors" else None
        except (OSError, ValueError):
            summary = None
        if not isinstance(summary, dict) or Path(str(summary.get("model"))).name != p.name:
            return None
        meta = summary
    found = meta.get("image_digests")
    return set(found) if isinstance(found, list) else None
