"""In-memory datasets of function pairs and their normalizers."""

from __future__ import annotations

import numpy as np
import torch

from oplearn.errors import DataError


class FieldDataset:
    """Pairs of input and output functions held as tensors.

    ``inputs``: ``(N, C_in, *S)``, ``outputs``: ``(N, C_out, *S)``; float32.
    Small enough for the operator-learning benchmarks to live in memory, so
    batches are plain index lookups (no worker processes).
    """

    def __init__(self, inputs: torch.Tensor, outputs: torch.Tensor, name: str = "data"):
        if inputs.shape[0] != outputs.shape[0] or inputs.shape[2:] != outputs.shape[2:]:
            raise DataError(f"{name}: inputs {tuple(inputs.shape)} and outputs {tuple(outputs.shape)} must have "
                            "the same number of samples and the same grid")
        if inputs.ndim < 3:
            raise DataError(f"{name}: expected (samples, channels, *grid) arrays, got {tuple(inputs.shape)}")
        for label, tensor in (("inputs", inputs), ("outputs", outputs)):
            if not torch.isfinite(tensor).all():
                raise DataError(f"{name}: {label} contain NaN or infinite values; regenerate or clean the file")
        self.inputs = inputs.float()
        self.outputs = outputs.float()
        self.name = name

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], name: str = "data", n: int | None = None) -> "FieldDataset":
        """From a store/format dict with ``inputs`` and ``outputs``; keep the first ``n`` samples."""
        missing = {"inputs", "outputs"} - set(arrays)
        if missing:
            raise DataError(f"{name} has no {' or '.join(sorted(missing))} dataset (found: {', '.join(arrays)}); "
                            "training needs input/output pairs")
        inputs, outputs = arrays["inputs"], arrays["outputs"]
        if n is not None:
            if n > len(inputs):
                raise DataError(f"{name} holds {len(inputs)} samples but {n} were asked for; lower n")
            inputs, outputs = inputs[:n], outputs[:n]
        return cls(torch.as_tensor(np.asarray(inputs)), torch.as_tensor(np.asarray(outputs)), name)

    def __len__(self) -> int:
        return self.inputs.shape[0]

    @property
    def resolution(self) -> tuple[int, ...]:
        return tuple(self.inputs.shape[2:])


class ChannelNormalizer:
    """Per-channel affine map ``(x - mean) / std`` over samples and grid points.

    Statistics do not depend on the grid, so a normalizer fitted at one
    resolution applies at any other (pointwise statistics would not).
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        self.mean, self.std = mean, std

    @classmethod
    def fit(cls, data: torch.Tensor, eps: float = 1e-6) -> "ChannelNormalizer":
        """Fit on ``(N, C, *S)`` data: mean and std of each channel."""
        dims = [0] + list(range(2, data.ndim))
        mean = data.double().mean(dim=dims)
        std = data.double().std(dim=dims).clamp_min(eps)
        return cls(mean.float(), std.float())

    def _view(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return t.to(x.device, x.dtype).view(1, -1, *([1] * (x.ndim - 2)))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._view(self.mean, x)) / self._view(self.std, x)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._view(self.std, x) + self._view(self.mean, x)

    def state(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.mean": self.mean, f"{prefix}.std": self.std}

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], prefix: str) -> "ChannelNormalizer":
        return cls(tensors[f"{prefix}.mean"], tensors[f"{prefix}.std"])
