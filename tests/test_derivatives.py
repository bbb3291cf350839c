import math

import numpy as np
import pytest
import torch

from oplearn.derivatives import (continuation_derivative, finite_difference, finite_difference_weights,
                                 periodic_finite_difference, spectral_derivative)
from oplearn.errors import ConfigError, ShapeError

SIZES = (16, 32, 64, 128)


def _f(x):  # smooth, non-periodic on [0, 1]
    return torch.exp(x) * torch.sin(3 * x)


def _f_derivative(x, m):
    if m == 1:
        return torch.exp(x) * (torch.sin(3 * x) + 3 * torch.cos(3 * x))
    return torch.exp(x) * (-8 * torch.sin(3 * x) + 6 * torch.cos(3 * x))


def _g(x):  # smooth, 2 pi-periodic
    return torch.exp(torch.sin(x))


def _g_derivative(x, m):
    if m == 1:
        return torch.cos(x) * _g(x)
    return (torch.cos(x) ** 2 - torch.sin(x)) * _g(x)


def _nodes(n):
    return torch.linspace(0.0, 1.0, n, dtype=torch.float64)


def _slope(sizes, errors):
    return np.polyfit(np.log(sizes), np.log(errors), 1)[0]


# --- Fornberg weights ---------------------------------------------------------------------------------------


def test_fornberg_reproduces_textbook_stencils():
    np.testing.assert_allclose(finite_difference_weights(1, [-1, 0, 1]), [-0.5, 0.0, 0.5], atol=1e-15)
    np.testing.assert_allclose(finite_difference_weights(2, [-1, 0, 1]), [1.0, -2.0, 1.0], atol=1e-15)
    np.testing.assert_allclose(finite_difference_weights(1, [-2, -1, 0, 1, 2]),
                               [1 / 12, -2 / 3, 0.0, 2 / 3, -1 / 12], atol=1e-15)
    np.testing.assert_allclose(finite_difference_weights(1, [0, 1, 2]), [-1.5, 2.0, -0.5], atol=1e-15)
    # exact on polynomials of degree len(offsets) - 1, non-integer offsets included
    offsets = np.array([-0.7, 0.1, 0.9, 2.3, 3.0])
    w = finite_difference_weights(2, offsets)
    assert abs(w @ offsets ** 4 - 0.0) < 1e-11 and abs(w @ offsets ** 2 - 2.0) < 1e-11
    assert finite_difference_weights(2, offsets).dtype == np.float64


def test_fornberg_rejects_bad_offsets():
    with pytest.raises(ConfigError, match="needs at least 3 offsets"):
        finite_difference_weights(2, [0, 1])
    with pytest.raises(ConfigError, match="distinct"):
        finite_difference_weights(1, [0, 1, 1])


# --- finite differences: convergence orders ------------------------------------------------------------------


@pytest.mark.parametrize("accuracy", [2, 4, 6])
@pytest.mark.parametrize("derivative", [1, 2])
def test_finite_difference_order_whole_grid(accuracy, derivative):
    # Max error over the whole grid (ends included) against h = 1/(n-1). Observed fitted orders over
    # n = 16..128 (derivative 1 / 2): acc 2: 1.83 / 1.97, acc 4: 4.33 / 3.79, acc 6: 6.03 / -; finest-pair
    # orders: 1.94 / 1.99, 4.21 / 3.93, 6.04 / -. FD-6's second derivative meets round-off at the ends
    # (~2e-9) from n ~ 80, so it uses n = 16..64 (fit 6.32, 48 -> 64 order 6.10).
    sizes = (16, 24, 32, 48, 64) if (accuracy, derivative) == (6, 2) else SIZES
    errors = []
    for n in sizes:
        x = _nodes(n)
        du = finite_difference(_f(x), 0, 1.0 / (n - 1), derivative, accuracy)
        errors.append((du - _f_derivative(x, derivative)).abs().max().item())  # ends included
    steps = [1.0 / (n - 1) for n in sizes]
    assert abs(_slope(steps, errors) - accuracy) < 0.6  # the fit includes the pre-asymptotic n = 16
    finest = math.log(errors[-2] / errors[-1]) / math.log(steps[-2] / steps[-1])
    assert abs(finest - accuracy) < 0.3
    assert errors[-1] < {2: 2e-2, 4: 1e-5, 6: 1e-7}[accuracy]


