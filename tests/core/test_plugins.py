from __future__ import annotations

import json
import sys
import textwrap

import pytest

from deepseek import hookimpl, plugins
from deepseek.errors import NameConflictError, RegistryError, UnknownNameError
from deepseek.plugins import (
    Plugins,
    get_registry,
    manager,
    models,
    pipelines,
    plugin_infos,
    temporary_plugin,
    use,
)
from deepseek.registry import Registry


def test_installed_plugins_are_listed():
    names = {i.name: i for i in plugin_infos()}
    for name in ("medical", "manufacturing", "finance"):
        assert name in names, f"plugin {name} not found among {sorted(names)}"
        assert names[name].ok, names[name].errors
        assert names[name].version == "0.1.0"
        assert names[name].distribution == f"deepseek-{name}"
        assert "register_commands" in names[name].hooks


def test_temporary_plugin_adds_and_removes_names(tiny_plugin):
    assert "test-tiny" in models()
    assert "test-pipeline" in pipelines()
    assert "test-reader" in get_registry("reader")
    assert "test-accuracy" in get_registry("metric")
    info = next(i for i in plugin_infos() if i.name == "test-plugin")
    assert info.version == "9.9.9"
    assert info.registered["model"] == ["test-conv", "test-tiny"]
    assert models().entry("test-tiny").plugin == "test-plugin"


def test_names_do_not_leak_between_tests():
    assert "test-tiny" not in models()
    assert all(i.name != "test-plugin" for i in plugin_infos())


def test_direct_register_on_plugin_manager():
    class P:
        @staticmethod
        @hookimpl
        def register_metrics(register):
            register("direct-metric", lambda p, r: {"x": 1.0})

    pm = manager().pm
    pm.register(P, name="direct")
    try:
        assert "direct-metric" in get_registry("metric")
    finally:
        pm.unregister(name="direct")
    assert "direct-metric" not in get_registry("metric")


def test_a_test_makes_its_own_plugin_system():
    class P:
        @staticmethod
        @hookimpl
        def register_metrics(register):
            register("own-metric", lambda p, r: {"x": 1.0})

    before = manager()
    with use(Plugins(entry_points=False)) as system:
        assert manager() is system and "tick-mlp" not in models()
        system.register(P, name="own")
        assert get_registry("metric").names() == ["own-metric"]
    assert manager() is before and "own-metric" not in get_registry("metric")


def test_unknown_name_suggests_close_names(tiny_plugin):
    with pytest.raises(UnknownNameError) as exc:
        models().get("test-tinny")
    msg = str(exc.value)
    assert "unknown model 'test-tinny'" in msg and "test-tiny" in msg


def test_unknown_name_in_empty_registry_says_so():
    reg: Registry = Registry("widget")
    with pytest.raises(UnknownNameError, match="no widgets are registered"):
        reg.get("x")


def test_names_pattern(tiny_plugin):
    reg = models()
    assert reg.names("test-*") == ["test-conv", "test-tiny"]
    assert reg.names("tiny", providers=False) == ["test-tiny"]  # no wildcard: substring
    assert reg.names("tiny")[0] == "test-tiny" and "convnext_tiny" in reg.names("tiny")
    assert reg.names("nothing-like-this") == []


def test_a_name_two_plugins_claim_is_nobodys_until_chosen():
    def a(p, r):
        return {"v": 1.0}

    def b(p, r):
        return {"v": 2.0}

    reg: Registry = Registry("metric")
    reg.register("m", a, plugin="one")
    with pytest.raises(NameConflictError, match=r"metric 'm' is registered by 2 plugins "
                       r"\(one, two\).*'one:m' or 'two:m'.*"
                       r"DEEPSEEK_PREFER=m=PLUGIN \(one of one, two\)") as exc:
        reg.register("m", b, plugin="two")
    assert exc.value.plugins == ["one", "two"]
    with pytest.raises(NameConflictError):
        reg.get("m")  # neither answers to the bare name
    assert reg.get("one:m") is a and reg.get("two:m") is b
    assert "m" in reg and reg.conflicts() == {"m": ["one", "two"]} and reg.entries() == []
    with pytest.raises(UnknownNameError, match="no metric 'm' registered by 'three'"):
        reg.get("three:m")
    settled: Registry = Registry("metric", prefer={"m": "two"})
    settled.register("m", a, plugin="one")
    settled.register("m", b, plugin="two")  # a preference settles it: no error
    assert settled.get("m") is b and settled.conflicts() == {}
    with pytest.raises(RegistryError, match="registers metric 'm' twice"):
        settled.register("m", b, plugin="two")
    for bad in (" a", "x:y", ""):
        with pytest.raises(RegistryError, match="invalid metric name"):
            reg.register(bad, a)


