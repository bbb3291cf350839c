"""Layer-wise empirical NTK: (input Gram) x (output-cotangent Gram), never the full Jacobian.

A layer ``y_s = W a_s + b`` used at positions ``s`` (one position for a Linear on
``(n, in)``, every output pixel for a convolution, whose ``a_s`` is the unfolded
patch) gives output ``j`` of sample ``n`` the weight gradient

    dF_j(x_n)/dW = sum_s g_{jns} a_{ns}^T,      g_{jns} = dF_j(x_n)/dy_s,

so its share of the kernel is ``sum_{s,t} <a_{ns}, a_{mt}> <g_{jns}, g_{lmt}>`` (the
"gram" route, cheap for few positions) or ``<M_{jn}, M_{lm}>`` with ``M_{jn}`` that
layer's gradient formed for one direction chunk (the "grad" route, cheap when
positions are many). A bias is the column of ones appended to ``a``.

SpectralConv has its own complex matrix per kept mode ``k``: ``y_k = W_k^T xi_k``
with ``xi = forward_modes(x)`` (the kept part of ``rfftn(x)``). With the pair ``(Re W, Im W)`` as the parameters
the gradient is ``conj(xi_k) gamma_k^T`` read as (real, imaginary) parts, where
``gamma = dF/dRe y + i dF/dIm y`` (PyTorch's complex gradient), hence

    <G, G'> = Re[ (sum_i xi_i conj(xi'_i)) (sum_o conj(gamma_o) gamma'_o) ]   per mode.

Cotangents come from one backward per chunk of output directions: a zero "probe"
is added to each layer output (for SpectralConv, pushed through the layer's
inverse FFT), and the one-hot cotangent ``e_j`` is applied to every sample at once
(samples must not interact, e.g. no BatchNorm in training mode).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from oplearn.layers.kan import KANLinear
from oplearn.layers.pointwise import PointwiseLinear
from oplearn.layers.spectral import SpectralConv, forward_modes, inverse_modes

WORK_BYTES = 1 << 30  # cotangent memory per direction chunk
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def rule_params(module: nn.Module) -> tuple[str, ...] | None:
    """Names of the parameters a structured rule covers for ``module``, or None when it has no rule."""
    if type(module) in (nn.Linear, PointwiseLinear):
        return ("weight", "bias")
    if type(module) in _CONVS:
        simple_padding = not isinstance(module.padding, str) or module.padding == "valid"
        if module.groups == 1 and module.padding_mode == "zeros" and set(module.dilation) == {1} and simple_padding:
            return ("weight", "bias")
        return None
    if type(module) is SpectralConv:
        return ("weight_pairs",)
    if type(module) is KANLinear and module.edge_mask is None:
        return ("coefficients", "base_weight", "bias")
    return None


def _unfold(x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """Patches of a convolution input: ``(n, C, *L) -> (n, S, C * prod(kernel))`` (S output positions)."""
    dims = x.ndim - 2
    padding = (0,) * dims if isinstance(conv.padding, str) else conv.padding
    x = F.pad(x, [p for pad in reversed(padding) for p in (pad, pad)])
    for axis, (size, step) in enumerate(zip(conv.kernel_size, conv.stride)):
        x = x.unfold(2 + axis, size, step)  # (n, C, *Lout, *k) once all axes are done
    n, channels = x.shape[:2]
    x = x.permute(0, *range(2, 2 + dims), 1, *range(2 + dims, 2 + 2 * dims))
    return x.reshape(n, -1, channels * math.prod(conv.kernel_size))


@dataclass
class _Record:
    """One layer call: its input features, the zero probe on its output and how to read cotangents."""

    kind: str  # "linear" (real, shared over positions) or "spectral" (complex, one matrix per mode)
    inputs: torch.Tensor  # linear: (n, S, I); spectral: (n, K, I) complex
    probe: torch.Tensor
    channel_axis: int  # axis of the probe (batch axis 0) holding the output channels

    def cotangent(self, grad: torch.Tensor) -> torch.Tensor:
        """Batched probe gradient ``(c, n, ...)`` -> ``(c, n, S or K, O)``."""
        grad = grad.movedim(1 + self.channel_axis, -1)
        return grad.reshape(grad.shape[0], grad.shape[1], -1, grad.shape[-1])


def _linear_features(module: nn.Module, x: torch.Tensor, flags: dict[str, bool]) -> tuple[torch.Tensor, int]:
    """``a`` of the shared-weight rule ``(n, S, I)`` and the output channel axis of the layer."""
    if type(module) in _CONVS:
        rows, axis = _unfold(x, module), 1
    elif type(module) is PointwiseLinear:
        rows, axis = x.movedim(1, -1).reshape(x.shape[0], -1, x.shape[1]), 1
    elif type(module) is KANLinear:
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        rows, axis = None, x.ndim - 1
        parts = []
        if flags["coefficients"]:
            parts.append(module.basis(flat).flatten(-2))
        if flags["base_weight"]:
            parts.append(F.silu(flat))
        if flags["bias"]:
            parts.append(flat.new_ones(*flat.shape[:2], 1))
        return torch.cat(parts, dim=-1), axis
    else:
        rows, axis = x.reshape(x.shape[0], -1, x.shape[-1]), x.ndim - 1
    parts = [rows] if flags["weight"] else []
    if flags["bias"]:
        parts.append(rows.new_ones(*rows.shape[:2], 1))
    return torch.cat(parts, dim=-1), axis


class Cotangents:
    """Per-layer factors of a sample block for chunks of output directions.

    A chunk of ``c`` directions runs the model once on the block repeated ``c`` times, copy
    ``d`` receiving the cotangent ``e_{start+d}`` on every sample, so one ordinary backward
    gives all ``c`` cotangents (plain kernels, no vmap over the graph, custom autograd
    Functions work). Layer inputs are read from the first copy only. When the block is so
    large that a chunk holds one direction, one forward graph is kept and backpropagated
    once per direction instead.
    """

    def __init__(self, model: nn.Module, state: dict, covered: dict[nn.Module, dict[str, bool]], x: torch.Tensor):
        self.model, self.state, self.covered, self.x = model, state, covered, x
        self._graph: tuple[list[_Record], torch.Tensor] | None = None
        records, output = self._run(x[:1], 1)
        self.n_outputs = output.shape[1]
        per_sample = sum(r.probe.numel() * r.probe.element_size() for r in records)
        per_sample += output.numel() * output.element_size()
        self.chunk = max(1, min(self.n_outputs, WORK_BYTES // (8 * per_sample * x.shape[0])))

    def _run(self, x: torch.Tensor, keep: int) -> tuple[list[_Record], torch.Tensor]:
        records: list[_Record] = []
        handles = [module.register_forward_hook(_probe_hook(flags, records, keep))
                   for module, flags in self.covered.items()]
        try:
            with torch.enable_grad():
                output = functional_call(self.model, self.state, (x,))
        finally:
            for handle in handles:
                handle.remove()
        return records, output.reshape(x.shape[0], -1)

    def factors(self, start: int, stop: int) -> list[tuple]:
        """One factor tuple per covered layer for directions ``start..stop-1``: ("gram", a, g),
        ("grad", M) or ("spectral", xi, gamma), with the direction axis first in g, M and gamma."""
        count, n = stop - start, self.x.shape[0]
        if count == 1:  # large blocks: one retained graph, one backward per direction, no forward again
            if self._graph is None:
                self._graph = self._run(self.x, n)
            records, output = self._graph
        else:
            records, output = self._run(self.x.repeat(count, *[1] * (self.x.ndim - 1)), n)
        directions = torch.zeros(count, n, output.shape[1], dtype=output.dtype, device=output.device)
        directions[torch.arange(count), :, torch.arange(start, stop)] = 1
        grads = torch.autograd.grad(output, [r.probe for r in records], directions.reshape(count * n, -1),
                                    allow_unused=True, retain_graph=count == 1)
        factors = []
        for record, grad in zip(records, grads):
            grad = torch.zeros_like(record.probe) if grad is None else grad
            g, a = record.cotangent(grad.reshape(count, n, *grad.shape[1:])), record.inputs
            if record.kind == "spectral":
                factors.append(("spectral", a, g))
            elif a.shape[1] ** 2 * (a.shape[2] + g.shape[-1]) <= a.shape[2] * g.shape[-1]:
                factors.append(("gram", a, g))
            else:
                factors.append(("grad", torch.einsum("jnso,nsi->jnoi", g, a).flatten(2)))
        return factors


def _probe_hook(flags: dict[str, bool], records: list[_Record], keep: int):
    """Forward hook: record the layer's input features (first ``keep`` samples) and add a zero probe."""

    def hook(module, args, output):
        x = args[0].detach()[:keep]
        with torch.no_grad():
            if type(module) is SpectralConv:
                xi = forward_modes(x, module.modes)
                inputs, axis = xi.flatten(2).transpose(1, 2), 1  # (n, K, I)
            else:
                inputs, axis = _linear_features(module, x, flags)
        if type(module) is SpectralConv:
            probe = torch.zeros(output.shape[0], module.out_channels, *xi.shape[2:], dtype=xi.dtype,
                                device=x.device, requires_grad=True)
            output = output + inverse_modes(probe, module.modes, tuple(x.shape[2:]))
            records.append(_Record("spectral", inputs, probe, axis))
        else:
            probe = torch.zeros_like(output, requires_grad=True)
            output = output + probe
            records.append(_Record("linear", inputs, probe, axis))
        return output

    return hook


