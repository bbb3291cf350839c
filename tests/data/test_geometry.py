"""Tests for oplearn.data.geometry: grids, point clouds, meshes and their checks."""

import numpy as np
import pytest

from oplearn.data.geometry import Grid, Mesh, PointCloud
from oplearn.errors import DataError


def test_grid_nodes_include_both_ends():
    grid = Grid((3, 5))
    assert grid.kind == "grid" and grid.dim == 2 and grid.n_points == 15
    assert grid.spacing == (0.5, 0.25)
    x = grid.coordinates()
    assert x.shape == (2, 3, 5) and x.dtype == np.float64
    np.testing.assert_array_equal(x[0][:, 0], [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(x[1][0], [0.0, 0.25, 0.5, 0.75, 1.0])
    assert np.all(x[0][1] == 0.5)  # the first coordinate varies along the first axis only
    assert grid.describe() == "grid 3x5 (nodes)"


def test_grid_cells_are_centres():
    grid = Grid((4,), "cells")
    assert grid.spacing == (0.25,)
    np.testing.assert_allclose(grid.coordinates()[0], [0.125, 0.375, 0.625, 0.875])
    assert Grid((1,), "cells").n_points == 1
    assert Grid((32, 32)).describe() == "grid 32x32 (nodes)"


@pytest.mark.parametrize("args, message", [
    (((1, 4),), r"nodes grid needs at least 2 points per axis, got shape \(1, 4\)"),
    (((0,), "cells"), "cells grid needs at least 1 points"),
    (((4, 4), "centres"), "grid location 'centres' is unknown; use 'nodes' or 'cells'"),
    (((4.5, 4),), "whole numbers of points per axis"),
    (((),), "at least 2 points per axis"),
])
def test_grid_errors(args, message):
    with pytest.raises(DataError, match=message):
        Grid(*args)


def test_point_cloud_copies_and_freezes():
    raw = np.arange(6, dtype=np.float32).reshape(3, 2)
    cloud = PointCloud(raw)
    assert cloud.kind == "points" and cloud.dim == 2 and cloud.n_points == 3
    assert cloud.points.dtype == np.float64 and not cloud.points.flags.writeable
    raw[0, 0] = 99.0
    assert cloud.points[0, 0] == 0.0
    assert cloud.describe() == "points: 3 points in 2D"


@pytest.mark.parametrize("points, message", [
    (np.zeros(3), r"\(N, d\) array .* got shape \(3,\)"),
    (np.zeros((0, 2)), "N >= 1 points"),
    (np.array([[0.0, np.nan]]), "NaN or Inf coordinates"),
    (np.array([["a", "b"]]), "dtype <U1; pass real coordinates"),
])
def test_point_cloud_errors(points, message):
    with pytest.raises(DataError, match=message):
        PointCloud(points)


def square(n_per_side=3):
    """A triangulated unit square: n^2 points, 2 (n-1)^2 triangles."""
    n = n_per_side
    points = Grid((n, n)).coordinates().reshape(2, -1).T
    cells = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            cells += [(a, b, d), (a, d, c)]
    return points, np.array(cells)


def test_mesh():
    points, cells = square(4)
    mesh = Mesh(points, cells.astype(np.int32), "triangle")
    assert mesh.kind == "mesh" and mesh.dim == 2 and mesh.n_points == 16 and mesh.n_cells == 18
    assert mesh.cells.dtype == np.int64 and not mesh.cells.flags.writeable
    assert mesh.describe() == "mesh: 16 points, 18 triangle cells"
    big = Mesh(np.zeros((1012, 2)), np.zeros((1900, 3), np.int64), "triangle")
    assert big.describe() == "mesh: 1,012 points, 1,900 triangle cells"
    hexes = Mesh(Grid((2, 2, 2)).coordinates().reshape(3, -1).T, [list(range(8))], "hexahedron")
    assert hexes.n_cells == 1


@pytest.mark.parametrize("cells, cell_type, message", [
    ([[0, 1, 9]], "triangle", r"cell index 9 is out of range for 9 points; indices must lie in 0\.\.8"),
    ([[0, -1, 2]], "triangle", "cell index -1 is out of range"),
    ([[0, 1, 2, 3]], "triangle", r"triangle cells must be an \(M, 3\) array .* got shape \(1, 4\); pass 3 indices"),
    ([[0, 1]], "quad", r"quad cells must be an \(M, 4\) array"),
    ([[0.0, 1.0, 2.0]], "triangle", "cells have dtype float64; pass integer point indices"),
    ([[0, 1, 2, 3]], "tetra", "tetra cells need points of at least 3 coordinates, got 2"),
    ([[0, 1, 2]], "polygon", "unknown cell_type 'polygon'; use one of line, triangle, quad, tetra, hexahedron"),
    (np.zeros((0, 3), np.int64), "triangle", "M >= 1"),
])
def test_mesh_errors(cells, cell_type, message):
    points, _ = square(3)
    with pytest.raises(DataError, match=message) as info:
        Mesh(points, cells, cell_type)
    assert "\n" not in str(info.value)
