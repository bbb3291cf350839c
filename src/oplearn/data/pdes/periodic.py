"""What the time-dependent PDEs on the periodic unit cube [0, 1)^dim share.

Each draws its initial condition from a periodic Gaussian random field with
covariance sigma^2 (-Laplacian + tau^2)^(-alpha) on the solver grid
x_j = j / N, solves there and stores every ``stride``-th point of the
snapshots at linspace(0, final_time, n_times + 1). A subclass sets ``dim``,
``label`` (the name in messages) and, where they differ, the field defaults,
and implements ``solve``; ``PeriodicEvolution.solve_batch`` does the rest
(sampling, the stored-grid check, float32 output and the NaN/inf check).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from oplearn.data.grf import GaussianRandomField
from oplearn.errors import ConfigError, SolverError


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
