"""Input through the reader registry: ``deepseek.open(source)``.

Every plugin registers its readers with what identifies their sources::

    register("mhd", read_mhd, kind="volume", suffixes=[".mhd", ".mha"])
    register("camera", open_camera, kind="frames", schemes=["cam:", "/dev/video"])
    register("dicom", read_dicom, kind="volume", suffixes=[".dcm"], accepts=is_dicom_source)

and :func:`open` picks the reader for a source in three steps, stopping at the first that
finds any:

1. **scheme**: the readers whose ``schemes`` the source starts with (the longest wins);
2. **suffix**: the readers whose ``suffixes`` end the file name (the longest wins, so
   ``.nii.gz`` beats ``.gz``). A *generic* suffix (``.csv``, ``.json``, ``.gz``...:
   :data:`deepseek.contracts.GENERIC_SUFFIXES`) says little about a file, so each reader
   that claims one must have a probe, and only those whose probe accepts the file's content
   stay; when every one declines, dispatch goes on to
3. **probe**: the readers whose ``accepts(source)`` returns true (a DICOM folder, an image
   folder, a bar CSV by its header).

``kind=`` keeps only readers of one kind (``volume``, ``frames``, ``ticks``), which is how a
plugin's own commands open their inputs; ``reader=`` names the reader outright. No match and
more than one match are errors that list the candidates (and the readers that looked and
declined). An error raised by a reader names it (``reader ticks-csv (finance): ...``), and a
reader that returns no data is an error too: an empty result is never passed on.
"""

from __future__ import annotations

import builtins
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepseek.contracts import is_generic
from deepseek.errors import DeepSeekError, PluginError
from deepseek.registry import Entry

log = logging.getLogger(__name__)


class ReaderError(DeepSeekError):
    """No registered reader, or more than one, accepts a source."""


def _text(source: Any) -> str | None:
    if isinstance(source, (str, Path)):
        return str(source)
    return None


def _longest_matches(entries: list[Entry], key: str, hit: Callable[[str], bool]
                     ) -> list[Entry]:
    """The entries whose longest pattern in ``meta[key]`` that ``hit`` accepts is longest of
    all (ties kept)."""
    best, found = 0, []
    for e in entries:
        lengths = [len(s) for s in e.meta.get(key, ()) if hit(s.lower())]
        if lengths:
            n = max(lengths)
            if n > best:
                best, found = n, [e]
            elif n == best:
                found.append(e)
    return found


def _scheme_matches(text: str, entries: list[Entry]) -> list[Entry]:
    low = text.lower()
    return _longest_matches(entries, "schemes", low.startswith)


def _suffix_matches(text: str, entries: list[Entry]) -> tuple[list[Entry], str]:
    """The readers whose suffix ends the name (the longest wins) and that suffix."""
    name = Path(text.rstrip("/\\")).name.lower()
    found = _longest_matches(entries, "suffixes", name.endswith)
    if not found:
        return [], ""
    suffix = max((s for s in found[0].meta["suffixes"] if name.endswith(s.lower())), key=len)
    return found, suffix


def _probe_matches(source: Any, entries: list[Entry]) -> list[Entry]:
    found = []
    for e in entries:
        probe: Callable[[Any], bool] | None = e.meta.get("accepts")
        if probe is None:
            continue
        try:
            ok = bool(probe(source))
        except Exception as exc:  # a probe must never take dispatch down
            log.debug("reader %s: probe failed on %r: %s", e.name, source, exc)
            ok = False
        if ok:
            found.append(e)
    return found


def _describe_entry(e: Entry) -> str:
    bits = []
    if e.meta.get("schemes"):
        bits.append(" ".join(e.meta["schemes"]))
    if e.meta.get("suffixes"):
        bits.append(" ".join(e.meta["suffixes"]))
    if e.meta.get("accepts"):
        bits.append("probe")
    kind = e.meta.get("kind", "?")
    return f"{e.name} [{kind}; {', '.join(bits) or 'by name only'}] ({e.plugin or '-'})"


def _pool(kind: str | None) -> list[Entry]:
    from deepseek.plugins import readers

    entries = readers().entries()
    if kind is not None:
        kinds = sorted({e.meta.get("kind", "?") for e in entries})
        entries = [e for e in entries if e.meta.get("kind") == kind]
        if not entries:
            raise ReaderError(f"no reader of kind {kind!r} is registered (kinds: "
                              f"{', '.join(kinds) or 'none'}; is the plugin installed?)")
    return entries


