"""Registry of the PDEs that generate operator-learning data sets.

Each entry is a frozen pydantic model whose fields are the PDE's parameters
(unknown names are errors) and which provides:

- ``name`` (ClassVar str) and ``steady`` (ClassVar bool);
- ``shapes(resolution) -> {dataset: per-sample shape}``: ``inputs``/``outputs``
  ``(C, *S)`` for steady problems, ``trajectories`` ``(T, C, *S)`` otherwise;
- ``extra(resolution) -> {dataset: array}``: whole datasets written once,
  ``{"times": (T,) float64}`` for time-dependent problems, ``{}`` otherwise;
- ``solve_batch(seed, indices, resolution, device) -> {dataset: array}``:
  float32 arrays with a leading axis of ``len(indices)``. The random input of
  sample ``i`` depends only on ``(seed, i)`` (noise from
  ``np.random.default_rng([seed, i])``), so any batching gives the same data.
  A solver that produces NaN/inf raises ``SolverError`` naming the sample.
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from oplearn.data.pdes.advection import Advection
from oplearn.data.pdes.burgers import Burgers
from oplearn.data.pdes.darcy import DarcyFlow
from oplearn.data.pdes.heat import Heat
from oplearn.data.pdes.navier_stokes import NavierStokes
from oplearn.errors import ConfigError

PDES: dict[str, type[BaseModel]] = {"darcy": DarcyFlow, "burgers": Burgers, "advection": Advection,
                                   "heat": Heat, "navier_stokes": NavierStokes}


def _condense(name: str, error: ValidationError, pde: type[BaseModel]) -> str:
    """One-line summary of a pydantic error: 'invalid parameter for NAME: FIELD: MESSAGE; ...'."""
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(parameters)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message += f" (valid parameters: {', '.join(pde.model_fields)})"
        problems.append(f"{field}: {message}")
    return f"invalid parameter for {name}: " + "; ".join(problems)


def get_pde(name: str, **params):
    """Build the PDE registered as ``name`` with the given parameters (defaults otherwise)."""
    if name not in PDES:
        raise ConfigError(f"unknown PDE {name!r}; choose one of: {', '.join(sorted(PDES))}")
    pde = PDES[name]
    try:
        return pde(**params)
    except ValidationError as error:
        raise ConfigError(_condense(name, error, pde)) from None


__all__ = ["PDES", "Advection", "Burgers", "DarcyFlow", "Heat", "NavierStokes", "get_pde"]
