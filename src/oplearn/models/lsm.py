"""Latent Spectral Models (Wu, Hu, Luo, Wang and Long, ICML 2023).

    e_0 = C_0(P(a(x), x)),  e_l = C_l(D_l e_{l-1})       encoder, l = 1..L (D_l: stride-2 convolution)
    s_l = NSB_l(e_l)                                    a neural spectral block at every scale
    h_L = s_L,  h_l = C'_l([U(h_{l+1}), s_l])            decoder (U: interpolation to the finer grid)
    u(x) = Q(h_0(x))                                    projection, pointwise MLP

``C`` are two 3x3 convolutions with activations, level ``l`` has ``width * 2^l`` channels, and
:class:`~oplearn.layers.latent_spectral.NeuralSpectralBlock` solves in a latent space of a few tokens
per patch with a sin/cos series. Strided convolutions halve odd sizes upwards (``ceil(n / 2)``) and the
decoder interpolates to each skip's exact size, so any grid of at least ``2^L`` points per axis works.

Resolution: a U-Net. Its stencils and patches are counted in points, so the model runs on any grid but
computes a different operator on another resolution (no zero-shot super-resolution); train and use it
on one grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.activations import make_activation
from oplearn.layers.coordinates import append_coordinates
from oplearn.layers.latent_spectral import NeuralSpectralBlock
from oplearn.layers.pointwise import PointwiseLinear
from oplearn.models.operator import Hyperparameters, Operator, register

INTERPOLATION = {1: "linear", 2: "bilinear", 3: "trilinear"}


def convolution_block(dim: int, in_channels: int, out_channels: int, activation: str) -> nn.Sequential:
    """Two 3x3 (3, 3x3x3) convolutions, each followed by the activation; sizes kept."""
    conv = getattr(nn, f"Conv{dim}d")
    return nn.Sequential(conv(in_channels, out_channels, 3, padding=1), make_activation(activation),
                         conv(out_channels, out_channels, 3, padding=1), make_activation(activation))


@register("lsm")
class LSM(Operator):
    """Latent spectral model on 1-, 2- or 3-D grids; hyperparameters in :class:`LSM.Hyper`.

    Shapes: ``(batch, in_channels, *spatial) -> (batch, out_channels, *spatial)``.
    """

    geometries = frozenset({"grid"})

    class Hyper(Hyperparameters):
        dim: int = 2
        """Spatial dimension d of the grids (1, 2 or 3)."""
        width: int = 32
        """Channels at the finest level; level l has ``width * 2^l``."""
        levels: int = 3
        """Halvings of the grid in the encoder (the U has ``levels + 1`` scales)."""
        n_tokens: int = 4
        """Latent tokens per patch in every neural spectral block."""
        n_basis: int = 12
        """Frequencies k = 1..n_basis of the sin/cos series in the latent space."""
        patch_size: int | tuple[int, ...] = 4
        """Points per patch along each axis (one number or one per axis); smaller grids use one patch per axis."""
        activation: str = "gelu"
        """Name of the nonlinearity (gelu, relu, silu, tanh)."""
        grid: bool = True
        """Append the d grid coordinates to the input channels."""
        projection_channels: int = 128
        """Hidden width of the projection MLP."""

    def __init__(self, in_channels: int, out_channels: int, **hyper):
        super().__init__(in_channels, out_channels, **hyper)
        h = self.hyper
        if h.dim not in INTERPOLATION:
            raise ConfigError(f"dim must be 1, 2 or 3, got {h.dim}")
        if min(h.width, h.n_tokens, h.n_basis, h.projection_channels, in_channels, out_channels) < 1 or h.levels < 0:
            raise ConfigError("width, n_tokens, n_basis, projection_channels and the channels must be positive, "
                              "levels >= 0")
        patch = h.patch_size if isinstance(h.patch_size, tuple) else (h.patch_size,) * h.dim
        if len(patch) != h.dim or min(patch) < 1:
            raise ConfigError(f"patch_size needs one positive number or {h.dim} (one per axis), got {h.patch_size}")
        conv = getattr(nn, f"Conv{h.dim}d")
        channels = [h.width * 2 ** level for level in range(h.levels + 1)]
        self.lifting = PointwiseLinear(in_channels + (h.dim if h.grid else 0), h.width)
        self.encoder = nn.ModuleList([convolution_block(h.dim, h.width, h.width, h.activation)])
        self.downsampling = nn.ModuleList()
        for coarse, fine in zip(channels[1:], channels[:-1]):
            self.downsampling.append(conv(fine, coarse, 3, stride=2, padding=1))
            self.encoder.append(convolution_block(h.dim, coarse, coarse, h.activation))
        self.spectral_blocks = nn.ModuleList(NeuralSpectralBlock(c, h.n_tokens, h.n_basis, patch) for c in channels)
        self.decoder = nn.ModuleList(convolution_block(h.dim, coarse + fine, fine, h.activation)
                                     for coarse, fine in zip(channels[1:], channels[:-1]))
        self.projection = nn.Sequential(PointwiseLinear(h.width, h.projection_channels), make_activation(h.activation),
                                        PointwiseLinear(h.projection_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hyper
        if x.ndim != h.dim + 2 or x.shape[1] != self.in_channels:
            raise ShapeError(
                f"LSM expects (batch, {self.in_channels}, {h.dim} spatial axes), got shape {tuple(x.shape)}")
        if min(x.shape[2:]) < 2 ** h.levels:
            raise ShapeError(f"LSM with levels={h.levels} needs at least {2 ** h.levels} points per axis, got grid "
                             f"{tuple(x.shape[2:])}: use a finer grid or fewer levels")
        if h.grid:
            x = append_coordinates(x)
        features = [self.encoder[0](self.lifting(x))]
        for down, block in zip(self.downsampling, self.encoder[1:]):
            features.append(block(down(features[-1])))
        scales = [spectral(f) for spectral, f in zip(self.spectral_blocks, features)]
        x = scales[-1]
        for level in reversed(range(h.levels)):
            skip = scales[level]
            x = F.interpolate(x, size=skip.shape[2:], mode=INTERPOLATION[h.dim], align_corners=True)
            x = self.decoder[level](torch.cat([x, skip], dim=1))
        return self.projection(x)
