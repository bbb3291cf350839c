"""Group-equivariant Fourier neural operator, 2-D (G-FNO, Helwig et al., ICML 2023).

    v_0(x)    = P a(x)                                      pointwise, scalar fields
    v_1(x, h) = sigma(K_lift v_0 + W_lift v_0)              lifting to the group
    v_{l+1}   = sigma(K_l v_l + W_l v_l)                     group Fourier blocks
    u(x)      = pool_h Q(v_L(x, h))                          projection per element, then mean/max over h

``K`` are :class:`~oplearn.layers.group_spectral.GroupSpectralConv`, ``W``
:class:`~oplearn.layers.group_spectral.GroupLinear`, ``Q`` a pointwise MLP shared
by all group elements; the last block has no activation, as in FNO. Every step
commutes with the group, so for ``g`` in p4 (quarter turns) or p4m (quarter
turns and reflections), ``G(g . a) = g . G(a)`` where ``g . a`` is
``torch.rot90``/``torch.flip`` of the square input array. Input and output
channels are treated as scalar fields (a velocity's components would also have
to be rotated, which this model does not do).

Idea of the paper, in our words: many PDE solution operators commute with
rotations and reflections of the domain (isotropic media, no preferred
direction). Instead of hoping an FNO learns that from data, build it in: carry
one copy of every feature per rotation/reflection, let each copy see the
correspondingly turned Fourier kernel, and average over the copies at the end.
The symmetry then holds exactly, for every weight, also on inputs the model
never saw in that orientation, and the parameters are shared across them.

``grid`` is off by default because it breaks the symmetry: coordinate
channels do not rotate with the input (the ``x`` channel of a turned input is
not the turned ``x`` channel). ``padding`` (default 0, for periodic data)
keeps it: on the padded periodic domain the zeros appended at the end of both
axes surround the ``n x n`` square on all sides, so a rotation about the
square's centre maps the padded layout to itself; the test suite checks this.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.activations import make_activation
from oplearn.layers.coordinates import append_coordinates
from oplearn.layers.group_spectral import (POOLINGS, GroupLinear, GroupSpectralConv, check_square_grid, get_group,
                                          group_pool)
from oplearn.layers.padding import DomainPadding
from oplearn.layers.pointwise import PointwiseLinear
from oplearn.models.operator import Hyperparameters, Operator, register


def square_modes(modes: int | Sequence[int]) -> int:
    """``m`` from ``m`` or ``(m, m)``; the mode set must be the same on both axes to be rotation-closed."""
    values = (modes,) if isinstance(modes, int) else tuple(modes)
    if len(values) == 2 and values[0] == values[1]:
        values = values[:1]
    if len(values) != 1 or int(values[0]) < 1:
        raise ConfigError(f"GFNO modes must be one positive integer m or (m, m) (the mode set must be "
                          f"closed under rotation), got {modes}")
    return int(values[0])


class GroupFourierBlock(nn.Module):
    """``sigma(K v + W v)`` on group feature maps; ``lifting=True`` takes scalar fields."""

    def __init__(self, width: int, modes: int, group: str, activation_name: str | None, lifting: bool):
        super().__init__()
        self.spectral = GroupSpectralConv(width, width, modes, group, lifting=lifting)
        self.pointwise = GroupLinear(width, width, group, lifting=lifting)
        self.activation = make_activation(activation_name) if activation_name else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.spectral(x) + self.pointwise(x))


@register("gfno")
class GFNO(Operator):
    """Group-equivariant FNO on square 2-D grids; hyperparameters in :class:`GFNO.Hyper`.

    Shapes: ``(batch, in_channels, n, n) -> (batch, out_channels, n, n)`` with ``n >= 2m-1``.
    """

    geometries = frozenset({"grid"})

    class Hyper(Hyperparameters):
        modes: int | tuple[int, ...]
        """``m`` or ``(m, m)``; keeps ``|k_x|, |k_y| <= m-1`` (``2m-1`` per axis, unlike FNO's ``2m``)."""
        width: int = 16
        """Channels per group element inside the blocks (the feature maps hold ``width * |H|``)."""
        n_layers: int = 4
        """Fourier blocks, the first of them lifting to the group."""
        group: str = "p4"
        """Symmetry group: "p4" (4 rotations) or "p4m" (4 rotations and 4 reflections)."""
        activation: str = "gelu"
        """Nonlinearity (gelu, relu, silu, tanh), applied pointwise."""
        padding: float = 0.0
        """Zero padding per axis as a fraction of the domain, for non-periodic data (keeps
        equivariance, see the module doc)."""
        grid: bool = False
        """Append the grid coordinates to the input (breaks equivariance, hence off)."""
        projection_channels: int = 64
        """Hidden width of the projection MLP."""
        pooling: str = "mean"
        """Pooling over the group axis at the end: "mean" or "max"."""

    def __init__(self, in_channels: int, out_channels: int, **hyper):
        super().__init__(in_channels, out_channels, **hyper)
        h = self.hyper
        self.modes = square_modes(h.modes)
        get_group(h.group)
        if h.width < 1 or h.n_layers < 1 or in_channels < 1 or out_channels < 1:
            raise ConfigError("width, n_layers, in_channels and out_channels must be positive")
        if not 0.0 <= h.padding < 1.0:
            raise ConfigError(f"padding is a fraction of each axis in [0, 1), got {h.padding}")
        if h.pooling not in POOLINGS:
            raise ConfigError(f"unknown group pooling '{h.pooling}'; choose one of: {', '.join(POOLINGS)}")
        self.domain_padding = DomainPadding((h.padding, h.padding))
        self.lifting = PointwiseLinear(in_channels + (2 if h.grid else 0), h.width)
        self.blocks = nn.ModuleList(
            GroupFourierBlock(h.width, self.modes, h.group, h.activation if i < h.n_layers - 1 else None,
                              lifting=i == 0)
            for i in range(h.n_layers)
        )
        # Pointwise over (group, x, y): the same MLP for every group element.
        self.projection = nn.Sequential(
            PointwiseLinear(h.width, h.projection_channels),
            make_activation(h.activation),
            PointwiseLinear(h.projection_channels, out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(f"GFNO expects (batch, {self.in_channels}, n, n), got shape {tuple(x.shape)}")
        n = check_square_grid(x, self.modes, "GFNO")
        if self.hyper.grid:
            x = append_coordinates(x)
        x = self.lifting(x)
        x = self.domain_padding.pad(x)
        for block in self.blocks:
            x = block(x)
        x = self.domain_padding.crop(x, (n, n))
        return group_pool(self.projection(x), self.hyper.pooling)
