"""Benchmark: `deepseek batch medical detect` over many small scans: a plain loop, local
worker processes and a two-node Ray cluster on this machine, and the scheduling overhead.

Writes N small phantom CT series (96 x 96 x 32 at 1.5 x 1.5 x 2 mm, one nodule each; N = 20,
--quick 8) and detects nodules in each with the same options (--window 64 --tta-top 0
--sizes 2 --no-lung-mask, the small-scan settings), four ways, each timed end to end (model loads
included):

* **command loop**: `deepseek medical detect SCAN --json` run scan after scan, what a shell
  loop does without `deepseek batch` (each run starts Python and loads the model);
* **in-process loop**: one process, the model loaded once, the scans one after another with
  every CPU to that process: the strongest single-process peer;
* **local**: `run_batch(..., cluster="local", workers=2)`: two worker processes, one thread each;
* **ray**: the same on a Ray cluster the benchmark starts here (`ray start --head` plus a
  second worker node, one CPU each; cluster start-up not counted, reported apart).

The scheduling overhead per item is measured with a step that does nothing: the time a
worker spends per item beyond the step, from the difference of two run lengths
((T(M2) - T(M1)) / (M2 - M1) x workers), locally and on Ray. Every batch's per-item results
are checked equal to the in-process loop's (but the timings).

The projection for an archive of 10,000 full-size scans on 50 nodes is the measured time of
one full-size phantom (512 x 512 x 300; --quick: 256 x 256 x 100) with the default settings on
this 2-core machine, times 10,000, over 50 nodes like it: a projection, not a
measurement.

    python benchmarks/batch.py [--quick] [--scans N] [--no-ray]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from _common import emit, goal  # noqa: E402

from deepseek import hookimpl  # noqa: E402
from tests.medical.scans import DETECT_FLAGS as FLAGS  # noqa: E402
from tests.medical.scans import DETECT_OPTIONS as OPTIONS  # noqa: E402
from tests.medical.scans import small_scans  # noqa: E402
from tests.ray_cluster import start_cluster, stop_cluster  # noqa: E402


def noop_step():  # type: ignore[no-untyped-def]
    """A step that does nothing: what is left of an item's time is the scheduling."""
    def step(source: str) -> dict:
        return {"source": source}
    return step


class NoopPlugin:
    @staticmethod
    @hookimpl
    def register_steps(register):  # type: ignore[no-untyped-def]
        register("bench.noop", noop_step, description="nothing, per item")


def results_of(out: Path, keys: dict[str, str]) -> dict[str, dict]:
    got = {}
    for src, key in keys.items():
        r = json.loads((out / "items" / f"{key}.json").read_text())
        r.pop("timings_s", None)
        got[src] = r
    return got


