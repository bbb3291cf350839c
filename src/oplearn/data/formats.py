"""Readers for dataset files made outside oplearn, and conversion to oplearn HDF5.

Grid readers return the structure of :func:`oplearn.data.store.read_dataset`:
``{"arrays": {...}, "attrs": {...}}`` with, for steady problems, ``inputs``
(N, C_in, *S) and ``outputs`` (N, C_out, *S) float32, and for time-dependent
ones ``trajectories`` (N, T, C, *S) float32 and ``times`` (T,) float64.
``attrs["format"]`` names the layout that was read (e.g. ``"fno-mat"``).

Grid readers: :func:`read_neuraloperator` (``.pt``, here),
:func:`oplearn.data.matlab.read_fno_mat` (``.mat``) and
:func:`oplearn.data.pdebench.read_pdebench` (PDEBench ``.h5``/``.hdf5``).
:func:`load_arrays` picks one by suffix and content. Mesh readers return a
:class:`oplearn.data.meshio_files.RaggedSource`: meshio files
(:mod:`oplearn.data.meshio_files`) and the Geo-FNO benchmarks
(:mod:`oplearn.data.geofno`). :func:`detect_format` names the layout of a
source from its name (``FORMATS`` lists them all); :func:`convert` writes
any of them as an oplearn dataset file (grid, or format-v2 mesh / points).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from oplearn.data.arrays import checked_float32
from oplearn.data.geofno import ELASTICITY_FILES, GEOFNO_FORMATS, STRUCTURED, read_geofno
from oplearn.data.matlab import read_fno_mat
from oplearn.data.meshio_files import RaggedSource, is_meshio_file, read_meshio_source
from oplearn.data.pdebench import read_pdebench
from oplearn.data.ragged import RaggedDatasetWriter
from oplearn.data.store import is_oplearn_file, open_hdf5, partial_path, read_dataset
from oplearn.data.writer import DatasetWriter
from oplearn.errors import ConfigError, DataError

SUPPORTED_SUFFIXES = {
    ".h5": "oplearn or PDEBench HDF5",
    ".hdf5": "oplearn or PDEBench HDF5",
    ".mat": "FNO MATLAB file, v5 or v7.3",
    ".pt": "neuraloperator tensor dict",
}
MAT_KEYS = ("input_key", "output_key")  # the keyword choices read_fno_mat accepts
GRID_FORMATS = {
    "oplearn": "an oplearn HDF5 file (.h5), copied",
    "pdebench": "PDEBench HDF5 (.h5, .hdf5)",
    "fno-mat": "FNO MATLAB file (.mat, v5 or v7.3)",
    "neuraloperator": "neuraloperator tensor dict (.pt)",
}
MESH_FORMATS = {
    "meshio": "meshes with point data meshio reads (.vtu, .xdmf, .msh, ...): a file, a folder or a glob",
    **GEOFNO_FORMATS,
}
FORMATS = {**GRID_FORMATS, **MESH_FORMATS}  # every name --format takes
_PER_SAMPLE = ("inputs", "outputs", "trajectories")
_WRITE_BLOCK = 256  # samples per DatasetWriter.append in convert()


def _describe_contents(obj) -> str:
    if not isinstance(obj, dict):
        return f"a {type(obj).__name__}"
    parts = [f"{k}: {tuple(v.shape)}" if hasattr(v, "shape") else f"{k}: {type(v).__name__}"
             for k, v in obj.items()]
    return "{" + ", ".join(parts) + "}"


def read_neuraloperator(path) -> dict:
    """Read a neuraloperator ``.pt`` dict of tensors ``x`` (N, *S) and ``y``.

    ``x`` becomes inputs (N, 1, *S) float32 (bool becomes 0./1.). ``y`` of
    shape (N, *S) becomes outputs (N, 1, *S); ``y`` of shape (N, C, *S) (one
    axis more than ``x``, e.g. Burgers' (N, T, S) time steps) keeps its second
    axis as output channels. A ``visc`` tensor becomes ``attrs["viscosity"]``.
    Other keys are ignored. The file is loaded with ``weights_only=True``, so
    no arbitrary Python objects are unpickled.
    """
    import torch  # heavy; only needed for this reader

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; check the path")
    try:
        with warnings.catch_warnings():  # torch's own notes on unsafe pickles: our refusal below says it
            warnings.simplefilter("ignore")
            obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises many types for bad or unsafe files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{path} cannot be loaded as a plain tensor file ({first}); "
                        "expected a dict of tensors saved with torch.save") from None
    expected = ("expected a dict with tensors 'x' (N, *S) and 'y' (N, *S) or (N, C, *S) "
                "as written by neuraloperator")
    if (not isinstance(obj, dict) or not isinstance(obj.get("x"), torch.Tensor)
            or not isinstance(obj.get("y"), torch.Tensor)):
        raise DataError(f"{path} holds {_describe_contents(obj)}; {expected}")
    x, y = obj["x"], obj["y"]
    xs, ys = tuple(x.shape), tuple(y.shape)
    if x.ndim < 2 or y.ndim < 2 or xs[0] != ys[0]:
        raise DataError(f"{path} holds {_describe_contents(obj)}; {expected}")
    if ys == xs:
        outputs = checked_float32(path, "y", y.detach().cpu().numpy())[:, None]
    elif y.ndim == x.ndim + 1 and ys[2:] == xs[1:]:
        outputs = checked_float32(path, "y", y.detach().cpu().numpy())
    else:
        raise DataError(f"{path} holds {_describe_contents(obj)}: the grid of 'y' does not match "
                        f"'x'; {expected}")
    inputs = checked_float32(path, "x", x.detach().cpu().numpy())[:, None]
    attrs: dict = {"format": "neuraloperator", "n_samples": xs[0]}
    visc = obj.get("visc")
    if visc is not None:
        if not isinstance(visc, torch.Tensor) or visc.numel() != 1:
            raise DataError(f"{path}: 'visc' should hold one number, found "
                            f"{_describe_contents({'visc': visc})}")
        attrs["viscosity"] = float(visc.reshape(-1)[0])
    return {"arrays": {"inputs": inputs, "outputs": outputs}, "attrs": attrs}


def _read_hdf5(path: Path) -> dict:
    """An oplearn dataset (it carries ``oplearn_format``) or else a PDEBench file."""
    if not path.is_file():
        return read_dataset(path)  # its message covers missing and interrupted files
    with open_hdf5(path) as f:
        ours = "oplearn_format" in f.attrs
    return read_dataset(path) if ours else read_pdebench(path)


def load_arrays(path, **keys) -> dict:
    """Load any supported dataset file into ``{"arrays": ..., "attrs": ...}``.

    ``.h5``/``.hdf5``: oplearn files (``oplearn_format`` attribute) go to
    :func:`oplearn.data.store.read_dataset`, others to
    :func:`oplearn.data.pdebench.read_pdebench`; ``.mat`` goes to
    :func:`oplearn.data.matlab.read_fno_mat`, which alone takes ``keys``
    (``input_key``, ``output_key``); ``.pt`` to :func:`read_neuraloperator`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        supported = ", ".join(f"{s} ({what})" for s, what in SUPPORTED_SUFFIXES.items())
        raise DataError(f"{path}: unsupported file type '{suffix or path.name}'; supported: {supported}")
    unknown = sorted(set(keys) - set(MAT_KEYS)) if suffix == ".mat" else sorted(keys)
    if unknown:
        allowed = f"{', '.join(MAT_KEYS)} (for .mat files only)"
        raise ConfigError(f"key choice {', '.join(unknown)} does not apply to {path.name}; "
                          f"the choices are {allowed}")
    if suffix == ".mat":
        return read_fno_mat(path, **keys)
    if suffix == ".pt":
        return read_neuraloperator(path)
    return _read_hdf5(path)


def _provenance(source: Path, attrs: dict) -> tuple[str, dict, int]:
    """``(pde, params, seed)`` for a converted file: the reader's layout and choices, or an
    oplearn source's own values, with the source file name added to ``params``."""
    if "format" not in attrs:  # an oplearn file: keep what made it
        params = {**attrs.get("params", {}), "source": source.name}
        return str(attrs.get("pde")), params, int(attrs.get("seed", 0))
    params = {k: v for k, v in attrs.items() if k not in ("format", "n_samples")}
    return str(attrs["format"]), {"source": source.name, **params}, 0


_GRID_SUFFIXES = {".h5": "pdebench", ".hdf5": "pdebench", ".mat": "fno-mat", ".pt": "neuraloperator"}
_PLASTICITY_PREFIX = "plas_"  # Geo-FNO's plas_N987_T20.mat


def _named_layout(names: set[str]) -> str | None:
    """The Geo-FNO layout whose file names are among ``names``."""
    if ELASTICITY_FILES["stress"] in names or ELASTICITY_FILES["coordinates"] in names:
        return "geofno-elasticity"
    for layout, (stem, _, _) in STRUCTURED.items():
        if any(f"{stem}_{axis}.npy" in names for axis in "XYQ"):
            return layout
    return None


def _cannot_tell(source: Path, why: str) -> DataError:
    listing = "; ".join(f"{name} ({what})" for name, what in FORMATS.items())
    return DataError(f"cannot tell the format of {source} ({why}); name it with --format, one of: {listing}")


def detect_format(source) -> str:
    """The name in :data:`FORMATS` of the layout ``source`` holds, from its name (and, for HDF5, its attributes).

    A glob pattern or a folder of mesh files is ``meshio``; a Geo-FNO file name
    (or a folder holding one) its Geo-FNO layout; ``plas_*.mat`` Geo-FNO
    plasticity; ``.h5``/``.hdf5`` oplearn or PDEBench; ``.mat`` FNO; ``.pt``
    neuraloperator; other suffixes meshio reads ``meshio``.
    """
    source = Path(source)
    if any(c in str(source) for c in "*?["):
        return "meshio"
    if source.is_dir():
        names = {p.name for p in source.iterdir() if p.is_file()}
        layout = _named_layout(names)
        if layout is not None:
            return layout
        if any(is_meshio_file(Path(name)) for name in names):
            return "meshio"
        raise _cannot_tell(source, "a folder without Geo-FNO files or mesh files")
    layout = _named_layout({source.name})
    if layout is not None:
        return layout
    suffix = source.suffix.lower()
    if suffix == ".mat" and source.name.startswith(_PLASTICITY_PREFIX):
        return "geofno-plasticity"
    if suffix in (".h5", ".hdf5") and source.is_file() and is_oplearn_file(source):
        return "oplearn"
    if suffix in _GRID_SUFFIXES:
        return _GRID_SUFFIXES[suffix]
    if is_meshio_file(source):
        return "meshio"
    if not source.exists():
        raise DataError(f"{source} does not exist; check the path")
    raise _cannot_tell(source, f"unknown suffix '{suffix or source.name}'")


def read_mesh_source(source, source_format: str, **keys) -> RaggedSource:
    """The mesh or point samples of a source in one of :data:`MESH_FORMATS`; ``keys`` (``input_key``,
    ``output_key``) name meshio point-data arrays and apply to nothing else."""
    if source_format == "meshio":
        unknown = sorted(set(keys) - set(MAT_KEYS))
        if unknown:
            raise ConfigError(f"key choice {', '.join(unknown)} does not apply to meshio files; the choices "
                              f"are {', '.join(MAT_KEYS)}")
        return read_meshio_source(source, **keys)
    if keys:
        raise ConfigError(f"{source_format} has fixed inputs and outputs; drop "
                          f"{', '.join('--' + k.replace('_', '-') for k in sorted(keys))}")
    return read_geofno(source, source_format)


def _read_grid(source: Path, source_format: str | None, keys: dict) -> dict:
    """A grid file's arrays: by suffix and content when ``source_format`` is None, else by that reader."""
    if source_format is None:
        return load_arrays(source, **keys)
    if source_format != "fno-mat" and keys:
        raise ConfigError(f"key choice {', '.join(sorted(keys))} does not apply to {source_format} files; "
                          "only fno-mat and meshio take --input-key / --output-key")
    readers = {"oplearn": read_dataset, "pdebench": read_pdebench, "neuraloperator": read_neuraloperator}
    return read_fno_mat(source, **keys) if source_format == "fno-mat" else readers[source_format](source)


def _check_destination(destination: Path, overwrite: bool) -> None:
    if destination.suffix.lower() not in (".h5", ".hdf5"):
        raise ConfigError(f"convert writes oplearn HDF5 files; name the destination "
                          f"'{destination.stem}.h5' instead of '{destination.name}'")
    if destination.exists() and not overwrite:
        raise DataError(f"{destination} exists; pass --overwrite to replace it")
    partial = partial_path(destination)
    if partial.exists() and not overwrite:
        raise DataError(f"{partial} is left from an interrupted run; delete it or pass --overwrite")


def convert(source, destination, overwrite: bool = False, source_format: str | None = None, **keys) -> Path:
    """Read any supported source (see :data:`FORMATS`) and write it as an oplearn HDF5 file.

    ``source_format`` names the layout (default: :func:`detect_format`).
    Grid layouts give a grid file with the same arrays (``inputs``/``outputs``
    or ``trajectories``/``times``); mesh layouts a format-v2 mesh or point
    file (:func:`write_ragged_source`). Either way ``pde`` = the source
    layout (e.g. ``"fno-mat"``, ``"pdebench-1d"``, ``"geofno-airfoil"``),
    ``params`` = the source file name and the keys and layout details used,
    and ``seed`` = 0. ``keys`` (``input_key``, ``output_key``) choose
    variables in ``.mat`` files and point-data arrays in meshio files.
    The file is written as ``<destination>.partial`` and renamed when complete;
    on any failure the partial file is removed, so ``destination`` is either
    absent, the old file, or complete. Returns ``destination``.
    """
    source, destination = Path(source), Path(destination)
    if source_format is not None and source_format not in FORMATS:
        listing = "; ".join(f"{name} ({what})" for name, what in FORMATS.items())
        raise ConfigError(f"unknown format '{source_format}'; use one of: {listing}")
    _check_destination(destination, overwrite)
    layout = source_format or detect_format(source)
    if layout in MESH_FORMATS:
        return write_ragged_source(read_mesh_source(source, layout, **keys), destination, source, overwrite)
    data = _read_grid(source, source_format, keys)  # read everything before touching the destination
    arrays = data["arrays"]
    per_sample = {name: arrays[name] for name in _PER_SAMPLE if name in arrays}
    extra = {name: a for name, a in arrays.items() if name not in per_sample}
    if not per_sample:
        raise DataError(f"{source} holds no inputs, outputs or trajectories; nothing to convert")
    n_samples = len(next(iter(per_sample.values())))
    pde, params, seed = _provenance(source, data["attrs"])
    writer = DatasetWriter(destination, pde=pde, params=params, seed=seed, n_samples=n_samples,
                           shapes={name: a.shape[1:] for name, a in per_sample.items()},
                           extra=extra, overwrite=overwrite,
                           grid_location=data["attrs"].get("grid_location", "nodes"))
    try:
        for start in range(0, n_samples, _WRITE_BLOCK):
            writer.append({name: a[start:start + _WRITE_BLOCK] for name, a in per_sample.items()})
        writer.finish()
    except BaseException:
        writer.close()
        partial_path(destination).unlink(missing_ok=True)  # a conversion is redone from scratch, never resumed
        raise
    return destination


def _finite_sample(source: Path, index: int, sample: dict) -> dict:
    for name in ("points", "inputs", "outputs"):
        values = np.asarray(sample[name])
        if values.dtype.kind not in "biuf":
            raise DataError(f"{source}: sample {index}: {name} has dtype {values.dtype}; expected real numbers")
        with np.errstate(over="ignore", invalid="ignore"):
            finite = np.all(np.isfinite(values.astype(np.float64 if name == "points" else np.float32)))
        if not finite:
            raise DataError(f"{source}: sample {index}: {name} contain NaN or Inf (or values too large for "
                            "float32); clean the file before converting it")
    return sample


def write_ragged_source(mesh: RaggedSource, destination: Path, source: Path, overwrite: bool = False) -> Path:
    """Write the samples of ``mesh`` as a format-v2 mesh or point file at ``destination``, through
    ``<destination>.partial``; on any failure the partial file is removed."""
    writer = RaggedDatasetWriter(destination, pde=mesh.format, params={"source": source.name, **mesh.params},
                                 seed=0, n_samples=mesh.n_samples, geometry=mesh.geometry, channels=mesh.channels,
                                 dim=mesh.dim, cell_type=mesh.cell_type, overwrite=overwrite)
    try:
        for index, sample in enumerate(mesh.samples()):
            writer.append([_finite_sample(source, index, sample)])
        writer.finish()
    except BaseException:
        writer.close()
        partial_path(destination).unlink(missing_ok=True)
        raise
    return destination