def _split(factor: tuple, n1: int) -> tuple[tuple, tuple]:
    """Factors of the concatenated block ``[xa; xb]`` -> those of ``xa`` and of ``xb``."""
    if factor[0] == "grad":
        return ("grad", factor[1][:, :n1]), ("grad", factor[1][:, n1:])
    kind, a, g = factor
    return (kind, a[:n1], g[:, :n1]), (kind, a[n1:], g[:, n1:])


def contract(fa: tuple, fb: tuple, outputs: str) -> torch.Tensor:
    """Kernel share of one layer: full ``(n1, c1, n2, c2)``, diagonal ``(n1, n2, c)`` or trace ``(n1, n2)``."""
    kind = fa[0]
    if kind == "grad":
        ma, mb = fa[1], fb[1]
        if outputs == "full":
            return torch.einsum("jnp,lmp->njml", ma, mb)
        if outputs == "diagonal":
            return torch.einsum("jnp,jmp->nmj", ma, mb)
        return torch.bmm(ma, mb.transpose(1, 2)).sum(0)
    (_, a1, g1), (_, a2, g2) = fa, fb
    if kind == "spectral":
        gram = torch.einsum("nki,mki->knm", a1, a2.conj())
        g1 = g1.conj()
        if outputs == "full":
            return torch.einsum("knm,kjnlm->njml", gram, torch.einsum("jnko,lmko->kjnlm", g1, g2)).real
        if outputs == "diagonal":
            return torch.einsum("knm,kjnm->nmj", gram, torch.einsum("jnko,jmko->kjnm", g1, g2)).real
        return (gram * torch.einsum("jnko,jmko->knm", g1, g2)).real.sum(0)
    if a1.shape[1] == 1:  # one position (a Linear on (n, in)): plain matrix products
        gram, g1, g2 = a1[:, 0] @ a2[:, 0].T, g1[:, :, 0], g2[:, :, 0]
        if outputs == "full":
            cross = (g1.flatten(0, 1) @ g2.flatten(0, 1).T).view(g1.shape[0], g1.shape[1], g2.shape[0], -1)
            return cross.permute(1, 0, 3, 2) * gram[:, None, :, None]
        cross = torch.bmm(g1, g2.transpose(1, 2))  # (c, n1, n2)
        return cross.permute(1, 2, 0) * gram[..., None] if outputs == "diagonal" else cross.sum(0) * gram
    gram = torch.einsum("nsi,mti->nsmt", a1, a2)
    if outputs == "full":
        return torch.einsum("nsmt,jnslmt->njml", gram, torch.einsum("jnso,lmto->jnslmt", g1, g2))
    if outputs == "diagonal":
        return torch.einsum("nsmt,jnsmt->nmj", gram, torch.einsum("jnso,jmto->jnsmt", g1, g2))
    return (gram * torch.einsum("jnso,jmto->nsmt", g1, g2)).sum((1, 3))


