"""Geo-FNO's elasticity data: a hyperelastic unit cell with a random void, pulled at the top.

The body is [0, 1]^2 minus a void about (1/2, 1/2) of radius r(theta) = r_min + r_span / (1 + exp(g(theta))),
g a periodic Gaussian process with variance sigma^2 / (j^2 + tau^2) in Fourier mode j (Geo-FNO: sigma 7,
tau 3, radii 0.2 to 0.4); the void's boundary is a spline through 64 points of r. Material: plane-strain
Rivlin-Saunders (Geo-FNO's constants c1 = 1.863e5, c2 = 9.79e3), made nearly incompressible by a
volumetric penalty (no mixed u-p formulation; :class:`oplearn.data.pdes.fem.RivlinSaunders`), bulk 1e7
by default (small-strain Poisson ratio about 0.48). The bottom edge is fixed, the top edge carries the
dead-load traction (0, t), the sides and the void are free; Newton with load steps on P2 (default) or P1
displacements. Output: the von Mises stress of the Cauchy stress, L2-projected onto the nodes.
A sample: points (N, 2) the nodes (the coordinates are the real input), cells (M, 3) over them (P2: each
triangle split in four), inputs (N, 1) = distance to the polygon through the void's 64 boundary points
(0 on the void), outputs (N, 1) = von Mises stress (P1: lumped projection, P2: L2 projection cut at 0).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from oplearn.data.pdes import fem
from oplearn.data.pdes.meshing import mesh_region, signed_distance, star_curve, unit_square
from oplearn.errors import ConfigError

VOID_POINTS = 64  # spline control points of the void's boundary
MIN_RESOLUTION = 4


class Elasticity(BaseModel):
    """Hyperelastic unit cell with a random void: von Mises stress at the nodes.

    ``resolution`` is elements per unit length (element size 1 / resolution); at the defaults (P2),
    resolution 16 gives about 1,000 nodes, Geo-FNO's size.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ClassVar[str] = "elasticity"
    steady: ClassVar[bool] = True
    geometry: ClassVar[str] = "mesh"
    cell_type: ClassVar[str] = "triangle"
    dim: ClassVar[int] = 2
    channels: ClassVar[dict[str, int]] = {"inputs": 1, "outputs": 1}

    radius_min: float = Field(0.2, gt=0, allow_inf_nan=False, description="smallest void radius")
    radius_span: float = Field(0.2, gt=0, allow_inf_nan=False, description="void radii lie in min + (0, span)")
    sigma: float = Field(7.0, ge=0, allow_inf_nan=False, description="void radius process: amplitude")
    tau: float = Field(3.0, gt=0, allow_inf_nan=False, description="void radius process: inverse length")
    modes: int = Field(8, ge=0, le=31, description="Fourier modes of the void radius")
    c1: float = Field(1.863e5, gt=0, allow_inf_nan=False, description="Rivlin-Saunders c1")
    c2: float = Field(9.79e3, ge=0, allow_inf_nan=False, description="Rivlin-Saunders c2")
    bulk: float = Field(1.0e7, gt=0, allow_inf_nan=False, description="volumetric penalty (J - 1)^2 bulk / 2")
    traction: float = Field(100.0, allow_inf_nan=False, description="upward nominal traction on the top edge")
    load_steps: int = Field(2, ge=1, le=100, description="Newton load steps")
    order: Literal[1, 2] = Field(2, description="Lagrange order of the displacement")
    failed_draws: int = Field(0, ge=0, description="testing: treat the first draws of every sample as failed")

    @model_validator(mode="after")
    def _void_inside_the_cell(self):
        if self.radius_min + self.radius_span >= 0.49:
            raise ValueError(f"radius_min + radius_span = {self.radius_min + self.radius_span} must be < 0.49 "
                             "so the void stays inside the unit cell")
        return self

    @property
    def material(self) -> fem.RivlinSaunders:
        return fem.RivlinSaunders(self.c1, self.c2, self.bulk)

    def radii(self, rng: np.random.Generator) -> np.ndarray:
        """Void radius at the VOID_POINTS angles 2 pi j / K; noise rng.standard_normal((2, modes + 1))."""
        j = np.arange(self.modes + 1)
        scale = self.sigma / np.sqrt(j**2 + self.tau**2)
        a, b = rng.standard_normal((2, self.modes + 1)) * scale
        theta = 2 * np.pi * np.arange(VOID_POINTS) / VOID_POINTS
        g = np.cos(np.outer(theta, j)) @ a + np.sin(np.outer(theta, j)) @ b
        return self.radius_min + self.radius_span / (1 + np.exp(np.clip(g, -50, 50)))

    def solve_sample(self, seed: int, index: int, resolution: int) -> dict:
        """Sample ``index`` of data set ``seed`` with elements of size 1 / ``resolution``: see the module."""
        is_integer = isinstance(resolution, (int, np.integer)) and not isinstance(resolution, bool)
        if not is_integer or resolution < MIN_RESOLUTION:
            raise ConfigError(f"elasticity resolution (elements per unit length) must be an integer >= "
                              f"{MIN_RESOLUTION}, got {resolution!r}")
        return fem.solve_with_redraws(lambda rng: self._solve_draw(rng, resolution), seed, index,
                                      self.failed_draws, label=self.name)

    def _solve_draw(self, rng: np.random.Generator, resolution: int) -> dict:
        void = star_curve(self.radii(rng))
        points, triangles = mesh_region(unit_square(), 1.0 / resolution, holes=(void,))
        displacement = fem.triangle_basis(points, triangles, self.order, vector=True)
        u = fem.solve_elasticity(
            displacement, self.material,
            fixed=[(lambda x: np.isclose(x[1], 0.0), (0, 1))],
            tractions=[(lambda x: np.isclose(x[1], 1.0), lambda x: np.stack([0 * x[0], self.traction + 0 * x[0]]))],
            load_steps=self.load_steps, label=self.name)
        scalar = fem.triangle_basis(points, triangles, self.order)
        stress = fem.nodal_stress(displacement, scalar, self.material, u)
        nodes, cells = fem.nodal_mesh(scalar)
        distance = np.maximum(signed_distance(nodes, void), 0.0)  # nodes on the spline may fall a hair inside
        return {"points": nodes, "cells": cells, "inputs": distance[:, None],
                "outputs": stress[:, None]}
