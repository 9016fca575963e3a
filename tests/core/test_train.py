from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from deepseek import ModelLoader
from deepseek.errors import CheckpointError, DeepSeekError
from deepseek.train import Trainer

from ..conftest import TinyNet


def micro_batches(n: int, size: int = 4, seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 8, generator=g), torch.randint(0, 3, (size,), generator=g))
            for _ in range(n)]


def concat(batches):
    return (torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def fresh(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet()


def run(batches, accum: int, epochs: int = 1, **kw):
    net = fresh()
    t = Trainer(net, torch.optim.SGD(net.parameters(), lr=0.5),
                loss_fn=torch.nn.functional.cross_entropy, accum_steps=accum, progress=False,
                **kw)
    t.fit(batches, epochs=epochs)
    return t, net


def assert_params_close(a, b, atol=1e-6):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=atol, rtol=0)


@pytest.mark.parametrize("accum", [2, 4])
def test_accumulation_equals_one_step_on_concatenated_batch(accum):
    mb = micro_batches(accum * 3)
    _, acc_net = run(mb, accum)
    big = [concat(mb[i:i + accum]) for i in range(0, len(mb), accum)]
    t, ref_net = run(big, 1)
    assert t.global_step == 3
    assert_params_close(params(acc_net), params(ref_net))
    # and it really trained: not equal to the start
    assert not torch.allclose(params(acc_net)[0], params(fresh())[0])


def test_partial_last_group_is_scaled_correctly():
    mb = micro_batches(5)  # accum 2: groups of 2, 2, then a partial group of 1
    t, acc_net = run(mb, 2)
    assert t.global_step == 3
    ref = [concat(mb[0:2]), concat(mb[2:4]), mb[4]]
    _, ref_net = run(ref, 1)
    assert_params_close(params(acc_net), params(ref_net))
    # the naive loop (last micro-batch still divided by 2) gives something else
    naive = fresh()
    opt = torch.optim.SGD(naive.parameters(), lr=0.5)
    for i, (x, y) in enumerate(mb):
        (torch.nn.functional.cross_entropy(naive(x), y) / 2).backward()
        if i % 2 == 1 or i == 4:
            opt.step()
            opt.zero_grad()
    assert not torch.allclose(params(naive)[0], params(acc_net)[0], atol=1e-6)


def test_grad_clip_limits_the_update():
    mb = micro_batches(1)
    net = fresh()
    start = params(net)
    t = Trainer(net, torch.optim.SGD(net.parameters(), lr=1.0),
                loss_fn=lambda o, y: 1e4 * torch.nn.functional.cross_entropy(o, y),
                grad_clip=0.5, progress=False)
    t.fit(mb, epochs=1)
    delta = torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(params(net), start)))
    assert delta == pytest.approx(0.5, rel=1e-4)


def test_amp_training_on_cpu_reduces_loss():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    y = (x[:, 0] > 0).long()
    net = fresh()
    t = Trainer(net, torch.optim.Adam(net.parameters(), lr=1e-2),
                loss_fn=torch.nn.functional.cross_entropy, amp=True, progress=False)
    hist = t.fit(TensorDataset(x, y), epochs=5, batch_size=32)
    assert t.amp.enabled and t.amp.dtype == torch.bfloat16
    assert hist[-1]["train_loss"] < 0.5 * hist[0]["train_loss"]


def test_checkpoint_resume_matches_uninterrupted_run(tmp_path):
    g = torch.Generator().manual_seed(5)
    ds = TensorDataset(torch.randn(40, 8, generator=g), torch.randint(0, 3, (40,), generator=g))

    def trainer(ckpt):
        net = fresh()
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
        return Trainer(net, opt, loss_fn=torch.nn.functional.cross_entropy, accum_steps=2,
                       scheduler=sched, checkpoint_dir=ckpt, progress=False,
                       architecture="test-tiny", config={}), net

    torch.manual_seed(42)
    full, full_net = trainer(tmp_path / "a")
    full.fit(ds, epochs=4, batch_size=8, val_data=ds)

    torch.manual_seed(42)
    first, _ = trainer(tmp_path / "b")
    first.fit(ds, epochs=2, batch_size=8, val_data=ds)
    torch.manual_seed(999)  # the checkpoint restores the RNG, so this must not matter
    second, second_net = trainer(tmp_path / "b")
    hist = second.fit(ds, epochs=4, batch_size=8, val_data=ds, resume=True)
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    assert second.global_step == full.global_step
    assert_params_close(params(second_net), params(full_net), atol=1e-6)
    assert second.optimizer.param_groups[0]["lr"] == full.optimizer.param_groups[0]["lr"]

    ckpt = tmp_path / "b"
    assert (ckpt / "latest").read_text().strip() == "epoch-0004"
    assert sorted(p.name for p in ckpt.glob("epoch-*")) == ["epoch-0003", "epoch-0004"]
    state = json.loads((ckpt / "best" / "trainer.json").read_text())
    best_epoch = min(hist, key=lambda h: h["val_loss"])["epoch"]
    assert state["epoch"] == best_epoch
    assert not list(ckpt.rglob("*.pt")) and not list(ckpt.rglob("*.pkl"))


