"""A latency-aware tick backtester: decisions become orders that meet the recorded market only
after the feed and order latencies, and fill by rules that never favour the strategy.

The event loop (:func:`_simulate`, numba-compiled) runs on one clock, the ticks' ``time_ns``,
and merges three time-ordered streams:

* **market**: tick ``j`` happens at ``time_ns[j]``; the book is then the tick's top of book,
  and a trade in the tick (``side`` != 0) can fill a resting limit order;
* **observations**: the strategy sees tick ``i`` at ``time_ns[i] + feed latency``, takes the
  decision made on it (from the fast path, which only ever saw ticks up to ``i``) and may send
  one message (an order or a cancel);
* **arrivals**: a message reaches the exchange ``order latency`` after it was sent and meets
  the book as of then (the last tick at or before its arrival).

Ties go market first, then arrivals, then observations: with zero latency an order still
meets the book of the tick that triggered it, never an earlier one. Latencies are constant or
drawn from a recorded distribution; the feed and the order line are FIFO (a message never
overtakes an earlier one), as TCP connections are.

Fill rules:

* a **market** order fills its whole quantity at the touch of the book it meets (ask for a
  buy, bid for a sell) and pays the taker fee; fills larger than the displayed touch size are
  counted (``over_touch_fills``): the real cost of walking the book is not modelled;
* a **limit** order priced through the touch it meets is marketable and fills as a market
  order at the touch; otherwise it rests. Its queue position is conservative: the displayed
  size at its price when it arrives (unknown, so infinite, when it is behind the best level),
  shrunk only by trades at its price and capped by the displayed size (cancellations ahead of
  it are assumed to come from behind it). It fills when a trade prints through its price (all
  of it), when a trade at its price exceeds the queue ahead (the excess), or when the opposite
  touch moves strictly through its price; it pays the maker fee (negative: a rebate);
* messages still on the way when the data ends are not filled (``unsent_at_end``).

The strategy turns the decision (-1 down, 0 flat, +1 up) into a target position: ``size``
in the called direction; a flat call keeps the position until ``hold_ticks`` observations
have passed since the last up/down call, then targets flat. Market mode sends the difference
between target and committed position (filled + in flight) as one market order. Limit mode
keeps at most one working order, posted at the observed touch on its own side (buy at the
bid, sell at the ask), cancelled when the target turns against it or after ``limit_ttl_us``.
The position never exceeds ``max_position``; when equity falls ``max_loss`` below the start
the strategy cancels, flattens with a market order and stops (``halted_ns``).

The strategy learns of its own fills and cancels without delay (latency is charged on the
way out, not on the acknowledgement). Equity is cash plus position marked to the mid, sampled
after each tick (before the next one); fees are charged per fill in quote currency.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from numba import njit

from deepseek.finance.book import GAP, _lower_bound, _set_side
from deepseek.finance.errors import FinanceError

FILL_DTYPE = np.dtype([("time_ns", "<i8"), ("side", "i1"), ("price", "<f8"), ("qty", "<f8"),
                       ("fee", "<f8"), ("maker", "?"), ("order", "<i8")])
ORDER_TYPES = ("market", "limit")
SIZINGS = ("quantity", "notional", "equity")
_INF = np.int64(2**62)

# counters returned by _simulate, by index
COUNTERS = ("orders_sent", "cancels_sent", "market_fills", "limit_fills", "over_touch_fills",
            "cancelled", "unsent_at_end", "blocked_by_position", "invalid_decisions",
            "halted_ns")


@dataclass
class BacktestConfig:
    """How decisions become orders, and what the market charges for them.

    ``feed_latency_us``: from a tick's time to the strategy seeing it (with a capture on the
    receive clock the network delay is already in the times: put only your processing here).
    ``order_latency_us``: from the decision to the order's arrival at the exchange;
    ``latency_samples_us`` replaces it with draws from a recorded distribution (seeded).
    Fees are in basis points of the traded notional (a negative maker fee is a rebate).
    ``sizing`` says what ``size`` and ``max_position`` count: ``quantity`` (units of the
    instrument), ``notional`` (quote currency at the mid when the position is taken) or
    ``equity`` (a fraction of the equity then: 0.5 = half of it); a position is sized once,
    when the strategy takes a direction, and held at that size (no rebalancing while the
    direction holds). ``capital``: the starting equity, the base of returns (default: the
    ``max_position`` notional at the first mid, unleveraged; required with ``equity``)."""


    order_type: str = "market"
    size: float = 1.0
    max_position: float = 1.0
    hold_ticks: int = 10
    feed_latency_us: float = 0.0
    order_latency_us: float = 0.0
    latency_samples_us: list[float] | None = None
    taker_fee_bps: float = 4.0
    maker_fee_bps: float = 0.0
    limit_ttl_us: float = 1_000_000.0
    max_loss: float | None = None
    capital: float | None = None
    seed: int = 0
    sizing: str = "quantity"

    def __post_init__(self) -> None:
        if self.order_type not in ORDER_TYPES:
            raise FinanceError(f"order_type={self.order_type!r}: use market or limit")
        if self.sizing not in SIZINGS:
            raise FinanceError(f"sizing={self.sizing!r}: use quantity, notional or equity")
        if self.sizing == "equity" and self.capital is None:
            raise FinanceError("sizing='equity' sizes positions as a fraction of equity: give "
                               "the starting capital (capital=...)")
        for name in ("size", "max_position"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise FinanceError(f"{name}={v}: give a finite quantity > 0")
        if self.size > self.max_position:
            raise FinanceError(f"size {self.size} exceeds max_position {self.max_position}")
        if int(self.hold_ticks) != self.hold_ticks or self.hold_ticks < 0:
            raise FinanceError(f"hold_ticks={self.hold_ticks}: give a whole number >= 0")
        for name in ("feed_latency_us", "order_latency_us", "limit_ttl_us"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise FinanceError(f"{name}={v}: give a finite latency >= 0 µs")
        if self.latency_samples_us is not None:
            s = np.asarray(self.latency_samples_us, dtype=np.float64)
            if s.ndim != 1 or len(s) == 0 or not np.all(np.isfinite(s)) or np.any(s < 0):
                raise FinanceError("latency_samples_us: give a non-empty list of finite "
                                   "latencies >= 0 µs")
        for name in ("taker_fee_bps", "maker_fee_bps"):
            v = getattr(self, name)
            if not (math.isfinite(v) and -100 < v < 1000):
                raise FinanceError(f"{name}={v}: give a fee in basis points (-100 < fee < 1000)")
        if self.max_loss is not None and not (math.isfinite(self.max_loss)
                                              and self.max_loss > 0):
            raise FinanceError(f"max_loss={self.max_loss}: give a loss > 0 in quote currency")
        if self.capital is not None and not (math.isfinite(self.capital) and self.capital > 0):
            raise FinanceError(f"capital={self.capital}: give an amount > 0")

    def sizing_text(self, capital: float) -> str:
        """How positions were sized, in words (stated beside every set of metrics)."""
        unit = {"quantity": "units", "notional": "quote currency at the mid",
                "equity": "x equity at the mid"}[self.sizing]
        return (f"{self.sizing} sizing: {self.size:g} {unit} per position (at most "
                f"{self.max_position:g}), sized when a direction is taken and held; starting "
                f"capital {capital:.10g}")

    def without_latency(self) -> BacktestConfig:
        """The same strategy, fees and limits with no feed or order latency."""
        return replace(self, feed_latency_us=0.0, order_latency_us=0.0,
                       latency_samples_us=None)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as JSON-ready data (recorded latencies summarised: count, p50, p99)."""
        d = asdict(self)
        if self.latency_samples_us is not None:
            s = np.asarray(self.latency_samples_us, dtype=np.float64)
            d["latency_samples_us"] = {"n": int(len(s)), "p50": float(np.median(s)),
                                       "p99": float(np.percentile(s, 99))}
        return d


