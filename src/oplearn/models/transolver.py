"""Transolver (Wu et al., ICML 2024): a transformer whose attention runs among learned physical states.

    h_0 = MLP(a(x_i), x_i)                                       embedding of features and coordinates
    h <- h + PhysicsAttention(LN(h));  h <- h + MLP(LN(h))       n_layers pre-norm blocks
    u(x_i) = Linear(LN(h_i))                                     output head

Physics attention (:class:`~oplearn.layers.point_attention.PhysicsAttention`) softly assigns the N
points to G slices, ``w_i = softmax(logits(x_i) / tau)``, attends among the G slice tokens
``z_g = sum_i w_ig x_i / sum_i w_ig`` and gives each point ``sum_g w_ig z'_g``: linear in N, and the same on
any set of points. On grids the nodes are the points; with ``grid_slicing="conv"`` (the paper's
structured-mesh variant) the slice logits and features come from a 3^d convolution over the grid instead
of a pointwise map. Transolver++ options: a per-point temperature (``adaptive_temperature``) and Gumbel
noise on the slice logits in training (``gumbel_slices``).

Coordinates enter mapped onto the unit box of ``domain`` (the training points' bounding box, fitted by
``fit_to_data``), so that the model sees the same inputs whatever units and extent the mesh comes in.
"""

from __future__ import annotations

import torch
from torch import nn

from oplearn.errors import ConfigError
from oplearn.layers.coordinates import check_domain
from oplearn.layers.dense import dense_net
from oplearn.layers.point_attention import (PhysicsAttention, as_model_output, as_point_set, fit_dimension,
                                            map_over_points, require_dimension)
from oplearn.models.operator import Operator, PointHyper, register

GRID_SLICINGS = ("linear", "conv")
CONVOLUTIONS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class TransolverBlock(nn.Module):
    """``h + PhysicsAttention(LN h)`` then ``h + MLP(LN h)`` on points ``(B, N, width)``."""

    def __init__(self, width: int, n_heads: int, n_slices: int, mlp_ratio: float, dropout: float,
                 activation: str, conv_dim: int | None, adaptive_temperature: bool, gumbel_slices: bool):
        super().__init__()
        self.attention_norm = nn.LayerNorm(width)
        # the two projections of physics attention (features, slice inputs), pointwise or a 3^d convolution
        if conv_dim is None:
            self.projection = nn.Linear(width, 2 * width)
        else:
            self.projection = CONVOLUTIONS[conv_dim](width, 2 * width, kernel_size=3, padding=1)
        self.attention = PhysicsAttention(width, n_heads, n_slices, dropout, adaptive_temperature, gumbel_slices)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = dense_net([width, max(1, round(width * mlp_ratio)), width], activation)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None, grid: tuple[int, ...] | None,
                chunk: int | None) -> torch.Tensor:
        x = self.attention_norm(h)
        if isinstance(self.projection, nn.Linear):
            projected = self.projection(x)
        else:
            on_grid = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid)
            projected = self.projection(on_grid).flatten(2).transpose(1, 2)
        features, slice_in = projected.chunk(2, dim=-1)
        h = h + self.attention(features, slice_in, mask, chunk)
        return h + map_over_points(lambda part, x: self.mlp(self.mlp_norm(x)), [h], chunk)


