"""Coordinates: the uniform grid on ``[0, 1]^d`` (the extra input channels of grid operators), and the
bounding box of a dataset's points that point operators map onto the unit box."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from oplearn.errors import ConfigError


def grid_coordinates(sizes: Sequence[int], *, dtype, device) -> torch.Tensor:
    """``x_i = i / (n - 1)`` per axis, both ends included, as ``(d, *sizes)``."""
    axes = [torch.linspace(0, 1, n, dtype=dtype, device=device) for n in sizes]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def append_coordinates(x: torch.Tensor) -> torch.Tensor:
    """``(batch, channels, *sizes) -> (batch, channels + d, *sizes)``: the grid coordinates appended as channels."""
    coords = grid_coordinates(x.shape[2:], dtype=x.dtype, device=x.device)
    return torch.cat([x, coords.expand(x.shape[0], *coords.shape)], dim=1)


def bounding_box(train) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(low, high)`` per axis of the real points of the dataset ``train`` (padded points left out), in one
    streaming pass; grids are the unit box, where their nodes ``i / (n - 1)`` lie."""
    if train.kind == "grid":
        dim = len(train.resolution)
        return (0.0,) * dim, (1.0,) * dim
    low, high = None, None
    for batch in train.batches(64):
        coords = batch.coords.double()
        real = torch.ones_like(coords[:, 0], dtype=torch.bool) if batch.mask is None else batch.mask
        batch_low = torch.where(real[:, None], coords, torch.inf).amin((0, 2))
        batch_high = torch.where(real[:, None], coords, -torch.inf).amax((0, 2))
        low = batch_low if low is None else torch.minimum(low, batch_low)
        high = batch_high if high is None else torch.maximum(high, batch_high)
    return tuple(low.tolist()), tuple(high.tolist())


def unit_box(low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, size)`` per axis of the box ``[low, high]``, which ``(x - low) / size`` maps onto the unit box; an
    axis of zero extent gets size 1 (its points go to 0, not to NaN)."""
    return low, torch.where(high > low, high - low, torch.ones_like(high))


def check_domain(name: str, domain, dim: int) -> None:
    """A ``domain`` box ``[[low...], [high...]]`` must have ``dim`` numbers a side (None passes)."""
    if domain is not None and not (len(domain[0]) == len(domain[1]) == dim):
        raise ConfigError(f"model {name}: domain must be [[low...], [high...]] with {dim} numbers each, got {domain}")
