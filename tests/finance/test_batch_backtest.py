"""deepseek batch finance backtest: per data file, exactly what the command prints."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deepseek.batch import item_key, run_batch
from deepseek.cli import build_cli
from tests.finance.test_backtest import sine_bars


@pytest.mark.slow
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


def test_batch_globs_leave_out_documents_and_the_backtests_own_outputs(tmp_path):
    import gzip

    from deepseek.finance.backtest_run import run_backtest

    root = tmp_path / "data"
    root.mkdir()
    bars = sine_bars(root / "bars.csv")
    run_backtest(str(bars), rule="sma:3,8", out=root / "runs" / "first")
    (root / "README.md").write_text("# bars of one day\n")
    written = sorted(p for p in (root / "runs" / "first").iterdir())
    names = {p.name for p in written}
    assert {"summary.json", "equity.png"} <= names and len(names) == 6  # 2 runs x 2 CSVs
    # an equity curve compressed by the user is still recognised by its header
    eq = next(p for p in written if p.name.endswith("-equity.csv"))
    (root / "old-equity.csv.gz").write_bytes(gzip.compress(eq.read_bytes()))
    rep = run_batch("finance backtest", [str(root / "**" / "*")], tmp_path / "out",
                    workers=1, progress=False, options={"rule": "sma:3,8"})
    assert (rep.ok, rep.failed, rep.items) == (1, 0, 1), rep.failures
    why = {e["source"]: e["why"] for e in rep.left_out}
    doc = "not market data (a document, result or picture)"
    assert why.pop(str(root / "README.md")) == doc
    for folder in (root / "runs", root / "runs" / "first"):
        assert why.pop(str(folder)) == "a folder (the backtest reads files)"
    for p in written:
        if p.suffix in (".json", ".png"):
            assert why.pop(str(p)) == doc
        else:
            kind = "an equity curve" if p.name.endswith("-equity.csv") else "a fills table"
            assert why.pop(str(p)) == f"{kind} written by `finance backtest --out`, not market data"
    assert why == {str(root / "old-equity.csv.gz"):
                   "an equity curve written by `finance backtest --out`, not market data"}


@pytest.mark.slow
def test_a_file_named_on_its_own_is_backtested_whatever_it_is(tmp_path):
    from deepseek.finance.backtest_run import leave_out

    bars = sine_bars(tmp_path / "bars.csv")
    assert leave_out(str(bars)) is None
    assert leave_out("synthetic:?kind=market&n=100") is None
    # a capture is a capture under any name, a log's or a JSON's included
    for name in ("feed.log", "ticks.json"):
        (tmp_path / name).write_text('1700000000123 {"e": "bookTicker", "s": "X"}\n')
        assert leave_out(str(tmp_path / name)) is None
    (tmp_path / "run.log").write_text("started\n")
    assert leave_out(str(tmp_path / "run.log")) == "not market data (a document, result or " \
        "picture)"
    notes = tmp_path / "notes.md"
    notes.write_text("x\n")
    rep = run_batch("finance backtest", [str(notes)], tmp_path / "out", workers=1,
                    progress=False, options={"rule": "sma:3,8"})
    assert (rep.ok, rep.failed, rep.left_out) == (0, 1, [])  # tried, and its error kept
    assert "notes.md" in rep.failures[0]["source"]
