"""The plugin system: entry-point discovery, per-plugin registries, owned names, isolated errors.

All plugin state lives in one :class:`Plugins` object: its pluggy ``PluginManager``, the
entry points it loaded, what each plugin registered and the errors each caused. The process
uses one (:func:`manager`); a test or a notebook makes its own and swaps it in with
:func:`use`. Plugins are found through the entry-point group ``deepseek`` the first time
anything needs them (never at ``import deepseek``). The environment selects them:

* ``DEEPSEEK_LOAD_PLUGINS`` -- comma-separated entry-point names to load, and no others
  (set it to an empty string to load none);
* ``DEEPSEEK_DISABLE_PLUGINS`` -- comma-separated names to skip;
* ``DEEPSEEK_PREFER`` -- ``name=plugin`` pairs (comma-separated) that settle a name two
  plugins register (``tick-mlp=finance``); see below.

Hooks are called in pluggy's own order (``tryfirst``/``trylast``, otherwise the plugin
registered last first), each plugin's implementation as a pluggy call of its own, so that a
plugin whose hook raises is recorded with its error (``deepseek plugins``) and never stops
the others. Order never decides who owns a name: a name two plugins register, in any
registry or as a CLI command, is an error reported for both, and neither answers to it until
the user chooses (``plugin:name``, or ``DEEPSEEK_PREFER``).

Tests register plugin objects for their own duration::

    with temporary_plugin(MyPlugin, name="my-test-plugin"):
        assert "my-model" in models()

or build a system of their own::

    with use(Plugins(entry_points=False)) as system:
        system.register(MyPlugin, name="mine")
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import logging
import os
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pluggy

from deepseek import contracts, hookspecs
from deepseek.errors import NameConflictError, RegistryError
from deepseek.registry import Registry

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "deepseek"
PREFER_ENV = "DEEPSEEK_PREFER"

REGISTRY_HOOKS = {
    "reader": "register_readers",
    "model": "register_models",
    "metric": "register_metrics",
    "pipeline": "register_pipelines",
    "step": "register_steps",
}

_FROM_ENV: Any = object()  # a Plugins argument read from the environment


def _env_names(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def parse_prefer(text: str | None, source: str = PREFER_ENV) -> dict[str, str]:
    """``name=plugin,name=plugin`` -> ``{name: plugin}``; a malformed pair is a RegistryError
    that says the form."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, plugin = item.partition("=")
        if not sep or not name.strip() or not plugin.strip():
            raise RegistryError(f"{source}: {item.strip()!r} is not NAME=PLUGIN (e.g. "
                                f"{source}=tick-mlp=finance,dicom=medical)")
        out[name.strip()] = plugin.strip()
    return out


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
        """Whether the plugin loaded and registered without an error."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """The plugin's report as JSON-ready data (what ``deepseek plugins --json`` prints)."""
        return {
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "ok": self.ok,
            "hooks": self.hooks,
            **{f"{kind}s": names for kind, names in self.registered.items()},
            "errors": self.errors,
        }


