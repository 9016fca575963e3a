"""Good parts only: a patch-feature memory (PatchCore-style nearest-neighbour anomaly score).

For lines with few or no defect examples. :func:`fit_memory` runs a frozen backbone (the
packaged ``defect-3dcnn-lstm`` encoder by default, or any weights file of that model) over
images of good parts and keeps their patch features; an image's anomaly map is, per patch, the
distance to the nearest remembered good patch, and its score the mean of the highest of them
(below), plus by default the backbone's own crack logit, standardised on the good images
(:data:`CRACK_WEIGHT`). The threshold is set for a target false-positive rate on out-of-fold
scores of the good images.

Patch features: the encoder's stride-8 features (32 channels) beside its stride-16 features
(32 channels, upsampled), averaged over each 3x3 neighbourhood (each patch sees its
surroundings), one 64-dimensional vector per 8x8 pixels. An image's score is the mean of its
highest patch distances, the top ``top_fraction`` of its patches (0.2 % by default, at least
one: the largest alone for a small image): on a good part the largest is often one odd
patch, while a crack raises a run of patches along its length. The memory keeps at most
``max_bank`` patches, a uniform random sample, or a greedy coreset (PatchCore's k-centre
selection, which keeps rare good patches such as part edges that a uniform sample may leave
out). The threshold comes from out-of-fold scores of every good image (folds of groups, look-alike
photos of one part kept together), not from a slice held out by name. Saved as
safetensors (the bank) with JSON metadata; no pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.manufacturing.errors import ManufacturingError

FEATURE_STRIDE = 8
KIND = "patch-memory"
#: the crack model's share of a memory's score (``fit_memory(crack_weight=)``, ``train
#: --good-only --crack-weight``; 0: the memory alone): the backbone's own crack logit,
#: standardised on the good images, added to the memory's score in units of the spread of
#: its out-of-fold good scores, both counting half. On KolektorSDD (development runs of 5
#: Dec 2026) the two find different good parts unusual (their good scores correlate at
#: 0.67): image AUROC 0.930 / 0.913 for the memory alone (train split out of fold / val),
#: 0.926 / 0.986 for the packaged crack weights alone, 0.938 / 0.954 for the two.
CRACK_WEIGHT = 0.5
#: how the crack model reads a photo for its share: at this scale (area-averaged) under this
#: many views (:func:`deepseek.manufacturing.stream.photo_logits`). For the packaged weights
#: the best of 5 scales (0.5-1) under 1 or 4 views on KolektorSDD's train split (0.926; 0.895
#: as the photo is under one view), and on its val split (0.986; 0.961).
CRACK_SCALE, CRACK_VIEWS = 0.875, 4
#: an image's score: the mean of the highest patch distances, this fraction of its patches
#: (at least one). Chosen on KolektorSDD's train split alone (out-of-fold good images against
#: its 42 cracked ones): image AUROC 0.914 with the largest alone, 0.926 / 0.939 / 0.940 with
#: the top 0.05 / 0.2 / 0.4 %, 0.921 at 1 %.
TOP_FRACTION = 0.002


def top_mean(amap: np.ndarray, fraction: float) -> float:
    """The mean of the ``fraction`` highest values of ``amap`` (at least one value; the
    largest alone for ``fraction`` 0)."""
    flat = np.asarray(amap, np.float64).ravel()
    k = min(flat.size, max(1, round(fraction * flat.size)))
    return float(np.partition(flat, flat.size - k)[flat.size - k:].mean())


def _backbone(model: Any) -> Any:
    from deepseek.manufacturing.stream import load_net

    return load_net(model).eval()


def patch_features(net: Any, image: np.ndarray) -> np.ndarray:
    """(h, w, 64) float32 features of a grayscale image, one per 8x8 pixels (cut to the
    image; the image is padded with its edge values to a multiple of 16)."""
    import torch
    import torch.nn.functional as F

    from deepseek.manufacturing.stream import pad16

    h, w = image.shape
    x = torch.from_numpy(pad16(image[None]).astype(np.float32))[None]  # 1, 1, H, W
    with torch.inference_mode():
        x = x / (x.mean(dim=(2, 3), keepdim=True) + 1.0) - 1.0  # as DefectNet.forward
        f1 = net.encoder[0](x * 4.0)
        f2 = net.encoder[1](f1)
        f3 = net.encoder[2](f2)
        up = F.interpolate(f3, size=f2.shape[2:], mode="bilinear", align_corners=False)
        f = F.avg_pool2d(torch.cat([f2, up], 1), 3, stride=1, padding=1,
                         count_include_pad=False)
    hh, ww = -(-h // FEATURE_STRIDE), -(-w // FEATURE_STRIDE)
    return f[0, :, :hh, :ww].permute(1, 2, 0).numpy().copy()


class PatchMemory:
    """The memory of good patches, its threshold and what it was fitted on."""

    stride = FEATURE_STRIDE  # pixels per value of the anomaly map

    def __init__(self, bank: np.ndarray, meta: dict[str, Any], net: Any = None) -> None:
        self.bank = np.ascontiguousarray(bank, dtype=np.float32)
        self.meta = meta
        self.net = net if net is not None else _backbone(meta.get("backbone",
                                                                  "defect-3dcnn-lstm"))
        self._bank_t: Any = None
        #: after :func:`fit_memory`: each good image's out-of-fold score by path (the scores
        #: the threshold was set on; not saved)
        self.out_of_fold: dict[str, float] = {}
        #: after :func:`fit_memory`: for the good images scored highest out of fold (those a
        #: threshold review lists), the box around each one's most anomalous patches under
        #: the fold memory that held it out, as ``score`` boxes a defect, in its own pixels
        #: (x0, y0, x1, y1, inclusive; not saved)
        self.out_of_fold_spots: dict[str, list[int]] = {}

    @property
    def threshold(self) -> float | None:
        """The stored anomaly-score threshold (set at training for a target false-positive rate), or
        None.
        """
        t = self.meta.get("threshold")
        return None if t is None else float(t)

    def anomaly_map(self, image: np.ndarray) -> np.ndarray:
        """Per 8x8 patch: the distance to the nearest good patch in the memory. A photo of
        more than :data:`~deepseek.manufacturing.stream.TILE_ABOVE` pixels is mapped in
        overlapping tiles, as the crack network scores it, so that memory stays that of a
        tile: each tile's patches are its own features, and the map is the tiles' cores."""
        import torch

        from deepseek.manufacturing import stream

        if image.shape[0] * image.shape[1] > stream.TILE_ABOVE:
            return stream.in_tiles(image, FEATURE_STRIDE,
                                   lambda tile: (None, self.anomaly_map(tile)))[1]
        if self._bank_t is None:
            self._bank_t = torch.from_numpy(self.bank)
        feats = torch.from_numpy(patch_features(self.net, image))
        h, w, d = feats.shape
        q = feats.reshape(-1, d)
        best = torch.full((q.shape[0],), float("inf"))
        with torch.inference_mode():  # 8192 x 8192 distances at most at once (256 MB)
            for r in range(0, len(q), 8192):
                for s in range(0, len(self._bank_t), 8192):
                    dist = torch.cdist(q[r:r + 8192], self._bank_t[s:s + 8192])
                    best[r:r + 8192] = torch.minimum(best[r:r + 8192], dist.min(dim=1).values)
        return best.reshape(h, w).numpy()

    @property
    def top_fraction(self) -> float:
        """The fraction of an image's patches whose mean distance is its score (0: the
        largest alone, as memories written before the fraction was stored were scored)."""
        return float(self.meta.get("top_fraction", 0.0))

    @property
    def crack(self) -> dict[str, Any] | None:
        """How the backbone's crack logit takes part in the score (:data:`CRACK_WEIGHT`), or
        None for the memory alone (also every memory written before it could)."""
        c = self.meta.get("crack")
        return c if isinstance(c, dict) and c.get("weight", 0) > 0 else None

    def score(self, image: np.ndarray) -> tuple[float, np.ndarray]:
        """Anomaly score of one grayscale image and its anomaly map: the mean of the map's
        top :attr:`top_fraction` (at least the largest value), plus the crack model's share
        where the memory has one (:attr:`crack`: ``gain * (logit - logit_mean)``, in the
        units of the patch distances)."""
        m = self.anomaly_map(image)
        s = top_mean(m, self.top_fraction)
        c = self.crack
        if c is not None:
            s += float(c["gain"]) * (crack_logit(self.net, image, c) - float(c["logit_mean"]))
        return s, m

    def save(self, path: str | Path) -> Path:
        """Write the memory (patches, encoder config, threshold) as one ``.safetensors`` file;
        returns its path.
        """
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        from deepseek.paths import written_whole

        with written_whole(path) as tmp:  # a service loading it never sees half of it
            save_file({"bank": self.bank}, str(tmp),
                      metadata={"deepseek": json.dumps(self.meta)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> PatchMemory:
        """Read a memory written by :meth:`save`.

        Raises:
            ManufacturingError: the file is unreadable or not a patch memory.
        """
        meta, tensors = read_kind(path, KIND, "good-parts memory")
        if "bank" not in tensors:
            raise ManufacturingError(f"{path}: cannot read a good-parts memory (no 'bank')")
        check_backbone(path, meta)
        return cls(tensors["bank"], meta)


class MemoryGraph:
    """A good-parts memory scored through its photo decision (``<stem>.photo.onnx`` beside
    the memory: ``train --good-only`` and ``deepseek manufacturing export MEMORY`` write it)
    on onnxruntime: how an install without PyTorch (the edge form) scores it with ``score``,
    ``calibrate`` and ``batch``. The same anomaly score and map as :class:`PatchMemory`, but
    the crack model's 7/8-size view is resized by the project's resize, as the edge form
    resizes without OpenCV (the full install's OpenCV moves a score by up to about 0.003).
    A photo of more than :data:`~deepseek.manufacturing.stream.TILE_ABOVE` pixels is
    refused: the full install maps it in tiles; the graph would take it whole."""

    stride = FEATURE_STRIDE
    #: what the model is, in the errors
    what = "good-parts memory"

    @staticmethod
    def read_meta(weights: Any) -> dict[str, Any] | None:
        """The model file's metadata, None when it is not this kind of model."""
        return memory_meta(weights)

    def __init__(self, weights: Path, meta: dict[str, Any], session: Any, path: Path) -> None:
        self.weights, self.meta, self.session, self.path = weights, meta, session, path
        #: whether the graph takes a camera's 16-bit words (a memory fitted with --bit-depth)
        self.takes_words = session.get_inputs()[0].type == "tensor(uint16)"

    @property
    def threshold(self) -> float | None:
        """The stored anomaly-score threshold (as :attr:`PatchMemory.threshold`)."""
        t = self.meta.get("threshold")
        return None if t is None else float(t)

    @classmethod
    def load(cls, weights: str | Path) -> MemoryGraph:
        """The photo decision beside the model ``weights``, which it must have been
        exported from.

        Raises:
            ManufacturingError: none there, a stale one (its recorded source is other
                weights) or no onnxruntime, each with the command that fixes it."""
        from deepseek.extras import missing
        from deepseek.loader import session_options
        from deepseek.manufacturing.runtime import FULL_HINT, exported_from, photo_beside

        weights = Path(weights)
        meta = cls.read_meta(weights)
        if meta is None:
            raise ManufacturingError(f"{weights}: not a {cls.what}")
        path = photo_beside(weights)
        redo = (f"write it with `deepseek manufacturing export {weights}` (needs PyTorch: "
                f"{FULL_HINT}), or score in an install with PyTorch")
        if missing("runtime"):
            raise ManufacturingError(f"{weights}: scoring a {cls.what} needs PyTorch or "
                                     "onnxruntime (pip install \"deepseek-manufacturing[edge]\")")
        if not path.is_file():
            raise ManufacturingError(f"{weights}: no photo decision beside it ({path.name}), "
                                     f"which an install without PyTorch scores with; {redo}")
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), session_options(),
                                       providers=["CPUExecutionProvider"])
        if not exported_from(session, weights):
            raise ManufacturingError(f"{path} was not exported from {weights} (its recorded "
                                     f"source differs); {redo}")
        return cls(weights, meta, session, path)

    def score(self, image: np.ndarray) -> tuple[float, np.ndarray]:
        """Anomaly score and map of one photo: 8-bit gray, or the camera's 16-bit words for
        a graph that takes them (:attr:`takes_words`)."""
        from deepseek.manufacturing.stream import TILE_ABOVE

        if image.shape[0] * image.shape[1] > TILE_ABOVE:
            raise ManufacturingError(
                f"a {image.shape[1]} x {image.shape[0]} photo is over the "
                f"{TILE_ABOVE // 2**20} megapixels a {self.what}'s photo decision takes "
                "whole; score it in an install with PyTorch, which maps it in tiles")
        want = np.uint16 if self.takes_words else np.uint8
        if image.dtype != want:
            raise ManufacturingError(f"{self.path} takes {np.dtype(want)} pixels, given "
                                     f"{image.dtype}")
        score, amap = self.session.run(["score", "map"], {"image": image[None]})
        return float(score[0]), amap[0]


