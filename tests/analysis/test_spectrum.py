import json
import math

import matplotlib.image
import numpy as np
import pytest
import torch

from oplearn.analysis import band_errors, energy_spectrum, error_spectrum, spectral_report
from oplearn.analysis.spectrum import default_band_edges
from oplearn.errors import ConfigError, ShapeError
from oplearn.plot import plot_spectrum


def grid(*sizes):
    axes = [torch.arange(n, dtype=torch.float64) / n for n in sizes]
    return torch.meshgrid(*axes, indexing="ij")


def wave(sizes, k, amplitude=1.0, cosine=True):
    """``amplitude * cos(2 pi k . x)`` (or sin) as a ``(1, 1, *sizes)`` field."""
    phase = 2 * math.pi * sum(ki * x for ki, x in zip(k, grid(*sizes)))
    return amplitude * (torch.cos(phase) if cosine else torch.sin(phase))[None, None]


def band_limited(*sizes):
    """Fixed ``(3, 2, *sizes)`` field with |k_i| <= 6 on every axis."""
    generator = torch.Generator().manual_seed(3)
    field = torch.zeros(3, 2, *sizes, dtype=torch.float64)
    for _ in range(8):
        k = torch.randint(-6, 7, (len(sizes),), generator=generator).tolist()
        amplitudes = torch.randn(3, 2, *[1] * len(sizes), generator=generator, dtype=torch.float64)
        field += amplitudes * wave(sizes, k, cosine=bool(torch.rand(1, generator=generator) < 0.5))
    return field


@pytest.mark.parametrize("sizes", [(33,), (20, 17), (8, 6, 7)])
def test_parseval_spectrum_sums_to_mean_square(sizes):
    u = torch.randn(3, 2, *sizes, dtype=torch.float64)
    wavenumbers, energy = energy_spectrum(u)
    assert energy.sum().item() == pytest.approx(u.square().mean().item(), rel=1e-13)
    torch.testing.assert_close(wavenumbers, torch.arange(len(energy), dtype=torch.float64))
    # float32 input is analysed in float64 and keeps Parseval to float32 rounding of the input
    _, energy32 = energy_spectrum(u.float())
    assert energy32.dtype == torch.float64
    assert energy32.sum().item() == pytest.approx(u.float().double().square().mean().item(), rel=1e-13)


@pytest.mark.parametrize("sizes, k, shell", [
    ((64,), (7,), 7),
    ((32, 32), (3, 4), 5),          # |k| = 5
    ((32, 24), (2, -2), 3),         # |k| = 2.83 lies in [2.5, 3.5)
    ((16, 16), (1, 1), 1),          # |k| = 1.41 lies in [0.5, 1.5)
    ((12, 10, 8), (1, 2, -2), 3),   # |k| = 3
])
def test_single_mode_lands_in_its_shell(sizes, k, shell):
    _, energy = energy_spectrum(wave(sizes, k, amplitude=2.0))
    expected = torch.zeros_like(energy)
    expected[shell] = 2.0  # amplitude^2 / 2
    torch.testing.assert_close(energy, expected, rtol=0, atol=1e-13)


