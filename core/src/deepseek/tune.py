"""Hyperparameter search on Optuna, from one process to many machines sharing one study.

Samplers (``sampler: {name: ...}``): ``tpe`` (the default: the lowest regret on Branin and
Hartmann-6 at 24 and 64 trials in ``benchmarks/tuning.py``), ``ga`` (the project's genetic
algorithm: Optuna's NSGA-II with a population sized to the trial budget,
:func:`ga_population`, and BLX-alpha crossover, :data:`GA_CROSSOVER`;
``crossover: uniform|sbx|vsbx|undx|spx`` chooses another),
``nsga2`` (Optuna's NSGA-II as configured: population 50 and uniform crossover unless
given), ``cmaes`` (numeric spaces) and ``random``. With every sampler a parameter set the
study has already evaluated is not evaluated again: the trial is given the stored value,
marked ``repeat_of`` and not counted against the budget, so a genetic algorithm that
re-proposes a parent costs nothing.

The search is described by a :class:`TuneConfig`, in Python or YAML::

    space:
      lr:           {type: logfloat, low: 1.0e-4, high: 1.0e-1}
      weight_decay: {type: logfloat, low: 1.0e-6, high: 1.0e-2}
      width:        {type: int, low: 8, high: 128}
      dropout:      {type: float, low: 0.0, high: 0.5}
      batch_size:   {type: categorical, choices: [16, 32, 64]}
    objective:                       # a registered pipeline and the metrics to optimise
      pipeline: finance.credit-risk-model
      metrics: {val_auc: maximize}   # two entries: a multi-objective search (Pareto front)
    sampler: {name: tpe}             # or ga, nsga2 (population_size, ...), cmaes, random
    trials: 24

or an objective that is a Python function ``objective(params, trial) -> float | tuple`` (pass
``objective=`` to :func:`tune`). Epoch-based objectives call ``trial.report(value, epoch)``
and then ``if trial.should_prune(): raise optuna.TrialPruned()`` (single objective only).

Storage: in memory by default; ``sqlite:///tune.db`` or a journal file (``journal:PATH``)
for several processes on one machine; a ``postgresql://`` URL for several machines. A study
keeps its configuration, so ``deepseek tune worker --storage URL --study NAME`` joins it from
any machine with nothing but the URL, and a study that is started again resumes: the trial
budget counts the trials already finished. A trial whose objective raises is recorded as
failed and the study goes on. On a database storage every running trial sends a heartbeat
(every ``heartbeat_interval`` s); a worker that dies (a killed process, a lost machine) leaves
a trial whose heartbeat stops, which the next worker to start a trial marks failed after
``grace_period`` s and retries with the same parameters (up to 3 times). A stop (``stop=``;
SIGTERM to ``deepseek tune``) ends the search after the trials in hand, the workers' too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import multiprocessing as mp
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepseek.errors import DeepSeekError

log = logging.getLogger(__name__)

TYPES = ("float", "logfloat", "int", "logint", "categorical")
SAMPLERS = ("tpe", "ga", "nsga2", "cmaes", "random")
#: the default sampler, by the evidence of benchmarks/tuning.py (see the README)
DEFAULT_SAMPLER = "tpe"
CONFIG_ATTR = "deepseek_config"
REPEAT_ATTR = "repeat_of"
#: heartbeats of database storages (seconds); a trial silent for ``GRACE_PERIOD`` is failed
HEARTBEAT_INTERVAL = 10
GRACE_PERIOD = 60
RETRIES = 3


class TuneError(DeepSeekError):
    """A search space, objective, sampler or storage that cannot be used."""


def _optuna() -> Any:
    from deepseek.extras import require

    require("tune", "hyperparameter tuning")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# ----------------------------------------------------------------------------- the config
def _number(v: Any) -> Any:
    """YAML 1.1 (PyYAML) reads ``1e-4`` without a dot as a string: take it as the number
    it is. Anything else is returned as given, for the checks to name."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


