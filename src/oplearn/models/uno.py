"""U-shaped neural operator (Rahman, Ross and Azizzadenesheli, 2022, "U-NO").

    v_{-1} = P(a(x), x)                                        lifting, pointwise, on the n-point grid
    v_l = sigma(K_l u_l + W_l R_l u_l)   on round(n * scale_l)  operator layers, l = 0..L-1
    u(x) = Q([v_{L-1}, v_0])                                   projection, pointwise MLP

Every layer maps a function on one grid to a function on another: ``K_l`` is a
:class:`~oplearn.layers.resampling_spectral.ResamplingSpectralConv` evaluated at the new size, ``R_l``
resamples ``u_l`` to it (Fourier or linear interpolation) and ``W_l`` is pointwise linear. The layer
``l`` input ``u_l`` is ``v_{l-1}`` and, in the expanding half, ``v_{L-l}`` concatenated to it (the
contracting layer's output on the same grid): the scales must read the same both ways
(``1, 0.5, 0.25, 0.5, 1``), so paired outputs share a grid. Sizes are ``round(n * scale)`` of the
(padded) input grid, computed from the scale and never from the previous level, so paired levels
always have the same number of points, on any grid. The last layer has no activation, as in the FNO.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.activations import make_activation
from oplearn.layers.coordinates import append_coordinates
from oplearn.layers.padding import DomainPadding
from oplearn.layers.pointwise import PointwiseLinear
from oplearn.layers.resampling_spectral import ResamplingSpectralConv, resampling
from oplearn.models.operator import Hyperparameters, Operator, register


class ResamplingFourierBlock(nn.Module):
    """``sigma(K v + W R v)`` from the grid of ``v`` to ``sizes``: ``(b, in, *n) -> (b, out, *sizes)``."""

    def __init__(self, in_channels: int, out_channels: int, modes: Sequence[int], activation_name: str | None,
                 resample: str):
        super().__init__()
        self.spectral = ResamplingSpectralConv(in_channels, out_channels, modes)
        self.pointwise = PointwiseLinear(in_channels, out_channels)
        self.resample = resampling(resample)
        self.activation = make_activation(activation_name) if activation_name else nn.Identity()

    def forward(self, x: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
        return self.activation(self.spectral(x, sizes) + self.pointwise(self.resample(x, sizes)))


@register("uno")
class UNO(Operator):
    """U-shaped neural operator in 1, 2 or 3 dimensions; hyperparameters in :class:`UNO.Hyper`.

    Shapes: ``(batch, in_channels, *spatial) -> (batch, out_channels, *spatial)`` on any grid on which
    every level holds its modes (see :meth:`level_sizes`).
    """

    geometries = frozenset({"grid"})

    class Hyper(Hyperparameters):
        modes: tuple[tuple[int, ...], ...]
        """Fourier modes of each layer, one count per axis (e.g. ``[[8, 8], [6, 6], [4, 4], [6, 6], [8, 8]]``);
        the number of lists is the number of layers, their length the dimension d. A layer's modes must fit
        both its input and its output grid."""
        scales: tuple[float, ...] = (1.0, 0.5, 0.25, 0.5, 1.0)
        """Grid of each layer's output as a fraction of the input grid; reads the same both ways and ends at 1."""
        channel_multipliers: tuple[float, ...] = (1.0, 2.0, 4.0, 2.0, 1.0)
        """Channels of each layer's output as a multiple of ``width``."""
        width: int = 32
        """Channels after the lifting; layer l has ``round(width * channel_multipliers[l])``."""
        activation: str = "gelu"
        """Name of the nonlinearity (gelu, relu, silu, tanh)."""
        resample: str = "fourier"
        """How the pointwise path moves to a layer's output grid: "fourier" (trigonometric interpolation,
        exact for band-limited fields) or "linear" (periodic linear interpolation)."""
        skips: bool = True
        """Concatenate each contracting layer's output to the expanding layer's input on the same grid."""
        padding: float | tuple[float, ...] = 0.0
        """Zero padding at the end of each axis as a fraction of the domain (one number or one per axis), as in
        the FNO: applied after the lifting, cropped before the projection, period fixed on the training grid."""
        grid: bool = True
        """Append the d grid coordinates to the input channels."""
        projection_channels: int = 128
        """Hidden width of the projection MLP."""

    def __init__(self, in_channels: int, out_channels: int, **hyper):
        super().__init__(in_channels, out_channels, **hyper)
        h = self.hyper
        n_layers = len(h.modes)
        dims = {len(m) for m in h.modes}
        if n_layers < 1 or len(dims) != 1 or not 1 <= min(dims) <= 3 or min(min(m) for m in h.modes) < 1:
            raise ConfigError(f"modes must list, per layer, 1 to 3 positive counts (the same number per layer), "
                              f"got {h.modes}")
        if len(h.scales) != n_layers or len(h.channel_multipliers) != n_layers:
            raise ConfigError(f"modes, scales and channel_multipliers need one entry per layer; got {n_layers}, "
                              f"{len(h.scales)} and {len(h.channel_multipliers)}")
        if min(h.scales) <= 0 or h.scales != h.scales[::-1] or h.scales[-1] != 1.0:
            raise ConfigError(f"scales must be positive, read the same both ways and end at 1 "
                              f"(e.g. [1, 0.5, 0.25, 0.5, 1]), got {list(h.scales)}")
        channels = [round(h.width * c) for c in h.channel_multipliers]
        if h.width < 1 or min(channels) < 1 or in_channels < 1 or out_channels < 1:
            raise ConfigError("width, every width * channel_multiplier, in_channels and out_channels must be positive")
        self.dim = dims.pop()
        paddings = h.padding if isinstance(h.padding, tuple) else (h.padding,) * self.dim
        if len(paddings) != self.dim or not all(0.0 <= p < 1.0 for p in paddings):
            raise ConfigError(f"padding is a fraction of each axis in [0, 1), one number or one per axis "
                              f"({self.dim}), got {h.padding}")
        self.domain_padding = DomainPadding(paddings)
        self.lifting = PointwiseLinear(in_channels + (self.dim if h.grid else 0), h.width)
        self.blocks = nn.ModuleList()
        previous = h.width
        for layer in range(n_layers):
            skip = self.skip_source(layer)
            self.blocks.append(ResamplingFourierBlock(
                previous + (channels[skip] if skip is not None else 0), channels[layer], h.modes[layer],
                h.activation if layer < n_layers - 1 else None, h.resample))
            previous = channels[layer]
        skip = self.skip_source(n_layers)
        self.projection = nn.Sequential(
            PointwiseLinear(previous + (channels[skip] if skip is not None else 0), h.projection_channels),
            make_activation(h.activation),
            PointwiseLinear(h.projection_channels, out_channels),
        )

    def skip_source(self, layer: int) -> int | None:
        """The contracting layer whose output joins layer ``layer``'s input (``n_layers``: the projection's), if any.

        Layer ``l`` takes ``v_{l-1}``, on the grid of ``scales[l-1]``; the layer ``L - l`` before it has the
        same scale and joins it when it lies strictly earlier than ``l - 1``.
        """
        source = len(self.hyper.modes) - layer
        return source if self.hyper.skips and source < layer - 1 else None

    def level_sizes(self, sizes: Sequence[int]) -> list[tuple[int, ...]]:
        """The grid of each layer's output for a (padded) input grid ``sizes``: ``round(n * scale)`` per axis."""
        return [tuple(max(1, round(n * scale)) for n in sizes) for scale in self.hyper.scales]

    def _check_levels(self, sizes: Sequence[int], padded: Sequence[int]) -> list[tuple[int, ...]]:
        levels = self.level_sizes(padded)
        for layer, (grid_in, grid_out) in enumerate(zip([tuple(padded)] + levels[:-1], levels)):
            modes = self.hyper.modes[layer]
            for grid in (grid_in, grid_out):
                if any(n < 2 * m for n, m in zip(grid[:-1], modes[:-1])) or grid[-1] // 2 + 1 < modes[-1]:
                    raise ShapeError(
                        f"UNO layer {layer} runs from a {grid_in} to a {grid_out} grid (input {tuple(sizes)}, "
                        f"padded {tuple(padded)}, scale {self.hyper.scales[layer]}); its modes {modes} need at least "
                        f"2 * modes points per axis (the last 2 * (modes - 1)): use a finer grid or fewer modes there")
        return levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ShapeError(
                f"UNO expects (batch, {self.in_channels}, {self.dim} spatial axes), got shape {tuple(x.shape)}")
        sizes = x.shape[2:]
        if self.hyper.grid:
            x = append_coordinates(x)
        x = self.domain_padding.pad(self.lifting(x))
        levels = self._check_levels(sizes, x.shape[2:])
        outputs: list[torch.Tensor] = []
        for layer, (block, grid) in enumerate(zip(self.blocks, levels)):
            skip = self.skip_source(layer)
            if skip is not None:
                x = torch.cat([x, outputs[skip]], dim=1)
            x = block(x, grid)
            outputs.append(x)
        skip = self.skip_source(len(self.blocks))
        if skip is not None:
            x = torch.cat([x, outputs[skip]], dim=1)
        return self.projection(self.domain_padding.crop(x, sizes))
