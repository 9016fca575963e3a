"""score --watch: a folder a camera writes its photos into, each photo scored once its file is
complete, as `score` scores it."""

from __future__ import annotations

import csv
import json
import queue
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from deepseek.cli import build_cli
from deepseek.manufacturing.images import write_heatmap
from deepseek.manufacturing.score import ImageScore, Scorer, score_images
from deepseek.manufacturing.watch import watch_folder
from tests.shared import own_sigterm_handler

ADDED, MODIFIED, DELETED = 1, 2, 3


def _photo(seed: int, h: int = 64, w: int = 96, crack: bool = False) -> bytes:
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(150, 12, (h, w)), 0, 255).astype(np.uint8)
    if crack:
        cv2.line(img, (4, h // 2), (w - 5, h // 2 + 3), 30, 2)
    return cv2.imencode(".png", img)[1].tobytes()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_photos_are_scored_once_complete_and_once_each(tmp_path):
    """The photos there first, then each new one once it decodes (a file caught half
    written waits for its next change; one still refused `settle` seconds after its last
    change is reported once); a touch or the same bytes again score nothing, a deletion
    and a new photo under the name score it again; masks, hidden files and the heatmaps the
    watch writes are never parts. The scores are `score`'s."""
    root = tmp_path / "line"
    (root / "sub").mkdir(parents=True)
    (root / "p0.png").write_bytes(_photo(0))
    (root / "p0_mask.png").write_bytes(cv2.imencode(".png", np.zeros((64, 96), np.uint8))[1])
    (root / ".p9.png").write_bytes(_photo(9))
    clock, got, seen = Clock(), [], []
    scorer = Scorer("defect-3dcnn-lstm", threshold=0.5)
    full, crack = _photo(1), _photo(3, crack=True)

    def camera():
        p1 = root / "p1.png"
        p1.write_bytes(full[: len(full) // 2])  # caught while it is written
        yield {(ADDED, str(p1))}
        seen.append(len(got))
        clock.now += 1
        p1.write_bytes(full)
        yield {(MODIFIED, str(p1))}
        seen.append(len(got))
        yield {(MODIFIED, str(p1))}  # the writer's last touch: nothing new
        seen.append(len(got))
        cut = root / "p2.jpg"
        cut.write_bytes(cv2.imencode(".jpg", np.full((32, 32), 128, np.uint8))[1][:200])
        yield {(ADDED, str(cut))}
        seen.append(len(got))
        clock.now += 5  # the settle time passes with no change: reported, once
        yield set()
        yield set()
        seen.append(len(got))
        (root / "sub" / "p3.png").write_bytes(crack)
        (root / "sub" / "p3_mask.png").write_bytes(_photo(4))
        (root / "maps" / "x.png").write_bytes(_photo(5))
        (root / "p7.png.part").write_bytes(_photo(7))  # written under another suffix first
        yield {(ADDED, str(root / "sub" / "p3.png")), (ADDED, str(root / "sub" / "p3_mask.png")),
               (ADDED, str(root / "maps" / "x.png")), (ADDED, str(root / ".p8.png")),
               (ADDED, str(tmp_path / "elsewhere.png")), (ADDED, str(root / "p7.png.part"))}
        seen.append(len(got))
        p1.write_bytes(full)  # the same bytes again
        yield {(MODIFIED, str(p1))}
        seen.append(len(got))
        p1.unlink()
        yield {(DELETED, str(p1))}
        p1.write_bytes(_photo(6))  # a new photo under the name
        yield {(ADDED, str(p1))}

    state = watch_folder(scorer, root, got.append, settle_s=5, heatmaps=root / "maps",
                         changes=camera(), clock=clock)
    assert seen == [1, 2, 2, 2, 3, 4, 4]
    assert [type(r).__name__ for r in got] == ["ImageScore"] * 2 + ["UnreadableImage"] + \
        ["ImageScore"] * 2
    assert [r.path for r in got] == [str(root / n) for n in
                                     ("p0.png", "p1.png", "p2.jpg", "sub/p3.png", "p1.png")]
    assert got[2].error.startswith(f"{root / 'p2.jpg'}: ")  # the reader's reason
    scored = [r for r in got if isinstance(r, ImageScore)]
    assert [r.heatmap for r in scored] == [str(root / "maps" / f"{i:05d}-{n}.png") for i, n in
                                           ((0, "p0"), (1, "p1"), (3, "p3"), (4, "p1"))]
    assert all(r.cell_map is None for r in scored)  # nothing kept of a photo once scored
    assert scored[2].defect and not scored[0].defect
    again = score_images([root / "p0.png", root / "sub" / "p3.png", root / "p1.png"],
                         "defect-3dcnn-lstm", threshold=0.5, progress=False)
    assert [r.score for r in again] == pytest.approx([scored[0].score, scored[2].score,
                                                      scored[3].score], abs=1e-6)
    assert not state.waiting


def test_a_watch_that_is_stopped_reports_what_is_still_written(tmp_path, caplog):
    root = tmp_path / "line"
    root.mkdir()
    half = root / "p.png"
    half.write_bytes(_photo(1)[:100])

    def camera():
        yield {(MODIFIED, str(half))}

    with caplog.at_level("WARNING", logger="deepseek.manufacturing.watch"):
        state = watch_folder(Scorer("defect-3dcnn-lstm"), root, lambda r: None,
                             changes=camera(), clock=Clock())
    assert list(state.waiting) == [half]
    assert "p.png: still not complete when the watch ended" in caplog.text


@pytest.mark.parametrize("poll", [False, True])
def test_the_folder_is_watched_as_the_system_tells_or_by_polling(tmp_path, poll):
    """Through watchfiles itself: told by the system (inotify) or polling, as on a network
    share; a folder of photos moved in is read (the system tells of the folder only); the
    watch ends when its stop event is set."""
    root = tmp_path / "line"
    root.mkdir()
    results: queue.Queue = queue.Queue()
    stop = threading.Event()
    scorer = Scorer("defect-3dcnn-lstm", threshold=0.5)

    def run():
        try:
            watch_folder(scorer, root, results.put, poll=poll, stop=stop)
        except BaseException as exc:  # a failure reaches the test, not a thread's log
            results.put(exc)

    (root / "first.png").write_bytes(_photo(0))
    watcher = threading.Thread(target=run)
    watcher.start()
    try:
        first = results.get(timeout=120)  # the photo there at the start
        assert isinstance(first, ImageScore) and first.path == str(root / "first.png")
        tmp = tmp_path / "writing.png"
        tmp.write_bytes(_photo(1, crack=True))
        tmp.rename(root / "new.png")  # as a camera that writes then renames
        new = results.get(timeout=120)
        assert isinstance(new, ImageScore), new
        assert new.path == str(root / "new.png")
        assert new.score == pytest.approx(scorer.score(root / "new.png").score, abs=1e-6)
        batch = tmp_path / "batch7"  # a folder of photos moved in: only the folder is told
        batch.mkdir()
        for i in range(2):
            (batch / f"b{i}.png").write_bytes(_photo(10 + i))
        batch.rename(root / "batch7")
        moved = sorted(results.get(timeout=120).path for _ in range(2))
        assert moved == [str(root / "batch7" / f"b{i}.png") for i in range(2)]
    finally:
        stop.set()
        watcher.join(timeout=120)
    assert not watcher.is_alive()
    assert results.empty()


def test_score_watch_on_the_command_line(tmp_path, monkeypatch):
    """`score FOLDER --watch`: one JSON object per photo as it is scored (JSON Lines), the
    CSV appended row by row (a watch started again goes on with it), a summary, status 1
    when a photo could not be read; --new-only leaves the photos already there."""
    import watchfiles

    root = tmp_path / "line"
    root.mkdir()
    (root / "a.png").write_bytes(_photo(0))
    events: list[dict[str, bytes]] = []  # each run's camera: files written, one at a time

    def fake_watch(*paths, stop_event=None, force_polling=None, **kw):
        assert paths == (root,) and kw["watch_filter"] is not None
        fake_watch.polling, fake_watch.every_ms = force_polling, kw["poll_delay_ms"]
        yield set()  # the watch has begun
        for name, data in events.pop(0).items():
            (root / name).write_bytes(data)
            yield {(ADDED, str(root / name))}

    monkeypatch.setattr(watchfiles, "watch", fake_watch)
    events.append({"b.png": _photo(1, crack=True), "c.jpg": b"\xff\xd8\xff not a whole JPEG"})
    table = tmp_path / "scores.csv"
    line = ["manufacturing", "score", str(root), "--watch", "--json", "--csv", str(table),
            "--settle", "0", "--threshold", "0.5"]
    res = CliRunner().invoke(build_cli(), line)
    assert res.exit_code == 1, res.output
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    assert [r["path"] for r in rows] == [str(root / n) for n in ("a.png", "b.png", "c.jpg")]
    assert rows[2]["score"] is None and "c.jpg" in rows[2]["error"]
    from datetime import datetime, timedelta, timezone

    for r in rows:  # when each was decided, in UTC
        at = datetime.fromisoformat(r["scored_at"])
        assert timedelta(0) <= datetime.now(timezone.utc) - at < timedelta(minutes=10)
    assert "watch ended: 2 photos scored, " in res.stderr and "1 unreadable" in res.stderr
    assert fake_watch.polling is False
    events.append({"d.png": _photo(2)})
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(root), "--watch",
                                           "--new-only", "--poll", "--csv", str(table),
                                           "--threshold", "0.5"])
    assert res.exit_code == 0, res.output
    assert fake_watch.polling is True and fake_watch.every_ms == 300
    assert res.stdout.splitlines()[0].endswith(str(root / "d.png"))
    assert len(res.stdout.splitlines()) == 1  # a, b and c were there before: left
    with open(table) as f:
        table_rows = list(csv.reader(f))
    assert table_rows[0][0] == "path" and [r[0] for r in table_rows[1:]] == \
        [str(root / n) for n in ("a.png", "b.png", "c.jpg", "d.png")]
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(root), "--watch",
                                           "--evaluate"])
    assert res.exit_code == 2 and "give one of them" in res.output
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(root / "a.png"),
                                           "--watch"])
    assert res.exit_code == 2 and "--watch takes one folder" in res.output
    events.append({})
    res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(root), "--watch",
                                           "--new-only", "--poll-every", "2.5"])
    assert res.exit_code == 0, res.output
    assert fake_watch.polling is True and fake_watch.every_ms == 2500  # a large share
    for alone in (["--poll"], ["--new-only"], ["--settle", "3"], ["--poll-every", "2"]):
        res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(root), *alone])
        assert res.exit_code == 2 and f"{alone[0]} goes with --watch" in res.output