@dataclass
class Param:
    """One dimension of the search space."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: list[Any] | None = None

    @classmethod
    def parse(cls, name: str, spec: Any) -> Param:
        """A search-space parameter from its config mapping.

        Raises:
            TuneError: an unknown type, missing or inverted bounds, empty choices.
        """
        where = f"search space: {name!r}"
        if not isinstance(spec, dict):
            raise TuneError(f"{where}: give a mapping like {{type: float, low: 0, high: 1}}, "
                            f"not {spec!r}")
        unknown = set(spec) - {"type", "low", "high", "step", "choices"}
        if unknown:
            raise TuneError(f"{where}: unknown key(s) {sorted(unknown)}")
        kind = spec.get("type", "categorical" if "choices" in spec else None)
        if kind not in TYPES:
            raise TuneError(f"{where}: type must be one of {', '.join(TYPES)}, got {kind!r}")
        p = cls(name, kind, _number(spec.get("low")), _number(spec.get("high")),
                _number(spec.get("step")), spec.get("choices"))
        if kind == "categorical":
            if not isinstance(p.choices, list) or not p.choices:
                raise TuneError(f"{where}: a categorical parameter needs a non-empty "
                                "'choices' list")
            bad = [c for c in p.choices if not isinstance(c, (str, int, float, bool))
                   and c is not None]
            if bad:
                raise TuneError(f"{where}: choices must be plain values, got {bad[0]!r}")
            return p
        if p.choices is not None:
            raise TuneError(f"{where}: 'choices' belongs to categorical parameters")
        for key in ("low", "high"):
            v = getattr(p, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise TuneError(f"{where}: '{key}' must be a finite number, got {v!r}")
        if p.low >= p.high:  # type: ignore[operator]
            raise TuneError(f"{where}: low ({p.low}) must be below high ({p.high})")
        if kind.startswith("log") and p.low <= 0:  # type: ignore[operator]
            raise TuneError(f"{where}: a log scale needs low > 0, got {p.low}")
        if kind in ("int", "logint") and (p.low != int(p.low) or p.high != int(p.high)):
            raise TuneError(f"{where}: an int parameter needs whole low and high")
        if p.step is not None and (kind.startswith("log") or p.step <= 0):
            raise TuneError(f"{where}: step must be positive and cannot go with a log scale")
        return p

    def suggest(self, trial: Any) -> Any:
        """Draw this parameter's value for an Optuna ``trial``."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, self.choices)
        if self.type in ("int", "logint"):
            return trial.suggest_int(self.name, int(self.low), int(self.high),  # type: ignore
                                     step=int(self.step or 1), log=self.type == "logint")
        return trial.suggest_float(self.name, float(self.low), float(self.high),  # type: ignore
                                   step=self.step, log=self.type == "logfloat")

    def to_dict(self) -> dict[str, Any]:
        """The parameter as it is written in a config."""
        return {k: v for k, v in {"type": self.type, "low": self.low, "high": self.high,
                                  "step": self.step, "choices": self.choices}.items()
                if v is not None}


