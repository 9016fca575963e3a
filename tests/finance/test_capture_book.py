"""Captures read as typed records with both clocks, and the L2 book's update-ID rules."""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pytest

from deepseek.finance.book import OrderBook
from deepseek.finance.capture import CaptureReader, DepthDiff, Snapshot, is_capture
from deepseek.finance.errors import TickFileError
from deepseek.finance.features import batch_features
from deepseek.finance.ticks import CaptureTicks, read_binance
from tests.shared import shared_data

BASE = 1_700_000_000_000  # ms
MARKET = shared_data("market")


def _write(path, lines, compress=None):
    text = "".join(f"{ns} {json.dumps(msg)}\n" for ns, msg in lines).encode()
    if compress == "gz":
        text = gzip.compress(text)
    elif compress == "zst":
        zstandard = pytest.importorskip("zstandard")
        text = zstandard.ZstdCompressor().compress(text)
    path.write_bytes(text)
    return path


def _spot(tmp_path, compress=None, name="capture.log"):
    """A spot capture: diffs before and after the snapshot, tickers, trades, another symbol."""
    ms = BASE
    lines = [
        (1_000, {"stream": "x@depth", "data": {"e": "depthUpdate", "E": ms, "s": "BTCUSDT",
                                               "U": 5, "u": 8, "b": [["99", "1"]], "a": []}}),
        (2_000, {"u": 9, "s": "BTCUSDT", "b": "100.0", "B": "2", "a": "101.0", "A": "3"}),
        (3_000, {"lastUpdateId": 10, "bids": [["100.0", "2"], ["99.0", "4"]],
                 "asks": [["101.0", "3"], ["102.0", "6"]]}),
        (4_000, {"e": "depthUpdate", "E": ms + 2, "s": "BTCUSDT", "U": 9, "u": 12,
                 "b": [["100.0", "5"]], "a": [["102.0", "0"], ["103.0", "1"]]}),
        (5_000, {"u": 12, "s": "BTCUSDT", "b": "100.0", "B": "5", "a": "101.0", "A": "3"}),
        (6_000, {"e": "trade", "E": ms + 4, "T": ms + 1, "s": "BTCUSDT", "t": 7, "p": "101.0",
                 "q": "0.5", "m": False}),
        (7_000, {"e": "trade", "E": ms + 5, "T": ms + 5, "s": "ETHUSDT", "t": 1, "p": "1",
                 "q": "1", "m": True}),
        (8_000, {"e": "kline", "E": ms + 6, "s": "BTCUSDT"}),
        (9_000, {"u": 13, "s": "BTCUSDT", "b": "100.0", "B": "5", "a": "101.0", "A": "3"}),
    ]
    return _write(tmp_path / name, lines, compress)


def test_envelopes_read_alike_compact_spaced_and_raw(tmp_path):
    """Combined-stream envelopes (compact, as Binance sends them, or spaced) and the bare
    messages give the same records; partial-book streams are counted, not read as diffs."""
    ms = BASE
    msgs = [
        ("btcusdt@depth@100ms", {"e": "depthUpdate", "E": ms, "s": "BTCUSDT", "U": 5, "u": 8,
                                 "b": [["99.5", "1.25"]], "a": [["100", "0"]]}),
        ("btcusdt@bookTicker", {"u": 9, "s": "BTCUSDT", "b": "99.5", "B": "2", "a": "101",
                                "A": "3"}),
        ("btcusdt@aggTrade", {"e": "aggTrade", "E": ms + 2, "T": ms + 1, "s": "BTCUSDT",
                              "a": 4, "p": "101", "q": "0.5", "m": True}),
        ("btcusdt@depth5@100ms", {"lastUpdateId": 9, "bids": [], "asks": []}),
    ]
    compact = "".join(f"{i} " + json.dumps({"stream": s, "data": m}, separators=(",", ":"))
                      + "\n" for i, (s, m) in enumerate(msgs, 1))
    spaced = "".join(f"{i} " + json.dumps({"stream": s, "data": m}) + "\n"
                     for i, (s, m) in enumerate(msgs, 1))
    bare = "".join(f"{i} " + json.dumps(m) + "\n" for i, (_, m) in enumerate(msgs[:3], 1))
    out = []
    for name, text in (("compact", compact), ("spaced", spaced), ("bare", bare)):
        (tmp_path / name).write_text(text)
        reader = CaptureReader(tmp_path / name)
        out.append(list(reader))
        if name != "bare":
            assert reader.stats["ignored"] == {"partial book (depth5)": 1}
    assert out[0] == out[1] == out[2]
    depth, quote, trade = out[0]
    assert depth.bids.tolist() == [[99.5, 1.25]] and depth.asks.tolist() == [[100.0, 0.0]]
    assert (quote.bid, quote.ask_qty, quote.exch_ns) == (99.5, 3.0, -1)
    assert (trade.side, trade.agg_id, trade.exch_ns) == (-1, 4, (ms + 1) * 10**6)
    # a broken message in a compact envelope is reported like any other
    (tmp_path / "bad").write_text('1 {"stream":"x@trade","data":{"e":"trade","s":"X","p":"1"}}\n')
    with pytest.raises(TickFileError, match="line 1: trade message: Object missing required "
                                            "field `q`"):
        list(CaptureReader(tmp_path / "bad"))