def test_heatmaps_written_over_the_watched_folder_are_refused(tmp_path):
    """--heatmaps at the watched folder (or above it) would leave every photo unread, the
    heatmaps folder being never watched: refused by name, before anything is scored."""
    from deepseek.manufacturing.errors import ManufacturingError

    root = tmp_path / "line"
    root.mkdir()
    for heat in (root, tmp_path):
        with pytest.raises(ManufacturingError, match="the watched folder .* lies in it"):
            watch_folder(Scorer("defect-3dcnn-lstm"), root, lambda r: None, heatmaps=heat,
                         changes=iter([set()]), clock=Clock())


def test_a_heatmap_in_the_watched_folder_is_not_a_part(tmp_path):
    root = tmp_path / "line"
    root.mkdir()
    write_heatmap(root / "old-map.png", np.zeros((8, 8, 3), np.uint8))
    got: list = []

    def camera():
        write_heatmap(root / "new-map.png", np.zeros((8, 8, 3), np.uint8))
        yield {(ADDED, str(root / "new-map.png"))}

    watch_folder(Scorer("defect-3dcnn-lstm"), root, got.append, changes=camera(), clock=Clock())
    assert got == []  # neither the heatmap there nor the one written is scored


def test_what_a_watch_remembers_follows_the_folder(tmp_path, monkeypatch):
    """Photos removed without a reported removal (a missed event) are forgotten once many
    are remembered, so a watch that runs for days holds what the folder holds."""
    from deepseek.manufacturing import watch

    monkeypatch.setattr(watch, "PRUNE_AT", 3)
    root = tmp_path / "line"
    root.mkdir()
    got: list = []

    def camera():
        yield set()
        for i in range(8):
            p = root / f"p{i}.png"
            p.write_bytes(_photo(i))
            yield {(ADDED, str(p))}
            p.unlink()  # moved to an archive, and the system said nothing

    state = watch_folder(Scorer("defect-3dcnn-lstm"), root, got.append, changes=camera(),
                         clock=Clock())
    assert len(got) == 8 and len(state.scored) <= 3 and len(state.digests) <= 3


def test_a_watched_folder_that_goes_away_stops_the_watch(tmp_path):
    """Removed, or its share unmounted: the watch says so and stops (a service manager
    starts it again), rather than watching nothing for good."""
    import shutil

    from deepseek.manufacturing.errors import ManufacturingError

    root = tmp_path / "line"
    root.mkdir()

    def camera():
        yield set()
        shutil.rmtree(root)
        yield set()

    with pytest.raises(ManufacturingError, match="line: the folder is gone .*the watch stops"):
        watch_folder(Scorer("defect-3dcnn-lstm"), root, lambda r: None, changes=camera(),
                     clock=Clock())


def test_new_only_misses_nothing_written_as_the_watch_begins(tmp_path):
    """--new-only leaves the photos there at the start; one written, or one of those
    rewritten, before the system reports changes (no event for it) is still scored, when
    the folder is listed again at the watch's first report."""
    import os

    root = tmp_path / "line"
    root.mkdir()
    for n in ("old.png", "kept.png"):
        (root / n).write_bytes(_photo(len(n)))
    got: list = []

    def camera():
        (root / "new.png").write_bytes(_photo(7))  # before the watch was told of anything
        (root / "old.png").write_bytes(_photo(8))
        os.utime(root / "old.png", ns=(1, 1))  # and its time other than when listed
        yield set()

    watch_folder(Scorer("defect-3dcnn-lstm"), root, got.append, existing=False,
                 changes=camera(), clock=Clock())
    assert sorted(r.path for r in got) == [str(root / "new.png"), str(root / "old.png")]


