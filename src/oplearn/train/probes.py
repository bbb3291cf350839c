"""Training probes: callbacks that watch a model while it trains.

:class:`NTKDrift` measures how far the empirical tangent kernel on a fixed
probe batch moves during training,

    drift_t = ||K_t - K_0||_F / ||K_0||_F,   K_t = empirical_ntk(model_t, probe, outputs="trace"),

near 0 in the lazy (kernel) regime, where the model behaves like its
linearization, and of order 1 when features are learned.
"""

from __future__ import annotations

import torch
from torch import nn

from oplearn.analysis.kernels import relative_drift
from oplearn.analysis.ntk import empirical_ntk
from oplearn.errors import ConfigError
from oplearn.train.trainer import Callback


class NTKDrift(Callback):
    """Record the relative NTK drift on ``probe_inputs`` every ``every`` epochs.

    ``probe_inputs (B, C_in, *S)``: inputs exactly as the model sees them (for
    ``fit`` runs, normalized by the task's input normalizer). The reference
    ``K_0`` is taken by :meth:`on_train_begin` (call it with the initial model,
    or let the trainer call it); without that call it is the kernel at the
    first epoch this probe sees, and ``reference_epoch`` says which.
    Each recorded epoch adds ``metrics["ntk_drift"]`` and appends
    ``(epoch, drift)`` to ``history``. ``ntk_options`` go to ``empirical_ntk``
    (``method``, ``chunk``, ``dtype``).
    """

    key = "ntk_drift"

    def __init__(self, probe_inputs: torch.Tensor, every: int = 1, **ntk_options):
        if not isinstance(probe_inputs, torch.Tensor) or probe_inputs.ndim < 2 or len(probe_inputs) < 1:
            raise ConfigError("NTKDrift needs a (B, C_in, *S) tensor of probe inputs with B >= 1")
        if int(every) < 1:
            raise ConfigError(f"NTKDrift(every=...) must be a positive number of epochs, got {every}")
        self.probe_inputs, self.every, self.ntk_options = probe_inputs.detach(), int(every), ntk_options
        self.reference: torch.Tensor | None = None
        self.reference_epoch: int | None = None
        self.history: list[tuple[int, float]] = []

    def kernel(self, model: nn.Module) -> torch.Tensor:
        """``(B, B)`` trace NTK of ``model`` on the probe batch (computed in eval mode)."""
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            return empirical_ntk(model, self.probe_inputs.to(device), outputs="trace", **self.ntk_options).detach()
        finally:
            model.train(was_training)

    def on_train_begin(self, model: nn.Module, epoch: int = 0) -> None:
        """Take ``K_0`` from ``model`` before its first update (``epoch``: the epochs already done)."""
        self.reference, self.reference_epoch = self.kernel(model), epoch

    def on_epoch_end(self, epoch: int, metrics: dict, model: nn.Module) -> None:
        if epoch % self.every:
            return
        if self.reference is None:
            self.on_train_begin(model, epoch)
        drift = relative_drift(self.kernel(model), self.reference)
        metrics[self.key] = drift
        self.history.append((epoch, drift))
