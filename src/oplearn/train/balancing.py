"""Loss balancing: per-step weights for the terms of a multi-term (physics-informed) objective.

A balancer is called once per training step with the detached mean loss of each of the T terms,
``losses (T,)``, and (for the gradient-norm scheme) the L2 norm of each term's gradient with respect to the
model parameters, ``gradient_norms (T,)``; it returns the weights ``w (T,)`` to use this step (detached,
float32, on the device of ``losses``), so the step minimizes ``sum_i w_i L_i``. ``c_i`` below are the
configured weights (non-negative, at least one positive). Balancers keep their history (previous losses,
running averages, a random generator) in float64 and save it with :meth:`Balancer.state_dict`, so a run
resumed from a checkpoint gets the same weights as an uninterrupted one.

``make_balancer(scheme, weights, **options)`` builds one:

``fixed``
    ``w_i = c_i`` at every step.

``softadapt`` (Heydari, Thompson & Mehmood 2019, "SoftAdapt")
    ``s_i = L_i(t) - L_i(t-1)``, or the rate ``s_i / L_i(t-1)`` when ``normalized`` (default True);
    ``w_i = C * c_i softmax(beta s)_i / sum_j c_j softmax(beta s)_j`` with ``C = sum_j c_j``, so the weights
    always add up to the configured total and the term whose loss decreases slowest gets the largest
    share. First step: ``w = c``. Options: ``beta`` (default 0.1; negative favours the fastest term),
    ``normalized``.

``relobralo`` (Bischof & Kraus 2021, "Relative Loss Balancing with Random Lookback")
    ``bal_i(t, t') = T softmax_i(L_i(t) / (tau L_i(t')))``,
    ``lambda_i(t) = alpha (rho lambda_i(t-1) + (1 - rho) bal_i(t, 0)) + (1 - alpha) bal_i(t, t-1)``,
    ``lambda(0) = 1``, ``rho ~ Bernoulli(expected_rho)`` drawn every step from a ``torch.Generator``
    seeded with ``seed`` (its state is part of :meth:`state_dict`); ``w_i = c_i lambda_i``. Each lambda is
    a convex combination of vectors that add up to T, so ``sum_i lambda_i = T`` at every step. Options:
    ``alpha`` in [0, 1] (default 0.999), ``tau`` > 0 (0.1), ``expected_rho`` in [0, 1] (0.999), ``seed``
    (0).

``gradient_norm`` (Wang, Teng & Perdikaris 2021, learning-rate annealing, mean variant)
    ``hat_i = (sum_j g_j / T) / g_i`` from the gradient norms ``g``; ``lambda <- alpha lambda + (1 - alpha)
    hat``, ``lambda = hat`` on the first step; ``w_i = c_i lambda_i``. At ``alpha = 0`` every weighted term
    has gradient norm ``w_i g_i = c_i mean_j(g_j)`` (equal norms for equal ``c``). Option: ``alpha`` in
    [0, 1) (default 0.9). ``needs_gradient_norms`` is True for this scheme only.

Zero and non-finite values never make NaN weights: gradient-norm denominators are clamped to at least
``EPS`` (1e-12, so ``hat_i <= mean(g) / EPS``), loss denominators to the smallest normal float (so ratios
of tiny but converged losses stay exact); a non-finite loss or gradient norm counts as "no information
this step" (that term's loss change is taken as 0 in SoftAdapt, its ratio as 1 in ReLoBRaLo, its lambda is
left as it was in the gradient-norm scheme, and it is not stored as a previous loss); softmax arguments are
clipped to +-1e30. Weights of terms with ``c_i > 0`` are positive (unless a softmax underflows). Losses are
assumed non-negative, as mean losses are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from oplearn.errors import ConfigError, ShapeError

EPS = 1e-12
"""Smallest gradient norm (and mean gradient norm) divided by: zero norms give large finite weights, not NaN."""

_BIG = 1e30


def _state_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


class Balancer:
    """Weights for T loss terms, one call per training step: ``balancer(losses (T,)) -> weights (T,)``.

    Subclasses implement :meth:`_weights` (float64 ``losses`` with non-finite entries kept, a finite mask)
    and name their history tensors in ``_state_names``.
    """

    scheme = "base"
    needs_gradient_norms = False
    _state_names: tuple[str, ...] = ()

    def __init__(self, weights: Sequence[float]):
        self.configured = _check_weights(self.scheme, weights)
        self.n_terms = len(self.configured)
        self.step = 0
        self._device = torch.device("cpu")
        self._dtype = torch.float64
        self._c = torch.tensor(self.configured, dtype=self._dtype)

    # -- the per-step call -------------------------------------------------------------------------

    def __call__(self, losses: torch.Tensor, gradient_norms: torch.Tensor | None = None) -> torch.Tensor:
        """``losses (T,)`` detached mean loss of each term, ``gradient_norms (T,)`` (gradient-norm scheme).

        Returns ``(T,)`` float32 weights on ``losses.device``, detached; advances the balancer's state.
        """
        losses = self._check_vector("losses", losses)
        self._move(losses.device)
        losses = losses.detach().to(self._dtype)
        if self.needs_gradient_norms:
            if gradient_norms is None:
                raise ConfigError(f"loss balancing {self.scheme} needs gradient_norms, the L2 norm of each "
                                  "term's gradient; pass them or choose another scheme")
            gradient_norms = self._check_vector("gradient_norms", gradient_norms)
            gradient_norms = gradient_norms.detach().to(device=self._device, dtype=self._dtype)
        with torch.no_grad():
            weights = self._weights(losses, gradient_norms)
        self.step += 1
        return weights.to(torch.float32)

    def _weights(self, losses: torch.Tensor, gradient_norms: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def _check_vector(self, name: str, value) -> torch.Tensor:
        value = torch.as_tensor(value)
        if value.shape != (self.n_terms,):
            raise ShapeError(f"loss balancing got {name} of shape {tuple(value.shape)} for {self.n_terms} "
                             f"terms; pass a ({self.n_terms},) tensor, one value per term")
        if not (value.is_floating_point() or value.dtype in (torch.int32, torch.int64)):
            raise ShapeError(f"loss balancing got {name} of dtype {value.dtype}; pass real numbers")
        return value

    def _move(self, device: torch.device) -> None:
        if device == self._device:
            return
        self._device, self._dtype = device, _state_dtype(device)
        self._c = self._c.to(device=device, dtype=self._dtype)
        for name in self._state_names:
            setattr(self, name, getattr(self, name).to(device=device, dtype=self._dtype))

    # -- resume --------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The history as tensors (copies): ``step`` and the scheme's running values."""
        state = {"step": torch.tensor(self.step, dtype=torch.int64)}
        for name in self._state_names:
            state[name.lstrip("_")] = getattr(self, name).detach().clone()
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict` output; the next call then returns what the saved balancer would."""
        expected = {"step", *(name.lstrip("_") for name in self._state_names)}
        if set(state) != expected:
            raise ConfigError(f"loss balancing state has keys {sorted(state)} but scheme {self.scheme} saves "
                              f"{sorted(expected)}; resume with the scheme the run was started with")
        for name in self._state_names:
            value = torch.as_tensor(state[name.lstrip("_")])
            current = getattr(self, name)
            if value.shape != current.shape:
                raise ConfigError(f"loss balancing state {name.lstrip('_')} has shape {tuple(value.shape)}, "
                                  f"expected {tuple(current.shape)}; resume with the same number of loss terms")
            setattr(self, name, value.detach().to(device=self._device, dtype=current.dtype).clone())
        self.step = int(state["step"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weights={self.configured}, step={self.step})"


class FixedBalancer(Balancer):
    """``w_i = c_i`` at every step."""

    scheme = "fixed"

    def _weights(self, losses, gradient_norms):
        return self._c.clone()


class SoftAdaptBalancer(Balancer):
    """SoftAdapt: ``w = C c softmax(beta s) / sum(c softmax(beta s))``, ``s`` the (relative) loss changes."""

    scheme = "softadapt"
    _state_names = ("_previous", "_has_previous")

    def __init__(self, weights, beta: float = 0.1, normalized: bool = True):
        super().__init__(weights)
        self.beta = _real(self.scheme, "beta", beta)
        self.normalized = _flag(self.scheme, "normalized", normalized)
        self._previous = torch.zeros(self.n_terms, dtype=self._dtype)
        self._has_previous = torch.zeros(self.n_terms, dtype=self._dtype)   # 1.0 once a finite loss is seen

    def _weights(self, losses, gradient_norms):
        finite = torch.isfinite(losses)
        usable = finite & (self._has_previous > 0)
        change = torch.where(usable, losses - self._previous, torch.zeros_like(losses))
        if self.normalized:
            change = change / _positive(self._previous.abs())
        logits = torch.where(self._c > 0, _clip(self.beta * change), torch.full_like(change, -math.inf))
        share = self._c * torch.softmax(logits, dim=0)   # softmax over the weighted terms only: sum > 0
        weights = share * (self._c.sum() / share.sum().clamp_min(EPS * EPS))
        if self.step == 0:
            weights = self._c.clone()
        self._previous = torch.where(finite, losses, self._previous)
        self._has_previous = torch.where(finite, torch.ones_like(losses), self._has_previous)
        return weights


class ReLoBRaLoBalancer(Balancer):
    """ReLoBRaLo: ``lambda = alpha (rho lambda + (1-rho) bal(t,0)) + (1-alpha) bal(t,t-1)``, ``w = c lambda``."""

    scheme = "relobralo"
    _state_names = ("_lambda", "_first", "_previous", "_has_loss", "_generator_state")

    def __init__(self, weights, alpha: float = 0.999, tau: float = 0.1, expected_rho: float = 0.999,
                 seed: int = 0):
        super().__init__(weights)
        self.alpha = _in_range(self.scheme, "alpha", alpha, 0.0, 1.0, closed_top=True)
        self.tau = _real(self.scheme, "tau", tau)
        if self.tau <= 0:
            raise ConfigError(f"loss balancing relobralo needs tau > 0 (the softmax temperature), got {tau}")
        self.expected_rho = _in_range(self.scheme, "expected_rho", expected_rho, 0.0, 1.0, closed_top=True)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"loss balancing relobralo option seed must be an integer, got {seed!r}")
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)
        self._lambda = torch.ones(self.n_terms, dtype=self._dtype)
        self._first = torch.zeros(self.n_terms, dtype=self._dtype)      # L(0): first finite loss of each term
        self._previous = torch.zeros(self.n_terms, dtype=self._dtype)   # L(t-1): last finite loss
        self._has_loss = torch.zeros(self.n_terms, dtype=self._dtype)

    # the generator lives outside the tensor attributes; expose its state as one of them
    @property
    def _generator_state(self) -> torch.Tensor:
        return self._generator.get_state()

    @_generator_state.setter
    def _generator_state(self, value: torch.Tensor) -> None:
        self._generator.set_state(value.to(device="cpu", dtype=torch.uint8))

    def _move(self, device):
        if device == self._device:
            return
        self._device, self._dtype = device, _state_dtype(device)
        self._c = self._c.to(device=device, dtype=self._dtype)
        for name in ("_lambda", "_first", "_previous", "_has_loss"):
            setattr(self, name, getattr(self, name).to(device=device, dtype=self._dtype))

    def load_state_dict(self, state):
        state = dict(state)
        if "generator_state" in state:
            generator_state = torch.as_tensor(state["generator_state"])
            if generator_state.shape != self._generator_state.shape:
                raise ConfigError("loss balancing relobralo state generator_state has the wrong size; resume "
                                  "with a state saved by this version of oplearn")
        super().load_state_dict(state)

    def _balance(self, losses, reference, finite):
        ratio = losses / (self.tau * _positive(reference))
        ratio = torch.where(finite, ratio, torch.full_like(ratio, 1.0 / self.tau))
        return self.n_terms * torch.softmax(_clip(ratio), dim=0)

    def _weights(self, losses, gradient_norms):
        finite = torch.isfinite(losses)
        known = self._has_loss > 0
        first = torch.where(known, self._first, losses)
        previous = torch.where(known, self._previous, losses)
        rho = float(torch.rand((), generator=self._generator, dtype=torch.float64) < self.expected_rho)
        to_first, to_previous = self._balance(losses, first, finite), self._balance(losses, previous, finite)
        self._lambda = (self.alpha * (rho * self._lambda + (1.0 - rho) * to_first)
                        + (1.0 - self.alpha) * to_previous)
        self._first = torch.where(known | ~finite, self._first, losses)
        self._previous = torch.where(finite, losses, self._previous)
        self._has_loss = torch.where(finite, torch.ones_like(losses), self._has_loss)
        return self._c * self._lambda


class GradientNormBalancer(Balancer):
    """Learning-rate annealing (mean variant): ``lambda <- alpha lambda + (1-alpha) mean(g) / g``."""

    scheme = "gradient_norm"
    needs_gradient_norms = True
    _state_names = ("_lambda",)

    def __init__(self, weights, alpha: float = 0.9):
        super().__init__(weights)
        self.alpha = _in_range(self.scheme, "alpha", alpha, 0.0, 1.0, closed_top=False)
        self._lambda = torch.ones(self.n_terms, dtype=self._dtype)

    def _weights(self, losses, gradient_norms):
        finite = torch.isfinite(gradient_norms)
        norms = torch.where(finite, gradient_norms.abs(), torch.zeros_like(gradient_norms))
        mean = norms.sum() / finite.sum().clamp_min(1)
        target = torch.where(finite, mean.clamp_min(EPS) / norms.clamp_min(EPS), self._lambda)
        alpha = 0.0 if self.step == 0 else self.alpha
        self._lambda = alpha * self._lambda + (1.0 - alpha) * target
        return self._c * self._lambda


SCHEMES: dict[str, type[Balancer]] = {
    "fixed": FixedBalancer,
    "softadapt": SoftAdaptBalancer,
    "relobralo": ReLoBRaLoBalancer,
    "gradient_norm": GradientNormBalancer,
}
"""Balancer classes by scheme name."""

_OPTIONS = {
    "fixed": (),
    "softadapt": ("beta", "normalized"),
    "relobralo": ("alpha", "tau", "expected_rho", "seed"),
    "gradient_norm": ("alpha",),
}


def make_balancer(scheme: str, weights: Sequence[float], **options) -> Balancer:
    """The balancer ``scheme`` (fixed, softadapt, relobralo, gradient_norm) for configured ``weights (T,)``.

    ``options`` are the scheme's (see the module docstring); every mistake is a one-line ConfigError.
    """
    if not isinstance(scheme, str) or scheme.strip().lower() not in SCHEMES:
        raise ConfigError(f"unknown loss balancing scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    scheme = scheme.strip().lower()
    unknown = [name for name in options if name not in _OPTIONS[scheme]]
    if unknown:
        valid = ", ".join(_OPTIONS[scheme]) or "none"
        raise ConfigError(f"loss balancing {scheme} has no option(s) {', '.join(map(str, unknown))}; "
                          f"its options are: {valid}")
    return SCHEMES[scheme](weights, **options)


# -- validation helpers ------------------------------------------------------------------------------


def _check_weights(scheme: str, weights) -> list[float]:
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().cpu().reshape(-1).tolist()
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise ConfigError(f"loss balancing {scheme} needs a list of weights, one per loss term, got {weights!r}")
    if len(weights) == 0:
        raise ConfigError(f"loss balancing {scheme} needs at least one weight (one per loss term), got none")
    values = []
    for weight in weights:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ConfigError(f"loss balancing weights must be finite numbers, got {weight!r}")
        if weight < 0:
            raise ConfigError(f"loss balancing weights must be >= 0, got {weight}; drop the term or set it to 0")
        values.append(float(weight))
    if not any(value > 0 for value in values):
        raise ConfigError(f"loss balancing needs at least one positive weight, got {values}")
    return values


def _real(scheme: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"loss balancing {scheme} option {name} must be a finite number, got {value!r}")
    return float(value)


def _in_range(scheme: str, name: str, value, low: float, high: float, closed_top: bool) -> float:
    value = _real(scheme, name, value)
    if not (low <= value <= high if closed_top else low <= value < high):
        interval = f"[{low:g}, {high:g}{']' if closed_top else ')'}"
        raise ConfigError(f"loss balancing {scheme} option {name} must be in {interval}, got {value:g}")
    return value


def _flag(scheme: str, name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"loss balancing {scheme} option {name} must be true or false, got {value!r}")
    return value


def _positive(values: torch.Tensor) -> torch.Tensor:
    """Loss denominators: zeros become the smallest normal number (ratios of tiny losses stay exact)."""
    return values.clamp_min(torch.finfo(values.dtype).tiny)


def _clip(values: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(values, nan=0.0, posinf=_BIG, neginf=-_BIG).clamp(-_BIG, _BIG)
