"""Build the four wheels, install them (not editable) into a fresh virtual environment that
reuses the already-installed third-party packages, and check the shared namespace works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DISTS = {
    "deepseek-core": ROOT / "core",
    "deepseek-medical": ROOT / "plugins" / "medical",
    "deepseek-manufacturing": ROOT / "plugins" / "manufacturing",
    "deepseek-finance": ROOT / "plugins" / "finance",
}

pytestmark = pytest.mark.slow


def _run(cmd, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert res.returncode == 0, f"{cmd}\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    for src in DISTS.values():
        _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
              str(src)])
    return out


@pytest.fixture(scope="module")
def fresh_env(wheels, tmp_path_factory):
    base = tmp_path_factory.mktemp("fresh")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    fresh_site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_path("
                                           "'purelib'))"]).stdout.strip())
    # Third-party packages of the development environment, minus every trace of the
    # editable deepseek installs, are linked into one folder named by a .pth file.
    shared = base / "thirdparty"
    shared.mkdir()
    dev_site = Path(sysconfig.get_path("purelib"))
    for entry in dev_site.iterdir():
        low = entry.name.lower()
        if "deepseek" in low or low.startswith("__editable__") or entry.suffix == ".pth":
            continue
        (shared / entry.name).symlink_to(entry)
    (fresh_site / "thirdparty.pth").write_text(str(shared) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet", "--no-index",
          "--find-links", str(wheels), "deepseek-core[all]"])
    return venv


def test_plugin_wheels_do_not_ship_the_namespace_init(wheels):
    found = sorted(p.name for p in wheels.glob("*.whl"))
    assert len(found) == 4, found
    for whl in wheels.glob("*.whl"):
        names = zipfile.ZipFile(whl).namelist()
        has_init = "deepseek/__init__.py" in names
        assert has_init == whl.name.startswith("deepseek_core-"), whl.name
        if not whl.name.startswith("deepseek_core-"):
            plugin = whl.name.split("-")[0].removeprefix("deepseek_")
            assert f"deepseek/{plugin}/plugin.py" in names
            ep = next(n for n in names if n.endswith("entry_points.txt"))
            assert f"{plugin} = deepseek.{plugin}.plugin" in zipfile.ZipFile(whl).read(ep).decode()


def test_core_extras_name_the_plugins(wheels):
    whl = next(wheels.glob("deepseek_core-*.whl"))
    z = zipfile.ZipFile(whl)
    meta = z.read(next(n for n in z.namelist() if n.endswith("METADATA"))).decode()
    for extra in ("medical", "manufacturing", "finance"):
        assert f"Provides-Extra: {extra}" in meta
        assert f"deepseek-{extra}<0.2,>=0.1; extra == '{extra}'" in meta
    assert "Provides-Extra: all" in meta


def test_installed_wheels_share_the_namespace(fresh_env):
    py = fresh_env / "bin" / "python"
    code = (
        "import json, deepseek, deepseek.medical, deepseek.manufacturing, deepseek.finance\n"
        "from deepseek import ModelLoader\n"
        "print(json.dumps({m.__name__: m.__file__ for m in (deepseek, deepseek.medical, "
        "deepseek.manufacturing, deepseek.finance)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = _run([str(py), "-c", code], env=env, cwd=str(fresh_env))
    files = json.loads(res.stdout)
    for name, file in files.items():
        assert file.startswith(str(fresh_env)), f"{name} imported from {file}, not the wheel"
    res = _run([str(fresh_env / "bin" / "deepseek"), "plugins", "--json"], env=env,
               cwd=str(fresh_env))
    data = json.loads(res.stdout)
    plugins = {p["name"]: p for p in data["plugins"]}
    assert set(plugins) >= {"medical", "manufacturing", "finance"}
    assert all(p["errors"] == {} and p["version"] == "0.1.0" for p in plugins.values())