def test_a_folder_the_system_cannot_watch_is_said_with_the_fix(tmp_path):
    """The system's limit on watched folders reached (many subfolders), or a folder it may
    not read: an error naming the folder and --poll, not a traceback."""
    from deepseek.manufacturing.errors import ManufacturingError

    root = tmp_path / "line"
    root.mkdir()

    def limit():
        yield set()
        raise OSError("OS file watch limit reached")

    with pytest.raises(ManufacturingError, match=r"line: this folder cannot be watched \(OS "
                       r"file watch limit reached\); --poll looks for changes"):
        watch_folder(Scorer("defect-3dcnn-lstm"), root, lambda r: None, changes=limit(),
                     clock=Clock())


def test_a_watch_started_again_takes_up_its_state(tmp_path):
    """With a state file a watch started again (a restart, a reboot) scores only what is
    new or changed since it stopped, those written while it was stopped included, even
    with --new-only; its heatmaps are numbered on, never written over."""
    import os

    from deepseek.manufacturing.watch import STATE_KIND

    root, maps, kept = tmp_path / "line", tmp_path / "maps", tmp_path / "state.jsonl"
    root.mkdir()
    for i in range(2):
        (root / f"p{i}.png").write_bytes(_photo(i))
    scorer = Scorer("defect-3dcnn-lstm", threshold=0.5)

    def run(*written: str, existing: bool = True) -> list:
        got: list = []

        def camera():
            yield set()
            for n in written:
                (root / n).write_bytes(_photo(len(got) + 20))
                yield {(ADDED, str(root / n))}

        watch_folder(scorer, root, got.append, heatmaps=maps, state=kept, existing=existing,
                     changes=camera(), clock=Clock())
        return [(Path(r.path).name, Path(r.heatmap).name) for r in got]

    assert run("p2.png") == [("p0.png", "00000-p0.png"), ("p1.png", "00001-p1.png"),
                             ("p2.png", "00002-p2.png")]
    # stopped: a photo written, one rewritten, one touched, one removed
    (root / "p3.png").write_bytes(_photo(3))
    (root / "p1.png").write_bytes(_photo(11))
    os.utime(root / "p0.png", ns=(5, 5))
    (root / "p2.png").unlink()
    said: list[str] = []
    got: list = []
    watch_folder(scorer, root, got.append, heatmaps=maps, state=kept, say=said.append,
                 changes=iter([set()]), clock=Clock())
    assert [(Path(r.path).name, Path(r.heatmap).name) for r in got] == \
        [("p1.png", "00003-p1.png"), ("p3.png", "00004-p3.png")]
    assert "2 photos there were scored" in said[0]  # p0 and p1; p2 is gone
    assert len(said) == 1  # by the same model
    assert run() == []  # nothing changed: nothing scored
    (root / "p4.png").write_bytes(_photo(4))  # while stopped: scored although --new-only
    assert run("p5.png", existing=False) == [("p4.png", "00005-p4.png"),
                                             ("p5.png", "00006-p5.png")]
    lines = [json.loads(x) for x in kept.read_text().splitlines()]
    assert lines[0] == {STATE_KIND: 1, "folder": os.path.abspath(root), "next": 5,
                        "model_sha256": scorer.model_sha256, "threshold": 0.5}
    assert sorted(e["path"] for e in lines[1:]) == \
        ["p0.png", "p1.png", "p3.png", "p4.png", "p5.png"]
    assert sorted(os.listdir(maps))[-1] == "00006-p5.png"


def test_a_first_start_with_new_only_and_a_state_leaves_the_photos_there(tmp_path):
    root, kept = tmp_path / "line", tmp_path / "state.jsonl"
    root.mkdir()
    (root / "old.png").write_bytes(_photo(0))
    scorer, got = Scorer("defect-3dcnn-lstm"), []
    for _ in range(2):  # the first start leaves it; started again, it is still left
        watch_folder(scorer, root, got.append, state=kept, existing=False,
                     changes=iter([set()]), clock=Clock())
    assert got == []


def test_a_result_not_handed_over_is_scored_again_after_a_restart(tmp_path):
    """A photo's line goes into the state once its result is handed over (its CSV row
    written): a watch stopped in between scores it again rather than losing it."""
    root, kept = tmp_path / "line", tmp_path / "state.jsonl"
    root.mkdir()
    for n in ("a.png", "b.png"):
        (root / n).write_bytes(_photo(len(n) + ord(n[0])))
    scorer, got = Scorer("defect-3dcnn-lstm"), []

    def emit(r):
        if r.path.endswith("b.png"):
            raise OSError("No space left on device")
        got.append(r)

    maps = tmp_path / "maps"
    with pytest.raises(OSError):
        watch_folder(scorer, root, emit, state=kept, heatmaps=maps, changes=iter([set()]),
                     clock=Clock())
    again: list = []
    watch_folder(scorer, root, again.append, state=kept, heatmaps=maps,
                 changes=iter([set()]), clock=Clock())
    assert [Path(r.path).name for r in got + again] == ["a.png", "b.png"]
    # b's first heatmap (its result never handed over) is not written over
    assert [Path(r.heatmap).name for r in got + again] == ["00000-a.png", "00002-b.png"]


def test_a_state_file_that_is_not_this_watchs_is_refused_untouched(tmp_path, caplog):
    from deepseek.manufacturing.errors import ManufacturingError

    root = tmp_path / "line"
    root.mkdir()
    (root / "a.png").write_bytes(_photo(0))
    scorer = Scorer("defect-3dcnn-lstm")

    def start(kept, got=None):
        return watch_folder(scorer, root, (got if got is not None else []).append, state=kept,
                            changes=iter([set()]), clock=Clock())

    table = tmp_path / "scores.csv"
    table.write_text("path,width,height\n")
    with pytest.raises(ManufacturingError, match="scores.csv: not the state a watch keeps"):
        start(table)
    assert table.read_text() == "path,width,height\n"
    other = tmp_path / "other"
    other.mkdir()
    kept = tmp_path / "state.jsonl"
    watch_folder(scorer, other, lambda r: None, state=kept, changes=iter([set()]),
                 clock=Clock())
    before = kept.read_bytes()
    with pytest.raises(ManufacturingError, match=r"the state of the watch of .*other, not of "
                       r".*line; give each watched folder its own --state"):
        start(kept)
    assert kept.read_bytes() == before
    kept.unlink()
    start(kept)
    good = kept.read_text()
    for bad in ('{"path": "../x.png", "size": 1, "mtime_ns": 1, "sha256": ""}',
                '{"path": "b.png", "size": -1, "mtime_ns": 1, "sha256": ""}',
                '{"path": "b.png", "size": true, "mtime_ns": 1, "sha256": ""}', "[]"):
        kept.write_text(good + bad + "\n")
        with pytest.raises(ManufacturingError, match="line 3 is not a line a watch writes"):
            start(kept)
    kept.write_text(good + '{"path": "a.png", "si')  # cut short as the watch was killed
    got: list = []
    with caplog.at_level("WARNING", logger="deepseek.manufacturing.watch"):
        start(kept, got)
    assert got == [] and "last line is cut short" in caplog.text  # a.png's line was whole


