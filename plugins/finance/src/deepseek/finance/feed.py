"""The UDP feed server, its guard against bad ticks, and the replay client.

Wire format (little-endian, fixed size, version 2):

Tick datagram, 96 bytes, ``struct`` format ``<HBBIqq8db7x``:

======  ====  ==========================================================
offset  type  field
======  ====  ==========================================================
0       u16   magic 0xD5EE
2       u8    version (2)
3       u8    flags (0)
4       u32   sequence number (echoed in the answer)
8       i64   tick time, ns since the epoch (the clock the model was trained on)
16      i64   sender timestamp, ns (for the sender's own use; not interpreted)
24      f64   bid
32      f64   ask
40      f64   bid size
48      f64   ask size
56      f64   bid depth (size over the best N levels; the bid size without a book)
64      f64   ask depth
72      f64   last trade price (NaN: none yet)
80      f64   last trade size
88      i8    side of this tick's trade: +1 buy, -1 sell, 0 none
89      7x    padding
======  ====  ==========================================================

Control datagram, 16 bytes, ``<HBBIq``: magic, version, command (1: reset the state),
sequence number, sender ns. Answered with status ``reset``.

Decision datagram, 32 bytes, ``<HBBIqb3x3f``: magic, version, status, sequence number,
server receive time (ns, ``time.perf_counter_ns`` clock of the server), decision (-1/0/+1),
padding, three class logits (down, flat, up; float32).

Status codes (:data:`STATUS`): 0 ok; rejected ticks -- 1 bad price (NaN, infinite, zero or
negative), 2 crossed book, 3 time going backwards, 4 bad side, 5 bad magic/version, 6 bad
size or depth (NaN, infinite, negative, above the absolute cap, depth below the top size),
7 bad trade (a trade without a positive finite price and size, or printed more than
``max_jump`` away from the tick's mid), 8 time outside the window
around the server's clock, 9 price jump, 10 size jump, 11 time jump; 12 state error (a
feature or logit came out non-finite: no decision, the state is reset); 13 reset done; 14
unknown command. A rejected tick never touches the state. A wrong-size datagram cannot be
trusted to carry a sequence number: it is counted and not answered.

Jumps (:class:`Limits`): a mid more than ``max_jump`` (relative) from the last accepted one,
a size more than ``size_jump`` times the running mean book depth, or a time more than
``max_gap_s`` after the last accepted tick is rejected -- unless ``confirm`` consecutive
rejected ticks agree with each other, which is a new regime (a gap over a weekend, a real
crash): the state is reset and the tick accepted. So one bad datagram cannot poison the
state, and real moves cost ``confirm - 1`` ticks. ``reset`` (a control datagram, or SIGHUP
to ``deepseek finance serve``) clears the state.
"""

from __future__ import annotations

import logging
import math
import socket
import struct
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from deepseek.finance.errors import FinanceError

log = logging.getLogger(__name__)

MAGIC = 0xD5EE
VERSION = 2
TICK_STRUCT = struct.Struct("<HBBIqq8db7x")
CONTROL_STRUCT = struct.Struct("<HBBIq")
DECISION_STRUCT = struct.Struct("<HBBIqb3x3f")
TICK_SIZE = TICK_STRUCT.size
CONTROL_SIZE = CONTROL_STRUCT.size
DECISION_SIZE = DECISION_STRUCT.size
CMD_RESET = 1
OK, BAD_PRICE, CROSSED, BACKWARDS, BAD_SIDE, BAD_HEADER, BAD_SIZE, BAD_TRADE = range(8)
CLOCK_SKEW, PRICE_JUMP, SIZE_JUMP, TIME_JUMP, STATE_ERROR, RESET, BAD_COMMAND = range(8, 15)
STATUS = {OK: "ok", BAD_PRICE: "bad_price", CROSSED: "crossed", BACKWARDS: "time_backwards",
          BAD_SIDE: "bad_side", BAD_HEADER: "bad_header", BAD_SIZE: "bad_size",
          BAD_TRADE: "bad_trade", CLOCK_SKEW: "clock_skew", PRICE_JUMP: "price_jump",
          SIZE_JUMP: "size_jump", TIME_JUMP: "time_jump", STATE_ERROR: "state_error",
          RESET: "reset", BAD_COMMAND: "bad_command"}
REJECTIONS = tuple(v for k, v in STATUS.items() if k not in (OK, RESET))
_INF = math.inf


def parse_address(text: str) -> tuple[str, int]:
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


def pack_reset(seq: int = 0) -> bytes:
    return CONTROL_STRUCT.pack(MAGIC, VERSION, CMD_RESET, seq & 0xFFFFFFFF, 0)


