"""How a run gets its model and task: from scratch, or as a second stage on a finished run.

Recipes (``stage.recipe`` in the config):

* none: a fresh model, normalizers fitted on the training split.
* ``specboost`` (after Qin et al., "Toward a better understanding of Fourier
  neural operators from a spectral perspective", 2024): the finished run is
  frozen and a second model learns what it gets wrong. Its target is the
  residual ``u - G_1(a)``, normalized by statistics of the training residuals,
  so the second model sees the small, mostly high-frequency error at unit
  scale; the prediction is ``G_1(a) + G_2(a)``.
* ``refine`` (Spectral-Refiner): the finished run's weights are loaded, every
  parameter is frozen but the last spectral convolution, which is given all
  the modes the training grid holds (the old weights kept, new modes starting
  at zero), and training continues, typically with a
  negative Sobolev loss (``train.loss: h-1``) that weighs the low modes.
* ``linearized`` (tangent-space fine-tuning): the finished run's model is
  replaced by its first-order Taylor model around the trained weights
  (:func:`oplearn.analysis.linearize.linearize`) and trained on the new data
  with the base run's normalizers; the checkpoint holds both the base weights
  and the tangent-space ones.

``load_run`` rebuilds any of these from its directory.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from oplearn.analysis.linearize import linearize
from oplearn.data.dataset import FieldDataset
from oplearn.errors import ConfigError, DataError
from oplearn.layers.padding import fix_padded_periods
from oplearn.models import build
from oplearn.train.checkpoint import Checkpoint
from oplearn.train.config import Config, load_config
from oplearn.train.distributed import resolve_device
from oplearn.train.task import RecurrentTask, ResidualTask, SpaceTimeTask, SupervisedTask

CHECKPOINT = Path("checkpoints") / "last.safetensors"


def _checkpoint(run: Path) -> Checkpoint:
    if not (run / "config.yaml").is_file():
        raise DataError(f"{run} is not a run directory (no config.yaml); pass the --out of `oplearn train`")
    if not (run / CHECKPOINT).is_file():
        raise DataError(f"{run} has no checkpoint ({CHECKPOINT}); train it first")
    return Checkpoint(run / CHECKPOINT)


def _steps(config: Config, channels) -> tuple[int, int]:
    """``(channels per snapshot, output snapshots)`` of a time task's data."""
    steps_in, steps_out = len(config.data.train.input_steps), len(config.data.train.output_steps)
    per_step = channels[0] // steps_in
    if channels[0] != per_step * steps_in or channels[1] != per_step * steps_out:
        raise ConfigError(f"train.task {config.train.task} needs snapshots of equal channels in and out; the data has "
                          f"{channels[0]} input channels for {steps_in} input_steps and {channels[1]} output "
                          f"channels for {steps_out} output_steps")
    return per_step, steps_out


def model_channels(config: Config, channels) -> tuple[int, int]:
    """The model's ``(in, out)`` channels for data of ``channels``: a time task's model maps the input
    snapshots to one snapshot."""
    if config.train.task == "supervised":
        return tuple(channels)
    return channels[0], _steps(config, channels)[0]


def _build(config: Config, channels) -> nn.Module:
    """The model for data of ``channels = (in, out)`` (see :func:`model_channels`)."""
    channels = model_channels(config, channels)
    return build(config.model.name, in_channels=channels[0], out_channels=channels[1],
                 **config.model.hyperparameters())


def _fresh_task(config: Config, train: FieldDataset) -> SupervisedTask:
    normalize = config.data.normalize_inputs, config.data.normalize_outputs
    if config.train.task == "supervised":
        return SupervisedTask.fitted_on(train, *normalize)
    per_step, steps_out = _steps(config, train.channels)
    if config.train.task == "space_time":
        modes, dim = config.model.hyperparameters().get("modes"), len(train.resolution)
        if modes is not None and len(modes) != dim + 1:
            raise ConfigError(f"train.task space_time adds a time axis: model.modes needs {dim + 1} entries for "
                              f"{dim}-D data, got {list(modes)}")
        if config.model.hyperparameters().get("grid") is False:
            raise ConfigError("train.task space_time needs model.grid: true (the time coordinate tells the repeated "
                              "input snapshots apart)")
        return SpaceTimeTask.fitted_on(train, steps_out, *normalize)
    if any(normalize):
        raise ConfigError("train.task recurrent feeds its predictions back as inputs and normalizes nothing: set "
                          "data.normalize_inputs and data.normalize_outputs to false")
    return RecurrentTask(steps_out, per_step)


