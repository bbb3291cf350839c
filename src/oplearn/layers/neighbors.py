"""Radius neighbour search on batches of ragged point sets, in plain torch.

For every sample ``b`` of a padded batch, all pairs ``(i, j)`` of a query point ``x_i`` and a source
point ``y_j`` of that sample with ``|x_i - y_j| <= r`` (padded points, ``mask`` False, take no part).
The answer is one CSR adjacency over the whole batch: query ``i`` of sample ``b`` is row ``b * M + i``,
source ``j`` of sample ``b`` is column ``b * N + j``; row ``q``'s neighbours are
``columns[row_offsets[q]:row_offsets[q + 1]]``, grouped by cell (an order that keeps neighbours close in
memory; :meth:`Neighbors.sorted` gives increasing columns).

The search is a uniform grid hash: every source falls in a cell of side ``r`` (cells counted from the
sample's lowest source point, each sample's cells numbered apart from the others'), sources are sorted
by cell, and each query looks at the ``3^d`` cells around its own, found by binary search in the sorted
cell numbers. The candidate pairs this yields (about ``(3/r)^d / volume of the r-ball`` times the true
pairs) are checked exactly, a chunk of queries at a time so that memory stays bounded.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from oplearn.errors import ShapeError

CANDIDATES_PER_CHUNK = 1 << 22  # candidate pairs examined at once: a few tens of MB
QUERIES_PER_BLOCK = 1 << 16  # queries whose cell ranges are looked up at once


@dataclass(frozen=True)
class Neighbors:
    """CSR adjacency of a batch: ``row_offsets (B*M + 1,)``, ``columns (E,)`` into the flattened sources.

    ``rows`` (the row of every edge) and ``counts`` (neighbours per row) are derived views.
    """

    row_offsets: torch.Tensor
    columns: torch.Tensor

    @property
    def counts(self) -> torch.Tensor:
        """``(B*M,)`` the number of neighbours of every query."""
        return self.row_offsets.diff()

    @property
    def rows(self) -> torch.Tensor:
        """``(E,)`` the row (flattened query index) of every edge."""
        n_rows = self.row_offsets.numel() - 1
        return torch.repeat_interleave(torch.arange(n_rows, device=self.columns.device), self.counts,
                                       output_size=self.columns.numel())

    @property
    def n_edges(self) -> int:
        return self.columns.numel()

    def sorted(self) -> "Neighbors":
        """The same adjacency with every row's columns in increasing order."""
        order = torch.argsort(self.rows * (int(self.columns.max()) + 1 if self.n_edges else 1) + self.columns)
        return Neighbors(self.row_offsets, self.columns[order])


def radius_neighbors(sources: torch.Tensor, queries: torch.Tensor, radius: float,
                     source_mask: torch.Tensor | None = None, query_mask: torch.Tensor | None = None) -> Neighbors:
    """All ``(query, source)`` pairs of each sample within ``radius``.

    Args:
        sources: ``(B, d, N)`` source points ``y``.
        queries: ``(B, d, M)`` query points ``x``.
        radius: the ball radius ``r > 0`` (inclusive).
        source_mask, query_mask: ``(B, N)``, ``(B, M)`` True at real points, or None (all real).

    Returns the batch's :class:`Neighbors` (rows: ``B*M`` queries, columns index ``B*N`` sources).
    """
    if sources.ndim != 3 or queries.ndim != 3 or sources.shape[:2] != queries.shape[:2]:
        raise ShapeError(f"radius_neighbors expects sources (B, d, N) and queries (B, d, M) of one B and d, "
                         f"got {tuple(sources.shape)} and {tuple(queries.shape)}")
    if not radius > 0:
        raise ShapeError(f"the neighbour radius must be positive, got {radius}")
    batch, dim, n_sources = sources.shape
    n_queries = queries.shape[2]
    device = sources.device
    y = sources.detach().transpose(1, 2).to(torch.float64)  # (B, N, d): cells in float64, independent of dtype
    x = queries.detach().transpose(1, 2).to(torch.float64)
    real_y = torch.ones(batch, n_sources, dtype=torch.bool, device=device) if source_mask is None else source_mask
    real_x = torch.ones(batch, n_queries, dtype=torch.bool, device=device) if query_mask is None else query_mask
    empty = Neighbors(torch.zeros(batch * n_queries + 1, dtype=torch.long, device=device),
                      torch.zeros(0, dtype=torch.long, device=device))
    if n_sources == 0 or n_queries == 0 or not real_y.any():
        return empty

    # Cells of side slightly above r: two points within r then never lie two cells apart after rounding.
    cell = radius * (1 + 1e-6)
    lowest = torch.where(real_y[..., None], y, torch.inf).amin(1)  # (B, d); inf for a sample without sources
    lowest = torch.where(torch.isfinite(lowest), lowest, 0.0)
    highest = torch.where(real_y[..., None], y, -torch.inf).amax(1)
    extent = torch.where(torch.isfinite(highest), highest, lowest) - lowest
    cells_per_axis = (extent / cell).floor().amax(0) + 1  # (d,) common to the batch, float64: no overflow
    cells_per_sample = math.prod(int(n) for n in cells_per_axis.tolist())
    if cells_per_sample * batch >= 2**62:
        raise ShapeError(f"radius {radius} is too small for points spread over {extent.amax().item():.3g}; "
                         "the cell count overflows: raise the radius or rescale the points")
    cells_per_axis = cells_per_axis.long()
    strides = _strides(cells_per_axis)
    offset = torch.arange(batch, device=device)[:, None] * cells_per_sample

    source_cells = ((y - lowest[:, None]) / cell).floor().long()  # (B, N, d)
    keys = (source_cells * strides).sum(-1) + offset
    keys = torch.where(real_y, keys, cells_per_sample * batch)  # padding sorts last, never matched
    sorted_keys, order = keys.reshape(-1).sort(stable=True)

    query_cells = ((x - lowest[:, None]) / cell).floor().long()  # (B, M, d)
    shifts = torch.tensor(list(itertools.product((-1, 0, 1), repeat=dim)), device=device)  # (3^d, d)
    y_sorted = y.reshape(-1, dim)[order]  # candidates of one cell are then contiguous in memory
    x_flat = x.reshape(-1, dim)
    query_cells = query_cells.reshape(-1, dim)
    query_offset = offset.expand(batch, n_queries).reshape(-1)
    real_query = real_x.reshape(-1)

    found_rows, found_columns = [], []
    for block in range(0, batch * n_queries, QUERIES_PER_BLOCK):
        block_stop = min(block + QUERIES_PER_BLOCK, batch * n_queries)
        around = query_cells[block:block_stop, None] + shifts  # (q, 3^d, d)
        inside = ((around >= 0) & (around < cells_per_axis)).all(-1) & real_query[block:block_stop, None]
        wanted = (around * strides).sum(-1) + query_offset[block:block_stop, None]
        first = torch.searchsorted(sorted_keys, wanted)
        span = torch.where(inside, torch.searchsorted(sorted_keys, wanted, right=True) - first, 0)
        # Split the block where the running candidate count passes a multiple of the chunk size.
        running = span.sum(1).cumsum(0)
        cuts = torch.searchsorted(running, torch.arange(1, int(running[-1]) // CANDIDATES_PER_CHUNK + 1,
                                                        device=device) * CANDIDATES_PER_CHUNK)
        bounds = sorted({0, block_stop - block, *(int(c) + 1 for c in cuts if int(c) + 1 < block_stop - block)})
        for start, stop in zip(bounds[:-1], bounds[1:]):
            rows, columns = _close_pairs(first[start:stop], span[start:stop], block + start, order, x_flat,
                                         y_sorted, radius)
            found_rows.append(rows)
            found_columns.append(columns)
    if not found_rows:
        return empty
    rows = torch.cat(found_rows)  # non-decreasing: chunks follow each other, each lists its queries in order
    counts = torch.bincount(rows, minlength=batch * n_queries)
    return Neighbors(torch.cat([counts.new_zeros(1), counts.cumsum(0)]), torch.cat(found_columns))


