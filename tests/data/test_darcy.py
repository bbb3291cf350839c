"""Tests of the Darcy finite-difference solver, the DarcyFlow sampler and the PDE registry."""

import math

import numpy as np
import pytest
import torch
from scipy.interpolate import CubicSpline

from oplearn.data.grf import GaussianRandomField
from oplearn.data.pdes import PDES, DarcyFlow, get_pde
from oplearn.data.pdes.darcy import solve_darcy, solve_darcy_as_fno_script, spline_regrid
from oplearn.errors import ConfigError, ShapeError

PI = math.pi


def grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(0.0, 1.0, n)
    return np.meshgrid(x, x, indexing="ij")  # X varies along axis 0, Y along axis 1


def manufactured_error(n: int) -> float:
    """Max error for u = sin(pi x) sin(pi y), a = 1 + x^2 + 0.5 sin(2 pi y), f = -div(a grad u)."""
    x, y = grid(n)
    a = 1 + x**2 + 0.5 * np.sin(2 * PI * y)
    a_x, a_y = 2 * x, PI * np.cos(2 * PI * y)
    u = np.sin(PI * x) * np.sin(PI * y)
    u_x, u_y = PI * np.cos(PI * x) * np.sin(PI * y), PI * np.sin(PI * x) * np.cos(PI * y)
    f = -(a_x * u_x + a_y * u_y) + 2 * PI**2 * a * u
    return float(np.abs(solve_darcy(a, f) - u).max())


def poisson_series(n: int, modes: int = 401, x: np.ndarray | None = None) -> np.ndarray:
    """-Laplacian u = 1, u = 0 on the boundary: sum over odd m, k of 16 sin(m pi x) sin(k pi y) / (pi^4 m k (m^2 + k^2)).

    On the nodes linspace(0, 1, n), or on the points ``x`` along each axis.
    """
    x = np.linspace(0.0, 1.0, n) if x is None else x
    m = np.arange(1, modes + 1, 2)
    sines = np.sin(PI * np.outer(x, m))
    weights = 16 / (PI**4 * m[:, None] * m[None, :] * (m[:, None] ** 2 + m[None, :] ** 2))
    return sines @ weights @ sines.T


def test_manufactured_solution_converges_at_second_order():
    errors = [manufactured_error(n) for n in (17, 33, 65)]
    ratios = [coarse / fine for coarse, fine in zip(errors, errors[1:])]
    assert all(3.5 < r < 4.5 for r in ratios), (errors, ratios)
    assert errors[-1] < 1e-3


def test_constant_coefficient_matches_poisson_series():
    for n, tolerance in ((33, 1e-4), (65, 2.5e-5)):
        u = solve_darcy(np.ones((n, n)), 1.0)
        reference = poisson_series(n)
        assert reference.max() == pytest.approx(0.0736713, abs=1e-6)  # known centre value
        assert np.abs(u - reference).max() < tolerance


def test_face_coefficient_is_arithmetic_mean_of_the_two_nodes():
    # One interior unknown: (sum of four face means) u = h^2 f, h = 1/2.
    a = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    faces = 0.5 * (a[1, 1] + a[0, 1]) + 0.5 * (a[1, 1] + a[2, 1]) + 0.5 * (a[1, 1] + a[1, 0]) + 0.5 * (a[1, 1] + a[1, 2])
    u = solve_darcy(a, 2.0)
    assert u[1, 1] == pytest.approx(0.25 * 2.0 / faces, rel=1e-14)


def test_forcing_array_uses_the_same_index_order_as_the_coefficient():
    # A load concentrated near x = 0 (first axis) must pull the solution there.
    x, _ = grid(21)
    u = solve_darcy(1 + x, np.where(x < 0.3, 1.0, 0.0))
    assert u[4, 10] > 5 * u[16, 10]


def test_sample_shapes_boundary_and_positivity():
    pde = DarcyFlow()
    sample = pde.sample(seed=0, index=0, resolution=16)
    assert {k: v.shape for k, v in sample.items()} == pde.shapes(16) == {"inputs": (1, 16, 16), "outputs": (1, 16, 16)}
    assert sample["inputs"].dtype == sample["outputs"].dtype == np.float32
    u = sample["outputs"][0]
    assert np.all(u[0] == 0) and np.all(u[-1] == 0) and np.all(u[:, 0] == 0) and np.all(u[:, -1] == 0)
    assert np.all(u[1:-1, 1:-1] > 0)
    assert DarcyFlow.name == "darcy" and DarcyFlow.steady is True


