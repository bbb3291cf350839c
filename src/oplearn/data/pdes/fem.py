"""Finite elements on triangle meshes with scikit-fem: Poisson-type solves and plane-strain hyperelasticity.

* :func:`triangle_basis`: Lagrange P1 or P2 on a mesh given as ``points`` (N, 2), ``triangles`` (M, 3).
* :func:`solve_diffusion`: -div(a grad u) = f in the region, u = g on its boundary.
* :func:`solve_elasticity`: static equilibrium div P(F) = 0, F = I + grad u, under dead-load tractions
  P n = t on marked boundary parts and fixed displacement components elsewhere, by Newton's method
  with load steps. Plane strain: F is 3 x 3 with F_33 = 1. The tangent dP/dF is the complex-step
  derivative of the material's analytic P (exact to rounding), so a material is one formula.
* Materials: :class:`RivlinSaunders` (compressible Mooney-Rivlin / Rivlin-Saunders with a volumetric
  penalty) and :class:`LinearElastic` (small strain); each gives ``first_piola(F)`` and ``cauchy(F)``
  for (3, 3, ...) arrays of F.
* :func:`von_mises`, :func:`project`, :func:`nodal_stress`, :func:`nodal_mesh`: stress recovery at the
  basis' nodes and the mesh the nodes carry (P2: each triangle split into four through its edge midpoints).
* :func:`solve_with_redraws`: the mesh-PDE protocol's retry of failed random draws (see
  :mod:`oplearn.data.pdes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from skfem import (Basis, BilinearForm, ElementTriP1, ElementTriP2, ElementVector, FacetBasis, LinearForm,
                   MeshTri, asm, condense, solve)
from skfem.helpers import dot, grad

from oplearn.data.pdes.meshing import counter_clockwise
from oplearn.errors import SolverError

ELEMENTS = {1: ElementTriP1, 2: ElementTriP2}
Marker = Callable[[np.ndarray], np.ndarray]  # (2, n) coordinates -> (n,) bool


def triangle_basis(points: np.ndarray, triangles: np.ndarray, order: int = 1, vector: bool = False,
                   intorder: int | None = None) -> Basis:
    """Lagrange P``order`` basis (scalar, or 2-vector with ``vector``) on the mesh (points (N, 2), triangles (M, 3))."""
    mesh = MeshTri(np.ascontiguousarray(points.T, dtype=np.float64), np.ascontiguousarray(triangles.T))
    element = ELEMENTS[order]()
    return Basis(mesh, ElementVector(element) if vector else element, intorder=intorder or 2 * order)


def _at_quadrature(value, basis: Basis) -> np.ndarray:
    """A coefficient as (elements, quadrature points): a number, a callable of x (2, ...) or nodal values."""
    if callable(value):
        shape = (basis.nelems, basis.X.shape[-1])
        return np.broadcast_to(value(np.array(basis.global_coordinates())), shape).astype(np.float64)
    value = np.asarray(value, dtype=np.float64)
    if value.ndim == 0:
        return np.full((basis.nelems, basis.X.shape[-1]), float(value))
    return np.array(basis.interpolate(value))


@BilinearForm
def _diffusion(u, v, w):
    return w["a"] * dot(grad(u), grad(v))


@LinearForm
def _load(v, w):
    return w["f"] * v


def solve_diffusion(basis: Basis, coefficient, forcing, boundary_value=0.0) -> np.ndarray:
    """Solve -div(a grad u) = f, u = g on the whole boundary; returns the nodal values of u (basis.N,).

    ``coefficient`` a and ``forcing`` f are numbers, callables of x (2, ...) or nodal values; ``boundary_value``
    g a number or a callable of x (2, n) evaluated at the boundary nodes.
    """
    stiffness = asm(_diffusion, basis, a=_at_quadrature(coefficient, basis))
    load = asm(_load, basis, f=_at_quadrature(forcing, basis))
    boundary = basis.get_dofs().all()
    u = np.zeros(basis.N)
    u[boundary] = boundary_value(basis.doflocs[:, boundary]) if callable(boundary_value) else boundary_value
    return solve(*condense(stiffness, load, x=u, D=boundary))


# -- materials -------------------------------------------------------------------------------------

def _inverse_transpose(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F^{-T}, det F) for (3, 3, ...) arrays (real or complex)."""
    cof = np.empty_like(F)
    for i in range(3):
        for j in range(3):
            i1, i2, j1, j2 = (i + 1) % 3, (i + 2) % 3, (j + 1) % 3, (j + 2) % 3
            cof[i, j] = F[i1, j1] * F[i2, j2] - F[i1, j2] * F[i2, j1]
    det = np.einsum("j...,j...->...", F[0], cof[0])
    return cof / det, det


