"""The finite-element solvers against known answers: convergence orders, Kirsch, exact hyperelastic stretch."""

import numpy as np
import pytest
from scipy.optimize import brentq
from skfem import Functional
from skfem.helpers import grad

from oplearn.data.pdes import fem
from oplearn.data.pdes.elasticity import Elasticity
from oplearn.data.pdes.meshing import Curve, mesh_region, signed_distance, star_curve, unit_square


def exact_u(x):
    return np.sin(np.pi * x[0]) * np.cos(2 * x[1]) + x[0] * x[1]


def exact_grad(x):
    return np.stack([np.pi * np.cos(np.pi * x[0]) * np.cos(2 * x[1]) + x[1],
                     -2 * np.sin(np.pi * x[0]) * np.sin(2 * x[1]) + x[0]])


def coefficient(x):
    return 1 + x[0] ** 2 + 0.5 * x[1]


def forcing(x):
    """f = -div(a grad u) = -(grad a . grad u + a lap u) for the manufactured u above."""
    g = exact_grad(x)
    laplacian = -(np.pi**2 + 4) * np.sin(np.pi * x[0]) * np.cos(2 * x[1])
    return -(2 * x[0] * g[0] + 0.5 * g[1] + coefficient(x) * laplacian)


def slope(h, errors):
    return np.polyfit(np.log(h), np.log(errors), 1)[0]


@pytest.mark.parametrize("order, l2_order, h1_order", [(1, 2, 1), (2, 3, 2)])
def test_poisson_on_a_star_polygon_converges_at_the_elements_order(order, l2_order, h1_order):
    """-div(a grad u) = f with a manufactured u on a 12-point star (exactly meshed), 3 refinements."""
    theta = 2 * np.pi * np.arange(12) / 12
    star = star_curve(0.4 * (1 + 0.35 * np.cos(2 * theta) * (-1) ** np.arange(12)), smooth=False)
    sizes, l2, h1 = [], [], []
    for size in (0.1, 0.05, 0.025):
        points, triangles = mesh_region(star, size)
        basis = fem.triangle_basis(points, triangles, order, intorder=6)
        uh = basis.interpolate(fem.solve_diffusion(basis, coefficient, forcing, exact_u))
        l2.append(np.sqrt(Functional(lambda w: (w["uh"] - exact_u(w.x)) ** 2).assemble(basis, uh=uh)))
        h1.append(np.sqrt(Functional(lambda w: ((w["uh"].grad - exact_grad(w.x)) ** 2).sum(0)).assemble(basis, uh=uh)))
        sizes.append(1 / np.sqrt(len(points)))  # mean element size, as gmsh's sizes are only targets
    assert abs(slope(sizes, l2) - l2_order) < 0.35, l2
    assert abs(slope(sizes, h1) - h1_order) < 0.35, h1
    assert l2[-1] < (1e-3 if order == 1 else 2e-6)


def kirsch_stress(x, tension=1.0, hole=0.1):
    """Kirsch's plane stress field (sxx, syy, sxy) around a traction-free hole under far-field tension in x."""
    r, t = np.hypot(x[0], x[1]), np.arctan2(x[1], x[0])
    q, c, s = hole**2 / r**2, np.cos(t), np.sin(t)
    srr = tension / 2 * (1 - q) + tension / 2 * (1 - 4 * q + 3 * q * q) * np.cos(2 * t)
    stt = tension / 2 * (1 + q) - tension / 2 * (1 + 3 * q * q) * np.cos(2 * t)
    srt = -tension / 2 * (1 + 2 * q - 3 * q * q) * np.sin(2 * t)
    return (srr * c * c + stt * s * s - 2 * srt * s * c, srr * s * s + stt * c * c + 2 * srt * s * c,
            (srr - stt) * s * c + srt * (c * c - s * s))


