"""Defect-stream metrics against per-frame ground truth (see :mod:`.synthetic` for its CSV).

- *frame recall*: flagged defect frames / defect frames;
- *false-detection rate*: flagged defect-free frames / defect-free frames;
- frames marked ``partial`` (a sliver of crack entering or leaving) count in neither;
- *recall per width bin* (crack width in mm, the widest crack a frame shows);
- *event recall*: a crack counts as caught when an event is active during its defect frames
  (or starts at most ``slack`` frames after its last one: the debounce delay); two cracks in
  view together can share one event. Events that overlap no crack are false alarms;
- frames missing from the predictions (dropped by the source) count as not flagged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

WIDTH_BINS_MM = (0.1, 0.2, 0.3, 0.5, 1.0)


def _as_flags(predictions: Any, frames: np.ndarray, threshold: float
              ) -> tuple[np.ndarray, int, int]:
    """Per truth row, whether its frame is flagged, from a dict ``{frame: score}`` or a pair
    ``(frame_indices, scores)``, matched by frame number (a truth may start at frame 1, skip
    frames or list them in any order), or from a sequence of scores/flags aligned with the
    truth's rows; how many scored frames the truth has no row for, and how many of its rows
    no frame was scored for."""
    n = len(frames)
    flags = np.zeros(n, bool)
    if isinstance(predictions, dict) or (isinstance(predictions, tuple)
                                         and len(predictions) == 2):
        if isinstance(predictions, dict):
            idx = np.array([int(f) for f in predictions], np.int64)
            s = np.array([float(v) for v in predictions.values()])
        else:
            idx, s = (np.asarray(v) for v in predictions)
        row = {int(f): i for i, f in enumerate(frames)}
        at = np.array([row.get(int(f), -1) for f in idx], np.int64)
        ok = at >= 0
        flags[at[ok]] = s[ok].astype(float) >= threshold
        scored = np.zeros(n, bool)
        scored[at[ok]] = True
        return flags, int((~ok).sum()), int((~scored).sum())
    s = np.asarray(predictions, dtype=float)
    if len(s) != n:
        raise ValueError(f"{len(s)} predictions for {n} frames of ground truth; pass "
                         "(frame_indices, scores) when frames were dropped")
    return s >= threshold, 0, 0


def frame_metrics(predictions: Any, truth: Sequence[dict[str, Any]], threshold: float = 0.5,
                  min_width_mm: float = 0.0,
                  width_bins: Sequence[float] = WIDTH_BINS_MM) -> dict[str, Any]:
    """Frame recall, false-detection rate and recall per width bin; a frame of the truth
    that was not scored (dropped, or past the end of the video) counts as not flagged
    (``truth_frames_not_scored``), and ``frames_without_truth`` counts the scored frames the
    truth has no row for.

    Raises:
        ValueError: a frame listed twice in the truth."""
    frames = np.array([int(r["frame"]) for r in truth], np.int64)
    ordered = np.sort(frames)
    twice = np.flatnonzero(np.diff(ordered) == 0)
    if twice.size:
        raise ValueError(f"frame {int(ordered[twice[0]])} is listed twice in the ground "
                         "truth: one row per frame")
    flags, unmatched, unscored = _as_flags(predictions, frames, threshold)
    defect = np.array([int(r["defect"]) == 1 for r in truth])
    partial = np.array([int(r.get("partial", 0)) == 1 for r in truth])
    width = np.array([float(r.get("width_mm", 0.0)) for r in truth])
    pos = defect & ~partial & (width >= min_width_mm)
    neg = ~defect & ~partial
    out: dict[str, Any] = {
        "defect_frames": int(pos.sum()), "clean_frames": int(neg.sum()),
        "partial_frames": int(partial.sum()),
        "recall": float(flags[pos].mean()) if pos.any() else float("nan"),
        "false_detection_rate": float(flags[neg].mean()) if neg.any() else float("nan"),
        "false_detections": int(flags[neg].sum()), "missed": int((~flags[pos]).sum()),
        "frames_without_truth": unmatched, "truth_frames_not_scored": unscored,
    }
    bins = {}
    # a truth that gives no widths (a recording labelled frame by frame) has no width bins
    edges = list(zip(width_bins[:-1], width_bins[1:])) if (width > 0).any() else []
    for lo, hi in edges:
        m = defect & ~partial & (width >= lo) & (width < hi)
        bins[f"{lo:g}-{hi:g}"] = {"frames": int(m.sum()),
                                  "recall": float(flags[m].mean()) if m.any() else None}
    out["recall_by_width_mm"] = bins
    return out


def _crack_ids(r: dict[str, Any]) -> list[int]:
    ids = r.get("crack_ids") or []
    return [int(v) for v in ids.split(";") if v] if isinstance(ids, str) else list(ids)


def crack_spans(truth: Sequence[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per crack id: first and last frame where it shows (defect frames only) and its width.

    A truth that names no crack at all (a recording labelled frame by frame: ``frame`` and
    ``defect`` alone) counts each run of consecutive defect frames as one crack (numbered
    from 0; partial frames, a crack entering or leaving, do not break a run), so that event
    recall is measured on it too rather than every event counted a false alarm."""
    spans: dict[int, dict[str, Any]] = {}
    if any(_crack_ids(r) for r in truth):
        for r in truth:
            if not int(r["defect"]):
                continue
            for c in _crack_ids(r):
                s = spans.setdefault(c, {"first": r["frame"], "last": r["frame"],
                                         "width_mm": float(r.get("width_mm", 0.0))})
                s["last"] = r["frame"]
        return spans
    run: int | None = None
    prev: int | None = None
    for r in sorted(truth, key=lambda r: int(r["frame"])):
        frame, defect = int(r["frame"]), int(r["defect"])
        if not (defect or int(r.get("partial", 0))) or prev is None or frame != prev + 1:
            run = None  # a clean frame or a gap in the frame numbers ends a run
        prev = frame
        if defect:
            if run is None:
                run = len(spans)
                spans[run] = {"first": frame, "last": frame, "width_mm": 0.0}
            s = spans[run]
            s["last"] = frame
            s["width_mm"] = max(s["width_mm"], float(r.get("width_mm", 0.0)))
    return spans


