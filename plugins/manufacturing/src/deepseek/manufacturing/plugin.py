"""Hook implementations of the manufacturing plugin (found through the ``deepseek`` entry point).

Only registration happens here; what is registered lives in the plugin's modules and loads
when it is first used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepseek import hookimpl
from deepseek.lazy import lazy_callable
from deepseek.manufacturing.formats import PHOTO_READER, STREAM_SCHEMES, VIDEO_SUFFIXES

WEIGHTS = Path(__file__).resolve().parent / "weights"
M = "deepseek.manufacturing."


@hookimpl
def register_readers(register: Any) -> None:
    """Register the frame sources: video files, cameras, network streams, GStreamer pipelines,
    image folders and ``synthetic:`` lines."""
    register("video", lazy_callable(M + "sources:open_video"), kind="frames",
             suffixes=VIDEO_SUFFIXES, description="video file (OpenCV FFmpeg) -> FrameSource")
    register("camera", lazy_callable(M + "sources:open_camera"), kind="frames",
             schemes=["cam:", "/dev/video"], description="camera cam:N or /dev/videoN")
    register("stream", lazy_callable(M + "sources:open_stream"), kind="frames",
             schemes=STREAM_SCHEMES,
             description="network stream (RTSP, HTTP, RTMP, UDP) that reconnects")
    register("gstreamer", lazy_callable(M + "sources:open_gstreamer"), kind="frames",
             accepts=lazy_callable(M + "sources:is_gstreamer_pipeline"),
             description="GStreamer pipeline ending in appsink")
    register("image-folder", lazy_callable(M + "sources:open_folder"), kind="frames",
             accepts=lazy_callable(M + "sources:is_image_folder"),
             description="folder of images, natural order, as one stream")
    register("synthetic-line", lazy_callable(M + "sources:open_synthetic"), kind="frames",
             schemes=["synthetic:"],
             description="synthetic production line with cracks (synthetic:?seed=3&frames=300)")
    register(PHOTO_READER, lazy_callable(M + "images:decode_photo"), kind="encoded",
             description="an encoded part photo a server request sends (JPEG, PNG, TIFF, ...) "
                         "-> gray pixels as score reads the file (the photo decisions take it)")


@hookimpl
def register_models(register: Any) -> None:
    """Register ``defect-3dcnn-lstm`` with its packaged weights and ONNX export."""
    register("defect-3dcnn-lstm", lazy_callable(M + "model:DefectNet"),
             config={"channels": [16, 32, 32], "temporal": 3, "hidden": 32},
             weights=str(WEIGHTS / "defect-3dcnn-lstm.safetensors"),
             description="streaming crack detector: stride-4 patch stem, causal 3D conv, LSTM "
                         "across the stream, per-frame probability and a localisation map",
             # any frame size in steps of the 16-pixel cell (the stream pads to it); the
             # synthetic line's 640 x 480 frame is the example summaries and timings use
             inputs=[{"name": "frames", "dtype": "uint8", "shape": [-1, -1, -1, -1],
                      "multiple": [1, 1, 16, 16], "example": [1, 1, 480, 640]}],
             # frame logits, the cell map's logits, and the state after the clip (the
             # streaming export's names)
             outputs=["logits", "maps", "buffer_out", "h_out", "c_out"],
             # the edge form runs the streaming step (state in, state out; any frame size)
             onnx_export=lazy_callable(M + "model:write_packaged_onnx"))


@hookimpl
def register_metrics(register: Any) -> None:
    """Register the stream, frame and event metrics of defect detection."""
    register("defect-stream", lazy_callable(M + "metrics:stream_metric"),
             description="frame recall, false-detection rate, recall by width, event recall, "
                         "latency, fps and drops of a StreamReport")
    register("defect-frames", lazy_callable(M + "metrics:frames_metric"),
             load_files=lazy_callable(M + "metrics:load_frame_files"),
             files="--pred frame,score CSV (stream --scores), --ref truth CSV",
             description="frame recall, false-detection rate and recall by crack width")
    register("defect-events", lazy_callable(M + "metrics:events_metric"),
             load_files=lazy_callable(M + "metrics:load_event_files"),
             files="--pred events JSONL (stream --events), --ref truth CSV",
             description="event recall over cracks and false alarms")


@hookimpl
def register_pipelines(register: Any) -> None:
    """Register the ``manufacturing.defect-stream`` pipeline."""
    register("manufacturing.defect-stream", lazy_callable(M + "pipelines:defect_stream"),
             input_kind="frames",
             description="synthetic line video -> frame source -> defect-3dcnn-lstm stream -> "
                         "frame/event recall, false-detection rate, fps and latency")


@hookimpl
def register_steps(register: Any) -> None:
    """Register ``manufacturing.score``, the per-image step of ``deepseek batch manufacturing
    score``.
    """
    register("manufacturing.score", lazy_callable(M + "steps:score_step"),
             command="manufacturing score", summary=lazy_callable(M + "steps:score_summary"),
             leave_out=lazy_callable(M + "steps:leave_out"),
             description="one part image (or a folder of them) -> crack score, flag and box, "
                         "as `deepseek manufacturing score --json`")


@hookimpl
def register_commands(cli: Any) -> None:
    """Add the ``deepseek manufacturing`` command group."""
    from deepseek.manufacturing.cli import manufacturing

    cli.add_command(manufacturing)
