"""Steady Darcy flow on the unit square.

    -div(a(x) grad u(x)) = f(x)   on (0, 1)^2,    u = 0 on the boundary.

The operator learned is a -> u. Following the FNO paper, the coefficient is
a two-valued field a = high where w >= 0 and a = low elsewhere, with w a
Neumann Gaussian random field with covariance (-Laplacian + tau^2)^(-alpha)
whose constant (k = 0) mode is zero, as in the paper's data script: w then
integrates to zero over the square and both phases cover about half of it.
"""

from __future__ import annotations

import functools
from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import BaseModel, ConfigDict, Field
from scipy.interpolate import RectBivariateSpline
from scipy.sparse.linalg import spsolve

from oplearn.data.grf import GaussianRandomField
from oplearn.errors import ConfigError, ShapeError

MIN_RESOLUTION = 8


def solve_darcy(a: np.ndarray, f: float | np.ndarray = 1.0) -> np.ndarray:
    """Solve -div(a grad u) = f with u = 0 on the boundary of the unit square.

    ``a`` has shape (n, n) on the grid x_i = i / (n - 1) (boundary included),
    indexed a[i, j] with i along x and j along y; ``f`` is a scalar or an
    (n, n) array on the same grid. Returns u, shape (n, n), float64.

    Conservative 5-point finite differences, second order: at interior node p,
    sum over the four faces e of a_e (u_p - u_neighbour) = h^2 f_p, where a_e is
    the mean of a at the two nodes sharing the face.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 3:
        raise ShapeError(f"Darcy coefficient must be a square (n, n) array with n >= 3, got {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ConfigError("Darcy coefficient must be finite and > 0 everywhere; check its low/high values")
    n = a.shape[0]
    f = np.asarray(f, dtype=np.float64)
    if f.ndim == 0:
        f = np.full(a.shape, float(f))
    if f.shape != a.shape:
        raise ShapeError(f"Darcy forcing must be a scalar or an array of shape {a.shape}, got {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ConfigError("Darcy forcing must be finite everywhere; remove NaN/inf values from f")
    return _solve_five_point(a, f)


def _solve_five_point(a: np.ndarray, f: np.ndarray) -> np.ndarray:
    """The scheme of :func:`solve_darcy` without its checks: (n, n) float64 ``a`` and ``f`` -> u."""
    n = a.shape[0]
    h = 1.0 / (n - 1)
    m = n - 2  # interior nodes per axis
    face_x = 0.5 * (a[1:, :] + a[:-1, :])  # face between (i, j) and (i+1, j), shape (n-1, n)
    face_y = 0.5 * (a[:, 1:] + a[:, :-1])  # face between (i, j) and (i, j+1), shape (n, n-1)
    inner = slice(1, n - 1)

    east, west = face_x[1 : n - 1, inner], face_x[0 : n - 2, inner]
    north, south = face_y[inner, 1 : n - 1], face_y[inner, 0 : n - 2]
    diagonal = east + west + north + south
    index = np.arange(m * m).reshape(m, m)
    # Couplings between interior neighbours; faces touching the boundary only
    # enter the diagonal because u = 0 there.
    coupling_x = -face_x[1 : n - 2, inner]
    coupling_y = -face_y[inner, 1 : n - 2]
    rows = np.concatenate([index.ravel(), index[:-1, :].ravel(), index[1:, :].ravel(),
                           index[:, :-1].ravel(), index[:, 1:].ravel()])
    cols = np.concatenate([index.ravel(), index[1:, :].ravel(), index[:-1, :].ravel(),
                           index[:, 1:].ravel(), index[:, :-1].ravel()])
    values = np.concatenate([diagonal.ravel(), coupling_x.ravel(), coupling_x.ravel(),
                             coupling_y.ravel(), coupling_y.ravel()])
    matrix = sp.csc_matrix((values, (rows, cols)), shape=(m * m, m * m))

    rhs = h**2 * f[inner, inner].ravel()
    u = np.zeros((n, n), dtype=np.float64)
    u[inner, inner] = spsolve(matrix, rhs).reshape(m, m)
    return u


def solve_darcy_as_fno_script(a_cells: np.ndarray, forcing: float = 1.0) -> np.ndarray:
    """The FNO paper's data pipeline (its solve_gwf.m): ``a`` on cell centres -> u on cell centres.

    ``a_cells`` (n, n) holds a at the centres (i + 1/2) / n. It is interpolated onto
    the nodes i / (n - 1) by tensor-product not-a-knot cubic splines (MATLAB's
    ``interp2(..., 'spline')``, extrapolated to the boundary), solved there by the
    5-point scheme of :func:`solve_darcy`, and u is interpolated back to the centres
    the same way. Across a jump of a two-valued a the spline overshoots, locally
    even below zero; the script solves with it as it is, and so does this function.
    Returns u, shape (n, n), float64 (not zero on the outermost centres).
    """
    a_cells = np.asarray(a_cells, dtype=np.float64)
    if a_cells.ndim != 2 or a_cells.shape[0] != a_cells.shape[1] or a_cells.shape[0] < 4:
        raise ShapeError(f"Darcy coefficient must be a square (n, n) array with n >= 4, got {a_cells.shape}")
    n = a_cells.shape[0]
    centres, nodes = (np.arange(n) + 0.5) / n, np.linspace(0.0, 1.0, n)
    a_nodes = spline_regrid(a_cells, centres, nodes)
    u_nodes = _solve_five_point(a_nodes, np.full((n, n), float(forcing)))
    return spline_regrid(u_nodes, nodes, centres)


def spline_regrid(values: np.ndarray, points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(n, n) samples on ``points`` x ``points`` -> (m, m) on ``targets`` x ``targets`` (inside [0, 1]).

    Tensor-product not-a-knot cubic spline interpolation, extrapolated past the
    outer points as MATLAB's ``interp2(..., 'spline')`` does: with the box [0, 1]
    and no smoothing, FITPACK's knots are exactly the not-a-knot spline's.
    """
    spline = RectBivariateSpline(points, points, values, bbox=[0, 1, 0, 1], kx=3, ky=3, s=0)
    return spline(targets, targets)


