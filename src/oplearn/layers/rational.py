"""Group-rational activation (GR-KAN of Kolmogorov-Arnold Transformers, Yang & Wang 2024).

Channels are split into ``groups`` equal groups; every channel of group ``g``
goes through the same safe Pade-type rational function

    R_g(x) = P_g(x) / (1 + |Q_g(x)|),   P_g(x) = sum_{j=0}^{m} a_gj x^j,   Q_g(x) = sum_{j=1}^{m-1} b_gj x^j,

so the denominator is at least 1 and the function has no poles. In KANLinear
the rational is the (one-function) basis and a dense linear map follows.

The backward pass is a custom autograd function. Per element it needs

    dR/dx = P'/D - sign(Q) P Q'/D^2,   dR/da_j = x^j/D,   dR/db_j = -sign(Q) P x^j/D^2,   D = 1 + |Q|,

and the coefficient gradients are sums of these over the batch and over the
channels of each group. Instead of accumulating every element into a handful
of coefficients (the atomic-add bottleneck FlashKAT measured), rows are
processed in blocks and each block is reduced with one batched contraction
``(2, rows*channels) x (rows*channels, m+1)`` per group; only ``x`` is saved for
backward (P and Q are recomputed). On CUDA with Triton installed a fused
kernel (``rational_triton``) does the same reduction per program block.
"""

from __future__ import annotations

import functools

import torch

ROW_BLOCK_ELEMENTS = 1 << 20  # elements of x per backward block: bounds the temporaries


