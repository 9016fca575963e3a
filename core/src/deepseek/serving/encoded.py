"""Encoded files in a request: an input that declares a reader of kind ``encoded``
(:attr:`~deepseek.serving.protocol.TensorSpec.decode`, an ONNX file's ``decode``) takes one
file per item, sent as a BYTES element, beside its own datatype (a photo decision takes the
camera's JPEG as well as its pixels).

The reader is called as ``reader(data, dtype=, max_pixels=, reserve=, where=)`` and returns
one item of the input (the input's shape past its batch axis, of ``dtype``): it reads the
file's header first, refuses a file of more than ``max_pixels`` pixels with
:class:`~deepseek.errors.InputTooLargeError` (413) and calls ``reserve(nbytes)`` with what
decoding will hold before it decodes, so that a small file that says it is a huge picture
is refused before any of it is allocated, and the decoded pixels count against the server's
memory budget (503 when the requests in flight leave too little room)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from deepseek.errors import DeepSeekError, InputTooLargeError
from deepseek.serving.limits import MemoryBudget, Reservation
from deepseek.serving.protocol import V2_TO_NUMPY, InferenceError, TensorSpec

log = logging.getLogger(__name__)

BINARY_HOW = ("send the file's bytes as binary data (the binary tensor extension over REST, "
              "tritonclient.http's binary_data=True, or gRPC), or as base64 text with the "
              "input's parameter content_type 'base64'")


def sends_files(specs: list[TensorSpec], datatypes: dict[str, str]) -> bool:
    """Whether a request sends encoded files to an input that decodes them."""
    return any(s.decode and datatypes.get(s.name) == "BYTES" for s in specs)


def decode_files(model: str, specs: list[TensorSpec], arrays: dict[str, np.ndarray],
                 datatypes: dict[str, str], memory: MemoryBudget, max_elements: int
                 ) -> tuple[dict[str, np.ndarray], dict[str, str], list[Reservation]]:
    """``arrays`` and ``datatypes`` (new dicts) with each input that declares a reader and was
    sent as BYTES ``[N]`` decoded, item by item, into the input's datatype; and the memory
    reservations the decoded pixels hold, which the caller releases when the request is
    answered.

    Raises:
        InferenceError: 400 for a file the reader refuses (its message, naming the item), a
            BYTES tensor of another shape than ``[N]``, text instead of bytes, or items of
            different sizes; 413 for files past ``max_elements`` pixels together or the
            per-request memory; 503 when the budget is taken; 500 when the reader fails on
            its own."""
    from deepseek.plugins import readers

    arrays, datatypes = dict(arrays), dict(datatypes)
    held: list[Reservation] = []
    try:
        for s in specs:
            if not s.decode or datatypes.get(s.name) != "BYTES" or s.name not in arrays:
                continue
            files = arrays[s.name]
            head = f"model '{model}': input '{s.name}'"
            if files.ndim != 1 or files.size == 0:
                raise InferenceError(f"{head} sent as BYTES has shape {list(files.shape)}; "
                                     "send [N], one encoded file per item")
            entry = readers().entry(s.decode)
            dtype = np.dtype(V2_TO_NUMPY[s.datatype])
            items: list[np.ndarray] = []
            left = int(max_elements)  # the input's pixels together stay within the cap
            for i, data in enumerate(files):
                items.append(_one(head, s, entry, i, data, dtype, memory, left, held))
                left -= items[-1].size
            sizes = {item.shape for item in items}
            if len(sizes) > 1:
                raise InferenceError(
                    f"{head}: the files decode to different sizes (item 0 {list(items[0].shape)}"
                    f", item {next(i for i, a in enumerate(items) if a.shape != items[0].shape)}"
                    f" {list(next(a.shape for a in items if a.shape != items[0].shape))}); "
                    "the items of one request are one tensor: send each size in a request "
                    "of its own")
            arrays[s.name] = items[0][None] if len(items) == 1 else np.stack(items)
            datatypes[s.name] = s.datatype
    except BaseException:
        for h in held:
            h.release()
        raise
    return arrays, datatypes, held


def release_decoded(job: Any) -> None:
    """A done callback for a finished :func:`decode_files` job (a future) whose request was
    given up before it ended: the memory its decoded pixels reserved is given back (a job
    that raised has given its own back)."""
    if job.cancelled() or job.exception() is not None:
        return
    for h in job.result()[2]:
        h.release()


def _one(head: str, spec: TensorSpec, entry: Any, i: int, data: Any, dtype: np.dtype,
         memory: MemoryBudget, max_pixels: int, held: list[Reservation]) -> np.ndarray:
    """Item ``i`` decoded by reader ``entry``, of at most ``max_pixels`` pixels (what the
    cap leaves after the request's earlier items)."""
    where = f"{head} item {i}"
    if not isinstance(data, (bytes, bytearray)):
        raise InferenceError(f"{where} is {type(data).__name__}, not a file's bytes; "
                             f"{BINARY_HOW}")

    def reserve(nbytes: int) -> None:
        held.append(memory.reserve(nbytes, f"{where} decoded"))

    who = f"reader {entry.name} ({entry.plugin or 'core'})"
    try:
        item = entry.obj(bytes(data), dtype=dtype, max_pixels=max(0, max_pixels),
                         reserve=reserve, where=where)
    except InferenceError:
        raise
    except InputTooLargeError as exc:
        raise InferenceError(str(exc), 413) from None
    except DeepSeekError as exc:
        raise InferenceError(str(exc), 400) from None
    except Exception as exc:
        log.exception("%s failed on %s", who, where)
        raise InferenceError(f"{who} failed on {where}: {type(exc).__name__}: {exc} (a bug in "
                             "the plugin)", 500) from None
    want = len(spec.shape) - 1 if spec.shape else None
    if not isinstance(item, np.ndarray) or item.dtype != dtype or \
            (want is not None and item.ndim != want):
        got = (f"{item.dtype} of shape {list(item.shape)}" if isinstance(item, np.ndarray)
               else type(item).__name__)
        raise InferenceError(f"{who} gave {got} for {where}; the input takes {dtype} items "
                             f"of {want} axes (a bug in the plugin)", 500)
    return item
