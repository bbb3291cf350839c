"""Empirical neural tangent kernel of any ``nn.Module``.

For a model ``F(theta, x)`` with ``P`` outputs per sample (all channels and grid
points, flattened) and ``J(x) = dF(theta, x)/dtheta`` of shape ``(P, n_params)``
over the trainable parameters (SpectralConv's complex weights count as their
real and imaginary parts),

    K(x, x') = J(x) J(x')^T      (P x P per pair of samples).

``outputs`` chooses what is kept: ``"full"`` the whole ``(N1*P, N2*P)`` matrix,
``"diagonal"`` the matching outputs ``K_jj`` as ``(N1, N2, P)``, ``"trace"``
``sum_j K_jj`` as ``(N1, N2)``: a kernel between input functions.

Three methods give the same numbers at different costs:

- ``jacobian``: per-sample Jacobians by ``vmap(jacrev)``, contracted;
  memory ``(n1 + n2) * P * n_params`` per block of samples.
- ``vjp``: for every output direction ``e`` of ``x2`` the vector ``J(x2)^T e`` by
  ``vjp``, then ``J(x1) (J(x2)^T e)`` by ``jvp``; little memory, many passes.
- ``structured``: layer-wise rules (:mod:`oplearn.analysis.ntk_structured`) for
  Linear, Conv1d/2d/3d, SpectralConv and KANLinear; every other trainable
  parameter goes through ``jacobian`` (or ``vjp`` when its Jacobian is too big).

``auto`` (the cost model): ``structured`` when its rules cover at least half of
the trainable parameters, else ``jacobian`` when one block's Jacobian fits
``MEMORY_BUDGET`` bytes, else ``vjp``.

Samples must be independent (evaluate BatchNorm/dropout models in ``eval()``).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from oplearn.analysis.ntk_structured import rule_params, structured_block
from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.kan import KANLinear

METHODS = ("auto", "jacobian", "vjp", "structured")
OUTPUTS = ("trace", "full", "diagonal")
MEMORY_BUDGET = 8 * 2**30  # bytes: the largest Jacobian block (and kernel) a call may hold


def empirical_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None, *, method: str = "auto",
                  outputs: str = "trace", chunk: int | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Empirical NTK between the samples of ``x1`` ``(N1, *shape)`` and ``x2`` ``(N2, *shape)`` (default ``x1``).

    Args:
        model: any module; its trainable (``requires_grad``) parameters define ``J``.
        method: "auto", "jacobian", "vjp" or "structured" (see the module docstring).
        outputs: "trace" -> ``(N1, N2)``, "full" -> ``(N1*P, N2*P)`` (row ``n*P + j``),
            "diagonal" -> ``(N1, N2, P)``.
        chunk: samples per tile of ``(x1, x2)`` blocks (default: all at once); bounds memory.
        dtype: cast parameters, buffers and inputs (e.g. ``torch.float64``); the model is not changed.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown NTK method '{method}'; choose one of: {', '.join(METHODS)}")
    if outputs not in OUTPUTS:
        raise ConfigError(f"unknown NTK outputs '{outputs}'; choose one of: {', '.join(OUTPUTS)}")
    if chunk is not None and (int(chunk) != chunk or chunk < 1):
        raise ConfigError(f"chunk is a positive number of samples per block, got {chunk}")
    setup = _Setup(model, dtype)
    x1 = setup.inputs(x1, "x1")
    x2 = None if x2 is None else setup.inputs(x2, "x2")
    if x2 is not None and x2.shape[1:] != x1.shape[1:]:
        raise ShapeError(f"x1 and x2 must have the same sample shape, got {tuple(x1.shape[1:])} and "
                         f"{tuple(x2.shape[1:])}; pass inputs of the same channels and grid size")
    n1, n2 = x1.shape[0], (x1 if x2 is None else x2).shape[0]
    with _quiet_kan_checks(model):
        covered, rest = setup.plan(x1[:1])
        size = chunk or max(n1, n2)
        if outputs == "full" and n1 * n2 * setup.n_outputs**2 * setup.itemsize > MEMORY_BUDGET:
            raise ConfigError(f"the full kernel ({n1 * setup.n_outputs} x {n2 * setup.n_outputs}) needs "
                              f"{_gib(n1 * n2 * setup.n_outputs**2 * setup.itemsize)}; use outputs='trace' or "
                              "'diagonal'")
        samples = min(size, n1) + (0 if x2 is None and size >= n1 else min(size, n2))  # in one jacobian tile
        if method == "auto":
            method = setup.choose(rest, samples)
        if method == "jacobian":
            setup.check_jacobian(setup.trainable, samples)
        return _tiled(setup, method, covered, rest, x1, x2, size, outputs)


class _Setup:
    """Parameters (detached, cast), buffers, the trainable names and the output size of ``model``."""

    def __init__(self, model: nn.Module, dtype: torch.dtype | None):
        self.model = model
        tensors = list(model.parameters()) + list(model.buffers())
        devices = {t.device for t in tensors}
        if len(devices) > 1:
            raise ConfigError(f"the model's parameters lie on several devices ({', '.join(map(str, devices))}); "
                              "move it to one device with model.to(device)")
        self.device = devices.pop() if devices else torch.device("cpu")
        def cast(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(dtype) if dtype is not None and t.is_floating_point() else t.detach()

        self.params = {name: cast(p) for name, p in model.named_parameters()}
        self.buffers = {name: cast(b) for name, b in model.named_buffers()}
        self.trainable = [name for name, p in model.named_parameters() if p.requires_grad]
        if not self.trainable:
            raise ConfigError("the model has no trainable parameters; the NTK needs some with requires_grad=True")
        self.dtype = dtype or next(p.dtype for p in self.params.values() if p.is_floating_point())
        self.itemsize = torch.empty((), dtype=self.dtype).element_size()
        self.n_params = {name: self.params[name].numel() for name in self.trainable}

    def inputs(self, x: torch.Tensor, name: str) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[0] < 1:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(f"{name} must be a tensor (N, *sample_shape) with N >= 1, got {got}")
        return x.to(device=self.device, dtype=self.dtype if x.is_floating_point() else x.dtype)

    def state(self, free: dict | None = None) -> tuple[dict, dict]:
        return ({**self.params, **(free or {})}, self.buffers)

    def plan(self, probe: torch.Tensor) -> tuple[dict, list[str]]:
        """Modules a structured rule covers (called exactly once per forward), with their trainable flags."""
        calls: dict[nn.Module, int] = {}
        handles = [m.register_forward_hook(lambda m, a, o: calls.__setitem__(m, calls.get(m, 0) + 1))
                   for m in self.model.modules()]
        try:
            with torch.no_grad():
                self.n_outputs = functional_call(self.model, self.state(), (probe,))[0].numel()
        finally:
            for handle in handles:
                handle.remove()
        trainable, covered = set(self.trainable), {}
        owners: dict[int, int] = {}  # a parameter tied into several places is left to the generic methods
        for _, p in self.model.named_parameters(remove_duplicate=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
        for prefix, module in self.model.named_modules():
            names = rule_params(module)
            if names is None or calls.get(module, 0) != 1:
                continue
            if any(owners.get(id(p), 1) > 1 for p in module.parameters(recurse=False)):
                continue
            full = {n: f"{prefix}.{n}" if prefix else n for n in names}
            flags = {n: full[n] in trainable for n in names}
            if any(flags.values()):
                covered[module] = (flags, [full[n] for n in names if flags[n]])
        done = {name for _, names in covered.values() for name in names}
        return {m: flags for m, (flags, _) in covered.items()}, [n for n in self.trainable if n not in done]

    def choose(self, rest: list[str], samples: int) -> str:
        total = sum(self.n_params.values())
        if 2 * (total - sum(self.n_params[n] for n in rest)) >= total:
            return "structured"
        return "jacobian" if self._jacobian_bytes(self.trainable, samples) <= MEMORY_BUDGET else "vjp"

    def _jacobian_bytes(self, names, samples: int) -> int:
        return samples * self.n_outputs * sum(self.n_params[n] for n in names) * self.itemsize

    def check_jacobian(self, names, samples: int) -> None:
        need = self._jacobian_bytes(names, samples)
        if need > MEMORY_BUDGET:
            raise ConfigError(f"the Jacobian of {samples} samples x {self.n_outputs} outputs x "
                              f"{sum(self.n_params[n] for n in names)} parameters needs {_gib(need)} "
                              f"(budget {_gib(MEMORY_BUDGET)}); use method='structured' or a smaller chunk")


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


@contextlib.contextmanager
def _quiet_kan_checks(model: nn.Module):
    """KANLinear's occasional range check calls ``.item()``, which torch.func transforms refuse: skip it here."""
    layers = [m for m in model.modules() if isinstance(m, KANLinear)]
    saved = [m._warned for m in layers]
    for m in layers:
        m._warned = True
    try:
        yield
    finally:
        for m, old in zip(layers, saved):
            m._warned = old


