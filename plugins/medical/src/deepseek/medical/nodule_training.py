"""Training of a nodule detector (``lung-nodule-attention`` by default, or any registered
model whose input is a CT patch ``[N, 1, D, H, W]`` and whose output is the centre-heatmap
dict ``heatmap`` / ``size`` / ``offset``) through the core Trainer.

Data: phantom patches generated for the run (:func:`phantom_patch_set`, seeds from the run's
seed) or a LUNA16-layout folder (:class:`Luna16Patches`). Validation: whole-scan detection,
scored by CPM with the official protocol after every epoch, on phantom volumes that no
training patch came from, or, with LUNA16 and ``fold=K``, on the scans of ``subsetK`` while
the patches come from the other subsets (the challenge's ten-fold cross-validation); the best
epoch is kept (``checkpoints/best``) and written as ``model.safetensors`` + ``model.json``.
A fold run then scores every scan of its subset with the kept model and writes them as
``results.csv`` (LUNA16 results), so that the folds' results can be pooled
(:func:`cross_validate`).
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepseek.medical.nodule_data import PatchDataset, centernet_loss, phantom_patch_set

#: what the detector feeds a model: one-channel float CT patches
TASK_INPUTS = [{"dtype": "float32", "shape": [-1, 1, -1, -1, -1]}]
TASK = "nodule detection (CT patches [N, 1, D, H, W] -> heatmap/size/offset)"

log = logging.getLogger(__name__)

VAL_SEED0 = 900_000  # validation phantoms: never used for training patches


def _patches_part(args: tuple[int, int, bool]) -> dict[str, np.ndarray]:
    n, seed, realistic = args
    torch.set_num_threads(1)
    return phantom_patch_set(n, seed, realistic=realistic)


def make_patches(n: int, seed: int, workers: int = 2, realistic: bool = False
                 ) -> dict[str, np.ndarray]:
    """``n`` training patches from fresh phantoms (seeded), made on ``workers`` processes."""
    parts = [(n // workers + (1 if i < n % workers else 0), seed * 1000 + i, realistic)
             for i in range(workers)]
    if workers <= 1:
        chunks = [_patches_part(parts[0])]
    else:
        from deepseek.service import die_with_parent  # (not left rendering alone)

        with concurrent.futures.ProcessPoolExecutor(
                workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
            chunks = list(pool.map(_patches_part, parts))
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def validation_volumes(n: int, size: int = 384, slices: int = 90,
                       spacing: tuple[float, float, float] = (0.9, 0.9, 2.0),
                       seed0: int = VAL_SEED0, prefix: str = "val",
                       realistic: bool = False) -> list:
    """Phantom scans with seeds ``seed0 + i`` (validation: never a training seed)."""
    return list(phantom_scans(n, size, slices, spacing, seed0, prefix, realistic))


def phantom_scans(n: int, size: int = 384, slices: int = 90,
                  spacing: tuple[float, float, float] = (0.9, 0.9, 2.0),
                  seed0: int = VAL_SEED0, prefix: str = "val", realistic: bool = False
                  ) -> Iterator[Any]:
    """:func:`validation_volumes` one at a time (each is rendered when it is reached), with
    the phantom's :meth:`~deepseek.medical.synthetic.ChestPhantom.vessel_landmarks` in the
    metadata (``vessel_landmarks``)."""
    from deepseek.medical.synthetic import ChestPhantom, render_volume

    extent = (slices - 1) * spacing[2]
    for i in range(n):
        ph = ChestPhantom(seed=seed0 + i, n_nodules=8,
                          z_range=(-extent / 2 - 10, extent / 2 + 10), realistic=realistic)
        v = render_volume(ph, spacing, (slices, size, size), seed=seed0 + i)
        v.metadata["series_uid"] = f"{prefix}-{i}"
        v.metadata["vessel_landmarks"] = ph.vessel_landmarks()
        yield v


def hard_negative_set(net: torch.nn.Module, scans: list, n: int, seed: int = 0
                      ) -> dict[str, np.ndarray] | None:
    """Patches around the ``n`` most confident false positives of ``net`` on ``scans``
    (training scans: Volumes with ``nodules`` in their metadata, or :class:`HeldOutScan`): a
    candidate farther than its nodule's radius (at least 5 mm) from every annotated nodule.
    Nodules that fall inside such a patch keep their targets. None when there is none."""
    from deepseek.medical.detector import NoduleDetector
    from deepseek.medical.nodule_data import crop_patch
    from deepseek.medical.nodule_model import WORKING_SPACING

    rng = np.random.default_rng([seed, 4242])
    det = NoduleDetector(net, progress=False, tta_top=0, sizes=0)
    found: list[tuple[float, int, np.ndarray]] = []
    isos, nodules = [], []
    for item in scans:
        v = item.load() if isinstance(item, HeldOutScan) else item
        nods = [(np.asarray(nd["center"], float), float(nd["diameter_mm"]))
                for nd in v.metadata.get("nodules", [])]
        for c in det.detect(v):
            xyz = np.asarray(c["xyz"], float)
            if all(np.linalg.norm(xyz - ctr) > max(d / 2, 5.0) for ctr, d in nods):
                found.append((float(c["probability"]), len(isos), xyz))
        isos.append(v.resample([WORKING_SPACING] * 3))
        nodules.append(nods)
        del v
    found.sort(key=lambda f: -f[0])
    if not found:
        return None
    out: dict[str, list] = {k: [] for k in ("x", "heatmap", "size", "offset", "mask")}
    for i in range(n):  # cycle through the most confident ones when there are fewer than n
        _, k, xyz = found[i % min(len(found), n)]
        x, t = crop_patch(isos[k], xyz + rng.uniform(-4, 4, 3), nodules[k], rng)
        out["x"].append(x)
        for key in ("heatmap", "size", "offset", "mask"):
            out[key].append(t[key])
    log.info("hard negatives: %d patches around the %d most confident of %d false positives",
             n, min(len(found), n), len(found))
    return {k: np.stack(v) for k, v in out.items()}


MINE_SEED0 = 2_000_000  # mining phantoms: apart from training, validation and benchmark seeds


@dataclass
class HeldOutScan:
    """A validation scan read when it is scored (LUNA16 scans are too large to keep many in
    memory): its series UID, file, and annotated nodules (``center`` xyz mm,
    ``diameter_mm``)."""

    uid: str
    path: Path
    nodules: list[dict[str, Any]] = field(default_factory=list)

    def load(self) -> Any:
        """Read the scan as a volume tagged with its series UID."""
        from deepseek.medical.volume import read_volume

        vol = read_volume(self.path)
        vol.metadata["series_uid"] = self.uid
        vol.metadata["nodules"] = self.nodules
        return vol


def evaluate_volumes(net: torch.nn.Module, volumes: list, *,
                     excluded: list[dict] | None = None,
                     results: list[dict] | None = None, **detector_opts: Any) -> dict:
    """CPM (official protocol) of ``net`` over ``volumes`` (Volumes with ``nodules`` in
    their metadata, or :class:`HeldOutScan`, read one at a time). The candidates are
    appended to ``results`` when it is given."""
    from deepseek.evaluation import evaluate
    from deepseek.medical.detector import NoduleDetector

    det = NoduleDetector(net, progress=False, **{"sizes": 0, **detector_opts})
    ann, res, uids = [], [], []
    for item in volumes:
        v = item.load() if isinstance(item, HeldOutScan) else item
        sid = v.metadata["series_uid"]
        uids.append(sid)
        for nod in v.metadata["nodules"]:
            ann.append({"seriesuid": sid, "xyz": tuple(nod["center"]),
                        "diameter_mm": nod["diameter_mm"]})
        res.extend(det.detect(v, series_uid=sid))
        del v
    if results is not None:
        results.extend(res)
    r = evaluate("luna16-froc", res, ann, scans=uids, excluded=excluded, bootstrap=0)
    return {"val_cpm": r["cpm"], "val_max_sensitivity": r["max_sensitivity"],
            "val_fps_per_scan": r["fps_per_scan_total"]}


def luna16_folds(root: str | Path) -> dict[int, list[Path]]:
    """The scans of a LUNA16-layout folder by subset number: ``{K: [subsetK/*.mhd]}``."""
    out: dict[int, list[Path]] = {}
    for f in sorted(Path(root).glob("subset*/*.mhd")):
        m = re.fullmatch(r"subset(\d+)", f.parent.name)
        if m:
            out.setdefault(int(m.group(1)), []).append(f)
    return out


def held_out_scans(root: str | Path, fold: int) -> tuple[list[HeldOutScan], list[str]]:
    """The scans of ``subset{fold}`` with their annotations, and the series UIDs of the other
    subsets (the training scans)."""
    from deepseek.medical.errors import MedicalError
    from deepseek.medical.nodule_data import read_luna16_annotations

    folds = luna16_folds(root)
    if fold not in folds:
        raise MedicalError(f"--fold {fold}: {root} has no subset{fold}/*.mhd (subsets found: "
                           f"{', '.join(map(str, sorted(folds))) or 'none'})")
    if len(folds) < 2:
        raise MedicalError(f"--fold {fold}: {root} has only subset{fold}; a fold trains on the "
                           "other subsets")
    ann_path = Path(root) / "annotations.csv"
    ann = read_luna16_annotations(ann_path) if ann_path.is_file() else {}
    held = [HeldOutScan(f.stem, f, [{"center": tuple(c), "diameter_mm": d}
                                    for c, d in ann.get(f.stem, [])])
            for f in folds[fold]]
    train_ids = [f.stem for k, fs in folds.items() if k != fold for f in fs]
    return held, train_ids


def _excluded(root: str | Path) -> list[dict] | None:
    from deepseek.medical.metrics import read_annotations

    p = Path(root) / "annotations_excluded.csv"
    return read_annotations(p) if p.is_file() else None


def _check_outputs(net: torch.nn.Module, name: str) -> None:
    """The detector reads ``heatmap``, ``size`` and ``offset`` at half the input size."""
    from deepseek.medical.errors import MedicalError

    net.eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 1, 32, 32, 32))
    net.train()
    want = {"heatmap": 1, "size": 1, "offset": 3}
    if not isinstance(out, dict) or any(k not in out for k in want):
        raise MedicalError(f"model {name!r} does not fit {TASK}: it returns "
                           f"{type(out).__name__}, not a dict with {sorted(want)}")
    for k, c in want.items():
        if out[k].ndim != 5 or out[k].shape[1] != c:
            raise MedicalError(f"model {name!r}: output {k!r} has shape "
                               f"{tuple(out[k].shape)}; expected [N, {c}, d, h, w]")


