"""Named registries of readers, models, metrics and pipelines.

A :class:`Registry` maps names to objects registered by plugins, remembers which plugin
registered each name, checks the options each registration passes (unknown options and wrong
types are errors naming the plugin), lists names by glob pattern and fails loudly, with
suggestions, on an unknown name.

A registry may also have *providers*: name spaces that are too large to register one by one
(every architecture of timm, for the model registry) and answer lookups on demand.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from deepseek.errors import RegistryError, UnknownNameError

T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    """One registered object, with the plugin that registered it and its options."""

    name: str
    obj: T
    plugin: str | None = None
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Option:
    """A registration option: the types it accepts and what it means (for error messages)."""

    types: tuple[type, ...]
    help: str
    check: Callable[[Any], str | None] | None = None  # returns a problem, or None

    def problem(self, value: Any) -> str | None:
        if value is None:
            return None
        if self.types == (Callable,):
            if not callable(value):
                return f"must be callable, got {type(value).__name__}"
        elif not isinstance(value, self.types):
            want = " or ".join(t.__name__ for t in self.types)
            return f"must be {want}, got {type(value).__name__}"
        return self.check(value) if self.check else None


def _string_list(value: Any) -> str | None:
    if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
        return "must be a list of non-empty strings"
    return None


def _tensor_specs(value: Any) -> str | None:
    for i, spec in enumerate(value):
        if not isinstance(spec, Mapping) or not {"name", "shape"} <= set(spec):
            return f"item {i} must be a dict with 'name', 'shape' (and 'dtype')"
        shape = spec["shape"]
        if not isinstance(shape, (list, tuple)) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape):
            return f"item {i} ('{spec['name']}'): shape must be a list of ints (-1: free)"
        unknown = set(spec) - {"name", "shape", "dtype", "description"}
        if unknown:
            return f"item {i} ('{spec['name']}'): unknown keys {sorted(unknown)}"
    return None


def _json_dict(value: Any) -> str | None:
    import json

    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        return f"must be JSON-serialisable ({exc})"
    return None


def _weights_file(value: Any) -> str | None:
    p = Path(value)
    if not p.is_file():
        return (f"file {p} does not exist (ship it with the plugin, or register without "
                "weights=)")
    if p.suffix != ".safetensors":
        return f"{p}: packaged weights must be a .safetensors file"
    return None


_DESCRIPTION = Option((str,), "one-line description (default: the object's docstring)")

#: The options each kind of registration accepts. Anything else is an error.
OPTIONS: dict[str, dict[str, Option]] = {
    "reader": {
        "description": _DESCRIPTION,
        "kind": Option((str,), "what the reader yields, e.g. 'volume', 'frames', 'ticks'"),
        "schemes": Option((list, tuple), "URI prefixes it opens, e.g. ['cam:', 'rtsp://']",
                          _string_list),
        "suffixes": Option((list, tuple), "file suffixes it opens, e.g. ['.mhd', '.nii.gz']",
                           _string_list),
        "accepts": Option((Callable,), "probe: accepts(source) -> bool, for sources that "
                          "neither a scheme nor a suffix identifies (a DICOM folder)"),
    },
    "model": {
        "description": _DESCRIPTION,
        "config": Option((dict,), "default builder keyword arguments (JSON-serialisable)",
                         _json_dict),
        "weights": Option((str, Path), "packaged .safetensors weights for the default config",
                          _weights_file),
        "inputs": Option((list, tuple), "input tensors: [{'name', 'dtype', 'shape'}], -1 free",
                         _tensor_specs),
        "batching": Option((dict,), "server batching policy: {'policy': 'bucket'|'pad', ...}"),
        "onnx_export": Option((Callable,), "onnx_export(weights_path) -> path: writes the ONNX "
                              "export shipped beside the weights (default: traced from inputs;"
                              " `deepseek export-onnx`)"),
    },
    "metric": {
        "description": _DESCRIPTION,
        "load_files": Option((Callable,), "load_files(pred_path, ref_path) -> "
                             "(predictions, references), for `deepseek evaluate`"),
        "files": Option((str,), "what --pred and --ref are, for `deepseek evaluate --help`"),
    },
    "pipeline": {
        "description": _DESCRIPTION,
        "input_kind": Option((str,), "the reader kind its --input is opened as"),
        "demo": Option((bool,), "run it in `deepseek demo` (default True)"),
    },
}


class Provider(Protocol):
    """A name space answered on demand (see :meth:`Registry.add_provider`)."""

    name: str

    def lookup(self, name: str) -> Entry | None: ...

    def names(self, pattern: str) -> list[str]: ...


class Registry(Generic[T]):
    """A name -> object registry for one kind of thing (``"model"``, ``"reader"`` ...)."""

    def __init__(self, kind: str, options: dict[str, Option] | None = None) -> None:
        self.kind = kind
        self.options = OPTIONS.get(kind, {}) if options is None else options
        self._entries: dict[str, Entry[T]] = {}
        self._providers: list[Provider] = []

    def register(
        self,
        name: str,
        obj: T,
        *,
        plugin: str | None = None,
        description: str = "",
        **meta: Any,
    ) -> T:
        """Register ``obj`` under ``name``. A name may be registered once only; options are
        checked against :data:`OPTIONS` for this kind."""
        who = plugin or "the caller"
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise RegistryError(
                f"{who}: invalid {self.kind} name {name!r}: use a non-empty string without "
                "surrounding spaces"
            )
        self._check_options(name, who, {"description": description, **meta})
        if name in self._entries:
            prev = self._entries[name].plugin or "the caller"
            raise RegistryError(
                f"{self.kind} {name!r} is already registered by {prev}; "
                f"{who} must choose another name"
            )
        if not description:
            doc = getattr(obj, "__doc__", None) or ""
            description = doc.strip().splitlines()[0] if doc.strip() else ""
        self._entries[name] = Entry(name, obj, plugin, description,
                                    {k: v for k, v in meta.items() if v is not None})
        return obj

    def _check_options(self, name: str, who: str, given: dict[str, Any]) -> None:
        if not self.options:
            return
        for key, value in given.items():
            opt = self.options.get(key)
            if opt is None:
                close = difflib.get_close_matches(key, list(self.options), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise RegistryError(
                    f"{who}: register({name!r}, ...): unknown {self.kind} option {key!r}"
                    f"{hint} (options: {', '.join(sorted(self.options))})")
            problem = opt.problem(value)
            if problem:
                raise RegistryError(f"{who}: register({name!r}, ...): option {key!r} "
                                    f"{problem} ({opt.help})")

    def add_provider(self, provider: Provider) -> None:
        """Answer names that are not registered from ``provider`` (registered names win)."""
        self._providers.append(provider)

    def get(self, name: str) -> T:
        """The object registered as ``name``; :class:`UnknownNameError` with suggestions."""
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        found = self._entries.get(name)
        if found is not None:
            return found
        for provider in self._providers:
            found = provider.lookup(name)
            if found is not None:
                return found
        raise UnknownNameError(self._unknown_message(name))

    def names(self, pattern: str = "*", *, providers: bool = True) -> list[str]:
        """Sorted names matching a glob ``pattern`` (case-insensitive; no wildcard: a
        substring), registered ones first, then those of the providers."""
        pat = pattern.lower()
        if not any(c in pat for c in "*?["):
            pat = f"*{pat}*"
        own = sorted(n for n in self._entries if fnmatch.fnmatchcase(n.lower(), pat))
        if not providers:
            return own
        seen = set(own)
        extra: list[str] = []
        for provider in self._providers:
            extra += [n for n in provider.names(pattern) if n not in seen]
            seen.update(extra)
        return own + extra

    def entries(self) -> list[Entry[T]]:
        """The registered entries (not those of providers), sorted by name."""
        return [self._entries[n] for n in sorted(self._entries)]

    @property
    def providers(self) -> list[Provider]:
        return list(self._providers)

    def _unknown_message(self, name: str) -> str:
        known = sorted(self._entries)
        close = difflib.get_close_matches(str(name), known, n=5, cutoff=0.5)
        close += [n for n in known if str(name).lower() in n.lower() and n not in close][:5]
        msg = f"unknown {self.kind} {name!r}"
        if close:
            msg += "; did you mean: " + ", ".join(close[:5]) + "?"
        elif known:
            msg += f"; registered {self.kind}s: " + ", ".join(known[:20])
            if len(known) > 20:
                msg += f" (and {len(known) - 20} more)"
        else:
            msg += f"; no {self.kind}s are registered (is the plugin that provides it installed?)"
        return msg

    def __contains__(self, name: object) -> bool:
        if name in self._entries:
            return True
        return isinstance(name, str) and any(p.lookup(name) is not None
                                             for p in self._providers)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<Registry {self.kind}: {len(self)} entries>"
