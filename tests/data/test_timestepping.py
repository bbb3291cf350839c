"""Tests of the Butcher-tableau Runge-Kutta step and of ETDRK4 against closed-form answers."""

import math

import numpy as np
import pytest
import torch

from oplearn.data.pdes.timestepping import (
    FORWARD_EULER,
    HEUN,
    RK4,
    SSP_RK3,
    TABLEAUX,
    ButcherTableau,
    etdrk4_coefficients,
    etdrk4_step,
    runge_kutta_step,
    steps_per_interval,
)
from oplearn.errors import ConfigError


def fitted_order(steps, errors) -> float:
    """Slope of log(error) against log(step), least squares."""
    return float(np.polyfit(np.log(steps), np.log(errors), 1)[0])


def test_tableaux_satisfy_the_order_conditions_of_their_order():
    # Butcher's conditions up to order 4 (c = row sums of a, checked at construction).
    def conditions(t: ButcherTableau) -> list[tuple[int, float, float]]:
        a = np.zeros((len(t.b), len(t.b)))
        for i, row in enumerate(t.a):
            a[i, : len(row)] = row
        b, c = np.array(t.b), np.array(t.c)
        return [
            (1, b.sum(), 1.0),
            (2, b @ c, 1 / 2),
            (3, b @ c**2, 1 / 3), (3, b @ a @ c, 1 / 6),
            (4, b @ c**3, 1 / 4), (4, b @ (c * (a @ c)), 1 / 8), (4, b @ a @ c**2, 1 / 12), (4, b @ a @ a @ c, 1 / 24),
        ]

    for tableau in TABLEAUX.values():
        for order, value, target in conditions(tableau):
            if order <= tableau.order:
                assert value == pytest.approx(target, abs=1e-14), (tableau.name, order)
        if tableau.order < 4:  # ... and fails one of the next order, so `order` is not an understatement
            assert any(abs(v - t) > 1e-3 for o, v, t in conditions(tableau) if o == tableau.order + 1)


def test_inconsistent_tableau_is_rejected():
    with pytest.raises(ConfigError, match="row sums"):
        ButcherTableau("bad", a=((), (0.5,)), b=(0.5, 0.5), c=(0.0, 1.0), order=2)
    with pytest.raises(ConfigError, match="sum to 1"):
        ButcherTableau("bad", a=((), (1.0,)), b=(0.5, 0.6), c=(0.0, 1.0), order=2)