@pytest.mark.parametrize("compress", [None, "gz", "zst"])
def test_records_keep_both_clocks_and_their_kind(tmp_path, compress):
    path = _spot(tmp_path, compress, name=f"c.{compress or 'log'}")
    assert is_capture(path)
    reader = CaptureReader(path, symbol="btcusdt")
    recs = list(reader)
    assert [r.kind for r in recs] == ["depth", "quote", "snapshot", "depth", "quote", "trade",
                                      "quote"]
    assert all(r.time_ns == r.recv_ns for r in recs)  # the receive clock by default
    trade = recs[5]
    assert trade.exch_ns == (BASE + 1) * 10**6  # T (trade time) before E
    assert (trade.price, trade.qty, trade.side, trade.trade_id) == (101.0, 0.5, 1, 7)
    assert recs[1].exch_ns == -1  # spot bookTicker carries no exchange time
    assert recs[2].symbol == "BTCUSDT"  # the snapshot names none: the selected symbol
    assert recs[3].bids.tolist() == [[100.0, 5.0]] and recs[3].prev_id == -1
    st = reader.stats
    assert st["records"] == {"trade": 1, "quote": 3, "depth": 2, "snapshot": 1}
    assert st["other_symbols"] == 1 and st["ignored"] == {"kline": 1}
    assert st["lines"] == 9


def test_exchange_clock_estimates_missing_times_and_counts(tmp_path):
    path = _spot(tmp_path)
    reader = CaptureReader(path, symbol="BTCUSDT", clock="exchange", order="clamp")
    recs = list(reader)
    # the first ticker has no exchange time: receive time + the offset of the diff before it
    assert recs[1].time_ns == 2_000 + (BASE * 10**6 - 1_000)
    assert reader.stats["time_estimated"] == 4  # 3 tickers + the snapshot
    times = [r.time_ns for r in recs]
    assert times == sorted(times)
    # the trade's time (ms + 1) is before the diff's (ms + 2) that came first
    assert reader.stats["clamped"] == reader.stats["out_of_order"] == 1
    with pytest.raises(TickFileError, match="exchange time goes backwards .* order='clamp'"):
        list(CaptureReader(path, symbol="BTCUSDT", clock="exchange"))
    dropped = CaptureReader(path, symbol="BTCUSDT", clock="exchange", order="drop")
    kept = list(dropped)
    assert len(kept) + dropped.stats["dropped"] == len(recs)


def test_receive_time_going_backwards_is_an_error_by_default(tmp_path):
    path = _write(tmp_path / "b.log", [
        (2, {"u": 1, "s": "X", "b": "1", "B": "1", "a": "2", "A": "1"}),
        (1, {"u": 2, "s": "X", "b": "1", "B": "1", "a": "2", "A": "2"})])
    with pytest.raises(TickFileError, match="line 2: receive time goes backwards"):
        list(CaptureReader(path))
    clamped = CaptureReader(path, order="clamp")
    assert [r.time_ns for r in clamped] == [2, 2] and clamped.stats["clamped"] == 1


