"""Output paths checked before the work whose result goes there starts, and the files below
an input folder (:func:`files_below`).

A command that writes its result after minutes or hours of work (a stream, a folder of
photos, a CT, a backtest) calls these first, so that a path it cannot write fails at once
instead of after the work. A path the system refuses on the way (a file where a folder is
needed, no permission) raises the system's ``OSError``, which the command line reports as the
user's to change (:func:`deepseek.cli.path_error`); what the system would accept but is still
wrong (a folder where a file goes) raises :class:`~deepseek.errors.DeepSeekError`.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from deepseek.errors import DeepSeekError

log = logging.getLogger(__name__)

#: what a write refused for want of room (a full disk, a full quota) may be held back for
FULL_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: the bytes of lines an :class:`AppendedLines` holds back at most while its disk is full
HOLD_BYTES = 64 * 2**20


@contextlib.contextmanager
def written_whole(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write its file to, renamed over ``path`` once the
    writing ends without an error (removed otherwise). A model a service loads, or a file
    another process reads, is then never seen half written, and a write that fails (a full
    disk, Ctrl-C) leaves the file that was there as it was.

    >>> with written_whole("model.safetensors") as tmp:  # doctest: +SKIP
    ...     save_file(tensors, str(tmp))
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class AppendedLines:
    """A file of lines a long run appends to as they come (a stream's events, its frame
    scores), which a full disk does not stop. Lines the disk refuses for want of room (no
    space, a quota) are held back in memory, in order, and written as soon as it takes
    them again, up to ``hold_bytes`` (then, and on any other error, :meth:`write` raises,
    naming ``option`` and the file). ``append=False`` empties the file first.

    A log rotation is followed either way it is done: the file is opened for appending, so
    that one that copies and empties it (``copytruncate``) leaves no hole, and a file moved
    away or removed (logrotate's default) is begun anew at ``path`` at the next write; a
    file begun anew, or emptied, gets ``header`` (a CSV's columns) before its lines. A
    folder that is gone (a share unmounted) holds lines back as a full disk does. Each write
    goes to the system at once (a reader sees whole lines as they come; a line cut short by
    a full disk is completed, not written twice)."""

    _write = staticmethod(os.write)
    _FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)

    def __init__(self, path: str | Path, option: str, *, append: bool = True,
                 header: str = "", hold_bytes: int = HOLD_BYTES) -> None:
        self.path, self.option, self.hold_bytes = Path(path), option, int(hold_bytes)
        self.header = header.encode()
        self._fd: int | None = os.open(self.path, self._FLAGS | (0 if append else os.O_TRUNC),
                                       0o666)
        self._held = bytearray()
        self._header_left = 0  # bytes of a header put before the lines, not yet written
        self._refused: OSError | None = None  # why lines are held back now
        if self.header:
            self._drain()  # an empty file's header, at once

    @property
    def held(self) -> int:
        """The lines held back, not yet in the file."""
        return self._held.count(b"\n")

    def write(self, text: str) -> int:
        """Append ``text`` (whole lines), after the lines held back."""
        self._held += text.encode()
        self._drain()
        return len(text)

    def flush(self) -> None:
        """Write what is held back, where the disk takes it now."""
        self._drain()

    def _follow(self) -> None:
        """The file at ``path`` again, where a rotation moved the open one away or removed
        it (a new one begun), and the header first in an empty one."""
        try:
            there = os.stat(self.path)
        except FileNotFoundError:
            there = None
        own = os.fstat(self._fd)
        size = own.st_size
        if there is None or (there.st_dev, there.st_ino) != (own.st_dev, own.st_ino):
            fd = os.open(self.path, self._FLAGS, 0o666)  # (a folder gone: ENOENT, held)
            os.close(self._fd)
            self._fd, size = fd, os.fstat(fd).st_size
            log.info("%s %s: moved away or removed (a log rotation?); its lines go to a new "
                     "file there", self.option, self.path)
        if self.header and size == 0 and not self._header_left:
            self._held[:0] = self.header
            self._header_left = len(self.header)

    def _drain(self) -> None:
        if not self._held and not self.header:
            return
        try:
            self._follow()
        except OSError as exc:
            if exc.errno not in (*FULL_ERRORS, errno.ENOENT):
                raise DeepSeekError(f"{self.option} {self.path}: cannot open it again "
                                    f"({exc.strerror})") from None
            self._hold(exc)
            return
        while self._held:
            try:
                n = self._write(self._fd, self._held)
            except OSError as exc:
                if exc.errno not in FULL_ERRORS:
                    raise DeepSeekError(f"{self.option} {self.path}: cannot write to it "
                                        f"({exc.strerror})") from None
                self._hold(exc)
                return
            del self._held[:n]
            self._header_left = max(self._header_left - n, 0)
        if self._refused is not None:
            log.warning("%s %s: written to again; the lines held back meanwhile are in it, "
                        "in order", self.option, self.path)
            self._refused = None

    def _hold(self, exc: OSError) -> None:
        if self._refused is None:
            self._refused = exc
            log.warning("%s %s: %s; its lines are held back in memory, in order (up to %d "
                        "MiB), and written as soon as it can be: free space there (or bring "
                        "its folder back)", self.option, self.path, exc.strerror,
                        self.hold_bytes >> 20)
        if len(self._held) > self.hold_bytes:
            lost = self.held
            self._held.clear()
            raise DeepSeekError(f"{self.option} {self.path}: {exc.strerror}, for longer than "
                                f"{self.hold_bytes >> 20} MiB of its lines could be held "
                                f"back: {lost} lines are lost; free space there (or give "
                                "another path) and start again")

    def close(self) -> int:
        """Write what is held back, where the disk takes it, and close the file. Returns
        the lines it did not take, which are lost (said at error level)."""
        if self._fd is None:
            return 0
        with contextlib.suppress(DeepSeekError):  # said by the write that met it
            self._drain()
        lost = self.held
        os.close(self._fd)
        self._fd = None
        self._held.clear()
        if lost:
            log.error("%s %s: %s; the %d lines held back were never written and are lost",
                      self.option, self.path, self._refused.strerror if self._refused
                      else "not written", lost)
        return lost


def ready_to_write(path: str | Path | None, option: str, example: str) -> None:
    """Check that the file ``path`` (given as ``option``) can be written: its folder is made;
    a folder at ``path`` itself, or a place this user may not write, is refused naming
    ``option`` (``example``: a file name to suggest inside the folder). None: nothing."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise DeepSeekError(f"{option} {path}: a folder; give the file's name (for example "
                            f"{path / example})")
    path.parent.mkdir(parents=True, exist_ok=True)
    _writable(path if path.exists() else path.parent, path, option)


def ready_folder(path: str | Path | None, option: str, make: bool = True) -> None:
    """Make the output folder ``path`` (given as ``option``) and check this user may write
    in it. None: nothing. ``make=False``: check only, making nothing (for a command that
    may still refuse its options): the nearest part of the path that exists must be a
    folder this user may write in."""
    if path is None:
        return
    path = Path(path)
    if make:
        path.mkdir(parents=True, exist_ok=True)
        _writable(path, path, option)
        return
    there = path
    while not there.exists() and there.parent != there:
        there = there.parent
    if not there.is_dir():  # a file on the way: what mkdir would say
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
    _writable(there, path, option)


def _writable(where: Path, path: Path, option: str) -> None:
    """Refuse ``path`` (given as ``option``) when this user may not write ``where``."""
    if not os.access(where, os.W_OK):
        raise DeepSeekError(f"{option} {path}: not writable by this user; choose another "
                            "path or change its permissions")


def files_below(folder: str | Path) -> Iterator[Path]:
    """Every file below ``folder`` (its subfolders searched too), folders reached through a
    symbolic link included, as paths under ``folder`` (a data set that links in a day's
    photos or a series from elsewhere is read whole, where ``Path.rglob`` leaves a linked
    folder out without a word). Each real folder is read once, so a link back up the tree
    does not loop and a folder linked twice is not counted twice. Symbolic links to files
    are listed as they are (callers check ``is_file``); order: folder by folder, unsorted."""
    for where, _, files in _walk_once(folder):
        for name in files:
            yield Path(where) / name


def _walk_once(top: str | Path, hidden: bool = True) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk(top)`` through linked folders, each real folder once (a link to one already
    walked, or back up the tree, is passed over), subfolders in name order; ``hidden``
    False: folders whose names start with a dot are not entered."""
    seen: set[str] = set()
    for where, folders, files in os.walk(top, followlinks=True):
        real = os.path.realpath(where)
        if real in seen:
            folders[:] = []
            continue
        seen.add(real)
        folders[:] = sorted(f for f in folders if hidden or not f.startswith("."))
        yield where, folders, files


_PATTERN = re.compile(r"[*?\[]")


def is_pattern(text: str) -> bool:
    """Whether ``text`` holds a glob's special characters (``*``, ``?`` or ``[``)."""
    return _PATTERN.search(text) is not None


def _name_regex(part: str) -> str:
    """A regular expression for one path component of a glob: ``*`` and ``?`` stay inside
    the component, ``[...]`` is a class, and, as glob has it, a wildcard does not match a
    leading dot unless the component starts with one."""
    out = [] if part.startswith(".") else [r"(?!\.)"]
    i = 0
    while i < len(part):
        c = part[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and (end := part.find("]", i + 2)) > 0:
            body = part[i + 1:end].replace("\\", "\\\\").replace("[", "\\[")
            body = "\\" + body if body.startswith("^") else body  # a literal ^, as glob
            body = "^" + body[1:] if body.startswith("!") else body
            out.append("[" + body + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def glob_paths(pattern: str) -> list[str]:
    """The paths ``pattern`` matches, sorted, as ``glob.glob(pattern, recursive=True)``
    gives them, except that a ``**`` component walks folders as :func:`files_below` does:
    through linked folders, each real folder once. glob follows every link, so a link back
    up the tree repeats each file below it dozens of times, and two such links make its
    search run for ever. A pattern ending in ``/`` matches folders only (returned with the
    ``/``); names starting with a dot are matched only by a component that starts with one,
    and ``**`` does not enter hidden folders, as with glob."""
    parts = pattern.split("/")
    deep = [i for i, part in enumerate(parts) if part == "**"]
    if not deep:
        return sorted(glob.glob(pattern))
    first = deep[0]
    head = "/".join(parts[:first]) or ("/" if pattern.startswith("/") else "")
    tail = parts[first:]
    folders_only = tail[-1] == "" and len(tail) > 1
    if folders_only:
        tail = tail[:-1]
    rx = []
    for k, part in enumerate(tail):
        if part == "**":
            rx.append(r"(?:(?!\.)[^/]+(?:/(?!\.)[^/]+)*)?" if k == len(tail) - 1
                      else r"(?:(?!\.)[^/]+/)*")
        else:
            rx.append(_name_regex(part) + ("" if k == len(tail) - 1 else "/"))
    match = re.compile("".join(rx)).fullmatch
    dotted = any(part.startswith(".") for part in tail)
    bases = (glob.glob(head) if is_pattern(head) else [head]) if head else [""]
    found: set[str] = set()
    for base in bases:
        top = base or "."
        if not os.path.isdir(top):
            continue
        # a component that names a dot can match in a hidden folder: walk them then
        for where, folders, files in _walk_once(top, hidden=dotted):
            rel_where = os.path.relpath(where, top)
            rel_where = "" if rel_where == "." else rel_where
            if rel_where == "" and tail[-1] == "**" and match(""):
                found.add(os.path.join(base, "") if base else "")
            names = [(f, True) for f in folders] + [(f, False) for f in files]
            for name, is_folder in names:
                if folders_only and not is_folder:
                    continue
                rel = f"{rel_where}/{name}" if rel_where else name
                if match(rel):
                    path = os.path.join(base, rel) if base else rel
                    found.add(path + "/" if folders_only else path)
    found.discard("")
    return sorted(found)
