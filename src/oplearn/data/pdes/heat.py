"""Heat equation on the periodic unit square.

    u_t = kappa Laplacian u   on the torus [0, 1)^2,   grid x_i = i / N (axis 0), y_j = j / N (axis 1).

The operator learned maps u(0) to its trajectory. In Fourier space every mode
decays on its own, u_k(t) = exp(-kappa 4 pi^2 |k|^2 t) u_k(0), and
Crank-Nicolson is one real factor per mode and step,

    u_k^{n+1} = g_k u_k^n,    g_k = (1 - h kappa |k|^2 / 2) / (1 + h kappa |k|^2 / 2)    (|k| in rad: 2 pi * integer),

second order in h. An interval of m steps between stored times is applied as
one multiplication by g_k^m, which is exactly m steps done one by one.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from oplearn.data.grf import GaussianRandomField
from oplearn.errors import ConfigError, ShapeError, SolverError

MIN_RESOLUTION = 4


class NonFiniteHeatSolution(SolverError):
    """The solution of batch entry ``batch_index`` became NaN/inf by time ``time``."""

    def __init__(self, batch_index: int, time: float) -> None:
        super().__init__(f"heat solution of batch entry {batch_index} became NaN/inf by t = {time:.6g}; "
                         "check that its initial condition is finite")
        self.batch_index = batch_index
        self.time = time


def solve_heat(u0: torch.Tensor, times, diffusivity: float, dt: float, stride: int = 1) -> torch.Tensor:
    """Crank-Nicolson snapshots of u_t = kappa Laplacian u for a batch of initial conditions.

    ``u0`` (B, N, N) real is the solution at ``times[0]``; ``times`` (T,) increasing;
    each interval is split into ceil(interval / dt) equal steps. Runs in the dtype
    and on the device of ``u0``. Returns (B, T, N/stride, N/stride), the first
    snapshot being u0 (every ``stride``-th grid point). A non-finite result
    raises NonFiniteHeatSolution (a SolverError) naming the batch entry.
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
        finite = torch.isfinite(u).flatten(1).all(dim=1)
        if not bool(finite.all()):
            raise NonFiniteHeatSolution(int(torch.nonzero(~finite).flatten()[0]), times[j])
        snapshots[:, j] = u[:, ::stride, ::stride]
    return snapshots


class Heat(BaseModel):
    """Heat-equation data: trajectories (T, 1, R, R) from periodic GRF initial conditions.

    u(0) is a periodic GRF with covariance sigma^2 (-Laplacian + tau^2)^(-alpha),
    (alpha, tau, sigma) = (2, 3, 3) by default (sigma = tau^(alpha - 1) keeps the
    pointwise variance O(1)). With diffusivity 0.01 and T = 1 the mode |k| = 1
    decays by e^(-0.39) and |k| = 5 by e^(-9.9). Sample ``i`` draws its noise at
    the solver resolution from np.random.default_rng([seed, i]); a stored
    resolution R must divide solver_resolution (the grid is subsampled).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ClassVar[str] = "heat"
    steady: ClassVar[bool] = False

    diffusivity: float = Field(0.01, gt=0, allow_inf_nan=False, description="kappa in u_t = kappa Laplacian u")
    final_time: float = Field(1.0, gt=0, allow_inf_nan=False, description="last stored time T")
    n_times: int = Field(20, ge=1, description="stored snapshots after t = 0, at linspace(0, T, n_times + 1)")
    solver_resolution: int = Field(256, ge=MIN_RESOLUTION, description="grid points per axis of the solve")
    dt: float = Field(1e-4, gt=0, allow_inf_nan=False, description="Crank-Nicolson time step")
    alpha: float = Field(2.0, gt=0, allow_inf_nan=False, description="GRF smoothness exponent of u(0)")
    tau: float = Field(3.0, gt=0, allow_inf_nan=False, description="GRF inverse length scale of u(0)")
    sigma: float = Field(3.0, gt=0, allow_inf_nan=False, description="GRF amplitude of u(0)")

    def times(self) -> np.ndarray:
        """Stored times linspace(0, final_time, n_times + 1), float64 (T,)."""
        return np.linspace(0.0, self.final_time, self.n_times + 1)

    def stride(self, resolution: int) -> int:
        """Subsampling step from the solver grid to a stored grid of ``resolution`` points per axis."""
        is_integer = isinstance(resolution, (int, np.integer)) and not isinstance(resolution, bool)
        if not is_integer or resolution < MIN_RESOLUTION or self.solver_resolution % resolution:
            raise ConfigError(f"heat resolution must be an integer >= {MIN_RESOLUTION} dividing "
                              f"solver_resolution = {self.solver_resolution}, got {resolution!r}; "
                              "pick a divisor or change solver_resolution")
        return self.solver_resolution // int(resolution)

    def shapes(self, resolution: int) -> dict[str, tuple[int, ...]]:
        """Shape of one sample: trajectories (n_times + 1, 1, R, R)."""
        self.stride(resolution)
        return {"trajectories": (self.n_times + 1, 1, resolution, resolution)}

    def extra(self, resolution: int) -> dict[str, np.ndarray]:
        """{"times": (n_times + 1,) float64}."""
        self.stride(resolution)
        return {"times": self.times()}

    def initial_condition(self, seed: int, indices, device="cpu") -> torch.Tensor:
        """GRF u(0) of samples ``indices`` on the solver grid, (B, N, N) float64.

        The noise of sample i is np.random.default_rng([seed, i]).standard_normal((N, N)).
        """
        for label, value in [("seed", seed)] + [("index", i) for i in indices]:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ConfigError(f"heat sample {label} must be an integer >= 0, got {value!r}")
        n = self.solver_resolution
        noise = np.stack([np.random.default_rng([int(seed), int(i)]).standard_normal((n, n)) for i in indices])
        field = GaussianRandomField(dim=2, resolution=n, alpha=self.alpha, tau=self.tau, sigma=self.sigma)
        return field.sample_from_noise(torch.from_numpy(noise).to(device))

    def solve_batch(self, seed: int, indices, resolution: int, device="cpu") -> dict[str, np.ndarray]:
        """Samples ``indices`` solved together: trajectories (len(indices), n_times + 1, 1, R, R) float32."""
        indices = list(indices)
        stride = self.stride(resolution)
        u0 = self.initial_condition(seed, indices, device)
        try:
            trajectories = solve_heat(u0, self.times(), self.diffusivity, self.dt, stride=stride)
        except NonFiniteHeatSolution as error:
            raise SolverError(f"heat sample {indices[error.batch_index]} (seed {seed}) became NaN/inf by "
                              f"t = {error.time:.6g}; check the GRF parameters (alpha, tau, sigma)") from None
        return {"trajectories": trajectories[:, :, None].to(torch.float32).cpu().numpy()}
