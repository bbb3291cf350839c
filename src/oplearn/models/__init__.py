"""Complete neural operators; :func:`build` constructs one by name."""

from oplearn.models.afno import AFNO
from oplearn.models.fno import FNO
from oplearn.models.gfno import GFNO
from oplearn.models.kan import KAN
from oplearn.models.mlp import MLP
from oplearn.models.registry import MODELS, build
from oplearn.models.tfno import TFNO

__all__ = ["AFNO", "FNO", "GFNO", "KAN", "MLP", "MODELS", "TFNO", "build"]