def test_a_plugin_that_sorts_first_cannot_take_over_a_packaged_model(tmp_path):
    """An entry point named `aaa` registering tick-mlp: both plugins are reported, the bare
    name loads and serves nothing, the qualified names reach each."""
    from click.testing import CliRunner

    from deepseek.cli import build_cli
    from deepseek.loader import ModelLoader
    from deepseek.serving import DeepSeekServing

    from ..conftest import TinyNet

    class Impostor:
        @staticmethod
        @hookimpl(tryfirst=True)
        def register_models(register):
            register("tick-mlp", TinyNet, config={"n_in": 17})

    with temporary_plugin(Impostor, name="aaa"):
        infos = {i.name: i for i in plugin_infos()}
        for name in ("aaa", "finance"):
            assert "model 'tick-mlp' is registered by 2 plugins" in \
                infos[name].errors["register_models"]
        with pytest.raises(NameConflictError, match="'aaa:tick-mlp' or 'finance:tick-mlp'"):
            ModelLoader.load("tick-mlp")
        with pytest.raises(NameConflictError):
            DeepSeekServing(models={"m": "tick-mlp"}, port=0, grpc_port=None)
        assert ModelLoader.load("finance:tick-mlp").trained
        assert ModelLoader.load("aaa:tick-mlp", pretrained=False).trained is False
        res = CliRunner().invoke(build_cli(), ["plugins", "--json"])
        assert res.exit_code == 1
        assert sorted(json.loads(res.output)["failed"]) == ["aaa", "finance"]
        res = CliRunner().invoke(build_cli(), ["models", "tick"])
        assert "finance:tick-mlp" in res.output and "aaa:tick-mlp" in res.output
        assert "contested" in res.output
    with use(Plugins(prefer={"tick-mlp": "finance"})) as system:
        system.register(Impostor, name="aaa")
        assert ModelLoader.load("tick-mlp").architecture == "tick-mlp"
        assert all(i.ok for i in plugin_infos() if i.name in ("aaa", "finance"))


def test_prefer_setting_is_parsed_and_a_bad_one_reported(monkeypatch):
    assert plugins.parse_prefer("tick-mlp=finance, dicom = medical") == \
        {"tick-mlp": "finance", "dicom": "medical"}
    monkeypatch.setenv("DEEPSEEK_PREFER", "tick-mlp")
    system = Plugins(entry_points=False)
    assert "is not NAME=PLUGIN" in system.setting_errors["DEEPSEEK_PREFER"]


def test_registrations_are_checked_against_their_kind(tmp_path):
    from ..conftest import TinyNet

    class P:
        @staticmethod
        @hookimpl
        def register_models(register):
            register("not-callable", 42)
            register("typo-config", TinyNet, config={"hiden": 16})
            register("needs-arg", lambda width: TinyNet(), config={})
            register("lazy-typo", plugins_lazy("deepseek.finance.models:TickMLPP"))
            register("lazy-config", plugins_lazy("deepseek.finance.models:TickMLP"),
                     config={"n_feature": 17})
            register("fine", TinyNet, config={"hidden": 4})

        @staticmethod
        @hookimpl
        def register_pipelines(register):
            register("bad-pipeline", lambda data: None)

        @staticmethod
        @hookimpl
        def register_metrics(register):
            register("bad-metric", lambda only: {})

        @staticmethod
        @hookimpl
        def register_readers(register):
            register("csv-without-probe", lambda s: s, suffixes=[".csv"])
            register("bad-probe", lambda s: s, suffixes=[".qqq"], accepts=lambda: True)

    with temporary_plugin(P, name="careless"):
        errors = next(i for i in plugin_infos() if i.name == "careless").errors
        m = errors["register_models"]
        assert "register('not-callable', ...): must be a model builder: builder(**config) " \
               "-> torch.nn.Module; got int 42" in m
        assert "unknown config key 'hiden'; did you mean 'hidden'?" in m
        assert "the builder requires 'width'" in m
        assert "module 'deepseek.finance.models' defines no 'TickMLPP'; did you mean " \
               "'TickMLP'?" in m
        assert "unknown config key 'n_feature'; did you mean 'n_features'?" in m
        assert "fine" in models()
        assert not {"not-callable", "typo-config", "needs-arg", "lazy-typo"} & set(models())
        assert "does not take the keyword(s) 'input', 'out_dir', 'quiet'" \
            in errors["register_pipelines"]
        assert "takes 1 positional argument(s)" in errors["register_metrics"]
        r = errors["register_readers"]
        assert "generic suffix(es) .csv" in r and "give accepts=PROBE" in r
        assert "option 'accepts' takes 0 positional argument(s)" in r


