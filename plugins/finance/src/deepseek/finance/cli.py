"""``deepseek finance ...`` commands."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path

import click

from deepseek.finance import __version__

log = logging.getLogger(__name__)


@click.group("finance")
@click.version_option(__version__, "--version", prog_name="deepseek-finance",
                      message="%(prog)s %(version)s")
def finance() -> None:
    """Finance: tick readers, streaming features, tick models compiled to a microsecond fast
    path, and a UDP feed server.

    \b
    info      what this plugin registers
    generate  write synthetic order-book ticks (CSV)
    train     train a tick classifier (any registered model that fits)
    evaluate  accuracy / macro F1 of predictions against labels
    serve     answer tick datagrams with decisions (UDP)
    replay    send ticks to a feed server and time the round trips

    DATA arguments go through the reader registry: a tick CSV, a Binance WebSocket capture
    ('<receive_ns> <json>' lines; plain, .gz or .zst), or synthetic:?n=N&seed=S.
    """


@finance.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(as_json: bool) -> None:
    """Show what this plugin registers."""
    from deepseek.plugins import plugin_infos

    for plugin in plugin_infos():
        if plugin.name == "finance":
            if as_json:
                click.echo(json.dumps({"version": __version__, **plugin.to_dict()}, indent=2))
                return
            click.echo(f"deepseek-finance {__version__}")
            for kind, names in plugin.registered.items():
                click.echo(f"  {kind}s: {', '.join(names) or '(none)'}")


@finance.command("generate")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--ticks", "n", type=int, default=100_000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def generate(out: Path, n: int, seed: int, as_json: bool) -> None:
    """Write synthetic order-book ticks to OUT (CSV), whose order flow predicts the next
    mid-price moves (the same generator as the synthetic: reader)."""
    from deepseek.finance.synthetic import synthetic_ticks
    from deepseek.finance.ticks import write_csv

    write_csv(synthetic_ticks(n, seed=seed), out)
    if as_json:
        click.echo(json.dumps({"out": str(out), "ticks": n, "seed": seed}))
    else:
        click.echo(f"wrote {n} ticks to {out}")


@finance.command("train")
@click.argument("data")
@click.option("--model", default="tick-mlp", show_default=True,
              help="Any registered model that takes [N, 16] tick features or [N, T, 16] "
                   "sequences and returns 3 class scores per tick (tick-mlp, tick-gru, ...).")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output folder: model.safetensors + model.json (+ checkpoints/).")
@click.option("--epochs", type=int, default=6, show_default=True)
@click.option("--horizon", type=int, default=10, show_default=True,
              help="Label horizon in ticks.")
@click.option("--threshold", type=float, default=0.0, show_default=True,
              help="Relative mid move that counts as up/down.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--accum-steps", type=int, default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (default: text).")
def train_cmd(data: str, model: str, out: Path, epochs: int, horizon: int, threshold: float,
              batch_size: int, lr: float, accum_steps: int, seed: int, as_json: bool) -> None:
    """Train a tick classifier on DATA through the core Trainer; report held-out metrics
    beside the majority-class baseline."""
    from deepseek.finance.training import load_ticks, train
    from deepseek.loader import save_model

    ticks = load_ticks(data)
    res = train(ticks, model, epochs=epochs, horizon=horizon, threshold=threshold,
                batch_size=batch_size, lr=lr, accum_steps=accum_steps, seed=seed,
                checkpoint_dir=out / "checkpoints")
    path = save_model(res.model, out / "model.safetensors", architecture=model,
                      config=res.config)
    if as_json:
        click.echo(json.dumps({"model": str(path), "held_out": res.metrics}, indent=2))
        return
    m = res.metrics
    click.echo(f"model: {path}")
    click.echo(f"held out ({int(m['val_ticks'])} ticks): accuracy {m['accuracy']:.4f}, macro F1 "
               f"{m['macro_f1']:.4f}; majority baseline accuracy {m['majority_baseline']:.4f}, "
               f"macro F1 {m['majority_baseline_macro_f1']:.4f}")


@finance.command("evaluate")
@click.option("--pred", "pred_path", type=click.Path(exists=True, path_type=Path),
              required=True, help="(N, 3) class scores or (N,) classes: .npy, .csv or .json.")
@click.option("--ref", "ref_path", type=click.Path(exists=True, path_type=Path), required=True,
              help="(N,) labels 0 (down), 1 (flat), 2 (up).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def evaluate_cmd(pred_path: Path, ref_path: Path, as_json: bool) -> None:
    """Accuracy and macro F1 of down/flat/up predictions, beside the majority baseline (the
    registered metric tick-classification, as `deepseek evaluate` computes it)."""
    from deepseek.evaluation import evaluate_files

    res = evaluate_files("tick-classification", pred_path, ref_path)
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    for k, v in res.items():
        click.echo(f"{k}: {v:.4f}")


def _fastpath(model: str, trust_pickle: bool):
    from deepseek.finance.fastpath import FastPath
    from deepseek.loader import ModelLoader

    loaded = ModelLoader.load(model, device="cpu", trust_pickle=trust_pickle)
    return FastPath.from_model(loaded)


@finance.command("serve")
@click.option("--udp", "address", default="127.0.0.1:9999", show_default=True,
              help="HOST:PORT to listen on.")
@click.option("--model", default="tick-mlp", show_default=True,
              help="Registry name or model file (safetensors + JSON config).")
@click.option("--busy-poll", is_flag=True, help="Spin on a non-blocking socket (lowest "
              "latency, uses a whole core).")
@click.option("--max-ticks", type=int, default=None, help="Stop after this many datagrams.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--trust-pickle", is_flag=True, help="Allow a pickled model file.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the final counters as JSON (default: text).")
def serve(address: str, model: str, busy_poll: bool, max_ticks: int | None,
          duration: float | None, trust_pickle: bool, as_json: bool) -> None:
    """Answer tick datagrams with decisions (see deepseek.finance.feed for the layout)."""
    from deepseek.finance.feed import FeedServer, parse_address

    host, port = parse_address(address)
    server = FeedServer(_fastpath(model, trust_pickle), host, port, busy_poll=busy_poll)
    click.echo(f"serving {model} on udp://{server.address[0]}:{server.address[1]}"
               f"{' (busy-poll)' if busy_poll else ''}; Ctrl-C stops", err=True)
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    try:
        server.serve_forever(max_ticks=max_ticks, duration=duration)
    except KeyboardInterrupt:
        pass
    finally:
        server.sock.close()
        counters = server.counters.to_dict()
        click.echo(json.dumps(counters) if as_json else
                   ", ".join(f"{k} {v}" for k, v in counters.items()))


@finance.command("replay")
@click.argument("data")
@click.option("--udp", "address", default="127.0.0.1:9999", show_default=True)
@click.option("--limit", type=int, default=None, help="Send at most this many ticks.")
@click.option("--warmup", type=int, default=1000, show_default=True,
              help="Ticks left out of the percentiles.")
@click.option("--timeout", type=float, default=1.0, show_default=True,
              help="Seconds to wait for each answer.")
@click.option("--busy-poll", is_flag=True, help="Spin while waiting for answers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (default: text).")
def replay_cmd(data: str, address: str, limit: int | None, warmup: int, timeout: float,
               busy_poll: bool, as_json: bool) -> None:
    """Replay DATA to a feed server tick by tick and report the round trip per tick (JSON)."""
    from deepseek.finance.feed import parse_address, replay
    from deepseek.finance.training import load_ticks

    host, port = parse_address(address)
    res = replay(load_ticks(data), host, port, timeout=timeout, warmup=warmup, limit=limit,
                 busy_poll=busy_poll)
    click.echo(json.dumps(res, indent=2) if as_json else
               "\n".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}"
                         for k, v in res.items()))
    if res["lost"]:
        raise SystemExit(1)
