"""``deepseek manufacturing ...`` commands."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from deepseek.manufacturing import __version__
from deepseek.manufacturing.formats import BIT_DEPTHS, SCALE_RANGE

#: exit status of `stream` when its source failed: lost for good, or a file cut short
EXIT_SOURCE_FAULT = 3
#: what the served photo decision takes and answers, as export says it
SERVED_TAKES = ("the photo's pixels, or its file as BYTES; it answers score, defect, map, "
                "threshold and the box score draws")

SOURCE_HELP = ("SOURCE is a video file, cam:N, an rtsp:// or http:// URL, a GStreamer pipeline "
               "ending in appsink, an image folder, or synthetic:?seed=N&frames=N.")


@click.group("manufacturing")
@click.version_option(__version__, "--version", prog_name="deepseek-manufacturing",
                      message="%(prog)s %(version)s")
def manufacturing() -> None:
    """Manufacturing inspection: crack detection on live camera streams with a streaming
    3D-CNN + LSTM (defect-3dcnn-lstm).

    \b
    info      what this plugin registers
    generate  write a synthetic line video + per-frame ground truth
    train     train the model on synthetic clips or a good/ defect/ image folder
    evaluate  frame or event metrics of a stream's output against a truth CSV
    stream    run the detector on a camera, file, URL or folder
    score     score independent part images (each alone, at its own size)
    calibrate re-set a trained model's threshold on a line's own images
    bench     end-to-end fps and latency on a video file
    export    write the ONNX export an edge install (no PyTorch) runs

    Sources go through the reader registry (`deepseek readers --json | grep frames`).
    """


@manufacturing.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(as_json: bool) -> None:
    """Show what this plugin registers."""
    from deepseek.plugins import plugin_infos

    for plugin in plugin_infos():
        if plugin.name == "manufacturing":
            if as_json:
                click.echo(json.dumps({"version": __version__, **plugin.to_dict()}, indent=2))
                return
            click.echo(f"deepseek-manufacturing {__version__}")
            for kind, names in plugin.registered.items():
                click.echo(f"  {kind}s: {', '.join(names) or '(none)'}")


@manufacturing.command("generate")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--frames", type=int, default=900, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--width", type=int, default=640, show_default=True)
@click.option("--height", type=int, default=480, show_default=True)
@click.option("--fps", type=float, default=300.0, show_default=True)
@click.option("--mm-per-px", type=float, default=0.1, show_default=True,
              help="Calibration: millimetres per pixel.")
@click.option("--surface", type=click.Choice(["mixed", "brushed", "cast", "painted"]),
              default="mixed", show_default=True)
@click.option("--crack-width", nargs=2, type=float, default=(0.1, 0.6), show_default=True,
              help="Crack width range in mm.")
@click.option("--crack-length", nargs=2, type=float, default=(2.0, 25.0), show_default=True,
              help="Crack length range in mm.")
@click.option("--crack-spacing", type=float, default=90.0, show_default=True,
              help="Mean gap between cracks along the line in mm ('inf': no cracks).")
@click.option("--crack-angle", nargs=2, type=float, default=(0.0, 180.0), show_default=True,
              help="Crack orientation range in degrees (0: across the motion, 90: along it).")
@click.option("--branching", type=float, default=0.5, show_default=True,
              help="Chance of each further branch of a crack (0: none, at most 3).")
@click.option("--truth", type=click.Path(path_type=Path), default=None,
              help="Ground-truth CSV (default: OUT.truth.csv).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def generate(out: Path, frames: int, seed: int, width: int, height: int, fps: float,
             mm_per_px: float, surface: str, crack_width: tuple[float, float],
             crack_length: tuple[float, float], crack_spacing: float,
             crack_angle: tuple[float, float], branching: float, truth: Path | None,
             as_json: bool) -> None:
    """Write a synthetic production-line video OUT (.avi MJPG or .mp4 mp4v) and its per-frame
    ground truth (frame, defect flag, box, crack width in mm)."""
    from deepseek.manufacturing.synthetic import SyntheticLine, write_video

    line = SyntheticLine(seed=seed, frames=frames, width=width, height=height, fps=fps,
                         mm_per_px=mm_per_px, surface=surface, crack_width_mm=crack_width,
                         crack_length_mm=crack_length, crack_spacing_mm=crack_spacing,
                         crack_angle_deg=crack_angle, branch_prob=branching)
    video, tpath = write_video(out, line, truth=truth)
    d = line.describe()
    n_def = sum(line.truth(i)["defect"] for i in range(len(line)))
    if as_json:
        click.echo(json.dumps({"video": str(video), "truth": str(tpath), "frames": frames,
                               "defect_frames": n_def, **d}, indent=2, default=str))
        return
    click.echo(f"wrote {video} ({frames} frames, {d['surface']}, {d['speed_px']} px/frame, "
               f"{d['cracks']} cracks, {n_def} defect frames) and {tpath}")


def _status_line(rep: Any, last: dict[str, Any], t0: list[float]) -> None:
    now = time.perf_counter()
    if now - t0[0] < 0.25:
        return
    t0[0] = now
    fps = rep.frames / rep.seconds if rep.seconds > 0 else 0.0
    sys.stderr.write(f"\rframes {rep.frames}  {fps:7.1f} fps  latency "
                     f"{last['latency_s'] * 1e3:6.1f} ms  events {last['events']}  "
                     f"{'DEFECT' if last['flag'] else 'ok    '}   ")
    sys.stderr.flush()


@manufacturing.command("stream")
@click.argument("source")
@click.option("--events", "events_path", type=click.Path(path_type=Path), default=None,
              help="Write events as JSON lines here (a live source's carry the UTC time "
                   "their first frame was captured, \"at\").")
@click.option("--scores", "scores_path", type=click.Path(path_type=Path), default=None,
              help="Write the score of every frame as CSV (frame,score) here.")
@click.option("--append", is_flag=True,
              help="Add to --events and --scores rather than starting them afresh (a stream "
                   "run as a service, started again after an outage or a reboot).")
@click.option("--model", default="defect-3dcnn-lstm", show_default=True,
              help="Registry name or .safetensors file.")
@click.option("--threshold", type=float, default=None,
              help="Frame probability at which a frame is flagged [0.5; a model from train "
                   "--folder stores a threshold for still photos, which `score` uses: the "
                   "stream says so and keeps 0.5 unless given one].")
@click.option("--debounce", nargs=2, type=int, default=(2, 3), show_default=True,
              help="An event needs K of the last N frames flagged.")
@click.option("--policy", type=click.Choice(["drop-oldest", "block"]), default=None,
              help="Queue overflow policy (default: drop-oldest for live sources and "
                   "--realtime, block for files and folders).")
@click.option("--queue-size", type=int, default=None,
              help="Frames queued between grabber and model (default: 16 with drop-oldest, "
                   "64 with block).")
@click.option("--realtime", is_flag=True, help="Play a file at its nominal fps, like a camera.")
@click.option("--decode-threads", type=click.IntRange(min=0), default=1, show_default=True,
              help="Threads the grabber decodes with (FFmpeg's decoder, OpenCV's pool): one "
                   "core decodes, the model has the rest; 0 leaves it to FFmpeg and OpenCV "
                   "(a large H.264 stream may need several).")
@click.option("--read-timeout", "read_timeout", type=click.FloatRange(min=0.1), default=5.0,
              show_default=True,
              help="A network stream (rtsp://, http://) that sends no frame for this many "
                   "seconds, its connection open, is taken as lost and reopened (FFmpeg's "
                   "own wait is 30 s).")
@click.option("--fps", type=float, default=None, help="Nominal fps (folders; overrides files).")
@click.option("--size", nargs=2, type=int, default=None,
              help="Resize every frame to W H (default: the first frame's size).")
@click.option("--fit", type=click.Choice(["resize", "letterbox"]), default="resize",
              show_default=True, help="How frames of another size are fitted.")
@click.option("--mm-per-px", type=click.FloatRange(0, min_open=True), default=None,
              help="Millimetres one pixel spans on the part (the camera's calibration): "
                   "events then give the crack width in mm [widths in pixels; a synthetic: "
                   "source uses its own scale].")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "torch"]), default="auto",
              show_default=True)
@click.option("--max-frames", type=int, default=None)
@click.option("--truth", type=click.Path(exists=True, path_type=Path), default=None,
              help="Ground-truth CSV: also print recall and false-detection rate.")
@click.option("--show", is_flag=True, help="Show frames with boxes in a window (needs an "
              "OpenCV with GUI support; q or Esc stops).")
@click.option("--quiet", is_flag=True, help="No status line.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def stream(source: str, events_path: Path | None, scores_path: Path | None, append: bool,
           model: str, threshold: float | None,
           debounce: tuple[int, int], policy: str | None, queue_size: int | None,
           realtime: bool, decode_threads: int, read_timeout: float,
           fps: float | None, size: tuple[int, int] | None, fit: str, mm_per_px: float | None,
           backend: str, max_frames: int | None, truth: Path | None, show: bool, quiet: bool,
           as_json: bool) -> None:
    """Run the crack detector on SOURCE with a live status line (fps, latency, events).

    SOURCE is a video file, cam:N, an rtsp:// or http:// URL, a GStreamer pipeline ending in
    appsink, an image folder, or synthetic:?seed=N&frames=N. SIGTERM ends it after the step
    in hand, as the source's end would (an event under way ended, the summary printed, exit
    status 0), as does the hangup of the terminal it was started in (its window closed;
    ignored under nohup); Ctrl-C interrupts it. SIGHUP (systemctl reload) loads MODEL again
    while the stream runs on, deciding from its next step (the events say from which frame).
    """
    from deepseek.evaluation import evaluate
    from deepseek.manufacturing.errors import ManufacturingError
    from deepseek.manufacturing.stream import DefectStream
    from deepseek.manufacturing.synthetic import read_truth
    from deepseek.readers import open as open_source

    opts: dict[str, Any] = {"realtime": realtime, "fit": fit, "decode_threads": decode_threads,
                            "read_timeout_s": read_timeout}
    if queue_size:
        opts["queue_size"] = queue_size
    if policy:
        opts["policy"] = policy
    if fps:
        opts["fps"] = fps
    if size:
        opts["size"] = tuple(size)
    if show:
        import cv2

        try:
            cv2.namedWindow("deepseek")
        except cv2.error as exc:
            raise ManufacturingError("--show needs an OpenCV with window support; "
                                     "opencv-python-headless has none (pip install "
                                     "opencv-python)") from exc
    if threshold is None:
        from deepseek.manufacturing.score import stored_threshold

        threshold = 0.5
        if (stored := stored_threshold(model)) is not None:
            click.echo(f"note: {model} stores the threshold {stored:.4g}, set on still part "
                       "photos (what `score` uses); the stream flags frames at 0.5, as a "
                       f"frame of a moving line is not a photo held still: give --threshold "
                       f"{stored:.4g} to use it, and check either on a recording with --truth",
                       err=True)
    from deepseek.paths import ready_to_write

    ready_to_write(events_path, "--events", "events.jsonl")  # before a stream of hours
    ready_to_write(scores_path, "--scores", "scores.csv")
    truth_rows = read_truth(truth) if truth is not None else None  # so is a bad truth
    src = open_source(source, kind="frames", **opts)
    t0 = [0.0]

    def on_event(ev: Any) -> None:
        if not quiet:
            sys.stderr.write("\n")
        width = (f" width~{ev.width_mm} mm" if ev.width_mm is not None else
                 f" width~{ev.width_px} px" if ev.width_px is not None else "")
        click.echo(f"defect at frame {ev.frame} (t={ev.time_s:.3f} s) score {ev.score:.3f} "
                   f"box {ev.box}{width}", err=True)

    from deepseek.service import ServiceNotifier, SignalEvent, stop_signals

    service = ServiceNotifier()  # systemd's Type=notify: ready, status, reloads, watchdog
    told = [float("-inf")]  # when the service manager was last given the stream's status

    def on_batch(rep: Any, last: dict[str, Any]) -> None:
        if not quiet:
            _status_line(rep, last, t0)
        service.alive()
        now = time.monotonic()
        if now - told[0] >= 1.0:  # frames flow: ready, and its status once a second
            status = (f"{rep.frames} frames, {last['events']} events, "
                      f"{rep.frames / max(rep.seconds, 1e-9):.0f} fps")
            if told[0] == float("-inf"):
                service.ready(status)
            else:
                service.status(status)
            told[0] = now

    stalled = [False]  # said once a stall

    def on_wait() -> None:  # no frame there: alive while the source is heard from, so that
        from deepseek.manufacturing.sources import STALL_S  # a read that hangs (a stuck

        quiet_s = src.stalled_s()  # pipeline, a driver) ends in the watchdog's restart
        if quiet_s < STALL_S:
            stalled[0] = False
            service.alive()
        elif not stalled[0]:
            stalled[0] = True
            click.echo(f"\n{source}: no word from the source for {quiet_s:.0f} s (its read "
                       "hangs)" + ("; the service manager's watchdog will restart the stream"
                                   if service.watchdog_s else ""), err=True)
            service.status(f"stalled: no word from the source for {quiet_s:.0f} s")

    def on_frame(frame: Any, p: float, box: Any) -> None:
        import cv2

        img = cv2.cvtColor(frame.image, cv2.COLOR_GRAY2BGR)
        if box is not None:
            cv2.rectangle(img, box[:2], box[2:], (0, 0, 255), 2)
        cv2.putText(img, f"frame {frame.index}  p={p:.2f}", (8, 20), cv2.FONT_HERSHEY_SIMPLEX,
                    0.6, (0, 255, 0), 1)
        cv2.imshow("deepseek", img)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            raise KeyboardInterrupt

    ds = DefectStream(src, model, threshold=threshold, debounce=tuple(debounce),
                      backend=backend, mm_per_px=mm_per_px, on_event=on_event,
                      events=events_path, scores=scores_path, on_batch=on_batch,
                      on_frame=on_frame if show else None, append=append, on_wait=on_wait)
    # a service manager's stop (SIGTERM, or the hangup of the terminal the stream runs in)
    # ends the run after the step in hand, as the source's end would: an event under way
    # ended, the summary said; the handlers only set flags (one that took a lock, or
    # started a thread, could wait on a lock the main thread it interrupts holds)
    asked = SignalEvent()

    def reload_now() -> None:  # in a thread of its own: the stream runs on meanwhile
        was = (ds.model_sha256 or "")[:12]
        service.reloading()
        try:
            sha = ds.load_again()
        except Exception as exc:  # noqa: BLE001  (a bad file must not stop the line)
            click.echo(f"\nreload: {model} did not load ({exc}); still deciding with the "
                       f"model loaded before (sha256 {was})", err=True)
            service.ready(f"reload failed, still deciding with sha256 {was}: {exc}")
            return
        click.echo(f"\nreload: {model} loaded (sha256 {(sha or '')[:12]}; before, {was}); "
                   "the stream decides with it from its next step", err=True)
        service.ready(f"deciding with sha256 {(sha or '')[:12]} from the next step")

    def reloader() -> None:  # waits for the reloads asked (SIGHUP); the stream runs on
        try:  # while one loads
            while asked.wait() and not stop.is_set():
                asked.clear()
                reload_now()
        finally:  # its last user (a handler's set after this is still safe)
            asked.close()

    import threading

    with stop_signals(reload=asked.set) as stop:
        threading.Thread(target=reloader, name="reload", daemon=True).start()
        try:
            rep = ds.run(max_frames=max_frames, stop=stop)
        except KeyboardInterrupt:  # Ctrl-C, or q in the window
            click.echo("\ninterrupted", err=True)
            return
        finally:
            stop.set()  # the reloader ends (after a load under way)
            asked.set()
            service.stopping()
            if show:
                import cv2

                cv2.destroyAllWindows()
    if not quiet:
        sys.stderr.write("\n")
    if rep.stopped:
        click.echo("stopped (SIGTERM, or the terminal closed) after the frames in hand",
                   err=True)
    out: dict[str, Any] = rep.summary()
    if truth_rows is not None:
        out["frame_metrics"] = evaluate("defect-frames", (rep.frame_index, rep.scores),
                                        truth_rows, threshold=threshold)
        out["event_metrics"] = evaluate("defect-events", rep.events, truth_rows)
    fault = ("the source was lost and did not come back" if rep.source.get("lost") else
             "the file ended before its declared frame count" if rep.source.get("ended_early")
             else None)
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))
        if fault:
            click.echo(f"error: {fault}", err=True)
            sys.exit(EXIT_SOURCE_FAULT)
        return
    click.echo(f"{rep.frames} frames in {rep.seconds:.2f} s: {rep.fps:.1f} fps ({rep.backend}); "
               f"latency p50 {rep.latency_ms.get('p50', 0):.2f} ms, p99 "
               f"{rep.latency_ms.get('p99', 0):.2f} ms; dropped "
               f"{rep.source['frames_dropped']}, rejected {rep.source['frames_rejected']}, "
               f"resized {rep.source['frames_resized']}; {len(rep.events)} events")
    for err in rep.source.get("errors", []):
        click.echo(f"source: {err}", err=True)
    if truth is not None:
        fm, em = out["frame_metrics"], out["event_metrics"]
        ev_recall = em["event_recall"]
        click.echo(f"frame recall {fm['recall']:.4f} on {fm['defect_frames']} defect frames; "
                   f"false-detection rate {fm['false_detection_rate']:.4f} on "
                   f"{fm['clean_frames']} clean frames; " +
                   (f"event recall {ev_recall:.3f}" if math.isfinite(ev_recall) else
                    "no event recall (the truth has no defect frames)"))
        gaps = [f"{fm['truth_frames_not_scored']} of its frames not scored (dropped, or past "
                "the end)" if fm["truth_frames_not_scored"] else "",
                f"{fm['frames_without_truth']} scored frames it has no row for"
                if fm["frames_without_truth"] else ""]
        if any(gaps):
            click.echo(f"note: the truth {truth}: " + "; ".join(g for g in gaps if g)
                       + " (check that it is this recording's)", err=True)
    if fault:
        click.echo(f"error: {fault} (exit status {EXIT_SOURCE_FAULT})", err=True)
        sys.exit(EXIT_SOURCE_FAULT)


@manufacturing.command("score")
@click.argument("paths", nargs=-1, required=True)
@click.option("--model", default="defect-3dcnn-lstm", show_default=True,
              help="Registry name or weights file, or a good-parts memory "
                   "(train --good-only) for anomaly scores.")
@click.option("--threshold", type=click.FloatRange(0, min_open=True), default=None,
              help="Score at which an image is a defect [weights from train --folder or a "
                   "memory: their own, set for a target false-positive rate on held-out "
                   "images; else 0.5].")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None,
              help="Write path, size, score, defect flag, box and heatmap per image.")
@click.option("--heatmaps", type=click.Path(path_type=Path), default=None,
              help="Write a crack-probability overlay PNG per image into this folder "
              "(marked as a heatmap, so never read back as a part).")
@click.option("--heatmaps-of", type=click.Choice(["all", "flagged"]), default="all",
              show_default=True,
              help="With --heatmaps: an overlay of every image, or of the flagged ones only "
                   "(a line's watch: a 20-megapixel overlay takes longer to write than the "
                   "photo to score, and about 30 MB).")
@click.option("--evaluate", is_flag=True,
              help="PATH is one labelled folder (masks, YOLO labels or good/ + defect/, as for "
                   "train --folder): also print image AUROC, recall, false-positive rate and "
                   "precision at the threshold, recall at 1 % FPR, and pixel AUROC and AU-PRO "
                   "where the labels place the defects (good/ parts' pixels count as good).")
@click.option("--calibration", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Use the threshold a calibration file (from `calibrate` on "
                                 "this line's images) set for this model.")
@click.option("--views", type=click.Choice(["1", "4"]), default=None,
              help="Score each image as it is (1) or also flipped left-right, upside down and "
              "both, the logits averaged (4) [the views the model's threshold was set with, "
              "stored by train --folder --views; 1 for other models].")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "torch"]),
              default="auto", show_default=True,
              help="What runs a crack network: auto takes the ONNX exports beside the weights "
                   "(train and export write them) on onnxruntime when they are current, "
                   "about twice as fast as PyTorch with the same scores, else PyTorch. A "
                   "good-parts memory: auto runs PyTorch where it is installed (the path its "
                   "threshold was set on), else the memory's photo decision beside it "
                   "(memory.photo.onnx) on onnxruntime, about twice as fast, scores within "
                   "about 0.003.")
@click.option("--watch", is_flag=True,
              help="PATH is the folder a camera writes its photos into: score the photos "
                   "there, then each new or rewritten photo once its file is complete, one "
                   "line (with --json, one JSON object) per photo as it is scored, --csv "
                   "appended row by row, until Ctrl-C, SIGTERM or its terminal's hangup; "
                   "SIGHUP (systemctl reload, kill -HUP) loads the model again from the next "
                   "photo on. Each result names "
                   "the model's SHA-256, the threshold and when it was decided.")
@click.option("--new-only", is_flag=True,
              help="With --watch: leave the photos already in the folder; score what comes "
                   "(with --state: at its first start; started again, it scores the photos "
                   "written while it was stopped).")
@click.option("--poll", is_flag=True,
              help="With --watch: look for new photos every 300 ms instead of being told by "
                   "the system (a network share written by another machine: the system is "
                   "not told of its changes).")
@click.option("--poll-every", type=click.FloatRange(0.05, 3600), default=None,
              metavar="SECONDS",
              help="With --watch: poll, looking every SECONDS (each look reads the size and "
                   "time of every file in the folder: on a large share, look less often) "
                   "[--poll: 0.3].")
@click.option("--settle", type=click.FloatRange(0), default=None,
              help="With --watch: seconds a photo whose file does not decode (still being "
                   "written, or damaged) waits for its next change before it is reported "
                   "unreadable [10].")
@click.option("--state", "state_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None,
              help="With --watch: a file (made when not there) where the watch keeps what "
                   "it has scored, so that started again (a restart, a reboot) it scores "
                   "only the photos new or changed since, those written while it was "
                   "stopped included, not the whole folder again. One per watched folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def score(paths: tuple[str, ...], model: str, threshold: float | None, csv_path: Path | None,
          heatmaps: Path | None, evaluate: bool, calibration: Path | None,
          views: str | None, backend: str, heatmaps_of: str, watch: bool, new_only: bool,
          poll: bool, poll_every: float | None, settle: float | None,
          state_path: Path | None, as_json: bool) -> None:
    """Score part images: PATHS are image files and folders (searched recursively; masks and
    labels such as *_mask.png or files under masks/ are skipped), or quoted patterns such as
    'line3/**/*.png' (what a Windows prompt passes as typed). Each image is scored alone
    with a fresh model state and at its own size (padded, never resized), so the order of
    the images changes nothing; one line per image: score, and the box when it is a defect.
    An image that cannot be read (damaged, cut short) is listed on stderr and the others are
    still scored; the exit status is then 1 (with --evaluate it stops the run).
    """
    from deepseek.manufacturing.score import in_file_order, score_images, write_csv

    if evaluate and (len(paths) != 1 or not Path(paths[0]).is_dir()):
        raise click.UsageError("--evaluate takes one labelled folder as PATH")
    if watch and evaluate:
        raise click.UsageError("--watch scores photos as they come and --evaluate measures a "
                               "labelled folder once: give one of them")
    if watch and (len(paths) != 1 or not Path(paths[0]).is_dir()):
        raise click.UsageError("--watch takes one folder as PATH: the one the camera writes "
                               "its photos into")
    if heatmaps is None and heatmaps_of != "all":
        raise click.UsageError("--heatmaps-of goes with --heatmaps")
    if not watch and (new_only or poll or poll_every is not None or settle is not None
                      or state_path is not None):
        given = ("--new-only" if new_only else "--poll" if poll else
                 "--poll-every" if poll_every is not None else
                 "--settle" if settle is not None else "--state")
        raise click.UsageError(f"{given} goes with --watch")
    if state_path is not None and csv_path is not None and \
            state_path.resolve() == csv_path.resolve():
        raise click.UsageError("--state and --csv name the same file: give the state a file "
                               "of its own")
    from deepseek.manufacturing.errors import ManufacturingError

    cal = None
    if calibration is not None:
        from deepseek.manufacturing.calibration import read_calibration

        if threshold is not None:
            raise ManufacturingError("give --threshold or --calibration, not both")
        cal = read_calibration(calibration, model)
    from deepseek.paths import ready_folder, ready_to_write

    ready_to_write(csv_path, "--csv", "scores.csv")  # before the scoring, not after it
    ready_to_write(state_path, "--state", "watch-state.jsonl")
    ready_folder(heatmaps, "--heatmaps")
    if evaluate:  # a folder with unlabelled images is refused before, not after, the scoring
        from deepseek.manufacturing.images import list_images
        from deepseek.manufacturing.labelled import unlabelled

        unlabelled(paths[0], list_images(Path(paths[0]), recursive=True))
    if watch:
        from deepseek.manufacturing.steps import calibrated_scorer

        def load() -> Any:  # at the start, and again on SIGHUP
            return calibrated_scorer(model, threshold, calibration, backend=backend,
                                     views=None if views is None else int(views))
        from deepseek.manufacturing.watch import SETTLE_S

        _watch_and_score(load, model, Path(paths[0]), csv_path, heatmaps, heatmaps_of, as_json,
                         poll=poll_every if poll_every is not None else poll,
                         settle=SETTLE_S if settle is None else settle,
                         existing=not new_only, state=state_path)
        return
    # a damaged photo among a day's parts is listed and the rest scored (exit status 1);
    # --evaluate measures a labelled set, so there it stops the run with the file's name
    unreadable: list[Any] | None = None if evaluate else []
    results = score_images(paths, model, heatmaps=heatmaps,
                           threshold=threshold if cal is None else float(cal["threshold"]),
                           progress=None if not as_json else False,
                           views=None if views is None else int(views),
                           unreadable=unreadable, keep_maps=evaluate, backend=backend,
                           heatmaps_of=heatmaps_of)
    unreadable = unreadable or []
    csv_failed = None  # the results are printed all the same, then the CSV's error said
    if csv_path is not None:
        try:
            write_csv(results, csv_path, unreadable)
        except OSError as exc:
            csv_failed = (f"--csv {csv_path}: cannot write it ({exc.strerror}); a file there "
                          f"before is left as it was, and the {len(results)} results are "
                          "printed above: free space there or give another path")
    report = None
    if evaluate:
        from deepseek.manufacturing.score import evaluate_scores, stored_bit_depth

        report = evaluate_scores(results, paths[0], bit_depth=stored_bit_depth(model),
                                 model=model)
    if as_json:
        out = [r.to_dict() for r in in_file_order(results, unreadable)]
        click.echo(json.dumps(out if report is None else {"images": out, "evaluation": report},
                              indent=2))
        if csv_failed:
            raise ManufacturingError(csv_failed)
        _unreadable_exit(unreadable)
        return
    for r in results:
        click.echo(_score_line(r))
    n_def = sum(r.defect for r in results)
    click.echo(f"{len(results)} images, {n_def} flagged as defects"
               + (f"; {len(unreadable)} unreadable, not scored" if unreadable else "")
               + (f"; written to {csv_path}" if csv_path and not csv_failed else "")
               + (f"; heatmaps in {heatmaps}" if heatmaps else ""))
    from deepseek.manufacturing.score import (
        describe_expectation,
        stored_expectation,
        stored_views,
    )

    # an expectation holds for scores made as the threshold's were (else Scorer warned)
    same = views is None or int(views) == stored_views(model)
    if same and cal is not None:
        click.echo(describe_expectation(cal["expected"],
                                        f"the calibrated threshold ({calibration})"))
    elif same and threshold is None and (expected := stored_expectation(model)):
        click.echo(describe_expectation(expected))
    if report is not None:
        if report["trained_on_images"]:
            click.echo(f"warning: {report['trained_on_images']} of these {report['images']} "
                       f"images are ones {model} was trained on (equal pixels, e.g. "
                       f"{report['trained_on_example']}): it scores the images it learnt "
                       "from better than new parts, so these figures read too well; evaluate "
                       "on images it never saw", err=True)
        r1 = report["recall_at_fpr_0.01"]
        same = report["copies_left_out"]
        click.echo(f"labels: {report['defect_images']} defect of {report['images']} images"
                   + (f" ({same} copies of other images counted once)" if same else "")
                   + f"; image AUROC {report['image_auroc']:.4f}, average precision "
                   f"{report['average_precision']:.4f}")
        click.echo(f"at threshold {report['threshold']:.4g}: recall {report['recall']:.3f}, "
                   f"false-positive rate {report['false_positive_rate']:.3f}, precision "
                   f"{report['precision']:.3f}")
        click.echo(f"at FPR <= 1 % on these images (threshold {r1['threshold']:.4g}): recall "
                   f"{r1['recall']:.3f}")
        if "pixel" in report:
            px = report["pixel"]
            ref = report["pixel_references"]["darkness"]
            click.echo(f"pixels ({px['images']} images whose defect pixels are known, "
                       f"{px['regions']} defect regions): pixel AUROC "
                       f"{px['pixel_auroc']:.4f}, AU-PRO (FPR <= 0.3) "
                       f"{px['au_pro']:.4f}; references: chance 0.5, the images' own "
                       f"darkness {ref['pixel_auroc']:.4f} / {ref['au_pro']:.4f}")
    if csv_failed:
        raise ManufacturingError(csv_failed)
    _unreadable_exit(unreadable)


def _score_line(r: Any) -> str:
    """A scored image as ``score`` prints it: score, flag, path and the box of a defect."""
    box = f"  box {r.box}" if r.box else ""
    return f"{r.score:.4f}  {'DEFECT' if r.defect else 'ok    '}  {r.path}{box}"


def _watch_and_score(load: Callable[[], Any], model: str, folder: Path,
                     csv_path: Path | None, heatmaps: Path | None, heatmaps_of: str,
                     as_json: bool, *, poll: bool | float, settle: float, existing: bool,
                     state: Path | None) -> None:
    """``score --watch``: each result appended to the CSV and printed as it is made, until
    Ctrl-C or SIGTERM; then a summary, and exit status 1 if a photo could not be read.
    ``load`` makes the scorer, at the start and again on SIGHUP (``systemctl reload``: the
    model retrained or calibrated anew); a model that does not load then is said, and the
    one loaded before goes on scoring.

    The CSV is opened for each row, so a log rotation that moves it away (or empties it)
    is followed: the next row starts a new file, with its header. Each row and JSON line
    names the model's SHA-256 and the threshold that decided it, and when (UTC)."""
    import csv
    from datetime import datetime, timezone

    from deepseek.manufacturing.errors import ManufacturingError
    from deepseek.manufacturing.score import UnreadableImage, csv_row
    from deepseek.manufacturing.watch import watch_folder
    from deepseek.service import ServiceNotifier, SignalEvent, stop_signals

    service = ServiceNotifier()  # systemd's Type=notify: ready, status, reloads, watchdog
    header = _watch_csv_header(csv_path, lambda m: click.echo(m, err=True))
    scorer = load()
    asked = SignalEvent()  # set by a signal handler (SIGHUP): it takes no lock
    counts = {"scored": 0, "flagged": 0, "unreadable": 0}

    def append(r: Any, at: str) -> None:
        """``r``'s row at the end of the CSV (a new or emptied file: the header first)."""
        try:
            with open(csv_path, "a", newline="") as out:  # type: ignore[arg-type]
                rows = csv.writer(out)
                if out.tell() == 0:
                    rows.writerow(header)
                rows.writerow([*csv_row(r), at])
        except OSError as exc:
            raise ManufacturingError(f"--csv {csv_path}: cannot append the row of {r.path} "
                                     f"({exc.strerror}); the watch stops") from None

    def emit(r: Any) -> None:
        # when it was decided, in UTC (a day's file of lines, `--json > line3.jsonl`, or
        # of rows says when each part was flagged)
        at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        if csv_path is not None:  # the row first: a result printed is also in the file
            append(r, at)
        line = json.dumps({**r.to_dict(), "scored_at": at})
        if isinstance(r, UnreadableImage):
            counts["unreadable"] += 1
            click.echo(f"unreadable, not scored: {r.error}", err=True)
            if as_json:
                click.echo(line)
        else:
            counts["scored"] += 1
            counts["flagged"] += bool(r.defect)
            click.echo(line if as_json else _score_line(r))
        sys.stdout.flush()
        service.status(f"{counts['scored']} photos scored, {counts['flagged']} flagged, "
                       f"{counts['unreadable']} unreadable; the last at {at}")

    def reload() -> Any:
        """On SIGHUP: the model loaded again, or None (not asked; or it does not load, and
        the one loaded before goes on)."""
        nonlocal scorer
        if not asked.is_set():
            return None
        asked.clear()
        was = _model_words(scorer)
        service.reloading()
        try:
            new = load()
        except Exception as exc:  # noqa: BLE001  (a bad file must not stop the line)
            click.echo(f"reload: {model} did not load ({exc}); still scoring with the model "
                       f"loaded before ({was})", err=True)
            service.ready(f"reload failed, still scoring with {was}: {exc}")
            return None
        scorer = new
        click.echo(f"reload: scoring with {model} ({_model_words(new)}) from the next photo "
                   f"on; before, {was}", err=True)
        service.ready(f"scoring with {_model_words(new)}")
        return new

    click.echo(f"watching {folder} with {model} ({_model_words(scorer)}; Ctrl-C to stop, "
               "SIGHUP to load the model again)", err=True)
    # a service manager's stop (SIGTERM) ends the watch as Ctrl-C does, its reload (SIGHUP)
    # loads the model; the handlers stay until the summary is out (a stop sent twice ends
    # the watch once, with its summary)
    with stop_signals(reload=asked.set) as stop:
        try:
            watch_folder(scorer, folder, emit, settle_s=settle, heatmaps=heatmaps, poll=poll,
                         stop=stop, existing=existing, state=state, reload=reload,
                         heatmaps_of=heatmaps_of, service=service,
                         say=lambda m: click.echo(m, err=True))
        except KeyboardInterrupt:
            pass
        finally:  # the summary also when the watch stops on an error (its folder gone)
            service.stopping()
            asked.close()
            click.echo(f"watch ended: {counts['scored']} photos scored, {counts['flagged']} "
                       f"flagged as defects, {counts['unreadable']} unreadable"
                       + (f"; rows appended to {csv_path}" if csv_path else ""), err=True)
    if counts["unreadable"]:
        raise SystemExit(1)


