"""What a kernel matrix says about training: its spectrum, alignment with the targets, residual decay.

For a model whose tangent kernel ``K = V diag(lambda) V^T`` stays fixed, gradient
flow on ``0.5 * ||f(X) - y||^2`` with learning rate ``eta`` moves the training
residual as ``r_t = V exp(-eta lambda t) V^T r_0``: the component of ``r_0`` on
eigenvector ``v_i`` decays at rate ``eta * lambda_i``. Large-eigenvalue
directions are learned first; targets whose energy sits on small eigenvalues
are learned slowly (spectral bias). Everything here is computed in float64 on
a symmetric ``(N, N)`` kernel, e.g. ``empirical_ntk(model, x)`` with
``outputs="trace"``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from oplearn.errors import DataError, ShapeError
from oplearn.files import write_atomic


def _square(kernel: torch.Tensor) -> torch.Tensor:
    """The symmetric part of a finite ``(N, N)`` kernel in float64."""
    if not isinstance(kernel, torch.Tensor) or kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        shape = tuple(kernel.shape) if isinstance(kernel, torch.Tensor) else type(kernel).__name__
        raise ShapeError(f"expected a square (N, N) kernel tensor, got {shape}; use outputs='trace' for a kernel "
                         "between inputs")
    kernel = kernel.detach().double()
    if not torch.isfinite(kernel).all():
        raise DataError("the kernel contains NaN or infinite values; check the model and inputs (or use float64)")
    return 0.5 * (kernel + kernel.T)


def _rows(values: torch.Tensor, n: int, label: str) -> torch.Tensor:
    """``(N, *rest)`` -> ``(N, m)`` float64."""
    if values.ndim == 0 or values.shape[0] != n:
        raise ShapeError(f"{label} has shape {tuple(values.shape)} but the kernel is ({n}, {n}); the first axis "
                         "must index the same N samples")
    return values.detach().double().reshape(n, -1)


def eigendecomposition(kernel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(eigenvalues (N,) descending, eigenvectors (N, N) as columns)`` of the symmetrized kernel."""
    values, vectors = torch.linalg.eigh(_square(kernel))
    return values.flip(0), vectors.flip(1)


def eigenvalues(kernel: torch.Tensor) -> torch.Tensor:
    """``(N,)`` eigenvalues, descending."""
    return torch.linalg.eigvalsh(_square(kernel)).flip(0)


def condition_number(kernel: torch.Tensor) -> float:
    """``lambda_max / lambda_min``; ``inf`` when the kernel is singular to working precision, i.e.
    ``lambda_min <= N eps lambda_max`` (the rank tolerance of ``numpy.linalg.matrix_rank``: an exact zero
    eigenvalue comes out of LAPACK as +-1e-16 or so, with a sign that varies between builds)."""
    values = eigenvalues(kernel)
    tolerance = values.shape[0] * torch.finfo(values.dtype).eps * values[0].abs()
    return (values[0] / values[-1]).item() if values[-1] > tolerance else math.inf


def effective_rank(kernel: torch.Tensor, measure: str = "entropy") -> float:
    """How many eigen-directions carry the kernel's trace, a number in ``[1, N]``.

    With ``p_i = lambda_i / sum(lambda)`` (negative round-off eigenvalues set to 0):
    ``"entropy"``: ``exp(-sum p_i log p_i)`` (Roy & Vetterli 2007);
    ``"participation"``: ``(sum lambda)^2 / sum lambda^2``, the participation ratio.
    Both equal ``k`` for ``k`` equal eigenvalues and the rest 0; the participation
    ratio weighs the largest eigenvalues more.
    """
    values = eigenvalues(kernel).clamp_min(0.0)
    total = values.sum()
    if total <= 0:
        raise DataError("the kernel has no positive eigenvalue; its effective rank is undefined")
    if measure == "entropy":
        p = values / total
        p = p[p > 0]
        return torch.exp(-(p * p.log()).sum()).item()
    if measure == "participation":
        return (total**2 / (values**2).sum()).item()
    raise ShapeError(f"effective rank measure must be 'entropy' or 'participation', got '{measure}'")


