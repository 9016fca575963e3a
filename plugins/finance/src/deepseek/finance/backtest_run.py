"""``deepseek finance backtest`` as a function: one data file in, the summary out.

:func:`run_backtest` is the command's whole computation (the command prints what it
returns); :func:`backtest_step` is the per-item step ``deepseek batch finance backtest`` runs,
which compiles the model's fast path once per worker and returns, per capture or bar file,
exactly what ``deepseek finance backtest DATA --json`` prints with the same options.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run_backtest(data: str, *, symbol: str | None = None, clock: str | None = None,
                 order: str | None = None, levels: int | None = None,
                 model: str = "tick-mlp", folds: int = 0, epochs: int = 3,
                 baseline_theta: float = 0.3, rule: str = "sma:10,30",
                 calendar: str | None = None, order_type: str = "market", l2: bool = False,
                 size: float = 1.0, sizing: str = "quantity", capital: float | None = None,
                 hold_ticks: int = 10, latency_us: float = 500.0,
                 feed_latency_us: float = 0.0, latency_file: str | Path | None = None,
                 fee_bps: float = 4.0, maker_fee_bps: float = 0.0, slippage_bps: float = 0.0,
                 max_loss: float | None = None, max_gap_s: float = 60.0,
                 period_s: float | None = None, out: str | Path | None = None,
                 decider: Any = None) -> dict[str, Any]:
    """Backtest on ``data`` (ticks or bars) with ``deepseek finance backtest``'s options and
    defaults; returns the summary its ``--json`` prints (``results`` per strategy and
    latency, ``warnings``, the ``files`` written under ``out``). ``decider``: ``model``'s
    fast path already compiled (a batch worker compiles it once)."""
    latency_file = Path(latency_file) if latency_file is not None else None
    out = Path(out) if out is not None else None
    import numpy as np

    from deepseek.finance.backtest import BacktestConfig, backtest, check_ticks, time_gaps
    from deepseek.finance.bars import (
        bar_backtest,
        calendar_gaps,
        gap_warning,
        is_bars,
        read_bars,
        rule_signals,
    )
    from deepseek.finance.errors import FinanceError
    from deepseek.finance.training import load_ticks

    runs: dict[str, Any] = {}
    named: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    if is_bars(data):
        if any(v is not None for v in (symbol, clock, order, levels)):
            raise FinanceError(f"{data}: --symbol/--clock/--order/--levels apply to tick "
                               "captures, not to bars")
        bars = read_bars(data)
        gaps = calendar_gaps(bars, calendar)
        line = gap_warning(data, gaps)
        if line:
            warnings.append(line)
        for r in dict.fromkeys([rule, "buy-and-hold"]):
            res = bar_backtest(bars, rule_signals(bars, r), size=size, fee_bps=fee_bps,
                               slippage_bps=slippage_bps, capital=capital, sizing=sizing)
            runs[r] = res
            named[f"{r}|next open"] = res.performance(period_s)
        kind, n = "bars", len(bars)
    else:
        if calendar is not None:
            raise FinanceError(f"{data}: --calendar checks bar files; tick captures carry "
                               "their own clock")
        gaps = None
        events = None
        if l2:
            from deepseek.finance.ticks import is_capture, read_binance_l2

            if folds or not is_capture(data.removeprefix("binance:")):
                raise FinanceError(f"{data}: --l2 replays a capture's rebuilt book (not a tick "
                                   "CSV or synthetic ticks) and backtests the given model "
                                   "(not with --walk-forward)")
            opts = {k: v for k, v in (("symbol", symbol), ("clock", clock), ("order", order),
                                      ("levels", levels)) if v is not None}
            ticks, events = read_binance_l2(data.removeprefix("binance:"), **opts)
        else:
            ticks = load_ticks(data, symbol=symbol, clock=clock, order=order,
                               levels=levels)
        check_ticks(ticks, data)
        same = np.flatnonzero(np.diff(ticks["time_ns"]) == 0)
        if len(same):
            warnings.append(f"{len(same)} tick(s) share their time with the tick before (the "
                            f"first at row {int(same[0]) + 1}): kept in file order, and an "
                            "order arriving at that time meets the book after all of them")
        gaps = time_gaps(ticks, max_gap_s)
        if gaps:
            row, longest = max(gaps, key=lambda g: g[1])
            warnings.append(f"{len(gaps)} silence(s) longer than {max_gap_s:g} s, the longest "
                            f"{longest:.1f} s before row {row}: orders meet the last book seen")
        samples = None
        if latency_file is not None:
            try:
                samples = [float(x) for x in latency_file.read_text().split()]
            except ValueError as exc:
                raise FinanceError(f"{latency_file}: not a list of latencies in µs ({exc})") \
                    from None
        cfg = BacktestConfig(order_type=order_type, size=size, max_position=size,
                             hold_ticks=hold_ticks, feed_latency_us=feed_latency_us,
                             order_latency_us=latency_us, latency_samples_us=samples,
                             taker_fee_bps=fee_bps, maker_fee_bps=maker_fee_bps,
                             max_loss=max_loss, sizing=sizing, capital=capital)
        p = period_s or "auto"
        lat = (f"p50 {np.median(samples):g} µs (recorded)" if samples else
               f"{feed_latency_us + latency_us:g} µs")
        if folds:
            from deepseek.finance.strategy import walk_forward

            wf = walk_forward(ticks, folds=folds, model=model, config=cfg, epochs=epochs)
            named.update(wf.table(model, lat, period_s=p))
            runs = {label: wf.joined(strat, "configured") for strat, label in
                    (("model", model), ("imbalance", "imbalance rule"))}
        else:
            from deepseek.finance.strategy import imbalance_decisions, model_decisions

            for label, dec in ((model, model_decisions(decider or model, ticks)),
                               ("imbalance rule", imbalance_decisions(ticks, baseline_theta))):
                for lab, c in (("0 µs", cfg.without_latency()), (lat, cfg)):
                    res = backtest(ticks, dec, c, source=data, l2=events)
                    named[f"{label}|{lab}"] = res.performance(p)
                runs[label] = res
        kind, n = "ticks", len(ticks)
    files: list[str] = []
    if out is not None:
        from deepseek.finance.figures import equity_drawdown

        for label, res in runs.items():
            files += write_run(out, res, label.replace(" ", "-").replace("/", "_")
                                .replace(":", "_").replace(",", "_"))
        cap = next(iter(runs.values())).capital
        files.append(str(equity_drawdown(out / "equity.png", {
            k: (r.time_ns, r.equity) for k, r in runs.items()}, cap)))
    summary = {"data": data, "kind": kind, "rows": n, "results": named,
               "warnings": warnings, "files": files}
    if gaps is not None:
        summary["calendar_gaps"] = gaps
    if out is not None:
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def backtest_step(*, model: str = "tick-mlp", **options: Any
                  ) -> Callable[[str], dict[str, Any]]:
    """``deepseek batch finance backtest``: ``step(data)`` backtests one capture, tick CSV or
    bar file with ``run_backtest``'s options (never ``out``: the batch writes the result);
    a tick model is compiled to its fast path once, on the first tick file."""
    import inspect

    from deepseek.finance.errors import FinanceError

    takes = inspect.signature(run_backtest).parameters
    bad = [k for k in options if k not in takes or k in ("data", "out", "decider")]
    if bad:
        raise FinanceError(f"backtest step: unknown option(s) {', '.join(bad)} (it takes: "
                           f"{', '.join(k for k in takes if k not in ('data', 'out', 'decider'))}"
                           ")")
    compiled: list[Any] = []

    def step(data: str) -> dict[str, Any]:
        from deepseek.finance.bars import is_bars

        decider = None
        if not options.get("folds") and not is_bars(data):
            if not compiled:
                from deepseek.finance.strategy import fast_path

                compiled.append(fast_path(model))
            decider = compiled[0]
        return run_backtest(data, model=model, decider=decider, **options)

    return step


#: what ``finance backtest --out`` writes beside each run (:func:`write_run`), by header
OWN_OUTPUTS = {"time_ns,equity,position": "an equity curve",
               "time_ns,side,price,qty,fee,maker,order": "a fills table"}
#: suffixes of files that hold no ticks or bars (documents, results, pictures)
NOT_DATA = frozenset({".md", ".rst", ".pdf", ".html", ".htm", ".json", ".yaml", ".yml",
                      ".log", ".png", ".jpg", ".jpeg", ".svg", ".py", ".ipynb"})


def leave_out(source: str) -> str | None:
    """Why a file a ``deepseek batch finance backtest`` glob matched is not market data, or
    None: a document, result or picture (by suffix, unless it holds a capture), an equity
    curve or fills table that ``finance backtest --out`` wrote (by its header, compressed or
    not), or a folder (the backtest reads one file; a glob such as ``data/**/*`` matches the
    files inside too).
    Anything else (captures have any name, tick and bar CSVs any header) is kept and read."""
    from deepseek.finance.capture import open_binary
    from deepseek.finance.errors import TickFileError

    p = Path(source)
    if p.is_dir():
        return "a folder (the backtest reads files)"
    if not p.is_file():
        return None
    if p.suffix.lower() in NOT_DATA:
        from deepseek.finance.capture import is_capture

        if not is_capture(p):  # a capture has any name, feed.log or ticks.json included
            return "not market data (a document, result or picture)"
    try:
        with open_binary(p) as raw:
            head = raw.read(256).split(b"\n", 1)[0].decode("utf-8", errors="replace")
    except (OSError, EOFError, TickFileError):
        return None  # the step reads it and says what is wrong
    what = OWN_OUTPUTS.get(head.strip().replace(" ", "").lower())
    if what:
        return f"{what} written by `finance backtest --out`, not market data"
    return None


def backtest_summary(result: dict[str, Any]) -> dict[str, Any]:
    """A data file's row in the batch table: rows, and each strategy's P&L and fills."""
    row: dict[str, Any] = {"kind": result.get("kind"), "rows": result.get("rows"),
                           "warnings": len(result.get("warnings") or [])}
    for label, perf in (result.get("results") or {}).items():
        name = label.replace("|", " @ ")
        row[f"{name} pnl"] = perf.get("pnl")
        row[f"{name} fills"] = perf.get("fills")
    return row


def write_run(out: Path, res: Any, name: str) -> list[str]:
    """equity.csv and fills.csv of one backtest (the files `deepseek evaluate trading`
    reads)."""
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    eq = out / f"{name}-equity.csv"
    # structured rows keep time_ns an exact integer (a float column would round it to
    # 256 ns); a first row with the capital, at the first tick's time: returns start from it
    rows = np.empty(len(res.time_ns) + 1, dtype=[("t", "<i8"), ("e", "<f8"), ("p", "<f8")])
    rows["t"] = np.r_[res.time_ns[0], res.time_ns]
    rows["e"] = np.r_[res.capital, res.equity]
    rows["p"] = np.r_[0.0, res.position]
    np.savetxt(eq, rows, fmt=["%d", "%.10g", "%.10g"], delimiter=",",
               header="time_ns,equity,position", comments="")
    fl = out / f"{name}-fills.csv"
    f = res.fills
    np.savetxt(fl, f[["time_ns", "side", "price", "qty", "fee", "maker", "order"]],
               fmt=["%d", "%d", "%.10g", "%.10g", "%.10g", "%d", "%d"], delimiter=",",
               header="time_ns,side,price,qty,fee,maker,order", comments="")
    return [str(eq), str(fl)]
