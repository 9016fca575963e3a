"""Streaming tick features: O(1) per tick, fixed memory, and a batch twin that matches exactly.

The 16 features (:data:`FEATURE_NAMES`), computed after each tick:

==  =====================  ==============================================================
 0  spread_bps             (ask - bid) / mid * 1e4
 1  imbalance              (bid_size - ask_size) / (bid_size + ask_size)
 2  microprice_bps         (microprice - mid) / mid * 1e4, microprice size-weighted
3-6 ret_{1,5,20,100}t      (mid - mid L ticks ago) / that mid * 1e4 (oldest mid if fewer)
7-9 ret_{100ms,1s,10s}     (mid - mid at the oldest tick within the horizon) / it * 1e4
10  vol_bps                sqrt of the EWMA (0.95 per tick) of squared 1-tick returns
11  flow_imbalance         EWMA (0.9 per tick) of signed trade size / EWMA of trade size
12  since_trade_s          seconds since the last trade, capped at 60 (60 before any)
13  depth_ratio            (bid_size + ask_size) / its EWMA (0.99 per tick) - 1
14  last_trade_bps         (last trade price - mid) / mid * 1e4 (0 before any trade)
15  dt_ms                  EWMA (0.9 per tick) of the time between ticks in ms
==  =====================  ==============================================================

State lives in two preallocated arrays (float64 and int64) with ring buffers of
``capacity`` (256) mids and times; time-horizon returns use per-horizon pointers that only
move forward, so the update is amortised O(1). When more than ``capacity - 1`` ticks fall
inside a time horizon, the oldest tick in the ring is used (the batch function applies the
same rule). Arithmetic is float64 with only +, -, *, / and sqrt, so :func:`batch_features`
and the streaming update agree bit for bit; features are handed to models as float32.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from deepseek.finance.ticks import tick_args

FEATURE_NAMES = (
    "spread_bps", "imbalance", "microprice_bps", "ret_1t", "ret_5t", "ret_20t", "ret_100t",
    "ret_100ms", "ret_1s", "ret_10s", "vol_bps", "flow_imbalance", "since_trade_s",
    "depth_ratio", "last_trade_bps", "dt_ms",
)
N_FEATURES = len(FEATURE_NAMES)
TICK_LAGS = (1, 5, 20, 100)
TIME_HORIZONS_NS = (100_000_000, 1_000_000_000, 10_000_000_000)
CAPACITY = 256
VOL_DECAY, FLOW_DECAY, DEPTH_DECAY, DT_DECAY = 0.95, 0.9, 0.99, 0.9
TRADE_CAP_S = 60.0

# float state: [0] ewma_var, [1] flow_signed, [2] flow_total, [3] ewma_depth, [4] ewma_dt,
#              [5] last_px, [8:8+CAPACITY] ring of mids
# int state:   [0] n ticks, [1] last_trade_ns (-1: none), [2] prev_exch_ns,
#              [4:4+len(TIME_HORIZONS)] horizon pointers (absolute tick index),
#              [8:8+CAPACITY] ring of exchange times
F_RING, I_RING = 8, 8
F_SIZE, I_SIZE = F_RING + CAPACITY, I_RING + CAPACITY


def new_state() -> tuple[np.ndarray, np.ndarray]:
    fs = np.zeros(F_SIZE, dtype=np.float64)
    is_ = np.zeros(I_SIZE, dtype=np.int64)
    fs[5] = np.nan
    is_[1] = -1
    return fs, is_


@njit(cache=True, nogil=True)
def update_features(fs, is_, out, exch_ns, bid, ask, bid_size, ask_size, last_px, last_size,
                    side):  # pragma: no cover - compiled
    """Advance the state by one tick and write the 16 features into ``out`` (float32)."""
    n = is_[0]
    cap = CAPACITY
    mid = (bid + ask) * 0.5
    slot = n % cap
    prev_mid = fs[F_RING + (n - 1) % cap] if n > 0 else mid
    fs[F_RING + slot] = mid
    is_[I_RING + slot] = exch_ns
    depth = bid_size + ask_size
    out[0] = (ask - bid) / mid * 1e4
    if depth > 0.0:
        out[1] = (bid_size - ask_size) / depth
        micro = (bid * ask_size + ask * bid_size) / depth
        out[2] = (micro - mid) / mid * 1e4
    else:
        out[1] = 0.0
        out[2] = 0.0
    oldest = n - cap + 1
    if oldest < 0:
        oldest = 0
    for k in range(4):
        lag = TICK_LAGS[k]
        j = n - lag
        if j < 0:
            j = 0
        ref = fs[F_RING + j % cap]
        out[3 + k] = (mid - ref) / ref * 1e4
    for k in range(3):
        p = is_[4 + k]
        if p < oldest:
            p = oldest
        limit = exch_ns - TIME_HORIZONS_NS[k]
        while p < n and is_[I_RING + p % cap] < limit:
            p += 1
        is_[4 + k] = p
        ref = fs[F_RING + p % cap]
        out[7 + k] = (mid - ref) / ref * 1e4
    r1 = (mid - prev_mid) / prev_mid * 1e4
    fs[0] = VOL_DECAY * fs[0] + (1.0 - VOL_DECAY) * (r1 * r1)
    out[10] = np.sqrt(fs[0])
    traded = side != 0
    size = last_size if traded else 0.0
    fs[1] = FLOW_DECAY * fs[1] + side * size
    fs[2] = FLOW_DECAY * fs[2] + size
    out[11] = fs[1] / fs[2] if fs[2] > 0.0 else 0.0
    if traded:
        is_[1] = exch_ns
        fs[5] = last_px
    if is_[1] < 0:
        out[12] = TRADE_CAP_S
    else:
        s = (exch_ns - is_[1]) / 1e9
        out[12] = s if s < TRADE_CAP_S else TRADE_CAP_S
    if n == 0:
        fs[3] = depth
    else:
        fs[3] = DEPTH_DECAY * fs[3] + (1.0 - DEPTH_DECAY) * depth
    out[13] = depth / fs[3] - 1.0 if fs[3] > 0.0 else 0.0
    lp = fs[5]
    out[14] = (lp - mid) / mid * 1e4 if lp == lp else 0.0
    dt = (exch_ns - is_[2]) / 1e6 if n > 0 else 0.0
    fs[4] = DT_DECAY * fs[4] + (1.0 - DT_DECAY) * dt
    out[15] = fs[4]
    is_[2] = exch_ns
    is_[0] = n + 1


class StreamingFeatures:
    """Per-tick feature state. ``update(...)`` returns the (reused) float32 feature vector."""

    names = FEATURE_NAMES
    n_features = N_FEATURES

    def __init__(self) -> None:
        self.fs, self.istate = new_state()
        self.out = np.zeros(N_FEATURES, dtype=np.float32)

    def reset(self) -> None:
        self.fs, self.istate = new_state()

    def update(self, exch_ns: int, bid: float, ask: float, bid_size: float, ask_size: float,
               last_px: float = np.nan, last_size: float = 0.0, side: int = 0) -> np.ndarray:
        update_features(self.fs, self.istate, self.out, exch_ns, bid, ask, bid_size, ask_size,
                        last_px, last_size, side)
        return self.out

    def update_tick(self, t: np.void) -> np.ndarray:
        return self.update(*tick_args(t))

    def run(self, ticks: np.ndarray) -> np.ndarray:
        """Features after every tick of a TICK_DTYPE array, as an (N, 16) float32 array."""
        return _run_stream(self.fs, self.istate, ticks["exch_ns"], ticks["bid"], ticks["ask"],
                           ticks["bid_size"], ticks["ask_size"], ticks["last_px"],
                           ticks["last_size"], ticks["side"].astype(np.int64))


@njit(cache=True)
def _run_stream(fs, is_, t, bid, ask, bs, as_, lp, ls, side):  # pragma: no cover - compiled
    out = np.zeros((t.shape[0], N_FEATURES), dtype=np.float32)
    for i in range(t.shape[0]):
        update_features(fs, is_, out[i], t[i], bid[i], ask[i], bs[i], as_[i], lp[i], ls[i],
                        side[i])
    return out


@njit(cache=True)
def _ewma(x, decay, first_is_value):  # pragma: no cover - compiled
    """Sequential EWMA ``v = decay * v + (1 - decay) * x`` (the recursion is inherently serial)."""
    out = np.empty_like(x)
    v = 0.0
    for i in range(x.shape[0]):
        if i == 0 and first_is_value:
            v = x[0]
        else:
            v = decay * v + (1.0 - decay) * x[i]
        out[i] = v
    return out


@njit(cache=True)
def _decayed_sum(x, decay):  # pragma: no cover - compiled
    out = np.empty_like(x)
    v = 0.0
    for i in range(x.shape[0]):
        v = decay * v + x[i]
        out[i] = v
    return out


def batch_features(ticks: np.ndarray) -> np.ndarray:
    """The same 16 features over a whole TICK_DTYPE array, vectorised where the maths allows.

    Equal, bit for bit, to feeding the ticks one by one through :class:`StreamingFeatures`.
    """
    n = len(ticks)
    t = ticks["exch_ns"].astype(np.int64)
    bid, ask = ticks["bid"].astype(np.float64), ticks["ask"].astype(np.float64)
    bs, as_ = ticks["bid_size"].astype(np.float64), ticks["ask_size"].astype(np.float64)
    side = ticks["side"].astype(np.int64)
    mid = (bid + ask) * 0.5
    depth = bs + as_
    out = np.zeros((n, N_FEATURES), dtype=np.float32)
    idx = np.arange(n)
    out[:, 0] = (ask - bid) / mid * 1e4
    pos = depth > 0
    safe = np.where(pos, depth, 1.0)
    out[:, 1] = np.where(pos, (bs - as_) / safe, 0.0)
    micro = (bid * as_ + ask * bs) / safe
    out[:, 2] = np.where(pos, (micro - mid) / mid * 1e4, 0.0)
    for k, lag in enumerate(TICK_LAGS):
        ref = mid[np.maximum(idx - lag, 0)]
        out[:, 3 + k] = (mid - ref) / ref * 1e4
    oldest = np.maximum(idx - CAPACITY + 1, 0)
    for k, h in enumerate(TIME_HORIZONS_NS):
        j = np.maximum(np.searchsorted(t, t - h, side="left"), oldest)
        ref = mid[j]
        out[:, 7 + k] = (mid - ref) / ref * 1e4
    prev = np.concatenate([mid[:1], mid[:-1]])
    r1 = (mid - prev) / prev * 1e4
    out[:, 10] = np.sqrt(_ewma(r1 * r1, VOL_DECAY, False))
    size = np.where(side != 0, ticks["last_size"].astype(np.float64), 0.0)
    fsig = _decayed_sum(side * size, FLOW_DECAY)
    ftot = _decayed_sum(size, FLOW_DECAY)
    out[:, 11] = np.where(ftot > 0, fsig / np.where(ftot > 0, ftot, 1.0), 0.0)
    traded = side != 0
    last_idx = np.maximum.accumulate(np.where(traded, idx, -1))
    since = (t - t[np.maximum(last_idx, 0)]) / 1e9
    out[:, 12] = np.where(last_idx < 0, TRADE_CAP_S, np.minimum(since, TRADE_CAP_S))
    ed = _ewma(depth, DEPTH_DECAY, True)
    out[:, 13] = np.where(ed > 0, depth / np.where(ed > 0, ed, 1.0) - 1.0, 0.0)
    lp = ticks["last_px"].astype(np.float64)
    last_trade_px = np.where(last_idx >= 0, lp[np.maximum(last_idx, 0)], np.nan)
    out[:, 14] = np.where(np.isnan(last_trade_px), 0.0, (last_trade_px - mid) / mid * 1e4)
    dt = np.concatenate([[0.0], np.diff(t) / 1e6])
    out[:, 15] = _ewma(dt, DT_DECAY, False)
    return out