@dataclass
class BacktestResult:
    """Equity and position after each tick, the fills, the counters and the config."""

    time_ns: np.ndarray
    equity: np.ndarray
    position: np.ndarray
    fills: np.ndarray
    counters: dict[str, int]
    config: BacktestConfig
    capital: float
    metrics: dict[str, float] = field(default_factory=dict)

    def performance(self, period_s: float | str | None = "auto") -> dict[str, Any]:
        """The trading metrics (:func:`deepseek.finance.metrics.trading`) of this run, from
        its capital, plus its counters."""
        from deepseek.finance.metrics import trading

        out = trading({"time_ns": self.time_ns, "equity": self.equity,
                       "position": self.position}, self.fills, capital=self.capital,
                      period_s=period_s)
        out["sizing"] = self.config.sizing_text(self.capital)
        out["counters"] = dict(self.counters)
        return out

    def summary(self) -> dict[str, Any]:
        """Ticks, fills, final position, capital, counters, metrics and configuration of the run."""
        return {"ticks": int(len(self.time_ns)), "fills": int(len(self.fills)),
                "final_position": float(self.position[-1]) if len(self.position) else 0.0,
                "capital": self.capital, "counters": dict(self.counters),
                "metrics": dict(self.metrics), "config": self.config.to_dict()}


