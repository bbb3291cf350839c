"""Building blocks of neural operators, one family per module."""

from oplearn.layers.afno import AFNOMixer
from oplearn.layers.factorized_spectral import CPSpectralConv, TuckerSpectralConv
from oplearn.layers.group_spectral import GroupSpectralConv
from oplearn.layers.kan import KANLinear, PointwiseKAN
from oplearn.layers.pointwise import PointwiseLinear
from oplearn.layers.spectral import SpectralConv

__all__ = ["AFNOMixer", "CPSpectralConv", "GroupSpectralConv", "KANLinear", "PointwiseKAN", "PointwiseLinear", "SpectralConv",
           "TuckerSpectralConv"]