@dataclass
class TuneConfig:
    """What to search, how to score it, and how to sample (see the module docstring)."""

    space: dict[str, Param]
    metrics: dict[str, str]  # metric name -> "maximize" | "minimize", in objective order
    pipeline: str | None = None
    pipeline_options: dict[str, Any] = field(default_factory=dict)
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": DEFAULT_SAMPLER})
    trials: int = 20
    pruner: str | None = None  # "median" or None
    seed: int | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str = "config") -> TuneConfig:
        """A config from a mapping (a parsed YAML file).

        Raises:
            TuneError: unknown keys, a missing space or objective, bad directions, naming ``where``.
        """
        if not isinstance(data, dict):
            raise TuneError(f"{where}: a tuning config is a mapping with 'space' and "
                            "'objective'")
        unknown = set(data) - {"space", "objective", "sampler", "trials", "pruner", "seed"}
        if unknown:
            raise TuneError(f"{where}: unknown key(s) {sorted(unknown)}; use space, "
                            "objective, sampler, trials, pruner, seed")
        space = data.get("space")
        if not isinstance(space, dict) or not space:
            raise TuneError(f"{where}: 'space' must name at least one parameter")
        params = {str(k): Param.parse(str(k), v) for k, v in space.items()}
        obj = data.get("objective") or {}
        if not isinstance(obj, dict):
            raise TuneError(f"{where}: 'objective' must be a mapping (pipeline, metrics)")
        metrics = obj.get("metrics", {"value": "maximize"})
        if isinstance(metrics, str):
            metrics = {metrics: "maximize"}
        if not isinstance(metrics, dict) or not metrics:
            raise TuneError(f"{where}: objective.metrics maps metric names to maximize or "
                            "minimize")
        for k, d in metrics.items():
            if d not in ("maximize", "minimize"):
                raise TuneError(f"{where}: objective metric {k!r}: direction must be "
                                f"maximize or minimize, got {d!r}")
        sampler = data.get("sampler", {"name": DEFAULT_SAMPLER})
        if isinstance(sampler, str):
            sampler = {"name": sampler}
        if not isinstance(sampler, dict) or sampler.get("name") not in SAMPLERS:
            raise TuneError(f"{where}: sampler.name must be one of {', '.join(SAMPLERS)}")
        trials = data.get("trials", 20)
        if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
            raise TuneError(f"{where}: trials must be a positive integer, got {trials!r}")
        pruner = data.get("pruner")
        if pruner not in (None, "median", "none"):
            raise TuneError(f"{where}: pruner must be 'median' or none, got {pruner!r}")
        if pruner == "median" and len(metrics) > 1:
            raise TuneError(f"{where}: pruning needs a single objective (Optuna does not prune "
                            "multi-objective studies)")
        options = obj.get("options", {})
        if not isinstance(options, dict):
            raise TuneError(f"{where}: objective.options must be a mapping")
        return cls(params, dict(metrics), obj.get("pipeline"), options, dict(sampler), trials,
                   None if pruner == "none" else pruner, data.get("seed"))

    @classmethod
    def load(cls, path: str | Path) -> TuneConfig:
        """A YAML (or JSON) file."""
        import yaml

        p = Path(path)
        if not p.is_file():
            raise TuneError(f"{p}: no such tuning config")
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise TuneError(f"{p}: not valid YAML ({exc})") from None
        return cls.from_dict(data, where=str(p))

    def to_dict(self) -> dict[str, Any]:
        """The config as a mapping (stored with the study, so that workers need no file)."""
        return {"space": {k: p.to_dict() for k, p in self.space.items()},
                "objective": {"pipeline": self.pipeline, "metrics": self.metrics,
                              "options": self.pipeline_options},
                "sampler": self.sampler, "trials": self.trials,
                "pruner": self.pruner or "none", "seed": self.seed}

    @property
    def directions(self) -> list[str]:
        """The optimisation direction of each objective metric, in order."""
        return list(self.metrics.values())


# ---------------------------------------------------------------------------- the engine
#: the GA's crossover: BLX-alpha blends numeric genes (in log space for log-scale ones, rounded
#: for integers; categoricals are inherited from either parent). It beat uniform crossover,
#: NSGA-II's default, on Branin and Hartmann-6 at 24 and 64 trials (10 seeds each); SBX, VSBX,
#: UNDX and SPX won some cells at 64 trials and lost more at 24 (benchmarks/tuning.py)
GA_CROSSOVER = "blx"


