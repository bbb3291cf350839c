"""Fourier coefficients of functions sampled at arbitrary points, and their evaluation at arbitrary points.

On the unit torus ``[0, 1)^d``, for the FNO's kept wavenumbers ``k`` (``modes = (m_1, ..., m_d)``:
``0..m-1`` then ``-m..-1`` on every axis but the last, ``0..m_d-1`` on the last, the layout of
:func:`oplearn.layers.spectral.forward_modes`):

    forward:  v_hat(k) = (1/N) sum_i v(z_i) exp(-2 pi i k . z_i)        over the N real points z_i
    inverse:  f(z) = Re sum_k w_k c(k) exp(2 pi i k . z),  w_k = 1 if k_d = 0 else 2

On the uniform grid ``z_j = j / n`` the forward sum is ``fftn / n^d`` at the kept modes and the inverse is
``n^d`` times :func:`~oplearn.layers.spectral.inverse_modes` (the real inverse DFT, which counts every
wavenumber with ``k_d > 0`` twice for its conjugate), so a band-limited real function ``f`` is recovered
exactly from its coefficients at any point. Both are direct sums (``O(N K)`` for ``K`` kept modes), run
``chunk_points`` points at a time, as real matrix products of ``cos`` and ``sin`` of the phases.

Shapes: values ``(B, C, N)`` at points ``(B, d, N)`` -> coefficients ``(B, C, 2m_1, ..., 2m_{d-1}, m_d)``
complex, and back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from oplearn.errors import ShapeError


def kept_wavenumbers(modes: Sequence[int], *, dtype=torch.float64, device=None) -> torch.Tensor:
    """``(d, K)`` the kept wavenumbers in the layout of the coefficients (row-major over the kept axes)."""
    axes = [torch.cat([torch.arange(m), torch.arange(-m, 0)]) for m in modes[:-1]] + [torch.arange(modes[-1])]
    grid = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([axis.reshape(-1) for axis in grid]).to(dtype=dtype, device=device)


def _kept_shape(modes: Sequence[int]) -> tuple[int, ...]:
    return tuple(2 * m for m in modes[:-1]) + (modes[-1],)


def _check(points: torch.Tensor, modes: Sequence[int], batch: int, n_points: int) -> None:
    if points.shape != (batch, len(modes), n_points):
        raise ShapeError(f"expected points (batch={batch}, d={len(modes)}, N={n_points}) for modes {tuple(modes)}, "
                         f"got {tuple(points.shape)}")


def nonuniform_forward(values: torch.Tensor, points: torch.Tensor, modes: Sequence[int],
                       mask: torch.Tensor | None = None, chunk_points: int = 4096) -> torch.Tensor:
    """``v_hat(k) = (1/N) sum_i v(z_i) exp(-2 pi i k . z_i)`` over each sample's real points.

    ``values (B, C, N)`` real at ``points (B, d, N)``, ``mask (B, N)`` True at real points (None: all),
    -> ``(B, C, *kept)`` complex.
    """
    batch, channels, n_points = values.shape
    _check(points, modes, batch, n_points)
    if values.dtype in (torch.float16, torch.bfloat16):  # autocast: the sums run in float32, as the FFTs do
        values = values.float()
    if mask is not None:
        values = torch.where(mask[:, None], values, 0.0)
        count = mask.sum(1).clamp(min=1).to(values.dtype)
    else:
        count = values.new_full((batch,), float(max(n_points, 1)))
    wavenumbers = kept_wavenumbers(modes, dtype=values.dtype, device=values.device)
    real = values.new_zeros(batch, channels, wavenumbers.shape[1])
    imaginary = torch.zeros_like(real)
    for start in range(0, n_points, chunk_points):
        z = points[:, :, start:start + chunk_points].to(values.dtype)
        phase = 2 * math.pi * torch.einsum("bdp,dk->bpk", z, wavenumbers)
        v = values[:, :, start:start + chunk_points]
        real = real + torch.bmm(v, torch.cos(phase))
        imaginary = imaginary - torch.bmm(v, torch.sin(phase))
    coefficients = torch.complex(real, imaginary) / count[:, None, None]
    return coefficients.reshape(batch, channels, *_kept_shape(modes))


def nonuniform_inverse(coefficients: torch.Tensor, points: torch.Tensor, modes: Sequence[int],
                       chunk_points: int = 4096) -> torch.Tensor:
    """``f(z) = Re sum_k w_k c(k) exp(2 pi i k . z)`` at ``points (B, d, N)``: ``(B, C, *kept)`` -> ``(B, C, N)``."""
    batch, channels = coefficients.shape[:2]
    if tuple(coefficients.shape[2:]) != _kept_shape(modes):
        raise ShapeError(f"coefficients for modes {tuple(modes)} have shape (B, C, {_kept_shape(modes)}), "
                         f"got {tuple(coefficients.shape)}")
    n_points = points.shape[2]
    _check(points, modes, batch, n_points)
    dtype = coefficients.real.dtype
    wavenumbers = kept_wavenumbers(modes, dtype=dtype, device=coefficients.device)
    weights = torch.where(wavenumbers[-1] == 0, 1.0, 2.0).to(dtype)
    flat = coefficients.reshape(batch, channels, -1) * weights
    outputs = []
    for start in range(0, n_points, chunk_points):
        z = points[:, :, start:start + chunk_points].to(dtype)
        phase = 2 * math.pi * torch.einsum("bdp,dk->bkp", z, wavenumbers)
        outputs.append(torch.bmm(flat.real, torch.cos(phase)) - torch.bmm(flat.imag, torch.sin(phase)))
    return torch.cat(outputs, dim=2) if outputs else coefficients.real.new_zeros(batch, channels, 0)
