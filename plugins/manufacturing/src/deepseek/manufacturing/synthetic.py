"""Synthetic production line: a textured surface moving under a camera, with cracks.

The surface is rendered once as a long strip in *surface* pixels (``mm_per_px`` mm each) and
scrolls through the camera window by ``speed`` pixels per frame. Every frame then gets motion
blur along the motion, a light level that drifts, a fixed vignette, sensor dust that stays put
in the image, and sensor noise, before it is quantised to 8 bits. Distractors live on the
surface: scratches (straight, mostly brighter, some faintly darker), stains, surface dust and
casting pits. Cracks are dark, jagged polylines with branches, a controlled maximum width in
millimetres, tapered ends and anti-aliased edges (drawn at 4x and area-averaged).

Ground truth per frame (see :data:`TRUTH_COLUMNS`): a frame is a *defect* frame when at least
``min_visible_mm`` of crack length lies inside it; a frame that shows less than that of a crack
(one entering or leaving) is *partial* and is left out of both recall and false-detection rate,
as LUNA16 leaves out its excluded findings.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.manufacturing.errors import ManufacturingError, TruthFileError
from deepseek.manufacturing.images import require_cv2

SURFACES = ("brushed", "cast", "painted")
TRUTH_COLUMNS = ("frame", "time_s", "defect", "partial", "x0", "y0", "x1", "y1", "width_mm",
                 "visible_mm", "crack_ids")
SUPERSAMPLE = 4


@dataclass(frozen=True)
class LineConfig:
    """Everything that shapes a synthetic video; sizes in pixels unless named ``_mm``."""

    width: int = 640
    height: int = 480
    frames: int = 900
    fps: float = 300.0
    mm_per_px: float = 0.1
    surface: str = "mixed"            # brushed | cast | painted | mixed (one drawn per video)
    speed_px: tuple[int, int] = (3, 7)  # surface motion per frame, drawn per video
    exposure: float = 0.3             # fraction of the frame time the shutter is open
    crack_spacing_mm: float = 90.0    # mean gap between cracks along the line (inf: none)
    crack_width_mm: tuple[float, float] = (0.1, 0.6)
    crack_length_mm: tuple[float, float] = (2.0, 25.0)
    crack_depth: tuple[float, float] = (0.35, 0.7)  # fractional darkening at full coverage
    branch_prob: float = 0.5          # chance of each further branch (at most 3)
    crack_angle_deg: tuple[float, float] = (0.0, 180.0)  # orientation; 0 = across the motion
    scratches_per_m: float = 25.0     # distractors per metre of line
    stains_per_m: float = 12.0
    dust_per_cm2: float = 0.4
    sensor_dust: int = 4
    noise_sigma: tuple[float, float] = (1.5, 4.0)
    light_drift: float = 0.12         # relative amplitude of the light-level drift
    min_visible_mm: float = 2.0
    first_crack_mm: float | None = None  # position of the first crack along the line

    def __post_init__(self) -> None:
        if self.surface not in (*SURFACES, "mixed"):
            raise ManufacturingError(f"LineConfig.surface={self.surface!r}: use one of "
                                     f"{', '.join((*SURFACES, 'mixed'))}")
        if self.width < 16 or self.height < 16 or self.frames < 1:
            raise ManufacturingError(f"LineConfig: {self.width}x{self.height}, {self.frames} "
                                     "frames; need at least 16x16 pixels and one frame")
        if self.mm_per_px <= 0 or self.fps <= 0:
            raise ManufacturingError("LineConfig: mm_per_px and fps must be positive")
        if min(self.speed_px) < 0:
            raise ManufacturingError("LineConfig.speed_px must not be negative")
        if not 0 <= self.branch_prob < 1:
            raise ManufacturingError("LineConfig.branch_prob must be in [0, 1)")
        if min(self.crack_width_mm) <= 0 or min(self.crack_length_mm) <= 0:
            raise ManufacturingError("LineConfig: crack widths and lengths must be positive")
        check_crack_depth(self.crack_depth, "LineConfig.crack_depth")


def check_crack_depth(depth: Any, what: str = "crack_depth") -> tuple[float, float]:
    """``depth`` as a (LOW, HIGH) pair of floats, or a ManufacturingError naming ``what``
    unless 0 < LOW <= HIGH < 1 (the fraction by which a crack darkens the surface)."""
    try:
        lo, hi = (float(v) for v in depth)
    except (TypeError, ValueError):
        lo = hi = float("nan")
    if not 0 < lo <= hi < 1:
        shown = tuple(depth) if isinstance(depth, (list, tuple)) else depth
        raise ManufacturingError(f"{what}={shown!r}: give LOW HIGH with 0 < LOW <= HIGH < 1 "
                                 "(fractional darkening)")
    return lo, hi


@dataclass
class Crack:
    """One crack in surface pixels: a trunk and branches, each a polyline with widths."""

    id: int
    width_mm: float
    length_mm: float
    depth: float
    paths: list[np.ndarray] = field(default_factory=list)   # (n, 2) x, y surface px
    widths: list[np.ndarray] = field(default_factory=list)  # (n,) px, per point

    @property
    def y_range(self) -> tuple[float, float]:
        """Lowest and highest y the crack's paths reach (pixels)."""
        ys = np.concatenate([p[:, 1] for p in self.paths])
        return float(ys.min()), float(ys.max())


