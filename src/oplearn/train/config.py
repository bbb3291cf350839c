"""Training configuration: pydantic models loaded from YAML.

Every field can be overridden from the command line with ``--set a.b=value``
(the value is parsed as YAML, so ``--set model.modes=[8,8]`` works).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from oplearn.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSource(_Strict):
    """A dataset file, and optionally how to generate it when it is missing.

    ``path`` is an oplearn HDF5 file or any format ``oplearn convert`` reads.
    With ``pde`` set, a missing file is generated (``n`` samples at
    ``resolution`` with ``seed`` and the PDE's ``params``); otherwise ``n``
    takes the first ``n`` samples of the file. For trajectory files the pair
    is (snapshots ``input_steps`` -> snapshots ``output_steps``, stacked as
    channels). ``in_memory``: load the file whole (true), read it batch by
    batch (false), or decide by size (unset).
    """

    path: str
    pde: str | None = None
    n: int | None = Field(default=None, gt=0)
    resolution: int | None = Field(default=None, gt=0)
    seed: int = 0
    params: dict[str, Any] = {}
    input_steps: list[int] = [0]
    output_steps: list[int] = [-1]
    in_memory: bool | None = None
    targets: bool = True  # false: batches carry the inputs only (data-free physics training; test data need them)
    labelled: int | None = Field(default=None, gt=0)
    """Only the first ``labelled`` samples count as labelled (hybrid training): data terms score those, physics
    terms every sample, normalizers and POD modes see the labelled targets only. None: all are labelled."""
    labelled_per_batch: int | None = Field(default=None, gt=0)
    """With ``labelled``: every training batch holds this many labelled samples (cycling through them, in a
    fresh order each epoch) and ``batch_size`` minus that many unlabelled ones; an epoch is one pass over the
    unlabelled samples. None: one shuffle of all samples, so a batch holds the labelled share by chance."""

    @model_validator(mode="after")
    def _generation_needs_size(self):
        if self.pde is not None and (self.n is None or self.resolution is None):
            raise ValueError("a data source with 'pde' also needs 'n' and 'resolution' to generate it")
        if self.labelled is not None and not self.targets:
            raise ValueError("'labelled' counts samples with targets, but 'targets' is false; drop one of them")
        if self.labelled_per_batch is not None and self.labelled is None:
            raise ValueError("'labelled_per_batch' needs 'labelled' (how many of the samples are labelled)")
        return self


class DataConfig(_Strict):
    train: DataSource
    test: DataSource
    extra_tests: dict[str, DataSource] = {}  # evaluated after training, e.g. a finer grid
    normalize_inputs: bool = True
    normalize_outputs: bool = True


class ModelConfig(BaseModel):
    """``name`` plus the model's hyperparameters; channels come from the data."""

    model_config = ConfigDict(extra="allow")
    name: str = "fno"

    def hyperparameters(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LossTerm(BaseModel):
    """One term of the training objective: ``name``, ``weight`` and the term's own options."""

    model_config = ConfigDict(extra="allow")
    name: str
    weight: float = Field(default=1.0, gt=0)


class OptimConfig(_Strict):
    epochs: int = Field(default=100, gt=0)
    batch_size: int = Field(default=20, gt=0)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    scheduler: Literal["step", "cosine", "constant"] = "cosine"
    step_size: int = Field(default=100, gt=0)  # epochs between decays, for "step"
    gamma: float = Field(default=0.5, gt=0, le=1)  # decay factor, for "step"
    # A term's name (relative_l2, h1, h2, h-1, ...) or a weighted list of terms: [{name: relative_l2, weight: 1.0},
    # {name: h1, weight: 0.1}] (oplearn.train.objective).
    loss: str | list[LossTerm] = "relative_l2"
    # How the loss terms' weights move (oplearn.train.balancing): fixed, softadapt, relobralo, gradient_norm, or
    # {scheme: relobralo, tau: 0.1, ...} with the scheme's options.
    balance: str | dict[str, Any] = "fixed"
    precision: Literal["fp32", "mixed"] = "fp32"  # mixed: bf16 autocast, FFTs in fp32 (oplearn.precision)
    tf32: bool = False  # TF32 CUDA matmuls in fp32 mode
    compile: bool = False  # torch.compile the model for training (evaluation and checkpoints use the module)
    task: str = "supervised"  # a name in oplearn.train.task.TASKS: supervised, recurrent, space_time
    # Grid-based KAN layers (model.mixer=kan, the kan model) refit their grids to the values they see at the
    # start of each of the first N epochs, on the first batch_size training samples (pykan: first 50 steps).
    kan_grid_updates: int = Field(default=0, ge=0)


class StageConfig(_Strict):
    """A second training stage on a finished run (see oplearn.train.recipes)."""

    base_run: str
    recipe: str  # a name in oplearn.train.recipes.RECIPES: specboost, refine, linearized


class Config(_Strict):
    seed: int = 0
    device: str = "auto"
    data: DataConfig
    model: ModelConfig = ModelConfig()
    train: OptimConfig = OptimConfig()
    stage: StageConfig | None = None

    @model_validator(mode="after")
    def _registered_names(self):
        from oplearn.train.recipes import RECIPES
        from oplearn.train.task import TASKS

        if self.train.task not in TASKS:
            raise ValueError(f"unknown train.task '{self.train.task}'; choose one of: {', '.join(TASKS)}")
        if self.stage is not None and self.stage.recipe not in RECIPES:
            raise ValueError(f"unknown stage.recipe '{self.stage.recipe}'; choose one of: {', '.join(RECIPES)}")
        per_batch = self.data.train.labelled_per_batch
        if per_batch is not None and per_batch >= self.train.batch_size:
            raise ValueError(f"data.train.labelled_per_batch {per_batch} leaves no room for unlabelled samples in "
                             f"batches of train.batch_size {self.train.batch_size}; lower it or raise the batch size")
        return self


def _one_line(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        parts.append(f"{where}: {message}" if where else message)  # a whole-config check names its own keys
    return "; ".join(parts)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """``"line L, column C: what"`` of a YAML error (its first line when it has no position)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def parse_value(option: str, item: str, value: str):
    """A command-line value parsed as YAML (``[8, 8]``, ``1e-3``, ``true``); a one-line ConfigError if it is not."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as error:
        raise ConfigError(f"{option} {item}: the value is not valid YAML ({_yaml_problem(error)}); close brackets "
                          "and quote text, e.g. model.modes=[8,8]") from None


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Set ``a.b.c=value`` entries (values parsed as YAML) in a nested dict."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value (e.g. model.width=64), got '{item}'")
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: '{part}' is not a section")
        node[leaf] = parse_value("--set", item, value)
    return raw


def validate(raw: dict) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"invalid config: {_one_line(error)}") from None


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read a YAML config, apply ``--set`` overrides, validate."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML at {_yaml_problem(error)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (data, model, train)")
    return validate(apply_overrides(raw, list(overrides)))


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
