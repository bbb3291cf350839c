"""Training: configuration, the loop, checkpoints, data parallelism."""

from oplearn.train.config import Config, load_config
from oplearn.train.callbacks import Callback
from oplearn.train.trainer import fit

__all__ = ["Callback", "Config", "fit", "load_config"]
