"""Synthetic defects pasted on photos of good parts: what ``train --good-only DIR --method
pasted`` learns from when a line has no defect examples (the discriminative half of DRAEM;
no reconstructive network, and the packaged weights, trained on the synthetic line only,
as the start).

:func:`paste_defect` changes one region of a good image and returns the changed image with
the mask of what it changed. Three kinds, drawn at random from those asked for (training
asks for cracks only, :data:`PASTED_KINDS`):

* ``crack``: a jagged, tapered, sometimes branching dark line drawn like the synthetic
  line's cracks (:func:`deepseek.manufacturing.synthetic.crack_coverage`), 1-6 px wide and
  20-160 px long, centred in the middle 70 % of the image, darkening the surface by a
  fraction drawn from ``depth``;
* ``texture``: a blob (smooth value noise thresholded inside a random ellipse 12-64 px
  across, centred in the middle 80 % of the image: the shape of DRAEM's Perlin masks)
  filled with foreign texture: the same photo flipped and shifted, its contrast scaled by
  1.4-2.5 (up or down) and its brightness by 15-40 % (up or down), blended in at 50-100 %;
* ``stain``: a soft-edged blob of the same kind, darker or brighter by 15-50 %.

A draw whose change is too faint to see (mean change inside the mask under
:data:`MIN_CHANGE` grey levels) is drawn again, so a positive label always marks a visible
change. :class:`PastedImage` is a good image with a pasted defect drawn again from its seed
whenever it is read (the held-out copies cross-fitting scores).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from deepseek.manufacturing.errors import ManufacturingError
from deepseek.manufacturing.labelled import LabelledImage
from deepseek.manufacturing.synthetic import _taper, _walk, check_crack_depth, crack_coverage

KINDS = ("crack", "texture", "stain")
KIND_P = (0.5, 0.25, 0.25)
MIN_CHANGE = 10.0  # grey levels, mean over the mask
CRACK_WIDTH_PX = (1.0, 6.0)
CRACK_LENGTH_PX = (20.0, 160.0)
BLOB_PX = (12, 64)
#: what ``train --good-only --method pasted`` pastes: cracks only, 35-70 % darker (the
#: synthetic line's generator range). Development runs on KolektorSDD's val split (one
#: seed, one model, 4 epochs): cracks alone gave val AUROC 0.91 at a learning rate of 3e-4;
#: texture blobs and stains as well, 0.71 at the same rate; cracks from 10 % darker, 0.77
#: and 0.78 (at 1e-3 and 1e-4). On a textured surface faint or blob-shaped positives look
#: like the surface itself, and the model learns to flag the surface.
PASTED_KINDS = ("crack",)
PASTED_CRACK_DEPTH = (0.35, 0.70)


@dataclass
class PastedImage(LabelledImage):
    """A good image with a synthetic defect pasted in (:func:`paste_defect`), drawn again from
    ``seed`` on every use, so nothing is kept in memory; labelled a defect, located by its
    mask."""

    seed: tuple[int, ...] = ()
    depth: tuple[float, float] = PASTED_CRACK_DEPTH
    kinds: tuple[str, ...] = PASTED_KINDS
    base: LabelledImage | None = None  # the good image it copies (its pixels, if kept)

    def _draw(self) -> tuple[np.ndarray, np.ndarray]:
        if self.base is not None:
            image = self.base.image
        else:
            from deepseek.manufacturing.images import read_gray

            image = read_gray(self.path)
        return paste_defect(image, np.random.default_rng(list(self.seed)), self.depth,
                            self.kinds)

    @property
    def image(self) -> np.ndarray:
        """The good image with its defect pasted in."""
        return self._draw()[0]

    @property
    def mask(self) -> np.ndarray:
        """The pasted defect's mask (uint8 0/1)."""
        return self._draw()[1]


