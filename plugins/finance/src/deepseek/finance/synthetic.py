"""Synthetic order-book ticks with ground truth in the data itself: the order flow really
predicts short-term mid-price moves, so models have something to learn (demos, tests,
benchmarks). Reader ``synthetic-ticks``: ``synthetic:?n=20000&seed=3`` (also the short form
``synthetic:N:SEED``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from deepseek.finance.errors import FinanceError
from deepseek.finance.ticks import TICK_DTYPE


def synthetic_ticks(n: int = 100_000, seed: int = 0, price: float = 100.0,
                    tick_size: float = 0.01) -> np.ndarray:
    """A synthetic limit-order-book stream whose order flow carries short-term signal.

    The mid price moves by whole ticks; the probability of an up move depends on the
    queue imbalance at the top, a little on the imbalance of the four levels behind it, and
    on recent signed trade flow, as in real books, so models have something to learn. Event
    times are exponential with bursts; ``time_ns`` is the exchange time and the receive time
    trails it by 20-80 µs. Depths are over 5 levels.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros(n, dtype=TICK_DTYPE)
    t = 1_700_000_000_000_000_000
    bid_ticks = int(round(price / tick_size))
    spread = 1
    bsz, asz = 5.0, 5.0
    flow = 0.0
    deep_b, deep_a = 30.0, 30.0  # size on the 4 levels behind the top
    last_px, last_sz = math.nan, 0.0
    for i in range(n):
        t += int(rng.exponential(2_000_000 if rng.random() < 0.8 else 40_000_000))
        imb = (bsz - asz) / (bsz + asz)
        side = 0
        if rng.random() < 0.3:  # a trade; buyers more likely when bids are heavy
            side = 1 if rng.random() < 0.5 + 0.35 * imb else -1
            last_sz = float(rng.integers(1, 4))
            last_px = (bid_ticks + (spread if side > 0 else 0)) * tick_size
            flow = 0.9 * flow + side * last_sz
            if side > 0:
                asz = max(asz - last_sz, 0.0)
            else:
                bsz = max(bsz - last_sz, 0.0)
        # queue replenishment and cancellation
        bsz = max(0.0, bsz + rng.normal(0.3, 1.5))
        asz = max(0.0, asz + rng.normal(0.3, 1.5))
        deep_b = max(0.0, deep_b + 0.05 * (30.0 - deep_b) + rng.normal(0.0, 2.0))
        deep_a = max(0.0, deep_a + 0.05 * (30.0 - deep_a) + rng.normal(0.0, 2.0))
        deep_imb = (deep_b - deep_a) / max(deep_b + deep_a, 1.0)
        # price moves: a depleted queue gives way; imbalance and flow tilt the odds
        p_up = 0.02 + 0.10 * max(imb, 0) + 0.02 * max(math.tanh(flow / 5), 0) \
            + 0.02 * max(deep_imb, 0)
        p_dn = 0.02 + 0.10 * max(-imb, 0) + 0.02 * max(-math.tanh(flow / 5), 0) \
            + 0.02 * max(-deep_imb, 0)
        u = rng.random()
        if asz < 0.5 or u < p_up:
            bid_ticks += 1
            bsz, asz = float(rng.integers(1, 8)), float(rng.integers(2, 10))
        elif bsz < 0.5 or u > 1 - p_dn:
            bid_ticks -= 1
            bsz, asz = float(rng.integers(2, 10)), float(rng.integers(1, 8))
        spread = 1 if rng.random() < 0.85 else 2
        bid = round(bid_ticks * tick_size, 8)
        ask = round((bid_ticks + spread) * tick_size, 8)
        top_b, top_a = max(bsz, 1.0), max(asz, 1.0)
        out[i] = (t, t, t + int(rng.integers(20_000, 80_000)), bid, ask, top_b, top_a,
                  top_b + deep_b, top_a + deep_a, last_px, last_sz if side else 0.0, side, 5)
    return out


def read_synthetic(source: str = "synthetic:", **options: Any) -> np.ndarray:
    """Registered reader ``synthetic-ticks``: ``synthetic:?n=20000&seed=3&price=100`` or
    ``synthetic:N[:SEED]``; keyword options override the URI's."""
    from deepseek.readers import uri_options

    s = str(source or "synthetic:")
    rest = s[len("synthetic:"):]
    if rest and not rest.startswith("?"):
        parts = rest.split(":")
        try:
            opts: dict[str, Any] = {"n": int(parts[0])}
            if len(parts) > 1:
                opts["seed"] = int(parts[1])
        except ValueError:
            raise FinanceError(f"{s}: use synthetic:N[:SEED] or synthetic:?n=N&seed=S") \
                from None
    else:
        opts = uri_options(s, "synthetic:")
    opts.update(options)
    unknown = set(opts) - {"n", "seed", "price", "tick_size"}
    if unknown:
        raise FinanceError(f"{s}: unknown option(s) {sorted(unknown)}; use n, seed, price, "
                           "tick_size")
    return synthetic_ticks(**opts)
