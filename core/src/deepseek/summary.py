"""``summary()`` for loaded models: a layer table with output shapes, parameter counts and size.

Works on any ``torch.nn.Module`` (output shapes through forward hooks when an example input
is given) and on ONNX graphs (one row per node, parameters from the initializers it uses).
Totals are exact: every parameter is counted once, in the row of the module that owns it, so
the ``Param #`` column sums to the total.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SummaryRow:
    """One layer of a model summary: name, type, depth, output shape and parameters."""
    name: str
    type: str
    depth: int
    output_shape: Any = None
    params: int = 0
    trainable: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-ready data."""
        return {
            "name": self.name,
            "type": self.type,
            "depth": self.depth,
            "output_shape": self.output_shape,
            "params": self.params,
            "trainable": self.trainable,
        }


@dataclass
class ModelSummary:
    """The result of ``summary()``: print it for the table, read its fields for numbers."""

    title: str
    rows: list[SummaryRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    param_bytes: int = 0
    buffer_bytes: int = 0
    input_shape: Any = None
    output_shape: Any = None
    dtype: str | None = None

    @property
    def non_trainable_params(self) -> int:
        """Parameters that are not trained (frozen ones and buffers counted as parameters)."""
        return self.total_params - self.trainable_params

    @property
    def size_mb(self) -> float:
        """Parameters plus buffers, in megabytes (10**6 bytes)."""
        return (self.param_bytes + self.buffer_bytes) / 1e6

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data."""
        return {
            "title": self.title,
            "rows": [r.to_dict() for r in self.rows],
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "param_bytes": self.param_bytes,
            "buffer_bytes": self.buffer_bytes,
            "size_mb": self.size_mb,
            "input_shape": self.input_shape,
            "output_shape": self.output_shape,
            "dtype": self.dtype,
        }

    def __str__(self) -> str:
        header = ["Layer (type)", "Output shape", "Param #", "Trainable"]
        body = []
        for r in self.rows:
            label = "  " * r.depth + (f"{r.name} ({r.type})" if r.name else f"({r.type})")
            shape = "" if r.output_shape is None else _shape_str(r.output_shape)
            body.append([label, shape, f"{r.params:,}", "yes" if r.trainable == r.params
                         else ("no" if r.trainable == 0 else f"{r.trainable:,}")])
        widths = [max(len(x) for x in col) for col in zip(header, *body)] if body else \
            [len(h) for h in header]
        line = "=" * (sum(widths) + 3 * (len(widths) - 1))

        def fmt(cells: list[str]) -> str:
            return "   ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
            )

        out = [self.title, line, fmt(header), line]
        out += [fmt(b) for b in body]
        out.append(line)
        if self.input_shape is not None:
            out.append(f"Input shape: {_shape_str(self.input_shape)}")
        if self.output_shape is not None:
            out.append(f"Output shape: {_shape_str(self.output_shape)}")
        out += [
            f"Total params: {self.total_params:,}",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.non_trainable_params:,}",
            f"Parameter dtype: {self.dtype}" if self.dtype else "",
            f"Params size (MB): {self.param_bytes / 1e6:.3f}",
            f"Buffers size (MB): {self.buffer_bytes / 1e6:.3f}",
            f"Model size (MB): {self.size_mb:.3f}",
            line,
        ]
        return "\n".join(x for x in out if x)


def _shape_str(shape: Any) -> str:
    if isinstance(shape, (list, tuple)) and shape and all(isinstance(s, (list, tuple))
                                                          for s in shape):
        return ", ".join(_shape_str(s) for s in shape)
    if isinstance(shape, dict):
        return ", ".join(f"{k}: {_shape_str(v)}" for k, v in shape.items())
    if isinstance(shape, (list, tuple)):
        return "[" + ", ".join(str(s) for s in shape) + "]"
    return str(shape)


def _shapes_of(obj: Any) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        return list(obj.shape)
    if isinstance(obj, (list, tuple)):
        shapes = [_shapes_of(o) for o in obj]
        return [s for s in shapes if s is not None] or None
    if isinstance(obj, dict):
        return {k: _shapes_of(v) for k, v in obj.items() if _shapes_of(v) is not None} or None
    return None


def summarize_module(module: Any, example_input: Any = None, title: str | None = None,
                     device: Any = None) -> ModelSummary:
    """Summarise a ``torch.nn.Module``; with ``example_input``, run it once to record shapes.

    ``example_input`` is a tensor, a tuple of tensors, or a shape (tuple of ints), for which
    a zero tensor of the model's floating dtype is made.
    """
    import torch

    params = list(module.parameters())
    dtype = next((p.dtype for p in params if p.is_floating_point()), None)
    seen: set[int] = set()
    rows: list[SummaryRow] = []
    for name, sub in module.named_modules():
        own = [p for p in sub.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        rows.append(SummaryRow(
            name=name,
            type=getattr(sub, "original_name", None) or type(sub).__name__,
            depth=0 if not name else name.count(".") + 1,
            params=sum(p.numel() for p in own),
            trainable=sum(p.numel() for p in own if p.requires_grad),
        ))
    uniq = {id(p): p for p in params}.values()
    bufs = {id(b): b for b in module.buffers()}.values()
    summary = ModelSummary(
        title=title or type(module).__name__,
        rows=rows,
        total_params=sum(p.numel() for p in uniq),
        trainable_params=sum(p.numel() for p in uniq if p.requires_grad),
        param_bytes=sum(p.numel() * p.element_size() for p in uniq),
        buffer_bytes=sum(b.numel() * b.element_size() for b in bufs),
        dtype=str(dtype).replace("torch.", "") if dtype is not None else None,
    )
    if example_input is None:
        return summary

    if device is None:
        device = next((p.device for p in params), torch.device("cpu"))
    inputs = _example_tensors(example_input, dtype or torch.float32, device)
    summary.input_shape = _shapes_of(inputs if len(inputs) > 1 else inputs[0])
    shapes: dict[str, Any] = {}
    handles = []
    is_script = isinstance(module, torch.jit.ScriptModule)
    if not is_script:
        for name, sub in module.named_modules():
            def hook(_m: Any, _inp: Any, out: Any, _name: str = name) -> None:
                shapes[_name] = _shapes_of(out)
            handles.append(sub.register_forward_hook(hook))
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            out = module(*inputs)
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    summary.output_shape = _shapes_of(out)
    for r in rows:
        r.output_shape = shapes.get(r.name)
    if is_script and rows:
        rows[0].output_shape = summary.output_shape
    return summary


def _example_tensors(example: Any, dtype: Any, device: Any) -> tuple:
    import numpy as np
    import torch

    def one(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            t = x
        elif isinstance(x, np.ndarray):
            t = torch.from_numpy(x)
        else:
            raise TypeError(
                f"example_input must be a tensor, an array, a tuple of them or a shape; got "
                f"{type(x).__name__}"
            )
        if t.is_floating_point():
            t = t.to(dtype)
        return t.to(device)

    if isinstance(example, (tuple, list)) and example and all(isinstance(s, int) for s in example):
        return (torch.zeros(*example, dtype=dtype, device=device),)
    if isinstance(example, (tuple, list)):
        return tuple(one(x) for x in example)
    return (one(example),)


def summarize_onnx(model: Any, title: str = "ONNX model") -> ModelSummary:
    """Summarise an ``onnx.ModelProto``: one row per node, parameters from its initializers."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is best effort
        pass
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}

    def dims(vi: Any) -> list[Any]:
        t = vi.type.tensor_type
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                for d in t.shape.dim]

    value_shapes = {vi.name: dims(vi) for vi in list(graph.value_info) + list(graph.output)}
    used: set[str] = set()
    rows = [SummaryRow(name="", type="Graph", depth=0)]
    total = nbytes = 0
    for node in graph.node:
        own = [n for n in node.input if n in inits and n not in used]
        used.update(own)
        count = 0
        for n in own:
            arr = numpy_helper.to_array(inits[n])
            count += int(arr.size)
            nbytes += int(arr.nbytes)
        total += count
        outs = [value_shapes.get(o) for o in node.output if value_shapes.get(o) is not None]
        rows.append(SummaryRow(
            name=node.name or node.output[0], type=node.op_type, depth=1,
            output_shape=(outs[0] if len(outs) == 1 else (outs or None)),
            params=count, trainable=0,
        ))
    for name, init in inits.items():  # initializers no node reads (rare) still count
        if name not in used:
            arr = numpy_helper.to_array(init)
            total += int(arr.size)
            nbytes += int(arr.nbytes)
            rows[0].params += int(arr.size)
    first = next(iter(inits.values()), None)
    dtype = str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(first.data_type))) if first else None
    return ModelSummary(
        title=title, rows=rows, total_params=total, trainable_params=0, param_bytes=nbytes,
        input_shape=[dims(i) for i in graph.input if i.name not in inits],
        output_shape=[dims(o) for o in graph.output], dtype=dtype,
    )