def load_memory(model: str | Path, backend: str = "auto") -> PatchMemory | MemoryGraph:
    """The good-parts memory at ``model`` to score with: on PyTorch (``torch``, and ``auto``
    where PyTorch is installed: the path its threshold was set on), else through its photo
    decision on onnxruntime (:class:`MemoryGraph`; ``onnxruntime``, and ``auto`` without
    PyTorch).

    Raises:
        ManufacturingError: an unknown backend, ``torch`` without PyTorch, or what
            :meth:`MemoryGraph.load` refuses."""
    return PatchMemory.load(model) if on_torch(backend, "scores a memory through its photo "
                                                        "decision") else MemoryGraph.load(model)


def on_torch(backend: str, doing: str) -> bool:
    """Whether a good-parts model is scored on PyTorch with ``backend`` (``torch``, and
    ``auto`` where PyTorch is installed), else through its photo decision.

    Raises:
        ManufacturingError: an unknown backend, or ``torch`` without PyTorch (``doing``:
            what the install without it does instead)."""
    from deepseek.manufacturing.runtime import have_torch, torch_missing
    from deepseek.manufacturing.stream import SCORE_BACKENDS

    if backend not in SCORE_BACKENDS:
        raise ManufacturingError(f"backend={backend!r}: use {', '.join(SCORE_BACKENDS)}")
    if backend == "torch" or (backend == "auto" and have_torch()):
        if not have_torch():
            raise torch_missing(doing)
        return True
    return False