class Plugins:
    """One plugin system: a pluggy manager, its plugins, their registries and errors.

    ``entry_points=False`` loads no installed plugin (only what is registered by hand);
    ``only``/``disabled``/``prefer`` default to the environment variables above."""

    def __init__(self, *, entry_points: bool = True, only: set[str] | None = _FROM_ENV,
                 disabled: set[str] | None = _FROM_ENV,
                 prefer: dict[str, str] | None = _FROM_ENV) -> None:
        self.pm = pluggy.PluginManager("deepseek")
        self.pm.add_hookspecs(hookspecs)
        self.entry_points = entry_points
        self.only = _env_names("DEEPSEEK_LOAD_PLUGINS") if only is _FROM_ENV else only
        self.disabled = ((_env_names("DEEPSEEK_DISABLE_PLUGINS") or set())
                         if disabled is _FROM_ENV else set(disabled or ()))
        self.setting_errors: dict[str, str] = {}
        if prefer is _FROM_ENV:
            try:
                prefer = parse_prefer(os.environ.get(PREFER_ENV))
            except RegistryError as exc:
                self.setting_errors[PREFER_ENV] = str(exc)
                log.warning("%s", exc)
                prefer = {}
        self.prefer: dict[str, str] = dict(prefer or {})
        self._loaded = False
        self._load_errors: dict[str, str] = {}
        self._hook_errors: dict[str, dict[str, str]] = {}
        self._dist_of: dict[str, tuple[str, str]] = {}  # plugin -> (distribution, version)
        self._cache: dict[str, tuple[frozenset, Registry]] = {}

    # plugins ------------------------------------------------------------------------------
    def load(self) -> pluggy.PluginManager:
        """Load the installed plugins once (later calls are free); return the manager."""
        if self._loaded:
            return self.pm
        self._loaded = True
        if not self.entry_points:
            return self.pm
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            name = ep.name
            if (self.only is not None and name not in self.only) or name in self.disabled:
                log.debug("plugin %s not loaded (selected out by environment)", name)
                continue
            if self.pm.get_plugin(name) is not None or name in self._load_errors:
                continue
            dist = getattr(ep, "dist", None)
            if dist is not None:
                self._dist_of[name] = (dist.metadata["Name"], dist.version)
            try:
                self.pm.register(ep.load(), name=name)
            except Exception as exc:  # a broken plugin must not take the CLI down
                self._load_errors[name] = f"{type(exc).__name__}: {exc}"
                log.warning("plugin %r (%s) failed to load: %s", name, ep.value,
                            self._load_errors[name])
        return self.pm

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object by hand (tests, notebooks); returns its name."""
        self.load()
        registered = self.pm.register(plugin, name=name)
        if registered is None:
            raise ValueError(f"plugin {name or plugin!r} is blocked or already registered")
        return registered

    def unregister(self, name: str) -> None:
        """Remove the plugin registered as ``name`` and forget its errors, and the registries
        built with it (the same plugin registered again registers again, its errors seen)."""
        self.pm.unregister(name=name)
        self._hook_errors.pop(name, None)
        self._cache.clear()

    @contextlib.contextmanager
    def temporary(self, plugin: object, name: str | None = None) -> Iterator[str]:
        """Register ``plugin`` for the duration of a ``with`` block."""
        registered = self.register(plugin, name)
        try:
            yield registered
        finally:
            self.unregister(registered)

    # hooks --------------------------------------------------------------------------------
    def _record(self, plugin_name: str, where: str, msg: str) -> None:
        """Remember a plugin's error (several in one place are joined) and log it."""
        errs = self._hook_errors.setdefault(plugin_name, {})
        errs[where] = f"{errs[where]}; {msg}" if where in errs else msg
        log.warning("plugin %r: error in %s: %s", plugin_name, where, msg)

    def _call_each(self, hook_name: str, kwargs_for: Callable[[str], dict[str, Any]],
                   after: Callable[[str], None] | None = None) -> None:
        """Call every implementation of ``hook_name`` in pluggy's own call order, each as a
        pluggy call of its own plugin alone, recording an exception against its plugin;
        ``after(plugin_name)`` follows each call."""
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        for impl in reversed(impls):  # pluggy calls the last of get_hookimpls() first
            others = [i.plugin for i in impls if i is not impl]
            single = self.pm.subset_hook_caller(hook_name, remove_plugins=others)
            try:
                single(**kwargs_for(impl.plugin_name))
            except Exception as exc:
                self._record(impl.plugin_name, hook_name, f"{type(exc).__name__}: {exc}")
            if after is not None:
                after(impl.plugin_name)

    def _fingerprint(self) -> frozenset:
        return frozenset((name, id(obj)) for name, obj in self.pm.list_name_plugin())

    def registry(self, kind: str) -> Registry:
        """The registry of ``kind`` (``reader``, ``model``, ``metric``, ``pipeline``,
        ``step``).

        Built from the plugins' hooks on first use and rebuilt when the set of registered
        plugins changes (as it does in tests)."""
        if kind not in REGISTRY_HOOKS:
            raise ValueError(f"unknown registry kind {kind!r}; use one of "
                             f"{sorted(REGISTRY_HOOKS)}")
        self.load()
        fp = self._fingerprint()
        cached = self._cache.get(kind)
        if cached is not None and cached[0] == fp:
            return cached[1]
        registry: Registry = Registry(kind, prefer=self.prefer)
        if kind == "model":  # before the plugins, so that a name they take from it is seen
            from deepseek.loader import zoo

            registry.add_provider(zoo.ZooProvider())
        hook_name = REGISTRY_HOOKS[kind]
        for errs in self._hook_errors.values():
            errs.pop(hook_name, None)
        self._call_each(hook_name, lambda plugin: {
            "register": self._registrar(registry, hook_name, plugin)})
        self._cache[kind] = (fp, registry)
        return registry

    def _registrar(self, registry: Registry, hook_name: str, plugin_name: str
                   ) -> Callable[..., Any]:
        """The ``register`` callback a plugin's hook receives."""

        def register(name: str, obj: Any, **options: Any) -> Any:
            """One registration; a bad one is recorded against the plugin (a contested name
            against every plugin that claims it) and the others go on."""
            try:
                return registry.register(name, obj, plugin=plugin_name, **options)
            except NameConflictError as exc:
                for owner in exc.plugins:
                    if self.pm.get_plugin(owner) is not None:
                        self._record(owner, hook_name, str(exc))
            except RegistryError as exc:
                self._record(plugin_name, hook_name, str(exc))
            return obj

        return register

    def add_commands(self, cli: Any) -> None:
        """Let every plugin add its subcommands to the click group ``cli``. A command name
        the core or another plugin already uses is an error for the plugins involved; a
        name two plugins contest answers with that error until ``DEEPSEEK_PREFER`` picks."""
        self.load()
        core = dict(cli.commands)
        owners: dict[str, list[tuple[str, Any]]] = {}
        before: dict[str, Any] = {}

        def snapshot(_plugin: str) -> dict[str, Any]:
            before.clear()
            before.update(cli.commands)
            return {"cli": cli}

        def claims(plugin: str) -> None:
            for name, cmd in list(cli.commands.items()):
                if before.get(name) is cmd:
                    continue
                if name in core:
                    cli.commands[name] = core[name]
                    self._record(plugin, "register_commands",
                                 f"command {name!r} is the core's own; choose another name")
                else:
                    owners.setdefault(name, []).append((plugin, cmd))

        self._call_each("register_commands", snapshot, after=claims)
        for name, claimed in owners.items():
            if len(claimed) > 1:
                self._settle_command(cli, name, claimed)

    def _settle_command(self, cli: Any, name: str, claims: list[tuple[str, Any]]) -> None:
        import click

        want = self.prefer.get(name)
        chosen = next((cmd for plugin, cmd in claims if plugin == want), None)
        if chosen is not None:
            cli.commands[name] = chosen
            return
        plugins = [p for p, _ in claims]
        msg = (f"command {name!r} is added by {len(plugins)} plugins ({', '.join(plugins)}); "
               f"neither runs until one is chosen: set {PREFER_ENV}={name}={plugins[0]}")
        for plugin in plugins:
            self._record(plugin, "register_commands", msg)

        def contested() -> None:
            raise RegistryError(msg)

        cli.commands[name] = click.Command(name, callback=contested,
                                           help=f"(contested by {', '.join(plugins)})")

    # reports ------------------------------------------------------------------------------
    def infos(self, check: bool = False) -> list[PluginInfo]:
        """Every loaded plugin (entry points and hand-registered objects) and every failed one.

        Errors include import failures, hooks that raised or registered badly, contested
        names, hook names that match no specification and, with ``check``, what only the
        real objects tell: every registered object's contract with its module imported, and
        packaged weights that fit their model (this imports the plugins' modules and torch).
        """
        self.load()
        regs = {kind: self.registry(kind) for kind in REGISTRY_HOOKS}
        infos: list[PluginInfo] = []
        for name, obj in sorted(self.pm.list_name_plugin(), key=lambda p: str(p[0])):
            if name is None:
                continue
            dist, version = self._dist_of.get(name, (None, getattr(obj, "__version__", None)))
            hooks = sorted(h.name for h in self.pm.get_hookcallers(obj) or [])
            registered = {kind: [e.name for e in reg.claims() if e.plugin == name]
                          for kind, reg in regs.items()}
            errors = dict(self._hook_errors.get(name, {}))
            errors.update(self.unknown_hooks(obj))
            if check:
                errors.update(self._deep_check(name, regs))
            infos.append(PluginInfo(name, version, dist, hooks, registered, errors))
        for name, err in sorted(self._load_errors.items()):
            dist, version = self._dist_of.get(name, (None, None))
            infos.append(PluginInfo(name, version, dist, [], {}, {"import": err}))
        return infos

    @staticmethod
    def _deep_check(plugin: str, regs: dict[str, Registry]) -> dict[str, str]:
        errors = {}
        for kind, reg in regs.items():
            for entry in reg.claims():
                if entry.plugin != plugin:
                    continue
                problem = contracts.check(kind, entry.obj, entry.meta, resolve=True)
                if problem is None and kind == "model":
                    problem = check_model_weights(entry)
                if problem:
                    errors[f"{kind} {entry.name}"] = problem
        return errors

    def unknown_hooks(self, plugin: object) -> dict[str, str]:
        """Hook implementations of ``plugin`` that match no hook specification (a misspelled
        ``register_model``), as pluggy's ``check_pending`` finds them, with the closest
        hook."""
        import difflib

        specs = [n for n in dir(hookspecs) if n.startswith("register_")]
        found: dict[str, str] = {}
        for caller in self.pm.get_hookcallers(plugin) or []:
            if caller.has_spec():
                continue
            if any(i.optionalhook for i in caller.get_hookimpls() if i.plugin is plugin):
                continue
            close = difflib.get_close_matches(caller.name, specs, n=1, cutoff=0.6)
            found[caller.name] = (f"unknown hook {caller.name!r}"
                                  + (f"; did you mean {close[0]!r}?" if close else "")
                                  + f" (hooks: {', '.join(specs)})")
        return found

    def owner_of(self, module_name: str) -> str | None:
        """The plugin whose package holds module ``module_name`` (the longest match)."""
        best, found = 0, None
        for name, obj in self.pm.list_name_plugin():
            mod = obj.__name__ if isinstance(obj, types.ModuleType) else \
                getattr(obj, "__module__", None) or ""
            package = mod.rpartition(".")[0] or mod
            if package in ("", "deepseek"):  # the core's own plugin
                continue
            if (module_name == package or module_name.startswith(package + ".")) \
                    and len(package) > best:
                best, found = len(package), name
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


