"""Benchmark: the genetic algorithm against TPE and random search on the risk-model case.

The case is `core.tune-risk-model` (deepseek.risk): an MLP on scikit-learn's bundled breast
cancer data, tuned on 3-fold cross-validated AUC of the development part (80 %), scored on
the held-out 20 % that no search sees (each model trained on the whole development part,
averaged over three training seeds). Every tuner gets the same trial budget and the same
seeds; the defaults, and a logistic regression (scikit-learn) as the simple baseline, are
scored on the same held-out part. Then the scaling of workers: a fixed budget of GA trials
run by one `deepseek tune` worker process, and by two sharing one study (a journal file),
each process on one thread.

    python benchmarks/tuning.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, goal  # noqa: E402

SAMPLERS = ("nsga2", "tpe", "random")
DEFAULT_SAMPLER = "nsga2"  # what `deepseek tune` uses when a config names none


def logistic_baseline() -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from deepseek.risk import load_data, split

    x_dev, x_test, y_dev, y_test = split(*load_data())
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    model.fit(x_dev, y_dev)
    return float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]))


def run_tuner(sampler: str, seed: int, trials: int, epochs: int, folds: int) -> dict:
    from deepseek.risk import tune_risk_model

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        res = tune_risk_model(out_dir=Path(tmp), quiet=True, trials=trials, sampler=sampler,
                              seed=seed, epochs=epochs, folds=folds)
    m = res.metrics
    return {"sampler": sampler, "seed": seed, "cv_auc": round(m["cv_auc_tuned"], 5),
            "held_out_auc": round(m["held_out_auc_tuned"], 5),
            "held_out_auc_defaults": round(m["held_out_auc_defaults"], 5),
            "cv_auc_defaults": round(m["cv_auc_defaults"], 5),
            "pruned": int(m["trials_pruned"]), "seconds": round(time.perf_counter() - t0, 1),
            "params": {r[0]: r[2] for r in res.tables[0].rows}}


def _spin(n: int) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s


def cpu_scaling(n: int = 15_000_000) -> float:
    """This machine's own ceiling: two pure-Python jobs in two processes against one."""
    import multiprocessing as mp

    t0 = time.perf_counter()
    _spin(n)
    one = time.perf_counter() - t0
    ctx = mp.get_context("fork")
    t0 = time.perf_counter()
    procs = [ctx.Process(target=_spin, args=(n,)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return round(2 * one / (time.perf_counter() - t0), 2)


def workers_speedup(trials: int, epochs: int, folds: int) -> dict:
    """Wall time of the same GA budget with one worker process and with two."""
    cfg = {"space": {"lr": {"type": "logfloat", "low": 1e-4, "high": 3e-2},
                     "weight_decay": {"type": "logfloat", "low": 1e-6, "high": 1e-1},
                     "width": {"type": "int", "low": 4, "high": 128},
                     "dropout": {"type": "float", "low": 0.0, "high": 0.5},
                     "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128]}},
           "objective": {"pipeline": "core.risk-model", "metrics": {"val_auc": "maximize"},
                         "options": {"epochs": epochs, "folds": folds}},
           "sampler": {"name": "nsga2", "population_size": 8}, "trials": trials, "seed": 0}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = {"trials": trials, "threads_per_process": 1}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "risk.yaml"
        path.write_text(json.dumps(cfg))
        for workers in (1, 2):
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, "-m", "deepseek.cli", "-q", "tune", str(path),
                                  "--storage", f"journal:{tmp}/w{workers}.journal", "--study",
                                  f"w{workers}", "--workers", str(workers), "--out",
                                  f"{tmp}/out{workers}", "--json"],
                                 capture_output=True, text=True, env=env, timeout=3600)
            if res.returncode:
                raise RuntimeError(res.stderr[-2000:])
            out[f"seconds_{workers}_worker"] = round(time.perf_counter() - t0, 1)
            out[f"finished_{workers}_worker"] = json.loads(res.stdout)["trial_states"]
    out["speedup"] = round(out["seconds_1_worker"] / out["seconds_2_worker"], 2)
    out["machine_two_process_scaling"] = cpu_scaling()  # the ceiling, measured alongside
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="1 seed, 8 trials, 8 epochs, 2 folds, 8 trials for the worker "
                         "scaling (instead of 3 seeds, 24 trials, 25 epochs, 3 folds, 32)")
    args = ap.parse_args()
    seeds = [0] if args.quick else [0, 1, 2]
    trials, epochs, folds = (8, 8, 2) if args.quick else (24, 25, 3)
    runs = [run_tuner(s, seed, trials, epochs, folds) for seed in seeds for s in SAMPLERS]
    defaults = runs[0]["held_out_auc_defaults"]
    per = {}
    for s in SAMPLERS:
        mine = [r for r in runs if r["sampler"] == s]
        held = [r["held_out_auc"] for r in mine]
        per[s] = {"held_out_auc_mean": round(statistics.mean(held), 5),
                  "held_out_auc_sd": round(statistics.stdev(held), 5) if len(held) > 1
                  else 0.0,
                  "cv_auc_mean": round(statistics.mean(r["cv_auc"] for r in mine), 5),
                  "seconds_mean": round(statistics.mean(r["seconds"] for r in mine), 1)}
    winner = max(SAMPLERS, key=lambda s: per[s]["held_out_auc_mean"])
    runner_up = max((s for s in SAMPLERS if s != winner),
                    key=lambda s: per[s]["held_out_auc_mean"])
    scale = workers_speedup(8 if args.quick else 32, epochs, folds)
    results = {
        "case": "core.tune-risk-model: MLP on scikit-learn's bundled breast cancer data, "
                f"{folds}-fold CV AUC objective, {epochs} epochs, held-out 20 % test",
        "trials_per_run": trials, "seeds": seeds,
        "held_out_auc_defaults": defaults,
        "cv_auc_defaults": runs[0]["cv_auc_defaults"],
        "held_out_auc_logistic_regression": round(logistic_baseline(), 5),
        "per_sampler": per, "runs": runs, "winner": winner,
        "winner_margin_over_runner_up": round(per[winner]["held_out_auc_mean"]
                                              - per[runner_up]["held_out_auc_mean"], 5),
        "default_sampler": DEFAULT_SAMPLER, "workers": scale,
    }
    goals = [goal(f"held-out AUC of {s}'s best / defaults ({trials} trials, mean of "
                  f"{len(seeds)} seeds)", per[s]["held_out_auc_mean"], f"> {defaults}", "AUC",
                  per[s]["held_out_auc_mean"] > defaults) for s in SAMPLERS]
    goals.append(goal(f"the default tuner ({DEFAULT_SAMPLER}) is the winner here ({winner}, "
                      f"by {results['winner_margin_over_runner_up']} AUC)",
                      per[DEFAULT_SAMPLER]["held_out_auc_mean"], f"= best ({winner})", "AUC",
                      winner == DEFAULT_SAMPLER))
    goals.append(goal(f"{scale['trials']} trials: 2 worker processes / 1, wall time (this "
                      f"machine's own 2-process scaling: "
                      f"{scale['machine_two_process_scaling']}x)",
                      scale["speedup"], ">= 1.7x", "ratio", scale["speedup"] >= 1.7))
    emit("tuning", results, goals, quick=args.quick)


if __name__ == "__main__":
    main()
