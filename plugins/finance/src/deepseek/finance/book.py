"""An L2 order book rebuilt from a depth snapshot plus depth diffs, with Binance's update-ID
rules, gap detection and resynchronisation.

    book = OrderBook()
    for rec in CaptureReader(path, symbol="ETHUSDT"):
        if rec.kind in ("snapshot", "depth"):
            book.apply(rec)
        if book.live:
            bids, asks = book.levels(5)     # [(price, qty), ...] best first

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

from sortedcontainers import SortedDict

from deepseek.finance.capture import DepthDiff, Snapshot
from deepseek.finance.errors import TickFileError

_INF = float("inf")
_set = dict.__setitem__  # a SortedDict is a dict; its own __setitem__ also sorts new keys


class OrderBook:
    """Price levels of one symbol: ``bids``/``asks`` are SortedDicts price -> quantity."""

    def __init__(self, max_buffer: int = 10_000) -> None:
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
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

    # -- input -----------------------------------------------------------------------------
    def apply(self, rec: DepthDiff | Snapshot) -> bool:
        """Apply a snapshot or a diff; returns whether the book changed and is in sync."""
        if isinstance(rec, Snapshot):
            self.load_snapshot(rec)
            return self.live
        return self.apply_diff(rec)

    def load_snapshot(self, snap: Snapshot) -> None:
        st = self.stats
        st["snapshots"] += 1
        if self._synced_once:
            st["resyncs"] += 1
        for p, q in (*snap.bids, *snap.asks):
            if not (0.0 < p < _INF and 0.0 <= q < _INF):
                raise TickFileError(f"snapshot {snap.last_id} of {snap.symbol or 'the book'}: "
                                    f"level ({p}, {q}) is not a finite positive price with a "
                                    "finite non-negative quantity")
        self.bids = SortedDict({p: q for p, q in snap.bids if q > 0.0})
        self.asks = SortedDict({p: q for p, q in snap.asks if q > 0.0})
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
        for levels in (diff.bids, diff.asks):
            for p, q in levels:
                if not (0.0 < p < _INF and 0.0 <= q < _INF):
                    raise TickFileError(f"depth update {U}..{u} of {diff.symbol or 'the book'}: "
                                        f"level ({p}, {q}) is not a finite positive price "
                                        "with a finite non-negative quantity")
        self._awaiting_first = False
        for side, levels in ((self.bids, diff.bids), (self.asks, diff.asks)):
            for p, q in levels:
                if q == 0.0:
                    if p in side:
                        del side[p]
                elif p in side:  # a known price: only the quantity changes
                    _set(side, p, q)
                else:
                    side[p] = q
        self.last_id = u
        st["applied"] += 1
        if self.bids and self.asks and self.bids.peekitem(-1)[0] >= self.asks.peekitem(0)[0]:
            st["crossed"] += 1
            self._gap()
            return False
        return True

    def _gap(self) -> None:
        self.stats["gaps"] += 1
        self.live = False
        self.bids.clear()
        self.asks.clear()

    # -- output ----------------------------------------------------------------------------
    def best(self) -> tuple[float, float, float, float] | None:
        """(bid, bid_qty, ask, ask_qty) of the best levels, or None when a side is empty or
        the book is out of sync."""
        if not (self.live and self.bids and self.asks):
            return None
        b, bq = self.bids.peekitem(-1)
        a, aq = self.asks.peekitem(0)
        return b, bq, a, aq

    def levels(self, n: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """The best ``n`` levels of each side, best first (fewer when the book is thinner)."""
        bids, asks = self.bids, self.asks
        bp = bids.keys()[-n:][::-1] if n > 0 else []
        ap = asks.keys()[:n] if n > 0 else []
        return [(p, bids[p]) for p in bp], [(p, asks[p]) for p in ap]

    def depth(self, n: int) -> tuple[float, float]:
        """Total quantity over the best ``n`` levels of each side."""
        if n <= 0:
            return 0.0, 0.0
        bids, asks = self.bids, self.asks
        return (sum(map(bids.__getitem__, bids.keys()[-n:][::-1])),  # best first
                sum(map(asks.__getitem__, asks.keys()[:n])))

    def depth_behind(self, bid: float, ask: float, n: int) -> tuple[float, float]:
        """Total quantity over the best ``n`` bid levels priced strictly below ``bid`` and
        the best ``n`` ask levels strictly above ``ask``: the book behind a top of the book
        that may come from elsewhere (``bookTicker``), so that the top size plus this is a
        depth that always includes the top size."""
        if n <= 0:
            return 0.0, 0.0
        bids, asks = self.bids, self.asks
        i = bids.bisect_left(bid)
        j = asks.bisect_right(ask)
        return (sum(map(bids.__getitem__, bids.keys()[max(0, i - n):i])),
                sum(map(asks.__getitem__, asks.keys()[j:j + n])))

    def summary(self) -> dict[str, Any]:
        return {**self.stats, "live": self.live, "bid_levels": len(self.bids),
                "ask_levels": len(self.asks), "last_update_id": self.last_id}
