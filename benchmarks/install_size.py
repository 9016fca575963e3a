"""Benchmark: disk size of installs, measured from the built wheels in fresh virtual
environments, with the largest packages of each.

    python benchmarks/install_size.py [--quick | --edge-only] [--check] [--keep DIR]
                                      [--image NAME:TAG]

Builds the four wheels (``python -m build --wheel --no-isolation``), then for each install
creates an empty virtual environment and runs ``pip install`` of the requirement from those
wheels (third-party packages from the package index pip is configured with, versions held by
``constraints.txt``), and measures the environment on disk (every file under it, ``du``-style
apparent sizes) and its ten largest distributions (by the files their ``RECORD`` lists).

Installs:

* ``deepseek-core[edge]``: serving and ONNX inference without PyTorch;
* ``deepseek-medical[edge]``, ``deepseek-manufacturing[edge]``, ``deepseek-finance[edge]``:
  each vertical's inference form without PyTorch (packaged ONNX exports on onnxruntime; the
  finance fast path on numba);
* ``deepseek-core[edge-all]``: the core's edge form with the three verticals' edge forms;
* ``deepseek-core[all]``: everything with PyTorch (training), for comparison.

Goals: each edge environment <= 300 MB, core with all three verticals' edge forms <= 500 MB,
and, with ``--image``, that image (``make image EDGE=edge-all``, measured by ``podman image
inspect``) <= 600 MB. ``--quick`` measures ``deepseek-core[edge]`` only; ``--edge-only`` every
edge form but not ``[all]``; ``--check`` exits 1 when a goal is missed (``.ci/run`` runs
``--edge-only --check``, so a dependency that breaks the budget fails the build).
``tests/packaging/test_install_budget.py`` checks the same budgets in the test suite from the
installed distributions' own file lists.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, goal  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DISTS = [ROOT / "core", *(ROOT / "plugins" / p for p in ("medical", "manufacturing",
                                                           "finance"))]
MB = 1e6


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if res.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def largest(site: Path, n: int = 10) -> list[dict]:
    """The ``n`` largest distributions of a site-packages folder, by their RECORD files."""
    out = []
    for info in site.glob("*.dist-info"):
        if info.name.startswith(("pip-", "setuptools-")):  # the venv's own tooling
            continue
        record = info / "RECORD"
        if not record.is_file():
            continue
        size = 0
        with open(record, newline="") as f:
            for row in csv.reader(f):
                if row and (site / row[0]).is_file():
                    size += (site / row[0]).stat().st_size
        out.append({"distribution": info.name.rsplit("-", 1)[0], "mb": round(size / MB, 1)})
    return sorted(out, key=lambda d: -d["mb"])[:n]


def measure(work: Path, dist: Path, name: str, requirement: str) -> dict:
    venv = work / name
    run([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    t0 = time.perf_counter()
    run([str(py), "-m", "pip", "install", "--quiet", "--find-links", str(dist), "-c",
         str(ROOT / "constraints.txt"), requirement])
    seconds = time.perf_counter() - t0
    # pip itself (and setuptools, when the venv seeds it) are not part of the install
    site = Path(run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
                    ).stdout.strip())
    tooling = sum(tree_bytes(p) for p in site.glob("pip*")) + \
        sum(tree_bytes(p) for p in site.glob("setuptools*"))
    total = tree_bytes(venv) - tooling
    has_torch = run([str(py), "-c", "import importlib.util as u; "
                                    "print(u.find_spec('torch') is not None)"]).stdout.strip()
    return {"requirement": requirement, "mb": round(total / MB, 1),
            "install_seconds": round(seconds, 1), "torch": has_torch == "True",
            "largest": largest(site)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="deepseek-core[edge] only")
    ap.add_argument("--edge-only", action="store_true",
                    help="every edge form, not deepseek-core[all] (the slow PyTorch install)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    ap.add_argument("--image", default=None, metavar="NAME:TAG",
                    help="also measure this image (make image EDGE=edge-all) with podman")
    ap.add_argument("--keep", type=Path, default=None,
                    help="build the environments here and keep them (default: a temporary "
                         "folder, removed)")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="install-size-"))
    work.mkdir(parents=True, exist_ok=True)
    dist = work / "dist"
    for src in DISTS:
        run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist),
             str(src)])
    installs = {"core-edge": "deepseek-core[edge]"}
    if not args.quick:
        installs.update({v: f"deepseek-{v}[edge]" for v in ("medical", "manufacturing",
                                                             "finance")})
        installs["core-edge-all"] = "deepseek-core[edge-all]"
        if not args.edge_only:
            installs["core-all"] = "deepseek-core[all]"
    rows = {name: measure(work, dist, name, req) for name, req in installs.items()}
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    goals = [goal("deepseek-core[edge] environment (serve ONNX without PyTorch)",
                  rows["core-edge"]["mb"], "<= 300", "MB", rows["core-edge"]["mb"] <= 300)]
    for v in ("medical", "manufacturing", "finance"):
        if v in rows:
            goals.append(goal(f"deepseek-{v}[edge] environment (inference without PyTorch)",
                              rows[v]["mb"], "<= 300", "MB", rows[v]["mb"] <= 300))
    if "core-edge-all" in rows:
        mb = rows["core-edge-all"]["mb"]
        goals.append(goal("deepseek-core[edge-all] environment (core + the three verticals' "
                          "edge forms)", mb, "<= 500", "MB", mb <= 500))
    image = None
    if args.image:
        size = run(["podman", "image", "inspect", "--format", "{{.Size}}", args.image])
        image = {"image": args.image, "mb": round(int(size.stdout.strip()) / MB, 1)}
        goals.append(goal(f"{args.image} image (podman's size: every layer, uncompressed)",
                          image["mb"], "<= 600", "MB", image["mb"] <= 600))
    if any(r["torch"] for k, r in rows.items() if k != "core-all"):
        sys.exit("an edge install pulled PyTorch: " + ", ".join(
            k for k, r in rows.items() if r["torch"] and k != "core-all"))
    emit("install_size", {"installs": rows, "image": image, "quick": args.quick,
                          "measured": "every file of the virtual environment except pip and "
                                      "setuptools, apparent sizes"}, goals)
    if args.check and not all(g["met"] for g in goals):
        sys.exit("missed: " + "; ".join(f"{g['name']}: {g['value']} {g['unit']}"
                                        for g in goals if not g["met"]))


if __name__ == "__main__":
    main()
