"""PDE data: random inputs, solvers, the HDF5 store, outside formats."""

from oplearn.data.generate import generate

__all__ = ["generate"]
