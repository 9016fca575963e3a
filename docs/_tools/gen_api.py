"""Write docs/api/*.md, the API reference pages.

One page per package, with a mkdocstrings block per exported name and per module behind its
commands. Run from the repository root after adding a public name:

    .venv/bin/python docs/_tools/gen_api.py

``tests/core/test_docs.py`` checks that every exported name has its block.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]

#: page -> (title, package, the modules behind its commands shown in full)
PAGES = {
    "deepseek": ("The core: `deepseek`", "deepseek",
                 ["deepseek.hookspecs", "deepseek.registry", "deepseek.readers",
                  "deepseek.batch", "deepseek.cpus", "deepseek.tune", "deepseek.batching",
                  "deepseek.extras", "deepseek.errors"]),
    "serving": ("Serving: `deepseek.serving`", "deepseek.serving",
                ["deepseek.serving.protocol", "deepseek.serving.threads",
                 "deepseek.serving.limits"]),
    "medical": ("Medical: `deepseek.medical`", "deepseek.medical",
                ["deepseek.medical.steps", "deepseek.medical.lidc",
                 "deepseek.medical.nodule_size", "deepseek.medical.monai_reader"]),
    "manufacturing": ("Manufacturing: `deepseek.manufacturing`", "deepseek.manufacturing",
                      ["deepseek.manufacturing.steps", "deepseek.manufacturing.score",
                       "deepseek.manufacturing.calibration",
                       "deepseek.manufacturing.sources",
                       "deepseek.manufacturing.labelled"]),
    "finance": ("Finance: `deepseek.finance`", "deepseek.finance",
                ["deepseek.finance.backtest_run", "deepseek.finance.backtest",
                 "deepseek.finance.bars", "deepseek.finance.feed"]),
}


def defining_module(package: object, name: str, obj: object) -> str:
    """Where ``name`` is defined: a class's or function's own module, else the module the
    package's lazy exports name (constants), else the package."""
    own = getattr(obj, "__module__", None) if inspect.isclass(obj) or callable(obj) else None
    return own or getattr(package, "_LAZY", {}).get(name) or package.__name__


def page(title: str, package_name: str, modules: list[str]) -> str:
    """The Markdown of one package's API page."""
    package = importlib.import_module(package_name)
    summary = (package.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    lines = [f"# {title}", "", summary, "", "## Exported names", ""]
    for name in (n for n in package.__all__ if not n.startswith("__")):
        where = defining_module(package, name, getattr(package, name))
        if not where.startswith("deepseek"):  # hookimpl: pluggy's marker
            lines += [f"### `{package_name}.{name}`", "",
                      "The pluggy marker of hook implementations (`@hookimpl`); the hooks "
                      "are in `deepseek.hookspecs` below.", ""]
            continue
        lines += [f"::: {where}.{name}", "    options:", "      heading_level: 3", ""]
    lines += ["## Modules", ""]
    for m in modules:
        lines += [f"::: {m}", "    options:", "      heading_level: 3",
                  "      show_submodules: false", ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    """Write every API page and the index."""
    index = ["# API reference", "",
             "Generated from the docstrings (Google style) of the public API: first the names "
             "each package exports, then the modules behind its commands.", ""]
    for name, (title, package_name, modules) in PAGES.items():
        (DOCS / "api" / f"{name}.md").write_text(page(title, package_name, modules))
        index.append(f"- [{title}]({name}.md)")
    (DOCS / "api" / "index.md").write_text("\n".join(index) + "\n")


if __name__ == "__main__":
    main()
