from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deepseek.cli import build_cli
from deepseek.errors import ModelLoadError
from deepseek.finance.errors import FinanceError
from deepseek.finance.features import batch_features
from deepseek.finance.metrics import classification as evaluate
from deepseek.finance.synthetic import synthetic_ticks
from deepseek.finance.training import labels, train
from deepseek.loader import ModelLoader


def test_labels():
    t = synthetic_ticks(200, seed=1)
    y = labels(t, horizon=5)
    mid = (t["bid"] + t["ask"]) / 2
    assert len(y) == 195
    assert ((y == 2) == (mid[5:] > mid[:-5])).all() and ((y == 0) == (mid[5:] < mid[:-5])).all()
    with pytest.raises(FinanceError, match="horizon"):
        labels(t, horizon=0)


def test_mlp_learns_signal_on_held_out_ticks():
    res = train(synthetic_ticks(30_000, seed=21), "tick-mlp", epochs=3, progress=False)
    m = res.metrics
    assert m["accuracy"] > m["majority_baseline"] + 0.05, m
    assert m["macro_f1"] > m["majority_baseline_macro_f1"] + 0.2, m
    assert len(res.history) == 3


def test_gru_trains_through_the_trainer():
    res = train(synthetic_ticks(20_000, seed=22), "tick-gru", epochs=1, progress=False,
                hidden=16)
    assert res.config["hidden"] == 16
    assert res.metrics["accuracy"] > res.metrics["majority_baseline"], res.metrics


def test_packaged_weights_beat_the_baseline_on_unseen_ticks():
    ticks = synthetic_ticks(20_000, seed=4242)  # the weights were trained on seed 0
    feats = torch.from_numpy(batch_features(ticks))
    y = labels(ticks, 10)
    for name in ("tick-mlp", "tick-gru"):
        m = ModelLoader.load(name, device="cpu").module
        with torch.no_grad():
            out = m(feats if name == "tick-mlp" else feats[None]).numpy().reshape(-1, 3)
        q = evaluate(out[: len(y)], y)
        assert q["accuracy"] > q["majority_baseline"] + 0.05, (name, q)


def test_too_little_data():
    with pytest.raises(FinanceError, match="too few"):
        train(synthetic_ticks(300, seed=1), "tick-mlp")
    with pytest.raises(ModelLoadError, match="unknown model 'tick-lstm'.*models for tick "
                       "classification .*: tick-gru, tick-mlp"):
        train(synthetic_ticks(3000, seed=1), "tick-lstm")
    with pytest.raises(ModelLoadError, match="'lung-nodule-attention' does not fit tick "
                       "classification"):
        train(synthetic_ticks(3000, seed=1), "lung-nodule-attention")


def test_cli_synth_train_and_load(tmp_path):
    runner = CliRunner()
    cli = build_cli()
    res = runner.invoke(cli, ["finance", "generate", str(tmp_path / "t.csv"), "--ticks", "8000"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["finance", "train", str(tmp_path / "t.csv"), "--out",
                              str(tmp_path / "m"), "--epochs", "1", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert set(out["held_out"]) >= {"accuracy", "macro_f1", "majority_baseline"}
    loaded = ModelLoader.load(tmp_path / "m" / "model.safetensors")
    assert loaded.architecture == "tick-mlp"
    assert (tmp_path / "m" / "checkpoints" / "best" / "model.safetensors").is_file()
    x = np.zeros((2, 16), np.float32)
    assert loaded(x).shape == (2, 3)
    res = runner.invoke(cli, ["finance", "train", str(tmp_path / "missing.csv"), "--out",
                              str(tmp_path / "x")])
    assert res.exit_code == 2 and "no such file" in res.output


def test_pipeline_runs(tmp_path):
    from deepseek.plugins import pipelines

    res = pipelines().get("finance.tick-latency")(input=None, out_dir=tmp_path, quiet=True,
                                                  n_ticks=4000)
    assert res.metrics["fastpath_max_abs_logit_diff"] < 1e-5
    assert res.metrics["held_out_accuracy"] > res.metrics["majority_baseline_accuracy"]
