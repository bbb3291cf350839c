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

This module also holds the pieces every 1-D periodic time-dependent PDE here
shares: the stored-resolution check, the initial-condition sampler and the
finiteness check.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from oplearn.data.grf import GaussianRandomField
from oplearn.data.pdes.timestepping import etdrk4_coefficients, etdrk4_step, steps_per_interval
from oplearn.errors import ConfigError, ShapeError, SolverError

MIN_RESOLUTION = 8
CFL_SAFETY = 0.5  # dt = CFL_SAFETY * dx / max|u0|


def uniform_times(final_time: float, n_times: int) -> np.ndarray:
    """Stored times linspace(0, final_time, n_times + 1), float64, t = 0 included."""
    return np.linspace(0.0, final_time, n_times + 1)


def stored_stride(label: str, resolution: int, solver_resolution: int) -> int:
    """Stride of the stored grid inside the solver grid; ConfigError unless it is a whole number."""
    is_integer = isinstance(resolution, (int, np.integer)) and not isinstance(resolution, bool)
    if not is_integer or resolution < MIN_RESOLUTION or resolution > solver_resolution:
        raise ConfigError(
            f"{label} resolution must be an integer between {MIN_RESOLUTION} and solver_resolution = "
            f"{solver_resolution}, got {resolution!r}"
        )
    if solver_resolution % resolution:
        raise ConfigError(
            f"{label} resolution {resolution} does not divide solver_resolution {solver_resolution}; "
            f"choose a divisor of {solver_resolution} or a solver_resolution that {resolution} divides"
        )
    return solver_resolution // int(resolution)


def periodic_initial_conditions(
    field: GaussianRandomField, seed: int, indices: Sequence[int], device: str | torch.device
) -> torch.Tensor:
    """GRF samples with their mean (k = 0 mode) removed, shape (len(indices), N), float64 on ``device``.

    Sample i comes from the noise np.random.default_rng([seed, i]).standard_normal(N)
    at the field's resolution N, so it depends only on (seed, i).
    """
    for label, value in (("seed", seed), *(("index", i) for i in indices)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ConfigError(f"sample {label} must be an integer >= 0, got {value!r}")
    noise = np.stack([np.random.default_rng([int(seed), int(i)]).standard_normal(field.resolution) for i in indices])
    values = field.sample_from_noise(torch.from_numpy(noise).to(device))
    return values - values.mean(dim=-1, keepdim=True)


def finite_float32(
    label: str, trajectories: torch.Tensor, indices: Sequence[int], time_step: torch.Tensor
) -> np.ndarray:
    """``trajectories`` (B, ...) as a float32 numpy array; SolverError naming the first sample with NaN/inf.

    ``time_step`` (B,) is the largest step each sample was allowed; the message suggests a quarter of it.
    """
    values = trajectories.to(torch.float32).cpu().numpy()
    finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if not finite.all():
        first = int(np.argmin(finite))
        smaller = 0.25 * float(time_step.reshape(-1).expand(len(values))[first])
        raise SolverError(
            f"{label} solution of sample {list(indices)[first]} contains NaN/inf; "
            f"set a smaller time step, e.g. dt={smaller:.3g}"
        )
    return values


def uniform_spacing(times: torch.Tensor) -> float:
    """The common spacing of ``times`` (T,); ShapeError unless they increase evenly from times[0]."""
    if times.ndim != 1 or len(times) < 1:
        raise ShapeError(f"times must be a 1-D sequence with at least one entry, got shape {tuple(times.shape)}")
    if len(times) == 1:
        return 0.0
    gaps = torch.diff(times)
    interval = float(gaps.mean())
    if interval <= 0 or not torch.allclose(gaps, torch.full_like(gaps, interval), rtol=1e-9, atol=0.0):
        raise ShapeError("times must be evenly spaced and increasing, e.g. numpy.linspace(0, T, n + 1)")
    return interval


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


class Burgers(BaseModel):
    """Viscous Burgers data: u0 -> trajectory u(., t) at ``n_times`` + 1 evenly spaced times.

    Defaults are the FNO paper's: nu = 0.1, u0 ~ N(0, 625 (-Laplacian + 25 I)^(-2))
    with zero mean, T = 1, solved on 8192 points and subsampled to the stored resolution.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ClassVar[str] = "burgers"
    steady: ClassVar[bool] = False

    viscosity: float = Field(0.1, gt=0, allow_inf_nan=False, description="viscosity nu")
    alpha: float = Field(2.0, gt=0, allow_inf_nan=False, description="GRF smoothness exponent of u0")
    tau: float = Field(5.0, gt=0, allow_inf_nan=False, description="GRF inverse length scale of u0")
    sigma: float = Field(25.0, gt=0, allow_inf_nan=False, description="GRF amplitude of u0")
    final_time: float = Field(1.0, gt=0, allow_inf_nan=False, description="last stored time T")
    n_times: int = Field(1, ge=1, description="stored snapshots after t = 0, evenly spaced up to T")
    solver_resolution: int = Field(8192, ge=32, description="grid points of the solver; stored grids divide it")
    dt: float | None = Field(None, gt=0, allow_inf_nan=False, description="largest time step (default: CFL)")

    def shapes(self, resolution: int) -> dict[str, tuple[int, ...]]:
        """Shape of one sample's trajectory: (n_times + 1, 1, R)."""
        stored_stride("Burgers", resolution, self.solver_resolution)
        return {"trajectories": (self.n_times + 1, 1, resolution)}

    def extra(self, resolution: int) -> dict[str, np.ndarray]:
        """The stored times, {"times": linspace(0, final_time, n_times + 1)}."""
        stored_stride("Burgers", resolution, self.solver_resolution)
        return {"times": uniform_times(self.final_time, self.n_times)}

    def initial_conditions(self, seed: int, indices: Sequence[int], device="cpu") -> torch.Tensor:
        """u0 of samples ``indices`` on the solver grid, shape (B, solver_resolution), float64."""
        field = GaussianRandomField(
            dim=1, resolution=self.solver_resolution, alpha=self.alpha, tau=self.tau, sigma=self.sigma
        )
        return periodic_initial_conditions(field, seed, indices, device)

    def solve_batch(self, seed: int, indices, resolution: int, device="cpu") -> dict[str, np.ndarray]:
        """Trajectories of samples ``indices``: (len(indices), n_times + 1, 1, R) float32.

        All samples advance together on ``device``; each keeps its own CFL step
        (or ``dt``), so a sample's data does not depend on its batch.
        """
        stride = stored_stride("Burgers", resolution, self.solver_resolution)
        indices = list(indices)
        initial = self.initial_conditions(seed, indices, device)
        time_step = burgers_time_step(initial) if self.dt is None else torch.tensor([self.dt], dtype=torch.float64)
        times = uniform_times(self.final_time, self.n_times)
        solution = solve_burgers(initial, self.viscosity, times, time_step)
        return {"trajectories": finite_float32("Burgers", solution[:, :, None, ::stride], indices, time_step)}
