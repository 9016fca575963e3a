"""Frame sources: files, folders, synthetic URIs, conversions, policies, reconnects, errors."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from deepseek.manufacturing.errors import FrameError, SourceError
from deepseek.manufacturing.sources import FrameSource, _Reader, fit_size, to_gray
from deepseek.readers import ReaderError
from deepseek.readers import open as open_source


def _write_video(path, n=20, size=(64, 48), colour=True):
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, size, isColor=colour)
    assert wr.isOpened()
    for i in range(n):
        img = np.full((size[1], size[0], 3) if colour else (size[1], size[0]), i * 10, np.uint8)
        wr.write(img)
    wr.release()
    return path


def test_video_file_every_frame_in_order(tmp_path):
    p = _write_video(tmp_path / "v.avi", n=20)
    with FrameSource.open(p) as src:
        assert src.policy == "block" and not src.live
        assert src.fps == pytest.approx(25.0)
        assert tuple(src.size) == (64, 48)
        frames = list(src)
    assert [f.index for f in frames] == list(range(20))
    assert all(f.image.dtype == np.uint8 and f.image.shape == (48, 64) for f in frames)
    # the grey level written into frame i survives encoding (gray conversion of BGR input)
    assert [int(round(float(f.image.mean()) / 10)) for f in frames] == list(range(20))
    assert src.stats.frames_read == 20 and src.stats.frames_dropped == 0


def test_decoding_on_one_thread_holds_opencvs_pool_while_grabbing(tmp_path):
    p = _write_video(tmp_path / "v.avi", n=12, size=(96, 64))
    before = cv2.getNumThreads()
    with FrameSource.open(p, decode_threads=0) as src:
        every = [f.image for f in src]
        assert cv2.getNumThreads() == before  # 0: OpenCV's pool left as it is
    assert src.describe()["decode_threads"] == 0
    a, b = FrameSource.open(p), FrameSource.open(p)
    assert a.describe()["decode_threads"] == 1
    with a:
        first = a.get(3)
        assert cv2.getNumThreads() == 1
        with b:  # two sources grabbing: the setting comes back when the last one closes
            assert cv2.getNumThreads() == 1
        assert cv2.getNumThreads() == 1
        rest = list(a)
    assert cv2.getNumThreads() == before
    a.close()  # closing again releases nothing twice
    assert cv2.getNumThreads() == before
    # the same pixels whichever threads decoded them
    assert len(first) + len(rest) == len(every) == 12
    assert all(np.array_equal(f.image, g) for f, g in zip(first + rest, every))
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(SourceError, match="decode_threads"):
            FrameSource.open(p, decode_threads=bad)


def test_image_folder_natural_order_sizes_and_bad_files(tmp_path):
    for i in (1, 2, 10):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((40, 60), i * 20, np.uint8))
    cv2.imwrite(str(tmp_path / "img3.png"), np.full((80, 60, 3), 60, np.uint8))  # other size
    (tmp_path / "img4.png").write_bytes(b"not a png")
    _, jpeg = cv2.imencode(".jpg", np.full((40, 60), 90, np.uint8))
    (tmp_path / "img5.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) - 40])  # cut short
    (tmp_path / "notes.txt").write_text("ignored")
    with FrameSource.open(tmp_path, fit="letterbox") as src:
        frames = list(src)
    assert [round(float(f.image.mean())) for f in frames] == [20, 40, 60, 200]
    assert all(f.image.shape == (40, 60) for f in frames)
    assert src.stats.frames_resized == 1
    assert src.stats.frames_rejected == 2          # img4.png and the cut img5.jpg, counted
    assert [f.index for f in frames] == [0, 1, 2, 5]  # natural sort: 1, 2, 3, (4, 5), 10


def test_synthetic_uri_options():
    with FrameSource.open("synthetic:?seed=3&frames=5&width=96&height=64&speed_px=2") as src:
        frames = list(src)
    assert len(frames) == 5 and frames[0].image.shape == (64, 96)
    assert src.fps == 300.0
    with pytest.raises(SourceError, match="unknown option"):
        FrameSource.open("synthetic:?sed=3")


def test_missing_empty_unreadable_and_absent_camera(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        FrameSource.open(tmp_path / "nope.avi")
    (tmp_path / "empty.avi").write_bytes(b"")
    with pytest.raises(SourceError, match="empty"):
        FrameSource.open(tmp_path / "empty.avi")
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceError, match="cannot open"):
        FrameSource.open(tmp_path / "junk.mp4")
    with pytest.raises(SourceError, match="no camera"):
        FrameSource.open("cam:57")
    with pytest.raises(SourceError, match="cam:N"):
        FrameSource.open("cam:front")
    with pytest.raises(ReaderError, match="folder is empty"):
        FrameSource.open(tmp_path.joinpath("emptydir").mkdir() or tmp_path / "emptydir")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    with pytest.raises(ReaderError, match="holds 1 files, none in a format"):
        FrameSource.open(tmp_path / "notes")
    with pytest.raises(SourceError, match="no images"):  # the reader itself, asked by name
        open_source(tmp_path / "notes", reader="image-folder")
    with pytest.raises(SourceError, match="policy"):
        FrameSource.open(_write_video(tmp_path / "v.avi"), policy="newest")


def test_to_gray_conversions():
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 2] = 255  # red
    assert to_gray(bgr)[0, 0] == cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[0, 0] > 0
    assert to_gray(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5)
    assert to_gray(np.full((4, 5), 65535, np.uint16))[0, 0] == 255
    assert to_gray(np.full((4, 5), 4095, np.uint16), bit_depth=12)[0, 0] == 255
    with pytest.raises(FrameError, match="16-bit pixels reach 4096, over the 12-bit range"):
        to_gray(np.full((4, 5), 4096, np.uint16), bit_depth=12)  # never saturated to white
    assert to_gray(np.full((4, 5), 0.5, np.float32))[0, 0] == 128
    assert to_gray(np.full((4, 5), 150.0, np.float64))[0, 0] == 150  # 0..255 as it is
    # float pixels with no known gray levels are refused, never clipped into 0..255
    wide, nan = np.full((4, 5), 100.0, np.float32), np.zeros((4, 5), np.float32)
    wide[0, 0], nan[1, 1] = 4000.0, np.nan
    for bad, msg in [(np.zeros((0, 0), np.uint8), "empty"), (None, "empty"),
                     (np.zeros((4, 5, 2), np.uint8), "channels"),
                     (np.zeros((4, 5), np.int64), "pixel type"),
                     (wide, "span 100 to 4000, outside both 0..1 and 0..255"),
                     (-wide, "span -4000 to -100"), (nan, "NaN or infinity")]:
        with pytest.raises(FrameError, match=msg):
            to_gray(bad)


def test_fit_size_letterbox_keeps_aspect():
    img = np.zeros((20, 40), np.uint8)
    img[:, 20:] = 200
    out = fit_size(img, (40, 40), "letterbox")
    assert out.shape == (40, 40)
    assert out[20, 5] == 0 and out[20, 35] == 200  # content centred, not stretched


class _Scripted(_Reader):
    """A fake live camera: frames from a list; None means the connection dropped."""

    def __init__(self, items, reopen_ok=True, live=True):
        self.items, self.reopen_ok, self.live = list(items), reopen_ok, live
        self.fps, self.size, self.reopens = 100.0, None, 0
        self.exhausted = threading.Event()

    def read(self):
        if not self.items:
            self.exhausted.set()
            return None
        return self.items.pop(0)

    def reopen(self):
        self.reopens += 1
        return self.reopen_ok and bool(self.items)


def _img(v, shape=(32, 48)):
    return np.full(shape, v, np.uint8)


class _Hanging(_Scripted):
    """A fake live camera whose read hangs once its frames are delivered (a stuck pipeline
    or driver), until ``release`` is set; then the connection drops."""

    def __init__(self, items):
        super().__init__(items, reopen_ok=False)
        self.hanging, self.release = threading.Event(), threading.Event()

    def read(self):
        if self.items:
            return self.items.pop(0)
        self.hanging.set()
        assert self.release.wait(120)
        return None


def test_a_read_that_hangs_is_told_by_the_time_the_source_was_last_heard_from():
    """``stalled_s`` says how long the grabber has waited on the source (a read that hangs
    grows it without end); ``get`` calls ``on_wait`` while no frame is there, so that a
    service's watchdog is fed only while the source is heard from, and ends its wait when
    ``on_wait`` says so (a stop asked)."""
    camera = _Hanging([_img(1), _img(2)])
    src = FrameSource(camera, "fake://cam", reconnect_attempts=0)
    waits = []
    with src:
        got = src.get(2)
        got += src.get(2) if len(got) < 2 else []
        assert len(got) == 2 and camera.hanging.wait(60)
        assert src.get(1, timeout=0.3, on_wait=lambda: waits.append(src.stalled_s())) == []
        assert waits and src.stalled_s() >= 0.25  # waited 0.3 s on a read that hangs
        assert src.get(1, on_wait=lambda: True) == []  # a stop asked: the wait ends there
        camera.release.set()
        assert src.get(1) == []  # the connection dropped, not reopened: the end
    assert src.stalled_s() == 0.0 and src.stats.lost


def test_live_source_reconnects_then_stops_cleanly():
    items = [_img(1), _img(2), None, _img(3), _img(4)]
    src = FrameSource(_Scripted(items), "fake://cam", reconnect_backoff=0.01,
                      reconnect_attempts=2)
    with src:
        got = [int(f.image[0, 0]) for f in src]
    assert got == [1, 2, 3, 4]
    assert src.stats.reconnects >= 1
    assert any("reconnect attempts failed" in e for e in src.stats.errors)  # the final drop


def test_empty_frames_and_size_change_are_counted_or_raised():
    items = [_img(1), np.zeros((0, 0), np.uint8), _img(2, (64, 96)), _img(3)]
    src = FrameSource(_Scripted(items, live=False), "fake://file")
    with src:
        frames = list(src)
    assert [f.image.shape for f in frames] == [(32, 48)] * 3
    assert src.stats.frames_rejected == 1 and src.stats.frames_resized == 1
    src = FrameSource(_Scripted([_img(1), _img(2, (64, 96))], live=False), "fake://file",
                      on_size_change="error")
    with src, pytest.raises(FrameError, match="size changed to 96x64"):
        list(src)


def test_drop_oldest_drops_and_counts_block_loses_nothing():
    n = 60
    reader = _Scripted([_img(i) for i in range(n)], live=True)
    src = FrameSource(reader, "fake://cam", queue_size=4, reconnect_attempts=0)
    assert src.policy == "drop-oldest"
    with src:
        # the consumer starts only after the camera has sent everything: a queue of 4
        # can keep just the newest 4 frames
        assert reader.exhausted.wait(30), "the fake camera never finished"
        got = [f.index for f in src]
    assert got == list(range(n - 4, n))
    assert src.stats.frames_dropped == n - 4
    assert len(got) + src.stats.frames_dropped == n

    reader = _Scripted([_img(i) for i in range(n)], live=False)
    src = FrameSource(reader, "fake://file", queue_size=4)
    assert src.policy == "block"
    with src:
        got = [f.index for f in src]  # however slow the consumer, nothing is lost
    assert got == list(range(n)) and src.stats.frames_dropped == 0


class _FakeTime:
    """A clock for the grabber thread: sleep() advances it instead of waiting."""

    def __init__(self):
        self.now, self.slept = 1000.0, 0.0

    def perf_counter(self):
        return self.now

    monotonic = perf_counter

    def sleep(self, seconds):
        self.slept += max(0.0, seconds)
        self.now += max(0.0, seconds)


def test_realtime_file_is_paced_at_its_fps(tmp_path, monkeypatch):
    from deepseek.manufacturing import sources

    p = _write_video(tmp_path / "v.avi", n=10)
    clock = _FakeTime()
    monkeypatch.setattr(sources, "time", clock)
    with FrameSource.open(p, realtime=True, fps=100.0, policy="block") as src:
        frames = list(src)
    assert len(frames) == 10
    # ten frames at 100 fps: the grabber waits until each one is due, 90 ms in all
    assert clock.slept == pytest.approx(0.09, abs=1e-9)
    assert [round(f.t_capture - frames[0].t_capture, 9) for f in frames] == \
        [round(0.01 * i, 9) for i in range(10)]
    with FrameSource.open(p, realtime=True) as src:
        assert src.policy == "drop-oldest"  # played like a camera unless told otherwise

def test_live_source_lost_for_good_is_flagged_and_outage_counted():
    src = FrameSource(_Scripted([_img(1), _img(2)], reopen_ok=False), "fake://cam",
                      reconnect_backoff=0.0, reconnect_attempts=2)
    with src:
        assert [int(f.image[0, 0]) for f in src] == [1, 2]
    assert src.stats.lost and not src.stats.ended_early
    assert src.stats.reconnects == 2 and src.stats.outage_s >= 0.0
    assert src.stats.as_dict()["lost"] is True


def test_video_cut_short_against_its_declared_count(tmp_path):
    whole = _write_video(tmp_path / "whole.avi", n=25, colour=False)
    cut = tmp_path / "cut.avi"
    data = whole.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    for path, early in ((whole, False), (cut, True)):
        src = open_source(str(path), kind="frames")
        with src:
            n = len(list(src))
        assert src.stats.declared_frames == 25
        assert src.stats.ended_early is early and (n < 24) is early
        if early:
            assert any(f"ended after {n} of the 25 frames" in e for e in src.stats.errors)


def test_http_url_of_a_file_is_a_file_not_a_camera(monkeypatch):
    from deepseek.manufacturing import sources

    made = []

    class Stub(_Scripted):
        def __init__(self, target, live, api=0, threads=0, read_timeout_s=None):
            super().__init__([_img(1)], live=live)
            made.append((target, live))

    asked = []
    monkeypatch.setattr(sources, "_CaptureReader", Stub)
    # the server's answer decides for a URL with a video suffix: an MJPEG camera's
    # multipart body is live (the stub stands for http_is_live, tested below)
    monkeypatch.setattr(sources, "http_is_live",
                        lambda url: asked.append(url) or "camera" in url)
    for url, live in (("http://server/video.mjpg?fps=5", False),
                      ("https://server/clips/part_7.MP4", False),
                      ("http://camera.local/video.mjpg", True),
                      ("http://cam.local/stream", True), ("rtsp://cam/clip.mp4", True)):
        src = sources.open_stream(url)
        assert src.live is live and src.policy == ("drop-oldest" if live else "block")
    assert [m[1] for m in made] == [False, False, True, True, True]
    assert asked == ["http://server/video.mjpg?fps=5", "https://server/clips/part_7.MP4",
                     "http://camera.local/video.mjpg"]  # only URLs that look like files


def test_a_network_stream_that_stalls_is_reopened_after_its_read_timeout(monkeypatch):
    """A camera whose stream goes quiet with its connection open (a stalled network, a hung
    encoder) is taken as lost after ``read_timeout_s`` without a frame, and reopened, rather
    than after FFmpeg's own 30 s (9,000 frames of a 300 fps line); a camera that does not
    answer the reopening is reported lost. Checked on a real FFmpeg reading an MJPEG server
    that stalls."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from deepseek.manufacturing import sources

    jpeg = cv2.imencode(".jpg", np.full((64, 96), 120, np.uint8))[1].tobytes()
    stalled, asked = threading.Event(), []

    class Camera(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            asked.append(self.path)
            if len(asked) > 1:  # it does not answer the reopening
                self.send_response(503)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=f")
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b"--f\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 b"%d\r\n\r\n%s\r\n" % (len(jpeg), jpeg))
            self.wfile.flush()
            stalled.wait(120)  # then quiet, the connection open

    opened = []
    real = cv2.VideoCapture
    monkeypatch.setattr(cv2, "VideoCapture", lambda *a: opened.append(a) or real(*a))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Camera)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/stream"
        with sources.open_stream(url, read_timeout_s=0.5, reconnect_attempts=1,
                                 reconnect_backoff=0.01, policy="block") as src:
            frames = list(src)
    finally:
        stalled.set()
        server.shutdown()
        server.server_close()
    assert len(frames) == 20
    assert src.stats.reconnects == 1 and src.stats.lost
    params = opened[0][2]
    timeouts = dict(zip(params[::2], params[1::2]))
    assert timeouts[cv2.CAP_PROP_READ_TIMEOUT_MSEC] == 500
    assert timeouts[cv2.CAP_PROP_OPEN_TIMEOUT_MSEC] == 10_000
    with pytest.raises(SourceError, match="read_timeout_s=0: the seconds without a frame"):
        sources.open_stream(url, read_timeout_s=0)


