"""Error by wavenumber: energy spectra, error spectra and band-limited relative errors.

Every function takes channel-first fields ``(batch, channels, *spatial)`` with
1 to 3 periodic spatial axes on ``[0, 1]^d`` (torch tensors or numpy arrays)
and works in float64. With ``c_k = DFT(u)_k / N`` the energy of a mode is
``|c_k|^2``; the energies of all modes sum to ``mean(u^2)`` over the grid
(Parseval), so a spectrum is a split of the mean square by scale.

Why: a relative L2 error of a neural operator hides *where* it errs. Fourier
operators truncate modes and smooth activations spread energy, so their
errors tend to sit at high wavenumbers, which the total error barely shows
because the truth has little energy there. Binning the error by ``|k|`` and
reporting it per band (low / mid / high) makes that visible, and is how
residual methods such as SpecBoost show what they fix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from oplearn.errors import ConfigError, ShapeError
from oplearn.losses import half_spectrum_energy, relative_lp_loss

BAND_NAMES = ("low", "mid", "high")


def _field(u: torch.Tensor | np.ndarray, name: str = "field") -> torch.Tensor:
    u = torch.as_tensor(u).detach()
    if u.is_complex() or not 3 <= u.dim() <= 5:
        raise ShapeError(f"{name} must be real (batch, channels, *spatial) with 1 to 3 spatial axes, "
                         f"got shape {tuple(u.shape)}; add batch/channel axes with x[None] if needed")
    return u.to(torch.float64)


def _precision(*arrays) -> float:
    """Machine epsilon of the least precise floating input (float64's for integer input)."""
    dtypes = [torch.as_tensor(a).dtype for a in arrays]
    return max(torch.finfo(d).eps if d.is_floating_point else torch.finfo(torch.float64).eps for d in dtypes)


def _pair(prediction, target) -> tuple[torch.Tensor, torch.Tensor]:
    prediction, target = _field(prediction, "prediction"), _field(target, "target")
    if prediction.shape != target.shape:
        raise ShapeError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape; "
                         "compare them on the same grid")
    return prediction, target.to(prediction.device)


