"""DeepSeekServing: REST + gRPC on the Open Inference Protocol (V2) with adaptive batching."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from deepseek import __version__
from deepseek.batching import DynamicBatcher, QueueFull
from deepseek.errors import DeepSeekError
from deepseek.serving.encoded import decode_files, release_decoded, sends_files
from deepseek.serving.limits import (
    MemoryBudget,
    decode_cost,
    guarded_protocol,
    memory_limit,
    to_thread_to_its_end,
)
from deepseek.serving.models import ServedModel, default_name
from deepseek.serving.protocol import DEFAULT_MAX_ELEMENTS, InferenceError, validate_inputs
from deepseek.serving.threads import Calibration, ThreadPolicy, calibrate, cpu_budget

log = logging.getLogger(__name__)

EXTENSIONS = ["binary_tensor_data", "model_repository"]
TOKEN_ENV = "DEEPSEEK_SERVING_TOKEN"


class DeepSeekServing:
    """Serve models over REST (``port``) and gRPC (``grpc_port``) with adaptive batching.

    ::

        server = DeepSeekServing(model_path="model.pt", port=8080, batch_size=32)
        server.start()                       # blocks; Ctrl-C / SIGTERM shut down gracefully

        with DeepSeekServing(models={"mlp": "tick-mlp"}, port=0, grpc_port=0) as s:
            ...                              # background; s.http_url, s.grpc_address

    Args:
        model_path: one model (registry name or file) served under its name (or ``name``).
        models: ``{name: registry name, file path or LoadedModel}`` for several models.
        port: the REST port; 0 picks a free one (``http_port`` after start).
        grpc_port: the gRPC port; 0 picks a free one (``grpc_port`` after start), ``None``
            turns gRPC off.
        batch_size: the largest batch (``1``: no batching). A request that finds its model
            idle runs at once; requests that arrive during a run form the next batch.
        max_delay_ms: an optional extra wait for a batch to fill (default 0: none).
        max_queue: requests waiting per model before new ones get 503 / UNAVAILABLE.
        timeout_s: per-request time limit (504 / DEADLINE_EXCEEDED).
        max_request_mb: larger requests are refused (413 / RESOURCE_EXHAUSTED).
        max_elements: tensor elements per request (413 / RESOURCE_EXHAUSTED beyond); requests
            joined into one batch hold at most as many together, so that joining never
            makes a model's run larger (in memory) than the largest request allowed.
        token: bearer token required on both protocols (default: ``$DEEPSEEK_SERVING_TOKEN``;
            health endpoints stay open for probes, ``/metrics`` too with ``metrics_public``).
        threads: the most intra-op threads any model run gets (a hard ceiling; default: the
            CPU budget, :func:`deepseek.serving.threads.cpu_budget`: the affinity mask and
            the cgroup quota). A batch that runs while requests wait gets one core less
            than the ceiling (the event loop's); a lone request gets the count measured at
            start-up to pay off for the model, which keeps following the host
            (:class:`~deepseek.serving.threads.ThreadPolicy`). ONNX Runtime sessions are
            made with the under-load count.
        calibrate: time each model at start-up (threads for a lone request, and whether a
            batch is cheaper than its requests one by one: a model that gains nothing from
            batching is served one request at a time); False keeps one thread for lone
            requests and batching on.
        reuse_port: bind with SO_REUSEPORT, so several worker processes share the ports.
        drain_delay_s: on SIGTERM (or :meth:`begin_stop`), keep serving this long while the
            readiness endpoints answer 503, so that load balancers (Kubernetes endpoints)
            stop routing here before the drain refuses new requests; a second signal skips
            the rest of the wait. Default 0: drain at once.
        memory_budget_mb: bytes (MiB) all requests in flight may hold while they are read,
            decoded and run (default: half the memory this process may use, the cgroup's
            limit or the machine's); one request may take at most the cost of a body of
            ``max_request_mb`` (less when the budget is smaller). Over it: 413 for a request
            that could never fit, 503 (gRPC RESOURCE_EXHAUSTED) while others hold the room,
            before the memory is taken (:mod:`deepseek.serving.limits`).
        head_timeout_s: a REST connection must send a complete request head within this
            many seconds (slowloris; 408).
        read_idle_s: a request body must keep arriving: at most this many seconds between
            chunks (408).
        read_total_s: ... and this many seconds in all (408).
        allow_untrained: serve models built with random weights (a registry model
            registered without weights, a zoo model without local weights); by default
            they are refused, since they answer nonsense.
        on_ready: called with the server once both protocols accept requests (ports known).
    """

    def __init__(self, model_path: Any = None, port: int = 8080, batch_size: int = 32, *,
                 name: str | None = None, grpc_port: int | None = 8081,
                 max_delay_ms: float = 0.0, host: str = "127.0.0.1",
                 models: dict[str, Any] | None = None, max_queue: int = 256,
                 timeout_s: float = 30.0, max_request_mb: float = 64.0,
                 max_elements: int = DEFAULT_MAX_ELEMENTS,
                 token: str | None = None, metrics_public: bool = False,
                 framework: str = "auto", precision: str = "fp32", device: str = "auto",
                 trust_pickle: bool = False, threads: int | None = None,
                 calibrate: bool = True, reuse_port: bool = False,
                 drain_delay_s: float = 0.0, allow_untrained: bool = False,
                 memory_budget_mb: float | None = None, head_timeout_s: float = 10.0,
                 read_idle_s: float = 15.0, read_total_s: float = 120.0,
                 on_ready: Callable[[DeepSeekServing], None] | None = None) -> None:
        if not drain_delay_s >= 0:
            raise DeepSeekError(f"drain_delay_s must be >= 0 seconds, got {drain_delay_s}")
        if threads is not None and threads < 1:
            raise DeepSeekError(f"threads must be >= 1, got {threads}")
        self.threads = int(threads) if threads is not None else cpu_budget()
        self.load_threads = max(1, self.threads - 1)
        from deepseek.loader import torch

        if torch is not None:  # onnxruntime sessions get the count when they are made
            torch.set_num_threads(self.load_threads)
        specs: dict[str, Any] = dict(models or {})
        if model_path is not None:
            specs[name or default_name(model_path)] = model_path
        if not specs:
            raise DeepSeekError("no model to serve: pass model_path=... or models={...}")
        self.models: dict[str, ServedModel] = {}
        for n, src in specs.items():
            self.models[n] = src if isinstance(src, ServedModel) else ServedModel(
                n, src, framework=framework, precision=precision, device=device,
                trust_pickle=trust_pickle, threads=self.load_threads,
                allow_untrained=allow_untrained)
        self.calibration: dict[str, Calibration] = {}
        self.policies: dict[str, ThreadPolicy] = {}
        for n, m in self.models.items():
            self._calibrate(n, m, int(batch_size), calibrate)
        self.host = host
        self.http_port = int(port)
        self.grpc_port = None if grpc_port is None else int(grpc_port)
        self.batch_size = int(batch_size)
        self.max_delay_ms = float(max_delay_ms)
        self.max_queue = int(max_queue)
        self.timeout_s = float(timeout_s)
        self.max_request_bytes = int(max_request_mb * 2**20)
        total = (int(memory_budget_mb * 2**20) if memory_budget_mb is not None
                 else memory_limit() // 2)
        self.memory = MemoryBudget(total, decode_cost(self.max_request_bytes, binary=False))
        self.head_timeout_s = float(head_timeout_s)
        self.read_idle_s = float(read_idle_s)
        self.read_total_s = float(read_total_s)
        self.max_elements = int(max_elements)
        self.token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self.metrics_public = bool(metrics_public)
        self.reuse_port = bool(reuse_port)
        self.drain_delay_s = float(drain_delay_s)
        self.on_ready = on_ready
        self.batchers: dict[str, DynamicBatcher] = {}
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._stop_now: asyncio.Event | None = None
        self._leaving = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._accepting = False
        from deepseek.serving.metrics import ServerMetrics

        self.metrics = ServerMetrics(self)

    @property
    def accepting(self) -> bool:
        """True while the server takes new requests (False while starting and draining)."""
        return self._accepting

    @property
    def ready(self) -> bool:
        """What the readiness endpoints answer: accepting, and not in the pre-stop delay
        (during ``drain_delay_s`` requests are still served, but load balancers are told to
        stop sending new ones)."""
        return self._accepting and not self._leaving

    def begin_stop(self) -> None:
        """What SIGTERM does: the first call starts the shutdown (after ``drain_delay_s``
        of not-ready serving, the drain); a second call skips what is left of the delay.
        Thread-safe; returns at once."""
        if self._loop is None or self._stopping is None or self._stop_now is None:
            return
        loop, first, now = self._loop, self._stopping, self._stop_now

        def trigger() -> None:
            (now if first.is_set() else first).set()

        if not loop.is_closed():
            loop.call_soon_threadsafe(trigger)

    # urls ----------------------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        """``HOST:PORT`` of the REST endpoint (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        """``HOST:PORT`` of the gRPC endpoint (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.grpc_port}"

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Serve until SIGINT/SIGTERM (blocking), then shut down gracefully."""
        asyncio.run(self._main(install_signals=True))

    def start_background(self, timeout: float = 60.0) -> DeepSeekServing:
        """Serve from a background thread; returns once both protocols accept requests."""
        self._thread = threading.Thread(target=self._thread_main, name="deepseek-serving",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise DeepSeekError("the server did not start in time")
        if self._error is not None:
            raise DeepSeekError(f"the server failed to start: {self._error}")
        return self

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main(install_signals=False))
        except BaseException as exc:  # surfaced by start_background
            self._error = exc
            self._ready.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting (no pre-stop delay), finish in-flight requests, close. Safe to
        call twice."""
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._loop.call_soon_threadsafe(self._stop_now.set)  # type: ignore[union-attr]
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> DeepSeekServing:
        return self.start_background()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _bind(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by connections
        try:
            sock.bind((self.host, port))
        except OSError as exc:
            sock.close()
            raise DeepSeekError(f"cannot serve REST on {self.host}:{port}: "
                                f"{exc.strerror}") from None
        return sock

    async def _main(self, install_signals: bool) -> None:
        import uvicorn

        from deepseek.serving.grpc_service import set_health, start_grpc
        from deepseek.serving.rest import build_app

        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._stop_now = asyncio.Event()
        for name, model in self.models.items():
            b = model.batching
            cal = self.calibration.get(name)
            batching = (cal is None or cal.batching) and not model.fixed_batch
            if model.fixed_batch and self.batch_size > 1:
                log.info("model %s: its inputs' batch axis is fixed (%s): requests run one "
                         "at a time", name, [s.shape[0] for s in model.inputs if s.shape])
            batcher = DynamicBatcher(model, max_batch_size=self.batch_size if batching else 1,
                                     max_delay_ms=self.max_delay_ms if batching else 0.0,
                                     max_queue=self.max_queue,
                                     max_elements=self.max_elements,
                                     cells=[s.cell for s in model.inputs],
                                     costs=[s.cost for s in model.inputs],
                                     policy=b.get("policy", "bucket"),
                                     pad_axes=b.get("pad_axes", ()),
                                     pad_value=b.get("pad_value", 0.0), name=name,
                                     on_batch=lambda n, _m=name: self.metrics.batch(_m, n),
                                     on_depth=lambda d, _m=name: self.metrics.depth(_m, d),
                                     before_run=self._sizer(name))
            batcher.start()
            self.batchers[name] = batcher
        config = uvicorn.Config(build_app(self), host=self.host, port=self.http_port,
                                log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=self.timeout_s,
                                http=guarded_protocol(self.head_timeout_s))
        http = uvicorn.Server(config)
        http.install_signal_handlers = lambda: None  # we handle signals ourselves
        sock = self._bind(self.http_port)
        self.http_port = sock.getsockname()[1]
        http_task = asyncio.create_task(http.serve(sockets=[sock]))
        while not http.started:
            if http_task.done():
                raise DeepSeekError(f"REST server on {self.http_url} stopped while starting")
            await asyncio.sleep(0.01)
        grpc_server = health = None
        if self.grpc_port is not None:
            grpc_server, self.grpc_port, health = await start_grpc(self)
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(sig, self.begin_stop)
            log.warning("serving %s: REST http://%s  gRPC %s", ", ".join(self.models),
                        self.http_url, self.grpc_address if grpc_server else "off")
        self._accepting = True
        if health is not None:
            await set_health(health, True)
        self._ready.set()
        if self.on_ready is not None:
            self.on_ready(self)
        await self._stopping.wait()
        if health is not None:
            await set_health(health, False)
        if self.drain_delay_s > 0 and not self._stop_now.is_set():
            # pre-stop: not ready, still serving, while load balancers take us out
            self._leaving = True
            log.warning("stopping: not ready, still serving for %g s (a second signal skips "
                        "the wait)", self.drain_delay_s)
            try:
                await asyncio.wait_for(self._stop_now.wait(), self.drain_delay_s)
            except asyncio.TimeoutError:
                pass
        # graceful: refuse new work, let queued and running requests finish, then close
        self._accepting = False
        if health is not None:
            await set_health(health, False, final=True)
        await asyncio.gather(*(b.drain(self.timeout_s) for b in self.batchers.values()))
        if grpc_server is not None:
            await grpc_server.stop(grace=self.timeout_s)
        http.should_exit = True
        await http_task
        for b in self.batchers.values():
            await b.close()

    def _calibrate(self, name: str, served: ServedModel, batch_size: int, timed: bool) -> None:
        """Time the model (see ``calibrate``) and make its thread policy."""
        module = served.model.module
        example = served.example_inputs() if timed else None
        if example is not None:
            try:  # zeros at the smallest free sizes: not every model takes them
                served(example)
            except Exception as exc:  # noqa: BLE001 - any model error: serve untimed
                log.warning("model %s: not timed at start-up, its declared inputs' example "
                            "(%s) fails in the model (%s: %s); serving with the default "
                            "thread policy (a registered model can declare a size it takes: "
                            "its inputs' 'example')", name, [list(a.shape) for a in example],
                            type(exc).__name__, str(exc).splitlines()[0][:200])
                example = None
        if example is None:
            if module is not None:
                self.policies[name] = ThreadPolicy(self.threads, self.load_threads)
            return
        def run(n: int) -> None:
            served([np.repeat(a, n, axis=0) for a in example])

        def set_threads(n: int) -> None:  # an onnxruntime session keeps its count
            if module is not None:
                import torch

                torch.set_num_threads(n)

        ceiling = self.threads if module is not None else self.load_threads
        # a fixed batch axis takes no batch of 8: timed one sample at a time
        cal = calibrate(run, set_threads, ceiling, self.load_threads,
                        1 if served.fixed_batch else min(batch_size, 8))
        cal.batching = cal.batching and not served.fixed_batch
        set_threads(self.load_threads)
        if module is not None:
            self.policies[name] = ThreadPolicy(self.threads, self.load_threads,
                                               cal.lone_threads, cal.lone_ms)
        self.calibration[name] = cal
        log.info("model %s: %s", name, cal.text())

    def _sizer(self, name: str) -> Callable[[int, int, int], Any] | None:
        """The batcher's ``before_run`` of a PyTorch model: its policy's thread count for
        the batch about to run, and the timing of a lone run back to the policy."""
        policy = self.policies.get(name)
        if policy is None:
            return None

        def before(requests: int, waiting: int, samples: int) -> Any:
            import torch

            n = policy.threads(requests, waiting)
            if torch.get_num_threads() != n:
                torch.set_num_threads(n)
            if requests == 1 and waiting == 0 and samples == 1:
                return lambda seconds: policy.record(n, seconds)
            return None

        return before

    # the one inference path both protocols use ----------------------------------------------
    def model(self, name: str) -> ServedModel:
        """The served model ``name``.

        Raises:
            InferenceError: an unknown name, listing the served ones (404).
        """
        try:
            return self.models[name]
        except KeyError:
            raise InferenceError(f"unknown model '{name}'; this server has "
                                 f"{sorted(self.models)}", 404) from None

    async def infer(self, name: str, arrays: dict[str, np.ndarray], datatypes: dict[str, str],
                    timeout_s: float | None = None) -> tuple[list[str], list[np.ndarray]]:
        """Validate the inputs, run the model (batched with other requests where its policy allows)
        and return the output names and arrays. Encoded files sent to an input that decodes
        them (:mod:`deepseek.serving.encoded`) are decoded first, off the event loop.

        Raises:
            InferenceError: bad inputs (400), a shutting-down server (503), a timeout (504) or a
                model failure (500).
        """
        model = self.model(name)
        if not self._accepting:
            raise InferenceError("the server is shutting down; retry on another replica", 503)
        if not sends_files(model.inputs, datatypes):
            return await self._infer(name, model, arrays, datatypes, timeout_s)
        # given up meanwhile (a client's deadline, a cancelled call), what the decoding
        # reserved is given back when it ends, not held for good
        arrays, datatypes, held = await to_thread_to_its_end(
            release_decoded, decode_files, name, model.inputs, arrays, datatypes, self.memory,
            self.max_elements)
        try:
            return await self._infer(name, model, arrays, datatypes, timeout_s)
        finally:
            for h in held:
                h.release()

    async def _infer(self, name: str, model: ServedModel, arrays: dict[str, np.ndarray],
                     datatypes: dict[str, str], timeout_s: float | None
                     ) -> tuple[list[str], list[np.ndarray]]:
        ordered = validate_inputs(name, model.inputs, arrays, datatypes, self.max_elements)
        limit = self.timeout_s if timeout_s is None else min(self.timeout_s, timeout_s)
        try:
            # a future, not a coroutine: waiting on it creates no task
            outs = await asyncio.wait_for(self.batchers[name].enqueue(ordered), limit)
        except QueueFull as exc:
            raise InferenceError(str(exc), 503) from None
        except asyncio.TimeoutError:
            raise InferenceError(f"model '{name}': no answer within {limit:g} s", 504) from None
        except InferenceError:
            raise
        except DeepSeekError as exc:
            raise InferenceError(f"model '{name}': {exc}", 400) from None
        except Exception as exc:
            raise InferenceError(f"model '{name}' failed on this request: "
                                 f"{type(exc).__name__}: {exc}", 400) from None
        return model.output_names(len(outs)), outs

    def check_token(self, header: str | None) -> None:
        """Require ``Authorization: Bearer <token>`` when a token is set (compared in
        constant time)."""
        if self.token is None:
            return
        want = f"Bearer {self.token}".encode()
        if not header or not hmac.compare_digest(header.encode("utf-8", "replace"), want):
            raise InferenceError("missing or wrong bearer token (Authorization: Bearer ...)",
                                 401)

    def server_metadata(self) -> dict[str, Any]:
        """The server's metadata: name, version and protocol extensions."""
        return {"name": "deepseek", "version": __version__, "extensions": EXTENSIONS}
