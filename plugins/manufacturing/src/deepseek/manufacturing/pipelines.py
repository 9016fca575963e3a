"""Pipelines of the manufacturing plugin for ``deepseek run`` and ``deepseek demo``."""

from __future__ import annotations

import math
from pathlib import Path

from deepseek.report import Headline, Measure, PipelineResult, Table

DEMO_SEED = 700_050  # in the benchmark range: never used for training or validation


def _truth_beside(video: Path) -> Path | None:
    for cand in (video.with_suffix(video.suffix + ".truth.csv"),
                 video.with_suffix(".truth.csv"), video.parent / "truth.csv"):
        if cand.is_file():
            return cand
    return None


def defect_stream(input: str | None = None, out_dir: Path = Path("."), quiet: bool = False,
                  seed: int = DEMO_SEED, frames: int = 900, realtime: bool = True
                  ) -> PipelineResult:
    """Stream a video (default: a fresh synthetic line video, seed outside training) through
    defect-3dcnn-lstm, score it against its ground truth when there is one, and report the
    metrics, a score timeline and sample frames."""
    from deepseek.evaluation import evaluate
    from deepseek.manufacturing.figures import sample_frames, timeline
    from deepseek.manufacturing.stream import DefectStream
    from deepseek.manufacturing.synthetic import SyntheticLine, read_truth, write_video
    from deepseek.readers import open as open_source

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    notes = []
    line: SyntheticLine | None = None
    if input is None:
        line = SyntheticLine(seed=seed, frames=frames, first_crack_mm=60.0)
        input, _ = write_video(out_dir / "line.avi", line, progress=False if quiet else None)
        d = line.describe()
        notes.append(f"input: a synthetic line video (seed {seed}, never used in training): "
                     f"{frames} frames of 640x480 at 300 fps, 0.1 mm/px, {d['surface']} "
                     f"surface moving {d['speed_px']} px/frame, {d['cracks']} cracks of "
                     "0.1-0.6 mm, scratches, stains and dust as distractors; MJPG .avi")
    source = str(input)
    video = Path(source)
    truth_path = _truth_beside(video) if video.is_file() else None
    truth = read_truth(truth_path) if truth_path else None
    threshold = 0.5
    # a file is played at its frame rate like a camera (drop-oldest), so the latency is the
    # one a line would see; benchmarks/defect_stream.py measures the unpaced throughput
    opts = {"realtime": realtime} if video.is_file() else {}
    # the synthetic video's scale is known (0.1 mm/px); a recording's is not: widths in px
    stream = DefectStream(open_source(source, kind="frames", **opts), threshold=threshold,
                          events=out_dir / "events.jsonl",
                          mm_per_px=line.config.mm_per_px if line is not None else None)
    rep = stream.run()
    s = rep.summary()
    metrics: dict[str, float] = {"frames": Measure(rep.frames, "frames scored"),
                                 "events": Measure(len(rep.events), "defect events")}
    timings: dict[str, float] = {
        "fps_sustained": Measure(rep.fps, "sustained rate", "frames/s"),
        "latency_p50_ms": Measure(rep.latency_ms.get("p50", math.nan),
                                  "frame-to-decision latency p50", "ms"),
        "latency_p99_ms": Measure(rep.latency_ms.get("p99", math.nan),
                                  "frame-to-decision latency p99", "ms"),
        "model_ms_per_frame": Measure(rep.stage_ms_per_frame.get("model", math.nan),
                                      "model time per frame", "ms"),
        "frames_dropped": Measure(rep.source.get("frames_dropped", 0),
                                  "frames dropped (camera pace)"),
    }
    quality = None
    tables = []
    if truth is not None:
        scored = (rep.frame_index, rep.scores)
        fm = evaluate("defect-frames", scored, truth, threshold=threshold)
        em = evaluate("defect-events", rep.events, truth)
        fm02 = evaluate("defect-frames", scored, truth, threshold=threshold, min_width_mm=0.2)
        metrics.update(
            frame_recall=Measure(fm["recall"], "frame recall, all cracks"),
            frame_recall_ge_0_2mm=Measure(fm02["recall"], "frame recall, cracks >= 0.2 mm"),
            false_detection_rate=Measure(fm["false_detection_rate"],
                                         "false detections per defect-free frame"),
            event_recall=Measure(em["event_recall"], "cracks found (event recall)"),
            false_alarms=Measure(em["false_alarms"], "false alarm events"))
        quality = Headline("frame recall, cracks >= 0.2 mm", fm02["recall"], target=0.99)
        tables.append(Table("Frame recall by crack width",
                            ["width mm", "defect frames", "recall"],
                            [[k, v["frames"], "-" if v["recall"] is None else
                              round(v["recall"], 4)] for k, v in
                             fm["recall_by_width_mm"].items()]))
        if realtime:
            notes.append("the video is played at its nominal fps like a camera (frames that "
                         "arrive while the model is busy are dropped and counted)")
        notes.append(f"{fm['defect_frames']} defect frames, {fm['clean_frames']} defect-free, "
                     f"{fm['partial_frames']} partial (a crack entering or leaving: not "
                     "scored); benchmarks/defect_stream.py scores several unseen videos")
    mm = stream.mm_per_px is not None
    tables.append(Table("Events (debounce 2 of 3 frames)",
                        ["start frame", "end frame", "score", "peak", "box",
                         "width mm" if mm else "width px"],
                        [[e.frame, e.end_frame, e.score, round(e.peak_score, 3),
                          str(e.box), e.width_mm if mm else e.width_px]
                         for e in rep.events[:30]]))
    tables.append(Table("Stages (ms per frame, stream thread)", list(s["stage_ms_per_frame"]),
                        [list(s["stage_ms_per_frame"].values())]))
    figs = [timeline(out_dir / "timeline.png", rep.frame_index, rep.scores, truth, threshold,
                     rep.events, fps=rep.source.get("fps"))]
    samples = []
    by_frame = {int(f): k for k, f in enumerate(rep.frame_index)}
    wanted = [(e.peak_frame if e.peak_frame is not None else e.frame, e)
              for e in rep.events[:5]]
    if truth is not None:
        missed = [r["frame"] for r in truth if r["defect"] and not r["partial"]
                  and r["frame"] in by_frame and not rep.flags[by_frame[r["frame"]]]]
        wanted += [(f, None) for f in missed[:1]]
    if wanted:
        src = open_source(source, kind="frames", policy="block")
        want = {f: e for f, e in wanted}
        with src:
            for fr in src:
                if fr.index in want:
                    e = want[fr.index]
                    k = by_frame.get(fr.index)
                    p = float(rep.scores[k]) if k is not None else math.nan
                    tbox = truth[fr.index]["box"] if truth and fr.index < len(truth) else None
                    label = (f"frame {fr.index} p={p:.2f}" + (" event" if e else " missed"))
                    samples.append((fr.image, label, (e.peak_box or e.box) if e else None,
                                    tbox))
                if fr.index >= max(want):
                    break
        figs.append(sample_frames(out_dir / "samples.png", samples))
    p99 = rep.latency_ms.get("p99", math.nan)
    return PipelineResult(pipeline="manufacturing.defect-stream",
                          title="Manufacturing: crack detection on a 300 fps stream",
                          metrics=metrics, timings=timings, quality=quality,
                          speed=Headline(f"latency p99 at {rep.fps:.0f} fps", p99, "ms",
                                         target=50.0, higher_is_better=False),
                          tables=tables, figures=figs, notes=notes, input=source,
                          media=[video] if video.is_file() else [])

