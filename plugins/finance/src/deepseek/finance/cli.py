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

    DATA arguments take a tick CSV, a Binance WebSocket recording ('<receive_ns> <json>'
    lines), or synthetic[:N[:SEED]].
    """


@finance.command("synth")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--ticks", "n", type=int, default=100_000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def synth(out: Path, n: int, seed: int) -> None:
    """Write synthetic order-book ticks to OUT (CSV)."""
    from deepseek.finance.ticks import synthetic_ticks, write_csv

    write_csv(synthetic_ticks(n, seed=seed), out)
    click.echo(f"wrote {n} ticks to {out}")


@finance.command("train")
@click.argument("data")
@click.option("--model", type=click.Choice(["tick-mlp", "tick-gru"]), default="tick-mlp",
              show_default=True)
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
def train_cmd(data: str, model: str, out: Path, epochs: int, horizon: int, threshold: float,
              batch_size: int, lr: float, accum_steps: int, seed: int) -> None:
    """Train a tick classifier on DATA through the core Trainer; report held-out metrics."""
    from deepseek.finance.training import load_ticks, train
    from deepseek.loader import save_model

    ticks = load_ticks(data)
    res = train(ticks, model, epochs=epochs, horizon=horizon, threshold=threshold,
                batch_size=batch_size, lr=lr, accum_steps=accum_steps, seed=seed,
                checkpoint_dir=out / "checkpoints")
    path = save_model(res.model, out / "model.safetensors", architecture=model,
                      config=res.config)
    click.echo(json.dumps({"model": str(path), "held_out": res.metrics}, indent=2))


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
def serve(address: str, model: str, busy_poll: bool, max_ticks: int | None,
          duration: float | None, trust_pickle: bool) -> None:
    """Answer tick datagrams with decisions (see deepseek.finance.feed for the layout)."""
    from deepseek.finance.feed import FeedServer, parse_address

    host, port = parse_address(address)
    server = FeedServer(_fastpath(model, trust_pickle), host, port, busy_poll=busy_poll)
    click.echo(f"serving {model} on udp://{server.address[0]}:{server.address[1]}"
               f"{' (busy-poll)' if busy_poll else ''}; Ctrl-C stops", err=True)
    signal.signal(signal.SIGTERM, lambda *_: server._stop.set())
    try:
        server.serve_forever(max_ticks=max_ticks, duration=duration)
    except KeyboardInterrupt:
        pass
    finally:
        server.sock.close()
        click.echo(json.dumps(server.counters.to_dict()))


@finance.command("replay")
@click.argument("data")
@click.option("--udp", "address", default="127.0.0.1:9999", show_default=True)
@click.option("--limit", type=int, default=None, help="Send at most this many ticks.")
@click.option("--warmup", type=int, default=1000, show_default=True,
              help="Ticks left out of the percentiles.")
@click.option("--timeout", type=float, default=1.0, show_default=True,
              help="Seconds to wait for each answer.")
@click.option("--busy-poll", is_flag=True, help="Spin while waiting for answers.")
def replay_cmd(data: str, address: str, limit: int | None, warmup: int, timeout: float,
               busy_poll: bool) -> None:
    """Replay DATA to a feed server tick by tick and report the round trip per tick (JSON)."""
    from deepseek.finance.feed import parse_address, replay
    from deepseek.finance.training import load_ticks

    host, port = parse_address(address)
    res = replay(load_ticks(data), host, port, timeout=timeout, warmup=warmup, limit=limit,
                 busy_poll=busy_poll)
    click.echo(json.dumps(res, indent=2))
    if res["lost"]:
        raise SystemExit(1)
