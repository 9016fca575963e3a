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
from deepseek.errors import RegistryError
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


def _record(plugin_name: str, where: str, msg: str) -> None:
    """Remember a plugin's error (several in one place are joined) and log it."""
    errs = _hook_errors.setdefault(plugin_name, {})
    errs[where] = f"{errs[where]}; {msg}" if where in errs else msg
    log.warning("plugin %r: error in %s: %s", plugin_name, where, msg)


def _call_hook(hook_name: str, kwargs_for: Callable[[str], dict[str, Any]]) -> None:
    """Call each plugin's implementation of ``hook_name`` separately, isolating failures."""
    caller = getattr(pm.hook, hook_name)
    for impl in caller.get_hookimpls():  # registration order: the first plugin wins a name
        kwargs = kwargs_for(impl.plugin_name)
        try:
            impl.function(**{k: kwargs[k] for k in impl.argnames})
        except Exception as exc:
            _record(impl.plugin_name, hook_name, f"{type(exc).__name__}: {exc}")


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
            """One registration; a bad one is recorded against the plugin and skipped, so
            the plugin's other registrations still happen."""
            try:
                return registry.register(name, obj, plugin=plugin_name, **options)
            except RegistryError as exc:
                _record(plugin_name, hook_name, str(exc))
                return obj

        return {"register": register}

    _call_hook(hook_name, kwargs_for)
    if kind == "model":
        from deepseek import zoo

        if zoo.available():
            registry.add_provider(zoo.TimmProvider())
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


def unknown_hooks(plugin: object) -> dict[str, str]:
    """Hook implementations of ``plugin`` that match no hook specification (a misspelled
    ``register_model``), as pluggy's ``check_pending`` finds them, with the closest hook."""
    import difflib

    specs = [n for n in dir(hookspecs) if n.startswith("register_")]
    found: dict[str, str] = {}
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.has_spec():
            continue
        if any(i.optionalhook for i in caller.get_hookimpls() if i.plugin is plugin):
            continue
        close = difflib.get_close_matches(caller.name, specs, n=1, cutoff=0.6)
        found[caller.name] = (f"unknown hook {caller.name!r}"
                              + (f"; did you mean {close[0]!r}?" if close else "")
                              + f" (hooks: {', '.join(specs)})")
    return found


def check_model_weights(entry: Any) -> str | None:
    """Why a registered model's packaged weights do not fit its builder, or None.

    The model is built on PyTorch's meta device (no memory, no computation) with its default
    config and its parameter names and shapes are compared with the safetensors header.
    Without PyTorch (an edge install) nothing is built, so nothing is checked.
    """
    weights = entry.meta.get("weights")
    if not weights:
        return None
    from deepseek.loader import torch

    if torch is None:
        return None
    from safetensors import safe_open

    try:
        with torch.device("meta"):
            module = entry.obj(**(entry.meta.get("config") or {}))
        want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    except Exception as exc:
        return f"model {entry.name!r}: builder failed with its default config: {exc}"
    try:
        with safe_open(str(weights), framework="pt") as f:
            have = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:
        return f"model {entry.name!r}: weights {weights} are not readable safetensors: {exc}"
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    wrong = sorted(k for k in set(want) & set(have) if want[k] != have[k])
    if not (missing or unexpected or wrong):
        return None
    parts = []
    if missing:
        parts.append(f"missing {missing[:3]}")
    if unexpected:
        parts.append(f"unexpected {unexpected[:3]}")
    if wrong:
        parts.append("shape of " + ", ".join(f"{k} {have[k]} != {want[k]}" for k in wrong[:3]))
    return (f"model {entry.name!r}: weights {weights} do not fit its default config "
            f"{entry.meta.get('config') or {}}: " + "; ".join(parts))


def plugin_infos(check_weights: bool = False) -> list[PluginInfo]:
    """Every loaded plugin (entry points and test-registered objects) and every failed one.

    Errors include import failures, hooks that raised or registered badly, hook names that
    match no specification and, with ``check_weights``, packaged weights that do not fit
    their model (this imports torch).
    """
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
        errors = dict(_hook_errors.get(name, {}))
        for hook, msg in unknown_hooks(obj).items():
            errors[hook] = msg
        if check_weights:
            for entry in regs["model"].entries():
                if entry.plugin == name:
                    problem = check_model_weights(entry)
                    if problem:
                        errors[f"weights of {entry.name}"] = problem
        infos.append(PluginInfo(name, version, dist, hooks, registered, errors))
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