@dataclass(frozen=True)
class RivlinSaunders:
    """W = c1 (I1 - 3 - 2 ln J) + c2 (I2 - 3 - 4 ln J) + bulk/2 (J - 1)^2 (I1, I2: invariants of C = F^T F).

    Stress-free at F = I; its small-strain limit has shear modulus 2 (c1 + c2) and Lame lambda bulk.
    Geo-FNO's elasticity data use c1 = 1.863e5, c2 = 9.79e3 (incompressible); here incompressibility
    is approximated by the penalty ``bulk``.
    """

    c1: float
    c2: float
    bulk: float

    def first_piola(self, F: np.ndarray) -> np.ndarray:
        """P = dW/dF = 2 c1 (F - F^-T) + 2 c2 (I1 F - F C - 2 F^-T) + bulk (J - 1) J F^-T."""
        inverse_t, J = _inverse_transpose(F)
        C = np.einsum("ki...,kj...->ij...", F, F)
        I1 = np.einsum("ii...->...", C)
        FC = np.einsum("ik...,kj...->ij...", F, C)
        return (2 * self.c1 * (F - inverse_t) + 2 * self.c2 * (I1 * F - FC - 2 * inverse_t)
                + self.bulk * (J - 1) * J * inverse_t)

    def cauchy(self, F: np.ndarray) -> np.ndarray:
        """sigma = P F^T / J."""
        _, J = _inverse_transpose(F)
        return np.einsum("ik...,jk...->ij...", self.first_piola(F), F) / J


@dataclass(frozen=True)
class LinearElastic:
    """Small strain: sigma = lame_lambda tr(eps) I + 2 shear eps, eps = sym(F - I); P = sigma."""

    lame_lambda: float
    shear: float

    def first_piola(self, F: np.ndarray) -> np.ndarray:
        eye = np.eye(3).reshape(3, 3, *([1] * (F.ndim - 2)))
        strain = 0.5 * (F + np.swapaxes(F, 0, 1)) - eye
        return self.lame_lambda * np.einsum("ii...->...", strain) * eye + 2 * self.shear * strain

    def cauchy(self, F: np.ndarray) -> np.ndarray:
        return self.first_piola(F)


def plane_strain_gradient(displacement_gradient: np.ndarray) -> np.ndarray:
    """F (3, 3, ...) = I + grad u with the in-plane block from (2, 2, ...) grad u and F_33 = 1."""
    F = np.zeros((3, 3, *displacement_gradient.shape[2:]), dtype=displacement_gradient.dtype)
    F[:2, :2] = displacement_gradient
    for i in range(3):
        F[i, i] += 1.0
    return F


