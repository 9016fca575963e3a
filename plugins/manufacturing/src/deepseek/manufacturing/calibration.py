"""Re-set a trained model's operating threshold on a line's own images, without retraining.

A model trained on one line meets another light, another camera, another batch of parts: its
scores shift, and the threshold stored at training no longer holds its false-alarm rate.
``deepseek manufacturing calibrate FOLDER --model M --out CAL.json`` scores the line's own
images (good parts, and defect parts when the folder has them) and writes a calibration
file: the lowest threshold whose false-alarm rate on those good images is at most the
target, and what it is expected to give (false-alarm rate, and recall when there are
defects, each with its Wilson 95 % interval and counts). ``score --calibration CAL.json``
(and ``deepseek batch manufacturing score -o calibration=CAL.json``) then uses it. The file
names the weights it was measured with by their sha256, and is refused with any other.
"""

from __future__ import annotations

import heapq
import json
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.manufacturing.errors import ManufacturingError

#: the calibration file's format version
FORMAT = 1


def threshold_for_fpr(good_scores: Any, target_fpr: float) -> float:
    """The lowest threshold at which at most ``target_fpr`` of ``good_scores`` are flagged
    (an image is flagged when its score is >= the threshold).

    Raises:
        ManufacturingError: no good scores, or a target outside [0, 1).
    """
    from deepseek.manufacturing.metrics import lowest_threshold

    if not len(good_scores):
        raise ManufacturingError("calibration needs good images: none were found")
    if not 0.0 <= target_fpr < 1.0:
        raise ManufacturingError(f"target_fpr={target_fpr}: give a rate in [0, 1), e.g. 0.01")
    return lowest_threshold(good_scores, target_fpr)


