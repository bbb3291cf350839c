"""Hooks into the training loop, and the built-in callback that refits KAN grids."""

from __future__ import annotations

import torch
from torch import nn

from oplearn.layers.kan import grid_update_hooks


class Callback:
    """Hooks called by the loop; subclass and override what you need.

    ``on_epoch_begin`` runs on every process (so a change it makes to the model stays the same on every
    data-parallel replica); ``on_train_begin`` and ``on_epoch_end`` run on the main process only.
    """

    def on_train_begin(self, model: nn.Module, epoch: int = 0) -> None:
        """Before the first update (``epoch``: epochs already done, > 0 when resuming)."""

    def on_epoch_begin(self, epoch: int, model: nn.Module) -> None:
        """Before the updates of epoch ``epoch`` (0-based: epochs already done)."""

    def on_epoch_end(self, epoch: int, metrics: dict, model: nn.Module) -> None:
        """After epoch ``epoch`` (1-based); keys added to ``metrics`` are logged to metrics.jsonl."""


class KANGridUpdates(Callback):
    """Refit every grid-based KAN layer's grid to its inputs at the start of each of the first ``epochs`` epochs.

    The inputs are those the layers see on the first ``count`` training samples (the same on every rank, so
    replicas stay identical); ``train.kan_grid_updates`` in a config turns it on (pykan: the first 50 steps).
    """

    def __init__(self, task, train, epochs: int, count: int, device: torch.device):
        self.task, self.train, self.epochs, self.count, self.device = task, train, epochs, count, device

    def on_epoch_begin(self, epoch: int, model: nn.Module) -> None:
        if epoch < self.epochs:
            update_kan_grids(model, self.task, self.train, self.count, self.device)


def update_kan_grids(model: nn.Module, task, train, count: int, device: torch.device) -> int:
    """Refit every grid-based KAN layer's grid to its inputs on the first ``count`` training samples.

    Returns the number of layers refitted.
    """
    batch = train.batch(list(range(min(count, len(train))))).to(device)
    model.eval()  # no dropout or the like while the grids are placed
    with grid_update_hooks(model) as layers:
        if layers:
            task.predict(model, batch)
    return layers
