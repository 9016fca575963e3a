from __future__ import annotations

import math
import socket
import struct

import numpy as np
import pytest

from deepseek.finance.errors import FinanceError, TickFileError
from deepseek.finance.fastpath import FastPath
from deepseek.finance.feed import (
    CONTROL_STRUCT,
    DECISION_SIZE,
    DECISION_STRUCT,
    MAGIC,
    STATUS,
    TICK_STRUCT,
    FeedServer,
    Limits,
    pack_reset,
    pack_tick,
    parse_address,
    replay,
)
from deepseek.finance.synthetic import synthetic_ticks
from deepseek.finance.ticks import read_csv, write_csv
from deepseek.loader import ModelLoader
from deepseek.plugins import get_registry


def test_csv_round_trip(tmp_path):
    ticks = synthetic_ticks(500, seed=4)
    back = read_csv(write_csv(ticks, tmp_path / "t.csv"))
    for name in ticks.dtype.names:
        np.testing.assert_array_equal(back[name], ticks[name])


HEADER = "time_ns,recv_ns,bid,ask,bid_size,ask_size,last_px,last_size,side\n"


@pytest.mark.parametrize("line,pattern", [
    ("3,4,nan,101,1,1,,0,0", "line 3: bad price"),
    ("3,4,-1,101,1,1,,0,0", "line 3: bad price"),
    ("3,4,102,101,1,1,,0,0", r"line 3: crossed book \(bid 102.0 >= ask 101.0\)"),
    ("1,4,100,101,1,1,,0,0", "line 3: time goes backwards .*order='clamp'"),
    ("3,4,100,101,-5,1,,0,0", "line 3: bad size"),
    ("3,4,abc,101,1,1,,0,0", "line 3: could not convert"),
    ("3,4,100,101,1,1,,0,7", "line 3: side must be"),
])
def test_csv_bad_lines_name_the_line(tmp_path, line, pattern):
    p = tmp_path / "bad.csv"
    p.write_text(HEADER + "2,3,100,101,1,1,,0,0\n" + line + "\n")
    with pytest.raises(TickFileError, match=pattern):
        read_csv(p)


def test_csv_optional_columns_and_order_policy(tmp_path):
    p = tmp_path / "old.csv"
    p.write_text("exch_ns,bid,ask,bid_size,ask_size\n5,1,2,3,4\n4,1,2,3,4\n6,1,2,3,4\n")
    with pytest.raises(TickFileError, match="line 3: time goes backwards"):
        read_csv(p)
    t = read_csv(p, order="drop")
    assert t["time_ns"].tolist() == [5, 6] and t["exch_ns"].tolist() == [5, 6]
    assert t["recv_ns"].tolist() == [-1, -1] and t["depth_levels"].tolist() == [0, 0]
    assert t["bid_depth"].tolist() == [3.0, 3.0] and np.isnan(t["last_px"]).all()
    assert read_csv(p, order="clamp")["time_ns"].tolist() == [5, 5, 6]


def test_csv_missing_columns(tmp_path):
    p = tmp_path / "cols.csv"
    p.write_text("bid,ask\n1,2\n")
    with pytest.raises(TickFileError, match=r"missing column.*time_ns \(or exch_ns\), "
                                            "bid_size, ask_size"):
        read_csv(p)
    (tmp_path / "empty.csv").write_text(HEADER)
    with pytest.raises(TickFileError, match="no ticks"):
        read_csv(tmp_path / "empty.csv")


def test_load_ticks_refuses_capture_options_for_a_csv(tmp_path):
    from deepseek.finance.training import load_ticks

    path = write_csv(synthetic_ticks(20, seed=1), tmp_path / "t.csv")
    assert len(load_ticks(path, order="clamp", symbol=None)) == 20
    with pytest.raises(FinanceError, match="symbol do not apply to the ticks-csv reader"):
        load_ticks(path, symbol="ETHUSDT")


def test_readers_and_models_registered():
    readers = get_registry("reader")
    for name in ("ticks-csv", "binance", "synthetic-ticks"):
        assert readers.entry(name).plugin == "finance"
    models = get_registry("model")
    for name in ("tick-mlp", "tick-gru"):
        assert models.entry(name).meta["weights"], f"{name} has no packaged weights"


NO_WINDOW = Limits(time_window_s=0)


@pytest.fixture(scope="module")
def server():
    fp = FastPath.from_model(ModelLoader.load("tick-mlp", device="cpu"))
    with FeedServer(fp, "127.0.0.1", 0, limits=NO_WINDOW) as srv:
        yield srv


