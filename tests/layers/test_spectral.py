"""SpectralConv against a direct DFT, across resolutions, and through autograd."""

import itertools

import numpy as np
import pytest
import torch

from oplearn.errors import ShapeError
from oplearn.layers import SpectralConv
from oplearn.layers.spectral import forward_modes, inverse_modes

from helpers import assert_resolution_invariant


def kept_wavenumbers(modes):
    """All kept wavenumber vectors with their index into the weight tensor."""
    per_axis = []
    for m in modes[:-1]:
        per_axis.append([(k, k) for k in range(m)] + [(k, 2 * m + k) for k in range(-m, 0)])
    per_axis.append([(k, k) for k in range(modes[-1])])
    return itertools.product(*per_axis)


def direct_truncated_convolution(u, weight, modes):
    """float64 reference: sum over kept k of W(k) c_k e^{2 pi i k.x/n}, real part, Hermitian weights."""
    sizes = u.shape[2:]
    grids = np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij")
    out = np.zeros((u.shape[0], weight.shape[1], *sizes))
    for entries in kept_wavenumbers(modes):
        k = [e[0] for e in entries]
        index = tuple(e[1] for e in entries)
        phase = sum(2j * np.pi * kk * g / n for kk, g, n in zip(k, grids, sizes))
        basis = np.exp(phase)  # e^{+2 pi i k.x/n}
        coeff = np.tensordot(u, basis.conj(), axes=(list(range(2, u.ndim)), list(range(basis.ndim))))  # c_k = sum_x u(x) e^{-2 pi i k.x/n}
        mixed = np.einsum("bi,io->bo", coeff, weight[(slice(None), slice(None)) + index])
        last_n = sizes[-1]
        factor = 1.0 if k[-1] == 0 or 2 * k[-1] == last_n else 2.0
        out += factor * np.real(mixed[:, :, None] * basis.reshape(1, 1, -1)).reshape(out.shape)
    return out / np.prod(sizes)


@pytest.mark.parametrize(
    "modes, sizes",
    [((5,), (16,)), ((5,), (9,)), ((3, 4), (8, 10)), ((3, 2), (7, 6)), ((2, 2, 3), (6, 5, 6))],
)
def test_equals_direct_dft_in_float64(modes, sizes):
    torch.manual_seed(0)
    layer = SpectralConv(3, 2, modes).double()
    u = torch.randn(2, 3, *sizes, dtype=torch.float64)
    expected = direct_truncated_convolution(u.numpy(), layer.weight.detach().numpy(), modes)
    got = layer(u).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dim, coarse", [(1, 32), (2, 32), (3, 16)])
def test_resolution_invariance(dim, coarse):
    torch.manual_seed(2)
    assert_resolution_invariant(SpectralConv(2, 3, (4,) * dim), dim, coarse)


def test_gradcheck_float64():
    torch.manual_seed(3)
    layer = SpectralConv(2, 2, (2, 3)).double()
    u = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: torch.func.functional_call(layer, {"weight_pairs": w}, (x,)),
                                    (u, layer.weight_pairs.detach().clone().requires_grad_()))


def test_parameter_count_follows_the_fno_paper():
    layer = SpectralConv(32, 32, (12, 12))
    assert layer.weight.numel() == 32 * 32 * 2 * 12 * 12  # two corners of 12 x 12 complex weights


def test_too_few_points_is_a_clear_error():
    layer = SpectralConv(1, 1, (8, 8))
    with pytest.raises(ShapeError, match="needs at least 16"):
        layer(torch.randn(1, 1, 12, 32))
    with pytest.raises(ShapeError, match="expects"):
        layer(torch.randn(1, 2, 32, 32))


# The pruned transforms against the textbook path: the full rfftn, the kept corners gathered,
# and back through a full-size zero spectrum and irfftn. Odd and even lengths, and the last
# axis kept up to its Nyquist bin (m_d = n_d/2 + 1), where the one-sided weights differ.
PRUNED_CASES = [((5,), (16,)), ((9,), (16,)), ((4,), (7,)), ((3, 4), (8, 10)), ((3, 4), (7, 6)), ((2, 2, 3), (6, 5, 6))]


def textbook_keep(u, modes):
    spectrum = torch.fft.rfftn(u, dim=tuple(range(2, u.ndim)))
    for axis, m in enumerate(modes[:-1], start=2):
        n = spectrum.shape[axis]
        spectrum = torch.cat([spectrum.narrow(axis, 0, m), spectrum.narrow(axis, n - m, m)], dim=axis)
    return spectrum.narrow(-1, 0, modes[-1])


