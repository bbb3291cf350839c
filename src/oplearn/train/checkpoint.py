"""Checkpoints as one safetensors file: tensors plus JSON state, no pickle.

Keys: ``model.<name>`` (weights), ``optimizer.<param>.<key>`` (optimizer
tensors), ``extra.<name>`` (normalizers, RNG state); the metadata entry
``state`` holds JSON (epoch, optimizer hyperparameters, scheduler state).
Files appear atomically: written beside, fsynced, renamed.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from oplearn.errors import DataError
from oplearn.files import atomic_path


def _split_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for param, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{param}.{key}"] = value
            else:
                scalars.setdefault(str(param), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, param, key = name.split(".", 2)
            state.setdefault(int(param), {})[key] = value
    for param, values in meta["scalars"].items():
        state.setdefault(int(param), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler=None, extra: dict[str, torch.Tensor] | None = None, state: dict | None = None) -> None:
    """Write model, optimizer, scheduler and extra tensors to one file atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta: dict = {"state": state or {}}
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = _split_optimizer(optimizer.state_dict())
        tensors.update({k: v.contiguous().cpu() for k, v in opt_tensors.items()})
    if scheduler is not None:
        meta["scheduler"] = scheduler.state_dict()
    for name, value in (extra or {}).items():
        tensors[f"extra.{name}"] = value.detach().contiguous().cpu()
    with atomic_path(path) as scratch:
        save_file(tensors, str(scratch), metadata={"oplearn": json.dumps(meta)})


def _unreadable(path: Path, error: Exception) -> DataError:
    return DataError(f"checkpoint {path} is unreadable ({error}); delete it or retrain")


def read_meta(path: str | Path) -> dict:
    """The JSON part of a checkpoint (``state``: epoch, channels, config, ...; optimizer and scheduler
    state) without loading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist; train first or check the run directory")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return json.loads(handle.metadata()["oplearn"])
    except (SafetensorError, KeyError, ValueError, OSError, TypeError) as error:
        raise _unreadable(path, error) from None


class Checkpoint:
    """A loaded checkpoint; ``restore`` puts its parts back into live objects."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.meta = read_meta(self.path)
        try:
            self.tensors = load_file(str(self.path))
        except (SafetensorError, OSError) as error:
            raise _unreadable(self.path, error) from None

    @property
    def state(self) -> dict:
        return self.meta["state"]

    def extra(self) -> dict[str, torch.Tensor]:
        return {k.removeprefix("extra."): v for k, v in self.tensors.items() if k.startswith("extra.")}

    def restore(self, model: nn.Module, optimizer=None, scheduler=None) -> None:
        """Load the weights into ``model`` (every tensor must fit, none may be missing), then optimizer and
        scheduler state; a checkpoint of another architecture or oplearn version is a DataError."""
        weights = {k.removeprefix("model."): v for k, v in self.tensors.items() if k.startswith("model.")}
        try:
            model.load_state_dict(weights)
        except RuntimeError as error:  # missing, unexpected or reshaped tensors, listed on the following lines
            problems = " ".join(str(error).split("\n", 1)[-1].split())
            problems = problems if len(problems) <= 300 else problems[:300] + " ..."
            raise DataError(f"checkpoint {self.path} does not fit the model ({problems}); it was written for "
                            "another model config or oplearn version: retrain") from None
        if optimizer is not None:
            optimizer.load_state_dict(_join_optimizer(self.tensors, self.meta["optimizer"]))
        if scheduler is not None:
            scheduler.load_state_dict(self.meta["scheduler"])
