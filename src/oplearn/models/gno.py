"""Graph neural operator (Li et al. 2020; Kovachki et al., JMLR 2023), and the point handling of point operators.

    v_0(x) = P(a(x), x)                                                   lifting, pointwise
    v_{l+1}(x) = sigma(W_l v_l(x) + 1/|B_r(x)| sum_{y in B_r(x)} kappa_l(x, y, ...) v_l(y))
    u(x) = Q(v_L(x))                                                      projection, pointwise MLP

the kernel integrals (:class:`~oplearn.layers.kernel_integral.KernelIntegral`) over the radius-``r``
neighbourhoods of each sample's own points (:func:`~oplearn.layers.neighbors.radius_neighbors`); the last
layer has no activation.

Points: every point operator here (gno, gino, geo_fno) works in the unit box. Coordinates ``x`` are mapped
by ``(x - low) / (high - low)`` per axis, with the box ``domain = [low, high]`` a hyperparameter; left
unset, it is fitted on the training split (its bounding box, saved with the config), and a model never
fitted uses each batch's bounding box. Grids are the unit box itself: the nodes ``i / (n - 1)`` are the
points, and the output is reshaped back to the grid. The radius is in unit-box lengths.
"""

from __future__ import annotations

import torch
from torch import nn

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.activations import make_activation
from oplearn.layers.coordinates import bounding_box, check_domain, grid_coordinates, unit_box
from oplearn.layers.kernel_integral import KERNEL_FORMS, KernelIntegral
from oplearn.layers.neighbors import radius_neighbors
from oplearn.layers.pointwise import PointwiseLinear
from oplearn.models.operator import Operator, PointHyper, register


class PointOperator(Operator):
    """Base of operators on point sets: the unit-box coordinates of grids, meshes and clouds.

    A grid ``(B, C, *S)`` becomes points ``(B, C, prod S)`` at its nodes and the result is reshaped back.
    """

    geometries = frozenset({"grid", "mesh", "points"})

    @property
    def dim(self) -> int:
        """The dimension ``d`` of the points."""
        raise NotImplementedError

    def fit_to_data(self, train, encode_outputs=None) -> dict:
        """Take ``domain`` from the training split when it is unset: the unit box of grids, else the points'
        bounding box. The data must be ``dim``-dimensional."""
        dim = len(train.resolution) if train.kind == "grid" else int(train.dim)
        if dim != self.dim:
            raise ConfigError(f"model {self.name} is {self.dim}-D, the training data are {dim}-D; "
                              f"{self.dimension_hint(dim)}")
        if self.hyper.domain is not None:
            return {}
        domain = bounding_box(train)
        self.hyper = self.hyper.model_copy(update={"domain": domain})
        return {"domain": [list(side) for side in domain]}

    def dimension_hint(self, dim: int) -> str:
        """How to make the model ``dim``-dimensional (the end of the error message)."""
        return f"set model.dim={dim}"

    def box(self, coords: torch.Tensor, mask: torch.Tensor | None, like: torch.Tensor):
        """``(low, size)`` per axis, ``(d,)`` each: of ``domain``, or of the batch's real points when it is unset."""
        if self.hyper.domain is not None:
            low, high = (torch.tensor(side, dtype=like.dtype, device=like.device) for side in self.hyper.domain)
        else:
            real = torch.ones_like(coords[:, 0], dtype=torch.bool) if mask is None else mask
            low = torch.where(real[:, None], coords, torch.inf).amin((0, 2)).to(like.dtype)
            high = torch.where(real[:, None], coords, -torch.inf).amax((0, 2)).to(like.dtype)
        return unit_box(low, high)

    @staticmethod
    def to_unit_box(coords: torch.Tensor, mask: torch.Tensor | None, box) -> torch.Tensor:
        """``coords (B, d, N)`` mapped by ``(x - low) / size``; 0 at padded points."""
        low, size = box
        unit = (coords.to(low.dtype) - low[:, None]) / size[:, None]
        return unit if mask is None else torch.where(mask[:, None], unit, 0.0)

    def as_points(self, x: torch.Tensor, coords: torch.Tensor | None, mask: torch.Tensor | None):
        """``(values (B, C, N), unit coordinates (B, d, N), mask, grid shape or None, box)`` of either calling
        form; ``box`` (see :meth:`box`) maps query points the same way (None on grids)."""
        if x.ndim < 3 or x.shape[1] != self.in_channels:
            raise ShapeError(f"{self.name} expects (batch, {self.in_channels}, *points), got {tuple(x.shape)}")
        points_dim = x.ndim - 2 if coords is None else coords.shape[1]
        if points_dim != self.dim:
            raise ShapeError(f"{self.name} is {self.dim}-D, got {points_dim}-D points")
        if coords is None:
            grid = tuple(x.shape[2:])
            nodes = grid_coordinates(grid, dtype=x.dtype, device=x.device).reshape(len(grid), -1)
            return x.reshape(*x.shape[:2], -1), nodes.expand(x.shape[0], *nodes.shape), None, grid, None
        if x.ndim != 3 or coords.ndim != 3 or coords.shape[0] != x.shape[0] or coords.shape[2] != x.shape[2]:
            raise ShapeError(f"{self.name} expects inputs (B, C, N) and coords (B, d, N), got {tuple(x.shape)} "
                             f"and {tuple(coords.shape)}")
        if mask is not None:
            x = torch.where(mask[:, None], x, 0.0)  # garbage at padded points (even inf or NaN) reaches nothing
        box = self.box(coords, mask, x)
        return x, self.to_unit_box(coords, mask, box), mask, None, box

    def query_points(self, queries: torch.Tensor, query_mask: torch.Tensor | None, batch: int, box,
                     like: torch.Tensor) -> torch.Tensor:
        """``queries (d, Q)`` (shared) or ``(B, d, Q)`` in unit-box coordinates ``(B, d, Q)``, mapped by the
        input points' ``box`` (None: grid coordinates, already in the unit box)."""
        if queries.ndim == 2:
            queries = queries.expand(batch, *queries.shape)
        if queries.ndim != 3 or queries.shape[0] != batch or queries.shape[1] != self.dim:
            raise ShapeError(f"{self.name}: queries are (d={self.dim}, Q) or (batch={batch}, d={self.dim}, Q), "
                             f"got {tuple(queries.shape)}")
        if box is None:
            return queries.to(like.dtype)
        return self.to_unit_box(queries, query_mask, box)

    @staticmethod
    def finish(out: torch.Tensor, mask: torch.Tensor | None, grid: tuple[int, ...] | None) -> torch.Tensor:
        """Zeros at padded points; grids reshaped back to ``(B, C, *grid)``."""
        if mask is not None:
            out = torch.where(mask[:, None], out, 0.0)
        return out if grid is None else out.reshape(*out.shape[:2], *grid)