def event_metrics(events: Sequence[Any], truth: Sequence[dict[str, Any]], slack: int = 3,
                  min_width_mm: float = 0.0) -> dict[str, Any]:
    """Event recall over cracks and the events that overlap none (false alarms). ``events``
    are :class:`DefectEvent` objects or ``(start_frame, end_frame)`` pairs."""
    pairs = []
    for e in events:
        if isinstance(e, (tuple, list)):
            pairs.append((int(e[0]), int(e[1])))
        else:
            pairs.append((int(e.frame), int(e.end_frame if e.end_frame is not None else e.frame)))
    spans = {c: s for c, s in crack_spans(truth).items() if s["width_mm"] >= min_width_mm}
    caught = {c for c, s in spans.items()
              if any(a <= s["last"] + slack and b >= s["first"] for a, b in pairs)}
    all_spans = crack_spans(truth)
    partial = [r["frame"] for r in truth if int(r.get("partial", 0))]
    false_alarms = 0
    for a, b in pairs:
        hit = any(a <= s["last"] + slack and b >= s["first"] - slack for s in all_spans.values())
        near_partial = any(a - slack <= f <= b + slack for f in partial)
        false_alarms += not (hit or near_partial)
    return {"cracks": len(spans), "cracks_caught": len(caught),
            "event_recall": len(caught) / len(spans) if spans else float("nan"),
            "events": len(pairs), "false_alarms": false_alarms}


#: the records of a stream's events file that say the source failed, not that a defect was
#: seen (:class:`~deepseek.manufacturing.stream.DefectStream`)
SOURCE_FAULT_EVENTS = ("source_lost", "source_ended_early")
#: the record of a stream's events file that says which model decides from its frame on (a
#: model loaded again while the stream ran: ``DefectStream.load_again``)
MODEL_EVENT = "model"
#: the record that begins each run of a stream appended to an events file (``stream
#: --append``: a service started again); its frame numbers start again after it
RUN_EVENT = "run"


