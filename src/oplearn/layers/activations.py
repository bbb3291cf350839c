"""Pointwise nonlinearities by name, as models take them from a config (``activation: gelu``)."""

from __future__ import annotations

from torch import nn

from oplearn.errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


def make_activation(name: str) -> nn.Module:
    """A fresh module for the activation ``name`` (one of :data:`ACTIVATIONS`); shapes are kept."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation '{name}'; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()
