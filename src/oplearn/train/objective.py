"""The training objective: a weighted sum of loss terms, each seeing the prediction and the whole Batch.

    loss_i = sum_j w_j * term_j(prediction_i, batch_i)        one value per sample

``train.loss`` in a config is a term's name (``h-1``) or a list of
``{name, weight, ...options}`` entries. A term is a callable
``term(prediction, batch) -> (batch,)``: the data terms compare the
prediction with ``batch.targets``; a term that needs the equation (a PDE
residual) reads ``batch.pde``, ``batch.params``, ``batch.inputs`` and the
geometry from the same Batch. New terms register with :func:`register_term`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from oplearn.data.batch import Batch
from oplearn.errors import ConfigError
from oplearn.losses import LOSSES, relative_lp_loss

LossTerm = Callable[[torch.Tensor, Batch], torch.Tensor]
TERMS: dict[str, Callable[..., LossTerm]] = {}
"""Term factories by name: ``TERMS[name](**options) -> term``."""


def register_term(name: str):
    """Decorator: register a term factory under ``name``."""
    def add(factory):
        TERMS[name] = factory
        return factory

    return add


class DataTerm:
    """A loss between prediction and target (``oplearn.losses.LOSSES``), padded points excluded.

    The relative L2 error works on any geometry (norms over the real points);
    the Sobolev losses need grid data (they are computed in Fourier space).
    """

    def __init__(self, name: str):
        self.name, self.function = name, LOSSES[name]

    def __call__(self, prediction: torch.Tensor, batch: Batch) -> torch.Tensor:
        if batch.targets is None:
            raise ConfigError(f"loss term {self.name} compares with targets, but the data have none; use a "
                              "physics term")
        if batch.kind != "grid" and self.name != "relative_l2":
            raise ConfigError(f"loss {self.name} is defined on uniform grids; use relative_l2 on {batch.kind} data")
        return self.function(batch.masked(prediction), batch.targets, reduction="none")


for _name in LOSSES:
    register_term(_name)(lambda _n=_name: DataTerm(_n))


def relative_l2(prediction: torch.Tensor, batch: Batch) -> torch.Tensor:
    """``(batch,)`` relative L2 errors over the real points: the score every run reports."""
    return relative_lp_loss(batch.masked(prediction), batch.targets, reduction="none")


class Objective:
    """``sum_j w_j term_j``: built from ``train.loss`` (a name or a list of ``{name, weight, ...}``)."""

    def __init__(self, terms: list[tuple[float, LossTerm]]):
        if not terms:
            raise ConfigError("train.loss needs at least one term")
        self.terms = terms

    @classmethod
    def from_config(cls, loss) -> "Objective":
        entries = [{"name": loss}] if isinstance(loss, str) else [dict(e) for e in loss]
        terms = []
        for entry in entries:
            name, weight = str(entry.pop("name")).lower(), float(entry.pop("weight", 1.0))
            if name not in TERMS:
                raise ConfigError(f"unknown loss {name!r}; choose one of {', '.join(TERMS)}")
            try:
                terms.append((weight, TERMS[name](**entry)))
            except TypeError:
                raise ConfigError(f"loss {name} takes no option(s) {', '.join(entry)}") from None
        return cls(terms)

    def __call__(self, prediction: torch.Tensor, batch: Batch) -> torch.Tensor:
        total = None
        for weight, term in self.terms:
            value = term(prediction, batch)
            value = value if weight == 1.0 else weight * value
            total = value if total is None else total + value
        return total
