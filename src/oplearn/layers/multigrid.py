"""A multigrid V-cycle as a learned linear operator between channel fields (MgNO's layer, He et al. 2023).

The V-cycle maps ``f (batch, in_channels, *grid) -> u (batch, out_channels, *grid)``, starting from
``u = 0`` on every level ``l = 0 .. levels - 1`` (level 0 the input grid, each next one coarsened by 2):

    u <- u + S (f - A u)               smoothing, ``pre`` steps (A: u -> f channels, S: f -> u channels)
    f' = R (f - A u),  u' = V(f')      restrict the residual, cycle on the coarser grid
    u <- u + P u'                      prolong the coarse correction
    u <- u + S (f - A u)               smoothing, ``post`` steps

and on the coarsest level only the ``pre + post`` smoothing steps. ``A``, every ``S`` (one per step) and
``R`` are 3x3 convolutions, ``P`` a 3x3 transposed convolution of stride 2, all without bias; with the
5-point Laplacian as ``A``, weighted Jacobi as ``S``, full weighting as ``R`` and linear interpolation as
``P`` it is the textbook geometric multigrid cycle (tests/layers/test_multigrid.py checks that it solves
Poisson's equation at a rate independent of the grid).

Boundaries are the convolutions' padding: "zeros" (Dirichlet-like), "reflect" (Neumann-like) or
"circular" (periodic). Coarse point ``j`` sits on fine point ``2 j + 1``: an axis of ``n`` points has
``n // 2`` coarse points. For odd ``n`` this is vertex-centred coarsening (a boundary one point outside
both ends stays one coarse point outside; on every level when ``n = 2**k - 1``), for even ``n`` it
coarsens a periodic axis exactly (the last window reads one padded point). Any size works: the
prolongation returns exactly the fine grid's size.
The stencils are in grid units, so the operator depends on the resolution (see ``oplearn.models.mgno``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from oplearn.errors import ConfigError, ShapeError

PADDING_MODES = ("zeros", "reflect", "circular")
CONVOLUTIONS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
TRANSPOSED_CONVOLUTIONS = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def check_padding_mode(padding_mode: str) -> None:
    """A one-line ConfigError unless ``padding_mode`` is one of :data:`PADDING_MODES`."""
    if padding_mode not in PADDING_MODES:
        raise ConfigError(f"unknown padding_mode '{padding_mode}'; choose one of: {', '.join(PADDING_MODES)}")


def pad(x: torch.Tensor, widths: Sequence[tuple[int, int]], padding_mode: str) -> torch.Tensor:
    """``x (batch, channels, *grid)`` padded by ``widths[i] = (before, after)`` on spatial axis ``i``."""
    flat = [w for before_after in reversed(widths) for w in before_after]  # F.pad lists the last axis first
    return F.pad(x, flat, mode="constant" if padding_mode == "zeros" else padding_mode)


def coarse_sizes(sizes: Sequence[int], levels: int) -> list[tuple[int, ...]]:
    """The grid sizes of the ``levels`` levels of a V-cycle on a ``sizes`` grid: each axis ``n -> n // 2``."""
    grids = [tuple(sizes)]
    for _ in range(levels - 1):
        grids.append(tuple(n // 2 for n in grids[-1]))
    return grids


class Restriction(nn.Module):
    """Strided 3x3 convolution ``(batch, C, *n) -> (batch, C, *(n // 2))``; coarse point j reads fine 2j, 2j+1, 2j+2.

    An even axis is padded by one point at its end (in the padding mode); an odd one is not padded.
    """

    def __init__(self, channels: int, dim: int, padding_mode: str):
        super().__init__()
        self.padding_mode = padding_mode
        self.conv = CONVOLUTIONS[dim](channels, channels, 3, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(pad(x, [(0, (n + 1) % 2) for n in x.shape[2:]], self.padding_mode))


class Prolongation(nn.Module):
    """Transposed 3x3 convolution of stride 2 ``(batch, C, *m) -> (batch, C, *size)``, for ``size[i] // 2 == m[i]``.

    Coarse point j spreads onto fine 2j, 2j+1, 2j+2 (the adjoint pattern of :class:`Restriction`). The
    coarse field is first padded by one point on each side in the padding mode, so that a periodic axis
    wraps around, and the result is cropped to exactly ``size``.
    """

    def __init__(self, channels: int, dim: int, padding_mode: str):
        super().__init__()
        self.padding_mode = padding_mode
        self.conv = TRANSPOSED_CONVOLUTIONS[dim](channels, channels, 3, stride=2, bias=False)

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        fine = self.conv(pad(x, [(1, 1)] * (x.ndim - 2), self.padding_mode))
        # padded coarse point j + 1 lands on output 2j + 3, i.e. fine point 2j + 1 sits at output index + 2
        return fine[(..., *(slice(2, 2 + n) for n in size))]


class MultigridLevel(nn.Module):
    """One level's operators: ``A`` (u -> f channels), the smoothers ``S`` (f -> u), and, unless it is the
    coarsest, the restriction of residuals and the prolongation of corrections."""

    def __init__(self, in_channels: int, out_channels: int, dim: int, padding_mode: str, smoothing_steps: int,
                 coarsest: bool):
        super().__init__()
        convolution = CONVOLUTIONS[dim]
        self.operator = convolution(out_channels, in_channels, 3, padding=1, padding_mode=padding_mode, bias=False)
        self.smoothers = nn.ModuleList(
            convolution(in_channels, out_channels, 3, padding=1, padding_mode=padding_mode, bias=False)
            for _ in range(smoothing_steps))
        self.restriction = None if coarsest else Restriction(in_channels, dim, padding_mode)
        self.prolongation = None if coarsest else Prolongation(out_channels, dim, padding_mode)

    def smooth(self, u: torch.Tensor | None, f: torch.Tensor, smoothers: Sequence[nn.Module]) -> torch.Tensor:
        """``u <- u + S (f - A u)`` for each smoother ``S``; ``u = None`` stands for zero."""
        for smoother in smoothers:
            u = smoother(f) if u is None else u + smoother(f - self.operator(u))
        return u


class VCycle(nn.Module):
    """One multigrid V-cycle from ``u = 0``: ``(batch, in_channels, *grid) -> (batch, out_channels, *grid)``.

    ``levels`` grids (1 = smoothing only), ``smoothing = (pre, post)`` steps per level (the coarsest does
    both), convolutions of dimension ``dim`` with ``padding_mode`` boundaries. Linear in its input.
    """

    def __init__(self, in_channels: int, out_channels: int, dim: int = 2, levels: int = 4,
                 smoothing: tuple[int, int] = (1, 1), padding_mode: str = "zeros"):
        super().__init__()
        check_padding_mode(padding_mode)
        if dim not in CONVOLUTIONS:
            raise ConfigError(f"dim must be 1, 2 or 3, got {dim}")
        if levels < 1:
            raise ConfigError(f"levels must be at least 1, got {levels}")
        pre, post = smoothing
        if pre < 0 or post < 0 or pre + post < 1:
            raise ConfigError(f"smoothing (pre, post) steps must be >= 0 with at least one in all, got {smoothing}")
        self.in_channels, self.out_channels, self.dim = in_channels, out_channels, dim
        self.pre, self.post, self.padding_mode = pre, post, padding_mode
        self.levels = nn.ModuleList(
            MultigridLevel(in_channels, out_channels, dim, padding_mode, pre + post, coarsest=level == levels - 1)
            for level in range(levels))

    def check_grid(self, sizes: Sequence[int]) -> None:
        """A one-line ShapeError unless every level of a ``sizes`` grid has the points its padding needs."""
        smallest = 2 if self.padding_mode == "reflect" else 1
        coarsest = coarse_sizes(sizes, len(self.levels))[-1]
        if min(coarsest) < smallest:
            needed = smallest * 2 ** (len(self.levels) - 1)
            raise ShapeError(f"a grid {tuple(sizes)} is too small for {len(self.levels)} multigrid levels with "
                             f"padding_mode '{self.padding_mode}': every axis needs at least {needed} points; "
                             f"lower levels or use a finer grid")

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if f.ndim != self.dim + 2 or f.shape[1] != self.in_channels:
            raise ShapeError(f"VCycle expects (batch, {self.in_channels}, {self.dim} spatial axes), "
                             f"got shape {tuple(f.shape)}")
        self.check_grid(f.shape[2:])
        return self.cycle(0, f)

    def cycle(self, index: int, f: torch.Tensor) -> torch.Tensor:
        level = self.levels[index]
        if level.restriction is None:
            return level.smooth(None, f, level.smoothers)
        u = level.smooth(None, f, level.smoothers[:self.pre])
        residual = f if u is None else f - level.operator(u)
        correction = level.prolongation(self.cycle(index + 1, level.restriction(residual)), f.shape[2:])
        u = correction if u is None else u + correction
        return level.smooth(u, f, level.smoothers[self.pre:])
