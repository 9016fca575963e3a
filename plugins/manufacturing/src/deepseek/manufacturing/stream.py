"""``DefectStream``: frames in, crack decisions and events out, as fast as the line runs.

Stages: the source's grabber thread decodes and converts frames while the stream thread
preprocesses (stack, pad to a multiple of 16) and runs the model on whatever has queued up
(at most ``max_batch`` frames per step, 4 by default: :data:`MAX_BATCH`; a batch is a run of
consecutive frames, the recurrent state carries from one batch to the next). Decoding and
inference overlap, since OpenCV and onnxruntime both release the GIL. The model gets the
CPU budget less the core the grabber decodes on (:func:`stream_threads`): on two cores, a
model step on both would take the decoder's core and slow both (measured: 430-570 fps end
to end with two model threads, 555-600 with one, on this project's 2-core machine).

Decisions: a frame is *flagged* when its probability reaches ``threshold``. An *event* (a
defect that should stop the line) starts when ``k`` of the last ``n`` frames are flagged
(debounce) and ends when ``n`` frames in a row are not. At the start the callback gets a
:class:`DefectEvent` (frame index, time, score, box from the localisation map, width estimate),
and both ends go to the JSON-lines event log.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import numpy as np

from deepseek.manufacturing.errors import ManufacturingError
from deepseek.manufacturing.formats import VIEWS
from deepseek.manufacturing.runtime import (
    FRAMES,
    STRIDE,
    OnnxNet,
    StillGraph,
    have_torch,
    load_onnx_net,
    refuse_good_parts_model,
    stored_extra,
    torch_missing,
)
from deepseek.paths import AppendedLines

if TYPE_CHECKING:
    from deepseek.manufacturing.model import DefectNet

log = logging.getLogger(__name__)

#: frames per model step at most (``DefectStream(max_batch=...)``). On CPU a step's cost per
#: frame does not fall with the batch (the network is convolutional, frame by frame, and
#: recurrent over time), and larger batches leave the cache: end to end on 640x480 video,
#: 2-core host, onnxruntime 565-581 fps at 1, 603-608 at 4, 533-585 at 16; PyTorch eager
#: 304-306 at 1, 374-390 at 4, 199-255 at 8, 182-196 at 16. Beside a CPU hog at 300 fps a
#: batch of 16 also held the decisions for its first frames back: p99 latency 16-130 ms
#: (median 77) and 8 frames in 1,500 dropped on average, against 12-65 ms (median 37) and
#: 0.5 at 4 (11 runs each).
MAX_BATCH = 4
#: the pixels a model step holds at most (frames times their padded size): frames so large
#: that ``max_batch`` of them would pass it go fewer to a step, one at the least. A step
#: takes about 20 MB a megapixel on onnxruntime (a 4000 x 3000 video: 1.46 GB peak at 3-4
#: frames a step, 0.90 GB at one), so a 33-megapixel camera's frames go 2 at a time
STEP_PIXELS = 1 << 26
#: the frames whose records (index, score, flag, latency) a live source's report keeps: the
#: last hour at 300 fps, about 100 MB; events and ``--scores`` rows go to their files as
#: they are decided, so nothing of a longer run is lost (see :class:`DefectStream`)
LIVE_KEEP_FRAMES = 1_000_000


@dataclass
class DefectEvent:
    """A defect event: first frame, its time, the highest score and the box; the crack's
    width in pixels, and in millimetres where the camera's scale is known (``mm_per_px``)."""
    frame: int
    time_s: float
    score: float
    box: tuple[int, int, int, int] | None
    width_mm: float | None
    end_frame: int | None = None
    width_px: float | None = None
    peak_score: float = 0.0
    peak_frame: int | None = None   # the frame with the strongest map evidence, and its box
    peak_box: tuple[int, int, int, int] | None = None
    at: str | None = None  # a live source's: UTC date and time its first frame was captured
    model_sha256: str | None = None  # the SHA-256 of the model file that decided it
    _peak_logit: float = float("-inf")
    _peak_roi: Any = field(default=None, repr=False)  # pixels around peak_box

    def settle_width(self, mm_per_px: float | None) -> None:
        """Read the width at the strongest frame (kept as a small crop), once the event
        ends; the start frame's estimate stays when that fails. In millimetres too when
        ``mm_per_px`` is known."""
        if self._peak_roi is not None:
            roi, self._peak_roi = self._peak_roi, None
            wpx = width_in_roi(roi)
            if wpx is not None:
                self.width_px = round(wpx, 2)
                self.width_mm = None if mm_per_px is None else round(wpx * mm_per_px, 3)


@dataclass
class StreamReport:
    """What a stream run measured: frames, time, rate, latency percentiles, stage times, events and
    per-frame flags.
    """
    frames: int = 0
    seconds: float = 0.0
    fps: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    stage_ms_per_frame: dict[str, float] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    events: list[DefectEvent] = field(default_factory=list)
    frame_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    flags: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    latencies_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    backend: str = ""
    batches: int = 0
    flagged_frames: int = 0   # over the whole run, kept frames or not
    model_sha256: str | None = None  # of the model file that decided the frames (the last)
    reloads: int = 0  # models loaded again while it ran (DefectStream.load_again)
    stopped: bool = False  # ended by its ``stop`` (a service manager's), not by its source

    def summary(self) -> dict[str, Any]:
        """The report's figures as JSON-ready data (``frames_kept``: how many of the frames
        the per-frame arrays and the latency percentiles cover, when not all)."""
        out = {"frames": self.frames, "seconds": round(self.seconds, 3),
               "fps": round(self.fps, 1), "latency_ms": self.latency_ms,
               "stage_ms_per_frame": self.stage_ms_per_frame, "source": self.source,
               "events": len(self.events), "flagged_frames": self.flagged_frames,
               "backend": self.backend, "model_sha256": self.model_sha256,
               "reloads": self.reloads, "stopped": self.stopped,
               "mean_batch": round(self.frames / self.batches, 2) if self.batches else 0}
        if len(self.frame_index) < self.frames:
            out["frames_kept"] = len(self.frame_index)
        return out