def _walk(rng: np.random.Generator, start: np.ndarray, theta0: float, length_px: float,
          step: float = 1.5, jag: float = 0.22) -> np.ndarray:
    n = max(2, int(length_px / step) + 1)
    pts = np.empty((n, 2))
    pts[0] = start
    theta = theta0
    for i in range(1, n):
        theta += rng.normal(0, jag) + 0.15 * (theta0 - theta)  # jagged, keeps its course
        pts[i] = pts[i - 1] + step * np.array([math.cos(theta), math.sin(theta)])
    return pts


def _taper(n: int, w: float, end: float = 0.5) -> np.ndarray:
    s = np.linspace(0, 1, n)
    return w * (end + (1 - end) * np.clip(np.minimum(s, 1 - s) / 0.15, 0, 1))


def crack_coverage(paths: list[np.ndarray], widths: list[np.ndarray], shape: tuple[int, int]
                   ) -> tuple[np.ndarray | None, tuple[int, int]]:
    """Anti-aliased coverage in [0, 1] of polylines ``paths`` (x, y pixels) with per-point
    ``widths`` (pixels), drawn at SUPERSAMPLE x and area-averaged, cut to an image of
    ``shape``; returned with its (x, y) offset there (None when nothing falls inside)."""
    cv2 = require_cv2("the synthetic line")
    allp = np.concatenate(paths)
    pad = float(max(w.max() for w in widths)) + 2
    x0 = max(0, int(math.floor(allp[:, 0].min() - pad)))
    y0 = max(0, int(math.floor(allp[:, 1].min() - pad)))
    x1 = min(shape[1], int(math.ceil(allp[:, 0].max() + pad)))
    y1 = min(shape[0], int(math.ceil(allp[:, 1].max() + pad)))
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None, (0, 0)
    s = SUPERSAMPLE
    canvas = np.zeros(((y1 - y0) * s, (x1 - x0) * s), np.uint8)
    for pts, ws in zip(paths, widths):
        q = np.round((pts - [x0, y0]) * s * 16).astype(np.int64)  # 4 fractional bits
        for i in range(len(q) - 1):
            t = max(1, int(round(0.5 * (ws[i] + ws[i + 1]) * s)))
            cv2.line(canvas, (int(q[i, 0]), int(q[i, 1])),
                     (int(q[i + 1, 0]), int(q[i + 1, 1])), 255, t, cv2.LINE_8, 4)
    cov = cv2.resize(canvas.astype(np.float32) / 255, (x1 - x0, y1 - y0),
                     interpolation=cv2.INTER_AREA)
    return cov, (x0, y0)