def ga_population(budget: int) -> int:
    """The genetic algorithm's population for a budget of trials: about twice the square root
    of the budget (several generations at any budget), at most a third of it, at least 4
    (budget 24: 8, 64: 16, 200: 28)."""
    return max(4, min(budget // 3, round(2 * math.sqrt(budget))))


def _crossover(optuna: Any, name: str) -> Any:
    classes = {"blx": "BLXAlphaCrossover", "uniform": "UniformCrossover",
               "sbx": "SBXCrossover", "vsbx": "VSBXCrossover", "undx": "UNDXCrossover",
               "spx": "SPXCrossover"}
    if name not in classes:
        raise TuneError(f"sampler.crossover {name!r}: use one of {', '.join(classes)}")
    with warnings.catch_warnings():  # Optuna marks the crossovers experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return getattr(optuna.samplers.nsgaii, classes[name])()


def make_sampler(spec: dict[str, Any], seed: int | None = None, budget: int = 20) -> Any:
    """An Optuna sampler (see the module docstring); ``budget`` sizes the ``ga``
    population. Options go to the Optuna sampler (``population_size``, ``mutation_prob``,
    ``crossover_prob`` for the genetic ones; ``n_startup_trials`` for TPE ...)."""
    optuna = _optuna()
    opts = {k: v for k, v in spec.items() if k != "name"}
    name = spec.get("name", DEFAULT_SAMPLER)
    makers = {"tpe": optuna.samplers.TPESampler, "nsga2": optuna.samplers.NSGAIISampler,
              "ga": optuna.samplers.NSGAIISampler, "random": optuna.samplers.RandomSampler}
    if name == "ga":
        opts.setdefault("population_size", ga_population(budget))
        opts.setdefault("crossover", GA_CROSSOVER)
    if name in ("ga", "nsga2") and isinstance(opts.get("crossover"), str):
        opts["crossover"] = _crossover(optuna, opts["crossover"])
    if name == "cmaes":
        from deepseek.extras import require

        require("tune", "the CMA-ES sampler")
        makers["cmaes"] = optuna.samplers.CmaEsSampler
    if name not in makers:
        raise TuneError(f"unknown sampler {name!r}; use one of {', '.join(SAMPLERS)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return makers[name](seed=seed, **opts)
    except TypeError as exc:
        raise TuneError(f"sampler {name!r}: {exc}") from None


def make_storage(url: str | None) -> Any:
    """``None`` (in memory), ``sqlite:///path``, ``journal:PATH`` or ``postgresql://...``."""
    optuna = _optuna()
    if url is None:
        return None
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if url.startswith(("sqlite:", "postgresql:", "postgresql+", "mysql:", "mysql+")):
        try:  # Optuna >= 4.9 names it for what it is; older ones call it failed_trial_callback
            from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry

            retry_key = "heartbeat_stale_trial_callback"
        except ImportError:  # pragma: no cover - older Optuna
            from optuna.storages import RetryFailedTrialCallback as Retry

            retry_key = "failed_trial_callback"
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = Retry(max_retry=RETRIES)
        kwargs: dict[str, Any] = {
            "heartbeat_interval": int(os.environ.get("DEEPSEEK_TUNE_HEARTBEAT",
                                                     HEARTBEAT_INTERVAL)),
            "grace_period": int(os.environ.get("DEEPSEEK_TUNE_GRACE", GRACE_PERIOD)),
            retry_key: retry}
        if url.startswith("sqlite:"):
            kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, **kwargs)
        except Exception as exc:  # the driver's own error names the host and the cause
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TuneError(f"cannot open the study storage {_redact(url)}: {msg}") from None
    raise TuneError(f"storage {url!r}: use sqlite:///FILE, journal:FILE or "
                    "postgresql://USER@HOST/DB")


def _redact(url: str) -> str:
    """The URL without its password."""
    import re

    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def pipeline_objective(config: TuneConfig, out_dir: Path | None = None
                       ) -> Callable[[dict[str, Any], Any], Any]:
    """The objective of a registered pipeline: run it with the trial's parameters (and the
    config's options) and return its metrics in the config's order."""
    from deepseek.plugins import pipelines

    if not config.pipeline:
        raise TuneError("the config names no objective.pipeline; pass objective= from Python")
    import inspect

    pipe = pipelines().get(config.pipeline)  # unknown names fail here, with suggestions
    from deepseek.lazy import resolved

    try:
        sig = inspect.signature(resolved(pipe))
        takes_trial = "trial" in sig.parameters or any(
            p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    except (TypeError, ValueError):
        takes_trial = False

    def objective(params: dict[str, Any], trial: Any) -> Any:
        trial_dir = (out_dir / f"trial-{trial.number:04d}") if out_dir else None
        extra = {"trial": trial} if takes_trial else {}
        # the config's options may name the input; the trial's parameters come last
        kwargs = {"input": None, "out_dir": trial_dir, "quiet": True, **extra,
                  **config.pipeline_options, **params}
        result = pipe(**kwargs)
        if result.error:
            raise TuneError(f"pipeline {config.pipeline} failed: {result.error}")
        values = []
        for name in config.metrics:
            if name not in result.metrics:
                raise TuneError(f"pipeline {config.pipeline} reports no metric {name!r}; it "
                                f"reports {sorted(result.metrics)}")
            values.append(float(result.metrics[name]))
        return values[0] if len(values) == 1 else tuple(values)

    return objective


@dataclass
class TuneResult:
    """What a search found: best parameters (one set, or the Pareto front for several
    objectives), the trials table and where the figures and tables were written."""

    study_name: str
    directions: list[str]
    best: list[dict[str, Any]]   # [{"number", "values", "params"}], the Pareto front
    trials: list[dict[str, Any]]
    figures: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    stopped: bool = False  # ended by a stop (SIGTERM) before its budget: it resumes

    @property
    def best_params(self) -> dict[str, Any]:
        """Parameters of the best trial (empty before any finished)."""
        return self.best[0]["params"] if self.best else {}

    @property
    def best_value(self) -> Any:
        """Objective values of the best trial (None before any finished)."""
        return self.best[0]["values"] if self.best else None

    def counts(self) -> dict[str, int]:
        """Number of trials per state (``COMPLETE``, ``FAIL``, ``PRUNED``, ...)."""
        out: dict[str, int] = {}
        for t in self.trials:
            out[t["state"]] = out.get(t["state"], 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        return {"study": self.study_name, "directions": self.directions, "best": self.best,
                "trial_states": self.counts(), "trials": self.trials,
                "figures": [str(f) for f in self.figures], "seconds": self.seconds,
                "stopped": self.stopped}


def _trial_rows(study: Any) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"number": t.number, "state": t.state.name, "values": t.values,
                     "params": t.params,
                     "seconds": (t.duration.total_seconds() if t.duration else None),
                     "error": t.user_attrs.get("error"),
                     "repeat_of": t.user_attrs.get(REPEAT_ATTR)})
    return rows


def _result(study: Any, seconds: float, stopped: bool = False) -> TuneResult:
    optuna = _optuna()
    directions = [d.name.lower() for d in study.directions]
    done = [t for t in study.get_trials(deepcopy=False)
            if t.state == optuna.trial.TrialState.COMPLETE]
    best = []
    if done:
        front = study.best_trials if len(directions) > 1 else [study.best_trial]
        best = [{"number": t.number, "values": t.values, "params": t.params} for t in front]
    return TuneResult(study.study_name, directions, best, _trial_rows(study), seconds=seconds,
                      stopped=stopped)


def retried_trial_number(trial: Any) -> int | None:
    """The number of the (killed) trial that ``trial`` retries, or None."""
    return trial.system_attrs.get("failed_trial")


def _finished(study: Any) -> int:
    """Finished trials that count against the budget (repeats do not)."""
    optuna = _optuna()
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
              optuna.trial.TrialState.FAIL)
    return sum(1 for t in study.get_trials(deepcopy=False, states=states)
               if REPEAT_ATTR not in t.user_attrs)


def _evaluated(study: Any, params: dict[str, Any], number: int) -> Any:
    """An earlier complete, evaluated trial of ``study`` with exactly ``params``, or None."""
    optuna = _optuna()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if t.number != number and t.params == params and REPEAT_ATTR not in t.user_attrs:
            return t
    return None


def open_study(config: TuneConfig | None, storage: str | None, study: str | None,
               create: bool = True) -> Any:
    """Create or load a study; a new one stores the config, so workers can join it."""
    optuna = _optuna()
    store = make_storage(storage)
    name = study or "deepseek-tune"
    if config is None:
        try:
            s = optuna.load_study(study_name=name, storage=store)
        except KeyError:
            raise TuneError(f"no study {name!r} in {_redact(storage or 'memory')}; start it "
                            "with `deepseek tune CONFIG.yaml --storage ... --study ...`") \
                from None
        if CONFIG_ATTR not in s.user_attrs:
            raise TuneError(f"study {name!r} was not started by deepseek tune (no stored "
                            "config)")
        stored = TuneConfig.from_dict(s.user_attrs[CONFIG_ATTR])
        # a joining worker samples and prunes as the study's config says (Optuna's own
        # defaults would be TPE and the median pruner); its own seed, so that two workers
        # do not propose the same parameters
        seed = None if stored.seed is None else stored.seed + os.getpid()
        return optuna.load_study(study_name=name, storage=store,
                                 sampler=make_sampler(stored.sampler, seed, stored.trials),
                                 pruner=_pruner(stored))
    directions = config.directions
    try:
        s = optuna.create_study(study_name=name, storage=store, directions=directions,
                                sampler=make_sampler(config.sampler, config.seed,
                                                     config.trials),
                                pruner=_pruner(config), load_if_exists=True)
    except ValueError as exc:
        raise TuneError(f"study {name!r}: {exc}") from None
    stored = s.user_attrs.get(CONFIG_ATTR)
    if stored is None:
        s.set_user_attr(CONFIG_ATTR, config.to_dict())
    elif TuneConfig.from_dict(stored).to_dict() != config.to_dict():
        raise TuneError(f"study {name!r} already exists with another config; give a new "
                        "--study name or the same config to resume it")
    return s


def _pruner(config: TuneConfig) -> Any:
    optuna = _optuna()
    if config.pruner == "median":
        return optuna.pruners.MedianPruner(n_warmup_steps=1)
    return optuna.pruners.NopPruner()


def _objective_wrapper(config: TuneConfig, objective: Callable[[dict[str, Any], Any], Any]
                       ) -> Callable[[Any], Any]:
    optuna = _optuna()

    def checked(params: dict[str, Any], trial: Any) -> Any:
        value = objective(params, trial)
        values = value if isinstance(value, (tuple, list)) else (value,)
        if len(values) != len(config.metrics):
            raise TuneError(f"the objective returned {len(values)} values for "
                            f"{len(config.metrics)} metrics {list(config.metrics)}")
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))
               or not math.isfinite(v)]
        if bad:
            raise TuneError(f"the objective returned a non-finite value {bad[0]!r}")
        return values[0] if len(values) == 1 else tuple(values)

    worker = f"{socket.gethostname()}:{os.getpid()}"

    def run(trial: Any) -> Any:
        trial.set_user_attr("worker", worker)  # which process (machine) ran it
        params = {name: p.suggest(trial) for name, p in config.space.items()}
        seen = _evaluated(trial.study, params, trial.number)
        if seen is not None:  # never evaluate a parameter set twice: its stored value
            trial.set_user_attr(REPEAT_ATTR, seen.number)
            return seen.values[0] if len(seen.values) == 1 else tuple(seen.values)
        try:
            return checked(params, trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # recorded on the trial; Optuna marks it failed
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            log.warning("trial %d failed: %s: %s", trial.number, type(exc).__name__, exc)
            raise

    return run


def optimize(study: Any, config: TuneConfig, objective: Callable[[dict[str, Any], Any], Any],
             trials: int | None = None, timeout: float | None = None,
             progress: bool | None = None, stop: Any = None) -> None:
    """Run trials in this process until the study has ``trials`` finished trials (counting
    every worker's), or ``timeout`` seconds pass, or ``stop`` (an event: ``is_set()``; a
    service manager's stop, set by a signal handler) is set: then after the trial in hand,
    which finishes and counts, so that the study resumes where it stopped."""
    _optuna()
    target = trials or config.trials
    run = _objective_wrapper(config, objective)
    left = target - _finished(study)
    if left <= 0:
        log.info("study %s already has %d finished trials", study.study_name, target)
        return
    if stop is not None and stop.is_set():
        return
    import sys

    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=target, initial=target - left, desc=f"tuning {study.study_name}",
               disable=not show, unit="trial")

    def after(study_: Any, trial: Any) -> None:
        if REPEAT_ATTR not in trial.user_attrs:
            bar.update(1)
        with contextlib.suppress(ValueError, RuntimeError):
            if len(study_.directions) == 1:
                bar.set_postfix(best=f"{study_.best_value:.5g}")

    repeats = 0

    def budget(study_: Any, trial: Any) -> None:
        """Stop at the budget of evaluated trials (every worker's); repeats are free, but a
        search that only repeats itself (a space too small for the budget) stops too."""
        nonlocal repeats
        repeats += REPEAT_ATTR in trial.user_attrs
        if _finished(study_) >= target or repeats > 4 * target or \
                (stop is not None and stop.is_set()):
            study_.stop()

    try:
        study.optimize(run, n_trials=None, timeout=timeout, catch=(Exception,),
                       callbacks=[budget, after], gc_after_trial=False)
    finally:
        bar.close()
    if repeats > 4 * target:
        log.warning("study %s: the sampler proposed %d parameter sets evaluated already; the "
                    "search space may be too small for %d trials", study.study_name, repeats,
                    target)


