"""The F-FNO layer is the sum of 1-D spectral convolutions along each axis, on any grid."""

import math

import pytest
import torch
from helpers import assert_resolution_invariant

from oplearn.errors import ShapeError
from oplearn.layers.axis_spectral import AxisSpectralConv


def one_axis_by_dft_matrix(x, weight, axis):
    """``Re sum_k c_k e^{2 pi i k j/n} W(k) (sum_l e^{-2 pi i k l/n} x_l) / n`` along ``axis`` with explicit
    matrices: ``c_k = 1`` at k = 0 and at n/2, 2 elsewhere (each other wavenumber stands for its conjugate too)."""
    n, m = x.shape[axis], weight.shape[-1]
    k = torch.arange(m, dtype=torch.float64)
    j = torch.arange(n, dtype=torch.float64)
    forward = torch.exp(-2j * math.pi * torch.outer(k, j) / n)  # (m, n)
    counts = torch.full((m,), 2.0, dtype=torch.float64)
    counts[0] = 1
    if n % 2 == 0 and m == n // 2 + 1:
        counts[-1] = 1
    inverse = torch.exp(2j * math.pi * torch.outer(j, k) / n) * counts / n  # (n, m)
    moved = x.movedim(axis, -1).to(torch.complex128)  # (b, c, ..., n)
    coefficients = moved @ forward.T  # (b, c, ..., m)
    mixed = torch.einsum("bc...k,cok->bo...k", coefficients, weight)
    # the imaginary part of the k = 0 (and n/2) term is dropped: the output is real
    edge = torch.zeros(m, dtype=torch.bool)
    edge[0] = True
    if n % 2 == 0 and m == n // 2 + 1:
        edge[-1] = True
    mixed = torch.where(edge, mixed.real.to(mixed.dtype), mixed)
    return (mixed @ inverse.T).real.movedim(-1, axis)


@pytest.mark.parametrize("modes, sizes", [((3,), (8,)), ((4,), (7,)), ((5,), (8,)), ((2, 3), (6, 7)),
                                          ((3, 2), (8, 5)), ((2, 2, 3), (4, 5, 6))])
def test_layer_equals_the_sum_of_its_one_dimensional_convolutions(modes, sizes):
    torch.manual_seed(0)
    layer = AxisSpectralConv(3, 2, modes).double()
    x = torch.randn(2, 3, *sizes, dtype=torch.float64)
    expected = sum(one_axis_by_dft_matrix(x, torch.view_as_complex(layer.weight_pairs[axis]), axis + 2)
                   for axis in range(len(modes)))
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)
    # and each axis alone is its own term
    torch.testing.assert_close(layer.along_axis(x, 0),
                               one_axis_by_dft_matrix(x, torch.view_as_complex(layer.weight_pairs[0]), 2),
                               rtol=1e-12, atol=1e-12)


def test_parameter_count_is_two_in_out_sum_of_modes():
    layer = AxisSpectralConv(5, 3, (4, 6, 2))
    assert sum(p.numel() for p in layer.parameters()) == 2 * 5 * 3 * (4 + 6 + 2)
    assert [tuple(w.shape) for w in layer.weight_pairs] == [(5, 3, 4, 2), (5, 3, 6, 2), (5, 3, 2, 2)]
    assert not any(p.is_complex() for p in layer.parameters())


@pytest.mark.parametrize("dim", [1, 2])
def test_resolution_invariant_on_band_limited_inputs(dim):
    torch.manual_seed(1)
    assert_resolution_invariant(AxisSpectralConv(2, 3, (4,) * dim), dim, coarse=16)


def test_gradcheck_tiny():
    torch.manual_seed(2)
    layer = AxisSpectralConv(2, 2, (2, 3)).double()
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, *w: layer(v), (x, *layer.weight_pairs))


def test_wrong_shapes_are_one_line_errors():
    layer = AxisSpectralConv(2, 2, (4, 4))
    with pytest.raises(ShapeError, match=r"expects \(batch, 2, 2 spatial axes\), got shape \(1, 2, 8\)"):
        layer(torch.randn(1, 2, 8))
    with pytest.raises(ShapeError, match="spatial axis 1 has 5 points; modes=4 needs at least 6"):
        layer(torch.randn(1, 2, 8, 5))
    with pytest.raises(ShapeError, match="modes must be 1 to 3 positive integers"):
        AxisSpectralConv(2, 2, (4, 0))