def plugins_lazy(target):
    from deepseek.lazy import lazy_callable

    return lazy_callable(target)


def test_lazy_targets_are_read_from_source_without_importing():
    import inspect

    from deepseek import contracts

    sig = contracts.static_signature("deepseek.finance.models:TickMLP")
    assert "n_features" in sig.parameters and "self" not in sig.parameters
    with pytest.raises(ValueError, match="module 'deepseek.nothing_here' does not exist"):
        contracts.static_signature("deepseek.nothing_here:x")
    code = ("import sys; from deepseek import contracts; contracts.static_signature("
            "'deepseek.medical.nodule_model:build'); assert 'torch' not in sys.modules and "
            "'deepseek.medical.nodule_model' not in sys.modules")
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)
    assert isinstance(contracts.signature(TinyNetLike), inspect.Signature)


class TinyNetLike:
    def __init__(self, width: int = 3) -> None:
        self.width = width


def test_commands_two_plugins_add_are_contested():
    import click
    from click.testing import CliRunner

    def adder(tag):
        class P:
            @staticmethod
            @hookimpl
            def register_commands(cli):
                cli.add_command(click.Command("shared", callback=lambda: click.echo(tag)))
                cli.add_command(click.Command("serve", callback=lambda: None))

        return P

    group = click.Group("top", commands={"serve": click.Command("serve")})
    with use(Plugins(entry_points=False)) as system:
        system.register(adder("one"), name="one")
        system.register(adder("two"), name="two")
        system.add_commands(group)
        errors = {i.name: i.errors for i in system.infos()}
        for name in ("one", "two"):
            assert "command 'shared' is added by 2 plugins" in errors[name]["register_commands"]
            assert "command 'serve' is the core's own" in errors[name]["register_commands"]
        res = CliRunner().invoke(group, ["shared"])
        assert res.exit_code != 0 and "neither runs until one is chosen" in str(res.exception)


def test_hook_that_raises_is_reported_not_fatal():
    class Broken:
        @staticmethod
        @hookimpl
        def register_pipelines(register):
            raise RuntimeError("boom in hook")

    with temporary_plugin(Broken, name="broken-hook"):
        pipelines()  # does not raise
        info = next(i for i in plugin_infos() if i.name == "broken-hook")
        assert info.errors == {"register_pipelines": "RuntimeError: boom in hook"}
        assert not info.ok


@pytest.fixture
def fake_entry_points(tmp_path, monkeypatch):
    """A site dir with two distributions declaring `deepseek` entry points: one good plugin
    and one that raises at import. Plugins are reloaded under it and restored afterwards."""
    site = tmp_path / "site"
    (site / "fake_good_plugin.py").parent.mkdir(parents=True)
    (site / "fake_good_plugin.py").write_text(textwrap.dedent("""
        from deepseek import hookimpl

        @hookimpl
        def register_metrics(register):
            register("fake-metric", lambda p, r: {"v": 0.0})
    """))
    (site / "fake_bad_plugin.py").write_text("raise ImportError('missing dependency xyz')\n")
    for dist, mod in (("fake_good", "fake_good_plugin"), ("fake_bad", "fake_bad_plugin")):
        info = site / f"{dist}-1.2.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
        (info / "entry_points.txt").write_text(f"[deepseek]\n{dist} = {mod}\n")
    monkeypatch.syspath_prepend(str(site))
    with use(Plugins()):
        yield site
    monkeypatch.undo()
    for mod in ("fake_good_plugin", "fake_bad_plugin"):
        sys.modules.pop(mod, None)


