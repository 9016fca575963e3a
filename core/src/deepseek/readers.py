"""Input through the reader registry: ``deepseek.open(source)``.

Every plugin registers its readers with what identifies their sources::

    register("mhd", read_mhd, kind="volume", suffixes=[".mhd", ".mha"])
    register("camera", open_camera, kind="frames", schemes=["cam:", "/dev/video"])
    register("dicom", read_dicom, kind="volume", suffixes=[".dcm"], accepts=is_dicom_source)

and :func:`open` picks the reader for a source in three steps, stopping at the first that
finds any:

1. **scheme**: the readers whose ``schemes`` the source starts with (the longest wins);
2. **suffix**: the readers whose ``suffixes`` end the file name (the longest wins, so
   ``.nii.gz`` beats ``.gz``);
3. **probe**: the readers whose ``accepts(source)`` returns true (a DICOM folder, an image
   folder).

``kind=`` keeps only readers of one kind (``volume``, ``frames``, ``ticks``), which is how a
plugin's own commands open their inputs; ``reader=`` names the reader outright. No match and
more than one match are errors that list the candidates.
"""

from __future__ import annotations

import builtins
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepseek.errors import DeepSeekError
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


def _suffix_matches(text: str, entries: list[Entry]) -> list[Entry]:
    name = Path(text.rstrip("/\\")).name.lower()
    return _longest_matches(entries, "suffixes", name.endswith)


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


def candidates(source: Any, kind: str | None = None) -> tuple[str, list[Entry]]:
    """How the readers were matched (``scheme``/``suffix``/``probe``/``none``) and which."""
    from deepseek.plugins import readers

    entries = readers().entries()
    if kind is not None:
        kinds = sorted({e.meta.get("kind", "?") for e in entries})
        entries = [e for e in entries if e.meta.get("kind") == kind]
        if not entries:
            raise ReaderError(f"no reader of kind {kind!r} is registered (kinds: "
                              f"{', '.join(kinds) or 'none'}; is the plugin installed?)")
    text = _text(source)
    if text is not None:
        found = _scheme_matches(text, entries)
        if found:
            return "scheme", found
        found = _suffix_matches(text, entries)
        if found:
            return "suffix", found
    found = _probe_matches(source, entries)
    return ("probe", found) if found else ("none", [])


def resolve(source: Any, kind: str | None = None, reader: str | None = None) -> Entry:
    """The registry entry of the reader that opens ``source`` (see the module docstring)."""
    from deepseek.plugins import readers

    if reader is not None:
        entry = readers().entry(reader)
        if kind is not None and entry.meta.get("kind") != kind:
            raise ReaderError(f"reader {reader!r} yields {entry.meta.get('kind')!r}, not "
                              f"{kind!r}")
        return entry
    how, found = candidates(source, kind)
    if len(found) == 1:
        log.debug("opening %r with reader %s (%s, by %s)", source, found[0].name,
                  found[0].plugin, how)
        return found[0]
    label = repr(str(source)) if _text(source) is not None else type(source).__name__
    pool = [e for e in readers().entries() if kind is None or e.meta.get("kind") == kind]
    if not found:
        hint = ""
        text = _text(source)
        if text is not None:
            p = Path(text)
            if p.is_dir():
                files = sum(1 for f in p.rglob("*") if f.is_file())
                hint = ("; the folder is empty (searched recursively)" if not files else
                        f"; the folder holds {files} files, none in a format these readers "
                        "recognise")
            elif re.match(r"^[A-Za-z][\w+.-]+:", text) and not p.exists():
                hint = f"; no reader opens the scheme {text.split(':', 1)[0] + ':'!r}"
            elif not p.exists():
                hint = f"; {text} does not exist"
        raise ReaderError(
            f"no reader accepts {label}{f' as {kind}' if kind else ''}{hint}. Readers: "
            + "; ".join(_describe_entry(e) for e in pool)
            + ". Pass reader=NAME (CLI: --reader NAME) to choose one.")
    raise ReaderError(
        f"{label} is ambiguous: {len(found)} readers accept it by {how}: "
        + "; ".join(_describe_entry(e) for e in found)
        + ". Pass kind=... (CLI: --kind) or reader=NAME (CLI: --reader) to choose.")


def open(source: Any, kind: str | None = None, *, reader: str | None = None,  # noqa: A001
         **options: Any) -> Any:
    """Open ``source`` with the registered reader that accepts it and return what the reader
    returns (a CT volume, a frame source, a tick array ...). ``options`` go to the reader."""
    return resolve(source, kind, reader).obj(source, **options)


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
