from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepseek.errors import ModelLoadError
from deepseek.finance.errors import FastPathError, FinanceError
from deepseek.finance.fastpath import FastPath
from deepseek.finance.features import (
    BUCKET_NS,
    FEATURE_NAMES,
    RING,
    TIME_HORIZONS_NS,
    StreamingFeatures,
    batch_features,
)
from deepseek.finance.models import TickGRU, TickMLP
from deepseek.finance.synthetic import synthetic_ticks
from deepseek.finance.ticks import TICK_DTYPE
from deepseek.loader import ModelLoader


@pytest.fixture(scope="module")
def ticks():
    return synthetic_ticks(4000, seed=3)


def bursty_ticks() -> np.ndarray:
    """Long silences and a burst of more ticks than the ring holds within 100 ms."""
    rng = np.random.default_rng(1)
    n = 1500
    t = np.cumsum(np.where(rng.random(n) < 0.05, 3_000_000_000, 50_000)).astype(np.int64)
    t[600:600 + 2 * RING] = t[600] + np.arange(2 * RING) * 1000  # a 0.25 ms burst
    t = np.maximum.accumulate(t)
    out = np.zeros(n, TICK_DTYPE)
    out["time_ns"] = out["exch_ns"] = t
    out["recv_ns"] = t + 10
    mid = 50.0 + np.cumsum(rng.integers(-1, 2, n)) * 0.5
    out["bid"] = mid - 0.25
    out["ask"] = mid + 0.25
    out["bid_size"] = rng.integers(0, 20, n)  # zero sizes happen
    out["ask_size"] = rng.integers(0, 20, n)
    out["bid_depth"] = out["bid_size"] + rng.integers(0, 50, n)
    out["ask_depth"] = out["ask_size"] + rng.integers(0, 50, n)
    side = rng.choice([-1, 0, 0, 1], n)
    out["side"] = side
    out["last_size"] = np.where(side != 0, rng.integers(1, 5, n), 0)
    out["last_px"] = np.where(side != 0, mid + side * 0.25, np.nan)
    out["last_px"] = np.where(np.arange(n) < 10, np.nan, out["last_px"])
    return out


@pytest.mark.parametrize("source", ["synthetic", "bursty"])
def test_streaming_equals_batch_exactly(ticks, source):
    data = ticks if source == "synthetic" else bursty_ticks()
    batch = batch_features(data)
    assert batch.shape == (len(data), len(FEATURE_NAMES)) == (len(data), 17)
    sf = StreamingFeatures()
    one_by_one = np.stack([sf.update_tick(t).copy() for t in data])
    np.testing.assert_array_equal(one_by_one, batch)
    np.testing.assert_array_equal(StreamingFeatures().run(data), batch)
    assert np.isfinite(batch).all()


def test_streaming_state_is_fixed_size(ticks):
    sf = StreamingFeatures()
    sizes = (sf.fs.nbytes, sf.istate.nbytes)
    sf.run(ticks)
    assert (sf.fs.nbytes, sf.istate.nbytes) == sizes


def test_feature_values_are_what_they_say():
    t = np.zeros(3, TICK_DTYPE)
    t["time_ns"] = [0, 1_000_000, 2_000_000]
    t["bid"], t["ask"] = [99.0, 99.0, 100.0], [101.0, 101.0, 102.0]
    t["bid_size"], t["ask_size"] = [3, 3, 1], [1, 1, 1]
    t["bid_depth"], t["ask_depth"] = [3, 10, 1], [1, 30, 1]
    t["last_px"] = [np.nan, 101.0, 101.0]
    t["last_size"] = [0, 2, 2]
    t["side"] = [0, 1, 0]
    f = batch_features(t)
    names = {n: i for i, n in enumerate(FEATURE_NAMES)}
    assert f[0, names["spread_bps"]] == pytest.approx(200.0)
    assert f[0, names["imbalance"]] == pytest.approx(0.5)
    assert f[1, names["book_imbalance"]] == pytest.approx(-0.5)
    assert f[0, names["microprice_bps"]] == pytest.approx((100.5 - 100) / 100 * 1e4)
    assert f[2, names["ret_1t"]] == pytest.approx(100.0, rel=1e-6)
    assert f[0, names["since_trade_s"]] == 60.0
    assert f[2, names["since_trade_s"]] == pytest.approx(0.001)
    assert f[1, names["flow_imbalance"]] == 1.0
    assert f[2, names["last_trade_bps"]] == pytest.approx((101 - 101) / 101 * 1e4)


def _mid_as_of(t: np.ndarray, mid: np.ndarray, instant: int) -> float:
    """The last mid strictly before ``instant`` (the first mid when there is none)."""
    j = int(np.searchsorted(t, instant, side="left")) - 1
    return float(mid[max(j, 0)])


