"""Mesh and point-cloud samples in an oplearn HDF5 file (format 2, geometry ``mesh`` or ``points``).

Sample i has its own N_i points (and, on a mesh, M_i cells), so every array
is stored concatenated over the samples, P = sum N_i rows per point and
Q = sum M_i rows per cell. Besides the attributes every oplearn file has (see
:mod:`oplearn.data.store`) the file carries ``geometry`` (``"mesh"`` or
``"points"``), ``dim`` (d, coordinates per point), ``channels`` (JSON of the
channel groups in order, e.g. ``{"inputs": 1, "outputs": 1}``) and, for
meshes, ``cell_type`` (meshio's name: line, triangle, quad, tetra,
hexahedron). Datasets:

* ``points`` (P, d) float64: coordinates (float64, since finite-element
  meshes are often made in double precision and float32 would move nodes);
* one dataset per channel group, e.g. ``inputs`` (P, C_in) and ``outputs``
  (P, C_out) float32, channel last: row j holds the values at ``points[j]``;
* ``point_offsets`` (n_samples + 1,) int64: sample i owns the rows
  ``point_offsets[i]:point_offsets[i + 1]``;
* meshes only: ``cells`` (Q, k) int64, point indices local to their sample
  (0..N_i-1), and ``cell_offsets`` (n_samples + 1,) int64 likewise;
* ``extra`` arrays written once at creation (e.g. ``times``), as in grid files;
* optional per-sample integers (n_samples,) int64, one dataset per name in the attribute
  ``per_sample`` (JSON list), e.g. ``draws``: which random draw of the generator each sample is.

Writing follows :class:`oplearn.data.writer.DatasetWriter`: ``<path>.partial``,
``n_done`` advanced only after the data is flushed, an atomic rename when
finished. The per-point and per-cell datasets are chunked and resizable;
they grow ahead of the data (by a quarter at least, whole chunks, storage
allocated on growth), so most appends only write raw data. Rows past
``offsets[n_done]`` are spare room or were left by a killed writer; a resumed
writer overwrites them and :meth:`~RaggedDatasetWriter.finish` trims every
dataset to its exact length, so a resumed file equals an uninterrupted one.

Reading: :class:`RaggedReader` serves samples lazily (one h5py handle per
process, so it survives fork); :func:`read_ragged` loads them all. Each
sample is a dict of numpy arrays: ``points`` (N_i, d) float64, one (N_i, C)
float32 array per channel group and, for meshes, ``cells`` (M_i, k) int64.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from oplearn.data.geometry import CELL_TYPES, Mesh, PointCloud
from oplearn.data.store import _decode_attrs, _open, dataset_line, open_hdf5, reading
from oplearn.data.writer import _CHUNK_BYTES, PartialFileWriter, early_dcpl, finite_float32
from oplearn.errors import DataError

RAGGED_GEOMETRIES = ("mesh", "points")
RESERVED = ("points", "cells", "point_offsets", "cell_offsets")
_CHUNK_ROWS = 4096  # rows per chunk of the per-point and per-cell datasets (fewer if rows are wide)


def _chunk_rows(row_bytes: int) -> int:
    return max(1, min(_CHUNK_ROWS, _CHUNK_BYTES // max(row_bytes, 1)))


def _check_channels(channels) -> dict[str, int]:
    if not isinstance(channels, dict) or not channels:
        raise DataError(f"channels must be a non-empty dict of group name -> channel count, "
                        f"e.g. {{'inputs': 1, 'outputs': 1}}; got {channels!r}")
    for name, size in channels.items():
        if not isinstance(name, str) or not name or "/" in name or name in RESERVED:
            raise DataError(f"channel group name {name!r} is not allowed; use a plain name other "
                            f"than {', '.join(RESERVED)}")
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
            raise DataError(f"channel group '{name}' has {size!r} channels; give a whole number >= 1")
    return {name: int(size) for name, size in channels.items()}


def _check_geometry(geometry: str, dim, cell_type) -> None:
    if geometry not in RAGGED_GEOMETRIES:
        raise DataError(f"RaggedDatasetWriter writes geometry 'mesh' or 'points', not {geometry!r}; "
                        "write grid samples with oplearn.data.writer.DatasetWriter")
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 1:
        raise DataError(f"dim must be a whole number >= 1 (coordinates per point), got {dim!r}")
    if geometry == "points" and cell_type is not None:
        raise DataError("point clouds have no cells; pass cell_type=None or geometry='mesh'")
    if geometry == "mesh":
        if cell_type not in CELL_TYPES:
            raise DataError(f"a mesh needs cell_type, one of {', '.join(CELL_TYPES)}; got {cell_type!r}")
        if CELL_TYPES[cell_type][1] > dim:
            raise DataError(f"{cell_type} cells need dim >= {CELL_TYPES[cell_type][1]}, got dim={dim}; "
                            "fix dim or cell_type")


def _groups(geometry: str, channels: dict[str, int]) -> dict[str, list[str]]:
    """Row group ("point", "cell") -> the datasets whose rows it counts (its offsets are ``<group>_offsets``)."""
    groups = {"point": ["points", *channels]}
    if geometry == "mesh":
        groups["cell"] = ["cells"]
    return groups


class RaggedDatasetWriter(PartialFileWriter):
    """Write mesh or point-cloud samples into ``<path>.partial``; move it onto ``path`` when done.

    ``channels`` maps each channel group to its channel count, e.g.
    ``{"inputs": 1, "outputs": 1}``; ``dim`` is d; ``cell_type`` names the
    mesh cells (None for point clouds); ``per_sample`` names integers stored one
    per sample (each sample dict then has them). Same guarantees and ``with`` block as
    :class:`oplearn.data.writer.DatasetWriter`; a resume must match every
    setting, and a differing one is named.
    """

    def __init__(self, path, *, pde: str, params: dict, seed: int, n_samples: int, geometry: str,
                 channels: dict[str, int], dim: int, cell_type: str | None = None,
                 extra: dict[str, np.ndarray] | None = None, overwrite: bool = False, resume: bool = False,
                 per_sample: tuple[str, ...] = ()):
        _check_geometry(geometry, dim, cell_type)
        self.geometry, self.dim, self.cell_type = geometry, int(dim), cell_type
        self.channels = _check_channels(channels)
        self.per_sample = tuple(per_sample)  # names of one int64 per sample, each a key of every sample dict
        if set(self.per_sample) & {*RESERVED, *self.channels}:
            raise DataError(f"per-sample names {list(self.per_sample)} clash with the point and cell datasets")
        self.groups = _groups(geometry, self.channels)
        super().__init__(path, pde=pde, params=params, seed=seed, n_samples=n_samples, extra=extra,
                         overwrite=overwrite, resume=resume)

    # -- the file layout --------------------------------------------------------

    def _dataset_names(self) -> list[str]:
        return ([name for names in self.groups.values() for name in names] + [f"{g}_offsets" for g in self.groups]
                + list(self.per_sample))

    def _settings(self) -> dict:
        settings = {"geometry": self.geometry, "dim": self.dim, "channels": self.channels}
        if self.per_sample:
            settings["per_sample"] = list(self.per_sample)
        return settings if self.cell_type is None else {**settings, "cell_type": self.cell_type}

    def _attrs(self) -> dict:
        attrs = {**self._settings(), "channels": json.dumps(self.channels)}
        return {**attrs, "per_sample": json.dumps(self.per_sample)} if self.per_sample else attrs

    def _stored_settings(self, f: h5py.File) -> dict:
        a = f.attrs
        stored = {key: a[key] for key in ("geometry", "dim", "cell_type") if key in a}
        if "channels" in a:
            stored["channels"] = json.loads(a["channels"])
        if "per_sample" in a:
            stored["per_sample"] = json.loads(a["per_sample"])
        return stored

    def _widths(self) -> dict[str, tuple[int, type]]:
        widths = {"points": (self.dim, np.float64), **{n: (c, np.float32) for n, c in self.channels.items()}}
        if self.geometry == "mesh":
            widths["cells"] = (CELL_TYPES[self.cell_type][0], np.int64)
        return widths

    def _layout(self, f: h5py.File) -> None:
        for name, (width, dtype) in self._widths().items():
            rows = _chunk_rows(width * np.dtype(dtype).itemsize)
            f.create_dataset(name, shape=(0, width), maxshape=(None, width), chunks=(rows, width),
                             dtype=dtype, dcpl=early_dcpl())
        for group in self.groups:
            f.create_dataset(f"{group}_offsets", data=np.zeros(self.n_samples + 1, np.int64), dcpl=early_dcpl())
        for name in self.per_sample:
            f.create_dataset(name, data=np.zeros(self.n_samples, np.int64))

    def _finalize(self, f: h5py.File) -> None:
        """Trim the spare rows, so the finished file holds exactly the samples' rows."""
        for group, names in self.groups.items():
            end = int(f[f"{group}_offsets"][-1])
            for name in names:
                f[name].resize(end, axis=0)

    # -- writing --------------------------------------------------------------

    def _checked(self, sample, index: int) -> dict[str, np.ndarray]:
        """One sample's arrays, checked and converted to the stored dtypes."""
        what = f"append(): sample {index}"
        wanted = {*self._widths(), *self.per_sample}
        if not isinstance(sample, dict) or set(sample) != wanted:
            got = sorted(sample) if isinstance(sample, dict) else type(sample).__name__
            raise DataError(f"{what} has {got}, but the file stores {sorted(wanted)}; pass a dict of exactly those")
        try:
            shape = (Mesh(sample["points"], sample["cells"], self.cell_type) if self.geometry == "mesh"
                     else PointCloud(sample["points"]))
        except DataError as exc:
            raise DataError(f"{what}: {exc}") from None
        if shape.dim != self.dim:
            raise DataError(f"{what} has {shape.dim}-d points, but the file stores dim={self.dim}; "
                            f"pass (N, {self.dim}) points")
        out = {"points": shape.points}
        if self.geometry == "mesh":
            out["cells"] = shape.cells
        for name, size in self.channels.items():
            values = np.asarray(sample[name])
            if values.shape != (shape.n_points, size) or values.dtype.kind not in "biuf":
                raise DataError(f"{what}: '{name}' has shape {values.shape} and dtype {values.dtype}, expected "
                                f"({shape.n_points}, {size}) real numbers: one row of {size} channel(s) per point")
            out[name] = finite_float32(values, f"{what}: '{name}'")
        for name in self.per_sample:
            if not isinstance(sample[name], (int, np.integer)) or isinstance(sample[name], bool):
                raise DataError(f"{what}: '{name}' is {sample[name]!r}; give one whole number per sample")
            out[name] = int(sample[name])
        return out

    def _reserve(self, names: list[str], rows: int) -> None:
        """Grow the datasets ``names`` to hold at least ``rows`` rows (whole chunks, a quarter more at least)."""
        for name in names:
            ds = self._file[name]
            if ds.shape[0] < rows:
                step = ds.chunks[0]
                grown = max(rows, ds.shape[0] + ds.shape[0] // 4)
                ds.resize(-(-grown // step) * step, axis=0)

    def append(self, samples: list[dict]) -> None:
        """Write a list of samples, each a dict of ``points`` (N_i, d), one (N_i, C) array per channel group
        and, for meshes, ``cells`` (M_i, k) of local point indices. All are checked before anything is written."""
        f = self._writable()
        start = self.n_done
        if isinstance(samples, dict):
            raise DataError("append() takes a list of sample dicts; wrap a single sample as [sample]")
        checked = [self._checked(s, start + j) for j, s in enumerate(samples)]
        if start + len(checked) > self.n_samples:
            raise DataError(f"append(): {len(checked)} more samples would exceed n_samples={self.n_samples} "
                            f"({start} already written)")
        if not checked:
            return
        for group, names in self.groups.items():
            offsets = f[f"{group}_offsets"]
            first = int(offsets[start])  # rows past it are spare or left by a killed writer: overwrite them
            ends = first + np.cumsum([len(s[names[0]]) for s in checked])
            self._reserve(names, int(ends[-1]))
            for name in names:
                f[name][first:ends[-1]] = np.concatenate([s[name] for s in checked])
            offsets[start + 1:start + 1 + len(checked)] = ends
        for name in self.per_sample:
            f[name][start:start + len(checked)] = [s[name] for s in checked]
        self._commit(start + len(checked))


# -- reading -------------------------------------------------------------------

def _broken(path, what: str) -> DataError:
    return DataError(f"{path} is damaged ({what}); regenerate it")


def _checked_offsets(path, f: h5py.File, group: str, count: int, names: list[str], exact: bool) -> np.ndarray:
    """``<group>_offsets[:count + 1]``, checked: starting at 0, at least one row per sample, within the datasets."""
    ds = f[f"{group}_offsets"]
    if ds.ndim != 1 or ds.shape[0] < count + 1 or ds.dtype.kind not in "iu":
        raise _broken(path, f"'{group}_offsets' has shape {ds.shape} and dtype {ds.dtype}")
    offsets = ds[:count + 1].astype(np.int64)
    if offsets[0] != 0 or np.any(np.diff(offsets) < 1):
        raise _broken(path, f"'{group}_offsets' do not rise from 0 by at least one row per sample")
    for name in names:
        rows = f[name].shape[0]
        if rows < offsets[-1] or (exact and rows != offsets[-1]):
            raise _broken(path, f"'{name}' has {rows} rows but '{group}_offsets' end at {offsets[-1]}")
    return offsets


def _file_layout(path, f: h5py.File, a: dict) -> tuple[dict[str, int], dict[str, list[str]]]:
    """The channel groups and row groups of a ragged file, checked against its datasets."""
    channels, dim = a["channels"], int(a["dim"])
    groups = _groups(a["geometry"], channels)
    widths = {"points": dim, **channels}
    if a["geometry"] == "mesh":
        if a.get("cell_type") not in CELL_TYPES:
            raise _broken(path, f"unknown cell_type {a.get('cell_type')!r}")
        widths["cells"] = CELL_TYPES[a["cell_type"]][0]
    for name, width in widths.items():
        if f[name].ndim != 2 or f[name].shape[1] != width:
            raise _broken(path, f"'{name}' has shape {f[name].shape}, expected (rows, {width})")
    return channels, groups


class RaggedReader:
    """Lazy access to the samples of a complete mesh or point-cloud file.

    ``len(reader)``, ``geometry`` ("mesh"/"points"), ``channels`` ({name: C}),
    ``dim``, ``cell_type`` (None for points), ``attrs`` (decoded file
    attributes), ``n_points(i)``, ``n_cells(i)``; ``sample(i)`` and
    ``samples(indices)`` read from the file on demand. The h5py handle is
    opened per process, so a reader passed to forked workers keeps working.
    """

    def __init__(self, path):
        self.path = Path(path)
        with _open(self.path, allow_partial=False) as f, reading(self.path):
            self.attrs = _decode_attrs(f.attrs)
            self.geometry = self.attrs["geometry"]
            if self.geometry not in RAGGED_GEOMETRIES:
                raise DataError(f"{self.path} is a grid file, not mesh or point samples; read it with "
                                "oplearn.data.store.read_dataset or FieldDataset.open")
            self.channels, self._groups = _file_layout(self.path, f, self.attrs)
            self.dim, self.cell_type = int(self.attrs["dim"]), self.attrs.get("cell_type")
            self._length = int(self.attrs["n_samples"])
            self._offsets = {group: _checked_offsets(self.path, f, group, self._length, names, exact=True)
                             for group, names in self._groups.items()}
        self._handle: h5py.File | None = None
        self._owner: int | None = None

    def __len__(self) -> int:
        return self._length

    def _index(self, i) -> int:
        i = int(i)
        if not -self._length <= i < self._length:
            raise IndexError(f"{self.path}: sample index {i} out of range 0..{self._length - 1}")
        return i % self._length

    def n_points(self, i) -> int:
        i = self._index(i)
        return int(self._offsets["point"][i + 1] - self._offsets["point"][i])

    def n_cells(self, i) -> int:
        """Cells of sample ``i`` (0 for point clouds)."""
        if "cell" not in self._offsets:
            return 0
        i = self._index(i)
        return int(self._offsets["cell"][i + 1] - self._offsets["cell"][i])

    def _file(self) -> h5py.File:
        if self._handle is None or self._owner != os.getpid():  # h5py handles do not survive fork
            with reading(self.path):
                self._handle, self._owner = open_hdf5(self.path), os.getpid()
        return self._handle

    def sample(self, i) -> dict[str, np.ndarray]:
        """Sample ``i``: ``points`` (N_i, d) float64, each channel group (N_i, C) float32, ``cells`` (M_i, k) int64."""
        i = self._index(i)
        f, out = self._file(), {}
        with reading(self.path):
            for group, names in self._groups.items():
                lo, hi = self._offsets[group][i:i + 2]
                out.update({name: f[name][lo:hi] for name in names})
        return self._checked_sample(out, i)

    def samples(self, indices) -> list[dict[str, np.ndarray]]:
        return [self.sample(i) for i in indices]

    def geometry_at(self, i) -> Mesh | PointCloud:
        """Sample ``i``'s points (and cells) as a :class:`Mesh` or :class:`PointCloud`."""
        s = self.sample(i)
        return Mesh(s["points"], s["cells"], self.cell_type) if self.geometry == "mesh" else PointCloud(s["points"])

    def read_all(self) -> list[dict[str, np.ndarray]]:
        """Every sample, reading each dataset whole once."""
        f, parts = self._file(), {}
        with reading(self.path):
            for group, names in self._groups.items():
                cuts = self._offsets[group][1:-1]
                parts.update({name: np.split(f[name][...], cuts) for name in names})
        return [self._checked_sample({name: parts[name][i] for name in parts}, i) for i in range(len(self))]

    def _checked_sample(self, s: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
        for name in ("points", *self.channels):
            if not np.all(np.isfinite(s[name])):
                raise _broken(self.path, f"sample {i}: '{name}' contains NaN or Inf")
        if "cells" in s and s["cells"].size and (s["cells"].min() < 0 or s["cells"].max() >= len(s["points"])):
            raise _broken(self.path, f"sample {i}: a cell index lies outside its {len(s['points'])} points")
        return s

    def close(self) -> None:
        if self._handle is not None and self._owner == os.getpid():
            self._handle.close()
        self._handle = self._owner = None

    def __enter__(self) -> "RaggedReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self):
        return {**self.__dict__, "_handle": None, "_owner": None}


def read_ragged(path) -> list[dict[str, np.ndarray]]:
    """All samples of a complete mesh or point-cloud file, as :meth:`RaggedReader.sample` gives them."""
    with RaggedReader(path) as reader:
        return reader.read_all()


def _spread(counts: np.ndarray) -> str:
    return f"min {counts.min():,}, median {np.median(counts):,g}, max {counts.max():,}; {counts.sum():,} in all"


def summary_lines(path, f: h5py.File, a: dict) -> list[str]:
    """The ``geometry:`` to ``datasets:`` lines :func:`oplearn.data.store.describe` prints for a ragged file."""
    channels, groups = _file_layout(path, f, a)
    done = int(a.get("n_done", 0))
    offsets = {group: _checked_offsets(path, f, group, done, names, exact=bool(a.get("complete")))
               for group, names in groups.items()}
    mesh = a["geometry"] == "mesh"
    lines = [f"geometry:  mesh ({a['cell_type']} cells, {a['dim']}D points)" if mesh
             else f"geometry:  points ({a['dim']}D)"]
    if done:
        lines.append(f"samples:   {done} (points per sample: {_spread(np.diff(offsets['point']))})")
        if mesh:
            lines.append(f"cells:     {a['cell_type']} (per sample: {_spread(np.diff(offsets['cell']))})")
    else:
        lines.append("samples:   0 written yet")
    lines.append("channels:  " + ", ".join(f"{name} {size}" for name, size in channels.items()))
    lines.append("datasets:")
    rows = {name: int(offsets[group][-1]) for group, names in groups.items() for name in names}
    rows.update({f"{group}_offsets": done + 1 for group in groups})
    for name, ds in f.items():
        if isinstance(ds, h5py.Dataset):
            lines.append(dataset_line(name, ds, rows.get(name, ds.shape[0] if ds.shape else 1)))
    return lines
