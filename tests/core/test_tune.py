"""deepseek.tune: the samplers find what they should, a parameter set is never evaluated
twice, studies are shared and resumed across processes (a killed worker's trial is failed
and retried), bad input is a clear error or a recorded failed trial."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

optuna = pytest.importorskip("optuna", reason="the tune extra is not installed")

from deepseek.tune import (  # noqa: E402
    DEFAULT_SAMPLER,
    TuneConfig,
    TuneError,
    ga_population,
    make_storage,
    open_study,
    pipeline_objective,
    run_worker,
    tune,
)
from tests.shared import own_sigterm_handler, process_ended  # noqa: E402

SPACE_2D = {"x": {"type": "float", "low": -1.0, "high": 1.0},
            "y": {"type": "float", "low": -1.0, "high": 1.0}}


def _config(space=None, metrics=None, **kw):
    return TuneConfig.from_dict({"space": space or SPACE_2D,
                                 "objective": {"metrics": metrics or {"value": "maximize"}},
                                 **kw})


@pytest.mark.parametrize("sampler", ["ga", "tpe"])
def test_the_samplers_find_the_optimum_region(sampler):
    cfg = _config(sampler={"name": sampler}, trials=60, seed=3)
    res = tune(cfg, lambda p, t: -(p["x"] - 0.3) ** 2 - (p["y"] + 0.2) ** 2, progress=False)
    best = res.best_params
    assert abs(best["x"] - 0.3) < 0.15 and abs(best["y"] + 0.2) < 0.15, best
    assert res.counts() == {"COMPLETE": len(res.trials)} and len(res.trials) >= 60
    # the same search with a fixed seed is the same search
    again = tune(cfg, lambda p, t: -(p["x"] - 0.3) ** 2 - (p["y"] + 0.2) ** 2,
                 progress=False)
    assert again.best_params == best


def test_the_ga_population_follows_the_budget_and_tpe_is_the_default():
    assert [ga_population(b) for b in (6, 12, 24, 64, 200)] == [4, 4, 8, 16, 28]
    assert all(ga_population(b) <= max(4, b // 3) for b in range(6, 500))
    assert DEFAULT_SAMPLER == "tpe" and _config().sampler == {"name": "tpe"}
    from deepseek.tune import make_sampler

    assert make_sampler({"name": "ga"}, budget=24)._population_size == 8
    assert make_sampler({"name": "nsga2"}, budget=24)._population_size == 50
    from optuna.samplers.nsgaii import BLXAlphaCrossover, SBXCrossover, UniformCrossover

    def crossover(spec):
        return make_sampler(spec)._child_generation_strategy._crossover

    assert isinstance(crossover({"name": "ga"}), BLXAlphaCrossover)
    assert isinstance(crossover({"name": "nsga2"}), UniformCrossover)
    assert isinstance(crossover({"name": "ga", "crossover": "sbx"}), SBXCrossover)
    with pytest.raises(TuneError, match="sampler.crossover 'blend': use one of blx, uniform"):
        make_sampler({"name": "ga", "crossover": "blend"})


def test_a_parameter_set_is_never_evaluated_twice():
    """Six distinct points: a genetic algorithm re-proposes them; each is evaluated once,
    and the repeats (given the stored value) do not count against the budget."""
    space = {"a": {"type": "categorical", "choices": ["x", "y", "z"]},
             "b": {"type": "categorical", "choices": [1, 2]}}
    seen = []
    cfg = _config(space=space, sampler={"name": "ga"}, trials=6, seed=0)
    res = tune(cfg, lambda p, t: seen.append((p["a"], p["b"])) or len(seen), progress=False)
    assert len(seen) == len(set(seen)) == 6  # every set once, all of them
    repeats = [t for t in res.trials if t["repeat_of"] is not None]
    for r in repeats:
        first = next(t for t in res.trials if t["number"] == r["repeat_of"])
        assert r["params"] == first["params"] and r["values"] == first["values"]


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
    # three more evaluated; the resumed sampler (the same seed) first re-proposes the five
    # sets it proposed before: those are repeats, given their values, not evaluated again
    assert seen[:5] == list(range(5)) and len(seen) == 8
    evaluated = [t for t in res.trials if t["repeat_of"] is None]
    assert len(evaluated) == 8 and len({tuple(t["params"].items()) for t in evaluated}) == 8
    before = len(res.trials)
    res = tune(cfg, lambda p, t: p["x"], storage=url, study="s", progress=False)
    assert len(res.trials) == before  # the budget of 5 is long reached: nothing to do
    other = _config(trials=5, sampler="tpe", seed=1)
    with pytest.raises(TuneError, match="already exists with another config"):
        tune(other, lambda p, t: p["x"], storage=url, study="s", progress=False)


def test_a_stopped_study_ends_after_the_trial_in_hand_and_resumes(tmp_path, monkeypatch):
    """A stop (SIGTERM: a service manager's, `timeout`, `kill`) ends the search after the
    trial in hand, which finishes and counts: no trial is left failed or running, and the
    study resumes to its budget when started again. `deepseek tune` takes SIGTERM so, says
    it stopped (exit status 143: not done), and puts the handler it was given back."""
    import signal

    from click.testing import CliRunner

    from deepseek.cli import build_cli
    from deepseek.service import SignalEvent

    url = f"sqlite:///{tmp_path / 'study.db'}"
    cfg = _config(trials=6, sampler="random", seed=1)
    stop = SignalEvent()

    def objective(p, t):  # the stop comes during the second trial
        if t.number == 1:
            stop.set()
        return p["x"]

    res = tune(cfg, objective, storage=url, study="s", progress=False, stop=stop)
    assert res.stopped and res.to_dict()["stopped"] and res.counts() == {"COMPLETE": 2}
    res = tune(cfg, objective, storage=url, study="s", progress=False)
    evaluated = [t for t in res.trials if t["repeat_of"] is None]  # (the resumed sampler
    assert not res.stopped and len(evaluated) == 6  # proposes its first two sets again)
    assert {t["state"] for t in res.trials} == {"COMPLETE"}
    stop.close()

    import deepseek.tune as tune_module

    def stopped_at_once(config, out_dir=None):  # the pipeline, with a stop in its first trial
        def objective(params, trial):
            os.kill(os.getpid(), signal.SIGTERM)
            return 0.5
        return objective

    monkeypatch.setattr(tune_module, "pipeline_objective", stopped_at_once)
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    with own_sigterm_handler() as handler:  # the one the command is given
        out = CliRunner().invoke(build_cli(), [
            "tune", str(_risk_config(tmp_path / "risk.yaml", 5)), "--storage", db,
            "--study", "cli", "--out", str(tmp_path / "report"), "--json"])
    assert out.exit_code == 143, out.output
    assert json.loads(out.stdout)["trial_states"] == {"COMPLETE": 1}
    assert "stopped after the trials in hand (SIGTERM): {'COMPLETE': 1}; the same command " \
        "resumes the study (exit status 143)" in out.stderr
    assert handler["calls"] == 0 and handler["after"] is handler["own"]


@pytest.mark.slow
def test_workers_end_after_their_trials_when_the_tune_command_is_stopped_or_killed(tmp_path):
    """`deepseek tune CONFIG --workers 2` as `timeout` or a service manager stops it
    (SIGTERM to it alone): it passes the stop on, each worker ends after its trial in hand,
    and it exits 143 with its report. Killed outright (SIGKILL, which it cannot pass on), its
    workers end by themselves after their trials (Linux's parent-death signal). Before, the
    workers ran the study on to its budget, alone."""
    import signal

    config = _risk_config(tmp_path / "risk.yaml", 100_000)
    out = tmp_path / "out"
    journal = f"journal:{out / 'study.journal'}"

    def started(extra=(), before=frozenset()):
        proc = subprocess.Popen([sys.executable, "-m", "deepseek.cli", "-q", "tune",
                                 str(config), "--workers", "2", "--out", str(out), *extra],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while True:  # until each worker has finished a trial (a poll with a deadline)
            done = [t for t in _trials(journal) if t.state.name == "COMPLETE"]
            if len({t.user_attrs.get("worker") for t in done} - before) == 2:
                return proc
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.1)


    proc = started()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr
    assert "stopped after the trials in hand (SIGTERM)" in stderr
    trials = _trials(journal)
    assert {t.state.name for t in trials} == {"COMPLETE"} and len(trials) < 100_000
    pids = {int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in trials}
    assert len(pids) == 2 and all(process_ended(p) for p in pids)

    if not sys.platform.startswith("linux"):
        return
    proc = started(["--trials", str(len(trials) + 100_000)],  # resumed, then killed
                   before={t.user_attrs["worker"] for t in trials})
    proc.kill()
    proc.communicate(timeout=60)
    pids = {int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in _trials(journal)} - pids
    assert len(pids) == 2
    deadline = time.monotonic() + 300
    while not all(process_ended(p) for p in pids):  # they end by themselves (a poll)
        assert time.monotonic() < deadline, "the workers outlived their killed supervisor"
        time.sleep(0.1)
    assert {t.state.name for t in _trials(journal)} == {"COMPLETE"}  # none left running


def _trials(journal):
    """The trials of the journal study `deepseek tune --out` keeps (none before it is made)."""
    path = journal[len("journal:"):]
    if not os.path.exists(path):
        return []
    return open_study(None, journal, "deepseek-tune").get_trials(deepcopy=False)


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


RISK_FAST = {"epochs": 2, "rows": 400}


def _risk_config(path, trials, **extra):
    path.write_text(json.dumps({
        "space": {"lr": {"type": "logfloat", "low": 1e-3, "high": 3e-2},
                  "width": {"type": "int", "low": 4, "high": 32}},
        "objective": {"pipeline": "finance.credit-risk-model",
                      "metrics": {"val_auc": "maximize"}, "options": RISK_FAST},
        "sampler": {"name": "random"}, "trials": trials, **extra}))
    return path


def _after_another_worker(url, config):
    """The pipeline objective, whose first call here waits until another process has started
    a trial of the study: both workers then certainly run trials, however the two processes
    are scheduled (the worker process spends seconds importing before it starts)."""
    inner = pipeline_objective(config)
    me = f"{socket.gethostname()}:{os.getpid()}"
    seen = []

    def objective(params, trial):
        deadline = time.monotonic() + 300
        while not seen:
            others = {t.user_attrs.get("worker") for t in
                      open_study(None, url, "shared").get_trials(deepcopy=False)} - {None, me}
            if others:
                seen.append(others)
                break
            assert time.monotonic() < deadline, "the worker process never started a trial"
            time.sleep(0.05)  # polling the study storage, the condition decides
        return inner(params, trial)

    return objective


def _workers_share_a_study(url, tmp_path, trials=6):
    """Start the study, then a `deepseek tune worker` process and this test process as a
    second worker on it, at the same time."""
    cfg = TuneConfig.load(_risk_config(tmp_path / "risk.yaml", trials))
    open_study(cfg, url, "shared")
    proc = subprocess.Popen([sys.executable, "-m", "deepseek.cli", "-q", "tune", "worker",
                             "--storage", url, "--study", "shared", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        here = run_worker(url, "shared", _after_another_worker(url, cfg), progress=False)
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
    workers = {t.user_attrs.get("worker") for t in done}
    assert len(workers) == 2, workers  # each of the two workers ran trials
    return json.loads(out)["trial_states"]


@pytest.mark.slow
def test_two_worker_processes_share_a_postgresql_study(tmp_path, postgres_url):
    _workers_share_a_study(postgres_url, tmp_path)


HANG = """
import os, sys, time
from deepseek.tune import TuneConfig, open_study, optimize

study = open_study(None, sys.argv[1], sys.argv[2])
config = TuneConfig.from_dict(study.user_attrs["deepseek_config"])

def objective(params, trial):
    print("running", trial.number, flush=True)
    sys.stdin.read()  # blocks until the test kills this worker
    return 0.0

optimize(study, config, objective, progress=False)
"""


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_killed_workers_trial_is_failed_and_retried(tmp_path, postgres_url, monkeypatch):
    """A worker SIGKILLed in the middle of a trial: its heartbeat stops, the trial is marked
    failed after the grace period and retried, with the same parameters, by a live worker."""
    import os
    import signal

    import optuna

    monkeypatch.setenv("DEEPSEEK_TUNE_HEARTBEAT", "1")
    monkeypatch.setenv("DEEPSEEK_TUNE_GRACE", "2")
    cfg = TuneConfig.load(_risk_config(tmp_path / "risk.yaml", 3))
    study = open_study(cfg, postgres_url, "killed")
    proc = subprocess.Popen([sys.executable, "-c", HANG, postgres_url, "killed"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ})
    try:
        line = proc.stdout.readline()  # the trial is running in the worker
        assert line.startswith("running"), line
        number = int(line.split()[1])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    stale = study.trials[number]
    assert stale.state == optuna.trial.TrialState.RUNNING  # nobody has noticed yet
    import time

    end = time.monotonic() + 60
    while time.monotonic() < end:  # the grace period runs out: a poll with a deadline
        optuna.storages.fail_stale_trials(study)
        if study.trials[number].state == optuna.trial.TrialState.FAIL:
            break
        time.sleep(0.5)
    assert study.trials[number].state == optuna.trial.TrialState.FAIL
    res = run_worker(postgres_url, "killed", progress=False)  # a live worker takes over
    from deepseek.tune import retried_trial_number

    retried = [t for t in study.get_trials(deepcopy=False)
               if retried_trial_number(t) == number]
    assert len(retried) == 1 and retried[0].state == optuna.trial.TrialState.COMPLETE
    assert retried[0].params == stale.params
    assert res.counts() == {"FAIL": 1, "COMPLETE": 2}  # the budget of 3, the killed one in


def test_the_test_postgresql_server_dies_with_its_test_process(request):
    """The fixture's own server cannot outlive a killed test run (PR_SET_PDEATHSIG)."""
    import os
    import signal

    from ..pg import pg_bin

    if not pg_bin("postgres") or os.environ.get("DEEPSEEK_TEST_POSTGRES_URL"):
        pytest.skip("no PostgreSQL server binaries here, or CI's own server is used")
    import shutil
    import tempfile
    from pathlib import Path

    code = ("import sys, pathlib; sys.path.insert(0, sys.argv[1]); "
            "from tests.pg import start_postgres; "
            "url, proc = start_postgres(pathlib.Path(sys.argv[2])); "
            "print(proc.pid, flush=True); sys.stdin.read()")
    root = str(Path(__file__).resolve().parents[2])
    # under /tmp itself (the postgres user cannot enter pytest's folders), made here so that
    # it is removed here: the killed process cannot clean up after itself
    pg_dir = tempfile.mkdtemp(prefix="deepseek-pg-")
    request.addfinalizer(lambda: shutil.rmtree(pg_dir, ignore_errors=True))
    parent = subprocess.Popen([sys.executable, "-c", code, root, pg_dir], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=60)
    import time

    end = time.monotonic() + 60
    while time.monotonic() < end:  # a poll with a deadline for the server to go
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{pid}/stat") as f:  # a zombie is gone for good
            if f.read().split()[2] == "Z":
                break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        raise AssertionError("the PostgreSQL server outlived its killed test process")


@pytest.mark.slow
def test_the_credit_risk_pipeline_on_a_small_budget(tmp_path):
    from deepseek.plugins import pipelines

    res = pipelines().get("finance.credit-risk")(out_dir=tmp_path, quiet=True, trials=3,
                                                 rows=800, epochs=3, bootstrap=20)
    assert res.error is None
    m = res.metrics
    for key in ("mlp_defaults_auc", "mlp_tuned_auc", "logistic_regression_auc",
                "gradient_boosting_auc"):
        assert 0.5 < m[key] <= 1, (key, m[key])
    assert (tmp_path / "roc.png").is_file() and "synthetic" in res.input
    assert [r[0] for r in res.tables[1].rows] == ["lr", "weight_decay", "width", "depth",
                                                   "dropout"]


def test_a_study_on_a_credit_csv_named_in_the_options(tmp_path):
    """The config's options name the data (input, label, categorical columns)."""
    from deepseek.finance.risk import synthetic_credit

    data = synthetic_credit(tmp_path / "clients.csv", n=500, seed=4)
    cfg = TuneConfig.from_dict({
        "space": {"lr": {"type": "logfloat", "low": 1e-3, "high": 3e-2}},
        "objective": {"pipeline": "finance.credit-risk-model",
                      "metrics": {"val_auc": "maximize"},
                      "options": {"input": str(data), "label": "DEFAULT", "epochs": 2,
                                  "categorical": ["SEX", "EDUCATION", "MARRIAGE"]}},
        "sampler": {"name": "random"}, "trials": 2, "seed": 0})
    res = tune(cfg, progress=False)
    assert res.counts()["COMPLETE"] == 2 and 0.5 < res.best_value[0] <= 1


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
    # an --out under a file is refused before any trial runs (the study is not touched)
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the output folder would go")
    res = CliRunner().invoke(build_cli(), ["-q", "tune", str(cfg), "--storage",
                                           f"journal:{tmp_path / 'j.log'}", "--study",
                                           "blocked", "--out", str(blocker / "out")])
    assert res.exit_code == 2 and res.output.startswith(f"error: {blocker / 'out'}: Not a "
                                                        "directory")
    assert '"cli"' in (tmp_path / "j.log").read_text()
    assert '"blocked"' not in (tmp_path / "j.log").read_text()  # the journal names its studies
