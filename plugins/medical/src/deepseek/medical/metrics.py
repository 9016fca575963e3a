"""The LUNA16 FROC / CPM protocol, as the challenge's evaluation script applies it.

Rules (``noduleCADEvaluationLUNA16.py``; every one is the default here):

* A candidate hits a nodule when its squared distance to the nodule centre is below the
  squared radius (``diameter_mm / 2``), in world millimetres. A finding whose diameter is
  negative (LUNA16 lists some with -1) is taken as 10 mm, in the annotations and in the
  excluded findings alike.
* At most ``max_marks`` (100) candidates per scan count: when a scan has more, those with a
  probability above the 101st highest are kept (fewer on ties); the rest are dropped and
  counted (``marks_dropped``).
* A candidate that hits a finding listed in ``annotations_excluded.csv`` (and no counted
  nodule) is ignored: neither a true nor a false positive.
* Several candidates on one nodule count once, with the highest probability; a candidate
  inside several nodules counts for each of them.
* Every other candidate is a false positive. Nodules no candidate hits stay misses (they are
  in the denominator of the sensitivity at every threshold).
* The FROC curve is sensitivity against the average number of false positives per scan as
  the probability threshold falls, one point per distinct probability from (0, 0). The
  false positives are divided by the number of evaluated scans: the ``scans`` list (LUNA16's
  ``seriesuids.csv``, CLI ``--series``); without it, the scans named in the annotations or
  results, with a warning, since a scan with neither then drops out of the divisor.
* ``reading="luna16"`` (default): the curve is interpolated linearly (``numpy.interp``) on
  the script's grid of 10,001 FP rates from 1/8 to 8 per scan, and each of 1/8, 1/4, 1/2, 1,
  2, 4 and 8 FPs per scan is read at the nearest grid point; ``reading="exact"`` reads
  the curve at exactly those rates (the highest sensitivity where the curve is vertical).
  The CPM is the mean of the seven sensitivities.
* The 95% interval comes from bootstrapping scans (with replacement).

CSV formats: annotations ``seriesuid,coordX,coordY,coordZ,diameter_mm``; results
``seriesuid,coordX,coordY,coordZ,probability`` (world mm).
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.medical.errors import FROCError

log = logging.getLogger(__name__)

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
NEGATIVE_DIAMETER_MM = 10.0  # what the official script takes for a diameter below 0
MAX_MARKS = 100  # candidates per scan the official evaluation counts
READINGS = ("luna16", "exact")
GRID = np.linspace(FP_RATES[0], FP_RATES[-1], 10001)  # the script's FP-rate grid


def _read_rows(path: str | Path, value_col: str) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FROCError(f"{path}: no such file")
    need = ("seriesuid", "coordX", "coordY", "coordZ", value_col)
    out = []
    with open(path, newline="", encoding="utf-8-sig") as f:  # a spreadsheet's BOM or not
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
    """Annotation rows as written; a negative ``diameter_mm`` (LUNA16's -1 for findings of
    unknown size) is kept and matched as 10 mm, like the official script does."""
    return _read_rows(path, "diameter_mm")


def effective_diameter(d: float) -> float:
    """A nodule's diameter for the FROC hit radius: excluded findings (negative) get the LUNA16
    default.
    """
    return NEGATIVE_DIAMETER_MM if d < 0 else d


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Candidates from a LUNA16 results CSV (seriesuid, coordX/Y/Z, probability).

    Raises:
        MedicalError: a missing column or a bad number, with the file and line.
    """
    return _read_rows(path, "probability")


def write_results(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write candidates as a LUNA16 results CSV at ``path`` (folders made); returns the path.
    The file is written whole under a temporary name and renamed into place, so a write that
    fails (a full disk) leaves the file there before as it was."""
    from deepseek.paths import written_whole

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with written_whole(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seriesuid", "coordX", "coordY", "coordZ", "probability"])
        for r in rows:
            w.writerow([r["seriesuid"], *(f"{c:.3f}" for c in r["xyz"]),
                        f"{r['probability']:.6f}"])
    return path


def write_monai_boxes(rows: list[dict[str, Any]], path: str | Path,
                      images: dict[str, str] | None = None, key: str = "validation") -> Path:
    """Detections as a MONAI detection datalist: ``{key: [entry, ...]}`` with one entry per
    scan, ``{"image": ..., "box": [[x, y, z, w, h, d], ...], "label": [0, ...],
    "label_scores": [p, ...]}`` -- the layout ``monai.data.load_decathlon_datalist(path,
    data_list_key=key)`` reads and MONAI's detection tutorials use. Boxes are in world
    coordinates (mm, LPS, as the LUNA16 CSV) in MONAI's ``cccwhd`` mode (centre, then the
    three sizes): the box of the candidate's segmented extent (``extent_mm``, from
    ``NoduleDetector(sizes=N)``: the N most probable, 20 by default) where it has one, else
    a cube of its diameter around its centre. ``images`` maps a series UID to the image path written
    (default: the UID)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    by_scan: dict[str, dict[str, list]] = {}
    for r in rows:
        entry = by_scan.setdefault(r["seriesuid"], {"box": [], "label": [], "label_scores": []})
        ext = r.get("extent_mm")
        if ext:
            lo, hi = np.asarray(ext[0], float), np.asarray(ext[1], float)
            box = [*((lo + hi) / 2), *(hi - lo)]
        else:
            d = float(r["diameter_mm"])
            box = [*(float(c) for c in r["xyz"]), d, d, d]
        entry["box"].append([round(float(v), 3) for v in box])
        entry["label"].append(0)
        entry["label_scores"].append(round(float(r["probability"]), 6))
    out = [{"image": (images or {}).get(uid, uid), **entry} for uid, entry in by_scan.items()]
    path.write_text(json.dumps({key: out}, indent=1) + "\n")
    return path


