"""Tests of the spectral method-of-lines advection solver against exact translation, and of its sampler."""

import math

import numpy as np
import pytest
import torch

from oplearn.data import generate
from oplearn.data.pdes import PDES, get_pde
from oplearn.data.pdes.advection import Advection, advection_time_step, solve_advection
from oplearn.data.pdes.timestepping import FORWARD_EULER, HEUN, RK4, SSP_RK3
from oplearn.errors import ConfigError, ShapeError

SMALL = {"solver_resolution": 64, "final_time": 0.5, "n_times": 4}


def translated(u0: torch.Tensor, shift: float) -> torch.Tensor:
    """u0(x - shift) for the trigonometric interpolant of u0 (B, N): mode k times exp(-2 pi i k shift).

    u0 must have no Nyquist content (its translate is not a grid function)."""
    points = u0.shape[-1]
    k = torch.arange(points // 2 + 1, dtype=torch.float64)
    return torch.fft.irfft(torch.fft.rfft(u0) * torch.exp(-2j * math.pi * k * shift), n=points)


def without_nyquist(u: torch.Tensor) -> torch.Tensor:
    coefficients = torch.fft.rfft(u)
    coefficients[..., -1] = 0
    return torch.fft.irfft(coefficients, n=u.shape[-1])


def test_matches_exact_translation_to_the_rk4_error():
    problem = Advection(solver_resolution=64, velocity=-1.3)
    u0 = without_nyquist(problem.initial_condition(seed=0, indices=range(3)))
    times = np.linspace(0.0, 1.0, 5)
    step = advection_time_step(64, -1.3)
    u = solve_advection(u0, -1.3, times, step)
    for j, t in enumerate(times):
        exact = translated(u0, -1.3 * t)
        assert (u[:, j] - exact).abs().max() < 2e-4 * exact.abs().max()  # measured 5e-5 at t = 1
    # Mode by mode the RK4 solution is exactly v0 R(z)^n, R(z) = 1 + z + z^2/2 + z^3/6 + z^4/24.
    n = math.ceil(0.25 / step)
    z = -2j * math.pi * -1.3 * (0.25 / n) * torch.arange(33, dtype=torch.float64)
    amplification = 1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24
    predicted = torch.fft.irfft(torch.fft.rfft(u0) * amplification ** (4 * n), n=64)
    torch.testing.assert_close(u[:, -1], predicted, rtol=0, atol=1e-12)


@pytest.mark.parametrize("tableau", [FORWARD_EULER, HEUN, SSP_RK3, RK4], ids=lambda t: t.name)
def test_measured_order_of_each_runge_kutta_method(tableau):
    # A two-mode profile: modes beyond it stay zero, so Euler's and Heun's instability on the
    # imaginary axis cannot grow from them and only the time error is measured.
    x = torch.arange(16, dtype=torch.float64) / 16
    u0 = (torch.sin(2 * math.pi * x) + 0.5 * torch.cos(4 * math.pi * x))[None]
    exact = translated(u0, 0.5)
    steps = [0.004, 0.002, 0.001]
    errors = [float((solve_advection(u0, 1.0, [0.0, 0.5], dt, tableau)[0, -1] - exact).abs().max()) for dt in steps]
    order = float(np.polyfit(np.log(steps), np.log(errors), 1)[0])
    assert order == pytest.approx(tableau.order, abs=0.15), errors


def test_zero_velocity_keeps_the_profile():
    u0 = Advection(solver_resolution=32).initial_condition(1, [0])
    u = solve_advection(u0, 0.0, [0.0, 0.5, 1.0], advection_time_step(32, 0.0))
    torch.testing.assert_close(u, u0[:, None].expand(1, 3, 32), rtol=0, atol=1e-15)


def test_solve_batch_shapes_dtype_times_and_periodicity():
    problem = get_pde("advection", **{**SMALL, "final_time": 1.0})
    assert PDES["advection"] is Advection and problem.name == "advection" and not problem.steady
    assert problem.shapes(32) == {"trajectories": (5, 1, 32)}
    times = problem.extra(32)["times"]
    assert times.dtype == np.float64
    np.testing.assert_array_equal(times, [0.0, 0.25, 0.5, 0.75, 1.0])
    trajectories = problem.solve_batch(seed=0, indices=range(2), resolution=32)["trajectories"]
    assert trajectories.shape == (2, 5, 1, 32) and trajectories.dtype == np.float32
    # c = 1, T = 1: once around the domain; at T / 4 the profile has moved by 8 of 32 points.
    np.testing.assert_allclose(trajectories[:, -1], trajectories[:, 0], atol=1e-3)
    np.testing.assert_allclose(trajectories[:, 1], np.roll(trajectories[:, 0], 8, axis=-1), atol=1e-3)
    assert np.abs(trajectories[:, 1] - trajectories[:, 0]).max() > 0.1


def test_same_seed_same_functions_at_every_resolution_and_any_batching():
    problem = Advection(**SMALL)
    fine = problem.solve_batch(seed=4, indices=range(3), resolution=32)["trajectories"]
    np.testing.assert_array_equal(problem.solve_batch(4, range(3), 16)["trajectories"], fine[..., ::2])
    alone = np.concatenate([problem.solve_batch(4, [i], 32)["trajectories"] for i in range(3)])
    np.testing.assert_array_equal(alone, fine)
    assert np.abs(problem.solve_batch(5, range(3), 32)["trajectories"] - fine).max() > 0.1


def test_generate_writes_advection_trajectories():
    data = generate("advection", 3, 16, seed=2, params=SMALL, workers=1, batch=2, progress=False)
    assert data["trajectories"].shape == (3, 5, 1, 16)
    np.testing.assert_array_equal(data["times"], np.linspace(0, 0.5, 5))


@pytest.mark.parametrize(
    "params, match",
    [
        ({"velocity": float("inf")}, "velocity"),
        ({"final_time": -1.0}, "final_time"),
        ({"n_times": 0}, "n_times"),
        ({"dt": 0.0}, "dt"),
        ({"tau": -5.0}, "tau"),
        ({"solver_resolution": 8}, "solver_resolution"),
        ({"speed": 1.0}, "valid parameters"),
    ],
)
def test_bad_parameters_raise_config_error(params, match):
    with pytest.raises(ConfigError, match=match):
        get_pde("advection", **params)


@pytest.mark.parametrize("resolution, match", [(48, "does not divide"), (4, "between"), (2048, "between")])
def test_bad_resolutions_raise_config_error(resolution, match):
    problem = Advection()
    for call in (problem.shapes, problem.extra, lambda r: problem.solve_batch(0, [0], r)):
        with pytest.raises(ConfigError, match=match):
            call(resolution)


def test_bad_solver_inputs_raise():
    u0 = torch.zeros(1, 16, dtype=torch.float64)
    with pytest.raises(ShapeError, match="batch, N"):
        solve_advection(u0[0], 1.0, [0.0, 1.0], 0.01)
    with pytest.raises(ShapeError, match="evenly spaced"):
        solve_advection(u0, 1.0, [0.0, 0.5, 0.6], 0.01)
    with pytest.raises(ConfigError, match="velocity"):
        solve_advection(u0, math.nan, [0.0, 1.0], 0.01)
    with pytest.raises(ConfigError, match="time step"):
        solve_advection(u0, 1.0, [0.0, 1.0], -0.01)
