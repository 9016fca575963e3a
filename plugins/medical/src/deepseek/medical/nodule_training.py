"""Training of ``lung-nodule-attention`` through the core Trainer.

Data: phantom patches generated for the run (:func:`phantom_patch_set`, seeds from the run's
seed) or a LUNA16-layout folder (:class:`Luna16Patches`). Validation: whole-scan detection on
phantom volumes that no training patch came from, scored by CPM after every epoch; the best
epoch is kept (``checkpoints/best``) and written as ``model.safetensors`` + ``model.json``.
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

from deepseek.medical.froc import froc
from deepseek.medical.nodule_data import PatchDataset, centernet_loss, phantom_patch_set
from deepseek.medical.nodule_model import build

log = logging.getLogger(__name__)

VAL_SEED0 = 900_000  # validation phantoms: never used for training patches


def _patches_part(args: tuple[int, int]) -> dict[str, np.ndarray]:
    n, seed = args
    torch.set_num_threads(1)
    return phantom_patch_set(n, seed)


def make_patches(n: int, seed: int, workers: int = 2) -> dict[str, np.ndarray]:
    parts = [(n // workers + (1 if i < n % workers else 0), seed * 1000 + i)
             for i in range(workers)]
    if workers <= 1:
        chunks = [_patches_part(parts[0])]
    else:
        with concurrent.futures.ProcessPoolExecutor(workers) as pool:
            chunks = list(pool.map(_patches_part, parts))
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def validation_volumes(n: int, size: int = 384, slices: int = 90,
                       spacing: tuple[float, float, float] = (0.9, 0.9, 2.0)) -> list:
    from deepseek.medical.phantom import ChestPhantom, render_volume

    vols = []
    extent = (slices - 1) * spacing[2]
    for i in range(n):
        ph = ChestPhantom(seed=VAL_SEED0 + i, n_nodules=8,
                          z_range=(-extent / 2 - 10, extent / 2 + 10))
        v = render_volume(ph, spacing, (slices, size, size), seed=VAL_SEED0 + i)
        v.metadata["series_uid"] = f"val-{i}"
        vols.append(v)
    return vols


def evaluate_volumes(net: torch.nn.Module, volumes: list, **detector_opts: Any) -> dict:
    from deepseek.medical.detector import NoduleDetector

    det = NoduleDetector(net, progress=False, **detector_opts)
    ann, res = [], []
    for v in volumes:
        sid = v.metadata["series_uid"]
        for nod in v.metadata["nodules"]:
            ann.append({"seriesuid": sid, "xyz": tuple(nod["center"]),
                        "diameter_mm": nod["diameter_mm"]})
        res.extend(det.detect(v, series_uid=sid))
    r = froc(ann, res, scans=[v.metadata["series_uid"] for v in volumes], bootstrap=0)
    return {"val_cpm": r.cpm, "val_max_sensitivity": r.max_sensitivity,
            "val_fps_per_scan": r.n_false_positives / max(r.n_scans, 1)}


def train_detector(out_dir: str | Path, *, luna16: str | Path | None = None,
                   n_patches: int = 2400, epochs: int = 3, batch_size: int = 8,
                   lr: float = 2e-3, seed: int = 0, val_scans: int = 2, accum_steps: int = 1,
                   amp: bool = False, resume: bool = False, base: int = 12,
                   init: str | Path | None = None, workers: int = 2,
                   progress: bool | None = None) -> dict[str, Any]:
    """Train and write ``out_dir/model.safetensors``.

    ``init`` starts from existing weights (a registry name such as
    ``"lung-nodule-attention"`` or a ``.safetensors`` path) instead of a random
    initialisation: fine-tuning on fresh patches with a smaller ``lr``.
    """
    from deepseek.loader import save_model
    from deepseek.train import Trainer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    if luna16 is not None:
        from deepseek.medical.nodule_data import Luna16Patches

        arrays = Luna16Patches(luna16).arrays(n_patches, seed=seed)
    else:
        arrays = make_patches(n_patches, seed, workers)
    log.info("%d training patches (%d with a nodule peak) in %.0f s", len(arrays["x"]),
             int((arrays["mask"].sum(axis=(1, 2, 3)) > 0).sum()), time.perf_counter() - t0)
    val = validation_volumes(val_scans) if val_scans else []
    net = build(base=base)
    if init is not None:
        from deepseek.loader import ModelLoader

        src = ModelLoader.load(str(init), device="cpu")
        try:
            net.load_state_dict(src.module.state_dict())
        except RuntimeError as exc:
            raise ValueError(f"--init {init}: weights do not fit lung-nodule-attention "
                             f"with base={base}: {exc}") from exc
        log.info("initialised from %s", init)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * int(np.ceil(len(arrays["x"]) / batch_size / accum_steps))
    warm = max(1, int(0.15 * steps))

    def schedule(step: int) -> float:
        """Linear warm-up, then cosine decay; a function of the planned steps only, so a
        resumed run with more epochs stretches the schedule instead of failing."""
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, steps - warm))
        return 0.5 * (1 + math.cos(math.pi * t)) + 1e-3

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)

    def step_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return centernet_loss(model(batch["x"]), batch)

    def eval_fn(model: torch.nn.Module, volumes: list) -> dict[str, float]:
        if not volumes:
            return {}
        model.eval()
        try:
            return evaluate_volumes(model, volumes)
        finally:
            model.train()

    trainer = Trainer(net, opt, step_fn=step_fn, accum_steps=accum_steps, amp=amp,
                      scheduler=sched, checkpoint_dir=out / "checkpoints", progress=progress,
                      architecture="lung-nodule-attention", config={"base": base},
                      device="cpu" if not torch.cuda.is_available() else "auto")
    history = trainer.fit(PatchDataset(arrays), epochs=epochs, batch_size=batch_size,
                          val_data=val if val else None, eval_fn=eval_fn if val else None,
                          best_metric="val_cpm" if val else "train_loss",
                          mode="max" if val else "min", resume=resume)
    best = out / "checkpoints" / "best"
    if best.is_dir():
        trainer.load_checkpoint(best)
    path = save_model(net, out / "model.safetensors", architecture="lung-nodule-attention",
                      config={"base": base})
    summary = {"model": str(path), "history": history, "seconds": time.perf_counter() - t0}
    (out / "training.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