def read_events(path: str | Path) -> list[tuple[int, int]]:
    """``(start_frame, end_frame)`` of each event in a JSON-lines file written by
    ``deepseek manufacturing stream --events``: a ``defect`` record starts an event (``start``
    is read the same way), a ``clear`` record (``frame``: the last, ``start_frame``: the
    first) ends it; an event never cleared ends at its start; the records that say the
    source failed or the model was loaded again are not events and are passed over. A file
    of several runs (``stream --append``: a ``run`` record after other records) is refused:
    its frame numbers start again with each run, so it matches no one truth file."""
    from deepseek.manufacturing.errors import TruthFileError

    path = Path(path)
    starts: dict[int, int] = {}
    ends: dict[int, int] = {}
    records = 0  # before the line read
    with path.open() as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                kind = rec["event"]
                records += 1
                if kind in ("defect", "start"):
                    starts[int(rec["frame"])] = int(rec["frame"])
                elif kind == "clear":
                    ends[int(rec["start_frame"])] = int(rec["frame"])
                elif kind == RUN_EVENT:
                    if records > 1:  # a run after another run's records
                        raise TruthFileError(
                            f"{path}, line {n}: a second run (stream --append adds each run "
                            "to the file, its frames numbered from 0 again): evaluate one "
                            "run's events, e.g. a recording streamed to a file of its own")
                elif kind not in (*SOURCE_FAULT_EVENTS, MODEL_EVENT):
                    raise ValueError(f"unknown event {kind!r} (expected defect or clear, as "
                                     "stream --events writes them)")
            except (ValueError, KeyError, TypeError) as exc:
                raise TruthFileError(f"{path}, line {n}: not an event record ({exc})") from None
    return [(a, ends.get(a, a)) for a in sorted(starts)]


def read_frame_scores(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(frame_indices, scores)`` from a CSV with columns ``frame,score`` (as written by
    ``deepseek manufacturing stream --scores``; or as a spreadsheet saved it again:
    :func:`~deepseek.manufacturing.synthetic.spreadsheet_csv`).

    Raises:
        TruthFileError: no such columns, a value that is not a number, or a frame scored
            twice: a file of several runs (``stream --append`` adds each run's rows, its
            frames numbered from 0 again), which no one truth file fits; before, the later
            row's score silently replaced the earlier's in the evaluation.
    """
    from deepseek.manufacturing.errors import TruthFileError
    from deepseek.manufacturing.synthetic import spreadsheet_csv

    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as fh:  # a spreadsheet's BOM or not
        rd, number = spreadsheet_csv(fh)
        if not {"frame", "score"} <= set(rd.fieldnames or []):
            raise TruthFileError(f"{path}: needs the columns frame,score")
        idx, sc = [], []
        line_of: dict[int, int] = {}  # frame: the line that scored it
        for n, r in enumerate(rd, 2):
            try:
                frame = int(r["frame"])
                sc.append(number(r["score"]))
            except (TypeError, ValueError) as exc:
                raise TruthFileError(f"{path}, line {n}: unreadable value ({exc})") from None
            if frame in line_of:
                raise TruthFileError(
                    f"{path}, line {n}: frame {frame} again (scored on line "
                    f"{line_of[frame]}): a file of several runs (stream --append adds each "
                    "run's rows, its frames numbered from 0 again) fits no one truth file; "
                    "evaluate one run's scores, e.g. a recording streamed to a file of its "
                    "own")
            line_of[frame] = n
            idx.append(frame)
    return np.asarray(idx, np.int64), np.asarray(sc, np.float64)


def load_event_files(pred_path: Path, ref_path: Path) -> tuple[list, list[dict[str, Any]]]:
    """``deepseek evaluate defect-events --pred events.jsonl --ref truth.csv``."""
    from deepseek.manufacturing.synthetic import read_truth

    return read_events(pred_path), read_truth(ref_path)


def load_frame_files(pred_path: Path, ref_path: Path) -> tuple[tuple, list[dict[str, Any]]]:
    """``deepseek evaluate defect-frames --pred scores.csv --ref truth.csv``."""
    from deepseek.manufacturing.synthetic import read_truth

    return read_frame_scores(pred_path), read_truth(ref_path)


def events_metric(predictions: Any, references: Any, slack: int = 3,
                  min_width_mm: float = 0.0) -> dict[str, Any]:
    """Registered metric ``defect-events``: event recall over cracks and false alarms."""
    return event_metrics(predictions, references, slack=slack, min_width_mm=min_width_mm)


def frames_metric(predictions: Any, references: Any, threshold: float = 0.5,
                  min_width_mm: float = 0.0) -> dict[str, Any]:
    """Registered metric ``defect-frames``: frame recall, false-detection rate and recall by
    width of per-frame scores against the ground-truth rows."""
    return frame_metrics(predictions, references, threshold, min_width_mm=min_width_mm)


def stream_metric(predictions: Any, references: Any, **options: Any) -> dict[str, Any]:
    """Registered metric ``defect-stream``: ``predictions`` a :class:`StreamReport` (or per
    frame scores), ``references`` the ground-truth rows. Frame recall, false-detection rate,
    recall by width, event recall, latency percentiles, fps and dropped frames."""
    threshold = float(options.get("threshold", 0.5))
    rep = predictions
    if hasattr(rep, "scores"):
        out = frame_metrics((rep.frame_index, rep.scores), references, threshold)
        out.update(event_metrics(rep.events, references))
        out["latency_ms"] = rep.latency_ms
        out["fps"] = rep.fps
        out["frames_dropped"] = rep.source.get("frames_dropped", 0)
        return out
    return frame_metrics(predictions, references, threshold)


def image_auroc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve of image scores against 0/1 labels (the Mann-Whitney
    statistic; tied scores count one half); NaN when one class is absent."""
    s = np.asarray(scores)
    if s.dtype.kind != "f":
        s = s.astype(np.float64)
    y = np.asarray(labels).astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"{len(s)} scores for {len(y)} labels")
    neg = s[~y]
    neg.sort()
    return _auroc_sorted(neg, s[y])


