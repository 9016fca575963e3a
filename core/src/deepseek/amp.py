"""Automatic mixed precision with the right dtype per device.

    amp = AutoMixedPrecision()          # bf16 autocast on CPU, fp16 + GradScaler on CUDA
    with amp:
        outputs = model(inputs)
        loss = criterion(outputs, targets)
    amp.backward(loss)                  # scaled on CUDA fp16, plain elsewhere
    amp.step(optimizer)                 # unscale, skip on inf/nan, update the scale

Where autocast is not available for the device (or ``enabled=False``), the object is a
logged no-op with the same methods, so training code needs no branches.

:func:`cpu_has_bf16_units` says whether this CPU multiplies bf16 matrices in hardware (AMX),
where bf16 inference is worth choosing by default; elsewhere bf16 on the CPU is emulated and
slower than fp32.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

log = logging.getLogger(__name__)

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "float16": torch.float16,
           "bfloat16": torch.bfloat16}


def cpu_has_bf16_units() -> bool:
    """True when this CPU has bf16 matrix units (Intel AMX: oneDNN runs bf16 convolutions
    and matrix products on them, about twice as fast as fp32); False elsewhere, including CPUs
    with only AVX-512 bf16 conversions, where bf16 gains little or is slower."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:  # a build without the probe's kernels
        return False


class AutoMixedPrecision:
    """Autocast context + gradient scaling in one object.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), a device string or
            ``torch.device``; only its type matters.
        dtype: ``None`` for the device default (CPU: bf16; CUDA: fp16), or ``"fp16"`` /
            ``"bf16"`` / a torch dtype.
        enabled: ``False`` makes every method a no-op (full precision).
        init_scale: initial loss scale of the GradScaler (CUDA fp16 only).
    """

    def __init__(self, device: str | torch.device = "auto", dtype: Any = None,
                 enabled: bool = True, init_scale: float = 2.0**16) -> None:
        if isinstance(device, torch.device):
            self.device_type = device.type
        elif device in (None, "auto"):
            self.device_type = "cuda" if torch.cuda.is_available() else "cpu"
        else:
            self.device_type = torch.device(device).type
        if dtype is None:
            dtype = torch.float16 if self.device_type == "cuda" else torch.bfloat16
        elif isinstance(dtype, str):
            if dtype not in _DTYPES:
                raise ValueError(f"unknown AMP dtype {dtype!r}; use 'fp16' or 'bf16'")
            dtype = _DTYPES[dtype]
        self.dtype: torch.dtype = dtype
        self.enabled = bool(enabled)
        if self.enabled and not torch.amp.is_autocast_available(self.device_type):
            log.info("autocast is not available on %s; mixed precision is off (full precision)",
                     self.device_type)
            self.enabled = False
        if self.enabled and self.device_type == "cuda" and dtype == torch.bfloat16 \
                and not torch.cuda.is_bf16_supported():
            log.info("this GPU has no bf16; using fp16 autocast")
            self.dtype = torch.float16
        use_scaler = self.enabled and self.device_type == "cuda" and self.dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", init_scale=init_scale) if use_scaler else None
        self._ctx: Any = None

    def __repr__(self) -> str:
        state = str(self.dtype).replace("torch.", "") if self.enabled else "off"
        return f"AutoMixedPrecision({self.device_type}, {state}, scaler={self.scaler is not None})"

    # context -------------------------------------------------------------------------------
    def __enter__(self) -> AutoMixedPrecision:
        if self.enabled:
            self._ctx = torch.autocast(device_type=self.device_type, dtype=self.dtype)
            self._ctx.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            ctx.__exit__(*exc)

    # backward / step -------------------------------------------------------------------------
    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, scaled when a GradScaler is active."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Unscale gradients in place (call before clipping)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Optimizer step (skipped by the scaler on inf/nan gradients). True if it stepped."""
        if self.scaler is None:
            optimizer.step()
            return True
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= scale

    def state_dict(self) -> dict[str, Any]:
        """The gradient scaler's state for a checkpoint (empty when no scaler is used)."""
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the gradient scaler from :meth:`state_dict` (nothing to do without a scaler)."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
