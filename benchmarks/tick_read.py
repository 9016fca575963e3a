"""Benchmark: records/s of the capture reader against a plain ``json.loads`` loop over the same
lines, plain and gzip, and the reader's peak memory on a capture and on one four times as long.

    python benchmarks/tick_read.py [--quick] [--capture PATH ...]

Captures default to ``../shared/data/market/*.gz`` (Binance spot, USD-M and COIN-M). For each:

* ``json_loop``: open the file the same way (gzip or plain), and for every line split off the
  receive time, ``int()`` it and ``json.loads`` the message -- the loop anyone writes first;
* ``reader``: ``CaptureReader`` yielding typed records (trades, quotes, depth diffs with
  their levels as floats, snapshots) with both clocks, the symbol filter and the order policy;
* ``ticks``: ``CaptureTicks``: records, the order book rebuilt from snapshot + diffs, ticks
  (informational: it does more than either loop).

Each figure is the best of ``rounds`` runs. Memory: ``tracemalloc`` peak while iterating the
records of the plain capture and of a capture made of four copies of it (times shifted so
they keep increasing); flat memory means the ratio stays near 1. ``--quick`` reads one
capture, plain and gzip, one round.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, goal, market_captures  # noqa: E402


def json_loop(path: Path) -> int:
    opener = gzip.open if path.suffix == ".gz" else open
    n = 0
    loads = json.loads
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            head, _, body = line.partition(" ")
            int(head)
            loads(body)
            n += 1
    return n


def reader_loop(path: Path) -> int:
    from deepseek.finance.capture import CaptureReader

    n = 0
    for _ in CaptureReader(path):
        n += 1
    return n


def tick_loop(path: Path) -> int:
    from deepseek.finance.ticks import CaptureTicks

    ct = CaptureTicks(path)
    for _ in ct:
        pass
    return ct.reader.stats["lines"]


def best_rate(fn, path: Path, rounds: int) -> tuple[float, int]:
    best = 0.0
    n = 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        n = fn(path)
        best = max(best, n / (time.perf_counter() - t0))
    return best, n


def peak_memory(path: Path) -> float:
    tracemalloc.start()
    reader_loop(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1e6


def four_times(plain: Path, out: Path) -> Path:
    """Four copies of a capture, receive times shifted by the capture's span each time."""
    lines = plain.read_bytes().splitlines()
    first, last = int(lines[0].split(b" ", 1)[0]), int(lines[-1].split(b" ", 1)[0])
    span = last - first + 1
    with open(out, "wb") as f:
        for k in range(4):
            for line in lines:
                head, _, body = line.partition(b" ")
                f.write(b"%d %s\n" % (int(head) + k * span, body))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="the first capture only, one round")
    ap.add_argument("--capture", type=Path, action="append", default=None,
                    help="a capture (plain or .gz); repeat for several (default: "
                         "../shared/data/market/*.gz)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    captures = market_captures(args.capture)
    if args.quick:
        captures = captures[:1]
    rounds = 1 if args.quick else args.rounds
    results: dict = {"rounds": rounds, "captures": {}}
    goals = []
    with tempfile.TemporaryDirectory() as tmp:
        for cap in captures:
            plain = Path(tmp) / (cap.stem if cap.suffix == ".gz" else cap.name)
            gz = Path(tmp) / (plain.name + ".gz")
            if cap.suffix == ".gz":
                with gzip.open(cap, "rb") as src, open(plain, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                shutil.copy(cap, gz)
            else:
                shutil.copy(cap, plain)
                with open(cap, "rb") as src, gzip.open(gz, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            entry: dict = {"lines": None, "mb_plain": round(plain.stat().st_size / 1e6, 2)}
            for label, path in (("plain", plain), ("gzip", gz)):
                base, n = best_rate(json_loop, path, rounds)
                rate, _ = best_rate(reader_loop, path, rounds)
                ticks_rate, _ = best_rate(tick_loop, path, rounds)
                entry["lines"] = n
                entry[label] = {"json_loop_lines_per_s": round(base),
                                "reader_records_per_s": round(rate),
                                "reader_over_json_loop": round(rate / base, 3),
                                "ticks_with_book_lines_per_s": round(ticks_rate)}
                goals.append(goal(f"reader / json.loads loop, {cap.name} ({label})",
                                  round(rate / base, 3), ">= 1.0x", "ratio", rate >= base))
            big = four_times(plain, Path(tmp) / "x4.log")
            one, four = peak_memory(plain), peak_memory(big)
            big.unlink()
            entry["peak_mb_1x"] = round(one, 3)
            entry["peak_mb_4x"] = round(four, 3)
            goals.append(goal(f"reader peak memory, 4x the capture / 1x, {cap.name}",
                              round(four / one, 3), "flat (<= 1.1x)", "ratio",
                              four <= 1.1 * one))
            results["captures"][cap.name] = entry
            plain.unlink()
            gz.unlink()
    emit("tick_read", results, goals, quick=args.quick)


if __name__ == "__main__":
    main()