def train_detector(out_dir: str | Path, *, luna16: str | Path | None = None,
                   n_patches: int = 2400, epochs: int = 3, batch_size: int = 8,
                   lr: float = 2e-3, seed: int = 0, val_scans: int | None = None,
                   fold: int | None = None, hard_negatives: int | None = None,
                   mine_scans: int = 2, accum_steps: int = 1,
                   amp: bool = False, resume: bool = False, base: int | None = None,
                   init: str | Path | None = None, workers: int = 2,
                   progress: bool | None = None, model: str = "lung-nodule-attention",
                   realistic: bool = False, **config: Any) -> dict[str, Any]:
    """Train ``model`` (any registered model that fits the task) and write
    ``out_dir/model.safetensors``.

    ``val_scans``: validation scans scored after each epoch (phantoms: 2 by default; with
    ``fold``: the first N scans of the held-out subset, all by default; 0: none). ``fold``
    (LUNA16 only): train on every subset but ``subset{fold}`` and validate on it.

    ``realistic``: phantom training patches, validation and mining scans from
    ``ChestPhantom(realistic=True)`` (vessel tree, bronchi, fissures, texture).

    ``hard_negatives``: after the first epoch the model runs on ``mine_scans`` training
    scans (phantoms with seeds of their own, or LUNA16 training scans) and that many patches
    around its most confident false positives join the training set for the epochs after
    (default: a quarter of ``n_patches`` when there are at least 2 epochs; 0: off).

    ``base`` (and any ``config``) override the model's default configuration. ``init``
    starts from existing weights (a registry name such as ``"lung-nodule-attention"`` or a
    ``.safetensors`` path) instead of a random initialisation: fine-tuning on fresh patches
    with a smaller ``lr``.
    """
    from deepseek.loader import build_registered, require_fit, save_model
    from deepseek.train import Trainer

    require_fit(model, TASK, TASK_INPUTS)
    if base is not None:
        config["base"] = base
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net, cfg = build_registered(model, pretrained=False, **config)
    _check_outputs(net, model)
    if init is not None:
        from deepseek.loader import ModelLoader

        src = ModelLoader.load(str(init), device="cpu")
        try:
            net.load_state_dict(src.module.state_dict())
        except RuntimeError as exc:
            from deepseek.medical.errors import MedicalError

            raise MedicalError(f"--init {init}: weights do not fit {model} with config "
                               f"{cfg}: {exc}") from exc
        log.info("initialised from %s", init)
    # the data come after the model checks: a wrong --model or --init fails at once
    t0 = time.perf_counter()
    held: list[HeldOutScan] = []
    excluded = None
    if fold is not None and luna16 is None:
        from deepseek.medical.errors import MedicalError

        raise MedicalError("--fold needs --luna16 (the folds are LUNA16's subsets)")
    if luna16 is not None:
        from deepseek.medical.nodule_data import Luna16Patches

        train_ids = None
        if fold is not None:
            held, train_ids = held_out_scans(luna16, fold)
            excluded = _excluded(luna16)
            log.info("fold %d: training on %d scans, validating on the %d of subset%d",
                     fold, len(train_ids), len(held), fold)
        luna = Luna16Patches(luna16, series=train_ids)
        arrays = luna.arrays(n_patches, seed=seed)
        ann = luna.annotations
        pick = np.random.default_rng([seed, 17]).permutation(sorted(luna.files))[:mine_scans]
        mining: list = [HeldOutScan(uid, luna.files[uid],
                                    [{"center": tuple(c), "diameter_mm": d}
                                     for c, d in ann.get(uid, [])]) for uid in pick]
    else:
        arrays = make_patches(n_patches, seed, workers, realistic=realistic)
        mining = []  # rendered when needed: phantom scans cost seconds each
    log.info("%d training patches (%d with a nodule peak) in %.0f s", len(arrays["x"]),
             int((arrays["mask"].sum(axis=(1, 2, 3)) > 0).sum()), time.perf_counter() - t0)
    if fold is not None:
        val: list = held if val_scans is None else held[:val_scans]
    else:
        n_val = 2 if val_scans is None else val_scans
        val = validation_volumes(n_val, realistic=realistic) if n_val else []
    n_hard = (n_patches // 4 if epochs >= 2 else 0) if hard_negatives is None \
        else hard_negatives
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    n0 = len(arrays["x"])
    steps = int(np.ceil(n0 / batch_size / accum_steps)) + (epochs - 1) * int(
        np.ceil((n0 + (n_hard if mine_scans else 0)) / batch_size / accum_steps))
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
            return evaluate_volumes(model, volumes, excluded=excluded)
        finally:
            model.train()

    trainer = Trainer(net, opt, step_fn=step_fn, accum_steps=accum_steps, amp=amp,
                      scheduler=sched, checkpoint_dir=out / "checkpoints", progress=progress,
                      architecture=model, config=cfg,
                      device="cpu" if not torch.cuda.is_available() else "auto")
    fit = dict(batch_size=batch_size, val_data=val if val else None,
               eval_fn=eval_fn if val else None, best_metric="val_cpm" if val else "train_loss",
               mode="max" if val else "min")
    mined = 0
    if n_hard and mine_scans and epochs >= 2:
        trainer.fit(PatchDataset(arrays), epochs=1, resume=resume, **fit)
        if not mining:
            mining = validation_volumes(mine_scans, seed0=MINE_SEED0 + 1000 * seed,
                                        prefix="mine", realistic=realistic)
        net.eval()
        try:
            hard = hard_negative_set(net, mining, n_hard, seed)
        finally:
            net.train()
        if hard is not None:
            arrays = {k: np.concatenate([arrays[k], hard[k]]) for k in arrays}
            mined = len(hard["x"])
        resume = False
    history = trainer.fit(PatchDataset(arrays), epochs=epochs, resume=resume, **fit)
    best = out / "checkpoints" / "best"
    if best.is_dir():
        trainer.load_checkpoint(best)
    path = save_model(net, out / "model.safetensors", architecture=model, config=cfg)
    summary: dict[str, Any] = {"model": str(path), "history": history,
                               "hard_negatives": mined}
    if fold is not None:  # the kept model on every scan of the held-out subset
        from deepseek.medical.metrics import write_results

        net.eval()
        rows: list[dict] = []
        with torch.no_grad():
            summary["fold"] = {"fold": fold, "scans": [h.uid for h in held],
                               **evaluate_volumes(net, held, excluded=excluded, results=rows)}
        summary["fold"]["results"] = str(write_results(rows, out / "results.csv"))
    summary["seconds"] = time.perf_counter() - t0
    (out / "training.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def cross_validate(out_dir: str | Path, luna16: str | Path, folds: list[int] | None = None,
                   **options: Any) -> dict[str, Any]:
    """Train one model per fold (``out_dir/fold{K}``), each validated on its subset, then
    pool every fold's results on its own held-out scans into one FROC with the official
    protocol (as the challenge scored submissions), beside the mean of the folds' CPMs."""
    from deepseek.evaluation import evaluate
    from deepseek.medical.metrics import read_results

    all_folds = sorted(luna16_folds(luna16))
    chosen = all_folds if folds is None else folds
    per_fold, results, ann, scans = [], [], [], []
    for k in chosen:
        log.info("cross-validation: fold %d of %s", k, chosen)
        res = train_detector(Path(out_dir) / f"fold{k}", luna16=luna16, fold=k, **options)
        per_fold.append({"fold": k, "cpm": res["fold"]["val_cpm"],
                         "max_sensitivity": res["fold"]["val_max_sensitivity"],
                         "model": res["model"]})
        results += read_results(res["fold"]["results"])
        held, _ = held_out_scans(luna16, k)
        scans += [h.uid for h in held]
        ann += [{"seriesuid": h.uid, "xyz": n["center"], "diameter_mm": n["diameter_mm"]}
                for h in held for n in h.nodules]
    pooled = evaluate("luna16-froc", results, ann, scans=scans, excluded=_excluded(luna16),
                      bootstrap=1000)
    summary = {"folds": per_fold,
               "mean_fold_cpm": float(np.mean([f["cpm"] for f in per_fold])),
               "pooled": {k: pooled[k] for k in ("cpm", "ci95", "sensitivity_at_fps",
                                                 "max_sensitivity", "n_scans", "n_nodules",
                                                 "protocol")}}
    (Path(out_dir) / "cross_validation.json").write_text(
        json.dumps(summary, indent=2, default=str))
    return summary
