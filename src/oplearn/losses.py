"""Losses between functions sampled on a grid.

All losses take ``(batch, channels, *spatial)`` tensors and average a
per-sample value over the batch.

Sobolev norms are computed exactly on the periodic grid through Parseval's
identity. With ``N`` grid points on ``[0, 1]^d`` and Fourier coefficients
``c_k = DFT(u)_k / N`` (integer wavenumbers ``k``),

    ||u||_{H^s}^2 = sum_k (1 + 4 pi^2 |k|^2)^s |c_k|^2,

so ``s = 0`` gives the mean square of ``u`` over the grid (the L2 norm on the
unit cube under the trapezoidal rule). The derivative ``d/dx`` multiplies
``c_k`` by ``2 pi i k``, hence the ``4 pi^2`` factor: ``s = 1`` is ``mean(u^2) +
mean(|grad u|^2)``. A band-limited function has the same norm on every grid
that resolves it. Negative ``s`` damps high frequencies, so ``H^-1`` weights
errors at low wavenumbers most.

Spectral-Refiner (Cao, Brarda, Li, Xu, 2024) uses this: after ordinary
training, the last spectral layer is freed from its mode truncation and
fine-tuned with a negative-order Sobolev loss. Because the ``H^-1`` norm
barely sees the high-frequency noise that a truncated operator cannot fit,
the fine-tuning spends its effort on the large scales, where the error that
matters for the solution lives, instead of chasing the unresolvable tail.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch

from oplearn.errors import ConfigError, ShapeError


def relative_lp_loss(prediction: torch.Tensor, target: torch.Tensor, p: float = 2.0,
                     reduction: str = "mean") -> torch.Tensor:
    """Per-sample relative error ``||prediction - target||_p / ||target||_p``.

    Norms are over all channels and grid points of a sample (the grid spacing
    cancels in the ratio). ``reduction``: ``"mean"``, ``"sum"`` or ``"none"``
    (a ``(batch,)`` tensor).
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    difference = torch.linalg.vector_norm((prediction - target).flatten(1), ord=p, dim=1)
    scale = torch.linalg.vector_norm(target.flatten(1), ord=p, dim=1)
    per_sample = difference / scale.clamp_min(torch.finfo(scale.dtype).tiny)
    if reduction == "none":
        return per_sample
    if reduction == "sum":
        return per_sample.sum()
    return per_sample.mean()