def test_plate_with_a_hole_matches_kirsch():
    """Quarter of a plate with a hole (radius 0.1), symmetric supports, Kirsch's tractions on the outer edges:
    the stress concentration at the hole is 3 and the stress error falls at P2's rate."""
    hole, material = 0.1, fem.LinearElastic(lame_lambda=0.6 / (1.3 * 0.4), shear=1 / 2.6)  # E = 1, nu = 0.3
    concentrations, errors = [], []
    for k in (1, 2, 4):
        theta = np.linspace(0, np.pi / 2, 8 * k + 1)
        arc = np.stack([hole * np.cos(theta), hole * np.sin(theta)], axis=1)[::-1]
        boundary = np.concatenate([[[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], arc])
        sizes = np.concatenate([[0.25 / k] * 3, [hole * np.pi / 2 / (8 * k)] * len(arc)])
        points, triangles = mesh_region(Curve(boundary, smooth=False, sizes=sizes), 0.25 / k)
        displacement = fem.triangle_basis(points, triangles, 2, vector=True)
        u = fem.solve_elasticity(
            displacement, material,
            fixed=[(lambda x: np.isclose(x[0], 0), (0,)), (lambda x: np.isclose(x[1], 0), (1,))],
            tractions=[(lambda x: np.isclose(x[0], 1), lambda x: np.stack(kirsch_stress(x)[::2])),
                       (lambda x: np.isclose(x[1], 1), lambda x: np.stack(kirsch_stress(x)[:0:-1]))])
        sigma = material.cauchy(fem.plane_strain_gradient(grad(displacement.interpolate(u))))
        scalar = fem.triangle_basis(points, triangles, 2)
        sxx = fem.project(scalar, sigma[0, 0])
        top_of_hole = np.argmin(np.hypot(scalar.doflocs[0], scalar.doflocs[1] - hole))
        concentrations.append(sxx[top_of_hole])
        exact = kirsch_stress(np.array(displacement.global_coordinates()))
        errors.append(np.sqrt(Functional(lambda w: (sigma[0, 0] - exact[0]) ** 2 + (sigma[1, 1] - exact[1]) ** 2
                                         + 2 * (sigma[0, 1] - exact[2]) ** 2).assemble(displacement)))
    assert abs(concentrations[-1] - 3) < 0.03, concentrations
    assert abs(concentrations[-1] - 3) < abs(concentrations[0] - 3)
    assert errors[1] < errors[0] / 2.5 and errors[2] < errors[1] / 2.5, errors


@pytest.mark.parametrize("order", [1, 2])
def test_uniaxial_hyperelastic_stretch_reproduces_the_exact_stress(order):
    """A square on rollers (u_x = 0 at x = 0, u_y = 0 at y = 0) pulled by a dead load T on the top stretches
    homogeneously, F = diag(a, b, 1). With W's closed-form partial derivatives, b = 1.3, a solves
    dW/da = 0 and T = dW/db; the solver must give that F and the Cauchy stress of it."""
    material = fem.RivlinSaunders(c1=1.863e5, c2=9.79e3, bulk=1e7)
    c1, c2, k, b = material.c1, material.c2, material.bulk, 1.3
    # W(a, b, c) = c1 (a^2 + b^2 + c^2 - 3 - 2 ln abc) + c2 (a^2 b^2 + b^2 c^2 + a^2 c^2 - 3 - 4 ln abc)
    #              + k/2 (abc - 1)^2, differentiated by hand at c = 1
    p11 = lambda a: c1 * (2 * a - 2 / a) + c2 * (2 * a * b * b + 2 * a - 4 / a) + k * (a * b - 1) * b
    a = brentq(p11, 0.3, 1.5)
    p22 = c1 * (2 * b - 2 / b) + c2 * (2 * a * a * b + 2 * b - 4 / b) + k * (a * b - 1) * a
    p33 = c2 * (2 * a * a + 2 * b * b - 4) + k * (a * b - 1) * a * b
    s22, s33 = p22 / a, p33 / (a * b)  # sigma = P F^T / J, sigma_11 = 0
    exact_von_mises = np.sqrt(0.5 * (s22**2 + (s22 - s33) ** 2 + s33**2))

    points, triangles = mesh_region(unit_square(), 0.3)
    displacement = fem.triangle_basis(points, triangles, order, vector=True)
    u = fem.solve_elasticity(
        displacement, material,
        fixed=[(lambda x: np.isclose(x[1], 0), (1,)), (lambda x: np.isclose(x[0], 0), (0,))],
        tractions=[(lambda x: np.isclose(x[1], 1), lambda x: np.stack([0 * x[0], p22 + 0 * x[0]]))], load_steps=4)
    where = displacement.doflocs
    np.testing.assert_allclose(u[0::2], (a - 1) * where[0, 0::2], atol=1e-10)
    np.testing.assert_allclose(u[1::2], (b - 1) * where[1, 1::2], atol=1e-10)
    stress = fem.nodal_stress(displacement, fem.triangle_basis(points, triangles, order), material, u)
    np.testing.assert_allclose(stress, exact_von_mises, rtol=1e-8)
    assert b - 1 > 0.29 and abs(a * b - 1) < 0.02  # a large, nearly isochoric stretch


def test_elasticity_von_mises_converges_under_mesh_refinement():
    """The same void at resolutions 8 and 16 against 32: the von Mises error at interior probe points falls."""
    pde, seed, index = Elasticity(), 0, 3
    void = star_curve(pde.radii(np.random.default_rng([seed, index, 0])))
    x, y = np.meshgrid(np.linspace(0.06, 0.94, 23), np.linspace(0.06, 0.94, 23))
    probes = np.stack([x.ravel(), y.ravel()], axis=1)
    probes = probes[signed_distance(probes, void) > 0.03]

    def at_probes(resolution):
        sample = pde.solve_sample(seed, index, resolution)
        assert sample["draw"] == 0
        basis = fem.triangle_basis(sample["points"], sample["cells"], 1)
        return basis.probes(probes.T) @ sample["outputs"][:, 0]

    reference = at_probes(32)
    errors = [np.sqrt(np.mean((at_probes(r) - reference) ** 2)) / np.sqrt(np.mean(reference**2)) for r in (8, 16)]
    assert errors[1] < 0.6 * errors[0], errors
    assert errors[1] < 0.1, errors
    assert 50 < reference.mean() < 1000  # tension 100 over a cell with a void: von Mises of the same order
