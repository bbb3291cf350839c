"""Univariate bases of :class:`~oplearn.layers.kan.KANLinear`, one small class each.

A basis maps ``x (..., in)`` to ``B(x) (..., in, n_basis)``: ``n_basis`` functions
of every input coordinate. KANLinear contracts the expansion with its
coefficients in one GEMM, whatever the basis; a new basis is a new class here,
not a branch there. Each class declares the options it takes with their
defaults (``options``) and the smallest ``order`` it accepts.

| basis | functions of ``x_i`` | count |
| --- | --- | --- |
| bspline | B-splines of degree ``order`` on ``grid_size`` intervals (uniform: closed form, else Cox-de Boor) | G + k |
| chebyshev | ``T_n(tanh x)``, ``n = 0..order`` | k + 1 |
| fourier | ``cos, sin(2 pi n (x - a)/(b - a))``, ``n = 1..grid_size`` | 2G |
| rbf | ``exp(-((x - c_j)/h)^2)`` at the ``G + 1`` grid points, ``h`` the mean spacing | G + 1 |
| relu_power | ``(relu(x - s_i) relu(e_i - x))^2`` on ``k + 1`` grid intervals (ReLU-KAN) | G + k |
| truncated_power | ``u^0..u^k`` and ``(u - t_j)_+^k`` at interior knots (TruKAN), ``u`` in [-1, 1] | G + k |
| rational | group-rational ``P(x)/(1 + abs(Q(x)))`` (GR-KAN); no SiLU base path by default | 1 |

Grid bases keep per-input knots ``(in, G + 2e + 1)`` (``e`` extra knots on each
side) in a buffer, so the grid can be moved to the data and refined (see
``KANLinear.update_grid`` and ``extend_grid``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from oplearn.errors import ConfigError
from oplearn.layers.kan_bspline import BSplineExpansion, UniformBSplineExpansion, cox_de_boor
from oplearn.layers.rational import group_rational, silu_fit


class Basis(nn.Module):
    """``x (..., in) -> B(x) (..., in, n_basis)``."""

    name: ClassVar[str]
    options: ClassVar[dict[str, Any]]
    min_order: ClassVar[int] = 0
    base_path: ClassVar[bool] = True  # whether KANLinear adds W silu(x) by default
    n_basis: int

    def grid_range(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Per-input interval ``(low (in,), high (in,))`` the functions are meant for, or None."""
        return None


def extend_knots(interior: torch.Tensor, extra: int) -> torch.Tensor:
    """``(in, G+1)`` grid -> ``(in, G+1+2*extra)``, extended by the mean spacing ``(b - a)/G`` on each side."""
    step = (interior[:, -1:] - interior[:, :1]) / (interior.shape[1] - 1)
    offsets = torch.arange(1, extra + 1, dtype=interior.dtype, device=interior.device) * step
    return torch.cat([interior[:, :1] - offsets.flip(-1), interior, interior[:, -1:] + offsets], dim=1)


class GridBasis(Basis):
    """Functions placed on per-input knots; ``extra_knots`` per side depends on the order."""

    def __init__(self, in_features: int, grid_size: int, grid_range: tuple[float, float], order: int = 0):
        super().__init__()
        self.order = order
        interior = torch.linspace(float(grid_range[0]), float(grid_range[1]), grid_size + 1).expand(in_features, -1)
        self.register_buffer("knots", extend_knots(interior, self.extra_knots))

    @property
    def extra_knots(self) -> int:
        return self.order

    @property
    def grid_size(self) -> int:
        return self.knots.shape[1] - 1 - 2 * self.extra_knots

    @property
    def interior(self) -> torch.Tensor:
        """Grid points ``(in, G + 1)`` without the extension."""
        return self.knots[:, self.extra_knots:self.knots.shape[1] - self.extra_knots]

    def grid_range(self):
        return self.interior[:, 0], self.interior[:, -1]

    def with_interior(self, interior: torch.Tensor) -> GridBasis:
        """A copy of this basis on the grid ``interior (in, G' + 1)`` (strictly increasing rows)."""
        options = {key: getattr(self, key) for key in self.options if key not in ("grid_size", "grid_range")}
        new = type(self)(interior.shape[0], grid_size=interior.shape[1] - 1, grid_range=(-1.0, 1.0), **options)
        new.knots = extend_knots(interior, new.extra_knots)
        return new