def _stress_and_tangent(material, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """In-plane P (2, 2, ...) and dP_ij/dF_kl (2, 2, 2, 2, ...) by complex steps on the in-plane F_kl."""
    step = 1e-30
    stress = material.first_piola(F)[:2, :2]
    tangent = np.empty((2, 2, 2, 2, *F.shape[2:]))
    for k in range(2):
        for l in range(2):
            perturbed = F.astype(np.complex128)
            perturbed[k, l] += 1j * step
            tangent[:, :, k, l] = material.first_piola(perturbed)[:2, :2].imag / step
    return stress, tangent


def solve_elasticity(basis: Basis, material, fixed: list[tuple[Marker, tuple[int, ...]]],
                     tractions: list[tuple[Marker, Callable]], load_steps: int = 1, tolerance: float = 1e-10,
                     max_iterations: int = 25, label: str = "the elasticity solve") -> np.ndarray:
    """Displacement dofs (basis.N,) of the equilibrium under dead-load tractions, by load-stepped Newton.

    ``basis`` is a vector basis; ``fixed`` pairs a boundary marker with the components held at zero
    (0: x, 1: y); ``tractions`` pairs a marker with t(x) -> (2, ...) (nominal traction, reference
    configuration). Each load step scales every traction by step / load_steps and iterates Newton until
    the update is below ``tolerance`` times the displacement (or zero). Raises SolverError on divergence.
    """
    mesh = basis.mesh
    held = np.unique(np.concatenate([
        basis.get_dofs(mesh.facets_satisfying(marker, boundaries_only=True)).all([f"u^{c + 1}" for c in comps])
        for marker, comps in fixed])) if fixed else np.array([], dtype=np.int64)
    external = np.zeros(basis.N)
    for marker, traction in tractions:
        facet_basis = FacetBasis(mesh, basis.elem, facets=mesh.facets_satisfying(marker, boundaries_only=True),
                                 intorder=2 * basis.elem.maxdeg + 1)
        x = np.array(facet_basis.global_coordinates())  # (2, facets, quadrature points)
        values = np.broadcast_to(np.asarray(traction(x), dtype=np.float64), x.shape)
        external += asm(LinearForm(lambda v, w: np.einsum("i...,i...->...", values, v)), facet_basis)

    u = np.zeros(basis.N)
    for step in range(1, load_steps + 1):
        load = external * step / load_steps
        for _ in range(max_iterations):
            F = plane_strain_gradient(grad(basis.interpolate(u)))
            stress, tangent = _stress_and_tangent(material, F)
            stiffness = asm(BilinearForm(
                lambda du, v, w: np.einsum("ijkl...,kl...,ij...->...", tangent, grad(du), grad(v))), basis)
            residual = asm(LinearForm(lambda v, w: np.einsum("ij...,ij...->...", stress, grad(v))), basis) - load
            update = solve(*condense(stiffness, -residual, D=held))
            if not np.all(np.isfinite(update)):
                raise SolverError(f"{label}: Newton produced NaN/inf at load step {step}")
            u = u + update
            if np.linalg.norm(update) <= tolerance * max(np.linalg.norm(u), 1e-300):
                break
        else:
            raise SolverError(f"{label}: Newton did not converge in {max_iterations} iterations at load step "
                              f"{step}; use more load steps or a smaller load")
    return u


# -- stress recovery and output meshes -------------------------------------------------------------

def von_mises(sigma: np.ndarray) -> np.ndarray:
    """sqrt(3/2 s:s) with s the deviator of the (3, 3, ...) Cauchy stress."""
    deviator = sigma - np.einsum("ii...->...", sigma) / 3 * np.eye(3).reshape(3, 3, *([1] * (sigma.ndim - 2)))
    return np.sqrt(1.5 * np.einsum("ij...,ij...->...", deviator, deviator))


def project(basis: Basis, values: np.ndarray, lumped: bool = False) -> np.ndarray:
    """L2 projection of values at the quadrature points (elements, points) onto the scalar ``basis``.

    ``lumped`` (P1 only): the row-sum mass matrix, i.e. nodal averages weighted by the hat functions,
    which keep the values' bounds (no overshoot at jumps)."""
    mass = asm(BilinearForm(lambda u, v, w: u * v), basis)
    load = asm(LinearForm(lambda v, w: values * v), basis)
    return load / np.asarray(mass.sum(axis=1)).ravel() if lumped else solve(mass, load)


def nodal_stress(vector_basis: Basis, scalar_basis: Basis, material, u: np.ndarray) -> np.ndarray:
    """Von Mises stress of displacement ``u`` projected onto ``scalar_basis`` (same mesh and quadrature):
    P1 by the lumped projection (the stress is constant per element), P2 by the L2 projection, whose
    small undershoots below 0 are cut off."""
    F = plane_strain_gradient(grad(vector_basis.interpolate(u)))
    linear = scalar_basis.element_dofs.shape[0] == 3
    return np.maximum(project(scalar_basis, von_mises(material.cauchy(F)), lumped=linear), 0.0)


def nodal_mesh(basis: Basis) -> tuple[np.ndarray, np.ndarray]:
    """The points (N, 2) that carry the scalar basis' nodal values and triangles (M, 3) over them.

    P1: the mesh itself. P2: vertices then edge midpoints, each triangle split into four
    (v0, m01, m02), (m01, v1, m12), (m02, m12, v2), (m01, m12, m02). Triangles counter-clockwise
    (scikit-fem sorts each triangle's vertices, which loses the orientation).
    """
    points = basis.doflocs.T.copy()
    dofs = basis.element_dofs
    if dofs.shape[0] == 3:
        return points, counter_clockwise(points, dofs.T.astype(np.int64))
    v0, v1, v2, m01, m12, m02 = dofs
    split = np.concatenate([np.stack(c, axis=1) for c in ((v0, m01, m02), (m01, v1, m12), (m02, m12, v2),
                                                          (m01, m12, m02))])
    return points, counter_clockwise(points, split.astype(np.int64))


# -- random draws ----------------------------------------------------------------------------------

MAX_DRAWS = 8  # draws tried per sample before it is an error


def solve_with_redraws(solve_draw: Callable[[np.random.Generator], dict], seed: int, index: int,
                       failed_draws: int = 0, label: str = "mesh PDE") -> dict:
    """``{**solve_draw(rng), "draw": d}`` for the first draw d = 0, 1, ... whose solve succeeds.

    Draw d uses ``np.random.default_rng([seed, index, d])``; a draw fails when ``solve_draw`` raises
    SolverError (a meshing failure, Newton divergence, non-finite values). The first ``failed_draws``
    draws are treated as failed without solving (a hook for tests). After MAX_DRAWS failures a
    SolverError names the sample.
    """
    reason = ""
    for draw in range(MAX_DRAWS):
        if draw < failed_draws:
            reason = "failed_draws forces this draw to fail"
            continue
        try:
            sample = solve_draw(np.random.default_rng([int(seed), int(index), draw]))
        except SolverError as error:
            reason = str(error)
            continue
        if all(np.all(np.isfinite(value)) for value in sample.values()):
            return {**sample, "draw": draw}
        reason = "the solution has NaN/inf values"
    raise SolverError(f"{label}: sample {index} failed in all {MAX_DRAWS} random draws (last: {reason}); "
                      "check the parameters (a smaller load, a smoother domain)")
