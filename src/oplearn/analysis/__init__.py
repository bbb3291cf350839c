"""Diagnostics that explain what a trained operator learned.

spectrum: error by wavenumber; ntk: empirical neural tangent kernels; kernels: their eigen-analysis;
infinite_width: analytic NNGP/NTK of wide MLPs; memory: peak training memory, predicted on fake tensors.
Model transforms live in ``oplearn.models`` (width: muP; linearize: tangent-space models), the NTK drift
probe in ``oplearn.train.probes`` and the figures in ``oplearn.plot``.
"""

from oplearn.analysis.infinite_width import gradient_descent_prediction, infinite_width_kernels
from oplearn.analysis.kernels import (
    condition_number,
    effective_rank,
    eigenvalues,
    kernel_summary,
    kernel_target_alignment,
    residual_projection,
)
from oplearn.analysis.memory import MemoryEstimate, memory_estimate
from oplearn.analysis.ntk import empirical_ntk
from oplearn.analysis.spectrum import band_errors, energy_spectrum, error_spectrum, spectral_report

__all__ = [
    "MemoryEstimate", "band_errors", "condition_number", "effective_rank", "eigenvalues", "empirical_ntk",
    "energy_spectrum", "error_spectrum", "gradient_descent_prediction", "infinite_width_kernels", "kernel_summary",
    "kernel_target_alignment", "memory_estimate", "residual_projection", "spectral_report",
]
