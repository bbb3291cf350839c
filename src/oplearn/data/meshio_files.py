"""Meshes with point data in any file meshio reads (VTU, XDMF, Gmsh .msh, ...), one sample per file.

A source is one file, a directory (every file in it with a suffix meshio
knows, in name order) or a glob pattern such as ``runs/*.vtu``. Sample i is
file i: its ``points`` (N_i, 3) with the third coordinate dropped when it is
zero at every point (2-D meshes are stored with z = 0), its cells of the
highest topological dimension present (lower ones, e.g. the boundary lines
and vertices of a Gmsh file, are markers and are left out), and the point
data arrays the user names: ``inputs`` (N_i, C_in) stacks the arrays of
``input_key`` (comma-separated names, each (N_i,) or (N_i, c)), ``outputs``
those of ``output_key``. Every file must give the same cell type, point
dimension and channel counts; the number of points may differ.

:func:`read_meshio_source` returns a :class:`RaggedSource`, the description
of mesh samples that :func:`oplearn.data.formats.convert` writes as a
format-v2 mesh file; :mod:`oplearn.data.geofno` returns the same.
"""

from __future__ import annotations

import contextlib
import glob
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from oplearn.data.geometry import CELL_TYPES
from oplearn.errors import ConfigError, DataError

_GLOB_CHARACTERS = "*?["


@dataclass
class RaggedSource:
    """Mesh or point-cloud samples read from outside files, ready to write as a format-v2 file.

    ``format`` names the layout (e.g. ``"meshio"``, ``"geofno-airfoil"``);
    ``geometry`` is ``"mesh"`` or ``"points"``; ``dim`` the coordinates per
    point; ``cell_type`` a name of :data:`oplearn.data.geometry.CELL_TYPES` (None
    for points); ``channels`` ``{"inputs": C_in, "outputs": C_out}``;
    ``params`` what the layout's choices were (saved in the file).
    ``samples()`` reads the samples one at a time, each a dict of ``points``
    (N_i, d), ``inputs`` (N_i, C_in), ``outputs`` (N_i, C_out) and, for
    meshes, ``cells`` (M_i, k).
    """

    format: str
    geometry: str
    dim: int
    cell_type: str | None
    channels: dict[str, int]
    n_samples: int
    samples: Callable[[], Iterator[dict[str, np.ndarray]]]
    params: dict = field(default_factory=dict)


def meshio_suffixes() -> tuple[str, ...]:
    """The file suffixes meshio reads (``.vtu``, ``.xdmf``, ``.msh``, ...)."""
    import meshio

    return tuple(sorted(meshio.extension_to_filetypes))


def is_meshio_file(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(suffix) for suffix in meshio_suffixes())


def meshio_files(source: str | Path) -> list[Path]:
    """The files of a source: the file itself, a directory's mesh files, or a glob's matches, sorted."""
    text = str(source)
    if any(c in text for c in _GLOB_CHARACTERS):
        files = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
        if not files:
            raise DataError(f"no files match {text}; check the pattern (quote it so the shell leaves it alone)")
        return files
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and is_meshio_file(p))
        if not files:
            raise DataError(f"{path} holds no mesh files meshio reads (such as .vtu, .xdmf, .msh); "
                            "point at a file, a folder of mesh files or a glob")
        return files
    if not path.is_file():
        raise DataError(f"{path} does not exist; check the path")
    return [path]


def _key_names(option: str, keys: str | None) -> list[str]:
    names = [name.strip() for name in (keys or "").split(",") if name.strip()]
    if not names:
        raise ConfigError(f"meshio files need --{option} naming the point-data array(s), e.g. "
                          f"--{option} {'a' if option == 'input-key' else 'u'} (several: a,b)")
    return names


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _read(path: Path):
    """``meshio.read(path)``, whose own printing is held back (it prints and exits on some bad files)."""
    import meshio

    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            return meshio.read(path)
    except (Exception, SystemExit) as exc:  # ReadError, KeyError, ValueError... and sys.exit for unreadable files
        printed = [line.strip() for line in chatter.getvalue().splitlines() if line.strip()]
        why = printed[-1].removeprefix("Error: ") if isinstance(exc, SystemExit) and printed else _first_line(exc)
        raise DataError(f"{path} cannot be read as a mesh ({why}); check that it is a complete mesh file "
                        "meshio reads") from None


