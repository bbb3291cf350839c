"""The Darcy residual in torch (oplearn.data.pdes.darcy.darcy_residual): consistent with the solver, second
order on smooth problems, large for wrong fields, differentiable."""

import numpy as np
import pytest
import torch

from oplearn.data.batch import Batch
from oplearn.data.pdes.darcy import (DarcyFlow, darcy_boundary_values, darcy_residual, dirichlet_sobolev_squares,
                                     solve_darcy)


def manufactured(points: np.ndarray):
    """a = 1 + cos(2 pi x) cos(2 pi y) / 2, u = sin(pi x) sin(pi y), f = -div(a grad u), on ``points`` per axis.

    a has zero normal derivative on the walls: the cell form's mirror cells (a_ghost = a) are second order
    there only then (first order in a's normal derivative otherwise, as documented)."""
    x, y = np.meshgrid(points, points, indexing="ij")
    a = 1 + 0.5 * np.cos(2 * np.pi * x) * np.cos(2 * np.pi * y)
    a_x, a_y = -np.pi * np.sin(2 * np.pi * x) * np.cos(2 * np.pi * y), -np.pi * np.cos(2 * np.pi * x) * np.sin(2 * np.pi * y)
    u = np.sin(np.pi * x) * np.sin(np.pi * y)
    u_x, u_y = np.pi * np.cos(np.pi * x) * np.sin(np.pi * y), np.pi * np.sin(np.pi * x) * np.cos(np.pi * y)
    f = -(a_x * u_x + a_y * u_y) + a * 2 * np.pi**2 * u
    return (torch.tensor(v) for v in (a, u, f))


def test_the_solvers_own_solution_has_zero_residual():
    n = 33
    x = np.linspace(0, 1, n)
    a = np.where(np.add.outer(np.sin(6 * x), np.cos(5 * x)) > 0, 12.0, 3.0)
    u = solve_darcy(a, 1.0)
    residual = darcy_residual(torch.tensor(a), torch.tensor(u), 1.0)
    assert residual.shape == (n - 2, n - 2)
    assert residual.abs().max() < 1e-9


@pytest.mark.parametrize("location", ["nodes", "cells"])
def test_the_residual_of_the_exact_solution_falls_at_second_order(location):
    errors = []
    for n in (16, 32, 64):
        points = np.linspace(0, 1, n) if location == "nodes" else (np.arange(n) + 0.5) / n
        a, u, f = manufactured(points)
        f = f[1:-1, 1:-1] if location == "nodes" else f
        errors.append(darcy_residual(a, u, f, location).abs().max().item())
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(orders > 1.8), (errors, orders)


def test_a_wrong_field_has_a_large_residual():
    n = 32
    a, u, f = manufactured(np.linspace(0, 1, n))
    exact = darcy_residual(a, u, f[1:-1, 1:-1]).square().mean().sqrt()
    wrong = darcy_residual(a, 1.1 * u, f[1:-1, 1:-1]).square().mean().sqrt()
    assert wrong > 20 * exact
    assert wrong / f.square().mean().sqrt() > 0.05


def test_gradients_match_a_float64_reference_and_gradcheck():
    torch.manual_seed(0)
    a = 1 + torch.rand(2, 1, 9, 9, dtype=torch.float64)
    u = torch.randn(2, 1, 9, 9, dtype=torch.float64, requires_grad=True)
    for location in ("nodes", "cells"):
        assert torch.autograd.gradcheck(lambda v: darcy_residual(a, v, 1.0, location), (u,))
        u32 = u.detach().float().requires_grad_()
        darcy_residual(a.float(), u32, 1.0, location).square().mean().backward()
        (reference,) = torch.autograd.grad(darcy_residual(a, u, 1.0, location).square().mean(), u)
        torch.testing.assert_close(u32.grad.double(), reference, rtol=1e-4, atol=1e-6)


def test_the_pde_class_reads_the_coefficient_from_the_batch_and_checks_the_boundary():
    n = 17
    pde = DarcyFlow()
    a = torch.full((1, 1, n, n), 2.0, dtype=torch.float64)
    u = torch.tensor(solve_darcy(a[0, 0].numpy(), pde.forcing))[None, None]
    batch = Batch(a, None, spacing=(1 / (n - 1),) * 2, pde="darcy", params=pde.model_dump(mode="json"))
    assert pde.residual(u, batch).abs().max() < 1e-9
    assert pde.boundary_residual(u, batch).abs().max() == 0
    assert pde.boundary_residual(u + 1, batch).shape == (1, 1, 4 * (n - 1))
    assert torch.all(pde.boundary_residual(u + 1, batch) == 1)
    cells = darcy_boundary_values(torch.ones(1, n, n).cumsum(-1), "cells")  # u = j + 1 along y: walls at 0.5, n + 0.5
    assert cells.shape == (1, 4 * n) and torch.allclose(cells[0, 2 * n:3 * n], torch.full((n,), 0.5))


