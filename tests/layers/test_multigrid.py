"""The multigrid V-cycle: any grid size, transfer operators on the right points, the textbook Poisson
solver when its weights are set by hand, gradients, and periodic boundaries that commute with shifts."""

import math

import pytest
import torch
from torch.func import functional_call

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.multigrid import Prolongation, Restriction, VCycle, coarse_sizes

LAPLACIAN = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]], dtype=torch.float64)
FULL_WEIGHTING = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=torch.float64) / 16


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "circular"])
@pytest.mark.parametrize("sizes", [(33, 29), (17, 17), (32, 30), (33,)])
def test_any_grid_size_comes_back_exactly(sizes, padding_mode):
    torch.manual_seed(0)
    cycle = VCycle(3, 2, dim=len(sizes), levels=3, padding_mode=padding_mode)
    out = cycle(torch.randn(2, 3, *sizes))
    assert out.shape == (2, 2, *sizes) and torch.isfinite(out).all()
    assert coarse_sizes(sizes, 3)[1:] == [tuple(n // 2 for n in sizes), tuple(n // 4 for n in sizes)]


def test_transfer_operators_put_coarse_point_j_on_fine_point_2j_plus_1():
    restriction = Restriction(1, 1, "circular").double()
    prolongation = Prolongation(1, 1, "circular").double()
    with torch.no_grad():
        restriction.conv.weight.copy_(torch.tensor([0.25, 0.5, 0.25]).view(1, 1, 3))
        prolongation.conv.weight.copy_(torch.tensor([0.5, 1.0, 0.5]).view(1, 1, 3))
    fine = torch.zeros(1, 1, 8, dtype=torch.float64)
    fine[..., 7] = 1.0  # on coarse point 3; the periodic window of coarse point 3 is fine 6, 7, 0
    assert restriction(fine).flatten().tolist() == [0.0, 0.0, 0.0, 0.5]
    coarse = torch.zeros(1, 1, 4, dtype=torch.float64)
    coarse[..., 3] = 1.0
    assert prolongation(coarse, (8,)).flatten().tolist() == [0.5, 0, 0, 0, 0, 0, 0.5, 1.0]  # wraps onto 0
    prolongation.padding_mode = "zeros"
    assert prolongation(coarse, (8,)).flatten().tolist() == [0, 0, 0, 0, 0, 0, 0.5, 1.0]  # 8 is outside
    assert prolongation(coarse, (9,)).flatten().tolist() == [0, 0, 0, 0, 0, 0, 0.5, 1.0, 0.5]  # odd: exact fit


def poisson_cycle(n, omega=0.8, smoothing=(1, 1), levels=None):
    """The geometric multigrid V-cycle of the 5-point Laplacian with zero Dirichlet values (the padding),
    down to one point: operator A = stencil / 4**l on level l (the same equation on a grid 2**l coarser),
    weighted Jacobi S = omega / diag(A), full weighting, linear interpolation."""
    levels = levels or int(math.log2(n + 1))
    cycle = VCycle(1, 1, dim=2, levels=levels, smoothing=smoothing, padding_mode="zeros").double()
    with torch.no_grad():
        for index, level in enumerate(cycle.levels):
            level.operator.weight.copy_(LAPLACIAN / 4**index)
            for smoother in level.smoothers:
                smoother.weight.zero_()
                smoother.weight[0, 0, 1, 1] = omega * 4**index / 4
            if level.restriction is not None:
                level.restriction.conv.weight.copy_(FULL_WEIGHTING)
                level.prolongation.conv.weight.copy_(4 * FULL_WEIGHTING)
    return cycle.requires_grad_(False)


def iterate(cycle, f, cycles):
    """Residual norms of ``u <- u + V (f - A u)`` from ``u = 0``, and the last ``u``."""
    operator = cycle.levels[0].operator
    u = torch.zeros_like(f)
    residuals = [f.norm().item()]
    for _ in range(cycles):
        u = u + cycle(f - operator(u))
        residuals.append((f - operator(u)).norm().item())
    return residuals, u


def shift_error(model, x, shifts):
    """Largest change of ``model`` under a periodic shift of its input by ``shifts`` points on the last axes."""
    dims = tuple(range(x.ndim - len(shifts), x.ndim))
    with torch.no_grad():
        return (model(torch.roll(x, shifts, dims)) - torch.roll(model(x), shifts, dims)).abs().max().item()


def test_vcycle_with_laplacian_and_jacobi_solves_poisson_at_a_grid_independent_rate():
    n = 31
    f = torch.randn(1, 1, n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    residuals, u = iterate(poisson_cycle(n), f, 25)
    second_difference = torch.diag(torch.full((n,), 2.0, dtype=torch.float64)) - torch.diag(
        torch.ones(n - 1, dtype=torch.float64), 1) - torch.diag(torch.ones(n - 1, dtype=torch.float64), -1)
    identity = torch.eye(n, dtype=torch.float64)
    matrix = torch.kron(second_difference, identity) + torch.kron(identity, second_difference)
    exact = torch.linalg.solve(matrix, f.flatten()).view_as(f)
    assert (u - exact).abs().max() / exact.abs().max() < 1e-8

    worst = {}
    for n in (15, 31, 63):
        f = torch.randn(1, 1, n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
        residuals, _ = iterate(poisson_cycle(n), f, 8)
        worst[n] = max(b / a for a, b in zip(residuals[:-1], residuals[1:]))
    assert max(worst.values()) < 0.5, worst  # measured: 0.33 on every grid
    assert max(worst.values()) - min(worst.values()) < 0.05, worst
    # the coarse-grid correction is what makes it grid independent: smoothing alone stalls on 63 x 63
    residuals, _ = iterate(poisson_cycle(63, levels=1), torch.randn(1, 1, 63, 63, dtype=torch.float64), 8)
    assert residuals[-1] / residuals[-2] > 0.9


def test_gradients_match_finite_differences():
    torch.manual_seed(0)
    for padding_mode in ("zeros", "reflect", "circular"):
        cycle = VCycle(2, 1, dim=2, levels=2, smoothing=(1, 1), padding_mode=padding_mode).double()
        names = [name for name, _ in cycle.named_parameters()]
        weights = [p.detach().clone().requires_grad_() for p in cycle.parameters()]
        f = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)

        def call(f, *weights):
            return functional_call(cycle, dict(zip(names, weights)), (f,)) ** 2  # square: weights enter nonlinearly

        assert torch.autograd.gradcheck(call, (f, *weights))


def test_circular_padding_commutes_with_shifts_by_the_coarsest_spacing():
    torch.manual_seed(0)
    cycle = VCycle(2, 3, dim=2, levels=3, padding_mode="circular").double()  # coarsest spacing: 4 points
    f = torch.randn(2, 2, 16, 12, dtype=torch.float64)
    assert shift_error(cycle, f, (4, -8)) < 1e-12
    assert shift_error(cycle, f, (1, 0)) > 1e-3  # a one-point shift moves the coarse grids off their points
    assert shift_error(VCycle(2, 3, dim=2, levels=3, padding_mode="zeros").double(), f, (4, -8)) > 1e-3


def test_mistakes_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown padding_mode 'periodic'; choose one of: zeros, reflect, circular"):
        VCycle(1, 1, padding_mode="periodic")
    with pytest.raises(ConfigError, match="smoothing"):
        VCycle(1, 1, smoothing=(0, 0))
    with pytest.raises(ShapeError, match=r"too small for 4 multigrid levels .* at least 8 points"):
        VCycle(1, 1, levels=4)(torch.randn(1, 1, 17, 7))
    with pytest.raises(ShapeError, match=r"at least 16 points"):
        VCycle(1, 1, levels=4, padding_mode="reflect")(torch.randn(1, 1, 17, 15))
    with pytest.raises(ShapeError, match=r"VCycle expects \(batch, 1, 2 spatial axes\)"):
        VCycle(1, 1)(torch.randn(1, 2, 16, 16))
