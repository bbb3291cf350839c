"""Kernel analysis on kernels with known spectra."""

import math

import pytest
import torch

from oplearn.analysis.infinite_width import gradient_descent_prediction
from oplearn.analysis.kernels import (condition_number, effective_rank, eigendecomposition, eigenvalues,
                                      kernel_summary, kernel_target_alignment, relative_drift, residual_projection)
from oplearn.errors import DataError, ShapeError


def kernel_with(values, seed=0):
    """``V diag(values) V^T`` with a random orthogonal ``V`` (float64); returns the kernel and ``V``."""
    values = torch.as_tensor(values, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(len(values), len(values), generator=torch.Generator().manual_seed(seed),
                                       dtype=torch.float64))
    return q @ torch.diag(values) @ q.T, q


def test_spectrum_condition_number_and_effective_ranks():
    values = torch.tensor([0.5, 4.0, 1.0, 0.25, 2.0], dtype=torch.float64)
    kernel, q = kernel_with(values)
    torch.testing.assert_close(eigenvalues(kernel), values.sort(descending=True).values)
    found, vectors = eigendecomposition(kernel)
    torch.testing.assert_close(kernel @ vectors, vectors * found)  # columns are eigenvectors, in that order
    assert condition_number(kernel) == pytest.approx(16.0, rel=1e-12)
    p = values / values.sum()
    assert effective_rank(kernel) == pytest.approx(math.exp(-(p * p.log()).sum().item()), rel=1e-12)
    assert effective_rank(kernel, "participation") == pytest.approx((values.sum()**2 / (values**2).sum()).item())
    flat, _ = kernel_with([3.0, 3.0, 3.0, 0.0, 0.0, 0.0])  # k equal eigenvalues: both measures say k
    assert effective_rank(flat) == pytest.approx(3.0, rel=1e-9)
    assert effective_rank(flat, "participation") == pytest.approx(3.0, rel=1e-9)
    assert condition_number(flat) == math.inf
    # Ill-conditioned but not singular: finite; an exact zero is inf whatever sign rounding gives it.
    assert condition_number(kernel_with([1.0, 0.5, 1e-10])[0]) == pytest.approx(1e10, rel=1e-3)
    for seed in range(5):
        assert condition_number(kernel_with([3.0, 1.0, 0.5, 0.0], seed=seed)[0]) == math.inf
    assert effective_rank(torch.diag(torch.tensor([1.0, 1e-3, 1e-3]))) < effective_rank(torch.eye(3))


def test_kernel_target_alignment():
    y = torch.randn(6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert kernel_target_alignment(torch.outer(y, y) * 3.0, y) == pytest.approx(1.0, rel=1e-12)
    assert kernel_target_alignment(torch.eye(6), y) == pytest.approx(1 / math.sqrt(6), rel=1e-12)
    orthogonal = torch.eye(6, dtype=torch.float64) - torch.outer(y, y) / (y @ y)  # K y = 0
    assert abs(kernel_target_alignment(orthogonal, y)) < 1e-12
    # Multi-output targets (N, C, *grid) use Y Y^T with Y flattened per sample.
    targets = torch.randn(6, 2, 3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    flat = targets.reshape(6, -1)
    assert kernel_target_alignment(flat @ flat.T, targets) == pytest.approx(1.0, rel=1e-12)
    kernel, _ = kernel_with([5.0, 1.0, 0.5, 0.2, 0.1, 0.05])
    gram = flat @ flat.T
    expected = (kernel * gram).sum() / (kernel.norm() * gram.norm())
    assert kernel_target_alignment(kernel, targets) == pytest.approx(expected.item(), rel=1e-12)


def test_residual_projection_predicts_gradient_flow():
    values = torch.tensor([8.0, 2.0, 0.5, 0.1, 0.01], dtype=torch.float64)
    kernel, q = kernel_with(values, seed=3)
    # A residual on the third eigenvector only: all its energy in direction 2.
    only = residual_projection(kernel, 2.0 * q[:, 2])
    torch.testing.assert_close(only.energy_fraction, torch.tensor([0, 0, 1.0, 0, 0], dtype=torch.float64),
                               atol=1e-12, rtol=0)
    residual = torch.randn(5, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    projection = residual_projection(kernel, residual)
    assert projection.energy_fraction.sum().item() == pytest.approx(1.0, rel=1e-12)
    # Eigenvectors are defined up to sign.
    torch.testing.assert_close(projection.coefficients.abs(), (q.T @ residual).abs(), atol=1e-12, rtol=0)
    # ||r_t||^2 / ||r_0||^2 from the projection equals the residual of kernel gradient flow, exp(-eta K t) r_0.
    eta, t = 0.7, 0.9
    flowed = torch.linalg.matrix_exp(-eta * t * kernel) @ residual
    assert projection.remaining(t, eta) == pytest.approx((flowed.norm() / residual.norm()).item() ** 2, rel=1e-10)
    # ... and the training predictions of gradient_descent_prediction (f_0 = 0, y = -r_0 so r_0 = f_0 - y).
    fitted = gradient_descent_prediction(kernel, kernel, -residual, t, learning_rate=eta)
    torch.testing.assert_close(fitted + residual, flowed)
    assert projection.remaining(100.0) < 1.0 and projection.leading_fraction(5) == pytest.approx(1.0)


def test_summary_is_json_ready_and_drift_is_relative():
    kernel, _ = kernel_with([3.0, 1.0, 0.5, 0.0])
    summary = kernel_summary(kernel, targets=torch.ones(4), residual=torch.arange(4.0))
    assert summary["condition_number"] == math.inf and summary["n"] == 4 and len(summary["eigenvalues"]) == 4
    assert set(summary) >= {"effective_rank_entropy", "effective_rank_participation", "kernel_target_alignment",
                            "residual_energy_fraction"}
    assert relative_drift(2 * kernel, kernel) == pytest.approx(1.0)
    assert relative_drift(kernel, kernel) == 0.0


def test_bad_kernels_raise_one_line_errors():
    with pytest.raises(ShapeError, match=r"expected a square \(N, N\) kernel tensor, got \(3, 4\)"):
        eigenvalues(torch.zeros(3, 4))
    with pytest.raises(DataError, match="NaN or infinite"):
        eigenvalues(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(ShapeError, match=r"targets has shape \(5,\) but the kernel is \(4, 4\)"):
        kernel_target_alignment(torch.eye(4), torch.ones(5))
    with pytest.raises(DataError, match="residual is zero"):
        residual_projection(torch.eye(3), torch.zeros(3))
    with pytest.raises(ShapeError, match="measure must be"):
        effective_rank(torch.eye(3), "renyi")
    with pytest.raises(ShapeError, match="same probe inputs"):
        relative_drift(torch.eye(3), torch.eye(4))
