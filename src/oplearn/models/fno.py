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

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.activations import make_activation
from oplearn.layers.coordinates import append_coordinates
from oplearn.layers.factorized_spectral import FACTORIZATIONS, spectral_conv
from oplearn.layers.kan import PointwiseKAN
from oplearn.layers.padding import DomainPadding
from oplearn.layers.pointwise import PointwiseLinear
from oplearn.models.operator import Hyperparameters, Operator, register
from oplearn.models.width import apply_mup, check_parameterization, mup_base

MIXERS = ("linear", "kan")


def pointwise_maps(mixer: str, kan_options: dict) -> Callable[[int, int], nn.Module]:
    """Factory ``(in_channels, out_channels) -> module`` of the pointwise maps: linear (1x1) or KAN layers."""
    if mixer == "linear":
        return PointwiseLinear
    return lambda n_in, n_out: PointwiseKAN(n_in, n_out, **kan_options)


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


@register("fno")
class FNO(Operator):
    """Fourier neural operator in 1, 2 or 3 dimensions; hyperparameters in :class:`FNO.Hyper`.

    Shapes: ``(batch, in_channels, *spatial) -> (batch, out_channels, *spatial)``.
    """

    geometries = frozenset({"grid"})

    class Hyper(Hyperparameters):
        modes: tuple[int, ...]
        """Fourier modes kept per axis (see SpectralConv); ``len(modes)`` is the dimension d."""
        width: int = 32
        """Channels inside the Fourier blocks."""
        n_layers: int = 4
        """Number of Fourier blocks."""
        activation: str = "gelu"
        """Name of the nonlinearity (gelu, relu, silu, tanh)."""
        padding: float | tuple[float, ...] = 0.0
        """Zero padding at the end of each axis as a fraction of the domain length, for non-periodic
        problems: one number for every axis, or one per axis (e.g. ``[0, 0, 0.15]``: only time is padded
        in a space-time FNO on periodic space). The Fourier layers see a period of about ``1 + padding``;
        once ``domain_padding.fix_period(training grid)`` has run (the trainer does it), every grid gets
        exactly the training grid's period, which zero-shot super-resolution needs (``oplearn.layers.padding``)."""
        grid: bool = True
        """Append the d grid coordinates to the input channels."""
        projection_channels: int = 128
        """Hidden width of the projection MLP."""
        mixer: str = "linear"
        """Pointwise maps: "linear" (the paper's 1x1 maps) or "kan" (KANLinear over channels for the
        lifting, the projection and the pointwise path of every block)."""
        kan_basis: str | None = None
        """KANLinear basis with ``mixer="kan"`` (None: bspline)."""
        kan_grid_size: int | None = None
        """KANLinear grid size with ``mixer="kan"`` (None: the basis' default)."""
        kan_order: int | None = None
        """KANLinear order with ``mixer="kan"`` (None: the basis' default)."""
        factorization: str = "dense"
        """Spectral weights "dense" (SpectralConv), "tucker" or "cp" (low rank, see
        ``oplearn.layers.factorized_spectral``; "tucker" is the TFNO)."""
        rank: float = 1.0
        """With a factorization, its size as a fraction of the dense parameter count."""
        last_modes: tuple[int, ...] | None = None
        """Modes of the last Fourier block (None: ``modes``); set by :meth:`refine` for Spectral-Refiner
        fine-tuning."""
        parameterization: str = "standard"
        """Initialization and learning rates: "standard" or "mup" (maximal update: both scaled with
        ``width / base_width``, see ``oplearn.models.width``; linear mixer, dense weights)."""
        base_width: int | None = None
        """muP's reference width (None: the default width, 32); at ``width == base_width`` muP is standard."""
        checkpoint_blocks: bool = False
        """Activation checkpointing: keep only each Fourier block's input for the backward pass and
        recompute the block there (less memory, about one more forward in time)."""

    def __init__(self, in_channels: int, out_channels: int, **hyper):
        super().__init__(in_channels, out_channels, **hyper)
        h = self.hyper
        check_parameterization(h.parameterization, h.base_width)
        modes = h.modes
        if not 1 <= len(modes) <= 3:
            raise ConfigError(f"modes must list 1 to 3 integers (one per spatial axis), got {modes}")
        if h.width < 1 or h.n_layers < 1 or in_channels < 1 or out_channels < 1:
            raise ConfigError("width, n_layers, in_channels and out_channels must be positive")
        paddings = h.padding if isinstance(h.padding, tuple) else (h.padding,) * len(modes)
        if len(paddings) != len(modes) or not all(0.0 <= p < 1.0 for p in paddings):
            raise ConfigError(f"padding is a fraction of each axis in [0, 1), one number or one per axis "
                              f"({len(modes)}), got {h.padding}")
        kan_options = {"basis": h.kan_basis, "grid_size": h.kan_grid_size, "order": h.kan_order}
        if h.mixer not in MIXERS:
            raise ConfigError(f"unknown mixer '{h.mixer}'; choose one of: {', '.join(MIXERS)}")
        if h.mixer == "linear" and any(value is not None for value in kan_options.values()):
            raise ConfigError("kan_basis, kan_grid_size and kan_order apply only with mixer='kan'")
        kan_options["basis"] = h.kan_basis or "bspline"
        if h.factorization not in FACTORIZATIONS:
            raise ConfigError(f"unknown factorization '{h.factorization}'; choose one of: {', '.join(FACTORIZATIONS)}")
        if h.factorization == "dense" and h.rank != 1.0:
            raise ConfigError("rank applies only with factorization='tucker' or 'cp'")
        last_modes = h.last_modes or modes
        if len(last_modes) != len(modes) or any(m < k for m, k in zip(last_modes, modes)):
            raise ConfigError(f"last_modes {last_modes} must give one count per axis, each >= modes {modes}")
        self.modes = modes
        self.domain_padding = DomainPadding(paddings)
        pointwise = pointwise_maps(h.mixer, kan_options)
        self.lifting = pointwise(in_channels + (len(modes) if h.grid else 0), h.width)
        self.blocks = nn.ModuleList(
            FourierBlock(h.width, last_modes if i == h.n_layers - 1 else modes,
                         h.activation if i < h.n_layers - 1 else None, pointwise,
                         h.factorization, h.rank) for i in range(h.n_layers)
        )
        self.projection = nn.Sequential(
            pointwise(h.width, h.projection_channels),
            make_activation(h.activation),
            pointwise(h.projection_channels, out_channels),
        )
        if h.parameterization == "mup":
            apply_mup(self, mup_base(self))

    @property
    def dim(self) -> int:
        return len(self.modes)

    @property
    def paddings(self) -> tuple[float, ...]:
        """The padding fraction of each axis."""
        return self.domain_padding.fractions

    def refinable_parameters(self) -> list[nn.Parameter]:
        """The last Fourier block's spectral weights."""
        return list(self.blocks[-1].spectral.parameters())

    def refine(self, resolution: Sequence[int]) -> dict:
        """Give the last Fourier block every mode a ``resolution`` grid (after padding) holds.

        Per axis ``n // 2`` modes, ``n // 2 + 1`` on the last (rfft) axis, for the padded size ``n``.
        Its old weights stay, the new modes start at zero, so the model's output is unchanged
        until they are trained. Returns ``{"last_modes": [...]}``.
        """
        padded = [n + p for n, p in zip(resolution, self.domain_padding.points(resolution))]
        full = tuple(n // 2 for n in padded[:-1]) + (padded[-1] // 2 + 1,)
        block = self.blocks[-1]
        block.spectral = block.spectral.with_modes(full)
        updates = {"last_modes": list(full)}
        self.hyper = self.Hyper(**{**self.hyper.model_dump(), **updates})
        return updates

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ShapeError(
                f"FNO expects (batch, {self.in_channels}, {self.dim} spatial axes), got shape {tuple(x.shape)}"
            )
        sizes = x.shape[2:]
        if self.hyper.grid:
            x = append_coordinates(x)
        x = self.lifting(x)
        x = self.domain_padding.pad(x)
        for block in self.blocks:
            if self.hyper.checkpoint_blocks and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.projection(self.domain_padding.crop(x, sizes))
