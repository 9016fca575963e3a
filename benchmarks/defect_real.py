"""Benchmark: crack detection on real part photos (KolektorSDD's train/val split, or CrackForest
cut into tiles), the project's modes beside a texture-feature baseline in the same run.

    python benchmarks/defect_real.py [--data-set kolektorsdd|crackforest] [--data DIR] [--quick]
                                     [--epochs N] [--seeds N] [--views 1|4] [--scale S]
                                     [--crop N] [--rotate any|small]
                                     [--rows cross-fitted,random-negatives,one-model,packaged,
                                             memory,pasted,draem,baseline]

``--data`` is the data set's folder. KolektorSDD (the default set): ``images/{train,val}/
*.jpg`` + ``labels/{train,val}/*.txt``, YOLO polygons, an empty label file meaning a good
part; default ``../shared/data/crack/kolektorsdd``. CrackForest (``--data-set crackforest``,
a second real set of another surface, road asphalt, to check that the figures are not
KolektorSDD's alone): ``image/NNN.jpg`` + ``groundTruth/NNN.mat`` (pixel labels; photos
without ground truth are left out), default ``../shared/data/crack/crackforest``; its 118
labelled 480x320 photos are cut into six 160-px tiles each with their masks, a tile cracked
when any pixel of it is, photos 1-80 train (480 tiles, 379 cracked) and 81-118 val (228
tiles, 194 cracked; consecutive photos share a stretch of road and a light, so the split
keeps them on one side, and a photo's tiles are one group). Its default rows are
cross-fitted, packaged, memory and baseline, and its goals are the recall goal for sets
other than KolektorSDD (>= 0.9 at the stored threshold), the threshold's promise, the spread
over seeds, the time and the baseline. Rows, all scored image by image on the val split
(:mod:`deepseek.manufacturing.score`):

* ``supervised, cross-fitted`` (the default of ``train --folder``): 5 folds of the train
  split's groups (look-alike photos joined), one model per fold from the packaged weights,
  the epoch and the threshold (false-positive rate <= 1 %) set on the out-of-fold scores of
  all the train images (304 on KolektorSDD: its train split holds 16 images that are
  byte-for-byte copies of 16 others, counted once as the training counts them), the fold
  models averaged into the one model
  scored; every image scored as it is (``--views 4``: trained with ``train --folder --views
  4``, every image scored as it is and flipped three ways, the logits averaged, as ``score``
  does with such a model). Trained once per seed (``--seeds``, 5): every figure is given as
  mean, min and max over the seeds, never one run. Beside them, the same models scored under
  the other view count (``four_views_*``; ``one_view_*`` with ``--views 4``): val AUROC and
  best recall at <= 1 %, and with ``--views 4`` also recall and FPR at the threshold set the
  same way on the one-view out-of-fold scores. And the same models on the val photos turned
  a quarter (``turned_quarter_*``: AUROC, recall and FPR at the stored threshold), so that
  every crack runs another way than the training images' cracks (KolektorSDD's all run
  within 33 degrees of the photo's width): what a model finds of cracks running other ways
  than its training cracks (``--rotate small``, the default, turns the training crops up to
  10 degrees; ``--rotate any`` every way, and is then held to a goal: turned, val AUROC
  less than 0.02 below upright). And each model calibrated as a line would calibrate it
  (``calibrated_on_val_halves_*``): val's parts dealt into two halves by the training's fold
  rule (look-alike photos joined), ``calibrate --all-good`` (<= 1 % false alarms) on one
  half's good photos, the threshold tried on the other half, both ways round, the recall
  and false-alarm rate pooled (no crack used to set it; with about 35 good photos a half, 1 %
  cannot be resolved and the threshold lies above all of them, as ``calibrate`` warns).
  And the val photos' files sent as they are to ``deepseek serve`` of each model's photo
  decision over gRPC (``served_files``), as a line sends them: held to ``score``'s
  decisions, boxes and scores (goals); and written one by one into a folder ``score
  --watch`` watches (``watched_folder``: the same answers, a goal, and the time from each
  file's rename into the folder to its result).
  The supervised goals are read from this row
  (the good-only goals from the memory, the default, and from the pasted row), among them
  whether the stored threshold keeps its promise on val: its false alarms at or below the
  upper end of their expected 95 % interval, its recall at or above the lower end, on every
  seed;
* ``supervised, cross-fitted, negatives at random`` (``--hard-negatives 0``): the same, with
  every negative crop placed at random instead of half of them on the hottest spots the
  packaged weights find on the good training images; the same seeds, so the difference
  between the two rows is the hard negatives' effect;
* ``supervised, one model (--folds 1)``: the previous default, one model, the best epoch and
  the threshold on a fifth of the train groups held out; the same seeds;
* ``supervised (packaged weights, synthetic line only)``: as shipped, never trained on a real
  part (threshold for <= 1 % on the train split);
* ``good-only memory``: ``train --good-only`` fitted on the train split's good images (10,000
  patches, a uniform sample; the threshold for <= 1 % false alarms set on out-of-fold scores
  of every good image, 5 folds of groups; an image's score the mean of its top 0.2 % patch
  distances plus the crack model's share, ``--crack-weight 0.5``); beside it the memory
  alone (``--crack-weight 0``, the default before 5 Dec 2026), the default with a greedy
  k-centre coreset of patches (``--memory-selection coreset``) and the default scored by
  its largest patch distance alone (``--memory-top-fraction 0``); each also on the train
  split (``train_auroc_out_of_fold``: its good images' out-of-fold scores, those the
  threshold was set on, against its cracked images scored by the memory);
* ``good-only, pasted cracks``: ``train --good-only --method pasted`` on the same good
  images (the packaged weights fine-tuned on them with synthetic cracks pasted in,
  cross-fitted over 5 folds of groups, the threshold for <= 1 % false alarms set on the
  good images' out-of-fold scores), 4 epochs (``--quick``: 2), once per seed (``--seeds``)
  as mean, min and max. Its pasted kind (cracks only), darkening (35-70 %) and learning
  rate (3e-4) were chosen while looking at this val split (one seed, one model), so its
  figure is optimistic by that choice;
* ``good-only, DRAEM-style``: ``train --good-only --method draem`` on the same good images
  (a reconstructive and a discriminative network trained from scratch with synthetic cracks
  pasted in, one pair per fold of 3 folds of groups, 1,000 steps each (``--quick``: 300),
  the threshold for <= 1 % false alarms set on the out-of-fold scores, the written model the
  mean of the fold models' maps), once per seed (``--seeds``) as mean, min and max. Its
  pasted kind (cracks only) was chosen while looking at this val split (one model, one
  seed), so its figure is optimistic by that choice;
* ``baseline: HOG + LBP + black-hat + logistic regression``: scikit-image HOG on the image at
  1/8 scale, a uniform-LBP histogram at 1/4 scale and black-hat (morphological closing minus
  image, 15x15) statistics, standardised, a class-balanced scikit-learn logistic regression
  fitted on the train split: its feature set (all, LBP + black-hat, or black-hat) and its
  regularisation are chosen by 5-fold cross-validated AUROC there, and its threshold is set
  on out-of-fold train scores (needs scikit-image, in requirements-dev.txt).

For each: val image AUROC, recall and false-positive rate at the row's threshold (for the
trained rows the one stored with the weights, beside the recall and false-alarm rate
training expected there, with Wilson 95 % intervals), the best recall any threshold gives at
a val false-positive rate <= 1 % (an upper bound, chosen on val), and the fitting time; for the
trained rows and the memory also pixel AUROC and AU-PRO (FPR <= 0.3) of their maps against
the val polygons (:func:`deepseek.manufacturing.metrics.pixel_metrics`); for every trained
run and model each val photo's score by file name (``val_scores``), each val crack's labelled
pixels (``val_crack_pixels``) and, for every row trained per seed, the recall at its stored
threshold in four ranges of those sizes, each holding about a quarter of the val cracks
(``val_recall_by_crack_pixels``: what a small or a large crack is caught at). ``--quick`` keeps
every image of the rarer class (KolektorSDD: cracked; CrackForest tiles: good) and every 4th
of the other in each split, trains for 2 epochs with 2 seeds (sizes in the output).
``--rows`` runs some rows only (the goals of the rows run).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, goal  # noqa: E402

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "crack" / "kolektorsdd"


CRACKFOREST = DEFAULT.parent / "crackforest"
#: CrackForest's split: photos 1-80 train, 81-118 val (consecutive numbers were taken on one
#: stretch of road under one light, so a block split keeps look-alikes on one side)
CRACKFOREST_TRAIN_LAST = 80
#: CrackForest photos cut into tiles of this size (a 480x320 photo gives 3x2 tiles)
TILE = 160


@dataclass(frozen=True)
class DataSet:
    """A real crack set the benchmark knows: where it lives and the baseline's image sizes
    (cv2 ``(width, height)``: HOG at about 1/8 of a KolektorSDD photo, LBP at 1/4)."""

    name: str
    default: Path
    hog_size: tuple[int, int]
    lbp_size: tuple[int, int]
    rows: tuple[str, ...]


def split(root: Path, name: str, every: int
          ) -> tuple[list[Path], np.ndarray, list[Path], dict, int]:
    """The split's images and labels, read by the training's own label rules (every image of
    the rarer class and every ``every``-th of the other; copies of an image counted once),
    the files a training folder of them needs beside the images (label files or masks, and
    the set-aside copies with theirs, so that the training sets them aside itself), each
    cracked image's crack pixels by file name, and how many copies were set aside."""
    from deepseek.manufacturing.labelled import read_labelled

    items = read_labelled(root / "images" / name)
    rare = sum(i.defect for i in items) * 2 <= len(items)
    imgs, labels, beside, pixels = [], [], [], {}
    n_common = copies = 0
    for it in items:
        if it.defect != rare:
            n_common += 1
            if (n_common - 1) % every:
                continue
        imgs.append(it.path)
        labels.append(int(it.defect))
        copies += len(it.copies)
        beside += [one.label_path for one in (it, *it.copies) if one.label_path is not None]
        beside += [c.path for c in it.copies]
        if it.defect and it.mask is not None:
            pixels[it.path.name] = int(it.mask.sum())
    return imgs, np.array(labels), beside, pixels, copies


