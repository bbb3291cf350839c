"""Kernel integral: the neighbourhood mean of kappa * v, exactly as a dense double sum; chunking changes nothing."""

import pytest
import torch

from oplearn.errors import ConfigError
from oplearn.layers.kernel_integral import KernelIntegral
from oplearn.layers.neighbors import radius_neighbors


def setup(form, channels=3, seed=0, chunk_edges=1 << 18, out_channels=None):
    torch.manual_seed(seed)
    layer = KernelIntegral(channels, out_channels or channels, 2, kernel_width=8, form=form,
                           chunk_edges=chunk_edges).double()
    generator = torch.Generator().manual_seed(seed)
    sources = torch.rand(2, 2, 40, generator=generator, dtype=torch.float64)
    queries = torch.rand(2, 2, 30, generator=generator, dtype=torch.float64)
    values = torch.randn(2, channels, 40, generator=generator, dtype=torch.float64)
    return layer, values, sources, queries


def dense_reference(layer, values, sources, queries, radius):
    """``1/|B_r(x)| sum_{|x - y| <= r} kappa(x, y, v(y)) v(y)`` by a loop over every pair."""
    batch, _, n_queries = queries.shape
    out = torch.zeros(batch, layer.out_channels, n_queries, dtype=torch.float64)
    for b in range(batch):
        for i in range(n_queries):
            x = queries[b, :, i]
            near = [j for j in range(sources.shape[2]) if torch.linalg.norm(x - sources[b, :, j]) <= radius]
            terms = []
            for j in near:
                v = values[b, :, j]
                features = torch.cat([x, sources[b, :, j]] + ([v] if layer.form == "nonlinear" else []))
                kernel = layer.kernel(features[None])[0]
                terms.append(kernel.view(layer.out_channels, -1) @ v if layer.form == "matrix" else kernel * v)
            if terms:
                out[b, :, i] = torch.stack(terms).mean(0)
    return out


@pytest.mark.parametrize("form", ["linear", "nonlinear", "matrix"])
def test_the_layer_is_the_neighbourhood_mean(form):
    layer, values, sources, queries = setup(form, out_channels=4 if form == "matrix" else None)
    queries[:, :, :3] += 2.0  # far from every source
    neighbors = radius_neighbors(sources, queries, 0.25)
    with torch.no_grad():
        found = layer(values, sources, queries, neighbors)
        expected = dense_reference(layer, values, sources, queries, 0.25)
    torch.testing.assert_close(found, expected, rtol=1e-12, atol=1e-12)
    assert (neighbors.counts == 0).any() and (neighbors.counts > 1).any()  # both cases occur
    empty = (neighbors.counts.reshape(2, 30) == 0)
    assert not found.transpose(1, 2)[empty].any()  # no neighbours: zero


def test_chunked_edges_give_the_same_values_and_gradients():
    results = []
    for chunk_edges in (1 << 18, 7):
        layer, values, sources, queries = setup("nonlinear", chunk_edges=chunk_edges)
        values.requires_grad_(True)
        neighbors = radius_neighbors(sources, queries, 0.3)
        out = layer(values, sources, queries, neighbors)
        (out**2).sum().backward()
        results.append((out.detach(), values.grad, [p.grad for p in layer.parameters()]))
    assert neighbors.n_edges > 7 * 10
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-12, atol=1e-12)
    for whole, chunked in zip(results[0][2], results[1][2]):
        torch.testing.assert_close(whole, chunked, rtol=1e-10, atol=1e-12)


def test_gradcheck_in_values_and_coordinates():
    layer, values, sources, queries = setup("linear", channels=2, chunk_edges=5)
    neighbors = radius_neighbors(sources[:, :, :8], queries[:, :, :6], 0.5)
    inputs = (values[:, :, :8].clone().requires_grad_(), sources[:, :, :8].clone().requires_grad_(),
              queries[:, :, :6].clone().requires_grad_())
    assert torch.autograd.gradcheck(lambda v, y, x: layer(v, y, x, neighbors), inputs)


def test_elementwise_forms_need_equal_channels():
    with pytest.raises(ConfigError, match="must equal out_channels"):
        KernelIntegral(3, 4, 2, form="linear")
    with pytest.raises(ConfigError, match="unknown kernel form"):
        KernelIntegral(3, 3, 2, form="quadratic")
