"""Pipelines of the finance plugin, run by ``deepseek run`` and ``deepseek demo``."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.report import Headline, Measure, PipelineResult, Table


def percentiles_us(ns: np.ndarray) -> dict[str, float]:
    """p50, p99 and p99.9 of durations in nanoseconds, in microseconds."""
    us = np.asarray(ns, dtype=np.float64) / 1e3
    return {"p50": float(np.percentile(us, 50)), "p99": float(np.percentile(us, 99)),
            "p99_9": float(np.percentile(us, 99.9))}


def time_per_call(fn, args: list[tuple]) -> np.ndarray:  # type: ignore[no-untyped-def]
    """ns per call of ``fn(*a)`` for each ``a`` in ``args`` (perf_counter_ns around each)."""
    clock = time.perf_counter_ns
    out = np.empty(len(args), dtype=np.int64)
    for i, a in enumerate(args):
        t0 = clock()
        fn(*a)
        out[i] = clock() - t0
    return out


def tick_latency(input: str | None = None, out_dir: Path = Path("."), quiet: bool = False,
                 n_ticks: int = 20_000) -> PipelineResult:
    """Score the packaged tick-mlp on held-out ticks and time its fast path against eager."""
    import torch

    from deepseek.evaluation import evaluate
    from deepseek.finance.fastpath import FastPath
    from deepseek.finance.features import StreamingFeatures, batch_features
    from deepseek.finance.figures import latency_histogram
    from deepseek.finance.ticks import tick_args
    from deepseek.finance.training import labels, load_ticks
    from deepseek.loader import ModelLoader

    ticks = load_ticks(input if input is not None else f"synthetic:?n={n_ticks}&seed=12345")
    loaded = ModelLoader.load("tick-mlp", device="cpu")
    model = loaded.module
    horizon = 10
    feats = batch_features(ticks)
    with torch.inference_mode():
        logits = model(torch.from_numpy(feats)).numpy()
    quality = evaluate("tick-classification", logits[:-horizon], labels(ticks, horizon))
    fp = FastPath.from_model(model)
    _, fp_logits = fp.run(ticks)
    parity = float(np.abs(fp_logits - logits).max())

    n = min(len(ticks), 5000)
    args = [tick_args(t) for t in ticks[:n]]
    fp.reset()
    fast = time_per_call(fp.on_tick, args)
    sf = StreamingFeatures()

    def eager_step(*a: object) -> None:
        model(torch.from_numpy(sf.update(*a)).unsqueeze(0)).argmax(1)

    prev_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            eager = time_per_call(eager_step, args)
    finally:
        torch.set_num_threads(prev_threads)
    warm = n // 10
    pf, pe = percentiles_us(fast[warm:]), percentiles_us(eager[warm:])
    metrics = {
        "held_out_accuracy": Measure(quality["accuracy"], "held-out accuracy"),
        "held_out_macro_f1": Measure(quality["macro_f1"], "held-out macro F1"),
        "majority_baseline_accuracy": Measure(quality["majority_baseline"],
                                              "majority-class baseline accuracy"),
        "majority_baseline_macro_f1": Measure(quality["majority_baseline_macro_f1"],
                                              "majority-class baseline macro F1"),
        "fastpath_max_abs_logit_diff": Measure(parity, "fast path vs PyTorch, largest logit "
                                                       "difference"),
    }
    timings = {"fastpath_p50_us": Measure(pf["p50"], "fast path p50 per tick", "µs"),
               "fastpath_p99_us": Measure(pf["p99"], "fast path p99 per tick", "µs"),
               "eager_p50_us": Measure(pe["p50"], "PyTorch eager p50 per tick", "µs"),
               "eager_p99_us": Measure(pe["p99"], "PyTorch eager p99 per tick", "µs")}
    fig = latency_histogram(Path(out_dir) / "latency.png",
                            {"fast path (numba)": fast[warm:], "PyTorch eager": eager[warm:]})
    table = Table("Per-tick latency, feature update + forward (µs)",
                  ["path", "p50", "p99", "p99.9"],
                  [["fast path (numba)", round(pf["p50"], 2), round(pf["p99"], 2),
                    round(pf["p99_9"], 2)],
                   ["PyTorch eager", round(pe["p50"], 2), round(pe["p99"], 2),
                    round(pe["p99_9"], 2)]])
    source = "synthetic, seed 12345: not the training seed" if input is None else input
    notes = [f"{len(ticks)} ticks ({source}); "
             f"labels: mid move over {horizon} ticks; latency over {n - warm} ticks after "
             f"{warm} warm-up ticks on one thread. benchmarks/tick_latency.py adds TorchScript, "
             "ONNX Runtime, the GRU and the UDP round trip."]
    if quality["macro_f1"] <= quality["majority_baseline_macro_f1"]:
        notes.append("the model does not beat the majority-class baseline's macro F1 here")
    return PipelineResult(pipeline="finance.tick-latency",
                          title="Finance: tick-to-decision fast path", metrics=metrics,
                          timings=timings,
                          quality=Headline("held-out macro F1 (majority baseline "
                                           f"{quality['majority_baseline_macro_f1']:.3f})",
                                           quality["macro_f1"]),
                          speed=Headline("fast path p99", pf["p99"], "µs", target=5.0,
                                         higher_is_better=False),
                          tables=[table], figures=[fig], notes=notes,
                          input=str(input) if input else "synthetic ticks")


STRATEGY_COLUMNS = ["strategy", "latency", "P&L", "return %", "Sharpe per period",
                    "Sharpe annual", "max DD % of peak", "hit rate", "fills", "fees",
                    "turnover"]


def _num(v: Any, digits: int) -> Any:
    """A rounded figure, or "n/a" for None/NaN."""
    return "n/a" if v is None or v != v else round(v, digits)


def _per_period(m: dict[str, Any]) -> float:
    v = m["sharpe_per_period"]
    return float("nan") if v is None else float(v)


def strategy_rows(named: dict[str, dict[str, Any]]) -> list[list[Any]]:
    """Table rows of trading metrics, ``{"label|latency": metrics}``."""
    rows = []
    for label, m in named.items():
        name, _, lat = label.partition("|")
        hit = m["hit_rate"]
        rows.append([name, lat, round(m["pnl"], 4), round(100 * m["total_return"], 3),
                     _num(m["sharpe_per_period"], 4), _num(m["sharpe"], 2),
                     round(100 * m["max_drawdown"], 3),
                     round(hit, 3) if hit == hit else "-", m["fills"],
                     round(m["fees_paid"], 4), round(m["turnover"], 1)])
    return rows


def tick_strategy(input: str | None = None, out_dir: Path = Path("."), quiet: bool = False,
                  n_ticks: int = 45_000, folds: int = 3, epochs: int = 2,
                  feed_latency_us: float = 200.0, order_latency_us: float = 800.0,
                  taker_fee_bps: float = 0.2) -> PipelineResult:
    """Synthetic market -> walk-forward training -> fast path -> latency-aware backtest."""
    from deepseek.finance.backtest import BacktestConfig
    from deepseek.finance.figures import equity_drawdown, latency_histogram
    from deepseek.finance.strategy import fast_path, walk_forward
    from deepseek.finance.synthetic import synthetic_market
    from deepseek.finance.ticks import tick_args
    from deepseek.finance.training import load_ticks

    out_dir = Path(out_dir)
    ticks = synthetic_market(n_ticks, seed=2024) if input is None else load_ticks(input)
    cfg = BacktestConfig(order_type="market", feed_latency_us=feed_latency_us,
                         order_latency_us=order_latency_us, taker_fee_bps=taker_fee_bps)
    t0 = time.perf_counter()
    wf = walk_forward(ticks, folds=folds, config=cfg, epochs=epochs,
                      progress=False if quiet else None)
    wf_s = time.perf_counter() - t0
    lat_label = f"{feed_latency_us + order_latency_us:g} µs"
    named = wf.table("tick-mlp", lat_label, period_s=1.0)
    # per-tick latency of the last fold's fast path (feature update + forward + decision)
    fp = fast_path(wf.folds[-1].model)
    te = wf.folds[-1].test
    ns = time_per_call(fp.on_tick, [tick_args(t) for t in ticks[te[0]:te[1]][:5000]])
    warm = len(ns) // 10
    pf = percentiles_us(ns[warm:])
    curves = {}
    for strat, setting, label in (("model", "zero", "tick-mlp, 0 µs"),
                                  ("model", "configured", f"tick-mlp, {lat_label}"),
                                  ("imbalance", "configured", f"imbalance rule, {lat_label}")):
        run = wf.joined(strat, setting)
        curves[label] = (run.time_ns, run.equity)
    figs = [equity_drawdown(out_dir / "equity.png", curves, run.capital,
                            title="Walk-forward test spans: equity and drawdown"),
            latency_histogram(out_dir / "latency.png", {"fast path (numba)": ns[warm:]})]
    m_zero = named["tick-mlp|0 µs"]
    m_conf = named[f"tick-mlp|{lat_label}"]
    b_conf = named[f"imbalance rule|{lat_label}"]
    skill_rows = [[k + 1, f.train[0], f.train[1], f.test[0], f.test[1],
                   round(f.skill["macro_f1"], 4), round(f.baseline_theta, 4)]
                  for k, f in enumerate(wf.folds)]
    tables = [Table("Walk-forward backtest (test spans of all folds joined; Sharpe from 1 s "
                    "returns, annualised by the periods per year observed)",
                    STRATEGY_COLUMNS, strategy_rows(named)),
              Table("Folds: train on one window, test on the next", [
                  "fold", "train from", "train to", "test from", "test to",
                  "model test macro F1 (in its training window)", "imbalance theta"],
                  skill_rows)]
    verdict = ("the model makes no trade (none of its calls is worth the costs)"
               if m_conf["fills"] == 0 else
               "the model's edge survives the configured latency and fees"
               if m_conf["pnl"] > 0 else
               "the model's edge does NOT survive the configured latency and fees"
               if m_zero["pnl"] > 0 else "the model loses even at zero latency")
    notes = [
        f"{len(ticks)} ticks ({'synthetic market, seed 2024' if input is None else input}); "
        f"{folds} walk-forward folds, {epochs} epochs each, cost-aware labels; market orders "
        f"of 1 unit, feed latency {feed_latency_us:g} µs + order latency "
        f"{order_latency_us:g} µs, taker fee {taker_fee_bps:g} bp; walk-forward took "
        f"{wf_s:.1f} s.",
        f"{verdict}: P&L {m_zero['pnl']:.3f} at zero latency, {m_conf['pnl']:.3f} at "
        f"{lat_label}; the imbalance rule {b_conf['pnl']:.3f} at {lat_label}.",
        "Sharpe ratios are per return period and not annualised: minutes of data do not "
        "support an annual figure; compare them across rows, not with a fund's.",
    ]
    return PipelineResult(
        pipeline="finance.tick-strategy", title="Finance: tick strategy, walk-forward backtest "
        "with latency",
        metrics={"model_pnl_zero_latency": Measure(m_zero["pnl"], "model P&L at zero latency",
                                                   "quote units"),
                 "model_pnl": Measure(m_conf["pnl"], f"model P&L at {lat_label}",
                                      "quote units"),
                 "model_sharpe": Measure(_per_period(m_conf), f"model Sharpe per period at "
                                                             f"{lat_label} ({m_conf['period']})"),
                 "model_max_drawdown": Measure(100 * m_conf["max_drawdown"],
                                               f"model max drawdown at {lat_label}",
                                               "% of peak equity"),
                 "imbalance_pnl": Measure(b_conf["pnl"], f"imbalance rule P&L at {lat_label}",
                                          "quote units"),
                 "imbalance_sharpe": Measure(_per_period(b_conf), f"imbalance rule Sharpe per "
                                                                  f"period at {lat_label}")},
        timings={"walk_forward_s": Measure(wf_s, "walk-forward training", "s"),
                 "fastpath_p50_us": Measure(pf["p50"], "fast path p50 per tick", "µs"),
                 "fastpath_p99_us": Measure(pf["p99"], "fast path p99 per tick", "µs")},
        quality=Headline(f"model P&L at {lat_label} (imbalance rule {b_conf['pnl']:.3f})",
                         m_conf["pnl"]),
        speed=Headline("fast path p99", pf["p99"], "µs", target=5.0, higher_is_better=False),
        tables=tables, figures=figs, notes=notes,
        input=str(input) if input else "synthetic market")


# ----------------------------------------------------------------------------- credit risk
def _credit_table(input: str | None, out_dir: Path | None, label: str | None, rows: int,
                  seed: int, categorical: str | list[str] | tuple[str, ...] = ()
                  ) -> tuple[Any, str]:
    import tempfile

    from deepseek.finance import risk

    if input is None:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(out_dir) if out_dir is not None else Path(tmp)
            path = risk.synthetic_credit(folder / "synthetic-credit.csv", n=rows, seed=seed)
            table = risk.read_table(path, "DEFAULT", categorical=risk.SYNTHETIC_CATEGORICAL)
        return table, (f"built-in synthetic table: {rows} made-up clients shaped like the UCI "
                       "credit-card set (no finding here says anything about real credit)")
    st = Path(input).stat() if Path(input).is_file() else None
    cats = tuple(c.strip() for c in (categorical.split(",") if isinstance(categorical, str)
                                     else categorical) if c.strip())
    table = _read_credit(str(input), label or risk.guess_label(input), cats,
                         (st.st_mtime_ns, st.st_size) if st else None)
    return table, str(input)


@functools.lru_cache(maxsize=2)
def _read_credit(path: str, label: str, categorical: tuple[str, ...],
                 version: tuple[int, int] | None) -> Any:
    """A credit CSV read once per process while it is unchanged (a tuning study reads it for
    every trial)."""
    from deepseek.finance import risk

    return risk.read_table(path, label, categorical=categorical)


def credit_risk(input: str | None = None, out_dir: Path = Path("."), quiet: bool = False,
                label: str | None = None, categorical: str | list[str] = "",
                trials: int = 12, sampler: str = "tpe",
                rows: int = 4000, seed: int = 0, epochs: int = 30,
                bootstrap: int = 300) -> PipelineResult:
    """Credit risk on a tabular CSV (default: a built-in synthetic table): the MLP with its
    defaults and tuned, against logistic regression and gradient boosting, each scored once
    on the test part (AUC, KS, Brier, bootstrap intervals)."""
    from deepseek.finance.figures import roc_figure
    from deepseek.finance.risk import run

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table, source = _credit_table(input, out_dir, label, rows, seed, categorical)
    rep = run(table, tune_trials=trials, sampler=sampler, seed=seed, epochs=epochs,
              bootstrap=bootstrap, progress=False if quiet else None)
    metrics: dict[str, Any] = {}
    rows_: list[list[Any]] = []
    for name, sc in rep.test.items():
        key = name.lower().replace(", ", "_").replace(" ", "_")
        metrics[f"{key}_auc"] = Measure(sc["auc"], f"test AUC, {name}")
        metrics[f"{key}_ks"] = Measure(sc["ks"], f"test KS, {name}")
        metrics[f"{key}_brier"] = Measure(sc["brier"], f"test Brier score, {name}")
        rows_.append([name, *(f"{sc[m]:.4f} [{sc[m + '_ci95'][0]:.4f}, "
                              f"{sc[m + '_ci95'][1]:.4f}]" if sc[m + "_ci95"] else
                              f"{sc[m]:.4f}" for m in ("auc", "ks", "brier"))])
    timings = {f"{k.lower().replace(', ', '_').replace(' ', '_')}_s":
               Measure(v, f"{k} (fit{', tuning included' if 'tuned' in k else ''})", "s")
               for k, v in rep.seconds.items()}
    best_base = max(rep.test[b]["auc"] for b in ("logistic regression", "gradient boosting"))
    mlp = "MLP, tuned" if "MLP, tuned" in rep.test else "MLP, defaults"
    figs = [roc_figure(out_dir / "roc.png", {k: (rep.y_test, p)
                                             for k, p in rep.probabilities.items()})]
    params = [[k, *(rep.params.get(m, {}).get(k, "-") for m in ("MLP, defaults", "MLP, tuned"))]
              for k in rep.params["MLP, defaults"]]
    d = rep.data
    notes = [f"data: {source}; {d['rows']} rows, default rate {d['default_rate']:.1%}, "
             f"{len(d['numeric'])} numeric and {len(d['categorical'])} categorical columns "
             f"({d['features_after_encoding']} features encoded), split train/validation/test "
             f"{d['split']['train']}/{d['split']['validation']}/{d['split']['test']}; the test "
             f"part is scored once. Tuning: {trials} trials of the {sampler} sampler on "
             "validation AUC.", *rep.notes]
    if d["dropped"]:
        notes.append(f"columns left out: {d['dropped']}")
    return PipelineResult(
        pipeline="finance.credit-risk", title="Finance: credit risk, MLP against baselines",
        metrics=metrics, timings=timings,
        quality=Headline(f"test AUC, {mlp} (best baseline {best_base:.4f})",
                         rep.test[mlp]["auc"], target=best_base),
        tables=[Table("Test scores [bootstrap 95 % interval]", ["model", "AUC", "KS",
                                                                "Brier"], rows_),
                Table("MLP parameters", ["parameter", "defaults", "tuned"], params)],
        figures=figs, notes=notes, input=source)


def credit_risk_model(input: str | None = None, out_dir: Path = Path("."), quiet: bool = False,
                      label: str | None = None, categorical: str | list[str] = "",
                      rows: int = 2000, seed: int = 0,
                      epochs: int = 30, trial: Any = None, **params: Any) -> PipelineResult:
    """The tuning objective: the MLP with ``params`` (lr, weight_decay, width, depth,
    dropout) trained on the train part, its validation AUC as ``val_auc``."""
    from deepseek.errors import PipelineError
    from deepseek.finance.risk import MLP_DEFAULTS, Encoder, split, train_mlp

    unknown = set(params) - set(MLP_DEFAULTS)
    if unknown:
        raise PipelineError(f"finance.credit-risk-model: unknown parameter(s) "
                            f"{sorted(unknown)}; it takes {', '.join(MLP_DEFAULTS)}")
    t0 = time.perf_counter()
    table, source = _credit_table(input, None, label, rows, seed, categorical)
    train, val, _ = split(table)
    enc = Encoder().fit(train)
    _, auc = train_mlp(enc.transform(train), train.y, enc.transform(val), val.y, params,
                       epochs=epochs, seed=seed, trial=trial)
    return PipelineResult("finance.credit-risk-model", title="Finance: the credit MLP, "
                          "validation AUC", metrics={"val_auc": Measure(auc, "validation AUC")},
                          timings={"seconds": Measure(time.perf_counter() - t0, "training",
                                                      "s")},
                          quality=Headline("validation AUC", auc), input=source)
