"""Pointwise multilayer perceptron over channels.

    u(x) = W_L sigma(... sigma(W_1 a(x) + b_1) ...) + b_L

the same MLP applied at every grid point (no spatial coupling): the simplest
model, used as a baseline and for width-scaling studies (``parameterization="mup"``).
"""

from __future__ import annotations

import torch
from torch import nn

from oplearn.analysis.width import apply_mup, check_parameterization, param_groups
from oplearn.errors import ConfigError, ShapeError
from oplearn.models.fno import make_activation


class MLP(nn.Module):
    """``n_layers`` hidden layers of ``width`` units acting on the channel axis.

    Args:
        in_channels, out_channels: channels of input and output functions.
        width: hidden units per layer.
        n_layers: hidden layers (>= 1): one input layer, ``n_layers - 1`` hidden-to-hidden
            layers, one output layer.
        activation: name of the nonlinearity (gelu, relu, silu, tanh).
        parameterization: "standard" or "mup" (see ``oplearn.analysis.width``).
        base_width: muP's reference width (default 64).

    Shapes: ``(batch, in_channels, *spatial) -> (batch, out_channels, *spatial)``; ``spatial`` may be empty.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int = 64, n_layers: int = 2,
                 activation: str = "gelu", parameterization: str = "standard", base_width: int | None = None):
        super().__init__()
        if min(in_channels, out_channels, width, n_layers) < 1:
            raise ConfigError("in_channels, out_channels, width and n_layers must be positive")
        check_parameterization(parameterization, base_width)
        self.in_channels, self.out_channels = in_channels, out_channels
        sizes = [in_channels] + [width] * n_layers
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), make_activation(activation)]
        self.net = nn.Sequential(*layers, nn.Linear(width, out_channels))
        self.parameterization = parameterization
        if parameterization == "mup":
            with torch.device("meta"):
                base = MLP(in_channels, out_channels, base_width or 64, n_layers, activation)
            apply_mup(self, base)

    def optimizer_groups(self, lr: float) -> list[dict]:
        """Adam parameter groups: one at ``lr`` (standard) or per-layer muP learning rates."""
        return param_groups(self, lr)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 2 or x.shape[1] != self.in_channels:
            raise ShapeError(f"MLP expects (batch, {self.in_channels}, *spatial), got shape {tuple(x.shape)}")
        return self.net(x.movedim(1, -1)).movedim(-1, 1)
