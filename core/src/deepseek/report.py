"""Pipeline results and the HTML/JSON report that ``deepseek run`` and ``deepseek demo`` write.

A pipeline returns a :class:`PipelineResult`: headline metrics, tables and figures (PNG files
it wrote under its output folder). :func:`write_report` turns a list of results into
``index.html`` (one section per pipeline) and ``summary.json`` in the report folder.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Table:
    """A small table for the report: a title, column names and rows of plain values."""

    title: str
    columns: list[str]
    rows: list[list[Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "columns": self.columns, "rows": self.rows}


@dataclass
class PipelineResult:
    """What a pipeline returns: metrics (floats), tables, figure files and free-text notes."""

    pipeline: str
    title: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    input: str | None = None
    seconds: float | None = None
    error: str | None = None

    def to_dict(self, relative_to: Path | None = None) -> dict[str, Any]:
        def rel(p: Path) -> str:
            if relative_to is None:
                return str(p)
            return os.path.relpath(Path(p).resolve(), Path(relative_to).resolve())

        return {
            "pipeline": self.pipeline,
            "title": self.title or self.pipeline,
            "input": self.input,
            "seconds": self.seconds,
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "tables": [t.to_dict() for t in self.tables],
            "figures": [rel(f) for f in self.figures],
            "notes": self.notes,
            "error": self.error,
        }


def _json_float(v: Any) -> Any:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return None if math.isnan(f) or math.isinf(f) else f


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_report(out_dir: Path, results: list[PipelineResult], title: str = "DeepSeek report",
                 notes: list[str] | None = None) -> Path:
    """Write ``index.html`` and ``summary.json`` for ``results`` into ``out_dir``.

    Returns the path of ``index.html``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from deepseek import __version__

    summary = {
        "title": title,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "deepseek_core": __version__,
        "notes": list(notes or []),
        "pipelines": [r.to_dict(relative_to=out_dir) for r in results],
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;"
        "padding:0 1em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
        "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
        "img{max-width:100%;border:1px solid #ddd;margin:.5em 0}"
        ".err{color:#a00}.note{color:#555}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p class='note'>deepseek-core {esc(__version__)} &middot; {esc(summary['created'])}</p>",
    ]
    for n in summary["notes"]:
        parts.append(f"<p class='note'>{esc(n)}</p>")
    if not results:
        parts.append("<p>No pipelines ran.</p>")
    for r, d in zip(results, summary["pipelines"]):
        parts.append(f"<h2 id='{esc(r.pipeline)}'>{esc(d['title'])}</h2>")
        meta = f"pipeline <code>{esc(r.pipeline)}</code>"
        if r.input:
            meta += f" &middot; input {esc(r.input)}"
        if r.seconds is not None:
            meta += f" &middot; {r.seconds:.1f} s"
        parts.append(f"<p class='note'>{meta}</p>")
        if r.error:
            parts.append(f"<p class='err'>failed: {esc(r.error)}</p>")
        if r.metrics:
            parts.append("<table><tr><th>metric</th><th>value</th></tr>")
            for k, v in r.metrics.items():
                parts.append(f"<tr><td>{esc(k)}</td><td>{esc(_fmt(v))}</td></tr>")
            parts.append("</table>")
        for t in r.tables:
            parts.append(f"<h3>{esc(t.title)}</h3><table><tr>")
            parts.extend(f"<th>{esc(str(c))}</th>" for c in t.columns)
            parts.append("</tr>")
            for row in t.rows:
                parts.append("<tr>" + "".join(f"<td>{esc(_fmt(v))}</td>" for v in row) + "</tr>")
            parts.append("</table>")
        for f in d["figures"]:
            parts.append(f"<div><img src='{esc(f)}' alt='{esc(f)}'></div>")
        for n in r.notes:
            parts.append(f"<p class='note'>{esc(n)}</p>")
    parts.append("</body></html>\n")
    index = out_dir / "index.html"
    index.write_text("\n".join(parts))
    return index
