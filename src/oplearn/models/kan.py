"""Kolmogorov-Arnold network acting pointwise on the channel axis.

    v_0 = a(x),   v_{l+1} = Phi_l(v_l),   u(x) = v_L(x)

with every ``Phi_l`` a :class:`~oplearn.layers.kan.KANLinear` (a learnable function
per edge, no activation in between: the edges are the nonlinearity). The shape
``[in_channels, *widths, out_channels]`` is the KAN paper's ``[n_0, ..., n_L]``,
e.g. ``KAN(2, 1, widths=[1])`` is the paper's ``[2, 1, 1]`` network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.kan import KANLinear, prune, update_grids


class KAN(nn.Module):
    """Args:
        in_channels, out_channels: channels of input and output.
        widths: hidden widths (may be empty: one KAN layer).
        basis, grid_size, order, grid_range, groups, base_path, spline_init_scale: options of every KANLinear.

    Shapes: ``(batch, in_channels, *spatial) -> (batch, out_channels, *spatial)``, any number
    of spatial axes including none; the same network is applied at every point.
    """

    def __init__(self, in_channels: int, out_channels: int, widths: Sequence[int] = (), basis: str = "bspline",
                 grid_size: int | None = None, order: int | None = None,
                 grid_range: tuple[float, float] | None = None, groups: int | None = None,
                 base_path: bool | None = None, spline_init_scale: float = 1.0):
        super().__init__()
        sizes = [int(in_channels), *(int(w) for w in widths), int(out_channels)]
        if min(sizes) < 1:
            raise ConfigError(f"KAN channels and widths must be positive, got {sizes}")
        self.in_channels, self.out_channels, self.sizes = sizes[0], sizes[-1], sizes
        self.layers = nn.ModuleList(
            KANLinear(n_in, n_out, basis=basis, grid_size=grid_size, order=order, grid_range=grid_range,
                      groups=groups, base_path=base_path, spline_init_scale=spline_init_scale)
            for n_in, n_out in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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
