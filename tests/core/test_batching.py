from __future__ import annotations

import asyncio

import numpy as np
import pytest

from deepseek.batching import BatchingError, DynamicBatcher, QueueFull, batched_map


def run(coro):
    return asyncio.run(coro)


def test_requests_are_batched_and_results_routed():
    calls = []

    def fn(arrays):
        calls.append(arrays[0].shape[0])
        return [arrays[0] * 10]

    async def main():
        b = DynamicBatcher(fn, max_batch_size=8, max_delay_ms=50)
        b.start()
        outs = await asyncio.gather(*(b.submit([np.full((1, 2), i, np.float32)])
                                      for i in range(8)))
        await b.close()
        return outs, b.stats

    outs, stats = run(main())
    for i, o in enumerate(outs):
        np.testing.assert_array_equal(o[0], np.full((1, 2), 10 * i))
    assert calls == [8] and stats.mean_batch_size == 8


def test_batch_closes_at_the_deadline():
    async def main():
        b = DynamicBatcher(lambda a: [a[0]], max_batch_size=64, max_delay_ms=20)
        b.start()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await b.submit([np.zeros((1, 1))])
        waited = loop.time() - t0
        await b.close()
        return waited

    waited = run(main())
    assert 0.015 < waited < 0.5


def test_bucketing_keeps_shapes_apart_in_order():
    seen = []

    def fn(arrays):
        seen.append(arrays[0].shape)
        return [arrays[0].sum(axis=1)]

    async def main():
        b = DynamicBatcher(fn, max_batch_size=16, max_delay_ms=30)
        b.start()
        reqs = [np.ones((1, 3 if i % 2 else 5)) for i in range(6)]
        outs = await asyncio.gather(*(b.submit([r]) for r in reqs))
        await b.close()
        return outs

    outs = run(main())
    assert [o[0][0] for o in outs] == [5, 3, 5, 3, 5, 3]
    assert sorted(seen) == [(3, 3), (3, 5)]


def test_pad_policy_cuts_outputs_back():
    def fn(arrays):
        x = arrays[0]
        return [np.cumsum(x, axis=1)]

    async def main():
        b = DynamicBatcher(fn, max_batch_size=8, max_delay_ms=30, policy="pad", pad_axes=[1])
        b.start()
        xs = [np.ones((1, n, 2)) for n in (2, 5, 3)]
        outs = await asyncio.gather(*(b.submit([x]) for x in xs))
        await b.close()
        return xs, outs, b.stats

    xs, outs, stats = run(main())
    for x, o in zip(xs, outs):
        np.testing.assert_array_equal(o[0], np.cumsum(x, axis=1))
    assert stats.batches == 1


def test_failing_request_fails_alone():
    def fn(arrays):
        if (arrays[0] < 0).any():
            raise ValueError("negative input")
        return [arrays[0] + 1]

    async def main():
        b = DynamicBatcher(fn, max_batch_size=8, max_delay_ms=30)
        b.start()
        res = await asyncio.gather(*(b.submit([np.full((1, 1), v)]) for v in (1, -1, 2)),
                                   return_exceptions=True)
        await b.close()
        return res, b.stats

    res, stats = run(main())
    assert res[0][0][0, 0] == 2 and res[2][0][0, 0] == 3
    assert isinstance(res[1], ValueError)
    assert stats.fallbacks == 1


def test_queue_bound_and_bad_requests():
    async def main():
        b = DynamicBatcher(lambda a: [a[0]], max_batch_size=1, max_queue=2, max_delay_ms=0)
        b.start()
        tasks = [asyncio.create_task(b.submit([np.zeros((1, 1))])) for _ in range(5)]
        res = await asyncio.gather(*tasks, return_exceptions=True)
        with pytest.raises(BatchingError, match="share the batch size"):
            await b.submit([np.zeros((1, 1)), np.zeros((2, 1))])
        await b.close()
        return res

    res = run(main())
    assert any(isinstance(r, QueueFull) for r in res)
    assert any(not isinstance(r, Exception) for r in res)
    with pytest.raises(BatchingError, match="policy"):
        DynamicBatcher(lambda a: a, policy="sort")


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
