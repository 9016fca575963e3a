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
so a photo caught while it is written waits for its next change. One that is still refused
``settle_s`` seconds after its last change is handed over as unreadable (with the reader's
reason), once, until it changes again. A photo is scored again only when its file changes
(size or modification time) and its bytes differ from those scored, so neither the
writer's last touches nor a copy of the same photo over it scores it twice.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepseek.manufacturing.errors import ManufacturingError
from deepseek.manufacturing.images import IMAGE_SUFFIXES, part_images
from deepseek.manufacturing.score import ImageScore, Scorer, UnreadableImage

log = logging.getLogger(__name__)

#: seconds a photo that does not decode waits for a change before it is called unreadable
SETTLE_S = 10.0
#: milliseconds between the checks of photos that wait (and of the stop event)
TICK_MS = 500
#: photos remembered as scored past which those no longer in the folder are forgotten (a
#: removal the system did not report): what a watch holds follows the folder, not the days
PRUNE_AT = 10_000

Result = ImageScore | UnreadableImage


@dataclass
class _Waiting:
    changed: float  # the clock at the file's last change seen
    error: str = ""


class FolderWatch:
    """What :func:`watch_folder` knows of a folder: the photos scored (with the file's size
    and modification time then) and the photos that wait to be complete. ``clock``: seconds,
    monotonic (a test's own)."""

    def __init__(self, scorer: Scorer, root: str | Path, *, settle_s: float = SETTLE_S,
                 heatmaps: str | Path | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if settle_s < 0:
            raise ManufacturingError(f"settle={settle_s}: give the seconds (0 or more) a photo "
                                     "that does not decode waits for its file to change")
        self.scorer, self.root, self.settle_s, self.clock = scorer, Path(root), settle_s, clock
        self._roots = {Path(os.path.abspath(root)), Path(root).resolve()}
        self.heatmaps = None if heatmaps is None else Path(heatmaps).resolve()
        if self.heatmaps is not None and Path(root).resolve().is_relative_to(self.heatmaps):
            raise ManufacturingError(f"--heatmaps {heatmaps}: the watched folder {root} lies in "
                                     "it, so no photo would be read (the heatmaps folder is "
                                     "never watched); give the heatmaps a folder of their own")
        self.scored: dict[Path, tuple[int, int]] = {}  # (size, mtime) when last scored
        self.digests: dict[Path, str] = {}  # of the bytes scored
        self.waiting: dict[Path, _Waiting] = {}
        self.count = 0  # results handed over: each heatmap's number
        self.prune_at = PRUNE_AT

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
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            return False
        if self.heatmaps is not None and path.resolve().is_relative_to(self.heatmaps):
            return False
        try:
            below = path.relative_to(self.root)
        except ValueError:
            return False
        return not any(part.startswith(".") for part in below.parts)

    def changed(self, path: Path, deleted: bool = False) -> None:
        """Note a change of ``path``: a photo to score once complete, or gone."""
        if deleted:
            self.waiting.pop(path, None)
            self.scored.pop(path, None)  # a photo saved again under its name is new
            self.digests.pop(path, None)
        elif self.wants(path):
            self.waiting.pop(path, None)  # the waiting go in the order of their last change
            self.waiting[path] = _Waiting(self.clock())

    def ready(self) -> list[Result]:
        """Score the waiting photos whose files are complete, and hand over as unreadable
        those still refused ``settle_s`` after their last change; the others wait."""
        out: list[Result] = []
        for path, w in list(self.waiting.items()):
            try:
                st = path.stat()
            except FileNotFoundError:  # moved away before it was scored
                del self.waiting[path]
                continue
            stamp = (st.st_size, st.st_mtime_ns)
            if path in self.scored and (self.scored[path] == stamp
                                        or self.digests.get(path) == _file_digest(path)):
                self.scored[path] = stamp  # touched, or saved again with the same bytes
                del self.waiting[path]
                continue
            if not w.error:  # a refused file is decoded again only once it changes
                if not self._is_part(path):
                    del self.waiting[path]
                    continue
                try:
                    read = self.scorer.read(path)
                except ManufacturingError as exc:
                    w.error = str(exc)
            if w.error:
                if self.clock() - w.changed >= self.settle_s:
                    del self.waiting[path]
                    self.scored[path] = stamp  # not tried again until it changes
                    out.append(UnreadableImage(self.count, str(path), w.error))
                    self.count += 1
                continue
            del self.waiting[path]
            heat = None
            if self.heatmaps is not None:
                heat = self.heatmaps / f"{self.count:05d}-{path.stem}.png"
            r = self.scorer.score(path, heat, image=read)
            r.cell_map = None  # a watch runs for days: no map is kept
            self.scored[path] = stamp
            self.digests[path] = _file_digest(path)
            out.append(r)
            self.count += 1
        if len(self.scored) > self.prune_at:
            self._forget_the_gone()
        return out

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
                 poll: bool = False, stop: Any = None, existing: bool = True,
                 changes: Iterable[set[tuple[Any, str]]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> FolderWatch:
    """Score the part photos in ``root`` (and below it) as they are written, handing each
    result to ``emit`` as it is made (:class:`ImageScore`, or :class:`UnreadableImage` for a
    file still refused ``settle_s`` after its last change), until ``stop`` (an event with
    ``is_set()``) is set or Ctrl-C; returns what it knew at the end.

    ``existing``: score the photos there at the start first, in the folder's order; else
    they are left unless they change. The folder is listed again once the watch has begun,
    with the first changes, so that no photo written or changed in between is missed.
    ``poll``: look for changes every 300 ms instead of being told (network shares, whose
    changes made by other machines the system is not told of). ``heatmaps``: a folder for
    each photo's overlay, ``NNNNN-<stem>.png`` by the order scored; never watched.
    ``changes``: the sets of ``(change, path)`` to act on instead of the folder's own (tests;
    ``change`` as watchfiles' ``Change``, or its value: 3 is a deletion).

    Raises:
        ManufacturingError: ``root`` is not a folder, or stopped being one while watched.
    """
    root = Path(root)
    if not root.is_dir():
        raise ManufacturingError(f"{root}: not a folder (--watch takes the folder the camera "
                                 "writes its photos into)")
    state = FolderWatch(scorer, root, settle_s=settle_s, heatmaps=heatmaps, clock=clock)
    if heatmaps is not None:
        Path(heatmaps).mkdir(parents=True, exist_ok=True)
    from deepseek.manufacturing.images import list_images

    if not existing:  # the photos there now are left: only a change of one scores it
        for p in list_images(root, recursive=True):
            try:
                st = p.stat()
            except OSError:  # gone since it was listed
                continue
            state.scored[p] = (st.st_size, st.st_mtime_ns)
    if changes is None:
        from watchfiles import watch

        log.info("watching %s for part photos (%s)", root,
                 "polling every 300 ms" if poll else "told by the system")
        changes = watch(root, watch_filter=lambda _c, p: _wanted(state, p),
                        stop_event=stop, rust_timeout=TICK_MS, yield_on_timeout=True,
                        raise_interrupt=False, force_polling=poll, debounce=1600, step=50)
    first = True
    for batch in _told(changes, root, poll):
        if not root.is_dir():  # a watch that would see nothing more must not look alive
            raise ManufacturingError(f"{root}: the folder is gone (removed, or its share "
                                     "unmounted): the watch stops; start it again once the "
                                     "folder is back")
        if first:  # listed once the watch has begun: a photo written in between is not
            first = False  # lost (one left by --new-only is passed over unless it changed)
            for p in list_images(root, recursive=True):
                state.changed(p)
        for change, reported in sorted(batch, key=lambda c: c[1]):
            path = state.local(reported)
            if path is not None:
                state.changed(path, deleted=int(change) == 3)
        for r in state.ready():
            emit(r)
        if stop is not None and stop.is_set():
            break
    for path, w in state.waiting.items():
        log.warning("%s: still not complete when the watch ended (%s)", path,
                    w.error or "not tried")
    return state


def _told(changes: Iterable[set[tuple[Any, str]]], root: Path, poll: bool
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
            fix = ("" if poll else "; --poll looks for changes instead of being told, or raise "
                   "the system's limit (Linux: sysctl fs.inotify.max_user_watches)")
            raise ManufacturingError(f"{root}: this folder cannot be watched ({exc}){fix}"
                                     ) from None
        yield batch


def _file_digest(path: Path) -> str:
    """The file's SHA-256 ("" when it cannot be read: never equal to one made)."""
    from deepseek.loader import file_sha256

    try:
        return file_sha256(path)
    except OSError:
        return ""


def _wanted(state: FolderWatch, reported: str) -> bool:
    path = state.local(reported)
    return path is not None and state.wants(path)