@pytest.mark.parametrize("tableau", [FORWARD_EULER, HEUN, SSP_RK3, RK4], ids=lambda t: t.name)
def test_step_on_linear_equation_is_the_truncated_exponential(tableau):
    # For u' = lambda u these s-stage methods of order s give R(z) = sum_{j<=s} z^j / j!, z = dt lambda.
    lam = torch.tensor([-3.0 + 2.0j, 0.5j, -0.25], dtype=torch.complex128)
    u, dt = torch.tensor([1.0 + 0.5j, -2.0, 0.25j], dtype=torch.complex128), 0.3
    stepped = runge_kutta_step(lambda t, v: lam * v, u, 0.0, dt, tableau)
    z = dt * lam
    amplification = sum(z**j / math.factorial(j) for j in range(tableau.order + 1))
    torch.testing.assert_close(stepped, amplification * u, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("tableau", [FORWARD_EULER, HEUN, SSP_RK3, RK4], ids=lambda t: t.name)
def test_measured_order_on_a_nonlinear_time_dependent_equation(tableau):
    # Logistic growth at rate t: u' = t u (1 - u), u(0) = 1/5, so u(t) = 1 / (1 + 4 e^(-t^2 / 2)).
    # Time enters f, so the nodes c are tested as well as the stage matrix a.
    exact, steps = 1 / (1 + 4 * math.exp(-2.0)), [0.1, 0.05, 0.025]
    errors = []
    for dt in steps:
        u = torch.tensor([0.2], dtype=torch.float64)
        for n in range(round(2.0 / dt)):
            u = runge_kutta_step(lambda t, v: t * v * (1 - v), u, n * dt, dt, tableau)
        errors.append(abs(u.item() - exact))
    assert fitted_order(steps, errors) == pytest.approx(tableau.order, abs=0.2), errors


def test_steps_per_interval_rounds_up_and_forgives_rounding():
    assert int(steps_per_interval(1.0, 0.1)) == 10  # 1 / 0.1 is 10 up to rounding
    assert int(steps_per_interval(0.3, 0.1)) == 3
    assert int(steps_per_interval(1.0, 0.3)) == 4
    assert int(steps_per_interval(1.0, math.inf)) == 1
    counts = steps_per_interval(0.5, torch.tensor([0.5, 0.2, 1e-3, 7.0], dtype=torch.float64))
    assert counts.tolist() == [1, 3, 500, 1]


def phi_weights(z: complex, terms: int = 80) -> tuple[complex, complex, complex, complex]:
    """(Q, w1, w2, w3) / h from the Taylor series phi_k(z) = sum_n z^n / (n + k)!, independently of the contour."""
    def phi(k: int, w: complex) -> complex:
        return sum(w**n / math.factorial(n + k) for n in range(terms))

    p1, p2, p3 = phi(1, z), phi(2, z), phi(3, z)
    return phi(1, z / 2) / 2, p1 - 3 * p2 + 4 * p3, p2 - 2 * p3, -p2 + 4 * p3


def test_etdrk4_coefficients_match_phi_series_and_closed_forms():
    step = 0.5
    small = [0.0, 1e-9, -1e-4, -0.5, -1.0, -3.0 + 1.0j, 2.0j, 1.0 - 1.0j, -8.0]
    coefficients = etdrk4_coefficients(torch.tensor(small, dtype=torch.complex128) / step, step)
    for i, z in enumerate(small):
        expected = phi_weights(complex(z))
        got = [getattr(coefficients, name)[i] for name in ("half_weight", "weight_1", "weight_2", "weight_3")]
        for value, target in zip(got, expected):
            assert complex(value) / step == pytest.approx(target, rel=1e-11, abs=1e-13), z
    # Large |z|: the closed forms are accurate there, and e^z underflows for stiff modes.
    large = torch.tensor([-40.0, -1e4, -1e6], dtype=torch.float64)
    coefficients = etdrk4_coefficients(large, 1.0)
    assert coefficients.weight_1.dtype == torch.float64  # real operator, real coefficients
    z, e = large, torch.exp(large)
    torch.testing.assert_close(coefficients.half_weight, (torch.exp(z / 2) - 1) / z, rtol=1e-12, atol=0)
    torch.testing.assert_close(coefficients.weight_1, (-4 - z + e * (4 - 3 * z + z**2)) / z**3, rtol=1e-12, atol=0)
    torch.testing.assert_close(coefficients.weight_2, (2 + z + e * (z - 2)) / z**3, rtol=1e-12, atol=0)
    torch.testing.assert_close(coefficients.weight_3, (-4 - 3 * z - z**2 + e * (4 - z)) / z**3, rtol=1e-12, atol=0)


def test_etdrk4_is_exact_for_a_linear_problem():
    linear = torch.tensor([0.0, -1.0, -50.0, 3.0j], dtype=torch.complex128)
    v = torch.tensor([1.0, 2.0, -1.0, 0.5 + 0.5j], dtype=torch.complex128)
    stepped = etdrk4_step(torch.zeros_like, v, etdrk4_coefficients(linear, 0.7))
    torch.testing.assert_close(stepped, torch.exp(0.7 * linear) * v, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("linear, final", [(0.0, 1.0), (-1.0, 1.0), (-30.0, 0.2)])  # the last is stiff: h L down to -3
def test_etdrk4_fourth_order_on_bernoulli_equation(linear, final):
    # u' = L u + u^2: w = 1/u solves w' = -L w - 1, so w(t) = -1/L + (w0 + 1/L) e^(-L t) (w0 - t if L = 0).
    u0 = 0.5
    w = (1 / u0 - final) if linear == 0 else (-1 / linear + (1 / u0 + 1 / linear) * math.exp(-linear * final))
    exact, steps = 1 / w, [0.1, 0.05, 0.025]
    errors = []
    for dt in steps:
        coefficients = etdrk4_coefficients(torch.tensor([linear], dtype=torch.float64), dt)
        u = torch.tensor([u0], dtype=torch.float64)
        for _ in range(round(final / dt)):
            u = etdrk4_step(lambda v: v**2, u, coefficients)
        errors.append(abs(u.item() / exact - 1))
    assert fitted_order(steps, errors) == pytest.approx(4.0, abs=0.5), errors
    assert errors[-1] < 1e-4  # measured 5e-9, 1.4e-9, 2.9e-5
