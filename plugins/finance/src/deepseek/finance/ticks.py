"""Ticks: the state of the book after one market event, the input of features and models.

One tick is one row of the numpy structured dtype :data:`TICK_DTYPE`:

============  ======  ==================================================================
field         dtype   meaning
============  ======  ==================================================================
time_ns       int64   the tick's time on the reader's clock (see below), ns since the epoch
exch_ns       int64   exchange time of the event, -1 when the message carries none
recv_ns       int64   local receive time, -1 when the source has none
bid, ask      f8      best bid / ask price
bid_size      f8      size at the best bid
ask_size      f8      size at the best ask
bid_depth     f8      size over ``depth_levels`` bid levels: the top size plus the book's
                      next ``depth_levels - 1`` levels below the top price (so never less
                      than ``bid_size``, whichever source the top came from)
ask_depth     f8      the same on the ask side (levels above the top price)
last_px       f8      price of the last trade (NaN before the first trade)
last_size     f8      size of the last trade (0 before the first trade)
side          i1      aggressor of this event's trade: +1 buy, -1 sell, 0 no trade
depth_levels  i1      levels summed into the depths; 0: no book in sync (depth = top sizes)
============  ======  ==================================================================

Features and models see ``time_ns``. Readers (registered, kind ``ticks``):

* :func:`read_csv` -- a CSV whose header names the fields (``time_ns`` or ``exch_ns``, bid,
  ask, bid_size, ask_size required; without ``time_ns`` the exchange time is the tick time);
* :func:`read_binance` -- a Binance capture through :class:`deepseek.finance.capture.
  CaptureReader` and :class:`deepseek.finance.book.OrderBook`: a tick is emitted when a trade
  prints (``side`` +1/-1) or when the top of the book or the depth over ``levels`` levels
  changes; records that change nothing make no tick (counted). The top of the book comes
  from ``bookTicker`` when the capture has it, else from the rebuilt book. ``time_ns`` is the
  receive time by default (``clock="exchange"`` for the exchange's; see the capture module).

Synthetic ticks are in :mod:`deepseek.finance.synthetic`.
"""

from __future__ import annotations

import csv
import logging
import math
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.finance.capture import ORDERS, CaptureReader, is_capture, open_binary, open_text
from deepseek.finance.errors import TickFileError

log = logging.getLogger(__name__)

TICK_DTYPE = np.dtype([
    ("time_ns", "<i8"), ("exch_ns", "<i8"), ("recv_ns", "<i8"), ("bid", "<f8"), ("ask", "<f8"),
    ("bid_size", "<f8"), ("ask_size", "<f8"), ("bid_depth", "<f8"), ("ask_depth", "<f8"),
    ("last_px", "<f8"), ("last_size", "<f8"), ("side", "i1"), ("depth_levels", "i1"),
])
REQUIRED_CSV = ("bid", "ask", "bid_size", "ask_size")
DEFAULT_LEVELS = 5

__all__ = ["TICK_DTYPE", "CaptureTicks", "empty", "is_capture", "read_binance",
           "read_binance_l2", "read_csv",
           "tick_args", "write_csv"]


def empty(n: int = 0) -> np.ndarray:
    """``n`` zeroed ticks of the tick dtype."""
    return np.zeros(n, dtype=TICK_DTYPE)


def tick_args(t: np.void) -> tuple:
    """One TICK_DTYPE record as the positional arguments of ``StreamingFeatures.update`` and
    ``FastPath.on_tick``: (time_ns, bid, ask, bid_size, ask_size, bid_depth, ask_depth,
    last_px, last_size, side)."""
    return (int(t["time_ns"]), float(t["bid"]), float(t["ask"]), float(t["bid_size"]),
            float(t["ask_size"]), float(t["bid_depth"]), float(t["ask_depth"]),
            float(t["last_px"]), float(t["last_size"]), int(t["side"]))


