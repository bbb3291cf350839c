"""U-Net building blocks for channel-first grids in 1, 2 or 3 dimensions.

    ConvBlock:  x -> act(norm(conv3(act(norm(conv3(x))))))        two 3x3 convolutions, size kept
    Down:       x -> ConvBlock(maxpool2(x))                         size halved, channels changed
    Up:         (x, skip) -> ConvBlock([upconv2(x), skip])          size doubled, skip concatenated

``norm`` is "group" (GroupNorm with the largest group count <= 8 that divides the channels), "batch" or
"none"; ``padding_mode`` ("zeros", "reflect", "circular") is the 3x3 convolutions' boundary.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from oplearn.errors import ConfigError
from oplearn.layers.activations import make_activation

NORMS = ("group", "batch", "none")
CONVOLUTIONS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
TRANSPOSED_CONVOLUTIONS = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
BATCH_NORMS = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
MAX_POOLS = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}


def make_norm(norm: str, channels: int, dim: int) -> nn.Module:
    """A fresh normalization of ``channels`` channels on ``dim``-D grids: "group", "batch" or "none"."""
    if norm == "group":
        return nn.GroupNorm(math.gcd(channels, 8), channels)
    if norm == "batch":
        return BATCH_NORMS[dim](channels)
    if norm == "none":
        return nn.Identity()
    raise ConfigError(f"unknown norm '{norm}'; choose one of: {', '.join(NORMS)}")


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by the normalization and the activation;
    ``(batch, in_channels, *grid) -> (batch, out_channels, *grid)``."""

    def __init__(self, in_channels: int, out_channels: int, dim: int, norm: str, activation: str, padding_mode: str):
        convolution = CONVOLUTIONS[dim]
        layers = []
        for n_in in (in_channels, out_channels):
            layers += [convolution(n_in, out_channels, 3, padding=1, padding_mode=padding_mode, bias=norm == "none"),
                       make_norm(norm, out_channels, dim), make_activation(activation)]
        super().__init__(*layers)


class Down(nn.Sequential):
    """Max pooling by 2 on every axis, then a :class:`ConvBlock`; ``(batch, C_in, *2n) -> (batch, C_out, *n)``."""

    def __init__(self, in_channels: int, out_channels: int, dim: int, norm: str, activation: str, padding_mode: str):
        super().__init__(MAX_POOLS[dim](2), ConvBlock(in_channels, out_channels, dim, norm, activation, padding_mode))


class Up(nn.Module):
    """Transposed 2x2 convolution of stride 2 (``in_channels -> in_channels // 2``), the skip field
    (``skip_channels``, twice the size) concatenated, then a :class:`ConvBlock` to ``out_channels``."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, dim: int, norm: str,
                 activation: str, padding_mode: str):
        super().__init__()
        self.upsample = TRANSPOSED_CONVOLUTIONS[dim](in_channels, in_channels // 2, 2, stride=2)
        self.block = ConvBlock(in_channels // 2 + skip_channels, out_channels, dim, norm, activation, padding_mode)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.upsample(x), skip], dim=1))
