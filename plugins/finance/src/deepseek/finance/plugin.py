"""Hook implementations of the finance plugin (found through the ``deepseek`` entry point)."""

from __future__ import annotations

from typing import Any

from deepseek import hookimpl


@hookimpl
def register_commands(cli: Any) -> None:
    from deepseek.finance.cli import finance

    cli.add_command(finance)
