"""KServe Open Inference Protocol (V2) tensors: datatypes, JSON and binary codecs, checks.

Everything a client sends is checked before anything is allocated for it: the structure of
the request (types of every field, duplicate names), each declared shape against the
element cap, and the data actually sent against the declared shape (byte counts of binary
tensors, the nesting of JSON data, the length prefixes of BYTES elements). A request that
claims ``shape: [10000000000]`` is refused in microseconds without an allocation.

JSON bodies are parsed by simdjson (``pysimdjson``): the request's structure becomes Python
objects, but each input's ``data`` stays in the parser and numeric tensors are copied from it
straight into an array (``as_buffer``), never through a list of Python numbers: a 60 MB
request costs about 4x its size instead of 20x, and the parse holds the interpreter lock for
tens of milliseconds instead of hundreds (health probes keep answering).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import simdjson

from deepseek.batching import run_size
from deepseek.errors import DeepSeekError

#: elements per input tensor (and per request) unless the server is told otherwise
DEFAULT_MAX_ELEMENTS = 1 << 24


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
    """The Open Inference Protocol datatype of a numpy array (``FP32``, ``BYTES``, ...).

    Raises:
        InferenceError: a dtype the protocol has no datatype for.
    """
    if arr.dtype == np.object_:
        return "BYTES"
    try:
        return NUMPY_TO_V2[arr.dtype.str]
    except KeyError:
        raise InferenceError(f"unsupported output dtype {arr.dtype}", 500) from None


@dataclass
class TensorSpec:
    """A tensor's name, Open Inference Protocol datatype and shape (-1: any size).

    ``multiple``: each axis's step where the model declares one (a free axis then takes
    positive multiples of it; checked on every request, not part of the protocol's
    metadata); ``example``: one concrete shape for timing the model; ``cell``: each axis's
    multiple the model pads the input up to itself (a photo graph pads to its 16-pixel
    cell) and ``cost`` the elements it runs per element of the padded input (a photo graph
    that enlarges a photo twice on each side runs four), so that the server counts a
    request's elements as the model runs them; ``follows``: per axis, ``None`` or
    ``(input, axis, step)``, the size that axis must have: the other input's axis in steps
    of ``step``, rounded up (a recurrent state's cells follow its frames' size);
    ``value_range``: the lowest and highest value the model takes (a 12-bit camera's
    words: 0 to 4095), checked on every request; ``decode``: the reader (of kind
    ``encoded``) that turns an encoded file sent as a BYTES element into one item of the
    input, so that the input takes such files as well as its own datatype."""
    name: str
    datatype: str
    shape: list[int]  # -1: any size (the first axis is the batch); []: any shape
    multiple: list[int] | None = None
    example: list[int] | None = None
    cell: list[int] | None = None
    cost: float = 1.0
    follows: list[tuple[str, int, int] | None] | None = None
    value_range: tuple[float, float] | None = None
    decode: str | None = None
    #: why an input that declares a reader takes no files here (the reader is not installed)
    decode_missing: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready metadata."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_shape(name: str, shape: Any, max_elements: int = DEFAULT_MAX_ELEMENTS) -> list[int]:
    """A declared shape: non-negative integers whose product is at most ``max_elements``."""
    ok = isinstance(shape, (list, tuple)) and len(shape) <= 32 and all(
        _is_int(d) and d >= 0 for d in shape)
    if not ok:
        raise InferenceError(f"input '{name}': shape must be a list of at most 32 non-negative "
                             f"integers, got {_short(shape)}")
    n = _numel(shape)
    if n > max_elements:
        raise InferenceError(f"input '{name}': shape {list(shape)} has {n} elements; this "
                             f"server takes at most {max_elements} per input", 413)
    return [int(d) for d in shape]


def check_datatype(name: str, datatype: Any) -> str:
    """Return ``datatype`` if the protocol knows it.

    Raises:
        InferenceError: naming the input and the datatypes it may use (400).
    """
    if not isinstance(datatype, str) or datatype not in V2_TO_NUMPY:
        raise InferenceError(f"input '{name}': unsupported datatype {_short(datatype)}; use one "
                             f"of {', '.join(V2_TO_NUMPY)}")
    return datatype


def _short(v: Any, n: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= n else text[:n] + "..."


def decode_bytes(buf: bytes, count: int, name: str) -> np.ndarray:
    """BYTES tensors: each element is a 4-byte little-endian length then the bytes."""
    if count * 4 > len(buf):  # before allocating: every element needs its 4-byte length
        raise InferenceError(f"input '{name}': {len(buf)} bytes cannot hold {count} BYTES "
                             "elements (each has a 4-byte length prefix)")
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
    """Encode a BYTES tensor: each element as a 4-byte little-endian length and its bytes."""
    parts = []
    for v in arr.reshape(-1):
        b = v if isinstance(v, bytes) else str(v).encode()
        parts.append(len(b).to_bytes(4, "little") + b)
    return b"".join(parts)


def array_from_raw(name: str, datatype: str, shape: list[int], raw: bytes) -> np.ndarray:
    """An input tensor from its binary contents (``raw_input_contents`` or a binary extension body).

    Raises:
        InferenceError: the size does not match the shape and datatype.
    """
    check_datatype(name, datatype)
    count = _numel(shape)
    if datatype == "BYTES":
        return decode_bytes(bytes(raw), count, name).reshape(shape)
    dtype = np.dtype(V2_TO_NUMPY[datatype]).newbyteorder("<")
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise InferenceError(f"input '{name}': {len(raw)} bytes of data for shape {shape} of "
                             f"{datatype} ({expected} bytes expected)")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def array_from_json(name: str, datatype: str, shape: list[int], data: Any) -> np.ndarray:
    """An input tensor from its JSON ``data`` (flat or nested).

    Raises:
        InferenceError: a wrong count of elements, or values that are not of the datatype.
    """
    check_datatype(name, datatype)
    if isinstance(data, simdjson.Array):
        fast = _from_parser(name, datatype, shape, data)
        if fast is not None:
            return fast
        data = data.as_list()  # BOOL, BYTES and bad data: the checks below say what is wrong
    flat = _flatten(name, data, shape)  # checked against the shape before any conversion
    if datatype == "BYTES":
        if not all(isinstance(d, (str, bytes)) for d in flat):
            raise InferenceError(f"input '{name}': BYTES data must be strings")
        arr = np.array([d.encode() if isinstance(d, str) else d for d in flat],
                       dtype=np.object_)
    else:
        arr = _numbers(name, datatype, flat)
    return arr.reshape(shape)


_AS_BUFFER = {"f": ("d", np.float64), "i": ("i", np.int64), "u": ("u", np.uint64)}


def _check_nesting(name: str, data: Any, shape: list[int]) -> None:
    """Nested data must have exactly ``shape``'s lengths at every level above the numbers
    (the arrays are visited, never the numbers)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    last = len(shape) - 1
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, simdjson.Array) or len(item) != shape[depth]:
            got = len(item) if isinstance(item, simdjson.Array) else "a scalar"
            raise InferenceError(f"input '{name}': nested data does not match shape {shape}: "
                                 f"{got} items at depth {depth}, {shape[depth]} expected")
        if depth < last:
            stack.extend((child, depth + 1) for child in item)