def _match(source: Any, kind: str | None) -> tuple[str, list[Entry], list[Entry]]:
    """``(how, found, declined)``: how the readers were matched (``scheme``, ``suffix``,
    ``suffix+content``, ``probe`` or ``none``), which, and which looked at the content for a
    generic suffix and declined."""
    entries = _pool(kind)
    text = _text(source)
    declined: list[Entry] = []
    if text is not None:
        found = _scheme_matches(text, entries)
        if found:
            return "scheme", found, []
        found, suffix = _suffix_matches(text, entries)
        if found and not is_generic(suffix):
            return "suffix", found, []
        if found and not Path(text).exists():  # no content for the probes to look at
            raise ReaderError(f"{text}: no such file (readers of {suffix!r}: "
                              f"{', '.join(e.name for e in found)})")
        if found:
            accepted = _probe_matches(source, found)
            if accepted:
                return "suffix+content", accepted, []
            declined = found
    rest = [e for e in entries if all(e is not d for d in declined)]
    found = _probe_matches(source, rest)
    return ("probe", found, declined) if found else ("none", [], declined)


def candidates(source: Any, kind: str | None = None) -> tuple[str, list[Entry]]:
    """How the readers were matched (``scheme``/``suffix``/``suffix+content``/``probe``/
    ``none``) and which."""
    how, found, _ = _match(source, kind)
    return how, found


def _why_none(source: Any) -> str:
    text = _text(source)
    if text is None:
        return ""
    p = Path(text)
    if p.is_dir():
        from deepseek.paths import files_below

        files = sum(1 for f in files_below(p) if f.is_file())
        return ("; the folder is empty (searched recursively)" if not files else
                f"; the folder holds {files} files, none in a format these readers recognise")
    if re.match(r"^[A-Za-z][\w+.-]+:", text) and not p.exists():
        return f"; no reader opens the scheme {text.split(':', 1)[0] + ':'!r}"
    if not p.exists():
        return f"; {text} does not exist"
    return ""


def resolve(source: Any, kind: str | None = None, reader: str | None = None) -> Entry:
    """The registry entry of the reader that opens ``source`` (see the module docstring)."""
    from deepseek.plugins import readers

    if reader is not None:
        entry = readers().entry(reader)
        if kind is not None and entry.meta.get("kind") != kind:
            raise ReaderError(f"reader {reader!r} yields {entry.meta.get('kind')!r}, not "
                              f"{kind!r}")
        return entry
    how, found, declined = _match(source, kind)
    if len(found) == 1:
        log.debug("opening %r with reader %s (%s, by %s)", source, found[0].name,
                  found[0].plugin, how)
        return found[0]
    label = repr(str(source)) if _text(source) is not None else type(source).__name__
    if not found:
        raise ReaderError(
            f"no reader accepts {label}{f' as {kind}' if kind else ''}{_why_none(source)}"
            + (". The readers of its suffix looked at its content and declined it: "
               + "; ".join(_describe_entry(e) for e in declined) if declined else "")
            + ". Readers: " + "; ".join(_describe_entry(e) for e in readers().entries()
                                        if kind is None or e.meta.get("kind") == kind)
            + ". Pass reader=NAME (CLI: --reader NAME) to choose one.")
    raise ReaderError(
        f"{label} is ambiguous: {len(found)} readers accept it by {how}: "
        + "; ".join(_describe_entry(e) for e in found)
        + ". Pass kind=... (CLI: --kind) or reader=NAME (CLI: --reader) to choose.")


def open(source: Any, kind: str | None = None, *, reader: str | None = None,  # noqa: A001
         **options: Any) -> Any:
    """Open ``source`` with the registered reader that accepts it and return what the reader
    returns (a CT volume, a frame source, a tick array ...). ``options`` go to the reader.

    An error the reader raises names it (``reader ticks-csv (finance): ...``); an exception
    that is not a :class:`DeepSeekError` (a plugin bug) becomes a :class:`PluginError` that
    names the reader and its plugin; empty data (an empty array or sequence) is a
    :class:`ReaderError`."""
    return read_with(resolve(source, kind, reader), source, **options)


