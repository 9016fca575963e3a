"""Benchmark: does the live path decide on every real tick the offline path decides on?

Each shared Binance capture (../shared/data/market) is read into ticks once; then the ticks
are replayed over UDP loopback, one datagram per tick, closed loop, to `deepseek finance
serve` (started as a separate process with its default guard, the clock checks off since
the times are recorded), and every answer is compared with the offline fast path's decision
on the same ticks (`strategy.model_decisions`). The model is the packaged tick-mlp.

Goals, per capture: 100 % of the ticks answered ok (none refused by the guard), and 100 %
of the decisions equal to the offline ones.

    python benchmarks/feed_parity.py [--quick] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, goal  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parity(path: Path, limit: int | None) -> dict:
    from deepseek.finance.feed import STATUS, replay
    from deepseek.finance.strategy import model_decisions
    from deepseek.finance.ticks import CaptureTicks
    from deepseek.loader import ModelLoader

    reader = CaptureTicks(path)
    ticks = reader.to_array()
    if limit:
        ticks = ticks[:limit]
    offline = model_decisions(ModelLoader.load("tick-mlp", device="cpu"), ticks)
    port = _free_port()
    cmd = [sys.executable, "-m", "deepseek.cli", "finance", "serve", "--udp",
           f"127.0.0.1:{port}", "--model", "tick-mlp", "--time-window-s", "0", "--json"]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()  # "serving ..." once bound
        if "serving" not in line:
            raise RuntimeError(f"the feed server did not start: {line}{server.stderr.read()}")
        t0 = time.perf_counter()
        res = replay(ticks, "127.0.0.1", port, warmup=min(1000, len(ticks) // 5), keep=True,
                     timeout=5.0)
        seconds = time.perf_counter() - t0
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    counters = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    live = res["decisions"]
    ok = res["status_codes"] == 0
    refused = {STATUS.get(int(c), str(c)): int(n) for c, n in
               zip(*np.unique(res["status_codes"][~ok], return_counts=True))}
    first_diff = np.flatnonzero(live != offline)
    return {"capture": path.name, "ticks": len(ticks), "stats": reader.stats["ticks"],
            "answered_ok": int(ok.sum()), "refused": refused, "lost": res["lost"],
            "decisions_equal": int((live == offline).sum()),
            "first_difference": int(first_diff[0]) if first_diff.size else None,
            "offline_non_finite": int((offline == -2).sum()),
            "replay_seconds": round(seconds, 2), "rtt_us": res["rtt_us"],
            "server_counters": counters}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="the first 5,000 ticks of one capture (instead of every tick of "
                         "every capture)")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "market")
    args = ap.parse_args()
    captures = sorted(args.data.glob("*.gz"))
    if not captures:
        raise SystemExit(f"no captures in {args.data} (../shared/data/market)")
    if args.quick:
        captures = captures[-1:]
    limit = 5000 if args.quick else None
    results = {"limit_per_capture": limit, "captures": [parity(p, limit) for p in captures]}
    goals = []
    for r in results["captures"]:
        n = r["ticks"]
        goals.append(goal(f"{r['capture']} ({n} ticks): share answered ok by serve",
                          round(100 * r["answered_ok"] / n, 4), "100", "%",
                          r["answered_ok"] == n))
        goals.append(goal(f"{r['capture']} ({n} ticks): decisions equal to the offline path",
                          round(100 * r["decisions_equal"] / n, 4), "100", "%",
                          r["decisions_equal"] == n))
    emit("feed_parity", results, goals, quick=args.quick)


if __name__ == "__main__":
    main()