def _ask(sock, payload):
    sock.send(payload)
    data = sock.recv(64)
    assert len(data) == DECISION_SIZE
    return DECISION_STRUCT.unpack(data)


def _args(t):
    return (int(t["time_ns"]), float(t["bid"]), float(t["ask"]), float(t["bid_size"]),
            float(t["ask_size"]), float(t["bid_depth"]), float(t["ask_depth"]),
            float(t["last_px"]), float(t["last_size"]), int(t["side"]))


def test_feed_server_answers_and_counts_bad_datagrams(server):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2.0)
    sock.connect(server.address)
    _ask(sock, pack_reset(0))
    ref = FastPath.from_model(ModelLoader.load("tick-mlp", device="cpu"))
    ticks = synthetic_ticks(50, seed=9)
    start = dict(server.counters.rejected)
    for i, t in enumerate(ticks[:20]):
        args = _args(t)
        magic, _v, status, seq, _now, decision, *scores = _ask(sock, pack_tick(i, *args))
        exp_decision, exp_scores = ref.on_tick(*args)
        assert (magic, status, seq, decision) == (MAGIC, 0, i, exp_decision)
        np.testing.assert_allclose(scores, exp_scores, atol=1e-6)
    last = int(ticks["time_ns"][19])
    bad = [
        (pack_tick(100, last, math.nan, 101.0, 1.0, 1.0), "bad_price"),
        (pack_tick(101, last, -100.0, 101.0, 1.0, 1.0), "bad_price"),
        (pack_tick(102, last, 100.0, 101.0, -1.0, 1.0), "bad_size"),
        (pack_tick(103, last, 102.0, 101.0, 1.0, 1.0), "crossed"),
        (pack_tick(104, last - 1, 100.0, 101.0, 1.0, 1.0), "time_backwards"),
        (pack_tick(105, last, 100.0, 101.0, 1.0, 1.0, side=3), "bad_side"),
        (TICK_STRUCT.pack(0xBEEF, 2, 0, 106, last, 0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0,
                          0), "bad_header"),
        (CONTROL_STRUCT.pack(MAGIC, 2, 99, 107, 0), "bad_command"),
    ]
    for payload, name in bad:
        got = _ask(sock, payload)
        assert STATUS[got[2]] == name and got[3] == struct.unpack_from("<I", payload, 4)[0]
    sock.send(b"\x00" * 10)  # wrong size: counted, not answered
    t = ticks[20]
    got = _ask(sock, pack_tick(200, *_args(t)))
    assert got[2] == 0 and got[3] == 200  # the loop goes on
    rej = server.counters.rejected
    assert rej["bad_price"] - start["bad_price"] == 2
    for k in ("bad_size", "crossed", "time_backwards", "bad_side", "bad_header", "bad_command"):
        assert rej[k] - start[k] == 1
    assert server.counters.bad_size >= 1
    sock.close()


# every field of a tick, made hostile: (field index in pack_tick's arguments after seq, value)
HOSTILE = [
    (0, 2**62), (0, -(2**62)), (0, 0),  # time: far ahead, far behind
    (1, math.nan), (1, math.inf), (1, -math.inf), (1, 0.0), (1, -1.0), (1, 1e-300), (1, 1e300),
    (2, math.nan), (2, math.inf), (2, 1e-300), (2, 1e300),
    (3, math.nan), (3, math.inf), (3, -1.0), (3, 1e300), (3, 1e15), (5, 1e11),
    (4, math.nan), (4, math.inf), (4, -1.0), (4, 1e300),
    (5, math.nan), (5, math.inf), (5, -1.0), (5, 1e300), (5, 0.0),
    (6, math.nan), (6, math.inf), (6, -1.0), (6, 1e300), (6, 0.0),
    (7, math.inf), (7, -1.0), (7, 0.0), (7, 1e300),
    (8, math.nan), (8, math.inf), (8, -1.0), (8, 1e300), (8, 1e15), (8, 1e9),
    (9, 2), (9, -2), (9, 127), (9, -128),
]


def _guarded(limits=NO_WINDOW):
    fp = FastPath.from_model(ModelLoader.load("tick-mlp", device="cpu"))
    return FeedServer(fp, "127.0.0.1", 0, limits=limits)


@pytest.fixture(scope="module")
def clean_stream():
    ticks = synthetic_ticks(120, seed=11)
    clean = FastPath.from_model(ModelLoader.load("tick-mlp", device="cpu"))
    return ticks, np.array([clean.on_tick(*_args(t))[1].copy() for t in ticks])


