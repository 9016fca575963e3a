from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepseek import __version__, hookimpl
from deepseek.cli import build_cli


@pytest.fixture
def invoke():
    runner = CliRunner()

    def _invoke(*args):
        return runner.invoke(build_cli(), list(args), catch_exceptions=False)

    return _invoke


def test_version(invoke):
    res = invoke("--version")
    assert res.exit_code == 0 and res.output.strip() == f"deepseek {__version__}"


def test_plugins_json_lists_the_three_plugins(invoke):
    res = invoke("plugins", "--json")
    assert res.exit_code == 0
    data = json.loads(res.output)
    by_name = {p["name"]: p for p in data["plugins"]}
    for name in ("medical", "manufacturing", "finance"):
        p = by_name[name]
        assert p["version"] == "0.1.0" and p["errors"] == {}
        assert {"readers", "models", "metrics", "pipelines", "hooks"} <= set(p)


def _commands(help_text):
    """The command names listed under 'Commands:' in click's --help output."""
    section = help_text.split("Commands:", 1)[1]
    return {line.split()[0] for line in section.splitlines() if line.startswith("  ")
            and line.split()}


def test_plugin_groups_are_added(invoke):
    listed = _commands(invoke("--help").output)
    core = {"plugins", "readers", "read", "models", "summary", "metrics", "evaluate",
            "pipelines", "run", "demo", "serve"}
    assert core | {"medical", "manufacturing", "finance"} <= listed
    for group in ("medical", "manufacturing", "finance"):
        res = invoke(group, "--help")
        assert res.exit_code == 0
        # the same verbs mean the same thing in every plugin
        assert {"info", "generate", "train", "evaluate"} <= _commands(res.output), group


def test_every_command_takes_json(invoke):
    from deepseek.cli import build_cli

    def walk(group, path):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                yield from walk(cmd, path + [name])
            else:
                yield path + [name], cmd

    missing = [" ".join(p) for p, cmd in walk(build_cli(), [])
               if not any("--json" in getattr(o, "opts", ()) for o in cmd.params)]
    assert not missing, f"commands without --json: {missing}"


def test_plugin_groups_absent_without_plugins(monkeypatch):
    """The listing above comes from the plugins: with none loaded, their groups are gone."""
    import click

    from deepseek import plugins
    from deepseek.cli import cli

    monkeypatch.setenv("DEEPSEEK_LOAD_PLUGINS", "")
    with plugins.use(plugins.Plugins()):
        group = click.Group(commands=dict(cli.commands))
        for name in ("medical", "manufacturing", "finance"):
            group.commands.pop(name, None)
        plugins.add_commands(group)
        assert not {"medical", "manufacturing", "finance"} & set(group.commands)


def test_models_lists_and_filters(invoke, tiny_plugin):
    res = invoke("models")
    assert "test-tiny" in res.output and "[weights]" in res.output
    assert "[untrained]" in res.output  # test-conv is registered without weights
    res = invoke("models", "test-conv", "--json")
    rows = json.loads(res.output)
    assert [r["name"] for r in rows] == ["test-conv"] and rows[0]["plugin"] == "test-plugin"
    assert rows[0]["trained"] is False
    assert "no models match" in invoke("models", "zzz").output


def test_summary_command(invoke, tiny_plugin):
    res = invoke("summary", "test-conv")
    assert res.exit_code == 0, res.output
    assert "Conv2d" in res.output and "[1, 4, 8, 8]" in res.output
    res = invoke("summary", "test-conv", "--input-shape", "2,1,8,8", "--json")
    assert json.loads(res.stdout)["output_shape"] == [2, 2]


def test_run_writes_report(invoke, tiny_plugin, tmp_path):
    out = tmp_path / "rep"
    res = invoke("run", "test-pipeline", "--out", str(out), "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["metrics"] == {"score": 0.75}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pipelines"][0]["pipeline"] == "test-pipeline"
    html = (out / "index.html").read_text()
    assert "Test pipeline" in html and "score" in html


def test_run_unknown_pipeline_suggests(invoke, tiny_plugin):
    res = invoke("run", "test-pipelin")
    assert res.exit_code == 2
    assert "unknown pipeline 'test-pipelin'" in res.output and "test-pipeline" in res.output


@pytest.mark.slow
def test_demo_runs_the_selected_pipelines_into_one_report(invoke, tiny_plugin, tmp_path):
    # the plugins' own pipelines run on small inputs in their own tests; here the demo runs
    # a real one (finance, seconds) beside the test plugin's
    res = invoke("demo", "--only", "test-*", "--only", "finance.tick-latency", "--out",
                 str(tmp_path / "demo"))
    assert res.exit_code == 0, res.output
    assert "test-pipeline done" in res.output and "finance.tick-latency done" in res.output
    assert "fast path p99" in res.output  # the headline speed figure, against its goal
    assert f"report: {(tmp_path / 'demo' / 'index.html').resolve()}" in res.output
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    names = [p["pipeline"] for p in summary["pipelines"]]
    assert names == ["finance.tick-latency", "test-pipeline"]
    fin = summary["pipelines"][0]
    assert fin["speed"]["goal"] == "<= 5 µs" and fin["quality"]["value"] > 0
    assert fin["figures"] == ["finance.tick-latency/latency.png"]
    assert (tmp_path / "demo" / fin["figures"][0]).stat().st_size > 10_000


