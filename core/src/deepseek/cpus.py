"""How many CPUs this process may use: its affinity mask, lowered to its cgroup's CPU quota.

A pod limited to 2 CPUs on a 64-core node gets 2, not 64. The model server sizes its thread
pools by it (:mod:`deepseek.serving.threads`) and ``deepseek batch`` its local workers.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def _cgroup_paths(proc_cgroup: Path) -> dict[str, str]:
    """Controller (``""`` for cgroup v2) -> the process's cgroup path."""
    out: dict[str, str] = {}
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(","):
                out[controller] = parts[2]
    return out


def _ancestors(base: Path, path: str) -> list[Path]:
    """``base/path`` and each of its parents up to ``base``."""
    out = [base]
    for part in [p for p in path.split("/") if p]:
        out.append(out[-1] / part)
    return out


def _quota_v2(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _quota_v1(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def cgroup_cpu_limit(root: str | Path = "/sys/fs/cgroup",
                     proc_cgroup: str | Path = "/proc/self/cgroup") -> float | None:
    """The CPU quota of this process's cgroup in CPUs (``2.5``), the tightest along its
    path, or None when there is none. Reads cgroup v2 (``cpu.max``) and v1
    (``cpu.cfs_quota_us``); in a container the cgroup path is often ``/`` (its own root)."""
    root = Path(root)
    paths = _cgroup_paths(Path(proc_cgroup))
    quotas: list[float] = []
    if "" in paths:  # v2: one unified hierarchy
        quotas += [q for f in _ancestors(root, paths[""]) if (q := _quota_v2(f)) is not None]
    for controller in ("cpu", "cpuacct"):
        if controller not in paths:
            continue
        for mount in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):
            base = root / mount
            if base.is_dir():
                quotas += [q for f in _ancestors(base, paths[controller])
                           if (q := _quota_v1(f)) is not None]
                break
        break
    return min(quotas) if quotas else None


def affinity_cpus() -> int:
    """CPUs this process may run on (its affinity mask)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)


def cpu_budget(root: str | Path = "/sys/fs/cgroup",
               proc_cgroup: str | Path = "/proc/self/cgroup") -> int:
    """CPUs this process may use: the affinity mask's count, lowered to the cgroup quota
    (rounded down, at least 1)."""
    cpus = affinity_cpus()
    quota = cgroup_cpu_limit(root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def worker_share(workers: int = 1) -> int:
    """One worker process's share of the CPU budget (at least 1)."""
    return max(1, cpu_budget() // max(1, workers))
