"""Transform Once (T1; Poli et al., NeurIPS 2022): one transform in, a network on the kept modes, one out.

    c = T_m a                                     the kept coefficients of the input (DFT or DCT-II), once
    z_0 = P c + b                                 lifting over channels, b a learned coefficient per mode
    z_{l+1} = (z_l + g sigma(C_l (M_{l,1} x_1 ... M_{l,d} x_d) z_l)) / sqrt(2)     frequency blocks
    u = T^{-1}(Q z_L)                             projection over channels, then one inverse transform

``T_m`` is :func:`~oplearn.layers.frequency_transforms.forward_transform` (the DFT for periodic data, the
DCT-II for non-periodic data) truncated to ``modes``; ``T^{-1}`` zero-fills the dropped modes. In between
the network never leaves frequency space: ``M_{l,i}`` is a learned ``k_i x k_i`` mode-to-mode map along
axis ``i`` (a separable map of the whole coefficient grid), ``C_l`` a channel map (one matrix for every
mode, or one per block of modes with ``mode_groups``), ``sigma`` the activation applied to the coefficients
(to real and imaginary parts, which are separate channels for the DFT), ``g`` its gain. With
``projection_channels`` the last step is instead ``u = MLP(T^{-1} z_L)`` pointwise, as in the FNO.

Variance preservation at initialisation (the paper's point: a frequency-domain layer's initialisation must
account for the spectrum being truncated). The coefficients are normalized so that Parseval holds against
the mean over the domain (``sum_k |c_k|^2 = mean_x |u|^2``), so the energy of the kept coefficients is the
mean square of the kept band of the function, the same on every grid; the rule is stated on them. Every
square map (``M_{l,i}``, ``C_l``) starts orthogonal, so it keeps the energy of any input exactly (non-square
ones, the lifting and projection, have variance ``1/fan_in``); ``g = E[sigma(G)^2]^{-1/2}``
(``G ~ N(0, 1)``) gives the activation unit mean square on unit-variance coefficients, and the residual
average ``(z + .) / sqrt(2)`` keeps it through the block: at initialisation a block's output/input mean
square is 1 on white-noise coefficients (tested to 2%), whatever the grid, the width or the modes.

Resolution: the model acts on the kept coefficients only, which a band-limited function has in common on
every grid that holds the modes (DFT on ``j/n``, DCT on cell centres ``(j + 1/2)/n``), so it is evaluated on
any such grid and gives the same function there. Cost: one truncated transform of the input channels, block
operations on ``width x prod(modes)`` tensors, one inverse transform of the output channels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.activations import make_activation
from oplearn.layers.frequency_transforms import (TRANSFORMS, check_grid_holds_modes, forward_transform,
                                                 inverse_transform, kept_shape)
from oplearn.layers.pointwise import PointwiseLinear
from oplearn.models.operator import Hyperparameters, Operator, register


def activation_gain(name: str) -> float:
    """``E[sigma(G)^2]^{-1/2}`` for ``G ~ N(0, 1)``: the factor that gives ``sigma`` unit mean square on
    standard normal inputs, by the trapezoidal rule on ``[-12, 12]`` (error below 1e-6)."""
    g = torch.linspace(-12.0, 12.0, 24001, dtype=torch.float64)
    density = torch.exp(-g.square() / 2) / math.sqrt(2 * math.pi)
    return float(torch.trapezoid(make_activation(name)(g).square() * density, g).rsqrt())


class ChannelMixing(nn.Module):
    """``z[b, :, k] -> W_{block(k)} z[b, :, k]``: a channel map per block of modes (one block: shared).

    Axis ``i``'s ``k_i`` kept modes are cut into ``groups[i]`` contiguous runs (as equal as can be; default
    one); the blocks are their products. Weights ``(prod(groups), out, in)``: orthogonal if square, else
    variance ``1/in``.
    Shapes: ``(batch, in_channels, *kept) -> (batch, out_channels, *kept)``, real.
    """

    def __init__(self, in_channels: int, out_channels: int, kept: tuple[int, ...],
                 groups: tuple[int, ...] | None = None):
        super().__init__()
        groups = groups or (1,) * len(kept)
        self.in_channels, self.out_channels, self.kept, self.groups = in_channels, out_channels, kept, groups
        block = torch.zeros((), dtype=torch.long)
        for k, g in zip(kept, groups):  # mixed radix: the block index from the run on each axis
            block = block[..., None] * g + torch.arange(k) * g // k
        self.register_buffer("block_of_mode", block.flatten(), persistent=False)
        self.weight = nn.Parameter(torch.empty(math.prod(groups), out_channels, in_channels))
        for matrix in self.weight.data:
            if in_channels == out_channels:
                nn.init.orthogonal_(matrix)
            else:
                nn.init.normal_(matrix, std=1 / math.sqrt(in_channels))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kept={self.kept}, groups={self.groups}"

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        flat = z.flatten(2)  # (b, in, M)
        if self.weight.shape[0] == 1:
            y = torch.matmul(self.weight[0], flat)
        else:  # one GEMM per mode: (M, b, in) @ (M, in, out)
            per_mode = self.weight if self.groups == self.kept else self.weight[self.block_of_mode]
            weights = per_mode.transpose(1, 2)
            y = torch.bmm(flat.permute(2, 0, 1), weights).permute(1, 2, 0)
        return y.reshape(z.shape[0], self.out_channels, *z.shape[2:])


class ModeMixing(nn.Module):
    """``z -> M_1 x_1 M_2 x_2 ... M_d x_d z``: a learned ``k_i x k_i`` map along each mode axis, the same for
    every channel (a separable mode-to-mode map, ``sum k_i^2`` weights), each orthogonal at initialisation.

    Shapes: ``(batch, channels, *kept) -> (batch, channels, *kept)``, real.
    """

    def __init__(self, kept: tuple[int, ...]):
        super().__init__()
        self.kept = kept
        self.maps = nn.ParameterList(nn.Parameter(nn.init.orthogonal_(torch.empty(k, k))) for k in kept)  # energy kept

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        last = z.ndim - 1
        for axis, matrix in enumerate(self.maps, start=2):
            if axis == last:
                z = torch.matmul(z, matrix.T)
            elif axis == last - 1:
                z = torch.matmul(matrix, z)
            else:
                z = torch.matmul(z.movedim(axis, -1), matrix.T).movedim(-1, axis)
        return z


class FrequencyBlock(nn.Module):
    """``z -> (z + g sigma(C(M z))) / sqrt(2)`` on kept coefficients, ``g`` the activation's gain
    (:func:`activation_gain`): the mean square of white noise is kept at initialisation.

    Shapes: ``(batch, width, *kept) -> (batch, width, *kept)``, real.
    """

    def __init__(self, width: int, kept: tuple[int, ...], activation: str, mode_groups: tuple[int, ...]):
        super().__init__()
        self.modes = ModeMixing(kept)
        self.channels = ChannelMixing(width, width, kept, mode_groups)
        self.activation = make_activation(activation)
        self.gain = activation_gain(activation)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        branch = self.activation(self.channels(self.modes(z)))
        return torch.add(z, branch, alpha=self.gain).mul_(math.sqrt(0.5))


@register("t1")
class T1(Operator):
    """Transform Once in 1, 2 or 3 dimensions; hyperparameters in :class:`T1.Hyper`.

    Shapes: ``(batch, in_channels, *spatial) -> (batch, out_channels, *spatial)`` on any grid holding
    ``modes`` (DFT: ``2 m_i`` points on every axis but the last, ``2 (m_d - 1)`` there; DCT: ``m_i``).
    """

    geometries = frozenset({"grid"})

    class Hyper(Hyperparameters):
        modes: tuple[int, ...]
        """Modes kept per axis; ``len(modes)`` is the dimension. DCT: cosines ``0..m-1`` per axis. DFT: the
        FNO convention, wavenumbers ``0..m-1`` and ``-m..-1`` on every axis but the last, ``0..m-1`` there."""
        transform: str = "dct"
        """"dct" (DCT-II, for non-periodic data) or "dft" (real DFT, for periodic data)."""
        width: int = 32
        """Real channels in frequency space (the DFT's real and imaginary parts are separate channels)."""
        n_layers: int = 4
        """Frequency blocks."""
        activation: str = "gelu"
        """Nonlinearity applied to the coefficients (gelu, relu, silu, tanh)."""
        mode_groups: int | None = None
        """Contiguous runs each axis' kept modes are cut into; each product of runs (a block of modes) has
        its own channel map. None: one map per kept mode, as the FNO's weights (``width^2 prod(kept)``
        weights per block); 1: one map shared by all modes (the leanest, ``width^2``)."""
        projection_channels: int = 0
        """0: project channels in frequency space and inverse-transform only the output channels (the lean
        path). Above 0: inverse-transform the width channels and apply a pointwise MLP with this hidden width."""

    def __init__(self, in_channels: int, out_channels: int, **hyper):
        super().__init__(in_channels, out_channels, **hyper)
        h = self.hyper
        if h.transform not in TRANSFORMS:
            raise ConfigError(f"unknown transform '{h.transform}'; choose one of: {', '.join(TRANSFORMS)}")
        if not 1 <= len(h.modes) <= 3 or min(h.modes) < 1:
            raise ConfigError(f"modes must list 1 to 3 positive integers (one per spatial axis), got {h.modes}")
        if min(h.width, h.n_layers, in_channels, out_channels) < 1 or h.projection_channels < 0:
            raise ConfigError("width, n_layers, in_channels and out_channels must be positive, "
                              "projection_channels >= 0")
        self.kept = kept_shape(h.transform, h.modes)
        if h.mode_groups is not None and not 1 <= h.mode_groups <= min(self.kept):
            raise ConfigError(f"mode_groups must be between 1 and the fewest kept modes on an axis "
                              f"({min(self.kept)}), or null for one group per mode; got {h.mode_groups}")
        groups = self.kept if h.mode_groups is None else (h.mode_groups,) * len(self.kept)
        parts = 2 if h.transform == "dft" else 1  # real and imaginary parts as channels
        if h.projection_channels and h.width % parts:
            raise ConfigError(f"transform dft with projection_channels inverse-transforms the width channels as "
                              f"(real, imaginary) pairs: width must be even, got {h.width}")
        self.lifting = ChannelMixing(parts * in_channels, h.width, self.kept)
        self.mode_bias = nn.Parameter(torch.zeros(h.width, *self.kept))
        self.blocks = nn.ModuleList(FrequencyBlock(h.width, self.kept, h.activation, groups)
                                    for _ in range(h.n_layers))
        if h.projection_channels:
            self.projection = nn.Sequential(PointwiseLinear(h.width // parts, h.projection_channels),
                                            make_activation(h.activation),
                                            PointwiseLinear(h.projection_channels, out_channels))
        else:
            self.projection = ChannelMixing(h.width, parts * out_channels, self.kept)

    @property
    def dim(self) -> int:
        return len(self.hyper.modes)

    def refine(self, resolution) -> dict:
        raise ConfigError("stage.recipe refine releases modes of spatial spectral layers; t1 acts on a fixed "
                          "set of modes (raise model.modes instead)")

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """The input's kept coefficients as real channels: ``(b, c, *spatial) -> (b, parts * c, *kept)``."""
        c = forward_transform(x, self.hyper.transform, self.hyper.modes)
        if c.is_complex():
            c = torch.view_as_real(c).movedim(-1, 2).flatten(1, 2)  # channels (re_1, im_1, re_2, ...)
        return c

    def function(self, z: torch.Tensor, sizes) -> torch.Tensor:
        """The function with real-channel coefficients ``z`` on a ``sizes`` grid:
        ``(b, parts * c, *kept) -> (b, c, *sizes)``."""
        if z.dtype in (torch.float16, torch.bfloat16):  # under autocast: the transforms run in float32
            z = z.float()
        if self.hyper.transform == "dft":
            z = torch.view_as_complex(z.unflatten(1, (-1, 2)).movedim(2, -1).contiguous())
        return inverse_transform(z, self.hyper.transform, self.hyper.modes, sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ShapeError(
                f"T1 expects (batch, {self.in_channels}, {self.dim} spatial axes), got shape {tuple(x.shape)}")
        sizes = tuple(x.shape[2:])
        check_grid_holds_modes(self.hyper.transform, sizes, self.hyper.modes)
        z = self.lifting(self.coefficients(x)) + self.mode_bias
        for block in self.blocks:
            z = block(z)
        if self.hyper.projection_channels:
            return self.projection(self.function(z, sizes)).to(x.dtype)
        return self.function(self.projection(z), sizes).to(x.dtype)
