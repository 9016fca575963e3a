"""Hook implementations of the finance plugin (found through the ``deepseek`` entry point)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepseek import hookimpl

WEIGHTS = Path(__file__).resolve().parent / "weights"


def read_ticks_csv(source: Any, **options: Any) -> Any:
    """Tick CSV (exch_ns, recv_ns, bid, ask, bid_size, ask_size[, last_px, last_size, side])."""
    from deepseek.finance.ticks import read_csv

    return read_csv(source)


def read_binance_capture(source: Any, **options: Any) -> Any:
    """Binance WebSocket recording: '<receive_ns> <json>' lines (bookTicker, trades, depth)."""
    from deepseek.finance.ticks import read_binance

    return read_binance(source, **options)


def read_synthetic(source: Any = None, **options: Any) -> Any:
    """Synthetic order-book ticks with short-term signal (n=, seed=)."""
    from deepseek.finance.ticks import synthetic_ticks

    return synthetic_ticks(**options)


def _tick_mlp(**config: Any) -> Any:
    """MLP classifier of the mid-price move (down/flat/up) from the 16 tick features."""
    from deepseek.finance.models import TickMLP

    return TickMLP(**config)


def _tick_gru(**config: Any) -> Any:
    """GRU classifier of the mid-price move over the tick stream (hidden state per tick)."""
    from deepseek.finance.models import TickGRU

    return TickGRU(**config)


def _weights(name: str) -> str | None:
    p = WEIGHTS / f"{name}.safetensors"
    return str(p) if p.is_file() else None


def _classification_metric(predictions: Any, references: Any, **options: Any) -> dict:
    """Accuracy, macro F1 and majority baseline of class logits against labels 0/1/2."""
    import numpy as np

    from deepseek.finance.training import evaluate

    return evaluate(np.asarray(predictions), np.asarray(references))


@hookimpl
def register_readers(register: Any) -> None:
    register("ticks-csv", read_ticks_csv)
    register("binance", read_binance_capture)
    register("synthetic-ticks", read_synthetic)


@hookimpl
def register_models(register: Any) -> None:
    register("tick-mlp", _tick_mlp,
             config={"n_features": 16, "hidden": [64, 64], "n_classes": 3, "activation": "relu"},
             weights=_weights("tick-mlp"),
             inputs=[{"name": "features", "dtype": "float32", "shape": [-1, 16]}])
    register("tick-gru", _tick_gru, config={"n_features": 16, "hidden": 32, "n_classes": 3},
             weights=_weights("tick-gru"),
             inputs=[{"name": "features", "dtype": "float32", "shape": [-1, -1, 16]}],
             # served sequences of different lengths are padded along time and cut back
             batching={"policy": "pad", "pad_axes": [1], "pad_value": 0.0})


@hookimpl
def register_metrics(register: Any) -> None:
    register("tick-classification", _classification_metric)


@hookimpl
def register_pipelines(register: Any) -> None:
    from deepseek.finance.pipelines import tick_latency

    register("finance.tick-latency", tick_latency,
             description="synthetic ticks -> features -> tick-mlp: held-out quality, fast-path "
                         "parity and per-tick latency against PyTorch eager")


@hookimpl
def register_commands(cli: Any) -> None:
    from deepseek.finance.cli import finance

    cli.add_command(finance)