def test_several_symbols(tmp_path):
    lines = [(i, {"u": i, "s": s, "b": "1", "B": "1", "a": "2", "A": "1"})
             for i, s in enumerate(["AAA", "BBB", "AAA"], start=1)]
    path = _write(tmp_path / "m.log", lines)
    assert [r.symbol for r in CaptureReader(path)] == ["AAA", "BBB", "AAA"]
    with pytest.raises(TickFileError, match="several symbols .*pass symbol="):
        read_binance(path)
    assert len(read_binance(path, symbol="BBB")) == 1
    lines.append((9, {"lastUpdateId": 3, "bids": [], "asks": []}))
    with pytest.raises(TickFileError, match="line 4: a snapshot that names no symbol"):
        list(CaptureReader(_write(tmp_path / "m2.log", lines)))


@pytest.mark.parametrize("text,pattern", [
    ("x {}\n", "line 1: expected '<receive_ns> <json>'"),
    ("12\n", "line 1: expected .* no JSON after the time"),
    ("1 [1, 2]\n", "line 1: the JSON message is not an object"),
    ('1 {"e": "trade", "s": "X", "p": "1"}\n',
     "line 1: trade message: Object missing required field `q`"),
    ('1 {"e": "depthUpdate", "s": "X", "U": 1, "u": 2, "b": [["1"]], "a": []}\n',
     r"line 1: depthUpdate message: levels must be \[price, quantity\] pairs of numbers "
     r"\(Expected `array` of length 2 - at `\$.b\[0\]`\)"),
    ('1 {"u": 1, "s": "X", "b": "abc", "B": "1", "a": "2", "A": "1"}\n',
     r"line 1: bookTicker message: Expected `float`, got `str` - at `\$.b`"),
])
def test_bad_lines_name_the_line(tmp_path, text, pattern):
    p = tmp_path / "bad.log"
    p.write_text(text)
    with pytest.raises(TickFileError, match=pattern):
        list(CaptureReader(p))


def test_damaged_and_missing_files(tmp_path):
    good = gzip.compress(b"".join(b"%d {\"u\": %d, \"s\": \"X\", \"b\": \"1\", \"B\": \"1\", "
                                  b"\"a\": \"2\", \"A\": \"1\"}\n" % (i, i)
                                  for i in range(1, 2000)))
    cut = tmp_path / "cut.gz"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(TickFileError, match="damaged or cut short"):
        list(CaptureReader(cut))
    with pytest.raises(TickFileError, match="no such file"):
        list(CaptureReader(tmp_path / "missing.gz"))
    with pytest.raises(TickFileError, match="clock='utc'"):
        CaptureReader(cut, clock="utc")


def _diff(U, u, bids=(), asks=(), pu=-1):
    return DepthDiff(symbol="X", first_id=U, last_id=u, prev_id=pu, bids=list(bids),
                     asks=list(asks))


def _snap(last, bids=((10.0, 1.0),), asks=((11.0, 1.0),)):
    return Snapshot(symbol="X", last_id=last, bids=list(bids), asks=list(asks))


def test_spot_book_rules():
    book = OrderBook()
    book.apply(_diff(1, 4, bids=[(9.0, 2.0)]))  # buffered, stale once the snapshot comes
    book.apply(_diff(5, 7, bids=[(10.0, 3.0)]))  # buffered; straddles lastUpdateId + 1 = 6
    assert not book.live and book.best() is None
    book.apply(_snap(5))
    assert book.live and book.best() == (10.0, 3.0, 11.0, 1.0)
    assert book.stats["stale"] == 1 and book.stats["applied"] == 1
    assert book.apply(_diff(8, 9, asks=[(11.0, 0.0), (12.0, 4.0)]))
    assert book.best() == (10.0, 3.0, 12.0, 4.0)
    assert book.levels(2) == ([(10.0, 3.0)], [(12.0, 4.0)])
    assert not book.apply(_diff(11, 12))  # 10 is missing: a gap
    assert not book.live and book.stats["gaps"] == 1 and book.best() is None
    assert not book.apply(_diff(13, 14))
    assert book.stats["out_of_sync_diffs"] == 1
    book.apply(_snap(14, bids=[(10.5, 1.0), (10.0, 2.0)]))
    assert book.live and book.stats["resyncs"] == 1
    assert book.depth(5) == (3.0, 1.0)


