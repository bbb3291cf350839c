"""Building blocks of neural operators, one family per module."""

from oplearn.layers.spectral import SpectralConv

__all__ = ["SpectralConv"]
