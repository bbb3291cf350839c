"""AFNO mixer: shift equivariance (and where it fails), block structure, truncation, gradients."""

import cmath

import pytest
import torch

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.afno import (
    AFNOMixer,
    BlockComplexMLP,
    complex_soft_shrink,
    componentwise_relu,
    componentwise_soft_shrink,
    kept_frequencies,
    modulus_gate,
)


def relative(a, b):
    return ((a - b).norm() / b.norm()).item()


SHIFTS = [(1, 0), (0, 1), (2, 3), (-3, 1)]


@pytest.mark.parametrize("grid", [(8, 8), (6, 9), (7, 5)])
@pytest.mark.parametrize("fraction", [1.0, 0.6])
def test_modulus_mixer_commutes_with_token_shifts_in_float64(grid, fraction):
    torch.manual_seed(0)
    mixer = AFNOMixer(8, n_blocks=2, sparsity=0.4, hard_threshold_fraction=fraction).double()
    x = torch.randn(2, 8, *grid, dtype=torch.float64)
    # The shrinkage must be active for the test to mean anything: a good share of kept modes is zeroed.
    rows, n_cols = kept_frequencies(*grid, fraction)
    kept = torch.fft.rfft2(x, norm="ortho").index_select(2, rows)[..., :n_cols]
    zeroed = (complex_soft_shrink(mixer.mlp(kept), 0.4) == 0).double().mean().item()
    assert 0.1 < zeroed < 0.9
    spectral = mixer.spectral_part(x)
    for shift in SHIFTS:
        shifted_first = mixer.spectral_part(torch.roll(x, shift, dims=(2, 3)))
        assert relative(shifted_first, torch.roll(spectral, shift, dims=(2, 3))) < 1e-10
        assert relative(mixer(torch.roll(x, shift, dims=(2, 3))), torch.roll(mixer(x), shift, dims=(2, 3))) < 1e-10


def test_componentwise_mixer_of_the_paper_is_not_shift_equivariant():
    """Real/imaginary-wise ReLU, biases and shrinkage do not commute with the shift phases."""
    torch.manual_seed(0)
    mixer = AFNOMixer(8, n_blocks=2, sparsity=0.4, nonlinearity="componentwise").double()
    x = torch.randn(2, 8, 8, 8, dtype=torch.float64)
    spectral = mixer.spectral_part(x)
    for shift in SHIFTS:
        shifted_first = mixer.spectral_part(torch.roll(x, shift, dims=(2, 3)))
        assert relative(shifted_first, torch.roll(spectral, shift, dims=(2, 3))) > 0.2
    # A shift by the full period is the identity, so it trivially commutes.
    assert relative(mixer.spectral_part(torch.roll(x, (8, 8), dims=(2, 3))), spectral) < 1e-12


def test_modulus_nonlinearities_commute_with_phases_componentwise_ones_do_not():
    torch.manual_seed(1)
    z = torch.randn(200, dtype=torch.complex128)
    bias = torch.randn(200, dtype=torch.float64)
    for angle in [0.3, cmath.pi / 2, cmath.pi, 2.0]:
        phase = cmath.exp(1j * angle)
        torch.testing.assert_close(modulus_gate(phase * z, bias), phase * modulus_gate(z, bias), rtol=0, atol=1e-14)
        torch.testing.assert_close(complex_soft_shrink(phase * z, 0.7), phase * complex_soft_shrink(z, 0.7),
                                   rtol=0, atol=1e-14)
        assert (componentwise_relu(phase * z) - phase * componentwise_relu(z)).abs().max() > 0.1
    # Real/imaginary-wise soft-shrinkage is odd, so it commutes with the 4th roots of unity only.
    assert (componentwise_soft_shrink(1j * z, 0.7) - 1j * componentwise_soft_shrink(z, 0.7)).abs().max() == 0
    phase = cmath.exp(0.3j)
    assert (componentwise_soft_shrink(phase * z, 0.7) - phase * componentwise_soft_shrink(z, 0.7)).abs().max() > 0.1


