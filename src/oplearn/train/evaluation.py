"""Evaluate a finished run on any dataset, at any resolution."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from oplearn.analysis.spectrum import spectral_report
from oplearn.data.sources import load_source, open_data
from oplearn.errors import ConfigError
from oplearn.files import write_atomic
from oplearn.plot import plot_prediction, plot_spectrum
from oplearn.train.recipes import load_run
from oplearn.train.run_dir import RunDir
from oplearn.train.trainer import data_summary

SPECTRUM_SAMPLES = 256


def evaluate_run(run: str | Path, data: str | Path | None = None, resolution: int | None = None,
                 device: str = "auto") -> dict[str, dict]:
    """Relative L2 of a run on datasets; writes ``eval/<name>.json`` and ``figures/<name>[_spectrum].png``.

    Besides the error, each result holds the error by wavenumber band and the
    energy spectra of truth, prediction and error (:mod:`oplearn.analysis.spectrum`,
    grid data taken as periodic) over the first ``SPECTRUM_SAMPLES`` samples.

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

    results = {}
    for name, dataset in sets.items():
        error = task.evaluate(model, dataset, device)
        results[name] = {"rel_l2": error, **data_summary(dataset), "samples": len(dataset)}
        if dataset.kind == "grid":
            results[name].update(_grid_report(name, dataset, model, task, device, error, run))
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
