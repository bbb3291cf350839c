"""Incompressible potential flow around random NACA four-digit airfoils, on unstructured gmsh meshes.

Stream function psi (u = d psi / dy, v = -d psi / dx), harmonic in the disc of radius R around the
chord's midpoint minus the airfoil, freestream U = 1 along +x:

    Laplacian psi = 0,    psi = y on the far-field circle,    psi = C on the airfoil.

The constant C fixes the circulation; it is chosen by the Kutta condition: the dividing streamline
psi = C leaves the sharp trailing edge along the bisector of its angle (with psi = psi0 + C psi1 the
condition psi(q) = C at a point q a hundredth of a chord behind the edge is linear in C). On a circle
psi = y - Gamma ln(r) / (2 pi) + O(1/r) differs from psi = y by a constant, so the truncated far field
errs only by O(1/R). P2 elements on gmsh's linear triangles; velocity is the L2 projection of curl psi
onto the P1 nodes, the pressure coefficient Cp = 1 - |u|^2 / U^2 (Bernoulli); lift by Kutta-Joukowski,
Cl = -2 Gamma / (U c), Gamma the counter-clockwise circulation (the flux of grad psi through the airfoil).

The angle of attack rotates the airfoil (nose up) about its quarter chord, so the mesh alone carries
the geometry and the angle. Unlike Geo-FNO's airfoil set (the compressible Euler equations at Mach
0.8, with shocks, on a C-mesh, output the Mach number), this is incompressible, irrotational and
inviscid: no shocks, no boundary layer, no drag (d'Alembert), only the circulation set by Kutta.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.sparse.linalg import splu
from skfem import Basis, BilinearForm, ElementTriP1, ElementTriP2, MeshTri, asm
from skfem.helpers import dot, grad

from oplearn.data.pdes.meshing import counter_clockwise, start_gmsh
from oplearn.errors import ConfigError, SolverError

MIN_RESOLUTION = 8
KUTTA_DISTANCE = 0.01  # chords behind the trailing edge where psi = C is imposed
GROWTH = 0.15  # largest growth of the mesh size per unit distance from the body


def naca_four_digit(camber: float, camber_position: float, thickness: float, points_per_side: int) -> np.ndarray:
    """Closed-trailing-edge NACA 4-digit section with chord [0, 1], counter-clockwise from the trailing edge.

    Half thickness 5 t (0.2969 sqrt(x) - 0.1260 x - 0.3516 x^2 + 0.2843 x^3 - 0.1036 x^4) laid normal to
    the camber line m / p^2 (2 p x - x^2) (x < p), m / (1 - p)^2 (1 - 2 p + 2 p x - x^2) (x >= p), at
    cosine-spaced x. Returns (2 n - 2, 2): the trailing edge (1, 0), the upper surface to the leading
    edge (0, 0), the lower surface back (each point once).
    """
    x = 0.5 * (1.0 - np.cos(np.linspace(0.0, np.pi, points_per_side)))
    half = 5 * thickness * (0.2969 * np.sqrt(x) - 0.1260 * x - 0.3516 * x**2 + 0.2843 * x**3 - 0.1036 * x**4)
    m, p = camber, camber_position
    front = x < p
    line = np.where(front, m / p**2 * (2 * p * x - x**2), m / (1 - p) ** 2 * (1 - 2 * p + 2 * p * x - x**2))
    slope = np.where(front, 2 * m / p**2 * (p - x), 2 * m / (1 - p) ** 2 * (p - x))
    angle = np.arctan(slope)
    upper = np.stack([x - half * np.sin(angle), line + half * np.cos(angle)], axis=1)
    lower = np.stack([x + half * np.sin(angle), line - half * np.cos(angle)], axis=1)
    upper[-1] = lower[-1] = (1.0, 0.0)
    upper[0] = lower[0] = (0.0, 0.0)
    return np.concatenate([upper[::-1][:-1], lower[:-1]])


def mesh_around(body: np.ndarray, centre: np.ndarray, radius: float, far_segments: int) -> MeshTri:
    """Triangles (gmsh, Frontal-Delaunay) filling the disc |x - centre| < radius minus the polygon ``body``.

    ``body`` (K, 2) is a closed counter-clockwise polygon; its vertices become the boundary nodes
    (one segment each), sized by their neighbours' distance; the circle has ``far_segments`` segments.
    Mesh sizes grow away from the body by at most GROWTH per unit distance. Raises SolverError if gmsh fails.
    """
    gmsh = start_gmsh()
    try:
        geo = gmsh.model.geo
        spacing = np.linalg.norm(body - np.roll(body, 1, axis=0), axis=1)
        sizes = 0.5 * (spacing + np.roll(spacing, -1))
        body_points = [geo.addPoint(x, y, 0.0, size) for (x, y), size in zip(body, sizes)]
        body_lines = [geo.addLine(a, b) for a, b in zip(body_points, body_points[1:] + body_points[:1])]
        far_size = 2 * np.pi * radius / far_segments
        angles = np.linspace(0.0, 2 * np.pi, 5)[:-1]
        middle = geo.addPoint(centre[0], centre[1], 0.0, far_size)
        far_points = [geo.addPoint(centre[0] + radius * np.cos(a), centre[1] + radius * np.sin(a), 0.0, far_size)
                      for a in angles]
        arcs = [geo.addCircleArc(a, middle, b) for a, b in zip(far_points, far_points[1:] + far_points[:1])]
        geo.addPlaneSurface([geo.addCurveLoop(arcs), geo.addCurveLoop(body_lines)])
        geo.remove([(0, middle)])
        geo.synchronize()
        for line in body_lines:
            gmsh.model.mesh.setTransfiniteCurve(line, 2)
        distance = gmsh.model.mesh.field.add("Distance")
        gmsh.model.mesh.field.setNumbers(distance, "CurvesList", body_lines)
        growth = gmsh.model.mesh.field.add("MathEval")  # sizes grow by at most GROWTH per unit distance
        gmsh.model.mesh.field.setString(growth, "F", f"{np.mean(spacing)} + {GROWTH} * F{distance}")
        gmsh.model.mesh.field.setAsBackgroundMesh(growth)
        for arc in arcs:
            gmsh.model.mesh.setTransfiniteCurve(arc, max(far_segments // 4, 2) + 1)
        gmsh.model.mesh.generate(2)
        tags, coordinates, _ = gmsh.model.mesh.getNodes()
        _, element_nodes = gmsh.model.mesh.getElementsByType(2)
    except Exception as error:  # gmsh raises bare Exceptions
        raise SolverError(f"gmsh could not mesh the airfoil's far field: {error}") from None
    finally:
        gmsh.clear()
    index = np.zeros(int(tags.max()) + 1, dtype=np.int64)
    index[tags.astype(np.int64)] = np.arange(tags.size)
    points = coordinates.reshape(-1, 3)[:, :2].T
    triangles = index[element_nodes.astype(np.int64)].reshape(-1, 3).T
    used = np.unique(triangles)
    if used.size != tags.size:  # drop nodes no triangle uses (geometry helpers)
        renumber = np.full(tags.size, -1, dtype=np.int64)
        renumber[used] = np.arange(used.size)
        points, triangles = points[:, used], renumber[triangles]
    return MeshTri(np.ascontiguousarray(points), np.ascontiguousarray(triangles))


@BilinearForm
def _laplace(u, v, _):
    return dot(grad(u), grad(v))


@dataclass(frozen=True)
class PotentialFlow:
    """A solved flow: the stream function (P2 degrees of freedom), velocity (2, V) and pressure coefficient
    (V,) at the mesh's vertices, lift coefficient, psi's constant on the body, the body's boundary facets."""

    mesh: MeshTri
    stream_function: np.ndarray
    velocity: np.ndarray
    pressure_coefficient: np.ndarray
    lift_coefficient: float
    body_value: float
    body_facets: np.ndarray

    @property
    def body_nodes(self) -> np.ndarray:
        """Indices of the vertices on the body."""
        return np.unique(self.mesh.facets[:, self.body_facets])