class SyntheticLine:
    """A reproducible synthetic video: ``frame(i)`` renders frame ``i``, ``truth(i)`` says
    what it shows. Iterating yields ``(frame, truth)`` pairs in order."""

    def __init__(self, config: LineConfig | None = None, seed: int = 0, **overrides: Any):
        cfg = config or LineConfig()
        if overrides:
            cfg = replace(cfg, **overrides)
        self.config = cfg
        self.seed = int(seed)
        rng = np.random.default_rng([self.seed, 1])
        self.surface = (cfg.surface if cfg.surface != "mixed"
                        else SURFACES[int(rng.integers(len(SURFACES)))])
        lo, hi = cfg.speed_px
        self.speed = int(rng.integers(lo, hi + 1))
        self.noise_sigma = float(rng.uniform(*cfg.noise_sigma))
        self.strip_height = cfg.height + self.speed * (cfg.frames - 1) + 1
        self.cracks: list[Crack] = []
        self._strip = self._render_surface(rng)
        self._gains = self._light(rng)
        self._vignette, self._ramp = self._illumination(rng)
        self._sensor = self._sensor_dust(rng)
        self._truth = [self._frame_truth(i) for i in range(cfg.frames)]

    # ---------------------------------------------------------------- surface
    def _noise(self, rng: np.random.Generator, sigma: tuple[float, float] | float,
               shape: tuple[int, int]) -> np.ndarray:
        cv2 = require_cv2("the synthetic line")
        n = rng.standard_normal(shape, dtype=np.float32)
        sx, sy = (sigma, sigma) if np.isscalar(sigma) else sigma  # type: ignore[misc]
        n = cv2.GaussianBlur(n, (0, 0), sigmaX=float(sx), sigmaY=float(sy))
        return n / max(float(n.std()), 1e-6)

    def _render_surface(self, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        shape = (self.strip_height, cfg.width)
        level = rng.uniform(105, 170)
        if self.surface == "brushed":
            along_x = rng.random() < 0.5
            s = (14.0, 0.6) if along_x else (0.6, 14.0)
            tex = rng.uniform(6, 12) * self._noise(rng, s, shape)
            tex += rng.uniform(2, 5) * self._noise(rng, 30.0, shape)
        elif self.surface == "cast":
            tex = (rng.uniform(3, 6) * self._noise(rng, 1.2, shape)
                   + rng.uniform(4, 8) * self._noise(rng, 5.0, shape)
                   + rng.uniform(4, 9) * self._noise(rng, 22.0, shape))
        else:  # painted: orange peel and slow shade changes
            tex = (rng.uniform(1.5, 3.5) * self._noise(rng, 3.0, shape)
                   + rng.uniform(3, 7) * self._noise(rng, 45.0, shape))
        strip = (level + tex).astype(np.float32)
        length_m = self.strip_height * cfg.mm_per_px / 1000
        self._stains(rng, strip, int(rng.poisson(cfg.stains_per_m * length_m)))
        self._scratches(rng, strip, int(rng.poisson(cfg.scratches_per_m * length_m)))
        area_cm2 = self.strip_height * cfg.width * (cfg.mm_per_px / 10) ** 2
        self._specks(rng, strip, int(rng.poisson(cfg.dust_per_cm2 * area_cm2)))
        if self.surface == "cast":  # casting pits: small dark round dents
            self._specks(rng, strip, int(rng.poisson(0.6 * area_cm2)), dark_only=True)
        self._place_cracks(rng, strip)
        return strip

    def _stains(self, rng: np.random.Generator, strip: np.ndarray, n: int) -> None:
        h, w = strip.shape
        for _ in range(n):
            sig = rng.uniform(15, 70)
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            r = int(3 * sig)
            y0, y1 = max(0, int(cy) - r), min(h, int(cy) + r)
            x0, x1 = max(0, int(cx) - r), min(w, int(cx) + r)
            if y1 <= y0 or x1 <= x0:
                continue
            yy, xx = np.mgrid[y0:y1, x0:x1]
            ecc = rng.uniform(0.4, 1.0)
            g = np.exp(-(((yy - cy) * ecc) ** 2 + (xx - cx) ** 2) / (2 * sig ** 2))
            strip[y0:y1, x0:x1] *= (1 + rng.choice([-1, 1]) * rng.uniform(0.06, 0.25)
                                    * g).astype(np.float32)

    def _scratches(self, rng: np.random.Generator, strip: np.ndarray, n: int) -> None:
        h, w = strip.shape
        for _ in range(n):
            length = rng.uniform(10, 60) / self.config.mm_per_px
            theta = rng.uniform(0, math.pi)
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            p0 = np.array([x, y])
            p1 = p0 + length * np.array([math.cos(theta), math.sin(theta)])
            width = rng.uniform(0.5, 2.0)
            cov, (ox, oy) = crack_coverage([np.stack([p0, p1])], [np.full(2, width)],
                                           strip.shape)
            if cov is None:
                continue
            if rng.random() < 0.7:
                amp = rng.uniform(0.08, 0.3)       # a bright, specular scratch
            else:
                amp = -rng.uniform(0.04, 0.12)     # a faint dark one
            sl = strip[oy:oy + cov.shape[0], ox:ox + cov.shape[1]]
            sl *= 1 + amp * cov

    def _specks(self, rng: np.random.Generator, strip: np.ndarray, n: int,
                dark_only: bool = False) -> None:
        h, w = strip.shape
        for _ in range(n):
            r = rng.uniform(0.5, 2.0)
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            amp = -rng.uniform(0.1, 0.4) if dark_only or rng.random() < 0.5 else \
                rng.uniform(0.1, 0.4)
            x0, y0 = max(0, int(cx - 3 * r)), max(0, int(cy - 3 * r))
            x1, y1 = min(w, int(cx + 3 * r) + 1), min(h, int(cy + 3 * r) + 1)
            yy, xx = np.mgrid[y0:y1, x0:x1]
            g = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r ** 2))
            strip[y0:y1, x0:x1] *= (1 + amp * g).astype(np.float32)

    def _place_cracks(self, rng: np.random.Generator, strip: np.ndarray) -> None:
        cfg = self.config
        h, w = strip.shape
        if not math.isfinite(cfg.crack_spacing_mm):
            return
        gap = cfg.crack_spacing_mm / cfg.mm_per_px
        y = (cfg.first_crack_mm / cfg.mm_per_px if cfg.first_crack_mm is not None
             else rng.exponential(gap) * 0.5)
        while y < h:
            length_mm = float(np.exp(rng.uniform(*np.log(cfg.crack_length_mm))))
            width_mm = float(rng.uniform(*cfg.crack_width_mm))
            crack = Crack(id=len(self.cracks), width_mm=width_mm, length_mm=length_mm,
                          depth=float(rng.uniform(*cfg.crack_depth)))
            length = length_mm / cfg.mm_per_px
            wpx = width_mm / cfg.mm_per_px
            theta = math.radians(rng.uniform(*cfg.crack_angle_deg))
            centre = np.array([rng.uniform(0.1 * w, 0.9 * w), y])
            start = centre - 0.5 * length * np.array([math.cos(theta), math.sin(theta)])
            trunk = _walk(rng, start, theta, length)
            crack.paths.append(trunk)
            crack.widths.append(_taper(len(trunk), wpx))
            while rng.random() < cfg.branch_prob and len(crack.paths) < 4:
                at = trunk[int(rng.integers(len(trunk) // 5, max(len(trunk) * 4 // 5, 2)))]
                bt = theta + rng.choice([-1, 1]) * rng.uniform(0.35, 0.9)
                br = _walk(rng, at, bt, length * rng.uniform(0.2, 0.5))
                crack.paths.append(br)
                crack.widths.append(_taper(len(br), 0.6 * wpx, end=0.3))
            cov, (ox, oy) = crack_coverage(crack.paths, crack.widths, strip.shape)
            if cov is not None:
                sl = strip[oy:oy + cov.shape[0], ox:ox + cov.shape[1]]
                sl *= 1 - crack.depth * cov
                self.cracks.append(crack)
            y += length * abs(math.sin(theta)) + rng.exponential(gap) + 1

    # ---------------------------------------------------------------- camera
    def _light(self, rng: np.random.Generator) -> np.ndarray:
        n = self.config.frames
        t = np.arange(n) / self.config.fps
        walk = np.cumsum(rng.normal(0, 1, n))
        walk = (walk - walk.mean()) / max(float(np.abs(walk - walk.mean()).max()), 1e-6)
        a = self.config.light_drift
        period = rng.uniform(1.5, 6.0)
        return (1 + 0.5 * a * np.sin(2 * np.pi * t / period + rng.uniform(0, 6.3))
                + 0.5 * a * walk).astype(np.float32)

    def _illumination(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.config.height, self.config.width
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        vign = 1 - rng.uniform(0.05, 0.2) * r2 / 2
        ang = rng.uniform(0, 2 * math.pi)
        ramp = (math.cos(ang) * (xx / w - 0.5) + math.sin(ang) * (yy / h - 0.5))
        return vign.astype(np.float32), (vign * ramp).astype(np.float32)

    def _sensor_dust(self, rng: np.random.Generator) -> np.ndarray:
        h, w = self.config.height, self.config.width
        m = np.ones((h, w), np.float32)
        yy, xx = np.mgrid[0:h, 0:w]
        for _ in range(self.config.sensor_dust):
            s = rng.uniform(3, 9)
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            m *= 1 - rng.uniform(0.04, 0.15) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2)
                                                      / (2 * s * s))
        return m

    # ---------------------------------------------------------------- frames
    def __len__(self) -> int:
        return self.config.frames

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as a ``(height, width)`` uint8 image."""
        cv2 = require_cv2("the synthetic line")
        cfg = self.config
        if not 0 <= i < cfg.frames:
            raise IndexError(f"frame {i} out of range 0..{cfg.frames - 1}")
        off = i * self.speed
        crop = self._strip[off:off + cfg.height]
        blur = int(round(self.speed * cfg.exposure))
        if blur > 1:
            crop = cv2.blur(crop, (1, blur))
        ramp_amp = 0.08 * math.sin(2 * math.pi * i / max(cfg.frames, 1))
        img = crop * (self._gains[i] * (self._vignette + ramp_amp * self._ramp)) * self._sensor
        rng = np.random.default_rng([self.seed, 2, i])
        img += rng.standard_normal(img.shape, dtype=np.float32) * self.noise_sigma
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)

    def _frame_truth(self, i: int) -> dict[str, Any]:
        cfg = self.config
        off = i * self.speed
        h, w = cfg.height, cfg.width
        best_vis, width, ids = 0.0, 0.0, []
        box = [math.inf, math.inf, -math.inf, -math.inf]
        for c in self.cracks:
            lo, hi = c.y_range
            if hi < off - 2 or lo > off + h + 2:
                continue
            vis, near = 0.0, False
            for pts, ws in zip(c.paths, c.widths):
                p = pts - [0, off]
                r = float(ws.max()) / 2 + 1  # a stroke this close to the border shows
                near |= bool(((p[:, 0] > -r) & (p[:, 0] < w + r) & (p[:, 1] > -r)
                              & (p[:, 1] < h + r)).any())
                inside = (p[:, 0] >= 0) & (p[:, 0] < w) & (p[:, 1] >= 0) & (p[:, 1] < h)
                if not inside.any():
                    continue
                seg = inside[1:] & inside[:-1]
                vis += float(np.linalg.norm(np.diff(p, axis=0), axis=1)[seg].sum())
                q = p[inside]
                m = float(ws.max()) / 2 + 1
                box = [min(box[0], q[:, 0].min() - m), min(box[1], q[:, 1].min() - m),
                       max(box[2], q[:, 0].max() + m), max(box[3], q[:, 1].max() + m)]
            if near:
                ids.append(c.id)
                best_vis = max(best_vis, vis * cfg.mm_per_px)
                width = max(width, c.width_mm)
        defect = best_vis >= cfg.min_visible_mm
        row: dict[str, Any] = {
            "frame": i, "time_s": round(i / cfg.fps, 6), "defect": int(defect),
            "partial": int(bool(ids) and not defect), "width_mm": round(width, 4),
            "visible_mm": round(best_vis, 3), "crack_ids": ";".join(map(str, ids)),
        }
        if math.isfinite(box[0]):
            row.update(x0=int(max(0, box[0])), y0=int(max(0, box[1])),
                       x1=int(min(w - 1, box[2])), y1=int(min(h - 1, box[3])))
        else:
            row.update(x0=-1, y0=-1, x1=-1, y1=-1)
        return row

    def truth(self, i: int) -> dict[str, Any]:
        """Ground truth of frame ``i`` (keys: :data:`TRUTH_COLUMNS`)."""
        return dict(self._truth[i])

    def crack_mask(self, i: int, cell: int = 1) -> np.ndarray:
        """Where cracks are in frame ``i``: a boolean map, one value per ``cell`` x ``cell``
        block of pixels (any crack pixel in the block). Used as the localisation target."""
        cv2 = require_cv2("the synthetic line")
        cfg = self.config
        off = i * self.speed
        m = np.zeros((cfg.height, cfg.width), np.uint8)
        for c in self.cracks:
            lo, hi = c.y_range
            if hi < off - 2 or lo > off + cfg.height + 2:
                continue
            for pts, ws in zip(c.paths, c.widths):
                p = np.round((pts - [0, off]) * 16).astype(np.int64)
                for k in range(len(p) - 1):
                    t = max(1, int(round(0.5 * (ws[k] + ws[k + 1]))))
                    cv2.line(m, (int(p[k, 0]), int(p[k, 1])), (int(p[k + 1, 0]),
                             int(p[k + 1, 1])), 1, t, cv2.LINE_8, 4)
        if cell > 1:
            hh, ww = cfg.height // cell, cfg.width // cell
            m = m[:hh * cell, :ww * cell].reshape(hh, cell, ww, cell).max(axis=(1, 3))
        return m.astype(bool)

    def __iter__(self) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
        for i in range(len(self)):
            yield self.frame(i), self.truth(i)

    def describe(self) -> dict[str, Any]:
        """The line's seed, surface, speed, noise, cracks and configuration."""
        return {"seed": self.seed, "surface": self.surface, "speed_px": self.speed,
                "noise_sigma": round(self.noise_sigma, 3), "cracks": len(self.cracks),
                "config": asdict(self.config)}


def line_config_fields() -> list[str]:
    """Names of the :class:`LineConfig` fields (the options of ``synthetic:`` URIs)."""
    return [f.name for f in fields(LineConfig)]


def write_truth(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Write the ground-truth CSV of a synthetic line; returns the path."""
    path = Path(path)
    with path.open("w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=TRUTH_COLUMNS)
        wr.writeheader()
        for r in rows:
            wr.writerow({k: r[k] for k in TRUTH_COLUMNS})
    return path


def spreadsheet_csv(fh: Any) -> tuple[csv.DictReader, Callable[[str], float]]:
    """A dict reader over the CSV open in ``fh`` as a spreadsheet saves it, and the float
    parser its numbers need: comma-separated; or, where the header holds no comma,
    semicolon-separated with decimal commas (a spreadsheet's CSV in a locale that writes
    0,5) or tab-separated."""
    head = fh.readline()
    fh.seek(0)
    if "," in head or not (";" in head or "\t" in head):
        return csv.DictReader(fh), float
    if ";" in head:
        return csv.DictReader(fh, delimiter=";"), lambda v: float(v.replace(",", "."))
    return csv.DictReader(fh, delimiter="\t"), float


def read_truth(path: str | Path) -> list[dict[str, Any]]:
    """Read a ground-truth CSV written by :func:`write_video`, or any with the columns
    ``frame`` and ``defect`` (one row per frame, by its number: from 0 or 1, gaps and any
    order allowed; a frame twice is refused), comma-, semicolon- or tab-separated
    (:func:`spreadsheet_csv`)."""
    path = Path(path)
    if not path.is_file():
        raise TruthFileError(f"{path}: no such ground-truth file")
    # utf-8-sig: a CSV saved by a spreadsheet on Windows starts with a byte-order mark
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rd, number = spreadsheet_csv(fh)
        missing = [c for c in ("frame", "defect") if c not in (rd.fieldnames or [])]
        if missing:
            more = ", ".join(c for c in TRUTH_COLUMNS if c not in ("frame", "defect"))
            raise TruthFileError(f"{path}: missing column(s) {', '.join(missing)} (its header: "
                                 f"{','.join(rd.fieldnames or [])}); a ground truth needs "
                                 f"frame and defect, and may add {more}")
        rows = []
        line_of: dict[int, int] = {}
        for n, r in enumerate(rd, start=2):
            try:
                rows.append({
                    "frame": int(r["frame"]), "defect": int(r["defect"]),
                    "partial": int(r.get("partial") or 0),
                    "width_mm": number(r.get("width_mm") or "0"),
                    "box": tuple(int(r[k]) for k in ("x0", "y0", "x1", "y1"))
                    if r.get("x0") not in (None, "", "-1") else None,
                    "crack_ids": [int(v) for v in (r.get("crack_ids") or "").split(";") if v],
                })
            except (TypeError, ValueError) as exc:
                raise TruthFileError(f"{path}, line {n}: unreadable value ({exc})") from exc
            if (before := line_of.setdefault(rows[-1]["frame"], n)) != n:
                raise TruthFileError(f"{path}, line {n}: frame {rows[-1]['frame']} again (first "
                                     f"on line {before}); one row per frame")
    return rows


def write_video(path: str | Path, line: SyntheticLine, *, truth: str | Path | None = None,
                fourcc: str | None = None, quality: int = 95,
                progress: bool | None = None) -> tuple[Path, Path]:
    """Write ``line`` as a grayscale video (``.avi``: MJPG, ``.mp4``: mp4v by default) and its
    ground truth as CSV (default: ``<video>.truth.csv``). Returns both paths."""
    cv2 = require_cv2("the synthetic line")
    from tqdm.auto import tqdm

    path = Path(path)
    ext = path.suffix.lower()
    codec = fourcc or {".avi": "MJPG", ".mp4": "mp4v", ".mkv": "MJPG"}.get(ext)
    if codec is None:
        raise ManufacturingError(f"{path}: unknown video extension {ext!r}; use .avi (MJPG), "
                                 ".mp4 (mp4v) or .mkv, or pass fourcc=")
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = line.config
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), cfg.fps,
                         (cfg.width, cfg.height), isColor=False)
    if not wr.isOpened():
        raise ManufacturingError(f"{path}: OpenCV cannot write fourcc {codec!r} here; try "
                                 ".avi (MJPG)")
    if codec == "MJPG":
        wr.set(cv2.VIDEOWRITER_PROP_QUALITY, quality)
    rows = []
    try:
        for i in tqdm(range(len(line)), desc=f"writing {path.name}", unit="frame",
                      disable=progress is False, leave=False):
            wr.write(line.frame(i))
            rows.append(line.truth(i))
    finally:
        wr.release()
    tpath = Path(truth) if truth is not None else path.with_suffix(path.suffix + ".truth.csv")
    write_truth(tpath, rows)
    return path, tpath
