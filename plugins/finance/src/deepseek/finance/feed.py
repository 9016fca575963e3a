"""The UDP feed server, its guard against bad ticks, and the replay client.

Wire format (little-endian, fixed size, version 3):

Tick datagram, 96 bytes, ``struct`` format ``<HBBIqq8db7x``:

======  ====  ==========================================================
offset  type  field
======  ====  ==========================================================
0       u16   magic 0xD5EE
2       u8    version (3)
3       u8    flags (0)
4       u32   sequence number (echoed in the answer)
8       i64   tick time, ns since the epoch (the clock the model was trained on)
16      i64   sender timestamp, ns (for the sender's own use; not interpreted)
24      f64   bid
32      f64   ask
40      f64   bid size
48      f64   ask size
56      f64   bid depth (the bid size plus the book's next levels; the bid size without a book)
64      f64   ask depth
72      f64   last trade price (NaN: none yet)
80      f64   last trade size
88      i8    side of this tick's trade: +1 buy, -1 sell, 0 none
89      7x    padding
======  ====  ==========================================================

Control datagram, 48 bytes: a 16-byte head ``<HBBIq`` (magic, version, command -- 1: reset
the model state --, sequence number, sender time in ns since the epoch) followed by the
32-byte HMAC-SHA256 of the head under the server's control key. The server refuses a control
datagram when it has no key, when the tag is wrong, when its sender time is not later than
the last accepted one's (a recorded datagram cannot be replayed), or is outside the clock
window. Answered with status ``reset``.

Decision datagram, 32 bytes, ``<HBBIqb3x3f``: magic, version, status, sequence number,
server receive time (ns, ``time.perf_counter_ns`` clock of the server), decision (-1/0/+1),
padding, three class logits (down, flat, up; float32).

Status codes (:data:`STATUS`): 0 ok; rejected ticks -- 1 bad price (NaN, infinite, zero or
negative), 2 crossed book, 3 time going backwards, 4 bad side, 5 bad magic/version, 6 bad
size or depth (NaN, infinite, negative, above the absolute cap, depth below the top size),
7 bad trade (a trade without a positive finite price and size, or printed more than
``max_jump`` away from the tick's mid), 8 time outside the window around the server's clock
(more than ``max_ahead_s`` ahead of it or ``time_window_s`` behind), 9 price jump, 10 size
jump, 11 time jump; 12 state error (a feature or logit came out non-finite: no decision, the
state is reset); 13 reset done; 14 unknown command; 15 unauthorized control datagram. A
rejected tick never touches the state. A wrong-size datagram cannot be trusted to carry a
sequence number: it is counted and not answered.

The guard (:class:`TickGuard`, :class:`Limits`):

* **Time** follows the server's clock: a tick more than ``max_ahead_s`` (default 50 ms)
  ahead of it, or more than ``time_window_s`` behind, is refused and moves nothing; so a
  forged future tick can hold genuine ones back (as "time going backwards") for at most
  ``max_ahead_s``. ``time_window_s`` 0 turns the clock off, to replay recorded ticks.
* **Jumps** are measured against robust references, the medians of the last ``window``
  accepted mids and book depths, not against the last tick: a mid more than ``max_jump``
  from the median mid, a size more than ``size_jump`` times the median depth, or a time more
  than ``max_gap_s`` after the last accepted tick is rejected. A chain of steps each inside
  the limit cannot walk a median: it moves only when half the window has moved.
* **A new regime** (a real crash, a gap over a weekend) is accepted when ``confirm`` rejected
  ticks that agree with the first of them span ``confirm_s`` seconds of tick time with no
  accepted tick between them: while the genuine feed flows, its ticks are accepted and
  clear the pending regime, and with the clock on, tick time cannot run ahead of the
  server's. Then the state is reset and the references start again from the new ticks.
* **Resets** (a signed control datagram, or SIGHUP to ``deepseek finance serve``) clear the
  model's state and the time reference, and keep the price and depth references: the first
  tick after a reset goes through the same checks as any other.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import socket
import struct
import threading
import time
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from deepseek.finance.errors import FinanceError
from deepseek.service import SignalEvent

log = logging.getLogger(__name__)

MAGIC = 0xD5EE
VERSION = 3
TICK_STRUCT = struct.Struct("<HBBIqq8db7x")
CONTROL_STRUCT = struct.Struct("<HBBIq")
DECISION_STRUCT = struct.Struct("<HBBIqb3x3f")
TAG_SIZE = hashlib.sha256().digest_size
TICK_SIZE = TICK_STRUCT.size
CONTROL_SIZE = CONTROL_STRUCT.size + TAG_SIZE
DECISION_SIZE = DECISION_STRUCT.size
CMD_RESET = 1
OK, BAD_PRICE, CROSSED, BACKWARDS, BAD_SIDE, BAD_HEADER, BAD_SIZE, BAD_TRADE = range(8)
CLOCK_SKEW, PRICE_JUMP, SIZE_JUMP, TIME_JUMP, STATE_ERROR, RESET, BAD_COMMAND = range(8, 15)
UNAUTHORIZED = 15
STATUS = {OK: "ok", BAD_PRICE: "bad_price", CROSSED: "crossed", BACKWARDS: "time_backwards",
          BAD_SIDE: "bad_side", BAD_HEADER: "bad_header", BAD_SIZE: "bad_size",
          BAD_TRADE: "bad_trade", CLOCK_SKEW: "clock_skew", PRICE_JUMP: "price_jump",
          SIZE_JUMP: "size_jump", TIME_JUMP: "time_jump", STATE_ERROR: "state_error",
          RESET: "reset", BAD_COMMAND: "bad_command", UNAUTHORIZED: "unauthorized"}
REJECTIONS = tuple(v for k, v in STATUS.items() if k not in (OK, RESET))
KEY_ENV = "DEEPSEEK_FEED_CONTROL_KEY"
MIN_KEY_BYTES = 16
_INF = math.inf


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` as ``(host, port)``.

    Raises:
        FinanceError: not a host and a port in 0..65535.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host or not 0 <= int(port) <= 65535:
        raise FinanceError(f"bad UDP address {text!r}; use HOST:PORT, e.g. 127.0.0.1:9999")
    return host, int(port)


def pack_tick(seq: int, time_ns: int, bid: float, ask: float, bid_size: float,
              ask_size: float, bid_depth: float | None = None, ask_depth: float | None = None,
              last_px: float = math.nan, last_size: float = 0.0, side: int = 0,
              send_ns: int = 0) -> bytes:
    """A tick datagram; depths default to the top sizes."""
    return TICK_STRUCT.pack(MAGIC, VERSION, 0, seq & 0xFFFFFFFF, time_ns, send_ns, bid, ask,
                            bid_size, ask_size, bid_size if bid_depth is None else bid_depth,
                            ask_size if ask_depth is None else ask_depth, last_px, last_size,
                            side)


def load_control_key(key: str | bytes | None = None) -> bytes | None:
    """The control key: ``key`` or the environment's ``DEEPSEEK_FEED_CONTROL_KEY``; None when
    neither is set (control datagrams are then refused). At least 16 bytes."""
    if key is None:
        key = os.environ.get(KEY_ENV) or None
    if key is None:
        return None
    raw = key.encode() if isinstance(key, str) else bytes(key)
    if len(raw) < MIN_KEY_BYTES:
        raise FinanceError(f"the control key has {len(raw)} bytes; give at least "
                           f"{MIN_KEY_BYTES} (e.g. the output of `openssl rand -hex 32`) with "
                           f"--control-key or {KEY_ENV}")
    return raw


def pack_reset(key: str | bytes, seq: int = 0, send_ns: int | None = None) -> bytes:
    """A signed reset datagram (``send_ns``: now unless given)."""
    raw = load_control_key(key)
    assert raw is not None
    head = CONTROL_STRUCT.pack(MAGIC, VERSION, CMD_RESET, seq & 0xFFFFFFFF,
                               time.time_ns() if send_ns is None else send_ns)
    return head + hmac.new(raw, head, hashlib.sha256).digest()


@dataclass
class Limits:
    """What the server accepts (see the module docstring). The defaults leave a wide margin
    over the four shared Binance captures, where the mid strays at most 0.05 % from the
    median of the last 32 accepted and a size reaches at most 43x the median depth."""

    max_jump: float = 0.05
    size_jump: float = 100.0
    max_size: float = 1e12
    max_gap_s: float = 300.0
    time_window_s: float = 10.0
    max_ahead_s: float = 0.05
    confirm: int = 3
    confirm_s: float = 1.0
    window: int = 32

    def __post_init__(self) -> None:
        for name in ("max_jump", "size_jump", "max_size", "max_gap_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise FinanceError(f"limit {name}={v!r}: give a positive number")
        for name in ("time_window_s", "max_ahead_s", "confirm_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise FinanceError(f"{name}={v!r}: give seconds >= 0"
                                   + (" (0: no check against the local clock)"
                                      if name == "time_window_s" else ""))
        if int(self.confirm) < 1:
            raise FinanceError(f"confirm={self.confirm!r}: give 1 or more ticks")
        if not 1 <= int(self.window) <= 4096:
            raise FinanceError(f"window={self.window!r}: give 1 to 4096 accepted ticks")


class RunningMedian:
    """The median of the last ``n`` values added (a sorted copy kept beside their order)."""

    __slots__ = ("n", "order", "sorted")

    def __init__(self, n: int) -> None:
        self.n = n
        self.order: deque[float] = deque()
        self.sorted: list[float] = []

    def add(self, v: float) -> None:
        """Add a value, dropping the oldest beyond the window."""
        if len(self.order) == self.n:
            old = self.order.popleft()
            del self.sorted[bisect_left(self.sorted, old)]
        self.order.append(v)
        insort(self.sorted, v)

    def value(self) -> float:
        """The median of the values in the window."""
        s = self.sorted
        return s[len(s) >> 1]

    def __len__(self) -> int:
        return len(self.order)

    def clear(self) -> None:
        """Empty the window."""
        self.order.clear()
        self.sorted.clear()


class TickGuard:
    """Validates every field of a tick against fixed rules and against robust references of
    the accepted ticks; never changes its references for a rejected tick (see the module
    docstring)."""

    def __init__(self, limits: Limits | None = None, clock: Any = time.time_ns) -> None:
        self.limits = limits or Limits()
        self.clock = clock
        self.mids = RunningMedian(int(self.limits.window))
        self.depths = RunningMedian(int(self.limits.window))
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new regime): the next tick starts the references."""
        self.mids.clear()
        self.depths.clear()
        self.restart()

    def restart(self) -> None:
        """Forget the time reference and any pending regime, keep the price and depth
        references (a reset of the model's state)."""
        self.last_time: int | None = None
        self._pending: list[float] | None = None  # first time, first mid, first depth, count

    def check(self, t: int, bid: float, ask: float, bsz: float, asz: float, bd: float,
              ad: float, lpx: float, lsz: float, side: int) -> int:
        """A status code; -1: a confirmed new regime (reset the state, then accept)."""
        lim = self.limits
        # NaN fails every comparison, so each test is written to pass only for good values
        if not (0.0 < bid < _INF and 0.0 < ask < _INF):
            return BAD_PRICE
        if bid >= ask:
            return CROSSED
        cap = lim.max_size
        if not (0.0 <= bsz <= cap and 0.0 <= asz <= cap and bsz <= bd <= cap
                and asz <= ad <= cap):
            return BAD_SIZE
        if side == 0:
            if not (lpx != lpx or 0.0 < lpx < _INF) or not 0.0 <= lsz <= cap:
                return BAD_TRADE
        elif side == 1 or side == -1:
            if not (0.0 < lpx < _INF and 0.0 < lsz <= cap):
                return BAD_TRADE
            if not abs(lpx / ((bid + ask) * 0.5) - 1.0) <= lim.max_jump:
                return BAD_TRADE  # a print far from this tick's own book
        else:
            return BAD_SIDE
        if lim.time_window_s:
            now = self.clock()
            if not (now - lim.time_window_s * 1e9 <= t <= now + lim.max_ahead_s * 1e9):
                return CLOCK_SKEW
        last = self.last_time
        if last is not None and t < last:
            return BACKWARDS
        if not self.mids:
            return OK  # nothing to compare with: the first tick starts the references
        mid = (bid + ask) * 0.5
        depth = bd + ad
        if last is not None and t - last > lim.max_gap_s * 1e9:
            jump = TIME_JUMP
        elif not abs(mid / self.mids.value() - 1.0) <= lim.max_jump:
            jump = PRICE_JUMP
        elif not max(bd, ad, lsz) <= lim.size_jump * max(self.depths.value(), 1e-300):
            jump = SIZE_JUMP
        else:
            return OK
        return self._pending_regime(t, mid, depth, jump)

    def _pending_regime(self, t: int, mid: float, depth: float, jump: int) -> int:
        """Count rejected ticks that agree with the first of them; -1 once ``confirm`` of
        them span ``confirm_s`` seconds."""
        lim = self.limits
        p = self._pending
        if p is not None and t >= p[0] and t - p[0] <= lim.max_gap_s * 1e9 \
                and abs(mid / p[1] - 1.0) <= lim.max_jump \
                and max(depth, p[2]) <= lim.size_jump * max(min(depth, p[2]), 1e-300):
            p[3] += 1
        else:
            p = self._pending = [t, mid, depth, 1]
        if p[3] >= lim.confirm and t - p[0] >= lim.confirm_s * 1e9:
            return -1
        return jump

    def accept(self, t: int, bid: float, ask: float, bd: float, ad: float) -> None:
        """Record an accepted tick (after the model ran on it)."""
        self.mids.add((bid + ask) * 0.5)
        self.depths.add(bd + ad)
        self.last_time = t
        self._pending = None