def _auroc_sorted(neg: np.ndarray, pos: np.ndarray) -> float:
    """:func:`image_auroc` from the negatives' scores, sorted, and the positives': each
    positive counts the negatives below it once and those equal to it a half (twice over,
    in whole numbers). A copy of the negatives is the memory it takes, where ranking every
    score took some 60 bytes a score (a pixel AUROC has millions)."""
    if not len(pos) or not len(neg):
        return float("nan")
    twice = int(np.searchsorted(neg, pos, side="left").sum()) + \
        int(np.searchsorted(neg, pos, side="right").sum())
    return twice / 2 / (len(pos) * len(neg))


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval (95 % by default) of a rate of ``hits`` in ``n``; None when
    ``n`` is 0."""
    if n <= 0:
        return None
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


#: how far above the highest good score it may not flag a threshold lies: for a score in
#: (0, 1), a probability, this many logits (``s * (1 - s)`` times it); for any other score
#: (a patch distance), :data:`THRESHOLD_MARGIN_REL` of it. The same photo scored again with
#: another thread count or runtime moves by rounding (up to 8e-6 logits on KolektorSDD's val
#: photos between 1 and 2 threads); one ulp above its score, the threshold would flag that
#: photo on one run and not on another
THRESHOLD_MARGIN = 1e-3
THRESHOLD_MARGIN_REL = 1e-5


def threshold_above(score: float) -> float:
    """The lowest threshold that does not flag ``score`` however the scoring rounds: above it
    by :data:`THRESHOLD_MARGIN` (at least one ulp)."""
    margin = (THRESHOLD_MARGIN * score * (1.0 - score) if 0.0 < score < 1.0
              else THRESHOLD_MARGIN_REL * abs(score))
    return max(float(np.nextafter(score, np.inf)), score + margin)


def lowest_threshold(good_scores: Any, fpr: float) -> float:
    """The lowest threshold that flags at most ``fpr`` of ``good_scores`` (an image is flagged
    when its score is >= the threshold), :func:`threshold_above` the highest good score it
    may not flag; the lowest good score when ``fpr`` allows them all."""
    good = np.sort(np.asarray(good_scores, np.float64))
    k = int(np.floor(fpr * len(good)))   # good images allowed at or over the threshold
    return threshold_above(float(good[len(good) - 1 - k])) if k < len(good) else \
        float(good[0])


def too_few_good(n_good: int, fpr: float) -> str | None:
    """None when ``n_good`` good images can show a false-alarm rate of ``fpr`` (one false
    alarm among them is within it); else the sentence that says they cannot, and where
    :func:`lowest_threshold` then puts the threshold."""
    if fpr <= 0 or n_good * fpr >= 1:  # (a rate of 0: no false alarm, always resolved)
        return None
    return (f"{n_good} good images, too few to resolve a false-alarm rate of {fpr:g} (it needs "
            f"{int(math.ceil(1 / fpr))}): the threshold is above every one of them")


def recall_at_fpr(scores: Any, labels: Any, fpr: float) -> tuple[float, float, float]:
    """(threshold, recall, false-positive rate) at the lowest threshold whose false-positive
    rate on these images is at most ``fpr``."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels).astype(bool)
    if not (~y).any() or not y.any():
        raise ValueError("recall at a false-positive rate needs good and defect images")
    thr = lowest_threshold(s[~y], fpr)
    flag = s >= thr
    return thr, float(flag[y].mean()), float(flag[~y].mean())


