"""``deepseek finance risk train | tune | evaluate``: credit risk from a tabular CSV."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def table_options(fn):  # type: ignore[no-untyped-def]
    """Add the options shared by the risk commands that read a table (label, columns, bootstrap,
    JSON).
    """
    fn = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(fn)
    fn = click.option("--bootstrap", type=click.IntRange(0), default=1000, show_default=True,
                      help="Bootstrap draws for the 95 % intervals (0: none).")(fn)
    fn = click.option("--positive", default=None,
                      help="The label value meaning default [1, else the rarer value].")(fn)
    fn = click.option("--drop", default=None, metavar="COL,COL",
                      help="Columns to leave out (identifiers are left out by themselves).")(fn)
    fn = click.option("--categorical", default=None, metavar="COL,COL",
                      help="Columns that are codes, not amounts (SEX,EDUCATION,MARRIAGE).")(fn)
    fn = click.option("--label", default=None,
                      help="The 0/1 label column [a column called default, label, target, "
                           "class, bad or y].")(fn)
    return click.argument("data", type=click.Path(exists=True, dir_okay=False,
                                                  path_type=Path))(fn)


def _table(data: Path, label: str | None, categorical: str | None, drop: str | None,
           positive: str | None) -> Any:
    from deepseek.finance import risk

    return risk.read_table(data, label or risk.guess_label(data),
                           categorical=_names(categorical), drop=_names(drop),
                           positive=positive)


def _ci(ci: list[float] | None) -> str:
    return f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "(no bootstrap)"


def _echo(rep: Any, out: Path | None, as_json: bool) -> None:
    payload = rep.to_dict()
    if out is not None:
        from deepseek.finance import risk
        from deepseek.finance.figures import roc_figure

        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
        mlp = "MLP, tuned" if "MLP, tuned" in rep.params else "MLP, defaults"
        model = risk.save(out / "model.safetensors", rep.model, rep.encoder, rep.params[mlp],
                          rep.table, rep.test[mlp])
        roc_figure(out / "roc.png", {k: (rep.y_test, p) for k, p in rep.probabilities.items()})
        payload["written"] = {"model": str(model), "report": str(out / "report.json"),
                              "figure": str(out / "roc.png")}
    if as_json:
        click.echo(json.dumps(payload, indent=2, default=str))
        return
    d = payload["data"]
    click.echo(f"{d['rows']} rows, default rate {d['default_rate']:.1%}; split "
               f"{d['split']['train']}/{d['split']['validation']}/{d['split']['test']}")
    click.echo(f"{'model':<22} {'test AUC [95 % CI]':<28} {'KS':<8} Brier")
    for name, sc in payload["test"].items():
        click.echo(f"{name:<22} {sc['auc']:.4f} {_ci(sc['auc_ci95']):<20}  "
                   f"{sc['ks']:.4f}  {sc['brier']:.4f}")
    for note in payload["notes"]:
        click.echo(f"- {note}")
    for k, v in payload.get("written", {}).items():
        click.echo(f"{k}: {v}")


@click.group("risk")
def risk_group() -> None:
    """Credit risk from a tabular CSV: an MLP against logistic regression and gradient
    boosting, scored once on a held-out test part (AUC, KS, Brier, bootstrap intervals).

    \b
    train     the MLP with its defaults (or --params), beside the baselines
    tune      search the MLP's learning rate, L2 penalty, width, depth and dropout
              (deepseek.tune), then score defaults, tuned and baselines
    evaluate  score a trained model (train/tune --out) on a CSV
    """


@risk_group.command("train")
@table_options
@click.option("--params", default=None, help="MLP parameters as JSON, e.g. "
                                             "'{\"lr\": 0.003, \"width\": 128}'.")
@click.option("--epochs", type=click.IntRange(1), default=30, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write model.safetensors (+ .json), report.json and roc.png here.")
def train_cmd(data: Path, label: str | None, categorical: str | None, drop: str | None,
              positive: str | None, params: str | None, epochs: int, seed: int,
              out: Path | None, bootstrap: int, as_json: bool) -> None:
    """Train the credit MLP on DATA (a CSV with a label column) and score it on its test
    part beside logistic regression and gradient boosting."""
    from deepseek.finance import risk
    from deepseek.paths import ready_folder

    table = _table(data, label, categorical, drop, positive)
    try:
        given = json.loads(params) if params else {}
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON ({exc})", param_hint="--params") from None
    if not isinstance(given, dict):
        raise click.BadParameter("a JSON object, e.g. '{\"lr\": 0.003}'",
                                 param_hint="--params")
    unknown = set(given) - set(risk.MLP_DEFAULTS)
    if unknown:
        raise click.BadParameter(f"unknown parameter(s) {sorted(unknown)}; the MLP takes "
                                 f"{', '.join(risk.MLP_DEFAULTS)}", param_hint="--params")
    ready_folder(out, "--out")  # before the training, not after it
    rep = risk.run(table, seed=seed, epochs=epochs, mlp_params=given, bootstrap=bootstrap)
    _echo(rep, out, as_json)


@risk_group.command("tune")
@table_options
@click.option("--trials", type=click.IntRange(1), default=24, show_default=True)
@click.option("--sampler", type=click.Choice(["tpe", "ga", "nsga2", "cmaes", "random"]),
              default="tpe", show_default=True,
              help="tpe wins the tuning benchmark; ga is the genetic algorithm.")
@click.option("--epochs", type=click.IntRange(1), default=30, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write the tuned model, report.json and roc.png here.")
def tune_cmd(data: Path, label: str | None, categorical: str | None, drop: str | None,
             positive: str | None, trials: int, sampler: str, epochs: int, seed: int,
             out: Path | None, bootstrap: int, as_json: bool) -> None:
    """Tune the credit MLP on DATA's validation part, then score the defaults, the tuned
    parameters and the baselines once on its test part."""
    from deepseek.finance import risk
    from deepseek.paths import ready_folder

    table = _table(data, label, categorical, drop, positive)
    ready_folder(out, "--out")  # before the trials, not after them
    rep = risk.run(table, tune_trials=trials, sampler=sampler, seed=seed, epochs=epochs,
                   bootstrap=bootstrap)
    _echo(rep, out, as_json)


@risk_group.command("evaluate")
@table_options
@click.option("--model", "model_path", type=click.Path(exists=True, path_type=Path),
              required=True, help="model.safetensors written by train or tune --out.")
def evaluate_cmd(data: Path, label: str | None, categorical: str | None, drop: str | None,
                 positive: str | None, model_path: Path, bootstrap: int,
                 as_json: bool) -> None:
    """Score a trained credit model on all of DATA (new clients, a later month): AUC, KS,
    Brier with bootstrap intervals."""
    from deepseek.finance import risk

    net, enc, stored = risk.load(model_path)
    header = set(risk.read_header(data))  # a needed column that is absent: enc.check says so
    table = risk.read_table(data, label or stored["label"],
                            categorical=tuple(c for c in enc.cat if c in header),
                            drop=_names(drop), positive=positive or stored.get("positive"),
                            keep=(*enc.num, *enc.cat))
    enc.check(table)
    sc = risk.scores(table.y, risk.mlp_probabilities(net, enc.transform(table)), bootstrap)
    payload = {"model": str(model_path), "data": table.describe(), "scores": sc}
    if as_json:
        click.echo(json.dumps(payload, indent=2))
        return
    for m in ("auc", "ks", "brier"):
        click.echo(f"{m}: {sc[m]:.4f} {_ci(sc[m + '_ci95'])}")
