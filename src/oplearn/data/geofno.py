"""The Geo-FNO benchmark files (Li, Huang, Liu, Anandkumar 2022), read as mesh and point-cloud samples.

Layouts, as the Geo-FNO and Neural-Solver-Library loaders read them (N samples):

* ``geofno-elasticity``, a folder with ``Random_UnitCell_sigma_10.npy`` (P, N)
  (stress at P = 972 points per sample, sample last as saved),
  ``Random_UnitCell_XY_10.npy`` (P, 2, N) (the point coordinates) and
  optionally ``Random_UnitCell_rr_10.npy`` (R, N) (the radius of the void as a
  function of angle, R = 42 values). A point cloud: ``inputs`` = (x, y) at each
  point, followed by the R radius values repeated at every point when the rr
  file is there (Geo-FNO's model takes the coordinates and rr; the
  Neural-Solver-Library the coordinates only); ``outputs`` = the stress.
* ``geofno-airfoil``: ``NACA_Cylinder_X.npy``, ``NACA_Cylinder_Y.npy`` (N, H, W)
  (a structured C-mesh, H = 221, W = 51) and ``NACA_Cylinder_Q.npy`` (N, C, H, W)
  with C >= 5 flow fields, of which both loaders take channel 4 (the Mach number).
* ``geofno-pipe``: ``Pipe_X.npy``, ``Pipe_Y.npy`` (N, H, W) (H = W = 129) and
  ``Pipe_Q.npy`` (N, C, H, W), channel 0 (the horizontal velocity).
* ``geofno-plasticity``: a ``.mat`` file (``plas_N987_T20.mat``) with ``input``
  (N, S1) (the die profile, S1 = 101) and ``output`` (N, S1, S2, T, 4) (S2 = 31,
  T = 20 steps, 4 values: the deformed position x, y and the displacement).

Structured meshes become quad meshes: point (i, j) of an (H, W) index grid is
point ``i W + j`` (the loaders' row-major flattening) and cell (i, j) joins
``(i, j), (i+1, j), (i+1, j+1), (i, j+1)``. Airfoil and pipe samples have
``inputs`` = the physical coordinates (x, y) (what both loaders feed the
model) and ``outputs`` = the chosen Q channel. Plasticity lives on its
reference grid, point (i, j) at (i / (S1 - 1), j / (S2 - 1)) as in Geo-FNO's
grid; ``inputs`` = the die profile value ``input[n, i]`` at every point of row
i, ``outputs`` = the T * 4 values in the Neural-Solver-Library's order,
channel ``4 t + c``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from oplearn.data.arrays import checked_float32
from oplearn.data.matlab import _open_mat
from oplearn.data.meshio_files import RaggedSource
from oplearn.errors import DataError

ELASTICITY_FILES = {"stress": "Random_UnitCell_sigma_10.npy", "coordinates": "Random_UnitCell_XY_10.npy",
                    "radius": "Random_UnitCell_rr_10.npy"}
# layout -> (file stem: the X, Y and Q files are STEM_X.npy, STEM_Y.npy, STEM_Q.npy), the Q channel taken, its name)
STRUCTURED = {"geofno-airfoil": ("NACA_Cylinder", 4, "Mach number"),
              "geofno-pipe": ("Pipe", 0, "horizontal velocity")}
PLASTICITY_KEYS = ("input", "output")

GEOFNO_FORMATS = {
    "geofno-elasticity": f"Geo-FNO elasticity: a folder with {ELASTICITY_FILES['stress']}, "
                         f"{ELASTICITY_FILES['coordinates']} (and optionally {ELASTICITY_FILES['radius']})",
    "geofno-airfoil": "Geo-FNO airfoil: a folder with NACA_Cylinder_X.npy, NACA_Cylinder_Y.npy, NACA_Cylinder_Q.npy",
    "geofno-pipe": "Geo-FNO pipe: a folder with Pipe_X.npy, Pipe_Y.npy, Pipe_Q.npy",
    "geofno-plasticity": "Geo-FNO plasticity: a .mat file with 'input' (N, S1) and 'output' (N, S1, S2, T, 4)",
}


def quad_cells(rows: int, columns: int) -> np.ndarray:
    """The (rows - 1)(columns - 1) quads of a structured (rows, columns) grid, points numbered ``i columns + j``."""
    index = np.arange(rows * columns, dtype=np.int64).reshape(rows, columns)
    return np.stack([index[:-1, :-1], index[1:, :-1], index[1:, 1:], index[:-1, 1:]], axis=-1).reshape(-1, 4)


def _load_npy(path: Path) -> np.ndarray:
    """A .npy array mapped from disk (read sample by sample while writing)."""
    if not path.is_file():
        raise DataError(f"{path} does not exist; the layout needs it beside the other files")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, OSError... for truncated or foreign files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{path} is not a readable .npy array ({first}); it may be truncated") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise DataError(f"{path} does not hold a real-valued array; expected the Geo-FNO layout")
    return array


def _expect(path: Path, array: np.ndarray, shape: tuple, text: str) -> None:
    """DataError unless ``array`` has ``shape`` (None: any size >= 1 on that axis)."""
    fits = array.ndim == len(shape) and all(want is None and got >= 1 or got == want
                                             for got, want in zip(array.shape, shape))
    if not fits:
        raise DataError(f"{path.name} has shape {array.shape}, expected {text}; check that the files belong together")


def _folder(source: Path, names: list[str]) -> Path:
    """The folder holding the layout's files: ``source`` itself, or the folder of one of its files."""
    folder = source if source.is_dir() else source.parent
    if not folder.is_dir():
        raise DataError(f"{source} does not exist; give the folder holding {', '.join(names)}")
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder} lacks {', '.join(missing)}; the layout needs {', '.join(names)}")
    return folder