def _padded(interior: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.pad(interior, (1, 1, 1, 1))


@pytest.mark.parametrize("location", ["nodes", "cells"])
def test_sobolev_norms_of_a_laplacian_residual_are_the_errors_norms(location):
    """For a = 1 and f = 0 the residual of an error e is L e: its H^-1 norm is e^T L e, its H^-2 norm |e|^2."""
    torch.manual_seed(0)
    n = 13
    error = torch.randn(3, n - 2, n - 2, dtype=torch.float64) if location == "nodes" else \
        torch.randn(3, n, n, dtype=torch.float64)
    field = _padded(error) if location == "nodes" else error
    residual = darcy_residual(torch.ones_like(field), field, 0.0, location)
    points = error[0].numel()
    assert torch.allclose(dirichlet_sobolev_squares(residual, location, 0), residual.square().mean((-2, -1)))
    energy = (error * residual).sum((-2, -1)) / points
    assert torch.allclose(dirichlet_sobolev_squares(residual, location, 1), energy, rtol=1e-11)
    assert torch.allclose(dirichlet_sobolev_squares(residual, location, 2), error.square().mean((-2, -1)),
                          rtol=1e-11)


def test_the_h1_residual_norm_stays_within_the_contrast_of_the_error_energy():
    """sigma(L^-1/2 A L^-1/2) lies in [low, high], so r^T L^-1 r / e^T L e lies in [low^2, high^2]."""
    torch.manual_seed(1)
    n, low, high = 17, 3.0, 12.0
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    a = torch.where(torch.sin(7 * x)[:, None] + torch.cos(5 * x)[None] > 0, high, low)
    for _ in range(5):
        error = torch.randn(n - 2, n - 2, dtype=torch.float64)
        residual = darcy_residual(a, _padded(error), 0.0)
        laplacian = darcy_residual(torch.ones_like(a), _padded(error), 0.0)
        ratio = dirichlet_sobolev_squares(residual, "nodes", 1) / ((error * laplacian).sum() / error.numel())
        assert low**2 * (1 - 1e-9) <= ratio <= high**2 * (1 + 1e-9)


def test_the_h2_residual_loss_solves_darcy_by_gradient_descent_where_the_mean_square_stalls():
    """Plain gradient descent on u itself, at the step 1/(largest curvature) of each loss, 200 steps."""
    n = 17
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    a = torch.where(torch.sin(7 * x)[:, None] + torch.cos(5 * x)[None] > 0, 12.0, 3.0)
    exact = torch.tensor(solve_darcy(a.numpy(), 1.0))[1:-1, 1:-1]
    errors = {}
    for order in (0, 2):
        def loss(interior):
            return dirichlet_sobolev_squares(darcy_residual(a, _padded(interior), 1.0), "nodes", order)

        probe = torch.randn(n - 2, n - 2, dtype=torch.float64)  # power iteration on the Hessian
        for _ in range(50):
            _, hvp = torch.autograd.functional.hvp(loss, torch.zeros_like(probe), probe)
            probe = hvp / hvp.norm()
        curvature = torch.autograd.functional.hvp(loss, torch.zeros_like(probe), probe)[1].norm()
        u = torch.zeros(n - 2, n - 2, dtype=torch.float64, requires_grad=True)
        for _ in range(200):
            (gradient,) = torch.autograd.grad(loss(u), u)
            with torch.no_grad():
                u -= gradient / curvature
        errors[order] = ((u.detach() - exact).norm() / exact.norm()).item()
    assert errors[2] < 0.01 and errors[0] > 0.5, errors


def test_the_pde_term_scores_in_the_chosen_norm():
    from oplearn.train.objective import Objective

    n = 17
    pde = DarcyFlow()
    a = torch.full((2, 1, n, n), 2.0)
    u = torch.tensor(solve_darcy(a[0, 0].numpy(), pde.forcing), dtype=torch.float32)[None, None].expand(2, 1, n, n)
    batch = Batch(a, None, spacing=(1 / (n - 1),) * 2, pde="darcy", params=pde.model_dump(mode="json"))
    wrong = u * 1.1
    for norm, order in (("l2", 0), ("h-1", 1), ("h-2", 2)):
        loss = Objective.from_config([{"name": "pde", "norm": norm}])
        expected = dirichlet_sobolev_squares(pde.residual(wrong, batch)[:, 0], "nodes", order)
        assert torch.allclose(loss(wrong, batch), expected, rtol=1e-5)
        assert loss(u, batch).max() < 1e-6 * expected.min()


def test_sobolev_residual_norms_are_refused_where_undefined():
    from oplearn.errors import ConfigError, ShapeError
    from oplearn.train.objective import Objective

    with pytest.raises(ConfigError, match="pde term"):
        Objective.from_config([{"name": "boundary", "norm": "h-1"}])
    with pytest.raises(ConfigError, match="l2, h-1 or h-2"):
        Objective.from_config([{"name": "pde", "norm": "h1"}])
    with pytest.raises(ShapeError, match="has shape"):
        dirichlet_sobolev_squares(torch.zeros(5, 6), "nodes", 1)