def _model_words(scorer: Any) -> str:
    """The model a scorer decides with, in words: its SHA-256's first 12 digits and its
    threshold."""
    sha = scorer.model_sha256
    return (f"sha256 {sha[:12]}" if sha else "no model file") + \
        f", threshold {scorer.threshold:.4g}"


def _watch_csv_header(csv_path: Path | None, say: Callable[[str], None]) -> list[str]:
    """The columns of ``score --watch``'s CSV (``score``'s and ``scored_at``), checked
    against those of the CSV there (a watch started again appends to it). A CSV an earlier
    version of the watch began (without the threshold, model and time columns: a line's
    service after an upgrade) is moved aside whole, to ``<stem>.before-<UTC time><suffix>``
    beside it, which ``say`` is told, and a new one begun; one with other columns (another
    tool's) is refused untouched, since rows under the wrong header would be misread.

    Raises:
        ManufacturingError: the CSV there has other columns, or cannot be read or moved.
    """
    import csv
    from datetime import datetime, timezone

    from deepseek.manufacturing.errors import ManufacturingError
    from deepseek.manufacturing.score import CSV_HEADER, EARLIER_CSV_HEADERS

    header = [*CSV_HEADER, "scored_at"]
    if csv_path is None:
        return header
    try:
        with open(csv_path, newline="") as fh:  # its first line, bounded (a file with
            first = fh.readline(1 << 16)  # no end of line, a device)
        there = next(csv.reader([first]), None) if first else None
    except FileNotFoundError:
        return header
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManufacturingError(f"--csv {csv_path}: cannot read its header ({exc})") from None
    if there is None or there == header:
        return header
    if there in EARLIER_CSV_HEADERS:
        import os

        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside = csv_path.with_name(f"{csv_path.stem}.before-{stamp}{csv_path.suffix}")
        try:
            if aside.exists():  # never over another file
                raise FileExistsError(17, "File exists")
            os.rename(csv_path, aside)
        except OSError as exc:
            raise ManufacturingError(f"--csv {csv_path}: begun by an earlier version without "
                                     f"the columns {', '.join(h for h in header if h not in there)}"
                                     f"; it could not be moved aside to {aside.name} "
                                     f"({exc.strerror}): move it away yourself") from None
        say(f"--csv {csv_path}: begun by an earlier version without the columns "
            f"{', '.join(h for h in header if h not in there)}: moved, as it was, to "
            f"{aside}; a new {csv_path.name} is begun")
        return header
    raise ManufacturingError(
        f"--csv {csv_path}: its columns ({','.join(there)[:200]}) are not those the watch "
        f"writes ({','.join(header)}): rows appended under them would be misread; give the "
        "watch a new CSV, or move this one away (it is left as it is)")


