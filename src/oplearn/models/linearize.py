"""Linearized models (tangent-space training) and task vectors.

A network ``f(x; theta)`` linearized around weights ``theta_0`` is its
first-order Taylor model in the weights,

    f_lin(x; theta) = f(x; theta_0) + J(x; theta_0) (theta - theta_0),

with ``J = d f / d theta`` at ``theta_0``. It is linear in ``theta`` but keeps
the network's (non-linear) features in ``x``; gradient descent on it is
kernel regression with the network's neural tangent kernel at ``theta_0``.
The product ``J (theta - theta_0)`` is one forward-mode derivative
(``torch.func.jvp``), so the Jacobian is never formed: a step costs about
three forward passes.

A task vector (Ilharco et al., 2023) is the weight difference
``tau = theta_ft - theta_base`` left by fine-tuning on one task; adding
scaled task vectors to the base weights merges what several fine-tunings
learned. Ortiz-Jimenez et al. (2023) argue that fine-tuning in tangent space
makes such sums interfere less; ``benchmarks/task_vectors.py`` tests that on
Darcy regimes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from numbers import Real

import torch
from torch import nn
from torch.func import functional_call, jvp

from oplearn.errors import ConfigError
from oplearn.models.operator import Operator


class Linearized(Operator):
    """``f_lin(x; theta) = f(x; theta_0) + J(x; theta_0)(theta - theta_0)`` for an operator ``f``.

    Two copies of the network: ``base`` holds ``theta_0`` (frozen, never
    trained) and ``model`` holds ``theta`` (trainable, starting at
    ``theta_0``). Only ``model``'s parameters require grad, so the normal
    trainer, checkpoints and optimizers see an ordinary operator whose
    contract (optimizer groups, geometries, forward arguments) is ``f``'s;
    after training, ``model`` carries the tangent-space weights, e.g. for a
    :class:`TaskVector`. Buffers are taken from ``base``.

    Shapes: whatever ``f`` takes and returns (one tensor input, one tensor output).
    """

    def __init__(self, model: Operator):
        if not isinstance(model, Operator):
            raise ConfigError(f"linearize takes an oplearn Operator (a model from oplearn.models), "
                              f"got a {type(model).__name__}")
        if not any(True for _ in model.parameters()):
            raise ConfigError("linearize needs a model with parameters; this one has none")
        super().__init__(model.in_channels, model.out_channels)
        self.geometries = model.geometries
        self.base = copy.deepcopy(model)
        for parameter in self.base.parameters():
            parameter.requires_grad_(False)
        self.model = copy.deepcopy(model)
        for parameter in self.model.parameters():
            parameter.requires_grad_(True)

    def displacement(self) -> dict[str, torch.Tensor]:
        """``theta - theta_0`` by parameter name (differentiable in ``theta``)."""
        base = dict(self.base.named_parameters())
        return {name: theta - base[name] for name, theta in self.model.named_parameters()}

    def forward(self, x: torch.Tensor, **arguments) -> torch.Tensor:
        primals = {name: p.detach() for name, p in self.base.named_parameters()}
        buffers = dict(self.base.named_buffers())

        def at(params):
            return functional_call(self.base, (params, buffers), (x,), arguments)

        value, derivative = jvp(at, (primals,), (self.displacement(),))
        return value + derivative

    def optimizer_groups(self, lr: float) -> list[dict]:
        """The inner model's parameter groups (with its muP learning rates, if any)."""
        return self.model.optimizer_groups(lr)

    def refine(self, resolution) -> dict:
        raise ConfigError("stage.recipe refine needs a single-model base run; a linearized model cannot be refined")


def linearize(model: Operator) -> Linearized:
    """The first-order Taylor model of ``model`` around its current weights (see :class:`Linearized`).

    ``model`` itself is not changed; the result starts equal to it (``f_lin = f`` at ``theta_0``).
    """
    return Linearized(model)


