"""Instance-wise fine-tuning (PINO's test-time optimization): adapt a trained operator to one new input by
the equation's residual alone, no solution needed.

    theta* = argmin_theta  sum_j w_j term_j(G_theta(a), a)          (physics terms only: pde, boundary, ...)

starting from the trained weights; optionally ``anchor`` * ||G_theta(a) - G_theta0(a)||^2 / ||G_theta0(a)||^2
keeps the tuned prediction near the trained one. The trained model is left unchanged (a copy is tuned).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from oplearn.data.batch import Batch
from oplearn.errors import ConfigError
from oplearn.train.objective import Objective, PhysicsTerm

DEFAULT_LOSS = [{"name": "pde"}, {"name": "boundary", "weight": 1.0}]


def fine_tune(model: nn.Module, task, batch: Batch, steps: int = 200, lr: float = 1e-4, loss=None,
              anchor: float = 0.0) -> tuple[nn.Module, list[float]]:
    """A copy of ``model`` tuned for ``steps`` Adam steps on ``batch`` (one or a few inputs; targets unused)
    by the physics terms ``loss`` (``train.loss`` syntax; default pde + boundary), and the loss per step.

    ``task`` is the run's task (its normalizers and calling convention, :func:`oplearn.train.recipes.load_run`).
    """
    if steps < 1 or lr <= 0:
        raise ConfigError(f"fine-tuning needs steps >= 1 and lr > 0, got steps {steps} and lr {lr}")
    objective = Objective.from_config(loss or DEFAULT_LOSS)
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
