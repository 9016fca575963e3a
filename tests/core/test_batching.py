"""Adaptive batching, tested with a model that blocks until the test releases it: arrival
order is controlled, so every assertion holds on every run (no sleeps, no timing)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from deepseek.batching import BatchingError, DynamicBatcher, QueueFull, batched_map


class GatedModel:
    """``fn`` for the batcher: records the requests of each call (their first value) and
    waits at the gate before answering x * 10; refuses negative values."""

    def __init__(self) -> None:
        self.calls: list[list[float]] = []
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)

    def __call__(self, arrays):
        x = arrays[0]
        self.calls.append([float(v) for v in x[:, 0]])
        self.entered.release()
        assert self.gate.wait(30), "the test never opened the gate"
        if (x < 0).any():
            raise ValueError("negative values are refused")
        return [x * 10]

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.acquire, True, 30), "model never called"


def _req(v, n=1, width=1):
    return [np.full((n, width), v, np.float32)]


async def _queued(b: DynamicBatcher, n: int) -> None:
    """Yield to the event loop until ``n`` requests wait in the queue."""
    for _ in range(10_000):
        if b.depth >= n:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"only {b.depth} of {n} requests reached the queue")


def test_a_lone_request_runs_at_once_and_arrivals_form_the_next_batch():
    async def main():
        m = GatedModel()
        b = DynamicBatcher(m, max_batch_size=32)  # no extra delay: the default
        b.start()
        first = asyncio.create_task(b.submit(_req(0)))
        await m.wait_entered()  # the idle model took the lone request without waiting
        assert m.calls == [[0.0]]
        rest = [asyncio.create_task(b.submit(_req(v))) for v in (1, 2, 3, 4, 5)]
        await _queued(b, 5)
        m.gate.set()
        outs = await asyncio.gather(first, *rest)
        await b.close()
        return m, outs, b.stats

    m, outs, stats = asyncio.run(main())
    assert m.calls == [[0.0], [1.0, 2.0, 3.0, 4.0, 5.0]]  # what queued during the run
    assert [float(o[0][0, 0]) for o in outs] == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    assert stats.batches == 2 and stats.sizes == {1: 1, 5: 1}


def test_the_next_batch_stops_at_the_batch_size():
    async def main():
        m = GatedModel()
        b = DynamicBatcher(m, max_batch_size=4)
        b.start()
        first = asyncio.create_task(b.submit(_req(0)))
        await m.wait_entered()
        rest = [asyncio.create_task(b.submit(_req(v, n=2 if v == 3 else 1)))
                for v in range(1, 9)]
        await _queued(b, 8)
        m.gate.set()
        await asyncio.gather(first, *rest)
        await b.close()
        return m

    m = asyncio.run(main())
    # samples, not requests, fill a batch: request 3 carries two
    assert m.calls == [[0.0], [1.0, 2.0, 3.0, 3.0], [4.0, 5.0, 6.0, 7.0], [8.0]]


def test_a_batch_holds_at_most_max_elements_padding_counted():
    """Requests join while the batch, as it is run, holds no more elements than one request
    may (a photo model joining eight of the largest photos would need eight times the
    memory); a request over the bound alone still runs, alone."""
    async def main(policy, reqs, max_elements, cells=None, costs=None):
        m = GatedModel()
        b = DynamicBatcher(m, max_batch_size=32, max_elements=max_elements, policy=policy,
                           pad_axes=(1,) if policy == "pad" else (), cells=cells, costs=costs)
        b.start()
        first = asyncio.create_task(b.submit(_req(0)))
        await m.wait_entered()
        rest = [asyncio.create_task(b.submit(r)) for r in reqs]
        await _queued(b, len(reqs))
        m.gate.set()
        outs = await asyncio.gather(first, *rest)
        await b.close()
        return m.calls, outs

    # rows of 10 elements, 25 allowed: two rows a batch; a 3-row request runs alone
    calls, _ = asyncio.run(main("bucket", [_req(v, n=3 if v == 3 else 1, width=10)
                                           for v in (1, 2, 3, 4, 5)], 25))
    assert calls == [[0.0], [1.0, 2.0], [3.0, 3.0, 3.0], [4.0, 5.0]]
    # padded along axis 1: a 4-wide row joined to 1-wide ones makes each of them 4 wide
    calls, outs = asyncio.run(main("pad", [_req(1, width=1), _req(2, width=4),
                                           _req(3, width=1), _req(4, width=1)], 9))
    assert calls == [[0.0], [1.0, 2.0], [3.0, 4.0]]  # 2 x 4 = 8; a third row makes 12
    assert [o[0].shape for o in outs[1:]] == [(1, 1), (1, 4), (1, 1), (1, 1)]
    # a model that pads each row to 8 itself (a photo graph's cell): rows of 3 count as 8
    calls, _ = asyncio.run(main("bucket", [_req(v, width=3) for v in (1, 2, 3, 4)], 17,
                                cells=[[1, 8]]))
    assert calls == [[0.0], [1.0, 2.0], [3.0, 4.0]]  # without the cell: 5 rows of 3 fit
    calls, _ = asyncio.run(main("bucket", [_req(v, width=3) for v in (1, 2, 3, 4)], 17))
    assert calls == [[0.0], [1.0, 2.0, 3.0, 4.0]]
    # a model that runs 2.5 elements per element sent (a photo graph that enlarges it):
    # two rows of 3 count as 15, three as 23 (22.5 rounded up), so two a batch again
    calls, _ = asyncio.run(main("bucket", [_req(v, width=3) for v in (1, 2, 3, 4)], 17,
                                costs=[2.5]))
    assert calls == [[0.0], [1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(BatchingError, match="max_elements must be >= 1"):
        DynamicBatcher(GatedModel(), max_elements=0)


def test_an_extra_delay_waits_for_the_batch_to_fill():
    async def main():
        m = GatedModel()
        m.gate.set()
        b = DynamicBatcher(m, max_batch_size=3, max_delay_ms=60_000)
        b.start()
        tasks = [asyncio.create_task(b.submit(_req(0)))]
        await _queued(b, 1)
        for _ in range(100):
            await asyncio.sleep(0)
        assert m.calls == []  # waiting for two more (the deadline is a minute away)
        tasks += [asyncio.create_task(b.submit(_req(v))) for v in (1, 2)]
        await asyncio.gather(*tasks)
        await b.close()
        return m

    assert asyncio.run(main()).calls == [[0.0, 1.0, 2.0]]  # closed when full, not at the deadline


def test_an_extra_delay_ends_when_the_elements_fill_the_batch():
    async def main():
        m = GatedModel()
        b = DynamicBatcher(m, max_batch_size=32, max_delay_ms=60_000, max_elements=20)
        b.start()
        tasks = [asyncio.create_task(b.submit(_req(0, width=10)))]
        await _queued(b, 1)
        tasks.append(asyncio.create_task(b.submit(_req(1, width=10))))
        await m.wait_entered()  # 20 elements: full at once (waiting for 32 rows: a minute)
        m.gate.set()
        await asyncio.gather(*tasks)
        await b.close()
        return m

    assert asyncio.run(main()).calls == [[0.0, 1.0]]


def test_a_bad_request_fails_alone_after_a_few_splits_not_one_by_one():
    async def main():
        m = GatedModel()
        b = DynamicBatcher(m, max_batch_size=32)
        b.start()
        first = asyncio.create_task(b.submit(_req(100)))
        await m.wait_entered()
        values = [1, 2, 3, 4, 5, -6, 7, 8]
        rest = [asyncio.create_task(b.submit(_req(v))) for v in values]
        await _queued(b, 8)
        m.gate.set()
        await first
        res = await asyncio.gather(*rest, return_exceptions=True)
        await b.close()
        return m, values, res, b.stats

    m, values, res, stats = asyncio.run(main())
    for v, r in zip(values, res):
        if v < 0:
            assert isinstance(r, ValueError) and "negative" in str(r)
        else:
            assert float(r[0][0, 0]) == 10 * v
    # the batch of 8 failed, then halves: [1-4] ok, [5,-6,7,8] failed, [5,-6] failed,
    # [7,8] ok, [5] ok, [-6] alone: 7 runs for the 8 requests (one by one would be 9)
    assert m.calls[1:] == [[1, 2, 3, 4, 5, -6, 7, 8], [1, 2, 3, 4], [5, -6, 7, 8], [5, -6],
                           [5], [-6], [7, 8]]
    assert stats.runs == 1 + 7 and stats.splits == 3


def test_shapes_are_bucketed_in_order_and_padded_when_the_model_says_so():
    async def bucket():
        m = GatedModel()
        b = DynamicBatcher(m, max_batch_size=16)
        b.start()
        first = asyncio.create_task(b.submit(_req(0, width=5)))
        await m.wait_entered()
        rest = [asyncio.create_task(b.submit(_req(v, width=3 if v % 2 else 5)))
                for v in range(1, 7)]
        await _queued(b, 6)
        m.gate.set()
        outs = await asyncio.gather(first, *rest)
        await b.close()
        return m, outs

    m, outs = asyncio.run(bucket())
    assert m.calls == [[0.0], [1.0, 3.0, 5.0], [2.0, 4.0, 6.0]]  # width 3 first: it came first
    assert [o[0].shape[1] for o in outs] == [5, 3, 5, 3, 5, 3, 5]

    def cumsum(arrays):
        return [np.cumsum(arrays[0], axis=1)]

    async def pad():
        b = DynamicBatcher(cumsum, max_batch_size=3, policy="pad", pad_axes=[1],
                           max_delay_ms=60_000)
        b.start()
        xs = [np.ones((1, n, 2)) for n in (2, 5, 3)]
        outs = await asyncio.gather(*(b.submit([x]) for x in xs))
        await b.close()
        return xs, outs, b.stats

    xs, outs, stats = asyncio.run(pad())
    for x, o in zip(xs, outs):
        np.testing.assert_array_equal(o[0], np.cumsum(x, axis=1))  # cut back to its length
    assert stats.batches == 1 and stats.sizes == {3: 1}


def test_queue_bound_shutdown_and_bad_requests():
    async def main():
        m = GatedModel()
        b = DynamicBatcher(m, max_batch_size=1, max_queue=2)
        b.start()
        running = asyncio.create_task(b.submit(_req(0)))
        await m.wait_entered()
        waiting = [asyncio.create_task(b.submit(_req(v))) for v in (1, 2)]
        await _queued(b, 2)
        with pytest.raises(QueueFull, match="queue is full \\(2 waiting\\)"):
            await b.submit(_req(3))
        with pytest.raises(BatchingError, match="share the batch size"):
            await b.submit([np.zeros((1, 1)), np.zeros((2, 1))])
        closing = asyncio.create_task(b.close())
        await asyncio.sleep(0)
        with pytest.raises(QueueFull, match="shutting down"):
            await b.submit(_req(4))
        m.gate.set()
        await closing  # drains: the queued requests are answered
        return [float(t.result()[0][0, 0]) for t in [running, *waiting]]

    assert asyncio.run(main()) == [0.0, 10.0, 20.0]
    with pytest.raises(BatchingError, match="policy"):
        DynamicBatcher(lambda a: a, policy="sort")
    with pytest.raises(BatchingError, match="max_delay_ms"):
        DynamicBatcher(lambda a: a, max_delay_ms=-1)


def test_a_request_given_up_while_queued_is_never_run():
    async def main():
        m = GatedModel()
        b = DynamicBatcher(m, max_batch_size=8)
        b.start()
        first = asyncio.create_task(b.submit(_req(0)))
        await m.wait_entered()
        doomed = asyncio.create_task(b.submit(_req(1)))
        kept = asyncio.create_task(b.submit(_req(2)))
        await _queued(b, 2)
        doomed.cancel()  # the caller's time ran out
        m.gate.set()
        await asyncio.gather(first, kept)
        await b.close()
        return m

    assert asyncio.run(main()).calls == [[0.0], [2.0]]


def test_batched_map_offline():
    calls = []

    def fn(arrays):
        calls.append(arrays[0].shape)
        return [arrays[0] * 2]

    samples = [[np.full(3 if i % 3 else 4, i, np.float32)] for i in range(10)]
    outs = batched_map(fn, samples, batch_size=4)
    for i, o in enumerate(outs):
        np.testing.assert_array_equal(o[0], samples[i][0] * 2)
    assert all(c[0] <= 4 for c in calls)