def textbook_restore(kept, modes, sizes):
    full = kept.new_zeros(*kept.shape[:2], *sizes[:-1], sizes[-1] // 2 + 1)
    corners = [[(slice(0, m), slice(0, m)), (slice(m, 2 * m), slice(n - m, n))] for m, n in zip(modes[:-1], sizes[:-1])]
    for choice in itertools.product(*corners):
        full[(..., *[target for _, target in choice], slice(0, modes[-1]))] = kept[(..., *[source for source, _ in choice], slice(None))]
    return torch.fft.irfftn(full, s=sizes, dim=tuple(range(2, kept.ndim)))


@pytest.mark.parametrize("modes, sizes", PRUNED_CASES)
def test_pruned_transforms_equal_the_full_spectrum_path(modes, sizes):
    torch.manual_seed(4)
    u = torch.randn(2, 3, *sizes, dtype=torch.float64)
    kept = forward_modes(u, modes)
    torch.testing.assert_close(kept, textbook_keep(u, modes), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(inverse_modes(kept, modes, sizes), textbook_restore(kept, modes, sizes),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("modes, sizes", PRUNED_CASES)
def test_pruned_transform_gradients_equal_the_full_spectrum_path(modes, sizes):
    """The hand-written adjoints (one short inverse FFT each) against autograd through the textbook path."""
    torch.manual_seed(5)
    u = torch.randn(2, 3, *sizes, dtype=torch.float64, requires_grad=True)
    kept = textbook_keep(u.detach(), modes).requires_grad_()
    g_kept = torch.randn_like(kept)
    g_u = torch.randn(2, 3, *sizes, dtype=torch.float64)
    ours = torch.autograd.grad([forward_modes(u, modes), inverse_modes(kept, modes, sizes)], [u, kept], [g_kept, g_u])
    reference = torch.autograd.grad([textbook_keep(u, modes), textbook_restore(kept, modes, sizes)], [u, kept],
                                    [g_kept, g_u])
    for got, expected in zip(ours, reference):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
        assert expected.abs().max() > 1e-3


@pytest.mark.parametrize("sizes, modes", [((6, 7), (2, 4)), ((6, 8), (2, 5))])  # odd; even with Nyquist kept
def test_pruned_transforms_pass_gradcheck_forward_ad_and_gradgradcheck(sizes, modes):
    generator = torch.Generator().manual_seed(8)
    u = torch.randn(1, 2, *sizes, dtype=torch.float64, generator=generator).requires_grad_()
    kept = torch.randn(1, 2, 2 * modes[0], modes[1], dtype=torch.complex128, generator=generator).requires_grad_()
    forward = lambda x: torch.view_as_real(forward_modes(x, modes))  # noqa: E731
    inverse = lambda k: inverse_modes(k, modes, sizes)  # noqa: E731
    assert torch.autograd.gradcheck(forward, (u,), check_forward_ad=True)  # backward and jvp of both Functions
    assert torch.autograd.gradcheck(inverse, (kept,), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(forward, (u,))
    assert torch.autograd.gradgradcheck(inverse, (kept,))


def test_layer_under_torch_func_transforms():
    """vmap, jvp and vjp (used by the NTK and linearized training) agree with ordinary autograd."""
    torch.manual_seed(6)
    layer = SpectralConv(2, 3, (3, 4)).double()
    u = torch.randn(4, 2, 8, 9, dtype=torch.float64)
    tangent = torch.randn_like(layer.weight_pairs)

    def apply(weights, x):
        return torch.func.functional_call(layer, {"weight_pairs": weights}, (x,))

    weights = layer.weight_pairs.detach()
    batched = torch.func.vmap(lambda x: apply(weights, x[None])[0])(u)
    torch.testing.assert_close(batched, layer(u))
    _, forward_derivative = torch.func.jvp(lambda w: apply(w, u), (weights,), (tangent,))
    torch.testing.assert_close(forward_derivative, apply(tangent, u))  # the layer is linear in its weights
    cotangent = torch.randn_like(batched)
    _, pullback = torch.func.vjp(lambda x: apply(weights, x), u)
    x = u.clone().requires_grad_()
    (expected,) = torch.autograd.grad(layer(x), x, cotangent)
    torch.testing.assert_close(pullback(cotangent)[0], expected)
    per_sample = torch.func.vmap(torch.func.jacrev(lambda x: apply(weights, x[None])[0]))(u[:2])
    assert per_sample.shape == (2, 3, 8, 9, 2, 8, 9)


def test_float32_layer_matches_float64_within_rounding():
    torch.manual_seed(7)
    layer = SpectralConv(8, 8, (6, 6))
    u = torch.randn(3, 8, 32, 32)
    expected = layer.double()(u.double())
    got = layer.float()(u)
    assert (got.double() - expected).abs().max() < 1e-5 * expected.abs().max()