def test_futures_book_rules_use_pu():
    book = OrderBook()
    book.apply(_snap(100))
    assert not book.apply(_diff(90, 99, pu=89))  # u < lastUpdateId: stale
    assert book.apply(_diff(95, 105, bids=[(10.0, 7.0)], pu=94))  # U <= 100 <= u
    assert book.apply(_diff(106, 110, pu=105))
    assert not book.apply(_diff(111, 115, pu=109))  # pu must be the previous u
    assert book.stats["gaps"] == 1 and book.stats["stale"] == 1


def test_first_diff_must_straddle_the_snapshot():
    book = OrderBook()
    book.apply(_snap(5))
    assert not book.apply(_diff(8, 9))  # starts after lastUpdateId + 1
    assert book.stats["gaps"] == 1


def test_a_crossed_book_leaves_sync():
    book = OrderBook()
    book.apply(_snap(5))
    assert not book.apply(_diff(6, 6, bids=[(11.5, 1.0)]))
    assert book.stats["crossed"] == 1 and not book.live


def test_buffered_diffs_count_once_and_bad_levels_are_refused():
    book = OrderBook()
    book.apply(_diff(5, 7, bids=[(10.0, 3.0)]))
    book.apply(_snap(5))
    assert book.stats["diffs"] == 1 and book.stats["buffered"] == 1
    before = book.levels(5)
    for bad in ((float("nan"), 1.0), (10.0, float("inf")), (-1.0, 1.0), (10.0, -2.0)):
        with pytest.raises(TickFileError, match=r"depth update 8\.\.8 of X: level .* finite"):
            book.apply(_diff(8, 8, bids=[bad]))
        assert book.levels(5) == before and book.last_id == 7  # the book is untouched
    with pytest.raises(TickFileError, match="snapshot 9 of X: level"):
        book.apply(_snap(9, bids=[(0.0, 1.0)]))


@pytest.mark.parametrize("msg, pattern", [
    ({"e": "trade", "E": BASE, "s": "X", "t": 1, "p": "nan", "q": "1", "m": False},
     "the trade received at 3 ns has price nan"),
    ({"e": "depthUpdate", "E": BASE, "s": "X", "U": 2, "u": 2, "b": [["-5", "1"]], "a": []},
     r"depth update 2..2 of X: level \(-5.0, 1.0\).*\(received at 3 ns\)"),
])
def test_ticks_refuse_impossible_prices_with_the_file(tmp_path, msg, pattern):
    lines = [(1, {"lastUpdateId": 1, "symbol": "X", "bids": [["10", "1"]],
                  "asks": [["11", "1"]]}),
             (2, {"u": 1, "s": "X", "b": "10", "B": "1", "a": "11", "A": "1"}), (3, msg)]
    path = _write(tmp_path / "c.log", lines)
    with pytest.raises(TickFileError, match=str(path).replace(".", r"\.") + ": " + pattern):
        read_binance(path)


