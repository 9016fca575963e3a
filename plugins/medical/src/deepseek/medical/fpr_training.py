"""Training of the false-positive reduction stage (``nodule-fpr-3dcnn``) on the detector's
own candidates.

Data: phantom scans that neither the detector's training nor any benchmark used (seeds of
their own). The detector (the packaged one, or ``detector=``) runs on each; every candidate
becomes a cube of ``FPR_CROP + 2 * MARGIN`` mm around it, labelled with the LUNA16 hit rule:

* a nodule when it lies within an annotated nodule's radius;
* not a nodule when it lies more than ``AMBIGUOUS_MM`` beyond every nodule's radius;
* left out in between (a cube that shows part of a nodule off its centre teaches nothing
  clean).

Each annotated nodule also gives a cube at its true centre, so that nodules the detector
ranks low still teach the classifier, and up to ``VESSEL_NEGATIVES`` places per scan on the
phantom's thick vessels (branchings and cross-sections of vessels of 1 mm radius or more, near
the hila and the mediastinum: :meth:`~deepseek.medical.synthetic.ChestPhantom.vessel_landmarks`)
give cubes labelled not a nodule, by the same rule, whatever the detector made of them: the
look-alikes a real lung is full of, taught even where this detector happens to stay quiet.

Training: random ``FPR_CROP`` cubes inside the margin (the candidate moves by up to
``MARGIN`` mm), random flips and in-plane transposition, class-balanced binary cross-entropy,
the core Trainer. Validation, after every epoch: the
detector's candidates (with its flip TTA, as the detector reports them) on validation scans
are re-scored (:func:`~deepseek.medical.detector.second_stage_probability`) and the CPM with
the official protocol is compared with the detector alone; the best epoch is kept.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from deepseek.medical.nodule_grid import FPR_CROP, WORKING_SPACING
from deepseek.medical.nodule_training import HeldOutScan, phantom_scans

log = logging.getLogger(__name__)

MARGIN = 3  # mm of shift a training cube may take around its candidate
AMBIGUOUS_MM = 3.0  # candidates this far beyond a nodule's radius are left out
VESSEL_NEGATIVES = 32  # vessel landmarks per training scan taught as negatives
FPR_SEED0 = 3_000_000  # training scans of the second stage (validation: + 500000)
TASK = "nodule candidate classification (cubes [N, 1, 32, 32, 32] -> nodule logit)"


def _windowed(iso: Any) -> np.ndarray:
    from deepseek.medical.nodule_data import _norm

    return _norm(np.asarray(iso.array, np.float32)).astype(np.float32)


def label_candidates(cands: list[dict], nodules: list[tuple[np.ndarray, float]]
                     ) -> np.ndarray:
    """1 (within a nodule's radius), 0 (more than ``AMBIGUOUS_MM`` beyond every radius) or
    -1 (in between) for each candidate."""
    out = np.zeros(len(cands), np.int8)
    for i, c in enumerate(cands):
        xyz = np.asarray(c["xyz"], float)
        for ctr, d in nodules:
            dist = float(np.linalg.norm(xyz - ctr))
            if dist <= d / 2:
                out[i] = 1
                break
            if dist <= d / 2 + AMBIGUOUS_MM:
                out[i] = -1
        # a hit on one nodule wins over the margin of another
    return out


def _detected(detector: Any, scans: Any
              ) -> Iterator[tuple[str, list, list[dict], Any, list[dict]]]:
    """For each scan (a Volume with ``nodules`` in its metadata, or :class:`HeldOutScan`,
    read one at a time): its series UID, nodules (centre, diameter), the detector's
    candidates, the scan on the 1 mm working grid and its ``vessel_landmarks`` (phantoms;
    none for other scans)."""
    for item in scans:
        v = item.load() if isinstance(item, HeldOutScan) else item
        sid = v.metadata.get("series_uid") or "scan"
        nods = [(np.asarray(nd["center"], float), float(nd["diameter_mm"]))
                for nd in v.metadata.get("nodules", [])]
        marks = list(v.metadata.get("vessel_landmarks", []))
        found = detector.detect(v, series_uid=sid)
        iso = v.resample([WORKING_SPACING] * 3)
        del v
        yield sid, nods, found, iso, marks


def vessel_negatives(marks: list[dict], nodules: list[tuple[np.ndarray, float]], iso: Any,
                     n: int, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """Up to ``n`` of ``marks`` (vessel landmarks: ``xyz`` in world mm), drawn at random
    without repeats, that lie inside ``iso`` and that the LUNA16 rule of
    :func:`label_candidates` calls not a nodule (more than ``AMBIGUOUS_MM`` beyond every
    nodule's radius)."""
    if n <= 0 or not marks:
        return []
    pts = [m["xyz"] for m in marks]
    lab = label_candidates([{"xyz": q} for q in pts], nodules)
    idx = iso.world_to_voxel(np.asarray(pts, float))  # (n, 3), all points in one solve
    inside = np.all((idx >= 0) & (idx <= np.asarray(iso.shape) - 1), axis=1)
    ok = [i for i in range(len(pts)) if lab[i] == 0 and inside[i]]
    pick = rng.permutation(len(ok))[:n]
    return [tuple(float(v) for v in pts[ok[i]]) for i in sorted(pick)]


def _cubes(iso: Any, points: list, n: int) -> np.ndarray:
    """Windowed ``n``-voxel cubes of ``iso`` around world points (x, y, z mm)."""
    from deepseek.medical.detector import crop_cubes

    vox = np.array([iso.world_to_voxel(q) for q in points]).reshape(-1, 3)
    return crop_cubes(_windowed(iso), vox, n)


def candidate_cubes(detector: Any, scans: Any, *, centres: bool = True,
                    margin: int = MARGIN, vessels: int = 0, seed: int = 0
                    ) -> dict[str, np.ndarray]:
    """Cubes (float16, edge ``FPR_CROP + 2 * margin``) around ``detector``'s candidates on
    ``scans`` (Volumes with ``nodules`` in their metadata, or :class:`HeldOutScan`), with
    labels (1/0; ambiguous ones left out), the detector's probability (-1 for a nodule's own
    centre cube, -2 for a vessel landmark's) and the scan's index. ``vessels``: up to that
    many of each scan's ``vessel_landmarks`` (:func:`vessel_negatives`, drawn with ``seed``)
    added as negatives."""
    n = FPR_CROP + 2 * margin
    rng = np.random.default_rng([seed, 29])
    xs, ys, ps, ks = [], [], [], []
    for k, (_, nods, cands, iso, marks) in enumerate(_detected(detector, scans)):
        lab = label_candidates(cands, nods)
        keep = [i for i in range(len(cands)) if lab[i] >= 0]
        pts = [cands[i]["xyz"] for i in keep]
        y = [int(lab[i]) for i in keep]
        p = [float(cands[i]["probability"]) for i in keep]
        if centres:
            pts += [tuple(ctr) for ctr, _ in nods]
            y += [1] * len(nods)
            p += [-1.0] * len(nods)
        extra = vessel_negatives(marks, nods, iso, vessels, rng)
        pts += extra
        y += [0] * len(extra)
        p += [-2.0] * len(extra)
        if pts:
            xs.append(_cubes(iso, pts, n).astype(np.float16))
            ys.extend(y)
            ps.extend(p)
            ks.extend([k] * len(pts))
        log.info("scan %d: %d candidates (%d nodules, %d left out), %d nodule centres, "
                 "%d vessel landmarks", k, len(cands), int((lab == 1).sum()),
                 int((lab < 0).sum()), len(nods) if centres else 0, len(extra))
    if not xs:
        from deepseek.medical.errors import MedicalError

        raise MedicalError("the detector found no candidates on the training scans")
    return {"x": np.concatenate(xs), "y": np.asarray(ys, np.float32),
            "p": np.asarray(ps, np.float32), "scan": np.asarray(ks, np.int32)}


class CubeDataset(Dataset):
    """Cubes from :func:`candidate_cubes`: a random (training) or the centre ``FPR_CROP``
    cube, flipped and transposed at random when training."""

    def __init__(self, arrays: dict[str, np.ndarray], train: bool, seed: int = 0) -> None:
        self.a, self.train = arrays, train
        self.margin = (arrays["x"].shape[1] - FPR_CROP) // 2
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.a["x"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        m, c = self.margin, FPR_CROP
        if self.train:
            oz, oy, ox = self.rng.integers(0, 2 * m + 1, 3)
        else:
            oz = oy = ox = m
        x = self.a["x"][i, oz:oz + c, oy:oy + c, ox:ox + c].astype(np.float32)
        if self.train:
            for ax in range(3):
                if self.rng.random() < 0.5:
                    x = np.flip(x, ax)
            if self.rng.random() < 0.5:
                x = x.transpose(0, 2, 1)
        return {"x": torch.from_numpy(np.ascontiguousarray(x))[None],
                "y": torch.tensor([self.a["y"][i]], dtype=torch.float32)}


def cube_logits(module: torch.nn.Module, x: np.ndarray, batch: int = 64) -> np.ndarray:
    """The second stage's nodule logit for each centre cube of ``x`` ``[N, D, H, W]``, in
    batches of ``batch`` (the module as it is: put it in eval mode first)."""
    if not len(x):
        return np.zeros(0, np.float32)
    with torch.inference_mode():
        return np.concatenate([module(torch.from_numpy(x[i:i + batch])[:, None])["nodule"]
                               .float().numpy()[:, 0] for i in range(0, len(x), batch)])


def rescored(candidates: list[dict], logits: np.ndarray) -> list[dict]:
    """The candidates with the second stage's reading of them (``logits``) folded into their
    probability (:func:`~deepseek.medical.detector.second_stage_probability`)."""
    from deepseek.medical.detector import second_stage_probability

    q = 1 / (1 + np.exp(-logits))
    return [{**c, "probability": float(second_stage_probability(c["probability"], qi))}
            for c, qi in zip(candidates, q)]


def combined_cpm(logits: np.ndarray, val: dict[str, Any]) -> dict[str, float]:
    """CPM of the detector alone and with the second stage on the validation candidates."""
    from deepseek.medical.metrics import froc

    a = froc(val["annotations"], val["candidates"], scans=val["scans"], bootstrap=0)
    b = froc(val["annotations"], rescored(val["candidates"], logits), scans=val["scans"],
             bootstrap=0)
    return {"val_cpm_detector": a.cpm, "val_cpm": b.cpm}


def candidate_set(detector: Any, scans: Any) -> dict[str, Any]:
    """Every candidate of every scan (Volumes with ``nodules`` in their metadata; none left
    out), as ``detector`` reports it, with its centre ``FPR_CROP`` cube (``x``), its label by
    the LUNA16 hit rule (``y``: 1 a nodule, 0 anything else), and the annotations: what a
    second stage re-scores when it validates, and what ``benchmarks/nodule_fpr.py`` compares
    stages on."""
    cands, cubes, ann, uids, ys = [], [], [], [], []
    for sid, nods, found, iso, _ in _detected(detector, scans):
        uids.append(sid)
        ann += [{"seriesuid": sid, "xyz": tuple(ctr), "diameter_mm": d} for ctr, d in nods]
        if found:
            cubes.append(_cubes(iso, [c["xyz"] for c in found], FPR_CROP))
            cands += found
            ys.append(label_candidates(found, nods) == 1)
    x = np.concatenate(cubes) if cubes else np.zeros((0, FPR_CROP, FPR_CROP, FPR_CROP),
                                                     np.float32)
    return {"x": x, "candidates": cands, "annotations": ann, "scans": uids,
            "y": np.concatenate(ys).astype(np.float32) if ys else np.zeros(0, np.float32)}


def train_fpr(out_dir: str | Path, *, scans: int = 24, val_scans: int = 6, epochs: int = 12,
              batch_size: int = 32, lr: float = 2e-3, seed: int = 0,
              realistic: bool = True, detector: Any = None,
              model: str = "nodule-fpr-3dcnn", progress: bool | None = None,
              scan_size: int = 384, scan_slices: int = 90,
              scan_spacing: tuple[float, float, float] = (0.9, 0.9, 2.0),
              vessel_negatives: int = VESSEL_NEGATIVES,
              **config: Any) -> dict[str, Any]:
    """Train the second stage on ``detector``'s candidates (default: the packaged
    lung-nodule-attention; a name, weights file, ``LoadedModel``, module, or a
    :class:`NoduleDetector` used as it is) on ``scans``
    phantom scans (``scan_size`` rows and columns, ``scan_slices`` slices at
    ``scan_spacing`` mm), validating on ``val_scans`` others; ``vessel_negatives``: vessel
    landmarks per training scan taught as negatives besides the candidates (0: none); write
    ``out_dir/model.safetensors`` (+ ``.json``) and ``training.json``."""
    from deepseek.loader import build_registered, require_fit, save_model
    from deepseek.medical.detector import NoduleDetector
    from deepseek.train import Trainer

    if vessel_negatives < 0:
        from deepseek.medical.errors import MedicalError

        raise MedicalError(f"vessel_negatives must be 0 or more, got {vessel_negatives}")
    require_fit(model, TASK, [{"dtype": "float32", "shape": [-1, 1, FPR_CROP, FPR_CROP,
                                                              FPR_CROP]}])
    if isinstance(detector, NoduleDetector):  # used as it is, for mining and validation
        if detector.fpr is not None:
            from deepseek.medical.errors import MedicalError

            raise MedicalError("the first stage's candidates are what the second stage learns "
                               "from: pass a NoduleDetector with fpr=None")
        mine = full = detector
    else:
        mine = NoduleDetector(detector, progress=False, tta_top=0, fpr=None, sizes=0)
        full = NoduleDetector(detector, progress=False, fpr=None, sizes=0)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net, cfg = build_registered(model, pretrained=False, **config)
    t0 = time.perf_counter()
    s0 = FPR_SEED0 + 1000 * seed
    grid = dict(size=scan_size, slices=scan_slices, spacing=tuple(scan_spacing),
                realistic=realistic)
    train = candidate_cubes(mine, phantom_scans(scans, seed0=s0, prefix="fpr", **grid),
                            vessels=vessel_negatives, seed=seed)
    n_pos = int(train["y"].sum())
    n_vessel = int((train["p"] == -2).sum())
    log.info("%d training cubes (%d nodules, %d vessel landmarks) from %d scans in %.0f s",
             len(train["y"]), n_pos, n_vessel, scans, time.perf_counter() - t0)
    val = candidate_set(full, phantom_scans(val_scans, seed0=s0 + 500_000, prefix="fpr-val",
                                            **grid)) if val_scans else None
    pos_weight = torch.tensor([max(1.0, (len(train["y"]) - n_pos) / max(n_pos, 1))])

    def step_fn(m: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(m(batch["x"])["nodule"], batch["y"],
                                                  pos_weight=pos_weight)

    def eval_fn(m: torch.nn.Module, v: dict[str, Any]) -> dict[str, float]:
        from sklearn.metrics import roc_auc_score

        m.eval()
        try:
            logits = cube_logits(m, v["x"])
        finally:
            m.train()
        metrics = combined_cpm(logits, v)
        if 0 < v["y"].sum() < len(v["y"]):  # hits against the rest, as LUNA16 counts them
            metrics["val_auroc"] = float(roc_auc_score(v["y"], logits))
            metrics["val_auroc_detector"] = float(roc_auc_score(
                v["y"], [c["probability"] for c in v["candidates"]]))
        return metrics

    steps = epochs * int(np.ceil(len(train["y"]) / batch_size))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1),
                                                pct_start=0.15)
    trainer = Trainer(net, opt, step_fn=step_fn, scheduler=sched,
                      checkpoint_dir=out / "checkpoints", progress=progress,
                      architecture=model, config=cfg, device="cpu")
    history = trainer.fit(CubeDataset(train, train=True, seed=seed), epochs=epochs,
                          batch_size=batch_size, val_data=val, eval_fn=eval_fn if val else None,
                          best_metric="val_cpm" if val else "train_loss",
                          mode="max" if val else "min")
    best = out / "checkpoints" / "best"
    if best.is_dir():
        trainer.load_checkpoint(best)
    path = save_model(net, out / "model.safetensors", architecture=model, config=cfg)
    summary = {"model": str(path), "history": history, "training_cubes": len(train["y"]),
               "training_nodule_cubes": n_pos, "training_vessel_cubes": n_vessel,
               "vessel_negatives_per_scan": vessel_negatives,
               "scans": scans, "val_scans": val_scans,
               "realistic": realistic, "scan": {"size": scan_size, "slices": scan_slices,
                                                   "spacing_mm": list(scan_spacing)},
               "detector": str(detector or "lung-nodule-attention")
               if detector is None or isinstance(detector, (str, Path)) else "given",
               "pos_weight": float(pos_weight[0]),
               "seeds": [s0, s0 + scans], "val_seeds": [s0 + 500_000, s0 + 500_000 + val_scans],
               "seconds": time.perf_counter() - t0}
    (out / "training.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
