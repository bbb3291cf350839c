"""Coordinates of the uniform grid on ``[0, 1]^d``, the extra input channels of grid operators."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def grid_coordinates(sizes: Sequence[int], *, dtype, device) -> torch.Tensor:
    """``x_i = i / (n - 1)`` per axis, both ends included, as ``(d, *sizes)``."""
    axes = [torch.linspace(0, 1, n, dtype=dtype, device=device) for n in sizes]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def append_coordinates(x: torch.Tensor) -> torch.Tensor:
    """``(batch, channels, *sizes) -> (batch, channels + d, *sizes)``: the grid coordinates appended as channels."""
    coords = grid_coordinates(x.shape[2:], dtype=x.dtype, device=x.device)
    return torch.cat([x, coords.expand(x.shape[0], *coords.shape)], dim=1)