class BSpline(GridBasis):
    """B-splines of degree ``order`` on ``grid_size`` intervals of ``grid_range``; ``order`` extra knots per side.

    Evaluated in closed form while the knots are uniform (the default, kept by ``extend_grid``),
    by the Cox-de Boor recursion otherwise (after ``update_grid``).
    """

    name = "bspline"
    options = {"grid_size": 5, "order": 3, "grid_range": (-1.0, 1.0)}
    _uniform_key: tuple | None = None  # the knots is_uniform() last looked at

    @property
    def n_basis(self) -> int:
        return self.grid_size + self.order

    def is_uniform(self) -> bool:
        """Whether every row of ``knots`` is equally spaced to float32 rounding; cached until the knots change."""
        knots = self.knots
        key = (knots.data_ptr(), knots._version, knots.dtype, knots.device, tuple(knots.shape))
        if self._uniform_key != key:
            with torch.no_grad():
                spacing = knots.diff(dim=1)
                step = (knots[:, -1:] - knots[:, :1]) / spacing.shape[1]
                eps = max(torch.finfo(knots.dtype).eps, torch.finfo(torch.float32).eps)
                tolerance = 8 * eps * knots.abs().amax(1, keepdim=True)
                self._uniform = bool(((spacing - step).abs() <= tolerance).all() and (step > 0).all())
            self._uniform_key = key
        return self._uniform

    def forward(self, x):
        if _under_function_transform():
            # torch.func (vmap, jacrev, jvp) cannot batch the hand-written backward passes below,
            # which use in-place buffers; the plain recursion is made of ordinary differentiable ops.
            return cox_de_boor(x, self.knots, self.order)[0]
        expansion = UniformBSplineExpansion if self.is_uniform() else BSplineExpansion
        return expansion.apply(x, self.knots, self.order)


def _under_function_transform() -> bool:
    """Whether a torch.func transform (vmap, grad, jvp, jacrev) is running."""
    return torch._C._functorch.peek_interpreter_stack() is not None


class RadialGaussian(GridBasis):
    """Gaussian bumps ``exp(-((x - c_j)/h)^2)`` centred at the grid points, ``h = (b - a)/G`` (FastKAN)."""

    name = "rbf"
    options = {"grid_size": 7, "grid_range": (-1.0, 1.0)}

    @property
    def n_basis(self) -> int:
        return self.grid_size + 1

    def forward(self, x):
        centres = self.knots
        width = (centres[:, -1:] - centres[:, :1]) / self.grid_size
        return torch.exp(-(((x.unsqueeze(-1) - centres) / width) ** 2))


class ReluPower(GridBasis):
    """``(relu(x - t_i) relu(t_i+k+1 - x))^2 (2/(t_i+k+1 - t_i))^4`` (ReLU-KAN).

    Bumps of height 1, each over ``k + 1`` grid intervals; ``order`` extra knots per side.
    """

    name = "relu_power"
    options = {"grid_size": 5, "order": 3, "grid_range": (-1.0, 1.0)}

    @property
    def n_basis(self) -> int:
        return self.grid_size + self.order

    def forward(self, x):
        start, end = self.knots[:, :-(self.order + 1)], self.knots[:, self.order + 1:]
        x = x.unsqueeze(-1)
        bump = torch.relu(x - start) * torch.relu(end - x) * (2 / (end - start)) ** 2
        return bump * bump


class TruncatedPower(GridBasis):
    """``u^0..u^k`` and ``(u - t_j)_+^k`` at the interior knots, ``u`` the grid range mapped to [-1, 1] (TruKAN).

    Spans the same splines as the B-splines of that grid on the grid range, in a cheaper (less well conditioned) basis.
    """

    name = "truncated_power"
    options = {"grid_size": 5, "order": 3, "grid_range": (-1.0, 1.0)}
    min_order = 1

    @property
    def extra_knots(self) -> int:
        return 0

    @property
    def n_basis(self) -> int:
        return self.grid_size + self.order

    def forward(self, x):
        low, high = self.knots[:, :1], self.knots[:, -1:]
        to_unit = lambda t: (2 * t - low - high) / (high - low)  # noqa: E731
        u = to_unit(x.unsqueeze(-1))
        powers = [torch.ones_like(u)]
        for _ in range(self.order):
            powers.append(powers[-1] * u)
        truncated = torch.relu(u - to_unit(self.knots[:, 1:-1])) ** self.order
        return torch.cat(powers + [truncated], dim=-1)


