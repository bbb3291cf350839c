"""Non-uniform Fourier sums: the DFT on uniform grids, exact recovery of band-limited functions anywhere."""

import math

import pytest
import torch

from oplearn.layers.coordinates import grid_coordinates
from oplearn.layers.nonuniform_fourier import kept_wavenumbers, nonuniform_forward, nonuniform_inverse
from oplearn.layers.spectral import forward_modes, inverse_modes

CASES = [((5,), (12,)), ((3, 4), (8, 10)), ((2, 2, 3), (6, 5, 7))]


def periodic_nodes(sizes):
    """``(1, d, prod sizes)`` the nodes j / n of the periodic grid, row-major like a reshaped field."""
    nodes = grid_coordinates([n + 1 for n in sizes], dtype=torch.float64, device="cpu")
    return nodes[(slice(None), *[slice(0, n) for n in sizes])].reshape(len(sizes), -1)[None]


def band_limited(points, modes, seed):
    """A real sum of cosines with wavenumbers the transform keeps, at ``points (B, d, N)`` -> ``(B, 2, N)``."""
    generator = torch.Generator().manual_seed(seed)
    wavenumbers = kept_wavenumbers(modes)
    chosen = torch.randperm(wavenumbers.shape[1], generator=generator)[:6]
    out = torch.zeros(points.shape[0], 2, points.shape[2], dtype=torch.float64)
    for channel in range(2):
        for k in wavenumbers[:, chosen].T:
            a, phi = torch.randn(2, generator=generator, dtype=torch.float64)
            out[:, channel] += a * torch.cos(2 * math.pi * torch.einsum("d,bdn->bn", k, points) + phi)
    return out


@pytest.mark.parametrize("modes, sizes", CASES)
def test_on_a_uniform_grid_the_forward_sum_is_the_dft_over_n(modes, sizes):
    field = torch.randn(2, 3, *sizes, dtype=torch.float64)
    points = periodic_nodes(sizes).expand(2, -1, -1)
    found = nonuniform_forward(field.reshape(2, 3, -1), points, modes, chunk_points=17)
    expected = forward_modes(field, modes) / math.prod(sizes)
    torch.testing.assert_close(found, expected, rtol=1e-12, atol=1e-12)
    # the first coefficient is the plain mean, as fftn / n says
    torch.testing.assert_close(found.reshape(2, 3, -1)[..., 0].real, field.mean(tuple(range(2, field.ndim))))


@pytest.mark.parametrize("modes, sizes", CASES)
def test_on_a_uniform_grid_the_inverse_sum_is_n_times_the_inverse_dft(modes, sizes):
    coefficients = torch.randn(2, 3, *[2 * m for m in modes[:-1]], modes[-1], dtype=torch.complex128)
    points = periodic_nodes(sizes).expand(2, -1, -1)
    found = nonuniform_inverse(coefficients, points, modes, chunk_points=11)
    expected = inverse_modes(coefficients, modes, sizes) * math.prod(sizes)
    torch.testing.assert_close(found, expected.reshape(2, 3, -1), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("modes, sizes", CASES)
def test_band_limited_functions_are_recovered_at_scattered_points(modes, sizes):
    """Coefficients from a grid sample (exact for band-limited f), evaluated at random points: f there."""
    grid = periodic_nodes([2 * m + 1 for m in modes])
    coefficients = nonuniform_forward(band_limited(grid, modes, seed=1), grid, modes)
    scattered = torch.rand(1, len(modes), 200, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    found = nonuniform_inverse(coefficients, scattered, modes, chunk_points=64)
    torch.testing.assert_close(found, band_limited(scattered, modes, seed=1), rtol=1e-10, atol=1e-10)


def test_padded_points_with_garbage_change_no_coefficient():
    generator = torch.Generator().manual_seed(3)
    points = torch.rand(1, 2, 50, generator=generator, dtype=torch.float64)
    values = torch.randn(1, 4, 50, generator=generator, dtype=torch.float64)
    alone = nonuniform_forward(values, points, (3, 3))
    padded_points = torch.cat([points, 1e3 * torch.randn(1, 2, 7, dtype=torch.float64)], dim=2)
    padded_values = torch.cat([values, 1e3 * torch.randn(1, 4, 7, dtype=torch.float64)], dim=2)
    mask = torch.arange(57)[None] < 50
    torch.testing.assert_close(nonuniform_forward(padded_values, padded_points, (3, 3), mask), alone,
                               rtol=1e-12, atol=1e-12)


def test_gradcheck_in_values_points_and_coefficients():
    generator = torch.Generator().manual_seed(4)
    points = torch.rand(1, 2, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    values = torch.randn(1, 2, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True] * 5 + [False]])
    assert torch.autograd.gradcheck(lambda v, z: torch.view_as_real(nonuniform_forward(v, z, (2, 2), mask, 4)),
                                    (values, points))
    coefficients = torch.randn(1, 2, 4, 2, generator=generator, dtype=torch.complex128, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c, z: nonuniform_inverse(c, z, (2, 2), 4), (coefficients, points))
