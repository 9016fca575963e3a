"""The ``deepseek`` command line.

Core commands: ``plugins``, ``readers``, ``read``, ``models``, ``summary``, ``metrics``,
``evaluate``, ``pipelines``, ``run``, ``batch``, ``tune``, ``demo`` and ``serve``; installed
plugins add their own groups (``deepseek medical ...``) through the ``register_commands`` hook.
"""

from __future__ import annotations

import errno
import json
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import click

from deepseek import __version__
from deepseek.errors import DeepSeekError, PipelineError

log = logging.getLogger("deepseek")


def _setup_logging(verbose: int, quiet: bool) -> None:
    """Warnings by default, -v info, -vv debug; -q errors only. Applies to every
    ``deepseek.*`` logger, however often the CLI is invoked in one process."""
    if quiet:
        level = logging.ERROR
    else:
        level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logger = logging.getLogger("deepseek")
    logger.setLevel(level)
    if not any(isinstance(h, _CliHandler) for h in logger.handlers):
        handler = _CliHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)


class _CliHandler(logging.StreamHandler):
    """The CLI's log handler: writes to the current ``sys.stderr`` (which tests swap)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _versions_line() -> str:
    """Each installed distribution once, with its version (a distribution may hold several
    plugins, and the core's own plugin is deepseek-core)."""
    from deepseek.plugins import plugin_infos

    versions = {"deepseek-core": __version__}
    failed = set()
    for info in plugin_infos():
        dist = info.distribution or info.name
        versions.setdefault(dist, info.version or "?")
        if not info.ok:
            failed.add(dist)
    return ", ".join(f"{d} {v}" + (" (with errors)" if d in failed else "")
                     for d, v in versions.items())


def _plugin_of(exc: BaseException) -> str | None:
    """The plugin whose code raised ``exc`` (the innermost frame in a plugin's package)."""
    from deepseek.plugins import manager

    tb, owner = exc.__traceback__, None
    while tb is not None:
        found = manager().owner_of(tb.tb_frame.f_globals.get("__name__", ""))
        owner = found or owner
        tb = tb.tb_next
    return owner


#: the exit status of a finite job (tune, batch) stopped by SIGTERM before it was done, as a
#: shell gives a process that SIGTERM ended (128 + 15): the same command resumes it
EXIT_STOPPED = 143


#: what the system's reason means for the path it names, by error number: a path the command
#: cannot use (an output under a file, a full disk, no permission) is the user's to change,
#: not a bug in the command
_PATH_HINTS = {
    errno.EEXIST: "a file stands where a folder is needed: choose another path or move the file",
    errno.ENOTDIR: "part of this path is a file, not a folder: choose another path or move "
                   "the file",
    errno.EISDIR: "a folder, where a file is needed: give a file's name",
    errno.EACCES: "no permission: choose a path you may use, or change its permissions",
    errno.EPERM: "no permission: choose a path you may use, or change its permissions",
    errno.EROFS: "a read-only file system: choose a path on a writable one",
    errno.ENOSPC: "the disk is full: free space or choose a path on another disk",
    errno.EFBIG: "the file is larger than this file system allows: choose another disk",
    errno.ENAMETOOLONG: "the name is too long for this file system: choose a shorter path",
    **({errno.EDQUOT: "the disk quota is used up: free space or choose another disk"}
       if hasattr(errno, "EDQUOT") else {}),
}


#: the errors of a write that found no room, which name no file when the file was opened
#: before the write
_NO_ROOM = {errno.ENOSPC, errno.EFBIG, *([errno.EDQUOT] if hasattr(errno, "EDQUOT") else [])}


def path_error(exc: OSError) -> str | None:
    """One line for an OSError that names a path the command could not use (see
    ``_PATH_HINTS``): the path, the system's reason and what to do; for a write that found
    no room in a file opened before (the system names no path), the reason and what to do;
    None for any other OSError (a missing file the command expected to find is not the
    user's to fix here)."""
    hint = _PATH_HINTS.get(exc.errno) if exc.errno is not None else None
    if hint is not None and exc.filename is None and exc.errno in _NO_ROOM:
        # a write to a file opened before (the system names none): still the disk's state,
        # not a bug
        return f"a write failed: {exc.strerror or type(exc).__name__} ({hint})"
    if hint is None or exc.filename is None:
        return None
    if exc.errno == errno.EEXIST and Path(str(exc.filename)).is_dir():
        hint = "it exists already: choose a new name or remove it"
    other = f" -> {exc.filename2}" if exc.filename2 is not None else ""
    return f"{exc.filename}{other}: {exc.strerror or type(exc).__name__} ({hint})"


class DeepSeekGroup(click.Group):
    """Click group that turns errors into one line on stderr (the traceback with -vv):
    DeepSeekError (bad input, configuration) exits 2, and so does a command that needs
    PyTorch in an install without it (the extra to add) and one given a path it cannot use
    (an output under a file, a full disk, no permission: :func:`path_error`); any other
    exception is a bug, reported with the plugin whose code raised it, exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; turn errors into one line and an exit status (see the class)."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except DeepSeekError as exc:
            self._fail(ctx, f"error: {exc}", 2)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] != "torch":
                self._fail(ctx, self._bug(exc), 1)
            sub = ctx.invoked_subcommand or ""
            pip = (f"deepseek-{sub}[full]" if sub in ("medical", "manufacturing", "finance")
                   else "deepseek-core[torch]")
            self._fail(ctx, "error: this command needs PyTorch, which this install does not "
                            "have (an edge install runs inference only: ONNX models, the "
                            "packaged exports and the finance fast path): pip install "
                            f"\"{pip}\"", 2)
        except OSError as exc:
            line = path_error(exc)
            self._fail(ctx, f"error: {line}" if line else self._bug(exc), 2 if line else 1)
        except Exception as exc:
            self._fail(ctx, self._bug(exc), 1)

    @staticmethod
    def _bug(exc: BaseException) -> str:
        plugin = _plugin_of(exc)
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
        who = f"plugin {plugin}" if plugin else "deepseek"
        return (f"error: {who} failed: {type(exc).__name__}: {exc}{where} (a bug: run with -vv "
                "for the traceback and report it)")

    @staticmethod
    def _fail(ctx: click.Context, message: str, code: int) -> None:
        click.secho(message, fg="red", err=True)
        if ctx.obj and ctx.obj.get("verbose", 0) > 1:
            traceback.print_exc()
        ctx.exit(code)


@click.group(cls=DeepSeekGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="deepseek",
                      message="%(prog)s %(version)s")
@click.option("-v", "--verbose", count=True,
              help="More logging: -v info, -vv debug and tracebacks (default: warnings).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bars.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """DeepSeek Toolkit: deep learning for medical imaging, manufacturing inspection and
    low-latency finance.

    Start with `deepseek demo` (every pipeline on built-in synthetic data) or
    `deepseek plugins` (what is installed). Inputs go through the reader registry
    (`deepseek readers`), evaluation through the metric registry (`deepseek metrics`),
    models through the model registry and ModelLoader (`deepseek models`).
    """
    _setup_logging(verbose, quiet)
    ctx.ensure_object(dict)
    ctx.obj.update(verbose=verbose, quiet=quiet)


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_context
def plugins_cmd(ctx: click.Context, as_json: bool) -> None:
    """List installed plugins, their versions, what they register and their errors.

    Every registered object is checked against its contract (with its module imported) and
    packaged weights against their model. Exits 1 when any plugin has an error (a failed
    import, a bad registration, a name two plugins contest), so CI can gate on it."""
    from deepseek.plugins import manager, plugin_infos

    infos = plugin_infos(check=True)
    failed = [i.name for i in infos if not i.ok]
    settings = manager().setting_errors
    if as_json:
        click.echo(json.dumps({"deepseek_core": __version__, "ok": not failed and not settings,
                               "failed": failed, "settings": settings,
                               "plugins": [i.to_dict() for i in infos]}, indent=2))
        ctx.exit(1 if failed or settings else 0)
    click.echo(f"deepseek-core {__version__}")
    for where, err in settings.items():
        click.secho(f"error in {where}: {err}", fg="red")
    if not infos:
        click.echo("no plugins installed (pip install deepseek-core[all])")
    for info in infos:
        status = "" if info.ok else click.style("  FAILED", fg="red")
        click.echo(f"\n{info.name} {info.version or '?'}"
                   f"{f' ({info.distribution})' if info.distribution else ''}{status}")
        if info.hooks:
            click.echo(f"  hooks: {', '.join(info.hooks)}")
        for kind, names in info.registered.items():
            if names:
                click.echo(f"  {kind}s: {', '.join(names)}")
        for where, err in info.errors.items():
            click.secho(f"  error in {where}: {err}", fg="red")
    if failed or settings:
        click.secho(f"\n{len(failed)} plugin(s) with errors: {', '.join(failed) or '-'}",
                    fg="red", err=True)
        ctx.exit(1)


def _row(kind: str, e: Any) -> dict[str, Any]:
    row = {"name": e.name, "plugin": e.plugin, "description": e.description}
    if kind == "model":
        row.update(config=e.meta.get("config") or {}, weights=bool(e.meta.get("weights")),
                   trained=bool(e.meta.get("weights")), inputs=e.meta.get("inputs"))
    elif kind == "reader":
        row.update(kind=e.meta.get("kind"), schemes=list(e.meta.get("schemes", ())),
                   suffixes=list(e.meta.get("suffixes", ())), probe="accepts" in e.meta)
    elif kind == "metric":
        row.update(files=e.meta.get("files", ""), reads_files="load_files" in e.meta)
    return row


def _list_registry(kind: str, pattern: str, as_json: bool) -> None:
    from deepseek.plugins import get_registry

    reg = get_registry(kind)
    conflicts = reg.conflicts()
    entries = [e for n in reg.names(pattern) for e in
               ([reg.entry(n)] if n not in conflicts else
                [c for c in reg.claims() if c.name == n] + [
                    p.lookup(n) for p in reg.providers if p.lookup(n) is not None])]
    if as_json:
        rows = [{**_row(kind, e), **({"contested_by": conflicts[e.name], "name": e.qualified}
                                     if e.name in conflicts else {})} for e in entries]
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not entries:
        click.echo(f"no {kind}s match {pattern!r}" if pattern != "*"
                   else f"no {kind}s registered (install a plugin: pip install deepseek-core[all])")
    else:
        width = max(len(e.qualified if e.name in conflicts else e.name) for e in entries)
        for e in entries:
            extra = ""
            if kind == "model":
                extra = " [weights]" if e.meta.get("weights") else " [untrained]"
            elif kind == "reader":
                how = list(e.meta.get("schemes", ())) + list(e.meta.get("suffixes", ()))
                if "accepts" in e.meta:
                    how.append("probe")
                extra = f" [{e.meta.get('kind', '?')}: {' '.join(how) or 'by name'}]"
            name = e.qualified if e.name in conflicts else e.name
            if e.name in conflicts:
                extra += " [contested: use the qualified name or DEEPSEEK_PREFER]"
            click.echo(f"{name.ljust(width)}  {e.plugin or '-':<14} {e.description}{extra}")
    if kind == "model" and pattern in ("*", ""):
        from deepseek.loader import zoo

        click.echo(f"(and {zoo.ZooProvider().count()} zoo architectures, random weights unless "
                   "local ones are given: `deepseek models 'resnet*'` lists those matching a "
                   "pattern" + ("" if zoo.available() else
                                '; they need pip install "deepseek-core[zoo]"') + ")")


@cli.command("readers")
@click.argument("pattern", default="*")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def readers_cmd(pattern: str, as_json: bool) -> None:
    """List registered readers: what each yields and the schemes, suffixes or probe by which
    `deepseek.open` / `deepseek read` pick it."""
    _list_registry("reader", pattern, as_json)


def _parse_options(options: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs; values are read as JSON when they parse, else kept as text."""
    out: dict[str, Any] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r}: use KEY=VALUE", param_hint="-o/--option")
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out