def energy_spectrum(u: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Energy per wavenumber shell, averaged over batch and channels.

    Shell ``n`` holds the modes with ``n - 1/2 <= |k| < n + 1/2`` (``|k|`` the
    Euclidean norm of the integer wavevector); in 1-D that is just ``|k| = n``.

    Args:
        u: ``(batch, channels, *spatial)``.

    Returns:
        ``(wavenumbers, energy)``, both float64 of shape ``(n_shells,)`` with
        ``wavenumbers = 0, 1, ..., n_shells - 1`` and ``energy.sum() ==
        mean(u^2)`` over batch, channels and grid.
    """
    k_squared, energy = half_spectrum_energy(_field(u))
    shells = torch.floor(k_squared.sqrt() + 0.5).long().flatten()
    per_mode = energy.mean(dim=(0, 1)).flatten()
    spectrum = torch.zeros(int(shells.max()) + 1, dtype=per_mode.dtype, device=per_mode.device)
    spectrum.index_add_(0, shells, per_mode)
    return torch.arange(len(spectrum), dtype=spectrum.dtype, device=spectrum.device), spectrum


def error_spectrum(prediction: torch.Tensor | np.ndarray,
                   target: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`energy_spectrum` of ``prediction - target``."""
    prediction, target = _pair(prediction, target)
    return energy_spectrum(prediction - target)


def default_band_edges(spatial: Sequence[int]) -> tuple[float, float]:
    """Inner edges ``(k_max / 3, 2 k_max / 3)`` with ``k_max = min_i(n_i // 2)``.

    ``k_max`` is the largest radius whose whole shell the grid resolves (the
    Nyquist wavenumber of the coarsest axis). The high band is open above, so
    it also takes the corner modes with ``|k| > k_max``: the bands split every
    mode of the grid.
    """
    k_max = min(int(n) // 2 for n in spatial)
    return (k_max / 3, 2 * k_max / 3)


def _band_names(count: int) -> tuple[str, ...]:
    return BAND_NAMES if count == len(BAND_NAMES) else tuple(f"band_{i}" for i in range(count))


def _checked_edges(edges: Sequence[float] | None, spatial: Sequence[int]) -> tuple[float, ...]:
    edges = default_band_edges(spatial) if edges is None else tuple(float(e) for e in edges)
    if not edges or edges[0] <= 0 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ConfigError(f"band edges must be increasing positive wavenumbers, got {edges}; "
                          "for example (5, 10) splits |k| into [0, 5), [5, 10) and [10, inf)")
    return edges


def band_errors(prediction: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray,
                edges: Sequence[float] | None = None) -> dict[str, float | None]:
    """Relative error in each wavenumber band, averaged over the batch.

    For a band ``B = {k : e_j <= |k| < e_(j+1)}`` and each sample,
    ``||P_B (prediction - target)|| / ||P_B target||`` with ``P_B`` the
    projection onto the modes in ``B`` and norms over all channels; the
    returned value is the mean over the samples whose target has energy in
    the band: ``||P_B target|| > 100 eps ||target||`` with ``eps`` the machine
    epsilon of the inputs' dtype, so that rounding noise in an empty band is
    not divided by zero. A band empty in every sample gives ``None``.

    Args:
        prediction, target: ``(batch, channels, *spatial)``.
        edges: inner band edges, increasing and positive; ``n`` edges give
            ``n + 1`` bands from ``|k| = 0`` up to every mode of the grid.
            Default :func:`default_band_edges` (thirds of the resolved range).

    Returns:
        ``{"low": ..., "mid": ..., "high": ...}`` for three bands, otherwise
        ``{"band_0": ..., "band_1": ..., ...}``; plain floats or ``None``.
    """
    eps = _precision(prediction, target)
    prediction, target = _pair(prediction, target)
    edges = _checked_edges(edges, prediction.shape[2:])
    k_squared, error_energy = half_spectrum_energy(prediction - target)
    _, target_energy = half_spectrum_energy(target)
    boundaries = torch.tensor(edges, dtype=k_squared.dtype, device=k_squared.device)
    band = torch.bucketize(k_squared.sqrt(), boundaries, right=True)  # e_j <= |k| < e_(j+1) -> j + 1
    floor = 100 * eps * target_energy.flatten(1).sum(dim=1).sqrt()
    result = {}
    for index, name in enumerate(_band_names(len(edges) + 1)):
        inside = band == index
        error = (error_energy * inside).flatten(1).sum(dim=1).sqrt()
        scale = (target_energy * inside).flatten(1).sum(dim=1).sqrt()
        defined = scale > floor
        result[name] = float((error[defined] / scale[defined]).mean()) if defined.any() else None
    return result


def spectral_report(prediction: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray,
                    edges: Sequence[float] | None = None) -> dict:
    """Every spectral number for one set of predictions, as a JSON-ready dict.

    Keys: ``samples``, ``resolution``, ``relative_l2`` (mean per-sample),
    ``band_edges`` (name -> ``[low, high]`` in ``|k|``, the last band's top
    being the largest ``|k|`` on the grid), ``band_relative_errors`` (see
    :func:`band_errors`), ``wavenumbers``, ``truth_spectrum``,
    ``prediction_spectrum`` and ``error_spectrum`` (see :func:`energy_spectrum`).
    All values are means over samples, so reports of several batches combine
    as averages weighted by ``samples``.
    """
    prediction, target = _pair(prediction, target)
    spatial = tuple(prediction.shape[2:])
    edges = _checked_edges(edges, spatial)
    corner = math.sqrt(sum((n // 2) ** 2 for n in spatial))
    bounds = (0.0, *edges, corner)
    names = _band_names(len(edges) + 1)
    wavenumbers, truth = energy_spectrum(target)
    _, predicted = energy_spectrum(prediction)
    _, error = energy_spectrum(prediction - target)
    return {
        "samples": int(prediction.shape[0]),
        "resolution": list(spatial),
        "relative_l2": float(relative_lp_loss(prediction, target)),
        "band_edges": {name: [bounds[i], bounds[i + 1]] for i, name in enumerate(names)},
        "band_relative_errors": band_errors(prediction, target, edges),
        "wavenumbers": wavenumbers.tolist(),
        "truth_spectrum": truth.tolist(),
        "prediction_spectrum": predicted.tolist(),
        "error_spectrum": error.tolist(),
    }