def solve_stream_function(mesh: MeshTri, body_facets: np.ndarray, far_facets: np.ndarray, far_value,
                          body_value: float | None, kutta_point: np.ndarray | None = None) -> PotentialFlow:
    """Harmonic psi (P2) with psi = far_value(x, y) on ``far_facets`` and a constant on ``body_facets``.

    The constant is ``body_value``, or (``body_value=None``) the one with psi(kutta_point) equal to it.
    Velocity u = (psi_y, -psi_x) projected onto P1; Cp = 1 - |u|^2 (freestream speed 1); the lift
    coefficient is -2 Gamma per unit chord, Gamma the counter-clockwise circulation around the body.
    """
    basis = Basis(mesh, ElementTriP2(), intorder=4)
    stiffness = asm(_laplace, basis).tocsr()
    body = basis.get_dofs(body_facets).all()
    far = basis.get_dofs(far_facets).all()
    fixed = np.concatenate([far, body])
    free = np.setdiff1d(np.arange(basis.N), fixed)
    factors = splu(stiffness[free][:, free].tocsc())

    def harmonic(far_values, body_constant):
        psi = np.zeros(basis.N)
        psi[far], psi[body] = far_values, body_constant
        psi[free] = factors.solve(-(stiffness[free][:, fixed] @ psi[fixed]))
        return psi

    far_values = far_value(*basis.doflocs[:, far])
    if body_value is None:
        psi_far, psi_body = harmonic(far_values, 0.0), harmonic(0.0 * far_values, 1.0)
        probe = basis.probes(np.asarray(kutta_point, dtype=np.float64).reshape(2, 1))
        body_value = float((probe @ psi_far)[0] / (1.0 - (probe @ psi_body)[0]))
        psi = psi_far + body_value * psi_body
    else:
        psi = harmonic(far_values, body_value)
    circulation = float(np.sum((stiffness @ psi)[body]))

    nodal = Basis(mesh, ElementTriP1(), intorder=4)
    slope = basis.interpolate(psi).grad
    velocity = np.stack([nodal.project(slope[1]), nodal.project(-slope[0])])
    if not (np.all(np.isfinite(velocity)) and np.isfinite(circulation)):
        raise SolverError("potential flow is not finite")
    return PotentialFlow(mesh, psi, velocity, 1.0 - np.sum(velocity**2, axis=0), -2.0 * circulation, body_value,
                         body_facets)


