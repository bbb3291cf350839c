"""Statistical and exactness tests of the Gaussian random field sampler."""

import math

import numpy as np
import pytest
import scipy.fft
import torch

from oplearn.data.grf import GaussianRandomField
from oplearn.errors import ConfigError, ShapeError

ALPHA, TAU, SIGMA = 2.0, 3.0, 1.5


def periodic_eigenvalue(*k: int) -> float:
    """lambda_k = sigma^2 (4 pi^2 |k|^2 + tau^2)^(-alpha), written out independently of grf.py."""
    return SIGMA**2 * (4 * math.pi**2 * sum(ki**2 for ki in k) + TAU**2) ** (-ALPHA)


def neumann_eigenvalues(n: int) -> np.ndarray:
    """lambda_k for the 2-D Neumann modes k = (k1, k2), k_i = 0..n-1, shape (n, n)."""
    k = np.arange(n)
    return SIGMA**2 * (math.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2) + TAU**2) ** (-ALPHA)


def draw(field: GaussianRandomField, n: int, seed: int = 0) -> torch.Tensor:
    return field.sample(n, generator=torch.Generator().manual_seed(seed))


def periodic_variance(resolution: int, dim: int) -> float:
    """sum_k lambda_k over the wavenumbers of an N-point periodic grid, by explicit loops."""
    ks = [k if k <= resolution // 2 else k - resolution for k in range(resolution)]
    if dim == 1:
        return sum(periodic_eigenvalue(k) for k in ks)
    return sum(periodic_eigenvalue(k1, k2) for k1 in ks for k2 in ks)


@pytest.mark.parametrize("dim, resolution", [(1, 32), (2, 12)])
def test_periodic_pointwise_variance_matches_eigenvalue_sum(dim, resolution):
    field = GaussianRandomField(dim, resolution, alpha=ALPHA, tau=TAU, sigma=SIGMA)
    samples = draw(field, 20000)
    expected = periodic_variance(resolution, dim)
    # Per-point relative standard error is sqrt(2 / 20000) = 1%.
    np.testing.assert_allclose(samples.var(dim=0).numpy(), expected, rtol=0.05)
    # The constant mode alone contributes sigma^2 tau^(-2 alpha): check it is kept.
    assert expected > SIGMA**2 * TAU ** (-2 * ALPHA) * 1.05


def test_periodic_covariance_between_points_matches_cosine_sum():
    resolution = 16
    field = GaussianRandomField(1, resolution, alpha=ALPHA, tau=TAU, sigma=SIGMA)
    samples = draw(field, 40000, seed=1).numpy()
    ks = range(-resolution // 2 + 1, resolution // 2 + 1)
    for shift in (1, 3, 8):
        expected = sum(periodic_eigenvalue(k) * math.cos(2 * math.pi * k * shift / resolution) for k in ks)
        # Stationarity: average the product over all base points, shift wraps around.
        empirical = np.mean(samples * np.roll(samples, -shift, axis=1))
        assert empirical == pytest.approx(expected, rel=0.03)


def test_periodic_power_spectrum_matches_eigenvalues():
    resolution = 8
    field = GaussianRandomField(2, resolution, alpha=ALPHA, tau=TAU, sigma=SIGMA)
    samples = draw(field, 20000, seed=2).numpy()
    # Fourier coefficient of exp(2 pi i k.x) is fft(u) / N^d; its variance should be lambda_k.
    power = np.mean(np.abs(np.fft.fft2(samples) / resolution**2) ** 2, axis=0)
    wavenumbers = np.fft.fftfreq(resolution, 1.0 / resolution).astype(int)
    expected = np.array([[periodic_eigenvalue(k1, k2) for k2 in wavenumbers] for k1 in wavenumbers])
    np.testing.assert_allclose(power, expected, rtol=0.06)
    assert expected.max() / expected.min() > 1e3  # the spectrum really varies over these modes


def test_periodic_samples_are_real_float64_with_zero_mean():
    field = GaussianRandomField(2, 10)
    samples = draw(field, 4000)
    assert samples.dtype == torch.float64 and samples.shape == (4000, 10, 10)
    standard_error = math.sqrt(field.pointwise_variance()[0, 0].item() / 4000)
    assert abs(samples.mean(dim=0)).max().item() < 5 * standard_error


def test_neumann_pointwise_variance_matches_analytic_sum():
    resolution = 10
    field = GaussianRandomField(2, resolution, alpha=ALPHA, tau=TAU, sigma=SIGMA, boundary="neumann")
    samples = draw(field, 20000, seed=3)
    x = np.arange(resolution) / (resolution - 1)
    k = np.arange(resolution)
    phi_squared = np.where(k == 0, 1.0, 2.0) * np.cos(np.pi * np.outer(x, k)) ** 2  # (x, k)
    expected = np.einsum("ak,bl,kl->ab", phi_squared, phi_squared, neumann_eigenvalues(resolution))
    np.testing.assert_allclose(samples.var(dim=0).numpy(), expected, rtol=0.05)
    np.testing.assert_allclose(field.pointwise_variance().numpy(), expected, rtol=1e-12)
    # Cosines add up at the walls: the variance there is larger than in the middle.
    assert expected[0, 0] > 1.5 * expected[resolution // 2, resolution // 2]


def test_neumann_field_is_exactly_a_cosine_series_of_the_noise():
    """DCT-I (scipy, independent of grf.py) recovers sqrt(lambda_k) c_k xi_k from the field."""
    resolution = 9
    field = GaussianRandomField(2, resolution, alpha=ALPHA, tau=TAU, sigma=SIGMA, boundary="neumann")
    noise = torch.randn(5, resolution, resolution, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    values = field.sample_from_noise(noise).numpy()
    # u_j = sum_k a_k cos(pi k j / (N-1)) is inverted by idct type 1 with halved end weights.
    weights = np.full(resolution, 2.0)
    weights[[0, -1]] = 1.0
    recovered = scipy.fft.dctn(values, type=1, axes=(1, 2)) / (2 * (resolution - 1)) ** 2
    recovered *= weights[:, None] * weights[None, :]
    c = np.where(np.arange(resolution) == 0, 1.0, math.sqrt(2.0))
    expected = np.sqrt(neumann_eigenvalues(resolution)) * np.outer(c, c) * noise.numpy()
    np.testing.assert_allclose(recovered, expected, rtol=1e-9, atol=1e-12)


def test_neumann_field_has_zero_normal_derivative_in_the_limit():
    """A smooth Neumann field is flat at the walls: one-sided slope -> 0 faster than interior slopes."""
    resolution = 201
    field = GaussianRandomField(1, resolution, alpha=3.0, tau=TAU, boundary="neumann")
    values = draw(field, 200, seed=5).numpy()
    h = 1.0 / (resolution - 1)
    wall_slope = np.abs(values[:, 1] - values[:, 0]) / h
    interior_slope = np.abs(values[:, 101] - values[:, 100]) / h
    assert wall_slope.mean() < 0.05 * interior_slope.mean()


def test_same_seed_gives_same_field_and_different_seed_differs():
    field = GaussianRandomField(2, 16, boundary="neumann")
    first, again, other = draw(field, 3, seed=7), draw(field, 3, seed=7), draw(field, 3, seed=8)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    assert not torch.allclose(first[0], first[1])


def test_sample_from_noise_is_linear_and_keeps_shape():
    field = GaussianRandomField(3, 6, boundary="periodic")
    noise = torch.randn(2, 6, 6, 6, dtype=torch.float64)
    assert field.sample_from_noise(noise).shape == (2, 6, 6, 6)
    torch.testing.assert_close(field.sample_from_noise(3 * noise), 3 * field.sample_from_noise(noise))
    # float32 noise is accepted and promoted
    assert field.sample_from_noise(noise.float()).dtype == torch.float64


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(dim=0, resolution=8),
        dict(dim=4, resolution=8),
        dict(dim=1, resolution=1),
        dict(dim=1, resolution=8.0),
        dict(dim=1, resolution=8, alpha=0.0),
        dict(dim=1, resolution=8, tau=-1.0),
        dict(dim=1, resolution=8, sigma=float("nan")),
        dict(dim=1, resolution=8, boundary="dirichlet"),
    ],
)
def test_bad_parameters_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        GaussianRandomField(**kwargs)


def test_bad_noise_shape_and_sample_count_are_reported():
    field = GaussianRandomField(2, 8)
    with pytest.raises(ShapeError, match="noise must have shape"):
        field.sample_from_noise(torch.zeros(8, 8))
    with pytest.raises(ConfigError):
        field.sample(0)