def _from_parser(name: str, datatype: str, shape: list[int], data: Any) -> np.ndarray | None:
    """A numeric tensor copied from the parser (no Python numbers), or None to take the
    checking path (BOOL, BYTES, or data that is not plain numbers of the right kind)."""
    want = np.dtype(V2_TO_NUMPY[datatype])
    if datatype in ("BOOL", "BYTES") or want.kind not in _AS_BUFFER:
        return None
    numel = _numel(shape)
    flat = len(data) == numel and (numel == 0 or not isinstance(data[0], simdjson.Array))
    if not flat:
        if not shape or not isinstance(data[0] if len(data) else None, simdjson.Array):
            raise InferenceError(f"input '{name}': {len(data)} values for shape {shape} "
                                 f"({numel} expected)")
        _check_nesting(name, data, shape)
    of_type, dtype = _AS_BUFFER[want.kind]
    try:
        values = np.frombuffer(data.as_buffer(of_type=of_type), dtype=dtype)
    except (TypeError, ValueError):
        if want.kind == "f":
            return None  # a bool, string or null among the numbers: the checks name it
        try:  # whole numbers written as 2.0 are integers too; the checks below decide
            values = np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64)
        except (TypeError, ValueError):
            return None
    if values.size != numel:
        raise InferenceError(f"input '{name}': nested data does not match shape {shape}: "
                             f"{values.size} values, {numel} expected")
    return cast_numbers(name, datatype, values).reshape(shape)