def check_tick(bid: float, ask: float, bsz: float, asz: float, bdepth: float, adepth: float,
               side: int) -> str | None:
    """What is wrong with one tick's values, or None."""
    if not (math.isfinite(bid) and math.isfinite(ask)) or bid <= 0 or ask <= 0:
        return f"bad price (bid={bid}, ask={ask}): prices must be finite and positive"
    if bid >= ask:
        return f"crossed book (bid {bid} >= ask {ask})"
    if not (math.isfinite(bsz) and math.isfinite(asz)) or bsz < 0 or asz < 0:
        return f"bad size (bid_size={bsz}, ask_size={asz}): sizes must be finite and >= 0"
    if not (math.isfinite(bdepth) and math.isfinite(adepth)) or bdepth < 0 or adepth < 0:
        return f"bad depth (bid_depth={bdepth}, ask_depth={adepth})"
    if side not in (-1, 0, 1):
        return f"side must be -1, 0 or 1, got {side}"
    return None


# -- CSV ------------------------------------------------------------------------------------
def is_tick_csv(source: Any) -> bool:
    """Whether ``source`` is a CSV whose header names the tick fields :func:`read_csv` needs
    (the probe that tells a tick CSV from any other ``.csv``)."""
    try:
        path = Path(source)
        if not path.is_file():
            return False
        with open_binary(path) as raw:  # the first 4 KiB, plain or compressed
            head = raw.read(4096).decode("utf-8", errors="replace").split("\n", 1)[0]
    except TickFileError:  # a .csv.zst without zstandard: the reader says what to install
        return Path(source).name.lower().endswith(".csv.zst")
    except (OSError, EOFError, TypeError, ValueError):
        return False
    cols = {c.strip() for c in head.split(",")}
    return set(REQUIRED_CSV) <= cols and bool(cols & {"time_ns", "exch_ns"})


def read_csv(path: str | Path, order: str = "error",
             stats: dict[str, int] | None = None) -> np.ndarray:
    """Read ticks from a CSV with a header naming :data:`TICK_DTYPE` fields.

    Required: ``time_ns`` or ``exch_ns``, and bid, ask, bid_size, ask_size. Optional:
    recv_ns (-1), bid_depth/ask_depth (the top sizes, ``depth_levels`` 0), last_px (NaN),
    last_size (0), side (0). Times going backwards follow ``order`` (error/clamp/drop). A
    line identical to the line before it (a line written twice) is dropped. Clamped and
    dropped rows and dropped duplicates are counted in ``stats`` (``clamped``, ``dropped``,
    ``duplicate_lines``) and logged as a warning: nothing is altered or skipped silently."""
    path = Path(path)
    if order not in ORDERS:
        raise TickFileError(f"order={order!r}: use one of {', '.join(ORDERS)}")
    if not path.is_file():
        raise TickFileError(f"{path}: no such file")
    rows: list[tuple] = []
    with open_text(path) as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        missing = [c for c in REQUIRED_CSV if c not in cols]
        if "time_ns" not in cols and "exch_ns" not in cols:
            missing.insert(0, "time_ns (or exch_ns)")
        if missing:
            raise TickFileError(f"{path}: missing column(s) {', '.join(missing)}; the "
                                "header must name time_ns (or exch_ns), bid, ask, "
                                "bid_size, ask_size (+ optional recv_ns, bid_depth, "
                                "ask_depth, depth_levels, last_px, last_size, side)")
        prev = -(2**63)
        counts = {"rows": 0, "clamped": 0, "dropped": 0, "duplicate_lines": 0}
        last_raw: tuple | None = None

        def opt(row: dict, key: str, default: Any, cast: Any) -> Any:
            v = row.get(key)
            return default if v in (None, "") else cast(v)

        for line, row in enumerate(reader, start=2):
            raw = tuple(row.values())
            if raw == last_raw:
                counts["duplicate_lines"] += 1
                continue
            last_raw = raw
            try:
                exch = opt(row, "exch_ns", -1, int)
                t = opt(row, "time_ns", exch, int)
                recv = opt(row, "recv_ns", -1, int)
                bid, ask = float(row["bid"]), float(row["ask"])
                bsz, asz = float(row["bid_size"]), float(row["ask_size"])
                has_depth = row.get("bid_depth") not in (None, "")
                bd = opt(row, "bid_depth", bsz, float)
                ad = opt(row, "ask_depth", asz, float)
                levels = opt(row, "depth_levels", 1 if has_depth else 0, int)
                last_px = opt(row, "last_px", math.nan, float)
                last_sz = opt(row, "last_size", 0.0, float)
                side = opt(row, "side", 0, int)
            except (TypeError, ValueError) as exc:
                raise TickFileError(f"{path}, line {line}: {exc}") from None
            problem = check_tick(bid, ask, bsz, asz, bd, ad, side)
            if problem:
                raise TickFileError(f"{path}, line {line}: {problem}")
            if t < prev:
                if order == "error":
                    raise TickFileError(f"{path}, line {line}: time goes backwards ({t} < "
                                        f"{prev}); read with order='clamp' or 'drop'")
                if order == "drop":
                    counts["dropped"] += 1
                    continue
                counts["clamped"] += 1
                t = prev
            prev = t
            rows.append((t, exch, recv, bid, ask, bsz, asz, bd, ad, last_px, last_sz,
                         side, levels))
    counts["rows"] = len(rows)
    if stats is not None:
        stats.update(counts)
    changed = {k: v for k, v in counts.items() if k != "rows" and v}
    if changed:
        log.warning("%s: %s", path, ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in
                                               changed.items()))
    if not rows:
        raise TickFileError(f"{path}: no ticks (only a header)")
    return np.array(rows, dtype=TICK_DTYPE)


