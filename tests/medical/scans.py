"""Small phantom CT series for the batch tests and benchmarks/batch.py: 96 x 96 x 32 at
1.5 x 1.5 x 2 mm with one nodule each, about a second of `medical detect` apiece with
:data:`DETECT_OPTIONS` (their lungs are too small for the lung-mask check, hence no mask)."""

from __future__ import annotations

from pathlib import Path

#: the detect options for these scans, as step options and as command-line flags
DETECT_OPTIONS = {"window": 64, "tta_top": 0, "sizes": 2, "lung_mask": False}
DETECT_FLAGS = ["--window", "64", "--tta-top", "0", "--sizes", "2", "--no-lung-mask"]


def small_scans(folder: Path, seeds: list[int]) -> list[Path]:
    """Write one series per seed to ``folder/scan<seed>``; returns the folders."""
    from deepseek.medical.synthetic import write_phantom

    out = []
    for seed in seeds:
        scan = Path(folder) / f"scan{seed:04d}"
        write_phantom(scan, seed=seed, size=96, slices=32, pixel_spacing=1.5, slice_step=2.0,
                      n_nodules=1)
        out.append(scan)
    return out


def assert_results_equal_the_command(out: Path, scans: list[Path]) -> None:
    """Each scan's ``out/items/KEY.json`` is what ``deepseek medical detect SCAN --json``
    prints with the same options, but for the timings."""
    import json

    from click.testing import CliRunner

    from deepseek.batch import item_key
    from deepseek.cli import build_cli

    runner, cli = CliRunner(), build_cli()
    for scan in scans:
        res = runner.invoke(cli, ["medical", "detect", str(scan), "--json", *DETECT_FLAGS])
        assert res.exit_code == 0, res.output
        want = json.loads(res.output)
        got = json.loads((Path(out) / "items" / f"{item_key(str(scan))}.json").read_text())
        assert got.pop("timings_s").keys() == want.pop("timings_s").keys()
        assert got == want and got["candidates"]
