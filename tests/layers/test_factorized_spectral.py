"""Tucker and CP spectral layers against the dense SpectralConv, their parameter counts and rank rules."""

import math

import pytest
import torch

from oplearn.errors import ConfigError
from oplearn.layers import SpectralConv
from oplearn.layers.spectral import forward_modes
from oplearn.layers.factorized_spectral import (
    CPSpectralConv,
    TuckerSpectralConv,
    cp_rank,
    kept_sizes,
    tucker_ranks,
)

from helpers import assert_resolution_invariant

SHAPES = [((5,), (16,)), ((3, 4), (8, 10)), ((2, 2, 3), (6, 5, 6))]  # (modes, grid sizes) in 1, 2 and 3-D


def pairs(tensor):
    return torch.view_as_real(tensor.to(torch.complex128)).contiguous()


def dense_copy(layer):
    """A SpectralConv whose weights are the factorized layer's reconstruction."""
    dense = SpectralConv(layer.in_channels, layer.out_channels, layer.modes).double()
    with torch.no_grad():
        dense.weight_pairs.copy_(pairs(layer.weight))
    return dense


@pytest.mark.parametrize("modes, sizes", SHAPES)
def test_full_rank_tucker_reproduces_any_dense_layer(modes, sizes):
    torch.manual_seed(0)
    dense = SpectralConv(3, 2, modes).double()
    axes = (3, 2) + kept_sizes(modes)
    layer = TuckerSpectralConv(3, 2, modes, ranks=axes).double()
    with torch.no_grad():  # core = W, identity factors
        layer.core_pairs.copy_(dense.weight_pairs)
        for factor, n in zip(layer.factor_pairs, axes):
            factor.copy_(pairs(torch.eye(n)))
    u = torch.randn(2, 3, *sizes, dtype=torch.float64)
    torch.testing.assert_close(layer(u), dense(u), rtol=1e-10, atol=1e-10)
    # A large enough fraction selects these full ranks by the documented rule.
    full = (math.prod(axes) + sum(n * n for n in axes)) / math.prod(axes)
    assert tucker_ranks(axes, full) == axes and tucker_ranks(axes, 0.999 * full) != axes