@pytest.mark.parametrize("per_window", [50, 3000])
def test_time_returns_are_over_time_however_many_ticks(per_window):
    """ret_10s must be a 10 s return whether 50 or 3000 ticks fall in the window (the old
    ring of 255 ticks cut it short): the reference is the mid as of the end of the bucket
    holding t - 10 s, an instant within [t - H, t - H + H/100)."""
    rng = np.random.default_rng(7)
    n = 4 * per_window
    step = 10_000_000_000 // per_window
    t = 1_700_000_000_000_000_000 + np.cumsum(rng.integers(step // 2, 3 * step // 2, n))
    ticks = np.zeros(n, TICK_DTYPE)
    ticks["time_ns"] = t
    mid = 100.0 + np.cumsum(rng.normal(0, 0.01, n))
    ticks["bid"], ticks["ask"] = mid - 0.005, mid + 0.005
    ticks["bid_size"] = ticks["ask_size"] = ticks["bid_depth"] = ticks["ask_depth"] = 1.0
    feats = batch_features(ticks)
    np.testing.assert_array_equal(StreamingFeatures().run(ticks), feats)
    m = (ticks["bid"] + ticks["ask"]) * 0.5
    for k, name in enumerate(("ret_100ms", "ret_1s", "ret_10s")):
        h, w = TIME_HORIZONS_NS[k], BUCKET_NS[k]
        col = FEATURE_NAMES.index(name)
        for i in range(n // 2, n, max(1, n // 40)):
            end = (int(t[i]) // w - h // w + 1) * w
            assert int(t[i]) - h < end <= int(t[i]) - h + w  # the documented tolerance
            ref = _mid_as_of(t, m, end)
            assert feats[i, col] == np.float32((m[i] - ref) / ref * 1e4)
            if name == "ret_10s":  # the window really holds about per_window ticks
                inside = int(np.searchsorted(t, t[i], "right") - np.searchsorted(t, end))
                assert inside > 0.5 * per_window


def test_features_refuse_times_going_backwards():
    t = synthetic_ticks(50, seed=2)
    t["time_ns"][10] = t["time_ns"][9] - 1
    with pytest.raises(FinanceError, match="tick 10: time_ns goes backwards"):
        batch_features(t)


def standardised(model, feats):
    with torch.no_grad():
        model.mean.copy_(torch.from_numpy(feats.mean(0)))
        model.std.copy_(torch.from_numpy(feats.std(0) + 1e-3))
    return model.eval()


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_mlp_fast_path_matches_pytorch(ticks, activation):
    feats = batch_features(ticks)
    torch.manual_seed(0)
    model = standardised(TickMLP(activation=activation), feats)
    fp = FastPath.from_model(model)
    cls_, logits = fp.run(ticks)
    with torch.no_grad():
        ref = model(torch.from_numpy(feats)).numpy()
    np.testing.assert_allclose(logits, ref, atol=1e-5, rtol=0)
    assert (cls_ == ref.argmax(1)).mean() > 0.999
    np.testing.assert_array_equal(fp.features, feats[-1])


def test_gru_fast_path_carries_hidden_state(ticks):
    feats = batch_features(ticks)
    torch.manual_seed(1)
    model = standardised(TickGRU(hidden=32), feats)
    fp = FastPath.from_model(model)
    _, logits = fp.run(ticks)
    with torch.no_grad():
        ref = model(torch.from_numpy(feats)[None]).numpy()[0]
    np.testing.assert_allclose(logits, ref, atol=1e-5, rtol=0)
    assert np.abs(fp.hidden).sum() > 0
    fp.reset()
    assert np.abs(fp.hidden).sum() == 0
    _, again = fp.run(ticks[:100])
    np.testing.assert_allclose(again, ref[:100], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["tick-mlp", "tick-gru"])
def test_packaged_models_compile_and_match(ticks, name):
    loaded = ModelLoader.load(name, device="cpu")
    fp = FastPath.from_model(loaded)
    decision, scores = fp.on_tick(1, 100.0, 100.01, 5.0, 3.0)
    assert decision in (-1, 0, 1) and scores.shape == (3,)
    decision, scores = fp.on_tick(2, 100.0, 100.01, 5.0, 3.0, 20.0, 25.0, math.nan, 0.0, 0)
    assert decision in (-1, 0, 1) and scores.shape == (3,)
    fp.reset()
    _, logits = fp.run(ticks[:1000])
    feats = torch.from_numpy(batch_features(ticks[:1000]))
    with torch.no_grad():
        ref = loaded.module(feats if name == "tick-mlp" else feats[None])
    np.testing.assert_allclose(logits, ref.numpy().reshape(-1, 3), atol=1e-5, rtol=0)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_batched_decide_equals_the_per_tick_kernel(ticks, activation, monkeypatch):
    import deepseek.finance.fastpath as fastpath

    monkeypatch.setattr(fastpath, "_BLOCK", 512)  # several blocks, a short last one
    feats = batch_features(ticks)
    torch.manual_seed(2)
    model = standardised(TickMLP(activation=activation), feats)
    with torch.no_grad():  # classes 0 and 2 tie exactly on every tick: the first one wins
        model.net[-1].weight[2] = model.net[-1].weight[0]
        model.net[-1].bias[2] = model.net[-1].bias[0]
    bad = ticks.copy()
    bad["bid_size"][1000] = bad["bid_depth"][1000] = 1e308  # features overflow here
    for data in (ticks, bad):
        fp = FastPath.from_model(model)
        per_tick, logits = fp.run(data)
        fp.reset()
        batched = fp.decide(data)
        np.testing.assert_array_equal(batched, per_tick - 1)
        assert fp.redone >= 1  # the exact ties were recomputed per tick
        np.testing.assert_allclose(fp.scores, logits[-1], rtol=0, atol=1e-12)  # as step()
        with np.errstate(over="ignore", invalid="ignore"):  # the absurd tick's overflow
            last = batch_features(data)[-1]
        np.testing.assert_array_equal(fp.features, last)
        fp.reset()
        split = np.concatenate([fp.decide(data[:1234]), fp.decide(data[1234:])])
        np.testing.assert_array_equal(split, per_tick - 1)  # the state carries over
    assert (batched == -2).sum() >= 1 and 2 not in batched  # class 2 never beats class 0
    monkeypatch.setattr(fastpath, "_TIE_MARGIN", np.inf)  # every row redone: same answer
    fp = FastPath.from_model(model)
    np.testing.assert_array_equal(fp.decide(bad), per_tick - 1)
    assert fp.redone == len(bad)


def test_non_finite_values_are_never_a_decision(ticks):
    feats = batch_features(ticks)
    torch.manual_seed(0)
    fp = FastPath.from_model(standardised(TickMLP(), feats))
    fp.run(ticks[:50])
    # a finite but absurd size overflows the features to infinity
    assert fp.step(int(ticks["time_ns"][50]), 100.0, 100.01, 1e308, 1e308, 1e308, 1e308,
                   math.nan, 0.0, 0) == -1
    with pytest.raises(FastPathError, match="not finite"):
        fp.on_tick(int(ticks["time_ns"][51]), 100.0, 100.01, 1e308, 1e308, 1e308, 1e308)
    fp.reset()
    assert fp.step(1, 100.0, 100.01, 1.0, 1.0, 1.0, 1.0, math.nan, 0.0, 0) in (0, 1, 2)


def test_unsupported_models_are_refused():
    with pytest.raises(FastPathError, match="supports TickMLP and TickGRU"):
        FastPath.from_model(torch.nn.Linear(17, 3))
    with pytest.raises(FastPathError, match="takes 8 features"):
        FastPath.from_model(TickMLP(n_features=8))


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_fast_path_from_a_saved_file_needs_no_torch_and_matches(ticks, tmp_path, activation):
    """A trained model saved as safetensors compiles from its file with numpy alone (the
    edge install) to exactly the fast path of the module."""
    from deepseek.finance.strategy import fast_path
    from deepseek.loader import save_model

    feats = batch_features(ticks)
    torch.manual_seed(2)
    model = standardised(TickMLP(hidden=(16, 8), activation=activation), feats)
    path = save_model(model, tmp_path / "m", architecture="tick-mlp",
                      config={"hidden": [16, 8], "activation": activation})
    _, want = FastPath.from_model(model).run(ticks[:500])
    for fp in (FastPath.from_file(path), fast_path(str(path))):
        _, got = fp.run(ticks[:500])
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["tick-mlp", "tick-gru"])
def test_registered_names_compile_from_the_packaged_file(ticks, name):
    from deepseek.finance.strategy import fast_path

    _, want = FastPath.from_model(ModelLoader.load(name, device="cpu")).run(ticks[:500])
    _, got = fast_path(name).run(ticks[:500])
    np.testing.assert_array_equal(got, want)


def test_bad_weight_files_are_refused(tmp_path):
    from safetensors.numpy import save_file

    from deepseek.loader import save_model

    good = {k: v.numpy() for k, v in TickMLP().state_dict().items()}
    with pytest.raises(FastPathError, match="'net.2.bias' is missing"):
        FastPath.from_weights("tick-mlp", {k: v for k, v in good.items() if k != "net.2.bias"})
    with pytest.raises(FastPathError, match="NaN or infinite"):
        FastPath.from_weights("tick-mlp", {**good, "std": np.full(17, np.nan, np.float32)})
    with pytest.raises(FastPathError, match="supports tick-mlp and tick-gru"):
        FastPath.from_weights("resnet50", good)
    gru = {k: v.numpy() for k, v in TickGRU(hidden=8).state_dict().items()}
    with pytest.raises(FastPathError, match="do not fit together"):
        FastPath.from_weights("tick-gru", {**gru, "head.weight": np.zeros((3, 5), np.float32)})
    other = save_model(torch.nn.Linear(17, 3), tmp_path / "lin", architecture="tick-lin")
    with pytest.raises(FastPathError, match="architecture 'tick-lin'"):
        FastPath.from_file(other)
    junk = tmp_path / "junk.safetensors"
    save_file({"x": np.zeros(3, np.float32)}, str(junk))
    junk.write_bytes(junk.read_bytes()[:-4])
    with pytest.raises((FastPathError, ModelLoadError), match="junk.safetensors"):
        FastPath.from_file(junk)