def write_csv(ticks: np.ndarray, path: str | Path) -> Path:
    """Write ticks as a tick CSV (integers exact, prices to 10 significant digits); returns the
    path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ints = {"time_ns", "exch_ns", "recv_ns", "side", "depth_levels"}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TICK_DTYPE.names)
        for t in ticks:
            row: list[Any] = []
            for name in TICK_DTYPE.names:
                v = t[name]
                if name in ints:
                    row.append(int(v))
                else:  # repr keeps every bit; a missing last trade is an empty cell
                    row.append("" if name == "last_px" and math.isnan(v) else repr(float(v)))
            w.writerow(row)
    return path


# -- captures -------------------------------------------------------------------------------
class CaptureTicks:
    """Ticks of one symbol from a capture, streamed: iterate for tuples in TICK_DTYPE order,
    or :meth:`to_array`. :attr:`stats` holds the reader's, the book's and the tick counts,
    and the check of the rebuilt book against ``bookTicker``.

    ``levels``: book levels summed into ``bid_depth``/``ask_depth``. ``top``: ``"auto"``
    (bookTicker when the capture has it, else the book), ``"ticker"`` or ``"book"``.
    ``l2=True`` also records the rebuilt book's changes for an L2 replay
    (:meth:`l2_events`).
    """

    def __init__(self, path: str | Path, *, symbol: str | None = None, clock: str = "receive",
                 order: str = "error", levels: int = DEFAULT_LEVELS, top: str = "auto",
                 l2: bool = False) -> None:
        if top not in ("auto", "ticker", "book"):
            raise TickFileError(f"top={top!r}: use auto, ticker or book")
        if not 1 <= int(levels) <= 100:
            raise TickFileError(f"levels={levels}: give 1 to 100 book levels")
        self.reader = CaptureReader(path, symbol=symbol, clock=clock, order=order)
        self.levels = int(levels)
        self.top = top
        self.ticks = {"emitted": 0, "trades": 0, "unchanged": 0, "before_top": 0,
                      "from_book_top": 0, "from_ticker_top": 0, "without_book_depth": 0}
        self.ticker_check = {"compared": 0, "agree": 0, "same_id_compared": 0,
                             "same_id_agree": 0}
        from deepseek.finance.book import OrderBook

        self.book = OrderBook()
        self.l2 = l2
        self._l2: list[tuple[int, int, np.ndarray]] = []

    @property
    def stats(self) -> dict[str, Any]:
        """Reader, book, tick and ticker-check statistics of the capture read so far."""
        chk = dict(self.ticker_check)
        chk["agreement"] = chk["agree"] / chk["compared"] if chk["compared"] else None
        return {"reader": self.reader.stats, "book": self.book.summary(),
                "ticks": dict(self.ticks), "ticker_check": chk, "levels": self.levels}

    def __iter__(self) -> Iterator[tuple]:
        path = self.reader.path
        book = self.book
        levels = self.levels
        use_ticker = self.top == "ticker"
        allow_ticker = self.top != "book"
        tk, chk = self.ticks, self.ticker_check
        top: tuple[float, float, float, float] | None = None
        quote_id = -1
        quote_top: tuple[float, float, float, float] | None = None
        last_px, last_sz = math.nan, 0.0
        last_state: tuple | None = None
        symbol = None
        for rec in self.reader:
            kind = rec.kind
            if symbol is None:
                symbol = rec.symbol
            elif rec.symbol != symbol:
                raise TickFileError(
                    f"{path}: the capture holds several symbols ({symbol}, {rec.symbol}, ...); "
                    "ticks are one symbol's: pass symbol= (--symbol)")
            side = 0
            if kind == "quote":
                if not allow_ticker:
                    continue
                use_ticker = True
                quote_id = rec.update_id
                top = quote_top = (rec.bid, rec.bid_qty, rec.ask, rec.ask_qty)
                if book.live and quote_id == book.last_id:
                    chk["same_id_compared"] += 1
                    chk["same_id_agree"] += book.best() == quote_top
            elif kind == "trade":
                last_px, last_sz, side = rec.price, rec.qty, rec.side
                if not (0.0 < last_px < math.inf and 0.0 < last_sz < math.inf):
                    raise TickFileError(f"{path}: the trade received at {rec.recv_ns} ns has "
                                        f"price {last_px} and quantity {last_sz}; both must be "
                                        "finite and positive")
            else:  # depth or snapshot
                was_live = book.live
                try:
                    changed = book.apply(rec)
                except TickFileError as exc:
                    raise TickFileError(f"{path}: {exc} (received at {rec.recv_ns} ns)") \
                        from None
                if self.l2:
                    self._record_l2(rec, changed, was_live, tk["emitted"])
                if book.live:
                    best = book.best()
                    if quote_top is not None and best is not None and quote_id <= book.last_id:
                        chk["compared"] += 1
                        chk["agree"] += (best[0] == quote_top[0] and best[2] == quote_top[2])
                    if not use_ticker:
                        top = best
            if top is None:
                tk["before_top"] += 1
                continue
            bid, bq, ask, aq = top
            if book.live:  # one rule whichever source the top came from: depth >= top size
                behind_b, behind_a = book.depth_behind(bid, ask, levels - 1)
                bd, ad, nlev = bq + behind_b, aq + behind_a, levels
            else:
                bd, ad, nlev = bq, aq, 0
            state = (bid, bq, ask, aq, bd, ad)
            if side == 0 and state == last_state:
                tk["unchanged"] += 1
                continue
            problem = check_tick(bid, ask, bq, aq, bd, ad, side)
            if problem:
                raise TickFileError(f"{path}: {problem} in the {kind} record received at "
                                    f"{rec.recv_ns} ns ({'bookTicker' if use_ticker else 'book'}"
                                    " top)")
            last_state = state
            tk["emitted"] += 1
            tk["trades"] += side != 0
            tk["from_ticker_top" if use_ticker else "from_book_top"] += 1
            tk["without_book_depth"] += nlev == 0
            yield (rec.time_ns, rec.exch_ns, rec.recv_ns, bid, ask, bq, aq, bd, ad, last_px,
                   last_sz if side else 0.0, side, nlev)

    def _record_l2(self, rec: Any, changed: bool, was_live: bool, before_tick: int) -> None:
        """The book's change, to be applied before tick ``before_tick``: side 0 clears the
        book; side +1/-1 sets bid/ask levels (quantity 0 removes)."""
        book, out = self.book, self._l2
        if rec.kind == "snapshot" and book.live:  # the whole book as loaded (with buffered
            out.append((before_tick, 0, _NO_LEVELS))  # diffs applied after the snapshot)
            for sign, side in ((1, book.bids), (-1, book.asks)):
                out.append((before_tick, sign, np.array(list(side.items()),
                                                        dtype=np.float64).reshape(-1, 2)))
        elif changed:
            out.append((before_tick, 1, rec.bids))
            out.append((before_tick, -1, rec.asks))
        elif was_live and not book.live:  # a gap or a crossed book: no book until resync
            out.append((before_tick, 0, _NO_LEVELS))

    def l2_events(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The recorded book changes as arrays, one row per level: the tick index each is
        applied before, the side (+1 bid, -1 ask, 0 clear the book: a snapshot or a gap) and
        the (price, quantity) rows."""
        if not self._l2:
            return (np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros((0, 2)))
        sizes = [max(len(lv), 1) if side == 0 else len(lv) for _, side, lv in self._l2]
        tick = np.repeat([t for t, _, _ in self._l2], sizes).astype(np.int64)
        side = np.repeat([sd for _, sd, _ in self._l2], sizes).astype(np.int8)
        lv = np.concatenate([lv if sd else np.zeros((1, 2)) for _, sd, lv in self._l2])
        return tick, side, lv

    def to_array(self) -> np.ndarray:
        """All the capture's ticks as one tick array."""
        cols = [array("q") for _ in range(3)] + [array("d") for _ in range(8)] + \
            [array("b"), array("b")]
        appends = [c.append for c in cols]
        for row in self:
            for app, v in zip(appends, row):
                app(v)
        n = len(cols[0])
        if n == 0:
            raise TickFileError(f"{self.reader.path}: no ticks (no bookTicker, and no depth "
                                "snapshot + diffs to rebuild the book from)")
        out = np.empty(n, dtype=TICK_DTYPE)
        for name, col in zip(TICK_DTYPE.names, cols):
            out[name] = np.frombuffer(col, dtype=out.dtype[name])
        return out


