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

Recipes are registered by name (:data:`RECIPES`); each builds its model and
task for training (``setup``) and rebuilds them from a checkpoint
(``build_model``, ``restore_task``). ``load_run`` rebuilds any run from its
directory.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from oplearn.data.writer import differing_settings
from oplearn.errors import ConfigError, DataError
from oplearn.layers.padding import fix_padded_periods
from oplearn.models import build
from oplearn.models.linearize import linearize
from oplearn.train.checkpoint import Checkpoint
from oplearn.train.config import Config, load_config
from oplearn.devices import resolve_device
from oplearn.train.objective import Objective
from oplearn.train.run_dir import RunDir
from oplearn.train.task import ResidualTask, SupervisedTask, Task, get_task


def _build(config: Config, channels) -> nn.Module:
    """The model for data of ``channels = (in, out)``, with the channels its task gives it."""
    channels = get_task(config.train.task).model_channels(config, channels)
    return build(config.model.name, in_channels=channels[0], out_channels=channels[1],
                 **config.model.hyperparameters())


def _fit_to_data(model: nn.Module, task: Task, config: Config, train) -> Config:
    """Let a fresh model fit its data-dependent parts on the training split (``Operator.fit_to_data``); the
    config to save records the hyperparameters it found, so that ``load_run`` rebuilds the same model."""
    normalizer = task.output_normalizer
    updates = model.fit_to_data(train, None if normalizer is None else normalizer.encode)
    if not updates:
        return config
    model_config = type(config.model).model_validate({**config.model.model_dump(), **updates})
    return config.model_copy(update={"model": model_config})


class Recipe:
    """A second training stage on the finished run ``config.stage.base_run``."""

    name: str

    def setup(self, config: Config, train, device: torch.device, loss: Objective):
        """``(model, task, config to save)`` for training."""
        raise NotImplementedError

    def build_model(self, config: Config, channels) -> nn.Module:
        """The untrained model a checkpoint of this recipe's run restores into."""
        return _build(config, channels)

    def restore_task(self, config: Config, tensors: dict, device: torch.device, loss: Objective) -> Task:
        return SupervisedTask.from_state(tensors, config, loss)


RECIPES: dict[str, Recipe] = {}


def register_recipe(name: str):
    """Class decorator: register a recipe under ``name`` (its ``stage.recipe`` value)."""
    def add(cls):
        cls.name = name
        RECIPES[name] = cls()
        return cls

    return add


def _same_model_section(config: Config, base_config: Config, why: str, ignore=()) -> None:
    mine = {k: v for k, v in config.model.model_dump().items() if k not in ignore}
    theirs = {k: v for k, v in base_config.model.model_dump().items() if k not in ignore}
    if mine != theirs:
        raise ConfigError(f"stage.recipe {config.stage.recipe} {why}: copy the base run's model section unchanged")


@register_recipe("specboost")
class SpecBoostRecipe(Recipe):
    def setup(self, config, train, device, loss):
        _, base, base_task = load_run(config.stage.base_run, device)
        for parameter in base.parameters():
            parameter.requires_grad_(False)
        model = _build(config, train.channels)
        task = ResidualTask.fitted_on(train, base, base_task, device, loss)
        config = _fit_to_data(model, task, config, task.residual_data(train))
        return model.to(device), task, config

    def restore_task(self, config, tensors, device, loss):
        _, base, base_task = load_run(config.stage.base_run, device)
        return ResidualTask.from_state(tensors, base, base_task, loss)


@register_recipe("refine")
class RefineRecipe(Recipe):
    """Spectral-Refiner: the model's refinable layers get every mode the training grid holds and alone train."""

    def setup(self, config, train, device, loss):
        base_config, base, base_task = load_run(config.stage.base_run, device)
        _same_model_section(config, base_config, "continues the base run's model (the recipe sets the released "
                            "modes itself)", ignore=("last_modes",))
        updates = base.refine(train.resolution)
        trainable = {id(p) for p in base.refinable_parameters()}
        for parameter in base.parameters():
            parameter.requires_grad_(id(parameter) in trainable)
        hyper = {k: v for k, v in config.model.model_dump().items() if k != "last_modes"}
        model_config = type(config.model).model_validate({**hyper, **updates})
        base_task.loss = loss
        return base.train(), base_task, config.model_copy(update={"model": model_config})