def half_spectrum_energy(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Parseval energy of every real-FFT mode of a channel-first field.

    Args:
        u: real ``(batch, channels, *spatial)`` with 1 to 3 spatial axes on ``[0, 1]^d``.

    Returns:
        ``(k_squared, energy)``: ``|k|^2`` for every mode of the half spectrum,
        shape ``(*spatial[:-1], spatial[-1] // 2 + 1)``, and ``energy`` of shape
        ``(batch, channels, *that)`` with ``energy.sum(spatial axes) ==
        mean(u^2 over the grid)`` exactly. Modes of the last axis that stand
        for a conjugate pair (all but 0 and, for even sizes, the Nyquist
        mode) carry twice ``|c_k|^2``.
    """
    if u.is_complex() or not 3 <= u.dim() <= 5:
        raise ShapeError(f"expected a real (batch, channels, *spatial) tensor with 1 to 3 spatial axes, "
                         f"got {'complex ' if u.is_complex() else ''}shape {tuple(u.shape)}")
    sizes = u.shape[2:]
    axes = tuple(range(2, u.dim()))
    coefficients = torch.fft.rfftn(u, dim=axes, norm="forward")  # c_k = DFT(u)_k / N
    energy = coefficients.real.square() + coefficients.imag.square()
    last = sizes[-1]
    pair_weight = torch.full((last // 2 + 1,), 2.0, dtype=energy.dtype, device=u.device)
    pair_weight[0] = 1.0
    if last % 2 == 0:
        pair_weight[-1] = 1.0
    energy = energy * pair_weight
    k_squared = torch.zeros(energy.shape[2:], dtype=energy.dtype, device=u.device)
    for position, size in enumerate(sizes):
        if position == len(sizes) - 1:
            k = torch.fft.rfftfreq(size, d=1.0 / size, dtype=energy.dtype, device=u.device)
        else:
            k = torch.fft.fftfreq(size, d=1.0 / size, dtype=energy.dtype, device=u.device)
        shape = [1] * len(sizes)
        shape[position] = -1
        k_squared = k_squared + k.reshape(shape).square()
    return k_squared, energy


def sobolev_norm(u: torch.Tensor, s: float, seminorm: bool = False, squared: bool = False) -> torch.Tensor:
    """Per-sample ``H^s`` norm on the periodic unit cube, exact on the grid.

    ``||u||_{H^s}^2 = sum_k (1 + 4 pi^2 |k|^2)^s |c_k|^2`` over all channels,
    with ``c_k`` the DFT divided by the number of grid points (see the module
    docstring). ``seminorm=True`` uses ``(4 pi^2 |k|^2)^s`` instead and skips
    ``k = 0``; it needs ``s >= 0``.

    Args:
        u: real ``(batch, channels, *spatial)``, 1 to 3 spatial axes.
        s: the order; any real number.
        seminorm: the homogeneous seminorm ``|u|_{H^s}`` instead of the norm.
        squared: return the squared norm (avoids the square root's infinite slope at 0).

    Returns:
        ``(batch,)``.
    """
    k_squared, energy = half_spectrum_energy(u)
    frequency_squared = (4 * math.pi ** 2) * k_squared
    if seminorm:
        if s < 0:
            raise ConfigError(f"the H^s seminorm needs s >= 0 (got s = {s}); use the full norm for negative s")
        weight = frequency_squared.pow(s) * (k_squared > 0)  # 0^0 = 1 in torch, so mask k = 0
    else:
        weight = (1 + frequency_squared).pow(s)
    squared_norm = (energy * weight).flatten(1).sum(dim=1)
    return squared_norm if squared else squared_norm.sqrt()


def relative_sobolev_loss(prediction: torch.Tensor, target: torch.Tensor, s: float,
                          reduction: str = "mean") -> torch.Tensor:
    """Per-sample relative error ``||prediction - target||_{H^s} / ||target||_{H^s}``.

    Shapes ``(batch, channels, *spatial)`` for both; ``reduction`` as in
    :func:`relative_lp_loss`. The error's norm is computed from its square so
    that the gradient is finite (zero) where prediction equals target.
    """
    if prediction.shape != target.shape:
        raise ShapeError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape; "
                         "compare functions on the same grid")
    if reduction not in ("mean", "sum", "none"):
        raise ConfigError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    error_squared = sobolev_norm(prediction - target, s, squared=True)
    # sqrt(x + tiny) - sqrt(tiny): 0 at x = 0 with a finite slope there.
    tiny = torch.finfo(error_squared.dtype).tiny
    difference = (error_squared + tiny).sqrt() - math.sqrt(tiny)
    scale = sobolev_norm(target, s).clamp_min(tiny)
    per_sample = difference / scale
    if reduction == "none":
        return per_sample
    if reduction == "sum":
        return per_sample.sum()
    return per_sample.mean()


LossFunction = Callable[..., torch.Tensor]
"""``loss(prediction, target, reduction="mean") -> tensor``."""

LOSSES: dict[str, LossFunction] = {
    "relative_l2": partial(relative_lp_loss, p=2.0),
    "h1": partial(relative_sobolev_loss, s=1.0),
    "h2": partial(relative_sobolev_loss, s=2.0),
    "h-1": partial(relative_sobolev_loss, s=-1.0),
}
"""Training losses by the name a config gives (``train.loss``)."""


def get_loss(name: str) -> LossFunction:
    """The loss called ``name`` in :data:`LOSSES`, as ``loss(prediction, target, reduction="mean")``."""
    try:
        return LOSSES[name.lower()]
    except (KeyError, AttributeError):
        raise ConfigError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}") from None
