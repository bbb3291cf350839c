"""DeepONet (Lu et al. 2021) and POD-DeepONet (Lu et al. 2022).

    G(a)(y)_k = sum_{i=1..p} b_{k,i}(a(x_1), ..., a(x_m)) t_{k,i}(y) + b0_k

a branch net ``b`` reads the input function at ``m`` fixed sensors, a trunk net ``t`` the query point
``y``; output ``k`` of ``K = out_channels`` is their dot product plus a bias. The multi-output
strategies (DeepXDE's names) decide which of ``b``, ``t`` are split into ``K`` groups of ``p``:
``independent`` (K branch and K trunk nets of width p), ``split_both`` (one of each, width K*p),
``split_branch`` (branch K*p, shared trunk p), ``split_trunk`` (shared branch p, trunk K*p).

Sensors: on grid data the input grid's values (branch input = the flattened input field, or a CNN
over it); the branch is tied to that sensor grid (``sensors``, set from the training data by
:meth:`DeepONet.fit_to_data`). Inputs on another grid are resampled onto the sensor grid by linear
interpolation on the nodes (exact subsampling when ``(n - 1)`` is a multiple of ``(m - 1)``); point
inputs with another number of points are refused. Queries: the input grid's coordinates by default
(the Cartesian fast path: the trunk runs once on ``(Q, d)``, shared by the batch), ``queries (d, Q)``
shared or ``(B, d, Q)`` per sample.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.coordinates import grid_coordinates
from oplearn.layers.dense import ConvEncoder, FourierFeatures, dense_net
from oplearn.models.operator import Hyperparameters, Operator, register


class BranchHyper(Hyperparameters):
    sensors: list[int] | None = None
    """Sensor grid of the branch: the training input grid, or ``[N]`` points (None: set from the training data)."""
    dim: int | None = None
    """Dimension of the query points (None: set from the training data)."""
    basis: int = 64
    """Number p of basis functions per output channel."""
    branch: Literal["mlp", "cnn"] = "mlp"
    """Branch net: an MLP on the flattened sensor values, or a CNN on the sensor grid (1-D or 2-D grids)."""
    branch_layers: list[int] = [128, 128]
    """Hidden widths of the branch MLP (after the convolutions for the CNN)."""
    conv_channels: list[int] = [16, 32, 64]
    """CNN branch: channels of its stride-2 convolutions."""
    activation: str = "relu"
    """Nonlinearity of both nets (relu, tanh, gelu, silu)."""


def resample(x: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """``(B, C, *S) -> (B, C, *grid)`` by (bi/tri)linear interpolation on grid nodes (identity when ``S == grid``)."""
    if tuple(x.shape[2:]) == tuple(grid):
        return x
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}.get(len(grid))
    if mode is None or x.ndim - 2 != len(grid):
        raise ShapeError(f"cannot resample a {x.ndim - 2}-D grid onto the {len(grid)}-D sensor grid {list(grid)}")
    return F.interpolate(x, size=tuple(grid), mode=mode, align_corners=True)


class _SensorOperator(Operator):
    """Shared part of the DeepONet family: the sensor grid, the branch nets and data fitting."""

    geometries = frozenset({"grid", "mesh", "points"})
    predicts_at_queries = True

    def _groups(self) -> list[int]:
        """Input channels of each input function (one branch per function)."""
        return [self.in_channels]

    def _branch_net(self, channels: int, out: int) -> nn.Module:
        h = self.hyper
        if h.branch == "cnn":
            return ConvEncoder(channels, h.sensors, h.conv_channels, h.branch_layers, out, h.activation)
        return nn.Sequential(nn.Flatten(1), dense_net([channels * math.prod(h.sensors), *h.branch_layers, out],
                                                      h.activation))

    def _build_nets(self) -> None:
        raise NotImplementedError

    @property
    def ready(self) -> bool:
        return self.hyper.sensors is not None and self.hyper.dim is not None

    def fit_to_data(self, train, encode_outputs=None) -> dict:
        """Take the sensor grid and the query dimension from the training data; build the nets."""
        if train.kind == "grid":
            found = {"sensors": list(train.resolution), "dim": len(train.resolution)}
        else:
            found = {"sensors": [int(train.shape[0])], "dim": int(train.dim)}
        given = {key: getattr(self.hyper, key) for key in found if getattr(self.hyper, key) is not None}
        if any(value != found[key] for key, value in given.items()):
            raise ConfigError(f"model {self.name}: {given} does not match the training data's {found}; "
                              "leave sensors and dim unset to take them from the data")
        if not self.ready:
            self.hyper = self.hyper.model_copy(update=found)
            self._build_nets()
        return found

    def _check_ready(self) -> None:
        if not self.ready:
            raise ConfigError(f"model {self.name} has no sensor grid yet: give sensors=[...] and dim=d, or call "
                              "fit_to_data(train) first")

    def sensor_values(self, x: torch.Tensor, on_grid: bool, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The input at the sensors ``(B, C, *sensors)``: grids resampled onto the sensor grid, point sets
        (``on_grid`` False) taken as they are, which needs the training number of points."""
        sensors = tuple(self.hyper.sensors)
        if x.ndim < 3 or x.shape[1] != self.in_channels:
            raise ShapeError(f"{self.name} expects (batch, {self.in_channels}, *points), got {tuple(x.shape)}")
        if on_grid:
            return resample(x, sensors)
        if mask is not None and not bool(mask.all()):
            raise ConfigError(f"{self.name}'s branch needs the same {sensors[0]} sensor points in every sample; "
                              "this batch is padded (samples of different sizes)")
        if tuple(x.shape[2:]) != sensors:
            raise ConfigError(f"{self.name}'s branch is tied to its {list(sensors)} training sensors; "
                              f"got inputs at {list(x.shape[2:])} points")
        return x

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """Branch outputs ``(B, K, p)`` of sensor values ``(B, C, *sensors)``: a product over input functions."""
        result = None
        for group, nets, start in zip(self._groups(), self.branches, _starts(self._groups())):
            part = x[:, start:start + group]
            values = nets[0](part)[:, None] if len(nets) == 1 else torch.stack([net(part) for net in nets], 1)
            values = values.reshape(x.shape[0], -1, self.hyper.basis)          # (B, K or 1, p)
            result = values if result is None else result * values
        return result.expand(-1, self.out_channels, -1)


