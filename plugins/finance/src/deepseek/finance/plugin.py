"""Hook implementations of the finance plugin (found through the ``deepseek`` entry point).

Only registration happens here; what is registered lives in the plugin's modules and loads
when it is first used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepseek import hookimpl
from deepseek.lazy import lazy_callable

WEIGHTS = Path(__file__).resolve().parent / "weights"
M = "deepseek.finance."


@hookimpl
def register_readers(register: Any) -> None:
    """Register the tick readers: tick CSVs, Binance captures, bars and ``synthetic:`` ticks."""
    register("ticks-csv", lazy_callable(M + "ticks:read_csv"), kind="ticks",
             suffixes=[".csv", ".csv.gz", ".csv.zst"],
             accepts=lazy_callable(M + "ticks:is_tick_csv"),
             description="tick CSV (exch_ns, recv_ns, bid, ask, bid_size, ask_size[, last_px, "
                         "last_size, side]), plain or compressed")
    register("binance", lazy_callable(M + "ticks:read_capture"), kind="ticks",
             schemes=["binance:"], suffixes=[".gz", ".zst", ".jsonl", ".log"],
             accepts=lazy_callable(M + "ticks:is_capture"),
             description="Binance WebSocket capture: '<receive_ns> <json>' lines (bookTicker, "
                         "trades, depth), plain, .gz or .zst")
    # no suffixes: the probe (a header naming open, high, low, close) finds bar files,
    # which the tick CSV's probe declines
    register("bars-csv", lazy_callable(M + "bars:read_bars"), kind="bars",
             accepts=lazy_callable(M + "bars:is_bars"),
             description="OHLCV bars: Date[,Time] or timestamp, Open, High, Low, Close[, Volume] "
                         "(Yahoo/backtrader layout), plain or compressed")
    register("synthetic-ticks", lazy_callable(M + "synthetic:read_synthetic"), kind="ticks",
             schemes=["synthetic:"],
             description="synthetic order-book ticks whose order flow predicts the next moves "
                         "(synthetic:?n=20000&seed=3)")


@hookimpl
def register_models(register: Any) -> None:
    """Register ``tick-mlp`` and ``tick-gru`` with their packaged weights, and the credit MLP."""
    register("tick-mlp", lazy_callable(M + "models:TickMLP"),
             config={"n_features": 17, "hidden": [64, 64], "n_classes": 3, "activation": "relu"},
             weights=str(WEIGHTS / "tick-mlp.safetensors"),
             description="MLP classifier of the mid-price move (down/flat/up) from the 17 tick "
                         "features",
             inputs=[{"name": "features", "dtype": "float32", "shape": [-1, 17]}])
    register("tick-gru", lazy_callable(M + "models:TickGRU"),
             config={"n_features": 17, "hidden": 32, "n_classes": 3},
             weights=str(WEIGHTS / "tick-gru.safetensors"),
             description="GRU classifier of the mid-price move over the tick stream (hidden "
                         "state per tick)",
             inputs=[{"name": "features", "dtype": "float32", "shape": [-1, -1, 17]}],
             # served sequences of different lengths are padded along time and cut back
             batching={"policy": "pad", "pad_axes": [1], "pad_value": 0.0})


    register("credit-mlp", lazy_callable(M + "risk:build_mlp"),
             config={"n_features": 32, "width": 64, "depth": 2, "dropout": 0.1},
             description="credit-risk MLP: one logit of default from encoded table features "
                         "(`deepseek finance risk train` writes trained ones)",
             # the width of the registry's config; a trained model's file states its own
             inputs=[{"name": "features", "dtype": "float32", "shape": [-1, 32]}])


@hookimpl
def register_metrics(register: Any) -> None:
    """Register the tick-classification and trading metrics."""
    register("tick-classification", lazy_callable(M + "metrics:classification"),
             files="--pred (N, 3) class scores or (N,) classes, --ref (N,) labels 0/1/2 "
                   "(.npy, .csv, .json)",
             description="accuracy and macro F1 of down/flat/up predictions, with the "
                         "majority-class baseline (and one-vs-rest AUC from class scores)")
    register("trading", lazy_callable(M + "metrics:trading"),
             load_files=lazy_callable(M + "metrics:load_trading_files"),
             files="--pred equity.csv (time_ns, equity[, position]), --ref fills.csv (time_ns, "
                   "side, price, qty, fee), as `deepseek finance backtest --out` writes them",
             description="equity-based return, Sharpe and Sortino per period (annualised "
                         "where the span allows), max drawdown of peak equity and its "
                         "duration, hit rate, turnover and fees of a backtest")


@hookimpl
def register_pipelines(register: Any) -> None:
    """Register the finance pipelines (tick latency, tick strategy, credit risk)."""
    register("finance.tick-latency", lazy_callable(M + "pipelines:tick_latency"),
             input_kind="ticks",
             description="synthetic ticks -> features -> tick-mlp: held-out quality, fast-path "
                         "parity and per-tick latency against PyTorch eager")
    register("finance.tick-strategy", lazy_callable(M + "pipelines:tick_strategy"),
             input_kind="ticks",
             description="synthetic market -> walk-forward training -> fast path -> backtest "
                         "at zero and at 1 ms latency with fees, beside the imbalance rule")


    register("finance.credit-risk", lazy_callable(M + "pipelines:credit_risk"),
             description="credit risk on a tabular CSV (default: a built-in synthetic table): "
                         "the MLP with its defaults and tuned, against logistic regression "
                         "and gradient boosting, scored once on the test part")
    register("finance.credit-risk-model", lazy_callable(M + "pipelines:credit_risk_model"),
             demo=False, description="the credit MLP with given parameters: validation AUC "
                                     "(the objective `deepseek tune` optimises)")


@hookimpl
def register_steps(register: Any) -> None:
    """Register ``finance.backtest``, the per-file step of ``deepseek batch finance backtest``."""
    register("finance.backtest", lazy_callable(M + "backtest_run:backtest_step"),
             command="finance backtest", summary=lazy_callable(M + "backtest_run:backtest_summary"),
             leave_out=lazy_callable(M + "backtest_run:leave_out"),
             description="one capture, tick CSV or bar file -> the backtest beside its baseline "
                         "(latency, fees), as `deepseek finance backtest --json`")


@hookimpl
def register_commands(cli: Any) -> None:
    """Add the ``deepseek finance`` command group."""
    from deepseek.finance.cli import finance

    cli.add_command(finance)
