"""Diagnostics that explain what a trained operator learned.

spectrum: error by wavenumber; ntk: empirical neural tangent kernels; kernels: their eigen-analysis;
infinite_width: analytic NNGP/NTK of wide MLPs; linearize: tangent-space models and task vectors;
width: muP and coordinate checks; memory: peak training memory, predicted on fake tensors;
probes: training callbacks (NTK drift, imported from there).
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
from oplearn.analysis.linearize import TaskVector, linearize
from oplearn.analysis.memory import MemoryEstimate, memory_estimate
from oplearn.analysis.ntk import empirical_ntk
from oplearn.analysis.spectrum import band_errors, energy_spectrum, error_spectrum, spectral_report
from oplearn.analysis.width import coord_check, plot_coord_check

__all__ = [
    "MemoryEstimate", "TaskVector", "band_errors", "condition_number", "coord_check", "effective_rank", "eigenvalues",
    "empirical_ntk", "energy_spectrum", "error_spectrum", "gradient_descent_prediction", "infinite_width_kernels",
    "kernel_summary", "kernel_target_alignment", "linearize", "memory_estimate",
    "plot_coord_check", "residual_projection", "spectral_report",
]
