"""Fourier layers whose output grid differs from the input grid, and the resamplings they pair with.

A function ``v`` sampled on an ``n``-point periodic grid (points ``j/n`` of the period, per axis)
maps to one on an ``m``-point grid:

    (K v)(x_m) = sum_{k kept} W(k) c_k(v) e^{2 pi i k . x_m},   c_k(v) = (1/prod(n)) sum_j v(x_j) e^{-2 pi i k . x_j},

the same truncated convolution as :class:`~oplearn.layers.SpectralConv`, only evaluated by the inverse
transform at the new size (scaled by ``prod(m) / prod(n)`` so that the coefficients are those of the
function, not of the grid). Its output is therefore the trigonometric polynomial of the kept modes,
and the output at size ``m`` equals the output at size ``n`` Fourier-interpolated to ``m``.

The pointwise path of a resampling block moves ``v`` itself to the new grid: :func:`fourier_resample`
(exact for wavenumbers below both grids' Nyquist frequency, the rest dropped) or :func:`linear_resample`
(periodic linear interpolation at the same points ``j/m``). Shapes: ``(batch, channels, *n) ->
(batch, channels, *m)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.spectral import SpectralConv, complex_channel_mix, forward_modes, inverse_modes


class ResamplingSpectralConv(SpectralConv):
    """Truncated Fourier convolution from one grid to another (weights and modes as SpectralConv).

    ``forward(x, sizes)``: ``(batch, in_channels, *n) -> (batch, out_channels, *sizes)``; ``sizes``
    None keeps the input grid, and the layer is then exactly a SpectralConv. Input and output grids
    must both hold the modes: every axis but the last at least ``2 m`` points, the last ``2 (m - 1)``.
    """

    def forward(self, x: torch.Tensor, sizes: Sequence[int] | None = None) -> torch.Tensor:
        self._check(x)
        in_sizes = tuple(x.shape[2:])
        sizes = in_sizes if sizes is None else tuple(int(n) for n in sizes)
        self._check_output(sizes)
        mixed = complex_channel_mix(forward_modes(x, self.modes), self.weight_pairs)
        if sizes != in_sizes:  # c_k of the function: forward_modes sums prod(n) points, the inverse divides by prod(m)
            mixed = mixed * (math.prod(sizes) / math.prod(in_sizes))
        return inverse_modes(mixed, self.modes, sizes).to(x.dtype)

    def _check_output(self, sizes: tuple[int, ...]) -> None:
        if len(sizes) != self.dim:
            raise ShapeError(f"{type(self).__name__} needs {self.dim} output sizes, got {sizes}")
        too_small = [axis for axis, (n, m) in enumerate(zip(sizes[:-1], self.modes[:-1])) if n < 2 * m]
        if too_small or sizes[-1] // 2 + 1 < self.modes[-1]:
            raise ShapeError(f"output grid {sizes} is too small for modes {self.modes}: every axis but the last "
                             f"needs at least 2 * modes points, the last 2 * (modes - 1)")


def fourier_resample(x: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Trigonometric interpolation of ``x (batch, channels, *n)`` onto ``sizes`` points per axis.

    Keeps the wavenumbers ``|k| <= (min(n, m) - 1) // 2`` of every axis (strictly below both grids'
    Nyquist frequency) with their function coefficients, drops the rest; exact for fields that are
    band-limited below both. The same grid returns ``x`` itself.
    """
    in_sizes, sizes = tuple(x.shape[2:]), tuple(int(n) for n in sizes)
    if sizes == in_sizes:
        return x
    dims = tuple(range(2, x.ndim))
    spectrum = torch.fft.rfftn(x.double() if x.dtype == torch.float64 else x.float(), dim=dims, norm="forward")
    for axis, (n, m) in enumerate(zip(in_sizes[:-1], sizes[:-1]), start=2):
        top = (min(n, m) - 1) // 2  # highest |k| kept
        gap = list(spectrum.shape)
        gap[axis] = m - 2 * top - 1
        spectrum = torch.cat([spectrum.narrow(axis, 0, top + 1), spectrum.new_zeros(gap),
                              spectrum.narrow(axis, n - top, top)], dim=axis)
    kept = (min(in_sizes[-1], sizes[-1]) - 1) // 2 + 1
    last = spectrum.narrow(-1, 0, kept)
    last = torch.cat([last, last.new_zeros(*last.shape[:-1], sizes[-1] // 2 + 1 - kept)], dim=-1)
    return torch.fft.irfftn(last, s=sizes, dim=dims, norm="forward").to(x.dtype)


def linear_resample(x: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Periodic linear interpolation of ``x (batch, channels, *n)`` at the points ``j n / m``, axis by axis.

    The points are those a Fourier layer evaluates on an ``m``-point grid of the same period, so the
    two paths of a block agree on where the output lives. The same grid returns ``x`` itself.
    """
    for axis, m in enumerate(sizes, start=2):
        n = x.shape[axis]
        if n == m:
            continue
        position = torch.arange(m, device=x.device, dtype=torch.float64) * (n / m)
        left = position.floor().long()
        fraction = (position - left).to(x.dtype).view(-1, *[1] * (x.ndim - 1 - axis))
        right = (left + 1) % n
        x = torch.lerp(x.index_select(axis, left), x.index_select(axis, right), fraction)
    return x


RESAMPLINGS = {"fourier": fourier_resample, "linear": linear_resample}


def resampling(name: str):
    """The resampling function ``name`` ("fourier" or "linear"), a one-line ConfigError otherwise."""
    if name not in RESAMPLINGS:
        raise ConfigError(f"unknown resample '{name}'; choose one of: {', '.join(RESAMPLINGS)}")
    return RESAMPLINGS[name]
