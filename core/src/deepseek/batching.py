"""Dynamic batching, shared by the model server and offline inference.

:class:`DynamicBatcher` collects requests for one model from an asyncio event loop: a batch
closes when it holds ``max_batch_size`` samples or when ``max_delay_ms`` has passed since its
first request. Requests whose inputs differ in a non-batch dimension cannot be stacked; the
model's policy decides:

* ``"bucket"`` (default): a batch only takes requests of the same shapes; the others wait
  for the next batch, in arrival order.
* ``"pad"``: the free axes listed in ``pad_axes`` are padded with ``pad_value`` to the
  longest request in the batch, and each output is cut back along the same axis to its own
  request's length (for sequence models whose outputs follow their inputs in time).

The batch runs in a worker thread, off the event loop. If it raises, each request of the
batch is run alone, so one bad request fails only itself. The queue is bounded: a full queue
raises :class:`QueueFull` at once instead of adding unbounded latency.

:func:`batched_map` is the offline form: run a function over many samples in batches,
bucketing by shape.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepseek.errors import DeepSeekError

log = logging.getLogger(__name__)


class QueueFull(DeepSeekError):
    """The model's request queue is at its bound."""


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
    batches: int = 0
    samples: int = 0
    requests: int = 0
    fallbacks: int = 0
    sizes: collections.Counter = field(default_factory=collections.Counter)

    @property
    def mean_batch_size(self) -> float:
        return self.samples / self.batches if self.batches else 0.0


def _pad_key(arrays: Sequence[np.ndarray], pad_axes: Sequence[int]) -> tuple:
    return tuple((a.dtype.str, tuple(d if ax not in pad_axes else -1
                                     for ax, d in enumerate(a.shape) if ax > 0))
                 for a in arrays)


class DynamicBatcher:
    """Batches calls of ``fn(list_of_input_arrays) -> list_of_output_arrays``.

    Every input and output has the batch on axis 0. Use from one event loop: call
    :meth:`start` inside the loop, then ``await submit(inputs)``.
    """

    def __init__(self, fn: Callable[[list[np.ndarray]], Sequence[np.ndarray]], *,
                 max_batch_size: int = 32, max_delay_ms: float = 5.0, max_queue: int = 1024,
                 policy: str = "bucket", pad_axes: Sequence[int] = (), pad_value: float = 0.0,
                 name: str = "model", on_batch: Callable[[int], None] | None = None) -> None:
        if max_batch_size < 1:
            raise BatchingError("max_batch_size must be >= 1")
        if policy not in ("bucket", "pad"):
            raise BatchingError(f"policy must be 'bucket' or 'pad', got {policy!r}")
        self.fn = fn
        self.max_batch_size = int(max_batch_size)
        self.max_delay = float(max_delay_ms) / 1000.0
        self.max_queue = int(max_queue)
        self.policy = policy
        self.pad_axes = tuple(int(a) for a in pad_axes)
        self.pad_value = pad_value
        self.name = name
        self.on_batch = on_batch
        self.stats = BatchStats()
        self._queue: collections.deque[_Request] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self._inflight = 0
        self._closing = False

    # lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._worker(),
                                                             name=f"batcher-{self.name}")

    @property
    def depth(self) -> int:
        """Requests waiting (not counting the batch being run)."""
        return len(self._queue)

    @property
    def busy(self) -> bool:
        return bool(self._queue) or self._inflight > 0

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every queued and running request has finished."""
        end = time.monotonic() + timeout
        while self.busy and time.monotonic() < end:
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        self._closing = True
        await self.drain()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    # submitting ----------------------------------------------------------------------------
    async def submit(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Queue one request (each array has its batch on axis 0); await its outputs."""
        if self._closing:
            raise QueueFull(f"model {self.name!r} is shutting down")
        if len(self._queue) >= self.max_queue:
            raise QueueFull(f"model {self.name!r}: request queue is full ({self.max_queue} "
                            "waiting); retry later")
        if not inputs:
            raise BatchingError("a request needs at least one input")
        size = int(inputs[0].shape[0]) if inputs[0].ndim else 1
        if any(a.ndim == 0 or a.shape[0] != size for a in inputs):
            raise BatchingError("all inputs of a request must share the batch size on axis 0")
        key = _pad_key(inputs, self.pad_axes if self.policy == "pad" else ())
        fut = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(inputs, key, fut, size))
        self._wake.set()  # type: ignore[union-attr]
        return await fut

    # the worker ----------------------------------------------------------------------------
    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._wake.clear()  # type: ignore[union-attr]
                await self._wake.wait()  # type: ignore[union-attr]
            first = self._queue[0]
            deadline = first.enqueued + self.max_delay
            # wait for more requests until the batch is full or the first one's deadline
            while self.max_batch_size > 1:
                n = sum(r.size for r in self._queue if r.key == first.key)
                if n >= self.max_batch_size:
                    break
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._wake.clear()  # type: ignore[union-attr]
                try:
                    await asyncio.wait_for(self._wake.wait(), left)  # type: ignore[union-attr]
                except asyncio.TimeoutError:
                    break
            batch: list[_Request] = []
            total = 0
            rest: collections.deque[_Request] = collections.deque()
            while self._queue:
                r = self._queue.popleft()
                if r.future.done():  # cancelled or timed out while waiting
                    continue
                # the first request always goes in: one larger than a batch runs alone
                if r.key == first.key and (not batch or total + r.size <= self.max_batch_size):
                    batch.append(r)
                    total += r.size
                else:
                    rest.append(r)
            self._queue = rest + self._queue
            if not batch:
                continue
            self._inflight += 1
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, batch)
            finally:
                self._inflight -= 1
            for r, res in zip(batch, results):
                if r.future.done():
                    continue
                if isinstance(res, BaseException):
                    r.future.set_exception(res)
                else:
                    r.future.set_result(res)

    def _run_batch(self, batch: list[_Request]) -> list[Any]:
        self.stats.batches += 1
        self.stats.requests += len(batch)
        samples = sum(r.size for r in batch)
        self.stats.samples += samples
        self.stats.sizes[samples] += 1
        if self.on_batch is not None:
            self.on_batch(samples)
        if len(batch) == 1:
            return [self._call_one(batch[0])]
        try:
            stacked, lengths = self._stack([r.inputs for r in batch])
            outs = [np.asarray(o) for o in self.fn(stacked)]
            return self._split(outs, batch, lengths)
        except Exception as exc:  # one bad request must not fail its batch-mates
            log.info("batch of %d failed (%s); running its requests one by one", len(batch), exc)
            self.stats.fallbacks += 1
            return [self._call_one(r) for r in batch]

    def _call_one(self, r: _Request) -> Any:
        try:
            return [np.asarray(o) for o in self.fn(r.inputs)]
        except Exception as exc:
            return exc

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
