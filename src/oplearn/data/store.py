"""The oplearn HDF5 dataset file: crash-safe writing, checked reading, summaries.

A dataset file (format version 2) holds these file attributes:

* ``oplearn_format`` (int, 2), ``pde`` (str), ``params`` (JSON string of the
  generator parameters), ``seed`` (int), ``oplearn_version`` (str),
  ``complete`` (bool), ``n_samples`` (int, planned total), ``n_done`` (int,
  samples finished so far);
* ``geometry`` (str): ``"grid"``, ``"mesh"`` or ``"points"`` (see
  :mod:`oplearn.data.geometry`); grid files also carry ``grid_location``
  (``"nodes"``, points i/(n-1), or ``"cells"``, centres (i+1/2)/n).

Grid files hold these datasets, all float32 unless noted:

* steady problems: ``inputs`` (N, C_in, *S) and ``outputs`` (N, C_out, *S);
* time-dependent problems: ``trajectories`` (N, T, C, *S) and ``times`` (T,)
  float64.

Per-sample datasets are created at full size N, chunked along the sample axis
and filled as samples are produced. Whole datasets written once (``times``)
are stored contiguously; that is how :func:`describe` tells them apart.
Mesh and point-cloud files, whose samples differ in size, store their values
concatenated over samples; :mod:`oplearn.data.ragged` writes and reads them.

Format 1 files are grid files without ``geometry``/``grid_location``; they
read as ``geometry="grid"``, ``grid_location="nodes"``.

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
from oplearn.data.geometry import GRID_LOCATIONS, Grid
from oplearn.errors import DataError

FORMAT_VERSION = 2  # what the writers write
READABLE_FORMATS = (1, 2)
GEOMETRIES = ("grid", "mesh", "points")
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


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def damaged(path, exc: BaseException) -> DataError:
    """The one-line error for an HDF5 file that h5py cannot read."""
    return DataError(f"{path} is damaged or truncated ({_first_line(exc)}); regenerate it")


@contextlib.contextmanager
def reading(path):
    """Turn the errors h5py raises on damaged files (OSError, RuntimeError, KeyError) into :func:`damaged`."""
    try:
        yield
    except (OSError, RuntimeError, KeyError) as exc:
        raise damaged(path, exc) from None


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
        with h5py.File(scratch, "w") as f:
            f.attrs.update(oplearn_format=FORMAT_VERSION, **common, oplearn_version=__version__,
                           complete=False, n_samples=self.n_samples, n_done=0, **self._attrs())
            self._layout(f)
            for name, arr in extra.items():
                f.create_dataset(name, data=arr)
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
        _fsync(self.partial)
        os.replace(self.partial, self.path)
        _fsync(self.path.parent)  # make the rename itself durable

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
    ``"nodes"`` or ``"cells"`` (see :class:`oplearn.data.geometry.Grid`).

    After every :meth:`append` the data is flushed and only then ``n_done`` is
    advanced and flushed, so a process killed at any moment leaves a partial
    file whose ``n_done`` counts exactly the samples safely on disk. Storage
    is allocated up front, so appends never change the file's layout.
    """

    def __init__(self, path, *, pde: str, params: dict, seed: int, n_samples: int,
                 shapes: dict[str, tuple[int, ...]],
                 extra: dict[str, np.ndarray] | None = None,
                 overwrite: bool = False, resume: bool = False,
                 geometry: str = "grid", grid_location: str = "nodes"):
        if geometry != "grid":
            raise DataError(f"DatasetWriter writes grid files, not geometry '{geometry}'; write mesh and "
                            "point-cloud samples with oplearn.data.ragged.RaggedDatasetWriter")
        if grid_location not in GRID_LOCATIONS:
            raise DataError(f"grid_location '{grid_location}' is unknown; use 'nodes' or 'cells'")
        self.grid_location = grid_location
        self.shapes = {name: tuple(int(d) for d in shape) for name, shape in shapes.items()}
        if not self.shapes:
            raise DataError("DatasetWriter needs at least one per-sample dataset in `shapes`")
        super().__init__(path, pde=pde, params=params, seed=seed, n_samples=n_samples, extra=extra,
                         overwrite=overwrite, resume=resume)

    def _dataset_names(self) -> list[str]:
        return list(self.shapes)

    def _attrs(self) -> dict:
        return {"geometry": "grid", "grid_location": self.grid_location}

    def _settings(self) -> dict:
        return {**self._attrs(), "shapes": self.shapes}

    def _stored_settings(self, f: h5py.File) -> dict:
        return {"geometry": f.attrs.get("geometry"), "grid_location": f.attrs.get("grid_location"),
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


# -- reading -------------------------------------------------------------------

def _version(attrs) -> int | None:
    try:
        return int(attrs.get("oplearn_format"))
    except (TypeError, ValueError):
        return None


def geometry_of(attrs) -> str:
    """The ``geometry`` of a file from its attributes; format 1 files are grids."""
    value = attrs.get("geometry", "grid" if _version(attrs) == 1 else None)
    return value.decode() if isinstance(value, bytes) else value


def _format_problem(path: Path, a, allow_partial: bool) -> str | None:
    """Why the attributes ``a`` are not those of a readable oplearn file, or None."""
    if "oplearn_format" not in a:
        return (f"{path} is an HDF5 file but not an oplearn dataset (no 'oplearn_format' "
                "attribute); create it with `oplearn generate`")
    if _version(a) not in READABLE_FORMATS:
        return (f"{path} uses dataset format {a['oplearn_format']}, but this oplearn reads formats "
                f"{READABLE_FORMATS[0]} to {READABLE_FORMATS[-1]}; use a matching oplearn version "
                "or regenerate the file")
    geometry = geometry_of(a)
    if geometry not in GEOMETRIES:
        return (f"{path} has geometry {geometry!r}, but this oplearn reads {', '.join(GEOMETRIES)}; "
                "use a matching oplearn version or regenerate the file")
    if geometry == "grid" and a.get("grid_location", "nodes") not in GRID_LOCATIONS:
        return f"{path} has grid_location {a.get('grid_location')!r}, not nodes or cells; regenerate the file"
    if not allow_partial and not bool(a.get("complete", False)):
        return (f"{path} is incomplete ({int(a.get('n_done', 0))} of "
                f"{int(a.get('n_samples', 0))} samples); "
                "finish it with `oplearn generate ... --resume`")
    return None


def _open(path: Path, *, allow_partial: bool) -> h5py.File:
    """Open an oplearn file (format 1 or 2, any geometry) for reading after checking it exists, parses and is ours."""
    if not path.exists():
        if partial_path(path).exists():
            raise DataError(f"{path} does not exist but {partial_path(path).name} does: "
                            "generation was interrupted; resume it with --resume")
        raise DataError(f"{path} does not exist; check the path or create it with `oplearn generate`")
    if path.is_dir():
        raise DataError(f"{path} is a directory; pass a dataset file")
    with reading(path):  # no file lock for summaries, so `oplearn info` works while generating
        f = h5py.File(path, "r", locking=False) if allow_partial else h5py.File(path, "r")
    try:
        with reading(path):
            problem = _format_problem(path, f.attrs, allow_partial)
    except BaseException:
        f.close()
        raise
    if problem:
        f.close()
        raise DataError(problem)
    return f


def _refuse_ragged(path: Path, f: h5py.File) -> None:
    geometry = geometry_of(f.attrs)
    if geometry != "grid":
        f.close()
        raise DataError(f"{path} holds {geometry} samples of varying size, not grid arrays; read it with "
                        "oplearn.data.ragged.RaggedReader or read_ragged")


def open_dataset(path) -> h5py.File:
    """Open a complete oplearn grid file (format 1 or 2), checked like :func:`read_dataset`; close it after use.

    Mesh and point-cloud files are refused with a DataError (use
    :class:`oplearn.data.ragged.RaggedReader`).
    """
    path = Path(path)
    f = _open(path, allow_partial=False)
    _refuse_ragged(path, f)
    return f


def is_oplearn_file(path) -> bool:
    """Whether ``path`` is an existing, openable HDF5 file carrying the ``oplearn_format`` attribute.

    A damaged HDF5 file answers False; the reader it then goes to reports the damage.
    """
    path = Path(path)
    if not path.is_file() or not h5py.is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r", locking=False) as f:
            return "oplearn_format" in f.attrs
    except (OSError, RuntimeError, KeyError):
        return False


def read_attributes(path) -> dict:
    """The attributes of a complete oplearn file (``pde``, ``seed``, ...), decoded as :func:`read_dataset` does."""
    path = Path(path)
    with _open(path, allow_partial=False) as f, reading(path):
        return _decode_attrs(f.attrs)


def _decode_attrs(attrs) -> dict:
    """Attributes as plain Python values; ``params`` (and ``channels``) decoded from JSON; format 1
    files get ``geometry="grid"`` and ``grid_location="nodes"``."""
    out = {}
    for key, value in attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, (np.generic, np.ndarray)):
            value = value.tolist()
        out[key] = value
    try:
        out["params"] = json.loads(out.get("params", "{}"))
        if "channels" in out:
            out["channels"] = json.loads(out["channels"])
    except (TypeError, ValueError):
        raise DataError("the 'params' or 'channels' attribute is not valid JSON; the file is damaged: "
                        "regenerate it") from None
    out["geometry"] = geometry_of(attrs)
    if out["geometry"] == "grid":
        out.setdefault("grid_location", "nodes")
    return out


