"""Evaluate a finished run on any dataset, at any resolution."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from oplearn.analysis.spectrum import spectral_report
from oplearn.data.sources import check_like_training, load_source, open_data
from oplearn.errors import ConfigError, DataError
from oplearn.files import atomic_path, write_atomic
from oplearn.plot import plot_mesh_prediction, plot_prediction, plot_queries, plot_spectrum
from oplearn.train.checkpoint import read_meta
from oplearn.train.recipes import load_run
from oplearn.train.run_dir import RunDir
from oplearn.train.trainer import data_summary

SPECTRUM_SAMPLES = 256


def evaluate_run(run: str | Path, data: str | Path | None = None, resolution: int | None = None,
                 device: str = "auto") -> dict[str, dict]:
    """Relative L2 of a run on datasets; writes ``eval/<name>.json`` and ``figures/<name>[_spectrum].png``.

    Besides the error, each result holds the error by wavenumber band and the
    energy spectra of truth, prediction and error (:mod:`oplearn.analysis.spectrum`,
    grid data taken as periodic) over the first ``SPECTRUM_SAMPLES`` samples;
    mesh and point data get the figure of their first sample on its points.

    ``data``: a file to test on. ``resolution``: generate the run's test set
    recipe at that resolution (zero-shot super-resolution). Neither: the
    run's own test and extra test sets.
    """
    run = RunDir(run)
    config, model, task = load_run(run, device)
    device = next(model.parameters()).device
    if data is not None and resolution is not None:
        raise ConfigError("give either --data or --resolution, not both")
    if data is not None:
        recipe = config.data.test
        sets = {Path(data).stem: open_data(data, input_steps=recipe.input_steps, output_steps=recipe.output_steps)}
    elif resolution is not None:
        recipe = config.data.test
        if recipe.pde is None:
            raise ConfigError("--resolution needs a test set the run can generate (data.test.pde); use --data")
        path = run.path / "eval" / f"{recipe.pde}_test_{resolution}.h5"
        source = recipe.model_copy(update={"path": str(path), "resolution": resolution})
        sets = {path.stem: load_source(source, "test")}
    else:
        sources = {"test": config.data.test, **config.data.extra_tests}
        sets = {name: load_source(source, name) for name, source in sources.items()}

    state = read_meta(run.checkpoint)["state"]
    trained_on = state.get("data", {})
    for name, dataset in sets.items():  # every set fits the model before anything is computed or written
        check_like_training(dataset.name, dataset, state["channels"], trained_on.get("geometry", "grid"),
                            trained_on.get("resolution"))
        task.check_data(model, dataset, dataset.name, device)

    results = {}
    for name, dataset in sets.items():
        error = task.evaluate(model, dataset, device)
        results[name] = {"rel_l2": error, **data_summary(dataset), "samples": len(dataset)}
        if dataset.kind == "grid":
            results[name].update(_grid_report(name, dataset, model, task, device, error, run))
        else:
            results[name]["figure"] = str(_mesh_figure(name, dataset, model, task, device, error, run))
        write_atomic(run.evaluation(name), json.dumps(results[name], indent=2))
    return results


def _grid_report(name: str, dataset, model, task, device, error: float, run: RunDir) -> dict:
    """Figures of the first sample and the error by wavenumber band over the first samples."""
    batch = dataset.batch(range(min(len(dataset), SPECTRUM_SAMPLES)))
    size = task.evaluation_batch(dataset.shape)
    with torch.no_grad():
        predictions = torch.cat([task.predict(model, batch.with_inputs(part).with_targets(None).to(device)).cpu()
                                 for part in batch.inputs.split(size)])
    inputs, targets = batch.inputs, batch.targets
    title = f"{name}: grid {dataset.resolution}, test relative L2 {error:.4f}"
    figure = plot_prediction(inputs[0].numpy(), targets[0].numpy(), predictions[0].numpy(), run.figure(name),
                             title=title)
    spectrum = spectral_report(predictions, targets)
    spectrum_figure = plot_spectrum(targets, predictions, run.figure(f"{name}_spectrum"), title=title)
    return {"band_relative_errors": spectrum["band_relative_errors"], "figure": str(figure),
            "spectrum_figure": str(spectrum_figure), "spectrum": spectrum}


def _mesh_figure(name: str, dataset, model, task, device, error: float, run: RunDir) -> Path:
    """Input, truth, prediction and error of the first mesh or point-cloud sample, drawn on its points."""
    batch = dataset.batch([0])
    with torch.no_grad():
        prediction = task.predict(model, batch.with_targets(None).to(device)).cpu()
    cells = batch.cells[0].numpy() if batch.cells else None
    title = f"{name}: {dataset.kind} sample 0 ({batch.inputs.shape[-1]} points), test relative L2 {error:.4f}"
    return plot_mesh_prediction(batch.coords[0].T.numpy(), cells, batch.inputs[0].numpy(), batch.targets[0].numpy(),
                                prediction[0].numpy(), run.figure(name), title=title)


QUERY_SAMPLES = 64


def read_queries(path: str | Path) -> np.ndarray:
    """Query points ``(Q, d)`` in [0, 1]^d from a ``.npy`` array or the ``points`` array of a ``.npz``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--queries {path} does not exist; pass a .npy (Q, d) array or a .npz with 'points'")
    try:
        loaded = np.load(path, allow_pickle=False)
        points = loaded["points"] if isinstance(loaded, np.lib.npyio.NpzFile) else loaded
    except (ValueError, KeyError, OSError) as error:
        raise DataError(f"--queries {path}: not a .npy array or a .npz with 'points' ({error})") from None
    if points.ndim == 1:
        points = points[:, None]
    if points.ndim != 2 or not np.issubdtype(points.dtype, np.number) or not np.isfinite(points).all():
        raise DataError(f"--queries {path}: expected finite numbers of shape (Q, d), got {points.shape} {points.dtype}")
    return points.astype(np.float32)