def test_an_mjpeg_camera_is_told_from_a_file_on_a_server_by_its_answer():
    """An MJPEG camera (mjpg-streamer, an IP camera) serves /video.mjpg as an endless
    multipart body: live, so that a dropped connection is reconnected and, if it does not
    come back, reported (before, read as a file: a drop ended the stream with exit 0). A
    video file on a server, and a server that cannot be reached, are not live."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from deepseek.manufacturing.sources import http_is_live

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path.startswith("/private/") and \
                    self.headers.get("Authorization") != "Basic dXNlcjpwQHNz":  # user:p@ss
                self.send_response(401)
                self.end_headers()
                return
            self.send_response(200)
            if self.path.endswith(".mjpg"):
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=f")
                self.end_headers()
                self.wfile.write(b"--f\r\nContent-Type: image/jpeg\r\n\r\n")
            else:
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"\0\0\0\0")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert http_is_live(f"{base}/video.mjpg")
        assert not http_is_live(f"{base}/clips/part.mp4")
        # a camera behind a password, given in the URL as FFmpeg takes it
        port = server.server_address[1]
        assert http_is_live(f"http://user:p%40ss@127.0.0.1:{port}/private/video.mjpg")
        assert not http_is_live(f"http://user:wrong@127.0.0.1:{port}/private/video.mjpg")
    finally:
        server.shutdown()
        server.server_close()
    assert not http_is_live(f"{base}/video.mjpg", timeout_s=2)  # nothing listens now