def crackforest_tiles(src: Path, out: Path) -> Path:
    """CrackForest (``image/NNN.jpg`` + ``groundTruth/NNN.mat``, MATLAB struct
    ``groundTruth.Segmentation``: 1 background, 2 crack; read by
    :func:`deepseek.manufacturing.labelled.mat_mask`) cut into TILE-pixel tiles with their
    masks beside them (``images/{train,val}/NNN_rRcC.png`` + ``..._mask.png``); a tile is cracked
    when any of its pixels is crack. Photos without ground truth are left out; the name up to
    the ``_`` keeps a photo's tiles in one group. Returns ``out``."""
    import cv2

    from deepseek.manufacturing.errors import ManufacturingError
    from deepseek.manufacturing.labelled import mat_mask

    mats = sorted((src / "groundTruth").glob("*.mat"))
    if not mats:
        sys.exit(f"no CrackForest at {src}: pass --data DIR (image/NNN.jpg, groundTruth/NNN.mat)")
    for mat in mats:
        try:  # label 2, as train --folder reads it (the other labels as background)
            crack = mat_mask(mat)[0]
        except ManufacturingError as e:
            sys.exit(str(e))
        photo = src / "image" / f"{mat.stem}.jpg"
        img = cv2.imread(str(photo))
        if img is None or img.shape[:2] != crack.shape:
            sys.exit(f"{photo}: missing, unreadable or not the size of {mat.name} "
                     f"({crack.shape[1]}x{crack.shape[0]})")
        side = "train" if int(mat.stem) <= CRACKFOREST_TRAIN_LAST else "val"
        folder = out / "images" / side
        folder.mkdir(parents=True, exist_ok=True)
        for r in range(crack.shape[0] // TILE):
            for c in range(crack.shape[1] // TILE):
                cut = np.s_[r * TILE:(r + 1) * TILE, c * TILE:(c + 1) * TILE]
                stem = folder / f"{mat.stem}_r{r}c{c}"
                cv2.imwrite(f"{stem}.png", img[cut])
                cv2.imwrite(f"{stem}_mask.png", crack[cut] * 255)
    return out


def threshold_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float) -> float:
    """The lowest threshold whose false-positive rate on (scores, labels) is <= fpr."""
    from deepseek.manufacturing.metrics import recall_at_fpr

    return recall_at_fpr(scores, labels, fpr)[0]


def at(scores: np.ndarray, labels: np.ndarray, thr: float) -> dict[str, float]:
    flag = scores >= thr
    return {"recall": float(flag[labels == 1].mean()), "fpr": float(flag[labels == 0].mean())}


def size_bands(pixels: dict[str, int], bands: int = 4) -> list[tuple[int, int]]:
    """Up to ``bands`` ranges of labelled crack pixels (inclusive), each holding about as many
    of the cracked images as the others (quantiles of their sizes; fewer ranges when sizes
    repeat)."""
    if not pixels:
        return []
    v = np.sort(np.array(list(pixels.values())))
    cuts = sorted({int(v[min(len(v) - 1, (len(v) * k) // bands)]) for k in range(1, bands)})
    lows = [int(v[0]), *[c for c in cuts if c > v[0]]]
    highs = [lo - 1 for lo in lows[1:]] + [int(v[-1])]
    return list(zip(lows, highs))


def recall_by_size(rows: dict, pixels: dict[str, int]) -> dict:
    """For each row scored per seed with a stored threshold, the val cracks caught at it in
    each size range of :func:`size_bands`: how many there are and the fraction caught, per
    seed and on average."""
    out: dict = {}
    bands = size_bands(pixels)
    for name, row in rows.items():
        runs = [r for r in row.get("runs", []) if "val_scores" in r and "threshold" in r]
        if not runs or not bands:
            continue
        got = []
        for lo, hi in bands:
            names = [n for n, px in pixels.items() if lo <= px <= hi]
            caught = [sum(r["val_scores"][n] >= r["threshold"] for n in names) / len(names)
                      for r in runs]
            got.append({"crack_pixels": [lo, hi], "cracks": len(names),
                        "recall_at_stored_threshold": round(float(np.mean(caught)), 4),
                        "per_seed": [round(c, 4) for c in caught]})
        out[name] = got
    return out


def per_image(results: list) -> dict[str, float]:
    """Each scored photo's score by file name: what a later look at the misses needs without
    training again."""
    return {Path(r.path).name: round(float(r.score), 6) for r in results}


def val_halves(root: Path, va_x: list[Path], va_y: np.ndarray, work: Path
               ) -> tuple[np.ndarray, list[Path]] | str:
    """Each val image's half (0 or 1), for a threshold calibrated on one half's good parts and
    tried on the other half: the val split's parts (look-alike photos joined, as training
    joins them) dealt into two halves by the training's fold rule, so that each holds
    cracked parts and good ones and no part is in both; and each half's good photos linked
    into a folder of their own under ``work``, as a line's folder of good parts. A string
    (why not) where the val split has too few parts of either kind."""
    from deepseek.manufacturing.errors import ManufacturingError
    from deepseek.manufacturing.labelled import fold_groups, join_look_alikes, read_labelled

    items = read_labelled(root / "images" / "val")
    join_look_alikes(items)
    by_path = {it.path: it for it in items}
    try:
        halves = fold_groups([by_path[p] for p in va_x], 2, seed=0)
    except ManufacturingError as e:
        return str(e)
    folders = [work / f"line-half-{h}" for h in (0, 1)]
    for p, y, h in zip(va_x, va_y, halves):
        if not y:
            folders[h].mkdir(parents=True, exist_ok=True)
            (folders[h] / p.name).symlink_to(p)
    return halves, folders


def calibrated_halves(model: Path | str, va_y: np.ndarray, va_s: np.ndarray,
                      halves: np.ndarray, folders: list[Path]) -> dict:
    """``model`` calibrated as a line would (``deepseek manufacturing calibrate FOLDER
    --all-good``, the same target of <= 1 % false alarms) on the good val parts of one half
    (``folders``, ``halves``: :func:`val_halves`) and applied to the other half's photos
    (``va_s``: the model's val scores), both ways round: the recall and false-alarm rate
    pooled over the two, every val photo scored at a threshold set on parts other than its
    own, the cracks never used."""
    from deepseek.manufacturing.calibration import calibrate

    y = np.asarray(va_y, bool)
    out: dict = {"halves": []}
    caught = flagged = 0
    for h, folder in enumerate(folders):
        cal = calibrate(folder, model, target_fpr=0.01, all_good=True, progress=False)
        test = halves != h
        hit = (va_s >= cal["threshold"]) & test
        c, f = int((hit & y).sum()), int((hit & ~y).sum())
        caught, flagged = caught + c, flagged + f
        out["halves"].append({
            "calibration_good_images": cal["expected"]["good_images"],
            "threshold": cal["threshold"],
            "tried_on": {"cracked": int((test & y).sum()), "good": int((test & ~y).sum())},
            "caught": c, "flagged": f, "calibrate_warnings": cal["warnings"]})
    out["val_recall"] = round(caught / max(int(y.sum()), 1), 4)
    out["val_fpr"] = round(flagged / max(int((~y).sum()), 1), 4)
    return out


def served_replay(model: Path | str, paths: list[Path], results: list) -> dict:
    """The val photos' files (JPEG as they are) sent one by one over gRPC to ``deepseek
    serve`` of the run's photo decision (``model.photo.onnx``, which ``train`` writes),
    started in this process, against ``score``'s ``results`` for them: the decisions, the
    largest score difference and the boxes; the bytes sent against those of the gray
    pixels."""
    import tritonclient.grpc as grpcclient

    from deepseek.manufacturing.runtime import photo_beside
    from deepseek.serving import DeepSeekServing

    photo = photo_beside(model)
    got = []
    t0 = time.perf_counter()
    with DeepSeekServing(models={"line": str(photo)}, port=0, grpc_port=0,
                         calibrate=False) as server:
        client = grpcclient.InferenceServerClient(server.grpc_address)
        for p in paths:
            inp = grpcclient.InferInput("image", [1], "BYTES")
            inp.set_data_from_numpy(np.array([p.read_bytes()], dtype=object))
            out = client.infer("line", [inp])
            got.append((float(out.as_numpy("score")[0]), bool(out.as_numpy("defect")[0]),
                        out.as_numpy("box")[0].tolist()))
    seconds = time.perf_counter() - t0
    return {"photos": len(paths), "seconds": round(seconds, 2),
            "decisions_equal": all(g[1] == r.defect for g, r in zip(got, results)),
            "boxes_equal": all(g[2] == (list(r.box) if r.defect else [-1] * 4)
                               for g, r in zip(got, results)),
            "max_score_difference": float(max(abs(g[0] - r.score)
                                              for g, r in zip(got, results))),
            "bytes_sent": sum(p.stat().st_size for p in paths),
            "bytes_as_pixels": sum(r.width * r.height for r in results)}


def watched_replay(model: Path | str, paths: list[Path], results: list) -> dict:
    """The val photos' files written one by one into a folder ``score --watch`` watches
    (:func:`~deepseek.manufacturing.watch.watch_folder`, told by the system), each copied
    beside it and renamed in as a camera that writes then renames does, against ``score``'s
    ``results``: the decisions, boxes and largest score difference, and the time from each
    rename to its result."""
    import os
    import queue
    import shutil
    import tempfile
    import threading

    from deepseek.manufacturing.score import Scorer
    from deepseek.manufacturing.watch import watch_folder

    got: queue.Queue = queue.Queue()
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="watched-") as tmp:
        folder, stage = Path(tmp) / "line", Path(tmp) / "stage"
        folder.mkdir()
        stage.mkdir()
        watcher = threading.Thread(target=watch_folder, daemon=True, kwargs=dict(
            scorer=Scorer(model), root=folder, emit=lambda r: got.put((time.perf_counter(), r)),
            stop=stop))
        watcher.start()
        waits, out = [], []
        try:
            for p in paths:
                shutil.copy(p, stage / p.name)
                t0 = time.perf_counter()
                os.rename(stage / p.name, folder / p.name)
                t1, r = got.get(timeout=120)
                waits.append(1000 * (t1 - t0))
                out.append(r)
        finally:
            stop.set()
            watcher.join(timeout=60)
    return {"photos": len(paths),
            "decisions_equal": all(g.defect == r.defect for g, r in zip(out, results)),
            "boxes_equal": all(g.box == r.box for g, r in zip(out, results)),
            "max_score_difference": float(max(abs(g.score - r.score)
                                              for g, r in zip(out, results))),
            "rename_to_result_ms": {"p50": round(float(np.percentile(waits, 50)), 1),
                                    "p90": round(float(np.percentile(waits, 90)), 1),
                                    "max": round(float(max(waits)), 1)}}


def on_val(model: Path | str, thr: float, va_x: list, va_y: np.ndarray, data: Path) -> dict:
    """``model`` (weights, a memory or a DRAEM model) scored on the val split: AUROC, recall
    and false-positive rate at ``thr``, the best recall at <= 1 %, its maps' pixel figures and
    the scoring time per image."""
    from sklearn.metrics import roc_auc_score

    from deepseek.manufacturing.metrics import recall_at_fpr
    from deepseek.manufacturing.score import evaluate_scores, score_images

    t0 = time.perf_counter()
    va_r = score_images(va_x, model, progress=False)
    t_score = time.perf_counter() - t0
    va_s = np.array([r.score for r in va_r])
    got = at(va_s, va_y, thr)
    return {"val_auroc": round(float(roc_auc_score(va_y, va_s)), 4),
            "val_recall": got["recall"], "val_fpr": round(got["fpr"], 4),
            "val_best_recall_at_fpr_0.01": recall_at_fpr(va_s, va_y, 0.01)[1],
            "val_score_seconds_per_image": round(t_score / len(va_x), 3),
            "val_pixel": evaluate_scores(va_r, data / "images" / "val")["pixel"],
            "val_scores": per_image(va_r)}


ROWS = ("cross-fitted", "random-negatives", "one-model", "packaged", "memory", "pasted",
        "draem", "baseline")
SUP = "supervised, cross-fitted (5 folds, fold models averaged; the default)"
#: the key of a run's figures under the view count it was not trained with
VIEW_KEYS = {1: "one_view", 4: "four_views"}
RANDOM = "supervised, cross-fitted, negatives at random (--hard-negatives 0)"
ONE = "supervised, one model and a held-out fifth (--folds 1)"
BASE = "baseline: HOG + LBP + black-hat + logistic regression"
MEM = "good-only memory"
PASTED = "good-only, pasted cracks (--method pasted)"
DRAEM = "good-only, DRAEM-style (--method draem)"

#: column ranges of baseline_features: HOG (4788), then the LBP histogram (10), then the
#: black-hat statistics (8)
FEATURE_SETS = {"hog+lbp+black-hat": slice(None), "lbp+black-hat": slice(-18, None),
                "black-hat": slice(-8, None)}

DATA_SETS = {
    "kolektorsdd": DataSet("KolektorSDD", DEFAULT, (64, 160), (125, 312), ROWS),
    # tiles of 160 px: HOG on 80x80 (10x10 cells), LBP at full size
    "crackforest": DataSet("CrackForest tiles", CRACKFOREST, (80, 80), (TILE, TILE),
                           ("cross-fitted", "packaged", "memory", "baseline")),
}


def turned_copies(paths: list[Path], out: Path) -> list[Path]:
    """Each photo turned a quarter (counter-clockwise), written losslessly to ``out`` under
    its own stem: the val split with every crack running another way."""
    import cv2

    from deepseek.manufacturing.images import read_gray

    out.mkdir(parents=True, exist_ok=True)
    got = []
    for p in paths:
        q = out / f"{p.stem}.png"
        if not cv2.imwrite(str(q), np.ascontiguousarray(np.rot90(read_gray(p)))):
            raise OSError(f"could not write {q}")
        got.append(q)
    return got


def baseline_features(path: Path, data_set: DataSet) -> np.ndarray:
    import cv2
    from skimage.feature import hog, local_binary_pattern

    from deepseek.manufacturing.score import read_gray

    img = read_gray(path)
    small = cv2.resize(img, data_set.hog_size, interpolation=cv2.INTER_AREA)
    h = hog(small, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2))
    lbp = local_binary_pattern(cv2.resize(img, data_set.lbp_size, interpolation=cv2.INTER_AREA),
                               8, 1, method="uniform")
    lbp_hist = np.bincount(lbp.astype(np.int64).ravel(), minlength=10) / lbp.size
    closed = cv2.morphologyEx(img, cv2.MORPH_CLOSE, np.ones((15, 15), np.uint8))
    bh = (closed.astype(np.float32) - img).ravel()
    top = np.sort(bh)[-max(1, bh.size // 100):]
    stats = [bh.mean(), bh.std(), np.percentile(bh, 99), np.percentile(bh, 99.9), top.mean(),
             bh.max(), float((bh > 20).mean()), float((bh > 40).mean())]
    return np.concatenate([h, lbp_hist, np.asarray(stats, np.float32)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-set", choices=sorted(DATA_SETS), default="kolektorsdd",
                    help="kolektorsdd: its train/val split, photo by photo; crackforest: its "
                    "118 labelled road photos cut into 160-px tiles, photos 1-80 train, 81-118 "
                    "val [kolektorsdd]")
    ap.add_argument("--data", type=Path, default=None,
                    help="the data set's folder [../shared/data/crack/<data set>]")
    ap.add_argument("--quick", action="store_true",
                    help="every image of the rarer class (KolektorSDD: cracked, CrackForest "
                    "tiles: good) and every 4th of the other in each split, 2 epochs")
    ap.add_argument("--epochs", type=int, default=None,
                    help="supervised training epochs [5, as train; --quick: 2]")
    ap.add_argument("--seeds", type=int, default=None,
                    help="training seeds per supervised row [5; --quick: 2]")
    ap.add_argument("--views", type=int, choices=(1, 4), default=1,
                    help="the supervised rows trained with train --folder --views N [1, as "
                    "train]; the same models are also scored on val under the other count")
    ap.add_argument("--scale", type=float, default=None,
                    help="the supervised rows trained with train --folder --scale S [as train]")
    ap.add_argument("--crop", type=int, default=None,
                    help="the supervised rows trained with train --folder --crop N (a "
                    "multiple of 16) [as train: 160]")
    ap.add_argument("--rotate", choices=("any", "small"), default=None,
                    help="the supervised rows trained with train --folder --rotate R [as "
                    "train: small]")
    ap.add_argument("--rows", default=None,
                    help=f"comma-separated rows to run [KolektorSDD: {','.join(ROWS)}; "
                    f"CrackForest: {','.join(DATA_SETS['crackforest'].rows)}]")
    args = ap.parse_args()
    data_set = DATA_SETS[args.data_set]
    args.data = args.data or data_set.default
    args.rows = args.rows or ",".join(data_set.rows)
    want = {r.strip() for r in args.rows.split(",") if r.strip()}
    if not want or want - set(ROWS):
        sys.exit(f"--rows {args.rows!r}: choose from {', '.join(ROWS)}")
    epochs = args.epochs or (2 if args.quick else 5)
    seeds = args.seeds or (2 if args.quick else 5)
    if args.data_set == "crackforest" and not any((args.data / "groundTruth").glob("*.mat")):
        sys.exit(f"no CrackForest at {args.data}: pass --data DIR (image/NNN.jpg, "
                 "groundTruth/NNN.mat)")
    if args.data_set == "kolektorsdd" and not (args.data / "images" / "train").is_dir():
        sys.exit(f"no KolektorSDD at {args.data}: pass --data DIR (images/{{train,val}}, "
                 "labels/{train,val})")
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="defect_real-"))
    if args.data_set == "crackforest":
        args.data = crackforest_tiles(args.data, work / "tiles")
    from sklearn.metrics import roc_auc_score

    from deepseek.manufacturing.metrics import recall_at_fpr
    from deepseek.manufacturing.score import evaluate_scores, score_images

    every = 4 if args.quick else 1
    tr_x, tr_y, tr_beside, _, tr_copies = split(args.data, "train", every)
    va_x, va_y, _, va_pixels, va_copies = split(args.data, "val", every)
    rows: dict[str, dict] = {}

    # supervised training on the train split's images and labels (polygons or masks, linked
    # at the same places under the work folder), from the packaged weights
    tree = work / "data" / "images" / "train"
    for p in [*tr_x, *tr_beside]:
        link = work / "data" / p.relative_to(args.data)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(p)
    from deepseek.manufacturing.metrics import wilson_interval
    from deepseek.manufacturing.training import train_model

    # written once for the supervised rows: the val photos turned a quarter, and the val
    # parts in two halves (each model calibrated on one half's good parts, as a line
    # calibrates on its own, and tried on the other)
    trained = want & {"cross-fitted", "one-model", "random-negatives"}
    turned = turned_copies(va_x, work / "turned") if trained else []
    halves = val_halves(args.data, va_x, va_y, work / "line") if trained else None

    def supervised(folds: int, seed: int, hard: float | None = None) -> dict:
        t0 = time.perf_counter()
        more = {} if hard is None else {"hard_negatives": hard}
        if args.scale is not None:
            more["scale"] = args.scale
        if args.crop is not None:
            more["crop"] = args.crop
        if args.rotate is not None:
            more["rotate"] = args.rotate
        res = train_model(work / f"f{folds}-s{seed}-h{hard}", folder=tree, epochs=epochs,
                          init="packaged", progress=False, target_fpr=0.01, folds=folds,
                          seed=seed, views=args.views, **more)
        t_fit = time.perf_counter() - t0
        va_r = score_images(va_x, res["model"], progress=False)
        va_s = np.array([r.score for r in va_r])
        served = served_replay(res["model"], va_x, va_r)
        watched = watched_replay(res["model"], va_x, va_r)
        got = at(va_s, va_y, res["threshold"])
        n_hit = int(round(got["recall"] * va_y.sum()))
        best = recall_at_fpr(va_s, va_y, 0.01)
        # the same model scored under the other view count: what the flips add (with
        # --views 4 the one-view out-of-fold scores give that scoring its own threshold)
        other = 1 if args.views == 4 else 4
        alt = np.array([r.score for r in score_images(va_x, res["model"], progress=False,
                                                      views=other)])
        oof = res.get("out_of_fold_scores") or []
        alt_at = None
        if oof and all("score_one_view" in o for o in oof):  # its threshold, the same rule
            thr1 = threshold_at_fpr(np.array([o["score_one_view"] for o in oof]),
                                    np.array([o["defect"] for o in oof], np.float64), 0.01)
            alt_at = {"threshold": thr1, **at(alt, va_y, thr1)}
        # the val photos turned a quarter: every crack runs another way than in training
        tq = np.array([r.score for r in score_images(turned, res["model"], progress=False)])
        tq_at = at(tq, va_y, res["threshold"])
        own = (calibrated_halves(res["model"], va_y, va_s, *halves)
               if isinstance(halves, tuple) else {"skipped": halves})
        return {"seed": seed, "val_auroc": round(float(roc_auc_score(va_y, va_s)), 4),
                "views": res.get("views"), "scale": res.get("scale"), "crop": res.get("crop"),
                "rotate": res.get("rotate"),
                "turned_quarter": {"val_auroc": round(float(roc_auc_score(va_y, tq)), 4),
                                   "val_recall": tq_at["recall"],
                                   "val_fpr": round(tq_at["fpr"], 4)},
                **({"smaller_than_crop": res["smaller_than_crop"]}
                   if "smaller_than_crop" in res else {}),
                VIEW_KEYS[other]: {
                    "val_auroc": round(float(roc_auc_score(va_y, alt)), 4),
                    "val_best_recall_at_fpr_0.01": recall_at_fpr(alt, va_y, 0.01)[1],
                    "at_its_threshold": alt_at,
                    "oof_auroc_by_views": res.get("oof_auroc_by_views")},
                "val_recall": got["recall"], "val_fpr": round(got["fpr"], 4),
                "val_recall_ci95": wilson_interval(n_hit, int(va_y.sum())),
                "served_files": served,
                "watched_folder": watched,
                "calibrated_on_val_halves": own,
                "expected": res["expected"], "threshold": res["threshold"],
                "val_best_recall_at_fpr_0.01": best[1],
                "expected_recall": res["expected"]["recall"],
                "train_fit_seconds": round(t_fit, 1),
                "fit_seconds_by_stage": {**(res.get("stage_seconds") or {}),
                                         "hard_negative_mining":
                                             res["hard_negatives"].get("seconds")},
                "epoch": res.get("epoch") or max(res["history"],
                                                 key=lambda h: h["val_select"])["epoch"],
                "val_pixel": evaluate_scores(va_r, args.data / "images" / "val")["pixel"],
                "val_scores": per_image(va_r)}

    def stats(got: list) -> dict:
        v = np.array(got, np.float64)
        return {"mean": round(float(v.mean()), 4), "min": round(float(v.min()), 4),
                "max": round(float(v.max()), 4), "spread": round(float(v.max() - v.min()), 4)}

    def spread(runs: list[dict]) -> dict:
        out: dict = {"seeds": len(runs), "runs": runs}
        for k in ("val_auroc", "val_recall", "val_fpr", "val_best_recall_at_fpr_0.01",
                  "expected_recall", "train_fit_seconds"):
            if any(r.get(k) is None for r in runs):
                continue
            out[k] = stats([r[k] for r in runs])
        if all("val_recall" in r.get("calibrated_on_val_halves", {}) for r in runs):
            for k in ("val_recall", "val_fpr"):
                out[f"calibrated_on_val_halves_{k}"] = stats(
                    [r["calibrated_on_val_halves"][k] for r in runs])
        if all("turned_quarter" in r for r in runs):
            for k in ("val_auroc", "val_recall", "val_fpr"):
                out[f"turned_quarter_{k}"] = stats([r["turned_quarter"][k] for r in runs])
        for key in VIEW_KEYS.values():  # the same models under the other view count
            if not all(key in r for r in runs):
                continue
            for k in ("val_auroc", "val_best_recall_at_fpr_0.01", "val_recall", "val_fpr"):
                got = [r[key][k] if k in r[key] else
                       (r[key]["at_its_threshold"] or {}).get(k.replace("val_", ""))
                       for r in runs]
                if any(g is None for g in got):
                    continue
                out[f"{key}_{k}"] = stats(got)
        return out

    for folds, name in {5: SUP, 1: ONE}.items():
        if ("cross-fitted" if folds > 1 else "one-model") in want:
            rows[name] = spread([supervised(folds, seed) for seed in range(seeds)])
    if "random-negatives" in want:
        rows[RANDOM] = spread([supervised(5, seed, 0.0) for seed in range(seeds)])

    if "packaged" in want:
        packaged(rows, tr_x, tr_y, va_x, va_y)
    good = work / "good"
    good.mkdir()
    for p, y in zip(tr_x, tr_y):
        if not y:
            (good / p.name).symlink_to(p)
    if "memory" in want:
        memory(rows, good, work, va_x, va_y, args.data,
               [p for p, y in zip(tr_x, tr_y) if y])
    if "pasted" in want:
        from deepseek.manufacturing.training import train_good_only

        pasted_epochs = 2 if args.quick else 4

        def pasted_run(seed: int) -> dict:
            t0 = time.perf_counter()
            res = train_good_only(work / f"pasted-s{seed}", good, epochs=pasted_epochs,
                                  seed=seed, target_fpr=0.01, progress=False)
            t_fit = time.perf_counter() - t0
            return {"seed": seed, "expected": res["expected"], "pasted": res["pasted"],
                    "threshold": res["threshold"], "epochs": pasted_epochs,
                    "epoch": res["epoch"], "train_fit_seconds": round(t_fit, 1),
                    **on_val(res["model"], res["threshold"], va_x, va_y, args.data)}

        rows[PASTED] = spread(
            [pasted_run(seed) for seed in range(seeds)])
    if "draem" in want:
        rows[DRAEM] = spread([draem_run(good, work, va_x, va_y, args.data, seed,
                                        300 if args.quick else 1000)
                              for seed in range(seeds)])
    if "baseline" in want:
        baseline(rows, tr_x, tr_y, va_x, va_y, data_set)
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    results = summary(rows, tr_x, tr_y, va_x, va_y, args.quick, epochs, seeds, data_set)
    # images that are copies of another (equal pixels), counted once (not in the sizes above)
    results["sizes"]["copies_set_aside"] = {"train": tr_copies, "val": va_copies}
    # each val crack's size, to read the rows' val_scores by it, and what each row's stored
    # threshold catches of the val cracks by size (small cracks may be what holds recall)
    results["val_crack_pixels"] = va_pixels
    results["val_recall_by_crack_pixels"] = recall_by_size(rows, va_pixels)
    emit("defect_real", results, goals(rows, seeds, data_set))


def packaged(rows: dict, tr_x: list, tr_y: np.ndarray, va_x: list, va_y: np.ndarray) -> None:
    """The supervised mode with the packaged weights (synthetic line only)."""
    from sklearn.metrics import roc_auc_score

    from deepseek.manufacturing.score import score_images

    t0 = time.perf_counter()
    tr_s = np.array([r.score for r in score_images(tr_x, progress=False)])
    va_s = np.array([r.score for r in score_images(va_x, progress=False)])
    thr = threshold_at_fpr(tr_s, tr_y, 0.01)
    rows["supervised (packaged weights, synthetic line only)"] = {
        "val_auroc": float(roc_auc_score(va_y, va_s)), "threshold": thr,
        "train_fit_seconds": 0.0, "score_seconds": round(time.perf_counter() - t0, 1),
        **{f"val_{k}": v for k, v in at(va_s, va_y, thr).items()}}


def memory(rows: dict, good: Path, work: Path, va_x: list, va_y: np.ndarray, data: Path,
           cracked: list) -> None:
    """The good-only memory on the train split's good images: the default (a uniform sample
    of patches, the mean of the top 0.2 % patch distances, plus the crack model's share), the
    memory alone (``--crack-weight 0``), a greedy coreset of the same size, and the default
    scored by its largest patch distance alone; each also on the train split (its good
    images' out-of-fold scores against its ``cracked`` images scored by the memory)."""
    from sklearn.metrics import roc_auc_score

    from deepseek.manufacturing.anomaly import CRACK_WEIGHT, TOP_FRACTION, fit_memory
    from deepseek.manufacturing.images import read_gray

    for selection, top, crack in (("uniform", TOP_FRACTION, CRACK_WEIGHT),
                                  ("uniform", TOP_FRACTION, 0.0),
                                  ("coreset", TOP_FRACTION, CRACK_WEIGHT),
                                  ("uniform", 0.0, CRACK_WEIGHT)):
        t0 = time.perf_counter()
        mem = fit_memory(good, progress=False, target_fpr=0.01, selection=selection,
                         top_fraction=top, crack_weight=crack)
        t_fit = time.perf_counter() - t0
        mem_path = mem.save(work / f"memory-{selection}-{top:g}-{crack:g}.safetensors")
        name = MEM + ("" if selection == "uniform" else
                      ", coreset (--memory-selection coreset)") + (
            "" if top else ", largest patch alone (--memory-top-fraction 0)") + (
            "" if crack else ", the memory alone (--crack-weight 0)")
        good_s = list(mem.out_of_fold.values())
        crack_s = [mem.score(read_gray(p))[0] for p in cracked]
        rows[name] = {
            "threshold": mem.threshold, "threshold_rule": mem.meta["threshold_rule"],
            "bank": mem.meta["bank"], "selection": selection, "top_fraction": top,
            "crack": mem.meta["crack"], "groups": mem.meta["groups"],
            "train_fit_seconds": round(t_fit, 1),
            "train_auroc_out_of_fold": float(roc_auc_score(
                np.r_[np.zeros(len(good_s)), np.ones(len(crack_s))], good_s + crack_s)),
            "train_recall_out_of_fold": float(np.mean(np.array(crack_s) >= mem.threshold)),
            **on_val(mem_path, mem.threshold, va_x, va_y, data)}


def draem_run(good: Path, work: Path, va_x: list, va_y: np.ndarray, data: Path, seed: int,
              steps: int) -> dict:
    """``train --good-only --method draem`` on the train split's good images, one seed."""
    from deepseek.manufacturing.draem import fit_draem

    t0 = time.perf_counter()
    model = fit_draem(good, target_fpr=0.01, seed=seed, steps=steps, progress=False)
    t_fit = time.perf_counter() - t0
    path = model.save(work / f"draem-s{seed}.safetensors")
    assert model.threshold is not None
    return {"seed": seed, "expected": model.meta["expected"], "threshold": model.threshold,
            "steps": steps, "folds": model.meta["folds"], "train_fit_seconds": round(t_fit, 1),
            **on_val(path, model.threshold, va_x, va_y, data)}


def baseline(rows: dict, tr_x: list, tr_y: np.ndarray, va_x: list, va_y: np.ndarray,
             data_set: DataSet) -> None:
    """The texture-feature baseline (see the module docstring)."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    ftr = np.stack([baseline_features(p, data_set) for p in tr_x])
    folds = StratifiedKFold(5, shuffle=True, random_state=0)

    def model():  # type: ignore[no-untyped-def]
        return make_pipeline(StandardScaler(), LogisticRegressionCV(
            Cs=np.logspace(-4, 1, 11), cv=folds, scoring="roc_auc", class_weight="balanced",
            max_iter=5000))

    # the feature set by out-of-fold AUROC on the train split only; the threshold from the
    # chosen set's out-of-fold train scores (in-sample ones separate perfectly)
    oof = {name: cross_val_predict(model(), ftr[:, cols], tr_y, cv=folds,
                                   method="decision_function")
           for name, cols in FEATURE_SETS.items()}
    chosen = max(oof, key=lambda k: roc_auc_score(tr_y, oof[k]))
    cols = FEATURE_SETS[chosen]
    clf = model().fit(ftr[:, cols], tr_y)
    b_tr = oof[chosen]
    t_fit = time.perf_counter() - t0
    b_va = clf.decision_function(np.stack([baseline_features(p, data_set)
                                           for p in va_x])[:, cols])
    b_thr = threshold_at_fpr(b_tr, tr_y, 0.01)
    rows[BASE] = {
        "val_auroc": float(roc_auc_score(va_y, b_va)), "threshold": b_thr,
        "features": chosen, "train_out_of_fold_auroc": {
            k: round(float(roc_auc_score(tr_y, v)), 4) for k, v in oof.items()},
        "train_fit_seconds": round(t_fit, 1),
        **{f"val_{k}": v for k, v in at(b_va, va_y, b_thr).items()}}




def summary(rows: dict, tr_x: list, tr_y: np.ndarray, va_x: list, va_y: np.ndarray,
            quick: bool, epochs: int, seeds: int, data_set: DataSet) -> dict:
    results = {
        "sizes": {"data_set": data_set.name,
                  "train_images": len(tr_x), "train_cracked": int(tr_y.sum()),
                  "val_images": len(va_x), "val_cracked": int(va_y.sum()),
                  "quick": quick, "supervised_epochs": epochs, "seeds": seeds,
                  "rows": list(rows)},
        "rows": rows}
    if SUP in rows and ONE in rows:
        sup, one = rows[SUP], rows[ONE]
        results["cross_fitted_vs_one_model"] = (
            f"val AUROC mean {sup['val_auroc']['mean']:.4f} (spread "
            f"{sup['val_auroc']['spread']:.4f}) against {one['val_auroc']['mean']:.4f} "
            f"(spread {one['val_auroc']['spread']:.4f}); recall at the stored threshold "
            f"{sup['val_recall']['mean']:.2f} (FPR {sup['val_fpr']['mean']:.3f}) against "
            f"{one['val_recall']['mean']:.2f} (FPR {one['val_fpr']['mean']:.3f})")
    if SUP in rows and "calibrated_on_val_halves_val_recall" in rows[SUP]:
        sup = rows[SUP]
        results["stored_vs_calibrated"] = (
            f"recall / FPR on val at the threshold training stored (set on the train split) "
            f"{sup['val_recall']['mean']:.2f} / {sup['val_fpr']['mean']:.3f} against at a "
            f"threshold calibrated on the line's own good parts (calibrate --all-good on one "
            f"half of val's good parts, tried on the other half, both ways) "
            f"{sup['calibrated_on_val_halves_val_recall']['mean']:.2f} / "
            f"{sup['calibrated_on_val_halves_val_fpr']['mean']:.3f} (means over seeds)")
    if SUP in rows and "one_view_val_auroc" in rows[SUP]:  # trained with --views 4
        sup = rows[SUP]
        results["views_4_vs_1"] = (
            f"the same models on val with the flips (4 views, as trained) and without: "
            f"AUROC mean {sup['val_auroc']['mean']:.4f} against "
            f"{sup['one_view_val_auroc']['mean']:.4f}; best recall at <= 1 % FPR "
            f"{sup['val_best_recall_at_fpr_0.01']['mean']:.2f} against "
            f"{sup['one_view_val_best_recall_at_fpr_0.01']['mean']:.2f}"
            + (f"; recall / FPR at each one's threshold (set the same way on its own "
               f"out-of-fold scores) {sup['val_recall']['mean']:.2f} / "
               f"{sup['val_fpr']['mean']:.3f} against "
               f"{sup['one_view_val_recall']['mean']:.2f} / "
               f"{sup['one_view_val_fpr']['mean']:.3f}" if "one_view_val_recall" in sup
               else ""))
    if SUP in rows and "four_views_val_auroc" in rows[SUP]:  # trained with one view
        sup = rows[SUP]
        results["views_1_vs_4"] = (
            f"the same models on val as trained (1 view, the default) and under the flips "
            f"(4 views; no threshold of their own: train --views 4 sets one): AUROC mean "
            f"{sup['val_auroc']['mean']:.4f} against "
            f"{sup['four_views_val_auroc']['mean']:.4f}; best recall at <= 1 % FPR "
            f"{sup['val_best_recall_at_fpr_0.01']['mean']:.2f} against "
            f"{sup['four_views_val_best_recall_at_fpr_0.01']['mean']:.2f}")
    return results


def goals(rows: dict, seeds: int, data_set: DataSet = DATA_SETS["kolektorsdd"]) -> list:
    """The goals of the rows that ran: on KolektorSDD the issue's; on another set (CrackForest
    tiles) the recall goal for sets other than KolektorSDD (>= 0.9 at the stored threshold),
    the stored threshold's promise, stability, time and the baseline, each named with the set;
    AUROC and good-only figures reported, not held to KolektorSDD's targets."""
    kolektor = data_set is DATA_SETS["kolektorsdd"]
    pre = "" if kolektor else f"{data_set.name}: "
    want_recall = 0.95 if kolektor else 0.9
    n = f"over {seeds} seeds"
    out = []
    if SUP in rows:
        sup = rows[SUP]
        # does the stored threshold keep its promise on parts training never saw?
        within = [r["val_fpr"] <= r["expected"]["false_positive_rate_ci95"][1]
                  for r in sup["runs"]]
        # and does it catch what it said it would? (10 val cracks pin the recall down
        # loosely: the val figure is held to the lower end of the expected interval)
        kept = [r["val_recall"] >= r["expected"]["recall_ci95"][0] for r in sup["runs"]]
        if kolektor:
            out.append(goal(f"supervised val image AUROC, mean {n}", sup["val_auroc"]["mean"],
                            ">= 0.98", "AUROC", sup["val_auroc"]["mean"] >= 0.98))
        out += [
            goal(f"{pre}supervised val recall at the stored threshold (set for FPR <= 1 %), "
                 f"mean {n}", sup["val_recall"]["mean"], f">= {want_recall}", "recall",
                 sup["val_recall"]["mean"] >= want_recall),
            goal(f"{pre}supervised val FPR at the stored threshold within its expected 95 % "
                 f"interval, every one of {seeds} seeds", sum(within), f"== {seeds}", "seeds",
                 all(within)),
            goal(f"{pre}supervised val recall at the stored threshold at or above the lower end "
                 f"of its expected 95 % interval, every one of {seeds} seeds", sum(kept),
                 f"== {seeds}", "seeds", all(kept)),
            goal(f"{pre}supervised val AUROC spread (max - min) {n}",
                 sup["val_auroc"]["spread"], "<= 0.02", "AUROC",
                 sup["val_auroc"]["spread"] <= 0.02),
            goal(f"{pre}supervised training on 2 cores within 10 minutes, slowest of {seeds} "
                 "seeds", sup["train_fit_seconds"]["max"], "<= 600", "s",
                 sup["train_fit_seconds"]["max"] <= 600)]
        # the val files through the server, as a line sends them: score's answers
        runs = sup["runs"]
        same = [r["served_files"]["decisions_equal"] and r["served_files"]["boxes_equal"]
                for r in runs]
        diff = max(r["served_files"]["max_score_difference"] for r in runs)
        out += [
            goal(f"{pre}supervised: the val photos' files served (deepseek serve of "
                 f"model.photo.onnx, gRPC) get score's decisions and boxes, every one of "
                 f"{seeds} seeds", sum(same), f"== {seeds}", "seeds", all(same)),
            goal(f"{pre}supervised: the val photos' files served, largest score difference "
                 f"from score's, {n}", diff, "<= 1e-5", "probability", diff <= 1e-5)]
        # the val files written one by one into a watched folder (score --watch)
        same = [r["watched_folder"]["decisions_equal"] and r["watched_folder"]["boxes_equal"]
                and r["watched_folder"]["max_score_difference"] == 0 for r in runs]
        out.append(goal(f"{pre}supervised: the val photos renamed one by one into a folder "
                        f"score --watch watches get score's decisions, boxes and scores, every "
                        f"one of {seeds} seeds", sum(same), f"== {seeds}", "seeds", all(same)))
        # cracks running another way than in training: a goal for models trained every way
        if "turned_quarter_val_auroc" in sup and all(r.get("rotate") == "any"
                                                     for r in sup["runs"]):
            drop = round(sup["val_auroc"]["mean"] - sup["turned_quarter_val_auroc"]["mean"], 4)
            out.append(goal(f"{pre}supervised (--rotate any) val AUROC with the val photos "
                            f"turned a quarter, less than 0.02 below upright (mean {n})",
                            drop, "< 0.02", "AUROC difference", drop < 0.02))
        if BASE in rows:
            base = rows[BASE]
            out += [
                goal(f"{pre}supervised beats the baseline on val AUROC (mean {n})",
                     round(sup["val_auroc"]["mean"] - base["val_auroc"], 4), "> 0",
                     "AUROC difference", sup["val_auroc"]["mean"] > base["val_auroc"]),
                goal(f"{pre}supervised beats the baseline on val recall at its threshold "
                     f"(mean {n})", round(sup["val_recall"]["mean"] - base["val_recall"], 4),
                     "> 0", "recall difference", sup["val_recall"]["mean"] > base["val_recall"])]
    if not kolektor:  # the good-only goals are KolektorSDD's
        return out
    if MEM in rows:  # the default good-only mode
        auc = rows[MEM]["val_auroc"]
        out.append(goal("good-only (the default, memory) val image AUROC", round(auc, 4),
                        ">= 0.95", "AUROC", auc >= 0.95))
    if PASTED in rows:
        auc = rows[PASTED]["val_auroc"]["mean"]
        out.append(goal(f"good-only, pasted cracks, val image AUROC, mean {n}", auc,
                        ">= 0.95", "AUROC", auc >= 0.95))
    if DRAEM in rows:
        auc = rows[DRAEM]["val_auroc"]["mean"]
        out.append(goal(f"good-only, DRAEM-style, val image AUROC, mean {n}", auc,
                        ">= 0.95", "AUROC", auc >= 0.95))
    return out


if __name__ == "__main__":
    main()
