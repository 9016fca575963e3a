"""Labelled part images for supervised training: where the labels are, crops on the defects,
augmentation, and validation splits that keep groups of photos together.

Label rules, tried in this order for each part image (masks and label files themselves are
skipped by :func:`deepseek.manufacturing.images.is_label_file`):

1. **Pixel mask**: an image file named like the part image with a mask ending
   (``005_mask.png``, ``005-gt.png``, ... any ending of
   :data:`~deepseek.manufacturing.images.LABEL_STEM_ENDINGS`) next to it, or a file with the
   same stem in a mask folder (``masks/``, ``mask/``, ``gt/``, ``groundTruth/``,
   ``ground_truth/``, ``segmentation/``, ``label(s)/`` or ``Label/`` as in DAGM 2007, Pascal
   VOC's ``SegmentationClass/``) next to the image or next to its folder
   (``images/005.jpg`` + ``masks/005.png``), or, as MVTec AD lays them out, beside the split
   under the image folder's name (``test/crack/000.png`` +
   ``ground_truth/crack/000_mask.png``). Any non-zero pixel is defect; an all-zero mask is a
   good part. The mask must have the image's size. In a mask folder, a MATLAB file of the same
   stem holding ``groundTruth.Segmentation`` (CrackForest's ``groundTruth/001.mat`` for
   ``image/001.jpg``; the Berkeley segmentation layout) is a mask too: label 2 is defect,
   as CrackForest defines it (1 background), several annotators' segmentations joined; other
   labels are read as background and named in a warning (read with SciPy;
   :func:`mat_mask`).
2. **COCO annotation file**: a JSON file below the folder given (Roboflow's
   ``_annotations.coco.json`` beside the images, ``annotations/instances_train.json``) or in an
   ``annotations/`` folder beside it (COCO's own layout, ``annotations/`` next to
   ``train2017/``), with ``images``, ``annotations`` and ``categories``. An image listed there
   (``file_name`` relative to the JSON's folder or to the folder given, else by its name when
   that name is unique) is labelled by its annotations: polygons and run-length masks drawn
   with pycocotools, a box alone filled; every category counts as a defect, and an image
   listed with no annotation is a good part. A ``width``/``height`` other than the image's, a
   point outside the image (nothing is clamped), an annotation of an unlisted image and an
   image listed twice are errors naming the file (and annotation id); in a data set with a
   COCO file, an image that no file lists and that has no other label is an error.
3. **Pascal VOC file** (labelImg's default): ``005.xml`` next to the image, or in an
   ``Annotations/`` (or ``annotations/``) folder beside the image's folder (VOC's
   ``JPEGImages/`` + ``Annotations/``); each ``<object>``'s ``<bndbox>`` (pixel coordinates,
   edges included) is filled, every ``<name>`` a defect, a file with no object a good part
   (an XML file without an ``<annotation>`` element, a camera's own, is not a label). A
   ``<size>`` other than the image's, a box outside it or a malformed box is an error naming
   the file and object.
4. **labelme file**: ``005.json`` next to the image with ``shapes`` (labelme's own format):
   polygons, rectangles, circles, points, lines and line strips drawn as labelme draws them
   (lines 10 px wide, points of radius 5) and its bitmap ``mask`` shapes, every label a
   defect, no shape a good part. A stated ``imageWidth``/``imageHeight`` other than the
   image's, a point outside it or a shape of an unknown type is an error naming the file
   and shape.
5. **YOLO label file**: ``labels/.../005.txt`` for ``images/.../005.jpg`` (the last ``images``
   folder of the path replaced by ``labels``, as YOLO tools do), or ``005.txt`` next to the
   image. Each line is ``class x1 y1 x2 y2 x3 y3 ...`` (a polygon, at least three points) or
   ``class cx cy w h`` (a box), coordinates normalised to 0..1; every class counts as a defect.
   An empty file is a good part. In a data set that has YOLO label files, an image without one
   is a good part (the YOLO convention for background images); a warning names the folders
   where no image has a label file, in case they hold something else than parts.
6. **Class folder**: an image under a folder named ``good``/``ok``/``normal`` is good, under
   ``defect``/``defects``/``bad``/``crack``/``cracks``/``ng`` is a defect, with no location
   (positive crops then cannot be placed on the defect: a warning says so).

A label that contradicts its class folder is an error, as is a coordinate outside 0..1 (nothing
is clamped) or a malformed line (named with file and line). In the formats with class names
(COCO, VOC, labelme; YOLO's numbered classes by the data set's names file,
:func:`yolo_class_names`), where every class is a defect, an annotation of a class whose name
says the part is good (:func:`names_good_part`: ``ok_front``, ``No defect``) is an error naming
the file, the annotation and the class.

Copies: an image whose decoded pixels equal another's (the same photo saved twice under two
names) is one observation, not two; counted twice it would weigh double in training and in the
out-of-fold threshold and its intervals. The readers keep one of them (the first by name, or the
first with a pixel label) and set the others aside, with a warning naming them
(:func:`set_aside_copies`); defect masks of the copies are merged (every pixel any of them marks),
and copies labelled one a defect and one good are an error.

Groups (for a validation split that keeps a part's photos together): the image's folder
relative to the data set root with ``images``, class folders and split names (``train``,
``val``, ``test``) removed; in a flat folder, the file name up to its first ``_`` (``part7_a.png``
and ``part7_b.png`` belong together), else the image alone. ``group_pattern`` (a regular
expression whose first group, searched in the relative path, names the group) replaces the rule.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.manufacturing.errors import ManufacturingError
from deepseek.manufacturing.runtime import STRIDE

log = logging.getLogger(__name__)

GOOD_FOLDERS = {"good", "ok", "normal"}
#: ``anomaly``: VisA's ``Data/Images/Anomaly/`` (beside ``Normal/``)
DEFECT_FOLDERS = {"defect", "defects", "bad", "crack", "cracks", "ng", "anomaly"}
#: folders a mask is looked for in; ``SegmentationClass`` is Pascal VOC's (and CVAT's
#: "Segmentation mask" export's), beside ``JPEGImages``; ``Label`` is DAGM 2007's, inside
#: the image folder (``Train/Label/0002_label.PNG`` for ``Train/0002.PNG``)
MASK_FOLDERS = ("masks", "mask", "gt", "groundTruth", "ground_truth", "segmentation",
                "SegmentationClass", "Label", "label", "labels")
SPLIT_NAMES = {"train", "val", "valid", "validation", "test", "images"}
#: class names that say a part is good (``ok_front``, ``No defect``, ``NonDefective``): the
#: label formats with class names (COCO categories, VOC ``<name>``, labelme labels) count every
#: class as a defect, so an annotation under one of these would train a good part as a crack
_GOOD_WORDS = {"good", "ok", "okay", "normal", "background", "nodefect", "nodefects",
               "defectfree", "nondefect", "nondefective", "notdefective", "nocrack",
               "nocracks", "crackfree"}
_GOOD_PHRASE = re.compile(r"\b(?:(?:no|non|not|without) (?:defects?|defective|cracks?|damage)|"
                          r"(?:defect|crack|damage) free)\b")


def names_good_part(name: object) -> bool:
    """Whether a class name says "good part" (a word of it, or its letters run together, is
    ``good``, ``ok``, ``normal``, ``background``, "no defect", "defect free" and the like)."""
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", str(name))
    words = re.sub(r"[^a-z0-9]+", " ", text.lower()).split()
    joined = " ".join(words)
    return (any(w in _GOOD_WORDS for w in words) or joined.replace(" ", "") in _GOOD_WORDS
            or _GOOD_PHRASE.search(joined) is not None)


def _good_class_error(where: str, name: object, what: str) -> ManufacturingError:
    return ManufacturingError(
        f"{where}: {what} {str(name)!r} names a good part, but every class here counts as a "
        "defect (a good part is an image with no annotation, an empty label file, or a good/ "
        "folder): remove those annotations, keeping the images, or rename the class if it "
        "names a defect")


#: label sources that place the defect in the picture (a mask, however it was written)
PIXEL_LABELS = ("mask", "coco", "voc", "labelme", "yolo")
#: decoded pixels (and masks) kept in memory by the folder readers, in MB; past it, in a
#: temporary file (:class:`SpillFile`), else read again on each use
CACHE_MB = 2048.0
#: disk space a :class:`SpillFile` leaves free in its folder: at least this many bytes and
#: this share of the disk (a shared host's disk is not filled to its last gigabytes)
SPILL_FREE = 2 * 1024 ** 3
SPILL_FREE_SHARE = 0.1


@dataclass
class LabelledImage:
    """One part image: its defect flag, where its label came from, and its pixels and mask
    (None: an image label only), kept in memory or read again from the files on use."""

    path: Path
    defect: bool
    source: str  # "mask", "coco", "voc", "labelme", "yolo", "yolo-background", "folder"
    shape: tuple[int, int]  # the file's (h, w); the image and mask are at ``scale``
    label_path: Path | None = None
    group: str = ""
    rows: list[int] = field(default_factory=list)   # rows of mask pixels
    cols: list[int] = field(default_factory=list)
    scale: float = 1.0     # the image and mask as training sees them (``--scale``)
    bit_depth: int | None = None  # a 16-bit file's pixels read over this many bits
    digest: str = ""       # of the decoded pixels (:func:`pixel_digest`): equal for copies
    copies: list[LabelledImage] = field(default_factory=list, repr=False)  # set aside
    copies_differ: bool = False  # their defect masks differ from its own (merged)
    coco: CocoEntry | None = field(default=None, repr=False)  # its COCO annotations
    _image: np.ndarray | None = field(default=None, repr=False)
    _mask: np.ndarray | None = field(default=None, repr=False)

    @property
    def image(self) -> np.ndarray:
        """The grayscale image at ``scale``: the pixels kept by :meth:`keep`, else decoded
        from the file on each use (refused if the file changed size since it was listed)."""
        if self._image is not None:
            return self._image
        from deepseek.manufacturing.images import read_gray, rescale

        img = read_gray(self.path, bit_depth=self.bit_depth)
        if img.shape != self.shape:
            raise ManufacturingError(f"{self.path}: changed since it was listed ({self.shape} "
                                     f"-> {img.shape}); restart the training")
        return rescale(img, self.scale)

    @property
    def has_mask(self) -> bool:
        """Whether :attr:`mask` is an array (the labels place the defects, or say the image
        is good), told without drawing or decoding it: only a good/ or defect/ folder's
        image has none."""
        return self._mask is not None or self.source != "folder"

    @property
    def mask(self) -> np.ndarray | None:
        """The binary defect mask at ``scale``, an empty one for a known-good image, or None
        when the source has no pixel labels; with the masks of its :attr:`copies` merged.
        """
        if self._mask is not None or self.source == "folder":
            return self._mask
        return self._with_copies(self._own_mask())

    def _with_copies(self, mask: np.ndarray) -> np.ndarray:
        """``mask`` with every pixel the copies' masks mark."""
        for c in self.copies:
            other = c.mask
            if other is not None:
                mask = np.maximum(mask, other)
        return mask

    def _own_mask(self) -> np.ndarray:
        from deepseek.manufacturing.images import rescale_mask

        if self.source == "yolo-background":
            mask = np.zeros(self.shape, np.uint8)
        elif self.source == "yolo":
            assert self.label_path is not None
            mask = yolo_mask(self.label_path, *self.shape)
        elif self.source == "coco":
            assert self.coco is not None
            mask = coco_mask(self.coco, self.path, self.shape)
        elif self.source == "voc":
            assert self.label_path is not None
            mask = voc_mask(self.label_path, self.shape)
        elif self.source == "labelme":
            assert self.label_path is not None
            mask = labelme_mask(self.label_path, self.shape)
        else:
            assert self.label_path is not None
            mask = _read_mask(self.label_path, self.path, self.shape)
        return rescale_mask(mask, self.scale)

    def keep(self, image: np.ndarray, mask: np.ndarray | None) -> None:
        """Keep an already decoded image and mask (so that they are not decoded again)."""
        self._image, self._mask = image, mask

    def let_go(self) -> None:
        """Give back the pixels and mask kept (in memory or a spill file's pages): a caller
        done with the image; they are read from the files again if used after all."""
        self._image = self._mask = None


