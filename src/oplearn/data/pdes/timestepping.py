"""Explicit time stepping for method-of-lines PDE solvers.

Two families, both on torch tensors of any shape (so they run on any device):

* Explicit Runge-Kutta methods for u' = f(t, u). A method is data, its
  Butcher tableau (a, b, c); one generic step serves every method:

      k_i = f(t + c_i h, u + h sum_{j<i} a_ij k_j),   u_next = u + h sum_i b_i k_i.

* ETDRK4 (Cox & Matthews 2002) for u' = L u + N(u) with L diagonal (a
  Fourier multiplier): the linear part is integrated exactly, the nonlinear
  part by a fourth-order exponential Runge-Kutta scheme. Its phi-function
  coefficients are computed by the contour-integral mean of Kassam &
  Trefethen (2005), which stays accurate where the closed forms cancel
  catastrophically (h L near 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from oplearn.errors import ConfigError, ShapeError

CONTOUR_POINTS = 64  # points on the circle |z' - z| = 1 of the Kassam-Trefethen mean


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge-Kutta method: stage matrix ``a`` (strictly lower triangular,
    row i has i entries), weights ``b``, nodes ``c``, and its classical ``order``."""

    name: str
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    order: int

    def __post_init__(self) -> None:
        stages = len(self.b)
        if len(self.c) != stages or len(self.a) != stages or any(len(row) != i for i, row in enumerate(self.a)):
            raise ConfigError(f"Butcher tableau {self.name!r} needs a with rows of length 0..s-1, b and c of length s")
        if not math.isclose(sum(self.b), 1.0, abs_tol=1e-12):
            raise ConfigError(f"Butcher tableau {self.name!r} weights b must sum to 1, got {sum(self.b)}")
        if any(not math.isclose(sum(row), ci, abs_tol=1e-12) for row, ci in zip(self.a, self.c)):
            raise ConfigError(f"Butcher tableau {self.name!r} nodes c must equal the row sums of a")


FORWARD_EULER = ButcherTableau("forward_euler", a=((),), b=(1.0,), c=(0.0,), order=1)
HEUN = ButcherTableau("heun", a=((), (1.0,)), b=(0.5, 0.5), c=(0.0, 1.0), order=2)
SSP_RK3 = ButcherTableau(  # Shu-Osher strong-stability-preserving RK3
    "ssp_rk3", a=((), (1.0,), (0.25, 0.25)), b=(1 / 6, 1 / 6, 2 / 3), c=(0.0, 1.0, 0.5), order=3
)
RK4 = ButcherTableau(  # the classical fourth-order method
    "rk4", a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), b=(1 / 6, 1 / 3, 1 / 3, 1 / 6), c=(0.0, 0.5, 0.5, 1.0),
    order=4,
)
TABLEAUX = {tableau.name: tableau for tableau in (FORWARD_EULER, HEUN, SSP_RK3, RK4)}


def runge_kutta_step(
    f: Callable[[float, torch.Tensor], torch.Tensor], u: torch.Tensor, t: float, dt: float, tableau: ButcherTableau
) -> torch.Tensor:
    """One step of the explicit Runge-Kutta method ``tableau`` for u' = f(t, u).

    ``u`` is a tensor of any shape (real or complex); ``f(t, u)`` returns the same
    shape. Returns u(t + dt) to O(dt^(order + 1)) locally.
    """
    slopes: list[torch.Tensor] = []
    for row, node in zip(tableau.a, tableau.c):
        stage = u
        for weight, slope in zip(row, slopes):
            if weight != 0.0:
                stage = stage + (dt * weight) * slope
        slopes.append(f(t + node * dt, stage))
    update = sum((dt * weight) * slope for weight, slope in zip(tableau.b, slopes) if weight != 0.0)
    return u + update


def uniform_spacing(times: torch.Tensor) -> float:
    """The common spacing of ``times`` (T,); ShapeError unless they increase evenly from times[0]."""
    if times.ndim != 1 or len(times) < 1:
        raise ShapeError(f"times must be a 1-D sequence with at least one entry, got shape {tuple(times.shape)}")
    if len(times) == 1:
        return 0.0
    gaps = torch.diff(times)
    interval = float(gaps.mean())
    if interval <= 0 or not torch.allclose(gaps, torch.full_like(gaps, interval), rtol=1e-9, atol=0.0):
        raise ShapeError("times must be evenly spaced and increasing, e.g. numpy.linspace(0, T, n + 1)")
    return interval