# --------------------------------------------------------------------------- the process's
_current: Plugins | None = None


def manager() -> Plugins:
    """The plugin system in use (made from the environment on first use)."""
    global _current
    if _current is None:
        _current = Plugins()
    return _current


@contextlib.contextmanager
def use(system: Plugins) -> Iterator[Plugins]:
    """Use ``system`` instead of the current plugin system for a ``with`` block."""
    global _current
    previous, _current = _current, system
    try:
        yield system
    finally:
        _current = previous


def load_plugins() -> pluggy.PluginManager:
    """Load the installed plugins of the current system (once) and return its manager."""
    return manager().load()


def get_registry(kind: str) -> Registry:
    """The current system's registry of ``kind``; see :meth:`Plugins.registry`."""
    return manager().registry(kind)


def readers() -> Registry:
    """The reader registry of the current plugin system."""
    return get_registry("reader")


def models() -> Registry:
    """The model registry of the current plugin system (the zoo answers too)."""
    return get_registry("model")


def metrics() -> Registry:
    """The metric registry of the current plugin system."""
    return get_registry("metric")


def pipelines() -> Registry:
    """The pipeline registry of the current plugin system."""
    return get_registry("pipeline")


def steps() -> Registry:
    """The per-item steps `deepseek batch` runs (``register_steps``)."""
    return get_registry("step")


def add_commands(cli: Any) -> None:
    """Let every plugin of the current system add its subcommands to ``cli``."""
    manager().add_commands(cli)


def plugin_infos(check: bool = False) -> list[PluginInfo]:
    """See :meth:`Plugins.infos`."""
    return manager().infos(check=check)


def temporary_plugin(plugin: object, name: str | None = None
                     ) -> contextlib.AbstractContextManager[str]:
    """Register ``plugin`` with the current system for a ``with`` block (tests, notebooks)."""
    return manager().temporary(plugin, name)
