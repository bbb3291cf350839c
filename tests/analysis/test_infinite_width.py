"""Infinite-width NNGP/NTK recursions: Monte-Carlo moments, analytic values, wide networks, GD predictions."""

import math

import pytest
import torch
from torch.func import functional_call, jacrev

from oplearn.analysis.infinite_width import (ACTIVATIONS, Activation, KernelMLP, gradient_descent_prediction,
                                             infinite_width_kernels)
from oplearn.analysis.ntk import empirical_ntk
from oplearn.errors import ConfigError, ShapeError

DERIVATIVES = {"relu": lambda u: (u > 0).double(), "erf": lambda u: 2 / math.sqrt(math.pi) * torch.exp(-u**2)}


def gaussian_pairs(s11, s22, s12, samples, seed=0):
    """``(u, v)`` with the given (broadcast) covariance, from shared standard normals (last axis: samples)."""
    generator = torch.Generator().manual_seed(seed)
    z1, z2 = torch.randn(2, samples, generator=generator, dtype=torch.float64)
    rho = (s12 / torch.sqrt(s11 * s22)).clamp(-1, 1)[..., None]
    u = torch.sqrt(s11)[..., None] * z1
    v = torch.sqrt(s22)[..., None] * (rho * z1 + torch.sqrt(1 - rho**2) * z2)
    return u, v


def monte_carlo(name, samples=200_000):
    """The same activation with its moments estimated by sampling Gaussian pre-activations."""
    def moments(s11, s22, s12):
        s11, s22, s12 = torch.broadcast_tensors(s11, s22, s12)
        u, v = gaussian_pairs(s11, s22, s12, samples)
        fn, dfn = ACTIVATIONS[name].fn, DERIVATIVES[name]
        return (fn(u) * fn(v)).mean(-1), (dfn(u) * dfn(v)).mean(-1)

    return Activation(f"{name}-mc", ACTIVATIONS[name].fn, moments)


@pytest.mark.parametrize("name", ["relu", "erf"])
def test_closed_form_moments_match_monte_carlo(name):
    s11 = torch.tensor([1.0, 2.0, 0.5, 1.5, 3.0], dtype=torch.float64)
    s22 = torch.tensor([1.0, 0.5, 0.5, 2.5, 1.0], dtype=torch.float64)
    rho = torch.tensor([0.0, 0.7, 1.0, -0.6, 0.95], dtype=torch.float64)
    s12 = rho * torch.sqrt(s11 * s22)
    exact = ACTIVATIONS[name].moments(s11, s22, s12)
    sampled = monte_carlo(name, 1_000_000).moments(s11, s22, s12)
    for e, s in zip(exact, sampled):
        torch.testing.assert_close(e, s, rtol=1e-2, atol=3e-3)