@cli.command("read")
@click.argument("source")
@click.option("--kind", default=None, help="Only readers of this kind (volume, frames, ticks).")
@click.option("--reader", default=None, help="Use this reader (see `deepseek readers`).")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Reader option (repeatable); VALUE is JSON when it parses.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def read_cmd(source: str, kind: str | None, reader: str | None, options: tuple[str, ...],
             as_json: bool) -> None:
    """Open SOURCE with the reader that accepts it and describe what it holds."""
    from deepseek.readers import describe, read_with, resolve

    entry = resolve(source, kind, reader)
    obj = read_with(entry, source, **_parse_options(options))
    try:
        info = {"source": source, "reader": entry.name, "plugin": entry.plugin,
                "kind": entry.meta.get("kind"), **describe(obj)}
    finally:
        close = getattr(obj, "close", None)
        if callable(close):
            close()
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    else:
        for k, v in info.items():
            click.echo(f"{k}: {v}")


@cli.command("models")
@click.argument("pattern", default="*")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def models_cmd(pattern: str, as_json: bool) -> None:
    """List registered models, optionally matching PATTERN (glob, or a substring)."""
    _list_registry("model", pattern, as_json)


@cli.command("metrics")
@click.argument("pattern", default="*")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def metrics_cmd(pattern: str, as_json: bool) -> None:
    """List registered metrics (what `deepseek evaluate` and the pipelines compute)."""
    _list_registry("metric", pattern, as_json)