def read_elasticity(source: str | Path) -> RaggedSource:
    """The elasticity point clouds (see the module docstring)."""
    folder = _folder(Path(source), [ELASTICITY_FILES["stress"], ELASTICITY_FILES["coordinates"]])
    stress_path, xy_path, rr_path = (folder / ELASTICITY_FILES[k] for k in ("stress", "coordinates", "radius"))
    stress, xy = _load_npy(stress_path), _load_npy(xy_path)
    _expect(stress_path, stress, (None, None), "(points, samples), e.g. (972, 2000)")
    points, n = stress.shape
    _expect(xy_path, xy, (points, 2, n), f"({points}, 2, {n}): x and y of the stress file's {points} points "
                                          f"in its {n} samples")
    radius = _load_npy(rr_path) if rr_path.is_file() else None
    if radius is not None:
        _expect(rr_path, radius, (None, n), f"(radius values, {n}), e.g. (42, {n})")
    extra = 0 if radius is None else radius.shape[0]

    def samples() -> Iterator[dict]:
        for i in range(n):
            coordinates = np.asarray(xy[:, :, i], dtype=np.float64)
            inputs = [coordinates]
            if radius is not None:
                inputs.append(np.broadcast_to(np.asarray(radius[:, i], dtype=np.float64), (points, extra)))
            yield {"points": coordinates, "inputs": np.concatenate(inputs, axis=1),
                   "outputs": np.asarray(stress[:, i:i + 1], dtype=np.float64)}

    inputs = "x, y" + (f", rr[{extra}] (the same at every point)" if radius is not None else "")
    params = {"inputs": inputs, "outputs": "stress", "radius_file": radius is not None}
    return RaggedSource("geofno-elasticity", "points", 2, None, {"inputs": 2 + extra, "outputs": 1}, n,
                        samples, params)


