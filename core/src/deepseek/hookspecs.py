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

    Called when the reader registry is first built. Call once per reader::

        register(name, reader, description="", kind=None, schemes=None, suffixes=None,
                 accepts=None)

    ``reader(source, **options)`` opens a path, URL or device and returns (or yields) the
    plugin's domain objects (a CT volume, a frame source, a tick array). ``kind`` names what
    it yields (``"volume"``, ``"frames"``, ``"ticks"``); ``schemes`` are URI prefixes it
    opens (``["cam:", "rtsp://"]``); ``suffixes`` file endings (``[".mhd", ".nii.gz"]``);
    ``accepts(source) -> bool`` is a cheap probe for sources neither identifies (a DICOM
    folder). ``deepseek.open(source)`` picks a reader by scheme, then suffix, then probe.
    Unknown options and wrong types are errors reported against the plugin.

    A reader of kind ``"encoded"`` decodes a file a model server's request sends, for an
    ONNX input that declares it (``"decode": NAME`` in the file's ``deepseek.inputs``):
    ``reader(data, dtype=, max_pixels=, reserve=, where=)`` gets the file's bytes and
    returns one item of the input (its shape past the batch axis, of numpy ``dtype``). It
    reads the header first, raises :class:`deepseek.errors.InputTooLargeError` (413) for a
    picture of more than ``max_pixels`` pixels and calls ``reserve(nbytes)`` with what
    decoding will hold, both before decoding; its errors name ``where`` (the request's item).
    """


@hookspec
def register_models(register):  # type: ignore[no-untyped-def]
    """Register model builders.

    Called when the model registry is first built. Call once per model::

        register(name, builder, config=None, weights=None, description="", inputs=None,
                 outputs=None, batching=None)

    ``builder(**config)`` returns a ``torch.nn.Module``; ``config`` is the default
    configuration (a JSON-serialisable dict); ``weights`` is the path of packaged
    safetensors weights for that default configuration (a missing file is an error, and
    ``deepseek plugins`` checks that the weights fit the builder); ``inputs`` describes the
    input tensors as ``[{"name", "dtype", "shape"}]`` (``-1`` for a free dimension), used by
    ``summary()``, the model server's metadata and the training commands, which accept any
    model whose inputs fit their task; an input may add ``"multiple"`` (each axis's step: a
    free axis then takes positive multiples of it, as a network that downsamples by 16
    needs; the server refuses other sizes with a 400 that says how to pad) and
    ``"example"`` (one concrete shape, for summaries, tracing and the server's timing; by
    default each free axis is one step); ``outputs`` names what the model returns, in order
    (a returned state's tensors flattened), as the server answers with them (default: the
    keys of a returned dict of tensors, else ``output``, or ``output0``, ``output1``...);
    ``batching`` is the server's policy for
    inputs of different shapes (``{"policy": "pad", "pad_axes": [1]}``).
    """


@hookspec
def register_metrics(register):  # type: ignore[no-untyped-def]
    """Register metrics.

    Called when the metric registry is first built. Call
    ``register(name, metric, description="", load_files=None, files="")`` where
    ``metric(predictions, references, **options)`` returns a ``dict`` of numbers.
    ``load_files(pred_path, ref_path) -> (predictions, references)`` reads the metric's
    files for ``deepseek evaluate METRIC --pred P --ref R`` (default: numeric arrays from
    .npy/.csv/.json); ``files`` says in a few words what those files are.
    """


@hookspec
def register_pipelines(register):  # type: ignore[no-untyped-def]
    """Register end-to-end pipelines (reader -> model -> metric -> report).

    Called when the pipeline registry is first built. Call
    ``register(name, pipeline, description="", input_kind=None)`` where ``pipeline`` is a
    callable ``pipeline(input=None, out_dir=Path, quiet=False) ->
    deepseek.report.PipelineResult``. With ``input=None`` the pipeline must make its own
    built-in synthetic input, so that ``deepseek run NAME`` and ``deepseek demo`` work with no
    data; otherwise ``input`` is the source given to ``deepseek run --input`` (a path or URI),
    which the pipeline opens with ``deepseek.open(input, kind=input_kind)``. It writes its
    figures under ``out_dir`` and sets the result's headline quality and speed figures.
    """


@hookspec
def register_steps(register):  # type: ignore[no-untyped-def]
    """Register per-item steps for ``deepseek batch`` (one input in, one JSON result out).

    Called when the step registry is first built. Call
    ``register(name, factory, description="", command=None, summary=None)`` where
    ``factory(**options)`` loads what every item needs (a model) once per worker and returns
    ``step(source) -> dict``, a JSON-serialisable result for one input (a path or URI).
    ``command`` names the CLI command whose ``--json`` output that result is (``"medical
    detect"``), so that ``deepseek batch medical detect`` finds the step and its results equal
    the command's, item by item; ``summary(result)`` gives the item's row (a flat dict of
    numbers or text) in the batch's summary table. Options come from ``deepseek batch -o
    KEY=VALUE`` and must be keyword arguments of the factory.
    """


@hookspec
def register_commands(cli):  # type: ignore[no-untyped-def]
    """Add subcommands to the ``deepseek`` command line.

    Called once when the CLI is built, with the top-level ``click.Group``. A plugin adds its
    own group, e.g. ``cli.add_command(medical_group)`` for ``deepseek medical ...``.
    """
