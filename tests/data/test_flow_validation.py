"""Validation of the flow solvers behind the pipe and airfoil data against exact solutions."""

import math

import numpy as np
import pytest
from skfem import Basis, ElementTriP2, ElementVector, Functional, MeshTri

from oplearn.data.pdes import airfoil as airfoil_module
from oplearn.data.pdes.airfoil import Airfoil, flow_around_naca, mesh_around, solve_stream_function
from oplearn.data.pdes.flow_fem import TaylorHood, lattice_ordering
from oplearn.data.pdes.pipe import Pipe
from oplearn.errors import SolverError


@pytest.mark.parametrize("viscosity", [1.0, 0.05, 0.002])
def test_straight_pipe_is_poiseuille_flow_to_rounding(viscosity):
    # u = (4 r (1 - r), 0), p = 8 nu (L - x) / W^2 is in P2 x P1 and solves Navier-Stokes with do-nothing outflow
    pipe = Pipe(viscosity=viscosity, length=4.0)
    flat = np.zeros(pipe.control_points)
    sample = pipe.solve_geometry(flat + 0.3, flat, 17)
    x, r = sample["points"][:, 0], sample["inputs"][:, 1]
    u_x, u_y, p = sample["outputs"].T
    assert np.abs(u_x - 4 * r * (1 - r)).max() < 1e-11
    assert np.abs(u_y).max() < 1e-11
    assert np.abs(p - 8 * viscosity * (4.0 - x)).max() < 1e-11 * max(1.0, 8 * viscosity * 4.0)


def kovasznay_velocity(x, y, reynolds):
    decay = reynolds / 2 - math.sqrt(reynolds**2 / 4 + 4 * math.pi**2)
    return np.stack([1 - np.exp(decay * x) * np.cos(2 * np.pi * y),
                     decay / (2 * np.pi) * np.exp(decay * x) * np.sin(2 * np.pi * y)]), decay


def kovasznay_error(cells: int, reynolds: float = 40.0) -> float:
    mesh = MeshTri.init_tensor(*[np.linspace(-0.5, 0.5, cells + 1)] * 2)
    spaces = TaylorHood(mesh)
    boundary = spaces.nodes_on(mesh.boundary_facets())
    data, decay = kovasznay_velocity(*spaces.points[:, boundary], reynolds)
    corner_pressure = 0.5 * (1 - math.exp(2 * decay * mesh.p[0, 0]))
    lattice = np.rint((spaces.points + 0.5) * 2 * cells).astype(np.int64)
    flow = spaces.solve(1 / reynolds, boundary, data, pinned_pressure=(0, corner_pressure),
                        ordering=lattice_ordering(lattice, mesh.p.shape[1]))
    assert flow.newton_steps <= 6  # Newton converges quadratically (a Picard iteration would take > 10)
    fine = Basis(mesh, ElementVector(ElementTriP2()), intorder=8)

    @Functional
    def squared_error(w):
        return np.sum((w["u"] - kovasznay_velocity(*w.x, reynolds)[0]) ** 2, axis=0)

    return math.sqrt(squared_error.assemble(fine, u=fine.interpolate(flow.velocity.T.ravel())))


def test_kovasznay_flow_converges_at_third_order():
    errors = [kovasznay_error(cells) for cells in (4, 8, 16, 32)]
    rates = [math.log2(coarse / fine) for coarse, fine in zip(errors, errors[1:])]
    assert all(2.8 < rate < 3.3 for rate in rates), (errors, rates)
    assert errors[-1] < 1e-4


def cylinder_speed_error(segments: int, radius: float = 0.5) -> tuple[float, float]:
    angle = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    mesh = mesh_around(radius * np.stack([np.cos(angle), np.sin(angle)], axis=1), np.zeros(2), 4.0, segments)
    boundary = mesh.boundary_facets()
    far = np.linalg.norm(mesh.p[:, mesh.facets[:, boundary]].mean(axis=1), axis=0) > 2.0
    exact = lambda x, y: y * (1 - radius**2 / (x**2 + y**2))  # noqa: E731  (no circulation)
    flow = solve_stream_function(mesh, boundary[~far], boundary[far], exact, 0.0)
    nodes = flow.body_nodes
    theta = np.arctan2(mesh.p[1, nodes], mesh.p[0, nodes])
    speed = np.linalg.norm(flow.velocity[:, nodes], axis=0)
    return float(np.abs(speed - 2 * np.abs(np.sin(theta))).max() / 2), flow.lift_coefficient


def test_cylinder_surface_speed_matches_two_u_sin_theta_and_converges():
    results = [cylinder_speed_error(segments) for segments in (32, 64, 128)]
    errors = [error for error, _ in results]
    assert errors[0] < 0.02 and errors[-1] < 0.002, errors
    assert errors[1] < 0.6 * errors[0] and errors[2] < 0.6 * errors[1], errors
    assert all(abs(lift) < 1e-4 for _, lift in results)


def largest_speed_at_trailing_edge(flow, edge) -> float:
    mesh = flow.mesh
    vertex = np.argmin(np.linalg.norm(mesh.p.T - edge, axis=1))
    elements = np.flatnonzero(np.any(mesh.t == vertex, axis=0))
    slope = Basis(mesh, ElementTriP2(), intorder=4, elements=elements).interpolate(flow.stream_function).grad
    return float(np.sqrt(np.sum(slope**2, axis=0)).max())


