"""Helpers shared by the benchmarks: machine description and the JSON result shape."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from typing import Any


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        pass
    return info


class CpuHog:
    """A process spinning on one core while it is open (the busy host)."""

    def __enter__(self) -> CpuHog:
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


def goal(name: str, value: float, target: str, unit: str, met: bool) -> dict[str, Any]:
    return {"name": name, "value": value, "target": target, "unit": unit, "met": bool(met)}


def emit(benchmark: str, results: dict[str, Any], goals: list[dict[str, Any]],
         **extra: Any) -> None:
    out = {"benchmark": benchmark, "machine": {**machine(), **extra.pop("machine", {})},
           "results": results, "goals": goals, **extra}
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")


def market_captures(given: list | None) -> list:
    """The captures a finance benchmark reads: those given, else ../shared/data/market/*.gz;
    exits with the fix when there are none."""
    from pathlib import Path

    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "market"
    captures = given or sorted(shared.glob("*.gz"))
    if not captures:
        sys.exit(f"no captures: pass --capture PATH (looked in {shared})")
    return captures