def expected_rates(scores: Any, labels: Any, threshold: float) -> dict[str, Any]:
    """What ``threshold`` gives on these images, as stored beside a threshold and printed by
    ``score``: false-positive rate and recall (None without defect images), each with its
    Wilson 95 % interval, and the image counts."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels).astype(bool)
    n_good, n_defect = int((~y).sum()), int(y.sum())
    fp, tp = int((s[~y] >= threshold).sum()), int((s[y] >= threshold).sum())
    return {"recall": tp / n_defect if n_defect else None,
            "false_positive_rate": fp / n_good if n_good else None,
            "recall_ci95": wilson_interval(tp, n_defect),
            "false_positive_rate_ci95": wilson_interval(fp, n_good),
            "defect_images": n_defect, "good_images": n_good}


#: how many images of each kind :func:`threshold_review` names
REVIEW_IMAGES = 5


def threshold_review(paths: Sequence[Any], scores: Any, labels: Any, threshold: float,
                     n: int = REVIEW_IMAGES) -> dict[str, list[dict[str, Any]]]:
    """The images whose labels decide an operating point, for a person to look at:
    ``good_highest``, the ``n`` good images scored highest (those at or over ``threshold`` are
    its counted false alarms, the next ones hold it where it is: a defect the labels call
    good among them raises the threshold for every part), and ``defects_missed``, up to
    ``n`` defect images under ``threshold``, lowest first (a good part labelled as a defect
    among them lowers the recall measured). Each entry: path, score, and whether the
    threshold flags it."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels).astype(bool)
    if len(paths) != len(s) or len(s) != len(y):
        raise ValueError(f"{len(paths)} paths, {len(s)} scores and {len(y)} labels: give one "
                         "of each per image")

    def entry(i: int) -> dict[str, Any]:
        return {"path": str(paths[i]), "score": float(s[i]), "flagged": bool(s[i] >= threshold)}

    good = np.flatnonzero(~y)
    missed = np.flatnonzero(y & (s < threshold))
    return {"good_highest": [entry(i) for i in good[np.argsort(-s[good], kind="stable")][:n]],
            "defects_missed": [entry(i) for i in
                               missed[np.argsort(s[missed], kind="stable")][:n]]}


def upsample_map(pmap: Any, shape: tuple[int, int], stride: float) -> np.ndarray:
    """A cell map (one value per ``stride`` x ``stride`` pixels; the stride need not be a
    whole number) at the image's pixel size, linearly interpolated between cell centres
    and cut to ``shape``."""
    from deepseek.manufacturing.images import require_cv2

    cv2 = require_cv2("pixel metrics")
    m = np.asarray(pmap, np.float32)
    up = cv2.resize(m, (math.ceil(m.shape[1] * stride - 1e-6),
                        math.ceil(m.shape[0] * stride - 1e-6)),
                    interpolation=cv2.INTER_LINEAR)
    h, w = shape
    if up.shape[0] < h or up.shape[1] < w:
        raise ValueError(f"a {m.shape[1]}x{m.shape[0]} map at stride {stride} does not cover "
                         f"a {w}x{h} image")
    return up[:h, :w]


#: pixel samples :class:`PixelMetrics` keeps at most (about 85 MB of values and labels);
#: past it the sampling grid is made coarser for every image alike
MAX_PIXEL_SAMPLES = 1 << 24
#: values kept of a defect region larger than this: its quantiles, so that the share of it
#: at or above a threshold is read within about 1/REGION_VALUES
REGION_VALUES = 4097


