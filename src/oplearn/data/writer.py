"""Writing oplearn HDF5 files crash-safely: ``<path>.partial``, counted samples, resume, atomic finish.

:class:`PartialFileWriter` holds what every writer shares; :class:`DatasetWriter`
writes grid files (the layout in :mod:`oplearn.data.store`),
:class:`oplearn.data.ragged.RaggedDatasetWriter` mesh and point-cloud files.
After every append the data are flushed and only then ``n_done`` is advanced,
so a process killed at any moment leaves a partial file whose ``n_done``
counts exactly the samples safely on disk; ``resume=True`` continues it and
the result equals an uninterrupted write.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from oplearn import __version__
from oplearn.data.geometry import GRID_LOCATIONS
from oplearn.data.store import _first_line, partial_path
from oplearn.errors import DataError
from oplearn.files import fsync_path

FORMAT_VERSION = 2  # what the writers write
_CHUNK_SAMPLES = 64
_CHUNK_BYTES = 4 * 2**20


def params_json(params: dict) -> str:
    """Generator parameters as the file attribute ``params`` stores them (sorted-key JSON)."""
    def default(obj):
        if isinstance(obj, (np.generic, np.ndarray)):
            return obj.tolist()
        raise TypeError(type(obj).__name__)

    try:
        return json.dumps(params, sort_keys=True, default=default)
    except (TypeError, ValueError) as exc:
        raise DataError(f"generator params are not JSON-serialisable ({exc}); "
                        "pass plain numbers, strings, lists and dicts") from None


def differing_settings(stored: dict, wanted: dict, label: str = "now") -> list[str]:
    """``"key stored (label: wanted)"`` for every setting that differs; a key one side lacks reads as unset.

    Nested dicts (generator params, array shapes) are compared key by key, so
    the message names the setting that changed rather than the whole group.
    """
    lines = []
    for key in sorted(set(stored) | set(wanted), key=str):
        old, new = stored.get(key, "unset"), wanted.get(key, "unset")
        if isinstance(old, dict) and isinstance(new, dict):
            lines += differing_settings(old, new, label)
        elif old != new:
            lines.append(f"{key} {old} ({label}: {new})")
    return lines


def early_dcpl() -> h5py.h5p.PropDCID:
    """Creation properties that allocate storage at creation (and on resize), never writing fill values."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    return dcpl