@register("transolver")
class Transolver(Operator):
    """Transolver on grids, meshes and point clouds; hyperparameters in :class:`Transolver.Hyper`.

    Shapes: grids ``(B, C_in, *S) -> (B, C_out, *S)``; points ``(B, C_in, N)`` with ``coords (B, d, N)``
    and ``mask (B, N)`` ``-> (B, C_out, N)`` (zero at padded points).
    """

    geometries = frozenset({"grid", "mesh", "points"})

    class Hyper(PointHyper):
        dim: int | None = None
        """Dimension d of the points (grid axes); None: taken from the training data."""
        width: int = 128
        """Channels of the point features."""
        n_layers: int = 4
        """Transolver blocks."""
        n_heads: int = 8
        """Attention heads (a divisor of width)."""
        n_slices: int = 32
        """Slices G per head: the physical states the points are assigned to."""
        mlp_ratio: float = 1.0
        """Hidden width of each block's MLP as a multiple of width."""
        dropout: float = 0.0
        """Dropout on the slice attention and the attention output."""
        activation: str = "gelu"
        """Name of the nonlinearity (gelu, relu, silu, tanh)."""
        grid_slicing: str = "linear"
        """On grids: "linear" (the points' slice logits from a pointwise map, the same model as on points) or
        "conv" (from a 3^d convolution over the grid, the paper's structured-mesh variant; grids only)."""
        adaptive_temperature: bool = False
        """Transolver++: a learned temperature per point, ``tau_i = tau + a . x_i``, instead of one per head."""
        gumbel_slices: bool = False
        """Transolver++: Gumbel noise on the slice logits in training (reparameterized slice assignment)."""
        chunk_points: int | None = None
        """Process this many points at a time in the attention's sums over points and in the pointwise
        feed-forward nets, each chunk recomputed in the backward pass: memory per point no longer grows with
        the slices, heads or hidden widths (big point sets); None: all points at once."""

    def __init__(self, in_channels: int, out_channels: int, **hyper):
        super().__init__(in_channels, out_channels, **hyper)
        h = self.hyper
        if min(in_channels, out_channels, h.width, h.n_layers, h.n_heads, h.n_slices) < 1:
            raise ConfigError("in_channels, out_channels, width, n_layers, n_heads and n_slices must be positive")
        if h.width % h.n_heads:
            raise ConfigError(f"width {h.width} must be a multiple of n_heads {h.n_heads}")
        if h.grid_slicing not in GRID_SLICINGS:
            raise ConfigError(f"unknown grid_slicing '{h.grid_slicing}'; choose one of: {', '.join(GRID_SLICINGS)}")
        if not 0.0 <= h.dropout < 1.0 or h.mlp_ratio <= 0 or (h.chunk_points is not None and h.chunk_points < 1):
            raise ConfigError("dropout must lie in [0, 1), mlp_ratio and chunk_points must be positive")
        if h.dim is not None:
            self._build()

    def _build(self) -> None:
        h = self.hyper
        dim = require_dimension(self.name, h.dim)
        check_domain(self.name, h.domain, dim)
        self.embedding = dense_net([self.in_channels + dim, 2 * h.width, h.width], h.activation)
        conv_dim = dim if h.grid_slicing == "conv" else None
        self.blocks = nn.ModuleList(
            TransolverBlock(h.width, h.n_heads, h.n_slices, h.mlp_ratio, h.dropout, h.activation, conv_dim,
                            h.adaptive_temperature, h.gumbel_slices) for _ in range(h.n_layers))
        self.head_norm = nn.LayerNorm(h.width)
        self.head = nn.Linear(h.width, self.out_channels)

    def fit_to_data(self, train, encode_outputs=None) -> dict:
        """Take the points' dimension and bounding box from the training data and build the layers."""
        return fit_dimension(self, train)

    def forward(self, x: torch.Tensor, coords: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                queries: torch.Tensor | None = None, query_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.hyper
        dim = require_dimension(self.name, h.dim)
        features, points, mask, grid = as_point_set(self.name, self.in_channels, dim, x, coords, mask, queries,
                                                    h.domain)
        if grid is None and h.grid_slicing == "conv":
            raise ConfigError("transolver with grid_slicing='conv' takes grid data only; use grid_slicing='linear' "
                              "for meshes and point clouds")
        hidden = self.embedding(torch.cat([features, points], dim=-1))
        for block in self.blocks:
            hidden = block(hidden, mask, grid, h.chunk_points)
        return as_model_output(self.head(self.head_norm(hidden)), grid, mask)
