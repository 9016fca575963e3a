"""The plugin manager: entry-point discovery, per-plugin registries and error isolation.

Plugins are found through the entry-point group ``deepseek`` the first time anything needs
them (never at ``import deepseek``). Two environment variables select them:

* ``DEEPSEEK_LOAD_PLUGINS`` -- comma-separated entry-point names to load, and no others
  (set it to an empty string to load none);
* ``DEEPSEEK_DISABLE_PLUGINS`` -- comma-separated names to skip.

A plugin that fails to import, or whose hook raises, is recorded with its error (shown by
``deepseek plugins``) and skipped; it never takes the CLI down.

Tests register plugin objects for their own duration::

    with temporary_plugin(MyPlugin, name="my-test-plugin"):
        assert "my-model" in models()
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pluggy

from deepseek import hookspecs
from deepseek.registry import Registry

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "deepseek"

#: The one plugin manager of the process. Tests may ``pm.register(obj, name=...)`` and
#: ``pm.unregister(name=...)`` directly; registries follow the registered set.
pm = pluggy.PluginManager("deepseek")
pm.add_hookspecs(hookspecs)

_loaded = False
_load_errors: dict[str, str] = {}
_hook_errors: dict[str, dict[str, str]] = {}
_dist_of: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
_registry_cache: dict[str, tuple[frozenset, Registry]] = {}

REGISTRY_HOOKS = {
    "reader": "register_readers",
    "model": "register_models",
    "metric": "register_metrics",
    "pipeline": "register_pipelines",
}


def _env_names(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def load_plugins() -> pluggy.PluginManager:
    """Load the installed plugins once (later calls are free) and return the manager."""
    global _loaded
    if _loaded:
        return pm
    _loaded = True
    only = _env_names("DEEPSEEK_LOAD_PLUGINS")
    disabled = _env_names("DEEPSEEK_DISABLE_PLUGINS") or set()
    for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        name = ep.name
        if (only is not None and name not in only) or name in disabled:
            log.debug("plugin %s not loaded (selected out by environment)", name)
            continue
        if pm.get_plugin(name) is not None or name in _load_errors:
            continue
        dist = getattr(ep, "dist", None)
        if dist is not None:
            _dist_of[name] = (dist.metadata["Name"], dist.version)
        try:
            module = ep.load()
            pm.register(module, name=name)
        except Exception as exc:  # a broken plugin must not take the CLI down
            _load_errors[name] = f"{type(exc).__name__}: {exc}"
            log.warning("plugin %r (%s) failed to load: %s", name, ep.value, _load_errors[name])
    return pm


def _fingerprint() -> frozenset:
    return frozenset((name, id(obj)) for name, obj in pm.list_name_plugin())


def _call_hook(hook_name: str, kwargs_for: Callable[[str], dict[str, Any]]) -> None:
    """Call each plugin's implementation of ``hook_name`` separately, isolating failures."""
    caller = getattr(pm.hook, hook_name)
    for impl in caller.get_hookimpls():  # registration order: the first plugin wins a name
        kwargs = kwargs_for(impl.plugin_name)
        try:
            impl.function(**{k: kwargs[k] for k in impl.argnames})
        except Exception as exc:
            msg = f"{type(exc).__name__}: {exc}"
            _hook_errors.setdefault(impl.plugin_name, {})[hook_name] = msg
            log.warning("plugin %r failed in %s: %s", impl.plugin_name, hook_name, msg)


def get_registry(kind: str) -> Registry:
    """The registry of ``kind`` (``reader``, ``model``, ``metric``, ``pipeline``).

    Built from the plugins' hooks on first use and rebuilt when the set of registered
    plugins changes (as it does in tests).
    """
    if kind not in REGISTRY_HOOKS:
        raise ValueError(f"unknown registry kind {kind!r}; use one of {sorted(REGISTRY_HOOKS)}")
    load_plugins()
    fp = _fingerprint()
    cached = _registry_cache.get(kind)
    if cached is not None and cached[0] == fp:
        return cached[1]
    registry: Registry = Registry(kind)
    hook_name = REGISTRY_HOOKS[kind]
    for errs in _hook_errors.values():
        errs.pop(hook_name, None)

    def kwargs_for(plugin_name: str) -> dict[str, Any]:
        def register(name: str, obj: Any, **options: Any) -> Any:
            return registry.register(name, obj, plugin=plugin_name, **options)

        return {"register": register}

    _call_hook(hook_name, kwargs_for)
    _registry_cache[kind] = (fp, registry)
    return registry


def readers() -> Registry:
    return get_registry("reader")


def models() -> Registry:
    return get_registry("model")


def metrics() -> Registry:
    return get_registry("metric")


def pipelines() -> Registry:
    return get_registry("pipeline")


def add_commands(cli: Any) -> None:
    """Let every plugin add its subcommands to the top-level click group ``cli``."""
    load_plugins()
    _call_hook("register_commands", lambda _name: {"cli": cli})


@dataclass
class PluginInfo:
    """What ``deepseek plugins`` reports about one plugin."""

    name: str
    version: str | None
    distribution: str | None
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "hooks": self.hooks,
            **{f"{kind}s": names for kind, names in self.registered.items()},
            "errors": self.errors,
        }


def plugin_infos() -> list[PluginInfo]:
    """Every loaded plugin (entry points and test-registered objects) and every failed one."""
    load_plugins()
    regs = {kind: get_registry(kind) for kind in REGISTRY_HOOKS}
    infos: list[PluginInfo] = []
    for name, obj in sorted(pm.list_name_plugin(), key=lambda p: str(p[0])):
        if name is None:
            continue
        dist, version = _dist_of.get(name, (None, getattr(obj, "__version__", None)))
        hooks = sorted(h.name for h in pm.get_hookcallers(obj) or [])
        registered = {
            kind: [e.name for e in reg.entries() if e.plugin == name] for kind, reg in regs.items()
        }
        infos.append(
            PluginInfo(name, version, dist, hooks, registered, dict(_hook_errors.get(name, {})))
        )
    for name, err in sorted(_load_errors.items()):
        dist, version = _dist_of.get(name, (None, None))
        infos.append(PluginInfo(name, version, dist, [], {}, {"import": err}))
    return infos


@contextlib.contextmanager
def temporary_plugin(plugin: object, name: str | None = None) -> Iterator[str]:
    """Register ``plugin`` for the duration of a ``with`` block (tests, notebooks)."""
    load_plugins()
    registered = pm.register(plugin, name=name)
    if registered is None:
        raise ValueError(f"plugin {name or plugin!r} is blocked or already registered")
    try:
        yield registered
    finally:
        pm.unregister(name=registered)
        _hook_errors.pop(registered, None)


def _reset_for_tests() -> None:
    """Forget loaded entry points so that a test can reload them under a new environment."""
    global _loaded
    for name in list(_dist_of) + list(_load_errors):
        if pm.get_plugin(name) is not None:
            pm.unregister(name=name)
    _dist_of.clear()
    _load_errors.clear()
    _hook_errors.clear()
    _registry_cache.clear()
    _loaded = False