def latency_percentiles(lat_s: np.ndarray) -> dict[str, float]:
    """p50, p95 and p99 of latencies given in seconds, in milliseconds."""
    if len(lat_s) == 0:
        return {}
    ms = np.asarray(lat_s) * 1e3
    return {"p50": round(float(np.percentile(ms, 50)), 3),
            "p99": round(float(np.percentile(ms, 99)), 3),
            "max": round(float(ms.max()), 3), "mean": round(float(ms.mean()), 3)}


class TorchStep:
    """The model step in PyTorch (reference; any device)."""

    name = "torch"

    def __init__(self, net: DefectNet, threads: int | None = None) -> None:
        import torch

        self.net = net.eval()
        self.state: Any = None
        self.shape: tuple[int, int] | None = None
        if threads:
            torch.set_num_threads(threads)

    def reset(self) -> None:
        """Forget the streaming state (the next clip starts fresh)."""
        self.state = None

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run a clip of frames ``(T, H, W)`` through the network, carrying the state: per-frame
        scores and maps.
        """
        import torch

        if self.shape != frames.shape[1:]:
            self.shape, self.state = frames.shape[1:], None
        with torch.inference_mode():
            lg, mp, self.state = self.net(torch.from_numpy(frames)[None], self.state)
        return torch.sigmoid(lg[0]).numpy(), mp[0].numpy()


class OnnxStep:
    """The same step on onnxruntime (the CPU fast path): exported from a :class:`DefectNet`
    for the frame size on first use (and again if it changes), or run from an
    :class:`OnnxNet` (a streaming export with free frame size: the edge form)."""

    name = "onnxruntime"

    def __init__(self, net: DefectNet | OnnxNet, threads: int | None = None,
                 spin: bool = False) -> None:
        self.net = net.eval()
        self.threads, self.spin = threads, spin
        self.session: Any = None
        self.shape: tuple[int, int] | None = None
        self.state: list[np.ndarray] = []

    def _build(self, height: int, width: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        if not self.spin:  # idle workers sleep instead of spinning: the decoder needs the core
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if isinstance(self.net, OnnxNet):
            if self.session is None:  # one graph for every frame size
                self.session = ort.InferenceSession(str(self.net.path), opts,
                                                    providers=["CPUExecutionProvider"])
        else:
            from deepseek.manufacturing.model import export_step_onnx

            self.session = ort.InferenceSession(export_step_onnx(self.net, height, width), opts,
                                                providers=["CPUExecutionProvider"])
        self.shape = (height, width)
        self.reset()

    def reset(self) -> None:
        """Forget the streaming state (the next clip starts fresh)."""
        if self.shape is not None:
            self.state = (self.net.initial_state(*self.shape) if isinstance(self.net, OnnxNet)
                          else [s.numpy() for s in self.net.initial_state(1, *self.shape)])

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run a clip of frames ``(T, H, W)`` on ONNX Runtime, carrying the state: per-frame scores
        and maps.
        """
        if self.shape != frames.shape[1:]:
            self._build(*frames.shape[1:])
        buf, h, c = self.state
        lg, mp, buf, h, c = self.session.run(None, {"frames": frames[None], "buffer": buf,
                                                    "h": h, "c": c})
        self.state = [buf, h, c]
        return 1.0 / (1.0 + np.exp(-lg[0])), mp[0]


def load_net(model: Any = "defect-3dcnn-lstm", onnx: bool | None = None) -> DefectNet | OnnxNet:
    """The detector for a registry name, a ``.safetensors`` path, a ``.stream.onnx`` export
    or a module: a :class:`DefectNet` where PyTorch is installed, else (or with
    ``onnx=True``) the :class:`OnnxNet` of its streaming export (:mod:`.runtime`)."""
    if isinstance(model, OnnxNet) or str(model).endswith(".onnx"):
        return model if isinstance(model, OnnxNet) else load_onnx_net(model)
    refuse_good_parts_model(model, "the stream")
    if onnx is None:
        onnx = not have_torch()
    if onnx and not hasattr(model, "forward"):
        return load_onnx_net(model)
    from deepseek.loader import ModelLoader
    from deepseek.manufacturing.model import DefectNet

    if isinstance(model, DefectNet):
        return model
    loaded = ModelLoader.load(model, device="cpu")
    net = getattr(loaded, "module", None)
    if not isinstance(net, DefectNet):
        raise ManufacturingError(f"{model}: not a defect-3dcnn-lstm model")
    return net


#: the backends a still photo can be scored on (``score --backend``)
SCORE_BACKENDS = ("auto", "onnxruntime", "torch")


def scoring_net(model: Any, backend: str = "auto") -> DefectNet | OnnxNet:
    """The network still photos are scored with (``score``, ``calibrate``, a batch).

    ``auto``: the ONNX exports beside the weights (a ``.safetensors`` file or a registered
    name's packaged weights) where onnxruntime is installed and they are current, the
    still-photo export among them, else PyTorch, else the exports (which must then exist).
    onnxruntime scores a photo in about half PyTorch's time on 2 cores (8 against 15 ms a
    500 x 1264 photo, 0.36 against 0.73 s a 20-megapixel one, where PyTorch spends more
    time in the kernel than in the network, zeroing fresh memory for each photo's
    activations), with the same scores (probabilities within 1e-6 and 3e-5 on those).
    ``onnxruntime``: the exports, or an error that names the command writing them;
    ``torch``: PyTorch.

    Raises:
        ManufacturingError: an unknown backend; ``torch`` without PyTorch or for an ONNX
            file; ``onnxruntime`` without a current export.
    """
    from deepseek.extras import missing

    if backend not in SCORE_BACKENDS:
        raise ManufacturingError(f"backend={backend!r}: use {', '.join(SCORE_BACKENDS)}")
    onnx_file = isinstance(model, OnnxNet) or str(model).endswith(".onnx")
    if backend == "torch":
        if not have_torch():
            raise torch_missing("scores on onnxruntime")
        if onnx_file:
            raise ManufacturingError(f"{model}: an ONNX export runs on onnxruntime; give "
                                     "--backend onnxruntime (or auto), or the .safetensors "
                                     "weights")
        return load_net(model, onnx=False)
    if backend == "onnxruntime" and hasattr(model, "forward"):
        raise ManufacturingError("a network in memory runs on PyTorch (--backend auto or "
                                 "torch); onnxruntime runs its exports")
    if backend == "onnxruntime" or onnx_file or not have_torch() or hasattr(model, "forward"):
        return load_net(model, onnx=backend == "onnxruntime" or None)
    if missing("runtime"):
        return load_net(model, onnx=False)
    try:
        net = load_onnx_net(model)
    except ManufacturingError as exc:  # none beside the weights, or a stale one
        log.info("%s: scoring with PyTorch (%s)", model, exc)
        return load_net(model, onnx=False)
    if net.still_session is None:  # each photo through the step: slower than PyTorch
        log.info("%s: no still-photo export beside %s; scoring with PyTorch", model,
                 net.path)
        return load_net(model, onnx=False)
    log.info("%s: scoring with onnxruntime (%s)", model, net.path)
    return net


