"""PDEBench HDF5 files, read into oplearn's layout.

Layouts understood (N samples, T time steps, *S spatial axes, C channels):

* ``tensor`` (N, T, *S) with ``t-coordinate`` (1-D Advection, Burgers,
  reaction-diffusion) -> trajectories (N, T, 1, *S); format ``pdebench-1d``;
* per-sample groups ``"0000"``, ``"0001"``, ... each with ``data`` (T, *S, C)
  and ``grid/t`` (2-D diffusion-reaction, shallow water, 1-D diffusion-sorption)
  -> trajectories (N, T, C, *S); format ``pdebench-2d`` (or ``-1d``);
* compressible flow (CFD): ``density``, ``pressure``, ``Vx`` [, ``Vy``, ``Vz``]
  each (N, T, *S) -> trajectories (N, T, C, *S) with channels in that order;
  format ``pdebench-cfd-2d`` (or ``-1d``, ``-3d``);
* Darcy: ``nu`` (N, X, Y) -> inputs (N, 1, X, Y) and ``tensor`` (N, 1, X, Y)
  -> outputs; format ``pdebench-darcy``.

PDEBench's generators store one time more than there are snapshots (201
snapshots, 202 entries of ``t-coordinate``); the snapshots are at the first T
times, so a time axis of T + 1 entries is cut to its first T.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from oplearn.data.arrays import checked_float32
from oplearn.data.store import open_hdf5
from oplearn.errors import DataError

CFD_FIELDS = ("density", "pressure", "Vx", "Vy", "Vz")
VELOCITIES = ("Vx", "Vy", "Vz")
LAYOUTS = ("PDEBench 'tensor' (N, T, *S) with 't-coordinate'; "
           "PDEBench per-sample groups '0000'/'data' (T, *S, C) with 'grid/t'; "
           "PDEBench CFD 'density', 'pressure', 'Vx'[, 'Vy', 'Vz'] (N, T, *S); "
           "PDEBench Darcy 'nu' (N, X, Y) with 'tensor' (N, 1, X, Y); "
           "an oplearn dataset (with the 'oplearn_format' attribute)")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _describe(f: h5py.File) -> str:
    parts = [f"{name}: {tuple(obj.shape)}" if isinstance(obj, h5py.Dataset) else f"{name}/"
             for name, obj in list(f.items())[:12]]
    more = ", ..." if len(f) > 12 else ""
    return "{" + ", ".join(parts) + more + "}"


def _read(path: Path, dataset: h5py.Dataset) -> np.ndarray:
    try:
        return dataset[()]
    except OSError as exc:
        raise DataError(f"{path}: '{dataset.name}' cannot be read ({_first_line(exc)}); "
                        "the file may be truncated or corrupt") from None


def _float32(path: Path, dataset: h5py.Dataset) -> np.ndarray:
    return checked_float32(path, dataset.name.lstrip("/"), _read(path, dataset))


def _times(path: Path, f: h5py.Group, name: str, steps: int) -> np.ndarray:
    """The (T,) float64 snapshot times from dataset ``name`` (T or T + 1 entries), else 0..T-1."""
    if name not in f:
        return np.arange(steps, dtype=np.float64)
    t = _read(path, f[name])
    if t.dtype.kind not in "iuf":
        raise DataError(f"{path}: '{name}' has dtype {t.dtype}, expected times")
    t = t.astype(np.float64).ravel()
    if t.size == steps + 1:
        t = t[:steps]
    if t.size != steps:
        raise DataError(f"{path}: '{name}' has {t.size} times for {steps} snapshots; "
                        f"expected {steps} or {steps + 1}")
    if not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
        raise DataError(f"{path}: '{name}' must be finite and increasing, found {t.tolist()[:8]}...")
    return t


def _sample_groups(f: h5py.File) -> list[str] | None:
    """The names of the per-sample groups, sorted, if every member is one (holds ``data``)."""
    names = sorted(f)
    if names and all(isinstance(f[n], h5py.Group) and isinstance(f[n].get("data"), h5py.Dataset)
                     for n in names):
        return names
    return None


def _read_darcy(path: Path, f: h5py.File) -> dict:
    nu, tensor = f["nu"], f["tensor"]
    n, grid = nu.shape[0], nu.shape[1:]
    if len(grid) < 1 or tensor.shape not in ((n, 1, *grid), (n, *grid)):
        raise DataError(f"{path}: Darcy 'nu' {nu.shape} and 'tensor' {tensor.shape} do not match; "
                        "expected 'nu' (N, X, Y) and 'tensor' (N, 1, X, Y)")
    inputs = _float32(path, nu)[:, None]
    outputs = _float32(path, tensor).reshape(n, 1, *grid)
    return {"arrays": {"inputs": inputs, "outputs": outputs},
            "attrs": {"format": "pdebench-darcy", "n_samples": n,
                      "keys": {"inputs": "nu", "outputs": "tensor"}}}


def _read_tensor(path: Path, f: h5py.File) -> dict:
    tensor = f["tensor"]
    if tensor.ndim < 3:
        raise DataError(f"{path}: 'tensor' has shape {tensor.shape}; expected (N, T, *S)")
    n, steps = tensor.shape[:2]
    times = _times(path, f, "t-coordinate", steps)
    trajectories = _float32(path, tensor)[:, :, None]
    return {"arrays": {"trajectories": trajectories, "times": times},
            "attrs": {"format": f"pdebench-{tensor.ndim - 2}d", "n_samples": n,
                      "keys": {"trajectories": "tensor", "times": "t-coordinate"}}}


def _read_cfd(path: Path, f: h5py.File) -> dict:
    fields = [name for name in CFD_FIELDS if name in f]
    shapes = {name: f[name].shape for name in fields}
    shape = shapes["density"]
    dims = len(shape) - 2
    wanted = ["density", "pressure", *VELOCITIES[:max(dims, 0)]]
    if not 1 <= dims <= 3 or fields != wanted or any(s != shape for s in shapes.values()):
        raise DataError(f"{path}: CFD fields {shapes} do not fit the layout; expected "
                        f"{', '.join(wanted) if dims >= 1 else 'density, pressure, Vx..'} "
                        "all of one shape (N, T, *S) with one velocity per spatial axis")
    n, steps, grid = shape[0], shape[1], shape[2:]
    times = _times(path, f, "t-coordinate", steps)
    trajectories = np.empty((n, steps, len(fields), *grid), dtype=np.float32)
    for channel, name in enumerate(fields):
        trajectories[:, :, channel] = _float32(path, f[name])
    return {"arrays": {"trajectories": trajectories, "times": times},
            "attrs": {"format": f"pdebench-cfd-{dims}d", "n_samples": n, "channels": fields,
                      "keys": {"times": "t-coordinate"}}}


def _read_groups(path: Path, f: h5py.File, names: list[str]) -> dict:
    shape = f[names[0]]["data"].shape
    if len(shape) < 3:
        raise DataError(f"{path}: '{names[0]}/data' has shape {shape}; expected (T, *S, C)")
    for name in names:
        if f[name]["data"].shape != shape:
            raise DataError(f"{path}: '{name}/data' has shape {f[name]['data'].shape} but "
                            f"'{names[0]}/data' has {shape}; all samples must share one shape")
    steps, grid, channels = shape[0], shape[1:-1], shape[-1]
    times = _times(path, f[names[0]], "grid/t", steps)
    trajectories = np.empty((len(names), steps, channels, *grid), dtype=np.float32)
    for index, name in enumerate(names):
        trajectories[index] = np.moveaxis(_float32(path, f[name]["data"]), -1, 1)
    return {"arrays": {"trajectories": trajectories, "times": times},
            "attrs": {"format": f"pdebench-{len(grid)}d", "n_samples": len(names),
                      "keys": {"samples": f"{names[0]}..{names[-1]}", "trajectories": "data",
                               "times": "grid/t"}}}


def read_pdebench(path) -> dict:
    """Read a PDEBench HDF5 file (layouts in the module docstring) into oplearn's layout.

    Returns ``{"arrays": ..., "attrs": ...}`` with ``attrs["format"]`` naming the
    layout, ``attrs["keys"]`` the datasets used and, for CFD files,
    ``attrs["channels"]`` the field of each channel.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; check the path")
    f = open_hdf5(path)
    try:
        with f:
            if "nu" in f and "tensor" in f:
                return _read_darcy(path, f)
            if "tensor" in f:
                return _read_tensor(path, f)
            if "density" in f and "pressure" in f:
                return _read_cfd(path, f)
            names = _sample_groups(f)
            if names:
                return _read_groups(path, f, names)
            raise DataError(f"{path} holds {_describe(f)} in no layout oplearn reads; "
                            f"understood: {LAYOUTS}")
    except (OSError, KeyError, RuntimeError) as exc:  # damaged metadata shows up while walking the file
        raise DataError(f"{path} cannot be read ({_first_line(exc)}); "
                        "it may be truncated or corrupt") from None
