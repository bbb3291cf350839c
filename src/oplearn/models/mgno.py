"""Multigrid neural operator, MgNO (He, Liu and Xu, ICLR 2024).

    v_0 = a                                     the input channels, no lifting
    v_{l+1} = sigma(N(W_l v_l) + b_l)           l = 0 .. L-2, ``width`` channels
    u = W_{L-1} v_{L-1} + b_{L-1}               the last layer gives ``out_channels``, no projection

Each ``W_l`` is a linear operator between channel fields given as one multigrid V-cycle
(:class:`~oplearn.layers.multigrid.VCycle`: learned 3x3 convolutions as operator, smoothers,
restriction and prolongation), ``b_l`` a bias per channel, ``N`` an optional normalization. Boundary
conditions are the convolutions' padding (``padding_mode``): "zeros" (Dirichlet-like), "reflect" or
"circular" (periodic). The paper normalizes with a LayerNorm over the spatial shape, which ties a model
to one resolution; here ``N`` is a LayerNorm over the channels at every point
(:class:`~oplearn.layers.normalization.ChannelLayerNorm`), which takes any grid.

Across resolutions: the stencils are in grid units, so the model is NOT resolution invariant. On a
grid twice as fine its 3x3 operators see half the physical distance, and the same weights represent
a different operator (tests/models/test_mgno.py shows the outputs differ); train and evaluate on the same
resolution. Any grid size runs, odd ones included.
"""

from __future__ import annotations

import torch
from torch import nn

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.activations import make_activation
from oplearn.layers.multigrid import VCycle, check_padding_mode
from oplearn.layers.normalization import ChannelLayerNorm
from oplearn.models.operator import Hyperparameters, Operator, register


class MultigridLayer(nn.Module):
    """``sigma(N(V v) + b)``: a V-cycle, normalization, bias per channel, activation (the last two optional).

    Shapes: ``(batch, in_channels, *grid) -> (batch, out_channels, *grid)``.
    """

    def __init__(self, in_channels: int, out_channels: int, dim: int, levels: int, smoothing: tuple[int, int],
                 padding_mode: str, activation: str | None, normalize: bool):
        super().__init__()
        self.cycle = VCycle(in_channels, out_channels, dim, levels, smoothing, padding_mode)
        self.norm = ChannelLayerNorm(out_channels, elementwise_affine=False) if normalize else nn.Identity()
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.activation = make_activation(activation) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.cycle(x))
        return self.activation(y + self.bias.view(-1, *[1] * (y.ndim - 2)))


@register("mgno")
class MgNO(Operator):
    """Stacked multigrid layers on 1-, 2- or 3-D grids; hyperparameters in :class:`MgNO.Hyper`.

    Shapes: ``(batch, in_channels, *grid) -> (batch, out_channels, *grid)``, ``len(grid) == dim``.
    """

    geometries = frozenset({"grid"})

    class Hyper(Hyperparameters):
        width: int = 32
        """Channels between layers."""
        n_layers: int = 4
        """Number of multigrid layers (>= 1); the first takes the input channels, the last gives the outputs."""
        levels: int = 4
        """Grids per V-cycle (each coarsened by 2); every axis needs at least 2**(levels - 1) points."""
        smoothing: tuple[int, int] = (1, 1)
        """Smoothing steps (before, after) the coarse-grid correction on each level; the coarsest does both."""
        padding_mode: str = "zeros"
        """Boundary conditions of every convolution: "zeros" (Dirichlet-like), "reflect" or "circular" (periodic)."""
        activation: str = "gelu"
        """Name of the nonlinearity (gelu, relu, silu, tanh); the last layer has none."""
        normalization: bool = True
        """LayerNorm over the channels at every point after each V-cycle but the last (resolution-free)."""
        dim: int = 2
        """Spatial dimension of the grid (1, 2 or 3)."""

    def __init__(self, in_channels: int, out_channels: int, **hyper):
        super().__init__(in_channels, out_channels, **hyper)
        h = self.hyper
        if min(in_channels, out_channels, h.width, h.n_layers) < 1:
            raise ConfigError("in_channels, out_channels, width and n_layers must be positive")
        check_padding_mode(h.padding_mode)
        sizes = [in_channels] + [h.width] * (h.n_layers - 1) + [out_channels]
        self.layers = nn.ModuleList(
            MultigridLayer(n_in, n_out, h.dim, h.levels, h.smoothing, h.padding_mode,
                           activation=None if last else h.activation, normalize=h.normalization and not last)
            for n_in, n_out, last in zip(sizes[:-1], sizes[1:], [False] * (h.n_layers - 1) + [True]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.hyper.dim + 2 or x.shape[1] != self.in_channels:
            raise ShapeError(f"MgNO expects (batch, {self.in_channels}, {self.hyper.dim} spatial axes), "
                             f"got shape {tuple(x.shape)}")
        for layer in self.layers:
            x = layer(x)
        return x