def smooth_noise(shape: tuple[int, int], rng: np.random.Generator, cell: int) -> np.ndarray:
    """Value noise in [0, 1]: a random grid every ``cell`` pixels, cubic-interpolated, plus a
    finer octave at half the amplitude (the role Perlin noise plays in DRAEM)."""
    import cv2

    h, w = shape
    out = np.zeros(shape, np.float32)
    amp, total = 1.0, 0.0
    for c in (cell, max(2, cell // 2)):
        gh, gw = h // c + 2, w // c + 2
        grid = rng.random((gh, gw), dtype=np.float32)
        big = cv2.resize(grid, (gw * c, gh * c), interpolation=cv2.INTER_CUBIC)
        out += amp * big[:h, :w]
        total += amp
        amp *= 0.5
    return out / total


def blob_mask(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random blob (bool, ``shape``): smooth noise above a random level inside a random
    ellipse 12-64 px across; never empty."""
    h, w = shape
    a = rng.uniform(*BLOB_PX) / 2
    b = a * rng.uniform(0.4, 1.0)
    cy, cx = rng.uniform(0.1 * h, 0.9 * h), rng.uniform(0.1 * w, 0.9 * w)
    theta = rng.uniform(0, math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    u = dx * math.cos(theta) + dy * math.sin(theta)
    v = -dx * math.sin(theta) + dy * math.cos(theta)
    ellipse = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    noise = smooth_noise(shape, rng, int(rng.choice([4, 8, 16])))
    mask = ellipse & (noise > rng.uniform(0.35, 0.55))
    if mask.sum() < 16:
        mask = ellipse
    if not mask.any():  # an ellipse centred off a tiny image
        mask[int(min(cy, h - 1)), int(min(cx, w - 1))] = True
    return mask


def _crack(img: np.ndarray, rng: np.random.Generator, depth: tuple[float, float]
           ) -> tuple[np.ndarray, np.ndarray]:

    h, w = img.shape
    length = float(np.exp(rng.uniform(*np.log(CRACK_LENGTH_PX))))
    width = float(rng.uniform(*CRACK_WIDTH_PX))
    theta = rng.uniform(0, 2 * math.pi)
    centre = np.array([rng.uniform(0.15 * w, 0.85 * w), rng.uniform(0.15 * h, 0.85 * h)])
    start = centre - 0.5 * length * np.array([math.cos(theta), math.sin(theta)])
    trunk = _walk(rng, start, theta, length)
    paths, widths = [trunk], [_taper(len(trunk), width)]
    if rng.random() < 0.3:
        at = trunk[int(rng.integers(len(trunk) // 5, max(len(trunk) * 4 // 5, 2)))]
        br = _walk(rng, at, theta + rng.choice([-1, 1]) * rng.uniform(0.35, 0.9),
                   length * rng.uniform(0.2, 0.5))
        paths.append(br)
        widths.append(_taper(len(br), 0.6 * width, end=0.3))
    cov, (ox, oy) = crack_coverage(paths, widths, img.shape)
    full = np.zeros(img.shape, np.float32)
    if cov is not None:
        full[oy:oy + cov.shape[0], ox:ox + cov.shape[1]] = cov
    out = img.astype(np.float32) * (1.0 - rng.uniform(*depth) * full)
    return out, full >= 0.25


def _texture(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    f = img.astype(np.float32)
    mask = blob_mask(img.shape, rng)
    foreign = f[::-1] if rng.random() < 0.5 else f[:, ::-1]
    foreign = np.roll(foreign, (int(rng.integers(img.shape[0])), int(rng.integers(img.shape[1]))),
                      axis=(0, 1))
    mean = float(foreign.mean())
    gain = math.exp(rng.choice([-1, 1]) * rng.uniform(math.log(1.4), math.log(2.5)))
    shift = 1 + rng.choice([-1, 1]) * rng.uniform(0.15, 0.4)
    foreign = (foreign - mean) * gain + mean * shift  # another contrast and brightness
    beta = rng.uniform(0.5, 1.0)
    out = np.where(mask, (1 - beta) * f + beta * foreign, f)
    return out, mask


def _stain(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    mask = blob_mask(img.shape, rng)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), float(rng.uniform(1.0, 3.0)))
    gain = rng.uniform(0.15, 0.5) * (1 if rng.random() < 0.7 else -1)  # mostly darker
    out = img.astype(np.float32) * (1.0 - gain * soft)
    return out, soft >= 0.5


def paste_defect(image: np.ndarray, rng: np.random.Generator,
                 depth: tuple[float, float] = PASTED_CRACK_DEPTH,
                 kinds: tuple[str, ...] = KINDS, tries: int = 20
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (uint8, 2-D) with one synthetic defect of one of ``kinds`` pasted in (their
    :data:`KIND_P` shares, renormalised), and the mask (uint8 0/1) of the pixels it visibly
    changed. ``depth``: the cracks' darkening range."""
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ManufacturingError(f"paste_defect needs a 2-D uint8 image, got {image.dtype} "
                                 f"{image.shape}")
    depth = check_crack_depth(depth, "depth")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ManufacturingError(f"kinds {tuple(kinds)}: choose from {', '.join(KINDS)}")
    share = np.array([KIND_P[KINDS.index(k)] for k in kinds])
    out = mask = None
    for _ in range(tries):
        kind = kinds[int(rng.choice(len(kinds), p=share / share.sum()))]
        if kind == "crack":
            out, mask = _crack(image, rng, depth)
        elif kind == "texture":
            out, mask = _texture(image, rng)
        else:
            out, mask = _stain(image, rng)
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        mask &= out != image  # only pixels that changed
        if mask.any() and float(np.abs(out[mask].astype(np.float32)
                                       - image[mask]).mean()) >= MIN_CHANGE:
            return out, mask.astype(np.uint8)
    raise ManufacturingError("no visible synthetic defect in 20 draws: the image is too dark "
                             "or too flat to paste a defect on")
