import math

import pytest
import torch

from oplearn.errors import ConfigError, ShapeError
from oplearn.losses import LOSSES, get_loss, relative_lp_loss, relative_sobolev_loss, sobolev_norm


def test_relative_l2_per_sample():
    target = torch.stack([torch.ones(1, 4, 4), 2 * torch.ones(1, 4, 4)])
    prediction = target.clone()
    prediction[0] += 0.5  # relative error 0.5
    prediction[1] *= 0.9  # relative error 0.1
    per_sample = relative_lp_loss(prediction, target, reduction="none")
    torch.testing.assert_close(per_sample, torch.tensor([0.5, 0.1]))
    torch.testing.assert_close(relative_lp_loss(prediction, target), torch.tensor(0.3))
    torch.testing.assert_close(relative_lp_loss(prediction, target, reduction="sum"), torch.tensor(0.6))


def test_relative_l1_and_scale_invariance():
    target = torch.randn(3, 2, 8)
    prediction = target + 0.1 * torch.randn(3, 2, 8)
    l1 = relative_lp_loss(prediction, target, p=1, reduction="none")
    expected = (prediction - target).abs().sum(dim=(1, 2)) / target.abs().sum(dim=(1, 2))
    torch.testing.assert_close(l1, expected)
    torch.testing.assert_close(relative_lp_loss(7 * prediction, 7 * target), relative_lp_loss(prediction, target))


# --- Sobolev norms and losses -------------------------------------------------------------------------------

def grid(*sizes):
    """Coordinates ``x_i = j / n_i`` on the periodic unit cube, each of shape ``sizes``."""
    axes = [torch.arange(n, dtype=torch.float64) / n for n in sizes]
    return torch.meshgrid(*axes, indexing="ij")


def band_limited(*sizes):
    """A fixed smooth field ``(2, 1, *sizes)`` with wavenumbers |k_i| <= 5 on every axis."""
    coordinates = grid(*sizes)
    generator = torch.Generator().manual_seed(7)
    field = torch.zeros(2, 1, *sizes, dtype=torch.float64)
    for _ in range(6):
        k = torch.randint(-5, 6, (len(sizes),), generator=generator).tolist()
        phase = 2 * math.pi * sum(ki * x for ki, x in zip(k, coordinates))
        a, b = torch.randn(2, 2, generator=generator, dtype=torch.float64)
        field[:, 0] += a[:, None].reshape(2, *[1] * len(sizes)) * torch.cos(phase)
        field[:, 0] += b[:, None].reshape(2, *[1] * len(sizes)) * torch.sin(phase)
    return field


@pytest.mark.parametrize("sizes", [(17,), (16,), (16, 15), (6, 5, 8)])
def test_h0_is_the_mean_square_l2_norm(sizes):
    u = torch.randn(3, 2, *sizes, dtype=torch.float64)
    expected = u.square().mean(dim=tuple(range(2, u.dim()))).sum(dim=1)  # mean over grid, sum over channels
    torch.testing.assert_close(sobolev_norm(u, 0.0, squared=True), expected, rtol=1e-13, atol=0)
    torch.testing.assert_close(sobolev_norm(u, 0.0), expected.sqrt(), rtol=1e-13, atol=0)


@pytest.mark.parametrize("s", [-1.0, 1.0, 2.0])
@pytest.mark.parametrize("wave", [(3,), (5, 0), (2, -3)])
def test_single_sine_has_the_analytic_norm(s, wave):
    sizes = (64,) if len(wave) == 1 else (32, 24)
    coordinates = grid(*sizes)
    u = torch.sin(2 * math.pi * sum(k * x for k, x in zip(wave, coordinates)))[None, None]
    k_squared = sum(k * k for k in wave)
    analytic = (1 + 4 * math.pi ** 2 * k_squared) ** s / 2
    assert sobolev_norm(u, s, squared=True).item() == pytest.approx(analytic, rel=1e-12)


@pytest.mark.parametrize("sizes", [(20,), (16, 13), (6, 8, 7)])
def test_h1_seminorm_is_the_spectral_gradient_norm(sizes):
    """|u|_{H^1}^2 = mean |grad u|^2 with derivatives taken on the full (not half) spectrum."""
    u = torch.randn(2, 3, *sizes, dtype=torch.float64)
    axes = tuple(range(2, u.dim()))
    coefficients = torch.fft.fftn(u, dim=axes)
    gradient_square = torch.zeros(2, dtype=torch.float64)
    for position, n in enumerate(sizes):
        k = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)
        shape = [1] * len(sizes)
        shape[position] = n
        derivative = torch.fft.ifftn(2j * math.pi * k.reshape(shape) * coefficients, dim=axes)
        gradient_square += derivative.abs().square().mean(dim=axes).sum(dim=1)
    torch.testing.assert_close(sobolev_norm(u, 1.0, seminorm=True, squared=True), gradient_square,
                               rtol=1e-12, atol=0)
    # and the full norm is L2 plus the seminorm
    torch.testing.assert_close(sobolev_norm(u, 1.0, squared=True),
                               sobolev_norm(u, 0.0, squared=True) + gradient_square, rtol=1e-12, atol=0)


