"""Tick records and readers.

A tick is the state of the top of the book after one market event (a quote update or a
trade), as one row of the numpy structured dtype :data:`TICK_DTYPE`:

============  ======  ==========================================================
field         dtype   meaning
============  ======  ==========================================================
exch_ns       int64   exchange (event) timestamp, ns since the epoch
recv_ns       int64   local receive timestamp, ns since the epoch
bid, ask      f8      best bid / ask price
bid_size      f8      size at the best bid
ask_size      f8      size at the best ask
last_px       f8      price of the last trade (NaN before the first trade)
last_size     f8      size of the last trade (0 before the first trade)
side          i1      aggressor of this event's trade: +1 buy, -1 sell, 0 no trade
============  ======  ==========================================================

Readers (registered, kind ``ticks``): :func:`read_csv` (columns named as the fields;
``last_px``, ``last_size``, ``side`` optional) and :func:`read_binance` (Binance WebSocket
recordings, one ``<receive_ns> <json>`` per line, with ``bookTicker``, ``trade``/``aggTrade``
and ``depthUpdate`` messages, raw or wrapped in combined-stream ``{"stream": ..., "data":
...}`` envelopes). Both read plain, gzip and zstd files. Synthetic ticks are in
:mod:`deepseek.finance.synthetic`.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.finance.errors import TickFileError

TICK_DTYPE = np.dtype([
    ("exch_ns", "<i8"), ("recv_ns", "<i8"), ("bid", "<f8"), ("ask", "<f8"),
    ("bid_size", "<f8"), ("ask_size", "<f8"), ("last_px", "<f8"), ("last_size", "<f8"),
    ("side", "i1"),
])
REQUIRED_CSV = ("exch_ns", "recv_ns", "bid", "ask", "bid_size", "ask_size")


def empty(n: int = 0) -> np.ndarray:
    return np.zeros(n, dtype=TICK_DTYPE)


def tick_args(t: np.void) -> tuple:
    """One TICK_DTYPE record as the positional arguments of ``StreamingFeatures.update`` and
    ``FastPath.on_tick``: (exch_ns, bid, ask, bid_size, ask_size, last_px, last_size, side)."""
    return (int(t["exch_ns"]), float(t["bid"]), float(t["ask"]), float(t["bid_size"]),
            float(t["ask_size"]), float(t["last_px"]), float(t["last_size"]), int(t["side"]))


def read_csv(path: str | Path) -> np.ndarray:
    """Read ticks from a CSV with a header naming the :data:`TICK_DTYPE` fields."""
    path = Path(path)
    if not path.is_file():
        raise TickFileError(f"{path}: no such file")
    rows: list[tuple] = []
    with open_text(path) as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        missing = [c for c in REQUIRED_CSV if c not in cols]
        if missing:
            raise TickFileError(f"{path}: missing column(s) {', '.join(missing)}; the header "
                                f"must name {', '.join(REQUIRED_CSV)} (+ optional last_px, "
                                "last_size, side)")
        prev = -(2**63)
        for line, row in enumerate(reader, start=2):
            try:
                exch, recv = int(row["exch_ns"]), int(row["recv_ns"])
                bid, ask = float(row["bid"]), float(row["ask"])
                bsz, asz = float(row["bid_size"]), float(row["ask_size"])
                last_px = float(row["last_px"]) if row.get("last_px") not in (None, "") \
                    else math.nan
                last_sz = float(row["last_size"]) if row.get("last_size") not in (None, "") \
                    else 0.0
                side = int(row["side"]) if row.get("side") not in (None, "") else 0
            except (TypeError, ValueError) as exc:
                raise TickFileError(f"{path}, line {line}: {exc}") from None
            problem = _check(exch, prev, bid, ask, bsz, asz, side)
            if problem:
                raise TickFileError(f"{path}, line {line}: {problem}")
            prev = exch
            rows.append((exch, recv, bid, ask, bsz, asz, last_px, last_sz, side))
    if not rows:
        raise TickFileError(f"{path}: no ticks (only a header)")
    return np.array(rows, dtype=TICK_DTYPE)


def _check(exch: int, prev: int, bid: float, ask: float, bsz: float, asz: float,
           side: int) -> str | None:
    if not (math.isfinite(bid) and math.isfinite(ask)) or bid <= 0 or ask <= 0:
        return f"bad price (bid={bid}, ask={ask}): prices must be finite and positive"
    if bid >= ask:
        return f"crossed book (bid {bid} >= ask {ask})"
    if not (math.isfinite(bsz) and math.isfinite(asz)) or bsz < 0 or asz < 0:
        return f"bad size (bid_size={bsz}, ask_size={asz})"
    if exch < prev:
        return f"exchange timestamp goes backwards ({exch} < {prev})"
    if side not in (-1, 0, 1):
        return f"side must be -1, 0 or 1, got {side}"
    return None


def write_csv(ticks: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TICK_DTYPE.names)
        for t in ticks:
            w.writerow([int(t["exch_ns"]), int(t["recv_ns"]), repr(float(t["bid"])),
                        repr(float(t["ask"])), repr(float(t["bid_size"])),
                        repr(float(t["ask_size"])),
                        "" if math.isnan(t["last_px"]) else repr(float(t["last_px"])),
                        repr(float(t["last_size"])), int(t["side"])])
    return path


class _Book:
    """Price levels from depthUpdate diffs (quantity 0 removes a level)."""

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}

    def apply(self, side: dict[float, float], levels: Any) -> None:
        for px, qty in levels:
            p, q = float(px), float(qty)
            if q == 0.0:
                side.pop(p, None)
            else:
                side[p] = q

    def best(self) -> tuple[float, float, float, float] | None:
        if not self.bids or not self.asks:
            return None
        b = max(self.bids)
        a = min(self.asks)
        return b, self.bids[b], a, self.asks[a]


def open_text(path: Path) -> Any:
    """A text stream over a plain, ``.gz`` or ``.zst`` file (by its magic bytes, whatever its
    name), decoded as UTF-8; undecodable bytes are an error that names the file."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        import gzip

        return gzip.open(path, "rt", encoding="utf-8", newline="")
    if magic == b"\x28\xb5\x2f\xfd":
        try:
            import zstandard
        except ImportError:
            raise TickFileError(f"{path}: a zstd file; pip install zstandard to read it") \
                from None
        import io

        return io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(open(path, "rb")),
                                encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def is_capture(source: Any) -> bool:
    """Probe: a file (plain, .gz or .zst) whose first line is ``<receive_ns> {json}``."""
    if not isinstance(source, (str, Path)):
        return False
    p = Path(source)
    if not p.is_file():
        return False
    try:
        with open_text(p) as f:
            first = f.readline(4096)
    except (OSError, UnicodeDecodeError, EOFError, TickFileError):
        return False
    head, _, body = first.partition(" ")
    return head.isdigit() and body.lstrip().startswith("{")


