"""Kolmogorov-Arnold layers (Liu et al., "KAN", 2024) computed as one GEMM.

A KAN layer puts a learnable univariate function on every edge ``i -> j``:

    y_j = b_j + sum_i phi_ji(x_i),   phi_ji(x) = w_ji silu(x) + sum_k c_jik B_k(x),

with ``B_1..B_n`` a fixed basis (see :mod:`oplearn.layers.kan_bases`). Stacking
``B(x)`` into an ``(in * n)`` feature vector turns the spline part into one
dense product ``C B(x)`` with ``C`` of shape ``(out, in * n)``, so a forward pass
costs one GEMM over the expanded width plus the (in x out) SiLU path and never
forms ``(batch, in, out)`` tensors.

Also here: grid update and extension (function-preserving least squares),
the KAN paper's regularizers, edge pruning, and ``PointwiseKAN``,
the channel-first form used inside operators.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.kan_bases import BASES, GridBasis, make_basis

RANGE_CHECK_EVERY = 64  # forward calls between out-of-range checks (each costs one host sync)
EDGE_BLOCK_ELEMENTS = 1 << 22  # (in, rows, out) elements per block when recording edge scales


class KANLinear(nn.Module):
    """Drop-in for ``nn.Linear`` on the last axis with a learnable function per edge.

    Args:
        in_features, out_features: sizes of the last axis before and after.
        basis: one of ``oplearn.layers.kan_bases.BASES`` (bspline, chebyshev, fourier,
            rbf, relu_power, truncated_power, rational).
        grid_size, order, grid_range, groups: options of the basis; None takes the
            basis' default (bspline: grid_size=5, order=3, grid_range=(-1, 1)).
        base_path: add ``W silu(x)`` (default: on, except for the rational basis).
        bias: add a learnable bias.

    Shapes: ``(..., in_features) -> (..., out_features)``. Parameters: ``coefficients``
    ``(out, in, n_basis)``, ``base_weight`` ``(out, in)`` or None, ``bias`` ``(out,)`` or None,
    initialised uniform in ``+-s/sqrt(in * n_basis)`` (``s = spline_init_scale``), ``+-1/sqrt(in)``,
    ``+-1/sqrt(in)``. ``spline_init_scale=0.1`` starts the edges near the base path, as pykan's splines
    start: LBFGS fits of the KAN paper's toy formula then succeed from every tried seed (3 of 5 at 1.0),
    while KAN-FNO under Adam did better at 1.0 (benchmarks/RESULTS.md).
    """

    def __init__(self, in_features: int, out_features: int, basis: str = "bspline", grid_size: int | None = None,
                 order: int | None = None, grid_range: tuple[float, float] | None = None, groups: int | None = None,
                 base_path: bool | None = None, bias: bool = True, spline_init_scale: float = 1.0):
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ConfigError(f"KANLinear needs positive in_features and out_features, "
                              f"got {in_features}, {out_features}")
        if not spline_init_scale > 0:
            raise ConfigError(f"spline_init_scale must be > 0, got {spline_init_scale}")
        self.in_features, self.out_features = in_features, out_features
        self.basis = make_basis(basis, in_features, grid_size=grid_size, order=order, grid_range=grid_range,
                                groups=groups)
        n_basis = self.basis.n_basis
        uniform = lambda bound, *shape: nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))  # noqa: E731
        use_base = self.basis.base_path if base_path is None else bool(base_path)
        self.base_weight = uniform(in_features**-0.5, out_features, in_features) if use_base else None
        self.coefficients = uniform(spline_init_scale * (in_features * n_basis) ** -0.5, out_features, in_features,
                                    n_basis)
        self.bias = uniform(in_features**-0.5, out_features) if bias else None
        self.register_buffer("edge_mask", None)  # (out, in) bool once pruned
        self.record_edge_scale = False  # set by record_edge_scales()
        self.edge_scale: torch.Tensor | None = None  # (out, in) mean |phi_ji| over the last batch, when recorded
        self._calls, self._warned = 0, False

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, basis={self.basis.name}, n_basis={self.basis.n_basis}"

    def masked_weights(self) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``(base_weight, coefficients)`` with pruned edges zeroed."""
        if self.edge_mask is None:
            return self.base_weight, self.coefficients
        mask = self.edge_mask.to(self.coefficients.dtype)
        base = None if self.base_weight is None else self.base_weight * mask
        return base, self.coefficients * mask.unsqueeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ShapeError(f"KANLinear expects (..., {self.in_features}) inputs, got shape {tuple(x.shape)}")
        self._check_range(x)
        base_weight, coefficients = self.masked_weights()
        features = self.basis(x)  # (..., in, n_basis)
        y = F.linear(features.flatten(-2), coefficients.flatten(1), self.bias)
        if base_weight is not None:
            y = y + F.linear(F.silu(x), base_weight)
        if self.record_edge_scale:
            self.edge_scale = mean_abs_edges(x, features, base_weight, coefficients)
        return y

    def edge_values(self, x: torch.Tensor) -> torch.Tensor:
        """Every edge function at a few points: ``x (P, in) -> phi (P, out, in)`` (for plots and checks)."""
        base_weight, coefficients = self.masked_weights()
        phi = torch.einsum("pib,oib->poi", self.basis(x), coefficients)
        return phi if base_weight is None else phi + F.silu(x).unsqueeze(1) * base_weight

    def coefficient_scale(self) -> torch.Tensor:
        """Weight-based edge size ``(out, in)``: ``mean_k |c_jik| + |w_ji|`` (cheap stand-in for mean |phi|)."""
        base_weight, coefficients = self.masked_weights()
        scale = coefficients.abs().mean(-1)
        return scale if base_weight is None else scale + base_weight.abs()

    def _check_range(self, x: torch.Tensor) -> None:
        """Warn once if inputs lie beyond the grid range by more than half its width."""
        if self._warned:
            return
        self._calls += 1
        if (self._calls - 1) % RANGE_CHECK_EVERY:
            return
        bounds = self.basis.grid_range()
        if bounds is None:
            return
        low, high = (bound.to(device=x.device, dtype=x.dtype) for bound in bounds)
        margin = (high - low) / 2
        fraction = ((x < low - margin) | (x > high + margin)).float().mean().item()
        if fraction > 0:
            self._warned = True
            warnings.warn(f"KANLinear({self.in_features}, {self.out_features}, basis={self.basis.name}): "
                          f"{fraction:.2%} of inputs lie far outside the grid range; call update_grid(x) "
                          "(or oplearn.layers.kan.update_grids(model, x)) to move the grid to the data",
                          stacklevel=2)

    def _grid_basis(self, action: str) -> GridBasis:
        if not isinstance(self.basis, GridBasis):
            grid_names = ", ".join(name for name, cls in BASES.items() if issubclass(cls, GridBasis))
            raise ConfigError(f"{action} needs a grid basis ({grid_names}); basis '{self.basis.name}' has no grid")
        return self.basis

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, grid_eps: float = 0.02, margin: float = 0.0) -> None:
        """Move the grid to the samples ``x (..., in)`` and refit so the edge functions are kept.

        New grid points per input: ``grid_eps * uniform + (1 - grid_eps) * quantiles`` of the
        samples (KAN paper), spanning the sample range ``[low, high]`` widened by
        ``margin * (high - low)`` at each end, so that inputs just past the extremes seen (a test
        point, a hidden value) can stay on the grid instead of where the splines fade out.
        Coefficients: least squares of the old functions at the samples, written in place
        (optimizers keep working).

        The defaults are pykan's: ``grid_eps = 0.02``, nearly the sample quantiles, gives every cell
        its share of the samples, and ``margin = 0``. For small KANs fitted to smooth functions,
        ``grid_eps = 1`` (uniform, kept on the fast closed-form path; a spline's error depends on
        the data density only weakly) with ``margin = 0.01`` fits better (KAN toy formula, median
        test RMSE at grid 50: 6.5e-7 against 7.7e-5). In KAN-FNO training with grid updates the
        uniform grid diverged and the margin raised the error (benchmarks/RESULTS.md).
        """
        basis = self._grid_basis("update_grid")
        if not 0 < grid_eps <= 1:
            raise ConfigError(f"grid_eps must lie in (0, 1], got {grid_eps}")
        if not 0 <= margin < 1:
            raise ConfigError(f"margin must lie in [0, 1) (a fraction of the sample range), got {margin}")
        samples = x.detach().reshape(-1, self.in_features).to(torch.float64)
        ordered = samples.sort(dim=0).values
        size = basis.grid_size
        index = torch.linspace(0, ordered.shape[0] - 1, size + 1, device=ordered.device).round().long()
        quantiles = ordered[index].T  # (in, G + 1)
        low, high = ordered[0], ordered[-1]
        flat = (high - low) <= 1e-6 * (1 + low.abs())  # a constant input: a unit interval around it
        low, high = torch.where(flat, low - 0.5, low), torch.where(flat, high + 0.5, high)
        low, high = low - margin * (high - low), high + margin * (high - low)
        quantiles[:, 0], quantiles[:, -1] = low, high
        steps = torch.linspace(0, 1, size + 1, dtype=torch.float64, device=ordered.device)
        uniform = low[:, None] + (high - low)[:, None] * steps
        interior = torch.where(flat[:, None], uniform, grid_eps * uniform + (1 - grid_eps) * quantiles)
        self._refit(basis.with_interior(interior), samples)

    @torch.no_grad()
    def extend_grid(self, new_grid_size: int) -> None:
        """Refine the grid to ``new_grid_size`` intervals over the same range, keeping the functions.

        New points interpolate the old ones linearly in the index, so a multiple of the old size
        nests the grids and a B-spline function is kept exactly on the grid range; otherwise it is
        kept in the least-squares sense. Replaces ``coefficients`` (rebuild optimizers afterwards).
        """
        basis = self._grid_basis("extend_grid")
        if int(new_grid_size) != new_grid_size or new_grid_size < 1:
            raise ConfigError(f"new_grid_size must be a positive integer, got {new_grid_size}")
        old = basis.interior.to(torch.float64)
        size = basis.grid_size
        position = torch.arange(int(new_grid_size) + 1, dtype=torch.float64, device=old.device) * size / new_grid_size
        lower = position.floor().long().clamp(max=size - 1)
        fraction = position - lower
        interior = old[:, lower] + fraction * (old[:, lower + 1] - old[:, lower])
        steps = torch.linspace(0, 1, 8 * (int(new_grid_size) + basis.n_basis) + 64, dtype=torch.float64,
                               device=old.device)
        samples = old[:, 0] + (old[:, -1] - old[:, 0]) * steps[:, None]  # (points, in)
        self._refit(basis.with_interior(interior), samples)

    def _refit(self, new_basis: GridBasis, samples: torch.Tensor) -> None:
        """``C_new[j, i] = T_i C[j, i]`` with ``T_i = argmin ||B_new(x_i) T - B_old(x_i)||`` over the samples."""
        new_basis = new_basis.to(device=samples.device, dtype=torch.float64)
        old_features = self.basis(samples.to(self.coefficients.device)).to(torch.float64).transpose(0, 1)
        new_features = new_basis(samples).transpose(0, 1)  # (in, N, n_new)
        gram = new_features.mT @ new_features
        ridge = 1e-12 * gram.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-300)
        gram = gram + ridge[:, None, None] * torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        transfer = torch.linalg.solve(gram, new_features.mT @ old_features.to(samples.device))  # (in, n_new, n_old)
        coefficients = self.coefficients.detach().to(device=samples.device, dtype=torch.float64)
        refit = torch.einsum("inb,oib->oin", transfer, coefficients).contiguous()
        dtype, device = self.coefficients.dtype, self.coefficients.device
        self.basis = new_basis.to(device=device, dtype=dtype)
        if refit.shape == self.coefficients.shape:  # in place: optimizers keep their reference
            self.coefficients.data.copy_(refit)
        else:
            self.coefficients = nn.Parameter(refit.to(device=device, dtype=dtype))
        self._calls, self._warned = 0, False

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + "edge_mask" in state_dict and self.edge_mask is None:  # a pruned layer's weights: make room
            self.edge_mask = torch.ones_like(state_dict[prefix + "edge_mask"])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class PointwiseKAN(nn.Module):
    """A KANLinear over the channel axis: ``(batch, in, *spatial) -> (batch, out, *spatial)``.

    Same arguments as :class:`KANLinear`; channels are moved last internally.
    """

    def __init__(self, in_channels: int, out_channels: int, **kan_options):
        super().__init__()
        self.kan = KANLinear(in_channels, out_channels, **kan_options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 2:
            raise ShapeError(f"PointwiseKAN expects (batch, {self.kan.in_features}, *spatial), got {tuple(x.shape)}")
        return self.kan(x.movedim(1, -1)).movedim(-1, 1)


def mean_abs_edges(x, features, base_weight, coefficients) -> torch.Tensor:
    """``mean_n |phi_ji(x_ni)|`` as ``(out, in)``, differentiable, in checkpointed row blocks.

    Each block forms ``(in, rows, out)`` with one batched GEMM ``B_i (rows, n) @ C_i (n, out)`` and
    sums over its rows at once; the blocks are recomputed in backward, so the memory stays one block.
    """
    in_features, n_basis = features.shape[-2:]
    out_features = coefficients.shape[0]
    rows, flat_features = x.reshape(-1, in_features), features.reshape(-1, in_features, n_basis)
    block = max(1, EDGE_BLOCK_ELEMENTS // (in_features * out_features))
    total = 0
    for start in range(0, rows.shape[0], block):
        total = total + checkpoint(_block_abs_sum, rows[start:start + block], flat_features[start:start + block],
                                   base_weight, coefficients, use_reentrant=False)
    return total / max(1, rows.shape[0])


def _block_abs_sum(x, features, base_weight, coefficients):
    phi = torch.bmm(features.transpose(0, 1), coefficients.permute(1, 2, 0))  # (in, rows, out)
    if base_weight is not None:
        phi = phi + F.silu(x).T.unsqueeze(-1) * base_weight.T.unsqueeze(1)
    return phi.abs().sum(1).T


def kan_layers(model: nn.Module) -> list[KANLinear]:
    return [module for module in model.modules() if isinstance(module, KANLinear)]


@contextlib.contextmanager
def record_edge_scales(model: nn.Module):
    """Within the block, every KANLinear of ``model`` stores ``edge_scale`` = mean |phi_ji| over its batch."""
    layers = kan_layers(model)
    for layer in layers:
        layer.record_edge_scale = True
    try:
        yield layers
    finally:
        for layer in layers:
            layer.record_edge_scale = False


def edge_entropy(scale: torch.Tensor) -> torch.Tensor:
    """``S = -sum p log p`` with ``p = s / sum s`` over all edges of a layer (KAN paper, eq. 2.20)."""
    p = scale / scale.sum().clamp_min(torch.finfo(scale.dtype).tiny)
    return -(p * torch.log(p.clamp_min(torch.finfo(scale.dtype).tiny))).sum()


def regularization(model: nn.Module, l1: float = 1.0, entropy: float = 2.0, source: str = "activations"):
    """``sum_layers l1 * |Phi|_1 + entropy * S(Phi)`` over the KANLinear layers of ``model``.

    ``source="activations"``: ``|phi_ji|_1`` = mean |phi_ji| over the last batch run inside
    :func:`record_edge_scales` (the KAN paper's form); ``"coefficients"``: the cheaper
    weight-based ``mean_k |c_jik| + |w_ji|``.
    """
    if source not in ("activations", "coefficients"):
        raise ConfigError(f"regularization source must be 'activations' or 'coefficients', got '{source}'")
    total = 0
    for layer in kan_layers(model):
        scale = layer.edge_scale if source == "activations" else layer.coefficient_scale()
        if scale is None:
            raise ConfigError("no recorded activations: run the forward pass inside record_edge_scales(model), "
                              "or use source='coefficients'")
        total = total + l1 * scale.sum() + entropy * edge_entropy(scale)
    return total


def prune(layer: KANLinear, threshold: float) -> dict:
    """Mask the edges whose importance is below ``threshold``; report edges and dead nodes.

    Importance is the recorded mean |phi_ji| when available, else :meth:`KANLinear.coefficient_scale`.
    Returns ``{"edges_kept", "edges_pruned", "dead_inputs", "dead_outputs"}`` (nodes with no edge left).
    """
    importance = layer.edge_scale if layer.edge_scale is not None else layer.coefficient_scale()
    keep = importance.detach() >= threshold
    if layer.edge_mask is not None:
        keep &= layer.edge_mask
    layer.edge_mask = keep
    return {"edges_kept": int(keep.sum()), "edges_pruned": int((~keep).sum()),
            "dead_inputs": (~keep.any(0)).nonzero().flatten().tolist(),
            "dead_outputs": (~keep.any(1)).nonzero().flatten().tolist()}


@contextlib.contextmanager
def grid_update_hooks(model: nn.Module, grid_eps: float = 0.02, margin: float = 0.0):
    """Within the block, each grid-based KANLinear of ``model`` refits its grid to its input just before use.

    Run a forward pass inside (through any wrapper around ``model``: a task's normalization, a rollout):
    layers update in forward order, so each sees inputs from already-updated layers, and each only at
    its first call. Yields the layer count.
    """
    layers = [layer for layer in kan_layers(model) if isinstance(layer.basis, GridBasis)]
    handles = {}

    def update_once(layer, args):
        layer.update_grid(args[0], grid_eps, margin)
        handles.pop(layer).remove()

    handles.update({layer: layer.register_forward_pre_hook(update_once) for layer in layers})
    try:
        with torch.no_grad():
            yield len(layers)
    finally:
        for handle in handles.values():
            handle.remove()


def update_grids(model: nn.Module, x: torch.Tensor, grid_eps: float = 0.02, margin: float = 0.0) -> int:
    """Run ``model(x)`` once inside :func:`grid_update_hooks`; returns the number of layers updated."""
    with grid_update_hooks(model, grid_eps, margin) as count:
        model(x)
    return count

