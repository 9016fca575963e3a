"""Whole-scan nodule detection with ``lung-nodule-attention``.

    from deepseek.medical import NoduleDetector, read_volume
    detector = NoduleDetector()                      # packaged weights
    candidates = detector.detect(read_volume("/data/scan"))

Steps: resample the volume to the 1 mm working grid (any spacing, tilted or not: the grid is
straight and the world coordinates exact) -> body and lung mask
(:mod:`deepseek.medical.morphology`) so that windows in outside air are skipped ->
sliding-window inference with overlapping windows blended by a
Gaussian importance map, several windows per batch -> peaks of the heatmap (3x3x3 local
maxima) -> world coordinates, diameter and probability -> non-maximum suppression in world
space -> at most ``max_candidates`` (100, as LUNA16 allows) candidates, most probable first ->
flip test-time augmentation re-scores the most probable ones -> with ``fpr=``, the second
stage (``nodule-fpr-3dcnn``, false-positive reduction) re-scores every candidate from a 32 mm
cube around it.

The network runs on PyTorch, or without it on onnxruntime: the packaged weights ship with
their ONNX export (``lung-nodule-attention.onnx``), which an install without PyTorch (the
edge form, ``pip install "deepseek-medical[edge]"``) runs; everything around the network is
numpy either way (no image library: resampling and the masks are written on numpy, equal to
SimpleITK's). On a CPU with bf16 matrix units (Intel AMX) the packaged weights run on PyTorch
at bf16 by default, faster there than fp32 on onnxruntime (``amp``).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.medical.nodule_grid import (
    DETECT_WINDOW,
    FPR_CROP,
    MAX_CANDIDATES,
    SIZES,
    STRIDE,
    THRESHOLD,
    TTA_FLIPS,
    TTA_TOP,
    WINDOW,
    WORKING_SPACING,
)
from deepseek.medical.volume import Volume

log = logging.getLogger(__name__)


MIN_LUNG_FRACTION = 0.02  # of the inside of the body: a chest slab's lungs are 4-40 %
MIN_LUNG_ML = 2.0


def find_lungs(vol: Volume, dilate_mm: float = 10.0, use: str = "lungs"
               ) -> tuple[np.ndarray, dict[str, Any]]:
    """The boolean (z, y, x) search mask and what was found.

    The body is the largest connected component above -500 HU, its holes filled slice by
    slice (the lungs touch the top and bottom of the volume, so they are no hole in 3-D; and
    every 3-D hole is a hole in each of its slices, so a 3-D fill would add nothing); the
    lungs are the air
    (< -400 HU) inside it. They are plausible when they hold at least 2 mL and 2 % of the
    inside of the body (a chest slab: 4-40 %; a head: under 1 %). ``use="lungs"`` returns
    the lungs (or, when none is plausible, the inside of the body, with ``found`` False);
    ``use="body"`` the inside of the body. Either is dilated by ``dilate_mm``. The dict holds
    ``found``, ``lung_ml``, ``inside_ml``, ``lung_fraction``, ``searched`` and ``reason``.
    """
    from deepseek.medical import morphology

    voxel_ml = float(np.prod(vol.spacing)) / 1000.0
    body = morphology.largest_component(vol.array >= -500.0)
    if not body.any():
        return np.ones(vol.shape, bool), {
            "found": False, "lung_ml": 0.0, "inside_ml": 0.0, "lung_fraction": 0.0,
            "searched": "the whole volume", "reason": "no body (nothing above -500 HU)"}
    inside = morphology.fill_holes(body, per_slice=True)
    lungs = inside & (vol.array < -400)
    n_in, n_lung = int(inside.sum()), int(lungs.sum())
    frac = n_lung / max(n_in, 1)
    found = n_lung * voxel_ml >= MIN_LUNG_ML and frac >= MIN_LUNG_FRACTION
    info: dict[str, Any] = {"found": bool(found), "lung_ml": round(n_lung * voxel_ml, 1),
                            "inside_ml": round(n_in * voxel_ml, 1),
                            "lung_fraction": round(frac, 4), "reason": None}
    if not found:
        info["reason"] = (f"no lung of plausible size: air inside the body is "
                          f"{n_lung * voxel_ml:.1f} mL, {100 * frac:.2f} % of it (a chest CT's "
                          f"lungs are at least {MIN_LUNG_ML:g} mL and "
                          f"{100 * MIN_LUNG_FRACTION:g} %)")
    chosen = lungs if (found and use == "lungs") else inside
    info["searched"] = "the lungs" if chosen is lungs else "the inside of the body"
    r = max(1, int(round(dilate_mm / WORKING_SPACING)))
    return morphology.dilate_ball(chosen, r), info


def lung_mask(vol: Volume, dilate_mm: float = 10.0) -> np.ndarray:
    """Boolean (z, y, x) mask of the lungs (air inside the body), dilated by ``dilate_mm``
    (:func:`find_lungs`; the inside of the body when no lung is plausible)."""
    return find_lungs(vol, dilate_mm)[0]


def _gaussian_weight(n: int) -> np.ndarray:
    c = (n - 1) / 2
    g = np.exp(-((np.arange(n, dtype=np.float32) - c) ** 2) / (2 * (n / 8) ** 2))
    w = g[:, None, None] * g[None, :, None] * g[None, None, :]
    return np.maximum(w / w.max(), 1e-3).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def second_stage_probability(p: Any, q: Any) -> Any:
    """A candidate's probability after the second stage: the geometric mean of the
    detector's ``p`` and the classifier's ``q`` where that is lower than ``p``, else ``p``
    (``min(p, sqrt(p q))``). The classifier can only lower a candidate: a geometric mean
    alone lifted candidates the detector scored low but the classifier liked, which added
    false positives at fixed thresholds (30 Nov 2026, benchmarks/nodule_real.py)."""
    p = np.asarray(p, np.float64)
    return np.minimum(p, np.sqrt(p * np.asarray(q, np.float64)))


def local_maxima(a: np.ndarray) -> np.ndarray:
    """Where ``a`` equals the maximum of its 3x3x3 neighbourhood (outside counts as -inf)."""
    p = np.pad(a, 1, constant_values=-np.inf)
    m = a.copy()
    n0, n1, n2 = a.shape
    for dz in range(3):
        for dy in range(3):
            for dx in range(3):
                np.maximum(m, p[dz:dz + n0, dy:dy + n1, dx:dx + n2], out=m)
    return a == m


DETECTOR_MODEL, DETECTOR_OUTPUTS = "lung-nodule-attention", ("heatmap", "size", "offset")
FPR_MODEL, FPR_OUTPUTS = "nodule-fpr-3dcnn", ("nodule",)


def crop_cubes(x: np.ndarray, centres: np.ndarray, n: int) -> np.ndarray:
    """``(N, n, n, n)`` cubes of ``x`` centred on the voxel positions ``centres`` (N x 3,
    z/y/x, rounded); what lies outside ``x`` is 0 (air, once windowed)."""
    half = n // 2
    out = np.zeros((len(centres), n, n, n), np.float32)
    for i, v in enumerate(np.round(np.asarray(centres, float)).astype(int)):
        src, dst = [], []
        for a in range(3):
            lo = int(v[a]) - half
            s0, s1 = min(max(lo, 0), x.shape[a]), max(min(lo + n, x.shape[a]), 0)
            k = max(0, s1 - s0)
            src.append(slice(s0, s0 + k))
            dst.append(slice(s0 - lo, s0 - lo + k))
        out[(i, *dst)] = x[tuple(src)]
    return out


class _TorchNet:
    """A network on PyTorch: (B, 1, D, H, W) float32 numpy -> its named outputs."""

    name = "torch"

    def __init__(self, module: Any, device: Any, amp: bool,
                 outputs: tuple[str, ...] = DETECTOR_OUTPUTS) -> None:
        from deepseek.amp import AutoMixedPrecision

        self.net, self.device, self.outputs = module.eval(), device, outputs
        self.net.to(device)
        shapes = {p.dim() for p in module.parameters()}
        if device.type == "cpu" and 5 in shapes and 4 not in shapes:
            # oneDNN's 3-D convolutions run about twice as fast on channels-last weights on
            # the CPU (fp32 and bf16 alike); the results differ by float rounding only
            import torch

            self.net.to(memory_format=torch.channels_last_3d)
        self.amp = AutoMixedPrecision(device, enabled=amp)
        short = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
        dtype = self.amp.dtype if self.amp.enabled else next(module.parameters()).dtype
        self.precision = short.get(str(dtype).replace("torch.", ""), str(dtype))

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        import torch

        with torch.inference_mode(), self.amp:
            out = self.net(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
        return [out[k].float().cpu().numpy() for k in self.outputs]


class _OnnxNet:
    """A network's ONNX export on onnxruntime (no PyTorch)."""

    name = "onnxruntime"

    def __init__(self, loaded: Any, outputs: tuple[str, ...] = DETECTOR_OUTPUTS,
                 what: str = "lung-nodule-attention") -> None:
        from deepseek.medical.errors import MedicalError

        self.session, self.source = loaded.session, loaded.source
        names = [o.name for o in self.session.get_outputs()]
        if tuple(names) != outputs:
            raise MedicalError(f"{loaded.source}: outputs {names} are not those of "
                               f"{what} ({', '.join(outputs)})")
        self.input = self.session.get_inputs()[0].name
        self.device = loaded.device
        self.precision = getattr(loaded, "precision", None) or "fp32"

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input: np.ascontiguousarray(batch, np.float32)})