def _stopped_short(study: Any, config: TuneConfig, trials: int | None, stop: Any) -> bool:
    """Whether ``stop`` ended the search before its budget."""
    return stop is not None and stop.is_set() and _finished(study) < (trials or config.trials)


def _worker_main(storage: str, study: str, trials: int | None, parent: int) -> None:
    """One local worker process (``--workers K``). SIGTERM (the supervising process passes
    its stop on) ends it after the trial in hand; so does the supervisor's death, however
    it died (Linux: the parent-death signal), rather than a worker that runs the study on
    alone."""
    from deepseek.service import SignalEvent, die_with_parent, on_signal

    stop = SignalEvent()
    with on_signal("SIGTERM", lambda *_: stop.set()):
        die_with_parent(parent)
        run_worker(storage, study, trials=trials, progress=False, stop=stop)


def run_worker(storage: str, study: str, objective: Callable[..., Any] | None = None,
               trials: int | None = None, timeout: float | None = None,
               progress: bool | None = None, stop: Any = None) -> TuneResult:
    """Join study ``study`` in ``storage`` (its config is stored with it) and run trials
    until its budget is reached (or ``stop``: :func:`optimize`)."""
    t0 = time.perf_counter()
    s = open_study(None, storage, study)
    config = TuneConfig.from_dict(s.user_attrs[CONFIG_ATTR])
    optimize(s, config, objective or pipeline_objective(config), trials, timeout, progress,
             stop=stop)
    return _result(s, time.perf_counter() - t0, stopped=_stopped_short(s, config, trials, stop))


