"""Peak memory of one training step, predicted without allocating it.

The idea in one line: run the real training step on fake tensors (shapes, no
data, no compute) and keep a ledger of every storage that an operator creates,
adding its bytes when it first appears and removing them when it is freed.

The step is the steady state of ordinary training::

    optimizer.zero_grad(set_to_none=True)      # gradients of the last step are gone
    loss = relative_l2(model(x), target)       # under autocast for precision="mixed"
    loss.backward()
    optimizer.step()                           # optimizer state already exists

with ``x`` of ``input_shape`` and ``target`` of the output's shape, both live
throughout. Because the model's own code runs, views (counted once, they share
their storage), in-place operators (they create no storage), activation
checkpointing (smaller saved activations, recomputation during backward) and
autocast (half-size activations, cached weight casts) need no special cases.

What the ledger cannot see: scratch memory a kernel allocates inside itself
(oneDNN's reordered copies in CPU convolutions, cuDNN and cuFFT workspaces)
and the allocator's fragmentation. On CUDA every block is rounded up to 512
bytes as the caching allocator does, so the peak is comparable with
``torch.cuda.max_memory_allocated``. Code that branches on tensor values
(``.item()``, ``nonzero``) cannot run on fake tensors and is reported.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import traceback
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensorMode,
    UnsupportedOperatorException,
)
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from oplearn.errors import ConfigError, ShapeError
from oplearn.losses import relative_lp_loss
from oplearn.precision import PRECISIONS, autocast

OptimizerFactory = Callable[[Iterable[torch.Tensor]], torch.optim.Optimizer]

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": lambda params, **kw: torch.optim.SGD(params, lr=1e-3, **kw),
    "sgd_momentum": lambda params, **kw: torch.optim.SGD(params, lr=1e-3, momentum=0.9, **kw),
}
"""Optimizers by name; each takes ``(params, foreach=...)`` (learning rates do not change memory)."""

UNTRACEABLE = (DataDependentOutputException, DynamicOutputShapeException, UnsupportedOperatorException)
CUDA_BLOCK = 512  # the CUDA caching allocator rounds every block up to a multiple of this


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of one training step (see :func:`memory_estimate`).

    ``parameters`` counts buffers too. ``activations`` is what is live at the end
    of forward and loss besides the parameters and the optimizer state: the input
    and target, the tensors saved for backward, the loss. ``peak`` is the largest
    total at any moment of the step (``activations`` and ``gradients`` are not
    live at the same time, so it is not their sum).
    """

    parameters: int
    gradients: int
    optimizer_state: int
    activations: int
    peak: int
    device: str

    def __str__(self) -> str:
        parts = ", ".join(f"{name.replace('_', ' ')} {format_bytes(getattr(self, name))}"
                          for name in ("parameters", "gradients", "optimizer_state", "activations"))
        return f"peak {format_bytes(self.peak)} on {self.device} ({parts})"


def format_bytes(n: int) -> str:
    """``1.50 GiB``, ``12.0 MiB`` or ``512 B``."""
    if n >= 2 ** 30:
        return f"{n / 2 ** 30:.2f} GiB"
    if n >= 2 ** 20:
        return f"{n / 2 ** 20:.1f} MiB"
    if n >= 2 ** 10:
        return f"{n / 2 ** 10:.1f} KiB"
    return f"{n} B"


class StorageLedger(TorchDispatchMode):
    """Live and peak bytes of the storages that operators create, freed as they die.

    Storages are keyed by the identity of their Python object: a view returns the
    same object as its base (PyTorch keeps one Python object per storage alive as
    long as the storage lives), and ``weakref.finalize`` fires when it is freed.
    """

    def __init__(self, device: torch.device, block: int = 1):
        super().__init__()
        self.device, self.block = device, block
        self.live = self.peak = 0
        self._sizes: dict[int, int] = {}

    def size(self, storage) -> int:
        return -(-storage.nbytes() // self.block) * self.block

    def add(self, tensor: torch.Tensor) -> int:
        """Count ``tensor``'s storage if it is new and on the device; returns its bytes (0 if not counted)."""
        if tensor.device.type != self.device.type:
            return 0
        storage = tensor.untyped_storage()
        key = id(storage)
        if key in self._sizes:
            return 0
        nbytes = self.size(storage)
        self._sizes[key] = nbytes
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, key)
        return nbytes

    def _free(self, key: int) -> None:
        self.live -= self._sizes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self.add(value)
        return out