def kernel_target_alignment(kernel: torch.Tensor, targets: torch.Tensor) -> float:
    """``<K, Y Y^T>_F / (||K||_F ||Y Y^T||_F)`` in ``[-1, 1]`` (Cristianini et al. 2002).

    ``targets (N, *rest)`` are flattened to ``Y (N, m)``; 1 means ``K`` is a
    multiple of ``Y Y^T``: all of the targets' energy lies on the kernel's
    leading directions.
    """
    kernel = _square(kernel)
    y = _rows(targets, kernel.shape[0], "targets")
    gram = y @ y.T
    denominator = torch.linalg.matrix_norm(kernel) * torch.linalg.matrix_norm(gram)
    if denominator == 0:
        raise DataError("kernel-target alignment is undefined for a zero kernel or all-zero targets")
    return ((kernel * gram).sum() / denominator).item()


@dataclass
class ResidualProjection:
    """A residual ``R (N, m)`` in the kernel's eigenbasis.

    ``eigenvalues (N,)`` descending; ``coefficients (N, m)``: ``V^T R``;
    ``energy_fraction (N,)``: ``||c_i||^2 / ||R||^2``, summing to 1.
    """

    eigenvalues: torch.Tensor
    coefficients: torch.Tensor
    energy_fraction: torch.Tensor

    def remaining(self, t: float, learning_rate: float = 1.0) -> float:
        """``||r_t||^2 / ||r_0||^2 = sum_i energy_i exp(-2 eta lambda_i t)`` under gradient flow with fixed ``K``."""
        decay = torch.exp(-2.0 * learning_rate * t * self.eigenvalues.clamp_min(0.0))
        return (self.energy_fraction * decay).sum().item()

    def leading_fraction(self, k: int) -> float:
        """Share of the residual energy on the ``k`` largest-eigenvalue directions."""
        return self.energy_fraction[:k].sum().item()


def residual_projection(kernel: torch.Tensor, residual: torch.Tensor) -> ResidualProjection:
    """Project ``residual (N, *rest)`` (e.g. ``f(X) - Y``) on the eigenvectors of ``kernel (N, N)``.

    For the trace kernel of a multi-output model the per-direction decay rates
    are exact when the full kernel is ``K (x) I`` (wide MLPs) and an
    approximation otherwise.
    """
    values, vectors = eigendecomposition(kernel)
    r = _rows(residual, values.shape[0], "residual")
    energy = (r**2).sum()
    if energy == 0:
        raise DataError("the residual is zero; there is nothing left to learn")
    coefficients = vectors.T @ r
    return ResidualProjection(values, coefficients, (coefficients**2).sum(1) / energy)


def relative_drift(kernel: torch.Tensor, reference: torch.Tensor) -> float:
    """``||K - K_ref||_F / ||K_ref||_F``: how far a tangent kernel moved from a reference."""
    kernel, reference = _square(kernel), _square(reference)
    if kernel.shape != reference.shape:
        raise ShapeError(f"kernels of shapes {tuple(kernel.shape)} and {tuple(reference.shape)} cannot be compared; "
                         "compute both on the same probe inputs")
    return (torch.linalg.matrix_norm(kernel - reference) / torch.linalg.matrix_norm(reference)).item()


def kernel_summary(kernel: torch.Tensor, targets: torch.Tensor | None = None,
                   residual: torch.Tensor | None = None) -> dict:
    """JSON-ready summary: eigenvalues, condition number, effective ranks and, when given, the
    kernel-target alignment and the residual's energy fraction per eigen-direction."""
    values = eigenvalues(kernel)
    summary = {
        "n": int(values.shape[0]),
        "eigenvalues": values.tolist(),
        "condition_number": condition_number(kernel),
        "effective_rank_entropy": effective_rank(kernel, "entropy"),
        "effective_rank_participation": effective_rank(kernel, "participation"),
        "trace": values.sum().item(),
    }
    if targets is not None:
        summary["kernel_target_alignment"] = kernel_target_alignment(kernel, targets)
    if residual is not None:
        projection = residual_projection(kernel, residual)
        summary["residual_energy_fraction"] = projection.energy_fraction.tolist()
        summary["residual_energy_top10"] = projection.leading_fraction(10)
    return summary


def write_json(data: dict, path: str | Path) -> Path:
    """Write ``data`` as JSON atomically (beside, fsync, rename); non-finite numbers become strings."""
    return write_atomic(path, json.dumps(_stringify(data), indent=2, default=str, allow_nan=False))


def _stringify(data):
    if isinstance(data, dict):
        return {key: _stringify(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_stringify(value) for value in data]
    if isinstance(data, float) and not math.isfinite(data):
        return str(data)  # "inf", "nan": valid JSON, unlike Infinity
    return data
