"""P1 finite-element residuals on triangle meshes in torch: differentiable, vectorized over elements.

The weak form of -div(a grad u) = f with Lagrange P1 hats phi_i on a triangle mesh,

    R_i(u) = sum_e int_e a grad u . grad phi_i  -  int f phi_i  = (K(a) u - F)_i,

assembled with ``index_add`` over the elements (no python loop over them), so gradients flow to ``u``
(and to ``a`` and the coordinates). The coefficient is taken as :func:`oplearn.data.pdes.fem.solve_diffusion`
takes it for P1: the P1 function through its nodal values, integrated exactly (quadrature of order 2), so
on element e it acts as its vertex mean a_e = (a_0 + a_1 + a_2) / 3 and K(a) equals scikit-fem's matrix.
F uses the P1 interpolant of f (a constant: F_i = f m_i). Dividing R_i by the lumped mass
m_i = sum_{e ∋ i} |e| / 3 gives a mesh-size independent residual that approximates -div(a grad u) - f.

Single meshes: ``coords (N, 2)``, ``cells (M, 3)`` (int64 indices), fields ``(N,)`` or batched ``(B, N)``
on the same mesh. Padded batches of different meshes (:class:`oplearn.data.batch.Batch` layout,
``coords (B, 2, N)``, a list of ``(M_b, 3)`` cells, ``mask (B, N)``) go through
:func:`lumped_residual` and :func:`boundary_mask`, which flatten the batch into one mesh of B * N nodes
(sample b's nodes offset by b N), so one assembly serves the whole batch.
"""

from __future__ import annotations

import torch

from oplearn.errors import ShapeError


def _check_mesh(coords: torch.Tensor, cells: torch.Tensor) -> None:
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ShapeError(f"mesh coordinates must be (N, 2), got {tuple(coords.shape)}; pass one sample's points")
    if cells.ndim != 2 or cells.shape[1] != 3 or cells.dtype not in (torch.int32, torch.int64):
        raise ShapeError(f"triangle cells must be an integer (M, 3) tensor, got {tuple(cells.shape)} "
                         f"{cells.dtype}; pass point indices of P1 triangles")


def _check_field(name: str, value: torch.Tensor, n: int) -> None:
    if value.ndim not in (1, 2) or value.shape[-1] != n:
        raise ShapeError(f"{name} must be (N,) or (B, N) nodal values with N = {n} mesh points, "
                         f"got {tuple(value.shape)}")


def _float_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The promoted floating dtype of the tensors, at least float32 (bf16/half inputs are computed in float32)."""
    dtype = torch.float32
    for t in tensors:
        if torch.is_floating_point(t):
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def triangle_geometry(coords: torch.Tensor, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Areas ``(M,)`` and hat-function gradients ``(M, 3, 2)`` of the triangles ``cells (M, 3)`` over ``coords (N, 2)``.

    With e1 = p1 - p0, e2 = p2 - p0, det = e1 x e2: grad phi_1 = (e2_y, -e2_x) / det,
    grad phi_2 = (-e1_y, e1_x) / det, grad phi_0 = -(grad phi_1 + grad phi_2); area = |det| / 2
    (either orientation; triangles must not be degenerate).
    """
    _check_mesh(coords, cells)
    p = coords[cells]  # (M, 3, 2)
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    g1 = torch.stack([e2[:, 1], -e2[:, 0]], dim=-1) / det[:, None]
    g2 = torch.stack([-e1[:, 1], e1[:, 0]], dim=-1) / det[:, None]
    return det.abs() / 2, torch.stack([-g1 - g2, g1, g2], dim=1)


def _scatter(cells: torch.Tensor, local: torch.Tensor, n: int) -> torch.Tensor:
    """Sum element contributions ``local (..., M, 3)`` into nodes: ``(..., N)``."""
    lead = local.shape[:-2]
    out = local.new_zeros(*lead, n)
    return out.index_add(-1, cells.reshape(-1), local.reshape(*lead, -1))