class PixelMetrics:
    """Pixel AUROC and AU-PRO (:func:`pixel_metrics`) gathered one image at a time, in
    bounded memory: each image's map and mask are sampled on a grid (every ``step``-th row
    and column) and let go; when the samples pass ``max_samples`` the grid is made twice as
    coarse, for the images already added (every other sample of their grid, which is the
    coarser grid) and those to come, so every image is sampled alike whatever their number
    and size. A defect region keeps all its pixels' values up to :data:`REGION_VALUES`, else
    that many of its quantiles."""

    def __init__(self, fpr_limit: float = 0.3, step: int = 2, levels: int = 200,
                 max_samples: int = MAX_PIXEL_SAMPLES) -> None:
        self.fpr_limit, self.levels, self.max_samples = fpr_limit, levels, max_samples
        self.step = int(step)
        self.samples = 0
        self.images = 0
        self._vals: list[np.ndarray] = []
        self._labs: list[np.ndarray] = []
        self._regions: list[np.ndarray] = []  # each region's values, sorted

    def add(self, pixel_map: np.ndarray, mask: np.ndarray) -> None:
        """One image's map (a value per pixel) and defect mask (non-zero: defect)."""
        from deepseek.manufacturing.images import require_cv2

        m = np.asarray(pixel_map, np.float32)
        k = np.asarray(mask) > 0
        if m.shape != k.shape:
            raise ValueError(f"a map of {m.shape} for a mask of {k.shape}")
        self._vals.append(np.ascontiguousarray(m[::self.step, ::self.step]))
        self._labs.append(np.ascontiguousarray(k[::self.step, ::self.step]))
        self.samples += self._vals[-1].size
        self.images += 1
        while self.samples > self.max_samples and any(v.size > 1 for v in self._vals):
            self.step *= 2
            self._vals = [np.ascontiguousarray(v[::2, ::2]) for v in self._vals]
            self._labs = [np.ascontiguousarray(y[::2, ::2]) for y in self._labs]
            self.samples = sum(v.size for v in self._vals)
        if k.any():
            n, lab = require_cv2("pixel metrics").connectedComponents(k.astype(np.uint8),
                                                                      connectivity=8)
            for r in range(1, n):
                v = np.sort(m[lab == r])
                if len(v) > REGION_VALUES:
                    v = v[np.linspace(0, len(v) - 1, REGION_VALUES).round().astype(np.int64)]
                self._regions.append(v)

    def result(self) -> dict[str, float]:
        """``pixel_auroc``, ``au_pro``, ``regions`` (as :func:`pixel_metrics`) and
        ``pixel_step``, the sampling grid's step at the end."""
        if not self._vals:
            raise ValueError("no image added")
        v = np.concatenate([a.ravel() for a in self._vals])
        y = np.concatenate([a.ravel() for a in self._labs])
        neg = v[~y]
        neg.sort()
        out = {"pixel_auroc": _auroc_sorted(neg, v[y]), "regions": len(self._regions),
               "au_pro": float("nan"), "pixel_step": self.step}
        del v, y
        if not self._regions or not len(neg):
            return out
        fpr_limit = self.fpr_limit
        # thresholds from high to low: quantiles of the defect-free pixels down to fpr_limit
        qs = np.linspace(0.0, fpr_limit, self.levels)
        thr = np.quantile(neg, 1.0 - qs)
        fpr = 1.0 - np.searchsorted(neg, thr, side="left") / len(neg)
        pro = np.array([np.mean([1.0 - np.searchsorted(r, t, side="left") / len(r)
                                 for r in self._regions]) for t in thr])
        keep = fpr <= fpr_limit
        if not keep.any():
            return out
        # the curve from FPR 0 to fpr_limit, held flat beyond its first and last points
        f = np.r_[0.0, fpr[keep], fpr_limit]
        p = np.r_[pro[keep][0], pro[keep], pro[keep][-1]]
        out["au_pro"] = float(np.sum(np.diff(f) * (p[1:] + p[:-1]) / 2) / fpr_limit)
        return out


def pixel_metrics(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                  fpr_limit: float = 0.3, step: int = 2, levels: int = 200,
                  max_samples: int = MAX_PIXEL_SAMPLES) -> dict[str, float]:
    """Localisation quality of pixel maps (each at its image's size) against defect masks.

    * ``pixel_auroc``: ROC AUC over all pixels of all images (every ``step``-th row and column,
      coarser where the samples would pass ``max_samples``: :class:`PixelMetrics`);
    * ``au_pro``: the area under the per-region-overlap curve up to a pixel false-positive
      rate of ``fpr_limit``, divided by ``fpr_limit`` (1 is perfect). Per-region overlap at a
      threshold is the mean, over the connected regions of the masks, of the share of each
      region's pixels at or above it, so a small crack weighs as much as a large one; the
      false-positive rate is over the defect-free pixels. ``levels`` thresholds (quantiles of
      the defect-free pixels' values) trace the curve;
    * ``regions``: the number of defect regions; ``pixel_step``: the grid's step.
    """
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} maps for {len(masks)} masks")
    acc = PixelMetrics(fpr_limit, step, levels, max_samples)
    for m, k in zip(maps, masks):
        acc.add(m, k)
    return acc.result()


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision: the mean of the precision at each positive, ranked by score (NaN
    without positives)."""
    order = np.argsort(-scores, kind="stable")
    lab = labels[order].astype(bool)
    if not lab.any():
        return float("nan")
    tp = np.cumsum(lab)
    precision = tp / np.arange(1, len(lab) + 1)
    return float(precision[lab].mean())
