"""Pointwise multilayer perceptron over channels.

    u(x) = W_L sigma(... sigma(W_1 a(x) + b_1) ...) + b_L

the same MLP applied at every point of a grid, mesh or cloud (no spatial coupling): the simplest
model, used as a baseline and for width-scaling studies (``parameterization="mup"``).
"""

from __future__ import annotations

import torch
from torch import nn

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.activations import make_activation
from oplearn.models.operator import Hyperparameters, Operator, register
from oplearn.models.width import apply_mup, check_parameterization, mup_base


@register("mlp")
class MLP(Operator):
    """``n_layers`` hidden layers of ``width`` units acting on the channel axis; hyperparameters in :class:`MLP.Hyper`.

    Shapes: ``(batch, in_channels, *points) -> (batch, out_channels, *points)``; ``points`` may be
    any number of axes (a grid, the points of a mesh or a cloud) or none.
    """

    geometries = frozenset({"grid", "mesh", "points"})

    class Hyper(Hyperparameters):
        width: int = 64
        """Hidden units per layer."""
        n_layers: int = 2
        """Hidden layers (>= 1): one input layer, ``n_layers - 1`` hidden-to-hidden layers, one output layer."""
        activation: str = "gelu"
        """Name of the nonlinearity (gelu, relu, silu, tanh)."""
        parameterization: str = "standard"
        """Initialization and learning rates: "standard" or "mup" (see ``oplearn.models.width``)."""
        base_width: int | None = None
        """muP's reference width (None: the default width, 64)."""

    def __init__(self, in_channels: int, out_channels: int, **hyper):
        super().__init__(in_channels, out_channels, **hyper)
        h = self.hyper
        if min(in_channels, out_channels, h.width, h.n_layers) < 1:
            raise ConfigError("in_channels, out_channels, width and n_layers must be positive")
        check_parameterization(h.parameterization, h.base_width)
        sizes = [in_channels] + [h.width] * h.n_layers
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), make_activation(h.activation)]
        self.net = nn.Sequential(*layers, nn.Linear(h.width, out_channels))
        if h.parameterization == "mup":
            apply_mup(self, mup_base(self))

    def forward(self, x: torch.Tensor, coords: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pointwise, so it needs neither point coordinates nor the padding mask (losses leave padding out)."""
        if x.ndim < 2 or x.shape[1] != self.in_channels:
            raise ShapeError(f"MLP expects (batch, {self.in_channels}, *spatial), got shape {tuple(x.shape)}")
        return self.net(x.movedim(1, -1)).movedim(-1, 1)
