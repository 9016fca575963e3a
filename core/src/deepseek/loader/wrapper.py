"""The loaded model: :class:`LoadedModel`, callable with numpy arrays or torch tensors, with
``summary()``; and :func:`wrap_module`, which puts a torch module on its device and precision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepseek.errors import PrecisionError
from deepseek.loader.base import PRECISIONS, LoadOptions, check_precision, torch
from deepseek.summary import ModelSummary, summarize_module, summarize_onnx


def wrap_module(module: Any, framework: str, opts: LoadOptions, *, source: str,
                architecture: str | None = None, config: dict[str, Any] | None = None,
                inputs: list[dict[str, Any]] | None = None,
                trained: bool | None = True) -> LoadedModel:
    """``module`` moved to ``opts``' device and precision, in eval mode, wrapped."""
    check_precision(opts.device, opts.dtype)
    module = module.to(device=opts.device)
    if opts.dtype != torch.float32:
        module = module.to(dtype=opts.dtype)
    module.eval()
    return LoadedModel(framework=framework, precision=opts.precision, device=opts.device,
                       source=source, module=module, architecture=architecture, config=config,
                       inputs=inputs, trained=trained)


class LoadedModel:
    """A loaded model: callable, with ``summary()``.

    Attributes: ``framework`` (pytorch/torchscript/onnx), ``precision``, ``device``,
    ``source`` (registry name or path), ``module`` (torch) or ``session`` (onnxruntime),
    ``architecture`` and ``config`` when known, ``inputs`` (tensor descriptions when the
    registry declares them), ``trained``: False for a model built with random weights (a
    registry model without weights, a zoo model without ``pretrained=True``), True for
    trained weights, None when unknown (a module handed in).
    """

    def __init__(self, *, framework: str, precision: str, device: Any, source: str,
                 module: Any = None, session: Any = None,
                 onnx_model: Any = None, architecture: str | None = None,
                 config: dict[str, Any] | None = None,
                 inputs: list[dict[str, Any]] | None = None,
                 trained: bool | None = True) -> None:
        self.framework = framework
        self.precision = precision
        self.dtype = getattr(torch, PRECISIONS[precision]) if torch is not None else None
        self.device = device
        self.source = source
        self.module = module
        self.session = session
        self._onnx_model = onnx_model
        self.onnx_path: Path | None = None
        self.architecture = architecture
        self.config = config or {}
        self.inputs = inputs
        self.trained = trained

    @property
    def onnx_model(self) -> Any:
        """The ``onnx.ModelProto`` of an ONNX model (read on first use; needs the ``onnx``
        extra), ``None`` for a torch model."""
        if self._onnx_model is None and self.onnx_path is not None:
            from deepseek.extras import require

            require("onnx", "inspecting an ONNX graph")
            import onnx

            self._onnx_model = onnx.load(str(self.onnx_path))
        return self._onnx_model

    def __repr__(self) -> str:
        return (f"LoadedModel({self.source!r}, framework={self.framework!r}, "
                f"precision={self.precision!r}, device='{self.device}')")

    # calling ---------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the model: numpy arrays in give numpy arrays out, tensors give tensors; on ONNX
        Runtime when loaded from an ONNX file.
        """
        if self.session is not None:
            return self._call_onnx(*args, **kwargs)
        as_numpy = any(isinstance(a, np.ndarray) for a in list(args) + list(kwargs.values()))
        targs = [self._to_tensor(a) for a in args]
        tkw = {k: self._to_tensor(v) for k, v in kwargs.items()}
        try:
            with torch.inference_mode():
                out = self.module(*targs, **tkw)
        except RuntimeError as exc:
            if self.precision != "fp32" and "not implemented for" in str(exc):
                raise PrecisionError(
                    f"{self.source}: an operator has no {self.precision} kernel on "
                    f"{self.device}: {exc}; load with precision='fp32'") from exc
            raise
        return _to_numpy(out) if as_numpy else out

    def _to_tensor(self, x: Any) -> Any:
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        if isinstance(x, torch.Tensor):
            if x.is_floating_point() and x.dtype != self.dtype:
                x = x.to(self.dtype)
            return x.to(self.device)
        return x

    def _call_onnx(self, *args: Any, **kwargs: Any) -> Any:
        as_torch = torch is not None and any(isinstance(a, torch.Tensor)
                                             for a in list(args) + list(kwargs.values()))
        metas = self.session.get_inputs()
        if len(args) > len(metas):
            raise TypeError(f"{self.source}: model takes {len(metas)} inputs, got {len(args)}")
        feed: dict[str, np.ndarray] = {}
        by_name = {m.name: m for m in metas}
        pairs = list(zip(metas, args)) + [(by_name.get(k), v) for k, v in kwargs.items()]
        for meta, value in pairs:
            if meta is None:
                raise TypeError(f"{self.source}: unknown input name; the model's inputs are "
                                f"{[m.name for m in metas]}")
            arr = value.detach().cpu().numpy() if as_torch and isinstance(value, torch.Tensor) \
                else np.asarray(value)
            want = _ORT_TYPES.get(meta.type)
            if want is not None and arr.dtype != want:
                arr = arr.astype(want)
            feed[meta.name] = arr
        outs = self.session.run(None, feed)
        if as_torch:
            outs = [torch.from_numpy(o) for o in outs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    # introspection ---------------------------------------------------------------------
    def summary(self, example_input: Any = None) -> ModelSummary:
        """Layer table (name, type, output shape with ``example_input``, params), totals, MB."""
        title = f"{self.source} [{self.framework}, {self.precision}, {self.device}]"
        if self.session is not None:
            return summarize_onnx(self.onnx_model, title=title)
        return summarize_module(self.module, example_input, title=title, device=self.device)

    def num_parameters(self) -> int:
        """Number of parameters (shared ones counted once)."""
        if self.module is not None:
            return sum(p.numel() for p in {id(p): p for p in self.module.parameters()}.values())
        return self.summary().total_params


_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(uint8)": np.uint8,
}


def _to_numpy(out: Any) -> Any:
    if torch is not None and isinstance(out, torch.Tensor):
        t = out.detach().cpu()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.numpy()
    if isinstance(out, (list, tuple)):
        return type(out)(_to_numpy(o) for o in out)
    if isinstance(out, dict):
        return {k: _to_numpy(v) for k, v in out.items()}
    return out
