"""Kolmogorov-Arnold network acting pointwise on the channel axis.

    v_0 = a(x),   v_{l+1} = Phi_l(v_l),   u(x) = v_L(x)

with every ``Phi_l`` a :class:`~oplearn.layers.kan.KANLinear` (a learnable function
per edge, no activation in between: the edges are the nonlinearity). The shape
``[in_channels, *widths, out_channels]`` is the KAN paper's ``[n_0, ..., n_L]``,
e.g. ``KAN(2, 1, widths=[1])`` is the paper's ``[2, 1, 1]`` network.
"""

from __future__ import annotations

import torch
from torch import nn

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.kan import KANLinear, prune, update_grids
from oplearn.models.operator import Hyperparameters, Operator, register


@register("kan")
class KAN(Operator):
    """A stack of KANLinear layers over channels; hyperparameters in :class:`KAN.Hyper`.

    Shapes: ``(batch, in_channels, *points) -> (batch, out_channels, *points)``, any number
    of point axes (a grid, the points of a mesh or a cloud) including none; the same network
    is applied at every point.
    """

    geometries = frozenset({"grid", "mesh", "points"})

    class Hyper(Hyperparameters):
        widths: tuple[int, ...] = ()
        """Hidden widths (may be empty: one KAN layer)."""
        basis: str = "bspline"
        """Basis of every KANLinear (see ``oplearn.layers.kan_bases.BASES``)."""
        grid_size: int | None = None
        """Basis option (None: the basis' default)."""
        order: int | None = None
        """Basis option (None: the basis' default)."""
        grid_range: tuple[float, float] | None = None
        """Basis option (None: the basis' default)."""
        groups: int | None = None
        """Basis option (None: the basis' default)."""
        base_path: bool | None = None
        """Add ``W silu(x)`` on every edge (None: the basis' default)."""
        spline_init_scale: float = 1.0
        """Initial range of the spline coefficients (see :class:`~oplearn.layers.kan.KANLinear`)."""

    def __init__(self, in_channels: int, out_channels: int, **hyper):
        super().__init__(in_channels, out_channels, **hyper)
        h = self.hyper
        sizes = [int(in_channels), *h.widths, int(out_channels)]
        if min(sizes) < 1:
            raise ConfigError(f"KAN channels and widths must be positive, got {sizes}")
        self.layers = nn.ModuleList(
            KANLinear(n_in, n_out, basis=h.basis, grid_size=h.grid_size, order=h.order, grid_range=h.grid_range,
                      groups=h.groups, base_path=h.base_path, spline_init_scale=h.spline_init_scale)
            for n_in, n_out in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor, coords: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pointwise: on meshes and point clouds the coordinates and padding mask are not needed."""
        if x.ndim < 2 or x.shape[1] != self.in_channels:
            raise ShapeError(f"KAN expects (batch, {self.in_channels}, *spatial), got shape {tuple(x.shape)}")
        x = x.movedim(1, -1)
        for layer in self.layers:
            x = layer(x)
        return x.movedim(-1, 1)

    def update_grid(self, x: torch.Tensor, grid_eps: float = 0.02, margin: float = 0.0) -> None:
        """Move every layer's grid to the values it sees for input ``x`` (layer by layer), keeping the function."""
        update_grids(self, x, grid_eps, margin)

    def extend_grid(self, new_grid_size: int) -> None:
        """Refine every layer's grid (see :meth:`KANLinear.extend_grid`); rebuild optimizers afterwards."""
        for layer in self.layers:
            layer.extend_grid(new_grid_size)

    def prune(self, threshold: float) -> dict:
        """Mask edges below ``threshold``, then every edge of hidden nodes left without inputs or outputs.

        Returns ``{"edges_kept", "edges_pruned", "dead_hidden": [[nodes of hidden layer 1], ...]}``.
        """
        reports = [prune(layer, threshold) for layer in self.layers]
        dead_hidden = []
        for left, right, left_report, right_report in zip(self.layers[:-1], self.layers[1:], reports, reports[1:]):
            dead = sorted(set(left_report["dead_outputs"]) | set(right_report["dead_inputs"]))
            left.edge_mask[dead, :] = False
            right.edge_mask[:, dead] = False
            dead_hidden.append(dead)
        kept = sum(int(layer.edge_mask.sum()) for layer in self.layers)
        total = sum(layer.edge_mask.numel() for layer in self.layers)
        return {"edges_kept": kept, "edges_pruned": total - kept, "dead_hidden": dead_hidden}
