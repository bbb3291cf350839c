"""Losses between functions sampled on a grid.

All losses take ``(batch, channels, *spatial)`` tensors and average a
per-sample value over the batch.
"""

from __future__ import annotations

import torch


def relative_lp_loss(prediction: torch.Tensor, target: torch.Tensor, p: float = 2.0,
                     reduction: str = "mean") -> torch.Tensor:
    """Per-sample relative error ``||prediction - target||_p / ||target||_p``.

    Norms are over all channels and grid points of a sample (the grid spacing
    cancels in the ratio). ``reduction``: ``"mean"``, ``"sum"`` or ``"none"``
    (a ``(batch,)`` tensor).
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    difference = torch.linalg.vector_norm((prediction - target).flatten(1), ord=p, dim=1)
    scale = torch.linalg.vector_norm(target.flatten(1), ord=p, dim=1)
    per_sample = difference / scale.clamp_min(torch.finfo(scale.dtype).tiny)
    if reduction == "none":
        return per_sample
    if reduction == "sum":
        return per_sample.sum()
    return per_sample.mean()
