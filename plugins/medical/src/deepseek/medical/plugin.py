"""Hook implementations of the medical plugin (found through the ``deepseek`` entry point)."""

from __future__ import annotations

from typing import Any

from deepseek import hookimpl


@hookimpl
def register_commands(cli: Any) -> None:
    from deepseek.medical.cli import medical

    cli.add_command(medical)
