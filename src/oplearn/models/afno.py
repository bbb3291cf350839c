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
from oplearn.layers.afno import AFNOMixer
from oplearn.layers.pointwise import PointwiseLinear
from oplearn.models.fno import grid_coordinates, make_activation


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of a channel-first tensor ``(batch, channels, *spatial)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


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


class AFNO(nn.Module):
    """Adaptive Fourier neural operator on 2-D grids.

    Args:
        in_channels, out_channels: channels of input and output functions.
        patch_size: side ``p`` of the square patches that become tokens.
        width: channels per token.
        n_layers: number of AFNO blocks.
        n_blocks: diagonal blocks of each mixer's complex MLP; must divide ``width``.
        sparsity: soft-shrinkage threshold on the (orthonormal) Fourier coefficients.
        hard_threshold_fraction: fraction of the wavenumber range each mixer keeps.
        mlp_ratio: hidden width of the channel MLP as a multiple of ``width``.
        nonlinearity: "modulus" (phase-preserving, shift equivariant) or "componentwise"
            (the paper's real/imaginary-wise ReLU and shrinkage); see oplearn.layers.afno.
        activation: nonlinearity of the channel MLP (gelu, relu, silu, tanh).
        grid: append the 2 grid coordinates to the input channels.
        pad_to_patch: zero-pad grids that are not multiples of ``patch_size`` (and crop back).

    Shapes: ``(batch, in_channels, H, W) -> (batch, out_channels, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        patch_size: int = 4,
        width: int = 64,
        n_layers: int = 4,
        n_blocks: int = 4,
        sparsity: float = 0.01,
        hard_threshold_fraction: float = 1.0,
        mlp_ratio: float = 2,
        nonlinearity: str = "modulus",
        activation: str = "gelu",
        grid: bool = True,
        pad_to_patch: bool = False,
    ):
        super().__init__()
        if min(in_channels, out_channels, patch_size, width, n_layers) < 1:
            raise ConfigError("in_channels, out_channels, patch_size, width and n_layers must be positive")
        if mlp_ratio <= 0:
            raise ConfigError(f"mlp_ratio must be positive, got {mlp_ratio}")
        self.in_channels, self.out_channels, self.patch_size = in_channels, out_channels, patch_size
        self.grid, self.pad_to_patch = grid, pad_to_patch
        p = patch_size
        self.embedding = nn.Conv2d(in_channels + (2 if grid else 0), width, kernel_size=p, stride=p)
        self.blocks = nn.ModuleList(
            AFNOBlock(width, AFNOMixer(width, n_blocks, sparsity, hard_threshold_fraction, nonlinearity),
                      mlp_ratio, activation)
            for _ in range(n_layers)
        )
        self.norm = ChannelLayerNorm(width)
        self.head = nn.Sequential(PointwiseLinear(width, out_channels * p * p), nn.PixelShuffle(p))

    def _padding(self, sizes: tuple[int, int]) -> tuple[int, int]:
        p = self.patch_size
        pads = tuple(-n % p for n in sizes)
        if any(pads) and not self.pad_to_patch:
            raise ShapeError(f"AFNO with patch_size={p} needs both grid sizes divisible by {p}, got "
                             f"{sizes}; use a grid that is a multiple of {p} or pass pad_to_patch=True")
        return pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(f"AFNO expects (batch, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        sizes = tuple(x.shape[2:])
        pads = self._padding(sizes)
        if self.grid:
            coords = grid_coordinates(sizes, dtype=x.dtype, device=x.device)
            x = torch.cat([x, coords.expand(x.shape[0], *coords.shape)], dim=1)
        if any(pads):
            x = F.pad(x, (0, pads[1], 0, pads[0]))
        tokens = self.embedding(x)
        for block in self.blocks:
            tokens = block(tokens)
        out = self.head(self.norm(tokens))
        return out[..., : sizes[0], : sizes[1]]
