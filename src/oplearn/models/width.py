"""Width scaling: the maximal-update parameterization (muP) and coordinate checks (plots: ``oplearn.plot``).

Under the standard parameterization (SP) the best Adam learning rate falls as
a network widens, because one step moves every output coordinate by an
amount that grows with the width (``fan_in`` correlated updates add up). muP
(Yang et al., "Tensor Programs V", 2022, Table 3) rescales initialization and
per-layer learning rates so that every activation and its update per step
stay of order one as the width ``n`` grows; hyperparameters tuned on a narrow
model then carry over to a wide one.

A weight dimension is *width-scaled* when it differs from the same model
built at ``base_width``; with ``m = fan_in / base_fan_in`` the rules are

=========  ========================  ======================  ==============
role       fan_in / fan_out          init variance           Adam lr
=========  ========================  ======================  ==============
input      fixed / any               SP at base width        lr
hidden     scaled / scaled           SP at base width / m    lr / m
output     scaled / fixed            SP at base width / m^2  lr / m
vector     biases                    unchanged               lr
=========  ========================  ======================  ==============

("SP at base width" is the model's own standard init for the base shapes.)
At ``width == base_width`` muP and SP are the same network. Spectral weights
``W(k)`` of a :class:`~oplearn.layers.spectral.SpectralConv` are a channel
matrix per Fourier mode with ``fan_in = in_channels`` (the modes are fixed),
scaled like any hidden matrix: their SP init has variance ``1/(in*out)``, muP
keeps ``1/(in*base_out)`` so that the mixed spectrum stays of order one. In
the FNO the lifting is an input layer, the Fourier blocks (spectral and
pointwise) are hidden and the first projection layer (``width ->
projection_channels``) is the output layer; the last projection layer has
fixed fans and keeps its SP init and the base learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.pointwise import PointwiseLinear
from oplearn.layers.spectral import SpectralConv

if TYPE_CHECKING:
    from oplearn.models.operator import Operator

PARAMETERIZATIONS = ("standard", "mup")
# Per weight type: (fan_in axis, fan_out axis, does the SP init variance also divide by fan_out?)
_FANS: dict[type, tuple[int, int, bool]] = {
    nn.Linear: (1, 0, False), nn.Conv1d: (1, 0, False), nn.Conv2d: (1, 0, False), nn.Conv3d: (1, 0, False),
    PointwiseLinear: (1, 0, False), SpectralConv: (0, 1, True),
}


def check_parameterization(parameterization: str, base_width: int | None) -> None:
    """Config checks shared by the models that take ``parameterization`` and ``base_width``."""
    if parameterization not in PARAMETERIZATIONS:
        raise ConfigError(f"unknown parameterization '{parameterization}'; choose one of: "
                          f"{', '.join(PARAMETERIZATIONS)}")
    if base_width is not None and parameterization != "mup":
        raise ConfigError("base_width applies only with parameterization='mup'")
    if base_width is not None and base_width < 1:
        raise ConfigError(f"base_width must be a positive integer, got {base_width}")


def _role(module: nn.Module, name: str, shape: torch.Size, base_shape: torch.Size) -> tuple[str, float, float]:
    """``(role, init std factor, lr factor)`` of one parameter from its and its base shape."""
    if len(shape) <= 1:
        return "vector", 1.0, 1.0
    if shape == base_shape:
        return "input", 1.0, 1.0
    if type(module) not in _FANS:
        raise ConfigError(f"muP does not know the fan-in of {type(module).__name__} ({name}); "
                          "parameterization='mup' supports Linear, 1x1 Conv and SpectralConv layers")
    axis_in, axis_out, sp_divides_by_out = _FANS[type(module)]
    m_in = shape[axis_in] / base_shape[axis_in]
    m_out = shape[axis_out] / base_shape[axis_out]
    sp_variance = 1 / m_in / (m_out if sp_divides_by_out else 1.0)  # relative to the base shape's SP init
    if m_in == 1:
        role, variance, lr = "input", 1.0, 1.0
    elif m_out != 1:
        role, variance, lr = "hidden", 1 / m_in, 1 / m_in
    else:
        role, variance, lr = "output", 1 / m_in**2, 1 / m_in
    return role, math.sqrt(variance / sp_variance), lr


@torch.no_grad()
def apply_mup(model: nn.Module, base: nn.Module) -> nn.Module:
    """Rescale ``model``'s standard init to muP and record per-parameter learning-rate factors.

    ``base`` is the same architecture at the base width (build it on the meta
    device, e.g. :func:`mup_base`: only shapes are read). Sets ``model.mup_roles`` and
    ``model.mup_lr_scale`` (name -> role / factor); the latter goes to :func:`param_groups`.
    """
    base_shapes = {name: p.shape for name, p in base.named_parameters()}
    roles, lr_scale = {}, {}
    for prefix, module in model.named_modules():
        for local, param in module.named_parameters(recurse=False):
            name = f"{prefix}.{local}" if prefix else local
            if name not in base_shapes or len(base_shapes[name]) != param.ndim:
                raise ShapeError(f"muP base model has no parameter {name} of {param.ndim} axes; build the base "
                                 "with the same architecture and another width")
            role, std, lr = _role(module, name, param.shape, base_shapes[name])
            param.mul_(std)
            roles[name], lr_scale[name] = role, lr
    model.mup_roles, model.mup_lr_scale = roles, lr_scale
    return model


def mup_base(model: Operator) -> Operator:
    """``model``'s architecture at its muP base width (default: the default ``width``) under the standard
    parameterization, built on the meta device: the shapes :func:`apply_mup` compares with."""
    width = model.hyper.base_width or type(model.hyper).model_fields["width"].default
    with torch.device("meta"):
        return type(model)(model.in_channels, model.out_channels, **{
            **model.hyper.model_dump(), "width": width, "parameterization": "standard", "base_width": None})


def param_groups(model: nn.Module, lr: float, scales: Mapping[str, float] | None = None) -> list[dict]:
    """Adam parameter groups: ``lr`` times each parameter's factor in ``scales`` (name -> factor, default 1),
    one group per factor, largest first; without ``scales`` one group at ``lr``."""
    scales = scales or {}
    groups: dict[float, list] = {}
    for name, param in model.named_parameters():
        groups.setdefault(scales.get(name, 1.0), []).append(param)
    return [{"params": params, "lr": lr * scale} for scale, params in sorted(groups.items(), reverse=True)]


def coord_check(make_model: Callable[[int], Operator], widths: Sequence[int],
                data: tuple[torch.Tensor, torch.Tensor], steps: int = 4, lr: float = 1e-2,
                layers: Sequence[str] | None = None, measure: str = "activation",
                seed: int = 0) -> dict[int, dict[str, list[float]]]:
    """Mean ``|activation|`` (or ``|activation - activation at step 0|``) of each layer over the first
    Adam steps, for each width.

    ``make_model(width)`` builds an operator; ``data = (inputs, targets)`` is one
    batch trained on with mean squared error and Adam over the model's
    ``optimizer_groups(lr)``. ``layers``: module names to
    watch (default: every leaf module with parameters); ``"output"`` is the
    model's output. ``measure``: "activation" (``mean |h_t|``) or "update"
    (``mean |h_t - h_0|``, what muP keeps of order one). Returns
    ``{width: {layer: [scale at step 0, ..., steps-1]}}``, each measured in the
    forward pass before that step's update. Under muP the curves are flat in
    the width; under SP the updates grow with it.
    """
    if steps < 1 or not widths:
        raise ConfigError("coord_check needs steps >= 1 and at least one width")
    if measure not in ("activation", "update"):
        raise ConfigError(f"coord_check measure must be 'activation' or 'update', got '{measure}'")
    inputs, targets = data
    results: dict[int, dict[str, list[float]]] = {}
    for width in widths:
        torch.manual_seed(seed)
        model = make_model(width)
        names = list(layers) if layers is not None else [
            name for name, module in model.named_modules()
            if name and not list(module.children()) and list(module.parameters(recurse=False))]
        modules = dict(model.named_modules())
        unknown = [name for name in names if name != "output" and name not in modules]
        if unknown:
            raise ConfigError(f"coord_check: the model has no layer(s) {', '.join(unknown)}; "
                              "use names from model.named_modules()")
        record: dict[str, list[float]] = {name: [] for name in [*names, "output"]}
        first: dict[str, torch.Tensor] = {}

        def note(name: str, value: torch.Tensor) -> None:
            value = value.detach()
            if measure == "update":
                value = value - first.setdefault(name, value)
            record[name].append(value.abs().mean().item())

        hooks = [modules[name].register_forward_hook(lambda _m, _i, out, name=name: note(name, out))
                 for name in names if name != "output"]
        optimizer = torch.optim.Adam(model.optimizer_groups(lr), lr=lr)
        try:
            for _ in range(steps):
                prediction = model(inputs)
                note("output", prediction)
                loss = (prediction - targets).square().mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        finally:
            for hook in hooks:
                hook.remove()
        results[width] = record
    return results

