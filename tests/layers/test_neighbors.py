"""Radius neighbour search: the grid hash finds exactly the pairs brute force finds, padding excluded."""

import pytest
import torch

from oplearn.errors import ShapeError
from oplearn.layers import neighbors as neighbors_module
from oplearn.layers.neighbors import brute_force_neighbors, radius_neighbors


def random_clouds(batch, dim, n_sources, n_queries, seed):
    """Clouds in the box [-1, 2]^d (not the unit box) with random padding masks, the queries partly outside."""
    generator = torch.Generator().manual_seed(seed)
    sources = 3 * torch.rand(batch, dim, n_sources, generator=generator, dtype=torch.float64) - 1
    queries = 4 * torch.rand(batch, dim, n_queries, generator=generator, dtype=torch.float64) - 1.5
    source_mask = torch.rand(batch, n_sources, generator=generator) > 0.3
    query_mask = torch.rand(batch, n_queries, generator=generator) > 0.2
    sources[~source_mask[:, None].expand_as(sources)] = 1e3  # garbage at padded points
    return sources, queries, source_mask, query_mask


def assert_same(found, expected):
    """The same pairs (brute force lists each row's columns in increasing order, the grid hash by cell)."""
    assert torch.equal(found.row_offsets, expected.row_offsets)
    assert torch.equal(found.sorted().columns, expected.sorted().columns)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("radius", [0.15, 0.4, 5.0])
def test_grid_hash_equals_brute_force_with_padding(dim, radius):
    sources, queries, source_mask, query_mask = random_clouds(3, dim, 300, 200, seed=dim)
    found = radius_neighbors(sources, queries, radius, source_mask, query_mask)
    expected = brute_force_neighbors(sources, queries, radius, source_mask, query_mask)
    assert_same(found, expected)
    assert found.n_edges > 0
    # nothing links a padded point, and every edge stays inside its sample
    assert not found.counts.reshape(3, 200)[~query_mask].any()
    assert source_mask.reshape(-1)[found.columns].all()
    assert torch.equal(found.rows // 200, found.columns // 300)


def test_self_search_of_one_cloud_without_masks_matches_brute_force():
    points = torch.rand(2, 2, 500, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    found = radius_neighbors(points, points, 0.07)
    assert_same(found, brute_force_neighbors(points, points, 0.07))
    assert (found.counts >= 1).all()  # every point is its own neighbour


def test_small_candidate_chunks_give_the_same_answer(monkeypatch):
    sources, queries, source_mask, query_mask = random_clouds(2, 2, 400, 300, seed=5)
    whole = radius_neighbors(sources, queries, 0.3, source_mask, query_mask)
    monkeypatch.setattr(neighbors_module, "CANDIDATES_PER_CHUNK", 50)
    monkeypatch.setattr(neighbors_module, "QUERIES_PER_BLOCK", 37)
    assert_same(radius_neighbors(sources, queries, 0.3, source_mask, query_mask), whole)


def test_a_sample_without_real_points_has_no_edges():
    sources, queries, source_mask, query_mask = random_clouds(2, 3, 100, 80, seed=2)
    source_mask[1] = False
    found = radius_neighbors(sources, queries, 0.5, source_mask, query_mask)
    assert_same(found, brute_force_neighbors(sources, queries, 0.5, source_mask, query_mask))
    assert not found.counts[80:].any() and found.counts[:80].any()


def test_bad_radius_and_shapes_are_one_line_errors():
    points = torch.rand(1, 2, 10)
    with pytest.raises(ShapeError, match="radius must be positive"):
        radius_neighbors(points, points, 0.0)
    with pytest.raises(ShapeError, match="same|one B and d"):
        radius_neighbors(points, torch.rand(1, 3, 10), 0.1)


def test_a_radius_too_small_for_the_spread_is_a_one_line_error():
    points = torch.tensor([[[0.0, 1e6], [0.0, 1e6], [0.0, 1e6]]], dtype=torch.float64)
    with pytest.raises(ShapeError, match="cell count overflows"):
        radius_neighbors(points, points, 1e-3)


def test_rows_list_each_querys_neighbours_and_sorted_orders_them():
    sources, queries, source_mask, query_mask = random_clouds(1, 2, 200, 50, seed=7)
    found = radius_neighbors(sources, queries, 0.5, source_mask, query_mask)
    ordered = found.sorted()
    for row in range(50):
        columns = ordered.columns[ordered.row_offsets[row]:ordered.row_offsets[row + 1]]
        assert torch.equal(columns, columns.sort().values)
        assert torch.equal(columns, found.columns[found.rows == row].sort().values)
        distances = (sources[0, :, columns] - queries[0, :, row:row + 1]).norm(dim=0)
        assert (distances <= 0.5).all()
