"""Fourier layers whose spectral weights are low-rank tensors (Tucker or CP).

A dense :class:`~oplearn.layers.SpectralConv` holds one complex weight tensor
``W(i, o, k_1, ..., k_d)`` of shape ``(in, out, K_1, ..., K_d)`` with
``K = (2m_1, ..., 2m_{d-1}, m_d)``. Here that tensor is never stored; it is

    Tucker:  W = G x_1 U_in x_2 U_out x_3 U_1 ... x_{d+2} U_d,   G of shape (r_in, r_out, r_1, ..., r_d),
    CP:      W(i, o, k) = sum_r A(i, r) B(o, r) C_1(k_1, r) ... C_d(k_d, r),

with complex factors stored as real pairs (last axis of size 2), and the layer
applies ``y(b, o, k) = sum_i x(b, i, k) W(i, o, k)`` on the kept modes exactly as
SpectralConv does (same FFT, mode convention and resolution invariance).

Source idea (Kossaifi et al., "Multi-Grid Tensorized Fourier Neural
Operator", TMLR 2024): the weights of all kept frequencies of a Fourier layer
are strongly redundant, so treating them as one tensor and storing a low-rank
decomposition of it cuts the parameter count by an order of magnitude or more.
The low rank also acts as a regulariser; the paper reports equal or better
accuracy than the dense FNO at a fraction of the memory.

Ranks from a fraction ``rank`` of the dense count ``N = in * out * prod(K)``
(complex entries; real parameters are twice these):

- CP: ``R = floor(rank * N / (in + out + sum(K)))``, which must be at least 1.
- Tucker: one scale ``s`` for every axis, ``r_a = clamp(round(s * n_a), 1, n_a)``
  for the axis sizes ``n = (in, out, K_1, ..., K_d)``; ``s`` is the largest value
  in ``[0, 1]`` whose count ``prod(r) + sum(n_a * r_a)`` is at most ``rank * N``.
  ``rank >= (N + sum(n_a^2)) / N`` gives full ranks, which can represent any
  dense layer exactly.

Explicit ``ranks`` (Tucker: ``d + 2`` integers; CP: one integer) override the fraction.

Contraction order. Each layer can either rebuild ``W`` and mix channels as the
dense layer does, or contract the input with the factors directly (CP: input
factor, then the product of mode factors, then output factor; Tucker: input
factor, then the core expanded over the modes, then output factor). Counting
complex multiply-adds for a batch ``b`` with ``M = prod(K)`` kept modes:

    CP      factorized  R M + b M R (in + out + 1)
            dense       R M + in out R M + b M in out
    Tucker  factorized  E + b M (in r_in + r_in r_out + r_out out)
            dense       E + M (in r_in r_out + in out r_out) + b M in out

with ``E`` the cost of the core times the mode factors; :meth:`flops` returns
both and ``forward`` takes the cheaper. Low ranks and small batches favour the
factorized path, large ranks and large batches the dense one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.spectral import SpectralConv, complex_channel_mix, forward_modes, inverse_modes

FACTORIZATIONS = ("dense", "tucker", "cp")


def kept_sizes(modes: Sequence[int]) -> tuple[int, ...]:
    """Sizes of the kept-mode axes: ``(2m_1, ..., 2m_{d-1}, m_d)``."""
    return tuple(2 * m for m in modes[:-1]) + (modes[-1],)


def tucker_parameter_count(sizes: Sequence[int], ranks: Sequence[int]) -> int:
    """Complex entries of a Tucker decomposition: ``prod(r) + sum(n_a * r_a)``."""
    return math.prod(ranks) + sum(n * r for n, r in zip(sizes, ranks))


def _check_fraction(rank: float) -> float:
    if isinstance(rank, bool) or not isinstance(rank, (int, float)) or not rank > 0 or math.isinf(rank):
        raise ConfigError(f"rank is a positive fraction of the dense parameter count (e.g. 0.1), got {rank!r}")
    return float(rank)


def tucker_ranks(sizes: Sequence[int], rank: float) -> tuple[int, ...]:
    """Tucker ranks for the fraction ``rank`` of the dense count (rule in the module docstring)."""
    rank = _check_fraction(rank)
    budget = rank * math.prod(sizes)

    def ranks_at(scale: float) -> tuple[int, ...]:
        return tuple(min(n, max(1, round(scale * n))) for n in sizes)

    smallest = tucker_parameter_count(sizes, ranks_at(0.0))
    if smallest > budget:
        raise ConfigError(f"rank={rank} is too small for a Tucker layer of shape {tuple(sizes)}: even ranks of 1 "
                          f"need {smallest / math.prod(sizes):.3g} of the dense count; raise rank")
    low, high = 0.0, 1.0
    if tucker_parameter_count(sizes, ranks_at(high)) <= budget:
        return ranks_at(high)
    for _ in range(60):  # the count is a nondecreasing step function of the scale
        middle = 0.5 * (low + high)
        low, high = (middle, high) if tucker_parameter_count(sizes, ranks_at(middle)) <= budget else (low, middle)
    return ranks_at(low)


def cp_rank(sizes: Sequence[int], rank: float) -> int:
    """CP rank for the fraction ``rank`` of the dense count: ``floor(rank * N / sum(n))``."""
    rank = _check_fraction(rank)
    terms = math.floor(rank * math.prod(sizes) / sum(sizes) + 1e-9)
    if terms < 1:
        raise ConfigError(f"rank={rank} is too small for a CP layer of shape {tuple(sizes)}: one rank-one term "
                          f"needs {sum(sizes) / math.prod(sizes):.3g} of the dense count; raise rank")
    return terms


def _complex_pairs(shape: Sequence[int], variance: float) -> nn.Parameter:
    """Complex Gaussian entries of the given variance, stored as real pairs ``(*shape, 2)``."""
    return nn.Parameter(math.sqrt(variance / 2) * torch.randn(*shape, 2))


def _mode_products(mode_factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``P(r, k) = prod_j C_j(k_j, r)`` with ``k`` flattened row-major: ``(R, prod(K))``."""
    product = mode_factors[0].transpose(0, 1)
    for factor in mode_factors[1:]:
        product = (product[:, :, None] * factor.transpose(0, 1)[:, None, :]).flatten(1)
    return product


