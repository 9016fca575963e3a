"""Named registries of readers, models, metrics and pipelines.

A :class:`Registry` maps names to objects registered by plugins, remembers which plugin
registered each name, lists names by glob pattern and fails loudly, with suggestions, on an
unknown name.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

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


class Registry(Generic[T]):
    """A name -> object registry for one kind of thing (``"model"``, ``"reader"`` ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self,
        name: str,
        obj: T,
        *,
        plugin: str | None = None,
        description: str = "",
        **meta: Any,
    ) -> T:
        """Register ``obj`` under ``name``. A name may be registered once only."""
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise RegistryError(
                f"invalid {self.kind} name {name!r}: use a non-empty string without "
                "surrounding spaces"
            )
        if name in self._entries:
            prev = self._entries[name].plugin or "the caller"
            raise RegistryError(
                f"{self.kind} {name!r} is already registered by {prev}; "
                f"{plugin or 'the caller'} must choose another name"
            )
        if not description:
            doc = getattr(obj, "__doc__", None) or ""
            description = doc.strip().splitlines()[0] if doc.strip() else ""
        self._entries[name] = Entry(name, obj, plugin, description, dict(meta))
        return obj

    def get(self, name: str) -> T:
        """The object registered as ``name``; :class:`UnknownNameError` with suggestions."""
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self._unknown_message(name)) from None

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a glob ``pattern`` (case-insensitive)."""
        pat = pattern.lower()
        if not any(c in pat for c in "*?["):
            pat = f"*{pat}*"
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n.lower(), pat))

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in sorted(self._entries)]

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
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<Registry {self.kind}: {len(self)} entries>"
