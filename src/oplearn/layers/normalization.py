"""Normalization of channel-first fields."""

from __future__ import annotations

import torch
from torch import nn


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis at every point: ``(batch, channels, *spatial)``, shape kept."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)
