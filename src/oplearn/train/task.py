"""What one batch means: how a model's prediction is made from a Batch, and how it is scored.

A task turns a :class:`~oplearn.data.batch.Batch` into predictions and
per-sample losses; the training loop knows nothing else about the problem.
Tasks are registered by name (``train.task`` in the config):

* ``supervised``: a model maps input functions to output functions, on any geometry.
* ``recurrent``: time stepping, one snapshot at a time from the last k, rolled out
  (the FNO paper's "FNO-2D" for Navier-Stokes).
* ``space_time``: one (d+1)-dimensional model maps the first k snapshots to all
  later ones at once (the FNO paper's "FNO-3D").

Each task class has ``from_config(config, train, loss)`` (fit what it needs on
the training split), ``from_state(tensors, config, loss)`` (rebuild it from a
checkpoint) and ``model_channels(config, channels)`` (the model's channels for
data of ``channels``). The training loss is an :class:`~oplearn.train.objective.Objective`
given at construction; the score is always the relative L2 error.

A model is called as ``model(inputs)`` on grid data and as ``model(inputs,
coords=..., mask=...)`` (plus ``queries``/``query_mask`` when the batch has
them) on mesh and point data: :func:`model_arguments`.

For the time tasks a batch holds the k input snapshots stacked as channels,
``(b, k*C, *grid)``, and the T output snapshots, ``(b, T*C, *grid)``
(``data.*.input_steps`` / ``output_steps``); scores are the relative L2 error of
the whole predicted trajectory.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from oplearn.data.batch import Batch
from oplearn.data.dataset import ChannelMoments, ChannelNormalizer
from oplearn.errors import ConfigError, OplearnError, ShapeError
from oplearn.train.objective import Objective, relative_l2

EVALUATION_POINTS = 1 << 22  # model grid points per evaluation batch: ~2 GiB per 128-channel float32 activation

TASKS: dict[str, type["Task"]] = {}


def register_task(name: str):
    """Class decorator: register a task under ``name`` (its ``train.task`` value)."""
    def add(cls):
        cls.name = name
        TASKS[name] = cls
        return cls

    return add


def get_task(name: str) -> type["Task"]:
    if name not in TASKS:
        raise ConfigError(f"unknown train.task '{name}'; choose one of: {', '.join(TASKS)}")
    return TASKS[name]


def model_arguments(batch: Batch) -> dict:
    """Keyword arguments a model gets besides the input fields: nothing on grids, the points elsewhere."""
    if batch.kind == "grid":  # grid models build their coordinates; query models may be asked elsewhere
        return {} if batch.queries is None else {"queries": batch.queries, "query_mask": batch.query_mask}
    arguments = {"coords": batch.coords, "mask": batch.mask}
    if batch.queries is not None:
        arguments.update(queries=batch.queries, query_mask=batch.query_mask)
    return arguments


def fit_normalizers(train, normalize_inputs: bool = True, normalize_outputs: bool = True, batch_size: int = 256):
    """Per-channel normalizers of inputs and targets, fitted on ``train`` in one streaming pass (padded
    points excluded); ``None`` for a side not normalized."""
    if normalize_outputs and not getattr(train, "targets", True):
        raise ConfigError("the training data carry no targets (data.train.targets: false, or an inputs-only file), "
                          "so nothing fits an output normalizer; set data.normalize_outputs: false")
    inputs, outputs = ChannelMoments(), ChannelMoments()
    for batch in train.batches(batch_size):
        inputs.add(batch.inputs, batch.mask)
        labelled = batch.labelled_targets() if normalize_outputs else None
        if labelled is not None and len(labelled):
            outputs.add(labelled, batch.labelled_mask())
    return inputs.normalizer() if normalize_inputs else None, outputs.normalizer() if normalize_outputs else None


def _normalizer_state(**normalizers) -> dict[str, torch.Tensor]:
    tensors = {}
    for prefix, normalizer in normalizers.items():
        if normalizer is not None:
            tensors.update(normalizer.state(f"normalizer.{prefix}"))
    return tensors


def _normalizer_from_state(tensors: dict[str, torch.Tensor], prefix: str) -> ChannelNormalizer | None:
    key = f"normalizer.{prefix}"
    return ChannelNormalizer.from_state(tensors, key) if f"{key}.mean" in tensors else None


def _steps(config, channels) -> tuple[int, int]:
    """``(channels per snapshot, output snapshots)`` of a time task's data."""
    steps_in, steps_out = len(config.data.train.input_steps), len(config.data.train.output_steps)
    per_step = channels[0] // steps_in
    if channels[0] != per_step * steps_in or channels[1] != per_step * steps_out:
        raise ConfigError(f"train.task {config.train.task} needs snapshots of equal channels in and out; the data has "
                          f"{channels[0]} input channels for {steps_in} input_steps and {channels[1]} output "
                          f"channels for {steps_out} output_steps")
    return per_step, steps_out


