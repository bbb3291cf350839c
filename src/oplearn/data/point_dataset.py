"""Datasets on meshes and point clouds: any number of points per sample, padded per batch.

A sample is a dict of arrays with one row per point (channel-last, as stored
in format v2): ``points (N_i, d)``, ``inputs (N_i, C_in)``, ``outputs (N_i,
C_out)`` and, for meshes, ``cells (M_i, k)`` of local point indices. A batch
stacks them channel-first and pads with zeros to the largest ``N_i`` of the
batch: ``inputs (B, C_in, N)``, ``targets (B, C_out, N)``, ``coords (B, d,
N)``, ``mask (B, N)`` True at real points (``None`` when all samples have
``N`` points, so equal-size point sets pay nothing for padding).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from oplearn.data.batch import Batch
from oplearn.data.dataset import labelled_rows
from oplearn.errors import DataError

_KEYS = ("points", "inputs", "outputs")


def _check_sample(name: str, index: int, sample: dict, dim: int | None, channels) -> None:
    missing = [k for k in _KEYS if k not in sample]
    if missing:
        raise DataError(f"{name}: sample {index} has no {', '.join(missing)}; point samples need points, inputs "
                        "and outputs")
    n = len(sample["points"])
    for key in _KEYS:
        array = np.asarray(sample[key])
        if array.ndim != 2 or len(array) != n:
            raise DataError(f"{name}: sample {index}: {key} has shape {array.shape}, expected ({n}, channels)")
        if not np.isfinite(array).all():
            raise DataError(f"{name}: sample {index}: {key} contain NaN or infinite values; regenerate or clean "
                            "the file")
    shape = (sample["points"].shape[1], sample["inputs"].shape[1], sample["outputs"].shape[1])
    if dim is not None and shape != (dim, *channels):
        raise DataError(f"{name}: sample {index} has dimension/channels {shape}, the first sample "
                        f"{(dim, *channels)}; every sample needs the same")


class PointDataset:
    """Function pairs sampled at per-sample point sets (meshes or point clouds).

    ``samples``: a list of sample dicts (in memory) or a reader with ``len``
    and ``samples(indices) -> list[dict]`` (read on demand). ``kind``: "mesh"
    or "points". ``shape`` is ``(largest N_i,)``, what evaluation batch sizes
    are chosen by.
    """

    def __init__(self, samples, kind: str = "points", name: str = "data", n: int | None = None,
                 pde: str | None = None, params: dict | None = None):
        if kind not in ("mesh", "points"):
            raise DataError(f"{name}: a point dataset is a 'mesh' or 'points' set, got {kind!r}")
        available = len(samples)
        if n is not None and n > available:
            raise DataError(f"{name} holds {available} samples but {n} were asked for; lower n")
        if available == 0:
            raise DataError(f"{name} holds no samples")
        self.name, self.kind, self.pde, self.params = name, kind, pde, dict(params or {})
        self.targets = True  # False: batches carry no targets (data-free training)
        self.labelled = None  # only the first ``labelled`` samples' targets may be read (hybrid training)
        self._source, self._length = samples, available if n is None else n
        first = self._read([0])[0]
        _check_sample(name, 0, first, None, None)
        self.dim = first["points"].shape[1]
        self.channels = (first["inputs"].shape[1], first["outputs"].shape[1])
        self._max_points = max(self._n_points(i) for i in range(self._length))

    def _read(self, indices: Sequence[int]) -> list[dict]:
        if isinstance(self._source, list):
            return [self._source[i] for i in indices]
        return self._source.samples(list(indices))

    def _n_points(self, index: int) -> int:
        if isinstance(self._source, list):
            return len(self._source[index]["points"])
        return self._source.n_points(index)

    def __len__(self) -> int:
        return self._length

    @property
    def shape(self) -> tuple[int]:
        return (self._max_points,)

    def batch(self, indices) -> Batch:
        """The samples at ``indices`` stacked channel-first and zero-padded to the largest of them."""
        indices = [int(i) for i in torch.as_tensor(indices, dtype=torch.long).reshape(-1)]
        if indices and (min(indices) < 0 or max(indices) >= self._length):
            raise IndexError(f"{self.name}: sample index out of range 0..{self._length - 1}")
        samples = self._read(indices)
        for index, sample in zip(indices, samples):
            _check_sample(self.name, index, sample, self.dim, self.channels)
        sizes = [len(s["points"]) for s in samples]
        width = max(sizes)

        def stack(key: str) -> torch.Tensor:
            out = np.zeros((len(samples), width, samples[0][key].shape[1]), dtype=np.float32)
            for row, sample in enumerate(samples):
                out[row, :len(sample[key])] = sample[key]
            return torch.from_numpy(out).transpose(1, 2)  # (B, C, N)

        mask = None
        if min(sizes) != width:
            mask = torch.arange(width)[None, :] < torch.tensor(sizes)[:, None]
        cells = None
        if self.kind == "mesh":
            cells = [torch.as_tensor(np.asarray(s["cells"]), dtype=torch.long) for s in samples]
        return Batch(stack("inputs"), stack("outputs") if self.targets else None, kind=self.kind, coords=stack("points"), mask=mask,
                     cells=cells, pde=self.pde, params=self.params, labelled=labelled_rows(self, indices))

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """All samples in order, ``batch_size`` at a time."""
        for start in range(0, len(self), batch_size):
            yield self.batch(range(start, min(start + batch_size, len(self))))
