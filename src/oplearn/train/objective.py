"""The training objective: a weighted sum of loss terms, each seeing the prediction and the whole Batch.

    loss_i = sum_j w_j * term_j(prediction_i, batch_i)        one value per sample

``train.loss`` in a config is a term's name (``h-1``) or a list of
``{name, weight, ...options}`` entries. A term is a callable
``term(prediction, batch) -> (batch,)``: the data terms compare the
prediction with ``batch.targets``; the physics terms (``pde``, ``boundary``,
``initial``: the mean square of the equation's residual, of the boundary
condition's, of the initial condition's) build the data's PDE from
``batch.pde`` and ``batch.params`` and call its ``residual``,
``boundary_residual`` or ``initial_residual`` (``oplearn.data.pdes``) on the
prediction and the Batch. New terms register with :func:`register_term`.

``train.balance`` picks how the weights move during training
(:mod:`oplearn.train.balancing`: fixed, softadapt, relobralo, gradient_norm);
the configured weights are where they start (fixed: where they stay).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import torch
import torch.nn.functional as F

from oplearn.data.batch import Batch
from oplearn.errors import ConfigError
from oplearn.losses import LOSSES, relative_lp_loss
from oplearn.train.balancing import make_balancer

LossTerm = Callable[[torch.Tensor, Batch], torch.Tensor]
TERMS: dict[str, Callable[..., LossTerm]] = {}
"""Term factories by name: ``TERMS[name](**options) -> term``."""


def register_term(name: str):
    """Decorator: register a term factory under ``name``."""
    def add(factory):
        TERMS[name] = factory
        return factory

    return add


class DataTerm:
    """A loss between prediction and target (``oplearn.losses.LOSSES``), padded points excluded.

    The relative L2 error works on any geometry (norms over the real points);
    the Sobolev losses need grid data (they are computed in Fourier space).
    """

    def __init__(self, name: str):
        self.name, self.function = name, LOSSES[name]

    def __call__(self, prediction: torch.Tensor, batch: Batch) -> torch.Tensor:
        if batch.targets is None:
            raise ConfigError(f"loss term {self.name} compares with targets, but the data have none; use a "
                              "physics term")
        if batch.kind != "grid" and self.name != "relative_l2":
            raise ConfigError(f"loss {self.name} is defined on uniform grids; use relative_l2 on {batch.kind} data")
        values = self.function(batch.masked(prediction), batch.targets, reduction="none")
        return values if batch.labelled is None else torch.where(batch.labelled, values, torch.zeros_like(values))


for _name in LOSSES:
    register_term(_name)(lambda _n=_name: DataTerm(_n))


class PhysicsTerm:
    """Mean square, per sample, of a residual the data's PDE defines: ``kind`` pde (the equation), boundary
    (the boundary condition) or initial (the initial condition), over the points where it holds; padded
    points of point data leave the mean. Targets are never read, so the term also trains data-free.

    ``refine: k`` (grid data) scores the model on a grid k times finer than the data's, PINO's point: the
    inputs are interpolated there (``interpolation`` linear, or nearest, which keeps a two-valued coefficient
    two-valued; periodic data by Fourier interpolation) and the model is called again on them. Node grids
    (spacing 1/(n-1)) go to (n-1)k+1 points, so the data's nodes stay nodes; cell and periodic grids to nk.

    ``norm`` (pde term): ``l2``, the mean square, or ``h-1`` / ``h-2``, the residual's squared H^-1 / H^-2
    norm through the inverse Laplacian of its grid (the PDE's ``residual_squares``; Darcy on grids). For an
    elliptic equation these weigh the error as its H^1 seminorm / L2 norm do, where the mean square weighs
    its high frequencies k^4 more: a far better conditioned loss.
    """

    METHODS = {"pde": "residual", "boundary": "boundary_residual", "initial": "initial_residual"}
    NORMS = {"l2": 0, "h-1": 1, "h-2": 2}

    def __init__(self, kind: str, refine: int = 1, interpolation: str = "linear", norm: str = "l2"):
        if not isinstance(refine, int) or refine < 1:
            raise ConfigError(f"loss term {kind}: refine must be an integer >= 1, got {refine!r}")
        if interpolation not in ("linear", "nearest"):
            raise ConfigError(f"loss term {kind}: interpolation must be linear or nearest, got {interpolation!r}")
        if norm not in self.NORMS or (norm != "l2" and kind != "pde"):
            raise ConfigError(f"loss term {kind}: norm must be " + ("l2, h-1 or h-2" if kind == "pde" else
                              "l2 (h-1 and h-2 are for the pde term)") + f", got {norm!r}")
        self.kind, self.method, self.refine, self.interpolation = kind, self.METHODS[kind], refine, interpolation
        self.order = self.NORMS[norm]
        self._pdes: dict[str, object] = {}

    def equation(self, batch: Batch):
        """The PDE object of ``batch`` (built once per distinct (pde, params))."""
        from oplearn.data.pdes import PDES, get_pde

        if batch.pde is None or batch.pde not in PDES:
            raise ConfigError(f"loss term {self.kind} needs data that name a PDE oplearn knows (files written by "
                              f"oplearn generate); these data name {batch.pde!r}")
        key = json.dumps([batch.pde, batch.params], sort_keys=True, default=str)
        if key not in self._pdes:
            fields = PDES[batch.pde].model_fields
            pde = get_pde(batch.pde, **{k: v for k, v in batch.params.items() if k in fields})
            if not hasattr(pde, self.method):
                raise ConfigError(f"loss term {self.kind}: the {batch.pde} PDE defines no {self.method}; use the "
                                  f"terms it has ({', '.join(k for k, m in self.METHODS.items() if hasattr(pde, m))})")
            self._pdes[key] = pde
        return self._pdes[key]

    def refined(self, batch: Batch) -> Batch:
        """``batch`` on the grid ``refine`` times finer (inputs interpolated, no targets)."""
        from oplearn.data.pdes import PDES
        from oplearn.data.pdes.periodic import PeriodicEvolution

        if batch.kind != "grid" or batch.spacing is None:
            raise ConfigError(f"loss term {self.kind}: refine works on grid data; these are {batch.kind} data")
        shape, k, inputs = batch.inputs.shape[2:], self.refine, batch.inputs
        if isinstance(PDES.get(batch.pde), type) and issubclass(PDES[batch.pde], PeriodicEvolution):
            for axis, n in enumerate(shape):  # periodic: zero-pad the spectrum (an even n's Nyquist mode split)
                dim = 2 + axis
                spectrum = torch.fft.rfft(inputs, dim=dim)
                if n % 2 == 0:
                    spectrum = torch.cat([spectrum.narrow(dim, 0, n // 2), spectrum.narrow(dim, n // 2, 1) / 2], dim)
                inputs = torch.fft.irfft(spectrum, n=n * k, dim=dim) * k
            spacing = tuple(1.0 / (n * k) for n in shape)
        else:
            nodes = all(abs(h - 1.0 / (n - 1)) < 1e-9 * h for h, n in zip(batch.spacing, shape))
            size = tuple((n - 1) * k + 1 if nodes else n * k for n in shape)
            if self.interpolation == "nearest":
                inputs = F.interpolate(inputs, size=size, mode="nearest-exact")
            else:
                mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(shape)]
                inputs = F.interpolate(inputs, size=size, mode=mode, align_corners=nodes)
            spacing = tuple(1.0 / (n - 1) if nodes else 1.0 / n for n in size)
        return dataclasses.replace(batch, inputs=inputs, targets=None, spacing=spacing)

    def __call__(self, prediction: torch.Tensor, batch: Batch, predict=None) -> torch.Tensor:
        if self.refine > 1:
            if predict is None:
                raise ConfigError(f"loss term {self.kind}: refine needs the model, which this task does not hand "
                                  "to its loss (train.task supervised or space_time); drop refine")
            batch = self.refined(batch)
            prediction = predict(batch)
        pde = self.equation(batch)
        residual = getattr(pde, self.method)(prediction, batch)
        if self.order:
            if not hasattr(pde, "residual_squares"):
                raise ConfigError(f"loss term pde: norm h-{self.order} needs the inverse Laplacian of the "
                                  f"residual's grid, which the {batch.pde} PDE does not define; use norm l2")
            return pde.residual_squares(residual.float(), batch, self.order)
        squares = residual.float().square().flatten(1)
        if batch.mask is not None and residual.shape[-1] == batch.mask.shape[-1]:  # padded points are zero
            count = batch.mask.sum(-1) * (squares.shape[1] // batch.mask.shape[-1])
            return squares.sum(1) / count
        return squares.mean(1)


for _kind in PhysicsTerm.METHODS:
    register_term(_kind)(lambda _k=_kind, **options: PhysicsTerm(_k, **options))


def relative_l2(prediction: torch.Tensor, batch: Batch) -> torch.Tensor:
    """``(batch,)`` relative L2 errors over the real points: the score every run reports."""
    return relative_lp_loss(batch.masked(prediction), batch.targets, reduction="none")


class Objective:
    """``sum_j w_j term_j``: built from ``train.loss`` (a name or a list of ``{name, weight, ...}``) and
    ``train.balance`` (how the weights w_j move; fixed by default).

    Under a balancing scheme the weights are updated at each call made with gradients enabled (each training
    step) from the batch means of the terms,
    and, for gradient_norm, from each term's gradient norm over the parameters of the model given to
    :meth:`attach`.
    """

    def __init__(self, terms: list[tuple[float, LossTerm]], balance: str | dict = "fixed"):
        if not terms:
            raise ConfigError("train.loss needs at least one term")
        self.terms = terms
        options = {"scheme": balance} if isinstance(balance, str) else dict(balance)
        scheme = str(options.pop("scheme", "fixed"))
        self.balancer = None if scheme == "fixed" and not options else make_balancer(
            scheme, [w for w, _ in terms], **options)
        self.parameters: list[torch.nn.Parameter] | None = None
        self.weights = torch.tensor([w for w, _ in terms])  # the latest weights (balanced or configured)

    def attach(self, model: torch.nn.Module) -> None:
        """The model whose parameters the gradient-norm scheme differentiates each term by."""
        self.parameters = [p for p in model.parameters() if p.requires_grad]

    def state(self) -> dict[str, torch.Tensor]:
        """The balancer's state, for exact resume (``loss.`` keys; empty when the weights are fixed)."""
        return {} if self.balancer is None else {f"loss.{k}": v for k, v in self.balancer.state_dict().items()}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        if self.balancer is not None:
            self.balancer.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("loss.")})

    @classmethod
    def from_config(cls, loss, balance: str | dict = "fixed") -> "Objective":
        entries = [{"name": loss}] if isinstance(loss, str) else [dict(e) for e in loss]
        terms = []
        for entry in entries:
            name, weight = str(entry.pop("name")).lower(), float(entry.pop("weight", 1.0))
            if name not in TERMS:
                raise ConfigError(f"unknown loss {name!r}; choose one of {', '.join(TERMS)}")
            try:
                terms.append((weight, TERMS[name](**entry)))
            except TypeError:
                raise ConfigError(f"loss {name} takes no option(s) {', '.join(entry)}") from None
        return cls(terms, balance)

    def __call__(self, prediction: torch.Tensor, batch: Batch, predict=None, steps: int | None = None) -> torch.Tensor:
        """``(B,)`` losses; ``predict(batch) -> prediction`` lets a term call the model on other inputs (a
        physics term's finer grid). ``steps = T``: the prediction is T snapshots of equal channels
        ``(B, T*C, ...)`` (a recurrent rollout); each data term is the sum of its losses on the snapshots, each
        physics term sees the whole trajectory at once."""
        values = [term(prediction, batch, predict) if isinstance(term, PhysicsTerm) else
                  self._per_snapshot(term, prediction, batch, steps) for _, term in self.terms]
        if self.balancer is not None and torch.is_grad_enabled():
            self.weights = self._balanced(values)
        total = None
        for weight, value in zip(self.weights.tolist(), values):
            value = value if weight == 1.0 else weight * value
            total = value if total is None else total + value
        return total

    @staticmethod
    def _per_snapshot(term, prediction: torch.Tensor, batch: Batch, steps: int | None) -> torch.Tensor:
        """A data term on the whole prediction, or summed over its ``steps`` snapshots."""
        if steps is None:
            return term(prediction, batch)
        c = prediction.shape[1] // steps
        return sum(term(prediction[:, t * c:(t + 1) * c], batch.with_targets(batch.targets[:, t * c:(t + 1) * c]))
                   for t in range(steps))

    def _balanced(self, values: list[torch.Tensor]) -> torch.Tensor:
        means = torch.stack([v.mean() for v in values])
        norms = None
        if self.balancer.needs_gradient_norms:
            if self.parameters is None:
                raise ConfigError("train.balance gradient_norm needs the model: call Objective.attach(model)")
            norms = []
            for mean in means:
                grads = torch.autograd.grad(mean, self.parameters, retain_graph=True, allow_unused=True)
                norms.append(torch.sqrt(sum(g.float().square().sum() for g in grads if g is not None)))
            norms = torch.stack(norms).detach()
        return self.balancer(means.detach().float(), norms).cpu()