def calibrate(folder: str | Path, model: Any, *, target_fpr: float = 0.01,
              all_good: bool = False, group_pattern: str | None = None,
              progress: bool | None = None) -> dict[str, Any]:
    """Score ``folder``'s images with ``model`` and choose the threshold for ``target_fpr``.

    Args:
        folder: a labelled folder as for ``train --folder`` (masks, YOLO labels, or good/ and
            defect/ subfolders), or, with ``all_good``, a plain folder of good parts.
        model: trained weights (``.safetensors``), a registry name or a good-parts memory.
        target_fpr: the largest share of good images the threshold may flag.
        all_good: every image of ``folder`` is a good part (no labels needed).
        group_pattern: as for ``train --group-pattern`` (labelled folders).
        progress: a progress bar (default: when stderr is a terminal and there are many).

    Returns:
        The calibration: threshold, rule, expected rates with intervals and counts, the
        images whose labels decide the threshold (``review``: the good ones scored highest,
        the defects it misses), the copies of an image (equal pixels) counted once
        (``copies``, when there are any), and the model's sha256 (what
        :func:`write_calibration` stores).

    Raises:
        ManufacturingError: no good images, unlabelled images without ``all_good``, or a
            model that scores good images so high that no threshold keeps the target.
    """
    from tqdm.auto import tqdm

    from deepseek.manufacturing.metrics import expected_rates, threshold_review, too_few_good
    from deepseek.manufacturing.score import Scorer, image_paths, stored_bit_depth

    folder = Path(folder)
    from deepseek.manufacturing.labelled import (
        copies_report,
        distinct_images,
        labelled_defects,
        read_labelled,
    )

    # copies of an image (equal pixels) count once, in a plain folder as in a labelled one;
    # 16-bit photos read as the model's training photos were (the digests then match)
    bits = stored_bit_depth(model)
    if all_good:
        plain = image_paths([folder])
        defects = labelled_defects(folder, plain, bits)
        if defects:  # a threshold set above them would pass such defects on the line
            first = next(iter(defects.items()))
            raise ManufacturingError(
                f"{folder}: all_good (--all-good) takes every image as a good part, but "
                f"{len(defects)} of its {len(plain)} are labelled defects ({first[0].name}: "
                f"{first[1]}{' ...' if len(defects) > 1 else ''}): leave out --all-good to "
                "calibrate on the labels (the defects then measure the recall), or move them "
                "out")
        items = distinct_images(plain, bits)
    else:
        items = read_labelled(folder, group_pattern, bit_depth=bits, spill=False)
    files = [it.path for it in items]
    labels = np.array([it.defect for it in items], bool)
    copies = copies_report(items)
    if not len(files):
        raise ManufacturingError(f"{folder}: no part images to calibrate on")
    scorer = Scorer(model)
    from deepseek.manufacturing.metrics import REVIEW_IMAGES

    # each image's map is let go once scored, but for the good images scored highest so far
    # (the review draws their spots): memory stays bounded however many images there are
    results, kept = [], []  # kept: (score, -index) of the good images whose maps are kept
    for i, f in enumerate(tqdm(files, desc="calibrating", disable=progress is False or
                               (progress is None and len(files) < 20))):
        # the pixels the listing decoded (kept, else decoded once more here), as score reads
        # them; the camera's words, where the scorer takes them, are read from the file
        pixels = None if scorer.takes_words else (items[i].image, None)
        results.append(scorer.score(f, image=pixels))
        items[i].let_go()  # used once: the listing's memory goes back as the scoring goes on
        if labels[i]:
            results[i].cell_map = None
            continue
        heapq.heappush(kept, (results[i].score, -i))
        if len(kept) > REVIEW_IMAGES:  # the lowest (of equal scores, the later) goes
            results[-heapq.heappop(kept)[1]].cell_map = None
    scores = np.array([r.score for r in results])
    thr = threshold_for_fpr(scores[~labels], target_fpr)
    if scorer.memory is None and not thr < 1.0:
        raise ManufacturingError(
            f"{folder}: more than {target_fpr:g} of the good images score 1.0 with {model}: no "
            "threshold keeps that false-alarm rate; retrain on this line (train --folder)")
    expected = expected_rates(scores, labels, thr)
    n_good, n_defect = expected["good_images"], expected["defect_images"]
    warnings = []
    few = too_few_good(n_good, target_fpr)
    if few:
        warnings.append(f"{few}; the interval says how little is known")
    if not n_defect:
        warnings.append("no defect images: the recall at this threshold is unknown (add "
                        "labelled defects to the folder to measure it)")
    from deepseek.manufacturing.runtime import trained_digests

    learnt = trained_digests(model)
    seen = [str(it.path) for it in items if learnt and it.digest in learnt]
    if seen:
        warnings.append(
            f"{len(seen)} of the {len(items)} images are ones {model} was trained on (equal "
            f"pixels, e.g. {seen[0]}): a model scores the images it learnt from lower than "
            "new parts, so a threshold set on them flags more new good parts than it "
            "promises; calibrate on images it never saw")
    review = threshold_review(files, scores, labels, thr)
    # where to look in each good image listed: the box `score` would draw around its
    # hottest spot
    from deepseek.manufacturing.stream import box_from_map, weights_sha256

    by_path = {r.path: r for r in results}
    for entry in review["good_highest"]:
        r = by_path[entry["path"]]
        entry["spot"] = list(box_from_map(r.cell_map, (r.height, r.width), scorer.box_level,
                                          r.stride))
    return {"format": FORMAT, "model": str(model), "model_sha256": weights_sha256(model),
            "folder": str(folder), "threshold": thr, "target_fpr": target_fpr,
            "rule": (f"lowest score with a false-alarm rate <= {target_fpr:g} on the "
                     f"{n_good} good images of {folder}"),
            "expected": expected, "review": review,
            **({"copies": copies} if copies else {}), "trained_on_images": len(seen),
            "warnings": warnings}


def write_calibration(calibration: dict[str, Any], path: str | Path) -> Path:
    """Write a calibration (from :func:`calibrate`) as JSON at ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from deepseek.paths import written_whole

    with written_whole(path) as tmp:  # a watch started again never reads half of it
        tmp.write_text(json.dumps(calibration, indent=2) + "\n")
    return path


def read_calibration(path: str | Path, model: Any, sha256: str | None = None
                     ) -> dict[str, Any]:
    """A calibration file, checked to be one measured with ``model``'s weights (``sha256``:
    their digest as loaded, :attr:`~deepseek.manufacturing.score.Scorer.model_sha256`; by
    default the file's now).

    Raises:
        ManufacturingError: an unreadable file, another format, or other weights.
    """
    path = Path(path)
    try:
        cal = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ManufacturingError(f"{path}: not a readable calibration file ({exc})") from None
    if not isinstance(cal, dict) or cal.get("format") != FORMAT or \
            not isinstance(cal.get("threshold"), (int, float)):
        raise ManufacturingError(f"{path}: not a calibration file of this version (write one "
                                 "with deepseek manufacturing calibrate)")
    from deepseek.manufacturing.stream import weights_sha256

    # a calibration from before a registered name's weights were digested holds to the name
    want = cal.get("model_sha256")
    have = (sha256 or weights_sha256(model)) if want is not None else None
    if want != have or (want is None and str(model) != cal.get("model")):
        raise ManufacturingError(
            f"{path}: measured with {cal.get('model')} (sha256 {str(want)[:12]}), not with "
            f"{model} (sha256 {str(have)[:12]}): calibrate this model on the line again")
    return cal