def test_ticks_from_a_capture(tmp_path):
    ct = CaptureTicks(_spot(tmp_path), symbol="BTCUSDT", levels=2)
    ticks = ct.to_array()
    st = ct.stats
    # the first diff (before any top) and the last ticker (nothing changed) make no tick
    assert st["ticks"]["before_top"] == 1 and st["ticks"]["unchanged"] == 1
    assert ticks["side"].tolist() == [0, 0, 0, 0, 1]
    assert ticks["depth_levels"].tolist() == [0, 2, 2, 2, 2]
    # after the snapshot, depth over 2 levels; the diff replaced 102 with 103 on the ask side
    assert ticks["bid_depth"][1] == 6.0 and ticks["ask_depth"][2] == 4.0
    assert ticks["bid_size"][3] == 5.0 and ticks["last_px"][4] == 101.0
    assert ticks["exch_ns"][4] == (BASE + 1) * 10**6 and ticks["exch_ns"][0] == -1
    assert (ticks["time_ns"] == ticks["recv_ns"]).all()
    assert st["ticker_check"]["same_id_compared"] == 1 and st["ticker_check"]["agreement"] == 1
    assert np.isfinite(batch_features(ticks)).all()


def test_book_only_capture_takes_the_top_from_the_book(tmp_path):
    lines = [(1, {"lastUpdateId": 1, "symbol": "X", "bids": [["10", "1"], ["9", "2"]],
                  "asks": [["11", "1"], ["12", "5"]]}),
             (2, {"e": "depthUpdate", "E": BASE, "s": "X", "U": 2, "u": 2,
                  "b": [["10", "0"]], "a": []})]
    ticks = read_binance(_write(tmp_path / "book.log", lines))
    assert ticks["bid"].tolist() == [10.0, 9.0] and ticks["bid_size"].tolist() == [1.0, 2.0]
    assert ticks["ask"].tolist() == [11.0, 11.0]
    with pytest.raises(TickFileError, match="no ticks"):
        read_binance(_write(tmp_path / "e.log", [(1, {"e": "kline", "s": "X"})]))


def test_a_crossed_ticker_names_the_record(tmp_path):
    p = _write(tmp_path / "x.log", [(77, {"u": 1, "s": "X", "b": "101", "B": "1", "a": "100",
                                          "A": "1"})])
    with pytest.raises(TickFileError, match="crossed book .*received at 77 ns"):
        read_binance(p)


@pytest.mark.skipif(MARKET is None, reason="../shared/data/market is not here")
@pytest.mark.parametrize("name", ["binance-usdm-ethusdt_20240808.gz",
                                  "binance-cm-btcusd_perp_20240808.gz"])
def test_real_futures_capture_book_stays_in_sync(name):
    """Real USD-M / COIN-M captures: the book syncs from the snapshot line, applies every
    diff without a gap, and agrees with bookTicker on the best prices."""
    ct = CaptureTicks(MARKET / name, levels=5)
    n = 0
    for _ in ct:
        n += 1
        if n == 6000:
            break
    st = ct.stats
    assert st["book"]["snapshots"] == 1 and st["book"]["gaps"] == 0 and st["book"]["live"]
    assert st["book"]["applied"] > 100
    assert st["ticker_check"]["compared"] > 100 and st["ticker_check"]["agreement"] > 0.99
    assert st["reader"]["out_of_order"] == 0


def test_a_zstd_capture_without_zstandard_names_the_extra(tmp_path, monkeypatch):
    from deepseek.finance.capture import open_binary

    path = _write(tmp_path / "c.log.zst", [(1, {"u": 1})], compress="zst")
    monkeypatch.setitem(__import__("sys").modules, "zstandard", None)  # the edge install
    with pytest.raises(TickFileError, match=r'c.log.zst: a zstd file.*deepseek-finance\[zstd\]'):
        open_binary(path)