def test_complex_soft_shrink_reduces_modulus_and_keeps_phase():
    z = torch.tensor([3 + 4j, 0.3 - 0.4j, 0j, -2j], dtype=torch.complex128)
    expected = torch.tensor([(3 + 4j) * 4 / 5, 0, 0, -1j], dtype=torch.complex128)
    torch.testing.assert_close(complex_soft_shrink(z, 1.0), expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(complex_soft_shrink(z, 0.0), z, rtol=0, atol=0)


@pytest.mark.parametrize("nonlinearity", ["modulus", "componentwise"])
def test_block_mlp_equals_dense_mlp_with_zero_off_diagonal_blocks(nonlinearity):
    torch.manual_seed(2)
    channels, n_blocks = 12, 3
    mlp = BlockComplexMLP(channels, n_blocks, nonlinearity).double()
    z = torch.randn(2, channels, 5, 4, dtype=torch.complex128)
    w1 = torch.block_diag(*torch.view_as_complex(mlp.weight1_pairs.detach()))  # (C, C), zeros off the blocks
    w2 = torch.block_diag(*torch.view_as_complex(mlp.weight2_pairs.detach()))
    tokens = z.movedim(1, -1)  # (b, 5, 4, C): one dense MLP per frequency
    if nonlinearity == "modulus":
        hidden = modulus_gate(tokens @ w1, mlp.gate_bias.detach().flatten())
        dense = hidden @ w2
    else:
        hidden = componentwise_relu(tokens @ w1 + torch.view_as_complex(mlp.bias1_pairs.detach()).flatten())
        dense = hidden @ w2 + torch.view_as_complex(mlp.bias2_pairs.detach()).flatten()
    torch.testing.assert_close(mlp(z), dense.movedim(-1, 1), rtol=0, atol=1e-12)
    # The blocks do not talk: changing block 0's input leaves blocks 1 and 2 unchanged.
    changed = z.clone()
    changed[:, :4] += 1.0
    assert (mlp(changed)[:, 4:] - mlp(z)[:, 4:]).abs().max() == 0
    assert (mlp(changed)[:, :4] - mlp(z)[:, :4]).abs().max() > 0.1


@pytest.mark.parametrize("grid, fraction", [((12, 10), 0.5), ((9, 8), 0.34), ((8, 8), 0.0)])
def test_hard_truncation_leaves_only_the_kept_wavenumbers(grid, fraction):
    torch.manual_seed(3)
    h, w = grid
    mixer = AFNOMixer(4, n_blocks=2, sparsity=0.0, hard_threshold_fraction=fraction).double()
    spectrum = torch.fft.rfft2(mixer.spectral_part(torch.randn(2, 4, h, w, dtype=torch.float64)), norm="ortho")
    k1 = torch.fft.fftfreq(h, 1 / h).abs()[:, None]
    k2 = torch.arange(w // 2 + 1)[None, :]
    inside = (k1 <= fraction * (h // 2)) & (k2 <= fraction * (w // 2))
    assert spectrum[..., ~inside].abs().max() < 1e-12
    assert spectrum[..., inside].abs().min() > 1e-6


@pytest.mark.parametrize("nonlinearity", ["modulus", "componentwise"])
def test_mixer_gradcheck(nonlinearity):
    torch.manual_seed(4)
    mixer = AFNOMixer(4, n_blocks=2, sparsity=0.05, hard_threshold_fraction=0.7, nonlinearity=nonlinearity).double()
    x = torch.randn(1, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    names, params = zip(*mixer.named_parameters())

    def run(x, *values):
        return torch.func.functional_call(mixer, dict(zip(names, values)), (x,))

    assert torch.autograd.gradcheck(run, (x, *[p.detach().clone().requires_grad_() for p in params]))


def test_mistakes_raise_one_line_errors():
    with pytest.raises(ConfigError, match="divisible by n_blocks"):
        AFNOMixer(10, n_blocks=4)
    with pytest.raises(ConfigError, match="modulus, componentwise"):
        AFNOMixer(8, nonlinearity="relu")
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        AFNOMixer(8, hard_threshold_fraction=1.5)
    with pytest.raises(ConfigError, match=">= 0"):
        AFNOMixer(8, sparsity=-0.1)
    with pytest.raises(ShapeError, match=r"\(batch, 8, h, w\)"):
        AFNOMixer(8)(torch.randn(2, 6, 4, 4))