def test_kutta_condition_keeps_the_trailing_edge_speed_finite():
    # psi = C_kutta: the speed next to the edge stays bounded (falls towards stagnation) as the mesh refines;
    # any other constant leaves the r^(pi / beta - 1) corner singularity, which grows under refinement
    angle = np.radians(4.0)
    edge = np.array([0.25 + 0.75 * np.cos(angle), -0.75 * np.sin(angle)])
    kutta, other = [], []
    for resolution in (32, 128):
        flow = flow_around_naca(0.0, 0.4, 0.06, 4.0, resolution)
        shifted = flow_around_naca(0.0, 0.4, 0.06, 4.0, resolution, body_value=flow.body_value + 0.05)
        kutta.append(largest_speed_at_trailing_edge(flow, edge))
        other.append(largest_speed_at_trailing_edge(shifted, edge))
    assert kutta[1] < kutta[0] < 1.0, kutta
    assert other[1] > 1.8 * other[0], other


def test_naca0006_lift_matches_thin_airfoil_theory_and_surface_pressure():
    angle = 4.0
    flow = flow_around_naca(0.0, 0.4, 0.06, angle, 64)
    thin_airfoil = 2 * np.pi * np.radians(angle)
    assert abs(flow.lift_coefficient / thin_airfoil - 1) < 0.1
    # thickness raises the potential-flow lift slope by about 0.77 t: 2 pi (1 + 0.77 * 0.06) sin(alpha)
    assert flow.lift_coefficient == pytest.approx(2 * np.pi * 1.0462 * np.sin(np.radians(angle)), rel=0.02)
    # the pressure coefficient integrated over the surface gives the same lift and no drag (d'Alembert)
    mesh = flow.mesh
    start, end = mesh.facets[:, flow.body_facets]
    tangent = mesh.p[:, end] - mesh.p[:, start]
    normal = np.stack([tangent[1], -tangent[0]])  # length = facet length
    triangle = mesh.f2t[0, flow.body_facets]
    inside_fluid = mesh.p[:, mesh.t[:, triangle]].mean(axis=1) - 0.5 * (mesh.p[:, start] + mesh.p[:, end])
    normal *= np.sign(np.sum(normal * inside_fluid, axis=0))  # out of the body
    pressure = 0.5 * (flow.pressure_coefficient[start] + flow.pressure_coefficient[end])
    drag, lift = -np.sum(pressure * normal, axis=1)
    assert lift == pytest.approx(flow.lift_coefficient, rel=0.01)
    assert abs(drag) < 0.005


def test_samples_are_deterministic_per_seed_and_index():
    pipe, wing = Pipe(), Airfoil()
    for pde, resolution in ((pipe, 17), (wing, 16)):
        first, again = pde.solve_sample(3, 5, resolution), pde.solve_sample(3, 5, resolution)
        other = pde.solve_sample(3, 6, resolution)
        for key in ("points", "cells", "inputs", "outputs"):
            np.testing.assert_array_equal(first[key], again[key])
        assert first["draw"] == again["draw"]
        assert first["points"].shape != other["points"].shape or not np.array_equal(first["points"], other["points"])


def test_failed_pipe_draw_is_replaced_by_the_next_draw(monkeypatch):
    pipe = Pipe()
    solve = Pipe.solve_geometry
    calls = []

    def fail_first(self, heights, slopes, resolution):
        calls.append(heights)
        if len(calls) == 1:
            raise SolverError("Newton's method did not converge")
        return solve(self, heights, slopes, resolution)

    monkeypatch.setattr(Pipe, "solve_geometry", fail_first)
    sample = pipe.solve_sample(0, 2, 17)
    assert sample["draw"] == 1
    heights, slopes = pipe.draw_centreline(np.random.default_rng([0, 2, 1]))
    np.testing.assert_array_equal(calls[1], heights)
    np.testing.assert_array_equal(sample["outputs"], solve(pipe, heights, slopes, 17)["outputs"])


def test_failed_airfoil_mesh_is_replaced_by_the_next_draw(monkeypatch):
    mesher, calls = airfoil_module.mesh_around, []

    def fail_first(*args):
        calls.append(args)
        if len(calls) == 1:
            raise SolverError("gmsh could not mesh the airfoil's far field")
        return mesher(*args)

    monkeypatch.setattr(airfoil_module, "mesh_around", fail_first)
    wing = Airfoil()
    sample = wing.solve_sample(1, 4, 16)
    assert sample["draw"] == 1
    expected = wing.solve_shape(*wing.draw_shape(np.random.default_rng([1, 4, 1])), 16)
    np.testing.assert_array_equal(sample["outputs"], expected["outputs"])


def test_every_draw_failing_is_a_solver_error_naming_the_sample():
    # one Newton step cannot converge at Reynolds number 200: every draw fails for real
    with pytest.raises(SolverError, match=r"pipe sample 7 .*all 2 draws"):
        Pipe(newton_steps=1, max_draws=2).solve_sample(0, 7, 17)