class Chebyshev(Basis):
    """``T_n(tanh x)`` for ``n = 0..order``, by ``T_n+1 = 2u T_n - T_n-1``; defined for every real x."""

    name = "chebyshev"
    options = {"order": 4}

    def __init__(self, in_features: int, order: int):
        super().__init__()
        self.order = order
        self.n_basis = order + 1

    def forward(self, x):
        u = torch.tanh(x)
        values = [torch.ones_like(u), u][: self.order + 1]
        for _ in range(2, self.order + 1):
            values.append(2 * u * values[-1] - values[-2])
        return torch.stack(values, dim=-1)


class Fourier(Basis):
    """``cos(2 pi n s), sin(2 pi n s)``, ``s = (x - a)/(b - a)``, ``n = 1..grid_size``: periodic with the grid range."""

    name = "fourier"
    options = {"grid_size": 5, "grid_range": (-1.0, 1.0)}

    def __init__(self, in_features: int, grid_size: int, grid_range: tuple[float, float]):
        super().__init__()
        self.in_features, self.grid_size = in_features, grid_size
        self.low, self.high = float(grid_range[0]), float(grid_range[1])
        self.n_basis = 2 * grid_size

    def grid_range(self):
        full = lambda value: torch.full((self.in_features,), value)  # noqa: E731
        return full(self.low), full(self.high)

    def forward(self, x):
        frequencies = torch.arange(1, self.grid_size + 1, dtype=x.dtype, device=x.device)
        angles = (2 * math.pi / (self.high - self.low)) * (x - self.low).unsqueeze(-1) * frequencies
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class GroupRationalBasis(Basis):
    """One learnable rational ``P_g/(1 + abs(Q_g))`` of type ``[order/order-1]`` per channel group (GR-KAN).

    ``groups`` must divide ``in_features`` (default: the largest of 8, 4, 2, 1 that does).
    Initialised to approximate SiLU, so the layer starts as ``Linear(silu(x))``.
    """

    name = "rational"
    options = {"order": 5, "groups": None}
    min_order = 1
    base_path = False
    n_basis = 1

    def __init__(self, in_features: int, order: int, groups: int | None):
        super().__init__()
        groups = math.gcd(8, in_features) if groups is None else int(groups)
        if groups < 1 or in_features % groups:
            raise ConfigError(f"groups={groups} must be a positive divisor of in_features={in_features}")
        self.order, self.groups = order, groups
        numerator, denominator = silu_fit(order)
        self.numerator = nn.Parameter(torch.tensor(numerator, dtype=torch.float32).repeat(groups, 1))
        self.denominator = nn.Parameter(torch.tensor(denominator, dtype=torch.float32).reshape(1, -1).repeat(groups, 1))

    def forward(self, x):
        return group_rational(x, self.numerator, self.denominator).unsqueeze(-1)


BASES: dict[str, type[Basis]] = {
    cls.name: cls
    for cls in (BSpline, Chebyshev, Fourier, RadialGaussian, ReluPower, TruncatedPower, GroupRationalBasis)
}


def make_basis(name: str, in_features: int, **given) -> Basis:
    """Build basis ``name`` from the options that are not None; defaults fill the rest.

    Raises ConfigError for an unknown basis, an option the basis does not take,
    ``grid_size < 1``, ``order`` below the basis' minimum or an empty grid range.
    """
    if name not in BASES:
        raise ConfigError(f"unknown KAN basis '{name}'; choose one of: {', '.join(BASES)}")
    cls = BASES[name]
    given = {key: value for key, value in given.items() if value is not None}
    extra = sorted(set(given) - set(cls.options))
    if extra:
        raise ConfigError(f"KAN basis '{name}' does not take {', '.join(extra)}; it takes: {', '.join(cls.options)}")
    options = {**cls.options, **given}
    if "grid_size" in options and (int(options["grid_size"]) != options["grid_size"] or options["grid_size"] < 1):
        raise ConfigError(f"grid_size must be a positive integer, got {options['grid_size']}")
    if "order" in options and (int(options["order"]) != options["order"] or options["order"] < cls.min_order):
        raise ConfigError(f"order must be an integer >= {cls.min_order} for KAN basis '{name}', got {options['order']}")
    if "grid_range" in options:
        low, high = (float(v) for v in options["grid_range"])
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ConfigError(f"grid_range must be two finite numbers low < high, got {options['grid_range']}")
        options["grid_range"] = (low, high)
    for key in ("grid_size", "order"):
        if key in options:
            options[key] = int(options[key])
    return cls(in_features, **options)
