"""Steady incompressible Navier-Stokes by Taylor-Hood P2/P1 finite elements and Newton's method.

    (u . grad) u - nu Laplacian u + grad p = 0,    div u = 0    in a 2-D domain meshed by triangles,

u given at Dirichlet velocity nodes, the "do-nothing" condition nu du/dn - p n = 0 on the rest of the
boundary. Weak form, for all test functions (v, q) in P2^2 x P1:

    nu (grad u, grad v) + ((u . grad) u, v) - (p, div v) - (q, div u) = 0.

Newton's method starts from the Stokes solution; a step solves J(w) (du, dp) = -R(w, p) with the
residual R of the weak form and the Jacobian J(w) of the convection linearised around the iterate w,
((w . grad) du + (du . grad) w, v), by one sparse LU (SuperLU) of the saddle-point matrix. Once a step
is small (below ``chord_below`` of the velocity) the last factors are reused (chord steps) while they
keep contracting. On a mesh cut from a structured lattice a nested-dissection order of the unknowns
(:func:`lattice_ordering`, computed once per mesh) keeps the fill small. Velocities live at the P2
nodes (mesh vertices, then edge midpoints: scikit-fem's scalar P2 numbering), pressures at the vertices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu
from skfem import Basis, BilinearForm, ElementTriP1, ElementTriP2, ElementVector, LinearForm, MeshTri, asm
from skfem.helpers import ddot, div, dot, grad, mul

from oplearn.errors import SolverError


@BilinearForm
def _vector_laplace(u, v, _):
    return ddot(grad(u), grad(v))


@BilinearForm
def _negative_divergence(u, q, _):
    return -div(u) * q


@BilinearForm
def _linearised_convection(u, v, w):
    wind = w["wind"]
    return dot(mul(grad(u), wind) + mul(grad(wind), u), v)


@LinearForm
def _convection_of_wind(v, w):
    wind = w["wind"]
    return dot(mul(grad(wind), wind), v)


@dataclass(frozen=True)
class FlowSolution:
    """A converged flow: velocity (2, D) at the P2 nodes, pressure (V,) at the vertices, Newton steps taken."""

    velocity: np.ndarray
    pressure: np.ndarray
    newton_steps: int


class TaylorHood:
    """P2/P1 Taylor-Hood spaces on a triangle mesh, with the parts of the system that do not change.

    ``points`` (2, D) are the P2 nodes (vertices first, then edge midpoints); the Stokes blocks (vector
    Laplacian, divergence) are assembled once, the convection once per Newton step.
    """

    def __init__(self, mesh: MeshTri, intorder: int = 4):
        self.mesh = mesh
        self.velocity_basis = Basis(mesh, ElementVector(ElementTriP2()), intorder=intorder)
        self.pressure_basis = Basis(mesh, ElementTriP1(), intorder=intorder)
        self.laplace = asm(_vector_laplace, self.velocity_basis).tocsr()
        self.divergence = asm(_negative_divergence, self.velocity_basis, self.pressure_basis).tocsr()

    @property
    def points(self) -> np.ndarray:
        """(2, D) coordinates of the P2 nodes."""
        return self.velocity_basis.doflocs[:, ::2]

    def nodes_on(self, facets: np.ndarray) -> np.ndarray:
        """Indices of the P2 nodes (vertices and midpoints) on the given boundary facets."""
        return self.velocity_basis.get_dofs(facets).all()[::2] // 2

    def solve(self, viscosity: float, fixed_nodes: np.ndarray, fixed_velocity: np.ndarray,
              pinned_pressure: tuple[int, float] | None = None, tolerance: float = 1e-9,
              max_steps: int = 25, ordering: np.ndarray | None = None,
              chord_below: float = 1e-2) -> FlowSolution:
        """Newton's method from the Stokes solution (chord steps near convergence).

        ``fixed_nodes`` (k,) P2 node indices with velocity ``fixed_velocity`` (2, k); ``pinned_pressure``
        (vertex, value) fixes the pressure's constant where no boundary is do-nothing. Stops when a step
        changes the velocity by at most ``tolerance`` times its largest value; raises SolverError when
        ``max_steps`` steps do not get there or the iterate is not finite. ``ordering`` is a permutation
        of the unknowns (velocity components interleaved, then pressures) for the LU, e.g.
        :func:`lattice_ordering`; without one SuperLU orders by minimum degree.
        """
        n_velocity = self.velocity_basis.N
        n_total = n_velocity + self.pressure_basis.N
        fixed_nodes = np.asarray(fixed_nodes, dtype=np.int64)
        fixed = np.concatenate([2 * fixed_nodes, 2 * fixed_nodes + 1])
        values = np.concatenate([fixed_velocity[0], fixed_velocity[1]])
        if pinned_pressure is not None:
            fixed = np.append(fixed, n_velocity + pinned_pressure[0])
            values = np.append(values, pinned_pressure[1])
        is_fixed = np.zeros(n_total, dtype=bool)
        is_fixed[fixed] = True
        if ordering is None:
            free, options = np.flatnonzero(~is_fixed), {"permc_spec": "MMD_AT_PLUS_A"}
        else:
            free, options = ordering[~is_fixed[ordering]], {"permc_spec": "NATURAL"}
        solution = np.zeros(n_total)
        solution[fixed] = values

        stokes = viscosity * self.laplace
        factors = self._factorise(stokes, free, options)
        rhs = -self._saddle(stokes)[:, fixed] @ values
        solution[free] = factors.solve(rhs[free])
        refactor, last_change = True, np.inf
        for step in range(1, max_steps + 1):
            velocity, pressure = solution[:n_velocity], solution[n_velocity:]
            field = self.velocity_basis.interpolate(velocity)
            if refactor:
                jacobian = stokes + asm(_linearised_convection, self.velocity_basis, wind=field)
                factors = self._factorise(jacobian, free, options)
            residual = np.concatenate([
                stokes @ velocity + asm(_convection_of_wind, self.velocity_basis, wind=field)
                + self.divergence.T @ pressure, self.divergence @ velocity])
            update = factors.solve(-residual[free])
            solution[free] += update
            velocity = solution[:n_velocity]
            if not np.all(np.isfinite(solution)):
                raise SolverError(f"Newton's method for Navier-Stokes diverged (non-finite velocity) at step "
                                  f"{step}; raise the viscosity or refine the mesh")
            size = max(np.max(np.abs(velocity)), 1e-300)
            change = np.max(np.abs(update[free < n_velocity]))
            if change <= tolerance * size:
                return FlowSolution(velocity.reshape(-1, 2).T.copy(), solution[n_velocity:].copy(), step)
            refactor = change > chord_below * size or change > 0.25 * last_change
            last_change = change
        raise SolverError(f"Newton's method for Navier-Stokes did not converge in {max_steps} steps; "
                          "raise the viscosity or refine the mesh")

    def _saddle(self, momentum: sp.spmatrix) -> sp.csr_matrix:
        """The whole matrix [[momentum, B^T], [B, 0]] of the velocity and pressure unknowns."""
        return sp.bmat([[momentum, self.divergence.T], [self.divergence, None]], format="csr")

    def _factorise(self, momentum: sp.spmatrix, free: np.ndarray, options: dict):
        """SuperLU factors of the saddle-point matrix restricted to the free unknowns, in the given order."""
        matrix = self._saddle(momentum)[free][:, free].tocsc()
        return splu(matrix, diag_pivot_thresh=0.01, options={"SymmetricMode": True}, **options)


def lattice_ordering(lattice: np.ndarray, n_vertices: int, leaf_size: int = 24) -> np.ndarray:
    """Nested-dissection order of the Taylor-Hood unknowns of a mesh cut from a structured lattice.

    ``lattice`` (2, D) holds each P2 node's integer position on the (2m + 1)-point lattice of a mesh with
    m x m cells (vertices at even positions, midpoints between); the first ``n_vertices`` nodes are the
    vertices. A line of even positions separates the P2 nodes on its two sides, so boxes are split at
    such lines, recursively, each half numbered before its separator; in each block the velocity
    components come first, then the block's pressures. Returns a permutation of the 2 D + n_vertices
    unknowns.
    """
    blocks: list[np.ndarray] = []

    def dissect(nodes: np.ndarray) -> None:
        extent = lattice[:, nodes].max(axis=1) - lattice[:, nodes].min(axis=1)
        axis = int(np.argmax(extent))
        position = lattice[axis, nodes]
        low, high = position.min(), position.max()
        middle = (low + high) // 2
        middle += middle % 2
        if nodes.size <= leaf_size or not low < middle < high:
            blocks.append(nodes)
            return
        dissect(nodes[position < middle])
        dissect(nodes[position > middle])
        blocks.append(nodes[position == middle])

    dissect(np.arange(lattice.shape[1]))
    n_velocity = 2 * lattice.shape[1]
    return np.concatenate([np.concatenate([np.stack([2 * block, 2 * block + 1], axis=1).ravel(),
                                           n_velocity + block[block < n_vertices]]) for block in blocks])
