from __future__ import annotations

import time

import pytest
import torch

from deepseek import hookimpl
from deepseek.plugins import temporary_plugin


class Doubler(torch.nn.Module):
    """y = 2x after a fixed delay per call (so batching pays); refuses values below -1000."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.scale = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x < -1000).any():
            raise ValueError("values below -1000 are refused by this model")
        if self.delay:
            time.sleep(self.delay)
        return x * self.scale


class ServingPlugin:
    @staticmethod
    @hookimpl
    def register_models(register):
        spec = [{"name": "x", "dtype": "float32", "shape": [-1, 4]}]
        register("test-double", Doubler, config={"delay": 0.0}, inputs=spec)
        register("test-slow", Doubler, config={"delay": 0.05}, inputs=spec)


@pytest.fixture(scope="session", autouse=True)
def serving_plugin():
    with temporary_plugin(ServingPlugin, name="serving-test-plugin"):
        yield
