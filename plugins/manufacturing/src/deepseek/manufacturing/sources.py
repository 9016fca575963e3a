"""Frame sources: video files, cameras, network streams, GStreamer, image folders, synthetic.

Each backend is a registered reader of kind ``frames`` (``deepseek readers``), so
``deepseek.open(uri, kind="frames")`` -- and :meth:`FrameSource.open`, which is that call --
picks it by scheme, suffix or probe:

=========================  ==========================================================
``path/to/video.mp4``      a video file, whatever OpenCV's FFmpeg backend reads
``cam:0``, ``/dev/video0`` a camera (V4L2 / the platform's default backend)
``rtsp://``, ``http://``   a network stream (also ``https://``, ``rtmp://``, ``udp://``)
``... ! appsink``          a GStreamer pipeline string (needs OpenCV built with GStreamer)
``path/to/folder/``        the images in a folder, in natural sort order
``synthetic:?seed=3``      the synthetic line (any :class:`LineConfig` field as a query key)
=========================  ==========================================================

A grabber thread reads and converts frames (colour to gray, 16-bit to 8-bit, size changes) and
feeds a bounded queue with an explicit overflow policy: ``drop-oldest`` (the default for live
sources, so a slow consumer never falls behind the camera) or ``block`` (the default for files
and folders, so nothing is lost). Live sources that fail after opening reconnect with
exponential backoff. Every frame read, dropped, rejected, resized or lost to a reconnect is
counted in :attr:`FrameSource.stats`; nothing is dropped silently.

The grabber decodes on one thread by default (``decode_threads=1``): FFmpeg's decoder threads
for video files and network streams, and OpenCV's thread pool (process-wide: OpenCV has one)
while a source grabs. That is the stream's CPU plan (one core decodes, the model step has the
rest, :func:`~deepseek.manufacturing.stream.stream_threads`), and on a 640x480 MJPEG file it is
also the cheaper way: 1.1 ms of CPU per frame against 1.5 with the pools, most of the
difference OpenCV's pool waking for each frame's colour conversion. ``decode_threads=N``
sets both to N; ``0`` leaves them to FFmpeg and OpenCV (a large H.264 stream may need several
decoder threads).
"""

from __future__ import annotations

import collections
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.manufacturing.errors import FrameError, ManufacturingError, SourceError
from deepseek.manufacturing.images import (  # noqa: F401  (the names this module always had)
    IMAGE_SUFFIXES,
    LABEL_FOLDERS,
    LABEL_STEM_ENDINGS,
    imread,
    is_label_file,
    list_images,
    require_cv2,
    to_gray,
)

log = logging.getLogger(__name__)

POLICIES = ("drop-oldest", "block")


@dataclass
class Frame:
    """One frame: ``index`` counts every frame the source produced (dropped ones included),
    ``t_capture`` is ``time.perf_counter()`` when it was captured (or was due, for a file played
    in real time)."""

    index: int
    image: np.ndarray
    t_capture: float


@dataclass
class SourceStats:
    """Counters of a frame source: read, delivered, dropped, rejected and resized frames,
    reconnects, errors.
    """
    frames_read: int = 0
    frames_delivered: int = 0
    frames_dropped: int = 0
    frames_rejected: int = 0
    frames_resized: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)
    declared_frames: int | None = None  # a file's frame count from its container
    ended_early: bool = False           # a file ended before its declared frame count
    lost: bool = False                  # a live source went down and did not come back
    outage_s: float = 0.0               # time spent waiting for a live source to come back

    def as_dict(self) -> dict[str, Any]:
        """The counters as JSON-ready data."""
        return {"frames_read": self.frames_read, "frames_delivered": self.frames_delivered,
                "frames_dropped": self.frames_dropped, "frames_rejected": self.frames_rejected,
                "frames_resized": self.frames_resized, "reconnects": self.reconnects,
                "errors": list(self.errors), "declared_frames": self.declared_frames,
                "ended_early": self.ended_early, "lost": self.lost,
                "outage_s": round(self.outage_s, 3)}


def fit_size(img: np.ndarray, size: tuple[int, int], mode: str = "resize") -> np.ndarray:
    """``img`` at ``size = (width, height)``: stretched (``resize``) or scaled to fit and
    padded with its edge values (``letterbox``)."""
    w, h = size
    if img.shape[1] == w and img.shape[0] == h:
        return img
    cv2 = require_cv2("changing a frame's size")
    if mode == "resize":
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    if mode != "letterbox":
        raise SourceError(f"fit={mode!r}: use 'resize' or 'letterbox'")
    s = min(w / img.shape[1], h / img.shape[0])
    nw, nh = max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))
    small = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    top, left = (h - nh) // 2, (w - nw) // 2
    return cv2.copyMakeBorder(small, top, h - nh - top, left, w - nw - left,
                              cv2.BORDER_REPLICATE)


