"""Datasets of function pairs, read from memory or lazily from HDF5, and their normalizers.

A :class:`FieldDataset` serves pairs ``inputs (N, C_in, *S)``, ``outputs
(N, C_out, *S)``. Steady files hold the pairs directly. Trajectory files
``(N, T, C, *S)`` become pairs by choosing time steps: the input is the
snapshots at ``input_steps`` stacked as channels, the output those at
``output_steps`` (default: first snapshot -> last one, e.g. Burgers u0 -> u(T)).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch

from oplearn.data.batch import Batch
from oplearn.data.geometry import Grid
from oplearn.data.store import open_hdf5
from oplearn.errors import DataError

IN_MEMORY_BYTES = 2 * 2**30  # larger selections are read from the file batch by batch


def _steps_as_channels(trajectories: np.ndarray, steps: Sequence[int]) -> np.ndarray:
    """``(N, T, C, *S)`` -> ``(N, len(steps) * C, *S)``."""
    picked = trajectories[:, list(steps)]
    return picked.reshape(picked.shape[0], -1, *picked.shape[3:])


def _check_steps(name: str, steps: Sequence[int], n_times: int, label: str) -> list[int]:
    steps = list(steps)
    if not steps or any(not -n_times <= s < n_times for s in steps):
        raise DataError(f"{name}: {label} {steps} must be non-empty indices into the {n_times} stored time steps")
    return [s % n_times for s in steps]


def _check_finite(name: str, label: str, array) -> None:
    if not (np.isfinite(array).all() if isinstance(array, np.ndarray) else torch.isfinite(array).all()):
        raise DataError(f"{name}: {label} contain NaN or infinite values; regenerate or clean the file")


class FieldDataset:
    """Input/output function pairs, in memory or read from an oplearn HDF5 file on demand.

    ``batch(indices)`` returns a :class:`~oplearn.data.batch.Batch` of float32
    tensors for any index list; ``len``, ``resolution`` (the grid ``S``, also
    ``shape``) and ``channels`` (``(C_in, C_out)``) describe it without reading
    samples. ``location`` says where the grid's points are (``"nodes"`` i/(n-1), or
    ``"cells"`` (i+1/2)/n, as the file's ``grid_location`` records; see
    :class:`~oplearn.data.geometry.Grid`); it sets the batches' ``spacing``.
    """

    kind = "grid"
    location = "nodes"
    pde: str | None = None  # the equation the data solve and its parameters, for physics loss terms
    params: dict = {}
    targets = True  # False: batches carry no targets (data-free training from the inputs alone)
    labelled: int | None = None  # only the first ``labelled`` samples' targets may be read (hybrid training)

    def __init__(self, inputs: torch.Tensor, outputs: torch.Tensor | None, name: str = "data",
                 output_channels: int | None = None):
        """``outputs`` None: inputs only (``output_channels`` says what the outputs would have)."""
        self.name = name
        self._pairs: _MemoryPairs | _LazyPairs = _MemoryPairs(inputs, outputs, name, output_channels)
        self.targets = self.has_targets

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], name: str = "data", n: int | None = None,
                    input_steps: Sequence[int] = (0,), output_steps: Sequence[int] = (-1,),
                    output_channels: int | None = None) -> "FieldDataset":
        """From a store/format dict (``inputs``/``outputs`` or ``trajectories``); keep the first ``n`` samples.
        ``output_channels``: inputs alone may come, the outputs they lack having this many channels."""
        if "trajectories" in arrays:
            trajectories = np.asarray(arrays["trajectories"])
            count = _check_count(name, len(trajectories), n)
            steps_in = _check_steps(name, input_steps, trajectories.shape[1], "input_steps")
            steps_out = _check_steps(name, output_steps, trajectories.shape[1], "output_steps")
            inputs = _steps_as_channels(trajectories[:count], steps_in)
            outputs = _steps_as_channels(trajectories[:count], steps_out)
        else:
            missing = {"inputs", "outputs"} - set(arrays) - ({"outputs"} if output_channels is not None else set())
            if missing:
                raise DataError(f"{name} has no {' or '.join(sorted(missing))} dataset (found: "
                                f"{', '.join(arrays)}); training needs input/output pairs or trajectories")
            count = _check_count(name, len(arrays["inputs"]), n)
            inputs = np.asarray(arrays["inputs"][:count])
            outputs = np.asarray(arrays["outputs"][:count]) if "outputs" in arrays else None
        return cls(torch.as_tensor(inputs), None if outputs is None else torch.as_tensor(outputs), name,
                   output_channels)

    @classmethod
    def open(cls, path: str | Path, name: str | None = None, n: int | None = None,
             input_steps: Sequence[int] = (0,), output_steps: Sequence[int] = (-1,),
             in_memory: bool | None = None) -> "FieldDataset":
        """Open any supported dataset file.

        oplearn HDF5 files are read lazily when the selected pairs exceed
        ``IN_MEMORY_BYTES`` (or with ``in_memory=False``) and loaded whole
        otherwise; other formats are always loaded (``oplearn convert`` them).
        """
        from oplearn.data.formats import load_arrays
        from oplearn.data.store import is_oplearn_file, read_attributes

        path, name = Path(path), name or str(path)
        if not is_oplearn_file(path):
            return cls.from_arrays(load_arrays(path)["arrays"], name, n, input_steps, output_steps)
        attributes = read_attributes(path)
        output_channels = attributes.get("output_channels")
        lazy = None if in_memory is True else _LazyPairs(path, name, n, input_steps, output_steps, output_channels)
        if lazy is not None and (in_memory is False or lazy.bytes > IN_MEMORY_BYTES):
            dataset = cls.__new__(cls)
            dataset.name, dataset._pairs = name, lazy
            dataset.targets = dataset.has_targets
        else:
            dataset = cls.from_arrays(load_arrays(path)["arrays"], name, n, input_steps, output_steps,
                                      output_channels)
        dataset.location = attributes.get("grid_location", "nodes")
        dataset.pde, dataset.params = attributes.get("pde"), dict(attributes.get("params") or {})
        times = _stored_times(path)
        if times is not None:  # trajectories: the physical times of the chosen snapshots
            dataset.params["input_times"] = [float(times[s]) for s in input_steps]
            dataset.params["output_times"] = [float(times[s]) for s in output_steps]
        return dataset

    def __len__(self) -> int:
        return self._pairs.length

    @property
    def in_memory(self) -> bool:
        return isinstance(self._pairs, _MemoryPairs)

    @property
    def resolution(self) -> tuple[int, ...]:
        return tuple(self._pairs.shapes[0][1:])

    @property
    def shape(self) -> tuple[int, ...]:
        """The grid of one sample (what :meth:`Task.evaluation_batch` sizes batches by)."""
        return self.resolution

    @property
    def channels(self) -> tuple[int, int]:
        return self._pairs.shapes[0][0], self._pairs.shapes[1][0]

    @property
    def has_targets(self) -> bool:
        """False for an inputs-only file (``oplearn generate --inputs-only``): it holds no outputs to read."""
        return self._pairs.has_outputs

    def batch(self, indices) -> Batch:
        """Inputs ``(B, C_in, *S)`` and targets ``(B, C_out, *S)`` for sample ``indices`` (a list or tensor).

        ``spacing`` is the grid step per axis: ``1 / (n - 1)`` on nodes, ``1 / n`` on cells.
        """
        inputs, outputs = self._pairs.read(indices)  # outputs None from an inputs-only file
        return Batch(inputs, outputs if self.targets else None, spacing=Grid(self.resolution, self.location).spacing,
                     pde=self.pde, params=self.params, labelled=labelled_rows(self, indices))

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """All samples in order, ``batch_size`` at a time."""
        for start in range(0, len(self), batch_size):
            yield self.batch(range(start, min(start + batch_size, len(self))))


def labelled_rows(dataset, indices) -> torch.Tensor | None:
    """``(B,)`` bool, True for the samples among ``indices`` whose targets are labels (None: all of them)."""
    if dataset.labelled is None or not dataset.targets:
        return None
    return torch.as_tensor(indices, dtype=torch.long).reshape(-1) < dataset.labelled


def _stored_times(path: Path) -> np.ndarray | None:
    """The ``times`` dataset of a trajectory file, ``(T,)`` float64, or None."""
    from oplearn.data.store import open_dataset

    with open_dataset(path) as handle:
        return np.asarray(handle["times"], dtype=np.float64) if "trajectories" in handle and "times" in handle \
            else None


class _MemoryPairs:
    def __init__(self, inputs: torch.Tensor, outputs: torch.Tensor | None, name: str,
                 output_channels: int | None = None):
        if inputs.ndim < 3:
            raise DataError(f"{name}: expected (samples, channels, *grid) arrays, got {tuple(inputs.shape)}")
        if outputs is None and output_channels is None:
            raise DataError(f"{name}: inputs without outputs need output_channels (what the outputs would have)")
        if outputs is not None and (inputs.shape[0] != outputs.shape[0] or inputs.shape[2:] != outputs.shape[2:]):
            raise DataError(f"{name}: inputs {tuple(inputs.shape)} and outputs {tuple(outputs.shape)} must have "
                            "the same number of samples and the same grid")
        _check_finite(name, "inputs", inputs)
        if outputs is not None:
            _check_finite(name, "outputs", outputs)
        self.inputs, self.outputs = inputs.float(), None if outputs is None else outputs.float()
        output_shape = (int(output_channels), *inputs.shape[2:]) if outputs is None else tuple(outputs.shape[1:])
        self.length, self.shapes = len(inputs), (tuple(inputs.shape[1:]), output_shape)
        self.has_outputs = outputs is not None

    def read(self, indices) -> tuple[torch.Tensor, torch.Tensor | None]:
        indices = torch.as_tensor(indices, dtype=torch.long)
        return self.inputs[indices], None if self.outputs is None else self.outputs[indices]


def _check_count(name: str, available: int, n: int | None) -> int:
    if n is not None and n > available:
        raise DataError(f"{name} holds {available} samples but {n} were asked for; lower n")
    return available if n is None else n


class _LazyPairs:
    """Reads pairs from an oplearn HDF5 file batch by batch (the file is reopened in each process)."""

    def __init__(self, path: Path, name: str, n, input_steps, output_steps, output_channels: int | None = None):
        from oplearn.data.store import open_dataset

        self.path, self.name, self.has_outputs = path, name, True
        with open_dataset(path) as handle:
            self.trajectories = "trajectories" in handle
            if self.trajectories:
                shape = handle["trajectories"].shape
                self.steps = (_check_steps(name, input_steps, shape[1], "input_steps"),
                              _check_steps(name, output_steps, shape[1], "output_steps"))
                self.shapes = tuple((len(s) * shape[2], *shape[3:]) for s in self.steps)
                available = shape[0]
            elif "inputs" in handle and "outputs" not in handle and output_channels is not None:
                self.has_outputs = False  # an inputs-only file
                shape = handle["inputs"].shape
                self.shapes, available = (shape[1:], (int(output_channels), *shape[2:])), shape[0]
            else:
                if not {"inputs", "outputs"} <= set(handle):
                    raise DataError(f"{name} has neither inputs/outputs nor trajectories; "
                                    "training needs input/output pairs")
                self.shapes = (handle["inputs"].shape[1:], handle["outputs"].shape[1:])
                available = handle["inputs"].shape[0]
        self.length = _check_count(name, available, n)
        self.bytes = 4 * self.length * sum(int(np.prod(shape)) for shape in self.shapes[:1 + self.has_outputs])
        self._handle: h5py.File | None = None
        self._owner: int | None = None

    def _file(self) -> h5py.File:
        import os

        if self._handle is None or self._owner != os.getpid():  # h5py handles do not survive fork
            self._handle, self._owner = open_hdf5(self.path), os.getpid()
        return self._handle

    def read(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= self.length):
            raise IndexError(f"{self.name}: sample index out of range 0..{self.length - 1}")
        # h5py selections need increasing, unique indices: read sorted, then put back in the asked order.
        unique, inverse = np.unique(indices, return_inverse=True)
        handle = self._file()
        if self.trajectories:
            source = handle["trajectories"]
            parts = [np.stack([source[unique, step] for step in steps], axis=1) for steps in self.steps]
            parts = [p.reshape(len(unique), -1, *p.shape[3:]) for p in parts]
        else:
            parts = [handle[name][unique] for name in ("inputs", "outputs")[:1 + self.has_outputs]]
        inputs, *outputs = (torch.from_numpy(np.ascontiguousarray(p[inverse])) for p in parts)
        _check_finite(self.name, "inputs", inputs)
        if outputs:
            _check_finite(self.name, "outputs", outputs[0])
        return inputs, outputs[0] if outputs else None

    def __getstate__(self):
        return {**self.__dict__, "_handle": None, "_owner": None}


class ChannelMoments:
    """Running per-channel count, sum and sum of squares (float64) of ``(B, C, *S)`` batches.

    ``mask (B, *S)`` (True at real points) leaves padded points of ragged point sets out.
    """

    def __init__(self):
        self.count, self.total, self.squares = 0, 0.0, 0.0

    def add(self, data: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        dims = [0] + list(range(2, data.ndim))
        data = data.double()
        if mask is None:
            self.count += data.numel() // data.shape[1]
        else:
            self.count += int(mask.sum())
            data = data * mask[:, None].to(data.dtype)
        self.total = self.total + data.sum(dim=dims)
        self.squares = self.squares + (data**2).sum(dim=dims)

    def normalizer(self, eps: float = 1e-6) -> "ChannelNormalizer":
        """Mean and unbiased std per channel, the std kept above ``eps``."""
        if self.count < 2:
            raise DataError("a normalizer needs at least two values per channel; use more training data")
        mean = self.total / self.count
        variance = ((self.squares - self.count * mean**2) / (self.count - 1)).clamp_min(0.0)
        return ChannelNormalizer(mean.float(), variance.sqrt().clamp_min(eps).float())


class ChannelNormalizer:
    """Per-channel affine map ``(x - mean) / std`` over samples and grid points.

    Statistics do not depend on the grid, so a normalizer fitted at one
    resolution applies at any other (pointwise statistics would not).
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        self.mean, self.std = mean, std

    @classmethod
    def fit(cls, data: torch.Tensor, eps: float = 1e-6) -> "ChannelNormalizer":
        """Fit on ``(N, C, *S)`` data: mean and (unbiased) std of each channel."""
        return cls.fit_batches([data], eps)

    @classmethod
    def fit_batches(cls, batches, eps: float = 1e-6) -> "ChannelNormalizer":
        """Fit on an iterable of ``(B, C, *S)`` batches, accumulating sums in float64 (one pass)."""
        moments = ChannelMoments()
        for data in batches:
            moments.add(data)
        return moments.normalizer(eps)

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
