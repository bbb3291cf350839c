"""Factorized Fourier neural operator (F-FNO; Tran et al., ICLR 2023).

    v_0 = P(a(x), x)                                  lifting, pointwise
    v_{l+1} = v_l + W_2 sigma(W_1 K_l v_l + b_1) + b_2    factorized blocks, l = 0..L-1
    u(x) = Q(v_L(x))                                  projection, pointwise MLP

``K_l`` is an :class:`~oplearn.layers.axis_spectral.AxisSpectralConv` (the sum over axes of 1-D spectral
convolutions), followed by the paper's feed-forward of two pointwise linear maps and a residual
connection. With ``share_weights`` every block uses the same ``K`` (as the paper's weight sharing); each
keeps its own feed-forward. Grid coordinates can be appended to the inputs and the domain zero-padded for
non-periodic problems, exactly as in :mod:`oplearn.models.fno` (:class:`~oplearn.layers.padding.DomainPadding`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.activations import make_activation
from oplearn.layers.axis_spectral import AxisSpectralConv
from oplearn.layers.coordinates import append_coordinates
from oplearn.layers.padding import DomainPadding
from oplearn.layers.pointwise import PointwiseLinear
from oplearn.models.operator import Hyperparameters, Operator, register


class FactorizedBlock(nn.Module):
    """``v -> v + FF(K v)`` with ``FF = W_2 sigma(W_1 . + b_1) + b_2`` pointwise; ``K`` is passed in, so
    blocks can share it. Shapes: ``(batch, width, *spatial) -> (batch, width, *spatial)``."""

    def __init__(self, width: int, hidden: int, activation: str):
        super().__init__()
        self.feedforward = nn.Sequential(PointwiseLinear(width, hidden), make_activation(activation),
                                         PointwiseLinear(hidden, width))

    def forward(self, v: torch.Tensor, spectral: AxisSpectralConv) -> torch.Tensor:
        return v + self.feedforward(spectral(v))


@register("ffno")
class FFNO(Operator):
    """Factorized FNO in 1, 2 or 3 dimensions; hyperparameters in :class:`FFNO.Hyper`.

    Shapes: ``(batch, in_channels, *spatial) -> (batch, out_channels, *spatial)``.
    """

    geometries = frozenset({"grid"})

    class Hyper(Hyperparameters):
        modes: tuple[int, ...]
        """Wavenumbers ``0..m-1`` kept by the 1-D spectral convolution along each axis; ``len(modes)`` is d."""
        width: int = 32
        """Channels inside the blocks."""
        n_layers: int = 4
        """Number of factorized blocks."""
        activation: str = "gelu"
        """Name of the nonlinearity (gelu, relu, silu, tanh)."""
        feedforward_factor: int = 2
        """Hidden channels of each block's feed-forward, as a multiple of ``width``."""
        share_weights: bool = False
        """One spectral layer for every block (the paper's weight sharing); each block keeps its feed-forward."""
        padding: float | tuple[float, ...] = 0.0
        """Zero padding at the end of each axis as a fraction of the domain length, one number or one per
        axis (as FNO's ``padding``, :class:`~oplearn.layers.padding.DomainPadding`)."""
        grid: bool = True
        """Append the d grid coordinates to the input channels."""
        projection_channels: int = 128
        """Hidden width of the projection MLP."""

    def __init__(self, in_channels: int, out_channels: int, **hyper):
        super().__init__(in_channels, out_channels, **hyper)
        h = self.hyper
        modes = h.modes
        if not 1 <= len(modes) <= 3 or min(modes) < 1:
            raise ConfigError(f"modes must list 1 to 3 positive integers (one per spatial axis), got {modes}")
        if min(h.width, h.n_layers, h.feedforward_factor, h.projection_channels, in_channels, out_channels) < 1:
            raise ConfigError("width, n_layers, feedforward_factor, projection_channels, in_channels and "
                              "out_channels must be positive")
        paddings = h.padding if isinstance(h.padding, tuple) else (h.padding,) * len(modes)
        if len(paddings) != len(modes) or not all(0.0 <= p < 1.0 for p in paddings):
            raise ConfigError(f"padding is a fraction of each axis in [0, 1), one number or one per axis "
                              f"({len(modes)}), got {h.padding}")
        self.modes = modes
        self.domain_padding = DomainPadding(paddings)
        self.lifting = PointwiseLinear(in_channels + (len(modes) if h.grid else 0), h.width)
        self.spectral = nn.ModuleList(AxisSpectralConv(h.width, h.width, modes)
                                      for _ in range(1 if h.share_weights else h.n_layers))
        self.blocks = nn.ModuleList(FactorizedBlock(h.width, h.feedforward_factor * h.width, h.activation)
                                    for _ in range(h.n_layers))
        self.projection = nn.Sequential(PointwiseLinear(h.width, h.projection_channels),
                                        make_activation(h.activation),
                                        PointwiseLinear(h.projection_channels, out_channels))

    @property
    def dim(self) -> int:
        return len(self.modes)

    def refine(self, resolution: Sequence[int]) -> dict:
        raise ConfigError("stage.recipe refine is implemented for fno; ffno does not release modes yet")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ShapeError(
                f"FFNO expects (batch, {self.in_channels}, {self.dim} spatial axes), got shape {tuple(x.shape)}")
        sizes = x.shape[2:]
        if self.hyper.grid:
            x = append_coordinates(x)
        v = self.domain_padding.pad(self.lifting(x))
        for i, block in enumerate(self.blocks):
            v = block(v, self.spectral[0 if self.hyper.share_weights else i])
        return self.projection(self.domain_padding.crop(v, sizes))