def tune(config: TuneConfig, objective: Callable[[dict[str, Any], Any], Any] | None = None,
         *, storage: str | None = None, study: str | None = None, workers: int = 1,
         trials: int | None = None, timeout: float | None = None,
         out_dir: str | Path | None = None, progress: bool | None = None,
         stop: Any = None) -> TuneResult:
    """Start (or resume) a study and run it to its trial budget.

    ``objective(params, trial)`` defaults to the config's pipeline. ``workers > 1`` starts
    that many local processes on a shared storage (a journal file under ``out_dir`` when no
    storage is given); they need the pipeline objective, since a Python function does not
    travel to other processes. ``out_dir`` receives ``trials.csv``, ``best.json`` and the
    figures (search history; the Pareto front for two objectives). ``stop`` (an event,
    ``is_set()``: a service manager's stop) ends the search after the trials in hand: this
    process's, or each worker's (they are sent SIGTERM), and the result says ``stopped``;
    the study resumes when it is started again."""
    t0 = time.perf_counter()
    if workers < 1:
        raise TuneError(f"workers must be >= 1, got {workers}")
    out = Path(out_dir) if out_dir else None
    if workers > 1:
        if objective is not None:
            raise TuneError("several worker processes need the pipeline objective of the "
                            "config (a Python function does not travel to other processes)")
        if storage is None:
            if out is None:
                raise TuneError("workers > 1 share a study: give storage= (sqlite:///FILE, "
                                "journal:FILE, postgresql://...) or out_dir= for a journal")
            storage = f"journal:{out / 'study.journal'}"
    s = open_study(config, storage, study)
    if workers > 1:
        # fork where there is one: the workers start with this process's imports at once
        # (nothing here has started threads yet; the objective's heavy imports come later)
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        procs = [ctx.Process(target=_worker_main,
                             args=(storage, s.study_name, trials, os.getpid()))
                 for _ in range(workers)]
        for p in procs:
            p.start()
        from multiprocessing.connection import wait as wait_any

        passed_on = False
        with _progress_of(s, config, trials or config.trials, progress) as tick:
            while alive := [p for p in procs if p.is_alive()]:
                if stop is not None and stop.is_set() and not passed_on:
                    passed_on = True  # once: each worker ends after its trial in hand
                    for p in alive:
                        p.terminate()
                wait_any([p.sentinel for p in alive], timeout=1.0)
                tick()
        stopped = stop is not None and stop.is_set()
        failed = [p.exitcode for p in procs
                  if p.exitcode and not (stopped and p.exitcode == -15)]
        if failed:
            raise TuneError(f"{len(failed)} of {workers} tuning workers failed (exit codes "
                            f"{failed}); the study keeps what they finished")
    else:
        obj = objective or pipeline_objective(config, out / "trials" if out else None)
        optimize(s, config, obj, trials, timeout, progress, stop=stop)
    result = _result(s, time.perf_counter() - t0,
                     stopped=_stopped_short(s, config, trials, stop))
    if out is not None:
        result.figures = write_outputs(result, s, out)
    return result


