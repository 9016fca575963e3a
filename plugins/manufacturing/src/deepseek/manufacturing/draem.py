"""Good parts only, reconstructed: a DRAEM-style anomaly model learnt from good images alone
(``train --good-only DIR --method draem``), no pretrained weights.

Two networks, trained together from scratch on crops of the good images, half of them with a
synthetic defect pasted in (:func:`deepseek.manufacturing.pasted.paste_defect`, with its mask;
cracks by default, :data:`KINDS`):

* the **reconstructive** network, an encoder-decoder without skip connections (so it cannot
  copy its input through), learns to give back the good crop from the damaged one (loss: mean
  squared error plus one minus SSIM over 7x7 windows);
* the **discriminative** network, a U-Net, sees the crop and its reconstruction side by side
  and marks where they differ because of a defect (focal loss against the pasted mask).

On a new image the reconstruction keeps the surface and loses what the networks never saw on
good parts; the discriminative map is the anomaly map and its largest value the image's score
(in 0..1). Everything runs at :data:`SCALE` of the image's size, the discriminative map at half
of that: one value per :data:`MAP_STRIDE` pixels of the image.

The threshold is set as for the memory: the good images are grouped (look-alike photos of one
part joined) and dealt into folds; one model per fold trains on the other folds and scores its
own fold's images, so every good image has a score from a model that never saw it. The file
written keeps the fold models and scores an image by the mean of their maps; on good images an
average of maps varies less than one model's map, so its false-alarm rate at the threshold is
expected at or under the stored out-of-fold one (the stored figure is one model's).

Sized for a CPU: 16 channels at the first level, 128-pixel crops, :data:`STEPS` steps of
:data:`BATCH` crops per fold model. On KolektorSDD it ranks the val parts close to the patch
memory and below it (``benchmarks/defect_real.py --rows draem``; the figures are in the
manufacturing documentation), so the memory stays the default.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.manufacturing.anomaly import MemoryGraph
from deepseek.manufacturing.errors import ManufacturingError

log = logging.getLogger(__name__)

KIND = "draem"
#: images are read at this fraction of their size (area-averaged)
SCALE = 0.5
#: pixels of the image per value of the anomaly map
MAP_STRIDE = 4
CHANNELS = 16
CROP = 128
BATCH = 8
STEPS = 1000
LR = 1e-3
FOLDS = 3
#: the share of training crops with a defect pasted in (the rest teach "nothing to mark")
PASTE_SHARE = 0.5
#: what is pasted by default: cracks only. Development runs on KolektorSDD (one model trained
#: on the train split's 278 good images, scored on the val split): cracks alone gave val
#: AUROC 0.894 after 1,000 steps; cracks, foreign-texture blobs and stains (DRAEM's kind of
#: anomaly) 0.844 after 1,500. As for ``--method pasted``, blob-shaped positives on a
#: textured surface teach the networks to mark the surface.
KINDS = ("crack",)
_MULTIPLE = 16  # the networks' total downsampling at the read scale


def _nets() -> Any:
    """The network classes (built on first use, so importing this module needs no PyTorch)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def block(i: int, o: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o),
                             nn.ReLU(inplace=True),
                             nn.Conv2d(o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o),
                             nn.ReLU(inplace=True))

    def stem(i: int, o: int) -> nn.Sequential:  # 4x4 stride 2: every pixel seen, half size
        return nn.Sequential(nn.Conv2d(i, o, 4, 2, 1, bias=False), nn.BatchNorm2d(o),
                             nn.ReLU(inplace=True))

    def up(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)

    class Reconstructive(nn.Module):
        """Encoder-decoder, no skips: (B, 1, H, W) -> (B, 1, H, W)."""

        def __init__(self, c: int) -> None:
            super().__init__()
            self.stem = stem(1, c)
            self.down = nn.ModuleList([block(c, c), block(c, 2 * c), block(2 * c, 4 * c),
                                       block(4 * c, 4 * c)])
            self.up = nn.ModuleList([block(4 * c, 4 * c), block(4 * c, 2 * c), block(2 * c, c)])
            self.out = nn.ConvTranspose2d(c, 1, 4, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stem(x)
            for i, b in enumerate(self.down):
                x = b(x if i == 0 else F.max_pool2d(x, 2))
            for b in self.up:
                x = b(up(x))
            return self.out(x)

    class Discriminative(nn.Module):
        """U-Net over (image, reconstruction): (B, 2, H, W) -> logits (B, 1, H/2, W/2)."""

        def __init__(self, c: int) -> None:
            super().__init__()
            self.stem = stem(2, c)
            self.e1, self.e2 = block(c, c), block(c, 2 * c)
            self.e3, self.e4 = block(2 * c, 4 * c), block(4 * c, 4 * c)
            self.d3, self.d2, self.d1 = block(8 * c, 2 * c), block(4 * c, c), block(2 * c, c)
            self.out = nn.Conv2d(c, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = self.e1(self.stem(x))
            b = self.e2(F.max_pool2d(a, 2))
            c = self.e3(F.max_pool2d(b, 2))
            d = self.e4(F.max_pool2d(c, 2))
            c = self.d3(torch.cat([up(d), c], 1))
            b = self.d2(torch.cat([up(c), b], 1))
            return self.out(self.d1(torch.cat([up(b), a], 1)))

    class DraemNet(nn.Module):
        """Both networks: normalised image -> (reconstruction, defect logits)."""

        def __init__(self, channels: int = CHANNELS) -> None:
            super().__init__()
            self.channels = int(channels)
            self.reconstructive = Reconstructive(self.channels)
            self.discriminative = Discriminative(self.channels)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            rec = self.reconstructive(x)
            return rec, self.discriminative(torch.cat([x, rec], 1))

    return DraemNet


def build_net(channels: int = CHANNELS) -> Any:
    """A new (untrained) pair of networks."""
    return _nets()(channels)


def normalise(x: Any, ref: Any = None) -> Any:
    """Light normalisation, as the crack network's: each image divided by its own mean (or by
    ``ref``'s: the clean target of a damaged crop is scaled like the crop), less one."""
    ref = x if ref is None else ref
    return x / (ref.mean(dim=(2, 3), keepdim=True) + 1.0) - 1.0


def ssim(a: Any, b: Any, window: int = 7, span: float = 2.0) -> Any:
    """Mean structural similarity of two (B, 1, H, W) tensors over ``window`` x ``window``
    uniform windows (scikit-image's default window; a box filter is a cheap backward pass,
    a Gaussian one doubled the training step on a CPU); ``span``: the values' dynamic range,
    about 2 after :func:`normalise`."""
    import torch.nn.functional as F

    def local_mean(t: Any) -> Any:
        return F.avg_pool2d(t, window, 1, window // 2, count_include_pad=False)

    ma, mb = local_mean(a), local_mean(b)
    va = local_mean(a * a) - ma ** 2
    vb = local_mean(b * b) - mb ** 2
    cov = local_mean(a * b) - ma * mb
    c1, c2 = (0.01 * span) ** 2, (0.03 * span) ** 2
    return ((2 * ma * mb + c1) * (2 * cov + c2)
            / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))).mean()


def focal_loss(logits: Any, target: Any, gamma: float = 2.0) -> Any:
    """Mean binary focal loss (the well-classified pixels, most of a crop, weigh little)."""
    import torch
    import torch.nn.functional as F

    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    return ((1 - pt) ** gamma * ce).mean()


def scaled(image: np.ndarray, scale: float = SCALE) -> np.ndarray:
    """The grayscale image at ``scale`` of its size, rounded up (area-averaged, uint8): at
    half size a map of one value per two pixels of it covers the whole image."""
    import cv2

    if scale == 1.0:
        return image
    h, w = image.shape
    size = (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def net_map(nets: list[Any], image: np.ndarray, scale: float = SCALE) -> np.ndarray:
    """The mean of ``nets``' defect probability maps of one grayscale image (uint8), one value
    per ``2 / scale`` pixels (the image is edge-padded to the networks' multiple)."""
    import cv2
    import torch

    small = scaled(image, scale)
    h, w = small.shape
    ph, pw = -h % _MULTIPLE, -w % _MULTIPLE
    padded = cv2.copyMakeBorder(small, 0, ph, 0, pw, cv2.BORDER_REPLICATE) if ph or pw \
        else small
    x = normalise(torch.from_numpy(np.ascontiguousarray(padded)).float()[None, None])
    total = None
    with torch.inference_mode():
        for net in nets:
            p = torch.sigmoid(net(x)[1])[0, 0]
            total = p if total is None else total + p
    assert total is not None
    return (total / len(nets))[: -(-h // 2), : -(-w // 2)].numpy().astype(np.float32)


class DraemModel:
    """The fold models, their threshold and what they were fitted on."""

    def __init__(self, nets: list[Any], meta: dict[str, Any]) -> None:
        if not nets:
            raise ManufacturingError("a DRAEM model needs at least one network")
        self.nets = [n.eval() for n in nets]
        self.meta = meta
        self.stride = int(meta.get("map_stride", MAP_STRIDE))
        #: after :func:`fit_draem`: each good image's out-of-fold score by path (the scores
        #: the threshold was set on; not saved)
        self.out_of_fold: dict[str, float] = {}
        #: after :func:`fit_draem`: for the good images scored highest out of fold, the box
        #: around each one's most anomalous spot under the fold model that held it out, as
        #: ``score`` boxes a defect, in its own pixels (not saved; see
        #: :func:`~deepseek.manufacturing.anomaly.highest_spots`)
        self.out_of_fold_spots: dict[str, list[int]] = {}

    @property
    def threshold(self) -> float | None:
        """The stored threshold on the score (a probability), or None."""
        t = self.meta.get("threshold")
        return None if t is None else float(t)

    def anomaly_map(self, image: np.ndarray) -> np.ndarray:
        """Defect probability per :attr:`stride` pixels, averaged over the fold models."""
        return net_map(self.nets, image, float(self.meta.get("scale", SCALE)))

    def score(self, image: np.ndarray) -> tuple[float, np.ndarray]:
        """The image's score (its map's largest value) and its map."""
        m = self.anomaly_map(image)
        return float(m.max()), m

    def save(self, path: str | Path) -> Path:
        """One ``.safetensors`` file: every fold model's weights and the JSON metadata."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"fold{k}.{name}": t.detach().contiguous()
                   for k, net in enumerate(self.nets) for name, t in net.state_dict().items()}
        meta = {**self.meta, "kind": KIND, "fold_models": len(self.nets)}
        from deepseek.paths import written_whole

        with written_whole(path) as tmp:  # a service loading it never sees half of it
            save_file(tensors, str(tmp), metadata={"deepseek": json.dumps(meta)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> DraemModel:
        """Read a model written by :meth:`save`.

        Raises:
            ManufacturingError: the file is unreadable or not a DRAEM model.
        """
        from deepseek.manufacturing.anomaly import read_kind

        meta, tensors = read_kind(path, KIND, "DRAEM model", framework="pt")
        try:
            nets = []
            for k in range(int(meta["fold_models"])):
                net = build_net(int(meta.get("channels", CHANNELS)))
                prefix = f"fold{k}."
                net.load_state_dict({n[len(prefix):]: t for n, t in tensors.items()
                                     if n.startswith(prefix)})
                nets.append(net)
        except Exception as exc:
            raise ManufacturingError(f"{path}: cannot read a DRAEM model ({exc})") from exc
        return cls(nets, meta)


def export_draem_onnx(model: DraemModel, threshold: float | None = None,
                      threshold_from: str = "stored by training", opset: int = 17) -> bytes:
    """The DRAEM model's decision on a gray photo as an ONNX graph (bytes), what ``deepseek
    manufacturing score --model draem.safetensors`` gives, for ``deepseek serve`` and an
    install without PyTorch: input ``image`` (uint8 ``B x H x W``, any size; a model fitted
    with ``--bit-depth`` takes the camera's 16-bit words), outputs ``score`` (the largest
    value of the map), ``defect`` (score >= threshold), ``map`` (the fold models' mean
    defect probability, one value per :attr:`DraemModel.stride` pixels), ``threshold`` and
    the box around a flagged photo's defect. The photo is read at its scale by area means
    to the same rounded-up size as :func:`scaled` reads it with OpenCV's ``INTER_AREA``,
    rounded to gray levels as OpenCV rounds them. ``threshold``: another than the stored one
    (a calibration's, named by ``threshold_from``).

    Raises:
        ManufacturingError: no threshold given and none stored."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from deepseek.manufacturing.model import (
        _resize_axis,
        export_decision,
        float32_threshold,
        photo_cell,
        photo_cost,
    )

    threshold = model.threshold if threshold is None else float(threshold)
    if threshold is None or not 0 < threshold < 1:
        raise ManufacturingError("the DRAEM model stores no threshold: fit it with train "
                                 "--good-only --method draem, which sets one")
    scale = float(model.meta.get("scale", SCALE))

    class _DraemDecision(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.ModuleList(model.nets)  # what the exporter keeps in eval mode
            self.register_buffer("threshold", float32_threshold(threshold))

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
            x = images.float()
            if scale != 1:  # as scaled(): area means to the rounded-up size, gray levels
                small = _resize_axis(_resize_axis(x, 1, scale, ceil=True), 2, scale,
                                     ceil=True)
                # OpenCV rounds half up where the size divides by the new one on both sides
                # (its whole-factor path: sums of pixels), else half to even
                n_in, n_out = torch._shape_as_tensor(x), torch._shape_as_tensor(small)
                whole = ((n_in[1] % n_out[1]) == 0) & ((n_in[2] % n_out[2]) == 0)
                x = torch.where(whole, torch.floor(small + 0.5), torch.round(small)
                                ).clamp(0, 255)
            size = torch._shape_as_tensor(x)
            h, w = size[1], size[2]
            x = F.pad(x[:, None], [0, (_MULTIPLE - w % _MULTIPLE) % _MULTIPLE, 0,
                                   (_MULTIPLE - h % _MULTIPLE) % _MULTIPLE], mode="replicate")
            x = normalise(x)
            total = None
            for net in self.net:
                p = torch.sigmoid(net(x)[1])
                total = p if total is None else total + p
            assert total is not None
            amap = (total / len(self.net))[:, 0, : (h + 1) // 2, : (w + 1) // 2]
            score = amap.amax(dim=(1, 2))
            return score, score >= self.threshold, amap, self.threshold.expand_as(score)

    settings = {"kind": KIND, "threshold": float(threshold), "threshold_from": threshold_from,
                "scale": scale, "map_stride": model.stride, "fold_models": len(model.nets),
                "bit_depth": model.meta.get("bit_depth")}
    cell = photo_cell(scale) * _MULTIPLE // 16  # the read photo padded to the networks'
    return export_decision(_DraemDecision().eval(), settings, ("map_y", "map_x"), opset,
                           cell=cell, cost=photo_cost(scale),
                           bit_depth=model.meta.get("bit_depth"),
                           box=(model.stride, float(np.float32(threshold))))


def write_draem_onnx(path: str | Path, out: str | Path | None = None, *,
                     threshold: float | None = None, threshold_from: str | None = None
                     ) -> Path:
    """Write the photo decision of the DRAEM model at ``path`` (:func:`export_draem_onnx`)
    to ``out`` (default: ``<stem>.photo.onnx`` beside it), stamped with the model file's
    sha256; returns where."""
    from deepseek.manufacturing.anomaly import decision_path, write_decision

    out = decision_path(path, out)  # a wrong name refused before the export
    graph = export_draem_onnx(DraemModel.load(path), threshold,
                              threshold_from or "stored by training")
    return write_decision(graph, path, out)


def load_draem(model: str | Path, backend: str = "auto") -> Any:
    """The DRAEM model at ``model`` to score with: on PyTorch (``torch``, and ``auto`` where
    PyTorch is installed: the path its threshold was set on), else through its photo
    decision on onnxruntime (:class:`DraemGraph`).

    Raises:
        ManufacturingError: an unknown backend, ``torch`` without PyTorch, or what
            :meth:`~deepseek.manufacturing.anomaly.MemoryGraph.load` refuses."""
    from deepseek.manufacturing.anomaly import on_torch

    return DraemModel.load(model) if on_torch(backend, "scores a DRAEM model") else \
        DraemGraph.load(model)


def draem_meta(model: Any) -> dict[str, Any] | None:
    """The metadata of a saved :class:`DraemModel` (threshold, what it expects there), read
    from the file's header; None when ``model`` is not one."""
    from deepseek.manufacturing.anomaly import stored_meta

    return stored_meta(model, KIND)


def is_draem_file(model: Any) -> bool:
    """Whether ``model`` names a saved :class:`DraemModel`."""
    return draem_meta(model) is not None


class _Crops:
    """Training batches: random crops of the (scaled) good images, flipped at random, half
    with a defect pasted in; (damaged, clean, mask) as float tensors."""

    def __init__(self, images: list[np.ndarray], crop: int, kinds: tuple[str, ...],
                 rng: np.random.Generator) -> None:
        self.images, self.crop, self.kinds, self.rng = images, crop, kinds, rng

    def batch(self, n: int) -> tuple[Any, Any, Any]:
        import torch

        from deepseek.manufacturing.pasted import paste_defect

        rng, c = self.rng, self.crop
        damaged, clean, masks = [], [], []
        for _ in range(n):
            img = self.images[int(rng.integers(len(self.images)))]
            y = int(rng.integers(0, img.shape[0] - c + 1))
            x = int(rng.integers(0, img.shape[1] - c + 1))
            part = img[y:y + c, x:x + c]
            if rng.random() < 0.5:
                part = part[:, ::-1]
            if rng.random() < 0.5:
                part = part[::-1]
            part = np.ascontiguousarray(part)
            bad, mask = part, np.zeros_like(part)
            if rng.random() < PASTE_SHARE:
                try:
                    bad, mask = paste_defect(part, rng, kinds=self.kinds)
                except ManufacturingError:  # a crop too dark or flat to show one: kept good
                    pass
            damaged.append(bad)
            clean.append(part)
            masks.append(mask)

        def stack(arrays: list[np.ndarray]) -> Any:
            return torch.from_numpy(np.stack(arrays)).float()[:, None]

        return stack(damaged), stack(clean), stack(masks)


def train_net(images: list[np.ndarray], *, steps: int = STEPS, batch: int = BATCH,
              crop: int = CROP, lr: float = LR, channels: int = CHANNELS,
              kinds: tuple[str, ...] | None = None, seed: int = 0,
              desc: str = "draem", progress: bool | None = None) -> Any:
    """One pair of networks trained on ``images`` (grayscale uint8, already at the read
    scale): Adam, one-cycle learning rate, ``steps`` steps of ``batch`` crops."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    crops = _Crops(images, crop, tuple(kinds or KINDS), np.random.default_rng(seed))
    last = torch.channels_last  # the faster layout for these convolutions on a CPU
    net = build_net(channels).to(memory_format=last).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    for _ in tqdm(range(steps), desc=desc, disable=progress is False, leave=False):
        damaged, clean, mask = crops.batch(batch)
        x = normalise(damaged).contiguous(memory_format=last)
        rec, logits = net(x)
        target = normalise(clean, damaged)
        loss = (F.mse_loss(rec, target) + (1 - ssim(rec, target))
                + focal_loss(logits, F.max_pool2d(mask, 2)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.to(memory_format=torch.contiguous_format).eval()  # as a loaded one


def fit_draem(folder: str | Path, *, target_fpr: float = 0.003, folds: int = FOLDS,
              steps: int = STEPS, batch: int = BATCH, crop: int = CROP, lr: float = LR,
              channels: int = CHANNELS, seed: int = 0, kinds: tuple[str, ...] | None = None,
              group_pattern: str | None = None, progress: bool | None = None,
              bit_depth: int | None = None) -> DraemModel:
    """Train the fold models on the good images of ``folder`` (recursive; masks and labels
    skipped) and set the threshold on their out-of-fold scores (see the module docstring).
    ``kinds``: the pasted defects, of :data:`deepseek.manufacturing.pasted.KINDS` (cracks
    only by default, :data:`KINDS`). ``bit_depth``: the bits of 16-bit photos, stored (as
    :func:`~deepseek.manufacturing.anomaly.fit_memory`)."""
    from deepseek.manufacturing.anomaly import (
        add_defect_recall,
        highest_spots,
        out_of_fold_threshold,
        score_defects,
    )
    from deepseek.manufacturing.images import check_bit_depth, image_paths
    from deepseek.manufacturing.labelled import good_folds, image_digests, set_aside_defects
    from deepseek.manufacturing.pasted import KINDS as KNOWN

    if not 0.0 < target_fpr < 1.0:
        raise ManufacturingError(f"target_fpr={target_fpr}: give a rate between 0 and 1")
    if folds < 2:
        raise ManufacturingError(f"folds={folds}: give 2 or more")
    if steps < 1 or batch < 1 or channels < 1:
        raise ManufacturingError(f"steps={steps}, batch={batch}, channels={channels}: give 1 "
                                 "or more of each")
    if crop < _MULTIPLE or crop % _MULTIPLE:
        raise ManufacturingError(f"crop {crop}: give a multiple of {_MULTIPLE}")
    bit_depth = check_bit_depth(bit_depth)
    kinds = tuple(kinds or KINDS)
    unknown = [k for k in kinds if k not in KNOWN]
    if unknown:
        raise ManufacturingError(f"kinds {kinds}: choose from {', '.join(KNOWN)}")
    root = Path(folder)
    files, defects = set_aside_defects(root, image_paths([root]), bit_depth)
    if len(files) < 2:
        raise ManufacturingError(f"{folder}: {len(files)} good image(s); give at least 2 (one "
                                 "to learn from, one to set the threshold on), better dozens")
    t0 = time.perf_counter()
    fold, grouping, items = good_folds(files, root, folds, seed, group_pattern,
                                       bit_depth=bit_depth)
    files = [it.path for it in items]  # copies of an image set aside
    small = [scaled(it.image) for it in items]
    tiny = [str(it.path) for it, s in zip(items, small) if min(s.shape) < crop]
    if tiny:
        raise ManufacturingError(
            f"{tiny[0]}: smaller than {crop} px at {SCALE:g} of its size ({len(tiny)} such "
            f"image(s)); give larger images or a smaller --crop (a multiple of {_MULTIPLE})")
    k = int(fold.max()) + 1
    scores = np.zeros(len(files))
    nets = []
    for j in range(k):
        train = [small[i] for i in np.flatnonzero(fold != j)]
        log.info("fold %d of %d: %d good images to learn from, %d held out", j + 1, k,
                 len(train), int((fold == j).sum()))
        net = train_net(train, steps=steps, batch=batch, crop=crop, lr=lr, kinds=kinds,
                        channels=channels,
                        seed=seed * 1000 + j, desc=f"fold {j + 1}/{k}", progress=progress)
        for i in np.flatnonzero(fold == j):
            scores[i] = float(net_map([net], items[i].image).max())
        nets.append(net)
    meta: dict[str, Any] = {
        "kind": KIND, "scale": SCALE, "map_stride": MAP_STRIDE, "channels": channels,
        "crop": crop, "steps": steps, "batch": batch, "lr": lr, "seed": seed,
        "kinds": list(kinds), "fit_images": len(files), "folds": k, "target_fpr": target_fpr,
        **({"bit_depth": bit_depth} if bit_depth is not None else {}),
        "groups": int(grouping["groups_after"]), "image_digests": image_digests(items),
        **{key: grouping[key] for key in ("regrouped", "skipped", "copies") if key in grouping},
        **out_of_fold_threshold(scores, target_fpr, k, f", one model each; the model "
                                f"written averages the {k} models' maps"),
        "seconds": round(time.perf_counter() - t0, 1)}
    model = DraemModel(nets, meta)
    add_defect_recall(meta["expected"], scores, score_defects(
        lambda image: model.score(image)[0], defects, bit_depth), meta["threshold"])
    model.out_of_fold = {str(it.path): float(v) for it, v in zip(items, scores)}
    model.out_of_fold_spots = highest_spots(
        scores, items, lambda i: net_map([nets[fold[i]]], items[i].image), meta["threshold"],
        MAP_STRIDE)
    return model



class DraemGraph(MemoryGraph):
    """A DRAEM model scored through its photo decision (``<stem>.photo.onnx`` beside it:
    ``train --good-only --method draem`` and ``deepseek manufacturing export`` write it) on
    onnxruntime, as an install without PyTorch scores it: the same score and map as
    :class:`DraemModel` within what the resize's gray level moves."""

    what = "DRAEM model"
    stride = MAP_STRIDE

    @staticmethod
    def read_meta(weights: Any) -> dict[str, Any] | None:
        """The DRAEM model file's metadata (:func:`draem_meta`)."""
        return draem_meta(weights)
