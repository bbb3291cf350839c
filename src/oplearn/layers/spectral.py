"""Fourier layer: a learned convolution applied to the lowest Fourier modes.

For an input ``v`` of shape ``(batch, in_channels, n_1, ..., n_d)`` the layer
computes

    (K v)(x) = F^-1[ W(k) . (F v)(k) ](x),   k in the kept modes,

where ``F`` is the real DFT over the ``d`` spatial axes, ``W(k)`` is a learned
complex ``in_channels x out_channels`` matrix for every kept wavenumber and all
other modes are set to zero. With ``modes = (m_1, ..., m_d)`` the kept
wavenumbers follow the FNO paper: ``0..m_i-1`` and ``-m_i..-1`` on every axis but
the last, ``0..m_d-1`` on the last (real-FFT) axis, so one layer has
``in * out * 2^(d-1) * prod(m)`` complex weights.

The DFT is unnormalized forward and divides by ``prod(n)`` on the way back, so
a band-limited function gives the same output at every grid size: the layer
acts on functions, not on grids.

Only the kept modes are ever computed ("pruned" FFT, :func:`forward_modes` and
:func:`inverse_modes`): the real FFT runs along the last axis and its first
``m_d`` bins are kept, then each other axis is transformed on that already
shrunken tensor and cut to its ``2 m_i`` wavenumbers; the inverse runs the same
way back. No full-size spectrum is materialised, and the backward pass of the
last-axis transform is a single short inverse FFT (PyTorch's own ``rfft``
backward zero-fills the whole spectrum and runs a full complex transform).
With ``n`` points per axis this costs one real FFT pass over the grid each way
plus transforms of only ``m_d/(n/2)`` of it on the other axes.

Complex weights are stored as real pairs (last axis of size 2) so that
optimizers, DDP all-reduce and safetensors see ordinary real tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import product

import torch
from torch import nn

from oplearn.errors import ShapeError

class SpectralConv(nn.Module):
    """Truncated Fourier convolution in 1, 2 or 3 dimensions.

    Args:
        in_channels: channels of the input function.
        out_channels: channels of the output function.
        modes: modes kept per spatial axis; its length is the dimension.

    Shapes: ``(batch, in_channels, *spatial) -> (batch, out_channels, *spatial)``.
    Every axis but the last needs at least ``2 * m`` points, the last at least
    ``2 * (m - 1)``.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: Sequence[int]):
        super().__init__()
        modes = tuple(int(m) for m in modes)
        if not 1 <= len(modes) <= 3 or min(modes) < 1:
            raise ShapeError(f"modes must be 1 to 3 positive integers, got {modes}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.modes = modes
        kept = tuple(2 * m for m in modes[:-1]) + (modes[-1],)
        # Variance 1/(in*out) per complex entry keeps the layer's gain near 1.
        scale = 1.0 / math.sqrt(2 * in_channels * out_channels)
        self.weight_pairs = nn.Parameter(scale * torch.randn(in_channels, out_channels, *kept, 2))

    @property
    def dim(self) -> int:
        return len(self.modes)

    @property
    def weight(self) -> torch.Tensor:
        """Complex weights ``(in, out, 2*m_1, ..., 2*m_{d-1}, m_d)``."""
        return torch.view_as_complex(self.weight_pairs)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, modes={self.modes}"

    def with_modes(self, modes: Sequence[int]) -> "SpectralConv":
        """A copy keeping at least as many modes per axis: old weights in place, new modes zero.

        The copy computes the same function until its new weights are trained.
        """
        modes = tuple(int(m) for m in modes)
        if len(modes) != self.dim or any(new < old for new, old in zip(modes, self.modes)):
            raise ShapeError(f"with_modes needs {self.dim} mode counts each >= {self.modes}, got {modes}")
        wider = SpectralConv(self.in_channels, self.out_channels, modes).to(self.weight_pairs)
        weights = torch.zeros_like(wider.weight_pairs)
        # Non-last axes hold wavenumbers 0..m-1 then -m..-1: copy each block to the matching end.
        blocks = [((slice(0, m), slice(0, m)), (slice(m, 2 * m), slice(2 * n - m, 2 * n)))
                  for m, n in zip(self.modes[:-1], modes[:-1])]
        last = slice(0, self.modes[-1])
        for choice in product(*blocks):
            source = (..., *[old for old, _ in choice], last, slice(None))
            target = (..., *[new for _, new in choice], last, slice(None))
            weights[target] = self.weight_pairs.detach()[source]
        with torch.no_grad():
            wider.weight_pairs.copy_(weights)
        return wider

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ShapeError(
                f"{type(self).__name__} expects (batch, {self.in_channels}, {self.dim} spatial axes), "
                f"got shape {tuple(x.shape)}"
            )
        sizes = x.shape[2:]
        for axis, (n, m) in enumerate(zip(sizes[:-1], self.modes[:-1])):
            if n < 2 * m:
                raise ShapeError(f"spatial axis {axis} has {n} points; modes={m} needs at least {2 * m}")
        if sizes[-1] // 2 + 1 < self.modes[-1]:
            raise ShapeError(
                f"last spatial axis has {sizes[-1]} points; modes={self.modes[-1]} needs at least "
                f"{2 * (self.modes[-1] - 1)}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        kept = forward_modes(x, self.modes)
        mixed = complex_channel_mix(kept, self.weight_pairs)
        return inverse_modes(mixed, self.modes, tuple(x.shape[2:])).to(x.dtype)  # bf16 in, bf16 out under autocast


def complex_channel_mix(kept: torch.Tensor, weight_pairs: torch.Tensor) -> torch.Tensor:
    """``out[b, o, k] = sum_i kept[b, i, k] W[i, o, k]`` for every kept mode ``k``.

    Computed as one real batched GEMM per mode, ``[x_re, x_im] @ [[W_re, W_im], [-W_im, W_re]]``,
    which is several times faster on CPU than a complex einsum (and avoids complex autograd).
    Shapes: kept ``(b, i, *K)`` complex, weight_pairs ``(i, o, *K, 2)`` real -> ``(b, o, *K)`` complex.
    """
    batch, in_channels, *kept_shape = kept.shape
    out_channels = weight_pairs.shape[1]
    x = torch.view_as_real(kept).flatten(2, -2)  # (b, i, M, 2)
    n_modes = x.shape[2]
    x = x.permute(2, 0, 3, 1).reshape(n_modes, batch, 2 * in_channels)  # rows [re..., im...]
    w = weight_pairs.to(x.dtype).flatten(2, -2)  # (i, o, M, 2)
    w_re, w_im = w[..., 0].permute(2, 0, 1), w[..., 1].permute(2, 0, 1)  # (M, i, o)
    block = torch.cat([torch.cat([w_re, w_im], dim=2), torch.cat([-w_im, w_re], dim=2)], dim=1)
    # Under autocast the GEMM runs in half precision; the spectrum goes back to the input's precision.
    y = torch.bmm(x, block).to(x.dtype).reshape(n_modes, batch, 2, out_channels).permute(1, 3, 0, 2)
    return torch.view_as_complex(y.contiguous()).reshape(batch, out_channels, *kept_shape)


def forward_modes(x: torch.Tensor, modes: Sequence[int]) -> torch.Tensor:
    """The kept Fourier coefficients of a real field, ``(b, c, n_1, ..., n_d) -> (b, c, 2m_1, ..., 2m_{d-1}, m_d)``.

    Equal to ``rfftn(x)`` restricted to the kept wavenumbers (non-negative block then
    negative block on every axis but the last), computed without the full spectrum.
    Half-precision inputs (autocast) are transformed in float32.
    """
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    spectrum = _TruncatedRFFT.apply(x, modes[-1])
    for axis in range(x.ndim - 2, 1, -1):  # every transform runs on a tensor already cut on the later axes
        m, n = modes[axis - 2], spectrum.shape[axis]
        spectrum = torch.fft.fft(spectrum, dim=axis)
        spectrum = torch.cat([spectrum.narrow(axis, 0, m), spectrum.narrow(axis, n - m, m)], dim=axis)
    return spectrum


def inverse_modes(kept: torch.Tensor, modes: Sequence[int], sizes: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`forward_modes` with zeros for every other wavenumber: ``irfftn`` on ``sizes``.

    Each non-last axis is zero-filled to its length and inverted on a tensor that is
    still only ``m_d`` wide on the last axis; the last axis is inverted from its
    ``m_d`` bins directly.
    """
    for axis, (m, n) in enumerate(zip(modes[:-1], sizes[:-1]), start=2):
        gap = list(kept.shape)
        gap[axis] = n - 2 * m
        kept = torch.cat([kept.narrow(axis, 0, m), kept.new_zeros(gap), kept.narrow(axis, m, m)], dim=axis)
        kept = torch.fft.ifft(kept, dim=axis)
    return _TruncatedIRFFT.apply(kept, sizes[-1])


def _edge_weights(m: int, n: int, inner: float, edge: float, like: torch.Tensor) -> torch.Tensor:
    """``(m,)`` real weights: ``edge`` at wavenumber 0 (and n/2 if kept), ``inner`` elsewhere.

    A real signal's one-sided spectrum counts every bin twice except 0 and the Nyquist bin n/2.
    """
    weights = torch.full((m,), inner, dtype=like.real.dtype, device=like.device)
    weights[0] = edge
    if n % 2 == 0 and m == n // 2 + 1:
        weights[-1] = edge
    return weights


class _TruncatedRFFT(torch.autograd.Function):
    """``rfft(x)[..., :m]`` on the last axis, ``(..., n) -> (..., m)``.

    The adjoint of ``y_k = sum_j x_j e^{-2 pi i k j / n}`` (k < m) is
    ``x_j = Re sum_k y_k e^{2 pi i k j / n} = (n/2) irfft(c * y)`` with ``c = 2`` at the edge bins.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, m: int) -> torch.Tensor:
        return torch.fft.rfft(x, dim=-1).narrow(-1, 0, m)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.n, ctx.m = inputs[0].shape[-1], inputs[1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        weights = _edge_weights(ctx.m, ctx.n, ctx.n / 2, ctx.n, grad)
        return torch.fft.irfft(grad * weights, n=ctx.n, dim=-1), None

    @staticmethod
    def jvp(ctx, tangent: torch.Tensor, _):
        return torch.fft.rfft(tangent, dim=-1).narrow(-1, 0, ctx.m)


class _TruncatedIRFFT(torch.autograd.Function):
    """``irfft(y, n)`` on the last axis from ``m`` one-sided bins, ``(..., m) -> (..., n)``.

    Its adjoint is ``(c/n) * rfft(g)[..., :m]`` with ``c = 1`` at the edge bins and 2 elsewhere.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(kept: torch.Tensor, n: int) -> torch.Tensor:
        return torch.fft.irfft(kept, n=n, dim=-1)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.m, ctx.n = inputs[0].shape[-1], inputs[1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        weights = _edge_weights(ctx.m, ctx.n, 2 / ctx.n, 1 / ctx.n, grad)
        return torch.fft.rfft(grad, dim=-1).narrow(-1, 0, ctx.m) * weights, None

    @staticmethod
    def jvp(ctx, tangent: torch.Tensor, _):
        return torch.fft.irfft(tangent, n=ctx.n, dim=-1)
