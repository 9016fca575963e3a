"""The documentation stays in step with the code: every exported name has its API block,
every page is in the navigation, and the tutorials are stored without outputs. (`make docs`
builds the site strictly and executes the tutorials; CI runs it.)"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = {"deepseek": "deepseek", "serving": "deepseek.serving", "medical": "deepseek.medical",
         "manufacturing": "deepseek.manufacturing", "finance": "deepseek.finance"}


@pytest.mark.parametrize("page, package", sorted(PAGES.items()))
def test_every_exported_name_has_its_api_block(page, package):
    text = (DOCS / "api" / f"{page}.md").read_text()
    mod = importlib.import_module(package)
    referenced = set(re.findall(r"^::: [\w.]+\.(\w+)$", text, re.M)) | \
        set(re.findall(r"^### `[\w.]+\.(\w+)`$", text, re.M))
    missing = [n for n in mod.__all__ if not n.startswith("__") and n not in referenced]
    assert not missing, f"docs/api/{page}.md lacks {missing}: run docs/_tools/gen_api.py"


def _nav_files(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _nav_files(v)
    elif isinstance(node, list):
        for v in node:
            yield from _nav_files(v)


def test_every_page_is_in_the_navigation_and_exists():
    # mkdocs.yml has no Python tags: a plain YAML load reads it
    nav = set(_nav_files(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*")
             if p.suffix in (".md", ".ipynb") and "_tools" not in p.parts}
    assert nav == pages


def test_tutorials_are_stored_without_outputs():
    books = sorted((DOCS / "tutorials").glob("*.ipynb"))
    assert [b.stem for b in books] == ["core", "finance", "manufacturing", "medical"]
    for b in books:
        cells = json.loads(b.read_text())["cells"]
        assert all(not c.get("outputs") and c.get("execution_count") is None
                   for c in cells if c["cell_type"] == "code"), b.name
