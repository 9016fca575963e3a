"""The UDP feed server and the replay client.

Wire format (little-endian, fixed size):

Tick datagram, 80 bytes, ``struct`` format ``<HBBIqq6db7x``:

======  ====  =====================================================
offset  type  field
======  ====  =====================================================
0       u16   magic 0xD5EE
2       u8    version (1)
3       u8    flags (0)
4       u32   sequence number (echoed in the answer)
8       i64   exchange timestamp, ns
16      i64   sender timestamp, ns (for the sender's own use; not interpreted)
24      f64   bid
32      f64   ask
40      f64   bid size
48      f64   ask size
56      f64   last trade price (NaN: none yet)
64      f64   last trade size
72      i8    side of this tick's trade: +1 buy, -1 sell, 0 none
73      7x    padding
======  ====  =====================================================

Decision datagram, 32 bytes, ``<HBBIqb3x3f``: magic, version, status, sequence number,
server receive time (ns, ``time.perf_counter_ns`` clock of the server), decision (-1/0/+1),
padding, three class logits (down, flat, up; float32).

Status codes: 0 ok, 1 bad price (NaN, infinite, zero or negative; bad sizes too), 2 crossed
book (bid >= ask), 3 exchange timestamp going backwards, 4 bad side, 5 bad magic/version.
A rejected tick is answered with its status and does not reach the model. A datagram of the
wrong size cannot be trusted to carry a sequence number: it is counted and not answered.
"""

from __future__ import annotations

import logging
import math
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepseek.finance.errors import FinanceError

log = logging.getLogger(__name__)

MAGIC = 0xD5EE
VERSION = 1
TICK_STRUCT = struct.Struct("<HBBIqq6db7x")
DECISION_STRUCT = struct.Struct("<HBBIqb3x3f")
TICK_SIZE = TICK_STRUCT.size
DECISION_SIZE = DECISION_STRUCT.size
STATUS = {0: "ok", 1: "bad_price", 2: "crossed", 3: "time_backwards", 4: "bad_side",
          5: "bad_header"}


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise FinanceError(f"bad UDP address {text!r}; use HOST:PORT, e.g. 127.0.0.1:9999")
    return host, int(port)


def pack_tick(seq: int, exch_ns: int, bid: float, ask: float, bid_size: float, ask_size: float,
              last_px: float = math.nan, last_size: float = 0.0, side: int = 0,
              send_ns: int = 0) -> bytes:
    return TICK_STRUCT.pack(MAGIC, VERSION, 0, seq & 0xFFFFFFFF, exch_ns, send_ns, bid, ask,
                            bid_size, ask_size, last_px, last_size, side)


@dataclass
class Counters:
    received: int = 0
    answered: int = 0
    bad_size: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: {v: 0 for k, v in STATUS.items()
                                                              if k})
    decisions: dict[str, int] = field(default_factory=lambda: {"-1": 0, "0": 0, "1": 0})

    def to_dict(self) -> dict[str, Any]:
        return {"received": self.received, "answered": self.answered,
                "bad_size": self.bad_size, "rejected": dict(self.rejected),
                "decisions": dict(self.decisions)}


class FeedServer:
    """Answers tick datagrams with decisions from a :class:`FastPath`.

    ``serve_forever()`` blocks (``busy_poll=True`` spins on a non-blocking socket for the
    lowest latency, at the cost of a core); ``start()`` runs it in a thread; ``stop()``.
    """

    def __init__(self, fastpath: Any, host: str = "127.0.0.1", port: int = 0,
                 busy_poll: bool = False) -> None:
        self.fp = fastpath
        self.busy_poll = busy_poll
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            raise FinanceError(f"cannot bind UDP {host}:{port}: {exc}") from exc
        self.address = self.sock.getsockname()
        self.counters = Counters()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_exch = -(2**63)

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
        c = self.counters
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
            c.received += 1
            if n != TICK_SIZE:
                c.bad_size += 1
                continue
            (magic, version, _flags, seq, exch, _send, bid, ask, bsz, asz, lpx, lsz,
             side) = unpack(inbuf)
            status = 0
            if magic != MAGIC or version != VERSION:
                status = 5
            elif not (bid > 0.0 and ask > 0.0 and bid < math.inf and ask < math.inf
                      and bsz >= 0.0 and asz >= 0.0 and bsz < math.inf and asz < math.inf):
                status = 1  # NaN fails every comparison
            elif bid >= ask:
                status = 2
            elif exch < self._last_exch:
                status = 3
            elif side not in (-1, 0, 1):
                status = 4
            if status:
                c.rejected[STATUS[status]] += 1
                pack(out, 0, MAGIC, VERSION, status, seq, now, 0, 0.0, 0.0, 0.0)
            else:
                self._last_exch = exch
                best = step(exch, bid, ask, bsz, asz, lpx, lsz, side)
                decision = best - 1
                c.decisions[str(decision)] += 1
                pack(out, 0, MAGIC, VERSION, 0, seq, now, decision, scores[0], scores[1],
                     scores[2])
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
    exch, bid, ask = ticks["exch_ns"], ticks["bid"], ticks["ask"]
    bs, as_, lp, ls, sd = (ticks["bid_size"], ticks["ask_size"], ticks["last_px"],
                           ticks["last_size"], ticks["side"])
    for i in range(n):
        msg = TICK_STRUCT.pack(MAGIC, VERSION, 0, i & 0xFFFFFFFF, int(exch[i]), 0,
                               float(bid[i]), float(ask[i]), float(bs[i]), float(as_[i]),
                               float(lp[i]), float(ls[i]), int(sd[i]))
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
