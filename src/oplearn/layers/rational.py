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
processed in blocks small enough to stay in cache: each block sums its rows
per channel (one column reduction per power), and the channels of a group
are added once at the end. ``x`` and the output R are saved for backward (in
KANLinear the following GEMM keeps R anyway); Q, P' and Q' are recomputed and
P = R D. On CUDA with Triton installed a fused kernel (``rational_triton``)
does the same reduction per program block.
"""

from __future__ import annotations

import functools

import torch

# Elements of x per block (512 KiB in float32): a block's temporaries stay in a core's cache (measurably
# faster than whole-tensor passes at batch 1024 x 256 on a 2-core CPU; block size matters little around it).
ROW_BLOCK_ELEMENTS = 1 << 17


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


def _columns(coefficients: torch.Tensor, dtype: torch.dtype, scale_by_degree: bool = False) -> list[torch.Tensor]:
    """``(g, n)`` coefficients -> n columns ``(g, 1)`` in ``dtype``; ``scale_by_degree``: ``c_j`` times ``j + 1``."""
    c = coefficients.to(dtype)
    if scale_by_degree:
        c = c * torch.arange(1, c.shape[1] + 1, dtype=dtype, device=c.device)
    return list(c[:, :, None].unbind(1))


def _polynomial(xg: torch.Tensor, columns: list[torch.Tensor]) -> torch.Tensor:
    """``sum_j columns[j] x^j`` by Horner's rule, one fused multiply-add per degree, in a fresh tensor.

    ``xg (rows, g, s)``, ``columns`` as from :func:`_columns` (lowest power first).
    """
    if len(columns) < 2:
        value = torch.zeros_like(xg)
        return value.add_(columns[0]) if columns else value
    value = torch.addcmul(columns[-2], columns[-1], xg)
    for column in reversed(columns[:-2]):
        torch.addcmul(column, value, xg, out=value)
    return value


class GroupRationalFunction(torch.autograd.Function):
    """``R_g(x)`` per group with the blocked coefficient-gradient reduction described above."""

    @staticmethod
    def forward(ctx, x, numerator, denominator):
        if _use_triton(x):
            from oplearn.layers.rational_triton import rational_forward

            out = rational_forward(x, numerator, denominator)
        else:
            out = rational_forward_torch(x, numerator, denominator)
        # The output is saved too (in KANLinear the following GEMM keeps it anyway): backward needs P = R D.
        ctx.save_for_backward(x, out, numerator, denominator)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        x, out, numerator, denominator = ctx.saved_tensors
        if _use_triton(x):
            from oplearn.layers.rational_triton import rational_backward

            return rational_backward(grad_output, x, numerator, denominator)
        return rational_backward_torch(grad_output, x, out, numerator, denominator)


def _row_blocks(n_rows: int, channels: int, block_elements: int):
    rows_per_block = max(1, block_elements // max(1, channels))
    return (slice(start, start + rows_per_block) for start in range(0, n_rows, rows_per_block))


def rational_forward_torch(x, numerator, denominator, block_elements: int = ROW_BLOCK_ELEMENTS):
    """``P/(1 + |Q|)`` by Horner's rule, in row blocks. Shapes as in :func:`rational_reference`."""
    groups, channels = numerator.shape[0], x.shape[-1]
    p_columns, s_columns = _columns(numerator, x.dtype), _columns(denominator, x.dtype)  # Q = x S(x)
    x_all = x.reshape(-1, channels)
    out = torch.empty_like(x_all)
    for rows in _row_blocks(x_all.shape[0], channels, block_elements):
        xg = x_all[rows].unflatten(-1, (groups, -1))
        q = _polynomial(xg, s_columns).mul_(xg)
        torch.div(_polynomial(xg, p_columns), q.abs_().add_(1), out=out[rows].unflatten(-1, (groups, -1)))
    return out.reshape(x.shape)


def rational_backward_torch(grad_output, x, out, numerator, denominator, block_elements: int = ROW_BLOCK_ELEMENTS):
    """Gradients ``(dx, d numerator, d denominator)`` in row blocks, given the forward output ``out = R``.

    With ``D = 1 + |Q|`` and ``w = grad/D``: ``dx = w P' - (w R sign Q) Q'`` (``P/D^2 = R/D``),
    ``d a_j = sum w x^j`` and ``d b_j = -sum (w R sign Q) x^j``, sums over rows and the channels of
    a group. Each block multiplies its two weights by ``x`` in place once per power and sums its
    rows (in at least float32); the channels of each group are added at the end. Shapes as in
    :func:`rational_reference`; ``out`` has the shape of ``x``.
    """
    groups, n_numerator = numerator.shape
    n_denominator = denominator.shape[1]
    dtype, accumulate = x.dtype, torch.promote_types(x.dtype, torch.float32)
    s_columns = _columns(denominator, dtype)  # Q = x S(x)
    slope_p_columns = _columns(numerator[:, 1:], dtype, scale_by_degree=True)  # P'
    slope_q_columns = _columns(denominator, dtype, scale_by_degree=True)  # Q'
    x_all, out_all, grad_all = (t.reshape(-1, groups, x.shape[-1] // groups) for t in (x, out, grad_output))
    grad_x = torch.empty_like(x_all)
    sums = [[] for _ in range(n_numerator)]  # per power j: per block, (2 or 1, g, s) row sums
    for rows in _row_blocks(x_all.shape[0], x.shape[-1], block_elements):
        xg = x_all[rows]
        q = _polynomial(xg, s_columns).mul_(xg)
        sign = torch.sign(q)
        inverse = q.abs_().add_(1).reciprocal_()
        weights = torch.empty(2, *xg.shape, dtype=dtype, device=x.device)  # w, w R sign(Q)
        w, w_r = weights.unbind(0)
        torch.mul(grad_all[rows], inverse, out=w)
        torch.mul(w, out_all[rows], out=w_r).mul_(sign)
        torch.mul(w, _polynomial(xg, slope_p_columns), out=grad_x[rows])
        grad_x[rows].addcmul_(w_r, _polynomial(xg, slope_q_columns), value=-1)
        # weights * x^j for j = 0..m; the second weight only up to the denominator's degree m - 1
        weights, x_block = weights.to(accumulate), xg.to(accumulate)
        for j in range(n_numerator):
            if j:
                weights = weights[:1] if j > n_denominator else weights
                weights.mul_(x_block)
            sums[j].append(weights.sum(1))
    moments = [sum(blocks).sum(-1) for blocks in sums]  # (2 or 1, g) per power
    grad_numerator = torch.stack([m[0] for m in moments], 1).to(numerator.dtype)
    grad_denominator = torch.stack([-m[1] for m in moments[1:n_denominator + 1]], 1).to(denominator.dtype) \
        if n_denominator else torch.zeros_like(denominator)
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