def load_run(run: str | Path, device: str | torch.device = "auto") -> tuple[Config, nn.Module, SupervisedTask]:
    """The config, trained model (eval mode, on ``device``) and task of a run directory."""
    run = Path(run)
    checkpoint = _checkpoint(run)
    config = load_config(run / "config.yaml")
    device = resolve_device(device) if isinstance(device, str) else device
    model = _build(config, checkpoint.state["channels"])
    if config.stage is not None and config.stage.recipe == "linearized":
        model = linearize(model)
    checkpoint.restore(model)
    model.to(device).eval()
    if config.stage is not None and config.stage.recipe == "specboost":
        _, base, base_task = load_run(config.stage.base_run, device)
        return config, model, ResidualTask.from_state(checkpoint.extra(), base, base_task)
    task = {"supervised": SupervisedTask, "recurrent": RecurrentTask, "space_time": SpaceTimeTask}[config.train.task]
    return config, model, task.from_state(checkpoint.extra())


def setup(config: Config, train: FieldDataset, device: torch.device) -> tuple[nn.Module, SupervisedTask, Config]:
    """Model (on ``device``; only trainable parameters require grad), task and the config to save.

    The saved config differs from ``config`` only for ``refine``, which records the released
    modes (``model.last_modes``) so that ``load_run`` rebuilds the same model. Zero padding
    keeps the period of the training grid on every other grid (``oplearn.layers.padding``).
    """
    torch.manual_seed(config.seed)
    stage = config.stage
    if stage is not None and config.train.task != "supervised":
        raise ConfigError(f"stage recipes continue supervised runs; train.task {config.train.task} trains from scratch")
    if stage is None:
        model = _build(config, train.channels).to(device)
        task = _fresh_task(config, train)
    elif stage.recipe == "specboost":
        _, base, base_task = load_run(stage.base_run, device)
        for parameter in base.parameters():
            parameter.requires_grad_(False)
        model = _build(config, train.channels).to(device)
        task = ResidualTask.fitted_on(train, base, base_task, device)
    elif stage.recipe == "linearized":
        model, task = _linearized(config, device)
    else:
        model, task, config = _refine(config, train, device)
    task.loss = config.train.loss
    fix_padded_periods(model, task.model_grid(train.resolution))  # a second stage keeps its base's period
    return model, task, config


def _refine(config: Config, train: FieldDataset, device: torch.device):
    base_config, base, base_task = load_run(config.stage.base_run, device)
    mine = {k: v for k, v in config.model.model_dump().items() if k != "last_modes"}
    if base_config.model.model_dump() != mine:
        raise ConfigError("stage.recipe refine continues the base run's model: copy its model section unchanged "
                          "(the recipe sets model.last_modes itself)")
    if not hasattr(base, "release_last_modes"):
        raise ConfigError(f"stage.recipe refine needs a Fourier model; {config.model.name} has no spectral layers")
    last_modes = base.release_last_modes(train.resolution)
    for name, parameter in base.named_parameters():
        parameter.requires_grad_(name.startswith(f"blocks.{len(base.blocks) - 1}.spectral."))
    model_config = type(config.model).model_validate({**mine, "last_modes": list(last_modes)})
    return base.train(), base_task, config.model_copy(update={"model": model_config})


def _linearized(config: Config, device: torch.device):
    base_config, base, base_task = load_run(config.stage.base_run, device)
    if base_config.stage is not None and base_config.stage.recipe in ("specboost", "linearized"):
        raise ConfigError(f"stage.recipe linearized needs a single-model base run; {config.stage.base_run} is a "
                          f"{base_config.stage.recipe} stage: use its own base run")
    if base_config.model.model_dump() != config.model.model_dump():
        raise ConfigError("stage.recipe linearized fine-tunes the base run's model in tangent space: copy its "
                          "model section unchanged")
    return linearize(base).train(), base_task
