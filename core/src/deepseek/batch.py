"""Run a per-item step over many inputs: local worker processes, or the actors of a Ray cluster.

``deepseek batch medical detect --input 'archive/*/' --out results/`` runs the step that a
plugin registered for ``medical detect`` (``register_steps``) once per input. Each worker
builds the step once (``factory(**options)``: the model is loaded once per worker, not per
item) and calls it per input. The driver, and only the driver, writes::

    OUT/batch.json         the step and its options (a re-run must ask for the same ones)
    OUT/items/KEY.json     one item's result: exactly what the command's --json prints
    OUT/failed/KEY.json    an item that failed: its error, traceback and attempts
    OUT/log.jsonl          one line per finished attempt (source, status, seconds, worker)
    OUT/summary.csv        one row per input: status, seconds, the step's summary columns
    OUT/run.json           this run's counts, items/s and where it ran

**Resumable.** An item whose ``items/KEY.json`` exists is done and skipped by a re-run with
the same step and options (files are written whole, through a rename, so a run killed
mid-write leaves no half result); failed items are tried again. ``KEY`` is the input's name
and a hash of its absolute path, so the same input always has the same key.

**Faults.** An item whose step raises is recorded as failed with its error and the rest go
on (the error is the item's own: trying it again would give the same). A worker process
that dies (killed, out of memory, a crash in native code) takes the items it was running
with it: they are run again on a fresh worker (on a Ray cluster wherever the cluster places
it), up to ``attempts`` times each, so nothing is lost and nothing is written twice.

**Where.** ``cluster="local"`` (default): ``workers`` spawned processes on this machine, each
told to use its share of the CPUs (``OMP_NUM_THREADS``, which PyTorch and the project's ONNX
Runtime sessions follow). ``"ray"`` (the cluster ``RAY_ADDRESS`` names or one started on
this machine), ``"ray://HOST:10001"`` (Ray Client) or ``"HOST:6379"`` (a cluster this machine
is part of): one actor per ``cpus_per_worker`` CPUs of the cluster unless ``workers`` says;
Ray is the ``ray`` extra. The inputs must be readable at the same paths on every worker (a
shared volume); the results travel back to the driver.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import inspect
import io
import json
import logging
import os
import re
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepseek.errors import DeepSeekError
from deepseek.paths import glob_paths, is_pattern

log = logging.getLogger(__name__)

#: an item is tried at most this many times when its worker dies under it
ATTEMPTS = 3
#: how long a Ray run waits for its first worker before saying the cluster has no room
START_TIMEOUT_S = 300.0
#: connections tried through Ray Client when the head's per-client server fails to start
CLIENT_CONNECT_TRIES = 3
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(?!\\)")


class BatchError(DeepSeekError):
    """A batch cannot run as asked: no inputs, an unknown step or option, an output folder
    of another batch."""


# ---------------------------------------------------------------------------- inputs
def expand_inputs(patterns: Sequence[str],
                  leave_out: Callable[[str], str | None] | None = None,
                  left: list[dict[str, str]] | None = None) -> list[str]:
    """The inputs ``patterns`` name, in order, each once.

    A pattern is a glob (``scans/*/``, ``parts/**/*.png``: sorted matches), ``@FILE`` (one
    input per line; blank lines and ``#`` comments skipped), an existing path, or a URI
    (``synthetic:...``). A glob that matches nothing, or a path that does not exist, is an
    error naming it. ``leave_out`` (the step's, see ``register_steps``) says why a file a
    glob matched is not an input of the step (a mask beside its image, say): such matches
    are left out and appended to ``left`` as ``{"source", "why"}``; inputs named one by one
    are kept as given."""
    out: dict[str, None] = {}
    dropped: dict[str, str] = {}
    for pattern in patterns:
        if pattern.startswith("@"):
            listing = Path(pattern[1:])
            try:
                lines = listing.read_text().splitlines()
            except OSError as exc:
                raise BatchError(f"{listing}: cannot read the input list ({exc.strerror})") \
                    from None
            items = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip()
                     .startswith("#")]
            if not items:
                raise BatchError(f"{listing}: the input list names no input")
            missing = [s for s in items if not _SCHEME.match(s) and not os.path.exists(s)]
            if missing:
                raise BatchError(f"{listing}: {len(missing)} listed input(s) do not exist, "
                                 f"the first {missing[0]!r}")
            out.update(dict.fromkeys(items))
        elif _SCHEME.match(pattern) and not os.path.exists(pattern):
            out[pattern] = None   # a URI (synthetic:?n=100): its ? and * are not a glob
        elif is_pattern(pattern):
            found = glob_paths(pattern)  # glob's **, safe from link loops
            if not found:
                raise BatchError(f"--input {pattern!r} matches nothing (quote the pattern so "
                                 "that the shell does not expand it, and check the folder)")
            found = [f.rstrip("/") if len(f) > 1 else f for f in found]
            if leave_out is not None:
                why = {f: leave_out(f) for f in found}
                dropped.update({f: w for f, w in why.items() if w})
                found = [f for f in found if not why[f]]
                if not found:
                    raise BatchError(f"--input {pattern!r}: every match is left out by the "
                                     f"step ({next(iter(why))}: {next(iter(why.values()))})")
            found = _outermost(found, dropped)
            out.update(dict.fromkeys(found))
        elif os.path.exists(pattern):
            out[pattern.rstrip("/") if len(pattern) > 1 else pattern] = None
        else:
            raise BatchError(f"--input {pattern!r}: no such file or folder")
    if not out:
        raise BatchError("no inputs: give --input PATTERN (a glob, a path, a URI or @LIST)")
    if left is not None:  # each once, and not one an input names after all
        left += [{"source": f, "why": w} for f, w in dropped.items() if f not in out]
    return list(out)


def _outermost(found: list[str], dropped: dict[str, str]) -> list[str]:
    """The matches of one glob less those inside a folder it also matched (``parts/**/*``
    matches ``parts/line3`` and ``parts/line3/a.png``): the folder is the input and covers
    them, so nothing is processed twice; each one left is added to ``dropped`` with why."""
    folders = {f for f in found if os.path.isdir(f)}
    if not folders:
        return found
    kept = []
    for f in found:
        outer, parent = None, os.path.dirname(f)
        while parent:
            outer = parent if parent in folders else outer
            if os.path.dirname(parent) == parent:
                break
            parent = os.path.dirname(parent)
        if outer is None:
            kept.append(f)
        else:
            dropped[f] = f"inside {outer}, which the same pattern matched: an input that covers it"
    return kept


def item_key(source: str) -> str:
    """A file name for ``source``'s result: its last path part (made safe) and a hash of its
    absolute path (of the text itself for a URI)."""
    ident = source if _SCHEME.match(source) and not os.path.exists(source) \
        else os.path.abspath(source)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", source.rstrip("/").rsplit("/", 1)[-1])
    name = name.strip("._") or "item"
    return f"{name[:60]}-{hashlib.sha1(ident.encode()).hexdigest()[:10]}"


# ---------------------------------------------------------------------------- steps
@dataclass(frozen=True)
class StepSpec:
    """A registered step as a worker rebuilds it: the factory (an import target
    ``"module:attr"`` or a picklable function) and its options."""

    name: str
    factory: Any
    options: dict[str, Any]

    def build(self) -> Callable[[str], Any]:
        """Import the factory if it is a target and call it with the options: the step.

        Raises:
            BatchError: the factory returned something that is not callable.
        """
        fn = self.factory
        if isinstance(fn, str):
            module, _, attr = fn.partition(":")
            fn = getattr(importlib.import_module(module), attr)
        step = fn(**self.options)
        if not callable(step):
            raise BatchError(f"step {self.name!r}: its factory returned "
                             f"{type(step).__name__}, not a callable step(source) (plugin "
                             "bug)")
        return step


def find_step(words: Sequence[str]) -> Any:
    """The registry entry of the step ``words`` name: a step name (``medical.detect``) or the
    command it stands for (``medical detect``)."""
    from deepseek.plugins import steps
    from deepseek.registry import UnknownNameError

    reg = steps()
    text = " ".join(words).strip()
    if not text:
        raise BatchError("name the step: a command such as 'medical detect' or a step name "
                         "(deepseek batch --list)")
    by_command = [e for e in reg.entries() if e.meta.get("command") == text]
    if len(by_command) == 1:
        return by_command[0]
    try:
        return reg.entry(text.replace(" ", "."))
    except UnknownNameError:
        known = ", ".join(f"{e.name} ({e.meta['command']})" if e.meta.get("command")
                          else e.name for e in reg.entries()) or "none (no plugin registers one)"
        raise BatchError(f"no batch step {text!r}; steps: {known}") from None


def step_options(entry: Any) -> dict[str, Any]:
    """The options a step takes: ``{name: default}`` from its factory's signature."""
    from deepseek.contracts import Unknown, signature

    try:
        sig = signature(entry.obj, resolve=True)
    except Unknown:
        return {}
    return {n: (None if p.default is inspect.Parameter.empty else p.default)
            for n, p in sig.parameters.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def check_options(entry: Any, options: dict[str, Any]) -> None:
    """Refuse options the step's factory does not take, naming the ones it does."""
    from deepseek.contracts import Unknown, config_problem, signature

    try:
        problem = config_problem(signature(entry.obj), options)
    except Unknown:
        return
    if problem:
        raise BatchError(f"step {entry.name}: {problem.replace('config key', 'option')}"
                         .replace("the builder takes", "it takes"))


def spec_of(entry: Any, options: dict[str, Any]) -> StepSpec:
    """The :class:`StepSpec` a worker rebuilds ``entry``'s step from, with ``options``."""
    target = getattr(entry.obj, "target", None)
    return StepSpec(entry.qualified, target if isinstance(target, str) else entry.obj,
                    dict(options))


# ---------------------------------------------------------------------------- workers
_WORKER: dict[str, Any] = {}


def _set_threads(threads: int | None) -> None:
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(threads)
        torch = __import__("sys").modules.get("torch")
        if torch is not None:
            torch.set_num_threads(threads)


def _init_local(spec: StepSpec, threads: int | None, parent: int) -> None:
    from deepseek.service import die_with_parent

    die_with_parent(parent)  # (its results could go nowhere)
    _set_threads(threads)
    try:
        _WORKER["step"] = spec.build()
    except Exception as exc:  # reported with the first item: the batch cannot run
        _WORKER["init_error"] = f"{type(exc).__name__}: {exc}"


def run_one(step: Callable[[str], Any], source: str) -> dict[str, Any]:
    """Run ``step`` on ``source`` where the worker is: the result as JSON text (serialised
    there, so any worker gives the same bytes), or the item's error."""
    t0 = time.perf_counter()
    try:
        result = step(source)
        text = json.dumps(result, indent=2, default=str) + "\n"
        return {"ok": True, "result": text, "seconds": time.perf_counter() - t0,
                "worker": f"{os.uname().nodename}:{os.getpid()}"}
    except Exception as exc:  # the item's own failure: recorded, the batch goes on
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(), "seconds": time.perf_counter() - t0,
                "worker": f"{os.uname().nodename}:{os.getpid()}"}


def _run_local(source: str) -> dict[str, Any]:
    if "init_error" in _WORKER:
        return {"ok": False, "init_error": _WORKER["init_error"]}
    return run_one(_WORKER["step"], source)


@dataclass
class Outcome:
    """One finished attempt at one item, as the driver records it."""

    source: str
    key: str
    ok: bool
    seconds: float = 0.0
    worker: str = ""
    attempts: int = 1
    result: str | None = None
    error: str | None = None
    traceback: str | None = None


class _Executor:
    """Runs items on workers and reports each finished item through ``done(outcome)``."""

    workers: int = 1
    where: str = ""

    def close(self) -> None:
        """Let go of what the executor holds (a Ray connection it made)."""

    def run(self, items: Iterable[tuple[str, str]], done: Callable[[Outcome], None],
            attempts: int, stop: Any = None) -> int:
        """Run every ``(source, key)``; return how many times an item was re-run because its
        worker died. ``stop`` (an event, ``is_set()``: a service manager's stop): no item
        is sent after it, and the run returns once the items in flight are done."""
        raise NotImplementedError


class LocalExecutor(_Executor):
    """``workers`` spawned processes on this machine (a process pool rebuilt when one of its
    processes dies)."""

    def __init__(self, spec: StepSpec, workers: int | None = None,
                 items: int | None = None) -> None:
        from deepseek.cpus import cpu_budget

        budget = max(1, int(cpu_budget()))
        self.spec = spec
        # one per CPU unless told, never more than there are items
        self.workers = max(1, min(workers or budget, items or workers or budget))
        self.threads = max(1, budget // self.workers)
        self.where = f"local: {self.workers} process(es) x {self.threads} thread(s)"

    def run(self, items: Iterable[tuple[str, str]], done: Callable[[Outcome], None],
            attempts: int, stop: Any = None) -> int:
        """When a process dies, the pool breaks and every item it held is lost with it, the
        guilty one among the innocent. Those items are then run one at a time (nothing else
        in flight), so that a death there is the item's own: only those deaths count
        against its ``attempts``. A death between two sends (the pool found broken when an
        item is sent) is the same: the items not sent are not tried yet, and wait their
        turn in a new pool."""
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        queue = deque(items)
        suspects: deque[tuple[str, str]] = deque()
        deaths: dict[str, int] = {}
        tries: dict[str, int] = {}
        retried = 0
        ctx = mp.get_context("spawn")
        pool: ProcessPoolExecutor | None = None
        running: dict[Any, tuple[str, str]] = {}
        solo: tuple[str, str] | None = None
        try:
            while queue or suspects or running:
                if stop is not None and stop.is_set():
                    if not running:
                        break  # the items in flight are done; the rest are not sent
                    queue.clear()
                    suspects.clear()
                if pool is None:
                    pool = ProcessPoolExecutor(self.workers, mp_context=ctx,
                                               initializer=_init_local,
                                               initargs=(self.spec, self.threads,
                                                         os.getpid()))
                batch: list[tuple[str, str]] = []
                if solo is None and suspects:
                    if not running:    # the suspects run alone, one by one
                        solo = suspects.popleft()
                        batch = [solo]
                elif solo is None:
                    batch = [queue.popleft() for _ in range(min(len(queue),
                                                                2 * self.workers - len(running)))]
                broken = False
                for n, (source, key) in enumerate(batch):
                    try:
                        fut = pool.submit(_run_local, source)
                    except BrokenProcessPool:  # a process died since the last wait: what
                        broken = True  # was not sent goes back to where it came from
                        if solo is not None:
                            suspects.appendleft(solo)
                            solo = None
                        else:
                            queue.extendleft(reversed(batch[n:]))
                        break
                    tries[key] = tries.get(key, 0) + 1
                    running[fut] = (source, key)
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                lost: list[tuple[str, str]] = []
                for fut in finished:
                    source, key = running.pop(fut)
                    try:
                        res = fut.result()
                    except BrokenProcessPool:
                        lost.append((source, key))
                        continue
                    if "init_error" in res:
                        raise BatchError(f"a worker could not build step {self.spec.name}: "
                                         f"{res['init_error']}")
                    done(_outcome(source, key, res, tries[key]))
                    if (source, key) == solo:
                        solo = None
                if not lost and not broken:
                    continue
                pool.shutdown(wait=True, cancel_futures=True)
                pool = None
                lost += list(running.values())  # the rest went down with the pool
                running.clear()
                guilty, solo = solo, None
                for source, key in lost:
                    if (source, key) == guilty:   # it ran alone: the death is its own
                        deaths[key] = deaths.get(key, 0) + 1
                    if deaths.get(key, 0) >= attempts:
                        done(Outcome(source, key, False, attempts=tries[key],
                                     error=f"the worker process died running it alone, on "
                                           f"each of {deaths[key]} attempt(s)"))
                    else:
                        retried += 1
                        suspects.append((source, key))
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        return retried


def _outcome(source: str, key: str, res: dict[str, Any], tries: int) -> Outcome:
    if res["ok"]:
        return Outcome(source, key, True, res["seconds"], res["worker"], tries,
                       result=res["result"])
    return Outcome(source, key, False, res["seconds"], res["worker"], tries,
                   error=res["error"], traceback=res["traceback"])


def require_ray(what: str) -> Any:
    """Import Ray, or say which pip command brings it."""
    from deepseek.extras import require

    require("ray", what)
    import ray

    return ray


class RayWorker:
    """One Ray actor: the step built once, then one item per call."""

    def __init__(self, spec: StepSpec) -> None:
        self.step = spec.build()

    def ready(self) -> bool:
        """Answer once the actor is built (the driver waits on it before sending items)."""
        return True

    def run(self, source: str) -> dict[str, Any]:
        """Run the step on one ``source``: its result as JSON text, or its error."""
        return run_one(self.step, source)


def is_client_start_failure(exc: BaseException) -> bool:
    """Whether a Ray Client connection failed because the head's per-connection server
    process did not start (worth trying again), not because nothing listens there."""
    text = str(exc)
    return "client server failed" in text or ("Initialization failure from server" in text
                                              and "ZombieProcess" in text)


class RayExecutor(_Executor):
    """One actor per worker on a Ray cluster; an actor that dies is replaced and its item
    run again on whichever actor is free (the replacement may start on another node)."""

    def __init__(self, spec: StepSpec, address: str, workers: int | None = None,
                 cpus_per_worker: float = 1.0,
                 start_timeout_s: float = START_TIMEOUT_S) -> None:
        ray = require_ray(f"--cluster {address}")
        self.ray = ray
        self.spec = spec
        self.connected = not ray.is_initialized()
        if self.connected:
            addr = "auto" if address == "ray" else address
            # Ray Client starts a server process per connection on the head, which can fail
            # to start on a busy head (Ray reports it as "client server failed", or as an
            # "Initialization failure from server" when the process died before the proxy
            # could read it): that (and only that) is tried again, twice
            tries = CLIENT_CONNECT_TRIES if address.startswith("ray://") else 1
            for attempt in range(1, tries + 1):
                try:
                    ray.init(address=addr, logging_level=logging.WARNING,
                             log_to_driver=False, configure_logging=False)
                    break
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    if attempt < tries and is_client_start_failure(exc):
                        log.warning("%s: the head's Ray Client server did not start (attempt "
                                    "%d of %d); trying again", address, attempt, tries)
                        continue
                    raise BatchError(f"--cluster {address}: cannot connect to a Ray cluster "
                                     f"({exc}); start one (ray start --head) or name its "
                                     "address (HOST:6379, or ray://HOST:10001 for Ray "
                                     "Client)") from None
        cpus = float(ray.cluster_resources().get("CPU", 0))
        self.cpus_per_worker = cpus_per_worker
        self.workers = max(1, workers or int(cpus // cpus_per_worker))
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        self.where = (f"ray: {self.workers} actor(s) x {cpus_per_worker:g} CPU on {nodes} "
                      f"node(s), {cpus:g} CPU")
        self.start_timeout_s = start_timeout_s
        self.actor_class = ray.remote(num_cpus=cpus_per_worker, max_restarts=0,
                                      max_task_retries=0)(RayWorker)

    def close(self) -> None:
        """Close the Ray connection this executor opened (none that the caller opened)."""
        if self.connected and self.ray.is_initialized():
            self.ray.shutdown()
            self.connected = False

    def run(self, items: Iterable[tuple[str, str]], done: Callable[[Outcome], None],
            attempts: int, stop: Any = None) -> int:
        """Run every ``(source, key)`` on the actors; return how many items were re-run because
        their actor died (``stop``: :meth:`_Executor.run`).

        Raises:
            BatchError: no actor could start within the start timeout, or the step could not be
                built.
        """
        ray = self.ray
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        queue = deque(items)
        tries: dict[str, int] = {}
        retried = 0
        starting: dict[Any, Any] = {}   # ready() ref -> actor
        idle: list[Any] = []
        running: dict[Any, tuple[Any, str, str]] = {}  # run() ref -> (actor, source, key)

        def start() -> None:
            actor = self.actor_class.remote(self.spec)
            starting[actor.ready.remote()] = actor

        for _ in range(min(self.workers, len(queue))):
            start()
        waited_since = time.monotonic()
        try:
            while queue or running:
                if stop is not None and stop.is_set():
                    if not running:
                        break  # the items in flight are done; the rest are not sent
                    queue.clear()
                while queue and idle:
                    actor = idle.pop()
                    source, key = queue.popleft()
                    tries[key] = tries.get(key, 0) + 1
                    running[actor.run.remote(source)] = (actor, source, key)
                refs = list(starting) + list(running)
                ready, _ = ray.wait(refs, num_returns=1, timeout=10.0)
                if not ready:
                    if not running and not idle and \
                            time.monotonic() - waited_since > self.start_timeout_s:
                        raise BatchError(
                            f"no Ray worker started in {self.start_timeout_s:g} s: the cluster "
                            f"has no free {self.cpus_per_worker:g} CPU for one (ray status)")
                    continue
                ref = ready[0]
                if ref in starting:
                    actor = starting.pop(ref)
                    try:
                        ray.get(ref)
                    except (RayActorError, RayTaskError) as exc:
                        # the step could not be built there: a broken install, not an item
                        cause = getattr(exc, "cause", None) or exc
                        raise BatchError(f"a Ray worker could not build step "
                                         f"{self.spec.name}: {type(cause).__name__}: "
                                         f"{cause}") from None
                    idle.append(actor)
                    waited_since = time.monotonic()
                    continue
                actor, source, key = running.pop(ref)
                try:
                    res = ray.get(ref)
                except (RayActorError, GetTimeoutError) as exc:
                    # the worker died under the item: replace it, run the item again
                    if tries[key] < attempts:
                        retried += 1
                        queue.appendleft((source, key))
                    else:
                        done(Outcome(source, key, False, attempts=tries[key],
                                     error=f"the Ray worker died on each of {tries[key]} "
                                           f"attempt(s) ({type(exc).__name__})"))
                    if queue:
                        start()
                    waited_since = time.monotonic()
                    continue
                except RayTaskError as exc:  # the call itself failed (e.g. an unpicklable
                    idle.append(actor)       # result): the item's own failure
                    done(Outcome(source, key, False, attempts=tries[key],
                                 error=f"{type(exc).__name__}: {exc}"))
                    continue
                idle.append(actor)
                done(_outcome(source, key, res, tries[key]))
        finally:
            for actor in idle + [a for a, _, _ in running.values()] + list(starting.values()):
                ray.kill(actor, no_restart=True)
        return retried


# ---------------------------------------------------------------------------- the driver
@dataclass
class BatchReport:
    """What a batch run did (``OUT/run.json``)."""

    step: str
    command: str | None
    out_dir: str
    where: str
    workers: int
    items: int
    skipped: int
    ok: int
    failed: int
    retried: int
    seconds: float
    failures: list[dict[str, str]] = field(default_factory=list)
    left_out: list[dict[str, str]] = field(default_factory=list)
    stopped: bool = False  # ended by a stop (SIGTERM) before every item ran: it resumes

    @property
    def not_run(self) -> int:
        """Items neither done before nor finished in this run (a stopped run's rest)."""
        return self.items - self.skipped - self.ok - self.failed

    @property
    def items_per_s(self) -> float:
        """Items finished (done or failed) per second of this run."""
        ran = self.ok + self.failed
        return ran / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (``OUT/run.json``)."""
        return {"step": self.step, "command": self.command, "out_dir": self.out_dir,
                "where": self.where, "workers": self.workers, "items": self.items,
                "skipped_done": self.skipped, "ok": self.ok, "failed": self.failed,
                "retried_after_worker_death": self.retried, "seconds": round(self.seconds, 3),
                "items_per_s": round(self.items_per_s, 4), "failures": self.failures,
                "left_out": self.left_out, "stopped": self.stopped, "not_run": self.not_run}


def _write_whole(path: Path, text: str) -> None:
    from deepseek.paths import written_whole

    with written_whole(path) as tmp:
        tmp.write_text(text)


def _check_out(out: Path, entry: Any, options: dict[str, Any]) -> None:
    """A folder holds one batch: the same step and options, or it is refused."""
    meta = out / "batch.json"
    want = {"step": entry.qualified, "options": options}
    if meta.exists():
        try:
            have = json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BatchError(f"{meta}: unreadable ({exc}); remove it or use another --out") \
                from None
        if {"step": have.get("step"), "options": have.get("options")} != want:
            raise BatchError(f"{out} holds the results of step {have.get('step')} with "
                             f"options {have.get('options')}; this run asks for "
                             f"{want['step']} with {options}: use another --out (results of "
                             "different settings are never mixed)")
    else:
        out.mkdir(parents=True, exist_ok=True)
        _write_whole(meta, json.dumps(want, indent=2, default=str) + "\n")


def _flat(summary: Callable[[Any], dict[str, Any]] | None, text: str) -> dict[str, Any]:
    if summary is None:
        return {}
    try:
        row = summary(json.loads(text))
    except Exception as exc:  # a plugin bug in a summary must not lose the results
        return {"summary_error": f"{type(exc).__name__}: {exc}"}
    return {k: v for k, v in row.items() if isinstance(v, (int, float, str, bool))
            or v is None}


def write_summary(out: Path, items: Sequence[tuple[str, str]],
                  summary: Callable[[Any], dict[str, Any]] | None) -> Path:
    """``OUT/summary.csv``: one row per input, from the item files and the log."""
    last: dict[str, dict[str, Any]] = {}
    logf = out / "log.jsonl"
    if logf.exists():
        for line in logf.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a killed run
            last[rec.get("key")] = rec
    rows = []
    for source, key in items:
        done_file = out / "items" / f"{key}.json"
        rec = last.get(key, {})
        row: dict[str, Any] = {"source": source, "key": key}
        if done_file.exists():
            row.update(status="ok", seconds=rec.get("seconds"), worker=rec.get("worker"),
                       attempts=rec.get("attempts"), error="")
            row.update(_flat(summary, done_file.read_text()))
        elif (out / "failed" / f"{key}.json").exists():
            row.update(status="failed", seconds=rec.get("seconds"), worker=rec.get("worker"),
                       attempts=rec.get("attempts"), error=rec.get("error", ""))
        else:
            row.update(status="not run", error="")
        rows.append(row)
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=list(columns))
    w.writeheader()
    for row in rows:
        w.writerow({k: "" if row.get(k) is None else (
            f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in columns})
    path = out / "summary.csv"
    _write_whole(path, text.getvalue())
    return path


def make_executor(spec: StepSpec, cluster: str = "local", workers: int | None = None,
                  cpus_per_worker: float = 1.0, items: int | None = None) -> _Executor:
    """The executor ``cluster`` names (see the module docstring); no more local workers than
    ``items``."""
    if cluster == "local":
        return LocalExecutor(spec, workers, items)
    if cluster == "ray" or cluster.startswith("ray://") or re.fullmatch(r"[\w.-]+:\d+",
                                                                         cluster):
        return RayExecutor(spec, cluster, workers, cpus_per_worker)
    raise BatchError(f"--cluster {cluster!r}: use local, ray (RAY_ADDRESS or a cluster on "
                     "this machine), ray://HOST:PORT (Ray Client) or HOST:PORT (the head's "
                     "GCS address)")


def run_batch(step: str | Sequence[str], inputs: Sequence[str], out_dir: str | Path, *,
              options: dict[str, Any] | None = None, cluster: str = "local",
              workers: int | None = None, cpus_per_worker: float = 1.0,
              attempts: int = ATTEMPTS, progress: bool | None = None,
              executor: _Executor | None = None, stop: Any = None) -> BatchReport:
    """Run ``step`` (a step name, or a command's words) over ``inputs`` into ``out_dir``.

    Args:
        step: ``"medical.detect"``, ``"medical detect"`` or ``["medical", "detect"]``.
        inputs: globs, paths, URIs or ``@LIST`` files (:func:`expand_inputs`).
        out_dir: the results folder (see the module docstring for its layout).
        options: the step factory's keyword arguments (``threshold=0.1``).
        cluster: ``local``, ``ray``, ``ray://HOST:PORT`` or ``HOST:PORT``.
        workers: worker processes or actors (default: one per CPU).
        cpus_per_worker: CPUs each Ray actor reserves.
        attempts: tries per item when its worker dies under it (>= 1).
        progress: a progress bar with items/s and ETA (default: when stderr is a terminal).
        executor: run on this executor instead of the one ``cluster`` names (tests,
            benchmarks).
        stop: an event (``is_set()``; SIGTERM to ``deepseek batch``): no item is sent after
            it, the items in flight finish and are written, the report says ``stopped`` and
            how many were not run; the same call resumes with those.

    Raises:
        BatchError: unknown step or option, no inputs, a folder of another batch.
    """
    if attempts < 1:
        raise BatchError(f"attempts={attempts}: give at least 1")
    options = dict(options or {})
    entry = find_step([step] if isinstance(step, str) else step)
    check_options(entry, options)
    left: list[dict[str, str]] = []
    sources = expand_inputs(inputs, entry.meta.get("leave_out"), left)
    if left:
        log.info("%d file(s) the globs matched are left out (not inputs of %s), e.g. %s: %s",
                 len(left), entry.name, left[0]["source"], left[0]["why"])
    items = [(s, item_key(s)) for s in sources]
    keys = [k for _, k in items]
    if len(set(keys)) != len(keys):  # two spellings of one path
        raise BatchError("two inputs name the same file; give each once")
    out = Path(out_dir)
    _check_out(out, entry, options)
    (out / "items").mkdir(exist_ok=True)
    (out / "failed").mkdir(exist_ok=True)
    todo = [(s, k) for s, k in items if not (out / "items" / f"{k}.json").exists()]
    skipped = len(items) - len(todo)
    summary = entry.meta.get("summary")
    spec = spec_of(entry, options)
    report = BatchReport(entry.name, entry.meta.get("command"), str(out), "", 0,
                         len(items), skipped, 0, 0, 0, 0.0, left_out=left)
    if todo:
        ex = executor or make_executor(spec, cluster, workers, cpus_per_worker, len(todo))
        report.where, report.workers = ex.where, ex.workers
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), unit="item", desc=entry.name,
                   disable=(progress is False) or (progress is None and
                                                   not os.isatty(2)))
        logf = (out / "log.jsonl").open("a")

        def done(o: Outcome) -> None:
            if o.ok:
                _write_whole(out / "items" / f"{o.key}.json", o.result or "")
                stale = out / "failed" / f"{o.key}.json"
                if stale.exists():
                    stale.unlink()
                report.ok += 1
            else:
                _write_whole(out / "failed" / f"{o.key}.json", json.dumps(
                    {"source": o.source, "error": o.error, "attempts": o.attempts,
                     "worker": o.worker, "traceback": o.traceback}, indent=2) + "\n")
                report.failed += 1
                report.failures.append({"source": o.source, "error": o.error or ""})
            logf.write(json.dumps({"key": o.key, "source": o.source,
                                   "status": "ok" if o.ok else "failed",
                                   "seconds": round(o.seconds, 4), "worker": o.worker,
                                   "attempts": o.attempts, "error": o.error or "",
                                   "time": time.time()}) + "\n")
            logf.flush()
            bar.update(1)
            if report.failed:
                bar.set_postfix(failed=report.failed)

        t0 = time.perf_counter()
        try:
            report.retried = ex.run(todo, done, attempts, stop=stop)
            report.stopped = stop is not None and stop.is_set() and report.not_run > 0
        finally:
            report.seconds = time.perf_counter() - t0
            logf.close()
            bar.close()
            if executor is None:
                ex.close()
    write_summary(out, items, summary)
    _write_whole(out / "run.json", json.dumps(report.to_dict(), indent=2) + "\n")
    return report
