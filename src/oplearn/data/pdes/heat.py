"""Heat equation on the periodic unit square.

    u_t = kappa Laplacian u   on the torus [0, 1)^2,   grid x_i = i / N (axis 0), y_j = j / N (axis 1).

The operator learned maps u(0) to its trajectory. In Fourier space every mode
decays on its own, u_k(t) = exp(-kappa 4 pi^2 |k|^2 t) u_k(0), and
Crank-Nicolson is one real factor per mode and step,

    u_k^{n+1} = g_k u_k^n,    g_k = (1 - h kappa |k|^2 / 2) / (1 + h kappa |k|^2 / 2)    (|k| in rad: 2 pi * integer),

second order in h. An interval of m steps between stored times is applied as
one multiplication by g_k^m, which is exactly m steps done one by one.

PDE residual (``Heat.residual``, see :mod:`oplearn.data.pdes.periodic`):
the raw left-hand side r = u_t - kappa Laplacian u, the Laplacian spectral
(-(2 pi)^2 |k|^2 per mode, Nyquist included as in the solver) and u_t by
second-order finite differences of the snapshots.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field

from oplearn.data.pdes.periodic import (
    Amplitude,
    InverseLength,
    PeriodicEvolution,
    SnapshotCount,
    SolverResolution,
    check_finite,
    periodic_wavenumbers,
)
from oplearn.errors import ConfigError, ShapeError

MIN_RESOLUTION = 4


def solve_heat(u0: torch.Tensor, times, diffusivity: float, dt: float, stride: int = 1) -> torch.Tensor:
    """Crank-Nicolson snapshots of u_t = kappa Laplacian u for a batch of initial conditions.

    ``u0`` (B, N, N) real is the solution at ``times[0]``; ``times`` (T,) increasing;
    each interval is split into ceil(interval / dt) equal steps. Runs in the dtype
    and on the device of ``u0``. Returns (B, T, N/stride, N/stride), the first
    snapshot being u0 (every ``stride``-th grid point). A non-finite result
    raises NonFiniteSolution (a SolverError) naming the batch entry.
    """
    if u0.dim() != 3 or u0.shape[1] != u0.shape[2] or u0.shape[1] < MIN_RESOLUTION:
        raise ShapeError(f"heat u0 must have shape (batch, N, N) with N >= {MIN_RESOLUTION}, got {tuple(u0.shape)}")
    if u0.dtype not in (torch.float32, torch.float64):
        raise ConfigError(f"heat u0 must be float32 or float64, got {u0.dtype}")
    times = [float(t) for t in np.asarray(times, dtype=np.float64).reshape(-1)]
    if len(times) < 1 or any(not math.isfinite(t) for t in times) or any(b <= a for a, b in zip(times, times[1:])):
        raise ConfigError("heat times must be finite and strictly increasing, e.g. np.linspace(0, T, 21)")
    for label, value in (("diffusivity", diffusivity), ("dt", dt)):
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"heat {label} must be a finite number > 0, got {value!r}")
    n = u0.shape[1]
    if not isinstance(stride, int) or stride < 1 or n % stride:
        raise ConfigError(f"heat stride must be a positive integer dividing N = {n}, got {stride!r}")

    integer_x = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64, device=u0.device)[:, None]
    integer_y = torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64, device=u0.device)[None, :]
    decay_rate = diffusivity * 4 * math.pi**2 * (integer_x**2 + integer_y**2)  # kappa |k|^2, (N, N//2+1)
    u_hat = torch.fft.rfft2(u0)
    snapshots = u0.new_empty((u0.shape[0], len(times), n // stride, n // stride))
    snapshots[:, 0] = u0[:, ::stride, ::stride]
    for j in range(1, len(times)):
        interval = times[j] - times[j - 1]
        step_count = max(1, math.ceil(interval / dt - 1e-9))
        half_step = 0.5 * (interval / step_count) * decay_rate
        growth = ((1 - half_step) / (1 + half_step)) ** step_count
        u_hat = u_hat * growth.to(u_hat.dtype)
        u = torch.fft.irfft2(u_hat, s=(n, n))
        check_finite("heat", u, times[j], "check that its initial condition is finite")
        snapshots[:, j] = u[:, ::stride, ::stride]
    return snapshots


class Heat(PeriodicEvolution):
    """Heat-equation data: trajectories (T, 1, R, R) from periodic GRF initial conditions.

    u(0) is a periodic GRF with covariance sigma^2 (-Laplacian + tau^2)^(-alpha),
    (alpha, tau, sigma) = (2, 3, 3) by default (sigma = tau^(alpha - 1) keeps the
    pointwise variance O(1)); its mean is kept (and conserved). With diffusivity
    0.01 and T = 1 the mode |k| = 1 decays by e^(-0.39) and |k| = 5 by e^(-9.9).
    Sample ``i`` draws its noise at the solver resolution from
    np.random.default_rng([seed, i]); a stored resolution R must divide
    solver_resolution (the grid is subsampled).
    """

    name: ClassVar[str] = "heat"
    dim: ClassVar[int] = 2
    label: ClassVar[str] = "heat"
    remove_mean: ClassVar[bool] = False
    min_resolution: ClassVar[int] = MIN_RESOLUTION
    nonfinite_hint: ClassVar[str] = "check the GRF parameters (alpha, tau, sigma)"  # Crank-Nicolson is stable

    diffusivity: float = Field(0.01, gt=0, allow_inf_nan=False, description="kappa in u_t = kappa Laplacian u")
    n_times: SnapshotCount = 20
    solver_resolution: SolverResolution = Field(256, ge=MIN_RESOLUTION)
    dt: float = Field(1e-4, gt=0, allow_inf_nan=False, description="Crank-Nicolson time step")
    tau: InverseLength = 3.0
    sigma: Amplitude = 3.0

    def solve(self, initial: torch.Tensor, stride: int, device="cpu") -> torch.Tensor:
        """u at the stored times and points, (B, n_times + 1, N / stride, N / stride) float64."""
        return solve_heat(initial, self.times(), self.diffusivity, self.dt, stride=stride)

    def spatial_operator(self, u: torch.Tensor) -> torch.Tensor:
        """-kappa Laplacian u of snapshots ``u`` (M, N, N) on the grid (i / N, j / N), (M, N, N) in u's dtype.

        Spectral: rfft2 of the result = kappa (2 pi)^2 (k_x^2 + k_y^2) rfft2(u).
        """
        n = u.shape[-1]
        k_x = periodic_wavenumbers(n, u.device, torch.float64)[:, None]
        k_y = periodic_wavenumbers(n, u.device, torch.float64, last=True)[None, :]
        symbol = (self.diffusivity * (k_x**2 + k_y**2)).to(u.dtype)
        return torch.fft.irfft2(symbol * torch.fft.rfft2(u), s=(n, n))