def _cells(path: Path, mesh) -> tuple[str, np.ndarray]:
    """The one cell type of the highest topological dimension in ``mesh``, and its cells."""
    from meshio._mesh import topological_dimension

    blocks: dict[str, list[np.ndarray]] = {}
    for block in mesh.cells:
        if len(block.data):
            blocks.setdefault(block.type, []).append(np.asarray(block.data))
    top = max((topological_dimension.get(kind, 0) for kind in blocks), default=0)
    kinds = [kind for kind in blocks if topological_dimension.get(kind, 0) == top]
    if top == 0:
        raise DataError(f"{path} has no cells (found {', '.join(blocks) or 'none'}); a mesh needs "
                        f"cells of one type: {', '.join(CELL_TYPES)}")
    if len(kinds) > 1:
        raise DataError(f"{path} mixes cell types {', '.join(kinds)}; oplearn meshes have one cell type "
                        "per file: split or convert the cells (e.g. quads into triangles)")
    kind = kinds[0]
    if kind not in CELL_TYPES:
        raise DataError(f"{path} has {kind} cells, which oplearn does not store; use one of "
                        f"{', '.join(CELL_TYPES)}")
    return kind, np.concatenate(blocks[kind])


def _points(mesh) -> np.ndarray:
    """(N, d) coordinates: a last coordinate that is zero everywhere (2-D meshes saved in 3-D) is dropped."""
    points = np.asarray(mesh.points, dtype=np.float64)
    if points.ndim == 2 and points.shape[1] == 3 and not np.any(points[:, 2]):
        points = points[:, :2]
    return points


def _channels(path: Path, mesh, names: list[str], n_points: int) -> np.ndarray:
    """The named point-data arrays side by side, (N, C)."""
    columns = []
    for name in names:
        if name not in mesh.point_data:
            found = ", ".join(f"{k} {np.shape(v)}" for k, v in mesh.point_data.items()) or "none"
            raise DataError(f"{path} has no point data '{name}' (point data found: {found}); name one of those")
        values = np.asarray(mesh.point_data[name])
        if values.ndim == 0 or len(values) != n_points:
            raise DataError(f"{path}: point data '{name}' has shape {values.shape}, expected one row per "
                            f"point ({n_points} points)")
        columns.append(values.reshape(n_points, -1))
    return np.concatenate(columns, axis=1)


def _sample(path: Path, input_names: list[str], output_names: list[str]) -> tuple[str, dict]:
    mesh = _read(path)
    cell_type, cells = _cells(path, mesh)
    points = _points(mesh)
    sample = {"points": points, "cells": cells,
              "inputs": _channels(path, mesh, input_names, len(points)),
              "outputs": _channels(path, mesh, output_names, len(points))}
    return cell_type, sample


def read_meshio_source(source: str | Path, input_key: str | None = None,
                       output_key: str | None = None) -> RaggedSource:
    """Mesh files (see the module docstring) as a :class:`RaggedSource` of geometry ``mesh``.

    The first file fixes cell type, dimension and channels; the others are read
    while writing, and one that differs is a DataError naming it.
    """
    inputs, outputs = _key_names("input-key", input_key), _key_names("output-key", output_key)
    files = meshio_files(source)
    cell_type, first = _sample(files[0], inputs, outputs)
    dim = first["points"].shape[1]
    channels = {"inputs": first["inputs"].shape[1], "outputs": first["outputs"].shape[1]}

    def samples() -> Iterator[dict]:
        yield first
        for path in files[1:]:
            kind, sample = _sample(path, inputs, outputs)
            found = (kind, sample["points"].shape[1], sample["inputs"].shape[1], sample["outputs"].shape[1])
            wanted = (cell_type, dim, channels["inputs"], channels["outputs"])
            if found != wanted:
                raise DataError(f"{path} has {kind} cells, {found[1]}-d points and {found[2]} input / "
                                f"{found[3]} output channels, but {files[0].name} has {cell_type} cells, "
                                f"{dim}-d points and {wanted[2]} / {wanted[3]}; every file must match")
            yield sample

    params = {"files": len(files), "first_file": files[0].name, "keys": {"inputs": inputs, "outputs": outputs}}
    return RaggedSource("meshio", "mesh", dim, cell_type, channels, len(files), samples, params)