def projection_net(width: int, hidden: int, out_channels: int, activation: str) -> nn.Sequential:
    """The pointwise projection MLP ``Q``: width -> hidden -> out channels."""
    return nn.Sequential(PointwiseLinear(width, hidden), make_activation(activation),
                         PointwiseLinear(hidden, out_channels))


@register("gno")
class GNO(PointOperator):
    """Graph neural operator on meshes, point clouds and grids; hyperparameters in :class:`GNO.Hyper`.

    Shapes: ``(B, C_in, N)`` at ``coords (B, d, N)`` -> ``(B, C_out, N)``; grids ``(B, C_in, *S) -> (B, C_out, *S)``.
    """

    class Hyper(PointHyper):
        dim: int = 2
        """The dimension ``d`` of the points (1, 2 or 3)."""
        width: int = 32
        """Channels of ``v_l``."""
        n_layers: int = 4
        """Kernel-integral layers."""
        radius: float = 0.1
        """Neighbourhood radius ``r`` in unit-box lengths."""
        kernel_width: int = 64
        """Hidden units of each kernel MLP ``kappa``."""
        kernel_layers: int = 2
        """Hidden layers of each kernel MLP."""
        kernel_form: str = "linear"
        """"linear" ``kappa(x, y) * v(y)``, "nonlinear" ``kappa(x, y, v(y)) * v(y)`` (vector kernels) or
        "matrix" (``kappa(x, y)`` a width x width matrix, the original GNO)."""
        activation: str = "gelu"
        """Name of the nonlinearity (gelu, relu, silu, tanh)."""
        projection_channels: int = 128
        """Hidden width of the projection MLP."""
        chunk_edges: int = 1 << 18
        """Edges whose kernel is evaluated at once (memory: about chunk_edges x kernel_width floats)."""

    def __init__(self, in_channels: int, out_channels: int, **hyper):
        super().__init__(in_channels, out_channels, **hyper)
        h = self.hyper
        if min(in_channels, out_channels, h.width, h.n_layers, h.kernel_width, h.projection_channels) < 1:
            raise ConfigError("in_channels, out_channels, width, n_layers, kernel_width and projection_channels "
                              "must be positive")
        if not h.radius > 0:
            raise ConfigError(f"radius must be positive, got {h.radius}")
        if h.kernel_form not in KERNEL_FORMS:
            raise ConfigError(f"unknown kernel_form '{h.kernel_form}'; choose one of: {', '.join(KERNEL_FORMS)}")
        check_domain(self.name, h.domain, h.dim)
        self.lifting = PointwiseLinear(in_channels + h.dim, h.width)
        self.integrals = nn.ModuleList(
            KernelIntegral(h.width, h.width, h.dim, h.kernel_width, h.kernel_layers, h.kernel_form, h.activation,
                           h.chunk_edges) for _ in range(h.n_layers))
        self.pointwise = nn.ModuleList(PointwiseLinear(h.width, h.width) for _ in range(h.n_layers))
        self.activation = make_activation(h.activation)
        self.projection = projection_net(h.width, h.projection_channels, out_channels, h.activation)

    @property
    def dim(self) -> int:
        return self.hyper.dim

    def forward(self, x: torch.Tensor, coords: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        values, points, mask, grid, _ = self.as_points(x, coords, mask)
        neighbors = radius_neighbors(points, points, self.hyper.radius, mask, mask)
        v = self.lifting(torch.cat([values, points.to(values.dtype)], dim=1))
        for layer, (integral, pointwise) in enumerate(zip(self.integrals, self.pointwise)):
            v = pointwise(v) + integral(v, points, points, neighbors)
            if layer < len(self.integrals) - 1:
                v = self.activation(v)
        return self.finish(self.projection(v), mask, grid)