@contextlib.contextmanager
def _progress_of(study: Any, config: TuneConfig, target: int, progress: bool | None
                 ) -> Iterator[Callable[[], None]]:
    """A progress bar of the study's finished trials, for the supervising process."""
    import sys

    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=target, desc=f"tuning {study.study_name}", disable=not show,
               unit="trial")

    def tick() -> None:
        done = _finished(study)
        bar.update(max(0, done - bar.n))
        with contextlib.suppress(ValueError, RuntimeError):
            if len(config.metrics) == 1:
                bar.set_postfix(best=f"{study.best_value:.5g}")

    try:
        yield tick
        tick()
    finally:
        bar.close()


def write_outputs(result: TuneResult, study: Any, out: Path) -> list[Path]:
    """``trials.csv``, ``best.json`` and the figures: the search history and, for two
    objectives, the Pareto front."""
    import csv

    out.mkdir(parents=True, exist_ok=True)
    names = sorted({k for t in result.trials for k in t["params"]})
    with open(out / "trials.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["number", "state", *[f"value_{i}" for i in range(len(result.directions))],
                    *names, "seconds", "error"])
        for t in result.trials:
            vals = list(t["values"] or [None] * len(result.directions))
            w.writerow([t["number"], t["state"], *vals,
                        *[t["params"].get(n) for n in names], t["seconds"], t["error"] or ""])
    (out / "best.json").write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    figs = [history_figure(result, out / "history.png")]
    if len(result.directions) == 2:
        figs.append(pareto_figure(result, out / "pareto.png"))
    return figs


