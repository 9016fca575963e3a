"""Adaptive dynamic batching, shared by the model server and offline inference.

:class:`DynamicBatcher` runs one model's requests from an asyncio event loop, on a thread of
its own (the model never runs on the event loop). The policy is the one Triton uses:

* a request that arrives while the model is idle runs at once (no waiting to fill a batch,
  so batching never costs latency at low load);
* requests that arrive while a batch runs are collected, and run together as the next batch
  as soon as the model is free, up to ``max_batch_size`` samples (and, given
  ``max_elements``, up to that many tensor elements as the batch is run, padding counted,
  with the padding the model adds itself where ``cells`` gives each input's cell, and the
  elements it runs per element sent where ``costs`` gives them:
  joining then never makes a model's run larger than one request may be);
* ``max_delay_ms`` (default 0) is an optional extra wait for a batch to fill, for models whose
  batches are much cheaper per sample than single requests.

Requests whose inputs differ in a non-batch dimension cannot be stacked; the model's policy
decides:

* ``"bucket"`` (default): a batch only takes requests of the same shapes; the others wait
  for the next batch, in arrival order.
* ``"pad"``: the free axes listed in ``pad_axes`` are padded with ``pad_value`` to the
  longest request in the batch, and each output is cut back along the same axis to its own
  request's length (for sequence models whose outputs follow their inputs in time).

The model's thread drives the queue itself: when a batch is done it posts the answers to the
event loop and takes the next batch at once, so the model never waits for the event loop
(which may be busy parsing requests) between batches.

A batch that raises is split in two and each half run again, recursively, so the one bad
request fails alone and the good ones are answered after a handful of extra runs (about
``2 * log2(n)`` for one bad request among ``n``), not one by one. The queue is bounded: a
full queue raises :class:`QueueFull` at once instead of adding unbounded latency.

:func:`batched_map` is the offline form: run a function over many samples in batches,
bucketing by shape.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepseek.errors import DeepSeekError

log = logging.getLogger(__name__)


class QueueFull(DeepSeekError):
    """The model's request queue is at its bound (or the batcher is shutting down)."""


class BatchingError(DeepSeekError):
    """Requests could not be combined (bad shapes for the model's policy)."""


@dataclass
class _Request:
    inputs: list[np.ndarray]
    key: tuple
    future: asyncio.Future
    size: int
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    """Counters of a :class:`DynamicBatcher`: batches, samples, requests and model runs."""
    batches: int = 0      # batches taken from the queue
    samples: int = 0
    requests: int = 0
    runs: int = 0         # model calls, the re-runs of split batches included
    splits: int = 0       # failed multi-request runs that were split in two
    sizes: collections.Counter = field(default_factory=collections.Counter)

    @property
    def mean_batch_size(self) -> float:
        """Samples per batch taken from the queue (0 before the first batch)."""
        return self.samples / self.batches if self.batches else 0.0


def _pad_key(arrays: Sequence[np.ndarray], pad_axes: Sequence[int]) -> tuple:
    return tuple((a.dtype.str, tuple(d if ax not in pad_axes else -1
                                     for ax, d in enumerate(a.shape) if ax > 0))
                 for a in arrays)