def test_band_errors_see_only_the_wrong_band():
    sizes = (48, 48)  # k_max = 24, default edges 8 and 16
    assert default_band_edges(sizes) == (8.0, 16.0)
    low, mid, high = wave(sizes, (2, 1)), wave(sizes, (6, 9), 0.5), wave(sizes, (0, 20), 0.1, cosine=False)
    target = low + mid + high
    prediction = low + mid + 1.3 * high  # exact below |k| = 16, 30 % too strong above
    errors = band_errors(prediction, target)
    assert errors["low"] == pytest.approx(0.0, abs=1e-12)
    assert errors["mid"] == pytest.approx(0.0, abs=1e-12)
    assert errors["high"] == pytest.approx(0.3, rel=1e-10)
    # one explicit edge at 11: the mid wave (|k| = 10.8) joins the low band, the wrong wave stays above
    assert band_errors(prediction, target, edges=(11.0,)) == pytest.approx({"band_0": 0.0, "band_1": 0.3},
                                                                           rel=1e-10, abs=1e-12)
    # bands are half-open [e_j, e_j+1): a wave with |k| = 8 exactly belongs to the mid band
    on_edge = wave(sizes, (0, 8))
    edge_errors = band_errors(low + 2 * on_edge, low + on_edge)
    assert edge_errors["low"] == pytest.approx(0.0, abs=1e-12) and edge_errors["mid"] == pytest.approx(1.0)
    # the target has no energy above |k| = 16: that band's relative error is undefined, not rounding noise / 0
    assert edge_errors["high"] is None
    edge_errors32 = band_errors((low + 2 * on_edge).float().numpy(), (low + on_edge).float().numpy())
    assert edge_errors32["high"] is None and edge_errors32["mid"] == pytest.approx(1.0, rel=1e-6)
    wrong_mid = low + 0.5 * mid + high
    assert band_errors(wrong_mid, target) == pytest.approx({"low": 0.0, "mid": 0.5, "high": 0.0}, abs=1e-12)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_band_limited_field_has_the_same_spectrum_at_two_resolutions(dim):
    coarse_sizes, fine_sizes = ((32,), (64,)) if dim < 3 else ((16,), (32,))
    _, coarse = energy_spectrum(band_limited(*coarse_sizes * dim))
    _, fine = energy_spectrum(band_limited(*fine_sizes * dim))
    assert coarse.abs().max() > 0.1
    torch.testing.assert_close(fine[:len(coarse)], coarse, rtol=1e-12, atol=1e-14)
    assert fine[len(coarse):].abs().max() < 1e-14


def smooth_random(*sizes):
    """Fixed ``(3, 2, *sizes)`` field with energy in every mode, decaying like (1 + |k|^2)^-1.5."""
    generator = torch.Generator().manual_seed(5)
    axes = tuple(range(2, 2 + len(sizes)))
    coefficients = torch.fft.fftn(torch.randn(3, 2, *sizes, generator=generator, dtype=torch.float64), dim=axes)
    k_squared = sum(k.square() for k in torch.meshgrid(
        *[torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64) for n in sizes], indexing="ij"))
    return torch.fft.ifftn(coefficients * (1 + k_squared) ** -1.5, dim=axes).real


def test_error_spectrum_and_report():
    target = smooth_random(32, 32)
    prediction = target + 0.05 * torch.randn(target.shape, dtype=torch.float64,
                                             generator=torch.Generator().manual_seed(1))
    _, error = error_spectrum(prediction, target)
    assert error.sum().item() == pytest.approx((prediction - target).square().mean().item(), rel=1e-13)
    report = spectral_report(prediction.float().numpy(), target.float().numpy())
    json.dumps(report, allow_nan=False)  # plain JSON, no NaN or inf
    assert report["samples"] == 3 and report["resolution"] == [32, 32]
    assert report["band_edges"]["low"][0] == 0.0 and report["band_edges"]["high"][1] == pytest.approx(16 * 2 ** 0.5)
    assert set(report["band_relative_errors"]) == {"low", "mid", "high"}
    # white noise on a field whose energy decays with |k|: the relative error grows with |k|
    bands = report["band_relative_errors"]
    assert bands["low"] < bands["mid"] < bands["high"]
    lengths = {len(report[key]) for key in ("wavenumbers", "truth_spectrum", "prediction_spectrum",
                                            "error_spectrum")}
    assert lengths == {24}  # shells 0..23; the corner mode |k| = 16 sqrt(2) = 22.6 rounds to 23


def test_bad_input_raises_one_line_errors():
    u = torch.randn(2, 1, 16, 16)
    with pytest.raises(ShapeError, match="differ in shape"):
        band_errors(u, u[..., :8])
    with pytest.raises(ShapeError, match=r"x\[None\]"):
        energy_spectrum(u[0, 0])
    with pytest.raises(ConfigError, match="increasing positive"):
        band_errors(u, u, edges=(6.0, 3.0))


def test_plot_spectrum_writes_a_nonblank_png(tmp_path):
    target = band_limited(32, 32)
    prediction = target + 0.01 * torch.randn(target.shape, dtype=torch.float64)
    path = plot_spectrum(target.numpy(), prediction, tmp_path / "figures" / "spectrum.png", title="test")
    assert path.exists()
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and np.var(image[..., :3]) > 0