def read_structured(source: str | Path, layout: str) -> RaggedSource:
    """Airfoil or pipe samples on their structured mesh, as quad meshes (see the module docstring)."""
    stem, channel, what = STRUCTURED[layout]
    names = [f"{stem}_{axis}.npy" for axis in "XYQ"]
    folder = _folder(Path(source), names)
    (x_path, y_path, q_path) = (folder / name for name in names)
    x, y, q = _load_npy(x_path), _load_npy(y_path), _load_npy(q_path)
    _expect(x_path, x, (None, None, None), "(samples, H, W)")
    n, rows, columns = x.shape
    if rows < 2 or columns < 2:
        raise DataError(f"{x_path.name} has shape {x.shape}; a structured mesh needs at least 2 x 2 points")
    _expect(y_path, y, x.shape, f"{x.shape} like {x_path.name}")
    _expect(q_path, q, (n, None, rows, columns), f"({n}, channels, {rows}, {columns})")
    if q.shape[1] <= channel:
        raise DataError(f"{q_path.name} has {q.shape[1]} channels, but the {layout} layout takes channel "
                        f"{channel} ({what}); expected at least {channel + 1}")
    cells = quad_cells(rows, columns)

    def samples() -> Iterator[dict]:
        for i in range(n):
            points = np.stack([np.asarray(x[i], np.float64).ravel(), np.asarray(y[i], np.float64).ravel()], axis=1)
            yield {"points": points, "cells": cells, "inputs": points,
                   "outputs": np.asarray(q[i, channel], dtype=np.float64).reshape(-1, 1)}

    params = {"inputs": "x, y", "outputs": f"Q channel {channel} ({what})", "structured_mesh": [rows, columns]}
    return RaggedSource(layout, "mesh", 2, "quad", {"inputs": 2, "outputs": 1}, n, samples, params)


def read_plasticity(source: str | Path) -> RaggedSource:
    """The plasticity .mat file on its reference grid (see the module docstring)."""
    path = Path(source)
    with _open_mat(path) as (_, shapes, load):
        missing = [key for key in PLASTICITY_KEYS if key not in shapes]
        if missing:
            found = ", ".join(f"{k} {v}" for k, v in shapes.items()) or "no variables"
            raise DataError(f"{path} has no {' or '.join(repr(k) for k in missing)} (found {found}); the plasticity "
                            "layout needs 'input' (N, S1) and 'output' (N, S1, S2, T, 4)")
        die, deformation = shapes["input"], shapes["output"]
        if len(die) != 2 or len(deformation) != 5 or deformation[:2] != die or min(deformation) < 1 or \
                min(deformation[1:3]) < 2:
            raise DataError(f"{path}: 'input' {die} and 'output' {deformation} do not fit the plasticity layout "
                            "'input' (N, S1) and 'output' (N, S1, S2, T, values) with S1, S2 >= 2")
        profile = checked_float32(path, "input", load("input"))
        output = checked_float32(path, "output", load("output"))
    n, rows, columns, steps, values = output.shape
    i, j = np.meshgrid(np.arange(rows) / (rows - 1), np.arange(columns) / (columns - 1), indexing="ij")
    points = np.stack([i.ravel(), j.ravel()], axis=1)
    cells = quad_cells(rows, columns)

    def samples() -> Iterator[dict]:
        for k in range(n):
            inputs = np.repeat(profile[k], columns).reshape(-1, 1)  # row i's die value at each of its points
            yield {"points": points, "cells": cells, "inputs": inputs,
                   "outputs": output[k].reshape(rows * columns, steps * values)}

    params = {"inputs": "die profile input[n, i] at point (i, j)",
              "outputs": f"output[n, i, j, t, c] as channel {values} t + c", "steps": steps, "values": values,
              "grid": [rows, columns]}
    return RaggedSource("geofno-plasticity", "mesh", 2, "quad", {"inputs": 1, "outputs": steps * values}, n,
                        samples, params)


def read_geofno(source: str | Path, layout: str) -> RaggedSource:
    """One of :data:`GEOFNO_FORMATS`."""
    if layout == "geofno-elasticity":
        return read_elasticity(source)
    if layout == "geofno-plasticity":
        return read_plasticity(source)
    return read_structured(source, layout)
