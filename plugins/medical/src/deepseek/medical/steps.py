"""Per-item steps of the medical plugin for ``deepseek batch`` (``register_steps``).

``detect_step(**options)`` loads the detector once and returns ``step(path)``, whose result is
what ``deepseek medical detect PATH --json`` prints with the same options: the CLI command
itself runs through it, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepseek.medical.nodule_grid import (
    DETECT_WINDOW,
    MAX_CANDIDATES,
    SIZES,
    THRESHOLD,
    TTA_FLIPS,
    TTA_TOP,
)


def detect_step(*, model: str = "lung-nodule-attention", backend: str = "auto",
                threshold: float = THRESHOLD, max_candidates: int = MAX_CANDIDATES,
                series_uid: str | None = None, on_gap: str = "error",
                step_mm: float | None = None, lung_mask: bool = True, sizes: int = SIZES,
                amp: bool | None = None, tta_top: int = TTA_TOP, tta_flips: str = TTA_FLIPS,
                window: int = DETECT_WINDOW,
                overlap: int | None = None, fpr: str | None = None,
                progress: bool | None = False) -> Callable[[str], dict[str, Any]]:
    """A nodule detector as a per-scan step: ``step(path) -> {"candidates", "lung_mask",
    "timings_s", "network"}`` (``network``: the backend and precision that ran; the options
    are ``deepseek medical detect``'s, ``fpr=None`` for none and ``lung_mask=False`` for
    ``--no-lung-mask``); the reader options apply to every scan."""
    from deepseek.medical.detector import NoduleDetector
    from deepseek.medical.volume import read_volume

    det = NoduleDetector(model, backend=backend, threshold=threshold,
                         max_candidates=max_candidates, amp=amp, tta_top=tta_top,
                         tta_flips=tta_flips,
                         window=window, overlap=overlap,
                         fpr=None if fpr in (None, "none") else fpr, lungs=lung_mask,
                         sizes=sizes, progress=progress)
    read_opts = {k: v for k, v in (("series_uid", series_uid), ("on_gap", on_gap),
                                   ("step_mm", step_mm))
                 if v and not (k == "on_gap" and v == "error")}

    def step(path: str) -> dict[str, Any]:
        cands = det.detect(read_volume(path, **read_opts))
        return {"candidates": cands, "lung_mask": det.lung_info, "timings_s": det.timings,
                "network": {"backend": det.net.name, "precision": det.precision}}

    return step


#: files kept beside scans that are not scans: notes, tables, annotations, reports
NOT_SCANS = (".txt", ".md", ".csv", ".json", ".xml", ".pdf", ".html", ".log")
#: pixel-data files read through a header of the same name (MetaImage, Analyze)
PIXEL_DATA = {".raw": ".mhd", ".zraw": ".mhd", ".img": ".hdr"}


def leave_out(source: str) -> str | None:
    """Why a file a ``deepseek batch medical detect`` glob matched is not a scan, or None:
    the pixel data of a header beside it (``case.raw`` of ``case.mhd``, which is the input),
    or a document or table (``annotations.csv``, an XML read, a README). Folders, and files
    of any other name (DICOM files often have none), are kept."""
    p = Path(source)
    if not p.is_file():
        return None
    suffix = p.suffix.lower()
    header = PIXEL_DATA.get(suffix)
    if header and any(p.with_suffix(s).is_file() for s in (header, header.upper())):
        return f"the pixel data of {p.stem}{header}, read through it"
    if suffix in NOT_SCANS:
        return "not a scan (a document or table)"
    return None


def detect_summary(result: dict[str, Any]) -> dict[str, Any]:
    """A scan's row in the batch table: candidates, the most probable one and its size."""
    cands = result.get("candidates") or []
    top = cands[0] if cands else {}
    return {"candidates": len(cands),
            "candidates_p_ge_0.5": sum(c.get("probability", 0) >= 0.5 for c in cands),
            "top_probability": top.get("probability"),
            "top_diameter_mm": top.get("diameter_mm"),
            "seconds_detect": (result.get("timings_s") or {}).get("total")}
