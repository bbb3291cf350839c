"""Attention over sets of points (meshes, point clouds, flattened grids), masked and chunkable.

Every sum over points leaves padded points out (``mask (B, N)`` True at real points, ``None`` when
nothing is padded), so a padded sample gives at its real points what it gives alone. The attentions here
are sums over points, ``sum_i f(x_i)``: with ``chunk`` points at a time they are accumulated chunk by
chunk (each chunk recomputed in the backward pass, ``torch.utils.checkpoint``), so that only ``chunk``
points' intermediates (projections, slice weights) exist at once; :func:`map_over_points` does the same for
pointwise maps (the models' feed-forward nets). Point tensors are channels-last,
``(B, N, C)``; heads are ``(B, H, N, D)``.

* :class:`LinearAttention`: ``z = Q (K^T V) / n`` (Galerkin, K and V normalized), the same with Q and K
  normalized (Fourier form, ``(Q K^T) V / n`` computed in this order by associativity), or the
  normalized form ``z_t = sum_i (q_t . k_i) v_i / sum_i (q_t . k_i)`` with softmax-ed features (GNOT).
* :class:`PhysicsAttention` (Transolver): points are softly assigned to G slices,
  ``w_i = softmax(logits(x_i) / tau)``; slice tokens ``z_g = sum_i w_ig x_i / sum_i w_ig``; attention
  among the G tokens; each point gets back ``sum_g w_ig z'_g``.

Helpers to treat grids and point sets alike (:func:`as_point_set`, :func:`as_model_output`) and to find
the coordinate dimension of training data (:func:`fit_dimension`) are shared by the point operators.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.coordinates import bounding_box, grid_coordinates, unit_box

ATTENTION_FORMS = ("galerkin", "fourier", "normalized")


# ---- points, padding and chunks -----------------------------------------------------------------------

def point_slices(n: int, chunk: int | None) -> list[slice]:
    """Consecutive ranges covering ``0..n-1``, ``chunk`` points each (one range when ``chunk`` is None)."""
    if chunk is None or chunk >= n:
        return [slice(0, n)]
    return [slice(start, min(start + chunk, n)) for start in range(0, n, chunk)]


def masked_sum(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``(B, N, ...) -> (B, ...)``: the sum over real points."""
    if mask is not None:
        values = torch.where(mask.reshape(*mask.shape, *[1] * (values.ndim - 2)), values, 0)
    return values.sum(1)


