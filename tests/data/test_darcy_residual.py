"""The Darcy residual in torch (oplearn.data.pdes.darcy.darcy_residual): consistent with the solver, second
order on smooth problems, large for wrong fields, differentiable."""

import numpy as np
import pytest
import torch

from oplearn.data.batch import Batch
from oplearn.data.pdes.darcy import DarcyFlow, darcy_boundary_values, darcy_residual, solve_darcy


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