class _Reader:
    """Backend: ``read()`` returns an image, or None at the end of the stream."""

    live = False
    fps = 0.0
    size: tuple[int, int] | None = None
    mm_per_px: float | None = None  # the scale a source knows (the synthetic line's); else none

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def reopen(self) -> bool:
        return False

    def close(self) -> None:
        pass


#: seconds without word from a source (no frame, no failed read, no reconnect attempt: every
#: reader's own waits are shorter) after which its read is taken as hung
STALL_S = 30.0
#: seconds without a frame after which a live network stream is taken as lost and reopened
#: (FFmpeg's own wait is 30 s: 9,000 frames of a 300 fps line)
READ_TIMEOUT_S = 5.0


def _read_timeout(options: dict[str, Any]) -> float:
    """The ``read_timeout_s`` option (default :data:`READ_TIMEOUT_S`), checked."""
    t = options.get("read_timeout_s", READ_TIMEOUT_S)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0.1:
        raise SourceError(f"read_timeout_s={t!r}: the seconds without a frame after which a "
                          "network stream is reopened, at least 0.1")
    return float(t)


def _decode_threads(options: dict[str, Any]) -> int:
    """The ``decode_threads`` option (default 1), checked."""
    n = options.get("decode_threads", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise SourceError(f"decode_threads={n!r}: use a whole number >= 0 (1: decode on one "
                          "thread, the default; 0: FFmpeg's and OpenCV's own choice)")
    return n


_POOL_LOCK = threading.Lock()
_POOL: dict[str, Any] = {"holds": 0, "saved": None}  # OpenCV's pool held by grabbing sources


def _hold_opencv_pool(threads: int) -> bool:
    """Hold OpenCV's (process-wide) thread pool at ``threads`` while a source grabs; the
    first hold saves the setting the last release restores. False when nothing was held."""
    if threads == 0:
        return False
    from deepseek.manufacturing.images import have_cv2

    if not have_cv2():
        return False
    import cv2

    with _POOL_LOCK:
        if _POOL["holds"] == 0:
            _POOL["saved"] = cv2.getNumThreads()
        _POOL["holds"] += 1
        cv2.setNumThreads(threads)
    return True


def _release_opencv_pool() -> None:
    import cv2

    with _POOL_LOCK:
        _POOL["holds"] -= 1
        if _POOL["holds"] == 0:
            cv2.setNumThreads(_POOL["saved"])


class _CaptureReader(_Reader):
    def __init__(self, target: str | int, live: bool, api: int | None = None,
                 threads: int = 0, read_timeout_s: float | None = None) -> None:
        cv2 = require_cv2("reading video files, cameras and network streams")
        self.cv2 = cv2
        self.target, self.live = target, live
        self.api = cv2.CAP_ANY if api is None else api
        # FFmpeg's decoder threads (0: FFmpeg's choice); other backends take no such setting
        self.params = [cv2.CAP_PROP_N_THREADS, threads] \
            if threads and self.api == cv2.CAP_FFMPEG else []
        if read_timeout_s is not None and live and self.api == cv2.CAP_FFMPEG:
            # a stream that stalls (the camera or the network gone quiet, the connection
            # open) ends a read after this long, not FFmpeg's 30 s: it is reopened then
            ms = round(read_timeout_s * 1000)
            self.params += [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(ms, 10_000),
                            cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        self.cap = self._open()
        if self.cap is None:
            if isinstance(target, int):
                raise SourceError(f"cam:{target}: no camera at index {target} (is "
                                  f"/dev/video{target} present and free?)")
            raise SourceError(f"{target}: OpenCV cannot open this stream (wrong URL or "
                              "pipeline, server down, or no decoder for its codec)")
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if not live else 0
        self.declared = count if count > 0 else None
        w, h = (int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self.size = (w, h) if w > 0 and h > 0 else None

    def _open(self) -> Any:
        cap = self.cv2.VideoCapture(self.target, self.api, self.params)
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    def read(self) -> np.ndarray | None:
        ok, img = self.cap.read()
        return img if ok else None

    def reopen(self) -> bool:
        self.cap.release()
        cap = self._open()
        if cap is None:
            return False
        self.cap = cap
        return True

    def close(self) -> None:
        self.cap.release()


class _FolderReader(_Reader):
    def __init__(self, folder: Path, fps: float) -> None:
        self.files = list_images(folder)
        if not self.files:
            raise SourceError(f"{folder}: no images here (looked for "
                              f"{', '.join(sorted(IMAGE_SUFFIXES))}; masks and labels such "
                              "as *_mask.png are skipped)")
        self.fps, self.i = fps, 0
        try:
            first = imread(self.files[0])
        except ManufacturingError:
            first = None
        self.size = (first.shape[1], first.shape[0]) if first is not None else None

    def read(self) -> np.ndarray | None:
        if self.i >= len(self.files):
            return None
        p = self.files[self.i]
        self.i += 1
        try:
            return imread(p)
        except ManufacturingError as exc:
            raise FrameError(str(exc)) from exc


class _SyntheticReader(_Reader):
    def __init__(self, options: dict[str, Any]) -> None:
        from deepseek.manufacturing.synthetic import SyntheticLine, line_config_fields

        known = set(line_config_fields()) | {"seed"}
        bad = sorted(set(options) - known)
        if bad:
            raise SourceError(f"synthetic: unknown option(s) {', '.join(bad)}; known: "
                              f"{', '.join(sorted(known))}")
        self.line = SyntheticLine(**options)
        self.fps = self.line.config.fps
        self.mm_per_px = self.line.config.mm_per_px
        self.size = (self.line.config.width, self.line.config.height)
        self.i = 0

    def read(self) -> np.ndarray | None:
        if self.i >= len(self.line):
            return None
        self.i += 1
        return self.line.frame(self.i - 1)


class FrameSource:
    """A stream of grayscale :class:`Frame` objects from any supported URI.

    See the module docstring for the URIs. Use as an iterator, ideally inside ``with``::

        with FrameSource.open("line.avi") as src:
            for frame in src:
                ...
        print(src.stats.as_dict())
    """

    def __init__(self, reader: _Reader, uri: str, *, policy: str | None = None,
                 queue_size: int | None = None, size: tuple[int, int] | None = None,
                 fit: str = "resize", on_size_change: str = "resize", realtime: bool = False,
                 fps: float | None = None, bit_depth: int | None = None,
                 reconnect_attempts: int = 5, reconnect_backoff: float = 0.5,
                 decode_threads: int = 1, read_timeout_s: float = READ_TIMEOUT_S) -> None:
        policy = policy or ("drop-oldest" if reader.live or realtime else "block")
        if policy not in POLICIES:
            raise SourceError(f"policy={policy!r}: use one of {', '.join(POLICIES)}")
        if on_size_change not in ("resize", "error"):
            raise SourceError(f"on_size_change={on_size_change!r}: use 'resize' or 'error'")
        if queue_size is None:  # live: a short queue bounds the latency; files: read ahead
            queue_size = 16 if policy == "drop-oldest" else 64
        if queue_size < 1:
            raise SourceError("queue_size must be at least 1")
        self.uri, self.policy, self.queue_size = uri, policy, int(queue_size)
        self.decode_threads = _decode_threads({"decode_threads": decode_threads})
        #: the seconds without a frame after which a network stream is reopened, checked
        #: for every source (the reader :func:`open_stream` makes is given the same value;
        #: other sources have waits of their own)
        self.read_timeout_s = _read_timeout({"read_timeout_s": read_timeout_s})
        self._pool_held = False
        self.live, self.realtime = reader.live, bool(realtime)
        self.fps = float(fps or reader.fps or 30.0)
        self.size = size or reader.size
        # millimetres per pixel where the source knows them (the synthetic line); a camera's
        # are not known here, and frames resized to another size are at another scale
        self.mm_per_px: float | None = (
            reader.mm_per_px if size is None or reader.size is None
            or tuple(size) == tuple(reader.size) else None)
        self.fit, self.on_size_change, self.bit_depth = fit, on_size_change, bit_depth
        self.reconnect_attempts, self.reconnect_backoff = reconnect_attempts, reconnect_backoff
        self.stats = SourceStats(declared_frames=getattr(reader, "declared", None))
        self.error: BaseException | None = None
        self._reader = reader
        self._q: collections.deque[Frame] = collections.deque()
        self._cv = threading.Condition()
        self._done = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: when the grabber last heard from the source (a frame, a failed read, a reconnect
        #: attempt), on the monotonic clock: see :meth:`stalled_s`
        self.last_active = time.monotonic()

    @classmethod
    def open(cls, uri: str | int | Path, **options: Any) -> FrameSource:
        """Open ``uri`` through the reader registry (see the module docstring); the same as
        ``deepseek.open(uri, kind="frames", **options)``. Options: ``policy``
        (``drop-oldest`` or ``block``), ``queue_size`` (default 16 frames for drop-oldest,
        64 for block), ``size=(w, h)`` with ``fit`` (``resize`` or ``letterbox``),
        ``on_size_change`` (``resize`` or ``error``), ``realtime`` (play a file at its fps,
        like a camera), ``fps`` (override or set the nominal rate), ``bit_depth`` (for 16-bit
        frames), ``reconnect_attempts``, ``reconnect_backoff`` (seconds, doubled per try),
        ``decode_threads`` (default 1; 0: FFmpeg's and OpenCV's own choice; see the module
        docstring), ``read_timeout_s`` (a network stream: the seconds without a frame after
        which it is taken as lost and reopened; default 5)."""
        from deepseek.readers import open as open_source

        if isinstance(uri, int):
            uri = f"cam:{uri}"
        return open_source(str(uri), kind="frames", **options)

    # ------------------------------------------------------------------ grabber
    def start(self) -> FrameSource:
        """Start the grabbing thread of a live source (once); returns the source."""
        if self._thread is None:
            self.last_active = time.monotonic()
            self._pool_held = _hold_opencv_pool(self.decode_threads)
            self._thread = threading.Thread(target=self._grab, name="frame-grabber",
                                            daemon=True)
            self._thread.start()
        return self

    def _put(self, frame: Frame) -> None:
        with self._cv:
            if self.policy == "block":
                while len(self._q) >= self.queue_size and not self._stop.is_set():
                    self._cv.wait(0.1)
            elif len(self._q) >= self.queue_size:
                self._q.popleft()
                self.stats.frames_dropped += 1
            self._q.append(frame)
            self._cv.notify_all()

    def _prepare(self, img: np.ndarray, n: int) -> np.ndarray | None:
        try:
            g = to_gray(img, f"{self.uri} frame {n}", self.bit_depth)
        except FrameError as exc:
            self.stats.frames_rejected += 1
            log.warning("%s (skipped)", exc)
            return None
        if self.size is None:
            self.size = (g.shape[1], g.shape[0])
        elif (g.shape[1], g.shape[0]) != tuple(self.size):
            if self.on_size_change == "error" and not isinstance(self._reader, _FolderReader):
                raise FrameError(f"{self.uri} frame {n}: size changed to {g.shape[1]}x"
                                 f"{g.shape[0]} from {self.size[0]}x{self.size[1]}")
            if self.stats.frames_resized == 0:
                log.warning("%s frame %d: %dx%d differs from %dx%d; %s to fit (counted in "
                            "frames_resized)", self.uri, n, g.shape[1], g.shape[0],
                            self.size[0], self.size[1], self.fit)
            self.stats.frames_resized += 1
            g = fit_size(g, tuple(self.size), self.fit)  # type: ignore[arg-type]
        return g

    def _grab(self) -> None:
        n = 0
        t0 = time.perf_counter()
        try:
            while not self._stop.is_set():
                try:
                    img = self._reader.read()
                    self.last_active = time.monotonic()
                except FrameError as exc:  # one unreadable image in a folder
                    self.last_active = time.monotonic()
                    self.stats.frames_rejected += 1
                    self.stats.frames_read += 1
                    n += 1
                    log.warning("%s (skipped)", exc)
                    continue
                if img is None:
                    if self._reader.live:
                        if self._reconnect():
                            continue
                        self.stats.lost = True
                    else:
                        self._check_complete()
                    break
                self.stats.frames_read += 1
                g = self._prepare(img, n)
                if g is not None:
                    if self.realtime:
                        due = t0 + n / self.fps
                        delay = due - time.perf_counter()
                        if delay > 0:
                            time.sleep(delay)
                        t_cap = due
                    else:
                        t_cap = time.perf_counter()
                    self._put(Frame(n, g, t_cap))
                n += 1
        except BaseException as exc:  # handed to the consumer
            self.error = exc
            self.stats.errors.append(str(exc))
        finally:
            with self._cv:
                self._done = True
                self._cv.notify_all()

    def _check_complete(self) -> None:
        """A file that ends before the frame count its container declares is damaged or
        still being written: said once, and flagged (``ended_early``). One frame short is
        tolerated (containers that store a duration, not a count, round it)."""
        declared = self.stats.declared_frames
        if declared is not None and self.stats.frames_read < declared - 1:
            self.stats.ended_early = True
            msg = (f"{self.uri}: ended after {self.stats.frames_read} of the {declared} frames "
                   "its container declares (truncated or still being written)")
            log.warning(msg)
            self.stats.errors.append(msg)

    def _reconnect(self) -> bool:
        delay = self.reconnect_backoff
        t_lost = time.perf_counter()
        for attempt in range(1, self.reconnect_attempts + 1):
            if self._stop.wait(delay):
                return False
            log.warning("%s: stream lost; reconnect %d/%d", self.uri, attempt,
                        self.reconnect_attempts)
            self.stats.reconnects += 1
            self.last_active = time.monotonic()
            reopened = self._reader.reopen()
            self.last_active = time.monotonic()
            if reopened:
                self.stats.outage_s += time.perf_counter() - t_lost
                return True
            delay = min(delay * 2, 10.0)
        self.stats.outage_s += time.perf_counter() - t_lost
        msg = (f"{self.uri}: stream lost and {self.reconnect_attempts} reconnect attempts "
               "failed; stopped")
        log.error(msg)
        self.stats.errors.append(msg)
        return False

    # ------------------------------------------------------------------ consumer
    def stalled_s(self) -> float:
        """Seconds since the grabber last heard from the source (a frame, a failed read, a
        reconnect attempt) while it waits on it: a read that hangs (a pipeline stuck, a
        driver) grows it without end; 0 once the grabber has ended."""
        if self._thread is None or self._done:
            return 0.0
        return max(time.monotonic() - self.last_active, 0.0)

    def get(self, max_frames: int = 1, timeout: float | None = None,
            on_wait: Callable[[], Any] | None = None) -> list[Frame]:
        """Up to ``max_frames`` queued frames (at least one unless the stream ended; then an
        empty list). Raises the grabber's error, if it had one, once the queue is empty.
        ``on_wait()`` is called about every 0.1 s while no frame is there (a service's
        watchdog: see :meth:`stalled_s`); when it returns True (a stop asked), the wait ends
        with the frames there, none if none came."""
        self.start()
        deadline = None if timeout is None else time.perf_counter() + timeout
        with self._cv:
            while not self._q and not self._done:
                wait = 0.1 if deadline is None else min(0.1, deadline - time.perf_counter())
                if wait <= 0:
                    return []
                self._cv.wait(wait)
                if on_wait is not None and on_wait():
                    break
            out = []
            while self._q and len(out) < max_frames:
                out.append(self._q.popleft())
            self.stats.frames_delivered += len(out)
            self._cv.notify_all()
        if not out and self.error is not None:
            err, self.error = self.error, None
            if isinstance(err, Exception):
                raise err
        return out

    def __iter__(self) -> Iterator[Frame]:
        while True:
            got = self.get(1)
            if not got:
                return
            yield got[0]

    def close(self) -> None:
        """Stop grabbing and release the capture."""
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._reader.close()
        if self._pool_held:
            self._pool_held = False
            _release_opencv_pool()

    def __enter__(self) -> FrameSource:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """URI, liveness, drop policy, frame rate and size of the source."""
        return {"uri": self.uri, "live": self.live, "policy": self.policy,
                "fps": None if math.isnan(self.fps) else self.fps,
                "size": list(self.size) if self.size else None, "realtime": self.realtime,
                "decode_threads": self.decode_threads}


# ---------------------------------------------------------------------- registered readers
def open_video(source: str | Path, **options: Any) -> FrameSource:
    """A video file, read by OpenCV's FFmpeg backend (reader ``video``)."""
    p = Path(source)
    if not p.is_file():
        raise SourceError(f"{p}: no such file or folder")
    if p.stat().st_size == 0:
        raise SourceError(f"{p}: the file is empty")
    cv2 = require_cv2("video files")
    return FrameSource(_CaptureReader(str(p), live=False, api=cv2.CAP_FFMPEG,
                                      threads=_decode_threads(options)), str(p), **options)


def open_camera(source: str, **options: Any) -> FrameSource:
    """A camera: ``cam:N`` (index N) or ``/dev/videoN`` (reader ``camera``)."""
    s = str(source)
    if s.startswith("/dev/video"):
        if not Path(s).exists():
            raise SourceError(f"{s}: no such camera device")
        return FrameSource(_CaptureReader(s, live=True), s, **options)
    try:
        idx = int(s[4:])
    except ValueError:
        raise SourceError(f"{s}: a camera is cam:N with N an index (cam:0)") from None
    return FrameSource(_CaptureReader(idx, live=True), s, **options)


def open_stream(source: str, **options: Any) -> FrameSource:
    """A network stream (RTSP, HTTP(S), RTMP, UDP, TCP) through FFmpeg, reconnecting when it
    drops (reader ``stream``). An ``http(s)://`` URL whose path ends in a video file suffix
    (``.mp4``, ``.avi`` ...) is a file on a server: read once like a local file (its end is
    the end, not an outage to reconnect through), unless the server answers with a
    ``multipart/x-mixed-replace`` body, as an MJPEG camera does at ``/video.mjpg``
    (:func:`http_is_live`): that is a live stream."""
    from urllib.parse import urlparse

    from deepseek.manufacturing.formats import VIDEO_SUFFIXES

    s = str(source)
    url = urlparse(s)
    is_file = url.scheme in ("http", "https") and \
        url.path.lower().endswith(tuple(VIDEO_SUFFIXES)) and not http_is_live(s)
    cv2 = require_cv2("network streams")
    return FrameSource(_CaptureReader(s, live=not is_file, api=cv2.CAP_FFMPEG,
                                      threads=_decode_threads(options),
                                      read_timeout_s=_read_timeout(options)), s, **options)


def http_is_live(url: str, timeout_s: float = 5.0) -> bool:
    """Whether the HTTP(S) server at ``url`` answers with an endless multipart body
    (``multipart/x-mixed-replace``: an MJPEG camera, mjpg-streamer, a phone's camera app),
    read from the response's headers alone. Asked as FFmpeg then opens it: a user and
    password in the URL sent as basic authentication, a camera's self-signed certificate
    not checked (FFmpeg checks none by default). False when the server cannot be asked
    (then opening it says what is wrong)."""
    import base64
    import ssl
    import urllib.error
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    headers = {}
    if parts.username is not None:
        who = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(who.encode()).decode()
        host = parts.hostname or ""
        netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        req = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(req, timeout=timeout_s,  # noqa: S310 - http(s) only
                                    context=context) as resp:
            kind = resp.headers.get("Content-Type", "")
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return kind.lower().startswith("multipart/")


def is_gstreamer_pipeline(source: Any) -> bool:
    """Probe: a GStreamer pipeline string (elements joined by `` ! ``, ending in appsink)."""
    s = str(source) if isinstance(source, (str, Path)) else ""
    return " ! " in s or s.rstrip().endswith("appsink")


def open_gstreamer(source: str, **options: Any) -> FrameSource:
    """A GStreamer pipeline ending in ``appsink`` (needs an OpenCV built with GStreamer;
    reader ``gstreamer``)."""
    s = str(source)
    cv2 = require_cv2("GStreamer pipelines")
    if not re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()):
        raise SourceError(f"{s!r}: this OpenCV build has no GStreamer support; "
                          "install an OpenCV built with GStreamer to use pipelines")
    return FrameSource(_CaptureReader(s, live=True, api=cv2.CAP_GSTREAMER), s, **options)


def is_image_folder(source: Any) -> bool:
    """Probe: a folder with at least one image file directly in it."""
    if not isinstance(source, (str, Path)):
        return False
    p = Path(source)
    return p.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in p.iterdir())


def open_folder(source: str | Path, **options: Any) -> FrameSource:
    """The images of a folder, in natural sort order, as one stream (reader
    ``image-folder``); ``fps`` sets the nominal rate (default 30)."""
    p = Path(source)
    if not p.is_dir():
        raise SourceError(f"{p}: no such folder")
    return FrameSource(_FolderReader(p, float(options.get("fps") or 30.0)), str(p), **options)


def open_synthetic(source: str = "synthetic:", **options: Any) -> FrameSource:
    """The synthetic production line as a frame stream (reader ``synthetic-line``):
    ``synthetic:?seed=3&frames=300&surface=cast`` -- any :class:`LineConfig` field, in the
    URI or (``line=dict(...)``) as keyword."""
    from deepseek.readers import uri_options

    s = str(source or "synthetic:")
    line = uri_options(s, "synthetic:")
    line.update(options.pop("line", None) or {})
    if isinstance(line.get("speed_px"), (int, float)):
        line["speed_px"] = (line["speed_px"], line["speed_px"])
    return FrameSource(_SyntheticReader(line), s, **options)