def cast_numbers(name: str, datatype: str, arr: np.ndarray) -> np.ndarray:
    """Numbers as ``datatype``, refusing what would change them: fractions or out-of-range
    values for integer types, finite values that overflow a float type."""
    want = np.dtype(V2_TO_NUMPY[datatype])
    if want.kind in "iu":
        if arr.dtype.kind == "f" and not np.array_equal(arr, np.trunc(arr)):
            raise InferenceError(f"input '{name}': {datatype} data must be whole numbers")
        info = np.iinfo(want)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise InferenceError(f"input '{name}': values outside the range of {datatype} "
                                 f"({info.min}..{info.max})")
        return arr.astype(want)
    with np.errstate(over="ignore"):  # overflow is detected below and refused
        out = arr.astype(want)
    if arr.size and not np.isfinite(out).all() and np.isfinite(arr).all():
        raise InferenceError(f"input '{name}': values too large for {datatype}")
    return out


def _numbers(name: str, datatype: str, flat: list) -> np.ndarray:
    """JSON numbers as ``datatype``, refusing what would change them: booleans or strings
    where numbers belong, fractions or out-of-range values for integer types, finite values
    that overflow a float type."""
    if datatype == "BOOL":
        if not all(type(d) is bool for d in flat):
            bad = next(d for d in flat if type(d) is not bool)
            raise InferenceError(f"input '{name}': data is not BOOL: {_short(bad)}")
        return np.array(flat, dtype=np.bool_)
    arr = np.array(flat) if flat else np.zeros(0)
    if arr.dtype.kind not in "iuf" or any(type(d) is bool for d in flat):
        bad = next((d for d in flat if type(d) is bool or not isinstance(d, (int, float))),
                   flat[0] if flat else None)
        raise InferenceError(f"input '{name}': data is not {datatype}: {_short(bad)}")
    return cast_numbers(name, datatype, arr)


def _flatten(name: str, data: Any, shape: list[int]) -> list:
    """The elements of ``data`` in row-major order. ``data`` is either flat (``numel``
    scalars) or nested exactly as ``shape`` says; ragged nesting is an error. Iterative, so
    deep nesting costs no Python recursion."""
    if not isinstance(data, list):
        raise InferenceError(f"input '{name}': 'data' must be a JSON list")
    numel = _numel(shape)
    if all(not isinstance(d, list) for d in data):
        if len(data) != numel:
            raise InferenceError(f"input '{name}': {len(data)} values for shape {shape} "
                                 f"({numel} expected)")
        return data
    out: list = []
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if depth < len(shape):
            if not isinstance(item, list) or len(item) != shape[depth]:
                got = len(item) if isinstance(item, list) else "a scalar"
                raise InferenceError(f"input '{name}': nested data does not match shape "
                                     f"{shape}: {got} items at depth {depth}, "
                                     f"{shape[depth]} expected")
            stack.extend((child, depth + 1) for child in reversed(item))
        else:
            if isinstance(item, list):
                raise InferenceError(f"input '{name}': nested data is deeper than shape "
                                     f"{shape}")
            out.append(item)
    return out


