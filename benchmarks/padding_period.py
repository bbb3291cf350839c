"""Zero-shot super-resolution of a padded FNO run: the padded period, and what a spline would do.

For a run's test set and each zero-shot set (``data.extra_tests``), the relative L2 error with

- ``per grid``: each grid rounds ``1 + padding`` to whole points itself (oplearn before the padded
  period was recorded, and neuraloperator's ``DomainPadding``);
- ``fixed``: every grid gets the period of the training grid (``oplearn.layers.padding``);
- ``spline``: where the grids nest, the model run on every k-th point of the same inputs (the
  training grid) and its prediction interpolated back with the not-a-knot cubic spline of the Darcy
  data pipeline: the baseline a zero-shot prediction has to beat.

Usage: ``python benchmarks/padding_period.py runs/paper/darcy [--samples 100]``; prints a Markdown
table. Runs on the CPU.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from oplearn.data.pdes.darcy import spline_regrid
from oplearn.losses import relative_lp_loss
from oplearn.train.recipes import load_run
from oplearn.data.batch import Batch
from oplearn.data.sources import load_source


def relative_error(prediction: torch.Tensor, target: torch.Tensor) -> float:
    return float(relative_lp_loss(prediction, target))


def predict(task, model, inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([task.predict(model, Batch(part, None)) for part in inputs.split(10)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run directory of a padded FNO with zero-shot test sets")
    parser.add_argument("--samples", type=int, default=100, help="test samples per set")
    args = parser.parse_args()
    config, model, task = load_run(args.run, "cpu")
    padding = model.domain_padding
    if not padding.fixed:
        raise SystemExit(f"{args.run} was trained before the padded period was recorded; retrain it")
    train_grid = tuple(padding.reference.tolist())  # the grid the run was trained on
    print("| grid | padded points per grid / fixed | rel. L2, period per grid | rel. L2, period fixed | "
          "spline of the training-grid prediction |")
    print("| --- | --- | --- | --- | --- |")
    for name, source in {"test": config.data.test, **config.data.extra_tests}.items():
        batch = load_source(source, name).batch(range(args.samples))
        inputs, targets = batch.inputs, batch.targets
        grid = tuple(inputs.shape[2:])
        row = {}
        for label, reference in (("per grid", (0,) * len(grid)), ("fixed", train_grid)):
            padding.fix_period(reference)
            row[label] = (padding.points(grid)[0], relative_error(predict(task, model, inputs), targets))
        stride, remainder = divmod(grid[0] - 1, train_grid[0] - 1)
        spline = "- (grids do not nest)"
        if remainder == 0:
            coarse = predict(task, model, inputs[..., ::stride, ::stride])
            fine, points = np.linspace(0, 1, grid[0]), np.linspace(0, 1, train_grid[0])
            upsampled = torch.stack([torch.from_numpy(spline_regrid(c[0].double().numpy(), points, fine))[None]
                                     for c in coarse]).to(targets.dtype)
            spline = f"{relative_error(upsampled, targets):.4f}"
        print(f"| {grid[0]} | {row['per grid'][0]} / {row['fixed'][0]} | {row['per grid'][1]:.4f} | "
              f"{row['fixed'][1]:.4f} | {spline} |", flush=True)


if __name__ == "__main__":
    main()