_NO_LEVELS = np.zeros((0, 2))


def read_binance(path: str | Path, symbol: str | None = None, *, clock: str = "receive",
                 order: str = "error", levels: int = DEFAULT_LEVELS, top: str = "auto",
                 stats: dict | None = None) -> np.ndarray:
    """Ticks of a Binance capture (see :class:`CaptureTicks`); ``stats``, when given, is
    filled with the reader's, the book's and the tick counts."""
    ct = CaptureTicks(path, symbol=symbol, clock=clock, order=order, levels=levels, top=top)
    try:
        return ct.to_array()
    finally:
        if stats is not None:
            stats.update(ct.stats)
        s = ct.stats
        log.info("%s: %d ticks from %d lines (%s); book %s, %d gaps; bookTicker agreement %s",
                 path, s["ticks"]["emitted"], s["reader"]["lines"], s["reader"]["records"],
                 "in sync" if s["book"]["live"] else "not in sync", s["book"]["gaps"],
                 s["ticker_check"]["agreement"])


def read_binance_l2(path: str | Path, symbol: str | None = None, *, clock: str = "receive",
                    order: str = "error", levels: int = DEFAULT_LEVELS, top: str = "auto",
                    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Ticks of a Binance capture and the rebuilt book's changes between them, for an L2
    replay (``backtest(ticks, decisions, config, l2=events)``)."""
    ct = CaptureTicks(path, symbol=symbol, clock=clock, order=order, levels=levels, top=top,
                      l2=True)
    ticks = ct.to_array()
    events = ct.l2_events()
    if not len(events[0]):
        raise TickFileError(f"{path}: no depth snapshot and diffs: an L2 replay needs the "
                            "book (capture depth@... with a REST snapshot)")
    return ticks, events


def read_capture(source: str | Path, **options: Any) -> np.ndarray:
    """Registered reader ``binance``: a capture file, or ``binance:PATH``; options as
    :func:`read_binance` (symbol, clock, order, levels, top)."""
    s = str(source)
    return read_binance(s[len("binance:"):] if s.startswith("binance:") else s, **options)
