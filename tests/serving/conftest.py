from __future__ import annotations

import threading

import pytest
import torch

from deepseek import hookimpl
from deepseek.plugins import temporary_plugin


class Doubler(torch.nn.Module):
    """y = 2x; refuses values below -1000."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x < -1000).any():
            raise ValueError("values below -1000 are refused by this model")
        return x * self.scale


class Gate:
    """Once armed, holds every call of the gated model until the test opens it, and records
    each call (the server's own probe of the model at start-up passes unarmed)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.armed = False
        self.open = threading.Event()
        self.entered = threading.Semaphore(0)
        self.calls: list[list[float]] = []

    def arm(self) -> None:
        self.armed = True

    def wait_entered(self, timeout: float = 30.0) -> None:
        assert self.entered.acquire(timeout=timeout), "the gated model was never called"


GATE = Gate()


class GatedDoubler(Doubler):
    """A Doubler that waits at :data:`GATE` before answering: the tests decide when a
    running batch finishes, so arrival order and batch contents are deterministic."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if GATE.armed:
            GATE.calls.append([float(v) for v in x[:, 0]])
            GATE.entered.release()
            assert GATE.open.wait(60), "the test never opened the gate"
        return super().forward(x)


def serving_plugin_with(weights: str) -> type:
    """The test models, registered with packaged weights as a plugin ships them (the server
    refuses models registered without trained weights)."""

    class ServingPlugin:
        @staticmethod
        @hookimpl
        def register_models(register):
            spec = [{"name": "x", "dtype": "float32", "shape": [-1, 4]}]
            register("test-double", Doubler, inputs=spec, weights=weights)
            register("test-gated", GatedDoubler, inputs=spec, weights=weights)

    return ServingPlugin


@pytest.fixture(scope="package", autouse=True)
def serving_plugin(tmp_path_factory):
    """For the serving tests only: removed when they end, so later tests see the registry
    without the test models."""
    from deepseek.loader import save_model

    weights = save_model(Doubler(), tmp_path_factory.mktemp("weights") / "double.safetensors",
                         architecture="test-double")
    with temporary_plugin(serving_plugin_with(str(weights)), name="serving-test-plugin"):
        yield


@pytest.fixture
def gate():
    GATE.reset()
    yield GATE
    GATE.open.set()  # never leave a server thread waiting
