"""Complete neural operators; :func:`build` constructs one by name."""

from oplearn.models.fno import FNO
from oplearn.models.registry import MODELS, build

__all__ = ["FNO", "MODELS", "build"]