def test_checkpoint_loads_with_model_loader(tiny_plugin, tmp_path):
    t, net = run(micro_batches(2), 1, checkpoint_dir=tmp_path, architecture="test-tiny",
                 config={"n_in": 8, "hidden": 16, "n_out": 3})
    m = ModelLoader.load(tmp_path / "epoch-0001" / "model.safetensors")
    x = torch.randn(3, 8)
    torch.testing.assert_close(m(x), net(x))


def test_bad_checkpoints(tmp_path):
    t, _ = run(micro_batches(2), 1, checkpoint_dir=tmp_path / "ok")
    with pytest.raises(CheckpointError, match="optimizer.safetensors is missing"):
        (tmp_path / "ok" / "epoch-0001" / "optimizer.safetensors").unlink()
        t.load_checkpoint(tmp_path / "ok" / "epoch-0001")
    t2, _ = run(micro_batches(2), 1, checkpoint_dir=tmp_path / "ok2")
    other = torch.nn.Linear(3, 3)
    t3 = Trainer(other, torch.optim.SGD(other.parameters(), lr=0.1),
                 loss_fn=torch.nn.functional.mse_loss, progress=False)
    with pytest.raises(CheckpointError, match="does not match this model"):
        t3.load_checkpoint(tmp_path / "ok2" / "epoch-0001")


def test_bad_arguments_and_data():
    net = fresh()
    with pytest.raises(DeepSeekError, match="accum_steps must be >= 1"):
        Trainer(net, loss_fn=torch.nn.functional.mse_loss, accum_steps=0)
    with pytest.raises(DeepSeekError, match="needs loss_fn"):
        Trainer(net)
    t = Trainer(net, loss_fn=torch.nn.functional.cross_entropy, progress=False)
    with pytest.raises(DeepSeekError, match="produced no batches"):
        t.fit([], epochs=1)
    bad = [(torch.full((2, 8), float("nan")), torch.zeros(2, dtype=torch.long))]
    with pytest.raises(DeepSeekError, match="loss is nan"):
        t.fit(bad, epochs=1)


def test_callbacks_and_eval_fn():
    seen = []
    net = fresh()
    t = Trainer(net, loss_fn=torch.nn.functional.cross_entropy, progress=False,
                callbacks=[lambda tr, logs: seen.append(logs)])
    mb = micro_batches(3)
    t.fit(mb, epochs=2, val_data=mb, best_metric="acc", mode="max",
          eval_fn=lambda m, d: {"acc": float(sum((m(x).argmax(1) == y).float().mean()
                                                 for x, y in d) / len(d))})
    assert [s["epoch"] for s in seen] == [1, 2] and all("acc" in s for s in seen)


@pytest.mark.slow
def test_ddp_two_ranks_match_single_process(tmp_path):
    script = Path(__file__).with_name("ddp_train.py")
    # TMPDIR: torchrun leaves a folder of its own in the temporary folder after every run
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", str(script), str(tmp_path), "4", "2"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    from safetensors.torch import load_file

    r0 = load_file(str(tmp_path / "rank0.safetensors"))
    r1 = load_file(str(tmp_path / "rank1.safetensors"))
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"{k} differs between ranks"

    from . import ddp_train

    # one process, global batch 8 = 2 ranks x 4, same order as DistributedSampler(shuffle=False)
    trainer, single = ddp_train.train(batch_size=8, accum=2)
    assert not trainer.distributed
    start = ddp_train.model().state_dict()
    for k, v in single.state_dict().items():
        torch.testing.assert_close(r0[k], v, atol=1e-6, rtol=0)
        assert not torch.allclose(start[k], v)