def check_ticks(ticks: np.ndarray, source: str = "ticks") -> None:
    """Refuse what would make a silently wrong equity curve: no ticks, times going
    backwards, non-positive or non-finite prices, crossed quotes, bad sizes or trades; the
    error names the first offending row."""
    n = len(ticks)
    if n == 0:
        raise FinanceError(f"{source}: no ticks to backtest")
    t = ticks["time_ns"]
    back = np.flatnonzero(np.diff(t) < 0)
    if len(back):
        i = int(back[0]) + 1
        raise FinanceError(f"{source}, row {i}: time goes backwards ({int(t[i])} < "
                           f"{int(t[i - 1])}); sort the ticks or read with order='drop'")
    bid, ask = ticks["bid"], ticks["ask"]
    checks = [
        (~(np.isfinite(bid) & np.isfinite(ask)) | (bid <= 0) | (ask <= 0),
         "bid/ask must be finite and > 0"),
        (bid >= ask, "crossed or locked quote (bid >= ask)"),
        (~(np.isfinite(ticks["bid_size"]) & np.isfinite(ticks["ask_size"]))
         | (ticks["bid_size"] < 0) | (ticks["ask_size"] < 0), "sizes must be finite and >= 0"),
        ((ticks["side"] != 0) & ~((ticks["last_px"] > 0) & np.isfinite(ticks["last_px"])
                                  & (ticks["last_size"] > 0)
                                  & np.isfinite(ticks["last_size"])),
         "a trade needs a finite price and size > 0"),
        (~np.isin(ticks["side"], (-1, 0, 1)), "side must be -1, 0 or 1"),
    ]
    for bad, what in checks:
        idx = np.flatnonzero(bad)
        if len(idx):
            i = int(idx[0])
            r = ticks[i]
            raise FinanceError(f"{source}, row {i} (time_ns {int(r['time_ns'])}): {what} "
                               f"(bid={r['bid']}, ask={r['ask']}, bid_size={r['bid_size']}, "
                               f"ask_size={r['ask_size']}, side={r['side']}, "
                               f"last_px={r['last_px']}, last_size={r['last_size']}); "
                               f"{len(idx)} row(s) like it")


def time_gaps(ticks: np.ndarray, max_gap_s: float) -> list[tuple[int, float]]:
    """Rows that follow a silence longer than ``max_gap_s`` seconds: (row, gap in s)."""
    dt = np.diff(ticks["time_ns"]) / 1e9
    return [(int(i) + 1, float(dt[i])) for i in np.flatnonzero(dt > max_gap_s)]


