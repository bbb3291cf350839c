"""ResamplingSpectralConv and the resamplings: exact Fourier interpolation, SpectralConv at scale 1, autograd."""

import numpy as np
import pytest
import torch
from helpers import band_limited

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers import SpectralConv
from oplearn.layers.resampling_spectral import (ResamplingSpectralConv, fourier_resample, linear_resample,
                                                resampling)


def trigonometric_interpolation(u, sizes):
    """float64 reference, by explicit DFT sums: the coefficients of ``u (b, c, n0, n1)`` with |k| < n/2 per axis,
    evaluated as sum_k c_k e^{2 pi i k.x} on the points j/m of a ``sizes`` grid."""
    n0, n1 = u.shape[2:]

    def basis(n, m):  # (m, K): e^{2 pi i k j / m} for the wavenumbers |k| < n/2 of an n-point grid
        k = np.array([w for w in np.fft.fftfreq(n, 1 / n) if abs(w) < n / 2])
        return np.exp(2j * np.pi * np.outer(np.arange(m), k) / m), k

    analysis0, k0 = basis(n0, n0)
    analysis1, k1 = basis(n1, n1)
    coefficients = np.einsum("bcij,ik,jl->bckl", u, analysis0.conj(), analysis1.conj()) / (n0 * n1)
    synthesis0, _ = basis(n0, sizes[0])
    synthesis1, _ = basis(n1, sizes[1])
    return np.real(np.einsum("bckl,ik,jl->bcij", coefficients, synthesis0, synthesis1))


def band_limited_field(n, channels=3, seed=0):
    """``(1, channels, n, n)`` float64 samples of a sum of cosines with |k| <= 3 per axis on the grid j/n."""
    generator = torch.Generator().manual_seed(seed)
    fields = []
    for _ in range(channels):
        terms = [(tuple(torch.randint(-3, 4, (2,), generator=generator).tolist()), float(a), float(p))
                 for a, p in zip(torch.randn(6, generator=generator), 6 * torch.rand(6, generator=generator))]
        fields.append(band_limited(n, 2, terms))
    return torch.stack(fields)[None]


@pytest.mark.parametrize("n, m", [(12, (9, 7)), (11, (16, 13)), (9, (9, 14))])
def test_output_at_a_new_size_is_the_output_fourier_interpolated_there(n, m):
    torch.manual_seed(0)
    layer = ResamplingSpectralConv(3, 2, (3, 2)).double()
    u = band_limited_field(n)
    at_n = layer(u).detach().numpy()
    at_m = layer(u, m).detach()
    assert at_m.shape == (1, 2, *m) and np.abs(at_n).max() > 0.1
    np.testing.assert_allclose(at_m.numpy(), trigonometric_interpolation(at_n, m), rtol=0, atol=1e-12)


def test_output_does_not_depend_on_the_input_grid_for_band_limited_inputs():
    torch.manual_seed(1)
    layer = ResamplingSpectralConv(3, 2, (3, 3)).double()
    outputs = [layer(band_limited_field(n), (10, 11)).detach() for n in (8, 13, 20)]
    assert outputs[0].abs().max() > 0.1
    for other in outputs[1:]:
        torch.testing.assert_close(other, outputs[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("modes, sizes", [((5,), (16,)), ((3, 2), (7, 6)), ((2, 2, 3), (6, 5, 6))])
def test_on_its_own_grid_it_is_the_spectral_conv(modes, sizes):
    torch.manual_seed(2)
    plain = SpectralConv(3, 2, modes).double()
    resampling_layer = ResamplingSpectralConv(3, 2, modes).double()
    resampling_layer.load_state_dict(plain.state_dict())
    u = torch.randn(2, 3, *sizes, dtype=torch.float64)
    assert torch.equal(resampling_layer(u), plain(u))
    assert torch.equal(resampling_layer(u, sizes), plain(u))


@pytest.mark.parametrize("n, m", [(14, 9), (9, 14), (10, 10)])
def test_fourier_resample_is_exact_below_both_nyquist_frequencies(n, m):
    u = band_limited_field(n)  # |k| <= 3 < 9 / 2
    expected = band_limited_field(m)
    torch.testing.assert_close(fourier_resample(u, (m, m)), expected, rtol=0, atol=1e-12)


def test_fourier_resample_drops_what_the_smaller_grid_cannot_hold():
    x = torch.arange(12, dtype=torch.float64) / 12
    u = (torch.cos(2 * torch.pi * x) + torch.cos(2 * torch.pi * 4 * x))[None, None]
    down = fourier_resample(u, (6,))  # |k| <= 2 kept: wavenumber 4 would alias onto 2 on six points
    torch.testing.assert_close(down[0, 0], torch.cos(2 * torch.pi * torch.arange(6, dtype=torch.float64) / 6),
                               rtol=0, atol=1e-12)


def test_linear_resample_interpolates_between_the_points_periodically():
    u = torch.tensor([[[0.0, 1.0, 4.0, 2.0]]], dtype=torch.float64)
    assert linear_resample(u, (8,)).flatten().tolist() == [0.0, 0.5, 1.0, 2.5, 4.0, 3.0, 2.0, 1.0]  # wraps to u[0]
    assert linear_resample(u, (2,)).flatten().tolist() == [0.0, 4.0]
    assert linear_resample(u, (4,)) is u
    field = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    torch.testing.assert_close(linear_resample(field, (12, 10))[..., ::2, ::2], field, rtol=0, atol=0)


def test_gradients_match_finite_differences():
    torch.manual_seed(3)
    layer = ResamplingSpectralConv(2, 2, (2, 2)).double()
    u = torch.randn(1, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: torch.func.functional_call(layer, {"weight_pairs": w}, (x, (4, 7))),
                                    (u, layer.weight_pairs.detach().clone().requires_grad_()))
    assert torch.autograd.gradcheck(lambda x: fourier_resample(x, (9, 4)), (u,))
    assert torch.autograd.gradcheck(lambda x: linear_resample(x, (9, 4)), (u,))


def test_grids_too_small_for_the_modes_are_one_line_errors():
    layer = ResamplingSpectralConv(1, 1, (3, 3))
    with pytest.raises(ShapeError, match=r"output grid \(5, 8\) is too small for modes \(3, 3\)"):
        layer(torch.randn(1, 1, 8, 8), (5, 8))
    with pytest.raises(ShapeError, match="spatial axis 0 has 5 points"):
        layer(torch.randn(1, 1, 5, 8), (8, 8))
    with pytest.raises(ConfigError, match="unknown resample 'cubic'; choose one of: fourier, linear"):
        resampling("cubic")
