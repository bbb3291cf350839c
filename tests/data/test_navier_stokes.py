"""Tests of the pseudo-spectral Navier-Stokes solver and the NavierStokes data sampler."""

import math

import numpy as np
import pytest
import torch

from oplearn.data.grf import GaussianRandomField
from oplearn.data.pdes import PDES, get_pde
from oplearn.data.pdes.navier_stokes import ALPHA, NavierStokes, SpectralOperators, solve_navier_stokes
from oplearn.errors import ConfigError, ShapeError, SolverError

PI = math.pi


def grid(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.arange(n, dtype=torch.float64) / n
    return torch.meshgrid(x, x, indexing="ij")  # x along axis 0, y along axis 1


def superposition(n: int) -> torch.Tensor:
    """Modes with different |k|: not a steady Euler state, so advection acts. Shape (1, n, n)."""
    x, y = grid(n)
    return (torch.sin(2 * PI * x) * torch.sin(2 * PI * y) + 0.6 * torch.cos(2 * PI * (2 * x + y))
            + 0.4 * torch.sin(2 * PI * 3 * y))[None]


def band_limited_grf(n: int, batch: int, scale: float = 1.0) -> torch.Tensor:
    """The NavierStokes GRF with modes beyond the 2/3 cutoff removed (so the dealiased system is exact)."""
    w0 = scale * NavierStokes(solver_resolution=n).initial_condition(11, range(batch))
    keep = SpectralOperators(n, "cpu", torch.float64).dealias
    return torch.fft.irfft2(torch.fft.rfft2(w0) * keep, s=(n, n))


def budgets(w: torch.Tensor, forcing: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per snapshot of w (..., N, N): E = 1/2 int |u|^2, Z = 1/2 int w^2, P = 1/2 int |grad w|^2, int psi f, int w f."""
    n = w.shape[-1]
    w_hat = torch.fft.fft2(w) / n**2  # Fourier coefficients: w = sum w_hat_k exp(2 pi i k.x)
    k = torch.fft.fftfreq(n, d=1 / n, dtype=torch.float64)
    k_squared = 4 * PI**2 * (k[:, None] ** 2 + k[None, :] ** 2)
    inverse = torch.where(k_squared > 0, 1 / k_squared.clamp_min(1e-30), 0.0)
    power = w_hat.abs() ** 2
    out = {"energy": 0.5 * (power * inverse).sum((-2, -1)), "enstrophy": 0.5 * power.sum((-2, -1)),
           "palinstrophy": 0.5 * (power * k_squared).sum((-2, -1))}
    if forcing is not None:
        f_hat = torch.fft.fft2(forcing) / n**2
        out["psi_f"] = (w_hat * inverse * f_hat.conj()).real.sum((-2, -1))
        out["w_f"] = (w_hat * f_hat.conj()).real.sum((-2, -1))
    return out


def trapezoid(values: torch.Tensor, times: np.ndarray) -> torch.Tensor:
    return torch.trapezoid(values, torch.from_numpy(times), dim=-1)


def taylor_green(n: int, amplitude: float = 2.0) -> torch.Tensor:
    """w = A sin(2 pi x) sin(2 pi y): psi is proportional to w, so u . grad w = 0. Shape (1, n, n)."""
    x, y = grid(n)
    return (amplitude * torch.sin(2 * PI * x) * torch.sin(2 * PI * y))[None]


def test_taylor_green_vortex_decays_exactly():
    nu, times = 1e-3, np.linspace(0.0, 1.0, 11)
    w0 = taylor_green(32)
    exact = torch.stack([w0[0] * math.exp(-8 * PI**2 * nu * t) for t in times])
    fixed = solve_navier_stokes(w0, times, nu, dt=1e-3)[0]
    assert (fixed - exact).abs().max() < 1e-10
    # Advection is exactly zero: the result is the product of the three Crank-Nicolson substeps, to rounding.
    viscous = 1e-3 * nu * 8 * PI**2
    per_step = math.prod((1 - alpha * viscous) / (1 + alpha * viscous) for alpha in ALPHA)
    assert (fixed[-1] - w0[0] * per_step**1000).abs().max() < 1e-13
    adaptive = solve_navier_stokes(w0, times, nu, max_dt=1e-3)[0]
    assert (adaptive - exact).abs().max() < 1e-10
    assert (exact[-1] - exact[0]).abs().max() > 0.1  # the decay is visible


def test_advection_term_matches_the_analytic_jacobian():
    # w = A cos 2 pi x + B sin 4 pi y: psi = A cos(2 pi x) / (4 pi^2) + B sin(4 pi y) / (16 pi^2),
    # u = psi_y = B cos(4 pi y) / (4 pi), v = -psi_x = A sin(2 pi x) / (2 pi),
    # u w_x + v w_y = 1.5 A B sin(2 pi x) cos(4 pi y).
    a, b, n = 1.3, -0.8, 16
    x, y = grid(n)
    w = a * torch.cos(2 * PI * x) + b * torch.sin(4 * PI * y)
    advection_hat, velocity = SpectralOperators(n, "cpu", torch.float64).advection(torch.fft.rfft2(w[None]))
    expected = 1.5 * a * b * torch.sin(2 * PI * x) * torch.cos(4 * PI * y)
    assert (torch.fft.irfft2(advection_hat, s=(n, n))[0] - expected).abs().max() < 1e-12
    assert (velocity[0, 0] - b * torch.cos(4 * PI * y) / (4 * PI)).abs().max() < 1e-14
    assert (velocity[0, 1] - a * torch.sin(2 * PI * x) / (2 * PI)).abs().max() < 1e-14


def test_dealiased_advection_equals_the_exact_truncated_product():
    # A band-limited field with every kept mode excited: the 2/3 rule must leave no aliasing in the kept band.
    n, fine = 24, 48  # kept |k| <= 7 (< n / 3); the exact product has |k| <= 14 < fine / 2
    operators = SpectralOperators(n, "cpu", torch.float64)
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal((1, n, n)))
    w_hat = torch.fft.rfft2(noise) * operators.dealias
    advection_hat, _ = operators.advection(w_hat)
    padded = torch.zeros(1, fine, fine // 2 + 1, dtype=w_hat.dtype)  # the same function on the fine grid
    rows = list(range(n // 2)) + list(range(fine - n // 2, fine))
    padded[:, rows, : n // 2 + 1] = w_hat * (fine / n) ** 2
    exact_hat, _ = SpectralOperators(fine, "cpu", torch.float64).advection(padded)
    truncated = exact_hat[:, rows, : n // 2 + 1] * (n / fine) ** 2 * operators.dealias
    scale = truncated.abs().max()
    assert (advection_hat * operators.dealias - truncated).abs().max() < 1e-12 * scale
    undealiased_error = (advection_hat - exact_hat[:, rows, : n // 2 + 1] * (n / fine) ** 2).abs().max()
    assert undealiased_error > 1e-3 * scale  # aliasing exists, so the mask matters
    assert int(operators.dealias[:, 0].sum()) == 15 and int(operators.dealias[0].sum()) == 8


@pytest.mark.parametrize("initial", ["superposition", "grf"])
def test_unforced_energy_and_enstrophy_balances(initial):
    # dE/dt = -2 nu Z and dZ/dt = -2 nu P: the dealiased nonlinear term conserves both.
    nu, times = 5e-3, np.linspace(0.0, 1.0, 201)
    w0 = superposition(32) if initial == "superposition" else band_limited_grf(32, 2, scale=5.0)
    w = solve_navier_stokes(w0, times, nu, dt=1e-3)
    b = budgets(w)
    energy_change = b["energy"][:, -1] - b["energy"][:, 0]
    enstrophy_change = b["enstrophy"][:, -1] - b["enstrophy"][:, 0]
    energy_mismatch = (energy_change + 2 * nu * trapezoid(b["enstrophy"], times)) / energy_change.abs()
    enstrophy_mismatch = (enstrophy_change + 2 * nu * trapezoid(b["palinstrophy"], times)) / enstrophy_change.abs()
    assert energy_mismatch.abs().max() < 1e-4, energy_mismatch
    assert enstrophy_mismatch.abs().max() < 1e-4, enstrophy_mismatch
    # The nonlinear term really acts: the flow is far from the purely viscous decay.
    k = torch.fft.fftfreq(32, d=1 / 32, dtype=torch.float64)
    viscous = torch.exp(-nu * 4 * PI**2 * (k[:, None] ** 2 + k[None, :] ** 2) * times[-1])
    linear = torch.fft.ifft2(torch.fft.fft2(w0) * viscous).real
    assert ((w[:, -1] - linear).norm() / linear.norm()) > 0.05


def test_forced_energy_balance():
    # dE/dt = -2 nu Z + int psi f (the vorticity forcing f = curl of a body force F; int psi f = int u . F).
    nu, times = 1e-3, np.linspace(0.0, 1.0, 201)
    forcing = NavierStokes(solver_resolution=32, forcing_amplitude=0.5).forcing()
    w = solve_navier_stokes(band_limited_grf(32, 2, scale=3.0), times, nu, forcing, dt=1e-3)
    b = budgets(w, forcing)
    change = b["energy"][:, -1] - b["energy"][:, 0]
    supplied = trapezoid(-2 * nu * b["enstrophy"] + b["psi_f"], times)
    assert ((change - supplied) / change.abs()).abs().max() < 1e-4
    assert (trapezoid(b["psi_f"], times).abs() > 0.1 * change.abs()).all()  # forcing matters
    enstrophy_change = b["enstrophy"][:, -1] - b["enstrophy"][:, 0]
    enstrophy_supplied = trapezoid(-2 * nu * b["palinstrophy"] + b["w_f"], times)
    assert ((enstrophy_change - enstrophy_supplied) / enstrophy_change.abs()).abs().max() < 1e-4


def convergence_orders(w0, times, nu, forcing, steps) -> tuple[list[float], list[float]]:
    """Relative errors at fixed steps (against steps[0] / 16) and the orders between successive steps."""
    reference = solve_navier_stokes(w0, times, nu, forcing, dt=steps[0] / 16)
    errors = [float((solve_navier_stokes(w0, times, nu, forcing, dt=dt) - reference).norm() / reference.norm())
              for dt in steps]
    return errors, [math.log2(coarse / fine) for coarse, fine in zip(errors, errors[1:])]


def test_viscous_part_is_second_order():
    # Taylor-Green at large viscosity: only the Crank-Nicolson substeps act; compare with the exact decay.
    nu, final_time = 0.05, 1.0
    exact = taylor_green(16)[0] * math.exp(-8 * PI**2 * nu * final_time)
    errors = [float((solve_navier_stokes(taylor_green(16), [0.0, final_time], nu, dt=dt)[0, -1] - exact).norm())
              for dt in (0.04, 0.02, 0.01)]
    orders = [math.log2(coarse / fine) for coarse, fine in zip(errors, errors[1:])]
    assert all(1.95 < p < 2.05 for p in orders), (errors, orders)


def test_advection_part_is_third_order():
    # Nearly inviscid: the explicit third-order Runge-Kutta error dominates.
    forcing = NavierStokes(solver_resolution=32).forcing()
    errors, orders = convergence_orders(band_limited_grf(32, 2, scale=5.0), np.linspace(0.0, 1.0, 5), 1e-6, forcing,
                                        (0.02, 0.01, 0.005))
    assert all(2.6 < p < 3.3 for p in orders), (errors, orders)


def test_full_scheme_converges_at_second_order_or_better():
    # FNO viscosity: Crank-Nicolson (order 2) and RK3 (order 3) errors mix; the order lies between.
    forcing = NavierStokes(solver_resolution=32).forcing()
    errors, orders = convergence_orders(band_limited_grf(32, 2, scale=5.0), np.linspace(0.0, 1.0, 5), 1e-3, forcing,
                                        (0.04, 0.02, 0.01))
    assert all(1.9 < p < 3.1 for p in orders), (errors, orders)
    assert errors[-1] < 1e-5


def test_adaptive_steps_follow_the_cfl_number_even_from_rest():
    # From w = 0 the first plan is one step of max_dt; the speed the forcing builds up must force a redo.
    n, nu, times = 32, 1e-3, np.linspace(0.0, 2.0, 3)
    forcing = NavierStokes(solver_resolution=n, forcing_amplitude=4.0).forcing()
    w0 = torch.zeros(1, n, n, dtype=torch.float64)
    reference = solve_navier_stokes(w0, times, nu, forcing, dt=1e-3)
    errors = [float((solve_navier_stokes(w0, times, nu, forcing, cfl=cfl, max_dt=10.0) - reference).norm()
                    / reference.norm()) for cfl in (0.8, 0.4)]
    assert errors[0] < 1e-3 and 3.5 < errors[0] / errors[1] < 9, errors


def test_low_viscosity_flow_stays_stable_with_default_steps():
    # nu = 1e-5 under-resolved at 64^2: energy reaches the cutoff, where Adams-Bashforth 2 (tried) blew up by t = 20.
    pde = NavierStokes(solver_resolution=64, viscosity=1e-5, final_time=50.0, n_times=5)
    w = torch.from_numpy(pde.solve_batch(0, [1], 64)["trajectories"][0, :, 0]).to(torch.float64)
    assert torch.isfinite(w).all() and w.abs().max() < 20
    assert (budgets(w)["enstrophy"][-1] > 2 * budgets(w)["enstrophy"][0]).item()  # the forcing has driven the flow


def test_initial_vorticity_and_forcing_follow_the_documented_recipe():
    pde = NavierStokes(solver_resolution=32)
    noise = np.random.default_rng([4, 9]).standard_normal((1, 32, 32))
    field = GaussianRandomField(2, 32, alpha=2.5, tau=7.0, sigma=7.0**1.5).sample_from_noise(torch.from_numpy(noise))
    w0 = pde.initial_condition(4, [9])
    assert (w0 - (field - field.mean())).abs().max() < 1e-14 and abs(float(w0.mean())) < 1e-15
    x, y = grid(32)
    expected = 0.1 * (torch.sin(2 * PI * (x + y)) + torch.cos(2 * PI * (x + y)))
    assert (pde.forcing() - expected).abs().max() < 1e-15


def test_sample_shapes_times_resolutions_and_batching():
    pde = NavierStokes(solver_resolution=32, final_time=0.4, n_times=4)
    assert NavierStokes.name == "navier_stokes" and NavierStokes.steady is False
    assert pde.shapes(16) == {"trajectories": (5, 1, 16, 16)}
    np.testing.assert_allclose(pde.extra(8)["times"], [0.0, 0.1, 0.2, 0.3, 0.4], rtol=0, atol=1e-15)
    full = pde.solve_batch(5, [2, 3], 32)["trajectories"]
    coarse = pde.solve_batch(5, [2, 3], 8)["trajectories"]
    assert full.shape == (2, 5, 1, 32, 32) and full.dtype == np.float32
    np.testing.assert_array_equal(coarse, full[..., ::4, ::4])
    np.testing.assert_allclose(full[:, 0, 0], pde.initial_condition(5, [2, 3]).numpy(), rtol=0, atol=1e-6)
    # Adaptive steps are shared by the batch: other batchings agree to the time-stepping error.
    alone = pde.solve_batch(5, [3], 32)["trajectories"][0]
    assert np.abs(alone - full[1]).max() < 1e-5 * np.abs(full[1]).max()
    fixed = pde.model_copy(update={"dt": 0.01})
    np.testing.assert_allclose(fixed.solve_batch(5, [3], 32)["trajectories"][0],
                               fixed.solve_batch(5, [2, 3], 32)["trajectories"][1], rtol=0, atol=1e-6)
    single = pde.model_copy(update={"precision": "float32"}).solve_batch(5, [2, 3], 32)["trajectories"]
    assert np.abs(single - full).max() < 1e-4 * np.abs(full).max()


def test_bad_parameters_raise_config_error(monkeypatch):
    monkeypatch.setitem(PDES, "navier_stokes", NavierStokes)
    for params in ({"viscosity": 0.0}, {"viscosity": float("inf")}, {"dt": -1e-3}, {"precision": "float16"},
                   {"solver_resolution": 63}, {"n_times": 0}, {"cfl": 5.0}, {"reynolds": 100}):
        with pytest.raises(ConfigError, match="invalid parameter for navier_stokes"):
            get_pde("navier_stokes", **params)
    pde = NavierStokes(solver_resolution=32)
    for resolution in (12, 2, 64, True):
        with pytest.raises(ConfigError, match="solver_resolution = 32"):
            pde.shapes(resolution)
    w0 = torch.zeros(1, 8, 8, dtype=torch.float64)
    with pytest.raises(ConfigError, match="viscosity"):
        solve_navier_stokes(w0, [0.0, 1.0], viscosity=-1.0)
    with pytest.raises(ConfigError, match="increasing"):
        solve_navier_stokes(w0, [0.0, 0.0], viscosity=1e-3)
    with pytest.raises(ShapeError):
        solve_navier_stokes(torch.zeros(1, 9, 9, dtype=torch.float64), [0.0, 1.0], viscosity=1e-3)


def test_absurd_time_step_raises_solver_error_naming_the_sample():
    pde = NavierStokes(solver_resolution=16, final_time=40.0, n_times=4, dt=2.0, viscosity=1e-4, sigma=200.0)
    with pytest.raises(SolverError, match=r"sample (6|7) \(seed 1\).*smaller time step"):
        pde.solve_batch(1, [6, 7], 16)
