"""Figures for people: one sample's fields, training curves, energy spectra, kernel spectra,
muP coordinate checks, KAN edge functions. The only module that draws (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from oplearn.analysis.spectrum import default_band_edges, energy_spectrum, error_spectrum  # noqa: E402
from oplearn.files import atomic_path  # noqa: E402

if TYPE_CHECKING:
    from oplearn.layers.kan import KANLinear


def _save(figure, path: Path, dpi: int, close: bool = True) -> None:
    """Write ``figure`` as a PNG atomically (a reader never sees half a file); close it in pyplot."""
    with atomic_path(path, suffix=".png") as scratch:
        figure.savefig(scratch, dpi=dpi)
    if close:
        plt.close(figure)


def plot_prediction(inputs: np.ndarray, truth: np.ndarray, prediction: np.ndarray, path: str | Path,
                    title: str = "") -> Path:
    """Save a row of panels for one sample: input, truth, prediction, |error|.

    Arrays are ``(channels, *grid)`` for one sample; the first channel of
    each is shown. 2-D grids are images, 1-D grids are curves.
    """
    path = Path(path)
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
    _save(figure, path, 110)
    return path


def plot_training_curve(metrics: list[dict], path: str | Path) -> Path:
    """Train loss and test relative L2 against epoch, log scale."""
    path = Path(path)
    figure, axis = plt.subplots(figsize=(5.5, 3.6), constrained_layout=True)
    epochs = [m["epoch"] for m in metrics]
    axis.semilogy(epochs, [m["train_loss"] for m in metrics], label="train relative L2")
    axis.semilogy(epochs, [m["test_rel_l2"] for m in metrics], label="test relative L2")
    axis.set_xlabel("epoch")
    axis.legend()
    axis.grid(alpha=0.3)
    _save(figure, path, 110)
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
    _save(figure, path, 110)
    return path


def plot_resolution_errors(points: list[tuple[int, float]], path: str | Path, title: str = "") -> Path:
    """Relative L2 test error against grid points per axis (the first point is the training grid)."""
    path = Path(path)
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
    _save(figure, path, 120)
    return path


def plot_kernel_spectrum(values: torch.Tensor, path: str | Path, title: str = "") -> Path:
    """Log-log plot of a kernel's positive eigenvalues ``values (N,)`` against their rank (1 = largest)."""
    path = Path(path)
    values = values.detach().double().cpu()
    ranks = torch.arange(1, len(values) + 1)
    shown = values > 0
    figure, axis = plt.subplots(figsize=(5.5, 3.8), constrained_layout=True)
    axis.loglog(ranks[shown].numpy(), values[shown].numpy(), ".-")
    axis.set_xlabel("rank i")
    axis.set_ylabel(r"eigenvalue $\lambda_i$")
    axis.grid(alpha=0.3, which="both")
    if title:
        axis.set_title(title)
    _save(figure, path, 110)
    return path


def plot_coord_check(results: dict[int, dict[str, list[float]]], path: str | Path, title: str = "",
                     ylabel: str = "mean |activation|") -> Path:
    """PNG with one panel per step of :func:`oplearn.models.width.coord_check` results: the scale of
    each layer against width (log-log)."""
    widths = sorted(results)
    layers = list(results[widths[0]])
    steps = len(results[widths[0]][layers[0]])
    figure, axes = plt.subplots(1, steps, figsize=(3.2 * steps, 3.2), sharey=True, squeeze=False)
    for step, axis in enumerate(axes[0]):
        for layer in layers:
            axis.plot(widths, [results[w][layer][step] for w in widths], marker="o", label=layer)
        axis.set(xscale="log", yscale="log", xlabel="width", title=f"step {step}")
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=6, loc="best")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    _save(figure, path, 100)
    return path