def read_binance(path: str | Path, symbol: str | None = None) -> np.ndarray:
    """Read a Binance WebSocket recording (``<receive_ns> <json>`` per line) into ticks.

    ``bookTicker`` sets the top of book; ``depthUpdate`` diffs maintain a book whose best
    levels are used when no ``bookTicker`` stream is recorded; ``trade``/``aggTrade`` add the
    last trade (``m`` true: the buyer is the maker, so the aggressor sold, side -1). Event
    times (``E``/``T``, ms) become ``exch_ns``; without them the receive time is used.
    Messages of other symbols than ``symbol`` (default: the first seen) are skipped. A
    tick is emitted once both sides of the book are known.
    """
    path = Path(path)
    if not path.is_file():
        raise TickFileError(f"{path}: no such file")
    out: list[tuple] = []
    book = _Book()
    top: list[float] | None = None  # bid, bid_size, ask, ask_size from bookTicker
    use_ticker = False
    last_px, last_sz = math.nan, 0.0
    prev_exch = -(2**63)
    with open_text(path) as f:
        for line_no, line in _numbered_lines(f, path):
            line = line.strip()
            if not line:
                continue
            head, _, body = line.partition(" ")
            try:
                recv = int(head)
                msg = json.loads(body)
            except (ValueError, json.JSONDecodeError) as exc:
                raise TickFileError(f"{path}, line {line_no}: expected '<receive_ns> <json>' "
                                    f"({type(exc).__name__}: {exc})") from None
            if isinstance(msg, dict) and "data" in msg and "stream" in msg:
                msg = msg["data"]
            if not isinstance(msg, dict):
                raise TickFileError(f"{path}, line {line_no}: the JSON message is not an object")
            sym = msg.get("s")
            if symbol is None and sym:
                symbol = sym
            if sym and symbol and sym != symbol:
                continue
            event = msg.get("e") or ("bookTicker" if {"b", "a", "B", "A"} <= msg.keys()
                                     else None)
            ms = msg.get("T") or msg.get("E")
            exch = int(ms) * 1_000_000 if ms is not None else recv
            side = 0
            try:
                if event == "bookTicker":
                    top = [float(msg["b"]), float(msg["B"]), float(msg["a"]), float(msg["A"])]
                    use_ticker = True
                elif event == "depthUpdate":
                    book.apply(book.bids, msg.get("b", []))
                    book.apply(book.asks, msg.get("a", []))
                elif event in ("trade", "aggTrade"):
                    last_px, last_sz = float(msg["p"]), float(msg["q"])
                    side = -1 if msg.get("m") else 1
                else:
                    continue  # other streams (kline, ...) carry no tick
            except (KeyError, TypeError, ValueError) as exc:
                raise TickFileError(f"{path}, line {line_no}: {event} message lacks or mangles "
                                    f"field {exc}") from None
            state = top if use_ticker else (list(book.best()) if book.best() else None)
            if state is None:
                continue
            bid, bsz, ask, asz = state
            exch = max(exch, prev_exch)  # trades and quotes interleave at ms resolution
            problem = _check(exch, prev_exch, bid, ask, bsz, asz, side)
            if problem:
                raise TickFileError(f"{path}, line {line_no}: {problem}")
            prev_exch = exch
            out.append((exch, recv, bid, ask, bsz, asz, last_px, last_sz, side))
    if not out:
        raise TickFileError(f"{path}: no ticks (no bookTicker/depthUpdate with both sides)")
    return np.array(out, dtype=TICK_DTYPE)


def _numbered_lines(f: Any, path: Path) -> Any:
    """``enumerate(f, 1)`` that turns a decoding error into a TickFileError naming the line."""
    n = 0
    while True:
        try:
            line = f.readline()
        except UnicodeDecodeError as exc:
            raise TickFileError(f"{path}, line {n + 1}: not UTF-8 text ({exc}); is this a "
                                "capture of '<receive_ns> <json>' lines?") from None
        if not line:
            return
        n += 1
        yield n, line


def read_capture(source: str | Path, **options: Any) -> np.ndarray:
    """Registered reader ``binance``: a capture file, or ``binance:PATH``."""
    s = str(source)
    return read_binance(s[len("binance:"):] if s.startswith("binance:") else s, **options)