def _unreadable_exit(unreadable: list[Any]) -> None:
    """List on stderr the images ``score`` could not read (each error names the file and the
    fix) and exit with status 1, after the scores of the others are out."""
    if not unreadable:
        return
    for u in unreadable:
        click.echo(f"unreadable, not scored: {u.error}", err=True)
    click.echo(f"error: {len(unreadable)} image(s) could not be read and were not scored "
               "(listed above, and with their error in --csv and --json); the other images "
               "were scored", err=True)
    raise SystemExit(1)


@manufacturing.command("calibrate")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", required=True,
              help="Trained weights (train --folder), a registry name or a good-parts memory.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The calibration file to write (JSON); give it to score --calibration.")
@click.option("--target-fpr", type=click.FloatRange(0, 1, max_open=True), default=0.01,
              show_default=True, help="The largest share of good images the threshold may "
                                      "flag.")
@click.option("--all-good", is_flag=True,
              help="FOLDER holds good parts only, without labels (else it is labelled as "
                   "for train --folder: masks, COCO, VOC, labelme or YOLO labels, or good/ "
                   "+ defect/).")
@click.option("--group-pattern", "--group-regex", "group_pattern", default=None,
              metavar="REGEX", callback=lambda _c, _p, v: _regex(v),
              help="As for train: what names the part in a labelled folder's paths.")
