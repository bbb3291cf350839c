"""Truncated real spectral transforms of grid functions: the DCT-II / DCT-III pair and the real DFT.

Two families, both computed with ``torch.fft`` (no SciPy), both keeping only the lowest modes:

* ``dct``, for non-periodic data: the orthonormal DCT-II along one axis by Makhoul's reordering,
  ``v = (x_0, x_2, x_4, ..., x_3, x_1)``, ``X_k = Re(e^{-i pi k / 2n} rfft(v)_k)``, and its inverse
  (DCT-III) by the reverse steps. :func:`dct` and :func:`idct` equal ``scipy.fft.dct(x, 2, norm="ortho")``
  and ``scipy.fft.idct(x, 2, norm="ortho")`` and need only one real FFT of length ``n``.
* ``dft``, for periodic data: the kept coefficients of ``rfftn``, the FNO convention of
  :mod:`oplearn.layers.spectral` (``2 m_i`` wavenumbers on every axis but the last, ``m_d`` on the last).

:func:`forward_transform` and :func:`inverse_transform` scale the coefficients so that they do not depend
on the grid: they are the coefficients of the function in a basis orthonormal in ``L^2([0, 1]^d)``, so
Parseval reads ``sum_k |c_k|^2 = mean_x |u(x)|^2``. For the DFT the grid is ``j/n`` and
``u(x) = sum_k c_k e^{2 pi i k.x}``; for the DCT the grid is the cell centres ``(j + 1/2)/n`` and
``u(x) = sum_k c_k prod_i b_{k_i}(x_i)`` with ``b_0 = 1``, ``b_k = sqrt(2) cos(pi k x)``. A function
band-limited to the kept modes therefore has the same coefficients on every grid that holds them, and the
inverse transform evaluates the same function on any grid: a model acting on these coefficients acts on
functions. Shapes: ``(batch, channels, n_1, ..., n_d) <-> (batch, channels, *kept)`` with ``kept``
from :func:`kept_shape`; the DFT coefficients are complex, the DCT coefficients real.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from oplearn.errors import ShapeError
from oplearn.layers.spectral import forward_modes, inverse_modes

TRANSFORMS = ("dft", "dct")


def _reorder(n: int, device) -> torch.Tensor:
    """Makhoul's permutation: even indices ascending, then odd indices descending."""
    return torch.cat([torch.arange(0, n, 2, device=device), torch.arange(1, n, 2, device=device).flip(0)])


def _twiddle(m: int, n: int, like: torch.Tensor) -> torch.Tensor:
    """``e^{-i pi k / 2n}`` for ``k < m``, complex of ``like``'s precision."""
    dtype = torch.float64 if like.dtype in (torch.float64, torch.complex128) else torch.float32
    angle = -math.pi * torch.arange(m, dtype=dtype, device=like.device) / (2 * n)
    return torch.polar(torch.ones_like(angle), angle)


def _ortho_scale(m: int, n: int, like: torch.Tensor) -> torch.Tensor:
    """The orthonormal DCT-II factors of ``2 sum x cos(...)``: ``sqrt(1/4n)`` at k = 0, ``sqrt(1/2n)`` after."""
    scale = torch.full((m,), math.sqrt(1 / (2 * n)), dtype=like.dtype, device=like.device)
    scale[0] = math.sqrt(1 / (4 * n))
    return scale


def dct(x: torch.Tensor, dim: int = -1, m: int | None = None) -> torch.Tensor:
    """The first ``m`` (default all) orthonormal DCT-II coefficients of ``x`` along ``dim``.

    ``X_k = f_k 2 sum_j x_j cos(pi k (2j + 1) / 2n)``, ``f_0 = sqrt(1/4n)``, ``f_k = sqrt(1/2n)``:
    ``(..., n, ...) -> (..., m, ...)``.
    """
    x = x.movedim(dim, -1)
    n = x.shape[-1]
    m = n if m is None else m
    if not 1 <= m <= n:
        raise ShapeError(f"dct keeps 1 to {n} coefficients of an axis of {n} points, asked for {m}")
    spectrum = torch.fft.rfft(x.index_select(-1, _reorder(n, x.device)), dim=-1)
    half = spectrum.shape[-1]
    if m > half:  # the upper half: rfft(v)_k = conj(rfft(v)_{n-k}) for real v
        upper = torch.arange(half, m, device=x.device)
        spectrum = torch.cat([spectrum, spectrum.index_select(-1, n - upper).conj()], dim=-1)
    else:
        spectrum = spectrum.narrow(-1, 0, m)
    coefficients = 2 * (spectrum * _twiddle(m, n, spectrum)).real * _ortho_scale(m, n, x)
    return coefficients.movedim(-1, dim)