@njit(inline="always")
def _push(mi, mf, k, at, last_arrival, kind, side, px, qty, oid):  # pragma: no cover
    """Message ``k`` on the FIFO order line: it arrives at ``at`` or after the message before
    it, whichever is later; returns its arrival."""
    at = max(at, last_arrival)
    mi[k, 0] = at
    mi[k, 1] = kind
    mi[k, 2] = side
    mi[k, 3] = oid
    mf[k, 0] = px
    mf[k, 1] = qty
    return at


@njit(inline="always")
def _fill(ft, fs, fp, fq, ff, fm, fo, k, t, side, px, qty, fee, maker,
          oid):  # pragma: no cover - compiled
    """Fill ``k`` into the fill columns (while they have room); returns k + 1."""
    if k < len(ft):
        ft[k] = t
        fs[k] = side
        fp[k] = px
        fq[k] = qty
        ff[k] = fee
        fm[k] = maker
        fo[k] = oid
    return k + 1


@njit(inline="always")
def _level_qty(keys, qty, state, sign, px):  # pragma: no cover - compiled
    """The quantity of the ladder's level at price ``px`` (0 when there is none)."""
    key = sign * px
    lo = _lower_bound(keys, state[0], key)
    if lo < state[0] and keys[lo] == key:
        return qty[lo]
    return 0.0


