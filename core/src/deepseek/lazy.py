"""Lazy public names for packages: import heavy modules on first attribute access.

    __getattr__, __dir__ = lazy_exports(__name__, {"Name": "package.module", ...})
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(module: str, names: dict[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` serving ``names`` from their modules."""

    def __getattr__(name: str) -> Any:
        if name in names:
            value = getattr(import_module(names[name]), name)
            setattr(sys.modules[module], name, value)  # later look-ups are plain attributes
            return value
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[module])) | set(names))

    return __getattr__, __dir__


def lazy_callable(target: str) -> Callable[..., Any]:
    """A function that imports ``"package.module:attr"`` on its first call and forwards to it.

    Plugins register these, so that building a registry imports none of the heavy modules
    behind it::

        register("dicom", lazy_callable("deepseek.medical.dicom:read_dicom"), ...)
    """
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"lazy_callable needs 'package.module:attr', got {target!r}")
    resolved: list[Callable[..., Any]] = []

    def call(*args: Any, **kwargs: Any) -> Any:
        if not resolved:
            resolved.append(getattr(import_module(module), attr))
        return resolved[0](*args, **kwargs)

    call.__name__ = call.__qualname__ = attr
    call.__doc__ = None
    call.target = target  # type: ignore[attr-defined]
    return call


def resolved(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The function behind a :func:`lazy_callable` (imported now), or ``fn`` itself."""
    target = getattr(fn, "target", None)
    if isinstance(target, str) and ":" in target:
        module, _, attr = target.partition(":")
        return getattr(import_module(module), attr)
    return fn