#: bank patches compared at once with a photo's patches in the memory's photo decision
#: (its memory: the photo's patches times this, 1 GB for a 16-megapixel photo)
DECISION_BANK_CHUNK = 1024


def export_memory_onnx(memory: PatchMemory, threshold: float | None = None,
                       threshold_from: str = "stored by training", opset: int = 17) -> bytes:
    """The memory's decision on a gray photo as an ONNX graph (bytes), what ``deepseek
    manufacturing score --model memory.safetensors`` gives, for ``deepseek serve``: input
    ``image`` (uint8 ``B x H x W``, any size; a memory fitted with ``--bit-depth`` takes the
    camera's 16-bit words, :class:`~deepseek.manufacturing.model.CameraWords`), outputs
    ``score`` (the anomaly score: the mean of the top :attr:`PatchMemory.top_fraction` of
    the patch distances, plus the crack model's share), ``defect`` (score >= threshold),
    ``map`` (each 8 x 8 patch's distance to the nearest good patch) and ``threshold``; its
    settings in the metadata
    (:data:`deepseek.manufacturing.runtime.PHOTO_META_KEY`). ``threshold``: another
    threshold than the stored one (a calibration's, named by ``threshold_from``).

    Raises:
        ManufacturingError: no threshold given and none stored."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from deepseek.manufacturing.model import (
        export_decision,
        float32_threshold,
        pad_to_cell,
        photo_cell,
        photo_cost,
        photo_graph_logits,
    )
    from deepseek.manufacturing.runtime import FRAMES, STRIDE

    threshold = memory.threshold if threshold is None else float(threshold)
    if threshold is None or not threshold > 0:
        raise ManufacturingError("the good-parts memory stores no threshold: fit it with "
                                 "train --good-only, which sets one")
    crack = memory.crack
    fraction = memory.top_fraction

    class _MemoryDecision(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = memory.net
            bank = torch.from_numpy(memory.bank)
            self.register_buffer("bank", bank)
            self.register_buffer("bank_sq", (bank * bank).sum(1))
            self.register_buffer("threshold", float32_threshold(threshold))

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
            x = images.float()
            size = torch._shape_as_tensor(x)
            h, w = size[1], size[2]
            f = self._features(x, h, w)                                  # B, D, h8, w8
            b, d = f.shape[0], f.shape[1]
            q = f.permute(0, 2, 3, 1).reshape(b, -1, d)                  # B, P, D
            q_sq = (q * q).sum(-1, keepdim=True)
            best = None
            for start in range(0, self.bank.shape[0], DECISION_BANK_CHUNK):
                chunk = self.bank[start:start + DECISION_BANK_CHUNK]
                d2 = q_sq - 2.0 * torch.matmul(q, chunk.t()) + \
                    self.bank_sq[start:start + DECISION_BANK_CHUNK]
                near = d2.min(-1).values
                best = near if best is None else torch.minimum(best, near)
            dist = best.clamp(min=0).sqrt()                               # B, P
            amap = dist.reshape(b, f.shape[2], f.shape[3])
            score = self._top_mean(dist)
            if crack is not None:
                logit, _ = photo_graph_logits(self.net, x, int(crack.get("frames", FRAMES)),
                                              int(crack.get("views", CRACK_VIEWS)),
                                              float(crack.get("scale", CRACK_SCALE)))
                score = score + float(crack["gain"]) * (logit - float(crack["logit_mean"]))
            return score, score >= self.threshold, amap, self.threshold.expand_as(score)

        def _features(self, x: torch.Tensor, h: torch.Tensor, w: torch.Tensor
                      ) -> torch.Tensor:
            """:func:`patch_features` of photos ``x (B, H, W)``, channels first."""
            x = pad_to_cell(x, h, w)
            x = x / (x.mean(dim=(2, 3), keepdim=True) + 1.0) - 1.0
            enc = self.net.encoder
            f2 = enc[1](enc[0](x * 4.0))
            f3 = enc[2](f2)
            up = F.interpolate(f3, size=f2.shape[2:], mode="bilinear", align_corners=False)
            f = F.avg_pool2d(torch.cat([f2, up], 1), 3, stride=1, padding=1,
                             count_include_pad=False)
            return f[:, :, : (h + FEATURE_STRIDE - 1) // FEATURE_STRIDE,
                     : (w + FEATURE_STRIDE - 1) // FEATURE_STRIDE]

        @staticmethod
        def _top_mean(dist: torch.Tensor) -> torch.Tensor:
            """:func:`top_mean` of each row: the mean of its ``fraction`` highest values
            (at least one; the count in float64, rounded half to even as Python rounds)."""
            n = torch._shape_as_tensor(dist)[1:2].double()
            k = torch.minimum(n, torch.clamp(torch.round(
                n * torch.tensor([fraction], dtype=torch.float64)), min=1)).long()
            top = torch.sort(dist, dim=1, descending=True).values[:, : k[0]]
            return top.double().mean(1).float()

    settings = {"kind": KIND, "threshold": float(threshold),
                "threshold_from": threshold_from, "top_fraction": fraction,
                "bank": int(memory.bank.shape[0]), "map_stride": FEATURE_STRIDE,
                "crack": crack, "bit_depth": memory.meta.get("bit_depth")}
    # the patches at the photo's size and the crack share at its scale: the larger cell and
    # the larger cost (the two networks run one after the other)
    cell, cost = STRIDE, 1.0
    if crack is not None:
        scale = float(crack.get("scale", CRACK_SCALE))
        cell, cost = max(STRIDE, photo_cell(scale)), photo_cost(scale)
    return export_decision(_MemoryDecision(), settings, ("patches_y", "patches_x"), opset,
                           cell=cell, cost=cost, bit_depth=memory.meta.get("bit_depth"),
                           box=(FEATURE_STRIDE, float(np.float32(threshold))))


def write_memory_onnx(path: str | Path, out: str | Path | None = None, *,
                      threshold: float | None = None, threshold_from: str | None = None
                      ) -> Path:
    """Write the photo decision of the memory at ``path`` (:func:`export_memory_onnx`) to
    ``out`` (default: ``<stem>.photo.onnx`` beside it), stamped with the memory's sha256;
    returns where."""
    out = decision_path(path, out)  # a wrong name refused before the export
    graph = export_memory_onnx(PatchMemory.load(path), threshold,
                               threshold_from or "stored by training")
    return write_decision(graph, path, out)


def decision_path(path: str | Path, out: str | Path | None) -> Path:
    """Where the photo decision of the model file ``path`` goes: ``out``, named
    ``<name>.photo.onnx``, or by default ``<stem>.photo.onnx`` beside the model.

    Raises:
        ManufacturingError: ``out`` named otherwise."""
    from deepseek.manufacturing.runtime import PHOTO_SUFFIX, photo_beside

    out = Path(out) if out is not None else photo_beside(Path(path))
    if not out.name.endswith(PHOTO_SUFFIX):
        raise ManufacturingError(f"--out {out}: name the photo decision <name>{PHOTO_SUFFIX}")
    return out


def write_decision(graph: bytes, path: str | Path, out: Path) -> Path:
    """Write a good-parts model's photo decision ``graph`` to ``out``
    (:func:`decision_path`), stamped with the sha256 of the model file ``path``, whole or
    not at all; returns ``out``."""
    import onnx

    from deepseek.loader import SOURCE_META_KEY, file_sha256
    from deepseek.paths import written_whole

    model = onnx.load_from_string(graph)
    model.metadata_props.add(key=SOURCE_META_KEY, value=file_sha256(path))
    with written_whole(out) as tmp:
        tmp.write_bytes(model.SerializeToString())
    return out


def check_backbone(path: str | Path, meta: dict[str, Any]) -> None:
    """Refuse a memory whose backbone's weights are not those it was fitted with: its
    patches are that encoder's features, so another encoder's would be compared with them
    (other packaged weights under the same name after an upgrade, or a backbone file
    changed since). A memory written before the digest was recorded has nothing to be held
    to and loads as it did.

    Raises:
        ManufacturingError: naming the file, both digests and the fix.
    """
    from deepseek.manufacturing.stream import weights_sha256

    want = meta.get("backbone_sha256")
    if want is None:
        return
    backbone = str(meta.get("backbone", "defect-3dcnn-lstm"))
    have = weights_sha256(backbone)
    if want != have:
        raise ManufacturingError(
            f"{path}: fitted on {backbone} (sha256 {want[:12]}), whose weights are now "
            f"{'sha256 ' + have[:12] if have else 'missing'}: its patches are another "
            "encoder's features, so it cannot score; fit it again on the good images "
            "(deepseek manufacturing train --good-only DIR --out DIR)")


def read_kind(path: str | Path, kind: str, what: str, framework: str = "numpy"
              ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``deepseek`` JSON metadata and the tensors of a ``.safetensors`` good-parts file
    whose ``kind`` is ``kind`` (``what``: how errors name it).

    Raises:
        ManufacturingError: the file is unreadable or of another kind.
    """
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework=framework) as f:
            meta = json.loads((f.metadata() or {}).get("deepseek", "{}"))
            if not isinstance(meta, dict) or meta.get("kind") != kind:
                raise ManufacturingError(f"{path}: not a {what} (no '{kind}' metadata)")
            return meta, {k: f.get_tensor(k) for k in f.keys()}
    except ManufacturingError:
        raise
    except Exception as exc:
        raise ManufacturingError(f"{path}: cannot read a {what} ({exc})") from exc


