"""``deepseek medical ...`` commands."""

from __future__ import annotations

import click

from deepseek.medical import __version__


@click.group("medical")
@click.version_option(__version__, "--version", prog_name="deepseek-medical",
                      message="%(prog)s %(version)s")
def medical() -> None:
    """Medical imaging: CT DICOM series to Hounsfield volumes, physical-space resampling and lung-nodule detection scored with the LUNA16 FROC/CPM protocol."""


@medical.command("info")
def info() -> None:
    """Show what this plugin registers."""
    from deepseek.plugins import plugin_infos

    for plugin in plugin_infos():
        if plugin.name == "medical":
            click.echo(f"deepseek-medical {__version__}")
            for kind, names in plugin.registered.items():
                click.echo(f"  {kind}s: {', '.join(names) or '(none yet)'}")
