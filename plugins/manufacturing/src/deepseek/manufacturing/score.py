"""Scoring independent part images: each image alone, at its own size.

A folder of inspection photos is not a video: images of different parts share nothing, so
:func:`score_images` runs every image through the model with a fresh state (no recurrent state
carried from one image to the next: the same images in any order get the same scores) and at
its own size (padded with its edge values to a multiple of 16, never resized to another
image's size). An image is shown to the temporal model as a part held still in front of the
camera: the same frame ``frames`` times; its score is the crack probability after the last
one, and the crack map of that frame gives the box and the heatmap. A model trained with
``train --folder --views 4`` scores each image under four views (as it is and flipped three
ways, the logits averaged: :func:`score_image`), the views its threshold was set with.

With a good-parts memory (:mod:`deepseek.manufacturing.anomaly`, a ``.safetensors`` file
written by ``train --good-only``) as the model, the score is the anomaly score (the mean
distance of the image's most unusual patches, the memory's top fraction of them, to the
nearest good ones, plus the backbone's crack logit's share where the memory has one) and
the threshold the memory's own, set for its target false-positive rate; with a DRAEM model
(:mod:`deepseek.manufacturing.draem`, ``train --good-only --method draem``) the score is
the largest value of its defect map, with its own threshold too.

Inputs are image files and folders (searched recursively, natural order, masks and labels
skipped by the rule of :func:`deepseek.manufacturing.images.is_label_file`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.manufacturing.errors import ManufacturingError
from deepseek.manufacturing.images import (  # noqa: F401  (read_gray, image_paths: here too)
    decode_photo,
    file_bytes,
    image_paths,
    read_gray,
    require_cv2,
    rescale,
    to_gray,
    write_heatmap,
)
from deepseek.manufacturing.runtime import FRAMES, STRIDE, stored_extra
from deepseek.manufacturing.stream import VIEWS, check_views, photo_logits, tile_count

PACKAGED = "defect-3dcnn-lstm"
log = logging.getLogger(__name__)


@dataclass
class ImageScore:
    """One scored image: path, size, score, defect flag, box, heatmap file, the threshold used,
    the views the score was made under (:func:`score_image`; 1 for a good-parts model) and the
    scale the model scaled the image by before scoring it (``train --folder --scale``; 1 for
    other models), and the SHA-256 of the model file that made it. The size, box and heatmap
    are in the image's own pixels whatever the scale.
    A memory's views and scale are those of its anomaly map; the crack logit that takes a
    share of its score reads the photo as the memory's metadata says (``crack``: 7/8 of its
    size, four views, by default).
    """
    path: str
    width: int
    height: int
    score: float
    defect: bool
    box: tuple[int, int, int, int] | None
    heatmap: str | None = None
    threshold: float | None = None
    views: int = 1
    scale: float = 1.0
    #: the image's defect map (probabilities, or anomaly scores for a memory), one value per
    #: ``stride`` x ``stride`` pixels of the image (16 / the model's scale: not always a whole
    #: number); not written to CSV or JSON
    cell_map: np.ndarray | None = field(default=None, repr=False, compare=False)
    stride: float = STRIDE
    #: the tiles the photo was scored in (1: whole; more for a photo over
    #: :data:`~deepseek.manufacturing.stream.TILE_ABOVE` pixels at the model's scale, whose
    #: score is then the highest tile's)
    tiles: int = 1
    #: what :func:`evaluate_scores` needs of the pixels scored, kept with the map so that an
    #: evaluation does not decode each photo again; not written to CSV or JSON
    pixels: ScoredPixels | None = field(default=None, repr=False, compare=False)
    #: the SHA-256 of the model file that made the score (:attr:`Scorer.model_sha256`)
    model_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The score as JSON-ready data (the probability map left out): what ``score --json``
        prints.
        """
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("cell_map", "stride", "pixels")}


