"""Steady Darcy flow on random smooth star-shaped domains, by finite elements.

    -div(a(x) grad u(x)) = f   in D,    u = 0 on the boundary of D.

D is star-shaped about (1/2, 1/2): r(theta) = r0 (1 + sum_{j=1}^J (a_j cos j theta + b_j sin j theta)),
a_j, b_j ~ U(-A, A) / j, its boundary a closed spline through 64 points of r. The coefficient is
a Gaussian random field w on the unit torus, w = sum_k sqrt(l_k) (xi_k cos 2 pi k.x + eta_k sin 2 pi k.x)
over the half lattice 0 < |k|_inf <= modes, l_k = (4 pi^2 |k|^2 + tau^2)^(-alpha), scaled to unit
variance, evaluated at the mesh nodes: a = high where w >= 0 and low elsewhere (``threshold``) or
a = exp(sigma w) (``exp``). Lagrange P1 or P2 elements; a is the finite-element function through its
nodal values. A sample: points (N, 2) the nodes, cells (M, 3) triangles over them (P2: each triangle
split in four), inputs (N, 1) = a, outputs (N, 1) = u.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from oplearn.data.pdes import fem
from oplearn.data.pdes.meshing import mesh_region, star_curve
from oplearn.errors import ConfigError, SolverError

BOUNDARY_POINTS = 64  # spline control points of the domain's boundary
MIN_RESOLUTION = 4


def torus_field(points: np.ndarray, rng: np.random.Generator, alpha: float, tau: float, modes: int) -> np.ndarray:
    """A unit-variance Gaussian random field on the unit torus at ``points`` (N, 2): returns (N,).

    Covariance (-Laplacian + tau^2)^(-alpha) truncated to 0 < |k|_inf <= modes; the noise is
    rng.standard_normal((2, K)) for the K wave vectors in lexicographic order.
    """
    k1, k2 = np.meshgrid(np.arange(-modes, modes + 1), np.arange(-modes, modes + 1), indexing="ij")
    k1, k2 = k1.ravel(), k2.ravel()
    half = (k1 > 0) | ((k1 == 0) & (k2 > 0))
    k = np.stack([k1[half], k2[half]], axis=1).astype(np.float64)  # (K, 2)
    weights = (4 * np.pi**2 * (k**2).sum(1) + tau**2) ** (-alpha / 2)
    weights /= np.sqrt((weights**2).sum())
    noise = rng.standard_normal((2, len(k)))
    phase = 2 * np.pi * points @ k.T  # (N, K)
    return np.cos(phase) @ (weights * noise[0]) + np.sin(phase) @ (weights * noise[1])


class DarcyDomain(BaseModel):
    """Darcy flow on random star-shaped domains: coefficient a at the nodes -> solution u at the nodes.

    ``resolution`` is elements per unit length (element size 1 / resolution); at the defaults,
    resolution 90 gives about 3,800 P1 nodes (P2: resolution 45).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ClassVar[str] = "darcy_domain"
    steady: ClassVar[bool] = True
    geometry: ClassVar[str] = "mesh"
    cell_type: ClassVar[str] = "triangle"
    dim: ClassVar[int] = 2
    channels: ClassVar[dict[str, int]] = {"inputs": 1, "outputs": 1}

    radius: float = Field(0.35, gt=0, le=0.45, allow_inf_nan=False, description="mean radius r0 of the domain")
    boundary_modes: int = Field(4, ge=0, le=16, description="Fourier terms J of the radius")
    boundary_amplitude: float = Field(0.15, ge=0, lt=0.5, allow_inf_nan=False,
                                      description="A: term j's coefficients are U(-A, A) / j")
    coefficient: Literal["threshold", "exp"] = Field("threshold", description="how a is made from the GRF w")
    alpha: float = Field(2.0, gt=0, allow_inf_nan=False, description="GRF smoothness exponent")
    tau: float = Field(3.0, gt=0, allow_inf_nan=False, description="GRF inverse length scale")
    modes: int = Field(12, ge=1, le=64, description="GRF wave numbers per axis")
    high: float = Field(12.0, gt=0, allow_inf_nan=False, description="threshold: a where w >= 0")
    low: float = Field(3.0, gt=0, allow_inf_nan=False, description="threshold: a where w < 0")
    sigma: float = Field(1.0, gt=0, le=5, allow_inf_nan=False, description="exp: a = exp(sigma w)")
    forcing: float = Field(1.0, allow_inf_nan=False, description="constant right-hand side f")
    order: Literal[1, 2] = Field(1, description="Lagrange element order")
    failed_draws: int = Field(0, ge=0, description="testing: treat the first draws of every sample as failed")

    def radii(self, rng: np.random.Generator) -> np.ndarray:
        """r at the BOUNDARY_POINTS angles 2 pi j / K; SolverError if it leaves [r0 / 5, 1/2]."""
        j = np.arange(1, self.boundary_modes + 1)
        a, b = rng.uniform(-self.boundary_amplitude, self.boundary_amplitude, (2, self.boundary_modes)) / j
        theta = 2 * np.pi * np.arange(BOUNDARY_POINTS) / BOUNDARY_POINTS
        r = self.radius * (1 + np.cos(np.outer(theta, j)) @ a + np.sin(np.outer(theta, j)) @ b)
        if r.min() < self.radius / 5 or r.max() > 0.5:
            raise SolverError("the random domain left the unit square or nearly pinched")
        return r

    def solve_sample(self, seed: int, index: int, resolution: int) -> dict:
        """Sample ``index`` of data set ``seed`` with elements of size 1 / ``resolution``: see the module."""
        _check_resolution(resolution)
        return fem.solve_with_redraws(lambda rng: self._solve_draw(rng, resolution), seed, index,
                                      self.failed_draws, label=self.name)

    def _solve_draw(self, rng: np.random.Generator, resolution: int) -> dict:
        points, triangles = mesh_region(star_curve(self.radii(rng)), 1.0 / resolution)
        basis = fem.triangle_basis(points, triangles, self.order)
        nodes, cells = fem.nodal_mesh(basis)
        w = torus_field(nodes, rng, self.alpha, self.tau, self.modes)
        a = np.where(w >= 0, self.high, self.low) if self.coefficient == "threshold" else np.exp(self.sigma * w)
        u = fem.solve_diffusion(basis, a, self.forcing)
        return {"points": nodes, "cells": cells, "inputs": a[:, None], "outputs": u[:, None]}

    # -- physics-informed losses: residuals of a prediction on a mesh batch ------------------------

    def residual(self, u, batch):
        """The PDE residual of ``u (B, 1, N)`` on the mesh batch (a = ``batch.inputs`` at the nodes): ``(B, 1, N)``.

        At each sample's interior nodes r_i = (K(a) u - F)_i / m_i, the P1 weak form (the solver's, see
        :mod:`oplearn.data.pdes.mesh_residual`) over the lumped mass, which approximates -div(a grad u) - f
        independently of the mesh size; 0 at boundary and padded nodes. The P1 solution makes it zero to
        rounding; P2 data (triangles split in four) are measured with P1 on the split mesh, so their
        solutions leave a discretization-level residual. Differentiable in u.
        """
        from oplearn.data.pdes.mesh_residual import lumped_residual

        coefficient = self._check_batch(u, batch)
        return lumped_residual(batch.coords, batch.cells, coefficient, u[:, 0], self.forcing, batch.mask)[:, None]

    def boundary_residual(self, u, batch):
        """u - 0 at each sample's boundary nodes (edges in one triangle), 0 elsewhere: ``(B, 1, N)``."""
        from oplearn.data.pdes.mesh_residual import boundary_mask

        self._check_batch(u, batch)
        boundary = boundary_mask(batch.coords, batch.cells, batch.mask)
        return u * boundary[:, None].to(u.dtype)

    def _check_batch(self, u, batch):
        """The coefficient a (B, N) of a darcy_domain mesh batch that ``u`` fits; one-line errors otherwise."""
        from oplearn.errors import ShapeError

        if batch.pde is not None and batch.pde != self.name:
            raise ConfigError(f"the darcy_domain residual was given {batch.pde!r} data; use that PDE's residual "
                              "or darcy_domain data")
        if batch.kind != "mesh" or batch.cells is None or batch.coords is None:
            raise ConfigError(f"the darcy_domain residual needs mesh data with cells and coordinates, got "
                              f"{batch.kind!r} data{'' if batch.cells is not None else ' without cells'}")
        inputs = batch.inputs
        if inputs.ndim != 3 or inputs.shape[1] != 1:
            raise ShapeError(f"darcy_domain inputs must be the coefficient a as (B, 1, N), got {tuple(inputs.shape)}")
        if u.ndim != 3 or u.shape[1] != 1 or u.shape[0] != inputs.shape[0] or u.shape[2] != inputs.shape[2]:
            raise ShapeError(f"u must be (B, 1, N) = {(inputs.shape[0], 1, inputs.shape[2])} like the batch's "
                             f"inputs, got {tuple(u.shape)}")
        return inputs[:, 0]


def _check_resolution(resolution: int) -> None:
    is_integer = isinstance(resolution, (int, np.integer)) and not isinstance(resolution, bool)
    if not is_integer or resolution < MIN_RESOLUTION:
        raise ConfigError(f"darcy_domain resolution (elements per unit length) must be an integer >= "
                          f"{MIN_RESOLUTION}, got {resolution!r}")
