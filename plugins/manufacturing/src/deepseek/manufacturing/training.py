"""Training of ``defect-3dcnn-lstm`` through the core Trainer.

Data:

- *synthetic* (default): short clips (``frames`` x ``height`` x ``width``) cut from the
  synthetic line, each with its own seed, surface, speed, light and distractors; about 60% of
  them show a crack. Targets per frame: defect flag (frames that show only a sliver of a crack
  are left out of the loss) and the crack map at the model's 16-pixel cells.
- *labelled part images* (``folder``): masks, YOLO polygon/box labels or good/defect folders
  (rules in :mod:`deepseek.manufacturing.labelled`); balanced crops, positives placed on the
  labelled defect, augmented for the domain, each held still for a few frames as image scoring
  does (:class:`CropDataset`). Targets: the defect flag and the mask at 16-pixel cells.

Validation after every epoch. Synthetic: full-size synthetic videos from seeds that no
training clip uses (``VAL_SEED0``), scored by frame log-loss (which picks the best epoch: it
keeps improving after average precision saturates), average precision, recall and
false-detection rate at 0.5. Labelled images: the user's held-out images (``val_folder``, or a
split that keeps groups of photos together), each scored alone at full size; the best epoch by
image AUROC.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from deepseek.manufacturing.errors import ManufacturingError
from deepseek.manufacturing.metrics import average_precision, threshold_review
from deepseek.manufacturing.model import STRIDE, DefectNet

log = logging.getLogger(__name__)

VAL_SEED0 = 800_000     # validation videos
BENCH_SEED0 = 700_000   # benchmark / pipeline videos: never used for training or validation


#: how much a synthetic training crack darkens the surface (fraction, drawn uniformly per
#: crack): from the faint 10 % the line must still catch to the generator's deepest 70 %
TRAIN_CRACK_DEPTH = (0.10, 0.70)


def synthetic_clip(seed: int, frames: int = 16, height: int = 128, width: int = 160,
                   crack_depth: tuple[float, float] = TRAIN_CRACK_DEPTH
                   ) -> dict[str, np.ndarray]:
    """One training clip: ``x`` uint8 (T, H, W), ``y`` (T,), ``w`` (T,) loss weights and
    ``map`` (T, H/16, W/16) crack cells; its cracks darken the surface by a fraction drawn
    from ``crack_depth``."""
    from deepseek.manufacturing.synthetic import SyntheticLine

    rng = np.random.default_rng([seed, 7])
    has_crack = rng.random() < 0.6
    extent_mm = (height + 8 * frames) * 0.1
    line = SyntheticLine(
        seed=seed, frames=frames, height=height, width=width,
        crack_spacing_mm=30.0 if has_crack else math.inf,
        first_crack_mm=float(rng.uniform(0, extent_mm)),
        scratches_per_m=float(rng.uniform(20, 120)), stains_per_m=float(rng.uniform(5, 60)),
        dust_per_cm2=float(rng.uniform(0.2, 2.0)), light_drift=float(rng.uniform(0.02, 0.3)),
        crack_depth=crack_depth)
    x = np.stack([line.frame(i) for i in range(frames)])
    truth = [line.truth(i) for i in range(frames)]
    y = np.array([t["defect"] for t in truth], np.float32)
    w = np.array([0.0 if t["partial"] else 1.0 for t in truth], np.float32)
    m = np.stack([line.crack_mask(i, STRIDE) for i in range(frames)]).astype(np.float32)
    return {"x": x, "y": y, "w": w, "map": m, "mw": np.ones(1, np.float32)}


def _clips_part(args: tuple[list[int], int, int, int, tuple[float, float]]
                ) -> dict[str, np.ndarray]:
    seeds, frames, height, width, depth = args
    clips = [synthetic_clip(s, frames, height, width, depth) for s in seeds]
    return {k: np.stack([c[k] for c in clips]) for k in clips[0]}


def make_clips(n: int, seed: int, frames: int = 16, height: int = 128, width: int = 160,
               workers: int = 2, crack_depth: tuple[float, float] = TRAIN_CRACK_DEPTH
               ) -> dict[str, np.ndarray]:
    """``n`` synthetic training clips (seeded) with frame labels and masks, made on ``workers``
    processes.
    """
    seeds = [seed * 1_000_000 + i for i in range(n)]
    parts = [(seeds[i::workers], frames, height, width, tuple(crack_depth))
             for i in range(workers)]
    if workers <= 1:
        chunks = [_clips_part(parts[0])]
    else:
        from deepseek.service import die_with_parent  # (not left rendering alone)

        with concurrent.futures.ProcessPoolExecutor(
                workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
            chunks = list(pool.map(_clips_part, parts))
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


#: the share of the negative crops that ``train --folder`` places on hard spots of good
#: images (:func:`hard_spots`) instead of at random
HARD_NEGATIVES = 0.5
#: how many of each good image's hottest map cells are hard spots
HARD_SPOTS_PER_IMAGE = 8
#: how ``train --folder`` turns its crops (a name in
#: :data:`deepseek.manufacturing.labelled.ROTATIONS`): up to 10 degrees, the cracks keep the
#: training images' directions ("any" caught fewer CrackForest cracks at its threshold)
ROTATE = "small"


class HardSpot(NamedTuple):
    """A place on a good image where a model sees a crack: the item, the pixel at the centre
    of the map cell, and the cell's crack probability (the weight it is drawn with)."""

    item: Any
    y: int
    x: int
    weight: float