@dataclass
class Limits:
    """What the server accepts. ``time_window_s`` 0 turns the local-clock check off (needed
    to replay recorded ticks, whose times are in the past)."""

    max_jump: float = 0.10
    size_jump: float = 1000.0
    max_size: float = 1e12
    max_gap_s: float = 300.0
    time_window_s: float = 10.0
    confirm: int = 3

    def __post_init__(self) -> None:
        for name in ("max_jump", "size_jump", "max_size", "max_gap_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise FinanceError(f"limit {name}={v!r}: give a positive number")
        if not (math.isfinite(self.time_window_s) and self.time_window_s >= 0):
            raise FinanceError(f"time_window_s={self.time_window_s!r}: give seconds >= 0 "
                               "(0: no check against the local clock)")
        if int(self.confirm) < 1:
            raise FinanceError(f"confirm={self.confirm!r}: give 1 or more ticks")


class TickGuard:
    """Validates every field of a tick against fixed rules and against the last accepted
    tick; never changes its references for a rejected tick (see the module docstring)."""

    def __init__(self, limits: Limits | None = None, clock: Any = time.time_ns) -> None:
        self.limits = limits or Limits()
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        self.last_time: int | None = None
        self.last_mid = 0.0
        self.ref_depth = 0.0
        self._pending: tuple[int, float, float] | None = None  # time, mid, depth
        self._pending_n = 0

    def check(self, t: int, bid: float, ask: float, bsz: float, asz: float, bd: float,
              ad: float, lpx: float, lsz: float, side: int) -> int:
        """A status code; -1: a confirmed jump (reset the model state, then accept)."""
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
        if lim.time_window_s and abs(t - self.clock()) > lim.time_window_s * 1e9:
            return CLOCK_SKEW
        if self.last_time is None:
            return OK
        if t < self.last_time:
            return BACKWARDS
        mid = (bid + ask) * 0.5
        depth = bd + ad
        jump = OK
        if t - self.last_time > lim.max_gap_s * 1e9:
            jump = TIME_JUMP
        elif abs(mid / self.last_mid - 1.0) > lim.max_jump:
            jump = PRICE_JUMP
        elif max(bd, ad, lsz) > lim.size_jump * self.ref_depth:
            jump = SIZE_JUMP
        if jump == OK:
            return OK
        p = self._pending
        if p is not None and t >= p[0] and t - p[0] <= lim.max_gap_s * 1e9 \
                and abs(mid / p[1] - 1.0) <= lim.max_jump \
                and max(depth, p[2]) <= lim.size_jump * max(min(depth, p[2]), 1e-300):
            self._pending_n += 1
        else:
            self._pending_n = 1
        self._pending = (t, mid, depth)
        if self._pending_n >= lim.confirm:
            return -1
        return jump

    def accept(self, t: int, bid: float, ask: float, bd: float, ad: float) -> None:
        """Record an accepted tick (after the model ran on it)."""
        depth = bd + ad
        self.ref_depth = depth if self.last_time is None else \
            0.99 * self.ref_depth + 0.01 * depth
        self.last_time = t
        self.last_mid = (bid + ask) * 0.5
        self._pending = None
        self._pending_n = 0


@dataclass
class Counters:
    received: int = 0
    answered: int = 0
    bad_size: int = 0
    resets: int = 0
    regime_resets: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: {v: 0 for v in REJECTIONS})
    decisions: dict[str, int] = field(default_factory=lambda: {"-1": 0, "0": 0, "1": 0})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rejected"] = dict(self.rejected)
        d["decisions"] = dict(self.decisions)
        return d