def read_with(entry: Entry, source: Any, **options: Any) -> Any:
    """Run reader ``entry`` on ``source`` under :func:`open`'s rules."""
    where = f"reader {entry.name} ({entry.plugin or 'core'})"
    try:
        out = entry.obj(source, **options)
    except DeepSeekError as exc:
        raise exc.within(where) from None
    except Exception as exc:
        raise PluginError(f"{where} failed on {str(source)!r}: {type(exc).__name__}: {exc} "
                          f"(a bug in plugin {entry.plugin}; --reader NAME picks another "
                          "reader)") from exc
    if _is_empty(out):
        raise ReaderError(f"{where}: {str(source)!r} holds no data (the reader returned an "
                          f"empty {type(out).__name__}); give a file with at least one record")
    return out


def _is_empty(out: Any) -> bool:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a core dependency
        return isinstance(out, (list, tuple)) and not out
    if isinstance(out, np.ndarray):
        return out.size == 0
    return isinstance(out, (list, tuple, dict)) and not out


def head(source: Any, size: int = 4096) -> bytes:
    """The first ``size`` bytes of a file, decompressed when it is gzip, bzip2, xz or (with
    ``zstandard`` installed) zstd, for a reader's ``accepts`` probe; ``b""`` for anything
    that is not a readable file."""
    import bz2
    import gzip
    import lzma

    text = _text(source)
    if text is None or not Path(text).is_file():
        return b""
    try:
        with builtins.open(text, "rb") as f:
            magic = f.read(6)
        openers = {b"\x1f\x8b": gzip.open, b"BZh": bz2.open, b"\xfd7zXZ": lzma.open}
        for prefix, opener in openers.items():
            if magic.startswith(prefix):
                with opener(text, "rb") as f:
                    return f.read(size)
        if magic.startswith(b"\x28\xb5\x2f\xfd"):
            import zstandard

            with builtins.open(text, "rb") as raw:
                return zstandard.ZstdDecompressor().stream_reader(raw).read(size)
        with builtins.open(text, "rb") as f:
            return f.read(size)
    except (OSError, EOFError, ImportError, ValueError, lzma.LZMAError):
        return b""


def uri_options(source: str, scheme: str) -> dict[str, Any]:
    """The options in a ``scheme:?key=value&key=a,b`` URI, for readers of generated data
    (``synthetic:?seed=3&frames=100``). Values become int, float, bool (``true``/``false``)
    or tuples (comma-separated); dashes in keys become underscores."""
    from urllib.parse import parse_qsl

    text = str(source)
    if not text.lower().startswith(scheme.lower()):
        raise ReaderError(f"{text!r} does not start with {scheme!r}")
    rest = text[len(scheme):].lstrip("?")

    def value(v: str) -> Any:
        low = v.lower()
        if low in ("true", "false"):
            return low == "true"
        for cast in (int, float):
            try:
                return cast(v)
            except ValueError:
                pass
        return v

    out: dict[str, Any] = {}
    try:
        pairs = parse_qsl(rest, keep_blank_values=True, strict_parsing=bool(rest))
    except ValueError:
        raise ReaderError(f"{text!r}: options after {scheme!r} must be ?key=value&key=value"
                          ) from None
    for k, v in pairs:
        key = k.replace("-", "_")
        out[key] = tuple(value(x) for x in v.split(",")) if "," in v else value(v)
    return out


def describe(obj: Any) -> dict[str, Any]:
    """A JSON-able description of what a reader returned, for ``deepseek read``.

    Objects that know how to describe themselves (a ``describe()`` method returning a dict)
    do; numpy arrays give their shape, dtype and fields; anything else its type.
    """
    fn = getattr(obj, "describe", None)
    if callable(fn):
        out = fn()
        if isinstance(out, dict):
            return {"type": type(obj).__name__, **out}
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a core dependency
        np = None  # type: ignore[assignment]
    if np is not None and isinstance(obj, np.ndarray):
        out = {"type": "ndarray", "shape": list(obj.shape), "dtype": str(obj.dtype)}
        if obj.dtype.names:
            out["fields"] = list(obj.dtype.names)
            out["records"] = int(len(obj))
        return out
    if isinstance(obj, (list, tuple)):
        return {"type": type(obj).__name__, "length": len(obj)}
    return {"type": type(obj).__name__, "repr": builtins.repr(obj)[:200]}