def read_dataset(path) -> dict:
    """Load a complete grid dataset file (format 1 or 2) into memory.

    Returns ``{"arrays": {name: np.ndarray}, "attrs": {...}}``: ``arrays`` holds
    every dataset at full shape (e.g. inputs (N, C_in, *S) float32), ``attrs``
    the file attributes with ``params`` decoded from JSON into a dict and
    ``geometry``/``grid_location`` filled in for format 1 files. Mesh and
    point-cloud files raise a DataError pointing to
    :func:`oplearn.data.ragged.read_ragged`: their concatenated arrays are
    not (N, C, *S) arrays, and passing them on as such would mislead.
    """
    path = Path(path)
    with _open(path, allow_partial=False) as f:
        _refuse_ragged(path, f)
        with reading(path):
            attrs = _decode_attrs(f.attrs)
            arrays = {}
            for name, ds in f.items():
                if not isinstance(ds, h5py.Dataset):
                    continue
                arr = ds[...]
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


def dataset_line(name: str, ds: h5py.Dataset, rows: int) -> str:
    """One ``datasets:`` line of :func:`describe`: name, shape, dtype and statistics of the first ``rows`` rows."""
    head = f"  {name:<13} {str(ds.shape):<22} {ds.dtype}"
    if ds.dtype.kind not in "biuf" or not ds.shape:
        return head
    step = ds.chunks[0] if ds.chunks else max(rows, 1)
    return f"{head}  {_stats(ds, rows, step)}"


