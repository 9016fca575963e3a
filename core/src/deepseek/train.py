"""The training loop: gradient accumulation, AMP, clipping, checkpoints, DDP under torchrun.

    trainer = Trainer(model, torch.optim.AdamW(model.parameters(), 1e-3),
                      loss_fn=torch.nn.functional.cross_entropy,
                      accum_steps=4, amp=True, grad_clip=1.0, checkpoint_dir="runs/x")
    history = trainer.fit(train_dataset, epochs=10, batch_size=32, val_data=val_dataset)

Gradient accumulation: each micro-batch's loss is divided by ``accum_steps`` before
backward and the optimizer steps once per group. A last group shorter than ``accum_steps``
(the epoch ran out) has its gradients rescaled by ``accum_steps / group_size``, so it is an
exact mean over the micro-batches it had. Each micro-batch's mean loss weighs equally.

Distributed: started under ``torchrun --nproc-per-node N`` (``WORLD_SIZE > 1``), the trainer
joins the process group (gloo on CPU, nccl on CUDA), wraps the model in
``DistributedDataParallel``, shards a dataset with ``DistributedSampler`` (``set_epoch`` every
epoch) and skips the gradient all-reduce on the micro-batches inside an accumulation group.
Logging, progress and checkpoints happen on rank 0 only. Several machines are torchrun's job.

Checkpoints are folders ``epoch-NNNN/`` holding ``model.safetensors`` (loadable by
``ModelLoader`` when ``architecture`` is given), ``optimizer.safetensors`` and
``trainer.json`` (epoch, step, optimizer hyper-parameters, scaler and scheduler state, best
metric); ``best/`` holds the best epoch by ``best_metric``. No pickles.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from deepseek.amp import AutoMixedPrecision
from deepseek.errors import CheckpointError, DeepSeekError
from deepseek.loader import resolve_device

log = logging.getLogger(__name__)

_END = object()


def distributed_env() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` from torchrun's environment (``(0, 0, 1)`` alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, local, world


def move_to(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    return batch


class Trainer:
    """A training loop for one machine (one or several processes under torchrun).

    Args:
        model: the ``nn.Module`` to train.
        optimizer: a torch optimizer over ``model.parameters()`` (default AdamW, lr 1e-3).
        loss_fn: ``loss_fn(outputs, targets)`` for batches ``(inputs, targets)``.
        step_fn: ``step_fn(model, batch) -> loss`` instead of ``loss_fn`` for other batches.
        accum_steps: micro-batches per optimizer step.
        amp: ``True`` for :class:`AutoMixedPrecision` defaults, or an instance.
        grad_clip: max global gradient norm (after unscaling), or ``None``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` ... (under torchrun on CUDA: the local rank).
        checkpoint_dir: where checkpoints go (``None``: no checkpoints).
        keep_checkpoints: how many ``epoch-NNNN`` folders to keep (``best/`` is extra).
        scheduler: an LR scheduler, stepped per optimizer step (``scheduler_per="step"``)
            or per epoch (``"epoch"``).
        callbacks: callables ``callback(trainer, logs)`` run at the end of every epoch.
        progress: show a tqdm bar; ``None`` shows one when stderr is a terminal.
        architecture: the registry name recorded in checkpoints.
        config: the model configuration recorded in checkpoints.
        distributed: ``"auto"`` (DDP when torchrun started us with ``WORLD_SIZE > 1``),
            ``True`` or ``False``.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 loss_fn: Callable[..., torch.Tensor] | None = None, *,
                 step_fn: Callable[[torch.nn.Module, Any], torch.Tensor] | None = None,
                 accum_steps: int = 1, amp: bool | AutoMixedPrecision = False,
                 grad_clip: float | None = None, device: str | torch.device = "auto",
                 checkpoint_dir: str | Path | None = None, keep_checkpoints: int = 2,
                 scheduler: Any = None, scheduler_per: str = "step",
                 callbacks: Iterable[Callable[[Trainer, dict[str, Any]], None]] = (),
                 progress: bool | None = None, architecture: str | None = None,
                 config: dict[str, Any] | None = None,
                 distributed: bool | str = "auto") -> None:
        if int(accum_steps) < 1:
            raise DeepSeekError(f"accum_steps must be >= 1, got {accum_steps}")
        if loss_fn is None and step_fn is None:
            raise DeepSeekError("Trainer needs loss_fn(outputs, targets) or "
                                "step_fn(model, batch)")
        if scheduler_per not in ("step", "epoch"):
            raise DeepSeekError("scheduler_per must be 'step' or 'epoch'")
        self.rank, self.local_rank, self.world_size = distributed_env()
        want_ddp = (self.world_size > 1) if distributed == "auto" else bool(distributed)
        self.distributed = want_ddp and self.world_size > 1
        if device == "auto" and self.distributed and torch.cuda.is_available():
            device = f"cuda:{self.local_rank}"
        self.device = resolve_device(device)
        self._owns_group = False
        if self.distributed and not dist.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
            self._owns_group = True
        self.module = model.to(self.device)
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.model: torch.nn.Module = DDP(
                self.module, device_ids=[self.device.index] if self.device.type == "cuda"
                else None)
        else:
            self.model = self.module
        self.optimizer = optimizer or torch.optim.AdamW(self.module.parameters(), lr=1e-3)
        self.loss_fn = loss_fn
        self.step_fn = step_fn
        self.accum_steps = int(accum_steps)
        if isinstance(amp, AutoMixedPrecision):
            self.amp = amp
        else:
            self.amp = AutoMixedPrecision(self.device, enabled=bool(amp))
        self.grad_clip = grad_clip
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.keep_checkpoints = keep_checkpoints
        self.scheduler = scheduler
        self.scheduler_per = scheduler_per
        self.callbacks = list(callbacks)
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.architecture = architecture
        self.config = config or {}
        self.epoch = 0  # epochs completed
        self.global_step = 0  # optimizer steps taken
        self.best: float | None = None
        self.history: list[dict[str, Any]] = []

    @property
    def is_main(self) -> bool:
        """Whether this process is rank 0 (it logs, shows progress and writes checkpoints)."""
        return self.rank == 0

    # data ------------------------------------------------------------------------------------
    def make_loader(self, data: Any, batch_size: int | None, shuffle: bool) -> Iterable[Any]:
        """A DataLoader for ``data`` (sharded under DDP); iterables of batches pass through."""
        if isinstance(data, DataLoader):
            if self.distributed and not isinstance(data.sampler, DistributedSampler):
                sampler = DistributedSampler(data.dataset, num_replicas=self.world_size,
                                             rank=self.rank,
                                             shuffle=isinstance(data.sampler, RandomSampler))
                return DataLoader(data.dataset, batch_size=data.batch_size, sampler=sampler,
                                  collate_fn=data.collate_fn, num_workers=data.num_workers,
                                  drop_last=data.drop_last, pin_memory=data.pin_memory)
            return data
        if isinstance(data, Dataset) and hasattr(data, "__getitem__"):
            bs = batch_size or 32
            if self.distributed:
                sampler = DistributedSampler(data, num_replicas=self.world_size, rank=self.rank,
                                             shuffle=shuffle)
                return DataLoader(data, batch_size=bs, sampler=sampler)
            return DataLoader(data, batch_size=bs, shuffle=shuffle)
        if self.distributed:
            raise DeepSeekError("under torchrun pass a Dataset or DataLoader so that it can be "
                                "sharded across ranks, not a plain iterable of batches")
        return data

    # one loss ---------------------------------------------------------------------------------
    def compute_loss(self, batch: Any) -> torch.Tensor:
        """The loss of one batch: the step function's, else the loss function on ``(inputs,
        targets)``.
        """
        if self.step_fn is not None:
            return self.step_fn(self.model, batch)
        try:
            inputs, targets = batch[0], batch[1]
        except (TypeError, IndexError, KeyError):
            raise DeepSeekError("with loss_fn, batches must be (inputs, targets); pass step_fn "
                                "for other batch layouts") from None
        outputs = self.model(*inputs) if isinstance(inputs, (tuple, list)) else self.model(inputs)
        return self.loss_fn(outputs, targets)  # type: ignore[misc]

    # the loop -----------------------------------------------------------------------------------
    def fit(self, train_data: Any, epochs: int = 1, *, batch_size: int | None = None,
            shuffle: bool = True, val_data: Any = None,
            eval_fn: Callable[[torch.nn.Module, Any], dict[str, float]] | None = None,
            resume: bool | str | Path = False, best_metric: str | None = None,
            mode: str = "min") -> list[dict[str, Any]]:
        """Train for ``epochs`` epochs (counted from 0, so a resumed run continues).

        ``eval_fn(model, val_data)`` returns metrics (default: mean loss, ``val_loss``);
        ``best_metric`` (default ``val_loss`` when validating, else ``train_loss``) picks the
        checkpoint kept in ``best/``, lower is better unless ``mode="max"``. ``resume`` is
        ``True`` (latest checkpoint in ``checkpoint_dir``) or a checkpoint folder.
        Returns the per-epoch logs.
        """
        if mode not in ("min", "max"):
            raise DeepSeekError("mode must be 'min' or 'max'")
        if resume:
            path = self.latest_checkpoint() if resume is True else Path(resume)
            if path is None:
                log.info("no checkpoint to resume from in %s; starting fresh",
                         self.checkpoint_dir)
            else:
                self.load_checkpoint(path)
        loader = self.make_loader(train_data, batch_size, shuffle)
        # validation is not sharded: every rank sees the whole set, so metrics agree
        val_loader = DataLoader(val_data, batch_size=batch_size or 32) \
            if isinstance(val_data, Dataset) and not isinstance(val_data, DataLoader) \
            else val_data
        metric_name = best_metric or ("val_loss" if val_data is not None else "train_loss")
        while self.epoch < epochs:
            t0 = time.perf_counter()
            sampler = getattr(loader, "sampler", None)
            if isinstance(sampler, DistributedSampler):
                sampler.set_epoch(self.epoch)
            train_loss = self.train_epoch(loader, desc=f"epoch {self.epoch + 1}/{epochs}")
            logs: dict[str, Any] = {"epoch": self.epoch + 1, "step": self.global_step,
                                    "train_loss": train_loss,
                                    "lr": self.optimizer.param_groups[0]["lr"]}
            if val_data is not None:
                logs.update(eval_fn(self.module, val_data) if eval_fn is not None
                            else {"val_loss": self.evaluate_loss(val_loader)})
            if self.scheduler is not None and self.scheduler_per == "epoch":
                self.scheduler.step()
            self.epoch += 1
            logs["seconds"] = round(time.perf_counter() - t0, 3)
            value = logs.get(metric_name)
            improved = value is not None and math.isfinite(float(value)) and (
                self.best is None or (float(value) < self.best if mode == "min"
                                      else float(value) > self.best))
            if improved:
                self.best = float(value)  # type: ignore[arg-type]
            logs["best"] = improved
            self.history.append(logs)
            if self.is_main:
                log.info("epoch %d: %s", self.epoch, {k: v for k, v in logs.items()
                                                      if k != "epoch"})
                if self.checkpoint_dir is not None:
                    self.save_checkpoint(best=improved)
            for cb in self.callbacks:
                cb(self, logs)
        return self.history

    def train_epoch(self, loader: Iterable[Any], desc: str = "train") -> float:
        """One pass over ``loader``; returns the mean micro-batch loss."""
        from tqdm.auto import tqdm

        self.model.train()
        opt = self.optimizer
        opt.zero_grad(set_to_none=True)
        total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
        bar = tqdm(total=total, desc=desc, disable=not (self.progress and self.is_main),
                   leave=False, dynamic_ncols=True)
        loss_sum, count, in_group = 0.0, 0, 0
        it = iter(loader)
        nxt = next(it, _END)
        while nxt is not _END:
            batch, nxt = nxt, next(it, _END)
            last = nxt is _END
            in_group += 1
            closes = in_group == self.accum_steps or last
            sync = self.model.no_sync() if (self.distributed and not closes) \
                else contextlib.nullcontext()
            with sync:
                with self.amp:
                    loss = self.compute_loss(move_to(batch, self.device))
                value = float(loss.detach())
                if not math.isfinite(value) and self.amp.scaler is None:
                    raise DeepSeekError(
                        f"loss is {value} at epoch {self.epoch + 1}, step {self.global_step}; "
                        "lower the learning rate, set grad_clip or check the data")
                self.amp.backward(loss / self.accum_steps)
            loss_sum += value
            count += 1
            if closes:
                if in_group < self.accum_steps:  # the epoch ended inside a group
                    fix = self.accum_steps / in_group
                    for p in self.module.parameters():
                        if p.grad is not None:
                            p.grad.mul_(fix)
                if self.grad_clip is not None:
                    self.amp.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip)
                self.amp.step(opt)
                opt.zero_grad(set_to_none=True)
                if self.scheduler is not None and self.scheduler_per == "step":
                    self.scheduler.step()
                self.global_step += 1
                in_group = 0
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4g}")
        bar.close()
        if count == 0:
            raise DeepSeekError("the training data produced no batches; check its size and "
                                "batch_size (drop_last?)")
        return loss_sum / count

    @torch.no_grad()
    def evaluate_loss(self, data: Iterable[Any]) -> float:
        """Mean loss over ``data`` in eval mode."""
        self.model.eval()
        total, n = 0.0, 0
        for batch in data:
            with self.amp:
                total += float(self.compute_loss(move_to(batch, self.device)))
            n += 1
        self.model.train()
        return total / max(n, 1)

    # checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(self, path: str | Path | None = None, best: bool = False) -> Path:
        """Write a checkpoint folder (default ``checkpoint_dir/epoch-NNNN``) and return it."""
        from safetensors.torch import save_file

        from deepseek.loader import save_model

        if path is None:
            if self.checkpoint_dir is None:
                raise CheckpointError("no checkpoint_dir set and no path given")
            path = self.checkpoint_dir / f"epoch-{self.epoch:04d}"
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_model(self.module, tmp / "model.safetensors",
                   architecture=self.architecture or type(self.module).__name__,
                   config=self.config)
        opt_tensors, opt_meta = _flatten_optimizer(self.optimizer.state_dict())
        opt_tensors["rng.torch"] = torch.get_rng_state()
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        sched = None
        if self.scheduler is not None:
            try:
                sched = json.loads(json.dumps(self.scheduler.state_dict(), default=_jsonable))
            except (TypeError, ValueError):
                log.warning("scheduler state is not JSON-serialisable; not checkpointed")
        state = {"epoch": self.epoch, "global_step": self.global_step, "best": self.best,
                 "accum_steps": self.accum_steps, "optimizer": opt_meta,
                 "scaler": self.amp.state_dict(), "scheduler": sched,
                 "history": self.history}
        (tmp / "trainer.json").write_text(json.dumps(state, indent=1, default=_jsonable))
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
        if self.checkpoint_dir is not None and path.parent == self.checkpoint_dir:
            (self.checkpoint_dir / "latest").write_text(path.name + "\n")
            if best:
                shutil.rmtree(self.checkpoint_dir / "best", ignore_errors=True)
                shutil.copytree(path, self.checkpoint_dir / "best")
            olds = sorted(self.checkpoint_dir.glob("epoch-[0-9]*"))
            for old in olds[:-self.keep_checkpoints] if self.keep_checkpoints > 0 else []:
                shutil.rmtree(old, ignore_errors=True)
        return path

    def latest_checkpoint(self) -> Path | None:
        """The newest checkpoint in the checkpoint folder, or None."""
        if self.checkpoint_dir is None:
            return None
        pointer = self.checkpoint_dir / "latest"
        if pointer.is_file():
            cand = self.checkpoint_dir / pointer.read_text().strip()
            if cand.is_dir():
                return cand
        found = sorted(self.checkpoint_dir.glob("epoch-[0-9]*[0-9]"))
        return found[-1] if found else None

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore model, optimizer, scaler, scheduler and counters from a checkpoint folder."""
        from safetensors.torch import load_file

        from deepseek.loader import load_safetensors_into

        path = Path(path)
        for name in ("model.safetensors", "optimizer.safetensors", "trainer.json"):
            if not (path / name).is_file():
                raise CheckpointError(f"{path}: incomplete checkpoint, {name} is missing")
        try:
            state = json.loads((path / "trainer.json").read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path / 'trainer.json'}: not valid JSON ({exc})") from exc
        try:
            load_safetensors_into(self.module, path / "model.safetensors")
        except DeepSeekError as exc:
            raise CheckpointError(f"{path}: checkpoint does not match this model: {exc}") from exc
        tensors = load_file(str(path / "optimizer.safetensors"))
        rng = tensors.pop("rng.torch", None)
        try:
            self.optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer"]))
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: optimizer state does not match this optimizer "
                                  f"({exc})") from exc
        if rng is not None:
            torch.set_rng_state(rng)
        self.amp.load_state_dict(state.get("scaler") or {})
        if self.scheduler is not None and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.best = state.get("best")
        self.history = list(state.get("history") or [])
        if self.is_main:
            log.info("resumed from %s (epoch %d, step %d)", path, self.epoch, self.global_step)

    def close(self) -> None:
        """Leave the process group if this trainer created it."""
        if self._owns_group and dist.is_initialized():
            # every rank arrives before the group is torn down: a rank that leaves while its
            # peer still talks to it makes gloo abort the process
            dist.barrier()
            dist.destroy_process_group()
            self._owns_group = False

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _jsonable(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.item() if o.numel() == 1 else o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    extra: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"state.{idx}.{key}"] = val.detach().cpu().contiguous()
            else:
                extra.setdefault(str(idx), {})[key] = val
    meta = {"param_groups": sd["param_groups"], "extra": extra}
    return tensors, json.loads(json.dumps(meta, default=_jsonable))


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = val
    for idx, vals in (meta.get("extra") or {}).items():
        state.setdefault(int(idx), {}).update(vals)
    return {"state": state, "param_groups": meta["param_groups"]}
