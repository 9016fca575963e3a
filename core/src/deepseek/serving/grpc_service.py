"""The gRPC side of the V2 protocol: ``inference.GRPCInferenceService``.

The messages are the protocol's (:mod:`deepseek.serving.v2_proto`, declared field for field
and checked against the stubs ``tritonclient[grpc]`` ships), so the server is wire-compatible
with ``tritonclient.grpc`` and other V2 clients without depending on either.

Beside it runs the standard gRPC health service (``grpc.health.v1.Health``, from
``grpcio-health-checking``), which Kubernetes' ``grpc`` probes and KServe call: the overall
status (service ``""``) and ``inference.GRPCInferenceService`` answer ``SERVING`` while the
server is ready and ``NOT_SERVING`` while it starts, during the pre-stop delay and the drain
(:func:`set_health`). It needs no token, like the REST health endpoints.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health as grpc_health
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deepseek.serving.limits import decode_cost
from deepseek.serving.protocol import (
    InferenceError,
    array_from_json,
    array_from_raw,
    check_datatype,
    check_shape,
    encode_bytes,
    v2_datatype,
)
from deepseek.serving.v2_proto import MESSAGES, RPCS, SERVICE

log = logging.getLogger(__name__)

# 503 (overload, shutting down) is UNAVAILABLE: the status gRPC clients retry on
CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
         404: grpc.StatusCode.NOT_FOUND, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
         503: grpc.StatusCode.UNAVAILABLE, 504: grpc.StatusCode.DEADLINE_EXCEEDED,
         500: grpc.StatusCode.INTERNAL}
CONTENT_FIELD = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
                 "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
                 "UINT16": "uint_contents", "UINT32": "uint_contents",
                 "UINT64": "uint64_contents", "FP32": "fp32_contents",
                 "FP64": "fp64_contents", "BYTES": "bytes_contents"}


class InferenceService:
    """The served RPCs of ``inference.GRPCInferenceService`` (:data:`RPCS`)."""

    def __init__(self, server: Any) -> None:
        self.server = server

    async def _fail(self, context: Any, exc: InferenceError) -> None:
        await context.abort(CODES.get(exc.status, grpc.StatusCode.UNKNOWN), str(exc))

    def _auth(self, context: Any) -> None:
        meta = dict(context.invocation_metadata() or ())
        self.server.check_token(meta.get("authorization"))

    async def ServerLive(self, request: Any, context: Any) -> Any:
        """Open Inference Protocol ``ServerLive``: the process answers."""
        return MESSAGES["ServerLiveResponse"](live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        """``ServerReady``: every model is loaded and the server accepts requests."""
        return MESSAGES["ServerReadyResponse"](ready=self.server.ready)

    async def _internal(self, context: Any, where: str, exc: BaseException) -> None:
        log.error("internal error in %s: %s: %s", where, type(exc).__name__, exc, exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, f"internal server error "
                                                      f"({type(exc).__name__})")

    async def ModelReady(self, request: Any, context: Any) -> Any:
        """``ModelReady``: whether the named model (and version) is served."""
        try:
            self._auth(context)
            self._model(request.name, request.version)
        except InferenceError as exc:
            await self._fail(context, exc)
        return MESSAGES["ModelReadyResponse"](ready=self.server.ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        """``ServerMetadata``: name, version and protocol extensions."""
        try:
            self._auth(context)
        except InferenceError as exc:
            await self._fail(context, exc)
        md = self.server.server_metadata()
        return MESSAGES["ServerMetadataResponse"](name=md["name"], version=md["version"],
                                                  extensions=md["extensions"])

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        """``ModelMetadata``: the model's inputs and outputs (name, datatype, shape)."""
        try:
            self._auth(context)
            m = self._model(request.name, request.version)
        except InferenceError as exc:
            await self._fail(context, exc)
        md = m.metadata()
        tm = MESSAGES["ModelMetadataResponse"].TensorMetadata
        return MESSAGES["ModelMetadataResponse"](
            name=md["name"], versions=md["versions"], platform=md["platform"],
            inputs=[tm(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                    for t in md["inputs"]],
            outputs=[tm(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                     for t in md["outputs"]])

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        """``ModelInfer``: run the model on the request's tensors (raw or typed contents) and answer
        with the outputs; errors become gRPC status codes.
        """
        t0 = time.perf_counter()
        name = request.model_name
        code = None
        held = None
        try:
            self._auth(context)
            m = self._model(name, request.model_version)
            size = request.ByteSize()
            held = self.server.memory.reserve(
                decode_cost(size, binary=bool(request.raw_input_contents)),
                f"a request of {size} bytes")
            arrays, datatypes = self._inputs(request, self.server.max_elements)
            remaining = context.time_remaining()
            names, outs = await self.server.infer(name, arrays, datatypes, remaining)
            wanted = [o.name for o in request.outputs]
            for w in wanted:
                if w not in names:
                    raise InferenceError(f"unknown output {w!r}; the outputs are {names}")
            resp = MESSAGES["ModelInferResponse"](model_name=name, model_version=m.version,
                                                  id=request.id)
            for key, value in m.identity().items():  # which model file answered
                resp.parameters[key].string_param = value
            for n, a in zip(names, outs):
                if wanted and n not in wanted:
                    continue
                resp.outputs.add(name=n, datatype=v2_datatype(a), shape=list(a.shape))
                resp.raw_output_contents.append(
                    encode_bytes(a) if a.dtype == np.object_ else
                    np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes())
            return resp
        except InferenceError as exc:
            code = str(exc.status)
            await self._fail(context, exc)
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):  # context.abort() above: already sent
                raise
            code = "500"
            await self._internal(context, f"ModelInfer of {name!r}", exc)
        finally:
            if held is not None:
                held.release()
            self.server.metrics.observe(name if name in self.server.models else "_unknown",
                                        "grpc", time.perf_counter() - t0, code)

    def _model(self, name: str, version: str) -> Any:
        m = self.server.model(name)
        if version not in ("", m.version):
            raise InferenceError(f"model '{name}' has version {m.version} only, not "
                                 f"{version!r}", 404)
        return m

    @staticmethod
    def _inputs(request: Any, max_elements: int) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """The input arrays: names unique, datatypes known, shapes capped and matched with
        the contents actually sent before any array is built."""
        arrays: dict[str, np.ndarray] = {}
        datatypes: dict[str, str] = {}
        raw = list(request.raw_input_contents)
        if raw and len(raw) != len(request.inputs):
            raise InferenceError(f"{len(raw)} raw_input_contents for {len(request.inputs)} "
                                 "inputs; send raw contents for every input or for none")
        if not request.inputs:
            raise InferenceError("the request has no inputs")
        shapes = []
        total = 0
        for t in request.inputs:
            if not t.name:
                raise InferenceError("every input needs a name")
            if t.name in datatypes:
                raise InferenceError(f"input '{t.name}' appears twice in the request")
            datatypes[t.name] = check_datatype(t.name, t.datatype)
            shape = check_shape(t.name, list(t.shape), max_elements)
            total += int(np.prod(shape, dtype=np.int64)) if shape else 1
            if total > max_elements:
                raise InferenceError(f"the request's inputs hold {total} elements; this "
                                     f"server takes at most {max_elements} per request", 413)
            shapes.append(shape)
        for i, (t, shape) in enumerate(zip(request.inputs, shapes)):
            if raw:
                arrays[t.name] = array_from_raw(t.name, t.datatype, shape, raw[i])
            else:
                field = CONTENT_FIELD.get(t.datatype)
                if field is None:
                    raise InferenceError(f"input '{t.name}': {t.datatype} must be sent in "
                                         "raw_input_contents")
                values = getattr(t.contents, field)
                if t.datatype in ("BYTES", "BOOL") or len(values) != _count(shape):
                    values = [bytes(v) for v in values] if t.datatype == "BYTES" else \
                        list(values)  # small, or wrong: the checks say what is wrong
                    arrays[t.name] = array_from_json(t.name, t.datatype, shape, values)
                else:  # typed numbers straight into an array, no list of Python numbers
                    arrays[t.name] = _typed(t.name, t.datatype, shape, values)
        return arrays, datatypes


def _count(shape: list[int]) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


#: the numpy type of each repeated field of the typed contents
_FIELD_DTYPE = {"int_contents": np.int32, "int64_contents": np.int64,
                "uint_contents": np.uint32, "uint64_contents": np.uint64,
                "fp32_contents": np.float32, "fp64_contents": np.float64}


def _typed(name: str, datatype: str, shape: list[int], values: Any) -> np.ndarray:
    """Typed contents (``fp32_contents`` ...) as ``datatype``, range-checked."""
    from deepseek.serving.protocol import cast_numbers

    field = CONTENT_FIELD[datatype]
    arr = np.fromiter(values, dtype=_FIELD_DTYPE[field], count=len(values))
    return cast_numbers(name, datatype, arr).reshape(shape)


#: the services whose health the health service reports ("" is the server as a whole)
HEALTH_SERVICES = ("", "inference.GRPCInferenceService")


async def set_health(health: Any, serving: bool, final: bool = False) -> None:
    """Report ``SERVING`` or ``NOT_SERVING`` for :data:`HEALTH_SERVICES`; ``final`` (the
    drain) keeps them ``NOT_SERVING`` for good."""
    if final:
        await health.enter_graceful_shutdown()
        return
    status = (health_pb2.HealthCheckResponse.SERVING if serving
              else health_pb2.HealthCheckResponse.NOT_SERVING)
    for service in HEALTH_SERVICES:
        await health.set(service, status)


def inference_handler(service: InferenceService) -> Any:
    """The gRPC handler that routes :data:`RPCS` to ``service``'s methods."""
    return grpc.method_handlers_generic_handler(SERVICE, {
        rpc: grpc.unary_unary_rpc_method_handler(
            getattr(service, rpc), request_deserializer=req.FromString,
            response_serializer=resp.SerializeToString)
        for rpc, (req, resp) in RPCS.items()})


async def start_grpc(server: Any) -> tuple[Any, int, Any]:
    """The gRPC server (inference and health services), started; returns it, its port and
    the health servicer (NOT_SERVING until the caller says otherwise)."""
    opts = [("grpc.max_receive_message_length", server.max_request_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 1 if server.reuse_port else 0)]
    g = grpc.aio.server(options=opts)
    g.add_generic_rpc_handlers((inference_handler(InferenceService(server)),))
    health = grpc_health.aio.HealthServicer()
    await set_health(health, False)
    health_pb2_grpc.add_HealthServicer_to_server(health, g)
    port = g.add_insecure_port(f"{server.host}:{server.grpc_port}")
    if port == 0:
        raise InferenceError(f"cannot bind gRPC to {server.host}:{server.grpc_port}", 500)
    await g.start()
    return g, port, health
