"""Named registries of readers, models, metrics, pipelines and batch steps.

A :class:`Registry` maps names to objects registered by plugins, remembers which plugin
registered each name, checks each registration (options of the right type, an object that
keeps its kind's contract: :mod:`deepseek.contracts`), lists names by glob pattern and fails
loudly, with suggestions, on an unknown name.

**Names are owned.** A name registered by two plugins (or by a plugin and a provider) is a
:class:`~deepseek.errors.NameConflictError` for both, and neither answers to the bare name
until one is chosen: by its qualified name ``plugin:name`` (``finance:tick-mlp``), which
always reaches that plugin's object, or by a preference (``prefer={"tick-mlp": "finance"}``,
which the plugin system reads from ``$DEEPSEEK_PREFER``). Registration order never decides.

A registry may also have *providers*: name spaces that are too large to register one by one
(the model zoo's architectures) and answer lookups on demand. Their names are owned like the
plugins' ones.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from deepseek import contracts
from deepseek.errors import NameConflictError, RegistryError, UnknownNameError

T = TypeVar("T")

#: separates a plugin (or provider) from a name: ``finance:tick-mlp``
QUALIFIER = ":"


@dataclass
class Entry(Generic[T]):
    """One registered object, with the plugin that registered it and its options."""

    name: str
    obj: T
    plugin: str | None = None
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def qualified(self) -> str:
        """``plugin:name``: the name that reaches this entry whatever else claims ``name``."""
        return f"{self.plugin}{QUALIFIER}{self.name}" if self.plugin else self.name


@dataclass(frozen=True)
class Option:
    """A registration option: the types it accepts and what it means (for error messages)."""

    types: tuple[type, ...]
    help: str
    check: Callable[[Any], str | None] | None = None  # returns a problem, or None

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable for this option, or None (None itself is accepted)."""
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
        unknown = set(spec) - {"name", "shape", "dtype", "description", "multiple", "example"}
        if unknown:
            return f"item {i} ('{spec['name']}'): unknown keys {sorted(unknown)}"
        problem = _steps_and_example(spec, shape)
        if problem:
            return f"item {i} ('{spec['name']}'): {problem}"
    return None


def _is_int_list(value: Any, n: int) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == n and all(
        isinstance(d, int) and not isinstance(d, bool) for d in value)


def _steps_and_example(spec: Mapping[str, Any], shape: Any) -> str | None:
    """``multiple`` (each axis's step: a free axis takes positive multiples of it) and
    ``example`` (one concrete input, for summaries, tracing and timing) must fit ``shape``."""
    steps = spec.get("multiple")
    if steps is not None:
        if not _is_int_list(steps, len(shape)) or any(d < 1 for d in steps):
            return (f"multiple must be a list of {len(shape)} positive ints (1: any size), "
                    f"got {steps!r}")
        fixed = [a for a, (d, m) in enumerate(zip(shape, steps)) if d >= 0 and d % m]
        if fixed:
            return (f"axis {fixed[0]} has the fixed size {shape[fixed[0]]}, not a multiple "
                    f"of {steps[fixed[0]]}")
    example = spec.get("example")
    if example is not None:
        steps = steps or [1] * len(shape)
        if not _is_int_list(example, len(shape)) or any(
                e < 1 or (d >= 0 and e != d) or e % m
                for e, d, m in zip(example, shape, steps)):
            return (f"example {example!r} does not fit shape {list(shape)}"
                    + (f" with multiple {list(steps)}" if spec.get("multiple") else ""))
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
        "inputs": Option((list, tuple), "input tensors: [{'name', 'dtype', 'shape'}], -1 free "
                         "(optional 'multiple': each axis's step; 'example': one shape)",
                         _tensor_specs),
        "outputs": Option((list, tuple), "output names, in the order the model returns them "
                          "(nested tuples, such as a returned state, flattened): what the "
                          "server calls them", _string_list),
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
    "step": {
        "description": _DESCRIPTION,
        "command": Option((str,), "the command whose --json output one item's result is, "
                          "e.g. 'medical detect' (`deepseek batch medical detect` finds it)"),
        "summary": Option((Callable,), "summary(result) -> {column: number or text}: the "
                          "item's row in the batch's summary table"),
        "leave_out": Option((Callable,), "leave_out(path) -> why or None: a file an --input "
                            "glob matched that is not this step's input (a mask beside its "
                            "image, a file the plugin wrote), left out with its reason"),
    },
}