def _grid_lines(f: h5py.File, a: dict) -> list[str]:
    """The ``geometry:`` and ``datasets:`` lines of a grid file."""
    total, done = int(a.get("n_samples", 0)), int(a.get("n_done", 0))
    lines = []
    for name, skip in (("inputs", 2), ("outputs", 2), ("trajectories", 3)):
        if isinstance(f.get(name), h5py.Dataset):
            lines.append(f"geometry:  {_grid_text(f[name].shape[skip:], a['grid_location'])}")
            break
    lines.append("datasets:")
    for name, ds in f.items():
        if isinstance(ds, h5py.Dataset):
            per_sample = ds.chunks is not None and ds.shape and ds.shape[0] == total
            lines.append(dataset_line(name, ds, done if per_sample else (ds.shape[0] if ds.shape else 1)))
    return lines


def _grid_text(shape: tuple[int, ...], location: str) -> str:
    try:
        return Grid(tuple(shape), location).describe()
    except DataError:  # a shape no Grid takes (say one node per axis): still show it
        return f"grid {'x'.join(map(str, shape))} ({location})"


def describe(path) -> str:
    """A multi-line human-readable summary of a dataset file (complete or partial, any geometry).

    If ``path`` is missing but ``<path>.partial`` exists, the partial file is
    described. Statistics of per-sample datasets cover the finished samples
    only. A damaged file raises a one-line DataError.
    """
    path = Path(path)
    if not path.exists() and partial_path(path).exists():
        path = partial_path(path)
    with _open(path, allow_partial=True) as f, reading(path):
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
        ]
        if a["geometry"] == "grid":
            lines += _grid_lines(f, a)
        else:
            from oplearn.data.ragged import summary_lines  # ragged builds on this module

            lines += summary_lines(path, f, a)
    return "\n".join(lines)
