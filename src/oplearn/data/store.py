"""The oplearn HDF5 dataset file: crash-safe writing, checked reading, summaries.

A dataset file (format version 1) holds these file attributes:

* ``oplearn_format`` (int, 1), ``pde`` (str), ``params`` (JSON string of the
  generator parameters), ``seed`` (int), ``oplearn_version`` (str),
  ``complete`` (bool), ``n_samples`` (int, planned total), ``n_done`` (int,
  samples finished so far);

and these datasets, all float32 unless noted:

* steady problems: ``inputs`` (N, C_in, *S) and ``outputs`` (N, C_out, *S);
* time-dependent problems: ``trajectories`` (N, T, C, *S) and ``times`` (T,)
  float64.

Per-sample datasets are created at full size N, chunked along the sample axis
and filled as samples are produced. Whole datasets written once (``times``)
are stored contiguously; that is how :func:`describe` tells them apart.

While being written the file is ``<path>.partial``; only a finished file is
moved onto ``<path>``, so a file at ``path`` is always complete.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

from oplearn import __version__
from oplearn.errors import DataError

FORMAT_VERSION = 1
_CHUNK_SAMPLES = 64
_CHUNK_BYTES = 4 * 2**20


def partial_path(path: str | os.PathLike) -> Path:
    """The in-progress file ``<path>.partial`` that sits beside ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def _fsync(path: Path) -> None:
    """Flush a file or directory to the disk, ignoring filesystems that refuse."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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


class DatasetWriter:
    """Write samples into ``<path>.partial`` and move it onto ``path`` when done.

    ``shapes`` maps each per-sample dataset to its per-sample shape, e.g.
    ``{"inputs": (1, 32, 32), "outputs": (1, 32, 32)}``; the dataset is stored
    as (n_samples, *shape) float32. ``extra`` holds whole arrays written once
    at creation, e.g. ``{"times": np.ndarray (T,)}``, keeping their dtype.

    After every :meth:`append` the data is flushed and only then ``n_done`` is
    advanced and flushed, so a process killed at any moment leaves a partial
    file whose ``n_done`` counts exactly the samples safely on disk. Storage
    is allocated up front, so appends never change the file's layout.

    Use as a context manager: leaving the block normally finishes the file if
    all samples are written (else leaves it resumable); leaving it on an
    exception only closes the partial file.
    """

    def __init__(self, path, *, pde: str, params: dict, seed: int, n_samples: int,
                 shapes: dict[str, tuple[int, ...]],
                 extra: dict[str, np.ndarray] | None = None,
                 overwrite: bool = False, resume: bool = False):
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.n_samples = int(n_samples)
        self.shapes = {name: tuple(int(d) for d in shape) for name, shape in shapes.items()}
        extra = {name: np.asarray(a) for name, a in (extra or {}).items()}
        if self.n_samples < 1:
            raise DataError(f"n_samples must be at least 1, got {n_samples}")
        if not self.shapes:
            raise DataError("DatasetWriter needs at least one per-sample dataset in `shapes`")
        clash = set(self.shapes) & set(extra)
        if clash:
            raise DataError(f"dataset name(s) {sorted(clash)} appear in both `shapes` and `extra`; "
                            "give each dataset one name")
        for name, arr in extra.items():
            if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
                raise DataError(f"extra dataset '{name}' contains NaN or Inf; fix the values")
        if self.path.exists() and not overwrite:
            raise DataError(f"{self.path} exists; pass --overwrite to replace it")
        self._file = None
        if self.partial.exists() and overwrite:
            self.partial.unlink()
        if self.partial.exists() and resume:
            self._file = self._reopen(pde, params_json(params), int(seed), extra)
        elif self.partial.exists():
            raise DataError(f"{self.partial} holds an interrupted generation; "
                            "pass --resume to continue it or --overwrite to start over")
        else:
            self._file = self._create(pde, params_json(params), int(seed), extra)

    # -- opening --------------------------------------------------------------

    def _create(self, pde, params_text, seed, extra) -> h5py.File:
        # Build the empty layout under a scratch name and rename it, so a kill
        # during creation never leaves a half-made `.partial` behind.
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.partial.with_name(self.partial.name + ".new")
        with h5py.File(scratch, "w") as f:
            f.attrs.update(oplearn_format=FORMAT_VERSION, pde=str(pde), params=params_text,
                           seed=seed, oplearn_version=__version__, complete=False,
                           n_samples=self.n_samples, n_done=0)
            for name, shape in self.shapes.items():
                sample_bytes = 4 * int(np.prod(shape, dtype=np.int64))
                rows = max(1, min(self.n_samples, _CHUNK_SAMPLES, _CHUNK_BYTES // max(sample_bytes, 1)))
                # Allocate every chunk now (without writing fill values), so
                # appends only write raw data and never touch the chunk index.
                dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
                dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
                dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
                f.create_dataset(name, shape=(self.n_samples, *shape), dtype=np.float32,
                                 chunks=(rows, *shape), dcpl=dcpl)
            for name, arr in extra.items():
                f.create_dataset(name, data=arr)
        os.replace(scratch, self.partial)
        return h5py.File(self.partial, "r+")

    def _reopen(self, pde, params_text, seed, extra) -> h5py.File:
        try:
            f = h5py.File(self.partial, "r+")
        except OSError as exc:
            raise DataError(f"cannot reopen {self.partial} to resume ({exc}); "
                            "pass --overwrite to start over") from None
        try:
            a = f.attrs
            stored = {"oplearn_format": a.get("oplearn_format"), "pde": a.get("pde"),
                      "params": json.loads(a.get("params", "null")), "seed": a.get("seed"),
                      "n_samples": a.get("n_samples"),
                      "shapes": {k: tuple(f[k].shape[1:]) for k in f if f[k].chunks is not None}}
            wanted = {"oplearn_format": FORMAT_VERSION, "pde": str(pde), "params": json.loads(params_text),
                      "seed": seed, "n_samples": self.n_samples, "shapes": self.shapes}
            differences = differing_settings(stored, wanted)
            if differences:
                raise DataError(f"cannot resume {self.partial}: it was written with {', '.join(differences)}; "
                                "rerun with the original settings or pass --overwrite")
            for name, arr in extra.items():
                if name not in f or not np.array_equal(f[name][...], arr):
                    raise DataError(f"cannot resume {self.partial}: dataset '{name}' differs; "
                                    "rerun with the original settings or pass --overwrite")
        except BaseException:
            f.close()
            raise
        return f

    # -- writing --------------------------------------------------------------

    @property
    def n_done(self) -> int:
        """Number of samples safely written so far."""
        if self._file is None:
            return self.n_samples
        return int(self._file.attrs["n_done"])

    def append(self, arrays: dict[str, np.ndarray]) -> None:
        """Write a batch: ``arrays[name]`` has shape (B, *shapes[name]), same B for all."""
        if self._file is None:
            raise DataError(f"{self.path} writer is closed; open a new DatasetWriter with resume=True")
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
            with np.errstate(over="ignore", invalid="ignore"):
                arr = arr.astype(np.float32)
            if not np.all(np.isfinite(arr)):
                raise DataError(f"append(): '{name}' contains NaN or Inf (or values too large for "
                                "float32); fix the generator before writing")
            batch[name] = arr
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
            self._file[name][start:start + b] = arr
        self._file.flush()  # data on disk before it is counted
        self._file.attrs["n_done"] = start + b
        self._file.flush()

    def finish(self) -> None:
        """Mark the file complete and atomically move ``<path>.partial`` onto ``path``."""
        if self._file is None:
            return
        done = self.n_done
        if done != self.n_samples:
            raise DataError(f"cannot finish {self.path}: only {done} of {self.n_samples} "
                            "samples written; append the rest first")
        self._file.attrs["complete"] = True
        self._file.flush()
        self.close()
        _fsync(self.partial)
        os.replace(self.partial, self.path)
        _fsync(self.path.parent)  # make the rename itself durable

    def close(self) -> None:
        """Close the partial file without finishing it (it stays resumable)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self._file is not None and self.n_done == self.n_samples:
            self.finish()
        else:
            self.close()


