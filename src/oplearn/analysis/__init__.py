"""Diagnostics that explain what a trained operator learned."""

from oplearn.analysis.spectrum import band_errors, energy_spectrum, error_spectrum, spectral_report

__all__ = ["band_errors", "energy_spectrum", "error_spectrum", "spectral_report"]
