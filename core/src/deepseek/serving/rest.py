"""The REST side of the V2 protocol (a Starlette ASGI app, served by uvicorn).

Every endpoint answers JSON: ``{"error": "..."}`` with 400/401/404/408/413/503/504 for
requests it refuses, and 500 for anything unexpected, which is logged with its traceback and
counted in ``/metrics`` under its code, and leaves the connection usable. A client that goes
away before its body has arrived is logged at INFO and counted under ``code="499"`` (the
code nginx uses for it), never as a server error. Health probes never touch a model, so
they answer while inference runs.

Memory: a request reserves its decoding cost from the server's budget before its body is
read (:mod:`deepseek.serving.limits`); the body must keep arriving (``read_idle_s`` between
chunks, ``read_total_s`` in all, else 408).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deepseek.serving.limits import decode_cost, to_thread_to_its_end
from deepseek.serving.protocol import (
    InferenceError,
    dumps,
    output_json,
    parse_rest_request,
    rest_inputs,
)

log = logging.getLogger(__name__)

HEADER_LEN = "Inference-Header-Content-Length"
#: request bodies larger than this are parsed on a worker thread, never on the event loop
PARSE_OFFLOAD_BYTES = 256 * 1024


#: the metric label of a request whose client went away before it was read
CLIENT_GONE = "499"


def _error(exc: InferenceError, close: bool = False) -> JSONResponse:
    """The JSON answer to ``exc``; ``close``: the request's body was not read (all of it),
    so the connection cannot carry another request and is closed at once, rather than
    held until the keep-alive timeout."""
    headers = {"Retry-After": "1"} if exc.status == 503 else {}
    if close:
        headers["Connection"] = "close"
    return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers or None)


def _internal(where: str, exc: BaseException) -> JSONResponse:
    log.error("internal error in %s: %s: %s", where, type(exc).__name__, exc, exc_info=exc)
    return JSONResponse({"error": f"internal server error ({type(exc).__name__}); the "
                                  "request was not processed"}, status_code=500)


def build_app(server: Any) -> Starlette:
    """The Starlette application serving the Open Inference Protocol's REST endpoints for
    ``server``.
    """
    def guarded(handler: Any, auth: bool = True) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                if auth:
                    server.check_token(request.headers.get("authorization"))
                return await handler(request)
            except InferenceError as exc:
                return _error(exc)
            except Exception as exc:  # never a bare 500 page, never a dropped connection
                return _internal(request.url.path, exc)
        return endpoint

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        ok = server.ready
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def metadata(request: Request) -> Response:
        return JSONResponse(server.server_metadata())

    async def model_metadata(request: Request) -> Response:
        m = server.model(request.path_params["model"])
        _check_version(m, request)
        return JSONResponse(m.metadata())

    async def model_ready(request: Request) -> Response:
        m = server.model(request.path_params["model"])
        _check_version(m, request)
        return JSONResponse({"name": m.name, "ready": server.ready},
                            status_code=200 if server.ready else 503)

    async def repository_index(request: Request) -> Response:
        return JSONResponse([{"name": n, "version": "1", "state": "READY"}
                             for n in server.models])

    def decode(body: bytes | bytearray, header_length: int | None) -> tuple[dict, dict]:
        req, tail = parse_rest_request(body, header_length)
        return req, rest_inputs(req, tail, server.max_elements)

    async def infer(request: Request) -> Response:
        t0 = time.perf_counter()
        name = request.path_params["model"]
        code = None
        held = None
        body_read = False
        try:
            server.check_token(request.headers.get("authorization"))
            m = server.model(name)
            _check_version(m, request)
            hl = request.headers.get(HEADER_LEN)
            try:
                header_length = int(hl) if hl is not None else None
            except ValueError:
                raise InferenceError(f"{HEADER_LEN} must be an integer, got {hl!r}") from None
            held = _reserve(request, server, header_length is not None)
            body = await _read_body(request, server.max_request_bytes, server.read_idle_s,
                                    server.read_total_s)
            body_read = True
            if held.nbytes < decode_cost(len(body), header_length is not None):
                held.release()  # no length announced: reserve what arrived
                held = server.memory.reserve(decode_cost(len(body), header_length is not None),
                                             f"a request of {len(body)} bytes")
            if len(body) > PARSE_OFFLOAD_BYTES:  # keep the event loop (and probes) free
                # given up meanwhile, what the parse holds stays reserved until it ends
                try:
                    req, arrays = await to_thread_to_its_end(_released_when_done(held),
                                                             decode, body, header_length)
                except asyncio.CancelledError:
                    held = None  # given back when the parse ends
                    raise
            else:
                req, arrays = decode(body, header_length)
            datatypes = {t["name"]: t["datatype"] for t in req["inputs"]}
            params = req.get("parameters") or {}
            timeout = params.get("timeout")  # microseconds, as tritonclient sends it
            names, outs = await server.infer(name, arrays, datatypes,
                                             timeout / 1e6 if timeout and timeout > 0 else None)
            payload, blobs = output_json(names, outs, req.get("outputs"),
                                         bool(params.get("binary_data_output", False)))
            payload.update(model_name=name, model_version=m.version)
            if m.identity():  # which model file answered (a rollout's, a retrained one's)
                payload["parameters"] = m.identity()
            if "id" in req:
                payload["id"] = req["id"]
            head = dumps(payload)
            if blobs:
                return Response(head + b"".join(blobs), media_type="application/octet-stream",
                                headers={HEADER_LEN: str(len(head))})
            return Response(head, media_type="application/json")
        except InferenceError as exc:
            code = str(exc.status)
            return _error(exc, close=not body_read)
        except ClientDisconnect:
            code = CLIENT_GONE
            log.info("client %s went away before its request to %r was read",
                     request.client.host if request.client else "?", name)
            return Response(status_code=400)  # nobody reads it
        except Exception as exc:
            code = "500"
            return _internal(f"infer of {name!r}", exc)
        finally:
            if held is not None:
                held.release()
            server.metrics.observe(name if name in server.models else "_unknown", "rest",
                                   time.perf_counter() - t0, code)

    async def metrics(request: Request) -> Response:
        return Response(server.metrics.render(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": f"no such endpoint: {request.method} {request.url.path}"},
                            status_code=404)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": f"{request.method} is not allowed on "
                                      f"{request.url.path}"}, status_code=405)

    async def internal(request: Request, exc: Exception) -> Response:
        return _internal(request.url.path, exc)

    routes = [
        Route("/v2/health/live", guarded(live, auth=False)),
        Route("/v2/health/ready", guarded(ready, auth=False)),
        Route("/v2", guarded(metadata)),
        Route("/v2/models/{model}", guarded(model_metadata)),
        Route("/v2/models/{model}/versions/{version}", guarded(model_metadata)),
        Route("/v2/models/{model}/ready", guarded(model_ready)),
        Route("/v2/models/{model}/versions/{version}/ready", guarded(model_ready)),
        Route("/v2/models/{model}/infer", infer, methods=["POST"]),
        Route("/v2/models/{model}/versions/{version}/infer", infer, methods=["POST"]),
        Route("/v2/repository/index", guarded(repository_index), methods=["POST", "GET"]),
        Route("/metrics", guarded(metrics, auth=not server.metrics_public)),
    ]
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed,
                                                       500: internal, Exception: internal})


def _released_when_done(held: Any) -> Any:
    """A done-callback for a parse whose request was given up: ``held`` given back once it
    ends (its outcome read, so that an error it met is not logged as never retrieved)."""
    def done(job: asyncio.Future) -> None:
        held.release()
        if not job.cancelled():
            job.exception()
    return done


def _check_version(model: Any, request: Request) -> None:
    v = request.path_params.get("version")
    if v not in (None, "", model.version):
        raise InferenceError(f"model '{model.name}' has version {model.version} only, not {v!r}",
                             404)


def _reserve(request: Request, server: Any, binary: bool) -> Any:
    """The request's share of the memory budget, reserved from its announced length before
    the body is read (an unannounced length reserves nothing until the body is in)."""
    length = request.headers.get("content-length")
    size = int(length) if length is not None and length.isdigit() else 0
    if size > server.max_request_bytes:
        raise InferenceError(f"request of {size} bytes exceeds the limit of "
                             f"{server.max_request_bytes} bytes", 413)
    return server.memory.reserve(decode_cost(size, binary), f"a request of {size} bytes")


async def _read_body(request: Request, limit: int, idle_s: float, total_s: float
                     ) -> bytes | bytearray:
    """The body, into one buffer of the announced length (no second copy), within the
    size limit and the read timeouts."""
    length = request.headers.get("content-length")
    announced = int(length) if length is not None and length.isdigit() else None
    if announced is not None and announced > limit:
        raise InferenceError(f"request of {announced} bytes exceeds the limit of {limit} "
                             "bytes", 413)
    buf = bytearray(announced) if announced is not None else None
    chunks: list[bytes] = []
    size = 0
    stream = request.stream().__aiter__()
    deadline = time.monotonic() + total_s
    while True:
        wait = min(idle_s, deadline - time.monotonic())
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), max(wait, 0.0))
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise InferenceError(f"the request body stopped arriving ({size} bytes in; the "
                                 f"server waits {idle_s:g} s between chunks and {total_s:g} "
                                 "s in all)", 408) from None
        if size + len(chunk) > (announced if announced is not None else limit):
            raise InferenceError(f"the body is longer than its Content-Length ({announced})"
                                 if announced is not None else
                                 f"request exceeds the limit of {limit} bytes",
                                 400 if announced is not None else 413)
        if buf is not None:
            buf[size:size + len(chunk)] = chunk
        else:
            chunks.append(chunk)
        size += len(chunk)
    if buf is None:
        return b"".join(chunks)
    if size != announced:
        raise InferenceError(f"body truncated: {size} of {announced} bytes", 400)
    return buf