@dataclass
class ScanMatch:
    """Per scan: best probability per nodule (``-inf``: missed) and FP probabilities."""

    nodule_scores: np.ndarray
    fp_scores: np.ndarray
    nodule_diameters: np.ndarray


@dataclass
class FROCResult:
    """LUNA16 FROC: the CPM, the sensitivity at 1/8 ... 8 false positives per scan, a bootstrap 95 %
    interval and the curve.
    """
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
    reading: str = "luna16"
    max_marks: int = MAX_MARKS
    marks_dropped: int = 0
    negative_diameters: int = 0
    scans_given: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (the curve left out)."""
        return {
            "cpm": self.cpm, "ci95": list(self.ci95) if self.ci95 else None,
            "sensitivity_at_fps": {f"{k:g}": v for k, v in self.sensitivities.items()},
            "n_scans": self.n_scans, "n_nodules": self.n_nodules,
            "n_candidates": self.n_candidates, "true_positive_candidates": self.n_true_positives,
            "false_positives": self.n_false_positives,
            "fps_per_scan_total": self.n_false_positives / max(self.n_scans, 1),
            "excluded_hits": self.n_excluded_hits, "max_sensitivity": self.max_sensitivity,
            "sensitivity_by_size_at_all_candidates": self.size_sensitivity,
            "protocol": {"reading": self.reading, "max_marks_per_scan": self.max_marks,
                         "marks_dropped": self.marks_dropped,
                         "negative_diameters_as_10mm": self.negative_diameters,
                         "scans": "given" if self.scans_given else
                                  "inferred from annotations and results"},
            "curve": {"fps_per_scan": [float(v) for v in self.curve_fps],
                      "sensitivity": [float(v) for v in self.curve_sens]},
        }


def match(annotations: list[dict], results: list[dict], excluded: list[dict] | None = None,
          scans: list[str] | None = None, max_marks: int | None = MAX_MARKS
          ) -> tuple[dict[str, ScanMatch], dict[str, int]]:
    """Apply the hit rules per scan. ``scans``: every evaluated series (default: all that
    appear in annotations or results). ``max_marks``: candidates counted per scan (None or
    0: all)."""
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
    counts = {"tp": 0, "fp": 0, "excluded": 0, "candidates": len(results), "marks_dropped": 0,
              "negative_diameters": sum(a["diameter_mm"] < 0 for a in annotations)}
    out: dict[str, ScanMatch] = {}
    for sid in scan_ids:
        nods = by_ann.get(sid, [])
        centres = np.array([n["xyz"] for n in nods], float).reshape(-1, 3)
        radii = np.array([effective_diameter(n["diameter_mm"]) / 2 for n in nods], float)
        exc = by_exc.get(sid, [])
        ecentres = np.array([e["xyz"] for e in exc], float).reshape(-1, 3)
        eradii = np.array([effective_diameter(e["diameter_mm"]) / 2 for e in exc], float)
        marks = by_res.get(sid, [])
        if max_marks and len(marks) > max_marks:
            cut = sorted((r["probability"] for r in marks), reverse=True)[max_marks]
            kept = [r for r in marks if r["probability"] > cut][:max_marks]
            counts["marks_dropped"] += len(marks) - len(kept)
            marks = kept
        best = np.full(len(nods), -np.inf)
        fps = []
        for r in marks:
            p = np.asarray(r["xyz"], float)
            hit = ((centres - p) ** 2).sum(axis=1) < radii ** 2 if len(nods) else \
                np.zeros(0, bool)
            if hit.any():
                best[hit] = np.maximum(best[hit], r["probability"])
                counts["tp"] += 1
                continue
            if len(exc) and (((ecentres - p) ** 2).sum(axis=1) < eradii ** 2).any():
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


def sensitivities_at(fps: np.ndarray, sens: np.ndarray, reading: str = "luna16"
                     ) -> dict[float, float]:
    """Sensitivity at each of :data:`FP_RATES`: on the script's grid (``luna16``) or at the
    exact rates (``exact``)."""
    if reading == "exact":
        return {r: _interp(r, fps, sens) for r in FP_RATES}
    itp = np.interp(GRID, fps, sens)
    return {r: float(itp[int(np.abs(GRID - r).argmin())]) for r in FP_RATES}


def froc(annotations: list[dict], results: list[dict], excluded: list[dict] | None = None,
         scans: list[str] | None = None, bootstrap: int = 1000, seed: int = 0,
         size_bins: tuple[tuple[float, float], ...] = ((3, 6), (6, 10), (10, 30.01)),
         reading: str = "luna16", max_marks: int | None = MAX_MARKS) -> FROCResult:
    """Score ``results`` against ``annotations`` with the LUNA16 protocol (module docstring);
    ``reading`` and ``max_marks`` change what the official script does."""
    if reading not in READINGS:
        raise FROCError(f"reading={reading!r}: use one of {', '.join(READINGS)}")
    if max_marks is not None and max_marks < 0:
        raise FROCError(f"max_marks={max_marks}: give 1 or more (0 or None: no cap)")
    if scans is None:
        log.warning("no scan list: the FP rate divides by the scans named in the annotations "
                    "or results; a scan with neither drops out (pass the list of every "
                    "evaluated seriesuid: scans=, CLI --series)")
    matches, counts = match(annotations, results, excluded, scans, max_marks)
    ms = list(matches.values())
    fps, sens, n_nod = _curve(ms)
    s = sensitivities_at(fps, sens, reading)
    cpm = float(np.mean(list(s.values())))
    ci = None
    if bootstrap and len(ms) > 1 and n_nod:
        rng = np.random.default_rng(seed)
        vals = []
        for _ in range(bootstrap):
            pick = [ms[i] for i in rng.integers(0, len(ms), len(ms))]
            f, se, n = _curve(pick)
            if n:
                vals.append(np.mean(list(sensitivities_at(f, se, reading).values())))
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
        max_sensitivity=float(sens.max()) if len(sens) else 0.0, size_sensitivity=by_size,
        reading=reading, max_marks=max_marks or 0, marks_dropped=counts["marks_dropped"],
        negative_diameters=counts["negative_diameters"], scans_given=scans is not None)


def sensitivity_by_size_at(annotations: list[dict], results: list[dict], fp_rate: float,
                           excluded: list[dict] | None = None, scans: list[str] | None = None,
                           bins: tuple[tuple[float, float], ...] = ((3, 6), (6, 10), (10, 30.01))
                           ) -> dict[str, float]:
    """Sensitivity per nodule-size bin at the threshold giving ``fp_rate`` FPs per scan."""
    matches, _ = match(annotations, results, excluded, scans, MAX_MARKS)
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
                seed: int = 0, reading: str = "luna16",
                max_marks: int | None = MAX_MARKS) -> dict[str, Any]:
    """LUNA16 FROC: CPM, sensitivity at 1/8..8 FPs/scan, 95% bootstrap interval.

    ``predictions`` are result rows (``seriesuid``, ``xyz``, ``probability``), ``references``
    annotation rows (``seriesuid``, ``xyz``, ``diameter_mm``); ``excluded`` may be the path of
    annotations_excluded.csv and ``scans`` the path of a file listing every series uid (one
    per line, or LUNA16's seriesuids.csv; a ``seriesuid`` header line is skipped)."""
    if isinstance(excluded, (str, Path)):
        excluded = read_annotations(excluded)
    if isinstance(scans, (str, Path)):
        scans = read_scan_list(scans)
    return froc(references, predictions, excluded, scans, bootstrap=bootstrap, seed=seed,
                reading=reading, max_marks=max_marks).to_dict()


def read_scan_list(path: str | Path) -> list[str]:
    """Series uids, one per line (the first field of a CSV line); blank lines and a
    ``seriesuid`` header are skipped; a uid listed twice is an error."""
    path = Path(path)
    if not path.is_file():
        raise FROCError(f"{path}: no such file (the list of evaluated series uids)")
    uids = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        uid = line.split(",", 1)[0].strip()
        if uid and uid != "seriesuid":
            uids.append(uid)
    if not uids:
        raise FROCError(f"{path}: no series uids")
    dup = sorted(u for u, n in Counter(uids).items() if n > 1)
    if dup:
        raise FROCError(f"{path}: series uid(s) listed twice: {', '.join(dup[:3])}")
    return uids


def load_luna16_files(pred_path: Path, ref_path: Path) -> tuple[list[dict], list[dict]]:
    """``deepseek evaluate luna16-froc --pred results.csv --ref annotations.csv``."""
    return read_results(pred_path), read_annotations(ref_path)
