"""Where the development data of ``../shared/data`` are, when this checkout has them.

Tests on real data skip with a reason when the folder is absent (a fresh clone in CI); the
data are never copied into the repository. ``DEEPSEEK_SHARED_DATA`` points elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def assert_labelled(result) -> None:
    """Every metric and timing of a pipeline result carries its label and unit (a Measure),
    so the report never shows a raw key."""
    from deepseek.report import Measure

    raw = [k for k, v in {**result.metrics, **result.timings}.items()
           if not isinstance(v, Measure)]
    assert not raw, f"{result.pipeline}: figures without label and unit: {raw}"


def shared_data(name: str) -> Path | None:
    base = Path(os.environ.get("DEEPSEEK_SHARED_DATA", ROOT.parent / "shared" / "data"))
    path = base / name
    return path if path.is_dir() else None