def point_counts(mask: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor:
    """``(B,)`` number of real points per sample, in ``like``'s dtype."""
    if mask is None:
        return torch.full((like.shape[0],), n, dtype=like.dtype, device=like.device)
    return mask.sum(1).to(like.dtype)


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``(B, N, ...) -> (B, ...)``: the mean over real points."""
    total = masked_sum(values, mask)
    counts = point_counts(mask, values.shape[1], total)
    return total / counts.reshape(-1, *[1] * (total.ndim - 1))


def _run(function: Callable, arguments: list, chunked: bool):
    if chunked and torch.is_grad_enabled():
        return checkpoint(function, *arguments, use_reentrant=False)
    return function(*arguments)


def sum_over_points(function: Callable, tensors: Sequence[torch.Tensor], mask: torch.Tensor | None,
                    chunk: int | None) -> tuple[torch.Tensor, ...]:
    """``function(part, *point_chunks, mask_chunk)`` (a tuple of sums over the chunk's points) summed over chunks.

    ``part`` is the chunk's slice of the points; ``tensors`` are ``(B, N, ...)``; ``mask_chunk`` is None when
    ``mask`` is. Partial sums are accumulated in at least float32, so bf16 chunks do not lose the total.
    """
    totals = None
    n = tensors[0].shape[1]
    slices = point_slices(n, chunk)
    for part in slices:
        arguments = [part] + [t[:, part] for t in tensors] + [None if mask is None else mask[:, part]]
        sums = _run(function, arguments, chunk is not None)
        sums = [s.to(torch.promote_types(s.dtype, torch.float32)) for s in sums]
        totals = sums if totals is None else [t + s for t, s in zip(totals, sums)]
    return tuple(totals)


def map_over_points(function: Callable, tensors: Sequence[torch.Tensor], chunk: int | None) -> torch.Tensor:
    """``function(part, *point_chunks) -> (B, n, ...)`` on each chunk of points (``part`` its slice of the
    points), concatenated along the points."""
    n = tensors[0].shape[1]
    slices = point_slices(n, chunk)
    outputs = [_run(function, [part] + [t[:, part] for t in tensors], chunk is not None) for part in slices]
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``(B, N, H * D) -> (B, H, N, D)``."""
    return x.unflatten(-1, (n_heads, -1)).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, N, D) -> (B, N, H * D)``."""
    return x.transpose(1, 2).flatten(2)


# ---- grids and point sets alike -------------------------------------------------------------------------

def as_point_set(name: str, in_channels: int, dim: int, x: torch.Tensor, coords: torch.Tensor | None,
                 mask: torch.Tensor | None, queries: torch.Tensor | None = None, domain=None):
    """``(features (B, N, C), coords (B, N, d), mask, grid shape or None)`` of a model's inputs.

    Grids ``(B, C, *S)`` (``coords`` None) become their ``prod(S)`` nodes with coordinates ``i / (n - 1)``;
    point sets ``(B, C, N)`` come with ``coords (B, d, N)``, mapped onto the unit box by
    ``(x - low) / (high - low)`` when a ``domain = [low, high]`` is given (else used as they are). Padded
    points' features and coordinates are zeroed, so that whatever they held cannot reach a sum (not even inf
    or NaN).
    """
    if queries is not None:
        raise ConfigError(f"{name} predicts at its input points; these data ask for other query points "
                          "(queries): use a model that predicts at queries (deeponet) or data without them")
    if x.ndim < 3 or x.shape[1] != in_channels:
        raise ShapeError(f"{name} expects (batch, {in_channels}, *points), got shape {tuple(x.shape)}")
    if coords is None:
        if mask is not None:
            raise ShapeError(f"{name}: a mask needs point coordinates (coords)")
        grid = tuple(x.shape[2:])
        if len(grid) != dim:
            raise ShapeError(f"{name} was built for {dim}-D points; got a {len(grid)}-D grid {list(grid)}")
        nodes = grid_coordinates(grid, dtype=x.dtype, device=x.device).flatten(1).T
        return x.flatten(2).transpose(1, 2), nodes.expand(x.shape[0], -1, -1), None, grid
    if x.ndim != 3 or coords.ndim != 3 or coords.shape[0] != x.shape[0] or coords.shape[2] != x.shape[2]:
        raise ShapeError(f"{name} expects inputs (B, C, N) and coords (B, d, N), got {tuple(x.shape)} "
                         f"and {tuple(coords.shape)}")
    if coords.shape[1] != dim:
        raise ShapeError(f"{name} was built for {dim}-D points; got {coords.shape[1]}-D coordinates")
    features, points = x.transpose(1, 2), coords.transpose(1, 2).to(x.dtype)
    if domain is not None:
        low, size = unit_box(*(torch.tensor(side, dtype=x.dtype, device=x.device) for side in domain))
        points = (points - low) / size
    if mask is not None:
        if mask.shape != (x.shape[0], x.shape[2]) or mask.dtype != torch.bool:
            raise ShapeError(f"{name}: mask must be a bool (B, N) = {(x.shape[0], x.shape[2])} tensor, "
                             f"got {mask.dtype} {tuple(mask.shape)}")
        features = torch.where(mask[..., None], features, 0)
        points = torch.where(mask[..., None], points, 0)
    return features, points, mask, None


def as_model_output(y: torch.Tensor, grid: tuple[int, ...] | None, mask: torch.Tensor | None) -> torch.Tensor:
    """``(B, N, C) ->`` channel-first ``(B, C, *grid)`` on grids, ``(B, C, N)`` (zero at padding) on points."""
    if mask is not None:
        y = torch.where(mask[..., None], y, 0)
    y = y.transpose(1, 2)
    return y if grid is None else y.reshape(*y.shape[:2], *grid)


def fit_dimension(model, train) -> dict:
    """``{"dim": d, "domain": box}`` of the training data: the grid axes or point dimension, and the points'
    bounding box (:func:`~oplearn.layers.coordinates.bounding_box`) unless ``model.hyper.domain`` is set.
    An unset ``model.hyper.dim`` is set to ``d`` and the model's layers built (``model._build()``); a ``dim``
    already set is checked against it."""
    found = len(train.resolution) if train.kind == "grid" else int(train.dim)
    given = model.hyper.dim
    if given is not None and given != found:
        raise ConfigError(f"model {model.name}: dim={given} does not match the training data's {found}-D points; "
                          "leave dim unset to take it from the data")
    updates = {"dim": found} if model.hyper.domain is not None else {"dim": found, "domain": bounding_box(train)}
    model.hyper = model.hyper.model_copy(update=updates)
    if given is None:
        model._build()
    if "domain" in updates:  # as the config stores it: lists
        updates["domain"] = [list(side) for side in updates["domain"]]
    return updates


def require_dimension(name: str, dim: int | None) -> int:
    if dim is None:
        raise ConfigError(f"model {name} has no coordinate dimension yet: give dim=d, or call fit_to_data(train)")
    if not 1 <= dim <= 3:
        raise ConfigError(f"model {name}: dim must be 1, 2 or 3, got {dim}")
    return dim


# ---- linear attention ---------------------------------------------------------------------------------

class HeadNorm(nn.Module):
    """Layer normalization of each head's ``D`` features, with its own scale and shift per head."""

    def __init__(self, n_heads: int, head_width: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_heads, 1, head_width))
        self.bias = nn.Parameter(torch.zeros(n_heads, 1, head_width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, N, D) -> (B, H, N, D)``."""
        return F.layer_norm(x, x.shape[-1:], eps=self.eps) * self.weight + self.bias


class LinearAttention(nn.Module):
    """Softmax-free attention from query points to key points in ``O(N D^2)``: ``(B, N_q, C) -> (B, N_q, C)``.

    Forms (per head, ``n`` the number of real key points):

    * ``galerkin``: ``z = Q (LN(K)^T LN(V)) / n``  (Cao 2021, a Petrov-Galerkin projection);
    * ``fourier``:  ``z = (LN(Q) LN(K)^T) V / n``, evaluated as ``LN(Q) (LN(K)^T V) / n`` (the same product);
    * ``normalized``: ``z_t = q_t (K^T V) / (q_t . sum_i k_i)`` with ``q, k`` softmax-ed over features
      (GNOT), every weight ``q_t . k_i`` positive and the weights of a query summing to one.

    With ``n_sources > 1`` the keys come from several functions on the same points, each with its own key
    and value maps, and the query attends to each: ``z = sum_l z^l`` (GNOT's heterogeneous attention).
    ``coordinate_dim > 0`` appends the points' coordinates to every head's queries, keys and values after
    normalization (as Cao does), so the head width becomes ``D + d`` before the output projection.
    """

    def __init__(self, width: int, n_heads: int, form: str, coordinate_dim: int = 0, n_sources: int = 1):
        super().__init__()
        if form not in ATTENTION_FORMS:
            raise ConfigError(f"unknown attention '{form}'; choose one of: {', '.join(ATTENTION_FORMS)}")
        if width % n_heads:
            raise ConfigError(f"width {width} must be a multiple of n_heads {n_heads}")
        head = width // n_heads
        self.form, self.n_heads, self.coordinate_dim = form, n_heads, coordinate_dim
        self.query = nn.Linear(width, width)
        self.keys = nn.ModuleList(nn.Linear(width, width) for _ in range(n_sources))
        self.values = nn.ModuleList(nn.Linear(width, width) for _ in range(n_sources))
        self.norms = nn.ModuleList(HeadNorm(n_heads, head) for _ in range(2)) if form != "normalized" else None
        self.output = nn.Linear(n_heads * (head + coordinate_dim), width)

    def _with_coordinates(self, heads: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        if not self.coordinate_dim:
            return heads
        points = coords[:, None].expand(-1, self.n_heads, -1, -1).to(heads.dtype)
        return torch.cat([heads, points], dim=-1)

    def key_value_sums(self, source: int, keys_in: torch.Tensor, coords: torch.Tensor, mask: torch.Tensor | None,
                       chunk: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sum_i k_i v_i^T (B, H, D, D), normalizer)`` of key source ``source`` over the real points: the
        normalizer is the number of real points ``(B, 1, 1, 1)`` for galerkin and fourier, ``sum_i k_i (B, H, D)``
        for normalized."""

        def sums(part, x, points, keep):
            k = split_heads(self.keys[source](x), self.n_heads)
            v = split_heads(self.values[source](x), self.n_heads)
            if self.form == "galerkin":
                k, v = self.norms[0](k), self.norms[1](v)
            elif self.form == "fourier":
                k = self.norms[1](k)
            else:
                k = k.softmax(-1)
            k, v = self._with_coordinates(k, points), self._with_coordinates(v, points)
            if keep is not None:
                k = torch.where(keep[:, None, :, None], k, 0)
            return torch.einsum("bhnd,bhne->bhde", k, v), k.sum(2)

        kv, k_sum = sum_over_points(sums, [keys_in, coords], mask, chunk)
        if self.form == "normalized":
            return kv, k_sum
        return kv, point_counts(mask, keys_in.shape[1], kv).reshape(-1, 1, 1, 1)

    def attend(self, queries_in: torch.Tensor, coords: torch.Tensor,
               sums: Sequence[tuple[torch.Tensor, torch.Tensor]], chunk: int | None) -> torch.Tensor:
        """``(B, N_q, C)`` attention outputs of the queries, given each source's :meth:`key_value_sums`."""

        def attend_chunk(part, x, points):
            q = split_heads(self.query(x), self.n_heads)
            if self.form == "fourier":
                q = self.norms[0](q)
            elif self.form == "normalized":
                q = q.softmax(-1)
            q = self._with_coordinates(q, points)
            z = 0
            for kv, normalizer in sums:
                part_z = torch.einsum("bhnd,bhde->bhne", q, kv.to(q.dtype))
                if self.form == "normalized":
                    z = z + part_z / torch.einsum("bhnd,bhd->bhn", q, normalizer.to(q.dtype))[..., None]
                else:
                    z = z + part_z / normalizer.to(q.dtype)
            return self.output(merge_heads(z))

        return map_over_points(attend_chunk, [queries_in, coords], chunk)

    def forward(self, queries_in: torch.Tensor, keys_in: torch.Tensor | Sequence[torch.Tensor],
                coords: torch.Tensor, mask: torch.Tensor | None = None, chunk: int | None = None) -> torch.Tensor:
        """``queries_in (B, N, C)``; ``keys_in (B, N, C)``, one per source (the queries themselves for
        self-attention), on the same points; ``coords (B, N, d)`` (used when ``coordinate_dim > 0``);
        ``mask (B, N)`` -> ``(B, N, C)``."""
        sources = [keys_in] if isinstance(keys_in, torch.Tensor) else list(keys_in)
        if len(sources) != len(self.keys):
            raise ShapeError(f"attention built for {len(self.keys)} key sources got {len(sources)}")
        sums = [self.key_value_sums(i, keys, coords, mask, chunk) for i, keys in enumerate(sources)]
        return self.attend(queries_in, coords, sums, chunk)


# ---- physics attention ------------------------------------------------------------------------------------

class PhysicsAttention(nn.Module):
    """Transolver's attention through G learned slices: ``(B, N, C)`` projections ``-> (B, N, C)``.

    Per head, from the slice projection ``s_i`` and the feature projection ``f_i`` of point i:
    ``w_i = softmax_g(L s_i / tau)`` (``tau`` a learned temperature per head, or per point with
    ``adaptive_temperature``: ``tau_i = tau + a . s_i``, Transolver++); slice tokens
    ``z_g = sum_i w_ig f_i / (sum_i w_ig + eps)`` over real points; ``z' = softmax(q k^T / sqrt(D)) v`` among
    the G tokens; point outputs ``sum_g w_ig z'_g``, heads merged and projected. With ``gumbel_slices`` the
    slice logits get Gumbel noise in training (Transolver++'s reparameterized slices).

    The projections are computed by the caller (pointwise linear maps, or convolutions on grids), so that
    this module sees only points and can work on chunks of them.
    """

    def __init__(self, width: int, n_heads: int, n_slices: int, dropout: float = 0.0,
                 adaptive_temperature: bool = False, gumbel_slices: bool = False, eps: float = 1e-5):
        super().__init__()
        if width % n_heads:
            raise ConfigError(f"width {width} must be a multiple of n_heads {n_heads}")
        head = width // n_heads
        self.n_heads, self.eps, self.gumbel_slices = n_heads, eps, gumbel_slices
        self.slice_logits = nn.Linear(head, n_slices)
        nn.init.orthogonal_(self.slice_logits.weight)
        self.temperature = nn.Parameter(torch.full((n_heads, 1, 1), 0.5))
        self.temperature_shift = nn.Linear(head, 1) if adaptive_temperature else None
        self.query, self.key, self.value = (nn.Linear(head, head, bias=False) for _ in range(3))
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(width, width)
        self.output_dropout = nn.Dropout(dropout)

    def slice_weights(self, slice_in: torch.Tensor, keep: torch.Tensor | None, seed: int | None) -> torch.Tensor:
        """``(B, n, C) -> (B, H, n, G)``: each point's weights over the slices, zero at padded points."""
        s = split_heads(slice_in, self.n_heads)
        temperature = self.temperature
        if self.temperature_shift is not None:
            temperature = (temperature + self.temperature_shift(s)).clamp_min(0.01)
        logits = self.slice_logits(s)
        if seed is not None:  # the same noise whenever this chunk is (re)computed
            generator = torch.Generator(device=logits.device).manual_seed(seed)
            uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=torch.float32)
            logits = logits - torch.log(-torch.log(uniform.clamp(1e-10, 1 - 1e-7))).to(logits.dtype)
        weights = (logits / temperature).softmax(-1)
        return weights if keep is None else torch.where(keep[:, None, :, None], weights, 0)

    def forward(self, features: torch.Tensor, slice_in: torch.Tensor, mask: torch.Tensor | None = None,
                chunk: int | None = None) -> torch.Tensor:
        """``features, slice_in (B, N, C)`` (the two projections of the points), ``mask (B, N)`` -> ``(B, N, C)``."""
        base_seed = None
        if self.gumbel_slices and self.training:
            base_seed = int(torch.randint(0, 2**62, (1,)).item())

        def seed(part: slice) -> int | None:  # one per chunk, the same in the forward and the backward pass
            return None if base_seed is None else base_seed + part.start

        def slice_sums(part, f, s, keep):
            weights = self.slice_weights(s, keep, seed(part))
            return torch.einsum("bhng,bhnd->bhgd", weights, split_heads(f, self.n_heads)), weights.sum(2)

        if chunk is None or chunk >= features.shape[1]:  # one pass: the slice weights computed once
            weights = self.slice_weights(slice_in, mask, seed(slice(0, features.shape[1])))
            totals = torch.einsum("bhng,bhnd->bhgd", weights, split_heads(features, self.n_heads))
            tokens = self._attend_among_slices(totals, weights.sum(2), features.dtype)
            return self.output_dropout(self.output(merge_heads(weights @ tokens)))

        totals, norms = sum_over_points(slice_sums, [features, slice_in], mask, chunk)
        tokens = self._attend_among_slices(totals, norms, features.dtype)

        def deslice(part, s, keep=None):  # the chunk's slice weights again: nothing of size N is kept
            weights = self.slice_weights(s, keep, seed(part))
            return self.output_dropout(self.output(merge_heads(weights @ tokens.to(weights.dtype))))

        return map_over_points(deslice, [slice_in] if mask is None else [slice_in, mask], chunk)

    def _attend_among_slices(self, totals: torch.Tensor, norms: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Slice tokens ``totals / (norms + eps)`` ``(B, H, G, D)``, then softmax attention among them."""
        tokens = (totals / (norms[..., None] + self.eps)).to(dtype)
        q, k, v = self.query(tokens), self.key(tokens), self.value(tokens)
        attention = self.dropout((q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1))
        return attention @ v