def _expand_core(core: torch.Tensor, mode_factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Core times the mode factors: ``(r_in, r_out, r_1..r_d) -> (r_in, r_out, prod(K))``."""
    r_in, r_out = core.shape[:2]
    expanded = core.flatten(0, 1)
    for factor in mode_factors:  # contracts axis 1 each time; the new axis K_j goes last, so the K_j stay in order
        expanded = torch.tensordot(expanded, factor, dims=([1], [1]))
    return expanded.reshape(r_in, r_out, -1)


class _FactorizedSpectralConv(nn.Module):
    """FFT, kept modes, channel mixing through the factors, inverse FFT (shared by Tucker and CP)."""

    kind = ""

    def __init__(self, in_channels: int, out_channels: int, modes: Sequence[int]):
        super().__init__()
        modes = tuple(int(m) for m in modes)
        if not 1 <= len(modes) <= 3 or min(modes) < 1:
            raise ShapeError(f"modes must be 1 to 3 positive integers, got {modes}")
        self.in_channels, self.out_channels, self.modes = in_channels, out_channels, modes
        self.sizes = (in_channels, out_channels) + kept_sizes(modes)

    @property
    def dim(self) -> int:
        return len(self.modes)

    @property
    def weight(self) -> torch.Tensor:
        """The dense complex weights this layer represents, ``(in, out, *K)`` (rebuilt on every call)."""
        return self._dense_weight().reshape(self.sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        SpectralConv._check(self, x)  # same shape rules and messages as the dense layer
        kept = forward_modes(x, self.modes)
        flops = self.flops(x.shape[0])
        mix = self.mix_factorized if flops["factorized"] <= flops["dense"] else self.mix_dense
        mixed = mix(kept.flatten(2)).reshape(x.shape[0], self.out_channels, *kept.shape[2:])
        return inverse_modes(mixed, self.modes, tuple(x.shape[2:])).to(x.dtype)

    def with_modes(self, modes: Sequence[int]) -> "_FactorizedSpectralConv":
        """A copy keeping at least as many modes per axis (as ``SpectralConv.with_modes``), same ranks.

        The mode factors get zero rows for the new wavenumbers, so ``W`` is zero there and the
        copy computes the same function until it is trained.
        """
        modes = tuple(int(m) for m in modes)
        if len(modes) != self.dim or any(new < old for new, old in zip(modes, self.modes)):
            raise ShapeError(f"with_modes needs {self.dim} mode counts each >= {self.modes}, got {modes}")
        wider = type(self)(self.in_channels, self.out_channels, modes, ranks=self.ranks).to(self.factor_pairs[0])
        state = {name: value.detach() for name, value in self.state_dict().items()}
        for axis, (old, new) in enumerate(zip(self.modes, modes)):
            name = f"factor_pairs.{axis + 2}"
            rows = torch.zeros_like(wider.state_dict()[name])
            rows[:old] = state[name][:old]  # wavenumbers 0..m-1
            if axis < self.dim - 1:  # then -m..-1 at the end of the axis
                rows[2 * new - old:] = state[name][old:]
            state[name] = rows
        wider.load_state_dict(state)
        return wider

    def mix_dense(self, kept: torch.Tensor) -> torch.Tensor:
        """Rebuild ``W`` and mix as SpectralConv does: ``(b, in, M)`` complex -> ``(b, out, M)``."""
        weight = torch.view_as_real(self._dense_weight().to(kept.dtype))
        return complex_channel_mix(kept, weight)

    def _factors(self, dtype: torch.dtype | None = None) -> list[torch.Tensor]:
        """The complex factor matrices ``(n_a, r_a)``, in ``dtype`` (complex; default: that of the parameters)."""
        return [_as_complex(pairs, dtype) for pairs in self.factor_pairs]

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, modes={self.modes}, ranks={self.ranks}"


class TuckerSpectralConv(_FactorizedSpectralConv):
    """Fourier layer with Tucker-factorized weights; same call and shapes as SpectralConv.

    Args:
        in_channels, out_channels, modes: as for SpectralConv.
        rank: fraction of the dense parameter count (see the module docstring for the rule).
        ranks: explicit ``(r_in, r_out, r_1, ..., r_d)``, each between 1 and its axis size; overrides ``rank``.

    Parameters: ``core_pairs (r_in, r_out, r_1..r_d, 2)`` and ``factor_pairs[a] (n_a, r_a, 2)`` for the axes
    ``(in, out, K_1, ..., K_d)``; ``2 * (prod(r) + sum(n_a * r_a))`` real numbers in all.
    Shapes: ``(batch, in_channels, *spatial) -> (batch, out_channels, *spatial)``.
    """

    kind = "tucker"

    def __init__(self, in_channels: int, out_channels: int, modes: Sequence[int], rank: float = 1.0,
                 ranks: Sequence[int] | None = None):
        super().__init__(in_channels, out_channels, modes)
        if ranks is None:
            ranks = tucker_ranks(self.sizes, rank)
        ranks = tuple(ranks)
        if len(ranks) != len(self.sizes) or any(not isinstance(r, int) or not 1 <= r <= n
                                                for r, n in zip(ranks, self.sizes)):
            raise ConfigError(f"Tucker ranks must be {len(self.sizes)} integers between 1 and the axis sizes "
                              f"{self.sizes} (in, out, kept modes), got {ranks}")
        self.ranks = ranks
        # Factor entries of variance 1/r_a make W's entries have variance 1/(in*out), as in SpectralConv.
        self.core_pairs = _complex_pairs(ranks, 1.0 / (in_channels * out_channels))
        self.factor_pairs = nn.ParameterList(_complex_pairs((n, r), 1.0 / r) for n, r in zip(self.sizes, ranks))

    def _dense_weight(self) -> torch.Tensor:
        """``W`` as ``(in, out, M)``."""
        core, (u_in, u_out, *modes) = _as_complex(self.core_pairs), self._factors()
        expanded = _expand_core(core, modes)  # (r_in, r_out, M)
        return torch.einsum("ia,oc,acm->iom", u_in, u_out, expanded)

    def mix_factorized(self, kept: torch.Tensor) -> torch.Tensor:
        """``y = U_out (H(k) (U_in^T x))`` per mode, ``H`` = core times mode factors: ``(b, in, M) -> (b, out, M)``."""
        core, (u_in, u_out, *modes) = _as_complex(self.core_pairs, kept.dtype), self._factors(kept.dtype)
        projected = torch.einsum("bim,ia->bam", kept, u_in)
        mixed = torch.einsum("bam,acm->bcm", projected, _expand_core(core, modes))
        return torch.einsum("bcm,oc->bom", mixed, u_out)

    def flops(self, batch: int) -> dict[str, int]:
        """Complex multiply-adds of the two contraction orders for a batch of ``batch``."""
        (n_in, n_out, *kept), (r_in, r_out, *r_modes) = self.sizes, self.ranks
        n_modes = math.prod(kept)
        expand = 0  # core times mode factors, one axis at a time
        for j, size in enumerate(kept):
            expand += r_in * r_out * math.prod(kept[: j + 1]) * math.prod(r_modes[j:])
        factorized = expand + batch * n_modes * (n_in * r_in + r_in * r_out + r_out * n_out)
        dense = expand + n_modes * (n_in * r_in * r_out + n_in * n_out * r_out) + batch * n_modes * n_in * n_out
        return {"factorized": factorized, "dense": dense}


class CPSpectralConv(_FactorizedSpectralConv):
    """Fourier layer with CP-factorized weights; same call and shapes as SpectralConv.

    Args:
        in_channels, out_channels, modes: as for SpectralConv.
        rank: fraction of the dense parameter count (see the module docstring for the rule).
        ranks: explicit number of rank-one terms ``R``; overrides ``rank``.

    Parameters: ``factor_pairs[a] (n_a, R, 2)`` for the axes ``(in, out, K_1, ..., K_d)``;
    ``2 * R * sum(n_a)`` real numbers in all.
    Shapes: ``(batch, in_channels, *spatial) -> (batch, out_channels, *spatial)``.
    """

    kind = "cp"

    def __init__(self, in_channels: int, out_channels: int, modes: Sequence[int], rank: float = 1.0,
                 ranks: int | None = None):
        super().__init__(in_channels, out_channels, modes)
        if ranks is None:
            ranks = cp_rank(self.sizes, rank)
        if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
            raise ConfigError(f"CP ranks is the number of rank-one terms, a positive integer; got {ranks!r}")
        self.ranks = ranks
        # W(i, o, k) sums R products of d + 2 factor entries; this variance gives W variance 1/(in*out).
        variance = (1.0 / (in_channels * out_channels * ranks)) ** (1.0 / len(self.sizes))
        self.factor_pairs = nn.ParameterList(_complex_pairs((n, ranks), variance) for n in self.sizes)

    def _dense_weight(self) -> torch.Tensor:
        """``W`` as ``(in, out, M)``."""
        a, b, *modes = self._factors()
        return torch.einsum("ir,or,rm->iom", a, b, _mode_products(modes))

    def mix_factorized(self, kept: torch.Tensor) -> torch.Tensor:
        """``y = B . (P(k) * (A^T x))`` per mode, ``P(r, k) = prod_j C_j(k_j, r)``: ``(b, in, M) -> (b, out, M)``."""
        a, b, *modes = self._factors(kept.dtype)
        projected = torch.einsum("bim,ir->brm", kept, a) * _mode_products(modes)
        return torch.einsum("brm,or->bom", projected, b)

    def flops(self, batch: int) -> dict[str, int]:
        """Complex multiply-adds of the two contraction orders for a batch of ``batch``."""
        n_in, n_out, *kept = self.sizes
        n_modes, terms = math.prod(kept), self.ranks
        products = terms * n_modes  # P(r, k), needed by both orders
        factorized = products + batch * n_modes * terms * (n_in + 1 + n_out)
        dense = products + n_in * n_out * terms * n_modes + batch * n_modes * n_in * n_out
        return {"factorized": factorized, "dense": dense}


def _as_complex(pairs: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Real pairs ``(..., 2)`` as a complex tensor, cast to the complex ``dtype`` when given."""
    return torch.view_as_complex(pairs if dtype is None else pairs.to(dtype.to_real()))


def spectral_conv(in_channels: int, out_channels: int, modes: Sequence[int], factorization: str = "dense",
                  rank: float = 1.0) -> nn.Module:
    """The spectral layer for a factorization name: SpectralConv, TuckerSpectralConv or CPSpectralConv."""
    if factorization == "dense":
        return SpectralConv(in_channels, out_channels, modes)
    if factorization == "tucker":
        return TuckerSpectralConv(in_channels, out_channels, modes, rank=rank)
    if factorization == "cp":
        return CPSpectralConv(in_channels, out_channels, modes, rank=rank)
    raise ConfigError(f"unknown factorization '{factorization}'; choose one of: {', '.join(FACTORIZATIONS)}")
