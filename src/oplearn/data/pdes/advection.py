"""Linear advection on the periodic unit interval.

    u_t + c u_x = 0,   x in [0, 1) periodic,   u(x, 0) = u0(x),

whose exact solution is the translate u(x, t) = u0(x - c t). The operator
learned is u0 -> u(., t) at the stored times. By default u0 is a periodic
GRF with covariance 625 (-Laplacian + 25 I)^(-2) (as for Burgers: a smooth
field with O(1) amplitude, dominated by its first few modes) with the
constant mode set to zero, and c = 1, so at T = 1 the profile has travelled
once around the domain.

Solver: method of lines with the Fourier spectral derivative. In terms of
v = rfft(u) the semi-discrete system is diagonal, v_k' = -2 pi i k c v_k
(the Nyquist mode of an even grid has no derivative and stays put), and is
advanced by the classical RK4 step with dt <= CFL_SAFETY / (N |c|). The
highest mode then sees |2 pi k c dt| <= pi * CFL_SAFETY; RK4 is stable up to
2.83 on the imaginary axis, but CFL_SAFETY is set for accuracy: with N = 1024
and c T = 1 the relative L2 error of a default sample is 4e-4 at 0.5 and
1.4e-5 at 0.1 (the error is in the highest modes; it falls as dt^4).

PDE residual (``Advection.residual``, see :mod:`oplearn.data.pdes.periodic`):
the raw left-hand side r = u_t + c u_x, u_x by the solver's spectral
derivative (Nyquist mode dropped) and u_t by second-order finite
differences of the snapshots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from pydantic import Field

from oplearn.data.pdes.periodic import PeriodicEvolution, SolverResolution, smaller_time_step
from oplearn.derivatives import spectral_derivative
from oplearn.data.pdes.timestepping import RK4, ButcherTableau, runge_kutta_step, steps_per_interval, uniform_spacing
from oplearn.errors import ConfigError, ShapeError

CFL_SAFETY = 0.1  # dt = CFL_SAFETY * dx / |c|, chosen for accuracy (stability allows 0.9)


def advection_time_step(points: int, velocity: float) -> float:
    """CFL time step CFL_SAFETY / (N |c|) on an N-point grid; inf when c = 0."""
    return math.inf if velocity == 0 else CFL_SAFETY / (points * abs(velocity))


def solve_advection(
    initial: torch.Tensor,
    velocity: float,
    times: Sequence[float] | torch.Tensor,
    time_step: float,
    tableau: ButcherTableau = RK4,
) -> torch.Tensor:
    """Solve u_t + velocity u_x = 0 on [0, 1) periodic from u(t = times[0]) = ``initial``.

    ``initial``: (B, N) real on the grid x_j = j / N; ``times``: (T,) evenly spaced;
    ``time_step``: the largest step allowed (the fewest equal steps per interval are
    taken, so snapshots fall exactly on ``times``); ``tableau``: the Runge-Kutta method.
    Returns u at ``times``, shape (B, T, N), float64 on ``initial``'s device.
    """
    if initial.ndim != 2:
        raise ShapeError(f"advection initial condition must have shape (batch, N), got {tuple(initial.shape)}")
    if not math.isfinite(velocity):
        raise ConfigError(f"advection velocity must be a finite number, got {velocity!r}")
    if not time_step > 0:
        raise ConfigError(f"advection time step must be > 0, got {time_step!r}")
    points = initial.shape[-1]
    times = torch.as_tensor(times, dtype=torch.float64)
    interval = uniform_spacing(times)

    wavenumbers = torch.arange(points // 2 + 1, dtype=torch.float64, device=initial.device)
    if points % 2 == 0:
        wavenumbers[-1] = 0.0  # the Nyquist mode cos(pi N x) has no resolved derivative
    symbol = -2j * math.pi * velocity * wavenumbers  # Fourier symbol of -c d/dx

    def right_hand_side(t: float, v: torch.Tensor) -> torch.Tensor:
        return symbol * v

    snapshots = [initial.to(torch.float64)]
    if interval > 0:
        count = int(steps_per_interval(interval, time_step))
        step = interval / count
        v = torch.fft.rfft(snapshots[0])
        for start in times[:-1].tolist():
            for n in range(count):
                v = runge_kutta_step(right_hand_side, v, start + n * step, step, tableau)
            snapshots.append(torch.fft.irfft(v, n=points))
    return torch.stack(snapshots, dim=1)


class Advection(PeriodicEvolution):
    """Linear advection data: u0 -> trajectory u(., t) = u0(. - c t) at ``n_times`` + 1 evenly spaced times.

    u0 is a zero-mean periodic GRF (alpha, tau, sigma) drawn on the solver grid,
    solved there and subsampled to the stored resolution.
    """

    name: ClassVar[str] = "advection"
    dim: ClassVar[int] = 1
    label: ClassVar[str] = "advection"

    velocity: float = Field(1.0, allow_inf_nan=False, description="advection speed c (any sign)")
    solver_resolution: SolverResolution = Field(1024, ge=32)
    dt: float | None = Field(None, gt=0, allow_inf_nan=False, description="largest time step (default: CFL)")

    def time_step(self) -> float:
        """The largest time step taken: ``dt`` if given, else the CFL step."""
        return self.dt if self.dt is not None else advection_time_step(self.solver_resolution, self.velocity)

    def solve(self, initial: torch.Tensor, stride: int, device="cpu") -> torch.Tensor:
        """u at the stored times and points, (B, n_times + 1, N / stride) float64, all samples together."""
        return solve_advection(initial, self.velocity, self.times(), self.time_step())[..., ::stride]

    def spatial_operator(self, u: torch.Tensor) -> torch.Tensor:
        """c u_x of snapshots ``u`` (M, N) on x_j = j / N, (M, N) in u's dtype: spectral, as the solver, the
        Nyquist mode's derivative set to 0 (:func:`oplearn.derivatives.spectral_derivative`)."""
        return self.velocity * spectral_derivative(u, dim=-1)

    def remedy(self, initial: torch.Tensor, batch_index: int) -> str:
        """A quarter of the time step taken."""
        return smaller_time_step(self.time_step())
