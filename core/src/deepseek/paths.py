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

import os
from collections.abc import Iterator
from pathlib import Path

from deepseek.errors import DeepSeekError


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


def ready_folder(path: str | Path | None, option: str) -> None:
    """Make the output folder ``path`` (given as ``option``) and check this user may write
    in it. None: nothing."""
    if path is None:
        return
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _writable(path, path, option)


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
    seen: set[str] = set()
    for where, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(where)
        if real in seen:
            folders[:] = []
            continue
        seen.add(real)
        folders.sort()
        for name in files:
            yield Path(where) / name
