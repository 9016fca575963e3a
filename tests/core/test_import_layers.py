"""Each plugin's modules form a tree of imports, not a circle: a module never reaches itself
through its imports, counting the ones inside functions (they run too, only later). Read from
the source, so a new circle fails here before it bites at run time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"medical": ROOT / "plugins" / "medical" / "src" / "deepseek" / "medical",
            "manufacturing": ROOT / "plugins" / "manufacturing" / "src" / "deepseek" /
            "manufacturing",
            "finance": ROOT / "plugins" / "finance" / "src" / "deepseek" / "finance"}


def import_graph(pkg: str, folder: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports (anywhere in its source)."""
    prefix = f"deepseek.{pkg}"
    mods = {p.stem for p in folder.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for m in mods:
        deps: set[str] = set()
        for node in ast.walk(ast.parse((folder / f"{m}.py").read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == prefix:
                    names = [a.name for a in node.names]
                elif node.module.startswith(prefix + "."):
                    names = [node.module[len(prefix) + 1:].split(".")[0]]
            elif isinstance(node, ast.Import):
                names = [a.name[len(prefix) + 1:].split(".")[0] for a in node.names
                         if a.name.startswith(prefix + ".")]
            deps |= {n for n in names if n in mods and n != m}
        graph[m] = deps
    # lazy string references (lazy_callable("deepseek.pkg.module:name")) are not imports
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("pkg", sorted(PACKAGES))
def test_no_import_circles(pkg):
    graph = import_graph(pkg, PACKAGES[pkg])
    assert cycles(graph) == [], f"deepseek.{pkg}: modules that import each other in a circle"


def test_manufacturing_layers():
    """The bottom modules import nothing of the plugin's but its errors and constants; the
    plugin's hooks reach the rest only through the command line group."""
    g = import_graph("manufacturing", PACKAGES["manufacturing"])
    assert g["errors"] == set() and g["formats"] == set()
    assert g["images"] <= {"errors", "formats"}
    assert g["plugin"] <= {"formats", "cli"}
    assert not any("cli" in deps for m, deps in g.items() if m != "plugin")


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