class FeedServer:
    """Answers tick datagrams with decisions from a :class:`FastPath`, behind a
    :class:`TickGuard`.

    ``serve_forever()`` blocks (``busy_poll=True`` spins on a non-blocking socket for the
    lowest latency, at the cost of a core); ``start()`` runs it in a thread; ``stop()``;
    ``request_reset()`` (safe from a signal handler or another thread) clears the state
    before the next datagram.
    """

    def __init__(self, fastpath: Any, host: str = "127.0.0.1", port: int = 0,
                 busy_poll: bool = False, limits: Limits | None = None,
                 clock: Any = time.time_ns) -> None:
        self.fp = fastpath
        self.busy_poll = busy_poll
        self.guard = TickGuard(limits, clock)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            raise FinanceError(f"cannot bind UDP {host}:{port}: {exc}") from exc
        self.address = self.sock.getsockname()
        self.counters = Counters()
        self._stop = threading.Event()
        self._reset_requested = False
        self._thread: threading.Thread | None = None

    def start(self) -> FeedServer:
        self._thread = threading.Thread(target=self.serve_forever, name="feed-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sock.close()

    def request_reset(self) -> None:
        self._reset_requested = True

    def _reset(self) -> None:
        self._reset_requested = False
        self.fp.reset()
        self.guard.reset()
        self.counters.resets += 1
        log.info("feed server state reset")

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def serve_forever(self, max_ticks: int | None = None, duration: float | None = None) -> None:
        sock = self.sock
        inbuf = bytearray(256)
        out = bytearray(DECISION_SIZE)
        unpack = TICK_STRUCT.unpack_from
        pack = DECISION_STRUCT.pack_into
        step = self.fp.step
        scores = self.fp.scores
        guard = self.guard
        check, accept = guard.check, guard.accept
        c = self.counters
        rejected = c.rejected
        stop = self._stop
        deadline = time.monotonic() + duration if duration else None
        clock = time.perf_counter_ns
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
                continue
            except OSError:
                break  # socket closed by stop()
            now = clock()
            if self._reset_requested:  # a reset asked for before this datagram applies to it
                self._reset()
            c.received += 1
            decision = 0
            s0 = s1 = s2 = 0.0
            if n == TICK_SIZE:
                (magic, version, _flags, seq, t, _send, bid, ask, bsz, asz, bd, ad, lpx, lsz,
                 side) = unpack(inbuf)
                status = BAD_HEADER if magic != MAGIC or version != VERSION else \
                    check(t, bid, ask, bsz, asz, bd, ad, lpx, lsz, side)
                if status == -1:
                    self._reset()
                    c.regime_resets += 1
                    status = OK
                if status == OK:
                    best = step(t, bid, ask, bsz, asz, bd, ad, lpx, lsz, side)
                    if best < 0:
                        status = STATE_ERROR
                        self._reset()
                    else:
                        accept(t, bid, ask, bd, ad)
                        decision = best - 1
                        c.decisions[str(decision)] += 1
                        s0, s1, s2 = scores[0], scores[1], scores[2]
            elif n == CONTROL_SIZE:
                magic, version, command, seq, _send = CONTROL_STRUCT.unpack_from(inbuf)
                if magic != MAGIC or version != VERSION:
                    status = BAD_HEADER
                elif command == CMD_RESET:
                    self._reset()
                    status = RESET
                else:
                    status = BAD_COMMAND
            else:
                c.bad_size += 1
                continue
            if status != OK and status != RESET:
                rejected[STATUS[status]] += 1
            pack(out, 0, MAGIC, VERSION, status, seq, now, decision, s0, s1, s2)
            try:
                sock.sendto(out, addr)
                c.answered += 1
            except OSError as exc:
                log.warning("could not answer %s: %s", addr, exc)
            if max_ticks is not None and c.received >= max_ticks:
                break
            if deadline is not None and (c.received & 1023) == 0 and time.monotonic() > deadline:
                break


def replay(ticks: np.ndarray, host: str, port: int, *, timeout: float = 1.0,
           warmup: int = 1000, limit: int | None = None, busy_poll: bool = False) -> dict[str, Any]:
    """Send ``ticks`` one by one (closed loop), measure the round trip of each.

    Returns counts and round-trip percentiles in microseconds (after ``warmup`` ticks).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
    if busy_poll:
        sock.setblocking(False)
    else:
        sock.settimeout(timeout)
    n = len(ticks) if limit is None else min(limit, len(ticks))
    rtts = np.zeros(n, dtype=np.int64)
    inbuf = bytearray(64)
    statuses: dict[str, int] = {}
    lost = 0
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
        sock.send(msg)
        got = None
        while True:
            try:
                got = sock.recv_into(inbuf)
            except BlockingIOError:
                if clock() - t0 > timeout * 1e9:
                    break
                continue
            except TimeoutError:
                break
            if got == DECISION_SIZE and DECISION_STRUCT.unpack_from(inbuf)[3] == (i & 0xFFFFFFFF):
                break
        t1 = clock()
        if got != DECISION_SIZE:
            lost += 1
            rtts[i] = -1
            continue
        rtts[i] = t1 - t0
        st = STATUS.get(DECISION_STRUCT.unpack_from(inbuf)[2], "?")
        statuses[st] = statuses.get(st, 0) + 1
    sock.close()
    valid = rtts[warmup:] if n > warmup else rtts
    valid = valid[valid >= 0] / 1e3

    def pct(q: float) -> float:
        return float(np.percentile(valid, q)) if valid.size else float("nan")

    return {"ticks": n, "lost": lost, "statuses": statuses, "measured": int(valid.size),
            "rtt_us": {"p50": pct(50), "p99": pct(99), "p99_9": pct(99.9),
                       "mean": float(valid.mean()) if valid.size else float("nan")}}
