"""AFNO token mixer: a per-frequency, block-diagonal complex MLP between two FFTs.

For tokens ``x`` of shape ``(batch, channels, h, w)`` the mixer computes

    X = F x,   Y(k) = S_lambda( W_2 sigma(W_1 X(k)) )  for kept k,  Y(k) = 0 otherwise,
    out = F^-1 Y + x,

where ``F`` is the orthonormal 2-D real DFT over the token grid, ``W_1`` and
``W_2`` are complex block-diagonal ``channels x channels`` matrices (``n_blocks``
blocks) shared by every wavenumber, ``sigma`` a complex nonlinearity and
``S_lambda`` soft-shrinkage with threshold ``lambda`` (``sparsity``). Kept
wavenumbers are ``|k_1| <= f * (h // 2)`` and ``0 <= k_2 <= f * (w // 2)`` with
``f = hard_threshold_fraction``; ``f = 1`` keeps all of them. On the columns
``k_2 = 0`` (and ``k_2 = w/2`` for even ``w``), whose coefficients pair up as
complex conjugates, ``irfft2`` keeps the Hermitian part of ``Y``, as any real
output must.

Source idea (Guibas et al., "Adaptive Fourier Neural Operators", ICLR 2022):
a vision transformer mixes tokens with attention, which costs the square of the
token count. AFNO instead mixes tokens in the Fourier domain, as an FNO layer
does, but replaces the FNO's separate weight matrix per wavenumber with one
small MLP applied at every wavenumber. Sharing weights across frequencies makes
the parameter count independent of the grid, the block-diagonal structure
(like grouped attention heads) cuts the cost of the channel mixing, and
soft-shrinkage drives small Fourier coefficients to exactly zero so the mixer
adapts which modes it passes. The cost is that of the FFT, ``O(N log N)``.

Two nonlinearities, and why it matters for shift equivariance. Shifting the
token grid by ``s`` multiplies each coefficient by a phase,
``X(k) -> e^{-2 pi i k.s / n} X(k)``. A per-frequency map commutes with the
shift (so the mixer is a global convolution) exactly when it commutes with
multiplication by unit complex numbers. ``W_1`` and ``W_2`` do; the rest
decides:

* ``"modulus"`` (default): ``sigma(z) = z * sigmoid(|z| + b)`` with a learned
  real ``b`` per hidden channel, no additive complex biases, and the complex
  soft-shrinkage ``S(z) = max(|z| - lambda, 0) z / |z|`` (the proximal map of
  ``lambda |z|``). Both scale ``z`` by a function of ``|z|``, which a phase does
  not change, so the mixer commutes with every integer shift of the token grid.
* ``"componentwise"`` (the paper and FourCastNet): complex biases, ReLU and
  soft-shrinkage applied to the real and imaginary parts separately. Rotating
  ``z`` by a phase mixes its real and imaginary parts, so these do not commute
  with it (a bias commutes only with the phase 1); the mixer is then a
  per-frequency nonlinear map but not a convolution, and it is not shift
  equivariant. Kept for comparison with published results.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from oplearn.errors import ConfigError, ShapeError

NONLINEARITIES = ("modulus", "componentwise")


def complex_soft_shrink(z: torch.Tensor, threshold: float) -> torch.Tensor:
    """``max(|z| - t, 0) * z / |z|``: shrink the modulus by ``t``, keep the phase (zero below ``t``)."""
    modulus = z.abs()
    return z * (F.relu(modulus - threshold) / modulus.clamp_min(max(threshold, 1e-30)))


def componentwise_soft_shrink(z: torch.Tensor, threshold: float) -> torch.Tensor:
    """Soft-shrinkage of the real and the imaginary part separately (the AFNO paper's)."""
    return torch.view_as_complex(F.softshrink(torch.view_as_real(z), threshold))


def modulus_gate(z: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``z * sigmoid(|z| + b)``: a smooth, phase-preserving gate (``b`` broadcasts over ``z``)."""
    return z * torch.sigmoid(z.abs() + bias)


def componentwise_relu(z: torch.Tensor) -> torch.Tensor:
    """ReLU of the real and the imaginary part separately (the AFNO paper's)."""
    return torch.view_as_complex(F.relu(torch.view_as_real(z)))


def kept_frequencies(h: int, w: int, fraction: float, device=None) -> tuple[torch.Tensor, int]:
    """Rows and column count of the rfft2 grid ``(h, w // 2 + 1)`` that the mixer keeps.

    Returns the row indices with ``|k_1| <= fraction * (h // 2)`` (signed FFT order) and
    ``n_cols`` such that columns ``0..n_cols-1`` are ``k_2 <= fraction * (w // 2)``.
    """
    tolerance = 1e-9  # so that e.g. 0.5 * 8 keeps |k| = 4 despite rounding
    signed = torch.fft.fftfreq(h, d=1.0 / h, device=device).round().long()
    rows = torch.nonzero(signed.abs() <= fraction * (h // 2) + tolerance).flatten()
    n_cols = math.floor(fraction * (w // 2) + tolerance) + 1
    return rows, n_cols


class BlockComplexMLP(nn.Module):
    """Two complex linear maps with a nonlinearity between, block-diagonal over channels.

    ``out = W_2 sigma(W_1 z)`` (plus complex biases in "componentwise" mode), applied
    independently at every position of the trailing axes (the wavenumbers). Channel
    block ``j`` (channels ``j*s .. (j+1)*s - 1``, ``s = channels // n_blocks``) only sees
    block ``j``. Weights are stored as real pairs ``(n_blocks, s, s, 2)``.

    Shapes: ``(batch, channels, *freq)`` complex -> same.
    """

    def __init__(self, channels: int, n_blocks: int, nonlinearity: str = "modulus"):
        super().__init__()
        if nonlinearity not in NONLINEARITIES:
            raise ConfigError(f"unknown AFNO nonlinearity '{nonlinearity}'; choose one of: "
                              f"{', '.join(NONLINEARITIES)}")
        if n_blocks < 1 or channels % n_blocks:
            raise ConfigError(f"AFNO width {channels} must be divisible by n_blocks {n_blocks}; "
                              f"change one of them")
        self.channels, self.n_blocks, self.nonlinearity = channels, n_blocks, nonlinearity
        size = channels // n_blocks
        # E|w|^2 = 1/size per complex entry: each linear map roughly keeps the coefficients' scale.
        scale = 1.0 / math.sqrt(2 * size)
        self.weight1_pairs = nn.Parameter(scale * torch.randn(n_blocks, size, size, 2))
        self.weight2_pairs = nn.Parameter(scale * torch.randn(n_blocks, size, size, 2))
        if nonlinearity == "modulus":
            self.gate_bias = nn.Parameter(torch.zeros(n_blocks, size))
        else:
            self.bias1_pairs = nn.Parameter(scale * torch.randn(n_blocks, size, 2))
            self.bias2_pairs = nn.Parameter(scale * torch.randn(n_blocks, size, 2))

    @property
    def block_size(self) -> int:
        return self.channels // self.n_blocks

    def extra_repr(self) -> str:
        return f"{self.channels}, n_blocks={self.n_blocks}, nonlinearity={self.nonlinearity}"

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        n_freq_axes = z.ndim - 2
        z = z.unflatten(1, (self.n_blocks, self.block_size))  # (b, blocks, s, *freq)

        def per_block(values: torch.Tensor) -> torch.Tensor:  # (blocks, s[, 2]) -> broadcastable
            return values.reshape(*values.shape, *([1] * n_freq_axes))

        w1 = torch.view_as_complex(self.weight1_pairs.to(z.real.dtype))
        w2 = torch.view_as_complex(self.weight2_pairs.to(z.real.dtype))
        hidden = torch.einsum("bni...,nio->bno...", z, w1)
        if self.nonlinearity == "modulus":
            hidden = modulus_gate(hidden, per_block(self.gate_bias.to(z.real.dtype)))
            out = torch.einsum("bni...,nio->bno...", hidden, w2)
        else:
            bias1 = per_block(torch.view_as_complex(self.bias1_pairs.to(z.real.dtype)))
            bias2 = per_block(torch.view_as_complex(self.bias2_pairs.to(z.real.dtype)))
            hidden = componentwise_relu(hidden + bias1)
            out = torch.einsum("bni...,nio->bno...", hidden, w2) + bias2
        return out.flatten(1, 2)


class AFNOMixer(nn.Module):
    """Adaptive Fourier token mixer on a 2-D token grid (see the module docstring).

    Args:
        channels: token channels (the model's width).
        n_blocks: diagonal blocks of the complex MLP; must divide ``channels``.
        sparsity: soft-shrinkage threshold ``lambda`` on orthonormal Fourier coefficients.
        hard_threshold_fraction: fraction ``f`` of the wavenumber range kept, in ``[0, 1]``.
        nonlinearity: "modulus" (shift equivariant, default) or "componentwise" (the paper's).

    Shapes: ``(batch, channels, h, w) -> (batch, channels, h, w)``, any ``h, w >= 1``.
    """

    def __init__(self, channels: int, n_blocks: int = 4, sparsity: float = 0.01,
                 hard_threshold_fraction: float = 1.0, nonlinearity: str = "modulus"):
        super().__init__()
        if sparsity < 0:
            raise ConfigError(f"AFNO sparsity is a soft-shrinkage threshold >= 0, got {sparsity}")
        if not 0.0 <= hard_threshold_fraction <= 1.0:
            raise ConfigError(f"hard_threshold_fraction must lie in [0, 1] (1 keeps every mode), "
                              f"got {hard_threshold_fraction}")
        self.mlp = BlockComplexMLP(channels, n_blocks, nonlinearity)
        self.sparsity = float(sparsity)
        self.hard_threshold_fraction = float(hard_threshold_fraction)
        self.shrink = complex_soft_shrink if nonlinearity == "modulus" else componentwise_soft_shrink

    def extra_repr(self) -> str:
        return f"sparsity={self.sparsity}, hard_threshold_fraction={self.hard_threshold_fraction}"

    def spectral_part(self, x: torch.Tensor) -> torch.Tensor:
        """The mixer without its residual: ``F^-1 Y`` (see the module docstring)."""
        if x.ndim != 4 or x.shape[1] != self.mlp.channels:
            raise ShapeError(f"AFNOMixer expects tokens (batch, {self.mlp.channels}, h, w), "
                             f"got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        spectrum = torch.fft.rfft2(x, norm="ortho")
        rows, n_cols = kept_frequencies(h, w, self.hard_threshold_fraction, device=x.device)
        if len(rows) == h and n_cols >= spectrum.shape[-1]:
            mixed = self.shrink(self.mlp(spectrum), self.sparsity)
        else:
            kept = spectrum.index_select(2, rows)[..., :n_cols]
            mixed = torch.zeros_like(spectrum)
            mixed[:, :, rows, :n_cols] = self.shrink(self.mlp(kept), self.sparsity)
        return torch.fft.irfft2(mixed, s=(h, w), norm="ortho")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spectral_part(x) + x
