"""Zero padding of non-periodic fields for Fourier layers, with the same period on every grid.

An axis of ``n`` points with spacing ``h = 1 / (n - 1)`` padded with ``p``
zeros is treated by the FFT as periodic with period ``L = (n + p) h``. A
Fourier layer's weight for mode ``k`` acts on the physical frequency
``k / L``, so a trained model computes the same operator on another grid only
if ``L`` is the same there. ``1 + padding`` is rarely a whole number of
points: 85 points with padding 0.1 give ``L = 92/84 = 1.0952``, while 421
points round to ``462/420 = 1.1``; the 0.4% stretch of every learned kernel
doubled the zero-shot error of our Darcy FNO at 141 and 211 points
(``benchmarks/RESULTS.md``). :class:`DomainPadding` therefore remembers the
grid it was trained on (:meth:`DomainPadding.fix_period`) and gives every
other grid the pad count whose period is nearest to that grid's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def padding_points(n: int, padding: float, reference: int = 0) -> int:
    """Zeros to append to an ``n``-point axis of spacing ``1/(n-1)``.

    Without ``reference``: the nearest whole number to a period of ``1 + padding``,
    ``round((1 + padding)(n - 1)) - n``. With ``reference`` (points of the grid
    the period was fixed on): the count whose period is nearest to the one
    ``reference`` points realise, ``round(L_ref (n - 1)) - n``.
    """
    if padding == 0:
        return 0
    period = (reference + padding_points(reference, padding)) / (reference - 1) if reference > 1 else 1 + padding
    return max(0, round(period * (n - 1)) - n)


class DomainPadding(nn.Module):
    """Pads the end of each spatial axis by a fraction of its length and crops back.

    ``fractions``: one padding fraction per spatial axis (0: periodic axis, no padding).
    The buffer ``reference`` holds the grid the period is fixed on (zeros: not fixed, each
    grid rounds ``1 + fraction`` itself); it is saved and loaded with the model.

    Shapes: ``pad``: ``(batch, channels, *sizes) -> (batch, channels, *padded)``; ``crop`` undoes it.
    """

    def __init__(self, fractions: Sequence[float]):
        super().__init__()
        self.fractions = tuple(float(f) for f in fractions)
        self.register_buffer("reference", torch.zeros(len(self.fractions), dtype=torch.long))
        self._reference = (0,) * len(self.fractions)  # a Python copy: no device sync in forward

    @property
    def fixed(self) -> bool:
        return any(self._reference)

    def fix_period(self, sizes: Sequence[int]) -> None:
        """Keep, on every grid from now on, the padded period that a ``sizes`` grid has."""
        self._reference = tuple(int(n) for n in sizes)
        self.reference.copy_(torch.tensor(self._reference))

    def points(self, sizes: Sequence[int]) -> list[int]:
        """Zeros appended per axis on a ``sizes`` grid."""
        return [padding_points(n, f, r) for n, f, r in zip(sizes, self.fractions, self._reference)]

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        pads = self.points(x.shape[2:])
        return F.pad(x, [p for pad in reversed(pads) for p in (0, pad)]) if any(pads) else x

    @staticmethod
    def crop(x: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
        return x[(..., *[slice(0, n) for n in sizes])]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._reference = tuple(int(n) for n in self.reference.tolist())


def fix_padded_periods(model: nn.Module, sizes: Sequence[int]) -> None:
    """Fix the period of every not yet fixed :class:`DomainPadding` in ``model`` on the training grid ``sizes``."""
    for module in model.modules():
        if isinstance(module, DomainPadding) and any(module.fractions) and not module.fixed:
            module.fix_period(sizes)