@pytest.mark.parametrize("name,parameterization", [("relu", "ntk"), ("erf", "standard")])
def test_recursion_matches_monte_carlo_expectations(name, parameterization):
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    options = dict(depth=3, weight_variance=1.7, bias_variance=0.2, parameterization=parameterization)
    exact = infinite_width_kernels(x, x[:3] * 0.5, activation=name, **options)
    sampled = infinite_width_kernels(x, x[:3] * 0.5, activation=monte_carlo(name), **options)
    torch.testing.assert_close(exact.nngp, sampled.nngp, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(exact.ntk, sampled.ntk, rtol=1e-2, atol=1e-2)


def test_arc_cosine_special_values():
    s = torch.tensor([0.7, 2.0], dtype=torch.float64)
    value, derivative = ACTIVATIONS["relu"].moments(s, s, s)  # angle 0
    torch.testing.assert_close(value, s / 2)  # E[relu(u)^2] = s / 2
    torch.testing.assert_close(derivative, torch.full_like(s, 0.5))
    value, derivative = ACTIVATIONS["relu"].moments(s, 2 * s, torch.zeros_like(s))  # angle pi/2
    torch.testing.assert_close(value, torch.sqrt(2 * s * s) / (2 * math.pi))
    torch.testing.assert_close(derivative, torch.full_like(s, 0.25))
    value, derivative = ACTIVATIONS["relu"].moments(s, s, -s)  # angle pi: never both positive
    torch.testing.assert_close(value, torch.zeros_like(s), atol=1e-12, rtol=0)
    torch.testing.assert_close(derivative, torch.zeros_like(s), atol=1e-12, rtol=0)
    value, derivative = ACTIVATIONS["erf"].moments(s, 2 * s, torch.zeros_like(s))  # independent: E = E[.] E[.]
    torch.testing.assert_close(value, torch.zeros_like(s))
    one = 2 / math.sqrt(math.pi) / torch.sqrt(1 + 2 * s)  # E[erf'(u)], u ~ N(0, s)
    torch.testing.assert_close(derivative, one * 2 / math.sqrt(math.pi) / torch.sqrt(1 + 4 * s))


def test_he_initialized_relu_network_has_closed_form_diagonal():
    # sigma_w^2 = 2, no bias: the variance 2|x|^2/d is kept by every layer and E[step^2] sigma_w^2 = 1,
    # so the NTK diagonal is (L + 1) times it.
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    variance = 2 * (x**2).sum(1) / 5
    for depth in (0, 1, 4):
        kernels = infinite_width_kernels(x, depth=depth, activation="relu", weight_variance=2.0)
        torch.testing.assert_close(kernels.nngp.diagonal(), variance)
        torch.testing.assert_close(kernels.ntk.diagonal(), (depth + 1) * variance)
    linear = infinite_width_kernels(x, depth=0, weight_variance=1.5, bias_variance=0.3)
    torch.testing.assert_close(linear.ntk, 1.5 * x @ x.T / 5 + 0.3)  # no hidden layer: a linear model


def relative_error(width, activation, parameterization, seeds):
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    options = dict(weight_variance=2.0, bias_variance=0.1, parameterization=parameterization)
    analytic = infinite_width_kernels(x, depth=2, activation=activation, **options).ntk
    errors = []
    for seed in seeds:
        model = KernelMLP([4, width, width, 1], activation, seed=seed, **options)
        empirical = empirical_ntk(model, x).double()
        errors.append((torch.linalg.matrix_norm(empirical - analytic) / torch.linalg.matrix_norm(analytic)).item())
    return sum(errors) / len(errors)


def test_wide_relu_mlp_ntk_approaches_the_analytic_kernel():
    narrow = relative_error(256, "relu", "ntk", range(3))
    wide = relative_error(4096, "relu", "ntk", range(3))
    # 1/sqrt(width) predicts a factor 4 between the widths; measured about 0.23 -> 0.04.
    assert wide < 0.5 * narrow and wide < 0.1, (narrow, wide)


@pytest.mark.parametrize("activation,parameterization", [("erf", "ntk"), ("relu", "standard"), ("erf", "standard")])
def test_other_networks_are_close_to_their_limits(activation, parameterization):
    assert relative_error(1024, activation, parameterization, range(2)) < 0.15


def tiny_problem(seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(14, 2, generator=generator, dtype=torch.float64)
    y = torch.sin(2 * x[:, :1]) + 0.5 * x[:, 1:] ** 2
    return x[:10], y[:10], x[10:]


def test_prediction_matches_training_the_linearized_model():
    x, y, x_test = tiny_problem()
    model = KernelMLP([2, 48, 48, 1], "erf", bias_variance=0.1, seed=0).double()
    params = {k: v.detach() for k, v in model.named_parameters()}

    def jacobian(inputs):
        jac = jacrev(lambda p: functional_call(model, p, (inputs,)))(params)
        return torch.cat([j.reshape(len(inputs), -1) for j in jac.values()], 1)  # (N, P)

    j_train, j_test = jacobian(x), jacobian(x_test)
    with torch.no_grad():
        f0_train, f0_test = model(x), model(x_test)
    # Gradient flow of 0.5 |f0 + J d - y|^2 in the weight offset d, integrated with RK4 (learning rate 0.5).
    eta, t, steps = 0.5, 3.0, 600
    h = t / steps

    def velocity(d):
        return -eta * j_train.T @ (f0_train + j_train @ d - y)

    d = torch.zeros(j_train.shape[1], 1, dtype=torch.float64)
    for _ in range(steps):
        k1 = velocity(d)
        k2 = velocity(d + h / 2 * k1)
        k3 = velocity(d + h / 2 * k2)
        k4 = velocity(d + h * k3)
        d = d + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    trained = f0_test + j_test @ d
    k_train, k_test = j_train @ j_train.T, j_test @ j_train.T
    predicted = gradient_descent_prediction(k_test, k_train, y, t, learning_rate=eta, f0_train=f0_train,
                                            f0_test=f0_test)
    torch.testing.assert_close(predicted, trained, rtol=1e-7, atol=1e-9)
    assert (trained - f0_test).abs().max() > 0.05  # it did move
    fitted = gradient_descent_prediction(k_train, k_train, y, t, learning_rate=eta, f0_train=f0_train,
                                         f0_test=f0_train)
    torch.testing.assert_close(fitted, f0_train + j_train @ d, rtol=1e-7, atol=1e-9)


def test_prediction_matches_a_wide_network_trained_with_small_steps():
    x, y, x_test = tiny_problem(1)
    model = KernelMLP([2, 512, 512, 1], "relu", bias_variance=0.1, seed=0).double()
    kernel = empirical_ntk(model, torch.cat([x, x_test]))
    with torch.no_grad():
        f0_train, f0_test = model(x), model(x_test)
    lr, steps = 0.04, 50  # lr * lambda_max = 0.7; (0.02, 100) changes the gap below by 2e-4
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        (0.5 * ((model(x) - y) ** 2).sum()).backward()
        optimizer.step()
    with torch.no_grad():
        trained = model(x_test)
    predicted = gradient_descent_prediction(kernel[10:, :10], kernel[:10, :10], y, lr * steps, f0_train=f0_train,
                                            f0_test=f0_test)
    moved = (trained - f0_test).norm()
    assert moved > 0.3
    # Measured: 0.054 of the distance moved at width 512 (0.11 at width 256: the kernel drifts less when wider).
    assert (predicted - trained).norm() < 0.1 * moved, ((predicted - trained).norm(), moved)


def test_prediction_limits():
    x, y, x_test = tiny_problem(2)
    kernels = infinite_width_kernels(torch.cat([x, x_test]), depth=2, bias_variance=0.1)
    k_train, k_test = kernels.ntk[:10, :10], kernels.ntk[10:, :10]
    torch.testing.assert_close(gradient_descent_prediction(k_train, k_train, y), y)  # t = inf interpolates
    ridge = torch.linalg.solve(k_train, y)
    torch.testing.assert_close(gradient_descent_prediction(k_test, k_train, y), k_test @ ridge)
    assert gradient_descent_prediction(k_test, k_train, y, 0.0).abs().max() == 0
    late = gradient_descent_prediction(k_test, k_train, y, 1e6)
    torch.testing.assert_close(late, k_test @ ridge, rtol=1e-6, atol=1e-8)
    # A singular kernel: finite t stays finite and t = inf picks the minimum-norm interpolant.
    features = torch.randn(10, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    singular = features @ features.T
    target = features @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64)
    torch.testing.assert_close(gradient_descent_prediction(singular, singular, target), target)
    assert torch.isfinite(gradient_descent_prediction(singular, singular, target, 5.0)).all()


def test_bad_arguments_raise_one_line_errors():
    x = torch.randn(4, 3)
    with pytest.raises(ConfigError, match="no closed-form kernel for activation 'tanh'"):
        infinite_width_kernels(x, activation="tanh")
    with pytest.raises(ConfigError, match="parameterization must be one of"):
        infinite_width_kernels(x, parameterization="mup")
    with pytest.raises(ShapeError, match="x1 has 3 features per sample but x2 has 2"):
        infinite_width_kernels(x, torch.randn(2, 2))
    with pytest.raises(ShapeError, match=r"k_test_train \(M, 4\)"):
        gradient_descent_prediction(torch.randn(2, 3), torch.eye(4), torch.randn(4))
    with pytest.raises(ConfigError, match="widths must list"):
        KernelMLP([4])
