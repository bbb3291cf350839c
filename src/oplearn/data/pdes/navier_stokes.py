"""2-D incompressible Navier-Stokes in vorticity form on the periodic unit torus.

    w_t + u . grad w = nu Laplacian w + f,    u = (psi_y, -psi_x),    -Laplacian psi = w,

on the grid x_i = i / N, y_j = j / N, with x along axis 0 and y along axis 1 of
every array. The operator learned maps the vorticity w(0) to its trajectory.
The setting is the FNO paper's: w(0) a mean-zero periodic Gaussian random
field with (alpha, tau, sigma) = (2.5, 7, 7^1.5), forcing
f = 0.1 (sin 2 pi (x + y) + cos 2 pi (x + y)), solved on a 256 x 256 grid.

Scheme (pseudo-spectral, real FFTs): the advection A = u . grad w is formed in
physical space from four inverse FFTs, transformed back and dealiased with the
2/3 rule. Time stepping is the low-storage IMEX Runge-Kutta of Spalart, Moser
and Rogers (1991): three substeps, explicit third-order RK for N = f - A,
Crank-Nicolson for the viscous term L = nu Laplacian,

    w_i = w_{i-1} + h [alpha_i L (w_{i-1} + w_i) + gamma_i N(w_{i-1}) + zeta_i N(w_{i-2})],   i = 1, 2, 3,

second order overall (third for the explicit part). Its explicit part is
stable for advection eigenvalues up to sqrt(3) on the imaginary axis, so it
stays stable at low viscosity (1e-4, 1e-5) where Adams-Bashforth 2 and Heun,
weakly unstable there, blow up. The step is chosen per stored interval from
the CFL number h (max|u| + max|v|) N <= cfl (capped at ``max_dt``) and
shortened so that a whole number of steps lands on the stored time; an
interval whose realised CFL number overshoots is redone with a smaller step.
Because the step is shared by a batch, adaptive results depend on the batch
composition at the level of the time-stepping error; a fixed ``dt`` makes
every sample independent of its batch.

PDE residual (``NavierStokes.residual``, see :mod:`oplearn.data.pdes.periodic`):
the raw left-hand side r = w_t + u . grad w - nu Laplacian w - f, with the
solver's SpectralOperators (velocity from -Laplacian psi = w, the advection
formed from the full w and dealiased by the 2/3 rule), f from ``forcing()``
on the data's grid and w_t by second-order finite differences of the snapshots.
"""

from __future__ import annotations

import functools
import math
from typing import ClassVar, Literal, NoReturn

import numpy as np
import torch
from pydantic import Field

from oplearn.data.pdes.periodic import (
    Amplitude,
    FinalTime,
    InverseLength,
    NonFiniteSolution,
    PeriodicEvolution,
    Smoothness,
    SnapshotCount,
    SolverResolution,
    check_finite,
)
from oplearn.errors import ConfigError, ShapeError, SolverError

MIN_RESOLUTION = 4
DEFAULT_CFL = 0.7
DEFAULT_MAX_DT = 0.01
REDO_FACTOR = 1.2  # redo an interval whose realised CFL number exceeds REDO_FACTOR * cfl
MAX_STEPS_PER_INTERVAL = 10_000_000
# Spalart-Moser-Rogers RK3/CN coefficients of the three substeps.
GAMMA = (8 / 15, 5 / 12, 3 / 4)
ZETA = (0.0, -17 / 60, -5 / 12)
ALPHA = (4 / 15, 1 / 15, 1 / 6)
SMALLER_STEP = "use a smaller time step (dt, or cfl / max_dt)"


