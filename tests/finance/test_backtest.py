"""The backtester's fills on hand-built ticks, the trading metrics against hand computations,
no lookahead, walk-forward splits, bars, and bad input."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from deepseek.finance.backtest import BacktestConfig, backtest, check_ticks, time_gaps
from deepseek.finance.bars import bar_backtest, read_bars, rule_signals
from deepseek.finance.errors import FinanceError, TickFileError
from deepseek.finance.metrics import load_trading_files, roc_auc, round_trips, trading
from deepseek.finance.strategy import imbalance_decisions, model_decisions, walk_forward, windows
from deepseek.finance.synthetic import read_synthetic, synthetic_market
from deepseek.finance.ticks import TICK_DTYPE
from tests.shared import shared_data

BARS = shared_data("bars")


@pytest.fixture
def invoke():
    from click.testing import CliRunner

    from deepseek.cli import build_cli

    runner = CliRunner()
    return lambda *args: runner.invoke(build_cli(), list(args))


def book(rows):
    """Ticks from (time_ns, bid, ask, bid_size, ask_size[, last_px, last_size, side])."""
    out = np.zeros(len(rows), dtype=TICK_DTYPE)
    for i, r in enumerate(rows):
        t, b, a, bs, as_ = r[:5]
        lp, ls, sd = r[5:] if len(r) > 5 else (math.nan, 0.0, 0)
        out[i] = (t, t, t, b, a, bs, as_, bs, as_, lp, ls, sd, 0)
    return out


FREE = dict(taker_fee_bps=0.0, maker_fee_bps=0.0, hold_ticks=100)


@pytest.mark.parametrize("latency_us, price", [(0.0, 101.0), (0.5, 101.0), (1.0, 103.0),
                                                (1.5, 103.0), (2.0, 105.0)])
def test_market_order_fills_at_the_touch_it_meets_after_the_latency(latency_us, price):
    ticks = book([(0, 100, 101, 5, 5), (1000, 102, 103, 5, 5), (2000, 104, 105, 5, 5)])
    r = backtest(ticks, [1, 0, 0], BacktestConfig(order_latency_us=latency_us, **FREE))
    assert len(r.fills) == 1
    f = r.fills[0]
    assert (f["side"], f["price"], f["qty"], f["maker"]) == (1, price, 1.0, False)
    assert f["time_ns"] == int(latency_us * 1000)
    # marked to the mid after the last tick: 104.5 - price
    assert r.equity[-1] - r.capital == pytest.approx(104.5 - price)


def test_orders_still_on_the_way_when_the_data_ends_are_not_filled():
    ticks = book([(0, 100, 101, 5, 5), (1000, 102, 103, 5, 5), (2000, 104, 105, 5, 5)])
    r = backtest(ticks, [1, 0, 0], BacktestConfig(order_latency_us=2.5, **FREE))
    assert len(r.fills) == 0 and r.counters["unsent_at_end"] == 1


def test_feed_latency_delays_what_the_strategy_sees():
    ticks = book([(0, 100, 101, 5, 5), (1000, 102, 103, 5, 5), (2000, 104, 105, 5, 5)])
    r = backtest(ticks, [1, 0, 0], BacktestConfig(feed_latency_us=1.2, **FREE))
    assert r.fills[0]["price"] == 103.0 and r.fills[0]["time_ns"] == 1200


def test_taker_fee_is_charged_on_the_notional():
    ticks = book([(0, 100, 101, 5, 5), (1000, 100, 101, 5, 5)])
    r = backtest(ticks, [1, 0], BacktestConfig(taker_fee_bps=10.0, hold_ticks=100))
    assert r.fills[0]["fee"] == pytest.approx(101 * 1e-3)
    assert r.equity[-1] - r.capital == pytest.approx(100.5 - 101 - 0.101)


def test_flat_call_closes_after_the_hold_and_opposite_call_reverses():
    ticks = book([(i * 1000, 100, 101, 5, 5) for i in range(6)])
    r = backtest(ticks, [1, 0, 0, -1, 0, 0], BacktestConfig(taker_fee_bps=0, hold_ticks=10))
    assert list(r.fills["side"]) == [1, -1] and list(r.fills["qty"]) == [1.0, 2.0]
    assert list(r.position) == [1, 1, 1, -1, -1, -1]
    r = backtest(ticks, [1, 0, 0, 0, 0, 0], BacktestConfig(taker_fee_bps=0, hold_ticks=2))
    assert list(r.position) == [1, 1, 0, 0, 0, 0]


LIMIT = BacktestConfig(order_type="limit", **FREE)


def test_limit_order_fills_only_when_the_market_trades_through():
    # buy limit posted at the observed bid 100, 5 ahead of it in the queue
    ticks = book([(0, 100, 101, 5, 5),
                  (1000, 100, 100.5, 5, 5),            # ask moves to 100.5: not through
                  (2000, 100, 101, 5, 5, 100, 2, -1),   # 2 traded at 100: 3 still ahead
                  (3000, 100, 101, 5, 5),
                  (4000, 99, 100, 5, 5, 99, 1, -1)])    # a sale at 99 trades through 100
    r = backtest(ticks, [1, 0, 0, 0, 0], LIMIT)
    assert len(r.fills) == 1
    f = r.fills[0]
    assert (f["time_ns"], f["price"], f["maker"], f["side"]) == (4000, 100.0, True, 1)
    assert list(r.position) == [0, 0, 0, 0, 1]


def test_limit_queue_is_worked_off_by_trades_at_the_price():
    ticks = book([(0, 100, 101, 3, 5),
                  (1000, 100, 101, 3, 5, 100, 2, -1),   # 1 left ahead
                  (2000, 100, 101, 3, 5, 100, 1.5, -1)])  # 0.5 beyond the queue: partial
    r = backtest(ticks, [1, 0, 0], LIMIT)
    assert list(r.fills["qty"]) == [0.5] and r.fills["time_ns"][0] == 2000
    # cancellations: the displayed size falls to 1, so the queue ahead is at most 1
    ticks = book([(0, 100, 101, 3, 5), (1000, 100, 101, 1, 5),
                  (2000, 100, 101, 1, 5, 100, 1.25, -1)])
    r = backtest(ticks, [1, 0, 0], LIMIT)
    assert list(r.fills["qty"]) == [0.25]


def test_limit_priced_through_the_touch_it_meets_fills_as_taker():
    # posted at the observed bid 100; by arrival the ask has fallen to 99.5
    ticks = book([(0, 100, 101, 5, 5), (1000, 99, 99.5, 5, 5), (2000, 99, 99.5, 5, 5)])
    r = backtest(ticks, [1, 0, 0], BacktestConfig(order_type="limit", order_latency_us=1.5,
                                               taker_fee_bps=10.0, hold_ticks=100))
    f = r.fills[0]
    assert (f["price"], f["maker"]) == (99.5, False) and f["fee"] == pytest.approx(0.0995)


def test_limit_order_is_cancelled_after_its_time_to_live():
    ticks = book([(i * 1000, 100, 101, 5, 5) for i in range(5)])
    r = backtest(ticks, [1, 1, 1, 1, 1],
                 BacktestConfig(order_type="limit", limit_ttl_us=1.5, **FREE))
    assert r.counters["cancels_sent"] >= 1 and r.counters["cancelled"] >= 1
    assert len(r.fills) == 0 and r.counters["orders_sent"] >= 2  # reposted after the cancel


def test_maker_rebate():
    ticks = book([(0, 100, 101, 5, 5), (1000, 99, 100, 5, 5, 99, 1, -1)])
    r = backtest(ticks, [1, 0], BacktestConfig(order_type="limit", maker_fee_bps=-2.0,
                                               hold_ticks=100))
    assert r.fills[0]["fee"] == pytest.approx(-100 * 2e-4)


def test_loss_limit_halts_and_flattens():
    ticks = book([(0, 100, 101, 5, 5), (1000, 90, 91, 5, 5), (2000, 80, 81, 5, 5),
                  (3000, 120, 121, 5, 5)])
    r = backtest(ticks, [1, 1, 1, 1], BacktestConfig(max_loss=5.0, **FREE))
    assert r.counters["halted_ns"] == 1000
    assert list(r.position) == [1, 0, 0, 0]
    assert r.equity[-1] - r.capital == pytest.approx(90 - 101)


@pytest.mark.parametrize("order_type", ["market", "limit"])
def test_position_never_exceeds_the_limit(order_type):
    ticks = synthetic_market(4000, seed=1)
    dec = np.random.default_rng(0).integers(-1, 2, len(ticks))
    cfg = BacktestConfig(order_type=order_type, size=2.0, max_position=2.0, hold_ticks=3,
                         latency_samples_us=[50, 400, 3000, 20_000])
    r = backtest(ticks, dec, cfg)
    assert np.abs(r.position).max() <= 2.0 + 1e-9
    assert len(r.fills) > 10
    # cash + position at the mid, rebuilt from the fills, is the equity curve
    f = r.fills
    cash = -np.sum(f["side"] * f["qty"] * f["price"]) - f["fee"].sum()
    mid = (ticks["bid"][-1] + ticks["ask"][-1]) / 2
    assert r.equity[-1] - r.capital == pytest.approx(cash + r.position[-1] * mid)


def test_no_lookahead_changing_the_future_changes_nothing_before_it():
    ticks = synthetic_market(6000, seed=4)
    k = 4000
    future = ticks.copy()
    rng = np.random.default_rng(1)
    future["bid"][k:] *= 1.05
    future["ask"][k:] *= 1.05
    future["bid_size"][k:] = rng.integers(1, 50, len(ticks) - k)
    future["side"][k:] = 0
    future["last_size"][k:] = 0.0
    cfg = BacktestConfig(order_type="limit", feed_latency_us=100, order_latency_us=700,
                         taker_fee_bps=1.0)
    runs = []
    for data in (ticks, future):
        dec = model_decisions("tick-mlp", data)
        runs.append((dec, backtest(data, dec, cfg)))
    (d0, r0), (d1, r1) = runs
    assert np.array_equal(d0[:k], d1[:k]) and not np.array_equal(d0[k:], d1[k:])
    t_k = ticks["time_ns"][k]
    before0 = r0.fills[r0.fills["time_ns"] < t_k]
    before1 = r1.fills[r1.fills["time_ns"] < t_k]
    assert len(before0) > 5 and np.array_equal(before0, before1)
    assert np.array_equal(r0.equity[:k - 1], r1.equity[:k - 1])
    assert not np.array_equal(r0.equity[k:], r1.equity[k:])


def test_walk_forward_folds_never_see_their_future():
    for n, folds in ((10_000, 4), (9_999, 2), (50_000, 7)):
        ws = windows(n, folds, min_window=1000)
        assert len(ws) == folds
        for k, (tr, te) in enumerate(ws):
            assert tr.stop <= te.start and te.stop <= n
            if k:
                assert ws[k - 1][1] == tr  # rolls forward: trains on the last test window
    with pytest.raises(FinanceError, match="fewer folds"):
        windows(3000, 3)
    ticks = synthetic_market(6000, seed=8)
    wf = walk_forward(ticks, folds=1, epochs=1,
                      config=BacktestConfig(order_latency_us=500, taker_fee_bps=0.5))
    (fold,) = wf.folds
    assert fold.train == (0, 3000) and fold.test == (3000, 6000)
    assert fold.train_time_ns[1] < fold.test_time_ns[0]
    for strat in ("model", "imbalance"):
        for setting in ("zero", "configured"):
            r = fold.results[strat][setting]
            assert len(r.equity) == 3000 and r.fills["time_ns"].min() >= fold.test_time_ns[0]
    assert wf.configs["zero"].order_latency_us == 0 and wf.configs["zero"].taker_fee_bps == 0.5
    m = wf.metrics("model", "configured", period_s=1.0)
    assert {"sharpe", "sortino", "max_drawdown", "hit_rate", "turnover", "fees_paid"} <= set(m)


# -- metrics --------------------------------------------------------------------------------
def test_trading_metrics_against_hand_computation():
    s = 1_000_000_000
    t = np.array([0, 1, 2, 3, 4]) * s
    eq = np.array([100.0, 110.0, 99.0, 104.5, 121.0])
    m = trading(np.column_stack([t, eq]), None, capital=100.0, period_s=None)
    r = np.r_[100.0, eq][1:] / np.r_[100.0, eq][:-1] - 1  # 0, .10, -.10, .0556, .1579
    assert m["total_return"] == pytest.approx(0.21)
    assert m["sharpe_per_period"] == pytest.approx(r.mean() / r.std(ddof=1))
    assert m["sortino_per_period"] == pytest.approx(
        r.mean() / math.sqrt(np.mean(np.minimum(r, 0) ** 2)))
    # 4 s of data: no annual figure, and the reason is given
    assert m["sharpe"] is None and m["sortino"] is None and m["annualised_return"] is None
    assert "not annualised" in m["annualisation"] and "30" in m["annualisation"]
    assert m["max_drawdown"] == pytest.approx(0.10)          # 110 -> 99: 10 % of the peak
    assert m["max_drawdown_duration_s"] == pytest.approx(2.0)  # peak at 1 s, regained at 4 s
    assert "risk-free rate 0" in m["annualisation"]
    # period returns: the equity as of each period's end
    m2 = trading(np.column_stack([t, eq]), None, capital=100.0, period_s=2.0)
    assert m2["total_return"] == pytest.approx(0.21) and m2["returns"] == 2
    # equity through zero ends the returns there
    m3 = trading(np.column_stack([t, [100.0, 50.0, -5.0, 20.0, 30.0]]), None, capital=100.0,
                 period_s=None)
    assert m3["ruined_ns"] == 2 * s and m3["returns"] == 3 and m3["sharpe"] is None
    assert "equity reached" in m3["annualisation"]
    assert m3["max_drawdown"] == pytest.approx(1.05)


def test_trading_metrics_equal_empyrical_on_daily_and_intraday_curves():
    empyrical = pytest.importorskip("empyrical")
    import pandas as pd

    rng = np.random.default_rng(4)
    day = 86_400 * 1_000_000_000
    for n, step in ((500, day), (5000, 60_000_000_000 * 17)):  # 500 days; 5000 x 17 min
        r = rng.normal(0.0004, 0.012, n)
        eq = 1000.0 * np.cumprod(1 + r)
        t = 1_700_000_000_000_000_000 + np.arange(1, n + 1, dtype=np.int64) * step
        t0 = t[0] - step
        m = trading({"time_ns": np.r_[t0, t], "equity": np.r_[1000.0, eq]}, None,
                    period_s=None)
        # one return per row after the starting row (the capital repeated: return 0 first)
        rets = pd.Series(np.r_[0.0, r])
        ppy = m["returns"] / (m["span_days"] * 86400 / (365.25 * 86400))
        assert m["returns"] == n + 1
        assert m["sharpe"] == pytest.approx(
            empyrical.sharpe_ratio(rets, annualization=ppy), rel=1e-9)
        assert m["sortino"] == pytest.approx(
            empyrical.sortino_ratio(rets, annualization=ppy), rel=1e-9)
        assert m["max_drawdown"] == pytest.approx(-empyrical.max_drawdown(rets), rel=1e-9)
        assert m["annualised_return"] == pytest.approx(
            empyrical.annual_return(rets, annualization=ppy), rel=1e-9)
        assert m["total_return"] == pytest.approx(empyrical.cum_returns_final(rets), rel=1e-9)


def test_position_sizing_is_stated_and_followed():
    ticks = synthetic_market(3000, seed=5)
    dec = np.where(np.arange(3000) % 400 < 200, 1, -1)
    mid0 = 0.5 * (ticks["bid"][0] + ticks["ask"][0])
    q = backtest(ticks, dec, BacktestConfig(size=2.0, max_position=2.0, hold_ticks=0))
    assert q.capital == pytest.approx(2.0 * mid0)
    assert set(np.round(np.abs(q.position[q.position != 0]), 9)) == {2.0}
    assert "quantity sizing: 2 units" in q.performance()["sizing"]
    notional = backtest(ticks, dec, BacktestConfig(size=5000.0, max_position=5000.0,
                                                   hold_ticks=0, sizing="notional"))
    first = notional.fills[0]
    assert first["qty"] * first["price"] == pytest.approx(5000.0, rel=2e-3)  # at the mid
    assert notional.capital == 5000.0
    eqs = backtest(ticks, dec, BacktestConfig(size=0.5, max_position=0.5, hold_ticks=0,
                                              sizing="equity", capital=10_000.0))
    f = eqs.fills
    assert f[0]["qty"] * f[0]["price"] == pytest.approx(5000.0, rel=2e-3)
    # later positions follow the equity at the time they are taken, then are held
    flips = np.flatnonzero(np.diff(np.sign(eqs.position)) != 0) + 1
    for i in flips[2:5]:
        assert abs(eqs.position[i]) * ticks["ask"][i] == pytest.approx(
            0.5 * eqs.equity[i - 1], rel=0.02)
    with pytest.raises(FinanceError, match="capital"):
        BacktestConfig(sizing="equity", size=0.5, max_position=0.5)
    with pytest.raises(FinanceError, match="sizing="):
        BacktestConfig(sizing="kelly")


def test_outputs_keep_integer_nanoseconds(tmp_path):
    from deepseek.finance.backtest_run import write_run

    ticks = synthetic_market(2000, seed=6)
    ticks["time_ns"] += 1_723_075_200_123_456_789 - ticks["time_ns"][0]  # needs all 64 bits
    res = backtest(ticks, np.where(np.arange(2000) % 100 < 50, 1, -1), BacktestConfig())
    eq_csv, fills_csv = write_run(tmp_path, res, "run")
    lines = Path(eq_csv).read_text().splitlines()
    assert [int(r.split(",")[0]) for r in lines[2:]] == res.time_ns.tolist()
    fl = Path(fills_csv).read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in fl] == res.fills["time_ns"].tolist()
    m = trading(*load_trading_files(eq_csv, fills_csv))
    assert m["start_ns"] == int(ticks["time_ns"][0]) and m["end_ns"] == int(ticks["time_ns"][-1])
    assert m["pnl"] == pytest.approx(res.performance()["pnl"])


def test_round_trips_and_hit_rate_from_fills():
    # buy 1 @10, sell 2 @12 (closes +2, opens a short), buy 1 @13 (closes -1); fees 0.1 each
    fills = np.array([[0, 1, 10, 1, 0.1], [1, -1, 12, 2, 0.2], [2, 1, 13, 1, 0.1]])
    trips = round_trips(fills)
    assert trips == pytest.approx([2 - 0.1 - 0.1, -1 - 0.1 - 0.1])
    m = trading(np.array([[0, 100.0], [2, 100.6]]), fills, capital=100.0, period_s=None)
    assert m["hit_rate"] == 0.5 and m["round_trips"] == 2
    assert m["traded_notional"] == pytest.approx(10 + 24 + 13)
    assert m["turnover"] == pytest.approx(0.47) and m["fees_paid"] == pytest.approx(0.4)


def test_trading_metric_refuses_bad_curves():
    with pytest.raises(FinanceError, match="at least 2 rows"):
        trading(np.array([[0, 1.0]]))
    with pytest.raises(FinanceError, match="row 1: time goes backwards"):
        trading(np.array([[5, 1.0], [4, 1.0]]))
    with pytest.raises(FinanceError, match="not finite"):
        trading(np.array([[0, 1.0], [1, np.nan]]))


def test_auc_matches_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 500)
    scores = rng.normal(size=(500, 3)) + np.eye(3)[y] * 0.7
    scores[:50, 0] = 0.25  # ties
    for c in range(3):
        assert roc_auc(scores[:, c], y == c) == pytest.approx(
            sk.roc_auc_score(y == c, scores[:, c]), abs=1e-12)
    from deepseek.evaluation import evaluate

    m = evaluate("tick-classification", scores, y)
    assert m["auc_ovr"] == pytest.approx(np.mean([m["auc_down"], m["auc_flat"], m["auc_up"]]))
    assert math.isnan(roc_auc(np.ones(3), np.array([True, True, True])))


# -- data -----------------------------------------------------------------------------------
@pytest.mark.parametrize("rows, pattern", [
    ([(0, 100, 101, 1, 1), (5, 100, 101, 1, 1), (3, 100, 101, 1, 1)],
     r"row 2: time goes backwards"),
    ([(0, 100, 101, 1, 1), (1, 0, 101, 1, 1)], r"row 1 .*finite and > 0"),
    ([(0, 100, 101, 1, 1), (1, 101, 101, 1, 1)], r"row 1 .*crossed or locked"),
    ([(0, 100, 101, 1, -1)], r"row 0 .*sizes"),
    ([(0, 100, 101, 1, 1, math.nan, 1.0, 1)], r"row 0 .*a trade needs"),
])
def test_bad_ticks_are_refused_with_the_row(rows, pattern):
    with pytest.raises(FinanceError, match=pattern):
        backtest(book(rows), np.zeros(len(rows)), BacktestConfig())


def test_empty_ticks_and_mismatched_decisions_are_refused():
    with pytest.raises(FinanceError, match="no ticks"):
        check_ticks(book([]))
    with pytest.raises(FinanceError, match="2 decisions for 1 ticks"):
        backtest(book([(0, 100, 101, 1, 1)]), [0, 1])
    with pytest.raises(FinanceError, match="size 2.0 exceeds max_position"):
        BacktestConfig(size=2.0)
    with pytest.raises(FinanceError, match="order_latency_us"):
        BacktestConfig(order_latency_us=-1)
    with pytest.raises(FinanceError, match="latency_samples_us"):
        BacktestConfig(latency_samples_us=[])


def test_duplicate_times_are_kept_in_order_and_gaps_reported():
    ticks = book([(0, 100, 101, 1, 1), (0, 101, 102, 1, 1), (90_000_000_000, 101, 102, 1, 1)])
    r = backtest(ticks, [1, 0, 0], BacktestConfig(**FREE))
    assert r.fills[0]["price"] == 102.0  # ties: both ticks stamped 0 happen before the order
    assert time_gaps(ticks, 60.0) == [(2, 90.0)]


def test_invalid_decisions_are_counted_and_flat():
    ticks = book([(0, 100, 101, 1, 1), (1, 100, 101, 1, 1)])
    r = backtest(ticks, [-2, 0], BacktestConfig(**FREE))
    assert r.counters["invalid_decisions"] == 1 and len(r.fills) == 0


def test_synthetic_market_regimes_and_signal():
    ticks, regime = synthetic_market(20_000, seed=3, return_regimes=True)
    again = synthetic_market(20_000, seed=3)
    assert ticks.tobytes() == again.tobytes()
    assert 0.05 < regime.mean() < 0.95
    check_ticks(ticks)
    spread = ticks["ask"] - ticks["bid"]
    assert spread[regime == 1].mean() > spread[regime == 0].mean()
    mid = (ticks["bid"] + ticks["ask"]) / 2
    vol = np.abs(np.diff(mid))
    assert vol[regime[1:] == 1].mean() > 2 * vol[regime[1:] == 0].mean()
    # the queue imbalance predicts the next move
    imb = imbalance_decisions(ticks, 0.3)[:-10]
    move = np.sign(mid[10:] - mid[:-10])
    called = imb != 0
    assert np.mean(imb[called] == move[called]) > 0.6
    assert len(read_synthetic("synthetic:?kind=market&n=100&seed=1")) == 100
    with pytest.raises(FinanceError, match="kind=ticks"):
        read_synthetic("synthetic:?kind=bogus")
    with pytest.raises(FinanceError, match="unknown option"):
        read_synthetic("synthetic:?kind=ticks&kappa=2")


# -- bars -----------------------------------------------------------------------------------
def test_bars_trade_at_the_next_open(tmp_path):
    p = tmp_path / "bars.csv"
    p.write_text("Date,Open,High,Low,Close,Volume\n"
                 "2024-01-01,10,11,9,10,0\n2024-01-02,11,12,10,12,0\n"
                 "2024-01-03,13,14,12,13,0\n2024-01-04,12,13,11,11,0\n")
    bars = read_bars(p)
    assert bars["time_ns"][1] - bars["time_ns"][0] == 86_400 * 10**9
    # saved by a spreadsheet on Windows (a byte-order mark, CRLF): the same bars
    excel = tmp_path / "excel.csv"
    excel.write_bytes(b"\xef\xbb\xbf" + p.read_bytes().replace(b"\n", b"\r\n"))
    assert np.array_equal(read_bars(excel), bars)
    r = bar_backtest(bars, np.array([1, 1, -1, 0]), fee_bps=10.0)
    # long at the open of bar 1 (11), reversed at the open of bar 3 (12) to short
    assert list(r.fills["price"]) == [11.0, 12.0] and list(r.fills["qty"]) == [1.0, 2.0]
    assert list(r.position) == [0, 1, 1, -1]
    fees = 11 * 1e-3 + 24 * 1e-3
    assert r.equity[-1] - r.capital == pytest.approx((12 - 11) + (12 - 11) - fees)
    sig = rule_signals(bars, "sma:1,2")
    assert list(sig) == [0, 1, 1, -1]
    assert list(rule_signals(bars, "momentum:1", long_only=True)) == [0, 1, 1, 0]


@pytest.mark.parametrize("text, pattern", [
    ("Date,Open,High,Low,Close\n2024-01-02,1,2,1,1\n2024-01-02,1,2,1,1\n",
     r"line 3: a duplicate time"),
    ("Date,Open,High,Low,Close\n2024-01-02,1,2,1,1\n2024-01-01,1,2,1,1\n",
     r"line 3: time goes backwards"),
    ("Date,Open,High,Low,Close\n2024-01-02,1,2,1.5,1\n", r"line 2: inconsistent bar"),
    ("Date,Open,High,Low,Close\n2024-01-02,0,2,0,1\n", r"line 2: prices must be"),
    ("Date,Open,High,Low,Close\n2024-13-02,1,2,1,1\n", r"line 2: month must be"),
    ("Date,Open,High,Close\n", r"lacks \['low'\]"),
    ("Date,Open,High,Low,Close\n", r"no bars"),
])
def test_bad_bars_name_the_line(tmp_path, text, pattern):
    p = tmp_path / "b.csv"
    p.write_text(text)
    with pytest.raises(TickFileError, match=pattern):
        read_bars(p)
    with pytest.raises(TickFileError, match="rule 'sma:5,2'"):
        rule_signals(np.zeros(3, dtype=[("close", "f8")]), "sma:5,2")


@pytest.mark.skipif(BARS is None, reason="../shared/data/bars is not here")
def test_bar_layouts_of_the_shared_data():
    for name, n in (("2006-min-005.txt", 2142), ("fxcm-gbpusd-m1-bid-2012.csv", 30117)):
        bars = read_bars(BARS / name)
        assert len(bars) == n and np.all(np.diff(bars["time_ns"]) > 0)


# -- CLI ------------------------------------------------------------------------------------
def sine_bars(path, n=60):
    """``n`` one-minute OHLCV bars of a sine wave, written to ``path``."""
    lines = ["timestamp,open,high,low,close,volume"]
    for i in range(n):
        c = 100 + 5 * math.sin(i / 6)
        lines.append(f"2024-01-01 00:{i:02d}:00+00:00,{c},{c + 1},{c - 1},{c},1")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_backtest_cli_on_ticks_and_bars(invoke, tmp_path):
    out = tmp_path / "run"
    res = invoke("finance", "backtest", "synthetic:?kind=market&n=3000&seed=2", "--latency-us",
                 "800", "--fee-bps", "0.5", "--out", str(out), "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert set(summary["results"]) == {"tick-mlp|0 µs", "tick-mlp|800 µs",
                                       "imbalance rule|0 µs", "imbalance rule|800 µs"}
    assert (out / "equity.png").stat().st_size > 10_000
    res = invoke("evaluate", "trading", "--pred", str(out / "tick-mlp-equity.csv"), "--ref",
                 str(out / "tick-mlp-fills.csv"), "--json")
    assert res.exit_code == 0, res.output
    again = json.loads(res.output)["result"]
    assert again["fills"] == summary["results"]["tick-mlp|800 µs"]["fills"]
    for key in ("fees_paid", "pnl", "sharpe_per_period", "max_drawdown"):
        assert again[key] == pytest.approx(summary["results"]["tick-mlp|800 µs"][key],
                                           rel=1e-6, abs=1e-9)

    res = invoke("finance", "backtest", "synthetic:?kind=market&n=6000&seed=2", "--walk-forward",
                 "1", "--epochs", "1", "--latency-us", "800", "--out", str(tmp_path / "wf"),
                 "--json")
    assert res.exit_code == 0, res.output
    wf = json.loads(res.output)["results"]
    assert set(wf) == set(summary["results"])
    assert wf["tick-mlp|800 µs"]["counters"]["orders_sent"] >= wf["tick-mlp|800 µs"]["fills"]
    assert (tmp_path / "wf" / "imbalance-rule-fills.csv").is_file()

    bars = sine_bars(tmp_path / "bars.csv")
    res = invoke("finance", "backtest", str(bars), "--rule", "sma:3,8", "--fee-bps", "1")
    assert res.exit_code == 0, res.output
    assert "sma:3,8" in res.output and "buy-and-hold" in res.output and "verdict:" in res.output
    res = invoke("finance", "backtest", str(bars), "--symbol", "X")
    assert res.exit_code != 0 and "apply to tick captures" in res.output


def test_tick_strategy_pipeline(tmp_path):
    from deepseek.plugins import pipelines

    res = pipelines().get("finance.tick-strategy")(input=None, out_dir=tmp_path, quiet=True,
                                                   n_ticks=9000, folds=2, epochs=1)
    rows = res.tables[0].rows
    assert [r[:2] for r in rows] == [["tick-mlp", "0 µs"], ["tick-mlp", "1000 µs"],
                                     ["imbalance rule", "0 µs"],
                                     ["imbalance rule", "1000 µs"]]
    assert {p.name for p in res.figures} == {"equity.png", "latency.png"}
    assert res.metrics["model_pnl"] == res.quality.value
    verdicts = ("makes no trade", "edge survives", "edge does NOT survive",
                "loses even at zero latency")
    assert sum(any(v in n for v in verdicts) for n in res.notes) == 1


def test_bars_that_are_not_utf8_name_the_file(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes(b"Date,Open,High,Low,Close\n2024-01-02,1,2,1,1\n\xe9\xff,1,2,1,1\n")
    with pytest.raises(TickFileError, match=r"latin.csv, after line \d+: not UTF-8 text"):
        read_bars(p)
    from deepseek.finance.bars import is_bars

    assert is_bars(p) and not is_bars(tmp_path / "missing.csv")


def test_bars_reader_is_chosen_by_kind(tmp_path):
    import deepseek

    p = tmp_path / "daily.csv"
    p.write_text("Date,Open,High,Low,Close\n2024-01-02,1,2,1,1.5\n2024-01-03,1.5,2,1,1.2\n")
    bars = deepseek.open(str(p), kind="bars")
    assert bars.dtype.names[:5] == ("time_ns", "open", "high", "low", "close")
    assert list(bars["close"]) == [1.5, 1.2]


def _bar_file(path, stamps):
    rows = ["Date,Open,High,Low,Close,Volume"]
    rows += [f"{s},100,101,99,100.5,10" for s in stamps]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_bar_gaps_against_the_exchange_calendar(tmp_path):
    import exchange_calendars as xcals

    from deepseek.finance.bars import calendar_gaps, gap_warning

    with warnings.catch_warnings():  # exchange_calendars' own pandas deprecation notices
        warnings.simplefilter("ignore")
        sessions = [str(d.date()) for d in xcals.get_calendar(
            "XNYS", start="2018-12-01", end="2020-01-31").sessions_in_range("2019-01-02",
                                                                            "2019-12-31")]
    rng = np.random.default_rng(0)
    gone = set(rng.choice(sessions[1:-1], 60, replace=False).tolist())
    kept = [s for s in sessions if s not in gone]
    bars = read_bars(_bar_file(tmp_path / "d.csv", kept))
    g = calendar_gaps(bars, "XNYS")
    assert g["missing"] == 60 and g["outside"] == 0
    assert g["first_missing"] == sorted(gone)[:5]
    assert "60 session(s) of XNYS have no bar" in gap_warning("d.csv", g)
    # the same file against plain weekdays: the 8 NYSE holidays after 2 January 2019 count
    w = calendar_gaps(bars, None)
    assert w["calendar"] == "weekdays" and w["missing"] == 60 + 8
    assert "give --calendar" in gap_warning("d.csv", w)
    # a bar on a Saturday is outside the calendar
    g2 = calendar_gaps(read_bars(_bar_file(tmp_path / "s.csv", sorted(kept + ["2019-06-08"]))),
                       "XNYS")
    assert g2["outside"] == 1 and g2["first_outside"] == ["2019-06-08"]
    full = calendar_gaps(read_bars(_bar_file(tmp_path / "f.csv", sessions)), "XNYS")
    assert full["missing"] == full["outside"] == 0 and gap_warning("f.csv", full) is None
    with pytest.raises(TickFileError, match="calendar 'NOPE'"):
        calendar_gaps(bars, "NOPE")


def test_intraday_bar_gaps_read_local_or_utc_times(tmp_path):
    from deepseek.finance.bars import calendar_gaps

    # 24/7 crypto minutes in UTC, 7 missing
    t = np.datetime64("2022-01-01T00:00") + np.arange(600).astype("timedelta64[m]")
    keep = np.ones(600, bool)
    keep[[5, 6, 100, 200, 300, 301, 599 - 1]] = False
    stamps = [str(x).replace("T", " ") for x in t[keep]]
    (tmp_path / "m.csv").write_text("timestamp,open,high,low,close\n" + "".join(
        f"{s},1,1,1,1\n" for s in stamps))
    g = calendar_gaps(read_bars(tmp_path / "m.csv"), "24/7")
    assert g["missing"] == 7 and g["outside"] == 0 and "start of the bar" in g["bar_time"]
    # New York 5-minute bars written in local time and labelled by their end
    day = np.datetime64("2019-07-01T09:35") + np.arange(78).astype("timedelta64[m]") * 5
    stamps = [str(x).split("T") for x in day]
    (tmp_path / "ny.csv").write_text("Date,Time,Open,High,Low,Close\n" + "".join(
        f"{d},{h},1,1,1,1\n" for d, h in stamps))
    g = calendar_gaps(read_bars(tmp_path / "ny.csv"), "XNYS")
    assert g["missing"] == 0 and g["outside"] == 0
    assert g["bar_time"].startswith("end of the bar, read as America/New_York")


# -- L2 replay ------------------------------------------------------------------------------
def _l2_case():
    """A buy limit at 100 rests; the bid moves up (the order is behind the touch) while the
    level at 100 shrinks to 2 by cancellations; the bid comes back with 4 at 100, and a
    sell of 3 prints at 100."""
    t = np.zeros(4, TICK_DTYPE)
    t["time_ns"] = [1000, 2000, 3000, 4000]
    t["bid"] = [100.0, 100.5, 100.0, 100.0]
    t["ask"] = 101.0
    t["bid_size"] = [10.0, 5.0, 4.0, 4.0]
    t["ask_size"] = 10.0
    t["bid_depth"], t["ask_depth"] = t["bid_size"], t["ask_size"]
    t["last_px"] = [np.nan, np.nan, np.nan, 100.0]
    t["last_size"] = [0.0, 0.0, 0.0, 3.0]
    t["side"] = [0, 0, 0, -1]
    ev = [(0, 0, (0.0, 0.0)), (0, 1, (100.0, 10.0)), (0, 1, (99.0, 5.0)),
          (0, -1, (101.0, 10.0)), (1, 1, (100.0, 2.0)), (1, 1, (100.5, 5.0)),
          (2, 1, (100.5, 0.0)), (2, 1, (100.0, 4.0))]
    events = (np.array([e[0] for e in ev], np.int64), np.array([e[1] for e in ev], np.int8),
              np.array([e[2] for e in ev], np.float64))
    return t, events


def test_l2_replay_knows_the_queue_behind_the_touch():
    ticks, events = _l2_case()
    cfg = BacktestConfig(order_type="limit", hold_ticks=100, taker_fee_bps=0.0)
    dec = np.ones(4, dtype=np.int64)
    top = backtest(ticks, dec, cfg)
    l2 = backtest(ticks, dec, cfg, l2=events)
    # at the touch only, 10 were ahead (shrunk to 4 when the bid came back): 3 sold, no fill
    assert len(top.fills) == 0
    # with the book, the level at 100 fell to 2 while behind the touch: 3 sold, 1 for us
    (fill,) = l2.fills
    assert fill["time_ns"] == 4000 and fill["price"] == 100.0 and fill["qty"] == 1.0
    assert fill["maker"] and l2.position[-1] == 1.0
    with pytest.raises(FinanceError, match="l2: give"):
        backtest(ticks, dec, cfg, l2=(events[0][::-1], events[1], events[2]))


def test_l2_events_rebuild_the_capture_book():
    from deepseek.finance.ticks import CaptureTicks

    folder = shared_data("market")
    if folder is None:
        pytest.skip("../shared/data/market is not in this checkout")
    ct = CaptureTicks(folder / "binance-spot-ethusdt_20240808.gz", l2=True)
    ticks = ct.to_array()
    tick_idx, side, lv = ct.l2_events()
    assert np.all(np.diff(tick_idx) >= 0) and tick_idx[-1] <= len(ticks)
    bids, asks = {}, {}
    for sd, (p, q) in zip(side, lv):
        if sd == 0:
            bids, asks = {}, {}
            continue
        book = bids if sd > 0 else asks
        if q == 0:
            book.pop(p, None)
        else:
            book[p] = q
    assert bids == ct.book.bids and asks == ct.book.asks
    dec = np.where(np.arange(len(ticks)) % 200 < 100, 1, -1)
    cfg = BacktestConfig(order_type="limit", order_latency_us=500, taker_fee_bps=0.5,
                         maker_fee_bps=-0.1)
    res = backtest(ticks, dec, cfg, l2=(tick_idx, side, lv))
    maker = res.fills[res.fills["maker"]]
    assert len(maker) > 0 and res.counters["limit_fills"] == len(maker)


def test_backtest_cli_l2_needs_a_capture(invoke):
    res = invoke("finance", "backtest", "synthetic:?kind=market&n=2000&seed=2", "--l2")
    assert res.exit_code != 0 and "--l2 replays a capture's rebuilt book" in res.output
    folder = shared_data("market")
    if folder is None:
        pytest.skip("../shared/data/market is not in this checkout")
    res = invoke("finance", "backtest", str(folder / "binance-spot-ethusdt_20240808.gz"),
                 "--l2", "--order-type", "limit", "--fee-bps", "0.5", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["results"]["tick-mlp|500 µs"]["fills"] >= 0


def test_backtest_checks_its_output_folder_before_the_backtest(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import deepseek.finance.backtest_run as backtest_run
    from deepseek.cli import build_cli

    def never(*args, **kwargs):
        raise AssertionError("backtested before the output was checked")

    monkeypatch.setattr(backtest_run, "run_backtest", never)
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the output folder would go")
    res = CliRunner().invoke(build_cli(), ["finance", "backtest", "synthetic:?n=500",
                                           "--out", str(blocker / "day1")])
    assert res.exit_code == 2, res.output
    assert res.output.startswith(f"error: {blocker / 'day1'}: Not a directory")