# -- reading -------------------------------------------------------------------

def _open(path: Path, *, allow_partial: bool) -> h5py.File:
    """Open an oplearn file for reading after checking it exists, parses and is ours."""
    if not path.exists():
        if partial_path(path).exists():
            raise DataError(f"{path} does not exist but {partial_path(path).name} does: "
                            "generation was interrupted; resume it with --resume")
        raise DataError(f"{path} does not exist; check the path or create it with `oplearn generate`")
    if path.is_dir():
        raise DataError(f"{path} is a directory; pass a dataset file")
    try:  # no file lock for summaries, so `oplearn info` works while generating
        f = h5py.File(path, "r", locking=False) if allow_partial else h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path} is not a readable HDF5 file ({str(exc).splitlines()[0]}); "
                        "it may be corrupt: regenerate it") from None
    a, problem = f.attrs, None
    if "oplearn_format" not in a:
        problem = (f"{path} is an HDF5 file but not an oplearn dataset (no 'oplearn_format' "
                   "attribute); create it with `oplearn generate`")
    elif int(a["oplearn_format"]) != FORMAT_VERSION:
        problem = (f"{path} uses dataset format {a['oplearn_format']}, but this oplearn reads "
                   f"format {FORMAT_VERSION}; use a matching oplearn version or regenerate the file")
    elif not allow_partial and not bool(a.get("complete", False)):
        problem = (f"{path} is incomplete ({int(a.get('n_done', 0))} of "
                   f"{int(a.get('n_samples', 0))} samples); "
                   "finish it with `oplearn generate ... --resume`")
    if problem:
        f.close()
        raise DataError(problem)
    return f