@pytest.mark.parametrize("accuracy", [2, 4, 6])
@pytest.mark.parametrize("derivative", [1, 2])
def test_periodic_finite_difference_order(accuracy, derivative):
    # observed slopes: acc 2: 1.95 / 1.98, acc 4: 3.90 / 3.93, acc 6: 5.81 / 5.82
    errors = []
    for n in SIZES:
        x = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
        du = periodic_finite_difference(_g(x), 0, 2 * math.pi / n, derivative, accuracy)
        errors.append((du - _g_derivative(x, derivative)).abs().max().item())
    assert abs(-_slope(SIZES, errors) - accuracy) < 0.3


def test_finite_difference_along_inner_dim_and_shapes():
    n = 40
    x = _nodes(n)
    u = torch.stack([_f(x), 2 * _f(x), x ** 2], dim=1)[None]  # (1, n, 3), differentiate along dim=1
    du = finite_difference(u, 1, 1.0 / (n - 1), 1, accuracy=4)
    assert du.shape == u.shape
    torch.testing.assert_close(du[0, :, 1], 2 * du[0, :, 0])
    torch.testing.assert_close(du[0, :, 2], 2 * x, atol=1e-11, rtol=0)  # exact on quadratics
    d2 = finite_difference(x ** 5, 0, 1.0 / (n - 1), 2, accuracy=4)  # m + p = 6 points: exact on quintics
    torch.testing.assert_close(d2, 20 * x ** 3, atol=1e-8, rtol=0)


def test_finite_difference_too_few_points():
    with pytest.raises(ShapeError, match="needs at least 8 points"):
        finite_difference(torch.zeros(7), 0, 0.1, derivative=2, accuracy=6)
    with pytest.raises(ShapeError, match="needs at least 5 points"):
        periodic_finite_difference(torch.zeros(2, 4), -1, 0.1, accuracy=4)
    with pytest.raises(ConfigError, match="accuracy must be one of"):
        finite_difference(torch.zeros(9), 0, 0.1, accuracy=3)
    with pytest.raises(ConfigError, match="spacing"):
        finite_difference(torch.zeros(9), 0, 0.0)
    with pytest.raises(ShapeError, match="out of range"):
        finite_difference(torch.zeros(9), 1, 0.1)


# --- spectral ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [16, 17])
def test_spectral_exact_on_trig_polynomials(n):
    length = 2.5
    x = torch.arange(n, dtype=torch.float64) * (length / n)
    w = 2 * math.pi / length
    top = (n - 1) // 2  # highest mode below Nyquist
    u = 1.5 + torch.sin(3 * w * x) + 0.5 * torch.cos(top * w * x)
    du = 3 * w * torch.cos(3 * w * x) - 0.5 * top * w * torch.sin(top * w * x)
    d2u = -9 * w ** 2 * torch.sin(3 * w * x) - 0.5 * (top * w) ** 2 * torch.cos(top * w * x)
    assert (spectral_derivative(u, 0, length, 1) - du).abs().max() < 1e-10
    assert (spectral_derivative(u, 0, length, 2) - d2u).abs().max() < 1e-10 * top ** 2
    # along dim=-2 of a 2-D array: columns scaled differently
    u2 = torch.stack([u, -3 * u, torch.zeros_like(u)], dim=1)  # (n, 3)
    du2 = spectral_derivative(u2, -2, length, 1)
    assert du2.shape == u2.shape
    assert (du2 - torch.stack([du, -3 * du, torch.zeros_like(du)], dim=1)).abs().max() < 1e-10


def test_spectral_nyquist_mode_zeroed_for_odd_derivatives():
    n = 8
    x = torch.arange(n, dtype=torch.float64) / n
    nyquist = torch.cos(math.pi * n * x)  # (-1)^j
    assert spectral_derivative(nyquist, 0, 1.0, 1).abs().max() < 1e-12
    expected = -(math.pi * n) ** 2 * nyquist
    assert (spectral_derivative(nyquist, 0, 1.0, 2) - expected).abs().max() < 1e-9


# --- Fourier continuation ------------------------------------------------------------------------------------


def _continuation_error(n, derivative, dtype=torch.float64):
    x = _nodes(n)
    du = continuation_derivative(_f(x).to(dtype), 0, 1.0 / (n - 1), derivative)
    return (du.double() - _f_derivative(x, derivative)).abs()