@njit(cache=True, nogil=True)
def _simulate(t, bid, ask, bsz, asz, last_px, last_sz, side, decision, feed_lat, order_lat,
              limit_mode, size, max_pos, hold_ticks, taker, maker, ttl, max_loss, sizing,
              capital, equity, position, fills_t, fills_side, fills_px, fills_qty, fills_fee,
              fills_maker, fills_order, counters, ev_tick, ev_side, ev_lv, bl, al, lst,
              scratch):  # pragma: no cover - compiled
    n = len(t)
    # L2 replay (events given): the rebuilt book's changes, applied before their tick, keep
    # a ladder per side; a resting order's queue is the level at its price on arrival and
    # shrinks with it (cancellations ahead assumed to come from behind, as at the touch)
    n_ev = len(ev_tick)
    e = 0
    bk, bq, ak, aq = bl[0], bl[1], al[0], al[1]
    bst, ast = lst[0:2], lst[2:4]
    sk, sq = scratch[0], scratch[1]
    inf = np.int64(2**62)
    n_feed = len(feed_lat)
    n_ord = len(order_lat)
    cap = 2 * n + 8
    # message line (FIFO): mi = (arrival, kind 0 market / 1 limit / 2 cancel, side, id),
    # mf = (price, quantity)
    mi = np.empty((cap, 4), np.int64)
    mf = np.empty((cap, 2), np.float64)
    head = 0
    tail = 0
    last_arrival = np.int64(-inf)
    # the resting limit order at the exchange
    r_live = False
    r_id = -1
    r_side = 0
    r_px = 0.0
    r_rem = 0.0
    r_queue = 0.0
    # the strategy
    pos = 0.0
    cash = 0.0
    in_flight_mkt = 0.0     # signed quantity of market orders sent, not yet arrived
    w_live = False          # a working limit order (sent, not yet done)
    w_id = -1
    w_side = 0
    w_sent = np.int64(0)
    w_cancelling = False
    target_dir = 0
    sized_dir = 0           # the direction the units below were sized for
    units = 0.0             # position size in units, fixed when a direction is taken
    max_units = max_pos
    last_call = -(1 << 40)
    halted = False
    next_id = 0
    n_fills = 0
    j = 0                   # next market tick
    io = 0                  # next observation
    last_obs = np.int64(-inf)
    k_lat = 0
    cur_bid = 0.0
    cur_ask = 0.0
    cur_bsz = 0.0
    cur_asz = 0.0
    t_end = t[n - 1] if n > 0 else inf
    while True:
        t_m = t[j] if j < n else inf
        t_a = mi[head, 0] if head < tail else inf
        if io < n:
            t_o = t[io] + feed_lat[io % n_feed]
            if t_o < last_obs:
                t_o = last_obs
        else:
            t_o = inf
        if j == n and min(t_a, t_o) > t_end:
            break  # what is left happens after the data ends
        if t_m <= t_a and t_m <= t_o:
            # ---- market tick j
            if j > 0:
                equity[j - 1] = cash + pos * 0.5 * (cur_bid + cur_ask)
                position[j - 1] = pos
            cur_bid = bid[j]
            cur_ask = ask[j]
            cur_bsz = bsz[j]
            cur_asz = asz[j]
            touched = False
            while e < n_ev and ev_tick[e] <= j:
                sd = ev_side[e]
                if sd == 0:
                    bst[0] = 0
                    bst[1] = 0
                    ast[0] = 0
                    ast[1] = 0
                elif sd > 0:
                    _set_side(bk, bq, bst, ev_lv[e:e + 1], 1.0, sk, sq)
                else:
                    _set_side(ak, aq, ast, ev_lv[e:e + 1], -1.0, sk, sq)
                e += 1
                touched = True
            if touched and r_live and bst[0] > 0 and ast[0] > 0:
                lvl = _level_qty(bk, bq, bst, 1.0, r_px) if r_side > 0 else \
                    _level_qty(ak, aq, ast, -1.0, r_px)
                if lvl < r_queue:
                    r_queue = lvl
            if r_live:
                q = 0.0
                s = side[j]
                if r_side > 0:
                    if s < 0 and last_px[j] < r_px:
                        q = r_rem
                    elif s < 0 and last_px[j] == r_px:
                        r_queue -= last_sz[j]
                        if r_queue < 0.0:
                            q = min(r_rem, -r_queue)
                            r_queue = 0.0
                    if q < r_rem and cur_ask < r_px:
                        q = r_rem
                    if cur_bid == r_px:
                        r_queue = min(r_queue, cur_bsz)
                    elif cur_bid < r_px:
                        r_queue = 0.0
                else:
                    if s > 0 and last_px[j] > r_px:
                        q = r_rem
                    elif s > 0 and last_px[j] == r_px:
                        r_queue -= last_sz[j]
                        if r_queue < 0.0:
                            q = min(r_rem, -r_queue)
                            r_queue = 0.0
                    if q < r_rem and cur_bid > r_px:
                        q = r_rem
                    if cur_ask == r_px:
                        r_queue = min(r_queue, cur_asz)
                    elif cur_ask > r_px:
                        r_queue = 0.0
                if q > 0.0:
                    fee = q * r_px * maker
                    cash -= r_side * q * r_px + fee
                    pos += r_side * q
                    r_rem -= q
                    n_fills = _fill(fills_t, fills_side, fills_px, fills_qty, fills_fee,
                                    fills_maker, fills_order, n_fills, t_m, r_side, r_px, q,
                                    fee, True, r_id)
                    counters[3] += 1
                    if r_rem <= 1e-12:
                        r_live = False
                        if w_live and w_id == r_id:
                            w_live = False
            j += 1
        elif t_a <= t_o:
            # ---- a message reaches the exchange
            t_arr, kind, s, oid = mi[head, 0], mi[head, 1], mi[head, 2], mi[head, 3]
            px, qty = mf[head, 0], mf[head, 1]
            head += 1
            if kind == 2:  # cancel
                if r_live and r_id == oid:
                    r_live = False
                    counters[5] += 1
                if w_live and w_id == oid:
                    w_live = False
                continue
            touch = cur_ask if s > 0 else cur_bid
            marketable = kind == 0 or (s > 0 and px >= cur_ask) or (s < 0 and px <= cur_bid)
            if marketable:
                fee = qty * touch * taker
                cash -= s * qty * touch + fee
                pos += s * qty
                if qty > (cur_asz if s > 0 else cur_bsz):
                    counters[4] += 1
                n_fills = _fill(fills_t, fills_side, fills_px, fills_qty, fills_fee,
                                fills_maker, fills_order, n_fills, t_arr, s, touch, qty, fee,
                                False, oid)
                counters[2] += 1
                if kind == 0:
                    in_flight_mkt -= s * qty
                elif w_live and w_id == oid:
                    w_live = False
            else:
                r_live = True
                r_id = oid
                r_side = s
                r_px = px
                r_rem = qty
                if n_ev > 0 and bst[0] > 0 and ast[0] > 0:  # L2: the level at its price
                    r_queue = _level_qty(bk, bq, bst, 1.0, px) if s > 0 else \
                        _level_qty(ak, aq, ast, -1.0, px)
                elif s > 0:
                    r_queue = cur_bsz if px == cur_bid else (0.0 if px > cur_bid else 1e300)
                else:
                    r_queue = cur_asz if px == cur_ask else (0.0 if px < cur_ask else 1e300)
        else:
            # ---- the strategy observes tick io
            now = t_o
            last_obs = t_o
            i = io
            io += 1
            d = decision[i]
            if d < -1 or d > 1:
                counters[8] += 1
                d = 0
            mid_i = 0.5 * (bid[i] + ask[i])
            if not halted and max_loss > 0.0 and cash + pos * mid_i <= -max_loss:
                halted = True
                counters[9] = now
            if halted:  # cancel the working order, then flatten with market orders
                target_dir = 0
            elif d != 0:
                target_dir = d
                last_call = i
            elif i - last_call >= hold_ticks:
                target_dir = 0
            if target_dir != sized_dir:  # size a new position once, not on every tick
                sized_dir = target_dir
                if sizing == 0:
                    units = size
                    max_units = max_pos
                else:
                    base = 1.0 if sizing == 1 else max(capital + cash + pos * mid_i, 0.0)
                    units = size * base / mid_i
                    max_units = max_pos * base / mid_i
            target = target_dir * units
            if abs(target) > max_units:
                target = max_units if target > 0 else -max_units
            if tail >= cap - 2:
                continue
            want = target - pos
            if w_live:  # limit mode: one working order at a time
                if not w_cancelling and (halted or w_side * want <= 1e-12
                                         or now - w_sent >= ttl):
                    at = now + order_lat[k_lat % n_ord]
                    k_lat += 1
                    last_arrival = _push(mi, mf, tail, at, last_arrival, 2, 0, 0.0, 0.0, w_id)
                    tail += 1
                    counters[1] += 1
                    w_cancelling = True
                continue
            if halted or not limit_mode:
                delta = target - (pos + in_flight_mkt)
                if abs(delta) > 1e-12:
                    at = now + order_lat[k_lat % n_ord]
                    k_lat += 1
                    last_arrival = _push(mi, mf, tail, at, last_arrival, 0,
                                         1 if delta > 0 else -1, 0.0, abs(delta), next_id)
                    next_id += 1
                    tail += 1
                    in_flight_mkt += delta
                    counters[0] += 1
                continue
            if abs(want) > 1e-12:
                sd = 1 if want > 0 else -1
                if abs(pos + want) > max_units + 1e-12:
                    counters[7] += 1
                    continue
                at = now + order_lat[k_lat % n_ord]
                k_lat += 1
                last_arrival = _push(mi, mf, tail, at, last_arrival, 1, sd,
                                     bid[i] if sd > 0 else ask[i], abs(want), next_id)
                w_live = True
                w_id = next_id
                w_side = sd
                w_sent = now
                w_cancelling = False
                next_id += 1
                tail += 1
                counters[0] += 1
    if n > 0:
        equity[n - 1] = cash + pos * 0.5 * (cur_bid + cur_ask)
        position[n - 1] = pos
    counters[6] = tail - head
    return n_fills


