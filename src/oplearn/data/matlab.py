"""The MATLAB ``.mat`` files of the original FNO datasets, read into oplearn's layout.

Layouts understood (S a spatial size, N samples, T time steps):

* Darcy: ``coeff`` (N, S, S) -> inputs (N, 1, S, S); ``sol`` -> outputs
  (other variables such as ``Kcoeff`` are ignored);
* Burgers: ``a`` (N, S) -> inputs (N, 1, S); ``u`` (N, S) -> outputs;
* Navier-Stokes: ``a`` (N, S, S) initial vorticity and ``u`` (N, S, S, T)
  with time last -> trajectories (N, T + 1, 1, S, S) with ``a`` at t = 0 and
  times [0, t_1..t_T] from ``t`` (1, T), or [0, 1, .., T] without ``t``.

Versions 4-7 are read with :func:`scipy.io.loadmat`; version 7.3 files are
HDF5, read with h5py. MATLAB stores arrays column-major, so h5py sees every
axis reversed (``u`` appears as (T, S, S, N)); reversing all axes restores
MATLAB's order.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np

from oplearn.data.arrays import checked_float32
from oplearn.data.store import open_hdf5
from oplearn.errors import DataError

# (what a user recognises, input variable, output variable); first present pair wins.
FNO_LAYOUTS = (
    ("Darcy 'coeff' (N, S, S) -> 'sol' (N, S, S)", "coeff", "sol"),
    ("Burgers 'a' (N, S) -> 'u' (N, S)", "a", "u"),
    ("Navier-Stokes 'a' (N, S, S) -> 'u' (N, S, S, T) with optional 't' (1, T)", "a", "u"),
)
TIME_KEY = "t"
_V5_HEADER_BYTES = 128
_MI_COMPRESSED = 15  # a zlib-compressed element; every other top-level element is 8-byte padded


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _check_v5_complete(path: Path) -> None:
    """Walk the top-level element tags of a v5 file; DataError if one runs past the end.

    ``scipy.io.whosmat`` silently lists only the variables before a cut, so a
    truncated file would otherwise read as a file with fewer variables.
    """
    size = path.stat().st_size
    with path.open("rb") as stream:
        header = stream.read(_V5_HEADER_BYTES)
        if len(header) < _V5_HEADER_BYTES or header[126:128] not in (b"IM", b"MI"):
            return  # a v4 file: no tags to walk, scipy checks it while reading
        order = "<" if header[126:128] == b"IM" else ">"
        position = _V5_HEADER_BYTES
        while position < size:
            stream.seek(position)
            tag = stream.read(8)
            if len(tag) < 8:
                break
            kind, nbytes = struct.unpack(order + "II", tag)
            if kind >> 16:  # small data element: 4-byte tag and data in 8 bytes
                position += 8
                continue
            position += 8 + nbytes + (0 if kind == _MI_COMPRESSED else -nbytes % 8)
    if position != size:
        raise DataError(f"{path} is truncated or corrupt (a variable runs past the end of the "
                        "file); download or export it again")


@contextlib.contextmanager
def _open_mat(path: Path) -> Iterator[tuple[str, dict, Callable[[str], np.ndarray]]]:
    """Yield ``(version, shapes, load)``: variable shapes in MATLAB's axis order and a loader."""
    if not path.is_file():
        raise DataError(f"{path} does not exist; check the path")
    if h5py.is_hdf5(path):
        f = open_hdf5(path)
        with f:
            try:
                shapes = {name: tuple(reversed(obj.shape)) for name, obj in f.items()
                          if isinstance(obj, h5py.Dataset) and not name.startswith("#")}
            except (OSError, KeyError, RuntimeError) as exc:  # damaged metadata
                raise DataError(f"{path} cannot be read ({_first_line(exc)}); "
                                "it may be truncated or corrupt") from None

            def load(name: str) -> np.ndarray:
                try:
                    return np.transpose(f[name][()])  # reverse every axis: column-major -> MATLAB order
                except (OSError, KeyError, RuntimeError) as exc:
                    raise DataError(f"{path}: variable '{name}' cannot be read ({_first_line(exc)}); "
                                    "the file may be truncated or corrupt") from None

            yield "7.3", shapes, load
        return
    from scipy.io import loadmat, whosmat  # scipy is slow to import; only needed here

    try:
        listing = whosmat(path)
        _check_v5_complete(path)
    except DataError:
        raise
    except Exception as exc:  # scipy raises ValueError, OSError, MatReadError... for bad files
        raise DataError(f"{path} is not a readable MATLAB file ({_first_line(exc)}); it may be "
                        "truncated or corrupt, or not saved by MATLAB or scipy.io.savemat") from None

    def load_v5(name: str) -> np.ndarray:
        try:
            return loadmat(path, variable_names=[name])[name]
        except Exception as exc:
            raise DataError(f"{path}: variable '{name}' cannot be read ({_first_line(exc)}); "
                            "the file may be truncated or corrupt") from None

    yield "5", {name: tuple(shape) for name, shape, _ in listing}, load_v5