def flow_around_naca(camber: float, camber_position: float, thickness: float, angle_of_attack: float,
                     resolution: int, far_field_radius: float = 20.0, body_value: float | None = None
                     ) -> PotentialFlow:
    """Potential flow (freestream 1 along +x) around the NACA section turned nose up by ``angle_of_attack`` degrees.

    ``resolution`` points per surface, cosine-spaced; the far-field circle (radius in chords, centred at
    mid-chord) has ``resolution`` segments; the Kutta condition holds at the sharp trailing edge unless
    ``body_value`` imposes another constant psi on the airfoil (another circulation).
    """
    section = naca_four_digit(camber, camber_position, thickness, resolution)
    turn = np.radians(angle_of_attack)
    rotation = np.array([[np.cos(turn), np.sin(turn)], [-np.sin(turn), np.cos(turn)]])  # clockwise
    pivot = np.array([0.25, 0.0])
    body = (section - pivot) @ rotation.T + pivot
    centre = np.array([0.5, 0.0])
    mesh = mesh_around(body, centre, far_field_radius, resolution)
    edge, after_edge, before_edge = body[0], body[1], body[-1]
    bisector = (edge - after_edge) / np.linalg.norm(edge - after_edge)
    bisector += (edge - before_edge) / np.linalg.norm(edge - before_edge)
    kutta_point = edge + KUTTA_DISTANCE * bisector / np.linalg.norm(bisector)
    boundary = mesh.boundary_facets()
    far = np.linalg.norm(mesh.p[:, mesh.facets[:, boundary]].mean(axis=1) - centre[:, None], axis=0)
    far = far > 0.5 * far_field_radius
    return solve_stream_function(mesh, boundary[~far], boundary[far], lambda x, y: y, body_value, kutta_point)


