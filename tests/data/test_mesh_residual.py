"""The torch P1 residual of Darcy flow on meshes (mesh_residual, DarcyDomain.residual): against the solver,
scikit-fem's matrices, a manufactured solution, padding, and float64 gradients."""

import numpy as np
import pytest
import torch
from skfem import BilinearForm, asm

from oplearn.data.batch import Batch
from oplearn.data.pdes import fem
from oplearn.data.pdes import mesh_residual as mr
from oplearn.data.pdes.darcy_domain import DarcyDomain
from oplearn.data.pdes.meshing import mesh_region, unit_square
from oplearn.errors import ConfigError, ShapeError


def one_batch(samples, dtype=torch.float64, fill=0.0):
    """A padded mesh Batch of solver samples (padded entries set to ``fill``) and its u (B, 1, N)."""
    n = max(len(s["points"]) for s in samples)
    full = lambda: torch.full((len(samples), n), fill, dtype=dtype)
    a, u, x, y = full(), full(), full(), full()
    for b, s in enumerate(samples):
        k = len(s["points"])
        a[b, :k], u[b, :k] = torch.tensor(s["inputs"][:, 0]), torch.tensor(s["outputs"][:, 0])
        x[b, :k], y[b, :k] = torch.tensor(s["points"][:, 0]), torch.tensor(s["points"][:, 1])
    sizes = torch.tensor([len(s["points"]) for s in samples])
    mask = None if sizes.min() == n else torch.arange(n)[None] < sizes[:, None]
    batch = Batch(a[:, None], u[:, None], kind="mesh", coords=torch.stack([x, y], 1), mask=mask,
                  cells=[torch.tensor(s["cells"]) for s in samples], pde="darcy_domain")
    return batch, u[:, None]


def mass_norm(r, points, cells):
    """sqrt(sum_i m_i r_i^2): the L2 norm of nodal values with the lumped mass."""
    m = mr.lumped_mass(torch.as_tensor(points), torch.as_tensor(cells))
    return float((m * r**2).sum().sqrt())


@pytest.fixture(scope="module")
def samples():
    pde = DarcyDomain()
    return [pde.solve_sample(seed=3, index=i, resolution=r) for i, r in ((0, 10), (1, 14))]


