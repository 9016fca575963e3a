"""How many CPUs the server may use, and how many intra-op threads each model run gets.

**The CPU budget** is the smaller of the CPUs this process may run on (``sched_getaffinity``)
and its cgroup's CPU quota (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` /
``cpu.cfs_period_us``, the tightest along the cgroup's path): a pod limited to 2 CPUs on a
64-core node gets 2, not 63 (:func:`cpu_budget`).

**Threads per run** (PyTorch models; an ONNX Runtime session's threads are fixed when it is
made) never exceed the ceiling (``--threads N``, else the worker's share of the budget):

* a batch that runs while requests wait runs at ``load`` threads (the ceiling less one core
  for the event loop, which parses and encodes the requests meanwhile);
* a lone request with nothing queued runs at the thread count *measured to pay off for that
  model*: at start-up each count from 1 up to the ceiling is timed on the model's own input
  (:func:`calibrate`), and more threads are used only when they are at least
  :data:`MIN_GAIN` faster than fewer. The host changes after start-up (another process may
  start beside the server), so :class:`ThreadPolicy` keeps timing lone runs and tries the
  other counts now and then: the choice follows what the host gives now.

**Batching** pays when a batch of B samples costs clearly less than B single runs; the same
calibration times a batch of B against one sample, and a model that gains nothing (a batch
costing at least :data:`MAX_BATCH_SHARE` x B single runs) is served one request at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# the budget lives in deepseek.cpus (shared with `deepseek batch`); importable from here too
from deepseek.cpus import (  # noqa: F401
    affinity_cpus,
    cgroup_cpu_limit,
    cpu_budget,
    worker_share,
)

#: more threads must make a lone run at least this much faster than fewer (ratio of times)
MIN_GAIN = 1.2
#: batching is turned off when a batch of B costs at least this share of B single runs
MAX_BATCH_SHARE = 0.9
#: a lone run tries another thread count once in this many lone runs
EXPLORE_EVERY = 64
#: weight of a new timing in the running averages
EWMA = 0.2


# ---------------------------------------------------------------------------- calibration
@dataclass
class Calibration:
    """What the start-up timing found for one model (milliseconds per run)."""

    lone_ms: dict[int, float] = field(default_factory=dict)   # threads -> one sample
    lone_threads: int = 1
    batch: int = 1
    batch_ms: float | None = None     # a batch of ``batch`` at the load thread count
    single_ms: float | None = None    # one sample at the load thread count
    batching: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The calibration as JSON-ready data (milliseconds per thread count)."""
        return {"lone_ms": {str(k): round(v, 3) for k, v in self.lone_ms.items()},
                "lone_threads": self.lone_threads, "batch": self.batch,
                "batch_ms": None if self.batch_ms is None else round(self.batch_ms, 3),
                "single_ms": None if self.single_ms is None else round(self.single_ms, 3),
                "batching": self.batching}

    def text(self) -> str:
        """The calibration in one line: times per thread count and what was chosen."""
        lone = ", ".join(f"{v:.3g} ms at {k}" for k, v in self.lone_ms.items())
        out = f"a lone request {lone} -> {self.lone_threads} thread(s)"
        if self.batch_ms is not None and self.single_ms:
            share = self.batch_ms / (self.batch * self.single_ms)
            out += (f"; a batch of {self.batch} costs {share:.2f} x {self.batch} single runs"
                    f" -> batching {'on' if self.batching else 'off'}")
        return out


def pick_threads(times: dict[int, float], min_gain: float = MIN_GAIN) -> int:
    """The fewest threads whose time no larger count beats by ``min_gain``: more threads only
    where they pay off."""
    counts = sorted(times)
    best = counts[0]
    for n in counts[1:]:
        if times[best] / times[n] >= min_gain:
            best = n
    return best


def _median_ms(fn: Callable[[], Any], reps: int, clock: Callable[[], float]) -> float:
    ts = []
    for _ in range(reps):
        t0 = clock()
        fn()
        ts.append(clock() - t0)
    ts.sort()
    return ts[len(ts) // 2] * 1e3


def calibrate(run: Callable[[int], Any], set_threads: Callable[[int], None], ceiling: int,
              load: int, batch: int, budget_s: float = 2.0,
              clock: Callable[[], float] = time.perf_counter) -> Calibration:
    """Time ``run(n)`` (the model on a batch of n samples): one sample at 1, 2, 4 ...
    ``ceiling`` threads, and a batch of ``batch`` against one sample at ``load`` threads.
    Each count gets a warm-up and 3 to 15 timed runs within about ``budget_s`` in all; a
    model too slow for a batch's timing within the budget keeps batching on."""
    cal = Calibration(batch=batch)
    counts = sorted({min(ceiling, 2 ** k) for k in range(ceiling.bit_length() + 1)})
    run(1)  # first-call set-up (allocator, kernels) out of the timings
    t0 = clock()
    run(1)
    first = max(clock() - t0, 1e-6)
    reps = int(max(3, min(15, budget_s / (len(counts) + 2) / first)))
    for n in counts:
        set_threads(n)
        run(1)
        cal.lone_ms[n] = _median_ms(lambda: run(1), reps, clock)
    cal.lone_threads = pick_threads(cal.lone_ms)
    if batch > 1 and 3 * batch * first <= budget_s:
        set_threads(load)
        run(batch)
        cal.single_ms = cal.lone_ms.get(load) or _median_ms(lambda: run(1), reps, clock)
        cal.batch_ms = _median_ms(lambda: run(batch), max(3, reps // 2), clock)
        cal.batching = cal.batch_ms < MAX_BATCH_SHARE * batch * cal.single_ms
    return cal


class ThreadPolicy:
    """The thread count of each run of one model (see the module docstring).

    ``threads(requests, waiting)`` answers before a batch runs; ``record(threads, seconds)``
    takes the time of a lone run. Deterministic given its inputs (no clock of its own)."""

    def __init__(self, ceiling: int, load: int, lone: int = 1,
                 timings: dict[int, float] | None = None) -> None:
        self.ceiling = max(1, int(ceiling))
        self.load = max(1, min(int(load), self.ceiling))
        self.choices = sorted({min(self.ceiling, 2 ** k)
                               for k in range(self.ceiling.bit_length() + 1)})
        self.lone = min(max(1, int(lone)), self.ceiling)
        self.avg: dict[int, float] = {k: v / 1e3 for k, v in (timings or {}).items()
                                      if k in self.choices}
        self.lone_runs = 0
        self._trying: int | None = None

    def threads(self, requests: int, waiting: int) -> int:
        """Threads for a batch of ``requests`` with ``waiting`` more queued."""
        if requests > 1 or waiting > 0:
            return self.load
        self.lone_runs += 1
        if len(self.choices) > 1 and self.lone_runs % EXPLORE_EVERY == 0:
            others = [c for c in self.choices if c != self.lone]
            self._trying = others[(self.lone_runs // EXPLORE_EVERY) % len(others)]
            return self._trying
        self._trying = None
        return self.lone

    def record(self, threads: int, seconds: float) -> None:
        """The time of a lone run at ``threads``; the choice moves where it pays."""
        prev = self.avg.get(threads)
        self.avg[threads] = seconds if prev is None else (1 - EWMA) * prev + EWMA * seconds
        known = {k: v for k, v in self.avg.items() if k in self.choices}
        if known:
            self.lone = pick_threads(known)