@pytest.mark.parametrize("field,value", HOSTILE)
def test_one_hostile_datagram_cannot_poison_the_state(server, clean_stream, field, value):
    """A clean stream with one hostile tick in the middle: the tick is refused, and every
    later answer equals the answer of the same stream without it (it touched nothing)."""
    ticks, expected = clean_stream
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2.0)
    sock.connect(server.address)
    assert STATUS[_ask(sock, pack_reset(1))[2]] == "reset"
    rejected = sum(server.counters.rejected.values())
    got = []
    for i, t in enumerate(ticks):
        if i == 60:
            args = list(_args(ticks[59]))
            args[field] = value
            if field in (7, 8) and args[9] == 0:
                args[9] = 1  # a trade, so that its price and size are used
            status = _ask(sock, pack_tick(999, *args))[2]
            assert status != 0, STATUS[status]
        ans = _ask(sock, pack_tick(i, *_args(t)))
        assert ans[2] == 0, (i, STATUS[ans[2]])
        got.append(np.array(ans[6:]))
    sock.close()
    np.testing.assert_allclose(np.array(got), expected, atol=1e-5)
    assert sum(server.counters.rejected.values()) == rejected + 1


def test_jumps_need_confirmation_and_reset_clears_state():
    ticks = synthetic_ticks(40, seed=12)
    srv = _guarded(Limits(time_window_s=0, confirm=3))
    with srv:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(2.0)
        sock.connect(srv.address)
        for i, t in enumerate(ticks[:20]):
            assert _ask(sock, pack_tick(i, *_args(t)))[2] == 0
        a = list(_args(ticks[19]))
        moved = [a[0], a[1] * 1.5, a[2] * 1.5, *a[3:]]
        assert STATUS[_ask(sock, pack_tick(50, *moved))[2]] == "price_jump"
        moved[0] += 1
        assert STATUS[_ask(sock, pack_tick(51, *moved))[2]] == "price_jump"
        moved[0] += 1  # the third consistent tick: a new regime, accepted after a reset
        assert _ask(sock, pack_tick(52, *moved))[2] == 0
        assert srv.counters.regime_resets == 1
        a = list(_args(ticks[20]))
        a[0] = moved[0] + 400 * 10**9  # beyond max_gap_s after the last accepted tick
        assert STATUS[_ask(sock, pack_tick(53, *a))[2]] == "time_jump"
        resets = srv.counters.resets
        assert STATUS[_ask(sock, pack_reset(54))[2]] == "reset"
        assert srv.counters.resets == resets + 1
        assert _ask(sock, pack_tick(55, *a))[2] == 0  # a fresh state takes any time
        srv.request_reset()  # what SIGHUP does: applied before the next datagram
        a[0] -= 10**9
        assert _ask(sock, pack_tick(56, *a))[2] == 0  # no "backwards": the state was cleared
        sock.close()


def test_time_window_against_the_local_clock():
    now = 1_800_000_000 * 10**9
    fp = FastPath.from_model(ModelLoader.load("tick-mlp", device="cpu"))
    srv = FeedServer(fp, "127.0.0.1", 0, limits=Limits(time_window_s=10),
                     clock=lambda: now)
    with srv:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(2.0)
        sock.connect(srv.address)
        assert _ask(sock, pack_tick(1, now - 5 * 10**9, 100.0, 100.1, 1.0, 1.0))[2] == 0
        day = 86_400 * 10**9
        assert STATUS[_ask(sock, pack_tick(2, now + day, 100.0, 100.1, 1.0, 1.0))[2]] == \
            "clock_skew"
        assert _ask(sock, pack_tick(3, now, 100.0, 100.1, 1.0, 1.0))[2] == 0
        sock.close()


def test_limits_are_checked():
    for bad in ({"max_jump": 0}, {"size_jump": math.nan}, {"time_window_s": -1},
                {"confirm": 0}):
        with pytest.raises(FinanceError):
            Limits(**bad)


def test_replay_measures_round_trips():
    fp = FastPath.from_model(ModelLoader.load("tick-mlp", device="cpu"))
    with FeedServer(fp, "127.0.0.1", 0, limits=NO_WINDOW) as srv:
        res = replay(synthetic_ticks(300, seed=5), *srv.address, warmup=50)
    assert res["ticks"] == 300 and res["lost"] == 0 and res["statuses"] == {"ok": 300}
    assert res["measured"] == 250 and 0 < res["rtt_us"]["p50"] <= res["rtt_us"]["p99"]


def test_parse_address():
    assert parse_address("127.0.0.1:9") == ("127.0.0.1", 9)
    with pytest.raises(FinanceError, match="HOST:PORT"):
        parse_address("localhost")
