"""Fused Triton kernels for the group-rational function (imported only when Triton is installed).

Forward: one program per block of elements, Horner for ``P`` and ``Q``, ``P/(1 + |Q|)``.
Backward: one program per tile ``(BLOCK_R rows) x (the channels of one group)``; it writes
``dx`` for its tile and the tile's sums ``sum w_a x^j``, ``sum w_b x^j`` (see
:mod:`oplearn.layers.rational`) to its own slot of a ``(row_blocks, groups, 2, m+1)``
buffer, which torch then sums over the row blocks: no atomic accumulation.
Computation in float32 whatever the input type.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rational_forward_kernel(x_ptr, numerator_ptr, denominator_ptr, out_ptr, n_elements, channels, group_size,
                             N_NUMERATOR: tl.constexpr, N_DENOMINATOR: tl.constexpr, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n_elements
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    group = (offsets % channels) // group_size
    p = tl.load(numerator_ptr + group * N_NUMERATOR + (N_NUMERATOR - 1), mask=mask, other=0.0).to(tl.float32)
    for i in tl.static_range(1, N_NUMERATOR):
        coefficient = tl.load(numerator_ptr + group * N_NUMERATOR + (N_NUMERATOR - 1 - i), mask=mask, other=0.0)
        p = p * x + coefficient.to(tl.float32)
    q = tl.zeros_like(x)
    for i in tl.static_range(0, N_DENOMINATOR):
        coefficient = tl.load(denominator_ptr + group * N_DENOMINATOR + (N_DENOMINATOR - 1 - i), mask=mask, other=0.0)
        q = q * x + coefficient.to(tl.float32)
    q = q * x
    tl.store(out_ptr + offsets, (p / (1.0 + tl.abs(q))).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rational_backward_kernel(x_ptr, grad_ptr, numerator_ptr, denominator_ptr, grad_x_ptr, partial_ptr,
                              rows, channels, group_size, groups,
                              N_NUMERATOR: tl.constexpr, N_DENOMINATOR: tl.constexpr,
                              BLOCK_R: tl.constexpr, BLOCK_S: tl.constexpr):
    row_block, group = tl.program_id(0), tl.program_id(1)
    r = row_block * BLOCK_R + tl.arange(0, BLOCK_R)[:, None]
    s = tl.arange(0, BLOCK_S)[None, :]
    mask = (r < rows) & (s < group_size)
    offsets = r * channels + group * group_size + s
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    grad = tl.load(grad_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    p = tl.zeros_like(x) + tl.load(numerator_ptr + group * N_NUMERATOR + (N_NUMERATOR - 1)).to(tl.float32)
    dp = tl.zeros_like(x)
    for i in tl.static_range(1, N_NUMERATOR):
        dp = dp * x + p
        p = p * x + tl.load(numerator_ptr + group * N_NUMERATOR + (N_NUMERATOR - 1 - i)).to(tl.float32)
    q = tl.zeros_like(x)
    dq = tl.zeros_like(x)
    for i in tl.static_range(0, N_DENOMINATOR):
        dq = dq * x + q
        q = q * x + tl.load(denominator_ptr + group * N_DENOMINATOR + (N_DENOMINATOR - 1 - i)).to(tl.float32)
    dq = q + x * dq  # Q = x S(x): Q' = S + x S'
    q = q * x
    inverse = 1.0 / (1.0 + tl.abs(q))
    sign = tl.where(q > 0, 1.0, tl.where(q < 0, -1.0, 0.0))
    weight_a = grad * inverse
    weight_b = -weight_a * sign * p * inverse
    tl.store(grad_x_ptr + offsets, (weight_a * dp + weight_b * dq).to(grad_x_ptr.dtype.element_ty), mask=mask)
    slot = partial_ptr + (row_block * groups + group) * 2 * N_NUMERATOR
    power = tl.zeros_like(x) + 1.0
    for j in tl.static_range(0, N_NUMERATOR):
        tl.store(slot + j, tl.sum(tl.sum(weight_a * power, axis=1), axis=0))
        tl.store(slot + N_NUMERATOR + j, tl.sum(tl.sum(weight_b * power, axis=1), axis=0))
        power = power * x


def rational_forward(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``x (..., C)`` -> ``R_g(x) (..., C)``; coefficient shapes as in ``rational_reference``."""
    x = x.contiguous()
    out = torch.empty_like(x)
    groups, n_numerator = numerator.shape
    n_denominator = denominator.shape[1]
    block = 1024
    _rational_forward_kernel[(triton.cdiv(x.numel(), block),)](
        x, numerator.contiguous(), denominator.contiguous() if n_denominator else numerator, out, x.numel(),
        x.shape[-1], x.shape[-1] // groups, N_NUMERATOR=n_numerator, N_DENOMINATOR=n_denominator, BLOCK=block)
    return out


def rational_backward(grad_output, x, numerator, denominator):
    """``(dx, d numerator, d denominator)`` with per-tile partial sums (see the module docstring)."""
    x, grad_output = x.contiguous(), grad_output.contiguous()
    groups, n_numerator = numerator.shape
    n_denominator = denominator.shape[1]
    channels = x.shape[-1]
    rows, group_size = x.numel() // channels, channels // groups
    block_s = triton.next_power_of_2(group_size)
    block_r = max(1, min(128, 4096 // block_s))
    row_blocks = triton.cdiv(rows, block_r)
    partial = torch.empty(row_blocks, groups, 2, n_numerator, dtype=torch.float32, device=x.device)
    grad_x = torch.empty_like(x)
    _rational_backward_kernel[(row_blocks, groups)](
        x, grad_output, numerator.contiguous(), denominator.contiguous() if n_denominator else numerator,
        grad_x, partial, rows, channels, group_size, groups, N_NUMERATOR=n_numerator,
        N_DENOMINATOR=n_denominator, BLOCK_R=block_r, BLOCK_S=block_s)
    sums = partial.sum(0)  # (g, 2, m+1)
    return grad_x, sums[:, 0].to(numerator.dtype), sums[:, 1, 1:n_denominator + 1].to(denominator.dtype)
