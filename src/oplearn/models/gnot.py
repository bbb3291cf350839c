"""GNOT, the general neural operator transformer (Hao et al., ICML 2023).

    h_0 = MLP(x_i, a(x_i))               query embedding: the output points (with the inputs there, see below)
    y_l = MLP(a_l(x_i), x_i)             one embedding per input function (a group of input channels)
    per block:  h <- h + CrossAttention(LN h; LN y_1, ..., LN y_L)
                h <- h + MoE(LN h; x)
                h <- h + SelfAttention(LN h)
                h <- h + MoE(LN h; x)
    u(x_i) = MLP(h_i)

Both attentions are normalized linear attention (:class:`~oplearn.layers.point_attention.LinearAttention`,
form "normalized"): ``z_t = sum_i (q_t . k_i) v_i / sum_i (q_t . k_i)`` with softmax-ed features, summed over
the input functions in the cross-attention (heterogeneous attention). The geometric gating ``MoE(h; x) =
sum_e g_e(x) FFN_e(h)`` weighs E expert feed-forward nets by ``g = softmax(gate(x))`` of the coordinates only,
so each expert can specialize on a region of the domain.

Here the output points are the input points: batches with other query points are refused (the paper
allows any query points; this model predicts at the input points only). Because the inputs are known at
the output points, the query embedding sees them too (``query_inputs``; False: coordinates only, as in the
paper, where a pointwise part of the map must pass through the averaging cross-attention).

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


class GeometricMixture(nn.Module):
    """Mixture of experts gated by position: ``(B, N, width), coords (B, N, d) -> sum_e g_e(x) FFN_e(h)``."""

    def __init__(self, width: int, dim: int, n_experts: int, activation: str):
        super().__init__()
        self.gate = dense_net([dim, width, n_experts], activation)
        self.experts = nn.ModuleList(dense_net([width, 2 * width, width], activation) for _ in range(n_experts))

    def forward(self, h: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        gates = self.gate(coords).softmax(-1)                                         # (B, N, E)
        return sum(gates[..., e:e + 1] * expert(h) for e, expert in enumerate(self.experts))


class GNOTBlock(nn.Module):
    """Cross-attention to the input functions, gated experts, self-attention, gated experts (pre-norm)."""

    def __init__(self, width: int, n_heads: int, n_experts: int, n_inputs: int, dim: int, activation: str):
        super().__init__()
        self.cross_norm = nn.LayerNorm(width)
        self.input_norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(n_inputs))
        self.cross_attention = LinearAttention(width, n_heads, "normalized", n_sources=n_inputs)
        self.mixture_norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(2))
        self.mixtures = nn.ModuleList(GeometricMixture(width, dim, n_experts, activation) for _ in range(2))
        self.self_norm = nn.LayerNorm(width)
        self.self_attention = LinearAttention(width, n_heads, "normalized")

    def forward(self, h: torch.Tensor, inputs: list[torch.Tensor], coords: torch.Tensor,
                mask: torch.Tensor | None, chunk: int | None) -> torch.Tensor:
        keys = [norm(y) for norm, y in zip(self.input_norms, inputs)]
        h = h + self.cross_attention(self.cross_norm(h), keys, coords, mask, chunk)
        h = h + self._experts(0, h, coords, chunk)
        x = self.self_norm(h)
        h = h + self.self_attention(x, x, coords, mask, chunk)
        return h + self._experts(1, h, coords, chunk)

    def _experts(self, index: int, h: torch.Tensor, coords: torch.Tensor, chunk: int | None) -> torch.Tensor:
        mixture, norm = self.mixtures[index], self.mixture_norms[index]
        return map_over_points(lambda part, x, points: mixture(norm(x), points), [h, coords], chunk)


@register("gnot")
class GNOT(Operator):
    """GNOT on grids, meshes and point clouds; hyperparameters in :class:`GNOT.Hyper`.

    Shapes: grids ``(B, C_in, *S) -> (B, C_out, *S)``; points ``(B, C_in, N)`` with ``coords (B, d, N)``
    and ``mask (B, N)`` ``-> (B, C_out, N)`` (zero at padded points).
    """

    geometries = frozenset({"grid", "mesh", "points"})

    class Hyper(PointHyper):
        dim: int | None = None
        """Dimension d of the points (grid axes); None: taken from the training data."""
        width: int = 64
        """Channels of the point features."""
        n_layers: int = 2
        """GNOT blocks (cross-attention, experts, self-attention, experts)."""
        n_heads: int = 4
        """Attention heads (a divisor of width)."""
        n_experts: int = 3
        """Expert feed-forward nets in each geometric mixture."""
        activation: str = "gelu"
        """Name of the nonlinearity (gelu, relu, silu, tanh)."""
        query_inputs: bool = True
        """Embed the queries from their coordinates and the input values there (False: coordinates only)."""
        input_groups: list[int] | None = None
        """Input channels of each input function, in order (e.g. [1, 2]: channel 0 is one function, channels
        1-2 another), each with its own embedding and keys; None: all input channels are one function."""
        chunk_points: int | None = None
        """Process this many points at a time in the attention's sums over points and in the pointwise
        feed-forward nets, each chunk recomputed in the backward pass: memory per point no longer grows with
        the slices, heads or hidden widths (big point sets); None: all points at once."""

    def __init__(self, in_channels: int, out_channels: int, **hyper):
        super().__init__(in_channels, out_channels, **hyper)
        h = self.hyper
        if min(in_channels, out_channels, h.width, h.n_layers, h.n_heads, h.n_experts) < 1:
            raise ConfigError("in_channels, out_channels, width, n_layers, n_heads and n_experts must be positive")
        if h.width % h.n_heads:
            raise ConfigError(f"width {h.width} must be a multiple of n_heads {h.n_heads}")
        groups = h.input_groups or [in_channels]
        if min(groups) < 1 or sum(groups) != in_channels:
            raise ConfigError(f"input_groups {groups} must be positive channel counts summing to the "
                              f"{in_channels} input channels")
        if h.chunk_points is not None and h.chunk_points < 1:
            raise ConfigError(f"chunk_points must be positive, got {h.chunk_points}")
        self.groups = groups
        if h.dim is not None:
            self._build()

    def _build(self) -> None:
        h = self.hyper
        dim = require_dimension(self.name, h.dim)
        check_domain(self.name, h.domain, dim)
        query_channels = dim + (self.in_channels if h.query_inputs else 0)
        self.query_embedding = dense_net([query_channels, h.width, h.width], h.activation)
        self.input_embeddings = nn.ModuleList(dense_net([dim + group, h.width, h.width], h.activation)
                                              for group in self.groups)
        self.blocks = nn.ModuleList(GNOTBlock(h.width, h.n_heads, h.n_experts, len(self.groups), dim, h.activation)
                                    for _ in range(h.n_layers))
        self.decoder = dense_net([h.width, h.width, self.out_channels], h.activation)

    def fit_to_data(self, train, encode_outputs=None) -> dict:
        """Take the points' dimension and bounding box from the training data and build the layers."""
        return fit_dimension(self, train)

    def forward(self, x: torch.Tensor, coords: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                queries: torch.Tensor | None = None, query_mask: torch.Tensor | None = None) -> torch.Tensor:
        dim = require_dimension(self.name, self.hyper.dim)
        features, points, mask, grid = as_point_set(self.name, self.in_channels, dim, x, coords, mask, queries,
                                                    self.hyper.domain)
        functions = features.split(self.groups, dim=-1)
        inputs = [embed(torch.cat([points, f], dim=-1)) for embed, f in zip(self.input_embeddings, functions)]
        hidden = self.query_embedding(torch.cat([points, features], dim=-1) if self.hyper.query_inputs else points)
        for block in self.blocks:
            hidden = block(hidden, inputs, points, mask, self.hyper.chunk_points)
        return as_model_output(self.decoder(hidden), grid, mask)