def test_the_state_file_is_written_anew_when_it_doubles(tmp_path, monkeypatch):
    """A photo rewritten again and again adds a line each time; the file holds no more than
    about twice what the watch remembers."""
    from deepseek.manufacturing import watch

    monkeypatch.setattr(watch, "PRUNE_AT", 4)
    root, kept = tmp_path / "line", tmp_path / "state.jsonl"
    root.mkdir()
    got: list = []

    def camera():
        yield set()
        for i in range(12):
            (root / "p.png").write_bytes(_photo(i))
            yield {(MODIFIED, str(root / "p.png"))}
            assert len(kept.read_text().splitlines()) <= 2 + 4

    watch_folder(Scorer("defect-3dcnn-lstm"), root, got.append, state=kept, changes=camera(),
                 clock=Clock())
    assert len(got) == 12
    watch_folder(Scorer("defect-3dcnn-lstm"), root, got.append, state=kept,
                 changes=iter([set()]), clock=Clock())
    assert len(got) == 12  # the last bytes are remembered


def test_heatmaps_are_numbered_on_after_those_there(tmp_path):
    root, maps = tmp_path / "line", tmp_path / "maps"
    root.mkdir()
    maps.mkdir()
    write_heatmap(maps / "00041-old.png", np.zeros((8, 8, 3), np.uint8))
    (maps / "notes-1.png").write_bytes(b"")
    (root / "a.png").write_bytes(_photo(0))
    got: list = []
    watch_folder(Scorer("defect-3dcnn-lstm"), root, got.append, heatmaps=maps,
                 changes=iter([set()]), clock=Clock())
    assert Path(got[0].heatmap).name == "00042-a.png"


def test_heatmaps_of_flagged_photos_only_and_a_heatmap_not_written_holds_up_nothing(
        tmp_path, caplog):
    """heatmaps_of="flagged" (a line's watch): an overlay of each flagged photo only. A
    heatmap that cannot be written (its folder gone: an unmounted disk) is said, and the
    photo's result goes out without it; the watch goes on."""
    import shutil

    root, maps = tmp_path / "line", tmp_path / "maps"
    root.mkdir()
    photos = {"a.png": _photo(0), "b.png": _photo(1, crack=True), "c.png": _photo(2),
              "d.png": _photo(3, crack=True)}
    for name, data in photos.items():
        (root / name).write_bytes(data)
    probe = {Path(r.path).name: r.score
             for r in score_images([root], threshold=0.5, progress=False)}
    # a threshold between the scores, so that some photos are flagged and some are not
    ranked = sorted(probe.values())
    threshold = (ranked[1] + ranked[2]) / 2
    flagged = {n for n, v in probe.items() if v >= threshold}
    assert 0 < len(flagged) < len(photos)
    got: list = []
    watch_folder(Scorer("defect-3dcnn-lstm", threshold=threshold), root, got.append,
                 heatmaps=maps, heatmaps_of="flagged", changes=iter([set()]), clock=Clock())
    assert {Path(r.path).name for r in got if r.heatmap} == flagged
    assert sorted(p.name.split("-", 1)[1] for p in maps.iterdir()) == sorted(flagged)

    line2 = tmp_path / "line2"
    line2.mkdir()
    (line2 / "a.png").write_bytes(_photo(0))

    maps = tmp_path / "maps2"

    def camera():
        yield set()  # a.png, there at the start: its heatmap written
        shutil.rmtree(maps)
        maps.write_text("not a folder any more")  # the heatmaps' disk gone
        for name in ("e.png", "f.png"):
            (line2 / name).write_bytes(_photo(5, crack=True))
            yield {(ADDED, str(line2 / name))}

    got.clear()
    with caplog.at_level("WARNING"):
        watch_folder(Scorer("defect-3dcnn-lstm", threshold=1e-6), line2, got.append,
                     heatmaps=maps, changes=camera(), clock=Clock())
    assert [(Path(r.path).name, r.defect, r.heatmap is not None) for r in got] == \
        [("a.png", True, True), ("e.png", True, False), ("f.png", True, False)]
    for n, name in ((1, "e.png"), (2, "f.png")):
        assert f"heatmap not written: {maps / f'0000{n}-{name}'}: could not write the " \
            "heatmap (Not a directory); the photo's result stands" in caplog.text


def test_score_watch_follows_a_rotated_csv_and_takes_up_its_state(tmp_path, monkeypatch):
    """The CSV is opened for each row: moved away by a log rotation, the next row starts a
    new file with its header. --state: started again, the watch scores nothing it scored."""
    import watchfiles

    root, table, kept = tmp_path / "line", tmp_path / "scores.csv", tmp_path / "state.jsonl"
    root.mkdir()

    def fake_watch(*paths, **kw):
        yield set()
        if not (root / "a.png").exists():
            (root / "a.png").write_bytes(_photo(0))
            yield {(ADDED, str(root / "a.png"))}
            table.rename(tmp_path / "scores.csv.1")  # logrotate's move
            (root / "b.png").write_bytes(_photo(1))
            yield {(ADDED, str(root / "b.png"))}

    monkeypatch.setattr(watchfiles, "watch", fake_watch)
    line = ["manufacturing", "score", str(root), "--watch", "--csv", str(table), "--state",
            str(kept), "--threshold", "0.5"]
    res = CliRunner().invoke(build_cli(), line)
    assert res.exit_code == 0, res.output
    for name, photo in (("scores.csv.1", "a.png"), ("scores.csv", "b.png")):
        with open(tmp_path / name) as f:
            rows = list(csv.reader(f))
        assert rows[0][0] == "path" and [r[0] for r in rows[1:]] == [str(root / photo)]
    res = CliRunner().invoke(build_cli(), line)  # started again: nothing new
    assert res.exit_code == 0, res.output
    assert res.stdout == "" and f"taking up {kept}: 2 photos there" in res.stderr
    res = CliRunner().invoke(build_cli(), line[:4] + ["--csv", str(kept), "--state", str(kept)])
    assert res.exit_code == 2 and "--state and --csv name the same file" in res.output
    res = CliRunner().invoke(build_cli(), line[:3] + ["--state", str(kept)])
    assert res.exit_code == 2 and "--state goes with --watch" in res.output


