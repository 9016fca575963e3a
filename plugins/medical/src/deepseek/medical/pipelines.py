"""Pipelines of the medical plugin, run by ``deepseek run`` and ``deepseek demo``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.medical.nodule_grid import TTA_TOP
from deepseek.report import Headline, Measure, PipelineResult, Table

log = logging.getLogger(__name__)


def _annotations_of(path: Path, series_uid: str | None) -> list[dict[str, Any]]:
    """The rows of a LUNA16 annotations.csv for one series (all rows without a uid)."""
    from deepseek.medical.metrics import read_annotations

    return [a for a in read_annotations(path) if not series_uid or a["seriesuid"] == series_uid]


def _annotation_file(source: str, vol: Any) -> Path | None:
    """The LUNA16 annotations.csv that goes with an input: the phantom's own, or one beside
    the file / inside the folder."""
    if vol.metadata.get("annotations"):
        return Path(vol.metadata["annotations"])
    p = Path(source)
    if not p.exists():
        return None
    cand = (p if p.is_dir() else p.parent) / "annotations.csv"
    return cand if cand.is_file() else None


def dicom_io(input: str | None = None, out_dir: Path = Path("."), quiet: bool = False,
             spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> PipelineResult:
    """Read a CT (default: a freshly written phantom series), resample it to 1 mm, and check
    that every ground-truth nodule centre shows nodule density before and after."""
    from deepseek.medical.dicom import DICOMReader
    from deepseek.medical.figures import orthogonal_views, slice_montage
    from deepseek.medical.synthetic import write_phantom
    from deepseek.readers import resolve

    out_dir = Path(out_dir)
    notes = []
    annotations: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    generated = input is None
    if input is None:
        series = write_phantom(out_dir / "phantom", seed=7, size=192, slices=96, slice_step=2.5,
                               n_nodules=8, tilt_deg=0.0, shuffle=True)
        input = series.out_dir
        annotations = [{"xyz": n.center, "diameter_mm": n.diameter_mm,
                        "label": f"{n.diameter_mm:.0f} mm {n.kind}"} for n in series.nodules]
        notes.append(f"input: a synthetic chest CT phantom ({len(series.files)} shuffled DICOM "
                     f"files, {len(series.nodules)} nodules) written to {series.out_dir}")
    t_write = time.perf_counter() - t0
    t0 = time.perf_counter()
    source = str(input)
    entry = resolve(source, kind="volume")
    info_rows: list[list[Any]] = []
    if entry.name == "dicom":
        reader = DICOMReader(source, progress=False if quiet else None)
        vol = reader.load()
        info_rows = [[s.uid[-16:], s.description, s.modality, s.orientation, s.n_slices,
                      f"{s.rows}x{s.cols}"] for s in reader.found()]
    else:
        vol = entry.obj(source)
    t_load = time.perf_counter() - t0
    ann = _annotation_file(source, vol)
    if not annotations and ann is not None:
        annotations = [{**a, "label": f"{a['diameter_mm']:.0f} mm"}
                       for a in _annotations_of(ann, vol.metadata.get("series_uid"))]
    t0 = time.perf_counter()
    iso = vol.resample(spacing)
    t_resample = time.perf_counter() - t0

    def hu_at(v: Any, xyz: Any) -> float:
        k = np.rint(v.world_to_voxel(xyz)).astype(int)
        if np.any(k < 0) or np.any(k >= np.array(v.shape)):
            return float("nan")
        return float(v.array[tuple(k)])

    rows = []
    inside = 0
    for a in annotations:
        h0, h1 = hu_at(vol, a["xyz"]), hu_at(iso, a["xyz"])
        ok = h0 > -400 and h1 > -400
        inside += ok
        rows.append([*(round(c, 1) for c in a["xyz"]), a["diameter_mm"], round(h0, 1),
                     round(h1, 1), "yes" if ok else "NO"])
    figs = [orthogonal_views(iso, out_dir / "views.png", points=annotations)]
    if annotations:
        figs.append(slice_montage(vol, annotations, out_dir / "nodules.png"))
    metrics: dict[str, float] = {"slices": Measure(vol.shape[0], "slices read")}
    timings: dict[str, float] = {"load_seconds": Measure(t_load, "read to HU volume", "s"),
                                 "resample_seconds": Measure(t_resample, "resample to 1 mm",
                                                             "s")}
    if generated:
        timings["phantom_write_seconds"] = Measure(t_write, "phantom DICOM written", "s")
    quality = None
    if annotations:
        share = inside / len(annotations)
        metrics["nodule_centres_dense"] = Measure(
            share, "share of nodule centres that read dense (> -400 HU) before and after "
                   "resampling")
        quality = Headline(f"nodule centres dense (> -400 HU), {inside} of {len(annotations)}",
                           100 * share, "%", target=100.0)
    mb = vol.array.size * 2 / 1e6  # the stored 16-bit pixels
    geometry = Table("Geometry", ["", "shape (z, y, x)", "spacing (x, y, z) mm", "origin mm"], [
        ["as read", str(vol.shape), str(tuple(round(s, 4) for s in vol.spacing)),
         str(tuple(round(o, 2) for o in vol.origin))],
        ["resampled", str(iso.shape), str(tuple(round(s, 4) for s in iso.spacing)),
         str(tuple(round(o, 2) for o in iso.origin))],
    ])
    tables = [geometry]
    if info_rows:
        tables.insert(0, Table("Series found", ["uid (end)", "description", "modality",
                                                "orientation", "slices", "size"], info_rows))
    if rows:
        tables.append(Table("Ground-truth nodule centres (HU must exceed -400)",
                            ["x", "y", "z", "diameter mm", "HU as read", "HU at 1 mm", "dense"],
                            rows))
    findings = vol.metadata.get("findings") or {}
    if findings:
        notes.append(f"findings: {findings}")
    return PipelineResult(pipeline="medical.dicom-io", title="Medical: DICOM CT to HU volume",
                          metrics=metrics, timings=timings, quality=quality,
                          speed=Headline("read speed (16-bit pixels)", mb / max(t_load, 1e-9),
                                         "MB/s"),
                          tables=tables, figures=figs, notes=notes, input=source)


def nodule_detection(input: str | None = None, out_dir: Path = Path("."), quiet: bool = False,
                     seed: int = 510_000, window: int | None = None,
                     tta_top: int = TTA_TOP) -> PipelineResult:
    """Detect nodules in a CT (default: a fresh phantom series, seed outside training) and
    score them with the LUNA16 FROC against its annotations.csv when there is one."""
    from deepseek.evaluation import evaluate
    from deepseek.medical.detector import NoduleDetector
    from deepseek.medical.figures import orthogonal_views, plot_froc, slice_montage
    from deepseek.medical.metrics import write_results
    from deepseek.medical.synthetic import write_phantom
    from deepseek.readers import open as open_source

    out_dir = Path(out_dir)
    notes = []
    if input is None:
        series = write_phantom(out_dir / "phantom", seed=seed, size=320, slices=100,
                               pixel_spacing=0.9, slice_step=2.0, n_nodules=8)
        input = series.out_dir
        notes.append(f"input: a phantom chest CT (seed {seed}, never used in training): "
                     f"320x320 px at 0.9 mm, 100 slices of 2 mm, {len(series.nodules)} "
                     "nodules of 3-30 mm")
    source = str(input)
    vol = open_source(source, kind="volume")
    ann_path = _annotation_file(source, vol)
    det = NoduleDetector(progress=False if quiet else None, tta_top=tta_top,
                         **({} if window is None else {"window": window}))
    cands = det.detect(vol)
    sid = vol.metadata.get("series_uid") or "scan"
    write_results(cands, out_dir / "results.csv")
    timings: dict[str, float] = {f"{k}_seconds": Measure(v, f"{k.replace('_', ' ')} time", "s")
                                 for k, v in det.timings.items()}
    metrics: dict[str, float] = {"candidates": Measure(len(cands), "candidates reported")}
    quality = None
    tables = [Table("Candidates (most probable first)",
                    ["x mm", "y mm", "z mm", "diameter mm", "probability"],
                    [[round(c["xyz"][0], 1), round(c["xyz"][1], 1), round(c["xyz"][2], 1),
                      round(c["diameter_mm"], 1), round(c["probability"], 3)]
                     for c in cands[:25]])]
    figs = []
    if ann_path is not None:
        ann = _annotations_of(ann_path, sid)
        ann_rows = [{"seriesuid": sid, "xyz": a["xyz"], "diameter_mm": a["diameter_mm"]}
                    for a in ann]
        scores = evaluate("luna16-froc", cands, ann_rows, scans=[sid], bootstrap=0)
        metrics.update(cpm_single_scan=Measure(scores["cpm"], "CPM, one scan (LUNA16)"),
                       max_sensitivity=Measure(scores["max_sensitivity"],
                                               "sensitivity at the lowest threshold"),
                       false_positives=Measure(scores["false_positives"],
                                               "false-positive candidates"))
        quality = Headline("CPM (one scan)", scores["cpm"], target=0.90)
        figs.append(plot_froc(scores, out_dir / "froc.png", title="FROC (one scan)"))
        rows = []
        for a in ann:
            hit = max((c["probability"] for c in cands if np.linalg.norm(
                np.subtract(c["xyz"], a["xyz"])) <= a["diameter_mm"] / 2), default=None)
            rows.append([*(round(v, 1) for v in a["xyz"]), a["diameter_mm"],
                         "-" if hit is None else round(hit, 3)])
        tables.append(Table("Ground truth and the best hit on it",
                            ["x mm", "y mm", "z mm", "diameter mm", "best probability"], rows))
        notes.append("one scan only: the CPM here is noisy; benchmarks/nodule_froc.py scores "
                     "20+ scans with a bootstrap interval")
    shown = [{"xyz": c["xyz"], "diameter_mm": c["diameter_mm"],
              "label": f"p={c['probability']:.2f}"} for c in cands[:8]]
    figs.append(slice_montage(vol, shown, out_dir / "detections.png"))
    figs.append(orthogonal_views(vol, out_dir / "views.png", points=shown[:4]))
    slices = vol.shape[0]
    return PipelineResult(pipeline="medical.nodule-detection",
                          title="Medical: lung-nodule detection (LUNA16 FROC)",
                          metrics=metrics, timings=timings, quality=quality,
                          speed=Headline(f"detect ({slices} slices)", det.timings["total"], "s",
                                         higher_is_better=False),
                          tables=tables, figures=figs, notes=notes, input=source)