@cli.command("evaluate")
@click.argument("metric")
@click.option("--pred", "pred_path", type=click.Path(exists=True, path_type=Path),
              required=True, help="Predictions file (see `deepseek metrics` for each format).")
@click.option("--ref", "ref_path", type=click.Path(exists=True, path_type=Path), required=True,
              help="References / ground-truth file.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Metric option (repeatable); VALUE is JSON when it parses.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def evaluate_cmd(metric: str, pred_path: Path, ref_path: Path, options: tuple[str, ...],
                 as_json: bool) -> None:
    """Compute registered METRIC from a predictions file and a references file."""
    from deepseek.evaluation import evaluate_files

    result = evaluate_files(metric, pred_path, ref_path, **_parse_options(options))
    if as_json:
        click.echo(json.dumps({"metric": metric, "result": result}, indent=2, default=str))
        return
    for k, v in result.items():
        click.echo(f"{k}: {v:.6g}" if isinstance(v, float) else f"{k}: {v}")


@cli.command("pipelines")
@click.argument("pattern", default="*")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def pipelines_cmd(pattern: str, as_json: bool) -> None:
    """List registered pipelines (what `deepseek run` and `deepseek demo` run)."""
    _list_registry("pipeline", pattern, as_json)


@cli.command("export-onnx")
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def export_onnx_cmd(names: tuple[str, ...], as_json: bool) -> None:
    """Write the ONNX export that ships beside registered models' packaged weights
    (<weights>.onnx, or the plugin's own form), stamped with the weights' sha256, so an edge
    install (no PyTorch) runs them. NAMES: registered models (default: every one with
    packaged weights). For plugin maintainers, after new weights; needs PyTorch and the ONNX
    tools (deepseek-core[torch,onnx])."""
    from deepseek.extras import require
    from deepseek.loader import export_packaged_onnx
    from deepseek.plugins import models

    require("onnx", "exporting to ONNX")
    registry = models()
    todo = list(names) or [n for n in registry.names(providers=False)
                           if registry.entry(n).meta.get("weights")]
    written = {}
    for name in todo:
        path = export_packaged_onnx(name)
        written[name] = str(path)
        if not as_json:
            click.echo(f"{name}: wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")
    if as_json:
        click.echo(json.dumps(written, indent=2))