def test_a_trade_received_twice_is_counted_once(tmp_path):
    """A reconnect re-delivers a trade; a line is written twice: each duplicate is dropped
    and counted, never counted twice in the ticks."""
    from deepseek.finance.capture import CaptureReader

    ms = BASE
    trade = {"e": "trade", "E": ms + 4, "T": ms + 1, "s": "BTCUSDT", "t": 7, "p": "101.0",
             "q": "0.5", "m": False}
    agg = {"e": "aggTrade", "E": ms + 6, "T": ms + 6, "s": "BTCUSDT", "a": 3, "p": "101.0",
           "q": "0.2", "m": True}
    other = dict(trade, t=8, q="0.1")
    lines = [(1_000, {"u": 9, "s": "BTCUSDT", "b": "100.0", "B": "2", "a": "101.0", "A": "3"}),
             (2_000, trade), (2_000, trade),  # the same line twice
             (3_000, other), (4_000, agg),
             (5_000, trade), (6_000, agg),  # re-received after a reconnect
             (7_000, {"stream": "btcusdt@trade", "data": other})]  # enveloped, same id
    path = _write(tmp_path / "dup.log", lines)
    reader = CaptureReader(path)
    kinds = [r.kind for r in reader]
    assert kinds.count("trade") == 3 and reader.stats["duplicate_trades"] == 4
    ticks = read_binance(path)
    assert int((ticks["side"] != 0).sum()) == 3
    assert sorted(ticks["last_size"][ticks["side"] != 0].tolist()) == [0.1, 0.2, 0.5]


@pytest.mark.parametrize("compress", ["gz", "zst"])
@pytest.mark.parametrize("kind", ["capture", "ticks-csv", "bars"])
def test_a_cut_compressed_file_names_its_last_whole_line(tmp_path, compress, kind):
    """Every reader says the same thing about a file cut short: the file, the last line
    read whole (never 'line 0' when lines were read), and no traceback or 'bug'."""
    import datetime as dt
    import gzip

    from deepseek.finance.bars import read_bars
    from deepseek.finance.synthetic import synthetic_ticks
    from deepseek.finance.ticks import read_csv, write_csv

    n = 20_000  # several zstd blocks (a block decodes only whole)
    if kind == "capture":
        lines = [(1_000 + i, {"e": "trade", "E": BASE + i, "T": BASE + i, "s": "X", "t": i,
                              "p": "100.0", "q": "1", "m": bool(i % 2)}) for i in range(n)]
        text = "".join(f"{ns} {json.dumps(msg)}\n" for ns, msg in lines).encode()
        read = read_binance
    elif kind == "ticks-csv":
        text = write_csv(synthetic_ticks(n, seed=3), tmp_path / "t.csv").read_bytes()
        read = read_csv
    else:
        day = dt.date(1990, 1, 1)
        text = ("Date,Open,High,Low,Close,Volume\n" + "".join(
            f"{day + dt.timedelta(days=i)},1,2,0.5,1.5,10\n" for i in range(n))).encode()
        read = read_bars
    if compress == "gz":
        packed = gzip.compress(text)
    else:
        packed = pytest.importorskip("zstandard").ZstdCompressor().compress(text)
    path = tmp_path / f"cut.{compress}"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(TickFileError, match="damaged or cut short") as err:
        read(path)
    got = re.search(r"after line (\d+)", str(err.value))
    assert str(path) in str(err.value) and got and int(got.group(1)) > 100, err.value


# -- levels as arrays, the ladder book --------------------------------------------------------
def test_levels_parse_exactly_as_float_does():
    import msgspec

    from deepseek.finance.levels import parse_levels

    rng = np.random.default_rng(7)
    texts = []
    for _ in range(3000):
        whole = str(int(rng.integers(0, 10 ** int(rng.integers(1, 9)))))
        frac = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(0, 9))))
        texts.append(whole + ("." + frac if frac else ""))
    texts += ["0", "0.0", "-0.0", "-0", "1e3", "2.5E-2", "123456789012345678",
              "0.1000000000000000000001", "9007199254740993", "1.7976931348623157e308", "nan",
              "inf", "-1.5", "0.00012"]
    pairs = [(texts[i], texts[-1 - i]) for i in range(len(texts))]
    raw = ("[" + ",".join(f'["{p}", "{q}"]' for p, q in pairs) + "]").encode()
    got = parse_levels(raw)
    # bit for bit what msgspec's lax decoder alone gives (float() but for "-0", read as 0)
    want = np.array(msgspec.json.decode(raw, type=list[tuple[float, float]], strict=False))
    assert got.tobytes() == want.tobytes()
    assert got[:3000, 0].tolist() == [float(p) for p, _ in pairs[:3000]]
    # numbers as JSON numbers, spacing, the empty list
    assert parse_levels(b' [ [1.5 , 2] ,[3,"4.25"] ] ').tolist() == [[1.5, 2.0], [3.0, 4.25]]
    assert parse_levels(b"[]").shape == (0, 2)
    for bad in (b'[["1"]]', b'[["1","2","3"]]', b'[["a","1"]]', b"[[1,2]", b"{}",
                b'[["007","1"]]', b'[[".5","1"]]', b'[["5.","1"]]'):
        with pytest.raises(ValueError, match="pairs of numbers"):
            parse_levels(bad)


