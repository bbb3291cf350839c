"""Neural spectral block: the sin/cos series, patches, attention normalisation, the whole block by hand, autograd."""

import math

import pytest
import torch

from oplearn.layers.latent_spectral import NeuralSpectralBlock, TrigonometricExpansion, patchify, unpatchify


def explicit_series(expansion, z):
    """float64 reference by loops: b_c + sum_k A_kc sin(k z_c) + B_kc cos(k z_c)."""
    sin_weight, cos_weight, bias = (p.detach().tolist() for p in (expansion.sin_weight, expansion.cos_weight,
                                                                    expansion.bias))
    out = torch.empty_like(z)
    for index in torch.cartesian_prod(*[torch.arange(n) for n in z.shape[:-1]]).reshape(-1, z.ndim - 1).tolist():
        for c in range(z.shape[-1]):
            value = z[(*index, c)].item()
            out[(*index, c)] = bias[c] + sum(sin_weight[k][c] * math.sin((k + 1) * value)
                                             + cos_weight[k][c] * math.cos((k + 1) * value)
                                             for k in range(len(sin_weight)))
    return out


def test_expansion_is_the_explicit_sin_cos_series():
    torch.manual_seed(0)
    expansion = TrigonometricExpansion(3, 5).double()
    torch.nn.init.normal_(expansion.bias)
    z = 2 * torch.randn(2, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(expansion(z), explicit_series(expansion, z), rtol=0, atol=1e-12)


@pytest.mark.parametrize("sizes, patch", [((7,), (3,)), ((7, 5), (3, 2)), ((5, 4, 3), (2, 3, 2))])
def test_patches_are_blocks_of_the_grid_and_unpatchify_inverts(sizes, patch):
    x = torch.randn(2, 3, *sizes)
    patches = patchify(x, patch)
    counts = [-(-n // p) for n, p in zip(sizes, patch)]
    assert patches.shape == (2 * math.prod(counts), 3, math.prod(patch))
    first = x[(slice(0, 1), slice(None), *[slice(0, p) for p in patch])].reshape(3, -1)
    assert torch.equal(patches[0], first)  # the first patch is the corner block, in row-major order
    assert torch.equal(unpatchify(patches, 2, sizes, patch), x)


def test_block_with_tokens_set_by_hand_is_the_residual_plus_the_series():
    """A field constant on each patch makes every token of a patch equal its value z (token weights sum to one
    over the real points, padding left out), so with V = O = identity the block returns z + series(z)."""
    torch.manual_seed(1)
    block = NeuralSpectralBlock(3, n_tokens=4, n_basis=6, patch_size=(3, 2)).double()
    torch.nn.init.normal_(block.expansion.bias)
    with torch.no_grad():
        for linear in (block.point_values, block.output):
            linear.weight.copy_(torch.eye(3))
            linear.bias.zero_()
    values = torch.randn(2, 3, 3, 3, dtype=torch.float64)  # (batch, channels, patches along x, along y)
    field = values.repeat_interleave(3, dim=2).repeat_interleave(2, dim=3)[:, :, :7, :5]  # 7 x 5: padded patches
    expected = field + explicit_series(block.expansion, field.movedim(1, -1)).movedim(-1, 1)
    torch.testing.assert_close(block(field), expected, rtol=0, atol=1e-12)


def test_attention_weights_sum_to_one_over_points_for_tokens_and_over_tokens_for_points():
    torch.manual_seed(2)
    block = NeuralSpectralBlock(4, n_tokens=3, n_basis=4, patch_size=(3, 3)).double()
    x = torch.randn(2, 4, 7, 5, dtype=torch.float64)
    points = patchify(x, (3, 3)).transpose(1, 2)
    real = (patchify(torch.ones(1, 1, 7, 5, dtype=torch.float64), (3, 3))[:, 0] > 0).repeat(2, 1)
    token_weights = block.token_weights(points, real)  # (patches, tokens, points)
    assert token_weights.shape == (2 * 6, 3, 9)  # 3 x 2 patches of a 7 x 5 grid
    torch.testing.assert_close(token_weights.sum(-1), torch.ones(12, 3, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.all(token_weights.masked_select(~real[:, None, :].expand_as(token_weights)) == 0)
    assert not torch.allclose(token_weights.sum(-2), torch.ones(12, 9, dtype=torch.float64))  # not over tokens
    tokens = token_weights @ block.point_values(points)
    point_weights = block.point_weights(points, block.expansion(tokens))  # (patches, points, tokens)
    assert point_weights.shape == (12, 9, 3)
    torch.testing.assert_close(point_weights.sum(-1), torch.ones(12, 9, dtype=torch.float64), rtol=0, atol=1e-12)


def test_a_grid_smaller_than_the_patch_is_one_patch():
    block = NeuralSpectralBlock(2, n_tokens=2, n_basis=3, patch_size=(4, 4))
    assert block.patch_for((3, 9)) == (3, 4)
    assert block(torch.randn(1, 2, 3, 9)).shape == (1, 2, 3, 9)


def test_gradients_match_finite_differences():
    torch.manual_seed(3)
    block = NeuralSpectralBlock(2, n_tokens=2, n_basis=3, patch_size=(2, 3)).double()
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    parameters = {name: p.detach().clone().requires_grad_() for name, p in block.named_parameters()
                  if name in ("tokens", "expansion.sin_weight", "point_queries.weight")}
    assert torch.autograd.gradcheck(
        lambda x, *p: torch.func.functional_call(block, dict(zip(parameters, p)), (x,)), (x, *parameters.values()))
