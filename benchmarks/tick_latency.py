"""Benchmark: per-tick latency of feature update + forward, fast path vs PyTorch eager,
TorchScript and ONNX Runtime (one thread), for tick-mlp (17->64->64->3) and tick-gru
(hidden 32), the UDP loopback round trip through the feed server, and on a real capture the
cost the order book adds per depth message.

    python benchmarks/tick_latency.py [--quick] [--capture PATH]

Every path gets the same features from the same streaming feature code; only the model
call differs (the fast path fuses both into one compiled call). Latencies are measured per
tick with time.perf_counter_ns over N ticks after a warm-up, on one thread.

With the guard on: per tick, what the feed server does for one datagram in process
(``FeedServer`` unpacking it, the guard's checks, the fast path, the guard's update, the
packed answer; no socket), and the guard's check and update alone.

Real capture (default ``../shared/data/market/binance-usdm-ethusdt_20240808.gz``, skipped
when absent): the fast path over the capture's own ticks (real time gaps, book depths), and
per depth message the book update (``OrderBook.apply``: compiled, on the level arrays the
reader decoded) plus the depth sums over 5 levels and the best levels the ticks carry -- the
cost the book adds before the fast path runs. Decoding the message is the reader's cost
(``benchmarks/tick_read.py``), not counted here. Beside it, the same messages through a
SortedDict book in Python (the plugin's previous book) fed the levels as lists.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, goal  # noqa: E402


def pct(ns: np.ndarray) -> dict[str, float]:
    us = ns.astype(np.float64) / 1e3
    return {"p50": round(float(np.percentile(us, 50)), 3),
            "p99": round(float(np.percentile(us, 99)), 3),
            "p99_9": round(float(np.percentile(us, 99.9)), 3),
            "mean": round(float(us.mean()), 3)}


def timed(fn, args: list[tuple], warmup: int) -> dict[str, float]:
    from deepseek.finance.pipelines import time_per_call

    return pct(time_per_call(fn, args)[warmup:])


def bench_model(name: str, args: list[tuple], warmup: int, tmp: Path) -> dict[str, dict]:
    import onnxruntime as ort
    import torch

    from deepseek.finance.fastpath import FastPath
    from deepseek.finance.features import StreamingFeatures
    from deepseek.finance.models import GRUStep
    from deepseek.loader import ModelLoader, export_onnx

    model = ModelLoader.load(name, device="cpu").module
    res: dict[str, dict] = {}
    fp = FastPath.from_model(model)
    res["fast_path"] = timed(fp.on_tick, args, warmup)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    from deepseek.finance.features import N_FEATURES

    x0 = torch.zeros(1, N_FEATURES)
    if name == "tick-mlp":
        traced = torch.jit.trace(model, x0)
        path = export_onnx(model, x0, tmp / "mlp.onnx", input_names=["features"])
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

        def runner(call):
            sf = StreamingFeatures()

            def f(*a):
                feat = sf.update(*a)
                return call(feat)
            return f

        with torch.inference_mode():
            res["pytorch_eager"] = timed(
                runner(lambda x: model(torch.from_numpy(x).unsqueeze(0)).argmax(1)), args, warmup)
            res["torchscript"] = timed(
                runner(lambda x: traced(torch.from_numpy(x).unsqueeze(0)).argmax(1)), args, warmup)
        res["onnxruntime_1thread"] = timed(
            runner(lambda x: sess.run(None, {"features": x[None]})[0].argmax(1)), args, warmup)
    else:
        step = GRUStep(model).eval()
        h0 = torch.zeros(1, 1, model.hidden)
        traced = torch.jit.trace(step, (x0, h0))
        path = tmp / "gru.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(step, (x0, h0), str(path), input_names=["features", "h"],
                              output_names=["logits", "h_out"], opset_version=17, dynamo=False)
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

        def stateful(call, h_init):
            sf = StreamingFeatures()
            state = {"h": h_init}

            def f(*a):
                feat = sf.update(*a)
                logits, state["h"] = call(feat, state["h"])
                return logits
            return f

        with torch.inference_mode():
            res["pytorch_eager"] = timed(stateful(
                lambda x, h: step(torch.from_numpy(x).unsqueeze(0), h), h0.clone()), args, warmup)
            res["torchscript"] = timed(stateful(
                lambda x, h: traced(torch.from_numpy(x).unsqueeze(0), h), h0.clone()), args,
                warmup)
        res["onnxruntime_1thread"] = timed(stateful(
            lambda x, h: tuple(sess.run(None, {"features": x[None], "h": h})),
            np.zeros((1, 1, model.hidden), np.float32)), args, warmup)
    return res


def bench_guarded(ticks: np.ndarray, warmup: int) -> dict[str, dict]:
    """Per tick in process, what the feed server does for a datagram: unpack, the guard's
    checks, the fast path, the guard's update and the packed answer (``FeedServer.handle``,
    no socket); beside it the guard's check and update alone."""
    from deepseek.finance.feed import FeedServer, Limits, pack_tick
    from deepseek.finance.strategy import fast_path
    from deepseek.finance.ticks import tick_args

    server = FeedServer(fast_path("tick-mlp"), port=0, limits=Limits(time_window_s=0))
    try:
        grams = [pack_tick(i, *tick_args(t)) for i, t in enumerate(ticks)]
        out = bytearray(64)
        handle = server._handle_into
        res = {"server_handle_us": timed(lambda g: handle(g, len(g), out, 0),
                                         [(g,) for g in grams], warmup)}
        refused = {k: v for k, v in server.counters.to_dict()["rejected"].items() if v}
        assert not refused, f"the guard refused synthetic ticks: {refused}"
        guard = server.guard
        guard.reset()

        def check_accept(t, bid, ask, bsz, asz, bd, ad, lpx, lsz, side):
            guard.check(t, bid, ask, bsz, asz, bd, ad, lpx, lsz, side)
            guard.accept(t, bid, ask, bd, ad)

        res["guard_only_us"] = timed(check_accept, [tick_args(t) for t in ticks], warmup)
        return res
    finally:
        server.sock.close()