def _describe_shapes(shapes: dict) -> str:
    return "{" + ", ".join(f"{name}: {shape}" for name, shape in shapes.items()) + "}"


def _choose_keys(path: Path, shapes: dict, input_key, output_key) -> tuple[str, str]:
    pair = next(((i, o) for _, i, o in FNO_LAYOUTS if i in shapes and o in shapes), (None, None))
    input_key, output_key = input_key or pair[0], output_key or pair[1]
    if input_key is None or output_key is None:
        understood = "; ".join(description for description, _, _ in FNO_LAYOUTS)
        raise DataError(f"{path} holds {_describe_shapes(shapes)} in no known FNO layout "
                        f"(understood: {understood}); name the variables with "
                        "input_key=... and output_key=...")
    for key in (input_key, output_key):
        if key not in shapes:
            raise DataError(f"{path} has no variable '{key}' (found {_describe_shapes(shapes)}); "
                            "choose one of those")
    return input_key, output_key


def _times(path: Path, t, steps: int) -> np.ndarray:
    """[0, t_1..t_T] (T + 1,) float64 from the stored times ``t``, or [0, 1, .., T] without them."""
    if t is None:
        return np.arange(steps + 1, dtype=np.float64)
    if not isinstance(t, np.ndarray) or t.dtype.kind not in "iuf" or t.size != steps:
        raise DataError(f"{path}: '{TIME_KEY}' should hold the {steps} times of the trajectory, found "
                        f"{getattr(t, 'shape', type(t).__name__)}; fix it or remove it")
    times = np.concatenate([[0.0], t.astype(np.float64).ravel()])
    if not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
        raise DataError(f"{path}: '{TIME_KEY}' must be finite, positive and increasing, "
                        f"found {times[1:].tolist()[:8]}...")
    return times


def read_fno_mat(path, input_key: str | None = None, output_key: str | None = None) -> dict:
    """Read an FNO ``.mat`` file (see the module docstring for the layouts).

    ``input_key``/``output_key`` name the variables explicitly (each defaults
    to the first known layout present). Equal shapes (N, *S) give a steady map:
    inputs/outputs (N, 1, *S) float32. An output (N, *S, T) with the input's
    shape plus a last time axis gives trajectories (N, T + 1, 1, *S) float32
    starting from the input, with ``times`` (T + 1,) float64.
    """
    path = Path(path)
    with _open_mat(path) as (version, shapes, load):
        input_key, output_key = _choose_keys(path, shapes, input_key, output_key)
        in_shape, out_shape = shapes[input_key], shapes[output_key]
        steady = out_shape == in_shape
        in_time = len(out_shape) == len(in_shape) + 1 and out_shape[:-1] == in_shape
        if len(in_shape) < 2 or not (steady or in_time):
            raise DataError(f"{path}: '{input_key}' {in_shape} and '{output_key}' {out_shape} fit no "
                            "known layout; expected equal shapes (N, *S) or (N, *S) and "
                            "(N, *S, T) with time last")
        attrs: dict = {"format": "fno-mat", "n_samples": in_shape[0], "mat_version": version}
        inputs = checked_float32(path, input_key, load(input_key))
        if steady:
            outputs = checked_float32(path, output_key, load(output_key))
            attrs["keys"] = {"inputs": input_key, "outputs": output_key}
            return {"arrays": {"inputs": inputs[:, None], "outputs": outputs[:, None]},
                    "attrs": attrs}
        steps = out_shape[-1]
        use_t = TIME_KEY in shapes and TIME_KEY not in (input_key, output_key)
        times = _times(path, load(TIME_KEY) if use_t else None, steps)
        trajectories = np.empty((in_shape[0], steps + 1, 1, *in_shape[1:]), dtype=np.float32)
        trajectories[:, 0, 0] = inputs
        del inputs
        trajectories[:, 1:, 0] = np.moveaxis(checked_float32(path, output_key, load(output_key)), -1, 1)
        attrs["keys"] = {"initial": input_key, "trajectory": output_key,
                         "times": TIME_KEY if use_t else None}
        return {"arrays": {"trajectories": trajectories, "times": times}, "attrs": attrs}
