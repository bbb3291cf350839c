"""The oplearn HDF5 dataset file: its layout, checked reading, summaries (writing: :mod:`oplearn.data.writer`).

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

from oplearn.data.geometry import GRID_LOCATIONS, Grid
from oplearn.errors import DataError

READABLE_FORMATS = (1, 2)
GEOMETRIES = ("grid", "mesh", "points")


def partial_path(path: str | os.PathLike) -> Path:
    """The in-progress file ``<path>.partial`` that sits beside ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def damaged(path, exc: BaseException) -> DataError:
    """The one-line error for an HDF5 file that h5py cannot read."""
    return DataError(f"{path} is damaged or truncated ({_first_line(exc)}); regenerate it or copy it again")


def open_hdf5(path, **options) -> h5py.File:
    """``h5py.File(path, "r", locking=False)``: every HDF5 file oplearn reads is opened here, so that a damaged
    one is the one-line :func:`damaged` error, whatever its kind (oplearn, PDEBench, MATLAB v7.3). Without file
    locks, so that one process can hold a file open for lazy reading and describe it too (HDF5 refuses a second
    open with other lock flags), and ``oplearn info`` works while a file is generated; our writers never change
    a finished file in place (they write ``.partial`` and rename it)."""
    try:
        return h5py.File(path, "r", **{"locking": False, **options})
    except OSError as exc:
        raise damaged(path, exc) from None


@contextlib.contextmanager
def reading(path):
    """Turn the errors h5py raises on damaged files (OSError, RuntimeError, KeyError) into :func:`damaged`."""
    try:
        yield
    except (OSError, RuntimeError, KeyError) as exc:
        raise damaged(path, exc) from None


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
    f = open_hdf5(path)
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
    try:  # the same open flags as every other read, or HDF5 refuses a file this process already holds open
        with open_hdf5(path) as f:
            return "oplearn_format" in f.attrs
    except (DataError, OSError, RuntimeError, KeyError):
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
    if "output_channels" in a:
        lines.append(f"outputs:   none stored: inputs only, for data-free training ({int(a['output_channels'])} "
                     "output channel(s))")
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