class DarcyFlow(BaseModel):
    """Darcy flow data: piecewise-constant coefficient a -> solution u.

    Defaults follow the FNO paper: a = 12 where a Neumann GRF with
    (alpha, tau) = (2, 3) is >= 0 and 3 elsewhere, forcing f = 1. Each sample
    is solved on a grid ``oversample`` times finer, then subsampled. The GRF's
    constant mode is dropped unless ``constant_mode``; kept, it carries about
    half of the field's variance for (2, 3) and shifts whole samples towards one
    phase (a quarter of them then have one value on over 90% of the square).
    ``grid="cells"`` also follows the paper's solver pipeline (coefficient on cell
    centres, spline-interpolated to the nodes for the solve); the default keeps
    the two-valued coefficient on the nodes the solver uses.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ClassVar[str] = "darcy"
    steady: ClassVar[bool] = True

    alpha: float = Field(2.0, gt=0, allow_inf_nan=False, description="GRF smoothness exponent")
    tau: float = Field(3.0, gt=0, allow_inf_nan=False, description="GRF inverse length scale")
    high: float = Field(12.0, gt=0, allow_inf_nan=False, description="coefficient where the GRF is >= 0")
    low: float = Field(3.0, gt=0, allow_inf_nan=False, description="coefficient where the GRF is < 0")
    forcing: float = Field(1.0, allow_inf_nan=False, description="constant right-hand side f")
    oversample: int = Field(2, ge=1, description="solve on a grid this many times finer")
    constant_mode: bool = Field(False, description="keep the GRF's k = 0 mode (the FNO paper drops it)")
    grid: Literal["nodes", "cells"] = Field(
        "nodes", description="nodes: a and u at i/(F-1), boundary included; cells: the FNO paper's pipeline, "
                             "see solve_darcy_as_fno_script")

    @property
    def grid_location(self) -> str:
        """Where the data's points lie, as the file records it: the nodes i/(R-1) or the cells (i+1/2)/R."""
        return self.grid

    def fine_resolution(self, resolution: int) -> int:
        """Points per axis of the solver grid: (resolution - 1) * oversample + 1."""
        return (resolution - 1) * self.oversample + 1

    def shapes(self, resolution: int) -> dict[str, tuple[int, ...]]:
        """Shapes of one sample's arrays: inputs (1, R, R), outputs (1, R, R)."""
        _check_resolution(resolution)
        return {"inputs": (1, resolution, resolution), "outputs": (1, resolution, resolution)}

    def latent_field(self, seed: int, index: int, resolution: int) -> np.ndarray:
        """The GRF w of sample ``index`` on the fine grid, shape (F, F), float64.

        Its noise is np.random.default_rng([seed, index]).standard_normal((1, F, F))
        (the Neumann KL coefficients, entry [0, 0, 0] the constant mode's), so a
        sample depends only on (seed, index), not on batching or order.
        """
        _check_resolution(resolution)
        for label, value in (("seed", seed), ("index", index)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ConfigError(f"Darcy sample {label} must be an integer >= 0, got {value!r}")
        fine = self.fine_resolution(resolution)
        field = GaussianRandomField(
            dim=2, resolution=fine, alpha=self.alpha, tau=self.tau, sigma=1.0, boundary="neumann"
        )
        noise = np.random.default_rng([int(seed), int(index)]).standard_normal((1, fine, fine))
        if not self.constant_mode:
            noise[0, 0, 0] = 0.0
        return field.sample_from_noise(torch.from_numpy(noise))[0].numpy()

    def coefficient(self, seed: int, index: int, resolution: int) -> np.ndarray:
        """Coefficient of sample ``index`` on the fine grid, shape (F, F): high where w >= 0, else low."""
        return np.where(self.latent_field(seed, index, resolution) >= 0, self.high, self.low)

    def extra(self, resolution: int) -> dict[str, np.ndarray]:
        """Steady problem: no whole-file datasets."""
        return {}

    def residual(self, u: torch.Tensor, batch) -> torch.Tensor:
        """-div(a grad u) - f of a predicted ``u (B, 1, n, n)`` with ``a = batch.inputs[:, :1]``: see
        :func:`darcy_residual` (interior nodes ``(B, 1, n-2, n-2)``, or all cells with ``grid="cells"``)."""
        return darcy_residual(batch.inputs[:, :1], u, self.forcing, self.grid)

    def residual_squares(self, residual: torch.Tensor, batch, order: int) -> torch.Tensor:
        """``(B,)``: the squared H^-order norm of a :meth:`residual` ``(B, 1, N, N)``, per point: see
        :func:`dirichlet_sobolev_squares` (order 0 is the mean square)."""
        return dirichlet_sobolev_squares(residual.flatten(0, -3), self.grid, order).reshape(residual.shape[0], -1) \
            .mean(1)

    def boundary_residual(self, u: torch.Tensor, batch) -> torch.Tensor:
        """The boundary values of ``u`` (zero for a solution): ``(B, 1, 4(n-1))`` on the nodes' outer ring, or
        with ``grid="cells"`` the values extrapolated (second order) from the outer cells to the walls."""
        return darcy_boundary_values(u, self.grid)

    def solve_batch(self, seed: int, indices, resolution: int, device="cpu") -> dict[str, np.ndarray]:
        """Samples ``indices`` stacked: inputs/outputs ``(len(indices), 1, R, R)``.

        Sparse direct solves run on the CPU whatever ``device`` says; parallelism
        comes from solving batches in several processes.
        """
        samples = [self.sample(seed, int(i), resolution) for i in indices]
        return {name: np.stack([s[name] for s in samples]) for name in ("inputs", "outputs")}

    def sample(self, seed: int, index: int, resolution: int) -> dict[str, np.ndarray]:
        """Sample ``index`` of the data set ``seed`` at R = ``resolution`` points per axis.

        Returns {"inputs": a, "outputs": u}, each (1, R, R) float32, on the grid
        x_i = i / (R - 1) with the boundary included (u = 0 there); with
        ``grid="cells"`` on every ``oversample``-th cell centre of the fine grid.
        """
        a_fine = self.coefficient(seed, index, resolution)
        if self.grid == "cells":
            u_fine = solve_darcy_as_fno_script(a_fine, self.forcing)
        else:
            u_fine = solve_darcy(a_fine, self.forcing)
        return {"inputs": self._on_data_grid(a_fine), "outputs": self._on_data_grid(u_fine)}

    def draw_inputs(self, seed: int, indices, resolution: int) -> dict[str, np.ndarray]:
        """The coefficients of samples ``indices`` without solving: inputs ``(len(indices), 1, R, R)``, the same
        arrays :meth:`sample` gives (``oplearn generate --inputs-only``, for data-free training)."""
        return {"inputs": np.stack([self._on_data_grid(self.coefficient(seed, int(i), resolution)) for i in indices])}

    def _on_data_grid(self, fine: np.ndarray) -> np.ndarray:
        """Every ``oversample``-th point of a fine-grid field, ``(1, R, R)`` float32."""
        return fine[::self.oversample, ::self.oversample][None].astype(np.float32)


def darcy_residual(a: torch.Tensor, u: torch.Tensor, forcing: float | torch.Tensor = 1.0,
                   location: str = "nodes") -> torch.Tensor:
    """The residual of -div(a grad u) = f in the conservative form of :func:`solve_darcy`, in torch.

    ``a``, ``u``: ``(..., n, n)`` on the unit square; ``forcing`` a scalar or a tensor broadcasting to u.
    ``location="nodes"`` (x_i = i/(n-1)): at each interior node, (sum over its four faces of
    a_face (u_p - u_neighbour)) / h^2 - f, a_face the mean of a at the face's two nodes; shape ``(..., n-2, n-2)``.
    The solver's own solution makes it zero to rounding; the exact solution, O(h^2) for smooth a.
    ``location="cells"`` (x_i = (i + 1/2)/n, the FNO paper's files): the same five-point form at every cell,
    with u = 0 on the walls through mirror cells (u_ghost = -u, a_ghost = a); shape ``(..., n, n)``. The mirror
    keeps a two-valued a two-valued; at the wall cells it is first order in a's normal derivative there.
    Differentiable in ``u`` and ``a``.
    """
    n = u.shape[-1]
    if location == "cells":
        h = 1.0 / n
        u = torch.nn.functional.pad(u, (1, 1, 1, 1))
        u = _mirror_walls(u, lambda edge: -edge)
        a = _mirror_walls(torch.nn.functional.pad(a, (1, 1, 1, 1)), lambda edge: edge)
    elif location == "nodes":
        h = 1.0 / (n - 1)
    else:
        raise ConfigError(f"Darcy grid location must be 'nodes' or 'cells', got {location!r}")
    centre = u[..., 1:-1, 1:-1]
    flux = torch.zeros_like(centre)
    for shift in ((0, 2), (2, 0)):  # neighbours along x (first grid axis) then y, both sides
        for side in (0, 2):
            rows = slice(side, side + centre.shape[-2]) if shift[0] else slice(1, -1)
            cols = slice(side, side + centre.shape[-1]) if shift[1] else slice(1, -1)
            neighbour_u, neighbour_a = u[..., rows, cols], a[..., rows, cols]
            flux = flux + 0.5 * (a[..., 1:-1, 1:-1] + neighbour_a) * (centre - neighbour_u)
    return flux / h**2 - forcing


@functools.lru_cache(maxsize=16)
def _sine_eigenbasis(n: int, location: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal eigenvectors (columns, ``(N, N)``) and eigenvalues ``(N,)`` of the 1-D Dirichlet three-point
    operator -u'' on the points :func:`darcy_residual` returns: interior nodes (N = n - 2, h = 1/(n-1),
    v_m(j) = sin(pi m (j+1)/(N+1))) or cells with mirror walls (N = n, h = 1/n, v_m(j) = sin(pi m (j+1/2)/N));
    lambda_m = (2 - 2 cos(pi m / (N+1 or N))) / h^2, m = 1..N. float64."""
    size, period = (n - 2, n - 1) if location == "nodes" else (n, n)
    h = 1.0 / period
    m = torch.arange(1, size + 1, dtype=torch.float64)
    j = torch.arange(size, dtype=torch.float64)[:, None] + (1.0 if location == "nodes" else 0.5)
    vectors = torch.sin(torch.pi * m * j / period)
    return vectors / vectors.norm(dim=0), (2 - 2 * torch.cos(torch.pi * m / period)) / h**2


def dirichlet_sobolev_squares(residual: torch.Tensor, location: str, order: int) -> torch.Tensor:
    """``(..., N, N) -> (...)``: (1/N^2) sum_kl r_kl^2 / (lambda_k + lambda_l)^order, the residual's squared
    discrete H^-order norm per point, with r_kl its coefficients in the eigenvectors of the Dirichlet
    five-point Laplacian L of its grid (:func:`_sine_eigenbasis`; ``residual`` as :func:`darcy_residual`
    returns it, nodes or cells).

    Order 0 is the mean square. For r = L e (the residual of u* + e when a = 1), order 1 gives
    e^T L e / N^2, the discrete H^1 seminorm of the error, and order 2 gives |e|^2 / N^2, its mean square. For
    a coefficient between low and high, order 1 stays within [low^2, high^2] times e^T L e / N^2 (the spectrum
    of L^-1/2 A L^-1/2 lies in [low, high]). The mean square (order 0) weighs an error's mode k about k^4 more
    than order 2 does: a badly conditioned loss.
    """
    if order == 0:
        return residual.square().mean((-2, -1))
    n = residual.shape[-1] + (2 if location == "nodes" else 0)
    vectors, values = _sine_eigenbasis(n, location)
    if residual.shape[-2:] != (vectors.shape[0],) * 2:
        raise ShapeError(f"a {location} Darcy residual on a {n}x{n} grid has shape ({vectors.shape[0]}, "
                         f"{vectors.shape[0]}); got {tuple(residual.shape[-2:])}")
    vectors = vectors.to(residual.dtype if residual.is_floating_point() else torch.float32).to(residual.device)
    weights = (values[:, None] + values[None, :]).pow(-order).to(vectors)
    coefficients = vectors.T @ residual.to(vectors.dtype) @ vectors
    return (coefficients.square() * weights).sum((-2, -1)) / vectors.shape[0] ** 2


def _mirror_walls(padded: torch.Tensor, reflect) -> torch.Tensor:
    """Fill the one-cell frame of a padded ``(..., n+2, n+2)`` array with ``reflect`` of its inner ring."""
    padded = padded.clone()
    padded[..., 0, :], padded[..., -1, :] = reflect(padded[..., 1, :]), reflect(padded[..., -2, :])
    padded[..., :, 0], padded[..., :, -1] = reflect(padded[..., :, 1]), reflect(padded[..., :, -2])
    return padded


def darcy_boundary_values(u: torch.Tensor, location: str = "nodes") -> torch.Tensor:
    """``u`` on the boundary of the unit square, ``(..., 4 m)``: the nodes' outer ring (m = n - 1), or for
    cell data the second-order extrapolation (3 u_0 - u_1) / 2 from the two outermost cells to each wall
    (m = n)."""
    if location == "cells":
        sides = [(3 * u[..., 0, :] - u[..., 1, :]) / 2, (3 * u[..., -1, :] - u[..., -2, :]) / 2,
                 (3 * u[..., :, 0] - u[..., :, 1]) / 2, (3 * u[..., :, -1] - u[..., :, -2]) / 2]
    else:
        sides = [u[..., 0, :-1], u[..., :-1, -1], u[..., -1, 1:], u[..., 1:, 0]]
    return torch.cat(sides, dim=-1)


def _check_resolution(resolution: int) -> None:
    is_integer = isinstance(resolution, (int, np.integer)) and not isinstance(resolution, bool)
    if not is_integer or resolution < MIN_RESOLUTION:
        raise ConfigError(f"Darcy resolution must be an integer >= {MIN_RESOLUTION}, got {resolution!r}")