def steps_per_interval(interval: float, max_step: float | torch.Tensor) -> torch.Tensor:
    """Fewest equal steps, each at most ``max_step``, that cover ``interval``: ceil(interval / max_step) >= 1.

    ``max_step`` may be a tensor (one bound per sample; inf means one step).
    Returns int64 of ``max_step``'s shape; the step actually taken is interval / count,
    so snapshots land exactly on the interval ends.
    """
    max_step = torch.as_tensor(max_step, dtype=torch.float64)
    # The factor forgives rounding: interval / (interval / n) must count as n steps, not n + 1.
    counts = torch.ceil(interval / max_step * (1 - 1e-12))
    return counts.clamp(min=1).to(torch.int64)


@dataclass(frozen=True)
class ETDRK4Coefficients:
    """Coefficients of one ETDRK4 step of size h for u' = L u + N(u), L diagonal.

    With z = h L (elementwise) and the means taken over the circle of radius 1
    about each z (Kassam & Trefethen):

        full_decay = e^z,   half_decay = e^(z/2),   half_weight = h (e^(z/2) - 1) / z,
        weight_1 = h (-4 - z + e^z (4 - 3z + z^2)) / z^3,
        weight_2 = h (2 + z + e^z (z - 2)) / z^3,
        weight_3 = h (-4 - 3z - z^2 + e^z (4 - z)) / z^3.

    All have the shape of h L; they are real (float64) when L and h are real,
    complex128 otherwise.
    """

    full_decay: torch.Tensor
    half_decay: torch.Tensor
    half_weight: torch.Tensor
    weight_1: torch.Tensor
    weight_2: torch.Tensor
    weight_3: torch.Tensor


def etdrk4_coefficients(linear: torch.Tensor, step: float | torch.Tensor) -> ETDRK4Coefficients:
    """ETDRK4 coefficients for the diagonal operator ``linear`` and step ``step``.

    ``step`` is a number or a tensor broadcastable against ``linear`` (one step per
    sample, e.g. shape (B, 1) against (M,)). Computed in complex128 on ``linear``'s device.
    """
    real = not linear.is_complex() and not (torch.is_tensor(step) and step.is_complex())
    step = torch.as_tensor(step, dtype=torch.complex128, device=linear.device)
    z = step * linear.to(torch.complex128)
    # Equispaced points z + e^(i theta) on the whole circle, none on the real axis.
    angles = 2 * math.pi * (torch.arange(CONTOUR_POINTS, dtype=torch.float64) + 0.5) / CONTOUR_POINTS
    sums = [torch.zeros_like(z) for _ in range(4)]
    for root in torch.polar(torch.ones_like(angles), angles).tolist():
        w = z + root
        exp_w = torch.exp(w)
        cube = w**3
        sums[0] += (torch.exp(w / 2) - 1) / w
        sums[1] += (-4 - w + exp_w * (4 - 3 * w + w**2)) / cube
        sums[2] += (2 + w + exp_w * (w - 2)) / cube
        sums[3] += (-4 - 3 * w - w**2 + exp_w * (4 - w)) / cube
    means = [step * total / CONTOUR_POINTS for total in sums]
    values = [torch.exp(z), torch.exp(z / 2), *means]
    if real:
        values = [value.real for value in values]
    return ETDRK4Coefficients(*values)


def etdrk4_step(
    nonlinear: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor, coefficients: ETDRK4Coefficients
) -> torch.Tensor:
    """One ETDRK4 step (Cox-Matthews) of v' = L v + N(v); ``coefficients`` fix L and h.

    a = e^(z/2) v + Q N(v),  b = e^(z/2) v + Q N(a),  c = e^(z/2) a + Q (2 N(b) - N(v)),
    v_next = e^z v + w1 N(v) + 2 w2 (N(a) + N(b)) + w3 N(c),   Q = half_weight, w_i = weight_i.
    Fourth order in h, and exact when N = 0.
    """
    k = coefficients
    n_v = nonlinear(v)
    a = k.half_decay * v + k.half_weight * n_v
    n_a = nonlinear(a)
    b = k.half_decay * v + k.half_weight * n_a
    n_b = nonlinear(b)
    c = k.half_decay * a + k.half_weight * (2 * n_b - n_v)
    n_c = nonlinear(c)
    return k.full_decay * v + k.weight_1 * n_v + 2 * k.weight_2 * (n_a + n_b) + k.weight_3 * n_c
