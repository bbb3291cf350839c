"""Training: configuration, the loop, checkpoints, data parallelism."""

from oplearn.train.config import Config, load_config
from oplearn.train.trainer import Callback, fit

__all__ = ["Callback", "Config", "fit", "load_config"]
