"""Infinite-width kernels of fully connected networks and the gradient-descent predictions they imply.

The network: ``L`` hidden layers of width ``n -> infinity`` with activation
``phi`` and a linear readout,

    h^1 = A(x),  h^{l+1} = A(phi(h^l)),  f(x) = h^{L+1},

where each affine map ``A`` has fan-in ``n_l`` (``n_0 = d``, the input size)
and one of two parameterizations, ``omega, beta ~ N(0, 1)``:

* ``"ntk"``:      ``A(z) = sqrt(sw2 / n_l) omega z + sqrt(sb2) beta``
  (Jacot et al. 2018; the variances are multipliers in the forward pass);
* ``"standard"``: ``A(z) = W z / sqrt(n_l) + b`` with ``W ~ N(0, sw2)``,
  ``b ~ N(0, sb2)`` (the variances are in the initialization). This is the
  standard parameterization trained with a learning rate ``eta / n_l`` on the
  weights of a layer of fan-in ``n_l``, the scaling under which its tangent
  kernel has a finite limit (Sohl-Dickstein et al. 2020).

Writing ``Sigma^l`` for the covariance of ``h^l`` (the NNGP kernel) and, for
``(u, v) ~ N(0, [[Sigma^l(x,x), Sigma^l(x,x')], [., Sigma^l(x',x')]])``,
``E^l = E[phi(u) phi(v)]``, ``Edot^l = E[phi'(u) phi'(v)]``:

    Sigma^1 = sw2 x.x'/d + sb2,              Sigma^{l+1} = sw2 E^l + sb2
    Theta^1 = Sigma^1 (ntk) | x.x'/d + 1 (standard)
    Theta^{l+1} = Sigma^{l+1} (ntk) | E^l + 1 (standard)  +  sw2 Edot^l Theta^l

and the network's NNGP and NTK are ``Sigma^{L+1}`` and ``Theta^{L+1}``. The
two expectations have closed forms for ReLU (arc-cosine kernels of degree 1
and 0, Cho & Saul 2009) and erf (Williams 1997); an :class:`Activation` is
data (its function and these two moments), so another activation with known
moments plugs into the same recursion.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from oplearn.errors import ConfigError, ShapeError

PARAMETERIZATIONS = ("ntk", "standard")


@dataclass(frozen=True)
class Activation:
    """An activation and its Gaussian pair moments.

    ``moments(s11, s22, s12)`` -> ``(E[phi(u) phi(v)], E[phi'(u) phi'(v)])`` for
    centred Gaussians with variances ``s11, s22`` and covariance ``s12``
    (tensors of one broadcast shape).
    """

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    moments: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _relu_moments(s11, s22, s12):
    # With cos(theta) the correlation: E[relu relu] = sqrt(s11 s22) (sin t + (pi - t) cos t) / (2 pi),
    # E[step step] = (pi - t) / (2 pi).
    scale = torch.sqrt(s11 * s22)
    cosine = (s12 / scale.clamp_min(torch.finfo(scale.dtype).tiny)).clamp(-1.0, 1.0)
    theta = torch.arccos(cosine)
    sine = torch.sqrt((1.0 - cosine**2).clamp_min(0.0))
    value = scale * (sine + (math.pi - theta) * cosine) / (2 * math.pi)
    return value, (math.pi - theta) / (2 * math.pi)


def _erf_moments(s11, s22, s12):
    # E[erf(u) erf(v)] = (2/pi) asin(2 s12 / sqrt((1 + 2 s11)(1 + 2 s22)));
    # erf'(u) = 2/sqrt(pi) exp(-u^2), and E[exp(-u^2 - v^2)] = det(I + 2 S)^(-1/2).
    product = (1.0 + 2.0 * s11) * (1.0 + 2.0 * s22)
    value = (2 / math.pi) * torch.arcsin((2.0 * s12 / torch.sqrt(product)).clamp(-1.0, 1.0))
    return value, (4 / math.pi) / torch.sqrt(product - 4.0 * s12**2)


ACTIVATIONS = {
    "relu": Activation("relu", torch.relu, _relu_moments),
    "erf": Activation("erf", torch.erf, _erf_moments),
}


def get_activation(activation: str | Activation) -> Activation:
    if isinstance(activation, Activation):
        return activation
    if activation not in ACTIVATIONS:
        raise ConfigError(f"no closed-form kernel for activation '{activation}'; choose one of "
                          f"{', '.join(ACTIVATIONS)} or pass an Activation with its moments")
    return ACTIVATIONS[activation]


def _check(parameterization: str, depth: int, weight_variance: float, bias_variance: float) -> None:
    if parameterization not in PARAMETERIZATIONS:
        raise ConfigError(f"parameterization must be one of {', '.join(PARAMETERIZATIONS)}, "
                          f"got '{parameterization}'")
    if depth < 0:
        raise ConfigError(f"depth is the number of hidden layers and must be >= 0, got {depth}")
    if weight_variance <= 0 or bias_variance < 0:
        raise ConfigError(f"need weight_variance > 0 and bias_variance >= 0, got {weight_variance} and "
                          f"{bias_variance}")


class InfiniteWidthKernels(NamedTuple):
    """``nngp``: output covariance at initialization; ``ntk``: tangent kernel; both ``(N1, N2)``."""

    nngp: torch.Tensor
    ntk: torch.Tensor


def infinite_width_kernels(x1: torch.Tensor, x2: torch.Tensor | None = None, *, depth: int = 2,
                           activation: str | Activation = "relu", weight_variance: float = 2.0,
                           bias_variance: float = 0.0, parameterization: str = "ntk") -> InfiniteWidthKernels:
    """NNGP and NTK of an infinitely wide fully connected network (see the module docstring).

    ``x1 (N1, *D)``, ``x2 (N2, *D)`` (default ``x1``), flattened to ``d = prod(D)``
    features; ``depth`` hidden layers; computed in float64. Per output
    channel: the kernel of a network with ``O`` outputs is this one times ``I_O``.
    """
    _check(parameterization, depth, weight_variance, bias_variance)
    phi = get_activation(activation)
    a = x1.reshape(len(x1), -1).double()
    b = a if x2 is None else x2.reshape(len(x2), -1).double()
    if a.shape[1] != b.shape[1]:
        raise ShapeError(f"x1 has {a.shape[1]} features per sample but x2 has {b.shape[1]}; pass inputs of one "
                         "shape")
    d = a.shape[1]
    # Gram of the layer input, divided by its fan-in: the (diag1, diag2, cross) of the "E" term.
    gram = ((a * a).sum(1) / d, (b * b).sum(1) / d, a @ b.T / d)
    sigma = tuple(weight_variance * g + bias_variance for g in gram)
    theta = sigma[2] if parameterization == "ntk" else gram[2] + 1.0
    for _ in range(depth):
        diag1, diag2, cross = sigma
        e1, _ = phi.moments(diag1, diag1, diag1)
        e2, _ = phi.moments(diag2, diag2, diag2)
        e12, edot = phi.moments(diag1[:, None], diag2[None, :], cross)
        gram = (e1, e2, e12)
        sigma = tuple(weight_variance * g + bias_variance for g in gram)
        direct = sigma[2] if parameterization == "ntk" else e12 + 1.0
        theta = direct + weight_variance * edot * theta
    return InfiniteWidthKernels(sigma[2], theta)


class _Affine(nn.Module):
    """``y = w_mult * W z + b_mult * b`` with the initialization of ``parameterization``."""

    def __init__(self, fan_in: int, fan_out: int, weight_variance: float, bias_variance: float,
                 parameterization: str, generator: torch.Generator | None):
        super().__init__()
        weight = torch.randn(fan_out, fan_in, generator=generator)
        bias = torch.randn(fan_out, generator=generator)
        if parameterization == "ntk":
            self.weight_scale, self.bias_scale = math.sqrt(weight_variance / fan_in), math.sqrt(bias_variance)
        else:
            weight, bias = weight * math.sqrt(weight_variance), bias * math.sqrt(bias_variance)
            self.weight_scale, self.bias_scale = 1.0 / math.sqrt(fan_in), 1.0
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.weight_scale * (z @ self.weight.T) + self.bias_scale * self.bias


class KernelMLP(nn.Module):
    """Fully connected network ``widths[0] -> ... -> widths[-1]`` in the parameterization of the module docstring.

    Input ``(N, widths[0])``, output ``(N, widths[-1])``. Its empirical NTK tends
    to :func:`infinite_width_kernels` (times ``I``) as the hidden widths grow.
    """

    def __init__(self, widths: Sequence[int], activation: str | Activation = "relu", *,
                 weight_variance: float = 2.0, bias_variance: float = 0.0, parameterization: str = "ntk",
                 seed: int | None = None):
        super().__init__()
        if len(widths) < 2 or any(int(w) < 1 for w in widths):
            raise ConfigError(f"widths must list at least an input and an output size, all >= 1, got {list(widths)}")
        _check(parameterization, len(widths) - 2, weight_variance, bias_variance)
        self.activation = get_activation(activation)
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        self.layers = nn.ModuleList(_Affine(i, o, weight_variance, bias_variance, parameterization, generator)
                                    for i, o in zip(widths[:-1], widths[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = self.activation.fn(layer(x))
        return self.layers[-1](x)


def gradient_descent_prediction(k_test_train: torch.Tensor, k_train_train: torch.Tensor, y_train: torch.Tensor,
                                t: float = math.inf, *, learning_rate: float = 1.0,
                                f0_train: torch.Tensor | None = None, f0_test: torch.Tensor | None = None,
                                rcond: float | None = None) -> torch.Tensor:
    """Prediction at time ``t`` of gradient flow on MSE for a model whose tangent kernel stays ``K``.

    Convention: loss ``0.5 * sum_i ||f(x_i) - y_i||^2``, flow ``dtheta/dt = -eta grad``
    (``eta = learning_rate``; discrete steps of size ``alpha`` reach ``eta t = alpha * steps``).
    Then ``f_t(X) = y + exp(-eta K t)(f_0(X) - y)`` and

        f_t(x) = f_0(x) + K(x, X) K^{-1} (I - exp(-eta K t)) (y - f_0(X)),

    with ``f_0 = 0`` by default (the mean over initializations of a wide network).
    ``K^{-1}(I - exp(-eta K t))`` is taken through ``eigh(K)`` as
    ``(1 - exp(-eta lambda t)) / lambda``, which tends to ``eta t`` as ``lambda -> 0``;
    at ``t = inf`` eigenvalues below ``rcond * lambda_max`` (default ``N * eps``)
    are dropped: the minimum-norm interpolant, which is also the flow's limit.

    ``k_test_train (M, N)``, ``k_train_train (N, N)``, ``y_train (N,)`` or ``(N, O)``
    (kernels per output channel); returns ``(M,)`` or ``(M, O)`` in float64.
    """
    if k_train_train.ndim != 2 or k_train_train.shape[0] != k_train_train.shape[1]:
        raise ShapeError(f"k_train_train must be a square (N, N) kernel, got {tuple(k_train_train.shape)}")
    n = k_train_train.shape[0]
    if k_test_train.ndim != 2 or k_test_train.shape[1] != n or y_train.shape[0] != n:
        raise ShapeError(f"expected k_test_train (M, {n}) and y_train ({n}, ...) for a ({n}, {n}) training kernel, "
                         f"got {tuple(k_test_train.shape)} and {tuple(y_train.shape)}")
    if t < 0 or learning_rate <= 0:
        raise ConfigError(f"need t >= 0 and learning_rate > 0, got t={t}, learning_rate={learning_rate}")
    k_train = k_train_train.double()
    eigenvalues, vectors = torch.linalg.eigh(0.5 * (k_train + k_train.T))
    if math.isinf(t):
        cutoff = (n * torch.finfo(torch.float64).eps if rcond is None else rcond) * eigenvalues.abs().max()
        gain = torch.where(eigenvalues > cutoff, 1.0 / eigenvalues.clamp_min(cutoff.clamp_min(1e-300)), 0.0)
    else:
        x = learning_rate * t * eigenvalues
        small = x.abs() < 1e-8
        # (1 - exp(-x)) / lambda = eta t * (-expm1(-x) / x), continuous through x = 0.
        ratio = torch.where(small, 1.0 - x / 2, -torch.expm1(-x) / torch.where(small, 1.0, x))
        gain = learning_rate * t * ratio
    y = y_train.double()
    target = y if f0_train is None else y - f0_train.double()
    shape = target.shape
    target = target.reshape(n, -1)
    weights = vectors @ (gain[:, None] * (vectors.T @ target))
    prediction = (k_test_train.double() @ weights).reshape(k_test_train.shape[0], *shape[1:])
    return prediction if f0_test is None else prediction + f0_test.double()