def _starts(groups: list[int]) -> list[int]:
    return [sum(groups[:i]) for i in range(len(groups))]


@register("deeponet")
class DeepONet(_SensorOperator):
    """DeepONet with the multi-output strategies and trunk features; hyperparameters in :class:`DeepONet.Hyper`.

    Shapes: grids ``(B, C_in, *S) -> (B, K, *S)`` (or ``(B, K, Q)`` at ``queries``); points
    ``(B, C_in, N)`` with ``coords (B, d, N)`` -> ``(B, K, N)`` at the points, or ``(B, K, Q)`` at ``queries``.
    """

    class Hyper(BranchHyper):
        trunk_layers: list[int] = [128, 128]
        """Hidden widths of the trunk MLP."""
        multi_output: Literal["independent", "split_branch", "split_trunk", "split_both"] = "split_both"
        """How K > 1 outputs share the nets (see the module docstring)."""
        trunk_features: Literal["none", "fourier"] = "none"
        """Trunk input transform: the point itself, or the point with random Fourier features appended."""
        fourier_features: int = 16
        """Number m of Fourier frequencies (2m features)."""
        fourier_scale: float = 1.0
        """Standard deviation of the Fourier frequencies."""
        output_transform: Literal["none", "dirichlet"] = "none"
        """Output transform: none, or times ``prod_i y_i (1 - y_i)`` (zero on the boundary of [0, 1]^d)."""

    def __init__(self, in_channels: int, out_channels: int, **hyper):
        super().__init__(in_channels, out_channels, **hyper)
        h = self.hyper
        if min(in_channels, out_channels, h.basis) < 1:
            raise ConfigError("in_channels, out_channels and basis must be positive")
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self._grid_points = None  # (key, (d, Q) coordinates) of the last grid called on
        if self.ready:
            self._build_nets()

    def _widths(self) -> tuple[int, int, int, int]:
        """``(branch nets, branch width, trunk nets, trunk width)`` of the multi-output strategy."""
        k, p, strategy = self.out_channels, self.hyper.basis, self.hyper.multi_output
        if strategy == "independent":
            return k, p, k, p
        return 1, (k * p if strategy in ("split_branch", "split_both") else p), \
            1, (k * p if strategy in ("split_trunk", "split_both") else p)

    def _build_nets(self) -> None:
        h = self.hyper
        n_branch, branch_width, n_trunk, trunk_width = self._widths()
        self.branches = nn.ModuleList([nn.ModuleList([self._branch_net(group, branch_width) for _ in range(n_branch)])
                                       for group in self._groups()])
        self.features = None
        trunk_in = h.dim
        if h.trunk_features == "fourier":
            self.features = FourierFeatures(h.dim, h.fourier_features, h.fourier_scale)
            trunk_in = h.dim + 2 * h.fourier_features
        # DeepXDE's trunk ends with the activation too: t(y) = sigma(W_L ... + b_L)
        self.trunks = nn.ModuleList([dense_net([trunk_in, *h.trunk_layers, trunk_width], h.activation,
                                               last_activation=True) for _ in range(n_trunk)])

    def basis_functions(self, points: torch.Tensor) -> torch.Tensor:
        """Trunk outputs ``(..., K, p)`` at ``points (..., d)``."""
        if points.shape[-1] != self.hyper.dim:
            raise ShapeError(f"{self.name} takes {self.hyper.dim}-D query points, got {points.shape[-1]}-D ones")
        y = points if self.features is None else torch.cat([points, self.features(points)], dim=-1)
        values = self.trunks[0](y)[..., None, :] if len(self.trunks) == 1 else \
            torch.stack([net(y) for net in self.trunks], dim=-2)               # (..., n_t, width)
        values = values.reshape(*points.shape[:-1], -1, self.hyper.basis)
        return values.expand(*points.shape[:-1], self.out_channels, self.hyper.basis)

    def _transform(self, out: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """``out (B, K, Q)`` at ``points (Q, d)`` or ``(B, Q, d)`` after the output transform."""
        if self.hyper.output_transform == "dirichlet":
            factor = (points * (1 - points)).prod(-1)
            out = out * (factor[None, None] if points.ndim == 2 else factor[:, None])
        return out

    def evaluate_at(self, coefficients: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """``(B, K, Q)`` from branch outputs ``(B, K, p)`` at ``points (d, Q)`` (shared) or ``(B, d, Q)``."""
        if points.ndim == 2:  # Cartesian product: the trunk once for the whole batch
            trunk = self.basis_functions(points.T.to(coefficients.dtype))
            if self.out_channels == 1:  # one matrix product
                out = (coefficients[:, 0] @ trunk[:, 0].T)[:, None]
            else:
                out = torch.einsum("bkp,qkp->bkq", coefficients, trunk)
            return self._transform(out + self.bias[:, None], points.T)
        points = points.transpose(1, 2).to(coefficients.dtype)
        out = torch.einsum("bkp,bqkp->bkq", coefficients, self.basis_functions(points))
        return self._transform(out + self.bias[:, None], points)

    def forward(self, x: torch.Tensor, coords: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                queries: torch.Tensor | None = None, query_mask: torch.Tensor | None = None) -> torch.Tensor:
        self._check_ready()
        coefficients = self.coefficients(self.sensor_values(x, coords is None, mask))
        if queries is not None:
            out = self.evaluate_at(coefficients, queries)
            return out if query_mask is None else out * query_mask[:, None].to(out.dtype)
        if coords is not None:
            out = self.evaluate_at(coefficients, coords)
            return out if mask is None else out * mask[:, None].to(out.dtype)
        grid = tuple(x.shape[2:])
        key = (grid, x.dtype, x.device)
        if self._grid_points is None or self._grid_points[0] != key:  # the same grid every step: kept
            self._grid_points = (key, grid_coordinates(grid, dtype=x.dtype, device=x.device).reshape(len(grid), -1))
        return self.evaluate_at(coefficients, self._grid_points[1]).reshape(x.shape[0], self.out_channels, *grid)


@register("pod_deeponet")
class PODDeepONet(_SensorOperator):
    """POD-DeepONet: the trunk is the ``p`` leading POD modes of the training outputs, the branch learns
    their coefficients; hyperparameters in :class:`PODDeepONet.Hyper`.

        G(a)(y) = phi_0(y) + sum_{i=1..p} b_i(a) phi_i(y),   [phi_1 .. phi_p] = leading right singular
        vectors of the centred training outputs (N, K*Q), phi_0 their mean

    computed by :meth:`fit_to_data` from the training split only (as the model sees them, i.e. normalized)
    and kept as buffers (``pod_mean (K, *grid)``, ``pod_modes (p, K, *grid)``), so the checkpoint holds them.
    With ``per_channel`` each of the K output channels gets its own p modes (the SVD of that channel alone,
    mode i of channel k in ``pod_modes[i, k]``) and the branch K*p coefficients, u_k = phi_0k + sum_i b_ki phi_ik
    (Lu et al. 2022's POD-DeepONet for several outputs); otherwise the p modes are joint over the stacked
    channels. Grid data only; on another grid or at ``queries`` the modes are interpolated linearly between the
    nodes.
    """

    geometries = frozenset({"grid"})

    class Hyper(BranchHyper):
        output_grid: list[int] | None = None
        """The training output grid the modes live on (None: set from the training data)."""
        per_channel: bool = False
        """p POD modes per output channel (True), or p joint modes of all channels stacked (False)."""

    def __init__(self, in_channels: int, out_channels: int, **hyper):
        super().__init__(in_channels, out_channels, **hyper)
        if min(in_channels, out_channels, self.hyper.basis) < 1:
            raise ConfigError("in_channels, out_channels and basis must be positive")
        if self.ready:
            self._build_nets()

    @property
    def ready(self) -> bool:
        return super().ready and self.hyper.output_grid is not None

    def _build_nets(self) -> None:
        h = self.hyper
        width = h.basis * (self.out_channels if h.per_channel else 1)
        self.branches = nn.ModuleList([nn.ModuleList([self._branch_net(self.in_channels, width)])])
        self.register_buffer("pod_mean", torch.zeros(self.out_channels, *h.output_grid))
        self.register_buffer("pod_modes", torch.zeros(h.basis, self.out_channels, *h.output_grid))

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """Branch outputs ``(B, K, p)`` (joint modes: one row of p shared by the K channels)."""
        c = self.branches[0][0](x)
        return c.reshape(len(c), self.out_channels, -1) if self.hyper.per_channel else \
            c[:, None].expand(-1, self.out_channels, -1)

    @torch.no_grad()
    def fit_to_data(self, train, encode_outputs=None) -> dict:
        """Sensors from the training inputs, POD modes and mean from the training outputs (float64 SVD)."""
        if train.kind != "grid":
            raise ConfigError("pod_deeponet needs grid data (its modes live on the training output grid)")
        if self.hyper.output_grid is None:
            self.hyper = self.hyper.model_copy(update={"output_grid": list(train.resolution)})
        updates = super().fit_to_data(train)
        p, k = self.hyper.basis, self.out_channels
        outputs = torch.cat([b.labelled_targets() if encode_outputs is None else encode_outputs(b.labelled_targets())
                             for b in train.batches(256)]).double()
        blocks = outputs.flatten(2).unbind(1) if self.hyper.per_channel else [outputs.flatten(1)]  # (N, Q) or (N, K*Q)
        if p > min(blocks[0].shape):
            raise ConfigError(f"pod_deeponet: basis {p} exceeds the {min(blocks[0].shape)} modes that "
                              f"{blocks[0].shape[0]} training samples of {blocks[0].shape[1]} values have")
        modes = []
        for block in blocks:
            _, _, vh = torch.linalg.svd(block - block.mean(0), full_matrices=False)
            modes.append(vh[:p])
        modes = torch.stack(modes, 1) if self.hyper.per_channel else modes[0].reshape(p, k, -1)  # (p, K, Q)
        self.pod_mean.copy_(outputs.mean(0).reshape(self.pod_mean.shape))
        self.pod_modes.copy_(modes.reshape(self.pod_modes.shape))
        return {**updates, "output_grid": self.hyper.output_grid}

    def project(self, targets: torch.Tensor) -> torch.Tensor:
        """POD coefficients ``(B, K, p)`` of outputs ``(B, K, *output_grid)``: ``Phi^T (u - phi_0)`` (joint
        modes: the same p coefficients in each channel's row)."""
        centred = targets - self.pod_mean
        modes = self.pod_modes.to(centred.dtype)
        if self.hyper.per_channel:
            return torch.einsum("bk...,pk...->bkp", centred, modes)
        return (centred.flatten(1) @ modes.flatten(1).T)[:, None].expand(-1, self.out_channels, -1)

    def modes_at(self, points: torch.Tensor) -> torch.Tensor:
        """``(p + 1, K, Q)``: mean and modes at ``points (d, Q)`` in [0, 1]^d, linear between the nodes."""
        fields = torch.cat([self.pod_mean[None], self.pod_modes])               # (p+1, K, *grid)
        d = points.shape[0]
        if d != len(self.hyper.output_grid) or d not in (1, 2):
            raise ShapeError(f"pod_deeponet interpolates its modes at 1-D or 2-D points on its "
                             f"{len(self.hyper.output_grid)}-D grid, got {d}-D points")
        grid = (2 * points - 1).to(fields.dtype)
        if d == 1:
            fields, where = fields[..., None, :], torch.stack([grid[0], torch.zeros_like(grid[0])], -1)
        else:  # grid_sample's last coordinate indexes the first axis
            where = torch.stack([grid[1], grid[0]], -1)
        flat = fields.reshape(1, -1, *fields.shape[-2:])
        sampled = F.grid_sample(flat, where[None, None], mode="bilinear", align_corners=True)
        return sampled.reshape(fields.shape[0], self.out_channels, -1)

    def forward(self, x: torch.Tensor, queries: torch.Tensor | None = None,
                query_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C_in, *S) -> (B, K, *S)``, or ``(B, K, Q)`` at ``queries (d, Q)`` / ``(B, d, Q)``."""
        self._check_ready()
        c = self.coefficients(self.sensor_values(x, True))
        c = torch.cat([torch.ones_like(c[..., :1]), c], dim=-1)                  # (B, K, p + 1): phi_0 has 1
        if queries is None:
            grid = tuple(x.shape[2:])
            fields = torch.cat([self.pod_mean[None], self.pod_modes])
            if grid != tuple(self.hyper.output_grid):
                fields = resample(fields, grid)
            return torch.einsum("bkp,pk...->bk...", c, fields.to(c.dtype))
        if queries.ndim == 2:
            return torch.einsum("bkp,pkq->bkq", c, self.modes_at(queries).to(c.dtype))
        b, d, q = queries.shape
        modes = self.modes_at(queries.transpose(0, 1).reshape(d, b * q)).reshape(-1, self.out_channels, b, q)
        out = torch.einsum("bkp,pkbq->bkq", c, modes.to(c.dtype))
        return out if query_mask is None else out * query_mask[:, None].to(out.dtype)