def memory_meta(model: Any) -> dict[str, Any] | None:
    """The metadata of a saved :class:`PatchMemory` (threshold, what it expects there, how it
    was fitted) read from the file's header without loading the memory; None when ``model``
    is not one."""
    return stored_meta(model, KIND)


def stored_meta(model: Any, kind: str) -> dict[str, Any] | None:
    """The ``deepseek`` JSON metadata of a ``.safetensors`` file whose ``kind`` is ``kind`` (a
    good-parts model: this memory, or :mod:`deepseek.manufacturing.draem`'s), read from the
    header alone; None for anything else."""
    from deepseek.manufacturing.runtime import deepseek_meta

    meta = deepseek_meta(model)
    return meta if meta is not None and meta.get("kind") == kind else None


def is_memory_file(model: Any) -> bool:
    """Whether ``model`` names a saved :class:`PatchMemory`."""
    return memory_meta(model) is not None


def greedy_coreset(x: np.ndarray, n: int, rng: np.random.Generator, proj: int = 32
                   ) -> np.ndarray:
    """``n`` rows of ``x`` chosen by greedy k-centre selection (PatchCore's coreset): each next
    row is the one farthest from those already chosen, distances measured after a random
    projection to ``proj`` dimensions (Johnson-Lindenstrauss). Unlike a uniform sample it
    keeps rare patches (part edges, the image border) represented, so they are not scored as
    anomalies for want of a neighbour."""
    import torch

    if len(x) <= n:
        return x
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    p = torch.from_numpy(rng.standard_normal((x.shape[1], proj)).astype(np.float32))
    chosen = np.empty(n, np.int64)
    chosen[0] = int(rng.integers(len(x)))
    with torch.inference_mode():
        z = (xt @ (p / proj ** 0.5)).contiguous()
        sq = (z * z).sum(1)
        # squared distances as |z|^2 - 2 z.c + |c|^2: one matrix-vector product per pick
        dist = sq - 2 * torch.mv(z, z[chosen[0]]) + sq[chosen[0]]
        for t in range(1, n):
            i = int(torch.argmax(dist))
            chosen[t] = i
            torch.minimum(dist, sq - 2 * torch.mv(z, z[i]) + sq[i], out=dist)
    return x[np.sort(chosen)]


