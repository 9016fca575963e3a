"""Run by tests/core/test_train.py under `torchrun --nproc-per-node 2` (and alone).

Trains a tiny model on a fixed data set with the core Trainer and writes this rank's
parameters to OUT/rank{RANK}.safetensors.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.utils.data import TensorDataset

from deepseek.train import Trainer


def data() -> TensorDataset:
    g = torch.Generator().manual_seed(123)
    x = torch.randn(64, 8, generator=g)
    y = torch.randint(0, 3, (64,), generator=g)
    return TensorDataset(x, y)


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def train(batch_size: int, accum: int, epochs: int = 2) -> tuple[Trainer, torch.nn.Module]:
    net = model()
    trainer = Trainer(net, torch.optim.SGD(net.parameters(), lr=0.2),
                      loss_fn=torch.nn.functional.cross_entropy, accum_steps=accum,
                      progress=False)
    trainer.fit(data(), epochs=epochs, batch_size=batch_size, shuffle=False)
    return trainer, net


if __name__ == "__main__":
    out, per_rank_batch, accum = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    trainer, net = train(per_rank_batch, accum)
    assert trainer.distributed and trainer.world_size == 2, "expected two torchrun ranks"
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(out / f"rank{trainer.rank}.safetensors"))
    # Both ranks meet, then leave without tearing the gloo group down: on this torch build
    # the teardown sometimes aborts a rank ("terminate called without an active exception")
    # after all the work is done, which would fail the run for a reason outside this test.
    torch.distributed.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