def memory_estimate(model: nn.Module, input_shape: Sequence[int], *, optimizer: str | OptimizerFactory = "adam",
                    precision: str = "fp32", device: str | torch.device | None = None) -> MemoryEstimate:
    """Predict the peak memory of one training step of ``model`` on inputs of ``input_shape``.

    Runs the step (see the module docstring) on a copy of the model made of fake
    tensors under ``FakeTensorMode``: no memory is allocated and nothing is computed,
    so a 256x256 FNO takes well under a second. The model itself is not touched; it
    may live on the meta device.

    Args:
        model: any ``nn.Module`` taking one tensor; its ``train()`` behaviour is traced.
        input_shape: ``(batch, channels, *spatial)``, the batch included.
        optimizer: a name in :data:`OPTIMIZERS` or a factory ``params -> Optimizer``.
        precision: "fp32", or "mixed" (forward and loss under ``torch.autocast`` in bfloat16).
        device: where training would run; default the model's device (CPU for a meta model).
            A CUDA estimate on a machine without CUDA traces CPU kernels and CPU autocast
            rules with the CUDA allocator's rounding and the foreach optimizers CUDA uses.

    Returns:
        :class:`MemoryEstimate` in bytes.

    Raises:
        ShapeError: the model cannot take inputs of ``input_shape``.
        NotImplementedError: the model reads tensor values (names the line).
    """
    shape = _check_shape(input_shape)
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    target = _target_device(model, device)
    traced = target if target.type != "cuda" or torch.cuda.is_available() else torch.device("cpu")
    make_optimizer = _optimizer_factory(optimizer, foreach=target.type == "cuda")
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    ledger = StorageLedger(traced, CUDA_BLOCK if target.type == "cuda" else 1)
    try:
        parts = _trace(model, shape, dtype, make_optimizer, precision, traced, ledger)
    except UNTRACEABLE as error:
        raise NotImplementedError(
            f"memory_estimate cannot trace {type(model).__name__}: it reads tensor values ({error.func}) that fake "
            f"tensors do not have, at {_model_frame(error)}; make that code independent of the data") from None
    return MemoryEstimate(**parts, peak=ledger.peak, device=str(target))


def measured_cpu_peak(fn: Callable[[], object]) -> int:
    """Peak bytes that ``fn()`` allocates on the CPU above what was live when it began.

    A measurement, not an estimate: the largest running sum of the allocations and frees
    that ``torch.profiler`` records with ``profile_memory=True``. Kernel-internal scratch
    memory that bypasses PyTorch's allocator (e.g. oneDNN reorders) is not seen.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def _trace(model: nn.Module, shape: tuple[int, ...], dtype: torch.dtype, make_optimizer: OptimizerFactory,
           precision: str, device: torch.device, ledger: StorageLedger) -> dict[str, int]:
    """Run two training steps on a fake copy of ``model``, the second under ``ledger``; the breakdown in bytes."""
    with FakeTensorMode(allow_non_fake_inputs=True), torch.enable_grad():
        fake = _fake_copy(model, device).train()
        params = [p for p in fake.parameters() if p.requires_grad]
        optimizer = make_optimizer(params)
        x = torch.empty(shape, dtype=dtype, device=device)

        def forward_loss(y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
            with autocast(precision, device):
                try:
                    prediction = fake(x)
                except UNTRACEABLE:
                    raise
                except RuntimeError as error:  # shape mismatches inside layers; models' own checks raise ShapeError
                    message = str(error).strip().splitlines()[0]
                    raise ShapeError(f"{type(model).__name__} cannot take inputs of shape {shape}: {message}") from None
                y = torch.empty(prediction.shape, dtype=dtype, device=device) if y is None else y
                return relative_lp_loss(prediction, y), y

        # A first step creates the optimizer state: what follows is the steady state.
        with _quiet("torch._subclasses.fake_tensor"):  # it logs a traceback for a shape mismatch we report
            loss, y = forward_loss(None)
        loss.backward()
        optimizer.step()
        del loss
        optimizer.zero_grad(set_to_none=True)

        parameters = sum(ledger.add(p) for p in fake.parameters()) + sum(ledger.add(b) for b in fake.buffers())
        state = sum(ledger.add(t) for t in tree_flatten(list(optimizer.state.values()))[0]
                    if isinstance(t, torch.Tensor))
        ledger.add(x)
        ledger.add(y)
        with ledger:
            loss, _ = forward_loss(y)
            activations = ledger.live - parameters - state
            loss.backward()
            del loss
            grads = {id(p.grad.untyped_storage()): p.grad.untyped_storage() for p in params if p.grad is not None}
            optimizer.step()
    return {"parameters": parameters, "gradients": sum(ledger.size(s) for s in grads.values()),
            "optimizer_state": state, "activations": activations}


def _model_frame(error: BaseException) -> str:
    """``file:line`` of the innermost traceback frame outside torch (where the model reads values)."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if "/torch/" not in frame.filename]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "an unknown place"


def _check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in input_shape)
    except (TypeError, ValueError):
        raise ShapeError(f"input_shape must be a sequence of integers (batch, channels, *spatial), "
                         f"got {input_shape!r}") from None
    if not shape or min(shape) < 1:
        raise ShapeError(f"input_shape must be positive integers (batch, channels, *spatial), got {shape}")
    return shape


def _target_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None and first.device.type != "meta" else "cpu"
    device = torch.device(device)
    return torch.device("cuda", device.index or 0) if device.type == "cuda" else device


def _optimizer_factory(optimizer: str | OptimizerFactory, foreach: bool) -> OptimizerFactory:
    if callable(optimizer):
        return optimizer
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)} or pass a "
                          "factory params -> torch.optim.Optimizer")
    # CUDA defaults to the foreach implementations (whole-list temporaries); say so when tracing them on a CPU.
    return lambda params: OPTIMIZERS[optimizer](params, foreach=foreach)


@contextlib.contextmanager
def _quiet(name: str):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _fake_copy(model: nn.Module, device: torch.device) -> nn.Module:
    """A deep copy of ``model`` whose parameters and buffers are fake tensors on ``device`` (call inside the mode)."""
    def fake(t: torch.Tensor) -> torch.Tensor:
        return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=device)

    memo = {id(p): nn.Parameter(fake(p), requires_grad=p.requires_grad) for p in model.parameters()}
    memo.update({id(b): fake(b) for b in model.buffers()})
    return copy.deepcopy(model, memo)
