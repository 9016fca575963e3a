"""``defect-3dcnn-lstm``: a streaming crack detector, 3D convolutions over time and an LSTM.

Architecture (input: grayscale frames ``(B, T, H, W)``, uint8 or float in 0..255, ``H`` and
``W`` multiples of 16):

1. *Light normalisation*: each frame is divided by its own mean, so a drifting light level
   changes nothing.
2. *Frame encoder* (per frame, 2D): a stem to stride 4 that sees every pixel at full
   resolution (no pooling or skipped pixels, so a 2-pixel crack reaches the network intact),
   then two 3x3 stride-2 convolutions: stride 16, ``channels[2]`` features per 1.6 mm cell at
   0.1 mm per pixel. The stem (``stem``) is ``"patch"``, one 4x4 stride-4 convolution (the
   default and the packaged weights'), or ``"fine"``, two 3x3 stride-2 convolutions (8
   channels at half resolution, then ``channels[0]``) with a nonlinearity between them, so
   that a faint 1-2 pixel hairline is told from the surface at half resolution before it is
   pooled into a 4x4 patch (no packaged weights: trained from scratch; about a third more
   work per frame).
3. *Temporal 3D convolution*: a causal ``(temporal, 3, 3)`` Conv3d over the last ``temporal``
   frames' features (computed as a 2D convolution over windows of frames,
   :class:`CausalTimeConv`). In a stream it keeps a buffer of the previous ``temporal - 1``
   frames' features, so every frame is encoded exactly once.
4. *Localisation head*: a 1x1x1 convolution, one crack logit per cell (the coarse map a box
   is read from).
5. *LSTM*: per frame, the global max of the temporal features and of the map go into an LSTM
   whose state runs along the stream; the frame logit is the LSTM's output plus the map's
   maximum.

Streaming: :meth:`DefectNet.forward` takes and returns the state ``(buffer, h, c)``; feeding a
clip frame by frame with the state carried gives the same outputs as the whole clip at once.
:func:`export_step_onnx` exports that same step (state in, state out) for onnxruntime, the fast
path the stream uses on CPU.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepseek.manufacturing.formats import PHOTO_READER
from deepseek.manufacturing.runtime import STRIDE

State = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
#: the encoder's stems (see the module docstring); "patch" is the default
STEMS = ("patch", "fine")
FINE_STEM_CHANNELS = 8


class CausalTimeConv(nn.Conv3d):
    """A ``(k, kh, kw)`` Conv3d with no padding, stride or dilation along time, computed as one
    2D convolution over windows of ``k`` frames stacked along the channels.

    The same weights, state-dict keys and outputs (to float rounding) as ``nn.Conv3d``; on 2
    CPU cores PyTorch runs it 2.5-7 times faster than its 3D convolution for one frame (a
    stream step) or four (28 ms against 4 ms for four 1264x512 frames' features), and
    onnxruntime's stream step takes 1.45 ms against 1.68 ms on a 640x480 frame.
    """

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int], *,
                 padding: tuple[int, int, int] = (0, 0, 0), bias: bool = True) -> None:
        if padding[0]:
            raise ValueError("CausalTimeConv pads in space only: the stream supplies the "
                             "earlier frames")
        super().__init__(cin, cout, kernel, padding=padding, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, L, H, W)`` -> ``(B, C', L - k + 1, H', W')``, as ``nn.Conv3d``."""
        b, _, length, h, w = x.shape
        k, c = self.kernel_size[0], self.in_channels   # constants, so that ONNX sees them
        t = length - k + 1
        # window j of frame i is x[:, :, i + j]; channel index j * c + input channel
        win = torch.cat([x[:, :, j:j + t] for j in range(k)], dim=1)
        win = win.permute(0, 2, 1, 3, 4).reshape(b * t, k * c, h, w)
        weight = self.weight.permute(0, 2, 1, 3, 4).reshape(self.out_channels, k * c,
                                                             *self.kernel_size[1:])
        y = nn.functional.conv2d(win, weight, self.bias, padding=self.padding[1:])
        return y.reshape(b, t, *y.shape[1:]).permute(0, 2, 1, 3, 4)


def _bn_relu(conv: nn.Module, c: int, three_d: bool = False) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm3d(c) if three_d else nn.BatchNorm2d(c),
                         nn.ReLU(inplace=True))


