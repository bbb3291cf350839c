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
from oplearn.layers.group_spectral import (POOLINGS, GroupLinear, GroupSpectralConv, check_square_grid, get_group,
                                          group_pool)
from oplearn.layers.pointwise import PointwiseLinear
from oplearn.layers.padding import DomainPadding
from oplearn.models.fno import grid_coordinates, make_activation


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


class GFNO(nn.Module):
    """Group-equivariant FNO on square 2-D grids.

    Args:
        in_channels, out_channels: channels (scalar fields) of input and output.
        modes: ``m`` or ``(m, m)``; keeps ``|k_x|, |k_y| <= m-1`` (``2m-1`` per axis, unlike FNO's ``2m``).
        width: channels per group element inside the blocks (the feature maps hold ``width * |H|``).
        n_layers: Fourier blocks, the first of them lifting to the group.
        group: "p4" (4 rotations) or "p4m" (4 rotations and 4 reflections).
        activation: nonlinearity (gelu, relu, silu, tanh), applied pointwise.
        padding: zero padding per axis as a fraction of the domain, for non-periodic data
            (keeps equivariance, see the module doc).
        grid: append the grid coordinates to the input (breaks equivariance, hence off).
        projection_channels: hidden width of the projection MLP.
        pooling: "mean" or "max" over the group axis at the end.

    Shapes: ``(batch, in_channels, n, n) -> (batch, out_channels, n, n)`` with ``n >= 2m-1``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        modes: int | Sequence[int],
        width: int = 16,
        n_layers: int = 4,
        group: str = "p4",
        activation: str = "gelu",
        padding: float = 0.0,
        grid: bool = False,
        projection_channels: int = 64,
        pooling: str = "mean",
    ):
        super().__init__()
        self.modes = square_modes(modes)
        get_group(group)
        if width < 1 or n_layers < 1 or in_channels < 1 or out_channels < 1:
            raise ConfigError("width, n_layers, in_channels and out_channels must be positive")
        if not 0.0 <= padding < 1.0:
            raise ConfigError(f"padding is a fraction of each axis in [0, 1), got {padding}")
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown group pooling '{pooling}'; choose one of: {', '.join(POOLINGS)}")
        self.in_channels, self.out_channels, self.group = in_channels, out_channels, group
        self.domain_padding = DomainPadding((padding, padding))
        self.grid, self.pooling = grid, pooling
        self.lifting = PointwiseLinear(in_channels + (2 if grid else 0), width)
        self.blocks = nn.ModuleList(
            GroupFourierBlock(width, self.modes, group, activation if i < n_layers - 1 else None, lifting=i == 0)
            for i in range(n_layers)
        )
        # Pointwise over (group, x, y): the same MLP for every group element.
        self.projection = nn.Sequential(
            PointwiseLinear(width, projection_channels),
            make_activation(activation),
            PointwiseLinear(projection_channels, out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(f"GFNO expects (batch, {self.in_channels}, n, n), got shape {tuple(x.shape)}")
        n = check_square_grid(x, self.modes, "GFNO")
        if self.grid:
            coords = grid_coordinates((n, n), dtype=x.dtype, device=x.device)
            x = torch.cat([x, coords.expand(x.shape[0], *coords.shape)], dim=1)
        x = self.lifting(x)
        x = self.domain_padding.pad(x)
        for block in self.blocks:
            x = block(x)
        x = self.domain_padding.crop(x, (n, n))
        return group_pool(self.projection(x), self.pooling)