class Provider(Protocol):
    """A name space answered on demand (see :meth:`Registry.add_provider`)."""

    name: str

    def lookup(self, name: str) -> Entry | None:
        """The entry this provider has for ``name``, or None."""

    def names(self, pattern: str) -> list[str]:
        """The provider's names that match a glob ``pattern``."""


class Registry(Generic[T]):
    """A name -> object registry for one kind of thing (``"model"``, ``"reader"`` ...).

    ``prefer`` maps a contested name to the plugin whose object it should mean."""

    def __init__(self, kind: str, options: dict[str, Option] | None = None,
                 prefer: Mapping[str, str] | None = None) -> None:
        self.kind = kind
        self.options = OPTIONS.get(kind, {}) if options is None else options
        self.prefer = dict(prefer or {})
        self._claims: dict[str, list[Entry[T]]] = {}
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
        """Register ``obj`` under ``name`` for ``plugin``.

        The name, the options (:data:`OPTIONS`) and the object's contract are checked first
        (:class:`RegistryError`). A name another plugin or a provider also claims is kept
        for both under their qualified names and raises :class:`NameConflictError` naming
        every claimant, unless a preference settles it."""
        who = plugin or "the caller"
        if (not isinstance(name, str) or not name.strip() or name != name.strip()
                or QUALIFIER in name):
            raise RegistryError(
                f"{who}: invalid {self.kind} name {name!r}: use a non-empty string without "
                f"surrounding spaces or {QUALIFIER!r} (which qualifies a name by its plugin)")
        self._check_options(name, who, {"description": description, **meta})
        problem = contracts.check(self.kind, obj, meta)
        if problem:
            raise RegistryError(f"{who}: register({name!r}, ...): {problem}")
        claims = self._claims.setdefault(name, [])
        if any(e.plugin == plugin for e in claims):
            raise RegistryError(f"{who} registers {self.kind} {name!r} twice; register each "
                                "name once")
        if not description:
            doc = getattr(obj, "__doc__", None) or ""
            description = doc.strip().splitlines()[0] if doc.strip() else ""
        claims.append(Entry(name, obj, plugin, description,
                            {k: v for k, v in meta.items() if v is not None}))
        rivals = self._claimants(name)
        if len(rivals) > 1 and self._preferred(name, rivals) is None:
            raise NameConflictError(self._conflict_message(name, rivals),
                                    sorted(e.plugin or "the caller" for e in rivals))
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

    # ownership --------------------------------------------------------------------------
    def _claimants(self, name: str) -> list[Entry[T]]:
        """Every entry that answers to ``name``: the plugins' claims, then the providers'."""
        found = list(self._claims.get(name, ()))
        for provider in self._providers:
            e = provider.lookup(name)
            if e is not None:
                found.append(e)
        return found

    def _preferred(self, name: str, rivals: list[Entry[T]]) -> Entry[T] | None:
        want = self.prefer.get(name)
        return next((e for e in rivals if want is not None and e.plugin == want), None)

    def _conflict_message(self, name: str, rivals: list[Entry[T]]) -> str:
        rivals = sorted(rivals, key=lambda e: str(e.plugin))
        owners = [e.plugin or "the caller" for e in rivals]
        return (f"{self.kind} {name!r} is registered by {len(owners)} plugins "
                f"({', '.join(owners)}); neither is used under that name until one is chosen: "
                f"use a qualified name ({' or '.join(repr(e.qualified) for e in rivals)}) or "
                f"set DEEPSEEK_PREFER={name}=PLUGIN (one of {', '.join(owners)})")

    def conflicts(self) -> dict[str, list[str]]:
        """Contested names that no preference settles -> the plugins that claim them."""
        out = {}
        for name in self._claims:
            rivals = self._claimants(name)
            if len(rivals) > 1 and self._preferred(name, rivals) is None:
                out[name] = sorted(e.plugin or "the caller" for e in rivals)
        return out

    def add_provider(self, provider: Provider) -> None:
        """Answer names that are not registered from ``provider``; a name both a plugin and
        the provider claim is contested like any other."""
        self._providers.append(provider)

    # look-ups ---------------------------------------------------------------------------
    def get(self, name: str) -> T:
        """The object registered as ``name``; :class:`UnknownNameError` with suggestions,
        :class:`NameConflictError` for a contested name."""
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        """The entry ``name`` (or ``plugin:name``) means; see :meth:`get`."""
        owner, sep, bare = str(name).partition(QUALIFIER)
        if sep and owner and bare:
            rivals = self._claimants(bare)
            found = next((e for e in rivals if e.plugin == owner), None)
            if found is None:
                where = (", ".join(repr(e.qualified) for e in rivals) if rivals
                         else "nobody: " + self._unknown_message(bare))
                raise UnknownNameError(f"no {self.kind} {bare!r} registered by {owner!r}; "
                                       f"it is registered by {where}")
            return found
        rivals = self._claimants(name)
        if len(rivals) == 1:
            return rivals[0]
        if rivals:
            chosen = self._preferred(name, rivals)
            if chosen is None:
                raise NameConflictError(self._conflict_message(name, rivals),
                                        sorted(e.plugin or "the caller" for e in rivals))
            return chosen
        raise UnknownNameError(self._unknown_message(name))

    def names(self, pattern: str = "*", *, providers: bool = True) -> list[str]:
        """Sorted names matching a glob ``pattern`` (case-insensitive; no wildcard: a
        substring), registered ones first, then those of the providers."""
        pat = pattern.lower()
        if not any(c in pat for c in "*?["):
            pat = f"*{pat}*"
        own = sorted(n for n in self._claims if fnmatch.fnmatchcase(n.lower(), pat))
        if not providers:
            return own
        seen = set(own)
        extra: list[str] = []
        for provider in self._providers:
            extra += [n for n in provider.names(pattern) if n not in seen]
            seen.update(extra)
        return own + extra

    def entries(self) -> list[Entry[T]]:
        """The registered entries a bare name reaches (contested names left out unless a
        preference settles them), sorted by name."""
        out = []
        for name in sorted(self._claims):
            rivals = self._claimants(name)
            chosen = rivals[0] if len(rivals) == 1 else self._preferred(name, rivals)
            if chosen is not None and any(chosen is e for e in self._claims[name]):
                out.append(chosen)
        return out

    def claims(self) -> list[Entry[T]]:
        """Every registration, contested ones included, sorted by name then plugin."""
        return [e for n in sorted(self._claims)
                for e in sorted(self._claims[n], key=lambda e: str(e.plugin))]

    @property
    def providers(self) -> list[Provider]:
        """The providers answering lookups in this registry."""
        return list(self._providers)

    def _unknown_message(self, name: str) -> str:
        known = sorted(self._claims)
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
        """Whether ``name`` (or ``plugin:name``) is registered, contested or not."""
        if not isinstance(name, str):
            return False
        owner, sep, bare = name.partition(QUALIFIER)
        if sep and owner and bare:
            return any(e.plugin == owner for e in self._claimants(bare))
        return bool(self._claimants(name))

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._claims))

    def __len__(self) -> int:
        return len(self._claims)

    def __repr__(self) -> str:
        return f"<Registry {self.kind}: {len(self)} entries>"
