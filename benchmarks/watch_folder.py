"""Benchmark: `score --watch` on the photos a camera writes into a folder.

    python benchmarks/watch_folder.py [--quick] [--data ../shared/data/crack/kolektorsdd]

Real part photos (KolektorSDD's val split, JPEG) handed to a watch
(:func:`~deepseek.manufacturing.watch.watch_folder`; the packaged weights at 0.5, since the
watch's handling of files is measured here, not a model's quality) the two ways cameras hand
them over, against `score` on the same files in the same run:

- renamed in: each photo copied beside the folder and renamed into it, told by the system
  (inotify): the results against score's, the time from the rename to the result;
- written straight into a folder on a share, polled: each photo's first half written, a
  pause longer than a poll, then the rest (polling sees no change made within the second
  of the one before, so the last bytes may never be reported): the results against
  score's, none called unreadable, the decodes per photo, the time from the last byte to
  the result.

Large photos (20 MP: the first val photo upscaled, with sensor noise) in PNG, TIFF, BMP and
WebP written straight into the folder in 64 KB writes at 20 MB/s, told by the system: the
decodes per photo (a photo still being written by its header or end is not decoded), the
lines the decoders printed on stderr, and the time from the last byte to the result as a
ratio to the same file written the same way beside the folder and then read and scored in a
thread at once (the watch's work without the watch; the two alternate).

A model retrained on a running line: the val photos renamed in one at a time, the weights
written anew half way and the model loaded again as SIGHUP does (``reload``): each photo
scored once, those after the reload by the new weights (their SHA-256), and the time from
the rename of the first photo after it to its result, against a restart: a new ``score
--watch`` process from its start to its ready (systemd's notification, which the benchmark
receives as systemd would).

A first photo is scored before each replay so that the watch's start is not in its times.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, goal  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "crack" / "kolektorsdd"
PAUSE_S = 0.45  # between a photo's two halves: longer than a poll (0.3 s)
RATE = 20e6  # bytes a second a large photo is written at
CHUNK = 65536
FORMATS = (".png", ".tif", ".bmp", ".webp")


class Counted:
    """A scorer whose reads (decodes) are counted per file name, the scorer's own read put
    back by :meth:`restore`."""

    def __init__(self, scorer: Any) -> None:
        self.scorer, self.reads = scorer, {}
        self._read = scorer.read
        scorer.read = self.read

    def read(self, path: Any, *a: Any, **k: Any) -> Any:
        name = Path(path).name
        self.reads[name] = self.reads.get(name, 0) + 1
        return self._read(path, *a, **k)

    def restore(self) -> None:
        self.scorer.read = self._read


def watched(scorer: Any, folder: Path, poll: bool) -> tuple[queue.Queue, Any]:
    """A watch of ``folder`` in a thread, its results put on a queue with their time; the
    watch's stop event and thread."""
    from deepseek.manufacturing.watch import watch_folder

    got: queue.Queue = queue.Queue()
    stop = threading.Event()

    def run() -> None:
        try:
            watch_folder(scorer, folder, lambda r: got.put((time.perf_counter(), r)),
                         poll=poll, stop=stop)
        except BaseException as exc:  # said, not lost in the thread
            got.put((time.perf_counter(), exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return got, (stop, thread)


def result(got: queue.Queue) -> tuple[float, Any]:
    t, r = got.get(timeout=120)
    if isinstance(r, BaseException):
        raise r
    return t, r


def replay(scorer: Any, photos: list[Path], ref: dict[str, Any], *, straight: bool) -> dict:
    """The photos handed to a watch one at a time (renamed in, told; or written straight in
    two halves, polled), each result awaited: against ``ref`` (score's)."""
    from deepseek.manufacturing.score import UnreadableImage

    counted = Counted(scorer)
    waits, out = [], {}
    with tempfile.TemporaryDirectory(prefix="watched-") as tmp:
        folder, stage = Path(tmp) / "line", Path(tmp) / "stage"
        folder.mkdir()
        stage.mkdir()
        got, (stop, thread) = watched(scorer, folder, poll=straight)
        try:
            shutil.copy(photos[0], stage / "first.jpg")  # the watch started, warm
            os.rename(stage / "first.jpg", folder / "first.jpg")
            result(got)
            for p in photos:
                if straight:
                    data = p.read_bytes()
                    with open(folder / p.name, "wb") as fh:
                        fh.write(data[: len(data) // 2])
                        fh.flush()
                        time.sleep(PAUSE_S)
                        fh.write(data[len(data) // 2:])
                else:
                    shutil.copy(p, stage / p.name)
                    os.rename(stage / p.name, folder / p.name)
                t0 = time.perf_counter()
                t1, r = result(got)
                waits.append(1000 * (t1 - t0))
                out[Path(r.path).name] = r
        finally:
            stop.set()
            thread.join(timeout=60)
            counted.restore()
    scored = [out.get(p.name) for p in photos]
    ok = [r for r in scored if r is not None and not isinstance(r, UnreadableImage)]
    same = len(ok) == len(photos)
    reads = [counted.reads.get(p.name, 0) for p in photos]
    return {"photos": len(photos), "unreadable": sum(isinstance(r, UnreadableImage)
                                                      for r in scored),
            "decisions_equal": same and all(r.defect == ref[Path(r.path).name].defect
                                            for r in ok),
            "boxes_equal": same and all(r.box == ref[Path(r.path).name].box for r in ok),
            "max_score_difference": (float(max(abs(r.score - ref[Path(r.path).name].score)
                                               for r in ok)) if ok else None),
            "decodes_per_photo": round(float(np.mean(reads)), 3),
            ("last_byte_to_result_ms" if straight else "rename_to_result_ms"): {
                "p50": round(float(np.percentile(waits, 50)), 1),
                "p90": round(float(np.percentile(waits, 90)), 1),
                "max": round(float(max(waits)), 1)}}


def retrained(weights: Path, note: str) -> str:
    """The packaged network written to ``weights`` as a training run writes its weights
    (threshold 0.5 stored; ``note`` makes each file's bytes its own), renamed over the file
    there; its SHA-256."""
    from deepseek.loader import ModelLoader, file_sha256, save_model

    m = ModelLoader.load("defect-3dcnn-lstm", device="cpu")
    tmp = weights.with_name("new-" + weights.name)
    save_model(m.module, tmp, architecture="defect-3dcnn-lstm", config=m.config,
               extra={"threshold": 0.5, "note": note})
    os.replace(tmp, weights)
    return file_sha256(weights)


def reloaded(photos: list[Path]) -> dict:
    """The photos renamed into a watch one at a time, the weights retrained in place half
    way and the model loaded again (as SIGHUP has the watch do); against a restart's new
    watch process from its start to its ready."""
    import socket
    import subprocess

    from deepseek.manufacturing.score import Scorer
    from deepseek.manufacturing.watch import watch_folder

    half = len(photos) // 2
    with tempfile.TemporaryDirectory(prefix="reload-") as tmp:
        tmp = Path(tmp)
        folder, stage, weights = tmp / "line", tmp / "stage", tmp / "model.safetensors"
        folder.mkdir()
        stage.mkdir()
        first = retrained(weights, "first")
        asked = threading.Event()

        def reload() -> Any:  # what the watch's SIGHUP handler arranges
            if not asked.is_set():
                return None
            asked.clear()
            return Scorer(str(weights))

        got: queue.Queue = queue.Queue()
        stop = threading.Event()

        def run() -> None:
            try:
                watch_folder(Scorer(str(weights)), folder,
                             lambda r: got.put((time.perf_counter(), r)), stop=stop,
                             reload=reload)
            except BaseException as exc:  # said, not lost in the thread
                got.put((time.perf_counter(), exc))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        out, after_ms, second = [], None, None
        try:
            for i, p in enumerate(photos):
                if i == half:  # retrained, then reloaded (systemctl reload)
                    second = retrained(weights, "second")
                    asked.set()
                shutil.copy(p, stage / p.name)
                t0 = time.perf_counter()
                os.rename(stage / p.name, folder / p.name)
                t1, r = result(got)
                if i == half:
                    after_ms = 1000 * (t1 - t0)
                out.append(r)
        finally:
            stop.set()
            thread.join(timeout=60)
        # a restart instead: a new watch process from its start to its ready, as systemd
        # sees it (Type=notify), on the same folder and weights
        manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        name = f"deepseek-bench-{os.getpid()}"
        manager.bind("\0" + name)
        manager.settimeout(300)
        cli = Path(sys.executable).with_name("deepseek")
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(cli), "manufacturing", "score", str(folder), "--watch",
                                 "--new-only", "--model", str(weights)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "NOTIFY_SOCKET": "@" + name})
        try:
            while not manager.recv(4096).startswith(b"READY=1"):
                pass
            restart_s = time.perf_counter() - t0
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            manager.close()
    names = [Path(r.path).name for r in out]
    once = sorted(names) == sorted(p.name for p in photos)
    by_model = [r.model_sha256 for r in out]
    return {"photos": len(photos), "reloaded_after": half, "scored_once": once,
            "models_before": sorted(set(by_model[:half])),
            "models_after": sorted(set(by_model[half:])),
            "new_model_after": by_model[:half] == [first] * half
            and by_model[half:] == [second] * (len(photos) - half),
            "rename_to_result_after_reload_ms": round(after_ms or float("inf"), 1),
            "restart_to_ready_s": round(restart_s, 2)}


def write_slowly(path: Path, data: bytes) -> None:
    """``data`` written to ``path`` in 64 KB writes at :data:`RATE`, as a camera's PC saves
    a large photo."""
    with open(path, "wb") as fh:
        for o in range(0, len(data), CHUNK):
            fh.write(data[o:o + CHUNK])
            fh.flush()
            time.sleep(CHUNK / RATE)


def read_and_score(scorer: Any, counted: Counted, path: Path) -> float:
    """Seconds to read and score ``path`` in a thread of its own, started once it is
    written: the watch's work without the watch."""
    took: list[float] = []

    def work() -> None:
        t0 = time.perf_counter()
        scorer.score(path, image=counted._read(path))
        took.append(time.perf_counter() - t0)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    return took[0]


def large_photo(src: Path) -> np.ndarray:
    """A 20 MP grayscale photo: ``src`` upscaled, with sensor noise (so that it compresses
    as a camera's photo does)."""
    import cv2

    img = cv2.imread(str(src), cv2.IMREAD_GRAYSCALE)
    big = cv2.resize(img, (5472, 3648), interpolation=cv2.INTER_LINEAR)
    noise = np.random.default_rng(0).normal(0, 6, big.shape)
    return np.clip(big + noise, 0, 255).astype(np.uint8)


def large_written(scorer: Any, img: np.ndarray, per_format: int) -> dict:
    """Each format's encoding of ``img`` written straight into a watched folder (told),
    ``per_format`` times: decodes, stderr lines, last byte to result against the same file
    read and scored at once without a watch."""
    import cv2

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="watched-") as tmp:
        for suffix in FORMATS:
            data = cv2.imencode(suffix, img)[1].tobytes()
            folder = Path(tmp) / suffix[1:]
            folder.mkdir()
            alone = []
            counted = Counted(scorer)
            err = Path(tmp) / f"stderr{suffix}.txt"
            saved = os.dup(2)
            waits = []
            with open(err, "wb") as sink:
                os.dup2(sink.fileno(), 2)  # what the decoders print, C libraries included
                try:
                    got, (stop, thread) = watched(scorer, folder, poll=False)
                    try:
                        (folder / "first.png").write_bytes(cv2.imencode(".png", img[:64, :64])
                                                           [1].tobytes())
                        result(got)
                        for i in range(per_format):
                            # the same file written the same way beside the folder, then
                            # read and scored at once in a thread, as the watch would
                            plain = Path(tmp) / f"plain{i}{suffix}"
                            write_slowly(plain, data)
                            alone.append(read_and_score(scorer, counted, plain))
                            write_slowly(folder / f"p{i}{suffix}", data)
                            t0 = time.perf_counter()
                            t1, r = result(got)
                            waits.append(t1 - t0)
                    finally:
                        stop.set()
                        thread.join(timeout=60)
                finally:
                    sys.stderr.flush()
                    os.dup2(saved, 2)
                    os.close(saved)
                    counted.restore()
            lines = [x for x in err.read_text(errors="replace").splitlines() if x.strip()]
            reads = [counted.reads.get(f"p{i}{suffix}", 0) for i in range(per_format)]
            out[suffix[1:]] = {
                "photos": per_format, "file_mb": round(len(data) / 1e6, 2),
                "decodes_per_photo": round(float(np.mean(reads)), 3),
                "stderr_lines": len(lines), "stderr_first": lines[:2],
                "last_byte_to_result_s": [round(w, 3) for w in waits],
                "unwatched_read_and_score_s": [round(a, 3) for a in alone],
                "ratio_to_unwatched": round(float(np.median(waits) / np.median(alone)), 3)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="12 val photos and one 20 MP photo per format (about a minute)")
    ap.add_argument("--data", type=Path, default=DATA,
                    help="KolektorSDD (images/val/*.jpg) [../shared/data/crack/kolektorsdd]")
    ap.add_argument("--photos", type=int, default=None, help="val photos [all; --quick 12]")
    ap.add_argument("--large", type=int, default=None,
                    help="20 MP photos per format [3; --quick 1]")
    args = ap.parse_args()
    photos = sorted((args.data / "images" / "val").glob("*.jpg"))
    if not photos:
        sys.exit(f"no photos in {args.data / 'images' / 'val'}: pass --data (KolektorSDD)")
    n = args.photos or (12 if args.quick else len(photos))
    photos = photos[:n]
    per_format = args.large or (1 if args.quick else 3)

    from deepseek.manufacturing.score import Scorer, score_images

    scorer = Scorer("defect-3dcnn-lstm", threshold=0.5)
    ref = {Path(r.path).name: r for r in score_images(photos, "defect-3dcnn-lstm",
                                                      threshold=0.5, progress=False)}
    renamed = replay(scorer, photos, ref, straight=False)
    straight = replay(scorer, photos, ref, straight=True)
    large = large_written(scorer, large_photo(photos[0]), per_format)
    reload = reloaded(photos)
    results = {"renamed_in_told": renamed, "written_straight_polled": straight,
               "large_written_straight_told": large, "model_reloaded": reload}
    goals = []
    for name, r in (("renamed in (told)", renamed),
                    ("written straight in two halves (polled)", straight)):
        same = (r["decisions_equal"] and r["boxes_equal"] and r["unreadable"] == 0
                and r["max_score_difference"] == 0)
        goals.append(goal(f"{n} KolektorSDD val photos {name}: score's decisions, boxes and "
                          "scores, none unreadable", int(same), "== 1", "all the same", same))
    goals.append(goal(f"{n} val photos written straight in two halves (polled): decodes per "
                      "photo", straight["decodes_per_photo"], "== 1", "decodes",
                      straight["decodes_per_photo"] == 1))
    for fmt, r in large.items():
        goals.append(goal(f"{per_format} 20 MP {fmt.upper()} written at 20 MB/s: decodes per "
                          "photo", r["decodes_per_photo"], "== 1", "decodes",
                          r["decodes_per_photo"] == 1))
        goals.append(goal(f"{per_format} 20 MP {fmt.upper()} written at 20 MB/s: lines on "
                          "stderr", r["stderr_lines"], "== 0", "lines", r["stderr_lines"] == 0))
        goals.append(goal(f"{per_format} 20 MP {fmt.upper()}: last byte to result, median, as "
                          "a ratio to the same file read and scored at once without a watch",
                          r["ratio_to_unwatched"],
                          "<= 1.5", "ratio", r["ratio_to_unwatched"] <= 1.5))
    ok = reload["scored_once"] and reload["new_model_after"]
    goals.append(goal(f"{n} val photos renamed in, the model retrained and reloaded after "
                      f"{reload['reloaded_after']}: each scored once, those after by the new "
                      "weights", int(ok), "== 1", "all", ok))
    ratio = reload["rename_to_result_after_reload_ms"] / 1000 / reload["restart_to_ready_s"]
    goals.append(goal("rename to result of the first photo after a reload, as a ratio to a "
                      f"restart (a new watch process to ready: {reload['restart_to_ready_s']} "
                      "s, same run)", round(ratio, 3), "<= 0.5", "ratio", ratio <= 0.5))
    emit("watch_folder", results, goals,
         sizes={"val_photos": n, "large_per_format": per_format, "large_pixels": "5472x3648",
                "write_rate_mb_s": RATE / 1e6, "pause_between_halves_s": PAUSE_S})


if __name__ == "__main__":
    main()
