"""Benchmark: ticks per second through the backtester with the fast-path model in the loop,
beside a plain Python loop over the same ticks doing the same work.

    python benchmarks/backtest.py [--quick] [--capture PATH ...] [--peer-python PATH]

On a synthetic market (1,000,000 ticks; --quick 100,000) the packaged tick-mlp
(17->64->64->3) makes one decision per tick through its compiled fast path
(``FastPath.decide``: streaming features, then the MLP's layers as matrix products over
blocks of ticks, each decision equal to the per-tick kernel's) and the backtester
(``backtest``) turns them into market orders with 200 µs feed and 800 µs order latency and
a 0.5 bp taker fee. The figure is ticks divided by
the time of both steps (best of 3; the data generation and the first compilation are not
timed). The same ticks then go through a plain Python loop (``FastPath.step`` per tick and
a Python fill rule at the touch, zero latency) on the first 50,000 ticks (--quick 20,000),
for scale. The event loop alone (decisions given) is reported too.

Real captures (``../shared/data/market/*.gz`` when present): ticks/s of the same two steps on
each capture's own ticks.

The peer, hftbacktest, in an environment of its own (``make bench-peers`` creates
``.bench-hftbacktest/``; ``--peer-python PATH``), on the USD-M capture: its own numba loop
(``benchmarks/peers/hftbacktest_loop.py``) reads the best levels on every market feed event
and sends market orders by the queue-imbalance rule (+1 above 0.3, -1 below -0.3), 500 µs
order latency, 4 bp taker fee, over every depth and trade event of the capture. Ours does the
same rule over the same capture in L2 replay (``backtest(..., l2=events)``: the ticks plus
every book change between them), market orders, the same latency and fee; the decisions are
computed inside the timed part, and neither side times reading or converting the file. The
figure is hftbacktest's seconds over ours (best of 3 each).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, goal, market_captures  # noqa: E402


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def python_loop(fp, ticks: np.ndarray) -> float:
    """Decisions by FastPath.step per tick and market fills at the touch, in Python."""
    from deepseek.finance.ticks import tick_args

    fp.reset()
    rows = [tick_args(t) for t in ticks]
    t0 = time.perf_counter()
    pos, cash = 0.0, 0.0
    for a in rows:
        d = fp.step(*a) - 1
        if d != 0 and d != pos:
            px = a[2] if d > pos else a[1]
            cash -= (d - pos) * px + abs(d - pos) * px * 0.5e-4
            pos = float(d)
    return time.perf_counter() - t0


def vs_hftbacktest(path: Path, peer_python: str) -> dict:
    """Our L2 replay with the imbalance rule against hftbacktest's loop, same capture."""
    import json
    import subprocess

    from deepseek.finance.backtest import BacktestConfig, backtest
    from deepseek.finance.strategy import imbalance_decisions
    from deepseek.finance.ticks import read_binance_l2

    script = Path(__file__).resolve().parent / "peers" / "hftbacktest_loop.py"
    out = subprocess.run([peer_python, str(script), str(path), "--latency-us", "500"],
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        return {"skipped": f"hftbacktest failed: {out.stderr[-400:]}"}
    peer = json.loads(out.stdout)
    ticks, events = read_binance_l2(path)
    cfg = BacktestConfig(order_latency_us=500, taker_fee_bps=4.0, hold_ticks=0)
    state: dict = {}

    def ours():
        state["res"] = backtest(ticks, imbalance_decisions(ticks, 0.3), cfg, l2=events)

    ours()  # compile
    secs = best_of(ours)
    return {"capture": path.name, "hftbacktest": peer,
            "ours": {"ticks": int(len(ticks)), "book_changes": int(len(events[0])),
                     "orders": state["res"].counters["orders_sent"], "seconds": round(secs, 4),
                     "events_per_s": round((len(ticks) + len(events[0])) / secs)},
            "hftbacktest_seconds_over_ours": round(peer["seconds"] / secs, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100,000 ticks instead of 1,000,000")
    ap.add_argument("--capture", action="append", type=Path, default=None,
                    help="real capture(s) to time (default: ../shared/data/market/*.gz)")
    ap.add_argument("--peer-python", default=None,
                    help="python of an environment with hftbacktest [.bench-hftbacktest]")
    args = ap.parse_args()

    from deepseek.finance.backtest import BacktestConfig, backtest
    from deepseek.finance.strategy import fast_path
    from deepseek.finance.synthetic import synthetic_market

    n = 100_000 if args.quick else 1_000_000
    n_py = 20_000 if args.quick else 50_000
    ticks = synthetic_market(n, seed=11)
    fp = fast_path("tick-mlp")
    cfg = BacktestConfig(feed_latency_us=200, order_latency_us=800, taker_fee_bps=0.5)
    fp.decide(ticks[:1000])
    backtest(ticks[:1000], np.zeros(1000, dtype=np.int64), cfg)  # compile

    state: dict = {}

    def both():
        fp.reset()
        state["dec"] = fp.decide(ticks)
        state["res"] = backtest(ticks, state["dec"], cfg)

    t_both = best_of(both)
    t_loop = best_of(lambda: backtest(ticks, state["dec"], cfg))
    t_py = python_loop(fp, ticks[:n_py])
    res = state["res"]
    results = {
        "sizes": {"ticks": n, "python_loop_ticks": n_py},
        "model": "tick-mlp 17->64->64->3, packaged weights, fast path",
        "config": cfg.to_dict(),
        "backtest_with_model": {"seconds": round(t_both, 4),
                                "ticks_per_s": round(n / t_both)},
        "event_loop_only": {"seconds": round(t_loop, 4), "ticks_per_s": round(n / t_loop)},
        "python_loop": {"seconds": round(t_py, 4), "ticks_per_s": round(n_py / t_py)},
        "rows_redone_per_tick_order": int(fp.redone),
        "speedup_vs_python": round((n / t_both) / (n_py / t_py), 1),
        "run": {"fills": int(len(res.fills)), "pnl": round(float(res.equity[-1] - res.capital),
                                                           4)},
    }
    real = {}
    captures = [] if args.quick and not args.capture else market_captures(args.capture)
    for path in captures:
        from deepseek.finance.training import load_ticks

        t = load_ticks(path)

        def on_capture(t=t):
            fp.reset()
            backtest(t, fp.decide(t), cfg)

        secs = best_of(on_capture)
        real[Path(path).name] = {"ticks": int(len(t)), "ticks_per_s": round(len(t) / secs)}
    if real:
        results["real_captures"] = real
    rate = n / t_both
    goals = [goal(f"backtest with the tick-mlp fast path in the loop, {n:,} synthetic ticks",
                  round(rate), ">= 1,000,000", "ticks/s", rate >= 1_000_000)]
    peer_python = args.peer_python or str(Path(__file__).resolve().parents[1] /
                                          ".bench-hftbacktest" / "bin" / "python")
    usdm = [p for p in captures if "usdm" in Path(p).name]
    if not usdm:
        results["vs_hftbacktest"] = ("skipped: no USD-M capture (a futures capture; --quick "
                                     "reads none unless --capture is given)")
    elif not Path(peer_python).exists():
        results["vs_hftbacktest"] = f"skipped: {peer_python} does not exist; make bench-peers"
    else:
        cmp = vs_hftbacktest(Path(usdm[0]), peer_python)
        results["vs_hftbacktest"] = cmp
        if "hftbacktest_seconds_over_ours" in cmp:
            r = cmp["hftbacktest_seconds_over_ours"]
            goals.append(goal(f"hftbacktest time / ours, imbalance rule over {cmp['capture']}",
                              r, ">= 1.0", "ratio", r >= 1.0))
    emit("backtest", results, goals)
    if not math.isfinite(rate):
        sys.exit(1)


if __name__ == "__main__":
    main()
