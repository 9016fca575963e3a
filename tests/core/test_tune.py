"""deepseek.tune: the genetic algorithm finds what it should, studies are shared and resumed,
bad input is a clear error or a recorded failed trial."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

optuna = pytest.importorskip("optuna", reason="the tune extra is not installed")

from deepseek.tune import (  # noqa: E402
    TuneConfig,
    TuneError,
    make_storage,
    open_study,
    run_worker,
    tune,
)

SPACE_2D = {"x": {"type": "float", "low": -1.0, "high": 1.0},
            "y": {"type": "float", "low": -1.0, "high": 1.0}}


def _config(space=None, metrics=None, **kw):
    return TuneConfig.from_dict({"space": space or SPACE_2D,
                                 "objective": {"metrics": metrics or {"value": "maximize"}},
                                 **kw})


def test_the_genetic_algorithm_finds_the_optimum_region():
    cfg = _config(sampler={"name": "nsga2", "population_size": 10}, trials=80, seed=3)
    res = tune(cfg, lambda p, t: -(p["x"] - 0.3) ** 2 - (p["y"] + 0.2) ** 2, progress=False)
    best = res.best_params
    assert abs(best["x"] - 0.3) < 0.15 and abs(best["y"] + 0.2) < 0.15, best
    assert res.counts() == {"COMPLETE": 80}
    # the same search with a fixed seed is the same search
    again = tune(cfg, lambda p, t: -(p["x"] - 0.3) ** 2 - (p["y"] + 0.2) ** 2,
                 progress=False)
    assert again.best_params == best


def test_two_objectives_give_a_non_dominated_front(tmp_path):
    cfg = _config(space={"x": {"type": "float", "low": -2.0, "high": 3.0}},
                  metrics={"a": "minimize", "b": "minimize"},
                  sampler={"name": "nsga2", "population_size": 8}, trials=48, seed=1)
    res = tune(cfg, lambda p, t: (p["x"] ** 2, (p["x"] - 1) ** 2), out_dir=tmp_path,
               progress=False)
    front = [b["values"] for b in res.best]
    assert len(front) >= 3
    for i, u in enumerate(front):
        for j, v in enumerate(front):
            dominated = all(a <= b for a, b in zip(v, u)) and any(a < b for a, b in zip(v, u))
            assert i == j or not dominated, (u, v)
    assert all(-0.05 <= b["params"]["x"] <= 1.05 for b in res.best)  # the Pareto set is [0, 1]
    assert (tmp_path / "pareto.png").stat().st_size > 5_000
    assert (tmp_path / "trials.csv").read_text().startswith("number,state,value_0,value_1,x")


def test_a_failing_objective_is_a_failed_trial_and_the_study_goes_on():
    calls = []

    def objective(p, trial):
        calls.append(trial.number)
        if trial.number % 3 == 1:
            raise RuntimeError("the model diverged")
        return p["x"]

    res = tune(_config(trials=9, sampler="random", seed=0), objective, progress=False)
    assert res.counts() == {"COMPLETE": 6, "FAIL": 3} and len(calls) == 9
    failed = [t for t in res.trials if t["state"] == "FAIL"]
    assert failed[0]["error"] == "RuntimeError: the model diverged"
    res = tune(_config(trials=2), lambda p, t: float("nan"), progress=False)
    assert [t["error"] for t in res.trials] == [
        "TuneError: the objective returned a non-finite value nan"] * 2
    assert res.best == []  # nothing to report as best


def test_an_interrupted_study_resumes_and_a_changed_config_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    seen = []
    cfg = _config(trials=5, sampler="random", seed=1)
    tune(cfg, lambda p, t: seen.append(t.number) or p["x"], storage=url, study="s",
         progress=False)
    res = tune(cfg, lambda p, t: seen.append(t.number) or p["x"], storage=url, study="s",
               trials=8, progress=False)
    assert seen == list(range(8)) and len(res.trials) == 8  # three more, numbered on
    res = tune(cfg, lambda p, t: p["x"], storage=url, study="s", progress=False)
    assert len(res.trials) == 8  # the budget of 5 is long reached: nothing to do
    other = _config(trials=5, sampler="tpe", seed=1)
    with pytest.raises(TuneError, match="already exists with another config"):
        tune(other, lambda p, t: p["x"], storage=url, study="s", progress=False)


@pytest.mark.parametrize("space,pattern", [
    ({}, "'space' must name at least one parameter"),
    ({"x": {"type": "float", "low": 1, "high": 1}}, r"low \(1\) must be below high \(1\)"),
    ({"x": {"type": "logfloat", "low": 0, "high": 1}}, "a log scale needs low > 0"),
    ({"x": {"type": "categorical", "choices": []}}, "needs a non-empty 'choices' list"),
    ({"x": {"type": "int", "low": 0.5, "high": 4}}, "needs whole low and high"),
    ({"x": {"type": "gaussian", "low": 0, "high": 1}}, "type must be one of"),
    ({"x": {"type": "float", "low": 0, "high": 1, "scale": 2}}, r"unknown key\(s\) \['scale'\]"),
    ({"x": [0, 1]}, "give a mapping"),
])
def test_bad_search_spaces(space, pattern):
    with pytest.raises(TuneError, match=pattern):
        TuneConfig.from_dict({"space": space})


def test_bad_configs_storages_and_pipelines(tmp_path):
    with pytest.raises(TuneError, match="sampler.name must be one of"):
        _config(sampler={"name": "cmaes-ish"})
    with pytest.raises(TuneError, match="direction must be maximize or minimize"):
        _config(metrics={"auc": "up"})
    with pytest.raises(TuneError, match="pruning needs a single objective"):
        _config(metrics={"a": "maximize", "b": "minimize"}, pruner="median")
    with pytest.raises(TuneError, match="unknown key"):
        TuneConfig.from_dict({"space": SPACE_2D, "trails": 3})
    good = tmp_path / "good.yaml"  # 1e-4 without a dot is a string to PyYAML: still a number
    good.write_text("space:\n  lr: {type: logfloat, low: 1e-4, high: 1e-1}\ntrials: 3\n")
    assert TuneConfig.load(good).space["lr"].low == 1e-4
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("space: [unclosed")
    with pytest.raises(TuneError, match="bad.yaml: not valid YAML"):
        TuneConfig.load(bad_yaml)
    with pytest.raises(TuneError, match=r"cannot open the study storage "
                       r"postgresql://tuner:\*\*\*@127.0.0.1:1/studies"):
        make_storage("postgresql://tuner:secret@127.0.0.1:1/studies")
    with pytest.raises(TuneError, match="use sqlite:///FILE, journal:FILE or postgresql"):
        make_storage("redis://localhost")
    with pytest.raises(TuneError, match="no study 'nope'"):
        open_study(None, f"sqlite:///{tmp_path / 'x.db'}", "nope")
    cfg = TuneConfig.from_dict({"space": SPACE_2D, "objective": {"pipeline": "no-such-pipe"}})
    with pytest.raises(Exception, match="unknown pipeline 'no-such-pipe'"):
        tune(cfg, progress=False)
    with pytest.raises(TuneError, match="workers > 1 share a study"):
        tune(_config(), workers=2, progress=False)


RISK_FAST = {"epochs": 3, "folds": 2}


def _risk_config(path, trials, **extra):
    path.write_text(json.dumps({
        "space": {"lr": {"type": "logfloat", "low": 1e-3, "high": 3e-2},
                  "width": {"type": "int", "low": 4, "high": 32}},
        "objective": {"pipeline": "core.risk-model", "metrics": {"val_auc": "maximize"},
                      "options": RISK_FAST},
        "sampler": {"name": "nsga2", "population_size": 4}, "trials": trials, **extra}))
    return path


def _workers_share_a_study(url, tmp_path, trials=4):
    """Start the study, then a `deepseek tune worker` process and this test process as a
    second worker on it, at the same time."""
    cfg = TuneConfig.load(_risk_config(tmp_path / "risk.yaml", trials))
    open_study(cfg, url, "shared")
    proc = subprocess.Popen([sys.executable, "-m", "deepseek.cli", "-q", "tune", "worker",
                             "--storage", url, "--study", "shared", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        here = run_worker(url, "shared", progress=False)
    finally:
        out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    study = open_study(None, url, "shared")
    trials_ = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials_]
    done = [t for t in trials_ if t.state.is_finished()]
    assert len(numbers) == len(set(numbers))  # no trial number twice
    assert len(done) >= trials and all(t.state.name == "COMPLETE" for t in done)
    best = max(t.value for t in done)
    assert study.best_value == best  # the best over all workers
    assert len(here.trials) >= trials  # the in-process worker sees the whole study
    return json.loads(out)["trial_states"]


@pytest.mark.slow
def test_two_worker_processes_share_a_sqlite_study(tmp_path):
    _workers_share_a_study(f"sqlite:///{tmp_path / 'shared.db'}", tmp_path)


@pytest.mark.slow
def test_two_worker_processes_share_a_postgresql_study(tmp_path, postgres_url):
    _workers_share_a_study(postgres_url, tmp_path)


@pytest.mark.slow
def test_the_risk_model_case_on_a_small_budget(tmp_path):
    from deepseek.plugins import pipelines

    res = pipelines().get("core.tune-risk-model")(out_dir=tmp_path, quiet=True, trials=4,
                                                  seed=0, epochs=3, folds=2)
    assert res.error is None
    m = res.metrics
    assert 0.5 < m["held_out_auc_defaults"] <= 1 and 0.5 < m["held_out_auc_tuned"] <= 1
    assert m["trials"] == 4 and (tmp_path / "history.png").is_file()
    assert [r[0] for r in res.tables[0].rows] == ["lr", "weight_decay", "width", "dropout",
                                                   "batch_size"]


def test_tune_command_and_its_json(tmp_path):
    from click.testing import CliRunner

    from deepseek.cli import build_cli

    cfg = _risk_config(tmp_path / "risk.yaml", 2)
    res = CliRunner().invoke(build_cli(), ["-q", "tune", str(cfg), "--storage",
                                           f"journal:{tmp_path / 'j.log'}", "--study", "cli",
                                           "--out", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["study"] == "cli" and data["trial_states"] == {"COMPLETE": 2}
    assert (tmp_path / "out" / "best.json").is_file()
    res = CliRunner().invoke(build_cli(), ["tune", "worker", "--storage",
                                           f"journal:{tmp_path / 'j.log'}"])
    assert res.exit_code == 2 and "give --storage URL and --study NAME" in res.output
