from __future__ import annotations

import numpy as np
import pytest

from deepseek.finance.errors import FinanceError, TickFileError
from deepseek.finance.synthetic import synthetic_ticks
from deepseek.finance.ticks import read_csv, write_csv
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
    stats = {}
    read_csv(p, order="drop", stats=stats)
    assert stats == {"rows": 2, "clamped": 0, "dropped": 1, "duplicate_lines": 0}
    read_csv(p, order="clamp", stats=stats)
    assert stats["clamped"] == 1 and stats["dropped"] == 0


def test_csv_a_line_written_twice_is_dropped_and_counted(tmp_path, caplog):
    p = tmp_path / "dup.csv"
    p.write_text("time_ns,bid,ask,bid_size,ask_size\n5,1,2,3,4\n5,1,2,3,4\n5,1,2,3,5\n"
                 "6,1,2,3,4\n")
    stats = {}
    with caplog.at_level("WARNING"):
        t = read_csv(p, stats=stats)
    assert t["ask_size"].tolist() == [4.0, 5.0, 4.0]  # same time, other sizes: kept
    assert stats["duplicate_lines"] == 1 and "1 duplicate lines" in caplog.text


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