class DefectNet(nn.Module):
    """Streaming 3D-CNN + LSTM crack detector; see the module docstring."""

    def __init__(self, channels: tuple[int, int, int] | list[int] = (16, 32, 32),
                 temporal: int = 3, hidden: int = 32, stem: str = "patch") -> None:
        super().__init__()
        c0, c1, c2 = (int(c) for c in channels)
        if temporal < 1:
            raise ValueError("temporal must be >= 1")
        if stem not in STEMS:
            raise ValueError(f"stem={stem!r}: give one of {', '.join(STEMS)}")
        self.channels, self.temporal, self.hidden = (c0, c1, c2), int(temporal), int(hidden)
        self.stem = stem
        if stem == "fine":  # 3x3 stride 2 twice: a nonlinearity at half resolution
            first: nn.Module = nn.Sequential(
                *_bn_relu(nn.Conv2d(1, FINE_STEM_CHANNELS, 3, stride=2, padding=1, bias=False),
                          FINE_STEM_CHANNELS),
                *_bn_relu(nn.Conv2d(FINE_STEM_CHANNELS, c0, 3, stride=2, padding=1,
                                    bias=False), c0))
        else:  # one 4x4 patch per output
            first = _bn_relu(nn.Conv2d(1, c0, 4, stride=4, bias=False), c0)
        self.encoder = nn.Sequential(
            first,
            _bn_relu(nn.Conv2d(c0, c1, 3, stride=2, padding=1, bias=False), c1),
            _bn_relu(nn.Conv2d(c1, c2, 3, stride=2, padding=1, bias=False), c2),
        )
        self.temporal_conv = _bn_relu(
            CausalTimeConv(c2, c2, (self.temporal, 3, 3), padding=(0, 1, 1), bias=False), c2,
            three_d=True)
        self.map_head = nn.Conv3d(c2, 1, 1)
        self.lstm = nn.LSTM(c2 + 1, self.hidden, batch_first=True)
        self.frame_head = nn.Linear(self.hidden, 1)
        nn.init.constant_(self.map_head.bias, -4.0)  # cracks are rare: start near p = 0.02

    def initial_state(self, batch: int, height: int, width: int,
                      device: torch.device | str = "cpu") -> State:
        """Zero streaming state (temporal buffer, LSTM hidden and cell) for ``batch`` frames of
        ``height`` x ``width``.
        """
        h, w = height // STRIDE, width // STRIDE
        c2 = self.channels[2]
        return (torch.zeros(batch, c2, self.temporal - 1, h, w, device=device),
                torch.zeros(1, batch, self.hidden, device=device),
                torch.zeros(1, batch, self.hidden, device=device))

    def forward(self, frames: torch.Tensor, state: State | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """``frames (B, T, H, W)`` -> frame logits ``(B, T)``, map logits
        ``(B, T, H/16, W/16)`` and the new state."""
        b, _, hh, ww = frames.shape
        if state is None:
            state = self.initial_state(b, hh, ww, frames.device)
        return self._after_encoder(self._encode(frames), state)

    def still(self, images: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Still images ``(B, H, W)`` each shown for ``frames`` frames from a fresh state: the
        frame logits ``(B, frames)`` and maps ``(B, frames, H/16, W/16)`` that :meth:`forward`
        gives for the image repeated, with each image encoded once (for inference: a
        training-mode batch norm would see one frame's statistics)."""
        if frames < 1:
            raise ValueError("frames must be >= 1")
        b, hh, ww = images.shape
        f = self._encode(images[:, None]).expand(-1, -1, frames, -1, -1)
        logits, maps, _ = self._after_encoder(f, self.initial_state(b, hh, ww, images.device))
        return logits, maps

    def _encode(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames (B, T, H, W)`` -> features ``(B, C, T, H/16, W/16)``, frame by frame."""
        b, t, hh, ww = frames.shape
        x = frames.float().reshape(b * t, 1, hh, ww)
        x = x / (x.mean(dim=(2, 3), keepdim=True) + 1.0) - 1.0
        f = self.encoder(x * 4.0)
        c, h, w = f.shape[1:]
        return f.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)  # B, C, T, h, w

    def _after_encoder(self, f: torch.Tensor, state: State
                       ) -> tuple[torch.Tensor, torch.Tensor, State]:
        buf, h0, c0 = state
        seq = torch.cat([buf, f], dim=2)
        g = self.temporal_conv(seq)                           # B, C, T, h, w
        keep = self.temporal - 1
        new_buf = seq[:, :, -keep:] if keep else seq[:, :, :0]
        maps = self.map_head(g)[:, 0]                         # B, T, h, w
        map_max = maps.amax(dim=(2, 3))                       # B, T
        feats = torch.cat([g.amax(dim=(3, 4)).permute(0, 2, 1), map_max.unsqueeze(-1)], -1)
        out, (h1, c1) = self.lstm(feats, (h0, c0))
        logits = self.frame_head(out)[..., 0] + map_max
        return logits, maps, (new_buf, h1, c1)


def build(**config: Any) -> DefectNet:
    """The crack network with ``config`` (the registry's builder)."""
    return DefectNet(**config)


_STEP_AXES: dict[str, dict[int, str]] = {"frames": {1: "time"}, "logits": {1: "time"},
                                          "maps": {1: "time"}}
_CELLS = {3: "cells_y", 4: "cells_x"}
_STEP_AXES_FREE: dict[str, dict[int, str]] = {
    "frames": {1: "time", 2: "height", 3: "width"}, "buffer": _CELLS, "buffer_out": _CELLS,
    "logits": {1: "time"}, "maps": {1: "time", 2: "cells_y", 3: "cells_x"}}


def write_stream_onnx(weights: str | Path, out: str | Path | None = None, *,
                      photo: bool = True, threshold: float | None = None,
                      threshold_from: str | None = None) -> Path:
    """Export the streaming step of the ``defect-3dcnn-lstm`` in ``weights`` (a
    ``.safetensors`` file) with a free frame size to ``out`` (default: ``<stem>.stream.onnx``
    beside it), its still-photo form (:func:`export_still_onnx`) beside that
    (:func:`deepseek.manufacturing.runtime.still_path_for`), and with ``photo`` its
    photo decision (:func:`export_photo_onnx`, ``<stem>.photo.onnx``, for ``deepseek
    serve``), each stamped with the weights' sha256; the edge install runs the first two.
    The photo decision decides at ``threshold`` (a calibration's, named by
    ``threshold_from``), else at the one training stored, else at 0.5; under the views and
    at the scale training stored. Returns the streaming export's path."""
    from deepseek.loader import ModelLoader, read_model_config, stamp_onnx
    from deepseek.manufacturing.errors import ManufacturingError
    from deepseek.manufacturing.runtime import (
        NAME,
        STREAM_SUFFIX,
        photo_path_for,
        refuse_good_parts_model,
        still_path_for,
        stream_path_for,
    )

    out = Path(out) if out is not None else stream_path_for(weights)
    if not out.name.endswith(STREAM_SUFFIX):
        raise ManufacturingError(f"--out {out}: name the streaming export <name>{STREAM_SUFFIX}"
                                 " (the edge install finds the still-photo export beside it by "
                                 "that name)")
    refuse_good_parts_model(weights, "the ONNX export")
    arch, cfg = read_model_config(weights)
    if arch != NAME:
        raise ManufacturingError(f"{weights}: architecture {arch!r}, not {NAME}")
    decision = photo_settings(weights, threshold, threshold_from) if photo else None
    net = ModelLoader.load(weights, device="cpu").module
    graphs = [(out, export_step_onnx(net)), (still_path_for(out), export_still_onnx(net))]
    if decision is not None:
        graphs.append((photo_path_for(out), export_photo_onnx(net, **decision)))
    from deepseek.paths import written_whole

    for path, graph in graphs:
        with written_whole(path) as tmp:  # a runtime loading it never sees half of it
            tmp.write_bytes(graph)
        stamp_onnx(path, weights, NAME, cfg)
    return out


def write_packaged_onnx(weights: str | Path) -> Path:
    """The edge exports of packaged weights (the registry's ``onnx_export``): the streaming
    step and the still-photo form, no photo decision (weights trained on the synthetic line
    have no threshold for real photos to serve)."""
    return write_stream_onnx(weights, photo=False)


def photo_settings(weights: str | Path, threshold: float | None = None,
                   threshold_from: str | None = None) -> dict[str, Any]:
    """How the photo decision of ``weights`` decides, from what training stored with them:
    ``threshold`` (the given one, else the stored one, else 0.5), ``views``, ``scale``,
    ``bit_depth`` (the bits of the camera words the photo decision then takes) and
    ``threshold_from`` (where the threshold came from, recorded in the export). A stored
    setting that no training writes is an error naming the file."""
    from deepseek.manufacturing.errors import ManufacturingError
    from deepseek.manufacturing.formats import VIEWS
    from deepseek.manufacturing.images import stored_setting
    from deepseek.manufacturing.runtime import stored_extra

    extra = stored_extra(weights)
    stored = extra.get("threshold")
    if threshold is None and isinstance(stored, (int, float)) and 0 < stored < 1:
        threshold, threshold_from = float(stored), "stored by training"
    elif threshold is None:
        threshold, threshold_from = 0.5, "none stored: 0.5"
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or \
            not 0 < threshold < 1:
        raise ManufacturingError(f"threshold={threshold!r}: give a probability between 0 "
                                 "and 1")
    views = extra.get("views", 1)
    if views not in VIEWS:
        raise ManufacturingError(f"{weights}: stored views={views!r}, which no training "
                                 f"writes ({' or '.join(map(str, VIEWS))}); train it again")
    return {"threshold": float(threshold), "views": int(views),
            "scale": stored_setting(extra, "scale", weights),
            "bit_depth": stored_setting(extra, "bit_depth", weights),
            "threshold_from": threshold_from or "given"}


def export_step_onnx(model: DefectNet, height: int | None = None, width: int | None = None,
                     opset: int = 17) -> bytes:
    """The streaming step of ``model`` as an ONNX graph (bytes): inputs ``frames`` (uint8,
    ``1 x T x H x W``, T free), ``buffer``, ``h``, ``c``; outputs ``logits``, ``maps``,
    ``buffer_out``, ``h_out``, ``c_out``. Without ``height``/``width`` the frame size is
    free too (the shipped export, :mod:`deepseek.manufacturing.runtime`)."""
    free = height is None or width is None
    height, width = (4 * STRIDE, 4 * STRIDE) if free else (height, width)

    class _Step(nn.Module):
        def __init__(self, net: DefectNet) -> None:
            super().__init__()
            self.net = net

        def forward(self, frames: torch.Tensor, buf: torch.Tensor, h: torch.Tensor,
                    c: torch.Tensor) -> tuple[torch.Tensor, ...]:
            lg, mp, (b2, h2, c2) = self.net(frames, (buf, h, c))
            return lg, mp, b2, h2, c2

    state = model.initial_state(1, height, width)
    frames = torch.zeros(1, 2, height, width, dtype=torch.uint8)
    graph = _export(_Step(model), (frames, *state), ["frames", "buffer", "h", "c"],
                    ["logits", "maps", "buffer_out", "h_out", "c_out"],
                    _STEP_AXES_FREE if free else _STEP_AXES, opset)
    if not free:
        return graph
    # the free frame size goes in steps of the cell, the buffer's cells follow it; the
    # server times the step at 64 x 64
    return _declare_inputs(graph, [
        {"name": "frames", "multiple": [1, 1, STRIDE, STRIDE], "example": [1, 1, height, width]},
        {"name": "buffer", "example": list(state[0].shape),
         "follows": [None, None, None, ["frames", 2, STRIDE], ["frames", 3, STRIDE]]}])


def _declare_inputs(graph: bytes, inputs: list[dict[str, Any]], **meta: str) -> bytes:
    """``graph`` (ONNX bytes) with what its inputs take recorded in its metadata
    (:data:`deepseek.loader.INPUTS_META_KEY`), and ``meta`` beside it."""
    import json

    import onnx

    from deepseek.loader import INPUTS_META_KEY

    model = onnx.load_from_string(graph)
    for key, value in {INPUTS_META_KEY: json.dumps(inputs), **meta}.items():
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


def export_still_onnx(model: DefectNet, frames: int | None = None, opset: int = 17) -> bytes:
    """:meth:`DefectNet.still` of ``model`` as an ONNX graph (bytes): input ``images`` (uint8,
    ``B x H x W``, all free, H and W multiples of 16), outputs ``logits`` (``B x frames``)
    and ``maps`` (``B x frames x H/16 x W/16``); ``frames`` (default
    :data:`deepseek.manufacturing.runtime.FRAMES`) is fixed in the graph and recorded in its
    metadata (:data:`deepseek.manufacturing.runtime.FRAMES_META_KEY`)."""
    from deepseek.manufacturing.runtime import FRAMES, FRAMES_META_KEY

    frames = FRAMES if frames is None else int(frames)

    class _Still(nn.Module):
        def __init__(self, net: DefectNet) -> None:
            super().__init__()
            self.net = net

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.net.still(images, frames)

    side = 4 * STRIDE
    graph = _export(
        _Still(model), (torch.zeros(1, side, side, dtype=torch.uint8),),
        ["images"], ["logits", "maps"],
        {"images": {0: "batch", 1: "height", 2: "width"}, "logits": {0: "batch"},
         "maps": {0: "batch", 2: "cells_y", 3: "cells_x"}}, opset)
    return _declare_inputs(graph, [{"name": "images", "multiple": [1, STRIDE, STRIDE],
                                    "example": [1, side, side]}],
                           **{FRAMES_META_KEY: str(frames)})


#: a part photo's decision (:func:`export_photo_onnx`): its inputs and outputs
PHOTO_INPUTS, PHOTO_OUTPUTS = ["image"], ["score", "defect", "map", "threshold"]
#: what a photo decision answers: the traced outputs and the box added after (_with_box)
DECISION_OUTPUTS = [*PHOTO_OUTPUTS, "box"]
#: the photo size the photo graph declares as its example (the server times it on it)
PHOTO_EXAMPLE = [1, 512, 512]


def _resize_axis(x: torch.Tensor, axis: int, scale: float, ceil: bool = False
                 ) -> torch.Tensor:
    """``x`` (float, gray levels) resized along ``axis`` as
    :func:`deepseek.manufacturing.images.resize_axis` resizes without OpenCV (smaller: area
    means; larger: linear), the same arithmetic in the same order, traced with the size
    free; ``ceil``: to ``ceil(n * scale)`` rather than the rounded size (what a DRAEM model
    reads its photos at). Each output reads a fixed number of inputs (gathered), so memory
    follows the output, never ``n_in x n_out``."""
    # sizes as 1-element float64 tensors: the exporter computes 0-d ones (and Python floats
    # beside them) in float32, which moves ties in the rounding
    n_in = torch._shape_as_tensor(x)[axis:axis + 1].double()
    target = n_in * torch.tensor([scale], dtype=torch.float64)
    n_out = torch.clamp(torch.ceil(target) if ceil else torch.round(target), min=1)
    ratio = n_in / n_out
    i = torch.arange(n_out.long()[0]).double()
    last = n_in - 1
    if scale < 1:  # output i spans input [i r, (i + 1) r); r < 1.5 / scale at any size
        lo, hi = i * ratio, (i + 1) * ratio
        first = torch.floor(lo)
        out = None
        for k in range(int(math.ceil(1.5 / scale)) + 2):
            j = first + k
            share = (torch.minimum(hi, j + 1) - torch.maximum(lo, j)).clamp(min=0) / ratio
            term = torch.index_select(x, axis, torch.minimum(j, last).long()) * _along(
                share.float(), axis, x.dim())
            out = term if out is None else out + term
        return out
    pos = (i + 0.5) * ratio - 0.5
    below = torch.floor(pos)
    frac = torch.where((below < 0) | (below >= last), torch.zeros_like(pos), pos - below)
    below = torch.minimum(below.clamp(min=0), last)
    f = _along(frac.float(), axis, x.dim())
    return (torch.index_select(x, axis, below.long()) * (1 - f)
            + torch.index_select(x, axis, torch.minimum(below + 1, last).long()) * f)


def _along(v: torch.Tensor, axis: int, dims: int) -> torch.Tensor:
    """A 1-D ``v`` shaped to broadcast along ``axis`` of a ``dims``-dimensional tensor."""
    shape = [1] * dims
    shape[axis] = -1
    return v.reshape(shape)


class PhotoDecision(nn.Module):
    """What ``deepseek manufacturing score`` decides on a gray part photo, as one module
    (exported by :func:`export_photo_onnx`): ``images (B, H, W)`` uint8 of any size ->
    ``score (B,)`` (the crack probability), ``defect (B,)`` (score >= threshold), ``map (B,
    ceil(h/16), ceil(w/16))`` (each cell's probability, on the photo at ``scale``) and
    ``threshold (B,)``. The photo is resized to the ``scale`` the network was trained at,
    padded with its edge values to the 16-pixel cell, held for ``frames`` frames and scored
    under ``views`` (1, or 4 with the flips), the logits averaged as
    :func:`deepseek.manufacturing.stream.photo_logits` averages them."""

    def __init__(self, net: DefectNet, threshold: float, *, frames: int, views: int = 1,
                 scale: float = 1.0) -> None:
        super().__init__()
        self.net, self.frames, self.views, self.scale = net, int(frames), int(views), scale
        self.register_buffer("threshold", float32_threshold(threshold))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``images (B, H, W)`` -> ``(score, defect, map, threshold)`` (see the class)."""
        logit, cells = photo_graph_logits(self.net, images.float(), self.frames, self.views,
                                          self.scale)
        score = 0.5 * (1.0 + torch.tanh(0.5 * logit))  # score_image's sigmoid
        return (score, score >= self.threshold, 0.5 * (1.0 + torch.tanh(0.5 * cells)),
                self.threshold.expand_as(score))


def photo_graph_logits(net: DefectNet, x: torch.Tensor, frames: int, views: int,
                       scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`deepseek.manufacturing.stream.photo_logits` as traceable torch: gray photos
    ``x (B, H, W)`` (float, gray levels) resized to ``scale`` (rounded to gray levels, as a
    resized 8-bit photo is), padded with their edge values to the cell, held for ``frames``
    frames under ``views`` -> the frame logits ``(B,)`` and the cell logits cut to the
    resized photo ``(B, ceil(h/16), ceil(w/16))``."""
    if scale != 1:
        x = _resize_axis(_resize_axis(x, 1, scale), 2, scale).round().clamp(0, 255)
    size = torch._shape_as_tensor(x)
    h, w = size[1], size[2]
    x = pad_to_cell(x, h, w)[:, 0]
    logits, maps = [], []
    for view in range(views):
        flips = [d for bit, d in ((1, -1), (2, -2)) if view & bit]
        lg, mp = net.still(torch.flip(x, flips) if flips else x, frames)
        logits.append(lg[:, -1])
        maps.append(torch.flip(mp[:, -1], flips) if flips else mp[:, -1])
    cells = torch.stack(maps).mean(0)[:, : (h + STRIDE - 1) // STRIDE,
                                      : (w + STRIDE - 1) // STRIDE]
    return torch.stack(logits).mean(0), cells


def float32_threshold(threshold: float) -> torch.Tensor:
    """The float32 at or above ``threshold``, for a graph's ``score >= threshold``: a float32
    score passes it where ``score``'s float64 comparison passes ``threshold``."""
    thr = torch.tensor(float(threshold), dtype=torch.float32)
    return torch.nextafter(thr, torch.tensor(float("inf"))) if float(thr) < threshold else thr


def pad_to_cell(x: torch.Tensor, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Photos ``x (B, H, W)`` (``h``, ``w``: their traced size) padded with their edge values
    to multiples of the 16-pixel cell, as ``(B, 1, H', W')`` (what
    :func:`deepseek.manufacturing.stream.pad16` does, traceable)."""
    return nn.functional.pad(x[:, None], [0, (STRIDE - w % STRIDE) % STRIDE, 0,
                                          (STRIDE - h % STRIDE) % STRIDE], mode="replicate")


def photo_cell(scale: float) -> int:
    """The 16-pixel cell a photo graph pads to, in the photo's own pixels when the graph
    scales it by ``scale`` first (rounded up): what the server counts a photo's size up to
    (a photo of 1 x 1 pixel runs as one cell)."""
    return max(1, math.ceil(STRIDE / float(scale) - 1e-9))


def photo_cost(scale: float) -> float:
    """The pixels a photo graph runs per pixel of the photo padded to its cell: the photo
    resized by ``scale`` on each side, at least 1 (the photo is held as sent) -- what the
    server multiplies a photo's size by before it checks it against its element cap. Views
    are not counted: they run one after another, each on the same memory (onnxruntime, a
    4096 x 4096 photo: 0.75 GB under one view, 0.76 GB under four)."""
    return max(1.0, float(scale) ** 2)


class CameraWords(nn.Module):
    """A photo decision ``inner`` that takes a camera's 16-bit words holding ``bit_depth``
    bits (a 12-bit camera's 0-4095) instead of 8-bit gray: each word becomes the gray level
    :func:`deepseek.manufacturing.images.read_gray` reads it as (times 255 / (2^bits - 1)
    in float32, rounded half to even), so the line sends its photos as the camera writes
    them and they are scored as ``score`` scores their files. A word above the range would
    be clipped to white here: the graph declares its range, which the server checks."""

    def __init__(self, inner: nn.Module, bit_depth: int) -> None:
        super().__init__()
        self.inner, self.net = inner, inner.net
        self.register_buffer("gain", torch.tensor(255.0 / ((1 << int(bit_depth)) - 1),
                                                  dtype=torch.float32))

    def forward(self, words: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``words (B, H, W)`` -> what ``inner`` gives for their gray levels."""
        return self.inner(torch.round(words.float() * self.gain).clamp(0, 255))


def export_decision(wrapper: nn.Module, settings: dict[str, Any], map_axes: tuple[str, str],
                    opset: int = 17, cell: int = STRIDE, cost: float = 1.0,
                    bit_depth: int | None = None, *, box: tuple[float, float],
                    **meta: str) -> bytes:
    """A photo decision ``wrapper`` (a module holding its network as ``net``: ``image`` ->
    ``score``, ``defect``, ``map``, ``threshold``) as an ONNX graph (bytes), with the box
    ``score`` draws around a flagged photo's defect added (:func:`_with_box`; ``box``: the
    map's cell in the photo's pixels and the map level of the box's cells), every size free
    (the map's axes named ``map_axes``), the example photo, the ``cell`` it pads a photo's
    sides to (in the photo's pixels: :func:`photo_cell`) and its ``cost``
    (:func:`photo_cost`) declared, and ``settings`` in its metadata
    (:data:`deepseek.manufacturing.runtime.PHOTO_META_KEY`) beside ``meta``. ``image`` is
    8-bit gray, or with ``bit_depth`` (a model trained with ``--bit-depth``) the camera's
    16-bit words (:class:`CameraWords`), their range declared; it declares the reader
    :data:`~deepseek.manufacturing.formats.PHOTO_READER` too, so that a server takes the
    photo's file as well (:func:`deepseek.manufacturing.images.decode_photo`)."""
    import json

    from deepseek.manufacturing.runtime import PHOTO_META_KEY

    if bit_depth:
        wrapper = CameraWords(wrapper, bit_depth)
    graph = _export(
        wrapper, (torch.zeros(1, 4 * STRIDE, 4 * STRIDE,
                              dtype=torch.int32 if bit_depth else torch.uint8),),
        PHOTO_INPUTS, PHOTO_OUTPUTS,
        {"image": {0: "batch", 1: "height", 2: "width"}, "score": {0: "batch"},
         "defect": {0: "batch"}, "map": {0: "batch", 1: map_axes[0], 2: map_axes[1]},
         "threshold": {0: "batch"}}, opset)
    declared: dict[str, Any] = {"name": "image", "example": PHOTO_EXAMPLE,
                                "cell": [1, int(cell), int(cell)], "decode": PHOTO_READER}
    if cost != 1:
        declared["cost"] = float(cost)
    if bit_depth:  # traced from 32-bit integers (PyTorch exports no 16-bit unsigned input)
        graph = _words_input(graph)
        declared["range"] = [0, (1 << int(bit_depth)) - 1]
    graph = _with_box(graph, *box)
    return _declare_inputs(graph, [declared],
                           **{PHOTO_META_KEY: json.dumps(settings), **meta})


def _with_box(graph: bytes, stride: float, level: float) -> bytes:
    """``graph`` (a photo decision) with a fifth output, ``box`` (INT64 ``B x 4``): the pixel
    box ``score`` gives a flagged photo (:func:`deepseek.manufacturing.stream.box_from_map`:
    the cells at or above ``level`` that reach the map's hottest cell through one another,
    gaps of up to two cells bridged, each cell ``stride`` of the photo's pixels), and -1 on
    each side for a photo not flagged. The flood runs as a Loop of 3 x 3 max-pools held to
    the cells within one of a hot cell, until it stops growing."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(graph)
    g = model.graph
    p = "box/"

    def const(name: str, value: Any, dtype: Any) -> str:
        g.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=dtype),
                                                     p + "c_" + name))
        return p + "c_" + name

    def node(op: str, inputs: list[str], out: str, **attrs: Any) -> str:
        g.node.append(helper.make_node(op, inputs, [p + out], **attrs))
        return p + out

    level_c, stride_c = const("level", level, np.float32), const("stride", stride, np.float64)
    one, zero = const("one", 1, np.int64), const("zero", 0, np.int64)
    unit = const("unit", 1.0, np.float64)
    axis1 = const("axis1", [1], np.int64)
    m4 = node("Unsqueeze", ["map", axis1], "m4")
    hot = node("Cast", [node("GreaterOrEqual", [m4, level_c], "hot_b")], "hot",
               to=TensorProto.FLOAT)
    pool = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [1, 1]}
    reach = node("MaxPool", [hot], "reach", **pool)
    flat = node("Reshape", [m4, const("flat", [0, -1], np.int64)], "flat")
    peak = node("ArgMax", [flat], "peak", axis=1, keepdims=1)
    n = node("Gather", [node("Shape", [flat], "flat_shape"), one], "n", axis=0)
    pos = node("Unsqueeze", [node("Range", [zero, n, one], "pos1"),
                             const("axis0", [0], np.int64)], "pos")
    seed = node("Reshape", [node("Cast", [node("Equal", [pos, peak], "seed_b")], "seed_f",
                                 to=TensorProto.FLOAT), node("Shape", [m4], "m4_shape")],
                "seed")
    body = helper.make_graph(
        [helper.make_node("MaxPool", ["region_in"], ["grown"], **pool),
         helper.make_node("Mul", ["grown", reach], ["region_out"]),
         helper.make_node("Sub", ["region_out", "region_in"], ["gained"]),
         helper.make_node("ReduceMax", ["gained"], ["most"], keepdims=0),
         helper.make_node("Greater", ["most", p + "c_nothing"], ["cond_out"])],
        "box_flood",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("region_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("region_out", TensorProto.FLOAT, None)])
    const("nothing", 0.0, np.float32)
    region = node("Loop", [n, const("go", True, np.bool_), seed], "region", body=body)
    found = node("Mul", [region, hot], "found")
    any_found = node("Greater", [node("ReduceMax", [found], "found_max", axes=[1, 2, 3],
                                      keepdims=1), p + "c_nothing"], "any_found")
    cells = node("Where", [any_found, found, seed], "cells")
    rows = node("ReduceMax", [cells], "rows", axes=[1, 3], keepdims=0)
    cols = node("ReduceMax", [cells], "cols", axes=[1, 2], keepdims=0)
    shape = node("Shape", ["image"], "image_shape")
    sides = []
    for name, along, size_axis in (("x", cols, 2), ("y", rows, 1)):
        first = node("Cast", [node("ArgMax", [along], f"{name}_first", axis=1, keepdims=0)],
                     f"{name}_first_d", to=TensorProto.DOUBLE)
        last = node("Cast", [node("ArgMax", [along], f"{name}_last", axis=1, keepdims=0,
                                  select_last_index=1)], f"{name}_last_d",
                    to=TensorProto.DOUBLE)
        side = node("Cast", [node("Gather", [shape, const(f"{name}_axis", size_axis,
                                                            np.int64)], f"{name}_size",
                                  axis=0)], f"{name}_size_d", to=TensorProto.DOUBLE)
        lo = node("Floor", [node("Mul", [first, stride_c], f"{name}_lo_f")], f"{name}_lo")
        hi = node("Floor", [node("Min", [
            node("Sub", [side, unit], f"{name}_edge"),
            node("Sub", [node("Mul", [node("Add", [last, unit], f"{name}_after"), stride_c],
                              f"{name}_hi_end"), unit], f"{name}_hi_f")], f"{name}_hi_c")],
                  f"{name}_hi")
        sides.append((lo, hi))
    (x0, x1), (y0, y1) = sides
    cols4 = [node("Unsqueeze", [v, axis1], f"col{i}") for i, v in enumerate((x0, y0, x1, y1))]
    box_d = node("Concat", cols4, "box_d", axis=1)
    box_i = node("Cast", [box_d], "box_i", to=TensorProto.INT64)
    flagged = node("Unsqueeze", ["defect", axis1], "flagged")
    g.node.append(helper.make_node("Where", [flagged, box_i, const("none", [-1] * 4,
                                                                  np.int64)], ["box"]))
    g.output.append(helper.make_tensor_value_info("box", TensorProto.INT64, ["batch", 4]))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _words_input(graph: bytes) -> bytes:
    """``graph`` with its ``image`` input typed 16-bit unsigned: the input is only ever cast
    to float (:class:`CameraWords`), which takes 16-bit words as it takes 32-bit ones."""
    import onnx

    model = onnx.load_from_string(graph)
    users = [n for n in model.graph.node if "image" in n.input]
    if [n.op_type for n in users] != ["Cast"]:
        raise RuntimeError(f"the photo decision's image feeds {[n.op_type for n in users]}, "
                           "not one Cast: the exporter changed")
    (image,) = [i for i in model.graph.input if i.name == "image"]
    image.type.tensor_type.elem_type = onnx.TensorProto.UINT16
    onnx.checker.check_model(model)
    return model.SerializeToString()


def export_photo_onnx(model: DefectNet, threshold: float, *, frames: int | None = None,
                      views: int = 1, scale: float = 1.0, threshold_from: str = "given",
                      bit_depth: int | None = None, opset: int = 17) -> bytes:
    """:class:`PhotoDecision` of ``model`` as an ONNX graph (bytes): input ``image`` (uint8
    ``B x H x W``, all free: the server serves any photo size; with ``bit_depth``, the
    camera's 16-bit words, :class:`CameraWords`), outputs ``score``, ``defect`` (bool),
    ``map`` and ``threshold``; its settings are recorded in its metadata
    (:data:`deepseek.manufacturing.runtime.PHOTO_META_KEY`), with where the threshold came
    from (``threshold_from``) and ``bit_depth`` (None: 8-bit gray in; a 16-bit photo is
    sent read over the full 16 bits)."""
    from deepseek.manufacturing.runtime import FRAMES, FRAMES_META_KEY

    frames = FRAMES if frames is None else int(frames)
    settings = {"threshold": float(threshold), "threshold_from": threshold_from,
                "views": int(views), "scale": float(scale), "bit_depth": bit_depth,
                "frames": frames}
    return export_decision(
        PhotoDecision(model, threshold, frames=frames, views=views, scale=scale), settings,
        ("cells_y", "cells_x"), opset, cell=photo_cell(scale), cost=photo_cost(scale),
        bit_depth=bit_depth, box=(STRIDE / scale, 0.5),
        **{FRAMES_META_KEY: str(frames)})


def _export(wrapper: nn.Module, args: tuple[torch.Tensor, ...], inputs: list[str],
            outputs: list[str], axes: dict[str, dict[int, str]], opset: int) -> bytes:
    """``wrapper`` (a module holding the network as ``net``) traced to ONNX bytes in eval
    mode; the network's training mode is restored after (the exporter would leave the
    wrapper's)."""
    import warnings

    net = wrapper.net
    was_training = net.training
    wrapper.eval()
    out = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, args, out, opset_version=opset, input_names=inputs,
                              output_names=outputs, dynamic_axes=axes, dynamo=False)
    finally:
        net.train(was_training)
    return out.getvalue()
