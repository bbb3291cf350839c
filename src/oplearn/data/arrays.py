"""The check every file reader applies to the arrays it hands on: finite float32."""

from __future__ import annotations

import numpy as np

from oplearn.errors import DataError


def checked_float32(path, name: str, array) -> np.ndarray:
    """``array`` (real or bool numbers) as float32; DataError naming ``path`` and ``name`` otherwise.

    Rejects non-numeric or complex data and NaN/Inf (including values too
    large for float32), so every reader hands on finite float32 arrays only.
    """
    if not isinstance(array, np.ndarray):
        raise DataError(f"{path}: '{name}' is a {type(array).__name__}, expected a numeric array")
    if array.dtype.kind not in "biuf":
        raise DataError(f"{path}: '{name}' has dtype {array.dtype}, expected real numbers")
    with np.errstate(over="ignore", invalid="ignore"):
        array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise DataError(f"{path}: '{name}' contains NaN or Inf (or values too large for float32); "
                        "clean the file before using it")
    return array
