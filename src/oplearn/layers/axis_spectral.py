"""Factorized Fourier layer (F-FNO, Tran et al., ICLR 2023): a sum of 1-D spectral convolutions, one per axis.

For ``v`` of shape ``(batch, in_channels, n_1, ..., n_d)``

    (K v)(x) = sum_i F_i^-1[ W_i(k) . (F_i v)(k) ](x),   k = 0..m_i-1,

where ``F_i`` is the real DFT along axis ``i`` only (every other axis left in space) and ``W_i(k)`` a learned
complex ``in x out`` matrix per kept wavenumber of that axis: ``in * out * sum_i m_i`` complex weights
instead of the FNO's ``in * out * 2^(d-1) * prod_i m_i``. Along each axis the DFT is unnormalized forward and
divides by ``n_i`` back, so a band-limited function gives the same output on every grid (as
:class:`~oplearn.layers.spectral.SpectralConv`). Complex weights are stored as real pairs (last axis 2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from oplearn.errors import ShapeError
from oplearn.layers.spectral import _TruncatedIRFFT, _TruncatedRFFT


class AxisSpectralConv(nn.Module):
    """Sum over the spatial axes of truncated 1-D Fourier convolutions along each axis.

    Args:
        in_channels, out_channels: channels of the input and output functions.
        modes: wavenumbers ``0..m_i-1`` kept along axis ``i``; its length is the dimension.

    Weights ``weight_pairs[i]``: ``(in, out, m_i, 2)`` (real and imaginary parts), variance ``1/(in*out)``
    per complex entry divided by the number of axes, so the summed layer has the gain of one axis.
    Shapes: ``(batch, in_channels, *spatial) -> (batch, out_channels, *spatial)``; axis ``i`` needs at
    least ``2 (m_i - 1)`` points.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: Sequence[int]):
        super().__init__()
        modes = tuple(int(m) for m in modes)
        if not 1 <= len(modes) <= 3 or min(modes) < 1:
            raise ShapeError(f"modes must be 1 to 3 positive integers, got {modes}")
        self.in_channels, self.out_channels, self.modes = in_channels, out_channels, modes
        scale = 1.0 / math.sqrt(2 * in_channels * out_channels * len(modes))
        self.weight_pairs = nn.ParameterList(
            nn.Parameter(scale * torch.randn(in_channels, out_channels, m, 2)) for m in modes)

    @property
    def dim(self) -> int:
        return len(self.modes)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, modes={self.modes}"

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ShapeError(f"AxisSpectralConv expects (batch, {self.in_channels}, {self.dim} spatial axes), "
                             f"got shape {tuple(x.shape)}")
        for axis, (n, m) in enumerate(zip(x.shape[2:], self.modes)):
            if n // 2 + 1 < m:
                raise ShapeError(f"spatial axis {axis} has {n} points; modes={m} needs at least {2 * (m - 1)}")

    def along_axis(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        """The 1-D spectral convolution along spatial axis ``axis`` (0-based) alone.

        The axis is moved last (a view) so that the truncated real transforms of :mod:`oplearn.layers.spectral`
        apply: their backward passes are single transforms from the ``m`` kept bins, with no zero-filled
        full spectrum.
        """
        n, m = x.shape[axis + 2], self.modes[axis]
        kept = _TruncatedRFFT.apply(x.movedim(axis + 2, -1), m)  # (b, in, *other axes, m)
        mixed = torch.einsum("bi...k,iok->bo...k", kept, torch.view_as_complex(self.weight_pairs[axis]))
        return _TruncatedIRFFT.apply(mixed, n).movedim(-1, axis + 2)  # the missing wavenumbers are zero

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        source = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # no half-precision FFTs
        out = self.along_axis(source, 0)
        for axis in range(1, self.dim):
            out = out + self.along_axis(source, axis)
        return out.to(x.dtype)
