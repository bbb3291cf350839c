"""memory_estimate: peak training memory within 20%, against a formula, the CPU allocator and the CUDA allocator."""


import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from oplearn.analysis import MemoryEstimate, memory_estimate
from oplearn.analysis.memory import measured_cpu_peak
from oplearn.errors import ShapeError
from oplearn.losses import relative_lp_loss
from oplearn.models import build

FLOAT = 4  # bytes


def training_step(model, optimizer, x, y, precision="fp32"):
    """The step memory_estimate predicts: gradients None, forward and loss (autocast if mixed), backward, step."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "mixed"):
        loss = relative_lp_loss(model(x), y)
    loss.backward()
    del loss
    optimizer.step()


def steady_state(model, shape, device="cpu", precision="fp32"):
    """``(step, persistent tensors)`` after one step: Adam state exists, gradients are None."""
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters())
    x = torch.randn(shape, device=device)
    with torch.no_grad():
        y = torch.randn(model(x).shape, device=device)
    training_step(model, optimizer, x, y, precision)
    optimizer.zero_grad(set_to_none=True)
    tensors = [*model.parameters(), *model.buffers(), x, y,
               *(t for state in optimizer.state.values() for t in state.values() if t.device == x.device)]
    return (lambda: training_step(model, optimizer, x, y, precision)), tensors


def cpu_peak(model, shape):
    """Peak live bytes of a real CPU training step: the persistent tensors plus what the step allocates at most."""
    step, tensors = steady_state(model, shape)
    persistent = sum(t.untyped_storage().nbytes() for t in {id(t.untyped_storage()): t for t in tensors}.values())
    return persistent + measured_cpu_peak(step)


def small_fno(**options):
    torch.manual_seed(0)
    return build("fno", in_channels=1, out_channels=1, modes=(6, 6), width=16, n_layers=4, **options)


class DeepMLP(nn.Module):
    """``n_blocks`` residual-free MLP blocks ``h -> 4h -> h``; with ``checkpointed`` each runs under checkpoint."""

    def __init__(self, width, n_blocks, checkpointed):
        super().__init__()
        self.checkpointed = checkpointed
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
                                    for _ in range(n_blocks))

    def forward(self, x):
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if self.checkpointed and self.training else block(x)
        return x


def test_mlp_matches_the_closed_form():
    """Three Linear layers ``d0 -> h -> h -> 1`` with GELU between, batch B, fp32, Adam, on the CPU (no rounding).

    P parameters (n tensors). Live throughout: parameters P, Adam's two moments 2P plus one 0-d float ``step``
    per tensor, input B*d0 and target B. Forward saves a1 (GELU's input), g1 (the second Linear's input), a2,
    g2: 4Bh. Backward starts at the loss; the loss's saved tensors (O(B)) are freed before the last Linear's
    backward, which holds the 4Bh, the output's gradient (B) and creates the bias gradient (1), the gradient of
    g2 (Bh) and of W3 (h). That is the peak: everything after frees more than it creates (GELU backward: +Bh
    -2Bh; Linear backward: +Bh +h^2 -2Bh), and the Adam step adds 2 * max tensor (sqrt, then the quotient) to
    P gradients, far below 5Bh here. So, in bytes,

        peak = 4 (P + 2P + n) + 4 (B*d0 + B + 5Bh + B + h + 1)
        activations = 4 (B*d0 + B + 4Bh + O(B))
    """
    batch, d0, h = 256, 4, 128
    model = nn.Sequential(nn.Linear(d0, h), nn.GELU(), nn.Linear(h, h), nn.GELU(), nn.Linear(h, 1))
    n_params = sum(p.numel() for p in model.parameters())
    n_tensors = len(list(model.parameters()))
    estimate = memory_estimate(model, (batch, d0))
    assert estimate.parameters == FLOAT * n_params
    assert estimate.gradients == FLOAT * n_params
    assert estimate.optimizer_state == FLOAT * (2 * n_params + n_tensors)
    peak = FLOAT * (2 * n_params + n_tensors) + FLOAT * (n_params + batch * d0 + batch + 5 * batch * h + batch + h + 1)
    assert estimate.peak == pytest.approx(peak, rel=1e-3)
    assert estimate.activations == pytest.approx(FLOAT * (batch * d0 + batch + 4 * batch * h), rel=0.01)
    assert estimate.peak == cpu_peak(model, (batch, d0))  # linear layers allocate nothing the ledger misses


def test_fno_within_20_percent_of_the_cpu_allocator():
    model = small_fno()
    shape = (4, 1, 32, 32)
    estimate = memory_estimate(model, shape)
    measured = cpu_peak(model, shape)
    # The estimate misses only scratch memory inside kernels (e.g. oneDNN's reordered copies in a convolution's
    # backward); the FNO's pointwise maps are GEMMs, so every byte is an operator's output (exact in our runs).
    assert estimate.peak == pytest.approx(measured, rel=0.01), (estimate.peak, measured)
    assert isinstance(estimate, MemoryEstimate) and "MiB" in str(estimate)
    assert estimate.parameters == (FLOAT * sum(p.numel() for p in model.parameters())
                                   + sum(b.numel() * b.element_size() for b in model.buffers()))


def test_checkpointing_lowers_the_estimate_by_the_saved_activations():
    """L blocks ``h -> 4h -> h``, batch B. Plain, every block saves its input (Bh) and the 4h-wide pre- and
    post-GELU tensors (8Bh); with the target (Bh) and the difference the loss's norm saves (Bh) the activations
    are (9L + 2) Bh floats (the input x is the first block's input). Checkpointed, a block saves only its input:
    (L + 2) Bh. During backward one block at a time is recomputed, so the peak falls by about 8(L - 1) Bh.
    """
    width, batch, n_blocks = 32, 256, 6
    plain = memory_estimate(DeepMLP(width, n_blocks, False), (batch, width))
    checkpointed = memory_estimate(DeepMLP(width, n_blocks, True), (batch, width))
    column = FLOAT * batch * width
    assert plain.activations == pytest.approx((9 * n_blocks + 2) * column, rel=0.02)
    assert checkpointed.activations == pytest.approx((n_blocks + 2) * column, rel=0.02)
    assert plain.peak - checkpointed.peak == pytest.approx(8 * (n_blocks - 1) * column, rel=0.2)
    assert checkpointed.parameters == plain.parameters and checkpointed.optimizer_state == plain.optimizer_state
    for model, estimate in ((DeepMLP(width, n_blocks, False), plain), (DeepMLP(width, n_blocks, True), checkpointed)):
        assert estimate.peak == pytest.approx(cpu_peak(model, (batch, width)), rel=0.2)


def test_fno_checkpoint_blocks_lowers_the_estimate():
    shape = (4, 1, 32, 32)
    plain = memory_estimate(small_fno(), shape)
    model = small_fno(checkpoint_blocks=True)
    checkpointed = memory_estimate(model, shape)
    assert checkpointed.activations < plain.activations and checkpointed.peak < plain.peak
    measured = cpu_peak(model, shape)
    assert 0.8 * measured <= checkpointed.peak <= 1.05 * measured, (checkpointed.peak, measured)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU to compare with max_memory_allocated")
@pytest.mark.parametrize("precision", ["fp32", "mixed"])
def test_fno_within_20_percent_of_the_cuda_allocator(precision):
    model = build("fno", in_channels=1, out_channels=1, modes=(12, 12), width=32, n_layers=4).cuda()
    shape = (8, 1, 128, 128)
    step, tensors = steady_state(model, shape, "cuda", precision)  # SpectralConv transforms in float32 under bf16
    torch.cuda.synchronize()
    persistent = sum(-(-t.untyped_storage().nbytes() // 512) * 512
                     for t in {id(t.untyped_storage()): t for t in tensors}.values())
    library_workspaces = torch.cuda.memory_allocated() - persistent  # cuBLAS/cuFFT buffers kept from the warm-up
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    measured = torch.cuda.max_memory_allocated() - library_workspaces
    estimate = memory_estimate(model, shape, precision=precision)
    assert estimate.peak == pytest.approx(measured, rel=0.2), (str(estimate), measured)


def test_cuda_estimate_rounds_blocks_like_the_caching_allocator():
    """Traced on fake CUDA tensors where CUDA exists, else on CPU ones; either way blocks are multiples of 512 B."""
    model = nn.Sequential(nn.Linear(3, 5), nn.GELU(), nn.Linear(5, 1))  # 15-, 5-, 5- and 1-float tensors
    on_cpu = memory_estimate(model, (64, 3))
    on_cuda = memory_estimate(model, (64, 3), device="cuda")
    assert on_cpu.parameters == FLOAT * 26 and on_cuda.parameters == 4 * 512 == on_cuda.gradients
    assert on_cuda.device == "cuda:0" and on_cuda.peak > on_cpu.peak


def test_wrong_channel_count_raises_a_one_line_shape_error():
    with pytest.raises(ShapeError) as fno_error:
        memory_estimate(small_fno(), (4, 3, 32, 32))
    mlp = nn.Sequential(nn.Linear(3, 8), nn.GELU(), nn.Linear(8, 1))
    with pytest.raises(ShapeError, match=r"\(4, 2\)") as mlp_error:
        memory_estimate(mlp, (4, 2))
    for error in (fno_error, mlp_error):
        assert "\n" not in str(error.value)
