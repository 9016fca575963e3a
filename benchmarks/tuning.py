"""Benchmark: which sampler `deepseek tune` should use by default, on functions with known
optima and on a real credit-risk model.

Samplers, each through `deepseek.tune` (so that a parameter set already evaluated is never
evaluated again, whatever proposes it): `ga` (the project's genetic algorithm: Optuna's NSGA-II
with a population sized to the budget and BLX-alpha crossover), `nsga2` (Optuna's NSGA-II with
its defaults: population 50, uniform crossover), `tpe`, `cmaes` (numeric spaces only) and
`random`; each with 10 seeds at budgets of 24 and 64 trials.

* Branin (2-D, minimum 0.397887) and Hartmann-6 (6-D, maximum 3.32237): the mean regret (the
  distance of the best value found from the optimum) over the seeds, with its standard error;
  and the GA with each of Optuna's crossovers (blx, uniform, sbx, vsbx, undx, spx).
* The credit-risk MLP (`deepseek.finance.risk`) on the UCI "default of credit card clients"
  table in ../shared/data/credit (a stratified 60/20/20 split, the same for every run): the
  sampler tunes the learning rate, the L2 penalty, width, depth and dropout on validation AUC;
  the tuned parameters are then trained once and scored on the test part (mean over the
  seeds with a 95 % t-interval). Beside them, in the same run: the MLP's defaults (trained
  with each seed) and scikit-learn's logistic regression and gradient boosting (bootstrap
  intervals). The runs are spread over `--jobs` processes of one thread each.

For each sampler also: how many proposals were parameter sets already evaluated (repeats,
given their stored value, never evaluated twice and not counted against the budget).

    python benchmarks/tuning.py [--quick] [--no-credit] [--credit-seeds N] [--rows N]
                                [--epochs E] [--jobs J] [--data PATH]
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, goal  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLERS = ("ga", "nsga2", "tpe", "cmaes", "random")
BRANIN_MIN = 0.397887
HARTMANN_MAX = 3.32237
H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
H_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
H_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                       [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])


def branin(p: dict) -> float:
    x, y = p["x1"], p["x2"]
    return float((y - 5.1 / (4 * math.pi ** 2) * x ** 2 + 5 / math.pi * x - 6) ** 2
                 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x) + 10)


def hartmann6(p: dict) -> float:
    x = np.array([p[f"x{i}"] for i in range(1, 7)])
    return float(np.sum(H_ALPHA * np.exp(-np.sum(H_A * (x - H_P) ** 2, axis=1))))


FUNCTIONS = {
    "branin": ({"x1": {"type": "float", "low": -5.0, "high": 10.0},
                "x2": {"type": "float", "low": 0.0, "high": 15.0}}, branin, "minimize",
               lambda best: best - BRANIN_MIN),
    "hartmann6": ({f"x{i}": {"type": "float", "low": 0.0, "high": 1.0} for i in range(1, 7)},
                  hartmann6, "maximize", lambda best: HARTMANN_MAX - best),
}


def run_sampler(space: dict, fn, direction: str, sampler: str, trials: int, seed: int,
                options: dict | None = None) -> dict:
    from deepseek.tune import TuneConfig, tune

    cfg = TuneConfig.from_dict({"space": space, "objective": {"metrics": {"v": direction}},
                                "sampler": {"name": sampler, **(options or {})},
                                "trials": trials, "seed": seed})
    evaluations = 0

    def objective(p: dict, trial) -> float:
        nonlocal evaluations
        evaluations += 1
        return fn(p)

    res = tune(cfg, objective, progress=False)
    repeats = sum(1 for t in res.trials if t.get("repeat_of") is not None)
    return {"best": res.best_value[0], "params": res.best_params, "evaluations": evaluations,
            "repeats": repeats, "trials": len(res.trials)}


def known_optima(samplers: list[str], budgets: list[int], seeds: int) -> dict:
    out: dict = {}
    for name, (space, fn, direction, regret) in FUNCTIONS.items():
        out[name] = {}
        for budget in budgets:
            out[name][str(budget)] = {}
            for sampler in samplers:
                runs = [run_sampler(space, fn, direction, sampler, budget, s)
                        for s in range(seeds)]
                regrets = [regret(r["best"]) for r in runs]
                out[name][str(budget)][sampler] = {
                    "mean_regret": round(statistics.fmean(regrets), 5),
                    "stderr": round(statistics.stdev(regrets) / math.sqrt(seeds), 5)
                    if seeds > 1 else None,
                    "evaluations": sum(r["evaluations"] for r in runs),
                    "repeats_proposed": sum(r["repeats"] for r in runs),
                    "wasted_on_repeats": sum(r["evaluations"] for r in runs) - budget * seeds}
    return out


CROSSOVERS = ("blx", "uniform", "sbx", "vsbx", "undx", "spx")


def ga_crossovers(budgets: list[int], seeds: int) -> dict:
    """The GA (population sized to the budget) with each of Optuna's crossovers: the mean
    regret over the seeds on each known-optimum function (the ``ga`` sampler uses BLX-alpha)."""
    out: dict = {}
    for name, (space, fn, direction, regret) in FUNCTIONS.items():
        for budget in budgets:
            out[f"{name}_{budget}"] = {}
            for crossover in CROSSOVERS:
                regrets = [regret(run_sampler(space, fn, direction, "ga", budget, s,
                                              {"crossover": crossover})["best"])
                           for s in range(seeds)]
                out[f"{name}_{budget}"][crossover] = round(statistics.fmean(regrets), 5)
    return out


@functools.lru_cache(maxsize=1)
def _credit_arrays(data: str, rows: int | None) -> tuple:
    """The shared credit table, split and encoded once per process."""
    from deepseek.finance import risk

    table = risk.read_table(data, "DEFAULT", categorical=("SEX", "EDUCATION", "MARRIAGE"))
    if rows and rows < len(table):
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(np.arange(len(table)), train_size=rows, stratify=table.y,
                                   random_state=1)
        table = table.subset(np.sort(keep))
    train, val, test = risk.split(table)
    enc = risk.Encoder().fit(train)
    return (table.describe(), enc.transform(train), train.y, enc.transform(val), val.y,
            enc.transform(test), test.y)


def _credit_job(job: tuple) -> dict:
    """One tuning run of the credit MLP (a process of the pool, one thread): tune on the
    validation part, train the best parameters once, score them on the test part."""
    import torch

    from deepseek.finance import risk

    torch.set_num_threads(1)
    data, rows, sampler, budget, seed, epochs = job
    _, xtr, ytr, xva, yva, xte, yte = _credit_arrays(data, rows)
    t0 = time.perf_counter()
    if sampler == "defaults":
        best, info = dict(risk.MLP_DEFAULTS), {"best_validation_auc": None, "repeats": 0}
    else:
        best, info = risk.tune_mlp(xtr, ytr, xva, yva, trials=budget, sampler=sampler,
                                   seed=seed, epochs=epochs, progress=False)
    net, val_auc = risk.train_mlp(xtr, ytr, xva, yva, best, epochs=epochs, seed=seed)
    return {"sampler": sampler, "budget": budget, "seed": seed,
            "test_auc": risk.scores(yte, risk.mlp_probabilities(net, xte), 0)["auc"],
            "validation_auc": info["best_validation_auc"] or val_auc,
            "repeats": info["repeats"], "seconds": time.perf_counter() - t0}


def _mean_ci(values: list[float]) -> dict:
    from scipy import stats

    m = statistics.fmean(values)
    half = (stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) /
            math.sqrt(len(values))) if len(values) > 1 else math.nan
    return {"mean": round(m, 5), "ci95": [round(m - half, 5), round(m + half, 5)],
            "range": [round(min(values), 5), round(max(values), 5)]}


def credit_case(data: Path, samplers: list[str], budgets: list[int], seeds: int,
                rows: int | None, epochs: int, jobs: int) -> dict:
    from concurrent.futures import ProcessPoolExecutor

    from deepseek.finance import risk

    described, xtr, ytr, _, _, xte, yte = _credit_arrays(str(data), rows)
    out: dict = {"data": {**described, "train_rows": len(ytr), "test_rows": len(yte)},
                 "epochs": epochs, "seeds": seeds, "processes": jobs,
                 "note": "the defaults and every tuning run trained with each seed; the test "
                         "part is scored once per run"}
    for name, model in risk.baselines(xtr, ytr).items():
        out[name] = risk.scores(yte, model.predict_proba(xte)[:, 1], 1000)
    work = [(str(data), rows, "defaults", 0, seed, epochs) for seed in range(seeds)]
    work += [(str(data), rows, sampler, budget, seed, epochs) for budget in budgets
             for sampler in samplers for seed in range(seeds)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(jobs) as pool:
        done = list(pool.map(_credit_job, work))
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    groups: dict = {}
    for r in done:
        key = "defaults" if r["sampler"] == "defaults" else f"{r['sampler']}_{r['budget']}"
        groups.setdefault(key, []).append(r)
    for key, runs in groups.items():
        out[key] = {"test_auc": _mean_ci([r["test_auc"] for r in runs]),
                    "validation_auc_mean": round(statistics.fmean(r["validation_auc"]
                                                                  for r in runs), 5),
                    "repeats_proposed": sum(r["repeats"] for r in runs),
                    "seconds_per_run": round(statistics.fmean(r["seconds"] for r in runs), 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="3 seeds at a budget of 24 trials on the known-optimum functions, the "
                         "credit case on 3000 rows with 2 seeds, tpe and ga only (instead of "
                         "10 seeds at 24 and 64 trials, every sampler)")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "credit" /
                    "taiwan-default-of-credit-card-clients.csv")
    ap.add_argument("--no-credit", action="store_true",
                    help="only the known-optimum functions")
    ap.add_argument("--rows", type=int, default=None,
                    help="a stratified subsample of the credit table [all rows]")
    ap.add_argument("--credit-seeds", type=int, default=None,
                    help="seeds of the credit case [10; 2 with --quick]")
    ap.add_argument("--epochs", type=int, default=12,
                    help="the MLP's epoch cap (early stopping after 5 without progress) [12]")
    ap.add_argument("--jobs", type=int, default=2,
                    help="processes for the credit case's runs, one thread each [2]")
    args = ap.parse_args()
    seeds = 3 if args.quick else 10
    budgets = [24] if args.quick else [24, 64]
    from deepseek.tune import DEFAULT_SAMPLER

    results: dict = {"samplers": list(SAMPLERS), "budgets": budgets, "seeds": seeds,
                     "default_sampler": DEFAULT_SAMPLER}
    t0 = time.perf_counter()
    results["known_optima"] = known_optima(list(SAMPLERS), budgets, seeds)
    results["known_optima_seconds"] = round(time.perf_counter() - t0, 1)
    results["ga_crossovers"] = ga_crossovers(budgets, seeds)
    credit_samplers = (list(dict.fromkeys([DEFAULT_SAMPLER, "ga"])) if args.quick
                       else ["ga", "nsga2", "tpe", "cmaes", "random"])
    if args.no_credit:
        results["credit"] = "not run (--no-credit)"
    elif args.data.is_file():
        results["credit"] = credit_case(
            args.data, credit_samplers, budgets,
            args.credit_seeds or (2 if args.quick else 10),
            args.rows or (3000 if args.quick else None), args.epochs, args.jobs)
    else:
        results["credit"] = f"not run: {args.data} is absent (../shared/data/credit)"
    goals = []
    for fn, per_budget in results["known_optima"].items():
        for budget, table in per_budget.items():
            best = min(table, key=lambda s: table[s]["mean_regret"])
            goals.append(goal(f"{fn}, {budget} trials, {seeds} seeds: the default sampler "
                              f"({DEFAULT_SAMPLER}) has the lowest mean regret (best: {best})",
                              table[DEFAULT_SAMPLER]["mean_regret"], "lowest of all samplers",
                              "regret", best == DEFAULT_SAMPLER))
            xo = results["ga_crossovers"][f"{fn}_{budget}"]
            goals.append(goal(f"{fn}, {budget} trials: the GA's crossover (blx) has a lower "
                              "mean regret than NSGA-II's default (uniform)", xo["blx"],
                              f"< {xo['uniform']}", "regret", xo["blx"] < xo["uniform"]))
            goals.append(goal(f"{fn}, {budget} trials: the GA's evaluations spent on repeats",
                              table["ga"]["wasted_on_repeats"], "0", "trials",
                              table["ga"]["wasted_on_repeats"] == 0))
    if isinstance(results["credit"], dict):
        c = results["credit"]
        base_name = max(("logistic regression", "gradient boosting"), key=lambda b: c[b]["auc"])
        base = c[base_name]["auc"]
        defaults = c["defaults"]["test_auc"]["mean"]
        for budget in budgets:
            tuned = c[f"{DEFAULT_SAMPLER}_{budget}"]["test_auc"]["mean"]
            goals.append(goal(f"credit MLP, {DEFAULT_SAMPLER} {budget} trials: mean test AUC "
                              f"over the MLP defaults' ({defaults:.4f})", tuned,
                              "> the defaults", "AUC", tuned > defaults))
            goals.append(goal(f"credit MLP, {DEFAULT_SAMPLER} {budget} trials: mean test AUC "
                              f"against the best baseline ({base_name}, {base:.4f})", tuned,
                              ">= the best baseline", "AUC", tuned >= base))
    emit("tuning", results, goals, quick=args.quick)


if __name__ == "__main__":
    main()
