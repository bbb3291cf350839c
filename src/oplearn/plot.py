"""Figures for people: one sample's fields, training curves, energy spectra."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from oplearn.analysis.spectrum import default_band_edges, energy_spectrum, error_spectrum  # noqa: E402


def plot_prediction(inputs: np.ndarray, truth: np.ndarray, prediction: np.ndarray, path: str | Path,
                    title: str = "") -> Path:
    """Save a row of panels for one sample: input, truth, prediction, |error|.

    Arrays are ``(channels, *grid)`` for one sample; the first channel of
    each is shown. 2-D grids are images, 1-D grids are curves.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    panels = [("input", inputs[0]), ("truth", truth[0]), ("prediction", prediction[0]),
              ("|error|", np.abs(prediction[0] - truth[0]))]
    figure, axes = plt.subplots(1, 4, figsize=(14, 3.4), constrained_layout=True)
    for axis, (label, field) in zip(axes, panels):
        if field.ndim == 2:
            shared = label in ("truth", "prediction")
            limits = dict(vmin=min(truth[0].min(), prediction[0].min()),
                          vmax=max(truth[0].max(), prediction[0].max())) if shared else {}
            image = axis.imshow(field.T, origin="lower", extent=(0, 1, 0, 1), cmap="viridis", **limits)
            figure.colorbar(image, ax=axis, shrink=0.85)
        else:
            axis.plot(np.linspace(0, 1, field.shape[-1]), field.reshape(-1, field.shape[-1]).T)
        axis.set_title(label)
    if title:
        figure.suptitle(title)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_training_curve(metrics: list[dict], path: str | Path) -> Path:
    """Train loss and test relative L2 against epoch, log scale."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(5.5, 3.6), constrained_layout=True)
    epochs = [m["epoch"] for m in metrics]
    axis.semilogy(epochs, [m["train_loss"] for m in metrics], label="train relative L2")
    axis.semilogy(epochs, [m["test_rel_l2"] for m in metrics], label="test relative L2")
    axis.set_xlabel("epoch")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_spectrum(truth, prediction, path: str | Path, title: str = "") -> Path:
    """Save a log-log plot of the energy spectra of truth, prediction and error.

    ``truth`` and ``prediction`` are ``(batch, channels, *grid)`` arrays or
    tensors (1 to 3 periodic axes; pass one sample as ``x[None]``); spectra
    are shell-binned and averaged over batch and channels as in
    :func:`oplearn.analysis.spectrum.energy_spectrum`. The ``k = 0`` shell and
    empty shells are left out (log axes). Dotted lines mark the default
    low / mid / high band edges.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(5.5, 3.8), constrained_layout=True)
    curves = [("truth", energy_spectrum(truth), "-"), ("prediction", energy_spectrum(prediction), "--"),
              ("error", error_spectrum(prediction, truth), "-")]
    for label, (wavenumbers, energy), style in curves:
        k, e = wavenumbers.cpu().numpy()[1:], energy.cpu().numpy()[1:]
        shown = e > 0
        axis.loglog(k[shown], e[shown], style, label=label)
    for edge in default_band_edges(np.shape(truth)[2:]):
        axis.axvline(edge, color="gray", linestyle=":", linewidth=0.8)
    axis.set_xlabel("wavenumber |k|")
    axis.set_ylabel("energy per shell")
    axis.legend()
    axis.grid(alpha=0.3, which="both")
    if title:
        axis.set_title(title)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_resolution_errors(points: list[tuple[int, float]], path: str | Path, title: str = "") -> Path:
    """Relative L2 test error against grid points per axis (the first point is the training grid)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sizes, errors = zip(*sorted(points))
    figure, axis = plt.subplots(figsize=(5, 3.5))
    axis.plot(sizes, errors, "o-")
    axis.plot([points[0][0]], [points[0][1]], "s", color="C3", label="training grid")
    axis.set_xscale("log", base=2)
    axis.set_xticks(sizes, [str(s) for s in sizes])
    axis.set_xlabel("grid points per axis")
    axis.set_ylabel("test relative L2")
    axis.set_ylim(bottom=0)
    axis.legend(loc="lower right")  # the errors sit high above the zero baseline: keep the points clear
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