def test_stiffness_and_load_equal_scikit_fem_matrices(samples):
    s = samples[0]
    basis = fem.triangle_basis(s["points"], s["cells"], 1)
    a = s["inputs"][:, 0]
    f = np.cos(3 * s["points"][:, 0]) + s["points"][:, 1]  # nodal forcing
    stiffness = asm(fem._diffusion, basis, a=fem._at_quadrature(a, basis)).toarray()
    load = asm(fem._load, basis, f=fem._at_quadrature(f, basis))
    mass = asm(BilinearForm(lambda u, v, w: u * v), basis).toarray().sum(1)
    x, c = torch.tensor(s["points"]), torch.tensor(s["cells"])
    v = torch.randn(2, len(a), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(mr.p1_stiffness_action(x, c, torch.tensor(a), v).numpy(), v.numpy() @ stiffness,
                               rtol=1e-12, atol=1e-12 * np.abs(stiffness).max())
    np.testing.assert_allclose(mr.p1_load(x, c, torch.tensor(f)).numpy(), load, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(mr.lumped_mass(x, c).numpy(), mass, rtol=1e-12)
    np.testing.assert_allclose(mr.p1_load(x, c, 2.5).numpy(), 2.5 * mass, rtol=1e-12)
    expected = np.zeros(len(a), dtype=bool)
    expected[basis.mesh.boundary_nodes()] = True
    np.testing.assert_array_equal(mr.boundary_nodes(c, len(a)).numpy(), expected)


def test_the_p1_solution_has_a_residual_at_rounding_level_and_perturbations_do_not(samples):
    pde = DarcyDomain()
    batch, u = one_batch(samples)
    r = pde.residual(u, batch)
    assert r.shape == u.shape and r.abs().max() < 1e-10 * pde.forcing  # observed ~1e-14
    assert torch.all(pde.boundary_residual(u, batch) == 0)  # the solver's u is exactly 0 on the boundary
    interior = r.new_zeros(r.shape, dtype=torch.bool)
    for b, s in enumerate(samples):
        k = len(s["points"])
        interior[b, 0, :k] = ~mr.boundary_nodes(batch.cells[b], k)
    # K (1.1 u) - F = 0.1 F = 0.1 f m: the lumped residual is exactly 0.1 f at every interior node
    r11 = pde.residual(1.1 * u, batch)
    torch.testing.assert_close(r11[interior], torch.full_like(r11[interior], 0.1 * pde.forcing), rtol=1e-10, atol=1e-12)
    assert torch.all(r11[~interior] == 0)
    # a smooth bump: r = K bump / m ~ -div(a grad bump), far from 0
    x, y = batch.coords[:, 0:1], batch.coords[:, 1:2]
    bump = 0.02 * torch.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / 0.02)
    r_bump = pde.residual(u + bump, batch)
    rms = r_bump[interior].square().mean().sqrt()
    assert rms > 0.5 * pde.forcing  # observed ~4 (a in {3, 12})
    # float32 data (what batches hold) keep the residual small against f
    batch32, u32 = one_batch(samples, dtype=torch.float32)
    assert pde.residual(u32, batch32).abs().max() < 1e-4 * pde.forcing  # observed 6e-6


@pytest.mark.parametrize("coefficient", ["exp", "threshold"])
def test_p2_solutions_leave_a_discretization_level_residual(coefficient):
    """P2 data are measured with P1 on the split mesh: not zero, but against a smooth positive test function
    it falls under refinement to a small fraction of a 10 % perturbation's. (The lumped L2 norm stays O(0.1) for
    a smooth coefficient and grows for the discontinuous threshold one, whose P2 and split-P1 interpolants
    differ at the jumps.)"""
    pde = DarcyDomain(order=2, coefficient=coefficient)
    weak, perturbed = [], []
    for resolution in (8, 32):
        s = pde.solve_sample(seed=3, index=0, resolution=resolution)
        batch, u = one_batch([s])
        p = s["points"]
        w = torch.tensor(1 + 0.5 * np.sin(6 * p[:, 0]) * np.cos(5 * p[:, 1]))
        m = mr.lumped_mass(torch.tensor(p), torch.tensor(s["cells"]))
        weak.append(abs(float((pde.residual(u, batch)[0, 0] * m * w).sum())))
        perturbed.append(abs(float((pde.residual(1.1 * u, batch)[0, 0] * m * w).sum())))
    # observed: exp 6.0e-3 -> 1.7e-4, threshold 1.2e-2 -> 1.8e-4; the perturbation ~3.6e-2 at both
    assert weak[1] < weak[0] / 4 and weak[1] < 0.02 * perturbed[1]
    assert perturbed[1] > 0.05 * pde.forcing * float(m.sum())


def test_a_manufactured_solution_residual_falls_under_refinement():
    """-div(2 grad u) = f on the unit square with u = sin(pi x) sin(pi y): the lumped residual of the nodal
    interpolant falls like O(h) in the lumped L2 norm and faster than O(h^2) against a smooth test function
    (pointwise it does not converge on unstructured meshes: the lumped P1 Laplacian is inconsistent there)."""
    norms, weak = [], []
    for size in (1 / 8, 1 / 16, 1 / 32):
        p, c = mesh_region(unit_square(), size)
        x, cells = torch.tensor(p), torch.tensor(c)
        u = torch.sin(np.pi * x[:, 0]) * torch.sin(np.pi * x[:, 1])
        f = 2 * 2 * np.pi**2 * u
        a = torch.full_like(u, 2.0)
        r = mr.lumped_residual(x.T[None], [cells], a[None], u[None], f[None])[0]
        m = mr.lumped_mass(x, cells)
        norms.append(float((m * r**2).sum().sqrt() / (m * f**2).sum().sqrt()))
        test = torch.sin(2 * np.pi * x[:, 0]) * x[:, 1] * (1 - x[:, 1])
        weak.append(abs(float((r * m * test).sum())))
        # the solver's P1 solution with the same nodal forcing zeroes the residual
        solution = torch.tensor(fem.solve_diffusion(fem.triangle_basis(p, c, 1), 2.0, f.numpy()))
        assert mr.lumped_residual(x.T[None], [cells], a[None], solution[None], f[None]).abs().max() < 1e-9
    assert norms[0] < 0.08 and norms[1] < norms[0] / 1.3 and norms[2] < norms[1] / 1.3  # ~0.05, 0.036, 0.021
    assert weak[1] < weak[0] / 4 and weak[2] < weak[1] / 4  # ~1e-3, 2.5e-5, 1.3e-6


def test_padding_changes_nothing(samples):
    pde = DarcyDomain()
    batch, u = one_batch(samples, fill=7.0)  # padded a, u, coords hold garbage
    assert batch.mask is not None and len(samples[0]["points"]) != len(samples[1]["points"])
    u = u + 0.01 * torch.sin(9 * batch.coords[:, :1])  # not the solution: residual O(1)
    u.requires_grad_(True)
    together, boundary = pde.residual(u, batch), pde.boundary_residual(u, batch)
    together.square().sum().backward()
    for b, s in enumerate(samples):
        k = len(s["points"])
        alone_batch, _ = one_batch([s])
        alone_u = u.detach()[b:b + 1, :, :k].clone().requires_grad_(True)
        alone = pde.residual(alone_u, alone_batch)
        alone.square().sum().backward()
        torch.testing.assert_close(together[b:b + 1, :, :k], alone, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(boundary[b:b + 1, :, :k], pde.boundary_residual(alone_u, alone_batch))
        torch.testing.assert_close(u.grad[b:b + 1, :, :k], alone_u.grad, rtol=1e-12, atol=1e-12)
        assert torch.all(together[b, :, k:] == 0) and torch.all(boundary[b, :, k:] == 0)
        assert torch.all(u.grad[b, :, k:] == 0)
    assert together.abs().max() > 0.1


def test_gradient_of_the_mean_squared_residual_matches_a_dense_scikit_fem_reference(samples):
    pde = DarcyDomain()
    batch, u = one_batch(samples)
    u = (u * 1.05 + 0.003 * torch.cos(7 * batch.coords[:, 1:])).requires_grad_(True)
    loss = pde.residual(u, batch).square().mean()
    (grad,) = torch.autograd.grad(loss, u)
    count = u.numel()
    for b, s in enumerate(samples):
        k = len(s["points"])
        basis = fem.triangle_basis(s["points"], s["cells"], 1)
        K = asm(fem._diffusion, basis, a=fem._at_quadrature(s["inputs"][:, 0], basis)).toarray()
        F = asm(fem._load, basis, f=fem._at_quadrature(pde.forcing, basis))
        m = asm(BilinearForm(lambda v, w, _: v * w), basis).toarray().sum(1)
        free = np.ones(k, dtype=bool)
        free[basis.get_dofs().all()] = False
        S = np.where(free, 1 / m, 0.0)
        ub = u.detach()[b, 0, :k].numpy()
        r = S * (K @ ub - F)
        np.testing.assert_allclose(pde.residual(u, batch)[b, 0, :k].detach().numpy(), r, rtol=1e-9, atol=1e-12)
        reference = 2 / count * K.T @ (S * r)
        np.testing.assert_allclose(grad[b, 0, :k].numpy(), reference, rtol=1e-6, atol=1e-9 * np.abs(reference).max())
        assert np.abs(reference).max() > 0


def test_gradcheck_in_u_a_coordinates_and_forcing():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.1], [0.2, 0.9], [1.1, 1.2], [0.5, 0.45]], dtype=torch.float64)
    cells = torch.tensor([[0, 1, 4], [1, 3, 4], [3, 2, 4], [2, 0, 4]])
    g = torch.Generator().manual_seed(1)
    a = (1 + torch.rand(5, generator=g, dtype=torch.float64)).requires_grad_(True)
    u = torch.randn(2, 5, generator=g, dtype=torch.float64).requires_grad_(True)
    f = torch.randn(2, 5, generator=g, dtype=torch.float64).requires_grad_(True)
    xr = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda u, a, x: mr.p1_stiffness_action(x, cells, a, u), (u, a, xr))
    assert torch.autograd.gradcheck(lambda f, x: mr.p1_load(x, cells, f), (f, xr))
    assert torch.autograd.gradcheck(lambda u, f, x: mr.lumped_residual(x.T[None].expand(2, 2, 5), [cells, cells],
                                                                      a.detach().expand(2, 5), u, f), (u, f, xr))
    # the one interior node of this mesh is node 4; the others are boundary nodes
    assert mr.boundary_nodes(cells, 5).tolist() == [True, True, True, True, False]


def test_user_mistakes_are_one_line_errors(samples):
    pde = DarcyDomain()
    batch, u = one_batch(samples)
    with pytest.raises(ShapeError, match=r"u must be \(B, 1, N\)"):
        pde.residual(u[:, :, :-1], batch)
    with pytest.raises(ConfigError, match="needs mesh data with cells"):
        pde.residual(u, Batch(batch.inputs, None, kind="points", coords=batch.coords))
    with pytest.raises(ConfigError, match="was given 'elasticity' data"):
        pde.boundary_residual(u, Batch(batch.inputs, None, kind="mesh", coords=batch.coords, cells=batch.cells,
                                       pde="elasticity"))
    with pytest.raises(ShapeError, match=r"\(M, 3\)"):
        mr.p1_stiffness_action(batch.coords[0].T, batch.cells[0][:, :2], batch.inputs[0, 0], u[0, 0])
    with pytest.raises(ConfigError) as caught:
        pde.residual(u, Batch(batch.inputs, None, kind="grid"))
    assert "\n" not in str(caught.value) and "got 'grid' data without cells" in str(caught.value)
