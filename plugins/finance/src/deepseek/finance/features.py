"""Streaming tick features: O(1) per tick, fixed memory, and a batch twin that matches exactly.

The 17 features (:data:`FEATURE_NAMES`), computed after each tick from the tick's own fields
(``time_ns`` is the time):

==  =====================  ==============================================================
 0  spread_bps             (ask - bid) / mid * 1e4
 1  imbalance              queue imbalance at the top: (bid_size - ask_size) / their sum
 2  microprice_bps         (microprice - mid) / mid * 1e4, microprice size-weighted
 3  book_imbalance         (bid_depth - ask_depth) / their sum: imbalance over the best N
                           levels of the rebuilt book (the top when there is no book)
4-7 ret_{1,5,20,100}t      (mid - mid L ticks before) / that mid * 1e4 (first mid if fewer)
8-10 ret_{100ms,1s,10s}    (mid - ref) / ref * 1e4, ref the mid as of ``time_ns - H``
                           (first mid if the history is shorter), within H/100 (below)
11  vol_bps                sqrt of the EWMA (0.95 per tick) of squared 1-tick returns
12  flow_imbalance         EWMA (0.9 per tick) of signed trade size / EWMA of trade size
13  since_trade_s          seconds since the last trade, capped at 60 (60 before any)
14  depth_ratio            (bid_size + ask_size) / its EWMA (0.99 per tick) - 1
15  last_trade_bps         (last trade price - mid) / mid * 1e4 (0 before any trade)
16  dt_ms                  EWMA (0.9 per tick) of the time between ticks in ms
==  =====================  ==============================================================

Time-horizon returns are over time, however many ticks fall in the window: time is cut into
buckets of ``H / 100`` per horizon, and ``ref`` is the mid as of the end of the bucket that
holds ``time_ns - H`` (the last mid before that instant), so the reference instant lies in
``[time_ns - H, time_ns - H + H/100)``: exact to 1 % of the horizon (1 ms for 100 ms, 100 ms
for 10 s). Each horizon keeps a ring of the last 128 bucket mids, filled forward over quiet
buckets, so the update is O(1) amortised and the memory fixed. Tick-count returns keep a ring
of the last 128 mids.

Arithmetic is float64 with only +, -, *, / and sqrt, so :func:`batch_features` and the
streaming update agree bit for bit; features are handed to models as float32. Times must
not go backwards (readers enforce it).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from deepseek.finance.errors import FinanceError
from deepseek.finance.ticks import tick_args

FEATURE_NAMES = (
    "spread_bps", "imbalance", "microprice_bps", "book_imbalance", "ret_1t", "ret_5t",
    "ret_20t", "ret_100t", "ret_100ms", "ret_1s", "ret_10s", "vol_bps", "flow_imbalance",
    "since_trade_s", "depth_ratio", "last_trade_bps", "dt_ms",
)
N_FEATURES = len(FEATURE_NAMES)
TICK_LAGS = (1, 5, 20, 100)
TIME_HORIZONS_NS = (100_000_000, 1_000_000_000, 10_000_000_000)
BUCKETS_PER_HORIZON = 100
BUCKET_NS = tuple(h // BUCKETS_PER_HORIZON for h in TIME_HORIZONS_NS)
RING = 128  # >= max(TICK_LAGS) + 1 and >= BUCKETS_PER_HORIZON + 1; a power of two
MASK = RING - 1
VOL_DECAY, FLOW_DECAY, DEPTH_DECAY, DT_DECAY = 0.95, 0.9, 0.99, 0.9
TRADE_CAP_S = 60.0

# float state: [0] ewma_var, [1] flow_signed, [2] flow_total, [3] ewma_depth, [4] ewma_dt,
#              [5] last_px, [6] first mid, [F_TICKS:+RING] ring of mids by tick,
#              [F_BUCKETS + k*RING:+RING] ring of bucket mids of horizon k
# int state:   [0] n ticks, [1] last_trade_ns (-1: none), [2] previous time,
#              [4+k] last bucket of horizon k, [8+k] first bucket of horizon k
F_TICKS = 8
F_BUCKETS = F_TICKS + RING
F_SIZE = F_BUCKETS + len(TIME_HORIZONS_NS) * RING
I_SIZE = 12


def new_state() -> tuple[np.ndarray, np.ndarray]:
    """A fresh feature state: the float and integer state arrays of the streaming features."""
    fs = np.zeros(F_SIZE, dtype=np.float64)
    is_ = np.zeros(I_SIZE, dtype=np.int64)
    fs[5] = np.nan
    is_[1] = -1
    return fs, is_


@njit(cache=True, nogil=True)
def update_features(fs, is_, out, time_ns, bid, ask, bid_size, ask_size, bid_depth, ask_depth,
                    last_px, last_size, side):  # pragma: no cover - compiled
    """Advance the state by one tick and write the 17 features into ``out``."""
    n = is_[0]
    mid = (bid + ask) * 0.5
    prev_mid = fs[F_TICKS + ((n - 1) & MASK)] if n > 0 else mid
    fs[F_TICKS + (n & MASK)] = mid
    if n == 0:
        fs[6] = mid
    depth = bid_size + ask_size
    out[0] = (ask - bid) / mid * 1e4
    if depth > 0.0:
        out[1] = (bid_size - ask_size) / depth
        micro = (bid * ask_size + ask * bid_size) / depth
        out[2] = (micro - mid) / mid * 1e4
    else:
        out[1] = 0.0
        out[2] = 0.0
    book = bid_depth + ask_depth
    out[3] = (bid_depth - ask_depth) / book if book > 0.0 else 0.0
    for k in range(4):
        j = n - TICK_LAGS[k]
        if j < 0:
            j = 0
        ref = fs[F_TICKS + (j & MASK)]
        out[4 + k] = (mid - ref) / ref * 1e4
    for k in range(3):
        w = BUCKET_NS[k]
        base = F_BUCKETS + k * RING
        b = time_ns // w
        if n == 0:
            is_[8 + k] = b
        else:
            last = is_[4 + k]
            if b > last:  # carry the last bucket's mid over the quiet buckets in between
                carried = fs[base + (last & MASK)]
                start = last + 1
                if b - start > RING:
                    start = b - RING
                for q in range(start, b):
                    fs[base + (q & MASK)] = carried
            elif b < last:
                b = last  # a time going backwards stays in the current bucket
        is_[4 + k] = b
        fs[base + (b & MASK)] = mid
        q = b - BUCKETS_PER_HORIZON
        ref = fs[6] if q < is_[8 + k] else fs[base + (q & MASK)]
        out[8 + k] = (mid - ref) / ref * 1e4
    r1 = (mid - prev_mid) / prev_mid * 1e4
    fs[0] = VOL_DECAY * fs[0] + (1.0 - VOL_DECAY) * (r1 * r1)
    out[11] = np.sqrt(fs[0])
    traded = side != 0
    size = last_size if traded else 0.0
    fs[1] = FLOW_DECAY * fs[1] + side * size
    fs[2] = FLOW_DECAY * fs[2] + size
    out[12] = fs[1] / fs[2] if fs[2] > 0.0 else 0.0
    if traded:
        is_[1] = time_ns
        fs[5] = last_px
    if is_[1] < 0:
        out[13] = TRADE_CAP_S
    else:
        s = (time_ns - is_[1]) / 1e9
        out[13] = s if s < TRADE_CAP_S else TRADE_CAP_S
    if n == 0:
        fs[3] = depth
    else:
        fs[3] = DEPTH_DECAY * fs[3] + (1.0 - DEPTH_DECAY) * depth
    out[14] = depth / fs[3] - 1.0 if fs[3] > 0.0 else 0.0
    lp = fs[5]
    out[15] = (lp - mid) / mid * 1e4 if lp == lp else 0.0
    dt = (time_ns - is_[2]) / 1e6 if n > 0 else 0.0
    fs[4] = DT_DECAY * fs[4] + (1.0 - DT_DECAY) * dt
    out[16] = fs[4]
    is_[2] = time_ns
    is_[0] = n + 1


class StreamingFeatures:
    """Per-tick feature state. ``update(...)`` returns the (reused) float32 feature vector."""

    names = FEATURE_NAMES
    n_features = N_FEATURES

    def __init__(self) -> None:
        self.fs, self.istate = new_state()
        self.out = np.zeros(N_FEATURES, dtype=np.float32)

    def reset(self) -> None:
        """Start again from a fresh state (no tick seen)."""
        self.fs, self.istate = new_state()

    def update(self, time_ns: int, bid: float, ask: float, bid_size: float, ask_size: float,
               bid_depth: float | None = None, ask_depth: float | None = None,
               last_px: float = np.nan, last_size: float = 0.0, side: int = 0) -> np.ndarray:
        """Features after one tick; depths default to the top sizes (no book)."""
        update_features(self.fs, self.istate, self.out, time_ns, bid, ask, bid_size, ask_size,
                        bid_size if bid_depth is None else bid_depth,
                        ask_size if ask_depth is None else ask_depth, last_px, last_size, side)
        return self.out

    def update_tick(self, t: np.void) -> np.ndarray:
        """Update with one tick (a row of the tick array); returns the 17 features."""
        return self.update(*tick_args(t))

    def run(self, ticks: np.ndarray) -> np.ndarray:
        """Features after every tick of a TICK_DTYPE array, as an (N, 17) float32 array."""
        return _run_stream(self.fs, self.istate, ticks["time_ns"], ticks["bid"], ticks["ask"],
                           ticks["bid_size"], ticks["ask_size"], ticks["bid_depth"],
                           ticks["ask_depth"], ticks["last_px"], ticks["last_size"],
                           ticks["side"].astype(np.int64))


@njit(cache=True)
def _run_stream(fs, is_, t, bid, ask, bs, as_, bd, ad, lp, ls,
                side):  # pragma: no cover - compiled
    out = np.zeros((t.shape[0], N_FEATURES), dtype=np.float32)
    for i in range(t.shape[0]):
        update_features(fs, is_, out[i], t[i], bid[i], ask[i], bs[i], as_[i], bd[i], ad[i],
                        lp[i], ls[i], side[i])
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
    """The same 17 features over a whole TICK_DTYPE array, vectorised where the maths allows.

    Equal, bit for bit, to feeding the ticks one by one through :class:`StreamingFeatures`.
    """
    n = len(ticks)
    t = ticks["time_ns"].astype(np.int64)
    if n > 1 and bool((np.diff(t) < 0).any()):
        i = int(np.argmax(np.diff(t) < 0)) + 1
        raise FinanceError(f"tick {i}: time_ns goes backwards ({t[i]} < {t[i - 1]}); features "
                           "need ticks in time order (read with order='clamp' or 'drop')")
    bid, ask = ticks["bid"].astype(np.float64), ticks["ask"].astype(np.float64)
    bs, as_ = ticks["bid_size"].astype(np.float64), ticks["ask_size"].astype(np.float64)
    bd, ad = ticks["bid_depth"].astype(np.float64), ticks["ask_depth"].astype(np.float64)
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
    book = bd + ad
    out[:, 3] = np.where(book > 0, (bd - ad) / np.where(book > 0, book, 1.0), 0.0)
    for k, lag in enumerate(TICK_LAGS):
        ref = mid[np.maximum(idx - lag, 0)]
        out[:, 4 + k] = (mid - ref) / ref * 1e4
    for k, w in enumerate(BUCKET_NS):
        # the mid as of the end of the bucket holding t - H: the last tick before that end
        end = (t // w - BUCKETS_PER_HORIZON + 1) * w
        j = np.maximum(np.searchsorted(t, end, side="left") - 1, 0)
        ref = mid[j]
        out[:, 8 + k] = (mid - ref) / ref * 1e4
    prev = np.concatenate([mid[:1], mid[:-1]])
    r1 = (mid - prev) / prev * 1e4
    out[:, 11] = np.sqrt(_ewma(r1 * r1, VOL_DECAY, False))
    size = np.where(side != 0, ticks["last_size"].astype(np.float64), 0.0)
    fsig = _decayed_sum(side * size, FLOW_DECAY)
    ftot = _decayed_sum(size, FLOW_DECAY)
    out[:, 12] = np.where(ftot > 0, fsig / np.where(ftot > 0, ftot, 1.0), 0.0)
    traded = side != 0
    last_idx = np.maximum.accumulate(np.where(traded, idx, -1))
    since = (t - t[np.maximum(last_idx, 0)]) / 1e9
    out[:, 13] = np.where(last_idx < 0, TRADE_CAP_S, np.minimum(since, TRADE_CAP_S))
    ed = _ewma(depth, DEPTH_DECAY, True)
    out[:, 14] = np.where(ed > 0, depth / np.where(ed > 0, ed, 1.0) - 1.0, 0.0)
    lp = ticks["last_px"].astype(np.float64)
    last_trade_px = np.where(last_idx >= 0, lp[np.maximum(last_idx, 0)], np.nan)
    out[:, 15] = np.where(np.isnan(last_trade_px), 0.0, (last_trade_px - mid) / mid * 1e4)
    dt = np.concatenate([[0.0], np.diff(t) / 1e6])
    out[:, 16] = _ewma(dt, DT_DECAY, False)
    return out
