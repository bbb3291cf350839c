"""B-spline expansions for :class:`~oplearn.layers.kan_bases.BSpline`, with their derivatives.

``x (..., in)``, ``knots (in, K)`` -> ``B(x) (..., in, K - 1 - k)``: the B-splines of degree ``k``
on each input's knots. Two evaluations of the same functions:

- :class:`BSplineExpansion`: the Cox-de Boor recursion, for any (e.g. data-fitted) knots;
- :class:`UniformBSplineExpansion`: the closed form on equally spaced knots. With ``t = (x - t_0)/h``,
  cell ``c = floor(t)`` and ``u = t - c``, only ``B_c-k..B_c`` are nonzero, and they are fixed
  polynomials of ``u`` (the pieces of the cardinal B-spline), so a point costs ``k + 1``
  polynomial evaluations and a scatter instead of ``k`` recursion levels over all ``K`` knots.

Both are autograd Functions with analytic first derivatives that stay differentiable under
``create_graph`` (second derivatives for physics-informed losses).
"""

from __future__ import annotations

import functools
from fractions import Fraction

import torch


def cox_de_boor(x: torch.Tensor, knots: torch.Tensor, order: int, with_slope: bool = False):
    """B-splines of degree ``order``: ``x (..., in)``, ``knots (in, K)`` -> ``(..., in, K - 1 - order)``.

    ``B_i0 = 1[t_i <= x < t_i+1]`` and, with ``w_m = B_m,p-1 / (t_m+p - t_m)`` and ``d_m = x - t_m``,
    ``B_ip = d_i w_i - d_i+p+1 w_i+1`` (the Cox-de Boor recursion; three products per level, no
    divisions on the batch). With ``with_slope`` also returns ``dB_ik/dx = k (w_i - w_i+1)``, else None.
    """
    distance = x.unsqueeze(-1) - knots  # (..., in, K)
    right_of = distance >= 0
    values = (right_of[..., :-1] & ~right_of[..., 1:]).to(distance.dtype)
    slope = None
    for p in range(1, order + 1):
        weighted = values * (1 / (knots[:, p:] - knots[:, :-p]))
        values = torch.addcmul(distance[..., :-(p + 1)] * weighted[..., :-1],
                               distance[..., p + 1:], weighted[..., 1:], value=-1)
        if with_slope and p == order:
            slope = (weighted[..., :-1] - weighted[..., 1:]) * order
    if with_slope and order == 0:
        slope = torch.zeros_like(values)
    return values, slope


class BSplineExpansion(torch.autograd.Function):
    """Cox-de Boor with the analytic derivative ``B'_ik = k (w_i - w_i+1)`` from the last level.

    Saves ``dB/dx`` (the size of the expansion) when ``x`` needs a gradient; with
    ``create_graph=True`` the backward instead recomputes it through this function at order
    ``k - 1``, so higher derivatives work too.
    """

    @staticmethod
    def forward(ctx, x, knots, order):
        values, slope = cox_de_boor(x, knots, order, with_slope=x.requires_grad)
        ctx.save_for_backward(x, knots, slope)
        ctx.order = order
        return values

    @staticmethod
    def backward(ctx, grad_output):
        x, knots, slope = ctx.saved_tensors
        k = ctx.order
        if k == 0 or not ctx.needs_input_grad[0]:
            return None, None, None
        if torch.is_grad_enabled():  # create_graph: a differentiable slope
            weighted = BSplineExpansion.apply(x, knots, k - 1) / (knots[:, k:] - knots[:, :-k])
            slope = (weighted[..., :-1] - weighted[..., 1:]) * k
        return (grad_output * slope).sum(-1), None, None


@functools.lru_cache(maxsize=None)
def cardinal_pieces(order: int) -> tuple[tuple[float, ...], ...]:
    """Power coefficients ``a[r][d]`` of the ``order + 1`` nonzero B-splines within one uniform cell.

    On a uniform grid with ``x = t_c + u h`` (``0 <= u < 1``), ``B_c-k+r(x) = sum_d a[r][d] u^d``:
    the pieces of the cardinal B-spline ``N_k`` on ``[k - r, k - r + 1]``, from
    ``N_p(s) = s/p N_p-1(s) + (p + 1 - s)/p N_p-1(s - 1)`` in exact rational arithmetic.
    """
    pieces = [[Fraction(1)]]  # pieces[m]: N_p on [m, m + 1] as a polynomial in u = s - m
    for p in range(1, order + 1):
        grown = []
        for m in range(p + 1):
            rising = pieces[m] if m < p else []  # (u + m)/p N_p-1(u + m)
            falling = pieces[m - 1] if m > 0 else []  # (p + 1 - m - u)/p N_p-1(u + m - 1)
            piece = [Fraction(0)] * (p + 1)
            for d, c in enumerate(rising):
                piece[d] += c * m / p
                piece[d + 1] += c / p
            for d, c in enumerate(falling):
                piece[d] += c * (p + 1 - m) / p
                piece[d + 1] -= c / p
            grown.append(piece)
        pieces = grown
    return tuple(tuple(float(c) for c in pieces[order - r]) for r in range(order + 1))