def parse_rest_request(body: bytes | bytearray, header_length: int | None
                       ) -> tuple[dict, bytes | memoryview]:
    """Split a V2 REST body into the JSON header and the binary tail (views of the body, no
    copies), and check the header's structure (:func:`check_request`)."""
    if header_length is None:
        json_part, tail = body, b""
    else:
        if header_length < 0 or header_length > len(body):
            raise InferenceError(f"Inference-Header-Content-Length is {header_length} but the "
                                 f"body has {len(body)} bytes")
        view = memoryview(body)
        json_part, tail = view[:header_length], view[header_length:]
    try:
        doc = simdjson.Parser().parse(json_part)  # nesting beyond 1024 levels: an error
    except (ValueError, RuntimeError) as exc:
        raise InferenceError(f"malformed JSON in the request: {exc}") from None
    req = _request_of(doc)
    check_request(req)
    return req, tail


def _plain(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


def _request_of(doc: Any) -> Any:
    """The request as Python objects, except each input's ``data``, which stays a parser
    array (:func:`array_from_json` copies numbers from it without Python objects)."""
    if not isinstance(doc, simdjson.Object):
        return _plain(doc)
    req = {k: _plain(doc[k]) for k in doc.keys() if k != "inputs"}
    if "inputs" in doc:
        inputs = doc["inputs"]
        if not isinstance(inputs, simdjson.Array):
            req["inputs"] = _plain(inputs)
            return req
        req["inputs"] = [
            {**{k: _plain(t[k]) for k in t.keys() if k != "data"},
             **({"data": t["data"]} if "data" in t else {})}
            if isinstance(t, simdjson.Object) else _plain(t) for t in inputs]
    return req


def _check_params(where: str, params: Any) -> dict:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InferenceError(f"{where}: 'parameters' must be a JSON object, got "
                             f"{_short(params)}")
    return params


#: what a BYTES input's ``content_type`` parameter may say over REST: ``str`` (the elements
#: as they are) or ``base64`` (each element base64 text, decoded to its bytes: how a JSON
#: body carries a file, as MLServer's codec of that name does)
BYTES_CONTENT_TYPES = ["str", "base64"]


def from_base64(name: str, arr: np.ndarray) -> np.ndarray:
    """A BYTES tensor whose elements are base64 text, decoded element by element.

    Raises:
        InferenceError: an element that is not base64 (naming it)."""
    out = np.empty(arr.shape, dtype=np.object_)
    flat, dst = arr.reshape(-1), out.reshape(-1)
    for i, v in enumerate(flat):
        try:
            dst[i] = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise InferenceError(f"input '{name}': element {i} is not base64 text ({exc}), "
                                 "which its content_type 'base64' says it is") from None
    return out


def check_request(req: Any) -> None:
    """The V2 request structure: every field of the right type, input names unique."""
    if not isinstance(req, dict):
        raise InferenceError("the request must be a JSON object with an 'inputs' list")
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InferenceError("the request needs a non-empty 'inputs' list")
    if "id" in req and not isinstance(req["id"], str):
        raise InferenceError(f"'id' must be a string, got {_short(req['id'])}")
    params = _check_params("request", req.get("parameters"))
    timeout = params.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout,
                                                                            (int, float))):
        raise InferenceError(f"parameter 'timeout' must be a number of microseconds, got "
                             f"{_short(timeout)}")
    seen: set[str] = set()
    for i, t in enumerate(inputs):
        if not isinstance(t, dict) or "name" not in t or "datatype" not in t or "shape" not in t:
            raise InferenceError(f"inputs[{i}] needs 'name', 'datatype' and 'shape'")
        name = t["name"]
        if not isinstance(name, str) or not name:
            raise InferenceError(f"inputs[{i}]: 'name' must be a non-empty string")
        if name in seen:
            raise InferenceError(f"input '{name}' appears twice in the request")
        seen.add(name)
        check_datatype(name, t["datatype"])
        params = _check_params(f"input '{name}'", t.get("parameters"))
        size = params.get("binary_data_size")
        if size is not None and (not _is_int(size) or size < 0):
            raise InferenceError(f"input '{name}': bad binary_data_size {_short(size)}")
        kind = params.get("content_type")
        if t["datatype"] == "BYTES" and kind is not None and kind not in BYTES_CONTENT_TYPES:
            raise InferenceError(f"input '{name}': content_type {_short(kind)} is not one "
                                 f"this server reads BYTES as; use {BYTES_CONTENT_TYPES}")
    outputs = req.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list):
            raise InferenceError(f"'outputs' must be a list, got {_short(outputs)}")
        for i, o in enumerate(outputs):
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise InferenceError(f"outputs[{i}] must be an object with a string 'name'")
            _check_params(f"output '{o['name']}'", o.get("parameters"))