def test_score_watch_stops_when_its_csv_cannot_be_written(tmp_path, monkeypatch):
    """A row that cannot be appended (disk full, its folder gone) stops the watch with an
    error naming the CSV (exit status 2, so a service manager starts it again), and the
    photo is not kept as scored in --state: started again, it is scored again."""
    import shutil

    import watchfiles

    root, out, kept = tmp_path / "line", tmp_path / "out", tmp_path / "state.jsonl"
    root.mkdir()

    def fake_watch(*paths, **kw):
        yield set()
        shutil.rmtree(out, ignore_errors=True)
        (root / "a.png").write_bytes(_photo(0))
        yield {(ADDED, str(root / "a.png"))}

    monkeypatch.setattr(watchfiles, "watch", fake_watch)
    line = ["manufacturing", "score", str(root), "--watch", "--csv", str(out / "scores.csv"),
            "--state", str(kept), "--threshold", "0.5"]
    res = CliRunner().invoke(build_cli(), line)
    assert res.exit_code == 2
    assert f"--csv {out / 'scores.csv'}: cannot append the row of {root / 'a.png'} (No such " \
        "file or directory); the watch stops" in res.stderr
    assert "watch ended: 0 photos scored" in res.stderr and res.stdout == ""
    monkeypatch.setattr(watchfiles, "watch", lambda *p, **kw: iter([set()]))
    res = CliRunner().invoke(build_cli(), line)
    assert res.exit_code == 0, res.output
    assert res.stdout.split()[-1] == str(root / "a.png")


def test_the_header_read_of_a_watch_csv_is_bounded(tmp_path):
    """The watch reads the first line of a CSV there to check its columns: at most 64 KiB of
    it, so a file with no end of line, or a device of endless bytes given by mistake, is
    refused at once rather than read without end; an empty file (emptied by a rotation) is
    begun anew."""
    import os

    from deepseek.manufacturing.cli import _watch_csv_header
    from deepseek.manufacturing.errors import ManufacturingError

    empty = tmp_path / "scores.csv"
    empty.write_text("")
    assert _watch_csv_header(empty, print)[0] == "path"
    if os.path.exists("/dev/zero"):
        with pytest.raises(ManufacturingError, match="--csv /dev/zero: its columns"):
            _watch_csv_header(Path("/dev/zero"), print)


def test_a_state_another_watch_holds_is_refused(tmp_path):
    """Two watches of one folder would score each photo twice and mix their states."""
    from deepseek.manufacturing.errors import ManufacturingError

    pytest.importorskip("fcntl")
    root, kept = tmp_path / "line", tmp_path / "state.jsonl"
    root.mkdir()
    refused: list[str] = []

    def camera():
        yield set()
        try:  # a second watch started while this one runs
            watch_folder(Scorer("defect-3dcnn-lstm"), root, lambda r: None, state=kept,
                         changes=iter([set()]), clock=Clock())
        except ManufacturingError as exc:
            refused.append(str(exc))

    watch_folder(Scorer("defect-3dcnn-lstm"), root, lambda r: None, state=kept,
                 changes=camera(), clock=Clock())
    assert len(refused) == 1 and "another watch running holds it" in refused[0]
    watch_folder(Scorer("defect-3dcnn-lstm"), root, lambda r: None, state=kept,
                 changes=iter([set()]), clock=Clock())  # once it ended: taken


