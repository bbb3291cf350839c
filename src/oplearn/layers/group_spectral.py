"""Group-equivariant Fourier layers on a square periodic grid: groups p4 and p4m.

A feature map on the group is a tensor ``(batch, channels, |H|, n, n)``: one
``n x n`` field per element ``h`` of the point group ``H`` (4 rotations for
"p4"; 4 rotations and 4 reflections for "p4m"). ``g`` in ``H`` acts on it by
the regular representation,

    (g . f)(x, h) = f(g^-1 x, g^-1 h),

a spatial rotation/reflection of every field together with a permutation of
the group axis. The layers below commute with this action:

    lifting    out_h(k)  = W(h^-1 k) u^(k)                           scalar field -> group
    group conv out_h(k)  = sum_h' W_{h^-1 h'}(h^-1 k) f^_h'(k)        group -> group
    pointwise  out[o, h] = sum_{i, h'} w[o, i, h^-1 h'] f[i, h'] + b[o]

with ``^`` the 2-D DFT and ``W`` learned on the kept modes. Rotating a field by
a quarter turn rotates its spectrum by the same quarter turn (up to a phase
from the translation part, which a Fourier multiplier ignores), so the kernel
"rotated by h" is the base spectrum rotated by h: ``W(h^-1 k)`` is
``group.act(W, h)`` applied to the centred mode block.

Group conventions. An element is ``(a, b)`` acting on an array as
``rot90(flip(x, -1) if b else x, a)`` over the last two axes. ``torch.rot90``
sends index ``j`` to ``n-1-j``: a rotation about the grid centre, which on the
periodic grid is a rotation about index 0 followed by a one-cell shift (the
same holds for ``flip``). Every layer here is a Fourier multiplier or acts
pointwise, so it commutes with periodic shifts, and equivariance to array
rot90/flip is exact at every ``n``; no half-cell phase is needed.

Modes. ``modes=m`` keeps the square ``|k_x|, |k_y| <= m-1`` (``2m-1`` values per
axis): unlike SpectralConv's ``0..m-1, -m..-1`` this set is closed under
quarter turns and reflections, which equivariance needs. A grid needs
``n >= 2m-1`` points per axis. Weights are stored for ``k_y >= 0`` only, as
real pairs ``(..., 2m-1, m, 2)`` with ``k_x`` centred (index ``i`` is
``k_x = i-(m-1)``); the ``k_y < 0`` half is their complex conjugate reflected
through the origin (and the ``k_y = 0`` column is made Hermitian), so every
kernel is the spectrum of a real filter, its rotations are too, and the
real FFT computes the layer exactly.

Source idea (Helwig, Zhang, Fu, Kurtin, Wojtowytsch, Ji, "Group Equivariant
Fourier Neural Operators", ICML 2023): an FNO kernel is a convolution, so the
group-convolution recipe of G-CNNs carries over if one can rotate and reflect
kernels; in Fourier space that is just a rotation or reflection of the block
of coefficients, provided the truncated block is itself symmetric. Lifting
to the group, group Fourier layers and pooling over the group at the end
give an operator that turns with its input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.spectral import complex_channel_mix


@dataclass(frozen=True)
class SquareGroup:
    """A subgroup of the symmetries of the square, as data.

    ``elements[i] = (a, b)`` is the map ``x -> rot90(flip(x, -1) if b else x, a)``
    on the last two axes. Products follow ``s r s = r^-1``:
    ``(a1, b1)(a2, b2) = (a1 + (-1)^b1 a2 mod 4, b1 xor b2)``.
    """

    name: str
    elements: tuple[tuple[int, int], ...]

    @property
    def order(self) -> int:
        return len(self.elements)

    def index(self, element: tuple[int, int]) -> int:
        return self.elements.index(element)

    def compose(self, g: int, h: int) -> int:
        """Index of ``g h`` (apply ``h`` first)."""
        (a1, b1), (a2, b2) = self.elements[g], self.elements[h]
        return self.index(((a1 + (-a2 if b1 else a2)) % 4, b1 ^ b2))

    def inverse(self, g: int) -> int:
        a, b = self.elements[g]
        return self.index((a, 1) if b else ((-a) % 4, 0))

    def relative(self) -> torch.Tensor:
        """``(|H|, |H|)`` long tensor with entry ``[h, h']`` the index of ``h^-1 h'``."""
        return torch.tensor([[self.compose(self.inverse(h), k) for k in range(self.order)]
                             for h in range(self.order)])

    def act(self, x: torch.Tensor, g: int) -> torch.Tensor:
        """Rotate/reflect ``x`` over its last two axes by element ``g``."""
        quarter_turns, reflected = self.elements[g]
        if reflected:
            x = torch.flip(x, dims=(-1,))
        return torch.rot90(x, quarter_turns, dims=(-2, -1))

    def act_regular(self, f: torch.Tensor, g: int) -> torch.Tensor:
        """Regular representation on ``(batch, channels, |H|, n, n)``: ``f(g^-1 x, g^-1 h)``."""
        source = [self.compose(self.inverse(g), h) for h in range(self.order)]
        return self.act(f[:, :, source], g)


GROUPS: dict[str, SquareGroup] = {
    "p4": SquareGroup("p4", tuple((a, 0) for a in range(4))),
    "p4m": SquareGroup("p4m", tuple((a, b) for b in (0, 1) for a in range(4))),
}


def get_group(name: str) -> SquareGroup:
    if name not in GROUPS:
        raise ConfigError(f"unknown group '{name}'; choose one of: {', '.join(GROUPS)}")
    return GROUPS[name]


def check_square_grid(x: torch.Tensor, modes: int, who: str) -> int:
    """The side ``n`` of a square grid holding ``|k| <= modes-1``; ShapeError otherwise."""
    rows, cols = x.shape[-2:]
    if rows != cols:
        raise ShapeError(f"{who} needs a square grid (rotations map it to itself), got {rows}x{cols}; "
                         "resample or crop the data to n x n")
    if rows < 2 * modes - 1:
        raise ShapeError(f"{who}: a {rows}x{rows} grid holds at most modes={(rows + 1) // 2}, got modes={modes}; "
                         f"use modes <= {(rows + 1) // 2} or at least {2 * modes - 1} points per axis")
    return rows


def gather_modes(spectrum: torch.Tensor, modes: int) -> torch.Tensor:
    """rfft2 spectrum ``(..., n, n//2+1)`` -> centred block ``(..., 2m-1, m)``, ``k_x = -(m-1)..m-1``."""
    n = spectrum.shape[-2]
    return torch.cat([spectrum[..., n - modes + 1:, :modes], spectrum[..., :modes, :modes]], dim=-2)


def scatter_modes(block: torch.Tensor, modes: int, n: int) -> torch.Tensor:
    """Inverse of :func:`gather_modes`, zeros elsewhere; ``irfft2(..., s=(n, n))`` pads the last axis."""
    gap = block.new_zeros(*block.shape[:-2], n - 2 * modes + 1, modes)
    return torch.cat([block[..., modes - 1:, :], gap, block[..., :modes - 1, :]], dim=-2)


def hermitian_block(half: torch.Tensor) -> torch.Tensor:
    """``k_y >= 0`` half ``(..., 2m-1, m)`` -> full centred block ``(..., 2m-1, 2m-1)`` with ``W(-k) = conj W(k)``."""
    negative = torch.flip(half[..., 1:], dims=(-2, -1)).conj()
    zero = 0.5 * (half[..., 0] + torch.flip(half[..., 0], dims=(-1,)).conj())
    return torch.cat([negative, zero.unsqueeze(-1), half[..., 1:]], dim=-1)


class GroupSpectralConv(nn.Module):
    """Group Fourier convolution (``lifting=False``) or lifting layer (``lifting=True``).

    Args:
        in_channels, out_channels: channels per group element.
        modes: ``m``; keeps ``|k_x|, |k_y| <= m-1``.
        group: "p4" or "p4m".
        lifting: input is ``(batch, in, n, n)`` scalar fields instead of a group feature map.

    Shapes: ``(batch, in, [|H|,] n, n) -> (batch, out, |H|, n, n)``, ``n >= 2m-1``.
    Parameters: ``in * |H_in| * out * (2m-1) * m`` complex numbers, ``|H_in| = 1`` for lifting.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: int, group: str = "p4", lifting: bool = False):
        super().__init__()
        if int(modes) < 1:
            raise ConfigError(f"modes must be a positive integer, got {modes}")
        self.group = get_group(group)
        self.in_channels, self.out_channels, self.modes, self.lifting = in_channels, out_channels, int(modes), lifting
        self.in_group = 1 if lifting else self.group.order
        self.register_buffer("relative", self.group.relative()[:, :self.in_group] * (0 if lifting else 1),
                             persistent=False)
        scale = 1.0 / math.sqrt(2 * in_channels * self.in_group * out_channels)
        shape = (in_channels, self.in_group, out_channels, 2 * self.modes - 1, self.modes, 2)
        self.weight_pairs = nn.Parameter(scale * torch.randn(shape))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, modes={self.modes}, group={self.group.name}, "
                f"lifting={self.lifting}")

    def kernels(self) -> torch.Tensor:
        """Complex ``(in * |H_in|, out * |H|, 2m-1, m)``: entry ``[(i, h'), (o, h)]`` is ``W_{h^-1 h'}(h^-1 k)``."""
        base = hermitian_block(torch.view_as_complex(self.weight_pairs))  # (in, H_in, out, B, B)
        per_element = [self.group.act(base[:, self.relative[h]], h) for h in range(self.group.order)]
        stacked = torch.stack(per_element, dim=3)  # (in, H_in, out, |H|, B, B)
        blocks = stacked.reshape(self.in_channels * self.in_group, self.out_channels * self.group.order,
                                 *stacked.shape[-2:])
        return blocks[..., self.modes - 1:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.in_channels,) if self.lifting else (self.in_channels, self.group.order)
        if x.ndim != len(expected) + 3 or tuple(x.shape[1:1 + len(expected)]) != expected:
            raise ShapeError(f"GroupSpectralConv expects (batch, {', '.join(map(str, expected))}, n, n), "
                             f"got shape {tuple(x.shape)}")
        n = check_square_grid(x, self.modes, "GroupSpectralConv")
        flat = x.reshape(x.shape[0], -1, n, n)
        kept = gather_modes(torch.fft.rfft2(flat), self.modes)
        mixed = complex_channel_mix(kept, torch.view_as_real(self.kernels()))
        out = torch.fft.irfft2(scatter_modes(mixed, self.modes, n), s=(n, n))
        return out.reshape(x.shape[0], self.out_channels, self.group.order, n, n)


class GroupLinear(nn.Module):
    """Pointwise group-equivariant linear map (a 1x1 group convolution).

    ``out[o, h] = sum_{i, h'} w[o, i, h^-1 h'] f[i, h'] + b[o]``; with ``lifting=True`` the
    input has no group axis and ``out[o, h] = sum_i w[o, i] f[i] + b[o]`` for every ``h``.

    Shapes: ``(batch, in, [|H|,] *spatial) -> (batch, out, |H|, *spatial)``.
    """

    def __init__(self, in_channels: int, out_channels: int, group: str = "p4", lifting: bool = False):
        super().__init__()
        self.group = get_group(group)
        self.in_channels, self.out_channels, self.lifting = in_channels, out_channels, lifting
        self.in_group = 1 if lifting else self.group.order
        self.register_buffer("relative", self.group.relative()[:, :self.in_group] * (0 if lifting else 1),
                             persistent=False)
        bound = 1.0 / math.sqrt(in_channels * self.in_group)  # nn.Conv's default range for this fan-in
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, self.in_group).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, group={self.group.name}, lifting={self.lifting}"

    def matrix(self) -> torch.Tensor:
        """``(out * |H|, in * |H_in|)`` with entry ``[(o, h), (i, h')] = w[o, i, h^-1 h']``."""
        blocks = self.weight[:, :, self.relative]  # (out, in, |H|, H_in)
        return blocks.permute(0, 2, 1, 3).reshape(self.out_channels * self.group.order, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.in_channels,) if self.lifting else (self.in_channels, self.group.order)
        if x.ndim < len(expected) + 2 or tuple(x.shape[1:1 + len(expected)]) != expected:
            raise ShapeError(f"GroupLinear expects (batch, {', '.join(map(str, expected))}, *spatial), "
                             f"got shape {tuple(x.shape)}")
        spatial = x.shape[1 + len(expected):]
        flat = x.reshape(x.shape[0], -1, *spatial)
        bias = self.bias.repeat_interleave(self.group.order)
        out = torch.einsum("pq,bq...->bp...", self.matrix(), flat) + bias.reshape(-1, *[1] * len(spatial))
        return out.reshape(x.shape[0], self.out_channels, self.group.order, *spatial)


POOLINGS = ("mean", "max")


def group_pool(f: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """Mean or max over the group axis: ``(batch, c, |H|, *spatial) -> (batch, c, *spatial)``.

    The result no longer depends on the group index, so it transforms like an
    ordinary field: ``pool(g . f) = g . pool(f)``.
    """
    if how not in POOLINGS:
        raise ConfigError(f"unknown group pooling '{how}'; choose one of: {', '.join(POOLINGS)}")
    return f.mean(dim=2) if how == "mean" else f.amax(dim=2)