@click.option("--json", "as_json", is_flag=True, help="Print the calibration as JSON.")
def calibrate_cmd(folder: Path, model: str, out: Path, target_fpr: float, all_good: bool,
                  group_pattern: str | None, as_json: bool) -> None:
    """Re-set MODEL's threshold on a line's own images (FOLDER), without retraining.

    Scores every image, picks the lowest threshold whose false-alarm rate on the good images
    is at most --target-fpr, and writes it with the false-alarm rate and (when FOLDER has
    defects) the recall it gives, each with a Wilson 95 % interval, to --out. The file names
    the weights by their sha256: score refuses it with any other model.

    \b
    deepseek manufacturing calibrate line3/good --all-good --model runs/a/model.safetensors \\
        --out line3.calibration.json
    deepseek manufacturing score line3/today --model runs/a/model.safetensors \\
        --calibration line3.calibration.json
    deepseek manufacturing export runs/a/model.safetensors \\
        --calibration line3.calibration.json    # the served photo decision at it
    """
    from deepseek.manufacturing.calibration import calibrate, write_calibration
    from deepseek.manufacturing.score import describe_expectation
    from deepseek.paths import ready_to_write

    ready_to_write(out, "--out", "line.calibration.json")  # before the scoring
    cal = calibrate(folder, model, target_fpr=target_fpr, all_good=all_good,
                    group_pattern=group_pattern, progress=False if as_json else None)
    write_calibration(cal, out)
    if as_json:
        click.echo(json.dumps(cal, indent=2))
        return
    for w in cal["warnings"]:
        click.echo(f"warning: {w}", err=True)
    click.echo(f"threshold {cal['threshold']:.6g}: {cal['rule']}")
    click.echo(describe_expectation(cal["expected"], "this threshold"))
    _echo_review(cal.get("review"), "", "calibrate again")
    click.echo(f"wrote {out}")
    if str(model).endswith(".safetensors"):  # a served photo decision decides at its own
        click.echo(f"for the served photo decision: deepseek manufacturing export {model} "
                   f"--calibration {out}")


