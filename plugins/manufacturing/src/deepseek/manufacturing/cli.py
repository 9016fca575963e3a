"""``deepseek manufacturing ...`` commands."""

from __future__ import annotations

import click

from deepseek.manufacturing import __version__


@click.group("manufacturing")
@click.version_option(__version__, "--version", prog_name="deepseek-manufacturing",
                      message="%(prog)s %(version)s")
def manufacturing() -> None:
    """Manufacturing inspection: crack detection on live camera streams with a streaming
    3D-CNN + LSTM."""


@manufacturing.command("info")
def info() -> None:
    """Show what this plugin registers."""
    from deepseek.plugins import plugin_infos

    for plugin in plugin_infos():
        if plugin.name == "manufacturing":
            click.echo(f"deepseek-manufacturing {__version__}")
            for kind, names in plugin.registered.items():
                click.echo(f"  {kind}s: {', '.join(names) or '(none yet)'}")
