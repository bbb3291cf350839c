"""Models by name: ``build("fno", in_channels=1, out_channels=1, modes=(12, 12))``."""

from __future__ import annotations

import inspect

from torch import nn

from oplearn.errors import ConfigError
from oplearn.models.afno import AFNO
from oplearn.models.fno import FNO
from oplearn.models.gfno import GFNO
from oplearn.models.kan import KAN
from oplearn.models.mlp import MLP
from oplearn.models.tfno import TFNO

MODELS: dict[str, type[nn.Module]] = {"afno": AFNO, "fno": FNO, "gfno": GFNO, "kan": KAN, "mlp": MLP, "tfno": TFNO}


def build(name: str, **hyper) -> nn.Module:
    """Construct the registered model ``name`` with its hyperparameters.

    Unknown names and unknown hyperparameters are errors that list what exists.
    """
    key = name.lower()
    if key not in MODELS:
        raise ConfigError(f"unknown model '{name}'; choose one of: {', '.join(sorted(MODELS))}")
    cls = MODELS[key]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(hyper) - set(accepted))
    if unknown:
        raise ConfigError(f"unknown hyperparameter(s) {', '.join(unknown)} for model '{key}'; "
                          f"it takes: {', '.join(accepted)}")
    try:
        return cls(**hyper)
    except TypeError as error:  # a missing required argument
        raise ConfigError(f"model '{key}': {error}") from None