def in_memory_folder(folder: str | Path, mounts: str = "/proc/mounts") -> bool:
    """Whether ``folder`` lies on a file system held in memory (tmpfs, ramfs), by the
    longest mount point over it in ``mounts``; False where that table cannot be read."""
    try:
        table = Path(mounts).read_text().splitlines()
    except OSError:
        return False
    path = os.path.realpath(folder)
    best, kind = "", ""
    for line in table:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, parts[2]
    return kind in ("tmpfs", "ramfs")


class SpillFile:
    """Decoded pixels past the memory cache, written once to a temporary file (in the
    folder ``TMPDIR`` names, else the system's) and read back through the page cache, where
    they were decoded from the photo file again on every use (a 20-megapixel PNG takes a
    few tenths of a second, and training reads each image for every crop). The file has no
    name (it is gone when the process ends) and is mapped once: each image is a view into
    it. Nothing is written when it would leave less than :data:`SPILL_FREE` (and
    :data:`SPILL_FREE_SHARE` of the disk) free, or when the folder is in memory (tmpfs, as
    ``/tmp`` is on some systems: the file would take the memory the cache was bounded to
    spare); those images are read again on use, as before.

    Use: :meth:`put` each image (True when written), then :meth:`finish`, which hands the
    views to the images."""

    def __init__(self) -> None:
        self._file: Any = None
        self._size = 0
        self._parts: list[tuple[LabelledImage, list[tuple[int, str, tuple[int, ...]]]]] = []
        self._failed = False
        self._ram: bool | None = None  # the temporary folder is held in memory

    @property
    def nbytes(self) -> int:
        """The bytes written so far."""
        return self._size

    def put(self, item: LabelledImage, *arrays: np.ndarray | None) -> bool:
        """Write ``item``'s arrays (the image, and its mask or None) if the disk has room."""
        import shutil
        import tempfile

        if self._failed:
            return False
        need = sum(a.nbytes for a in arrays if a is not None)
        folder = tempfile.gettempdir()
        if self._ram is None:
            self._ram = in_memory_folder(folder)
        try:
            disk = shutil.disk_usage(folder)
            if self._ram or disk.free - need < max(SPILL_FREE, disk.total * SPILL_FREE_SHARE):
                return False
            if self._file is None:
                self._file = tempfile.TemporaryFile(prefix="deepseek-pixels-")
            where = []
            for a in arrays:
                if a is None:
                    where.append((-1, "", ()))
                    continue
                a = np.ascontiguousarray(a)
                self._file.seek(self._size)
                self._file.write(memoryview(a).cast("B"))
                where.append((self._size, a.dtype.str, a.shape))
                self._size += -(-a.nbytes // 64) * 64  # each array 64-byte aligned
        except OSError as exc:  # a full or read-only temporary folder: decode on use
            log.warning("decoded pixels cannot be kept in %s (%s); the images past the "
                        "memory cache are read from their files on each use", folder, exc)
            self._failed = True
            return False
        self._parts.append((item, where))
        return True

    def finish(self) -> None:
        """Map the file and give each image put its views (copy on write: a change stays in
        this process, as with pixels kept in memory)."""
        if self._file is None or not self._parts:
            return
        self._file.truncate(self._size)  # the last array's alignment padding
        self._file.flush()
        data = np.memmap(self._file, np.uint8, mode="c", shape=(self._size,))
        self._file.close()  # the mapping keeps the (nameless) file until it is let go
        for item, where in self._parts:
            views = [None if off < 0 else
                     data[off:off + int(np.prod(shape)) * np.dtype(dt).itemsize]
                     .view(dt).reshape(shape) for off, dt, shape in where]
            item.keep(*views)
        self._file, self._parts = None, []


def pixel_digest(image: np.ndarray) -> str:
    """A digest of decoded pixels and their shape: the same for one photo saved twice (under
    two names, or re-encoded without loss), different for any changed pixel."""
    h = hashlib.blake2b(str(image.shape).encode(), digest_size=16)
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def set_aside_copies(items: list[LabelledImage]) -> list[LabelledImage]:
    """``items`` with each set of copies (equal :attr:`~LabelledImage.digest`) kept once:
    the first with a pixel label, else the first in order; the others are listed in its
    :attr:`~LabelledImage.copies` and their masks merged into its mask; the pixels a copy
    kept are let go (the kept image is the one used). A warning names them.

    Raises:
        ManufacturingError: two copies labelled one a defect and the other good.
    """
    sets: dict[str, list[LabelledImage]] = {}
    for it in items:
        sets.setdefault(it.digest or str(it.path), []).append(it)
    if all(len(v) == 1 for v in sets.values()):
        return items
    keep: dict[int, LabelledImage] = {}
    for same in sets.values():
        if len(same) == 1:
            keep[id(same[0])] = same[0]
            continue
        kinds = {it.defect for it in same}
        if len(kinds) > 1:
            bad = next(it for it in same if it.defect)
            ok = next(it for it in same if not it.defect)
            raise ManufacturingError(
                f"{bad.path} and {ok.path} are the same picture (equal pixels) but the first is "
                f"labelled a defect ({bad.source}) and the second good ({ok.source}): fix the "
                "wrong label, or remove one copy")
        first = next((it for it in same if it.source in PIXEL_LABELS), same[0])
        copies = [it for it in same if it is not first]
        # a good image's copies add nothing to its (empty) mask: their labels are not read
        others = [m for m in (c.mask for c in copies) if m is not None] if first.defect else []
        own = first.mask if others else None  # its own label, read before the copies join it
        first.copies = copies
        for c in copies:  # a copy's pixels are never read again (its mask may be, merged)
            c._image = None
        if others:
            assert own is not None  # the first with a pixel label was kept
            first.copies_differ = any(not np.array_equal(own, m) for m in others)
            if first._mask is not None:  # kept in memory: merged now (else on each read)
                first._mask = first._with_copies(first._mask)
            rows, cols = np.nonzero(first.mask)
            first.rows, first.cols = rows.tolist(), cols.tolist()
        keep[id(first)] = first
    out = [it for it in items if id(it) in keep]
    report = copies_report(out)
    log.warning("%d image(s) are copies of others (equal pixels) and are used once: %s%s; "
                "the sets are listed as \"copies\" in the run's JSON",
                sum(len(r["copies"]) for r in report),
                ", ".join(f"{Path(c).name} = {Path(r['kept']).name}" for r in report[:4]
                          for c in r["copies"][:1]),
                " ..." if len(report) > 4 else "")
    return out


def distinct_images(files: list[Path], bit_depth: int | None = None,
                    cache_mb: float = CACHE_MB) -> list[LabelledImage]:
    """Unlabelled image files as good items with copies of an image (equal pixels) set aside
    (:func:`set_aside_copies`: the items kept, in order, each with its copies and digest);
    ``bit_depth``: as :func:`~deepseek.manufacturing.images.read_gray`. The decoded pixels
    stay with their items up to ``cache_mb`` in all (the rest are decoded again when used);
    a caller done with an image gives them back with :meth:`LabelledImage.let_go`."""
    from deepseek.manufacturing.images import read_gray

    items, budget = [], cache_mb * 1e6
    for p in files:
        img = read_gray(p, bit_depth=bit_depth)
        item = LabelledImage(p, False, "folder", (int(img.shape[0]), int(img.shape[1])),
                             digest=pixel_digest(img), bit_depth=bit_depth)
        if img.nbytes <= budget:
            item.keep(img, None)
            budget -= img.nbytes
        items.append(item)
    return set_aside_copies(items)


def image_digests(items: list[LabelledImage]) -> list[str]:
    """The pixel digests of ``items`` (a copy shares its image's), sorted: what a model keeps
    of the images it learnt from, so that ``calibrate`` can tell when it is given them again
    (under any name)."""
    return sorted({it.digest for it in items if it.digest})


def copies_report(items: list[LabelledImage]) -> list[dict[str, Any]]:
    """The copies :func:`set_aside_copies` set aside: ``{"kept", "copies", "masks"}`` per
    set, ``masks`` ``"merged"`` when the copies' defect masks differed, else ``"equal"``."""
    return [{"kept": str(it.path), "copies": [str(c.path) for c in it.copies],
             "masks": "merged" if it.copies_differ else "equal"} for it in items if it.copies]


class FolderNames:
    """The names in each folder, listed once and kept sorted: a label looked for image by
    image would list the image's folder and every mask folder again for each image
    (3,000 images beside a masks/ folder: 13.7 s, growing with the square of the count)."""

    def __init__(self) -> None:
        # (the name as the file system compares it, the name): on Windows, where glob and
        # the file system ignore case, a mask Part1_mask.png is 'part1''s as before
        self._names: dict[Path, list[tuple[str, str]] | None] = {}
        self._places: dict[Path, list[Path]] = {}

    def _listed(self, folder: Path) -> list[tuple[str, str]] | None:
        if folder not in self._names:
            try:
                self._names[folder] = sorted((os.path.normcase(n), n)
                                             for n in os.listdir(folder))
            except OSError:  # no such folder, a file, or unreadable: nothing found there
                self._names[folder] = None
        return self._names[folder]

    def is_dir(self, folder: Path) -> bool:
        """Whether ``folder`` could be listed."""
        return self._listed(folder) is not None

    def _named(self, base: Path, folder: str) -> Path:
        """``base / folder`` as the folder is spelt there, in any case (VisA's ``Masks/``,
        a ``GT/``), else as given."""
        want = folder.lower()
        hit = next((n for _, n in self._listed(base) or [] if n.lower() == want), None)
        return base / (hit if hit is not None else folder)

    def mask_folders(self, d: Path) -> list[Path]:
        """The mask folders that exist for images in folder ``d``, in the order they are
        looked in: beside the image, beside its folder, and, by the image folder's name,
        in a mask folder beside that folder's parent (MVTec AD's test/crack/000.png with
        ground_truth/crack/000_mask.png; VisA's Data/Images/Anomaly/000.JPG with
        Data/Masks/Anomaly/000.png); a folder's name in any case; never ``d`` itself."""
        if d not in self._places:
            folders = list(dict.fromkeys(f.lower() for f in MASK_FOLDERS))
            places = [self._named(base, f) for base in (d, d.parent) for f in folders]
            places += [self._named(d.parent.parent, f) / d.name for f in folders]
            self._places[d] = [p for p in places
                               if self.is_dir(p) and p.resolve() != d.resolve()]
        return self._places[d]

    def starting(self, folder: Path, prefix: str) -> list[Path]:
        """The entries of ``folder`` whose names start with ``prefix``, in name order."""
        names = self._listed(folder) or []
        key = os.path.normcase(prefix)
        out, i = [], bisect.bisect_left(names, (key, ""))
        while i < len(names) and names[i][0].startswith(key):
            out.append(folder / names[i][1])
            i += 1
        return out


def _find_mask(img: Path, names: FolderNames | None = None) -> Path | None:
    from deepseek.manufacturing.images import (
        IMAGE_SUFFIXES,
        LABEL_STEM_ENDINGS,
        same_stem_masks,
    )

    names = names if names is not None else FolderNames()
    stem, d = img.stem, img.parent
    beside = names.starting(d, stem)
    for cand in beside:
        rest = cand.stem[len(stem):]
        if cand.suffix.lower() in IMAGE_SUFFIXES and rest.lower() in LABEL_STEM_ENDINGS:
            return cand
    twins = [c for c in beside if os.path.normcase(c.name).startswith(os.path.normcase(stem + "."))
             and c != img and c.suffix.lower() in IMAGE_SUFFIXES]
    if twins:  # part.png beside part.jpg: the mask when its content is one
        masks = same_stem_masks([img, *twins])
        if img not in masks and masks:
            return sorted(masks)[0]
    for place in names.mask_folders(d):
        for cand in names.starting(place, stem):
            rest = cand.stem[len(stem):].lower()
            if cand.suffix.lower() in IMAGE_SUFFIXES and (rest == "" or
                                                          rest in LABEL_STEM_ENDINGS):
                return cand
            if cand.suffix.lower() == ".mat" and rest == "":  # CrackForest's ground truth
                return cand
    return None


def yolo_label_path(img: Path) -> Path | None:
    """The YOLO label file of an image under ``images/`` (the same path under ``labels/``,
    ``.txt``), or None.
    """
    parts = list(img.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            cand = Path(*parts[:i], "labels", *parts[i + 1:]).with_suffix(".txt")
            if cand.is_file():
                return cand
            break
    cand = img.with_suffix(".txt")
    return cand if cand.is_file() else None


def voc_label_path(img: Path) -> Path | None:
    """The Pascal VOC file of an image: ``STEM.xml`` beside it, or in ``Annotations/`` (or
    ``annotations/``) beside its folder, holding an ``<annotation>`` element (a camera's
    own XML beside the photo is not a label); None when there is none."""
    for cand in (img.with_suffix(".xml"), img.parent.parent / "Annotations" / f"{img.stem}.xml",
                 img.parent.parent / "annotations" / f"{img.stem}.xml"):
        try:
            with open(cand, "rb") as f:
                if b"<annotation" in f.read(1 << 16):
                    return cand
        except OSError:
            continue
    return None


def voc_mask(label: Path, shape: tuple[int, int]) -> np.ndarray:
    """The defect mask of a Pascal VOC file: every object's box filled (pixel coordinates,
    both edges included; every class a defect).

    Raises:
        ManufacturingError: not VOC XML, a ``<size>`` other than the image's, or a box that
            is malformed or outside the image (nothing is clamped).
    """
    import xml.etree.ElementTree as ET

    h, w = shape
    try:
        tree = ET.parse(label)
    except (ET.ParseError, OSError) as exc:
        raise ManufacturingError(f"{label}: not readable Pascal VOC XML ({exc})") from None
    ann = tree.getroot()
    if ann.tag != "annotation":
        raise ManufacturingError(f"{label}: the root element is <{ann.tag}>, a Pascal VOC file's "
                                 "is <annotation>")
    size = ann.find("size")
    if size is not None:
        try:
            sw, sh = int(float(size.findtext("width", "0"))), int(float(size.findtext("height",
                                                                                      "0")))
        except (ValueError, OverflowError):
            raise ManufacturingError(f"{label}: <size> is not numbers") from None
        if (sw or sh) and (sh, sw) != (h, w):
            raise ManufacturingError(f"{label}: <size> says {sw}x{sh}, the image is {w}x{h} "
                                     "(read upright by its EXIF orientation); the boxes must be "
                                     "of this picture")
    mask = np.zeros((h, w), np.uint8)
    for k, obj in enumerate(ann.iter("object"), 1):
        what = f"{label}: object {k} ({obj.findtext('name', '?')})"
        if names_good_part(obj.findtext("name", "")):
            raise _good_class_error(f"{label}: object {k}", obj.findtext("name"), "its <name>")
        box = obj.find("bndbox")
        try:
            x0, y0, x1, y1 = (float(box.findtext(t, "")) for t in ("xmin", "ymin", "xmax",
                                                                    "ymax"))  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            raise ManufacturingError(f"{what}: needs <bndbox> with numeric xmin, ymin, xmax, "
                                     "ymax") from None
        if not (0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h):
            raise ManufacturingError(f"{what}: box ({x0:g}, {y0:g})-({x1:g}, {y1:g}) is not "
                                     f"inside the {w}x{h} image with min <= max (nothing is "
                                     "clamped)")
        mask[int(y0):min(h, int(np.ceil(y1)) + 1), int(x0):min(w, int(np.ceil(x1)) + 1)] = 1
    return mask


def labelme_label_path(img: Path) -> Path | None:
    """The labelme file of an image (``STEM.json`` beside it, holding ``shapes``), or None."""
    cand = img.with_suffix(".json")
    if not cand.is_file():
        return None
    try:
        with open(cand, "rb") as f:
            if b'"shapes"' not in f.read(1 << 16):
                return None
    except OSError:
        return None
    return cand


#: how labelme itself draws a line and a point as a mask (``labelme.utils.shape_to_mask``)
LABELME_LINE_WIDTH, LABELME_POINT_RADIUS = 10, 5


def labelme_mask(label: Path, shape: tuple[int, int]) -> np.ndarray:
    """The defect mask of a labelme file: every shape drawn with Pillow as labelme draws
    it (every label a defect).

    Raises:
        ManufacturingError: unreadable JSON, a stated size other than the image's, a point
            outside the image, or a shape labelme does not write.
    """
    import base64
    import io as _io
    import json

    from PIL import Image, ImageDraw

    h, w = shape
    try:
        doc = json.loads(label.read_text(encoding="utf-8-sig"))  # a BOM (Windows) or not
        shapes = doc["shapes"]
        if not isinstance(shapes, list):
            raise TypeError("shapes is not a list")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ManufacturingError(f"{label}: not a readable labelme file ({exc})") from None
    sw, sh = doc.get("imageWidth"), doc.get("imageHeight")
    try:
        stated = None if sw is None or sh is None else (int(sh), int(sw))
    except (TypeError, ValueError, OverflowError):
        raise ManufacturingError(f"{label}: imageWidth/imageHeight are not numbers") from None
    if stated is not None and stated != (h, w):
        raise ManufacturingError(f"{label}: says {sw}x{sh}, the image is {w}x{h} (read upright "
                                 "by its EXIF orientation); the shapes must be of this picture")
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    out = np.zeros((h, w), np.uint8)
    for k, sh_ in enumerate(shapes, 1):
        what = f"{label}: shape {k}"
        try:
            kind = sh_.get("shape_type") or "polygon"
            what += f" ({sh_.get('label', '?')}, {kind})"
            if names_good_part(sh_.get("label", "")):
                raise _good_class_error(f"{label}: shape {k}", sh_.get("label"), "its label")
            xy = np.asarray(sh_["points"], np.float64).reshape(-1, 2)
            _inside(xy[:, 0], xy[:, 1], w, h)
            pts = [tuple(p) for p in xy.tolist()]
            if kind == "polygon" and len(pts) >= 3:
                draw.polygon(pts, outline=1, fill=1)
            elif kind == "rectangle" and len(pts) == 2:
                (x0, y0), (x1, y1) = pts
                draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)],
                               outline=1, fill=1)
            elif kind == "circle" and len(pts) == 2:
                (cx, cy), (px, py) = pts
                r = float(np.hypot(cx - px, cy - py))
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=1, fill=1)
            elif kind in ("line", "linestrip") and len(pts) >= 2:
                draw.line(pts, fill=1, width=LABELME_LINE_WIDTH)
            elif kind == "point" and len(pts) == 1:
                (cx, cy), r = pts[0], LABELME_POINT_RADIUS
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=1, fill=1)
            elif kind == "mask" and len(pts) == 2 and sh_.get("mask"):
                with Image.open(_io.BytesIO(base64.b64decode(sh_["mask"]))) as im:
                    bits = np.asarray(im.convert("L")) > 0
                x0, y0 = (int(round(v)) for v in pts[0])
                if y0 + bits.shape[0] > h or x0 + bits.shape[1] > w:
                    raise ValueError(f"its {bits.shape[1]}x{bits.shape[0]} bitmap at "
                                     f"({x0}, {y0}) runs past the {w}x{h} image")
                out[y0:y0 + bits.shape[0], x0:x0 + bits.shape[1]] |= bits.astype(np.uint8)
            else:
                raise ValueError(f"{len(pts)} point(s) make no {kind} labelme writes")
        except (ValueError, TypeError, KeyError, AttributeError, OSError, OverflowError,
                Image.DecompressionBombError) as exc:
            raise ManufacturingError(f"{what}: {exc}") from None
    return out | (np.asarray(canvas) > 0).astype(np.uint8)


