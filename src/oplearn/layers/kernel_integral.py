"""Kernel integral over radius neighbourhoods: the integral operator of graph neural operators.

    (K v)(x) = 1/|B_r(x)| sum_{y in B_r(x)} kappa(x, y, ...) * v(y)

the mean over the neighbours ``y`` of ``x`` (a :class:`~oplearn.layers.neighbors.Neighbors` CSR) of a
learned kernel ``kappa`` (an MLP) times the source function ``v``. Kernel forms:

* ``"linear"``: ``kappa(x, y) * v(y)``, ``kappa`` a vector of ``out_channels`` (elementwise, as in GINO);
* ``"nonlinear"``: ``kappa(x, y, v(y)) * v(y)``, the kernel also sees the function;
* ``"matrix"``: ``kappa(x, y) v(y)`` with ``kappa`` an ``out x in`` matrix (Li et al. 2020's GNO).

Shapes: sources ``v (B, C_in, N)`` at ``y (B, d, N)``, queries ``x (B, d, M)`` -> ``(B, C_out, M)``; a
query without neighbours gets 0. The per-edge kernel runs ``chunk_edges`` edges at a time and the sums
are torch's ``index_add``; under autograd each chunk is recomputed in the backward pass (activation
checkpointing), so memory grows with the points and the edge count, not with the kernel's hidden width
times the edge count.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.activations import make_activation
from oplearn.layers.neighbors import Neighbors

KERNEL_FORMS = ("linear", "nonlinear", "matrix")


class KernelIntegral(nn.Module):
    """Mean of ``kappa * v`` over each query's neighbours; ``kappa`` an MLP with ``kernel_layers`` hidden layers.

    Args:
        in_channels, out_channels: channels of ``v`` and of the result (equal unless ``form="matrix"``).
        dim: the dimension ``d`` of the points.
        kernel_width: hidden units of the kernel MLP.
        kernel_layers: hidden layers of the kernel MLP.
        form: "linear", "nonlinear" or "matrix" (see the module docstring).
        chunk_edges: edges per chunk of the per-edge computation.
    """

    def __init__(self, in_channels: int, out_channels: int, dim: int, kernel_width: int = 64,
                 kernel_layers: int = 2, form: str = "linear", activation: str = "gelu",
                 chunk_edges: int = 1 << 18):
        super().__init__()
        if form not in KERNEL_FORMS:
            raise ConfigError(f"unknown kernel form '{form}'; choose one of: {', '.join(KERNEL_FORMS)}")
        if form != "matrix" and in_channels != out_channels:
            raise ConfigError(f"kernel form '{form}' multiplies v(y) elementwise: in_channels ({in_channels}) "
                              f"must equal out_channels ({out_channels}); use form 'matrix'")
        if chunk_edges < 1 or kernel_layers < 1:
            raise ConfigError("chunk_edges and kernel_layers must be positive")
        self.in_channels, self.out_channels, self.dim, self.form = in_channels, out_channels, dim, form
        self.chunk_edges = chunk_edges
        kernel_in = 2 * dim + (in_channels if form == "nonlinear" else 0)
        kernel_out = out_channels * (in_channels if form == "matrix" else 1)
        sizes = [kernel_in] + [kernel_width] * kernel_layers
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), make_activation(activation)]
        self.kernel = nn.Sequential(*layers, nn.Linear(kernel_width, kernel_out))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, dim={self.dim}, form={self.form}"

    def forward(self, values: torch.Tensor, sources: torch.Tensor, queries: torch.Tensor,
                neighbors: Neighbors) -> torch.Tensor:
        """``values (B, C_in, N)`` at ``sources (B, d, N)`` -> ``(B, C_out, M)`` at ``queries (B, d, M)``."""
        batch, channels, n_sources = values.shape
        if channels != self.in_channels or sources.shape != (batch, self.dim, n_sources) \
                or queries.ndim != 3 or queries.shape[:2] != (batch, self.dim):
            raise ShapeError(f"KernelIntegral expects values (B, {self.in_channels}, N), sources (B, {self.dim}, N) "
                             f"and queries (B, {self.dim}, M), got {tuple(values.shape)}, {tuple(sources.shape)} "
                             f"and {tuple(queries.shape)}")
        n_queries = queries.shape[2]
        v = values.transpose(1, 2).reshape(batch * n_sources, channels)
        y = sources.transpose(1, 2).reshape(batch * n_sources, self.dim).to(v.dtype)
        x = queries.transpose(1, 2).reshape(batch * n_queries, self.dim).to(v.dtype)
        rows, columns = neighbors.rows, neighbors.columns
        accumulate = torch.float32 if v.dtype in (torch.float16, torch.bfloat16) else v.dtype  # autocast
        total = v.new_zeros(batch * n_queries, self.out_channels, dtype=accumulate)
        chunked = neighbors.n_edges > self.chunk_edges and torch.is_grad_enabled()
        for start in range(0, neighbors.n_edges, self.chunk_edges):
            row, column = rows[start:start + self.chunk_edges], columns[start:start + self.chunk_edges]
            if chunked:
                messages = checkpoint(self.messages, v, y, x, row, column, use_reentrant=False)
            else:
                messages = self.messages(v, y, x, row, column)
            total.index_add_(0, row, messages.to(accumulate))
        counts = neighbors.counts.clamp(min=1).to(total.dtype)
        mean = total / counts[:, None]
        return mean.reshape(batch, n_queries, self.out_channels).transpose(1, 2)

    def messages(self, v: torch.Tensor, y: torch.Tensor, x: torch.Tensor, row: torch.Tensor,
                 column: torch.Tensor) -> torch.Tensor:
        """``(E, C_out)`` the summands ``kappa(x_row, y_column, ...) v(y_column)`` of one chunk of edges."""
        v_source = v[column]
        features = [x[row], y[column]] + ([v_source] if self.form == "nonlinear" else [])
        kernel = self.kernel(torch.cat(features, dim=1))
        if self.form == "matrix":
            kernel = kernel.view(-1, self.out_channels, self.in_channels)
            return torch.bmm(kernel, v_source[:, :, None])[:, :, 0]
        return kernel * v_source