def p1_stiffness_action(coords: torch.Tensor, cells: torch.Tensor, a: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """K(a) u: ``(N,)`` or ``(B, N)`` for ``u (N,) | (B, N)`` and nodal ``a (N,) | (B, N)`` on the mesh.

    (K(a) u)_i = sum_e |e| a_e grad u|_e . grad phi_i|_e with a_e the vertex mean of a (the exact integral of
    the P1 coefficient, as the P1 solver takes it); differentiable in u, a and coords.
    """
    _check_mesh(coords, cells)
    n = coords.shape[0]
    _check_field("the coefficient a", a, n)
    _check_field("u", u, n)
    dtype = _float_dtype(coords, a, u)
    cells = cells.long()
    area, grads = triangle_geometry(coords.to(dtype), cells)
    a_e = a.to(dtype)[..., cells].mean(-1)  # (..., M)
    grad_u = torch.einsum("...mk,mkd->...md", u.to(dtype)[..., cells], grads)  # (..., M, 2)
    flux = (area * a_e)[..., None] * grad_u
    return _scatter(cells, torch.einsum("...md,mkd->...mk", flux, grads), n)


def lumped_mass(coords: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Row sums of the P1 mass matrix, m_i = sum_{e ∋ i} |e| / 3: ``(N,)`` (0 at points in no triangle)."""
    area, _ = triangle_geometry(coords.to(_float_dtype(coords)), cells.long())
    return _scatter(cells.long(), area[:, None].expand(-1, 3) / 3, coords.shape[0])


def p1_load(coords: torch.Tensor, cells: torch.Tensor, f) -> torch.Tensor:
    """F_i = int f_h phi_i for f a number (F = f m, ``(N,)``) or nodal values ``(N,) | (B, N)``.

    Nodal f is its P1 interpolant integrated exactly (consistent mass): on element e,
    F_i += |e| (f_i + sum_{j in e} f_j) / 12.
    """
    _check_mesh(coords, cells)
    n, cells = coords.shape[0], cells.long()
    if not isinstance(f, torch.Tensor) or f.ndim == 0:
        return lumped_mass(coords, cells) * f
    _check_field("the forcing f", f, n)
    dtype = _float_dtype(coords, f)
    area, _ = triangle_geometry(coords.to(dtype), cells)
    f_local = f.to(dtype)[..., cells]  # (..., M, 3)
    local = area[..., None] / 12 * (f_local + f_local.sum(-1, keepdim=True))
    return _scatter(cells, local, n)


def p1_residual(coords: torch.Tensor, cells: torch.Tensor, a: torch.Tensor, u: torch.Tensor, f) -> torch.Tensor:
    """The weak-form residual K(a) u - F(f) at every node (boundary rows included): ``(N,)`` or ``(B, N)``."""
    return p1_stiffness_action(coords, cells, a, u) - p1_load(coords, cells, f)


def boundary_nodes(cells: torch.Tensor, n: int) -> torch.Tensor:
    """``(n,)`` bool: True at the vertices of boundary edges, the edges that belong to one triangle only."""
    if cells.ndim != 2 or cells.shape[1] != 3:
        raise ShapeError(f"triangle cells must be (M, 3), got {tuple(cells.shape)}")
    cells = cells.long()
    edges = torch.cat([cells[:, [0, 1]], cells[:, [1, 2]], cells[:, [2, 0]]]).sort(dim=1).values  # (3M, 2)
    keys, counts = torch.unique(edges[:, 0] * n + edges[:, 1], return_counts=True)
    once = keys[counts == 1]
    boundary = torch.zeros(n, dtype=torch.bool, device=cells.device)
    boundary[once // n] = True
    boundary[once % n] = True
    return boundary


# -- padded batches of meshes ----------------------------------------------------------------------

def _flat_cells(cells: list[torch.Tensor], n: int) -> torch.Tensor:
    """The batch's cells as one mesh over B * n nodes (sample b's indices + b n)."""
    return torch.cat([c.long().reshape(-1, 3) + b * n for b, c in enumerate(cells)])


def _check_batch(coords: torch.Tensor, cells: list[torch.Tensor], mask: torch.Tensor | None) -> tuple[int, int]:
    if coords.ndim != 3 or coords.shape[1] != 2:
        raise ShapeError(f"batch coordinates must be (B, 2, N), got {tuple(coords.shape)}")
    b, _, n = coords.shape
    if cells is None or len(cells) != b:
        raise ShapeError(f"a mesh batch of {b} samples needs {b} cell tensors, got "
                         f"{'none' if cells is None else len(cells)}")
    for index, c in enumerate(cells):
        if c.ndim != 2 or c.shape[1] != 3:
            raise ShapeError(f"sample {index}'s cells must be (M, 3) triangles, got {tuple(c.shape)}")
    if mask is not None and tuple(mask.shape) != (b, n):
        raise ShapeError(f"the batch mask must be (B, N) = {(b, n)}, got {tuple(mask.shape)}")
    return b, n


def boundary_mask(coords: torch.Tensor, cells: list[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, N)`` bool: True at each sample's boundary nodes (never at padded points)."""
    b, n = _check_batch(coords, cells, mask)
    boundary = boundary_nodes(_flat_cells(cells, n), b * n).reshape(b, n)
    return boundary if mask is None else boundary & mask


def lumped_residual(coords: torch.Tensor, cells: list[torch.Tensor], a: torch.Tensor, u: torch.Tensor, f,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """(K(a) u - F)_i / m_i at the interior nodes of each sample of a padded batch, 0 at boundary and padded ones.

    ``coords (B, 2, N)``, ``cells`` B tensors ``(M_b, 3)``, nodal ``a``, ``u`` ``(B, N)``, ``f`` a number or
    ``(B, N)``, ``mask (B, N)`` (True at real points) or None. Returns ``(B, N)``, which approximates
    -div(a grad u) - f (the equations of the P1 solution are r = 0). Padded points are in no triangle and
    their values never enter.
    """
    b, n = _check_batch(coords, cells, mask)
    for name, value in (("the coefficient a", a), ("u", u)):
        if tuple(value.shape) != (b, n):
            raise ShapeError(f"{name} must be (B, N) = {(b, n)}, got {tuple(value.shape)}")
    dtype = _float_dtype(coords, a, u)
    points = coords.to(dtype).transpose(1, 2).reshape(b * n, 2)
    flat = _flat_cells(cells, n)
    weak = p1_stiffness_action(points, flat, a.reshape(-1), u.reshape(-1))
    mass = lumped_mass(points, flat)
    if isinstance(f, torch.Tensor) and f.ndim > 0:
        if tuple(f.shape) != (b, n):
            raise ShapeError(f"the forcing f must be a number or (B, N) = {(b, n)}, got {tuple(f.shape)}")
        weak = weak - p1_load(points, flat, f.reshape(-1))
        scaled = weak / torch.where(mass > 0, mass, torch.ones_like(mass))
    else:  # F = f m: the lumped residual is (K u)_i / m_i - f exactly
        scaled = weak / torch.where(mass > 0, mass, torch.ones_like(mass)) - f
    free = (mass > 0) & ~boundary_nodes(flat, b * n)
    if mask is not None:
        free = free & mask.reshape(-1)
    return torch.where(free, scaled, torch.zeros_like(scaled)).reshape(b, n)
