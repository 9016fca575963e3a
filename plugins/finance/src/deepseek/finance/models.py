"""Tick classifiers of the mid-price move over a horizon: down / flat / up (classes 0, 1, 2).

Both models standardise their inputs with ``mean``/``std`` buffers set from the training
data, so a saved model is self-contained.
"""

from __future__ import annotations

import torch
from torch import nn

from deepseek.finance.features import N_FEATURES

CLASSES = ("down", "flat", "up")


class TickMLP(nn.Module):
    """features (B, F) -> logits (B, 3): standardise, then Linear/activation layers."""

    def __init__(self, n_features: int = N_FEATURES, hidden: tuple[int, ...] | list[int] = (64, 64),
                 n_classes: int = 3, activation: str = "relu") -> None:
        super().__init__()
        acts = {"relu": nn.ReLU, "tanh": nn.Tanh}
        if activation not in acts:
            raise ValueError(f"activation must be one of {sorted(acts)}")
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, int(h)), acts[activation]()]
            width = int(h)
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (down, flat, up) of standardised tick features ``(B, 17)``."""
        return self.net((x - self.mean) / self.std)


class TickGRU(nn.Module):
    """features (B, T, F) -> logits (B, T, 3), with an optional initial hidden state.

    ``step(x, h)`` advances one tick: x (B, F), h (1, B, H) -> logits (B, 3), new h.
    """

    def __init__(self, n_features: int = N_FEATURES, hidden: int = 32,
                 n_classes: int = 3) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.gru = nn.GRU(n_features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_classes)
        self.hidden = hidden

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits for every tick of feature sequences ``(B, T, 17)``, from hidden state ``h``.
        """
        y, _ = self.gru((x - self.mean) / self.std, h)
        return self.head(y)

    def step(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One tick for a batch of streams: logits and the next hidden state."""
        y, h = self.gru(((x - self.mean) / self.std).unsqueeze(1), h)
        return self.head(y[:, 0]), h


class GRUStep(nn.Module):
    """A one-tick wrapper of :class:`TickGRU` for export: (x, h) -> (logits, h)."""

    def __init__(self, model: TickGRU) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the wrapped GRU (the form its ONNX export takes)."""
        return self.model.step(x, h)
