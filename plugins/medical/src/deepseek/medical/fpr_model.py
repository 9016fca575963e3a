"""``nodule-fpr-3dcnn``: the second stage that re-scores nodule candidates.

The detector finds nodules with high sensitivity, and with them vessel branchings, bronchial
walls, fissure crossings and pleural bumps. This small 3D CNN looks only at a cube around each
candidate (``CROP`` = 32 mm at the detector's 1 mm working grid, HU windowed as the detector's
input) and says whether a nodule sits at its centre: false-positive reduction, the second
track of LUNA16.

Input ``(B, 1, 32, 32, 32)`` in [0, 1]; output ``{"nodule": (B, 1) logits}``.
"""

from __future__ import annotations

import torch
from torch import nn

from deepseek.medical.nodule_grid import FPR_CROP

__all__ = ["FPR_CROP", "CandidateNet", "build"]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
        nn.Conv3d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True))


class CandidateNet(nn.Module):
    """32^3 -> 16^3 -> 8^3 -> 4^3 feature maps, then the centre 2^3 and the global average
    both feed the logit: the centre says what is at the candidate, the average what is
    around it."""

    def __init__(self, base: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(1, base, 3, padding=1, bias=False),
                                  nn.BatchNorm3d(base), nn.ReLU(inplace=True),
                                  nn.MaxPool3d(2))
        self.b1 = nn.Sequential(_block(base, 2 * base), nn.MaxPool3d(2))
        self.b2 = nn.Sequential(_block(2 * base, 4 * base), nn.MaxPool3d(2))
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(8 * base, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Score a batch of candidate crops ``(B, 1, D, H, W)``: ``{"nodule": logits (B, 1)}``."""
        f = self.b2(self.b1(self.stem(x)))  # (B, 4 base, 4, 4, 4)
        centre = f[:, :, 1:3, 1:3, 1:3].mean(dim=(2, 3, 4))
        around = f.mean(dim=(2, 3, 4))
        return {"nodule": self.head(self.drop(torch.cat([centre, around], dim=1)))}


def build(base: int = 8) -> CandidateNet:
    """The false-positive reduction classifier with ``base`` channels (the registry's builder)."""
    return CandidateNet(base=base)
