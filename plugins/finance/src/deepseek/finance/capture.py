"""Market-data captures read as a stream of typed records, each with both clocks.

A capture is a text file, plain, gzip or zstd (recognised by its first bytes, whatever its
name), with one message per line: ``<receive_ns> <json>``, the local receive time in ns
since the epoch and the raw message. Binance WebSocket messages are understood, raw or in
combined-stream envelopes (``{"stream": ..., "data": ...}``), plus REST depth snapshots
(``{"lastUpdateId": ...}``) written into the same file.

Messages are decoded straight into typed records by msgspec (decimal strings become floats,
book levels become ``(price, qty)`` tuples, in C); a message whose fields are missing or
malformed is an error naming the file, the line and the field. Record kinds (one class each;
``kind`` names it):

=========  ===========================  ====================================================
kind       Binance message              fields besides the clocks and the symbol
=========  ===========================  ====================================================
trade      ``trade``, ``aggTrade``      price, qty, side (+1 buyer aggressed, -1 seller), id
quote      ``bookTicker``               bid, bid_qty, ask, ask_qty, update_id
depth      ``depthUpdate``              first_id (U), last_id (u), prev_id (pu, futures;
                                        -1 on spot), bids, asks: ((price, qty), ...)
snapshot   REST ``/depth`` answer       last_id (lastUpdateId), bids, asks
=========  ===========================  ====================================================

Clocks. Every record has ``recv_ns`` (the capture's receive time) and ``exch_ns``, the
exchange's time where the message carries one: ``T`` (trade or transaction time) when
present, else ``E`` (event time), in ms turned into ns; ``-1`` when the message has neither
(spot ``bookTicker``, spot snapshots). ``time_ns`` is the record's time on the chosen clock:

* ``clock="receive"`` (default): ``recv_ns`` for every record. One clock for all streams,
  the time a live strategy sees the message, monotone in a capture written by one process.
* ``clock="exchange"``: ``exch_ns``; a record without one gets its receive time shifted by
  the exchange-minus-receive offset of the latest record that had both, taken from its event
  time ``E`` (counted in the stats as ``time_estimated``). Exchange times of different
  streams interleave out of order at millisecond resolution, so this clock usually needs
  ``order="clamp"``.

Out-of-order times (``time_ns`` below the previous record's) follow ``order``: ``"error"``
(default) raises a :class:`TickFileError` naming the line, ``"clamp"`` sets the time to the
previous one, ``"drop"`` skips the record; clamped and dropped records are counted in
:attr:`CaptureReader.stats`. Nothing is altered or skipped without a count.

Duplicate trades: a trade whose id (``t``, or ``a`` for ``aggTrade``) the same symbol's
stream already delivered among its last 65,536 trades -- a trade re-received after a
reconnect, or a line written twice -- is dropped and counted (``duplicate_trades``); it
would otherwise be counted twice in volumes, flows and fills.

Symbols: ``symbol=None`` reads every symbol (each record names its own); ``symbol="ETHUSDT"``
keeps one and counts the others. A snapshot that names no symbol (spot REST answers) is
attributed to the selected symbol, or to the capture's only symbol so far.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import zlib
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, TextIO

import msgspec
import numpy as np
from msgspec import Raw, Struct, field

from deepseek.finance.errors import TickFileError
from deepseek.finance.levels import as_levels

log = logging.getLogger(__name__)

#: what reading a cut or damaged compressed file raises (gzip: EOFError, BadGzipFile, zlib)
DAMAGED: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error)
#: trades per symbol whose ids are remembered to recognise a duplicate
TRADE_ID_MEMORY = 65_536

CLOCKS = ("receive", "exchange")
ORDERS = ("error", "clamp", "drop")
_MS = 1_000_000
Level = tuple[float, float]
# Levels decode as the raw JSON text of the list and become an (n, 2) float64 array of
# (price, qty) rows in __post_init__ (compiled parsing, exact; see deepseek.finance.levels);
# built in Python, a list of pairs is accepted and converted the same way.
Levels = Raw


class _Record(Struct, kw_only=True):
    """Fields every record has: ``symbol`` (``s``), the exchange's event time ``event_ms``
    (``E``) and transaction time ``trans_ms`` (``T``) as sent (-1 when absent), and the
    clocks the reader fills in: ``recv_ns``, ``exch_ns`` and ``time_ns``."""

    kind: ClassVar[str] = ""
    symbol: str = field(name="s", default="")
    event_ms: int = field(name="E", default=-1)
    trans_ms: int = field(name="T", default=-1)
    recv_ns: int = field(name="~recv_ns", default=-1)
    exch_ns: int = field(name="~exch_ns", default=-1)
    time_ns: int = field(name="~time_ns", default=-1)


class Trade(_Record, kw_only=True):
    """A trade print (``trade`` or ``aggTrade``): ``side`` +1 when the buyer took liquidity,
    -1 when the seller did (Binance's ``m``, buyer is maker)."""

    kind: ClassVar[str] = "trade"
    price: float = field(name="p")
    qty: float = field(name="q")
    buyer_maker: bool = field(name="m")
    trade_id: int = field(name="t", default=-1)
    agg_id: int = field(name="a", default=-1)

    @property
    def side(self) -> int:
        """The aggressor's side: +1 a buy (the buyer took the ask), -1 a sell."""
        return -1 if self.buyer_maker else 1


class Quote(_Record, kw_only=True):
    """Best bid and ask (``bookTicker``); ``update_id`` is the book's update ID."""

    kind: ClassVar[str] = "quote"
    bid: float = field(name="b")
    bid_qty: float = field(name="B")
    ask: float = field(name="a")
    ask_qty: float = field(name="A")
    update_id: int = field(name="u")


class _WithLevels(_Record, kw_only=True, eq=False):
    """A record with ``bids``/``asks`` levels: decoded as raw JSON (or given as pairs) and
    held as ``(n, 2)`` float64 arrays; equality compares them by value. ``level_keys``: the
    JSON names of the two fields, for the errors."""

    level_keys: ClassVar[tuple[str, str]] = ("bids", "asks")

    def __post_init__(self) -> None:  # the subclasses declare bids and asks
        self.bids = as_levels(self.bids, self.level_keys[0])  # type: ignore[attr-defined]
        self.asks = as_levels(self.asks, self.level_keys[1])  # type: ignore[attr-defined]

    def __eq__(self, other: Any) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        for name in self.__struct_fields__:
            x, y = getattr(self, name), getattr(other, name)
            if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
                if not np.array_equal(x, y):
                    return False
            elif x != y:
                return False
        return True


class DepthDiff(_WithLevels, kw_only=True, eq=False):
    """A book diff: levels to set (qty 0 removes) as ``(n, 2)`` arrays of ``(price, qty)``
    rows, update IDs ``first_id`` (U) .. ``last_id`` (u), and ``prev_id`` (pu, futures; -1
    on spot)."""

    kind: ClassVar[str] = "depth"
    level_keys: ClassVar[tuple[str, str]] = ("b", "a")
    first_id: int = field(name="U")
    last_id: int = field(name="u")
    prev_id: int = field(name="pu", default=-1)
    bids: Levels = field(name="b")
    asks: Levels = field(name="a")


class Snapshot(_WithLevels, kw_only=True, eq=False):
    """A full depth snapshot (REST ``/depth``): every level and the ``last_id`` it is current
    to. Spot answers name no symbol (``symbol`` is then attributed by the reader)."""

    kind: ClassVar[str] = "snapshot"
    symbol: str = field(name="symbol", default="")
    last_id: int = field(name="lastUpdateId")
    bids: Levels = field(name="bids")
    asks: Levels = field(name="asks")


Record = Trade | Quote | DepthDiff | Snapshot


class _Head(Struct):
    """The top-level keys that tell a message's kind (all others are skipped unparsed)."""

    stream: Any = None
    data: Raw = Raw(b"")  # empty when absent
    e: Any = None
    lastUpdateId: Any = None  # noqa: N815 (Binance's name)
    u: Any = None
    A: Any = None
    code: Any = None


_HEAD = msgspec.json.Decoder(_Head)
# lax: Binance sends prices, sizes and level pairs as decimal strings
_DECODERS = tuple(msgspec.json.Decoder(t, strict=False) for t in (Trade, Quote, DepthDiff,
                                                                    Snapshot))
# a combined-stream envelope decoded in one pass when the stream name says the kind
_ENVELOPES = tuple(msgspec.json.Decoder(msgspec.defstruct(f"_Env{t.__name__}",
                                                          [("stream", str), ("data", t)]),
                                        strict=False) for t in (Trade, Quote, DepthDiff,
                                                                Snapshot))
_PREFIXES = (b'{"stream":"', b'{"stream": "')
_STREAM_KIND = {"trade": 0, "aggTrade": 0, "bookTicker": 1, "depth": 2}
_EVENT_KIND = {"trade": 0, "aggTrade": 0, "bookTicker": 1, "depthUpdate": 2}


def _kind_of(head: _Head) -> int | str:
    """0..3 for trade, quote, depth, snapshot; else the name counted as ignored."""
    e = head.e
    if e is None:
        if head.lastUpdateId is not None:
            return 3
        if head.A is not None and head.u is not None:
            return 1
        return "error" if head.code is not None else "unknown"
    kind = _EVENT_KIND.get(e) if type(e) is str else None
    return str(e) if kind is None else kind


def _stream_kind(stream: str) -> int | str | None:
    """The kind a combined stream's name says (``btcusdt@depth@100ms``): None when the name
    does not say, a string (ignored) for partial-book streams (``@depth5``), which are not
    diffs."""
    name = stream.partition("@")[2].partition("@")[0]
    kind = _STREAM_KIND.get(name)
    if kind is None and name.startswith("depth") and name[5:].isdigit():
        return f"partial book ({name})"
    return kind


def open_binary(path: str | Path) -> BinaryIO:
    """A binary stream over a plain, gzip or zstd file, chosen by its magic bytes."""
    path = Path(path)
    if not path.is_file():
        raise TickFileError(f"{path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":  # a C-level line reader over the decompressed stream
        return io.BufferedReader(_Chunks(gzip.GzipFile(path, "rb")), 1 << 20)
    if magic == b"\x28\xb5\x2f\xfd":
        try:
            import zstandard
        except ImportError:  # the edge install leaves it out (24 MB)
            raise TickFileError(f"{path}: a zstd file, and zstandard is not installed: pip "
                                "install \"deepseek-finance[zstd]\" (or decompress it: "
                                "zstd -d)") from None

        return io.BufferedReader(_ZstdFrames(open(path, "rb"), zstandard), 1 << 20)
    return open(path, "rb")


class _Chunks(io.RawIOBase):
    """A decompressing stream read one chunk at a time (``read1``), so that the lines before
    a cut or damaged part are delivered before its error is raised (a reader that fills a
    whole buffer would lose them with the error)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self.inner.read1(len(buf))
        buf[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


class _ZstdFrames(io.RawIOBase):
    """The decompressed bytes of a zstd file, frame after frame; a file that ends inside a
    frame raises EOFError as a cut gzip file does (zstandard's own stream reader stops
    there silently, which would lose the rest of the file without a word)."""

    def __init__(self, raw: BinaryIO, zstandard: Any) -> None:
        self.raw = raw
        self.zstd = zstandard.ZstdDecompressor()
        self.d = self.zstd.decompressobj()
        self.pending = b""
        self.started = False  # the current frame has received input

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        while not self.pending:
            chunk = self.raw.read(1 << 16)
            if not chunk:
                if self.started and not self.d.eof:
                    raise EOFError("zstd stream ended inside a frame")
                return 0
            self._feed(chunk)
        n = min(len(buf), len(self.pending))
        buf[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def _feed(self, chunk: bytes) -> None:
        while chunk:
            self.started = True
            self.pending += self.d.decompress(chunk)
            chunk = self.d.unused_data if self.d.eof else b""
            if self.d.eof:  # the next frame, if any, starts in what is left
                self.d = self.zstd.decompressobj()
                self.started = False

    def close(self) -> None:
        self.raw.close()
        super().close()


@contextlib.contextmanager
def open_text(path: str | Path) -> Iterator[CountedLines]:
    """UTF-8 lines over :func:`open_binary` (newlines kept for the csv module; a byte-order
    mark at the start, as a spreadsheet on Windows writes one, dropped), counted: text that
    is not UTF-8, and a compressed file that is cut short or damaged, are a TickFileError
    naming the file and the last line read whole."""
    with open_binary(path) as raw:
        f = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        lines = CountedLines(f)
        try:
            yield lines
        except UnicodeDecodeError as exc:
            raise TickFileError(f"{path}, after line {lines.n}: not UTF-8 text ({exc})") \
                from None
        except DAMAGED as exc:
            raise damaged(path, lines.n, exc) from None
        finally:
            f.detach()


class CountedLines:
    """The lines of a text file, counting those read (for error messages)."""

    def __init__(self, f: TextIO) -> None:
        self.f = f
        self.n = 0

    def __iter__(self) -> Iterator[str]:
        for line in self.f:
            self.n += 1
            yield line


def damaged(path: str | Path, line_no: int, exc: BaseException) -> TickFileError:
    """The error of a compressed file cut short or damaged, the same from every reader."""
    return TickFileError(f"{path}, after line {line_no}: the compressed stream is damaged or "
                         f"cut short ({exc}); the lines up to {line_no} read whole")


def is_capture(source: Any) -> bool:
    """True when ``source`` is a file whose first non-blank line is ``<integer> {json...}``
    (the probe readers use to recognise a capture whatever its name)."""
    try:
        path = Path(source)
        if not path.is_file():
            return False
        with open_binary(path) as f:
            for _, line in zip(range(16), f):
                if not line.strip():
                    continue
                head, _, body = line.partition(b" ")
                return head.strip().isdigit() and body.lstrip().startswith(b"{")
    except (OSError, EOFError, TypeError, ValueError, TickFileError):
        return False
    return False


class CaptureReader:
    """Iterate the records of a capture (constant memory); :attr:`stats` counts everything.

    ``for rec in CaptureReader(path, symbol=None, clock="receive", order="error"): ...``
    """

    def __init__(self, path: str | Path, *, symbol: str | None = None,
                 clock: str = "receive", order: str = "error") -> None:
        if clock not in CLOCKS:
            raise TickFileError(f"clock={clock!r}: use one of {', '.join(CLOCKS)}")
        if order not in ORDERS:
            raise TickFileError(f"order={order!r}: use one of {', '.join(ORDERS)}")
        self.path = Path(path)
        self.symbol = symbol.upper() if symbol else None
        self.clock = clock
        self.order = order
        self.stats: dict[str, Any] = {
            "lines": 0, "records": {"trade": 0, "quote": 0, "depth": 0, "snapshot": 0},
            "symbols": {}, "other_symbols": 0, "ignored": {}, "blank_lines": 0,
            "out_of_order": 0, "clamped": 0, "dropped": 0, "time_estimated": 0,
            "duplicate_trades": 0,
            "clock": clock, "order": order, "first_time_ns": None, "last_time_ns": None,
        }

    def __iter__(self) -> Iterator[Record]:
        st = self.stats
        counts = st["records"]
        symbols: dict[str, int] = st["symbols"]
        ignored: dict[str, int] = st["ignored"]
        want = self.symbol
        exchange_clock = self.clock == "exchange"
        order = self.order
        path = self.path
        first = prev_time = -(2**63)
        offset = 0  # exchange - receive, from the latest record with both clocks
        head_decode = _HEAD.decode
        decoders = [d.decode for d in _DECODERS]
        envelopes = [d.decode for d in _ENVELOPES]
        p0, p1 = _PREFIXES
        n0, n1 = len(p0), len(p1)
        n_kind = [0, 0, 0, 0]
        stream_kinds: dict[bytes, int | str | None] = {}
        seen_trades: dict[tuple[str, str], tuple[set[int], deque[int]]] = {}
        line_no = 0
        f = open_binary(path)
        try:
            for line_no, line in enumerate(f, 1):
                sp = line.find(b" ")
                rec: Record | None = None
                kind: int | str | None = None
                body: Any = line[sp + 1:]
                # fast path: '{"stream":"NAME", "data": {...}}' whose NAME says the kind
                if body.startswith(p0) or body.startswith(p1):
                    start = n0 if body[n0 - 1] == 34 else n1  # 34: '"'
                    name = body[start:body.find(b'"', start)]
                    try:
                        kind = stream_kinds[name]
                    except KeyError:
                        kind = stream_kinds[name] = _stream_kind(name.decode("utf-8",
                                                                             "replace"))
                    if type(kind) is int and sp > 0:
                        try:
                            recv = int(line[:sp])
                            rec = envelopes[kind](body).data
                        except (ValueError, msgspec.DecodeError):
                            rec = None  # the general path below says what is wrong
                if rec is None:
                    try:
                        if sp < 0:
                            raise ValueError("no space after the receive time")
                        recv = int(line[:sp])
                        head = head_decode(body)
                    except (ValueError, msgspec.DecodeError) as exc:
                        if not line.strip():
                            st["blank_lines"] += 1
                            continue
                        raise self._bad_line(line_no, exc, body if sp >= 0 else b"") \
                            from None
                    stream = head.stream
                    if type(stream) is str and len(head.data):
                        body = head.data
                        kind = _stream_kind(stream)
                        if kind is None:
                            try:
                                kind = _kind_of(head_decode(body))
                            except msgspec.DecodeError as exc:
                                raise self._bad_line(line_no, exc, body) from None
                    else:
                        kind = _kind_of(head)
                    if type(kind) is str:
                        ignored[kind] = ignored.get(kind, 0) + 1
                        continue
                    try:
                        rec = decoders[kind](body)  # type: ignore[index]
                    except msgspec.DecodeError as exc:  # ValidationError included
                        what = ("trade", "bookTicker", "depthUpdate", "snapshot")[kind]  # type: ignore
                        raise TickFileError(f"{path}, line {line_no}: {what} message: {exc} "
                                            "(a field is missing or not a number)") from None
                sym = rec.symbol
                if want is not None and sym != want and sym and sym.upper() != want:
                    st["other_symbols"] += 1
                    continue
                if kind == 0 and self._seen_trade(rec, seen_trades):
                    st["duplicate_trades"] += 1
                    continue
                ex = rec.trans_ms
                if ex < 0:
                    ex = rec.event_ms
                ex = ex * _MS if ex >= 0 else -1
                if exchange_clock:
                    if ex >= 0:
                        t = ex
                        ev = rec.event_ms  # the push time: clock offset plus latency
                        offset = (ev * _MS if ev >= 0 else ex) - recv
                    else:
                        t = recv + offset
                        st["time_estimated"] += 1
                else:
                    t = recv
                if t < prev_time:
                    st["out_of_order"] += 1
                    if order == "error":
                        raise TickFileError(
                            f"{path}, line {line_no}: {self.clock} time goes backwards "
                            f"({t} < {prev_time}, by {(prev_time - t) / 1e6:.3f} ms); "
                            "read with order='clamp' or 'drop' (--order) to accept it, "
                            "or with clock='receive'")
                    if order == "drop":
                        st["dropped"] += 1
                        continue
                    st["clamped"] += 1
                    t = prev_time
                rec.recv_ns = recv
                rec.exch_ns = ex
                rec.time_ns = t
                if not sym:
                    sym = self._attribute(rec, symbols, line_no)
                symbols[sym] = symbols.get(sym, 0) + 1
                n_kind[kind] += 1  # type: ignore[index]
                if first == -(2**63):
                    first = st["first_time_ns"] = t
                prev_time = t
                yield rec
        except DAMAGED as exc:
            raise damaged(path, line_no, exc) from None
        finally:
            f.close()
            st["lines"] = line_no
            for k, n in zip(("trade", "quote", "depth", "snapshot"), n_kind):
                counts[k] += n
            if prev_time != -(2**63):
                st["last_time_ns"] = prev_time

    @staticmethod
    def _seen_trade(rec: Any, seen: dict[tuple[str, str], tuple[set[int], deque[int]]]
                    ) -> bool:
        """Whether this trade's id was delivered already (and remember it if not)."""
        tid, key = rec.trade_id, "t"
        if tid < 0:
            tid, key = rec.agg_id, "a"
            if tid < 0:
                return False  # no id to check
        ids, order = seen.setdefault((rec.symbol, key), (set(), deque()))
        if tid in ids:
            return True
        ids.add(tid)
        order.append(tid)
        if len(order) > TRADE_ID_MEMORY:
            ids.discard(order.popleft())
        return False

    def _bad_line(self, line_no: int, exc: Exception, body: bytes) -> TickFileError:
        where = f"{self.path}, line {line_no}"
        if isinstance(exc, msgspec.ValidationError):
            return TickFileError(f"{where}: the JSON message is not an object ({exc})")
        if not body.strip():
            return TickFileError(f"{where}: expected '<receive_ns> <json>'; the line has no "
                                 "JSON after the time")
        return TickFileError(f"{where}: expected '<receive_ns> <json>' "
                             f"({type(exc).__name__}: {exc})")

    def _attribute(self, rec: Record, symbols: dict[str, int], line_no: int) -> str:
        """The symbol of a record that names none (a spot REST snapshot)."""
        if self.symbol:
            sym = self.symbol
        elif len(symbols) == 1:
            sym = next(iter(symbols))
        elif symbols:
            raise TickFileError(f"{self.path}, line {line_no}: a {rec.kind} that names no "
                                f"symbol in a capture of several ({', '.join(symbols)}); "
                                "pass symbol=")
        else:
            sym = ""
        rec.symbol = sym
        return sym