T = TypeVar("T")


def loaded_by_digest(model: Any, load: Callable[[], T]) -> tuple[T, str | None]:
    """``load()``'s result and the SHA-256 of ``model``'s file (:func:`weights_sha256`) as
    it was loaded: taken before and after, and loaded again when they differ, so that
    weights replaced while they were read (a training run writing its new ones) are never
    named for the others. What each result of ``score`` and each event of ``stream``
    names as the model that decided it.

    Raises:
        ManufacturingError: the file changed each of three times it was loaded.
    """
    for _ in range(3):
        sha = weights_sha256(model)
        got = load()
        if weights_sha256(model) == sha:
            return got, sha
    raise ManufacturingError(f"{model}: the file changed each time it was loaded (it is being "
                             "written?); load it once it is written")


def weights_sha256(model: Any) -> str | None:
    """The sha256 of the weights ``model`` names: a file's own, a registered name's packaged
    weights file, None for anything else (a module in memory). What a calibration or a
    good-parts memory records of the model it was measured with, so that other weights
    under the same name (a plugin upgrade that retrained its packaged weights) are caught.
    An ONNX export names the weights it was exported from (the sha256 it records), so a
    calibration holds for the weights and their edge form alike."""
    from deepseek.loader.base import file_sha256

    if not isinstance(model, (str, Path)):
        return None
    if Path(model).is_file():
        if str(model).endswith(".onnx"):
            from deepseek.loader import SOURCE_META_KEY, onnx_metadata

            recorded = onnx_metadata(model).get(SOURCE_META_KEY)
            if recorded:
                return recorded
        return file_sha256(model)
    if not isinstance(model, str):
        return None
    from deepseek.errors import DeepSeekError
    from deepseek.plugins import models

    try:
        packaged = models().entry(model).meta.get("weights")
    except DeepSeekError:  # not a registered name (or a contested one): nothing to digest
        return None
    return file_sha256(packaged) if packaged and Path(packaged).is_file() else None


def stream_threads() -> int:
    """Intra-op threads of a stream's model step: the CPU budget (:mod:`deepseek.cpus`) less
    the core the source's grabber thread decodes on, at least 1."""
    from deepseek.cpus import cpu_budget

    return max(1, cpu_budget() - 1)


def make_step(net: DefectNet | OnnxNet, backend: str = "auto", threads: int | None = None
              ) -> Any:
    """The stream step for ``net``: ONNX Runtime for an ONNX export (or ``auto`` without PyTorch),
    else PyTorch.

    Raises:
        ManufacturingError: an unknown backend, or torch asked for an ONNX-only network.
    """
    if backend not in ("auto", "onnx", "onnxruntime", "torch"):
        raise ManufacturingError(f"backend={backend!r}: use auto, onnxruntime or torch")
    if isinstance(net, OnnxNet):
        if backend == "torch":
            if not have_torch():
                raise torch_missing("runs onnxruntime")
            raise ManufacturingError(f"{net.source}: an ONNX export runs on onnxruntime; give "
                                     "--backend onnxruntime (or auto), or a .safetensors model")
        return OnnxStep(net, threads)
    if backend == "auto":
        try:
            import onnxruntime  # noqa: F401

            backend = "onnxruntime"
        except ImportError:
            backend = "torch"
    if backend in ("onnx", "onnxruntime"):
        return OnnxStep(net, threads)
    return TorchStep(net, threads)


def pad16(frames: np.ndarray) -> np.ndarray:
    """Pad ``(T, H, W)`` frames with their edge values up to multiples of 16."""
    h, w = frames.shape[1:]
    ph, pw = (-h) % STRIDE, (-w) % STRIDE
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, ph), (0, pw)), mode="edge")
    return frames


# -- still photos -------------------------------------------------------------------------

# the flips a network can score an image under (``views``, :data:`~deepseek.manufacturing.
# formats.VIEWS`): the image as it is, mirrored left-right, upside down, and both. Training
# crops are flipped the same ways, so a crack looks as much a crack in each; the noise of a
# textured good surface does not agree between them as well (see :func:`photo_logits`).


def check_views(views: Any) -> int:
    """``views`` if it is one of :data:`VIEWS`, else the error that names them."""
    if views not in VIEWS:
        raise ManufacturingError(f"views={views}: give 1 (each image as it is) or 4 (and its "
                                 "three flips)")
    return int(views)


def _flip(a: np.ndarray, view: int) -> np.ndarray:
    """``a (..., H, W)`` under view ``view`` (0 as is, 1 left-right, 2 upside down, 3 both);
    each view is its own inverse."""
    if view & 1:
        a = a[..., ::-1]
    if view & 2:
        a = a[..., ::-1, :]
    return a


