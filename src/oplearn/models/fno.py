"""Fourier neural operator (Li et al., ICLR 2021).

    v_0 = P(a(x), x)                       lifting, pointwise
    v_{l+1} = sigma(K_l v_l + W_l v_l)     Fourier blocks, l = 0..L-1
    u(x) = Q(v_L(x))                       projection, pointwise MLP

``K_l`` is a :class:`~oplearn.layers.SpectralConv`, ``W_l`` a pointwise linear
map; the last block has no activation, as in the paper. The dimension ``d``
is ``len(modes)``. Grid coordinates in ``[0, 1]`` can be appended to the input
channels, and the domain can be zero-padded by a fraction of each axis so that
non-periodic problems are not forced into the periodic Fourier basis.

With ``mixer="kan"`` the lifting, the projection and every ``W_l`` are
Kolmogorov-Arnold layers over the channel axis (:class:`~oplearn.layers.kan.PointwiseKAN`)
instead of linear maps: a "KAN-FNO" is a config change (``model.mixer=kan``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from oplearn.analysis.width import apply_mup, check_parameterization, param_groups
from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.factorized_spectral import FACTORIZATIONS, spectral_conv
from oplearn.layers.kan import PointwiseKAN
from oplearn.layers.padding import DomainPadding
from oplearn.layers.pointwise import PointwiseLinear

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}
MIXERS = ("linear", "kan")


def pointwise_maps(mixer: str, kan_options: dict) -> Callable[[int, int], nn.Module]:
    """Factory ``(in_channels, out_channels) -> module`` of the pointwise maps: linear (1x1) or KAN layers."""
    if mixer == "linear":
        return PointwiseLinear
    return lambda n_in, n_out: PointwiseKAN(n_in, n_out, **kan_options)


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation '{name}'; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def grid_coordinates(sizes: Sequence[int], *, dtype, device) -> torch.Tensor:
    """Coordinates of the uniform grid on ``[0, 1]^d`` with both ends: ``(d, *sizes)``."""
    axes = [torch.linspace(0, 1, n, dtype=dtype, device=device) for n in sizes]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


class FourierBlock(nn.Module):
    """``sigma(K v + W v)``: spectral convolution plus pointwise linear path."""

    def __init__(self, width: int, modes: Sequence[int], activation_name: str | None,
                 pointwise: Callable[[int, int], nn.Module], factorization: str = "dense", rank: float = 1.0):
        super().__init__()
        self.spectral = spectral_conv(width, width, modes, factorization, rank)
        self.pointwise = pointwise(width, width)
        self.activation = make_activation(activation_name) if activation_name else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.spectral(x) + self.pointwise(x))


class FNO(nn.Module):
    """Fourier neural operator in 1, 2 or 3 dimensions.

    Args:
        in_channels, out_channels: channels of input and output functions.
        modes: Fourier modes kept per axis (see SpectralConv); ``len(modes)`` is d.
        width: channels inside the Fourier blocks.
        n_layers: number of Fourier blocks.
        activation: name of the nonlinearity (gelu, relu, silu, tanh).
        padding: zero padding at the end of each axis as a fraction of the domain
            length, for non-periodic problems. The Fourier layers see a period of
            about ``1 + padding``; once ``domain_padding.fix_period(training grid)``
            has run (the trainer does it), every grid gets exactly the training grid's
            period, which zero-shot super-resolution needs (``oplearn.layers.padding``).
            One number for every axis, or one per axis (e.g. ``[0, 0, 0.15]``: only time
            is padded in a space-time FNO on periodic space).
        grid: append the d grid coordinates to the input channels.
        projection_channels: hidden width of the projection MLP.
        mixer: "linear" (the paper's 1x1 maps) or "kan" (KANLinear over channels for the
            lifting, the projection and the pointwise path of every block).
        kan_basis, kan_grid_size, kan_order: KANLinear basis and its options (None: the
            basis' defaults, bspline with grid 5 and order 3); only with ``mixer="kan"``.
        factorization: spectral weights "dense" (SpectralConv), "tucker" or "cp" (low rank,
            see ``oplearn.layers.factorized_spectral``; "tucker" is the TFNO).
        rank: with a factorization, its size as a fraction of the dense parameter count.
        last_modes: modes of the last Fourier block (default ``modes``); set by
            :meth:`release_last_modes` for Spectral-Refiner fine-tuning.
        parameterization: "standard" or "mup" (maximal update: init and Adam learning rates
            scaled with ``width / base_width``, see ``oplearn.analysis.width``; linear mixer, dense weights).
        base_width: muP's reference width (default 32); at ``width == base_width`` muP is standard.
        checkpoint_blocks: activation checkpointing: keep only each Fourier block's input for the
            backward pass and recompute the block there (less memory, about one more forward in time).

    Shapes: ``(batch, in_channels, *spatial) -> (batch, out_channels, *spatial)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        modes: Sequence[int],
        width: int = 32,
        n_layers: int = 4,
        activation: str = "gelu",
        padding: float | Sequence[float] = 0.0,
        grid: bool = True,
        projection_channels: int = 128,
        mixer: str = "linear",
        kan_basis: str | None = None,
        kan_grid_size: int | None = None,
        kan_order: int | None = None,
        factorization: str = "dense",
        rank: float = 1.0,
        last_modes: Sequence[int] | None = None,
        parameterization: str = "standard",
        base_width: int | None = None,
        checkpoint_blocks: bool = False,
    ):
        super().__init__()
        check_parameterization(parameterization, base_width)
        modes = tuple(int(m) for m in modes)
        if not 1 <= len(modes) <= 3:
            raise ConfigError(f"modes must list 1 to 3 integers (one per spatial axis), got {modes}")
        if width < 1 or n_layers < 1 or in_channels < 1 or out_channels < 1:
            raise ConfigError("width, n_layers, in_channels and out_channels must be positive")
        paddings = tuple(float(p) for p in padding) if isinstance(padding, Sequence) else (float(padding),) * len(modes)
        if len(paddings) != len(modes) or not all(0.0 <= p < 1.0 for p in paddings):
            raise ConfigError(f"padding is a fraction of each axis in [0, 1), one number or one per axis "
                              f"({len(modes)}), got {padding}")
        kan_options = {"basis": kan_basis, "grid_size": kan_grid_size, "order": kan_order}
        if mixer not in MIXERS:
            raise ConfigError(f"unknown mixer '{mixer}'; choose one of: {', '.join(MIXERS)}")
        if mixer == "linear" and any(value is not None for value in kan_options.values()):
            raise ConfigError("kan_basis, kan_grid_size and kan_order apply only with mixer='kan'")
        kan_options["basis"] = kan_basis or "bspline"
        if factorization not in FACTORIZATIONS:
            raise ConfigError(f"unknown factorization '{factorization}'; choose one of: {', '.join(FACTORIZATIONS)}")
        if factorization == "dense" and rank != 1.0:
            raise ConfigError("rank applies only with factorization='tucker' or 'cp'")
        self.in_channels, self.out_channels, self.modes = in_channels, out_channels, modes
        self.domain_padding = DomainPadding(paddings)
        self.grid, self.mixer = grid, mixer
        self.checkpoint_blocks = checkpoint_blocks
        pointwise = pointwise_maps(mixer, kan_options)
        self.lifting = pointwise(in_channels + (len(modes) if grid else 0), width)
        last_modes = tuple(int(m) for m in last_modes) if last_modes is not None else modes
        if len(last_modes) != len(modes) or any(m < k for m, k in zip(last_modes, modes)):
            raise ConfigError(f"last_modes {last_modes} must give one count per axis, each >= modes {modes}")
        self.last_modes = last_modes
        self.blocks = nn.ModuleList(
            FourierBlock(width, last_modes if i == n_layers - 1 else modes,
                         activation if i < n_layers - 1 else None, pointwise,
                         factorization, rank) for i in range(n_layers)
        )
        self.projection = nn.Sequential(
            pointwise(width, projection_channels),
            make_activation(activation),
            pointwise(projection_channels, out_channels),
        )
        self.parameterization = parameterization
        if parameterization == "mup":
            with torch.device("meta"):
                base = FNO(in_channels, out_channels, modes, base_width or 32, n_layers, activation, padding, grid,
                           projection_channels, mixer, kan_basis, kan_grid_size, kan_order, factorization, rank,
                           last_modes)
            apply_mup(self, base)

    def optimizer_groups(self, lr: float) -> list[dict]:
        """Adam parameter groups: one at ``lr`` (standard) or per-layer muP learning rates."""
        return param_groups(self, lr)

    @property
    def paddings(self) -> tuple[float, ...]:
        """The padding fraction of each axis."""
        return self.domain_padding.fractions

    @property
    def dim(self) -> int:
        return len(self.modes)

    def release_last_modes(self, resolution: Sequence[int]) -> tuple[int, ...]:
        """Give the last Fourier block every mode a ``resolution`` grid (after padding) holds.

        Its old weights stay, the new modes start at zero, so the model's output is
        unchanged until they are trained. Returns the new ``last_modes``.
        """
        padded = [n + p for n, p in zip(resolution, self.domain_padding.points(resolution))]
        full = tuple(n // 2 for n in padded[:-1]) + (padded[-1] // 2 + 1,)
        block = self.blocks[-1]
        block.spectral = block.spectral.with_modes(full)
        self.last_modes = full
        return full

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ShapeError(
                f"FNO expects (batch, {self.in_channels}, {self.dim} spatial axes), got shape {tuple(x.shape)}"
            )
        sizes = x.shape[2:]
        if self.grid:
            coords = grid_coordinates(sizes, dtype=x.dtype, device=x.device)
            x = torch.cat([x, coords.expand(x.shape[0], *coords.shape)], dim=1)
        x = self.lifting(x)
        x = self.domain_padding.pad(x)
        for block in self.blocks:
            if self.checkpoint_blocks and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.projection(self.domain_padding.crop(x, sizes))