class Airfoil(BaseModel):
    """Random NACA four-digit airfoils at random angles of attack -> pressure coefficient and velocity.

    Camber m, its position p, thickness t and the angle (degrees) are uniform in their ranges (a range
    with equal ends fixes the value). A sample is the mesh's vertices: points (N, 2), triangles (M, 3),
    inputs (N, 1) the distance to the airfoil, outputs (N, 3) (Cp, u_x, u_y).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ClassVar[str] = "airfoil"
    steady: ClassVar[bool] = True
    geometry: ClassVar[str] = "mesh"
    cell_type: ClassVar[str] = "triangle"
    dim: ClassVar[int] = 2
    channels: ClassVar[dict[str, int]] = {"inputs": 1, "outputs": 3}

    camber: tuple[float, float] = Field((0.0, 0.06), description="range of the maximum camber m (chords)")
    camber_position: tuple[float, float] = Field((0.2, 0.6), description="range of the camber's position p (chords)")
    thickness: tuple[float, float] = Field((0.06, 0.18), description="range of the thickness t (chords)")
    angle_of_attack: tuple[float, float] = Field((-5.0, 10.0), description="range of the angle (degrees)")
    far_field_radius: float = Field(20.0, ge=5, allow_inf_nan=False, description="far-field circle radius (chords)")
    max_draws: int = Field(3, ge=1, description="draws tried per sample before giving up")

    @model_validator(mode="after")
    def _physical_ranges(self) -> Airfoil:
        limits = {"camber": (0.0, 0.095), "camber_position": (0.1, 0.9), "thickness": (0.01, 0.4),
                  "angle_of_attack": (-20.0, 20.0)}
        for field, (lowest, highest) in limits.items():
            low, high = getattr(self, field)
            if not (np.isfinite(low) and np.isfinite(high) and lowest <= low <= high <= highest):
                raise ValueError(f"{field} must be a range (low, high) with {lowest} <= low <= high <= "
                                 f"{highest}, got ({low}, {high})")
        return self

    def draw_shape(self, rng: np.random.Generator) -> tuple[float, float, float, float]:
        """(m, p, t, angle in degrees), uniform in the ranges, drawn in that order."""
        return tuple(float(rng.uniform(*getattr(self, field)))
                     for field in ("camber", "camber_position", "thickness", "angle_of_attack"))

    def solve_sample(self, seed: int, index: int, resolution: int) -> dict:
        """Sample ``index``: the first draw d = 0, 1, ... (noise from default_rng([seed, index, d])) that solves.

        Returns points (N, 2), cells (M, 3), inputs (N, 1), outputs (N, 3) and "draw": d.
        """
        _check_resolution(resolution)
        failures = []
        for draw in range(self.max_draws):
            shape = self.draw_shape(np.random.default_rng([int(seed), int(index), draw]))
            try:
                return {**self.solve_shape(*shape, resolution), "draw": draw}
            except SolverError as error:
                failures.append(str(error))
        raise SolverError(f"airfoil sample {index} (seed {seed}) failed in all {self.max_draws} draws "
                          f"({failures[-1]}); raise max_draws or change the resolution")

    def solve_shape(self, camber: float, camber_position: float, thickness: float, angle_of_attack: float,
                    resolution: int) -> dict:
        """One airfoil's sample, as in :meth:`solve_sample` without "draw"."""
        flow = flow_around_naca(camber, camber_position, thickness, angle_of_attack, resolution,
                                self.far_field_radius)
        points = flow.mesh.p.T.copy()
        ends = flow.mesh.p[:, flow.mesh.facets[:, flow.body_facets]].T  # (K, 2 ends, 2)
        distance = distance_to_segments(points, ends[:, 0], ends[:, 1])
        return {"points": points, "cells": counter_clockwise(points, flow.mesh.t.T.astype(np.int64)),
                "inputs": distance[:, None],
                "outputs": np.stack([flow.pressure_coefficient, *flow.velocity], axis=1)}


def distance_to_segments(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """(N,) distance of each of ``points`` (N, 2) to the nearest of the segments ``start``-``end`` (K, 2)."""
    edge = end - start
    distance = np.full(points.shape[0], np.inf)
    for chunk in np.array_split(np.arange(points.shape[0]), max(1, points.shape[0] // 2048)):
        offset = points[chunk, None, :] - start[None]
        along = np.clip(np.einsum("nkd,kd->nk", offset, edge) / np.sum(edge**2, axis=1), 0.0, 1.0)
        distance[chunk] = np.min(np.linalg.norm(offset - along[..., None] * edge[None], axis=2), axis=1)
    return distance


def _check_resolution(resolution: int) -> None:
    is_integer = isinstance(resolution, (int, np.integer)) and not isinstance(resolution, bool)
    if not is_integer or resolution < MIN_RESOLUTION:
        raise ConfigError(f"airfoil resolution (points per surface) must be an integer >= {MIN_RESOLUTION}, "
                          f"got {resolution!r}")
