"""Where a sample's values live: a uniform grid, a point cloud or a mesh.

Three frozen descriptions, numpy only, each with ``kind`` (the ``geometry``
attribute of a dataset file), ``dim``, ``n_points`` and ``describe()``:

* :class:`Grid` ``(shape, location)``: the uniform grid on [0, 1]^d that the
  grid datasets use. ``location="nodes"``: points ``i / (n - 1)``, both ends
  included (n >= 2 per axis); ``location="cells"``: cell centres
  ``(i + 1/2) / n``. Values on it are stored ``(C, *shape)``.
* :class:`PointCloud` ``(points)``: ``points`` (N, d) float64, values stored
  per point, channel last ``(N, C)``.
* :class:`Mesh` ``(points, cells, cell_type)``: ``points`` (N, d) float64,
  ``cells`` (M, k) int64 indices into ``points``, ``cell_type`` one of
  meshio's names ``line`` (k=2), ``triangle`` (3), ``quad`` (4), ``tetra``
  (4), ``hexahedron`` (8).

Constructors copy their arrays, make them read-only and check them; a
mistake raises :class:`oplearn.errors.DataError` saying what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from oplearn.errors import DataError

GRID_LOCATIONS = ("nodes", "cells")
# cell type -> (points per cell k, topological dimension)
CELL_TYPES = {"line": (2, 1), "triangle": (3, 2), "quad": (4, 2), "tetra": (4, 3), "hexahedron": (8, 3)}


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def checked_points(points, what: str = "points") -> np.ndarray:
    """``points`` as a read-only (N, d) float64 copy; DataError unless N, d >= 1 and all finite."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[0] < 1 or points.shape[1] < 1:
        raise DataError(f"{what} must be an (N, d) array with N >= 1 points of d >= 1 coordinates, "
                        f"got shape {points.shape}; pass one row per point")
    if points.dtype.kind not in "biuf":
        raise DataError(f"{what} have dtype {points.dtype}; pass real coordinates")
    points = np.array(points, dtype=np.float64)
    if not np.all(np.isfinite(points)):
        raise DataError(f"{what} contain NaN or Inf coordinates; fix the point coordinates")
    return _frozen(points)


def checked_cells(cells, cell_type: str, n_points: int, dim: int) -> np.ndarray:
    """``cells`` as a read-only (M, k) int64 copy, checked against ``cell_type`` and the point count."""
    if cell_type not in CELL_TYPES:
        raise DataError(f"unknown cell_type '{cell_type}'; use one of {', '.join(CELL_TYPES)}")
    k, topological = CELL_TYPES[cell_type]
    if topological > dim:
        raise DataError(f"{cell_type} cells need points of at least {topological} coordinates, "
                        f"got {dim}; pass {topological}-d points or another cell_type")
    cells = np.asarray(cells)
    if cells.ndim != 2 or cells.shape[0] < 1 or cells.shape[1] != k:
        raise DataError(f"{cell_type} cells must be an (M, {k}) array of point indices with M >= 1, "
                        f"got shape {cells.shape}; pass {k} indices per cell")
    if cells.dtype.kind not in "iu":
        raise DataError(f"cells have dtype {cells.dtype}; pass integer point indices")
    cells = np.array(cells, dtype=np.int64)
    low, high = int(cells.min()), int(cells.max())
    if low < 0 or high >= n_points:
        bad = low if low < 0 else high
        raise DataError(f"cell index {bad} is out of range for {n_points} points; "
                        f"indices must lie in 0..{n_points - 1} (0-based, per sample)")
    return _frozen(cells)


@dataclass(frozen=True)
class Grid:
    """The uniform grid on [0, 1]^d of ``shape`` points, at the ``nodes`` or the cell centres."""

    shape: tuple[int, ...]
    location: Literal["nodes", "cells"] = "nodes"
    kind: ClassVar[str] = "grid"

    def __post_init__(self):
        shape = tuple(self.shape) if isinstance(self.shape, (tuple, list)) else (self.shape,)
        if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in shape):
            raise DataError(f"grid shape {shape} must hold whole numbers of points per axis, e.g. (32, 32)")
        shape = tuple(int(n) for n in shape)
        if self.location not in GRID_LOCATIONS:
            raise DataError(f"grid location '{self.location}' is unknown; use 'nodes' or 'cells'")
        smallest = 2 if self.location == "nodes" else 1
        if not shape or min(shape) < smallest:
            raise DataError(f"a {self.location} grid needs at least {smallest} points per axis, "
                            f"got shape {shape}; pass a larger shape")
        object.__setattr__(self, "shape", shape)

    @property
    def dim(self) -> int:
        return len(self.shape)

    @property
    def n_points(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def spacing(self) -> tuple[float, ...]:
        """Distance between neighbouring points along each axis."""
        if self.location == "nodes":
            return tuple(1.0 / (n - 1) for n in self.shape)
        return tuple(1.0 / n for n in self.shape)

    def axes(self) -> list[np.ndarray]:
        """The coordinates along each axis, float64 arrays of lengths ``shape``."""
        if self.location == "nodes":
            return [np.arange(n) / (n - 1) for n in self.shape]
        return [(np.arange(n) + 0.5) / n for n in self.shape]

    def coordinates(self) -> np.ndarray:
        """All point coordinates, (d, *shape) float64: ``coordinates()[j][idx]`` is x_j at ``idx``."""
        return np.stack(np.meshgrid(*self.axes(), indexing="ij"))

    def describe(self) -> str:
        return f"grid {'x'.join(map(str, self.shape))} ({self.location})"


@dataclass(frozen=True, eq=False)
class PointCloud:
    """Scattered points, ``points`` (N, d) float64, without connectivity."""

    points: np.ndarray
    kind: ClassVar[str] = "points"

    def __post_init__(self):
        object.__setattr__(self, "points", checked_points(self.points))

    @property
    def dim(self) -> int:
        return self.points.shape[1]

    @property
    def n_points(self) -> int:
        return self.points.shape[0]

    def describe(self) -> str:
        return f"points: {self.n_points:,} points in {self.dim}D"


@dataclass(frozen=True, eq=False)
class Mesh(PointCloud):
    """An unstructured mesh of one cell type: ``points`` (N, d) float64, ``cells`` (M, k) int64."""

    cells: np.ndarray
    cell_type: str
    kind: ClassVar[str] = "mesh"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "cells", checked_cells(self.cells, self.cell_type, *self.points.shape))

    @property
    def n_cells(self) -> int:
        return self.cells.shape[0]

    def describe(self) -> str:
        return f"mesh: {self.n_points:,} points, {self.n_cells:,} {self.cell_type} cells"