@pytest.mark.parametrize("modes, sizes", SHAPES)
def test_cp_from_a_known_decomposition_reproduces_any_dense_layer(modes, sizes):
    """W(i, o, k) = sum over (i', o', k_1..k_{d-1}) of indicator vectors times the slice W[i', o', k_1.., :]."""
    torch.manual_seed(1)
    dense = SpectralConv(3, 2, modes).double()
    weight = dense.weight.detach()
    axes = (3, 2) + kept_sizes(modes)
    terms = math.prod(axes[:-1])
    layer = CPSpectralConv(3, 2, modes, ranks=terms).double()
    index = torch.arange(terms).reshape(axes[:-1])
    with torch.no_grad():
        for axis, factor in enumerate(layer.factor_pairs[:-1]):
            position = torch.movedim(index, axis, 0).reshape(axes[axis], -1)  # terms whose axis-index is row
            indicator = torch.zeros(axes[axis], terms, dtype=torch.complex128)
            indicator.scatter_(1, position, 1.0)
            factor.copy_(pairs(indicator))
        layer.factor_pairs[-1].copy_(pairs(weight.reshape(terms, axes[-1]).T))
    u = torch.randn(2, 3, *sizes, dtype=torch.float64)
    torch.testing.assert_close(layer.weight, weight, rtol=0, atol=1e-14)
    torch.testing.assert_close(layer(u), dense(u), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cls, rank", [(TuckerSpectralConv, 0.5), (CPSpectralConv, 0.5), (CPSpectralConv, 2.0)])
@pytest.mark.parametrize("modes, sizes", SHAPES)
def test_equals_a_dense_layer_holding_its_reconstruction(cls, rank, modes, sizes):
    torch.manual_seed(2)
    layer = cls(3, 2, modes, rank=rank).double()
    u = torch.randn(2, 3, *sizes, dtype=torch.float64)
    out = layer(u)
    torch.testing.assert_close(out, dense_copy(layer)(u), rtol=1e-10, atol=1e-12)
    assert out.abs().max() > 1e-2


@pytest.mark.parametrize("cls", [TuckerSpectralConv, CPSpectralConv])
@pytest.mark.parametrize("modes, sizes", SHAPES)
def test_factorized_contraction_equals_dense_reconstruction_path(cls, modes, sizes):
    torch.manual_seed(3)
    layer = cls(4, 3, modes, rank=0.4).double()
    u = torch.randn(5, 4, *sizes, dtype=torch.float64)
    kept = forward_modes(u, modes).flatten(2)
    factorized, dense = layer.mix_factorized(kept), layer.mix_dense(kept)
    torch.testing.assert_close(factorized, dense, rtol=1e-12, atol=1e-13)
    assert dense.abs().max() > 1e-1


def test_flop_counts_pick_the_cheaper_order():
    # CP, in = out = 32, modes (12, 12): K = (24, 12), M = 288, sum(n) = 100.
    layer = CPSpectralConv(32, 32, (12, 12), rank=0.1)
    terms = layer.ranks
    assert terms == math.floor(0.1 * 32 * 32 * 288 / 100) == 294
    flops = layer.flops(batch=4)
    assert flops["factorized"] == terms * 288 + 4 * 288 * terms * (32 + 1 + 32)
    assert flops["dense"] == terms * 288 + 32 * 32 * terms * 288 + 4 * 288 * 32 * 32
    assert flops["factorized"] < flops["dense"]  # small batch: contract through the factors
    big = layer.flops(batch=4096)
    assert big["dense"] < big["factorized"]  # huge batch: rebuild W once and mix densely


@pytest.mark.parametrize("in_channels, out_channels, modes, rank", [
    (32, 32, (12, 12), 0.1), (32, 32, (12, 12), 0.5), (8, 4, (6,), 0.2), (5, 7, (3, 4, 2), 0.05), (2, 3, (2, 3), 10.0),
])
def test_parameter_count_follows_the_formula(in_channels, out_channels, modes, rank):
    axes = (in_channels, out_channels) + kept_sizes(modes)
    dense = math.prod(axes)
    tucker = TuckerSpectralConv(in_channels, out_channels, modes, rank=rank)
    ranks = tucker.ranks
    complex_entries = math.prod(ranks) + sum(n * r for n, r in zip(axes, ranks))
    assert sum(p.numel() for p in tucker.parameters()) == 2 * complex_entries
    assert complex_entries <= rank * dense
    cp = CPSpectralConv(in_channels, out_channels, modes, rank=rank)
    assert cp.ranks == math.floor(rank * dense / sum(axes) + 1e-9)
    assert sum(p.numel() for p in cp.parameters()) == 2 * cp.ranks * sum(axes)
    assert all(not p.is_complex() for p in [*tucker.parameters(), *cp.parameters()])


def test_tucker_rank_rule_on_a_worked_example():
    # in = out = 32, K = (24, 12): dense 294912, budget 0.02 * 294912 = 5898. At scale s in [8.5/24, 11.5/32)
    # the ranks round to (11, 11, 9, 4), costing 4356 + 352 + 352 + 216 + 48 = 5324; the next step,
    # (12, 12, 9, 4), would cost 5184 + 384 + 384 + 216 + 48 = 6216 > 5898.
    assert tucker_ranks((32, 32, 24, 12), 0.02) == (11, 11, 9, 4)
    assert cp_rank((32, 32, 24, 12), 0.02) == 58  # floor(5898 / (32 + 32 + 24 + 12))


@pytest.mark.parametrize("cls", [TuckerSpectralConv, CPSpectralConv])
def test_gradcheck_float64(cls):
    torch.manual_seed(4)
    layer = cls(2, 2, (2, 3), rank=0.5).double()
    u = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    names = [name for name, _ in layer.named_parameters()]
    values = [p.detach().clone().requires_grad_() for p in layer.parameters()]

    def apply(x, *params):
        return torch.func.functional_call(layer, dict(zip(names, params)), (x,))

    assert torch.autograd.gradcheck(apply, (u, *values))
    kept = forward_modes(u.detach(), (2, 3)).flatten(2).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: torch.view_as_real(layer.mix_dense(x)), (kept,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda x: torch.view_as_real(layer.mix_factorized(x)), (kept,), fast_mode=True)


@pytest.mark.parametrize("cls", [TuckerSpectralConv, CPSpectralConv])
@pytest.mark.parametrize("dim, coarse", [(1, 32), (2, 32)])
def test_resolution_invariance(cls, dim, coarse):
    torch.manual_seed(2)
    assert_resolution_invariant(cls(2, 3, (4,) * dim, rank=0.5), dim, coarse)


@pytest.mark.parametrize("rank, message", [
    (0, "positive fraction"), (-0.5, "positive fraction"), (float("nan"), "positive fraction"),
    ("0.1", "positive fraction"), (1e-6, "too small"),
])
@pytest.mark.parametrize("cls", [TuckerSpectralConv, CPSpectralConv])
def test_bad_rank_fractions_are_config_errors(cls, rank, message):
    with pytest.raises(ConfigError, match=message):
        cls(16, 16, (8, 8), rank=rank)


def test_bad_explicit_ranks_are_config_errors():
    with pytest.raises(ConfigError, match="4 integers between 1 and the axis sizes"):
        TuckerSpectralConv(4, 4, (3, 3), ranks=(2, 2, 2))
    with pytest.raises(ConfigError, match="axis sizes"):
        TuckerSpectralConv(4, 4, (3, 3), ranks=(5, 2, 2, 2))  # r_in > in
    with pytest.raises(ConfigError, match="axis sizes"):
        TuckerSpectralConv(4, 4, (3, 3), ranks=(0, 2, 2, 2))
    with pytest.raises(ConfigError, match="positive integer"):
        CPSpectralConv(4, 4, (3, 3), ranks=0)
    with pytest.raises(ConfigError, match="positive integer"):
        CPSpectralConv(4, 4, (3, 3), ranks=2.5)


@pytest.mark.parametrize("cls", [TuckerSpectralConv, CPSpectralConv])
def test_with_modes_keeps_the_function_and_the_ranks(cls):
    torch.manual_seed(5)
    layer = cls(3, 2, (2, 3), rank=0.5).double()
    wider = layer.with_modes((4, 5))
    assert wider.modes == (4, 5) and wider.ranks == layer.ranks
    u = torch.randn(2, 3, 12, 10, dtype=torch.float64)
    torch.testing.assert_close(wider(u), layer(u), rtol=1e-10, atol=1e-12)
    assert wider.weight[:, :, 2:6].abs().max() == 0 and wider.weight[..., 3:].abs().max() == 0
