"""KServe Open Inference Protocol (V2) tensors: datatypes, JSON and binary codecs, checks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepseek.errors import DeepSeekError


class InferenceError(DeepSeekError):
    """A request the server must refuse; ``status`` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


V2_TO_NUMPY: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
    "BYTES": np.object_,
}
NUMPY_TO_V2 = {np.dtype(v).str: k for k, v in V2_TO_NUMPY.items() if k != "BYTES"}
TORCH_NAME_TO_V2 = {"float32": "FP32", "float16": "FP16", "float64": "FP64", "int64": "INT64",
                    "int32": "INT32", "int16": "INT16", "int8": "INT8", "uint8": "UINT8",
                    "bool": "BOOL", "bfloat16": "BF16"}


def v2_datatype(arr: np.ndarray) -> str:
    if arr.dtype == np.object_:
        return "BYTES"
    try:
        return NUMPY_TO_V2[arr.dtype.str]
    except KeyError:
        raise InferenceError(f"unsupported output dtype {arr.dtype}", 500) from None


@dataclass
class TensorSpec:
    name: str
    datatype: str
    shape: list[int]  # -1: any size (the first axis is the batch); []: any shape

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def check_shape(name: str, shape: Any) -> list[int]:
    ok = isinstance(shape, (list, tuple)) and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    if not ok:
        raise InferenceError(f"input '{name}': shape must be a list of non-negative integers, "
                             f"got {shape!r}")
    return [int(d) for d in shape]


def decode_bytes(buf: bytes, count: int, name: str) -> np.ndarray:
    """BYTES tensors: each element is a 4-byte little-endian length then the bytes."""
    out = np.empty(count, dtype=np.object_)
    pos = 0
    for i in range(count):
        if pos + 4 > len(buf):
            raise InferenceError(f"input '{name}': BYTES data ends after {i} of {count} elements")
        n = int.from_bytes(buf[pos:pos + 4], "little")
        pos += 4
        if pos + n > len(buf):
            raise InferenceError(f"input '{name}': BYTES element {i} is truncated")
        out[i] = buf[pos:pos + n]
        pos += n
    if pos != len(buf):
        raise InferenceError(f"input '{name}': {len(buf) - pos} bytes left after {count} "
                             "BYTES elements")
    return out


def encode_bytes(arr: np.ndarray) -> bytes:
    parts = []
    for v in arr.reshape(-1):
        b = v if isinstance(v, bytes) else str(v).encode()
        parts.append(len(b).to_bytes(4, "little") + b)
    return b"".join(parts)


def array_from_raw(name: str, datatype: str, shape: list[int], raw: bytes) -> np.ndarray:
    if datatype not in V2_TO_NUMPY:
        raise InferenceError(f"input '{name}': unsupported datatype {datatype!r}; use one of "
                             f"{', '.join(V2_TO_NUMPY)}")
    count = _numel(shape)
    if datatype == "BYTES":
        return decode_bytes(raw, count, name).reshape(shape)
    dtype = np.dtype(V2_TO_NUMPY[datatype]).newbyteorder("<")
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise InferenceError(f"input '{name}': {len(raw)} bytes of data for shape {shape} of "
                             f"{datatype} ({expected} bytes expected)")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def array_from_json(name: str, datatype: str, shape: list[int], data: Any) -> np.ndarray:
    if datatype not in V2_TO_NUMPY:
        raise InferenceError(f"input '{name}': unsupported datatype {datatype!r}; use one of "
                             f"{', '.join(V2_TO_NUMPY)}")
    if datatype == "BYTES":
        flat = np.array([d.encode() if isinstance(d, str) else d for d in _flatten(data)],
                        dtype=np.object_)
    else:
        try:
            flat = np.asarray(_flatten(data), dtype=V2_TO_NUMPY[datatype])
        except (TypeError, ValueError) as exc:
            raise InferenceError(f"input '{name}': data is not {datatype}: {exc}") from None
    if flat.size != _numel(shape):
        raise InferenceError(f"input '{name}': {flat.size} values for shape {shape} "
                             f"({_numel(shape)} expected)")
    return flat.reshape(shape)


