from __future__ import annotations

import json
import math
import socket
import struct

import numpy as np
import pytest

from deepseek.finance.errors import FinanceError, TickFileError
from deepseek.finance.fastpath import FastPath
from deepseek.finance.feed import (
    DECISION_SIZE,
    DECISION_STRUCT,
    MAGIC,
    TICK_STRUCT,
    FeedServer,
    pack_tick,
    parse_address,
    replay,
)
from deepseek.finance.synthetic import synthetic_ticks
from deepseek.finance.ticks import read_binance, read_csv, write_csv
from deepseek.loader import ModelLoader
from deepseek.plugins import get_registry


def test_csv_round_trip(tmp_path):
    ticks = synthetic_ticks(500, seed=4)
    back = read_csv(write_csv(ticks, tmp_path / "t.csv"))
    for name in ticks.dtype.names:
        np.testing.assert_array_equal(back[name], ticks[name])


HEADER = "exch_ns,recv_ns,bid,ask,bid_size,ask_size,last_px,last_size,side\n"


@pytest.mark.parametrize("line,pattern", [
    ("3,4,nan,101,1,1,,0,0", "line 3: bad price"),
    ("3,4,-1,101,1,1,,0,0", "line 3: bad price"),
    ("3,4,102,101,1,1,,0,0", r"line 3: crossed book \(bid 102.0 >= ask 101.0\)"),
    ("1,4,100,101,1,1,,0,0", "line 3: exchange timestamp goes backwards"),
    ("3,4,100,101,-5,1,,0,0", "line 3: bad size"),
    ("3,4,abc,101,1,1,,0,0", "line 3: could not convert"),
    ("3,4,100,101,1,1,,0,7", "line 3: side must be"),
])
def test_csv_bad_lines_name_the_line(tmp_path, line, pattern):
    p = tmp_path / "bad.csv"
    p.write_text(HEADER + "2,3,100,101,1,1,,0,0\n" + line + "\n")
    with pytest.raises(TickFileError, match=pattern):
        read_csv(p)


def test_csv_missing_columns(tmp_path):
    p = tmp_path / "cols.csv"
    p.write_text("exch_ns,bid,ask\n1,2,3\n")
    with pytest.raises(TickFileError, match="missing column.*recv_ns, bid_size, ask_size"):
        read_csv(p)
    (tmp_path / "empty.csv").write_text(HEADER)
    with pytest.raises(TickFileError, match="no ticks"):
        read_csv(tmp_path / "empty.csv")


def _capture(tmp_path, lines):
    p = tmp_path / "capture.log"
    p.write_text("\n".join(f"{ns} {json.dumps(msg)}" for ns, msg in lines) + "\n")
    return p


def test_binance_capture(tmp_path):
    base = 1_700_000_000_000
    lines = [
        (base * 10**6 + 5, {"e": "depthUpdate", "E": base, "s": "BTCUSDT", "U": 1, "u": 2,
                            "b": [["100.0", "1.5"]], "a": []}),  # one side only: no tick
        (base * 10**6 + 6, {"u": 3, "s": "BTCUSDT", "b": "100.00", "B": "2.0", "a": "100.10",
                            "A": "3.0"}),  # bookTicker (spot: no event type field)
        (base * 10**6 + 7, {"stream": "btcusdt@trade", "data": {
            "e": "trade", "E": base + 1, "T": base + 1, "s": "BTCUSDT", "t": 9, "p": "100.10",
            "q": "0.5", "m": False}}),  # buyer is taker: aggressive buy
        (base * 10**6 + 8, {"e": "aggTrade", "E": base + 2, "T": base + 2, "s": "BTCUSDT",
                            "a": 4, "p": "100.00", "q": "0.25", "m": True}),
        (base * 10**6 + 9, {"e": "aggTrade", "E": base + 2, "s": "ETHUSDT", "p": "1", "q": "1",
                            "m": True}),  # another symbol: skipped
        (base * 10**6 + 10, {"e": "kline", "E": base + 3, "s": "BTCUSDT"}),  # not a tick
    ]
    ticks = read_binance(_capture(tmp_path, lines))
    assert len(ticks) == 3
    assert ticks["bid"][0] == 100.0 and ticks["ask"][0] == 100.1
    assert ticks["side"].tolist() == [0, 1, -1]
    assert ticks["last_px"][2] == 100.0 and ticks["last_size"][2] == 0.25
    assert ticks["exch_ns"][1] == (base + 1) * 10**6
    assert ticks["recv_ns"][0] == base * 10**6 + 6


def test_binance_depth_only_builds_the_book(tmp_path):
    base = 1_700_000_000_000
    lines = [
        (1, {"e": "depthUpdate", "E": base, "s": "X", "b": [["10", "1"], ["9", "2"]],
             "a": [["11", "1"], ["12", "5"]]}),
        (2, {"e": "depthUpdate", "E": base + 1, "s": "X", "b": [["10", "0"]], "a": []}),
    ]
    ticks = read_binance(_capture(tmp_path, lines))
    assert ticks["bid"].tolist() == [10.0, 9.0] and ticks["bid_size"].tolist() == [1.0, 2.0]
    assert ticks["ask"].tolist() == [11.0, 11.0]


