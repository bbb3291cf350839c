"""U-Net (Ronneberger et al. 2015), the convolutional baseline of operator learning (PDEBench and others).

    e_0 = ConvBlock(a),  e_i = Down(e_{i-1})           i = 1 .. levels, channels width * 2**i
    d_levels = e_levels,  d_i = Up(d_{i+1}, e_i)       i = levels - 1 .. 0, skip concatenation
    u = W d_0                                           1x1 output convolution

with the blocks of :mod:`oplearn.layers.unet_blocks` (two 3x3 convolutions with normalization and
activation; max pooling; transposed 2x2 convolutions). Any grid size: each axis is padded at its end, in
the padding mode, to a multiple of ``2**levels`` and the output cropped back to the input grid (with
"zeros" the output is that of the zero-padded input, cropped; group and batch statistics include the
padded points). With "circular" the padding to a multiple breaks exact periodicity; on grids whose sizes
divide by ``2**levels`` nothing is padded and the model commutes with shifts by multiples of ``2**levels``.

Across resolutions: the stencils are in grid units, so the model is NOT resolution invariant; the same
weights on a finer grid represent a different operator (tests/models/test_unet.py shows it). Train and
evaluate on the same resolution.
"""

from __future__ import annotations

import torch
from torch import nn

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.multigrid import check_padding_mode, pad
from oplearn.layers.unet_blocks import CONVOLUTIONS, NORMS, ConvBlock, Down, Up
from oplearn.models.operator import Hyperparameters, Operator, register


@register("unet")
class UNet(Operator):
    """U-Net on 1-, 2- or 3-D grids; hyperparameters in :class:`UNet.Hyper`.

    Shapes: ``(batch, in_channels, *grid) -> (batch, out_channels, *grid)``, ``len(grid) == dim``, every
    axis at least ``2**levels`` points.
    """

    geometries = frozenset({"grid"})

    class Hyper(Hyperparameters):
        width: int = 32
        """Channels of the first level; level i has ``width * 2**i``."""
        levels: int = 4
        """Downsamplings by 2 (the depth of the U)."""
        norm: str = "group"
        """Normalization after every 3x3 convolution: "group", "batch" or "none"."""
        activation: str = "gelu"
        """Name of the nonlinearity (gelu, relu, silu, tanh)."""
        padding_mode: str = "zeros"
        """Boundary of the 3x3 convolutions and of the padding to a multiple of 2**levels: "zeros",
        "reflect" or "circular"."""
        dim: int = 2
        """Spatial dimension of the grid (1, 2 or 3)."""

    def __init__(self, in_channels: int, out_channels: int, **hyper):
        super().__init__(in_channels, out_channels, **hyper)
        h = self.hyper
        if min(in_channels, out_channels, h.width, h.levels) < 1:
            raise ConfigError("in_channels, out_channels, width and levels must be positive")
        if h.dim not in CONVOLUTIONS:
            raise ConfigError(f"dim must be 1, 2 or 3, got {h.dim}")
        if h.norm not in NORMS:
            raise ConfigError(f"unknown norm '{h.norm}'; choose one of: {', '.join(NORMS)}")
        check_padding_mode(h.padding_mode)
        options = {"dim": h.dim, "norm": h.norm, "activation": h.activation, "padding_mode": h.padding_mode}
        channels = [h.width * 2**i for i in range(h.levels + 1)]
        self.encoder = ConvBlock(in_channels, channels[0], **options)
        self.down = nn.ModuleList(Down(channels[i], channels[i + 1], **options) for i in range(h.levels))
        self.up = nn.ModuleList(Up(channels[i + 1], channels[i], channels[i], **options)
                                for i in reversed(range(h.levels)))
        self.output = CONVOLUTIONS[h.dim](channels[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hyper
        if x.ndim != h.dim + 2 or x.shape[1] != self.in_channels:
            raise ShapeError(f"UNet expects (batch, {self.in_channels}, {h.dim} spatial axes), "
                             f"got shape {tuple(x.shape)}")
        sizes, multiple = x.shape[2:], 2**h.levels
        if min(sizes) < multiple:
            raise ShapeError(f"UNet with {h.levels} levels needs at least {multiple} points on every axis, "
                             f"got a grid {tuple(sizes)}; lower levels")
        x = pad(x, [(0, -n % multiple) for n in sizes], h.padding_mode)
        skips = [self.encoder(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.up:
            x = up(x, skips.pop())
        return self.output(x)[(..., *(slice(0, n) for n in sizes))]