def test_demo_without_pipelines_says_so(invoke, tmp_path, monkeypatch):
    from deepseek import plugins

    monkeypatch.setenv("DEEPSEEK_LOAD_PLUGINS", "")
    with plugins.use(plugins.Plugins()):
        res = invoke("demo", "--out", str(tmp_path / "d"))
    assert res.exit_code == 0
    assert "no pipelines are registered yet" in res.output
    assert (tmp_path / "d" / "index.html").is_file()
    assert json.loads((tmp_path / "d" / "summary.json").read_text())["pipelines"] == []


def test_bad_model_file_is_a_clean_error(invoke, tmp_path):
    bad = tmp_path / "m.onnx"
    bad.write_text("garbage")
    res = invoke("summary", str(bad))
    assert res.exit_code == 2 and res.output.startswith("error: ")
    assert "m.onnx" in res.output and "Traceback" not in res.output


def test_verbosity_changes_the_log_level():
    runner = CliRunner()
    args = ["read", "synthetic:?n=50", "--kind", "ticks"]
    quiet = runner.invoke(build_cli(), args)
    loud = runner.invoke(build_cli(), ["-vv", *args])
    assert quiet.exit_code == 0 and loud.exit_code == 0
    assert "opening 'synthetic:?n=50' with reader synthetic-ticks" not in quiet.output
    assert ("DEBUG deepseek.readers: opening 'synthetic:?n=50' with reader synthetic-ticks "
            "(finance, by scheme)") in loud.output
    info = runner.invoke(build_cli(), ["-v", *args])
    assert "DEBUG" not in info.output


def test_a_plugin_bug_is_one_line_naming_the_plugin():
    import click

    from deepseek.cli import DeepSeekGroup
    from deepseek.plugins import Plugins, use

    class Buggy:
        @staticmethod
        @hookimpl
        def register_commands(cli):
            @cli.command("crash")
            def crash():
                {}["missing key"]

    group = DeepSeekGroup("top")
    group.params.append(click.Option(["-v", "--verbose"], count=True))
    with use(Plugins(entry_points=False)) as system:
        system.register(Buggy, name="buggy")
        system.add_commands(group)
        res = CliRunner().invoke(group, ["crash"])
        assert res.exit_code == 1 and "Traceback" not in res.output
        assert res.output.startswith("error: plugin buggy failed: KeyError: 'missing key' at "
                                     "test_cli.py:")
        assert "-vv" in res.output


def test_a_path_the_command_cannot_use_is_the_users_error_not_a_bug(tmp_path):
    import errno

    import click

    from deepseek.cli import DeepSeekGroup, path_error
    from deepseek.plugins import Plugins, use

    blocker = tmp_path / "results"
    blocker.write_text("a file where the output folder would go")

    class Writer:
        @staticmethod
        @hookimpl
        def register_commands(cli):
            @cli.command("write")
            @click.argument("out")
            def write(out):
                Path(out).parent.mkdir(parents=True, exist_ok=True)
                Path(out).write_text("x")

            @cli.command("missing")
            def missing():
                open(tmp_path / "a file the command itself expected")  # noqa: SIM115

    group = DeepSeekGroup("top")
    group.params.append(click.Option(["-v", "--verbose"], count=True))
    with use(Plugins(entry_points=False)) as system:
        system.register(Writer, name="writer")
        system.add_commands(group)
        under = CliRunner().invoke(group, ["write", str(blocker / "run" / "scores.csv")])
        assert under.exit_code == 2 and "Traceback" not in under.output
        assert under.output.startswith(f"error: {blocker / 'run'}: Not a directory (part of "
                                       "this path is a file, not a folder")
        assert "a bug" not in under.output
        # the output's folder is itself the file
        into = CliRunner().invoke(group, ["write", str(blocker / "scores.csv")])
        assert into.exit_code == 2 and "a bug" not in into.output
        assert into.output.startswith(f"error: {blocker}: File exists (a file stands where a "
                                      "folder is needed")
        # a folder given where the file goes
        folder = tmp_path / "a folder"
        folder.mkdir()
        onto = CliRunner().invoke(group, ["write", str(folder)])
        assert onto.exit_code == 2 and "a folder, where a file is needed" in onto.output
        # a file the command itself could not find stays a bug to report
        bug = CliRunner().invoke(group, ["missing"])
        assert bug.exit_code == 1 and "(a bug: run with -vv" in bug.output
    full = path_error(OSError(errno.ENOSPC, "No space left on device", "/data/out.csv"))
    assert full == ("/data/out.csv: No space left on device (the disk is full: free space "
                    "or choose a path on another disk)")
    assert "exists already" in path_error(FileExistsError(errno.EEXIST, "File exists",
                                                          str(tmp_path)))
    # a write to a file opened before: the system names no path, the disk is still full
    assert path_error(OSError(errno.ENOSPC, "No space left on device")) == (
        "a write failed: No space left on device (the disk is full: free space or choose a "
        "path on another disk)")
    assert path_error(OSError(errno.EACCES, "Permission denied")) is None  # no path
    assert path_error(OSError(errno.ECONNREFUSED, "Connection refused", "x")) is None