def test_binance_bad_lines(tmp_path):
    p = tmp_path / "bad.log"
    p.write_text('1 {"e": "trade", "p": "1", "q": "1"}\nnot-a-number {}\n')
    with pytest.raises(TickFileError, match="line 2: expected '<receive_ns> <json>'"):
        read_binance(p)
    p.write_text('1 {"e": "trade", "s": "X", "p": "1", "q": "1"}\n'
                 '2 {"e": "bookTicker", "s": "X"}\n')
    with pytest.raises(TickFileError, match="line 2: bookTicker message lacks"):
        read_binance(p)
    p.write_text('1 {"u": 1, "s": "X", "b": "101", "B": "1", "a": "100", "A": "1"}\n')
    with pytest.raises(TickFileError, match="line 1: crossed book"):
        read_binance(p)


def test_readers_and_models_registered():
    readers = get_registry("reader")
    for name in ("ticks-csv", "binance", "synthetic-ticks"):
        assert readers.entry(name).plugin == "finance"
    models = get_registry("model")
    for name in ("tick-mlp", "tick-gru"):
        assert models.entry(name).meta["weights"], f"{name} has no packaged weights"


@pytest.fixture(scope="module")
def server():
    fp = FastPath.from_model(ModelLoader.load("tick-mlp", device="cpu"))
    with FeedServer(fp, "127.0.0.1", 0) as srv:
        yield srv


def _ask(sock, payload):
    sock.send(payload)
    data = sock.recv(64)
    assert len(data) == DECISION_SIZE
    return DECISION_STRUCT.unpack(data)


def test_feed_server_answers_and_counts_bad_datagrams(server):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2.0)
    sock.connect(server.address)
    ref = FastPath.from_model(ModelLoader.load("tick-mlp", device="cpu"))
    ticks = synthetic_ticks(50, seed=9)
    start = dict(server.counters.rejected)
    for i, t in enumerate(ticks[:20]):
        args = (int(t["exch_ns"]), float(t["bid"]), float(t["ask"]), float(t["bid_size"]),
                float(t["ask_size"]), float(t["last_px"]), float(t["last_size"]), int(t["side"]))
        magic, _v, status, seq, _now, decision, *scores = _ask(sock, pack_tick(i, *args))
        exp_decision, exp_scores = ref.on_tick(*args)
        assert (magic, status, seq, decision) == (MAGIC, 0, i, exp_decision)
        np.testing.assert_allclose(scores, exp_scores, atol=1e-6)
    last = int(ticks["exch_ns"][19])
    bad = [
        (pack_tick(100, last, math.nan, 101.0, 1.0, 1.0), 1),
        (pack_tick(101, last, -100.0, 101.0, 1.0, 1.0), 1),
        (pack_tick(102, last, 100.0, 101.0, -1.0, 1.0), 1),
        (pack_tick(103, last, 102.0, 101.0, 1.0, 1.0), 2),
        (pack_tick(104, last - 1, 100.0, 101.0, 1.0, 1.0), 3),
        (pack_tick(105, last, 100.0, 101.0, 1.0, 1.0, side=3), 4),
        (TICK_STRUCT.pack(0xBEEF, 1, 0, 106, last, 0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 0), 5),
    ]
    for payload, status in bad:
        got = _ask(sock, payload)
        assert got[2] == status and got[3] == struct.unpack_from("<I", payload, 4)[0]
    sock.send(b"\x00" * 10)  # wrong size: counted, not answered
    t = ticks[20]
    got = _ask(sock, pack_tick(200, int(t["exch_ns"]), float(t["bid"]), float(t["ask"]),
                               float(t["bid_size"]), float(t["ask_size"])))
    assert got[2] == 0 and got[3] == 200  # the loop goes on
    rej = server.counters.rejected
    assert rej["bad_price"] - start["bad_price"] == 3
    for k in ("crossed", "time_backwards", "bad_side", "bad_header"):
        assert rej[k] - start[k] == 1
    assert server.counters.bad_size >= 1
    sock.close()


def test_replay_measures_round_trips():
    fp = FastPath.from_model(ModelLoader.load("tick-mlp", device="cpu"))
    with FeedServer(fp, "127.0.0.1", 0) as srv:
        res = replay(synthetic_ticks(300, seed=5), *srv.address, warmup=50)
    assert res["ticks"] == 300 and res["lost"] == 0 and res["statuses"] == {"ok": 300}
    assert res["measured"] == 250 and 0 < res["rtt_us"]["p50"] <= res["rtt_us"]["p99"]


def test_parse_address():
    assert parse_address("127.0.0.1:9") == ("127.0.0.1", 9)
    with pytest.raises(FinanceError, match="HOST:PORT"):
        parse_address("localhost")