def _flatten(data: Any) -> list:
    if not isinstance(data, list):
        raise InferenceError("'data' must be a (possibly nested) JSON list")
    out: list = []
    stack = [data]
    while stack:  # iterative, row-major
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def parse_rest_request(body: bytes, header_length: int | None) -> tuple[dict, bytes]:
    """Split a V2 REST body into the JSON header and the binary tail."""
    if header_length is None:
        json_part, tail = body, b""
    else:
        if header_length < 0 or header_length > len(body):
            raise InferenceError(f"Inference-Header-Content-Length is {header_length} but the "
                                 f"body has {len(body)} bytes")
        json_part, tail = body[:header_length], body[header_length:]
    try:
        req = json.loads(json_part)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InferenceError(f"malformed JSON in the request: {exc}") from None
    if not isinstance(req, dict) or not isinstance(req.get("inputs"), list):
        raise InferenceError("the request must be a JSON object with an 'inputs' list")
    return req, tail


def rest_inputs(req: dict, tail: bytes) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    pos = 0
    for i, t in enumerate(req["inputs"]):
        if not isinstance(t, dict) or "name" not in t or "datatype" not in t or "shape" not in t:
            raise InferenceError(f"inputs[{i}] needs 'name', 'datatype' and 'shape'")
        name = str(t["name"])
        shape = check_shape(name, t["shape"])
        params = t.get("parameters") or {}
        size = params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0:
                raise InferenceError(f"input '{name}': bad binary_data_size {size!r}")
            if pos + size > len(tail):
                raise InferenceError(f"input '{name}': binary data truncated: {size} bytes "
                                     f"announced, {len(tail) - pos} left in the body")
            arrays[name] = array_from_raw(name, t["datatype"], shape, tail[pos:pos + size])
            pos += size
        elif "data" in t:
            arrays[name] = array_from_json(name, t["datatype"], shape, t["data"])
        else:
            raise InferenceError(f"input '{name}': no 'data' and no binary_data_size")
        if name in arrays and list(arrays[name].shape) != shape:
            raise InferenceError(f"input '{name}': data does not fit shape {shape}")
    if pos != len(tail):
        raise InferenceError(f"{len(tail) - pos} bytes of binary data are not claimed by any "
                             "input's binary_data_size")
    return arrays


def validate_inputs(model: str, specs: list[TensorSpec], arrays: dict[str, np.ndarray],
                    datatypes: dict[str, str]) -> list[np.ndarray]:
    """Check names, datatypes and shapes against the model's inputs; return them in order."""
    known = {s.name for s in specs}
    unknown = [n for n in arrays if n not in known]
    if unknown:
        raise InferenceError(f"model '{model}' has no input {unknown[0]!r}; its inputs are "
                             f"{sorted(known)}")
    out = []
    for s in specs:
        if s.name not in arrays:
            raise InferenceError(f"model '{model}': input '{s.name}' is missing")
        a = arrays[s.name]
        if datatypes.get(s.name) != s.datatype:
            raise InferenceError(f"model '{model}': input '{s.name}' must be {s.datatype}, got "
                                 f"{datatypes.get(s.name)}")
        if s.shape and len(a.shape) != len(s.shape) or any(d != -1 and d != n for d, n in
                                               zip(s.shape, a.shape)):
            raise InferenceError(f"model '{model}': input '{s.name}' has shape {list(a.shape)}; "
                                 f"expected {s.shape} (-1: any size)")
        out.append(a)
    return out


def output_json(names: list[str], outs: list[np.ndarray], requested: list[dict] | None,
                binary_default: bool) -> tuple[dict[str, Any], list[bytes]]:
    """V2 response outputs; binary where asked (per output or ``binary_data_output``)."""
    want: dict[str, dict] = {}
    if requested:
        for r in requested:
            if not isinstance(r, dict) or "name" not in r:
                raise InferenceError("each requested output needs a 'name'")
            if r["name"] not in names:
                raise InferenceError(f"unknown output {r['name']!r}; the outputs are {names}")
            want[r["name"]] = r.get("parameters") or {}
    items, blobs = [], []
    for n, a in zip(names, outs):
        if requested and n not in want:
            continue
        binary = bool(want.get(n, {}).get("binary_data", binary_default))
        entry: dict[str, Any] = {"name": n, "datatype": v2_datatype(a), "shape": list(a.shape)}
        if binary:
            blob = encode_bytes(a) if a.dtype == np.object_ else \
                np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = [v.decode(errors="replace") if isinstance(v, bytes) else v
                             for v in a.reshape(-1).tolist()]
        items.append(entry)
    return {"outputs": items}, blobs


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