#: the coreset is chosen from a uniform sample of at most this many times ``max_bank`` patches
POOL_FACTOR = 10


#: how the memory's patches are chosen from the pool
SELECTIONS = ("coreset", "uniform")


def _bank(pool: np.ndarray, max_bank: int, rng: np.random.Generator, selection: str
          ) -> np.ndarray:
    if selection == "uniform":
        return pool if len(pool) <= max_bank else pool[rng.choice(len(pool), max_bank,
                                                                  replace=False)]
    if len(pool) > POOL_FACTOR * max_bank:
        pool = pool[rng.choice(len(pool), POOL_FACTOR * max_bank, replace=False)]
    return greedy_coreset(pool, max_bank, rng)


def fit_memory(folder: str | Path, *, backbone: Any = "defect-3dcnn-lstm",
               target_fpr: float = 0.003, folds: int = 5, max_bank: int = 10_000,
               seed: int = 0, progress: bool | None = None,
               group_pattern: str | None = None, selection: str = "uniform",
               top_fraction: float = TOP_FRACTION, crack_weight: float = CRACK_WEIGHT,
               bit_depth: int | None = None) -> PatchMemory:
    """Fit the memory on the good images of ``folder`` (recursive; masks and labels skipped)
    and set its threshold on out-of-fold scores.

    The images are grouped (:func:`good_folds`: the group rule, look-alike photos of one part
    joined) and dealt into ``folds`` folds; for each fold a memory of the other folds'
    patches scores the fold's images, so every good image gets a score from a memory that
    never saw it (nor its look-alikes). The threshold is the lowest whose false-alarm rate on
    those scores is at most ``target_fpr``
    (:func:`deepseek.manufacturing.metrics.lowest_threshold`, as for trained models and
    ``calibrate``): above every one of them when there are too few images to resolve that
    rate (the metadata says so). The memory written holds ``max_bank`` patches drawn from all
    the images, from a pool to which each image gives at most ``POOL_FACTOR * max_bank / images``
    (so memory stays bounded however many images there are): a uniform random sample
    (``selection="uniform"``, the default), or a greedy coreset (:func:`greedy_coreset`,
    ``"coreset"``) of at most ``POOL_FACTOR * max_bank`` of them. Each fold's memory is
    chosen the same way from its own images. The default is the benchmark's pick: on
    KolektorSDD the two are within run-to-run noise of each other, the uniform sample faster
    to fit. An image's score is the mean of its ``top_fraction`` highest patch distances
    (:data:`TOP_FRACTION`; 0 for the largest alone), the same for the threshold's out-of-fold
    scores and for scoring later (stored in the metadata). With ``crack_weight`` > 0
    (:data:`CRACK_WEIGHT`) the backbone's own crack logit (the photo at :data:`CRACK_SCALE`
    under :data:`CRACK_VIEWS` views) takes that share of the score: standardised on the good
    images' logits (the backbone is not fitted to them, so all of them serve) and added in
    units of the spread of the memory's out-of-fold good scores, before the threshold is
    set on the sums. ``bit_depth``: the bits a camera's 16-bit photos hold (``train
    --bit-depth``; None: the full 16 bits), stored so that ``score`` reads them the same way.
    """
    from tqdm.auto import tqdm

    from deepseek.manufacturing.images import check_bit_depth, image_paths
    from deepseek.manufacturing.labelled import good_folds, image_digests, set_aside_defects
    from deepseek.manufacturing.stream import weights_sha256

    if not 0.0 < target_fpr < 1.0:
        raise ManufacturingError(f"target_fpr={target_fpr}: give a rate between 0 and 1")
    if folds < 2:
        raise ManufacturingError(f"folds={folds}: give 2 or more")
    if not 0.0 <= top_fraction <= 1.0:
        raise ManufacturingError(f"top_fraction={top_fraction}: give a fraction of the "
                                 f"patches between 0 (the largest alone) and 1 "
                                 f"[{TOP_FRACTION}]")
    if selection not in SELECTIONS:
        raise ManufacturingError(f"selection={selection!r}: give one of "
                                 f"{', '.join(SELECTIONS)}")
    if not 0.0 <= crack_weight < 1.0:
        raise ManufacturingError(f"crack_weight={crack_weight}: give the crack model's share "
                                 f"of the score, from 0 (the memory alone) to below 1 "
                                 f"[{CRACK_WEIGHT}]")
    bit_depth = check_bit_depth(bit_depth)
    root = Path(folder)
    files, defects = set_aside_defects(root, image_paths([root]), bit_depth)
    if len(files) < 2:
        raise ManufacturingError(f"{folder}: {len(files)} good image(s); give at least 2 (one "
                                 "to remember, one to set the threshold on), better dozens")
    # the pixels decoded for the grouping are kept (up to the cache) for features and scores
    fold, grouping, items = good_folds(files, root, folds, seed, group_pattern,
                                       bit_depth=bit_depth)
    files = [it.path for it in items]  # copies of an image set aside
    k = int(fold.max()) + 1
    net = _backbone(backbone)
    rng = np.random.default_rng(seed)
    per_image = max(1, -(-POOL_FACTOR * max_bank // len(files)))
    pools, seen, logits = [], 0, []
    for item in tqdm(items, desc="good parts", disable=progress is False or len(files) < 20):
        f = patch_features(net, item.image).reshape(-1, 64)
        seen += len(f)
        pools.append(f if len(f) <= per_image else f[rng.choice(len(f), per_image,
                                                                replace=False)])
        if crack_weight > 0:
            logits.append(crack_logit(net, item.image))
    scores = np.zeros(len(files))
    probes = []  # the fold memories, kept for the spots of the images scored highest
    for j in tqdm(range(k), desc="out-of-fold scores", disable=progress is False):
        bank = _bank(np.concatenate([pools[i] for i in np.flatnonzero(fold != j)]), max_bank,
                     rng, selection)
        probes.append(PatchMemory(bank, {"top_fraction": top_fraction}, net))
        for i in np.flatnonzero(fold == j):
            scores[i] = probes[j].score(items[i].image)[0]
    crack = None
    if crack_weight > 0:
        crack = crack_share(np.asarray(logits), scores, crack_weight, str(backbone))
        scores = scores + crack["gain"] * (np.asarray(logits) - crack["logit_mean"])
    bank = _bank(np.concatenate(pools), max_bank, rng, selection)
    meta: dict[str, Any] = {
        "kind": KIND, "backbone": str(backbone), "backbone_sha256": weights_sha256(backbone),
        "feature_stride": FEATURE_STRIDE,
        "feature_dim": 64, "fit_images": len(files), "patches_seen": int(seen),
        "bank": int(len(bank)), "selection": selection, "top_fraction": top_fraction,
        "folds": k, "target_fpr": target_fpr, "crack": crack,
        **({"bit_depth": bit_depth} if bit_depth is not None else {}),
        "groups": int(grouping["groups_after"]), "image_digests": image_digests(items),
        **{key: grouping[key] for key in ("regrouped", "skipped", "copies") if key in grouping},
        **out_of_fold_threshold(scores, target_fpr, k)}
    mem = PatchMemory(bank, meta, net)
    add_defect_recall(meta["expected"], scores, score_defects(
        lambda image: mem.score(image)[0], defects, bit_depth), meta["threshold"])
    mem.out_of_fold = {str(item.path): float(v) for item, v in zip(items, scores)}
    mem.out_of_fold_spots = highest_spots(
        scores, items, lambda i: probes[fold[i]].anomaly_map(items[i].image),
        meta["threshold"], FEATURE_STRIDE)
    return mem


def score_defects(score: Any, paths: list[Path], bit_depth: int | None = None
                  ) -> list[float]:
    """``score(image)`` of each labelled defect image at ``paths`` (the ones
    :func:`~deepseek.manufacturing.labelled.set_aside_defects` left out), a copy of an image
    (equal pixels) counted once, as the good images are."""
    from deepseek.manufacturing.images import read_gray
    from deepseek.manufacturing.labelled import pixel_digest

    seen: set[str] = set()
    out = []
    for p in paths:
        image = read_gray(p, bit_depth=bit_depth)
        digest = pixel_digest(image)
        if digest not in seen:
            seen.add(digest)
            out.append(float(score(image)))
    return out


def add_defect_recall(expected: dict[str, Any], good_scores: Any, defect_scores: Any,
                      threshold: float) -> None:
    """Fill a good-parts model's ``expected`` (stored beside its threshold, printed by
    ``score``) with the recall at ``threshold`` on labelled defect images it never learnt
    from (``defect_scores``, under the model written), beside the false-alarm rate on the
    good images' out-of-fold ``good_scores``, each with its Wilson interval."""
    from deepseek.manufacturing.metrics import expected_rates

    d = np.asarray(defect_scores, np.float64)
    if not len(d):
        return
    g = np.asarray(good_scores, np.float64)
    rates = expected_rates(np.r_[g, d], np.r_[np.zeros(len(g), bool), np.ones(len(d), bool)],
                           threshold)
    expected.update({k: list(v) if isinstance(v, tuple) else v for k, v in rates.items()})
    expected["recall_from"] = ("labelled defect images of the folder, left out of training, "
                               "under the model written")


def highest_spots(scores: Any, items: list, map_of: Any, level: float,
                  stride: float) -> dict[str, list[int]]:
    """Where to look in the good images a threshold review lists (the
    :data:`~deepseek.manufacturing.metrics.REVIEW_IMAGES` scored highest out of fold, in its
    order), by path: the box (x0, y0, x1, y1, inclusive, in the image's own pixels) that
    ``score`` would draw on ``map_of(i)``, item ``i``'s anomaly map (one value per ``stride``
    pixels) under the fold model that held it out, its cells at or above ``level`` (the
    threshold) joined to the hottest, or the hottest alone when none reaches it."""
    from deepseek.manufacturing.metrics import REVIEW_IMAGES
    from deepseek.manufacturing.stream import box_from_map

    return {str(items[i].path): list(box_from_map(map_of(i), items[i].shape, level, stride))
            for i in np.argsort(-np.asarray(scores), kind="stable")[:REVIEW_IMAGES]}


def crack_logit(net: Any, image: np.ndarray, crack: dict[str, Any] | None = None) -> float:
    """``net``'s crack logit of one grayscale image, read as ``crack`` (a memory's
    :attr:`PatchMemory.crack`) says: its scale, views and frames, by default
    :data:`CRACK_SCALE`, :data:`CRACK_VIEWS` and :data:`deepseek.manufacturing.runtime.FRAMES`."""
    from deepseek.manufacturing.images import rescale
    from deepseek.manufacturing.runtime import FRAMES
    from deepseek.manufacturing.stream import photo_logits

    c = crack or {}
    return photo_logits(net, rescale(image, float(c.get("scale", CRACK_SCALE))),
                        int(c.get("frames", FRAMES)), int(c.get("views", CRACK_VIEWS)))[0]


def crack_share(logits: np.ndarray, memory_scores: np.ndarray, weight: float, model: str
                ) -> dict[str, Any]:
    """What a memory stores of the crack model's share of its score (:data:`CRACK_WEIGHT`):
    the good images' crack ``logits`` standardised (their mean and spread) and scaled to the
    spread of the memory's out-of-fold good ``memory_scores``, ``weight`` against ``1 -
    weight`` (``gain``: patch-distance units per unit of logit).

    Raises:
        ManufacturingError: the logits or the scores do not vary (nothing to scale by).
    """
    from deepseek.manufacturing.runtime import FRAMES

    logit_sd, memory_sd = float(np.std(logits)), float(np.std(memory_scores))
    if not (logit_sd > 0 and memory_sd > 0 and np.isfinite(logit_sd) and np.isfinite(memory_sd)):
        raise ManufacturingError(
            f"the good images' crack logits (spread {logit_sd:.3g}) or memory scores (spread "
            f"{memory_sd:.3g}) do not vary, so the crack model's share cannot be scaled: give "
            "more (and different) good images, or crack_weight 0 (--crack-weight 0) for the "
            "memory alone")
    return {"weight": weight, "model": model, "scale": CRACK_SCALE, "views": CRACK_VIEWS,
            "frames": FRAMES, "logit_mean": float(np.mean(logits)), "logit_sd": logit_sd,
            "memory_sd": memory_sd, "gain": weight / (1.0 - weight) * memory_sd / logit_sd}


def out_of_fold_threshold(scores: np.ndarray, target_fpr: float, folds: int, how: str = ""
                          ) -> dict[str, Any]:
    """What a good-parts model (this memory, or :mod:`deepseek.manufacturing.draem`'s) stores
    of its threshold, set on the out-of-fold ``scores`` of its good images: the threshold
    (:func:`deepseek.manufacturing.metrics.lowest_threshold`), its rule (``how``: how the
    folds scored, after "``folds`` folds by group"), the false-alarm rate there with its
    interval (recall unknown: good images only; printed by ``score``) and the scores'
    median and maximum."""
    from deepseek.manufacturing.metrics import expected_rates, lowest_threshold, too_few_good

    threshold = lowest_threshold(scores, target_fpr)
    rule = (f"lowest score with a false-alarm rate <= {target_fpr:g} on the out-of-fold "
            f"scores of {len(scores)} good images ({folds} folds by group{how})")
    few = too_few_good(len(scores), target_fpr)
    return {"threshold": threshold, "threshold_rule": rule + (f"; {few}" if few else ""),
            "expected": {name: list(v) if isinstance(v, tuple) else v for name, v in
                         expected_rates(scores, np.zeros(len(scores), bool),
                                        threshold).items()},
            "out_of_fold_scores": {"median": float(np.median(scores)),
                                   "max": float(scores.max())}}
