"""Viscous Burgers' equation on the periodic unit interval.

    u_t + (u^2 / 2)_x = nu u_xx,   x in [0, 1) periodic,   u(x, 0) = u0(x).

The operator learned is u0 -> u(., t) at the stored times. Defaults follow
the FNO paper's benchmark: nu = 0.1 and u0 ~ N(0, 625 (-Laplacian + 25 I)^(-2))
with its constant (k = 0) Fourier mode set to zero, as the paper's generator
does (its GRF1.m is called with mean m = 0, which fills exactly that mode).
The mean of u is conserved by the equation, so every solution has mean zero.

Solver: Fourier pseudo-spectral in space on ``solver_resolution`` points
(x_j = j / N), the nonlinear term dealiased by the 2/3 rule, and ETDRK4 in
time. Writing v = rfft(u) and k for the wavenumbers,

    v_t = L v + N(v),   L = -nu (2 pi k)^2,   N(v) = -i pi k D rfft(irfft(D v)^2),

with D zeroing every |k| >= N / 3. The time step follows the CFL condition
dt <= CFL_SAFETY / (N max|u0|) for each sample; the maximum principle keeps
max|u| <= max|u0|, so the bound holds for the whole run.

PDE residual (``Burgers.residual``, see :mod:`oplearn.data.pdes.periodic`):
the raw left-hand side r = u_t + (u^2 / 2)_x - nu u_xx with the solver's
spectral operators (u dealiased before squaring, the flux derivative
dealiased) and u_t by second-order finite differences of the snapshots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from pydantic import Field

from oplearn.data.pdes.periodic import PeriodicEvolution, SolverResolution, smaller_time_step
from oplearn.data.pdes.timestepping import etdrk4_coefficients, etdrk4_step, steps_per_interval, uniform_spacing
from oplearn.errors import ConfigError, ShapeError

CFL_SAFETY = 0.5  # dt = CFL_SAFETY * dx / max|u0|


def burgers_time_step(initial: torch.Tensor) -> torch.Tensor:
    """CFL time step per sample: CFL_SAFETY / (N max_x |u0|), shape (B,); inf where u0 = 0."""
    return CFL_SAFETY / (initial.shape[-1] * initial.abs().amax(dim=-1))


def solve_burgers(
    initial: torch.Tensor, viscosity: float, times: Sequence[float] | torch.Tensor, time_step: float | torch.Tensor
) -> torch.Tensor:
    """Solve u_t + (u^2/2)_x = viscosity u_xx on [0, 1) periodic from u(t = times[0]) = ``initial``.

    ``initial``: (B, N) real on the grid x_j = j / N; ``times``: (T,) evenly spaced;
    ``time_step``: the largest step allowed, a number or a (B,) tensor (one per sample;
    each sample's result is then independent of the others in the batch). Each sample
    takes the fewest equal steps per interval, so the snapshots fall exactly on ``times``.
    Returns u at ``times``, shape (B, T, N), float64 on ``initial``'s device.
    """
    if initial.ndim != 2:
        raise ShapeError(f"Burgers initial condition must have shape (batch, N), got {tuple(initial.shape)}")
    if not (math.isfinite(viscosity) and viscosity > 0):
        raise ConfigError(f"Burgers viscosity must be a finite number > 0, got {viscosity!r}")
    device, points = initial.device, initial.shape[-1]
    times = torch.as_tensor(times, dtype=torch.float64)
    interval = uniform_spacing(times)
    max_step = torch.as_tensor(time_step, dtype=torch.float64).reshape(-1)
    if len(max_step) not in (1, len(initial)):
        raise ShapeError(f"Burgers time step must be a number or have one entry per sample, got {len(max_step)}")
    max_step = max_step.expand(len(initial))
    if not bool((max_step > 0).all()):
        raise ConfigError(f"Burgers time step must be > 0, got {time_step!r}")

    wavenumbers = torch.arange(points // 2 + 1, dtype=torch.float64, device=device)
    linear = -viscosity * (2 * math.pi * wavenumbers) ** 2
    dealias = (wavenumbers < points / 3).to(torch.float64)
    flux_derivative = -1j * math.pi * wavenumbers * dealias  # -(1/2) d/dx in Fourier space, dealiased

    def nonlinear(v: torch.Tensor) -> torch.Tensor:
        u = torch.fft.irfft(dealias * v, n=points)
        return flux_derivative * torch.fft.rfft(u * u)

    counts = steps_per_interval(interval, max_step.cpu()).to(device) if interval > 0 else None
    snapshots = [initial.to(torch.float64)]
    if counts is not None:
        coefficients = etdrk4_coefficients(linear, (interval / counts.to(torch.float64)).unsqueeze(-1))
        same_count = bool((counts == counts[0]).all())
        active_until = counts.unsqueeze(-1)
        v = torch.fft.rfft(snapshots[0])
        for _ in range(len(times) - 1):
            for step in range(int(counts.max())):
                advanced = etdrk4_step(nonlinear, v, coefficients)
                v = advanced if same_count else torch.where(step < active_until, advanced, v)
            snapshots.append(torch.fft.irfft(v, n=points))
    return torch.stack(snapshots, dim=1)


class Burgers(PeriodicEvolution):
    """Viscous Burgers data: u0 -> trajectory u(., t) at ``n_times`` + 1 evenly spaced times.

    Defaults are the FNO paper's: nu = 0.1, u0 ~ N(0, 625 (-Laplacian + 25 I)^(-2))
    with zero mean, T = 1, solved on 8192 points and subsampled to the stored resolution.
    """

    name: ClassVar[str] = "burgers"
    dim: ClassVar[int] = 1
    label: ClassVar[str] = "Burgers"

    viscosity: float = Field(0.1, gt=0, allow_inf_nan=False, description="viscosity nu")
    solver_resolution: SolverResolution = Field(8192, ge=32)
    dt: float | None = Field(None, gt=0, allow_inf_nan=False, description="largest time step (default: CFL)")

    def time_steps(self, initial: torch.Tensor) -> torch.Tensor:
        """Largest time step of each sample of ``initial`` (B, N), shape (B,): ``dt`` if given, else its CFL step."""
        if self.dt is None:
            return burgers_time_step(initial)
        return torch.full((len(initial),), self.dt, dtype=torch.float64)

    def solve(self, initial: torch.Tensor, stride: int, device="cpu") -> torch.Tensor:
        """u at the stored times and points, (B, n_times + 1, N / stride) float64.

        All samples advance together; each keeps its own time step, so a sample's data does not depend on its batch.
        """
        return solve_burgers(initial, self.viscosity, self.times(), self.time_steps(initial))[..., ::stride]

    def spatial_operator(self, u: torch.Tensor) -> torch.Tensor:
        """(u^2 / 2)_x - nu u_xx of snapshots ``u`` (M, N) on x_j = j / N, (M, N) in u's dtype.

        Spectral, as the solver: with v = rfft(u) and D the 2/3-rule mask (|k| < N / 3),
        rfft of the result = i pi k D rfft(irfft(D v)^2) + nu (2 pi k)^2 v, k = 0 .. N/2.
        """
        points = u.shape[-1]
        integer = torch.fft.rfftfreq(points, d=1.0 / points, dtype=torch.float64, device=u.device)
        dealias = (integer < points / 3).to(u.dtype)
        flux_derivative = (math.pi * integer).to(u.dtype) * dealias  # times i: (1/2) d/dx, dealiased
        viscous = (self.viscosity * (2 * math.pi * integer) ** 2).to(u.dtype)
        v = torch.fft.rfft(u)
        smooth = torch.fft.irfft(dealias * v, n=points)
        flux_hat = torch.fft.rfft(smooth * smooth)
        return torch.fft.irfft(1j * flux_derivative * flux_hat + viscous * v, n=points)

    def remedy(self, initial: torch.Tensor, batch_index: int) -> str:
        """A quarter of the diverged sample's time step."""
        return smaller_time_step(float(self.time_steps(initial)[batch_index]))
