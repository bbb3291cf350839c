"""Evaluate a finished run on any dataset, at any resolution."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from oplearn.data.dataset import FieldDataset
from oplearn.errors import ConfigError, DataError
from oplearn.models import build
from oplearn.plot import plot_prediction
from oplearn.train.checkpoint import Checkpoint
from oplearn.train.config import Config, load_config
from oplearn.train.distributed import resolve_device
from oplearn.train.task import SupervisedTask
from oplearn.train.trainer import CHECKPOINT, load_source


def load_run(run: str | Path, device: str = "auto") -> tuple[Config, torch.nn.Module, SupervisedTask]:
    """The config, trained model (eval mode) and task of a run directory."""
    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise DataError(f"{run} is not a run directory (no config.yaml); pass the --out of `oplearn train`")
    config = load_config(run / "config.yaml")
    checkpoint = Checkpoint(run / CHECKPOINT)
    in_channels, out_channels = checkpoint.state["channels"]
    model = build(config.model.name, in_channels=in_channels, out_channels=out_channels,
                  **config.model.hyperparameters())
    checkpoint.restore(model)
    model.to(resolve_device(device)).eval()
    return config, model, SupervisedTask.from_state(checkpoint.extra())


def evaluate_run(run: str | Path, data: str | Path | None = None, resolution: int | None = None,
                 device: str = "auto") -> dict[str, dict]:
    """Relative L2 of a run on datasets; writes ``eval/<name>.json`` and ``figures/<name>.png``.

    ``data``: a file to test on. ``resolution``: generate the run's test set
    recipe at that resolution (zero-shot super-resolution). Neither: the
    run's own test and extra test sets.
    """
    run = Path(run)
    config, model, task = load_run(run, device)
    device = next(model.parameters()).device
    if data is not None and resolution is not None:
        raise ConfigError("give either --data or --resolution, not both")
    if data is not None:
        recipe = config.data.test
        sets = {Path(data).stem: FieldDataset.open(data, input_steps=recipe.input_steps,
                                                   output_steps=recipe.output_steps)}
    elif resolution is not None:
        recipe = config.data.test
        if recipe.pde is None:
            raise ConfigError("--resolution needs a test set the run can generate (data.test.pde); use --data")
        path = run / "eval" / f"{recipe.pde}_test_{resolution}.h5"
        source = recipe.model_copy(update={"path": str(path), "resolution": resolution})
        sets = {path.stem: load_source(source, "test")}
    else:
        sources = {"test": config.data.test, **config.data.extra_tests}
        sets = {name: load_source(source, name) for name, source in sources.items()}

    results = {}
    for name, dataset in sets.items():
        error = task.evaluate(model, dataset, device)
        inputs, targets = dataset.batch([0])
        with torch.no_grad():
            prediction = task.predict(model, inputs.to(device)).cpu()
        figure = plot_prediction(inputs[0].numpy(), targets[0].numpy(), prediction[0].numpy(),
                                 run / "figures" / f"{name}.png",
                                 title=f"{name}: grid {dataset.resolution}, test relative L2 {error:.4f}")
        results[name] = {"rel_l2": error, "resolution": list(dataset.resolution), "samples": len(dataset),
                         "figure": str(figure)}
        (run / "eval").mkdir(exist_ok=True)
        (run / "eval" / f"{name}.json").write_text(json.dumps(results[name], indent=2))
    return results