def test_smooth_h1_seminorm_matches_analytic_gradient():
    x, y = grid(40, 40)
    u = (torch.sin(2 * math.pi * x) * torch.cos(4 * math.pi * y))[None, None]
    u_x = 2 * math.pi * torch.cos(2 * math.pi * x) * torch.cos(4 * math.pi * y)
    u_y = -4 * math.pi * torch.sin(2 * math.pi * x) * torch.sin(4 * math.pi * y)
    expected = (u_x.square() + u_y.square()).mean()
    assert sobolev_norm(u, 1.0, seminorm=True, squared=True).item() == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("s", [-1.0, 0.0, 1.0, 2.0])
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_norm_of_a_band_limited_field_is_resolution_independent(s, dim):
    coarse = sobolev_norm(band_limited(*[16] * dim), s)
    fine = sobolev_norm(band_limited(*[32] * dim), s)
    torch.testing.assert_close(coarse, fine, rtol=1e-12, atol=0)


def test_negative_order_weights_low_frequencies():
    x, = grid(64)
    target = torch.sin(2 * math.pi * x)[None, None] + 0.3 * torch.cos(2 * math.pi * 9 * x)[None, None]
    low_error = target + 0.01 * torch.cos(2 * math.pi * 2 * x)
    high_error = target + 0.01 * torch.cos(2 * math.pi * 20 * x)
    # same L2 error, but H^-1 charges the low-frequency one more and H^1 the high-frequency one
    torch.testing.assert_close(relative_lp_loss(low_error, target), relative_lp_loss(high_error, target))
    # the ratio is the square root of the weight ratio: sqrt((1 + 4 pi^2 20^2) / (1 + 4 pi^2 2^2)), about 9.97
    weight_ratio = math.sqrt((1 + 4 * math.pi ** 2 * 400) / (1 + 4 * math.pi ** 2 * 4))
    low_h_minus_1 = relative_sobolev_loss(low_error, target, -1.0).item()
    high_h_minus_1 = relative_sobolev_loss(high_error, target, -1.0).item()
    assert low_h_minus_1 / high_h_minus_1 == pytest.approx(weight_ratio, rel=1e-10)
    low_h1 = relative_sobolev_loss(low_error, target, 1.0).item()
    high_h1 = relative_sobolev_loss(high_error, target, 1.0).item()
    assert high_h1 / low_h1 == pytest.approx(weight_ratio, rel=1e-10)


@pytest.mark.parametrize("s", [-1.0, 1.0, 2.0])
def test_sobolev_loss_is_zero_iff_equal_and_differentiable(s):
    target = torch.randn(3, 2, 12, 10)
    prediction = target.clone().requires_grad_(True)
    loss = relative_sobolev_loss(prediction, target, s)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(prediction.grad).all() and prediction.grad.abs().max() == 0

    moved = (target + 1e-3 * torch.randn_like(target)).requires_grad_(True)
    per_sample = relative_sobolev_loss(moved, target, s, reduction="none")
    assert per_sample.shape == (3,) and (per_sample > 0).all()
    per_sample.sum().backward()
    assert torch.isfinite(moved.grad).all() and moved.grad.abs().max() > 0
    torch.testing.assert_close(relative_sobolev_loss(moved, target, s, reduction="sum"), per_sample.sum())


def test_sobolev_loss_gradient_is_correct():
    target = torch.randn(2, 1, 6, 5, dtype=torch.float64)
    prediction = (target + 0.1 * torch.randn_like(target)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: relative_sobolev_loss(p, target, -1.0), (prediction,))
    assert torch.autograd.gradcheck(lambda p: relative_sobolev_loss(p, target, 2.0), (prediction,))


def test_loss_names_and_errors():
    prediction, target = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16)
    assert set(LOSSES) == {"relative_l2", "h1", "h2", "h-1"}
    torch.testing.assert_close(get_loss("relative_l2")(prediction, target), relative_lp_loss(prediction, target))
    for name, s in (("h1", 1.0), ("H2", 2.0), ("h-1", -1.0)):
        torch.testing.assert_close(get_loss(name)(prediction, target, reduction="none"),
                                   relative_sobolev_loss(prediction, target, s, reduction="none"))
    with pytest.raises(ConfigError, match="unknown loss 'h3'; choose one of relative_l2, h1, h2, h-1"):
        get_loss("h3")
    with pytest.raises(ShapeError, match="differ in shape"):
        relative_sobolev_loss(prediction, target[:, :, :8], 1.0)
    with pytest.raises(ShapeError, match="1 to 3 spatial axes"):
        sobolev_norm(torch.randn(16, 16), 1.0)
    with pytest.raises(ConfigError, match="s >= 0"):
        sobolev_norm(prediction, -1.0, seminorm=True)
