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

Mesh PDEs (samples on their own meshes, written as format-2 mesh files by
:func:`oplearn.data.generate.generate`) are frozen pydantic models likewise,
with ClassVars ``name``, ``steady = True``, ``geometry = "mesh"``,
``cell_type`` (meshio's name, e.g. ``"triangle"``), ``dim`` (d) and
``channels`` (e.g. ``{"inputs": 1, "outputs": 1}``), and

- ``solve_sample(seed, index, resolution) -> dict``: ``points`` (N, d)
  float64, ``cells`` (M, k) int64, one (N, C) array per channel group, and
  ``"draw"`` (int). ``resolution`` sets the mesh's fineness in each PDE's own
  unit, stated in its docstring: elements per unit length (darcy_domain,
  elasticity), lattice points per side (pipe), points per surface (airfoil).
  Draw d takes its randomness from ``np.random.default_rng([seed, index, d])``;
  d = 0 first, and a failed draw (meshing failure, Newton divergence,
  non-finite values) is retried with d + 1 up to a limit, after which a
  ``SolverError`` names the sample index (see
  :func:`oplearn.data.pdes.fem.solve_with_redraws`). Bad arguments raise
  ``ConfigError``.
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from oplearn.data.pdes.advection import Advection
from oplearn.data.pdes.airfoil import Airfoil
from oplearn.data.pdes.burgers import Burgers
from oplearn.data.pdes.darcy import DarcyFlow
from oplearn.data.pdes.darcy_domain import DarcyDomain
from oplearn.data.pdes.elasticity import Elasticity
from oplearn.data.pdes.heat import Heat
from oplearn.data.pdes.navier_stokes import NavierStokes
from oplearn.data.pdes.pipe import Pipe
from oplearn.errors import ConfigError

PDES: dict[str, type[BaseModel]] = {"darcy": DarcyFlow, "burgers": Burgers, "advection": Advection,
                                   "heat": Heat, "navier_stokes": NavierStokes,
                                   "darcy_domain": DarcyDomain, "elasticity": Elasticity,
                                   "pipe": Pipe, "airfoil": Airfoil}


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


__all__ = ["PDES", "Advection", "Burgers", "DarcyDomain", "DarcyFlow", "Elasticity", "Heat", "NavierStokes",
           "get_pde"]