def test_continuation_first_derivative_spectral_accuracy():
    # observed max errors: n=16: 5.9e-2, 32: 7.4e-4, 64: 2.5e-8 (FD-6: 8.7e-5, 1.1e-6, 1.5e-8)
    err = {n: _continuation_error(n, 1).max().item() for n in (16, 32, 64)}
    assert err[64] < 1e-7
    fd6 = {}
    for n in (16, 64):
        x = _nodes(n)
        fd6[n] = (finite_difference(_f(x), 0, 1 / (n - 1), 1, 6) - _f_derivative(x, 1)).abs().max().item()
    # decay 16 -> 64: continuation ~2e6x, FD-6 ~6e3x
    assert err[16] / err[64] > 100 * (fd6[16] / fd6[64])
    assert err[16] > err[32] > err[64]


@pytest.mark.parametrize("n", [32, 64])
def test_continuation_no_ringing_at_the_ends(n):
    # observed ratio (max over 5 end points / max over the rest): n=32: 15, n=64: 70
    e = _continuation_error(n, 1)
    ends = max(e[:5].max().item(), e[-5:].max().item())
    assert ends <= 100 * e[5:-5].max().item()
    # spectral derivative of the same non-periodic samples rings: O(1) errors at the ends
    x = torch.arange(n, dtype=torch.float64) / n
    ringing = (spectral_derivative(_f(x), 0, 1.0) - _f_derivative(x, 1)).abs()
    assert ringing[0] > 1.0 and ringing[0] > 1000 * e.max()


def test_continuation_second_derivative():
    # observed: n=64: 8.6e-6, n=96: 3.4e-7
    assert _continuation_error(64, 2).max() < 1e-4
    assert _continuation_error(96, 2).max() < 1e-5


def test_continuation_spacing_dim_and_cache():
    n, length = 48, 3.0
    x = torch.linspace(0.0, length, n, dtype=torch.float64)
    u = torch.stack([torch.cos(x), x ** 3], dim=0)[:, None, :].expand(2, 4, n)  # (2, 4, n), along dim=-1
    du = continuation_derivative(u, -1, length / (n - 1))
    assert du.shape == (2, 4, n)
    assert (du[0] + torch.sin(x)).abs().max() < 1e-6
    assert (du[1] - 3 * x ** 2).abs().max() < 1e-6 * 27  # observed 1.8e-5 at the end, where f' = 27
    # same along dim=0 of the transpose
    dT = continuation_derivative(u.permute(2, 0, 1).contiguous(), 0, length / (n - 1))
    torch.testing.assert_close(dT.permute(1, 2, 0), du)
    with pytest.raises(ShapeError, match="at least 4 points"):
        continuation_derivative(torch.zeros(3), 0, 0.1)
    with pytest.raises(ConfigError, match="extension must be > 1"):
        continuation_derivative(torch.zeros(8), 0, 0.1, extension=1.0)


# --- autograd and dtypes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [
    lambda u: finite_difference(u, 1, 0.1, 2, 4),
    lambda u: periodic_finite_difference(u, 1, 0.1, 1, 6),
    lambda u: spectral_derivative(u, 1, 2.0, 1),
    lambda u: spectral_derivative(u, 1, 2.0, 2),
    lambda u: continuation_derivative(u, 1, 0.1, 1),
    lambda u: continuation_derivative(u, 1, 0.1, 2),
], ids=["fd", "periodic_fd", "spectral1", "spectral2", "continuation1", "continuation2"])
def test_gradcheck(fn):
    u = torch.randn(2, 10, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (u,))


def test_float32_works():
    n = 64
    x = _nodes(n)
    u = _f(x).float()
    h = 1.0 / (n - 1)
    exact = _f_derivative(x, 1)
    for du, tol in [(finite_difference(u, 0, h, 1, 4), 1e-4), (continuation_derivative(u, 0, h), 1e-4)]:
        assert du.dtype == torch.float32
        assert (du.double() - exact).abs().max() < tol  # observed: 3e-6, 1.5e-5
    xp = torch.arange(n, dtype=torch.float32) * (2 * math.pi / n)
    for du in (spectral_derivative(_g(xp), 0, 2 * math.pi), periodic_finite_difference(_g(xp), 0, 2 * math.pi / n,
                                                                                       1, 6)):
        assert du.dtype == torch.float32
        assert (du - _g_derivative(xp, 1)).abs().max() < 1e-4
    half = spectral_derivative(_g(xp).to(torch.bfloat16), 0, 2 * math.pi)
    assert half.dtype == torch.bfloat16
