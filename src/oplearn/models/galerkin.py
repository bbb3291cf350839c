"""Galerkin transformer (Cao, NeurIPS 2021, "Choose a transformer: Fourier or Galerkin").

    h_0 = Linear(a(x_i), x_i)                                encoder of features and coordinates
    h <- h + Attention(h);  h <- h + FFN(h)                  n_layers blocks
    u(x_i) = MLP(h_i)                                        output

with softmax-free attention per head, ``n`` the number of real points of the sample:
Galerkin ``z = Q (LN(K)^T LN(V)) / n`` (a learned Petrov-Galerkin projection, O(N D^2)) or Fourier
``z = (LN(Q) LN(K)^T) V / n`` (a kernel integral, quadrature weight 1/n; evaluated as ``LN(Q)(LN(K)^T V) / n``,
the same product in linear cost). The points' coordinates are appended to every head's queries, keys and
values (``coordinates_in_heads``), as in the paper. Normalization sits inside the attention only.

Coordinates enter mapped onto the unit box of ``domain`` (the training points' bounding box, fitted by
``fit_to_data``), so that the model sees the same inputs whatever units and extent the mesh comes in.
"""

from __future__ import annotations

import torch
from torch import nn

from oplearn.errors import ConfigError
from oplearn.layers.coordinates import check_domain
from oplearn.layers.dense import dense_net
from oplearn.layers.point_attention import (LinearAttention, as_model_output, as_point_set, fit_dimension,
                                            map_over_points, require_dimension)
from oplearn.models.operator import Operator, PointHyper, register

FORMS = ("galerkin", "fourier")


class GalerkinBlock(nn.Module):
    """``h + Attention(h)`` then ``h + FFN(h)`` on points ``(B, N, width)``."""

    def __init__(self, width: int, n_heads: int, form: str, coordinate_dim: int, activation: str):
        super().__init__()
        self.attention = LinearAttention(width, n_heads, form, coordinate_dim)
        self.feed_forward = dense_net([width, 2 * width, width], activation)

    def forward(self, h: torch.Tensor, coords: torch.Tensor, mask: torch.Tensor | None, chunk: int | None):
        h = h + self.attention(h, h, coords, mask, chunk)
        return h + map_over_points(lambda part, x: self.feed_forward(x), [h], chunk)


@register("galerkin")
class GalerkinTransformer(Operator):
    """Galerkin (or Fourier) transformer on grids, meshes and point clouds; hyperparameters in :class:`Hyper`.

    Shapes: grids ``(B, C_in, *S) -> (B, C_out, *S)``; points ``(B, C_in, N)`` with ``coords (B, d, N)``
    and ``mask (B, N)`` ``-> (B, C_out, N)`` (zero at padded points).
    """

    geometries = frozenset({"grid", "mesh", "points"})

    class Hyper(PointHyper):
        dim: int | None = None
        """Dimension d of the points (grid axes); None: taken from the training data."""
        width: int = 64
        """Channels of the point features."""
        n_layers: int = 4
        """Attention blocks."""
        n_heads: int = 4
        """Attention heads (a divisor of width)."""
        attention: str = "galerkin"
        """"galerkin": Q (LN(K)^T LN(V)) / n; "fourier": (LN(Q) LN(K)^T) V / n."""
        activation: str = "gelu"
        """Name of the nonlinearity (gelu, relu, silu, tanh)."""
        coordinates_in_heads: bool = True
        """Append the coordinates to each head's queries, keys and values (Cao's positional encoding)."""
        chunk_points: int | None = None
        """Process this many points at a time in the attention's sums over points and in the pointwise
        feed-forward nets, each chunk recomputed in the backward pass: memory per point no longer grows with
        the slices, heads or hidden widths (big point sets); None: all points at once."""

    def __init__(self, in_channels: int, out_channels: int, **hyper):
        super().__init__(in_channels, out_channels, **hyper)
        h = self.hyper
        if min(in_channels, out_channels, h.width, h.n_layers, h.n_heads) < 1:
            raise ConfigError("in_channels, out_channels, width, n_layers and n_heads must be positive")
        if h.width % h.n_heads:
            raise ConfigError(f"width {h.width} must be a multiple of n_heads {h.n_heads}")
        if h.attention not in FORMS:
            raise ConfigError(f"unknown attention '{h.attention}'; choose one of: {', '.join(FORMS)}")
        if h.chunk_points is not None and h.chunk_points < 1:
            raise ConfigError(f"chunk_points must be positive, got {h.chunk_points}")
        if h.dim is not None:
            self._build()

    def _build(self) -> None:
        h = self.hyper
        dim = require_dimension(self.name, h.dim)
        check_domain(self.name, h.domain, dim)
        self.encoder = nn.Linear(self.in_channels + dim, h.width)
        coordinate_dim = dim if h.coordinates_in_heads else 0
        self.blocks = nn.ModuleList(GalerkinBlock(h.width, h.n_heads, h.attention, coordinate_dim, h.activation)
                                    for _ in range(h.n_layers))
        self.decoder = dense_net([h.width, 2 * h.width, self.out_channels], h.activation)

    def fit_to_data(self, train, encode_outputs=None) -> dict:
        """Take the points' dimension and bounding box from the training data and build the layers."""
        return fit_dimension(self, train)

    def forward(self, x: torch.Tensor, coords: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                queries: torch.Tensor | None = None, query_mask: torch.Tensor | None = None) -> torch.Tensor:
        dim = require_dimension(self.name, self.hyper.dim)
        features, points, mask, grid = as_point_set(self.name, self.in_channels, dim, x, coords, mask, queries,
                                                    self.hyper.domain)
        hidden = self.encoder(torch.cat([features, points], dim=-1))
        for block in self.blocks:
            hidden = block(hidden, points, mask, self.hyper.chunk_points)
        return as_model_output(self.decoder(hidden), grid, mask)
