"""Adaptive Fourier neural operator (Guibas et al., ICLR 2022; the FourCastNet backbone).

    t_0 = E a                                      patch embedding: p x p patches -> tokens
    t'  = t_l + M_l(LN(t_l))                       AFNO mixer (global, FFT-based), l = 0..L-1
    t_{l+1} = t' + MLP_l(LN(t'))                   channel MLP per token
    u   = shuffle(H LN(t_L))                       head: each token -> p*p*out values

``E`` is a convolution with kernel and stride ``p`` that turns an ``(H, W)`` grid
into an ``(H/p, W/p)`` token grid of ``width`` channels; ``M_l`` is an
:class:`~oplearn.layers.afno.AFNOMixer` (which carries its own residual, so a
block adds the normalized tokens back twice, as FourCastNet's "double skip"
does); ``H`` is a linear map to ``p * p * out_channels`` channels per token and
``shuffle`` unfolds them into the token's ``p x p`` patch of the output grid.

Source idea: treat the input field as an image split into patches, as a vision
transformer does, but mix the patch tokens with the Fourier-domain AFNO mixer
instead of attention, so that the cost grows as ``N log N`` in the token count
and any token grid works with the same weights. Resolution follows from the
patches: a grid must be a multiple of ``patch_size`` on each axis
(``pad_to_patch=True`` zero-pads up to the next multiple and crops the output).

With ``grid=False`` and the default ``nonlinearity="modulus"`` the whole model
commutes with periodic shifts of the input by multiples of ``patch_size``
pixels (every part is either per token or the shift-equivariant mixer);
``grid=True`` (default, as in FNO) appends the coordinates, which tells the
model where the boundary is and gives that symmetry up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.activations import make_activation
from oplearn.layers.afno import AFNOMixer
from oplearn.layers.coordinates import append_coordinates
from oplearn.layers.normalization import ChannelLayerNorm
from oplearn.layers.pointwise import PointwiseLinear
from oplearn.models.operator import Hyperparameters, Operator, register


class AFNOBlock(nn.Module):
    """ViT-style block: ``t + M(LN t)``, then ``t + MLP(LN t)``; shapes ``(b, width, h, w)`` kept."""

    def __init__(self, width: int, mixer: AFNOMixer, mlp_ratio: float, activation: str):
        super().__init__()
        hidden = max(1, round(mlp_ratio * width))
        self.norm1 = ChannelLayerNorm(width)
        self.mixer = mixer
        self.norm2 = ChannelLayerNorm(width)
        self.mlp = nn.Sequential(PointwiseLinear(width, hidden), make_activation(activation),
                                 PointwiseLinear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


@register("afno")
class AFNO(Operator):
    """Adaptive Fourier neural operator on 2-D grids; hyperparameters in :class:`AFNO.Hyper`.

    Shapes: ``(batch, in_channels, H, W) -> (batch, out_channels, H, W)``.
    """

    geometries = frozenset({"grid"})

    class Hyper(Hyperparameters):
        patch_size: int = 4
        """Side ``p`` of the square patches that become tokens."""
        width: int = 64
        """Channels per token."""
        n_layers: int = 4
        """Number of AFNO blocks."""
        n_blocks: int = 4
        """Diagonal blocks of each mixer's complex MLP; must divide ``width``."""
        sparsity: float = 0.01
        """Soft-shrinkage threshold on the (orthonormal) Fourier coefficients."""
        hard_threshold_fraction: float = 1.0
        """Fraction of the wavenumber range each mixer keeps."""
        mlp_ratio: float = 2.0
        """Hidden width of the channel MLP as a multiple of ``width``."""
        nonlinearity: str = "modulus"
        """Mixer nonlinearity: "modulus" (phase-preserving, shift equivariant) or "componentwise"
        (the paper's real/imaginary-wise ReLU and shrinkage); see ``oplearn.layers.afno``."""
        activation: str = "gelu"
        """Nonlinearity of the channel MLP (gelu, relu, silu, tanh)."""
        grid: bool = True
        """Append the 2 grid coordinates to the input channels."""
        pad_to_patch: bool = False
        """Zero-pad grids that are not multiples of ``patch_size`` (and crop back)."""

    def __init__(self, in_channels: int, out_channels: int, **hyper):
        super().__init__(in_channels, out_channels, **hyper)
        h = self.hyper
        if min(in_channels, out_channels, h.patch_size, h.width, h.n_layers) < 1:
            raise ConfigError("in_channels, out_channels, patch_size, width and n_layers must be positive")
        if h.mlp_ratio <= 0:
            raise ConfigError(f"mlp_ratio must be positive, got {h.mlp_ratio}")
        p = h.patch_size
        self.embedding = nn.Conv2d(in_channels + (2 if h.grid else 0), h.width, kernel_size=p, stride=p)
        self.blocks = nn.ModuleList(
            AFNOBlock(h.width, AFNOMixer(h.width, h.n_blocks, h.sparsity, h.hard_threshold_fraction, h.nonlinearity),
                      h.mlp_ratio, h.activation)
            for _ in range(h.n_layers)
        )
        self.norm = ChannelLayerNorm(h.width)
        self.head = nn.Sequential(PointwiseLinear(h.width, out_channels * p * p), nn.PixelShuffle(p))

    def _padding(self, sizes: tuple[int, int]) -> tuple[int, int]:
        p = self.hyper.patch_size
        pads = tuple(-n % p for n in sizes)
        if any(pads) and not self.hyper.pad_to_patch:
            raise ShapeError(f"AFNO with patch_size={p} needs both grid sizes divisible by {p}, got "
                             f"{sizes}; use a grid that is a multiple of {p} or pass pad_to_patch=True")
        return pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(f"AFNO expects (batch, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        sizes = tuple(x.shape[2:])
        pads = self._padding(sizes)
        if self.hyper.grid:
            x = append_coordinates(x)
        if any(pads):
            x = F.pad(x, (0, pads[1], 0, pads[0]))
        tokens = self.embedding(x)
        for block in self.blocks:
            tokens = block(tokens)
        out = self.head(self.norm(tokens))
        return out[..., : sizes[0], : sizes[1]]
