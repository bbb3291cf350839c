"""Device names as users write them (``cpu``, ``cuda``, ``cuda:1``, ``auto``) -> a checked ``torch.device``."""

from __future__ import annotations

import torch

from oplearn.errors import ConfigError


def resolve_device(name: str | torch.device, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when present (one GPU per local rank), else CPU; ``cuda`` without an index takes the
    local rank's GPU. An unknown name, or CUDA on a machine without it, is a one-line ConfigError."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device '{name}'; use cpu, cuda, cuda:N or auto") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device '{name}' is not supported; use cpu, cuda, cuda:N or auto")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{name}' asked for, but CUDA is not available on this machine; use cpu "
                              "or auto")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
        elif device.index >= torch.cuda.device_count():
            raise ConfigError(f"device '{name}': this machine has {torch.cuda.device_count()} GPU(s)")
    return device
