"""The hftbacktest peer of ``benchmarks/backtest.py``, run in the peers' own environment
(``make bench-peers``; hftbacktest is never a dependency of the package).

    .bench-peers/bin/python benchmarks/peers/hftbacktest_loop.py CAPTURE [--latency-us 500]

Converts a Binance futures capture (``recv_ns {combined stream JSON}`` lines) with
hftbacktest's own converter (not timed), then times hftbacktest's loop over it, compiled
with numba as its users write it: on every market feed event, read the best bid and ask
and their sizes, take the queue-imbalance decision (+1 above 0.3, -1 below -0.3, else
hold) and send a market order for the difference to the target position (1 unit), with a
constant order latency and a 4 bp taker fee. Prints one JSON object: events, feed updates
seen, orders, seconds (best of 3) and events per second.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

from hftbacktest import GTC, MARKET
from numba import njit


@njit
def run(hbt):  # pragma: no cover - compiled by numba in the peers' environment
    feeds = 0
    orders = 0
    oid = 0
    while hbt.wait_next_feed(False, 1_000_000_000_000) != 1:
        feeds += 1
        depth = hbt.depth(0)
        bq = depth.best_bid_qty
        aq = depth.best_ask_qty
        if bq + aq <= 0.0 or depth.best_bid != depth.best_bid:
            continue
        imb = (bq - aq) / (bq + aq)
        target = 1.0 if imb > 0.3 else (-1.0 if imb < -0.3 else hbt.position(0))
        pos = hbt.position(0)
        if target != pos:
            oid += 1
            if target > pos:
                hbt.submit_buy_order(0, oid, depth.best_ask, target - pos, GTC, MARKET,
                                     False)
            else:
                hbt.submit_sell_order(0, oid, depth.best_bid, pos - target, GTC, MARKET,
                                      False)
            orders += 1
            hbt.clear_inactive_orders(0)
    return feeds, orders


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture")
    ap.add_argument("--latency-us", type=float, default=500.0)
    ap.add_argument("--tick-size", type=float, default=0.01)
    ap.add_argument("--lot-size", type=float, default=0.001)
    args = ap.parse_args()
    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest
    from hftbacktest.data.utils import binancefutures

    with contextlib.redirect_stdout(sys.stderr):  # the converter's notes; stdout is JSON
        data = binancefutures.convert(args.capture, combined_stream=True,
                                      buffer_size=20_000_000)
    lat = int(args.latency_us * 1e3)

    def backtester():
        asset = (BacktestAsset().data(data).linear_asset(1.0)
                 .constant_order_latency(lat, lat).risk_adverse_queue_model()
                 .no_partial_fill_exchange().trading_value_fee_model(0.0, 0.0004)
                 .tick_size(args.tick_size).lot_size(args.lot_size).last_trades_capacity(0))
        return HashMapMarketDepthBacktest([asset])

    run(backtester())  # compile
    best, out = float("inf"), (0, 0)
    for _ in range(3):
        hbt = backtester()
        t0 = time.perf_counter()
        out = run(hbt)
        best = min(best, time.perf_counter() - t0)
        hbt.close()
    json.dump({"peer": "hftbacktest", "events": int(len(data)), "feed_updates": int(out[0]),
               "orders": int(out[1]), "seconds": round(best, 4),
               "events_per_s": round(len(data) / best)}, sys.stdout)


if __name__ == "__main__":
    main()
