"""ONNX: files run by onnxruntime, export from PyTorch, and the stamp that ties a packaged
export to the weights it was made from."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

from deepseek.errors import ModelLoadError, PrecisionError
from deepseek.loader.base import (
    ARCH_META_KEY,
    CONFIG_META_KEY,
    EXTRA_META_KEY,
    INPUTS_META_KEY,
    SOURCE_META_KEY,
    LoadOptions,
    file_sha256,
    torch,
)
from deepseek.loader.wrapper import LoadedModel


def load_onnx(path: Path, opts: LoadOptions, *, source: str) -> LoadedModel:
    """An onnxruntime session of ``path`` at ``opts``' precision (fp16 converts the graph,
    keeping fp32 inputs and outputs) and device, wrapped."""
    precision, dev, threads = opts.precision, opts.device, opts.onnx_threads
    from deepseek.extras import require

    require("runtime", "running ONNX models")
    import onnxruntime as ort

    if precision == "bf16":
        raise PrecisionError(f"{path}: onnxruntime has no bf16 kernels for most operators; "
                             "use precision='fp16' or 'fp32' for ONNX models")
    model: Any = None
    graph: Any = str(path)  # fp32: onnxruntime reads the file itself (no onnx package)
    if precision == "fp16":
        require("onnx", "converting an ONNX model to fp16")
        import onnx
        from onnxconverter_common import float16

        try:
            model = onnx.load(str(path))
        except Exception as exc:
            raise ModelLoadError(f"{path}: not a readable ONNX file ({exc})") from exc
        model = float16.convert_float_to_float16(model, keep_io_types=True)
        graph = model.SerializeToString()
    providers = ["CPUExecutionProvider"]
    if dev.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise PrecisionError(f"{path}: device {dev} requested but this onnxruntime has "
                                 "no CUDAExecutionProvider; install onnxruntime-gpu or use "
                                 "device='cpu'")
        providers.insert(0, "CUDAExecutionProvider")
    opts = session_options(threads)
    try:
        session = ort.InferenceSession(graph, opts, providers=providers)
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a readable ONNX file, or onnxruntime could not "
                             f"create a session ({precision}): {exc}") from exc
    loaded = LoadedModel(framework="onnx", precision=precision, device=dev, source=source,
                         session=session, onnx_model=model)
    loaded.onnx_path = Path(path)
    return loaded


def session_threads(threads: int | None = None) -> int | None:
    """The intra-op threads an onnxruntime session of this process should run: ``threads``
    when given, else ``OMP_NUM_THREADS`` (which onnxruntime ignores, taking every core: a
    ``deepseek batch`` worker told to use its share, a test worker per core), else the CPU
    budget where the affinity mask or the cgroup's quota holds it below the machine's
    cores (:func:`deepseek.cpus.cpu_budget`: a pod limited to 2 CPUs on a 64-core node);
    None: onnxruntime's own choice, the machine's physical cores."""
    if threads:
        return int(threads)
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    from deepseek.cpus import cpu_budget

    budget = cpu_budget()
    return budget if budget < (os.cpu_count() or budget) else None


def session_options(threads: int | None = None) -> Any:
    """``onnxruntime.SessionOptions`` that run :func:`session_threads` intra-op threads and
    one inter-op thread (left to onnxruntime where that is None)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    threads = session_threads(threads)
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return opts