def predict_at_queries(run: str | Path, queries: str | Path, data: str | Path | None = None,
                       samples: int = QUERY_SAMPLES, device: str = "auto") -> dict:
    """Predictions at arbitrary points for the first ``samples`` inputs of the run's test set (or ``data``).

    Writes ``eval/queries.npz`` (``points (Q, d)``, ``predictions (n, C_out, Q)``) and
    ``figures/queries.png`` (the first sample); needs a model that predicts at query points (DeepONet family).
    """
    run = RunDir(run)
    config, model, task = load_run(run, device)
    if not model.predicts_at_queries:
        raise ConfigError(f"model {config.model.name} predicts on its input's points only; --queries needs a "
                          "model that takes query points (deeponet, pod_deeponet, mionet)")
    device = next(model.parameters()).device
    points = read_queries(queries)
    recipe = config.data.test
    dataset = (open_data(data, input_steps=recipe.input_steps, output_steps=recipe.output_steps)
               if data is not None else load_source(recipe, "test"))
    dim = len(dataset.resolution) if dataset.kind == "grid" else dataset.dim
    if points.shape[1] != dim:
        raise DataError(f"--queries {queries}: {points.shape[1]}-D points for {dim}-D data")
    batch = dataset.batch(range(min(len(dataset), samples)))
    shared = torch.from_numpy(points).T.contiguous()                     # (d, Q), shared by the batch
    size = task.evaluation_batch(dataset.shape)
    with torch.no_grad():
        predictions = _predict_queries(task, model, batch, shared, size, device)
    out = run.evaluation("queries").with_suffix(".npz")
    with atomic_path(out, suffix=".npz") as scratch:
        np.savez(scratch, points=points, predictions=predictions.numpy())
    result = {"points": int(points.shape[0]), "samples": len(batch), "file": str(out)}
    if dataset.kind == "grid" and dim in (1, 2):
        result["figure"] = str(plot_queries(batch.targets[0].numpy(), points, predictions[0].numpy(),
                                            run.figure("queries"), title=f"{config.model.name} at "
                                            f"{points.shape[0]} query points"))
    return result


def _predict_queries(task, model, batch, queries: torch.Tensor, size: int, device) -> torch.Tensor:
    parts = []
    for start in range(0, len(batch), size):
        indices = slice(start, start + size)
        part = dataclasses.replace(batch, inputs=batch.inputs[indices], targets=None, queries=queries,
                                   coords=None if batch.coords is None else batch.coords[indices],
                                   mask=None if batch.mask is None else batch.mask[indices], cells=None)
        parts.append(task.predict(model, part.to(device)).cpu())
    return torch.cat(parts)
