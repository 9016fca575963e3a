"""Training of ``defect-3dcnn-lstm`` through the core Trainer.

Data:

- *synthetic* (default): short clips (``frames`` x ``height`` x ``width``) cut from the
  synthetic line, each with its own seed, surface, speed, light and distractors; about 60% of
  them show a crack. Targets per frame: defect flag (frames that show only a sliver of a crack
  are left out of the loss) and the crack map at the model's 16-pixel cells.
- *image folder* with ``good/`` and ``defect/`` subfolders: each image becomes a clip of the
  image sliding by a few pixels per frame (a part passing the camera); the frame flag is the
  folder, and there is no map target (the frame logit includes the map's maximum, so the map
  still learns where the evidence is).

Validation after every epoch: full-size synthetic videos from seeds that no training clip uses
(``VAL_SEED0``), scored by frame log-loss (which picks the best epoch: it keeps improving after
average precision saturates), average precision, recall and false-detection rate at 0.5.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from deepseek.manufacturing.errors import ManufacturingError
from deepseek.manufacturing.model import STRIDE, DefectNet

log = logging.getLogger(__name__)

VAL_SEED0 = 800_000     # validation videos
BENCH_SEED0 = 700_000   # benchmark / pipeline videos: never used for training or validation


def synthetic_clip(seed: int, frames: int = 16, height: int = 128, width: int = 160
                   ) -> dict[str, np.ndarray]:
    """One training clip: ``x`` uint8 (T, H, W), ``y`` (T,), ``w`` (T,) loss weights and
    ``map`` (T, H/16, W/16) crack cells."""
    from deepseek.manufacturing.synthetic import SyntheticLine

    rng = np.random.default_rng([seed, 7])
    has_crack = rng.random() < 0.6
    extent_mm = (height + 8 * frames) * 0.1
    line = SyntheticLine(
        seed=seed, frames=frames, height=height, width=width,
        crack_spacing_mm=30.0 if has_crack else math.inf,
        first_crack_mm=float(rng.uniform(0, extent_mm)),
        scratches_per_m=float(rng.uniform(20, 120)), stains_per_m=float(rng.uniform(5, 60)),
        dust_per_cm2=float(rng.uniform(0.2, 2.0)), light_drift=float(rng.uniform(0.02, 0.3)))
    x = np.stack([line.frame(i) for i in range(frames)])
    truth = [line.truth(i) for i in range(frames)]
    y = np.array([t["defect"] for t in truth], np.float32)
    w = np.array([0.0 if t["partial"] else 1.0 for t in truth], np.float32)
    m = np.stack([line.crack_mask(i, STRIDE) for i in range(frames)]).astype(np.float32)
    return {"x": x, "y": y, "w": w, "map": m, "mw": np.ones(1, np.float32)}


def _clips_part(args: tuple[list[int], int, int, int]) -> dict[str, np.ndarray]:
    seeds, frames, height, width = args
    clips = [synthetic_clip(s, frames, height, width) for s in seeds]
    return {k: np.stack([c[k] for c in clips]) for k in clips[0]}


def make_clips(n: int, seed: int, frames: int = 16, height: int = 128, width: int = 160,
               workers: int = 2) -> dict[str, np.ndarray]:
    seeds = [seed * 1_000_000 + i for i in range(n)]
    parts = [(seeds[i::workers], frames, height, width) for i in range(workers)]
    if workers <= 1:
        chunks = [_clips_part(parts[0])]
    else:
        with concurrent.futures.ProcessPoolExecutor(workers) as pool:
            chunks = list(pool.map(_clips_part, parts))
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def folder_clips(root: str | Path, frames: int = 16, height: int = 128, width: int = 160,
                 per_image: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """Clips from an inspection image folder with ``good/`` and ``defect/`` subfolders."""
    import cv2

    from deepseek.manufacturing.sources import IMAGE_SUFFIXES, list_images, to_gray

    root = Path(root)
    folders = {"good": 0.0, "defect": 1.0}
    missing = [f for f in folders if not (root / f).is_dir()]
    if missing:
        raise ManufacturingError(f"{root}: missing subfolder(s) {', '.join(missing)}; an image "
                                 "folder for training needs good/ and defect/")
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for name, label in folders.items():
        files = list_images(root / name)
        if not files:
            raise ManufacturingError(f"{root / name}: no images "
                                     f"({', '.join(sorted(IMAGE_SUFFIXES))})")
        for p in files:
            img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            if img is None or img.size == 0:
                raise ManufacturingError(f"{p}: OpenCV cannot read this image; re-save it as "
                                         "PNG or remove it")
            img = to_gray(img, str(p))
            if img.shape[0] < height + frames or img.shape[1] < width:
                img = cv2.resize(img, (max(width, img.shape[1]),
                                       max(height + frames * 2, img.shape[0])))
            for _ in range(per_image):
                step = int(rng.integers(0, 3))
                y0 = int(rng.integers(0, img.shape[0] - height - step * (frames - 1) + 1))
                x0 = int(rng.integers(0, img.shape[1] - width + 1))
                xs.append(np.stack([img[y0 + k * step:y0 + k * step + height, x0:x0 + width]
                                    for k in range(frames)]))
                ys.append(label)
    n = len(xs)
    h, w = height // STRIDE, width // STRIDE
    return {"x": np.stack(xs), "y": np.repeat(np.array(ys, np.float32)[:, None], frames, 1),
            "w": np.ones((n, frames), np.float32),
            "map": np.zeros((n, frames, h, w), np.float32), "mw": np.zeros((n, 1), np.float32)}


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
    logits, maps, _ = model(batch["x"])
    w = batch["w"]
    frame = (F.binary_cross_entropy_with_logits(logits, batch["y"], reduction="none") * w
             ).sum() / w.sum().clamp(min=1)
    tm = batch["map"]
    cell = F.binary_cross_entropy_with_logits(maps, tm, reduction="none",
                                              pos_weight=torch.tensor(4.0))
    mw = batch["mw"].view(-1, 1, 1, 1)
    cell = (cell * mw).sum() / (mw.sum() * cell[0].numel()).clamp(min=1)
    return frame + 4.0 * cell


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(-scores, kind="stable")
    lab = labels[order].astype(bool)
    if not lab.any():
        return float("nan")
    tp = np.cumsum(lab)
    precision = tp / np.arange(1, len(lab) + 1)
    return float(precision[lab].mean())


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


def validation_lines(n: int, frames: int = 400) -> list:
    from deepseek.manufacturing.synthetic import SyntheticLine

    return [SyntheticLine(seed=VAL_SEED0 + i, frames=frames) for i in range(n)]


def evaluate_lines(model: DefectNet, lines: list, threshold: float = 0.5) -> dict[str, float]:
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


def train_model(out_dir: str | Path, *, folder: str | Path | None = None, clips: int = 1600,
                frames: int = 16, height: int = 128, width: int = 160, epochs: int = 4,
                batch_size: int = 8, lr: float = 3e-3, seed: int = 0, val_videos: int = 2,
                accum_steps: int = 1, amp: bool = False, resume: bool = False,
                config: dict[str, Any] | None = None, workers: int = 2,
                progress: bool | None = None, model: str = "defect-3dcnn-lstm"
                ) -> dict[str, Any]:
    """Train ``model`` (``defect-3dcnn-lstm``, or any registered model that fits the task:
    uint8 clips ``[N, T, H, W]`` in, ``(frame logits [N, T], maps [N, T, h, w], state)`` out)
    and write ``out_dir/model.safetensors`` (+ ``.json``)."""
    from deepseek.loader import build_registered, require_fit, save_model
    from deepseek.train import Trainer

    require_fit(model, TASK, TASK_INPUTS)
    if height % STRIDE or width % STRIDE:
        raise ManufacturingError(f"clip size {width}x{height}: both must be multiples of "
                                 f"{STRIDE}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    np.random.seed(seed)
    t0 = time.perf_counter()
    if folder is not None:
        arrays = folder_clips(folder, frames, height, width, seed=seed)
    else:
        arrays = make_clips(clips, seed, frames, height, width, workers)
    log.info("%d training clips (%d defect frames of %d) in %.0f s", len(arrays["x"]),
             int(arrays["y"].sum()), arrays["y"].size, time.perf_counter() - t0)
    val = validation_lines(val_videos) if val_videos else []
    net, cfg = build_registered(model, pretrained=False, **(config or {}))
    _check_outputs(net, model)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * int(np.ceil(len(arrays["x"]) / batch_size / accum_steps))
    warm = max(1, int(0.1 * steps))

    def schedule(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, steps - warm))
        return 0.5 * (1 + math.cos(math.pi * t)) + 1e-3

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)

    def eval_fn(model: torch.nn.Module, lines: list) -> dict[str, float]:
        try:
            return evaluate_lines(model, lines)  # type: ignore[arg-type]
        finally:
            model.train()

    trainer = Trainer(net, opt, step_fn=clip_loss, accum_steps=accum_steps, amp=amp,
                      scheduler=sched, checkpoint_dir=out / "checkpoints", progress=progress,
                      grad_clip=5.0, architecture=model, config=cfg,
                      device="cpu" if not torch.cuda.is_available() else "auto")
    history = trainer.fit(ClipDataset(arrays), epochs=epochs, batch_size=batch_size,
                          val_data=val or None, eval_fn=eval_fn if val else None,
                          best_metric="val_bce" if val else "train_loss", mode="min",
                          resume=resume)
    best = out / "checkpoints" / "best"
    if best.is_dir():
        trainer.load_checkpoint(best)
    path = save_model(net, out / "model.safetensors", architecture=model, config=cfg)
    summary = {"model": str(path), "history": history, "seconds": time.perf_counter() - t0,
               "data": "folder" if folder is not None else "synthetic",
               "clips": len(arrays["x"]), "clip_shape": [frames, height, width]}
    (out / "training.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