@functools.lru_cache(maxsize=8)
def silu_fit(order: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Coefficients ``(a_0..a_m, b_1..b_{m-1})`` of a rational close to SiLU on [-4, 4].

    Linearised least squares ``P(x) - y Q(x) = y`` (the fit has ``Q >= 0`` there,
    so ``|Q| = Q``); for order 5 the maximum error on [-4, 4] is below 1e-5.
    """
    x = torch.linspace(-4, 4, 801, dtype=torch.float64)
    y = torch.nn.functional.silu(x)
    powers = x[:, None] ** torch.arange(order + 1, dtype=torch.float64)
    design = torch.cat([powers, -y[:, None] * powers[:, 1:order]], dim=1)
    solution = torch.linalg.lstsq(design, y[:, None], driver="gelsd").solution[:, 0]
    return tuple(solution[: order + 1].tolist()), tuple(solution[order + 1:].tolist())


def rational_reference(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """The plain differentiable formula (the reference for tests).

    ``x (..., C)``, ``numerator (g, m+1)``, ``denominator (g, m-1)`` -> ``(..., C)``.
    """
    groups = numerator.shape[0]
    xg = x.unflatten(-1, (groups, -1))
    powers = torch.stack([xg**j for j in range(numerator.shape[1])], dim=-1)  # (..., g, s, m+1)
    p = (powers * numerator[:, None, :]).sum(-1)
    q = (powers[..., 1:denominator.shape[1] + 1] * denominator[:, None, :]).sum(-1)
    return (p / (1 + q.abs())).flatten(-2)


def _horner(xg: torch.Tensor, coefficients: torch.Tensor, lowest: int, with_slope: bool = False):
    """Value (and derivative) of ``sum_j c_j x^(j+lowest)`` for ``lowest`` 0 or 1.

    ``xg (rows, g, s)``, ``coefficients (g, n)``; one fused multiply-add per degree and output.
    """
    c = coefficients[:, None, :].to(xg.dtype)  # (g, 1, n)
    n = coefficients.shape[1]
    value = torch.zeros_like(xg) if n == 0 else c[..., n - 1].expand_as(xg)
    slope = torch.zeros_like(xg) if with_slope else None
    for j in range(n - 2, -1, -1):
        if with_slope:
            slope = torch.addcmul(value, slope, xg)
        value = torch.addcmul(c[..., j], value, xg)
    if lowest == 1:  # x S(x): derivative S + x S'
        if with_slope:
            slope = torch.addcmul(value, xg, slope)
        value = value * xg
    return value, slope


class GroupRationalFunction(torch.autograd.Function):
    """``R_g(x)`` per group with the blocked coefficient-gradient reduction described above."""

    @staticmethod
    def forward(ctx, x, numerator, denominator):
        groups = numerator.shape[0]
        xg = x.reshape(-1, groups, x.shape[-1] // groups)
        ctx.save_for_backward(x, numerator, denominator)
        if _use_triton(x):
            from oplearn.layers.rational_triton import rational_forward

            return rational_forward(x, numerator, denominator)
        p, _ = _horner(xg, numerator, 0)
        q, _ = _horner(xg, denominator, 1)
        return (p / (q.abs() + 1)).reshape(x.shape)

    @staticmethod
    def backward(ctx, grad_output):
        x, numerator, denominator = ctx.saved_tensors
        if _use_triton(x):
            from oplearn.layers.rational_triton import rational_backward

            return rational_backward(grad_output, x, numerator, denominator)
        return rational_backward_torch(grad_output, x, numerator, denominator)


def rational_backward_torch(grad_output, x, numerator, denominator, block_elements: int = ROW_BLOCK_ELEMENTS):
    """Gradients ``(dx, d numerator, d denominator)`` in row blocks.

    For the two weights ``w_a = grad/D`` and ``w_b = -grad sign(Q) P/D^2`` the coefficient
    gradients are ``sum_{rows, channels of g} w x^j``: each block sums over its rows first
    (one column reduction per power, accumulated in at least float32), then the channels of
    each group are added. Shapes as in :func:`rational_reference`.
    """
    groups, n_numerator = numerator.shape
    channels = x.shape[-1]
    x_all = x.reshape(-1, channels)
    grad_all = grad_output.reshape(x_all.shape)
    grad_x = torch.empty_like(x_all)
    accumulate = torch.promote_types(x.dtype, torch.float32)
    per_channel = torch.zeros(2, channels, n_numerator, dtype=accumulate, device=x.device)
    rows_per_block = max(1, block_elements // max(1, channels))
    for start in range(0, x_all.shape[0], rows_per_block):
        rows = slice(start, start + rows_per_block)
        xg = x_all[rows].unflatten(-1, (groups, -1))
        p, dp = _horner(xg, numerator, 0, with_slope=True)
        q, dq = _horner(xg, denominator, 1, with_slope=True)
        inverse = 1 / (q.abs() + 1)
        weights = torch.empty(2, *xg.shape, dtype=xg.dtype, device=xg.device)
        torch.mul(grad_all[rows].unflatten(-1, (groups, -1)), inverse, out=weights[0])
        torch.mul(weights[0] * inverse, -torch.sign(q) * p, out=weights[1])
        grad_x[rows] = (weights[0] * dp).addcmul_(weights[1], dq).flatten(-2)
        weights = weights.flatten(-2).to(accumulate)  # (2, rows, C)
        x_block, power = x_all[rows].to(accumulate), None
        for j in range(n_numerator):
            power = torch.ones_like(x_block) if j == 0 else power * x_block
            per_channel[..., j] += (weights * power).sum(1)
    per_group = per_channel.unflatten(1, (groups, -1)).sum(2)  # (2, g, m+1)
    grad_numerator = per_group[0].to(numerator.dtype)
    grad_denominator = per_group[1, :, 1:denominator.shape[1] + 1].to(denominator.dtype)
    return grad_x.reshape(x.shape), grad_numerator, grad_denominator


def _use_triton(x: torch.Tensor) -> bool:
    return x.is_cuda and x.dtype in (torch.float32, torch.float16, torch.bfloat16) and _triton_imports()


@functools.lru_cache(maxsize=1)
def _triton_imports() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def group_rational(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``R_g(x)`` on the last axis: ``x (..., C)``, ``numerator (g, m+1)``, ``denominator (g, m-1)``, ``g | C``."""
    return GroupRationalFunction.apply(x, numerator, denominator)
