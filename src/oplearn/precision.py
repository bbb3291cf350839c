"""Numerical precision of a training step: ``fp32`` or ``mixed``, and TF32 matmuls by choice.

- ``fp32``: everything in float32, the reference.
- ``mixed``: the forward pass and the loss run under bfloat16 autocast, so the
  pointwise maps, activations and the spectral channel contraction use bf16 GEMMs
  and store bf16 activations; the FFTs stay in float32 (``SpectralConv`` casts
  back before transforming: cuFFT in half precision needs power-of-two sizes and
  loses the high modes' accuracy). Weights, gradients and Adam state stay float32;
  bf16 has float32's exponent range, so no loss scaling is needed.
- ``tf32``: lets CUDA matmuls and convolutions use TensorFloat-32 (10-bit mantissa
  inputs, float32 accumulation) for the whole run, evaluation included. Off by
  default (PyTorch's own settings are then left alone); it changes results at
  about 1e-3 relative and is usually a 2-3x faster GEMM on Ampere and later.

Evaluation runs without autocast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

PRECISIONS = ("fp32", "mixed")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context a training step's forward pass and loss run in."""
    if precision == "mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def tf32_matmuls(enabled: bool) -> Iterator[None]:
    """Allow (or forbid) TF32 in CUDA matmuls and convolutions inside the block; restore the old setting after."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
