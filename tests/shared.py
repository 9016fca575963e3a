"""Where the development data of ``../shared/data`` are, when this checkout has them.

Tests on real data skip with a reason when the folder is absent (a fresh clone in CI); the
data are never copied into the repository. ``DEEPSEEK_SHARED_DATA`` points elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shared_data(name: str) -> Path | None:
    base = Path(os.environ.get("DEEPSEEK_SHARED_DATA", ROOT.parent / "shared" / "data"))
    path = base / name
    return path if path.is_dir() else None