def polynomial(u: torch.Tensor, coefficients: tuple[float, ...], out: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_d coefficients[d] u^d`` elementwise by Horner's rule, written into ``out`` when given."""
    value = torch.full_like(u, coefficients[-1]) if out is None else out.fill_(coefficients[-1])
    for c in reversed(coefficients[:-1]):
        if out is None:
            value = torch.addcmul(u.new_tensor(c), value, u)
        else:
            torch.addcmul(u.new_tensor(c), value, u, out=value)
    return value


def uniform_cells(x: torch.Tensor, knots: torch.Tensor, order: int):
    """Cells of ``x (..., in)`` on uniform ``knots (in, K)``: ``u``, ``c - k`` and ``1/h``.

    ``t = (x - t_0)/h``, ``c = floor(t)``, ``u = t - c`` in [0, 1); the nonzero B-splines of ``x``
    are ``B_c-k+r``, ``r = 0..k`` (indices outside ``0..n_basis-1`` stand for no function).
    """
    inverse_step = (knots.shape[1] - 1) / (knots[:, -1] - knots[:, 0])
    t = torch.addcmul(-knots[:, 0] * inverse_step, x, inverse_step)
    cell = t.floor()
    return t.sub_(cell), cell.long().sub_(order), inverse_step


def pieces_by_index(first: torch.Tensor, order: int, n_basis: int, dtype: torch.dtype):
    """For ``r = 0..k``: ``r``, the index ``c - k + r`` clamped into ``0..n_basis-1`` as ``(..., in, 1)``, and
    ``inside`` (1 where it was in range, 0 where there is no function). Buffers are reused across ``r``.

    On the CPU, when every point lies within the grid range (all indices valid), ``inside`` is None.
    """
    index = torch.empty_like(first)
    if first.device.type == "cpu":
        lowest, highest = first.aminmax()
        if lowest >= 0 and highest + order < n_basis:
            for r in range(order + 1):
                yield r, torch.add(first, r, out=index).unsqueeze(-1), None
            return
    clamped = torch.empty_like(first)
    inside = torch.empty(first.shape, dtype=dtype, device=first.device)
    for r in range(order + 1):
        torch.add(first, r, out=index)
        torch.clamp(index, 0, n_basis - 1, out=clamped)
        yield r, clamped.unsqueeze(-1), torch.eq(index, clamped, out=inside)


class UniformBSplineExpansion(torch.autograd.Function):
    """B-splines on a uniform grid in closed form: ``B_c-k+r(x) = P_r(u)``, scattered per point.

    ``P_r`` are the cardinal pieces (:func:`cardinal_pieces`). Equals :func:`cox_de_boor` on the
    same knots to rounding, in a few contiguous passes over ``(..., in)`` per piece plus one scatter
    into the zeroed expansion. Backward gathers the incoming gradient at the same indices and
    weights it with ``P'_r(u)/h``; under ``create_graph`` those ops are recorded (higher derivatives).
    """

    @staticmethod
    def forward(ctx, x, knots, order):
        n_basis = knots.shape[1] - 1 - order
        local, first, _ = uniform_cells(x, knots, order)
        expansion, value = local.new_zeros(x.shape + (n_basis,)), torch.empty_like(local)
        pieces = cardinal_pieces(order)
        for r, index, inside in pieces_by_index(first, order, n_basis, local.dtype):
            if inside is not None:
                polynomial(local, pieces[r], out=value).mul_(inside)
            else:
                polynomial(local, pieces[r], out=value)
            expansion.scatter_add_(-1, index, value.unsqueeze(-1))
        ctx.save_for_backward(x, knots)
        ctx.order = order
        return expansion

    @staticmethod
    def backward(ctx, grad_output):
        x, knots = ctx.saved_tensors
        k = ctx.order
        if k == 0 or not ctx.needs_input_grad[0]:
            return None, None, None
        local, first, inverse_step = uniform_cells(x.detach(), knots, k)
        slopes = [tuple(d * c for d, c in enumerate(piece))[1:] for piece in cardinal_pieces(k)]
        indexed = pieces_by_index(first, k, grad_output.shape[-1], local.dtype)
        if torch.is_grad_enabled():  # create_graph: differentiable in x (through u) and in grad_output
            local = local + (x - x.detach()) * inverse_step
            # clones: the buffers of pieces_by_index are reused, autograd must keep each r's own
            grad_x = sum(grad_output.gather(-1, index.clone()).squeeze(-1) * (1 if inside is None else inside.clone())
                         * polynomial(local, slopes[r]) for r, index, inside in indexed)
            return grad_x * inverse_step, None, None
        grad_x, gathered, slope = torch.zeros_like(local), torch.empty_like(local), torch.empty_like(local)
        for r, index, inside in indexed:
            torch.gather(grad_output, -1, index, out=gathered.unsqueeze(-1))
            if inside is not None:
                gathered.mul_(inside)
            grad_x.addcmul_(gathered, polynomial(local, slopes[r], out=slope))
        return grad_x.mul_(inverse_step).to(x.dtype), None, None
