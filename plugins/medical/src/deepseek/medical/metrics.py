"""The LUNA16 FROC / CPM protocol.

Rules (as the challenge defines them):

* A candidate hits a nodule when its distance to the nodule centre is at most the nodule's
  radius (``diameter_mm / 2``), in world millimetres.
* A candidate that hits a finding listed in ``annotations_excluded.csv`` (and no counted
  nodule) is ignored: neither a true nor a false positive.
* Several candidates on one nodule count once, with the highest probability; a candidate
  inside several nodules counts for each of them.
* Every other candidate is a false positive. Nodules no candidate hits stay misses (they are
  in the denominator of the sensitivity at every threshold).
* The FROC curve is sensitivity against the average number of false positives per scan as
  the probability threshold falls (a staircase from (0, 0)); the sensitivity is interpolated
  linearly along it at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false positives per scan (past the end
  of the curve: its last value), and the CPM is the mean of those seven values.
* The 95% interval comes from bootstrapping scans (with replacement).

CSV formats: annotations ``seriesuid,coordX,coordY,coordZ,diameter_mm``; results
``seriesuid,coordX,coordY,coordZ,probability`` (world mm).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.medical.errors import FROCError

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def _read_rows(path: str | Path, value_col: str) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FROCError(f"{path}: no such file")
    need = ("seriesuid", "coordX", "coordY", "coordZ", value_col)
    out = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise FROCError(f"{path}: missing column(s) {', '.join(missing)}; expected "
                            f"{','.join(need)}")
        for line, row in enumerate(reader, start=2):
            try:
                out.append({"seriesuid": row["seriesuid"],
                            "xyz": (float(row["coordX"]), float(row["coordY"]),
                                    float(row["coordZ"])),
                            value_col: float(row[value_col])})
            except (TypeError, ValueError) as exc:
                raise FROCError(f"{path}, line {line}: {exc}") from None
            if not np.isfinite(out[-1][value_col]):
                raise FROCError(f"{path}, line {line}: {value_col} is not finite")
    return out


def read_annotations(path: str | Path) -> list[dict[str, Any]]:
    rows = _read_rows(path, "diameter_mm")
    for r in rows:
        if r["diameter_mm"] < 0:
            raise FROCError(f"{path}: negative diameter for {r['seriesuid']}")
    return rows


def read_results(path: str | Path) -> list[dict[str, Any]]:
    return _read_rows(path, "probability")


def write_results(rows: list[dict[str, Any]], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seriesuid", "coordX", "coordY", "coordZ", "probability"])
        for r in rows:
            w.writerow([r["seriesuid"], *(f"{c:.3f}" for c in r["xyz"]),
                        f"{r['probability']:.6f}"])
    return path


@dataclass
class ScanMatch:
    """Per scan: best probability per nodule (``-inf``: missed) and FP probabilities."""

    nodule_scores: np.ndarray
    fp_scores: np.ndarray
    nodule_diameters: np.ndarray


@dataclass
class FROCResult:
    cpm: float
    sensitivities: dict[float, float]
    ci95: tuple[float, float] | None
    curve_fps: np.ndarray
    curve_sens: np.ndarray
    n_scans: int
    n_nodules: int
    n_candidates: int
    n_true_positives: int
    n_false_positives: int
    n_excluded_hits: int
    max_sensitivity: float
    size_sensitivity: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpm": self.cpm, "ci95": list(self.ci95) if self.ci95 else None,
            "sensitivity_at_fps": {f"{k:g}": v for k, v in self.sensitivities.items()},
            "n_scans": self.n_scans, "n_nodules": self.n_nodules,
            "n_candidates": self.n_candidates, "true_positive_candidates": self.n_true_positives,
            "false_positives": self.n_false_positives,
            "fps_per_scan_total": self.n_false_positives / max(self.n_scans, 1),
            "excluded_hits": self.n_excluded_hits, "max_sensitivity": self.max_sensitivity,
            "sensitivity_by_size_at_all_candidates": self.size_sensitivity,
            "curve": {"fps_per_scan": [float(v) for v in self.curve_fps],
                      "sensitivity": [float(v) for v in self.curve_sens]},
        }


def match(annotations: list[dict], results: list[dict], excluded: list[dict] | None = None,
          scans: list[str] | None = None) -> tuple[dict[str, ScanMatch], dict[str, int]]:
    """Apply the hit rules per scan. ``scans``: every evaluated series (default: all that
    appear in annotations or results)."""
    by_ann: dict[str, list] = defaultdict(list)
    by_exc: dict[str, list] = defaultdict(list)
    by_res: dict[str, list] = defaultdict(list)
    for a in annotations:
        by_ann[a["seriesuid"]].append(a)
    for e in excluded or []:
        by_exc[e["seriesuid"]].append(e)
    for r in results:
        by_res[r["seriesuid"]].append(r)
    scan_ids = list(scans) if scans is not None else sorted(set(by_ann) | set(by_res))
    unknown = sorted(set(by_res) - set(scan_ids))
    if unknown:
        raise FROCError(f"results name series that are not evaluated: {unknown[:3]}")
    counts = {"tp": 0, "fp": 0, "excluded": 0, "candidates": len(results)}
    out: dict[str, ScanMatch] = {}
    for sid in scan_ids:
        nods = by_ann.get(sid, [])
        centres = np.array([n["xyz"] for n in nods], float).reshape(-1, 3)
        radii = np.array([n["diameter_mm"] / 2 for n in nods], float)
        exc = by_exc.get(sid, [])
        ecentres = np.array([e["xyz"] for e in exc], float).reshape(-1, 3)
        eradii = np.array([e["diameter_mm"] / 2 for e in exc], float)
        best = np.full(len(nods), -np.inf)
        fps = []
        for r in by_res.get(sid, []):
            p = np.asarray(r["xyz"], float)
            hit = np.linalg.norm(centres - p, axis=1) <= radii if len(nods) else \
                np.zeros(0, bool)
            if hit.any():
                best[hit] = np.maximum(best[hit], r["probability"])
                counts["tp"] += 1
                continue
            if len(exc) and (np.linalg.norm(ecentres - p, axis=1) <= eradii).any():
                counts["excluded"] += 1
                continue
            fps.append(r["probability"])
            counts["fp"] += 1
        out[sid] = ScanMatch(best, np.array(fps, float), radii * 2)
    return out, counts


def _curve(matches: list[ScanMatch]) -> tuple[np.ndarray, np.ndarray, int]:
    nod = np.concatenate([m.nodule_scores for m in matches]) if matches else np.zeros(0)
    fp = np.concatenate([m.fp_scores for m in matches]) if matches else np.zeros(0)
    n_nod, n_scans = len(nod), max(len(matches), 1)
    if n_nod == 0:
        return np.array([0.0]), np.array([0.0]), 0
    thresholds = np.unique(np.concatenate([nod[np.isfinite(nod)], fp]))[::-1]
    nod_sorted = np.sort(nod[np.isfinite(nod)])
    fp_sorted = np.sort(fp)
    # counts of scores >= t for each threshold t (descending)
    tp = len(nod_sorted) - np.searchsorted(nod_sorted, thresholds, side="left")
    fpc = len(fp_sorted) - np.searchsorted(fp_sorted, thresholds, side="left")
    fps = np.concatenate([[0.0], fpc / n_scans])
    sens = np.concatenate([[0.0], tp / n_nod])
    return fps, sens, n_nod


def _interp(x: float, fps: np.ndarray, sens: np.ndarray) -> float:
    """Linear interpolation along the FROC staircase (``fps`` non-decreasing): at an x the
    curve reaches, the highest sensitivity there; past its end, its last value."""
    eq = fps == x
    if eq.any():
        return float(sens[eq].max())
    right = np.flatnonzero(fps > x)
    if right.size == 0:
        return float(sens.max())
    r = right[0]
    left = np.flatnonzero(fps < x)
    if left.size == 0:
        return float(sens[r])
    lo = left[-1]
    return float(sens[lo] + (sens[r] - sens[lo]) * (x - fps[lo]) / (fps[r] - fps[lo]))


def sensitivities_at(fps: np.ndarray, sens: np.ndarray) -> dict[float, float]:
    return {r: _interp(r, fps, sens) for r in FP_RATES}


def froc(annotations: list[dict], results: list[dict], excluded: list[dict] | None = None,
         scans: list[str] | None = None, bootstrap: int = 1000, seed: int = 0,
         size_bins: tuple[tuple[float, float], ...] = ((3, 6), (6, 10), (10, 30.01))
         ) -> FROCResult:
    """Score ``results`` against ``annotations`` with the LUNA16 protocol."""
    matches, counts = match(annotations, results, excluded, scans)
    ms = list(matches.values())
    fps, sens, n_nod = _curve(ms)
    s = sensitivities_at(fps, sens)
    cpm = float(np.mean(list(s.values())))
    ci = None
    if bootstrap and len(ms) > 1 and n_nod:
        rng = np.random.default_rng(seed)
        vals = []
        for _ in range(bootstrap):
            pick = [ms[i] for i in rng.integers(0, len(ms), len(ms))]
            f, se, n = _curve(pick)
            if n:
                vals.append(np.mean(list(sensitivities_at(f, se).values())))
        if vals:
            ci = (float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5)))
    allscores = np.concatenate([m.nodule_scores for m in ms]) if ms else np.zeros(0)
    diam = np.concatenate([m.nodule_diameters for m in ms]) if ms else np.zeros(0)
    by_size = {}
    for lo, hi in size_bins:
        sel = (diam >= lo) & (diam < hi)
        if sel.any():
            by_size[f"{lo:g}-{min(hi, 30):g}mm"] = float(np.isfinite(allscores[sel]).mean())
    return FROCResult(
        cpm=cpm, sensitivities=s, ci95=ci, curve_fps=fps, curve_sens=sens, n_scans=len(ms),
        n_nodules=n_nod, n_candidates=counts["candidates"], n_true_positives=counts["tp"],
        n_false_positives=counts["fp"], n_excluded_hits=counts["excluded"],
        max_sensitivity=float(sens.max()) if len(sens) else 0.0, size_sensitivity=by_size)


def sensitivity_by_size_at(annotations: list[dict], results: list[dict], fp_rate: float,
                           excluded: list[dict] | None = None, scans: list[str] | None = None,
                           bins: tuple[tuple[float, float], ...] = ((3, 6), (6, 10), (10, 30.01))
                           ) -> dict[str, float]:
    """Sensitivity per nodule-size bin at the threshold giving ``fp_rate`` FPs per scan."""
    matches, _ = match(annotations, results, excluded, scans)
    ms = list(matches.values())
    fp = np.sort(np.concatenate([m.fp_scores for m in ms]))[::-1] if ms else np.zeros(0)
    k = int(np.floor(fp_rate * len(ms)))
    thr = fp[k] if k < len(fp) else -np.inf  # scores above the k-th FP keep <= k FPs
    nod = np.concatenate([m.nodule_scores for m in ms])
    diam = np.concatenate([m.nodule_diameters for m in ms])
    out = {}
    for lo, hi in bins:
        sel = (diam >= lo) & (diam < hi)
        if sel.any():
            out[f"{lo:g}-{min(hi, 30):g}mm"] = float((nod[sel] > thr).mean())
    return out


def luna16_froc(predictions: list[dict], references: list[dict], *,
                excluded: list[dict] | str | Path | None = None,
                scans: list[str] | str | Path | None = None, bootstrap: int = 1000,
                seed: int = 0) -> dict[str, Any]:
    """LUNA16 FROC: CPM, sensitivity at 1/8..8 FPs/scan, 95% bootstrap interval.

    ``predictions`` are result rows (``seriesuid``, ``xyz``, ``probability``), ``references``
    annotation rows (``seriesuid``, ``xyz``, ``diameter_mm``); ``excluded`` may be the path of
    annotations_excluded.csv and ``scans`` the path of a file listing every series uid."""
    if isinstance(excluded, (str, Path)):
        excluded = read_annotations(excluded)
    if isinstance(scans, (str, Path)):
        scans = [s.strip() for s in Path(scans).read_text().splitlines() if s.strip()]
    return froc(references, predictions, excluded, scans, bootstrap=bootstrap,
                seed=seed).to_dict()


def load_luna16_files(pred_path: Path, ref_path: Path) -> tuple[list[dict], list[dict]]:
    """``deepseek evaluate luna16-froc --pred results.csv --ref annotations.csv``."""
    return read_results(pred_path), read_annotations(ref_path)