def _bf16_pays(device: str) -> bool:
    """Whether ``amp=None`` turns bf16 on: PyTorch installed, the device the CPU, and the CPU
    with bf16 matrix units."""
    from deepseek.extras import missing
    from deepseek.loader import resolve_device

    if missing("torch") or resolve_device(device).type != "cpu":
        return False
    from deepseek.amp import cpu_has_bf16_units

    return cpu_has_bf16_units()


def flip_views(spec: str) -> list[tuple[int, ...]]:
    """The flipped views of ``tta_flips`` (``"z,y,x"``, ``"zyx"``, ``"zy,x"``...) as tuples
    of array axes (z 0, y 1, x 2)."""
    from deepseek.medical.errors import MedicalError

    views = [v.strip().lower() for v in str(spec).split(",")]
    out = []
    for v in views:
        if not v or set(v) - set("zyx") or len(set(v)) != len(v):
            raise MedicalError(f"tta_flips={spec!r}: give comma-separated views, each naming "
                               "the axes it flips once (z, y, x), e.g. 'z,y,x' or 'zyx'")
        out.append(tuple(sorted("zyx".index(a) for a in v)))
    if len(set(out)) != len(out):
        raise MedicalError(f"tta_flips={spec!r}: a view is named twice")
    return out


class NoduleDetector:
    """Detects nodules in any :class:`Volume`; see the module docstring.

    Args:
        model: a ``LoadedModel``, an ``nn.Module`` or ``None`` (the registered
            ``lung-nodule-attention`` with its packaged weights).
        threshold: lowest probability reported.
        max_candidates: most candidates reported per scan.
        window: sliding-window edge in voxels (1 mm), a multiple of 4 (default 128: on
            realistic phantom scans the same CPM as 96, with fewer voxels computed twice:
            17 % less network time over ten development scans, about the same on others;
            64 suits thin slabs).
        overlap: overlap between neighbouring windows in voxels (default: a quarter of the
            window, at most 24).
        batch_size: windows per forward pass.
        amp: mixed precision on PyTorch (bf16 autocast on the CPU, fp16 on CUDA).
            ``None`` (the default) decides: on for the packaged detector (``model`` ``None``
            or its name, ``backend="auto"``) on a CPU with bf16 matrix units
            (:func:`deepseek.amp.cpu_has_bf16_units`, Intel AMX), where it runs the network
            1.7x as fast as fp32 onnxruntime for the same CPM within 0.005 (see the medical
            README); off everywhere else (the edge install, other CPUs, CUDA, other weights).
            ``True`` / ``False`` choose; :attr:`precision` says what ran.
        backend: for a model given by name or path (or ``None``): ``"auto"`` runs the
            packaged ONNX export on onnxruntime on the CPU (the same candidates; at fp32
            about as fast as PyTorch with channels-last weights: 2.55 s against 2.36 s a
            batch of two 128^3 windows on an AMX Xeon, and it needs no PyTorch) and PyTorch
            otherwise (CUDA, ``amp``, other weights);
            ``"onnxruntime"`` or ``"torch"`` choose.
        tta_top: the most probable candidates re-scored with flip test-time augmentation
            (0: none; default 24, which covers the operating points up to 8 false positives
            per scan): a ``tta_crop``-voxel cube around each is run once per view of
            ``tta_flips``, and the candidate's probability becomes the mean of its
            window-blended value and the flipped views' values.
        tta_flips: the flipped views, comma-separated, each naming the axes it flips
            (``"zyx"``, the default: one view flipped along all three axes, 2-4 s on 2 CPU
            cores for a 512x512x300 scan; ``"z,y,x"``: three views, each flipped along one
            axis, three times that, the same CPM on realistic phantom scans).
        fpr: the second stage, false-positive reduction: ``None`` (off, the default: on
            the phantom benchmark it raises the CPM a little and cuts the false positives at
            p >= 0.3 by three quarters, but loses a nodule or two at fixed thresholds; see
            the medical README), ``"auto"`` (the packaged ``nodule-fpr-3dcnn`` when the
            detector is the packaged ``lung-nodule-attention``, given by name or as ``None``,
            whose candidates it was trained on; off for other detector weights), or a
            registry name, weights, an ``.onnx`` file, a ``LoadedModel`` or an
            ``nn.Module``. Every candidate's 32 mm cube is classified; its ``probability``
            becomes the geometric mean of the detector's (``probability_detector``) and the
            classifier's (``probability_fpr``), both kept, where that is lower than the
            detector's (:func:`second_stage_probability`: the stage can only lower a
            candidate).
            Runs on the same ``backend`` rules as the detector.
        lungs: search the lungs (:func:`find_lungs`); a volume without a lung of plausible
            size raises :class:`NoLungError` (a head CT is not searched for nodules).
            ``False``: search the whole inside of the body. What was found is in
            :attr:`lung_info` after :meth:`detect`.
        sizes: measure this many of the most probable candidates on a segmentation
            (:func:`deepseek.medical.nodule_size.measure_candidate`, 5-60 ms each):
            ``diameter_mm`` becomes the long axis a radiologist measures (the network's
            estimate stays in ``detector_diameter_mm``), with ``volume_ml``,
            ``volume_equivalent_mm`` and the world-space ``extent_mm``; ``size_source`` says
            which one ``diameter_mm`` is (``"detector"`` with ``size_note`` when the
            segmentation leaked or found nothing, or the candidate was not measured).
            ``0``: the network's estimate only.
    """

    def __init__(self, model: Any = None, *, threshold: float = THRESHOLD,
                 max_candidates: int = MAX_CANDIDATES, window: int = DETECT_WINDOW,
                 overlap: int | None = None, batch_size: int = 2, device: str = "auto",
                 amp: bool | None = None, progress: bool | None = None, tta_top: int = TTA_TOP,
                 tta_crop: int = 64, tta_flips: str = TTA_FLIPS, backend: str = "auto",
                 fpr: Any = None, lungs: bool = True, sizes: int = SIZES) -> None:
        from deepseek.loader import resolve_device
        from deepseek.medical.errors import MedicalError

        if overlap is None:
            overlap = min(24, window // 4)
        if window % 4 or window < 16 or not 0 <= overlap < window:
            raise MedicalError(f"window {window} / overlap {overlap}: the window must be a "
                               "multiple of 4, at least 16, and larger than the overlap")
        if tta_crop % 4 or tta_crop < 16:
            raise MedicalError("tta_crop must be a multiple of 4 and at least 16")
        self.tta_flips = flip_views(tta_flips)
        if backend not in ("auto", "onnxruntime", "torch"):
            raise MedicalError(f"backend={backend!r}: use auto, onnxruntime or torch")
        packaged = isinstance(model, (str, type(None))) and model in (None, DETECTOR_MODEL)
        if isinstance(fpr, str) and fpr == "auto":
            fpr = FPR_MODEL if packaged else None
        if amp is None:
            amp = packaged and backend == "auto" and _bf16_pays(device)
        if model is None or isinstance(model, (str, Path)):
            model = self._load(str(model or DETECTOR_MODEL), backend, device, amp)
        if getattr(model, "session", None) is not None:
            if amp:
                raise MedicalError("amp applies to the PyTorch model; an ONNX model runs at the "
                                   "precision it was loaded with (ModelLoader.load(..., "
                                   "precision='fp16'))")
            self.net: Any = _OnnxNet(model)
        else:
            module = getattr(model, "module", model)
            dev = next(module.parameters()).device if device == "auto" else \
                resolve_device(device)
            self.net = _TorchNet(module, dev, amp)
        self.device = self.net.device
        #: what the network ran at: "fp32", or "bf16" / "fp16" (mixed precision)
        self.precision: str = self.net.precision
        self.fpr: Any = None
        if fpr is not None:
            if isinstance(fpr, (str, Path)):
                fpr = self._load(str(fpr), backend, device, False)
            if getattr(fpr, "session", None) is not None:
                self.fpr = _OnnxNet(fpr, FPR_OUTPUTS, "nodule-fpr-3dcnn")
            else:
                module = getattr(fpr, "module", fpr)
                self.fpr = _TorchNet(module, next(module.parameters()).device
                                     if device == "auto" else resolve_device(device),
                                     False, FPR_OUTPUTS)
        self.lungs = lungs
        self.sizes = int(sizes)
        self.lung_info: dict[str, Any] = {}
        self.threshold = threshold
        self.max_candidates = max_candidates
        self.window = window
        self.overlap = overlap
        self.batch_size = batch_size
        self.amp = amp
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.tta_top, self.tta_crop = int(tta_top), int(tta_crop)
        self.timings: dict[str, float] = {}
        self.plain_candidates: list[dict[str, Any]] = []  # before re-scoring (diagnostics)
        self.windows_run = 0  # sliding windows the network ran on in the last detect

    @staticmethod
    def _load(model: str, backend: str, device: str, amp: bool) -> Any:
        from deepseek.extras import missing
        from deepseek.loader import ModelLoader, packaged_onnx, resolve_device
        from deepseek.plugins import models

        onnx = model.endswith(".onnx") or backend == "onnxruntime"
        if backend == "auto" and not amp and not missing("runtime"):
            packaged = model in models() and packaged_onnx(model) is not None
            onnx = packaged and resolve_device(device).type == "cpu"
        return ModelLoader.load(model, device=device,
                                framework="onnx" if onnx else "auto")

    # --------------------------------------------------------------------------------------
    def detect(self, volume: Volume, series_uid: str | None = None) -> list[dict[str, Any]]:
        """Candidates ``{"seriesuid", "xyz" (world mm), "diameter_mm", "probability"}``."""
        t = {}
        t0 = time.perf_counter()
        iso = volume.resample([WORKING_SPACING] * 3)
        t["resample"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        mask, info = find_lungs(iso, use="lungs" if self.lungs else "body")
        self.lung_info = info
        if self.lungs and not info["found"]:
            from deepseek.medical.errors import NoLungError

            name = series_uid or volume.metadata.get("series_uid") or \
                volume.metadata.get("source") or "the volume"
            raise NoLungError(f"{name}: {info['reason']}: not a chest CT, or not the chest. "
                              "Search the whole body instead with lungs=False (command line: "
                              "--no-lung-mask)")
        t["mask"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        heat, size, offset, origin, x = self._infer(iso, mask)
        t["inference"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cands = self._candidates(iso, mask, heat, size, offset, origin)
        t["peaks_nms"] = time.perf_counter() - t0
        self.plain_candidates = [dict(c) for c in cands]
        if self.tta_top > 0 and cands:
            t0 = time.perf_counter()
            cands = self._rescore(iso, x, origin, cands)
            t["tta"] = time.perf_counter() - t0
        if self.fpr is not None and cands:
            t0 = time.perf_counter()
            cands = self._reduce(iso, x, origin, cands)
            t["fpr"] = time.perf_counter() - t0
        if self.sizes > 0 and cands:
            from deepseek.medical.nodule_size import measure_candidate

            t0 = time.perf_counter()
            for rank, c in enumerate(cands):  # most probable first
                c["detector_diameter_mm"] = c["diameter_mm"]
                if rank >= self.sizes:
                    c.update(size_source="detector", size_note=f"not measured (only the "
                             f"{self.sizes} most probable candidates are)")
                    continue
                c.update(measure_candidate(iso, c["xyz"], c["diameter_mm"]))
                if c["size_source"] == "segmentation":
                    c["diameter_mm"] = c["long_axis_mm"]
            t["sizes"] = time.perf_counter() - t0
        t["total"] = sum(t.values())
        self.timings = t
        sid = series_uid or volume.metadata.get("series_uid") or "scan"
        for c in cands:
            c["seriesuid"] = sid
        return cands

    def _infer(self, iso: Volume, mask: np.ndarray) -> tuple:
        from tqdm.auto import tqdm

        zyx = np.argwhere(mask)
        lo = np.maximum(zyx.min(0) - 4, 0)
        hi = np.minimum(zyx.max(0) + 5, mask.shape)
        # the cropped region, padded to at least one window and to a multiple of 4
        size = np.maximum(hi - lo, self.window)
        size = ((size + 3) // 4) * 4
        vol = np.full(size, WINDOW[0], np.float32)
        src = tuple(slice(lo[a], min(lo[a] + size[a], iso.shape[a])) for a in range(3))
        part = iso.array[src]
        vol[tuple(slice(0, part.shape[a]) for a in range(3))] = part
        msk = np.zeros(size, bool)
        msk[tuple(slice(0, part.shape[a]) for a in range(3))] = mask[src]
        x = np.clip((vol - WINDOW[0]) / (WINDOW[1] - WINDOW[0]), 0.0, 1.0).astype(np.float32)
        w, step = self.window, self.window - self.overlap
        starts = [sorted({*range(0, max(int(size[a]) - w, 0) + 1, step),
                          max(int(size[a]) - w, 0)}) for a in range(3)]
        windows = [(z, y, xx) for z in starts[0] for y in starts[1] for xx in starts[2]
                   if msk[z:z + w, y:y + w, xx:xx + w].any()]
        self.windows_run = len(windows)
        m = [int(s) // STRIDE for s in size]
        acc = np.zeros((5, *m), np.float32)
        wsum = np.zeros(m, np.float32)
        gw = _gaussian_weight(w // STRIDE)
        bar = tqdm(total=len(windows), desc="windows", disable=not self.progress, leave=False)
        for i in range(0, len(windows), self.batch_size):
            chunk = windows[i:i + self.batch_size]
            batch = np.stack([x[z:z + w, y:y + w, xx:xx + w] for z, y, xx in chunk])[:, None]
            pred = np.concatenate(self.net(batch), axis=1)
            for (z, y, xx), p in zip(chunk, pred):
                sz, sy, sx = z // STRIDE, y // STRIDE, xx // STRIDE
                n = w // STRIDE
                acc[:, sz:sz + n, sy:sy + n, sx:sx + n] += p * gw
                wsum[sz:sz + n, sy:sy + n, sx:sx + n] += gw
            bar.update(len(chunk))
        bar.close()
        acc /= np.maximum(wsum, 1e-6)
        heat = _sigmoid(acc[0])
        heat[wsum == 0] = 0
        # only peaks inside the (dilated) lung mask count
        heat *= msk[::STRIDE, ::STRIDE, ::STRIDE][:m[0], :m[1], :m[2]]
        return heat, acc[1], acc[2:5], lo, x

    def _rescore(self, iso: Volume, x: np.ndarray, origin: np.ndarray,
                 cands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Flip test-time augmentation for the ``tta_top`` most probable candidates."""
        n, top = self.tta_crop, cands[: self.tta_top]
        crops = crop_cubes(x, self._voxels(iso, origin, top), n)
        c = n // 2 // STRIDE  # the candidate's cell in every crop's heatmap
        flips = self.tta_flips
        scores = np.zeros((len(top), len(flips)))
        for i in range(0, len(top), self.batch_size):
            chunk = np.stack(crops[i:i + self.batch_size])[:, None]
            for k, dims in enumerate(flips):
                d = tuple(a + 2 for a in dims)
                out = self.net(np.flip(chunk, d))[0]
                heat = _sigmoid(np.flip(out, d))[:, 0]
                # the peak may move by a cell under a flip: the best of the 3x3x3 centre
                local = heat[:, c - 1:c + 2, c - 1:c + 2, c - 1:c + 2]
                scores[i:i + len(chunk), k] = local.max(axis=(1, 2, 3))
        out_c = [dict(k) for k in cands]
        for j, cand in enumerate(out_c[: len(top)]):
            cand["probability"] = float((cand["probability"] + scores[j].sum())
                                        / (1 + len(flips)))
        out_c.sort(key=lambda k: -k["probability"])
        return out_c

    @staticmethod
    def _voxels(iso: Volume, origin: np.ndarray, cands: list[dict[str, Any]]) -> np.ndarray:
        """The candidates' (z, y, x) positions in the cropped working array."""
        return np.array([iso.world_to_voxel(c["xyz"]) - origin for c in cands]).reshape(-1, 3)

    def _reduce(self, iso: Volume, x: np.ndarray, origin: np.ndarray,
                cands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The second stage: every candidate re-scored by the false-positive classifier."""
        crops = crop_cubes(x, self._voxels(iso, origin, cands), FPR_CROP)[:, None]
        logits = np.concatenate([self.fpr(crops[i:i + 32])[0].reshape(-1)
                                 for i in range(0, len(crops), 32)])
        out = []
        for c, q in zip(cands, _sigmoid(logits)):
            p = float(c["probability"])
            out.append({**c, "probability": float(second_stage_probability(p, float(q))),
                        "probability_detector": p, "probability_fpr": float(q)})
        out.sort(key=lambda k: -k["probability"])
        return out

    def _candidates(self, iso: Volume, mask: np.ndarray, heat: np.ndarray,
                    size: np.ndarray, offset: np.ndarray, origin: np.ndarray
                    ) -> list[dict[str, Any]]:
        peaks = local_maxima(heat) & (heat >= self.threshold)
        idx = np.argwhere(peaks)
        if len(idx) == 0:
            return []
        probs = heat[peaks]
        order = np.argsort(-probs, kind="stable")[: 4 * self.max_candidates]
        idx, probs = idx[order], probs[order]
        offs = offset[:, idx[:, 0], idx[:, 1], idx[:, 2]].T
        diam = np.exp(np.clip(size[idx[:, 0], idx[:, 1], idx[:, 2]], 0.0, 4.5))
        vox = (idx + offs) * STRIDE + origin  # (z, y, x) on the 1 mm grid
        world = iso.voxel_to_world(vox)
        kept: list[int] = []
        for i in range(len(idx)):
            ok = True
            for j in kept:
                if np.linalg.norm(world[i] - world[j]) < max(diam[i], diam[j], 6.0) / 2:
                    ok = False
                    break
            if ok:
                kept.append(i)
            if len(kept) >= self.max_candidates:
                break
        return [{"xyz": tuple(float(v) for v in world[i]), "diameter_mm": float(diam[i]),
                 "probability": float(probs[i])} for i in kept]