def test_coefficient_takes_only_low_and_high_values():
    pde = DarcyFlow(low=2.0, high=7.0)
    values = np.concatenate([pde.sample(seed=3, index=i, resolution=16)["inputs"].ravel() for i in range(4)])
    assert set(np.unique(values)) == {2.0, 7.0}


def test_samples_depend_only_on_seed_and_index():
    pde = DarcyFlow()
    later_first = pde.sample(seed=5, index=9, resolution=12)
    pde.sample(seed=5, index=2, resolution=12)
    again = DarcyFlow().sample(seed=5, index=9, resolution=12)
    for key in ("inputs", "outputs"):
        np.testing.assert_array_equal(later_first[key], again[key])
    other_index = pde.sample(seed=5, index=10, resolution=12)
    other_seed = pde.sample(seed=6, index=9, resolution=12)
    assert not np.array_equal(later_first["inputs"], other_index["inputs"])
    assert not np.array_equal(later_first["inputs"], other_seed["inputs"])


def test_coefficient_is_thresholded_neumann_grf_of_documented_noise_on_fine_grid():
    pde = DarcyFlow(oversample=2)
    resolution, fine = 10, 19
    noise = np.random.default_rng([4, 7]).standard_normal((1, fine, fine))
    noise[0, 0, 0] = 0.0  # the constant mode is dropped
    field = GaussianRandomField(2, fine, alpha=2.0, tau=3.0, sigma=1.0, boundary="neumann")
    expected = np.where(field.sample_from_noise(torch.from_numpy(noise))[0].numpy() >= 0, 12.0, 3.0)
    np.testing.assert_array_equal(pde.coefficient(4, 7, resolution), expected)
    sample = pde.sample(4, 7, resolution)
    np.testing.assert_array_equal(sample["inputs"][0], expected[::2, ::2])
    np.testing.assert_allclose(sample["outputs"][0], solve_darcy(expected)[::2, ::2], rtol=1e-6)


def trapezoid_mean(field: np.ndarray) -> float:
    weights = np.ones(field.shape[0])
    weights[[0, -1]] = 0.5
    return float(weights @ field @ weights / weights.sum() ** 2)


def test_latent_field_has_no_constant_mode_and_balanced_phases():
    # The paper's GRF.m zeroes the k = 0 coefficient: every w integrates to zero (trapezoid rule is
    # exact on the cosines), so each sample is about half high, half low.
    paper, shifted = DarcyFlow(oversample=1), DarcyFlow(oversample=1, constant_mode=True)
    means = [trapezoid_mean(paper.latent_field(9, i, 33)) for i in range(8)]
    np.testing.assert_allclose(means, 0.0, atol=1e-12)
    kept = np.array([trapezoid_mean(shifted.latent_field(9, i, 33)) for i in range(64)])
    assert 0.07 < kept.std() < 0.16  # the constant mode's standard deviation is tau^-alpha = 1/9
    high = np.array([(paper.coefficient(9, i, 33) == 12.0).mean() for i in range(64)])
    high_kept = np.array([(shifted.coefficient(9, i, 33) == 12.0).mean() for i in range(64)])
    assert abs(high.mean() - 0.5) < 0.05 and high.std() < 0.12
    assert high_kept.std() > 0.2


def test_spline_regrid_is_matlab_interp2_spline_with_extrapolation():
    # interp2(..., 'spline') is a not-a-knot cubic spline along each axis, extrapolated.
    n = 23
    centres, nodes = (np.arange(n) + 0.5) / n, np.linspace(0.0, 1.0, n)
    values = np.random.default_rng(0).standard_normal((n, n))
    along_y = CubicSpline(centres, values, axis=1, bc_type="not-a-knot")(nodes)
    reference = CubicSpline(centres, along_y, axis=0, bc_type="not-a-knot")(nodes)
    np.testing.assert_allclose(spline_regrid(values, centres, nodes), reference, atol=1e-12)


