"""Complete neural operators, each an :class:`Operator` registered by name; :func:`build` constructs one."""

from oplearn.models.afno import AFNO
from oplearn.models.deeponet import DeepONet, PODDeepONet
from oplearn.models.ffno import FFNO
from oplearn.models.fno import FNO
from oplearn.models.galerkin import GalerkinTransformer
from oplearn.models.gfno import GFNO
from oplearn.models.geo_fno import GeoFNO
from oplearn.models.gino import GINO
from oplearn.models.gno import GNO
from oplearn.models.gnot import GNOT
from oplearn.models.kan import KAN
from oplearn.models.lsm import LSM
from oplearn.models.mgno import MgNO
from oplearn.models.mionet import MIONet
from oplearn.models.mlp import MLP
from oplearn.models.operator import MODELS, Operator, build, register
from oplearn.models.t1 import T1
from oplearn.models.tfno import TFNO
from oplearn.models.transolver import Transolver
from oplearn.models.unet import UNet
from oplearn.models.uno import UNO

__all__ = ["AFNO", "DeepONet", "FFNO", "FNO", "GFNO", "GINO", "GNO", "GNOT", "GalerkinTransformer", "GeoFNO", "KAN",
           "LSM", "MIONet", "MLP", "MODELS", "MgNO", "Operator", "PODDeepONet", "T1", "TFNO", "Transolver", "UNO",
           "UNet", "build", "register"]