def test_real_capture_levels_equal_the_general_decoder():
    import gzip

    import msgspec

    folder = shared_data("market")
    if folder is None:
        pytest.skip("../shared/data/market is not in this checkout")
    general = msgspec.json.Decoder(dict, strict=False)
    path = folder / "binance-usdm-ethusdt_20240808.gz"
    n = 0
    with gzip.open(path, "rb") as fh:
        raw = [ln.split(b" ", 1)[1] for ln in fh if b"depthUpdate" in ln][:1500]
    for body in raw:
        msg = general.decode(body)["data"]
        rec = msgspec.json.decode(body, type=msgspec.defstruct(
            "E", [("data", DepthDiff)]), strict=False).data
        for key, arr in (("b", rec.bids), ("a", rec.asks)):
            want = np.array([(float(p), float(q)) for p, q in msg[key]]).reshape(-1, 2)
            assert arr.tobytes() == want.tobytes()
            n += len(want)
    assert n > 10_000


class _DictBook:
    """A plain dict reference of one book side set by the same levels."""

    def __init__(self):
        self.bids, self.asks = {}, {}

    def set(self, side, levels):
        for p, q in levels:
            if q == 0:
                side.pop(p, None)
            else:
                side[p] = q


def test_ladder_book_equals_a_dict_book_over_random_updates():
    rng = np.random.default_rng(11)
    book, ref = OrderBook(), _DictBook()
    snap_b = [(100.0 - 0.5 * i, float(rng.integers(1, 9))) for i in range(40)]
    snap_a = [(100.5 + 0.5 * i, float(rng.integers(1, 9))) for i in range(40)]
    book.apply(_snap(1, bids=snap_b, asks=snap_a))
    ref.set(ref.bids, snap_b)
    ref.set(ref.asks, snap_a)
    for u in range(2, 3000):
        # a level anywhere, often at the touch; a quarter removals; the book never crosses
        best_b, best_a = max(ref.bids), min(ref.asks)
        bids = [(best_b - 0.5 * int(rng.integers(-1, 60)), float(rng.integers(0, 4)) * 1.25)
                for _ in range(int(rng.integers(0, 6)))]
        asks = [(best_a + 0.5 * int(rng.integers(-1, 60)), float(rng.integers(0, 4)) * 1.25)
                for _ in range(int(rng.integers(0, 6)))]
        bids = [(p, q) for p, q in bids if p < best_a]
        asks = [(p, q) for p, q in asks if p > max(best_b, max((p for p, _ in bids), default=0))]
        assert book.apply(_diff(u, u, bids=bids, asks=asks)), u
        ref.set(ref.bids, bids)
        ref.set(ref.asks, asks)
        if not ref.bids or not ref.asks:
            break
        top_b = sorted(ref.bids.items(), reverse=True)
        top_a = sorted(ref.asks.items())
        assert book.levels(5) == (top_b[:5], top_a[:5])
        assert book.best() == (*top_b[0], *top_a[0])
        assert book.depth(5) == (sum(q for _, q in top_b[:5]), sum(q for _, q in top_a[:5]))
        bid, ask = top_b[0][0], top_a[0][0]
        below = [q for p, q in sorted(ref.bids.items()) if p < bid][-4:]
        above = [q for p, q in top_a if p > ask][:4]
        assert book.depth_behind(bid, ask, 4) == (sum(below), sum(above))
    assert book.bids == dict(sorted(ref.bids.items()))
    assert book.stats["applied"] > 1000 and len(book.bids) > 40  # the ladder grew
