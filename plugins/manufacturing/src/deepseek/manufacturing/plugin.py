"""Hook implementations of the manufacturing plugin (found through the ``deepseek`` entry point).

Only registration happens here; the heavy modules load when something is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepseek import hookimpl

WEIGHTS = Path(__file__).resolve().parent / "weights"


def read_frames(source: Any, **options: Any) -> Any:
    """Frames from a video file, cam:N, rtsp/http URL, GStreamer pipeline, image folder or
    synthetic: URI -> FrameSource (iterate it for grayscale frames)."""
    from deepseek.manufacturing.sources import FrameSource

    return FrameSource.open(source, **options)


def read_synthetic_line(source: Any = None, **options: Any) -> Any:
    """The synthetic production line (seed=, frames=, any LineConfig field) -> SyntheticLine."""
    from deepseek.manufacturing.synthetic import SyntheticLine

    return SyntheticLine(**options)


def _defect_3dcnn_lstm(**config: Any) -> Any:
    """Streaming crack detector: stride-4 patch stem, causal 3D conv, LSTM across the stream,
    per-frame probability and a coarse localisation map."""
    from deepseek.manufacturing.model import DefectNet

    return DefectNet(**config)


def _defect_stream_metric(predictions: Any, references: Any, **options: Any) -> dict:
    """Frame recall, false-detection rate, recall by width, event recall, latency, fps, drops."""
    from deepseek.manufacturing.metrics import stream_metric

    return stream_metric(predictions, references, **options)


def _defect_frames_metric(predictions: Any, references: Any, **options: Any) -> dict:
    """Frame recall and false-detection rate of per-frame scores against ground-truth rows."""
    from deepseek.manufacturing.metrics import frame_metrics

    return frame_metrics(predictions, references, **options)


@hookimpl
def register_readers(register: Any) -> None:
    register("frames", read_frames)
    register("synthetic-line", read_synthetic_line)


@hookimpl
def register_models(register: Any) -> None:
    w = WEIGHTS / "defect-3dcnn-lstm.safetensors"
    register("defect-3dcnn-lstm", _defect_3dcnn_lstm,
             config={"channels": [16, 32, 32], "temporal": 3, "hidden": 32},
             weights=str(w) if w.is_file() else None,
             inputs=[{"name": "frames", "dtype": "uint8", "shape": [-1, -1, 480, 640]}])


@hookimpl
def register_metrics(register: Any) -> None:
    register("defect-stream", _defect_stream_metric)
    register("defect-frames", _defect_frames_metric)


@hookimpl
def register_pipelines(register: Any) -> None:
    from deepseek.manufacturing.pipelines import defect_stream

    register("manufacturing.defect-stream", defect_stream,
             description="synthetic line video -> frame source -> defect-3dcnn-lstm stream -> "
                         "frame/event recall, false-detection rate, fps and latency")


@hookimpl
def register_commands(cli: Any) -> None:
    from deepseek.manufacturing.cli import manufacturing

    cli.add_command(manufacturing)