def rest_inputs(req: dict, tail: bytes, max_elements: int = DEFAULT_MAX_ELEMENTS
                ) -> dict[str, np.ndarray]:
    """The input arrays of a checked request (:func:`parse_rest_request`): every declared
    shape is capped and compared with the data actually sent before any array is built."""
    arrays: dict[str, np.ndarray] = {}
    total = 0
    for t in req["inputs"]:
        name = t["name"]
        shape = check_shape(name, t["shape"], max_elements)
        total += _numel(shape)
        if total > max_elements:
            raise InferenceError(f"the request's inputs hold {total} elements; this server "
                                 f"takes at most {max_elements} per request", 413)
    pos = 0
    for t in req["inputs"]:
        name, shape = t["name"], [int(d) for d in t["shape"]]
        size = (t.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if pos + size > len(tail):
                raise InferenceError(f"input '{name}': binary data truncated: {size} bytes "
                                     f"announced, {len(tail) - pos} left in the body")
            arrays[name] = array_from_raw(name, t["datatype"], shape, tail[pos:pos + size])
            pos += size
        elif "data" in t:
            arrays[name] = array_from_json(name, t["datatype"], shape, t["data"])
        else:
            raise InferenceError(f"input '{name}': no 'data' and no binary_data_size")
        if t["datatype"] == "BYTES" and (t.get("parameters") or {}).get(
                "content_type") == "base64":
            arrays[name] = from_base64(name, arrays[name])
    if pos != len(tail):
        raise InferenceError(f"{len(tail) - pos} bytes of binary data are not claimed by any "
                             "input's binary_data_size")
    return arrays


def validate_inputs(model: str, specs: list[TensorSpec], arrays: dict[str, np.ndarray],
                    datatypes: dict[str, str], max_elements: int | None = None
                    ) -> list[np.ndarray]:
    """Check names, datatypes and shapes against the model's inputs; return them in order.
    ``max_elements``: the server's cap, checked here on an input whose model pads it
    (:attr:`TensorSpec.cell`) or runs more elements than it is sent (:attr:`TensorSpec.cost`)
    as the model runs it (413 past it): a 1 x 1 photo sent a million times over is a
    million 16 x 16 photos to the model."""
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
            files = " (or BYTES: one encoded file per item)" if s.decode else ""
            why = (f" (no files here: {s.decode_missing})"
                   if s.decode_missing and datatypes.get(s.name) == "BYTES" else "")
            raise InferenceError(f"model '{model}': input '{s.name}' must be "
                                 f"{s.datatype}{files}, got {datatypes.get(s.name)}{why}")
        if s.shape and len(a.shape) != len(s.shape) or any(d != -1 and d != n for d, n in
                                               zip(s.shape, a.shape)):
            raise InferenceError(f"model '{model}': input '{s.name}' has shape {list(a.shape)}; "
                                 f"expected {s.shape} (-1: any size)")
        empty = [axis for axis, n in enumerate(a.shape) if n == 0]
        if empty:  # nothing to infer; onnxruntime aborts the process on some (a conv's batch)
            raise InferenceError(f"model '{model}': input '{s.name}' has shape "
                                 f"{list(a.shape)}; axis {empty[0]} is empty; send at least "
                                 "one item along it")
        off = [(axis, n, m) for axis, (n, m) in enumerate(zip(a.shape, s.multiple or []))
               if axis and (n < m or n % m)]  # the batch axis goes by the batcher's rules
        if off:
            axis, n, m = off[0]
            head = f"model '{model}': input '{s.name}' has shape {list(a.shape)}; axis {axis}"
            raise InferenceError(
                f"{head} must be a positive multiple of {m} (past the batch axis the model's "
                f"sizes go in steps of {list(s.multiple or [])}): pad it to "
                f"{max(m, -(-n // m) * m)}, e.g. with its edge values, or crop it")
        if a.ndim == 0:
            raise InferenceError(f"model '{model}': input '{s.name}' needs a batch axis; got a "
                                 "scalar")
        if s.value_range is not None and a.dtype.kind in "biuf":
            low, high = a.min(), a.max()
            if not (s.value_range[0] <= low and high <= s.value_range[1]):  # NaN fails too
                raise InferenceError(
                    f"model '{model}': input '{s.name}' holds values from {low} to {high}; the "
                    f"model takes {s.value_range[0]:g} to {s.value_range[1]:g}: send values in "
                    "that range (the model's declared range; nothing is clipped)")
        cell = s.cell if s.cell and len(s.cell) == a.ndim else None
        if (cell or s.cost != 1) and max_elements is not None:
            run = run_size(a.shape, cell, s.cost)
            if run > max_elements:
                how = [f"each axis padded to a multiple of {list(cell)}"] if cell else []
                how += [f"{s.cost:g} elements run per element"] if s.cost != 1 else []
                raise InferenceError(
                    f"model '{model}': input '{s.name}' of shape {list(a.shape)} is "
                    f"{run} elements as the model runs it ({'; '.join(how)}); this server "
                    f"takes at most {max_elements} per input: send fewer or smaller images "
                    "per request" + (f" (sides at multiples of {list(cell)[1:]} run no "
                                     "padding)" if cell else ""), 413)
        out.append(a)
    _check_follows(model, specs, arrays)
    return out


def _check_follows(model: str, specs: list[TensorSpec], arrays: dict[str, np.ndarray]) -> None:
    """Each axis an input declares to follow another input's axis has the size it gives
    (a 400 naming both before the model runs, not the graph's node that fails on it)."""
    for s in specs:
        for axis, f in enumerate(s.follows or []):
            a = arrays[s.name]
            if f is None or axis >= a.ndim or f[1] >= arrays[f[0]].ndim:
                continue
            n = int(arrays[f[0]].shape[f[1]])
            want = -(-n // f[2])
            if a.shape[axis] != want:
                cells = f" in steps of {f[2]}" if f[2] > 1 else ""
                raise InferenceError(
                    f"model '{model}': input '{s.name}' has shape {list(a.shape)}; its axis "
                    f"{axis} follows input '{f[0]}' axis {f[1]} ({n}{cells}) and must be "
                    f"{want}: size '{s.name}' to the '{f[0]}' it is sent with")


def output_json(names: list[str], outs: list[np.ndarray], requested: list[dict] | None,
                binary_default: bool) -> tuple[dict[str, Any], list[bytes]]:
    """V2 response outputs; binary where asked (per output or ``binary_data_output``)."""
    want: dict[str, dict] = {}
    if requested:
        for r in requested:
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
    """Compact JSON (non-finite floats, which JSON cannot hold, become null)."""
    return orjson.dumps(obj)