def _blocks(n: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def _tiled(setup, method, covered, rest, x1, x2, size, outputs) -> torch.Tensor:
    """Fill the kernel tile by tile; with ``x2=None`` only the upper tiles are computed and mirrored."""
    same = x2 is None
    xb_all = x1 if same else x2
    n1, n2, P = x1.shape[0], xb_all.shape[0], setup.n_outputs
    shape = {"full": (n1, P, n2, P), "diagonal": (n1, n2, P), "trace": (n1, n2)}[outputs]
    kernel = torch.zeros(shape, dtype=setup.dtype, device=setup.device)
    rows, cols = _blocks(n1, size), _blocks(n2, size)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            if same and j < i:
                continue
            xa = x1[r]
            xb = None if same and i == j else xb_all[c]
            tile = _block(setup, method, covered, rest, xa, xb, outputs)
            _put(kernel, tile, r, c, outputs)
            if same and j > i:
                _put(kernel, _mirror(tile, outputs), c, r, outputs)
    return kernel.reshape(n1 * P, n2 * P) if outputs == "full" else kernel


def _put(kernel, tile, r, c, outputs):
    if outputs == "full":
        kernel[r, :, c, :] = tile
    else:
        kernel[r, c] = tile


def _mirror(tile: torch.Tensor, outputs: str) -> torch.Tensor:
    return {"full": lambda t: t.permute(2, 3, 0, 1), "diagonal": lambda t: t.transpose(0, 1),
            "trace": lambda t: t.T}[outputs](tile)


def _block(setup, method, covered, rest, xa, xb, outputs) -> torch.Tensor:
    """One tile by ``method``; ``structured`` adds the fallback parameters by jacobian (or vjp)."""
    if method == "jacobian":
        return jacobian_block(setup, setup.trainable, xa, xb, outputs)
    if method == "vjp":
        return vjp_block(setup, setup.trainable, xa, xb, outputs)
    kernel = structured_block(setup.model, setup.state(), covered, xa, xb, outputs) if covered else 0
    if rest:
        samples = xa.shape[0] + (0 if xb is None else xb.shape[0])
        fits = setup._jacobian_bytes(rest, samples) <= MEMORY_BUDGET
        kernel = kernel + (jacobian_block if fits else vjp_block)(setup, rest, xa, xb, outputs)
    return kernel


def _contract(ja: torch.Tensor, jb: torch.Tensor, outputs: str) -> torch.Tensor:
    """Jacobians ``(n1, P, p)``, ``(n2, P, p)`` -> one kernel tile."""
    if outputs == "full":
        return torch.einsum("njp,mlp->njml", ja, jb)
    if outputs == "diagonal":
        return torch.einsum("njp,mjp->nmj", ja, jb)
    return ja.flatten(1) @ jb.flatten(1).T


def jacobian_block(setup: _Setup, names: list[str], xa: torch.Tensor, xb: torch.Tensor | None,
                   outputs: str) -> torch.Tensor:
    """Tile from per-sample Jacobians w.r.t. the parameters ``names``: ``sum_params J_a J_b^T``."""
    model = setup.model

    def one_sample(free, x):
        return functional_call(model, setup.state(free), (x.unsqueeze(0),)).reshape(-1)

    free = {n: setup.params[n] for n in names}
    jac = vmap(jacrev(one_sample), in_dims=(None, 0))
    ja = jac(free, xa)
    jb = ja if xb is None else jac(free, xb)
    flat = lambda j: j.reshape(j.shape[0], j.shape[1], -1)  # noqa: E731
    return sum(_contract(flat(ja[n]), flat(jb[n]), outputs) for n in names)


def vjp_block(setup: _Setup, names: list[str], xa: torch.Tensor, xb: torch.Tensor | None,
              outputs: str) -> torch.Tensor:
    """Tile from NTK-vector products: ``K[:, :, m, q] = J(xa) (J(x_m)^T e_q)`` for each direction ``(m, q)``."""
    model, P = setup.model, setup.n_outputs
    xb = xa if xb is None else xb
    n1, n2 = xa.shape[0], xb.shape[0]
    free = {n: setup.params[n] for n in names}

    def batch(params, x):
        return functional_call(model, setup.state(params), (x,)).reshape(x.shape[0], -1)

    def pull(x, e):  # J(x)^T e for one sample
        return vjp(lambda p: batch(p, x.unsqueeze(0))[0], free)[1](e)[0]

    def push(v):  # J(xa) v
        return jvp(lambda p: batch(p, xa), (free,), (v,))[1]

    per_direction = (sum(setup.n_params[n] for n in names) + n1 * P) * setup.itemsize * 4
    step = max(1, min(n2 * P, MEMORY_BUDGET // 8 // per_direction))
    shape = {"full": (n1, P, n2, P), "diagonal": (n1, n2, P), "trace": (n1, n2, P)}[outputs]
    kernel = torch.zeros(shape, dtype=setup.dtype, device=setup.device)
    eye = torch.eye(P, dtype=setup.dtype, device=setup.device)
    for start in range(0, n2 * P, step):
        d = torch.arange(start, min(start + step, n2 * P), device=setup.device)
        m, q = d // P, d % P
        columns = vmap(push)(vmap(pull)(xb[m], eye[q]))  # (c, n1, P)
        if outputs == "full":
            kernel[:, :, m, q] = columns.permute(1, 2, 0)
        else:
            kernel[:, m, q] = columns[torch.arange(len(d)), :, q].T
    return kernel.sum(-1) if outputs == "trace" else kernel
