"""What the time-dependent PDEs on the periodic unit cube [0, 1)^dim share.

Each draws its initial condition from a periodic Gaussian random field with
covariance sigma^2 (-Laplacian + tau^2)^(-alpha) on the solver grid
x_j = j / N, solves there and stores every ``stride``-th point of the
snapshots at linspace(0, final_time, n_times + 1). A subclass sets ``dim``,
``label`` (the name in messages) and, where they differ, the field defaults,
and implements ``solve``; ``PeriodicEvolution.solve_batch`` does the rest
(sampling, the stored-grid check, float32 output and the NaN/inf check).

PDE residuals (physics-informed training). Each PDE is u_t + N(u) = 0 with a
spatial operator N that a subclass supplies (``spatial_operator``, spectral on
the periodic grid x_j = j / N, nonlinear terms dealiased as its solver does).
``PeriodicEvolution.residual(u, batch)`` joins the snapshots
cat(batch.inputs, u) on the times input_times + output_times of
``batch.params`` (a first output at the last input time replaces that input),
which must increase with one spacing dt, and returns

    r = D_t u + N(u)   at every time of that sequence,   (B, 1, T', *S),

with D_t the second-order finite difference in time (central inside,
one-sided at both ends: ``oplearn.derivatives.finite_difference``). The
scale is the raw equation as written in each PDE's module docstring (units
of u per unit time), not normalised. For data the solver produced, r is the
time-discretisation error, O(dt^2).
``initial_residual(u, batch)`` is u(first output) - input(last) when both sit
at the same time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar

import math

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from oplearn.data.grf import GaussianRandomField
from oplearn.derivatives import finite_difference
from oplearn.errors import ConfigError, ShapeError, SolverError


def _positive(description: str):
    return Annotated[float, Field(gt=0, allow_inf_nan=False, description=description)]


# Field types carrying their constraints, so a subclass changes a default in one line (`tau: InverseLength = 3.0`).
Smoothness = _positive("GRF smoothness exponent alpha of the initial condition")
InverseLength = _positive("GRF inverse length scale tau of the initial condition")
Amplitude = _positive("GRF amplitude sigma of the initial condition")
FinalTime = _positive("last stored time T")
SnapshotCount = Annotated[int, Field(ge=1, description="stored snapshots after t = 0, at linspace(0, T, n_times + 1)")]
SolverResolution = Annotated[int, Field(description="grid points per axis of the solver; stored grids divide it")]


class NonFiniteSolution(SolverError):
    """Batch entry ``batch_index`` of a solve became NaN/inf by time ``time``; ``hint`` says what to change."""

    def __init__(self, label: str, batch_index: int, time: float, hint: str = "use a smaller time step") -> None:
        super().__init__(f"{label} solution of batch entry {batch_index} became NaN/inf by t = {time:.6g}; {hint}")
        self.batch_index = batch_index
        self.time = time


def check_finite(label: str, values: torch.Tensor, time: float, hint: str = "use a smaller time step") -> None:
    """Raise NonFiniteSolution naming the first batch entry of ``values`` (B, ...) that holds a NaN/inf at ``time``."""
    finite = torch.isfinite(values).flatten(1).all(dim=1)
    if not bool(finite.all()):
        raise NonFiniteSolution(label, int(torch.nonzero(~finite).flatten()[0]), time, hint)


TIME_TOLERANCE = 1e-5  # relative to dt: how far a gap may be from dt, and two times from equal


def periodic_wavenumbers(n: int, device, dtype: torch.dtype, last: bool = False) -> torch.Tensor:
    """Angular wavenumbers 2 pi k of an n-point axis of [0, 1): fftfreq (n,), or rfftfreq (n//2 + 1,) if ``last``."""
    frequency = torch.fft.rfftfreq if last else torch.fft.fftfreq
    frequencies = frequency(n, d=1.0 / n, dtype=torch.float64, device=device)
    return (2 * math.pi * frequencies).to(dtype)


def _times(batch, key: str, label: str) -> list[float]:
    """``batch.params[key]`` as a list of finite floats; ConfigError when missing or malformed."""
    params = batch.params or {}
    if key not in params:
        raise ConfigError(f"{label} residual needs batch.params[{key!r}] (the physical times of the snapshots); "
                          f"the dataset must record input_times and output_times")
    values = params[key]
    try:
        values = [float(t) for t in np.asarray(values, dtype=np.float64).reshape(-1)]
    except (TypeError, ValueError):
        raise ConfigError(f"{label} residual: batch.params[{key!r}] must be a list of numbers, "
                          f"got {values!r}") from None
    if not values or not all(math.isfinite(t) for t in values):
        raise ConfigError(f"{label} residual: batch.params[{key!r}] must be a non-empty list of finite times, "
                          f"got {values!r}")
    return values


def _same_time(a: float, b: float, scale: float) -> bool:
    return abs(a - b) <= TIME_TOLERANCE * scale


def smaller_time_step(step: float) -> str:
    """The remedy for an explicit scheme whose largest step was ``step``: a quarter of it."""
    return f"set a smaller time step, e.g. dt={0.25 * step:.3g}"


class PeriodicEvolution(BaseModel):
    """Base of the periodic time-dependent PDEs: u(0) ~ GRF -> trajectory (n_times + 1, 1, *[R]*dim).

    Sample ``i`` draws its noise at the solver resolution from np.random.default_rng([seed, i]),
    so the same seed gives the same functions at every stored resolution R (a divisor of
    ``solver_resolution``) and in any batch.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dim: ClassVar[int]
    label: ClassVar[str]
    steady: ClassVar[bool] = False
    remove_mean: ClassVar[bool] = True  # set the k = 0 mode of the initial condition to zero
    min_resolution: ClassVar[int] = 8  # smallest stored resolution
    nonfinite_hint: ClassVar[str] = "use a smaller time step"

    alpha: Smoothness = 2.0
    tau: InverseLength = 5.0
    sigma: Amplitude = 25.0
    final_time: FinalTime = 1.0
    n_times: SnapshotCount = 1
    solver_resolution: SolverResolution = Field(256, ge=8)

    def times(self) -> np.ndarray:
        """Stored times linspace(0, final_time, n_times + 1), float64 (T,), t = 0 included."""
        return np.linspace(0.0, self.final_time, self.n_times + 1)

    def stride(self, resolution: int) -> int:
        """Step from the solver grid to a stored grid of ``resolution`` points per axis; ConfigError unless whole."""
        is_integer = isinstance(resolution, (int, np.integer)) and not isinstance(resolution, bool)
        if not is_integer or not self.min_resolution <= resolution <= self.solver_resolution:
            raise ConfigError(f"{self.label} resolution must be an integer between {self.min_resolution} and "
                              f"solver_resolution = {self.solver_resolution}, got {resolution!r}")
        if self.solver_resolution % resolution:
            raise ConfigError(f"{self.label} resolution {resolution} does not divide solver_resolution = "
                              f"{self.solver_resolution}; choose a divisor of {self.solver_resolution} or a "
                              f"solver_resolution that {resolution} divides")
        return self.solver_resolution // int(resolution)

    def shapes(self, resolution: int) -> dict[str, tuple[int, ...]]:
        """Shape of one sample: trajectories (n_times + 1, 1, *[R]*dim)."""
        self.stride(resolution)
        return {"trajectories": (self.n_times + 1, 1, *(resolution,) * self.dim)}

    def extra(self, resolution: int) -> dict[str, np.ndarray]:
        """The stored times, {"times": (n_times + 1,) float64}."""
        self.stride(resolution)
        return {"times": self.times()}

    def initial_condition(self, seed: int, indices: Sequence[int], device="cpu") -> torch.Tensor:
        """GRF initial condition of samples ``indices`` on the solver grid, (B, *[N]*dim) float64 on ``device``.

        The noise of sample i is np.random.default_rng([seed, i]).standard_normal((N,) * dim);
        the field's mean is subtracted when ``remove_mean``.
        """
        indices = list(indices)
        for what, value in (("seed", seed), *(("index", i) for i in indices)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ConfigError(f"{self.label} sample {what} must be an integer >= 0, got {value!r}")
        n = self.solver_resolution
        noise = np.stack([np.random.default_rng([int(seed), int(i)]).standard_normal((n,) * self.dim) for i in indices])
        field = GaussianRandomField(dim=self.dim, resolution=n, alpha=self.alpha, tau=self.tau, sigma=self.sigma)
        values = field.sample_from_noise(torch.from_numpy(noise).to(device))
        if self.remove_mean:
            values = values - values.mean(dim=tuple(range(1, self.dim + 1)), keepdim=True)
        return values

    def solve(self, initial: torch.Tensor, stride: int, device="cpu") -> torch.Tensor:
        """Solution from ``initial`` (B, *[N]*dim) at ``times()`` on every ``stride``-th point, (B, T, *[N/stride]*dim).

        Implemented by each PDE; a solver may raise NonFiniteSolution itself (solve_batch names the sample).
        """
        raise NotImplementedError

    def remedy(self, initial: torch.Tensor, batch_index: int) -> str:
        """What to change when entry ``batch_index`` of ``initial`` (B, ...) gave NaN/inf."""
        return self.nonfinite_hint

    def solve_batch(self, seed: int, indices, resolution: int, device="cpu") -> dict[str, np.ndarray]:
        """Samples ``indices`` solved together: trajectories (len(indices), n_times + 1, 1, *[R]*dim) float32.

        A sample whose stored trajectory holds NaN/inf raises SolverError naming it and the remedy.
        """
        stride = self.stride(resolution)
        indices = list(indices)
        initial = self.initial_condition(seed, indices, device)
        try:
            trajectories = self.solve(initial, stride, device)[:, :, None].to(torch.float32)
            for time, snapshot in zip(self.times(), trajectories.unbind(1)):
                check_finite(self.label, snapshot, float(time))
        except NonFiniteSolution as error:
            raise SolverError(f"{self.label} sample {indices[error.batch_index]} (seed {seed}) became NaN/inf by "
                              f"t = {error.time:.6g}; {self.remedy(initial, error.batch_index)}") from None
        return {"trajectories": trajectories.cpu().numpy()}

    # ---- PDE residuals -------------------------------------------------------------------------------------

    def spatial_operator(self, u: torch.Tensor) -> torch.Tensor:
        """N(u) of u_t + N(u) = 0 for snapshots ``u`` (M, *[N]*dim) on x_j = j / N; same shape and dtype.

        Implemented by each PDE (spectral with torch.fft, differentiable in u).
        """
        raise NotImplementedError(f"{self.label} has no PDE residual")

    def _checked_fields(self, u: torch.Tensor, batch) -> tuple[torch.Tensor, torch.Tensor, list[float], list[float]]:
        """u and batch.inputs in one real dtype (float32 at least) on u's device, with the two time lists, checked."""
        label = self.label
        if not torch.is_tensor(u) or not u.is_floating_point():
            raise ConfigError(f"{label} residual needs a real floating-point tensor u, got "
                              f"{getattr(u, 'dtype', type(u).__name__)}")
        if u.ndim != self.dim + 2:
            raise ShapeError(f"{label} residual needs u of shape (batch, steps, {', '.join(['N'] * self.dim)}), "
                             f"got {tuple(u.shape)}")
        size = u.shape[-1]
        if any(n != size for n in u.shape[2:]) or size < 4:
            raise ShapeError(f"{label} residual needs the same number (>= 4) of points on every axis, "
                             f"got u of shape {tuple(u.shape)}")
        inputs = batch.inputs
        if inputs.ndim != u.ndim or inputs.shape[0] != u.shape[0] or inputs.shape[2:] != u.shape[2:]:
            raise ShapeError(f"{label} residual: batch.inputs {tuple(inputs.shape)} and u {tuple(u.shape)} must "
                             f"share batch size and grid")
        if batch.spacing is not None:
            # The solvers' grid is x_j = j / N (spacing 1/N); files written with grid_location "nodes" report
            # 1/(N - 1) for the same points, which is accepted too. Anything else is another domain.
            spacing = tuple(float(h) for h in batch.spacing)
            allowed = (1.0 / size, 1.0 / (size - 1))
            if len(spacing) != self.dim or any(not any(math.isclose(h, a, rel_tol=1e-6) for a in allowed)
                                               for h in spacing):
                raise ConfigError(f"{label} residual needs the periodic grid x_j = j/N of [0, 1) with spacing "
                                  f"1/{size} per axis, got batch.spacing {spacing}; use data from the {label} solver")
        input_times = _times(batch, "input_times", label)
        output_times = _times(batch, "output_times", label)
        for key, times, tensor in (("input_times", input_times, inputs), ("output_times", output_times, u)):
            if tensor.shape[1] != len(times):
                what = "batch.inputs" if key == "input_times" else "u"
                raise ShapeError(f"{label} residual: {what} has {tensor.shape[1]} snapshots (channels) but "
                                 f"{key} has {len(times)} times; give one time per snapshot")
        dtype = torch.promote_types(u.dtype, torch.float32)
        return u.to(dtype), inputs.to(device=u.device, dtype=dtype), input_times, output_times

    def _sequence(self, u: torch.Tensor, batch) -> tuple[torch.Tensor, float]:
        """cat(inputs, u) on input_times + output_times (a repeated last input dropped): (B, T', *S) and dt."""
        u, inputs, input_times, output_times = self._checked_fields(u, batch)
        times = input_times + output_times
        scale = (max(times) - min(times)) / max(len(times) - 1, 1) or 1.0
        if _same_time(output_times[0], input_times[-1], scale):
            inputs, input_times = inputs[:, :-1], input_times[:-1]
            times = input_times + output_times
        if len(times) < 3:
            raise ConfigError(f"{self.label} residual needs at least 3 distinct snapshot times for its second-order "
                              f"time derivative, got input_times {input_times} and output_times {output_times}")
        step = times[1] - times[0]
        for index, (a, b) in enumerate(zip(times, times[1:])):
            if b <= a or not _same_time(b - a, step, abs(step)):
                raise ConfigError(f"{self.label} residual needs input_times + output_times increasing with one "
                                  f"spacing (first gap {step:.6g}), but times {index} and {index + 1} of that "
                                  f"sequence are {a:.6g} and {b:.6g}; choose evenly spaced snapshots")
        step = (times[-1] - times[0]) / (len(times) - 1)
        return torch.cat([inputs, u], dim=1), step

    def residual(self, u: torch.Tensor, batch) -> torch.Tensor:
        """Pointwise residual D_t u + N(u) of the predicted snapshots, (B, 1, T', *[N]*dim).

        ``u`` (B, T, *[N]*dim) are the predicted snapshots at ``batch.params["output_times"]``;
        they follow ``batch.inputs`` (B, k, *[N]*dim) at ``batch.params["input_times"]``. The
        residual is taken at each of the T' = k + T distinct times of cat(inputs, u) (T' = k + T - 1
        when output_times[0] == input_times[-1]: u then replaces the last input). D_t is the
        second-order finite difference (central inside, one-sided at both ends) on the common
        spacing dt, N the PDE's spectral spatial operator. Differentiable in u; float32 or wider
        (lower precisions are computed in float32), on u's device. Raw scale of the equation.
        """
        sequence, step = self._sequence(u, batch)
        spatial = self.spatial_operator(sequence.reshape(-1, *sequence.shape[2:])).reshape(sequence.shape)
        time_derivative = finite_difference(sequence, dim=1, spacing=step, derivative=1, accuracy=2)
        return (time_derivative + spatial)[:, None]

    def initial_residual(self, u: torch.Tensor, batch) -> torch.Tensor:
        """u at the first output time minus the last input, (B, 1, *[N]*dim), when they share a time.

        ConfigError unless output_times[0] == input_times[-1] (the model then predicts the initial time too).
        """
        u, inputs, input_times, output_times = self._checked_fields(u, batch)
        times = input_times + output_times
        scale = (max(times) - min(times)) / max(len(times) - 1, 1) or 1.0
        if not _same_time(output_times[0], input_times[-1], scale):
            raise ConfigError(f"{self.label} initial residual needs output_steps to include the last input step: "
                              f"output_times[0] = {output_times[0]:.6g} but input_times[-1] = "
                              f"{input_times[-1]:.6g}")
        return (u[:, :1] - inputs[:, -1:])
