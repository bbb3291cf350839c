"""Steady incompressible flow in a curved 2-D pipe, on a structured mesh of the pipe (Geo-FNO's pipe set).

    (u . grad) u - nu Laplacian u + grad p = 0,    div u = 0,

in the channel {(x, y): 0 < x < L, |y - c(x)| < W / 2}, the image of the reference square (s, r) in
[0, 1]^2 under x = L s, y = c(L s) + W (r - 1/2). The centreline c is a cubic Hermite spline through
equally spaced control points with random heights and slopes. Parabolic inflow u = (U 4 r (1 - r), 0)
at x = 0, no slip on the walls, do-nothing (nu du/dn - p n = 0) at x = L.

A sample is the R x R lattice (R odd) of the mapped square: the Taylor-Hood P2 nodes of the triangle
mesh made by splitting each of its ((R - 1) / 2)^2 cells in two are exactly the lattice points (vertices,
edge midpoints, diagonal midpoints), so the finite-element velocity is stored where it is computed:
points (R^2, 2) in lattice order (along the pipe, then across), cells the (R - 1)^2 lattice quads,
inputs (R^2, 2) the reference coordinates (s, r), outputs (R^2, 3) (u_x, u_y, p), the pressure (P1)
evaluated at the midpoints. Geo-FNO's target is channel 0, u_x.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.interpolate import CubicHermiteSpline
from skfem import MeshTri

from oplearn.data.pdes.flow_fem import TaylorHood, lattice_ordering
from oplearn.errors import ConfigError, SolverError

MIN_RESOLUTION = 5


class Pipe(BaseModel):
    """Geo-FNO-style pipe flow: a random centreline -> velocity and pressure on the mapped lattice.

    Defaults follow our reading of Geo-FNO's description: length 10, width 1, viscosity 0.005 (Reynolds
    number U W / nu = 200), five control points with heights U[-2, 2] and slopes U[-1, 1], inflow peak
    speed 1, R = 129. A draw whose Newton iteration fails is replaced by the next draw.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ClassVar[str] = "pipe"
    steady: ClassVar[bool] = True
    geometry: ClassVar[str] = "mesh"
    cell_type: ClassVar[str] = "quad"
    dim: ClassVar[int] = 2
    channels: ClassVar[dict[str, int]] = {"inputs": 2, "outputs": 3}

    viscosity: float = Field(0.005, gt=0, allow_inf_nan=False, description="kinematic viscosity nu")
    length: float = Field(10.0, gt=0, allow_inf_nan=False, description="pipe length L along x")
    width: float = Field(1.0, gt=0, allow_inf_nan=False, description="vertical width W of the pipe")
    control_points: int = Field(5, ge=2, description="centreline control points, equally spaced in x")
    height_range: float = Field(2.0, ge=0, allow_inf_nan=False,
                                description="control-point heights are uniform in [-height_range, height_range]")
    slope_range: float = Field(1.0, ge=0, allow_inf_nan=False,
                               description="control-point slopes are uniform in [-slope_range, slope_range]")
    inflow_speed: float = Field(1.0, gt=0, allow_inf_nan=False, description="peak speed U of the parabolic inflow")
    newton_steps: int = Field(25, ge=1, description="Newton steps allowed before a draw counts as failed")
    max_draws: int = Field(5, ge=1, description="draws tried per sample before giving up")

    def centreline(self, heights: np.ndarray, slopes: np.ndarray) -> CubicHermiteSpline:
        """The centreline y = c(x): the cubic Hermite spline with these heights and slopes at the control points."""
        return CubicHermiteSpline(np.linspace(0.0, self.length, self.control_points), heights, slopes)

    def draw_centreline(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Random control heights and slopes, each (control_points,): heights first, then slopes."""
        heights = rng.uniform(-self.height_range, self.height_range, self.control_points)
        slopes = rng.uniform(-self.slope_range, self.slope_range, self.control_points)
        return heights, slopes

    def solve_sample(self, seed: int, index: int, resolution: int) -> dict:
        """Sample ``index``: the first draw d = 0, 1, ... (noise from default_rng([seed, index, d])) that solves.

        Returns points (R^2, 2), cells ((R-1)^2, 4), inputs (R^2, 2), outputs (R^2, 3) and "draw": d.
        """
        _check_resolution(resolution)
        failures = []
        for draw in range(self.max_draws):
            heights, slopes = self.draw_centreline(np.random.default_rng([int(seed), int(index), draw]))
            try:
                return {**self.solve_geometry(heights, slopes, resolution), "draw": draw}
            except SolverError as error:
                failures.append(str(error))
        raise SolverError(f"pipe sample {index} (seed {seed}) failed in all {self.max_draws} draws "
                          f"({failures[-1]}); raise the viscosity, lower height_range/slope_range or "
                          "raise max_draws")

    def solve_geometry(self, heights: np.ndarray, slopes: np.ndarray, resolution: int) -> dict:
        """Flow in the pipe with these control heights and slopes, as in :meth:`solve_sample` without "draw"."""
        _check_resolution(resolution)
        cells_per_side = (resolution - 1) // 2
        lattice = LatticeMesh(cells_per_side)
        s, r = lattice.vertex_positions / (2 * cells_per_side)
        x = self.length * s
        y = self.centreline(heights, slopes)(x) + self.width * (r - 0.5)
        mesh = MeshTri(np.stack([x, y]), lattice.triangles)
        spaces = TaylorHood(mesh)
        nodes = lattice.nodes_of(mesh)
        last = 2 * cells_per_side
        boundary = mesh.boundary_facets()
        ends = nodes[:, mesh.facets[:, boundary]]  # (2, 2, B): lattice position of both ends
        wall = boundary[np.all(ends[1] == 0, axis=0) | np.all(ends[1] == last, axis=0)]
        inlet = boundary[np.all(ends[0] == 0, axis=0)]
        fixed = np.union1d(spaces.nodes_on(wall), spaces.nodes_on(inlet))
        across = nodes[1, fixed] / last
        inflow = np.where(nodes[0, fixed] == 0, self.inflow_speed * 4 * across * (1 - across), 0.0)
        flow = spaces.solve(self.viscosity, fixed, np.stack([inflow, np.zeros_like(inflow)]),
                            max_steps=self.newton_steps,
                            ordering=lattice_ordering(nodes, mesh.p.shape[1]))
        if not (np.all(np.isfinite(flow.velocity)) and np.all(np.isfinite(flow.pressure))):
            raise SolverError("pipe flow is not finite")

        pressure = np.concatenate([flow.pressure, flow.pressure[mesh.facets].mean(axis=0)])
        order = np.lexsort((nodes[1], nodes[0]))  # lattice order: along the pipe, then across
        return {
            "points": spaces.points[:, order].T.copy(),
            "cells": lattice_quads(resolution),
            "inputs": (nodes[:, order].T / last).astype(np.float64),
            "outputs": np.stack([flow.velocity[0], flow.velocity[1], pressure])[:, order].T.copy(),
        }


class LatticeMesh:
    """The triangles of an m x m grid of cells with vertex (i, j) numbered i (m + 1) + j, split along (i, j)-(i+1, j+1).

    Positions are on the (2m + 1)-point lattice: vertex (i, j) sits at (2i, 2j).
    """

    def __init__(self, cells_per_side: int):
        m = cells_per_side
        i, j = np.meshgrid(np.arange(m + 1), np.arange(m + 1), indexing="ij")
        self.vertex_positions = 2.0 * np.stack([i.ravel(), j.ravel()])
        corner = (np.arange(m)[:, None] * (m + 1) + np.arange(m)[None, :]).ravel()
        a, b, c, d = corner, corner + m + 1, corner + m + 2, corner + 1
        self.triangles = np.concatenate([np.stack([a, b, c]), np.stack([a, c, d])], axis=1)

    def nodes_of(self, mesh: MeshTri) -> np.ndarray:
        """(2, D) integer lattice positions of the mesh's P2 nodes: its vertices, then its edge midpoints."""
        vertices = self.vertex_positions.astype(np.int64)
        midpoints = (vertices[:, mesh.facets[0]] + vertices[:, mesh.facets[1]]) // 2
        return np.concatenate([vertices, midpoints], axis=1)


def lattice_quads(resolution: int) -> np.ndarray:
    """((R-1)^2, 4) counter-clockwise quads of the R x R lattice numbered I R + J."""
    corner = (np.arange(resolution - 1)[:, None] * resolution + np.arange(resolution - 1)[None, :]).ravel()
    return np.stack([corner, corner + resolution, corner + resolution + 1, corner + 1], axis=1).astype(np.int64)


def _check_resolution(resolution: int) -> None:
    is_integer = isinstance(resolution, (int, np.integer)) and not isinstance(resolution, bool)
    if not is_integer or resolution < MIN_RESOLUTION or resolution % 2 == 0:
        raise ConfigError(f"pipe resolution must be an odd integer >= {MIN_RESOLUTION} (the P2 nodes of "
                          f"(R-1)/2 x (R-1)/2 cells), e.g. 129; got {resolution!r}")
