"""Good parts only: a patch-feature memory (PatchCore-style nearest-neighbour anomaly score).

For lines with few or no defect examples. :func:`fit_memory` runs a frozen backbone (the
packaged ``defect-3dcnn-lstm`` encoder by default, or any weights file of that model) over
images of good parts and keeps their patch features; an image's anomaly map is, per patch, the
distance to the nearest remembered good patch, and its score the largest of them. The
threshold is set on good images held out of the memory, for a target false-positive rate.

Patch features: the encoder's stride-8 features (32 channels) beside its stride-16 features
(32 channels, upsampled), averaged over each 3x3 neighbourhood (each patch sees its
surroundings), one 64-dimensional vector per 8x8 pixels. The memory keeps at most
``max_bank`` of them, a uniform random subset (PatchCore's greedy coreset would keep the
rarer ones; with more good images than the memory holds, rare textures may be scored as
anomalies). Saved as safetensors (the bank) with JSON metadata; no pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.manufacturing.errors import ManufacturingError

FEATURE_STRIDE = 8
KIND = "patch-memory"


def _backbone(model: Any) -> Any:
    from deepseek.manufacturing.stream import load_net

    return load_net(model).eval()


def patch_features(net: Any, image: np.ndarray) -> np.ndarray:
    """(h, w, 64) float32 features of a grayscale image, one per 8x8 pixels (cut to the
    image; the image is padded with its edge values to a multiple of 16)."""
    import torch
    import torch.nn.functional as F

    from deepseek.manufacturing.stream import pad16

    h, w = image.shape
    x = torch.from_numpy(pad16(image[None]).astype(np.float32))[None]  # 1, 1, H, W
    with torch.inference_mode():
        x = x / (x.mean(dim=(2, 3), keepdim=True) + 1.0) - 1.0  # as DefectNet.forward
        f1 = net.encoder[0](x * 4.0)
        f2 = net.encoder[1](f1)
        f3 = net.encoder[2](f2)
        up = F.interpolate(f3, size=f2.shape[2:], mode="bilinear", align_corners=False)
        f = F.avg_pool2d(torch.cat([f2, up], 1), 3, stride=1, padding=1,
                         count_include_pad=False)
    hh, ww = -(-h // FEATURE_STRIDE), -(-w // FEATURE_STRIDE)
    return f[0, :, :hh, :ww].permute(1, 2, 0).numpy().copy()


class PatchMemory:
    """The memory of good patches, its threshold and what it was fitted on."""

    def __init__(self, bank: np.ndarray, meta: dict[str, Any], net: Any = None) -> None:
        self.bank = np.ascontiguousarray(bank, dtype=np.float32)
        self.meta = meta
        self.net = net if net is not None else _backbone(meta.get("backbone",
                                                                  "defect-3dcnn-lstm"))
        self._bank_t: Any = None

    @property
    def threshold(self) -> float | None:
        """The stored anomaly-score threshold (set at training for a target false-positive rate), or
        None.
        """
        t = self.meta.get("threshold")
        return None if t is None else float(t)

    def anomaly_map(self, image: np.ndarray) -> np.ndarray:
        """Per 8x8 patch: the distance to the nearest good patch in the memory."""
        import torch

        if self._bank_t is None:
            self._bank_t = torch.from_numpy(self.bank)
        feats = torch.from_numpy(patch_features(self.net, image))
        h, w, d = feats.shape
        q = feats.reshape(-1, d)
        best = torch.full((q.shape[0],), float("inf"))
        with torch.inference_mode():
            for s in range(0, len(self._bank_t), 8192):
                dist = torch.cdist(q, self._bank_t[s:s + 8192])
                best = torch.minimum(best, dist.min(dim=1).values)
        return best.reshape(h, w).numpy()

    def score(self, image: np.ndarray) -> tuple[float, np.ndarray]:
        """Anomaly score of one grayscale image (the map's maximum) and its anomaly map."""
        m = self.anomaly_map(image)
        return float(m.max()), m

    def save(self, path: str | Path) -> Path:
        """Write the memory (patches, encoder config, threshold) as one ``.safetensors`` file;
        returns its path.
        """
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"bank": self.bank}, str(path), metadata={"deepseek": json.dumps(self.meta)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> PatchMemory:
        """Read a memory written by :meth:`save`.

        Raises:
            ManufacturingError: the file is unreadable or not a patch memory.
        """
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = json.loads((f.metadata() or {}).get("deepseek", "{}"))
                if meta.get("kind") != KIND:
                    raise ManufacturingError(f"{path}: not a good-parts memory (no "
                                             f"'{KIND}' metadata)")
                bank = f.get_tensor("bank")
        except ManufacturingError:
            raise
        except Exception as exc:
            raise ManufacturingError(f"{path}: cannot read a good-parts memory ({exc})") \
                from exc
        return cls(bank, meta)


def is_memory_file(model: Any) -> bool:
    """Whether ``model`` names a saved :class:`PatchMemory`."""
    p = Path(str(model))
    if p.suffix != ".safetensors" or not p.is_file():
        return False
    try:
        from safetensors import safe_open

        with safe_open(str(p), framework="numpy") as f:
            return json.loads((f.metadata() or {}).get("deepseek", "{}")).get("kind") == KIND
    except Exception:
        return False


def fit_memory(folder: str | Path, *, backbone: Any = "defect-3dcnn-lstm",
               target_fpr: float = 0.003, hold_out: float = 0.2, max_bank: int = 20_000,
               seed: int = 0, progress: bool | None = None) -> PatchMemory:
    """Fit the memory on the good images of ``folder`` (recursive; masks and labels skipped)
    and set the threshold on the held-out ones: every ``round(1 / hold_out)``-th image in
    natural order is held out (so photos of one part, named in sequence, spread over both).
    The threshold is the ``1 - target_fpr`` quantile of the held-out images' scores, or their
    maximum when there are too few held-out images to resolve that rate (the metadata says
    which)."""
    from tqdm.auto import tqdm

    from deepseek.manufacturing.images import image_paths, read_gray

    if not 0.0 < target_fpr < 1.0:
        raise ManufacturingError(f"target_fpr={target_fpr}: give a rate between 0 and 1")
    if not 0.0 < hold_out < 1.0:
        raise ManufacturingError(f"hold_out={hold_out}: give a fraction between 0 and 1")
    files = image_paths([folder])
    every = max(2, round(1 / hold_out))
    held = files[every - 1::every]
    fit = [p for i, p in enumerate(files) if (i + 1) % every != 0]
    if len(fit) < 1 or len(held) < 1:
        raise ManufacturingError(f"{folder}: {len(files)} good image(s); give at least "
                                 f"{every} to fit the memory and hold one out")
    net = _backbone(backbone)
    feats = [patch_features(net, read_gray(p)).reshape(-1, 64)
             for p in tqdm(fit, desc="good parts", disable=progress is False or len(fit) < 20)]
    allf = np.concatenate(feats)
    rng = np.random.default_rng(seed)
    bank = allf if len(allf) <= max_bank else allf[rng.choice(len(allf), max_bank,
                                                              replace=False)]
    meta: dict[str, Any] = {"kind": KIND, "backbone": str(backbone),
                            "feature_stride": FEATURE_STRIDE, "feature_dim": 64,
                            "fit_images": len(fit), "patches_seen": int(len(allf)),
                            "bank": int(len(bank)), "held_out_images": len(held),
                            "target_fpr": target_fpr}
    mem = PatchMemory(bank, meta, net)
    scores = np.array([mem.score(read_gray(p))[0] for p in held])
    resolvable = len(held) * target_fpr >= 1.0
    meta.update(threshold=float(np.quantile(scores, 1.0 - target_fpr, method="higher")
                                if resolvable else scores.max()),
                threshold_rule=(f"the {1 - target_fpr:g} quantile of {len(held)} held-out good "
                                "images" if resolvable else
                                f"the highest of {len(held)} held-out good images (too few "
                                f"to resolve a rate of {target_fpr:g}: it needs "
                                f"{int(np.ceil(1 / target_fpr))})"),
                held_out_scores={"median": float(np.median(scores)),
                                 "max": float(scores.max())})
    return mem
