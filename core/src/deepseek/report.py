"""Pipeline results and the HTML/JSON report that ``deepseek run`` and ``deepseek demo`` write.

A pipeline returns a :class:`PipelineResult`: a headline quality figure and a headline speed
figure (each with its goal), the quality metrics and the timings kept apart, tables, figures
(PNG files it wrote under its output folder), media (large files such as videos, linked from
the report rather than copied) and notes. Each metric and timing is a :class:`Measure`: the
number with the label and unit a reader sees, given where it is measured (the renderer never
guesses them from key names; an unlabelled number is shown under its key).
:func:`write_report` turns a list of results into ``index.html`` -- a summary table first
(pipeline, status, headline quality and speed against their goals), then one section per
pipeline -- and ``summary.json``.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Measure(float):
    """A reported number with its label and unit, made where it is measured.

    ::

        metrics={"held_out_macro_f1": Measure(f1, "held-out macro F1")}
        timings={"fastpath_p99_us": Measure(p99, "fast path p99 per tick", "µs")}

    It is a float (arithmetic, comparisons and JSON as usual); the report shows ``label``
    and ``unit`` instead of the key, and ``summary.json`` keeps both beside the value."""

    label: str
    unit: str

    def __new__(cls, value: float, label: str, unit: str = "") -> Measure:
        """A number with a label and a unit (``None`` becomes NaN)."""
        obj = super().__new__(cls, float("nan") if value is None else value)
        obj.label, obj.unit = str(label), str(unit)
        return obj

    def __reduce__(self) -> Any:
        return (Measure, (float(self), self.label, self.unit))

    def text(self) -> str:
        """The value and its unit, formatted for the report."""
        return f"{_fmt(float(self))} {self.unit}".strip()


def labels_of(values: dict[str, Any]) -> dict[str, dict[str, str]]:
    """``{key: {"label", "unit"}}`` of the :class:`Measure` values of a metrics dict."""
    return {k: {"label": v.label, "unit": v.unit} for k, v in values.items()
            if isinstance(v, Measure)}


@dataclass
class Table:
    """A small table for the report: a title, column names and rows of plain values."""

    title: str
    columns: list[str]
    rows: list[list[Any]]

    def to_dict(self) -> dict[str, Any]:
        """The table as JSON-ready data."""
        return {"title": self.title, "columns": self.columns, "rows": self.rows}


@dataclass
class Headline:
    """One headline figure: ``value`` in ``unit`` against an optional goal.

    ``target`` with ``higher_is_better`` states the goal (``>= 0.90``, ``<= 60 s``); ``met``
    is derived from them.
    """

    name: str
    value: float | None
    unit: str = ""
    target: float | None = None
    higher_is_better: bool = True

    @property
    def met(self) -> bool | None:
        """Whether the value meets the target (None without a target or a finite value)."""
        if self.target is None or self.value is None or not math.isfinite(self.value):
            return None
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    @property
    def goal(self) -> str:
        """The target as text (``>= 0.95``), empty without one."""
        if self.target is None:
            return ""
        return f"{'>=' if self.higher_is_better else '<='} {_fmt(self.target)} {self.unit}".strip()

    def text(self) -> str:
        """Name, value and unit as one line."""
        return f"{self.name} {_fmt(self.value)} {self.unit}".strip()

    def to_dict(self) -> dict[str, Any]:
        """The headline as JSON-ready data, with its goal and whether it is met."""
        return {"name": self.name, "value": _json_float(self.value), "unit": self.unit,
                "target": self.target, "goal": self.goal, "met": self.met}


@dataclass
class PipelineResult:
    """What a pipeline returns.

    ``quality`` and ``speed`` are the headline figures of the summary table; ``metrics`` are
    the quality figures and ``timings`` the speed figures (seconds, fps, latencies), shown
    apart; ``figures`` are PNG files under the pipeline's output folder; ``media`` are large
    files (videos) the report links to.
    """

    pipeline: str
    title: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    quality: Headline | None = None
    speed: Headline | None = None
    tables: list[Table] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    media: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    input: str | None = None
    seconds: float | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        """``failed`` (an error), ``goal missed`` (a headline below its goal) or ``ok``."""
        if self.error:
            return "failed"
        met = [h.met for h in (self.quality, self.speed) if h is not None and h.met is not None]
        return "goal missed" if met and not all(met) else "ok"

    def to_dict(self, relative_to: Path | None = None) -> dict[str, Any]:
        """The result as JSON-ready data; file paths relative to ``relative_to`` when given."""
        def rel(p: Path) -> str:
            if relative_to is None:
                return str(p)
            return os.path.relpath(Path(p).resolve(), Path(relative_to).resolve())

        return {
            "pipeline": self.pipeline,
            "title": self.title or self.pipeline,
            "status": self.status,
            "input": self.input,
            "seconds": self.seconds,
            "quality": self.quality.to_dict() if self.quality else None,
            "speed": self.speed.to_dict() if self.speed else None,
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "timings": {k: _json_float(v) for k, v in self.timings.items()},
            "labels": {**labels_of(self.metrics), **labels_of(self.timings)},
            "tables": [t.to_dict() for t in self.tables],
            "figures": [rel(f) for f in self.figures],
            "media": [rel(f) for f in self.media],
            "notes": self.notes,
            "error": self.error,
        }


def _json_float(v: Any) -> Any:
    if isinstance(v, bool) or v is None:
        return v
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return None if math.isnan(f) or math.isinf(f) else f


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


_CSS = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1150px;"
    "margin:2em auto;padding:0 1em;color:#1d1d1f;line-height:1.45}"
    "h1{font-size:1.7em;margin-bottom:.2em}h2{margin-top:2.2em;border-bottom:1px solid #ddd;"
    "padding-bottom:.2em}h3{font-size:1.05em;margin:1.2em 0 .3em;color:#333}"
    "table{border-collapse:collapse;margin:.4em 0 1.2em;font-size:.93em}"
    "td,th{border:1px solid #d5d5d5;padding:.3em .7em;text-align:right}"
    "th{background:#f4f4f6}td:first-child,th:first-child{text-align:left}"
    "img{max-width:100%;border:1px solid #e2e2e2;margin:.5em 0}"
    ".ok{color:#127a2e;font-weight:600}.failed,.missed{color:#b00020;font-weight:600}"
    ".note{color:#555;font-size:.92em}.err{color:#b00020;white-space:pre-wrap}"
    ".cols{display:flex;gap:2.5em;flex-wrap:wrap}"
)


def _headline_cell(h: Headline | None) -> str:
    if h is None:
        return "<td>-</td>"
    text = html.escape(h.text())
    if h.goal:
        mark = "ok" if h.met else "missed"
        text += f" <span class='{mark}'>({'meets' if h.met else 'misses'} " \
                f"{html.escape(h.goal)})</span>"
    return f"<td>{text}</td>"


def _kv_table(title: str, values: dict[str, Any], esc: Any) -> list[str]:
    if not values:
        return []
    rows = [f"<div><h3>{esc(title)}</h3><table class='figures'><tr><th>figure</th>"
            "<th>value</th></tr>"]
    for k, v in values.items():
        label = v.label if isinstance(v, Measure) else k
        text = v.text() if isinstance(v, Measure) else _fmt(v)
        rows.append(f"<tr><td title='{esc(k)}'>{esc(label)}</td><td>{esc(text)}</td></tr>")
    rows.append("</table></div>")
    return rows


def _copy_media(out_dir: Path, results: list[PipelineResult]) -> None:
    media_dir = out_dir / "media"
    for r in results:
        copied = []
        for m in r.media:
            media_dir.mkdir(exist_ok=True)
            target = media_dir / f"{r.pipeline}-{Path(m).name}"
            if Path(m).resolve() != target.resolve():
                shutil.copy2(m, target)
            copied.append(target)
        r.media = copied


def _summary_table(results: list[PipelineResult], esc: Any) -> list[str]:
    if not results:
        return ["<p>No pipelines ran.</p>"]
    parts = ["<table id='summary'><tr><th>pipeline</th><th>status</th><th>quality</th>"
             "<th>speed</th><th>run time</th></tr>"]
    for r in results:
        status = r.status
        cls = {"ok": "ok", "failed": "failed"}.get(status, "missed")
        cells = (f"<td colspan='2' class='err'>{esc(r.error or '')[:160]}</td>" if r.error
                 else _headline_cell(r.quality) + _headline_cell(r.speed))
        parts.append(
            f"<tr><td><a href='#{esc(r.pipeline)}'>{esc(r.pipeline)}</a></td>"
            f"<td class='{cls}'>{esc(status)}</td>{cells}"
            f"<td>{'-' if r.seconds is None else f'{r.seconds:.1f} s'}</td></tr>")
    parts.append("</table>")
    return parts


def _section(r: PipelineResult, d: dict[str, Any], esc: Any) -> list[str]:
    parts = [f"<section class='pipeline' id='{esc(r.pipeline)}'><h2>{esc(d['title'])}</h2>"]
    meta = f"pipeline <code>{esc(r.pipeline)}</code>"
    if r.input:
        meta += f" &middot; input {esc(r.input)}"
    if r.seconds is not None:
        meta += f" &middot; {r.seconds:.1f} s"
    parts.append(f"<p class='note'>{meta}</p>")
    if r.error:
        parts.append(f"<p class='err'>failed: {esc(r.error)}</p>")
    parts.append("<div class='cols'>")
    parts += _kv_table("Quality", r.metrics, esc)
    parts += _kv_table("Timing", r.timings, esc)
    parts.append("</div>")
    for t in r.tables:
        parts.append(f"<h3>{esc(t.title)}</h3><table><tr>")
        parts.extend(f"<th>{esc(str(c))}</th>" for c in t.columns)
        parts.append("</tr>")
        for row in t.rows:
            parts.append("<tr>" + "".join(f"<td>{esc(_fmt(v))}</td>" for v in row) + "</tr>")
        parts.append("</table>")
    for f in d["figures"]:
        parts.append(f"<div><img src='{esc(f)}' alt='{esc(Path(f).stem)}'></div>")
    for f in d["media"]:
        parts.append(f"<p>media: <a href='{esc(f)}'>{esc(Path(f).name)}</a></p>")
    for n in r.notes:
        parts.append(f"<p class='note'>{esc(n)}</p>")
    parts.append("</section>")
    return parts


def write_report(out_dir: Path, results: list[PipelineResult], title: str = "DeepSeek report",
                 notes: list[str] | None = None, copy_media: bool = False,
                 versions: str | None = None) -> Path:
    """Write ``index.html`` and ``summary.json`` for ``results`` into ``out_dir``.

    ``versions`` is the line that names the installed distributions (default: the core's).
    Media files are linked where they are unless ``copy_media`` (then they are copied into
    ``out_dir/media/``). Returns the path of ``index.html``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from deepseek import __version__

    if copy_media:
        _copy_media(out_dir, results)
    versions = versions or f"deepseek-core {__version__}"
    summary = {
        "title": title,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "deepseek_core": __version__,
        "versions": versions,
        "notes": list(notes or []),
        "pipelines": [r.to_dict(relative_to=out_dir) for r in results],
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p class='note' id='versions'>{esc(versions)} &middot; {esc(summary['created'])}</p>",
        *_summary_table(results, esc),
        *(f"<p class='note'>{esc(n)}</p>" for n in summary["notes"]),
    ]
    for r, d in zip(results, summary["pipelines"]):
        parts += _section(r, d, esc)
    parts.append("</body></html>\n")
    index = out_dir / "index.html"
    index.write_text("\n".join(parts))
    return index


def echo_training(res: dict[str, Any], as_json: bool) -> None:
    """Print a training run (``{"model": path, "history": [per-epoch dicts]}``) for a CLI:
    JSON, or one line per epoch and the model's path."""
    import click

    if as_json:  # a cross-validation fold's held-out score goes with it
        click.echo(json.dumps({k: res[k] for k in ("model", "history", "fold") if k in res},
                              indent=2, default=str))
        return
    for i, h in enumerate(res["history"], 1):
        rest = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in h.items() if k != "epoch")
        click.echo(f"epoch {h.get('epoch', i)}: {rest}")
    click.echo(f"model: {res['model']}")