def hard_spots(net: torch.nn.Module, items: list, per_image: int = HARD_SPOTS_PER_IMAGE,
               progress: bool | None = None) -> list[HardSpot]:
    """Hard negatives: each good image of ``items`` scored alone at full size by ``net`` (as
    ``score`` does, on its runtime: :func:`scoring_graph`), and its ``per_image`` hottest map
    cells kept with their probabilities. What a model calls a crack on a good part (a
    speck, a scratch-like edge, a fibre) is what training should show it more often than a
    random crop would."""
    from tqdm.auto import tqdm

    from deepseek.manufacturing.score import FRAMES, score_image

    was_training = net.training
    net.eval()
    scorer = scoring_graph(net, FRAMES)
    spots: list[HardSpot] = []
    good = [it for it in items if not it.defect]
    for it in tqdm(good, desc="hard negatives", disable=progress is False or len(good) < 20):
        pmap = score_image(scorer, it.image, FRAMES)[1]
        top = np.argsort(pmap, axis=None)[::-1][:per_image]
        for r, c in zip(*np.unravel_index(top, pmap.shape)):
            spots.append(HardSpot(it, int(r) * STRIDE + STRIDE // 2,
                                  int(c) * STRIDE + STRIDE // 2, float(pmap[r, c]) + 1e-6))
    net.train(was_training)
    return spots


class CropDataset(Dataset):
    """Labelled part images as training clips, drawn afresh at every call: even indices are
    positive crops placed on a labelled defect (:func:`deepseek.manufacturing.labelled.
    sample_crop`), odd ones negative crops (from good images, and a quarter from the
    defect-free area of masked defect images), so every epoch is balanced 1:1 whatever the
    class counts. Each crop is augmented and shown as a part held still for ``frames`` frames
    (how :mod:`deepseek.manufacturing.score` scores an image); the map target is the mask at
    the model's 16-pixel cells (none for a defect image without a location). With ``pasted``
    (a darkening range) the items are good images only and the positive crops are good crops
    with a crack pasted in (:mod:`deepseek.manufacturing.pasted`), located by its mask.
    With ``hard`` spots (:func:`hard_spots`), a ``hard_fraction`` of the negative crops from
    good images is placed on one of the spots of this dataset's good images (drawn by its
    weight; the spot in the crop's central half) instead of at random. ``rotate`` names how
    the augmentation turns a crop (:data:`deepseek.manufacturing.labelled.ROTATIONS`)."""

    def __init__(self, items: list, n: int, size: int, frames: int, seed: int = 0,
                 augment: bool = True, pasted: tuple[float, float] | None = None,
                 hard: list[HardSpot] | None = None, hard_fraction: float = 0.0,
                 rotate: str = ROTATE) -> None:
        from deepseek.manufacturing.labelled import check_rotate

        self.rotate = check_rotate(rotate)
        self.defect = [i for i in items if i.defect]
        self.good = [i for i in items if not i.defect]
        mine = {id(i) for i in self.good}
        self.hard = [h for h in hard or [] if id(h.item) in mine]
        self.hard_p = np.array([h.weight for h in self.hard], np.float64)
        if len(self.hard):
            self.hard_p /= self.hard_p.sum()
        self.hard_fraction = hard_fraction if self.hard else 0.0
        self.masked = [i for i in self.defect if i.rows]
        self.pasted = pasted
        if pasted is not None:
            if self.defect or not self.good:
                raise ManufacturingError("pasted defects are for good images only")
        elif not self.defect or not (self.good or self.masked):
            raise ManufacturingError("training needs defect images and good images (or masked "
                                     "defect images, whose defect-free area gives negatives)")
        self.n, self.size, self.frames, self.seed, self.augment = n, size, frames, seed, augment
        self.draws = np.zeros(n, np.int64)

    def __len__(self) -> int:
        return self.n

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray | None, Any]:
        """Crop ``i`` of the epoch: an image crop, its mask (None for a good part) and its label,
        drawn afresh each time.
        """
        from deepseek.manufacturing.labelled import sample_crop

        rng = np.random.default_rng([self.seed, i, int(self.draws[i])])
        self.draws[i] += 1
        if i % 2 == 0 and self.pasted is not None:
            from deepseek.manufacturing.pasted import PASTED_KINDS, paste_defect

            item = self.good[int(rng.integers(len(self.good)))]
            x, _ = sample_crop(item, self.size, False, rng)
            x, m = paste_defect(np.ascontiguousarray(x), rng, self.pasted, PASTED_KINDS)
        elif i % 2 == 0:
            item = self.defect[int(rng.integers(len(self.defect)))]
            x, m = sample_crop(item, self.size, True, rng)
        else:
            x = np.empty(0)
            if self.masked and (not self.good or rng.random() < 0.25):
                item = self.masked[int(rng.integers(len(self.masked)))]
                x, m = sample_crop(item, self.size, False, rng)
            if x.size == 0 and self.hard_fraction and rng.random() < self.hard_fraction:
                from deepseek.manufacturing.labelled import crop_on

                spot = self.hard[int(rng.choice(len(self.hard), p=self.hard_p))]
                x, m = crop_on(spot.item, self.size, spot.y, spot.x, rng)
            if x.size == 0:
                pool = self.good or self.masked
                item = pool[int(rng.integers(len(pool)))]
                x, m = sample_crop(item, self.size, False, rng)
        return x, m, rng if x.size else None

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        from deepseek.manufacturing.labelled import augment, cell_map

        x, m, rng = self.sample(i)
        if rng is None:  # no defect-free crop in a masked image: show a positive instead
            x, m, rng = self.sample(i - i % 2)
        if self.augment:
            x, m = augment(x, m, rng, self.rotate)
        positive = i % 2 == 0
        y = float(positive if m is None else bool(m.any()))
        located = m is not None or not positive
        clip = np.repeat(np.ascontiguousarray(x)[None], self.frames, axis=0)
        return {"x": torch.from_numpy(clip),
                "y": torch.full((self.frames,), y), "w": torch.ones(self.frames),
                "map": torch.from_numpy(np.repeat(cell_map(m, self.size)[None], self.frames,
                                                  axis=0)),
                "mw": torch.full((1,), 1.0 if located else 0.0)}


def image_metrics(scores: np.ndarray, labels: Any) -> dict[str, float]:
    """Image-level metrics of scores against defect labels: AUROC, average precision,
    log-loss, recall and false-positive rate at 0.5, and ``val_select`` (what picks the best
    epoch: AUROC to 4 places, ties broken by lower log-loss)."""
    from deepseek.manufacturing.metrics import image_auroc

    s = np.asarray(scores, np.float64)
    lab = np.asarray(labels, np.float64)
    p = np.clip(s, 1e-7, 1 - 1e-7)
    pos, neg = lab == 1, lab == 0
    auroc = image_auroc(s, lab)
    bce = float(-(lab * np.log(p) + (1 - lab) * np.log(1 - p)).mean())
    return {"val_auroc": auroc, "val_ap": average_precision(s, lab), "val_bce": bce,
            "val_recall": float((s[pos] >= 0.5).mean()),
            "val_fpr": float((s[neg] >= 0.5).mean()),
            "val_select": round(auroc, 4) - 1e-6 * min(bce, 100.0)}


def image_scores(model: torch.nn.Module, items: list, frames: int | None = None,
                 views: int = 1) -> np.ndarray:
    """Each labelled image scored alone at full size, as ``deepseek manufacturing score``
    does (under ``views``: see :func:`~deepseek.manufacturing.score.score_image`), and on
    the runtime it does: a network on the CPU as its still-photo graph on onnxruntime
    (:func:`scoring_graph`), where that is installed."""
    from deepseek.manufacturing.score import FRAMES, score_image

    model.eval()
    frames = frames or FRAMES
    net = scoring_graph(model, frames)
    return np.array([score_image(net, it.image, frames, views)[0] for it in items])


def scoring_graph(model: torch.nn.Module, frames: int) -> Any:
    """``model`` as ``score`` runs it by default: its still-photo graph on onnxruntime
    (:class:`~deepseek.manufacturing.runtime.StillGraph`, exported from the weights as they
    are now, in a fraction of a second) for a :class:`DefectNet` on the CPU where onnxruntime
    and the ONNX tools are installed, else ``model`` itself (PyTorch)."""
    from deepseek.extras import missing

    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    if not isinstance(model, DefectNet) or not on_cpu or missing("onnx"):
        return model
    from deepseek.manufacturing.model import export_still_onnx
    from deepseek.manufacturing.runtime import StillGraph

    return StillGraph(export_still_onnx(model, frames), frames)


def evaluate_images(model: torch.nn.Module, items: list, frames: int | None = None
                    ) -> dict[str, float]:
    """Image-level metrics (:func:`image_metrics`) on held-out labelled images, each scored
    alone at full size."""
    return image_metrics(image_scores(model, items, frames), [it.defect for it in items])


class ClipDataset(Dataset):
    """Clips with random flips / transposes (cracks have no preferred side)."""

    def __init__(self, arrays: dict[str, np.ndarray], augment: bool = True) -> None:
        self.a, self.augment = arrays, augment

    def __len__(self) -> int:
        return len(self.a["x"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x, m = self.a["x"][i], self.a["map"][i]
        if self.augment:
            if np.random.random() < 0.5:
                x, m = x[:, :, ::-1], m[:, :, ::-1]
            if np.random.random() < 0.5:
                x, m = x[:, ::-1], m[:, ::-1]
        return {"x": torch.from_numpy(np.ascontiguousarray(x)),
                "y": torch.from_numpy(self.a["y"][i]), "w": torch.from_numpy(self.a["w"][i]),
                "map": torch.from_numpy(np.ascontiguousarray(m)),
                "mw": torch.from_numpy(self.a["mw"][i])}


def clip_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The training loss of a clip batch: weighted frame-level and map-level binary cross-entropy.

    A batch of parts held still (every clip's frames equal, as labelled images are trained)
    goes through the model's ``still`` when it has one: each crop encoded once instead of
    once per frame, the same loss and gradients (to float rounding) at about a third of the
    cost of a step on 2 cores."""
    x = batch["x"]
    if hasattr(model, "still") and x.shape[1] > 1 and torch.equal(x, x[:, :1].expand_as(x)):
        logits, maps = model.still(x[:, 0], x.shape[1])
    else:
        logits, maps, _ = model(x)
    w = batch["w"]
    frame = (F.binary_cross_entropy_with_logits(logits, batch["y"], reduction="none") * w
             ).sum() / w.sum().clamp(min=1)
    tm = batch["map"]
    cell = F.binary_cross_entropy_with_logits(maps, tm, reduction="none",
                                              pos_weight=torch.tensor(4.0))
    mw = batch["mw"].view(-1, 1, 1, 1)
    cell = (cell * mw).sum() / (mw.sum() * cell[0].numel()).clamp(min=1)
    return frame + 4.0 * cell


def score_video(model: DefectNet, line: Any, chunk: int = 32) -> np.ndarray:
    """Frame probabilities of a whole synthetic video, streamed in chunks with carried state."""
    model.eval()
    out, state = [], None
    with torch.inference_mode():
        for a in range(0, len(line), chunk):
            x = torch.from_numpy(np.stack([line.frame(i)
                                           for i in range(a, min(len(line), a + chunk))]))
            lg, _, state = model(x[None], state)
            out.append(torch.sigmoid(lg[0]).numpy())
    return np.concatenate(out)


def validation_lines(n: int, frames: int = 400,
                     crack_depth: tuple[float, float] = TRAIN_CRACK_DEPTH) -> list:
    """``n`` held-out synthetic lines of ``frames`` frames (fixed seeds apart from training's),
    their cracks as deep as training's."""
    from deepseek.manufacturing.synthetic import SyntheticLine

    return [SyntheticLine(seed=VAL_SEED0 + i, frames=frames, crack_depth=tuple(crack_depth))
            for i in range(n)]


def evaluate_lines(model: DefectNet, lines: list, threshold: float = 0.5) -> dict[str, float]:
    """Frame AUROC, recall and false-positive rate of ``model`` on synthetic ``lines`` at
    ``threshold``.
    """
    scores, labels, keep = [], [], []
    for line in lines:
        s = score_video(model, line)
        t = [line.truth(i) for i in range(len(line))]
        scores.append(s)
        labels.append(np.array([r["defect"] for r in t]))
        keep.append(np.array([not r["partial"] for r in t]))
    s, lab, k = (np.concatenate(v) for v in (scores, labels, keep))
    s, lab = s[k], lab[k]
    pos, neg = lab == 1, lab == 0
    p = np.clip(s.astype(np.float64), 1e-7, 1 - 1e-7)
    bce = float(-(lab * np.log(p) + (1 - lab) * np.log(1 - p)).mean())
    return {"val_bce": bce, "val_ap": average_precision(s, lab),
            "val_recall": float((s[pos] >= threshold).mean()) if pos.any() else float("nan"),
            "val_fdr": float((s[neg] >= threshold).mean()) if neg.any() else float("nan")}


#: what training feeds a model: uint8 grayscale clips [N, T, H, W]
TASK_INPUTS = [{"dtype": "uint8", "shape": [-1, -1, -1, -1]}]
TASK = "crack detection on clips (uint8 [N, T, H, W] -> frame logits, maps, state)"


def _check_outputs(net: torch.nn.Module, name: str) -> None:
    """Training reads frame logits ``[N, T]`` and maps ``[N, T, h, w]`` (then a state)."""
    net.eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 2, 4 * STRIDE, 4 * STRIDE, dtype=torch.uint8))
    net.train()
    ok = (isinstance(out, (tuple, list)) and len(out) >= 2 and out[0].shape == (1, 2)
          and out[1].ndim == 4 and tuple(out[1].shape[:2]) == (1, 2))
    if not ok:
        shapes = [tuple(o.shape) for o in out if hasattr(o, "shape")] \
            if isinstance(out, (tuple, list)) else type(out).__name__
        raise ManufacturingError(f"model {name!r} does not fit {TASK}: it returns {shapes}")


def _cosine(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first 10 % of ``steps``, then cosine decay (to 1e-3 of the peak).
    """
    warm = max(1, int(0.1 * steps))

    def schedule(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, steps - warm))
        return 0.5 * (1 + math.cos(math.pi * t)) + 1e-3

    return torch.optim.lr_scheduler.LambdaLR(opt, schedule)


def _trainer(net: torch.nn.Module, n_items: int, *, lr: float, epochs: int, batch_size: int,
             accum_steps: int, amp: bool, checkpoint_dir: Path | None, progress: bool | None,
             model: str, cfg: dict[str, Any]) -> Any:
    from deepseek.train import Trainer

    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * int(np.ceil(n_items / batch_size / accum_steps))
    return Trainer(net, opt, step_fn=clip_loss, accum_steps=accum_steps, amp=amp,
                   scheduler=_cosine(opt, steps), checkpoint_dir=checkpoint_dir,
                   progress=progress, grad_clip=5.0, architecture=model, config=cfg,
                   device="cpu" if not torch.cuda.is_available() else "auto")


def soup(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts of one architecture (a weight average: fine-tuned
    from the same start, such models average into one that scores like their ensemble at the
    cost of one); integer buffers (batch-norm step counters) take the largest value."""
    out: dict[str, torch.Tensor] = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            out[key] = torch.stack([s[key].float() for s in states]).mean(0).to(first.dtype)
        else:
            out[key] = torch.stack([s[key] for s in states]).amax(0)
    return out


def _expected(scores: np.ndarray, labels: list[bool], target_fpr: float, where: str
              ) -> dict[str, Any]:
    """The threshold for ``target_fpr`` on (scores, labels) and what it gives there."""
    from deepseek.manufacturing.metrics import expected_rates, recall_at_fpr, too_few_good

    thr, rec, fpr = recall_at_fpr(scores, labels, target_fpr)
    expected = expected_rates(scores, labels, thr)
    few = too_few_good(expected["good_images"], target_fpr)
    return {"threshold": thr, "threshold_rule": (
        f"lowest image score with a false-positive rate <= {target_fpr:g} on {where} "
        f"({len(labels)} images, {expected['good_images']} good): there recall {rec:.3f}, "
        f"false-positive rate {fpr:.3f}" + (f"; {few}" if few else "")),
        "expected": expected}


def _written_model_recall(net: torch.nn.Module, items: list, extra: dict[str, Any],
                          views: int) -> None:
    """Cross-fitting sets the threshold on the fold models' out-of-fold scores, and writes
    their weight average, which may score parts lower than they did (from scratch, much
    lower). The average scores the training defects at the threshold: it trained on them,
    so what it catches there is about the most it will catch on new parts. When that is
    less than the out-of-fold recall, it becomes the expected recall stored (with its
    interval; the out-of-fold figure kept as ``recall_out_of_fold``), so that ``score``
    does not promise what the written model cannot give."""
    from deepseek.manufacturing.metrics import expected_rates

    exp = extra["expected"]
    defects = [it for it in items if it.defect]
    if not defects or exp.get("recall") is None:
        return
    rates = expected_rates(image_scores(net, defects, views=views), [True] * len(defects),
                           extra["threshold"])
    own = {k: rates[k] for k in ("recall", "recall_ci95", "defect_images")}
    exp["written_model_on_training_defects"] = own
    if own["recall"] < exp["recall"]:
        exp["recall_out_of_fold"], exp["recall_out_of_fold_ci95"] = (exp["recall"],
                                                                     exp["recall_ci95"])
        exp["recall"], exp["recall_ci95"] = own["recall"], own["recall_ci95"]
        exp["recall_from"] = "the written model on the training defects"


def review_spots(review: dict[str, Any], items: list, model_for: Any, views: int = 1,
                 written: torch.nn.Module | None = None, threshold: float | None = None
                 ) -> None:
    """Where to look in each good image a threshold review lists (:func:`~deepseek.
    manufacturing.metrics.threshold_review`): adds ``spot`` to its entries, the box (x0, y0,
    x1, y1, inclusive, in the file's own pixels) around the hottest part of the image's crack
    map under ``model_for(index into items)``, the model whose score the review shows (out
    of fold: the fold model that held it out), boxed as ``score`` boxes a defect (the cells
    at or above 0.5 joined to the hottest; the hottest cell alone when none is). A faint
    line the labels call good is then found at a glance in a photo of a thousand rows.

    ``written`` (cross-fitting: the model written, which trained on every listed image as
    good): each entry also gets ``written_model_score``, that model's score of it, and
    ``still_flagged``, whether it is at or over ``threshold``. A fold model that never saw a
    good image scores it higher than one trained on it; an image the written model still
    scores near its out-of-fold score, or still flags, is one it could not learn as good
    from its label: the likeliest label to be wrong (a defect the label misses), or a part
    unlike anything else labelled good."""
    from deepseek.manufacturing.score import FRAMES, score_image
    from deepseek.manufacturing.stream import box_from_map

    index = {str(it.path): i for i, it in enumerate(items)}
    for entry in review.get("good_highest", []):
        i = index.get(entry["path"])
        if i is None:
            continue
        it = items[i]
        _, pmap = score_image(model_for(i), it.image, FRAMES, views)
        entry["spot"] = list(box_from_map(pmap, it.shape, 0.5, STRIDE / it.scale))
        if written is not None and threshold is not None:
            entry["written_model_score"] = float(score_image(written, it.image, FRAMES,
                                                             views)[0])
            entry["still_flagged"] = entry["written_model_score"] >= threshold


def _save(net: torch.nn.Module, out: Path, model: str, cfg: dict[str, Any],
          extra: dict[str, Any]) -> tuple[Path, str | None]:
    """``out/model.safetensors`` with ``extra`` in its metadata, and beside it the streaming
    ONNX export for the edge install (no PyTorch) when the onnx package is there: (weights
    path, export path or None)."""
    from deepseek.extras import missing
    from deepseek.loader import save_model

    path = save_model(net, out / "model.safetensors", architecture=model, config=cfg,
                      extra=extra)
    if model != "defect-3dcnn-lstm" or missing("onnx"):
        return path, None
    from deepseek.manufacturing.model import write_stream_onnx

    return path, str(write_stream_onnx(path))


def train_model(out_dir: str | Path, *, folder: str | Path | None = None, clips: int = 1600,
                frames: int | None = None, height: int = 128, width: int = 160, epochs: int = 4,
                batch_size: int = 8, lr: float | None = None, seed: int = 0,
                val_videos: int = 2,
                accum_steps: int = 1, amp: bool = False, resume: bool = False,
                config: dict[str, Any] | None = None, workers: int = 2,
                progress: bool | None = None, model: str = "defect-3dcnn-lstm",
                val_folder: str | Path | None = None, val_fraction: float = 0.2,
                group_pattern: str | None = None, crop: int = 160,
                crops_per_epoch: int | None = None, init: str | None = None,
                target_fpr: float = 0.003, folds: int = 5,
                crack_depth: tuple[float, float] = TRAIN_CRACK_DEPTH,
                hard_negatives: float = HARD_NEGATIVES, views: int = 1,
                scale: float = 1.0, rotate: str = ROTATE,
                bit_depth: int | None = None) -> dict[str, Any]:
    """Train ``model`` (``defect-3dcnn-lstm``, or any registered model that fits the task:
    uint8 clips ``[N, T, H, W]`` in, ``(frame logits [N, T], maps [N, T, h, w], state)`` out)
    and write ``out_dir/model.safetensors`` (+ ``.json``).

    Without ``folder``: synthetic clips (``clips`` of ``frames`` x ``height`` x ``width``,
    default 16 frames) whose cracks darken the surface by a fraction drawn from ``crack_depth``,
    validated on synthetic videos with cracks as deep, from scratch unless
    ``init="packaged"``.

    With ``folder``: labelled part images (:mod:`deepseek.manufacturing.labelled`), balanced
    ``crop`` x ``crop`` crops (``crops_per_epoch``, default 8 per training image, at least 256)
    held still for ``frames`` frames (default 4), from the packaged weights unless
    ``init="scratch"``; from the packaged weights ``hard_negatives`` of the negative crops
    from good images sit on the hottest spots those weights find on them (:func:`hard_spots`,
    mined once before training), the rest at random (all at random from scratch). Images
    that look alike (the same part again) join one group first.
    Then, by default (``folds`` > 1, no ``val_folder``), *cross-fitting*: the groups are dealt
    into ``folds`` folds; one model per fold is trained on the other folds and scores its own
    fold's images after every epoch, so every training image gets an out-of-fold score. The
    epoch is chosen by the pooled out-of-fold image AUROC (to 4 places; ties: lower log-loss),
    the fold models of that epoch are averaged into the one model written (:func:`soup`), and
    the threshold for a false-positive rate <= ``target_fpr`` is set on all the out-of-fold
    scores, its expected recall and false-alarm rate stored beside it with 95 % intervals
    (the recall the lower of the out-of-fold one and what the averaged model catches of the
    training defects: :func:`_written_model_recall`).
    The threshold's scores are made under ``views`` (1: each image as it is; 4: also
    flipped three ways, the logits averaged; :func:`~deepseek.manufacturing.score.
    score_image`), stored with the model so that ``score`` makes its scores the same way;
    with 4 the epoch is still chosen on the plain scores (one view), which cost a quarter as
    much, and the out-of-fold scores under both are kept (``out_of_fold_scores``).
    With ``val_folder`` (or ``folds=1``: a group split, ``val_fraction`` of the groups), one
    model, the best epoch by the validation images' AUROC, the threshold set on them.
    ``scale`` (``folder`` only): every image (and mask) is scaled by it first (area
    averaging, :func:`~deepseek.manufacturing.images.rescale`), for training, for the
    threshold's scores and, stored with the model, when ``score`` scores a photo.
    ``rotate`` (``folder`` only): how the training crops are turned
    (:data:`~deepseek.manufacturing.labelled.ROTATIONS`): ``"small"`` (up to 10 degrees)
    keeps the training images' crack directions, ``"any"`` trains a crack in every
    direction.
    ``bit_depth`` (``folder`` only): the bits a 16-bit image's pixels hold (12 for a 12-bit
    camera's data in 16-bit words), read over that range instead of the full 16 bits;
    stored with the model, so that ``score`` and ``calibrate`` read its photos the same way.
    ``deepseek manufacturing score`` uses the stored threshold by default. ``lr`` defaults to
    1e-3 from the packaged weights, 3e-3 from scratch."""
    from deepseek.loader import build_registered, require_fit

    require_fit(model, TASK, TASK_INPUTS)
    if init not in (None, "packaged", "scratch"):
        raise ManufacturingError(f"init={init!r}: give 'packaged' or 'scratch'")
    if folds < 1:
        raise ManufacturingError(f"folds={folds}: give 1 (one model, a held-out split) or more")
    from deepseek.manufacturing.stream import check_views

    check_views(views)
    from deepseek.manufacturing.images import check_bit_depth, check_scale

    scale, bit_depth = check_scale(scale), check_bit_depth(bit_depth)
    if bit_depth is not None and folder is None:
        raise ManufacturingError("bit_depth applies to part images (folder); the synthetic "
                                 "line is drawn in 8 bits")
    from deepseek.manufacturing.labelled import check_rotate

    rotate = check_rotate(rotate)
    if scale != 1 and folder is None:
        raise ManufacturingError("scale applies to part images (folder); the synthetic line "
                                 "is drawn at its own resolution")
    if not 0.0 <= hard_negatives <= 1.0:
        raise ManufacturingError(f"hard_negatives={hard_negatives}: give the share of the "
                                 "negative crops placed on hard spots, 0 to 1")
    init = init or ("packaged" if folder is not None else "scratch")
    lr = lr or (1e-3 if init == "packaged" else 3e-3)
    frames = frames or (4 if folder is not None else 16)
    if folder is not None:
        height = width = crop
    if height % STRIDE or width % STRIDE:
        raise ManufacturingError(f"clip size {width}x{height}: both must be multiples of "
                                 f"{STRIDE}")
    if val_folder is not None and folder is None:
        raise ManufacturingError("val_folder needs folder (training images)")
    cross = folder is not None and val_folder is None and folds > 1
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    np.random.seed(seed)
    t0 = time.perf_counter()
    fit = {"lr": lr, "epochs": epochs, "batch_size": batch_size, "accum_steps": accum_steps,
           "amp": amp, "progress": progress, "model": model}
    if folder is None:
        from deepseek.manufacturing.synthetic import check_crack_depth

        lo, hi = check_crack_depth(crack_depth)
        arrays = make_clips(clips, seed, frames, height, width, workers, (lo, hi))
        dataset = ClipDataset(arrays)
        log.info("%d training clips (%d defect frames of %d) in %.0f s", len(arrays["x"]),
                 int(arrays["y"].sum()), arrays["y"].size, time.perf_counter() - t0)
        lines = validation_lines(val_videos, crack_depth=(lo, hi)) if val_videos else []
        net, cfg = build_registered(model, pretrained=init == "packaged", **(config or {}))
        _check_outputs(net, model)
        trainer = _trainer(net, len(dataset), checkpoint_dir=out / "checkpoints", cfg=cfg,
                           **fit)

        def eval_lines(m: torch.nn.Module, data: list) -> dict[str, float]:
            try:
                return evaluate_lines(m, data)  # type: ignore[arg-type]
            finally:
                m.train()

        best_metric = "val_bce" if lines else "train_loss"
        history = trainer.fit(dataset, epochs=epochs, batch_size=batch_size,
                              val_data=lines or None, eval_fn=eval_lines if lines else None,
                              best_metric=best_metric, mode="min", resume=resume)
        if (out / "checkpoints" / "best").is_dir():
            trainer.load_checkpoint(out / "checkpoints" / "best")
        data_info: dict[str, Any] = {"data": "synthetic", "clips": len(arrays["x"]),
                                     "crack_depth": [lo, hi]}
        extra: dict[str, Any] = {"trained_on": "synthetic", "init": init}
    else:
        from deepseek.manufacturing.labelled import (
            class_summary,
            copies_report,
            image_digests,
            join_look_alikes,
            read_labelled,
        )

        items = read_labelled(folder, group_pattern, scale=scale,  # copies set aside, warned
                              bit_depth=bit_depth)
        if val_folder is not None:
            items = _without_validation(items, Path(folder), Path(val_folder))
        joined = join_look_alikes(items, rule_given=group_pattern is not None)
        for why in ("regrouped", "skipped"):
            if why in joined:
                log.warning("%s", joined[why])
        if "skipped" not in joined and joined["groups_after"] < joined["groups_before"]:
            log.info("%d look-alike image pairs (the same part again): %d groups joined into "
                     "%d", joined["pairs"], joined["groups_before"], joined["groups_after"])
        crops = crops_per_epoch or max(256, 8 * len(items))
        small = smaller_than_crop(items, crop, scale)
        classes = class_summary(items)
        directions = defect_directions(items)
        widths = defect_widths(items, scale)
        if classes:
            log.info("defect classes (every one a defect): %s", describe_classes(classes))

        def build() -> tuple[torch.nn.Module, dict[str, Any]]:
            net, cfg = build_registered(model, pretrained=init == "packaged",
                                        **(config or {}))
            _check_outputs(net, model)
            return net, cfg

        data_info = {"data": "folder", "folder": str(folder), "scale": scale,
                     **({"bit_depth": bit_depth} if bit_depth else {}),
                     "rotate": rotate, "images": len(items),
                     "defect_images": sum(i.defect for i in items), "crop": crop,
                     "groups": joined["groups_after"], "look_alike_pairs": joined["pairs"],
                     **{k: joined[k] for k in ("regrouped", "skipped") if k in joined},
                     **({"copies": copies_report(items)} if any(i.copies for i in items)
                        else {}),
                     "label_sources": sorted({i.source for i in items}),
                     **({"defect_classes": classes} if classes else {}),
                     **({"defect_directions": directions} if directions else {}),
                     **({"defect_widths": widths} if widths else {}),
                     **({"smaller_than_crop": small} if small else {}),
                     "image_digests": image_digests(items)}
        # mined once, by the weights every model starts from (which saw none of these
        # images): the same spots for every fold, each fold using its own images' spots.
        # Random weights from scratch have no sense of a crack to mine with.
        mine = hard_negatives > 0 and init == "packaged"
        hard, t_mine = [], 0.0
        if mine:
            t_mine = time.perf_counter()
            hard = hard_spots(build()[0], items, progress=progress)
            t_mine = time.perf_counter() - t_mine
        data_info["hard_negatives"] = {
            "fraction": hard_negatives if mine else 0.0, "spots": len(hard),
            "per_image": HARD_SPOTS_PER_IMAGE,
            "mined_by": "the packaged weights (the starting weights)" if mine else None,
            "seconds": round(t_mine, 2)}
        if hard_negatives and not mine:
            log.info("hard negatives need starting weights that know a crack: with --init "
                     "scratch every negative crop is placed at random")
        if cross:
            net, cfg, history, held, more = _cross_fit(items, build, crops, crop, frames,
                                                      folds, seed, fit,
                                                      hard=(hard, hard_negatives),
                                                      views=views, rotate=rotate,
                                                      checkpoints=out / "checkpoints",
                                                      resume=resume)
            model_for = more.pop("held_out_by")
            data_info.update(more)
            where = f"the out-of-fold scores of all {len(items)} training images"
        else:
            net, cfg, history, held, val, more = _fit_held_out(
                items, build, crops, crop, frames, seed, fit, out, resume, val_folder,
                val_fraction, group_pattern, hard=(hard, hard_negatives), views=views,
                scale=scale, rotate=rotate, bit_depth=bit_depth)
            data_info.update(more)
            where = ("the validation folder" if val_folder is not None else
                     "the held-out groups")
            items = val

            def model_for(i: int) -> torch.nn.Module:  # what scored the held-out images
                return net
        if views > 1:
            where += f", scored under {views} views"
        labels = [bool(it.defect) for it in items]
        extra = {"trained_on": "folder", "init": init, "views": views, "scale": scale,
                 "rotate": rotate, **({"bit_depth": bit_depth} if bit_depth else {}),
                 **_expected(held, labels, target_fpr, where)}
        if cross:
            _written_model_recall(net, items, extra, views)
        data_info.update({k: extra[k] for k in ("views", "threshold", "threshold_rule",
                                                 "expected")})
        data_info["threshold_review"] = threshold_review(
            [it.path for it in items], held, labels, extra["threshold"])
        review_spots(data_info["threshold_review"], items, model_for, views,
                     written=net if cross else None, threshold=extra["threshold"])
        best_metric = "val_select"
    path, onnx_path = _save(net, out, model, cfg, extra)
    summary = {"model": str(path), "onnx": onnx_path, "history": history,
               "seconds": time.perf_counter() - t0,
               "init": init, "lr": lr, "best_by": best_metric, **data_info,
               "clip_shape": [frames, height, width]}
    (out / "training.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def describe_classes(classes: dict[str, dict[str, int]]) -> str:
    """``crack 52 annotations on 38 images, scratch 3 on 2`` (:func:`~deepseek.manufacturing.
    labelled.class_summary`)."""
    def n(k: int, what: str) -> str:
        return f"{k} {what}{'' if k == 1 else 's'}"

    return ", ".join(f"{name} {n(c['annotations'], 'annotation')} on {n(c['images'], 'image')}"
                     if k == 0 else f"{name} {c['annotations']} on {c['images']}"
                     for k, (name, c) in enumerate(classes.items()))


#: a located defect has a direction when its pixels' spread along their main axis is at
#: least this many times the spread across it (a line, not a blotch)
ELONGATED = 4.0


def line_axis(item: Any) -> np.ndarray | None:
    """The main axis (x, y up) of a masked defect image's mask pixels when they form a line,
    spreading at least :data:`ELONGATED` times as far along it as across; None for a blotch,
    a good image, or fewer than 3 pixels."""
    if not (item.defect and len(item.rows) >= 3):
        return None
    pts = np.stack([np.asarray(item.cols, np.float64), -np.asarray(item.rows, np.float64)])
    w, v = np.linalg.eigh(np.cov(pts))
    return v[:, 1] if w[0] <= 0 or w[1] >= ELONGATED ** 2 * w[0] else None


def defect_directions(items: list) -> dict[str, Any] | None:
    """Which way the training images' defects run: each masked defect image's main axis (of
    its mask pixels), in degrees from the image's width (-90 to 90, counter-clockwise as
    seen), for those that are lines rather than blotches (:func:`line_axis`): how many
    (``defects``), the narrowest range of directions holding them all (``arc_degrees``, near
    180 when they run every way) and its middle (``centre_degrees``). None when fewer than 3
    defects have a direction."""
    angles = []
    for it in items:
        axis = line_axis(it)
        if axis is not None:
            angles.append(float(np.degrees(np.arctan2(axis[1], axis[0]))) % 180.0)
    if len(angles) < 3:
        return None
    a = np.sort(np.array(angles))
    gaps = np.diff(np.append(a, a[0] + 180.0))
    k = int(np.argmax(gaps))  # the arc runs from just after the widest gap round to it
    start, arc = a[(k + 1) % len(a)], 180.0 - float(gaps[k])
    centre = (start + arc / 2 + 90.0) % 180.0 - 90.0
    return {"defects": len(angles), "arc_degrees": round(arc, 1),
            "centre_degrees": round(float(centre), 1)}


#: training defects whose directions all lie within this arc (degrees) are said to run one
#: way, and ``train`` with the small turns says what that means for the model
NARROW_ARC = 90.0


def defect_widths(items: list, scale: float = 1.0) -> dict[str, Any] | None:
    """How wide the training images' line-shaped defects are (:func:`line_axis`), in the
    photos' own pixels: each mask's width is twice the 95th
    percentile of its pixels' distance to the nearest unmarked pixel, less one (OpenCV's
    distance transform of the mask as training sees it, divided by ``scale``: a line 1, 3 or
    5 pixels across measures 1, 3 or 5). ``{"defects", "median_px",
    "range_px"}`` (the 10th and 90th percentiles), or None when fewer than 3 defects are
    lines. A box drawn round a crack is as wide as the box, not the crack."""
    from deepseek.manufacturing.images import require_cv2

    cv2 = require_cv2("defect widths")
    widths = []
    for it in items:
        if line_axis(it) is None:
            continue  # a blotch has no width across a direction
        rows, cols = np.asarray(it.rows), np.asarray(it.cols)
        r0, c0 = rows.min() - 1, cols.min() - 1  # a one-pixel margin of surface round it
        m = np.zeros((rows.max() - r0 + 2, cols.max() - c0 + 2), np.uint8)
        m[rows - r0, cols - c0] = 1
        d = cv2.distanceTransform(m, cv2.DIST_L2, 5)[m > 0]
        widths.append((2.0 * float(np.percentile(d, 95)) - 1.0) / scale)
    if len(widths) < 3:
        return None
    lo, med, hi = np.percentile(widths, [10, 50, 90])
    return {"defects": len(widths), "median_px": round(float(med), 1),
            "range_px": [round(float(lo), 1), round(float(hi), 1)]}


#: line-shaped training defects narrower than this (median, photo pixels: under half the
#: network's 16-pixel cell) are thin, and ``train`` at scale 1 or below says that enlarging
#: the photos may find more of them
THIN_PX = 8.0


def width_note(res: dict[str, Any]) -> str | None:
    """What ``train`` says when the training defects drawn as lines are thin (median under
    :data:`THIN_PX` photo pixels) and the photos were not enlarged. None otherwise."""
    d = res.get("defect_widths")
    if not d or d["median_px"] >= THIN_PX or float(res.get("scale") or 1.0) > 1.0:
        return None
    return (f"the {d['defects']} training defects drawn as lines are thin (median width "
            f"{d['median_px']:g} pixels of the photo, under half the model's 16-pixel cell): "
            "enlarging the photos may find more of them; compare --scale 1.5 or 2 on held-out "
            "parts")


def direction_note(res: dict[str, Any]) -> str | None:
    """What ``train`` says when the training defects all run one way (within
    :data:`NARROW_ARC`) and the crops were turned only a little: the model learns defects
    running those ways. None otherwise."""
    d = res.get("defect_directions")
    if not d or res.get("rotate") != "small" or d["arc_degrees"] > NARROW_ARC:
        return None
    return (f"the {d['defects']} training defects drawn as lines all run within "
            f"{d['arc_degrees']:g} degrees of one another (around {d['centre_degrees']:g} from "
            "the image's width): the model learns defects running those ways; where parts or "
            "the camera may lie otherwise, train with --rotate any")


def smaller_than_crop(items: list, crop: int, scale: float = 1.0) -> dict[str, Any] | None:
    """The images whose side (at ``scale``) is shorter than the training ``crop``, with a
    warning: their crops are padded by repeating the edge pixels, a smear the model then
    learns as surface. ``{"images", "of", "smallest", "crop_that_fits"}`` or None."""
    from deepseek.manufacturing.images import scaled_size

    sizes = [(scaled_size(it.shape, scale), it) for it in items]
    small = [(hw, it) for hw, it in sizes if min(hw) < crop]
    if not small:
        return None
    (h, w), least = min(small, key=lambda s: min(s[0]))
    fits = min(h, w) // STRIDE * STRIDE
    at = f" at --scale {scale:g}" if scale != 1 else ""
    log.warning("%d of %d images are smaller than the %d-pixel training crop%s (the smallest, "
                "%s, %dx%d): their crops are padded by repeating edge pixels, which the model "
                "learns as surface; %s", len(small), len(items), crop, at, least.path.name, w,
                h, f"give --crop {fits} (the largest multiple of {STRIDE} they fill)"
                if fits >= STRIDE else f"images under {STRIDE} pixels are too small to train "
                "on: leave them out")
    return {"images": len(small), "of": len(items), "smallest": [w, h],
            "crop_that_fits": fits or None}


#: good-only training's peak learning rate: low, so that the packaged weights' sense of a
#: crack survives fine-tuning on one surface (1e-3 took KolektorSDD's val AUROC to 0.77
#: in development, 3e-4 to 0.91)
PASTED_LR = 3e-4


def train_good_only(out_dir: str | Path, folder: str | Path, *, epochs: int = 4,
                    lr: float = PASTED_LR, seed: int = 0, folds: int = 5,
                    target_fpr: float = 0.003, group_pattern: str | None = None,
                    crop: int = 160, crops_per_epoch: int | None = None, frames: int = 4,
                    batch_size: int = 8, accum_steps: int = 1, amp: bool = False,
                    progress: bool | None = None, model: str = "defect-3dcnn-lstm",
                    crack_depth: tuple[float, float] | None = None,
                    bit_depth: int | None = None) -> dict[str, Any]:
    """Good parts only, trained: ``model`` fine-tuned from the packaged weights on the good
    images of ``folder`` with synthetic cracks pasted in
    (:mod:`deepseek.manufacturing.pasted`, darkening drawn from ``crack_depth``), written to
    ``out_dir/model.safetensors`` for ``score`` and ``stream``.

    Cross-fitted as :func:`train_model` with a folder: the good images are grouped (the
    group rule, look-alike photos joined) and dealt into ``folds`` folds; each fold model
    trains on the other folds and, after every epoch, scores its own fold's images and a
    copy of each with a crack pasted in (drawn from a fixed seed). The epoch is the one whose
    out-of-fold AUROC (good against pasted) is highest; the fold models of that epoch are
    averaged into the one written. The threshold is the lowest whose false-alarm rate on the
    out-of-fold scores of the good images is at most ``target_fpr``; that rate is stored with
    its interval (``expected``; the recall on real defects stays unknown), and the recall on
    the pasted cracks apart (``pasted``: a check that training worked, not a promise about
    real cracks). ``bit_depth``: the bits of 16-bit photos, stored with the weights (as
    :func:`train_model`)."""
    from deepseek.loader import build_registered, require_fit
    from deepseek.manufacturing.anomaly import add_defect_recall, score_defects
    from deepseek.manufacturing.images import check_bit_depth, image_paths
    from deepseek.manufacturing.labelled import good_folds, image_digests, set_aside_defects
    from deepseek.manufacturing.metrics import expected_rates, recall_at_fpr, too_few_good
    from deepseek.manufacturing.pasted import PASTED_CRACK_DEPTH, PASTED_KINDS, PastedImage
    from deepseek.manufacturing.score import score_image
    from deepseek.manufacturing.synthetic import check_crack_depth

    require_fit(model, TASK, TASK_INPUTS)
    if folds < 2:
        raise ManufacturingError(f"folds={folds}: good-only training sets its threshold on "
                                 "out-of-fold scores; give 2 or more")
    if not 0.0 < target_fpr < 1.0:
        raise ManufacturingError(f"target_fpr={target_fpr}: give a rate between 0 and 1")
    if crop % STRIDE:
        raise ManufacturingError(f"crop {crop}: give a multiple of {STRIDE}")
    depth = check_crack_depth(crack_depth or PASTED_CRACK_DEPTH)
    bit_depth = check_bit_depth(bit_depth)
    root = Path(folder)
    files, defects = set_aside_defects(root, image_paths([root]), bit_depth)
    if len(files) < 2:
        raise ManufacturingError(f"{folder}: {len(files)} good image(s); give at least 2, "
                                 "better dozens")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    fold, grouping, goods = good_folds(files, root, folds, seed, group_pattern,
                                       bit_depth=bit_depth)
    files = [it.path for it in goods]  # copies of an image set aside
    for why in ("regrouped", "skipped"):
        if why in grouping:
            log.warning("%s", grouping[why])
    copies = [PastedImage(it.path, True, "pasted", it.shape, group=it.group, seed=(seed, i),
                          depth=depth, kinds=PASTED_KINDS, base=it)
              for i, it in enumerate(goods)]
    crops = crops_per_epoch or max(256, 8 * len(goods))
    small = smaller_than_crop(goods, crop)
    fit = {"lr": lr, "epochs": epochs, "batch_size": batch_size, "accum_steps": accum_steps,
           "amp": amp, "progress": progress, "model": model}

    def build() -> tuple[torch.nn.Module, dict[str, Any]]:
        net, cfg = build_registered(model, pretrained=True)
        _check_outputs(net, model)
        return net, cfg

    net, cfg, history, oof, info = _cross_fit(goods + copies, build, crops, crop, frames,
                                              folds, seed, fit,
                                              fold=np.concatenate([fold, fold]),
                                              pasted=depth)
    n = len(goods)
    labels = np.r_[np.zeros(n, bool), np.ones(n, bool)]
    thr = recall_at_fpr(oof, labels, target_fpr)[0]
    expected = expected_rates(oof[:n], labels[:n], thr)
    net.eval()
    add_defect_recall(expected, oof[:n], score_defects(
        lambda image: score_image(net, image)[0], defects, bit_depth), thr)
    pasted = expected_rates(oof, labels, thr)
    rule = (f"lowest image score with a false-alarm rate <= {target_fpr:g} on the out-of-fold "
            f"scores of {n} good images ({info['folds']} folds by group)")
    few = too_few_good(n, target_fpr)
    if few:
        rule += f"; {few}"
    # the good images that hold the threshold, each with the spot its fold model found
    review = threshold_review([it.path for it in goods], oof[:n], labels[:n], thr)
    review_spots(review, goods, info["held_out_by"])
    extra = {"trained_on": "good-only (pasted cracks)", "init": "packaged", "threshold": thr,
             "threshold_rule": rule, "expected": expected,
             "pasted": {"recall": pasted["recall"], "recall_ci95": pasted["recall_ci95"],
                        "images": n, "crack_depth": list(depth), "kinds": list(PASTED_KINDS)},
             **({"bit_depth": bit_depth} if bit_depth is not None else {})}
    path, onnx_path = _save(net, out, model, cfg, extra)
    summary = {"model": str(path), "onnx": onnx_path, "history": history,
               "seconds": time.perf_counter() - t0, "init": "packaged", "lr": lr,
               "best_by": "val_select", "data": "good-only", "folder": str(folder),
               "images": n, "groups": int(grouping["groups_after"]),
               "look_alike_pairs": grouping["pairs"], "crop": crop,
               **({"smaller_than_crop": small} if small else {}),
               **{k: grouping[k] for k in ("regrouped", "skipped", "copies") if k in grouping},
               "validation": f"{info['folds']}-fold cross-fitting by group: every good image, "
                             "and a copy with a pasted crack, scored by the fold model that "
                             "did not see it",
               "folds": info["folds"], "fold_images": np.bincount(fold).tolist(),
               "epoch": info["epoch"], "crops_per_epoch": info["crops_per_epoch"],
               "stage_seconds": info["stage_seconds"], "clip_shape": [frames, crop, crop],
               "image_digests": image_digests(goods), **extra, "threshold_review": review}
    (out / "training.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _fit_held_out(items: list, build: Any, crops: int, crop: int, frames: int, seed: int,
                  fit: dict[str, Any], out: Path, resume: bool, val_folder: Any,
                  val_fraction: float, group_pattern: str | None,
                  hard: tuple[list[HardSpot], float] = ([], 0.0), views: int = 1,
                  rotate: str = ROTATE,
                  scale: float = 1.0, bit_depth: int | None = None) -> tuple[Any, ...]:
    """One model validated on ``val_folder`` or a group split; the best epoch kept.
    (net, cfg, history, validation scores, validation items, data info)."""
    from deepseek.manufacturing.labelled import (
        copies_report,
        read_labelled,
        shared_parts,
        split_groups,
    )

    if val_folder is not None:
        val = read_labelled(val_folder, group_pattern, scale=scale, bit_depth=bit_depth)
        if not any(i.defect for i in val) or all(i.defect for i in val):
            raise ManufacturingError(f"{val_folder}: validation needs good and defect images")
    else:
        items, val = split_groups(items, val_fraction, seed)
    leaks = shared_parts(items, val)
    if leaks:
        v, t, c = leaks[0]
        log.warning("%d validation image(s) look like training images (thumbnails "
                    "correlated >= 0.97 after lighting is divided out), e.g. %s and %s "
                    "(%.3f): the same part on both sides of the split makes the "
                    "validation figures and the stored threshold read too well; group "
                    "the photos of one part with --group-pattern REGEX (or give "
                    "--val-folder)", len(leaks), Path(v).name, Path(t).name, c)
    dataset = CropDataset(items, crops + crops % 2, crop, frames, seed, hard=hard[0],
                          hard_fraction=hard[1], rotate=rotate)
    log.info("%d training images (%d defect), %d validation images (%d defect)",
             len(items), sum(i.defect for i in items), len(val), sum(i.defect for i in val))
    net, cfg = build()
    trainer = _trainer(net, len(dataset), checkpoint_dir=out / "checkpoints", cfg=cfg, **fit)

    def eval_fn(m: torch.nn.Module, data: list) -> dict[str, float]:
        try:
            return evaluate_images(m, data)
        finally:
            m.train()

    history = trainer.fit(dataset, epochs=fit["epochs"], batch_size=fit["batch_size"],
                          val_data=val, eval_fn=eval_fn, best_metric="val_select", mode="max",
                          resume=resume)
    if (out / "checkpoints" / "best").is_dir():
        trainer.load_checkpoint(out / "checkpoints" / "best")
    held = image_scores(net, val, views=views)
    info = {"train_images": len(items), "train_defect_images": sum(i.defect for i in items),
            "val_images": len(val), "val_defect_images": sum(i.defect for i in val),
            "validation": str(val_folder) if val_folder is not None else
            f"group split of the folder ({val_fraction:g} of the groups)",
            "crops_per_epoch": len(dataset), "validation_images_like_training": len(leaks)}
    if val_folder is not None and any(i.copies for i in val):
        info["val_copies"] = copies_report(val)
    return net, cfg, history, held, val, info


def _without_validation(items: list, folder: Path, val_folder: Path) -> list:
    """``items`` (read from ``folder``) without the files of ``val_folder``: a validation
    folder inside the training folder (``--folder data --val-folder data/val``) is left out
    of training, with a warning, so that validation stays on images the model never saw.

    Raises:
        ManufacturingError: every training image is in the validation folder."""
    from deepseek.manufacturing.images import list_images

    if not val_folder.is_dir():
        return items  # read_labelled names the missing folder when validation reads it
    held = {p.resolve() for p in list_images(val_folder, recursive=True)}
    both = [i for i in items if i.path.resolve() in held]
    if not both:
        return items
    if len(both) == len(items):
        raise ManufacturingError(f"{folder}: all of its {len(items)} images are in the "
                                 f"validation folder {val_folder}: give --val-folder a folder "
                                 "of other parts, or leave it out (the default cross-fitting "
                                 "needs none)")
    log.warning("%s: %d of its %d images are in the validation folder %s (e.g. %s): left out "
                "of training, so that validation is on parts the model never saw",
                folder, len(both), len(items), val_folder, both[0].path.name)
    return [i for i in items if i.path.resolve() not in held]


def _fold_key(items: list, fold: np.ndarray, settings: dict[str, Any]) -> str:
    """What a fold's results depend on, as one digest: every image (path, pixels, label),
    the folds dealt, and the training settings."""
    what = {"images": [(str(Path(it.path).resolve()), getattr(it, "digest", None),
                        bool(it.defect)) for it in items],
            "fold": fold.tolist(), **settings}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def _save_atomic(obj: Any, path: Path) -> None:
    from deepseek.paths import written_whole

    with written_whole(path) as tmp:
        torch.save(obj, tmp)


def _finished_folds(where: Path, key: str, k_folds: int
                    ) -> tuple[dict[int, dict[str, Any]], dict[str, torch.Tensor] | None]:
    """The folds an earlier run of the same images, folds and settings finished in
    ``where`` (``fold-K.pt``), and the weights every fold model started from; folds saved
    by a run of other data or settings are not used (named in a warning)."""
    def load(path: Path) -> dict[str, Any]:
        try:
            rec = torch.load(path, weights_only=True)
        except Exception:  # noqa: BLE001 - damaged or not ours: trained again, named below
            return {}
        return rec if isinstance(rec, dict) else {}

    start = None
    if (where / "start.pt").is_file():
        rec = load(where / "start.pt")
        start = rec.get("state") if rec.get("key") == key else None
    done: dict[int, dict[str, Any]] = {}
    other = []
    for k in range(k_folds):
        path = where / f"fold-{k}.pt"
        if path.is_file():
            rec = load(path)
            if rec.get("key") == key and start is not None:
                done[k] = rec
            else:
                other.append(path.name)
    if other:
        log.warning("%s: %s saved by a run of other images or settings (or damaged, or "
                    "without its starting weights): not used, trained again", where,
                    ", ".join(other))
    return done, start


def _cross_fit(items: list, build: Any, crops: int, crop: int, frames: int, folds: int,
               seed: int, fit: dict[str, Any], fold: np.ndarray | None = None,
               pasted: tuple[float, float] | None = None,
               hard: tuple[list[HardSpot], float] = ([], 0.0), views: int = 1,
               rotate: str = ROTATE, checkpoints: Path | None = None,
               resume: bool = False) -> tuple[Any, ...]:
    """Cross-fitting (see :func:`train_model`): (soup net, cfg, history, out-of-fold scores
    at the chosen epoch, data info). ``fold``: each item's fold, when the caller dealt them;
    ``pasted``: good-only training (:func:`train_good_only`): the fold models train on the
    good items with cracks of that darkening pasted in, the defect items (pasted copies)
    are only scored. ``views`` > 1: the chosen epoch's fold models score their folds again
    under those views (the epoch is chosen on the one-view scores); those scores are
    returned. ``checkpoints``: a folder each finished fold's results are saved in
    (``fold-K.pt``: its epochs' weights, held-out scores and history), so that ``resume``
    takes the folds an interrupted run of the same images and settings finished and trains
    only the rest (each fold is seeded on its own: the same as in one run)."""
    from deepseek.manufacturing.labelled import fold_groups

    if fold is None:
        fold = fold_groups(items, folds, seed)
    k_folds = int(fold.max()) + 1
    done: dict[int, dict[str, Any]] = {}
    saved_start: dict[str, torch.Tensor] | None = None
    key = ""
    if checkpoints is not None:
        key = _fold_key(items, fold, {
            "seed": seed, "crops": crops, "crop": crop, "frames": frames, "pasted": pasted,
            "hard": [len(hard[0]), hard[1]], "views": views, "rotate": rotate,
            "fit": {k: v for k, v in fit.items() if k != "progress"}})
        checkpoints.mkdir(parents=True, exist_ok=True)
        if resume:
            done, saved_start = _finished_folds(checkpoints, key, k_folds)
            log.info("resuming: %d of %d folds finished before (%s)", len(done), k_folds,
                     checkpoints)
        else:  # a fresh run: what an earlier one left is not this run's
            for old in [*checkpoints.glob("fold-*.pt"), checkpoints / "start.pt"]:
                old.unlink(missing_ok=True)
    if k_folds < folds:
        log.warning("%d folds asked for, %d made: too few groups hold a defect (or a good "
                    "image)", folds, k_folds)
    epochs = fit["epochs"]
    labels = np.array([it.defect for it in items], np.float64)
    oof = np.full((epochs, len(items)), np.nan)
    states: list[list[dict[str, torch.Tensor]]] = [[] for _ in range(epochs)]
    fold_hist: list[list[dict[str, Any]]] = []
    cfg: dict[str, Any] = {}
    t_scoring = [0.0]
    t_start = time.perf_counter()
    start: dict[str, torch.Tensor] | None = saved_start if done else None
    for k in range(k_folds):
        train_idx, held_idx = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        if k in done:  # finished by the interrupted run
            rec = done[k]
            oof[:, held_idx] = rec["oof"].numpy()
            for e in range(epochs):
                states[e].append(rec["states"][e])
            fold_hist.append(rec["history"])
            log.info("fold %d of %d: finished before, taken from %s", k + 1, k_folds,
                     checkpoints)
            continue
        train = [items[i] for i in train_idx if pasted is None or not items[i].defect]
        held = [items[i] for i in held_idx]
        log.info("fold %d of %d: %d training images (%d defect), %d held out (%d defect)",
                 k + 1, k_folds, len(train), sum(i.defect for i in train), len(held),
                 sum(i.defect for i in held))
        torch.manual_seed(seed * 1000 + k)
        dataset = CropDataset(train, crops + crops % 2, crop, frames, seed * 1000 + k,
                              pasted=pasted, hard=hard[0], hard_fraction=hard[1],
                              rotate=rotate)
        net, cfg = build()
        # every fold model from one start (averaging needs it: a soup of networks drawn
        # from different random starts scores nothing); from the packaged weights a no-op
        if start is None:
            start = {n: t.detach().clone() for n, t in net.state_dict().items()}
            if checkpoints is not None:
                _save_atomic({"key": key, "state": start}, checkpoints / "start.pt")
        else:
            net.load_state_dict(start)
        trainer = _trainer(net, len(dataset), checkpoint_dir=None, cfg=cfg, **fit)
        epoch = [0]

        def eval_fn(m: torch.nn.Module, data: list, idx: np.ndarray = held_idx,
                    epoch: list[int] = epoch) -> dict[str, float]:
            t = time.perf_counter()
            try:
                s = image_scores(m, data)
                oof[epoch[0], idx] = s
                states[epoch[0]].append({n: t.detach().clone()
                                         for n, t in m.state_dict().items()})
                epoch[0] += 1
                return image_metrics(s, [it.defect for it in data])
            finally:
                m.train()
                t_scoring[0] += time.perf_counter() - t

        fold_hist.append(trainer.fit(dataset, epochs=epochs, batch_size=fit["batch_size"],
                                     val_data=held, eval_fn=eval_fn, best_metric="val_select",
                                     mode="max"))
        if checkpoints is not None:
            _save_atomic({"key": key, "k": k, "oof": torch.from_numpy(oof[:, held_idx].copy()),
                          "states": [states[e][k] for e in range(epochs)],
                          "history": fold_hist[k]}, checkpoints / f"fold-{k}.pt")
    history = []
    for e in range(epochs):
        pooled = image_metrics(oof[e], labels)
        history.append({"epoch": e + 1,
                        "train_loss": float(np.mean([h[e]["train_loss"] for h in fold_hist])),
                        **{k.replace("val_", "oof_"): v for k, v in pooled.items()},
                        "val_select": pooled["val_select"], "val_auroc": pooled["val_auroc"],
                        "fold_auroc": [round(h[e]["val_auroc"], 4) for h in fold_hist]})
    best = max(range(epochs), key=lambda e: (history[e]["val_select"], e))
    for e, h in enumerate(history):
        h["best"] = e == best
    chosen = oof[best]
    by_views = {"1": history[best]["oof_auroc"]}
    if views > 1:  # the chosen fold models again, under the views the threshold is set on
        t = time.perf_counter()
        chosen = np.full(len(items), np.nan)
        for k, state in enumerate(states[best]):
            m, _ = build()
            m.load_state_dict(state)
            idx = np.flatnonzero(fold == k)
            chosen[idx] = image_scores(m, [items[i] for i in idx], views=views)
        by_views[str(views)] = image_metrics(chosen, labels)["val_auroc"]
        t_scoring[0] += time.perf_counter() - t
    net, cfg = build()
    net.load_state_dict(soup(states[best]))
    net.eval()
    scores = [{"path": str(it.path), "defect": bool(it.defect), "label": it.source,
               "score": float(chosen[i]),
               **({"score_one_view": float(oof[best, i])} if views > 1 else {})}
              for i, it in enumerate(items)]
    fold_models: dict[int, torch.nn.Module] = {}
    chosen_states = states[best]  # only these are kept past the return

    def held_out_by(i: int) -> torch.nn.Module:
        """The chosen fold model that held item ``i`` out (built on first use)."""
        k = int(fold[i])
        if k not in fold_models:
            m, _ = build()
            m.load_state_dict(chosen_states[k])
            fold_models[k] = m.eval()
        return fold_models[k]

    info = {"oof_auroc_by_views": by_views, "out_of_fold_scores": scores,
            "held_out_by": held_out_by,
            "validation": f"{k_folds}-fold cross-fitting by group: every training image scored "
                          "by the fold model that did not see it",
            "folds": k_folds, "fold_images": np.bincount(fold, minlength=k_folds).tolist(),
            "epoch": best + 1, "crops_per_epoch": crops + crops % 2,
            "train_images": len(items), "train_defect_images": int(labels.sum()),
            "val_images": len(items), "val_defect_images": int(labels.sum()),
            "stage_seconds": {
                "fold_training": round(time.perf_counter() - t_start - t_scoring[0], 2),
                "held_out_scoring": round(t_scoring[0], 2)}}
    log.info("cross-fitting: epoch %d chosen (out-of-fold AUROC %.4f%s); %d fold models "
             "averaged", best + 1, history[best]["oof_auroc"],
             f", {by_views[str(views)]:.4f} under {views} views" if views > 1 else "", k_folds)
    return net, cfg, history, chosen, info
