"""``lung-nodule-attention``: an attention 3D CNN that detects lung nodules.

Design: an anchor-free centre-heatmap detector (CenterNet style) at a fixed working spacing
of 1 mm isotropic. A small 3D encoder-decoder with CBAM blocks (channel attention, then
spatial attention) in the encoder and an attention gate on the skip connection predicts, on
a grid of stride 2 (2 mm):

* ``heatmap`` (1 channel, logits): a Gaussian peak at each nodule centre;
* ``size`` (1 channel): log of the nodule diameter in mm, read at the peak;
* ``offset`` (3 channels, z/y/x): where the centre lies inside the output cell, in output
  voxels, read at the peak.

Input: one channel, HU windowed to [-1000, 400] and scaled to [0, 1], shape (B, 1, D, H, W)
with D, H, W multiples of 4.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from deepseek.medical.nodule_grid import STRIDE, WINDOW, WORKING_SPACING

__all__ = ["STRIDE", "WINDOW", "WORKING_SPACING", "LungNoduleAttentionNet", "build",
           "normalize_hu"]


def conv_bn(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


class ChannelAttention(nn.Module):
    """Squeeze (average and max pooling) and excite: one weight per channel."""

    def __init__(self, ch: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(ch // reduction, 4)
        self.mlp = nn.Sequential(nn.Conv3d(ch, hidden, 1), nn.ReLU(inplace=True),
                                 nn.Conv3d(hidden, ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.mlp(F.adaptive_avg_pool3d(x, 1)) + self.mlp(F.adaptive_max_pool3d(x, 1))
        return x * torch.sigmoid(a)


class SpatialAttention(nn.Module):
    """A 7x7x7 convolution over channel-pooled maps: one weight per voxel."""

    def __init__(self, kernel: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 1, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.conv(pooled))


class CBAMBlock(nn.Module):
    """Two 3x3x3 convolutions with a residual, then channel and spatial attention."""

    def __init__(self, ch: int, dilation: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(ch, ch, dilation=dilation),
                                  nn.Conv3d(ch, ch, 3, padding=dilation, dilation=dilation,
                                            bias=False),
                                  nn.BatchNorm3d(ch))
        self.ca = ChannelAttention(ch)
        self.sa = SpatialAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.sa(self.ca(self.body(x))))


class AttentionGate(nn.Module):
    """Additive attention gate: the coarse decoder signal weights the skip features."""

    def __init__(self, skip_ch: int, gate_ch: int, inter: int) -> None:
        super().__init__()
        self.theta = nn.Conv3d(skip_ch, inter, 1, bias=False)
        self.phi = nn.Conv3d(gate_ch, inter, 1)
        self.psi = nn.Conv3d(inter, 1, 1)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.theta(skip) + self.phi(gate))
        return skip * torch.sigmoid(self.psi(a))


class LungNoduleAttentionNet(nn.Module):
    """See the module docstring. ``forward`` returns a dict of heatmap/size/offset tensors."""

    def __init__(self, base: int = 12, in_channels: int = 1) -> None:
        super().__init__()
        c1, c2, c3 = base, 2 * base, 4 * base
        self.stem = conv_bn(in_channels, c1)
        self.down1 = conv_bn(c1, c2, stride=2)            # /2
        self.enc1 = CBAMBlock(c2)
        self.down2 = conv_bn(c2, c3, stride=2)            # /4
        self.enc2 = nn.Sequential(CBAMBlock(c3), CBAMBlock(c3, dilation=2))
        self.gate = AttentionGate(c2, c3, c2)
        self.fuse = conv_bn(c2 + c3, c2)
        self.head = conv_bn(c2, c2)
        self.heatmap = nn.Conv3d(c2, 1, 1)
        self.size = nn.Conv3d(c2, 1, 1)
        self.offset = nn.Conv3d(c2, 3, 1)
        nn.init.constant_(self.heatmap.bias, -4.0)  # start from "no nodule anywhere"
        nn.init.constant_(self.size.bias, 2.0)      # exp(2) ~ 7 mm

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the detector on ``(B, 1, D, H, W)`` crops at 1 mm: centre heatmap logits and diameter
        maps at stride 2.
        """
        s1 = self.enc1(self.down1(self.stem(x)))
        s2 = self.enc2(self.down2(s1))
        up = F.interpolate(s2, size=s1.shape[2:], mode="trilinear", align_corners=False)
        f = self.head(self.fuse(torch.cat([self.gate(s1, up), up], 1)))
        return {"heatmap": self.heatmap(f), "size": self.size(f), "offset": self.offset(f)}


def build(base: int = 12) -> LungNoduleAttentionNet:
    """Registry builder of ``lung-nodule-attention``."""
    return LungNoduleAttentionNet(base=base)


def normalize_hu(hu: torch.Tensor) -> torch.Tensor:
    """Hounsfield units to the network's input scale: the lung window mapped to 0..1, clamped."""
    lo, hi = WINDOW
    return ((hu - lo) / (hi - lo)).clamp_(0.0, 1.0)
