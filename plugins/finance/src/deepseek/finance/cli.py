"""``deepseek finance ...`` commands."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from deepseek.finance import __version__

log = logging.getLogger(__name__)


@click.group("finance")
@click.version_option(__version__, "--version", prog_name="deepseek-finance",
                      message="%(prog)s %(version)s")
def finance() -> None:
    """Finance: market captures, an L2 order book, streaming features, tick models compiled
    to a microsecond fast path, and a UDP feed server.

    \b
    info      what this plugin registers
    inspect   read a capture: record counts, clocks, the rebuilt book, ticks
    generate  write synthetic order-book ticks (CSV)
    train     train a tick classifier split in time; test skill beside three baselines
    evaluate  accuracy / macro F1 / hit rate of predictions against labels
    backtest  a strategy on ticks (latency, fees, queue) or bars, beside a baseline
    serve     answer tick datagrams with decisions (UDP)
    replay    send ticks to a feed server and time the round trips
    risk      credit risk from a tabular CSV: train, tune, evaluate

    DATA arguments go through the reader registry: a tick CSV, a Binance WebSocket capture
    ('<receive_ns> <json>' lines; plain, .gz or .zst), or synthetic:?n=N&seed=S.
    """


def _add_risk() -> None:
    from deepseek.finance.risk_cli import risk_group

    finance.add_command(risk_group)


_add_risk()


def capture_options(fn):  # type: ignore[no-untyped-def]
    """--symbol/--clock/--order/--levels for commands that read DATA."""
    for opt in reversed([
        click.option("--symbol", default=None,
                     help="Capture: the symbol to read (default: the capture's only one)."),
        click.option("--clock", type=click.Choice(["receive", "exchange"]), default=None,
                     help="Capture: tick time from the receive clock (default) or the "
                          "exchange's (spot bookTicker has none: receive time + offset)."),
        click.option("--order", type=click.Choice(["error", "clamp", "drop"]), default=None,
                     help="Times going backwards: error (default), clamp or drop (counted)."),
        click.option("--levels", type=click.IntRange(1, 100), default=None,
                     help="Capture: book levels summed into the depths (default 5)."),
    ]):
        fn = opt(fn)
    return fn


def _ticks(data: str, symbol: str | None, clock: str | None, order: str | None,
           levels: int | None):  # type: ignore[no-untyped-def]
    from deepseek.finance.training import load_ticks

    return load_ticks(data, symbol=symbol, clock=clock, order=order, levels=levels)


@finance.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(as_json: bool) -> None:
    """Show what this plugin registers."""
    from deepseek.plugins import plugin_infos

    for plugin in plugin_infos():
        if plugin.name == "finance":
            if as_json:
                click.echo(json.dumps({"version": __version__, **plugin.to_dict()}, indent=2))
                return
            click.echo(f"deepseek-finance {__version__}")
            for kind, names in plugin.registered.items():
                click.echo(f"  {kind}s: {', '.join(names) or '(none)'}")


@finance.command("inspect")
@click.argument("capture", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@capture_options
@click.option("--book", "show_book", type=int, default=5, show_default=True,
              help="Print this many levels of the rebuilt book at the end (0: none).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def inspect_cmd(capture: Path, symbol: str | None, clock: str | None, order: str | None,
                levels: int | None, show_book: int, as_json: bool) -> None:
    """Read CAPTURE once: records by kind and symbol, both clocks and their offset, times
    out of order, the order book rebuilt from snapshot + diffs (gaps, resyncs, agreement
    with bookTicker) and the ticks it makes."""
    import numpy as np

    from deepseek.finance.ticks import DEFAULT_LEVELS, CaptureTicks

    ct = CaptureTicks(capture, symbol=symbol, clock=clock or "receive", order=order or "error",
                      levels=levels or DEFAULT_LEVELS)
    ticks = ct.to_array()
    st = ct.stats
    r = st["reader"]
    both = ticks[ticks["exch_ns"] >= 0]
    offset = (float(np.median(both["exch_ns"] - both["recv_ns"])) / 1e6
              if len(both) and (both["recv_ns"] >= 0).all() else None)
    span = (int(ticks["time_ns"][-1]) - int(ticks["time_ns"][0])) / 1e9
    bids, asks = ct.book.levels(show_book) if ct.book.live and show_book else ([], [])
    out = {"capture": str(capture), "ticks": len(ticks), "span_s": round(span, 3),
           "ticks_with_exchange_time": len(both),
           "exchange_minus_receive_ms_median": None if offset is None else round(offset, 3),
           **st, "book_top": {"bids": bids, "asks": asks}}
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))
        return
    click.echo(f"{capture}: {r['lines']} lines, {span:.1f} s; records {r['records']}; "
               f"symbols {r['symbols']}; other symbols skipped {r['other_symbols']}; "
               f"ignored {r['ignored'] or 'none'}")
    click.echo(f"clock: {r['clock']} (order={r['order']}: {r['out_of_order']} out of order, "
               f"{r['clamped']} clamped, {r['dropped']} dropped, {r['time_estimated']} "
               "estimated exchange times)"
               + ("" if offset is None else f"; exchange - receive median {offset:.1f} ms"))
    b = st["book"]
    click.echo(f"book: {'in sync' if b['live'] else 'NOT in sync'}; {b['snapshots']} "
               f"snapshot(s), {b['applied']} diffs applied, {b['stale']} stale, "
               f"{b['buffered']} buffered before the snapshot, {b['gaps']} gap(s), "
               f"{b['resyncs']} resync(s); {b['bid_levels']} bid / {b['ask_levels']} ask levels")
    c = st["ticker_check"]
    if c["compared"]:
        click.echo(f"book vs bookTicker: best prices agree on {c['agree']}/{c['compared']} "
                   f"({c['agreement']:.2%}) diffs; same update ID {c['same_id_agree']}/"
                   f"{c['same_id_compared']} exactly")
    else:
        click.echo("book vs bookTicker: nothing to compare (no book in sync, or no bookTicker)")
    t = st["ticks"]
    click.echo(f"ticks: {t['emitted']} ({t['trades']} trades); {t['unchanged']} records changed "
               f"nothing; {t['without_book_depth']} without book depth; top of book from "
               f"{'bookTicker' if t['from_ticker_top'] else 'the book'}")
    for (bp, bq), (ap, aq) in zip(bids, asks):
        click.echo(f"  {bq:>14.6g} @ {bp:<14.10g} | {ap:>14.10g} x {aq:<14.6g}")


@finance.command("generate")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--ticks", "n", type=int, default=100_000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def generate(out: Path, n: int, seed: int, as_json: bool) -> None:
    """Write synthetic order-book ticks to OUT (CSV), whose order flow predicts the next
    mid-price moves (the same generator as the synthetic: reader)."""
    from deepseek.finance.synthetic import synthetic_ticks
    from deepseek.finance.ticks import write_csv

    write_csv(synthetic_ticks(n, seed=seed), out)
    if as_json:
        click.echo(json.dumps({"out": str(out), "ticks": n, "seed": seed}))
    else:
        click.echo(f"wrote {n} ticks to {out}")


@finance.command("train")
@click.argument("data")
@capture_options
@click.option("--model", default="tick-mlp", show_default=True,
              help="Any registered model that takes [N, 17] tick features or [N, T, 17] "
                   "sequences and returns 3 class scores per tick (tick-mlp, tick-gru, ...).")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output folder: model.safetensors + model.json + report.json "
                   "(+ checkpoints/).")
@click.option("--epochs", type=int, default=6, show_default=True)
@click.option("--horizon", type=click.IntRange(1), default=10, show_default=True,
              help="Label horizon in ticks.")
@click.option("--threshold", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Relative mid move that counts as up/down.")
@click.option("--costs", is_flag=True,
              help="Cost-aware labels: a move must also exceed the spread and two fees.")
@click.option("--fee-bps", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Taker fee per side in basis points (with --costs).")
@click.option("--split", "fractions", default="0.6,0.2,0.2", show_default=True,
              help="Train,validation,test fractions in time order.")
@click.option("--class-weights", is_flag=True, help="Weigh the loss by inverse class "
              "frequency.")
@click.option("--no-calibrate", is_flag=True, help="Decide by arg-max, without the up/down "
              "offsets fitted on validation.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--accum-steps", type=int, default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (default: text).")
def train_cmd(data: str, symbol: str | None, clock: str | None, order: str | None,
              levels: int | None, model: str, out: Path, epochs: int, horizon: int,
              threshold: float, costs: bool, fee_bps: float, fractions: str,
              class_weights: bool, no_calibrate: bool, batch_size: int, lr: float,
              accum_steps: int, seed: int, as_json: bool) -> None:
    """Train a tick classifier on DATA through the core Trainer, split in time (train,
    validation picks the epoch, test reported once, a horizon's gap between them); report
    test accuracy, macro F1 and directional hit rate beside the majority, persistence,
    queue-imbalance and logistic-regression baselines on the same test span, and say whether
    the model beats them."""
    from deepseek.finance.errors import FinanceError
    from deepseek.finance.training import SKILL_COLUMNS, train
    from deepseek.loader import save_model
    from deepseek.paths import ready_folder

    try:
        parts = tuple(float(x) for x in fractions.split(","))
    except ValueError:
        raise click.BadParameter(f"{fractions!r}: give three numbers, e.g. 0.6,0.2,0.2",
                                 param_hint="--split") from None
    ticks = _ticks(data, symbol, clock, order, levels)
    if len(parts) != 3:
        raise FinanceError(f"--split {fractions}: give three fractions, e.g. 0.6,0.2,0.2")
    ready_folder(out, "--out")  # before the training, not after its first epoch
    res = train(ticks, model, epochs=epochs, horizon=horizon, threshold=threshold,
                costs=costs, fee_bps=fee_bps, fractions=parts,  # type: ignore[arg-type]
                class_weights=class_weights, calibrate_offsets=not no_calibrate,
                batch_size=batch_size, lr=lr, accum_steps=accum_steps, seed=seed,
                checkpoint_dir=out / "checkpoints")
    path = save_model(res.model, out / "model.safetensors", architecture=model,
                      config=res.config)
    report = {"model": str(path), "data": data, "ticks": len(ticks), "split": res.split,
              "test": res.metrics, "baselines": res.baselines, "validation": res.validation,
              "beats_baselines": res.beats_baselines, "verdict": res.verdict()}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    if as_json:
        click.echo(json.dumps(report, indent=2, default=float))
        return
    m = res.metrics
    click.echo(f"model: {path}")
    click.echo(f"test span: {int(m['test_ticks'])} ticks (train {int(m['train_ticks'])}, "
               f"validation {int(m['val_ticks'])}, gaps of {horizon}); labels: mid move over "
               f"{horizon} ticks{', net of spread and fees' if costs else ''}")
    widths = [16, 9, 9, 9, 7]
    click.echo("  ".join(c.ljust(w) for c, w in zip(SKILL_COLUMNS, widths)))
    for row in res.table():
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
    click.echo(res.verdict())


@finance.command("evaluate")
@click.option("--pred", "pred_path", type=click.Path(exists=True, path_type=Path),
              required=True, help="(N, 3) class scores or (N,) classes: .npy, .csv or .json.")
@click.option("--ref", "ref_path", type=click.Path(exists=True, path_type=Path), required=True,
              help="(N,) labels 0 (down), 1 (flat), 2 (up).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def evaluate_cmd(pred_path: Path, ref_path: Path, as_json: bool) -> None:
    """Accuracy, macro F1, directional hit rate and calls of down/flat/up predictions, beside
    the majority baseline (the registered metric tick-classification, as `deepseek evaluate`
    computes it)."""
    from deepseek.evaluation import evaluate_files

    res = evaluate_files("tick-classification", pred_path, ref_path)
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    for k, v in res.items():
        click.echo(f"{k}: {v:.4f}")


def _fastpath(model: str, trust_pickle: bool):
    from deepseek.finance.strategy import fast_path

    return fast_path(model, trust_pickle=trust_pickle)


@finance.command("backtest")
@click.argument("data")
@capture_options
@click.option("--model", default="tick-mlp", show_default=True,
              help="Ticks: the model deciding (registered name or model file), compiled to "
                   "the fast path.")
@click.option("--walk-forward", "folds", type=click.IntRange(0), default=0, show_default=True,
              help="Ticks: train --model's architecture on each of FOLDS windows and test on "
                   "the next (0: backtest the given model as it is).")
@click.option("--epochs", type=click.IntRange(1), default=3, show_default=True,
              help="Epochs per walk-forward fold.")
@click.option("--baseline-theta", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="Ticks: threshold of the queue-imbalance baseline rule (walk-forward fits "
                   "it on each training window).")
@click.option("--rule", default="sma:10,30", show_default=True,
              help="Bars: sma:FAST,SLOW, momentum:N or buy-and-hold (shown beside "
                   "buy-and-hold).")
@click.option("--calendar", default=None, metavar="NAME",
              help="Bars: the exchange calendar (exchange_calendars: XNYS, XLON, XFRA, 24/5, "
                   "24/7, ...) the bars are checked against; sessions or intervals with no "
                   "bar are counted and reported (default: daily bars against weekdays).")
@click.option("--order-type", type=click.Choice(["market", "limit"]), default="market",
              show_default=True, help="Ticks: how decisions trade.")
@click.option("--l2", "l2", is_flag=True,
              help="Ticks from a capture with its book: replay the rebuilt book's changes "
                   "between the ticks, so a resting limit order's queue is the displayed "
                   "quantity at its own price at any depth and shrinks with that level "
                   "(without it: known only at the touch).")
@click.option("--size", type=click.FloatRange(0, min_open=True), default=1.0,
              show_default=True, help="Position per call, counted as --sizing says.")
@click.option("--sizing", type=click.Choice(["quantity", "notional", "equity"]),
              default="quantity", show_default=True,
              help="What --size counts: units of the asset, quote currency, or a fraction of "
                   "the equity when the position is taken (needs --capital). A position is "
                   "sized when its direction is taken and then held.")
@click.option("--capital", type=click.FloatRange(0, min_open=True), default=None,
              help="Starting equity, the base of returns (default: the --size position's "
                   "notional at the first price).")
@click.option("--hold-ticks", type=click.IntRange(0), default=10, show_default=True,
              help="Ticks: observations a position is kept after the last up/down call.")
@click.option("--latency-us", type=click.FloatRange(0), default=500.0, show_default=True,
              help="Ticks: order latency, decision to exchange.")
@click.option("--feed-latency-us", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Ticks: from a tick's time to the strategy seeing it (a receive-clock "
                   "capture already holds the network delay).")
@click.option("--latency-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Ticks: recorded order latencies (µs, one per line) to draw "
                                 "from instead of --latency-us.")
@click.option("--fee-bps", type=float, default=4.0, show_default=True,
              help="Taker fee (bars: fee per trade), basis points of the notional.")
@click.option("--maker-fee-bps", type=float, default=0.0, show_default=True,
              help="Ticks: maker fee of limit fills (negative: a rebate).")
@click.option("--slippage-bps", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Bars: price paid against each trade at the next open.")
@click.option("--max-loss", type=click.FloatRange(0, min_open=True), default=None,
              help="Ticks: stop and flatten when the loss reaches this (quote currency).")
@click.option("--max-gap-s", type=click.FloatRange(0, min_open=True), default=60.0,
              show_default=True, help="Ticks: warn about silences longer than this.")
@click.option("--period-s", type=click.FloatRange(0, min_open=True), default=None,
              help="Return period of Sharpe/Sortino (default: 1 s for spans under 6 h, else "
                   "60 s; bars: one bar).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write equity/fills CSVs, summary.json and equity.png here.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def backtest_cmd(data: str, symbol: str | None, clock: str | None, order: str | None,
                 levels: int | None, model: str, folds: int, epochs: int,
                 baseline_theta: float, rule: str, calendar: str | None, order_type: str,
                 l2: bool, size: float, sizing: str, capital: float | None, hold_ticks: int,
                 latency_us: float, feed_latency_us: float,
                 latency_file: Path | None, fee_bps: float, maker_fee_bps: float,
                 slippage_bps: float, max_loss: float | None, max_gap_s: float,
                 period_s: float | None, out: Path | None, as_json: bool) -> None:
    """Backtest a strategy on DATA, charging latency and fees, beside a simple baseline.

    \b
    Ticks (a capture, a tick CSV, synthetic:...): the model's fast-path decisions become
    market or limit orders that meet the recorded book only after the feed and order
    latencies (fills: market at the touch; limit on a trade through its price, behind a
    conservative queue). Shown at zero latency and at the given one, beside the
    queue-imbalance rule. --walk-forward K trains a fresh model per window instead.
    Bars (an OHLCV CSV): --rule decided on each close, traded at the next open, beside
    buy-and-hold.
    """
    from deepseek.finance.backtest_run import run_backtest
    from deepseek.finance.pipelines import STRATEGY_COLUMNS, strategy_rows
    from deepseek.paths import ready_folder

    ready_folder(out, "--out")  # before the backtest, not after it
    summary = run_backtest(
        data, symbol=symbol, clock=clock, order=order, levels=levels, model=model,
        folds=folds, epochs=epochs, baseline_theta=baseline_theta, rule=rule,
        calendar=calendar, order_type=order_type, l2=l2, size=size, sizing=sizing,
        capital=capital, hold_ticks=hold_ticks, latency_us=latency_us,
        feed_latency_us=feed_latency_us, latency_file=latency_file, fee_bps=fee_bps,
        maker_fee_bps=maker_fee_bps, slippage_bps=slippage_bps, max_loss=max_loss,
        max_gap_s=max_gap_s, period_s=period_s, out=out)
    named, warnings, files = summary["results"], summary["warnings"], summary["files"]
    kind, n = summary["kind"], summary["rows"]
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    click.echo(f"{data}: {n} {kind}")
    widths = [16, 16, 11, 9, 18, 14, 17, 9, 7, 10, 9]
    click.echo("  ".join(c.ljust(w) for c, w in zip(STRATEGY_COLUMNS, widths)))
    for row in strategy_rows(named):
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
    first = next(iter(named.values()))
    click.echo(f"annualisation: {first['annualisation']}")
    if "sizing" in first:
        click.echo(first["sizing"])
    main = [k for k in named if k.split("|")[0] == next(iter(named)).split("|")[0]]
    first_pnl, last_pnl = named[main[0]]["pnl"], named[main[-1]]["pnl"]
    name = main[-1].split("|")[0]
    if named[main[-1]]["fills"] == 0:
        click.echo(f"verdict: {name} makes no trade (none of its calls is worth the costs)")
    elif last_pnl <= 0 < first_pnl:
        click.echo(f"verdict: {name} makes money at zero latency and loses once the latency "
                   "is charged")
    elif last_pnl <= 0:
        click.echo(f"verdict: {name} loses, even {'at zero latency ' if kind == 'ticks' else ''}"
                   "after fees")
    else:
        click.echo(f"verdict: {name} makes money after latency and fees")
    for f in files:
        click.echo(f"wrote {f}")


@finance.command("serve")
@click.option("--udp", "address", default="127.0.0.1:9999", show_default=True,
              help="HOST:PORT to listen on.")
@click.option("--model", default="tick-mlp", show_default=True,
              help="Registry name or model file (safetensors + JSON config).")
@click.option("--busy-poll", is_flag=True, help="Spin on a non-blocking socket (lowest "
              "latency, uses a whole core).")
@click.option("--time-window-s", type=click.FloatRange(0), default=10.0, show_default=True,
              help="Reject ticks further than this behind the server's clock (0: no clock "
                   "checks, to replay recorded ticks).")
@click.option("--max-ahead-s", type=click.FloatRange(0), default=0.05, show_default=True,
              help="Reject ticks further than this ahead of the server's clock.")
@click.option("--max-jump", type=click.FloatRange(0, min_open=True), default=0.05,
              show_default=True, help="Largest relative distance of a mid from the median of "
                                      "the recent accepted mids.")
@click.option("--size-jump", type=click.FloatRange(0, min_open=True), default=100.0,
              show_default=True, help="Largest size, as a multiple of the median recent "
                                      "book depth.")
@click.option("--max-gap-s", type=click.FloatRange(0, min_open=True), default=300.0,
              show_default=True, help="Largest time step after the last accepted tick.")
@click.option("--window", type=click.IntRange(1, 4096), default=32, show_default=True,
              help="Accepted ticks whose medians are the references of the jump checks.")
@click.option("--confirm", type=click.IntRange(1), default=3, show_default=True,
              help="Agreeing rejected ticks that make a new regime (state reset) ...")
@click.option("--confirm-s", type=click.FloatRange(0), default=1.0, show_default=True,
              help="... once they span this many seconds with no accepted tick between.")
@click.option("--control-key", envvar="DEEPSEEK_FEED_CONTROL_KEY", default=None,
              help="Key (16+ bytes) that signs reset datagrams (HMAC-SHA256); without one "
                   "they are refused [env DEEPSEEK_FEED_CONTROL_KEY].")
@click.option("--max-ticks", type=int, default=None, help="Stop after this many datagrams.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--trust-pickle", is_flag=True, help="Allow a pickled model file.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the final counters as JSON (default: text).")
def serve(address: str, model: str, busy_poll: bool, time_window_s: float, max_ahead_s: float,
          max_jump: float, size_jump: float, max_gap_s: float, window: int, confirm: int,
          confirm_s: float, control_key: str | None, max_ticks: int | None,
          duration: float | None, trust_pickle: bool, as_json: bool) -> None:
    """Answer tick datagrams with decisions (see deepseek.finance.feed for the layout).

    Every field of a tick is validated; a rejected tick is answered with its status and
    never touches the state. SIGHUP (or a signed reset datagram: deepseek finance reset)
    clears the model's state; SIGTERM stops, as does the hangup of the terminal it was
    started in (its window closed; ignored under nohup). Under systemd (Type=notify) it
    reports ready once its port is bound, its counters as the service's status, and
    watchdog pings (deploy/systemd/deepseek-feed@.service).
    """
    import time

    from deepseek.finance.feed import FeedServer, Limits, parse_address
    from deepseek.service import ServiceNotifier, on_hangup, on_signal

    host, port = parse_address(address)
    limits = Limits(max_jump=max_jump, size_jump=size_jump, max_gap_s=max_gap_s,
                    time_window_s=time_window_s, max_ahead_s=max_ahead_s, confirm=confirm,
                    confirm_s=confirm_s, window=window)
    server = FeedServer(_fastpath(model, trust_pickle), host, port, busy_poll=busy_poll,
                        limits=limits, control_key=control_key)
    service = ServiceNotifier()  # systemd's Type=notify: ready, status, watchdog, stop
    said = [float("-inf")]

    def every() -> None:  # off the tick path, about every 0.2 s (FeedServer.serve_forever)
        service.alive()
        now = time.monotonic()
        if now - said[0] >= 2.0:
            said[0] = now
            c = server.counters
            service.status(f"{c.received} datagrams, {c.answered} answered, "
                           f"{sum(c.rejected.values())} ticks rejected, {c.bad_size} of a "
                           f"wrong size, {c.resets} resets")

    # SIGHUP resets the state; the hangup of the terminal it runs in stops it. The handlers
    # only set flags (no lock: one that runs while the thread holds it would wait on
    # itself) and stay until the counters are out, so that a stop sent twice (a service
    # manager's, and a wrapper's that passes it on) ends the run once, with its counters.
    with on_signal("SIGTERM", lambda *_: server.request_stop()), \
            on_hangup(server.request_reset, server.request_stop):
        try:
            where = f"udp://{server.address[0]}:{server.address[1]}"
            click.echo(f"serving {model} on {where}"
                       f"{' (busy-poll)' if busy_poll else ''}"
                       f"{'; no clock window' if not time_window_s else ''}"
                       f"{'' if server.key else '; no control key: reset datagrams are refused'}"
                       "; SIGHUP resets the state, Ctrl-C stops", err=True)
            service.ready(f"serving {model} on {where}")
            server.serve_forever(max_ticks=max_ticks, duration=duration,
                                 every=every if service.active else None)
        except KeyboardInterrupt:
            pass
        finally:
            service.stopping()
            server.stop()
            counters = server.counters.to_dict()
            click.echo(json.dumps(counters) if as_json else
                       ", ".join(f"{k} {v}" for k, v in counters.items()))


@finance.command("reset")
@click.option("--udp", "address", default="127.0.0.1:9999", show_default=True,
              help="HOST:PORT of the feed server.")
@click.option("--control-key", envvar="DEEPSEEK_FEED_CONTROL_KEY", required=True,
              help="The server's control key [env DEEPSEEK_FEED_CONTROL_KEY].")
@click.option("--timeout", type=float, default=1.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def reset_cmd(address: str, control_key: str, timeout: float, as_json: bool) -> None:
    """Send a signed reset datagram to a feed server and print its answer (exit 1 unless
    the server reset its state)."""
    import socket

    from deepseek.finance.feed import (
        DECISION_SIZE,
        DECISION_STRUCT,
        RESET,
        STATUS,
        pack_reset,
        parse_address,
    )

    host, port = parse_address(address)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.send(pack_reset(control_key))
        try:
            data = sock.recv(64)
        except (TimeoutError, ConnectionRefusedError) as exc:
            raise click.ClickException(f"no answer from udp://{host}:{port} ({exc or 'timeout'})"
                                       ) from None
    status = DECISION_STRUCT.unpack_from(data)[2] if len(data) == DECISION_SIZE else -1
    answer = STATUS.get(status, f"unexpected answer ({len(data)} bytes)")
    click.echo(json.dumps({"server": f"{host}:{port}", "status": answer}) if as_json
               else answer)
    if status != RESET:
        raise SystemExit(1)


@finance.command("replay")
@click.argument("data")
@capture_options
@click.option("--udp", "address", default="127.0.0.1:9999", show_default=True)
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="Send at most this many ticks.")
@click.option("--warmup", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Ticks left out of the percentiles.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Seconds to wait for each answer.")
@click.option("--busy-poll", is_flag=True, help="Spin while waiting for answers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (default: text).")
def replay_cmd(data: str, symbol: str | None, clock: str | None, order: str | None,
               levels: int | None, address: str, limit: int | None, warmup: int,
               timeout: float, busy_poll: bool, as_json: bool) -> None:
    """Replay DATA to a feed server tick by tick and report the round trip per tick. Ticks
    keep their recorded times: serve with --time-window-s 0 to accept them. Exit status 1
    when a tick was lost (no answer within --timeout, or refused: the server stopped); 2
    when no server answers at the address."""
    from deepseek.finance.feed import parse_address, replay

    host, port = parse_address(address)
    res = replay(_ticks(data, symbol, clock, order, levels), host, port, timeout=timeout,
                 warmup=warmup, limit=limit, busy_poll=busy_poll)
    click.echo(json.dumps(res, indent=2) if as_json else
               "\n".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}"
                         for k, v in res.items()))
    if res["statuses"].get("clock_skew"):
        click.echo("hint: the server rejected recorded times as far from its clock; start it "
                   "with --time-window-s 0 to replay recorded data", err=True)
    if res["lost"]:
        raise SystemExit(1)