def stamp_onnx(path: str | Path, source: str | Path, architecture: str,
               config: dict[str, Any] | None = None) -> Path:
    """Record in ONNX file ``path`` what it was exported from: the sha256 of the safetensors
    file ``source`` (:data:`SOURCE_META_KEY`), the architecture and its config, and what
    training stored beside the weights (:func:`~deepseek.loader.files.read_model_extra`: an
    operating threshold, the scale photos are read at), so that the export keeps the
    operating point of the weights it came from. A test can then tell a stale packaged
    export from a current one (:func:`onnx_source`)."""
    from deepseek.extras import require
    from deepseek.loader.files import read_model_extra

    require("onnx", "stamping an ONNX export")
    import onnx

    model = onnx.load(str(path))
    meta = {SOURCE_META_KEY: file_sha256(source), ARCH_META_KEY: architecture,
            CONFIG_META_KEY: json.dumps(config or {})}
    extra = read_model_extra(source)
    if extra:
        meta[EXTRA_META_KEY] = json.dumps(extra)
    keep = [p for p in model.metadata_props if p.key not in meta and p.key != EXTRA_META_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    from deepseek.paths import written_whole

    with written_whole(path) as tmp:
        onnx.save(model, str(tmp))
    return Path(path)


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The custom metadata of an ONNX file (read by onnxruntime: no ``onnx`` package)."""
    from deepseek.extras import require

    require("runtime", "reading ONNX metadata")
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a readable ONNX file ({exc})") from exc
    return dict(sess.get_modelmeta().custom_metadata_map)


def declared_onnx_inputs(session: Any, where: str = "ONNX model") -> dict[str, dict[str, Any]]:
    """What the ONNX ``session``'s file declares of its inputs beyond the graph's shapes
    (:data:`~deepseek.loader.base.INPUTS_META_KEY`): ``{input name: {"multiple": [...],
    "example": [...], "cell": [...], "cost": x, "follows": [...], "range": [lo, hi],
    "decode": reader}}``, empty when it declares nothing (``cell``: each axis's multiple the
    graph pads the input up to before it runs;
    ``cost``: the elements the graph runs per element of the padded input, at least 1, e.g.
    4 for a graph that enlarges a photo twice on each side; both so that a request is
    counted against the server's element cap as the graph runs it; ``follows``: per axis,
    ``null`` or ``[input, axis, step]``, the axis's size the other input's axis in steps of
    ``step``, rounded up, as a recurrent state follows its frames; ``range``: ``[low,
    high]``, the values the graph takes, as a camera's 12-bit words in 16-bit ones take 0 to
    4095; ``decode``: the name of a registered reader of kind ``encoded`` that turns an
    encoded file, sent as a BYTES element, into one item of the input, so that a server
    takes the file as it is beside the pixels). A declaration that does not fit the graph
    (an unknown input, a length other than the input's rank, a step below 1, an example off
    a fixed size or off its steps, a cost that is not a finite number of at least 1, an
    axis that follows itself or an axis the other input lacks, a range that is not two
    finite numbers in order, a decode that is not a name) is a :class:`ModelLoadError`
    naming ``where``."""
    raw = session.get_modelmeta().custom_metadata_map.get(INPUTS_META_KEY)
    if not raw:
        return {}
    bad = f"{where}: metadata '{INPUTS_META_KEY}'"
    try:
        items = json.loads(raw)
    except ValueError as exc:
        raise ModelLoadError(f"{bad} is not JSON ({exc})") from None
    shapes = {i.name: [d if isinstance(d, int) else -1 for d in i.shape]
              for i in session.get_inputs()}
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ModelLoadError(f"{bad} is not a list of {{\"name\", \"multiple\", "
                             "\"example\", \"cell\", \"cost\", \"follows\", \"range\", "
                             "\"decode\"}} objects")
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name = item.get("name")
        if not isinstance(name, str) or name not in shapes:
            raise ModelLoadError(f"{bad} names input {name!r}; the graph's inputs are "
                                 f"{sorted(shapes)}")
        shape, entry = shapes[name], {}
        for key in ("multiple", "example", "cell"):
            dims = item.get(key)
            if dims is None:
                continue
            if (not isinstance(dims, list) or len(dims) != len(shape)
                    or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                               for d in dims)):
                raise ModelLoadError(f"{bad}: input {name!r}'s {key} {dims!r} is not "
                                     f"{len(shape)} positive integers (its shape {shape})")
            entry[key] = dims
        cost = item.get("cost")
        if cost is not None:
            if (not isinstance(cost, (int, float)) or isinstance(cost, bool)
                    or not math.isfinite(cost) or cost < 1):
                raise ModelLoadError(f"{bad}: input {name!r}'s cost {cost!r} is not a finite "
                                     "number of at least 1 (the elements the graph runs per "
                                     "element of its padded input)")
            entry["cost"] = float(cost)
        follows = item.get("follows")
        if follows is not None:
            entry["follows"] = _follows(bad, name, follows, shapes)
        span = item.get("range")
        if span is not None:
            if (not isinstance(span, list) or len(span) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                               and math.isfinite(v) for v in span) or span[0] > span[1]):
                raise ModelLoadError(f"{bad}: input {name!r}'s range {span!r} is not [low, "
                                     "high], two finite numbers, low <= high")
            entry["range"] = (span[0], span[1])
        decode = item.get("decode")
        if decode is not None:
            if not isinstance(decode, str) or not decode.strip():
                raise ModelLoadError(f"{bad}: input {name!r}'s decode {decode!r} is not the "
                                     "name of a reader of kind 'encoded'")
            entry["decode"] = decode
        steps = entry.get("multiple") or [1] * len(shape)
        example = entry.get("example")
        if example and any((d != -1 and e != d) or (d == -1 and e % m)
                           for d, e, m in zip(shape, example, steps)):
            raise ModelLoadError(f"{bad}: input {name!r}'s example {example} does not fit "
                                 f"its shape {shape} in steps of {steps}")
        out[name] = entry
    return out


def _follows(bad: str, name: str, follows: Any,
             shapes: dict[str, list[int]]) -> list[tuple[str, int, int] | None]:
    """A declared ``follows`` of input ``name``, checked against the graph's ``shapes``."""
    rank = len(shapes[name])

    def fits(f: Any) -> bool:
        return f is None or (
            isinstance(f, list) and len(f) == 3 and f[0] in shapes and f[0] != name
            and all(isinstance(v, int) and not isinstance(v, bool) for v in f[1:])
            and 0 <= f[1] < len(shapes[f[0]]) and f[2] >= 1)

    if not isinstance(follows, list) or len(follows) != rank or not all(map(fits, follows)):
        raise ModelLoadError(f"{bad}: input {name!r}'s follows {follows!r} is not {rank} "
                             "entries, each null or [another input, its axis, a step of at "
                             f"least 1] (the graph's inputs are {sorted(shapes)})")
    return [None if f is None else (f[0], f[1], f[2]) for f in follows]


def export_onnx(module: torch.nn.Module, example_input: Any, path: str | Path, *,
                input_names: list[str] | None = None, output_names: list[str] | None = None,
                dynamic_batch: bool = True, opset: int = 17,
                dynamic_axes: dict[str, dict[int, str]] | None = None) -> Path:
    """Export ``module`` to ONNX with a free batch dimension (first axis) by default, or the
    free axes ``dynamic_axes`` names (``{tensor name: {axis: axis name}}``)."""
    from deepseek.extras import require

    require("onnx", "ONNX export")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    input_names = input_names or ([f"input{i}" for i in range(len(inputs))]
                                  if len(inputs) > 1 else ["input"])
    module = module.eval()
    with torch.inference_mode():
        probe = module(*inputs)
    n_out = len(probe) if isinstance(probe, (tuple, list, dict)) else 1
    if isinstance(probe, dict):  # a dict's keys name its outputs, in order
        output_names = output_names or list(probe)
    output_names = output_names or ([f"output{i}" for i in range(n_out)]
                                    if n_out > 1 else ["output"])
    axes = {n: {0: "batch"} for n in input_names + output_names} if dynamic_batch else None
    if dynamic_axes is not None:
        axes = dynamic_axes
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        from deepseek.paths import written_whole

        with written_whole(path) as tmp:
            torch.onnx.export(module, inputs, str(tmp), input_names=input_names,
                              output_names=output_names, dynamic_axes=axes,
                              opset_version=opset, dynamo=False)
    return path
