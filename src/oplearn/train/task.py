"""What one batch means: the supervised map from input to output functions.

A task turns a batch into predictions and per-sample losses; the training
loop knows nothing else about the problem (``train.task`` in the config):

* ``supervised``: a model maps input functions to output functions.
* ``recurrent``: time stepping, one snapshot at a time from the last k, rolled out
  (the FNO paper's "FNO-2D" for Navier-Stokes).
* ``space_time``: one (d+1)-dimensional model maps the first k snapshots to all
  later ones at once (the FNO paper's "FNO-3D").

For the time tasks a batch holds the k input snapshots stacked as channels,
``(b, k*C, *grid)``, and the T output snapshots, ``(b, T*C, *grid)``
(``data.*.input_steps`` / ``output_steps``); scores are the relative L2 error of
the whole predicted trajectory.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from oplearn.data.dataset import ChannelMoments, ChannelNormalizer, FieldDataset
from oplearn.losses import get_loss, relative_lp_loss


EVALUATION_POINTS = 1 << 22  # model grid points per evaluation batch: ~2 GiB per 128-channel float32 activation


class SupervisedTask:
    """Learn ``a -> u`` from pairs; loss and score are relative L2 in physical units.

    The model sees normalized inputs and predicts normalized outputs; both
    normalizers are fitted on the training split only.
    """

    def __init__(self, input_normalizer: ChannelNormalizer | None, output_normalizer: ChannelNormalizer | None,
                 loss: str = "relative_l2"):
        self.input_normalizer = input_normalizer
        self.output_normalizer = output_normalizer
        self.loss = loss  # training loss by name (oplearn.losses.LOSSES); scores stay relative L2

    @classmethod
    def fitted_on(cls, train: FieldDataset, normalize_inputs: bool = True, normalize_outputs: bool = True,
                  batch_size: int = 256):
        """Normalizers fitted on ``train`` in one streaming pass over it (it may live on disk)."""
        inputs, outputs = ChannelMoments(), ChannelMoments()
        for batch_inputs, batch_outputs in train.batches(batch_size):
            inputs.add(batch_inputs)
            outputs.add(batch_outputs)
        return cls(inputs.normalizer() if normalize_inputs else None,
                   outputs.normalizer() if normalize_outputs else None)

    def predict(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        if self.input_normalizer is not None:
            inputs = self.input_normalizer.encode(inputs)
        outputs = model(inputs)
        return self.output_normalizer.decode(outputs) if self.output_normalizer is not None else outputs

    def per_sample_loss(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``(batch,)`` training losses (``self.loss``) in physical units."""
        return get_loss(self.loss)(self.predict(model, inputs), targets, reduction="none")

    def per_sample_error(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``(batch,)`` relative L2 errors of the prediction: the score every run reports."""
        return relative_lp_loss(self.predict(model, inputs), targets, reduction="none")

    def model_grid(self, resolution) -> tuple[int, ...]:
        """The grid the model sees for data on ``resolution``."""
        return tuple(resolution)

    def model_points(self, resolution) -> int:
        """Grid points of one sample as the model sees it (sets evaluation batch sizes)."""
        return math.prod(self.model_grid(resolution))

    def evaluation_batch(self, resolution) -> int:
        """Samples per evaluation batch: 64, fewer on fine grids (about 4M model grid points per batch)."""
        return max(1, min(64, EVALUATION_POINTS // self.model_points(resolution)))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: FieldDataset, device: torch.device) -> float:
        """Mean relative L2 error over a dataset."""
        was_training = model.training
        model.eval()
        total = 0.0
        for inputs, targets in data.batches(self.evaluation_batch(data.resolution)):
            inputs, targets = inputs.to(device), targets.to(device)
            total += self.per_sample_error(model, inputs, targets).sum().item()
        model.train(was_training)
        return total / len(data)

    def state(self) -> dict[str, torch.Tensor]:
        tensors = {}
        for prefix, normalizer in (("inputs", self.input_normalizer), ("outputs", self.output_normalizer)):
            if normalizer is not None:
                tensors.update(normalizer.state(f"normalizer.{prefix}"))
        return tensors

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor]) -> "SupervisedTask":
        def part(prefix):
            key = f"normalizer.{prefix}"
            return ChannelNormalizer.from_state(tensors, key) if f"{key}.mean" in tensors else None

        return cls(part("inputs"), part("outputs"))


class ResidualTask(SupervisedTask):
    """Second stage of SpecBoost: a model learns the residual ``u - G_1(a)`` of a frozen first one.

    The residual is normalized per channel by statistics of the training
    residuals; the training loss compares predicted and true residuals, the
    score is the relative L2 error of ``G_1(a) + G_2(a)``.
    """

    def __init__(self, base: nn.Module, base_task: SupervisedTask, residual_normalizer: ChannelNormalizer,
                 loss: str = "relative_l2"):
        super().__init__(base_task.input_normalizer, residual_normalizer, loss)
        self.base, self.base_task = base, base_task

    @classmethod
    @torch.no_grad()
    def fitted_on(cls, train: FieldDataset, base: nn.Module, base_task: SupervisedTask, device: torch.device,
                  batch_size: int = 256) -> "ResidualTask":
        base.eval()

        def residuals():
            for inputs, targets in train.batches(batch_size):
                yield targets - base_task.predict(base, inputs.to(device)).cpu()

        return cls(base, base_task, ChannelNormalizer.fit_batches(residuals()))

    def residual(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """The second model's residual prediction in physical units."""
        return super().predict(model, inputs)

    def predict(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            first = self.base_task.predict(self.base, inputs)
        return first + self.residual(model, inputs)

    def per_sample_loss(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            remaining = targets - self.base_task.predict(self.base, inputs)
        return get_loss(self.loss)(self.residual(model, inputs), remaining, reduction="none")

    def state(self) -> dict[str, torch.Tensor]:
        return self.output_normalizer.state("normalizer.residual")

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], base: nn.Module,
                   base_task: SupervisedTask) -> "ResidualTask":
        return cls(base, base_task, ChannelNormalizer.from_state(tensors, "normalizer.residual"))


class RecurrentTask(SupervisedTask):
    """Autoregressive time stepping: ``model: (b, k*C, *grid) -> (b, C, *grid)``, the next snapshot from the last k.

    ``predict`` rolls the model out for T steps from the k input snapshots, feeding its own
    predictions back (no teacher forcing, in training as at test; backpropagation runs
    through the whole rollout) and returns ``(b, T*C, *grid)``. Nothing is normalized:
    predictions are fed back as inputs, so inputs and outputs share one scale.
    """

    def __init__(self, steps_out: int, channels_per_step: int, loss: str = "relative_l2"):
        super().__init__(None, None, loss)
        self.steps_out, self.channels_per_step = steps_out, channels_per_step

    @classmethod
    def fitted_on(cls, *args, **kwargs):
        raise TypeError("RecurrentTask fits nothing (no normalizers); construct it with RecurrentTask(steps_out, "
                        "channels_per_step)")

    def per_sample_loss(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``(batch,)``: the sum over the T steps of each step's loss, the FNO paper's FNO-2D objective.

        Scores (``per_sample_error``) stay the relative L2 error of the whole trajectory.
        """
        loss, c = get_loss(self.loss), self.channels_per_step
        predicted = self.predict(model, inputs)
        return sum(loss(predicted[:, t * c:(t + 1) * c], targets[:, t * c:(t + 1) * c], reduction="none")
                   for t in range(self.steps_out))

    def predict(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        window, snapshots = inputs, []
        for _ in range(self.steps_out):
            snapshots.append(model(window))
            window = torch.cat([window[:, self.channels_per_step:], snapshots[-1]], dim=1)
        return torch.cat(snapshots, dim=1)

    def state(self) -> dict[str, torch.Tensor]:
        return {"task.steps_out": torch.tensor(self.steps_out), "task.channels_per_step": torch.tensor(self.channels_per_step)}

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor]) -> "RecurrentTask":
        return cls(int(tensors["task.steps_out"]), int(tensors["task.channels_per_step"]))


class SpaceTimeTask(SupervisedTask):
    """A space-time operator: ``model: (b, k*C, *grid, T) -> (b, C, *grid, T)``, a (d+1)-dimensional model.

    The k input snapshots (normalized channels) are repeated along a new last axis of
    length T, the output snapshots' time axis (the model's grid channels tell the times
    apart); the model's output is returned as ``(b, T*C, *grid)`` and decoded per channel.
    """

    def __init__(self, input_normalizer, output_normalizer, steps_out: int, loss: str = "relative_l2"):
        super().__init__(input_normalizer, output_normalizer, loss)
        self.steps_out = steps_out

    @classmethod
    def fitted_on(cls, train: FieldDataset, steps_out: int, normalize_inputs: bool = True,
                  normalize_outputs: bool = True) -> "SpaceTimeTask":
        plain = SupervisedTask.fitted_on(train, normalize_inputs, normalize_outputs)
        return cls(plain.input_normalizer, plain.output_normalizer, steps_out)

    def model_grid(self, resolution) -> tuple[int, ...]:
        return (*resolution, self.steps_out)

    def predict(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        if self.input_normalizer is not None:
            inputs = self.input_normalizer.encode(inputs)
        outputs = model(inputs[..., None].expand(*inputs.shape, self.steps_out))  # (b, C, *grid, T)
        outputs = outputs.movedim(-1, 1).flatten(1, 2)  # (b, T*C, *grid), time-major like the targets
        return self.output_normalizer.decode(outputs) if self.output_normalizer is not None else outputs

    def state(self) -> dict[str, torch.Tensor]:
        return {**super().state(), "task.steps_out": torch.tensor(self.steps_out)}

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor]) -> "SpaceTimeTask":
        plain = SupervisedTask.from_state(tensors)
        return cls(plain.input_normalizer, plain.output_normalizer, int(tensors["task.steps_out"]))