@register_recipe("linearized")
class LinearizedRecipe(Recipe):
    def setup(self, config, train, device, loss):
        base_config, base, base_task = load_run(config.stage.base_run, device)
        if base_config.stage is not None and base_config.stage.recipe in ("specboost", "linearized"):
            raise ConfigError(f"stage.recipe linearized needs a single-model base run; {config.stage.base_run} is a "
                              f"{base_config.stage.recipe} stage: use its own base run")
        _same_model_section(config, base_config, "fine-tunes the base run's model in tangent space")
        base_task.loss = loss
        return linearize(base).train(), base_task, config

    def build_model(self, config, channels):
        return linearize(_build(config, channels))


def _check_matches_checkpoint(run: RunDir, config: Config, state: dict) -> None:
    """config.yaml's model section must be the one the weights were trained with (it may have been edited)."""
    trained = state.get("config", {}).get("model")
    if trained is None:
        return
    differences = differing_settings(trained, config.model.model_dump(mode="json"), "config.yaml")
    if differences:
        raise DataError(f"{run.config} does not match the weights in {run.checkpoint}: they were trained with "
                        f"model.{', model.'.join(differences)}; restore config.yaml or retrain")


def load_run(run: str | Path, device: str | torch.device = "auto") -> tuple[Config, nn.Module, Task]:
    """The config, trained model (eval mode, on ``device``) and task of a run directory."""
    run = RunDir(run)
    run.check_trained()
    checkpoint = Checkpoint(run.checkpoint)
    config = load_config(run.config)
    _check_matches_checkpoint(run, config, checkpoint.state)
    device = resolve_device(device)
    loss = Objective.from_config(config.train.loss, config.train.balance)
    recipe = RECIPES[config.stage.recipe] if config.stage is not None else None
    channels = checkpoint.state["channels"]
    model = recipe.build_model(config, channels) if recipe else _build(config, channels)
    checkpoint.restore(model)
    model.to(device).eval()
    if recipe is not None:
        return config, model, recipe.restore_task(config, checkpoint.extra(), device, loss)
    return config, model, get_task(config.train.task).from_state(checkpoint.extra(), config, loss)


def setup(config: Config, train, device: torch.device) -> tuple[nn.Module, Task, Config]:
    """Model (on ``device``; only trainable parameters require grad), task and the config to save.

    The saved config differs from ``config`` only for ``refine``, which records the released
    modes (``model.last_modes``) so that ``load_run`` rebuilds the same model. Zero padding
    keeps the period of the training grid on every other grid (``oplearn.layers.padding``).
    """
    torch.manual_seed(config.seed)
    loss = Objective.from_config(config.train.loss, config.train.balance)
    task_class = get_task(config.train.task)
    if train.kind not in task_class.geometries:
        raise ConfigError(f"train.task {config.train.task} works on {', '.join(sorted(task_class.geometries))} "
                          f"data; the training data are {train.kind} data")
    if config.stage is None:
        model = _build(config, train.channels)
        task = task_class.from_config(config, train, loss)
        config = _fit_to_data(model, task, config, train)
        model = model.to(device)
    elif config.train.task != "supervised":
        raise ConfigError(f"stage recipes continue supervised runs; train.task {config.train.task} trains from scratch")
    else:
        model, task, config = RECIPES[config.stage.recipe].setup(config, train, device, loss)
    if not model.accepts(train.kind):
        raise ConfigError(f"model {config.model.name} works on {', '.join(sorted(model.geometries))} data; the "
                          f"training data are {train.kind} data: choose a model that accepts them")
    if train.kind == "grid":
        fix_padded_periods(model, task.model_grid(train.resolution))  # a second stage keeps its base's period
    return model, task, config
