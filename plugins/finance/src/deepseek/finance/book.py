"""An L2 order book rebuilt from a depth snapshot plus depth diffs, with Binance's update-ID
rules, gap detection and resynchronisation.

    book = OrderBook()
    for rec in CaptureReader(path, symbol="ETHUSDT"):
        if rec.kind in ("snapshot", "depth"):
            book.apply(rec)
        if book.live:
            bids, asks = book.levels(5)     # [(price, qty), ...] best first

Each side is a ladder of two float64 arrays (prices and quantities, the best level last)
updated in compiled code (numba): a binary search per level and a shift of the slots
between it and the touch, where most changes happen. Depth messages carry their levels as
arrays already (:mod:`deepseek.finance.levels`), so no Python object is made per level.

Rules (Binance "how to manage a local order book"):

* Diffs that arrive before the first snapshot are buffered (at most ``max_buffer``; older
  ones are let go and counted). When the snapshot comes, buffered and later diffs whose last
  update ID is older than the snapshot are dropped as stale.
* Spot: the first diff applied must straddle the snapshot (``U <= lastUpdateId + 1 <= u``);
  each later diff must start right after the previous one (``U == previous u + 1``).
* Futures (diffs carry ``pu``): the first diff must satisfy ``U <= lastUpdateId <= u``; each
  later diff's ``pu`` must equal the previous diff's ``u``.
* A diff that breaks continuity is a gap: the book is cleared and stays out of sync (not
  ``live``) until the next snapshot; gaps and resyncs are counted. A quantity of 0 removes a
  level. A crossed book after a diff is counted (``crossed``) and the book leaves sync.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
from numba import njit, typeof

from deepseek.finance.capture import DepthDiff, Snapshot
from deepseek.finance.errors import TickFileError
from deepseek.finance.levels import as_levels

# A side of the book is a ladder: ``keys`` ascending with the best level last (bids: the
# price; asks: minus the price), ``qty`` beside them, slots [0, n) in use. Slots with
# quantity 0 are empty: a removed level keeps its key there, and the ladder is laid out with
# one empty slot every GAP slots (carrying the key below it), so keys stay sorted, a level
# that comes back or a new one next to an empty slot takes it in place, and any other insert
# moves only the few slots up to the nearest empty one. When none is within REACH slots the
# ladder is laid out again (rare, O(levels)). The best slot is always occupied.
GAP = 8
REACH = 32


@njit(cache=True, nogil=True)
def _lower_bound(keys, n, key):  # pragma: no cover - compiled
    """The first slot in [0, n) whose key is >= ``key`` (n when none)."""
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _spread(keys, qty, state, scratch_k, scratch_q):  # pragma: no cover - compiled
    """Lay the occupied slots out again with an empty slot before every GAP-th level; the
    arrays have room (the caller sized them)."""
    n = state[0]
    m = 0
    for j in range(n):
        if qty[j] != 0.0:
            scratch_k[m] = keys[j]
            scratch_q[m] = qty[j]
            m += 1
    k = 0
    prev = -np.inf
    for j in range(m):
        if j % GAP == 0 and j > 0:
            keys[k] = prev
            qty[k] = 0.0
            k += 1
        keys[k] = scratch_k[j]
        qty[k] = scratch_q[j]
        prev = scratch_k[j]
        k += 1
    state[0] = k
    state[1] = k - m


@njit(cache=True, nogil=True)
def _set_side(keys, qty, state, levels, sign, scratch_k, scratch_q):  # pragma: no cover
    """Set each (price, qty) of ``levels`` (qty 0 removes); False when the ladder needs
    more room first (nothing changed by the level that found none)."""
    for r in range(levels.shape[0]):
        n = state[0]
        key = sign * levels[r, 0]
        q = levels[r, 1]
        lo = _lower_bound(keys, n, key)
        if lo < n and keys[lo] == key:
            # the level (or its empty slot): the first slot holding this key
            if qty[lo] == 0.0:
                if q != 0.0:
                    state[1] -= 1
            elif q == 0.0:
                state[1] += 1
            qty[lo] = q
            continue
        if q == 0.0:
            continue  # removing a level the book does not hold
        if lo == n:  # a new best level
            if n >= len(keys):
                return False
            keys[n] = key
            qty[n] = q
            state[0] = n + 1
            continue
        if lo > 0 and qty[lo - 1] == 0.0:  # the empty slot below takes it
            keys[lo - 1] = key
            qty[lo - 1] = q
            state[1] -= 1
            continue
        left = lo - 1
        while left >= 0 and lo - left <= REACH and qty[left] != 0.0:
            left -= 1
        right = lo
        while right < n and right - lo < REACH and qty[right] != 0.0:
            right += 1
        if left >= 0 and lo - left <= REACH and qty[left] == 0.0:
            for j in range(left, lo - 1):  # slots left+1 .. lo-1 move down one
                keys[j] = keys[j + 1]
                qty[j] = qty[j + 1]
            keys[lo - 1] = key
            qty[lo - 1] = q
            state[1] -= 1
        elif right < n and qty[right] == 0.0:
            for j in range(right, lo, -1):  # slots lo .. right-1 move up one
                keys[j] = keys[j - 1]
                qty[j] = qty[j - 1]
            keys[lo] = key
            qty[lo] = q
            state[1] -= 1
        else:  # no empty slot near: lay the ladder out again, then place this level
            if n + n // GAP + 2 > len(keys):
                return False
            _spread(keys, qty, state, scratch_k, scratch_q)
            n = state[0]
            lo = _lower_bound(keys, n, key)
            if lo > 0 and qty[lo - 1] == 0.0:
                keys[lo - 1] = key
                qty[lo - 1] = q
                state[1] -= 1
            else:  # within GAP slots of an empty one now
                right = lo
                while right < n and qty[right] != 0.0:
                    right += 1
                if right == n:
                    state[0] = n + 1
                else:
                    state[1] -= 1
                for j in range(right, lo, -1):
                    keys[j] = keys[j - 1]
                    qty[j] = qty[j - 1]
                keys[lo] = key
                qty[lo] = q
    n = state[0]
    while n > 0 and qty[n - 1] == 0.0:  # the best slot is always a level
        n -= 1
        state[1] -= 1
    state[0] = n
    return True


@njit(cache=True, nogil=True)
def _apply_levels(bl, al, st, bids, asks, scratch):  # pragma: no cover - compiled
    """One diff in one compiled call (``bl``/``al``: each side's ladder, keys in row 0 and
    quantities in row 1; ``st``: slots in use and empty slots of the bids, then the asks;
    few arguments, as each costs time to pass): -1 applied and not crossed, -2 applied and crossed,
    -3 a side needs more room (nothing checked or changed yet: grow and call again), or the
    row (bids first, then asks) of the first level that is not a finite positive price with
    a finite non-negative quantity (nothing changed)."""
    bk, bq, ak, aq, sk, sq = bl[0], bl[1], al[0], al[1], scratch[0], scratch[1]
    bs, as_ = st[0:2], st[2:4]
    if bs[0] + 2 * bids.shape[0] + bs[0] // GAP + 2 > len(bk) or \
            as_[0] + 2 * asks.shape[0] + as_[0] // GAP + 2 > len(ak) or \
            max(bs[0], as_[0]) + 1 > len(sk):
        return -3
    inf = np.inf
    for r in range(bids.shape[0]):
        if not (0.0 < bids[r, 0] < inf and 0.0 <= bids[r, 1] < inf):
            return r
    for r in range(asks.shape[0]):
        if not (0.0 < asks[r, 0] < inf and 0.0 <= asks[r, 1] < inf):
            return bids.shape[0] + r
    _set_side(bk, bq, bs, bids, 1.0, sk, sq)
    _set_side(ak, aq, as_, asks, -1.0, sk, sq)
    nb = bs[0]
    na = as_[0]
    if nb > 0 and na > 0 and bk[nb - 1] >= -ak[na - 1]:
        return -2
    return -1


@njit(cache=True, nogil=True)
def _sum_down(qty, stop, count):  # pragma: no cover - compiled
    """The quantities of the first ``count`` occupied slots below ``stop``, walking down,
    summed in that order."""
    total = 0.0
    j = stop - 1
    k = 0
    while j >= 0 and k < count:
        if qty[j] != 0.0:
            total += qty[j]
            k += 1
        j -= 1
    return total


@njit(cache=True, nogil=True)
def _depths(bq, bs, aq, as_, count):  # pragma: no cover - compiled
    return _sum_down(bq, bs[0], count), _sum_down(aq, as_[0], count)


@njit(cache=True, nogil=True)
def _top(bk, bq, bs, ak, aq, as_):  # pragma: no cover - compiled
    """(bid, bid qty, ask, ask qty) of the best slots; NaNs when a side is empty."""
    nb = bs[0]
    na = as_[0]
    if nb == 0 or na == 0:
        return np.nan, np.nan, np.nan, np.nan
    return bk[nb - 1], bq[nb - 1], -ak[na - 1], aq[na - 1]


@njit(cache=True, nogil=True)
def _sum_below_up(qty, stop, count):  # pragma: no cover - compiled
    """The quantities of the last ``count`` occupied slots below ``stop``, summed upwards
    (lowest first)."""
    j = stop - 1
    k = 0
    while j >= 0 and k < count:
        if qty[j] != 0.0:
            k += 1
        j -= 1
    total = 0.0
    for i in range(j + 1, stop):
        total += qty[i]  # empty slots add 0.0: the sum is unchanged
    return total


def _entry_point() -> Any:
    """``_apply_levels`` compiled for float64 ladders and levels, called through its
    machine-code wrapper directly (skipping numba's per-call type dispatch)."""
    ladder, st = np.zeros((2, 4)), np.zeros(4, dtype=np.int64)
    lv = np.zeros((0, 2))
    args = (ladder, ladder, st, lv, lv, ladder)
    _apply_levels(*args)
    compiled = _apply_levels.overloads.get(tuple(typeof(a) for a in args))
    return compiled.entry_point if compiled is not None else _apply_levels


def _APPLY(*args: Any) -> int:  # noqa: N802 (rebound to the compiled entry point)
    """``_apply_levels`` through its entry point, compiled on the first depth message (not
    when the module is imported); this name is then rebound to the entry point itself."""
    global _APPLY
    _APPLY = _entry_point()
    return _APPLY(*args)


class _Side:
    """One side's ladder (``sign`` +1 for bids, -1 for asks)."""

    __slots__ = ("ladder", "keys", "qty", "state", "sign")

    def __init__(self, sign: float, state: np.ndarray, capacity: int = 1024) -> None:
        self.ladder = np.empty((2, capacity), dtype=np.float64)  # keys, quantities
        self.keys, self.qty = self.ladder
        self.state = state  # [slots in use, empty ones among them], a view of the book's
        self.sign = sign

    def grow(self, size: int) -> None:
        n = int(self.state[0])
        if size > len(self.keys):
            size = max(size, 2 * len(self.keys))
            ladder = np.empty((2, size), dtype=np.float64)
            ladder[:, :n] = self.ladder[:, :n]
            self.ladder = ladder
            self.keys, self.qty = ladder

    def load(self, levels: np.ndarray, scratch: tuple[np.ndarray, np.ndarray]) -> None:
        """The side of a snapshot: sorted, zero quantities left out, a price listed twice
        keeping its last quantity; laid out with its empty slots."""
        keys = self.sign * levels[:, 0]
        last = len(keys) - 1 - np.unique(keys[::-1], return_index=True)[1]  # last of each
        keys, qty = keys[last], levels[last, 1]  # np.unique sorted them ascending
        keep = qty > 0.0
        keys, qty = keys[keep], qty[keep]
        n = len(keys)
        self.state[:] = 0
        self.grow(2 * n + 16)
        self.keys[:n], self.qty[:n] = keys, qty
        self.state[0] = n
        _spread(self.keys, self.qty, self.state, *scratch)

    def clear(self) -> None:
        self.state[:] = 0

    def count(self) -> int:
        return int(self.state[0] - self.state[1])

    def items(self, count: int) -> list[tuple[float, float]]:
        """The best ``count`` levels, best first."""
        out = []
        j = int(self.state[0]) - 1
        keys, qty = self.keys, self.qty
        while j >= 0 and len(out) < count:
            if qty[j] != 0.0:
                out.append((self.sign * float(keys[j]), float(qty[j])))
            j -= 1
        return out

    def as_dict(self) -> dict[float, float]:
        """price -> quantity, in ascending price."""
        n = int(self.state[0])
        keys, qty = self.keys[:n], self.qty[:n]
        keep = qty != 0.0
        keys, qty = keys[keep], qty[keep]
        if self.sign < 0:
            keys, qty = keys[::-1], qty[::-1]
        return {float(self.sign * k): float(q) for k, q in zip(keys, qty)}


class OrderBook:
    """Price levels of one symbol, each side a ladder of arrays updated in compiled code;
    ``levels(n)``, ``best()``, ``depth(n)`` and ``depth_behind(...)`` read them, and
    ``bids``/``asks`` give each side as a dict price -> quantity (a copy)."""

    def __init__(self, max_buffer: int = 10_000) -> None:
        self._state = np.zeros(4, dtype=np.int64)
        self._bids = _Side(1.0, self._state[0:2])
        self._asks = _Side(-1.0, self._state[2:4])
        self._scratch = np.empty((2, 1024))
        self.last_id = -1
        self.live = False
        self._synced_once = False
        self._awaiting_first = False
        self._futures: bool | None = None
        self._buffer: deque[DepthDiff] = deque()
        self.max_buffer = max_buffer
        self.stats = {"snapshots": 0, "diffs": 0, "applied": 0, "stale": 0, "buffered": 0,
                      "buffer_overflow": 0, "gaps": 0, "resyncs": 0, "crossed": 0,
                      "out_of_sync_diffs": 0}

    @property
    def bids(self) -> dict[float, float]:
        """Bid levels: price -> quantity."""
        return self._bids.as_dict()

    @property
    def asks(self) -> dict[float, float]:
        """Ask levels: price -> quantity."""
        return self._asks.as_dict()

    # -- input -----------------------------------------------------------------------------
    def apply(self, rec: DepthDiff | Snapshot) -> bool:
        """Apply a snapshot or a diff; returns whether the book changed and is in sync."""
        if isinstance(rec, Snapshot):
            self.load_snapshot(rec)
            return self.live
        return self.apply_diff(rec)

    def load_snapshot(self, snap: Snapshot) -> None:
        """Replace the book with a depth snapshot; the diffs buffered since then are applied in
        order (a re-sync is counted).
        """
        st = self.stats
        st["snapshots"] += 1
        if self._synced_once:
            st["resyncs"] += 1
        bids, asks = as_levels(snap.bids), as_levels(snap.asks)
        for levels in (bids, asks):
            p, q = levels[:, 0], levels[:, 1]
            bad = np.flatnonzero(~((p > 0) & (p < np.inf) & (q >= 0) & (q < np.inf)))
            if len(bad):
                p, q = levels[bad[0]]
                raise TickFileError(f"snapshot {snap.last_id} of {snap.symbol or 'the book'}: "
                                    f"level ({p}, {q}) is not a finite positive price with a "
                                    "finite non-negative quantity")
        self._room(len(bids) + len(asks))
        self._bids.load(bids, self._scratch)
        self._asks.load(asks, self._scratch)
        self.last_id = snap.last_id
        self.live = True
        self._synced_once = True
        self._awaiting_first = True
        buffered, self._buffer = self._buffer, deque()
        for diff in buffered:
            self._apply(diff)

    def apply_diff(self, diff: DepthDiff) -> bool:
        """Apply one diff (buffered before the first snapshot); whether the book changed and
        is in sync. A level that is not a finite positive price with a finite non-negative
        quantity raises :class:`TickFileError` and leaves the book as it was."""
        self.stats["diffs"] += 1
        return self._apply(diff)

    def _apply(self, diff: DepthDiff) -> bool:
        st = self.stats
        if self._futures is None:
            self._futures = diff.prev_id >= 0
        if not self._synced_once:
            if len(self._buffer) >= self.max_buffer:
                self._buffer.popleft()
                st["buffer_overflow"] += 1
            self._buffer.append(diff)
            st["buffered"] += 1
            return False
        if not self.live:
            st["out_of_sync_diffs"] += 1
            return False
        U, u, last = diff.first_id, diff.last_id, self.last_id
        if self._futures:
            if u < last:
                st["stale"] += 1
                return False
            ok = (U <= last <= u) if self._awaiting_first else diff.prev_id == last
        else:
            if u <= last:
                st["stale"] += 1
                return False
            ok = (U <= last + 1 <= u) if self._awaiting_first else U == last + 1
        if not ok:
            self._gap()
            return False
        bids, asks = as_levels(diff.bids), as_levels(diff.asks)
        r = _APPLY(self._bids.ladder, self._asks.ladder, self._state, bids, asks,
                   self._scratch)
        if r == -3:
            self._room(len(bids) + len(asks))
            r = _APPLY(self._bids.ladder, self._asks.ladder, self._state, bids, asks,
                       self._scratch)
        if r >= 0:
            p, q = bids[r] if r < len(bids) else asks[r - len(bids)]
            raise TickFileError(f"depth update {U}..{u} of {diff.symbol or 'the book'}: "
                                f"level ({p}, {q}) is not a finite positive price "
                                "with a finite non-negative quantity")
        self._awaiting_first = False
        self.last_id = u
        st["applied"] += 1
        if r == -2:
            st["crossed"] += 1
            self._gap()
            return False
        return True

    def _room(self, extra: int) -> None:
        """Ladders and scratch space large enough for ``extra`` more levels anywhere."""
        for side in (self._bids, self._asks):
            n = int(side.state[0])
            side.grow(n + 2 * extra + n // GAP + 16)
        size = max(len(self._bids.keys), len(self._asks.keys))
        if self._scratch.shape[1] < size:
            self._scratch = np.empty((2, size))

    def _gap(self) -> None:
        self.stats["gaps"] += 1
        self.live = False
        self._bids.clear()
        self._asks.clear()

    # -- output ----------------------------------------------------------------------------
    def best(self) -> tuple[float, float, float, float] | None:
        """(bid, bid_qty, ask, ask_qty) of the best levels, or None when a side is empty or
        the book is out of sync."""
        if not self.live:
            return None
        b, a = self._bids, self._asks
        top = _top(b.keys, b.qty, b.state, a.keys, a.qty, a.state)
        return top if top[0] == top[0] else None

    def levels(self, n: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """The best ``n`` levels of each side, best first (fewer when the book is thinner)."""
        if n <= 0:
            return [], []
        return self._bids.items(n), self._asks.items(n)

    def depth(self, n: int) -> tuple[float, float]:
        """Total quantity over the best ``n`` levels of each side (summed best first)."""
        if n <= 0:
            return 0.0, 0.0
        b, a = self._bids, self._asks
        return _depths(b.qty, b.state, a.qty, a.state, n)

    def depth_behind(self, bid: float, ask: float, n: int) -> tuple[float, float]:
        """Total quantity over the best ``n`` bid levels priced strictly below ``bid`` and
        the best ``n`` ask levels strictly above ``ask``: the book behind a top of the book
        that may come from elsewhere (``bookTicker``), so that the top size plus this is a
        depth that always includes the top size."""
        if n <= 0:
            return 0.0, 0.0
        b, a = self._bids, self._asks
        i = _lower_bound(b.keys, b.state[0], bid)    # bid levels below ``bid``: slots < i
        j = _lower_bound(a.keys, a.state[0], -ask)   # ask levels above ``ask``: slots < j
        return _sum_below_up(b.qty, i, n), _sum_down(a.qty, j, n)

    def summary(self) -> dict[str, Any]:
        """Book statistics: snapshots, re-syncs, gaps, levels per side, the last update id and
        whether it is live.
        """
        return {**self.stats, "live": self.live, "bid_levels": self._bids.count(),
                "ask_levels": self._asks.count(), "last_update_id": self.last_id}
