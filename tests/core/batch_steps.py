"""A light batch step for the batch tests (imported by worker processes and Ray actors: it
must stay importable as ``tests.core.batch_steps`` from the repository root)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from deepseek import hookimpl


def number_step(*, scale: float = 1.0, die_marks: str | None = None,  # type: ignore[no-untyped-def]
                hang_marks: str | None = None):
    """step(path): the number in the file times ``scale`` (a file of text raises); with
    ``die_marks`` a file named die-* kills its worker process the first time it is run
    (the mark in that folder says it happened), then succeeds; always-dies-* every time.
    With ``hang_marks`` a file named hang-* writes its worker's pid there (NAME.pid) and
    never returns (a step stuck in a long item)."""
    if not isinstance(scale, (int, float)):
        raise TypeError(f"scale={scale!r}: give a number")
    loaded = {"scale": scale}  # what a real step would load once (a model)

    def step(source: str) -> dict:
        path = Path(source)
        if path.name.startswith("hang") and hang_marks is not None:
            import threading

            mark = Path(hang_marks) / f"{path.name}.pid"
            mark.with_suffix(".tmp").write_text(str(os.getpid()))
            mark.with_suffix(".tmp").replace(mark)
            threading.Event().wait()  # forever
        if path.name.startswith("always-dies") and die_marks is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        if path.name.startswith("die") and die_marks is not None:
            mark = Path(die_marks) / path.name
            if not mark.exists():
                mark.write_text(json.dumps({"pid": os.getpid()}))
                os.kill(os.getpid(), signal.SIGKILL)
        try:
            value = float(path.read_text())
        except ValueError:
            raise ValueError(f"{source}: not a number file") from None
        return {"name": path.name, "value": value * loaded["scale"]}

    return step


def number_summary(result: dict) -> dict:
    return {"value": result["value"]}


def number_leave_out(source: str) -> str | None:
    return "a note, not a number" if source.endswith("_note.txt") else None


class NumberPlugin:
    @staticmethod
    @hookimpl
    def register_steps(register):  # type: ignore[no-untyped-def]
        register("test.number", number_step, command="test number", summary=number_summary,
                 leave_out=number_leave_out, description="a number file times a scale")