def overhead_ms(cluster: str, tmp: Path, workers: int, m1: int, m2: int) -> dict:
    """Per-item time a worker spends beyond a step that does nothing."""
    from deepseek.batch import run_batch
    from deepseek.plugins import temporary_plugin

    listing = tmp / "noop.txt"
    times = {}
    with temporary_plugin(NoopPlugin, name="bench"):
        for m in (m1, m2):
            listing.write_text("".join(f"noop:{cluster}:{m}:{i}\n" for i in range(m)))
            out = tmp / f"noop-{cluster.replace(':', '_').replace('/', '_')}-{m}"
            rep = run_batch("bench.noop", [f"@{listing}"], out, cluster=cluster,
                            workers=workers, progress=False)
            assert rep.ok == m, rep.failures
            times[m] = rep.seconds
    per = (times[m2] - times[m1]) / (m2 - m1) * workers
    return {"items": [m1, m2], "seconds": [round(times[m1], 3), round(times[m2], 3)],
            "workers": workers, "overhead_ms_per_item": round(1000 * per, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="8 scans; a 256x256x100 projection scan")
    ap.add_argument("--scans", type=int, default=None, help="small scans [20; 8 with --quick]")
    ap.add_argument("--no-ray", action="store_true", help="leave out the Ray cluster")
    args = ap.parse_args()
    n = args.scans or (8 if args.quick else 20)

    from click.testing import CliRunner

    from deepseek.batch import item_key, run_batch
    from deepseek.cli import build_cli
    from deepseek.medical.steps import detect_step
    from deepseek.medical.synthetic import write_phantom

    tmp = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    ray_groups: list[int] = []
    try:
        scans = [str(s) for s in small_scans(tmp / "scans", list(range(9000, 9000 + n)))]
        keys = {s: item_key(s) for s in scans}
        pattern = str(tmp / "scans" / "scan*")
        results: dict = {"scans": n, "scan_size": "96x96x32 at 1.5x1.5x2 mm",
                         "options": OPTIONS}

        # command loop: what a shell loop runs
        t0 = time.perf_counter()
        exe = str(Path(sys.executable).with_name("deepseek"))
        for s in scans:
            subprocess.run([exe, "-q", "medical", "detect", s, "--json", *FLAGS], check=True,
                           capture_output=True)
        t_cmd = time.perf_counter() - t0
        results["command_loop"] = {"seconds": round(t_cmd, 3), "items_per_s": n / t_cmd}

        # in-process loop: the model once, every CPU
        t0 = time.perf_counter()
        step = detect_step(**OPTIONS)
        t_load = time.perf_counter() - t0
        ref = {}
        for s in scans:
            r = step(s)
            r.pop("timings_s")
            ref[s] = json.loads(json.dumps(r, default=str))
        t_loop = time.perf_counter() - t0
        results["in_process_loop"] = {"seconds": round(t_loop, 3), "items_per_s": n / t_loop,
                                      "model_load_s": round(t_load, 3),
                                      "per_item_s": (t_loop - t_load) / n}

        # local workers
        rep = run_batch("medical detect", [pattern], tmp / "local", options=OPTIONS, workers=2,
                        progress=False)
        assert rep.ok == n, rep.failures
        same_local = results_of(tmp / "local", keys) == ref
        results["local"] = {"seconds": round(rep.seconds, 3), "items_per_s": rep.items_per_s,
                            "where": rep.where, "results_equal_loop": same_local}
        results["local_overhead"] = overhead_ms("local", tmp, 2, 40, 200)

        if not args.no_ray:
            t0 = time.perf_counter()
            addresses, ray_groups = start_cluster(tempfile.mkdtemp(prefix="rb", dir="/tmp"),
                                                  [str(HERE)])
            t_start, addr = time.perf_counter() - t0, addresses["gcs"]
            rep = run_batch("medical detect", [pattern], tmp / "ray", options=OPTIONS,
                            cluster=addr, progress=False)
            assert rep.ok == n, rep.failures
            results["ray"] = {"seconds": round(rep.seconds, 3),
                              "items_per_s": rep.items_per_s, "where": rep.where,
                              "cluster_start_s": round(t_start, 2),
                              "results_equal_loop": results_of(tmp / "ray", keys) == ref}
            results["ray_overhead"] = overhead_ms(addr, tmp, 2, 40, 200)
            stop_cluster(ray_groups)
            ray_groups = []

        # one full-size scan with the default settings, for the archive projection
        size, slices = (256, 100) if args.quick else (512, 300)
        big = tmp / "big"
        write_phantom(big, seed=520_000, size=size, slices=slices,
                      pixel_spacing=0.7 * 512 / size, slice_step=1.0, n_nodules=10)
        t0 = time.perf_counter()
        res = CliRunner().invoke(build_cli(), ["-q", "medical", "detect", str(big), "--json"])
        assert res.exit_code == 0, res.output
        t_big = time.perf_counter() - t0
        hours = t_big * 10_000 / 50 / 3600
        results["projection"] = {
            "label": "a projection, not a measurement",
            "scan": f"{size}x{size}x{slices} phantom, default detect settings",
            "scan_seconds_on_this_2_core_machine": round(t_big, 2),
            "archive_scans": 10_000, "nodes": 50, "node": "2 cores like this machine",
            "hours": round(hours, 2),
            "rule": "scan seconds x scans / nodes (each node one scan at a time on both "
                    "cores; the batch's own overhead per item is measured above)"}

        base = results["command_loop"]["items_per_s"]
        best = results["in_process_loop"]["items_per_s"]
        goals = [goal(f"local, 2 workers, {n} scans: items/s over the command loop's",
                      results["local"]["items_per_s"] / base, ">= 1.7", "x",
                      results["local"]["items_per_s"] >= 1.7 * base),
                 goal(f"local, 2 workers, {n} scans: items/s over the in-process loop's "
                      "(model loaded once, 2 threads)",
                      results["local"]["items_per_s"] / best, ">= 1.0", "x",
                      results["local"]["items_per_s"] >= best),
                 goal("local: scheduling overhead per item (no-op step, 40 vs 200 items)",
                      results["local_overhead"]["overhead_ms_per_item"], "<= 50", "ms",
                      results["local_overhead"]["overhead_ms_per_item"] <= 50),
                 goal(f"local, {n} scans: per-item results equal the in-process loop's",
                      float(same_local), "== 1", "bool", same_local)]
        if "ray" in results:
            ray_r = results["ray"]
            goals += [goal(f"ray, 2 nodes x 1 CPU, {n} scans: items/s over the command "
                           "loop's", ray_r["items_per_s"] / base, ">= 1.7", "x",
                           ray_r["items_per_s"] >= 1.7 * base),
                      goal(f"ray, 2 nodes x 1 CPU, {n} scans: items/s over the in-process "
                           "loop's", ray_r["items_per_s"] / best, ">= 1.0", "x",
                           ray_r["items_per_s"] >= best),
                      goal("ray: scheduling overhead per item (no-op step, 40 vs 200 items)",
                           results["ray_overhead"]["overhead_ms_per_item"], "<= 50", "ms",
                           results["ray_overhead"]["overhead_ms_per_item"] <= 50),
                      goal(f"ray, {n} scans: per-item results equal the in-process loop's",
                           float(ray_r["results_equal_loop"]), "== 1", "bool",
                           ray_r["results_equal_loop"])]
        emit("batch", results, goals, quick=args.quick)
    finally:
        if ray_groups:
            stop_cluster(ray_groups)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
