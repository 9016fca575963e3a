from __future__ import annotations

import sys
import textwrap

import pytest

from deepseek import hookimpl, plugins
from deepseek.errors import RegistryError, UnknownNameError
from deepseek.plugins import get_registry, models, pipelines, plugin_infos, pm, temporary_plugin
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

    pm.register(P, name="direct")
    try:
        assert "direct-metric" in get_registry("metric")
    finally:
        pm.unregister(name="direct")
    assert "direct-metric" not in get_registry("metric")


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
    assert reg.names("tiny") == ["test-tiny"]  # no wildcard: substring
    assert reg.names("nothing-like-this") == []


def test_duplicate_name_is_an_error_naming_both_plugins():
    reg: Registry = Registry("model")
    reg.register("a", object(), plugin="one")
    with pytest.raises(RegistryError, match="already registered by one; two"):
        reg.register("a", object(), plugin="two")
    with pytest.raises(RegistryError, match="invalid model name"):
        reg.register(" a", object())


def test_duplicate_across_plugins_is_reported_not_fatal(tiny_plugin):
    class Clash:
        @staticmethod
        @hookimpl
        def register_models(register):
            register("test-tiny", object)

    with temporary_plugin(Clash, name="clash"):
        reg = models()
        assert reg.entry("test-tiny").plugin == "test-plugin"
        info = next(i for i in plugin_infos() if i.name == "clash")
        assert "already registered" in info.errors["register_models"]


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
    plugins._reset_for_tests()
    yield site
    monkeypatch.undo()
    plugins._reset_for_tests()
    for mod in ("fake_good_plugin", "fake_bad_plugin"):
        pm.unregister(name=mod) if pm.get_plugin(mod) else None
        sys.modules.pop(mod, None)
    plugins.load_plugins()


def test_plugin_failing_at_import_is_reported(fake_entry_points):
    infos = {i.name: i for i in plugin_infos()}
    assert infos["fake_good"].ok and infos["fake_good"].version == "1.2.3"
    assert "fake-metric" in get_registry("metric")
    bad = infos["fake_bad"]
    assert not bad.ok
    assert "ImportError: missing dependency xyz" in bad.errors["import"]
    assert infos["medical"].ok  # the others still load


def test_cli_survives_a_broken_plugin(fake_entry_points):
    from click.testing import CliRunner

    from deepseek.cli import build_cli

    res = CliRunner().invoke(build_cli(), ["plugins"])
    assert res.exit_code == 0, res.output
    assert "fake_bad" in res.output and "FAILED" in res.output
    assert "missing dependency xyz" in res.output


def test_env_selects_plugins(fake_entry_points, monkeypatch):
    monkeypatch.setenv("DEEPSEEK_LOAD_PLUGINS", "medical,fake_good")
    plugins._reset_for_tests()
    assert sorted(i.name for i in plugin_infos()) == ["fake_good", "medical"]
    monkeypatch.delenv("DEEPSEEK_LOAD_PLUGINS")
    monkeypatch.setenv("DEEPSEEK_DISABLE_PLUGINS", "fake_bad, finance")
    plugins._reset_for_tests()
    names = sorted(i.name for i in plugin_infos())
    assert names == ["core", "fake_good", "manufacturing", "medical"]
    monkeypatch.setenv("DEEPSEEK_LOAD_PLUGINS", "")
    monkeypatch.delenv("DEEPSEEK_DISABLE_PLUGINS")
    plugins._reset_for_tests()
    assert plugin_infos() == []


def test_entry_points_load_once(monkeypatch):
    plugins.load_plugins()
    calls = []
    monkeypatch.setattr(plugins.md, "entry_points", lambda **kw: calls.append(kw) or [])
    plugins.load_plugins()
    models()
    assert calls == []


def test_import_deepseek_does_not_import_torch():
    import subprocess

    code = "import sys, deepseek; assert 'torch' not in sys.modules, 'torch imported'; " \
           "from deepseek import ModelLoader; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
