"""Readers for dataset files made outside oplearn, and conversion to oplearn HDF5.

Every reader returns the structure of :func:`oplearn.data.store.read_dataset`:
``{"arrays": {...}, "attrs": {...}}`` with, for steady problems, ``inputs``
(N, C_in, *S) and ``outputs`` (N, C_out, *S) float32, and for time-dependent
ones ``trajectories`` (N, T, C, *S) float32 and ``times`` (T,) float64.
``attrs["format"]`` names the layout that was read (e.g. ``"fno-mat"``).

Readers: :func:`read_neuraloperator` (``.pt``, here),
:func:`oplearn.data.matlab.read_fno_mat` (``.mat``) and
:func:`oplearn.data.pdebench.read_pdebench` (PDEBench ``.h5``/``.hdf5``).
:func:`load_arrays` picks one by suffix and content; :func:`convert` writes
any of them as an oplearn dataset file.
"""

from __future__ import annotations

import warnings
from pathlib import Path


from oplearn.data.arrays import checked_float32
from oplearn.data.matlab import read_fno_mat
from oplearn.data.pdebench import read_pdebench
from oplearn.data.store import open_hdf5, partial_path, read_dataset
from oplearn.data.writer import DatasetWriter
from oplearn.errors import ConfigError, DataError

SUPPORTED_SUFFIXES = {
    ".h5": "oplearn or PDEBench HDF5",
    ".hdf5": "oplearn or PDEBench HDF5",
    ".mat": "FNO MATLAB file, v5 or v7.3",
    ".pt": "neuraloperator tensor dict",
}
MAT_KEYS = ("input_key", "output_key")  # the keyword choices read_fno_mat accepts
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


def convert(source, destination, overwrite: bool = False, **keys) -> Path:
    """Read any supported file (see :func:`load_arrays`) and write it as an oplearn HDF5 file.

    The result holds the same arrays (``inputs``/``outputs`` or
    ``trajectories``/``times``) with ``pde`` = the source layout (e.g.
    ``"fno-mat"``, ``"pdebench-1d"``, ``"neuraloperator"``), ``params`` = the
    source file name and the keys and layout details used, and ``seed`` = 0.
    ``keys`` (``input_key``, ``output_key``) choose variables in ``.mat`` files.
    The file is written as ``<destination>.partial`` and renamed when complete;
    on any failure the partial file is removed, so ``destination`` is either
    absent, the old file, or complete. Returns ``destination``.
    """
    source, destination = Path(source), Path(destination)
    if destination.suffix.lower() not in (".h5", ".hdf5"):
        raise ConfigError(f"convert writes oplearn HDF5 files; name the destination "
                          f"'{destination.stem}.h5' instead of '{destination.name}'")
    if destination.exists() and not overwrite:
        raise DataError(f"{destination} exists; pass --overwrite to replace it")
    partial = partial_path(destination)
    if partial.exists() and not overwrite:
        raise DataError(f"{partial} is left from an interrupted run; delete it or pass --overwrite")
    data = load_arrays(source, **keys)  # read everything before touching the destination
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
        partial.unlink(missing_ok=True)  # a conversion is redone from scratch, never resumed
        raise
    return destination