def _regex(pattern: str | None) -> str | None:
    """``--group-pattern``, checked before any image is read."""
    if pattern is not None:
        from deepseek.manufacturing.errors import ManufacturingError
        from deepseek.manufacturing.labelled import group_pattern_regex

        try:
            group_pattern_regex(pattern)
        except ManufacturingError as exc:
            raise click.BadParameter(str(exc)) from exc
    return pattern


def _echo_review(review: dict[str, Any] | None, where: str, again: str = "fit again") -> None:
    """The images whose labels decide the threshold (:func:`~deepseek.manufacturing.metrics.
    threshold_review`), for a person to look at; ``again`` is what to do after a fix."""
    if not review:
        return
    if review["good_highest"]:
        boxed = any("spot" in e for e in review["good_highest"])
        click.echo(f"labels to check: the good images scored highest{where} (a defect among "
                   "them that its label misses raises the threshold for every part; fix the "
                   f"label and {again})" + ("; 'look at' boxes the spot in each that scored "
                                            "highest, in its pixels" if boxed else ""))
        if any("written_model_score" in e for e in review["good_highest"]):
            click.echo("  ('trained on': the score of the model written, which trained on the "
                       "image as good; one that stays near its score out of fold, or still "
                       "flagged, is one the model could not learn as good: the likeliest "
                       "label to be wrong)")
        for e in review["good_highest"]:
            spot = e.get("spot")
            look = (f"  look at x {spot[0]}-{spot[2]}, y {spot[1]}-{spot[3]}" if spot else "")
            still = ""
            if "written_model_score" in e:
                still = (f"  trained on: {e['written_model_score']:.4g}"
                         + (", still flagged" if e.get("still_flagged") else ""))
            click.echo(f"  {e['score']:<8.4g}  {'flagged' if e['flagged'] else 'ok     '}  "
                       f"{e['path']}{look}{still}")
    if review["defects_missed"]:
        click.echo(f"defect images under the threshold{where}, lowest first (a good part "
                   "labelled as a defect among them lowers the recall measured)")
        for e in review["defects_missed"]:
            click.echo(f"  {e['score']:<8.4g}  {e['path']}")


def _good_only_review(model: Any) -> dict[str, Any] | None:
    """The threshold review of a good-parts model just fitted (a memory or a DRAEM model):
    its good images scored highest out of fold, each with the spot to look at."""
    from deepseek.manufacturing.metrics import threshold_review

    oof = model.out_of_fold
    if not oof:
        return None
    review = threshold_review(list(oof), list(oof.values()), [False] * len(oof),
                              model.threshold)
    for e in review["good_highest"]:
        if e["path"] in model.out_of_fold_spots:
            e["spot"] = model.out_of_fold_spots[e["path"]]
    return review


def _echo_good_only(meta: dict[str, Any], path: Path, as_json: bool, what: str,
                    review: dict[str, Any] | None = None, photo: Path | None = None) -> None:
    """What a good-parts model fitted (a memory or a DRAEM model): JSON, or its line, the
    grouping's warnings, the threshold and what it expects there, the good images that set
    it (``review``, when the model kept their out-of-fold scores), and how to score (and
    serve: ``photo``, its photo decision)."""
    if as_json:
        click.echo(json.dumps({"model": str(path), **meta,
                               **({"threshold_review": review} if review else {}),
                               **({"photo_onnx": str(photo)} if photo else {})}, indent=2))
        return
    click.echo(what)
    for why in ("regrouped", "skipped"):
        if why in meta:
            click.echo(f"warning: {meta[why]}", err=True)
    click.echo(f"threshold {meta['threshold']:.4g}: {meta['threshold_rule']}")
    from deepseek.manufacturing.score import describe_expectation

    click.echo(describe_expectation(meta["expected"], "it, out of fold"))
    _echo_review(review, ", out of fold")
    click.echo(f"score with: deepseek manufacturing score PATH --model {path}")
    if photo is not None:
        click.echo(f"serve with: deepseek serve {photo} (a photo in, its anomaly score and "
                   "decision at this threshold out)")


@manufacturing.command("train")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder.")
@click.option("--folder", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Labelled part images: pixel masks (IMG_mask.png or "
              "masks/IMG.png), a COCO annotation file (_annotations.coco.json, "
              "annotations/instances_*.json), a run-length table (Severstal's train.csv: "
              "ImageId, EncodedPixels), Pascal VOC boxes (IMG.xml, Annotations/IMG.xml), "
              "labelme shapes (IMG.json), YOLO polygon/box labels (labels/.../IMG.txt) or "
              "good/ and defect/ folders; a photo saved twice (equal pixels) is used once "
              "(default: synthetic clips generated for the run).")
@click.option("--val-folder", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="--folder: your held-out labelled images; one model, the "
              "best epoch chosen by their image AUROC and the threshold set on them (default: "
              "cross-fitting over --folds folds of --folder).")
@click.option("--folds", type=click.IntRange(min=1), default=None,
              help="--folder without --val-folder: one model per fold of groups, each scoring "
              "the fold it did not see; the epoch and the threshold are set on those "
              "out-of-fold scores of every training image, and the fold models are averaged "
              "into the one written. 1: one model and a held-out split (--val-fraction). "
              "--good-only: the folds whose out-of-fold scores set the threshold (2 or "
              "more) [5; 3 with --method draem, whose written model keeps its fold models].")
@click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.2, show_default=True,
              help="--folder --folds 1: share of the groups held out.")
