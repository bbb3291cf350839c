"""Complete neural operators, each an :class:`Operator` registered by name; :func:`build` constructs one."""

from oplearn.models.afno import AFNO
from oplearn.models.deeponet import DeepONet, PODDeepONet
from oplearn.models.fno import FNO
from oplearn.models.gfno import GFNO
from oplearn.models.kan import KAN
from oplearn.models.mionet import MIONet
from oplearn.models.mlp import MLP
from oplearn.models.operator import MODELS, Operator, build, register
from oplearn.models.tfno import TFNO

__all__ = ["AFNO", "DeepONet", "FNO", "GFNO", "KAN", "MIONet", "MLP", "MODELS", "Operator", "PODDeepONet", "TFNO", "build", "register"]
