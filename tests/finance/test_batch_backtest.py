"""deepseek batch finance backtest: per data file, exactly what the command prints."""

from __future__ import annotations

import json

from click.testing import CliRunner

from deepseek.batch import item_key, run_batch
from deepseek.cli import build_cli
from tests.finance.test_backtest import sine_bars


def test_batch_backtests_equal_the_command_file_by_file(tmp_path):
    bars = sine_bars(tmp_path / "bars.csv")
    listing = tmp_path / "inputs.txt"
    sources = ["synthetic:?kind=market&n=2000&seed=2", str(bars)]
    listing.write_text("\n".join(sources) + "\n")
    out = tmp_path / "out"
    rep = run_batch("finance backtest", [f"@{listing}"], out, workers=2, progress=False,
                    options={"latency_us": 800, "fee_bps": 0.5, "rule": "sma:3,8"})
    assert (rep.ok, rep.failed) == (2, 0), rep.failures
    runner, cli = CliRunner(), build_cli()
    for src in sources:
        res = runner.invoke(cli, ["finance", "backtest", src, "--latency-us", "800",
                                  "--fee-bps", "0.5", "--rule", "sma:3,8", "--json"])
        assert res.exit_code == 0, res.output
        got = json.loads((out / "items" / f"{item_key(src)}.json").read_text())
        assert got == json.loads(res.stdout)
    rows = (out / "summary.csv").read_text().splitlines()
    assert "tick-mlp @ 800 µs pnl" in rows[0] and len(rows) == 3


def test_backtest_step_refuses_options_the_command_lacks(tmp_path):
    import pytest

    from deepseek.batch import BatchError

    with pytest.raises(BatchError, match="out"):
        run_batch("finance.backtest", ["synthetic:?kind=market&n=100"], tmp_path / "o",
                  options={"out": "x"}, workers=1, progress=False)