@click.option("--group-pattern", "--group-regex", "group_pattern", default=None,
              metavar="REGEX", callback=lambda _c, _p, v: _regex(v),
              help="--folder, --good-only: regular expression whose first group, searched in "
              "an image's path relative to the folder, names its group (default: its "
              "subfolder, else the file name up to the first '_'; look-alike photos of one "
              "part are joined whatever the rule).")
@click.option("--crop", type=int, default=None,
              help="--folder, --good-only --method pasted|draem: side of the training crops, "
              "a multiple of 16 [160; 128 with --method draem, which reads images at half "
              "their size]; images smaller than it are padded with their edge pixels, with "
              "a warning.")
@click.option("--crops-per-epoch", type=int, default=None,
              help="--folder: crops per epoch, half on defects [8 per image, at least 256].")
@click.option("--hard-negatives", type=click.FloatRange(0, 1), default=None,
              help="--folder: share of the negative crops from good images placed on their "
              "hottest spots as the packaged weights score them (specks and edges that look "
              "like cracks) instead of at random; 0, or --init scratch: all at random [0.5].")
@click.option("--views", type=click.Choice(["1", "4"]), default=None,
              help="--folder: the threshold set on scores of each image as it is (1) or also "
              "flipped three ways, the logits averaged (4: ranks parts better, scoring takes "
              "4x as long, and on KolektorSDD its stored threshold promised more recall than "
              "it gave); stored with the model, which `score` follows [1].")
@click.option("--scale", type=click.FloatRange(*SCALE_RANGE), default=None,
              help="--folder: scale every image (and mask) by this first. Below 1 (area-"
              "averaged) the network's 16-pixel cells see more of the part, for wide "
              "defects; above 1 (interpolated) a thin one spans more of a cell, for "
              "cracks a few pixels wide. Stored with the model, whose photos `score` scales "
              "the same way [1: as they are].")
@click.option("--bit-depth", type=click.IntRange(*BIT_DEPTHS), default=None,
              help="--folder or --good-only: the bits a 16-bit image's pixels hold (12 for "
              "a 12-bit camera's data in 16-bit words): read over that range instead of the "
              "full 16 bits, a pixel above it refused. Stored with the model, whose photos "
              "`score` and `calibrate` read the same way [16; 8-bit images as they are].")
@click.option("--rotate", type=click.Choice(["small", "any"]), default=None,
              help="--folder: how the training crops are turned. small: up to 10 degrees, "
              "the cracks keep the directions they have in the training images (the model "
              "finds cracks running those ways); any: a quarter turn half the time, then up "
              "to 45 degrees, so a crack is learnt in every direction whichever way the "
              "training images' cracks run (for parts or cameras that do not always lie the "
              "same way; it may set a higher threshold) [small].")
@click.option("--init", type=click.Choice(["packaged", "scratch"]), default=None,
              help="Start from the packaged weights or from scratch [packaged with --folder, "
              "scratch for synthetic training].")
@click.option("--stem", type=click.Choice(["patch", "fine"]), default=None,
              help="defect-3dcnn-lstm's first layers: patch, one 4x4 stride-4 convolution "
              "(the packaged weights'); fine, two 3x3 stride-2 convolutions with a "
              "nonlinearity at half resolution (faint hairlines stand out better from "
              "scratch; about a third slower to stream), which no packaged weights have: "
              "with --init scratch (synthetic training's default) [patch].")
@click.option("--clips", type=int, default=2400, show_default=True,
              help="Synthetic training clips.")
@click.option("--clip-frames", type=int, default=None,
              help="Frames per training clip [16 synthetic; 4 with --folder, the crop held "
              "still].")
@click.option("--clip-size", nargs=2, type=int, default=(160, 128), show_default=True,
              help="Clip W H (multiples of 16).")
@click.option("--crack-depth", nargs=2, type=float, default=None, metavar="LOW HIGH",
              help="Synthetic clips: how much a crack darkens the surface (fraction, drawn "
              "per crack; the faint end is what the line must still catch) [0.10 0.70]; "
              "--good-only --method pasted: the pasted cracks' darkening [0.35 0.70].")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="[5; 4 with --good-only --method pasted]")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="--good-only --method draem: training steps (batches) per fold model "
              "[1000].")
@click.option("--accum-steps", type=int, default=1, show_default=True)
@click.option("--lr", type=float, default=None,
              help="Peak learning rate [1e-3 from the packaged weights, 3e-3 from scratch; "
              "3e-4 for --method pasted, 1e-3 for --method draem].")
@click.option("--val-videos", type=int, default=2, show_default=True,
              help="Synthetic 640x480 videos scored after each epoch (0: none).")
@click.option("--amp", is_flag=True, help="Mixed precision.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run from OUT/checkpoints (cross-fitted: the "
                   "folds it finished are taken, the rest trained; the same images and "
                   "settings give the model one run gives).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--model", default="defect-3dcnn-lstm", show_default=True,
              help="Any registered model that takes uint8 clips [N, T, H, W] and returns frame "
                   "logits, maps and a state.")
