"""Geometry-informed neural operator (Li et al., NeurIPS 2023).

    v(y) = P(a(y), y)                                       lifting at the input points y
    w(z) = 1/|B_r(z)| sum_{y in B_r(z)} kappa_in(z, y) * v(y)   GNO encoder onto the latent grid nodes z
    w <- FNO blocks sigma(K w + W w) on the latent grid     (the last without activation)
    u(x) = Q(1/|B_r(x)| sum_{z in B_r(x)} kappa_out(x, z) * w(z))   GNO decoder at the output points x

with vector kernels on the coordinates only (:class:`~oplearn.layers.kernel_integral.KernelIntegral`,
form "linear"). The latent grid is ``latent_grid`` (default ``4 * modes``) nodes ``i / (n - 1)`` over the
unit box, onto which the ``domain`` box is mapped (:mod:`oplearn.models.gno`). Output points: the input points, or
``queries (d, Q)`` / ``(B, d, Q)`` when given (in the data's coordinates; grid coordinates on grids).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from oplearn.errors import ConfigError
from oplearn.layers.activations import make_activation
from oplearn.layers.coordinates import check_domain, grid_coordinates
from oplearn.layers.kernel_integral import KernelIntegral
from oplearn.layers.neighbors import radius_neighbors
from oplearn.layers.padding import DomainPadding
from oplearn.layers.pointwise import PointwiseLinear
from oplearn.models.fno import FourierBlock
from oplearn.models.gno import PointOperator, projection_net
from oplearn.models.operator import PointHyper, register


@register("gino")
class GINO(PointOperator):
    """GNO encoder, FNO on a latent grid, GNO decoder; hyperparameters in :class:`GINO.Hyper`.

    Shapes: ``(B, C_in, N)`` at ``coords (B, d, N)`` -> ``(B, C_out, N)`` (or ``(B, C_out, Q)`` at queries);
    grids ``(B, C_in, *S) -> (B, C_out, *S)``.
    """

    predicts_at_queries = True

    class Hyper(PointHyper):
        modes: tuple[int, ...]
        """Fourier modes per axis of the latent FNO (see SpectralConv); its length is the dimension d."""
        latent_grid: tuple[int, ...] | None = None
        """Nodes per axis of the latent grid (None: ``4 * modes``)."""
        width: int = 32
        """Channels of the lifted function and of the latent FNO."""
        fno_layers: int = 4
        """Fourier blocks on the latent grid."""
        radius: float = 0.1
        """Radius of the encoder's and decoder's neighbourhoods in unit-box lengths; at least half a latent
        cell's diagonal, so that every point has a latent node in reach."""
        kernel_width: int = 64
        """Hidden units of the kernel MLPs."""
        kernel_layers: int = 2
        """Hidden layers of the kernel MLPs."""
        activation: str = "gelu"
        """Name of the nonlinearity (gelu, relu, silu, tanh)."""
        padding: float = 0.0
        """Zero padding of the latent grid as a fraction of each axis (non-periodic problems, as in FNO)."""
        projection_channels: int = 128
        """Hidden width of the projection MLP."""
        chunk_edges: int = 1 << 18
        """Edges whose kernel is evaluated at once (memory: about chunk_edges x kernel_width floats)."""

    def __init__(self, in_channels: int, out_channels: int, **hyper):
        super().__init__(in_channels, out_channels, **hyper)
        h = self.hyper
        dim = len(h.modes)
        self.latent_grid = tuple(h.latent_grid or (4 * m for m in h.modes))
        if not 1 <= dim <= 3 or len(self.latent_grid) != dim or min(self.latent_grid) < 2 or min(h.modes) < 1:
            raise ConfigError(f"modes lists 1 to 3 positive counts and latent_grid one node count (>= 2) per axis; "
                              f"got modes={h.modes}, latent_grid={h.latent_grid}")
        if min(in_channels, out_channels, h.width, h.fno_layers, h.kernel_width, h.projection_channels) < 1:
            raise ConfigError("in_channels, out_channels, width, fno_layers, kernel_width and projection_channels "
                              "must be positive")
        reach = 0.5 * math.sqrt(sum(1 / (n - 1) ** 2 for n in self.latent_grid))
        if not h.radius >= reach:
            raise ConfigError(f"radius {h.radius} leaves points without a latent node in reach; with latent_grid "
                              f"{list(self.latent_grid)} it must be at least {reach:.4g}")
        check_domain(self.name, h.domain, dim)
        if not 0.0 <= h.padding < 1.0:
            raise ConfigError(f"padding is a fraction of each axis in [0, 1), got {h.padding}")
        self.lifting = PointwiseLinear(in_channels + dim, h.width)
        self.encoder = KernelIntegral(h.width, h.width, dim, h.kernel_width, h.kernel_layers, "linear",
                                      h.activation, h.chunk_edges)
        self.domain_padding = DomainPadding((h.padding,) * dim)
        self.domain_padding.fix_period(self.latent_grid)  # the latent grid never changes
        self.blocks = nn.ModuleList(
            FourierBlock(h.width, h.modes, h.activation if i < h.fno_layers - 1 else None, PointwiseLinear)
            for i in range(h.fno_layers))
        self.decoder = KernelIntegral(h.width, h.width, dim, h.kernel_width, h.kernel_layers, "linear",
                                      h.activation, h.chunk_edges)
        self.projection = projection_net(h.width, h.projection_channels, out_channels, h.activation)
        self.activation = make_activation(h.activation)

    @property
    def dim(self) -> int:
        return len(self.hyper.modes)

    def dimension_hint(self, dim: int) -> str:
        return f"give modes (and latent_grid) {dim} numbers each"

    def forward(self, x: torch.Tensor, coords: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                queries: torch.Tensor | None = None, query_mask: torch.Tensor | None = None) -> torch.Tensor:
        values, points, mask, grid, box = self.as_points(x, coords, mask)
        batch, h = values.shape[0], self.hyper
        nodes = grid_coordinates(self.latent_grid, dtype=values.dtype, device=values.device).reshape(self.dim, -1)
        nodes = nodes.expand(batch, *nodes.shape)
        if queries is None:
            targets, target_mask = points, mask
        else:
            targets, target_mask, grid = self.query_points(queries, query_mask, batch, box, values), query_mask, None
        v = self.lifting(torch.cat([values, points.to(values.dtype)], dim=1))
        w = self.encoder(v, points, nodes, radius_neighbors(points, nodes, h.radius, source_mask=mask))
        w = self.domain_padding.pad(w.reshape(batch, h.width, *self.latent_grid))
        for block in self.blocks:
            w = block(w)
        w = self.domain_padding.crop(w, self.latent_grid).reshape(batch, h.width, -1)
        u = self.decoder(w, nodes, targets, radius_neighbors(nodes, targets, h.radius, query_mask=target_mask))
        return self.finish(self.projection(self.activation(u)), target_mask, grid)