class SpectralOperators:
    """Fourier multipliers of an N x N periodic grid in the rfft2 layout (N, N // 2 + 1).

    ``velocity_and_gradient`` (4, N, N//2+1) complex maps w_hat to (u, v, w_x, w_y)
    hats: u = i k_y w / |k|^2, v = -i k_x w / |k|^2, w_x = i k_x w, w_y = i k_y w,
    with k = 2 pi (integer wavenumber) and the Nyquist wavenumber dropped from
    derivatives. ``dealias`` (N, N//2+1) keeps |k_x|, |k_y| < N / 3 (2/3 rule: a
product of two kept modes then aliases only onto removed ones; N = 256 keeps 85);
    ``laplacian`` (N, N//2+1) is |k|^2 (the eigenvalues of -Laplacian).
    """

    def __init__(self, n: int, device, dtype: torch.dtype) -> None:
        integer_x = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64, device=device)[:, None]
        integer_y = torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64, device=device)[None, :]
        k_x, k_y = 2 * math.pi * integer_x, 2 * math.pi * integer_y
        self.laplacian = k_x**2 + k_y**2
        inverse_laplacian = torch.where(self.laplacian > 0, 1 / self.laplacian.clamp_min(1e-30), 0.0)
        derivative_x = torch.where(integer_x.abs() == n // 2, 0.0, k_x)
        derivative_y = torch.where(integer_y == n // 2, 0.0, k_y)
        shape = self.laplacian.shape
        multipliers = [derivative_y * inverse_laplacian, -derivative_x * inverse_laplacian, derivative_x, derivative_y]
        complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        self.velocity_and_gradient = 1j * torch.stack([m.expand(shape) for m in multipliers]).to(complex_dtype)
        self.dealias = ((integer_x.abs() < n / 3) & (integer_y < n / 3)).to(dtype)
        self.laplacian = self.laplacian.to(dtype)
        self.n = n

    def advection(self, w_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """u . grad w as rfft2 coefficients (B, N, N//2+1), not yet dealiased, and the velocity (B, 2, N, N)."""
        fields = torch.fft.irfft2(self.velocity_and_gradient * w_hat[:, None], s=(self.n, self.n))
        product = fields[:, 0] * fields[:, 2]
        product.addcmul_(fields[:, 1], fields[:, 3])
        return torch.fft.rfft2(product), fields[:, :2]


@functools.lru_cache(maxsize=8)
def _cached_operators(n: int, device: torch.device, dtype: torch.dtype) -> SpectralOperators:
    """SpectralOperators of an n x n grid, kept for the few (n, device, dtype) a training run uses."""
    return SpectralOperators(n, device, dtype)


def solve_navier_stokes(
    w0: torch.Tensor,
    times,
    viscosity: float,
    forcing: torch.Tensor | None = None,
    dt: float | None = None,
    cfl: float = DEFAULT_CFL,
    max_dt: float = DEFAULT_MAX_DT,
    stride: int = 1,
) -> torch.Tensor:
    """Vorticity snapshots of a batch of flows at ``times``.

    ``w0`` (B, N, N) real (N even) is the vorticity at ``times[0]``; ``times``
    (T,) increasing; ``forcing`` (N, N) or None. The solve runs in the dtype and
    on the device of ``w0``. ``dt`` fixes the step (shortened to land on each
    time), else it adapts to ``cfl`` and ``max_dt``. Returns (B, T, N/stride,
    N/stride): every ``stride``-th grid point of each snapshot, the first being w0.
    Raises NonFiniteSolution (a SolverError) naming the batch entry on NaN/inf.
    """
    if w0.dim() != 3 or w0.shape[1] != w0.shape[2] or w0.shape[1] % 2 or w0.shape[1] < MIN_RESOLUTION:
        raise ShapeError(f"Navier-Stokes w0 must have shape (batch, N, N) with N even and >= {MIN_RESOLUTION}, "
                         f"got {tuple(w0.shape)}")
    if not w0.is_floating_point() or w0.dtype not in (torch.float32, torch.float64):
        raise ConfigError(f"Navier-Stokes w0 must be float32 or float64, got {w0.dtype}")
    times = [float(t) for t in np.asarray(times, dtype=np.float64).reshape(-1)]
    if len(times) < 1 or any(not math.isfinite(t) for t in times) or any(b <= a for a, b in zip(times, times[1:])):
        raise ConfigError("Navier-Stokes times must be finite and strictly increasing, e.g. np.linspace(0, T, 51)")
    n = w0.shape[1]
    if not isinstance(stride, int) or stride < 1 or n % stride:
        raise ConfigError(f"Navier-Stokes stride must be a positive integer dividing N = {n}, got {stride!r}")
    numbers = {"viscosity": viscosity, "cfl": cfl, "max_dt": max_dt, **({} if dt is None else {"dt": dt})}
    for label, value in numbers.items():
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"Navier-Stokes {label} must be a finite number > 0, got {value!r}")

    forcing = torch.zeros_like(w0[0]) if forcing is None else torch.as_tensor(forcing).to(w0)
    if tuple(forcing.shape) != (n, n):
        raise ShapeError(f"Navier-Stokes forcing must have shape ({n}, {n}), got {tuple(forcing.shape)}")

    operators = SpectralOperators(n, w0.device, w0.dtype)
    w_hat, forcing_hat = torch.fft.rfft2(w0), torch.fft.rfft2(forcing)
    stepper = _ImexRungeKutta3(operators, viscosity, forcing_hat, w_hat)
    snapshots = w0.new_empty((w0.shape[0], len(times), n // stride, n // stride))
    snapshots[:, 0] = w0[:, ::stride, ::stride]
    _check_finite(w0, times[0])
    for j in range(1, len(times)):
        stepper.advance(times[j] - times[j - 1], dt, cfl, max_dt, times[j])
        w = torch.fft.irfft2(stepper.w_hat, s=(n, n))
        _check_finite(w, times[j])
        snapshots[:, j] = w[:, ::stride, ::stride]
    return snapshots


class _ImexRungeKutta3:
    """State of the RK3/CN integrator: w_hat (B, N, N//2+1) and the advection at it."""

    def __init__(self, operators: SpectralOperators, viscosity: float, forcing_hat: torch.Tensor,
                 w_hat: torch.Tensor) -> None:
        self.operators, self.viscosity, self.forcing_hat = operators, viscosity, forcing_hat
        self.w_hat = w_hat
        self.advection, velocity = operators.advection(w_hat)
        self.speed = _speed(velocity)

    def advance(self, interval: float, dt: float | None, cfl: float, max_dt: float, end_time: float) -> None:
        """Integrate over ``interval`` in a whole number of equal steps; redo it if the CFL number overshot."""
        speed = float(self.speed)
        if not math.isfinite(speed):
            _raise_nonfinite(self.w_hat, end_time - interval)
        while True:
            if dt is not None:
                step_count = max(1, math.ceil(interval / dt - 1e-9))
            else:
                limit = min(max_dt, cfl / (speed * self.operators.n)) if speed > 0 else max_dt
                step_count = max(1, math.ceil(interval / limit - 1e-9))
            if step_count > MAX_STEPS_PER_INTERVAL:
                raise SolverError(f"Navier-Stokes time step collapsed to {interval / step_count:.3g} before "
                                  f"t = {end_time:.6g} (the flow speeds up without bound); use a larger viscosity")
            saved = (self.w_hat, self.advection, self.speed)
            step = interval / step_count
            largest_speed = float(self._run(step, step_count))
            if not math.isfinite(largest_speed):
                _raise_nonfinite(self.w_hat, end_time)
            if dt is not None or largest_speed * step * self.operators.n <= REDO_FACTOR * cfl:
                return
            self.w_hat, self.advection, self.speed = saved
            speed = largest_speed

    def _stage_factors(self, step: float) -> list[tuple[torch.Tensor, ...]]:
        """Per substep: (1 - a) / (1 + a), forcing and advection weights times h / (1 + a), a = alpha_i h nu |k|^2.

        Complex tensors, because real * complex products take a slow type-promotion path.
        """
        factors = []
        complex_dtype = self.w_hat.dtype
        for gamma, zeta, alpha in zip(GAMMA, ZETA, ALPHA):
            viscous = alpha * step * self.viscosity * self.operators.laplacian
            implicit_step = step / (1 + viscous)
            factors.append((
                ((1 - viscous) / (1 + viscous)).to(complex_dtype),
                (gamma + zeta) * implicit_step.to(complex_dtype) * self.forcing_hat,
                (gamma * implicit_step * self.operators.dealias).to(complex_dtype),
                (zeta * implicit_step * self.operators.dealias).to(complex_dtype),
            ))
        return factors

    def _run(self, step: float, step_count: int) -> torch.Tensor:
        """``step_count`` steps of size ``step``; returns the largest max|u| + max|v| at their starts and end."""
        factors = self._stage_factors(step)
        largest_speed = self.speed
        for _ in range(step_count):
            w_hat, advection, earlier_advection = self.w_hat, self.advection, None
            for explicit, forcing, weight_now, weight_before in factors:
                w_hat = explicit * w_hat
                w_hat.add_(forcing)
                w_hat.addcmul_(weight_now, advection, value=-1.0)
                if earlier_advection is not None:
                    w_hat.addcmul_(weight_before, earlier_advection, value=-1.0)
                earlier_advection = advection
                advection, velocity = self.operators.advection(w_hat)
            self.w_hat, self.advection, self.speed = w_hat, advection, _speed(velocity)
            largest_speed = torch.maximum(largest_speed, self.speed)
        return largest_speed


def _speed(velocity: torch.Tensor) -> torch.Tensor:
    """max|u| + max|v| over a batch of velocities (B, 2, N, N), 0-d."""
    return torch.linalg.vector_norm(velocity, ord=math.inf, dim=(0, 2, 3)).sum()


def _check_finite(w: torch.Tensor, time: float) -> None:
    check_finite("Navier-Stokes", w, time, SMALLER_STEP)


def _raise_nonfinite(w_hat: torch.Tensor, time: float) -> NoReturn:
    """Raise NonFiniteSolution naming the first entry of w_hat (B, N, N//2+1) with NaN/inf (entry 0 if none has)."""
    _check_finite(torch.view_as_real(w_hat), time)
    raise NonFiniteSolution("Navier-Stokes", 0, time, SMALLER_STEP)


class NavierStokes(PeriodicEvolution):
    """2-D Navier-Stokes data: vorticity trajectories (T, 1, R, R) from mean-zero GRF initial vorticity.

    Defaults follow the FNO paper (viscosity 1e-3, T = 50, 50 snapshots after
    t = 0, solved at 256 x 256). Sample ``i`` draws its noise at the solver
    resolution from np.random.default_rng([seed, i]), so the same seed gives the
    same flows at every stored resolution R (which must divide the solver's).
    """

    name: ClassVar[str] = "navier_stokes"
    dim: ClassVar[int] = 2
    label: ClassVar[str] = "Navier-Stokes"
    min_resolution: ClassVar[int] = MIN_RESOLUTION
    nonfinite_hint: ClassVar[str] = SMALLER_STEP

    viscosity: float = Field(1e-3, gt=0, allow_inf_nan=False, description="kinematic viscosity nu")
    forcing_amplitude: float = Field(0.1, allow_inf_nan=False,
                                     description="f = amplitude (sin 2 pi (x + y) + cos 2 pi (x + y))")
    final_time: FinalTime = 50.0
    n_times: SnapshotCount = 50
    solver_resolution: SolverResolution = Field(256, ge=8, multiple_of=2)
    alpha: Smoothness = 2.5
    tau: InverseLength = 7.0
    sigma: Amplitude = 7.0**1.5
    cfl: float = Field(DEFAULT_CFL, gt=0, le=1, allow_inf_nan=False,
                       description="adaptive step: h (max|u| + max|v|) N <= cfl")
    max_dt: float = Field(DEFAULT_MAX_DT, gt=0, allow_inf_nan=False, description="largest adaptive step")
    dt: float | None = Field(None, gt=0, allow_inf_nan=False, description="fixed step instead of adaptive")
    precision: Literal["float64", "float32"] = Field("float64", description="floating-point type of the solve")

    def forcing(self, device="cpu") -> torch.Tensor:
        """Vorticity forcing on the solver grid, (N, N) float64: amplitude (sin 2 pi (x+y) + cos 2 pi (x+y))."""
        n = self.solver_resolution
        grid = torch.arange(n, dtype=torch.float64, device=device) / n
        phase = 2 * math.pi * (grid[:, None] + grid[None, :])
        return self.forcing_amplitude * (torch.sin(phase) + torch.cos(phase))

    def solve(self, initial: torch.Tensor, stride: int, device="cpu") -> torch.Tensor:
        """Vorticity at the stored times and points, (B, n_times + 1, N / stride, N / stride) in ``precision``."""
        dtype = torch.float64 if self.precision == "float64" else torch.float32
        return solve_navier_stokes(initial.to(dtype), self.times(), self.viscosity, self.forcing(device), dt=self.dt,
                                   cfl=self.cfl, max_dt=self.max_dt, stride=stride)

    def spatial_operator(self, u: torch.Tensor) -> torch.Tensor:
        """u . grad w - nu Laplacian w - f of vorticity snapshots ``u`` = w (M, N, N), (M, N, N) in w's dtype.

        As the solver: rfft2 of the result = D rfft2(u . grad w) + nu |k|^2 w_hat - f_hat, the velocity
        (psi_y, -psi_x) from -Laplacian psi = w, D the 2/3 rule; f is ``forcing()`` on the N x N grid.
        """
        n = u.shape[-1]
        operators = _cached_operators(n, u.device, u.dtype)
        w_hat = torch.fft.rfft2(u)
        advection_hat, _ = operators.advection(w_hat)
        viscous_hat = self.viscosity * operators.laplacian * w_hat
        forcing = self.model_copy(update={"solver_resolution": n}).forcing(u.device).to(u.dtype)
        return torch.fft.irfft2(operators.dealias * advection_hat + viscous_hat, s=(n, n)) - forcing