def open_dataset(path) -> h5py.File:
    """Open a complete oplearn file for reading (checked like :func:`read_dataset`); close it after use."""
    return _open(Path(path), allow_partial=False)


def is_oplearn_file(path) -> bool:
    """Whether ``path`` is an existing HDF5 file carrying the ``oplearn_format`` attribute."""
    path = Path(path)
    if not path.is_file() or not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r", locking=False) as f:
        return "oplearn_format" in f.attrs


def read_attributes(path) -> dict:
    """The attributes of a complete oplearn file (``pde``, ``seed``, ...), ``params`` decoded into a dict."""
    with _open(Path(path), allow_partial=False) as f:
        return _decode_attrs(f.attrs)


def _decode_attrs(attrs) -> dict:
    out = {}
    for key, value in attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, (np.generic, np.ndarray)):
            value = value.tolist()
        out[key] = value
    try:
        out["params"] = json.loads(out.get("params", "{}"))
    except (TypeError, ValueError):
        raise DataError("the 'params' attribute is not valid JSON; the file is damaged: "
                        "regenerate it") from None
    return out


def read_dataset(path) -> dict:
    """Load a complete dataset file into memory.

    Returns ``{"arrays": {name: np.ndarray}, "attrs": {...}}``: ``arrays`` holds
    every dataset at full shape (e.g. inputs (N, C_in, *S) float32), ``attrs``
    the file attributes with ``params`` decoded from JSON into a dict.
    """
    path = Path(path)
    with _open(path, allow_partial=False) as f:
        attrs = _decode_attrs(f.attrs)
        arrays = {}
        for name, ds in f.items():
            if not isinstance(ds, h5py.Dataset):
                continue
            try:
                arr = ds[...]
            except OSError as exc:
                raise DataError(f"{path}: dataset '{name}' cannot be read ({exc}); "
                                "the file is corrupt: regenerate it") from None
            if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
                raise DataError(f"{path}: dataset '{name}' contains NaN or Inf values; "
                                "regenerate the file")
            arrays[name] = arr
    return {"arrays": arrays, "attrs": attrs}


def _stats(ds: h5py.Dataset, rows: int, step: int) -> str:
    """min/max/mean of the first ``rows`` entries of ``ds``, read ``step`` rows at a time."""
    lo, hi, total, count, bad = np.inf, -np.inf, 0.0, 0, 0
    for start in range(0, rows, step):
        block = np.asarray(ds[start:min(start + step, rows)], dtype=np.float64)
        finite = block[np.isfinite(block)]
        bad += block.size - finite.size
        if finite.size:
            lo, hi = min(lo, finite.min()), max(hi, finite.max())
            total, count = total + finite.sum(), count + finite.size
    text = f"min={lo:.4g} max={hi:.4g} mean={total / count:.4g}" if count else "no values"
    return text + (f" NON-FINITE={bad}" if bad else "")


def describe(path) -> str:
    """A multi-line human-readable summary of a dataset file (complete or partial).

    If ``path`` is missing but ``<path>.partial`` exists, the partial file is
    described. Statistics of per-sample datasets cover the finished samples only.
    """
    path = Path(path)
    if not path.exists() and partial_path(path).exists():
        path = partial_path(path)
    with _open(path, allow_partial=True) as f:
        a = _decode_attrs(f.attrs)
        total, done = int(a.get("n_samples", 0)), int(a.get("n_done", 0))
        state = (f"yes ({done}/{total} samples)" if a.get("complete")
                 else f"INCOMPLETE ({done}/{total} samples; resume with --resume)")
        lines = [
            f"file:      {path}",
            f"format:    oplearn v{a['oplearn_format']}",
            f"pde:       {a.get('pde')}",
            f"params:    {json.dumps(a['params'], sort_keys=True)}",
            f"seed:      {a.get('seed')}",
            f"version:   oplearn {a.get('oplearn_version')}",
            f"complete:  {state}",
            "datasets:",
        ]
        for name, ds in f.items():
            if not isinstance(ds, h5py.Dataset):
                continue
            per_sample = ds.chunks is not None and ds.shape and ds.shape[0] == total
            rows = done if per_sample else (ds.shape[0] if ds.shape else 1)
            head = f"  {name:<13} {str(ds.shape):<22} {ds.dtype}"
            if ds.dtype.kind not in "biuf" or not ds.shape:
                lines.append(head)
                continue
            step = ds.chunks[0] if ds.chunks else max(rows, 1)
            lines.append(f"{head}  {_stats(ds, rows, step)}")
    return "\n".join(lines)
