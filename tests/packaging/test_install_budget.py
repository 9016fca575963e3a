"""The edge forms' size budget, checked in the suite: each vertical's edge install <= 300 MB,
``deepseek-core[edge-all]`` <= 500 MB, and none of them pulls PyTorch, SimpleITK or OpenCV.

The dependency closure of each form is walked from the project's own pyproject files through
the installed distributions' metadata (extras and markers evaluated as pip does), and each
distribution counts the files its RECORD lists, as installed here (the versions
``constraints.txt`` holds). ``benchmarks/install_size.py --edge-only --check``, which
``.ci/run`` runs, measures the same forms by real installs from the built wheels into fresh
environments."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
OWN = {"deepseek-core": ROOT / "core", "deepseek-medical": ROOT / "plugins" / "medical",
       "deepseek-manufacturing": ROOT / "plugins" / "manufacturing",
       "deepseek-finance": ROOT / "plugins" / "finance"}
MB = 1e6
#: the heavy libraries the edge forms must not carry (see docs/install.md's table)
NEVER_AT_THE_EDGE = {"torch", "simpleitk", "opencv-python", "opencv-python-headless",
                     "opencv-contrib-python", "matplotlib", "onnx"}
BUDGETS = {"deepseek-core[edge]": 300, "deepseek-medical[edge]": 300,
           "deepseek-manufacturing[edge]": 300, "deepseek-finance[edge]": 300,
           "deepseek-core[edge-all]": 500}


def _own_requirements(name: str, extras: set[str]) -> list[Requirement]:
    project = tomllib.loads((OWN[name] / "pyproject.toml").read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in extras:
        reqs += project.get("optional-dependencies", {}).get(extra, [])
    return [Requirement(r) for r in reqs]


def _own_size(name: str) -> int:
    src = OWN[name] / "src"
    return sum(p.stat().st_size for p in src.rglob("*") if p.is_file()
               and "__pycache__" not in p.parts)


def _dist_size(dist: metadata.Distribution) -> int:
    total = 0
    for f in dist.files or ():
        p = Path(dist.locate_file(f))
        if p.is_file():
            total += p.stat().st_size
    return total


def closure(requirement: str) -> dict[str, int]:
    """Every distribution ``requirement`` installs, with its size in bytes."""
    env = {"python_version": f"{sys.version_info.major}.{sys.version_info.minor}"}
    seen: dict[tuple[str, frozenset[str]], None] = {}
    sizes: dict[str, int] = {}
    todo = [Requirement(requirement)]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen[key] = None
        if name in OWN:
            sizes[name] = _own_size(name)
            deps = _own_requirements(name, set(req.extras))
        else:
            try:
                dist = metadata.distribution(name)
            except metadata.PackageNotFoundError:
                pytest.fail(f"{requirement} needs {name}, which is not installed here: run "
                            "make install")
            sizes[name] = _dist_size(dist)
            deps = [Requirement(r) for r in dist.requires or ()]
        for dep in deps:
            if dep.marker is None:
                todo.append(dep)
                continue
            extras = req.extras or {""}
            if any(dep.marker.evaluate({**env, "extra": e}) for e in extras):
                todo.append(dep)
    return sizes


@pytest.mark.parametrize("requirement", sorted(BUDGETS))
def test_edge_forms_fit_their_budget(requirement):
    sizes = closure(requirement)
    heavy = sorted(NEVER_AT_THE_EDGE & set(sizes))
    assert not heavy, f"{requirement} now pulls {heavy}"
    total = sum(sizes.values()) / MB
    largest = sorted(sizes.items(), key=lambda kv: -kv[1])[:6]
    assert total <= BUDGETS[requirement], (
        f"{requirement}: {total:.0f} MB > {BUDGETS[requirement]} MB; largest: "
        + ", ".join(f"{k} {v / MB:.0f} MB" for k, v in largest))


def test_the_walk_sees_the_heavy_libraries_of_the_full_forms():
    """The closure walk is not vacuous: the full forms do reach what the edge leaves out."""
    full = closure("deepseek-core[all]")
    assert {"torch", "simpleitk", "opencv-python-headless", "matplotlib"} <= set(full)
    assert sum(full.values()) / MB > 1000
    assert "simpleitk" in closure("deepseek-medical[itk]")
    assert "opencv-python-headless" in closure("deepseek-manufacturing[video]")
