"""A model as the server sees it: loaded through ModelLoader, with V2 tensor metadata."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.errors import ModelLoadError
from deepseek.loader import LoadedModel, ModelLoader, axis_steps
from deepseek.serving.protocol import (
    TORCH_NAME_TO_V2,
    V2_TO_NUMPY,
    InferenceError,
    TensorSpec,
    v2_datatype,
)

log = logging.getLogger(__name__)

#: the kind of reader that decodes an encoded file a request sends (:data:`TensorSpec.decode`)
ENCODED_KIND = "encoded"
PLATFORMS = {"pytorch": "pytorch_libtorch", "torchscript": "pytorch_libtorch",
             "onnx": "onnxruntime_onnx"}
#: onnxruntime's tensor types and the protocol's datatypes (strings are BYTES)
_ORT_TO_V2 = {"tensor(float)": "FP32", "tensor(float16)": "FP16", "tensor(double)": "FP64",
              "tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(int16)": "INT16",
              "tensor(int8)": "INT8", "tensor(uint64)": "UINT64", "tensor(uint32)": "UINT32",
              "tensor(uint16)": "UINT16", "tensor(uint8)": "UINT8", "tensor(bool)": "BOOL",
              "tensor(string)": "BYTES"}


def _zeros(shape: list[int], datatype: str) -> np.ndarray:
    """A sample of ``datatype``: zeros, or empty strings for BYTES."""
    if datatype == "BYTES":
        return np.full(shape, "", dtype=object)
    return np.zeros(shape, dtype=V2_TO_NUMPY.get(datatype, np.float32))


def _ort_datatype(where: str, name: str, kind: str) -> str:
    """The protocol's datatype of an onnxruntime input or output type.

    Raises:
        ModelLoadError: a type the protocol (or numpy) has no datatype for (bfloat16, a
            sequence or map): naming the model, the tensor and its type."""
    if kind not in _ORT_TO_V2:
        raise ModelLoadError(f"{where}: {name!r} is {kind}, which the Open Inference Protocol "
                             "server cannot carry (it serves "
                             f"{', '.join(sorted(set(_ORT_TO_V2.values())))}); export the "
                             "model with another type there")
    return _ORT_TO_V2[kind]


def _missing_decoder(where: str, name: str, reader: str) -> str | None:
    """None when the reader ``reader`` an input declares to decode its files with is
    registered, of kind ``encoded``; else why not, naming the file, the input, the readers
    there are and the fix. The model is served all the same: its input still takes its own
    datatype (an image with only the core installed serves a photo decision's pixels)."""
    from deepseek.plugins import readers

    reg = readers()
    if reader in reg and reg.entry(reader).meta.get("kind") == ENCODED_KIND:
        return None
    there = sorted(e.name for e in reg.entries() if e.meta.get("kind") == ENCODED_KIND)
    return (f"{where}: input {name!r} takes encoded files through reader {reader!r}, which no "
            f"installed plugin registers as a reader of kind {ENCODED_KIND!r} (there are: "
            f"{', '.join(there) or 'none'}); install the plugin that wrote the model to take "
            "files (deepseek plugins lists what is installed)")


def _file_of(source: Any) -> tuple[Path, str] | None:
    """The file a model source names (a path; a registered name's packaged weights) and its
    SHA-256 now, or None (a module, a name without a file)."""
    from deepseek.loader.base import file_sha256

    if isinstance(source, (str, Path)) and Path(source).is_file():
        path = Path(source)
    elif isinstance(source, str):
        from deepseek.errors import DeepSeekError
        from deepseek.plugins import models

        try:
            weights = models().entry(source).meta.get("weights")
        except DeepSeekError:  # a zoo name or another kind of source: no file of its own
            return None
        if not weights or not Path(weights).is_file():
            return None
        path = Path(weights)
    else:
        return None
    return path, file_sha256(path)


def _served_sha256(source: Any, loaded: LoadedModel, before: tuple[Path, str] | None
                   ) -> str | None:
    """The SHA-256 of the file ``loaded`` came from (``before``: the file and its digest
    taken before it was loaded; a packaged export loaded instead of its weights: that
    export's), checked unchanged by the loading, so that a file replaced meanwhile is never
    named for the model loaded.

    Raises:
        ModelLoadError: the file changed while it was loaded.
    """
    from deepseek.loader.base import file_sha256

    onnx = loaded.onnx_path
    if before is None or (onnx is not None and Path(onnx) != before[0]):
        return file_sha256(onnx) if onnx is not None and Path(onnx).is_file() else None
    if file_sha256(before[0]) != before[1]:
        raise ModelLoadError(f"{before[0]}: the file changed while it was loaded (being "
                             "written?); serve it once it is written")
    return before[1]


class ServedModel:
    """Wraps a :class:`LoadedModel`: input/output specs, batching policy, batched call.

    ``batching``: ``{"policy": "bucket"}`` (default) or ``{"policy": "pad", "pad_axes":
    [1], "pad_value": 0}``; registry models may declare it with their ``inputs``.
    """

    def __init__(self, name: str, source: Any, *, framework: str = "auto",
                 precision: str = "fp32", device: str = "auto", trust_pickle: bool = False,
                 batching: dict[str, Any] | None = None, threads: int | None = None,
                 allow_untrained: bool = False) -> None:
        self.name = name
        self.source = str(source) if not hasattr(source, "forward") else type(source).__name__
        before = _file_of(source)
        self.model: LoadedModel = source if isinstance(source, LoadedModel) else \
            ModelLoader.load(source, framework=framework, precision=precision, device=device,
                             trust_pickle=trust_pickle, onnx_threads=threads)
        #: what each answer names as the model that made it (:meth:`identity`)
        self.sha256 = _served_sha256(source, self.model, before)
        self._identity: dict[str, str] | None = None
        if self.model.trained is False and not allow_untrained:
            raise ModelLoadError(
                f"model {name!r} ({self.source}) has no trained weights: it was built with "
                "random weights (registered without weights, or a zoo model without local "
                "weights), so it would answer nonsense. Serve trained weights (a model file, "
                "weights=, pretrained=True), or pass --allow-untrained (allow_untrained=True) "
                "to serve it anyway")
        self.platform = PLATFORMS.get(self.model.framework, self.model.framework)
        self.version = "1"
        meta_batching = None
        self._declared_outputs: list[str] | None = None
        if self.model.architecture:
            from deepseek.plugins import models

            reg = models()
            if self.model.architecture in reg:
                meta = reg.entry(self.model.architecture).meta
                meta_batching = meta.get("batching")
                self._declared_outputs = list(meta["outputs"]) if meta.get("outputs") else None
        self.batching = dict(batching or meta_batching or {"policy": "bucket"})
        self.inputs = self._input_specs()
        self.outputs = self._output_specs()

    # specs --------------------------------------------------------------------------------
    def _input_specs(self) -> list[TensorSpec]:
        m = self.model
        if m.session is not None:
            from deepseek.loader import declared_onnx_inputs

            where = str(getattr(m, "onnx_path", None) or f"model {self.name!r}")
            declared = declared_onnx_inputs(m.session, where)
            specs = []
            for i in m.session.get_inputs():
                d = declared.get(i.name, {})
                why = d.get("decode") and _missing_decoder(where, i.name, d["decode"])
                if why:
                    log.warning("%s; serving its %s without files", why, i.name)
                specs.append(TensorSpec(
                    i.name, _ort_datatype(where, i.name, i.type),
                    [n if isinstance(n, int) else -1 for n in i.shape], d.get("multiple"),
                    d.get("example"), d.get("cell"), d.get("cost", 1.0), d.get("follows"),
                    d.get("range"), None if why else d.get("decode"), why or None))
            return specs
        if m.inputs:
            return [TensorSpec(i["name"], TORCH_NAME_TO_V2.get(i.get("dtype", "float32"), "FP32"),
                               [int(d) for d in i["shape"]],
                               axis_steps(i) if i.get("multiple") else None,
                               [int(d) for d in i["example"]] if i.get("example") else None)
                    for i in m.inputs]
        log.info("model %s declares no inputs; accepting one FP32 input 'input' of any shape",
                 self.name)
        return [TensorSpec("input", "FP32", [])]  # [] = any shape

    def _output_specs(self) -> list[TensorSpec]:
        m = self.model
        if m.session is not None:
            where = str(getattr(m, "onnx_path", None) or f"model {self.name!r}")
            return [TensorSpec(o.name, _ort_datatype(where, o.name, o.type),
                               [d if isinstance(d, int) else -1 for d in o.shape])
                    for o in m.session.get_outputs()]
        if not all(s.shape for s in self.inputs):
            return [TensorSpec("output", "FP32", [])]
        runs, keys = [], None
        for free in (2, 3):  # dims that follow the free input sizes are free outputs too
            probe = []
            for s in self.inputs:
                steps = s.multiple or [1] * len(s.shape)
                shape = [free * k if d == -1 else d for d, k in zip(s.shape, steps)]
                probe.append(_zeros(shape, s.datatype))
            out = m(*probe)
            keys = self._keys(out)
            runs.append(self._as_list(out))
        names = keys or (["output"] if len(runs[0]) == 1
                         else [f"output{i}" for i in range(len(runs[0]))])
        declared = self._declared_outputs
        if declared is not None and len(declared) == len(names):
            names = declared
        elif declared is not None:
            log.warning("model %s: its registration names %d outputs (%s), it returns %d; "
                        "serving them as %s", self.name, len(declared), ", ".join(declared),
                        len(names), ", ".join(names))
        return [TensorSpec(n, v2_datatype(a), [-1] + [-1 if da != db else int(da)
                                                      for da, db in zip(a.shape[1:], b.shape[1:])])
                for n, a, b in zip(names, runs[0], runs[1])]

    @staticmethod
    def _keys(out: Any) -> list[str] | None:
        """The output names a model's dict of arrays gives (as its ONNX export names them),
        else None (a tensor, a tuple, a nested dict: named by position)."""
        if isinstance(out, dict) and out and all(
                isinstance(k, str) and not isinstance(v, (list, tuple, dict))
                for k, v in out.items()):
            return list(out)
        return None

    @staticmethod
    def _as_list(out: Any) -> list[np.ndarray]:
        """Model outputs as a flat list of arrays (nested tuples, such as a recurrent
        model's returned state, are flattened in order)."""
        if isinstance(out, (list, tuple)):
            flat: list[np.ndarray] = []
            for o in out:
                flat.extend(ServedModel._as_list(o) if isinstance(o, (list, tuple, dict))
                            else [np.asarray(o)])
            return flat
        if isinstance(out, dict):
            return [np.asarray(v) for v in out.values()]
        return [np.asarray(out)]

    @property
    def fixed_batch(self) -> bool:
        """Whether an input's first (batch) axis has a fixed size, as in an ONNX file
        exported for batch 1: such a model's requests are never joined into one run."""
        return any(s.shape and s.shape[0] != -1 for s in self.inputs)

    def example_inputs(self) -> list[np.ndarray] | None:
        """One sample of every input (zeros), for timing the model: the example shape the
        model declares, else batch 1 and every free dimension at its step (1 where none is
        declared); None when an input's shape is not declared."""
        if not self.inputs or any(not s.shape for s in self.inputs):
            return None

        def one(s: TensorSpec) -> list[int]:
            if s.example:
                return [1, *s.example[1:]]
            return [k if d == -1 else d for d, k in zip(s.shape, s.multiple or [1] * len(s.shape))]

        return [_zeros(one(s), s.datatype) for s in self.inputs]

    def identity(self) -> dict[str, str]:
        """The parameters each answer carries naming the model that made it: ``model_sha256``,
        the SHA-256 of the file served (a registered name's packaged weights or export), and
        ``weights_sha256``, the weights an ONNX export records it was made from (what a
        plugin's own commands name as the model, e.g. ``deepseek manufacturing score``).
        Empty for a model with no file (a module handed in)."""
        if self._identity is None:
            out = {"model_sha256": self.sha256} if self.sha256 else {}
            if self.model.session is not None:
                from deepseek.loader import SOURCE_META_KEY

                recorded = self.model.session.get_modelmeta().custom_metadata_map.get(
                    SOURCE_META_KEY)
                if recorded:
                    out["weights_sha256"] = recorded
            self._identity = out
        return self._identity

    def metadata(self) -> dict[str, Any]:
        """The Open Inference Protocol metadata of the model (inputs, outputs, platform)."""
        def shape(s: TensorSpec) -> list[int]:
            return s.shape if s.shape else [-1]

        return {
            "name": self.name, "versions": [self.version], "platform": self.platform,
            "inputs": [{"name": s.name, "datatype": s.datatype, "shape": shape(s)}
                       for s in self.inputs],
            "outputs": [{"name": s.name, "datatype": s.datatype, "shape": shape(s)}
                        for s in self.outputs],
        }

    # running --------------------------------------------------------------------------------
    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Run the model on arrays in input order; returns one array per output.

        Raises:
            InferenceError: the model returned another number of outputs than its metadata says
                (500); a BYTES element for an ONNX string tensor that is not UTF-8 text (400).
        """
        if self.model.session is not None:  # ONNX strings are text: bytes decoded, not str()'d
            arrays = [self._text(a, s.name) if s.datatype == "BYTES" else a
                      for a, s in zip(arrays, self.inputs)]
        outs = self._as_list(self.model(*arrays))
        if len(outs) != len(self.outputs) and self.outputs and self.outputs[0].shape:
            raise InferenceError(f"model '{self.name}' returned {len(outs)} outputs, its "
                                 f"metadata says {len(self.outputs)}", 500)
        return outs

    @staticmethod
    def _text(arr: np.ndarray, name: str) -> np.ndarray:
        """A BYTES tensor as the UTF-8 text an ONNX string tensor holds (onnxruntime would
        read ``b'ab'`` as the five characters ``b'ab'``)."""
        out = np.empty(arr.shape, dtype=object)
        flat, dst = arr.reshape(-1), out.reshape(-1)
        for i, v in enumerate(flat):
            try:
                dst[i] = v.decode("utf-8") if isinstance(v, (bytes, bytearray)) else str(v)
            except UnicodeDecodeError as exc:
                raise InferenceError(f"input '{name}': BYTES element {i} is not UTF-8 text "
                                     f"({exc.reason} at byte {exc.start}), which the model's "
                                     "string tensor holds") from None
        return out

    def output_names(self, n: int) -> list[str]:
        """Names for ``n`` outputs: the declared ones, else ``output`` / ``output0``...."""
        if len(self.outputs) == n:
            return [s.name for s in self.outputs]
        return ["output"] if n == 1 else [f"output{i}" for i in range(n)]


def default_name(source: Any) -> str:
    """The name a source is served under: a file's stem, a folder's name, else the text."""
    p = Path(str(source))
    if p.exists():
        return p.name.split(".")[0] if p.is_file() else p.name
    return str(source)