def test_fno_script_pipeline_matches_poisson_at_cell_centres_and_the_node_solver():
    n = 41
    centres = (np.arange(n) + 0.5) / n
    # Constant a = 2: the spline keeps it, so u is the Poisson solution / 2, read at the centres.
    u = solve_darcy_as_fno_script(np.full((n, n), 2.0))
    exact = poisson_series(n, x=centres) / 2
    assert np.abs(u - exact).max() < 2e-3 * np.abs(exact).max()
    # Two-valued a: near the node pipeline's solution (the same values read as nodes; the gap shrinks like
    # 1/n, 0.5% at 421), not equal to it.
    a = DarcyFlow(oversample=1).coefficient(2, 0, n)
    script, nodes = solve_darcy_as_fno_script(a), solve_darcy(a)
    difference = np.linalg.norm(script - nodes) / np.linalg.norm(nodes)
    assert 1e-3 < difference < 0.1
    sample = DarcyFlow(oversample=1, grid="cells").sample(2, 0, n)
    np.testing.assert_array_equal(sample["inputs"][0], a.astype(np.float32))
    np.testing.assert_allclose(sample["outputs"][0], script, rtol=1e-5, atol=1e-9)
    assert np.abs(sample["outputs"][0][0]).min() > 0  # the outer centres are off the boundary


@pytest.mark.parametrize("grid, spacing", [("nodes", 1 / 8), ("cells", 1 / 9)])
def test_a_generated_file_records_where_its_points_lie(tmp_path, grid, spacing):
    """The cells pipeline's files say "cells", so batches step by 1/n and residuals refine on cells."""
    from oplearn.data.generate import generate
    from oplearn.data.sources import open_data
    from oplearn.data.store import read_attributes

    path = generate("darcy", 2, 9, seed=0, out=tmp_path / "d.h5", params={"grid": grid}, progress=False, workers=1)
    assert read_attributes(path)["grid_location"] == grid
    assert open_data(path).batch([0]).spacing == pytest.approx((spacing, spacing))


def test_solution_is_linear_in_the_forcing():
    base = DarcyFlow().sample(1, 1, 12)["outputs"]
    doubled = DarcyFlow(forcing=2.0).sample(1, 1, 12)["outputs"]
    np.testing.assert_allclose(doubled, 2 * base, rtol=1e-5)


def test_registry_builds_darcy_with_parameters():
    assert PDES["darcy"] is DarcyFlow
    assert set(PDES) == {"advection", "airfoil", "burgers", "darcy", "darcy_domain", "elasticity", "heat",
                         "navier_stokes", "pipe"}
    pde = get_pde("darcy", tau=4.0, oversample=1)
    assert isinstance(pde, DarcyFlow) and pde.tau == 4.0 and pde.alpha == 2.0


def test_registry_rejects_unknown_names_and_parameters():
    with pytest.raises(ConfigError, match=r"^unknown PDE 'wave'; choose one of: advection, airfoil, burgers, darcy, "
                                          r"darcy_domain, elasticity, heat, navier_stokes, pipe$"):
        get_pde("wave")
    with pytest.raises(ConfigError, match=r"^invalid parameter for darcy: tau: Input should be greater than 0$"):
        get_pde("darcy", tau=0.0)
    with pytest.raises(ConfigError, match="viscosity: Extra inputs are not permitted"):
        get_pde("darcy", viscosity=0.01)
    for bad in (dict(low=-1.0), dict(high=0.0), dict(alpha=0.0), dict(oversample=0)):
        with pytest.raises(ConfigError):
            get_pde("darcy", **bad)


def test_bad_resolution_and_arrays_raise():
    with pytest.raises(ConfigError, match="resolution"):
        DarcyFlow().sample(0, 0, resolution=7)
    with pytest.raises(ConfigError, match="index"):
        DarcyFlow().sample(0, -1, resolution=8)
    with pytest.raises(ConfigError):
        solve_darcy(np.zeros((5, 5)))
    with pytest.raises(ShapeError):
        solve_darcy(np.ones((5, 4)))
    with pytest.raises(ShapeError):
        solve_darcy(np.ones((5, 5)), np.ones((4, 4)))
