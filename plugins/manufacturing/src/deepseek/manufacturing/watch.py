"""Photos scored as a camera writes them into a folder (``score --watch``).

Many inspection cameras, and the PCs beside them, save each photo into a folder (often a
network share) rather than sending it anywhere. :func:`watch_folder` scores the part photos
there now, then each new or rewritten one once its file is complete, as ``score`` scores a
folder (the same photos left out: masks, labels, heatmaps, hidden files), and hands each
result over at once. Changes are seen through the operating system (inotify) or, on a
network share whose changes the system is not told of, by polling (``poll``), both with
watchfiles.

A file is complete when it decodes: a JPEG cut short, a PNG without its end or a TIFF whose
strips are not all there is refused by the readers, never scored as what is there so far,
so a photo caught while it is written waits for its next change (its size and time looked at
on every tick, so a change the system does not report, as polling misses one made within
the second of the one before, is not missed). One that is still refused
``settle_s`` seconds after its last change is handed over as unreadable (with the reader's
reason), once, until it changes again. A photo is scored again only when its file changes
(size or modification time) and its bytes differ from those scored, so neither the
writer's last touches nor a copy of the same photo over it scores it twice.

A watch runs as a service that is started again (a restart, a reboot, its share mounted
again). With a state file (``score --watch --state FILE``, :class:`WatchState`) it keeps what
it has scored across those: started again, it scores only the photos new or changed since,
those written while it was stopped included, rather than the whole folder again (or, with
``--new-only``, none of those written while it was stopped). A photo's line goes into the
file after its result is handed over, so a watch stopped in between scores that photo again
rather than losing it. Heatmaps are numbered on after the last in their folder, never
written over.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepseek.manufacturing.errors import ManufacturingError
from deepseek.manufacturing.images import IMAGE_SUFFIXES, file_bytes, part_images
from deepseek.manufacturing.score import (
    ImageScore,
    Scorer,
    UnreadableImage,
    check_heatmaps_of,
    heatmap_name,
    no_memory,
)
from deepseek.service import ServiceNotifier

log = logging.getLogger(__name__)

#: seconds a photo that does not decode waits for a change before it is called unreadable
SETTLE_S = 10.0
#: milliseconds between the checks of photos that wait (and of the stop event): also the
#: longest a backlog waits between two slices when nothing is told (at 500 ms a 399-photo
#: backlog took a third longer; a watch with nothing to do uses 2-3 % of a core either way)
TICK_MS = 100
#: seconds between two looks at the folder when polling (``poll=True``)
POLL_S = 0.3
#: seconds of a backlog (the photos listed at the start, or in a folder moved in) scored
#: before the watch looks for changes again: a photo written meanwhile waits for one slice
BACKLOG_SLICE_S = 2.0
#: seconds a photo still being written by its header or end (a PNG or JPEG without its end
#: marker, a BMP, WebP or TIFF shorter than its header says) must stay as it is before it is
#: decoded anyway (one with bytes after its end; never longer than the settle time); while
#: it changes, it is not decoded
QUIET_S = 1.0
#: seconds from a photo's last change to its result past which the watch says it is falling
#: behind (photos come faster than they are scored), and the seconds between two such lines
BEHIND_S = 5.0
BEHIND_EVERY_S = 60.0
#: watches in a row that may be stopped while they decode or score one photo (killed out of
#: memory, stuck and stopped by a watchdog) before the next passes it over as unreadable:
#: one photo that kills the watch must not stop the line's scoring for good
MAX_TRIES = 2
#: what a photo reported unreadable for want of memory is told
AGAIN = "; passed over until it changes"
#: photos remembered as scored past which those no longer in the folder are forgotten (a
#: removal the system did not report): what a watch holds follows the folder, not the days
PRUNE_AT = 10_000

Result = ImageScore | UnreadableImage
Stamp = tuple[int, int]  # a file's size and modification time (ns)

#: the key of a state file's first line (its value: the format's version)
STATE_KIND = "deepseek-watch-state"
#: what a state file's first line keeps of the model the photos are scored with
MODEL_KEYS = ("model_sha256", "threshold")


def model_named(scorer: Scorer) -> dict[str, Any]:
    """What names the model ``scorer`` decides with, as each result names it: the SHA-256
    of its file and the threshold."""
    return {"model_sha256": scorer.model_sha256, "threshold": scorer.threshold}


class WatchState:
    """The file where a watch keeps what it has scored (``score --watch --state FILE``),
    across its restarts. JSON Lines: a first line naming the folder it is of and the number
    of the next result (a heatmap's), then one line per photo scored, reported unreadable
    or passed over (its path below the folder, size, modification time, SHA-256 of the bytes
    scored, result number), or gone from the folder; a later line of a path replaces the
    earlier. The file is written anew (to a temporary name, then renamed over it) at the
    start and whenever it holds twice the lines of what is remembered.

    A last line cut short (the watch killed while writing it) is passed over: its photo is
    scored again. A file that is not a watch's state, or the state of another folder, is
    refused before anything is written to it, and so is a state another watch running
    holds (a lock on ``<file>.lock`` while the watch runs, where the system has them)."""

    def __init__(self, path: str | Path, root: str | Path) -> None:
        # the folder as the watch is given it (a link to a share moved elsewhere is still
        # the same watched folder to a service)
        self.path, self.folder = Path(path), os.path.abspath(root)
        self.lines = 0  # lines in the file
        #: the model the photos are scored with, as the first line names it (its SHA-256
        #: and threshold: :func:`model_named`)
        self.model: dict[str, Any] = {}
        #: the model the first line of the file as found named (empty: none, or a file of
        #: an earlier version)
        self.found_model: dict[str, Any] = {}
        self._out: Any = None
        self._lock: Any = None

    def hold(self) -> None:
        """Take the state for this watch: refused while another watch holds it."""
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks here
            return
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            fh = open(lock, "a")
        except OSError as exc:
            raise self._error(f"cannot make its lock {lock} ({exc.strerror})") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise self._error("another watch running holds it (two watches of one folder "
                              "would score each photo twice); stop that one first") from None
        self._lock = fh

    def load(self) -> tuple[dict[str, tuple[Stamp, str]], int] | None:
        """What the file remembers: path below the folder -> (stamp, SHA-256; "" for a photo
        not read), and the number of the next result; None when there is no state yet (no
        file, or an empty one)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._error(f"cannot read it ({exc.strerror})") from None
        if not raw:
            return None
        lines = raw.split(b"\n")
        if lines[-1]:
            log.warning("%s: its last line is cut short (the watch was stopped while writing "
                        "it); that photo is scored again", self.path)
        head = _json_line(lines[0])
        if not isinstance(head, dict) or head.get(STATE_KIND) != 1:
            raise self._error("not the state a watch keeps (its first line is not the one "
                              "`score --watch --state` writes); give --state a file of its "
                              "own (it is made)")
        if head.get("folder") != self.folder:
            raise self._error(f"the state of the watch of {head.get('folder')}, not of "
                              f"{self.folder}; give each watched folder its own --state file")
        seen: dict[str, tuple[Stamp, str]] = {}
        self.found_model = {k: head[k] for k in MODEL_KEYS if k in head}
        nxt = _count(head.get("next"))
        if nxt is None:
            raise self._error("line 1: its number of the next result is not a count; remove "
                              "the file to start afresh (the folder is then scored again)")
        for i, line in enumerate(lines[1:-1], start=2):
            e = _json_line(line)
            rel = e.get("path") if isinstance(e, dict) else None
            if not isinstance(rel, str) or not _below(rel):
                raise self._bad_line(i, "no path below the folder")
            if e.get("gone") is True:
                seen.pop(rel, None)
                continue
            size, mtime, n = _count(e.get("size")), _count(e.get("mtime_ns")), _count(e.get("n"))
            digest = e.get("sha256")
            if None in (size, mtime) or not isinstance(digest, str) or \
                    ("n" in e and n is None):
                raise self._bad_line(i, "its size, time, SHA-256 or number is not one")
            seen[rel] = ((size, mtime), digest)  # type: ignore[assignment]
            if n is not None:
                nxt = max(nxt, n + 1)
        return seen, nxt

    def rewrite(self, remembered: dict[str, tuple[Stamp, str]], nxt: int) -> None:
        """Write the file anew with what is remembered (to a temporary name beside it, then
        renamed over it: a watch stopped meanwhile leaves the file as it was)."""
        from deepseek.paths import written_whole

        self.close()
        try:
            with written_whole(self.path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
                fh.write(json.dumps({STATE_KIND: 1, "folder": self.folder, "next": nxt,
                                     **self.model}) + "\n")
                for rel in sorted(remembered):
                    (size, mtime), digest = remembered[rel]
                    fh.write(json.dumps({"path": rel, "size": size, "mtime_ns": mtime,
                                         "sha256": digest}) + "\n")
            self._out = open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            raise self._error(f"cannot write it ({exc.strerror})") from None
        self.lines = 1 + len(remembered)

    def add(self, rel: str, stamp: Stamp, digest: str, n: int | None = None) -> None:
        """A photo scored (``n``: its result's number), reported or passed over."""
        e: dict[str, Any] = {"path": rel, "size": stamp[0], "mtime_ns": stamp[1],
                             "sha256": digest}
        if n is not None:
            e["n"] = n
        self._write(e)

    def gone(self, rel: str) -> None:
        """A photo no longer in the folder."""
        self._write({"path": rel, "gone": True})

    def close(self) -> None:
        """Close the file (each line is out already)."""
        if self._out is not None:
            self._out.close()
            self._out = None

    @property
    def in_hand_path(self) -> Path:
        """The file naming the photo the watch is decoding or scoring (``<file>.scoring``):
        there while it is, removed after; found at a start, that photo stopped the watch
        before it (killed out of memory, or stuck and stopped by its watchdog)."""
        return self.path.with_name(self.path.name + ".scoring")

    def in_hand(self) -> tuple[str, int] | None:
        """The photo (below the folder) whose decoding or scoring a watch before this one
        did not finish, and how many watches in a row did not; None when the last ended
        each photo it began (or the file is cut short by the kill)."""
        try:
            e = _json_line(self.in_hand_path.read_bytes())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._error(f"cannot read {self.in_hand_path.name} ({exc.strerror})") from None
        rel, n = (e.get("path"), _count(e.get("tries"))) if isinstance(e, dict) else (None, None)
        return (rel, n) if isinstance(rel, str) and _below(rel) and n else None

    def begin(self, rel: str, tries: int) -> None:
        """Note that the photo ``rel`` is in hand (its ``tries``-th watch on it)."""
        try:
            self.in_hand_path.write_text(json.dumps({"path": rel, "tries": tries}) + "\n")
        except OSError as exc:
            raise self._error(f"cannot write {self.in_hand_path.name} ({exc.strerror})"
                              ) from None

    def end(self) -> None:
        """Note that the photo in hand is done with (scored, or refused as not whole)."""
        self.in_hand_path.unlink(missing_ok=True)

    def release(self) -> None:
        """Close the file and let another watch take the state."""
        self.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _write(self, entry: dict[str, Any]) -> None:
        try:
            self._out.write(json.dumps(entry) + "\n")
            self._out.flush()
        except OSError as exc:
            raise self._error(f"cannot write it ({exc.strerror}); the watch stops, its "
                              "last photo is scored again when it is started again") from None
        self.lines += 1

    def _error(self, what: str) -> ManufacturingError:
        return ManufacturingError(f"--state {self.path}: {what}")

    def _bad_line(self, i: int, why: str) -> ManufacturingError:
        return self._error(f"line {i} is not a line a watch writes ({why}); remove the file "
                           "to start afresh (the folder's photos are then scored again)")


def _json_line(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


def _count(v: Any) -> int | None:
    """``v`` when it is a whole number >= 0 (not a bool), else None."""
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _below(rel: str) -> bool:
    """Whether ``rel`` is a path below a folder (not absolute, no ``..``)."""
    p = Path(rel)
    return bool(rel) and not p.is_absolute() and ".." not in p.parts


_HEATMAP_NAME = re.compile(r"(\d{5,})-.*\.png")  # what score.heatmap_name writes


def next_heatmap_number(folder: Path | None) -> int:
    """One past the largest ``NNNNN`` of the heatmaps named ``NNNNN-<stem>.png`` in
    ``folder`` (0 when none): a watch started again numbers on, never writing over one."""
    if folder is None or not folder.is_dir():
        return 0
    nums = [int(m.group(1)) for f in os.listdir(folder)
            if (m := _HEATMAP_NAME.fullmatch(f))]
    return max(nums, default=-1) + 1


@dataclass
class _Waiting:
    changed: float  # the clock at the file's last change seen
    error: str = ""  # why it was refused
    stamp: Stamp | None = None  # the file's when it was refused
    seen: Stamp | None = None  # the file's when last looked at
    since: float = 0.0  # the clock when it was first seen so


class FolderWatch:
    """What :func:`watch_folder` knows of a folder: the photos scored (with the file's size
    and modification time then) and the photos that wait to be complete. ``clock``: seconds,
    monotonic (a test's own). ``state``: the file that keeps what is remembered across
    restarts (:class:`WatchState`, loaded by :func:`watch_folder`)."""

    def __init__(self, scorer: Scorer, root: str | Path, *, settle_s: float = SETTLE_S,
                 heatmaps: str | Path | None = None, state: WatchState | None = None,
                 clock: Callable[[], float] = time.monotonic, heatmaps_of: str = "all"
                 ) -> None:
        if settle_s < 0:
            raise ManufacturingError(f"settle={settle_s}: give the seconds (0 or more) a photo "
                                     "that does not decode waits for its file to change")
        self.scorer, self.root, self.settle_s, self.clock = scorer, Path(root), settle_s, clock
        self._roots = {Path(os.path.abspath(root)), Path(root).resolve()}
        self.heatmaps = None if heatmaps is None else Path(heatmaps).resolve()
        self.heatmaps_of = check_heatmaps_of(heatmaps_of)
        if self.heatmaps is not None and Path(root).resolve().is_relative_to(self.heatmaps):
            raise ManufacturingError(f"--heatmaps {heatmaps}: the watched folder {root} lies in "
                                     "it, so no photo would be read (the heatmaps folder is "
                                     "never watched); give the heatmaps a folder of their own")
        self.scored: dict[Path, Stamp] = {}  # (size, mtime) when last scored
        self.digests: dict[Path, str] = {}  # of the bytes scored
        self.waiting: dict[Path, _Waiting] = {}  # told of: scored first
        self.backlog: dict[Path, None] = {}  # listed: scored a slice at a time, in order
        self.count = next_heatmap_number(self.heatmaps)  # the next result's (heatmap's) number
        self.prune_at = PRUNE_AT
        self.state = state
        #: seconds from the last change of the photo last scored to its result (0 for a
        #: photo of the backlog, listed rather than told of)
        self.delay = 0.0
        #: a photo whose decoding or scoring the watches before did not finish, and how many
        #: in a row (:meth:`WatchState.in_hand`)
        self.stopped_on: tuple[Path, int] | None = None
        if state is not None:
            state.model = model_named(scorer)
        self._unsaved: dict[str, tuple[Path, Stamp, str, int]] = {}  # results not handed over

    def swap(self, scorer: Scorer) -> None:
        """Score the photos from now on with ``scorer`` (a model loaded again: the weights
        retrained, a line calibrated anew); the state file names it from now on. Called
        between two photos, once the results made are handed over."""
        self.scorer = scorer
        if self.state is not None:
            self.state.model = model_named(scorer)
            self.state.rewrite(self.remembered(), self.count)

    def local(self, reported: str | Path) -> Path | None:
        """A path the system reported (absolute) as the folder's own paths are written (the
        folder as given, then the path below it); None outside the folder."""
        p = Path(reported)
        for base in self._roots:
            if p.is_relative_to(base):
                return self.root / p.relative_to(base)
        return None

    def wants(self, path: Path) -> bool:
        """Whether ``path`` names what ``score`` would read as a part photo of the folder (by
        its name; a same-stem mask and a heatmap by content when it is scored)."""
        return path.suffix.lower() in IMAGE_SUFFIXES and self._read_below(path)

    def holds(self, path: Path) -> bool:
        """Whether ``path`` is a folder below the watched one whose photos are parts (not
        hidden, not the heatmaps)."""
        return self._read_below(path) and path.is_dir()

    def _read_below(self, path: Path) -> bool:
        """Whether ``path`` lies below the watched folder where its photos are read: not
        hidden (no part of it below the folder starts with a dot), not in the heatmaps."""
        try:
            below = path.relative_to(self.root)
        except ValueError:
            return False
        return (not any(part.startswith(".") for part in below.parts)
                and (self.heatmaps is None or not path.resolve().is_relative_to(self.heatmaps)))

    def listed(self, path: Path) -> None:
        """Note ``path``, found by listing a folder (not told of a change): a photo of the
        backlog, unless it waits already."""
        if path not in self.waiting and self.wants(path):
            self.backlog[path] = None

    def changed(self, path: Path, deleted: bool = False) -> None:
        """Note a change of ``path``: a photo to score once complete, or gone."""
        self.backlog.pop(path, None)  # told of: no longer behind the backlog
        if deleted:
            self.waiting.pop(path, None)
            if self.scored.pop(path, None) is not None and self.state is not None:
                self.state.gone(self._rel(path))  # a photo saved again under its name is new
            self.digests.pop(path, None)
        elif self.wants(path):
            self.waiting.pop(path, None)  # the waiting go in the order of their last change
            self.waiting[path] = _Waiting(self.clock())

    def ready(self) -> Iterator[Result]:
        """Score the waiting photos whose files are complete, and hand over as unreadable
        those still refused ``settle_s`` after their last change; the others wait. Then the
        backlog (the photos listed, not told of) for up to :data:`BACKLOG_SLICE_S`, so that a
        photo written now waits for a slice of a long backlog, not all of it. Each result is
        handed over as it is made (a watch stopped between two is stopped after the photo
        in hand)."""
        if self.state is not None and self.state.lines > max(PRUNE_AT, 2 * len(self.scored)):
            self.state.rewrite(self.remembered(), self.count)  # all handed over by now
        for path, w in list(self.waiting.items()):
            r = self._settle(path, w)
            if r is not None:
                yield r
        begun = self.clock()
        while self.backlog and self.clock() - begun < BACKLOG_SLICE_S:
            path = next(iter(self.backlog))
            del self.backlog[path]
            w = self.waiting[path] = _Waiting(self.clock())
            r = self._settle(path, w)
            if r is not None:
                yield r
        if len(self.scored) > self.prune_at:
            self._forget_the_gone()

    def _settle(self, path: Path, w: _Waiting) -> Result | None:
        """``path``'s result if it is complete (scored), or still refused ``settle_s`` after
        its last change (unreadable); None while it waits, or when it is not a part photo
        to score (gone, not a part, as scored before)."""
        try:
            st = path.stat()
        except FileNotFoundError:  # moved away before it was scored
            del self.waiting[path]
            return None
        stamp = (st.st_size, st.st_mtime_ns)
        if path in self.scored and (self.scored[path] == stamp
                                    or self.digests.get(path) == _file_digest(path)):
            self.pass_over(path, stamp, self.digests.get(path, ""))
            del self.waiting[path]  # touched, or saved again with the same bytes
            return None
        if w.error and stamp != w.stamp:  # changed since it was refused, reported or not
            w.error, w.changed = "", self.clock()  # (a poll misses a change made within
            # the second of the one before: the last bytes of a photo written)
        if stamp != w.seen:
            w.seen, w.since = stamp, self.clock()
        if not w.error:  # a refused file is decoded again only once it changes
            if not self._is_part(path):
                del self.waiting[path]
                return None
            if _not_whole_yet(path) and self.clock() - w.since < min(QUIET_S, self.settle_s):
                return None  # still being written: not decoded (nor reported) yet
            tries = self._tries(path)
            if tries > MAX_TRIES:  # it stopped the watch each time: passed over, said
                w.error, w.stamp, w.changed = (
                    f"{path}: the watch was stopped {MAX_TRIES} times in a row while it "
                    "decoded or scored this photo (killed out of memory, or stuck and "
                    "stopped by its watchdog); passed over until it changes", stamp,
                    self.clock() - self.settle_s)
                self._end()  # reported now: done with
            else:
                self._begin(path, tries)
                try:  # the bytes read once: decoded, and digested as the bytes scored
                    data = file_bytes(path)
                    digest = hashlib.sha256(data).hexdigest()
                    read = self.scorer.read(path, data)
                    del data
                except ManufacturingError as exc:
                    w.error, w.stamp = str(exc), stamp
                    self._end()
                except MemoryError:  # waiting will not change that: reported at once
                    w.error, w.stamp, w.changed = (no_memory(path, "decode") + AGAIN, stamp,
                                                   self.clock() - self.settle_s)
                    self._end()
        if w.error:
            if self.clock() - w.changed < self.settle_s:
                return None
            del self.waiting[path]
            return self._unreadable(path, stamp, w.error)
        del self.waiting[path]
        heat = None
        if self.heatmaps is not None:
            heat = self.heatmaps / heatmap_name(self.count, path)
        # a heatmap that cannot be written (a full disk) is said, and the part's decision
        # goes out all the same: an overlay never holds up the line
        try:
            r = self.scorer.score(path, heat, image=read, heatmaps_of=self.heatmaps_of,
                                  heatmap_failed=lambda e: log.warning(
                                      "heatmap not written: %s; the photo's result stands", e))
        except MemoryError:  # a photo too large for the memory the watch may use
            del read
            self._end()
            return self._unreadable(path, stamp, no_memory(path, "score") + AGAIN)
        self._end()
        r.cell_map = None  # a watch runs for days: no map is kept
        self.delay = self.clock() - w.changed
        self.scored[path] = stamp
        self.digests[path] = digest
        self._unsaved[str(path)] = (path, stamp, digest, self.count)
        self.count += 1
        return r

    def _unreadable(self, path: Path, stamp: Stamp, error: str) -> UnreadableImage:
        """``path`` handed over as unreadable (``error``), not tried again until it
        changes."""
        self.delay = 0.0  # refused, not late: not a sign of falling behind
        self.scored[path] = stamp
        self.digests.pop(path, None)
        self._unsaved[str(path)] = (path, stamp, "", self.count)
        self.count += 1
        return UnreadableImage(self.count - 1, str(path), error)

    def _tries(self, path: Path) -> int:
        """Which try this is of ``path``: 1, or one more than the watches in a row that
        were stopped while they had it in hand."""
        if self.stopped_on is not None and self.stopped_on[0] == path:
            return self.stopped_on[1] + 1
        return 1

    def _begin(self, path: Path, tries: int) -> None:
        if self.state is not None:
            self.state.begin(self._rel(path), tries)

    def _end(self) -> None:
        self.stopped_on = None  # the photo the watches stopped on is done with
        if self.state is not None:
            self.state.end()

    def handed_over(self, r: Result) -> None:
        """Keep in the state file that ``r`` (from :meth:`ready`) was handed over: once it
        is, not before, so a watch stopped in between scores its photo again."""
        saved = self._unsaved.pop(r.path, None)
        if saved is not None and self.state is not None:
            path, stamp, digest, n = saved
            self.state.add(self._rel(path), stamp, digest, n)

    def pass_over(self, path: Path, stamp: Stamp, digest: str = "") -> None:
        """Remember ``path`` as it is now (``stamp``; ``digest``: its bytes' SHA-256, "" when
        not read) without scoring it: touched, the same bytes again, or there before a
        ``--new-only`` watch."""
        if self.scored.get(path) == stamp and self.digests.get(path, "") == digest:
            return  # as remembered (a watch started again lists the folder anew)
        self.scored[path] = stamp
        if digest:
            self.digests[path] = digest
        if self.state is not None:
            self.state.add(self._rel(path), stamp, digest)

    def remembered(self) -> dict[str, tuple[Stamp, str]]:
        """What a state file keeps: path below the folder -> (stamp, SHA-256 or "")."""
        return {self._rel(p): (st, self.digests.get(p, "")) for p, st in self.scored.items()}

    def resume(self, remembered: dict[str, tuple[Stamp, str]], nxt: int) -> int:
        """Take up what a state file kept: the photos still in the folder, and the numbering
        of the results (never below the heatmaps' own). Returns how many were taken up."""
        for rel, (stamp, digest) in remembered.items():
            p = self.root / rel
            if p.exists():
                self.scored[p] = stamp
                if digest:
                    self.digests[p] = digest
        self.count = max(self.count, nxt)
        if self.state is not None and (stopped := self.state.in_hand()) is not None:
            self.stopped_on = (self.root / stopped[0], stopped[1])
            log.warning("%s: the watch before this one was stopped while it decoded or scored "
                        "this photo (%d time(s) in a row); %s", self.stopped_on[0], stopped[1],
                        "it is tried once more" if stopped[1] < MAX_TRIES else
                        "it is passed over, reported unreadable, until it changes")
        return len(self.scored)

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _forget_the_gone(self) -> None:
        """Forget the photos scored that are no longer there; look again at twice as many."""
        for p in [p for p in self.scored if not p.exists()]:
            del self.scored[p]
            self.digests.pop(p, None)
        self.prune_at = max(PRUNE_AT, 2 * len(self.scored))

    def _is_part(self, path: Path) -> bool:
        """``path`` among the part images as a folder's reading finds them (a mask saved
        beside its photo under the same stem, a heatmap: not)."""
        siblings = [Path(p) for p in glob.glob(glob.escape(str(path.with_suffix(""))) + ".*")]
        return path in part_images(siblings or [path], self.root)


def watch_folder(scorer: Scorer, root: str | Path, emit: Callable[[Result], None], *,
                 settle_s: float = SETTLE_S, heatmaps: str | Path | None = None,
                 poll: bool | float = False, stop: Any = None, existing: bool = True,
                 state: str | Path | None = None, say: Callable[[str], None] = log.info,
                 reload: Callable[[], Scorer | None] | None = None, heatmaps_of: str = "all",
                 service: ServiceNotifier | None = None,
                 changes: Iterable[set[tuple[Any, str]]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> FolderWatch:
    """Score the part photos in ``root`` (and below it) as they are written, handing each
    result to ``emit`` as it is made (:class:`ImageScore`, or :class:`UnreadableImage` for a
    file still refused ``settle_s`` after its last change), until ``stop`` (an event with
    ``is_set()``) is set or Ctrl-C; returns what it knew at the end.

    ``existing``: score the photos there at the start first, in the folder's order; else
    they are left unless they change. The folder is listed again once the watch has begun,
    with the first changes, so that no photo written or changed in between is missed.
    ``state``: a file that keeps what the watch has scored (:class:`WatchState`; made when
    not there): a watch started again with it scores only the photos new or changed since
    it was stopped (``existing`` then applies to the first start only), and ``say`` is told
    how many it takes up, and, when the model that scored them is not this one, that they
    keep their results.
    ``reload``: asked between two photos and on every tick whether to score with another
    model from then on (a :class:`Scorer` to take, or None): ``score --watch`` loads its
    model again on SIGHUP (``systemctl reload``) this way, without a photo lost or scored
    twice.
    ``service``: the service manager told that the watch is ready once the folder is first
    listed, and that it is alive on every turn of its loop (:class:`~deepseek.service.
    ServiceNotifier`: systemd's ``Type=notify`` and ``WatchdogSec=``).
    ``poll``: look for changes every 300 ms (True) or every ``poll`` seconds (a number)
    instead of being told (network shares, whose changes made by other machines the system
    is not told of); each look reads the size and time of every file in the folder.
    ``heatmaps``: a folder for each photo's overlay (``heatmaps_of="flagged"``: each flagged
    photo's), ``NNNNN-<stem>.png`` by the order scored, numbered on after the heatmaps there;
    never watched. One that cannot be written (a full disk) is said, and the result goes
    out without it.
    ``changes``: the sets of ``(change, path)`` to act on instead of the folder's own (tests;
    ``change`` as watchfiles' ``Change``, or its value: 3 is a deletion).

    Raises:
        ManufacturingError: ``root`` is not a folder, or stopped being one while watched;
            ``state`` is not a watch's state of this folder, or cannot be written.
    """
    root = Path(root)
    if not root.is_dir():
        raise ManufacturingError(f"{root}: not a folder (--watch takes the folder the camera "
                                 "writes its photos into)")
    kept = WatchState(state, root) if state is not None else None
    try:
        if kept is not None:
            kept.hold()
        earlier = kept.load() if kept is not None else None
        watch = FolderWatch(scorer, root, settle_s=settle_s, heatmaps=heatmaps, state=kept,
                            clock=clock, heatmaps_of=heatmaps_of)
        _watch(watch, root, emit, earlier, poll=poll, stop=stop, existing=existing, say=say,
               reload=reload, changes=changes, service=service or ServiceNotifier({}))
    finally:
        if kept is not None:
            kept.release()
    return watch


def _watch(state: FolderWatch, root: Path, emit: Callable[[Result], None],
           earlier: tuple[dict[str, tuple[Stamp, str]], int] | None, *, poll: bool | float,
           stop: Any, existing: bool, say: Callable[[str], None],
           reload: Callable[[], Scorer | None] | None,
           changes: Iterable[set[tuple[Any, str]]] | None, service: ServiceNotifier) -> None:
    if state.heatmaps is not None:
        state.heatmaps.mkdir(parents=True, exist_ok=True)
    from deepseek.manufacturing.images import list_images

    if state.state is not None:
        if earlier is not None:
            n = state.resume(*earlier)
            say(f"taking up {state.state.path}: {n} photos there were scored (or reported) "
                "before and are scored again only if they change")
            was, now = state.state.found_model, state.state.model
            if n and was and was != now:
                say(f"it scored with the model {_named(was)} when it stopped, not with this "
                    f"one ({_named(now)}): the photos it scored keep their results (each "
                    "result names its model); `score FOLDER` scores them all with this one")
        state.state.rewrite(state.remembered(), state.count)
    if not existing and earlier is None:  # the photos there now are left: only a change
        for p in list_images(root, recursive=True):  # of one scores it
            try:
                st = p.stat()
            except OSError:  # gone since it was listed
                continue
            state.pass_over(p, (st.st_size, st.st_mtime_ns))
    if changes is None:
        from watchfiles import watch

        every = POLL_S if poll is True else float(poll)
        if poll is not False and every <= 0:
            raise ManufacturingError(f"poll={poll}: give the seconds between two looks at "
                                     "the folder (more than 0)")
        log.info("watching %s for part photos (%s)", root,
                 f"polling every {every:g} s" if poll is not False else "told by the system")
        changes = watch(root, watch_filter=lambda _c, p: _wanted(state, p),
                        stop_event=stop, rust_timeout=TICK_MS, yield_on_timeout=True,
                        raise_interrupt=False, force_polling=poll is not False,
                        poll_delay_ms=max(1, round(every * 1000)), debounce=1600, step=50)

    def swap() -> None:
        new = reload() if reload is not None else None
        if new is not None:
            state.swap(new)

    said_behind: float | None = None

    def behind(r: Result) -> None:  # said once a minute at most, while it lasts
        nonlocal said_behind
        now = state.clock()
        if state.delay > BEHIND_S and (said_behind is None
                                       or now - said_behind >= BEHIND_EVERY_S):
            said_behind = now
            say(f"falling behind: {r.path} was scored {state.delay:.0f} s after it was "
                f"written ({len(state.waiting) + len(state.backlog)} more waiting): the "
                "photos come faster than this machine scores them (--heatmaps-of flagged, "
                "fewer --views, or a faster machine)")

    first = True
    for batch in _told(changes, root, poll):
        swap()
        if not root.is_dir():  # a watch that would see nothing more must not look alive
            raise ManufacturingError(f"{root}: the folder is gone (removed, or its share "
                                     "unmounted): the watch stops; start it again once the "
                                     "folder is back")
        if first:  # listed once the watch has begun: a photo written in between is not
            first = False  # lost (one left by --new-only is passed over unless it changed)
            for p in list_images(root, recursive=True):
                state.listed(p)
            service.ready(f"watching {root}: {len(state.backlog)} photos there to score")
        for change, reported in sorted(batch, key=lambda c: c[1]):
            path = state.local(reported)
            if path is None:
                continue
            if int(change) != 3 and path.is_dir():  # a folder made or moved in: its photos,
                for p in list_images(path, recursive=True):  # those written before the
                    state.listed(p)  # system watched it, or moved in with it (unreported)
            else:
                state.changed(path, deleted=int(change) == 3)
        service.alive()  # on every turn of the loop (ready said first, on the first)
        for r in state.ready():
            emit(r)
            state.handed_over(r)
            behind(r)
            service.alive()
            if stop is not None and stop.is_set():
                break  # after the photo in hand
            swap()
        if stop is not None and stop.is_set():
            break
    untried = list(state.backlog)
    for path, w in state.waiting.items():
        why = w.error or ("still being written, by its header or end" if _not_whole_yet(path)
                          else "")
        if why:
            log.warning("%s: still not complete when the watch ended (%s)", path, why)
        else:
            untried.append(path)
    if untried:
        log.warning("%d photo(s) not scored before the watch ended (%s%s)%s", len(untried),
                    untried[0], ", ..." if len(untried) > 1 else "",
                    "; they are scored when it is started again with its --state"
                    if state.state is not None else "")


def _named(model: dict[str, Any]) -> str:
    """A model as a state file's first line names it, in words."""
    sha, thr = model.get("model_sha256"), model.get("threshold")
    return (f"sha256 {sha[:12]}" if isinstance(sha, str) else "without a file") + \
        (f" at threshold {thr:.4g}" if isinstance(thr, (int, float)) else "")


def _told(changes: Iterable[set[tuple[Any, str]]], root: Path, poll: bool | float
          ) -> Iterable[set[tuple[Any, str]]]:
    """``changes``, a failure of the watching itself (the system's limit on watched
    folders, a folder it may not read) said with what to do."""
    it = iter(changes)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except OSError as exc:
            fix = ("" if poll is not False else "; --poll looks for changes instead of "
                   "being told, or raise the system's limit (Linux: sysctl "
                   "fs.inotify.max_user_watches)")
            raise ManufacturingError(f"{root}: this folder cannot be watched ({exc}){fix}"
                                     ) from None
        yield batch


#: the first bytes of a format whose files end with a marker, and that marker
_END_MARKERS = ((b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"), (b"\xff\xd8\xff", b"\xff\xd9"))
_TIFF = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and big TIFF


def _not_whole_yet(path: Path) -> bool:
    """Whether ``path`` is, by its own header or end, a photo still being written: a PNG
    without its IEND chunk, a JPEG without its EOI marker, a BMP or WebP shorter than the
    size its header gives, a TIFF whose directory or strips lie past its end. The decoders
    would refuse it, some with lines of their own on stderr, and decoding a large photo's
    first part costs about as much as the whole. Other formats, a file that cannot be read,
    a header that does not say: False (decoding tells)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - 8))
            tail = fh.read(8)
    except OSError:
        return False
    if any(head.startswith(h) for h, _ in _END_MARKERS):
        return not any(head.startswith(h) and tail.endswith(e) for h, e in _END_MARKERS)
    if head[:2] == b"BM" and len(head) >= 6:  # the file's size, in its header
        return size < int.from_bytes(head[2:6], "little")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return size < int.from_bytes(head[4:8], "little") + 8
    if head[:4] in _TIFF:
        return _tiff_short(path, size)
    return False


def _tiff_short(path: Path, size: int) -> bool:
    """Whether the TIFF's first directory, or a strip or tile it lists, lies past ``size``
    (its header read by Pillow, not its pixels)."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's own on a directory cut short
        try:
            with Image.open(path) as im:
                tags = im.tag_v2
                offsets = tags.get(273) or tags.get(324)  # StripOffsets, TileOffsets
                counts = tags.get(279) or tags.get(325)  # their byte counts
        except Exception:  # the directory is not there yet (or Pillow cannot read it)
            return True
    if not offsets or not counts:
        return False
    return max(o + c for o, c in zip(offsets, counts)) > size


def _file_digest(path: Path) -> str:
    """The file's SHA-256 ("" when it cannot be read: never equal to one made)."""
    from deepseek.loader import file_sha256

    try:
        return file_sha256(path)
    except OSError:
        return ""


def _wanted(state: FolderWatch, reported: str) -> bool:
    """Whether a reported change is of a part photo, or of a folder (made or moved in)."""
    path = state.local(reported)
    return path is not None and (state.wants(path) or state.holds(path))