@click.option("--good-only", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Good parts only, from the images of this folder (any "
              "its labels mark as defects are left out, and measure the recall): a "
              "patch-feature memory (no training; OUT/memory.safetensors); with --method "
              "pasted, the crack model fine-tuned on them with synthetic cracks pasted in "
              "(OUT/model.safetensors); with --method draem, a reconstructive and a "
              "discriminative network trained from scratch on them with synthetic defects "
              "pasted in (OUT/draem.safetensors); any of them for `score`.")
@click.option("--method", type=click.Choice(["memory", "pasted", "draem"]), default="memory",
              show_default=True,
              help="--good-only: the patch memory; a model trained on pasted cracks "
              "(cross-fitted over --folds; --epochs, --lr [3e-4], --crack-depth [0.35 0.70]); "
              "or DRAEM-style networks (one per fold; --steps, --lr, --batch-size, --crop).")
@click.option("--target-fpr", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.003, show_default=True,
              help="--good-only and --folder: false-positive rate the stored threshold is "
                   "set for, on held-out images.")
@click.option("--memory-selection", type=click.Choice(["uniform", "coreset"]),
              default="uniform", show_default=True,
              help="--good-only: how the memory's 10,000 patches are chosen: a uniform random "
              "sample, or a greedy k-centre coreset (keeps rare good patches; slower to fit).")
@click.option("--memory-top-fraction", type=click.FloatRange(0, 1), default=None,
              help="--good-only: an image's score is the mean of its highest patch distances, "
              "this fraction of its patches (at least one; 0: the largest alone) [0.002].")
@click.option("--crack-weight", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="--good-only memory: the share of the score taken by the backbone's own "
              "crack logit (the photo at 7/8 of its size, four views), standardised on the "
              "good images; 0: the memory alone [0.5].")
@click.option("--backbone", default="defect-3dcnn-lstm", show_default=True,
              help="--good-only: the model whose encoder gives the patch features (registry "
                   "name or weights file).")
@click.option("--json", "as_json", is_flag=True, help="Print the history as JSON.")
def train(out: Path, folder: Path | None, val_folder: Path | None, folds: int | None,
          val_fraction: float,
          group_pattern: str | None, crop: int | None, crops_per_epoch: int | None,
          hard_negatives: float | None, views: str | None, scale: float | None,
          bit_depth: int | None,
          rotate: str | None, init: str | None, stem: str | None, clips: int,
          clip_frames: int | None,
          clip_size: tuple[int, int], crack_depth: tuple[float, float] | None, epochs: int,
          batch_size: int, steps: int | None, accum_steps: int,
          lr: float | None,
          val_videos: int, amp: bool, resume: bool, seed: int, model: str,
          good_only: Path | None, method: str, target_fpr: float, memory_selection: str,
          memory_top_fraction: float | None, crack_weight: float | None, backbone: str,
          as_json: bool) -> None:
    """Train a crack model through the core Trainer (checkpoints, resume, best kept), or with
    --good-only learn from good parts alone (a patch memory, --method pasted or --method
    draem), the threshold set on out-of-fold good images."""
    from deepseek.paths import ready_folder

    # a place it cannot write fails now, not after the training (made when training starts)
    ready_folder(out, "--out", make=False)
    if not resume:  # a model trained before into OUT is replaced: said at the start
        held = [n for n in TRAINED_FILES if (out / n).is_file()]
        if held:
            click.echo(f"note: {out} already holds {', '.join(held)} from an earlier run; "
                       "this run replaces what it writes (give another --out to keep them)",
                       err=True)
    if folds is None:
        folds = 3 if good_only is not None and method == "draem" else 5
    if steps is not None and (good_only is None or method != "draem"):
        raise click.UsageError("--steps goes with --good-only --method draem")
    if stem is not None and (good_only is not None or model != "defect-3dcnn-lstm"):
        raise click.UsageError("--stem is a setting of defect-3dcnn-lstm trained with "
                               "--folder or on synthetic clips, not of --good-only or "
                               f"--model {model}")
    if stem == "fine" and (init == "packaged" or (init is None and folder is not None)):
        raise click.UsageError("--stem fine: the packaged weights have the patch stem, so "
                               "there is nothing to start from; add --init scratch")
    if good_only is not None:
        from deepseek.manufacturing.anomaly import CRACK_WEIGHT, TOP_FRACTION, fit_memory

        if method != "memory" and crack_weight is not None:
            raise click.UsageError(f"--crack-weight goes with the memory (--method memory), "
                                   f"not with --method {method}")
        if folder is not None:
            raise click.UsageError("give --folder (labelled images) or --good-only, not both")
        for flag, given in (("--hard-negatives", hard_negatives is not None),
                            ("--views", views is not None), ("--scale", scale is not None),
                            ("--rotate", rotate is not None)):
            if given:
                raise click.UsageError(f"{flag} goes with --folder (labelled images), not "
                                       "with --good-only")
        if folds < 2:
            raise click.UsageError("--good-only sets its threshold on out-of-fold scores: give "
                                   "--folds 2 or more")
        for flag, given in (("--val-folder", val_folder is not None), ("--resume", resume),
                            ("--init", init is not None)):
            if given:
                raise click.UsageError(f"{flag} does not go with --good-only (its threshold "
                                       "comes from out-of-fold good images; --method pasted "
                                       "always starts from the packaged weights)")
        if method == "pasted":
            from deepseek.manufacturing.training import PASTED_LR, train_good_only

            if memory_top_fraction is not None:
                raise click.UsageError("--memory-top-fraction goes with the memory (--method "
                                       "memory), not with --method pasted")

            res = train_good_only(out, good_only, epochs=epochs or 4, lr=lr or PASTED_LR,
                                  seed=seed, folds=folds, target_fpr=target_fpr,
                                  group_pattern=group_pattern, crop=crop or 160,
                                  crops_per_epoch=crops_per_epoch,
                                  frames=clip_frames or 4, batch_size=batch_size,
                                  accum_steps=accum_steps, amp=amp,
                                  progress=False if as_json else None, model=model,
                                  crack_depth=crack_depth, bit_depth=bit_depth)
            from deepseek.report import echo_training

            echo_training(res, as_json)
            if not as_json:  # (a regrouping or skipped joining was logged as a warning)
                click.echo(f"threshold {res['threshold']:.4g}: {res['threshold_rule']}")
                pr = res["pasted"]
                click.echo(f"pasted cracks found at it, out of fold: {pr['recall']:.3f} of "
                           f"{pr['images']} (a check on training, not the recall on real "
                           "defects, which good images cannot give)")
                _echo_review(res.get("threshold_review"), ", out of fold")
                click.echo(f"score with: deepseek manufacturing score PATH --model "
                           f"{res['model']}")
            return
        if crack_depth is not None:
            raise click.UsageError("--crack-depth goes with synthetic training or --good-only "
                                   f"--method pasted, not with --method {method}")
        if method == "draem":
            from deepseek.manufacturing.draem import CROP, LR, STEPS, fit_draem

            if memory_top_fraction is not None:
                raise click.UsageError("--memory-top-fraction goes with the memory (--method "
                                       "memory), not with --method draem")
            mem = fit_draem(good_only, target_fpr=target_fpr, folds=folds,
                            steps=steps or STEPS, batch=batch_size, crop=crop or CROP,
                            lr=lr or LR, seed=seed, group_pattern=group_pattern,
                            progress=False if as_json else None, bit_depth=bit_depth)
            path = mem.save(out / "draem.safetensors")
            from deepseek.extras import missing

            photo = None
            if not missing("onnx"):  # the photo decision to serve, and to score without
                from deepseek.manufacturing.draem import write_draem_onnx  # PyTorch

                photo = write_draem_onnx(path)
            _echo_good_only(mem.meta, path, as_json,
                            f"DRAEM model: {path} ({len(mem.nets)} fold models from "
                            f"{mem.meta['fit_images']} good images, "
                            f"{mem.meta['seconds']:.0f} s)", review=_good_only_review(mem),
                            photo=photo)
            return
        mem = fit_memory(good_only, backbone=backbone, target_fpr=target_fpr, seed=seed,
                         folds=folds, group_pattern=group_pattern,
                         selection=memory_selection,
                         top_fraction=(TOP_FRACTION if memory_top_fraction is None
                                       else memory_top_fraction),
                         crack_weight=CRACK_WEIGHT if crack_weight is None else crack_weight,
                         progress=False if as_json else None, bit_depth=bit_depth)
        path = mem.save(out / "memory.safetensors")
        from deepseek.extras import missing

        photo = None
        if not missing("onnx"):  # the photo decision to serve, as train --folder writes it
            from deepseek.manufacturing.anomaly import write_memory_onnx

            photo = write_memory_onnx(path)
        _echo_good_only(mem.meta, path, as_json,
                        f"memory: {path} ({mem.meta['bank']} patches from "
                        f"{mem.meta['fit_images']} good images"
                        + (f"; the crack model's logit counts {mem.crack['weight']:g} of the "
                           f"score" if mem.crack else "; the memory alone") + ")",
                        review=_good_only_review(mem), photo=photo)
        return
    from deepseek.manufacturing.training import train_model

    if method != "memory":
        raise click.UsageError("--method chooses how --good-only learns: give --good-only DIR")
    if memory_top_fraction is not None:
        raise click.UsageError("--memory-top-fraction goes with --good-only (the memory)")
    if crack_weight is not None:
        raise click.UsageError("--crack-weight goes with --good-only (the memory)")
    if folder is None and (val_folder is not None or crops_per_epoch is not None
                           or hard_negatives is not None or views is not None
                           or scale is not None or rotate is not None):
        raise click.UsageError("--val-folder, --crops-per-epoch, --hard-negatives, --views, "
                               "--scale and --rotate go with --folder")
    if folder is None and bit_depth is not None:
        raise click.UsageError("--bit-depth goes with --folder or --good-only (your images' "
                               "16-bit pixels); the synthetic clips are 8-bit")
    if folder is not None and crack_depth is not None:
        raise click.UsageError("--crack-depth shapes the synthetic clips: it does not go with "
                               "--folder (your images' cracks are what they are)")
    res = train_model(out, folder=folder, clips=clips, frames=clip_frames, width=clip_size[0],
                      height=clip_size[1], epochs=epochs or 5, batch_size=batch_size,
                      accum_steps=accum_steps, lr=lr, val_videos=val_videos, amp=amp,
                      resume=resume, seed=seed, model=model, val_folder=val_folder,
                      val_fraction=val_fraction, group_pattern=group_pattern, crop=crop or 160,
                      crops_per_epoch=crops_per_epoch, init=init, target_fpr=target_fpr,
                      folds=folds, **({"crack_depth": crack_depth} if crack_depth else {}),
                      **({"hard_negatives": hard_negatives} if hard_negatives is not None
                         else {}), **({"views": int(views)} if views is not None else {}),
                      **({"scale": scale} if scale is not None else {}),
                      **({"bit_depth": bit_depth} if bit_depth is not None else {}),
                      **({"rotate": rotate} if rotate is not None else {}),
                      **({"config": {"stem": stem}} if stem is not None else {}))
    from deepseek.report import echo_training

    echo_training(res, as_json)
    if res.get("defect_classes") and not as_json:
        from deepseek.manufacturing.training import describe_classes

        click.echo("defect classes in the labels, each trained as a defect: "
                   + describe_classes(res["defect_classes"]))
    if not as_json:
        from deepseek.manufacturing.training import direction_note, width_note

        for note in (direction_note(res), width_note(res)):
            if note:
                click.echo(note)
    if "threshold" in res and not as_json:
        click.echo(f"threshold {res['threshold']:.4g}: {res['threshold_rule']}")
        own = res.get("expected", {}).get("written_model_on_training_defects")
        if own and "recall_out_of_fold" in res["expected"]:
            click.echo(f"the model written (the fold models' average) catches {own['recall']:.3f}"
                       f" of the {own['defect_images']} training defects at it, less than "
                       "out of fold: that is the recall expected (`calibrate` with defect "
                       "images of the line sets a threshold for this model itself)")
        _echo_review(res.get("threshold_review"),
                     ", out of fold" if res.get("folds", 1) > 1 else " among those held out")
        click.echo(f"score with: deepseek manufacturing score PATH --model {res['model']}")
        if res.get("onnx"):
            from deepseek.manufacturing.runtime import photo_path_for

            click.echo(f"serve with: deepseek serve {photo_path_for(res['onnx'])} (a photo in, "
                       "its score and decision at this threshold out)")


@manufacturing.command("evaluate")
@click.option("--metric", type=click.Choice(["defect-events", "defect-frames"]),
              default=None, help="[by what --pred holds: events JSON lines, defect-events; "
              "a frame,score CSV, defect-frames]")
@click.option("--pred", "pred_path", type=click.Path(exists=True, path_type=Path),
              required=True, help="events JSONL (stream --events) or frame,score CSV "
              "(stream --scores).")
@click.option("--ref", "ref_path", type=click.Path(exists=True, path_type=Path), required=True,
              help="Ground-truth CSV (generate writes one beside each video).")
@click.option("--threshold", type=float, default=None,
              help="defect-frames: score at or above which a frame is flagged [0.5].")
@click.option("--min-width-mm", type=float, default=0.0, show_default=True,
              help="Only cracks at least this wide count.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def evaluate_cmd(metric: str | None, pred_path: Path, ref_path: Path,
                 threshold: float | None, min_width_mm: float, as_json: bool) -> None:
    """Score a stream's events or frame scores against a ground-truth CSV (the registered
    metrics, as `deepseek evaluate` computes them)."""
    from deepseek.evaluation import evaluate_files

    if metric is None:
        metric = _metric_of(pred_path)
    opts: dict[str, Any] = {"min_width_mm": min_width_mm}
    if threshold is not None:
        if metric != "defect-frames":
            raise click.BadParameter("applies to --metric defect-frames only",
                                     param_hint="--threshold")
        opts["threshold"] = threshold
    res = evaluate_files(metric, pred_path, ref_path, **opts)
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    for k, v in res.items():
        click.echo(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")


def _metric_of(pred: Path) -> str:
    """The metric a predictions file is for, by what it holds: JSON lines (``stream
    --events``) are events, a CSV whose header has ``frame`` and ``score`` (``stream
    --scores``, or as a spreadsheet saved it again: read as
    :func:`~deepseek.manufacturing.metrics.read_frame_scores` reads it) frame scores."""
    from deepseek.manufacturing.synthetic import spreadsheet_csv

    try:
        with pred.open(errors="replace", encoding="utf-8-sig", newline="") as fh:
            first = next((line.strip() for line in fh if line.strip()), "")
            fh.seek(0)
            header = set(spreadsheet_csv(fh)[0].fieldnames or [])
    except OSError as exc:
        raise click.BadParameter(f"{pred}: cannot read it ({exc.strerror})",
                                 param_hint="--pred") from None
    if first.startswith("{"):
        return "defect-events"
    if {"frame", "score"} <= header:
        return "defect-frames"
    raise click.BadParameter(f"{pred}: neither events (JSON lines, as stream --events writes) "
                             "nor frame scores (a CSV with the columns frame,score, as "
                             "stream --scores writes); give one of those, or --metric",
                             param_hint="--pred")


#: what a run of `train` writes into OUT (one of the models, its exports, its report)
TRAINED_FILES = ("model.safetensors", "memory.safetensors", "draem.safetensors",
                 "training.json")


@manufacturing.command("bench")
@click.argument("source", required=False)
@click.option("--frames", type=int, default=3000, show_default=True,
              help="Frames of the synthetic video written when SOURCE is not given.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "torch"]), default="auto",
              show_default=True)
@click.option("--realtime", is_flag=True, help="Pace the file at its fps (latency under load).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
def bench(source: str | None, frames: int, backend: str, realtime: bool, as_json: bool) -> None:
    """End-to-end fps and latency on a video file (default: a synthetic 640x480 video)."""
    import tempfile

    from deepseek.manufacturing.stream import DefectStream
    from deepseek.manufacturing.synthetic import SyntheticLine, write_video
    from deepseek.readers import open as open_source

    with tempfile.TemporaryDirectory(prefix="deepseek-bench-") as tmp:
        if source is None:  # the synthetic video goes with the folder once it is measured
            source = str(write_video(Path(tmp) / "bench.avi",
                                     SyntheticLine(seed=700_000, frames=frames))[0])
        src = open_source(source, kind="frames", realtime=realtime,
                          policy="drop-oldest" if realtime else "block")
        rep = DefectStream(src, backend=backend).run()
    if as_json:
        click.echo(json.dumps(rep.summary(), indent=2, default=str))
        return
    click.echo(f"{rep.frames} frames in {rep.seconds:.2f} s: {rep.fps:.1f} fps ({rep.backend}); "
               f"latency p50 {rep.latency_ms.get('p50', 0):.2f} ms, p99 "
               f"{rep.latency_ms.get('p99', 0):.2f} ms; dropped "
               f"{rep.source['frames_dropped']}")


@manufacturing.command("export")
@click.argument("weights", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the streaming step, a name ending in .stream.onnx "
                   "(default: WEIGHTS' stem + .stream.onnx beside it, where the stream and "
                   "score look for it); the still-photo graph and the photo decision go "
                   "beside it as <name>.still.onnx and <name>.photo.onnx. For a memory or a "
                   "DRAEM model: its photo decision, <name>.photo.onnx.")
@click.option("--calibration", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Decide in the photo decision at the threshold of this "
                                 "calibration file (from `calibrate` with these weights) "
                                 "instead of the one training stored.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def export(weights: Path, out: Path | None, calibration: Path | None, as_json: bool) -> None:
    """Export a defect-3dcnn-lstm WEIGHTS file (.safetensors) to ONNX: its streaming step
    (frame size free) and its still-photo form (each photo encoded once), which `stream` and
    `score` run in an edge install (no PyTorch), and its photo decision for `deepseek serve`
    (a gray photo of any size in; its crack probability, the decision at the stored
    threshold, the cell map, the threshold and the box score draws out, scaled and viewed as
    `score` does). A good-parts memory (train --good-only's memory.safetensors) gets its
    photo decision alone (the anomaly score, the decision, the patch distances, the
    threshold and the box), and so does a DRAEM model (draem.safetensors: its largest
    defect probability, the decision, the probability map, the threshold and the box),
    which an install without PyTorch then scores with too. Needs
    PyTorch and the ONNX tools here (deepseek-manufacturing[full]); `train` writes them
    itself when they are installed.

    \b
      deepseek manufacturing export run/model.safetensors
      # on the edge machine, with model.safetensors, model.stream.onnx and
      # model.still.onnx copied together:
      deepseek manufacturing stream cam:0 --model model.safetensors
      deepseek manufacturing score photos/ --model model.safetensors
      # served: a photo in, the decision out (REST and gRPC)
      deepseek serve run/model.photo.onnx
    """
    from deepseek.extras import require
    from deepseek.loader import onnx_metadata
    from deepseek.manufacturing.anomaly import is_memory_file
    from deepseek.manufacturing.model import write_stream_onnx
    from deepseek.manufacturing.runtime import PHOTO_META_KEY, photo_path_for, still_path_for

    require("onnx", "exporting to ONNX")
    threshold = threshold_from = None
    if calibration is not None:
        from deepseek.manufacturing.calibration import read_calibration

        threshold = float(read_calibration(calibration, str(weights))["threshold"])
        threshold_from = f"calibration {calibration.name}"
    from deepseek.manufacturing.draem import is_draem_file

    if is_memory_file(weights) or is_draem_file(weights):  # a good-parts model: its photo
        from deepseek.manufacturing.anomaly import write_memory_onnx  # decision alone
        from deepseek.manufacturing.draem import write_draem_onnx

        write = write_draem_onnx if is_draem_file(weights) else write_memory_onnx
        photo = write(weights, out, threshold=threshold, threshold_from=threshold_from)
        decides = json.loads(onnx_metadata(photo)[PHOTO_META_KEY])
        if as_json:
            click.echo(json.dumps({"photo_onnx": str(photo), "photo_decision": decides,
                                   "weights": str(weights)}))
            return
        what = "DRAEM model" if is_draem_file(weights) else "good-parts memory"
        click.echo(f"wrote {photo} ({photo.stat().st_size / 1e3:.0f} kB), the {what}'s "
                   f"photo decision: anomaly score at threshold "
                   f"{decides['threshold']:.6g} ({decides['threshold_from']}), map of "
                   f"{decides['map_stride']}-pixel patches; serve it with `deepseek serve "
                   f"{photo}` ({SERVED_TAKES})")
        return
    path = write_stream_onnx(weights, out, threshold=threshold, threshold_from=threshold_from)
    still, photo = still_path_for(path), photo_path_for(path)
    decides = json.loads(onnx_metadata(photo)[PHOTO_META_KEY])
    if as_json:
        click.echo(json.dumps({"onnx": str(path), "still_onnx": str(still),
                               "photo_onnx": str(photo), "photo_decision": decides,
                               "weights": str(weights)}))
        return
    kb = {p: f"{p.stat().st_size / 1e3:.0f} kB" for p in (path, still, photo)}
    click.echo(f"wrote {path} ({kb[path]}), {still} ({kb[still]}) and {photo} ({kb[photo]}); "
               "source sha256 and what training stored recorded in each")
    bits = (f"; it takes the camera's {decides['bit_depth']}-bit words as UINT16 (0-"
            f"{(1 << decides['bit_depth']) - 1}), each scaled to gray as `score` reads them"
            if decides.get("bit_depth") else "")
    click.echo(f"{photo.name} decides at threshold {decides['threshold']:.6g} "
               f"({decides['threshold_from']}), views {decides['views']}, scale "
               f"{decides['scale']:g}{bits}: serve it with `deepseek serve {photo}` "
               f"({SERVED_TAKES})")
    if decides["threshold_from"].startswith("none"):
        click.echo(f"warning: {weights} stores no threshold (not from train --folder): the "
                   "photo decision flags at 0.5; calibrate it on your parts (deepseek "
                   "manufacturing calibrate) and export with --calibration", err=True)
