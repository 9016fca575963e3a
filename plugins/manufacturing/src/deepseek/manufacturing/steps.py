"""Per-item steps of the manufacturing plugin for ``deepseek batch`` (``register_steps``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepseek.manufacturing.errors import ManufacturingError
from deepseek.manufacturing.score import (
    PACKAGED,
    Scorer,
    UnreadableImage,
    image_paths,
    in_file_order,
)


def score_step(*, model: str = PACKAGED, threshold: float | None = None,
               calibration: str | None = None) -> Callable[[str], list[dict[str, Any]]]:
    """``deepseek batch manufacturing score``: the model loaded once; ``step(path)`` scores
    one image, or every image of one folder, and returns what ``deepseek manufacturing score
    PATH --json`` prints with the same --model, --threshold and --calibration.

    An image of a folder that cannot be read is listed in its place as ``score --json``
    lists it (``"score": null`` and the ``error``) and the folder's other images are scored;
    the item fails (naming the file) only when none of its images could be read, so a
    single-image input that cannot be read fails, and a later run tries it again."""
    scorer = calibrated_scorer(model, threshold, calibration)

    def step(path: str) -> list[dict[str, Any]]:
        unreadable: list[UnreadableImage] = []
        results = scorer.score_files(image_paths([path]), progress=False,
                                     unreadable=unreadable, keep_maps=False)
        if unreadable and not results:
            raise ManufacturingError(unreadable[0].error if len(unreadable) == 1 else
                                     f"{path}: none of its {len(unreadable)} images could "
                                     f"be read; the first: {unreadable[0].error}")
        return [r.to_dict() for r in in_file_order(results, unreadable)]

    return step


def calibrated_scorer(model: Any, threshold: float | None, calibration: Any,
                      **options: Any) -> Scorer:
    """A :class:`Scorer` at ``threshold``, or at the threshold of a calibration file written
    for ``model`` by ``calibrate`` (with what it is expected to give); ``options``: the
    scorer's others (``views``, ``backend``).

    Raises:
        ManufacturingError: both a threshold and a calibration, or a calibration file of
            other weights.
    """
    if calibration is None:
        return Scorer(model, threshold=threshold, **options)
    from deepseek.manufacturing.calibration import read_calibration
    from deepseek.manufacturing.errors import ManufacturingError

    if threshold is not None:
        raise ManufacturingError("give a threshold or a calibration file, not both")
    cal = read_calibration(calibration, model)
    scorer = Scorer(model, threshold=float(cal["threshold"]), expected=cal["expected"],
                    **options)
    # the weights loaded are those it was measured with (not others renamed over them since)
    read_calibration(calibration, model, scorer.model_sha256)
    return scorer


def leave_out(source: str) -> str | None:
    """Why a file a ``deepseek batch manufacturing score`` glob matched is not a part image,
    or None: not an image file, a mask or label (by its name or its folder's, as folder
    scoring tells them), or a heatmap ``score --heatmaps`` wrote. A folder is kept (the step
    lists its part images itself) unless it is a folder of masks or labels by its name
    (``masks/``, Pascal VOC's ``SegmentationClass/``) or holds no part image at all."""
    from deepseek.manufacturing.images import (
        IMAGE_SUFFIXES,
        in_label_folder,
        is_heatmap,
        is_label_file,
        list_images,
    )

    p = Path(source)
    if p.is_dir():
        if in_label_folder(p):
            return "a folder of masks or labels (by its name), not of parts"
        if not list_images(p, recursive=True):
            return "no part images in this folder or below it"
        return None
    if not p.is_file():
        return None
    if p.suffix.lower() not in IMAGE_SUFFIXES:
        return "not an image file"
    if is_label_file(p):
        return "a mask or label (by its name or folder), not a part"
    if is_heatmap(p):
        return "a heatmap written by `score --heatmaps`, not a part"
    return None


def score_summary(result: list[dict[str, Any]]) -> dict[str, Any]:
    """An input's row in the batch table: images, how many flagged, the highest score, and
    how many could not be read (a folder's damaged photos, listed with their errors in the
    item's result)."""
    scores = [r["score"] for r in result if r.get("score") is not None]
    return {"images": len(result), "defects": sum(bool(r.get("defect")) for r in result),
            "max_score": max(scores, default=None),
            "unreadable": sum(r.get("score") is None for r in result)}