def history_figure(result: TuneResult, path: Path, labels: list[str] | None = None) -> Path:
    """Each trial's (first) objective value in trial order, and the best so far."""
    from deepseek.plotting import axes, save

    label = (labels or ["objective"])[0]
    fig, ax = axes(f"Search history of {result.study_name}", "trial", label)
    done = [t for t in result.trials if t["state"] == "COMPLETE"]
    xs = [t["number"] for t in done]
    ys = [t["values"][0] for t in done]
    ax.plot(xs, ys, "o", color="#1f6fb4", ms=4, label="trial")
    best, run = [], None
    maximize = result.directions[0] == "maximize"
    for y in ys:
        run = y if run is None else (max(run, y) if maximize else min(run, y))
        best.append(run)
    ax.step(xs, best, where="post", color="#d9534f", label="best so far")
    failed = [t["number"] for t in result.trials if t["state"] in ("FAIL", "PRUNED")]
    if failed and ys:
        ax.plot(failed, [min(ys)] * len(failed), "x", color="#555555",
                label="failed or pruned")
    ax.legend(loc="best")
    return save(fig, path)


def pareto_figure(result: TuneResult, path: Path, labels: list[str] | None = None) -> Path:
    """All completed trials in the plane of the two objectives, the Pareto front marked."""
    from deepseek.plotting import axes, save

    names = labels or [f"objective 1 ({result.directions[0]})",
                       f"objective 2 ({result.directions[1]})"]
    fig, ax = axes(f"Pareto front of {result.study_name}", names[0], names[1])
    done = [t for t in result.trials if t["state"] == "COMPLETE"]
    ax.plot([t["values"][0] for t in done], [t["values"][1] for t in done], "o",
            color="#9bbbd9", ms=4, label="trial")
    front = sorted(result.best, key=lambda b: b["values"][0])
    ax.plot([b["values"][0] for b in front], [b["values"][1] for b in front], "o-",
            color="#d9534f", ms=6, label="Pareto front")
    ax.legend(loc="best")
    return save(fig, path)