def _close_pairs(first: torch.Tensor, span: torch.Tensor, row_start: int, order: torch.Tensor,
                 x_flat: torch.Tensor, y_sorted: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows, columns)`` of the candidates of queries ``row_start..`` (cell ranges ``first``, ``span``
    ``(q, 3^d)`` in the sorted sources ``y_sorted``, ``order``: sorted position -> source) within ``radius``."""
    span = span.reshape(-1)
    total = int(span.sum())
    device = first.device
    if total == 0:
        return first.new_zeros(0), first.new_zeros(0)
    n_queries, n_cells = first.shape
    query_of_range = torch.arange(row_start, row_start + n_queries, device=device).repeat_interleave(n_cells)
    rows = torch.repeat_interleave(query_of_range, span, output_size=total)
    # position of each candidate in the sorted sources: its range's first position plus its rank in the range
    range_first = torch.repeat_interleave(first.reshape(-1) - span.cumsum(0) + span, span, output_size=total)
    positions = range_first + torch.arange(total, device=device)
    close = ((x_flat[rows] - y_sorted[positions]) ** 2).sum(-1) <= radius**2
    return rows[close], order[positions[close]]


def _strides(cells_per_axis: torch.Tensor) -> torch.Tensor:
    """Row-major strides of the cell grid: the linear cell number is ``(cell * strides).sum()``."""
    dim = cells_per_axis.numel()
    strides = torch.ones(dim, dtype=torch.long, device=cells_per_axis.device)
    for axis in range(dim - 2, -1, -1):
        strides[axis] = strides[axis + 1] * cells_per_axis[axis + 1]
    return strides


def brute_force_neighbors(sources: torch.Tensor, queries: torch.Tensor, radius: float,
                          source_mask: torch.Tensor | None = None,
                          query_mask: torch.Tensor | None = None) -> Neighbors:
    """The same answer as :func:`radius_neighbors` from all ``B * M * N`` distances (small inputs, tests)."""
    batch, _, n_sources = sources.shape
    n_queries = queries.shape[2]
    distances = torch.cdist(queries.transpose(1, 2).double(), sources.transpose(1, 2).double(),
                            compute_mode="donot_use_mm_for_euclid_dist")
    close = distances <= radius
    if source_mask is not None:
        close &= source_mask[:, None, :]
    if query_mask is not None:
        close &= query_mask[:, :, None]
    sample, row, column = close.nonzero(as_tuple=True)
    counts = torch.bincount(sample * n_queries + row, minlength=batch * n_queries)
    return Neighbors(torch.cat([counts.new_zeros(1), counts.cumsum(0)]), sample * n_sources + column)