@dataclass(frozen=True)
class ScoredPixels:
    """Of the gray pixels an :class:`ImageScore` was made from (as :func:`read_gray` read
    them at the model's bit depth): their :func:`~deepseek.manufacturing.labelled.
    pixel_digest` (copies and training images are told by it) and their darkness per map
    cell (:func:`darkness_cells`, the pixel reference of :func:`evaluate_scores`)."""
    digest: str
    darkness: np.ndarray = field(repr=False, compare=False)


def score_image(net: Any, image: np.ndarray, frames: int = FRAMES, views: int = 1
                ) -> tuple[float, np.ndarray]:
    """Crack probability of one grayscale image and its probability map (map cells of 16
    pixels, cut to the image), from a fresh state.

    ``views=4``: the image scored as it is and flipped left-right, upside down and both
    (the flips of the 16-pixel-padded image, so that map cells line up), the frame logits
    and each cell's logits averaged over the four (the maps flipped back first): the score
    is the sigmoid of the mean logit. A model's threshold must be set on scores made the
    same way (``train --folder`` stores its ``views``; :class:`Scorer` follows it)."""
    logit, maps = photo_logits(net, image, frames, views)
    return float(_sigmoid(np.float64(logit))), _sigmoid(maps).astype(np.float32)


def _sigmoid(x: Any) -> Any:
    """The logistic function without overflow for large negative logits."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _stored_meta(model: Any) -> dict[str, Any]:
    """What training stored with a model file: a good-parts model's metadata (a patch
    memory's or a DRAEM pair's), else a network's
    :func:`~deepseek.manufacturing.runtime.stored_extra`."""
    from deepseek.manufacturing.anomaly import memory_meta
    from deepseek.manufacturing.draem import draem_meta

    meta = memory_meta(model) or draem_meta(model)
    return meta if meta is not None else stored_extra(model)


def stored_expectation(model: Any) -> dict[str, Any] | None:
    """What training measured at its stored threshold on held-out images (``train --folder``,
    ``--good-only``: the memory's out-of-fold good images, recall unknown): ``recall``,
    ``false_positive_rate``, their 95 % intervals and the image counts; None for weights
    without it."""
    exp = _stored_meta(model).get("expected")
    return exp if isinstance(exp, dict) and "recall" in exp else None


def describe_expectation(exp: dict[str, Any], where: str = "the stored threshold") -> str:
    """One line: a threshold's expected recall and false-alarm rate, with their intervals."""
    def rate(name: str) -> str:
        if exp.get(name) is None:
            return "unknown (no defect images)"
        ci = exp.get(f"{name}_ci95")
        return f"{exp[name]:.3f}" + (f" (95 % CI {ci[0]:.2f}-{ci[1]:.2f})" if ci else "")

    oof = exp.get("recall_out_of_fold")
    lower = (f" (the written model on the defects it trained on; its fold models caught "
             f"{oof:.3f} out of fold)" if isinstance(oof, (int, float)) else
             " (labelled defects of the folder, left out of training)"
             if str(exp.get("recall_from", "")).startswith("labelled defect") else "")
    return (f"expected at {where} (from {exp.get('defect_images', '?')} defect "
            f"and {exp.get('good_images', '?')} good images): recall "
            f"{rate('recall')}{lower}, false-alarm rate {rate('false_positive_rate')}")


def stored_threshold(model: Any) -> float | None:
    """The image threshold ``train --folder`` stored with a weights file (chosen on its
    validation images for a target false-positive rate), or None."""
    thr = stored_extra(model).get("threshold")
    return float(thr) if isinstance(thr, (int, float)) and 0.0 < thr < 1.0 else None


def stored_scale(model: Any) -> float:
    """The image scale a network was trained at (``train --folder --scale``; 1 for anything
    else): its photos are scaled the same way before they are scored. A stored scale no
    training writes is an error naming the file."""
    from deepseek.manufacturing.images import stored_setting

    return stored_setting(stored_extra(model), "scale", model)


def stored_bit_depth(model: Any) -> int | None:
    """The bits a model's 16-bit training photos were read over (``train --bit-depth``, with
    ``--folder`` or ``--good-only``; None: the full 16 bits): its photos are read the same
    way. A stored depth no training writes is an error naming the file."""
    from deepseek.manufacturing.images import stored_setting

    return stored_setting(_stored_meta(model), "bit_depth", model)


def stored_views(model: Any) -> int:
    """The views (:func:`score_image`) a network's stored threshold was set with: what
    ``train --folder`` stored (``--views``, 1 by default), 1 for anything else (the packaged
    weights, synthetic training, models trained before views were stored)."""
    views = stored_extra(model).get("views")
    return views if views in VIEWS else 1


def heatmap_overlay(image: np.ndarray, pmap: np.ndarray, stride: float = STRIDE) -> np.ndarray:
    """The image in gray with a 0..1 map (cells of ``stride`` pixels) over it (colour map,
    40 %)."""
    cv2 = require_cv2("heatmap images (--heatmaps)")

    from deepseek.manufacturing.metrics import upsample_map

    up = upsample_map(pmap, image.shape, stride)
    colour = cv2.applyColorMap(np.clip(up * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    gray = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.addWeighted(gray, 0.6, colour, 0.4, 0)


class Scorer:
    """A model ready to score images one by one: a crack network (weights or registry name)
    or a good-parts memory, with its threshold (the given one, else the stored one, else 0.5
    for a network) and, where known, what that threshold is expected to give
    (:attr:`expected`: the given one, e.g. a calibration's, else the stored one). A network
    scores under the views (:func:`score_image`) it was trained with unless ``views`` is
    given (then the stored expectation, set on other scores, is not shown); on ``backend``
    (:func:`~deepseek.manufacturing.stream.scoring_net`: by default the ONNX exports beside
    the weights where they are current). Loaded once; every image is scored alone from a
    fresh state. Each result names the model's file by its SHA-256
    (:attr:`model_sha256`)."""

    def __init__(self, model: Any = PACKAGED, *, threshold: float | None = None,
                 frames: int = FRAMES, expected: dict[str, Any] | None = None,
                 views: int | None = None, backend: str = "auto") -> None:
        from deepseek.manufacturing.stream import loaded_by_digest

        # what each result names as the model that made it (a line's record of which
        # weights decided each part)
        _, sha = loaded_by_digest(model, lambda: self._load(model, threshold, frames,
                                                            expected, views, backend))
        #: the SHA-256 of the model's file (a registered name's packaged weights; an ONNX
        #: export's, the weights it was exported from), None where there is no file
        self.model_sha256 = sha

    def _load(self, model: Any, threshold: float | None, frames: int,
              expected: dict[str, Any] | None, views: int | None, backend: str) -> None:
        from deepseek.manufacturing.anomaly import is_memory_file, load_memory
        from deepseek.manufacturing.draem import is_draem_file, load_draem
        from deepseek.manufacturing.stream import scoring_net

        self.expected = expected

        if isinstance(model, str) and model == PACKAGED:
            log.warning("%s: the packaged weights were trained on the synthetic line only: "
                        "they rank real part photos but their threshold is not set for them; "
                        "train on your parts (deepseek manufacturing train --folder) and score "
                        "with --model, or set one with deepseek manufacturing calibrate",
                        PACKAGED)
        # a good-parts model (a patch memory or a DRAEM model) scores with its own map
        memory: Any = load_memory(model, backend) if is_memory_file(model) else \
            load_draem(model, backend) if is_draem_file(model) else None
        if memory is not None:
            threshold = memory.threshold if threshold is None else threshold
            if threshold is None or not threshold > 0:
                raise ManufacturingError(f"{model}: the good-parts model has no threshold; "
                                         "give --threshold (an anomaly score > 0)")
        else:
            if threshold is None:
                threshold = stored_threshold(model)
                if threshold is None and str(model).endswith(".onnx"):
                    log.warning("%s: the export carries no threshold (made from weights "
                                "without one, or before exports kept what training stored): "
                                "flagging at 0.5; export the trained weights again "
                                "(deepseek manufacturing export WEIGHTS), or give --threshold "
                                "or --calibration", model)
            threshold = 0.5 if threshold is None else threshold
            if not 0.0 < threshold < 1.0:
                raise ManufacturingError(f"threshold={threshold}: give a probability between "
                                         "0 and 1")
        if frames < 1:
            raise ManufacturingError(f"frames={frames}: give at least 1")
        stored = memory.threshold if memory is not None else stored_threshold(model)
        trained_views = stored_views(model) if memory is None else 1
        views = trained_views if views is None else check_views(views)
        if memory is not None and views != 1:
            raise ManufacturingError(f"{model}: a good-parts model scores each image as it "
                                     "is (views 1)")
        elif views != trained_views and stored is not None:
            log.warning("%s: its threshold was set on scores with views=%d; scoring with "
                        "views=%d, what it is expected to give does not apply", model,
                        trained_views, views)
        if views != trained_views:  # a stored or calibrated expectation is for other scores
            self.expected = None
        elif self.expected is None and threshold == stored:
            self.expected = stored_expectation(model)
        self.memory, self.threshold, self.frames = memory, float(threshold), frames
        self.views = views
        self.scale = stored_scale(model) if memory is None else 1.0
        self.bit_depth = stored_bit_depth(model)
        self.net = scoring_net(model, backend).eval() if memory is None else None

    @property
    def box_level(self) -> float:
        """The map value the cells of a box reach (:func:`~deepseek.manufacturing.stream.
        box_from_map`): 0.5 on a network's crack map, the threshold on a good-parts model's
        anomaly map."""
        return 0.5 if self.memory is None else self.threshold

    @property
    def takes_words(self) -> bool:
        """Whether what scores a photo takes the camera's 16-bit words as well as its gray
        pixels (a ``--bit-depth`` memory scored through its photo decision)."""
        return bool(getattr(self.memory, "takes_words", False))

    def read(self, path: str | Path, data: bytes | None = None
             ) -> tuple[np.ndarray, np.ndarray | None]:
        """The gray pixels of the image at ``path`` as :func:`read_gray` gives them at the
        model's bit depth, and the camera's 16-bit words where the model's graph takes them
        (a memory of a ``--bit-depth`` camera scored through its photo decision; else
        None), from one decoding of the file (``data``: its bytes, read already)."""
        p = Path(path)
        if self.takes_words:
            words = decode_photo(file_bytes(p) if data is None else data, dtype=np.uint16,
                                 where=str(p))
            return to_gray(words, str(p), self.bit_depth), words
        return read_gray(p, bit_depth=self.bit_depth, data=data), None

    def score(self, path: str | Path, heatmap: str | Path | None = None,
              image: tuple[np.ndarray, np.ndarray | None] | None = None,
              keep_pixels: bool = False, heatmaps_of: str = "all",
              heatmap_failed: Callable[[ManufacturingError], None] | None = None
              ) -> ImageScore:
        """Score the image at ``path`` (``image``: what :meth:`read` gives, when already
        read); write its overlay PNG to ``heatmap`` when given (``heatmaps_of="flagged"``:
        only when the image is flagged). ``keep_pixels``: the result carries
        :class:`ScoredPixels` for :func:`evaluate_scores`. ``heatmap_failed``: told when the
        heatmap cannot be written (a full disk), the result then made without one; else
        that raises :class:`ManufacturingError`."""
        from deepseek.manufacturing.stream import box_from_map

        p = Path(path)
        img, words = self.read(p) if image is None else image
        if self.memory is None:  # at the scale the model was trained at
            scaled = rescale(img, self.scale)
            prob, pmap = score_image(self.net, scaled, self.frames, self.views)
            stride, shown, tiles = STRIDE / self.scale, pmap, tile_count(scaled.shape)
        else:  # anomaly map: shown at 0..1 with the threshold at the middle of the scale
            prob, pmap = self.memory.score(img if words is None else words)
            stride, tiles = self.memory.stride, tile_count(img.shape)
            shown = np.clip(pmap / (2 * self.threshold), 0.0, 1.0)
        if min(img.shape) < stride:
            log.warning("%s: %dx%d pixels, smaller than one cell of the model's map (%g px) "
                        "on a side: its score says little about a part (a whole part photo, "
                        "or a crop of one, is what the model reads)", p, img.shape[1],
                        img.shape[0], stride)
        defect = prob >= self.threshold
        box = box_from_map(pmap, img.shape, self.box_level, stride) if defect else None
        written = None
        if heatmap is not None and (heatmaps_of == "all" or defect):
            try:
                write_heatmap(heatmap, heatmap_overlay(img, shown, stride))
                written = str(heatmap)
            except ManufacturingError as exc:
                if heatmap_failed is None:
                    raise
                heatmap_failed(exc)
        pixels = None
        if keep_pixels:
            from deepseek.manufacturing.labelled import pixel_digest

            pixels = ScoredPixels(pixel_digest(img), darkness_cells(img, stride))
        return ImageScore(str(p), int(img.shape[1]), int(img.shape[0]), prob, bool(defect),
                          box, written, self.threshold,
                          self.views if self.memory is None else 1, self.scale, pmap, stride,
                          tiles, pixels, self.model_sha256)

    def score_files(self, files: list[Path], heatmaps: str | Path | None = None, *,
                    progress: bool | None = None,
                    unreadable: list[UnreadableImage] | None = None,
                    keep_maps: bool = True, heatmaps_of: str = "all") -> list[ImageScore]:
        """Score image files (as :func:`image_paths` lists them) in order; ``heatmaps``,
        ``unreadable`` and ``keep_maps`` as in :func:`score_images`. The next file is
        decoded in a thread of its own while one is scored (decoding a 20-megapixel PNG
        takes about as long as scoring it), so at most two photos are held at once."""
        from concurrent.futures import ThreadPoolExecutor

        from tqdm.auto import tqdm

        out_dir = Path(heatmaps) if heatmaps is not None else None
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
        results = []

        def read(p: Path) -> tuple[np.ndarray, np.ndarray | None] | ManufacturingError:
            try:
                return self.read(p)
            except ManufacturingError as exc:  # handed over in the photo's turn
                return exc
            except MemoryError:
                return ManufacturingError(no_memory(p, "decode"))

        with ThreadPoolExecutor(1, thread_name_prefix="decode") as pool:
            ahead = pool.submit(read, files[0]) if files else None
            for i, p in enumerate(tqdm(files, desc="scoring",
                                       disable=progress is False or len(files) < 20)):
                got = ahead.result()
                ahead = pool.submit(read, files[i + 1]) if i + 1 < len(files) else None
                if not isinstance(got, ManufacturingError):
                    try:
                        r = self.score(p, None if out_dir is None else
                                       out_dir / heatmap_name(i, p), image=got,
                                       keep_pixels=keep_maps, heatmaps_of=heatmaps_of)
                    except MemoryError:  # this photo too large: the others still scored
                        got = ManufacturingError(no_memory(p, "score"))
                if isinstance(got, ManufacturingError):
                    if unreadable is None:
                        if ahead is not None:
                            ahead.cancel()
                        raise got
                    unreadable.append(UnreadableImage(i, str(p), str(got)))
                    continue
                if not keep_maps:
                    r.cell_map = None
                results.append(r)
        return results


@dataclass
class UnreadableImage:
    """An image file :func:`score_images` could not read (damaged, cut short, gone, not an
    image its decoders know), left unscored: its place among the files found (``index``),
    its path and the reader's error, which names the file and the fix."""
    index: int
    path: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        """As ``score --json`` lists it among the scored images: no score, no flag, the
        error."""
        return {"path": self.path, "score": None, "defect": None, "error": self.error}


def score_images(paths: Iterable[str | Path], model: Any = PACKAGED, *,
                 threshold: float | None = None, heatmaps: str | Path | None = None,
                 frames: int = FRAMES, progress: bool | None = None,
                 views: int | None = None,
                 unreadable: list[UnreadableImage] | None = None,
                 keep_maps: bool = True, backend: str = "auto",
                 heatmaps_of: str = "all") -> list[ImageScore]:
    """One :class:`ImageScore` per image (files and folders, see the module docstring); with
    ``heatmaps`` a PNG overlay per image (``heatmaps_of="flagged"``: per flagged image) is
    written there, named ``NNNNN-<stem>.png`` by the image's place among the files found
    (each result names its file). ``views``: see :class:`Scorer`.

    An image that cannot be read raises :class:`ManufacturingError` naming it, unless
    ``unreadable`` is a list: then each such image is appended to it
    (:class:`UnreadableImage`) and the others are still scored, so one damaged photo in a
    day's folder does not cost the scores of the rest (``score`` then lists them and exits
    with status 1).

    ``keep_maps=False``: each result's defect map (``cell_map``) is let go once its box and
    heatmap are made, so that a folder of thousands of large photos is scored in bounded
    memory (the maps, and the :class:`ScoredPixels` kept with them, are what
    :func:`evaluate_scores` needs for its pixel figures).
    ``backend``: what runs a crack network (:func:`~deepseek.manufacturing.stream.
    scoring_net`)."""
    scorer = Scorer(model, threshold=threshold, frames=frames, views=views, backend=backend)
    return scorer.score_files(image_paths(paths), heatmaps, progress=progress,
                              unreadable=unreadable, keep_maps=keep_maps,
                              heatmaps_of=check_heatmaps_of(heatmaps_of))


def evaluate_scores(results: list[ImageScore], root: str | Path, fpr: float = 0.01,
                    group_pattern: str | None = None, bit_depth: int | None = None,
                    model: Any = None) -> dict[str, Any]:
    """Image and pixel metrics of scored images against their labels (found under ``root``
    by the rules of :mod:`deepseek.manufacturing.labelled`): image AUROC and average
    precision; recall, false-positive rate and precision at the threshold the images were
    scored with; recall at the
    threshold with a false-positive rate <= ``fpr`` on these images; and, over the images
    whose defect pixels are known (a mask or label file; a good part in a good/ folder has
    none), pixel AUROC and AU-PRO (:func:`~deepseek.manufacturing.metrics.
    pixel_metrics`), always beside two references (``pixel_references``): chance (0.5) and
    each image's own darkness as the map, which a model must beat to be said to locate
    cracks. A copy of another scored image (equal pixels, see
    :func:`~deepseek.manufacturing.labelled.set_aside_copies`) counts once
    (``copies_left_out``: how many results were left out so). ``bit_depth``: how the model
    read 16-bit photos (:func:`stored_bit_depth`), so that copies are told as it saw them.
    ``model``: what scored them; the images it was trained on (equal pixels, as training
    kept their digests) are counted (``trained_on_images``, with an example in
    ``trained_on_example``): a model scores the images it learnt from better than new
    parts, so figures on them read too well."""
    from deepseek.manufacturing.labelled import read_labelled
    from deepseek.manufacturing.metrics import (
        PixelMetrics,
        average_precision,
        image_auroc,
        recall_at_fpr,
        upsample_map,
    )

    # each image's pixels are used once here: none written to a temporary file; the images
    # scored with their ScoredPixels are not decoded again (their digests are known)
    known = {r.path: ((r.height, r.width), r.pixels.digest) for r in results
             if r.pixels is not None}
    items = {str(i.path): i for i in read_labelled(root, group_pattern, bit_depth=bit_depth,
                                                   spill=False, known=known)}
    copies = {str(c.path) for i in items.values() for c in i.copies}
    missing = [r.path for r in results if r.path not in items and r.path not in copies]
    if missing:
        raise ManufacturingError(f"{missing[0]}: scored but not under {root} (evaluate one "
                                 "labelled folder)")
    n_copies = sum(r.path in copies for r in results)
    results = [r for r in results if r.path not in copies]  # one picture counts once
    if not results:
        raise ManufacturingError(f"{root}: no scored image to evaluate")
    s = np.array([r.score for r in results], np.float64)
    y = np.array([items[r.path].defect for r in results])
    if y.all() or not y.any():
        raise ManufacturingError(f"{root}: evaluation needs good and defect images; these are "
                                 f"all {'defect' if y.all() else 'good'}")
    threshold = results[0].threshold
    flag = np.array([r.defect for r in results])
    from deepseek.manufacturing.runtime import trained_digests

    learnt = trained_digests(model) if model is not None else None
    seen = [r.path for r in results if learnt and items[r.path].digest in learnt]
    out: dict[str, Any] = {
        "images": len(results), "defect_images": int(y.sum()), "copies_left_out": n_copies,
        "trained_on_images": len(seen), **({"trained_on_example": seen[0]} if seen else {}),
        "image_auroc": image_auroc(s, y), "average_precision": average_precision(s, y),
        "threshold": threshold, "recall": float(flag[y].mean()),
        "false_positive_rate": float(flag[~y].mean()),
        "precision": float(flag[y].sum() / flag.sum()) if flag.any() else float("nan")}
    thr, rec, got = recall_at_fpr(s, y, fpr)
    out[f"recall_at_fpr_{fpr:g}"] = {"threshold": thr, "recall": rec, "fpr": got}
    # the images whose defect pixels are known: a mask or label file draws them, and a good
    # part (in a good/ folder) has none, so its pixels count as good, as MVTec AD's protocol
    # counts its good test images; a defect/ folder's image without a mask is left out
    located = [r for r in results
               if items[r.path].has_mask or not items[r.path].defect]
    if any(items[r.path].defect for r in located):
        # one image at a time (a folder of 20-megapixel photos held 12.6 GB of full-size
        # maps for 30 of them); beside the model's maps, the references: a map that knows
        # nothing (0.5), and one that marks the dark pixels (cracks are dark): pixel scores
        # near this baseline say little about a model
        acc, dark = PixelMetrics(), PixelMetrics()
        for r in located:
            item, shape = items[r.path], (r.height, r.width)
            mask = item.mask  # drawn (or read) once: past the cache it is not kept
            if mask is None:
                mask = np.zeros(shape, np.uint8)
            acc.add(upsample_map(r.cell_map, shape, r.stride), mask)
            cells = (r.pixels.darkness if r.pixels is not None
                     else darkness_cells(item.image, r.stride))
            dark.add(upsample_map(cells, shape, r.stride), mask)
        out["pixel"] = {"images": len(located), **acc.result()}
        base = dark.result()
        out["pixel_references"] = {
            "chance": {"pixel_auroc": 0.5},
            "darkness": {"what": "each image's darkness (255 - gray) per map cell",
                         "pixel_auroc": base["pixel_auroc"], "au_pro": base["au_pro"]}}
    return out


def darkness_cells(image: np.ndarray, stride: float) -> np.ndarray:
    """255 minus the mean gray of each ``stride`` x ``stride`` cell (edge cells padded with
    their edge values): the pixel baseline of :func:`evaluate_scores`. A stride that is not
    a whole number (a model trained at a scale): the image at that scale, in cells of 16."""
    if stride != int(stride):
        image, stride = rescale(image, STRIDE / stride), STRIDE
    stride = int(stride)
    h, w = image.shape
    ph, pw = (-h) % stride, (-w) % stride
    a = np.pad(image.astype(np.float32), ((0, ph), (0, pw)), mode="edge")
    cells = a.reshape(a.shape[0] // stride, stride, a.shape[1] // stride, stride).mean((1, 3))
    return (255.0 - cells) / 255.0


def in_file_order(results: list[ImageScore], unreadable: Iterable[UnreadableImage] = ()
                  ) -> list[ImageScore | UnreadableImage]:
    """The scored images and the unreadable ones (:func:`score_images`) together, each in
    its place among the files found."""
    out: list[ImageScore | UnreadableImage] = list(results)
    for u in sorted(unreadable, key=lambda u: u.index):  # the results fill the gaps
        out.insert(u.index, u)
    return out


def write_csv(results: list[ImageScore], path: str | Path,
              unreadable: Iterable[UnreadableImage] = ()) -> Path:
    """Write one CSV row per image (path, size, score, defect, box, heatmap, the threshold and
    the model's SHA-256 it was decided with, error); returns the path. ``unreadable`` images
    (:func:`score_images`) get a row of their own in their place among the files, with the
    error and the other fields empty. A file written whole is renamed into place, so a write
    that fails (a full disk) leaves the file there before as it was; a device, a pipe or a
    link there is written as it is."""
    import contextlib
    import csv

    from deepseek.paths import written_whole

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    whole = not path.is_symlink() and (path.is_file() or not path.exists())
    with (written_whole(path) if whole else contextlib.nullcontext(path)) as where, \
            open(where, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_HEADER)
        w.writerows(csv_row(r) for r in in_file_order(results, unreadable))
    return path


#: the columns of :func:`write_csv`
CSV_HEADER = ["path", "width", "height", "score", "defect", "x0", "y0", "x1", "y1", "heatmap",
              "threshold", "model_sha256", "error"]
#: the columns ``score --watch``'s CSV had in earlier versions (before 7 Dec 2026: without
#: the threshold, model and time), which a watch started again after an upgrade moves aside
EARLIER_CSV_HEADERS = [["path", "width", "height", "score", "defect", "x0", "y0", "x1", "y1",
                        "heatmap", "error"]]


#: which images ``score --heatmaps`` writes an overlay of: every one, or the flagged ones
HEATMAPS_OF = ("all", "flagged")


def check_heatmaps_of(which: str) -> str:
    """``which`` when it is one of :data:`HEATMAPS_OF`, else an error naming them."""
    if which not in HEATMAPS_OF:
        raise ManufacturingError(f"heatmaps_of={which!r}: give one of {', '.join(HEATMAPS_OF)}")
    return which


def no_memory(path: str | Path, doing: str) -> str:
    """Why a photo the process had not the memory to ``doing`` (decode, score) is not
    scored, with its size and the fix."""
    try:
        size = f" ({Path(path).stat().st_size / 1e6:.1f} MB)"
    except OSError:
        size = ""
    return (f"{path}: not enough memory to {doing} this photo{size}: give the process more "
            "memory (a service: its unit's MemoryMax=), or photos within it")


def heatmap_name(number: int, photo: Path) -> str:
    """The name of the ``number``-th photo's heatmap (``NNNNN-<stem>.png``), as ``score
    --heatmaps`` and ``score --watch`` write them."""
    return f"{number:05d}-{photo.stem}.png"


def csv_row(r: ImageScore | UnreadableImage) -> list[Any]:
    """One image's row of :func:`write_csv` (an unreadable one: its path and error)."""
    if isinstance(r, UnreadableImage):
        return [r.path, *[""] * 11, r.error]
    return [r.path, r.width, r.height, f"{r.score:.6f}", int(r.defect),
            *(r.box if r.box else ("", "", "", "")), r.heatmap or "",
            "" if r.threshold is None else repr(float(r.threshold)), r.model_sha256 or "", ""]
