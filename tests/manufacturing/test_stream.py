"""DefectStream: decisions, debounce, events, timings, with scripted and real models."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deepseek.manufacturing.errors import ManufacturingError
from deepseek.manufacturing.model import DefectNet
from deepseek.manufacturing.sources import FrameSource
from deepseek.manufacturing.stream import DefectStream, box_from_map, estimate_width_px, pad16


class _Scripted:
    """A stand-in model step returning scripted probabilities, one per frame, in order."""

    name = "scripted"

    def __init__(self, probs):
        self.probs, self.i = list(probs), 0

    def reset(self):  # called after the warm-up step
        self.i = 0

    def __call__(self, frames):
        p = np.array(self.probs[self.i:self.i + len(frames)], np.float32)
        self.i += len(frames)
        maps = np.full((len(frames), frames.shape[1] // 16, frames.shape[2] // 16), -5.0)
        maps[:, 1, 2] = 5.0  # the crack sits in cell (row 1, column 2)
        return p, maps


def _stream(probs, **kw):
    n = len(probs)
    src = FrameSource.open(f"synthetic:?seed=1&frames={n}&width=96&height=64")
    ds = DefectStream(src, DefectNet(), **kw)
    ds.step = _Scripted(probs)
    return ds


def test_debounce_k_of_n_events_and_json_lines():
    probs = [0.1, 0.9, 0.1, 0.1, 0.1,   # a single flagged frame: no event with 2 of 3
             0.9, 0.8, 0.2, 0.9, 0.1,   # event starts at frame 6 (2 of the last 3)
             0.1, 0.1, 0.1, 0.1, 0.7,   # clears at frame 11 (3 unflagged in a row)
             0.9]                       # starts again at 15; open at the end
    seen = []
    buf = io.StringIO()
    rep = _stream(probs, debounce=(2, 3), max_batch=4, on_event=seen.append, events=buf).run()
    assert rep.frames == 16 and rep.frame_index.tolist() == list(range(16))
    assert rep.flags.tolist() == [p >= 0.5 for p in probs]
    assert [(e.frame, e.end_frame) for e in rep.events] == [(6, 11), (15, 15)]
    assert [e.frame for e in seen] == [6, 15]
    assert rep.events[0].peak_score == pytest.approx(0.9)
    assert rep.events[0].box == (32, 16, 47, 31)  # the map's hot cell, in pixels
    lines = [json.loads(v) for v in buf.getvalue().splitlines()]
    assert [(r["event"], r["frame"]) for r in lines] == [("defect", 6), ("clear", 11),
                                                       ("defect", 15), ("clear", 15)]
    assert set(rep.stage_ms_per_frame) == {"wait", "preprocess", "model", "decide"}
    assert len(rep.latencies_s) == 16 and rep.latency_ms["p99"] >= rep.latency_ms["p50"] > 0


def test_a_stop_ends_the_run_after_the_step_in_hand_or_while_it_waits_for_frames():
    """``run(stop=...)``: a stop (a service manager's, set by a signal handler) ends the run
    as the source's end would: between two steps, the event under way ended at the last
    frame decided; and while no frame comes (a live camera whose read hangs) within one of
    the source's 0.1 s waits, not when the next frame comes. The report says ``stopped``."""
    from deepseek.service import SignalEvent
    from tests.manufacturing.test_sources import _Hanging

    stop = SignalEvent()
    probs = [0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
    buf = io.StringIO()
    ds = _stream(probs, debounce=(1, 1), max_batch=2, events=buf,
                 on_event=lambda ev: stop.set())  # asked as the event starts (frame 1)
    rep = ds.run(stop=stop)
    assert rep.stopped and rep.summary()["stopped"] and rep.frames == 2  # its step's
    lines = [json.loads(v) for v in buf.getvalue().splitlines()]
    assert [(r["event"], r["frame"]) for r in lines] == [("defect", 1), ("clear", 1)]
    assert not _stream([0.1, 0.1]).run(stop=SignalEvent()).stopped  # the source's end
    stop.close()

    camera = _Hanging([np.full((64, 96), 150, np.uint8)])
    waits: list[int] = []
    stop = SignalEvent()

    def on_wait():  # the read hangs after one frame: the stop comes while the run waits
        waits.append(1)
        if camera.hanging.is_set():  # (the frame is queued by then)
            stop.set()
            camera.release.set()  # (so that closing the source does not wait on its read)

    ds = DefectStream(FrameSource(camera, "fake://cam", reconnect_attempts=0), DefectNet(),
                      on_wait=on_wait)
    ds.step = _Scripted([0.1])
    try:
        rep = ds.run(stop=stop)
    finally:
        camera.release.set()  # the grabber's read lets go (the connection drops)
    assert rep.stopped and rep.frames == 1  # (get's wait ends on it: test_sources)
    stop.close()


def test_each_event_names_the_model_file_that_decided_it(tmp_path):
    """An events file appended to across runs (a service restarted with retrained weights)
    says which weights decided each event: the SHA-256 of the model file, in each event and
    in the run's summary; a model given as a module in memory has none."""
    from deepseek.loader import ModelLoader, save_model
    from deepseek.loader.base import file_sha256

    m = ModelLoader.load("defect-3dcnn-lstm", device="cpu")
    weights = save_model(m.module, tmp_path / "model.safetensors",
                         architecture="defect-3dcnn-lstm", config=m.config)
    src = FrameSource.open("synthetic:?seed=1&frames=8&width=96&height=64")
    out = io.StringIO()
    ds = DefectStream(src, str(weights), debounce=(1, 1), events=out)
    ds.step = _Scripted([0.1, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1])
    rep = ds.run()
    recs = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [r["event"] for r in recs] == ["defect", "clear"]
    assert {r["model_sha256"] for r in recs} == {file_sha256(weights)}
    assert rep.summary()["model_sha256"] == file_sha256(weights)
    assert _stream([0.1]).run().summary()["model_sha256"] is None


def _weights_file(path, **extra):
    """The packaged network written as a trained file (``extra``: what training stores)."""
    import os

    from deepseek.loader import ModelLoader, save_model

    m = ModelLoader.load("defect-3dcnn-lstm", device="cpu")
    tmp = path.with_name("new-" + path.name)
    save_model(m.module, tmp, architecture="defect-3dcnn-lstm", config=m.config,
               extra=extra or None)
    os.replace(tmp, path)  # as a training run replaces its weights
    return path


def _reloaded_after_two_steps(tmp_path, monkeypatch, before, after, then=None, **kw):
    """A stream of 24 synthetic frames whose model's steps score them ``before``, its weights
    retrained in place and loaded again after its second step (``load_again``) and their
    steps scoring ``after`` from there; ``then(ds)`` once that is done. Returns the report,
    the events' records, the two models' SHA-256 and the first frame the second decided."""
    import deepseek.manufacturing.stream as stream_module
    from deepseek.loader.base import file_sha256

    weights = _weights_file(tmp_path / "model.safetensors", threshold=0.5)
    first = file_sha256(weights)
    src = FrameSource.open("synthetic:?seed=1&frames=24&width=96&height=64")
    events = tmp_path / "events.jsonl"
    steps = iter([_Scripted(before), _Scripted(after)])
    monkeypatch.setattr(stream_module, "make_step", lambda *a, **k: next(steps))
    said: list = []

    def on_batch(rep, last):
        if rep.batches == 2:  # retrained meanwhile: loaded again while the stream runs
            _weights_file(weights, threshold=0.4)
            said.extend([ds.load_again(), rep.frames])  # (the frames the first decided)
            if then is not None:
                then(ds)

    ds = DefectStream(src, str(weights), events=events, on_batch=on_batch, **kw)
    rep = ds.run()
    recs = [json.loads(x) for x in events.read_text().splitlines()]
    second, f = said
    assert second not in (None, first) and 0 < f < 20
    return rep, recs, first, second, f


def test_a_model_loaded_again_decides_from_the_next_step_on(tmp_path, monkeypatch):
    """load_again (systemctl reload of the stream's service): the weights retrained in place
    are loaded while the stream runs on, and decide from its next step, with an events line
    naming that frame and their SHA-256; weights that do not fit (read over other bits) are
    refused and the stream goes on with the model it has. The events file still reads."""
    from deepseek.manufacturing.metrics import read_events

    def not_at_other_bits(ds):
        _weights_file(Path(ds._model), bit_depth=12)
        with pytest.raises(ManufacturingError, match="read over other bits"):
            ds.load_again()

    rep, recs, _, second, f = _reloaded_after_two_steps(
        tmp_path, monkeypatch, [0.1] * 24, [0.9] * 4 + [0.1] * 20, not_at_other_bits,
        debounce=(1, 1))
    assert [(r["event"], r["frame"], r["model_sha256"]) for r in recs] == \
        [("model", f, second), ("defect", f, second), ("clear", f + 4, second)]
    assert rep.summary()["model_sha256"] == second and rep.summary()["reloads"] == 1
    assert read_events(tmp_path / "events.jsonl") == [(f, f + 4)]  # the model's line: no event


def test_an_event_open_at_a_reload_ends_with_the_model_that_opened_it(tmp_path,
                                                                      monkeypatch):
    """A crack under the camera as the model is loaded again: the event the model before
    opened ends with the last frame it decided (its clear line before the model line), and
    the new model opens its own, so that each event names the one model that decided it;
    the new model's debounce counts its own frames."""
    from deepseek.manufacturing.metrics import read_events

    rep, recs, first, second, f = _reloaded_after_two_steps(
        tmp_path, monkeypatch, [0.9] * 24, [0.9] * 6 + [0.1] * 18, debounce=(2, 3),
        max_batch=4)
    assert [(r["event"], r["frame"], r["model_sha256"]) for r in recs] == \
        [("defect", 1, first), ("clear", f - 1, first), ("model", f, second),
         ("defect", f + 1, second), ("clear", f + 8, second)]
    assert [(e.frame, e.end_frame) for e in rep.events] == [(1, f - 1), (f + 1, f + 8)]
    assert read_events(tmp_path / "events.jsonl") == [(1, f - 1), (f + 1, f + 8)]


def test_a_full_disk_holds_the_streams_lines_back_and_does_not_stop_it(tmp_path,
                                                                      monkeypatch):
    """The disk of the events and scores fills while the stream runs: the stream decides on,
    its lines held back, and once there is room they are written, in order, the files as
    those of a run whose disk never filled; a disk still full when the stream ends is an
    error that counts the lines lost (a real full device: /dev/full)."""
    import os

    from click.testing import CliRunner

    from deepseek.cli import build_cli
    from deepseek.paths import AppendedLines
    from tests.shared import FillingDisk

    probs = [0.1, 0.9, 0.9, 0.1, 0.1, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1] * 2
    _stream(probs, debounce=(1, 1), max_batch=4, events=tmp_path / "whole.jsonl",
            scores=tmp_path / "whole.csv").run()
    disk = FillingDisk()
    monkeypatch.setattr(AppendedLines, "_write", staticmethod(disk))

    def on_batch(rep, last):
        disk.full = rep.batches in (1, 2, 3)  # full after the first step, room after the fourth

    rep = _stream(probs, debounce=(1, 1), max_batch=4, events=tmp_path / "ev.jsonl",
                  scores=tmp_path / "sc.csv", on_batch=on_batch).run()
    assert rep.frames == 24 and len(rep.events) == 4
    assert (tmp_path / "ev.jsonl").read_text() == (tmp_path / "whole.jsonl").read_text()
    assert (tmp_path / "sc.csv").read_text() == (tmp_path / "whole.csv").read_text()
    monkeypatch.undo()
    if os.path.exists("/dev/full"):
        res = CliRunner().invoke(build_cli(), [
            "manufacturing", "stream", "synthetic:?seed=5&frames=60&width=96&height=64",
            "--quiet", "--debounce", "1", "1", "--threshold", "0.01", "--events",
            "/dev/full"])
        assert res.exit_code == 2 and "--events /dev/full: the disk had no room for the " \
            "last " in res.output and "lines when the stream ended; they are lost" in \
            res.output, res.output


def test_weights_replaced_while_they_are_loaded_are_loaded_again(monkeypatch):
    """The digest a result names is that of the bytes loaded: taken before and after, the
    model loaded again when they differ (a training run renamed its weights over them)."""
    import deepseek.manufacturing.stream as stream_module

    digests = iter(["old", "new", "new", "new"])
    monkeypatch.setattr(stream_module, "weights_sha256", lambda _m: next(digests))
    loads: list[int] = []
    got = stream_module.loaded_by_digest("m", lambda: loads.append(1) or len(loads))
    assert got == (2, "new")
    counter = iter(range(100))
    monkeypatch.setattr(stream_module, "weights_sha256", lambda _m: str(next(counter)))
    with pytest.raises(ManufacturingError, match="m: the file changed each time it was "):
        stream_module.loaded_by_digest("m", lambda: None)


def test_a_long_stream_keeps_its_last_frames_in_memory_and_every_score_on_disk(tmp_path):
    """A line that runs for days: the report keeps the records of the last ``keep_frames``
    frames (a live source: the last LIVE_KEEP_FRAMES; before, every frame's, growing without
    bound), while the events and every frame's score go to their files as they are decided
    (before, --scores was written from memory when the stream ended, so a crash lost it)."""
    from deepseek.manufacturing.stream import LIVE_KEEP_FRAMES

    probs = [0.9 if i % 7 in (0, 1) else 0.1 for i in range(23)]
    path = tmp_path / "scores.csv"
    rows_seen = []

    def on_batch(rep, last):  # the file holds every frame decided so far, mid-run
        rows_seen.append((rep.frames, len(path.read_text().splitlines()) - 1))

    full = _stream(probs, keep_frames=None, max_batch=4).run()
    rep = _stream(probs, keep_frames=5, max_batch=4, scores=path, on_batch=on_batch).run()
    assert rep.frames == 23 and rep.frame_index.tolist() == list(range(18, 23))
    assert len(rep.latencies_s) == len(rep.scores) == len(rep.flags) == 5
    assert rep.flagged_frames == int(full.flags.sum()) == sum(p >= 0.5 for p in probs)
    assert [(e.frame, e.end_frame) for e in rep.events] == \
        [(e.frame, e.end_frame) for e in full.events]
    summary = rep.summary()
    assert summary["frames"] == 23 and summary["frames_kept"] == 5
    assert "frames_kept" not in full.summary()
    lines = path.read_text().splitlines()
    assert lines[0] == "frame,score" and len(lines) == 24
    assert [float(v.split(",")[1]) for v in lines[1:]] == pytest.approx(full.scores.tolist())
    assert rows_seen and all(frames == rows for frames, rows in rows_seen)
    live = FrameSource.open("synthetic:?seed=1&frames=4&width=96&height=64")
    live.live = True  # as a camera or network stream is
    assert DefectStream(live, DefectNet()).keep_frames == LIVE_KEEP_FRAMES
    for bad in (0, -3, 2.5, True, "all"):
        with pytest.raises(ManufacturingError, match="keep_frames="):
            DefectStream(FrameSource.open("synthetic:?frames=4&width=96&height=64"),
                         DefectNet(), keep_frames=bad)


def test_large_frames_go_fewer_to_a_step(monkeypatch, caplog):
    """A step holds at most STEP_PIXELS pixels: frames so large that max_batch of them would
    pass it are asked of the source fewer at a time (one at the least), from the first
    step; small ones max_batch at a time, as before."""
    import logging

    from deepseek.manufacturing import stream

    def asked(n):  # how many frames each step asked the source for
        src = FrameSource.open(f"synthetic:?seed=1&frames={n}&width=96&height=64")
        wants, get = [], src.get
        src.get = lambda want, **kw: (wants.append(want), get(want, **kw))[1]
        ds = DefectStream(src, DefectNet(), max_batch=4)
        ds.step = _Scripted([0.1] * n)
        assert ds.run().frames == n
        return set(wants), ds

    assert asked(9)[0] == {4}
    monkeypatch.setattr(stream, "STEP_PIXELS", 2 * 96 * 64 + 1)  # room for two frames
    with caplog.at_level(logging.INFO, logger="deepseek.manufacturing.stream"):
        wants, ds = asked(9)
    assert wants == {2}
    assert "frames of 96 x 64: 2 per model step (not 4)" in caplog.text
    assert ds.frames_per_step(64, 96) == 2 and ds.frames_per_step(65, 96) == 1  # padded: 80
    monkeypatch.setattr(stream, "STEP_PIXELS", 10)  # smaller than one frame: one at a time
    assert ds.frames_per_step(64, 96) == 1


def test_on_frame_gets_the_newest_frame_of_each_step_with_its_box():
    shown = []
    ds = _stream([0.1, 0.9, 0.2, 0.8], max_batch=2,
                 on_frame=lambda f, p, box: shown.append((f.index, round(p, 1), box)))
    ds.run()
    assert shown and shown[-1][0] == 3  # the last step ends with the last frame
    assert all((box is None) == (p < 0.5) for _, p, box in shown)
    assert any(box == (32, 16, 47, 31) for _, _, box in shown)


def test_one_of_one_debounce_fires_on_every_onset():
    rep = _stream([0.9, 0.1, 0.9, 0.9], debounce=(1, 1)).run()
    assert [(e.frame, e.end_frame) for e in rep.events] == [(0, 1), (2, 3)]


def test_bad_options():
    src = "synthetic:?frames=2&width=32&height=32"
    for kw, msg in [({"debounce": (3, 2)}, "k of n"), ({"threshold": 1.5}, "between 0 and 1"),
                    ({"max_batch": 0}, "max_batch"), ({"backend": "tensorrt"}, "backend")]:
        with pytest.raises(ManufacturingError, match=msg):
            DefectStream(src, DefectNet(), **kw)
    with pytest.raises(ManufacturingError, match="not a defect-3dcnn-lstm"):
        DefectStream(src, "tick-mlp")


def test_odd_frame_sizes_are_padded_and_max_frames_stops():
    torch.manual_seed(0)
    src = FrameSource.open("synthetic:?seed=2&frames=20&width=100&height=70")
    rep = DefectStream(src, DefectNet(), backend="torch").run(max_frames=7)
    assert rep.frames == 7 and rep.scores.shape == (7,)
    assert pad16(np.zeros((2, 70, 100), np.uint8)).shape == (2, 80, 112)


def test_box_and_width_estimate():
    prob = np.zeros((4, 5))
    prob[1, 2] = prob[2, 3] = 0.8
    assert box_from_map(prob, (64, 80)) == (32, 16, 63, 47)
    prob[1, 0] = 0.6  # one cell below the level between it and the peak: the same defect
    assert box_from_map(prob, (64, 80)) == (0, 16, 63, 47)
    row = np.zeros((3, 10))
    row[1, 0] = 0.9
    row[1, 3] = 0.6  # two cells apart (32 px at stride 16): joined
    assert box_from_map(row, (48, 160)) == (0, 16, 63, 31)
    row[1, 3], row[1, 4] = 0, 0.6  # three cells apart: a speck of its own
    assert box_from_map(row, (48, 160)) == (0, 16, 15, 31)
    big = np.zeros((40, 20))
    big[20:23, 5:12] = 0.9  # the defect
    big[2, 17] = big[37, 0] = 0.7  # specks far from it pass the level on their own
    assert box_from_map(big, (640, 320)) == (80, 320, 191, 367)
    assert box_from_map(big * 0.5, (640, 320)) == (80, 320, 95, 335)  # none at 0.5: the peak
    img = np.full((64, 80), 150, np.uint8)
    img[30:33, 10:70] = 60  # a 3-pixel-wide dark line
    w = estimate_width_px(img, (0, 20, 79, 40))
    assert w == pytest.approx(3.0, abs=0.6)
    assert estimate_width_px(np.full((64, 80), 150, np.uint8), (0, 0, 79, 63)) is None
    # an event reads the width from the crop it kept of its strongest frame, when it ends
    from deepseek.manufacturing.stream import DefectEvent, roi_around

    ev = DefectEvent(frame=0, time_s=0.0, score=0.9, box=(0, 0, 79, 63), width_mm=9.9)
    ev._peak_roi = roi_around(img, (0, 20, 79, 40))
    img[:] = 150  # the frame buffer may be reused: the crop is a copy
    ev.settle_width(0.1)
    assert ev.width_mm == round(0.1 * w, 3) and ev._peak_roi is None


def test_event_widths_are_in_pixels_unless_the_scale_is_known():
    """A camera's millimetres per pixel are not known unless given: its events give the
    crack width in pixels (``width_px``) and no made-up millimetres; given ``mm_per_px``
    (or from the synthetic line, which knows its scale) they give both."""
    from tests.manufacturing.test_sources import _Scripted as _Camera

    frame = np.full((64, 96), 150, np.uint8)
    frame[20:23, :] = 60  # a 3-pixel-wide dark line through the hot cell's box
    probs = [0.9] * 4 + [0.1] * 4

    def run(source, **kw):
        ds = DefectStream(source, DefectNet(), debounce=(1, 1), **kw)
        ds.step = _Scripted(probs)
        return ds.run().events

    def camera():
        return FrameSource(_Camera([frame.copy() for _ in probs], live=False), "fake://cam")

    (ev,) = run(camera())
    assert ev.width_px == pytest.approx(3.0, abs=0.6) and ev.width_mm is None
    (ev,) = run(camera(), mm_per_px=0.05)
    assert ev.width_mm == round(0.05 * ev.width_px, 3)
    with pytest.raises(ManufacturingError, match=r"mm_per_px=0.0: .* positive number"):
        DefectStream(camera(), DefectNet(), mm_per_px=0.0)
    # the synthetic line's own scale, unless its frames are resized to another size
    uri = f"synthetic:?seed=1&frames={len(probs)}&width=96&height=64&mm_per_px=0.2"
    assert FrameSource.open(uri).mm_per_px == 0.2
    assert FrameSource.open(uri, size=(48, 32)).mm_per_px is None
    assert DefectStream(FrameSource.open(uri), DefectNet()).mm_per_px == 0.2


@pytest.mark.parametrize(("width", "depth"), [(2, 0.35), (5, 0.7), (8, 0.35), (11, 0.7),
                                            (5, 0.15)])
def test_width_is_read_at_half_the_peak_darkening_of_a_blurred_line(width, depth):
    """A line blurred by the optics reads its drawn width, however wide or faint: the
    background filter must not take a wide crack for background (a 9-pixel median read an
    8-pixel line as 3.9)."""
    import cv2

    img = np.full((64, 120), 150.0, np.float32)
    img[30:30 + width, 10:110] = 150.0 * (1 - depth)
    img = cv2.GaussianBlur(img, (0, 0), 1.0) + np.random.default_rng(0).normal(0, 2, img.shape)
    w = estimate_width_px(np.clip(img, 0, 255).astype(np.uint8), (0, 20, 119, 45))
    assert w == pytest.approx(width, abs=max(0.6, 0.15 * width))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_packaged_model_finds_wide_cracks_and_stays_quiet_on_clean_surface(backend):
    """Quality smoke test on an unseen seed (the benchmark measures it properly)."""
    from deepseek.manufacturing.metrics import frame_metrics
    from deepseek.manufacturing.synthetic import SyntheticLine

    line = SyntheticLine(seed=700_900, frames=120, crack_width_mm=(0.3, 0.6),
                         crack_spacing_mm=25.0)
    truth = [line.truth(i) for i in range(len(line))]
    assert sum(r["defect"] for r in truth) > 20
    rep = DefectStream(FrameSource.open("synthetic:?seed=700900&frames=120&crack_width_mm=0.3,"
                                        "0.6&crack_spacing_mm=25.0"), backend=backend).run()
    m = frame_metrics((rep.frame_index, rep.scores), truth)
    assert m["recall"] >= 0.95  # every frame shows a crack here; the clean video follows
    quiet = SyntheticLine(seed=700_901, frames=60, crack_spacing_mm=float("inf"))
    rep = DefectStream(FrameSource.open("synthetic:?seed=700901&frames=60&crack_spacing_mm=inf"),
                       backend=backend).run()
    assert not rep.flags.any() and not rep.events and len(quiet) == 60


def test_the_batch_a_frame_is_stepped_in_does_not_change_its_score():
    """The recurrent state carries from one step to the next: a frame scores the same whether
    the stream stepped it alone or with others (the default batch is a speed choice only)."""
    uri = "synthetic:?seed=700902&frames=24&width=160&height=96&crack_spacing_mm=8"
    scores = [DefectStream(FrameSource.open(uri), max_batch=b).run().scores for b in (1, 4, 16)]
    assert len(scores[0]) == 24 and scores[0].max() > 0.5  # a crack is in view
    for s in scores[1:]:
        np.testing.assert_allclose(s, scores[0], atol=1e-5)


def test_a_stream_started_again_adds_to_its_files_and_a_live_event_says_when(tmp_path):
    """A stream run as a service: with append its events and scores go on after the last
    run's (the scores' header once; each run's events after a run line, and a file of
    several runs refused by evaluate); the files are written in append mode, so a rotation
    that copies and truncates them mid-run leaves no hole of zeros; a live source's events
    carry the UTC time their first frame was captured, a file's none."""
    import json
    import os
    from datetime import datetime, timedelta, timezone

    from tests.manufacturing.test_sources import _Scripted as _Camera

    probs = [0.1, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1]
    events, scores = tmp_path / "events.jsonl", tmp_path / "scores.csv"

    def run(live=True, append=False, on_batch=None):
        frames = [np.full((64, 96), 150, np.uint8) for _ in probs]
        camera = FrameSource(_Camera(frames, live=live), "fake://cam", reconnect_attempts=0)
        ds = DefectStream(camera, DefectNet(), debounce=(1, 1), max_batch=2, events=events,
                          scores=scores, append=append, on_batch=on_batch)
        ds.step = _Scripted(probs)
        ds.run()
        recs = [json.loads(x) for x in events.read_text().splitlines()]
        return [r for r in recs if r["event"] != "source_lost"]  # the fake camera's end

    before = datetime.now(timezone.utc)
    recs = run()
    assert [r["event"] for r in recs] == ["defect", "clear"]
    at = datetime.fromisoformat(recs[0]["at"])
    assert before - timedelta(seconds=1) <= at <= datetime.now(timezone.utc)
    again = run(append=True)  # the last run's events kept, this run's after a run line
    assert [r["event"] for r in again] == ["defect", "clear", "run", "defect", "clear"]
    assert again[2]["source"] == "fake://cam" and again[2]["model_sha256"] is None
    assert before - timedelta(seconds=1) <= datetime.fromisoformat(again[2]["at"])
    from deepseek.manufacturing.errors import TruthFileError
    from deepseek.manufacturing.metrics import read_events

    with pytest.raises(TruthFileError, match="line 4: a second run"):
        read_events(events)  # frames numbered from 0 again: no one truth file fits
    run(append=False)  # started afresh: one run
    assert read_events(events) == [(1, 4)]
    run(append=True)  # a service's first run: its run line first, then its events
    lines = events.read_text().splitlines()
    first = next(i for i, x in enumerate(lines) if json.loads(x)["event"] == "run")
    events.write_text("".join(x + "\n" for x in lines[first:]))  # the run before gone
    assert read_events(events) == [(1, 4)]
    rows = scores.read_text().splitlines()
    assert rows.count("frame,score") == 1 and len(rows) == 1 + 2 * len(probs)  # two runs
    from deepseek.manufacturing.metrics import read_frame_scores

    # the second run's frame 0 is refused where it comes, not read over the first run's
    with pytest.raises(TruthFileError, match=rf"line {2 + len(probs)}: frame 0 again "
                                             r"\(scored on line 2\).*several runs"):
        read_frame_scores(scores)
    assert "at" not in run(live=False)[0]  # started afresh; a file's frames have their time_s

    batches: list = []

    def rotated(rep, last):  # logrotate's copytruncate, as the stream writes
        batches.append(last)
        if len(batches) == 1:
            os.truncate(scores, 0)

    run(on_batch=rotated)
    raw = scores.read_bytes()
    lines = raw.decode().splitlines()  # the emptied CSV gets its header again
    assert b"\0" not in raw and lines[0] == "frame,score" and 0 < len(lines) - 1 < len(probs)
    assert all(int(f) >= 0 and float(p) >= 0 for f, p in (x.split(",") for x in lines[1:]))

    def moved(rep, last):  # logrotate's default: the files moved away, the stream told not
        if rep.batches == 1:
            os.rename(scores, tmp_path / "scores.csv.1")
            os.rename(events, tmp_path / "events.jsonl.1")

    run(on_batch=moved)  # (its events: the second half of the line in the new file)
    old, new = ((tmp_path / "scores.csv.1").read_text().splitlines(),
                scores.read_text().splitlines())
    assert old[0] == new[0] == "frame,score"  # each file with its header
    assert [int(x.split(",")[0]) for x in old[1:] + new[1:]] == list(range(len(probs)))
    moved_events = [json.loads(x)["event"] for x in
                    (tmp_path / "events.jsonl.1").read_text().splitlines()]
    assert moved_events == ["defect"] and json.loads(events.read_text().splitlines()[0])[
        "event"] == "clear"