def free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def bench_udp(n: int, busy: bool, csv_path: Path) -> dict:
    import json

    port = free_port()
    cmd = [sys.executable, "-m", "deepseek.cli", "finance", "serve", "--udp",
           f"127.0.0.1:{port}", "--model", "tick-mlp", "--duration", "600",
           "--time-window-s", "0"]  # recorded times, not the wall clock
    if busy:
        cmd.append("--busy-poll")
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()  # "serving ..." once ready
        if "serving" not in line:
            raise RuntimeError(f"feed server did not start: {line}{server.stderr.read()}")
        client = [sys.executable, "-m", "deepseek.cli", "finance", "replay", str(csv_path),
                  "--udp", f"127.0.0.1:{port}", "--limit", str(n), "--warmup",
                  str(min(2000, n // 5)), "--json"]
        if busy:
            client.append("--busy-poll")
        out = subprocess.run(client, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"replay failed: {out.stdout}{out.stderr}")
        return json.loads(out.stdout)
    finally:
        server.terminate()
        server.wait(timeout=10)


class SortedDictBook:
    """The peer in the same run: the same update rules on two ``sortedcontainers``
    SortedDicts in Python (the plugin's book before its ladders were compiled), fed the
    levels as Python lists, as a JSON decoder hands them over."""

    def __init__(self) -> None:
        from sortedcontainers import SortedDict

        self.bids, self.asks = SortedDict(), SortedDict()

    def load(self, bids: list, asks: list) -> None:
        from sortedcontainers import SortedDict

        self.bids = SortedDict({p: q for p, q in bids if q > 0.0})
        self.asks = SortedDict({p: q for p, q in asks if q > 0.0})

    def apply(self, bids: list, asks: list) -> tuple[float, float]:
        inf = float("inf")
        for levels in (bids, asks):
            for p, q in levels:
                if not (0.0 < p < inf and 0.0 <= q < inf):
                    raise ValueError("bad level")
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for p, q in levels:
                if q == 0.0:
                    side.pop(p, None)
                else:
                    side[p] = q
        return (sum(map(self.bids.__getitem__, self.bids.keys()[-5:])),
                sum(map(self.asks.__getitem__, self.asks.keys()[:5])))


def bench_capture(path: Path, limit: int, levels: int = 5) -> dict:
    """Book update cost per depth message (and the SortedDict peer's on the same messages)
    and the fast path over the capture's ticks."""
    from deepseek.finance.book import OrderBook
    from deepseek.finance.capture import CaptureReader
    from deepseek.finance.fastpath import FastPath
    from deepseek.finance.ticks import read_binance, tick_args
    from deepseek.loader import ModelLoader

    clock = time.perf_counter_ns
    book = OrderBook()
    peer = SortedDictBook()
    costs, peer_costs = [], []
    n_levels = []
    for rec in CaptureReader(path):
        if rec.kind not in ("depth", "snapshot"):
            continue
        as_lists = rec.bids.tolist(), rec.asks.tolist()
        if rec.kind == "snapshot":
            peer.load(*as_lists)
        elif book.live:
            t0 = clock()
            peer.apply(*as_lists)
            peer_costs.append(clock() - t0)
        t0 = clock()
        if book.apply(rec):
            book.depth(levels)
            book.best()
        dt = clock() - t0
        if rec.kind == "depth":
            costs.append(dt)
            n_levels.append(len(rec.bids) + len(rec.asks))
        if len(costs) >= limit:
            break
    ticks = read_binance(path)[: limit]
    fp = FastPath.from_model(ModelLoader.load("tick-mlp", device="cpu").module)
    warm = min(2_000, len(ticks) // 5)
    ours = pct(np.array(costs[100:], dtype=np.int64))
    theirs = pct(np.array(peer_costs[100:], dtype=np.int64))
    lv = np.array(n_levels[100:], dtype=np.float64)
    per_level = np.array(costs[100:], dtype=np.float64) / np.maximum(lv, 1) / 1e3
    return {"capture": path.name, "depth_messages": len(costs),
            "levels_per_message_mean": round(float(np.mean(n_levels)), 1),
            "levels_per_message_p99": round(float(np.percentile(n_levels, 99)), 1),
            "book_update_us": ours,
            "book_update_per_level_us_median": round(float(np.median(per_level)), 4),
            "sorteddict_peer_update_us": theirs,
            "peer_over_book_p50": round(theirs["p50"] / ours["p50"], 2),
            "peer_over_book_p99": round(theirs["p99"] / ours["p99"], 2),
            "book": {k: book.stats[k] for k in ("applied", "gaps", "stale", "crossed")},
            "ticks": len(ticks),
            "tick_mlp_fast_path_us": timed(fp.on_tick, [tick_args(t) for t in ticks], warm)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="20,000 synthetic ticks instead of 100,000; 5,000 UDP round trips "
                         "instead of 20,000; 5,000 capture depth messages instead of 50,000")
    ap.add_argument("--capture", type=Path, default=Path(__file__).resolve().parents[2] /
                    "shared" / "data" / "market" / "binance-usdm-ethusdt_20240808.gz",
                    help="a real capture for the book cost (skipped when it does not exist)")
    args = ap.parse_args()
    import torch

    from deepseek.finance.synthetic import synthetic_ticks
    from deepseek.finance.ticks import tick_args, write_csv

    torch.set_num_threads(1)
    n = 20_000 if args.quick else 100_000
    warmup = 5_000
    ticks = synthetic_ticks(n + warmup, seed=777)
    args_per_tick = [tick_args(t) for t in ticks]
    results: dict = {"ticks_measured": n, "warmup_ticks": warmup}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("tick-mlp", "tick-gru"):
            results[name] = bench_model(name, args_per_tick, warmup, Path(tmp))
        csv_path = write_csv(ticks[: (5_000 if args.quick else 20_000)], Path(tmp) / "t.csv")
        n_udp = 5_000 if args.quick else 20_000
        results["udp_round_trip_us"] = {
            "blocking": bench_udp(n_udp, False, csv_path)["rtt_us"],
            "busy_poll": bench_udp(n_udp, True, csv_path)["rtt_us"],
        }
    results["tick_mlp_guard_on"] = bench_guarded(ticks, warmup)
    if args.capture.is_file():
        results["capture"] = bench_capture(args.capture, 5_000 if args.quick else 50_000)
    else:
        results["capture"] = f"skipped: {args.capture} does not exist"
    mlp, gru = results["tick-mlp"], results["tick-gru"]
    ratio = mlp["onnxruntime_1thread"]["p99"] / mlp["fast_path"]["p99"]
    results["mlp_p99_onnxruntime_over_fast_path"] = round(ratio, 2)
    udp = results["udp_round_trip_us"]["busy_poll"]
    guarded = results["tick_mlp_guard_on"]["server_handle_us"]
    goals = [
        goal("tick-mlp with the guard on, server handle p50", guarded["p50"], "<= 2 µs", "µs",
             guarded["p50"] <= 2.0),
        goal("tick-mlp with the guard on, server handle p99", guarded["p99"], "<= 5 µs", "µs",
             guarded["p99"] <= 5.0),
        goal("tick-mlp fast path p50", mlp["fast_path"]["p50"], "<= 2 µs", "µs",
             mlp["fast_path"]["p50"] <= 2.0),
        goal("tick-mlp fast path p99", mlp["fast_path"]["p99"], "<= 5 µs", "µs",
             mlp["fast_path"]["p99"] <= 5.0),
        goal("tick-mlp p99 ONNX Runtime / fast path", round(ratio, 2), ">= 4x", "ratio",
             ratio >= 4.0),
        goal("tick-gru fast path p99", gru["fast_path"]["p99"], "<= 10 µs", "µs",
             gru["fast_path"]["p99"] <= 10.0),
        goal("UDP loopback round trip p50 (busy-poll)", round(udp["p50"], 2), "<= 30 µs", "µs",
             udp["p50"] <= 30.0),
    ]
    cap = results["capture"]
    if isinstance(cap, dict):
        book = cap["book_update_us"]
        goals.append(goal(f"book update per depth message p99, {cap['capture']} "
                          f"({cap['depth_messages']:,} messages)", book["p99"], "<= 5 µs", "µs",
                          book["p99"] <= 5.0))
        goals.append(goal("book p99 speed-up over the SortedDict book, same messages",
                          cap["peer_over_book_p99"], ">= 5x", "ratio",
                          cap["peer_over_book_p99"] >= 5.0))
    emit("tick_latency", results, goals, quick=args.quick,
         machine={"omp_threads": os.environ.get("OMP_NUM_THREADS", "unset")})


if __name__ == "__main__":
    main()