def idct(coefficients: torch.Tensor, dim: int = -1, n: int | None = None) -> torch.Tensor:
    """Inverse of :func:`dct` (the orthonormal DCT-III) on ``n`` points, the missing coefficients zero.

    ``(..., m, ...) -> (..., n, ...)``, ``n >= m`` (default ``m``).
    """
    c = coefficients.movedim(dim, -1)
    m = c.shape[-1]
    n = m if n is None else n
    if n < m:
        raise ShapeError(f"idct needs at least as many points as coefficients, got {n} points for {m}")
    half = n // 2 + 1
    # Y_k = X_k / (2 f_k) is the unnormalized sum; V_k = e^{i pi k / 2n} (Y_k - i Y_{n-k}), Y_n = 0.
    y = c / (2 * _ortho_scale(m, n, c))
    low = y.narrow(-1, 0, min(m, half))
    if low.shape[-1] < half:
        low = torch.cat([low, low.new_zeros(*low.shape[:-1], half - low.shape[-1])], dim=-1)
    mirrored = torch.zeros_like(low)
    k = torch.arange(min(max(1, n - m + 1), half), half, device=c.device)  # Y_{n-k} is kept only where n - k < m
    if len(k):
        mirrored = mirrored.index_copy(-1, k, y.index_select(-1, n - k))
    spectrum = torch.complex(low, -mirrored) * _twiddle(half, n, low).conj()
    v = torch.fft.irfft(spectrum, n=n, dim=-1)
    x = v.index_select(-1, torch.argsort(_reorder(n, c.device)))
    return x.movedim(-1, dim)


def kept_shape(transform: str, modes: Sequence[int]) -> tuple[int, ...]:
    """The coefficient grid of ``modes``: ``modes`` for the DCT, ``(2m_1, ..., 2m_{d-1}, m_d)`` for the DFT."""
    if transform == "dct":
        return tuple(modes)
    return tuple(2 * m for m in modes[:-1]) + (modes[-1],)


def check_grid_holds_modes(transform: str, sizes: Sequence[int], modes: Sequence[int]) -> None:
    """A one-line ShapeError unless a ``sizes`` grid holds the ``modes`` of ``transform``."""
    for axis, (n, m) in enumerate(zip(sizes, modes)):
        if transform == "dct":
            need = m
        elif axis < len(modes) - 1:
            need = 2 * m
        else:
            need = 2 * (m - 1)
        if n < max(need, 1):
            raise ShapeError(f"spatial axis {axis} has {n} points; transform={transform} with modes={m} "
                             f"needs at least {need}: use a finer grid or fewer modes")


def forward_transform(x: torch.Tensor, transform: str, modes: Sequence[int]) -> torch.Tensor:
    """The kept, grid-independent coefficients of ``x``: ``(b, c, *sizes) -> (b, c, *kept_shape)``.

    ``dft``: complex, ``rfftn(x) / prod(sizes)`` at the kept wavenumbers; ``dct``: real,
    ``dct(x) / sqrt(n)`` per axis (orthonormal in ``L^2([0, 1])``, see the module docstring).
    """
    sizes = x.shape[2:]
    if x.dtype in (torch.float16, torch.bfloat16):  # torch.fft has no half-precision transforms of any size
        x = x.float()
    if transform == "dft":
        return forward_modes(x, modes) / math.prod(sizes)
    for axis in range(x.ndim - 1, 1, -1):  # last axis first: each DCT runs on an already truncated tensor
        n = x.shape[axis]
        x = dct(x, dim=axis, m=modes[axis - 2]) / math.sqrt(n)
    return x


def inverse_transform(coefficients: torch.Tensor, transform: str, modes: Sequence[int],
                      sizes: Sequence[int]) -> torch.Tensor:
    """The function with these coefficients on a ``sizes`` grid, every other mode zero (inverse of
    :func:`forward_transform`): ``(b, c, *kept_shape) -> (b, c, *sizes)``, real."""
    if transform == "dft":
        return inverse_modes(coefficients, modes, tuple(sizes)) * math.prod(sizes)
    x = coefficients
    for axis in range(2, x.ndim):  # first axis first: each DCT-III runs on a tensor still truncated after it
        n = sizes[axis - 2]
        x = idct(x, dim=axis, n=n) * math.sqrt(n)
    return x