class PartialFileWriter:
    """What every writer shares: ``<path>.partial``, ``n_done``, resuming, finishing, the ``with`` block.

    Subclasses define ``_dataset_names()`` (their per-sample datasets),
    ``_layout(f)`` (creates them), ``_attrs()`` (the file attributes they
    add), ``_settings()`` and ``_stored_settings(f)`` (what a resume must
    match, as wanted now and as stored), and may override ``_finalize(f)``
    (last changes before the file is marked complete). ``extra`` holds whole
    arrays written once at creation, keeping their dtype.

    Use as a context manager: leaving the block normally finishes the file if
    all samples are written (else leaves it resumable); leaving it on an
    exception only closes the partial file.
    """

    def __init__(self, path, *, pde: str, params: dict, seed: int, n_samples: int,
                 extra: dict[str, np.ndarray] | None, overwrite: bool, resume: bool):
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.n_samples = int(n_samples)
        extra = {name: np.asarray(a) for name, a in (extra or {}).items()}
        if self.n_samples < 1:
            raise DataError(f"n_samples must be at least 1, got {n_samples}")
        clash = set(self._dataset_names()) & set(extra)
        if clash:
            raise DataError(f"dataset name(s) {sorted(clash)} appear in both the per-sample datasets and "
                            "`extra`; give each dataset one name")
        for name, arr in extra.items():
            if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
                raise DataError(f"extra dataset '{name}' contains NaN or Inf; fix the values")
        if self.path.exists() and not overwrite and resume:
            raise DataError(f"{self.path} is complete: there is nothing to resume; use it as it is, or pass "
                            "--overwrite to generate it again")
        if self.path.exists() and not overwrite:
            raise DataError(f"{self.path} exists; pass --overwrite to replace it")
        common = {"pde": str(pde), "params": params_json(params), "seed": int(seed)}
        self._file = None
        if self.partial.exists() and overwrite:
            self.partial.unlink()
        if self.partial.exists() and resume:
            self._file = self._reopen(common, extra)
        elif self.partial.exists():
            raise DataError(f"{self.partial} holds an interrupted generation; "
                            "pass --resume to continue it or --overwrite to start over")
        else:
            self._file = self._create(common, extra)

    def _finalize(self, f: h5py.File) -> None:
        """Last changes before the file is marked complete (none by default)."""

    # -- opening --------------------------------------------------------------

    def _create(self, common: dict, extra: dict) -> h5py.File:
        # Build the empty layout under a scratch name and rename it, so a kill
        # during creation never leaves a half-made `.partial` behind.
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.partial.with_name(self.partial.name + ".new")
        try:
            with h5py.File(scratch, "w") as f:
                f.attrs.update(oplearn_format=FORMAT_VERSION, **common, oplearn_version=__version__,
                               complete=False, n_samples=self.n_samples, n_done=0, **self._attrs())
                self._layout(f)
                for name, arr in extra.items():
                    f.create_dataset(name, data=arr)
        except BaseException:  # a full disk, a kill: no half-made scratch file stays behind
            scratch.unlink(missing_ok=True)
            raise
        os.replace(scratch, self.partial)
        return h5py.File(self.partial, "r+")

    def _reopen(self, common: dict, extra: dict) -> h5py.File:
        try:
            f = h5py.File(self.partial, "r+")
        except OSError as exc:
            raise DataError(f"cannot reopen {self.partial} to resume ({_first_line(exc)}); "
                            "pass --overwrite to start over") from None
        try:
            self._check_resumable(f, common, extra)
        except (OSError, RuntimeError, KeyError) as exc:
            f.close()
            raise DataError(f"cannot resume {self.partial}: it is damaged ({_first_line(exc)}); "
                            "pass --overwrite to start over") from None
        except BaseException:
            f.close()
            raise
        return f

    def _check_resumable(self, f: h5py.File, common: dict, extra: dict) -> None:
        a = f.attrs
        version = a.get("oplearn_format")
        if version != FORMAT_VERSION:
            raise DataError(f"cannot resume {self.partial}: it is in dataset format {version}, but this "
                            f"oplearn writes format {FORMAT_VERSION}; pass --overwrite to start over")
        stored = {"pde": a.get("pde"), "params": json.loads(a.get("params", "null")), "seed": a.get("seed"),
                  "n_samples": a.get("n_samples"), **self._stored_settings(f)}
        wanted = {**common, "params": json.loads(common["params"]), "n_samples": self.n_samples,
                  **self._settings()}
        differences = differing_settings(stored, wanted)
        if differences:
            raise DataError(f"cannot resume {self.partial}: it was written with {', '.join(differences)}; "
                            "rerun with the original settings or pass --overwrite")
        for name, arr in extra.items():
            if name not in f or not np.array_equal(f[name][...], arr):
                raise DataError(f"cannot resume {self.partial}: dataset '{name}' differs; "
                                "rerun with the original settings or pass --overwrite")

    # -- writing --------------------------------------------------------------

    @property
    def n_done(self) -> int:
        """Number of samples safely written so far."""
        if self._file is None:
            return self.n_samples
        return int(self._file.attrs["n_done"])

    def _writable(self) -> h5py.File:
        if self._file is None:
            raise DataError(f"{self.path} writer is closed; open a new {type(self).__name__} with resume=True")
        return self._file

    def _commit(self, n_done: int) -> None:
        """Flush the data written so far, then record ``n_done`` (so it never counts unflushed samples)."""
        self._file.flush()
        self._file.attrs["n_done"] = n_done
        self._file.flush()

    def finish(self) -> None:
        """Mark the file complete and atomically move ``<path>.partial`` onto ``path``."""
        if self._file is None:
            return
        done = self.n_done
        if done != self.n_samples:
            raise DataError(f"cannot finish {self.path}: only {done} of {self.n_samples} "
                            "samples written; append the rest first")
        self._finalize(self._file)
        self._file.flush()
        self._file.attrs["complete"] = True
        self._file.flush()
        self.close()
        fsync_path(self.partial)
        os.replace(self.partial, self.path)
        fsync_path(self.path.parent)  # make the rename itself durable

    def close(self) -> None:
        """Close the partial file without finishing it (it stays resumable)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self._file is not None and self.n_done == self.n_samples:
            self.finish()
        else:
            self.close()


class DatasetWriter(PartialFileWriter):
    """Write grid samples into ``<path>.partial`` and move it onto ``path`` when done.

    ``shapes`` maps each per-sample dataset to its per-sample shape, e.g.
    ``{"inputs": (1, 32, 32), "outputs": (1, 32, 32)}``; the dataset is stored
    as (n_samples, *shape) float32. ``extra`` holds whole arrays written once
    at creation, e.g. ``{"times": np.ndarray (T,)}``, keeping their dtype.
    ``geometry`` must be ``"grid"`` (mesh and point samples go to
    :class:`oplearn.data.ragged.RaggedDatasetWriter`); ``grid_location`` is
    ``"nodes"`` or ``"cells"`` (see :class:`oplearn.data.geometry.Grid`). An inputs-only file (``shapes``
    without ``outputs``, for data-free training) records the channels of the outputs it leaves out in
    ``output_channels``.

    After every :meth:`append` the data is flushed and only then ``n_done`` is
    advanced and flushed, so a process killed at any moment leaves a partial
    file whose ``n_done`` counts exactly the samples safely on disk. Storage
    is allocated up front, so appends never change the file's layout.
    """

    def __init__(self, path, *, pde: str, params: dict, seed: int, n_samples: int,
                 shapes: dict[str, tuple[int, ...]],
                 extra: dict[str, np.ndarray] | None = None,
                 overwrite: bool = False, resume: bool = False,
                 geometry: str = "grid", grid_location: str = "nodes", output_channels: int | None = None):
        if geometry != "grid":
            raise DataError(f"DatasetWriter writes grid files, not geometry '{geometry}'; write mesh and "
                            "point-cloud samples with oplearn.data.ragged.RaggedDatasetWriter")
        if grid_location not in GRID_LOCATIONS:
            raise DataError(f"grid_location '{grid_location}' is unknown; use 'nodes' or 'cells'")
        self.grid_location, self.output_channels = grid_location, output_channels
        self.shapes = {name: tuple(int(d) for d in shape) for name, shape in shapes.items()}
        if not self.shapes:
            raise DataError("DatasetWriter needs at least one per-sample dataset in `shapes`")
        super().__init__(path, pde=pde, params=params, seed=seed, n_samples=n_samples, extra=extra,
                         overwrite=overwrite, resume=resume)

    def _dataset_names(self) -> list[str]:
        return list(self.shapes)

    def _attrs(self) -> dict:
        outputs = {} if self.output_channels is None else {"output_channels": int(self.output_channels)}
        return {"geometry": "grid", "grid_location": self.grid_location, **outputs}

    def _settings(self) -> dict:
        return {**self._attrs(), "shapes": self.shapes}

    def _stored_settings(self, f: h5py.File) -> dict:
        outputs = {} if "output_channels" not in f.attrs else {"output_channels": int(f.attrs["output_channels"])}
        return {"geometry": f.attrs.get("geometry"), "grid_location": f.attrs.get("grid_location"), **outputs,
                "shapes": {k: tuple(f[k].shape[1:]) for k in f if f[k].chunks is not None}}

    def _layout(self, f: h5py.File) -> None:
        for name, shape in self.shapes.items():
            sample_bytes = 4 * int(np.prod(shape, dtype=np.int64))
            rows = max(1, min(self.n_samples, _CHUNK_SAMPLES, _CHUNK_BYTES // max(sample_bytes, 1)))
            # Every chunk is allocated now, so appends only write raw data and never touch the chunk index.
            f.create_dataset(name, shape=(self.n_samples, *shape), dtype=np.float32,
                             chunks=(rows, *shape), dcpl=early_dcpl())

    def append(self, arrays: dict[str, np.ndarray]) -> None:
        """Write a batch: ``arrays[name]`` has shape (B, *shapes[name]), same B for all."""
        f = self._writable()
        if set(arrays) != set(self.shapes):
            raise DataError(f"append() got datasets {sorted(arrays)} but the file has "
                            f"{sorted(self.shapes)}; pass exactly those")
        batch, sizes = {}, set()
        for name, arr in arrays.items():
            arr = np.asarray(arr)
            want = self.shapes[name]
            if arr.ndim != len(want) + 1 or tuple(arr.shape[1:]) != want:
                raise DataError(f"append(): '{name}' has shape {tuple(arr.shape)}, "
                                f"expected (batch, {', '.join(map(str, want))})")
            batch[name] = finite_float32(arr, f"append(): '{name}'")
            sizes.add(arr.shape[0])
        if len(sizes) != 1:
            raise DataError(f"append(): batch sizes differ between datasets ({sorted(sizes)}); "
                            "pass the same number of samples for each")
        b = sizes.pop()
        start = self.n_done
        if start + b > self.n_samples:
            raise DataError(f"append(): {b} more samples would exceed n_samples={self.n_samples} "
                            f"({start} already written)")
        if b == 0:
            return
        for name, arr in batch.items():
            f[name][start:start + b] = arr
        self._commit(start + b)


def finite_float32(arr: np.ndarray, what: str) -> np.ndarray:
    """``arr`` as float32; DataError naming ``what`` if it holds NaN or Inf (or values too large for float32)."""
    with np.errstate(over="ignore", invalid="ignore"):
        arr = np.asarray(arr).astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{what} contains NaN or Inf (or values too large for "
                        "float32); fix the generator before writing")
    return arr