def _still(net: Any, images: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame logits ``(B, frames)`` and map logits of still photos ``images (B, H, W)``
    (padded to multiples of 16), from a fresh state: the network's ``still`` (each photo
    encoded once; for an ONNX export its still-photo graph when there is one), or for a
    network in training mode (whose batch norm would see one frame's statistics) each photo
    repeated ``frames`` times through the whole network."""
    if isinstance(net, (OnnxNet, StillGraph)):
        return net.still(images, frames)
    import torch

    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    x = torch.from_numpy(images).to(device)
    with torch.inference_mode():
        if hasattr(net, "still") and not net.training:
            lg, mp = net.still(x, frames)
        else:
            lg, mp, _ = net(x[:, None].expand(-1, frames, -1, -1), None)
    return lg.float().cpu().numpy(), mp.float().cpu().numpy()


#: a photo (at the model's scale) of more pixels than this is scored in tiles: whole, its
#: activations would take about 3.3 GB (about 50 MB a megapixel), and a line-scan image of
#: 16,384 x 50,000 pixels some 40 GB
TILE_ABOVE = 1 << 26
#: the side of a tile, at most (4096 x 4096: about 1 GB), and the pixels neighbouring tiles
#: share (a crack up to this long that a tile boundary cuts lies whole in one of the two)
TILE, TILE_OVERLAP = 4096, 256


def tile_spans(n: int, tile: int = TILE, overlap: int = TILE_OVERLAP
               ) -> list[tuple[int, int, int, int]]:
    """How an axis of ``n`` pixels is cut into tiles of at most ``tile`` pixels sharing about
    ``overlap`` with each neighbour: ``(start, end, core_start, core_end)`` per tile, the
    starts on the 16-pixel cell, and the cores (the pixels whose map cells the tile gives)
    meeting at cell boundaries in the middle of each overlap and covering the axis once."""
    if n <= tile:
        return [(0, n, 0, n)]
    count = -(-(n - overlap) // (tile - overlap))  # as few tiles as the bound allows,
    # each as long as they need to be to share ``overlap`` (on the cell), spread evenly
    size = min(tile, -(-(n + (count - 1) * overlap) // (count * STRIDE)) * STRIDE)
    last = -(-(n - size) // STRIDE) * STRIDE  # the last tile ends at n and starts on a cell
    starts = [STRIDE * ((i * last) // (STRIDE * (count - 1))) for i in range(count)]
    ends = [min(s + size, n) for s in starts]
    cuts = [STRIDE * round((a + b) / 2 / STRIDE) for a, b in zip(starts[1:], ends[:-1])]
    bounds = [0, *cuts, n]
    return [(s, e, bounds[i], bounds[i + 1]) for i, (s, e) in enumerate(zip(starts, ends))]


def tile_count(shape: tuple[int, ...]) -> int:
    """The tiles :func:`photo_logits` scores a photo of ``shape`` (h, w) in: 1 up to
    :data:`TILE_ABOVE` pixels."""
    h, w = shape[:2]
    if h * w <= TILE_ABOVE:
        return 1
    return len(tile_spans(h, TILE, TILE_OVERLAP)) * len(tile_spans(w, TILE, TILE_OVERLAP))


def photo_logits(net: Any, image: np.ndarray, frames: int = FRAMES, views: int = 1
                 ) -> tuple[float, np.ndarray]:
    """The crack logit of one grayscale photo, shown ``frames`` times from a fresh state, and
    its map logits (cells of 16 pixels, cut to the photo): the logits under which
    :func:`deepseek.manufacturing.score.score_image` gives probabilities.

    ``views=4``: the photo as it is and flipped left-right, upside down and both (the flips
    of the 16-pixel-padded photo, so that map cells line up), the frame logits and each
    cell's logits averaged over the four (the maps flipped back first).

    A photo of more than :data:`TILE_ABOVE` pixels is scored in overlapping tiles
    (:func:`tile_spans`), each as a photo of its own, so that memory stays bounded: its
    logit is the highest tile's and its map is put together from the tiles' cores (logged,
    with the number of tiles)."""
    check_views(views)
    h, w = image.shape
    if h * w > TILE_ABOVE:
        return _tiled_logits(net, image, frames, views)
    still = pad16(image[None])[0]
    # one view at a time: on 2 cores a batch of the four full-size views is slower than
    # four runs of one (cache), with PyTorch and onnxruntime alike
    runs = [_still(net, np.ascontiguousarray(_flip(still, v))[None], frames)
            for v in range(views)]
    logit = float(np.mean([lg[0, -1] for lg, _ in runs]))
    maps = np.mean([_flip(mp[0, -1], v) for v, (_, mp) in enumerate(runs)], axis=0)
    return logit, maps[: -(-h // STRIDE), : -(-w // STRIDE)]


def _tiled_logits(net: Any, image: np.ndarray, frames: int, views: int
                  ) -> tuple[float, np.ndarray]:
    """:func:`photo_logits` of a photo too large to score whole, tile by tile."""
    h, w = image.shape
    log.info("a %d x %d photo scored in %d tiles of at most %d x %d pixels (%d shared): its "
             "score is the highest tile's", w, h, tile_count(image.shape), TILE, TILE,
             TILE_OVERLAP)
    logits, maps = in_tiles(image, STRIDE, lambda tile: photo_logits(net, tile, frames, views))
    return float(max(logits)), maps


def in_tiles(image: np.ndarray, stride: int, run: Any) -> tuple[list[Any], np.ndarray]:
    """``run(tile) -> (value, map)`` over the tiles of ``image`` (:func:`tile_spans`), each map
    one value per ``stride`` pixels of its tile: every tile's value, and the map of the
    whole image put together from the tiles' cores (``stride`` divides the cell, so the
    cores' bounds fall on map values)."""
    h, w = image.shape
    rows, cols = tile_spans(h, TILE, TILE_OVERLAP), tile_spans(w, TILE, TILE_OVERLAP)
    whole = np.empty((-(-h // stride), -(-w // stride)), np.float32)
    values = []
    for y0, y1, cy0, cy1 in rows:
        for x0, x1, cx0, cx1 in cols:
            value, part = run(image[y0:y1, x0:x1])
            values.append(value)
            whole[cy0 // stride: -(-cy1 // stride), cx0 // stride: -(-cx1 // stride)] = \
                part[(cy0 - y0) // stride: -(-(cy1 - y0) // stride),
                     (cx0 - x0) // stride: -(-(cx1 - x0) // stride)]
    return values, whole


def _grow(mask: np.ndarray) -> np.ndarray:
    """``mask`` (bool, 2-D) with every cell's eight neighbours added (numpy only: the edge
    install has no OpenCV)."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


def box_from_map(prob_map: np.ndarray, shape: tuple[int, int], level: float = 0.5,
                 stride: int = STRIDE) -> tuple[int, int, int, int]:
    """Pixel box ``(x0, y0, x1, y1)`` around the defect at the map's hottest cell: the cells
    (``stride`` pixels each) at or above ``level`` that reach it through one another, gaps of
    up to two cells bridged (the best cell alone when none is at the level). Specks elsewhere
    in the image that pass the level on their own do not stretch the box."""
    peak = np.unravel_index(int(np.argmax(prob_map)), prob_map.shape)
    hot = prob_map >= level
    if not hot[peak]:
        cells = np.array([peak])
    else:  # flooded from the peak through the hot cells and their neighbours
        reach, region = _grow(hot), np.zeros_like(hot)
        rows, cols = hot.shape
        region[peak], todo = True, [peak]
        while todo:  # each cell visited once, whatever the map's shape
            r, c = todo.pop()
            for y in range(max(r - 1, 0), min(r + 2, rows)):
                for x in range(max(c - 1, 0), min(c + 2, cols)):
                    if reach[y, x] and not region[y, x]:
                        region[y, x] = True
                        todo.append((y, x))
        cells = np.argwhere(region & hot)
    (r0, c0), (r1, c1) = cells.min(axis=0), cells.max(axis=0)
    h, w = shape
    return (int(c0 * stride), int(r0 * stride), int(min(w - 1, (c1 + 1) * stride - 1)),
            int(min(h - 1, (r1 + 1) * stride - 1)))


WIDTH_PAD = 8


def roi_around(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A copy of the pixels around ``box`` that the width is read from."""
    x0, y0, x1, y1 = box
    ys, xs = max(0, y0 - WIDTH_PAD), max(0, x0 - WIDTH_PAD)
    return image[ys:y1 + WIDTH_PAD + 1, xs:x1 + WIDTH_PAD + 1].copy()


def estimate_width_px(image: np.ndarray, box: tuple[int, int, int, int]) -> float | None:
    """Width of the darkest thin structure in ``box`` (see :func:`width_in_roi`)."""
    return width_in_roi(roi_around(image, box))


WIDTH_CLOSING = 15   # px: the background closing removes dark lines narrower than this
WIDTH_LEVEL = 0.5    # the width is read at half the crack's peak darkening (FWHM)


def _largest_component(mask: np.ndarray) -> np.ndarray | None:
    from deepseek.manufacturing.images import require_cv2

    cv2 = require_cv2("the crack width of a stream event")
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8),
                                                           connectivity=8)
    if n <= 1:
        return None
    return (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)


def _rectangle_width(comp: np.ndarray) -> float | None:
    """Short side of the rectangle with the component's area and perimeter (w * L = A,
    2 (w + L) = P): about 2 A / P for a long line, without counting a short one's ends as
    length."""
    from deepseek.manufacturing.images import require_cv2

    cv2 = require_cv2("the crack width of a stream event")
    contours, _ = cv2.findContours(comp, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    perim = sum(cv2.arcLength(c, True) for c in contours)
    area = float(comp.sum())
    if perim <= 0:
        return None
    half = perim / 2
    disc = half * half - 4 * area
    width = (half - math.sqrt(disc)) / 2 if disc > 0 else half / 2  # a square: its side
    return max(1.0, width)


def width_in_roi(pixels: np.ndarray) -> float | None:
    """Width in pixels of the darkest thin structure in ``pixels``, read as its full width
    at half its peak darkening (FWHM), the way a line's width is read from a blurred
    profile.

    The background is a grey closing of ``WIDTH_CLOSING`` pixels (it fills dark lines
    narrower than that, so a wide crack does not darken its own background as a median
    filter would); the crack is the largest component darker than the background by four
    times the noise and 12 % of the mean level; its peak is the 90th percentile of its
    fractional darkening, and the pixels at least half that dark (and over twice the noise)
    form the component whose width is the short side of the rectangle with its area and
    perimeter. None when nothing is darker than the noise."""
    from deepseek.manufacturing.images import require_cv2

    cv2 = require_cv2("the crack width of a stream event")
    roi = pixels.astype(np.float32)
    if roi.size < 16:
        return None
    bg = cv2.morphologyEx(roi, cv2.MORPH_CLOSE, cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (WIDTH_CLOSING, WIDTH_CLOSING)))
    dark = bg - roi
    noise = float(np.median(np.abs(dark - np.median(dark)))) * 1.4826 + 1.0
    crack = _largest_component(dark > max(4 * noise, 0.12 * float(bg.mean())))
    if crack is None:
        return None
    frac = dark / np.maximum(bg, 1.0)
    peak = float(np.percentile(frac[crack > 0], 90))
    core = _largest_component((frac >= WIDTH_LEVEL * peak) & (dark > 2 * noise))
    return None if core is None else _rectangle_width(core)


class DefectStream:
    """Run ``model`` over ``source`` (a :class:`FrameSource` or anything it opens) and decide
    per frame; see the module docstring. ``run()`` returns a :class:`StreamReport`.

    Callbacks: ``on_event(event)`` when an event starts; ``on_batch(report, last)`` after
    every model step (a status line); ``on_frame(frame, probability, box_or_None)`` with the
    newest frame of each step (a display); ``on_wait()`` about every 0.1 s while it waits for
    frames (a service's watchdog, which asks the source whether it is stalled:
    :meth:`FrameSource.stalled_s <deepseek.manufacturing.sources.FrameSource.stalled_s>`).

    ``mm_per_px``: the millimetres one pixel spans on the part, for the crack widths in
    events; by default the source's own (the synthetic line knows its scale), else widths
    are given in pixels only (``width_px``; ``width_mm`` None).

    ``events`` and ``scores`` (a path or an open text file) get the events as JSON lines and
    each frame's ``frame,score`` row as they are decided, flushed after every step, so a
    stream of days keeps them on disk, not in memory. A path is started afresh, or with
    ``append`` added to (a stream started again as a service keeps what it wrote before;
    each run's events then follow an ``{"event": "run", ...}`` line: when, the source, the
    model);
    either way it is written in append mode, so a log rotation that copies and truncates it
    leaves no hole. A live source's events carry ``at``, the UTC time their first frame was
    captured (its frame numbers and ``time_s`` start again with each run).

    The report's per-frame arrays and latency percentiles keep the last ``keep_frames``
    frames: all of a file's, the last :data:`LIVE_KEEP_FRAMES` of a live source's (a line
    that runs for days would otherwise hold every frame's record in memory)."""

    def __init__(self, source: Any, model: Any = "defect-3dcnn-lstm", *,
                 threshold: float = 0.5, debounce: tuple[int, int] = (2, 3),
                 max_batch: int = MAX_BATCH, backend: str = "auto",
                 threads: int | None = None,
                 mm_per_px: float | None = None,
                 on_event: Callable[[DefectEvent], None] | None = None,
                 events: str | Path | IO[str] | None = None,
                 scores: str | Path | IO[str] | None = None,
                 keep_frames: int | None | str = "auto", append: bool = False,
                 on_batch: Callable[[StreamReport, dict[str, Any]], None] | None = None,
                 on_frame: Callable[[Any, float, tuple[int, int, int, int] | None], None]
                 | None = None, on_wait: Callable[[], None] | None = None,
                 source_options: dict[str, Any] | None = None) -> None:
        from deepseek.manufacturing.sources import FrameSource

        k, n = debounce
        if not 1 <= k <= n:
            raise ManufacturingError(f"debounce={debounce}: need 1 <= k <= n (k of n frames)")
        if not 0 < threshold < 1:
            raise ManufacturingError(f"threshold={threshold}: must be between 0 and 1")
        if max_batch < 1:
            raise ManufacturingError("max_batch must be at least 1")
        if mm_per_px is not None and not (math.isfinite(mm_per_px) and mm_per_px > 0):
            raise ManufacturingError(f"mm_per_px={mm_per_px}: the millimetres one pixel spans "
                                     "on the part must be a positive number")
        extra = stored_extra(model)
        # 16-bit frames read over the bits the model's photos were (train --bit-depth),
        # unless the caller says otherwise; 8-bit frames are read as they are either way
        from deepseek.manufacturing.images import stored_setting

        bits = stored_setting(extra, "bit_depth", model)
        scale = stored_setting(extra, "scale", model)
        opts = {**({"bit_depth": bits} if bits is not None else {}),
                **(source_options or {})}
        self.source = (source if isinstance(source, FrameSource)
                       else FrameSource.open(source, **opts))
        #: the SHA-256 of the model's file, which each event names
        self.net, self.model_sha256 = loaded_by_digest(model, lambda: load_net(model))
        if scale != 1.0:  # the stream scores frames at the size they come in
            log.warning("%s: trained on part photos scaled by %g (train --scale); the "
                        "stream scores its frames as they come, unscaled: give it frames "
                        "at that scale, or score photos with deepseek manufacturing score",
                        model, scale)
        self.threads = stream_threads() if threads is None else int(threads)
        self.step = make_step(self.net, backend, self.threads)
        self._model, self._backend, self._bits = model, backend, bits
        self._next: tuple[Any, Any, str | None] | None = None  # a model loaded again
        self._loading, self._handover = threading.Lock(), threading.Lock()
        self.threshold, self.k, self.n = float(threshold), int(k), int(n)
        self.max_batch = int(max_batch)
        self._said_per_step = False  # whether the frames' size has cut the step, said once
        # widths in mm only where the scale is known: given, or the source's own
        self.mm_per_px: float | None = (float(mm_per_px) if mm_per_px is not None
                                        else self.source.mm_per_px)
        self.on_event, self.on_batch, self.on_frame = on_event, on_batch, on_frame
        self.on_wait = on_wait
        self._events_target, self._scores_target = events, scores
        self._append = append
        if keep_frames == "auto":
            keep_frames = LIVE_KEEP_FRAMES if self.source.live else None
        if keep_frames is not None and (isinstance(keep_frames, bool) or
                                        not isinstance(keep_frames, int) or keep_frames < 1):
            raise ManufacturingError(f"keep_frames={keep_frames!r}: a positive number of "
                                     "frames, None for all, or 'auto'")
        self.keep_frames: int | None = keep_frames

    def frames_per_step(self, height: int, width: int) -> int:
        """Frames of ``height x width`` that go to one model step: ``max_batch``, fewer when
        that many would hold more than :data:`STEP_PIXELS` pixels (padded to the cell), one
        at the least."""
        pixels = (-(-height // STRIDE) * STRIDE) * (-(-width // STRIDE) * STRIDE)
        return max(1, min(self.max_batch, STEP_PIXELS // max(pixels, 1)))

    def _per_step(self, height: int, width: int) -> int:
        """:meth:`frames_per_step`, said once when it is fewer than ``max_batch``."""
        n = self.frames_per_step(height, width)
        if n < self.max_batch and not self._said_per_step:
            self._said_per_step = True
            log.info("frames of %d x %d: %d per model step (not %d), so that a step holds at "
                     "most %d pixels", width, height, n, self.max_batch, STEP_PIXELS)
        return n

    def warm_up(self, step: Any = None) -> None:
        """Build the runtime (``step``'s; the stream's own by default) for the source's frame
        size before frames arrive."""
        step = self.step if step is None else step
        if self.source.size is not None:
            w, h = self.source.size
            step(pad16(np.zeros((1, h, w), np.uint8)))
            step.reset()

    def load_again(self) -> str | None:
        """Load the stream's model again (its file retrained in place; ``systemctl reload``
        of the stream's service) in the calling thread, while the stream runs on with the
        model it has, and hand it over: the stream takes it at its next step, with a fresh
        temporal state, and writes an ``{"event": "model", ...}`` line naming the frame and
        the new model's SHA-256 into its events. An event open then ends with the last frame
        the model before decided (its ``clear`` line comes first), so that each event is
        decided by the one model it names; the new model opens its own once its frames are
        flagged (the debounce's k of n, counted afresh). Returns that SHA-256.

        Raises:
            ManufacturingError: the model does not load, or was trained on photos read over
                other bits (``train --bit-depth``) than the source's frames are read at (the
                stream goes on with the model it has; a new bit depth needs a new start).
        """
        from deepseek.manufacturing.images import stored_setting

        with self._loading:  # two reloads asked at once: one after the other
            model = self._model
            if stored_setting(stored_extra(model), "bit_depth", model) != self._bits:
                raise ManufacturingError(f"{model}: trained on photos read over other bits "
                                         "than this stream reads its frames at; start the "
                                         "stream again to use it")
            net, sha = loaded_by_digest(model, lambda: load_net(model))
            step = make_step(net, self._backend, self.threads)
            self.warm_up(step)
            with self._handover:
                self._next = (net, step, sha)
            return sha

    def run(self, max_frames: int | None = None, stop: Any = None) -> StreamReport:
        """Stream frames from the source through the model until it ends (or ``max_frames``): flags,
        events, latency and rate.

        ``stop``: an event (``is_set()``; a signal handler's, :class:`deepseek.service.
        SignalEvent`) that ends the run as the source's end would, after the step in hand or
        while it waits for frames: an event under way is ended at the last frame decided,
        and the report says ``stopped``.
        """
        rep = StreamReport(backend=self.step.name, source=self.source.describe(),
                           model_sha256=self.model_sha256)
        opened: list[AppendedLines] = []

        def target(where: str | Path | IO[str] | None, option: str, header: str = "") -> Any:
            # a file of the stream's lines, which a full disk does not stop (its lines held
            # back, written when there is room again) and a log rotation does not lose (a
            # file moved away begun anew, with its header): AppendedLines
            if isinstance(where, (str, Path)):
                opened.append(AppendedLines(where, option, append=self._append,
                                            header=header))
                return opened[-1]
            if where is not None and header and (not self._append or where.tell() == 0):
                where.write(header)
            return where

        out = target(self._events_target, "--events")
        score_rows = target(self._scores_target, "--scores", "frame,score\n")
        if out is not None and self._append:  # each run's events after a line that says
            self._run_line(out)  # where it begins (frame numbers start again with each run)
        window: collections.deque[bool] = collections.deque(maxlen=self.n)
        active: DefectEvent | None = None
        idx: collections.deque[int] = collections.deque(maxlen=self.keep_frames)
        scores: collections.deque[float] = collections.deque(maxlen=self.keep_frames)
        flags: collections.deque[bool] = collections.deque(maxlen=self.keep_frames)
        lats: collections.deque[float] = collections.deque(maxlen=self.keep_frames)
        seen = 0   # frames decided, kept or not
        stage = collections.Counter()
        t_start = None
        self.warm_up()
        # frames per step: bounded by their size (known from the source, else from the
        # first frames), so that a large camera's step does not hold max_batch frames
        per_step = self.max_batch if self.source.size is None else \
            self._per_step(*reversed(self.source.size))
        def on_wait() -> bool:  # the wait for frames ends on a stop (and only on one: what
            if self.on_wait is not None:  # the caller's on_wait returns is not asked)
                self.on_wait()
            return stop is not None and stop.is_set()

        try:
            with self.source:
                while max_frames is None or seen < max_frames:
                    if stop is not None and stop.is_set():
                        rep.stopped = True
                        break
                    t0 = time.perf_counter()
                    want = per_step if max_frames is None else \
                        min(per_step, max_frames - seen)
                    batch = self.source.get(want, on_wait=on_wait)
                    if not batch:
                        rep.stopped = stop is not None and stop.is_set()
                        break
                    t1 = time.perf_counter()
                    if t_start is None:
                        t_start = batch[0].t_capture
                        per_step = self._per_step(*batch[0].image.shape[:2])
                    if self._next is not None:  # a model loaded again: from this step on
                        if active is not None:  # each event is one model's: the old one's
                            self._ended(out, rep, active, idx[-1])  # its last frame decided
                            active = None
                        window.clear()  # the new model's own k of n frames open an event
                        self._take_next(rep, out, batch[0].index)
                    frames = pad16(np.stack([f.image for f in batch]))
                    t2 = time.perf_counter()
                    probs, maps = self.step(frames)
                    t3 = time.perf_counter()
                    for j, f in enumerate(batch):
                        p = float(probs[j])
                        flag = p >= self.threshold
                        window.append(flag)
                        if active is None and sum(window) >= self.k:
                            active = self._start_event(f, p, maps[j])
                            self._emit(out, "defect", active)
                        elif active is not None:
                            active.peak_score = max(active.peak_score, p)
                            top = float(maps[j].max())
                            if flag and top > active._peak_logit:
                                active._peak_logit, active.peak_frame = top, f.index
                                active.peak_box = self._box(maps[j], f.image.shape)
                                # the width is read where the evidence is strongest, when
                                # the event ends (a copy of the pixels around the box)
                                active._peak_roi = roi_around(f.image, active.peak_box)
                            if len(window) == self.n and not any(window):
                                self._ended(out, rep, active, f.index)
                                active = None
                        idx.append(f.index)
                        scores.append(p)
                        flags.append(flag)
                        rep.flagged_frames += flag
                    seen += len(batch)
                    if score_rows is not None:
                        score_rows.write("".join(f"{f.index},{float(probs[j]):.6f}\n"
                                                 for j, f in enumerate(batch)))
                        score_rows.flush()
                    t4 = time.perf_counter()
                    lats.extend(t4 - f.t_capture for f in batch)
                    stage["wait"] += t1 - t0
                    stage["preprocess"] += t2 - t1
                    stage["model"] += t3 - t2
                    stage["decide"] += t4 - t3
                    rep.batches += 1
                    if self.on_frame is not None:  # the newest frame, for a display
                        f, p = batch[-1], float(probs[-1])
                        self.on_frame(f, p, self._box(maps[-1], f.image.shape)
                                      if p >= self.threshold else None)
                    if self.on_batch is not None:
                        rep.frames = seen
                        rep.seconds = t4 - (t_start or t4)
                        self.on_batch(rep, {"latency_s": lats[-1], "flag": flags[-1],
                                            "events": len(rep.events) + (active is not None)})
            if active is not None:
                self._ended(out, rep, active, idx[-1] if idx else active.frame)
            st = self.source.stats
            if out is not None and (st.lost or st.ended_early):
                last = idx[-1] if idx else -1
                out.write(json.dumps({
                    "event": "source_lost" if st.lost else "source_ended_early",
                    "frame": last, "time_s": round(max(last, 0) / self.source.fps, 6),
                    "frames_read": st.frames_read, "declared_frames": st.declared_frames,
                    "reconnects": st.reconnects, "error": st.errors[-1] if st.errors else ""})
                    + "\n")
                out.flush()
        finally:
            lost = {fh: fh.close() for fh in opened}  # lines a full disk never took
        for fh, n in lost.items():
            if n:
                raise ManufacturingError(f"{fh.option} {fh.path}: the disk had no room for "
                                         f"the last {n} lines when the stream ended; they "
                                         "are lost (see the log): free space there")
        t_end = time.perf_counter()
        rep.frames = seen
        rep.seconds = (t_end - t_start) if t_start is not None else 0.0
        live_s = rep.seconds - self.source.stats.outage_s  # outages are not frame time
        rep.fps = rep.frames / live_s if live_s > 0 else 0.0
        rep.frame_index = np.asarray(idx, np.int64)
        rep.scores = np.asarray(scores, np.float32)
        rep.flags = np.asarray(flags, bool)
        rep.latencies_s = np.asarray(lats)
        rep.latency_ms = latency_percentiles(rep.latencies_s)
        rep.stage_ms_per_frame = {k: round(v / max(rep.frames, 1) * 1e3, 4)
                                  for k, v in stage.items()}
        rep.source = {**self.source.describe(), **self.source.stats.as_dict()}
        if self.source.stats.frames_dropped:
            log.warning("%s: %d frames dropped (consumer slower than the source)",
                        self.source.uri, self.source.stats.frames_dropped)
        return rep

    @staticmethod
    def _box(logit_map: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        h, w = shape
        prob = 1.0 / (1.0 + np.exp(-logit_map[: (h + STRIDE - 1) // STRIDE,
                                              : (w + STRIDE - 1) // STRIDE]))
        return box_from_map(prob, (h, w))

    def _start_event(self, frame: Any, score: float, logit_map: np.ndarray) -> DefectEvent:
        box = self._box(logit_map, frame.image.shape)
        wpx = estimate_width_px(frame.image, box)
        ev = DefectEvent(frame=frame.index, time_s=round(frame.index / self.source.fps, 6),
                         score=round(score, 5), box=box, peak_score=score,
                         width_mm=None if wpx is None or self.mm_per_px is None
                         else round(wpx * self.mm_per_px, 3),
                         width_px=None if wpx is None else round(wpx, 2),
                         peak_frame=frame.index, peak_box=box,
                         model_sha256=self.model_sha256, _peak_logit=float(logit_map.max()))
        if self.source.live:  # the wall clock when it was captured
            wall = time.time() - (time.perf_counter() - frame.t_capture)
            ev.at = datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds")
        if self.on_event is not None:
            self.on_event(ev)
        return ev

    def _run_line(self, out: IO[str]) -> None:
        """The events' line that begins a run appended to the runs before (``append``): when
        (UTC), from which source, with which model."""
        from deepseek.manufacturing.metrics import RUN_EVENT

        at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        out.write(json.dumps({"event": RUN_EVENT, "at": at, "source": self.source.uri,
                              "model_sha256": self.model_sha256}) + "\n")
        out.flush()

    def _take_next(self, rep: StreamReport, out: IO[str] | None, frame: int) -> None:
        """Take the model :meth:`load_again` handed over, deciding from ``frame`` on (its
        temporal state fresh), and say so in the events."""
        with self._handover:
            (self.net, self.step, self.model_sha256), self._next = self._next, None
        rep.backend, rep.model_sha256 = self.step.name, self.model_sha256
        rep.reloads += 1
        log.info("%s loaded again (sha256 %s): deciding from frame %d on", self._model,
                 (self.model_sha256 or "")[:12], frame)
        if out is None:
            return
        at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        from deepseek.manufacturing.metrics import MODEL_EVENT

        out.write(json.dumps({"event": MODEL_EVENT, "frame": frame,
                              "model_sha256": self.model_sha256, "at": at}) + "\n")
        out.flush()

    def _ended(self, out: Any, rep: StreamReport, event: DefectEvent, last: int) -> None:
        """``event`` over at frame ``last``: its width read, its clear line written, and it
        joins the report."""
        event.end_frame = last
        event.settle_width(self.mm_per_px)
        self._emit(out, "clear", event)
        rep.events.append(event)

    @staticmethod
    def _emit(out: IO[str] | None, kind: str, ev: DefectEvent) -> None:
        if out is None:
            return
        rec = {"event": kind, **{k: v for k, v in asdict(ev).items()
                                 if not k.startswith("_") and not (k == "at" and v is None)}}
        if kind == "clear":
            rec["frame"] = ev.end_frame
            rec["start_frame"] = ev.frame
        out.write(json.dumps(rec) + "\n")
        out.flush()