def backtest(ticks: np.ndarray, decisions: np.ndarray, config: BacktestConfig | None = None,
             *, source: str = "ticks",
             l2: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> BacktestResult:
    """Run the event loop over ``ticks`` (TICK_DTYPE, checked by :func:`check_ticks`) with
    one decision per tick (-1/0/+1, made on that tick; anything else counts as invalid and
    is treated as flat).

    ``l2``: an L2 replay, the rebuilt book's changes between the ticks
    (:meth:`deepseek.finance.ticks.CaptureTicks.l2_events`, or :func:`l2_replay`): a
    resting limit order's queue is then the displayed quantity at its own price, at any
    depth, when it arrives, and shrinks as that level does, instead of being unknown
    (infinite) behind the touch."""
    cfg = config or BacktestConfig()
    check_ticks(ticks, source)
    dec = np.asarray(decisions)
    if dec.shape != (len(ticks),):
        raise FinanceError(f"{len(dec)} decisions for {len(ticks)} ticks: give one per tick")
    dec = dec.astype(np.int64)
    n = len(ticks)
    feed = np.array([int(round(cfg.feed_latency_us * 1e3))], dtype=np.int64)
    if cfg.latency_samples_us is not None:
        rng = np.random.default_rng(cfg.seed)
        samples = np.asarray(cfg.latency_samples_us, dtype=np.float64)
        order = np.round(rng.choice(samples, size=2 * n + 8) * 1e3).astype(np.int64)
    else:
        order = np.array([int(round(cfg.order_latency_us * 1e3))], dtype=np.int64)
    mid0 = 0.5 * (float(ticks["bid"][0]) + float(ticks["ask"][0]))
    if cfg.capital is not None:
        capital = cfg.capital
    else:
        capital = cfg.max_position * (mid0 if cfg.sizing == "quantity" else 1.0)
    equity = np.empty(n, dtype=np.float64)
    position = np.empty(n, dtype=np.float64)
    cap = 3 * n + 16
    f = [np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.float64),
         np.empty(cap, np.float64), np.empty(cap, np.float64), np.empty(cap, np.bool_),
         np.empty(cap, np.int64)]
    counters = np.zeros(len(COUNTERS), dtype=np.int64)
    ev_tick, ev_side, ev_lv = l2 if l2 is not None else (
        np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros((0, 2)))
    if not (len(ev_tick) == len(ev_side) == len(ev_lv)) or (
            len(ev_tick) and (np.any(np.diff(ev_tick) < 0) or ev_tick[-1] > n)):
        raise FinanceError("l2: give (tick index, side, levels) rows in tick order, as "
                           "CaptureTicks.l2_events() returns them, for these ticks")
    per_side = [int(np.count_nonzero(ev_side == sgn)) for sgn in (1, -1)]
    room = 2 * max(per_side) + 2 * GAP + 64
    bl, al = np.zeros((2, room)), np.zeros((2, room))
    scratch, lst = np.zeros((2, room)), np.zeros(4, dtype=np.int64)
    col = {k: np.ascontiguousarray(ticks[k]) for k in
           ("time_ns", "bid", "ask", "bid_size", "ask_size", "last_px", "last_size")}
    n_fills = _simulate(col["time_ns"], col["bid"], col["ask"], col["bid_size"],
                        col["ask_size"], col["last_px"], col["last_size"],
                        ticks["side"].astype(np.int64), dec, feed, order,
                        cfg.order_type == "limit", float(cfg.size), float(cfg.max_position),
                        int(cfg.hold_ticks), cfg.taker_fee_bps * 1e-4,
                        cfg.maker_fee_bps * 1e-4, int(round(cfg.limit_ttl_us * 1e3)),
                        float(cfg.max_loss or 0.0), SIZINGS.index(cfg.sizing),
                        float(capital), equity, position, *f, counters,
                        np.ascontiguousarray(ev_tick, dtype=np.int64),
                        np.ascontiguousarray(ev_side, dtype=np.int8),
                        np.ascontiguousarray(ev_lv, dtype=np.float64), bl, al, lst, scratch)
    if n_fills > cap:  # cannot happen: at most one fill per tick and one per message
        raise FinanceError(f"internal: {n_fills} fills exceed the buffer of {cap}")
    fills = np.empty(n_fills, dtype=FILL_DTYPE)
    for name, arr in zip(FILL_DTYPE.names, f):
        fills[name] = arr[:n_fills]
    cnt = {k: int(v) for k, v in zip(COUNTERS, counters)}
    if cnt["halted_ns"] == 0:
        cnt["halted_ns"] = -1
    return BacktestResult(col["time_ns"], equity + capital, position, fills, cnt, cfg,
                          float(capital))
