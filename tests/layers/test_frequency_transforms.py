"""DCT-II/III by torch.fft equal SciPy's; the truncated transform pairs are exact and do not depend on the grid."""

import math

import numpy as np
import pytest
import scipy.fft
import torch

from oplearn.errors import ShapeError
from oplearn.layers.frequency_transforms import (check_grid_holds_modes, dct, forward_transform, idct,
                                                 inverse_transform, kept_shape)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 8, 15, 16])
def test_dct_and_its_inverse_equal_scipy_in_one_dimension_for_every_truncation(n):
    x = torch.randn(3, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    reference = scipy.fft.dct(x.numpy(), type=2, norm="ortho")
    for m in range(1, n + 1):
        np.testing.assert_allclose(dct(x, m=m).numpy(), reference[:, :m], rtol=0, atol=1e-13)
        zero_filled = np.concatenate([reference[:, :m], np.zeros((3, n - m))], axis=1)
        expected = scipy.fft.idct(zero_filled, type=2, norm="ortho")  # DCT-III
        np.testing.assert_allclose(idct(torch.from_numpy(reference[:, :m]), n=n).numpy(), expected,
                                   rtol=0, atol=1e-13)
    torch.testing.assert_close(idct(dct(x)), x, rtol=0, atol=1e-13)


@pytest.mark.parametrize("sizes", [(6, 9), (7, 8), (5, 5)])
def test_dct_along_each_axis_equals_scipy_in_two_dimensions(sizes):
    x = torch.randn(2, 3, *sizes, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = scipy.fft.dctn(x.numpy(), type=2, norm="ortho", axes=(2, 3))
    np.testing.assert_allclose(dct(dct(x, dim=2), dim=3).numpy(), expected, rtol=0, atol=1e-13)
    np.testing.assert_allclose(idct(idct(torch.from_numpy(expected), dim=3), dim=2).numpy(), x.numpy(),
                               rtol=0, atol=1e-13)
    # forward_transform is the same, divided by sqrt(n) per axis
    scaled = forward_transform(x, "dct", sizes).numpy() * math.sqrt(math.prod(sizes))
    np.testing.assert_allclose(scaled, expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("transform, sizes, modes", [
    ("dct", (9,), (9,)), ("dct", (6, 7), (6, 7)), ("dct", (4, 5, 3), (4, 5, 3)),
    ("dft", (8,), (5,)), ("dft", (9,), (5,)), ("dft", (8, 9), (4, 5)), ("dft", (6, 4, 7), (3, 2, 4))])
def test_the_untruncated_pair_is_the_identity(transform, sizes, modes):
    x = torch.randn(2, 3, *sizes, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    coefficients = forward_transform(x, transform, modes)
    assert coefficients.shape == (2, 3, *kept_shape(transform, modes))
    assert coefficients.is_complex() == (transform == "dft")
    torch.testing.assert_close(inverse_transform(coefficients, transform, modes, sizes), x, rtol=0, atol=1e-12)


def test_dct_coefficients_are_orthonormal_in_l2_of_the_unit_interval():
    # Parseval against the mean, and the cosine sqrt(2) cos(pi k x) on cell centres has coefficient 1 at k.
    x = torch.randn(1, 1, 12, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    c = forward_transform(x, "dct", (12, 10))
    torch.testing.assert_close(c.square().sum(), x.square().mean(), rtol=1e-13, atol=0)
    centres = (torch.arange(20, dtype=torch.float64) + 0.5) / 20
    cosine = math.sqrt(2) * torch.cos(3 * math.pi * centres)
    expected = torch.zeros(6, dtype=torch.float64)
    expected[3] = 1
    torch.testing.assert_close(forward_transform(cosine[None, None], "dct", (6,))[0, 0], expected, rtol=0, atol=1e-14)


def _cosine_series(n, coefficients):
    """``sum_k c_k b_k(x)`` on the cell centres of an n x n grid, ``b_0 = 1``, ``b_k = sqrt(2) cos(pi k x)``."""
    x = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    basis = torch.stack([torch.ones_like(x)] + [math.sqrt(2) * torch.cos(math.pi * k * x)
                                                for k in range(1, coefficients.shape[-1])])
    return torch.einsum("...jk,jx,ky->...xy", coefficients, basis, basis)


def _fourier_series(n, terms):
    """``sum a cos(2 pi k.x + phi)`` on the grid j/n of ``[0, 1)^2``."""
    x = torch.arange(n, dtype=torch.float64) / n
    grid = torch.meshgrid(x, x, indexing="ij")
    return sum(a * torch.cos(2 * math.pi * (k1 * grid[0] + k2 * grid[1]) + phi) for k1, k2, a, phi in terms)


def test_coefficients_of_a_band_limited_function_are_the_same_on_every_grid():
    generator = torch.Generator().manual_seed(3)
    cosines = torch.randn(2, 5, 5, dtype=torch.float64, generator=generator)  # 5 x 5 cosines, 2 channels
    on = {n: forward_transform(_cosine_series(n, cosines)[None], "dct", (5, 5)) for n in (7, 14, 21)}
    for n in (7, 14, 21):
        torch.testing.assert_close(on[n][0], cosines, rtol=0, atol=1e-12)
    terms = [(1, 2, 0.7, 0.3), (-3, 1, -1.1, 2.0), (0, 3, 0.4, 1.0), (2, 0, 1.3, -0.5)]
    fourier = {n: forward_transform(_fourier_series(n, terms)[None, None], "dft", (4, 4)) for n in (8, 16, 24)}
    torch.testing.assert_close(fourier[16], fourier[8], rtol=0, atol=1e-13)
    torch.testing.assert_close(fourier[24], fourier[8], rtol=0, atol=1e-13)
    assert fourier[8].abs().max() > 0.1


def test_the_inverse_evaluates_the_same_function_on_a_finer_grid():
    generator = torch.Generator().manual_seed(4)
    cosines = torch.randn(1, 4, 4, dtype=torch.float64, generator=generator)
    coarse = forward_transform(_cosine_series(6, cosines)[None], "dct", (4, 4))
    torch.testing.assert_close(inverse_transform(coarse, "dct", (4, 4), (18, 18))[0], _cosine_series(18, cosines),
                               rtol=0, atol=1e-12)
    terms = [(1, -2, 0.9, 0.1), (3, 3, 0.5, 1.5)]
    coarse = forward_transform(_fourier_series(8, terms)[None, None], "dft", (4, 4))
    torch.testing.assert_close(inverse_transform(coarse, "dft", (4, 4), (32, 32))[0, 0], _fourier_series(32, terms),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("transform, sizes, modes", [("dct", (5, 4), (3, 2)), ("dft", (6, 5), (2, 2))])
def test_gradcheck_of_the_truncated_pair(transform, sizes, modes):
    x = torch.randn(1, 2, *sizes, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: forward_transform(v, transform, modes), (x,))
    c = forward_transform(x, transform, modes).detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda v: inverse_transform(v, transform, modes, sizes), (c,))


def test_a_grid_too_coarse_for_the_modes_is_a_one_line_shape_error():
    check_grid_holds_modes("dct", (4, 4), (4, 4))
    check_grid_holds_modes("dft", (8, 6), (4, 4))
    with pytest.raises(ShapeError, match=r"^spatial axis 1 has 3 points; transform=dct with modes=4 needs at least 4"):
        check_grid_holds_modes("dct", (4, 3), (4, 4))
    with pytest.raises(ShapeError, match=r"axis 0 has 7 points; transform=dft with modes=4 needs at least 8"):
        check_grid_holds_modes("dft", (7, 8), (4, 4))
    with pytest.raises(ShapeError, match="keeps 1 to 5"):
        dct(torch.randn(5), m=6)
