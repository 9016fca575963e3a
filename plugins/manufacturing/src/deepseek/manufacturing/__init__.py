"""deepseek-manufacturing: crack detection on live camera streams with a streaming 3D-CNN + LSTM."""

from __future__ import annotations

from deepseek.lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "FrameSource": "deepseek.manufacturing.sources",
    "Frame": "deepseek.manufacturing.sources",
    "to_gray": "deepseek.manufacturing.images",
    "read_gray": "deepseek.manufacturing.images",
    "imread": "deepseek.manufacturing.images",
    "SyntheticLine": "deepseek.manufacturing.synthetic",
    "LineConfig": "deepseek.manufacturing.synthetic",
    "write_video": "deepseek.manufacturing.synthetic",
    "read_truth": "deepseek.manufacturing.synthetic",
    "DefectNet": "deepseek.manufacturing.model",
    "DefectStream": "deepseek.manufacturing.stream",
    "DefectEvent": "deepseek.manufacturing.stream",
    "StreamReport": "deepseek.manufacturing.stream",
    "frame_metrics": "deepseek.manufacturing.metrics",
    "event_metrics": "deepseek.manufacturing.metrics",
    "train_model": "deepseek.manufacturing.training",
    "ManufacturingError": "deepseek.manufacturing.errors",
    "SourceError": "deepseek.manufacturing.errors",
    "FrameError": "deepseek.manufacturing.errors",
    "TruthFileError": "deepseek.manufacturing.errors",
}

__all__ = ["__version__", *_LAZY]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
