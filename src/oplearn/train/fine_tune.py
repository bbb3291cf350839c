"""Instance-wise fine-tuning (PINO's test-time optimization): adapt a trained operator to one new input by
the equation's residual alone, no solution needed.

    theta* = argmin_theta  sum_j w_j term_j(G_theta(a), a)          (physics terms only: pde, boundary, ...)

starting from the trained weights; optionally ``anchor`` * ||G_theta(a) - G_theta0(a)||^2 / ||G_theta0(a)||^2
keeps the tuned prediction near the trained one. The trained model is left unchanged (a copy is tuned).
The default terms (:func:`default_loss`) score Darcy's residual in the h-1 norm: its mean square weighs the
prediction's high frequencies so much more than its smooth error that tuning by it can raise the error
(benchmarks/RESULTS.md, PINO).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from oplearn.data.batch import Batch
from oplearn.errors import ConfigError
from oplearn.train.objective import Objective, PhysicsTerm


def fine_tune(model: nn.Module, task, batch: Batch, steps: int = 200, lr: float = 1e-4, loss=None,
              anchor: float = 0.0) -> tuple[nn.Module, list[float]]:
    """A copy of ``model`` tuned for ``steps`` Adam steps on ``batch`` (one or a few inputs; targets unused)
    by the physics terms ``loss`` (``train.loss`` syntax; default :func:`default_loss`), and the loss per step.

    ``task`` is the run's task (its normalizers and calling convention, :func:`oplearn.train.recipes.load_run`).
    """
    if steps < 1 or lr <= 0:
        raise ConfigError(f"fine-tuning needs steps >= 1 and lr > 0, got steps {steps} and lr {lr}")
    objective = Objective.from_config(loss or default_loss(batch.pde))
    if not all(isinstance(term, PhysicsTerm) for _, term in objective.terms):
        raise ConfigError("test-time fine-tuning knows no solution: use physics loss terms only (pde, boundary, "
                          "initial)")
    batch = batch.with_targets(None) if batch.targets is not None else batch
    tuned = copy.deepcopy(model).train()
    with torch.no_grad():
        reference = task.predict(model, batch) if anchor else None
    optimizer = torch.optim.Adam([p for p in tuned.parameters() if p.requires_grad], lr=lr)
    history = []
    for _ in range(steps):
        prediction = task.predict(tuned, batch)
        value = objective(prediction, batch, lambda other: task.predict(tuned, other)).mean()
        if anchor:
            value = value + anchor * ((prediction - reference).square().sum() / reference.square().sum())
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        history.append(value.item())
    return tuned.eval(), history


def default_loss(pde_name: str | None, norm: str | None = None, boundary_weight: float = 1.0) -> list[dict]:
    """pde + boundary terms; ``norm`` None picks h-1 where the PDE defines it (Darcy on grids), else l2."""
    if norm is None:
        from oplearn.data.pdes import PDES

        norm = "h-1" if hasattr(PDES.get(pde_name), "residual_squares") else "l2"
    return [{"name": "pde", "norm": norm}, {"name": "boundary", "weight": boundary_weight}]


def tune_run(run: str | Path, data: str | Path, samples: int = 1, steps: int = 300, lr: float = 1e-3,
             norm: str | None = None, boundary_weight: float = 1.0, anchor: float = 0.0, out: str | Path | None = None,
             overwrite: bool = False, device: str = "auto") -> dict:
    """Fine-tune a trained run on each of the first ``samples`` inputs of ``data`` alone (`oplearn tune`).

    Writes ``OUT/tune.npz`` (``inputs``, ``before``, ``after``: the predictions of the trained and the tuned
    model, ``(n, C, *grid)``) and ``OUT/tune.json`` (the loss terms, the per-sample final loss and, where the
    file holds solutions, the relative L2 errors before and after); OUT is ``RUN/tune`` by default.
    """
    from oplearn.data.sources import open_data
    from oplearn.files import atomic_path, write_atomic
    from oplearn.train.recipes import load_run
    from oplearn.train.run_dir import RunDir

    run_dir = RunDir(run)
    out = Path(out) if out is not None else run_dir.path / "tune"
    files = {"npz": out / "tune.npz", "json": out / "tune.json"}
    if not overwrite and any(path.exists() for path in files.values()):
        raise ConfigError(f"{out} already holds tuning results; pass --overwrite to replace them or choose --out")
    config, model, task = load_run(run_dir, device)
    recipe = config.data.train
    dataset = open_data(data, input_steps=recipe.input_steps, output_steps=recipe.output_steps)
    if samples > len(dataset):
        raise ConfigError(f"--samples {samples} exceeds the {len(dataset)} samples of {data}; lower --samples")
    loss = default_loss(dataset.pde, norm, boundary_weight)
    where = next(model.parameters()).device
    task.check_data(model, dataset, f"--data {data}", where)
    inputs, before, after, entries = [], [], [], []
    for index in range(samples):
        batch = dataset.batch([index]).to(where)
        tuned, history = fine_tune(model, task, batch, steps=steps, lr=lr, loss=loss, anchor=anchor)
        with torch.no_grad():
            predictions = [task.predict(m, batch.with_targets(None)).cpu() for m in (model, tuned)]
        entry = {"sample": index, "final_loss": history[-1], "first_loss": history[0]}
        if batch.targets is not None:
            truth = batch.targets.cpu()
            entry.update({f"rel_l2_{name}": ((p - truth).norm() / truth.norm()).item()
                          for name, p in zip(("before", "after"), predictions)})
        inputs.append(batch.inputs.cpu())
        before.append(predictions[0])
        after.append(predictions[1])
        entries.append(entry)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(files["npz"], suffix=".npz") as scratch:
        np.savez(scratch, inputs=torch.cat(inputs).numpy(), before=torch.cat(before).numpy(),
                 after=torch.cat(after).numpy())
    summary = {"data": str(data), "steps": steps, "lr": lr, "anchor": anchor, "loss": loss, "samples": entries}
    write_atomic(files["json"], json.dumps(summary, indent=2))
    return {**summary, "files": {name: str(path) for name, path in files.items()}}