def test_a_photo_completed_without_a_report_is_scored_not_called_unreadable(tmp_path):
    """Polling (a network share) reports no change made within the second of the one
    before, so the last bytes of a photo written may never be reported: a refused photo
    whose file changed since is tried again, reported or not, and scored."""
    root = tmp_path / "line"
    root.mkdir()
    photo, clock, got = _photo(1), Clock(), []

    def camera():
        yield set()
        (root / "p.png").write_bytes(photo[: len(photo) // 3])
        yield {(ADDED, str(root / "p.png"))}
        (root / "p.png").write_bytes(photo)  # its last bytes: no report
        clock.now += 1
        yield set()
        clock.now += 10  # past the settle time: had it not been tried, it would be reported
        yield set()

    watch_folder(Scorer("defect-3dcnn-lstm"), root, got.append, settle_s=5, changes=camera(),
                 clock=clock)
    assert [type(r).__name__ for r in got] == ["ImageScore"]


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".webp", ".jpg"])
def test_a_photo_still_being_written_is_not_decoded(tmp_path, suffix):
    """A PNG without its IEND chunk, a JPEG without its EOI marker, a BMP or WebP shorter
    than its header says, a TIFF whose strips lie past its end: being written, so not
    decoded (the decoders would refuse it, with lines of their own on stderr) until whole,
    or until it has stayed as it is for a second (a JPEG with bytes after its end: then
    scored)."""
    from deepseek.manufacturing import watch

    root = tmp_path / "line"
    root.mkdir()
    gray = cv2.imdecode(np.frombuffer(_photo(1, h=96, w=128), np.uint8), 0)
    whole = cv2.imencode(suffix, gray, [cv2.IMWRITE_WEBP_QUALITY, 101] if suffix == ".webp"
                         else [])[1].tobytes()
    clock, got, reads = Clock(), [], []
    scorer = Scorer("defect-3dcnn-lstm")
    read = scorer.read
    scorer.read = lambda p, *a, **k: (reads.append(p.name), read(p, *a, **k))[1]
    photo = root / f"p{suffix}"

    def camera():
        yield set()
        for part in (3, 2):  # written in parts, each reported, each tick a look
            photo.write_bytes(whole[: len(whole) // part])
            yield {(ADDED, str(photo))}
            clock.now += 0.5
            yield set()
        photo.write_bytes(whole + (b"\0" * 64 if suffix == ".jpg" else b""))  # padded after
        yield {(MODIFIED, str(photo))}  # a JPEG's end: decoded once it stays as it is
        clock.now += watch.QUIET_S
        yield set()

    watch_folder(scorer, root, got.append, changes=camera(), clock=clock)
    assert reads == [photo.name]  # decoded once: when whole
    assert [(Path(r.path).name, type(r).__name__) for r in got] == \
        [(photo.name, "ImageScore")]


def test_a_folder_made_in_the_watched_one_is_read_when_it_is_told(tmp_path):
    """A camera's folder per day or per batch: photos written into it before the system
    watched it are reported by no change of their own; they are found when the folder is."""
    root = tmp_path / "line"
    root.mkdir()
    got: list = []

    def camera():
        yield set()
        (root / "day2" / ".tmp").mkdir(parents=True)
        (root / "day2" / "p.png").write_bytes(_photo(2))
        (root / "day2" / ".tmp" / "h.png").write_bytes(_photo(3))  # hidden: not a part
        yield {(ADDED, str(root / "day2"))}
        (root / "day2" / "q.png").write_bytes(_photo(4))  # written once watched: told
        yield {(ADDED, str(root / "day2" / "q.png")), (ADDED, str(root / "day2"))}

    watch_folder(Scorer("defect-3dcnn-lstm"), root, got.append, changes=camera(),
                 clock=Clock())
    assert [Path(r.path).name for r in got] == ["p.png", "q.png"]


def test_a_backlog_is_handed_over_photo_by_photo_and_a_stop_ends_it(tmp_path, caplog):
    """The photos there at the start are handed over one by one as each is scored (not all
    at the end), and a stop (SIGTERM) ends the watch after the photo in hand; with its
    state, the watch started again scores the rest."""
    root, kept = tmp_path / "line", tmp_path / "state.jsonl"
    root.mkdir()
    for i in range(4):
        (root / f"p{i}.png").write_bytes(_photo(i))
    scorer = Scorer("defect-3dcnn-lstm")
    scored_when_handed: list[int] = []
    stop = threading.Event()
    score = scorer.score
    calls: list[str] = []
    scorer.score = lambda p, *a, **k: (calls.append(p.name), score(p, *a, **k))[1]

    def emit(r):
        scored_when_handed.append(len(calls))
        if len(scored_when_handed) == 2:
            stop.set()  # systemctl stop, while the backlog is scored

    with caplog.at_level("WARNING", logger="deepseek.manufacturing.watch"):
        watch_folder(scorer, root, emit, state=kept, stop=stop, changes=iter([set(), set()]),
                     clock=Clock())
    assert scored_when_handed == [1, 2]  # each handed over once scored; none after the stop
    assert "2 photo(s) not scored before the watch ended" in caplog.text
    assert "scored when it is started again with its --state" in caplog.text
    rest: list = []
    watch_folder(scorer, root, rest.append, state=kept, changes=iter([set()]), clock=Clock())
    assert [Path(r.path).name for r in rest] == ["p2.png", "p3.png"]


def test_a_state_follows_the_folder_as_given_when_its_link_is_moved(tmp_path):
    """A service watches /srv/line/line3, a link to a share; the share moved (the link
    pointed elsewhere) is still its folder: the state is taken up, the photos copied over
    unchanged are not scored again, a different one under a known name is."""
    import shutil

    old, link, kept = tmp_path / "nas1", tmp_path / "line3", tmp_path / "state.jsonl"
    old.mkdir()
    for i in range(2):
        (old / f"p{i}.png").write_bytes(_photo(i))
    link.symlink_to(old)
    scorer, got = Scorer("defect-3dcnn-lstm"), []
    watch_folder(scorer, link, got.append, state=kept, changes=iter([set()]), clock=Clock())
    new = tmp_path / "nas2"
    shutil.copytree(old, new, copy_function=shutil.copy2)  # times kept, as a migration does
    (new / "p1.png").write_bytes(_photo(7))
    link.unlink()
    link.symlink_to(new)
    watch_folder(scorer, link, got.append, state=kept, changes=iter([set()]), clock=Clock())
    assert [Path(r.path).name for r in got] == ["p0.png", "p1.png", "p1.png"]


def test_a_photo_written_during_a_long_backlog_waits_for_one_slice_of_it(tmp_path,
                                                                          monkeypatch):
    """The photos there at the start (a weekend's, after an outage) are scored a slice at a
    time; a photo the camera writes meanwhile is scored after the slice in hand, not after
    the whole backlog."""
    from deepseek.manufacturing import watch

    monkeypatch.setattr(watch, "BACKLOG_SLICE_S", 1.0)
    root = tmp_path / "line"
    root.mkdir()
    for i in range(4):
        (root / f"b{i}.png").write_bytes(_photo(i))
    clock, got = Clock(), []

    def emit(r):
        got.append(Path(r.path).name)
        clock.now += 1  # each photo takes the slice's length

    def camera():
        yield set()  # the folder listed: the backlog
        (root / "new.png").write_bytes(_photo(9))
        yield {(ADDED, str(root / "new.png"))}
        for _ in range(4):
            yield set()

    watch_folder(Scorer("defect-3dcnn-lstm"), root, emit, changes=camera(), clock=clock)
    assert got == ["b0.png", "new.png", "b1.png", "b2.png", "b3.png"]


def _trained(path: Path, threshold: float) -> str:
    """Weights as `train --folder` writes them (the packaged network, its threshold stored),
    written whole to ``path`` (replacing what is there, as a training run does)."""
    import os

    from deepseek.loader import ModelLoader, save_model

    m = ModelLoader.load("defect-3dcnn-lstm", device="cpu")
    tmp = path.with_name("new-" + path.name)
    save_model(m.module, tmp, architecture="defect-3dcnn-lstm", config=m.config,
               extra={"threshold": threshold})
    os.replace(tmp, path)
    return str(path)


def test_a_watch_loads_its_model_again_on_sighup_and_each_result_names_it(tmp_path,
                                                                        monkeypatch):
    """SIGHUP (systemctl reload) loads the model again between two photos: the photos after
    it are decided by the retrained weights; weights that do not load are said and the
    model loaded before goes on. Each CSV row and JSON line names the model's SHA-256, the
    threshold and the time; a CSV with other columns is refused untouched; a watch started
    again with another model says that the photos it scored keep their results. A service
    manager (systemd's Type=notify) is told when the watch is ready, each photo's status,
    the reloads and the stop."""
    import os
    import signal

    import watchfiles

    from deepseek.loader.base import file_sha256

    root, run, table = tmp_path / "line", tmp_path / "run", tmp_path / "scores.csv"
    kept = tmp_path / "state.jsonl"
    root.mkdir()
    run.mkdir()
    weights = _trained(run / "model.safetensors", 0.5)
    first = file_sha256(weights)
    shas: dict[str, str] = {}

    def camera(*paths, **kw):
        yield set()
        (root / "a.png").write_bytes(_photo(0))
        yield {(ADDED, str(root / "a.png"))}
        _trained(run / "model.safetensors", 0.4)  # retrained
        shas["second"] = file_sha256(weights)
        signal.raise_signal(signal.SIGHUP)  # systemctl reload
        (root / "b.png").write_bytes(_photo(1))
        yield {(ADDED, str(root / "b.png"))}
        (run / "model.safetensors").write_bytes(b"not weights")  # a bad copy
        signal.raise_signal(signal.SIGHUP)
        (root / "c.png").write_bytes(_photo(2))
        yield {(ADDED, str(root / "c.png"))}

    monkeypatch.setattr(watchfiles, "watch", camera)
    line = ["manufacturing", "score", str(root), "--watch", "--json", "--csv", str(table),
            "--state", str(kept), "--model", weights]
    import socket

    from tests.shared import pending_datagrams as _pending

    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # systemd's, Type=notify
    manager.bind("\0" + f"deepseek-watch-{os.getpid()}")
    monkeypatch.setenv("NOTIFY_SOCKET", f"@deepseek-watch-{os.getpid()}")
    with manager:
        res = CliRunner().invoke(build_cli(), line)
        told = _pending(manager)
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert res.exit_code == 0, res.output
    kinds = [m.split("=")[0] if not m.startswith("STATUS=") or "photos scored" not in m
             else "photo" for m in told]
    assert kinds == ["READY", "photo", "RELOADING", "READY", "photo", "RELOADING", "READY",
                     "photo", "STOPPING"]
    assert told[0] == f"READY=1\nSTATUS=watching {root}: 0 photos there to score"
    assert told[3].startswith("READY=1\nSTATUS=scoring with sha256 ")
    assert told[6].startswith("READY=1\nSTATUS=reload failed, still scoring with sha256 ")
    assert told[7].startswith("STATUS=3 photos scored, ")
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    assert [(Path(r["path"]).name, r["model_sha256"], r["threshold"]) for r in rows] == \
        [("a.png", first, 0.5), ("b.png", shas["second"], 0.4),
         ("c.png", shas["second"], 0.4)]  # the bad copy did not load: the one before goes on
    assert f"watching {root} with {weights} (sha256 {first[:12]}, threshold 0.5;" in res.stderr
    assert f"reload: scoring with {weights} (sha256 {shas['second'][:12]}, threshold 0.4) " \
        f"from the next photo on; before, sha256 {first[:12]}, threshold 0.5" in res.stderr
    assert f"reload: {weights} did not load (" in res.stderr
    assert f"still scoring with the model loaded before (sha256 {shas['second'][:12]}, " \
        "threshold 0.4)" in res.stderr
    with open(table) as f:
        got = list(csv.DictReader(f))
    assert [(t["model_sha256"], float(t["threshold"]), t["scored_at"]) for t in got] == \
        [(r["model_sha256"], r["threshold"], r["scored_at"]) for r in rows]
    assert json.loads(kept.read_text().splitlines()[0])["model_sha256"] == shas["second"]

    # started again with another model: what was scored keeps its results, said once
    third = _trained(run / "model.safetensors", 0.3)
    monkeypatch.setattr(watchfiles, "watch", lambda *p, **kw: iter([set()]))
    res = CliRunner().invoke(build_cli(), line)
    assert res.exit_code == 0, res.output
    assert res.stdout == ""
    assert f"it scored with the model sha256 {shas['second'][:12]} at threshold 0.4 when it " \
        f"stopped, not with this one (sha256 {file_sha256(third)[:12]} at threshold 0.3): " \
        "the photos it scored keep their results" in res.stderr
    res = CliRunner().invoke(build_cli(), line)
    assert res.exit_code == 0 and "when it stopped" not in res.stderr

    # a CSV with other columns (another tool's) is left as it is
    other = tmp_path / "other.csv"
    other.write_text("path,score\nx.png,0.1\n")
    res = CliRunner().invoke(build_cli(), [*line[:5], "--csv", str(other), "--model", weights])
    assert res.exit_code == 2
    assert f"--csv {other}: its columns (path,score) are not those the watch writes (path," \
        in res.stderr and "give the watch a new CSV, or move this one away" in res.stderr
    assert other.read_text() == "path,score\nx.png,0.1\n"
    # one an earlier version of the watch began (a line's service after an upgrade): moved
    # aside as it is, and a new one begun with the new columns
    earlier = "path,width,height,score,defect,x0,y0,x1,y1,heatmap,error\nx.png,9,9,0.1,0,,,,,,\n"
    other.write_text(earlier)
    (root / "d.png").write_bytes(_photo(3))
    res = CliRunner().invoke(build_cli(), [*line[:5], "--csv", str(other), "--model", weights])
    assert res.exit_code == 0, res.output
    (aside,) = tmp_path.glob("other.before-*Z.csv")
    assert aside.read_text() == earlier
    assert f"--csv {other}: begun by an earlier version without the columns threshold, " \
        f"model_sha256, scored_at: moved, as it was, to {aside}; a new other.csv is begun" \
        in res.stderr
    with open(other) as f:
        assert [Path(r["path"]).name for r in csv.DictReader(f)] == \
            ["a.png", "b.png", "c.png", "d.png"]  # no --state here: the folder scored


def test_a_watch_stopped_twice_ends_once_with_its_summary(tmp_path, monkeypatch):
    """A stop sent twice (a service manager's SIGTERM, and the wrapper's that passes it on):
    the first ends the watch after the photo in hand, the second, as the watch ends, is its
    own handler's (a flag, no lock), and the summary is said; the handler given to the watch
    is put back after, never run. Two reloads asked at once load the model once or twice,
    never hang."""
    import os
    import signal

    import watchfiles

    from deepseek.service import ServiceNotifier

    root = tmp_path / "line"
    root.mkdir()
    weights = _trained(tmp_path / "model.safetensors", 0.5)
    told: list[str] = []

    def camera(*paths, **kw):
        yield set()
        signal.raise_signal(signal.SIGHUP)  # systemctl reload, twice in a row
        signal.raise_signal(signal.SIGHUP)
        (root / "a.png").write_bytes(_photo(0))
        yield {(ADDED, str(root / "a.png"))}
        os.kill(os.getpid(), signal.SIGTERM)  # systemctl stop
        (root / "b.png").write_bytes(_photo(1))
        if kw["stop_event"].is_set():  # as watchfiles ends on its stop_event
            return
        yield {(ADDED, str(root / "b.png"))}

    def stopping(self):  # the stop sent again as the watch ends
        os.kill(os.getpid(), signal.SIGTERM)
        told.append("stopping")

    monkeypatch.setattr(watchfiles, "watch", camera)
    monkeypatch.setattr(ServiceNotifier, "stopping", stopping)
    with own_sigterm_handler() as handler:  # the one the command is given
        res = CliRunner().invoke(build_cli(), ["manufacturing", "score", str(root), "--watch",
                                               "--json", "--model", weights])
    assert res.exit_code == 0, res.output
    assert [Path(json.loads(x)["path"]).name for x in res.stdout.splitlines()] == ["a.png"]
    assert res.stderr.count("reload: scoring with ") == 1  # asked twice before one photo
    assert "watch ended: 1 photos scored, 0 flagged as defects, 0 unreadable" in res.stderr
    assert told == ["stopping"] and handler["calls"] == 0 \
        and handler["after"] is handler["own"]


@pytest.mark.skipif(not hasattr(__import__("os"), "openpty"), reason="no pseudo-terminals")
def test_a_watch_run_in_a_terminal_ends_when_the_terminal_closes_and_reloads_on_kill_hup(
        tmp_path):
    """SIGHUP means a reload to a service, and to a run in a terminal that is still open
    (``kill -HUP``); the terminal's own hangup, as its window closes, ends the run as
    Ctrl-C does (its results kept, its last words not a write error). (``nohup``:
    tests/core/test_service.py.)"""
    import signal
    import sys

    from tests.shared import in_a_terminal, told_until
    from tests.shared import pending_datagrams as _pending

    root, table = tmp_path / "line", tmp_path / "scores.csv"
    root.mkdir()
    (root / "a.png").write_bytes(_photo(0))
    deepseek = str(Path(sys.executable).with_name("deepseek"))
    args = [deepseek, "manufacturing", "score", str(root), "--watch", "--csv", str(table),
            "--threshold", "0.5"]

    with in_a_terminal(args, notify=True) as term:
        told = told_until(term.manager, "READY=1")
        told += told_until(term.manager, "STATUS=1 photos scored")
        term.proc.send_signal(signal.SIGHUP)  # kill -HUP, the terminal open: a reload
        told += told_until(term.manager, "READY=1\nSTATUS=scoring with ")
        term.hang_up()  # the terminal window closed
        rc = term.proc.wait(timeout=120)
        told += _pending(term.manager)
    assert rc == 0 and told[-1] == "STOPPING=1"
    assert sum(m.startswith("RELOADING=1") for m in told) == 1  # the hangup did not reload
    rows = table.read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith(str(root / "a.png"))


def test_a_watch_that_falls_behind_says_so_once_a_minute(tmp_path):
    """Photos that come faster than they are scored: a photo scored more than BEHIND_S
    after it was written is said (its delay, the photos waiting), at most once a minute;
    a backlog at the start (listed, not told of) is not falling behind."""
    from deepseek.manufacturing.watch import BEHIND_EVERY_S, BEHIND_S

    root = tmp_path / "line"
    root.mkdir()
    for i in range(3):  # a backlog: scored slowly, but not behind
        (root / f"old{i}.png").write_bytes(_photo(i))
    clock = Clock()

    class Slow(Scorer):  # each photo takes 4 s to score (a slow machine)
        def score(self, *a, **k):
            clock.now += 4
            return super().score(*a, **k)

    def camera():
        yield set()
        for burst in (("a", "b", "c"), ("d", "e"), ("f", "g")):
            for n in burst:
                (root / f"{n}.png").write_bytes(_photo(ord(n)))
            yield {(ADDED, str(root / f"{n}.png")) for n in burst}
            if burst[0] == "d":
                clock.now += BEHIND_EVERY_S  # a minute later: said again if it lasts

    said: list[str] = []
    got: list = []
    watch_folder(Slow("defect-3dcnn-lstm", threshold=0.5), root, got.append, say=said.append,
                 changes=camera(), clock=clock)
    assert len(got) == 10
    behind = [s for s in said if s.startswith("falling behind")]
    # a: 4 s after it was told (not yet behind); b: 8 s, said; c, d, e within the minute
    # are not; a minute on, f (4 s) is not behind and g (8 s) is said
    assert 4 < BEHIND_S < 8 and len(behind) == 2
    assert behind[0].startswith(f"falling behind: {root / 'b.png'} was scored 8 s after it "
                                "was written (3 more waiting)")  # c, two of the backlog
    assert behind[1].startswith(f"falling behind: {root / 'g.png'} was scored 8 s after it "
                                "was written (0 more waiting)")


def test_a_photo_that_stops_the_watch_twice_is_passed_over(tmp_path, caplog):
    """A photo whose decoding or scoring kills the watch (out of memory, a decoder stuck
    until the watchdog stops it) would stop the line's scoring for good: started again, the
    watch tries it once more, and after a second stop in a row it reports it unreadable and
    scores the others; the photo is tried again once it changes."""
    from deepseek.manufacturing.watch import MAX_TRIES

    class Killed(BaseException):  # the process killed in the middle of the photo
        pass

    class Deadly(Scorer):
        def read(self, path, data=None):
            if Path(path).name == "bad.png":
                raise Killed
            return super().read(path, data)

    root, kept = tmp_path / "line", tmp_path / "state.jsonl"
    root.mkdir()
    for name in ("a.png", "bad.png", "c.png"):
        (root / name).write_bytes(_photo(len(name)))
    deadly = Deadly("defect-3dcnn-lstm", threshold=0.5)
    in_hand = tmp_path / "state.jsonl.scoring"
    got: list = []

    def run(scorer):
        watch_folder(scorer, root, got.append, state=kept, changes=iter([set()]),
                     clock=Clock())

    for tries in range(1, MAX_TRIES + 1):
        with pytest.raises(Killed):
            run(deadly)
        assert json.loads(in_hand.read_text()) == {"path": "bad.png", "tries": tries}
    assert [Path(r.path).name for r in got] == ["a.png"]
    assert "tried once more" in caplog.text
    got.clear()
    run(deadly)  # the third start: passed over, the others scored
    assert [(Path(r.path).name, type(r).__name__) for r in got] == \
        [("bad.png", "UnreadableImage"), ("c.png", "ImageScore")]
    assert f"the watch was stopped {MAX_TRIES} times in a row while it decoded or scored " \
        "this photo" in got[0].error and not in_hand.exists()
    got.clear()
    run(deadly)
    assert got == []  # reported once, until it changes
    (root / "bad.png").write_bytes(_photo(99))
    run(Scorer("defect-3dcnn-lstm", threshold=0.5))
    assert [(Path(r.path).name, type(r).__name__) for r in got] == [("bad.png", "ImageScore")]


def test_a_photo_is_read_once_for_its_score_and_its_digest(tmp_path, monkeypatch):
    """The bytes decoded are the bytes digested (a share is not read twice for a photo, and
    a photo rewritten between the two reads cannot be kept under the other's digest)."""
    import hashlib

    import deepseek.manufacturing.watch as watch_module

    root, kept = tmp_path / "line", tmp_path / "state.jsonl"
    root.mkdir()
    for i in range(2):
        (root / f"p{i}.png").write_bytes(_photo(i))
    reads: list[str] = []
    real = watch_module.file_bytes
    monkeypatch.setattr(watch_module, "file_bytes",
                        lambda p: reads.append(Path(p).name) or real(p))
    monkeypatch.setattr(watch_module, "_file_digest", lambda p: pytest.fail("read again"))
    got: list = []
    watch_folder(Scorer("defect-3dcnn-lstm", threshold=0.5), root, got.append, state=kept,
                 changes=iter([set()]), clock=Clock())
    assert len(got) == 2 and reads == ["p0.png", "p1.png"]
    lines = [json.loads(x) for x in kept.read_text().splitlines()[1:]]
    assert {e["path"]: e["sha256"] for e in lines} == {
        f"p{i}.png": hashlib.sha256(_photo(i)).hexdigest() for i in range(2)}


def test_a_photo_too_large_for_the_memory_is_reported_and_the_watch_goes_on(tmp_path):
    """A photo the process has not the memory to decode or score (MemoryError) is reported
    unreadable at once, naming the photo and the fix, and the others are scored; it is not
    tried again until it changes."""
    root, kept = tmp_path / "line", tmp_path / "state.jsonl"
    root.mkdir()
    for name in ("a.png", "big.png", "huge.png", "c.png"):
        (root / name).write_bytes(_photo(len(name)))

    from tests.manufacturing.test_score import short_of_memory

    Small = short_of_memory(decoding="huge.png", scoring="big.png")
    got: list = []

    def run():
        watch_folder(Small("defect-3dcnn-lstm", threshold=0.5), root, got.append,
                     state=kept, changes=iter([set()]), clock=Clock())

    run()
    assert [(Path(r.path).name, type(r).__name__) for r in got] == [
        ("a.png", "ImageScore"), ("big.png", "UnreadableImage"),
        ("c.png", "ImageScore"), ("huge.png", "UnreadableImage")]
    assert "big.png: not enough memory to score this photo (" in got[1].error
    assert "huge.png: not enough memory to decode this photo (" in got[3].error
    assert "MemoryMax=" in got[1].error and not (tmp_path / "state.jsonl.scoring").exists()
    got.clear()
    run()
    assert got == []  # reported once, until they change
