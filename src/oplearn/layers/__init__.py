"""Building blocks of neural operators, one family per module."""

from oplearn.layers.kan import KANLinear, PointwiseKAN
from oplearn.layers.spectral import SpectralConv

__all__ = ["KANLinear", "PointwiseKAN", "SpectralConv"]