@cli.command("summary")
@click.argument("model")
@click.option("--framework", type=click.Choice(["auto", "pytorch", "torchscript", "onnx",
                                                "safetensors"]),
              default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32",
              show_default=True)
@click.option("--pretrained/--no-pretrained", default=None,
              help="Load weights (default: a plugin model's packaged ones; a zoo model's only "
                   "when asked, from local files).")
@click.option("--input-shape", help="Example input shape for output shapes, e.g. 1,3,32,32.")
@click.option("--trust-pickle", is_flag=True, help="Allow loading pickled checkpoints.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
def summary_cmd(model: str, framework: str, precision: str, pretrained: bool | None,
                input_shape: str | None, trust_pickle: bool, as_json: bool) -> None:
    """Print a layer table for MODEL (a registry name, a timm architecture, or a model
    file)."""
    from deepseek.loader import ModelLoader

    extra = {} if pretrained is None else {"pretrained": pretrained}
    loaded = ModelLoader.load(model, framework=framework, precision=precision,
                              trust_pickle=trust_pickle, **extra)
    example = None
    if input_shape:
        try:
            example = tuple(int(s) for s in input_shape.replace("x", ",").split(","))
        except ValueError:
            raise click.BadParameter(f"{input_shape!r}: use integers separated by commas",
                                     param_hint="--input-shape") from None
    elif loaded.inputs:
        from deepseek.loader import example_shape

        example = tuple(example_shape(loaded.inputs[0]))
    s = loaded.summary(example)
    click.echo(json.dumps(s.to_dict(), indent=2) if as_json else str(s))


def _run_one(name: str, source: str | None, out_dir: Path, quiet: bool) -> Any:
    """Run one pipeline; any exception becomes a failed result (with its traceback written
    to ``out_dir/error.txt``), so one broken pipeline never stops the others."""
    from deepseek.plugins import pipelines
    from deepseek.report import PipelineResult

    pipeline = pipelines().get(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        result = pipeline(input=source, out_dir=out_dir, quiet=quiet)
        if not isinstance(result, PipelineResult):
            raise PipelineError(f"pipeline {name!r} returned {type(result).__name__}, not a "
                                "PipelineResult (plugin bug)")
    except DeepSeekError as exc:
        result = PipelineResult(pipeline=name, error=str(exc))
    except Exception as exc:  # a plugin bug: report it, keep going
        (out_dir / "error.txt").write_text(traceback.format_exc())
        log.error("pipeline %s failed: %s: %s (traceback in %s)", name, type(exc).__name__,
                  exc, out_dir / "error.txt")
        result = PipelineResult(pipeline=name, error=f"{type(exc).__name__}: {exc} "
                                                     f"(traceback: {out_dir / 'error.txt'})")
    result.seconds = time.perf_counter() - t0
    result.input = result.input or (source if source else "built-in synthetic")
    return result


def _echo_result(res: Any, indent: str = "") -> None:
    for group in (res.metrics, res.timings):
        for k, v in group.items():
            click.echo(f"{indent}{k}: {v:.4g}" if isinstance(v, float) else f"{indent}{k}: {v}")


@cli.command("run")
@click.argument("pipeline")
@click.option("--input", "source", default=None,
              help="Input: a path or URI any registered reader opens (default: the "
                   "pipeline's built-in synthetic input).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Report folder [default: reports/PIPELINE].")
@click.option("--copy-media", is_flag=True, help="Copy videos into the report (default: link).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def run_cmd(ctx: click.Context, pipeline: str, source: str | None, out_dir: Path | None,
            copy_media: bool, as_json: bool) -> None:
    """Run one PIPELINE and write its report (index.html + summary.json)."""
    from deepseek.plugins import pipelines
    from deepseek.report import write_report

    pipelines().entry(pipeline)  # unknown names fail here, with suggestions
    out_dir = out_dir or Path("reports") / pipeline
    result = _run_one(pipeline, source, out_dir, ctx.obj["quiet"])
    index = write_report(out_dir, [result], title=f"DeepSeek: {pipeline}",
                         copy_media=copy_media, versions=_versions_line())
    if as_json:
        click.echo(json.dumps(result.to_dict(relative_to=out_dir), indent=2))
    else:
        _echo_result(result)
        click.echo(f"report: {index.resolve()}")
    if result.error:
        click.secho(f"error: pipeline {pipeline} failed: {result.error}", fg="red", err=True)
        ctx.exit(1)


@cli.command("tune")
@click.argument("config", metavar="CONFIG.yaml|worker")
@click.option("--storage", default=None,
              help="Where the study lives: sqlite:///FILE or journal:FILE (processes on one "
                   "machine), postgresql://USER:PASS@HOST/DB (many machines) [in memory].")
@click.option("--study", default=None, help="Study name (start or resume) [deepseek-tune].")
@click.option("--trials", type=int, default=None,
              help="Finished trials the study should reach [the config's 'trials'].")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Local worker processes sharing the study.")
@click.option("--timeout", "timeout_s", type=float, default=None,
              help="Stop this process's trials after this many seconds.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Write trials.csv, best.json and the figures here [reports/tune/STUDY].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def tune_cmd(ctx: click.Context, config: str, storage: str | None, study: str | None,
             trials: int | None, workers: int, timeout_s: float | None,
             out_dir: Path | None, as_json: bool) -> None:
    """Search hyperparameters with Optuna (TPE by default; `sampler: ga` in the config for
    the genetic algorithm, whose population follows the trial budget).

    `deepseek tune CONFIG.yaml` starts or resumes a study; `deepseek tune worker --storage
    URL --study NAME` joins one (from any machine: the study stores its config). The
    config's objective is a registered pipeline and the metrics it reports; see
    deepseek.tune for the format. SIGTERM ends the search after the trials in hand (the
    workers' too; exit status 143) and the same command resumes it.
    """
    from deepseek.paths import ready_folder
    from deepseek.service import stop_signals
    from deepseek.tune import TuneConfig, TuneError, run_worker, tune, write_outputs

    quiet = ctx.obj["quiet"]
    ready_folder(out_dir, "--out")  # before the trials, not after them
    # SIGTERM (a service manager's stop, `timeout`, `kill`) or the hangup of the terminal it
    # runs in: the search ends after the trials in hand, its workers' too, and resumes when
    # started again
    with stop_signals() as stop:
        if config == "worker":
            if not storage or not study:
                raise TuneError("a worker joins an existing study: give --storage URL and "
                                "--study NAME")
            if workers != 1:
                raise TuneError("run several `deepseek tune worker` processes instead of "
                                "--workers")
            res = run_worker(storage, study, trials=trials, timeout=timeout_s,
                             progress=False if quiet else None, stop=stop)
        else:
            cfg = TuneConfig.load(config)
            out = out_dir or Path("reports") / "tune" / (study or "deepseek-tune")
            res = tune(cfg, storage=storage, study=study, workers=workers, trials=trials,
                       timeout=timeout_s, out_dir=out, progress=False if quiet else None,
                       stop=stop)
            if out_dir is None:
                out_dir = out
    if res.stopped:
        click.echo(f"stopped after the trials in hand (SIGTERM): {res.counts()}; " + (
            "the same command resumes the study" if storage or workers > 1 else
            "the study was in memory: give --storage to keep one that can be resumed")
            + f" (exit status {EXIT_STOPPED})", err=True)
    if out_dir is not None and not res.figures:
        from deepseek.tune import open_study

        res.figures = write_outputs(res, open_study(None, storage, res.study_name), out_dir)
    if as_json:
        click.echo(json.dumps(res.to_dict(), indent=2, default=str))
    else:
        click.echo(f"study {res.study_name}: {res.counts()} in {res.seconds:.1f} s")
        for b in res.best[:10]:
            click.echo(f"  trial {b['number']}: {b['values']}  {b['params']}")
        if out_dir is not None:
            click.echo(f"report: {Path(out_dir).resolve()}")
    if res.stopped:
        ctx.exit(EXIT_STOPPED)


@cli.command("batch")
@click.argument("step", nargs=-1)
@click.option("--input", "inputs", multiple=True, metavar="GLOB|PATH|URI|@LIST",
              help="Inputs (repeatable): a quoted glob ('scans/*/', 'parts/**/*.png'), a "
                   "path, a URI, or @FILE listing one input per line.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Results folder: items/KEY.json per input (the command's --json "
                   "output), failed/KEY.json, summary.csv, log.jsonl, run.json.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Step option (repeatable; VALUE is JSON when it parses), e.g. -o "
                   "threshold=0.1; --list shows each step's options.")
@click.option("--cluster", default="local", show_default=True,
              metavar="local|ray|ray://HOST:PORT|HOST:PORT",
              help="local: worker processes on this machine; ray: the Ray cluster "
                   "RAY_ADDRESS names (a RayJob sets it) or one started here; "
                   "ray://HOST:10001: Ray Client; HOST:6379: the head's address.")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Worker processes or Ray actors [one per CPU].")
@click.option("--cpus-per-worker", type=click.FloatRange(0, min_open=True), default=1.0,
              show_default=True, help="CPUs each Ray actor reserves.")
@click.option("--attempts", type=click.IntRange(1), default=3, show_default=True,
              help="Tries per item when the worker running it dies (an item whose step "
                   "raises is recorded as failed at once).")
@click.option("--list", "list_steps", is_flag=True, help="List the steps and their options.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's report as JSON.")
@click.pass_context
def batch_cmd(ctx: click.Context, step: tuple[str, ...], inputs: tuple[str, ...],
              out_dir: Path | None, options: tuple[str, ...], cluster: str,
              workers: int | None, cpus_per_worker: float, attempts: int, list_steps: bool,
              as_json: bool) -> None:
    """Run a per-item STEP over many inputs, on local processes or a Ray cluster.

    STEP is a command ('medical detect', 'manufacturing score', 'finance backtest') or a
    step name (--list). Each worker loads the model once; each input's result is written
    as items/KEY.json, exactly what `deepseek STEP INPUT --json` prints; a failing item is
    recorded with its error and the rest go on; a worker that dies has its items run again
    elsewhere. A re-run with the same --out skips the items already done and retries the
    failed ones. SIGTERM stops it after the items in hand. Exit status 1 when any item
    failed, 143 when it was stopped before every item ran.

    \b
    deepseek batch medical detect --input 'archive/*/' --out results/ -o threshold=0.1
    deepseek batch manufacturing score --input 'line3/**/*.png' --out scores/ \\
        -o model=runs/line3/model.safetensors --cluster ray://head:10001
    """
    from deepseek.batch import BatchError, find_step, run_batch, step_options

    if list_steps:
        from deepseek.plugins import steps

        rows = []
        for e in steps().entries():
            rows.append({"step": e.name, "plugin": e.plugin, "command": e.meta.get("command"),
                         "description": e.description, "options": step_options(e)})
        if as_json:
            click.echo(json.dumps(rows, indent=2, default=str))
            return
        for r in rows:
            click.echo(f"{r['step']}  ({r['command'] or 'no command'}, plugin {r['plugin']})"
                       f"  {r['description']}")
            for k, v in r["options"].items():
                click.echo(f"    -o {k}={json.dumps(v, default=str)}")
        return
    if not inputs or out_dir is None:
        raise BatchError("give --input (one or more) and --out, e.g. deepseek batch medical "
                         "detect --input 'scans/*/' --out results/")
    find_step(step)  # an unknown step fails before anything is read
    from deepseek.service import stop_signals

    # SIGTERM (a service manager's stop, `timeout`, `kill`) or the hangup of the terminal it
    # runs in: no item is sent after it, the items in flight are finished and written
    with stop_signals() as stop:
        report = run_batch(step, inputs, out_dir, options=_parse_options(options),
                           cluster=cluster, workers=workers, cpus_per_worker=cpus_per_worker,
                           attempts=attempts, progress=False if (ctx.obj["quiet"] or as_json)
                           else None, stop=stop)
    if report.stopped:
        click.echo(f"stopped after the items in hand (SIGTERM): {report.not_run} input(s) not "
                   f"run; the same command runs them (exit status {EXIT_STOPPED})", err=True)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        ran = report.ok + report.failed
        click.echo(f"{report.step}: {report.items} input(s): {report.ok} done now, "
                   f"{report.skipped} done before, {report.failed} failed"
                   + (f"; {ran} in {report.seconds:.1f} s ({report.items_per_s:.2f} items/s) "
                      f"on {report.where}" if ran else "")
                   + (f"; {report.retried} re-run after a worker died" if report.retried
                      else ""))
        for f in report.failures[:10]:
            click.echo(f"failed: {f['source']}: {f['error']}", err=True)
        if report.left_out:
            first = report.left_out[0]
            click.echo(f"left out: {len(report.left_out)} file(s) the globs matched are not "
                       f"inputs of {report.step} (e.g. {first['source']}: {first['why']}); "
                       f"listed in {Path(report.out_dir) / 'run.json'}", err=True)
        click.echo(f"results: {Path(report.out_dir) / 'items'}; table: "
                   f"{Path(report.out_dir) / 'summary.csv'}")
    if report.stopped:
        ctx.exit(EXIT_STOPPED)
    if report.failed:
        ctx.exit(1)


@cli.command("demo")
@click.option("--out", "out_dir", type=click.Path(path_type=Path),
              default=Path("reports") / "demo", show_default=True, help="Report folder.")
@click.option("--only", "patterns", multiple=True,
              help="Run only the pipelines matching this pattern (repeatable).")
@click.option("--copy-media", is_flag=True, help="Copy videos into the report (default: link).")
@click.option("--json", "as_json", is_flag=True, help="Print summary.json on stdout at the end.")
@click.pass_context
def demo_cmd(ctx: click.Context, out_dir: Path, patterns: tuple[str, ...], copy_media: bool,
             as_json: bool) -> None:
    """Run every registered pipeline on its built-in synthetic data and write one report."""
    from deepseek.plugins import pipelines, plugin_infos
    from deepseek.report import write_report

    reg = pipelines()
    names = sorted({n for p in (patterns or ("*",)) for n in reg.names(p)
                    if reg.entry(n).meta.get("demo", True) or patterns})
    notes = []
    failed = [i for i in plugin_infos() if not i.ok]
    for info in failed:
        notes.append(f"plugin {info.name} has errors: {info.errors}")
    if not names:
        msg = ("no pipelines are registered yet: the installed plugins "
               f"({', '.join(i.name for i in plugin_infos()) or 'none'}) add none, "
               "so the report lists no results")
        click.echo(msg)
        notes.append(msg)
    results = []
    for i, name in enumerate(names, 1):
        say = (lambda m: click.echo(m, err=True)) if as_json else click.echo
        say(f"[{i}/{len(names)}] {name} ...")
        res = _run_one(name, None, out_dir / name, ctx.obj["quiet"])
        results.append(res)
        status = "failed: " + res.error if res.error else f"done in {res.seconds:.1f} s"
        say(f"[{i}/{len(names)}] {name} {status}")
        for h in (res.quality, res.speed):
            if h is not None:
                say(f"    {h.text()}" + (f" (goal {h.goal}: {'met' if h.met else 'MISSED'})"
                                         if h.goal else ""))
    index = write_report(out_dir, results, title="DeepSeek demo", notes=notes,
                         copy_media=copy_media, versions=_versions_line())
    failed = [r.pipeline for r in results if r.error]
    if as_json:
        click.echo((out_dir / "summary.json").read_text())
    else:
        click.echo(f"report: {index.resolve()}")
        click.echo(f"summary: {(out_dir / 'summary.json').resolve()}")
    if failed:
        click.secho(f"error: {len(failed)} of {len(results)} pipelines failed: "
                    f"{', '.join(failed)}", fg="red", err=True)
        ctx.exit(1)


@cli.command("serve")
@click.argument("models", nargs=-1, required=True)
@click.option("--name", default=None, help="Name to serve a single MODEL under.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind (0.0.0.0 or :: for all; then set --token).")
@click.option("--port", type=int, default=8080, show_default=True, help="REST port (0: any).")
@click.option("--grpc-port", type=int, default=8081, show_default=True,
              help="gRPC port (0: any).")
@click.option("--no-grpc", is_flag=True, help="Serve REST only.")
@click.option("--batch-size", type=int, default=32, show_default=True,
              help="Largest batch (1: no batching). An idle model takes a request at once; "
                   "requests that arrive during a run form the next batch.")
@click.option("--max-delay-ms", type=float, default=0.0, show_default=True,
              help="Optional extra wait for a batch to fill.")
@click.option("--max-queue", type=int, default=256, show_default=True,
              help="Waiting requests per model before 503 / UNAVAILABLE.")
@click.option("--timeout", "timeout_s", type=float, default=30.0, show_default=True,
              help="Per-request time limit in seconds.")
@click.option("--max-request-mb", type=float, default=64.0, show_default=True)
@click.option("--max-elements", type=int, default=1 << 24, show_default=True,
              help="Tensor elements per request and per batch, as the model runs them (the "
                   "cell it pads an input to and its cost, where its file declares them) "
                   "(413 / RESOURCE_EXHAUSTED beyond).")
@click.option("--memory-budget-mb", type=click.FloatRange(min=1), default=None,
              help="Memory all requests in flight may take while they are decoded and run "
                   "[half the process's memory limit: the cgroup's, else the machine's]. A "
                   "request that could never fit gets 413, one that must wait 503 / "
                   "RESOURCE_EXHAUSTED, before the memory is taken.")
@click.option("--threads", type=int, default=None,
              help="The most PyTorch / onnxruntime intra-op threads a model run gets, per "
                   "worker (a hard ceiling) [the worker's share of the CPU budget: the "
                   "affinity mask and the cgroup's CPU quota]. Under load one core less (the "
                   "event loop's); a lone request the count measured at start-up to pay off.")
@click.option("--no-calibrate", is_flag=True,
              help="Skip the start-up timing of each model (lone requests then run on one "
                   "thread, and batching stays on but for a fixed batch axis).")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Server processes sharing the ports (SO_REUSEPORT), each with its own "
                   "models and batcher: for CPU-bound models.")
@click.option("--token", envvar="DEEPSEEK_SERVING_TOKEN", default=None,
              help="Require 'Authorization: Bearer TOKEN' [env: DEEPSEEK_SERVING_TOKEN].")
@click.option("--metrics-public", is_flag=True,
              help="Serve /metrics without the token (for a scraper on a private network).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32",
              show_default=True)
@click.option("--framework", type=click.Choice(["auto", "pytorch", "torchscript", "onnx",
                                                "safetensors"]),
              default="auto", show_default=True)
@click.option("--trust-pickle", is_flag=True, help="Allow pickled model files.")
@click.option("--allow-untrained", is_flag=True,
              help="Serve models built with random weights (registered without weights, zoo "
                   "models without local weights); refused by default.")
@click.option("--drain-delay", "drain_delay_s", type=click.FloatRange(0), default=0.0,
              show_default=True, envvar="DEEPSEEK_SERVING_DRAIN_DELAY",
              help="Seconds to keep serving after SIGTERM while /v2/health/ready answers 503, "
                   "so load balancers (Kubernetes endpoints) stop routing here before the "
                   "drain; a second signal skips the wait [env: DEEPSEEK_SERVING_DRAIN_DELAY].")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON line with the endpoints and models once serving (for "
                   "scripts; with --port 0 it tells the ports chosen).")
def serve_cmd(models: tuple[str, ...], name: str | None, host: str, port: int, grpc_port: int,
              no_grpc: bool, batch_size: int, max_delay_ms: float, max_queue: int,
              timeout_s: float, max_request_mb: float, max_elements: int, threads: int | None,
              workers: int, token: str | None, metrics_public: bool, precision: str,
              framework: str, trust_pickle: bool, allow_untrained: bool, drain_delay_s: float,
              no_calibrate: bool, memory_budget_mb: float | None, as_json: bool) -> None:
    """Serve MODELS over REST and gRPC (KServe Open Inference Protocol V2).

    Each MODEL is a registry name (`deepseek models`), a model file, or NAME=SOURCE.
    Clients: curl, tritonclient.http / tritonclient.grpc, KServe tooling. SIGINT/SIGTERM
    finish the requests in flight before exiting (after --drain-delay seconds of serving
    while not ready).
    """
    from deepseek.extras import require

    require("serve", "deepseek serve")
    from deepseek.serving.models import default_name
    from deepseek.serving.server import DeepSeekServing
    from deepseek.serving.threads import worker_share

    if workers < 1:
        raise click.BadParameter("must be at least 1", param_hint="--workers")
    if threads is not None and threads < 1:
        raise click.BadParameter("must be at least 1", param_hint="--threads")
    specs: dict[str, str] = {}
    for m in models:
        key, sep, src = m.partition("=")
        if sep and key and not src.startswith("="):
            specs[key] = src
        else:
            specs[name if name and len(models) == 1 else default_name(m)] = m
    if host not in ("127.0.0.1", "::1", "localhost") and not token:
        log.warning("serving on %s without --token: anyone who reaches this interface can "
                    "run the models", host)
    options = dict(models=specs, port=port, grpc_port=None if no_grpc else grpc_port,
                   batch_size=batch_size, max_delay_ms=max_delay_ms, host=host,
                   max_queue=max_queue, timeout_s=timeout_s, max_request_mb=max_request_mb,
                   max_elements=max_elements, token=token, metrics_public=metrics_public,
                   precision=precision, framework=framework, trust_pickle=trust_pickle,
                   allow_untrained=allow_untrained, drain_delay_s=drain_delay_s,
                   threads=threads or worker_share(workers), calibrate=not no_calibrate,
                   memory_budget_mb=memory_budget_mb)
    if workers > 1:
        from deepseek.serving.workers import serve_workers

        ctx = click.get_current_context()
        ctx.exit(serve_workers(options, workers,
                               on_ready=_print_worker_endpoints if as_json else None))
    server = DeepSeekServing(**options, on_ready=_print_endpoints if as_json else None)
    server.start()


def _endpoints(host: str, http_port: int, grpc_port: int | None) -> dict[str, Any]:
    h = f"[{host}]" if ":" in host else host
    return {"rest": f"http://{h}:{http_port}",
            "grpc": f"{h}:{grpc_port}" if grpc_port is not None else None}


def _print_endpoints(server: Any) -> None:
    click.echo(json.dumps({**_endpoints(server.host, server.http_port, server.grpc_port),
                           "threads": server.threads, "load_threads": server.load_threads,
                           "calibration": {n: c.to_dict()
                                           for n, c in server.calibration.items()},
                           "models": {n: m.metadata() for n, m in server.models.items()}}))
    sys.stdout.flush()


def _print_worker_endpoints(options: dict[str, Any]) -> None:
    click.echo(json.dumps({**_endpoints(options["host"], options["port"],
                                        options["grpc_port"]),
                           "threads": options["threads"], "workers": options["workers"],
                           "pids": options["pids"], "models": sorted(options["models"])}))
    sys.stdout.flush()


_commands_added = False


def build_cli() -> click.Group:
    """The top-level group with the plugins' commands added (once)."""
    global _commands_added
    if not _commands_added:
        from deepseek.plugins import add_commands

        _commands_added = True
        add_commands(cli)
    return cli


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``deepseek`` command (``argv`` defaults to ``sys.argv[1:]``)."""
    build_cli().main(args=argv, prog_name="deepseek")


if __name__ == "__main__":
    main()
