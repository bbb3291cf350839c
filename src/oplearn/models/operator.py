"""The operator contract every model keeps, and the registry that builds models by name.

An :class:`Operator` maps input functions to output functions,
``(batch, in_channels, *points) -> (batch, out_channels, *points)``, on the
geometry kinds it names ("grid", "mesh", "points"). Its hyperparameters are
data: a pydantic model ``Hyper`` (types, defaults, docs) that construction
validates, so that a config, :func:`build` and direct construction
(``FNO(1, 1, modes=(8, 8))``) see the same names, defaults and errors. The
trainer, the recipes and the analysis tools talk to a model only through the
methods below, never by probing for attributes.

How a model is called is fixed by the data's geometry (the tasks in
:mod:`oplearn.train.task` do it): on grids ``model(inputs)`` with inputs
``(batch, C_in, *grid)``; on meshes and point clouds ``model(inputs,
coords=..., mask=...)`` with inputs ``(batch, C_in, N)``, coordinates
``(batch, d, N)`` and ``mask (batch, N)`` True at real points (``None`` when
no sample is padded), plus ``queries`` and ``query_mask`` when the batch has
query points. A model that accepts "mesh" or "points" takes these keywords.

``build("fno", in_channels=1, out_channels=1, modes=(12, 12))`` constructs a
model registered with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn

from oplearn.errors import ConfigError
from oplearn.models.width import param_groups

GEOMETRIES = ("grid", "mesh", "points")


class Hyperparameters(BaseModel):
    """Base of every ``Operator.Hyper``: unknown keys are errors; each field's docstring is its description."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class PointHyper(Hyperparameters):
    """The hyperparameter of every model on point sets: the box their coordinates are mapped from."""

    domain: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    """The box ``[[low...], [high...]]`` the points lie in, mapped onto the unit box by
    ``(x - low) / (high - low)``; None: fitted on the training data (their bounding box; grids are the unit
    box). A model never fitted maps by each batch's box (gno, gino, geo_fno) or not at all (the attention
    models)."""


class Operator(nn.Module):
    """Base class of every model: channels, validated hyperparameters and the contract's methods.

    Class attributes: ``name`` (the registered name; the lower-case class name until registered),
    ``Hyper`` (the hyperparameters, a :class:`Hyperparameters` subclass), ``geometries`` (the kinds
    of data it takes). Instance attributes: ``in_channels``, ``out_channels``, ``hyper`` (the
    validated ``Hyper`` it was built with; ``type(self)(in_channels, out_channels,
    **hyper.model_dump())`` builds the same architecture), ``mup_roles`` and ``mup_lr_scale``
    (filled by :func:`oplearn.models.width.apply_mup`, else empty).
    """

    name: ClassVar[str]
    Hyper: ClassVar[type[BaseModel]] = Hyperparameters
    geometries: ClassVar[frozenset[str]] = frozenset({"grid"})
    predicts_at_queries: ClassVar[bool] = False  # takes queries=(B, d, Q) or (d, Q) and predicts there

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.name = cls.__name__.lower()

    def __init__(self, in_channels: int, out_channels: int, **hyper):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.hyper = validate_hyperparameters(type(self), hyper)
        self.mup_roles: dict[str, str] = {}
        self.mup_lr_scale: dict[str, float] = {}

    def optimizer_groups(self, lr: float) -> list[dict]:
        """Adam parameter groups of all parameters: per-layer muP learning rates when the model
        has muP factors (``parameterization="mup"``), else one group at ``lr``."""
        return param_groups(self, lr, self.mup_lr_scale)

    def refinable_parameters(self) -> list[nn.Parameter]:
        """The parameters Spectral-Refiner fine-tuning (``stage.recipe: refine``) trains, all others frozen;
        call it after :meth:`refine`. None by default."""
        return []

    def refine(self, resolution: Sequence[int]) -> dict:
        """Prepare Spectral-Refiner fine-tuning on a ``resolution`` grid (e.g. release spectral modes).

        Returns the hyperparameter updates that rebuild the refined model, to be saved with its config.
        """
        raise ConfigError(f"stage.recipe refine needs a model with spectral layers; {self.name} has none")

    def fit_to_data(self, train, encode_outputs=None) -> dict:
        """Fit data-dependent parts once, before training, on the training split ``train`` only (e.g.
        DeepONet's sensor grid, POD modes kept as buffers); ``encode_outputs`` maps physical targets to
        what the model predicts (the task's output normalization), None for identity.

        Returns the hyperparameter updates that rebuild the fitted architecture, saved with the config.
        Nothing to fit by default.
        """
        return {}

    def accepts(self, kind: str) -> bool:
        """Whether data on the geometry ``kind`` ("grid", "mesh" or "points") fits this model."""
        return kind in self.geometries


MODELS: dict[str, type[Operator]] = {}


def register(name: str):
    """Class decorator: file an :class:`Operator` subclass in :data:`MODELS` under ``name``."""

    def decorate(cls: type[Operator]) -> type[Operator]:
        if name in MODELS:
            raise ValueError(f"model name '{name}' is taken by {MODELS[name].__name__}")
        if not cls.geometries or not cls.geometries <= set(GEOMETRIES):
            raise ValueError(f"{cls.__name__}.geometries must name some of {GEOMETRIES}, got {set(cls.geometries)}")
        cls.name = name
        MODELS[name] = cls
        return cls

    return decorate


def build(name: str, in_channels: int, out_channels: int, **hyper) -> Operator:
    """The registered model ``name`` (any case) from ``in_channels`` to ``out_channels`` channels.

    ``hyper`` is validated by the model's ``Hyper``: unknown names, unknown or
    missing hyperparameters and values of the wrong type are one-line
    :class:`~oplearn.errors.ConfigError` s that name the key.
    """
    key = name.lower()
    if key not in MODELS:
        raise ConfigError(f"unknown model '{name}'; choose one of: {', '.join(sorted(MODELS))}")
    return MODELS[key](in_channels, out_channels, **hyper)


def validate_hyperparameters(cls: type[Operator], values: dict) -> BaseModel:
    """``cls.Hyper`` of ``values``; a pydantic error becomes a one-line ConfigError naming the keys."""
    try:
        return cls.Hyper(**values)
    except ValidationError as error:
        raise ConfigError(_one_line(cls, error)) from None


def _one_line(cls: type[Operator], error: ValidationError) -> str:
    unknown, missing, invalid = [], [], {}
    for item in error.errors():
        # loc: the key, then list indices and (for unions) the member type tried
        key = str(item["loc"][0]) + "".join(f"[{part}]" for part in item["loc"][1:] if isinstance(part, int))
        if item["type"] == "extra_forbidden":
            unknown.append(key)
        elif item["type"] == "missing":
            missing.append(key)
        else:
            invalid.setdefault(key, []).append(item["msg"].removeprefix("Value error, "))
    if unknown:
        return (f"unknown hyperparameter(s) {', '.join(sorted(unknown))} for model '{cls.name}'; "
                f"it takes: {', '.join(cls.Hyper.model_fields)}")
    problems = [f"missing hyperparameter(s) {', '.join(missing)}"] if missing else []
    problems += [f"{key}: {' or '.join(dict.fromkeys(messages))}" for key, messages in invalid.items()]
    return f"model '{cls.name}': {'; '.join(problems)}"
