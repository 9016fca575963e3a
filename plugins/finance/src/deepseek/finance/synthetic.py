"""Synthetic order-book ticks with ground truth in the data itself: the order flow really
predicts short-term mid-price moves, so models have something to learn (demos, tests,
benchmarks). Reader ``synthetic-ticks``: ``synthetic:?n=20000&seed=3`` (also the short form
``synthetic:N:SEED``); ``synthetic:?kind=market&n=...`` gives :func:`synthetic_market`.

Two generators:

* :func:`synthetic_ticks` -- a large-tick book (the mid moves one tick at a time, the spread
  is one or two ticks), the data the packaged tick models were trained on;
* :func:`synthetic_market` -- a small-tick market for backtests: volatility switches between
  a calm and a volatile regime (a Markov chain), a persistent order-flow imbalance drives the
  next moves of the price and shows in the queues and the trades, spreads widen in the
  volatile regime, and events come faster there.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

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


@njit(cache=True)
def _market(out_t, out_bid, out_ask, out_bsz, out_asz, out_bd, out_ad, out_lpx, out_lsz,
            out_side, out_regime, u, g, e, price_ticks, kappa, persistence, calm_to_vol,
            vol_to_calm):  # pragma: no cover - compiled
    n = len(out_t)
    t = np.int64(1_700_000_000_000_000_000)
    fair = float(price_ticks)       # fair value in ticks (continuous)
    ofi = 0.0                       # order-flow imbalance in [-1, 1], persistent
    regime = 0
    last_px = np.nan
    for i in range(n):
        # regime switch, then the clock: events come ~3x faster when volatile
        if regime == 0 and u[i, 0] < calm_to_vol:
            regime = 1
        elif regime == 1 and u[i, 0] < vol_to_calm:
            regime = 0
        mean_dt = 3_000_000.0 if regime == 0 else 1_000_000.0
        t += np.int64(1_000 + e[i, 0] * mean_dt)
        # order flow: persistent, with shocks; it moves the fair value over the next events
        ofi = persistence * ofi + math.sqrt(1.0 - persistence * persistence) * 0.4 * g[i, 0]
        ofi = max(-1.0, min(1.0, ofi))
        sigma = 0.6 if regime == 0 else 1.8
        fair += kappa * ofi + sigma * g[i, 1]
        spread = 1 if regime == 0 else 1 + int(u[i, 1] * 3.0)
        if regime == 0 and u[i, 1] < 0.1:
            spread = 2
        bid_t = np.floor(fair - 0.5 * spread + 0.5)
        ask_t = bid_t + spread
        base = 8.0 if regime == 0 else 4.0
        bsz = max(1.0, np.round(base * (1.0 + 0.8 * ofi) + 2.0 * g[i, 2]))
        asz = max(1.0, np.round(base * (1.0 - 0.8 * ofi) + 2.0 * g[i, 3]))
        bd = bsz + max(0.0, 40.0 * (1.0 + 0.3 * ofi) + 6.0 * g[i, 4])
        ad = asz + max(0.0, 40.0 * (1.0 - 0.3 * ofi) + 6.0 * g[i, 5])
        side = 0
        lsz = 0.0
        if u[i, 2] < (0.25 if regime == 0 else 0.45):
            side = 1 if u[i, 3] < 0.5 + 0.35 * ofi else -1
            lsz = 1.0 + np.floor(e[i, 1] * 2.0)
            last_px = ask_t if side > 0 else bid_t
        out_t[i] = t
        out_bid[i] = bid_t
        out_ask[i] = ask_t
        out_bsz[i] = bsz
        out_asz[i] = asz
        out_bd[i] = bd
        out_ad[i] = ad
        out_lpx[i] = last_px
        out_lsz[i] = lsz
        out_side[i] = side
        out_regime[i] = regime


def synthetic_market(n: int = 100_000, seed: int = 0, price: float = 100.0,
                     tick_size: float = 0.01, kappa: float = 1.0,
                     persistence: float = 0.9, return_regimes: bool = False) -> Any:
    """A small-tick market with regime-switching volatility and predictive order flow.

    The fair value (in ticks) moves each event by ``kappa`` times the order-flow imbalance
    (an AR(1) with coefficient ``persistence`` and standard deviation 0.4, clipped to
    [-1, 1]: its information decays within a few events, so acting late loses it) plus
    noise of 0.6 ticks (calm) or 1.8 ticks (volatile); the quote is the tick grid around
    it, one tick wide when calm (two ticks 10 % of the time), one to three when volatile.
    Queue sizes lean with the imbalance (the bid queue grows when buyers dominate), trades
    come at 25 % (calm) or 45 % (volatile) of events, buyer-initiated with probability
    0.5 + 0.35 * imbalance, and events come every 3 ms (calm) or 1 ms (volatile) on average.
    Regimes switch with probabilities 1/4000 and 1/1500 per event. ``time_ns`` is the
    exchange time; the receive time trails it by
    20-80 µs. ``return_regimes`` also returns the regime of each tick (0 calm, 1 volatile)."""
    if n < 1:
        raise FinanceError(f"n={n}: give at least 1 tick")
    if not (price > 0 and tick_size > 0 and price / tick_size < 2**52):
        raise FinanceError(f"price={price}, tick_size={tick_size}: give positive values")
    if not 0 <= kappa <= 10:
        raise FinanceError(f"kappa={kappa}: give 0 to 10 ticks per event at full imbalance")
    if not 0 <= persistence < 1:
        raise FinanceError(f"persistence={persistence}: give 0 <= persistence < 1")
    rng = np.random.default_rng(seed)
    u = rng.random((n, 4))
    g = rng.standard_normal((n, 6))
    e = rng.exponential(1.0, (n, 2))
    out = np.zeros(n, dtype=TICK_DTYPE)
    cols = {k: np.empty(n, dtype=np.float64) for k in
            ("bid", "ask", "bid_size", "ask_size", "bid_depth", "ask_depth", "last_px",
             "last_size")}
    t = np.empty(n, dtype=np.int64)
    side = np.empty(n, dtype=np.int64)
    regime = np.empty(n, dtype=np.int64)
    _market(t, cols["bid"], cols["ask"], cols["bid_size"], cols["ask_size"],
            cols["bid_depth"], cols["ask_depth"], cols["last_px"], cols["last_size"], side,
            regime, u, g, e, int(round(price / tick_size)), float(kappa), float(persistence),
            1 / 4000, 1 / 1500)
    out["time_ns"] = t
    out["exch_ns"] = t
    out["recv_ns"] = t + rng.integers(20_000, 80_000, n)
    for k in ("bid", "ask", "last_px"):
        out[k] = np.round(cols[k] * tick_size, 10)
    for k in ("bid_size", "ask_size", "bid_depth", "ask_depth", "last_size"):
        out[k] = cols[k]
    out["side"] = side
    out["depth_levels"] = 5
    if float(out["bid"].min()) <= 0:
        raise FinanceError(f"the synthetic price fell to zero in {n} ticks from {price}: give "
                           "a higher price or fewer ticks")
    return (out, regime) if return_regimes else out


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
    kind = opts.pop("kind", "ticks")
    if kind not in ("ticks", "market"):
        raise FinanceError(f"{s}: kind={kind!r}: use kind=ticks (the large-tick book the "
                           "packaged models know) or kind=market (regime-switching market)")
    allowed = {"n", "seed", "price", "tick_size"} | (
        {"kappa", "persistence"} if kind == "market" else set())
    unknown = set(opts) - allowed
    if unknown:
        raise FinanceError(f"{s}: unknown option(s) {sorted(unknown)}; use kind, "
                           f"{', '.join(sorted(allowed))}")
    return synthetic_market(**opts) if kind == "market" else synthetic_ticks(**opts)
