"""Tests of the pseudo-spectral ETDRK4 Burgers solver against the Cole-Hopf solution, and of the Burgers sampler."""

import math

import numpy as np
import pytest
import torch

from oplearn.data import generate
from oplearn.data.pdes import PDES, get_pde
from oplearn.data.pdes.burgers import Burgers, burgers_time_step, solve_burgers
from oplearn.errors import ConfigError, ShapeError, SolverError

SMALL = {"solver_resolution": 256, "final_time": 0.1, "n_times": 2}


def cole_hopf_sine(points: int, viscosity: float, times) -> torch.Tensor:
    """Exact solution from u0 = sin(2 pi x), shape (T, points).

    u = -2 nu phi_x / phi, where phi_t = nu phi_xx and phi0 = exp(-(1 / 2 nu) int_0^x u0)
    = exp((cos(2 pi x) - 1) / (4 pi nu)). phi0 is entire, so its FFT on the grid gives
    its Fourier series to machine precision, and each mode decays by exp(-nu (2 pi k)^2 t).
    """
    x = torch.arange(points, dtype=torch.float64) / points
    phi0 = torch.fft.fft(torch.exp((torch.cos(2 * math.pi * x) - 1) / (4 * math.pi * viscosity)))
    k = torch.fft.fftfreq(points, 1.0 / points, dtype=torch.float64)
    exact = []
    for t in times:
        phi = phi0 * torch.exp(-viscosity * (2 * math.pi * k) ** 2 * t)
        exact.append(-2 * viscosity * torch.fft.ifft(2j * math.pi * k * phi).real / torch.fft.ifft(phi).real)
    return torch.stack(exact)


def sine(points: int) -> torch.Tensor:
    return torch.sin(2 * math.pi * torch.arange(points, dtype=torch.float64) / points)[None]


def relative_error(u: torch.Tensor, reference: torch.Tensor) -> float:
    return float((u - reference).abs().max() / reference.abs().max())


@pytest.mark.parametrize(
    "points, viscosity, time_step, tolerance",
    [(256, 0.1, None, 1e-9), (512, 0.02, 5e-4, 1e-10)],  # None: the CFL step 0.5 / (N max|u0|)
)
def test_matches_cole_hopf_solution(points, viscosity, time_step, tolerance):
    times = np.linspace(0.0, 0.5, 6)
    u0 = sine(points)
    step = burgers_time_step(u0) if time_step is None else time_step
    u = solve_burgers(u0, viscosity, times, step)[0]
    exact = cole_hopf_sine(points, viscosity, times)
    assert relative_error(u, exact) < tolerance  # measured 2.5e-10 and 2.7e-11
    # The nonlinearity matters: the pure heat-equation answer is far off.
    heat = torch.exp(-viscosity * (2 * math.pi) ** 2 * torch.as_tensor(times))[:, None] * u0
    assert relative_error(heat, exact) > 0.05


def test_etdrk4_converges_at_fourth_order_in_time():
    times, steps = np.linspace(0.0, 0.5, 3), [0.05, 0.025, 0.0125]
    exact = cole_hopf_sine(128, 0.1, times)
    errors = [relative_error(solve_burgers(sine(128), 0.1, times, dt)[0], exact) for dt in steps]
    order = float(np.polyfit(np.log(steps), np.log(errors), 1)[0])
    assert 3.5 < order < 4.6, errors  # measured about 3.8 (errors 7e-5, 5e-6, 4e-7)


def test_two_thirds_rule_keeps_high_modes_out_of_the_nonlinear_term():
    # cos(2 pi k x) with k >= N / 3 is removed before squaring, so it only diffuses; without the
    # rule its square would alias onto the resolved mode N - 2k and spread energy there.
    points, k, viscosity, times = 48, 17, 1e-3, [0.0, 0.01, 0.02]
    x = torch.arange(points, dtype=torch.float64) / points
    u0 = 20 * torch.cos(2 * math.pi * k * x)[None]
    u = solve_burgers(u0, viscosity, times, 1e-3)[0]
    decay = torch.exp(-viscosity * (2 * math.pi * k) ** 2 * torch.tensor(times, dtype=torch.float64))
    torch.testing.assert_close(u, decay[:, None] * u0[0], rtol=0, atol=1e-12)


def test_mean_is_conserved_and_maximum_does_not_grow():
    problem = Burgers(solver_resolution=256, final_time=0.5, n_times=5, viscosity=0.02)
    u0 = problem.initial_condition(seed=3, indices=[0, 1])
    u = solve_burgers(u0, problem.viscosity, np.linspace(0, 0.5, 6), burgers_time_step(u0))
    assert u.mean(dim=-1).abs().max() < 1e-13  # the constant mode is zero and stays zero
    maxima = u.abs().amax(dim=-1)
    assert bool((maxima[:, 1:] <= maxima[:, :-1] + 1e-12).all())
    assert bool((maxima[:, -1] < 0.9 * maxima[:, 0]).all())  # and viscosity has visibly damped it


def test_same_seed_same_functions_at_every_resolution_and_any_batching():
    problem = Burgers(**SMALL)
    fine = problem.solve_batch(seed=7, indices=range(3), resolution=64)["trajectories"]
    coarse = problem.solve_batch(seed=7, indices=range(3), resolution=32)["trajectories"]
    np.testing.assert_array_equal(coarse, fine[..., ::2])
    steps = burgers_time_step(problem.initial_condition(7, range(3)))
    assert len(set(steps.tolist())) == 3  # each sample has its own CFL step ...
    alone = np.concatenate([problem.solve_batch(7, [i], 64)["trajectories"] for i in range(3)])
    np.testing.assert_array_equal(alone, fine)  # ... so its batch mates do not change it
    shifted = problem.solve_batch(seed=7, indices=[2, 1], resolution=64)["trajectories"]
    np.testing.assert_array_equal(shifted, fine[[2, 1]])
    other_seed = problem.solve_batch(seed=8, indices=range(3), resolution=64)["trajectories"]
    assert np.abs(other_seed - fine).max() > 0.1


