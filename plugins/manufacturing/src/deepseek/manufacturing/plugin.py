"""Hook implementations of the manufacturing plugin (found through the ``deepseek`` entry point)."""

from __future__ import annotations

from typing import Any

from deepseek import hookimpl


@hookimpl
def register_commands(cli: Any) -> None:
    from deepseek.manufacturing.cli import manufacturing

    cli.add_command(manufacturing)
