"""The neural spectral block of Latent Spectral Models (Wu et al., ICML 2023): attention to a few latent
tokens, a sin/cos expansion there, attention back to the points.

On a feature map ``x (batch, C, *sizes)`` cut into patches of ``patch`` points per axis (the last ones
padded with points that take no part), each patch of points ``x_j`` is summarised by ``T`` tokens

    z_t = sum_j a_tj V x_j,        a_tj = softmax_j(q_t . K x_j / sqrt(C))      (q_t learned, per block)

whose evolution is a learned trigonometric series in each channel (the latent "neural spectral" solver)

    z'_tc = b_c + sum_{k=1..K} A_kc sin(k z_tc) + B_kc cos(k z_tc)

and every point reads the evolved tokens back, ``y_j = x_j + O sum_t w_jt z'_t`` with
``w_jt = softmax_t(Q x_j . z'_t / sqrt(C))``. Token weights sum to one over the real points of the
patch, point weights over the tokens. Shapes: ``(batch, C, *sizes) -> (batch, C, *sizes)``, 1-3 axes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class TrigonometricExpansion(nn.Module):
    """``z -> b + sum_{k=1..K} A_k sin(k z) + B_k cos(k z)`` in each channel: ``(..., C) -> (..., C)``.

    Weights ``sin_weight``, ``cos_weight`` ``(K, C)`` and ``bias (C,)``.
    """

    def __init__(self, channels: int, n_basis: int):
        super().__init__()
        scale = 1.0 / math.sqrt(2 * n_basis)
        self.sin_weight = nn.Parameter(scale * torch.randn(n_basis, channels))
        self.cos_weight = nn.Parameter(scale * torch.randn(n_basis, channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("frequencies", torch.arange(1, n_basis + 1, dtype=torch.float32), persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        phases = z[..., None, :] * self.frequencies.to(z.dtype)[:, None]  # (..., K, C)
        return self.bias + (torch.sin(phases) * self.sin_weight).sum(-2) + (torch.cos(phases) * self.cos_weight).sum(-2)


def patch_grid(sizes: Sequence[int], patch: Sequence[int]) -> tuple[int, ...]:
    """Patch counts per axis, ``ceil(n / p)``."""
    return tuple(-(-n // p) for n, p in zip(sizes, patch))


def patchify(x: torch.Tensor, patch: Sequence[int]) -> torch.Tensor:
    """``(B, C, *sizes) -> (B * n_patches, C, prod(patch))``, zero-padded at the end of each axis to whole patches."""
    batch, channels, *sizes = x.shape
    counts = patch_grid(sizes, patch)
    x = F.pad(x, [pad for n, p, c in reversed(list(zip(sizes, patch, counts))) for pad in (0, c * p - n)])
    x = x.reshape(batch, channels, *[size for c, p in zip(counts, patch) for size in (c, p)])
    d = len(sizes)
    x = x.permute(0, *[2 + 2 * i for i in range(d)], 1, *[3 + 2 * i for i in range(d)])
    return x.reshape(batch * math.prod(counts), channels, math.prod(patch))


def unpatchify(patches: torch.Tensor, batch: int, sizes: Sequence[int], patch: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``(B * n_patches, C, prod(patch)) -> (B, C, *sizes)``, padding cropped."""
    counts, d = patch_grid(sizes, patch), len(sizes)
    channels = patches.shape[1]
    x = patches.reshape(batch, *counts, channels, *patch)
    inverse = [0, d + 1] + [index for i in range(d) for index in (1 + i, d + 2 + i)]
    x = x.permute(*inverse).reshape(batch, channels, *[c * p for c, p in zip(counts, patch)])
    return x[(..., *[slice(0, n) for n in sizes])]


class NeuralSpectralBlock(nn.Module):
    """Points -> latent tokens -> trigonometric evolution -> points, patch by patch, with a residual.

    ``patch_size`` is in points per axis; on a grid smaller than a patch the patch is the whole axis.
    Shapes: ``(batch, channels, *sizes) -> (batch, channels, *sizes)``.
    """

    def __init__(self, channels: int, n_tokens: int, n_basis: int, patch_size: Sequence[int]):
        super().__init__()
        self.patch_size = tuple(int(p) for p in patch_size)
        self.tokens = nn.Parameter(torch.randn(n_tokens, channels) / math.sqrt(channels))
        self.point_keys = nn.Linear(channels, channels)
        self.point_values = nn.Linear(channels, channels)
        self.expansion = TrigonometricExpansion(channels, n_basis)
        self.point_queries = nn.Linear(channels, channels)
        self.output = nn.Linear(channels, channels)

    def patch_for(self, sizes: Sequence[int]) -> tuple[int, ...]:
        return tuple(min(p, n) for p, n in zip(self.patch_size, sizes))

    def token_weights(self, points: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """``a (P, T, M)``: each token's attention over the ``M`` points of a patch (zero at padding),
        from ``points (P, M, C)`` and ``real (P, M)`` True at points of the grid."""
        scores = self.tokens @ self.point_keys(points).transpose(1, 2) / math.sqrt(points.shape[-1])
        return scores.masked_fill(~real[:, None, :], float("-inf")).softmax(dim=-1)

    def point_weights(self, points: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """``w (P, M, T)``: each point's attention over the ``T`` evolved tokens ``(P, T, C)``."""
        return (self.point_queries(points) @ tokens.transpose(1, 2) / math.sqrt(points.shape[-1])).softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, *sizes = x.shape
        patch = self.patch_for(sizes)
        points = patchify(x, patch).transpose(1, 2)  # (P, M, C)
        real = (patchify(x.new_ones(1, 1, *sizes), patch)[:, 0] > 0).repeat(batch, 1)
        tokens = self.token_weights(points, real) @ self.point_values(points)  # (P, T, C)
        evolved = self.expansion(tokens)
        read = self.output(self.point_weights(points, evolved) @ evolved)  # (P, M, C)
        return x + unpatchify(read.transpose(1, 2), batch, sizes, patch)