#: where a YOLO data set names its classes, looked for in the label file's folder and the two
#: above it (``labels/train/``, ``labels/``, the data set root): Ultralytics' and Roboflow's
#: ``data.yaml``, labelImg's ``classes.txt``, darknet's ``obj.names``
YOLO_NAME_FILES = ("data.yaml", "dataset.yaml", "data.yml", "classes.txt", "obj.names")


@functools.lru_cache(maxsize=64)
def _read_yolo_names(f: Path, stamp: tuple[int, int]) -> dict[int, str] | None:
    """The class names a YOLO names file gives by class number, or None when it gives none
    (a YAML file without ``names``, or unreadable); read once per version of the file
    (``stamp``: its modification time and size)."""
    try:
        text = f.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("%s: its class names cannot be read (%s), so a class that names a good "
                    "part is not caught", f, exc)
        return None
    if f.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            log.warning("%s: its class names are not read without PyYAML (pip install "
                        '"deepseek-manufacturing[full]"), so a class that names a good part '
                        "is not caught", f)
            return None
        try:
            names = (yaml.safe_load(text) or {}).get("names")
        except (yaml.YAMLError, AttributeError) as exc:
            log.warning("%s: not readable YAML (%s), so its class names are not read and a "
                        "class that names a good part is not caught", f,
                        str(exc).splitlines()[0])
            return None
        if isinstance(names, list):
            return {i: str(n) for i, n in enumerate(names)}
        if isinstance(names, dict):
            return {int(k): str(v) for k, v in names.items()
                    if isinstance(k, int) or str(k).isdigit()}
        return None
    return dict(enumerate(line.strip() for line in text.splitlines() if line.strip()))


def yolo_class_names(label: Path) -> tuple[Path, dict[int, str]] | None:
    """The class names of a YOLO label file's data set (:data:`YOLO_NAME_FILES`, the nearest
    found) and the file they came from, or None."""
    for up in (label.parent, *list(label.parent.parents)[:2]):
        for name in YOLO_NAME_FILES:
            try:
                st = (up / name).stat()
            except OSError:
                continue
            got = _read_yolo_names(up / name, (st.st_mtime_ns, st.st_size))
            if got is not None:
                return up / name, got
    return None


