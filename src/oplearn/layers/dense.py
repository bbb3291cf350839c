"""Dense blocks of DeepONet-style models: a plain MLP, a small CNN encoder, Fourier features.

* :func:`dense_net`: ``(..., sizes[0]) -> (..., sizes[-1])``, Linear + activation between layers.
* :class:`ConvEncoder`: ``(batch, C, *grid) -> (batch, out)``, strided convolutions then an MLP
  (the CNN branch of Lu et al. 2022 for grid inputs).
* :class:`FourierFeatures`: ``(..., d) -> (..., 2m)``, ``[cos(2 pi B x), sin(2 pi B x)]`` with a
  fixed Gaussian ``B (m, d)`` of standard deviation ``scale`` (Tancik et al. 2020).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from oplearn.errors import ConfigError
from oplearn.layers.activations import make_activation


def dense_net(sizes: Sequence[int], activation: str, last_activation: bool = False) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with ``activation`` between them (and after the last
    one when ``last_activation``)."""
    if len(sizes) < 2 or min(sizes) < 1:
        raise ConfigError(f"a dense net needs at least two positive layer sizes, got {list(sizes)}")
    layers: list[nn.Module] = []
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if index < len(sizes) - 2 or last_activation:
            layers.append(make_activation(activation))
    return nn.Sequential(*layers)


class ConvEncoder(nn.Module):
    """``(batch, channels, *grid) -> (batch, out)``: 3-wide stride-2 convolutions, flatten, dense net.

    ``grid``: the input grid (1 or 2 axes); ``conv_channels``: channels of each convolution;
    ``hidden``: widths of the dense layers after it.
    """

    def __init__(self, channels: int, grid: Sequence[int], conv_channels: Sequence[int], hidden: Sequence[int],
                 out: int, activation: str):
        super().__init__()
        if len(grid) not in (1, 2):
            raise ConfigError(f"the CNN branch takes 1-D or 2-D grid inputs, got a {len(grid)}-D grid")
        conv = nn.Conv1d if len(grid) == 1 else nn.Conv2d
        layers: list[nn.Module] = []
        for n_in, n_out in zip([channels, *conv_channels[:-1]], conv_channels):
            layers += [conv(n_in, n_out, 3, stride=2, padding=1), make_activation(activation)]
        self.conv = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, channels, *grid)).numel()
        self.head = dense_net([flat, *hidden, out], activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).flatten(1))


class FourierFeatures(nn.Module):
    """``(..., d) -> (..., 2 * features)``: random Fourier features of points; ``B`` is a fixed buffer."""

    def __init__(self, dim: int, features: int, scale: float, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("frequencies", scale * torch.randn(features, dim, generator=generator))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * points @ self.frequencies.to(points.dtype).T
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