def structured_block(model: nn.Module, state: dict, covered: dict, xa: torch.Tensor, xb: torch.Tensor | None,
                     outputs: str) -> torch.Tensor:
    """Kernel of the covered layers between two sample blocks (``xb=None``: ``xa`` with itself).

    Returns full ``(n1, P, n2, P)``, diagonal ``(n1, n2, P)`` or trace ``(n1, n2)``.
    Both blocks go through the model together, one forward and backward per direction chunk.
    """
    n1 = xa.shape[0]
    cotangents = Cotangents(model, state, covered, xa if xb is None else torch.cat([xa, xb]))
    P, n2 = cotangents.n_outputs, n1 if xb is None else xb.shape[0]
    spans = [(start, min(start + cotangents.chunk, P)) for start in range(0, P, cotangents.chunk)]

    def pairs(span):
        factors = cotangents.factors(*span)
        return [(f, f) for f in factors] if xb is None else [_split(f, n1) for f in factors]

    shape = {"full": (n1, P, n2, P), "diagonal": (n1, n2, P), "trace": (n1, n2)}[outputs]
    kernel = torch.zeros(shape, dtype=xa.dtype, device=xa.device)
    if outputs == "full":
        cached = [pairs(span) for span in spans]
        for span_a, layers_a in zip(spans, cached):
            for span_b, layers_b in zip(spans, cached):
                block = sum(contract(fa, fb, outputs) for (fa, _), (_, fb) in zip(layers_a, layers_b))
                kernel[:, slice(*span_a), :, slice(*span_b)] += block
        return kernel
    for span in spans:
        for fa, fb in pairs(span):
            if outputs == "diagonal":
                kernel[..., slice(*span)] += contract(fa, fb, outputs)
            else:
                kernel += contract(fa, fb, outputs)
    return kernel