def test_plugin_failing_at_import_is_reported(fake_entry_points):
    infos = {i.name: i for i in plugin_infos()}
    assert infos["fake_good"].ok and infos["fake_good"].version == "1.2.3"
    assert "fake-metric" in get_registry("metric")
    bad = infos["fake_bad"]
    assert not bad.ok
    assert "ImportError: missing dependency xyz" in bad.errors["import"]
    assert infos["medical"].ok  # the others still load


def test_cli_survives_a_broken_plugin_and_says_so_in_its_exit_status(fake_entry_points):
    from click.testing import CliRunner

    from deepseek.cli import build_cli

    res = CliRunner().invoke(build_cli(), ["plugins"])
    assert res.exit_code == 1, res.output  # CI can gate on it
    assert "fake_bad" in res.output and "FAILED" in res.output
    assert "missing dependency xyz" in res.output
    res = CliRunner().invoke(build_cli(), ["plugins", "--json"])
    data = json.loads(res.output)
    assert res.exit_code == 1 and data["failed"] == ["fake_bad"] and not data["ok"]


def test_env_selects_plugins(fake_entry_points, monkeypatch):
    monkeypatch.setenv("DEEPSEEK_LOAD_PLUGINS", "medical,fake_good")
    with use(Plugins()):
        assert sorted(i.name for i in plugin_infos()) == ["fake_good", "medical"]
    monkeypatch.delenv("DEEPSEEK_LOAD_PLUGINS")
    monkeypatch.setenv("DEEPSEEK_DISABLE_PLUGINS", "fake_bad, finance")
    with use(Plugins()):
        names = sorted(i.name for i in plugin_infos())
    assert names == ["fake_good", "manufacturing", "medical"]
    monkeypatch.setenv("DEEPSEEK_LOAD_PLUGINS", "")
    monkeypatch.delenv("DEEPSEEK_DISABLE_PLUGINS")
    with use(Plugins()):
        assert plugin_infos() == []


def test_entry_points_load_once(monkeypatch):
    plugins.load_plugins()
    calls = []
    monkeypatch.setattr(plugins.md, "entry_points", lambda **kw: calls.append(kw) or [])
    plugins.load_plugins()
    models()
    assert calls == []


def test_hooks_run_in_pluggys_order():
    """tryfirst/trylast and registration order, as pluggy calls them; each plugin alone."""
    calls = []

    def plugin(tag, **marks):
        class P:
            @staticmethod
            @hookimpl(**marks)
            def register_metrics(register):
                calls.append(tag)

        return P

    with use(Plugins(entry_points=False)) as system:
        system.register(plugin("last", trylast=True), name="last")
        system.register(plugin("plain-1"), name="plain-1")
        system.register(plugin("first", tryfirst=True), name="first")
        system.register(plugin("plain-2"), name="plain-2")
        get_registry("metric")
    assert calls == ["first", "plain-2", "plain-1", "last"]


def test_import_deepseek_does_not_import_torch():
    import subprocess

    code = "import sys, deepseek; assert 'torch' not in sys.modules, 'torch imported'; " \
           "from deepseek import ModelLoader; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_plugin_registered_again_has_its_errors_seen_again():
    """A plugin removed and registered again (tests, notebooks) registers again: the
    registries built with it before are dropped, so its errors are recorded the second time
    too (before, the registry cached with it was reused and its errors, forgotten when it
    was removed, were not seen)."""
    from deepseek.plugins import metrics, plugin_infos

    class Twice:
        @staticmethod
        @hookimpl
        def register_metrics(register):
            register("twice-bad-metric", lambda only: {})

    for _ in range(2):
        with temporary_plugin(Twice, name="twice"):
            assert "twice-bad-metric" not in metrics()
            errors = next(i for i in plugin_infos() if i.name == "twice").errors
            assert "takes 1 positional argument(s)" in errors["register_metrics"]