def run_size(shape: Sequence[int], cell: Sequence[int] | None = None,
             cost: float = 1.0) -> int:
    """The elements of an array of ``shape`` as its model runs it: each axis padded up to a
    multiple of its ``cell`` (none: as it is), times the model's ``cost`` (the elements it
    runs per element of the padded input, at least 1: a graph that enlarges a photo twice
    on each side runs four), rounded up."""
    n = 1
    for d, c in zip(shape, cell or [1] * len(shape)):
        n *= -(-int(d) // int(c)) * int(c)
    return n if cost == 1 else math.ceil(n * float(cost))


def _run_elements(batch: Sequence[_Request],
                  cells: Sequence[Sequence[int] | None] | None = None,
                  costs: Sequence[float] | None = None) -> int:
    """The tensor elements of ``batch`` as it is run: per input, all its rows times the
    largest size of each other axis (a padded batch's padding counted), each size rounded
    up to a multiple of the input's cell on that axis where ``cells`` gives one (the
    padding the model adds itself), times the input's cost where ``costs`` gives one."""
    total = 0
    for i in range(len(batch[0].inputs)):
        cell = cells[i] if cells and i < len(cells) else None
        cost = costs[i] if costs and i < len(costs) else 1.0
        row = [max(r.inputs[i].shape[axis] for r in batch)
               for axis in range(1, batch[0].inputs[i].ndim)]
        total += run_size([sum(r.size for r in batch), *row],
                          [1, *cell[1:]] if cell and len(cell) == len(row) + 1 else None, cost)
    return total


class DynamicBatcher:
    """Batches calls of ``fn(list_of_input_arrays) -> list_of_output_arrays``.

    Every input and output has the batch on axis 0. Use from one event loop: call
    :meth:`start` inside the loop, then ``await submit(inputs)``. ``executor`` is the thread
    pool the model runs on (default: a thread of its own); ``before_run(requests, waiting,
    samples)`` is called on that thread before each batch with the number of requests in it,
    the number still queued and the samples it holds (the server sizes the model's threads
    to the load with it); when it returns a callable, that callable receives the batch's run
    time in seconds.

    There is no scheduler task: a request that finds the model free starts the model's
    thread from :meth:`enqueue`, and that thread takes batch after batch from the queue (a
    condition variable guards it) until it is empty, so a lone request costs one hand-over
    to the model's thread and back, and a busy model never waits for the event loop.
    """

    def __init__(self, fn: Callable[[list[np.ndarray]], Sequence[np.ndarray]], *,
                 max_batch_size: int = 32, max_delay_ms: float = 0.0, max_queue: int = 1024,
                 max_elements: int | None = None,
                 cells: Sequence[Sequence[int] | None] | None = None,
                 costs: Sequence[float] | None = None, policy: str = "bucket",
                 pad_axes: Sequence[int] = (), pad_value: float = 0.0,
                 name: str = "model", on_batch: Callable[[int], None] | None = None,
                 on_depth: Callable[[int], None] | None = None,
                 before_run: Callable[[int, int, int], Callable[[float], None] | None]
                 | None = None,
                 executor: concurrent.futures.Executor | None = None) -> None:
        if max_batch_size < 1:
            raise BatchingError("max_batch_size must be >= 1")
        if max_delay_ms < 0:
            raise BatchingError("max_delay_ms must be >= 0")
        if max_elements is not None and max_elements < 1:
            raise BatchingError("max_elements must be >= 1")
        if policy not in ("bucket", "pad"):
            raise BatchingError(f"policy must be 'bucket' or 'pad', got {policy!r}")
        self.fn = fn
        self.max_batch_size = int(max_batch_size)
        self.max_delay = float(max_delay_ms) / 1000.0
        self.max_queue = int(max_queue)
        self.max_elements = None if max_elements is None else int(max_elements)
        self.cells = list(cells) if cells else None
        self.costs = [float(c) for c in costs] if costs else None
        self.policy = policy
        self.pad_axes = tuple(int(a) for a in pad_axes)
        self.pad_value = pad_value
        self.name = name
        self.on_batch = on_batch
        self.on_depth = on_depth
        self.before_run = before_run
        self.stats = BatchStats()
        self._queue: collections.deque[_Request] = collections.deque()
        self._cond = threading.Condition()  # guards the queue and the running flag
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: asyncio.Event | None = None
        self._own_executor = executor is None
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=f"infer-{name}")
        self._inflight = False
        self._closing = False

    # lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Bind to the running event loop (call from inside it, before :meth:`submit`)."""
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def depth(self) -> int:
        """Requests waiting (not counting the batch being run)."""
        return len(self._queue)

    @property
    def busy(self) -> bool:
        """Whether requests are queued or a batch is running."""
        return bool(self._queue) or self._inflight

    def _depth_changed(self) -> None:
        """On the event loop: the queue depth to the metrics, the idle event to drains."""
        if self.on_depth is not None:
            self.on_depth(len(self._queue))
        if self._idle is not None:
            if self.busy:
                self._idle.clear()
            else:
                self._idle.set()

    async def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every queued and running request has finished; False on timeout."""
        if self._idle is None:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def close(self, timeout: float = 30.0) -> None:
        """Refuse new requests, finish the queued and running ones, stop."""
        with self._cond:
            self._closing = True  # a batch waiting to fill goes now
            self._cond.notify_all()
        await self.drain(timeout)
        with self._cond:
            left = list(self._queue)  # only left when the drain timed out
            self._queue.clear()
            self._cond.notify_all()
        for r in left:
            if not r.future.done():
                r.future.set_exception(QueueFull(f"model {self.name!r} shut down"))
        if self._own_executor:
            self._executor.shutdown(wait=True)

    # submitting ----------------------------------------------------------------------------
    def enqueue(self, inputs: list[np.ndarray]) -> asyncio.Future:
        """Queue one request (each array has its batch on axis 0) and return the future of
        its outputs; an idle model starts on it before this returns."""
        if not inputs:
            raise BatchingError("a request needs at least one input")
        size = int(inputs[0].shape[0]) if inputs[0].ndim else 1
        if any(a.ndim == 0 or a.shape[0] != size for a in inputs):
            raise BatchingError("all inputs of a request must share the batch size on axis 0")
        if self._closing:
            raise QueueFull(f"model {self.name!r} is shutting down")
        if len(self._queue) >= self.max_queue:
            raise QueueFull(f"model {self.name!r}: request queue is full ({self.max_queue} "
                            "waiting); retry later")
        if self._loop is None:
            raise BatchingError("call start() inside the event loop first")
        key = _pad_key(inputs, self.pad_axes if self.policy == "pad" else ())
        fut = self._loop.create_future()
        with self._cond:
            self._queue.append(_Request(inputs, key, fut, size))
            start = not self._inflight
            self._inflight = True
            self._cond.notify_all()  # a thread waiting for its batch to fill
        if start:
            self._executor.submit(self._work)
        self._depth_changed()
        return fut

    async def submit(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Queue one request and await its outputs (a request abandoned while it waits, by
        a timeout or a cancellation, is dropped from the queue and never run)."""
        return await self.enqueue(inputs)

    # the model's thread: batch after batch until the queue is empty ------------------------
    def _full(self, first: _Request) -> bool:
        """Whether the requests queued with ``first``'s key fill a batch: its samples, or
        (given ``max_elements``) its elements, so that waiting for more gains nothing."""
        same = [r for r in self._queue if r.key == first.key and not r.future.done()]
        return sum(r.size for r in same) >= self.max_batch_size or (
            self.max_elements is not None
            and _run_elements(same, self.cells, self.costs) >= self.max_elements)

    def _next_batch(self) -> tuple[list[_Request], int] | None:
        """Under the condition: the next batch and the requests still queued, or None when
        the queue is empty (the thread then stops); with an extra delay, wait until the
        batch is full or its first request has waited long enough."""
        with self._cond:
            while True:
                while self._queue and self._queue[0].future.done():  # given up on
                    self._queue.popleft()
                if not self._queue:
                    self._inflight = False
                    return None
                first = self._queue[0]
                left = first.enqueued + self.max_delay - time.perf_counter()
                if (self.max_delay <= 0 or self.max_batch_size <= 1 or self._closing or left <= 0
                        or self._full(first)):
                    batch = self._take(first)
                    if batch:
                        return batch, len(self._queue)
                    continue
                self._cond.wait(left)

    def _work(self) -> None:
        """Runs on the model's thread while requests wait."""
        while True:
            try:
                nxt = self._next_batch()
            except Exception as exc:  # never leave the batcher marked busy  # pragma: no cover
                log.error("batcher %s: %s", self.name, exc)
                with self._cond:
                    self._inflight = False
                return
            if nxt is None:
                self._post(self._depth_changed)
                return
            batch, waiting = nxt
            self._post(self._depth_changed)
            try:
                results: list[Any] = self._run_batch(batch, waiting)
            except BaseException as exc:  # before_run or the stats: every request fails
                results = [exc] * len(batch)
            self._post(self._deliver, batch, results)

    def _post(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    def _deliver(self, batch: list[_Request], results: list[Any]) -> None:
        """On the event loop: each request's outputs (or its exception)."""
        for r, res in zip(batch, results):
            if r.future.done():
                continue
            if isinstance(res, BaseException):
                r.future.set_exception(res)
            else:
                r.future.set_result(res)
        self._depth_changed()

    def _take(self, first: _Request) -> list[_Request]:
        """The next batch: requests with the first one's key, in arrival order, up to the
        batch size and the element bound (the first always goes in: one larger than a batch
        runs alone)."""
        batch: list[_Request] = []
        total = 0
        rest: collections.deque[_Request] = collections.deque()
        while self._queue:
            r = self._queue.popleft()
            if r.future.done():  # cancelled or timed out while waiting
                continue
            if r.key == first.key and (not batch or (
                    total + r.size <= self.max_batch_size and
                    (self.max_elements is None or _run_elements(
                        [*batch, r], self.cells, self.costs) <= self.max_elements))):
                batch.append(r)
                total += r.size
            else:
                rest.append(r)
        self._queue = rest
        return batch

    def _run_batch(self, batch: list[_Request], waiting: int = 0) -> list[Any]:
        self.stats.batches += 1
        self.stats.requests += len(batch)
        samples = sum(r.size for r in batch)
        self.stats.samples += samples
        self.stats.sizes[samples] += 1
        if self.on_batch is not None:
            self.on_batch(samples)
        timed = self.before_run(len(batch), waiting, samples) if self.before_run else None
        t0 = time.perf_counter()
        out = self._run(batch)
        if timed is not None:
            timed(time.perf_counter() - t0)
        return out

    def _run(self, batch: list[_Request]) -> list[Any]:
        """Outputs per request; a failing multi-request batch is split in two, recursively,
        until the failing requests are alone (their result is their exception)."""
        self.stats.runs += 1
        try:
            if len(batch) == 1:
                return [[np.asarray(o) for o in self.fn(batch[0].inputs)]]
            stacked, lengths = self._stack([r.inputs for r in batch])
            outs = [np.asarray(o) for o in self.fn(stacked)]
            return self._split(outs, batch, lengths)
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
            self.stats.splits += 1
            log.info("batch of %d failed (%s); splitting it to isolate the bad request",
                     len(batch), exc)
            half = len(batch) // 2
            return self._run(batch[:half]) + self._run(batch[half:])

    def _stack(self, requests: list[list[np.ndarray]]) -> tuple[list[np.ndarray], list]:
        n_inputs = len(requests[0])
        out = []
        lengths: list[dict[int, int]] = [{} for _ in requests]
        for k in range(n_inputs):
            arrays = [req[k] for req in requests]
            if self.policy == "pad" and self.pad_axes:
                target = list(arrays[0].shape)
                for a in arrays:
                    for ax in self.pad_axes:
                        if ax < a.ndim:
                            target[ax] = max(target[ax], a.shape[ax])
                padded = []
                for i, a in enumerate(arrays):
                    widths = [(0, 0)] * a.ndim
                    for ax in self.pad_axes:
                        if ax < a.ndim:
                            widths[ax] = (0, target[ax] - a.shape[ax])
                            lengths[i][ax] = a.shape[ax]
                    padded.append(np.pad(a, widths, constant_values=self.pad_value)
                                  if any(w[1] for w in widths) else a)
                arrays = padded
            out.append(np.concatenate(arrays, axis=0))
        return out, lengths

    def _split(self, outs: list[np.ndarray], batch: list[_Request],
               lengths: list[dict[int, int]]) -> list[list[np.ndarray]]:
        total = sum(r.size for r in batch)
        for o in outs:
            if o.ndim == 0 or o.shape[0] != total:
                raise BatchingError(f"model output of shape {o.shape} does not keep the batch "
                                    f"of {total} on axis 0")
        results = []
        start = 0
        for r, lens in zip(batch, lengths):
            mine = []
            for o in outs:
                part = o[start:start + r.size]
                for ax, n in lens.items():
                    if ax < part.ndim:
                        part = np.take(part, np.arange(n), axis=ax)
                mine.append(part)
            results.append(mine)
            start += r.size
        return results


def batched_map(fn: Callable[[list[np.ndarray]], Sequence[np.ndarray]],
                samples: Iterable[Sequence[np.ndarray]], batch_size: int = 32) -> list[list]:
    """Offline inference: ``fn`` over samples (each a list of arrays *without* batch axis),
    in batches of up to ``batch_size`` samples of equal shapes. Returns per-sample outputs in
    input order."""
    samples = [list(s) for s in samples]
    buckets: dict[tuple, list[int]] = collections.defaultdict(list)
    for i, s in enumerate(samples):
        buckets[tuple((a.dtype.str, a.shape) for a in s)].append(i)
    results: list[list] = [[] for _ in samples]
    for idx in buckets.values():
        for j in range(0, len(idx), batch_size):
            chunk = idx[j:j + batch_size]
            n_in = len(samples[chunk[0]])
            stacked = [np.stack([samples[i][k] for i in chunk]) for k in range(n_in)]
            outs = [np.asarray(o) for o in fn(stacked)]
            for n, i in enumerate(chunk):
                results[i] = [o[n] for o in outs]
    return results