class Task:
    """The shared part of every task: scoring, evaluation batch sizes, evaluation over a dataset."""

    name: ClassVar[str]
    geometries: ClassVar[frozenset[str]] = frozenset({"grid"})  # data kinds the task understands
    output_normalizer: ChannelNormalizer | None = None  # what the model's outputs are encoded by (None: nothing)

    def __init__(self, loss: Objective | None = None):
        self.loss = loss or Objective.from_config("relative_l2")

    @staticmethod
    def model_channels(config, channels) -> tuple[int, int]:
        """The model's ``(in, out)`` channels for data of ``channels``."""
        return tuple(channels)

    def predict(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def per_sample_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """``(batch,)`` training losses (the objective) in physical units."""
        return self.loss(self.predict(model, batch), batch, lambda other: self.predict(model, other))

    def per_sample_error(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """``(batch,)`` relative L2 errors of the prediction: the score every run reports."""
        return relative_l2(self.predict(model, batch), batch)

    def model_grid(self, resolution) -> tuple[int, ...]:
        """The grid the model sees for data on ``resolution``."""
        return tuple(resolution)

    def evaluation_batch(self, resolution) -> int:
        """Samples per evaluation batch: 64, fewer on fine grids (about 4M model grid points per batch).

        ``resolution``: the grid, or ``(points,)`` for point data (the largest sample).
        """
        return max(1, min(64, EVALUATION_POINTS // math.prod(self.model_grid(resolution))))

    @torch.no_grad()
    def check_data(self, model: nn.Module, data, label: str, device: torch.device) -> None:
        """Score the first sample of ``data``: a model or loss that cannot take it fails here, in one line
        naming ``label``, before any training or writing."""
        was_training = model.training
        model.eval()
        try:
            batch = data.batch([0]).to(device)
            (self.per_sample_error if batch.targets is not None else self.per_sample_loss)(model, batch)
        except OplearnError as error:
            raise type(error)(f"{label}: {error}") from None
        except (RuntimeError, ValueError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ShapeError(f"{label}: the model cannot take these data ({first})") from None
        finally:
            model.train(was_training)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data, device: torch.device) -> float:
        """Mean relative L2 error over a dataset."""
        was_training = model.training
        model.eval()
        total = 0.0
        for batch in data.batches(self.evaluation_batch(data.shape)):
            total += self.per_sample_error(model, batch.to(device)).sum().item()
        model.train(was_training)
        return total / len(data)

    def state(self) -> dict[str, torch.Tensor]:
        return {}


@register_task("supervised")
class SupervisedTask(Task):
    """Learn ``a -> u`` from pairs on any geometry; loss and score in physical units.

    The model sees normalized inputs and predicts normalized outputs; both
    normalizers are fitted on the training split only.
    """

    geometries = frozenset({"grid", "mesh", "points"})

    def __init__(self, input_normalizer: ChannelNormalizer | None, output_normalizer: ChannelNormalizer | None,
                 loss: Objective | None = None):
        super().__init__(loss)
        self.input_normalizer = input_normalizer
        self.output_normalizer = output_normalizer

    @classmethod
    def from_config(cls, config, train, loss: Objective | None = None) -> "SupervisedTask":
        return cls(*fit_normalizers(train, config.data.normalize_inputs, config.data.normalize_outputs), loss)

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], config=None, loss: Objective | None = None):
        return cls(_normalizer_from_state(tensors, "inputs"), _normalizer_from_state(tensors, "outputs"), loss)

    def encode(self, batch: Batch) -> torch.Tensor:
        inputs = batch.inputs
        return inputs if self.input_normalizer is None else batch.masked(self.input_normalizer.encode(inputs))

    def decode(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs if self.output_normalizer is None else self.output_normalizer.decode(outputs)

    def predict(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self.decode(model(self.encode(batch), **model_arguments(batch)))

    def state(self) -> dict[str, torch.Tensor]:
        return _normalizer_state(inputs=self.input_normalizer, outputs=self.output_normalizer)


class ResidualTask(SupervisedTask):
    """Second stage of SpecBoost: a model learns the residual ``u - G_1(a)`` of a frozen first one.

    The residual is normalized per channel by statistics of the training
    residuals; the training loss compares predicted and true residuals, the
    score is the relative L2 error of ``G_1(a) + G_2(a)``. Built by the
    ``specboost`` recipe, not by name.
    """

    def __init__(self, base: nn.Module, base_task: SupervisedTask, residual_normalizer: ChannelNormalizer,
                 loss: Objective | None = None):
        super().__init__(base_task.input_normalizer, residual_normalizer, loss)
        self.base, self.base_task = base, base_task

    @classmethod
    @torch.no_grad()
    def fitted_on(cls, train, base: nn.Module, base_task: SupervisedTask, device: torch.device,
                  loss: Objective | None = None, batch_size: int = 256) -> "ResidualTask":
        base.eval()
        moments = ChannelMoments()
        for batch in ResidualData(train, base, base_task).batches(batch_size):
            moments.add(batch.targets, batch.mask)
        return cls(base, base_task, moments.normalizer(), loss)

    def residual_data(self, train) -> "ResidualData":
        """``train`` as the second model sees it: targets ``u - G_1(a)`` (what ``fit_to_data`` fits, e.g. POD modes)."""
        return ResidualData(train, self.base, self.base_task)

    def residual(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The second model's residual prediction in physical units."""
        return super().predict(model, batch)

    def predict(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            first = self.base_task.predict(self.base, batch)
        return first + self.residual(model, batch)

    def per_sample_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            remaining = batch.targets - self.base_task.predict(self.base, batch)
        return self.loss(self.residual(model, batch), batch.with_targets(batch.masked(remaining)))

    def state(self) -> dict[str, torch.Tensor]:
        return self.output_normalizer.state("normalizer.residual")

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], base: nn.Module, base_task: SupervisedTask,
                   loss: Objective | None = None) -> "ResidualTask":
        return cls(base, base_task, ChannelNormalizer.from_state(tensors, "normalizer.residual"), loss)


class ResidualData:
    """A dataset whose batches hold the residuals ``u - G_1(a)`` of a frozen first model ``base`` as targets
    (SpecBoost's second stage); every other attribute (kind, resolution, channels, ...) is ``data``'s."""

    def __init__(self, data, base: nn.Module, base_task: SupervisedTask):
        self.data, self.base, self.base_task = data, base, base_task

    def __getattr__(self, name: str):
        return getattr(self.data, name)

    @torch.no_grad()
    def batches(self, batch_size: int, *args, **kwargs):
        device = next(self.base.parameters()).device
        for batch in self.data.batches(batch_size, *args, **kwargs):
            first = self.base_task.predict(self.base, batch.to(device)).cpu()
            yield batch.with_targets(batch.masked(batch.targets - first))


@register_task("recurrent")
class RecurrentTask(Task):
    """Autoregressive time stepping: ``model: (b, k*C, *grid) -> (b, C, *grid)``, the next snapshot from the last k.

    ``predict`` rolls the model out for T steps from the k input snapshots, feeding its own
    predictions back (no teacher forcing, in training as at test; backpropagation runs
    through the whole rollout) and returns ``(b, T*C, *grid)``. Nothing is normalized:
    predictions are fed back as inputs, so inputs and outputs share one scale.
    """

    def __init__(self, steps_out: int, channels_per_step: int, loss: Objective | None = None):
        super().__init__(loss)
        self.steps_out, self.channels_per_step = steps_out, channels_per_step

    @staticmethod
    def model_channels(config, channels) -> tuple[int, int]:
        return channels[0], _steps(config, channels)[0]

    @classmethod
    def from_config(cls, config, train, loss: Objective | None = None) -> "RecurrentTask":
        if config.data.normalize_inputs or config.data.normalize_outputs:
            raise ConfigError("train.task recurrent feeds its predictions back as inputs and normalizes nothing: set "
                              "data.normalize_inputs and data.normalize_outputs to false")
        per_step, steps_out = _steps(config, train.channels)
        return cls(steps_out, per_step, loss)

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], config=None, loss: Objective | None = None):
        return cls(int(tensors["task.steps_out"]), int(tensors["task.channels_per_step"]), loss)

    def per_sample_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """``(batch,)``: the sum over the T steps of each step's loss, the FNO paper's FNO-2D objective; physics
        terms (pde, initial) score the whole rolled-out trajectory once, on the batch's input and output times.

        Scores (``per_sample_error``) stay the relative L2 error of the whole trajectory.
        """
        return self.loss(self.predict(model, batch), batch, lambda other: self.predict(model, other), self.steps_out)

    def predict(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        window, snapshots = batch.inputs, []
        for _ in range(self.steps_out):
            snapshots.append(model(window))
            window = torch.cat([window[:, self.channels_per_step:], snapshots[-1]], dim=1)
        return torch.cat(snapshots, dim=1)

    def state(self) -> dict[str, torch.Tensor]:
        return {"task.steps_out": torch.tensor(self.steps_out),
                "task.channels_per_step": torch.tensor(self.channels_per_step)}


@register_task("space_time")
class SpaceTimeTask(SupervisedTask):
    """A space-time operator: ``model: (b, k*C, *grid, T) -> (b, C, *grid, T)``, a (d+1)-dimensional model.

    The k input snapshots (normalized channels) are repeated along a new last axis of
    length T, the output snapshots' time axis (the model's grid channels tell the times
    apart); the model's output is returned as ``(b, T*C, *grid)`` and decoded per channel.
    """

    geometries = frozenset({"grid"})

    def __init__(self, input_normalizer, output_normalizer, steps_out: int, loss: Objective | None = None):
        super().__init__(input_normalizer, output_normalizer, loss)
        self.steps_out = steps_out

    @staticmethod
    def model_channels(config, channels) -> tuple[int, int]:
        return channels[0], _steps(config, channels)[0]

    @classmethod
    def from_config(cls, config, train, loss: Objective | None = None) -> "SpaceTimeTask":
        _, steps_out = _steps(config, train.channels)
        modes, dim = config.model.hyperparameters().get("modes"), len(train.shape)
        if modes is not None and len(modes) != dim + 1:
            raise ConfigError(f"train.task space_time adds a time axis: model.modes needs {dim + 1} entries for "
                              f"{dim}-D data, got {list(modes)}")
        if config.model.hyperparameters().get("grid") is False:
            raise ConfigError("train.task space_time needs model.grid: true (the time coordinate tells the repeated "
                              "input snapshots apart)")
        normalizers = fit_normalizers(train, config.data.normalize_inputs, config.data.normalize_outputs)
        return cls(*normalizers, steps_out, loss)

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], config=None, loss: Objective | None = None):
        return cls(_normalizer_from_state(tensors, "inputs"), _normalizer_from_state(tensors, "outputs"),
                   int(tensors["task.steps_out"]), loss)

    def model_grid(self, resolution) -> tuple[int, ...]:
        return (*resolution, self.steps_out)

    def predict(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        inputs = self.encode(batch)
        outputs = model(inputs[..., None].expand(*inputs.shape, self.steps_out))  # (b, C, *grid, T)
        outputs = outputs.movedim(-1, 1).flatten(1, 2)  # (b, T*C, *grid), time-major like the targets
        return self.decode(outputs)

    def state(self) -> dict[str, torch.Tensor]:
        return {**super().state(), "task.steps_out": torch.tensor(self.steps_out)}
