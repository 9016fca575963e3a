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
from deepseek.finance.metrics import skill
from deepseek.finance.synthetic import synthetic_ticks
from deepseek.finance.training import baselines, calibrate, labels, shift, time_split, train
from deepseek.loader import ModelLoader

from ..shared import assert_labelled


def test_labels():
    t = synthetic_ticks(200, seed=1)
    y = labels(t, horizon=5)
    mid = (t["bid"] + t["ask"]) / 2
    assert len(y) == 195
    assert ((y == 2) == (mid[5:] > mid[:-5])).all() and ((y == 0) == (mid[5:] < mid[:-5])).all()
    with pytest.raises(FinanceError, match="horizon"):
        labels(t, horizon=0)


def test_cost_aware_labels_need_the_move_to_pay_the_spread_and_fees():
    t = synthetic_ticks(2000, seed=1)
    mid = (t["bid"] + t["ask"]) / 2
    move = (mid[10:] - mid[:-10]) / mid[:-10]
    hurdle = (t["ask"] - t["bid"])[:-10] / mid[:-10] + 2 * 1.5e-4
    y = labels(t, 10, costs=True, fee_bps=1.5)
    assert ((y == 2) == (move > hurdle)).all() and ((y == 0) == (move < -hurdle)).all()
    assert (y == 1).mean() > (labels(t, 10) == 1).mean()


def test_time_split_leaves_a_horizon_between_parts():
    tr, va, te = time_split(10_000, 10)
    assert (tr.stop, va.start, va.stop, te.start, te.stop) == (6000, 6010, 8000, 8010, 10_000)
    with pytest.raises(FinanceError, match="too few"):
        time_split(300, 10)


def test_baselines_are_fitted_on_train_only():
    t = synthetic_ticks(6000, seed=3)
    y = labels(t, 10)
    feats = batch_features(t)[: len(y)]
    tr, _, te = time_split(len(y), 10)
    b = baselines(feats, y, 10, tr, te)
    assert set(b) == {"majority", "persistence", "queue_imbalance"}
    tr, va, te = time_split(len(y), 10)
    with_val = baselines(feats, y, 10, tr, te, va)
    assert set(with_val) == set(b) | {"logistic"}
    # the learned linear baseline reads the synthetic order flow: it beats the majority
    assert with_val["logistic"]["macro_f1"] > with_val["majority"]["macro_f1"]
    assert b["majority"]["calls"] == 0 or b["majority"]["calls"] == 1.0
    # a training part with one class (cost-aware labels on a quiet market): that class
    flat = np.ones_like(y)
    flat[te] = y[te]
    one = baselines(feats, flat, 10, tr, te, va)
    assert one["logistic"] == pytest.approx(
        skill(np.ones(te.stop - te.start, dtype=np.int64), y[te]), nan_ok=True)
    # persistence predicts the last completed move: y[i - h] at tick i
    pers = skill(y[np.arange(te.start, te.stop) - 10], y[te])
    assert b["persistence"] == pers
    assert 0 <= b["queue_imbalance"]["theta"] < 1


def test_calibration_picks_offsets_that_raise_macro_f1():
    rng = np.random.default_rng(0)
    y = rng.choice(3, 3000, p=[0.15, 0.7, 0.15])
    logits = np.zeros((3000, 3))
    logits[np.arange(3000), y] += rng.normal(0.8, 1.0, 3000)  # weakly informative
    logits[:, 1] += 1.5  # and biased to flat
    off = calibrate(logits, y)
    assert off[0] > 0 and off[1] > 0
    assert skill(shift(logits, off), y)["macro_f1"] > skill(logits, y)["macro_f1"] + 0.05


def test_mlp_learns_signal_on_the_test_span():
    res = train(synthetic_ticks(30_000, seed=21), "tick-mlp", epochs=3, progress=False)
    m = res.metrics
    rules = {k: v for k, v in res.baselines.items() if k != "logistic"}
    assert m["macro_f1"] > max(v["macro_f1"] for v in rules.values()) + 0.02, (m, rules)
    # the learned linear baseline on the same features; the verdict follows whoever wins
    lin = res.baselines["logistic"]["macro_f1"]
    assert lin > rules["majority"]["macro_f1"]
    if m["macro_f1"] > lin:
        assert res.beats_baselines and "beats every baseline" in res.verdict()
    else:
        assert not res.beats_baselines and "does NOT beat the logistic" in res.verdict()
    assert len(res.history) == 3 and res.validation["val_macro_f1"] > 0.3
    assert res.split["validation"][0] == res.split["train"][1] + 10


def test_gru_trains_through_the_trainer():
    res = train(synthetic_ticks(20_000, seed=22), "tick-gru", epochs=1, progress=False,
                hidden=16)
    assert res.config["hidden"] == 16
    assert res.metrics["macro_f1"] > res.baselines["majority"]["macro_f1"], res.metrics


def test_packaged_weights_beat_the_baselines_on_unseen_ticks():
    ticks = synthetic_ticks(20_000, seed=4242)  # the weights were trained on seed 0
    feats = torch.from_numpy(batch_features(ticks))
    y = labels(ticks, 10)
    tr, _, te = time_split(len(y), 10)
    best = max(m["macro_f1"] for m in baselines(feats.numpy()[: len(y)], y, 10, tr, te).values())
    for name in ("tick-mlp", "tick-gru"):
        m = ModelLoader.load(name, device="cpu").module
        with torch.no_grad():
            out = m(feats if name == "tick-mlp" else feats[None]).numpy().reshape(-1, 3)
        q = evaluate(out[te], y[te])
        assert q["macro_f1"] > best, (name, q, best)


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
    assert set(out["test"]) >= {"accuracy", "macro_f1", "hit_rate", "calls"}
    assert set(out["baselines"]) == {"majority", "persistence", "queue_imbalance",
                                     "logistic"}
    assert isinstance(out["beats_baselines"], bool) and out["verdict"]
    assert json.loads((tmp_path / "m" / "report.json").read_text())["split"]["gap"] == 10
    loaded = ModelLoader.load(tmp_path / "m" / "model.safetensors")
    assert loaded.architecture == "tick-mlp"
    assert (tmp_path / "m" / "checkpoints" / "best" / "model.safetensors").is_file()
    x = np.zeros((2, 17), np.float32)
    assert loaded(x).shape == (2, 3)
    res = runner.invoke(cli, ["finance", "train", str(tmp_path / "missing.csv"), "--out",
                              str(tmp_path / "x")])
    assert res.exit_code == 2 and "no such file" in res.output
    assert not (tmp_path / "x").exists()  # no output folder made for input that is not there
    # an --out under a file is refused before the training (whose first write is after
    # an epoch)
    import deepseek.finance.training as training

    def never(*args, **kwargs):
        raise AssertionError("trained before the output was checked")

    blocker = tmp_path / "runs"
    blocker.write_text("a file where the output folder would go")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "train", never)
        res = runner.invoke(cli, ["finance", "train", str(tmp_path / "t.csv"), "--out",
                                  str(blocker / "m")])
    assert res.exit_code == 2 and res.output.startswith(f"error: {blocker / 'm'}: Not a "
                                                        "directory")


def test_pipeline_runs(tmp_path):
    from deepseek.plugins import pipelines

    res = pipelines().get("finance.tick-latency")(input=None, out_dir=tmp_path, quiet=True,
                                                  n_ticks=4000)
    assert res.metrics["fastpath_max_abs_logit_diff"] < 1e-5
    assert res.metrics["held_out_macro_f1"] > res.metrics["majority_baseline_macro_f1"]
    assert_labelled(res)
