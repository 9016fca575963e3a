"""``deepseek finance ...`` commands."""

from __future__ import annotations

import click
from deepseek.finance import __version__


@click.group("finance")
@click.version_option(__version__, "--version", prog_name="deepseek-finance",
                      message="%(prog)s %(version)s")
def finance() -> None:
    """Finance: A microsecond tick-to-decision inference path and a latency-aware backtester."""


@finance.command("info")
def info() -> None:
    """Show what this plugin registers."""
    from deepseek.plugins import plugin_infos

    for plugin in plugin_infos():
        if plugin.name == "finance":
            click.echo(f"deepseek-finance {__version__}")
            for kind, names in plugin.registered.items():
                click.echo(f"  {kind}s: {', '.join(names) or '(none yet)'}")
