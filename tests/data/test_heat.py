"""Tests of the Crank-Nicolson heat solver and the Heat data sampler."""

import math

import numpy as np
import pytest
import torch

from oplearn.data.grf import GaussianRandomField
from oplearn.data.pdes import PDES, get_pde
from oplearn.data.pdes.heat import Heat, solve_heat
from oplearn.errors import ConfigError, ShapeError, SolverError

PI = math.pi
MODES = ((1, 0, 1.0), (1, 2, -0.7), (3, -1, 0.4))  # (k_x, k_y, amplitude) of cos 2 pi (k_x x + k_y y)


def grid(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.arange(n, dtype=torch.float64) / n
    return torch.meshgrid(x, x, indexing="ij")  # x along axis 0, y along axis 1


def modes_at(n: int, t: float, kappa: float, factor=None) -> torch.Tensor:
    """Sum of the MODES at time t: each decays by exp(-kappa 4 pi^2 |k|^2 t), or by factor(|k|^2)."""
    x, y = grid(n)
    total = torch.full_like(x, 0.3)  # the mean never changes
    for kx, ky, amplitude in MODES:
        decay = math.exp(-kappa * 4 * PI**2 * (kx**2 + ky**2) * t) if factor is None else factor(kx**2 + ky**2)
        total = total + amplitude * decay * torch.cos(2 * PI * (kx * x + ky * y))
    return total


def test_modes_decay_as_the_exact_solution():
    kappa, times = 0.05, np.linspace(0.0, 0.5, 6)
    solution = solve_heat(modes_at(32, 0.0, kappa)[None], times, kappa, dt=1e-4)
    exact = torch.stack([modes_at(32, t, kappa) for t in times])
    assert (solution[0] - exact).abs().max() < 1e-7  # Crank-Nicolson error ~ t (kappa |k|^2)^3 dt^2 / 12
    # Decay is real: the last snapshot is far from the first.
    assert (solution[0, -1] - solution[0, 0]).abs().max() > 0.5


@pytest.mark.parametrize("dt, final_time", [(0.01, 0.3), (0.15, 0.45)])  # the second has factors g_k < 0
def test_each_interval_is_exactly_the_crank_nicolson_steps(dt, final_time):
    kappa = 0.05
    solution = solve_heat(modes_at(16, 0.0, kappa)[None], [0.0, final_time / 3, final_time], kappa, dt=dt)

    def crank_nicolson(k_squared):
        half = 0.5 * dt * kappa * 4 * PI**2 * k_squared
        return ((1 - half) / (1 + half)) ** round(final_time / dt)

    expected = modes_at(16, 0.0, kappa, factor=crank_nicolson)
    assert (solution[0, -1] - expected).abs().max() < 1e-13


def test_grf_initial_condition_matches_per_mode_exact_decay():
    u0 = GaussianRandomField(2, 32, alpha=2.0, tau=3.0, sigma=3.0).sample(2, torch.Generator().manual_seed(0))
    kappa, t = 0.01, 0.4
    solution = solve_heat(u0, [0.0, t], kappa, dt=1e-4)[:, -1]
    k = torch.fft.fftfreq(32, d=1 / 32, dtype=torch.float64)
    k_squared = k[:, None] ** 2 + k[None, :] ** 2
    exact = torch.fft.ifft2(torch.fft.fft2(u0) * torch.exp(-kappa * 4 * PI**2 * k_squared * t)).real
    relative = (solution - exact).norm() / exact.norm()
    assert relative < 1e-8, relative


def test_crank_nicolson_converges_at_second_order():
    kappa, final_time = 0.05, 1.0
    u0 = modes_at(16, 0.0, kappa)[None]
    exact = modes_at(16, final_time, kappa)
    errors = [float((solve_heat(u0, [0.0, final_time], kappa, dt=dt)[0, -1] - exact).abs().max())
              for dt in (0.04, 0.02, 0.01, 0.005)]
    orders = [math.log2(coarse / fine) for coarse, fine in zip(errors, errors[1:])]
    assert all(1.95 < p < 2.05 for p in orders), (errors, orders)


def test_sample_shapes_times_and_initial_condition():
    pde = Heat(solver_resolution=32, final_time=0.5, n_times=5)
    assert Heat.name == "heat" and Heat.steady is False
    assert pde.shapes(16) == {"trajectories": (6, 1, 16, 16)}
    np.testing.assert_allclose(pde.extra(16)["times"], [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], rtol=0, atol=1e-15)
    assert pde.extra(16)["times"].dtype == np.float64
    out = pde.solve_batch(seed=3, indices=range(4, 7), resolution=16)["trajectories"]
    assert out.shape == (3, 6, 1, 16, 16) and out.dtype == np.float32
    noise = np.random.default_rng([3, 5]).standard_normal((1, 32, 32))
    u0 = GaussianRandomField(2, 32, alpha=2.0, tau=3.0, sigma=3.0).sample_from_noise(torch.from_numpy(noise))
    np.testing.assert_allclose(out[1, 0, 0], u0[0, ::2, ::2].numpy(), rtol=1e-6, atol=1e-6)
    # On the full solver grid the mean is conserved and the variance decays.
    full = pde.solve_batch(seed=3, indices=range(4, 7), resolution=32)["trajectories"][:, :, 0].astype(np.float64)
    means, spreads = full.mean(axis=(2, 3)), full.std(axis=(2, 3))
    np.testing.assert_allclose(means, means[:, :1].repeat(6, axis=1), atol=1e-6)
    assert np.all(np.diff(spreads, axis=1) < 0)


def test_same_seed_same_functions_at_every_resolution_and_batching():
    pde = Heat(solver_resolution=32, final_time=0.2, n_times=2)
    fine = pde.solve_batch(7, [0, 1, 2], 32)["trajectories"]
    coarse = pde.solve_batch(7, [0, 1, 2], 8)["trajectories"]
    np.testing.assert_array_equal(coarse, fine[..., ::4, ::4])
    alone = pde.solve_batch(7, [2], 32)["trajectories"]
    np.testing.assert_allclose(alone[0], fine[2], rtol=0, atol=1e-6)
    assert not np.allclose(fine[0], fine[1])


def test_bad_parameters_raise_config_error(monkeypatch):
    monkeypatch.setitem(PDES, "heat", Heat)
    for params in ({"diffusivity": 0.0}, {"dt": -1e-3}, {"final_time": float("nan")}, {"n_times": 0},
                   {"kappa": 0.1}):
        with pytest.raises(ConfigError, match="invalid parameter for heat"):
            get_pde("heat", **params)
    pde = Heat(solver_resolution=32)
    for resolution in (12, 2, 64, 16.0):
        with pytest.raises(ConfigError, match="solver_resolution = 32"):
            pde.shapes(resolution)
    with pytest.raises(ConfigError, match="index"):
        pde.solve_batch(0, [-1], 16)
    u0 = torch.zeros(1, 8, 8, dtype=torch.float64)
    with pytest.raises(ConfigError, match="dt"):
        solve_heat(u0, [0.0, 1.0], 0.1, dt=0.0)
    with pytest.raises(ConfigError, match="increasing"):
        solve_heat(u0, [0.0, 1.0, 1.0], 0.1, dt=0.1)
    with pytest.raises(ShapeError):
        solve_heat(torch.zeros(8, 8, dtype=torch.float64), [0.0, 1.0], 0.1, dt=0.1)


def test_non_finite_solution_names_the_sample(monkeypatch):
    def poisoned(self, seed, indices, device="cpu"):
        u0 = torch.zeros(len(indices), self.solver_resolution, self.solver_resolution, dtype=torch.float64)
        u0[1, 3, 3] = float("inf")
        return u0

    monkeypatch.setattr(Heat, "initial_condition", poisoned)
    with pytest.raises(SolverError, match="heat sample 8 .*NaN/inf"):
        Heat(solver_resolution=16, final_time=0.1, n_times=1).solve_batch(0, [7, 8, 9], 16)