def yolo_mask(label: Path, height: int, width: int) -> np.ndarray:
    """Rasterise a YOLO polygon/box label file at the image's size (uint8 0/1). A class
    that its data set's names file (:func:`yolo_class_names`) names a good part is an
    error: every class counts as a defect."""
    import cv2

    names = yolo_class_names(label)
    mask = np.zeros((height, width), np.uint8)
    for n, line in enumerate(label.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            cls = int(fields[0])
            vals = np.array([float(v) for v in fields[1:]], np.float64)
        except ValueError:
            raise ManufacturingError(f"{label}:{n}: not a YOLO label line (class and numbers "
                                     f"expected): {line[:60]!r}") from None
        if cls < 0:
            raise ManufacturingError(f"{label}:{n}: class {cls} is negative")
        if names is not None and names_good_part(names[1].get(cls, "")):
            raise _good_class_error(f"{label}:{n}", names[1][cls],
                                    f"class {cls}, named in {names[0]},")
        if not np.isfinite(vals).all() or (vals < 0).any() or (vals > 1).any():
            raise ManufacturingError(f"{label}:{n}: coordinates must be normalised to 0..1 "
                                     "(YOLO); re-export the labels normalised")
        if len(vals) == 4:
            cx, cy, bw, bh = vals
            x0, x1 = (cx - bw / 2) * width, (cx + bw / 2) * width
            y0, y1 = (cy - bh / 2) * height, (cy + bh / 2) * height
            mask[max(0, int(np.floor(y0))):int(np.ceil(y1)),
                 max(0, int(np.floor(x0))):int(np.ceil(x1))] = 1
        elif len(vals) >= 6 and len(vals) % 2 == 0:
            pts = np.round(vals.reshape(-1, 2) * [width - 1, height - 1]).astype(np.int32)
            cv2.fillPoly(mask, [pts], 1)
            cv2.polylines(mask, [pts], True, 1)   # thin polygons keep their outline
        else:
            raise ManufacturingError(f"{label}:{n}: {len(vals)} numbers after the class: a box "
                                     "has 4 (cx cy w h), a polygon an even number >= 6")
    return mask


def label_classes(item: LabelledImage) -> dict[str, int]:
    """How many annotations of each class an image's label file gives it (COCO categories,
    VOC object names, labelme labels, YOLO classes by their data set's names file or as
    ``class N``); {} for masks, folders and good parts. Every one of them is a defect; the
    counts show which classes went into training. The file was read (and checked) for the
    mask already."""
    import collections
    import json
    import xml.etree.ElementTree as ET

    if item.label_path is None or item.source not in ("coco", "voc", "labelme", "yolo"):
        return {}
    try:
        if item.source == "coco" and item.coco is not None:
            names = item.coco.names
            got = [str(names.get(a.get("category_id"), f"category {a.get('category_id')}"))
                   for a in item.coco.annotations]
        elif item.source == "voc":
            got = [o.findtext("name", "?") for o in ET.parse(item.label_path).iter("object")]
        elif item.source == "labelme":
            doc = json.loads(item.label_path.read_text(encoding="utf-8-sig"))
            got = [str(sh.get("label", "?")) for sh in doc["shapes"]]
        else:
            found = yolo_class_names(item.label_path)
            named = found[1] if found else {}
            got = [named.get(int(line.split()[0]), f"class {line.split()[0]}")
                   for line in item.label_path.read_text(encoding="utf-8-sig").splitlines()
                   if line.strip()]
    except (OSError, ValueError, KeyError, TypeError, ET.ParseError):
        return {}
    return dict(collections.Counter(got))


def class_summary(items: list[LabelledImage]) -> dict[str, dict[str, int]]:
    """Every defect class the images' label files name: annotations and images, most
    annotations first (see :func:`label_classes`)."""
    out: dict[str, dict[str, int]] = {}
    for it in items:
        for name, n in label_classes(it).items():
            e = out.setdefault(name, {"annotations": 0, "images": 0})
            e["annotations"] += n
            e["images"] += 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1]["annotations"], kv[0])))


@dataclass
class CocoEntry:
    """One image of a COCO annotation file: the file, the size it states, its annotations."""

    json: Path
    file_name: str
    width: int
    height: int
    annotations: list[dict[str, Any]]
    names: dict[Any, Any] = field(default_factory=dict)  # the file's category names by id


def _coco_candidates(root: Path) -> list[Path]:
    """JSON files that may hold COCO annotations for the images below ``root``: any below
    it, and those in an ``annotations/`` folder beside it whose name holds the folder's
    (``annotations/instances_train2017.json`` for ``train2017/``)."""
    from deepseek.paths import files_below

    found = sorted(p for p in files_below(root) if p.suffix.lower() == ".json")
    beside = root.parent / "annotations"
    if beside.is_dir() and not beside.is_relative_to(root):
        found += sorted(j for j in beside.glob("*.json") if root.name.lower() in j.stem.lower())
    return found


def _load_coco(path: Path) -> dict[str, Any] | None:
    """The COCO document in ``path``, or None when the JSON is something else.

    Raises:
        ManufacturingError: the file starts as a COCO file does but is not readable JSON (a
            copy cut short, an export interrupted): its labels would be missed."""
    import json

    try:
        with open(path, "rb") as f:
            # COCO writers put "images" near the top (after info, licences, categories); a
            # folder may hold thousands of other JSON files (labelme's, one per photo, each
            # with the photo inside), which are not parsed whole to learn that
            if b'"images"' not in f.read(1 << 18):
                return None
            f.seek(0)
            doc = json.load(f)
    except OSError:
        return None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManufacturingError(f"{path}: holds \"images\" as a COCO annotation file does, "
                                 f"but is not readable JSON ({exc}): export it again (a copy "
                                 "cut short?), or move it out if it is not one") from None
    if not (isinstance(doc, dict) and isinstance(doc.get("images"), list)
            and isinstance(doc.get("annotations"), list)):
        return None
    return doc


def _coco_entries(js: Path, doc: dict[str, Any]) -> list[CocoEntry]:
    entries: dict[Any, CocoEntry] = {}
    for k, im in enumerate(doc["images"]):
        try:
            # a tool on Windows writes "images\\001.jpg": the same path
            entries[im["id"]] = CocoEntry(js, str(im["file_name"]).replace("\\", "/"),
                                          int(im["width"]), int(im["height"]), [])
        except (KeyError, TypeError, ValueError, OverflowError):
            raise ManufacturingError(f"{js}: images[{k}] needs id, file_name, width and "
                                     "height") from None
    for k, ann in enumerate(doc["annotations"]):
        if not isinstance(ann, dict):
            raise ManufacturingError(f"{js}: annotations[{k}] is not an object")
        if ann.get("image_id") not in entries:
            raise ManufacturingError(f"{js}: annotation {ann.get('id', f'[{k}]')} is of "
                                     f"image_id {ann.get('image_id')!r}, which the file's "
                                     "images do not list")
        entries[ann["image_id"]].annotations.append(ann)
    cats = doc.get("categories")
    names = {c["id"]: c.get("name") for c in cats
             if isinstance(c, dict) and isinstance(c.get("id"), (int, str))} \
        if isinstance(cats, list) else {}
    for cid, name in names.items():
        if names_good_part(name):
            used = [a for a in doc["annotations"] if a.get("category_id") == cid]
            if used:
                e = entries[used[0]["image_id"]]
                raise _good_class_error(
                    f"{js}", name, f"{len(used)} annotation(s) (the first, "
                    f"{used[0].get('id', '?')}, on {e.file_name}) are of category {cid},")
    for e in entries.values():
        e.names = names
    return list(entries.values())


#: the columns of a run-length table (Severstal's steel ``train.csv``, Airbus ships'): the
#: image's file name and its runs; ``ClassId`` is optional
RLE_CSV_COLUMNS = ("imageid", "encodedpixels")


def _rle_csv_candidates(root: Path) -> list[Path]:
    """CSV files below ``root`` or beside it (Severstal's ``train.csv`` beside
    ``train_images/``) whose header names ``ImageId`` and ``EncodedPixels``."""
    from deepseek.paths import files_below

    found = [p for p in files_below(root) if p.suffix.lower() == ".csv"]
    found += sorted(p for p in root.parent.glob("*.csv") if not p.is_relative_to(root))
    out = []
    for path in found:
        try:
            with open(path, encoding="utf-8-sig", newline="") as f:
                head = [c.strip().lower() for c in f.readline().split(",")]
        except (OSError, UnicodeDecodeError):
            continue
        if all(c in head for c in RLE_CSV_COLUMNS):
            out.append(path)
    return out