def test_initial_condition_is_the_zero_mean_grf_of_the_fno_paper():
    problem = Burgers(solver_resolution=128)
    u0 = problem.initial_condition(seed=0, indices=range(400))
    coefficients = torch.fft.rfft(u0) / 128
    assert coefficients[:, 0].abs().max() < 1e-15  # mean zero, as the FNO generator (GRF1 with m = 0)
    # E|u_hat_k|^2 = 625 (4 pi^2 k^2 + 25)^(-2) for k = 1, 2 (relative standard error 5%).
    for k in (1, 2):
        expected = 625 * (4 * math.pi**2 * k**2 + 25) ** -2
        assert float(coefficients[:, k].abs().pow(2).mean()) == pytest.approx(expected, rel=0.2)


def test_solve_batch_shapes_dtype_and_times():
    problem = get_pde("burgers", **SMALL)
    assert PDES["burgers"] is Burgers and problem.name == "burgers" and not problem.steady
    assert problem.shapes(64) == {"trajectories": (3, 1, 64)}
    np.testing.assert_array_equal(problem.extra(64)["times"], [0.0, 0.05, 0.1])
    assert problem.extra(64)["times"].dtype == np.float64
    out = problem.solve_batch(seed=0, indices=range(2), resolution=64)
    trajectories = out["trajectories"]
    assert set(out) == {"trajectories"} and trajectories.shape == (2, 3, 1, 64) and trajectories.dtype == np.float32
    u0 = problem.initial_condition(0, range(2))[:, ::4].numpy().astype(np.float32)
    np.testing.assert_array_equal(trajectories[:, 0, 0], u0)  # t = 0 is stored first
    assert np.abs(trajectories[:, -1] - trajectories[:, 0]).max() > 1e-2  # and the solution moves


def test_generate_writes_burgers_trajectories():
    data = generate("burgers", 3, 32, seed=1, params=SMALL, workers=1, batch=2, progress=False)
    assert data["trajectories"].shape == (3, 3, 1, 32)
    np.testing.assert_array_equal(data["times"], [0.0, 0.05, 0.1])
    np.testing.assert_array_equal(data["trajectories"], Burgers(**SMALL).solve_batch(1, range(3), 32)["trajectories"])


def test_explicit_time_step_replaces_the_cfl_step():
    problem = Burgers(**SMALL, dt=0.025)
    stepped = problem.solve_batch(0, [0], 64)["trajectories"]
    expected = solve_burgers(problem.initial_condition(0, [0]), 0.1, [0.0, 0.05, 0.1], 0.025)[:, :, None, ::4]
    np.testing.assert_array_equal(stepped, expected.numpy().astype(np.float32))
    with_cfl = Burgers(**SMALL).solve_batch(0, [0], 64)["trajectories"]
    assert 1e-7 < np.abs(stepped - with_cfl).max() < 1e-2  # 2 steps per interval against about 28


@pytest.mark.parametrize(
    "params, match",
    [
        ({"viscosity": -0.1}, "viscosity"),
        ({"viscosity": 0.0}, "viscosity"),
        ({"viscosity": float("nan")}, "viscosity"),
        ({"final_time": 0.0}, "final_time"),
        ({"n_times": 0}, "n_times"),
        ({"dt": -1e-3}, "dt"),
        ({"solver_resolution": 16}, "solver_resolution"),
        ({"sigma": 0.0}, "sigma"),
        ({"viscocity": 0.1}, "valid parameters"),
    ],
)
def test_bad_parameters_raise_config_error(params, match):
    with pytest.raises(ConfigError, match=match):
        get_pde("burgers", **params)


@pytest.mark.parametrize("resolution, match", [(100, "does not divide"), (4, "between"), (512, "between"),
                                               (64.0, "integer"), (True, "integer")])
def test_bad_resolutions_raise_config_error(resolution, match):
    problem = Burgers(solver_resolution=256)
    for call in (problem.shapes, problem.extra, lambda r: problem.solve_batch(0, [0], r)):
        with pytest.raises(ConfigError, match=match):
            call(resolution)


def test_bad_solver_inputs_raise():
    with pytest.raises(ShapeError, match="batch, N"):
        solve_burgers(sine(64)[0], 0.1, [0.0, 0.1], 0.01)
    with pytest.raises(ShapeError, match="evenly spaced"):
        solve_burgers(sine(64), 0.1, [0.0, 0.1, 0.3], 0.01)
    with pytest.raises(ConfigError, match="viscosity"):
        solve_burgers(sine(64), -0.1, [0.0, 0.1], 0.01)
    with pytest.raises(ConfigError, match="time step"):
        solve_burgers(sine(64), 0.1, [0.0, 0.1], 0.0)
    with pytest.raises(ConfigError, match="index"):
        Burgers(solver_resolution=64).solve_batch(0, [-1], 64)


def test_divergence_raises_solver_error_naming_the_sample():
    problem = Burgers(solver_resolution=64, viscosity=1e-4, sigma=1e4, dt=0.01, final_time=0.1)
    with pytest.raises(SolverError, match=r"sample 5 .*NaN/inf.*smaller time step, e\.g\. dt=0\.0025"):
        problem.solve_batch(seed=0, indices=[5, 6], resolution=64)