def _weights(source: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(source, Linearized):
        source = source.model
    if isinstance(source, nn.Module):
        return {name: p.detach() for name, p in source.named_parameters()}
    tensors = {name: torch.as_tensor(value).detach() for name, value in source.items()}
    # a state dict also holds integer buffers (e.g. a padding's reference grid), never parameters
    return {name: t for name, t in tensors.items() if t.is_floating_point() or t.is_complex()}


def _wide(tensor: torch.Tensor) -> torch.Tensor:
    """float64 for floating point weights: differences of float32 weights are then exact."""
    return tensor.to(torch.float64) if tensor.is_floating_point() else tensor


class TaskVector(Mapping):
    """Fine-tuned minus base weights, ``tau = theta_ft - theta_0``, as a dict of tensors by parameter name.

    Supports ``tau_1 + tau_2``, ``tau_1 - tau_2``, ``-tau``, ``c * tau`` and
    ``tau.apply_to(model)`` (``theta <- theta + tau``). Entries are kept in
    float64, so for float32 (or lower precision) networks the round trip
    ``base + (ft - base) == ft`` holds bit for bit.
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor]):
        self._tensors = {name: _wide(torch.as_tensor(value).detach()) for name, value in tensors.items()}

    @classmethod
    def between(cls, base: nn.Module | Mapping[str, torch.Tensor],
                finetuned: nn.Module | Mapping[str, torch.Tensor]) -> "TaskVector":
        """``finetuned - base`` over their parameters (modules, :class:`Linearized` or name -> tensor dicts)."""
        before, after = _weights(base), _weights(finetuned)
        if before.keys() != after.keys():
            missing = sorted(before.keys() ^ after.keys())
            raise ConfigError(f"task vector needs two models with the same parameters; these differ in "
                              f"{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        for name in before:
            if before[name].shape != after[name].shape:
                raise ConfigError(f"task vector: parameter {name} has shape {tuple(before[name].shape)} in the base "
                                  f"and {tuple(after[name].shape)} in the fine-tuned model; use the same architecture")
        return cls({name: _wide(after[name]) - _wide(before[name]) for name in before})

    # Mapping interface: name -> tensor.
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def _combine(self, other: "TaskVector", sign: float) -> "TaskVector":
        if not isinstance(other, TaskVector):
            return NotImplemented
        if self.keys() != other.keys():
            raise ConfigError("task vectors of different architectures cannot be combined; "
                              "build both from the same base model")
        return TaskVector({name: value + sign * other[name] for name, value in self.items()})

    def __add__(self, other: "TaskVector") -> "TaskVector":
        return self._combine(other, 1.0)

    def __sub__(self, other: "TaskVector") -> "TaskVector":
        return self._combine(other, -1.0)

    def __neg__(self) -> "TaskVector":
        return TaskVector({name: -value for name, value in self.items()})

    def __mul__(self, scale: float) -> "TaskVector":
        if not isinstance(scale, Real):
            return NotImplemented
        return TaskVector({name: float(scale) * value for name, value in self.items()})

    __rmul__ = __mul__

    def norm(self) -> float:
        """Euclidean norm over all entries."""
        return torch.sqrt(sum((value.double() ** 2).sum() for value in self.values())).item()

    @torch.no_grad()
    def apply_to(self, model: nn.Module) -> nn.Module:
        """``theta <- theta + tau`` in place (into ``model.model`` for a :class:`Linearized`); returns ``model``.

        The sum is formed in float64 and rounded once to each parameter's dtype.
        """
        target = model.model if isinstance(model, Linearized) else model
        params = dict(target.named_parameters())
        missing = sorted(set(self) - set(params))
        if missing:
            raise ConfigError(f"task vector has parameters the model lacks ({', '.join(missing[:4])}); "
                              "apply it to a model of the architecture it came from")
        for name, value in self.items():
            param = params[name]
            if param.shape != value.shape:
                raise ConfigError(f"task vector entry {name} has shape {tuple(value.shape)}, the model's "
                                  f"{tuple(param.shape)}; apply it to the architecture it came from")
            param.copy_((_wide(param) + value.to(param.device)).to(param.dtype))
        return model