def plot_activations(layer: KANLinear, path: str | Path, max_side: int = 8, points: int = 200) -> Figure:
    """Save a grid of a KAN layer's edge functions ``phi_ji`` (row j = output, column i = input) as a PNG.

    At most ``max_side`` inputs and outputs are drawn, each over its grid range ((-2, 2) for bases
    without one); pruned edges are grey and dashed. Returns the Figure (not kept by pyplot).
    """
    path = Path(path)
    n_in, n_out = min(layer.in_features, max_side), min(layer.out_features, max_side)
    device, dtype = layer.coefficients.device, layer.coefficients.dtype
    bounds = layer.basis.grid_range() or (torch.full((layer.in_features,), -2.0), torch.full((layer.in_features,), 2.0))
    low, high = (bound.to(device=device, dtype=dtype) for bound in bounds)
    steps = torch.linspace(0, 1, points, device=device, dtype=dtype)
    x = low + (high - low) * steps[:, None]  # (points, in)
    with torch.no_grad():
        phi = layer.edge_values(x).cpu().numpy()
    mask = layer.edge_mask.cpu().numpy() if layer.edge_mask is not None else None
    x = x.cpu().numpy()
    figure = Figure(figsize=(1.6 * n_in + 0.4, 1.3 * n_out + 0.4), constrained_layout=True)
    axes = figure.subplots(n_out, n_in, squeeze=False)
    for j in range(n_out):
        for i in range(n_in):
            pruned = mask is not None and not mask[j, i]
            axes[j, i].plot(x[:, i], phi[:, j, i], color="0.7" if pruned else "C0", ls="--" if pruned else "-")
            axes[j, i].set_title(f"{i}→{j}", fontsize=7)
            axes[j, i].tick_params(labelsize=6)
    _save(figure, path, 90, close=False)
    return figure


def plot_queries(truth: np.ndarray, points: np.ndarray, prediction: np.ndarray, path: str | Path,
                 title: str = "") -> Path:
    """One sample's prediction at query points beside the truth on its grid (first channel).

    ``truth (C, *grid)`` on [0, 1]^d, ``points (Q, d)``, ``prediction (C, Q)``. 1-D: curves; 2-D: the
    truth as an image and the queries as coloured dots on the same scale.
    """
    path = Path(path)
    figure, axes = plt.subplots(1, 2 if points.shape[1] == 2 else 1, figsize=(10 if points.shape[1] == 2 else 6, 3.6),
                                constrained_layout=True, squeeze=False)
    if points.shape[1] == 1:
        axis, order = axes[0, 0], np.argsort(points[:, 0])
        axis.plot(np.linspace(0, 1, truth.shape[-1]), truth[0], label="truth (grid)")
        axis.plot(points[order, 0], prediction[0, order], ".-", markersize=3, label="prediction (queries)")
        axis.legend()
    else:
        limits = dict(vmin=min(truth[0].min(), prediction[0].min()), vmax=max(truth[0].max(), prediction[0].max()))
        image = axes[0, 0].imshow(truth[0].T, origin="lower", extent=(0, 1, 0, 1), cmap="viridis", **limits)
        axes[0, 0].set_title("truth (grid)")
        axes[0, 1].scatter(points[:, 0], points[:, 1], c=prediction[0], s=6, cmap="viridis", **limits)
        axes[0, 1].set(xlim=(0, 1), ylim=(0, 1), aspect="equal", title="prediction (queries)")
        figure.colorbar(image, ax=axes[0, 1], shrink=0.85)
    if title:
        figure.suptitle(title)
    _save(figure, path, 110)
    return path


