"""Group Fourier layers: the group tables, exact equivariance, a direct DFT, autograd, bad input."""

import itertools

import numpy as np
import pytest
import torch

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.group_spectral import GROUPS, GroupLinear, GroupSpectralConv, get_group, group_pool


def relative_error(got, expected):
    return ((got - expected).abs().max() / expected.abs().max()).item()


@pytest.mark.parametrize("name, order", [("p4", 4), ("p4m", 8)])
def test_group_table_is_a_group_acting_on_arrays(name, order):
    group = GROUPS[name]
    x = torch.randn(5, 5, dtype=torch.float64)
    assert group.order == order
    images = [group.act(x, g) for g in range(order)]
    # distinct elements, and the generators are exactly torch.rot90 / torch.flip
    assert all(not torch.equal(a, b) for a, b in itertools.combinations(images, 2))
    assert any(torch.equal(image, torch.rot90(x, 1, dims=(-2, -1))) for image in images)
    has_flip = any(torch.equal(image, torch.flip(x, dims=(-1,))) for image in images)
    assert has_flip == (name == "p4m")
    for g, h in itertools.product(range(order), repeat=2):  # act is a homomorphism: (g h) . x = g . (h . x)
        assert torch.equal(group.act(x, group.compose(g, h)), group.act(group.act(x, h), g))
    for g in range(order):
        assert torch.equal(group.act(group.act(x, g), group.inverse(g)), x)


def make_layers(group, lifting):
    """Lifting: (1, 3, n, n) scalar fields; otherwise (1, 3, |H|, n, n) group feature maps."""
    torch.manual_seed(0)
    spectral = GroupSpectralConv(3, 2, modes=4, group=group, lifting=lifting).double()
    pointwise = GroupLinear(3, 2, group=group, lifting=lifting).double()
    return spectral, pointwise


@pytest.mark.parametrize("group", ["p4", "p4m"])
@pytest.mark.parametrize("lifting", [True, False])
@pytest.mark.parametrize("n", [7, 16])
def test_layers_commute_with_the_group(group, lifting, n):
    """lift(g . u) = g . lift(u) and K(g . f) = g . K(f), g . f the regular representation, to 1e-12."""
    table = GROUPS[group]
    spectral, pointwise = make_layers(group, lifting)
    shape = (1, 3, n, n) if lifting else (1, 3, table.order, n, n)
    x = torch.randn(shape, dtype=torch.float64)
    act_in = table.act if lifting else table.act_regular
    for layer in (spectral, pointwise):
        y = layer(x)
        assert y.shape == (1, 2, table.order, n, n)
        for g in range(table.order):
            assert relative_error(layer(act_in(x, g)), table.act_regular(y, g)) < 1e-12
            for how in ("mean", "max"):  # pooling over the group axis leaves an ordinary field
                pooled = group_pool(table.act_regular(y, g), how)
                assert relative_error(pooled, table.act(group_pool(y, how), g)) < 1e-14


@pytest.mark.parametrize("lifting", [True, False])
def test_layers_commute_with_periodic_shifts(lifting):
    spectral, pointwise = make_layers("p4m", lifting)
    x = torch.randn((1, 3, 16, 16) if lifting else (1, 3, 8, 16, 16), dtype=torch.float64)
    for layer in (spectral, pointwise):
        shifted = layer(torch.roll(x, shifts=(3, -5), dims=(-2, -1)))
        assert relative_error(shifted, torch.roll(layer(x), shifts=(3, -5), dims=(-2, -1))) < 1e-12


def test_lifting_equals_direct_dft_and_pooling_is_invariant():
    """Element e of the lifting: (1/n^2) sum_{|kx|,|ky|<m} W(k) u^(k) e^{2 pi i k.x/n}, W(-k) = conj W(k)."""
    torch.manual_seed(1)
    m, n = 3, 9
    layer = GroupSpectralConv(2, 1, modes=m, group="p4", lifting=True).double()
    half = torch.view_as_complex(layer.weight_pairs.detach())[:, 0, 0].numpy()  # (in, 2m-1, m), ky >= 0

    def weight(kx, ky):
        if ky > 0:
            return half[:, kx + m - 1, ky]
        if ky < 0:
            return np.conj(half[:, -kx + m - 1, -ky])
        return 0.5 * (half[:, kx + m - 1, 0] + np.conj(half[:, -kx + m - 1, 0]))

    u = torch.randn(1, 2, n, n, dtype=torch.float64)
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    expected = np.zeros((n, n))
    for kx, ky in itertools.product(range(-m + 1, m), repeat=2):
        wave = np.exp(2j * np.pi * (kx * rows + ky * cols) / n)
        coefficient = (u[0].numpy() * wave.conj()).sum(axis=(-2, -1))  # u^(k) per input channel
        expected += np.real((weight(kx, ky) * coefficient).sum() * wave) / n**2
    np.testing.assert_allclose(layer(u)[0, 0, 0].detach().numpy(), expected, rtol=0, atol=1e-12)


def test_acts_on_functions_not_grids():
    """A band-limited input sampled at n=16 and n=24 gives the same output at the shared points j/8."""
    torch.manual_seed(2)
    layer = GroupSpectralConv(1, 2, modes=4, group="p4m", lifting=True).double()

    def sample(n):
        x, y = torch.meshgrid(torch.arange(n, dtype=torch.float64) / n, torch.arange(n, dtype=torch.float64) / n,
                              indexing="ij")
        return (torch.cos(2 * torch.pi * (x + 2 * y) + 0.3) + 0.5 * torch.sin(2 * torch.pi * 3 * x)
                + torch.cos(2 * torch.pi * 5 * y)).reshape(1, 1, n, n)  # k=(0,5) lies outside modes=4

    coarse, fine = layer(sample(16))[..., ::2, ::2], layer(sample(24))[..., ::3, ::3]
    assert relative_error(coarse, fine) < 1e-12


def test_gradcheck_on_a_tiny_layer():
    torch.manual_seed(3)
    for group, lifting in (("p4m", True), ("p4", False)):
        layer = GroupSpectralConv(1, 1, modes=2, group=group, lifting=lifting).double()
        x = torch.randn((1, 1, 4, 4) if lifting else (1, 1, 4, 4, 4), dtype=torch.float64, requires_grad=True)
        weights = layer.weight_pairs.detach().clone().requires_grad_(True)

        def run(x, w, layer=layer):
            return torch.func.functional_call(layer, {"weight_pairs": w}, (x,))

        assert torch.autograd.gradcheck(run, (x, weights))
    linear = GroupLinear(2, 1, group="p4").double()
    f = torch.randn(1, 2, 4, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(linear, (f,))


def test_bad_input_is_a_one_line_error():
    with pytest.raises(ConfigError, match="unknown group 'c4'; choose one of: p4, p4m"):
        get_group("c4")
    with pytest.raises(ConfigError, match="unknown group pooling"):
        group_pool(torch.zeros(1, 1, 4, 3, 3), "median")
    layer = GroupSpectralConv(1, 1, modes=5, group="p4")
    with pytest.raises(ShapeError, match="needs a square grid .* got 16x12") as square:
        layer(torch.zeros(1, 1, 4, 16, 12))
    with pytest.raises(ShapeError, match="holds at most modes=4, got modes=5") as modes:
        layer(torch.zeros(1, 1, 4, 8, 8))
    with pytest.raises(ShapeError, match=r"expects \(batch, 1, 4, n, n\)"):
        layer(torch.zeros(1, 1, 8, 9, 9))
    for error in (square, modes):
        assert "\n" not in str(error.value)