@dataclass
class Counters:
    """What the feed server saw: datagrams received and answered, rejected by reason, resets and
    decisions.
    """
    received: int = 0
    answered: int = 0
    bad_size: int = 0
    resets: int = 0
    regime_resets: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: {v: 0 for v in REJECTIONS})
    decisions: dict[str, int] = field(default_factory=lambda: {"-1": 0, "0": 0, "1": 0})

    def to_dict(self) -> dict[str, Any]:
        """The counters as JSON-ready data."""
        d = asdict(self)
        d["rejected"] = dict(self.rejected)
        d["decisions"] = dict(self.decisions)
        return d


class FeedServer:
    """Answers tick datagrams with decisions from a :class:`FastPath`, behind a
    :class:`TickGuard`.

    ``serve_forever()`` blocks (``busy_poll=True`` spins on a non-blocking socket for the
    lowest latency, at the cost of a core); ``start()`` runs it in a thread; ``stop()``;
    ``request_reset()`` and ``request_stop()`` (both safe from a signal handler or another
    thread: they take no lock) clear the state before the next datagram, and end
    ``serve_forever()`` at its next turn. ``control_key`` (bytes, at least 16; else the
    environment's ``DEEPSEEK_FEED_CONTROL_KEY``) signs control datagrams; without one they
    are refused.
    """

    def __init__(self, fastpath: Any, host: str = "127.0.0.1", port: int = 0,
                 busy_poll: bool = False, limits: Limits | None = None,
                 clock: Any = time.time_ns, control_key: str | bytes | None = None) -> None:
        self.fp = fastpath
        self.busy_poll = busy_poll
        self.clock = clock
        self.guard = TickGuard(limits, clock)
        self.key = load_control_key(control_key)
        self._last_control_ns: int | None = None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            raise FinanceError(f"cannot bind UDP {host}:{port}: {exc}") from exc
        self.address = self.sock.getsockname()
        self.counters = Counters()
        self._stop = SignalEvent()  # set by a signal handler: takes no lock
        self._reset_requested = False
        self._thread: threading.Thread | None = None

    def start(self) -> FeedServer:
        """Serve on a background thread; returns the server."""
        self._thread = threading.Thread(target=self.serve_forever, name="feed-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, join the thread and close the socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sock.close()
        self._stop.close()

    def request_stop(self) -> None:
        """Ask :meth:`serve_forever` to return at its next turn: after the datagram in hand
        is answered, or within 0.2 s when none comes (at once when busy-polling). Safe in a
        signal handler, repeated or nested: it takes no lock."""
        self._stop.set()

    def request_reset(self) -> None:
        """Ask the serving loop to reset the model state and guards before the next datagram."""
        self._reset_requested = True

    def _reset(self, regime: bool = False) -> None:
        """The model's state cleared; the guard forgets its time reference (``regime``: its
        price and depth references too)."""
        self._reset_requested = False
        self.fp.reset()
        if regime:
            self.guard.reset()
        else:
            self.guard.restart()
        self.counters.resets += 1
        log.info("feed server state reset%s", " (new regime)" if regime else "")

    def _control(self, data: bytes | bytearray) -> tuple[int, int]:
        """(status, sequence number) of a control datagram; a reset when it is signed."""
        magic, version, command, seq, sent = CONTROL_STRUCT.unpack_from(data)
        if magic != MAGIC or version != VERSION:
            return BAD_HEADER, seq
        tag = bytes(data[CONTROL_STRUCT.size:CONTROL_SIZE])
        if self.key is None or not hmac.compare_digest(
                tag, hmac.new(self.key, bytes(data[:CONTROL_STRUCT.size]),
                              hashlib.sha256).digest()):
            return UNAUTHORIZED, seq
        lim = self.guard.limits
        if self._last_control_ns is not None and sent <= self._last_control_ns:
            return UNAUTHORIZED, seq  # a replayed (or reordered) signed datagram
        if lim.time_window_s and abs(sent - self.clock()) > lim.time_window_s * 1e9:
            return UNAUTHORIZED, seq
        if command != CMD_RESET:
            return BAD_COMMAND, seq
        self._last_control_ns = sent
        self._reset()
        return RESET, seq

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def handle(self, data: bytes | bytearray, n: int | None = None,
               now: int | None = None) -> bytearray | None:
        """The answer to one datagram (its first ``n`` bytes), or None for a datagram of the
        wrong size (counted, not answered). ``now``: the receive time stamped in the answer.
        ``serve_forever`` calls this for every datagram; tests call it directly."""
        out = bytearray(DECISION_SIZE)
        answered = self._handle_into(data, len(data) if n is None else n, out,
                                     time.perf_counter_ns() if now is None else now)
        return out if answered else None

    def _handle_into(self, inbuf: bytes | bytearray, n: int, out: bytearray,
                     now: int) -> bool:
        """Fill ``out`` with the answer to ``inbuf[:n]``; False: not to be answered."""
        c = self.counters
        if self._reset_requested:  # a reset asked for before this datagram applies to it
            self._reset()
        c.received += 1
        decision = 0
        s0 = s1 = s2 = 0.0
        if n == TICK_SIZE:
            (magic, version, _flags, seq, t, _send, bid, ask, bsz, asz, bd, ad, lpx, lsz,
             side) = TICK_STRUCT.unpack_from(inbuf)
            status = BAD_HEADER if magic != MAGIC or version != VERSION else \
                self.guard.check(t, bid, ask, bsz, asz, bd, ad, lpx, lsz, side)
            if status == -1:
                self._reset(regime=True)
                c.regime_resets += 1
                status = OK
            if status == OK:
                best = self.fp.step(t, bid, ask, bsz, asz, bd, ad, lpx, lsz, side)
                if best < 0:
                    status = STATE_ERROR
                    self._reset()
                else:
                    self.guard.accept(t, bid, ask, bd, ad)
                    decision = best - 1
                    c.decisions[str(decision)] += 1
                    sc = self.fp.scores
                    s0, s1, s2 = sc[0], sc[1], sc[2]
        elif n == CONTROL_SIZE:
            status, seq = self._control(inbuf)
        else:
            c.bad_size += 1
            return False
        if status != OK and status != RESET:
            c.rejected[STATUS[status]] += 1
        DECISION_STRUCT.pack_into(out, 0, MAGIC, VERSION, status, seq, now, decision, s0, s1,
                                  s2)
        return True

    def serve_forever(self, max_ticks: int | None = None, duration: float | None = None,
                      every: Callable[[], None] | None = None) -> None:
        """Answer tick datagrams with decisions until stopped (or ``max_ticks`` ticks, or
        ``duration`` seconds). ``every()`` (a service's status and watchdog) is called
        about every 0.2 s while the loop turns, after a datagram's answer has gone, never
        between a datagram and its answer.
        """
        sock = self.sock
        inbuf = bytearray(256)
        out = bytearray(DECISION_SIZE)
        handle = self._handle_into
        c = self.counters
        stop = self._stop
        deadline = time.monotonic() + duration if duration else None
        clock = time.perf_counter_ns
        period = 200_000_000  # ns between two calls of every()
        due = clock() + period
        polls = 0
        if self.busy_poll:
            sock.setblocking(False)
        else:
            sock.settimeout(0.2)
        while not stop.is_set():
            try:
                n, addr = sock.recvfrom_into(inbuf)
            except (TimeoutError, BlockingIOError):
                if deadline is not None and time.monotonic() > deadline:
                    break
                polls += 1  # busy-polling: the clock read once in 4096 empty polls
                if every is not None and (not self.busy_poll or (polls & 0xFFF) == 0) \
                        and (now := clock()) >= due:
                    every()
                    due = now + period
                continue
            except OSError:
                break  # socket closed by stop()
            now = clock()
            if handle(inbuf, n, out, now):
                try:
                    sock.sendto(out, addr)
                    c.answered += 1
                except OSError as exc:
                    log.warning("could not answer %s: %s", addr, exc)
            if every is not None and now >= due:  # the receive time the tick was read at
                every()
                due = now + period
            if max_ticks is not None and c.received >= max_ticks:
                break
            if deadline is not None and (c.received & 1023) == 0 and time.monotonic() > deadline:
                break


#: ticks in a row that :func:`replay` sends unanswered, before any answer, before it says that
#: no server answers at the address
NO_ANSWER_TICKS = 5


def replay(ticks: np.ndarray, host: str, port: int, *, timeout: float = 1.0,
           warmup: int = 1000, limit: int | None = None, busy_poll: bool = False,
           keep: bool = False) -> dict[str, Any]:
    """Send ``ticks`` one by one (closed loop), measure the round trip of each.

    Returns counts and round-trip percentiles in microseconds (after ``warmup`` ticks);
    ``keep``: also each tick's answer, ``decisions`` (-1/0/+1; -2 when not ok or lost) and
    ``status_codes`` (255: lost), as arrays. A tick the server's host refuses (nothing
    listens on the port: the server stopped) is lost, and counted in ``refused``. Before
    the first answer, a refusal, or :data:`NO_ANSWER_TICKS` ticks in a row without one, is a
    :class:`FinanceError` naming the address: there is no server to measure there.
    """
    if timeout <= 0:
        raise FinanceError(f"timeout={timeout}: give the seconds to wait for each answer "
                           "(more than 0)")
    if warmup < 0 or (limit is not None and limit < 0):
        raise FinanceError(f"warmup={warmup}, limit={limit}: give counts of 0 or more")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
    if busy_poll:
        sock.setblocking(False)
    else:
        sock.settimeout(timeout)
    n = len(ticks) if limit is None else min(limit, len(ticks))
    rtts = np.zeros(n, dtype=np.int64)
    decisions = np.full(n, -2, dtype=np.int8)
    codes = np.full(n, 255, dtype=np.uint8)
    inbuf = bytearray(64)
    statuses: dict[str, int] = {}
    lost = refused = answered = 0
    clock = time.perf_counter_ns
    tt, bid, ask = ticks["time_ns"], ticks["bid"], ticks["ask"]
    bs, as_, bd, ad = ticks["bid_size"], ticks["ask_size"], ticks["bid_depth"], ticks["ask_depth"]
    lp, ls, sd = ticks["last_px"], ticks["last_size"], ticks["side"]
    for i in range(n):
        msg = TICK_STRUCT.pack(MAGIC, VERSION, 0, i & 0xFFFFFFFF, int(tt[i]), 0,
                               float(bid[i]), float(ask[i]), float(bs[i]), float(as_[i]),
                               float(bd[i]), float(ad[i]), float(lp[i]), float(ls[i]),
                               int(sd[i]))
        t0 = clock()
        got = None
        try:  # (a refusal of an earlier datagram is told at the next send or receive)
            sock.send(msg)
            while True:
                try:
                    got = sock.recv_into(inbuf)
                except BlockingIOError:
                    if clock() - t0 > timeout * 1e9:
                        break
                    continue
                except TimeoutError:
                    break
                if got == DECISION_SIZE and \
                        DECISION_STRUCT.unpack_from(inbuf)[3] == (i & 0xFFFFFFFF):
                    break
        except ConnectionRefusedError:
            got = None
            refused += 1
        t1 = clock()
        if got != DECISION_SIZE:
            lost += 1
            rtts[i] = -1
            if not answered and (refused or lost >= NO_ANSWER_TICKS):
                sock.close()
                where = f"udp://{host}:{port}"
                raise FinanceError(
                    f"{where} refused the first tick: nothing listens there; start "
                    f"`deepseek finance serve --udp {host}:{port}` first, or give the "
                    "server's address" if refused else
                    f"no answer from {where} to the first {lost} ticks ({timeout:g} s each): "
                    "is a feed server running there, and does a firewall let UDP through?")
            continue
        answered += 1
        rtts[i] = t1 - t0
        answer = DECISION_STRUCT.unpack_from(inbuf)
        codes[i] = answer[2]
        if answer[2] == OK:
            decisions[i] = answer[5]
        st = STATUS.get(answer[2], "?")
        statuses[st] = statuses.get(st, 0) + 1
    sock.close()
    valid = rtts[warmup:] if n > warmup else rtts
    valid = valid[valid >= 0] / 1e3

    def pct(q: float) -> float:
        return float(np.percentile(valid, q)) if valid.size else float("nan")

    out = {"ticks": n, "lost": lost, "refused": refused, "statuses": statuses,
           "measured": int(valid.size),
           "rtt_us": {"p50": pct(50), "p99": pct(99), "p99_9": pct(99.9),
                      "mean": float(valid.mean()) if valid.size else float("nan")}}
    if keep:
        out.update(decisions=decisions, status_codes=codes)
    return out
