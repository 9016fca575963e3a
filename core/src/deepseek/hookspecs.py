"""Hook specifications of the DeepSeek Toolkit.

A plugin is a module (or any object) with functions decorated by :data:`deepseek.hookimpl`,
named after the hooks below, found through the entry-point group ``deepseek``::

    [project.entry-points.deepseek]
    medical = "deepseek.medical.plugin"

Hooks receive a ``register`` callback instead of returning lists, so one implementation can
register any number of things, each with its own options. Hooks are called when a registry is
first needed (never at ``import deepseek``), once per plugin, and what each plugin registers is
attributed to it (``deepseek plugins`` shows it).
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("deepseek")
hookimpl = pluggy.HookimplMarker("deepseek")


@hookspec
def register_readers(register):  # type: ignore[no-untyped-def]
    """Register data readers.

    Called when the reader registry is first built. Call
    ``register(name, reader, description="")`` once per reader, where ``reader`` is a callable
    that opens a path, URL or device (``reader(source, **options)``) and returns or yields the
    plugin's domain objects (a CT volume, video frames, market ticks).
    """


@hookspec
def register_models(register):  # type: ignore[no-untyped-def]
    """Register model builders.

    Called when the model registry is first built. Call
    ``register(name, builder, config=None, weights=None, description="", inputs=None)``:
    ``builder(**config)`` returns a ``torch.nn.Module``; ``config`` is the default
    configuration (a JSON-serialisable dict); ``weights`` is an optional path to packaged
    safetensors weights for that default configuration; ``inputs`` optionally describes the
    input tensors as ``[{"name", "dtype", "shape"}]`` (``-1`` for a free dimension), used by
    ``summary()`` and by the model server's metadata.
    """


@hookspec
def register_metrics(register):  # type: ignore[no-untyped-def]
    """Register metrics.

    Called when the metric registry is first built. Call
    ``register(name, metric, description="")`` where
    ``metric(predictions, references, **options)`` returns a ``dict`` of floats.
    """


@hookspec
def register_pipelines(register):  # type: ignore[no-untyped-def]
    """Register end-to-end pipelines (reader -> model -> metric -> report).

    Called when the pipeline registry is first built. Call
    ``register(name, pipeline, description="")`` where ``pipeline`` is a callable
    ``pipeline(input=None, out_dir=Path, quiet=False) -> deepseek.report.PipelineResult``.
    With ``input=None`` the pipeline must make its own built-in synthetic input, so that
    ``deepseek run NAME`` and ``deepseek demo`` work with no data. It writes its figures
    under ``out_dir``.
    """


@hookspec
def register_commands(cli):  # type: ignore[no-untyped-def]
    """Add subcommands to the ``deepseek`` command line.

    Called once when the CLI is built, with the top-level ``click.Group``. A plugin adds its
    own group, e.g. ``cli.add_command(medical_group)`` for ``deepseek medical ...``.
    """
