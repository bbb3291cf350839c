"""Readers for dataset files made outside oplearn, mapped to oplearn's layout.

Every reader returns the structure of :func:`oplearn.data.store.read_dataset`:
``{"arrays": {"inputs": (N, C_in, *S) float32, "outputs": (N, C_out, *S)
float32}, "attrs": {...}}``. :func:`load_arrays` picks the reader by suffix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oplearn.data.store import read_dataset
from oplearn.errors import DataError

SUPPORTED_SUFFIXES = {
    ".h5": "oplearn HDF5",
    ".hdf5": "oplearn HDF5",
    ".pt": "neuraloperator tensor dict",
}


def _describe_contents(obj) -> str:
    if not isinstance(obj, dict):
        return f"a {type(obj).__name__}"
    parts = [f"{k}: {tuple(v.shape)}" if hasattr(v, "shape") else f"{k}: {type(v).__name__}"
             for k, v in obj.items()]
    return "{" + ", ".join(parts) + "}"


def _to_float32(path: Path, name: str, tensor) -> np.ndarray:
    arr = tensor.detach().cpu().numpy()
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{path}: '{name}' has dtype {tensor.dtype}, expected a real or bool tensor")
    with np.errstate(over="ignore", invalid="ignore"):
        arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{path}: '{name}' contains NaN or Inf (or values too large for float32); "
                        "clean the file before using it")
    return arr


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
        outputs = _to_float32(path, "y", y)[:, None]
    elif y.ndim == x.ndim + 1 and ys[2:] == xs[1:]:
        outputs = _to_float32(path, "y", y)
    else:
        raise DataError(f"{path} holds {_describe_contents(obj)}: the grid of 'y' does not match "
                        f"'x'; {expected}")
    inputs = _to_float32(path, "x", x)[:, None]
    attrs: dict = {"format": "neuraloperator", "n_samples": xs[0]}
    visc = obj.get("visc")
    if visc is not None:
        if not isinstance(visc, torch.Tensor) or visc.numel() != 1:
            raise DataError(f"{path}: 'visc' should hold one number, found "
                            f"{_describe_contents({'visc': visc})}")
        attrs["viscosity"] = float(visc.reshape(-1)[0])
    return {"arrays": {"inputs": inputs, "outputs": outputs}, "attrs": attrs}


def load_arrays(path) -> dict:
    """Load any supported dataset file into ``{"arrays": ..., "attrs": ...}``.

    ``.h5``/``.hdf5`` files go to :func:`oplearn.data.store.read_dataset`,
    ``.pt`` files to :func:`read_neuraloperator`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return read_dataset(path)
    if suffix == ".pt":
        return read_neuraloperator(path)
    supported = ", ".join(f"{s} ({what})" for s, what in SUPPORTED_SUFFIXES.items())
    raise DataError(f"{path}: unsupported file type '{suffix or path.name}'; supported: {supported}")
