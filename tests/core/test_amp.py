from __future__ import annotations

import logging

import pytest
import torch

from deepseek.amp import AutoMixedPrecision


def test_cpu_autocast_is_bf16_inside_and_fp32_outside():
    amp = AutoMixedPrecision(device="cpu")
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    assert not torch.is_autocast_enabled("cpu")
    with amp:
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert (a @ b).dtype == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")
    assert (a @ b).dtype == torch.float32
    assert amp.scaler is None  # no loss scaling for bf16 on CPU


def test_seed_usage_trains_on_cpu():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 2)
    criterion = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs, targets = torch.randn(16, 8), torch.randint(0, 2, (16,))
    before = model.weight.detach().clone()
    amp = AutoMixedPrecision()
    with amp:
        outputs = model(inputs)
        loss = criterion(outputs, targets)
    assert outputs.dtype == torch.bfloat16
    amp.backward(loss)
    assert model.weight.grad.dtype == torch.float32  # master weights stay fp32
    assert amp.step(opt)
    assert not torch.equal(before, model.weight)


def test_disabled_is_a_no_op():
    amp = AutoMixedPrecision(device="cpu", enabled=False)
    with amp:
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.randn(2, 2) @ torch.randn(2, 2)).dtype == torch.float32


def test_unsupported_device_is_a_logged_no_op(caplog, monkeypatch):
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)
    with caplog.at_level(logging.INFO, logger="deepseek.amp"):
        amp = AutoMixedPrecision(device="cpu")
    assert not amp.enabled and "mixed precision is off" in caplog.text
    with amp:
        assert (torch.randn(2, 2) @ torch.randn(2, 2)).dtype == torch.float32


def test_explicit_dtype_and_bad_dtype():
    amp = AutoMixedPrecision(device="cpu", dtype="fp16")
    with amp:
        assert torch.get_autocast_dtype("cpu") == torch.float16
    with pytest.raises(ValueError, match="unknown AMP dtype"):
        AutoMixedPrecision(dtype="fp8")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_uses_fp16_and_grad_scaler():
    amp = AutoMixedPrecision(device="cuda")
    assert amp.dtype == torch.float16 and amp.scaler is not None
    model = torch.nn.Linear(8, 2).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with amp:
        loss = model(torch.randn(4, 8, device="cuda")).float().pow(2).mean()
    amp.backward(loss)
    amp.step(opt)


def test_cpu_bf16_units_follow_the_amx_probe(monkeypatch):
    from deepseek.amp import cpu_has_bf16_units

    assert isinstance(cpu_has_bf16_units(), bool)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert cpu_has_bf16_units() is True
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert cpu_has_bf16_units() is False

    def broken():
        raise RuntimeError("no kernels for this probe")

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", broken, raising=False)
    assert cpu_has_bf16_units() is False  # a build without the probe: no claim of the units
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert cpu_has_bf16_units() is False