def plot_grid_sample(inputs: np.ndarray, outputs: np.ndarray | None, path: str | Path, title: str = "") -> Path:
    """One grid sample of a file: its input and output (first channel each), ``(channels, *grid)`` arrays;
    the input alone when ``outputs`` is None (an inputs-only file).

    2-D grids are images, 1-D grids curves, 3-D grids their middle slice along the last axis.
    """
    path = Path(path)
    panels = [("input", inputs[0])] + ([] if outputs is None else [("output", outputs[0])])
    figure, axes = plt.subplots(1, len(panels), figsize=(3.75 * len(panels), 3.4), constrained_layout=True,
                                squeeze=False)
    for axis, (label, field) in zip(axes[0], panels):
        if field.ndim == 3:
            field, label = field[..., field.shape[-1] // 2], f"{label} (middle slice)"
        if field.ndim == 2:
            image = axis.imshow(field.T, origin="lower", extent=(0, 1, 0, 1), cmap="viridis")
            figure.colorbar(image, ax=axis, shrink=0.85)
        else:
            axis.plot(np.linspace(0, 1, field.shape[-1]), field)
        axis.set_title(label)
    if title:
        figure.suptitle(title)
    _save(figure, path, 110)
    return path


def mesh_triangles(cells: np.ndarray | None) -> np.ndarray | None:
    """Triangles that draw a 2-D mesh: triangle cells as they are, each quad (a, b, c, d) split into
    (a, b, c) and (a, c, d); None for other cells or none (the points are then drawn as dots)."""
    if cells is None or cells.ndim != 2 or cells.shape[1] not in (3, 4):
        return None
    if cells.shape[1] == 3:
        return cells
    return np.concatenate([cells[:, [0, 1, 2]], cells[:, [0, 2, 3]]])


def _draw_on_points(figure, axis, points: np.ndarray, triangles: np.ndarray | None, values: np.ndarray,
                    limits: dict) -> None:
    """``values (N,)`` at ``points (N, d)``: a curve in 1-D, a coloured triangulation of the mesh in 2-D,
    coloured dots for point clouds (and for 3-D points, seen from above: x and y)."""
    if points.shape[1] == 1:
        order = np.argsort(points[:, 0])
        axis.plot(points[order, 0], values[order], ".-", markersize=3)
        return
    x, y = points[:, 0], points[:, 1]
    if points.shape[1] == 2 and triangles is not None:
        drawn = axis.tripcolor(x, y, triangles, values, shading="gouraud", cmap="viridis", **limits)
    else:
        drawn = axis.scatter(x, y, c=values, s=max(2.0, 3000.0 / len(points)), cmap="viridis", **limits)
    axis.set_aspect("equal")
    figure.colorbar(drawn, ax=axis, shrink=0.85)


def plot_mesh_sample(points: np.ndarray, cells: np.ndarray | None, panels: list[tuple[str, np.ndarray]],
                     path: str | Path, title: str = "", shared: tuple[str, ...] = ()) -> Path:
    """A row of panels drawing fields ``(label, values (N,))`` at one sample's ``points (N, d)``.

    ``cells (M, k)`` (local point indices) or None for a point cloud: 2-D
    triangle and quad meshes are drawn with ``tripcolor`` (quads split into two
    triangles, values interpolated across each), point clouds and 3-D points as
    coloured dots, 1-D points as curves. Panels named in ``shared`` share one
    colour scale.
    """
    path = Path(path)
    points = np.asarray(points, dtype=np.float64)
    triangles = mesh_triangles(None if cells is None else np.asarray(cells))
    together = [values for label, values in panels if label in shared]
    common = dict(vmin=min(v.min() for v in together), vmax=max(v.max() for v in together)) if together else {}
    figure, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), constrained_layout=True,
                                squeeze=False)
    for axis, (label, values) in zip(axes[0], panels):
        limits = common if label in shared and points.shape[1] > 1 else {}
        _draw_on_points(figure, axis, points, triangles, np.asarray(values, dtype=np.float64), limits)
        axis.set_title(label)
    if title:
        figure.suptitle(title)
    _save(figure, path, 110)
    return path


def plot_mesh_prediction(points: np.ndarray, cells: np.ndarray | None, inputs: np.ndarray, truth: np.ndarray,
                         prediction: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Input, truth, prediction and |error| of one mesh or point-cloud sample (first channel of each).

    ``points (N, d)``, ``cells (M, k)`` or None, ``inputs (C_in, N)``,
    ``truth`` and ``prediction (C_out, N)``; drawn by :func:`plot_mesh_sample`
    with truth and prediction on one colour scale.
    """
    panels = [("input", inputs[0]), ("truth", truth[0]), ("prediction", prediction[0]),
              ("|error|", np.abs(prediction[0] - truth[0]))]
    return plot_mesh_sample(points, cells, panels, path, title, shared=("truth", "prediction"))