def _rle_csv_entries(path: Path) -> list[CocoEntry]:
    """The images a run-length table lists, as COCO entries of unknown size: each row one
    annotation of its ``ClassId`` (``class N``; 1 without the column), its
    ``EncodedPixels`` the runs as ``start length`` pairs, pixels counted from 1 down each
    column, then across (an empty one: the image is listed, with no defect).

    Raises:
        ManufacturingError: a row without an image, or runs that are not pairs of positive
            whole numbers: naming the file and line."""
    import csv

    entries: dict[str, CocoEntry] = {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = csv.DictReader(f)
        col = {c.strip().lower(): c for c in rows.fieldnames or []}
        for n, row in enumerate(rows, 2):
            name = (row.get(col["imageid"]) or "").strip()
            if not name:
                raise ManufacturingError(f"{path}, line {n}: no ImageId")
            entry = entries.setdefault(name, CocoEntry(path, name.replace("\\", "/"), 0, 0, []))
            runs = (row.get(col["encodedpixels"]) or "").split()
            if not runs:
                continue
            try:
                pairs = [int(v) for v in runs]
                if len(pairs) % 2 or min(pairs) < 1:
                    raise ValueError
            except ValueError:
                raise ManufacturingError(
                    f"{path}, line {n}: EncodedPixels is not pairs of positive whole numbers "
                    f"(start length ..., pixels counted from 1 down each column)") from None
            cid = (row.get(col.get("classid", ""), "") or "1").strip() if "classid" in col \
                else "1"
            entry.annotations.append({"id": f"line {n}", "category_id": cid,
                                      "segmentation": {"pairs": pairs}})
    names = {a["category_id"]: f"class {a['category_id']}"
             for e in entries.values() for a in e.annotations}
    for e in entries.values():
        e.names = names
    return list(entries.values())


def coco_labels(root: Path, files: list[Path]) -> dict[Path, CocoEntry]:
    """The COCO entry of each of ``files`` that a COCO file below ``root`` (or in
    ``annotations/`` beside it) lists: by ``file_name`` relative to the JSON's folder or to
    ``root``, else (for files no entry names so) by the name alone when it is unique among
    the files and among the entries left. A run-length table (Severstal's or Airbus'
    ``train.csv``: ``ImageId``, ``EncodedPixels``, below ``root`` or beside it) gives entries
    the same way, and, as those tables list only the images with a defect (Severstal) or
    every image (Airbus), an image of ``files`` it does not list is a good part.

    Raises:
        ManufacturingError: a malformed entry or annotation, an annotation of an image the
            file does not list, or an image listed by two entries.
    """
    all_entries = []
    for js in _coco_candidates(root):
        doc = _load_coco(js)
        if doc is not None:
            all_entries += _coco_entries(js, doc)
    tables = _rle_csv_candidates(root)
    for table in tables:
        all_entries += _rle_csv_entries(table)
    if not all_entries:
        return {}
    by_path = {p.resolve(): p for p in files}
    out: dict[Path, CocoEntry] = {}

    def take(hit: Path, e: CocoEntry) -> None:
        if hit in out:
            raise ManufacturingError(f"{hit}: listed twice in COCO files ({out[hit].json}: "
                                     f"{out[hit].file_name}; {e.json}: {e.file_name}); keep one")
        out[hit] = e

    left = []
    for e in all_entries:
        hit = next((by_path[c] for c in ((base / e.file_name).resolve()
                                         for base in (e.json.parent, root)) if c in by_path),
                   None)
        if hit is None:
            left.append(e)
        else:
            take(hit, e)
    names: dict[str, list[Path]] = {}
    for p in files:
        if p not in out:
            names.setdefault(p.name, []).append(p)
    left_names: dict[str, int] = {}
    for e in left:
        left_names[Path(e.file_name).name] = left_names.get(Path(e.file_name).name, 0) + 1
    for e in left:
        name = Path(e.file_name).name
        if len(names.get(name, ())) == 1 and left_names[name] == 1:
            take(names[name][0], e)
    log.info("%s: COCO annotations for %d of %d image(s) (%d entries in %d file(s))", root,
             len(out), len(files), len(all_entries), len({e.json for e in all_entries}))
    # a run-length table lists the defects: the other images of a folder it speaks for
    # (one holding an image it lists) are good parts; a table that lists none of these
    # images speaks for none of them
    covered = {p.parent: e.json for p, e in out.items() if e.json in tables}
    unlisted = [p for p in files if p not in out and p.parent in covered]
    for p in unlisted:
        out[p] = CocoEntry(covered[p.parent], p.name, 0, 0, [])
    if unlisted:
        log.info("%s: %d image(s) that %s does not list are good parts", root, len(unlisted),
                 ", ".join(sorted({covered[p.parent].name for p in unlisted})))
    return out


def coco_mask(entry: CocoEntry, img: Path, shape: tuple[int, int]) -> np.ndarray:
    """The defect mask of ``img`` from its COCO annotations (every category a defect):
    polygons and run-length masks drawn by pycocotools, a box alone filled.

    Raises:
        ManufacturingError: the entry's size is not the image's, a point lies outside the
            image, or an annotation has neither a segmentation nor a box.
    """
    h, w = shape
    where = f"{entry.json} ({entry.file_name})"
    if entry.height and (entry.height, entry.width) != (h, w):  # 0: a table states none
        raise ManufacturingError(f"{where}: says {entry.width}x{entry.height}, the image "
                                 f"{img} is {w}x{h} (read upright by its EXIF orientation); "
                                 "the annotations must be of this picture")
    mask = np.zeros((h, w), np.uint8)
    if not entry.annotations:
        return mask
    if all("pairs" in (a.get("segmentation") or {}) for a in entry.annotations):
        for ann in entry.annotations:  # a run-length table's rows: no pycocotools needed
            mask |= _pairs_mask(ann["segmentation"]["pairs"], h, w, f"{where}, {ann['id']}")
        return mask
    try:
        from pycocotools import mask as cocomask
    except ImportError:
        raise ManufacturingError(f"{entry.json}: COCO masks are drawn with pycocotools: pip "
                                 'install "deepseek-manufacturing[full]" (or pycocotools)') \
            from None
    for ann in entry.annotations:
        aid = ann.get("id", "?")
        seg, box = ann.get("segmentation"), ann.get("bbox")
        try:
            if isinstance(seg, list) and seg:
                for poly in seg:
                    xy = np.asarray(poly, np.float64)
                    if xy.ndim != 1 or len(xy) < 6 or len(xy) % 2:
                        raise ValueError("a polygon needs an even number >= 6 of coordinates")
                    _inside(xy[0::2], xy[1::2], w, h)
                rle = cocomask.merge(_quiet(cocomask.frPyObjects, seg, h, w))
            elif isinstance(seg, dict):
                if list(seg.get("size", [])) != [h, w]:
                    raise ValueError(f"its run-length mask is {seg.get('size')} (h, w), the "
                                     f"image {[h, w]}")
                counts = seg.get("counts")
                if isinstance(counts, list):  # uncompressed: run lengths, column by column
                    if not all(isinstance(c, int) and c >= 0 for c in counts) \
                            or sum(counts) != h * w:
                        raise ValueError(f"its run lengths cover {sum(map(int, counts))} "
                                         f"pixels, the image {h * w}")
                    rle = _quiet(cocomask.frPyObjects, seg, h, w)
                elif isinstance(counts, str):
                    # pycocotools' C decoder trusts the string: runs past the image would
                    # be written past its buffer, so their total is checked first
                    runs = rle_string_counts(counts)
                    if min(runs, default=0) < 0 or sum(runs) != h * w:
                        raise ValueError(f"its run-length string covers {sum(runs)} pixels, "
                                         f"the image {h * w} (damaged or cut short)")
                    rle = {"size": [h, w], "counts": counts.encode()}
                else:
                    raise ValueError("its run-length counts are neither a list nor a string")
            elif box is not None and len(box) == 4:
                x, y, bw, bh = (float(v) for v in box)
                if bw <= 0 or bh <= 0:
                    raise ValueError(f"box {box} has no area")
                _inside(np.array([x, x + bw]), np.array([y, y + bh]), w, h)
                mask[int(np.floor(y)):int(np.ceil(y + bh)),
                     int(np.floor(x)):int(np.ceil(x + bw))] = 1
                continue
            else:
                raise ValueError("neither a segmentation nor a bbox")
            m = _quiet(cocomask.decode, rle)
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            raise ManufacturingError(f"{where}: annotation {aid}: {exc}") from None
        mask |= (m.reshape(h, w, -1).max(axis=2) > 0).astype(np.uint8)
    return mask


def _pairs_mask(pairs: list[int], h: int, w: int, where: str) -> np.ndarray:
    """The mask of ``start length`` runs, pixels counted from 1 down each column, then
    across (Severstal's and Airbus' ``EncodedPixels``).

    Raises:
        ManufacturingError: a run that reaches past the image (not this image's runs, or an
            image of another size)."""
    runs = np.asarray(pairs, np.int64).reshape(-1, 2)
    starts, ends = runs[:, 0] - 1, runs[:, 0] - 1 + runs[:, 1]
    if int(ends.max()) > h * w:
        raise ManufacturingError(f"{where}: a run ends at pixel {int(ends.max())}, past the "
                                 f"{h * w} of the {w}x{h} image (runs count pixels from 1 down "
                                 "each column): are these this image's runs?")
    edge = np.zeros(h * w + 1, np.int32)
    np.add.at(edge, starts, 1)
    np.add.at(edge, ends, -1)
    return (np.cumsum(edge[:-1]) > 0).astype(np.uint8).reshape(w, h).T.copy()


def rle_string_counts(text: str) -> list[int]:
    """The run lengths of a COCO compressed run-length string (the format pycocotools'
    ``encode`` writes: each count in 5-bit groups, one character each from ``0`` (48) on, the
    sixth bit saying that more follow, counts after the second stored as the difference from
    the one two places back), read only to check them before the C decoder trusts them.

    Raises:
        ValueError: a character outside the format, or a count cut short.
    """
    runs: list[int] = []
    p, n = 0, len(text)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("its run-length string ends inside a count (cut short)")
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"its run-length string holds {text[p]!r}, outside the "
                                 "format")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def _quiet(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` without the DeprecationWarning pycocotools raises under numpy 2."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return fn(*args)


def _inside(xs: np.ndarray, ys: np.ndarray, w: int, h: int) -> None:
    """Refuse points outside the image (pixel coordinates, edges included): nothing is
    clamped."""
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        raise ValueError("a coordinate is not a number")
    if xs.min() < 0 or ys.min() < 0 or xs.max() > w or ys.max() > h:
        raise ValueError(f"a point lies outside the {w}x{h} image (x {xs.min():g}..{xs.max():g}"
                         f", y {ys.min():g}..{ys.max():g}): fix the annotation (nothing is "
                         "clamped)")


def _folder_label(img: Path, root: Path) -> bool | None:
    names = [p.lower() for p in img.parent.relative_to(root).parts] if \
        img.is_relative_to(root) else [img.parent.name.lower()]
    for name in reversed(names):
        if name in GOOD_FOLDERS:
            return False
        if name in DEFECT_FOLDERS:
            return True
    return None


def group_pattern_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` (``--group-pattern``) compiled.

    Raises:
        ManufacturingError: it is not a regular expression; the message says why and the fix.
    """
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ManufacturingError(
            f"the group pattern {pattern!r} is not a regular expression ({exc}); give "
            r"--group-pattern a Python regular expression, e.g. '^(\d+)_'") from exc


def group_of(img: Path, root: Path, pattern: str | None = None) -> str:
    """The part an image shows, for group-aware splits: the match of ``pattern`` (its first group)
    in the path, else the default rule (first folder, or the name up to the first ``_``).

    Raises:
        ManufacturingError: ``pattern`` is not a regular expression or does not match the path.
    """
    rel = img.relative_to(root) if img.is_relative_to(root) else Path(img.name)
    if pattern is not None:
        m = group_pattern_regex(pattern).search(rel.as_posix())
        if m is None:
            raise ManufacturingError(f"{rel}: the group pattern {pattern!r} does not match it")
        return m.group(1) if m.groups() else m.group(0)
    folders = [p for p in rel.parent.parts if p.lower() not in SPLIT_NAMES | GOOD_FOLDERS
               | DEFECT_FOLDERS]
    if folders:
        return "/".join(folders)
    return img.stem.split("_", 1)[0] if "_" in img.stem else img.stem


#: the label of a crack in CrackForest's ``groundTruth.Segmentation`` (1 is background)
MAT_DEFECT_LABEL = 2


def mat_mask(path: Path) -> tuple[np.ndarray, list[int]]:
    """The defect mask (uint8, 1 = defect) of a MATLAB ground-truth file in the Berkeley
    segmentation layout that CrackForest uses, and the labels in it other than 1 and
    :data:`MAT_DEFECT_LABEL`, read as background (CrackForest defines 1 as background and 2
    as crack; some of its files also hold 3, the surface a loop of crack encloses, and 4,
    a few faint cracks). The file is a ``groundTruth`` cell of one struct per annotator,
    each with a ``Segmentation`` of whole-number labels; the annotators' defects are joined.

    Raises:
        ManufacturingError: SciPy missing, the file unreadable, no ``groundTruth`` with a
            ``Segmentation``, or labels that are not whole numbers from 1 (a 0 would say the
            file counts from 0, and which label is a crack is then unknown).
    """
    try:
        import scipy.io
    except ImportError:
        raise ManufacturingError(f"{path}: reading MATLAB ground truth needs SciPy: pip "
                                 "install 'deepseek-manufacturing[full]' (or scipy), or save "
                                 "the masks as PNG") from None
    try:
        data = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several kinds for a damaged or foreign file
        raise ManufacturingError(f"{path}: not a readable MATLAB file ({exc})") from None

    def structs(value: Any) -> list[Any]:  # a struct array, or a cell of them (one each)
        arr = np.asarray(value)
        if arr.dtype.names:
            return list(arr.ravel())
        if arr.dtype == object:
            return [s for cell in arr.ravel() for s in structs(cell)]
        return [None]

    gt = data.get("groundTruth")
    annotators = structs(gt) if gt is not None else []
    if not annotators or any(a is None or "Segmentation" not in (a.dtype.names or ())
                             for a in annotators):
        found = ", ".join(k for k in data if not k.startswith("__")) or "nothing"
        raise ManufacturingError(f"{path}: no groundTruth.Segmentation (CrackForest's ground "
                                 f"truth; the file holds {found}): save the mask as a PNG "
                                 "beside the image instead")
    masks, other = [], set()
    for k, annotator in enumerate(annotators):
        seg = np.asarray(annotator["Segmentation"])
        while seg.dtype == object and seg.size == 1:  # MATLAB cells nest their arrays
            seg = np.asarray(seg.ravel()[0])
        if seg.ndim != 2 or not np.issubdtype(seg.dtype, np.number) or not seg.size:
            raise ManufacturingError(f"{path}: groundTruth({k + 1}).Segmentation is not a "
                                     "2-D array of labels")
        labels = np.unique(seg)
        if not np.array_equal(labels, np.round(labels)) or labels[0] < 1:
            raise ManufacturingError(
                f"{path}: groundTruth({k + 1}).Segmentation holds labels "
                f"{labels[:6].tolist()}: expected whole numbers from 1 (1 the background, "
                f"{MAT_DEFECT_LABEL} a crack, as CrackForest writes them); save the mask as "
                "a PNG (non-zero = defect) instead")
        other |= {int(v) for v in labels if v not in (1, MAT_DEFECT_LABEL)}
        masks.append(seg == MAT_DEFECT_LABEL)
    if any(m.shape != masks[0].shape for m in masks):
        raise ManufacturingError(f"{path}: its annotators' segmentations differ in size")
    return np.logical_or.reduce(masks).astype(np.uint8), sorted(other)


#: a mask file that marks more than this share of its image draws a warning: defects drawn
#: black on white read the other way round
MOSTLY_DEFECT = 0.5
#: mask files whose compression blurs edges: read at half their brightest value
LOSSY_MASK_SUFFIXES = (".jpg", ".jpeg")


def _mask_values(px: np.ndarray) -> np.ndarray:
    """The values a mask's pixels ``(h, w, channels)`` mark defects with: the brightest
    channel; with an alpha channel (the fourth, as OpenCV reads BGRA and gray with alpha),
    the colour where the alpha is the same everywhere, the alpha where the colour is, and
    else the colour where the alpha is non-zero."""
    if px.shape[2] != 4:
        return px.max(axis=2)
    colour, alpha = px[..., :3].max(axis=2), px[..., 3]
    if alpha.min() == alpha.max():
        return colour
    if colour.min() == colour.max():
        return alpha
    return np.where(alpha > 0, colour, 0)


def _read_mask(mpath: Path, img: Path, shape: tuple[int, int],
               other_labels: dict[Path, list[int]] | None = None) -> np.ndarray:
    """``img``'s mask from the file ``mpath`` (an image, or MATLAB ground truth: the labels
    it reads as background go to ``other_labels``): its non-zero pixels; in a JPEG mask,
    whose compression leaves faint values around every edge (a 3-pixel line saved at
    quality 95 reads 1.75 times as wide counted from 1), the pixels above half its
    brightest. A mask with an alpha channel is read by its colour where the alpha is the
    same everywhere (an opaque black-and-white mask, which by its alpha alone would be all
    defect), by its alpha where the colour is (a crack painted on a transparent layer),
    and else where both are non-zero."""
    from deepseek.manufacturing.images import imread

    if mpath.suffix.lower() == ".mat":
        raw, other = mat_mask(mpath)
        if other and other_labels is not None:
            other_labels[mpath] = other
    else:
        raw = imread(mpath)
    h, w = shape
    if raw.shape[:2] != (h, w):
        raise ManufacturingError(f"{mpath}: mask is {raw.shape[1]}x{raw.shape[0]}, its image "
                                 f"{img.name} is {w}x{h}; masks must match")
    gray = _mask_values(raw.reshape(h, w, -1))
    if mpath.suffix.lower() in LOSSY_MASK_SUFFIXES:
        return (gray > max(float(gray.max()) / 2, 0.5)).astype(np.uint8)
    return (gray > 0).astype(np.uint8)


def _label_of(p: Path, entry: CocoEntry | None, yolo: Path | None,
              names: FolderNames | None = None) -> tuple[str, Any] | None:
    """The label that speaks for image ``p``, first found of: a mask beside it, its COCO
    entry, a Pascal VOC, labelme or YOLO label file; as (source, the mask file / COCO entry /
    label file), or None. ``names``: the folder listings of the images looked at before."""
    if (mpath := _find_mask(p, names)) is not None:
        return "mask", mpath
    if entry is not None:
        return "coco", entry
    if (voc := voc_label_path(p)) is not None:
        return "voc", voc
    if (lm := labelme_label_path(p)) is not None:
        return "labelme", lm
    return ("yolo", yolo) if yolo is not None else None


def _label_mask(p: Path, found: tuple[str, Any], shape: tuple[int, int],
                mat_other: dict[Path, list[int]]) -> tuple[np.ndarray, Path]:
    """The defect mask (``shape``) that :func:`_label_of`'s label draws for image ``p``, and
    the file it came from."""
    source, ref = found
    if source == "mask":
        return _read_mask(ref, p, shape, mat_other), ref
    if source == "coco":
        return coco_mask(ref, p, shape), ref.json
    if source == "voc":
        return voc_mask(ref, shape), ref
    if source == "labelme":
        return labelme_mask(ref, shape), ref
    return yolo_mask(ref, *shape), ref


def labelled_defects(root: str | Path, files: list[Path], bit_depth: int | None = None
                     ) -> dict[Path, str]:
    """The images among ``files`` (below ``root``) that their labels mark as defects, by the
    rules of :func:`read_labelled` (a mask with a defect beside it; a COCO, Pascal VOC,
    labelme or YOLO label that draws one; a defect class folder), each with the label that
    says so. Images with no label are not listed: for good-parts training and ``calibrate
    --all-good``, which take every image they are given as good."""
    from deepseek.manufacturing.images import read_gray

    root = Path(root)
    coco = coco_labels(root, files)
    out: dict[Path, str] = {}
    mat_other: dict[Path, list[int]] = {}
    names = FolderNames()
    for p in files:
        found = _label_of(p, coco.get(p) if coco else None, yolo_label_path(p), names)
        if found is not None:
            img = read_gray(p, bit_depth=bit_depth)
            mask, label = _label_mask(p, found, (int(img.shape[0]), int(img.shape[1])),
                                      mat_other)
            if mask.any():
                out[p] = f"{found[0]} label {label}"
                continue
        if _folder_label(p, root):
            out[p] = f"in the defect folder {p.parent}"
    _warn_mat_labels(mat_other)  # a good part by label 2 may hold a crack under another
    return out


def set_aside_defects(root: str | Path, files: list[Path], bit_depth: int | None = None
                      ) -> tuple[list[Path], list[Path]]:
    """``files`` without the images their labels mark as defects
    (:func:`labelled_defects`), and those images, named in one warning: good-parts training
    learns every image it is given as good, so a labelled folder given to it keeps its
    defects out of what is learnt (they can measure the recall at its threshold instead)."""
    defects = labelled_defects(root, files, bit_depth)
    if defects:
        named = "; ".join(f"{p.name}: {why}" for p, why in list(defects.items())[:3])
        log.warning("%s: %d of its %d images are labelled defects (%s%s): left out of the "
                    "good parts, and scored to measure the recall at the threshold", root,
                    len(defects), len(files), named, " ..." if len(defects) > 3 else "")
    return [p for p in files if p not in defects], list(defects)


def unlabelled(root: str | Path, files: list[Path],
               coco: dict[Path, CocoEntry] | None = None) -> None:
    """Refuse, before any image is decoded, a labelled folder where some of ``files`` have
    no label by :func:`read_labelled`'s rules (no mask, label file or class folder; in a
    COCO data set, an image its files do not list): one error that counts them and names
    the first few, so that a long scoring or decoding run does not end on the first one.

    Raises:
        ManufacturingError: naming how many, which, and the fix."""
    root = Path(root)
    coco = coco_labels(root, files) if coco is None else coco
    yolo_set = False
    bare: list[Path] = []
    names = FolderNames()
    for p in files:
        yolo = yolo_label_path(p)
        yolo_set |= yolo is not None
        if _folder_label(p, root) is None and \
                _label_of(p, coco.get(p) if coco else None, yolo, names) is None:
            bare.append(p)
    if not bare or (yolo_set and not coco):
        return  # in a YOLO data set an image without a label file is a background (good)
    some = len(bare) > 1
    names = ", ".join(str(p.relative_to(root) if p.is_relative_to(root) else p)
                      for p in bare[:5]) + (" ..." if len(bare) > 5 else "")
    where = f"{root}: {len(bare)} of its {len(files)} images" if some else str(bare[0])
    if coco:
        raise ManufacturingError(
            f"{where}{f' ({names}) are' if some else ':'} not listed in the COCO file(s) of "
            f"this data set ({', '.join(sorted({e.json.name for e in coco.values()}))}) and "
            f"{'have' if some else 'has'} no other label: add {'them' if some else 'it'} there "
            f"(with no annotation if {'they are good parts' if some else 'it is a good part'})"
            f" or move {'them' if some else 'it'} out")
    s = bare[0].stem
    raise ManufacturingError(
        f"{where}{f' have no label ({names})' if some else ': no label'}: give "
        f"{'each ' if some else ''}a mask ({s}_mask.png or masks/{s}.png), a label file (a "
        f"COCO JSON or an ImageId,EncodedPixels table listing it, Pascal VOC {s}.xml, "
        f"labelme {s}.json, YOLO labels/.../{s}.txt), or put {'them' if some else 'it'} in "
        "a good/ or defect/ folder (a folder of good parts alone: train --good-only, "
        "calibrate --all-good)")


def read_labelled(root: str | Path, group_pattern: str | None = None,
                  cache_mb: float = CACHE_MB, scale: float = 1.0,
                  bit_depth: int | None = None, spill: bool = True,
                  known: Mapping[str, tuple[tuple[int, int], str]] | None = None
                  ) -> list[LabelledImage]:
    """Every part image below ``root`` with its label (module docstring rules), its pixels
    and mask at ``scale`` (:func:`~deepseek.manufacturing.images.rescale`), a 16-bit file's
    pixels read over ``bit_depth`` bits (:func:`~deepseek.manufacturing.images.read_gray`).
    Pixels and masks stay in memory up to ``cache_mb`` in all; the rest go to a temporary
    file (:class:`SpillFile`; ``spill`` False, for a caller that uses each image once:
    nowhere) or are read again when used.

    ``known``: ``{str(path): ((h, w), pixel_digest)}`` of images the caller has already
    decoded as ``bit_depth`` says (a scoring): those are not decoded here, and their pixels
    are read again only if used. Only at ``scale`` 1."""
    from deepseek.manufacturing.images import (
        IMAGE_SUFFIXES,
        check_bit_depth,
        check_scale,
        list_images,
        read_gray,
        rescale,
        rescale_mask,
    )

    scale = check_scale(scale)
    bit_depth = check_bit_depth(bit_depth)
    known = known or {}
    if known and scale != 1:
        raise ValueError("known images are read at scale 1 only")

    root = Path(root)
    if not root.is_dir():
        raise ManufacturingError(f"{root}: not a folder")
    files = list_images(root, recursive=True)
    if not files:
        raise ManufacturingError(f"{root}: no part images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    coco = coco_labels(root, files)
    unlabelled(root, files, coco)  # every image's label found before any is decoded
    yolo = {p: yolo_label_path(p) for p in files}
    out = []
    budget = cache_mb * 1e6
    spill_file = SpillFile() if spill else None
    mat_other: dict[Path, list[int]] = {}  # MATLAB ground truth: labels read as background
    mostly: list[tuple[Path, float]] = []  # masks that mark most of their image
    names = FolderNames()
    for p in files:
        facts = known.get(str(p))
        img = read_gray(p, bit_depth=bit_depth) if facts is None else None
        shape = (int(img.shape[0]), int(img.shape[1])) if img is not None else facts[0]
        folder = _folder_label(p, root)
        label: Path | None = None
        entry = coco.get(p) if coco else None
        found = _label_of(p, entry, yolo[p], names)
        if found is not None:
            source = found[0]
            mask, label = _label_mask(p, found, shape, mat_other)
        elif folder is not None:
            mask, source = None, "folder"
        else:  # a YOLO background: unlabelled() refused an unlabelled image anywhere else
            mask, source = np.zeros(shape, np.uint8), "yolo-background"
        defect = bool(mask.any()) if mask is not None else bool(folder)
        if source == "mask" and mask is not None and mask.mean() > MOSTLY_DEFECT:
            mostly.append((label or p, float(mask.mean())))
        if folder is not None and mask is not None and folder != defect:
            raise ManufacturingError(f"{p}: it is in a {'defect' if folder else 'good'} folder "
                                     f"but its {source} label says "
                                     f"{'defect' if defect else 'good'}; fix one of them")
        item = LabelledImage(p, defect, source, shape, label, group_of(p, root, group_pattern),
                             scale=scale,
                             digest=pixel_digest(img) if img is not None else facts[1],
                             coco=entry if source == "coco" else None, bit_depth=bit_depth)
        if scale != 1:
            img = rescale(img, scale)
            mask = None if mask is None else rescale_mask(mask, scale)
        if mask is not None and defect:
            r, c = np.nonzero(mask)
            item.rows, item.cols = r.tolist(), c.tolist()
        if img is None:  # known: its pixels are the caller's, read again if used
            if mask is not None and mask.nbytes <= budget:
                item._mask = mask
                budget -= mask.nbytes
            out.append(item)
            continue
        cost = img.nbytes + (mask.nbytes if mask is not None else 0)
        if cost <= budget:
            item.keep(img, mask)
            budget -= cost
        elif spill_file is not None:
            spill_file.put(item, img, mask)
        out.append(item)
    if spill_file is not None:
        spill_file.finish()
    _warn_stray_backgrounds(out, root)
    if mostly:
        log.warning("%d mask(s) mark most of their image as defect (%s%s): a mask drawn the "
                    "other way round (defects black on white)? Non-zero mask pixels are "
                    "defect; invert such masks", len(mostly), "; ".join(
                        f"{m.name}: {f:.0%}" for m, f in mostly[:3]),
                    " ..." if len(mostly) > 3 else "")
    _warn_mat_labels(mat_other)
    out = set_aside_copies(out)
    n_def = sum(i.defect for i in out)
    unplaced = sum(i.defect and i.source == "folder" for i in out)
    _log_kept(root, out, cache_mb, spill_file)
    log.info("%s: %d images, %d defect (%d with a location), %d good", root, len(out), n_def,
             n_def - unplaced, len(out) - n_def)
    if unplaced:
        log.warning("%d defect images have no mask or label file: their crops are taken at "
                    "random and may miss the defect; masks or YOLO labels train better",
                    unplaced)
    return out


def _log_kept(root: Path, items: list[LabelledImage], cache_mb: float,
              spill: SpillFile | None) -> None:
    """Say where the decoded pixels are: in memory, in the temporary file past ``cache_mb``,
    or (neither) read from their files on each use (said in a warning where ``spill`` was
    given and had no room)."""
    on_disk = sum(isinstance(i._image, np.memmap) for i in items)
    kept = sum(i._image is not None for i in items) - on_disk
    left = len(items) - kept - on_disk
    if on_disk and spill is not None:
        log.info("%s: %d images kept decoded in memory, %d past the %g MB cache in a "
                 "temporary file (%.1f GB)", root, kept, on_disk, cache_mb, spill.nbytes / 1e9)
    if left and spill is not None:
        log.warning("%d of %d images are over the %g MB cache and are read from their files "
                    "on each use (slower: the temporary folder, TMPDIR, had no room for "
                    "them or is held in memory; point TMPDIR at a disk)", left, len(items),
                    cache_mb)


def _warn_mat_labels(mat_other: dict[Path, list[int]]) -> None:
    """Name, in one warning, the MATLAB ground-truth files that held labels read as
    background (``mat_other``: each file's other labels)."""
    if not mat_other:
        return
    by_label = {v: sorted(m.name for m, vs in mat_other.items() if v in vs)
                for v in sorted({v for vs in mat_other.values() for v in vs})}
    log.warning("%d MATLAB ground-truth file(s) hold labels other than 1 (background) and "
                "%d (crack), read as background: %s; where one of them marks a defect, "
                "save those masks as PNG (non-zero = defect)", len(mat_other),
                MAT_DEFECT_LABEL, "; ".join(
                    f"{v} in {len(names)} ({', '.join(names[:4])}"
                    f"{' ...' if len(names) > 4 else ''})" for v, names in by_label.items()))


def _warn_stray_backgrounds(items: list[LabelledImage], root: Path) -> None:
    """Warn of YOLO background images (good for want of a label file) in folders where no
    image has a label file: in a YOLO data set backgrounds sit among the labelled images, so
    a folder of them alone may be something else kept below the data set (previews,
    exports), which would train as good parts."""
    labelled = {it.path.parent for it in items if it.source == "yolo"}
    stray = [it.path for it in items
             if it.source == "yolo-background" and it.path.parent not in labelled]
    if stray:
        folders = sorted({str(p.parent.relative_to(root)) for p in stray})
        log.warning("%s: %d image(s) without a YOLO label file in %d folder(s) where no image "
                    "has one (%s) count as good parts (YOLO background images); if they are "
                    "not photos of parts, move them out of the folder", root, len(stray),
                    len(folders), ", ".join(folders[:3]) + (", ..." if len(folders) > 3 else ""))


def split_groups(items: list[LabelledImage], fraction: float, seed: int = 0
                 ) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """(train, val): whole groups go to validation, about ``fraction`` of the groups with a
    defect and of those without, chosen with ``seed``."""
    if not 0.0 < fraction < 1.0:
        raise ManufacturingError(f"val fraction {fraction}: give a value between 0 and 1")
    groups: dict[str, list[LabelledImage]] = {}
    for it in items:
        groups.setdefault(it.group, []).append(it)
    rng = np.random.default_rng(seed)
    val_names: set[str] = set()
    for want_defect in (True, False):
        names = sorted(g for g, v in groups.items() if any(i.defect for i in v) == want_defect)
        k = int(round(fraction * len(names)))
        if names and k == 0:
            k = 1 if len(names) > 1 else 0
        val_names.update(rng.permutation(names)[:k].tolist())
    train = [i for i in items if i.group not in val_names]
    val = [i for i in items if i.group in val_names]
    for name, part in (("validation", val), ("training", train)):
        if not any(i.defect for i in part) or all(i.defect for i in part):
            which = "only" if any(i.defect for i in part) else "no"
            raise ManufacturingError(
                f"the {name} part of the split has {which} defect images ({len(groups)} "
                "groups); give --val-folder, or more labelled images")
    return train, val


THUMB = 32
SAME_PART_CORRELATION = 0.97
#: a group of look-alikes this large is always accepted (one part under up to 8 lights)
LOOK_ALIKE_GROUP = 8


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A 32 x 32 block-mean of the image, centred and scaled to unit length: lighting (gain
    and offset) divides out, the part's shape and texture stay."""
    h, w = image.shape
    ys = np.linspace(0, h, THUMB + 1).astype(int)
    xs = np.linspace(0, w, THUMB + 1).astype(int)
    cs = np.pad(image.astype(np.float64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    area = np.maximum(np.diff(ys)[:, None] * np.diff(xs)[None, :], 1)
    t = (cs[ys[1:]][:, xs[1:]] - cs[ys[:-1]][:, xs[1:]] - cs[ys[1:]][:, xs[:-1]]
         + cs[ys[:-1]][:, xs[:-1]]) / area
    t = t.ravel() - t.mean()
    n = float(np.linalg.norm(t))
    return t / n if n > 0 else t


def shared_parts(train: list[LabelledImage], val: list[LabelledImage],
                 threshold: float = SAME_PART_CORRELATION) -> list[tuple[str, str, float]]:
    """Validation images that look like a training image of the same size (thumbnails
    correlated at ``threshold`` or more): the same part, photographed again or under another
    light, on both sides of the split, which makes validation figures read too high.
    ``(validation image, training image, correlation)``, the closest training image each."""
    out = []
    by_shape: dict[tuple[int, int], list[LabelledImage]] = {}
    for t in train:
        by_shape.setdefault(t.shape, []).append(t)
    cache: dict[Path, np.ndarray] = {}

    def thumb(item: LabelledImage) -> np.ndarray:
        if item.path not in cache:
            cache[item.path] = thumbnail(item.image)
        return cache[item.path]

    for v in val:
        same = by_shape.get(v.shape)
        if not same:
            continue
        tv = thumb(v)
        corr = np.array([float(tv @ thumb(t)) for t in same])
        k = int(np.argmax(corr))
        if corr[k] >= threshold:
            out.append((str(v.path), str(same[k].path), round(float(corr[k]), 4)))
    return out


def join_look_alikes(items: list[LabelledImage], threshold: float = SAME_PART_CORRELATION,
                     max_share: float = 0.2, rule_given: bool = False
                     ) -> dict[str, int | str]:
    """Put images that look alike (same size, thumbnails correlated at ``threshold`` or more:
    the same part again or under another light) into one group, so that no split or fold has
    the same part on both sides. ``item.group`` is rewritten to the joined group's first name.

    When joining would make one group hold more than ``max_share`` of the images and more
    than :data:`LOOK_ALIKE_GROUP` (parts that all look alike at thumbnail scale, not repeats of
    one part), nothing is joined and the result says why: the group rule (``--group-pattern``)
    is then the only guide. Unless
    ``rule_given`` (a ``--group-pattern``), a default rule that put more than half of the
    images in one group (a camera's ``IMG_0001.jpg`` names) is set aside first: each image
    becomes its own group, and the result says so (``"regrouped"``).

    Returns:
        ``{"groups_before", "groups_after", "pairs"}``; ``"skipped"`` when nothing was joined,
        ``"regrouped"`` when the default rule was set aside.
    """
    info: dict[str, int | str] = {}
    if not rule_given and len(items) >= 4:
        sizes0: dict[str, int] = {}
        for it in items:
            sizes0[it.group] = sizes0.get(it.group, 0) + 1
        if max(sizes0.values()) > len(items) / 2:
            # the default rule made one group of most images (IMG_0001.jpg, IMG_0002.jpg ...):
            # that is a naming habit, not one part; each image is its own group instead
            info["regrouped"] = (f"the default group rule put {max(sizes0.values())} of "
                                 f"{len(items)} images in one group "
                                 f"({max(sizes0, key=sizes0.__getitem__)!r}): each image is "
                                 "taken as its own part instead (look-alikes still joined); "
                                 "give --group-pattern REGEX to say which images show one part")
            for it in items:
                it.group = it.path.as_posix()
    names = sorted({i.group for i in items})
    index = {g: k for k, g in enumerate(names)}
    parent = list(range(len(names)))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    pairs = 0
    by_shape: dict[tuple[int, int], list[int]] = {}
    for k, it in enumerate(items):
        by_shape.setdefault(it.shape, []).append(k)
    for members in by_shape.values():
        if len(members) < 2:
            continue
        thumbs = np.stack([thumbnail(items[k].image) for k in members]).astype(np.float32)
        for a in range(0, len(members), 1024):  # bounded memory: 1024 rows at a time
            corr = thumbs[a:a + 1024] @ thumbs.T
            for r, c in zip(*np.nonzero(corr >= threshold)):
                i, j = members[a + int(r)], members[int(c)]
                if i < j:
                    pairs += 1
                    gi, gj = root(index[items[i].group]), root(index[items[j].group])
                    if gi != gj:
                        parent[max(gi, gj)] = min(gi, gj)
    joined = [names[root(index[it.group])] for it in items]
    info.update(groups_before=len(names), groups_after=len(set(joined)), pairs=pairs)
    sizes: dict[str, int] = {}
    for g in joined:
        sizes[g] = sizes.get(g, 0) + 1
    before: dict[str, int] = {}
    for it in items:
        before[it.group] = before.get(it.group, 0) + 1
    biggest = max(sizes.values())
    if biggest > max(max_share * len(items), max(before.values()), LOOK_ALIKE_GROUP):
        info["skipped"] = (f"joining look-alike images would put {biggest} of {len(items)} "
                           "images in one group (parts that all look alike, not repeats of one "
                           "part); groups left as the group rule made them")
        info["groups_after"] = len(names)
        return info
    for it, g in zip(items, joined):
        it.group = g
    return info


def fold_groups(items: list[LabelledImage], folds: int, seed: int = 0) -> np.ndarray:
    """Each image's fold (0..k-1) for cross-fitting: whole groups per fold, groups with a
    defect and groups without dealt out separately (in a seeded random order, each to the fold
    with the fewest images of its kind so far), so every fold holds both kinds.

    With fewer than ``folds`` groups of either kind (a part photographed from several sides,
    one photo showing its defect, grouped by part: few groups or none free of defects) the
    groups that hold good images as well as defect images count for both:
    :func:`deal_covering` deals them first, one to each fold, then the others. ``k`` is
    ``folds``, or fewer when fewer groups hold a defect, or a good image, than that.

    Raises:
        ManufacturingError: fewer than two groups with a defect, or fewer than two groups
            with a good image.
    """
    groups: dict[str, list[int]] = {}
    for k, it in enumerate(items):
        groups.setdefault(it.group, []).append(k)
    kinds = {want: sorted(g for g, v in groups.items()
                          if any(items[i].defect for i in v) == want) for want in (True, False)}
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(items), np.int64)
    if min(len(kinds[True]), len(kinds[False])) >= folds:
        for want in (True, False):
            deal_groups(kinds[want], groups, folds, rng, fold)
        return fold
    mixed = [g for g in kinds[True] if not all(items[i].defect for i in groups[g])]
    k = min(folds, len(kinds[True]), len(mixed) + len(kinds[False]))
    if k < 2:
        raise ManufacturingError(
            f"cross-fitting needs at least two groups with a defect and two with a good image; "
            f"there are {len(kinds[True])} and {len(mixed) + len(kinds[False])} ({len(items)} "
            "images): label more images, check --group-pattern, or give --val-folder")
    deal_covering(mixed, sorted(set(groups) - set(mixed)), groups,
                  [bool(it.defect) for it in items], k, rng, fold)
    return fold


def deal_covering(first: list[str], rest: list[str], groups: dict[str, list[int]],
                  defect: list[bool], k: int, rng: np.random.Generator, fold: np.ndarray
                  ) -> None:
    """Deal the groups ``first`` and then ``rest`` (each in a random order) to ``k`` folds so
    that every fold gets a defect image and a good image: each group goes to a fold that
    lacks a kind it holds when there is one, else to any fold; among those, to the one with
    the fewest images so far. Every fold is covered when at least ``k`` groups hold a defect
    and ``k`` a good image and ``first`` are the groups that hold both. Writes each member's
    fold into ``fold``."""
    load = np.zeros(k, np.int64)
    has = np.zeros((k, 2), bool)  # [fold, (defect, good)]
    for names in (first, rest):
        for g in rng.permutation(names).tolist():
            kinds = np.array([any(defect[i] for i in groups[g]),
                              not all(defect[i] for i in groups[g])])
            lacking = (kinds[None, :] & ~has).any(1)
            cand = np.flatnonzero(lacking) if lacking.any() else np.arange(k)
            f = int(cand[np.argmin(load[cand] + rng.random(len(cand)) * 1e-3)])
            fold[groups[g]] = f
            load[f] += len(groups[g])
            has[f] |= kinds


def deal_groups(names: list[str], groups: dict[str, list[int]], k: int,
                rng: np.random.Generator, fold: np.ndarray) -> None:
    """Deal the groups ``names`` (members: indices into ``fold``) to ``k`` folds in a random
    order, each to the fold with the fewest of their images so far (ties broken at random);
    writes each member's fold into ``fold``."""
    load = np.zeros(k, np.int64)
    for g in rng.permutation(names).tolist():
        f = int(np.argmin(load + rng.random(k) * 1e-3))
        fold[groups[g]] = f
        load[f] += len(groups[g])


def good_folds(files: list[Path], root: Path, folds: int, seed: int = 0,
               group_pattern: str | None = None, cache_mb: float = CACHE_MB,
               bit_depth: int | None = None
               ) -> tuple[np.ndarray, dict[str, Any], list[LabelledImage]]:
    """Each good image's fold (0..k-1) for an out-of-fold threshold: groups by the group rule
    of :func:`group_of`, look-alike images joined (:func:`join_look_alikes`), whole groups
    dealt at random to the fold with the fewest images so far. ``k`` is ``folds`` or the
    number of groups, whichever is smaller. Copies of an image (equal pixels) are set aside
    (:func:`set_aside_copies`; listed as ``"copies"`` in what the grouping did). Returns
    (folds, what the grouping did, the images used, as good :class:`LabelledImage` items with
    their groups, in ``files`` order with the copies left out; their pixels are kept in
    memory up to ``cache_mb`` in all, the rest read again when used). ``bit_depth``: the bits
    of 16-bit photos, as :func:`~deepseek.manufacturing.images.read_gray` takes it."""
    from deepseek.manufacturing.images import read_gray

    items = []
    budget = cache_mb * 1e6
    spill = SpillFile()
    for p in files:
        img = read_gray(p, bit_depth=bit_depth)
        item = LabelledImage(p, False, "folder", img.shape,
                             group=group_of(p, root, group_pattern), digest=pixel_digest(img),
                             bit_depth=bit_depth)
        if img.nbytes <= budget:
            item.keep(img, None)
            budget -= img.nbytes
        else:
            spill.put(item, img, None)
        items.append(item)
    spill.finish()
    _log_kept(root, items, cache_mb, spill)
    items = set_aside_copies(items)
    info = join_look_alikes(items, rule_given=group_pattern is not None)
    if len(items) < len(files):
        info["copies"] = copies_report(items)
    groups: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(it.group, []).append(i)
    k = min(folds, len(groups))
    if k < 2:
        raise ManufacturingError(f"{root}: the {len(files)} good images form {len(groups)} "
                                 "group(s); an out-of-fold threshold needs at least 2: give "
                                 "more images or --group-pattern REGEX")
    fold = np.zeros(len(items), np.int64)
    deal_groups(sorted(groups), groups, k, np.random.default_rng(seed), fold)
    return fold, info, items


def _crop_at(img: np.ndarray, y0: int, x0: int, size: int) -> np.ndarray:
    return img[y0:y0 + size, x0:x0 + size]


def padded(item: LabelledImage, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The image (and mask) padded with edge values to at least ``size`` on each side."""
    image, mask = item.image, item.mask
    h, w = image.shape
    ph, pw = max(0, size - h), max(0, size - w)
    if not (ph or pw):
        return image, mask
    img = np.pad(image, ((0, ph), (0, pw)), mode="edge")
    return img, None if mask is None else np.pad(mask, ((0, ph), (0, pw)))


def crop_on(item: LabelledImage, size: int, py: int, px: int, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """A ``size`` x ``size`` crop placed at random so that pixel ``(py, px)`` lies in its
    central half (moved inside the image near its edges), and its mask crop."""
    img, mask = padded(item, size)
    h, w = img.shape
    y0 = int(np.clip(py - rng.integers(size // 4, 3 * size // 4 + 1), 0, h - size))
    x0 = int(np.clip(px - rng.integers(size // 4, 3 * size // 4 + 1), 0, w - size))
    return _crop_at(img, y0, x0, size), None if mask is None else _crop_at(mask, y0, x0, size)


def sample_crop(item: LabelledImage, size: int, positive: bool, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """One ``size`` x ``size`` crop (and its mask crop). Positive crops of a masked image are
    placed so that a random defect pixel lies in the crop's central half; negative crops of a
    masked defect image avoid the mask (up to 50 tries, else None is returned for the image)."""
    if positive and item.rows:
        k = int(rng.integers(len(item.rows)))
        return crop_on(item, size, int(item.rows[k]), int(item.cols[k]), rng)
    img, mask = padded(item, size)
    h, w = img.shape
    for _ in range(50):
        y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        mc = None if mask is None else _crop_at(mask, y0, x0, size)
        if positive or mc is None or not mc.any():
            return _crop_at(img, y0, x0, size), mc
    return np.empty(0, np.uint8), None


#: how :func:`augment` turns a crop, by name: (chance of a quarter turn, chance of a rotation,
#: its largest angle in degrees). "any": a crack in every direction, whichever way the
#: training images' cracks run (a quarter turn half the time, then up to 45 degrees either
#: way); "small": up to 10 degrees, so cracks keep the direction they have in the training
#: images (for a line whose parts always lie the same way)
ROTATIONS = {"any": (0.5, 0.75, 45.0), "small": (0.0, 0.5, 10.0)}


def check_rotate(rotate: str) -> str:
    """``rotate`` if it names a way of turning the crops (:data:`ROTATIONS`), else a clear
    error."""
    if rotate not in ROTATIONS:
        raise ManufacturingError(f"rotate={rotate!r}: give one of {', '.join(ROTATIONS)}")
    return rotate


def augment(x: np.ndarray, m: np.ndarray | None, rng: np.random.Generator,
            rotate: str = "small") -> tuple[np.ndarray, np.ndarray | None]:
    """Flips, turns (``rotate``, a name in :data:`ROTATIONS`), brightness/contrast, blur and
    sensor noise: what changes between photos of the same surface. The corners a rotation
    uncovers are filled with the crop mirrored, the mask's the same way (so a crack mirrored
    into a corner is marked there too)."""
    import cv2

    quarter, p_rot, degrees = ROTATIONS[check_rotate(rotate)]
    if rng.random() < 0.5:
        x, m = x[:, ::-1], None if m is None else m[:, ::-1]
    if rng.random() < 0.5:
        x, m = x[::-1], None if m is None else m[::-1]
    if quarter and x.shape[0] == x.shape[1] and rng.random() < quarter:
        x, m = x.T, None if m is None else m.T  # with the flips: every quarter turn
    x = np.ascontiguousarray(x)
    m = None if m is None else np.ascontiguousarray(m)
    if rng.random() < p_rot:
        s = x.shape[0]
        angle = float(rng.uniform(-degrees, degrees))
        rot = cv2.getRotationMatrix2D(((s - 1) / 2, (s - 1) / 2), angle, 1)
        x = cv2.warpAffine(x, rot, (s, s), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT_101)
        if m is not None:
            m = cv2.warpAffine(m, rot, (s, s), flags=cv2.INTER_NEAREST,
                               borderMode=cv2.BORDER_REFLECT_101)
    f = x.astype(np.float32)
    mean = float(f.mean())
    f = (f - mean) * rng.uniform(0.8, 1.25) + mean + rng.uniform(-20, 20)
    if rng.random() < 0.3:
        f = cv2.GaussianBlur(f, (0, 0), float(rng.uniform(0.3, 1.0)))
    if rng.random() < 0.3:
        f = f + rng.normal(0, rng.uniform(1, 4), f.shape).astype(np.float32)
    return np.clip(f, 0, 255).astype(np.uint8), m


def cell_map(mask: np.ndarray | None, size: int) -> np.ndarray:
    """Defect cells at the model's stride: 1 where any pixel of the 16x16 cell is defect."""
    c = size // STRIDE
    if mask is None:
        return np.zeros((c, c), np.float32)
    return mask.reshape(c, STRIDE, c, STRIDE).max(axis=(1, 3)).astype(np.float32)
